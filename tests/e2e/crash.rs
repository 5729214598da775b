//! Crash recovery from the journal: the real binary under a flood of orders from several FIX
//! sessions is killed with SIGKILL at random moments and restarted; nothing it acknowledged is
//! lost or doubled, the replay is deterministic, sessions resume (resend across the crash),
//! and the data at rest (journal, message stores, audit log) is ciphertext.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{
    files_containing, files_under, free_port, FixClient, Msg, Server, MASTER_KEY_ENV,
};

const MASTER_KEY: &str = "5f1e0c8a9b7d6e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f";
const ACCOUNTS: [&str; 3] = ["CRASH-ACC-A", "CRASH-ACC-B", "CRASH-ACC-C"];
const COMP_IDS: [&str; 3] = ["CLA", "CLB", "CLC"];

fn config(port: u16) -> String {
    let mut c = format!(
        "data_dir = \"{{DATA_DIR}}\"\n[[listeners]]\nname = \"fix44\"\nbind = \"127.0.0.1:{port}\"\ntls = false\nbegin_string = \"FIX.4.4\"\n\n"
    );
    for (comp, account) in COMP_IDS.iter().zip(ACCOUNTS) {
        c.push_str(&format!(
            "[[sessions]]\nbegin_string = \"FIX.4.4\"\nsender_comp_id = \"ISLD\"\ntarget_comp_id = \"{comp}\"\naccounts = [\"{account}\"]\nstore_sync = \"never\"\nauthentication = \"none\"\n\n"
        ));
    }
    c.push_str(
        r#"
[engine]
cancel_on_disconnect = false

[journal]
fsync = "always"
snapshot_every = 500

[[instruments]]
symbol = "BTC-PERP"
price_scale = 1
qty_scale = 3
tick = "0.5"
lot = "0.005"
min_qty = "0.01"
max_qty = "10"

[risk]
session_rate_per_sec = 100000
session_burst = 100000
max_sessions = 8

[risk.defaults]
max_notional = "100000000"
price_band_pct = "50"
max_open_orders = 100000
max_open_orders_per_instrument = 100000
order_rate_per_sec = 100000
order_burst = 100000
max_position_per_instrument = "1000000"
"#,
    );
    c
}

/// What one session saw, across every connection.
#[derive(Default)]
struct Seen {
    /// Next MsgSeqNum to send.
    next_out: u64,
    /// Highest MsgSeqNum received.
    last_in: u64,
    /// The MsgSeqNum of the current connection's Logon.
    logon_seq: u64,
    /// Every MsgSeqNum received (or gap-filled), to ask for what the crash swallowed.
    received: std::collections::BTreeSet<u64>,
    /// ClOrdID → (OrdStatus, CumQty) of the latest report.
    orders: HashMap<String, (String, String)>,
    /// ExecIDs of every first-time report.
    exec_ids: HashSet<String>,
    /// Reports whose ExecID came twice (a doubled order or fill).
    doubled: Vec<String>,
    /// Messages received again on a ResendRequest across a crash.
    resent: u64,
}

/// The first MsgSeqNum not received yet.
fn first_missing(seen: &Seen) -> u64 {
    let mut n = 1;
    for &s in &seen.received {
        if s != n {
            break;
        }
        n += 1;
    }
    n
}

fn record(seen: &mut Seen, m: &Msg) {
    seen.last_in = seen.last_in.max(m.seq());
    seen.received.insert(m.seq());
    if m.msg_type() == "4" {
        if let Some(new) = m.get(36).and_then(|v| v.parse::<u64>().ok()) {
            seen.received.extend(m.seq()..new);
        }
    }
    if m.msg_type() != "8" {
        return;
    }
    let poss_dup = m.get(43) == Some("Y");
    if poss_dup {
        seen.resent += 1;
    }
    if let Some(exec) = m.get(17) {
        if !seen.exec_ids.insert(exec.to_owned()) && !poss_dup {
            seen.doubled.push(format!("{m:?}"));
        }
    }
    if let (Some(cl), Some(st), Some(cum)) = (m.get(11), m.get(39), m.get(14)) {
        // A rejected order (39=8) was never working: not an acknowledgement.
        // A resent (older) report never overrides a newer state.
        if st != "8" && !(poss_dup && seen.orders.contains_key(cl)) {
            seen.orders
                .insert(cl.to_owned(), (st.to_owned(), cum.to_owned()));
        }
    }
}

