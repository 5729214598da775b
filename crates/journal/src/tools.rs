//! What the operator tools need: verification, a human-readable dump, a JSON-lines export of
//! the events for the drop-copy side, and re-encryption under the current master key.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use portcullis_auth::MasterKeyring;
use portcullis_types::{Event, EventKind};
use serde::Serialize;

use crate::error::{corrupt, JournalError, Result};
use crate::format::{list, BATCH_HEADER};
use crate::keys::KeySet;
use crate::log::{open_strict, SealedLogReader, TornTail};
use crate::record::{event_kind_str, side_str, JournalRecord, RecordKind};
use crate::segment::{BatchRead, SegmentWriter};
use crate::snapshot;
use crate::{Seq, JOURNAL_PREFIX};

/// A snapshot file as verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its file.
    pub path: PathBuf,
    /// The last record it includes.
    pub seq: Seq,
    /// The server's state hash, hex.
    pub state_hash: String,
    /// The master key it is encrypted under.
    pub key_id: String,
    /// Decrypted state size in bytes.
    pub state_bytes: usize,
}

/// What [`verify`] (or [`verify_log`]) checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Segment files.
    pub segments: usize,
    /// Batches, each authenticated.
    pub batches: u64,
    /// Records, each checksummed (and for the journal, decoded).
    pub records: u64,
    /// Segment bytes.
    pub bytes: u64,
    /// First record present.
    pub first_seq: Seq,
    /// Last record.
    pub last_seq: Seq,
    /// Master keys the segments are encrypted under, in order of first use.
    pub key_ids: Vec<String>,
    /// A torn tail (left in place: verification changes nothing).
    pub torn_tail: Option<TornTail>,
    /// Snapshot files, each authenticated.
    pub snapshots: Vec<SnapshotInfo>,
    /// Journal records that are commands.
    pub commands: u64,
    /// Journal records that are events.
    pub events: u64,
    /// Other journal records.
    pub control: u64,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} segment(s), {} batch(es), {} record(s) (seq {}..={}), {} bytes: all authenticated",
            self.segments, self.batches, self.records, self.first_seq, self.last_seq, self.bytes
        )?;
        if self.commands + self.events + self.control > 0 {
            writeln!(
                f,
                "records: {} command(s), {} event(s), {} control",
                self.commands, self.events, self.control
            )?;
        }
        writeln!(f, "master keys in use: {}", self.key_ids.join(", "))?;
        for s in &self.snapshots {
            writeln!(
                f,
                "snapshot seq {} ({} bytes, key {}, state hash {})",
                s.seq, s.state_bytes, s.key_id, s.state_hash
            )?;
        }
        if let Some(t) = &self.torn_tail {
            writeln!(
                f,
                "torn tail: {} at byte {}: {} ({} bytes; cut at the next start)",
                t.segment.display(),
                t.offset,
                t.detail,
                t.truncated_bytes
            )?;
        }
        Ok(())
    }
}

/// Verifies every segment, batch, record and snapshot of the journal in `dir` without
/// changing anything: GCM tags, CRCs, record decoding, sequence continuity, batch order,
/// segment numbering. The first problem is an error naming the file and offset.
pub fn verify(dir: impl AsRef<Path>, keyring: &MasterKeyring) -> Result<VerifyReport> {
    verify_with(dir.as_ref(), JOURNAL_PREFIX, keyring, |payload| {
        JournalRecord::decode(payload)
            .map(|r| Some(r.kind()))
            .map_err(|e| e.to_string())
    })
}

/// [`verify`] for any sealed log (the FIX message store, the audit log): framing and
/// authentication only, the payloads are opaque.
pub fn verify_log(
    dir: impl AsRef<Path>,
    prefix: &str,
    keyring: &MasterKeyring,
) -> Result<VerifyReport> {
    verify_with(dir.as_ref(), prefix, keyring, |_| Ok(None))
}

fn verify_with(
    dir: &Path,
    prefix: &str,
    keyring: &MasterKeyring,
    check: impl Fn(&[u8]) -> Result<Option<RecordKind>, String>,
) -> Result<VerifyReport> {
    let log = SealedLogReader::open_read_only(dir, prefix, keyring)?;
    let mut report = VerifyReport {
        segments: log.segments.len(),
        first_seq: log.first_seq(),
        last_seq: log.last_seq(),
        torn_tail: log.report().torn_tail.clone(),
        ..VerifyReport::default()
    };
    for s in &log.segments {
        if !report.key_ids.contains(&s.key_id) {
            report.key_ids.push(s.key_id.clone());
        }
    }
    let after = Seq(log.first_seq().0.saturating_sub(1));
    let mut cursor = log.records(after)?;
    while let Some((seq, payload)) = cursor.next_record()? {
        match check(payload) {
            Ok(Some(RecordKind::Command)) => report.commands += 1,
            Ok(Some(RecordKind::Event)) => report.events += 1,
            Ok(Some(RecordKind::Control)) => report.control += 1,
            Ok(None) => {}
            Err(e) => {
                return Err(corrupt(
                    cursor.segment(),
                    cursor.batch_offset(),
                    format!("record seq {seq}: {e}"),
                ))
            }
        }
    }
    let stats = cursor.stats();
    report.batches = stats.batches;
    report.records = stats.records;
    report.bytes = stats.bytes;
    for (seq, path) in list(dir, prefix, ".snap")? {
        let s = snapshot::read(&path, seq, prefix, &log.keys)?;
        report.snapshots.push(SnapshotInfo {
            path,
            seq: s.seq,
            state_hash: hex::encode(s.state_hash),
            key_id: s.key_id,
            state_bytes: s.state.len(),
        });
    }
    Ok(report)
}

