//! The encrypted FIX message store: the plaintext store's semantics, at rest as ciphertext.

use std::fs;
use std::path::{Path, PathBuf};

use portcullis_fix::{SeqNum, UtcTimestamp};
use portcullis_session::store::{FileStore, MessageStore, StoreError, SyncPolicy};

use super::{flip, layout, ring};
use crate::{Direction, FsyncPolicy, LogOptions, SealedFileStore, FIX_STORE_PREFIX};

const T0: UtcTimestamp = UtcTimestamp::from_nanos(1_700_000_000_123_456_789);
const T1: UtcTimestamp = UtcTimestamp::from_nanos(1_700_086_400_000_000_000);

type Snapshot = (SeqNum, SeqNum, UtcTimestamp, Vec<(SeqNum, Vec<u8>)>);

fn options() -> LogOptions {
    LogOptions {
        fsync: FsyncPolicy::Never,
        segment_bytes: crate::MIN_SEGMENT_BYTES,
    }
}

fn open(dir: &Path) -> SealedFileStore {
    SealedFileStore::open_with(dir, T0, options(), &ring("1", 7)).expect("open store")
}

/// A message carrying a distinctive ClOrdID and account, to look for in the files.
fn msg(seq: SeqNum) -> Vec<u8> {
    format!(
        "8=FIX.4.4\x019=60\x0135=8\x0134={seq}\x0149=ISLD\x0156=TW\x0111=SECRET-CLORD-{seq}\x011=HIDDEN-ACCOUNT\x0110=000\x01"
    )
    .into_bytes()
}

fn range(store: &mut impl MessageStore, begin: SeqNum, end: SeqNum) -> Vec<(SeqNum, Vec<u8>)> {
    let mut out = Vec::new();
    store.outbound_range(begin, end, &mut out).expect("range");
    out
}

fn snapshot(store: &mut impl MessageStore) -> Snapshot {
    (
        store.next_sender_seq(),
        store.next_target_seq(),
        store.creation_time(),
        range(store, 0, SeqNum::MAX),
    )
}

/// Every regular file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The segment files of the store's current generation, in order.
fn segments(store: &SealedFileStore) -> Vec<PathBuf> {
    crate::format::list(store.generation_dir(), FIX_STORE_PREFIX, ".seg")
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn generations(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    v.sort();
    v
}

fn assert_no_plaintext(dir: &Path) {
    for f in files(dir) {
        let bytes = fs::read(&f).unwrap();
        for needle in [&b"SECRET-CLORD"[..], b"HIDDEN-ACCOUNT", b"35=8"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds {:?} in plaintext",
                f.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

#[test]
fn numbers_and_messages_survive_reopen_and_the_files_are_ciphertext() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sessions/FIX.4.4-ISLD-TW");
    let before = {
        let mut s = open(&dir);
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (1, 1));
        assert_eq!(s.creation_time(), T0);
        for seq in 1..=200 {
            s.save_outbound(seq, &msg(seq)).unwrap();
        }
        s.set_next_target_seq(57).unwrap();
        assert_eq!(s.next_sender_seq(), 201);
        snapshot(&mut s)
    };
    assert_eq!(before.3.len(), 200);
    let mut s = open(&dir);
    assert!(s.recovered_tail().is_none());
    assert_eq!(snapshot(&mut s), before);
    // Ranges are inclusive, ordered, skip unknown numbers, and work across segments.
    assert!(segments(&s).len() > 2, "small segments roll");
    let r = range(&mut s, 150, 400);
    assert_eq!(r.len(), 51);
    assert_eq!(r[0], (150, msg(150)));
    assert_eq!(r[50], (200, msg(200)));
    assert!(range(&mut s, 300, 400).is_empty());
    assert!(range(&mut s, 5, 4).is_empty());
    drop(s);
    assert_no_plaintext(&dir);
}

#[test]
fn a_resent_number_keeps_only_its_latest_message() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    for seq in 1..=5 {
        s.save_outbound(seq, &msg(seq)).unwrap();
    }
    s.set_next_sender_seq(3).unwrap();
    s.save_outbound(3, b"replacement").unwrap();
    assert_eq!(s.next_sender_seq(), 4);
    let want = vec![
        (1, msg(1)),
        (2, msg(2)),
        (3, b"replacement".to_vec()),
        (4, msg(4)),
        (5, msg(5)),
    ];
    assert_eq!(range(&mut s, 1, 10), want);
    drop(s);
    let mut s = open(tmp.path());
    assert_eq!(range(&mut s, 1, 10), want);
    assert_eq!(s.next_sender_seq(), 4);
    s.compact().unwrap();
    assert_eq!(range(&mut s, 1, 10), want);
    assert_eq!(s.next_sender_seq(), 4);
}

#[test]
fn reset_starts_a_new_generation_and_deletes_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut s = open(dir);
    for seq in 1..=10 {
        s.save_outbound(seq, &msg(seq)).unwrap();
    }
    s.set_next_target_seq(11).unwrap();
    assert_eq!(generations(dir), ["gen-00000000000000000001"]);
    s.reset(T1).unwrap();
    assert_eq!(generations(dir), ["gen-00000000000000000002"]);
    assert_eq!(snapshot(&mut s), (1, 1, T1, vec![]));
    s.save_outbound(1, &msg(1)).unwrap();
    drop(s);
    let mut s = open(dir);
    assert_eq!(snapshot(&mut s), (2, 1, T1, vec![(1, msg(1))]));
}

