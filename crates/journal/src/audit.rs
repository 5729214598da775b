//! The security audit log encrypted at rest: one JSON object (an [`AuditEvent`] line, or an
//! operator command in the same fields) per record of a sealed log, so no key id, account or
//! peer address is readable on disk without the master key.
//!
//! Each process that writes audit events has its own log in the audit directory, because a
//! sealed log has one writer at a time (it holds the log's lock while open): the server writes
//! [`AUDIT_PREFIX`] for as long as it runs, and the `keys` commands, which run beside it,
//! write [`AUDIT_CLI_PREFIX`] (each waits briefly for another one to finish). A reader merges
//! every log of the directory by event time ([`read_audit_dir`]).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use portcullis_auth::clock::parse_rfc3339_ms;
use portcullis_auth::{AuditEvent, AuditSink, MasterKeyring};

use crate::error::{JournalError, Result};
use crate::format::list;
use crate::log::{LogOptions, RecoveryReport, SealedLogReader, SealedLogWriter};
use crate::tools::{reencrypt_log, ReencryptReport};
use crate::Seq;

/// The prefix of the server's audit log.
pub const AUDIT_PREFIX: &str = "audit";
/// The prefix of the audit log of the `keys` commands.
pub const AUDIT_CLI_PREFIX: &str = "audit_cli";

/// An audit log on a sealed log, safe to call from several threads: each event is appended and
/// committed (one sealed batch, one `write`) before [`SealedAuditLog::record_json`] returns,
/// so it survives a crash of the process; it is fsynced per the [`LogOptions`] (call
/// [`SealedAuditLog::poll`] regularly under an interval policy).
///
/// A failed write closes the writer; the next event reopens the log, whose recovery cuts a
/// torn tail, so one I/O error does not silence the audit log for good.
pub struct SealedAuditLog {
    dir: PathBuf,
    prefix: String,
    options: LogOptions,
    inner: Mutex<Inner>,
}

struct Inner {
    keyring: MasterKeyring,
    writer: Option<SealedLogWriter>,
}

