//! The FIX drop copy seen from the outside: the real binary, order-entry sessions of three
//! accounts and a drop copy session copying two of them, across its reconnects and a restart
//! of the server.

use std::collections::HashSet;

use crate::auth::env;
use crate::harness::{free_port, FixClient, Msg, Server};
use crate::metrics::scrape;
use crate::pipeline::{assert_fields, config, connect, connect_at, limit, ports, S};

/// A drop copy session `comp` (FIX 4.4, no authentication on loopback) copying `copied`.
fn drop_copy_session(comp: &str, copied: &str) -> String {
    format!(
        "\n[[sessions]]\nbegin_string = \"FIX.4.4\"\nsender_comp_id = \"ISLD\"\ntarget_comp_id = \"{comp}\"\naccounts = [\"CLEARING\"]\naccess = \"read\"\nauthentication = \"none\"\nstore_sync = \"never\"\ndrop_copy = [{copied}]\n"
    )
}

/// An order-entry session of the test config: FIX 4.4, client `comp_id`, `account`, no
/// authentication (loopback).
fn plain<'a>(comp_id: &'a str, account: &'a str) -> S<'a> {
    S::plain("FIX.4.4", comp_id, account)
}

/// The next `n` ExecutionReports of the drop copy (a heartbeat or anything else fails).
fn copies(dc: &mut FixClient, n: usize) -> Vec<Msg> {
    (0..n).map(|_| dc.expect("8")).collect()
}

/// The body of a report: every field but the header and trailer, which are the session's.
fn body(m: &Msg) -> Vec<(u32, String)> {
    const SESSION: [u32; 9] = [8, 9, 10, 34, 43, 49, 52, 56, 122];
    m.0.iter()
        .filter(|(t, _)| !SESSION.contains(t))
        .cloned()
        .collect()
}

