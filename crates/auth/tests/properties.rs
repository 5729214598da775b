//! Property tests: arbitrary input never panics, and a modified vault never opens.

use std::sync::{Arc, OnceLock};

use portcullis_auth::fix_sig::{split_signed, verify_hmac_hex, verify_logon, verify_message};
use portcullis_auth::{
    AuthConfig, Authenticator, KeySpec, LogonAttempt, LogonFields, MasterKeyring, MemoryAuditLog,
    Scope, Scopes, Vault,
};
use proptest::prelude::*;

const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const SECRET: &[u8] = b"6f1c0a7e3d5b49e2a8c4f0b1d9e7a6c5b3f2e1d0c9b8a7f6e5d4c3b2a1908172";

fn keyring() -> MasterKeyring {
    MasterKeyring::parse(K1).unwrap()
}

/// A valid vault file with two keys, built once.
fn good_vault() -> &'static Vec<u8> {
    static V: OnceLock<Vec<u8>> = OnceLock::new();
    V.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vault.bin");
        let mut v = Vault::create(&p, &keyring()).unwrap();
        for acc in ["A", "B"] {
            v.create_key(KeySpec::new(acc, Scopes::parse("trade").unwrap()), 1)
                .unwrap();
        }
        v.save().unwrap();
        std::fs::read(&p).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic_vault_open(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(Vault::from_bytes("vault.bin", &bytes, &keyring()).is_err());
    }

    #[test]
    fn arbitrary_bytes_after_the_magic_never_open_a_vault(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = b"PCLSVLT\0\x00\x01".to_vec();
        bytes.extend_from_slice(&tail);
        prop_assert!(Vault::from_bytes("vault.bin", &bytes, &keyring()).is_err());
    }

    #[test]
    fn any_modification_of_a_vault_is_an_error(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = good_vault().clone();
        for (at, x) in &edits {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        // Two edits of one byte may cancel out.
        prop_assume!(bytes != *good_vault());
        prop_assert!(Vault::from_bytes("vault.bin", &bytes, &keyring()).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic_verify_message(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = split_signed(&bytes);
        prop_assert!(verify_message(SECRET, &bytes).is_err());
    }

    #[test]
    fn arbitrary_trailers_never_panic_verify_message(
        body in "[ -~\u{1}]{0,60}",
        trailer in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut m = format!("8=FIX.4.4\u{1}9=10\u{1}{body}\u{1}93=").into_bytes();
        m.extend_from_slice(&trailer);
        prop_assert!(verify_message(SECRET, &m).is_err());
    }

    #[test]
    fn arbitrary_signatures_never_panic_or_verify(
        sig in proptest::collection::vec(any::<u8>(), 0..100),
        payload in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let f = LogonFields {
            sending_time: &payload, msg_type: b"A", msg_seq_num: b"1",
            sender_comp_id: b"S", target_comp_id: b"T", username: b"pk_1",
        };
        prop_assert!(!verify_logon(SECRET, &f, &sig));
        prop_assert!(!verify_hmac_hex(SECRET, &payload, &sig));
    }

    #[test]
    fn arbitrary_keyring_text_never_panics(text in "\\PC{0,200}") {
        let _ = MasterKeyring::parse(&text);
    }

    #[test]
    fn arbitrary_logons_never_panic_and_are_denied(
        key_id in "\\PC{0,40}",
        sending_time in proptest::collection::vec(any::<u8>(), 0..30),
        raw in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..60)),
        now in any::<i64>(),
        ip in any::<[u8; 16]>(),
    ) {
        let auth = authenticator();
        let accounts = vec!["*".to_owned()];
        let a = LogonAttempt {
            key_id: &key_id,
            sending_time: &sending_time,
            msg_type: b"A",
            msg_seq_num: b"1",
            sender_comp_id: b"C",
            target_comp_id: b"P",
            raw_data: raw.as_deref(),
            peer_ip: std::net::IpAddr::from(ip),
            session: "prop",
            allowed_accounts: &accounts,
            required_scope: Scope::Trade,
            now_ms: now,
        };
        prop_assert!(auth.authenticate_logon(&a).is_err());
    }
}

fn authenticator() -> &'static Authenticator {
    static A: OnceLock<Authenticator> = OnceLock::new();
    A.get_or_init(|| {
        let v = Vault::from_bytes("vault.bin", good_vault(), &keyring()).unwrap();
        Authenticator::with_vault(AuthConfig::default(), &v, Arc::new(MemoryAuditLog::new()))
            .unwrap()
    })
}
