//! The durable, encrypted journal of Portcullis: an append-only log of every command the core
//! thread accepted and every event it produced, from which the server rebuilds its whole state
//! after a crash. Nothing acknowledged is ever lost (with `fsync = "always"`), and nothing is
//! readable at rest without the master key.
//!
//! - [`JournalWriter`]: group commit on the journal thread (append everything the queue holds,
//!   commit once), [`FsyncPolicy`], [`JournalWriter::ack_seq`] to gate acknowledgements,
//!   segment roll-over, snapshots, compaction, key rotation.
//! - [`JournalReader`]: recovery (a torn tail is cut and reported, corruption anywhere else
//!   stops with the file and offset), the latest [`Snapshot`], replay of the records after it.
//! - [`JournalTail`]: follows the journal while it is written, without the lock (the FIX drop
//!   copy reads its executions this way).
//! - [`JournalRecord`]: what is journaled, with a compact explicit binary encoding.
//! - [`SealedLogWriter`] / [`SealedLogReader`]: the same machinery for any record log, by file
//!   name prefix: the FIX message store and the audit log are encrypted the same way.
//! - [`SealedFileStore`]: the FIX message store of a session on a sealed log (prefix
//!   [`FIX_STORE_PREFIX`]), with the semantics of the session crate's plaintext store.
//! - [`SealedAuditLog`]: the security audit log on sealed logs (one per writing process),
//!   one JSON event per record, and [`read_audit_dir`] to read them back merged by time.
//! - Tools: [`verify`], [`dump`], [`export_jsonl`], [`reencrypt`] (and their `_log` variants).
//!
//! # On-disk format (version 1)
//!
//! A log is a directory of segment files `<prefix>-<first_seq:020>.seg` (the journal's prefix
//! is `journal`), snapshot files `<prefix>-<seq:020>.snap`, and a lock file `<prefix>.lock`.
//! Every integer is little-endian. Sequence numbers start at 1 and increase by one per record
//! across the whole log.
//!
//! Segment header:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `PCLSLOG\0` |
//! | 2 | format version, 1 |
//! | 1 + p | prefix length and prefix (`journal`, `fixstore`, ...) |
//! | 1 + k | master-key id length and id |
//! | 8 | key check: HMAC-SHA256(master key, label), first 8 bytes |
//! | 4 | segment number (consecutive across the log) |
//! | 8 | first sequence number (= the file name's) |
//! | 32 | salt, random for every segment file ever created |
//! | 4 | CRC-32 of the header bytes above |
//!
//! Then batches, back to back:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | `len`: ciphertext length, tag included |
//! | 8 | first sequence number of the batch |
//! | 4 | record count (≥ 1) |
//! | 8 | batch number (0, 1, 2, ... within the segment) |
//! | 12 | nonce = segment number (4) ‖ batch number (8) |
//! | 4 | CRC-32 of the 36 bytes above |
//! | len | AES-256-GCM ciphertext of the records, then the 16-byte tag |
//!
//! The plaintext is the batch's records, each `[u32 len][u32 CRC-32 of payload][payload]`; a
//! journal payload is a [`JournalRecord`] encoding (see [`record`]). The GCM associated data
//! is SHA-256(segment header) ‖ the first 36 bytes of the batch header, so a batch
//! authenticates only at its place: in its segment (prefix, number, key, salt), with its batch
//! number, sequence numbers and count. A batch moved, reordered, replayed into another segment
//! or log, or relabelled fails its tag. The header CRC (not a security measure: the tag is)
//! tells a torn write from damage before anything is decrypted, and guards the length field.
//!
//! # Keys and nonces
//!
//! Each segment file is encrypted under its own key, `HMAC-SHA256(master key, label ‖
//! "segment" ‖ prefix ‖ salt ‖ segment number)`, and batch `b` of segment `n` uses the nonce
//! `n ‖ b`. Nonces are never reused under a key because:
//!
//! 1. a segment key encrypts one file only: the salt is 32 fresh random bytes per file (a
//!    collision has probability ~2^-256 per pair), and the prefix and segment number are in
//!    the derivation too;
//! 2. within a file, batch numbers are 0, 1, 2, ...: each is used once, because a writer only
//!    appends to a segment it created itself in this process. After a restart — in particular
//!    after a torn batch was cut, whose nonce was already used for bytes that may have reached
//!    the disk — writing continues in a new segment file with a new salt; an empty last segment
//!    is replaced by a new file (new salt), never appended to. Re-encryption writes new files
//!    with new salts too;
//! 3. a key encrypts at most 2^32 batches (the writer rolls to a new segment first), the
//!    per-key invocation limit of NIST SP 800-38D, far below the 2^64 the counter allows.
//!
//! The master key itself never encrypts log data, so sharing it with the vault and the other
//! logs cannot make two uses collide. The master-key id and key check in the header tell a
//! missing or wrong key ([`JournalError::WrongKey`]) from damage.
//!
//! # Durability and recovery
//!
//! [`JournalWriter::commit`] seals the open batch, writes it with one `write(2)` and fsyncs
//! (`fdatasync`) per the [`FsyncPolicy`]. A segment is created under a temporary name,
//! fsynced, renamed and the directory fsynced before any batch goes in; at roll-over the old
//! segment is fsynced whatever the policy. So only the last segment's last batch can be
//! incomplete after a crash: recovery ([`JournalReader::open`]) cuts it (truncate + fsync) and
//! reports it in [`RecoveryReport::torn_tail`]. A last batch is torn when the file ends before
//! its declared length, or inside its header, or when everything from its start is zero (a
//! file extended but never written). Anything else — a complete batch whose tag or CRC fails
//! (a flipped bit, even in the last batch: it may have been acknowledged), a gap in batch
//! numbers or sequence numbers, a missing segment, a damaged header, a truncated segment that
//! is not the last — is [`JournalError::Corrupt`] with the file and byte offset, and the
//! start-up must stop. (An operator who decides to give up the records from that point on can
//! truncate the named file at the reported offset and delete the later segments: the rest of
//! the journal then opens.) A snapshot whose seq is beyond the last record (records lost, e.g. a
//! deleted last segment) is [`JournalError::SnapshotAhead`]. No file content makes the reader
//! panic or allocate more than the file's size.
#![warn(missing_docs)]