/// Answers a ResendRequest of the server (it lost the tail of what we sent, unread at the
/// kill) with a gap fill up to this connection's Logon (`logon_seq`): the orders in the gap
/// were never acknowledged, and what followed the Logon the server has.
fn answer(c: &mut FixClient, w: &TcpStream, m: &Msg, logon_seq: u64) {
    if m.msg_type() == "2" {
        let begin: u64 = m.get(7).and_then(|v| v.parse().ok()).unwrap_or(1);
        let next = (logon_seq + 1).to_string();
        let fill = c.encode("4", begin, &[(43, "Y"), (123, "Y"), (36, next.as_str())]);
        let _ = (&*w).write_all(&fill);
    }
}

/// Connects, logs on at the session's numbers and asks for everything after the last
/// message received (a resend across the crash). `None` if the server is down.
fn connect(port: u16, i: usize, seen: &mut Seen) -> Option<(FixClient, TcpStream)> {
    let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let w = s.try_clone().ok()?;
    let mut c = FixClient::over(Box::new(s), "FIX.4.4");
    c.sender = COMP_IDS[i].to_owned();
    c.seq = seen.next_out;
    seen.logon_seq = c.seq;
    let logon = c.encode("A", c.seq, &[(98, "0"), (108, "30")]);
    c.seq += 1;
    (&w).write_all(&logon).ok()?;
    let a = c.try_recv()?;
    if a.msg_type() != "A" {
        return None;
    }
    assert!(
        a.seq() > seen.last_in,
        "outbound numbers continue across the crash"
    );
    record(seen, &a);
    let from = first_missing(seen).to_string();
    let rr = c.encode("2", c.seq, &[(7, from.as_str()), (16, "0")]);
    c.seq += 1;
    (&w).write_all(&rr).ok()?;
    seen.next_out = c.seq;
    Some((c, w))
}

/// One session's flood until `stop`: alternately a resting buy and a sell that crosses the
/// other sessions' buys, reading every report.
fn flood(port: u16, i: usize, round: usize, stop: &AtomicBool, seen: &Mutex<Seen>) {
    let Some((mut c, w)) = connect(port, i, &mut seen.lock().unwrap()) else {
        return;
    };
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let cl = format!("{}-{round}-{n}", COMP_IDS[i]);
        let (side, price) = if n % 2 == 0 {
            ("1", "100")
        } else {
            ("2", "99.5")
        };
        let bytes = c.encode(
            "D",
            c.seq,
            &[
                (11, cl.as_str()),
                (21, "1"),
                (55, "BTC-PERP"),
                (54, side),
                (60, "20260101-00:00:00"),
                (38, "0.01"),
                (40, "2"),
                (44, price),
                (59, "1"),
            ],
        );
        c.seq += 1;
        seen.lock().unwrap().next_out = c.seq;
        if (&w).write_all(&bytes).is_err() {
            return;
        }
        // Read until this order's own report (others' fills come in between).
        loop {
            let Some(m) = c.try_recv() else { return };
            let mut s = seen.lock().unwrap();
            record(&mut s, &m);
            answer(&mut c, &w, &m, s.logon_seq);
            if m.msg_type() == "8" && m.get(11) == Some(cl.as_str()) && m.get(43) != Some("Y") {
                break;
            }
        }
    }
}

#[test]
fn sigkill_under_a_flood_loses_and_doubles_nothing_and_the_data_at_rest_is_ciphertext() {
    sigkill_rounds("");
}

/// The same with the core loop as a task beside the socket tasks (`core.threading = "shared"`).
#[test]
fn with_a_shared_core_sigkill_under_a_flood_loses_and_doubles_nothing() {
    sigkill_rounds("\n[core]\nthreading = \"shared\"\n");
}

