//! The [`Authenticator`]: every Logon goes through [`Authenticator::authenticate_logon`].
//!
//! Order of the checks, each failure being one precise [`Denied`] reason in the audit log but
//! the same [`Denied::public_text`] for the peer:
//!
//! 1. lockout of the key id or the source address ([`Denied::Locked`]) — before any HMAC work;
//! 2. SendingTime(52) parses and is within the logon window of the server clock, both ways;
//! 3. the key exists (for an unknown key a dummy HMAC is computed so both take the same time);
//! 4. RawData(96) is present and matches, compared in constant time;
//! 5. the signature was not seen before inside the window (replay);
//! 6. the key is active, not expired, allowed from the peer's address, bound to an account the
//!    session allows, and holds the scope the session requires.
//!
//! Every attempt is one `logon` audit event. Failures (all but `Locked`) count against the key
//! id and the source address (IPv6 addresses by their /64): `max_failures` within
//! `failure_window_ms` lock it for `lockout_base_ms`, doubling at each further lockout up to
//! `lockout_max_ms`; a success clears the key's count and back-off (never the address's, so a
//! valid key does not shield an address that is guessing others). The back-off level is
//! forgotten after `lockout_max_ms` without failures.
//!
//! Anomalies (audit kind `anomaly`, reason as named):
//! - `new_ip`: a successful Logon of a key from an address it has not logged on from before
//!   (since the process started; a key's very first Logon is not one);
//! - `multiple_ips`: successful Logons of one key from two or more addresses within
//!   `multi_ip_window_ms`;
//! - `signature_failure_burst`: `signature_burst_threshold` per-message signature failures on
//!   one session within `signature_burst_window_ms`
//!   ([`Authenticator::record_message_signature_failure`]).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditKind, AuditSink, Outcome};
use crate::clock::{now_ms, parse_fix_timestamp_ms};
use crate::fix_sig::{tag_matches_b64, HmacKey, LogonFields, SigError, TAG_LEN};
use crate::key::{canonical_ip, is_valid_key_id, ApiKey, KeyId, Scope, Scopes};
use crate::vault::Vault;

/// Most entities (key ids, addresses, sessions) tracked per table; beyond it, idle entries
/// are dropped first and new ones are not tracked.
const MAX_TRACKED: usize = 100_000;
/// Most addresses remembered per key for the new-address anomaly.
const MAX_KNOWN_IPS: usize = 256;
/// The entry of `allowed_accounts` that allows any account.
pub const ANY_ACCOUNT: &str = "*";

// ---------------------------------------------------------------------------------------------
// Configuration

/// Authentication settings: the `[auth]` table of the server config. Every field is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How far a Logon's SendingTime(52) may be from the server clock, either way, in
    /// milliseconds; also how long accepted signatures are remembered against replay.
    /// Default 5000.
    pub logon_window_ms: u64,
    /// Failed attempts per key id or per source address, within `failure_window_ms`, that lock
    /// it. Default 5.
    pub max_failures: u32,
    /// The window over which failures are counted, in milliseconds. Default 60000.
    pub failure_window_ms: u64,
    /// The first lockout's duration in milliseconds; each further lockout doubles it.
    /// Default 1000.
    pub lockout_base_ms: u64,
    /// The longest lockout, in milliseconds; also the quiet time after which the doubling
    /// starts over. Default 900000 (15 minutes).
    pub lockout_max_ms: u64,
    /// Per-message signature failures on one session, within `signature_burst_window_ms`,
    /// that raise a `signature_failure_burst` anomaly. Default 5.
    pub signature_burst_threshold: u32,
    /// The window for `signature_burst_threshold`, in milliseconds. Default 10000.
    pub signature_burst_window_ms: u64,
    /// Successful Logons of one key from two or more addresses within this many milliseconds
    /// raise a `multiple_ips` anomaly (at most once per window). Default 60000.
    pub multi_ip_window_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            logon_window_ms: 5_000,
            max_failures: 5,
            failure_window_ms: 60_000,
            lockout_base_ms: 1_000,
            lockout_max_ms: 900_000,
            signature_burst_threshold: 5,
            signature_burst_window_ms: 10_000,
            multi_ip_window_ms: 60_000,
        }
    }
}

/// A setting of [`AuthConfig`] out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("auth.{field}: {problem}")]
pub struct AuthConfigError {
    /// The setting's name.
    pub field: &'static str,
    /// What is wrong.
    pub problem: &'static str,
}