fn out_err(e: std::io::Error) -> JournalError {
    JournalError::Io {
        path: PathBuf::from("<output>"),
        source: e,
    }
}

/// Writes every record of the journal in `dir`, decrypted, one line each: `<seq> <record>`
/// (see [`JournalRecord`]'s `Display`). Read-only. Returns the number of records.
pub fn dump(dir: impl AsRef<Path>, keyring: &MasterKeyring, out: &mut dyn Write) -> Result<u64> {
    let reader = crate::JournalReader::open_read_only(dir, keyring)?;
    let after = Seq(reader.first_seq().0.saturating_sub(1));
    let mut n = 0;
    for item in reader.replay(after)? {
        let (seq, rec) = item?;
        writeln!(out, "{seq} {rec}").map_err(out_err)?;
        n += 1;
    }
    Ok(n)
}

/// Writes every event of the journal in `dir` as one JSON object per line (see
/// [`event_json`]), for the drop-copy and clearing side. Read-only. Returns the number of
/// events.
pub fn export_jsonl(
    dir: impl AsRef<Path>,
    keyring: &MasterKeyring,
    out: &mut dyn Write,
) -> Result<u64> {
    let reader = crate::JournalReader::open_read_only(dir, keyring)?;
    let after = Seq(reader.first_seq().0.saturating_sub(1));
    let mut n = 0;
    let mut line = Vec::with_capacity(512);
    let mut last: Option<portcullis_types::Event> = None;
    for item in reader.replay(after)? {
        if let (seq, JournalRecord::Event(e)) = item? {
            // One execution, one line: a cancel or replace from another session is journaled
            // as the requester's view, then the order's own session's.
            let second = last.is_some_and(|p| e.is_second_view_of(&p));
            last = Some(e);
            if second {
                continue;
            }
            line.clear();
            event_json(seq, &e, &mut line);
            line.push(b'\n');
            out.write_all(&line).map_err(out_err)?;
            n += 1;
        }
    }
    Ok(n)
}

#[derive(Serialize)]
struct EventView<'a> {
    seq: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replace: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    canceled: Option<u32>,
    session: u32,
    account: u32,
    instrument: u32,
    order_id: u64,
    cl_ord_id: &'a str,
    orig_cl_ord_id: &'a str,
    side: &'static str,
    ord_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_px: Option<String>,
    tif: &'static str,
    /// A GTD order's expiry time (ns since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    expire_ns: Option<String>,
    price: String,
    qty: String,
    cum_qty: String,
    leaves_qty: String,
    avg_px: String,
    last_px: String,
    last_qty: String,
    trade_id: u64,
    exec_id: u64,
    ts_ns: String,
    received_ns: String,
}

/// Appends one event as a JSON object (no newline) to `out`:
/// `{"seq":…,"type":"fill",…,"price":"10050",…}`. Ids and `seq` are JSON numbers (≤ 2^53−1 by
/// design); prices and quantities (integer units of the instrument's scale) and nanosecond
/// timestamps are strings of integers, because they can exceed 2^53 and every JSON reader
/// must get them exactly. Reject reasons use their FIX text.
pub fn event_json(seq: Seq, e: &Event, out: &mut Vec<u8>) {
    let (reason, replace, canceled) = match e.kind {
        EventKind::Rejected(r) => (Some(r.text()), None, None),
        EventKind::CancelRejected { replace, reason } => (Some(reason.text()), Some(replace), None),
        EventKind::MassCancelDone { canceled } => (None, None, Some(canceled)),
        _ => (None, None, None),
    };
    let view = EventView {
        seq: seq.0,
        kind: event_kind_str(&e.kind),
        reason,
        replace,
        canceled,
        session: e.session.0,
        account: e.account.0,
        instrument: e.instrument.0,
        order_id: e.order_id.0,
        cl_ord_id: e.cl_ord_id.as_str(),
        orig_cl_ord_id: e.orig_cl_ord_id.as_str(),
        side: side_str(e.side),
        ord_type: e.ord_type.name(),
        stop_px: e.ord_type.stop_px().map(|p| p.0.to_string()),
        tif: e.tif.name(),
        expire_ns: e.tif.expire_ns().map(|t| t.to_string()),
        price: e.price.0.to_string(),
        qty: e.qty.0.to_string(),
        cum_qty: e.cum_qty.0.to_string(),
        leaves_qty: e.leaves_qty.0.to_string(),
        avg_px: e.avg_px.0.to_string(),
        last_px: e.last_px.0.to_string(),
        last_qty: e.last_qty.0.to_string(),
        trade_id: e.trade_id.0,
        exec_id: e.exec_id,
        ts_ns: e.ts_ns.to_string(),
        received_ns: e.received_ns.to_string(),
    };
    // Serializing plain strings and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &view);
}

