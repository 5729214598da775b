//! Durable storage of a FIX session's sequence numbers and outbound messages.
//!
//! A restart must resume the session: sequence numbers continue and a ResendRequest after the
//! restart is served from here.
//!
//! - [`MemoryStore`]: in memory only, for tests and sessions that need no durability.
//! - [`FileStore`]: an append-only, checksummed log per session that survives a process crash
//!   (and, with [`SyncPolicy::Always`], a power cut). Plaintext: the server uses it only when
//!   it has no master key; otherwise the journal crate's `SealedFileStore` (the same semantics,
//!   AES-256-GCM at rest) implements [`MessageStore`].

use portcullis_fix::{SeqNum, UtcTimestamp};

mod file;

pub use file::{FileStore, SyncPolicy, MAX_STORED_MESSAGE_LEN};

/// Errors of a message store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error, with the file it concerns.
    #[error("message store {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store's content is damaged somewhere other than a torn tail.
    #[error("message store {path} is corrupt at byte {offset}: {detail}")]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// Byte offset of the first bad record.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// The file exists but is not a message store this version can read (bad magic, unknown
    /// format version, too short).
    #[error("{path} is not a message store: {detail}")]
    NotAStore {
        /// The file.
        path: std::path::PathBuf,
        /// Why it was not recognised.
        detail: String,
    },
    /// Another open store (in this or another process) holds the session's directory.
    #[error("message store {path} is in use by another process or session")]
    Locked {
        /// The lock file that could not be taken.
        path: std::path::PathBuf,
    },
    /// A message too large to be stored was offered.
    #[error("message of {len} bytes exceeds the store's maximum of {max} bytes")]
    MessageTooLarge {
        /// The message's length.
        len: usize,
        /// The largest message the store accepts.
        max: usize,
    },
    /// The store is encrypted and cannot be read with the master keyring at hand: a file was
    /// encrypted under a master key the keyring lacks, or under different key bytes with the
    /// same id. Nothing is decrypted or changed.
    #[error("message store {path}: {detail}")]
    WrongKey {
        /// The file encrypted under the missing key.
        path: std::path::PathBuf,
        /// Which key is missing or wrong.
        detail: String,
    },
    /// An earlier write or fsync failed, so what is on disk is unknown; the store refuses
    /// further writes until it is reopened (which recovers from the log).
    #[error("message store {path} refuses writes after an earlier write failure; reopen it")]
    Poisoned {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// Per-session storage of sequence numbers and sent messages.
pub trait MessageStore: Send {
    /// The MsgSeqNum of the next message we send.
    fn next_sender_seq(&self) -> SeqNum;
    /// The MsgSeqNum we expect on the next message we receive.
    fn next_target_seq(&self) -> SeqNum;
    /// Sets the next outbound MsgSeqNum.
    fn set_next_sender_seq(&mut self, seq: SeqNum) -> Result<(), StoreError>;
    /// Sets the next expected inbound MsgSeqNum.
    fn set_next_target_seq(&mut self, seq: SeqNum) -> Result<(), StoreError>;
    /// Records an outbound message sent with MsgSeqNum `seq` and sets the next sender sequence
    /// number to `seq + 1`, as one atomic step.
    fn save_outbound(&mut self, seq: SeqNum, message: &[u8]) -> Result<(), StoreError>;
    /// Keeps a message received with MsgSeqNum `seq` (0 if it had none), for operators: a
    /// log, never read by the session. Written with the next commit. A store that keeps no
    /// received messages, the default, ignores it.
    fn save_inbound(&mut self, seq: SeqNum, message: &[u8]) -> Result<(), StoreError> {
        let _ = (seq, message);
        Ok(())
    }
    /// Appends to `out` the stored outbound messages with `begin <= seq <= end`, in order.
    /// Sequence numbers with no stored message (never sent, or lost to a reset) are skipped.
    fn outbound_range(
        &mut self,
        begin: SeqNum,
        end: SeqNum,
        out: &mut Vec<(SeqNum, Vec<u8>)>,
    ) -> Result<(), StoreError>;
    /// Starts a new sequence: both numbers back to 1, stored messages dropped, creation time now.
    fn reset(&mut self, now: UtcTimestamp) -> Result<(), StoreError>;
    /// When the current sequence was started (the last reset).
    fn creation_time(&self) -> UtcTimestamp;
    /// Makes everything written so far durable (fsync).
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Writes the changes earlier calls left uncommitted, together: one write (and one fsync
    /// where the store syncs each commit) for a whole read's worth of messages. A store that
    /// writes each change before its call returns, the default, has nothing to do. The
    /// session commits before a received message reaches its application and before anything
    /// it queued can be sent (see [`crate::Session::commit_store`]).
    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// True while changes wait for [`MessageStore::commit`].
    fn has_uncommitted(&self) -> bool {
        false
    }
    /// True if the next change written at once (a `set_*` or `save_outbound` of a store that
    /// does not group its commits) or the next [`MessageStore::commit`] may wait for the disk:
    /// an fsync, a new segment. The transport then makes the call where blocking is allowed,
    /// so that other connections go on meanwhile. Must be cheap; the default is false.
    fn may_wait_for_disk(&self) -> bool {
        false
    }
}

/// A store kept in memory only, for tests and for sessions that need no durability.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    sender: SeqNum,
    target: SeqNum,
    created: UtcTimestamp,
    messages: std::collections::BTreeMap<SeqNum, Vec<u8>>,
}

impl MemoryStore {
    /// An empty store starting at sequence number 1 on both sides.
    pub fn new(now: UtcTimestamp) -> Self {
        Self {
            sender: 1,
            target: 1,
            created: now,
            messages: Default::default(),
        }
    }
}

impl MessageStore for MemoryStore {
    fn next_sender_seq(&self) -> SeqNum {
        self.sender
    }
    fn next_target_seq(&self) -> SeqNum {
        self.target
    }
    fn set_next_sender_seq(&mut self, seq: SeqNum) -> Result<(), StoreError> {
        self.sender = seq;
        Ok(())
    }
    fn set_next_target_seq(&mut self, seq: SeqNum) -> Result<(), StoreError> {
        self.target = seq;
        Ok(())
    }
    fn save_outbound(&mut self, seq: SeqNum, message: &[u8]) -> Result<(), StoreError> {
        self.messages.insert(seq, message.to_vec());
        self.sender = seq + 1;
        Ok(())
    }
    fn outbound_range(
        &mut self,
        begin: SeqNum,
        end: SeqNum,
        out: &mut Vec<(SeqNum, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        if begin <= end {
            out.extend(
                self.messages
                    .range(begin..=end)
                    .map(|(s, m)| (*s, m.clone())),
            );
        }
        Ok(())
    }
    fn reset(&mut self, now: UtcTimestamp) -> Result<(), StoreError> {
        *self = Self::new(now);
        Ok(())
    }
    fn creation_time(&self) -> UtcTimestamp {
        self.created
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