impl AuthConfig {
    /// Checks every setting is in range.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        let err = |field, problem| Err(AuthConfigError { field, problem });
        const DAY: u64 = 86_400_000;
        if self.logon_window_ms == 0 || self.logon_window_ms > 3_600_000 {
            return err(
                "logon_window_ms",
                "must be between 1 and 3600000 (one hour)",
            );
        }
        if self.max_failures == 0 {
            return err("max_failures", "must be at least 1");
        }
        if self.failure_window_ms == 0 || self.failure_window_ms > DAY {
            return err(
                "failure_window_ms",
                "must be between 1 and 86400000 (one day)",
            );
        }
        if self.lockout_base_ms == 0 {
            return err("lockout_base_ms", "must be at least 1");
        }
        if self.lockout_max_ms < self.lockout_base_ms || self.lockout_max_ms > DAY {
            return err(
                "lockout_max_ms",
                "must be at least lockout_base_ms and at most 86400000 (one day)",
            );
        }
        if self.signature_burst_threshold == 0 {
            return err("signature_burst_threshold", "must be at least 1");
        }
        if self.signature_burst_window_ms == 0 || self.signature_burst_window_ms > DAY {
            return err(
                "signature_burst_window_ms",
                "must be between 1 and 86400000",
            );
        }
        if self.multi_ip_window_ms == 0 || self.multi_ip_window_ms > DAY {
            return err("multi_ip_window_ms", "must be between 1 and 86400000");
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Attempt, grant, denial

/// A Logon to authenticate: the signed fields' raw values and the context.
#[derive(Debug, Clone, Copy)]
pub struct LogonAttempt<'a> {
    /// Username(553): the key id. (A Username that is not UTF-8 cannot name a key: pass it
    /// lossily converted, it is refused as an unknown key.)
    pub key_id: &'a str,
    /// SendingTime(52), raw.
    pub sending_time: &'a [u8],
    /// MsgType(35), raw (`A`).
    pub msg_type: &'a [u8],
    /// MsgSeqNum(34), raw.
    pub msg_seq_num: &'a [u8],
    /// SenderCompID(49), raw.
    pub sender_comp_id: &'a [u8],
    /// TargetCompID(56), raw.
    pub target_comp_id: &'a [u8],
    /// RawData(96), the base64 signature, if present.
    pub raw_data: Option<&'a [u8]>,
    /// The peer's address.
    pub peer_ip: IpAddr,
    /// The session's name for the audit log (e.g. `CLIENT1->PORTCULLIS`).
    pub session: &'a str,
    /// Accounts this session may act for; [`ANY_ACCOUNT`] (`*`) allows any. Empty allows none.
    pub allowed_accounts: &'a [String],
    /// The scope the session needs (`Trade`, or `Read` for a read-only session).
    pub required_scope: Scope,
    /// The server clock, Unix milliseconds.
    pub now_ms: i64,
}

/// A successful Logon: who it is and what it may do.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The key id.
    pub key_id: KeyId,
    /// The key's account.
    pub account: String,
    /// The key's scopes.
    pub scopes: Scopes,
    /// The key's expiry, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// Checks the session's per-message signatures without locks or allocation, and tells
    /// when the key has been revoked.
    pub message_verifier: MessageVerifier,
}

/// Why a Logon was refused. The variant is the precise reason for the audit log; the peer only
/// ever sees [`Denied::public_text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The key id or the source address is locked out after repeated failures.
    #[error("locked out")]
    Locked,
    /// No key with this id.
    #[error("unknown key")]
    UnknownKey,
    /// The key is revoked.
    #[error("key revoked")]
    Revoked,
    /// The key has expired.
    #[error("key expired")]
    Expired,
    /// The peer's address is not in the key's allowlist.
    #[error("source address not allowed for this key")]
    IpNotAllowed,
    /// SendingTime is older than the logon window.
    #[error("SendingTime too old")]
    StaleSendingTime,
    /// SendingTime is ahead of the server clock by more than the logon window.
    #[error("SendingTime in the future")]
    FutureSendingTime,
    /// SendingTime is not a FIX UTCTimestamp.
    #[error("SendingTime malformed")]
    BadSendingTime,
    /// The signature was already used.
    #[error("replayed signature")]
    Replayed,
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// No RawData(96).
    #[error("signature missing")]
    MissingSignature,
    /// The key's account is not one the session allows.
    #[error("account not allowed on this session")]
    AccountNotAllowed,
    /// The key lacks the scope the session requires.
    #[error("key lacks the required scope")]
    MissingScope,
}

