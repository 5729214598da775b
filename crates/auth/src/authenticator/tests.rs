//! One test per authentication rule, with an injected clock (`now_ms`).

use super::*;
use crate::audit::MemoryAuditLog;
use crate::fix_sig::sign_logon;
use crate::key::{parse_ip_allowlist, KeyStatus, Secret};
use portcullis_fix::{TimePrecision, UtcTimestamp};

const T0: i64 = 1_704_164_645_678; // 2024-01-02T03:04:05.678Z
const V4: &str = "203.0.113.9";

struct Fixture {
    auth: Authenticator,
    log: Arc<MemoryAuditLog>,
    keys: Vec<ApiKey>,
}

fn api_key(account: &str, scopes: &str) -> ApiKey {
    ApiKey {
        key_id: KeyId::generate(),
        secret: Some(Secret::generate()),
        ed25519_public_key: None,
        account: account.into(),
        scopes: Scopes::parse(scopes).unwrap(),
        ip_allowlist: vec![],
        expires_at: None,
        status: KeyStatus::Active,
        created_at: 0,
        last_used_at: None,
        revoked_at: None,
    }
}

fn fixture_with(keys: Vec<ApiKey>, config: AuthConfig) -> Fixture {
    let log = Arc::new(MemoryAuditLog::new());
    let auth = Authenticator::new(config, log.clone()).unwrap();
    auth.reload_keys(keys.clone());
    log.clear();
    Fixture { auth, log, keys }
}

fn fixture() -> Fixture {
    fixture_with(
        vec![api_key("ACC1", "trade,read"), api_key("ACC2", "read")],
        AuthConfig::default(),
    )
}

fn fix_time(ms: i64) -> String {
    let mut out = Vec::new();
    UtcTimestamp::from_millis(ms).write(TimePrecision::Millis, &mut out);
    String::from_utf8(out).unwrap()
}

/// An owned Logon, signed as a client would.
#[derive(Clone)]
struct Logon {
    key_id: String,
    sending_time: String,
    seq: String,
    sender: String,
    target: String,
    raw_data: Option<String>,
    ip: IpAddr,
    accounts: Vec<String>,
    scope: Scope,
    now: i64,
}

impl Logon {
    fn new(key: &ApiKey, now: i64) -> Self {
        let mut l = Logon {
            key_id: key.key_id.to_string(),
            sending_time: fix_time(now),
            seq: "1".into(),
            sender: "CLIENT1".into(),
            target: "PORTCULLIS".into(),
            raw_data: None,
            ip: V4.parse().unwrap(),
            accounts: vec!["ACC1".into(), "ACC2".into()],
            scope: Scope::Trade,
            now,
        };
        l.sign(key.secret.as_ref().unwrap().as_bytes());
        l
    }

    fn sign(&mut self, secret: &[u8]) {
        let f = LogonFields {
            sending_time: self.sending_time.as_bytes(),
            msg_type: b"A",
            msg_seq_num: self.seq.as_bytes(),
            sender_comp_id: self.sender.as_bytes(),
            target_comp_id: self.target.as_bytes(),
            username: self.key_id.as_bytes(),
        };
        self.raw_data = Some(sign_logon(secret, &f));
    }

    fn attempt(&self) -> LogonAttempt<'_> {
        LogonAttempt {
            key_id: &self.key_id,
            sending_time: self.sending_time.as_bytes(),
            msg_type: b"A",
            msg_seq_num: self.seq.as_bytes(),
            sender_comp_id: self.sender.as_bytes(),
            target_comp_id: self.target.as_bytes(),
            raw_data: self.raw_data.as_deref().map(str::as_bytes),
            peer_ip: self.ip,
            session: "CLIENT1->PORTCULLIS",
            allowed_accounts: &self.accounts,
            required_scope: self.scope,
            now_ms: self.now,
        }
    }
}

impl Fixture {
    fn logon(&self, l: &Logon) -> Result<Grant, Denied> {
        self.auth.authenticate_logon(&l.attempt())
    }

