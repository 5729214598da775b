//! Sequence numbers and the outbound store survive a restart of the server.

use crate::fix_session::start;
use crate::harness::FixClient;

#[test]
fn sequence_numbers_continue_and_resend_is_served_after_restart() {
    let (mut server, ports) = start(false);
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    assert_eq!(c.expect("A").seq(), 1);
    // An order: the server acknowledges it with an ExecutionReport (seq 2) we can ask for
    // again.
    c.send(
        "D",
        &[
            (11, "KEEP-ME"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20261128-12:00:00"),
            (38, "1"),
            (40, "2"),
            (44, "100"),
        ],
    );
    let er = c.expect("8");
    assert_eq!(er.seq(), 2);
    assert_eq!(er.get(39), Some("0"), "the order is acknowledged: {er:?}");
    c.send("5", &[]);
    assert_eq!(c.expect("5").seq(), 3);
    assert!(c.closed());

    assert_eq!(
        server.stop(),
        Some(0),
        "clean shutdown: {}",
        server.log_text()
    );
    server.restart();

    let mut c2 = FixClient::tcp(ports[1], "FIX.4.4");
    c2.seq = c.seq;
    c2.logon(30, &[]);
    let logon = c2.expect("A");
    assert_eq!(logon.seq(), 4, "outbound numbers continue");
    // Ask for everything again: the ExecutionReport comes back from disk.
    c2.send("2", &[(7, "1"), (16, "0")]);
    let gf = c2.expect("4");
    assert_eq!(gf.seq(), 1);
    assert_eq!(gf.get(36), Some("2"));
    let again = c2.expect("8");
    assert_eq!(again.seq(), 2);
    assert_eq!(again.get(43), Some("Y"));
    assert_eq!(again.get(11), Some("KEEP-ME"));
    assert_eq!(again.get(17), er.get(17), "the same report, ExecID and all");
    assert_eq!(again.get(122), er.get(52));
    let tail = c2.expect("4");
    assert_eq!(tail.seq(), 3);
    assert_eq!(tail.get(36), Some("5"));
}

#[test]
fn a_session_can_have_only_one_connection() {
    let (_server, ports) = start(true);
    let mut a = FixClient::tcp(ports[1], "FIX.4.4");
    a.logon(30, &[]);
    a.expect("A");
    let mut b = FixClient::tcp(ports[1], "FIX.4.4");
    b.logon(30, &[]);
    assert!(b.try_recv().is_none(), "second connection refused");
    a.send("1", &[(112, "A-ALIVE")]);
    assert_eq!(a.expect("0").get(112), Some("A-ALIVE"));
}

#[test]
fn an_order_read_but_not_answered_before_a_crash_is_asked_for_again() {
    let (mut server, ports) = start(false);
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    c.expect("A");
    // The core is paused for maintenance: the order is read and queued, not answered.
    let (code, out) = server.cli(&["admin", "pause-core"]);
    assert_eq!(code, 0, "{out}");
    let order = [
        (11, "ASK-AGAIN"),
        (55, "BTC-PERP"),
        (54, "1"),
        (60, "20261128-12:00:00"),
        (38, "1"),
        (40, "2"),
        (44, "100"),
    ];
    assert_eq!(c.send("D", &order), 2);
    // A TestRequest behind it is answered: the session has read and handled the order.
    c.send("1", &[(112, "AFTER-THE-ORDER")]);
    let hb = c.expect("0");
    assert_eq!(hb.get(112), Some("AFTER-THE-ORDER"));

    // The process dies before the order is answered.
    server.signal("KILL");
    server.restart();

    // The session did not store the order's number: the next Logon gets a ResendRequest
    // for it, and the resent order is taken and acknowledged.
    let mut c2 = FixClient::tcp(ports[1], "FIX.4.4");
    c2.seq = c.seq;
    c2.logon(30, &[]);
    c2.expect("A");
    let rr = c2.expect("2");
    assert_eq!(
        rr.get(7),
        Some("2"),
        "asks for the unanswered order: {rr:?}"
    );
    // PossDupFlag and OrigSendingTime are header fields: they come before the body.
    let mut again = vec![(43, "Y"), (122, "20261128-12:00:00.000")];
    again.extend(order);
    let bytes = c2.encode("D", 2, &again);
    c2.write(&bytes);
    let fill = c2.encode(
        "4",
        3,
        &[
            (43, "Y"),
            (122, "20261128-12:00:00.000"),
            (123, "Y"),
            (36, "4"),
        ],
    );
    c2.write(&fill);
    let er = c2.expect("8");
    assert_eq!(er.get(11), Some("ASK-AGAIN"));
    assert_eq!(
        er.get(39),
        Some("0"),
        "the resent order is acknowledged: {er:?}"
    );
    // Nothing doubled: a status request finds the one order, working.
    c2.send("H", &[(11, "ASK-AGAIN"), (55, "BTC-PERP"), (54, "1")]);
    let st = c2.expect("8");
    assert_eq!(st.get(39), Some("0"), "{st:?}");
    assert_eq!(st.get(14), Some("0.000"), "nothing filled: {st:?}");
}

#[test]
fn an_order_that_ended_before_a_restart_keeps_its_final_state() {
    // With a master key, so the server keeps its journal (and the history read from it).
    let ports = [
        crate::harness::free_port(),
        crate::harness::free_port(),
        crate::harness::free_port(),
    ];
    let mut server = crate::harness::Server::configure(
        &crate::fix_session::config(ports, false),
        &ports,
        &crate::auth::env(),
    );
    server.launch();
    let mut c = FixClient::tcp(ports[1], "FIX.4.4");
    c.logon(30, &[]);
    c.expect("A");
    let order = |c: &mut FixClient, cl: &str| {
        c.send(
            "D",
            &[
                (11, cl),
                (55, "BTC-PERP"),
                (54, "1"),
                (60, "20261128-12:00:00"),
                (38, "2"),
                (40, "2"),
                (44, "100"),
            ],
        );
        let ack = c.expect("8");
        assert_eq!(ack.get(39), Some("0"), "{ack:?}");
        ack.get(37).unwrap().to_owned()
    };
    let gone = order(&mut c, "GONE-1");
    order(&mut c, "KEPT-1");
    c.send(
        "F",
        &[
            (41, "GONE-1"),
            (11, "GONE-1-X"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20261128-12:00:01"),
        ],
    );
    assert_eq!(c.expect("8").get(39), Some("4"));
    c.send("5", &[]);
    c.expect("5");
    // The session's memory of ended orders does not outlive the process; the journal does.
    assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    server.restart();

    let mut c2 = FixClient::tcp(ports[1], "FIX.4.4");
    c2.seq = c.seq;
    c2.logon(30, &[]);
    c2.expect("A");
    // The history is read back in the background: ask until it has the order.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        c2.send("H", &[(11, "GONE-1"), (55, "BTC-PERP"), (54, "1")]);
        let m = c2.expect("8");
        if m.get(39) != Some("8") || std::time::Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.get(150), Some("I"), "{status:?}");
    assert_eq!(
        status.get(39),
        Some("4"),
        "cancelled before the restart: {status:?}"
    );
    assert_eq!(status.get(37), Some(gone.as_str()), "{status:?}");
    assert_eq!(status.get(151), Some("0.000"), "{status:?}");
    assert_eq!(status.get(14), Some("0.000"), "{status:?}");
    // A cancel of it is "too late" (CxlRejReason 0) with its final status, not "unknown".
    c2.send(
        "F",
        &[
            (41, "GONE-1"),
            (11, "GONE-1-Y"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20261128-12:00:02"),
        ],
    );
    let reject = c2.expect("9");
    assert_eq!(reject.get(102), Some("0"), "{reject:?}");
    assert_eq!(reject.get(39), Some("4"), "{reject:?}");
    // An order the session never had is still unknown.
    c2.send("H", &[(11, "NEVER-1"), (55, "BTC-PERP"), (54, "1")]);
    let m = c2.expect("8");
    assert_eq!((m.get(39), m.get(103)), (Some("8"), Some("5")), "{m:?}");
}
