//! Encryption at rest of what the server keeps besides the journal: the FIX message store of
//! each session and the security audit log.
//!
//! Whenever the server has a master keyring — always when a session authenticates, and in any
//! other config that has a key — both are sealed logs of the journal crate, encrypted the same
//! way as the journal (AES-256-GCM, per-file keys derived from the master key):
//!
//! - `<data_dir>/sessions/<session>/gen-<n>/fixstore-*.seg`: the message store
//!   ([`SealedFileStore`]);
//! - `<data_dir>/audit/audit-*.seg`: the server's audit events, and `audit_cli-*.seg`: those of
//!   the `keys` commands (one log per writing process, see [`portcullis_journal::SealedAuditLog`]).
//!   `portcullis audit export` reads them back ([`AuditArgs`]).
//!
//! There is no plaintext fallback when a key is present: a store or audit log that cannot be
//! opened encrypted stops the start-up. Without any master key (a config without authenticated
//! sessions and without a key) the plaintext store and `<data_dir>/audit.jsonl` are used, with
//! a loud warning. Plaintext left from such a run is taken over by the first run with a key:
//! a session's `store.log` is migrated into its encrypted store, `audit.jsonl` imported into
//! the encrypted audit log, and both deleted.
//!
//! A new keyring read while the server runs (after `keys rotate-master`) reaches every store
//! and the audit log ([`on_new_keyring`]): new data goes under the new current key and what
//! was under older keys is re-encrypted, so `keys retire-master` can remove the old key;
//! [`release_key`] checks (or, with the server stopped, does) that first.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use portcullis_auth::clock::parse_rfc3339_ms;
use portcullis_auth::{AuditEvent, AuditSink, MasterKeyring};
use portcullis_fix::{SeqNum, UtcTimestamp};
use portcullis_journal::{
    audit_logs, log_key_ids, read_audit_dir, reencrypt_log, FsyncPolicy, JournalError, LogOptions,
    SealedAuditLog, SealedFileStore, AUDIT_CLI_PREFIX, AUDIT_PREFIX, FIX_STORE_PREFIX,
    JOURNAL_PREFIX,
};
use portcullis_session::store::{FileStore, MessageStore, StoreError, SyncPolicy};
use portcullis_session::transport::{SessionRegistry, StoreOpener};
use tracing::{error, info, warn};

use crate::config::{self, Settings};

/// The server's audit log is fsynced at most this many milliseconds after an event (every
/// event is written before `record` returns, so a crash of the process loses none; a power
/// loss at most this much). Logon attempts, which an attacker can multiply, then never wait
/// for the disk one by one.
const AUDIT_FSYNC_MS: u64 = 200;

/// Segment size of the audit logs.
const AUDIT_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// How long a `keys` command waits for another one to finish writing its audit event.
const CLI_AUDIT_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The audit log

/// Where audit events go: the encrypted audit log, or, only without any master key, the
/// plaintext `<data_dir>/audit.jsonl`. Every event is one JSON object with the fields of
/// [`AuditEvent`].
#[derive(Debug)]
pub enum AuditLog {
    /// The sealed log `<data_dir>/audit/audit-*.seg` (boxed: it holds the writer's buffers).
    Sealed(Box<SealedAuditLog>),
    /// `<data_dir>/audit.jsonl`, JSON lines in plaintext.
    Plain(PlainAuditLog),
}

impl AuditLog {
    /// Records one event given as a JSON object (no newline), e.g. an operator command.
    pub fn record_line(&self, json: &str) -> io::Result<()> {
        match self {
            AuditLog::Sealed(s) => s
                .record_json(json.as_bytes())
                .map(|_| ())
                .map_err(|e| io::Error::other(format!("audit log {}: {e}", s.dir().display()))),
            AuditLog::Plain(p) => p.write_line(json),
        }
    }

