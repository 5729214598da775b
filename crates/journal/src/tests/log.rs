//! Framing, group commit, roll-over, recovery of torn tails, locking, sealed logs.

use std::fs;
use std::time::Duration;

use super::*;
use crate::format::{le_u64, nonce, SEGMENT_MAGIC};
use crate::{JournalError, LogOptions, SealedLogReader, SealedLogWriter, JOURNAL_PREFIX};

#[test]
fn records_come_back_in_order_with_consecutive_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let mut c = config(dir.path());
    c.segment_bytes = 1 << 20;
    let (mut w, report) = JournalWriter::open(&c, &k).unwrap();
    assert_eq!(report.last_seq, Seq(0));
    let mut written = write_batches(&mut w, 0, &[1, 5, 64]);
    let extra = [
        JournalRecord::Event(fill(1)),
        JournalRecord::KillSwitch {
            account: None,
            on: true,
        },
        JournalRecord::Clock { now_ns: 42 },
    ];
    for r in &extra {
        w.append(r).unwrap();
    }
    written.extend(extra);
    assert_eq!(
        w.commit().unwrap(),
        Seq(0),
        "fsync never: nothing durable yet"
    );
    assert_eq!(w.written_seq(), Seq(73));
    drop(w);
    let got = replay_all(dir.path(), &k).unwrap();
    let seqs: Vec<u64> = got.iter().map(|(s, _)| s.0).collect();
    assert_eq!(seqs, (1..=73).collect::<Vec<_>>());
    let recs: Vec<JournalRecord> = got.into_iter().map(|(_, r)| r).collect();
    assert_eq!(recs, written);
}

#[test]
fn the_files_follow_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[3, 2]);
    drop(w);
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 1);
    assert_eq!(
        segs[0].file_name().unwrap().to_str().unwrap(),
        "journal-00000000000000000001.seg"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&segs[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only file");
    }
    let bytes = fs::read(&segs[0]).unwrap();
    assert_eq!(&bytes[..8], SEGMENT_MAGIC);
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 1);
    assert_eq!(&bytes[10..18], b"\x07journal");
    assert_eq!(&bytes[18..21], b"\x02k1");
    let (h, hl, batches) = layout(&segs[0]);
    assert_eq!((h.number, h.first_seq, h.key_id.as_str()), (0, 1, "k1"));
    assert_eq!(hl, 21 + 8 + 4 + 8 + 32 + 4);
    assert_eq!(batches.len(), 2);
    let (off, len) = batches[1];
    assert_eq!(
        off + len,
        bytes.len(),
        "batches are back to back to the end"
    );
    assert_eq!(le_u64(&bytes, off + 4), 4, "second batch starts at seq 4");
    assert_eq!(le_u32(&bytes, off + 12), 2, "two records");
    assert_eq!(le_u64(&bytes, off + 16), 1, "batch number 1");
    assert_eq!(bytes[off + 24..off + 36], nonce(0, 1));
    // Ciphertext = records ([len][crc][payload] each, 49-byte new orders) + 16-byte tag.
    assert_eq!(le_u32(&bytes, off) as usize, 2 * (8 + 49) + 16);
}

#[test]
fn durable_seq_only_advances_at_commit_and_covers_the_whole_drain() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let mut c = config(dir.path());
    c.fsync = FsyncPolicy::Always;
    let (mut w, _) = JournalWriter::open(&c, &k).unwrap();
    for i in 0..10 {
        assert_eq!(w.append(&new_order(i)).unwrap(), Seq(i + 1));
        assert_eq!(w.durable_seq(), Seq(0));
        assert_eq!(w.ack_seq(), Seq(0), "no acknowledgement before the fsync");
    }
    assert_eq!(w.log().pending(), 10);
    assert_eq!(w.commit().unwrap(), Seq(10));
    assert_eq!(
        (w.durable_seq(), w.written_seq(), w.ack_seq()),
        (Seq(10), Seq(10), Seq(10))
    );
    w.append(&new_order(10)).unwrap();
    assert_eq!(w.durable_seq(), Seq(10));
    assert_eq!(w.commit().unwrap(), Seq(11));
    // One batch per commit: the drain of 10 records is one batch.
    drop(w);
    let (_, _, batches) = layout(&segments(dir.path())[0]);
    assert_eq!(batches.len(), 2);
}

#[test]
fn never_policy_writes_without_fsync_and_releases_acks_when_written() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[4]);
    assert_eq!(
        (w.durable_seq(), w.written_seq(), w.ack_seq()),
        (Seq(0), Seq(4), Seq(4))
    );
    assert_eq!(w.sync().unwrap(), Seq(4));
    assert_eq!(w.sync_deadline(), None);
}

