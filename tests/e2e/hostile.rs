//! A hostile session against the real binary: hundreds of well-framed but malformed,
//! contradictory or foreign order-entry messages, generated from a fixed seed. Each must be
//! answered with a standard rejection (or a normal report if the mutation happened to leave it
//! valid), the hostile session must stay usable, and the other accounts' orders and fills must
//! be untouched. Set `PORTCULLIS_HOSTILE_SEED` to replay another sequence.

use crate::at_rest::{dev_like_config, logon};
use crate::auth::{create_key, env};
use crate::harness::{
    free_port, hostile_seed, test_cert, tls_client, tls_connect, FixClient, Msg, Rng, Server,
};
use crate::pipeline::{assert_fields, config, connect, connect_at, limit, ports, S, SHARED_CORE};
use crate::ws::Ws;

/// Values that break a field's type, range, format or meaning. No BTC-PERP: the other
/// accounts' book must stay theirs.
const NASTY: &[&str] = &[
    "",
    "0",
    "-1",
    "-0",
    "+1",
    " 1",
    "1 ",
    "1e3",
    "1.5e-3",
    "NaN",
    "inf",
    "0x10",
    "99999999999999999999999999999",
    "0.000000000001",
    "00001",
    "1.",
    ".5",
    "1,5",
    "2000.0000000",
    "abc",
    "X",
    "Z",
    "7",
    "ETH-PERP",
    "ETH-USDT",
    "BTC-261225-100000-C",
    "BTC-PERP-X",
    "ÿÿ",
    "20261301-25:61:61",
    "19700101-00:00:00",
    "ACC-A",
    "ACC-B",
    "A1",
];

/// Values a field's type accepts but the order's meaning does not (out of range, off the tick
/// or lot, unsupported enum values, other accounts' ids): these reach the risk checks, the
/// core and the book rather than the session layer's validation.
const PLAUSIBLE: &[&str] = &[
    "0", "1", "2", "3", "4", "5", "6", "9", "-5", "0.001", "0.015", "0.5", "1.5", "100", "1000000",
    "99999999", "2000.01", "2000.05", "1999", "1", "E1", "E2", "E5", "A1", "ACC-A", "ACC-E",
    "ETH-PERP",
];

/// Message types an order-entry client might send, right or wrong (session-level types are
/// left out: they change the session's state, which is the session layer's tests' business).
const MSG_TYPES: &[&str] = &[
    "D", "F", "G", "H", "q", "AF", "x", "y", "i", "b", "8", "j", "Z", "AE", "UZ", "E", "K", "M",
    "N", "V", "W",
];

