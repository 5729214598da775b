//! Authentication wiring: the master key, the key vault, the [`Authenticator`]
//! shared by every connection, each connection's [`SessionAuth`], and reloading the vault while
//! the server runs (when its file changes, and on SIGHUP) without dropping sessions.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use portcullis_auth::clock::now_ms;
use portcullis_auth::vault::MASTER_KEY_ENV;
use portcullis_auth::{
    AuditEvent, AuditKind, AuditSink, Authenticator, Grant, KeySpec, LogonAttempt, MasterKeyring,
    NewKey, Outcome, Scope, Scopes, SigError, Vault,
};
use portcullis_fix::{tag, BeginString, MessageRef, UtcTimestamp};
use portcullis_session::transport::{ConnectionAuth, ListenerConfig, ShutdownSignal};
use portcullis_session::{MessageAuthError, SessionAuth, SessionConfig};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::config::Settings;

/// The id of the development master key the embedded default generates.
const DEV_MASTER_KEY_ID: &str = "dev";

/// How often the vault file is checked for changes.
const VAULT_POLL: Duration = Duration::from_secs(1);

/// How often the keys' last-use times are written back to the vault (and at shutdown).
const LAST_USED_FLUSH: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The master key

/// Where the master keyring was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `PORTCULLIS_MASTER_KEY`.
    Env,
    /// A key file (`auth.master_key_file`).
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env => f.write_str(MASTER_KEY_ENV),
            KeySource::File(p) => write!(f, "key file {}", p.display()),
        }
    }
}

/// The master keyring and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedKeyring {
    /// The keys; the first is current.
    pub ring: MasterKeyring,
    /// Where they were read from.
    pub source: KeySource,
}

impl LoadedKeyring {
    /// Reads the keyring again from its file (a rotation may have changed it); the variable
    /// cannot change while the process runs, so an env keyring is returned as is.
    pub fn reread(&self) -> Result<LoadedKeyring> {
        match &self.source {
            KeySource::Env => Ok(self.clone()),
            KeySource::File(p) => Ok(LoadedKeyring {
                ring: MasterKeyring::from_file(p)?,
                source: self.source.clone(),
            }),
        }
    }
}

/// The master keyring: from `PORTCULLIS_MASTER_KEY` if it is set, else from
/// `auth.master_key_file`. With `create_dev_key`, the embedded default (and only it) creates
/// its key file, with a loud warning, when it is missing. Never from the config itself.
pub fn load_keyring(settings: &Settings, create_dev_key: bool) -> Result<LoadedKeyring> {
    if std::env::var_os(MASTER_KEY_ENV).is_some() {
        let ring = MasterKeyring::from_env().context("cannot use the master key")?;
        return Ok(LoadedKeyring {
            ring,
            source: KeySource::Env,
        });
    }
    let Some(file) = &settings.auth.master_key_file else {
        bail!(
            "no master key: set {MASTER_KEY_ENV} (64 hex characters, or a keyring ID:HEX,ID:HEX) \
             or auth.master_key_file in the config; `portcullis keys new-master-key` generates one"
        );
    };
    match std::fs::symlink_metadata(file) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if settings.embedded && create_dev_key {
                return create_dev_master_key(file);
            }
            bail!(
                "no master key: auth.master_key_file = {:?} does not exist and {MASTER_KEY_ENV} is \
                 not set; create the file with `portcullis keys new-master-key --key-file {}`",
                file.display().to_string(),
                file.display()
            );
        }
        Err(e) => {
            return Err(anyhow!(e).context(format!("master key file {}", file.display())));
        }
    }
    let ring = MasterKeyring::from_file(file).context("cannot use the master key")?;
    Ok(LoadedKeyring {
        ring,
        source: KeySource::File(file.clone()),
    })
}