    fn reasons(&self) -> Vec<(AuditKind, Option<String>)> {
        self.log
            .events()
            .into_iter()
            .map(|e| (e.kind, e.reason))
            .collect()
    }

    fn last_logon_event(&self) -> AuditEvent {
        self.log
            .events()
            .into_iter()
            .rev()
            .find(|e| e.kind == AuditKind::Logon)
            .expect("a logon event")
    }
}

/// A signed Logon that fails only because of its signature (for lockout tests).
fn bad(key: &ApiKey, now: i64) -> Logon {
    let mut l = Logon::new(key, now);
    l.sign(b"not-the-secret-not-the-secret-not-the-secret");
    l
}

// ------------------------------------------------------------------------------------------
// Success

#[test]
fn valid_logon_is_granted_with_the_keys_account_and_scopes() {
    let f = fixture();
    let k = &f.keys[0];
    let g = f.logon(&Logon::new(k, T0)).unwrap();
    assert_eq!(g.key_id, k.key_id);
    assert_eq!(g.account, "ACC1");
    assert_eq!(g.scopes, Scopes::parse("read,trade").unwrap());
    assert!(!g.message_verifier.is_revoked());
    let e = f.last_logon_event();
    assert_eq!(e.outcome, Outcome::Ok);
    assert_eq!(e.account.as_deref(), Some("ACC1"));
    assert_eq!(e.key_id.as_deref(), Some(k.key_id.as_str()));
    assert_eq!(e.peer_ip, Some(V4.parse().unwrap()));
    assert_eq!(e.session.as_deref(), Some("CLIENT1->PORTCULLIS"));
    assert_eq!(e.time, "2024-01-02T03:04:05.678Z");
}

#[test]
fn sending_time_at_the_edges_of_the_window_is_accepted() {
    let f = fixture();
    let k = &f.keys[0];
    let mut l = Logon::new(k, T0 - 5_000);
    l.now = T0;
    assert!(f.logon(&l).is_ok());
    let mut l = Logon::new(k, T0 + 5_000);
    l.now = T0;
    assert!(f.logon(&l).is_ok());
}

// ------------------------------------------------------------------------------------------
// Each failure

fn assert_denied(f: &Fixture, l: &Logon, want: Denied) {
    let got = f.logon(l).unwrap_err();
    assert_eq!(got, want);
    let e = f.last_logon_event();
    assert_eq!(e.outcome, Outcome::Denied);
    assert_eq!(e.reason.as_deref(), Some(want.reason()));
}

#[test]
fn unknown_key_is_denied() {
    let f = fixture();
    let mut l = Logon::new(&f.keys[0], T0);
    l.key_id = "pk_doesnotexist".into();
    assert_denied(&f, &l, Denied::UnknownKey);
    assert_eq!(
        f.last_logon_event().key_id.as_deref(),
        Some("pk_doesnotexist")
    );
}

#[test]
fn revoked_key_is_denied() {
    let mut keys = fixture().keys;
    keys[0].status = KeyStatus::Revoked;
    let f = fixture_with(keys, AuthConfig::default());
    assert_denied(&f, &Logon::new(&f.keys[0], T0), Denied::Revoked);
}

#[test]
fn expired_key_is_denied() {
    let mut keys = fixture().keys;
    keys[0].expires_at = Some(T0);
    let f = fixture_with(keys, AuthConfig::default());
    assert_denied(&f, &Logon::new(&f.keys[0], T0), Denied::Expired);
    assert!(
        f.logon(&Logon::new(&f.keys[0], T0 - 10)).is_ok(),
        "usable until expiry"
    );
}

