//! [`SealedFileStore`]: the FIX message store of a session, encrypted at rest as the journal is.
//!
//! It keeps the semantics of the plaintext [`FileStore`] of the session crate — next sender and
//! target sequence numbers, the outbound messages by MsgSeqNum for resends, reset, recovery
//! after a crash, durability per [`SyncPolicy`] — on top of a [`SealedLogWriter`] (prefix
//! [`FIX_STORE_PREFIX`]), so no ClOrdID, account or message text is readable on disk without
//! the master key.
//!
//! # Layout
//!
//! A session's directory (the same one the plaintext store uses, named by
//! [`FileStore::session_dir_name`]) holds:
//!
//! - `store.lock`: the `flock` held while the store is open, the same lock file as the plaintext
//!   store's, so the two can never be open on one directory at once;
//! - `gen-<n:020>/`: a generation, a sealed log `fixstore-<seq>.seg` (+ its own `fixstore.lock`).
//!   Only the highest-numbered generation is the store; [`MessageStore::reset`] and
//!   [`SealedFileStore::compact`] write the next one;
//! - `gen-<n:020>.tmp/`: a generation being written; removed at the next open.
//!
//! Each record of a generation's log is one of (integers little-endian):
//!
//! | kind | payload | meaning |
//! |---|---|---|
//! | 1 Header | `u32 version = 1`, `i64 creation time (ns)` | the first record, and only there; the sequence starts at 1/1 |
//! | 2 Seqs | `u64 next_sender`, `u64 next_target` | written by every `set_*` that changes a number |
//! | 3 Message | `u64 MsgSeqNum`, the message bytes | an outbound message; also sets next_sender to MsgSeqNum + 1 |
//! | 4 Received | `u64 MsgSeqNum` (0 if none), the message bytes | a message received (sessions with `log_inbound`); changes nothing, read only by [`SealedFileStore::read_messages`] |
//!
//! The state is the header's followed by every record in order, the last one winning — the
//! plaintext store's rule.
//!
//! # Durability and crash safety
//!
//! Every trait call that changes something appends one record and commits it (one sealed
//! batch, one `write`) before it returns, so it survives a process crash; under
//! [`SyncPolicy::Always`] the commit also fsyncs, so it survives a power cut. Recovery at open
//! is the sealed log's: a torn last batch is cut (and reported by
//! [`SealedFileStore::recovered_tail`]), anything else that does not authenticate — a flipped
//! bit, a missing or reordered batch, a wrong key — is an error naming the file and offset, and
//! the store does not open.
//!
//! A reset or compaction never rewrites a log in place. It writes generation `n + 1` under
//! `gen-<n+1>.tmp/` (header, messages, numbers), fsyncs it (segment files, their directory),
//! renames the directory to `gen-<n+1>/` and fsyncs the session directory; only then is
//! `gen-<n>/` deleted (and the session directory fsynced again). A crash
//!
//! - before the rename leaves `gen-<n>/` the highest complete generation: the store is the old
//!   one, and the `.tmp` directory is removed at the next open;
//! - after the rename (made durable before any deletion) leaves `gen-<n+1>/` the highest: the
//!   store is the new one, and whatever is left of `gen-<n>/` is removed at the next open.
//!
//! Either way the store is exactly the state before or after the call. A generation that is
//! not the highest is never read, so a half-deleted one cannot be mistaken for the store.
//!
//! # A plaintext store found in the directory
//!
//! A `store.log` of the plaintext store (a session that ran without a master key) is migrated
//! when the directory has no generation yet: its numbers, creation time and messages are
//! written as generation 1, made durable, and only then is `store.log` deleted. A `store.log`
//! next to a generation is the leftover of a migration interrupted after its rename (the
//! server never opens the plaintext store on a directory that has generations, see
//! [`SealedFileStore::is_sealed`]) and is deleted.
//!
//! # Keys
//!
//! New segments are encrypted under the keyring's current master key.
//! [`SealedFileStore::set_keyring`] switches keys without a restart and rewrites the store as a
//! new generation when older segments are under another key, so a retired master key is no
//! longer needed once it returns.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use portcullis_auth::MasterKeyring;
use portcullis_fix::{SeqNum, UtcTimestamp};
use portcullis_session::store::{
    FileStore, MessageStore, StoreError, SyncPolicy, MAX_STORED_MESSAGE_LEN,
};

use crate::config::FsyncPolicy;
use crate::error::JournalError;
use crate::format::{sync_dir, DirLock};
use crate::log::{LogOptions, SealedLogReader, SealedLogWriter, TornTail};
use crate::Seq;

