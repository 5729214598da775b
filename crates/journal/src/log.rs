//! The sealed log: an append-only, encrypted, checksummed record log in segment files, with
//! group commit, crash recovery and verification. The journal is one (prefix `journal`); the
//! FIX message store and the audit log use the same machinery under their own prefixes.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_auth::MasterKeyring;

use crate::config::FsyncPolicy;
use crate::error::{corrupt, io_err, JournalError, Result};
use crate::format::{
    check_prefix, list, sync_dir, temp_files, DirLock, BATCH_HEADER, BATCH_SEAL_AT,
    MAX_BATCHES_PER_SEGMENT, MAX_RECORD, RECORD_HEADER,
};
use crate::keys::KeySet;
use crate::segment::{next_record, BatchRead, Opened, SegmentReader, SegmentWriter};
use crate::Seq;

/// How a [`SealedLogWriter`] writes: its fsync policy and segment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// When commits fsync.
    pub fsync: FsyncPolicy,
    /// A new segment is started once the current one would grow past this many bytes (a
    /// single batch larger than this still goes into one segment).
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        let c = crate::JournalConfig::default();
        c.log_options()
    }
}

/// The torn tail found (and, by a read-write open, cut) at recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment, which held it.
    pub segment: PathBuf,
    /// Where the torn batch started; the file now ends here (0 and `removed` if the segment's
    /// header itself was incomplete).
    pub offset: u64,
    /// How many bytes were cut.
    pub truncated_bytes: u64,
    /// Whether the bytes were cut (a read-only open only reports them, and reads up to them).
    pub cut: bool,
    /// Whether the whole file was removed (it ended inside its header, so it never held a
    /// batch).
    pub removed: bool,
    /// What was found.
    pub detail: String,
}

/// What opening a log found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Segment files.
    pub segments: usize,
    /// The first record present (1 for a new log; later after compaction).
    pub first_seq: Seq,
    /// The last record (0 for an empty log).
    pub last_seq: Seq,
    /// The torn tail, if the last write was cut by a crash.
    pub torn_tail: Option<TornTail>,
    /// Temporary files of interrupted writes that were deleted.
    pub removed_temp_files: Vec<PathBuf>,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} segment(s), records {}..={}",
            self.segments, self.first_seq, self.last_seq
        )?;
        if let Some(t) = &self.torn_tail {
            write!(
                f,
                "; torn tail in {} at byte {}: {} ({} bytes {})",
                t.segment.display(),
                t.offset,
                t.detail,
                t.truncated_bytes,
                if t.removed {
                    "removed with the file"
                } else if t.cut {
                    "cut"
                } else {
                    "left in place (read-only)"
                }
            )?;
        }
        if !self.removed_temp_files.is_empty() {
            write!(
                f,
                "; {} temporary file(s) removed",
                self.removed_temp_files.len()
            )?;
        }
        Ok(())
    }
}

/// One segment as found at open.
#[derive(Debug, Clone)]
pub(crate) struct SegmentMeta {
    pub(crate) path: PathBuf,
    pub(crate) first_seq: u64,
    pub(crate) number: u32,
    /// Bytes that belong to the log.
    pub(crate) end: u64,
    pub(crate) key_id: String,
}

/// A sealed log opened for reading: every segment header checked (names, numbering, keys),
/// the last segment verified in full, a torn tail cut (read-write) or set aside (read-only).
pub struct SealedLogReader {
    pub(crate) dir: PathBuf,
    pub(crate) prefix: String,
    pub(crate) keys: KeySet,
    pub(crate) segments: Vec<SegmentMeta>,
    last_seq: u64,
    last_segment_empty: bool,
    report: RecoveryReport,
    lock: Option<DirLock>,
}