/// What [`reencrypt`] rewrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReencryptReport {
    /// The key everything is now encrypted under.
    pub key_id: String,
    /// Segments rewritten.
    pub segments_rewritten: Vec<PathBuf>,
    /// Segments already under the current key.
    pub segments_current: usize,
    /// Snapshots rewritten.
    pub snapshots_rewritten: Vec<PathBuf>,
    /// What the recovery at open found (a torn tail is cut first).
    pub recovery: crate::RecoveryReport,
}

/// Rewrites every segment and snapshot of the journal in `dir` that is not encrypted under the
/// keyring's current key, so that afterwards only the current key is needed. Takes the lock
/// (the server must not be running) and recovers first. Each file is replaced atomically
/// (temporary file, fsync, rename, directory fsync): an interruption leaves every file
/// readable with the old or the new key, and running it again finishes the job.
pub fn reencrypt(dir: impl AsRef<Path>, keyring: &MasterKeyring) -> Result<ReencryptReport> {
    reencrypt_log(dir, JOURNAL_PREFIX, keyring)
}

/// [`reencrypt`] for any sealed log (the FIX message store, the audit log) and its snapshots.
pub fn reencrypt_log(
    dir: impl AsRef<Path>,
    prefix: &str,
    keyring: &MasterKeyring,
) -> Result<ReencryptReport> {
    let dir = dir.as_ref();
    let log = SealedLogReader::open(dir, prefix, keyring)?;
    let keys: &KeySet = &log.keys;
    let current = keys.current();
    let mut report = ReencryptReport {
        key_id: current.id.to_owned(),
        recovery: log.report().clone(),
        ..ReencryptReport::default()
    };
    let mut plain = Vec::new();
    let mut buf = Vec::new();
    for meta in &log.segments {
        if meta.key_id == current.id {
            report.segments_current += 1;
            continue;
        }
        let mut src = open_strict(&meta.path, meta.first_seq, prefix, keys, Some(meta.end))?;
        let mut dst = SegmentWriter::create(
            dir,
            prefix,
            current,
            src.header.number,
            src.header.first_seq,
        )?;
        // Same segment number, first seq, batch boundaries and batch numbers; new salt, so a
        // new file key: no nonce of the old file is reused.
        loop {
            match src.next_batch(&mut plain)? {
                BatchRead::Batch {
                    first_seq, count, ..
                } => {
                    buf.clear();
                    buf.resize(BATCH_HEADER, 0);
                    buf.extend_from_slice(&plain);
                    dst.write_batch(&mut buf, first_seq, count)?;
                }
                BatchRead::End => break,
                BatchRead::Torn { offset, detail } => {
                    return Err(corrupt(&meta.path, offset, detail));
                }
            }
        }
        dst.persist()?;
        report.segments_rewritten.push(meta.path.clone());
    }
    for (seq, path) in list(dir, prefix, ".snap")? {
        let snap = snapshot::read(&path, seq, prefix, keys)?;
        if snap.key_id == current.id {
            continue;
        }
        snapshot::write(dir, prefix, current, seq, &snap.state_hash, &snap.state)?;
        report.snapshots_rewritten.push(path);
    }
    // Plaintext of the last batch read.
    zeroize::Zeroize::zeroize(&mut plain);
    Ok(report)
}

/// The master keys the segments and snapshots of the log `prefix` in `dir` are encrypted
/// under, in order of first use, without decrypting any record (for checking that a master
/// key is no longer needed before it leaves the keyring). Read-only, so it works beside a
/// running writer. A missing directory has none.
pub fn log_key_ids(
    dir: impl AsRef<Path>,
    prefix: &str,
    keyring: &MasterKeyring,
) -> Result<Vec<String>> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let log = SealedLogReader::open_read_only(dir, prefix, keyring)?;
    let mut ids: Vec<String> = Vec::new();
    for s in &log.segments {
        if !ids.contains(&s.key_id) {
            ids.push(s.key_id.clone());
        }
    }
    for (seq, path) in list(dir, prefix, ".snap")? {
        let snap = snapshot::read(&path, seq, prefix, &log.keys)?;
        if !ids.contains(&snap.key_id) {
            ids.push(snap.key_id);
        }
    }
    Ok(ids)
}
