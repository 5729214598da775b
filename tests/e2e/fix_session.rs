//! A FIX client over plain TCP on loopback: logon, heartbeat, test request, gap fill, orders,
//! logout.

use crate::harness::{free_port, FixClient, Server};

/// A config with one plain-TCP listener per version on loopback, the TW/ISLD sessions (account
/// TW-ACC) and the instrument BTC-PERP.
/// These tests are about the FIX session layer, so the sessions opt out of authentication
/// explicitly (`authentication = "none"`, allowed on loopback listeners only); tests/e2e/auth.rs
/// covers signed logons.
pub fn config(ports: [u16; 3], reset_on_logon: bool) -> String {
    format!(
        r#"
data_dir = "{{DATA_DIR}}"

[[listeners]]
name = "fix42"
bind = "127.0.0.1:{p42}"
tls = false
begin_string = "FIX.4.2"

[[listeners]]
name = "fix44"
bind = "127.0.0.1:{p44}"
tls = false
begin_string = "FIX.4.4"

[[listeners]]
name = "fixt11"
bind = "127.0.0.1:{p50}"
tls = false
begin_string = "FIXT.1.1"

[[sessions]]
begin_string = "FIX.4.2"
sender_comp_id = "ISLD"
target_comp_id = "TW"
reset_on_logon = {reset_on_logon}
authentication = "none"
accounts = ["TW-ACC"]

[[sessions]]
begin_string = "FIX.4.4"
sender_comp_id = "ISLD"
target_comp_id = "TW"
reset_on_logon = {reset_on_logon}
authentication = "none"
accounts = ["TW-ACC"]

[[sessions]]
begin_string = "FIXT.1.1"
sender_comp_id = "ISLD"
target_comp_id = "TW"
reset_on_logon = {reset_on_logon}
authentication = "none"
accounts = ["TW-ACC"]

[[instruments]]
symbol = "BTC-PERP"
price_scale = 1
qty_scale = 3
tick = "0.5"
lot = "0.001"
min_qty = "0.001"
max_qty = "100"
"#,
        p42 = ports[0],
        p44 = ports[1],
        p50 = ports[2],
    )
}

pub fn start(reset_on_logon: bool) -> (Server, [u16; 3]) {
    let ports = [free_port(), free_port(), free_port()];
    let s = Server::start(&config(ports, reset_on_logon), &ports);
    (s, ports)
}

#[test]
fn logon_heartbeat_test_request_and_logout_on_every_version() {
    let (server, ports) = start(true);
    for (port, begin) in ports.iter().zip(["FIX.4.2", "FIX.4.4", "FIXT.1.1"]) {
        let mut c = FixClient::tcp(*port, begin);
        c.logon(30, &[]);
        let logon = c.expect("A");
        assert_eq!(logon.get(8), Some(begin));
        assert_eq!(logon.get(108), Some("30"));
        assert_eq!(logon.get(49), Some("ISLD"));
        if begin == "FIXT.1.1" {
            assert_eq!(logon.get(1137), Some("9"));
        }
        c.send("0", &[]);
        c.send("1", &[(112, "PING-1")]);
        let hb = c.expect("0");
        assert_eq!(hb.get(112), Some("PING-1"));
        c.send("5", &[]);
        c.expect("5");
        assert!(c.closed());
    }
    drop(server);
}

#[test]
fn server_sends_heartbeats_and_test_requests_on_a_quiet_session() {
    let (_server, ports) = start(true);
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(1, &[]);
    c.expect("A");
    // With HeartBtInt=1 and a silent client: Heartbeat, then TestRequest, then disconnect.
    let mut kinds = Vec::new();
    while let Some(m) = c.try_recv() {
        kinds.push(m.msg_type().to_owned());
    }
    assert!(kinds.contains(&"0".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"1".to_owned()), "{kinds:?}");
}

#[test]
fn gap_is_requested_and_filled_both_ways() {
    let (_server, ports) = start(true);
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    c.expect("A");
    // We skip 2..=3: the server asks for them.
    c.seq = 4;
    c.send("1", &[(112, "AFTER-GAP")]);
    let rr = c.expect("2");
    assert_eq!(rr.get(7), Some("2"));
    assert_eq!(rr.get(16), Some("0"));
    // Fill the gap; the queued TestRequest is then answered.
    let gf = c.encode(
        "4",
        2,
        &[(43, "Y"), (122, "20200101-00:00:00"), (123, "Y"), (36, "4")],
    );
    c.write(&gf);
    let hb = c.expect("0");
    assert_eq!(hb.get(112), Some("AFTER-GAP"));
    // Now we ask the server to resend everything: Logon and ResendRequest become gap fills.
    c.send("2", &[(7, "1"), (16, "0")]);
    let mut resent = Vec::new();
    loop {
        let m = c.recv();
        assert_eq!(m.get(43), Some("Y"), "{m:?}");
        resent.push(m.clone());
        let last = if m.msg_type() == "4" {
            m.get(36).unwrap().parse::<u64>().unwrap() - 1
        } else {
            m.seq()
        };
        if last >= 3 {
            break;
        }
    }
    assert_eq!(resent[0].msg_type(), "4");
    assert_eq!(resent[0].seq(), 1);
}