impl fmt::Debug for SealedAuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedAuditLog")
            .field("dir", &self.dir)
            .field("prefix", &self.prefix)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SealedAuditLog {
    /// Opens (or creates) the audit log `prefix` in `dir` for appending (recovery as
    /// [`SealedLogWriter::open`]); fails with [`JournalError::Locked`] while another writer
    /// has it.
    pub fn open(
        dir: impl AsRef<Path>,
        prefix: &str,
        keyring: &MasterKeyring,
        options: &LogOptions,
    ) -> Result<(Self, RecoveryReport)> {
        let dir = dir.as_ref();
        let (mut writer, report) = SealedLogWriter::open(dir, prefix, keyring, options)?;
        // One event per commit: no group-commit buffer needed.
        writer.shrink_buffer();
        Ok((
            SealedAuditLog {
                dir: dir.to_path_buf(),
                prefix: prefix.to_owned(),
                options: *options,
                inner: Mutex::new(Inner {
                    keyring: keyring.clone(),
                    writer: Some(writer),
                }),
            },
            report,
        ))
    }

    /// [`SealedAuditLog::open`], waiting up to `wait` while another process holds the log
    /// (a short-lived command writing its event).
    pub fn open_waiting(
        dir: impl AsRef<Path>,
        prefix: &str,
        keyring: &MasterKeyring,
        options: &LogOptions,
        wait: Duration,
    ) -> Result<(Self, RecoveryReport)> {
        let deadline = Instant::now() + wait;
        loop {
            match Self::open(dir.as_ref(), prefix, keyring, options) {
                Err(JournalError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves at worst a poisoned writer, which the next
        // call replaces.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer, reopened if an earlier failure closed it.
    fn writer<'a>(&self, inner: &'a mut Inner) -> Result<&'a mut SealedLogWriter> {
        if inner.writer.is_none() {
            let (mut w, _) =
                SealedLogWriter::open(&self.dir, &self.prefix, &inner.keyring, &self.options)?;
            w.shrink_buffer();
            inner.writer = Some(w);
        }
        inner
            .writer
            .as_mut()
            .ok_or_else(|| JournalError::Config("the audit log writer is missing".into()))
    }

    /// Appends one event (a JSON object, without a newline) and commits it; returns its
    /// sequence number in the log.
    pub fn record_json(&self, json: &[u8]) -> Result<Seq> {
        let mut inner = self.lock();
        let r = self
            .writer(&mut inner)
            .and_then(|w| w.append(json).and_then(|seq| w.commit().map(|_| seq)));
        if r.is_err() {
            // What reached the disk is unknown: drop the writer (and its lock); the next event
            // reopens the log, whose recovery cuts a torn tail.
            inner.writer = None;
        }
        r
    }

    /// Fsyncs every event written so far.
    pub fn sync(&self) -> Result<()> {
        let mut inner = self.lock();
        let r = self.writer(&mut inner).and_then(|w| w.sync().map(|_| ()));
        if r.is_err() {
            inner.writer = None;
        }
        r
    }

    /// Under an interval fsync policy: fsyncs the events written if the interval has passed
    /// (call it regularly, so the last events of a burst do not wait for the next one).
    pub fn poll(&self) -> Result<()> {
        let mut inner = self.lock();
        let Some(w) = inner.writer.as_mut() else {
            return Ok(());
        };
        let r = w.poll().map(|_| ());
        if r.is_err() {
            inner.writer = None;
        }
        r
    }

    /// Switches to `keyring` (master-key rotation without a restart) and re-encrypts every
    /// segment under an older key with its current key, so that a retired key is no longer
    /// needed. The old keys this log had stay usable for reading during the re-encryption
    /// even if `keyring` lacks them. Events wait meanwhile.
    pub fn set_keyring(&self, keyring: &MasterKeyring) -> Result<ReencryptReport> {
        let mut inner = self.lock();
        let merged = merge_keyrings(keyring, &inner.keyring)?;
        if let Some(w) = inner.writer.take() {
            // Sealed, written and fsynced; the lock goes with it, for the re-encryption.
            w.close()?;
        }
        inner.keyring = merged;
        let report = reencrypt_log(&self.dir, &self.prefix, &inner.keyring)?;
        self.writer(&mut inner)?;
        Ok(report)
    }
}

impl AuditSink for SealedAuditLog {
    fn record(&self, event: &AuditEvent) -> io::Result<()> {
        let line = event.to_json_line();
        self.record_json(line.trim_end().as_bytes())
            .map(|_| ())
            .map_err(|e| io::Error::other(format!("audit log {}: {e}", self.dir.display())))
    }
}

/// `first`'s keys (its current key first), then those of `second` that `first` lacks.
pub fn merge_keyrings(first: &MasterKeyring, second: &MasterKeyring) -> Result<MasterKeyring> {
    let mut keys: Vec<portcullis_auth::MasterKey> = first
        .ids()
        .filter_map(|id| first.get(id).cloned())
        .collect();
    for id in second.ids() {
        if first.get(id).is_none() {
            if let Some(k) = second.get(id) {
                keys.push(k.clone());
            }
        }
    }
    MasterKeyring::from_keys(keys).map_err(|e| JournalError::Keyring(e.to_string()))
}

/// One audit event read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The log it came from (its prefix).
    pub log: String,
    /// Its sequence number in that log.
    pub seq: Seq,
    /// Its `time` field in milliseconds since the epoch, if it has a valid one.
    pub time_ms: Option<i64>,
    /// The event, a JSON object as written.
    pub json: String,
}

/// The prefixes of the sealed logs in `dir` (any `<prefix>-<seq>.seg`).
pub fn audit_logs(dir: impl AsRef<Path>) -> Result<Vec<String>> {
    let dir = dir.as_ref();
    let mut prefixes: Vec<String> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(prefixes),
        Err(e) => {
            return Err(JournalError::Io {
                path: dir.to_path_buf(),
                source: e,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(|e| JournalError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        let Some((prefix, _)) = stem.rsplit_once('-') else {
            continue;
        };
        if crate::format::valid_prefix(prefix)
            && !prefixes.iter().any(|p| p == prefix)
            && !list(dir, prefix, ".seg")?.is_empty()
        {
            prefixes.push(prefix.to_owned());
        }
    }
    prefixes.sort();
    Ok(prefixes)
}

/// Reads every event of the audit log `prefix` in `dir`, in order, without changing anything
/// (it works while the server writes: a batch being written is left out as a torn tail).
pub fn read_audit_log(
    dir: impl AsRef<Path>,
    prefix: &str,
    keyring: &MasterKeyring,
) -> Result<Vec<AuditRecord>> {
    let reader = SealedLogReader::open_read_only(dir, prefix, keyring)?;
    let mut records = reader.records(Seq(reader.first_seq().0.saturating_sub(1)))?;
    let mut out = Vec::new();
    while let Some((seq, payload)) = records.next_record()? {
        let json = String::from_utf8_lossy(payload).into_owned();
        let time_ms = serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| {
                v.get("time")?
                    .as_str()
                    .and_then(|t| parse_rfc3339_ms(t).ok())
            });
        out.push(AuditRecord {
            log: prefix.to_owned(),
            seq,
            time_ms,
            json,
        });
    }
    Ok(out)
}

/// Reads every audit log in `dir` and merges them by event time (events of one log keep
/// their order; events without a valid time come last). An empty or missing directory has
/// no events.
pub fn read_audit_dir(dir: impl AsRef<Path>, keyring: &MasterKeyring) -> Result<Vec<AuditRecord>> {
    let dir = dir.as_ref();
    let mut all = Vec::new();
    for prefix in audit_logs(dir)? {
        all.extend(read_audit_log(dir, &prefix, keyring)?);
    }
    // Stable: one log's events stay in their order, ties between logs keep the log order.
    all.sort_by_key(|r| r.time_ms.unwrap_or(i64::MAX));
    Ok(all)
}