#[test]
fn interval_policy_fsyncs_once_the_interval_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let mut c = config(dir.path());
    c.fsync = FsyncPolicy::IntervalMs(50);
    let (mut w, _) = JournalWriter::open(&c, &k).unwrap();
    w.append(&new_order(0)).unwrap();
    // Opened just now: the interval has not passed, the commit writes without fsync.
    assert_eq!(w.commit().unwrap(), Seq(0));
    assert_eq!(w.ack_seq(), Seq(1));
    let deadline = w.sync_deadline().expect("a record waits for its fsync");
    assert_eq!(w.poll().unwrap(), Seq(0));
    std::thread::sleep(
        deadline.saturating_duration_since(std::time::Instant::now()) + Duration::from_millis(5),
    );
    assert_eq!(w.poll().unwrap(), Seq(1));
    assert_eq!(w.sync_deadline(), None);
}

#[test]
fn segments_roll_over_at_the_configured_size_and_reopens_start_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    // 4 KiB segments, ~1.2 KiB batches: a few batches per segment.
    let written = write_batches(&mut w, 0, &[20; 12]);
    drop(w);
    let segs = segments(dir.path());
    assert!(segs.len() >= 4, "{} segments", segs.len());
    for (n, s) in segs.iter().enumerate() {
        let (h, _, batches) = layout(s);
        assert_eq!(h.number as usize, n);
        assert!(!batches.is_empty());
        assert!(fs::metadata(s).unwrap().len() <= crate::MIN_SEGMENT_BYTES);
    }
    // A reopen never appends to an existing segment.
    let (mut w, report) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    assert_eq!(report.last_seq, Seq(240));
    assert_eq!(report.segments, segs.len());
    let more = write_batches(&mut w, 240, &[3]);
    drop(w);
    let after = segments(dir.path());
    assert_eq!(after.len(), segs.len() + 1);
    assert_eq!(
        after.last().unwrap().file_name().unwrap().to_str().unwrap(),
        "journal-00000000000000000241.seg"
    );
    let all: Vec<JournalRecord> = replay_all(dir.path(), &k)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(all, [written, more].concat());
}

#[test]
fn a_batch_larger_than_a_segment_still_goes_into_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    let written = write_batches(&mut w, 0, &[200, 1]);
    drop(w);
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 2);
    assert_eq!(replay_all(dir.path(), &k).unwrap().len(), written.len());
}

#[test]
fn truncated_tail_at_every_byte_offset_of_the_last_batch_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    let written = write_batches(&mut w, 0, &[3, 4, 2]);
    drop(w);
    let seg = segments(dir.path()).pop().unwrap();
    let full = fs::read(&seg).unwrap();
    let (_, _, batches) = layout(&seg);
    let (last_off, last_len) = *batches.last().unwrap();
    assert_eq!(last_off + last_len, full.len());
    for cut in last_off + 1..full.len() {
        fs::write(&seg, &full[..cut]).unwrap();
        let reader = JournalReader::open(dir.path(), &k).unwrap();
        let torn = reader
            .report()
            .torn_tail
            .clone()
            .expect("torn tail reported");
        assert_eq!(torn.segment, seg);
        assert_eq!(torn.offset as usize, last_off, "cut {cut}");
        assert_eq!(torn.truncated_bytes as usize, cut - last_off);
        assert!(torn.cut && !torn.removed);
        assert_eq!(reader.last_seq(), Seq(7));
        assert_eq!(
            fs::metadata(&seg).unwrap().len() as usize,
            last_off,
            "file truncated"
        );
        let got: Vec<_> = reader
            .replay(Seq(0))
            .unwrap()
            .map(|r| r.unwrap().1)
            .collect();
        assert_eq!(got, written[..7]);
    }
    // The writer goes on after a cut, in a new segment, with continuous sequence numbers.
    fs::write(&seg, &full[..full.len() - 1]).unwrap();
    let reader = JournalReader::open(dir.path(), &k).unwrap();
    let mut w = reader.into_writer(&config(dir.path())).unwrap();
    assert_eq!(w.next_seq(), Seq(8));
    let more = write_batches(&mut w, 100, &[2]);
    drop(w);
    assert_eq!(segments(dir.path()).len(), 2);
    let all: Vec<_> = replay_all(dir.path(), &k).unwrap();
    assert_eq!(
        all.iter().map(|(s, _)| s.0).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    assert_eq!(
        all.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        [&written[..7], &more].concat()
    );
}