#[test]
fn compact_keeps_messages_and_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    for seq in 1..=50 {
        s.save_outbound(seq, &msg(seq)).unwrap();
        s.set_next_target_seq(seq + 1).unwrap();
    }
    let before = snapshot(&mut s);
    s.compact().unwrap();
    assert_eq!(generations(tmp.path()), ["gen-00000000000000000002"]);
    assert_eq!(snapshot(&mut s), before);
    s.save_outbound(51, &msg(51)).unwrap();
    drop(s);
    let mut s = open(tmp.path());
    let after = snapshot(&mut s);
    assert_eq!(after.0, 52);
    assert_eq!(after.3.len(), 51);
}

#[test]
fn a_torn_last_batch_is_cut_and_the_previous_state_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    for seq in 1..=3 {
        s.save_outbound(seq, &msg(seq)).unwrap();
    }
    let before = snapshot(&mut s);
    s.save_outbound(4, &msg(4)).unwrap();
    let seg = segments(&s).pop().unwrap();
    drop(s);
    // Cut the last batch (message 4) at every length: always the state before it.
    let (_, _, batches) = layout(&seg);
    let &(at, len) = batches.last().unwrap();
    let full = fs::read(&seg).unwrap();
    for cut in [1, 20, 40, len / 2, len - 1] {
        fs::write(&seg, &full[..at + cut]).unwrap();
        let mut s = open(tmp.path());
        let torn = s.recovered_tail().expect("torn tail reported").clone();
        assert_eq!(torn.offset, at as u64);
        assert_eq!(snapshot(&mut s), before, "cut at {cut}");
        drop(s);
        assert_eq!(fs::metadata(&seg).unwrap().len(), at as u64, "tail cut");
    }
    // Writing goes on after the cut.
    let mut s = open(tmp.path());
    s.save_outbound(4, b"again").unwrap();
    drop(s);
    let mut s = open(tmp.path());
    assert_eq!(range(&mut s, 4, 4), vec![(4, b"again".to_vec())]);
}