impl Denied {
    /// What the peer is told (the Logout's Text(58)): the same for every reason an attacker
    /// could probe with; only a lockout says so, to tell a client to back off.
    pub const fn public_text(&self) -> &'static str {
        match self {
            Denied::Locked => "Too many attempts, retry later",
            _ => "Authentication failed",
        }
    }

    /// The precise reason, snake_case, as written to the audit log.
    pub const fn reason(&self) -> &'static str {
        match self {
            Denied::Locked => "locked",
            Denied::UnknownKey => "unknown_key",
            Denied::Revoked => "revoked",
            Denied::Expired => "expired",
            Denied::IpNotAllowed => "ip_not_allowed",
            Denied::StaleSendingTime => "stale_sending_time",
            Denied::FutureSendingTime => "future_sending_time",
            Denied::BadSendingTime => "bad_sending_time",
            Denied::Replayed => "replayed",
            Denied::BadSignature => "bad_signature",
            Denied::MissingSignature => "missing_signature",
            Denied::AccountNotAllowed => "account_not_allowed",
            Denied::MissingScope => "missing_scope",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Message verifier

struct VerifierShared {
    key_id: KeyId,
    mac: HmacKey,
    revoked: AtomicBool,
    /// Unix ms; `i64::MAX` for none. Updated on reload.
    expires_at: AtomicI64,
}

/// Verifies a session's per-message signatures with the key it logged on with: the HMAC state
/// is precomputed, verification takes no lock and allocates nothing. Shares a revocation flag
/// with the [`Authenticator`], set when a reload finds the key revoked, removed or changed.
#[derive(Clone)]
pub struct MessageVerifier {
    shared: Arc<VerifierShared>,
}

impl MessageVerifier {
    /// Checks the Signature(89) of a whole FIX message (see [`crate::fix_sig::split_signed`]).
    /// A revoked key fails with [`SigError::KeyRevoked`].
    pub fn verify(&self, message: &[u8]) -> Result<(), SigError> {
        if self.is_revoked() {
            return Err(SigError::KeyRevoked);
        }
        self.shared.mac.verify_message(message)
    }

    /// Checks a base64 signature over already-delimited signed bytes.
    pub fn verify_parts(&self, signed: &[u8], sig_b64: &[u8]) -> Result<(), SigError> {
        if self.is_revoked() {
            return Err(SigError::KeyRevoked);
        }
        self.shared.mac.verify_b64(signed, sig_b64)
    }

    /// Checks a hex HMAC signature (the WebSocket dialect). False if revoked.
    pub fn verify_hex(&self, payload: &[u8], sig_hex: &[u8]) -> bool {
        !self.is_revoked() && self.shared.mac.verify_hex(payload, sig_hex)
    }

    /// True once the key has been revoked (or removed, or its secret changed): end the session.
    pub fn is_revoked(&self) -> bool {
        self.shared.revoked.load(Ordering::Acquire)
    }

    /// True if the key has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        now_ms >= self.shared.expires_at.load(Ordering::Relaxed)
    }

    /// The key id.
    pub fn key_id(&self) -> &KeyId {
        &self.shared.key_id
    }
}

impl fmt::Debug for MessageVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageVerifier")
            .field("key_id", &self.shared.key_id)
            .field("revoked", &self.is_revoked())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Key table

struct KeyEntry {
    key: ApiKey,
    verifier: Option<Arc<VerifierShared>>,
}

#[derive(Default)]
struct KeyTable {
    by_id: HashMap<String, KeyEntry>,
}

/// What a reload changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadStats {
    /// Keys now loaded.
    pub keys: usize,
    /// Keys whose live sessions were told to end (revoked, removed or changed).
    pub revoked: usize,
}

// ---------------------------------------------------------------------------------------------
// Monitoring state

#[derive(Default)]
struct Tracker {
    failures: VecDeque<i64>,
    locked_until: i64,
    level: u32,
    last_failure: i64,
}

impl Tracker {
    fn locked(&self, now: i64) -> bool {
        now < self.locked_until
    }