    /// Fsyncs every event recorded so far.
    pub fn sync(&self) -> io::Result<()> {
        match self {
            AuditLog::Sealed(s) => s
                .sync()
                .map_err(|e| io::Error::other(format!("audit log {}: {e}", s.dir().display()))),
            AuditLog::Plain(p) => p.sync(),
        }
    }

    /// Where the events go, for the start-up banner.
    pub fn location(&self) -> String {
        match self {
            AuditLog::Sealed(s) => format!("{} (encrypted)", s.dir().display()),
            AuditLog::Plain(p) => format!("{} (PLAINTEXT)", p.path.display()),
        }
    }

    /// A new master keyring: the encrypted log goes on under its current key and re-encrypts
    /// what older keys encrypted.
    pub fn set_keyring(&self, ring: &MasterKeyring) -> Result<()> {
        if let AuditLog::Sealed(s) = self {
            let r = s
                .set_keyring(ring)
                .with_context(|| format!("re-encrypting the audit log {}", s.dir().display()))?;
            if !r.segments_rewritten.is_empty() {
                info!(
                    key = %r.key_id,
                    segments = r.segments_rewritten.len(),
                    "audit log re-encrypted under the current master key"
                );
            }
        }
        Ok(())
    }
}

impl AuditSink for AuditLog {
    fn record(&self, event: &AuditEvent) -> io::Result<()> {
        match self {
            AuditLog::Sealed(s) => s.record(event),
            AuditLog::Plain(p) => p.write_line(event.to_json_line().trim_end()),
        }
    }
}

/// The plaintext audit log of a server without a master key: JSON lines appended to a file
/// opened for appending (mode 0600), one `write` per line.
#[derive(Debug)]
pub struct PlainAuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl PlainAuditLog {
    /// Opens (or creates) `path` for appending.
    pub fn open(path: &Path) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot open the audit log {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    fn write_line(&self, json: &str) -> io::Result<()> {
        let mut line = String::with_capacity(json.len() + 1);
        line.push_str(json);
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(line.as_bytes())
    }

    fn sync(&self) -> io::Result<()> {
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sync_data()
    }
}

/// Opens the sealed audit log `prefix`, re-encrypting first whatever an older master key
/// encrypted (after a rotation), waiting up to `wait` while another process holds it.
fn open_sealed_audit(
    dir: &Path,
    prefix: &str,
    ring: &MasterKeyring,
    options: &LogOptions,
    wait: Duration,
) -> Result<SealedAuditLog, JournalError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let r = reencrypt_log(dir, prefix, ring)
            .and_then(|_| SealedAuditLog::open(dir, prefix, ring, options).map(|(log, _)| log));
        match r {
            Err(JournalError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// Opens the server's audit log: encrypted under `keyring`, or in plaintext (with a loud
/// warning) when there is no master key at all. An encrypted log that cannot be opened is an
/// error: never a plaintext fallback.
pub fn open_server_audit(
    settings: &Settings,
    keyring: Option<&MasterKeyring>,
) -> Result<Arc<AuditLog>> {
    let Some(ring) = keyring else {
        let path = settings.audit_path();
        warn!(
            path = %path.display(),
            "AUDIT LOG IN PLAINTEXT: without a master key the security audit log is written unencrypted"
        );
        return Ok(Arc::new(AuditLog::Plain(PlainAuditLog::open(&path)?)));
    };
    let dir = settings.audit_dir();
    let options = LogOptions {
        fsync: FsyncPolicy::IntervalMs(AUDIT_FSYNC_MS),
        segment_bytes: AUDIT_SEGMENT_BYTES,
    };
    let log = open_sealed_audit(&dir, AUDIT_PREFIX, ring, &options, Duration::ZERO)
        .with_context(|| format!("cannot open the encrypted audit log in {}", dir.display()))?;
    import_plaintext_audit(&settings.audit_path(), &log)?;
    let log = Arc::new(AuditLog::Sealed(Box::new(log)));
    // Under the interval policy the last events of a burst are fsynced by this timer.
    let weak = Arc::downgrade(&log);
    std::thread::Builder::new()
        .name("audit-fsync".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(AUDIT_FSYNC_MS));
            let Some(log) = weak.upgrade() else { return };
            if let AuditLog::Sealed(s) = &*log {
                if let Err(e) = s.poll() {
                    error!(error = %e, "cannot fsync the audit log");
                }
            }
        })
        .context("cannot start the audit log's fsync thread")?;
    Ok(log)
}

/// Moves the events of a plaintext `audit.jsonl` (from a run without a master key) into the
/// encrypted log, then deletes the file, so nothing of the audit trail stays readable at rest.
/// A crash between the fsync and the deletion imports the file again next time (its events
/// twice, none lost).
fn import_plaintext_audit(path: &Path, log: &SealedAuditLog) -> Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow!(e).context(format!("cannot read {}", path.display()))),
    };
    let (mut imported, mut skipped) = (0u64, 0u64);
    for line in io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // Only JSON objects: the reader of the encrypted log expects one per record.
        if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line).is_err() {
            skipped += 1;
            continue;
        }
        log.record_json(line.as_bytes())
            .with_context(|| format!("importing {}", path.display()))?;
        imported += 1;
    }
    log.sync()
        .with_context(|| format!("importing {}", path.display()))?;
    std::fs::remove_file(path).with_context(|| format!("cannot delete {}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    warn!(
        path = %path.display(), imported, skipped,
        "imported the plaintext audit log into the encrypted one and deleted it (its bytes may \
         stay on the disk until overwritten)"
    );
    Ok(())
}