fn sigkill_rounds(extra: &str) {
    let port = free_port();
    let config = config(port) + extra;
    let mut server = Server::configure(&config, &[port], &[(MASTER_KEY_ENV, MASTER_KEY)]);
    server.launch();
    let seen: Vec<Arc<Mutex<Seen>>> = (0..3)
        .map(|_| {
            Arc::new(Mutex::new(Seen {
                next_out: 1,
                ..Seen::default()
            }))
        })
        .collect();
    let mut rng = Instant::now().elapsed().subsec_nanos() as u64 | 1;
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..3)
            .map(|i| {
                let (stop, seen) = (stop.clone(), seen[i].clone());
                std::thread::spawn(move || flood(port, i, round, &stop, &seen))
            })
            .collect();
        // A random moment in the flood.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(300 + rng % 700));
        server.signal("KILL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.is_running() {
            assert!(Instant::now() < deadline, "SIGKILL did not end the server");
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("client thread");
        }
        server.restart();
        let log = server.log_text();
        assert!(log.contains("journal replayed"), "{log}");
        // Snapshots every 500 records (taken on the journal thread's replica): after the
        // first round's flood a restart starts from one and replays only the records after it.
        if round > 0 {
            assert!(
                log.contains("state restored from a snapshot"),
                "round {round}: {log}"
            );
        }
    }

    // Every session resumes: logon, resend across the last crash, then the status of every
    // order it saw acknowledged and still working.
    let mut acked = 0;
    let mut finished_unseen: Vec<String> = Vec::new();
    for (i, seen) in seen.iter().enumerate() {
        let mut s = seen.lock().unwrap();
        let (mut c, w) = connect(port, i, &mut s).expect("reconnect after the crashes");
        // Drain the resend.
        (&w).write_all(&c.encode("1", c.seq, &[(112, "DRAINED")]))
            .unwrap();
        c.seq += 1;
        loop {
            let Ok(m) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.recv())) else {
                panic!(
                    "no answer to the TestRequest: {}",
                    server
                        .log_text()
                        .lines()
                        .rev()
                        .take(30)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            };
            record(&mut s, &m);
            answer(&mut c, &w, &m, s.logon_seq);
            if m.msg_type() == "0" && m.get(112) == Some("DRAINED") {
                break;
            }
        }
        assert!(
            s.doubled.is_empty(),
            "an order or fill was reported twice: {:?}",
            s.doubled
        );
        let working: Vec<(String, String)> = s
            .orders
            .iter()
            .filter(|(_, (st, _))| st == "0" || st == "1")
            .map(|(cl, (_, cum))| (cl.clone(), cum.clone()))
            .collect();
        acked += s.orders.len();
        for (cl, cum) in working {
            let side = if cl.ends_with(['0', '2', '4', '6', '8']) {
                "1"
            } else {
                "2"
            };
            (&w).write_all(&c.encode(
                "H",
                c.seq,
                &[(11, cl.as_str()), (55, "BTC-PERP"), (54, side)],
            ))
            .unwrap();
            c.seq += 1;
            let r = loop {
                let m = c.recv();
                if m.msg_type() == "8" && m.get(11) == Some(cl.as_str()) {
                    break m;
                }
                record(&mut s, &m);
                answer(&mut c, &w, &m, s.logon_seq);
            };
            let st = r.get(39).unwrap_or("");
            // Still working with at least what was seen filled, or since finished by a fill
            // reported to us (then its status below is that fill's).
            let now_state = s.orders.get(&cl).cloned().unwrap_or_default();
            if !(st == "0" || st == "1" || now_state.0 == "2") {
                // No longer working, and we never got its fill (the report was in flight at
                // the kill): the journal must show how it ended.
                finished_unseen.push(cl.clone());
            }
            if st == "0" || st == "1" {
                let had: f64 = cum.parse().unwrap_or(0.0);
                let has: f64 = r.get(14).and_then(|v| v.parse().ok()).unwrap_or(0.0);
                assert!(has >= had, "order {cl} lost fills: {had} then {has}");
            }
        }
        s.next_out = c.seq;
    }
    assert!(acked > 10, "the flood got orders through: {acked}");

    assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    // The journal's events: every ExecID once, every trade twice (buyer and seller), and each
    // acknowledged order that is no longer working ended (by a fill or a self-trade cancel).
    let (code, export) = server.cli(&["journal", "export", "--format", "jsonl"]);
    assert_eq!(code, 0, "{export}");
    let mut exec_ids = HashSet::new();
    let mut trades: HashMap<u64, u32> = HashMap::new();
    let mut ended: HashSet<String> = HashSet::new();
    for line in export.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            exec_ids.insert(v["exec_id"].as_u64().unwrap()),
            "ExecID twice: {line}"
        );
        let trade = v["trade_id"].as_u64().unwrap();
        if trade != 0 {
            *trades.entry(trade).or_default() += 1;
        }
        // Filled, or cancelled by self-trade prevention (the sessions cross themselves too).
        if v["leaves_qty"] == "0" && (v["type"] == "fill" || v["type"] == "canceled") {
            ended.insert(v["cl_ord_id"].as_str().unwrap().to_owned());
        }
    }
    assert!(!trades.is_empty(), "the flood crossed");
    for (t, n) in &trades {
        assert_eq!(*n, 2, "trade {t} has {n} sides in the journal");
    }
    for cl in &finished_unseen {
        if !ended.contains(cl) {
            let (_, dump) = server.cli(&["journal", "dump"]);
            let tag = format!("cl_ord_id={cl} ");
            let lines: Vec<&str> = dump.lines().filter(|l| l.contains(&tag)).collect();
            panic!(
                "order {cl} acknowledged, now unknown, and never ended: {lines:#?}\n{}",
                server.log_text()
            );
        }
    }

    // The replay is deterministic: every snapshot marker's state hash, taken live, is
    // reproduced by a replay (verify fails otherwise), and two replays agree.
    let (code, out) = server.cli(&["journal", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 0 mismatched"), "{out}");
    // The latest snapshot restores with this config, and the full replay reaches its state.
    assert!(out.contains(") restores"), "{out}");
    assert!(!out.contains(" 0 snapshot(s)"), "{out}");
    let hash = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("state hash: "))
            .map(str::to_owned)
    };
    let first = hash(&out).expect("state hash line");
    let (_, again) = server.cli(&["journal", "verify"]);
    assert_eq!(hash(&again), Some(first));

    // The data at rest is ciphertext: no ClOrdID, account name or symbol in any file of the
    // data dir (journal, message stores, audit log).
    let data = server.data_dir();
    assert!(!files_under(&data).is_empty());
    for needle in ["CLA-0-1", ACCOUNTS[0], "BTC-PERP"] {
        let found = files_containing(&data, needle);
        assert!(found.is_empty(), "{needle} found in plaintext in {found:?}");
    }
}

