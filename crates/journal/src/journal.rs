//! The journal: the sealed log of [`JournalRecord`]s, with snapshots and compaction.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use portcullis_auth::MasterKeyring;

use crate::error::{corrupt, io_err, JournalError, Result};
use crate::format::{list, sync_dir};
use crate::keys::KeySet;
use crate::log::{LogRecords, RecoveryReport, SealedLogReader, SealedLogWriter};
use crate::record::JournalRecord;
use crate::snapshot::{self, Snapshot};
use crate::{JournalConfig, Seq, JOURNAL_PREFIX};

/// Opens the journal for recovery and replay: see [`SealedLogReader::open`]. Typical start-up:
///
/// ```no_run
/// # use portcullis_journal::*;
/// # fn main() -> Result<(), JournalError> {
/// # let keyring = portcullis_auth::MasterKeyring::generate("k1").unwrap();
/// let config = JournalConfig::new("var/journal");
/// let reader = JournalReader::open(&config.dir, &keyring)?; // cuts a torn tail
/// eprintln!("journal: {}", reader.report());
/// let after = match reader.latest_snapshot()? {
///     Some(snap) => { /* restore snap.state, check snap.state_hash */ snap.seq }
///     None => Seq(0),
/// };
/// for item in reader.replay(after)? {
///     let (seq, record) = item?; // a damaged batch stops the start-up here
///     /* apply record to the core's state */
/// }
/// let mut writer = reader.into_writer(&config)?; // continues at last_seq + 1
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JournalReader {
    log: SealedLogReader,
}

impl JournalReader {
    /// Opens the journal in `dir` (created if missing) with the lock, cutting a torn tail.
    pub fn open(dir: impl AsRef<Path>, keyring: &MasterKeyring) -> Result<Self> {
        Ok(Self {
            log: SealedLogReader::open(dir, JOURNAL_PREFIX, keyring)?,
        })
    }

    /// Opens the journal without the lock and without changing any file (tools).
    pub fn open_read_only(dir: impl AsRef<Path>, keyring: &MasterKeyring) -> Result<Self> {
        Ok(Self {
            log: SealedLogReader::open_read_only(dir, JOURNAL_PREFIX, keyring)?,
        })
    }

    /// What the open found and repaired.
    pub fn report(&self) -> &RecoveryReport {
        self.log.report()
    }

    /// The last record (0 for an empty journal).
    pub fn last_seq(&self) -> Seq {
        self.log.last_seq()
    }

    /// The first record present.
    pub fn first_seq(&self) -> Seq {
        self.log.first_seq()
    }

    /// The latest snapshot, decrypted and authenticated, or `None`.
    pub fn latest_snapshot(&self) -> Result<Option<Snapshot>> {
        snapshot::latest(&self.log.dir, JOURNAL_PREFIX, &self.log.keys)
    }

    /// The records after `after` (a snapshot's seq, or `Seq(0)` for all), decoded. Each batch
    /// is verified before its records are returned; the first error ends the iteration.
    pub fn replay(&self, after: Seq) -> Result<Replay<'_>> {
        Ok(Replay {
            cursor: self.log.records(after)?,
            done: false,
        })
    }

    /// The underlying sealed log.
    pub fn log(&self) -> &SealedLogReader {
        &self.log
    }

    /// Turns the reader into the journal's writer (keeping the lock), with `config`'s fsync
    /// policy and segment size.
    pub fn into_writer(self, config: &JournalConfig) -> Result<JournalWriter> {
        config.validate()?;
        Ok(JournalWriter {
            log: self.log.into_writer(&config.log_options())?,
        })
    }
}

/// The records of a replay: `(Seq, JournalRecord)` in order, or the error that stopped it
/// (naming the segment file and the batch's byte offset).
pub struct Replay<'r> {
    cursor: LogRecords<'r>,
    done: bool,
}

impl Replay<'_> {
    /// What has been read so far.
    pub fn stats(&self) -> crate::LogStats {
        self.cursor.stats()
    }
}

impl Iterator for Replay<'_> {
    type Item = Result<(Seq, JournalRecord)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let decoded = match self.cursor.next_record() {
            Ok(Some((seq, payload))) => (seq, JournalRecord::decode(payload)),
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        match decoded {
            (seq, Ok(rec)) => Some(Ok((seq, rec))),
            (seq, Err(e)) => {
                self.done = true;
                Some(Err(corrupt(
                    self.cursor.segment(),
                    self.cursor.batch_offset(),
                    format!("record seq {seq}: {e}"),
                )))
            }
        }
    }
}