fn create_dev_master_key(file: &Path) -> Result<LoadedKeyring> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let ring = MasterKeyring::generate(DEV_MASTER_KEY_ID)?;
    ring.write_new_key_file(file)
        .with_context(|| format!("cannot write the dev master key {}", file.display()))?;
    let banner = "!".repeat(94);
    eprintln!(
        "{banner}\n\
         !! WARNING: no master key was found, so a DEVELOPMENT master key was generated in\n\
         !!   {}\n\
         !! It encrypts the key vault; anyone who can read that file can decrypt every API secret.\n\
         !! This happens only with the embedded default config. In production set {MASTER_KEY_ENV}\n\
         !! or auth.master_key_file, and keep the key away from the data it protects.\n\
         {banner}",
        file.display()
    );
    warn!(file = %file.display(), "generated a development master key (embedded default only)");
    Ok(LoadedKeyring {
        ring,
        source: KeySource::File(file.to_path_buf()),
    })
}

// ---------------------------------------------------------------------------------------------
// The vault at start-up

/// The vault as the server opens it at start.
pub struct OpenedVault {
    /// The keys.
    pub vault: Vault,
    /// The demo key, when this start created the vault of the embedded default.
    pub demo_key: Option<(NewKey, String)>,
}

/// Opens `<data_dir>/vault.bin` under its lock, creating an empty one if there is none (with a
/// demo key for the embedded default). Any unreadable vault is an error, never an empty vault.
pub fn open_vault_at_start(
    settings: &Settings,
    ring: &MasterKeyring,
    audit: &dyn AuditSink,
) -> Result<OpenedVault> {
    let path = settings.vault_path();
    let _lock = Vault::lock(&path)?;
    let existed = std::fs::symlink_metadata(&path).is_ok();
    let mut vault = Vault::open_or_create(&path, ring)?;
    let mut demo_key = None;
    if !existed {
        if settings.embedded {
            let account = demo_account(settings);
            let now = now_ms();
            let spec = KeySpec::new(&account, Scopes::of(&[Scope::Trade, Scope::Read]));
            let key = vault.create_key(spec, now)?;
            vault.save()?;
            let event = AuditEvent::new(AuditKind::KeyCreated, Outcome::Ok, now)
                .key_id(key.key_id.as_str())
                .account(&account)
                .reason("demo_key")
                .detail("demo key of the embedded default, scopes read,trade");
            if let Err(e) = audit.record(&event) {
                error!(error = %e, "could not write the audit event for the demo key");
            }
            demo_key = Some((key, account));
        } else {
            warn!(vault = %path.display(), "created an empty key vault: no Logon can succeed until `portcullis keys create` adds a key");
        }
    }
    Ok(OpenedVault { vault, demo_key })
}

/// The account of the demo key: the first account of the first authenticated session.
fn demo_account(settings: &Settings) -> String {
    settings
        .sessions
        .iter()
        .filter(|s| s.authenticate)
        .flat_map(|s| s.accounts.iter())
        .find(|a| a.as_str() != portcullis_auth::ANY_ACCOUNT)
        .cloned()
        .unwrap_or_else(|| "DEMO-ACC".to_owned())
}

// ---------------------------------------------------------------------------------------------
// Per-connection authentication

/// What a session requires of the keys that log on to it.
#[derive(Debug)]
pub struct SessionPolicy {
    /// The session's name in logs and the audit log, e.g. `FIX.4.4:ISLD->TW`.
    pub name: String,
    /// False for `authentication = "none"`.
    pub authenticate: bool,
    /// Accounts a key may belong to (`*` = any).
    pub accounts: Vec<String>,
    /// The scope a key needs.
    pub access: Scope,
    /// The account of the key of the session's last authenticated Logon. A session has one
    /// connection at a time (the transport's claim), and a connection's application messages
    /// come after its Logon, so the order pipeline reads here the account of the connection
    /// it serves.
    pub logged_on_account: std::sync::Mutex<Option<String>>,
}

type SessionKey = (BeginString, String, String);

