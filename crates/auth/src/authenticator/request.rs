//! Requests that carry their own signature (the WebSocket API's signed requests and its
//! `session.logon`): the same lockout, key checks, anomaly detection and audit log as FIX
//! Logons, with the signature check left to the caller, which knows the payload's rules.
//!
//! Order of the checks (as for Logons, minus the FIX-specific SendingTime and replay steps:
//! the WebSocket session checks `timestamp`/`recvWindow` before it asks):
//!
//! 1. lockout of the key id or the source address ([`Denied::Locked`]), before any crypto;
//! 2. the key exists (for an unknown key the caller's check still runs, against a dummy HMAC
//!    key, so both take the same time);
//! 3. the caller's signature check, with the key's credential ([`RequestCredential`]);
//! 4. the key is active, not expired, allowed from the peer's address, and holds the scope.
//!
//! A failure is one audit event (kind `logon`, the precise reason) and counts towards the
//! lockouts, exactly as a failed FIX Logon does. A success is an audit event for
//! [`RequestKind::Logon`] only: auditing every signed order would turn the audit log into a
//! trade log; the key's last use and the new-address anomalies are tracked either way.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{ip_bucket, Authenticator, Denied, KeyEntry, LogonAttempt, MessageVerifier};
use crate::audit::{AuditEvent, AuditKind, Outcome};
use crate::fix_sig::HmacKey;
use crate::key::{canonical_ip, ApiKey, KeyId, Scope, Scopes};

/// What a signed request authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// The connection's logon (`session.logon`): audited on success too.
    Logon,
    /// One signed request: audited on failure only.
    Request,
}

/// A signed request to authenticate.
#[derive(Debug, Clone, Copy)]
pub struct RequestAttempt<'a> {
    /// The key id the request names (`apiKey`).
    pub key_id: &'a str,
    /// The peer's address.
    pub peer_ip: IpAddr,
    /// The connection's name for the audit log (e.g. `ws#12 order.place`).
    pub session: &'a str,
    /// The scope the request needs; `None` for requests any valid key may make.
    pub required_scope: Option<Scope>,
    /// Logon or single request.
    pub kind: RequestKind,
    /// The server clock, Unix milliseconds.
    pub now_ms: i64,
}

/// The credential a request's signature is checked against.
pub struct RequestCredential<'a> {
    key: Option<&'a ApiKey>,
    mac: &'a HmacKey,
    has_hmac: bool,
}

impl RequestCredential<'_> {
    /// Checks a hex HMAC-SHA256 signature of `payload` with the key's secret, in constant
    /// time. False for a key without an HMAC secret (the check still runs, against a dummy
    /// key, so timing does not tell).
    pub fn verify_hex(&self, payload: &[u8], sig_hex: &[u8]) -> bool {
        let ok = self.mac.verify_hex(payload, sig_hex);
        ok && self.has_hmac
    }

    /// Checks an Ed25519 signature (64 raw bytes) of `payload`; false if the key has no
    /// Ed25519 public key.
    pub fn verify_ed25519(&self, payload: &[u8], signature: &[u8]) -> bool {
        self.key
            .is_some_and(|k| k.verify_ed25519(payload, signature))
    }

    /// Checks a base64 Ed25519 signature (the WebSocket dialect's `session.logon`) of
    /// `payload`; false if it is not base64 of 64 bytes or the key has no Ed25519 key.
    pub fn verify_ed25519_b64(&self, payload: &[u8], sig_b64: &[u8]) -> bool {
        use base64::Engine as _;
        // Room for the decoder's conservative estimate (66 bytes for 88 characters).
        let mut sig = [0u8; 66];
        // 64 bytes are 88 base64 characters with padding; anything longer is not one.
        if sig_b64.len() > 88 {
            return false;
        }
        match base64::engine::general_purpose::STANDARD.decode_slice(sig_b64, &mut sig) {
            Ok(64) => self.verify_ed25519(payload, &sig[..64]),
            _ => false,
        }
    }

    /// True if the key has an HMAC secret.
    pub fn has_hmac(&self) -> bool {
        self.has_hmac
    }

    /// True if the key has an Ed25519 public key.
    pub fn has_ed25519(&self) -> bool {
        self.key.is_some_and(|k| k.ed25519_public_key.is_some())
    }
}

/// A successfully authenticated request.
#[derive(Debug, Clone)]
pub struct RequestGrant {
    /// The key id.
    pub key_id: KeyId,
    /// The key's account.
    pub account: String,
    /// The key's scopes.
    pub scopes: Scopes,
    /// The key's expiry, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// The HMAC key's verifier (absent for an Ed25519-only key): tells without a lock when
    /// the key is revoked.
    pub verifier: Option<MessageVerifier>,
}

