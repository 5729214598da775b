//! Keys: wrong keys, nonce uniqueness, rotation, re-encryption, ciphertext at rest.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use portcullis_auth::{MasterKey, MasterKeyring};

use super::*;
use crate::format::{le_u64, nonce};
use crate::{reencrypt, verify, JournalError, LogOptions, SealedLogWriter};

#[test]
fn a_key_missing_from_the_keyring_is_reported_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &ring("k1", 1)).unwrap();
    write_batches(&mut w, 0, &[2]);
    drop(w);
    let err = JournalReader::open(dir.path(), &ring("k2", 1)).unwrap_err();
    match &err {
        JournalError::WrongKey {
            segment,
            key_id,
            in_keyring,
        } => {
            assert_eq!(segment, &segments(dir.path())[0]);
            assert_eq!((key_id.as_str(), *in_keyring), ("k1", false));
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .contains("\"k1\", which is not in the keyring"),
        "{err}"
    );
}

#[test]
fn a_wrong_key_with_the_right_id_is_told_apart_from_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &ring("k1", 1)).unwrap();
    write_batches(&mut w, 0, &[2]);
    drop(w);
    let err = JournalReader::open(dir.path(), &ring("k1", 2)).unwrap_err();
    assert!(
        matches!(&err, JournalError::WrongKey { key_id, in_keyring: true, .. } if key_id == "k1"),
        "{err}"
    );
    // Nothing was cut or changed by the failed open.
    assert_eq!(replay_all(dir.path(), &ring("k1", 1)).unwrap().len(), 2);
}

/// (salt, nonce) of every batch of every segment file in `dir`.
fn nonces(dir: &Path) -> Vec<([u8; 32], [u8; 12])> {
    let mut out = Vec::new();
    for seg in segments(dir) {
        let (h, _, batches) = layout(&seg);
        let bytes = fs::read(&seg).unwrap();
        for (i, (off, _)) in batches.into_iter().enumerate() {
            let n: [u8; 12] = bytes[off + 24..off + 36].try_into().unwrap();
            assert_eq!(
                n,
                nonce(h.number, i as u64),
                "nonce = segment number ‖ batch number"
            );
            assert_eq!(le_u64(&bytes, off + 16), i as u64);
            out.push((h.salt, n));
        }
    }
    out
}

#[test]
fn nonces_are_never_reused_across_batches_segments_restarts_and_cut_tails() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    // Every (file key, nonce) ever used: the file key is identified by its salt.
    let mut seen: HashSet<([u8; 32], [u8; 12])> = HashSet::new();
    let mut salts: HashSet<[u8; 32]> = HashSet::new();
    let mut record = |dir: &Path| {
        for seg in segments(dir) {
            let (h, _, _) = layout(&seg);
            salts.insert(h.salt);
        }
        for pair in nonces(dir) {
            seen.insert(pair);
        }
    };
    let mut start = 0;
    for round in 0..6 {
        let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
        write_batches(&mut w, start, &[7; 10]);
        start += 70;
        drop(w);
        record(dir.path());
        if round % 2 == 1 {
            // A crash tore the last batch: its nonce was used for bytes that reached the disk.
            let seg = segments(dir.path()).pop().unwrap();
            let (_, _, batches) = layout(&seg);
            let (off, len) = *batches.last().unwrap();
            let b = fs::read(&seg).unwrap();
            fs::write(&seg, &b[..off + len / 2]).unwrap();
            start -= 7;
        }
    }
    let total: usize = 6 * 10;
    assert_eq!(
        seen.len(),
        total,
        "every batch written had a fresh (key, nonce)"
    );
    // Segment salts are distinct, so no two segments share a file key.
    assert_eq!(salts.len(), segments(dir.path()).len());
    let final_pairs = nonces(dir.path());
    let unique: HashSet<_> = final_pairs.iter().collect();
    assert_eq!(unique.len(), final_pairs.len());
    assert_eq!(replay_all(dir.path(), &k).unwrap().len() as u64, start);
}

#[test]
fn rotation_new_segments_use_the_new_key_old_ones_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let old = ring("old", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &old).unwrap();
    let a = write_batches(&mut w, 0, &[20; 4]);
    drop(w);
    let new_key = MasterKey::new("new", [2; 32]).unwrap();
    let rotated = old.with_current(new_key);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &rotated).unwrap();
    let b = write_batches(&mut w, 80, &[20; 4]);
    drop(w);
    let keys: Vec<String> = segments(dir.path())
        .iter()
        .map(|s| layout(s).0.key_id)
        .collect();
    let first_new = keys.iter().position(|k| k == "new").unwrap();
    assert!(first_new > 0);
    assert!(keys[..first_new].iter().all(|k| k == "old"));
    assert!(keys[first_new..].iter().all(|k| k == "new"));
    let all: Vec<_> = replay_all(dir.path(), &rotated)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(all, [a, b].concat());
    // Without the old key, its segments cannot be read.
    let only_new = rotated.without("old").unwrap();
    assert!(matches!(
        JournalReader::open(dir.path(), &only_new),
        Err(JournalError::WrongKey {
            in_keyring: false,
            ..
        })
    ));
}