impl fmt::Debug for SealedLogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedLogReader")
            .field("dir", &self.dir)
            .field("prefix", &self.prefix)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl SealedLogReader {
    /// Opens the log `prefix` in `dir` (created if missing) for recovery: takes the
    /// directory's lock for `prefix`, deletes temporary files of interrupted writes, and cuts a
    /// torn tail (truncate, fsync). Corruption anywhere else is an error naming the file and
    /// offset. Hand the reader to [`SealedLogReader::into_writer`] after replaying.
    pub fn open(dir: impl AsRef<Path>, prefix: &str, keyring: &MasterKeyring) -> Result<Self> {
        Self::open_with(dir.as_ref(), prefix, KeySet::from_keyring(keyring)?, true)
    }

    /// Opens the log without the lock and without changing any file (for `verify`, `dump`,
    /// `export`, possibly while the server runs): a torn tail is reported and left out.
    pub fn open_read_only(
        dir: impl AsRef<Path>,
        prefix: &str,
        keyring: &MasterKeyring,
    ) -> Result<Self> {
        Self::open_with(dir.as_ref(), prefix, KeySet::from_keyring(keyring)?, false)
    }

    pub(crate) fn open_with(dir: &Path, prefix: &str, keys: KeySet, repair: bool) -> Result<Self> {
        check_prefix(prefix)?;
        let mut report = RecoveryReport::default();
        let lock = if repair {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
            let lock = DirLock::acquire(dir, prefix)?;
            let temps = temp_files(dir, prefix)?;
            for t in &temps {
                fs::remove_file(t).map_err(io_err(t))?;
            }
            if !temps.is_empty() {
                sync_dir(dir)?;
            }
            report.removed_temp_files = temps;
            Some(lock)
        } else {
            if !dir.is_dir() {
                return Err(JournalError::Io {
                    path: dir.to_path_buf(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
                });
            }
            None
        };
        let mut files = list(dir, prefix, ".seg")?;
        let mut segments: Vec<SegmentMeta> = Vec::with_capacity(files.len());
        let mut last_seq = 0u64;
        let mut last_segment_empty = false;

        // The last segment: verified in full, its torn tail cut.
        if let Some((name_seq, path)) = files.pop() {
            let tail = match SegmentReader::open(&path, name_seq, prefix, &keys, true, None)? {
                Opened::Reader(r) => Some(r),
                Opened::TornHeader { len, detail } => {
                    if repair {
                        fs::remove_file(&path).map_err(io_err(&path))?;
                        sync_dir(dir)?;
                    }
                    report.torn_tail = Some(TornTail {
                        segment: path.clone(),
                        offset: 0,
                        truncated_bytes: len,
                        cut: repair,
                        removed: repair,
                        detail,
                    });
                    // The segment before it was fsynced before this one was created: it must
                    // be complete, so it is read strictly.
                    match files.pop() {
                        Some((seq, path)) => Some(open_strict(&path, seq, prefix, &keys, None)?),
                        None => None,
                    }
                }
            };
            if let Some(mut seg) = tail {
                let mut plain = Vec::new();
                let end = loop {
                    match seg.next_batch(&mut plain)? {
                        BatchRead::Batch { .. } => {}
                        BatchRead::End => break seg.pos,
                        BatchRead::Torn { offset, detail } => {
                            let len = fs::metadata(&seg.path).map_err(io_err(&seg.path))?.len();
                            if repair {
                                let f = fs::OpenOptions::new()
                                    .write(true)
                                    .open(&seg.path)
                                    .map_err(io_err(&seg.path))?;
                                f.set_len(offset).map_err(io_err(&seg.path))?;
                                f.sync_all().map_err(io_err(&seg.path))?;
                            }
                            report.torn_tail = Some(TornTail {
                                segment: seg.path.clone(),
                                offset,
                                truncated_bytes: len.saturating_sub(offset),
                                cut: repair,
                                removed: false,
                                detail,
                            });
                            break offset;
                        }
                    }
                };
                last_seq = seg.next_seq - 1;
                last_segment_empty = seg.next_batch_no == 0;
                segments.push(SegmentMeta {
                    path: seg.path.clone(),
                    first_seq: seg.header.first_seq,
                    number: seg.header.number,
                    end,
                    key_id: seg.header.key_id.clone(),
                });
            }
        }

        // The others: header, name and key checked now; batches when read.
        let mut before = Vec::with_capacity(files.len());
        for (name_seq, path) in files {
            let seg = open_strict(&path, name_seq, prefix, &keys, None)?;
            let end = fs::metadata(&path).map_err(io_err(&path))?.len();
            before.push(SegmentMeta {
                path,
                first_seq: seg.header.first_seq,
                number: seg.header.number,
                end,
                key_id: seg.header.key_id.clone(),
            });
        }
        before.append(&mut segments);
        let segments = before;
        for w in segments.windows(2) {
            if w[1].number != w[0].number.wrapping_add(1) {
                return Err(corrupt(
                    &w[1].path,
                    0,
                    format!(
                        "segment number {} follows segment {} ({}): a segment is missing",
                        w[1].number,
                        w[0].number,
                        w[0].path.display()
                    ),
                ));
            }
            // Names are sorted; equal first sequence numbers cannot occur (same name).
        }

        // A snapshot is only written once the records it covers are durable, so one beyond the
        // last record means records were lost (e.g. a deleted segment).
        if let Some((snap_seq, snap_path)) = list(dir, prefix, ".snap")?.pop() {
            if snap_seq > last_seq {
                return Err(JournalError::SnapshotAhead {
                    path: snap_path,
                    snapshot: Seq(snap_seq),
                    last: Seq(last_seq),
                });
            }
        }

        report.segments = segments.len();
        report.first_seq = Seq(segments.first().map_or(1, |s| s.first_seq));
        report.last_seq = Seq(last_seq);
        Ok(SealedLogReader {
            dir: dir.to_path_buf(),
            prefix: prefix.to_owned(),
            keys,
            segments,
            last_seq,
            last_segment_empty,
            report,
            lock,
        })
    }

    /// What the open found (and repaired).
    pub fn report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The last record (0 for an empty log).
    pub fn last_seq(&self) -> Seq {
        Seq(self.last_seq)
    }

    /// The first record present.
    pub fn first_seq(&self) -> Seq {
        self.report.first_seq
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The records after `after` (all of them for `Seq(0)`), in order, each batch verified as
    /// it is read.
    pub fn records(&self, after: Seq) -> Result<LogRecords<'_>> {
        let after = after.0;
        if after > self.last_seq {
            return Err(JournalError::SnapshotAhead {
                path: self.dir.clone(),
                snapshot: Seq(after),
                last: Seq(self.last_seq),
            });
        }
        let start = match self.segments.first() {
            None => 0,
            Some(first) if after.saturating_add(1) < first.first_seq => {
                return Err(JournalError::Missing {
                    dir: self.dir.clone(),
                    after: Seq(after),
                    first: Seq(first.first_seq),
                })
            }
            Some(_) => self
                .segments
                .iter()
                .rposition(|s| s.first_seq <= after.saturating_add(1))
                .unwrap_or(0),
        };
        Ok(LogRecords {
            log: self,
            seg_idx: start,
            seg: None,
            after,
            plain: Vec::new(),
            rec_at: 0,
            rec_left: 0,
            rec_seq: 0,
            batch_offset: 0,
            expected_seq: None,
            done: false,
            stats: LogStats::default(),
        })
    }

    /// Turns the reader into the log's writer, keeping the lock: appends continue at
    /// `last_seq + 1` in a new segment (never in an existing one, see the crate documentation).
    /// New segments are encrypted under the keyring's current key.
    pub fn into_writer(self, options: &LogOptions) -> Result<SealedLogWriter> {
        let Some(lock) = self.lock else {
            return Err(JournalError::Config(
                "a log opened read-only cannot be written".into(),
            ));
        };
        if options.segment_bytes == 0 {
            return Err(JournalError::Config(
                "segment_bytes must be positive".into(),
            ));
        }
        let next_number = match self.segments.last() {
            None => 0,
            // An empty last segment (a crash right after its creation, or after its only
            // batch was torn) is replaced: same name and number, new salt and key.
            Some(s) if self.last_segment_empty => s.number,
            Some(s) => s.number.checked_add(1).ok_or_else(|| {
                JournalError::Config("the log has used every segment number".into())
            })?,
        };
        let mut buf = Vec::with_capacity(BATCH_SEAL_AT / 8);
        buf.resize(BATCH_HEADER, 0);
        Ok(SealedLogWriter {
            dir: self.dir,
            prefix: self.prefix,
            keys: self.keys,
            _lock: lock,
            options: *options,
            seg: None,
            next_number,
            buf,
            batch_first: self.last_seq + 1,
            batch_count: 0,
            next_seq: self.last_seq + 1,
            written: self.last_seq,
            synced: self.last_seq,
            last_sync: Instant::now(),
            syncs: 0,
            last_sync_took: Duration::ZERO,
            poisoned: None,
        })
    }
}

/// Opens a segment that is not the log's tail: anything incomplete is corruption.
pub(crate) fn open_strict(
    path: &Path,
    name_seq: u64,
    prefix: &str,
    keys: &KeySet,
    end: Option<u64>,
) -> Result<Box<SegmentReader>> {
    match SegmentReader::open(path, name_seq, prefix, keys, false, end)? {
        Opened::Reader(r) => Ok(r),
        Opened::TornHeader { detail, .. } => Err(corrupt(path, 0, detail)),
    }
}

/// Counts of what a [`LogRecords`] cursor has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Segments opened.
    pub segments: usize,
    /// Batches verified.
    pub batches: u64,
    /// Records returned or skipped.
    pub records: u64,
    /// Segment bytes read (headers, batches, tags).
    pub bytes: u64,
}