/// The file name prefix of the FIX message store's segments.
pub const FIX_STORE_PREFIX: &str = "fixstore";
/// Segment size of a store: a new segment starts past 8 MiB. A resend decrypts from the start
/// of the segment holding the first message asked for, and an open verifies the last segment
/// in full, so segments stay far smaller than the journal's.
pub const STORE_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// A FIX message's size for [`MessageStore::may_wait_for_disk`] before it is known.
const TYPICAL_MESSAGE_LEN: usize = 1024;
/// The lock file prefix: `store.lock`, shared with the plaintext store.
const LOCK_PREFIX: &str = "store";
const GEN_PREFIX: &str = "gen-";
const TMP_SUFFIX: &str = ".tmp";
/// The plaintext store's log and its temporary file.
const PLAIN_LOG: &str = "store.log";
const PLAIN_TEMP: &str = "store.log.tmp";

const FORMAT_VERSION: u32 = 1;
const KIND_HEADER: u8 = 1;
const KIND_SEQS: u8 = 2;
const KIND_MESSAGE: u8 = 3;
const KIND_RECEIVED: u8 = 4;
const HEADER_LEN: usize = 1 + 4 + 8;
const SEQS_LEN: usize = 1 + 8 + 8;
const MESSAGE_PREFIX_LEN: usize = 1 + 8;

/// A durable [`MessageStore`] for one session, encrypted at rest (see the module
/// documentation for the layout and the crash-safety argument).
///
/// Holds an exclusive lock on its directory while open: drop it before opening it again.
pub struct SealedFileStore {
    dir: PathBuf,
    _lock: DirLock,
    keyring: MasterKeyring,
    options: LogOptions,
    gen: u64,
    gen_dir: PathBuf,
    /// `None` after a failed reset or compaction left the in-memory state behind the disk.
    writer: Option<SealedLogWriter>,
    /// Master keys of the current generation's segments (and the writer's current key).
    key_ids: Vec<String>,
    sender: SeqNum,
    target: SeqNum,
    created: UtcTimestamp,
    /// MsgSeqNum → the log record holding the message's latest version.
    index: BTreeMap<SeqNum, u64>,
    recovered_tail: Option<TornTail>,
    /// Set when a write failed: what is on disk is unknown until a reopen recovers.
    poisoned: bool,
    /// Changes are appended in memory and written by [`MessageStore::commit`].
    group_commit: bool,
    /// Records appended since the last commit (group commit only).
    uncommitted: bool,
}

impl fmt::Debug for SealedFileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The index can hold millions of entries: its size only; never any key material.
        f.debug_struct("SealedFileStore")
            .field("dir", &self.dir)
            .field("generation", &self.gen)
            .field("options", &self.options)
            .field("next_sender", &self.sender)
            .field("next_target", &self.target)
            .field("created", &self.created)
            .field("messages", &self.index.len())
            .field("recovered_tail", &self.recovered_tail)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// The state read back from a generation.
struct State {
    sender: SeqNum,
    target: SeqNum,
    created: UtcTimestamp,
    index: BTreeMap<SeqNum, u64>,
}

/// Where a generation being written sends each carried-over message.
/// Takes one message to carry over: its record kind (sent or received), MsgSeqNum and bytes.
type Sink<'a> = dyn FnMut(u8, SeqNum, &[u8]) -> Result<(), StoreError> + 'a;
/// Feeds the messages to carry over into a new generation, in log order.
type Feed<'a> = dyn FnMut(&mut Sink<'_>) -> Result<(), StoreError> + 'a;

/// What a generation being written contains.
struct Contents<'a> {
    created: UtcTimestamp,
    sender: SeqNum,
    target: SeqNum,
    messages: &'a mut Feed<'a>,
}

impl SealedFileStore {
    /// Opens (or creates) the store of one session in `dir` (created if missing), recovering
    /// after a crash: a torn batch at the end is cut (see
    /// [`recovered_tail`](Self::recovered_tail)); damage anywhere else is
    /// [`StoreError::Corrupt`] with the file and offset, a missing or wrong master key
    /// [`StoreError::WrongKey`]. A new store starts at 1/1 with creation time `now`; a
    /// plaintext store found in `dir` is migrated (module documentation).
    pub fn open(
        dir: &Path,
        now: UtcTimestamp,
        sync: SyncPolicy,
        keyring: &MasterKeyring,
    ) -> Result<SealedFileStore, StoreError> {
        Self::open_with(
            dir,
            now,
            LogOptions {
                fsync: match sync {
                    SyncPolicy::Always => FsyncPolicy::Always,
                    SyncPolicy::Never => FsyncPolicy::Never,
                },
                segment_bytes: STORE_SEGMENT_BYTES,
            },
            keyring,
        )
    }