#[test]
fn set_keyring_rotates_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old = ring("old", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &old).unwrap();
    write_batches(&mut w, 0, &[2]);
    let rotated = old.with_current(MasterKey::new("new", [2; 32]).unwrap());
    w.set_keyring(&rotated).unwrap();
    write_batches(&mut w, 2, &[2]);
    drop(w);
    let keys: Vec<String> = segments(dir.path())
        .iter()
        .map(|s| layout(s).0.key_id)
        .collect();
    assert_eq!(keys, ["old", "new"]);
    assert_eq!(replay_all(dir.path(), &rotated).unwrap().len(), 4);
}

#[test]
fn reencryption_leaves_only_the_current_key_needed() {
    let dir = tempfile::tempdir().unwrap();
    let old = ring("old", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &old).unwrap();
    let a = write_batches(&mut w, 0, &[20; 5]);
    w.write_snapshot(Seq(60), &[9; 32], b"state at 60").unwrap();
    drop(w);
    let rotated = old.with_current(MasterKey::new("new", [2; 32]).unwrap());
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &rotated).unwrap();
    let b = write_batches(&mut w, 100, &[20; 2]);
    drop(w);
    let before: Vec<_> = segments(dir.path()).iter().map(|s| layout(s).2).collect();

    let report = reencrypt(dir.path(), &rotated).unwrap();
    assert_eq!(report.key_id, "new");
    assert!(!report.segments_rewritten.is_empty());
    assert!(report.segments_current >= 1);
    assert_eq!(report.snapshots_rewritten.len(), 1);

    let only_new = rotated.without("old").unwrap();
    let all: Vec<_> = replay_all(dir.path(), &only_new)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(all, [a, b].concat());
    let v = verify(dir.path(), &only_new).unwrap();
    assert_eq!(v.key_ids, ["new"]);
    let snap = JournalReader::open(dir.path(), &only_new)
        .unwrap()
        .latest_snapshot()
        .unwrap()
        .unwrap();
    assert_eq!(
        (snap.seq, &snap.state[..], snap.key_id.as_str()),
        (Seq(60), &b"state at 60"[..], "new")
    );
    // Same batch boundaries; new salts.
    let after: Vec<_> = segments(dir.path()).iter().map(|s| layout(s).2).collect();
    assert_eq!(before, after);
    // Running it again has nothing to do.
    let again = reencrypt(dir.path(), &only_new).unwrap();
    assert!(again.segments_rewritten.is_empty() && again.snapshots_rewritten.is_empty());
    // And the journal goes on.
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &only_new).unwrap();
    assert_eq!(w.append(&new_order(0)).unwrap(), Seq(141));
}

#[test]
fn reencryption_needs_the_old_key_and_refuses_while_a_writer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let old = ring("old", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &old).unwrap();
    write_batches(&mut w, 0, &[2]);
    let new_only = ring("new", 2);
    assert!(matches!(
        reencrypt(dir.path(), &new_only),
        Err(JournalError::Locked { .. })
    ));
    drop(w);
    assert!(matches!(
        reencrypt(dir.path(), &new_only),
        Err(JournalError::WrongKey { .. })
    ));
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.extend(fs::read(p).unwrap());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_known_clordid_and_account_name_never_appear_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let clordid = b"SECRET-CLORDID-4242";
    let account = b"ACCOUNT-ALICE-TRADING";
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    let JournalRecord::Command(portcullis_types::Command::New(mut o)) = new_order(1) else {
        unreachable!()
    };
    o.cl_ord_id = portcullis_types::ClOrdId::new(clordid).unwrap();
    for _ in 0..50 {
        w.append(&JournalRecord::Command(portcullis_types::Command::New(o)))
            .unwrap();
    }
    let mut e = fill(1);
    e.cl_ord_id = o.cl_ord_id;
    w.append(&JournalRecord::Event(e)).unwrap();
    w.append(&JournalRecord::Limits {
        account: None,
        data: account.to_vec(),
    })
    .unwrap();
    w.commit().unwrap();
    w.write_snapshot(Seq(52), &[0; 32], &[&account[..], &clordid[..]].concat())
        .unwrap();
    drop(w);
    let opts = LogOptions::default();
    let (mut audit, _) = SealedLogWriter::open(dir.path(), "audit", &k, &opts).unwrap();
    audit
        .append(
            format!(
                "{{\"account\":\"{}\"}}",
                std::str::from_utf8(account).unwrap()
            )
            .as_bytes(),
        )
        .unwrap();
    audit.commit().unwrap();
    drop(audit);

    let bytes = all_bytes(dir.path());
    assert!(bytes.len() > 4000);
    assert!(
        !contains(&bytes, clordid),
        "the ClOrdID is readable at rest"
    );
    assert!(
        !contains(&bytes, account),
        "the account name is readable at rest"
    );
    assert!(!contains(&bytes, b"SECRET"));
    // It is in there, under the key.
    let got = replay_all(dir.path(), &k).unwrap();
    assert!(got
        .iter()
        .any(|(_, r)| r.to_string().contains("SECRET-CLORDID-4242")));
}

