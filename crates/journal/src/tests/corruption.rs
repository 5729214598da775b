//! Damage anywhere but a torn tail stops recovery with the file and the offset; no file
//! content panics the reader or yields a wrong record.

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::JournalError;

/// A journal of 3 segments, several batches each. Returns the records.
fn three_segments(dir: &Path) -> Vec<JournalRecord> {
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir), &k).unwrap();
    let written = write_batches(&mut w, 0, &[20; 9]);
    drop(w);
    assert_eq!(segments(dir).len(), 3);
    written
}

fn corrupt_at(err: JournalError) -> (PathBuf, u64, String) {
    match err {
        JournalError::Corrupt {
            segment,
            offset,
            detail,
        } => (segment, offset, detail),
        other => panic!("expected Corrupt, got {other}"),
    }
}

/// The region of a batch a flipped bit lands in.
#[derive(Debug, Clone, Copy)]
enum Region {
    BatchHeader,
    Ciphertext,
    Tag,
}

fn flip_in_batch(seg: &Path, batch: usize, region: Region) -> u64 {
    let (_, _, batches) = layout(seg);
    let (off, len) = batches[batch];
    let at = match region {
        Region::BatchHeader => off + 5,
        Region::Ciphertext => off + 40 + 9,
        Region::Tag => off + len - 3,
    };
    flip(seg, at, 0x10);
    off as u64
}

#[test]
fn a_flipped_bit_in_a_middle_batch_stops_with_its_segment_and_offset() {
    for region in [Region::BatchHeader, Region::Ciphertext, Region::Tag] {
        for seg_index in [0usize, 1, 2] {
            let dir = tempfile::tempdir().unwrap();
            three_segments(dir.path());
            let seg = segments(dir.path())[seg_index].clone();
            // Batch 1 of 3: never the log's last batch.
            let off = flip_in_batch(&seg, 1, region);
            let err = replay_all(dir.path(), &ring("k1", 1)).unwrap_err();
            let text = err.to_string();
            let (segment, offset, detail) = corrupt_at(err);
            assert_eq!(segment, seg, "{region:?} in segment {seg_index}");
            assert_eq!(offset, off, "{region:?}: {detail}");
            assert!(
                text.contains(&format!("corrupt at byte offset {off}")),
                "{text}"
            );
            assert!(
                text.contains(seg.file_name().unwrap().to_str().unwrap()),
                "{text}"
            );
        }
    }
}

#[test]
fn records_before_the_damage_are_returned_then_the_replay_stops() {
    let dir = tempfile::tempdir().unwrap();
    let written = three_segments(dir.path());
    let seg = segments(dir.path())[1].clone();
    flip_in_batch(&seg, 0, Region::Ciphertext);
    let reader = JournalReader::open(dir.path(), &ring("k1", 1)).unwrap();
    let mut ok = Vec::new();
    let mut errors = 0;
    for item in reader.replay(Seq(0)).unwrap() {
        match item {
            Ok((_, r)) => ok.push(r),
            Err(_) => errors += 1,
        }
    }
    assert_eq!(errors, 1, "the iteration ends at the first error");
    assert_eq!(ok, written[..ok.len()]);
    assert_eq!(ok.len(), 60, "all of segment 0 (3 batches of 20)");
}

#[test]
fn a_flipped_bit_in_a_segment_header_stops_the_open() {
    let header_len = 77;
    for seg_index in [0usize, 1, 2] {
        for at in [0usize, 9, 12, 19, 22, 30, 35, 45, 60, 75] {
            let dir = tempfile::tempdir().unwrap();
            three_segments(dir.path());
            let seg = segments(dir.path())[seg_index].clone();
            flip(&seg, at, 0x01);
            let err = JournalReader::open(dir.path(), &ring("k1", 1)).unwrap_err();
            let (segment, offset, detail) = corrupt_at(err);
            assert_eq!(segment, seg);
            assert!(
                (offset as usize) < header_len,
                "byte {at}: offset {offset}: {detail}"
            );
        }
    }
}

#[test]
fn a_flipped_bit_in_the_last_batch_is_corruption_not_a_torn_tail() {
    // A complete batch may have been acknowledged: it is never silently dropped.
    for region in [Region::BatchHeader, Region::Ciphertext, Region::Tag] {
        let dir = tempfile::tempdir().unwrap();
        three_segments(dir.path());
        let seg = segments(dir.path())[2].clone();
        let (_, _, batches) = layout(&seg);
        let off = flip_in_batch(&seg, batches.len() - 1, region);
        let (segment, offset, _) =
            corrupt_at(JournalReader::open(dir.path(), &ring("k1", 1)).unwrap_err());
        assert_eq!((segment, offset), (seg.clone(), off), "{region:?}");
        // Nothing was cut.
        let (_, _, after) = layout(&seg);
        assert_eq!(after.len(), batches.len());
    }
}

#[test]
fn a_missing_batch_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    three_segments(dir.path());
    let seg = segments(dir.path())[0].clone();
    let (_, _, batches) = layout(&seg);
    let mut b = fs::read(&seg).unwrap();
    let (off, len) = batches[1];
    b.drain(off..off + len);
    fs::write(&seg, b).unwrap();
    let (segment, offset, detail) = corrupt_at(replay_all(dir.path(), &ring("k1", 1)).unwrap_err());
    assert_eq!(segment, seg);
    assert_eq!(offset as usize, off + 16, "the batch number field");
    assert!(detail.contains("missing or out of order"), "{detail}");
}