/// A resting NewOrderSingle of TW-ACC with ClOrdID `cl`; returns its MsgSeqNum.
fn resting_order(c: &mut FixClient, cl: &str) -> u64 {
    c.send(
        "D",
        &[
            (11, cl),
            (1, "TW-ACC"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20261128-12:00:00"),
            (38, "1"),
            (40, "2"),
            (44, "100.5"),
            (59, "1"),
        ],
    )
}

#[test]
fn a_logon_with_next_expected_msg_seq_num_gets_what_it_missed_after_the_logon() {
    let (_server, ports) = start(false);
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    c.expect("A");
    resting_order(&mut c, "NX-1");
    let first = c.expect("8");
    resting_order(&mut c, "NX-2");
    let lost = c.expect("8");
    assert_eq!(lost.get(11), Some("NX-2"));
    // The client logs out, and acts as if it never read the second report.
    c.send("5", &[]);
    c.expect("5");
    assert!(c.closed());
    let client_seq = c.seq;

    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.seq = client_seq;
    let missed_from = lost.seq().to_string();
    c.logon(30, &[(789, &missed_from)]);
    let logon = c.expect("A");
    // Ours: the client's Logon was in sequence, so we expect the number after it.
    assert_eq!(logon.get(789), Some((client_seq + 1).to_string().as_str()));
    // Everything from the client's 789 up to the Logon follows it, unasked: application
    // messages with PossDupFlag=Y (the lost report among them), session messages as gap fills.
    let mut next = lost.seq();
    let mut reports = Vec::new();
    while next < logon.seq() {
        let m = c.recv();
        assert_eq!(m.seq(), next, "{m:?}");
        assert_eq!(m.get(43), Some("Y"), "{m:?}");
        next = if m.msg_type() == "4" {
            m.get(36).unwrap().parse().unwrap()
        } else {
            reports.push(m.clone());
            m.seq() + 1
        };
    }
    assert_eq!(next, logon.seq());
    assert_eq!(reports[0].get(11), Some("NX-2"), "{reports:?}");
    assert_eq!(reports[0].get(37), lost.get(37));
    assert_eq!(reports[0].get(122), lost.get(52));
    assert!(reports.iter().all(|m| m.get(11) != first.get(11)));
    // The session goes on: new messages (the reports of the orders cancelled when the first
    // connection dropped) follow in sequence, without PossDupFlag.
    c.send("1", &[(112, "AFTER-789")]);
    let mut seq = logon.seq();
    loop {
        let m = c.recv();
        seq += 1;
        assert_eq!((m.seq(), m.get(43)), (seq, None), "{m:?}");
        if m.msg_type() == "0" {
            assert_eq!(m.get(112), Some("AFTER-789"));
            break;
        }
        assert_eq!(m.get(39), Some("4"), "{m:?}");
    }

    // A client claiming to have messages we never sent is refused.
    c.send("5", &[]);
    c.expect("5");
    let mut c2 = FixClient::tcp(ports[1], "FIX.4.4");
    c2.seq = c.seq;
    c2.logon(30, &[(789, "999999")]);
    let logout = c2.expect("5");
    assert!(
        logout
            .get(58)
            .unwrap()
            .starts_with("NextExpectedMsgSeqNum too high, expecting"),
        "{logout:?}"
    );
    assert!(c2.closed());
}

#[test]
fn a_logon_with_reset_seq_num_flag_while_logged_on_restarts_both_sequences_for_good() {
    let (mut server, ports) = start(false);
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    c.expect("A");
    resting_order(&mut c, "DAY-1");
    assert_eq!(c.expect("8").seq(), 2);
    // A new day without disconnecting: the client's reset Logon is number 1, and so is ours.
    c.seq = 1;
    c.logon(30, &[(141, "Y")]);
    let logon = c.expect("A");
    assert_eq!((logon.seq(), logon.get(141)), (1, Some("Y")), "{logon:?}");
    assert_eq!(resting_order(&mut c, "DAY-2"), 2);
    let er = c.expect("8");
    assert_eq!((er.seq(), er.get(11)), (2, Some("DAY-2")), "{er:?}");
    // The old day's messages are gone: a resend of everything covers the new sequence only.
    c.send("2", &[(7, "1"), (16, "0")]);
    let gf = c.expect("4");
    assert_eq!((gf.seq(), gf.get(36)), (1, Some("2")), "{gf:?}");
    let er = c.expect("8");
    assert_eq!(
        (er.seq(), er.get(11), er.get(43)),
        (2, Some("DAY-2"), Some("Y"))
    );
    // The new numbers are the stored ones: after a restart both sides go on from them.
    c.send("5", &[]);
    c.expect("5");
    server.restart();
    let mut c2 = FixClient::tcp(ports[1], "FIX.4.4");
    c2.seq = c.seq;
    c2.logon(30, &[]);
    let logon = c2.expect("A");
    // Ours: Logon 1, report 2, Logout 3 (the resend took no number), then this Logon.
    assert_eq!(logon.seq(), 4, "{logon:?}");
}

#[test]
fn new_order_single_gets_an_execution_report() {
    let (_server, ports) = start(true);
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    c.expect("A");
    let seq = resting_order(&mut c, "ORD-1");
    assert_eq!(seq, 2);
    let er = c.expect("8");
    assert_eq!(er.get(11), Some("ORD-1"), "{er:?}");
    assert_eq!(er.get(150), Some("0"), "{er:?}");
    assert_eq!(er.get(39), Some("0"), "{er:?}");
    assert_eq!(er.get(55), Some("BTC-PERP"));
    assert_eq!(er.get(1), Some("TW-ACC"));
    assert_eq!(er.get(44), Some("100.5"));
    assert_eq!(er.get(38), Some("1.000"));
    assert_eq!(er.get(151), Some("1.000"));
    assert_eq!(er.get(14), Some("0.000"));
}

#[test]
fn invalid_message_gets_a_session_reject_with_reason() {
    let (_server, ports) = start(true);
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    c.expect("A");
    // TestRequest without its required TestReqID(112).
    let seq = c.send("1", &[]);
    let r = c.expect("3");
    assert_eq!(r.get(45), Some(seq.to_string().as_str()));
    assert_eq!(r.get(373), Some("1"));
    assert_eq!(r.get(371), Some("112"));
    // An unknown MsgType.
    c.send("ZZ", &[]);
    let r = c.expect("3");
    assert_eq!(r.get(373), Some("11"));
    // The session goes on.
    c.send("1", &[(112, "STILL-HERE")]);
    assert_eq!(c.expect("0").get(112), Some("STILL-HERE"));
}

#[test]
fn first_message_not_a_logon_is_disconnected_without_reply() {
    let (_server, ports) = start(true);
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.send("0", &[]);
    assert!(c.try_recv().is_none());
}

#[test]
fn unknown_session_is_disconnected_without_reply() {
    let (_server, ports) = start(true);
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.sender = "STRANGER".into();
    c.logon(30, &[]);
    assert!(c.try_recv().is_none());
}

#[test]
fn garbage_on_the_wire_does_not_crash_the_server() {
    let (_server, ports) = start(true);
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(c.try_recv().is_none());
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.write(b"8=FIX.4.4\x019=999999999\x01");
    assert!(c.try_recv().is_none());
    // Still serving.
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    c.expect("A");
}

#[test]
fn one_address_holds_at_most_max_connections_per_ip() {
    let ports = [free_port(), free_port(), free_port()];
    let cfg = config(ports, true).replacen(
        "name = \"fix44\"",
        "name = \"fix44\"\nmax_connections_per_ip = 2",
        1,
    );
    let _server = Server::start(&cfg, &ports);
    // The start-up probe's connections have closed.
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Two connections that never log on hold the address's places...
    let idle: Vec<FixClient> = (0..2)
        .map(|_| FixClient::tcp(ports[1], "FIX.4.4"))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // ...so a third from it is closed before it can log on.
    let mut third = FixClient::tcp(ports[1], "FIX.4.4");
    third.logon(30, &[]);
    assert!(third.try_recv().is_none(), "the third connection is served");
    // Another listener of the server counts its own connections.
    let mut other = FixClient::tcp(ports[0], "FIX.4.2");
    other.logon(30, &[]);
    other.expect("A");
    // One place given back: the address logs on again.
    drop(idle);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    c.expect("A");
}

/// `portcullis admin sessions`, until `name` is listed in `state`; returns its line.
fn session_line(server: &Server, name: &str, state: &str) -> String {
    for _ in 0..200 {
        let (code, out) = server.cli(&["admin", "sessions"]);
        assert_eq!(code, 0, "{out}");
        if let Some(line) = out.lines().find(|l| l.starts_with(&format!("{name} "))) {
            if line.split(' ').nth(1) == Some(state) {
                return line.to_owned();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{name} never {state}");
}

#[test]
fn an_operator_sets_the_sequence_numbers_of_a_counterparty_that_started_again_at_one() {
    const NAME: &str = "FIX.4.4:ISLD->TW";
    let (mut server, ports) = start(false);
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    c.expect("A");
    c.send("1", &[(112, "T1")]);
    c.expect("0");
    c.send("5", &[]);
    c.expect("5");
    assert!(c.closed());
    let line = session_line(&server, NAME, "disconnected");
    assert!(
        line.ends_with("next_sender_seq=4 next_target_seq=4"),
        "{line}"
    );

    // The counterparty restarted its engine at 1 without ResetSeqNumFlag: refused until an
    // operator sets the number expected of it.
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    let logout = c.expect("5");
    assert_eq!(
        logout.get(58),
        Some("MsgSeqNum too low, expecting 4 but received 1")
    );
    assert!(c.closed());
    session_line(&server, NAME, "disconnected");
    let (code, out) = server.cli(&["admin", "sequence", "--session", NAME, "--next-target", "1"]);
    assert_eq!(code, 0, "{out}");
    // (The Logout refusing the Logon was not a message of the session's sequence.)
    assert!(out.contains("next_sender_seq=4 next_target_seq=1"), "{out}");
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    let logon = c.expect("A");
    assert_eq!(logon.seq(), 4);

    // Never under a live connection.
    let (code, out) = server.cli(&["admin", "sequence", "--session", NAME, "--reset"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("has a connection: log it out first"), "{out}");
    c.send("5", &[]);
    c.expect("5");
    assert!(c.closed());
    session_line(&server, NAME, "disconnected");

    // Ours only forward; refusals exit 2 with the reason and change nothing.
    let seq = |server: &Server, args: &[&str]| {
        let mut all = vec!["admin", "sequence", "--session", NAME];
        all.extend_from_slice(args);
        server.cli(&all)
    };
    let (code, out) = seq(&server, &["--next-sender", "3"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("next_sender_seq 3 is below the next number to send, 6"),
        "{out}"
    );
    let (code, out) = seq(&server, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nothing to change"), "{out}");
    let (code, out) = server.cli(&[
        "admin",
        "sequence",
        "--session",
        "FIX.4.4:NOPE->TW",
        "--reset",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no session \"FIX.4.4:NOPE->TW\""), "{out}");
    let (code, out) = seq(&server, &["--next-sender", "100"]);
    assert_eq!(code, 0, "{out}");

    // What was set is durable: it survives a restart.
    server.restart();
    let line = session_line(&server, NAME, "disconnected");
    assert!(
        line.ends_with("next_sender_seq=100 next_target_seq=3"),
        "{line}"
    );
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.seq = 3;
    c.logon(30, &[]);
    assert_eq!(c.expect("A").seq(), 100);
    // A ResendRequest for what came before the jump is answered with a gap fill.
    c.send("2", &[(7, "95"), (16, "0")]);
    let gap = c.expect("4");
    assert_eq!(
        (gap.seq(), gap.get(123), gap.get(36)),
        (95, Some("Y"), Some("101"))
    );
    c.send("5", &[]);
    c.expect("5");
    assert!(c.closed());
    session_line(&server, NAME, "disconnected");

    // A reset starts both sequences again at 1.
    let (code, out) = seq(&server, &["--reset"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("reset, next_sender_seq=1 next_target_seq=1"),
        "{out}"
    );
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    assert_eq!(c.expect("A").seq(), 1);
    let events = server.audit_events(&[]);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "admin" && e["reason"] == "sequence"),
        "no audit event of the sequence change"
    );

    // Without a master key the store is plaintext, and locked while the server holds it.
    let (code, out) = server.cli(&["fix-log", "--session", NAME]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("stop the server first"), "{out}");
    drop(c);
    assert_eq!(server.stop(), Some(0));
    let (code, out) = server.cli(&["fix-log", "--session", NAME]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].ends_with("next_sender_seq=2 next_target_seq=2"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("out 1 8=FIX.4.4|") && lines[1].contains("|35=A|"),
        "{out}"
    );
    assert_eq!(lines.len(), 2, "{out}");
}