#[test]
fn ip_not_allowed_is_denied_for_v4_and_v6_cidrs() {
    let mut keys = fixture().keys;
    keys[0].ip_allowlist = parse_ip_allowlist(&["198.51.100.0/24", "2001:db8:1::/48"]).unwrap();
    let f = fixture_with(keys, AuthConfig::default());
    let k = &f.keys[0];
    let cases = [
        ("198.51.100.77", true),
        ("198.51.101.1", false),
        ("2001:db8:1:ffff::1", true),
        ("2001:db8:2::1", false),
        ("::ffff:198.51.100.5", true),
        (V4, false),
    ];
    for (i, (ip, ok)) in cases.into_iter().enumerate() {
        // A distinct SendingTime per attempt, so none is a replay of another.
        let mut l = Logon::new(k, T0 + i as i64);
        l.ip = ip.parse().unwrap();
        if ok {
            assert!(f.logon(&l).is_ok(), "{ip} should be allowed");
        } else {
            assert_denied(&f, &l, Denied::IpNotAllowed);
        }
    }
}

#[test]
fn stale_sending_time_is_denied() {
    let f = fixture();
    let mut l = Logon::new(&f.keys[0], T0 - 5_001);
    l.now = T0;
    assert_denied(&f, &l, Denied::StaleSendingTime);
    assert!(f
        .last_logon_event()
        .detail
        .unwrap()
        .contains("5001 ms behind"));
}

#[test]
fn future_sending_time_is_denied() {
    let f = fixture();
    let mut l = Logon::new(&f.keys[0], T0 + 5_001);
    l.now = T0;
    assert_denied(&f, &l, Denied::FutureSendingTime);
}

#[test]
fn malformed_sending_time_is_denied() {
    let f = fixture();
    let mut l = Logon::new(&f.keys[0], T0);
    l.sending_time = "2024-01-02T03:04:05Z".into();
    l.sign(f.keys[0].secret.as_ref().unwrap().as_bytes());
    assert_denied(&f, &l, Denied::BadSendingTime);
}

#[test]
fn logon_window_is_configurable() {
    let config = AuthConfig {
        logon_window_ms: 30_000,
        ..AuthConfig::default()
    };
    let f = fixture_with(fixture().keys, config);
    let mut l = Logon::new(&f.keys[0], T0 - 29_000);
    l.now = T0;
    assert!(f.logon(&l).is_ok());
}

#[test]
fn replayed_logon_is_denied() {
    let f = fixture();
    let l = Logon::new(&f.keys[0], T0);
    assert!(f.logon(&l).is_ok());
    let mut again = l.clone();
    again.now = T0 + 1_000;
    assert_denied(&f, &again, Denied::Replayed);
    // From another address too.
    again.ip = "192.0.2.1".parse().unwrap();
    assert_denied(&f, &again, Denied::Replayed);
    // A fresh signature (new SendingTime) is fine.
    assert!(f.logon(&Logon::new(&f.keys[0], T0 + 1_000)).is_ok());
}

#[test]
fn replay_of_a_genuine_logon_that_was_refused_is_still_a_replay() {
    let f = fixture();
    let mut l = Logon::new(&f.keys[0], T0);
    l.accounts = vec!["OTHER".into()];
    assert_denied(&f, &l, Denied::AccountNotAllowed);
    l.accounts = vec!["ACC1".into()];
    assert_denied(&f, &l, Denied::Replayed);
}

#[test]
fn replay_cache_forgets_after_the_window() {
    let f = fixture();
    let l = Logon::new(&f.keys[0], T0);
    assert!(f.logon(&l).is_ok());
    let mut later = l.clone();
    later.now = T0 + 5_001;
    // Outside the window the old Logon is stale, not remembered forever.
    assert_denied(&f, &later, Denied::StaleSendingTime);
    assert!(f.auth.monitor().replay.len() <= 1);
    let _ = f.logon(&Logon::new(&f.keys[0], T0 + 20_000));
    assert_eq!(
        f.auth.monitor().replay.len(),
        1,
        "expired entries are pruned"
    );
}

