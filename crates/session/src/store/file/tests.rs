use proptest::prelude::*;
use tempfile::TempDir;

use super::*;

const T0: UtcTimestamp = UtcTimestamp::from_nanos(1_700_000_000_123_456_789);
const T1: UtcTimestamp = UtcTimestamp::from_nanos(1_700_086_400_000_000_000);

type Snapshot = (SeqNum, SeqNum, UtcTimestamp, Vec<(SeqNum, Vec<u8>)>);

fn tempdir() -> TempDir {
    TempDir::new().expect("temp dir")
}

fn open(dir: &Path) -> FileStore {
    FileStore::open(dir, T0, SyncPolicy::Never).expect("open store")
}

fn msg(seq: SeqNum) -> Vec<u8> {
    format!("8=FIX.4.4\x019=20\x0135=8\x0134={seq}\x0149=ISLD\x0156=TW\x0110=000\x01").into_bytes()
}

fn range(store: &mut FileStore, begin: SeqNum, end: SeqNum) -> Vec<(SeqNum, Vec<u8>)> {
    let mut out = Vec::new();
    store.outbound_range(begin, end, &mut out).expect("range");
    out
}

fn snapshot(store: &mut FileStore) -> Snapshot {
    (
        store.next_sender_seq(),
        store.next_target_seq(),
        store.creation_time(),
        range(store, 0, SeqNum::MAX),
    )
}

fn log_len(dir: &Path) -> u64 {
    fs::metadata(dir.join(LOG_FILE)).expect("log").len()
}

/// Offsets of the records of an intact log.
fn record_offsets(bytes: &[u8]) -> Vec<u64> {
    let mut offsets = Vec::new();
    let mut pos = MAGIC.len();
    while pos < bytes.len() {
        offsets.push(pos as u64);
        pos += RECORD_HEADER_LEN as usize + u32_at(bytes, pos) as usize;
    }
    assert_eq!(pos, bytes.len(), "test log is not intact");
    offsets
}

/// Writes `bytes` as the log of a fresh store directory.
fn dir_with_log(bytes: &[u8]) -> TempDir {
    let dir = tempdir();
    fs::write(dir.path().join(LOG_FILE), bytes).expect("write log");
    dir
}

/// A store with messages 1..=3, target 5, then `last` applied; returns the log before and after
/// `last` and the state before it.
fn log_before_and_after(last: impl FnOnce(&mut FileStore)) -> (Vec<u8>, Vec<u8>, Snapshot) {
    let dir = tempdir();
    let mut store = open(dir.path());
    for seq in 1..=3 {
        store.save_outbound(seq, &msg(seq)).unwrap();
    }
    store.set_next_target_seq(5).unwrap();
    let before = fs::read(store.path()).unwrap();
    let state = snapshot(&mut store);
    last(&mut store);
    let after = fs::read(store.path()).unwrap();
    assert!(after.len() > before.len());
    (before, after, state)
}

#[test]
fn numbers_and_messages_survive_reopen() {
    let dir = tempdir();
    {
        let mut store = open(dir.path());
        assert_eq!((store.next_sender_seq(), store.next_target_seq()), (1, 1));
        for seq in 1..=3 {
            store.save_outbound(seq, &msg(seq)).unwrap();
        }
        store.set_next_target_seq(7).unwrap();
    }
    let mut store = FileStore::open(dir.path(), T1, SyncPolicy::Never).unwrap();
    assert_eq!(store.recovered_tail(), None);
    assert_eq!(store.next_sender_seq(), 4);
    assert_eq!(store.next_target_seq(), 7);
    assert_eq!(
        store.creation_time(),
        T0,
        "reopening keeps the creation time"
    );
    assert_eq!(
        range(&mut store, 1, 3),
        (1..=3).map(|s| (s, msg(s))).collect::<Vec<_>>()
    );

    store.set_next_sender_seq(10).unwrap();
    store.set_next_target_seq(8).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!((store.next_sender_seq(), store.next_target_seq()), (10, 8));
}

