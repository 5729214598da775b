//! The order pipeline seen from the outside: the real binary, real sockets, FIX sessions of
//! different accounts (signed Logons), orders that cross and fill, cancels, replaces, status
//! requests, mass cancels, every risk reject with its OrdRejReason, the operator's kill switch,
//! halts, marks and limits over the control socket, cancel-on-disconnect, back-pressure and
//! slow consumers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use portcullis_auth::fix_sig::{sign_logon, LogonFields};
use portcullis_fix::{Encoder, TimePrecision, UtcTimestamp};
use serde_json::Value;

use crate::auth::{create_key, env, Key};
use crate::harness::{free_port, FixClient, Msg, Server};

const INSTRUMENTS: &str = r#"
[[instruments]]
symbol = "BTC-PERP"
price_scale = 1
qty_scale = 3
tick = "0.5"
lot = "0.005"
min_qty = "0.01"
max_qty = "10"

[[instruments]]
symbol = "ETH-PERP"
price_scale = 2
qty_scale = 2
tick = "0.05"
lot = "0.01"
min_qty = "0.01"
max_qty = "100"
"#;

const RISK: &str = r#"
[risk]
session_rate_per_sec = 1000
session_burst = 1000
max_sessions = 16

[risk.defaults]
max_notional = "50000"
price_band_pct = "10"
max_open_orders = 100
max_open_orders_per_instrument = 50
order_rate_per_sec = 1000
order_burst = 1000
"#;

/// One session of the test config: `begin_string`, the client's CompID, its accounts,
/// authentication, and extra keys.
pub(crate) struct S<'a> {
    pub begin: &'a str,
    pub comp_id: &'a str,
    pub account: &'a str,
    pub signed: bool,
}

impl<'a> S<'a> {
    /// A session without authentication.
    pub(crate) const fn plain(begin: &'a str, comp_id: &'a str, account: &'a str) -> Self {
        S {
            begin,
            comp_id,
            account,
            signed: false,
        }
    }

    /// A session whose Logon must be signed with a key of its account.
    pub(crate) const fn signed(begin: &'a str, comp_id: &'a str, account: &'a str) -> Self {
        S {
            begin,
            comp_id,
            account,
            signed: true,
        }
    }
}