/// The server's [`ConnectionAuth`]: one [`Authenticator`] for every connection, each
/// connection's [`FixSessionAuth`] built from its session's [`SessionPolicy`] and its peer's
/// address.
pub struct ServerAuth {
    authenticator: Option<Arc<Authenticator>>,
    policies: HashMap<SessionKey, Arc<SessionPolicy>>,
    revocations: watch::Sender<u64>,
}

impl ServerAuth {
    /// The authentication of the sessions of `settings`; `authenticator` is `None` only when no
    /// session authenticates.
    pub fn new(settings: &Settings, authenticator: Option<Arc<Authenticator>>) -> Self {
        let policies = settings
            .sessions
            .iter()
            .map(|s| {
                let c = &s.config;
                let key = (
                    c.begin_string,
                    c.sender_comp_id.clone(),
                    c.target_comp_id.clone(),
                );
                let policy = SessionPolicy {
                    name: session_name(c),
                    authenticate: s.authenticate,
                    accounts: s.accounts.clone(),
                    access: s.access,
                    logged_on_account: std::sync::Mutex::new(None),
                };
                (key, Arc::new(policy))
            })
            .collect();
        Self {
            authenticator,
            policies,
            revocations: watch::channel(0).0,
        }
    }

    /// The account of the key the session's current connection logged on with (`None` before
    /// an authenticated Logon, or for a session without authentication).
    pub fn logged_on_account(&self, session: &SessionConfig) -> Option<String> {
        let key = (
            session.begin_string,
            session.sender_comp_id.clone(),
            session.target_comp_id.clone(),
        );
        let policy = self.policies.get(&key)?;
        policy
            .logged_on_account
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tells every live connection to re-check its credential now.
    pub fn signal_revocation(&self) {
        self.revocations.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// `FIX.4.4:ISLD->TW`, as the transport names sessions.
pub fn session_name(c: &SessionConfig) -> String {
    format!(
        "{}:{}->{}",
        c.begin_string, c.sender_comp_id, c.target_comp_id
    )
}

impl ConnectionAuth for ServerAuth {
    fn session_auth(
        &self,
        session: &SessionConfig,
        listener: &ListenerConfig,
        peer: SocketAddr,
    ) -> Result<Option<Box<dyn SessionAuth>>, String> {
        let key = (
            session.begin_string,
            session.sender_comp_id.clone(),
            session.target_comp_id.clone(),
        );
        let Some(policy) = self.policies.get(&key) else {
            return Err("no authentication policy for this session".into());
        };
        if !policy.authenticate {
            // The config allows this only on loopback listeners; checked again here.
            if listener.bind.ip().is_loopback() && peer.ip().is_loopback() {
                return Ok(None);
            }
            return Err("a session without authentication accepts loopback peers only".into());
        }
        let Some(authenticator) = &self.authenticator else {
            return Err("authentication required but no key vault is loaded".into());
        };
        Ok(Some(Box::new(FixSessionAuth {
            authenticator: authenticator.clone(),
            policy: policy.clone(),
            peer_ip: peer.ip(),
            grant: None,
        })))
    }

    fn revocations(&self) -> Option<watch::Receiver<u64>> {
        Some(self.revocations.subscribe())
    }
}

/// One connection's authentication: the Logon signature through the shared [`Authenticator`],
/// then the per-message signatures with the [`Grant`]'s verifier (no lock, no allocation).
pub struct FixSessionAuth {
    authenticator: Arc<Authenticator>,
    policy: Arc<SessionPolicy>,
    peer_ip: IpAddr,
    grant: Option<Grant>,
}

impl SessionAuth for FixSessionAuth {
    fn authenticate_logon(
        &mut self,
        logon: &MessageRef<'_>,
        now: UtcTimestamp,
    ) -> Result<(), String> {
        let field = |t| logon.get(t).unwrap_or(b"");
        // A Username that is not UTF-8 names no key: converted lossily, it is an unknown key.
        let key_id: Cow<'_, str> = String::from_utf8_lossy(field(tag::USERNAME));
        let attempt = LogonAttempt {
            key_id: &key_id,
            sending_time: field(tag::SENDING_TIME),
            msg_type: logon.msg_type(),
            msg_seq_num: field(tag::MSG_SEQ_NUM),
            sender_comp_id: field(tag::SENDER_COMP_ID),
            target_comp_id: field(tag::TARGET_COMP_ID),
            raw_data: logon.get(tag::RAW_DATA),
            peer_ip: self.peer_ip,
            session: &self.policy.name,
            allowed_accounts: &self.policy.accounts,
            required_scope: self.policy.access,
            now_ms: now.millis(),
        };
        match self.authenticator.authenticate_logon(&attempt) {
            Ok(grant) => {
                info!(
                    session = %self.policy.name, peer = %self.peer_ip,
                    key_id = %grant.key_id, account = %grant.account, "logon authenticated"
                );
                *self
                    .policy
                    .logged_on_account
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(grant.account.clone());
                self.grant = Some(grant);
                Ok(())
            }
            Err(denied) => {
                // The transport logs the refusal; the audit log has the precise reason.
                debug!(
                    session = %self.policy.name, peer = %self.peer_ip,
                    reason = denied.reason(), "logon refused by authentication"
                );
                Err(denied.public_text().to_owned())
            }
        }
    }

    fn verify_message(&mut self, message: &MessageRef<'_>) -> Result<(), MessageAuthError> {
        let Some(grant) = &self.grant else {
            return Err(MessageAuthError::Invalid);
        };
        match grant.message_verifier.verify(message.bytes()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.authenticator.record_message_signature_failure(
                    &self.policy.name,
                    grant.key_id.as_str(),
                    self.peer_ip,
                    e,
                    now_ms(),
                );
                Err(match e {
                    SigError::Missing => MessageAuthError::Missing,
                    SigError::Malformed | SigError::Mismatch | SigError::KeyRevoked => {
                        MessageAuthError::Invalid
                    }
                })
            }
        }
    }

    fn revoked(&self, now: UtcTimestamp) -> bool {
        self.grant.as_ref().is_some_and(|g| {
            g.message_verifier.is_revoked()
                || g.message_verifier
                    .is_expired(now.nanos().div_euclid(1_000_000))
        })
    }
}

impl Drop for FixSessionAuth {
    fn drop(&mut self) {
        self.authenticator.session_closed(&self.policy.name);
    }
}

// ---------------------------------------------------------------------------------------------
// Reloading the vault while the server runs

/// What identifies one version of the vault file: an atomic rename gives a new inode, a write in
/// place a new mtime or length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        len: m.size(),
    })
}

