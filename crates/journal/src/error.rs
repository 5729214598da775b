//! Errors, each naming the file (and for damaged data, the byte offset) it is about.

use std::io;
use std::path::{Path, PathBuf};

use crate::Seq;

/// Everything that can go wrong opening, reading, writing or repairing a journal (or any other
/// sealed log). Never contains key material or decrypted record contents.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The bytes of a file are not what was written: a flipped bit, a missing or reordered
    /// batch, a truncated file that is not the last one, a sequence gap. Start-up must stop:
    /// an operator has to look at the file (a torn tail from a crash is not reported this way,
    /// it is cut; see [`crate::TornTail`]).
    #[error("{segment}: corrupt at byte offset {offset}: {detail}")]
    Corrupt {
        /// The damaged file.
        segment: PathBuf,
        /// Byte offset in the file of the damaged header, batch or field.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// A file was encrypted under a master key the keyring does not have (`in_keyring` false),
    /// or the keyring has a key with that id but different bytes (`in_keyring` true).
    #[error("{}", wrong_key_text(.segment, .key_id, *.in_keyring))]
    WrongKey {
        /// The file.
        segment: PathBuf,
        /// The master-key id in the file's header.
        key_id: String,
        /// Whether the keyring has a key with that id (whose bytes do not match).
        in_keyring: bool,
    },
    /// Another process (or another writer in this one) holds the directory's lock.
    #[error(
        "{dir}: the {prefix} log is in use by another writer (lock {dir}/{prefix}.lock is held)"
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The log's file name prefix.
        prefix: String,
    },
    /// An earlier write or fsync of this writer failed; what reached the disk is unknown, so
    /// the writer refuses to go on. Reopening runs recovery, which cuts a torn tail.
    #[error("the writer of {path} failed earlier and refuses further writes: {detail}")]
    Poisoned {
        /// The segment being written when it failed.
        path: PathBuf,
        /// The first failure.
        detail: String,
    },
    /// A snapshot claims a sequence number beyond the last record of the journal: records the
    /// snapshot depends on are gone (a deleted segment, or a snapshot asked for before its
    /// records were written).
    #[error("{path}: snapshot at seq {snapshot} is ahead of the journal, whose last record is seq {last}")]
    SnapshotAhead {
        /// The snapshot file (or the journal directory when refusing to write one).
        path: PathBuf,
        /// The snapshot's sequence number.
        snapshot: Seq,
        /// The journal's last record.
        last: Seq,
    },
    /// Records needed for a replay are no longer in the journal (compacted or deleted).
    #[error("{dir}: records after seq {after} are needed but the journal starts at seq {first}")]
    Missing {
        /// The journal directory.
        dir: PathBuf,
        /// The replay was asked to start after this record.
        after: Seq,
        /// The first record present.
        first: Seq,
    },
    /// A record or batch is larger than the format allows.
    #[error("record of {len} bytes is larger than the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The keyring could not be read into journal keys (it never should: it comes from
    /// `MasterKeyring::to_text`).
    #[error("master keyring: {0}")]
    Keyring(String),
    /// The operating system's random source failed (salts cannot be drawn).
    #[error("the system random source failed: {0}")]
    Random(String),
    /// A configuration value is out of range.
    #[error("journal config: {0}")]
    Config(String),
}

fn wrong_key_text(segment: &Path, key_id: &str, in_keyring: bool) -> String {
    if in_keyring {
        format!(
            "{}: the keyring's master key {key_id:?} is not the key this file was encrypted with",
            segment.display()
        )
    } else {
        format!(
            "{}: encrypted with master key {key_id:?}, which is not in the keyring",
            segment.display()
        )
    }
}

/// A `map_err` adapter naming the path of a failed I/O call.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A [`JournalError::Corrupt`].
pub(crate) fn corrupt(segment: &Path, offset: u64, detail: impl Into<String>) -> JournalError {
    JournalError::Corrupt {
        segment: segment.to_path_buf(),
        offset,
        detail: detail.into(),
    }
}

/// The crate's result type.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;
