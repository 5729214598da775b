//! verify, dump, export, config.

use super::*;
use crate::{dump, event_json, export_jsonl, verify, verify_log, JournalError, LogOptions};
use portcullis_types::{EventKind, RejectReason};

fn sample(dir: &std::path::Path) -> MasterKeyringAlias {
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir), &k).unwrap();
    write_batches(&mut w, 0, &[20; 6]);
    let mut e = fill(1);
    w.append(&JournalRecord::Event(e)).unwrap();
    e.kind = EventKind::Rejected(RejectReason::PriceBand);
    e.cl_ord_id = portcullis_types::ClOrdId::new(br#"q"uote\1"#).unwrap();
    w.append(&JournalRecord::Event(e)).unwrap();
    w.append(&JournalRecord::InstrumentStatus {
        instrument: portcullis_types::InstrumentId(3),
        status: portcullis_types::InstrumentStatus::Halted,
    })
    .unwrap();
    w.commit().unwrap();
    w.write_snapshot(Seq(50), &[0xab; 32], b"state").unwrap();
    drop(w);
    k
}

type MasterKeyringAlias = portcullis_auth::MasterKeyring;

#[test]
fn verify_checks_and_counts_everything_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let k = sample(dir.path());
    let v = verify(dir.path(), &k).unwrap();
    assert_eq!(v.segments, segments(dir.path()).len());
    assert_eq!((v.batches, v.records), (7, 123));
    assert_eq!((v.first_seq, v.last_seq), (Seq(1), Seq(123)));
    assert_eq!((v.commands, v.events, v.control), (120, 2, 1));
    assert_eq!(v.key_ids, ["k1"]);
    assert_eq!(v.snapshots.len(), 1);
    assert_eq!(v.snapshots[0].seq, Seq(50));
    assert_eq!(v.snapshots[0].state_hash, "ab".repeat(32));
    assert!(v.torn_tail.is_none());
    let total: u64 = segments(dir.path())
        .iter()
        .map(|s| std::fs::metadata(s).unwrap().len())
        .sum();
    assert_eq!(v.bytes, total);
    let text = v.to_string();
    assert!(
        text.contains("7 batch(es), 123 record(s) (seq 1..=123)"),
        "{text}"
    );
    assert!(
        text.contains("120 command(s), 2 event(s), 1 control"),
        "{text}"
    );
    // A torn tail is reported, not cut.
    let seg = segments(dir.path()).pop().unwrap();
    let b = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &b[..b.len() - 5]).unwrap();
    let v = verify(dir.path(), &k).unwrap();
    assert!(v.torn_tail.is_some());
    assert_eq!(std::fs::read(&seg).unwrap().len(), b.len() - 5);
    // Damage is an error naming the file.
    std::fs::write(&seg, &b).unwrap();
    flip(&segments(dir.path())[0], 200, 1);
    assert!(matches!(
        verify(dir.path(), &k),
        Err(JournalError::Corrupt { .. })
    ));
    assert!(verify(dir.path().join("nope"), &k).is_err());
}

#[test]
fn verify_log_checks_other_sealed_logs() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) =
        crate::SealedLogWriter::open(dir.path(), "audit", &k, &LogOptions::default()).unwrap();
    for i in 0..10 {
        w.append(format!("line {i}").as_bytes()).unwrap();
    }
    w.close().unwrap();
    let v = verify_log(dir.path(), "audit", &k).unwrap();
    assert_eq!((v.records, v.batches, v.commands), (10, 1, 0));
}

#[test]
fn dump_prints_one_decrypted_line_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let k = sample(dir.path());
    let mut out = Vec::new();
    assert_eq!(dump(dir.path(), &k, &mut out).unwrap(), 123);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 123);
    assert!(lines[0]
        .starts_with("1 new_order session=1 account=7 instrument=3 cl_ord_id=ORD-0 side=buy"));
    assert!(lines[121].starts_with("122 event rejected reason=\"price outside the allowed band\""));
    assert_eq!(
        lines[122],
        "123 instrument_status instrument=3 status=halted"
    );
}