/// What a [`VaultWatcher`] calls with a new master keyring.
pub type KeyringHook = Box<dyn Fn(&MasterKeyring) + Send + Sync>;

/// Keeps the [`Authenticator`] in step with the vault file: polls it every second and reloads on
/// SIGHUP, re-reading a key file keyring first (so a `keys rotate-master` needs no restart); a
/// vault that cannot be read leaves the loaded keys in place and is logged and audited. Revoked
/// or expired keys are signalled to live sessions at once. Writes the keys' last-use times
/// back every minute and at shutdown.
pub struct VaultWatcher {
    path: PathBuf,
    keyring: LoadedKeyring,
    authenticator: Arc<Authenticator>,
    server_auth: Arc<ServerAuth>,
    seen: Option<Stamp>,
    /// Expiry times of the loaded active keys, to signal sessions when one passes.
    expiries: Vec<i64>,
    last_expiry_check: i64,
    /// Called with a keyring that differs from the one loaded before (after a rotation).
    on_new_keyring: Option<KeyringHook>,
}

impl VaultWatcher {
    /// A watcher of `path`, whose current contents are already loaded into `authenticator`.
    pub fn new(
        path: PathBuf,
        keyring: LoadedKeyring,
        vault: &Vault,
        authenticator: Arc<Authenticator>,
        server_auth: Arc<ServerAuth>,
    ) -> Self {
        let seen = stamp(&path);
        let mut w = Self {
            path,
            keyring,
            authenticator,
            server_auth,
            seen,
            expiries: Vec::new(),
            last_expiry_check: now_ms(),
            on_new_keyring: None,
        };
        w.note_expiries(vault);
        w
    }