#[test]
fn a_zero_filled_tail_is_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[3, 4]);
    drop(w);
    let seg = segments(dir.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    let mut b = fs::read(&seg).unwrap();
    b.extend_from_slice(&[0u8; 700]);
    fs::write(&seg, b).unwrap();
    let reader = JournalReader::open(dir.path(), &k).unwrap();
    let torn = reader.report().torn_tail.clone().unwrap();
    assert_eq!((torn.offset, torn.truncated_bytes), (len, 700));
    assert_eq!(reader.last_seq(), Seq(7));
}

#[test]
fn a_last_segment_cut_inside_its_header_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[3]);
    drop(w);
    // A crash while a new segment was being created (without the rename the writer uses).
    let first = fs::read(&segments(dir.path())[0]).unwrap();
    let next = dir.path().join("journal-00000000000000000004.seg");
    for cut in [0, 1, 9, 30, 70] {
        fs::write(&next, &first[..cut]).unwrap();
        let reader = JournalReader::open(dir.path(), &k).unwrap();
        let torn = reader.report().torn_tail.clone().unwrap();
        assert!(torn.removed && torn.cut, "cut {cut}");
        assert_eq!(
            (torn.segment.as_path(), torn.truncated_bytes),
            (next.as_path(), cut as u64)
        );
        assert!(!next.exists());
        assert_eq!(reader.last_seq(), Seq(3));
    }
}

#[test]
fn an_empty_last_segment_is_replaced_not_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[3, 2]);
    drop(w);
    // Cut the only batch of a second segment: header only remains.
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 5, &[2]);
    drop(w);
    let second = segments(dir.path())[1].clone();
    let (h_before, hl, _) = layout(&second);
    let b = fs::read(&second).unwrap();
    fs::write(&second, &b[..hl + 10]).unwrap();
    let (mut w, report) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    assert_eq!(report.last_seq, Seq(5));
    write_batches(&mut w, 9, &[1]);
    drop(w);
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 2, "same name, replaced");
    let (h_after, _, batches) = layout(&segs[1]);
    assert_eq!((h_after.number, h_after.first_seq), (h_before.number, 6));
    assert_ne!(
        h_after.salt, h_before.salt,
        "a new salt, so a new key: no nonce reuse"
    );
    assert_eq!(batches.len(), 1);
    assert_eq!(replay_all(dir.path(), &k).unwrap().len(), 6);
}

#[test]
fn a_read_only_open_reports_a_torn_tail_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[3, 4]);
    drop(w);
    let seg = segments(dir.path()).pop().unwrap();
    let b = fs::read(&seg).unwrap();
    fs::write(&seg, &b[..b.len() - 3]).unwrap();
    let reader = JournalReader::open_read_only(dir.path(), &k).unwrap();
    let torn = reader.report().torn_tail.clone().unwrap();
    assert!(!torn.cut);
    assert_eq!(reader.replay(Seq(0)).unwrap().count(), 3);
    assert_eq!(fs::metadata(&seg).unwrap().len() as usize, b.len() - 3);
    assert!(matches!(
        reader.into_writer(&config(dir.path())),
        Err(JournalError::Config(_))
    ));
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    let err = JournalWriter::open(&config(dir.path()), &k).unwrap_err();
    assert!(matches!(err, JournalError::Locked { .. }), "{err}");
    assert!(matches!(
        JournalReader::open(dir.path(), &k),
        Err(JournalError::Locked { .. })
    ));
    // Read-only tools still work.
    assert!(JournalReader::open_read_only(dir.path(), &k).is_ok());
    drop(w);
    assert!(JournalWriter::open(&config(dir.path()), &k).is_ok());
}

#[test]
fn leftover_temporary_files_are_removed_at_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[1]);
    drop(w);
    let tmp = dir.path().join("journal-00000000000000000002.seg.tmp");
    fs::write(&tmp, b"partial").unwrap();
    let other = dir.path().join("notes.tmp");
    fs::write(&other, b"not ours").unwrap();
    let reader = JournalReader::open(dir.path(), &k).unwrap();
    assert_eq!(reader.report().removed_temp_files, vec![tmp.clone()]);
    assert!(!tmp.exists() && other.exists());
}

#[test]
fn replay_can_start_after_any_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    let written = write_batches(&mut w, 0, &[20; 12]);
    drop(w);
    let reader = JournalReader::open(dir.path(), &k).unwrap();
    for after in [0u64, 1, 19, 20, 21, 100, 239, 240] {
        let got: Vec<_> = reader
            .replay(Seq(after))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got.len() as u64, 240 - after);
        if let Some((s, r)) = got.first() {
            assert_eq!(*s, Seq(after + 1));
            assert_eq!(r, &written[after as usize]);
        }
    }
    assert!(matches!(
        reader.replay(Seq(241)),
        Err(JournalError::SnapshotAhead { .. })
    ));
}