#[test]
fn a_flipped_bit_is_corruption_with_the_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    for seq in 1..=5 {
        s.save_outbound(seq, &msg(seq)).unwrap();
    }
    let seg = segments(&s).pop().unwrap();
    drop(s);
    let (_, _, batches) = layout(&seg);
    let (at, len) = batches[1];
    flip(&seg, at + len - 20, 0x04);
    let err = SealedFileStore::open_with(tmp.path(), T0, options(), &ring("1", 7)).unwrap_err();
    match err {
        StoreError::Corrupt { path, offset, .. } => {
            assert_eq!(path, seg);
            assert_eq!(offset, at as u64);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_wrong_or_missing_key_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    s.save_outbound(1, &msg(1)).unwrap();
    drop(s);
    let before: Vec<(PathBuf, Vec<u8>)> = files(tmp.path())
        .into_iter()
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    for keyring in [ring("1", 8), ring("2", 7)] {
        let err = SealedFileStore::open_with(tmp.path(), T0, options(), &keyring).unwrap_err();
        assert!(matches!(err, StoreError::WrongKey { .. }), "{err:?}");
        assert!(err.to_string().contains(".seg"), "{err}");
    }
    for (p, bytes) in before {
        assert_eq!(fs::read(&p).unwrap(), bytes, "{} changed", p.display());
    }
    let mut s = open(tmp.path());
    assert_eq!(range(&mut s, 1, 1), vec![(1, msg(1))]);
}

#[test]
fn a_second_open_is_refused_while_the_first_holds_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let err = SealedFileStore::open_with(tmp.path(), T0, options(), &ring("1", 7)).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    // The plaintext store shares the lock file.
    let err = FileStore::open(tmp.path(), T0, SyncPolicy::Never).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    drop(s);
    open(tmp.path());
}

#[test]
fn a_crash_during_a_reset_leaves_the_old_or_the_new_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut s = open(dir);
    s.save_outbound(1, &msg(1)).unwrap();
    let before = snapshot(&mut s);
    drop(s);
    // Before the rename: a half-written next generation is discarded.
    let tmp_gen = dir.join("gen-00000000000000000002.tmp");
    fs::create_dir(&tmp_gen).unwrap();
    fs::write(
        tmp_gen.join("fixstore-00000000000000000001.seg"),
        b"partial",
    )
    .unwrap();
    let mut s = open(dir);
    assert_eq!(snapshot(&mut s), before);
    assert!(!tmp_gen.exists());
    // After the rename, before the old generation was deleted: the new one is the store.
    let old = dir.join("gen-00000000000000000001");
    let keep_tmp = tempfile::tempdir().unwrap();
    let keep = keep_tmp.path().join("old");
    copy_dir(&old, &keep);
    s.reset(T1).unwrap();
    drop(s);
    copy_dir(&keep, &old);
    let mut s = open(dir);
    assert_eq!(snapshot(&mut s), (1, 1, T1, vec![]));
    assert_eq!(generations(dir), ["gen-00000000000000000002"]);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_plaintext_store_is_migrated_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let before = {
        let mut p = FileStore::open(dir, T0, SyncPolicy::Never).unwrap();
        for seq in 1..=4 {
            p.save_outbound(seq, &msg(seq)).unwrap();
        }
        p.set_next_target_seq(9).unwrap();
        snapshot(&mut p)
    };
    assert!(!SealedFileStore::is_sealed(dir).unwrap());
    let mut s = SealedFileStore::open_with(dir, T1, options(), &ring("1", 7)).unwrap();
    assert_eq!(snapshot(&mut s), before);
    assert!(!dir.join("store.log").exists());
    assert!(SealedFileStore::is_sealed(dir).unwrap());
    drop(s);
    assert_no_plaintext(dir);
    let mut s = open(dir);
    assert_eq!(snapshot(&mut s), before);
}

#[test]
fn rotating_the_master_key_rewrites_the_store_under_the_new_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    for seq in 1..=20 {
        s.save_outbound(seq, &msg(seq)).unwrap();
    }
    let before = snapshot(&mut s);
    // The new keyring alone: the old segments are read with the keyring the store had.
    s.set_keyring(&ring("2", 9)).unwrap();
    assert_eq!(s.key_ids(), ["2"]);
    assert_eq!(snapshot(&mut s), before);
    s.save_outbound(21, &msg(21)).unwrap();
    drop(s);
    let err = SealedFileStore::open_with(tmp.path(), T0, options(), &ring("1", 7)).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err:?}");
    let mut s = SealedFileStore::open_with(tmp.path(), T0, options(), &ring("2", 9)).unwrap();
    let after = snapshot(&mut s);
    assert_eq!(after.0, 22);
    assert_eq!(after.3.len(), 21);
    // Under the same key nothing is rewritten.
    s.set_keyring(&ring("2", 9)).unwrap();
    assert_eq!(generations(tmp.path()), ["gen-00000000000000000002"]);
}