/// Asserts that `copies` are exactly `originals` (in any order: the journal's), field for field.
fn assert_copies(copies: &[Msg], originals: &[Msg]) {
    let mut want: Vec<_> = originals.iter().map(body).collect();
    let mut got: Vec<_> = copies.iter().map(body).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn a_drop_copy_session_gets_every_execution_of_its_accounts_across_reconnects_and_restarts() {
    let p = ports();
    let sessions = [
        plain("TWA", "ACC-A"),
        plain("TWB", "ACC-B"),
        plain("TWC", "ACC-C"),
    ];
    let pm = free_port();
    let extra = drop_copy_session("DC", "\"ACC-A\", \"ACC-B\"")
        + &format!("\n[metrics]\nbind = \"127.0.0.1:{pm}\"\n");
    let mut server = Server::configure(&config(p, &sessions, &extra), &p, &env());
    server.launch();
    let mut dc = connect(p, "FIX.4.4", "DC", None);
    let mut a = connect(p, "FIX.4.4", "TWA", None);
    let mut b = connect(p, "FIX.4.4", "TWB", None);
    let mut c = connect(p, "FIX.4.4", "TWC", None);

    // A rests a sell, C (not copied) a buy below it, B buys part of A's: both sides fill.
    let mut originals = vec![limit(&mut a, "A1", "2", "2", "100")];
    assert_fields(&limit(&mut c, "C1", "1", "1", "90"), &[(39, "0")]);
    originals.push(limit(&mut b, "B1", "1", "1", "100"));
    originals.push(b.expect("8"));
    originals.push(a.expect("8"));
    assert_fields(&originals[2], &[(150, "F"), (39, "2"), (1, "ACC-B")]);
    assert_fields(&originals[3], &[(150, "F"), (39, "1"), (1, "ACC-A")]);
    // A reject is an ExecutionReport too.
    originals.push(limit(&mut b, "B2", "1", "1", "1000"));
    assert_fields(&originals[4], &[(150, "8"), (39, "8")]);
    let first = copies(&mut dc, originals.len());
    assert_copies(&first, &originals);
    let mut exec_ids: HashSet<String> = first
        .iter()
        .map(|m| m.get(17).unwrap().to_owned())
        .collect();

    // The drop copy takes no orders.
    dc.send(
        "D",
        &[
            (11, "DC1"),
            (21, "1"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (38, "1"),
            (40, "2"),
            (44, "100"),
        ],
    );
    assert_fields(&dc.expect("j"), &[(372, "D"), (380, "4"), (379, "DC1")]);

    // Away: what happens meanwhile comes after its next Logon.
    dc.send("5", &[]);
    dc.expect("5");
    assert!(dc.closed());
    let away = vec![limit(&mut a, "A2", "2", "1", "101")];
    // The operator sees it fall behind while away, and catch up once back.
    let behind = |server: &Server| {
        scrape(pm, server).value(
            "portcullis_drop_copy_behind_records",
            &[("session", "FIX.4.4:ISLD->DC")],
        )
    };
    // The journal thread writes in batches: the order's records (its command and its event)
    // are acknowledged within milliseconds of its report.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while behind(&server) < 2.0 {
        assert!(std::time::Instant::now() < deadline, "{}", behind(&server));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut dc = connect_at(p, "FIX.4.4", "DC", None, dc.seq);
    let got = copies(&mut dc, 1);
    assert_copies(&got, &away);
    exec_ids.insert(got[0].get(17).unwrap().to_owned());
    // Read up to the journal's end (its position moves as soon as the report is sent).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while behind(&server) != 0.0 {
        assert!(std::time::Instant::now() < deadline, "{}", behind(&server));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // A restart: the copies go on where they were, nothing twice (the orders cancelled as
    // their sessions went down are copied too).
    // The drop copy leaves first: the cancels of the order sessions' orders, as their
    // connections drop, are copied after the restart.
    dc.send("5", &[]);
    dc.expect("5");
    let a_seq = a.seq;
    drop((a, b, c));
    server.restart();
    let mut a = connect_at(p, "FIX.4.4", "TWA", None, a_seq);
    let after = limit(&mut a, "A3", "2", "1", "102");
    let mut dc = connect_at(p, "FIX.4.4", "DC", None, dc.seq);
    loop {
        let m = dc.expect("8");
        assert_ne!(m.get(1), Some("ACC-C"), "{m:?}");
        let id = m.get(17).unwrap().to_owned();
        assert!(exec_ids.insert(id), "copied twice: {m:?}");
        if m.get(11) == Some("A3") {
            assert_copies(&[m], &[after]);
            break;
        }
        // Everything else is a cancel of the orders left when the sessions went down.
        assert_fields(&m, &[(150, "4"), (39, "4")]);
    }
}

#[test]
fn a_drop_copy_session_goes_on_across_a_master_key_rotation() {
    let p = ports();
    let sessions = [plain("TWA", "ACC-A")];
    // The drop copy session is the signed one, so the server loads the vault and follows the
    // key file.
    let extra = drop_copy_session("DC", "\"ACC-A\"").replace("authentication = \"none\"\n", "")
        + "\n[auth]\nmaster_key_file = \"{DATA_DIR}/master.key\"\n";
    let mut server = Server::configure(&config(p, &sessions, &extra), &p, &[]);
    server.create_master_key_file();
    let key = crate::auth::create_key(&server, &["--account", "CLEARING", "--scopes", "read"]);
    server.launch();
    let mut dc = connect(p, "FIX.4.4", "DC", Some(&key));
    let mut a = connect(p, "FIX.4.4", "TWA", None);
    let before = limit(&mut a, "A1", "2", "1", "100");
    assert_copies(&copies(&mut dc, 1), &[before]);

    let (code, out) = server.cli(&["keys", "rotate-master"]);
    assert_eq!(code, 0, "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server
        .log_text()
        .contains("journal: new segments use the rotated master key")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The journal's next segment is under the new key: the same connection goes on.
    let after = limit(&mut a, "A2", "2", "1", "101");
    assert_copies(&copies(&mut dc, 1), &[after]);
}

#[test]
fn orders_entered_over_the_websocket_api_are_copied_too() {
    let p = ports();
    let ws_port = free_port();
    let extra = drop_copy_session("DC", "\"WS-A\"")
        + &format!(
            "\n[[ws_listeners]]\nname = \"ws\"\nbind = \"127.0.0.1:{ws_port}\"\ntls = false\n\n[core]\naccounts = [\"WS-A\"]\n"
        );
    let mut all_ports = p.to_vec();
    all_ports.push(ws_port);
    let mut server = Server::configure(&config(p, &[], &extra), &all_ports, &env());
    let key = crate::auth::create_key(&server, &["--account", "WS-A", "--scopes", "trade,read"]);
    server.launch();
    let mut dc = connect(p, "FIX.4.4", "DC", None);
    let mut ws = crate::ws::Ws::plain(ws_port);
    let r = ws.call(
        serde_json::json!("logon"),
        "session.logon",
        crate::ws::signed(serde_json::json!({}), &key),
    );
    assert_eq!(r["status"], 200, "{r}");
    let r = ws.call(
        serde_json::json!("new"),
        "order.place",
        crate::ws::t(serde_json::json!({
            "symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "price": "99.5", "quantity": "1.000", "newClientOrderId": "w-1"
        })),
    );
    assert_eq!(r["status"], 200, "{r}");
    let order_id = r["result"]["orderId"].as_u64().unwrap().to_string();
    let copy = dc.expect("8");
    assert_fields(
        &copy,
        &[
            (11, "w-1"),
            (37, order_id.as_str()),
            (1, "WS-A"),
            (150, "0"),
            (39, "0"),
            (54, "1"),
            (44, "99.5"),
            (38, "1.000"),
        ],
    );

    // Another connection of the account cancels it by orderId: it gets the answer, the
    // order's own connection its report, and the drop copy one copy of the one execution.
    let r = ws.call(
        serde_json::json!("uds"),
        "userDataStream.subscribe",
        serde_json::json!({}),
    );
    assert_eq!(r["status"], 200, "{r}");
    let mut other = crate::ws::Ws::plain(ws_port);
    let id: u64 = order_id.parse().unwrap();
    let r = other.call(
        serde_json::json!("cancel"),
        "order.cancel",
        crate::ws::signed(
            serde_json::json!({"symbol": "BTC-PERP", "orderId": id}),
            &key,
        ),
    );
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["status"], "CANCELED", "{r}");
    assert_eq!(r["result"]["origClientOrderId"], "w-1", "{r}");
    let cancel_id = r["result"]["clientOrderId"].as_str().unwrap().to_owned();
    let e = ws.event(|v| v["event"]["e"] == "executionReport" && v["event"]["X"] == "CANCELED");
    assert_eq!(e["event"]["i"], id, "{e}");
    assert_eq!(e["event"]["c"], "w-1", "{e}");
    let r = ws.call(
        serde_json::json!("st"),
        "order.status",
        crate::ws::t(serde_json::json!({"symbol": "BTC-PERP", "orderId": id})),
    );
    assert_eq!(r["result"]["status"], "CANCELED", "{r}");
    let copy = dc.expect("8");
    assert_fields(
        &copy,
        &[
            (11, cancel_id.as_str()),
            (41, "w-1"),
            (37, order_id.as_str()),
            (150, "4"),
            (39, "4"),
        ],
    );
    // The next copy is the next execution, not the cancel again.
    let r = ws.call(
        serde_json::json!("new2"),
        "order.place",
        crate::ws::t(serde_json::json!({
            "symbol": "BTC-PERP", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "price": "99.5", "quantity": "1.000", "newClientOrderId": "w-2"
        })),
    );
    assert_eq!(r["status"], 200, "{r}");
    let copy = dc.expect("8");
    assert_fields(&copy, &[(11, "w-2"), (150, "0")]);
    // The order's own connection heard of the cancel once: its next report is w-2's.
    let e = ws.event(|v| v["event"]["e"] == "executionReport");
    assert_eq!(
        (&e["event"]["c"], &e["event"]["x"]),
        (&serde_json::json!("w-2"), &serde_json::json!("NEW")),
        "{e}"
    );
}

#[test]
fn a_cursor_past_the_end_of_the_journal_starts_again_at_its_first_record() {
    let p = ports();
    let sessions = [plain("TWA", "ACC-A")];
    let extra = drop_copy_session("DC", "\"ACC-A\"");
    let mut server = Server::configure(&config(p, &sessions, &extra), &p, &env());
    // A cursor file of another journal, far ahead of this one.
    let cursor = server
        .data_dir()
        .join("drop-copy")
        .join("FIX.4.4-ISLD-DC.cursor");
    std::fs::create_dir_all(cursor.parent().unwrap()).unwrap();
    std::fs::write(&cursor, "999999\n").unwrap();
    server.launch();
    let mut a = connect(p, "FIX.4.4", "TWA", None);
    let original = limit(&mut a, "A1", "2", "1", "100");
    let mut dc = connect(p, "FIX.4.4", "DC", None);
    assert_copies(&copies(&mut dc, 1), &[original]);
    assert!(
        server
            .log_text()
            .contains("cursor is past the end of the journal"),
        "{}",
        server.log_text()
    );
}