#[test]
fn sealed_logs_with_other_prefixes_share_a_directory_without_mixing() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let opts = LogOptions {
        fsync: FsyncPolicy::Always,
        segment_bytes: 1 << 20,
    };
    let (mut store, _) = SealedLogWriter::open(dir.path(), "fixstore", &k, &opts).unwrap();
    let (mut journal, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    for i in 0..5u32 {
        store
            .append(format!("8=FIX.4.4|34={i}|").as_bytes())
            .unwrap();
    }
    assert_eq!(store.commit().unwrap(), Seq(5));
    write_batches(&mut journal, 0, &[2]);
    drop(store);
    drop(journal);
    let r = SealedLogReader::open(dir.path(), "fixstore", &k).unwrap();
    let mut cur = r.records(Seq(0)).unwrap();
    let mut n = 0;
    while let Some((seq, payload)) = cur.next_record().unwrap() {
        assert_eq!(payload, format!("8=FIX.4.4|34={}|", seq.0 - 1).as_bytes());
        n += 1;
    }
    assert_eq!(n, 5);
    drop(cur);
    drop(r);
    assert_eq!(replay_all(dir.path(), &k).unwrap().len(), 2);
    // A fixstore segment renamed into the journal is refused by its header.
    let store_seg = crate::format::list(dir.path(), "fixstore", ".seg").unwrap()[0]
        .1
        .clone();
    let fake = dir.path().join("journal-00000000000000000003.seg");
    fs::copy(&store_seg, &fake).unwrap();
    let err = JournalReader::open(dir.path(), &k).unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { segment, .. } if *segment == fake),
        "{err}"
    );
    assert!(err.to_string().contains("\"fixstore\" log"), "{err}");
    assert!(crate::format::check_prefix("Bad/Prefix").is_err());
    assert!(SealedLogReader::open(dir.path(), "../x", &k).is_err());
}

#[test]
fn oversized_records_are_refused_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut store, _) =
        SealedLogWriter::open(dir.path(), "audit", &k, &LogOptions::default()).unwrap();
    let big = vec![0u8; crate::format::MAX_RECORD + 1];
    assert!(matches!(
        store.append(&big),
        Err(JournalError::TooLarge { .. })
    ));
    assert_eq!(store.append(b"ok").unwrap(), Seq(1));
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    let r = JournalRecord::Limits {
        account: None,
        data: vec![0; crate::MAX_LIMITS_BYTES + 1],
    };
    assert!(matches!(w.append(&r), Err(JournalError::TooLarge { .. })));
    assert_eq!(w.append(&new_order(1)).unwrap(), Seq(1));
}

#[test]
fn big_drains_are_sealed_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let mut c = config(dir.path());
    c.segment_bytes = 64 << 20;
    let (mut w, _) = JournalWriter::open(&c, &k).unwrap();
    let n = 40_000u64; // ~2.6 MB of records in one drain
    for i in 0..n {
        w.append(&new_order(i)).unwrap();
    }
    assert!(w.written_seq() > Seq(0), "sealed before the commit");
    assert_eq!(w.durable_seq(), Seq(0), "but not fsynced");
    w.commit().unwrap();
    drop(w);
    let (_, _, batches) = layout(&segments(dir.path())[0]);
    assert!(batches.len() >= 3);
    assert!(batches
        .iter()
        .all(|&(_, len)| len <= crate::format::BATCH_SEAL_AT + 200));
    assert_eq!(replay_all(dir.path(), &k).unwrap().len() as u64, n);
}

#[test]
fn reopening_an_empty_journal_starts_at_seq_one() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let sub = dir.path().join("a/b");
    let (w, report) = JournalWriter::open(&config(&sub), &k).unwrap();
    assert_eq!(
        (report.segments, report.first_seq, report.last_seq),
        (0, Seq(1), Seq(0))
    );
    assert_eq!(w.next_seq(), Seq(1));
    assert_eq!(w.close().unwrap(), Seq(0));
    assert!(segments(&sub).is_empty(), "no segment without a batch");
    assert!(replay_all(&sub, &k).unwrap().is_empty());
    let _ = JOURNAL_PREFIX;
}