#[test]
fn outbound_range_after_reopen_is_ordered_inclusive_and_skips_unknown_seqs() {
    let dir = tempdir();
    {
        let mut store = open(dir.path());
        for seq in [1, 2, 3, 5, 8] {
            store.save_outbound(seq, &msg(seq)).unwrap();
        }
    }
    let mut store = open(dir.path());
    let seqs = |v: Vec<(SeqNum, Vec<u8>)>| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
    assert_eq!(seqs(range(&mut store, 2, 5)), [2, 3, 5]);
    assert_eq!(seqs(range(&mut store, 8, 8)), [8]);
    assert_eq!(seqs(range(&mut store, 4, 4)), Vec::<SeqNum>::new());
    assert_eq!(seqs(range(&mut store, 6, 7)), Vec::<SeqNum>::new());
    assert_eq!(seqs(range(&mut store, 5, 3)), Vec::<SeqNum>::new());
    assert_eq!(
        seqs(range(&mut store, 9, SeqNum::MAX)),
        Vec::<SeqNum>::new()
    );
    let all = range(&mut store, 0, SeqNum::MAX);
    assert_eq!(
        all,
        [1, 2, 3, 5, 8]
            .into_iter()
            .map(|s| (s, msg(s)))
            .collect::<Vec<_>>()
    );
    assert_eq!(store.next_sender_seq(), 9);

    // Appends to `out`, never clears it.
    let mut out = vec![(0, b"keep".to_vec())];
    store.outbound_range(3, 3, &mut out).unwrap();
    assert_eq!(out, [(0, b"keep".to_vec()), (3, msg(3))]);
}

#[test]
fn reset_starts_at_one_drops_messages_survives_reopen_and_updates_creation_time() {
    let dir = tempdir();
    {
        let mut store = open(dir.path());
        for seq in 1..=3 {
            store.save_outbound(seq, &msg(seq)).unwrap();
        }
        store.set_next_target_seq(9).unwrap();
        store.reset(T1).unwrap();
        assert_eq!(snapshot(&mut store), (1, 1, T1, vec![]));
        // The store keeps working on the new log.
        store.save_outbound(1, b"after reset").unwrap();
    }
    let mut store = open(dir.path());
    assert_eq!(
        snapshot(&mut store),
        (2, 1, T1, vec![(1, b"after reset".to_vec())])
    );
    assert!(!dir.path().join(TEMP_FILE).exists());
}

#[test]
fn torn_tail_at_every_offset_of_the_last_record_recovers_the_previous_state() {
    for what in ["message", "seqs"] {
        let (before, after, state) = log_before_and_after(|s| match what {
            "message" => s.save_outbound(4, &msg(4)).unwrap(),
            _ => s.set_next_target_seq(6).unwrap(),
        });
        for cut in before.len()..after.len() {
            let dir = dir_with_log(&after[..cut]);
            let mut store = FileStore::open(dir.path(), T1, SyncPolicy::Never)
                .unwrap_or_else(|e| panic!("{what} cut at {cut}: {e}"));
            assert_eq!(snapshot(&mut store), state, "{what} cut at {cut}");
            let dropped = (cut - before.len()) as u64;
            assert_eq!(
                store.recovered_tail(),
                (dropped > 0).then_some(dropped),
                "{what} cut at {cut}"
            );
            assert_eq!(
                log_len(dir.path()),
                before.len() as u64,
                "torn bytes removed"
            );

            // Appending after the recovery yields a clean log.
            store.save_outbound(4, b"again").unwrap();
            drop(store);
            let mut store = open(dir.path());
            assert_eq!(store.recovered_tail(), None);
            assert_eq!(range(&mut store, 4, 4), [(4, b"again".to_vec())]);
        }
    }
}

