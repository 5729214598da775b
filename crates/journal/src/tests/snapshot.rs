//! Snapshots: atomic writes, authentication, replay after them, compaction.

use std::fs;

use super::*;
use crate::JournalError;

#[test]
fn a_snapshot_is_stored_encrypted_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[10]);
    assert_eq!(w.latest_snapshot().unwrap(), None);
    let state = b"the core's state bytes".repeat(100);
    let path = w.write_snapshot(Seq(7), &[5; 32], &state).unwrap();
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        "journal-00000000000000000007.snap"
    );
    assert_eq!(w.durable_seq(), Seq(10), "the journal was fsynced first");
    let snap = w.latest_snapshot().unwrap().unwrap();
    assert_eq!(
        (snap.seq, snap.state_hash, &snap.state),
        (Seq(7), [5; 32], &state)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only file");
    }
    let raw = fs::read(&path).unwrap();
    assert!(!raw.windows(10).any(|w| w == &b"core's sta"[..]));
    // No temporary file is left.
    assert!(fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_str()
        .unwrap()
        .ends_with(".tmp")));
    drop(w);
    let reader = JournalReader::open(dir.path(), &k).unwrap();
    assert_eq!(reader.latest_snapshot().unwrap().unwrap().state, state);
    let after: Vec<_> = reader
        .replay(Seq(7))
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(after, [Seq(8), Seq(9), Seq(10)]);
}

#[test]
fn an_interrupted_snapshot_write_leaves_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[10]);
    w.write_snapshot(Seq(5), &[1; 32], b"five").unwrap();
    drop(w);
    // A crash during the next snapshot: only its temporary file exists, half written.
    let tmp = dir.path().join("journal-00000000000000000009.snap.tmp");
    fs::write(&tmp, b"PCLSSNP\0half").unwrap();
    let reader = JournalReader::open(dir.path(), &k).unwrap();
    assert_eq!(reader.report().removed_temp_files, vec![tmp]);
    let snap = reader.latest_snapshot().unwrap().unwrap();
    assert_eq!((snap.seq, &snap.state[..]), (Seq(5), &b"five"[..]));
}

#[test]
fn a_damaged_snapshot_is_an_error_not_a_silent_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[10]);
    w.write_snapshot(Seq(3), &[1; 32], b"three").unwrap();
    let p = w.write_snapshot(Seq(6), &[2; 32], b"six").unwrap();
    drop(w);
    let len = fs::metadata(&p).unwrap().len() as usize;
    for at in [0, 20, 40, 70, 100, len - 20, len - 1] {
        flip(&p, at, 0x04);
        let reader = JournalReader::open(dir.path(), &k).unwrap();
        let err = reader.latest_snapshot().unwrap_err();
        assert!(
            matches!(&err, JournalError::Corrupt { segment, .. } if *segment == p),
            "{at}: {err}"
        );
        flip(&p, at, 0x04);
    }
    let b = fs::read(&p).unwrap();
    fs::write(&p, &b[..b.len() - 1]).unwrap();
    let err = JournalReader::open(dir.path(), &k)
        .unwrap()
        .latest_snapshot()
        .unwrap_err();
    assert!(err.to_string().contains("declares"), "{err}");
    // With the wrong key: WrongKey.
    fs::write(&p, &b).unwrap();
    let reader = JournalReader::open_read_only(dir.path(), &k).unwrap();
    assert!(reader.latest_snapshot().is_ok());
}

#[test]
fn a_snapshot_cannot_get_ahead_of_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[4]);
    assert!(matches!(
        w.write_snapshot(Seq(5), &[0; 32], b""),
        Err(JournalError::SnapshotAhead { .. })
    ));
    // Appended but not committed is fine: the snapshot commits and fsyncs first.
    w.append(&new_order(9)).unwrap();
    w.write_snapshot(Seq(5), &[0; 32], b"s").unwrap();
    assert_eq!(w.durable_seq(), Seq(5));
    drop(w);
    // A lost last segment shows up: the snapshot is beyond the last record.
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 10, &[2]);
    w.write_snapshot(Seq(7), &[0; 32], b"s").unwrap();
    drop(w);
    fs::remove_file(segments(dir.path()).pop().unwrap()).unwrap();
    let err = JournalReader::open(dir.path(), &k).unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::SnapshotAhead {
                snapshot: Seq(7),
                last: Seq(5),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn compaction_deletes_only_segments_wholly_before_the_latest_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    let written = write_batches(&mut w, 0, &[20; 12]);
    let segs = segments(dir.path());
    let firsts: Vec<u64> = segs.iter().map(|s| layout(s).0.first_seq).collect();
    assert!(firsts.len() >= 4);
    // Nothing to compact without a snapshot.
    assert_eq!(w.compact().unwrap().segments_removed.len(), 0);
    w.write_snapshot(Seq(10), &[1; 32], b"old").unwrap();
    // A snapshot in the middle of segment 2: segments 0 and 1 go, 2 stays.
    let snap_seq = firsts[2] + 3;
    w.write_snapshot(Seq(snap_seq), &[2; 32], b"state").unwrap();
    let report = w.compact().unwrap();
    assert_eq!(report.snapshot_seq, Seq(snap_seq));
    assert_eq!(report.segments_removed, segs[..2].to_vec());
    assert_eq!(report.snapshots_removed, 1);
    assert!(report.bytes_freed > 0);
    drop(w);
    let reader = JournalReader::open(dir.path(), &k).unwrap();
    assert_eq!(reader.first_seq(), Seq(firsts[2]));
    let snap = reader.latest_snapshot().unwrap().unwrap();
    let rest: Vec<_> = reader
        .replay(snap.seq)
        .unwrap()
        .map(|r| r.unwrap().1)
        .collect();
    assert_eq!(rest, written[snap_seq as usize..]);
    assert!(matches!(
        reader.replay(Seq(0)),
        Err(JournalError::Missing { .. })
    ));
    // A snapshot exactly at a segment's last record frees that segment too.
    drop(reader);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    w.write_snapshot(Seq(firsts[3] - 1), &[3; 32], b"edge")
        .unwrap();
    let report = w.compact().unwrap();
    assert_eq!(report.segments_removed, vec![segs[2].clone()]);
    // The last segment is never removed, even when the snapshot covers all of it.
    w.write_snapshot(Seq(240), &[4; 32], b"all").unwrap();
    w.compact().unwrap();
    assert!(!segments(dir.path()).is_empty());
    drop(w);
    let reader = JournalReader::open(dir.path(), &k).unwrap();
    assert_eq!(reader.replay(Seq(240)).unwrap().count(), 0);
}