    /// Calls `hook` whenever a reload reads a keyring that differs from the one loaded before
    /// (after `keys rotate-master`), before the vault is reloaded, so the data encrypted at
    /// rest follows the new key by the time the reload is audited.
    pub fn on_new_keyring(mut self, hook: KeyringHook) -> Self {
        self.on_new_keyring = Some(hook);
        self
    }

    fn note_expiries(&mut self, vault: &Vault) {
        self.expiries = vault
            .keys()
            .iter()
            .filter(|k| !k.is_revoked())
            .filter_map(|k| k.expires_at)
            .collect();
    }

    /// Runs until `shutdown`, then writes the last-use times one more time.
    pub async fn run(
        mut self,
        mut hangup: tokio::signal::unix::Signal,
        mut shutdown: ShutdownSignal,
    ) {
        let mut poll = tokio::time::interval(VAULT_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flush = tokio::time::interval(LAST_USED_FLUSH);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        flush.reset();
        loop {
            tokio::select! {
                _ = poll.tick() => {
                    self.check_expiries();
                    let now = stamp(&self.path);
                    if now != self.seen {
                        self.seen = now;
                        // File I/O, decryption and the vault lock: off the async workers.
                        tokio::task::block_in_place(|| self.reload("vault file changed"));
                    }
                }
                Some(()) = hangup.recv() => {
                    info!("SIGHUP: reloading the key vault");
                    self.seen = stamp(&self.path);
                    tokio::task::block_in_place(|| self.reload("SIGHUP"));
                }
                _ = flush.tick() => tokio::task::block_in_place(|| self.flush_last_used()),
                _ = shutdown.wait() => break,
            }
        }
        tokio::task::block_in_place(|| self.flush_last_used());
    }

    fn check_expiries(&mut self) {
        let now = now_ms();
        let since = self.last_expiry_check;
        self.last_expiry_check = now;
        if self.expiries.iter().any(|&e| e > since && e <= now) {
            info!("an API key expired: live sessions re-check their credentials");
            self.server_auth.signal_revocation();
        }
    }

    fn reload(&mut self, why: &str) {
        match self.keyring.reread() {
            Ok(k) => {
                let changed = *k.ring.to_text() != *self.keyring.ring.to_text();
                self.keyring = k;
                if changed {
                    info!(
                        key = self.keyring.ring.current().id(),
                        "the master keyring changed"
                    );
                    if let Some(hook) = &self.on_new_keyring {
                        hook(&self.keyring.ring);
                    }
                }
            }
            Err(e) => {
                error!(error = %format!("{e:#}"), "cannot re-read the master key; keeping the one loaded");
            }
        }
        match Vault::open(&self.path, &self.keyring.ring) {
            Ok(vault) => self.apply(&vault, why),
            Err(e) => {
                error!(vault = %self.path.display(), error = %e, "cannot reload the key vault; the keys loaded before stay in force");
                self.authenticator.record(
                    AuditEvent::new(AuditKind::KeysReloaded, Outcome::Denied, now_ms())
                        .reason("vault_unreadable")
                        .detail(e.to_string()),
                );
            }
        }
    }

    fn apply(&mut self, vault: &Vault, why: &str) {
        let stats = self.authenticator.reload(vault);
        self.note_expiries(vault);
        info!(
            reason = why,
            keys = stats.keys,
            revoked = stats.revoked,
            "key vault reloaded"
        );
        if stats.revoked > 0 {
            self.server_auth.signal_revocation();
        }
    }

    /// Writes the last successful logon time of each key into the vault, under its lock. A
    /// change made by someone else since the last look is applied first.
    fn flush_last_used(&mut self) {
        let used = self.authenticator.take_last_used();
        if used.is_empty() {
            return;
        }
        let seen = self.seen;
        let mut changed_elsewhere = None;
        let path = self.path.clone();
        let result = Vault::update(&path, &self.keyring.ring, false, |v| {
            if stamp(&path) != seen {
                changed_elsewhere = Some(v.keys().to_vec());
            }
            for (key_id, at) in &used {
                // A key removed meanwhile has no last use to record.
                let _ = v.touch(key_id, *at);
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                if let Some(keys) = changed_elsewhere {
                    let stats = self.authenticator.reload_keys(keys);
                    info!(
                        keys = stats.keys,
                        revoked = stats.revoked,
                        "key vault reloaded"
                    );
                    if stats.revoked > 0 {
                        self.server_auth.signal_revocation();
                    }
                }
                self.seen = stamp(&self.path);
                debug!(keys = used.len(), "last-use times written to the key vault");
            }
            Err(e) => {
                warn!(error = %e, "cannot write the keys' last-use times to the vault");
            }
        }
    }
}

/// Replaces a key file atomically with `ring` (a new file, fsynced, renamed over the old one,
/// the directory fsynced), mode 0600.
pub fn replace_key_file(path: &Path, ring: &MasterKeyring) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.new-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    ring.write_new_key_file(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow!(e).context(format!("cannot replace {}", path.display())));
    }
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use portcullis_auth::fix_sig::{sign_logon, sign_message};
    use portcullis_auth::{LogonFields, MemoryAuditLog};
    use portcullis_fix::{Decoder, Encoder, TimePrecision};