/// The audit log of a `keys` command (which always has the master key): encrypted, each
/// event fsynced before the command reports success.
pub fn open_cli_audit(settings: &Settings, ring: &MasterKeyring) -> Result<SealedAuditLog> {
    let dir = settings.audit_dir();
    let options = LogOptions {
        fsync: FsyncPolicy::Always,
        segment_bytes: AUDIT_SEGMENT_BYTES,
    };
    open_sealed_audit(&dir, AUDIT_CLI_PREFIX, ring, &options, CLI_AUDIT_WAIT)
        .with_context(|| format!("cannot open the encrypted audit log in {}", dir.display()))
}

// ---------------------------------------------------------------------------------------------
// The message stores

/// The master keyring shared with the encrypted stores, so a new one reaches them all. The
/// version lets each store see a change with one atomic load per call.
#[derive(Debug)]
pub struct KeyringCell {
    version: AtomicU64,
    ring: Mutex<MasterKeyring>,
}

impl KeyringCell {
    /// A cell holding `ring`.
    pub fn new(ring: MasterKeyring) -> Arc<Self> {
        Arc::new(Self {
            version: AtomicU64::new(0),
            ring: Mutex::new(ring),
        })
    }

    /// Replaces the keyring.
    pub fn set(&self, ring: MasterKeyring) {
        let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        *r = ring;
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The current keyring.
    pub fn current(&self) -> MasterKeyring {
        self.get().1
    }

    /// The keyring and its version.
    fn get(&self) -> (u64, MasterKeyring) {
        let r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        (self.version.load(Ordering::Acquire), r.clone())
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

/// An encrypted store that follows the shared keyring: before any call that reads or writes,
/// a new keyring is applied ([`SealedFileStore::set_keyring`], which re-encrypts the store
/// when older keys encrypted part of it).
struct RekeyingStore {
    store: SealedFileStore,
    keys: Arc<KeyringCell>,
    seen: u64,
}

impl RekeyingStore {
    fn refresh(&mut self) -> Result<(), StoreError> {
        if self.keys.version() == self.seen {
            return Ok(());
        }
        let (version, ring) = self.keys.get();
        self.store.set_keyring(&ring)?;
        self.seen = version;
        info!(
            dir = %self.store.dir().display(),
            key = ring.current().id(),
            "message store now under the current master key"
        );
        Ok(())
    }
}

impl MessageStore for RekeyingStore {
    fn next_sender_seq(&self) -> SeqNum {
        self.store.next_sender_seq()
    }
    fn next_target_seq(&self) -> SeqNum {
        self.store.next_target_seq()
    }
    fn set_next_sender_seq(&mut self, seq: SeqNum) -> Result<(), StoreError> {
        self.refresh()?;
        self.store.set_next_sender_seq(seq)
    }
    fn set_next_target_seq(&mut self, seq: SeqNum) -> Result<(), StoreError> {
        self.refresh()?;
        self.store.set_next_target_seq(seq)
    }
    fn save_outbound(&mut self, seq: SeqNum, message: &[u8]) -> Result<(), StoreError> {
        self.refresh()?;
        self.store.save_outbound(seq, message)
    }
    fn save_inbound(&mut self, seq: SeqNum, message: &[u8]) -> Result<(), StoreError> {
        self.refresh()?;
        self.store.save_inbound(seq, message)
    }
    fn outbound_range(
        &mut self,
        begin: SeqNum,
        end: SeqNum,
        out: &mut Vec<(SeqNum, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        self.refresh()?;
        self.store.outbound_range(begin, end, out)
    }
    fn reset(&mut self, now: UtcTimestamp) -> Result<(), StoreError> {
        self.refresh()?;
        self.store.reset(now)
    }
    fn creation_time(&self) -> UtcTimestamp {
        self.store.creation_time()
    }
    /// Also applies a new keyring, so [`SessionRegistry::sync_all`] brings every store under
    /// it, idle ones included.
    fn sync(&mut self) -> Result<(), StoreError> {
        self.refresh()?;
        self.store.sync()
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        self.store.commit()
    }
    fn has_uncommitted(&self) -> bool {
        self.store.has_uncommitted()
    }
    /// A new keyring re-encrypts the store at the next change.
    fn may_wait_for_disk(&self) -> bool {
        self.keys.version() != self.seen || self.store.may_wait_for_disk()
    }
}

/// The opener of a session's store in `dir`: encrypted when the server has a keyring, the
/// plaintext store otherwise — but never the plaintext store over an encrypted one, which
/// would start a second, diverging sequence.
pub fn store_opener(dir: PathBuf, sync: SyncPolicy, keys: Option<Arc<KeyringCell>>) -> StoreOpener {
    Box::new(move |now| match &keys {
        Some(keys) => {
            let (seen, ring) = keys.get();
            let mut store = SealedFileStore::open(&dir, now, sync, &ring)?;
            let current = ring.current().id();
            if store.key_ids().iter().any(|k| k != current) {
                // Written under an older master key before a restart with a rotated keyring:
                // re-encrypt now, so the old key can be retired.
                store.set_keyring(&ring)?;
                info!(dir = %dir.display(), key = current, "message store re-encrypted under the current master key");
            }
            // The session commits once per read and once before it sends: one write (one
            // fsync under store_sync = "always") for a burst instead of one per message.
            store.set_group_commit(true)?;
            Ok(Box::new(RekeyingStore {
                store,
                keys: keys.clone(),
                seen,
            }) as Box<dyn MessageStore>)
        }
        None => {
            if SealedFileStore::is_sealed(&dir)? {
                return Err(StoreError::WrongKey {
                    path: dir.clone(),
                    detail: format!(
                        "{}: the message store is encrypted and the server has no master key (set PORTCULLIS_MASTER_KEY or auth.master_key_file)",
                        dir.display()
                    ),
                });
            }
            FileStore::open(&dir, now, sync).map(|f| Box::new(f) as Box<dyn MessageStore>)
        }
    })
}

/// What the server does when it reads a new master keyring (after `keys rotate-master`):
/// every encrypted store and the audit log go on under its current key and re-encrypt what
/// older keys encrypted. Failures are logged; the data stays readable with the keys it had.
pub fn on_new_keyring(
    keys: Arc<KeyringCell>,
    registry: Arc<SessionRegistry>,
    audit: Arc<AuditLog>,
) -> crate::security::KeyringHook {
    Box::new(move |ring| {
        keys.set(ring.clone());
        // A sync applies the new keyring to each store (see `RekeyingStore::sync`).
        for (session, e) in registry.sync_all() {
            error!(%session, error = %e, "cannot bring the message store under the new master key");
        }
        if let Err(e) = audit.set_keyring(ring) {
            error!(error = %format!("{e:#}"), "cannot bring the audit log under the new master key");
        }
        info!(
            key = ring.current().id(),
            "message stores and audit log follow the new master keyring"
        );
    })
}

// ---------------------------------------------------------------------------------------------
// Retiring a master key

/// Before master key `key_id` leaves the keyring `ring`: re-encrypts under the current key
/// every audit log, message store and the journal that nobody holds open (the server stopped),
/// and checks those a running server holds (it re-encrypts its stores and audit log itself when
/// it reads the new keyring). Fails, naming them, if anything would still need the key.
/// Returns what it re-encrypted.
pub fn release_key(settings: &Settings, ring: &MasterKeyring, key_id: &str) -> Result<Vec<String>> {
    if ring.current().id() == key_id {
        bail!("master key {key_id:?} is the keyring's current key");
    }
    let mut done = Vec::new();
    let mut still = Vec::new();
    let audit_dir = settings.audit_dir();
    for prefix in audit_logs(&audit_dir).map_err(|e| anyhow!("audit log: {e}"))? {
        release_log(&audit_dir, &prefix, ring, key_id, &mut done, &mut still)?;
    }
    let sessions = settings.data_dir.join("sessions");
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(&sessions) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(anyhow!(e).context(format!("cannot list {}", sessions.display()))),
    };
    dirs.sort();
    for dir in dirs {
        if !SealedFileStore::is_sealed(&dir)? {
            continue;
        }
        match SealedFileStore::open(&dir, UtcTimestamp::now(), SyncPolicy::Always, ring) {
            Ok(mut store) => {
                if store.key_ids().iter().any(|k| k == key_id) {
                    store.set_keyring(ring)?;
                    done.push(format!("message store {}", dir.display()));
                }
            }
            Err(StoreError::Locked { .. }) => {
                // The server has it open: look at the headers only.
                if let Some(gen) = SealedFileStore::current_generation(&dir)? {
                    let ids = log_key_ids(&gen, FIX_STORE_PREFIX, ring)
                        .map_err(|e| anyhow!("message store: {e}"))?;
                    if ids.iter().any(|k| k == key_id) {
                        still.push(format!("the message store {}", dir.display()));
                    }
                }
            }
            Err(e) => return Err(anyhow!(e).context("message store")),
        }
    }
    let journal = &settings.journal.dir;
    if journal.is_dir() {
        release_log(journal, JOURNAL_PREFIX, ring, key_id, &mut done, &mut still)?;
    }
    if !still.is_empty() {
        bail!(
            "master key {key_id:?} still encrypts {}: a running server re-encrypts its message \
             stores and audit log once it has read the new keyring (within a second of the key \
             file changing, or on SIGHUP); the journal is re-encrypted by `portcullis journal \
             reencrypt` with the server stopped (or by this command, with the server stopped). \
             The key was not removed.",
            still.join(", ")
        );
    }
    Ok(done)
}

/// Re-encrypts the log `prefix` of `dir` under the current key, or, when a running server
/// holds it, checks that `key_id` no longer encrypts any of it.
fn release_log(
    dir: &Path,
    prefix: &str,
    ring: &MasterKeyring,
    key_id: &str,
    done: &mut Vec<String>,
    still: &mut Vec<String>,
) -> Result<()> {
    let what = format!("the {prefix} log in {}", dir.display());
    match reencrypt_log(dir, prefix, ring) {
        Ok(r) => {
            if !r.segments_rewritten.is_empty() || !r.snapshots_rewritten.is_empty() {
                done.push(what);
            }
            Ok(())
        }
        Err(JournalError::Locked { .. }) => {
            let ids = log_key_ids(dir, prefix, ring).map_err(|e| anyhow!("{what}: {e}"))?;
            if ids.iter().any(|k| k == key_id) {
                still.push(what);
            }
            Ok(())
        }
        Err(e) => Err(anyhow!("{what}: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// `portcullis audit`

/// `portcullis audit ...`: reading the security audit log (it needs the master key).
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// TOML config file (data dir, `auth.master_key_file`); without it the embedded default.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print the audit events, decrypted, as JSON lines on stdout, oldest first (the logs of
    /// the server and of the `keys` commands merged by time). Read-only: works while the
    /// server runs.
    Export {
        /// Only events at or after this time (RFC 3339, e.g. 2030-01-31T00:00:00Z).
        #[arg(long, value_name = "RFC3339")]
        since: Option<String>,
        /// Only events about this API key id.
        #[arg(long = "key", value_name = "KEY_ID")]
        key_id: Option<String>,
        /// Only events about this account.
        #[arg(long, value_name = "ACC")]
        account: Option<String>,
    },
}

/// The filters of `audit export` (and of the admin API's audit query).
#[derive(Debug, Default)]
pub(crate) struct Filter {
    /// Events at or after this time.
    pub since_ms: Option<i64>,
    /// Events before this time.
    pub until_ms: Option<i64>,
    /// Events about this key.
    pub key_id: Option<String>,
    /// Events about this account.
    pub account: Option<String>,
}

impl Filter {
    fn matches(&self, v: &serde_json::Value, time_ms: Option<i64>) -> bool {
        if let Some(since) = self.since_ms {
            if time_ms.map_or(true, |t| t < since) {
                return false;
            }
        }
        if let Some(until) = self.until_ms {
            if time_ms.map_or(true, |t| t >= until) {
                return false;
            }
        }
        if let Some(k) = &self.key_id {
            if v.get("key_id").and_then(|x| x.as_str()) != Some(k.as_str()) {
                return false;
            }
        }
        if let Some(a) = &self.account {
            if v.get("account").and_then(|x| x.as_str()) != Some(a.as_str()) {
                return false;
            }
        }
        true
    }
}

/// Runs an `audit` command; the error is printed by the caller (exit code 2).
pub fn run(args: AuditArgs) -> Result<()> {
    let settings = match &args.config {
        Some(p) => config::load(p).map_err(|e| anyhow!("config error in {}: {e}", p.display()))?,
        None => config::embedded_default()
            .map_err(|e| anyhow!("config error in the embedded default: {e}"))?,
    };
    let AuditCommand::Export {
        since,
        key_id,
        account,
    } = args.command;
    let filter = Filter {
        until_ms: None,
        since_ms: since
            .as_deref()
            .map(parse_rfc3339_ms)
            .transpose()
            .context("--since")?,
        key_id,
        account,
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    export(&settings, &filter, &mut out)?;
    out.flush()?;
    Ok(())
}

/// Writes the matching events of the encrypted audit logs and of a plaintext `audit.jsonl`
/// (from runs without a master key), merged by time, one JSON object per line.
pub(crate) fn export(settings: &Settings, filter: &Filter, out: &mut dyn Write) -> Result<u64> {
    let dir = settings.audit_dir();
    let sealed = !audit_logs(&dir)
        .map_err(|e| anyhow!("audit log: {e}"))?
        .is_empty();
    // (time, event) of every event; a stable sort keeps each log's order.
    let mut events: Vec<(Option<i64>, String)> = Vec::new();
    if sealed {
        let ring = crate::security::load_keyring(settings, false)
            .context("the audit log is encrypted")?
            .ring;
        let records = read_audit_dir(&dir, &ring).map_err(|e| anyhow!("audit log: {e}"))?;
        events.extend(records.into_iter().map(|r| (r.time_ms, r.json)));
    }
    let plain = settings.audit_path();
    match File::open(&plain) {
        Ok(f) => {
            eprintln!(
                "warning: {} is a PLAINTEXT audit log (from a run without a master key); its \
                 events are included",
                plain.display()
            );
            for line in io::BufReader::new(f).lines() {
                let line = line.with_context(|| format!("cannot read {}", plain.display()))?;
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let time_ms = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| {
                        v.get("time")?
                            .as_str()
                            .and_then(|t| parse_rfc3339_ms(t).ok())
                    });
                events.push((time_ms, line.to_owned()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow!(e).context(format!("cannot read {}", plain.display()))),
    }
    events.sort_by_key(|(t, _)| t.unwrap_or(i64::MAX));
    let mut n = 0;
    for (time_ms, json) in events {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) else {
            // Not JSON (only a damaged plaintext line can be): shown unless a filter applies.
            if filter.since_ms.is_none()
                && filter.until_ms.is_none()
                && filter.key_id.is_none()
                && filter.account.is_none()
            {
                writeln!(out, "{json}")?;
                n += 1;
            }
            continue;
        };
        if filter.matches(&v, time_ms) {
            writeln!(out, "{json}")?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_auth::{AuditKind, Outcome};

    fn ring(id: &str, byte: u8) -> MasterKeyring {
        MasterKeyring::parse(&format!("{id}:{}", hex::encode([byte; 32]))).unwrap()
    }

    fn settings(dir: &Path) -> Settings {
        let text = format!(
            "data_dir = \"{}\"\n[[listeners]]\nname = \"fix\"\nbind = \"127.0.0.1:0\"\ntls = false\nbegin_string = \"FIX.4.4\"\n",
            dir.display()
        );
        let path = dir.join("c.toml");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&path, text).unwrap();
        config::load(&path).unwrap()
    }

    fn event(key: &str, account: &str, ms: i64) -> AuditEvent {
        AuditEvent::new(AuditKind::Logon, Outcome::Ok, ms)
            .key_id(key)
            .account(account)
    }

    fn export_lines(s: &Settings, f: &Filter) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        export(s, f, &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_plaintext_audit_log_is_imported_and_deleted_and_export_filters() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path());
        {
            let plain = open_server_audit(&s, None).unwrap();
            plain.record(&event("pk_a", "ACC1", 1_000)).unwrap();
            plain
                .record_line(
                    r#"{"time":"1970-01-01T00:00:02.000Z","kind":"admin","account":"ACC2"}"#,
                )
                .unwrap();
        }
        assert!(s.audit_path().exists());
        let log = open_server_audit(&s, Some(&ring("1", 1))).unwrap();
        assert!(!s.audit_path().exists(), "the plaintext log is gone");
        log.record(&event("pk_b", "ACC1", 3_000)).unwrap();
        log.sync().unwrap();
        let cli = open_cli_audit(&s, &ring("1", 1)).unwrap();
        cli.record(&event("pk_c", "ACC2", 2_500)).unwrap();
        drop(cli);
        // Both logs, merged by time (`export` does the same with the configured key).
        let records = read_audit_dir(s.audit_dir(), &ring("1", 1)).unwrap();
        let keys: Vec<String> = records
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
                v["key_id"].as_str().unwrap_or("-").to_owned()
            })
            .collect();
        assert_eq!(keys, ["pk_a", "-", "pk_c", "pk_b"]);
        // Nothing readable at rest.
        for f in std::fs::read_dir(s.audit_dir()).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            assert!(!bytes.windows(4).any(|w| w == b"ACC1"));
        }
        drop(log);
    }

    #[test]
    fn export_of_a_plaintext_log_filters_by_time_key_and_account() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path());
        let plain = open_server_audit(&s, None).unwrap();
        plain.record(&event("pk_a", "ACC1", 1_000)).unwrap();
        plain.record(&event("pk_b", "ACC2", 2_000)).unwrap();
        plain.record(&event("pk_a", "ACC1", 3_000)).unwrap();
        let all = export_lines(&s, &Filter::default());
        assert_eq!(all.len(), 3);
        let f = Filter {
            since_ms: Some(2_000),
            ..Filter::default()
        };
        assert_eq!(export_lines(&s, &f).len(), 2);
        let f = Filter {
            key_id: Some("pk_a".into()),
            ..Filter::default()
        };
        assert_eq!(export_lines(&s, &f).len(), 2);
        let f = Filter {
            account: Some("ACC2".into()),
            since_ms: Some(1_500),
            ..Filter::default()
        };
        let v = export_lines(&s, &f);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0]["key_id"], "pk_b");
    }

    #[test]
    fn the_plaintext_store_is_refused_over_an_encrypted_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let keys = KeyringCell::new(ring("1", 1));
        let open = store_opener(dir.clone(), SyncPolicy::Never, Some(keys.clone()));
        let mut store = open(UtcTimestamp::now()).unwrap();
        store
            .save_outbound(1, b"8=FIX.4.4\x0111=SECRET\x01")
            .unwrap();
        // A new keyring reaches the store at its next call, and re-encrypts it.
        keys.set(ring("2", 2));
        store.sync().unwrap();
        drop(store);
        let gen = SealedFileStore::current_generation(&dir).unwrap().unwrap();
        assert_eq!(
            log_key_ids(&gen, FIX_STORE_PREFIX, &ring("2", 2)).unwrap(),
            ["2"]
        );
        let plain = store_opener(dir.clone(), SyncPolicy::Never, None);
        let err = plain(UtcTimestamp::now()).err().unwrap();
        assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
        let open = store_opener(dir, SyncPolicy::Never, Some(KeyringCell::new(ring("2", 2))));
        let mut store = open(UtcTimestamp::now()).unwrap();
        let mut out = Vec::new();
        store.outbound_range(1, 1, &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn releasing_a_key_re_encrypts_what_nobody_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path());
        let old = ring("1", 1);
        let both = old.with_current(portcullis_auth::MasterKey::new("2", [2; 32]).unwrap());
        {
            let log = open_server_audit(&s, Some(&old)).unwrap();
            log.record(&event("pk_a", "ACC1", 1_000)).unwrap();
            let open = store_opener(
                s.data_dir.join("sessions/x"),
                SyncPolicy::Never,
                Some(KeyringCell::new(old.clone())),
            );
            open(UtcTimestamp::now())
                .unwrap()
                .save_outbound(1, b"m")
                .unwrap();
        }
        // Held open by a "server": refused.
        let (held, _) =
            SealedAuditLog::open(s.audit_dir(), AUDIT_PREFIX, &both, &LogOptions::default())
                .unwrap();
        let err = release_key(&s, &both, "1").unwrap_err();
        assert!(format!("{err:#}").contains("the audit log"), "{err:#}");
        // The store nobody held was re-encrypted meanwhile.
        let only_new = ring("2", 2);
        let gen = SealedFileStore::current_generation(&s.data_dir.join("sessions/x"))
            .unwrap()
            .unwrap();
        assert_eq!(
            log_key_ids(&gen, FIX_STORE_PREFIX, &only_new).unwrap(),
            ["2"]
        );
        drop(held);
        let done = release_key(&s, &both, "1").unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(done[0].starts_with("the audit log"), "{done:?}");
        assert_eq!(read_audit_dir(s.audit_dir(), &only_new).unwrap().len(), 1);
        assert!(release_key(&s, &both, "1").unwrap().is_empty());
        assert!(
            release_key(&s, &both, "2").is_err(),
            "the current key stays"
        );
    }
}