#[test]
fn reordered_batches_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    three_segments(dir.path());
    let seg = segments(dir.path())[1].clone();
    let (_, _, batches) = layout(&seg);
    let b = fs::read(&seg).unwrap();
    let (o1, l1) = batches[1];
    let (o2, l2) = batches[2];
    let mut swapped = b[..o1].to_vec();
    swapped.extend_from_slice(&b[o2..o2 + l2]);
    swapped.extend_from_slice(&b[o1..o1 + l1]);
    swapped.extend_from_slice(&b[o2 + l2..]);
    fs::write(&seg, swapped).unwrap();
    let (segment, offset, _) = corrupt_at(replay_all(dir.path(), &ring("k1", 1)).unwrap_err());
    assert_eq!((segment, offset as usize), (seg, o1 + 16));
}

#[test]
fn a_batch_relabelled_to_fit_elsewhere_fails_authentication() {
    // Copy batch 0 of segment 1 over batch 0 of segment 0 and fix up every clear header field
    // (first seq, nonce, CRC) as an attacker could: the associated data still binds the batch
    // to its segment, so the tag fails.
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    for b in 0..4 {
        // Fixed-size records: batches of equal length.
        for i in 0..100 {
            w.append(&JournalRecord::Clock {
                now_ns: b * 1000 + i,
            })
            .unwrap();
        }
        w.commit().unwrap();
    }
    drop(w);
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 2);
    let (_, _, b0) = layout(&segs[0]);
    let (_, _, b1) = layout(&segs[1]);
    let mut dst = fs::read(&segs[0]).unwrap();
    let src = fs::read(&segs[1]).unwrap();
    let (od, ld) = b0[0];
    let (os, ls) = b1[0];
    assert_eq!(ld, ls);
    dst[od..od + ld].copy_from_slice(&src[os..os + ls]);
    let mut h = [0u8; crate::format::BATCH_HEADER];
    h.copy_from_slice(&dst[od..od + crate::format::BATCH_HEADER]);
    let mut parsed = crate::format::BatchHeader::parse(&h).unwrap();
    parsed.first_seq = 1;
    parsed.nonce = crate::format::nonce(0, 0);
    parsed.write(&mut dst[od..od + crate::format::BATCH_HEADER]);
    fs::write(&segs[0], dst).unwrap();
    let (segment, offset, detail) = corrupt_at(replay_all(dir.path(), &ring("k1", 1)).unwrap_err());
    assert_eq!((segment, offset as usize), (segs[0].clone(), od));
    assert!(detail.contains("authentication failed"), "{detail}");
}

#[test]
fn a_missing_middle_segment_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    three_segments(dir.path());
    let segs = segments(dir.path());
    fs::remove_file(&segs[1]).unwrap();
    let (segment, _, detail) =
        corrupt_at(JournalReader::open(dir.path(), &ring("k1", 1)).unwrap_err());
    assert_eq!(segment, segs[2]);
    assert!(detail.contains("a segment is missing"), "{detail}");
}

#[test]
fn a_truncated_segment_that_is_not_the_last_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    three_segments(dir.path());
    let seg = segments(dir.path())[1].clone();
    let b = fs::read(&seg).unwrap();
    fs::write(&seg, &b[..b.len() - 10]).unwrap();
    let (segment, _, detail) = corrupt_at(replay_all(dir.path(), &ring("k1", 1)).unwrap_err());
    assert_eq!(segment, seg);
    assert!(detail.contains("runs past the end of the file"), "{detail}");
}

#[test]
fn a_renamed_segment_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    three_segments(dir.path());
    let seg = segments(dir.path())[2].clone();
    let renamed = dir.path().join("journal-00000000000000000999.seg");
    fs::rename(&seg, &renamed).unwrap();
    let (segment, _, detail) =
        corrupt_at(JournalReader::open(dir.path(), &ring("k1", 1)).unwrap_err());
    assert_eq!(segment, renamed);
    assert!(detail.contains("does not match the file name"), "{detail}");
}

/// The records of `dir`, or the error, without panicking.
fn try_replay(dir: &Path, read_only: bool) -> Result<Vec<JournalRecord>, JournalError> {
    let k = ring("k1", 1);
    let reader = if read_only {
        JournalReader::open_read_only(dir, &k)?
    } else {
        JournalReader::open(dir, &k)?
    };
    let after = Seq(reader.first_seq().0 - 1);
    let v = reader.replay(after)?.map(|r| r.map(|(_, r)| r)).collect();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn damaged_segments_never_panic_and_never_yield_a_wrong_record(
        seg_index in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let written = three_segments(dir.path());
        let seg = segments(dir.path())[seg_index].clone();
        let mut b = fs::read(&seg).unwrap();
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        if let Some(c) = cut {
            let c = c.index(b.len());
            b.truncate(c);
        }
        fs::write(&seg, &b).unwrap();
        for read_only in [true, false] {
            if let Ok(got) = try_replay(dir.path(), read_only) {
                // Whatever is returned is exactly what was written (a prefix, if a tail
                // was cut).
                prop_assert_eq!(&got[..], &written[..got.len()]);
            }
        }
    }

    #[test]
    fn arbitrary_files_never_panic_the_reader(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        with_magic in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut b = bytes;
        if with_magic {
            let mut h = crate::format::SEGMENT_MAGIC.to_vec();
            h.extend_from_slice(&[1, 0, 7]);
            h.extend_from_slice(b"journal");
            h.extend_from_slice(&b);
            b = h;
        }
        fs::write(dir.path().join("journal-00000000000000000001.seg"), &b).unwrap();
        let _ = try_replay(dir.path(), true);
        let _ = try_replay(dir.path(), false);
        fs::write(dir.path().join("journal-00000000000000000001.snap"), &b).unwrap();
        let _ = JournalReader::open_read_only(dir.path(), &ring("k1", 1)).map(|r| r.latest_snapshot());
    }
}