    /// Records a failure; returns the lock duration if this one locks.
    fn fail(&mut self, now: i64, cfg: &AuthConfig) -> Option<u64> {
        if self.level > 0 && now.saturating_sub(self.quiet_since()) >= cfg.lockout_max_ms as i64 {
            self.level = 0;
        }
        self.last_failure = now;
        let horizon = now.saturating_sub(cfg.failure_window_ms as i64);
        while self.failures.front().is_some_and(|t| *t <= horizon) {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() < cfg.max_failures as usize {
            return None;
        }
        let dur = cfg
            .lockout_base_ms
            .checked_shl(self.level)
            .filter(|d| *d >> self.level == cfg.lockout_base_ms)
            .map_or(cfg.lockout_max_ms, |d| d.min(cfg.lockout_max_ms));
        self.locked_until = now.saturating_add(dur as i64);
        self.level = (self.level + 1).min(63);
        self.failures.clear();
        Some(dur)
    }

    /// The last failure or the end of the last lockout, whichever is later.
    fn quiet_since(&self) -> i64 {
        self.last_failure.max(self.locked_until)
    }

    /// Nothing worth keeping: not locked, no failure in the window, back-off forgotten.
    fn idle(&self, now: i64, cfg: &AuthConfig) -> bool {
        !self.locked(now)
            && now.saturating_sub(self.quiet_since())
                >= (cfg.failure_window_ms.max(cfg.lockout_max_ms)) as i64
    }
}

fn tracker_mut<'m, K: std::hash::Hash + Eq + Clone>(
    map: &'m mut HashMap<K, Tracker>,
    key: &K,
    now: i64,
    cfg: &AuthConfig,
) -> Option<&'m mut Tracker> {
    if !map.contains_key(key) {
        if map.len() >= MAX_TRACKED {
            map.retain(|_, t| !t.idle(now, cfg));
        }
        if map.len() >= MAX_TRACKED {
            tracing::warn!("auth lockout table full ({MAX_TRACKED} entries); not tracking more");
            return None;
        }
        map.insert(key.clone(), Tracker::default());
    }
    map.get_mut(key)
}

#[derive(Default)]
struct KeyIps {
    known: Vec<IpAddr>,
    recent: VecDeque<(IpAddr, i64)>,
    last_multi_alert: Option<i64>,
}

#[derive(Default)]
struct SessionFailures {
    times: VecDeque<i64>,
    last_alert: Option<i64>,
}

#[derive(Default)]
struct Monitor {
    by_key: HashMap<String, Tracker>,
    by_ip: HashMap<IpAddr, Tracker>,
    replay: HashMap<[u8; TAG_LEN], i64>,
    next_replay_prune: i64,
    key_ips: HashMap<String, KeyIps>,
    sig_failures: HashMap<String, SessionFailures>,
    last_used: HashMap<String, i64>,
}

