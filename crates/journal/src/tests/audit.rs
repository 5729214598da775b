//! The encrypted audit log: events round-trip, logs merge by time, nothing readable at rest.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_auth::{AuditEvent, AuditKind, AuditSink, Outcome};

use super::{flip, layout, ring};
use crate::{
    read_audit_dir, read_audit_log, FsyncPolicy, JournalError, LogOptions, SealedAuditLog,
    AUDIT_CLI_PREFIX, AUDIT_PREFIX,
};

fn options() -> LogOptions {
    LogOptions {
        fsync: FsyncPolicy::Always,
        segment_bytes: crate::MIN_SEGMENT_BYTES,
    }
}

fn event(i: i64) -> AuditEvent {
    AuditEvent::new(AuditKind::Logon, Outcome::Denied, 1_704_164_645_000 + i)
        .key_id(&format!("pk_secretkeyid{i}"))
        .account("HIDDEN-ACCOUNT")
        .peer_ip("203.0.113.9".parse().unwrap())
        .reason("bad_signature")
}

fn segments(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    crate::format::list(dir, prefix, ".seg")
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn key_ids(records: &[crate::AuditRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
            v["key_id"].as_str().unwrap_or("").to_owned()
        })
        .collect()
}

#[test]
fn events_round_trip_across_reopens_and_the_files_are_ciphertext() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    for round in 0..3 {
        let (log, _) = SealedAuditLog::open(&dir, AUDIT_PREFIX, &ring("1", 3), &options()).unwrap();
        for i in 0..20 {
            log.record(&event(round * 20 + i)).unwrap();
        }
    }
    let records = read_audit_dir(&dir, &ring("1", 3)).unwrap();
    assert_eq!(records.len(), 60);
    let want: Vec<String> = (0..60).map(|i| format!("pk_secretkeyid{i}")).collect();
    assert_eq!(key_ids(&records), want);
    let back: AuditEvent = serde_json::from_str(&records[7].json).unwrap();
    assert_eq!(back, event(7));
    assert_eq!(records[7].time_ms, Some(1_704_164_645_007));
    for f in fs::read_dir(&dir).unwrap() {
        let bytes = fs::read(f.unwrap().path()).unwrap();
        for needle in [
            &b"pk_secretkeyid"[..],
            b"HIDDEN-ACCOUNT",
            b"203.0.113.9",
            b"logon",
        ] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
    }
}

#[test]
fn the_logs_of_several_writers_merge_by_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (server, _) = SealedAuditLog::open(dir, AUDIT_PREFIX, &ring("1", 3), &options()).unwrap();
    // The CLI's log, beside the server's (which holds its own lock).
    let (cli, _) = SealedAuditLog::open(dir, AUDIT_CLI_PREFIX, &ring("1", 3), &options()).unwrap();
    for i in [0, 2, 4] {
        server.record(&event(i)).unwrap();
    }
    for i in [1, 3] {
        cli.record(&event(i)).unwrap();
    }
    // An object without a time sorts last.
    cli.record_json(br#"{"kind":"note"}"#).unwrap();
    let records = read_audit_dir(dir, &ring("1", 3)).unwrap();
    assert_eq!(
        key_ids(&records),
        [
            "pk_secretkeyid0",
            "pk_secretkeyid1",
            "pk_secretkeyid2",
            "pk_secretkeyid3",
            "pk_secretkeyid4",
            ""
        ]
    );
    assert_eq!(records[1].log, AUDIT_CLI_PREFIX);
    assert!(read_audit_dir(tmp.path().join("missing"), &ring("1", 3))
        .unwrap()
        .is_empty());
}

#[test]
fn a_second_writer_waits_for_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, _) =
        SealedAuditLog::open(tmp.path(), AUDIT_CLI_PREFIX, &ring("1", 3), &options()).unwrap();
    let err = SealedAuditLog::open_waiting(
        tmp.path(),
        AUDIT_CLI_PREFIX,
        &ring("1", 3),
        &options(),
        Duration::from_millis(50),
    )
    .unwrap_err();
    assert!(matches!(err, JournalError::Locked { .. }), "{err}");
    let dir = tmp.path().to_path_buf();
    let waiter = std::thread::spawn(move || {
        let (log, _) = SealedAuditLog::open_waiting(
            &dir,
            AUDIT_CLI_PREFIX,
            &ring("1", 3),
            &options(),
            Duration::from_secs(10),
        )
        .unwrap();
        log.record(&event(2)).unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    first.record(&event(1)).unwrap();
    drop(first);
    waiter.join().unwrap();
    let records = read_audit_log(tmp.path(), AUDIT_CLI_PREFIX, &ring("1", 3)).unwrap();
    assert_eq!(key_ids(&records), ["pk_secretkeyid1", "pk_secretkeyid2"]);
}

#[test]
fn a_torn_tail_is_left_out_by_readers_and_cut_by_the_next_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) =
        SealedAuditLog::open(tmp.path(), AUDIT_PREFIX, &ring("1", 3), &options()).unwrap();
    for i in 0..3 {
        log.record(&event(i)).unwrap();
    }
    drop(log);
    let seg = segments(tmp.path(), AUDIT_PREFIX).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 5).unwrap();
    let records = read_audit_dir(tmp.path(), &ring("1", 3)).unwrap();
    assert_eq!(records.len(), 2);
    let (log, report) =
        SealedAuditLog::open(tmp.path(), AUDIT_PREFIX, &ring("1", 3), &options()).unwrap();
    assert!(report.torn_tail.is_some());
    log.record(&event(9)).unwrap();
    let records = read_audit_dir(tmp.path(), &ring("1", 3)).unwrap();
    assert_eq!(
        key_ids(&records),
        ["pk_secretkeyid0", "pk_secretkeyid1", "pk_secretkeyid9"]
    );
}

#[test]
fn a_wrong_key_or_a_flipped_bit_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) =
        SealedAuditLog::open(tmp.path(), AUDIT_PREFIX, &ring("1", 3), &options()).unwrap();
    for i in 0..3 {
        log.record(&event(i)).unwrap();
    }
    drop(log);
    let err = read_audit_dir(tmp.path(), &ring("1", 4)).unwrap_err();
    assert!(matches!(err, JournalError::WrongKey { .. }), "{err}");
    let seg = segments(tmp.path(), AUDIT_PREFIX).pop().unwrap();
    let (_, _, batches) = layout(&seg);
    let (at, len) = batches[0];
    flip(&seg, at + len - 3, 0x80);
    match read_audit_dir(tmp.path(), &ring("1", 3)).unwrap_err() {
        JournalError::Corrupt {
            segment, offset, ..
        } => {
            assert_eq!(segment, seg);
            assert_eq!(offset, at as u64);
        }
        other => panic!("expected Corrupt, got {other}"),
    }
}

#[test]
fn a_new_keyring_re_encrypts_the_log_so_the_old_key_can_go() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) =
        SealedAuditLog::open(tmp.path(), AUDIT_PREFIX, &ring("1", 3), &options()).unwrap();
    log.record(&event(0)).unwrap();
    // The new keyring alone: the log still reads its old segments with the key it had.
    let report = log.set_keyring(&ring("2", 5)).unwrap();
    assert_eq!(report.key_id, "2");
    assert!(!report.segments_rewritten.is_empty());
    log.record(&event(1)).unwrap();
    drop(log);
    let records = read_audit_dir(tmp.path(), &ring("2", 5)).unwrap();
    assert_eq!(key_ids(&records), ["pk_secretkeyid0", "pk_secretkeyid1"]);
}