/// A cursor over the records of a [`SealedLogReader`]. Each batch is authenticated and its
/// framing checked before any of its records is returned; sequence continuity is checked
/// across batches and segments.
pub struct LogRecords<'r> {
    log: &'r SealedLogReader,
    seg_idx: usize,
    seg: Option<Box<SegmentReader>>,
    after: u64,
    plain: Vec<u8>,
    rec_at: usize,
    rec_left: u32,
    rec_seq: u64,
    batch_offset: u64,
    expected_seq: Option<u64>,
    done: bool,
    stats: LogStats,
}

impl Drop for LogRecords<'_> {
    fn drop(&mut self) {
        // Decrypted records do not outlive the cursor in freed memory.
        zeroize::Zeroize::zeroize(&mut self.plain);
    }
}

impl LogRecords<'_> {
    /// The next record and its sequence number; `None` at the end. After an error, the cursor
    /// is finished (returns `None`).
    pub fn next_record(&mut self) -> Result<Option<(Seq, &[u8])>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.rec_left > 0 {
                let mut at = self.rec_at;
                let seq = self.rec_seq;
                // The batch's framing was checked when it was read.
                let Some(len) = next_record(&self.plain, &mut at).map(<[u8]>::len) else {
                    self.done = true;
                    return Err(corrupt(self.segment(), self.batch_offset, "record framing"));
                };
                let start = at - len;
                self.rec_at = at;
                self.rec_left -= 1;
                self.rec_seq += 1;
                if seq <= self.after {
                    continue;
                }
                return Ok(Some((Seq(seq), &self.plain[start..at])));
            }
            match self.advance() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return Ok(None);
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
    }

    /// Reads the next batch; false at the end of the log.
    fn advance(&mut self) -> Result<bool> {
        loop {
            if self.seg.is_none() {
                let Some(meta) = self.log.segments.get(self.seg_idx) else {
                    return Ok(false);
                };
                let r = open_strict(
                    &meta.path,
                    meta.first_seq,
                    &self.log.prefix,
                    &self.log.keys,
                    Some(meta.end),
                )?;
                if let Some(expected) = self.expected_seq {
                    if r.header.first_seq != expected {
                        return Err(corrupt(
                            &meta.path,
                            0,
                            format!(
                                "segment starts at seq {} but the previous segment ends at seq {}: records are missing",
                                r.header.first_seq,
                                expected - 1
                            ),
                        ));
                    }
                }
                self.stats.segments += 1;
                self.stats.bytes += r.pos;
                self.seg = Some(r);
            }
            let seg = self.seg.as_mut().expect("just set");
            match seg.next_batch(&mut self.plain)? {
                BatchRead::Batch {
                    offset,
                    first_seq,
                    count,
                } => {
                    self.stats.batches += 1;
                    self.stats.records += u64::from(count);
                    self.stats.bytes += seg.pos - offset;
                    self.rec_at = 0;
                    self.rec_left = count;
                    self.rec_seq = first_seq;
                    self.batch_offset = offset;
                    return Ok(true);
                }
                BatchRead::End => {
                    self.expected_seq = Some(seg.next_seq);
                    self.seg = None;
                    self.seg_idx += 1;
                }
                BatchRead::Torn { offset, detail } => {
                    // Strict reads never report torn batches; kept for completeness.
                    return Err(corrupt(&seg.path, offset, detail));
                }
            }
        }
    }

    /// The segment of the last record returned (for error messages).
    pub fn segment(&self) -> &Path {
        match &self.seg {
            Some(s) => &s.path,
            None => self
                .log
                .segments
                .get(self.seg_idx.min(self.log.segments.len().saturating_sub(1)))
                .map_or(self.log.dir.as_path(), |s| s.path.as_path()),
        }
    }

    /// Byte offset, in [`LogRecords::segment`], of the batch of the last record returned.
    pub fn batch_offset(&self) -> u64 {
        self.batch_offset
    }

    /// What has been read so far.
    pub fn stats(&self) -> LogStats {
        self.stats
    }
}

