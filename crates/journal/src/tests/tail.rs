//! Following the journal while it is written: every record once, in order, across batches,
//! segments, half-written batches and compaction.

use std::fs;

use super::*;
use crate::{JournalError, JournalTail};

/// Everything the tail has now, as (seq, record).
fn drain(t: &mut JournalTail) -> Vec<(Seq, JournalRecord)> {
    std::iter::from_fn(|| t.next_decoded().unwrap()).collect()
}

fn seqs(v: &[(Seq, JournalRecord)]) -> Vec<u64> {
    v.iter().map(|(s, _)| s.0).collect()
}

#[test]
fn a_tail_returns_each_record_once_as_the_writer_commits_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    // Before anything is written: nothing, and no error.
    let mut t = JournalTail::open(dir.path(), &k, Seq(0)).unwrap();
    assert!(drain(&mut t).is_empty());
    let first = write_batches(&mut w, 0, &[3, 2]);
    let got = drain(&mut t);
    assert_eq!(seqs(&got), [1, 2, 3, 4, 5]);
    assert_eq!(
        got.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        first
    );
    assert!(drain(&mut t).is_empty());
    // Enough to roll over several segments (MIN_SEGMENT_BYTES each), read in pieces.
    let mut all = first;
    let mut seen = got;
    for round in 0..6 {
        all.extend(write_batches(&mut w, all.len() as u64, &[20; 5]));
        seen.extend(drain(&mut t));
        assert_eq!(seen.len(), all.len(), "round {round}");
    }
    assert!(
        segments(dir.path()).len() >= 3,
        "{:?}",
        segments(dir.path())
    );
    assert_eq!(seqs(&seen), (1..=all.len() as u64).collect::<Vec<_>>());
    assert_eq!(seen.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), all);
    assert_eq!(t.position(), Seq(all.len() as u64));
}

#[test]
fn a_tail_opened_after_a_record_starts_after_it_in_whichever_segment_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    let all = write_batches(&mut w, 0, &[20; 30]);
    assert!(segments(dir.path()).len() >= 3);
    for after in [1u64, 57, 300, 599, 600] {
        let mut t = JournalTail::open(dir.path(), &k, Seq(after)).unwrap();
        let got = drain(&mut t);
        assert_eq!(
            seqs(&got),
            (after + 1..=600).collect::<Vec<_>>(),
            "after {after}"
        );
        assert_eq!(
            got.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
            all[after as usize..]
        );
    }
}

#[test]
fn a_half_written_batch_is_read_once_it_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[4, 4, 4]);
    drop(w);
    // A copy of the journal cut in the middle of its last batch, as a reader may see it while
    // the writer's `write` is in progress.
    let seg = segments(dir.path()).pop().unwrap();
    let bytes = fs::read(&seg).unwrap();
    let (_, _, batches) = layout(&seg);
    let (last_at, last_len) = batches[2];
    let copy = tempfile::tempdir().unwrap();
    let cut = copy.path().join(seg.file_name().unwrap());
    for split in [
        last_at + 3,
        last_at + BATCH_HEADER + 5,
        last_at + last_len - 1,
    ] {
        fs::write(&cut, &bytes[..split]).unwrap();
        let mut t = JournalTail::open(copy.path(), &k, Seq(0)).unwrap();
        assert_eq!(
            seqs(&drain(&mut t)),
            (1..=8).collect::<Vec<_>>(),
            "cut at {split}"
        );
        // Still incomplete: nothing, and no error.
        assert!(drain(&mut t).is_empty());
        // The rest of the write lands: the batch is read from its start.
        fs::OpenOptions::new()
            .append(true)
            .open(&cut)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes[split..]))
            .unwrap();
        assert_eq!(
            seqs(&drain(&mut t)),
            (9..=12).collect::<Vec<_>>(),
            "cut at {split}"
        );
    }
}

#[test]
fn records_compacted_away_are_reported_missing_and_damage_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let k = ring("k1", 1);
    let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
    write_batches(&mut w, 0, &[20; 30]);
    drop(w);
    let segs = segments(dir.path());
    fs::remove_file(&segs[0]).unwrap();
    let first = crate::format::list(dir.path(), "journal", ".seg").unwrap()[0].0;
    match JournalTail::open(dir.path(), &k, Seq(0)) {
        Err(JournalError::Missing {
            after, first: f, ..
        }) => {
            assert_eq!((after, f), (Seq(0), Seq(first)));
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    // From the first record still there, it reads on.
    let mut t = JournalTail::open(dir.path(), &k, Seq(first - 1)).unwrap();
    assert_eq!(drain(&mut t).len() as u64, 600 - first + 1);

    // A flipped bit in a complete batch is corruption, not a batch being written.
    let last = segments(dir.path()).pop().unwrap();
    let (_, _, batches) = layout(&last);
    flip(&last, batches[0].0 + BATCH_HEADER + 2, 0x10);
    let name_seq = crate::format::list(dir.path(), "journal", ".seg")
        .unwrap()
        .pop()
        .unwrap()
        .0;
    let mut t = JournalTail::open(dir.path(), &k, Seq(name_seq - 1)).unwrap();
    assert!(matches!(
        t.next_decoded(),
        Err(JournalError::Corrupt { .. })
    ));
    // A key the keyring does not hold is an error at once.
    assert!(JournalTail::open(dir.path(), &ring("k2", 2), Seq(name_seq - 1)).is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Whatever a segment holds (cut anywhere, bytes changed, garbage appended), a tail never
    /// panics and never returns a record that was not written, in its place.
    #[test]
    fn a_tail_over_damaged_or_growing_files_returns_only_what_was_written(
        edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 0..4),
        cut in proptest::prelude::any::<proptest::sample::Index>(),
        garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        after in 0u64..40,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let k = ring("k1", 1);
        let (mut w, _) = JournalWriter::open(&config(dir.path()), &k).unwrap();
        let written = write_batches(&mut w, 0, &[5; 8]);
        drop(w);
        let seg = segments(dir.path()).pop().unwrap();
        let mut b = fs::read(&seg).unwrap();
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        b.truncate(cut.index(b.len() + 1));
        b.extend_from_slice(&garbage);
        fs::write(&seg, &b).unwrap();
        let Ok(mut t) = JournalTail::open(dir.path(), &k, Seq(after)) else {
            return Ok(());
        };
        let mut next = after + 1;
        // Twice: a tail that found nothing more tries again without harm.
        for _ in 0..2 {
            while let Ok(Some((seq, r))) = t.next_decoded() {
                proptest::prop_assert_eq!(seq.0, next);
                proptest::prop_assert_eq!(&r, &written[seq.0 as usize - 1]);
                next += 1;
            }
        }
    }
}