#[test]
fn wrong_signature_is_denied() {
    let f = fixture();
    assert_denied(&f, &bad(&f.keys[0], T0), Denied::BadSignature);
    // Another key's secret.
    let mut l = Logon::new(&f.keys[0], T0);
    l.sign(f.keys[1].secret.as_ref().unwrap().as_bytes());
    assert_denied(&f, &l, Denied::BadSignature);
    // Garbage.
    l.raw_data = Some("%%%not base64%%%".into());
    assert_denied(&f, &l, Denied::BadSignature);
}

#[test]
fn signature_over_different_comp_ids_is_denied() {
    let f = fixture();
    let mut l = Logon::new(&f.keys[0], T0);
    l.sender = "CLIENT2".into(); // signed for CLIENT1
    assert_denied(&f, &l, Denied::BadSignature);
    let mut l = Logon::new(&f.keys[0], T0);
    l.target = "OTHERVENUE".into();
    assert_denied(&f, &l, Denied::BadSignature);
    let mut l = Logon::new(&f.keys[0], T0);
    l.seq = "2".into();
    assert_denied(&f, &l, Denied::BadSignature);
}

#[test]
fn missing_logon_signature_is_denied() {
    let f = fixture();
    let mut l = Logon::new(&f.keys[0], T0);
    l.raw_data = None;
    assert_denied(&f, &l, Denied::MissingSignature);
    l.raw_data = Some(String::new());
    assert_denied(&f, &l, Denied::MissingSignature);
}

#[test]
fn account_not_allowed_on_the_session_is_denied() {
    let f = fixture();
    let mut l = Logon::new(&f.keys[0], T0);
    l.accounts = vec!["ACC2".into()];
    assert_denied(&f, &l, Denied::AccountNotAllowed);
    let mut l = Logon::new(&f.keys[0], T0 + 1);
    l.accounts = vec![];
    assert_denied(&f, &l, Denied::AccountNotAllowed);
    let mut l = Logon::new(&f.keys[0], T0 + 2);
    l.accounts = vec![ANY_ACCOUNT.into()];
    assert!(f.logon(&l).is_ok(), "* allows any account");
}

#[test]
fn missing_scope_is_denied() {
    let f = fixture();
    let read_only = &f.keys[1];
    assert_denied(&f, &Logon::new(read_only, T0), Denied::MissingScope);
    let mut l = Logon::new(read_only, T0 + 1);
    l.scope = Scope::Read;
    assert!(
        f.logon(&l).is_ok(),
        "a read-only session accepts a read key"
    );
}

#[test]
fn ed25519_only_key_cannot_sign_a_fix_logon() {
    let mut k = api_key("ACC1", "trade");
    let secret = k.secret.take().unwrap();
    k.ed25519_public_key = Some(
        ed25519_dalek::SigningKey::from_bytes(&[3; 32])
            .verifying_key()
            .to_bytes(),
    );
    let f = fixture_with(vec![k.clone()], AuthConfig::default());
    let mut l = Logon::new(&api_key("X", "trade"), T0);
    l.key_id = k.key_id.to_string();
    l.sign(secret.as_bytes());
    assert_denied(&f, &l, Denied::BadSignature);
}

#[test]
fn same_public_text_for_unknown_key_and_bad_signature() {
    let f = fixture();
    let mut unknown = Logon::new(&f.keys[0], T0);
    unknown.key_id = "pk_nope".into();
    let a = f.logon(&unknown).unwrap_err();
    let b = f.logon(&bad(&f.keys[0], T0)).unwrap_err();
    assert_ne!(a, b, "the audit log tells them apart");
    assert_eq!(a.public_text(), b.public_text());
    for d in [
        Denied::UnknownKey,
        Denied::Revoked,
        Denied::Expired,
        Denied::IpNotAllowed,
        Denied::StaleSendingTime,
        Denied::FutureSendingTime,
        Denied::BadSendingTime,
        Denied::Replayed,
        Denied::BadSignature,
        Denied::MissingSignature,
        Denied::AccountNotAllowed,
        Denied::MissingScope,
    ] {
        assert_eq!(d.public_text(), "Authentication failed", "{d:?}");
    }
    assert_ne!(Denied::Locked.public_text(), "Authentication failed");
}