impl Authenticator {
    /// Authenticates a signed request: see the module documentation. `verify` checks the
    /// signature with the key's credential and returns whether it matches.
    pub fn authenticate_request(
        &self,
        a: &RequestAttempt<'_>,
        verify: impl FnOnce(&RequestCredential<'_>) -> bool,
    ) -> Result<RequestGrant, Denied> {
        let now = a.now_ms;
        let bucket = ip_bucket(a.peer_ip);
        let base = |outcome| {
            AuditEvent::new(AuditKind::Logon, outcome, now)
                .key_id(a.key_id)
                .peer_ip(a.peer_ip)
                .session(a.session)
        };
        // The Logon bookkeeping (failure counts, lockouts, anomalies) reads only these fields:
        // it is shared as is rather than copied.
        let as_logon = LogonAttempt {
            key_id: a.key_id,
            sending_time: b"",
            msg_type: b"",
            msg_seq_num: b"",
            sender_comp_id: b"",
            target_comp_id: b"",
            raw_data: None,
            peer_ip: a.peer_ip,
            session: a.session,
            allowed_accounts: &[],
            required_scope: a.required_scope.unwrap_or(Scope::Read),
            now_ms: now,
        };

        // 1. Lockout, before any crypto.
        if let Some(until) = self.locked_until(a.key_id, a.peer_ip, now) {
            self.emit(
                base(Outcome::Denied)
                    .reason(Denied::Locked.reason())
                    .detail(format!(
                        "locked for another {} ms",
                        until.saturating_sub(now)
                    )),
            );
            return Err(Denied::Locked);
        }

        let table = self.table();
        let result = match table.by_id.get(a.key_id) {
            None => {
                // 2. Unknown key: the same work as for a known one.
                let cred = RequestCredential {
                    key: None,
                    mac: &self.dummy,
                    has_hmac: false,
                };
                std::hint::black_box(verify(&cred));
                Err((Denied::UnknownKey, None, None, false))
            }
            Some(entry) => check_known(entry, a, verify, &self.dummy),
        };
        match result {
            Ok(grant) => {
                let events = self.on_success_request(&as_logon, &grant, now);
                if a.kind == RequestKind::Logon {
                    self.emit(
                        base(Outcome::Ok)
                            .account(&grant.account)
                            .reason("authenticated"),
                    );
                }
                for e in events {
                    self.emit(e);
                }
                Ok(grant)
            }
            Err((denied, account, detail, known_key)) => {
                let mut ev = base(Outcome::Denied).reason(denied.reason());
                if let Some(acc) = &account {
                    ev = ev.account(acc);
                }
                if let Some(d) = detail {
                    ev = ev.detail(d);
                }
                self.emit(ev);
                for e in self.on_failure(&as_logon, bucket, account.as_deref(), known_key) {
                    self.emit(e);
                }
                Err(denied)
            }
        }
    }

    /// When the lockout of `key_id` or of `peer_ip`'s address ends (Unix ms), if either is
    /// locked at `now_ms`: the later of the two.
    pub fn locked_until(&self, key_id: &str, peer_ip: IpAddr, now_ms: i64) -> Option<i64> {
        let m = self.monitor();
        let key = m
            .by_key
            .get(key_id)
            .filter(|t| t.locked(now_ms))
            .map(|t| t.locked_until);
        let ip = m
            .by_ip
            .get(&ip_bucket(peer_ip))
            .filter(|t| t.locked(now_ms))
            .map(|t| t.locked_until);
        key.max(ip)
    }

    /// True while the key `key_id` may still be used from `peer_ip` at `now_ms`: it is
    /// loaded, active, not expired, and the address is in its allowlist. For connections
    /// authenticated once (`session.logon`), re-checked when the vault is reloaded.
    pub fn key_usable(&self, key_id: &str, peer_ip: IpAddr, now_ms: i64) -> bool {
        let table = self.table();
        table.by_id.get(key_id).is_some_and(|e| {
            !e.key.is_revoked()
                && !e
                    .verifier
                    .as_ref()
                    .is_some_and(|v| v.revoked.load(Ordering::Acquire))
                && !e.key.is_expired(now_ms)
                && e.key.ip_allowed(peer_ip)
        })
    }

    /// The key `key_id` as loaded now (revoked and expired keys included: the caller checks
    /// their state), e.g. for the OAuth server's client lookups, which must see a revocation
    /// the moment the vault is reloaded.
    pub fn key(&self, key_id: &str) -> Option<ApiKey> {
        self.table().by_id.get(key_id).map(|e| e.key.clone())
    }

    /// Records a failed second factor (a missing, wrong or reused TOTP code) of a request whose
    /// key was proven otherwise: one audit event (kind `logon`, outcome denied, `reason`) that
    /// counts towards the lockouts of the key and of the address exactly as a failed Logon
    /// does, so that guessing codes locks out like guessing signatures.
    pub fn record_second_factor_failure(
        &self,
        key_id: &str,
        peer_ip: IpAddr,
        session: &str,
        account: Option<&str>,
        reason: &str,
        now_ms: i64,
    ) {
        let mut ev = AuditEvent::new(AuditKind::Logon, Outcome::Denied, now_ms)
            .key_id(key_id)
            .peer_ip(peer_ip)
            .session(session)
            .reason(reason);
        if let Some(a) = account {
            ev = ev.account(a);
        }
        self.emit(ev);
        let as_logon = LogonAttempt {
            key_id,
            sending_time: b"",
            msg_type: b"",
            msg_seq_num: b"",
            sender_comp_id: b"",
            target_comp_id: b"",
            raw_data: None,
            peer_ip,
            session,
            allowed_accounts: &[],
            required_scope: Scope::Admin,
            now_ms,
        };
        let known = self.table().by_id.contains_key(key_id);
        for e in self.on_failure(&as_logon, ip_bucket(peer_ip), account, known) {
            self.emit(e);
        }
    }

    fn on_success_request(
        &self,
        as_logon: &LogonAttempt<'_>,
        grant: &RequestGrant,
        now: i64,
    ) -> Vec<AuditEvent> {
        // `on_success` reads the grant's account only; a Logon grant needs an HMAC verifier,
        // which an Ed25519 key has not, so the bookkeeping is given a minimal view.
        self.on_success_common(as_logon, &grant.account, now)
    }
}

type Failure = (Denied, Option<String>, Option<String>, bool);

fn check_known(
    entry: &KeyEntry,
    a: &RequestAttempt<'_>,
    verify: impl FnOnce(&RequestCredential<'_>) -> bool,
    dummy: &HmacKey,
) -> Result<RequestGrant, Failure> {
    let key = &entry.key;
    let acc = Some(key.account.clone());
    // 3. The signature.
    let cred = RequestCredential {
        key: Some(key),
        mac: entry.verifier.as_ref().map_or(dummy, |v| &v.mac),
        has_hmac: entry.verifier.is_some(),
    };
    if !verify(&cred) {
        return Err((Denied::BadSignature, acc, None, true));
    }
    // 4. Key status and policy.
    let verifier_revoked = entry
        .verifier
        .as_ref()
        .is_some_and(|v| v.revoked.load(Ordering::Acquire));
    if key.is_revoked() || verifier_revoked {
        return Err((Denied::Revoked, acc, None, true));
    }
    if key.is_expired(a.now_ms) {
        let d = key
            .expires_at
            .map(|e| format!("expired at {}", crate::clock::format_rfc3339_ms(e)));
        return Err((Denied::Expired, acc, d, true));
    }
    if !key.ip_allowed(a.peer_ip) {
        let d = format!(
            "{} is not in the key's IP allowlist",
            canonical_ip(a.peer_ip)
        );
        return Err((Denied::IpNotAllowed, acc, Some(d), true));
    }
    if let Some(scope) = a.required_scope {
        if !key.scopes.contains(scope) {
            let d = format!(
                "the request requires scope {scope}; the key has {}",
                key.scopes
            );
            return Err((Denied::MissingScope, acc, Some(d), true));
        }
    }
    Ok(RequestGrant {
        key_id: key.key_id.clone(),
        account: key.account.clone(),
        scopes: key.scopes,
        expires_at: key.expires_at,
        verifier: entry.verifier.as_ref().map(|v| MessageVerifier {
            shared: Arc::clone(v),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MemoryAuditLog;
    use crate::fix_sig::sign_hmac_hex;
    use crate::key::{KeyStatus, Secret};
    use crate::AuthConfig;

    const T0: i64 = 1_704_164_645_678;

    fn key(scopes: &str) -> ApiKey {
        ApiKey {
            key_id: KeyId::generate(),
            secret: Some(Secret::generate()),
            ed25519_public_key: None,
            account: "ACC1".into(),
            scopes: Scopes::parse(scopes).unwrap(),
            ip_allowlist: vec![],
            expires_at: None,
            status: KeyStatus::Active,
            created_at: 0,
            last_used_at: None,
            revoked_at: None,
        }
    }

    fn attempt(key_id: &str, kind: RequestKind) -> RequestAttempt<'_> {
        RequestAttempt {
            key_id,
            peer_ip: "203.0.113.9".parse().unwrap(),
            session: "ws#1",
            required_scope: Some(Scope::Trade),
            kind,
            now_ms: T0,
        }
    }

    #[test]
    fn hmac_requests_verify_and_failures_lock_out_like_logons() {
        let k = key("trade,read");
        let secret = k.secret.clone().unwrap();
        let log = Arc::new(MemoryAuditLog::new());
        let auth = Authenticator::new(AuthConfig::default(), log.clone()).unwrap();
        auth.reload_keys(vec![k.clone()]);
        log.clear();
        let id = k.key_id.as_str();
        let sig = sign_hmac_hex(secret.as_bytes(), b"a=1&b=2");
        let grant = auth
            .authenticate_request(&attempt(id, RequestKind::Request), |c| {
                c.verify_hex(b"a=1&b=2", sig.as_bytes())
            })
            .unwrap();
        assert_eq!(grant.account, "ACC1");
        assert!(grant.verifier.is_some());
        // A successful single request is not audited; a logon is.
        assert!(log.events().is_empty());
        auth.authenticate_request(&attempt(id, RequestKind::Logon), |c| {
            c.verify_hex(b"a=1&b=2", sig.as_bytes())
        })
        .unwrap();
        assert_eq!(log.events().len(), 1);

        for _ in 0..5 {
            let r = auth.authenticate_request(&attempt(id, RequestKind::Request), |c| {
                c.verify_hex(b"a=1&b=3", sig.as_bytes())
            });
            assert_eq!(r.unwrap_err(), Denied::BadSignature);
        }
        let r = auth.authenticate_request(&attempt(id, RequestKind::Request), |_| true);
        assert_eq!(r.unwrap_err(), Denied::Locked);
        assert!(auth
            .locked_until(id, "203.0.113.9".parse().unwrap(), T0)
            .is_some_and(|t| t > T0));
    }

    #[test]
    fn second_factor_failures_are_audited_and_lock_out() {
        let k = key("admin");
        let log = Arc::new(MemoryAuditLog::new());
        let auth = Authenticator::new(AuthConfig::default(), log.clone()).unwrap();
        auth.reload_keys(vec![k.clone()]);
        log.clear();
        let id = k.key_id.as_str();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(auth.key(id).map(|x| x.account), Some("ACC1".to_owned()));
        assert!(auth.key("pk_nope").is_none());
        for _ in 0..4 {
            auth.record_second_factor_failure(id, ip, "admin api", Some("ACC1"), "totp_wrong", T0);
        }
        assert!(auth.locked_until(id, ip, T0).is_none());
        assert_eq!(log.events()[0].reason.as_deref(), Some("totp_wrong"));
        assert_eq!(log.events()[0].outcome, Outcome::Denied);
        auth.record_second_factor_failure(id, ip, "admin api", Some("ACC1"), "totp_reused", T0);
        assert!(auth.locked_until(id, ip, T0).is_some_and(|t| t > T0));
        assert!(log.events().iter().any(|e| e.kind == AuditKind::Lockout));
        // The lockout holds for signed requests too.
        let r = auth.authenticate_request(&attempt(id, RequestKind::Request), |_| true);
        assert_eq!(r.unwrap_err(), Denied::Locked);
    }

    #[test]
    fn scope_unknown_keys_and_revocation() {
        let k = key("read");
        let log = Arc::new(MemoryAuditLog::new());
        let auth = Authenticator::new(AuthConfig::default(), log).unwrap();
        auth.reload_keys(vec![k.clone()]);
        let id = k.key_id.as_str();
        let ip = "203.0.113.9".parse().unwrap();
        let r = auth.authenticate_request(&attempt(id, RequestKind::Request), |_| true);
        assert_eq!(r.unwrap_err(), Denied::MissingScope);
        let mut called = false;
        let r = auth.authenticate_request(&attempt("pk_nope", RequestKind::Request), |c| {
            called = true;
            c.verify_hex(b"x", &[b'0'; 64])
        });
        assert_eq!(r.unwrap_err(), Denied::UnknownKey);
        assert!(called, "the check runs for unknown keys too (timing)");
        assert!(auth.key_usable(id, ip, T0));
        let mut revoked = k.clone();
        revoked.status = KeyStatus::Revoked;
        auth.reload_keys(vec![revoked]);
        assert!(!auth.key_usable(id, ip, T0));
    }
}