#[test]
fn keys_are_derived_per_file_from_the_same_keyring_as_the_vault() {
    // The env-var form of the keyring works as is.
    let text = format!("a:{},b:{}", hex::encode([3u8; 32]), hex::encode([4u8; 32]));
    let ring = MasterKeyring::parse(&text).unwrap();
    let keys = crate::keys::KeySet::from_keyring(&ring).unwrap();
    assert_eq!(keys.current().id, "a");
    assert!(keys.get("b").is_some() && keys.get("c").is_none());
    // Two files with different salts never share a key stream.
    let mk = keys.current();
    let c1 = mk.file_cipher(crate::keys::Purpose::Segment, "journal", &[1; 32], 0);
    let c2 = mk.file_cipher(crate::keys::Purpose::Segment, "journal", &[2; 32], 0);
    let c3 = mk.file_cipher(crate::keys::Purpose::Snapshot, "journal", &[1; 32], 0);
    let mut outs = Vec::new();
    for c in [&c1, &c2, &c3] {
        let mut buf = [0u8; 16];
        c.seal([0; 12], b"", &mut buf).unwrap();
        outs.push(buf);
    }
    assert!(outs[0] != outs[1] && outs[0] != outs[2] && outs[1] != outs[2]);
    assert_ne!(keys.current().check(), keys.get("b").unwrap().check());
}

#[test]
fn file_ciphers_are_standard_aes_256_gcm_and_refuse_any_change() {
    use aes_gcm::aead::AeadInPlace;
    use aes_gcm::{Aes256Gcm, KeyInit};
    // The same key, derived the way file_cipher derives it, in the independent RustCrypto
    // implementation: files sealed by either read with the other.
    let keyring = MasterKeyring::parse(&format!("a:{}", hex::encode([9u8; 32]))).unwrap();
    let keys = crate::keys::KeySet::from_keyring(&keyring).unwrap();
    let mk = keys.current();
    let salt = [5u8; 32];
    let ours = mk.file_cipher(crate::keys::Purpose::Segment, "fixstore", &salt, 7);
    let key = {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&[9u8; 32]).unwrap();
        mac.update(b"portcullis sealed log file key v1\0");
        mac.update(b"segment\0");
        mac.update(&[8]);
        mac.update(b"fixstore");
        mac.update(&salt);
        mac.update(&7u64.to_le_bytes());
        mac.finalize().into_bytes()
    };
    let theirs = Aes256Gcm::new(&key);
    let nonce = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    for len in [0usize, 1, 15, 16, 17, 239, 4096] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut a = plain.clone();
        let tag_a = ours.seal(nonce, b"header", &mut a).unwrap();
        let mut b = plain.clone();
        let tag_b = theirs
            .encrypt_in_place_detached(aes_gcm::Nonce::from_slice(&nonce), b"header", &mut b)
            .unwrap();
        assert_eq!(a, b, "ciphertext of {len} bytes");
        assert_eq!(&tag_a[..], &tag_b[..], "tag of {len} bytes");
        let mut opened = a.clone();
        ours.open(nonce, b"header", &mut opened, &tag_a).unwrap();
        assert_eq!(opened, plain);
        // Any changed bit of ciphertext, tag, associated data or nonce is refused.
        if len > 0 {
            let mut bad = a.clone();
            bad[len / 2] ^= 0x20;
            assert!(ours.open(nonce, b"header", &mut bad, &tag_a).is_err());
        }
        let mut bad_tag = tag_a;
        bad_tag[15] ^= 1;
        assert!(ours
            .open(nonce, b"header", &mut a.clone(), &bad_tag)
            .is_err());
        assert!(ours.open(nonce, b"headeR", &mut a.clone(), &tag_a).is_err());
        let mut other = nonce;
        other[0] ^= 1;
        assert!(ours.open(other, b"header", &mut a.clone(), &tag_a).is_err());
        assert!(ours
            .open(nonce, b"header", &mut a.clone(), &tag_a[..15])
            .is_err());
    }
}