#[test]
fn torn_tail_of_a_record_larger_than_the_search_window_is_cut() {
    let big = vec![b'x'; 200 << 10];
    let (before, after, state) = log_before_and_after(|s| s.save_outbound(4, &big).unwrap());
    for cut in [
        before.len() + 3,
        before.len() + 9,
        before.len() + (64 << 10) + 5,
        after.len() - 1,
    ] {
        let dir = dir_with_log(&after[..cut]);
        let mut store = open(dir.path());
        assert_eq!(snapshot(&mut store), state, "cut at {cut}");
        assert_eq!(store.recovered_tail(), Some((cut - before.len()) as u64));
    }
}

#[test]
fn flipped_bit_in_the_last_record_cuts_the_tail() {
    let (before, after, state) = log_before_and_after(|s| s.save_outbound(4, &msg(4)).unwrap());
    for bit in before.len() * 8..after.len() * 8 {
        let mut bytes = after.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let dir = dir_with_log(&bytes);
        let mut store = FileStore::open(dir.path(), T1, SyncPolicy::Never)
            .unwrap_or_else(|e| panic!("bit {bit}: {e}"));
        assert_eq!(snapshot(&mut store), state, "bit {bit}");
        assert_eq!(
            store.recovered_tail(),
            Some((after.len() - before.len()) as u64),
            "bit {bit}"
        );
    }
}

#[test]
fn flipped_bit_in_a_middle_record_is_corrupt_at_its_offset() {
    let (_, log, _) = log_before_and_after(|s| s.save_outbound(4, &msg(4)).unwrap());
    let offsets = record_offsets(&log);
    // Every record but the last, the Header included.
    for pair in offsets.windows(2) {
        let (start, next) = (pair[0] as usize, pair[1] as usize);
        for bit in start * 8..next * 8 {
            let mut bytes = log.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let dir = dir_with_log(&bytes);
            match FileStore::open(dir.path(), T1, SyncPolicy::Never) {
                Err(StoreError::Corrupt { path, offset, .. }) => {
                    assert_eq!(offset, start as u64, "bit {bit}");
                    assert_eq!(path, dir.path().join(LOG_FILE));
                }
                other => panic!("bit {bit}: expected Corrupt, got {other:?}"),
            }
            assert_eq!(
                fs::read(dir.path().join(LOG_FILE)).unwrap(),
                bytes,
                "untouched"
            );
        }
    }
}

#[test]
fn damaged_length_of_a_middle_record_is_corrupt_not_a_torn_tail() {
    // A length pointing past the end of the file looks like a torn record; the valid records
    // after it must still be noticed.
    let big = vec![b'y'; 100 << 10];
    let (_, log, _) = log_before_and_after(|s| {
        s.save_outbound(4, &big).unwrap();
        s.save_outbound(5, &msg(5)).unwrap();
    });
    let offsets = record_offsets(&log);
    let victims = [offsets[2], offsets[offsets.len() - 2]]; // a small and the large message
    for victim in victims {
        for len in [0u32, 0x00ff_ffff, MAX_BODY_LEN + 1, u32::MAX] {
            let mut bytes = log.clone();
            let at = victim as usize;
            bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
            let dir = dir_with_log(&bytes);
            match FileStore::open(dir.path(), T1, SyncPolicy::Never) {
                Err(StoreError::Corrupt { offset, .. }) => assert_eq!(offset, victim),
                other => panic!("len {len:#x} at {victim}: expected Corrupt, got {other:?}"),
            }
        }
    }
}