// ------------------------------------------------------------------------------------------
// Lockout

#[test]
fn lockout_after_max_failures_and_release_after_the_back_off() {
    let f = fixture();
    let k = &f.keys[0];
    for i in 0..5 {
        assert_eq!(f.logon(&bad(k, T0 + i)).unwrap_err(), Denied::BadSignature);
    }
    let lockouts: Vec<_> = f
        .log
        .events()
        .into_iter()
        .filter(|e| e.kind == AuditKind::Lockout)
        .collect();
    assert_eq!(lockouts.len(), 2, "the key and the address: {lockouts:?}");
    assert!(lockouts[0]
        .detail
        .as_ref()
        .unwrap()
        .contains("locked for 1000 ms"));

    // Locked: even the right signature is refused, before any HMAC work.
    let good = Logon::new(k, T0 + 500);
    assert_denied(&f, &good, Denied::Locked);
    assert_eq!(
        Denied::Locked.public_text(),
        "Too many attempts, retry later"
    );
    assert!(f
        .auth
        .is_locked(k.key_id.as_str(), V4.parse().unwrap(), T0 + 500));
    // The locked attempt did not reach the replay cache: after the release the same Logon...
    let mut after = good.clone();
    after.now = T0 + 4 + 1_000;
    // ...is accepted (it is inside its window and was never verified).
    assert!(f.logon(&after).is_ok());
}

#[test]
fn lockout_back_off_doubles_and_is_capped() {
    let config = AuthConfig {
        lockout_max_ms: 4_000,
        ..AuthConfig::default()
    };
    let f = fixture_with(fixture().keys, config);
    let k = &f.keys[0];
    let mut now = T0;
    for expected in [1_000, 2_000, 4_000, 4_000] {
        for _ in 0..5 {
            assert_eq!(f.logon(&bad(k, now)).unwrap_err(), Denied::BadSignature);
        }
        assert_denied(&f, &bad(k, now + expected - 1), Denied::Locked);
        now += expected;
        assert!(!f
            .auth
            .is_locked(k.key_id.as_str(), V4.parse().unwrap(), now));
    }
}

#[test]
fn success_resets_the_keys_failure_count() {
    let f = fixture();
    let k = &f.keys[0];
    let mut ip = 0u8;
    let mut attempt = |l: &mut Logon| {
        ip += 1; // a new address each time: only the key's count matters here
        l.ip = IpAddr::from([192, 0, 2, ip]);
        f.logon(l)
    };
    for i in 0..4 {
        assert!(attempt(&mut bad(k, T0 + i)).is_err());
    }
    assert!(attempt(&mut Logon::new(k, T0 + 10)).is_ok());
    for i in 0..4 {
        assert_eq!(
            attempt(&mut bad(k, T0 + 20 + i)).unwrap_err(),
            Denied::BadSignature
        );
    }
    assert!(attempt(&mut Logon::new(k, T0 + 30)).is_ok());
}

#[test]
fn failures_outside_the_window_do_not_count() {
    let f = fixture();
    let k = &f.keys[0];
    for i in 0..4 {
        assert!(f.logon(&bad(k, T0 + i)).is_err());
    }
    let later = T0 + 60_001;
    assert_eq!(f.logon(&bad(k, later)).unwrap_err(), Denied::BadSignature);
    assert!(f.logon(&Logon::new(k, later + 1)).is_ok());
}

#[test]
fn source_address_is_locked_across_key_ids() {
    let f = fixture();
    let k = &f.keys[0];
    for i in 0..5 {
        let mut l = Logon::new(k, T0 + i);
        l.key_id = format!("pk_guess{i}");
        assert_eq!(f.logon(&l).unwrap_err(), Denied::UnknownKey);
    }
    // The address is locked, whatever key it tries.
    assert_denied(&f, &Logon::new(k, T0 + 10), Denied::Locked);
    // Another address is not.
    let mut other = Logon::new(k, T0 + 11);
    other.ip = "198.51.100.1".parse().unwrap();
    assert!(f.logon(&other).is_ok());
}