#[test]
fn sync_always_writes_are_durable_and_readable_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = SealedFileStore::open(tmp.path(), T0, SyncPolicy::Always, &ring("1", 7)).unwrap();
    s.save_outbound(1, &msg(1)).unwrap();
    s.set_next_target_seq(2).unwrap();
    s.sync().unwrap();
    drop(s);
    let mut s = SealedFileStore::open(tmp.path(), T0, SyncPolicy::Always, &ring("1", 7)).unwrap();
    assert_eq!(snapshot(&mut s), (2, 2, T0, vec![(1, msg(1))]));
}

#[test]
fn an_oversized_message_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    let big = vec![b'x'; portcullis_session::store::MAX_STORED_MESSAGE_LEN + 1];
    let err = s.save_outbound(1, &big).unwrap_err();
    assert!(matches!(err, StoreError::MessageTooLarge { .. }), "{err:?}");
    assert_eq!(s.next_sender_seq(), 1);
    s.save_outbound(1, &msg(1)).unwrap();
}

/// Bytes in the store's current segments.
fn stored_bytes(store: &SealedFileStore) -> u64 {
    segments(store)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn grouped_changes_are_written_by_one_commit_and_reads_and_drop_commit_first() {
    let tmp = tempfile::tempdir().unwrap();
    // The same three changes, committed each and grouped: one batch is smaller than three.
    let grown = |group: bool| {
        let dir = tmp.path().join(format!("s-{group}"));
        let mut s = open(&dir);
        s.set_group_commit(group).unwrap();
        let before = stored_bytes(&s);
        s.set_next_target_seq(2).unwrap();
        s.save_outbound(1, &msg(1)).unwrap();
        s.save_outbound(2, &msg(2)).unwrap();
        assert_eq!(s.has_uncommitted(), group);
        if group {
            assert_eq!(
                stored_bytes(&s),
                before,
                "nothing written before the commit"
            );
            s.commit().unwrap();
            assert!(!s.has_uncommitted());
        }
        stored_bytes(&s) - before
    };
    let (each, grouped) = (grown(false), grown(true));
    assert!(
        grouped < each,
        "grouped {grouped} bytes, committed each {each}"
    );

    let dir = tmp.path().join("s-reads");
    let mut s = open(&dir);
    s.set_group_commit(true).unwrap();
    s.save_outbound(1, &msg(1)).unwrap();
    // A resend reads the log on disk: it commits first and finds the message.
    assert_eq!(range(&mut s, 1, 1), vec![(1, msg(1))]);
    assert!(!s.has_uncommitted());
    // A change still pending when the store is dropped is written, not lost.
    s.set_next_target_seq(9).unwrap();
    s.save_outbound(2, &msg(2)).unwrap();
    drop(s);
    let mut s = open(&dir);
    assert_eq!((s.next_sender_seq(), s.next_target_seq()), (3, 9));
    assert_eq!(range(&mut s, 1, 2).len(), 2);
    drop(s);
    assert_no_plaintext(&dir);
}

#[test]
fn a_grouped_store_may_wait_for_the_disk_only_with_a_commit_to_make() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        fsync: FsyncPolicy::Always,
        segment_bytes: 1 << 20,
    };
    let mut store = SealedFileStore::open_with(dir.path(), T0, opts, &ring("1", 7)).unwrap();
    store.set_group_commit(true).unwrap();
    assert!(!store.may_wait_for_disk(), "nothing to commit");
    store.set_next_target_seq(2).unwrap();
    store.save_outbound(1, &msg(1)).unwrap();
    assert!(store.may_wait_for_disk(), "the commit fsyncs");
    store.commit().unwrap();
    assert!(!store.may_wait_for_disk(), "committed");

    // Ungrouped, every change commits: with fsync = always each may wait.
    store.set_group_commit(false).unwrap();
    assert!(store.may_wait_for_disk());
    drop(store);
    let opts = LogOptions {
        fsync: FsyncPolicy::Never,
        segment_bytes: 1 << 20,
    };
    let mut store = SealedFileStore::open_with(dir.path(), T0, opts, &ring("1", 7)).unwrap();
    store.set_group_commit(true).unwrap();
    store.set_next_target_seq(3).unwrap();
    store.commit().unwrap();
    store.set_next_target_seq(4).unwrap();
    assert!(
        !store.may_wait_for_disk(),
        "fsync = never, room in the segment"
    );
}