/// Appends records to a sealed log with group commit.
///
/// Records are appended to an in-memory batch; [`SealedLogWriter::commit`] seals the batch
/// (one AES-256-GCM operation), writes it with one `write` and fsyncs according to the policy.
/// A writer thread draining a queue appends everything available and commits once per drain,
/// so one fsync covers every record of the drain.
///
/// Any failed write or fsync poisons the writer: what reached the disk is unknown (after a
/// failed fsync the page cache may have dropped the data), so it refuses to go on and the
/// process must reopen the log, whose recovery cuts the torn tail.
pub struct SealedLogWriter {
    dir: PathBuf,
    prefix: String,
    keys: KeySet,
    _lock: DirLock,
    options: LogOptions,
    seg: Option<SegmentWriter>,
    next_number: u32,
    /// `BATCH_HEADER` reserved bytes, then the framed records of the open batch.
    buf: Vec<u8>,
    batch_first: u64,
    batch_count: u32,
    next_seq: u64,
    written: u64,
    synced: u64,
    last_sync: Instant,
    /// fsyncs done so far and how long the last one took (for the server's metrics).
    syncs: u64,
    last_sync_took: Duration,
    poisoned: Option<String>,
}

impl fmt::Debug for SealedLogWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedLogWriter")
            .field("dir", &self.dir)
            .field("prefix", &self.prefix)
            .field("next_seq", &self.next_seq)
            .field("written", &self.written)
            .field("synced", &self.synced)
            .finish_non_exhaustive()
    }
}