#[test]
fn ipv6_sources_are_locked_by_their_64_prefix() {
    let f = fixture();
    let k = &f.keys[0];
    for i in 0..5u16 {
        let mut l = bad(k, T0 + i64::from(i));
        l.ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i + 1));
        l.key_id = format!("pk_guess{i}");
        assert!(f.logon(&l).is_err());
    }
    let mut l = Logon::new(k, T0 + 10);
    l.ip = "2001:db8:0:1:ffff::9".parse().unwrap();
    assert_denied(&f, &l, Denied::Locked);
    let mut l = Logon::new(k, T0 + 11);
    l.ip = "2001:db8:0:2::9".parse().unwrap();
    assert!(f.logon(&l).is_ok());
}

#[test]
fn locked_attempts_do_not_extend_the_lock() {
    let f = fixture();
    let k = &f.keys[0];
    for i in 0..5 {
        assert!(f.logon(&bad(k, T0 + i)).is_err());
    }
    for t in [100, 500, 900] {
        assert_eq!(f.logon(&bad(k, T0 + t)).unwrap_err(), Denied::Locked);
    }
    assert!(f.logon(&Logon::new(k, T0 + 4 + 1_000)).is_ok());
}

// ------------------------------------------------------------------------------------------
// Audit and anomalies

#[test]
fn every_attempt_is_one_logon_audit_event_with_all_fields() {
    let f = fixture();
    let k = &f.keys[0];
    let _ = f.logon(&Logon::new(k, T0));
    let _ = f.logon(&bad(k, T0 + 1));
    let mut unknown = Logon::new(k, T0 + 2);
    unknown.key_id = "pk_x".into();
    let _ = f.logon(&unknown);
    let logons: Vec<_> = f
        .log
        .events()
        .into_iter()
        .filter(|e| e.kind == AuditKind::Logon)
        .collect();
    assert_eq!(logons.len(), 3);
    let reasons: Vec<_> = logons.iter().map(|e| e.reason.clone().unwrap()).collect();
    assert_eq!(reasons, ["authenticated", "bad_signature", "unknown_key"]);
    for line in f.log.lines() {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for field in [
            "time", "kind", "key_id", "account", "peer_ip", "session", "outcome", "reason",
            "detail",
        ] {
            assert!(v.get(field).is_some(), "{field} missing in {line}");
        }
    }
}

#[test]
fn first_logon_from_a_new_ip_is_an_anomaly() {
    let f = fixture();
    let k = &f.keys[0];
    assert!(f.logon(&Logon::new(k, T0)).is_ok());
    let mut same = Logon::new(k, T0 + 120_000);
    same.now = T0 + 120_000;
    assert!(f.logon(&same).is_ok());
    assert!(!f.reasons().iter().any(|(k, _)| *k == AuditKind::Anomaly));
    let mut other = Logon::new(k, T0 + 240_000);
    other.ip = "198.51.100.23".parse().unwrap();
    assert!(f.logon(&other).is_ok());
    let anomalies: Vec<_> = f
        .log
        .events()
        .into_iter()
        .filter(|e| e.kind == AuditKind::Anomaly)
        .collect();
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(anomalies[0].reason.as_deref(), Some("new_ip"));
    assert_eq!(anomalies[0].peer_ip, Some("198.51.100.23".parse().unwrap()));
}