#[test]
fn a_failed_writer_is_poisoned_and_refuses_further_writes() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut store, _) =
        SealedLogWriter::open(dir.path(), "audit", &k, &LogOptions::default()).unwrap();
    store.append(b"fine").unwrap();
    // A closure that removes bytes from the batch leaves it malformed: the writer stops.
    assert!(store.append_with(|b| b.clear()).is_err());
    for r in [
        store.append(b"x").map(|_| ()),
        store.commit().map(|_| ()),
        store.sync().map(|_| ()),
    ] {
        assert!(matches!(r, Err(JournalError::Poisoned { .. })), "{r:?}");
    }
}

#[test]
fn a_sequence_gap_between_segments_stops_the_replay() {
    use crate::keys::KeySet;
    use crate::segment::SegmentWriter;
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[3]);
    drop(w);
    // A well-formed segment 1 that starts at seq 10: records 4..=9 are missing.
    let keys = KeySet::from_keyring(&k).unwrap();
    let mut seg = SegmentWriter::create(dir.path(), JOURNAL_PREFIX, keys.current(), 1, 10).unwrap();
    let mut buf = vec![0u8; BATCH_HEADER];
    let mut payload = Vec::new();
    new_order(9).encode(&mut payload);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    seg.write_batch(&mut buf, 10, 1).unwrap();
    seg.persist().unwrap();
    let reader = JournalReader::open(dir.path(), &k).unwrap();
    assert_eq!(reader.last_seq(), Seq(10));
    let items: Vec<_> = reader.replay(Seq(0)).unwrap().collect();
    assert_eq!(items.len(), 4);
    let Err(JournalError::Corrupt {
        segment, detail, ..
    }) = &items[3]
    else {
        panic!("{:?}", items[3])
    };
    assert_eq!(segment, &seg.path);
    assert!(detail.contains("records are missing"), "{detail}");
}

#[test]
fn a_log_that_does_not_fsync_starts_write_back_as_it_goes_and_rolls_over_intact() {
    // Several MiB through 2 MiB segments with fsync never: write-back is started every MiB
    // (sync_file_range), segments roll over (fsynced), and everything reads back in order.
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let mut c = config(dir.path());
    c.segment_bytes = 2 << 20;
    let (mut w, _) = JournalWriter::open(&c, &k).unwrap();
    let batches = vec![64usize; 1200];
    let written = write_batches(&mut w, 0, &batches);
    drop(w);
    assert!(
        segments(dir.path()).len() >= 3,
        "{:?}",
        segments(dir.path())
    );
    let got = replay_all(dir.path(), &k).unwrap();
    assert_eq!(got.len(), written.len());
    let recs: Vec<JournalRecord> = got.into_iter().map(|(_, r)| r).collect();
    assert_eq!(recs, written);
}

#[test]
fn commit_may_wait_announces_every_new_segment_and_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let opts = LogOptions {
        fsync: FsyncPolicy::Never,
        segment_bytes: 16 << 10,
    };
    let (mut w, _) = SealedLogWriter::open(dir.path(), "journal", &k, &opts).unwrap();
    assert!(!w.commit_may_wait(0), "nothing to commit");
    assert!(
        w.commit_may_wait(10),
        "the first record creates the first segment"
    );
    w.append(b"first").unwrap();
    w.commit().unwrap();
    assert!(!w.commit_may_wait(0), "nothing to commit");
    assert!(!w.commit_may_wait(100), "a small record fits");
    assert!(
        w.commit_may_wait(16 << 10),
        "a record larger than the rest of the segment"
    );
    // Every roll-over is announced, and only near one does a commit announce waiting.
    let (mut rolls, mut announced) = (0, 0);
    for i in 0..200 {
        w.append(&vec![i as u8; 700]).unwrap();
        let may_wait = w.commit_may_wait(0);
        let before = segments(dir.path()).len();
        w.commit().unwrap();
        let rolled = segments(dir.path()).len() > before;
        assert!(
            !rolled || may_wait,
            "commit {i} started a segment unannounced"
        );
        rolls += usize::from(rolled);
        announced += usize::from(may_wait);
    }
    assert!(rolls >= 5, "{rolls} roll-overs");
    assert_eq!(announced, rolls, "waits announced only for roll-overs");
    drop(w);

    let opts = LogOptions {
        fsync: FsyncPolicy::Always,
        segment_bytes: 1 << 20,
    };
    let (mut w, _) = SealedLogWriter::open(dir.path(), "journal", &k, &opts).unwrap();
    assert!(!w.commit_may_wait(0), "nothing to commit");
    w.append(b"durable").unwrap();
    assert!(w.commit_may_wait(0), "fsync = always: every commit");
    w.commit().unwrap();
    assert!(!w.commit_may_wait(0));
}