    fn settings_in(dir: &Path, embedded: bool) -> Settings {
        let text = config::EMBEDDED_DEFAULT.replace(
            "data_dir = \"./var\"",
            &format!("data_dir = {:?}", dir.join("var").display().to_string()),
        );
        let text = text.replace(
            "master_key_file = \"./var/master.key\"",
            &format!(
                "master_key_file = {:?}",
                dir.join("var/master.key").display().to_string()
            ),
        );
        // Parsed as the embedded default (its TLS listener has no [tls] section), then marked
        // as what the test needs.
        let mut s = config::parse(&text, true).unwrap();
        s.embedded = embedded;
        s
    }

    fn env_key_set() -> bool {
        // These tests are about the key file; with the variable set they would test it instead.
        std::env::var_os(MASTER_KEY_ENV).is_some()
    }

    #[test]
    fn only_the_embedded_default_creates_a_master_key_file() {
        if env_key_set() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let other = settings_in(dir.path(), false);
        let e = load_keyring(&other, true).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(e.contains("keys new-master-key"), "{e}");
        assert!(!dir.path().join("var/master.key").exists());

        let embedded = settings_in(dir.path(), true);
        let e = load_keyring(&embedded, false).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let k = load_keyring(&embedded, true).unwrap();
        assert_eq!(k.ring.current().id(), DEV_MASTER_KEY_ID);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("var/master.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Then it is read, not replaced; and any config may use it.
        let again = load_keyring(&embedded, true).unwrap();
        assert_eq!(again.ring.to_text(), k.ring.to_text());
        let other = load_keyring(&other, false).unwrap();
        assert_eq!(other.ring.to_text(), k.ring.to_text());
    }

    #[test]
    fn the_demo_key_is_created_on_the_first_start_of_the_embedded_default_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var")).unwrap();
        let ring = MasterKeyring::generate("t").unwrap();
        let audit = MemoryAuditLog::new();
        let s = settings_in(dir.path(), true);
        let first = open_vault_at_start(&s, &ring, &audit).unwrap();
        let (key, account) = first.demo_key.expect("demo key on first start");
        assert_eq!(account, "DEMO-ACC");
        assert!(key.secret.is_some());
        assert_eq!(first.vault.keys().len(), 1);
        assert_eq!(audit.events()[0].kind, AuditKind::KeyCreated);
        let second = open_vault_at_start(&s, &ring, &audit).unwrap();
        assert!(second.demo_key.is_none());
        assert_eq!(second.vault.keys().len(), 1);

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var")).unwrap();
        let s = settings_in(dir.path(), false);
        let other = open_vault_at_start(&s, &ring, &audit).unwrap();
        assert!(other.demo_key.is_none());
        assert!(other.vault.keys().is_empty());
    }