/// A valid message of each order-entry kind on ETH-PERP for `n`, before mutation.
fn template(rng: &mut Rng, n: usize, a_order_id: &str) -> (String, Vec<(u32, String)>) {
    let cl = format!("E{n}");
    let prev = format!("E{}", n.saturating_sub(1 + rng.below(3)));
    let side = rng.pick(&["1", "2"]).to_string();
    let f = |v: &[(u32, &str)]| {
        v.iter()
            .map(|(t, s)| (*t, s.to_string()))
            .collect::<Vec<_>>()
    };
    let (stop_cl, maker_cl) = (format!("{cl}S"), format!("{cl}T"));
    let list_id = (1 + rng.below(40)).to_string();
    match rng.below(12) {
        0 | 1 => (
            "D".into(),
            f(&[
                (11, &cl),
                (55, "ETH-PERP"),
                (54, &side),
                (60, "20260101-00:00:00"),
                (38, "1"),
                (40, "2"),
                (44, "2000"),
                (59, "1"),
            ]),
        ),
        2 => (
            "F".into(),
            f(&[
                (41, &prev),
                (11, &cl),
                (55, "ETH-PERP"),
                (54, &side),
                (38, "1"),
                (60, "20260101-00:00:00"),
            ]),
        ),
        3 => (
            "G".into(),
            f(&[
                (41, &prev),
                (11, &cl),
                (55, "ETH-PERP"),
                (54, &side),
                (38, "2"),
                (40, "2"),
                (44, "2001"),
                (60, "20260101-00:00:00"),
            ]),
        ),
        // Another account's order, by its OrderID and ClOrdID: never this session's to touch.
        4 => (
            rng.pick(&["F", "G", "H"]).to_string(),
            f(&[
                (37, a_order_id),
                (41, "A1"),
                (11, &cl),
                (55, "BTC-PERP"),
                (54, "2"),
                (38, "1"),
                (40, "2"),
                (44, "1000"),
                (60, "20260101-00:00:00"),
            ]),
        ),
        // The instrument list: one symbol, one security type or all.
        5 => (
            "x".into(),
            f(&[
                (320, &cl),
                (559, rng.pick(&["0", "1", "4"])),
                (55, "ETH-PERP"),
                (167, "FUT"),
            ]),
        ),
        // Two-sided quotes, and their cancel.
        6 => (
            "i".into(),
            f(&[
                (117, &cl),
                (301, "2"),
                (296, "1"),
                (302, "1"),
                (295, "1"),
                (299, &cl),
                (55, "ETH-PERP"),
                (132, "1999"),
                (133, "2001"),
                (134, "1"),
                (135, "1"),
            ]),
        ),
        7 => (
            "Z".into(),
            f(&[
                (117, &cl),
                (298, rng.pick(&["1", "4"])),
                (295, "1"),
                (55, "ETH-PERP"),
            ]),
        ),
        // An order list: a stop below and a post-only limit above, one cancelling the other.
        8 => (
            "E".into(),
            f(&[
                (73, "2"),
                (11, &stop_cl),
                (55, "ETH-PERP"),
                (54, "2"),
                (38, "1"),
                (40, "3"),
                (99, "1900"),
                (11, &maker_cl),
                (55, "ETH-PERP"),
                (54, "2"),
                (38, "1"),
                (40, "2"),
                (18, "6"),
                (44, "2100"),
                (1385, "1"),
                (25014, &cl),
            ]),
        ),
        // A list's status or cancel, by a ListID that may be anyone's.
        9 => (
            rng.pick(&["K", "M"]).to_string(),
            f(&[(66, &list_id), (60, "20260101-00:00:00")]),
        ),
        // A snapshot of the book.
        10 => (
            "V".into(),
            f(&[
                (262, &cl),
                (263, "0"),
                (264, rng.pick(&["0", "1", "5"])),
                (267, "2"),
                (269, "0"),
                (269, "1"),
                (146, "1"),
                (55, "ETH-PERP"),
            ]),
        ),
        _ => (
            "q".into(),
            f(&[(11, &cl), (530, "7"), (60, "20260101-00:00:00")]),
        ),
    }
}

/// One to three mutations: a value replaced, a field dropped or repeated, a stray or
/// foreign field added, the MsgType changed.
fn mutate(rng: &mut Rng, msg_type: &mut String, fields: &mut Vec<(u32, String)>) {
    let count = rng.pick(&[1, 1, 1, 1, 1, 1, 2, 2, 2, 3]);
    for _ in 0..count {
        match rng.below(7) {
            0..=2 if !fields.is_empty() => {
                let i = rng.below(fields.len());
                let pool = if rng.below(3) == 0 { NASTY } else { PLAUSIBLE };
                fields[i].1 = rng.pick(pool).to_string();
            }
            3 if !fields.is_empty() => {
                fields.remove(rng.below(fields.len()));
            }
            4 if !fields.is_empty() => {
                let f = fields[rng.below(fields.len())].clone();
                fields.push(f);
            }
            5 => {
                let tag = rng.pick(&[1u32, 9999, 5000, 0, 18, 99, 111, 126, 211, 7928]);
                fields.push((tag, rng.pick(NASTY).to_string()));
            }
            _ => *msg_type = rng.pick(MSG_TYPES).to_string(),
        }
    }
}

