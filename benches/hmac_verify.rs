//! HMAC-SHA256 verification of per-message signatures. Target (DESIGN.md §6): verifying a
//! 250-byte message ≤ 600 ns median.
//!
//! - `verify_message/250B`: what a session does for every application message: the Grant's
//!   `MessageVerifier` (precomputed key) locates the 93/89 trailer, decodes the base64 signature
//!   on the stack and checks the HMAC in constant time.
//! - `verify_message_keyed_per_call/250B`: the same through the free function, which keys HMAC on
//!   every call (what a caller without a `MessageVerifier` pays).
//! - `hmac_sha256/*`: the raw MAC of 250 bytes with the `hmac`+`sha2` crates against `ring`,
//!   with the key precomputed once and keyed per call.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_auth::fix_sig::{self, LogonFields};
use portcullis_auth::key::{ApiKey, KeyId, KeyStatus, Scopes, Secret};
use portcullis_auth::{
    AuthConfig, Authenticator, HmacKey, LogonAttempt, MemoryAuditLog, MessageVerifier, Scope,
};

const LEN: usize = 250;

/// A signed FIX 4.4 NewOrderSingle of exactly 250 bytes, 93/89 and 10 included.
fn signed_order(secret: &[u8]) -> Vec<u8> {
    const SIG_FIELDS: usize = "93=44\u{1}89=\u{1}".len() + 44;
    for pad in 0..64 {
        let body = format!(
            "35=D\u{1}34=1042\u{1}49=MMFIRM01\u{1}52=20240102-03:04:05.678\u{1}56=PORTCULLIS\u{1}\
             11=ORD-{}\u{1}1=ACC-7781\u{1}55=BTC-27DEC24-60000-C\u{1}54=1\u{1}\
             60=20240102-03:04:05.678\u{1}38=25\u{1}40=2\u{1}44=1234.50\u{1}59=1\u{1}",
            "0".repeat(pad)
        );
        let mut m = format!("8=FIX.4.4\u{1}9={}\u{1}", body.len() + SIG_FIELDS).into_bytes();
        m.extend_from_slice(body.as_bytes());
        let sig = fix_sig::sign_message(secret, &m);
        m.extend_from_slice(b"93=44\x0189=");
        m.extend_from_slice(sig.as_bytes());
        m.push(1);
        let sum = m.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        m.extend_from_slice(format!("10={sum:03}\u{1}").as_bytes());
        if m.len() == LEN {
            return m;
        }
    }
    unreachable!("some padding gives 250 bytes")
}

/// A `MessageVerifier` obtained the way the server gets one: a Logon through the
/// `Authenticator`.
fn logged_on_verifier(key: &ApiKey) -> MessageVerifier {
    let auth = Authenticator::new(AuthConfig::default(), Arc::new(MemoryAuditLog::new())).unwrap();
    auth.reload_keys([key.clone()]);
    let now = 1_704_164_645_678;
    let key_id = key.key_id.to_string();
    let fields = LogonFields {
        sending_time: b"20240102-03:04:05.678",
        msg_type: b"A",
        msg_seq_num: b"1",
        sender_comp_id: b"MMFIRM01",
        target_comp_id: b"PORTCULLIS",
        username: key_id.as_bytes(),
    };
    let raw = fix_sig::sign_logon(key.secret.as_ref().unwrap().as_bytes(), &fields);
    let accounts = vec!["ACC-7781".to_owned()];
    let attempt = LogonAttempt {
        key_id: &key_id,
        sending_time: fields.sending_time,
        msg_type: fields.msg_type,
        msg_seq_num: fields.msg_seq_num,
        sender_comp_id: fields.sender_comp_id,
        target_comp_id: fields.target_comp_id,
        raw_data: Some(raw.as_bytes()),
        peer_ip: IpAddr::from([127, 0, 0, 1]),
        session: "bench",
        allowed_accounts: &accounts,
        required_scope: Scope::Trade,
        now_ms: now,
    };
    auth.authenticate_logon(&attempt)
        .expect("logon")
        .message_verifier
}

fn bench(c: &mut Criterion) {
    let key = ApiKey {
        key_id: KeyId::generate(),
        secret: Some(Secret::generate()),
        ed25519_public_key: None,
        account: "ACC-7781".into(),
        scopes: Scopes::parse("trade").unwrap(),
        ip_allowlist: vec![],
        expires_at: None,
        status: KeyStatus::Active,
        created_at: 0,
        last_used_at: None,
        revoked_at: None,
    };
    let secret = key.secret.as_ref().unwrap().as_bytes().to_vec();
    let msg = signed_order(&secret);
    assert_eq!(msg.len(), LEN);
    let verifier = logged_on_verifier(&key);
    assert_eq!(verifier.verify(&msg), Ok(()));

    c.bench_function("verify_message/250B", |b| {
        b.iter(|| verifier.verify(black_box(&msg)))
    });
    c.bench_function("verify_message_keyed_per_call/250B", |b| {
        b.iter(|| fix_sig::verify_message(black_box(&secret), black_box(&msg)))
    });

    let data = &msg[..];
    let hk = HmacKey::new(&secret);
    c.bench_function("hmac_sha256/hmac+sha2/precomputed_key/250B", |b| {
        b.iter(|| hk.tag(black_box(data)))
    });
    c.bench_function("hmac_sha256/hmac+sha2/keyed_per_call/250B", |b| {
        b.iter(|| HmacKey::new(black_box(&secret)).tag(black_box(data)))
    });
    let rk = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    c.bench_function("hmac_sha256/ring/precomputed_key/250B", |b| {
        b.iter(|| ring::hmac::sign(&rk, black_box(data)))
    });
    c.bench_function("hmac_sha256/ring/keyed_per_call/250B", |b| {
        b.iter(|| {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, black_box(&secret));
            ring::hmac::sign(&k, black_box(data))
        })
    });
    // Same MAC from both.
    assert_eq!(hk.tag(data)[..], ring::hmac::sign(&rk, data).as_ref()[..]);
}

criterion_group!(benches, bench);
criterion_main!(benches);