    const SECRET_ACCOUNT: &str = "ACC1";

    /// An authenticator with one key, and a session auth for `FIX.4.4:ISLD->TW` from 127.0.0.1.
    fn session_auth() -> (
        FixSessionAuth,
        Arc<Authenticator>,
        Arc<MemoryAuditLog>,
        portcullis_auth::ApiKey,
        String,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let ring = MasterKeyring::generate("t").unwrap();
        let mut vault = Vault::create(dir.path().join("vault.bin"), &ring).unwrap();
        let nk = vault
            .create_key(
                KeySpec::new(SECRET_ACCOUNT, Scopes::of(&[Scope::Trade])),
                now_ms(),
            )
            .unwrap();
        let audit = Arc::new(MemoryAuditLog::new());
        let authenticator = Arc::new(
            Authenticator::with_vault(
                portcullis_auth::AuthConfig::default(),
                &vault,
                audit.clone(),
            )
            .unwrap(),
        );
        let policy = Arc::new(SessionPolicy {
            name: "FIX.4.4:ISLD->TW".into(),
            authenticate: true,
            accounts: vec![SECRET_ACCOUNT.into()],
            access: Scope::Trade,
            logged_on_account: std::sync::Mutex::new(None),
        });
        let auth = FixSessionAuth {
            authenticator: authenticator.clone(),
            policy,
            peer_ip: "127.0.0.1".parse().unwrap(),
            grant: None,
        };
        let key = vault.keys()[0].clone();
        let secret = nk.secret.unwrap().expose().to_owned();
        (auth, authenticator, audit, key, secret)
    }

    fn logon(key_id: &str, secret: &str, now: UtcTimestamp) -> Vec<u8> {
        let mut t = Vec::new();
        now.write(TimePrecision::Millis, &mut t);
        let raw = sign_logon(
            secret.as_bytes(),
            &LogonFields {
                sending_time: &t,
                msg_type: b"A",
                msg_seq_num: b"1",
                sender_comp_id: b"TW",
                target_comp_id: b"ISLD",
                username: key_id.as_bytes(),
            },
        );
        let mut enc = Encoder::new();
        enc.start(b"FIX.4.4", b"A");
        enc.str(49, b"TW").str(56, b"ISLD").uint(34, 1).str(52, &t);
        enc.uint(98, 0).uint(108, 30).str(553, key_id.as_bytes());
        enc.data(95, 96, raw.as_bytes());
        enc.finish().to_vec()
    }

    fn order(secret: Option<&str>, qty_sent: &str) -> Vec<u8> {
        let body = |qty: &str| {
            format!("35=D\x0149=TW\x0156=ISLD\x0134=2\x0152=20240102-03:04:06.000\x0111=O1\x0138={qty}\x01")
        };
        let extra = if secret.is_some() { 54 } else { 0 };
        let head = format!("8=FIX.4.4\x019={}\x01", body(qty_sent).len() + extra);
        let mut m = format!("{head}{}", body(qty_sent)).into_bytes();
        if let Some(secret) = secret {
            let sig = sign_message(
                secret.as_bytes(),
                format!("{head}{}", body("10")).as_bytes(),
            );
            m.extend_from_slice(format!("93=44\x0189={sig}\x01").as_bytes());
        }
        let sum = m.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        m.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
        m
    }