/// What [`JournalWriter::compact`] deleted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactReport {
    /// The snapshot everything deleted is covered by.
    pub snapshot_seq: Seq,
    /// Segment files deleted.
    pub segments_removed: Vec<PathBuf>,
    /// Older snapshot files deleted.
    pub snapshots_removed: usize,
    /// Bytes freed by the segments.
    pub bytes_freed: u64,
}

/// Appends [`JournalRecord`]s to the journal: group commit and the fsync policy of
/// [`crate::SealedLogWriter`], plus snapshots and compaction.
///
/// The journal thread's loop, fed by a lock-free queue from the core thread:
///
/// ```no_run
/// # use portcullis_journal::*;
/// # fn pop() -> Option<JournalRecord> { None }
/// # fn release_acks_up_to(_: Seq) {}
/// # fn main() -> Result<(), JournalError> {
/// # let keyring = portcullis_auth::MasterKeyring::generate("k1").unwrap();
/// let config = JournalConfig::new("var/journal");
/// let (mut writer, report) = JournalWriter::open(&config, &keyring)?;
/// loop {
///     let mut drained = 0;
///     while let Some(record) = pop() {
///         writer.append(&record)?;
///         drained += 1;
///     }
///     if drained > 0 {
///         writer.commit()?; // one write + (under "always") one fsync for the whole drain
///     } else {
///         writer.poll()?; // "interval_ms": fsync the rest of a burst once due
///     }
///     release_acks_up_to(writer.ack_seq());
///     # break;
/// }
/// # Ok(()) }
/// ```
pub struct JournalWriter {
    log: SealedLogWriter,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl JournalWriter {
    /// Opens the journal of `config.dir` for appending: recovery (lock, torn tail cut) without
    /// replay, then appends continue at the last record + 1 in a new segment.
    pub fn open(config: &JournalConfig, keyring: &MasterKeyring) -> Result<(Self, RecoveryReport)> {
        config.validate()?;
        let reader = JournalReader::open(&config.dir, keyring)?;
        let report = reader.report().clone();
        Ok((reader.into_writer(config)?, report))
    }

    /// Appends a record to the open batch and returns its sequence number. Encoded straight
    /// into the batch buffer: no allocation once the buffer has grown to the drain size.
    /// Not durable until [`JournalWriter::commit`] (see [`JournalWriter::durable_seq`]).
    pub fn append(&mut self, record: &JournalRecord) -> Result<Seq> {
        if let JournalRecord::Limits { data, .. } = record {
            if record.check().is_err() {
                return Err(JournalError::TooLarge {
                    len: data.len(),
                    max: crate::MAX_LIMITS_BYTES,
                });
            }
        }
        self.log.append_with(|buf| record.encode(buf))
    }

    /// Seals and writes the open batch, fsyncing per the policy; returns the durable seq.
    pub fn commit(&mut self) -> Result<Seq> {
        self.log.commit()
    }

    /// Seals, writes and fsyncs now, whatever the policy.
    pub fn sync(&mut self) -> Result<Seq> {
        self.log.sync()
    }

    /// `interval_ms`: fsyncs written records once due. Call when idle.
    pub fn poll(&mut self) -> Result<Seq> {
        self.log.poll()
    }

    /// When written records become due for an fsync (`interval_ms` only).
    pub fn sync_deadline(&self) -> Option<Instant> {
        self.log.sync_deadline()
    }

    /// The last record fsynced.
    pub fn durable_seq(&self) -> Seq {
        self.log.durable_seq()
    }

    /// fsyncs done so far, and the last one's duration (for metrics).
    pub fn fsync_stats(&self) -> (u64, std::time::Duration) {
        self.log.fsync_stats()
    }

    /// The last record written to the operating system.
    pub fn written_seq(&self) -> Seq {
        self.log.written_seq()
    }

    /// The last record whose acknowledgement may leave: the durable seq under
    /// `fsync = "always"`, the written seq otherwise.
    pub fn ack_seq(&self) -> Seq {
        self.log.ack_seq()
    }

    /// The sequence number of the next append.
    pub fn next_seq(&self) -> Seq {
        self.log.next_seq()
    }

    /// Master-key rotation without a restart: the next batch starts a new segment under the
    /// keyring's current key.
    pub fn set_keyring(&mut self, keyring: &MasterKeyring) -> Result<()> {
        self.log.set_keyring(keyring)
    }

    /// Seals, writes and fsyncs everything (shutdown), then releases the lock. Returns the
    /// durable seq.
    pub fn close(self) -> Result<Seq> {
        self.log.close()
    }

    /// The underlying sealed log writer.
    pub fn log(&self) -> &SealedLogWriter {
        &self.log
    }

    /// Stores a snapshot of the server's state after record `seq`, encrypted under the current
    /// key, atomically (temporary file, fsync, rename, directory fsync). The journal is first
    /// committed and fsynced, so a snapshot is never ahead of the durable journal. `seq` must
    /// have been appended. Runs on the caller's thread: its cost is one write and fsync of the
    /// state.
    pub fn write_snapshot(
        &mut self,
        seq: Seq,
        state_hash: &[u8; 32],
        state: &[u8],
    ) -> Result<PathBuf> {
        let last = Seq(self.log.next_seq().0 - 1);
        if seq > last || seq == Seq(0) {
            return Err(JournalError::SnapshotAhead {
                path: self.log.dir().to_path_buf(),
                snapshot: seq,
                last,
            });
        }
        self.log.sync()?;
        snapshot::write(
            self.log.dir(),
            JOURNAL_PREFIX,
            self.log.keys().current(),
            seq.0,
            state_hash,
            state,
        )
    }

    /// The latest snapshot, decrypted, or `None`.
    pub fn latest_snapshot(&self) -> Result<Option<Snapshot>> {
        snapshot::latest(self.log.dir(), JOURNAL_PREFIX, self.log.keys())
    }

    /// Makes everything appended durable (commit + fsync) and returns a [`SnapshotSink`] that
    /// may write a snapshot of the state after any record durable now from another
    /// thread: the encryption, write and fsync of a large state then stay off the journal
    /// thread (and the acknowledgements it releases).
    pub fn snapshot_sink(&mut self) -> Result<SnapshotSink> {
        let durable = self.log.sync()?;
        Ok(SnapshotSink {
            dir: self.log.dir().to_path_buf(),
            keys: self.log.keys().clone(),
            durable,
        })
    }

    /// Deletes the segments whose records all precede the latest snapshot (after checking that
    /// the snapshot decrypts), and the older snapshots. The segment being written and the last
    /// segment are never deleted.
    pub fn compact(&mut self) -> Result<CompactReport> {
        let dir = self.log.dir().to_path_buf();
        compact(&dir, self.log.keys(), self.log.current_segment())
    }
}

/// Writes one snapshot of the journal from any thread (see [`JournalWriter::snapshot_sink`]).
pub struct SnapshotSink {
    dir: PathBuf,
    keys: KeySet,
    durable: Seq,
}

impl std::fmt::Debug for SnapshotSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotSink")
            .field("dir", &self.dir)
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

impl SnapshotSink {
    /// Encrypts and writes the state after record `seq` atomically (temporary file, fsync,
    /// rename, directory fsync) under the key that was current when the sink was made.
    /// Refused for a seq beyond what was durable then.
    pub fn write(&self, seq: Seq, state_hash: &[u8; 32], state: &[u8]) -> Result<PathBuf> {
        if seq > self.durable || seq == Seq(0) {
            return Err(JournalError::SnapshotAhead {
                path: self.dir.clone(),
                snapshot: seq,
                last: self.durable,
            });
        }
        snapshot::write(
            &self.dir,
            JOURNAL_PREFIX,
            self.keys.current(),
            seq.0,
            state_hash,
            state,
        )
    }
}

fn compact(dir: &Path, keys: &KeySet, current: Option<&Path>) -> Result<CompactReport> {
    let Some(snap) = snapshot::latest(dir, JOURNAL_PREFIX, keys)? else {
        return Ok(CompactReport::default());
    };
    let mut report = CompactReport {
        snapshot_seq: snap.seq,
        ..CompactReport::default()
    };
    let segments = list(dir, JOURNAL_PREFIX, ".seg")?;
    for pair in segments.windows(2) {
        let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
        // Every record of this segment precedes the next segment's first record.
        if *next_first > snap.seq.0 + 1 || Some(path.as_path()) == current {
            break;
        }
        let len = fs::metadata(path).map_err(io_err(path))?.len();
        fs::remove_file(path).map_err(io_err(path))?;
        report.bytes_freed += len;
        report.segments_removed.push(path.clone());
    }
    report.snapshots_removed = snapshot::remove_older(dir, JOURNAL_PREFIX, snap.seq.0)?;
    if !report.segments_removed.is_empty() || report.snapshots_removed > 0 {
        sync_dir(dir)?;
    }
    Ok(report)
}