#[test]
fn operators_read_a_store_while_it_is_open_without_changing_it() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s");
    assert_eq!(
        SealedFileStore::read_messages(&session, &ring("1", 7), 0, SeqNum::MAX).unwrap(),
        None
    );
    let mut store = open(&session);
    for seq in 1..=5 {
        store.save_outbound(seq, &msg(seq)).unwrap();
    }
    store.set_next_target_seq(9).unwrap();
    // Resent under its number later: the last one stored is the one a resend gives.
    store.save_outbound(3, b"8=FIX.4.4\x0135=4\x01").unwrap();
    store
        .save_inbound(4, b"8=FIX.4.4\x0135=0\x0134=4\x01")
        .unwrap();
    store.set_next_sender_seq(6).unwrap();
    let before = files(&session);
    let read = SealedFileStore::read_messages(&session, &ring("1", 7), 2, 4)
        .unwrap()
        .expect("a store");
    assert_eq!((read.next_sender_seq, read.next_target_seq), (6, 9));
    assert_eq!(read.created, T0);
    assert!(!read.torn_tail);
    let got: Vec<(Direction, SeqNum)> =
        read.messages.iter().map(|m| (m.direction, m.seq)).collect();
    use Direction::{Received, Sent};
    assert_eq!(
        got,
        vec![(Sent, 2), (Sent, 3), (Sent, 4), (Sent, 3), (Received, 4)]
    );
    assert_eq!(read.messages[0].bytes, msg(2));
    assert_eq!(read.messages[3].bytes, b"8=FIX.4.4\x0135=4\x01");
    assert_eq!(read.messages[4].bytes, b"8=FIX.4.4\x0135=0\x0134=4\x01");
    assert_eq!(files(&session), before, "reading changed the files");
    // Received messages are a log only: the store reopens with the same state, and a resend
    // gives the last outbound message of each number.
    let before_reopen = snapshot(&mut store);
    drop(store);
    let mut store = open(&session);
    assert_eq!(snapshot(&mut store), before_reopen);
    assert_eq!(range(&mut store, 3, 3)[0].1, b"8=FIX.4.4\x0135=4\x01");
    // A compaction (or a re-encryption) carries the received messages over.
    store.compact().unwrap();
    let after = SealedFileStore::read_messages(&session, &ring("1", 7), 0, SeqNum::MAX)
        .unwrap()
        .unwrap();
    let got: Vec<(Direction, SeqNum)> = after
        .messages
        .iter()
        .map(|m| (m.direction, m.seq))
        .collect();
    assert_eq!(
        got,
        vec![
            (Sent, 1),
            (Sent, 2),
            (Sent, 4),
            (Sent, 5),
            (Sent, 3),
            (Received, 4)
        ]
    );
    assert_eq!(after.messages[5].bytes, b"8=FIX.4.4\x0135=0\x0134=4\x01");
    assert_eq!(snapshot(&mut store), before_reopen);
    // The wrong master key reads nothing.
    let err = SealedFileStore::read_messages(&session, &ring("2", 8), 0, SeqNum::MAX).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    drop(store);
}

#[test]
fn a_message_of_the_largest_size_is_kept_sealed_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s");
    let mut s = open(&session);
    let big = vec![b'y'; portcullis_session::store::MAX_STORED_MESSAGE_LEN];
    s.save_inbound(1, &big).unwrap();
    s.save_outbound(1, &msg(1)).unwrap();
    s.set_next_target_seq(2).unwrap();
    s.sync().unwrap();
    drop(s);
    let read = SealedFileStore::read_messages(&session, &ring("1", 7), 0, SeqNum::MAX)
        .unwrap()
        .expect("a store");
    assert!(!read.torn_tail);
    assert_eq!(read.messages.len(), 2);
    assert!(read.messages.iter().any(|m| m.bytes == big));
    let mut s = open(&session);
    assert_eq!(snapshot(&mut s).3, vec![(1, msg(1))]);
}