mod audit;
mod config;
mod error;
mod fixstore;
mod format;
mod journal;
mod keys;
mod log;
pub mod record;
mod segment;
mod snapshot;
mod tail;
mod tools;

use std::fmt;

pub use audit::{
    audit_logs, merge_keyrings, read_audit_dir, read_audit_log, AuditRecord, SealedAuditLog,
    AUDIT_CLI_PREFIX, AUDIT_PREFIX,
};
pub use config::{FsyncPolicy, JournalConfig, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
pub use error::{JournalError, Result};
pub use fixstore::{
    Direction, SealedFileStore, StoreContents, StoredMessage, FIX_STORE_PREFIX, STORE_SEGMENT_BYTES,
};
pub use journal::{CompactReport, JournalReader, JournalWriter, Replay, SnapshotSink};
pub use log::{
    LogOptions, LogRecords, LogStats, RecoveryReport, SealedLogReader, SealedLogWriter, TornTail,
};
pub use record::{DecodeError, JournalRecord, RecordKind, CODEC_VERSION, MAX_LIMITS_BYTES};
pub use snapshot::Snapshot;
pub use tail::JournalTail;
pub use tools::{
    dump, event_json, export_jsonl, log_key_ids, reencrypt, reencrypt_log, verify, verify_log,
    ReencryptReport, SnapshotInfo, VerifyReport,
};

/// The file name prefix of the journal's segments and snapshots.
pub const JOURNAL_PREFIX: &str = "journal";

/// A record's sequence number in a log: 1 for the first record, +1 for each next one. `Seq(0)`
/// means "none" (an empty log, nothing durable yet, replay from the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests;