/// Runs the configured server until it exits (start-up failures), returning its exit code.
fn start_fails(server: &Server) -> (Option<i32>, String) {
    let out = std::process::Command::new(crate::harness::bin())
        .args(["serve", "--config"])
        .arg(&server.config)
        .current_dir(&server.dir)
        .env(MASTER_KEY_ENV, MASTER_KEY)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_torn_tail_is_cut_and_reported_and_damage_in_the_middle_stops_the_start_up() {
    let port = free_port();
    let mut server = Server::configure(&config(port), &[port], &[(MASTER_KEY_ENV, MASTER_KEY)]);
    server.launch();
    // A few orders, over two runs of the server: two segments.
    let mut seen = Seen {
        next_out: 1,
        ..Seen::default()
    };
    for round in 0..2 {
        let (mut c, w) = connect(port, 0, &mut seen).expect("connect");
        for n in 0..5 {
            let cl = format!("T-{round}-{n}");
            let d = c.encode(
                "D",
                c.seq,
                &[
                    (11, cl.as_str()),
                    (21, "1"),
                    (55, "BTC-PERP"),
                    (54, "1"),
                    (60, "20260101-00:00:00"),
                    (38, "0.01"),
                    (40, "2"),
                    (44, "100"),
                    (59, "1"),
                ],
            );
            c.seq += 1;
            (&w).write_all(&d).unwrap();
            while c.recv().get(11) != Some(cl.as_str()) {}
        }
        seen.next_out = c.seq;
        assert_eq!(server.stop(), Some(0), "{}", server.log_text());
        if round == 0 {
            server.launch();
        }
    }
    let journal = server.data_dir().join("journal");
    let mut segments: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "{segments:?}");

    // A torn tail (zeros after the last batch, as a crash during a write leaves): cut,
    // reported, and the server starts.
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    f.write_all(&[0u8; 100]).unwrap();
    drop(f);
    server.launch();
    assert!(
        server.log_text().contains("torn tail cut"),
        "{}",
        server.log_text()
    );
    assert_eq!(server.stop(), Some(0));
    assert!(std::fs::metadata(last).unwrap().len() <= len + 100);

    // A flipped byte in the first segment: the start-up stops with exit code 2, naming it.
    let first = &segments[0];
    let mut bytes = std::fs::read(first).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 0x40;
    std::fs::write(first, &bytes).unwrap();
    let (code, out) = start_fails(&server);
    assert_eq!(code, Some(2), "{out}");
    let name = first.file_name().unwrap().to_str().unwrap();
    assert!(out.contains(name), "the message names the segment: {out}");
    assert!(out.contains("offset") || out.contains("byte"), "{out}");
    // So does verify.
    let (code, out) = server.cli(&["journal", "verify"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(name), "{out}");
}

/// Sends `n` resting orders on session 0 and reads each one's report.
fn place_orders(port: u16, seen: &mut Seen, tag: &str, n: usize) {
    let (mut c, w) = connect(port, 0, seen).expect("connect");
    for k in 0..n {
        let cl = format!("{tag}-{k}");
        let d = c.encode(
            "D",
            c.seq,
            &[
                (11, cl.as_str()),
                (21, "1"),
                (55, "BTC-PERP"),
                (54, "1"),
                (60, "20260101-00:00:00"),
                (38, "0.01"),
                (40, "2"),
                (44, "100"),
                (59, "1"),
            ],
        );
        c.seq += 1;
        (&w).write_all(&d).unwrap();
        while c.recv().get(11) != Some(cl.as_str()) {}
    }
    seen.next_out = c.seq;
}

#[test]
fn a_master_key_rotation_reaches_the_journal_without_a_restart() {
    let port = free_port();
    // One signed session, so the server loads the vault and follows the key file.
    let config = config(port)
        + "\n[auth]\nmaster_key_file = \"{DATA_DIR}/master.key\"\n\n[[sessions]]\n\
           begin_string = \"FIX.4.4\"\nsender_comp_id = \"ISLD\"\ntarget_comp_id = \"SIGNED\"\n\
           accounts = [\"CRASH-ACC-A\"]\n";
    let mut server = Server::configure(&config, &[port], &[]);
    server.create_master_key_file();
    // A vault for the rotation to re-encrypt.
    let (code, out) = server.cli(&[
        "keys",
        "create",
        "--account",
        ACCOUNTS[0],
        "--scopes",
        "trade",
    ]);
    assert_eq!(code, 0, "{out}");
    server.launch();
    let mut seen = Seen {
        next_out: 1,
        ..Seen::default()
    };
    place_orders(port, &mut seen, "BEFORE", 3);

    let (code, out) = server.cli(&["keys", "rotate-master"]);
    assert_eq!(code, 0, "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .log_text()
        .contains("journal: new segments use the rotated master key")
    {
        assert!(Instant::now() < deadline, "{}", server.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    place_orders(port, &mut seen, "AFTER", 3);
    assert_eq!(server.stop(), Some(0), "{}", server.log_text());

    // Old segments stay readable under the old key, new ones use the new key.
    let (code, out) = server.cli(&["journal", "verify"]);
    assert_eq!(code, 0, "{out}");
    let keys_line = out
        .lines()
        .find(|l| l.starts_with("master keys in use: "))
        .unwrap_or_default()
        .to_owned();
    assert!(keys_line.contains('1') && keys_line.contains('2'), "{out}");
    // `journal reencrypt` rewrites the old ones: only the new key is left in use.
    let (code, out) = server.cli(&["journal", "reencrypt"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = server.cli(&["journal", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("master keys in use: 2\n"), "{out}");
    // And the server recovers every order from it.
    server.launch();
    let (mut c, w) = connect(port, 0, &mut seen).expect("reconnect");
    for cl in ["BEFORE-0", "AFTER-2"] {
        (&w).write_all(&c.encode("H", c.seq, &[(11, cl), (55, "BTC-PERP"), (54, "1")]))
            .unwrap();
        c.seq += 1;
        let r = loop {
            let m = c.recv();
            if m.msg_type() == "8" && m.get(11) == Some(cl) {
                break m;
            }
        };
        assert_eq!(r.get(39), Some("0"), "{cl} still working: {r:?}");
    }
}