/// A server config with one plain-TCP loopback listener per version in `ports` (4.2, 4.4,
/// FIXT.1.1), the given sessions, the test instruments and risk limits, and `extra`.
pub(crate) fn config(ports: [u16; 3], sessions: &[S<'_>], extra: &str) -> String {
    let mut c = String::from("data_dir = \"{DATA_DIR}\"\n");
    for (name, port, begin) in [
        ("fix42", ports[0], "FIX.4.2"),
        ("fix44", ports[1], "FIX.4.4"),
        ("fixt11", ports[2], "FIXT.1.1"),
    ] {
        c.push_str(&format!(
            "[[listeners]]\nname = \"{name}\"\nbind = \"127.0.0.1:{port}\"\ntls = false\nbegin_string = \"{begin}\"\n\n"
        ));
    }
    for s in sessions {
        c.push_str(&format!(
            "[[sessions]]\nbegin_string = \"{}\"\nsender_comp_id = \"ISLD\"\ntarget_comp_id = \"{}\"\naccounts = [\"{}\"]\nstore_sync = \"never\"\nauthentication = \"{}\"\n\n",
            s.begin,
            s.comp_id,
            s.account,
            if s.signed { "required" } else { "none" }
        ));
    }
    c.push_str(INSTRUMENTS);
    c.push_str(RISK);
    c.push_str(extra);
    c
}

pub(crate) fn ports() -> [u16; 3] {
    [free_port(), free_port(), free_port()]
}

fn port_of(ports: [u16; 3], begin: &str) -> u16 {
    match begin {
        "FIX.4.2" => ports[0],
        "FIX.4.4" => ports[1],
        _ => ports[2],
    }
}

fn sending_time() -> String {
    let mut out = Vec::new();
    UtcTimestamp::now().write(TimePrecision::Millis, &mut out);
    String::from_utf8(out).unwrap()
}

/// Connects `comp_id` and logs on, signed with `key` if given.
pub(crate) fn connect(
    ports: [u16; 3],
    begin: &'static str,
    comp_id: &str,
    key: Option<&Key>,
) -> FixClient {
    connect_at(ports, begin, comp_id, key, 1)
}

/// As [`connect`], with the client's next MsgSeqNum (a session's numbers persist).
pub(crate) fn connect_at(
    ports: [u16; 3],
    begin: &'static str,
    comp_id: &str,
    key: Option<&Key>,
    seq: u64,
) -> FixClient {
    let mut c = FixClient::tcp(port_of(ports, begin), begin);
    c.sender = comp_id.to_owned();
    c.seq = seq;
    match key {
        None => c.logon(30, &[]),
        Some(key) => {
            let st = sending_time();
            let seq = c.seq.to_string();
            let mut enc = Encoder::new();
            enc.start(begin.as_bytes(), b"A");
            enc.str(49, c.sender.as_bytes())
                .str(56, c.target.as_bytes())
                .str(34, seq.as_bytes())
                .str(52, st.as_bytes());
            enc.uint(98, 0).uint(108, 30);
            if begin == "FIXT.1.1" {
                enc.str(1137, b"9");
            }
            enc.str(553, key.id.as_bytes());
            let raw = sign_logon(
                key.secret.as_bytes(),
                &LogonFields {
                    sending_time: st.as_bytes(),
                    msg_type: b"A",
                    msg_seq_num: seq.as_bytes(),
                    sender_comp_id: c.sender.as_bytes(),
                    target_comp_id: c.target.as_bytes(),
                    username: key.id.as_bytes(),
                },
            );
            enc.data(95, 96, raw.as_bytes());
            let bytes = enc.finish().to_vec();
            c.seq += 1;
            c.write(&bytes);
        }
    }
    let a = c.recv();
    assert_eq!(a.msg_type(), "A", "logon of {comp_id}: {a:?}");
    c
}

/// A limit (or market, `price` None) order.
fn order(
    c: &mut FixClient,
    cl: &str,
    symbol: &str,
    side: &str,
    qty: &str,
    price: Option<&str>,
    tif: &str,
) {
    let mut f = vec![
        (11, cl),
        (21, "1"),
        (55, symbol),
        (54, side),
        (60, "20260101-00:00:00"),
        (38, qty),
        (59, tif),
    ];
    match price {
        Some(p) => {
            f.push((40, "2"));
            f.push((44, p));
        }
        None => f.push((40, "1")),
    }
    c.send("D", &f);
}

/// An OrderCancelRequest for the session's order `orig` on BTC-PERP.
fn cancel(c: &mut FixClient, orig: &str, cl: &str, side: &str) {
    c.send(
        "F",
        &[
            (41, orig),
            (11, cl),
            (55, "BTC-PERP"),
            (54, side),
            (60, "20260101-00:00:00"),
        ],
    );
}

/// A GTC limit order on BTC-PERP; returns the first report.
pub(crate) fn limit(c: &mut FixClient, cl: &str, side: &str, qty: &str, price: &str) -> Msg {
    order(c, cl, "BTC-PERP", side, qty, Some(price), "1");
    c.expect("8")
}

pub(crate) fn assert_fields(m: &Msg, want: &[(u32, &str)]) {
    for (t, v) in want {
        assert_eq!(m.get(*t), Some(*v), "tag {t} in {m:?}");
    }
}

/// Asserts an ExecutionReport rejecting an order with `code` and a text containing `text`.
fn assert_rejected(m: &Msg, cl: &str, code: &str, text: &str) {
    assert_eq!(m.msg_type(), "8", "{m:?}");
    assert_fields(m, &[(11, cl), (150, "8"), (39, "8"), (103, code)]);
    let t = m.get(58).unwrap_or("");
    assert!(t.contains(text), "Text(58) {t:?} lacks {text:?}: {m:?}");
}

fn admin(server: &Server, args: &[&str]) -> String {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    let (code, out) = server.cli(&all);
    assert_eq!(code, 0, "portcullis {all:?}: {out}\n{}", server.log_text());
    out
}

/// The operator commands in the audit log (decrypted by `portcullis audit export`).
fn audit_admin(server: &Server) -> Vec<Value> {
    server
        .audit_events(&[])
        .into_iter()
        .filter(|v| v["kind"] == "admin")
        .collect()
}

/// A TestRequest answered by a Heartbeat proves nothing else was queued before it.
fn nothing_else(c: &mut FixClient, id: &str) {
    c.send("1", &[(112, id)]);
    let hb = c.recv();
    assert_eq!(
        hb.msg_type(),
        "0",
        "expected only the Heartbeat, got {hb:?}"
    );
    assert_eq!(hb.get(112), Some(id));
}

fn two_signed_accounts(extra: &str) -> (Server, [u16; 3], FixClient, FixClient, Key) {
    let p = ports();
    let sessions = [
        S::signed("FIX.4.4", "TWA", "ACC-A"),
        S::signed("FIX.4.4", "TWB", "ACC-B"),
    ];
    let mut server = Server::configure(&config(p, &sessions, extra), &p, &env());
    let ka = create_key(&server, &["--account", "ACC-A", "--scopes", "trade"]);
    let kb = create_key(&server, &["--account", "ACC-B", "--scopes", "trade"]);
    server.launch();
    let a = connect(p, "FIX.4.4", "TWA", Some(&ka));
    let b = connect(p, "FIX.4.4", "TWB", Some(&kb));
    (server, p, a, b, ka)
}

/// Sessions `TWA` (account ACC-A) and `TWB` (ACC-B) on FIX 4.4, without authentication.
fn unsigned_pair() -> [S<'static>; 2] {
    [
        S::plain("FIX.4.4", "TWA", "ACC-A"),
        S::plain("FIX.4.4", "TWB", "ACC-B"),
    ]
}

/// `core.threading = "shared"`: the core loop as a task beside the socket tasks.
pub(crate) const SHARED_CORE: &str = "\n[core]\nthreading = \"shared\"\n";

#[test]
fn two_accounts_cross_fill_cancel_replace_ask_status_and_mass_cancel() {
    cross_fill_cancel_replace_status_mass_cancel("");
}

#[test]
fn with_a_shared_core_two_accounts_cross_fill_cancel_replace_ask_status_and_mass_cancel() {
    cross_fill_cancel_replace_status_mass_cancel(SHARED_CORE);
}

fn cross_fill_cancel_replace_status_mass_cancel(extra: &str) {
    let (server, _p, mut a, mut b, _) = two_signed_accounts(extra);
    let mut exec_ids = HashSet::new();
    let mut seen = |m: &Msg| {
        if m.msg_type() == "8" {
            assert!(
                exec_ids.insert(m.get(17).unwrap().to_owned()),
                "ExecID repeated: {m:?}"
            );
        }
    };

    // A rests a sell; it is acknowledged.
    let m = limit(&mut a, "A1", "2", "3", "100");
    seen(&m);
    assert_fields(
        &m,
        &[
            (150, "0"),
            (39, "0"),
            (1, "ACC-A"),
            (55, "BTC-PERP"),
            (54, "2"),
            (38, "3.000"),
            (44, "100.0"),
            (59, "1"),
            (151, "3.000"),
            (14, "0.000"),
            (6, "0.0"),
        ],
    );
    let a1_id = m.get(37).unwrap().to_owned();
    assert!(a1_id.parse::<u64>().is_ok(), "{m:?}");

    // B buys 1 of it: B is filled, A partly.
    let m = limit(&mut b, "B1", "1", "1", "100");
    seen(&m);
    assert_fields(&m, &[(150, "0"), (39, "0"), (1, "ACC-B")]);
    let m = b.expect("8");
    seen(&m);
    assert_fields(
        &m,
        &[
            (11, "B1"),
            (150, "F"),
            (39, "2"),
            (32, "1.000"),
            (31, "100.0"),
            (14, "1.000"),
            (151, "0.000"),
            (6, "100.0"),
        ],
    );
    let m = a.expect("8");
    seen(&m);
    assert_fields(
        &m,
        &[
            (11, "A1"),
            (37, &a1_id),
            (150, "F"),
            (39, "1"),
            (32, "1.000"),
            (31, "100.0"),
            (14, "1.000"),
            (151, "2.000"),
            (6, "100.0"),
        ],
    );

    // A adds a level; B sweeps both: two fills at two prices, average price 100.3.
    seen(&limit(&mut a, "A2", "2", "1", "101"));
    let m = limit(&mut b, "B2", "1", "3", "101");
    seen(&m);
    assert_fields(&m, &[(150, "0"), (39, "0"), (151, "3.000")]);
    let m = b.expect("8");
    seen(&m);
    assert_fields(
        &m,
        &[
            (150, "F"),
            (39, "1"),
            (32, "2.000"),
            (31, "100.0"),
            (14, "2.000"),
            (151, "1.000"),
            (6, "100.0"),
        ],
    );
    let m = b.expect("8");
    seen(&m);
    assert_fields(
        &m,
        &[
            (150, "F"),
            (39, "2"),
            (32, "1.000"),
            (31, "101.0"),
            (14, "3.000"),
            (151, "0.000"),
            (6, "100.3"),
        ],
    );
    let m = a.expect("8");
    seen(&m);
    assert_fields(
        &m,
        &[
            (11, "A1"),
            (150, "F"),
            (39, "2"),
            (32, "2.000"),
            (14, "3.000"),
            (151, "0.000"),
        ],
    );
    let m = a.expect("8");
    seen(&m);
    assert_fields(&m, &[(11, "A2"), (150, "F"), (39, "2"), (31, "101.0")]);

    // Status, replace, cancel.
    seen(&limit(&mut a, "A3", "2", "1", "105"));
    a.send("H", &[(11, "A3"), (55, "BTC-PERP"), (54, "2")]);
    let m = a.expect("8");
    seen(&m);
    assert_fields(
        &m,
        &[
            (11, "A3"),
            (150, "I"),
            (39, "0"),
            (151, "1.000"),
            (44, "105.0"),
        ],
    );
    a.send(
        "G",
        &[
            (41, "A3"),
            (11, "A4"),
            (21, "1"),
            (55, "BTC-PERP"),
            (54, "2"),
            (60, "20260101-00:00:00"),
            (38, "2"),
            (40, "2"),
            (44, "104"),
        ],
    );
    let m = a.expect("8");
    seen(&m);
    assert_fields(
        &m,
        &[
            (11, "A4"),
            (41, "A3"),
            (150, "5"),
            (39, "0"),
            (44, "104.0"),
            (38, "2.000"),
            (151, "2.000"),
        ],
    );
    cancel(&mut a, "A4", "A5", "2");
    let m = a.expect("8");
    seen(&m);
    assert_fields(
        &m,
        &[
            (11, "A5"),
            (41, "A4"),
            (150, "4"),
            (39, "4"),
            (151, "0.000"),
        ],
    );

    // Cancelling an unknown order, replacing a filled one, asking for a finished one.
    cancel(&mut a, "NOPE", "A6", "2");
    let m = a.expect("9");
    assert_fields(
        &m,
        &[(11, "A6"), (41, "NOPE"), (434, "1"), (102, "1"), (39, "8")],
    );
    a.send(
        "G",
        &[
            (41, "A1"),
            (11, "A7"),
            (21, "1"),
            (55, "BTC-PERP"),
            (54, "2"),
            (60, "20260101-00:00:00"),
            (38, "5"),
            (40, "2"),
            (44, "100"),
        ],
    );
    // A1 was filled: too late to replace (CxlRejReason 0), its final status Filled.
    let m = a.expect("9");
    assert_fields(
        &m,
        &[(11, "A7"), (41, "A1"), (434, "2"), (102, "0"), (39, "2")],
    );
    cancel(&mut a, "A2", "A7B", "2");
    assert_fields(
        &a.expect("9"),
        &[(11, "A7B"), (41, "A2"), (434, "1"), (102, "0"), (39, "2")],
    );
    // A finished order's status is its final state: A4 was cancelled (by A5), A1 filled.
    a.send("H", &[(11, "A4"), (55, "BTC-PERP"), (54, "2")]);
    let m = a.expect("8");
    seen(&m);
    assert_fields(
        &m,
        &[
            (11, "A4"),
            (150, "I"),
            (39, "4"),
            (151, "0.000"),
            (14, "0.000"),
        ],
    );
    a.send("H", &[(11, "A1"), (55, "BTC-PERP"), (54, "2")]);
    let m = a.expect("8");
    seen(&m);
    assert_fields(
        &m,
        &[
            (11, "A1"),
            (150, "I"),
            (39, "2"),
            (151, "0.000"),
            (14, "3.000"),
        ],
    );
    // An order the session never had is unknown (OrdRejReason 5).
    a.send("H", &[(11, "NEVER"), (55, "BTC-PERP"), (54, "2")]);
    let m = a.expect("8");
    seen(&m);
    assert_fields(&m, &[(11, "NEVER"), (150, "I"), (39, "8"), (103, "5")]);

    // Mass cancel: each resting order is Canceled, then the report counts them.
    seen(&limit(&mut a, "A8", "2", "1", "110"));
    seen(&limit(&mut a, "A9", "2", "1", "111"));
    a.send("q", &[(11, "M1"), (530, "7"), (60, "20260101-00:00:00")]);
    let mut canceled = Vec::new();
    for _ in 0..2 {
        let m = a.expect("8");
        seen(&m);
        assert_fields(&m, &[(150, "4"), (39, "4")]);
        canceled.push(m.get(11).unwrap().to_owned());
    }
    canceled.sort();
    assert_eq!(canceled, ["A8", "A9"]);
    let r = a.expect("r");
    assert_fields(&r, &[(11, "M1"), (530, "7"), (531, "7"), (533, "2")]);
    // One instrument, nothing left: 0 affected.
    a.send(
        "q",
        &[
            (11, "M2"),
            (530, "1"),
            (55, "BTC-PERP"),
            (60, "20260101-00:00:00"),
        ],
    );
    assert_fields(
        &a.expect("r"),
        &[(11, "M2"), (531, "1"), (533, "0"), (55, "BTC-PERP")],
    );
    nothing_else(&mut a, "A-DONE");
    nothing_else(&mut b, "B-DONE");
    drop(server);
}

#[test]
fn every_risk_reject_is_seen_with_its_ord_rej_reason() {
    // FIXT.1.1 (FIX 5.0 SP2) has every OrdRejReason code the checks use.
    let p = ports();
    let sessions = [S::plain("FIXT.1.1", "TW", "ACC-A")];
    let server = Server::start(&config(p, &sessions, ""), &p);
    let mut c = connect(p, "FIXT.1.1", "TW", None);
    let mut n = 0;
    let mut try_order = |c: &mut FixClient, symbol: &str, qty: &str, price: Option<&str>| {
        n += 1;
        let cl = format!("R{n}");
        order(c, &cl, symbol, "1", qty, price, "1");
        (cl, c.expect("8"))
    };
    // Checked on the socket task.
    let (cl, m) = try_order(&mut c, "DOGE-PERP", "1", Some("100"));
    assert_rejected(&m, &cl, "1", "unknown instrument");
    let (cl, m) = try_order(&mut c, "BTC-PERP", "1", Some("100.25"));
    assert_rejected(&m, &cl, "18", "more than 1 decimal places");
    let (cl, m) = try_order(&mut c, "BTC-PERP", "1.0001", Some("100"));
    assert_rejected(&m, &cl, "13", "more than 3 decimal places");
    c.send(
        "D",
        &[
            (11, "ACCT"),
            (1, "ACC-B"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (38, "1"),
            (40, "2"),
            (44, "100"),
        ],
    );
    assert_rejected(&c.expect("8"), "ACCT", "15", "unknown account");
    c.send(
        "D",
        &[
            (11, "PEGGED"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (38, "1"),
            (40, "P"),
        ],
    );
    assert_rejected(&c.expect("8"), "PEGGED", "11", "OrdType(40)");
    // Checked on the core thread.
    let (cl, m) = try_order(&mut c, "BTC-PERP", "1", Some("100.2"));
    assert_rejected(&m, &cl, "18", "tick");
    let (cl, m) = try_order(&mut c, "BTC-PERP", "0.007", Some("100"));
    assert_rejected(&m, &cl, "13", "lot");
    let (cl, m) = try_order(&mut c, "BTC-PERP", "0.005", Some("100"));
    assert_rejected(&m, &cl, "13", "below minimum");
    let (cl, m) = try_order(&mut c, "BTC-PERP", "10.005", Some("100"));
    assert_rejected(&m, &cl, "13", "above maximum");
    let (cl, m) = try_order(&mut c, "BTC-PERP", "6", Some("10000"));
    assert_rejected(&m, &cl, "3", "notional");
    // A market order needs a reference price to be valued.
    let (cl, m) = try_order(&mut c, "BTC-PERP", "1", None);
    assert_rejected(&m, &cl, "16", "band");
    // Duplicate ClOrdID.
    order(&mut c, "DUP", "BTC-PERP", "1", "1", Some("90"), "1");
    assert_fields(&c.expect("8"), &[(11, "DUP"), (39, "0")]);
    order(&mut c, "DUP", "BTC-PERP", "1", "1", Some("90"), "1");
    assert_rejected(&c.expect("8"), "DUP", "6", "duplicate ClOrdID");

    // Operator: a mark puts a band around 100; a halt stops an instrument.
    let out = admin(
        &server,
        &["mark", "--instrument", "BTC-PERP", "--price", "100"],
    );
    assert!(out.contains("reference price"), "{out}");
    let (cl, m) = try_order(&mut c, "BTC-PERP", "1", Some("120"));
    assert_rejected(&m, &cl, "16", "band");
    let (cl, m) = try_order(&mut c, "BTC-PERP", "1", Some("95"));
    assert_fields(&m, &[(11, cl.as_str()), (39, "0")]);
    admin(&server, &["halt", "--instrument", "ETH-PERP"]);
    let (cl, m) = try_order(&mut c, "ETH-PERP", "1", Some("3000"));
    assert_rejected(&m, &cl, "2", "not trading");
    admin(&server, &["resume", "--instrument", "ETH-PERP"]);
    let (cl, m) = try_order(&mut c, "ETH-PERP", "1", Some("3000"));
    assert_fields(&m, &[(11, cl.as_str()), (39, "0")]);

    // Limits changed at run time: 3 open orders now (DUP, one BTC, one ETH).
    admin(
        &server,
        &["limits", "--account", "ACC-A", "--set", "max_open_orders=3"],
    );
    let (cl, m) = try_order(&mut c, "BTC-PERP", "1", Some("95"));
    assert_rejected(&m, &cl, "3", "too many open orders");
    admin(
        &server,
        &[
            "limits",
            "--account",
            "ACC-A",
            "--set",
            "max_open_orders=100",
            "order_rate_per_sec=1",
            "order_burst=1",
        ],
    );
    let mut throttled = 0;
    for _ in 0..4 {
        let (_, m) = try_order(&mut c, "BTC-PERP", "1", Some("95"));
        if m.get(39) == Some("8") {
            assert_eq!(m.get(103), Some("99"), "{m:?}");
            assert_eq!(m.get(58), Some("order rate limit exceeded"), "{m:?}");
            throttled += 1;
        }
    }
    assert!(
        throttled >= 3,
        "at most one of 4 orders within a second passes: {throttled}"
    );
    // Bad operator input is exit code 2 and changes nothing.
    let (code, out) = server.cli(&[
        "admin",
        "limits",
        "--account",
        "ACC-A",
        "--set",
        "max_open_order=3",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("max_open_order"), "{out}");
    let (code, out) = server.cli(&[
        "admin",
        "mark",
        "--instrument",
        "BTC-PERP",
        "--price",
        "1.25",
    ]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = server.cli(&["admin", "halt", "--instrument", "NOPE-PERP"]);
    assert_eq!(code, 2, "{out}");
    // Every command is in the audit log, refused ones too.
    let lines = audit_admin(&server);
    let reasons: Vec<&str> = lines
        .iter()
        .map(|v| v["reason"].as_str().unwrap())
        .collect();
    for r in ["mark", "halt", "resume", "limits"] {
        assert!(reasons.contains(&r), "{reasons:?}");
    }
    assert!(lines.iter().any(|v| v["outcome"] == "denied"), "{lines:?}");
}

#[test]
fn kill_switch_cancels_and_blocks_and_cancel_on_disconnect_empties_the_book() {
    kill_switch_and_cancel_on_disconnect("");
}

#[test]
fn with_a_shared_core_the_kill_switch_cancels_and_blocks_and_cancel_on_disconnect_empties_the_book()
{
    kill_switch_and_cancel_on_disconnect(SHARED_CORE);
}

fn kill_switch_and_cancel_on_disconnect(extra: &str) {
    let (server, p, mut a, mut b, ka) = two_signed_accounts(extra);
    assert_fields(&limit(&mut a, "K1", "2", "1", "100"), &[(39, "0")]);
    assert_fields(&limit(&mut a, "K2", "2", "1", "101"), &[(39, "0")]);
    assert_fields(&limit(&mut b, "BK", "1", "1", "90"), &[(39, "0")]);

    // Kill switch of ACC-A: its resting orders are cancelled, B's are not.
    let out = admin(&server, &["kill", "--account", "ACC-A"]);
    assert!(out.contains("2 resting orders cancelled"), "{out}");
    let mut canceled: Vec<String> = (0..2)
        .map(|_| {
            let m = a.expect("8");
            assert_fields(&m, &[(150, "4"), (39, "4")]);
            m.get(11).unwrap().to_owned()
        })
        .collect();
    canceled.sort();
    assert_eq!(canceled, ["K1", "K2"]);
    let m = limit(&mut a, "K3", "2", "1", "100");
    assert_rejected(&m, "K3", "0", "kill switch active");
    // B trades on.
    assert_fields(&limit(&mut b, "BK2", "1", "1", "91"), &[(39, "0")]);
    // Cancels still work under the kill switch.
    b.send("q", &[(11, "BM"), (530, "7"), (60, "20260101-00:00:00")]);
    b.expect("8");
    b.expect("8");
    assert_fields(&b.expect("r"), &[(533, "2")]);

    admin(&server, &["kill", "--account", "ACC-A", "--off"]);
    assert_fields(&limit(&mut a, "K4", "2", "1", "100"), &[(39, "0")]);
    let kills: Vec<Value> = audit_admin(&server);
    assert!(
        kills
            .iter()
            .any(|v| v["reason"] == "kill" && v["account"] == "ACC-A" && v["outcome"] == "ok"),
        "{kills:?}"
    );
    assert!(kills.iter().any(|v| v["reason"] == "kill_off"), "{kills:?}");

    // Cancel-on-disconnect: A logs out; its resting K4 is cancelled, so B's crossing IOC
    // order finds nothing.
    a.send("5", &[]);
    a.expect("5");
    assert!(a.closed());
    let next_seq = a.seq;
    order(&mut b, "BIOC", "BTC-PERP", "1", "1", Some("100"), "3");
    assert_fields(&b.expect("8"), &[(11, "BIOC"), (150, "0")]);
    assert_fields(
        &b.expect("8"),
        &[(11, "BIOC"), (150, "4"), (39, "4"), (14, "0.000")],
    );
    nothing_else(&mut b, "B-DONE");

    // A logs on again (a new connection of the same session): first the Canceled report of
    // K4 from the disconnect (parked for it); asked for, K4 is no longer working: Canceled.
    let mut a2 = connect_at(p, "FIX.4.4", "TWA", Some(&ka), next_seq);
    assert_fields(&a2.expect("8"), &[(11, "K4"), (150, "4"), (39, "4")]);
    a2.send("H", &[(11, "K4"), (55, "BTC-PERP"), (54, "2")]);
    assert_fields(&a2.expect("8"), &[(150, "I"), (39, "4"), (151, "0.000")]);

    // A global kill switch, and operator errors.
    let out = admin(&server, &["kill"]);
    assert!(out.contains("all accounts"), "{out}");
    assert_rejected(
        &limit(&mut b, "BK3", "1", "1", "90"),
        "BK3",
        "0",
        "kill switch",
    );
    admin(&server, &["kill", "--off"]);
    let (code, out) = server.cli(&["admin", "kill", "--account", "NOBODY"]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = server.cli(&["admin", "--socket", "/nonexistent/control.sock", "kill"]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn a_flood_into_a_full_queue_is_refused_server_busy_and_every_order_is_answered_once() {
    flood_into_a_full_queue("");
}

#[test]
fn with_a_shared_core_a_flood_into_a_full_queue_is_refused_server_busy() {
    flood_into_a_full_queue("threading = \"shared\"\n");
}

fn flood_into_a_full_queue(core_extra: &str) {
    let p = ports();
    let sessions = [S::plain("FIX.4.4", "TW", "ACC-A")];
    let server = Server::start(
        &config(
            p,
            &sessions,
            &format!("\n[core]\ningress_capacity = 4\n{core_extra}"),
        ),
        &p,
    );
    let mut c = connect(p, "FIX.4.4", "TW", None);
    // A first order opens the session's route on the core thread.
    assert_fields(&limit(&mut c, "F-OPEN", "1", "1", "90"), &[(39, "0")]);
    // The maintenance pause makes the full queue deterministic: nothing drains it.
    admin(&server, &["pause-core"]);
    const N: usize = 20;
    for i in 0..N {
        order(
            &mut c,
            &format!("F{i}"),
            "BTC-PERP",
            "1",
            "1",
            Some("90"),
            "1",
        );
    }
    let mut answers = std::collections::HashMap::new();
    let mut busy = 0;
    // The refusals come at once, while the core is still paused.
    let deadline = Instant::now() + Duration::from_secs(10);
    while answers.len() < N - 4 {
        assert!(Instant::now() < deadline);
        let m = c.expect("8");
        assert_rejected(&m, m.get(11).unwrap(), "99", "server busy");
        busy += 1;
        assert!(answers.insert(m.get(11).unwrap().to_owned(), m).is_none());
    }
    // The queue holds 4 orders; they go through on resume.
    admin(&server, &["resume-core"]);
    while answers.len() < N {
        let m = c.expect("8");
        assert_fields(&m, &[(39, "0")]);
        assert!(
            answers
                .insert(m.get(11).unwrap().to_owned(), m.clone())
                .is_none(),
            "{m:?}"
        );
    }
    assert_eq!(busy, N - 4);
    for i in 0..N {
        assert!(answers.contains_key(&format!("F{i}")));
    }
    nothing_else(&mut c, "NO-MORE");
    // The refusals were counted.
    drop(c);
}

#[test]
fn a_session_that_cannot_take_its_reports_is_logged_out_as_a_slow_consumer() {
    let p = ports();
    let sessions = [S::plain("FIX.4.4", "TW", "ACC-A")];
    let server = Server::start(&config(p, &sessions, "\n[core]\negress_capacity = 4\n"), &p);
    let mut c = connect(p, "FIX.4.4", "TW", None);
    for i in 0..6 {
        assert_fields(
            &limit(&mut c, &format!("S{i}"), "1", "1", &format!("9{i}")),
            &[(39, "0")],
        );
    }
    // One mass cancel makes 7 reports at once: more than the queue holds.
    c.send("q", &[(11, "MC"), (530, "7"), (60, "20260101-00:00:00")]);
    let mut reports = 0;
    let logout = loop {
        let m = c.recv();
        if m.msg_type() == "5" {
            break m;
        }
        reports += 1;
    };
    assert!(reports <= 4, "{reports}");
    assert_eq!(logout.get(58), Some("slow consumer"));
    assert!(c.closed());
    assert!(server.log_text().contains("slow consumer"));
}

#[test]
fn fix42_reports_use_exec_trans_type_and_the_fill_exec_types() {
    let p = ports();
    let sessions = [
        S::plain("FIX.4.2", "TW42", "ACC-A"),
        S::plain("FIX.4.4", "TW44", "ACC-B"),
    ];
    let _server = Server::start(&config(p, &sessions, ""), &p);
    let mut a = connect(p, "FIX.4.2", "TW42", None);
    let mut b = connect(p, "FIX.4.4", "TW44", None);
    assert_fields(
        &limit(&mut a, "O1", "2", "2", "100"),
        &[(20, "0"), (150, "0"), (39, "0")],
    );
    limit(&mut b, "P1", "1", "1", "100");
    b.expect("8");
    assert_fields(
        &a.expect("8"),
        &[(20, "0"), (150, "1"), (39, "1"), (32, "1.000")],
    );
    a.send("H", &[(11, "O1"), (55, "BTC-PERP"), (54, "2")]);
    assert_fields(
        &a.expect("8"),
        &[(20, "3"), (150, "1"), (39, "1"), (151, "1.000")],
    );
    a.send(
        "G",
        &[
            (41, "O1"),
            (11, "O2"),
            (21, "1"),
            (55, "BTC-PERP"),
            (54, "2"),
            (60, "20260101-00:00:00"),
            (38, "3"),
            (40, "2"),
            (44, "100"),
        ],
    );
    assert_fields(
        &a.expect("8"),
        &[(20, "0"), (150, "5"), (39, "5"), (151, "2.000")],
    );
    limit(&mut b, "P2", "1", "2", "100");
    b.expect("8");
    assert_fields(
        &a.expect("8"),
        &[(20, "0"), (150, "2"), (39, "2"), (14, "3.000")],
    );
    // An unknown instrument: OrdRejReason 1 exists in 4.2.
    order(&mut a, "O3", "NOPE-PERP", "1", "1", Some("1"), "1");
    assert_rejected(&a.expect("8"), "O3", "1", "unknown instrument");
    // A price band reject has no 4.2 code: 0 (broker option), the text says why.
    order(&mut a, "O4", "BTC-PERP", "1", "1", Some("200"), "1");
    assert_rejected(&a.expect("8"), "O4", "0", "band");
}

#[test]
fn without_cancel_on_disconnect_a_gtc_order_reports_to_the_sessions_next_connection() {
    let p = ports();
    let sessions = unsigned_pair();
    let _server = Server::start(
        &config(p, &sessions, "\n[engine]\ncancel_on_disconnect = false\n"),
        &p,
    );
    let mut a = connect(p, "FIX.4.4", "TWA", None);
    let mut b = connect(p, "FIX.4.4", "TWB", None);
    assert_fields(&limit(&mut a, "G1", "2", "2", "100"), &[(39, "0")]);
    a.send("5", &[]);
    a.expect("5");
    assert!(a.closed());
    // The order rests on without its connection.
    let m = limit(&mut b, "H1", "1", "1", "100");
    assert_fields(&m, &[(39, "0")]);
    assert_fields(&b.expect("8"), &[(150, "F"), (39, "2")]);
    // The session's next connection gets the report of the fill it missed first (parked for
    // it), then answers about its order, and can cancel it by the ClOrdID the earlier
    // connection gave it.
    let mut a = connect_at(p, "FIX.4.4", "TWA", None, a.seq);
    assert_fields(
        &a.expect("8"),
        &[
            (11, "G1"),
            (150, "F"),
            (39, "1"),
            (32, "1.000"),
            (14, "1.000"),
        ],
    );
    a.send("H", &[(11, "G1"), (55, "BTC-PERP"), (54, "2")]);
    assert_fields(
        &a.expect("8"),
        &[(150, "I"), (39, "1"), (14, "1.000"), (151, "1.000")],
    );
    limit(&mut b, "H2", "1", "1", "100");
    b.expect("8");
    assert_fields(
        &a.expect("8"),
        &[(11, "G1"), (150, "F"), (39, "2"), (14, "2.000")],
    );
    cancel(&mut a, "G1", "G2", "2");
    assert_fields(&a.expect("9"), &[(102, "0"), (39, "2")]);
    // The next connection still answers for it: the session keeps its ended orders.
    a.send("5", &[]);
    a.expect("5");
    assert!(a.closed());
    let mut a = connect_at(p, "FIX.4.4", "TWA", None, a.seq);
    a.send("H", &[(11, "G1"), (55, "BTC-PERP"), (54, "2")]);
    assert_fields(
        &a.expect("8"),
        &[
            (11, "G1"),
            (150, "I"),
            (39, "2"),
            (14, "2.000"),
            (151, "0.000"),
            (6, "100.0"),
        ],
    );
}

#[test]
fn the_server_runs_without_transparent_huge_pages() {
    // Their first touch may compact memory for tens of milliseconds (see
    // `disable_transparent_huge_pages` in crates/server/src/main.rs).
    let p = ports();
    let sessions = [S::plain("FIX.4.4", "THP", "ACC-A")];
    let server = Server::start(&config(p, &sessions, ""), &p);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .expect("the kernel reports THP_enabled");
    assert!(line.ends_with('0'), "{line}");
}

#[test]
fn the_journal_thread_runs_on_the_cpu_the_config_names() {
    // The last CPU this test may use: the server inherits the same set.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("the kernel reports Cpus_allowed_list")
        .trim()
        .to_owned();
    let cpu: usize = allowed
        .rsplit([',', '-'])
        .next()
        .and_then(|c| c.parse().ok())
        .expect("a CPU number");
    let p = ports();
    let sessions = [S::plain("FIX.4.4", "PIN", "ACC-A")];
    let extra = format!("[journal]\nfsync = \"never\"\npin_cpu = {cpu}\n");
    // The journal is sealed under the master key: without one there is none.
    let mut server = Server::configure(&config(p, &sessions, &extra), &p, &env());
    server.launch();
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid())).unwrap();
    let journal = tasks
        .map(|t| t.unwrap().path())
        .find(|t| {
            std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.starts_with("portcullis-jour"))
        })
        .expect("a journal thread");
    let status = std::fs::read_to_string(journal.join("status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list:"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().nth(1),
        Some(cpu.to_string().as_str()),
        "{line}"
    );
    assert!(server.log_text().contains("journal thread pinned"));
}

#[test]
fn an_order_mass_status_request_lists_the_accounts_working_orders() {
    let (_server, _p, mut a, mut b, _) = two_signed_accounts("");
    let a1 = limit(&mut a, "MS-A1", "1", "2", "100");
    let a2 = limit(&mut a, "MS-A2", "1", "2", "99");
    let a3 = limit(&mut a, "MS-A3", "2", "1", "120");
    // B sells 1 into A1: A1 is partly filled.
    assert_fields(&limit(&mut b, "MS-B1", "2", "1", "100"), &[(39, "0")]);
    assert_fields(&b.expect("8"), &[(11, "MS-B1"), (39, "2")]);
    assert_fields(&a.expect("8"), &[(11, "MS-A1"), (39, "1")]);

    // A status request, a mass status request and another status request, back to back:
    // answered in that order.
    a.send("H", &[(11, "MS-A2"), (55, "BTC-PERP"), (54, "1")]);
    a.send("AF", &[(584, "S1"), (585, "7")]);
    a.send("H", &[(11, "MS-A3"), (55, "BTC-PERP"), (54, "2")]);
    assert_fields(&a.expect("8"), &[(11, "MS-A2"), (150, "I"), (39, "0")]);
    let mut listed = Vec::new();
    for _ in 0..3 {
        let m = a.expect("8");
        assert_fields(&m, &[(150, "I"), (584, "S1"), (911, "3"), (1, "ACC-A")]);
        assert!(m.get(17).is_some(), "{m:?}");
        listed.push(m);
    }
    assert_fields(&a.expect("8"), &[(11, "MS-A3"), (150, "I"), (39, "0")]);
    let ids: Vec<_> = listed.iter().map(|m| m.get(37).unwrap()).collect();
    assert_eq!(
        ids,
        [
            a1.get(37).unwrap(),
            a2.get(37).unwrap(),
            a3.get(37).unwrap()
        ]
    );
    assert_fields(
        &listed[0],
        &[
            (11, "MS-A1"),
            (39, "1"),
            (14, "1.000"),
            (151, "1.000"),
            (912, "N"),
        ],
    );
    assert_fields(&listed[1], &[(11, "MS-A2"), (39, "0"), (912, "N")]);
    assert_fields(
        &listed[2],
        &[(11, "MS-A3"), (39, "0"), (54, "2"), (912, "Y")],
    );

    // One instrument and one side.
    a.send(
        "AF",
        &[(584, "S2"), (585, "1"), (55, "BTC-PERP"), (54, "2")],
    );
    assert_fields(
        &a.expect("8"),
        &[(11, "MS-A3"), (584, "S2"), (911, "1"), (912, "Y")],
    );
    // Nothing matches: one report without an order.
    a.send("AF", &[(584, "S3"), (585, "1"), (55, "ETH-PERP")]);
    assert_fields(
        &a.expect("8"),
        &[
            (37, "NONE"),
            (150, "I"),
            (39, "8"),
            (55, "ETH-PERP"),
            (584, "S3"),
            (911, "0"),
            (912, "Y"),
        ],
    );
    // B has no working order; its mass status does not see A's.
    b.send("AF", &[(584, "S4"), (585, "7")]);
    assert_fields(
        &b.expect("8"),
        &[
            (37, "NONE"),
            (39, "8"),
            (55, "[N/A]"),
            (1, "ACC-B"),
            (911, "0"),
        ],
    );
    // Refused: a scope the server does not serve, an unknown instrument.
    a.send("AF", &[(584, "S5"), (585, "3")]);
    let m = a.expect("8");
    assert_fields(
        &m,
        &[(150, "I"), (39, "8"), (584, "S5"), (911, "1"), (912, "Y")],
    );
    assert!(
        m.get(58).unwrap().contains("MassStatusReqType(585)"),
        "{m:?}"
    );
    a.send("AF", &[(584, "S6"), (585, "1"), (55, "NOPE-PERP")]);
    assert_fields(&a.expect("8"), &[(39, "8"), (584, "S6"), (55, "NOPE-PERP")]);
    nothing_else(&mut a, "MS-END");
}

#[test]
fn a_request_for_positions_reports_each_accounts_net_positions() {
    let (mut server, p, mut a, mut b, ka) = two_signed_accounts("");
    let positions = |c: &mut FixClient, id: &str, extra: &[(u32, &str)]| {
        let mut body = vec![(710, id), (724, "0")];
        body.extend_from_slice(extra);
        c.send("AN", &body);
        let ack = c.expect("AO");
        let n: usize = ack.get(727).unwrap().parse().unwrap();
        let reports: Vec<Msg> = (0..n).map(|_| c.expect("AP")).collect();
        (ack, reports)
    };
    // Flat at first.
    let (ack, reports) = positions(&mut a, "P0", &[]);
    assert_fields(
        &ack,
        &[
            (710, "P0"),
            (727, "0"),
            (728, "2"),
            (729, "0"),
            (1, "ACC-A"),
        ],
    );
    assert!(reports.is_empty());

    // A buys 3 at 100, B sells 2 into it: A is long 2, B short 2.
    assert_fields(&limit(&mut a, "PO-A1", "1", "3", "100"), &[(39, "0")]);
    assert_fields(&limit(&mut b, "PO-B1", "2", "2", "100"), &[(39, "0")]);
    assert_fields(&b.expect("8"), &[(11, "PO-B1"), (39, "2")]);
    assert_fields(&a.expect("8"), &[(11, "PO-A1"), (39, "1")]);

    let (ack, reports) = positions(&mut a, "P1", &[]);
    assert_fields(&ack, &[(710, "P1"), (727, "1"), (728, "0"), (729, "0")]);
    assert_fields(
        &reports[0],
        &[
            (710, "P1"),
            (728, "0"),
            (1, "ACC-A"),
            (55, "BTC-PERP"),
            (702, "1"),
            (703, "TQ"),
            (704, "2.000"),
            (705, "0.000"),
            (730, "100.0"),
            (731, "2"),
        ],
    );
    assert_eq!(
        reports[0].get(715).map(str::len),
        Some(8),
        "{:?}",
        reports[0]
    );
    let (_, reports) = positions(&mut b, "P2", &[(55, "BTC-PERP")]);
    assert_fields(
        &reports[0],
        &[
            (1, "ACC-B"),
            (55, "BTC-PERP"),
            (704, "0.000"),
            (705, "2.000"),
        ],
    );
    // Refused: another session's account, an unknown symbol, a subscription.
    let (ack, _) = positions(&mut a, "P3", &[(1, "ACC-B")]);
    assert_fields(&ack, &[(710, "P3"), (728, "3"), (729, "2")]);
    let (ack, _) = positions(&mut a, "P4", &[(55, "NOPE-PERP")]);
    assert_fields(&ack, &[(728, "1"), (729, "2"), (58, "unknown symbol")]);
    let (ack, _) = positions(&mut a, "P5", &[(263, "1")]);
    assert_fields(&ack, &[(728, "4"), (729, "2")]);
    // Another instrument: flat there.
    let (ack, _) = positions(&mut a, "P6", &[(55, "ETH-PERP")]);
    assert_fields(&ack, &[(728, "2"), (727, "0")]);
    nothing_else(&mut a, "PO-END");
    // The operator sees the same figures.
    let out = admin(&server, &["accounts"]);
    assert!(
        out.contains("ACC-A kill_switch=off open_orders=1 credit_used=")
            && out.contains(
                "positions: BTC-PERP 2.000 (entry 100.0, reference 100.0); underlyings: BTC 2"
            ),
        "{out}"
    );
    assert!(out.contains("ACC-B kill_switch=off open_orders=0"), "{out}");
    let out = admin(&server, &["accounts", "--account", "ACC-B"]);
    assert!(
        out.contains("BTC-PERP -2.000")
            && out.contains("underlyings: BTC -2")
            && !out.contains("ACC-A"),
        "{out}"
    );
    // For scripts: the same as JSON.
    let out = admin(&server, &["accounts", "--account", "ACC-A", "--json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v[0]["account"], "ACC-A", "{v}");
    assert_eq!(v[0]["open_orders"], 1, "{v}");
    assert_eq!(
        v[0]["positions"],
        serde_json::json!([{"symbol": "BTC-PERP", "position": "2.000", "entry_price": "100.0",
                            "reference_price": "100.0"}]),
        "{v}"
    );
    let (code, out) = server.cli(&["admin", "accounts", "--account", "NOBODY"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown account"), "{out}");

    // The positions come back from the journal after a restart.
    for c in [&mut a, &mut b] {
        c.send("5", &[]);
        c.expect("5");
    }
    assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    server.restart();
    let mut a = connect_at(p, "FIX.4.4", "TWA", Some(&ka), a.seq);
    let (_, reports) = positions(&mut a, "P7", &[]);
    assert_eq!(reports.len(), 1);
    assert_fields(&reports[0], &[(55, "BTC-PERP"), (704, "2.000")]);
}

#[test]
fn the_trading_session_status_follows_the_global_kill_switch() {
    let (server, _p, mut a, _b, _) = two_signed_accounts("");
    // Asked at Logon, as exchange connections do: open.
    a.send("g", &[(335, "T1"), (263, "1")]);
    assert_fields(
        &a.expect("h"),
        &[(335, "T1"), (336, "1"), (325, "N"), (340, "2")],
    );
    // The operator halts everything: the subscriber hears it at once, and again at the end.
    admin(&server, &["kill"]);
    assert_fields(&a.expect("h"), &[(335, "T1"), (325, "Y"), (340, "1")]);
    a.send("g", &[(335, "T2"), (336, "1"), (263, "0")]);
    assert_fields(&a.expect("h"), &[(335, "T2"), (325, "N"), (340, "1")]);
    admin(&server, &["kill", "--off"]);
    assert_fields(&a.expect("h"), &[(335, "T1"), (325, "Y"), (340, "2")]);
    // An account's kill switch is not the session's.
    admin(&server, &["kill", "--account", "ACC-B"]);
    // Another session's name is refused in the answer; an unsubscribed one hears nothing.
    a.send("g", &[(335, "T3"), (336, "PRE-OPEN"), (263, "0")]);
    assert_fields(&a.expect("h"), &[(335, "T3"), (340, "6"), (567, "1")]);
    a.send("g", &[(335, "T1"), (263, "2")]);
    admin(&server, &["kill"]);
    nothing_else(&mut a, "TS-END");
}

#[test]
fn a_long_mass_status_answer_leaves_at_the_clients_pace() {
    // A listener whose slow-reader bound (8 KiB) is far below the answer (100 reports).
    let p = ports();
    let sessions = [S::signed("FIX.4.4", "TWA", "ACC-A")];
    let cfg = config(p, &sessions, "").replace(
        "tls = false\nbegin_string = \"FIX.4.4\"\n",
        "tls = false\nbegin_string = \"FIX.4.4\"\nmax_message_size = 4096\nmax_unsent_bytes = 8192\n",
    );
    let mut server = Server::configure(&cfg, &p, &env());
    let ka = create_key(&server, &["--account", "ACC-A", "--scopes", "trade"]);
    server.launch();
    let mut a = connect(p, "FIX.4.4", "TWA", Some(&ka));
    let mut ids = Vec::new();
    for (i, symbol) in (0..100).map(|i| (i, if i < 50 { "BTC-PERP" } else { "ETH-PERP" })) {
        order(&mut a, &format!("P{i}"), symbol, "1", "1", Some("100"), "1");
        let ack = a.expect("8");
        assert_eq!(ack.get(39), Some("0"), "{ack:?}");
        ids.push(ack.get(37).unwrap().to_owned());
    }
    a.send("AF", &[(584, "ALL"), (585, "7")]);
    let mut listed = Vec::new();
    for _ in 0..100 {
        let m = a.expect("8");
        assert_fields(&m, &[(584, "ALL"), (911, "100")]);
        listed.push(m);
    }
    assert_eq!(listed[99].get(912), Some("Y"));
    assert!(listed[..99].iter().all(|m| m.get(912) == Some("N")));
    let got: Vec<_> = listed
        .iter()
        .map(|m| m.get(37).unwrap().to_owned())
        .collect();
    assert_eq!(got, ids, "every working order, in OrderID order");
    // Still connected and answering.
    nothing_else(&mut a, "PACED");
    assert!(
        !server.log_text().contains("slow reader"),
        "{}",
        server.log_text()
    );
}

/// The entries of a SecurityList's NoRelatedSym(146), each from its Symbol(55) on.
fn related_symbols(m: &Msg) -> Vec<Vec<(u32, String)>> {
    let start =
        m.0.iter()
            .position(|(t, _)| *t == 146)
            .map_or(m.0.len(), |i| i + 1);
    let mut out: Vec<Vec<(u32, String)>> = Vec::new();
    for (t, v) in &m.0[start..] {
        if *t == 10 {
            break;
        }
        if *t == 55 {
            out.push(Vec::new());
        }
        if let Some(e) = out.last_mut() {
            e.push((*t, v.clone()));
        }
    }
    out
}

fn entry_get(e: &[(u32, String)], t: u32) -> Option<&str> {
    e.iter().find(|(x, _)| *x == t).map(|(_, v)| v.as_str())
}

#[test]
fn a_security_list_request_lists_the_option_series_and_follows_halts() {
    // Weekly options, 2 expiries × 61 strikes × call and put, beside the two perpetuals; the
    // 4.4 listener's slow-reader bound (8 KiB) is far below the whole list.
    let p = ports();
    let sessions = [
        S::signed("FIX.4.4", "TWA", "ACC-A"),
        S::signed("FIXT.1.1", "TWB", "ACC-B"),
        S::plain("FIX.4.2", "TWC", "ACC-C"),
    ];
    let series = r#"
[[option_series]]
underlying = "BTC"
expiries = "weekly"
count = 2
strikes = { reference = "100000", step = "1000", each_side = 30 }
price_scale = 0
qty_scale = 1
tick = "5"
lot = "0.1"
min_qty = "0.1"
max_qty = "1000"
multiplier = 1
"#;
    let cfg = config(p, &sessions, series).replace(
        "tls = false\nbegin_string = \"FIX.4.4\"\n",
        "tls = false\nbegin_string = \"FIX.4.4\"\nmax_message_size = 8192\nmax_unsent_bytes = 8192\n",
    );
    let mut server = Server::configure(&cfg, &p, &env());
    let ka = create_key(&server, &["--account", "ACC-A", "--scopes", "trade"]);
    let kb = create_key(&server, &["--account", "ACC-B", "--scopes", "trade"]);
    server.launch();
    let mut a = connect(p, "FIX.4.4", "TWA", Some(&ka));
    let mut b = connect(p, "FIXT.1.1", "TWB", Some(&kb));

    a.send("x", &[(320, "ALL"), (559, "4")]);
    let mut fragments = Vec::new();
    loop {
        let m = a.expect("y");
        assert_fields(&m, &[(320, "ALL"), (560, "0"), (393, "246")]);
        let last = m.get(893) == Some("Y");
        fragments.push(m);
        if last {
            break;
        }
    }
    assert!(
        fragments.len() >= 5,
        "fragments of at most 50: {}",
        fragments.len()
    );
    let response_ids: HashSet<_> = fragments.iter().map(|m| m.get(322).unwrap()).collect();
    assert_eq!(response_ids.len(), 1, "one SecurityResponseID per answer");
    let entries: Vec<_> = fragments.iter().flat_map(related_symbols).collect();
    assert_eq!(entries.len(), 246);
    for (m, n) in fragments.iter().zip(fragments.iter().map(related_symbols)) {
        assert_eq!(m.get(146), Some(n.len().to_string().as_str()));
    }
    let symbols: HashSet<_> = entries.iter().map(|e| entry_get(e, 55).unwrap()).collect();
    assert_eq!(symbols.len(), 246, "each instrument once");
    assert!(symbols.contains("BTC-PERP") && symbols.contains("ETH-PERP"));
    let call = entries
        .iter()
        .find(|e| {
            let s = entry_get(e, 55).unwrap();
            s.starts_with("BTC-") && s.ends_with("-100000-C")
        })
        .expect("the at-the-money call");
    let s = entry_get(call, 55).unwrap();
    assert_eq!(entry_get(call, 167), Some("OPT"));
    assert_eq!(entry_get(call, 201), Some("1"));
    assert_eq!(entry_get(call, 202), Some("100000"));
    assert_eq!(entry_get(call, 311), Some("BTC"));
    assert_eq!(entry_get(call, 969), Some("5"));
    // The symbol's YYMMDD is the MaturityDate.
    assert_eq!(entry_get(call, 541).map(|d| &d[2..]), Some(&s[4..10]));
    let perp = entries
        .iter()
        .find(|e| entry_get(e, 55) == Some("BTC-PERP"))
        .unwrap();
    assert_eq!(entry_get(perp, 167), Some("FUT"));
    assert_eq!(entry_get(perp, 762), Some("PERP"));
    assert_eq!(entry_get(perp, 561), Some("0.005"));
    nothing_else(&mut a, "LISTED");
    assert!(!server.log_text().contains("slow reader"));

    // Options only; one symbol; refusals with SecurityRequestResult and the reason.
    a.send("x", &[(320, "OPT"), (559, "1"), (167, "OPT")]);
    let mut n = 0;
    loop {
        let m = a.expect("y");
        n += related_symbols(&m).len();
        if m.get(893) == Some("Y") {
            break;
        }
    }
    assert_eq!(n, 244);
    a.send("x", &[(320, "SUB"), (559, "4"), (263, "1")]);
    let m = a.expect("y");
    assert_fields(&m, &[(320, "SUB"), (560, "1")]);
    assert!(m.get(58).unwrap().contains("SubscriptionRequestType(263)"));
    a.send("x", &[(320, "NOPE"), (559, "0"), (55, "NOPE-PERP")]);
    assert_fields(&a.expect("y"), &[(320, "NOPE"), (560, "2")]);

    // 5.0 SP2 says whether an instrument trades (SecurityStatus 965) and follows a halt.
    let status = |b: &mut FixClient, id: &str| {
        b.send("x", &[(320, id), (559, "0"), (55, "BTC-PERP")]);
        let m = b.expect("y");
        assert_fields(&m, &[(320, id), (560, "0"), (146, "1"), (55, "BTC-PERP")]);
        assert_eq!(m.get(1140), Some("10.000"), "MaxTradeVol");
        m.get(965).unwrap().to_owned()
    };
    assert_eq!(status(&mut b, "S1"), "1");
    admin(&server, &["halt", "--instrument", "BTC-PERP"]);
    assert_eq!(status(&mut b, "S2"), "2");
    admin(&server, &["resume", "--instrument", "BTC-PERP"]);
    assert_eq!(status(&mut b, "S3"), "1");

    // FIX 4.2 has no SecurityListRequest: a session-level Reject, invalid MsgType.
    let mut c = connect(p, "FIX.4.2", "TWC", None);
    c.send("x", &[(320, "R"), (559, "4")]);
    let r = c.expect("3");
    assert_eq!(r.get(373), Some("11"), "{r:?}");
}

/// A stop (`limit` None) or stop-limit order on BTC-PERP, GTC.
fn stop_order(c: &mut FixClient, cl: &str, side: &str, qty: &str, stop: &str, limit: Option<&str>) {
    match limit {
        Some(p) => order_with(
            c,
            cl,
            side,
            qty,
            &[(59, "1"), (99, stop), (40, "4"), (44, p)],
        ),
        None => order_with(c, cl, side, qty, &[(59, "1"), (99, stop), (40, "3")]),
    }
}

/// A NewOrderSingle on BTC-PERP with `extra` fields (OrdType, prices, TimeInForce, ...).
fn order_with(c: &mut FixClient, cl: &str, side: &str, qty: &str, extra: &[(u32, &str)]) {
    let mut f = vec![
        (11, cl),
        (21, "1"),
        (55, "BTC-PERP"),
        (54, side),
        (60, "20260101-00:00:00"),
        (38, qty),
    ];
    f.extend_from_slice(extra);
    c.send("D", &f);
}

#[test]
fn stop_orders_wait_for_a_trade_at_their_price_then_trade_as_market_or_limit_orders() {
    let (_server, _p, mut a, mut b, _) = two_signed_accounts("");
    // A trade at 100 between A and B: the last price.
    limit(&mut a, "A1", "2", "1", "100");
    limit(&mut b, "B1", "1", "1", "100");
    b.expect("8");
    a.expect("8");

    // B: a sell stop at 95 (a market sell once a trade is at 95 or lower). Acknowledged with
    // its type and stop price, no price.
    stop_order(&mut b, "B2", "2", "1", "95", None);
    let m = b.expect("8");
    assert_fields(
        &m,
        &[
            (11, "B2"),
            (150, "0"),
            (39, "0"),
            (40, "3"),
            (99, "95.0"),
            (151, "1.000"),
        ],
    );
    assert_eq!(m.get(44), None, "{m:?}");
    let stop_id = m.get(37).unwrap().to_owned();
    // B: a buy stop-limit at 105, limit 106.
    stop_order(&mut b, "B3", "1", "1", "105", Some("106"));
    let m = b.expect("8");
    assert_fields(
        &m,
        &[
            (11, "B3"),
            (150, "0"),
            (40, "4"),
            (99, "105.0"),
            (44, "106.0"),
        ],
    );
    // Its status says what it is; a replace of a waiting stop is refused.
    b.send("H", &[(11, "B3"), (55, "BTC-PERP"), (54, "1")]);
    let m = b.expect("8");
    assert_fields(
        &m,
        &[(11, "B3"), (150, "I"), (39, "0"), (40, "4"), (99, "105.0")],
    );
    b.send(
        "G",
        &[
            (41, "B3"),
            (11, "B4"),
            (21, "1"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (38, "1"),
            (40, "4"),
            (99, "105"),
            (44, "107"),
        ],
    );
    let m = b.expect("9");
    assert_fields(&m, &[(11, "B4"), (41, "B3"), (434, "2")]);
    // A stop without StopPx, and one off the tick, are refused with the reason.
    a.send(
        "D",
        &[
            (11, "A2"),
            (21, "1"),
            (55, "BTC-PERP"),
            (54, "2"),
            (60, "20260101-00:00:00"),
            (38, "1"),
            (40, "3"),
        ],
    );
    assert_rejected(
        &a.expect("8"),
        "A2",
        "11",
        "StopPx(99) is required for a stop order",
    );
    stop_order(&mut a, "A3", "2", "1", "95.2", None);
    assert_rejected(&a.expect("8"), "A3", "99", "tick");

    // A bids 2 at 94; B sells 1 at 94: the trade at 94 triggers B's stop, which sells its 1
    // to A's remaining bid, as a market order.
    limit(&mut a, "A4", "1", "2", "94");
    order(&mut b, "B5", "BTC-PERP", "2", "1", Some("94"), "3");
    assert_fields(&b.expect("8"), &[(11, "B5"), (150, "0")]);
    assert_fields(
        &b.expect("8"),
        &[(11, "B5"), (150, "F"), (39, "2"), (31, "94.0")],
    );
    let m = b.expect("8");
    assert_fields(
        &m,
        &[
            (11, "B2"),
            (37, &stop_id),
            (150, "F"),
            (39, "2"),
            (40, "3"),
            (99, "95.0"),
            (31, "94.0"),
            (32, "1.000"),
        ],
    );
    assert_fields(&a.expect("8"), &[(11, "A4"), (150, "F"), (39, "1")]);
    assert_fields(&a.expect("8"), &[(11, "A4"), (150, "F"), (39, "2")]);

    // The stop-limit is still waiting (nothing traded at 105): cancelled like any order.
    cancel(&mut b, "B3", "B6", "1");
    assert_fields(
        &b.expect("8"),
        &[(11, "B6"), (41, "B3"), (150, "4"), (40, "4")],
    );
    nothing_else(&mut a, "quiet-a");
    nothing_else(&mut b, "quiet-b");
}

#[test]
fn take_profit_orders_wait_for_a_move_in_their_favour_as_mit_or_with_a_trigger_direction() {
    let (_server, _p, mut a, mut b, _) = two_signed_accounts("");
    // A trade at 100 between A and B: the last price.
    limit(&mut a, "A1", "2", "1", "100");
    limit(&mut b, "B1", "1", "1", "100");
    b.expect("8");
    a.expect("8");
    let trigger_order =
        |c: &mut FixClient, cl: &str, side: &str, ord_type: &str, extra: &[(u32, &str)]| {
            let mut f = vec![(59, "1"), (40, ord_type)];
            f.extend_from_slice(extra);
            order_with(c, cl, side, "1", &f);
        };

    // B: a buy market-if-touched at 95 (a market buy once a trade is at 95 or lower).
    trigger_order(&mut b, "B2", "1", "J", &[(99, "95")]);
    let m = b.expect("8");
    assert_fields(
        &m,
        &[
            (11, "B2"),
            (150, "0"),
            (39, "0"),
            (40, "J"),
            (99, "95.0"),
            (1109, "D"),
        ],
    );
    let mit_id = m.get(37).unwrap().to_owned();
    // B: a sell take-profit limit at 105, limit 104: a stop-limit triggered upwards.
    trigger_order(
        &mut b,
        "B3",
        "2",
        "4",
        &[(99, "105"), (44, "104"), (1109, "U")],
    );
    assert_fields(
        &b.expect("8"),
        &[
            (11, "B3"),
            (150, "0"),
            (40, "4"),
            (99, "105.0"),
            (44, "104.0"),
            (1109, "U"),
        ],
    );
    b.send("H", &[(11, "B3"), (55, "BTC-PERP"), (54, "2")]);
    assert_fields(
        &b.expect("8"),
        &[(11, "B3"), (150, "I"), (39, "0"), (40, "4"), (1109, "U")],
    );
    // A buy market-if-touched that would trigger on a rise is refused with the reason.
    trigger_order(&mut a, "A2", "1", "J", &[(99, "95"), (1109, "U")]);
    assert_rejected(
        &a.expect("8"),
        "A2",
        "11",
        "TriggerPriceDirection(1109) must be D",
    );

    // A offers 1 at 97 and 1 at 95; B buys 1 at 95: the trade at 95 triggers B's
    // market-if-touched, which buys A's offer at 97.
    limit(&mut a, "A3", "2", "1", "97");
    limit(&mut a, "A4", "2", "1", "95");
    order(&mut b, "B4", "BTC-PERP", "1", "1", Some("95"), "3");
    assert_fields(&b.expect("8"), &[(11, "B4"), (150, "0")]);
    assert_fields(&b.expect("8"), &[(11, "B4"), (150, "F"), (31, "95.0")]);
    assert_fields(
        &b.expect("8"),
        &[
            (11, "B2"),
            (37, &mit_id),
            (150, "F"),
            (39, "2"),
            (40, "J"),
            (31, "97.0"),
        ],
    );
    assert_fields(&a.expect("8"), &[(11, "A4"), (150, "F"), (39, "2")]);
    assert_fields(
        &a.expect("8"),
        &[(11, "A3"), (150, "F"), (39, "2"), (31, "97.0")],
    );

    // A trade at 105 triggers B's take-profit limit; nothing bids 104, so it rests there and
    // A's bid at 104 then takes it.
    limit(&mut a, "A5", "2", "1", "105");
    order(&mut b, "B5", "BTC-PERP", "1", "1", Some("105"), "3");
    assert_fields(&b.expect("8"), &[(11, "B5"), (150, "0")]);
    assert_fields(&b.expect("8"), &[(11, "B5"), (150, "F"), (31, "105.0")]);
    assert_fields(&a.expect("8"), &[(11, "A5"), (150, "F"), (39, "2")]);
    limit(&mut a, "A6", "1", "1", "104");
    assert_fields(
        &b.expect("8"),
        &[
            (11, "B3"),
            (150, "F"),
            (39, "2"),
            (40, "4"),
            (1109, "U"),
            (31, "104.0"),
        ],
    );
    assert_fields(&a.expect("8"), &[(11, "A6"), (150, "F"), (39, "2")]);
    nothing_else(&mut a, "quiet-a");
    nothing_else(&mut b, "quiet-b");
}

#[test]
fn an_iceberg_trades_its_max_floor_then_waits_behind_the_orders_at_its_price() {
    let (_server, _p, mut a, mut b, _) = two_signed_accounts("");
    // A: sell 3 showing 1 at a time (MaxFloor 1), then a plain sell of 1 at the same price.
    order_with(
        &mut a,
        "A1",
        "2",
        "3",
        &[(40, "2"), (44, "100"), (59, "1"), (111, "1")],
    );
    assert_fields(
        &a.expect("8"),
        &[(11, "A1"), (150, "0"), (38, "3.000"), (151, "3.000")],
    );
    limit(&mut a, "A2", "2", "1", "100");
    // B buys 2: the iceberg's shown 1, then the plain order (the iceberg's next part waits
    // behind it).
    order(&mut b, "B1", "BTC-PERP", "1", "2", Some("100"), "3");
    assert_fields(&b.expect("8"), &[(11, "B1"), (150, "0")]);
    assert_fields(
        &b.expect("8"),
        &[(11, "B1"), (150, "F"), (32, "1.000"), (39, "1")],
    );
    assert_fields(
        &b.expect("8"),
        &[(11, "B1"), (150, "F"), (32, "1.000"), (39, "2")],
    );
    assert_fields(
        &a.expect("8"),
        &[
            (11, "A1"),
            (150, "F"),
            (39, "1"),
            (32, "1.000"),
            (151, "2.000"),
        ],
    );
    assert_fields(&a.expect("8"), &[(11, "A2"), (150, "F"), (39, "2")]);
    // B buys 2 more: the iceberg alone at 100, part after part.
    order(&mut b, "B2", "BTC-PERP", "1", "2", Some("100"), "3");
    assert_fields(&b.expect("8"), &[(11, "B2"), (150, "0")]);
    assert_fields(&b.expect("8"), &[(11, "B2"), (150, "F"), (32, "1.000")]);
    assert_fields(&b.expect("8"), &[(11, "B2"), (150, "F"), (39, "2")]);
    assert_fields(
        &a.expect("8"),
        &[(11, "A1"), (150, "F"), (39, "1"), (151, "1.000")],
    );
    assert_fields(
        &a.expect("8"),
        &[(11, "A1"), (150, "F"), (39, "2"), (14, "3.000")],
    );
    // An iceberg that would not rest is refused with the reason.
    order_with(
        &mut a,
        "A3",
        "2",
        "3",
        &[(40, "2"), (44, "100"), (59, "3"), (111, "1")],
    );
    assert_rejected(
        &a.expect("8"),
        "A3",
        "11",
        "MaxFloor(111) is only for orders that rest",
    );
    nothing_else(&mut a, "quiet-a");
    nothing_else(&mut b, "quiet-b");
}

/// A server that keeps its journal (it has a master key) and lets orders outlive their
/// connections, with the unsigned sessions TWA and TWB logged on (FIX 4.4).
fn journaled_pair() -> (Server, [u16; 3], FixClient, FixClient) {
    journaled_pair_with("")
}

/// [`journaled_pair`] with `extra` config.
fn journaled_pair_with(extra: &str) -> (Server, [u16; 3], FixClient, FixClient) {
    let p = ports();
    let mut server = Server::configure(
        &config(
            p,
            &unsigned_pair(),
            &format!("\n[engine]\ncancel_on_disconnect = false\n{extra}"),
        ),
        &p,
        &env(),
    );
    server.launch();
    let a = connect(p, "FIX.4.4", "TWA", None);
    let b = connect(p, "FIX.4.4", "TWB", None);
    (server, p, a, b)
}

#[test]
fn waiting_stop_orders_survive_a_restart_and_trigger_after_it() {
    let (mut server, p, mut a, mut b) = journaled_pair();
    limit(&mut a, "A1", "2", "1", "100");
    limit(&mut b, "B1", "1", "1", "100");
    b.expect("8");
    a.expect("8");
    stop_order(&mut b, "B2", "2", "1", "95", None);
    let stop_id = b.expect("8").get(37).unwrap().to_owned();
    for c in [&mut a, &mut b] {
        c.send("5", &[]);
        c.expect("5");
    }
    assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    server.restart();

    let mut a = connect_at(p, "FIX.4.4", "TWA", None, a.seq);
    let mut b = connect_at(p, "FIX.4.4", "TWB", None, b.seq);
    // Still waiting, with its stop price; the last trade price came back too: a trade at 96
    // leaves it, one at 95 triggers it.
    b.send(
        "H",
        &[
            (37, stop_id.as_str()),
            (11, "B2"),
            (55, "BTC-PERP"),
            (54, "2"),
        ],
    );
    assert_fields(
        &b.expect("8"),
        &[(150, "I"), (39, "0"), (40, "3"), (99, "95.0")],
    );
    limit(&mut a, "A2", "1", "1", "96");
    limit(&mut a, "A3", "1", "2", "95");
    let m = limit(&mut b, "B3", "2", "1", "96");
    assert_fields(&m, &[(11, "B3"), (150, "0")]);
    assert_fields(&b.expect("8"), &[(11, "B3"), (39, "2"), (31, "96.0")]);
    nothing_else(&mut b, "still-waiting");
    // B sells 1 at 95 to A; its stop then sells 1 more to A's rest at 95.
    limit(&mut b, "B4", "2", "1", "95");
    assert_fields(&b.expect("8"), &[(11, "B4"), (39, "2"), (31, "95.0")]);
    assert_fields(
        &b.expect("8"),
        &[
            (11, "B2"),
            (37, &stop_id),
            (150, "F"),
            (39, "2"),
            (40, "3"),
            (31, "95.0"),
        ],
    );
    let log = server.log_text();
    assert!(!log.contains("state hash differs"), "{log}");
}

/// A FIX UTCTimestamp `ms` milliseconds from now (whole milliseconds).
fn utc_in(ms: i64, precision: TimePrecision) -> String {
    let now = UtcTimestamp::now().nanos().div_euclid(1_000_000);
    let mut out = Vec::new();
    UtcTimestamp::from_millis(now + ms).write(precision, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn gtd_orders_expire_at_their_time_with_a_report_and_stay_expired_after_a_restart() {
    let (mut server, p, mut a, mut b) = journaled_pair();
    // GTD buys at 90, but for G2 at 85 (it stays while G1 expires).
    let gtd = |c: &mut FixClient, cl: &str, expiry: &[(u32, &str)]| {
        let px = if cl == "G2" { "85" } else { "90" };
        let mut f = vec![(40, "2"), (44, px), (59, "6")];
        f.extend_from_slice(expiry);
        order_with(c, cl, "1", "1", &f);
        c.expect("8")
    };
    // G1 expires in 1.5 s; its acknowledgement carries TimeInForce 6 and the ExpireTime.
    let soon = utc_in(1_500, TimePrecision::Millis);
    let ack = gtd(&mut a, "G1", &[(126, &soon)]);
    assert_fields(&ack, &[(11, "G1"), (150, "0"), (59, "6"), (126, &soon)]);
    let g1 = ack.get(37).unwrap().to_owned();
    // ExpireDate: the end of that trading day (this config's day ends at midnight UTC), so
    // an order for tomorrow expires at the midnight after it.
    let day_ms = 86_400_000;
    let tomorrow = &utc_in(day_ms, TimePrecision::Seconds)[..8];
    let after = format!(
        "{}-00:00:00",
        &utc_in(2 * day_ms, TimePrecision::Seconds)[..8]
    );
    let ack = gtd(&mut a, "G2", &[(432, tomorrow)]);
    assert_fields(&ack, &[(11, "G2"), (150, "0"), (59, "6"), (126, &after)]);
    let g2 = ack.get(37).unwrap().to_owned();
    // A replace gives it a later date, keeping its price and quantity.
    let later = &utc_in(3 * day_ms, TimePrecision::Seconds)[..8];
    let after_later = format!(
        "{}-00:00:00",
        &utc_in(4 * day_ms, TimePrecision::Seconds)[..8]
    );
    a.send(
        "G",
        &[
            (41, "G2"),
            (11, "G2R"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (38, "1"),
            (40, "2"),
            (44, "85"),
            (59, "6"),
            (432, later),
        ],
    );
    assert_fields(
        &a.expect("8"),
        &[(11, "G2R"), (150, "5"), (59, "6"), (126, &after_later)],
    );
    // Refused: an ExpireTime already past (OrdRejReason 4, too late to enter), GTD without
    // an expiry, an expiry on a GTC order.
    let past = utc_in(-1_000, TimePrecision::Millis);
    let m = gtd(&mut a, "G3", &[(126, &past)]);
    assert_rejected(&m, "G3", "4", "expire time has already passed");
    let m = gtd(&mut a, "G4", &[]);
    assert_rejected(&m, "G4", "11", "needs ExpireTime(126) or ExpireDate(432)");
    order_with(
        &mut a,
        "G5",
        "1",
        "1",
        &[(40, "2"), (44, "90"), (59, "1"), (126, &soon)],
    );
    assert_rejected(
        &a.expect("8"),
        "G5",
        "11",
        "only for TimeInForce(59) 6 (GTD)",
    );
    // G1 ends on its own with an Expired report...
    let m = a.expect("8");
    assert_fields(
        &m,
        &[
            (11, "G1"),
            (37, &g1),
            (150, "C"),
            (39, "C"),
            (151, "0.000"),
            (59, "6"),
            (126, &soon),
        ],
    );
    let sent = UtcTimestamp::now().nanos();
    let due = UtcTimestamp::parse(soon.as_bytes()).unwrap().nanos();
    assert!(sent >= due, "expired {} ms early", (due - sent) / 1_000_000);
    // ...and no longer trades: B's sell at 90 rests.
    assert_fields(
        &limit(&mut b, "B1", "2", "1", "90"),
        &[(150, "0"), (39, "0")],
    );
    nothing_else(&mut a, "quiet-a");
    for c in [&mut a, &mut b] {
        c.send("5", &[]);
        c.expect("5");
    }
    // Killed, the server recovers from its journal, which replays the expiry at its time:
    // G1 is expired (not expired again, with a second report) and G2 works with its new date.
    server.signal("KILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.is_running() {
        assert!(Instant::now() < deadline, "SIGKILL did not end the server");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.restart();
    let mut a = connect_at(p, "FIX.4.4", "TWA", None, a.seq);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        a.send("H", &[(11, "G1"), (55, "BTC-PERP"), (54, "1")]);
        let m = a.expect("8");
        if m.get(39) != Some("8") || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_fields(&status, &[(150, "I"), (39, "C"), (37, &g1)]);
    a.send("H", &[(37, &g2), (11, "G2R"), (55, "BTC-PERP"), (54, "1")]);
    assert_fields(
        &a.expect("8"),
        &[(150, "I"), (39, "0"), (59, "6"), (126, &after_later)],
    );
    nothing_else(&mut a, "after-restart");
    // B's sell still rests (a replay that left G1 working would have filled it).
    let mut b = connect_at(p, "FIX.4.4", "TWB", None, b.seq);
    b.send("H", &[(11, "B1"), (55, "BTC-PERP"), (54, "2")]);
    assert_fields(&b.expect("8"), &[(150, "I"), (39, "0"), (151, "1.000")]);
    nothing_else(&mut b, "after-restart-b");
    // Every report had left before the kill: the replay regenerates exactly the journaled
    // events.
    let log = server.log_text();
    assert!(!log.contains("state hash differs"), "{log}");
    assert!(!log.contains("durable but not their events"), "{log}");
}

#[test]
fn a_triggered_stop_is_reported_with_exec_type_l_on_fix_50_only() {
    let p = ports();
    // The same account on a FIX 5.0 SP2 and a FIX 4.4 session, and a counterparty.
    let sessions = [
        S::plain("FIXT.1.1", "TW5", "ACC-A"),
        S::plain("FIX.4.4", "TW4", "ACC-A"),
        S::plain("FIX.4.4", "TWB", "ACC-B"),
    ];
    let mut server = Server::configure(&config(p, &sessions, ""), &p, &env());
    server.launch();
    let mut a5 = connect(p, "FIXT.1.1", "TW5", None);
    let mut a4 = connect(p, "FIX.4.4", "TW4", None);
    let mut b = connect(p, "FIX.4.4", "TWB", None);
    // B sells 2 at 100; each A session has a buy stop-limit at 100 (limit 100).
    limit(&mut b, "B1", "2", "2", "100");
    for (c, cl) in [(&mut a5, "S5"), (&mut a4, "S4")] {
        stop_order(c, cl, "1", "1", "100", Some("100"));
        assert_fields(&c.expect("8"), &[(11, cl), (150, "0"), (39, "0")]);
    }
    // A plain buy of 0.5 from B at 100: the trade triggers both, S5 (the older) first.
    order(&mut a4, "L4", "BTC-PERP", "1", "0.5", Some("100"), "1");
    assert_fields(&a4.expect("8"), &[(11, "L4"), (150, "0")]);
    assert_fields(&a4.expect("8"), &[(11, "L4"), (150, "F"), (39, "2")]);
    // FIX 5.0 SP2: ExecType L (triggered), OrdStatus 0, then the fill of what B has left.
    assert_fields(
        &a5.expect("8"),
        &[(11, "S5"), (150, "L"), (39, "0"), (40, "4"), (151, "1.000")],
    );
    assert_fields(&a5.expect("8"), &[(11, "S5"), (150, "F"), (39, "2")]);
    // FIX 4.4 has no ExecType L: its stop's next report is what it does once triggered (B
    // has 0.5 left for it after S5).
    assert_fields(
        &a4.expect("8"),
        &[(11, "S4"), (150, "F"), (39, "1"), (32, "0.500")],
    );
    nothing_else(&mut a5, "quiet-5");
    nothing_else(&mut a4, "quiet-4");
}

#[test]
fn a_fix_trailing_stop_follows_the_best_trade_price_and_sells_its_distance_below_it() {
    let (_server, _p, mut a, mut b, _) = two_signed_accounts("");
    let trade_at = trade_between;
    // The last trade: 100.
    trade_at(&mut a, &mut b, "1", "100");
    // B: a sell stop trailing 2 % (ExecInst a, PegOffsetValue 200 bips) without StopPx: it
    // tracks the best price from the last trade on. Acknowledged as a stop without StopPx.
    order_with(
        &mut b,
        "T1",
        "2",
        "1",
        &[(40, "3"), (59, "1"), (18, "a"), (211, "200"), (836, "1")],
    );
    let m = b.expect("8");
    assert_fields(
        &m,
        &[
            (11, "T1"),
            (150, "0"),
            (39, "0"),
            (40, "3"),
            (18, "a"),
            (211, "200"),
            (836, "1"),
        ],
    );
    assert_eq!(m.get(99), None, "{m:?}");
    // A's bid at 101 for it to sell into. A rise to 104 moves its trigger to 101.92: a trade
    // at 102 leaves it waiting, one at 101.5 triggers it.
    assert_fields(&limit(&mut a, "BID", "1", "1", "101"), &[(150, "0")]);
    trade_at(&mut a, &mut b, "2", "104");
    trade_at(&mut a, &mut b, "3", "102");
    nothing_else(&mut b, "T-WAITING");
    limit(&mut a, "A4", "2", "1", "101.5");
    limit(&mut b, "B4", "1", "1", "101.5");
    assert_fields(&b.expect("8"), &[(11, "B4"), (39, "2"), (31, "101.5")]);
    assert_fields(
        &b.expect("8"),
        &[(11, "T1"), (150, "F"), (39, "2"), (40, "3"), (31, "101.0")],
    );
    // A trailing distance out of range, and an offset in price units, are refused.
    order_with(
        &mut b,
        "T2",
        "2",
        "1",
        &[(40, "3"), (59, "1"), (18, "a"), (211, "5000")],
    );
    assert_rejected(&b.expect("8"), "T2", "11", "from 10 to 2000");
    order_with(
        &mut b,
        "T3",
        "2",
        "1",
        &[(40, "3"), (59, "1"), (18, "a"), (211, "200"), (836, "0")],
    );
    assert_rejected(&b.expect("8"), "T3", "11", "PegOffsetType(836) must be 1");
}

/// Trades 1 at `px` between A (seller) and B, with both sides' reports read.
fn trade_between(a: &mut FixClient, b: &mut FixClient, cl: &str, px: &str) {
    limit(a, &format!("A{cl}"), "2", "1", px);
    limit(b, &format!("B{cl}"), "1", "1", px);
    b.expect("8");
    a.expect("8");
}

/// A trailing stop killed with the server (recovered from the journal) or stopped with it
/// (from a snapshot, `snapshot_every` small): its best price comes back, not the last trade.
fn trailing_stop_survives_a_restart(extra: &str, kill: bool) {
    let (mut server, p, mut a, mut b) = journaled_pair_with(extra);
    trade_between(&mut a, &mut b, "1", "100");
    order_with(
        &mut b,
        "T1",
        "2",
        "1",
        &[(40, "3"), (59, "1"), (18, "a"), (211, "200")],
    );
    assert_fields(&b.expect("8"), &[(11, "T1"), (150, "0")]);
    // Best 104 (trigger 101.92), last 103.
    trade_between(&mut a, &mut b, "2", "104");
    trade_between(&mut a, &mut b, "3", "103");
    for c in [&mut a, &mut b] {
        c.send("5", &[]);
        c.expect("5");
    }
    if kill {
        server.signal("KILL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.is_running() {
            assert!(Instant::now() < deadline, "SIGKILL did not end the server");
            std::thread::sleep(Duration::from_millis(10));
        }
    } else {
        assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    }
    server.restart();
    let mut a = connect_at(p, "FIX.4.4", "TWA", None, a.seq);
    let mut b = connect_at(p, "FIX.4.4", "TWB", None, b.seq);
    // Tracking from the last trade (103) it would trigger at 100.94 only; from its best
    // price (104), a trade at 101.5 triggers it, and it sells into A's bid at 101.
    assert_fields(&limit(&mut a, "BID", "1", "1", "101"), &[(150, "0")]);
    limit(&mut a, "A4", "2", "1", "101.5");
    limit(&mut b, "B4", "1", "1", "101.5");
    assert_fields(&b.expect("8"), &[(11, "B4"), (39, "2"), (31, "101.5")]);
    assert_fields(
        &b.expect("8"),
        &[(11, "T1"), (150, "F"), (39, "2"), (31, "101.0")],
    );
    let log = server.log_text();
    assert!(!log.contains("state hash differs"), "{log}");
    assert_eq!(
        log.contains("state restored from a snapshot"),
        !kill,
        "{log}"
    );
}

#[test]
fn a_trailing_stop_keeps_its_best_price_through_a_crash_and_journal_recovery() {
    trailing_stop_survives_a_restart("", true);
}

#[test]
fn a_trailing_stop_keeps_its_best_price_through_a_restart_from_a_snapshot() {
    trailing_stop_survives_a_restart("[journal]\nsnapshot_every = 4\n", false);
}

#[test]
fn a_security_status_subscription_hears_of_halts_and_resumes_as_they_happen() {
    let p = ports();
    let sessions = [
        S::plain("FIX.4.4", "TW", "ACC-A"),
        S::plain("FIX.4.2", "TW2", "ACC-A"),
    ];
    let server = Server::start(&config(p, &sessions, ""), &p);
    let mut c = connect(p, "FIX.4.4", "TW", None);
    let mut c42 = connect(p, "FIX.4.2", "TW2", None);
    // A snapshot on 4.2, a subscription on 4.4: both answered at once, trading.
    c42.send("e", &[(324, "SNAP"), (55, "BTC-PERP"), (263, "0")]);
    assert_fields(
        &c42.expect("f"),
        &[(324, "SNAP"), (55, "BTC-PERP"), (325, "N"), (326, "17")],
    );
    c.send("e", &[(324, "S1"), (55, "BTC-PERP"), (263, "1")]);
    assert_fields(
        &c.expect("f"),
        &[(324, "S1"), (55, "BTC-PERP"), (325, "N"), (326, "17")],
    );
    // The operator halts another instrument, then this one: one unsolicited message, for
    // this one.
    admin(&server, &["halt", "--instrument", "ETH-PERP"]);
    admin(&server, &["halt", "--instrument", "BTC-PERP"]);
    assert_fields(
        &c.expect("f"),
        &[(324, "S1"), (55, "BTC-PERP"), (325, "Y"), (326, "2")],
    );
    admin(&server, &["resume", "--instrument", "BTC-PERP"]);
    assert_fields(&c.expect("f"), &[(325, "Y"), (326, "17")]);
    // The snapshot session heard nothing: its next message answers its TestRequest.
    c42.send("1", &[(112, "T1")]);
    assert_fields(&c42.expect("0"), &[(112, "T1")]);
    // Unsubscribed: the next halt is not sent.
    c.send("e", &[(324, "S1"), (55, "BTC-PERP"), (263, "2")]);
    admin(&server, &["halt", "--instrument", "BTC-PERP"]);
    c.send("1", &[(112, "T2")]);
    assert_fields(&c.expect("0"), &[(112, "T2")]);
    // An unknown symbol: BusinessMessageReject, unknown security.
    c.send("e", &[(324, "S2"), (55, "DOGE-PERP"), (263, "1")]);
    assert_fields(
        &c.expect("j"),
        &[
            (372, "e"),
            (379, "S2"),
            (380, "2"),
            (58, "unknown security"),
        ],
    );
}

/// Every value of `tag` in a message (a repeating group's entries).
fn all_of(m: &Msg, tag: u32) -> Vec<&str> {
    m.0.iter()
        .filter(|(t, _)| *t == tag)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A NewOrderList of `orders` on BTC-PERP, as venues' FIX clients send it.
fn order_list(c: &mut FixClient, cl_list: &str, contingency: &str, orders: &[&[(u32, &str)]]) {
    let n = orders.len().to_string();
    let mut body: Vec<(u32, &str)> = vec![(73, &n)];
    for o in orders {
        body.extend_from_slice(o);
    }
    if !contingency.is_empty() {
        body.push((1385, contingency));
    }
    body.push((25014, cl_list));
    c.send("E", &body);
}

#[test]
fn fix_order_lists_are_placed_ended_cancelled_and_refused_whole() {
    let (_server, _p, mut a, mut b, _) = two_signed_accounts("");
    // One cancels the other: a stop below, a post-only limit above.
    let stop: &[(u32, &str)] = &[
        (11, "OC-S"),
        (55, "BTC-PERP"),
        (54, "2"),
        (38, "0.5"),
        (40, "3"),
        (99, "90"),
    ];
    let maker: &[(u32, &str)] = &[
        (11, "OC-T"),
        (55, "BTC-PERP"),
        (54, "2"),
        (38, "0.5"),
        (40, "2"),
        (18, "6"),
        (44, "120"),
    ];
    order_list(&mut a, "L1", "1", &[stop, maker]);
    let s = a.expect("8");
    assert_fields(&s, &[(11, "OC-S"), (39, "0"), (150, "0")]);
    let list_id = s
        .get(66)
        .expect("a list order's report names its list")
        .to_owned();
    assert_eq!(s.get(37), Some(list_id.as_str()));
    assert_fields(&a.expect("8"), &[(11, "OC-T"), (39, "0"), (66, &list_id)]);
    let started = a.expect("N");
    assert_fields(
        &started,
        &[
            (66, &list_id),
            (429, "4"),
            (431, "3"),
            (1385, "1"),
            (25014, "L1"),
            (55, "BTC-PERP"),
            (68, "2"),
        ],
    );
    assert_eq!(all_of(&started, 11), ["OC-S", "OC-T"]);
    // B takes the limit: the stop goes with it, and the list is done.
    assert_fields(&limit(&mut b, "OC-B", "1", "0.5", "120"), &[(39, "0")]);
    assert_fields(&b.expect("8"), &[(11, "OC-B"), (39, "2")]);
    assert_fields(&a.expect("8"), &[(11, "OC-T"), (39, "2"), (66, &list_id)]);
    assert_fields(&a.expect("8"), &[(11, "OC-S"), (39, "4"), (66, &list_id)]);
    let done = a.expect("N");
    assert_fields(&done, &[(66, &list_id), (429, "5"), (431, "6")]);
    assert_eq!(all_of(&done, 39), ["4", "2"]);
    assert_eq!(all_of(&done, 14), ["0.000", "0.500"]);
    assert_eq!(all_of(&done, 84), ["0.500", "0.000"]);
    nothing_else(&mut a, "OL-1");

    // One triggers the other: the working buy first; the pending sell waits for its fill
    // (PendingNew), placed before it.
    let working: &[(u32, &str)] = &[
        (11, "OT-W"),
        (55, "BTC-PERP"),
        (54, "1"),
        (38, "0.5"),
        (40, "2"),
        (44, "110"),
        (59, "1"),
    ];
    let pending: &[(u32, &str)] = &[
        (11, "OT-P"),
        (55, "BTC-PERP"),
        (54, "2"),
        (38, "0.5"),
        (40, "2"),
        (18, "6"),
        (44, "125"),
        (25010, "1"),
        (25011, "3"),
        (25012, "0"),
        (25013, "1"),
    ];
    order_list(&mut a, "L2", "2", &[working, pending]);
    let p = a.expect("8");
    assert_fields(&p, &[(11, "OT-P"), (39, "A"), (150, "A")]);
    let oto_id = p.get(66).unwrap().to_owned();
    assert_fields(&a.expect("8"), &[(11, "OT-W"), (39, "0"), (66, &oto_id)]);
    let started = a.expect("N");
    assert_fields(&started, &[(66, &oto_id), (429, "4"), (1385, "2")]);
    assert_eq!(all_of(&started, 11), ["OT-W", "OT-P"]);
    assert_eq!(all_of(&started, 39), ["0", "A"]);
    // Cancelled whole by the client's id of the list.
    a.send(
        "F",
        &[
            (11, "OT-X"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (25015, "L2"),
        ],
    );
    let mut canceled: Vec<String> = (0..2)
        .map(|_| {
            let m = a.expect("8");
            assert_fields(&m, &[(39, "4"), (66, &oto_id)]);
            m.get(37).unwrap().to_owned()
        })
        .collect();
    canceled.sort();
    assert!(canceled.contains(&oto_id), "{canceled:?}");
    assert_fields(&a.expect("N"), &[(66, &oto_id), (429, "5"), (431, "6")]);
    // The list is gone: by its client id, and by its ListID, a cancel is refused.
    a.send(
        "F",
        &[
            (11, "OT-Y"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (25015, "L2"),
        ],
    );
    let r = a.expect("9");
    assert_fields(
        &r,
        &[
            (11, "OT-Y"),
            (102, "1"),
            (
                58,
                "unknown order list: OrigClListID(25015) names no working list of the session",
            ),
        ],
    );
    a.send(
        "F",
        &[
            (11, "OT-Z"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (66, &oto_id),
        ],
    );
    assert_fields(&a.expect("9"), &[(11, "OT-Z"), (434, "1")]);
    nothing_else(&mut a, "OL-2");

    // A pair that cannot wait (two limits) is refused whole: the first order, accepted, is
    // cancelled.
    let first: &[(u32, &str)] = &[
        (11, "RF-1"),
        (55, "BTC-PERP"),
        (54, "2"),
        (38, "0.5"),
        (40, "2"),
        (44, "125"),
    ];
    let second: &[(u32, &str)] = &[
        (11, "RF-2"),
        (55, "BTC-PERP"),
        (54, "2"),
        (38, "0.5"),
        (40, "2"),
        (44, "126"),
    ];
    order_list(&mut a, "L3", "1", &[first, second]);
    let f = a.expect("8");
    assert_fields(&f, &[(11, "RF-1"), (39, "0")]);
    let rf_id = f.get(66).unwrap().to_owned();
    assert_rejected(&a.expect("8"), "RF-2", "11", "order list rejected");
    let refused = a.expect("N");
    assert_fields(
        &refused,
        &[
            (66, &rf_id),
            (429, "2"),
            (431, "7"),
            (1386, "7"),
            (25014, "L3"),
        ],
    );
    assert_fields(&a.expect("8"), &[(11, "RF-1"), (39, "4"), (66, &rf_id)]);
    nothing_else(&mut a, "OL-3");

    // Refused before any order is placed: no contingency, mixed instruments.
    order_list(&mut a, "L4", "", &[stop, maker]);
    let r = a.expect("N");
    assert_fields(
        &r,
        &[(66, "L4"), (429, "2"), (431, "7"), (25014, "L4"), (73, "0")],
    );
    assert!(
        r.get(58)
            .unwrap()
            .starts_with("ContingencyType(1385) is required"),
        "{r:?}"
    );
    let eth: Vec<(u32, &str)> = maker
        .iter()
        .map(|&(t, v)| if t == 55 { (t, "ETH-PERP") } else { (t, v) })
        .collect();
    order_list(&mut a, "L5", "1", &[stop, &eth]);
    let r = a.expect("N");
    assert_fields(
        &r,
        &[
            (431, "7"),
            (
                58,
                "the orders of a list must be of one Symbol(55) and Account(1)",
            ),
        ],
    );
    nothing_else(&mut a, "OL-4");

    // The standard list requests: its status (ListStatusRequest), its cancel
    // (ListCancelRequest).
    let renamed = |o: &[(u32, &'static str)], id: &'static str| -> Vec<(u32, &'static str)> {
        o.iter()
            .map(|&(t, v)| if t == 11 { (t, id) } else { (t, v) })
            .collect()
    };
    let (stop6, maker6) = (renamed(stop, "L6-S"), renamed(maker, "L6-T"));
    order_list(&mut a, "L6", "1", &[&stop6, &maker6]);
    let id6 = a.expect("8").get(66).unwrap().to_owned();
    a.expect("8");
    a.expect("N");
    a.send("M", &[(66, &id6)]);
    let st = a.expect("N");
    assert_fields(&st, &[(66, &id6), (429, "2"), (431, "3"), (25014, "L6")]);
    assert_eq!(all_of(&st, 39), ["0", "0"]);
    a.send("K", &[(66, &id6), (60, "20260101-00:00:00")]);
    assert_fields(&a.expect("N"), &[(66, &id6), (429, "2"), (431, "4")]);
    for _ in 0..2 {
        assert_fields(&a.expect("8"), &[(39, "4"), (66, &id6)]);
    }
    assert_fields(&a.expect("N"), &[(66, &id6), (429, "5"), (431, "6")]);
    // Ended: its status is as it ended; there is nothing to cancel.
    a.send("M", &[(66, &id6)]);
    let st = a.expect("N");
    assert_fields(&st, &[(66, &id6), (429, "2"), (431, "6"), (25014, "L6")]);
    assert_eq!(all_of(&st, 39), ["4", "4"]);
    a.send("K", &[(66, &id6), (60, "20260101-00:00:00")]);
    assert_fields(
        &a.expect("N"),
        &[(66, &id6), (429, "2"), (431, "7"), (1386, "5")],
    );
    a.send("M", &[(66, "999999")]);
    assert_fields(&a.expect("N"), &[(66, "999999"), (431, "7"), (1386, "5")]);
    nothing_else(&mut a, "OL-5");
}

#[test]
fn fix_order_lists_are_known_again_after_a_restart() {
    // Orders outlive their sessions' connections here.
    let (mut server, p, mut a, mut b, ka) =
        two_signed_accounts("\n[engine]\ncancel_on_disconnect = false\n");
    let working: &[(u32, &str)] = &[
        (11, "RS-W"),
        (55, "BTC-PERP"),
        (54, "1"),
        (38, "0.5"),
        (40, "2"),
        (44, "105"),
        (59, "1"),
    ];
    let pending: &[(u32, &str)] = &[
        (11, "RS-P"),
        (55, "BTC-PERP"),
        (54, "2"),
        (38, "0.5"),
        (40, "2"),
        (18, "6"),
        (44, "125"),
    ];
    order_list(&mut a, "RS-L", "2", &[working, pending]);
    let id = a.expect("8").get(66).unwrap().to_owned();
    a.expect("8");
    assert_fields(&a.expect("N"), &[(66, &id), (429, "4")]);
    let stop: &[(u32, &str)] = &[
        (11, "RS-S"),
        (55, "BTC-PERP"),
        (54, "2"),
        (38, "0.5"),
        (40, "3"),
        (99, "90"),
    ];
    let maker: &[(u32, &str)] = &[
        (11, "RS-T"),
        (55, "BTC-PERP"),
        (54, "2"),
        (38, "0.5"),
        (40, "2"),
        (18, "6"),
        (44, "130"),
    ];
    order_list(&mut a, "RS-O", "1", &[stop, maker]);
    let oco = a.expect("8").get(66).unwrap().to_owned();
    a.expect("8");
    assert_fields(&a.expect("N"), &[(66, &oco), (429, "4")]);
    for c in [&mut a, &mut b] {
        c.send("5", &[]);
        c.expect("5");
    }
    assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    server.restart();
    let mut a = connect_at(p, "FIX.4.4", "TWA", Some(&ka), a.seq);
    // Asked by its ListID, the list is known from the history (without the client's id).
    a.send("M", &[(66, &id)]);
    let st = a.expect("N");
    assert_fields(&st, &[(66, &id), (429, "2"), (431, "3"), (1385, "2")]);
    assert_eq!(all_of(&st, 11), ["RS-W", "RS-P"]);
    assert_eq!(all_of(&st, 39), ["0", "A"]);
    assert_eq!(st.get(25014), None);
    // And followed again: cancelled whole, its end told.
    a.send("K", &[(66, &id), (60, "20260101-00:00:00")]);
    assert_fields(&a.expect("N"), &[(66, &id), (431, "4")]);
    for _ in 0..2 {
        assert_fields(&a.expect("8"), &[(39, "4"), (66, &id)]);
    }
    assert_fields(&a.expect("N"), &[(66, &id), (429, "5"), (431, "6")]);
    // Ended, it is still told as it ended.
    a.send("M", &[(66, &id)]);
    let st = a.expect("N");
    assert_fields(&st, &[(66, &id), (429, "2"), (431, "6")]);
    assert_eq!(all_of(&st, 39), ["4", "4"]);
    // An OrderCancelRequest by ListID alone does the same for the other list.
    a.send(
        "F",
        &[
            (11, "RS-X"),
            (55, "BTC-PERP"),
            (54, "2"),
            (60, "20260101-00:00:00"),
            (66, &oco),
        ],
    );
    for _ in 0..2 {
        assert_fields(&a.expect("8"), &[(39, "4"), (66, &oco)]);
    }
    assert_fields(&a.expect("N"), &[(66, &oco), (429, "5"), (431, "6")]);
    nothing_else(&mut a, "RS-END");
}

#[test]
fn fix_market_data_snapshots_list_the_books_levels() {
    let (_server, _p, mut a, mut b, _) = two_signed_accounts("");
    assert_fields(&limit(&mut a, "MD-A1", "2", "0.5", "101"), &[(39, "0")]);
    assert_fields(&limit(&mut a, "MD-A2", "2", "1", "102"), &[(39, "0")]);
    assert_fields(&limit(&mut a, "MD-A3", "2", "0.25", "101"), &[(39, "0")]);
    assert_fields(&limit(&mut b, "MD-B1", "1", "2", "99"), &[(39, "0")]);
    let snapshot = |c: &mut FixClient, id: &str, depth: &str, types: &[&str], symbol: &str| {
        let n = types.len().to_string();
        let mut body = vec![(262, id), (263, "0"), (264, depth), (267, n.as_str())];
        body.extend(types.iter().map(|t| (269, *t)));
        body.extend([(146, "1"), (55, symbol)]);
        c.send("V", &body);
        c.recv()
    };
    let w = snapshot(&mut b, "MD1", "0", &["0", "1"], "BTC-PERP");
    assert_eq!(w.msg_type(), "W", "{w:?}");
    assert_fields(&w, &[(262, "MD1"), (55, "BTC-PERP"), (268, "3")]);
    assert_eq!(all_of(&w, 269), ["0", "1", "1"]);
    assert_eq!(all_of(&w, 270), ["99.0", "101.0", "102.0"]);
    assert_eq!(all_of(&w, 271), ["2.000", "0.750", "1.000"]);
    assert_eq!(all_of(&w, 290), ["1", "1", "2"]);
    // The best offer only; no trade yet.
    let w = snapshot(&mut a, "MD2", "1", &["1", "2"], "BTC-PERP");
    assert_eq!(all_of(&w, 270), ["101.0"]);
    // B takes 0.5 at 101: the last trade, and what is left.
    assert_fields(&limit(&mut b, "MD-B2", "1", "0.5", "101"), &[(39, "0")]);
    assert_fields(&b.expect("8"), &[(11, "MD-B2"), (39, "2")]);
    assert_fields(&a.expect("8"), &[(11, "MD-A1"), (39, "2")]);
    let w = snapshot(&mut b, "MD5", "1", &["1", "2"], "BTC-PERP");
    assert_eq!(all_of(&w, 269), ["1", "2"]);
    assert_eq!(all_of(&w, 270), ["101.0", "101.0"]);
    assert_eq!(all_of(&w, 271), ["0.250"]);
    // Refused: an unknown symbol, a subscription.
    let y = snapshot(&mut a, "MD3", "1", &["0"], "NOPE-PERP");
    assert_eq!(y.msg_type(), "Y", "{y:?}");
    assert_fields(&y, &[(262, "MD3"), (281, "0"), (58, "unknown symbol")]);
    a.send(
        "V",
        &[
            (262, "MD4"),
            (263, "1"),
            (264, "1"),
            (267, "1"),
            (269, "0"),
            (146, "1"),
            (55, "BTC-PERP"),
        ],
    );
    assert_fields(&a.expect("Y"), &[(262, "MD4"), (281, "4")]);
    nothing_else(&mut a, "MD-END");
}