    /// [`SealedFileStore::open`] with explicit log options (fsync policy, segment size).
    pub fn open_with(
        dir: &Path,
        now: UtcTimestamp,
        options: LogOptions,
        keyring: &MasterKeyring,
    ) -> Result<SealedFileStore, StoreError> {
        create_dir_durably(dir)?;
        // The lock file is made on the first open and never removed: its presence means a
        // store was used here before.
        let used_before = dir.join(format!("{LOCK_PREFIX}.lock")).exists();
        let plain = dir.join(PLAIN_LOG);
        let migrate = if plain.exists() && generations(dir)?.highest.is_none() {
            // The plaintext store takes the same lock: read it whole, then let it go.
            Some(read_plain_store(dir, now)?)
        } else {
            None
        };
        let lock = DirLock::acquire(dir, LOCK_PREFIX).map_err(|e| store_err(dir, e))?;
        let gens = generations(dir)?;
        let mut changed = false;
        for stale in gens.temporary.iter().chain(&gens.superseded) {
            // An interrupted rewrite (`.tmp`) or a generation a later one replaced.
            remove_dir(stale)?;
            changed = true;
        }
        if changed {
            sync_dir(dir).map_err(|e| store_err(dir, e))?;
        }
        let gen = match (gens.highest, migrate) {
            (Some(gen), _) => {
                if plain.exists() {
                    // A migration finished its rename but not its deletion.
                    remove_plain_store(dir)?;
                }
                gen
            }
            (None, Some(old)) => {
                let mut messages = old.messages;
                let mut feed = |f: &mut Sink<'_>| {
                    for (seq, m) in &messages {
                        f(KIND_MESSAGE, *seq, m)?;
                    }
                    Ok(())
                };
                write_generation(
                    dir,
                    1,
                    keyring,
                    &options,
                    Contents {
                        created: old.created,
                        sender: old.sender,
                        target: old.target,
                        messages: &mut feed,
                    },
                )?;
                for (_, m) in &mut messages {
                    zeroize::Zeroize::zeroize(m);
                }
                remove_plain_store(dir)?;
                tracing::warn!(
                    dir = %dir.display(),
                    next_sender = old.sender,
                    next_target = old.target,
                    messages = messages.len(),
                    "message store: migrated a plaintext store to the encrypted store and deleted \
                     the plaintext file (its bytes may stay on the disk until overwritten)"
                );
                1
            }
            (None, None) => {
                let mut none = |_: &mut Sink<'_>| Ok(());
                write_generation(
                    dir,
                    1,
                    keyring,
                    &options,
                    Contents {
                        created: now,
                        sender: 1,
                        target: 1,
                        messages: &mut none,
                    },
                )?;
                if used_before {
                    // Creation was interrupted, or the store was deleted: the numbers start
                    // again at 1, which must not go unnoticed.
                    tracing::warn!(
                        dir = %dir.display(),
                        "message store directory had no store; started a new sequence at 1"
                    );
                } else {
                    tracing::info!(dir = %dir.display(), "created a new encrypted message store");
                }
                1
            }
        };
        let mut store = SealedFileStore {
            dir: dir.to_path_buf(),
            _lock: lock,
            keyring: keyring.clone(),
            options,
            gen,
            gen_dir: gen_path(dir, gen),
            writer: None,
            key_ids: Vec::new(),
            sender: 1,
            target: 1,
            created: now,
            index: BTreeMap::new(),
            recovered_tail: None,
            poisoned: false,
            group_commit: false,
            uncommitted: false,
        };
        store.load()?;
        if let Some(t) = &store.recovered_tail {
            tracing::warn!(
                segment = %t.segment.display(),
                offset = t.offset,
                dropped_bytes = t.truncated_bytes,
                detail = %t.detail,
                next_sender = store.sender,
                next_target = store.target,
                "message store: cut a torn batch at the end of the log"
            );
        }
        Ok(store)
    }

    /// True if `dir` holds an encrypted store (a generation): the plaintext store must not
    /// be opened there, it would start a second, diverging sequence.
    pub fn is_sealed(dir: &Path) -> Result<bool, StoreError> {
        Ok(generations(dir)?.highest.is_some())
    }

    /// The current generation's directory (its sealed log) of the store in `dir`, if `dir`
    /// holds an encrypted store.
    pub fn current_generation(dir: &Path) -> Result<Option<PathBuf>, StoreError> {
        Ok(generations(dir)?.highest.map(|g| gen_path(dir, g)))
    }

    /// Opens the current generation's log: recovery, replay into the in-memory state, and the
    /// writer that continues it.
    fn load(&mut self) -> Result<(), StoreError> {
        let reader = SealedLogReader::open(&self.gen_dir, FIX_STORE_PREFIX, &self.keyring)
            .map_err(|e| store_err(&self.gen_dir, e))?;
        let state = replay(&reader, &self.gen_dir)?;
        let mut key_ids: Vec<String> = Vec::new();
        for s in &reader.segments {
            if !key_ids.contains(&s.key_id) {
                key_ids.push(s.key_id.clone());
            }
        }
        let current = self.keyring.current().id().to_owned();
        if !key_ids.contains(&current) {
            key_ids.push(current);
        }
        self.recovered_tail = reader.report().torn_tail.clone();
        let mut writer = reader
            .into_writer(&self.options)
            .map_err(|e| store_err(&self.gen_dir, e))?;
        // One record per commit: the buffer grows to the largest message, no further.
        writer.shrink_buffer();
        self.writer = Some(writer);
        self.key_ids = key_ids;
        self.sender = state.sender;
        self.target = state.target;
        self.created = state.created;
        self.index = state.index;
        self.poisoned = false;
        Ok(())
    }

    /// The torn batch cut from the end of the log when the store was opened, if the last
    /// write before a crash was incomplete.
    pub fn recovered_tail(&self) -> Option<&TornTail> {
        self.recovered_tail.as_ref()
    }

    /// The session's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the current generation (the sealed log).
    pub fn generation_dir(&self) -> &Path {
        &self.gen_dir
    }

    /// Rewrites the store as a new generation holding only the stored messages and the
    /// current numbers, under the keyring's current master key, and deletes the old one.
    /// Atomic: a crash leaves the old or the new store.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        self.check()?;
        MessageStore::commit(self)?;
        let ring = self.keyring.clone();
        self.rewrite(&ring)
    }

    /// Switches to `keyring` (master-key rotation without a restart): new records are
    /// encrypted under its current key, and a store with segments under any other key is
    /// rewritten (see [`SealedFileStore::compact`]) so that only the current key is needed.
    /// The old segments are read with the keyring the store had, so `keyring` need not hold
    /// the old key.
    pub fn set_keyring(&mut self, keyring: &MasterKeyring) -> Result<(), StoreError> {
        self.check()?;
        MessageStore::commit(self)?;
        if let Some(w) = self.writer.as_mut() {
            w.set_keyring(keyring)
                .map_err(|e| store_err(&self.gen_dir, e))?;
        }
        let reading = std::mem::replace(&mut self.keyring, keyring.clone());
        let current = keyring.current().id();
        if self.key_ids.iter().all(|k| k == current) {
            return Ok(());
        }
        // Until the rewrite is done, reads need the old keys as well as the new one.
        let r = self.rewrite(&reading);
        if r.is_err() && keyring.get(reading.current().id()).is_none() {
            tracing::error!(
                dir = %self.dir.display(),
                "message store: re-encryption under the new master key failed, and the new \
                 keyring lacks the old key: the store refuses writes until it is reopened"
            );
            self.poisoned = true;
        }
        r
    }

    /// Writes the current state (the latest version of every stored message, read with
    /// `reading`, and the numbers) as the next generation under the current key, and switches
    /// to it.
    fn rewrite(&mut self, reading: &MasterKeyring) -> Result<(), StoreError> {
        let reader = SealedLogReader::open_read_only(&self.gen_dir, FIX_STORE_PREFIX, reading)
            .map_err(|e| store_err(&self.gen_dir, e))?;
        let index = std::mem::take(&mut self.index);
        let gen_dir = self.gen_dir.clone();
        let mut feed = |f: &mut Sink<'_>| {
            let mut records = reader.records(Seq(0)).map_err(|e| store_err(&gen_dir, e))?;
            while let Some((seq, payload)) =
                records.next_record().map_err(|e| store_err(&gen_dir, e))?
            {
                if let Some((msg_seq, message)) = decode_message(payload) {
                    // Only the latest version of each message (a MsgSeqNum reused after a
                    // lowered sender number replaced the earlier one).
                    if index.get(&msg_seq) == Some(&seq.0) {
                        f(KIND_MESSAGE, msg_seq, message)?;
                    }
                } else if payload.first() == Some(&KIND_RECEIVED) {
                    // The log of received messages goes along (replay checked its length).
                    f(
                        KIND_RECEIVED,
                        u64_at(payload, 1),
                        &payload[MESSAGE_PREFIX_LEN..],
                    )?;
                }
            }
            Ok(())
        };
        let written = write_generation(
            &self.dir,
            self.gen + 1,
            &self.keyring,
            &self.options,
            Contents {
                created: self.created,
                sender: self.sender,
                target: self.target,
                messages: &mut feed,
            },
        );
        self.index = index;
        written?;
        self.install(self.gen + 1)
    }

    /// Makes generation `next` (renamed into place) the store: reopens it, then deletes the
    /// previous generation.
    fn install(&mut self, next: u64) -> Result<(), StoreError> {
        // From here on the disk holds the new generation: the old writer must go (with any
        // grouped changes: the new generation holds the state), and if anything below fails
        // the in-memory state is behind the disk until a reopen.
        self.writer = None;
        self.uncommitted = false;
        self.poisoned = true;
        let old = std::mem::replace(&mut self.gen_dir, gen_path(&self.dir, next));
        self.gen = next;
        self.load()?;
        remove_dir(&old)?;
        sync_dir(&self.dir).map_err(|e| store_err(&self.dir, e))
    }

    /// The master keys the current generation's segments are encrypted under.
    pub fn key_ids(&self) -> &[String] {
        &self.key_ids
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.poisoned || self.writer.is_none() {
            return Err(StoreError::Poisoned {
                path: self.gen_dir.clone(),
            });
        }
        Ok(())
    }

    /// Group commit: from now on changes are appended in memory and written together by
    /// [`MessageStore::commit`] (one write, and one fsync under [`SyncPolicy::Always`], for
    /// all of them), which a session calls once per read and once before sending; reads and
    /// rewrites commit first, and so does dropping the store. Off (the default), each change
    /// is written before its call returns.
    pub fn set_group_commit(&mut self, on: bool) -> Result<(), StoreError> {
        if !on {
            self.commit()?;
        }
        self.group_commit = on;
        Ok(())
    }

    /// Appends one record and, unless commits are grouped, commits it (fsync per the
    /// policy); returns its log sequence number.
    fn append(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<u64, StoreError> {
        self.check()?;
        let Some(w) = self.writer.as_mut() else {
            return Err(StoreError::Poisoned {
                path: self.gen_dir.clone(),
            });
        };
        let group = self.group_commit;
        let r = w.append_with(encode).and_then(|seq| {
            if group {
                Ok(seq)
            } else {
                w.commit().map(|_| seq)
            }
        });
        self.uncommitted |= group && r.is_ok();
        match r {
            Ok(seq) => Ok(seq.0),
            Err(e) => {
                // The writer refuses to go on after a failed write; so does the store.
                self.poisoned = true;
                Err(store_err(&self.gen_dir, e))
            }
        }
    }

    fn write_seqs(&mut self, sender: SeqNum, target: SeqNum) -> Result<(), StoreError> {
        self.append(|b| encode_seqs(b, sender, target))?;
        self.sender = sender;
        self.target = target;
        Ok(())
    }
}