#[test]
fn a_file_that_is_not_a_store_is_an_error() {
    let not_a_store = |bytes: &[u8]| {
        let dir = dir_with_log(bytes);
        match FileStore::open(dir.path(), T0, SyncPolicy::Never) {
            Err(e @ StoreError::NotAStore { .. }) => e.to_string(),
            other => panic!("{bytes:?}: expected NotAStore, got {other:?}"),
        }
    };
    assert!(not_a_store(b"").contains("0 bytes"));
    assert!(not_a_store(b"8=FIX.4.4\x019=5\x01").contains("bad magic"));
    assert!(not_a_store(b"PCFX").contains("4 bytes"));

    let mut future = MAGIC.to_vec();
    encode_record(
        &mut future,
        KIND_HEADER,
        &[&2u32.to_le_bytes(), &T0.nanos().to_le_bytes()],
    );
    assert!(not_a_store(&future).contains("format version 2"));

    // The right magic but no intact Header is damage, not a torn tail: a log is created whole.
    for bytes in [&MAGIC[..], &future[..future.len() - 1]] {
        let dir = dir_with_log(bytes);
        assert!(matches!(
            FileStore::open(dir.path(), T0, SyncPolicy::Never),
            Err(StoreError::Corrupt { offset: 8, .. })
        ));
    }
    let mut seqs_first = MAGIC.to_vec();
    encode_record(&mut seqs_first, KIND_SEQS, &[&[0; 16]]);
    let dir = dir_with_log(&seqs_first);
    assert!(matches!(
        FileStore::open(dir.path(), T0, SyncPolicy::Never),
        Err(StoreError::Corrupt { offset: 8, .. })
    ));
}