impl Drop for SealedLogWriter {
    fn drop(&mut self) {
        // Records appended but never sealed are plaintext.
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

impl SealedLogWriter {
    /// Opens the log `prefix` in `dir` for appending: recovery as [`SealedLogReader::open`]
    /// (lock, torn tail cut), then [`SealedLogReader::into_writer`].
    pub fn open(
        dir: impl AsRef<Path>,
        prefix: &str,
        keyring: &MasterKeyring,
        options: &LogOptions,
    ) -> Result<(Self, RecoveryReport)> {
        let reader = SealedLogReader::open(dir, prefix, keyring)?;
        let report = reader.report().clone();
        Ok((reader.into_writer(options)?, report))
    }

    fn check(&self) -> Result<()> {
        match &self.poisoned {
            None => Ok(()),
            Some(detail) => Err(JournalError::Poisoned {
                path: self
                    .seg
                    .as_ref()
                    .map_or_else(|| self.dir.clone(), |s| s.path.clone()),
                detail: detail.clone(),
            }),
        }
    }

    fn poison<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.poisoned.get_or_insert_with(|| e.to_string());
        }
        r
    }

    /// Appends a record whose payload `encode` writes (it must only append to the buffer).
    /// Returns its sequence number. Seals (writes, without fsync) the batch early if it
    /// reaches 1 MiB.
    pub fn append_with(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<Seq> {
        self.check()?;
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; RECORD_HEADER]);
        encode(&mut self.buf);
        if self.buf.len() < start + RECORD_HEADER {
            // The closure truncated the buffer: the batch is no longer well-formed.
            let e = Err(JournalError::Config(
                "an append closure removed bytes from the batch".into(),
            ));
            return self.poison(e);
        }
        let len = self.buf.len() - start - RECORD_HEADER;
        if len > MAX_RECORD {
            self.buf.truncate(start);
            return Err(JournalError::TooLarge {
                len,
                max: MAX_RECORD,
            });
        }
        let crc = crc32fast::hash(&self.buf[start + RECORD_HEADER..]);
        self.buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        if self.batch_count == 0 {
            self.batch_first = self.next_seq;
        }
        self.batch_count += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.buf.len() >= BATCH_SEAL_AT {
            let r = self.seal();
            self.poison(r)?;
        }
        Ok(Seq(seq))
    }

    /// Appends one record's payload; returns its sequence number.
    pub fn append(&mut self, payload: &[u8]) -> Result<Seq> {
        if payload.len() > MAX_RECORD {
            return Err(JournalError::TooLarge {
                len: payload.len(),
                max: MAX_RECORD,
            });
        }
        self.append_with(|b| b.extend_from_slice(payload))
    }

    /// True if a batch of `batch_len` bytes starts a new segment (whose creation fsyncs the
    /// old one).
    fn roll_due(&self, batch_len: u64) -> bool {
        match &self.seg {
            None => true,
            Some(s) => {
                s.next_batch >= MAX_BATCHES_PER_SEGMENT
                    || (s.next_batch > 0 && s.size + batch_len > self.options.segment_bytes)
                    || s.key_id != self.keys.current().id
            }
        }
    }

    /// True if [`SealedLogWriter::commit`], with `extra` more payload bytes appended first, may
    /// wait for the disk: it fsyncs (per the policy) or starts a new segment (which fsyncs the
    /// old one). Cheap; a caller on an async runtime runs such a commit where blocking is
    /// allowed. Not for a write-back start (a fraction of a millisecond every MiB): handing the
    /// runtime's other tasks to another thread that often costs a busy server more than it
    /// saves (measured).
    pub fn commit_may_wait(&self, extra: usize) -> bool {
        let pending = self.batch_count > 0 || extra > 0;
        if !pending {
            return false;
        }
        let fsync = match self.options.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::IntervalMs(ms) => self.last_sync.elapsed() >= Duration::from_millis(ms),
            FsyncPolicy::Never => false,
        };
        // A batch not yet open gets its header and one record's framing.
        let len =
            (self.buf.len().max(BATCH_HEADER) + extra + RECORD_HEADER + crate::format::TAG_LEN)
                as u64;
        fsync || self.roll_due(len)
    }

    /// Seals and writes the open batch, if any (no fsync), rolling to a new segment first if
    /// needed.
    fn seal(&mut self) -> Result<()> {
        if self.batch_count == 0 {
            return Ok(());
        }
        let batch_len = (self.buf.len() + crate::format::TAG_LEN) as u64;
        if self.roll_due(batch_len) {
            self.roll(self.batch_first)?;
        }
        let seg = self.seg.as_mut().expect("a segment after roll");
        seg.write_batch(&mut self.buf, self.batch_first, self.batch_count)?;
        if self.options.fsync != FsyncPolicy::Always {
            seg.start_writeback();
        }
        self.written = self.batch_first + u64::from(self.batch_count) - 1;
        self.batch_count = 0;
        self.batch_first = self.next_seq;
        Ok(())
    }

    /// Closes the current segment (fsynced whatever the policy, so that only the last
    /// segment can ever have a torn tail) and starts the next one.
    fn roll(&mut self, first_seq: u64) -> Result<()> {
        if let Some(mut old) = self.seg.take() {
            let started = Instant::now();
            old.sync()?;
            self.synced = self.written;
            self.last_sync = Instant::now();
            self.note_sync(started);
        }
        let mut seg = SegmentWriter::create(
            &self.dir,
            &self.prefix,
            self.keys.current(),
            self.next_number,
            first_seq,
        )?;
        seg.persist()?;
        self.next_number = self
            .next_number
            .checked_add(1)
            .ok_or_else(|| JournalError::Config("the log has used every segment number".into()))?;
        self.seg = Some(seg);
        Ok(())
    }

    fn sync_now(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut synced_segment = false;
        if self.synced < self.written {
            if let Some(seg) = self.seg.as_mut() {
                seg.sync()?;
                synced_segment = true;
            }
            self.synced = self.written;
        }
        self.last_sync = Instant::now();
        if synced_segment {
            self.note_sync(started);
        }
        Ok(())
    }

    fn note_sync(&mut self, started: Instant) {
        self.syncs += 1;
        self.last_sync_took = self.last_sync.saturating_duration_since(started);
    }

    /// How many fsyncs the writer did so far, and how long the last one took: a caller that
    /// polls it after each commit sees every fsync's duration (one per commit at most).
    pub fn fsync_stats(&self) -> (u64, Duration) {
        (self.syncs, self.last_sync_took)
    }

    /// Seals and writes the open batch and fsyncs according to the policy (`Always`: now;
    /// `IntervalMs`: if the interval has passed since the last fsync; `Never`: no). Returns
    /// [`SealedLogWriter::durable_seq`].
    pub fn commit(&mut self) -> Result<Seq> {
        self.check()?;
        let r = self.seal();
        self.poison(r)?;
        let due = match self.options.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::IntervalMs(ms) => self.last_sync.elapsed() >= Duration::from_millis(ms),
            FsyncPolicy::Never => false,
        };
        if due && self.synced < self.written {
            let r = self.sync_now();
            self.poison(r)?;
        }
        Ok(Seq(self.synced))
    }

    /// Seals, writes and fsyncs now, whatever the policy (shutdown, before a snapshot).
    pub fn sync(&mut self) -> Result<Seq> {
        self.check()?;
        let r = self.seal().and_then(|()| self.sync_now());
        self.poison(r)?;
        Ok(Seq(self.synced))
    }

    /// For `IntervalMs`: fsyncs written records if the interval has passed. Call it when the
    /// queue is idle (see [`SealedLogWriter::sync_deadline`]), so the last records of a burst
    /// do not wait for the next one. Does not seal the open batch.
    pub fn poll(&mut self) -> Result<Seq> {
        self.check()?;
        if let Some(deadline) = self.sync_deadline() {
            if Instant::now() >= deadline {
                let r = self.sync_now();
                self.poison(r)?;
            }
        }
        Ok(Seq(self.synced))
    }

    /// When written records become due for an fsync under `IntervalMs` (`None` if nothing
    /// waits, or under the other policies).
    pub fn sync_deadline(&self) -> Option<Instant> {
        match self.options.fsync {
            FsyncPolicy::IntervalMs(ms) if self.synced < self.written => {
                Some(self.last_sync + Duration::from_millis(ms))
            }
            _ => None,
        }
    }

    /// The last record fsynced: it survives a crash of the machine.
    pub fn durable_seq(&self) -> Seq {
        Seq(self.synced)
    }

    /// The last record written to the operating system: it survives a crash of the process.
    pub fn written_seq(&self) -> Seq {
        Seq(self.written)
    }

    /// The last record whose acknowledgement may be released: [`SealedLogWriter::durable_seq`]
    /// under `fsync = "always"` (an acknowledgement leaves only once its record is durable),
    /// [`SealedLogWriter::written_seq`] otherwise (those policies accept losing the last
    /// records on a power loss in exchange for latency).
    pub fn ack_seq(&self) -> Seq {
        match self.options.fsync {
            FsyncPolicy::Always => self.durable_seq(),
            FsyncPolicy::IntervalMs(_) | FsyncPolicy::Never => self.written_seq(),
        }
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> Seq {
        Seq(self.next_seq)
    }

    /// Records appended but not yet written (in the open batch).
    pub fn pending(&self) -> u32 {
        self.batch_count
    }

    /// The fsync policy and segment size.
    pub fn options(&self) -> &LogOptions {
        &self.options
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment being written, if one was started.
    pub fn current_segment(&self) -> Option<&Path> {
        self.seg.as_ref().map(|s| s.path.as_path())
    }

    /// Switches to a new keyring (master-key rotation without a restart): the next batch
    /// starts a new segment under its current key; older segments stay readable while their
    /// key is in the keyring.
    pub fn set_keyring(&mut self, keyring: &MasterKeyring) -> Result<()> {
        self.keys = KeySet::from_keyring(keyring)?;
        Ok(())
    }

    pub(crate) fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Gives back the memory of the batch buffer beyond what the open batch holds. A writer
    /// that commits one small record at a time (a session's message store, the audit log)
    /// needs far less than the group-commit buffer a writer starts with, and a server keeps
    /// one store per configured session.
    pub fn shrink_buffer(&mut self) {
        // Only spare capacity goes: the open batch's bytes stay.
        self.buf.shrink_to_fit();
    }

    /// Seals, writes and fsyncs everything, then releases the lock.
    pub fn close(mut self) -> Result<Seq> {
        self.sync()
    }
}