    #[test]
    fn logon_then_message_signatures_are_checked_with_the_grant() {
        let (mut auth, authenticator, audit, key, secret) = session_auth();
        let mut dec = Decoder::new();
        let now = UtcTimestamp::now();

        // Before a Logon nothing verifies.
        let m = order(Some(&secret), "10");
        assert_eq!(
            auth.verify_message(&dec.decode(&m).unwrap()),
            Err(MessageAuthError::Invalid)
        );

        let bad = logon(key.key_id.as_str(), &"0".repeat(64), now);
        assert_eq!(
            auth.authenticate_logon(&dec.decode(&bad).unwrap(), now),
            Err("Authentication failed".to_owned())
        );
        let good = logon(key.key_id.as_str(), &secret, now);
        assert_eq!(
            auth.authenticate_logon(&dec.decode(&good).unwrap(), now),
            Ok(())
        );
        let logons: Vec<_> = audit
            .events()
            .into_iter()
            .filter(|e| e.kind == AuditKind::Logon)
            .collect();
        assert_eq!(logons.len(), 2);
        assert_eq!(logons[0].reason.as_deref(), Some("bad_signature"));
        assert_eq!(logons[1].reason.as_deref(), Some("authenticated"));
        assert_eq!(logons[1].session.as_deref(), Some("FIX.4.4:ISLD->TW"));

        assert_eq!(auth.verify_message(&dec.decode(&m).unwrap()), Ok(()));
        let unsigned = order(None, "10");
        assert_eq!(
            auth.verify_message(&dec.decode(&unsigned).unwrap()),
            Err(MessageAuthError::Missing)
        );
        let tampered = order(Some(&secret), "90");
        assert_eq!(
            auth.verify_message(&dec.decode(&tampered).unwrap()),
            Err(MessageAuthError::Invalid)
        );
        let reasons: Vec<_> = audit
            .events()
            .into_iter()
            .filter(|e| e.kind == AuditKind::MessageSignature)
            .filter_map(|e| e.reason)
            .collect();
        assert_eq!(reasons, ["missing_signature", "bad_signature"]);

        // An expiry set in the vault ends the session from that instant of the session's clock.
        let now = UtcTimestamp::now();
        let hour_ms = 3_600_000;
        let mut expiring = key.clone();
        expiring.expires_at = Some(now.nanos() / 1_000_000 + hour_ms);
        authenticator.reload_keys([expiring]);
        assert!(!auth.revoked(now));
        let in_two_hours = UtcTimestamp::from_nanos(now.nanos() + 2 * hour_ms * 1_000_000);
        assert!(auth.revoked(in_two_hours));
        authenticator.reload_keys([key.clone()]);
        assert!(!auth.revoked(in_two_hours));

        // Revoked in the vault: the session sees it at once.
        let mut revoked = key.clone();
        revoked.status = portcullis_auth::KeyStatus::Revoked;
        authenticator.reload_keys([revoked]);
        assert!(auth.revoked(now));
        assert_eq!(
            auth.verify_message(&dec.decode(&m).unwrap()),
            Err(MessageAuthError::Invalid)
        );
    }

    #[test]
    fn unauthenticated_sessions_only_for_loopback_peers_on_loopback_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings_in(dir.path(), false);
        s.sessions[0].authenticate = false;
        let server_auth = ServerAuth::new(&s, None);
        let session = &s.sessions[0].config;
        let lo = ListenerConfig::plain(
            "l",
            "127.0.0.1:0".parse().unwrap(),
            s.sessions[0].config.begin_string,
        );
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(matches!(
            server_auth.session_auth(session, &lo, peer),
            Ok(None)
        ));
        let remote: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        assert!(server_auth.session_auth(session, &lo, remote).is_err());
        // An authenticated session without a vault refuses rather than letting anyone in.
        let other = &s.sessions[1].config;
        assert!(server_auth.session_auth(other, &lo, peer).is_err());
        // A session the policy table does not know is refused.
        let unknown = SessionConfig::new(BeginString::Fix44, "X", "Y");
        assert!(server_auth.session_auth(&unknown, &lo, peer).is_err());
    }
}