#[test]
fn unknown_or_malformed_records_with_good_checksums_are_corrupt() {
    let dir = tempdir();
    drop(open(dir.path()));
    let base = fs::read(dir.path().join(LOG_FILE)).unwrap();
    let bad_records: [(u8, &[u8]); 4] = [
        (9, b"from the future"),
        (KIND_SEQS, &[1; 15]),
        (KIND_MESSAGE, &[1; 7]),
        (KIND_HEADER, &[0; 12]),
    ];
    for (kind, payload) in bad_records {
        let mut bytes = base.clone();
        encode_record(&mut bytes, kind, &[payload]);
        let dir = dir_with_log(&bytes);
        match FileStore::open(dir.path(), T0, SyncPolicy::Never) {
            Err(StoreError::Corrupt { offset, .. }) => assert_eq!(offset, base.len() as u64),
            other => panic!("kind {kind}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn a_directory_that_cannot_be_used_is_an_error() {
    let parent = tempdir();
    let file = parent.path().join("plain-file");
    fs::write(&file, b"x").unwrap();
    for dir in [file.clone(), file.join("session")] {
        assert!(
            matches!(
                FileStore::open(&dir, T0, SyncPolicy::Always),
                Err(StoreError::Io { .. })
            ),
            "{}",
            dir.display()
        );
    }

    // A read-only directory (meaningless when the tests run as root, who may write anyway).
    use std::os::unix::fs::PermissionsExt;
    let ro = parent.path().join("read-only");
    fs::create_dir(&ro).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    if File::create(ro.join("probe")).is_err() {
        let err = FileStore::open(&ro, T0, SyncPolicy::Always).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    }
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn creates_missing_directories() {
    let parent = tempdir();
    let dir = parent.path().join("data").join("FIX.4.4-ISLD-TW");
    let mut store = FileStore::open(&dir, T0, SyncPolicy::Always).unwrap();
    store.save_outbound(1, &msg(1)).unwrap();
    store.sync().unwrap();
    drop(store);
    assert_eq!(open(&dir).next_sender_seq(), 2);
}

#[test]
fn a_second_open_of_the_same_store_is_refused_until_the_first_is_dropped() {
    let dir = tempdir();
    let first = open(dir.path());
    match FileStore::open(dir.path(), T0, SyncPolicy::Never) {
        Err(StoreError::Locked { path }) => assert_eq!(path, dir.path().join(LOCK_FILE)),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
    open(dir.path());
}

#[test]
fn a_crash_during_reset_leaves_the_old_store_and_the_temp_file_is_removed() {
    let dir = tempdir();
    let state = {
        let mut store = open(dir.path());
        store.save_outbound(1, &msg(1)).unwrap();
        store.set_next_target_seq(3).unwrap();
        snapshot(&mut store)
    };
    // What an interrupted reset leaves: a partial replacement log next to the real one.
    let mut partial = MAGIC.to_vec();
    encode_record(
        &mut partial,
        KIND_HEADER,
        &[&FORMAT_VERSION.to_le_bytes(), &T1.nanos().to_le_bytes()],
    );
    partial.truncate(partial.len() - 3);
    fs::write(dir.path().join(TEMP_FILE), &partial).unwrap();

    let mut store = FileStore::open(dir.path(), T1, SyncPolicy::Never).unwrap();
    assert_eq!(snapshot(&mut store), state);
    assert!(!dir.path().join(TEMP_FILE).exists());
}

#[test]
fn a_crash_while_creating_the_store_leaves_no_store() {
    let dir = tempdir();
    fs::write(dir.path().join(TEMP_FILE), &MAGIC[..5]).unwrap();
    let mut store = open(dir.path());
    assert_eq!(snapshot(&mut store), (1, 1, T0, vec![]));
    assert!(!dir.path().join(TEMP_FILE).exists());
}

#[test]
fn compact_keeps_messages_and_numbers_and_shrinks_the_log() {
    let dir = tempdir();
    let mut store = open(dir.path());
    for seq in [1, 2, 4] {
        store.save_outbound(seq, &msg(seq)).unwrap();
    }
    for target in 2..200 {
        store.set_next_target_seq(target).unwrap();
    }
    store.set_next_sender_seq(7).unwrap();
    let state = snapshot(&mut store);
    let before = log_len(dir.path());
    store.compact().unwrap();
    assert!(log_len(dir.path()) < before / 4);
    assert_eq!(snapshot(&mut store), state);
    assert!(!dir.path().join(TEMP_FILE).exists());

    // Writes continue on the compacted log, and everything survives a reopen.
    store.save_outbound(7, &msg(7)).unwrap();
    drop(store);
    let mut store = open(dir.path());
    assert_eq!(store.recovered_tail(), None);
    assert_eq!((store.next_sender_seq(), store.next_target_seq()), (8, 199));
    assert_eq!(store.creation_time(), T0);
    assert_eq!(
        range(&mut store, 0, 100),
        [1, 2, 4, 7]
            .into_iter()
            .map(|s| (s, msg(s)))
            .collect::<Vec<_>>()
    );
}

#[test]
fn setting_an_unchanged_number_writes_nothing() {
    let dir = tempdir();
    let mut store = open(dir.path());
    let len = log_len(dir.path());
    store.set_next_sender_seq(1).unwrap();
    store.set_next_target_seq(1).unwrap();
    assert_eq!(log_len(dir.path()), len);
}

#[test]
fn an_oversized_message_is_refused_and_changes_nothing() {
    let dir = tempdir();
    let mut store = open(dir.path());
    let huge = vec![b'z'; MAX_STORED_MESSAGE_LEN + 1];
    assert!(matches!(
        store.save_outbound(1, &huge),
        Err(StoreError::MessageTooLarge { .. })
    ));
    assert_eq!(snapshot(&mut store), (1, 1, T0, vec![]));
    // The largest allowed one round-trips.
    store
        .save_outbound(1, &huge[..MAX_STORED_MESSAGE_LEN])
        .unwrap();
    drop(store);
    let mut store = open(dir.path());
    assert_eq!(range(&mut store, 1, 1)[0].1.len(), MAX_STORED_MESSAGE_LEN);
}

#[test]
fn after_a_failed_write_the_store_refuses_writes_until_reopened() {
    let dir = tempdir();
    let mut store = open(dir.path());
    store.save_outbound(1, &msg(1)).unwrap();
    // Simulate a failing disk: the log handle can no longer write.
    store.file = File::open(store.path()).unwrap();
    assert!(matches!(
        store.save_outbound(2, &msg(2)),
        Err(StoreError::Io { .. })
    ));
    assert_eq!(
        store.next_sender_seq(),
        2,
        "state unchanged by the failed write"
    );
    assert!(matches!(
        store.set_next_target_seq(5),
        Err(StoreError::Poisoned { .. })
    ));
    assert!(matches!(store.sync(), Err(StoreError::Poisoned { .. })));
    // Reads still work.
    assert_eq!(range(&mut store, 1, 1), [(1, msg(1))]);
    drop(store);
    let mut store = open(dir.path());
    assert_eq!(snapshot(&mut store), (2, 1, T0, vec![(1, msg(1))]));
}

#[test]
fn sync_always_writes_are_readable_after_reopen() {
    let dir = tempdir();
    {
        let mut store = FileStore::open(dir.path(), T0, SyncPolicy::Always).unwrap();
        store.save_outbound(1, &msg(1)).unwrap();
        store.set_next_target_seq(2).unwrap();
        store.sync().unwrap();
    }
    let mut store = FileStore::open(dir.path(), T0, SyncPolicy::Always).unwrap();
    assert_eq!(snapshot(&mut store), (2, 2, T0, vec![(1, msg(1))]));
}

#[test]
fn session_dir_name_is_readable_safe_and_unambiguous() {
    assert_eq!(
        FileStore::session_dir_name("FIX.4.4", "ISLD", "TW"),
        "FIX.4.4-ISLD-TW"
    );
    assert_eq!(
        FileStore::session_dir_name("FIXT.1.1", "MY_FIRM", "x9"),
        "FIXT.1.1-MY_FIRM-x9"
    );
    assert_eq!(
        FileStore::session_dir_name("FIX.4.2", "a/b", "c d%"),
        "FIX.4.2-a%2Fb-c%20d%25"
    );
    assert_eq!(
        FileStore::session_dir_name("FIX.4.4", "é", ""),
        "FIX.4.4-%C3%A9-"
    );
    assert_ne!(
        FileStore::session_dir_name("FIX.4.4", "A-B", "C"),
        FileStore::session_dir_name("FIX.4.4", "A", "B-C")
    );
    assert_eq!(
        FileStore::session_dir_name("FIX.4.4", "A-B", "C"),
        "FIX.4.4-A%2DB-C"
    );
    let name = FileStore::session_dir_name("..", "\0\n", "\\:*?\"<>|");
    assert!(name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-%".contains(&b)));
}

/// Opening must never panic; when it succeeds, a second open sees the same state and an
/// intact log.
fn check_open_never_panics(bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = dir_with_log(bytes);
    if let Ok(mut store) = FileStore::open(dir.path(), T0, SyncPolicy::Never) {
        let first = snapshot(&mut store);
        drop(store);
        let mut again = FileStore::open(dir.path(), T0, SyncPolicy::Never)
            .map_err(|e| TestCaseError::fail(format!("second open failed: {e}")))?;
        prop_assert_eq!(again.recovered_tail(), None);
        prop_assert_eq!(snapshot(&mut again), first);
    }
    Ok(())
}

fn valid_log() -> Vec<u8> {
    let dir = tempdir();
    let mut store = open(dir.path());
    for seq in 1..=4 {
        store.save_outbound(seq, &msg(seq)).unwrap();
        store.set_next_target_seq(seq + 1).unwrap();
    }
    fs::read(store.path()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_as_the_log_never_panic_open(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        check_open_never_panics(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_after_the_magic_never_panic_open(
        tail in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&tail);
        check_open_never_panics(&bytes)?;
    }

    #[test]
    fn damaged_or_truncated_logs_never_panic_open(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = valid_log();
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        bytes.extend_from_slice(&garbage);
        check_open_never_panics(&bytes)?;
    }
}