#[test]
fn export_writes_one_line_per_execution_when_two_sessions_were_told() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    // A cancel by OrderID from session 2: its answer, then the order's own session's report.
    let mut requester = fill(1);
    requester.kind = EventKind::Canceled;
    requester.session = portcullis_types::SessionId(2);
    let owner = portcullis_types::Event {
        session: portcullis_types::SessionId(1),
        ..requester
    };
    let next = fill(2);
    for e in [requester, owner, next] {
        w.append(&JournalRecord::Event(e)).unwrap();
    }
    w.commit().unwrap();
    drop(w);
    let mut out = Vec::new();
    assert_eq!(export_jsonl(dir.path(), &k, &mut out).unwrap(), 2);
    let rows: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        (rows[0]["type"].as_str(), rows[0]["session"].as_u64()),
        (Some("canceled"), Some(2))
    );
    assert_eq!(rows[1]["order_id"], 1002);
}

#[test]
fn export_writes_events_as_json_lines_with_exact_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let k = sample(dir.path());
    let mut out = Vec::new();
    assert_eq!(export_jsonl(dir.path(), &k, &mut out).unwrap(), 2);
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["seq"], 121);
    assert_eq!(rows[0]["type"], "fill");
    assert_eq!(rows[0]["order_id"], 1001);
    assert_eq!(rows[0]["price"], "10050");
    assert_eq!(rows[0]["ts_ns"], "1700000000123456789");
    assert_eq!(rows[0]["cl_ord_id"], "ORD-1");
    assert!(rows[0].get("reason").is_none());
    assert_eq!(rows[1]["type"], "rejected");
    assert_eq!(rows[1]["reason"], "price outside the allowed band");
    assert_eq!(
        rows[1]["cl_ord_id"], r#"q"uote\1"#,
        "escaped and read back exactly"
    );
    let mut one = Vec::new();
    event_json(Seq(1), &fill(2), &mut one);
    assert!(one.starts_with(b"{\"seq\":1,\"type\":\"fill\""));
}

#[test]
fn config_reads_every_fsync_form_and_refuses_unknown_keys_and_bad_values() {
    let c: JournalConfig = toml::from_str("dir = \"/data/j\"").unwrap();
    assert_eq!(
        c.fsync,
        FsyncPolicy::Always,
        "the default acknowledges only durable records"
    );
    assert_eq!((c.segment_bytes, c.snapshot_every), (64 << 20, 100_000));
    assert!(c.validate().is_ok());
    let c: JournalConfig = toml::from_str("fsync = \"never\"").unwrap();
    assert_eq!(
        (c.fsync, c.dir.to_str().unwrap()),
        (FsyncPolicy::Never, "var/journal")
    );
    let c: JournalConfig = toml::from_str("fsync = { interval_ms = 5 }").unwrap();
    assert_eq!(c.fsync, FsyncPolicy::IntervalMs(5));
    let c: JournalConfig =
        toml::from_str("fsync = \"always\"\nsegment_bytes = 1048576\nsnapshot_every = 0").unwrap();
    assert_eq!(
        (c.fsync, c.segment_bytes, c.snapshot_every),
        (FsyncPolicy::Always, 1 << 20, 0)
    );
    assert!(toml::from_str::<JournalConfig>("fsink = \"always\"").is_err());
    assert!(toml::from_str::<JournalConfig>("fsync = \"sometimes\"").is_err());
    assert!(toml::from_str::<JournalConfig>("fsync = { interval_ms = 5, x = 1 }").is_err());
    for bad in [
        "segment_bytes = 100",
        "fsync = { interval_ms = 0 }",
        "dir = \"\"",
    ] {
        let c: JournalConfig = toml::from_str(bad).unwrap();
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("journal."), "{bad}: {err}");
    }
    // open() validates.
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_bytes = 1;
    assert!(matches!(
        JournalWriter::open(&c, &ring("k", 1)),
        Err(JournalError::Config(_))
    ));
}

#[test]
fn reports_display_what_recovery_did() {
    let dir = tempfile::tempdir().unwrap();
    let k = sample(dir.path());
    let seg = segments(dir.path()).pop().unwrap();
    let b = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &b[..b.len() - 5]).unwrap();
    let reader = JournalReader::open(dir.path(), &k).unwrap();
    let text = reader.report().to_string();
    assert!(text.contains("records 1..=120"), "{text}");
    assert!(text.contains("torn tail in"), "{text}");
    assert!(text.contains("bytes cut"), "{text}");
}