impl MessageStore for SealedFileStore {
    fn next_sender_seq(&self) -> SeqNum {
        self.sender
    }

    fn next_target_seq(&self) -> SeqNum {
        self.target
    }

    fn set_next_sender_seq(&mut self, seq: SeqNum) -> Result<(), StoreError> {
        if seq == self.sender {
            return Ok(());
        }
        self.write_seqs(seq, self.target)
    }

    fn set_next_target_seq(&mut self, seq: SeqNum) -> Result<(), StoreError> {
        if seq == self.target {
            return Ok(());
        }
        self.write_seqs(self.sender, seq)
    }

    fn save_outbound(&mut self, seq: SeqNum, message: &[u8]) -> Result<(), StoreError> {
        if message.len() > MAX_STORED_MESSAGE_LEN {
            return Err(StoreError::MessageTooLarge {
                len: message.len(),
                max: MAX_STORED_MESSAGE_LEN,
            });
        }
        let at = self.append(|b| encode_message(b, seq, message))?;
        self.index.insert(seq, at);
        self.sender = seq.saturating_add(1);
        Ok(())
    }

    fn save_inbound(&mut self, seq: SeqNum, message: &[u8]) -> Result<(), StoreError> {
        if message.len() > MAX_STORED_MESSAGE_LEN {
            return Err(StoreError::MessageTooLarge {
                len: message.len(),
                max: MAX_STORED_MESSAGE_LEN,
            });
        }
        self.append(|b| encode_kind(b, KIND_RECEIVED, seq, message))?;
        Ok(())
    }