#[test]
fn logons_from_several_ips_at_once_are_an_anomaly() {
    let f = fixture();
    let k = &f.keys[0];
    assert!(f.logon(&Logon::new(k, T0)).is_ok());
    let mut other = Logon::new(k, T0 + 1_000);
    other.ip = "198.51.100.23".parse().unwrap();
    assert!(f.logon(&other).is_ok());
    let reasons: Vec<_> = f
        .reasons()
        .into_iter()
        .filter(|(k, _)| *k == AuditKind::Anomaly)
        .map(|(_, r)| r.unwrap())
        .collect();
    assert_eq!(reasons, ["new_ip", "multiple_ips"]);
    // Not repeated within the window.
    let mut third = Logon::new(k, T0 + 2_000);
    third.ip = "198.51.100.24".parse().unwrap();
    assert!(f.logon(&third).is_ok());
    let multi = f
        .reasons()
        .into_iter()
        .filter(|(_, r)| r.as_deref() == Some("multiple_ips"))
        .count();
    assert_eq!(multi, 1);
}

#[test]
fn burst_of_message_signature_failures_is_an_anomaly() {
    let f = fixture();
    let ip: IpAddr = V4.parse().unwrap();
    let id = f.keys[0].key_id.as_str();
    for i in 0..4 {
        assert!(!f.auth.record_message_signature_failure(
            "S1",
            id,
            ip,
            SigError::Mismatch,
            T0 + i * 1_000
        ));
    }
    assert!(f
        .auth
        .record_message_signature_failure("S1", id, ip, SigError::Missing, T0 + 4_000));
    // Once per window.
    assert!(!f
        .auth
        .record_message_signature_failure("S1", id, ip, SigError::Mismatch, T0 + 5_000));
    let events = f.log.events();
    let sig = events
        .iter()
        .filter(|e| e.kind == AuditKind::MessageSignature)
        .count();
    assert_eq!(sig, 6);
    let burst: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AuditKind::Anomaly)
        .collect();
    assert_eq!(burst.len(), 1);
    assert_eq!(burst[0].reason.as_deref(), Some("signature_failure_burst"));
    assert_eq!(burst[0].session.as_deref(), Some("S1"));
    // Spread-out failures on another session raise nothing.
    for i in 0..10 {
        assert!(!f.auth.record_message_signature_failure(
            "S2",
            id,
            ip,
            SigError::Mismatch,
            T0 + i * 3_000
        ));
    }
}

// ------------------------------------------------------------------------------------------
// Per-message signatures and revocation

fn signed_order(secret: &[u8]) -> Vec<u8> {
    crate::fix_sig::tests::message(secret, crate::fix_sig::tests::ORDER_BODY, true)
}

#[test]
fn message_verifier_accepts_signed_and_refuses_missing_or_tampered_messages() {
    let f = fixture();
    let k = &f.keys[0];
    let g = f.logon(&Logon::new(k, T0)).unwrap();
    let secret = k.secret.as_ref().unwrap().as_bytes();
    let m = signed_order(secret);
    assert_eq!(g.message_verifier.verify(&m), Ok(()));
    let unsigned = crate::fix_sig::tests::message(secret, crate::fix_sig::tests::ORDER_BODY, false);
    assert_eq!(g.message_verifier.verify(&unsigned), Err(SigError::Missing));
    let mut tampered = m.clone();
    let at = tampered.windows(5).position(|w| w == b"38=10").unwrap();
    tampered[at + 3] = b'9';
    assert_eq!(
        g.message_verifier.verify(&tampered),
        Err(SigError::Mismatch)
    );
    // Signed with another key's secret.
    let other = signed_order(f.keys[1].secret.as_ref().unwrap().as_bytes());
    assert_eq!(g.message_verifier.verify(&other), Err(SigError::Mismatch));
}