/// The address lockouts are counted against: IPv4 as is, IPv6 by its /64 (one host usually
/// holds a whole /64).
fn ip_bucket(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

fn bucket_text(bucket: IpAddr) -> String {
    match bucket {
        IpAddr::V6(_) => format!("{bucket}/64"),
        v4 => v4.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The authenticator

/// Authenticates Logons against the loaded keys, keeps the lockout, replay and anomaly state,
/// and writes the audit log. Shared by all connections (`Send + Sync`); Logons take a short
/// lock, per-message verification through [`MessageVerifier`] takes none.
pub struct Authenticator {
    config: AuthConfig,
    keys: RwLock<Arc<KeyTable>>,
    monitor: Mutex<Monitor>,
    audit: Arc<dyn AuditSink>,
    audit_errors: AtomicU64,
    dummy: HmacKey,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .field("keys", &self.key_count())
            .finish_non_exhaustive()
    }
}

enum Check {
    Pass {
        grant: Grant,
    },
    Fail {
        denied: Denied,
        account: Option<String>,
        detail: Option<String>,
        known_key: bool,
    },
}

impl Authenticator {
    /// An authenticator with no keys (every key unknown until [`Authenticator::reload`]).
    pub fn new(config: AuthConfig, audit: Arc<dyn AuditSink>) -> Result<Self, AuthConfigError> {
        config.validate()?;
        let mut dummy_secret = [0u8; 64];
        crate::key::fill_random(&mut dummy_secret);
        Ok(Self {
            config,
            keys: RwLock::new(Arc::new(KeyTable::default())),
            monitor: Mutex::new(Monitor::default()),
            audit,
            audit_errors: AtomicU64::new(0),
            dummy: HmacKey::new(&dummy_secret),
        })
    }

    /// An authenticator loaded with the keys of `vault`.
    pub fn with_vault(
        config: AuthConfig,
        vault: &Vault,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, AuthConfigError> {
        let a = Self::new(config, audit)?;
        a.install(vault.keys().iter().cloned());
        Ok(a)
    }

    /// The settings.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// How many keys are loaded.
    pub fn key_count(&self) -> usize {
        self.table().by_id.len()
    }

    /// How many audit events could not be written.
    pub fn audit_write_errors(&self) -> u64 {
        self.audit_errors.load(Ordering::Relaxed)
    }

    /// Replaces the keys with those of `vault` (after SIGHUP or a change of the file). Sessions
    /// whose key is now revoked, gone or changed see [`MessageVerifier::is_revoked`]; the others
    /// go on undisturbed. Writes a `keys_reloaded` audit event.
    pub fn reload(&self, vault: &Vault) -> ReloadStats {
        self.reload_keys(vault.keys().iter().cloned())
    }

    /// [`Authenticator::reload`] from any list of keys.
    pub fn reload_keys(&self, keys: impl IntoIterator<Item = ApiKey>) -> ReloadStats {
        let stats = self.install(keys);
        self.emit(
            AuditEvent::new(AuditKind::KeysReloaded, Outcome::Ok, now_ms()).detail(format!(
                "{} keys loaded, {} revoked for live sessions",
                stats.keys, stats.revoked
            )),
        );
        stats
    }

    fn install(&self, keys: impl IntoIterator<Item = ApiKey>) -> ReloadStats {
        let mut guard = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let old = Arc::clone(&guard);
        let mut table = KeyTable::default();
        for key in keys {
            let expires = key.expires_at.unwrap_or(i64::MAX);
            let previous = old.by_id.get(key.key_id.as_str());
            let verifier = key.secret.as_ref().map(|secret| {
                let reusable = previous.and_then(|p| {
                    let same = p.key.secret.as_ref().is_some_and(|s| s.ct_eq(secret));
                    let v = p.verifier.as_ref()?;
                    (same && !key.is_revoked() && !v.revoked.load(Ordering::Acquire))
                        .then(|| Arc::clone(v))
                });
                match reusable {
                    Some(v) => {
                        v.expires_at.store(expires, Ordering::Relaxed);
                        v
                    }
                    None => Arc::new(VerifierShared {
                        key_id: key.key_id.clone(),
                        mac: HmacKey::new(secret.as_bytes()),
                        revoked: AtomicBool::new(key.is_revoked()),
                        expires_at: AtomicI64::new(expires),
                    }),
                }
            });
            table
                .by_id
                .insert(key.key_id.as_str().to_owned(), KeyEntry { key, verifier });
        }
        let mut revoked = 0;
        for (id, entry) in &old.by_id {
            let Some(v) = &entry.verifier else { continue };
            let kept = table
                .by_id
                .get(id)
                .and_then(|e| e.verifier.as_ref())
                .is_some_and(|nv| Arc::ptr_eq(nv, v));
            if !kept && !v.revoked.swap(true, Ordering::AcqRel) {
                revoked += 1;
            }
        }
        let stats = ReloadStats {
            keys: table.by_id.len(),
            revoked,
        };
        *guard = Arc::new(table);
        stats
    }

    fn table(&self) -> Arc<KeyTable> {
        Arc::clone(&self.keys.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn monitor(&self) -> MutexGuard<'_, Monitor> {
        self.monitor.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, event: AuditEvent) {
        if let Err(e) = self.audit.record(&event) {
            self.audit_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, kind = ?event.kind, "could not write an audit event");
        }
    }

    /// Authenticates a Logon; see the module documentation for the checks. Writes one `logon`
    /// audit event (and `lockout` / `anomaly` events when they arise).
    pub fn authenticate_logon(&self, a: &LogonAttempt<'_>) -> Result<Grant, Denied> {
        let now = a.now_ms;
        let bucket = ip_bucket(a.peer_ip);
        let base = |outcome| {
            AuditEvent::new(AuditKind::Logon, outcome, now)
                .key_id(a.key_id)
                .peer_ip(a.peer_ip)
                .session(a.session)
        };

        // 1. Lockout, before any HMAC work.
        {
            let m = self.monitor();
            let key_until = m
                .by_key
                .get(a.key_id)
                .filter(|t| t.locked(now))
                .map(|t| t.locked_until);
            let ip_until = m
                .by_ip
                .get(&bucket)
                .filter(|t| t.locked(now))
                .map(|t| t.locked_until);
            drop(m);
            let what = match (key_until, ip_until) {
                (Some(k), _) => Some(format!(
                    "key id locked for another {} ms",
                    k.saturating_sub(now)
                )),
                (None, Some(i)) => Some(format!(
                    "source {} locked for another {} ms",
                    bucket_text(bucket),
                    i.saturating_sub(now)
                )),
                (None, None) => None,
            };
            if let Some(what) = what {
                self.emit(
                    base(Outcome::Denied)
                        .reason(Denied::Locked.reason())
                        .detail(what),
                );
                return Err(Denied::Locked);
            }
        }

        let table = self.table();
        match self.check(&table, a) {
            Check::Pass { grant } => {
                let events = self.on_success(a, &grant, now);
                self.emit(
                    base(Outcome::Ok)
                        .account(&grant.account)
                        .reason("authenticated"),
                );
                for e in events {
                    self.emit(e);
                }
                Ok(grant)
            }
            Check::Fail {
                denied,
                account,
                detail,
                known_key,
            } => {
                let mut ev = base(Outcome::Denied).reason(denied.reason());
                if let Some(acc) = &account {
                    ev = ev.account(acc);
                }
                if let Some(d) = detail {
                    ev = ev.detail(d);
                }
                self.emit(ev);
                for e in self.on_failure(a, bucket, account.as_deref(), known_key) {
                    self.emit(e);
                }
                Err(denied)
            }
        }
    }

    fn check(&self, table: &KeyTable, a: &LogonAttempt<'_>) -> Check {
        let fail = |denied, account: Option<&str>, detail: Option<String>, known_key| Check::Fail {
            denied,
            account: account.map(str::to_owned),
            detail,
            known_key,
        };
        let now = a.now_ms;
        let window = self.config.logon_window_ms as i64;

        // 2. SendingTime.
        let Some(sent) = parse_fix_timestamp_ms(a.sending_time) else {
            return fail(Denied::BadSendingTime, None, None, false);
        };
        let skew = now.saturating_sub(sent);
        if skew > window {
            let d = format!("SendingTime {skew} ms behind the server clock (window {window} ms)");
            return fail(Denied::StaleSendingTime, None, Some(d), false);
        }
        if skew < -window {
            let ahead = sent.saturating_sub(now);
            let d =
                format!("SendingTime {ahead} ms ahead of the server clock (window {window} ms)");
            return fail(Denied::FutureSendingTime, None, Some(d), false);
        }

        let fields = LogonFields {
            sending_time: a.sending_time,
            msg_type: a.msg_type,
            msg_seq_num: a.msg_seq_num,
            sender_comp_id: a.sender_comp_id,
            target_comp_id: a.target_comp_id,
            username: a.key_id.as_bytes(),
        };

        // 3. The key.
        let Some(entry) = table.by_id.get(a.key_id) else {
            // Same work as for a known key, so timing does not tell which ids exist.
            std::hint::black_box(self.dummy.verify_logon(&fields, a.raw_data.unwrap_or(b"")));
            return fail(Denied::UnknownKey, None, None, false);
        };
        let key = &entry.key;
        let acc = Some(key.account.as_str());

        // 4. The signature.
        let Some(raw) = a.raw_data.filter(|r| !r.is_empty()) else {
            return fail(Denied::MissingSignature, acc, None, true);
        };
        let Some(verifier) = &entry.verifier else {
            let d = Some("the key has no HMAC secret (Ed25519 key)".to_owned());
            return fail(Denied::BadSignature, acc, d, true);
        };
        let tag = verifier.mac.logon_tag(&fields);
        if !tag_matches_b64(&tag, raw) {
            return fail(Denied::BadSignature, acc, None, true);
        }

        // 5. Replay: remembered as soon as the signature is proven genuine, so a captured Logon
        //    cannot be replayed even if the original was refused for another reason.
        {
            let mut m = self.monitor();
            if m.next_replay_prune <= now {
                m.replay.retain(|_, exp| *exp > now);
                m.next_replay_prune = now.saturating_add(1_000);
            }
            let expiry = sent.saturating_add(window).max(now).saturating_add(1);
            if m.replay.contains_key(&tag) {
                drop(m);
                return fail(Denied::Replayed, acc, None, true);
            }
            m.replay.insert(tag, expiry);
        }

        // 6. Key status and policy.
        if key.is_revoked() || verifier.revoked.load(Ordering::Acquire) {
            return fail(Denied::Revoked, acc, None, true);
        }
        if key.is_expired(now) {
            let d = key
                .expires_at
                .map(|e| format!("expired at {}", crate::clock::format_rfc3339_ms(e)));
            return fail(Denied::Expired, acc, d, true);
        }
        if !key.ip_allowed(a.peer_ip) {
            let d = format!(
                "{} is not in the key's IP allowlist",
                canonical_ip(a.peer_ip)
            );
            return fail(Denied::IpNotAllowed, acc, Some(d), true);
        }
        let account_ok = a
            .allowed_accounts
            .iter()
            .any(|x| x == ANY_ACCOUNT || *x == key.account);
        if !account_ok {
            let d = format!("the session does not allow account {:?}", key.account);
            return fail(Denied::AccountNotAllowed, acc, Some(d), true);
        }
        if !key.scopes.contains(a.required_scope) {
            let d = format!(
                "the session requires scope {}; the key has {}",
                a.required_scope, key.scopes
            );
            return fail(Denied::MissingScope, acc, Some(d), true);
        }

        Check::Pass {
            grant: Grant {
                key_id: key.key_id.clone(),
                account: key.account.clone(),
                scopes: key.scopes,
                expires_at: key.expires_at,
                message_verifier: MessageVerifier {
                    shared: Arc::clone(verifier),
                },
            },
        }
    }

    fn on_failure(
        &self,
        a: &LogonAttempt<'_>,
        bucket: IpAddr,
        account: Option<&str>,
        known_key: bool,
    ) -> Vec<AuditEvent> {
        let now = a.now_ms;
        let cfg = &self.config;
        let mut out = Vec::new();
        let mut m = self.monitor();
        // Only well-formed ids are tracked per key: no key can have another, and an attacker's
        // 60 KiB Username must not become a table entry. The source address is tracked always.
        let key_lock = if is_valid_key_id(a.key_id) {
            tracker_mut(&mut m.by_key, &a.key_id.to_owned(), now, cfg)
                .and_then(|t| t.fail(now, cfg))
        } else {
            None
        };
        let ip_lock = tracker_mut(&mut m.by_ip, &bucket, now, cfg).and_then(|t| t.fail(now, cfg));
        drop(m);
        let lockout = |detail: String| {
            let mut e = AuditEvent::new(AuditKind::Lockout, Outcome::Denied, now)
                .key_id(a.key_id)
                .peer_ip(a.peer_ip)
                .session(a.session)
                .reason("too_many_failures")
                .detail(detail);
            if let Some(acc) = account {
                e = e.account(acc);
            }
            e
        };
        if let Some(ms) = key_lock {
            let kind = if known_key { "key" } else { "unknown key id" };
            out.push(lockout(format!(
                "{kind} locked for {ms} ms after {} failures within {} ms",
                cfg.max_failures, cfg.failure_window_ms
            )));
        }
        if let Some(ms) = ip_lock {
            out.push(lockout(format!(
                "source {} locked for {ms} ms after {} failures within {} ms",
                bucket_text(bucket),
                cfg.max_failures,
                cfg.failure_window_ms
            )));
        }
        out
    }

    fn on_success(&self, a: &LogonAttempt<'_>, grant: &Grant, now: i64) -> Vec<AuditEvent> {
        self.on_success_common(a, &grant.account, now)
    }

    /// The bookkeeping of a successful authentication of `a` for `account`: the key's failure
    /// count is cleared, its last use noted, and new-address anomalies raised.
    fn on_success_common(&self, a: &LogonAttempt<'_>, account: &str, now: i64) -> Vec<AuditEvent> {
        let ip = canonical_ip(a.peer_ip);
        let cfg = &self.config;
        let mut out = Vec::new();
        let anomaly = |reason: &str, detail: String| {
            AuditEvent::new(AuditKind::Anomaly, Outcome::Ok, now)
                .key_id(a.key_id)
                .account(account)
                .peer_ip(a.peer_ip)
                .session(a.session)
                .reason(reason)
                .detail(detail)
        };
        let mut m = self.monitor();
        m.by_key.remove(a.key_id);
        m.last_used.insert(a.key_id.to_owned(), now);
        let ips = m.key_ips.entry(a.key_id.to_owned()).or_default();

        // A known key from an address it never used.
        if !ips.known.contains(&ip) {
            if !ips.known.is_empty() {
                out.push(anomaly(
                    "new_ip",
                    format!(
                        "first logon of this key from {ip}; seen before from {} other address(es)",
                        ips.known.len()
                    ),
                ));
            }
            if ips.known.len() >= MAX_KNOWN_IPS {
                ips.known.remove(0);
            }
            ips.known.push(ip);
        }

        // Several addresses at once.
        let horizon = now.saturating_sub(cfg.multi_ip_window_ms as i64);
        while ips.recent.front().is_some_and(|(_, t)| *t <= horizon) {
            ips.recent.pop_front();
        }
        ips.recent.retain(|(x, _)| *x != ip);
        ips.recent.push_back((ip, now));
        if ips.recent.len() >= 2 && ips.last_multi_alert.is_none_or_before(horizon) {
            ips.last_multi_alert = Some(now);
            let list: Vec<String> = ips.recent.iter().map(|(x, _)| x.to_string()).collect();
            out.push(anomaly(
                "multiple_ips",
                format!(
                    "logons from {} addresses within {} ms: {}",
                    list.len(),
                    cfg.multi_ip_window_ms,
                    list.join(", ")
                ),
            ));
        }
        out
    }

    /// Records a per-message signature failure on a session: one `message_signature` audit
    /// event, and a `signature_failure_burst` anomaly when the session reaches
    /// `signature_burst_threshold` failures within `signature_burst_window_ms` (at most one per
    /// window). Returns true when the burst anomaly was raised.
    pub fn record_message_signature_failure(
        &self,
        session: &str,
        key_id: &str,
        peer_ip: IpAddr,
        error: SigError,
        now_ms: i64,
    ) -> bool {
        let cfg = &self.config;
        self.emit(
            AuditEvent::new(AuditKind::MessageSignature, Outcome::Denied, now_ms)
                .key_id(key_id)
                .peer_ip(peer_ip)
                .session(session)
                .reason(error.reason()),
        );
        let horizon = now_ms.saturating_sub(cfg.signature_burst_window_ms as i64);
        let count = {
            let mut m = self.monitor();
            if !m.sig_failures.contains_key(session) && m.sig_failures.len() >= MAX_TRACKED {
                m.sig_failures
                    .retain(|_, s| s.times.back().is_some_and(|t| *t > horizon));
            }
            if !m.sig_failures.contains_key(session) && m.sig_failures.len() >= MAX_TRACKED {
                return false;
            }
            let s = m.sig_failures.entry(session.to_owned()).or_default();
            while s.times.front().is_some_and(|t| *t <= horizon) {
                s.times.pop_front();
            }
            s.times.push_back(now_ms);
            if s.times.len() >= cfg.signature_burst_threshold as usize
                && s.last_alert.is_none_or_before(horizon)
            {
                s.last_alert = Some(now_ms);
                Some(s.times.len())
            } else {
                None
            }
        };
        let Some(count) = count else { return false };
        self.emit(
            AuditEvent::new(AuditKind::Anomaly, Outcome::Denied, now_ms)
                .key_id(key_id)
                .peer_ip(peer_ip)
                .session(session)
                .reason("signature_failure_burst")
                .detail(format!(
                    "{count} per-message signature failures within {} ms",
                    cfg.signature_burst_window_ms
                )),
        );
        true
    }

    /// Forgets a session's signature-failure count (call when the session ends).
    pub fn session_closed(&self, session: &str) {
        self.monitor().sig_failures.remove(session);
    }

    /// Writes an event to the audit log (for the server's own events: keys created, master key
    /// rotated, ...).
    pub fn record(&self, event: AuditEvent) {
        self.emit(event);
    }

    /// The last successful Logon time of each key since the previous call, to persist with
    /// [`Vault::touch`].
    pub fn take_last_used(&self) -> Vec<(String, i64)> {
        self.monitor().last_used.drain().collect()
    }

    /// True if a Logon with `key_id` from `peer_ip` would be refused as locked at `now_ms`.
    pub fn is_locked(&self, key_id: &str, peer_ip: IpAddr, now_ms: i64) -> bool {
        let m = self.monitor();
        m.by_key.get(key_id).is_some_and(|t| t.locked(now_ms))
            || m.by_ip
                .get(&ip_bucket(peer_ip))
                .is_some_and(|t| t.locked(now_ms))
    }
}

trait AlertGate {
    fn is_none_or_before(&self, horizon: i64) -> bool;
}

impl AlertGate for Option<i64> {
    fn is_none_or_before(&self, horizon: i64) -> bool {
        match self {
            None => true,
            Some(t) => *t <= horizon,
        }
    }
}

// Compile-time check: the server shares one authenticator across threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authenticator>();
    assert_send_sync::<MessageVerifier>();
    assert_send_sync::<Grant>();
};

mod request;
pub use request::{RequestAttempt, RequestCredential, RequestGrant, RequestKind};

#[cfg(test)]
mod tests;