/// A valid limit order: buy 0.01 ETH-PERP at 1999.95.
fn small_eth_buy(c: &mut FixClient, cl: &str) {
    c.send(
        "D",
        &[
            (11, cl),
            (55, "ETH-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (38, "0.01"),
            (40, "2"),
            (44, "1999.95"),
        ],
    );
}

/// Reads up to the answer to an OrderStatusRequest for the unknown order `id`: everything the
/// server said before it. The request goes the way an order goes (through the core when the
/// socket task does not answer it first), so every answer to what was sent before is in.
fn answers_until_fence(c: &mut FixClient, id: &str) -> Vec<Msg> {
    c.send("H", &[(11, id), (55, "ETH-PERP"), (54, "1")]);
    let mut out = Vec::new();
    loop {
        let m = c
            .try_recv()
            .unwrap_or_else(|| panic!("the server closed the hostile session; said {out:?}"));
        if m.msg_type() == "8" && m.get(11) == Some(id) {
            assert_fields(&m, &[(150, "I"), (39, "8"), (103, "5")]);
            return out;
        }
        out.push(m);
    }
}

#[test]
fn a_hostile_session_is_answered_message_by_message_and_harms_no_one() {
    hostile_session("");
}

#[test]
fn with_a_shared_core_a_hostile_session_is_answered_message_by_message_and_harms_no_one() {
    hostile_session(SHARED_CORE);
}

/// The hostile session against a server with `extra` config.
fn hostile_session(extra: &str) {
    let seed = hostile_seed();
    let p = ports();
    let session = |comp_id, account| S::plain("FIX.4.4", comp_id, account);
    let sessions = [
        session("TWA", "ACC-A"),
        session("TWB", "ACC-B"),
        session("EVIL", "ACC-E"),
    ];
    // With a journal (sealed under the master key), to check the state it kept afterwards.
    let extra = format!("{extra}\n[journal]\nfsync = \"never\"\n");
    let mut server = Server::configure(&config(p, &sessions, &extra), &p, &env());
    server.launch();
    let mut a = connect(p, "FIX.4.4", "TWA", None);
    let mut b = connect(p, "FIX.4.4", "TWB", None);
    let mut evil = connect(p, "FIX.4.4", "EVIL", None);

    let new = limit(&mut a, "A1", "2", "1", "1000");
    assert_fields(&new, &[(11, "A1"), (150, "0"), (39, "0")]);
    let a_order_id = new.get(37).unwrap().to_owned();

    let mut rng = Rng::new(seed);
    let mut answered_by_kind = std::collections::BTreeMap::<String, usize>::new();
    for n in 0..400 {
        let (mut msg_type, mut fields) = template(&mut rng, n, &a_order_id);
        mutate(&mut rng, &mut msg_type, &mut fields);
        let borrowed: Vec<(u32, &str)> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
        let sent = evil.encode(&msg_type, evil.seq, &borrowed);
        let garble = rng.below(20) == 0;
        if garble {
            // A wrong CheckSum: ignored as garbled, its number not taken.
            let mut bad = sent.clone();
            let at = bad.len() - 2;
            bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
            evil.write(&bad);
        } else {
            evil.seq += 1;
            evil.write(&sent);
        }
        let answers = answers_until_fence(&mut evil, &format!("FENCE{n}"));
        let what = format!(
            "seed {seed}, message {n}: {}",
            String::from_utf8_lossy(&sent).replace('\x01', "|")
        );
        if garble {
            assert!(
                answers.is_empty(),
                "{what}: a garbled message answered {answers:?}"
            );
            continue;
        }
        // A MassQuote that asks for no acknowledgement (QuoteResponseLevel other than 2) and
        // is taken whole gets none.
        let quiet_quote =
            msg_type == "i" && !fields.iter().any(|(t, v)| *t == 301 && v.as_str() == "2");
        assert!(!answers.is_empty() || quiet_quote, "{what}: no answer");
        for m in &answers {
            assert!(
                ["8", "9", "3", "j", "r", "y", "b", "N", "W", "Y"].contains(&m.msg_type()),
                "{what}: unexpected answer {m:?}"
            );
            // Nothing done on another account's order, nor for another account.
            let rejection = matches!(m.msg_type(), "3" | "j" | "9" | "Y")
                || (m.msg_type() == "N" && m.get(431) == Some("7"))
                || m.get(39) == Some("8")
                || (m.msg_type() == "y" && m.get(560) != Some("0"))
                || (m.msg_type() == "b" && (m.get(297) == Some("5") || m.get(368).is_some()));
            if m.get(37) == Some(a_order_id.as_str()) {
                assert!(rejection, "{what}: acted on another account's order: {m:?}");
            }
            if m.get(1).is_some_and(|account| account != "ACC-E") {
                assert!(rejection, "{what}: acted for another account: {m:?}");
            }
            // A rejection says why.
            if rejection {
                assert!(
                    m.get(58).is_some_and(|t| !t.is_empty()),
                    "{what}: no Text(58) in {m:?}"
                );
            }
            *answered_by_kind.entry(m.msg_type().to_owned()).or_default() += 1;
        }
    }
    // The generator reached every kind of answer, so the loop above checked each of them.
    for kind in ["8", "9", "3", "j", "y", "b", "N", "W"] {
        assert!(
            answered_by_kind.get(kind).copied().unwrap_or(0) > 0,
            "seed {seed}: no answer of type {kind}: {answered_by_kind:?}"
        );
    }

    // The other accounts' book is as it was: A's order is still live and crosses B's.
    a.send(
        "H",
        &[(37, &a_order_id), (11, "A1"), (55, "BTC-PERP"), (54, "2")],
    );
    assert_fields(&a.expect("8"), &[(11, "A1"), (39, "0"), (151, "1.000")]);
    assert_fields(
        &limit(&mut b, "B1", "1", "1", "1000"),
        &[(11, "B1"), (39, "0")],
    );
    assert_fields(
        &b.expect("8"),
        &[(11, "B1"), (39, "2"), (32, "1.000"), (31, "1000.0")],
    );
    assert_fields(
        &a.expect("8"),
        &[(11, "A1"), (39, "2"), (32, "1.000"), (31, "1000.0")],
    );
    // The hostile session itself still trades normally.
    evil.send(
        "q",
        &[(11, "E-MASS"), (530, "7"), (60, "20260101-00:00:00")],
    );
    while evil.recv().msg_type() != "r" {}
    small_eth_buy(&mut evil, "E-LAST");
    assert_fields(&evil.expect("8"), &[(11, "E-LAST"), (150, "0"), (39, "0")]);

    assert!(server.is_running(), "the server exited");
    let log = server.log_text();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");

    // What the journal kept replays to the same state; it holds nothing the hostile session
    // did for another account, and one trade, between A and B; a restart resumes from it.
    let evil_seq = evil.seq;
    drop((a, b, evil));
    assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    let (code, out) = server.cli(&["journal", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 0 mismatched"), "{out}");
    let (code, export) = server.cli(&["journal", "export", "--format", "jsonl"]);
    assert_eq!(code, 0, "{export}");
    // Sessions and accounts are numbered in config order: TWA / ACC-A, TWB / ACC-B, EVIL / ACC-E.
    let a_order: u64 = a_order_id.parse().unwrap();
    let mut trade_sides = Vec::new();
    for line in export.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["order_id"] == a_order {
            assert_eq!(v["account"], 0, "seed {seed}: {line}");
        }
        if v["session"] == 2 {
            assert_eq!(v["account"], 2, "seed {seed}: {line}");
        }
        if v["trade_id"].as_u64().unwrap_or(0) != 0 {
            trade_sides.push(v["account"].as_u64().unwrap());
        }
    }
    trade_sides.sort();
    assert_eq!(trade_sides, [0, 1], "seed {seed}: one trade, A against B");
    server.launch();
    let mut evil = connect_at(p, "FIX.4.4", "EVIL", None, evil_seq);
    small_eth_buy(&mut evil, "E-AFTER");
    assert_fields(&evil.expect("8"), &[(11, "E-AFTER"), (39, "0")]);
}

/// What a junk connection starts with: nothing, or the opening of a real protocol (FIX, a
/// WebSocket upgrade, HTTP, a TLS ClientHello) cut short or followed by noise.
const JUNK_PREFIXES: &[&[u8]] = &[
    b"",
    b"8=FIX.4.4\x019=",
    b"8=FIX.4.4\x019=65\x0135=A\x0134=1\x0149=DEMO\x0156=PORTCULLIS\x01",
    b"8=FIX.4.4\x019=99999999999999999999\x01",
    b"8=FIXT.1.1\x019=5\x0135=0\x0110=000\x01",
    b"GET /ws-api/v3 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
    b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"\x16\x03\x03\xff\xff",
    b"\x00\x00\x00\x00",
];

/// Opens `count` connections to `port`, each sending a junk prefix and random bytes, some
/// closing at once and some after half-closing and reading what the server says.
fn junk_connections(rng: &mut Rng, port: u16, count: usize) {
    use std::io::{Read, Write};
    for _ in 0..count {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            panic!("listener {port} refused a connection");
        };
        s.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let mut bytes = rng.pick(JUNK_PREFIXES).to_vec();
        let len = rng.pick(&[0, 1, 7, 100, 1000, 5000]);
        let printable = rng.below(2) == 0;
        bytes.extend((0..len).map(|_| {
            let b = rng.below(256) as u8;
            if printable {
                b' ' + b % 95
            } else {
                b
            }
        }));
        // The server may close first (it owes junk nothing): a failed write is fine.
        let _ = s.write_all(&bytes);
        if rng.below(2) == 0 {
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        }
    }
}

#[test]
fn junk_at_every_listener_is_dropped_and_every_listener_still_serves() {
    use std::io::{Read, Write};

    let seed = hostile_seed();
    let ports: [u16; 8] = std::array::from_fn(|_| free_port());
    let [fix_tls, _fix42, fix44, _fixt, ws_tls, ws_tcp, admin, metrics] = ports;
    let mut server = Server::configure(&dev_like_config(&ports, "JUNK-ACC"), &ports, &env());
    let (_, _, cert) = test_cert(&server.dir);
    let key = create_key(
        &server,
        &["--account", "JUNK-ACC", "--scopes", "trade,read"],
    );
    server.launch();

    let mut rng = Rng::new(seed);
    for port in ports {
        // More than a listener's max_connections (64 in the dev config): a connection the
        // junk left counted would refuse the checks below.
        junk_connections(&mut rng, port, 80);
    }

    assert!(
        server.is_running(),
        "the server exited:\n{}",
        server.log_text()
    );
    // Every listener still serves its protocol.
    let (mut c, _) = logon(fix44, &key, 1);
    c.send(
        "D",
        &[
            (11, "AFTER-JUNK"),
            (1, "JUNK-ACC"),
            (21, "1"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (38, "1"),
            (40, "2"),
            (44, "100"),
        ],
    );
    let report = c.expect("8");
    assert_eq!(report.get(11), Some("AFTER-JUNK"), "{report:?}");
    let tls13 = tls_client(cert, &[&rustls::version::TLS13]);
    for port in [fix_tls, ws_tls] {
        tls_connect(port, tls13.clone()).expect("TLS handshake after the junk");
    }
    let r = Ws::plain(ws_tcp).call(serde_json::json!(1), "ping", serde_json::json!({}));
    assert_eq!(r["status"], 200, "{r}");
    let mut https = tls_connect(admin, tls13).expect("admin TLS handshake after the junk");
    https
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = https.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", metrics)).unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = plain.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
    assert!(
        answer.contains("portcullis_sessions_connected"),
        "{answer:.2000}"
    );

    let log = server.log_text();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