#[test]
fn reload_revokes_live_sessions_of_revoked_or_removed_keys_only() {
    let f = fixture();
    let g0 = f.logon(&Logon::new(&f.keys[0], T0)).unwrap();
    let mut l1 = Logon::new(&f.keys[1], T0);
    l1.scope = Scope::Read;
    let g1 = f.logon(&l1).unwrap();

    // Unchanged keys: sessions go on.
    let stats = f.auth.reload_keys(f.keys.clone());
    assert_eq!(
        stats,
        ReloadStats {
            keys: 2,
            revoked: 0
        }
    );
    assert!(!g0.message_verifier.is_revoked() && !g1.message_verifier.is_revoked());

    // Key 0 revoked, key 1 removed.
    let mut k0 = f.keys[0].clone();
    k0.status = KeyStatus::Revoked;
    let stats = f.auth.reload_keys(vec![k0]);
    assert_eq!(
        stats,
        ReloadStats {
            keys: 1,
            revoked: 2
        }
    );
    assert!(g0.message_verifier.is_revoked());
    assert!(g1.message_verifier.is_revoked());
    let m = signed_order(f.keys[0].secret.as_ref().unwrap().as_bytes());
    assert_eq!(g0.message_verifier.verify(&m), Err(SigError::KeyRevoked));
    assert!(f
        .log
        .events()
        .iter()
        .any(|e| e.kind == AuditKind::KeysReloaded));
    assert_denied(&f, &Logon::new(&f.keys[0], T0 + 10), Denied::Revoked);
}

#[test]
fn last_used_times_are_collected_for_persisting() {
    let f = fixture();
    assert!(f.logon(&Logon::new(&f.keys[0], T0)).is_ok());
    assert_eq!(
        f.auth.take_last_used(),
        vec![(f.keys[0].key_id.to_string(), T0)]
    );
    assert!(f.auth.take_last_used().is_empty());
}

// ------------------------------------------------------------------------------------------
// Configuration

#[test]
fn config_defaults_and_toml_embedding() {
    let c = AuthConfig::default();
    assert_eq!(c.logon_window_ms, 5_000);
    assert_eq!(c.max_failures, 5);
    assert_eq!(c.failure_window_ms, 60_000);
    assert_eq!(c.lockout_base_ms, 1_000);
    assert_eq!(c.lockout_max_ms, 900_000);
    assert!(c.validate().is_ok());

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Server {
        auth: AuthConfig,
    }
    let s: Server = toml::from_str("[auth]\nlogon_window_ms = 2000\n").unwrap();
    assert_eq!(s.auth.logon_window_ms, 2_000);
    assert_eq!(s.auth.max_failures, 5);
    let e = toml::from_str::<Server>("[auth]\nlogon_windw_ms = 2000\n")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("logon_windw_ms"), "{e}");
}

#[test]
fn config_out_of_range_is_refused_with_the_setting_named() {
    let bad = AuthConfig {
        lockout_max_ms: 10,
        ..AuthConfig::default()
    };
    let e = bad.validate().unwrap_err();
    assert_eq!(e.field, "lockout_max_ms");
    assert!(e.to_string().starts_with("auth.lockout_max_ms"));
    let bad = AuthConfig {
        max_failures: 0,
        ..AuthConfig::default()
    };
    assert!(Authenticator::new(bad, Arc::new(MemoryAuditLog::new())).is_err());
}

#[test]
fn malformed_usernames_are_not_tracked_per_key_but_per_address() {
    let f = fixture();
    let huge = "x".repeat(60_000);
    for i in 0..5 {
        let mut l = Logon::new(&f.keys[0], T0 + i);
        l.key_id = huge.clone();
        assert_eq!(f.logon(&l).unwrap_err(), Denied::UnknownKey);
    }
    assert!(f.auth.monitor().by_key.is_empty());
    assert_denied(&f, &Logon::new(&f.keys[0], T0 + 10), Denied::Locked);
    let e = f
        .log
        .events()
        .into_iter()
        .find(|e| e.kind == AuditKind::Logon)
        .unwrap();
    assert!(e.key_id.unwrap().len() < 300, "audit fields are bounded");
}

#[test]
fn extreme_clocks_do_not_overflow() {
    let f = fixture();
    let k = &f.keys[0];
    for now in [i64::MIN, -1, 0, i64::MAX] {
        let mut l = Logon::new(k, T0);
        l.now = now;
        assert!(f.logon(&l).is_err());
        assert!(!f.auth.record_message_signature_failure(
            "S",
            "pk_1",
            l.ip,
            SigError::Missing,
            now
        ));
    }
}