    fn outbound_range(
        &mut self,
        begin: SeqNum,
        end: SeqNum,
        out: &mut Vec<(SeqNum, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        if begin > end {
            return Ok(());
        }
        // The log on disk must hold every stored message.
        self.commit()?;
        // Log record → MsgSeqNum of the messages asked for.
        let wanted: BTreeMap<u64, SeqNum> = self
            .index
            .range(begin..=end)
            .map(|(&msg_seq, &at)| (at, msg_seq))
            .collect();
        let (Some((&first, _)), Some((&last, _))) =
            (wanted.first_key_value(), wanted.last_key_value())
        else {
            return Ok(());
        };
        // Everything is written (committed above), so a read-only view of the log sees it; a
        // resend decrypts from the segment holding the first message on.
        let reader =
            SealedLogReader::open_read_only(&self.gen_dir, FIX_STORE_PREFIX, &self.keyring)
                .map_err(|e| store_err(&self.gen_dir, e))?;
        let mut records = reader
            .records(Seq(first - 1))
            .map_err(|e| store_err(&self.gen_dir, e))?;
        let mut found: BTreeMap<SeqNum, Vec<u8>> = BTreeMap::new();
        while let Some((seq, payload)) = records
            .next_record()
            .map_err(|e| store_err(&self.gen_dir, e))?
        {
            if seq.0 > last {
                break;
            }
            let Some(&msg_seq) = wanted.get(&seq.0) else {
                continue;
            };
            match decode_message(payload) {
                Some((s, message)) if s == msg_seq => {
                    found.insert(msg_seq, message.to_vec());
                }
                _ => {
                    return Err(StoreError::Corrupt {
                        path: records.segment().to_path_buf(),
                        offset: records.batch_offset(),
                        detail: format!(
                            "record {seq} should hold the message with MsgSeqNum {msg_seq}"
                        ),
                    })
                }
            }
        }
        if found.len() != wanted.len() {
            return Err(StoreError::Corrupt {
                path: self.gen_dir.clone(),
                offset: 0,
                detail: format!(
                    "{} stored message(s) of MsgSeqNum {begin}..={end} are missing from the log",
                    wanted.len() - found.len()
                ),
            });
        }
        out.extend(found);
        Ok(())
    }

    fn reset(&mut self, now: UtcTimestamp) -> Result<(), StoreError> {
        // A reset may follow a failed write: the new generation replaces whatever the old
        // one holds, so it needs no sound writer (as the plaintext store's rewrite does not).
        let mut none = |_: &mut Sink<'_>| Ok(());
        write_generation(
            &self.dir,
            self.gen + 1,
            &self.keyring,
            &self.options,
            Contents {
                created: now,
                sender: 1,
                target: 1,
                messages: &mut none,
            },
        )?;
        self.install(self.gen + 1)
    }

    fn creation_time(&self) -> UtcTimestamp {
        self.created
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.check()?;
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        if let Err(e) = w.sync() {
            self.poisoned = true;
            return Err(store_err(&self.gen_dir, e));
        }
        self.uncommitted = false;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        if !self.uncommitted {
            return Ok(());
        }
        self.check()?;
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        if let Err(e) = w.commit() {
            // The writer refuses to go on after a failed write; so does the store.
            self.poisoned = true;
            return Err(store_err(&self.gen_dir, e));
        }
        self.uncommitted = false;
        Ok(())
    }

    fn has_uncommitted(&self) -> bool {
        self.uncommitted
    }

    /// Grouped: the commit writes the open batch; otherwise each change commits a record of a
    /// typical message's size at most (a larger one may start a segment unannounced).
    fn may_wait_for_disk(&self) -> bool {
        match &self.writer {
            Some(w) if self.group_commit => self.uncommitted && w.commit_may_wait(0),
            Some(w) => w.commit_may_wait(TYPICAL_MESSAGE_LEN),
            None => false,
        }
    }
}

impl Drop for SealedFileStore {
    fn drop(&mut self) {
        // Grouped changes not committed yet: written now, best effort (a session commits
        // before it sends anything, so nothing the counterparty saw depends on this).
        let _ = MessageStore::commit(self);
    }
}

/// What a session's store holds, as [`SealedFileStore::read_messages`] reads it for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreContents {
    /// When the current sequence started (the last reset).
    pub created: UtcTimestamp,
    /// MsgSeqNum(34) of the session's next outbound message.
    pub next_sender_seq: SeqNum,
    /// MsgSeqNum(34) expected of the counterparty's next message.
    pub next_target_seq: SeqNum,
    /// The stored messages asked for, in the order they were stored: every outbound one,
    /// and the received ones of a session with `log_inbound`.
    pub messages: Vec<StoredMessage>,
    /// A batch at the end did not authenticate: one being written, left out.
    pub torn_tail: bool,
}

