//! A writer process killed with SIGKILL right after `save_outbound` returns loses nothing.
//!
//! Its own test binary: spawning a child forks the test process, and the fork holds copies of
//! every open descriptor until it execs, including other tests' store `flock`s, which made
//! concurrent store tests in the same process see `Locked` now and then.

use std::io::{BufRead, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use portcullis_fix::{SeqNum, UtcTimestamp};
use portcullis_session::store::{FileStore, SyncPolicy};
use portcullis_session::MessageStore;

const T0: UtcTimestamp = UtcTimestamp::from_nanos(1_700_000_000_123_456_789);
const CRASH_CHILD_ENV: &str = "PORTCULLIS_STORE_CRASH_CHILD_DIR";

fn msg(seq: SeqNum) -> Vec<u8> {
    format!("8=FIX.4.4\x019=20\x0135=8\x0134={seq}\x0149=ISLD\x0156=TW\x0110=000\x01").into_bytes()
}

/// The writer process of `sigkill_right_after_save_outbound_returns_loses_nothing`; does nothing
/// in a normal test run.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CRASH_CHILD_ENV) else {
        return;
    };
    let mut store = FileStore::open(Path::new(&dir), T0, SyncPolicy::Never).unwrap();
    let mut out = std::io::stdout().lock();
    let first = store.next_sender_seq();
    // Bounded, in case the parent is gone.
    for seq in first..first + 1_000_000 {
        store.save_outbound(seq, &msg(seq)).unwrap();
        if seq % 3 == 0 {
            store.set_next_target_seq(seq).unwrap();
        }
        writeln!(out, "ACK {seq}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_right_after_save_outbound_returns_loses_nothing() {
    let dir = tempfile::TempDir::new().unwrap();
    let exe = std::env::current_exe().unwrap();
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut acks = 0;
        let mut last_ack = None;
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(i) = line.find("ACK ") {
                last_ack = Some(line[i + 4..].trim().parse::<SeqNum>().unwrap());
                acks += 1;
                if acks == 200 + round * 150 {
                    child.kill().unwrap(); // SIGKILL
                    break;
                }
            }
        }
        child.wait().unwrap();
        let last = last_ack.expect("the writer acknowledged writes");

        let mut store = FileStore::open(dir.path(), T0, SyncPolicy::Never).expect("open store");
        assert!(store.next_sender_seq() > last, "round {round}");
        let mut stored = Vec::new();
        store.outbound_range(1, last, &mut stored).expect("range");
        assert_eq!(stored.len() as u64, last, "round {round}");
        for (seq, bytes) in stored {
            assert_eq!(bytes, msg(seq));
        }
        assert!(store.next_target_seq() >= last / 3 * 3, "round {round}");
    }
}