/// Which way a [`StoredMessage`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent to the counterparty.
    Sent,
    /// Received from it.
    Received,
}

/// One message of [`StoreContents`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Sent or received.
    pub direction: Direction,
    /// Its MsgSeqNum(34) (0 for a received message without one).
    pub seq: SeqNum,
    /// The message.
    pub bytes: Vec<u8>,
}

impl SealedFileStore {
    /// Reads the store in `dir` without taking it and without changing a file, so also while
    /// the server runs: the current generation's numbers and its messages, sent and received,
    /// with `begin <= MsgSeqNum <= end`. `None` if `dir` holds no encrypted store. A reset or
    /// compaction that replaces the generation meanwhile makes it fail (read again).
    pub fn read_messages(
        dir: &Path,
        keyring: &MasterKeyring,
        begin: SeqNum,
        end: SeqNum,
    ) -> Result<Option<StoreContents>, StoreError> {
        let Some(gen_dir) = Self::current_generation(dir)? else {
            return Ok(None);
        };
        let reader = SealedLogReader::open_read_only(&gen_dir, FIX_STORE_PREFIX, keyring)
            .map_err(|e| store_err(&gen_dir, e))?;
        let state = replay(&reader, &gen_dir)?;
        let mut messages = Vec::new();
        let mut records = reader.records(Seq(0)).map_err(|e| store_err(&gen_dir, e))?;
        while let Some((_, payload)) = records.next_record().map_err(|e| store_err(&gen_dir, e))? {
            let direction = match payload.first() {
                Some(&KIND_MESSAGE) => Direction::Sent,
                Some(&KIND_RECEIVED) => Direction::Received,
                _ => continue,
            };
            // Both kinds share the layout: kind, u64 MsgSeqNum, the bytes (checked by replay).
            let seq = u64_at(payload, 1);
            if (begin..=end).contains(&seq) {
                messages.push(StoredMessage {
                    direction,
                    seq,
                    bytes: payload[MESSAGE_PREFIX_LEN..].to_vec(),
                });
            }
        }
        Ok(Some(StoreContents {
            created: state.created,
            next_sender_seq: state.sender,
            next_target_seq: state.target,
            messages,
            torn_tail: reader.report().torn_tail.is_some(),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Records

fn encode_header(b: &mut Vec<u8>, created: UtcTimestamp) {
    b.push(KIND_HEADER);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&created.nanos().to_le_bytes());
}

fn encode_seqs(b: &mut Vec<u8>, sender: SeqNum, target: SeqNum) {
    b.push(KIND_SEQS);
    b.extend_from_slice(&sender.to_le_bytes());
    b.extend_from_slice(&target.to_le_bytes());
}

fn encode_message(b: &mut Vec<u8>, seq: SeqNum, message: &[u8]) {
    encode_kind(b, KIND_MESSAGE, seq, message);
}

/// A Message (`KIND_MESSAGE`) or Received (`KIND_RECEIVED`) record: same layout.
fn encode_kind(b: &mut Vec<u8>, kind: u8, seq: SeqNum, message: &[u8]) {
    b.push(kind);
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(message);
}

/// A Message record's MsgSeqNum and bytes.
fn decode_message(payload: &[u8]) -> Option<(SeqNum, &[u8])> {
    if payload.len() < MESSAGE_PREFIX_LEN || payload[0] != KIND_MESSAGE {
        return None;
    }
    let seq = u64::from_le_bytes(payload[1..9].try_into().ok()?);
    Some((seq, &payload[MESSAGE_PREFIX_LEN..]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Replays a generation's records into its state. The records authenticated, so a record
/// that does not decode is a bug or a forgery under the right key: corruption either way.
fn replay(reader: &SealedLogReader, gen_dir: &Path) -> Result<State, StoreError> {
    let mut records = reader.records(Seq(0)).map_err(|e| store_err(gen_dir, e))?;
    let mut state: Option<State> = None;
    while let Some((seq, payload)) = records.next_record().map_err(|e| store_err(gen_dir, e))? {
        let record = parse_record(payload);
        let problem = match (state.as_mut(), record) {
            (None, Record::Header { version, created }) if version == FORMAT_VERSION => {
                state = Some(State {
                    sender: 1,
                    target: 1,
                    created,
                    index: BTreeMap::new(),
                });
                None
            }
            (None, Record::Header { version, .. }) => Some(format!(
                "store format version {version}; this build reads {FORMAT_VERSION}"
            )),
            (None, _) => Some("the first record is not a Header".to_owned()),
            (Some(_), Record::Header { .. }) => Some("a second Header record".to_owned()),
            (Some(st), Record::Seqs { sender, target }) => {
                st.sender = sender;
                st.target = target;
                None
            }
            (Some(st), Record::Message { seq: msg_seq }) => {
                st.index.insert(msg_seq, seq.0);
                st.sender = msg_seq.saturating_add(1);
                None
            }
            (Some(_), Record::Received) => None,
            (Some(_), Record::Bad(detail)) => Some(detail),
        };
        if let Some(detail) = problem {
            return Err(StoreError::Corrupt {
                path: records.segment().to_path_buf(),
                offset: records.batch_offset(),
                detail: format!("record {seq}: {detail}"),
            });
        }
    }
    // A generation is renamed into place only once its header is durable.
    state.ok_or_else(|| StoreError::Corrupt {
        path: gen_dir.to_path_buf(),
        offset: 0,
        detail: "the store has no Header record".into(),
    })
}

/// A store record as replay needs it.
enum Record {
    Header { version: u32, created: UtcTimestamp },
    Seqs { sender: SeqNum, target: SeqNum },
    Message { seq: SeqNum },
    Received,
    Bad(String),
}

fn parse_record(payload: &[u8]) -> Record {
    match payload.first() {
        Some(&KIND_HEADER) if payload.len() == HEADER_LEN => Record::Header {
            version: u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]),
            created: UtcTimestamp::from_nanos(u64_at(payload, 5) as i64),
        },
        Some(&KIND_SEQS) if payload.len() == SEQS_LEN => Record::Seqs {
            sender: u64_at(payload, 1),
            target: u64_at(payload, 9),
        },
        Some(&KIND_MESSAGE) if payload.len() >= MESSAGE_PREFIX_LEN => Record::Message {
            seq: u64_at(payload, 1),
        },
        Some(&KIND_RECEIVED) if payload.len() >= MESSAGE_PREFIX_LEN => Record::Received,
        Some(kind) => Record::Bad(format!(
            "record kind {kind} of {} bytes is not a store record",
            payload.len()
        )),
        None => Record::Bad("empty record".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Generations

/// The generation directories of a session directory.
#[derive(Default)]
struct Generations {
    highest: Option<u64>,
    /// Complete generations below the highest: superseded, to delete.
    superseded: Vec<PathBuf>,
    /// Generations being written when a crash came: to delete.
    temporary: Vec<PathBuf>,
}

fn gen_name(gen: u64) -> String {
    format!("{GEN_PREFIX}{gen:020}")
}

fn gen_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(gen_name(gen))
}

fn parse_gen(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(GEN_PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn generations(dir: &Path) -> Result<Generations, StoreError> {
    let mut complete: Vec<(u64, PathBuf)> = Vec::new();
    let mut out = Generations::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_error(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(TMP_SUFFIX) {
            if parse_gen(stem).is_some() {
                out.temporary.push(entry.path());
            }
        } else if let Some(gen) = parse_gen(name) {
            complete.push((gen, entry.path()));
        }
    }
    complete.sort_unstable();
    if let Some((gen, _)) = complete.pop() {
        out.highest = Some(gen);
    }
    out.superseded = complete.into_iter().map(|(_, p)| p).collect();
    Ok(out)
}

/// Writes generation `gen` of the store in `dir`: under its temporary name, fsynced, then
/// renamed into place with the rename made durable (module documentation).
fn write_generation(
    dir: &Path,
    gen: u64,
    keyring: &MasterKeyring,
    options: &LogOptions,
    contents: Contents<'_>,
) -> Result<(), StoreError> {
    let final_dir = gen_path(dir, gen);
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", gen_name(gen)));
    if tmp.exists() {
        remove_dir(&tmp)?;
    }
    let written = (|| {
        // Buffered batches and one fsync at the end: nothing is acknowledged before the
        // rename, so the generation needs to be durable only then.
        let bulk = LogOptions {
            fsync: FsyncPolicy::Never,
            segment_bytes: options.segment_bytes,
        };
        let (mut w, _) = SealedLogWriter::open(&tmp, FIX_STORE_PREFIX, keyring, &bulk)
            .map_err(|e| store_err(&tmp, e))?;
        w.append_with(|b| encode_header(b, contents.created))
            .map_err(|e| store_err(&tmp, e))?;
        (contents.messages)(&mut |kind, seq, m| {
            w.append_with(|b| encode_kind(b, kind, seq, m))
                .map(|_| ())
                .map_err(|e| store_err(&tmp, e))
        })?;
        w.append_with(|b| encode_seqs(b, contents.sender, contents.target))
            .map_err(|e| store_err(&tmp, e))?;
        w.close().map_err(|e| store_err(&tmp, e))?;
        Ok(())
    })();
    if let Err(e) = written {
        // The store is untouched; the half-written generation is garbage.
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &final_dir).map_err(|e| io_error(&final_dir, e))?;
    sync_dir(dir).map_err(|e| store_err(dir, e))
}

fn remove_dir(path: &Path) -> Result<(), StoreError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Deletes the plaintext store's files once its contents are durable in a generation.
fn remove_plain_store(dir: &Path) -> Result<(), StoreError> {
    for name in [PLAIN_LOG, PLAIN_TEMP] {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, e)),
        }
    }
    sync_dir(dir).map_err(|e| store_err(dir, e))
}

/// What a plaintext store held.
struct PlainStore {
    sender: SeqNum,
    target: SeqNum,
    created: UtcTimestamp,
    messages: Vec<(SeqNum, Vec<u8>)>,
}

/// Reads a plaintext store whole (its own recovery runs: a torn tail is cut).
fn read_plain_store(dir: &Path, now: UtcTimestamp) -> Result<PlainStore, StoreError> {
    let mut plain = FileStore::open(dir, now, SyncPolicy::Always)?;
    let mut messages = Vec::new();
    plain.outbound_range(0, SeqNum::MAX, &mut messages)?;
    Ok(PlainStore {
        sender: plain.next_sender_seq(),
        target: plain.next_target_seq(),
        created: plain.creation_time(),
        messages,
    })
}

/// Creates `dir` and fsyncs the parent of every directory it had to create, so a store made
/// durable inside it cannot vanish with its directory on a power cut.
fn create_dir_durably(dir: &Path) -> Result<(), StoreError> {
    let missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .map(Path::to_owned)
        .collect();
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    for created in &missing {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent).map_err(|e| store_err(parent, e))?;
    }
    Ok(())
}

fn io_error(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A sealed-log error as the message store's error, keeping the file and offset.
fn store_err(at: &Path, e: JournalError) -> StoreError {
    if let JournalError::WrongKey { segment, .. } = &e {
        return StoreError::WrongKey {
            path: segment.clone(),
            detail: e.to_string(),
        };
    }
    match e {
        JournalError::Io { path, source } => StoreError::Io { path, source },
        JournalError::Corrupt {
            segment,
            offset,
            detail,
        } => StoreError::Corrupt {
            path: segment,
            offset,
            detail,
        },
        e @ JournalError::Keyring(_) => StoreError::WrongKey {
            path: at.to_path_buf(),
            detail: e.to_string(),
        },
        JournalError::Locked { dir, prefix } => StoreError::Locked {
            path: dir.join(format!("{prefix}.lock")),
        },
        JournalError::Poisoned { path, .. } => StoreError::Poisoned { path },
        JournalError::TooLarge { len, .. } => StoreError::MessageTooLarge {
            len,
            max: MAX_STORED_MESSAGE_LEN,
        },
        e => StoreError::Io {
            path: at.to_path_buf(),
            source: io::Error::other(e.to_string()),
        },
    }
}
