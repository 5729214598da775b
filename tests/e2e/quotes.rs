//! Mass quoting seen from the outside: a market maker keeps two-sided quotes with MassQuote
//! (i) and QuoteCancel (Z) over FIX 4.4 and FIX 5.0 SP2, another account trades against them,
//! and the market maker reads MassQuoteAcknowledgements (b) and the fills' ExecutionReports.

use crate::auth::{create_key, env};
use crate::harness::{FixClient, Msg, Server};
use crate::pipeline::{assert_fields, config, connect, ports, S};

/// The (QuoteEntryID, QuoteEntryRejectReason) of an acknowledgement's entries.
fn ack_entries(m: &Msg) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for (t, v) in &m.0 {
        match t {
            299 => out.push((v.clone(), None)),
            368 => out.last_mut().expect("inside an entry").1 = Some(v.clone()),
            _ => {}
        }
    }
    out
}

/// (QuoteEntryID, Symbol, the entry's prices and sizes).
type Entry<'a> = (&'a str, &'a str, &'a [(u32, &'a str)]);

/// A MassQuote of one set: (QuoteEntryID, Symbol, [(tag, value)] of prices and sizes).
fn mass_quote(c: &mut FixClient, quote_id: &str, level: &str, entries: &[Entry<'_>]) {
    let n = entries.len().to_string();
    let mut f: Vec<(u32, &str)> = vec![
        (117, quote_id),
        (537, "1"),
        (301, level),
        (296, "1"),
        (302, "1"),
        (304, &n),
        (295, &n),
    ];
    for (id, symbol, sides) in entries {
        f.push((299, id));
        f.push((55, symbol));
        f.extend_from_slice(sides);
    }
    c.send("i", &f);
}

/// The market maker's working orders as an OrderMassStatusRequest lists them:
/// (symbol, side, price, leaves).
fn working(c: &mut FixClient, id: &str) -> Vec<(String, String, String, String)> {
    c.send("AF", &[(584, id), (585, "7")]);
    let mut out = Vec::new();
    loop {
        let m = c.expect("8");
        assert_eq!(m.get(584), Some(id), "{m:?}");
        if m.get(911) == Some("0") {
            return out;
        }
        let field = |t| m.get(t).unwrap_or("").to_owned();
        out.push((field(55), field(54), field(44), field(151)));
        if m.get(912) == Some("Y") {
            out.sort();
            return out;
        }
    }
}

fn row(symbol: &str, side: &str, price: &str, leaves: &str) -> (String, String, String, String) {
    (symbol.into(), side.into(), price.into(), leaves.into())
}

fn mm_and_taker(mm_begin: &'static str, extra: &str) -> (Server, FixClient, FixClient) {
    let p = ports();
    let sessions = [
        S::signed(mm_begin, "MM", "ACC-MM"),
        S::signed("FIX.4.4", "TAKER", "ACC-T"),
    ];
    let mut server = Server::configure(&config(p, &sessions, extra), &p, &env());
    let km = create_key(&server, &["--account", "ACC-MM", "--scopes", "trade"]);
    let kt = create_key(&server, &["--account", "ACC-T", "--scopes", "trade"]);
    server.launch();
    let mm = connect(p, mm_begin, "MM", Some(&km));
    let taker = connect(p, "FIX.4.4", "TAKER", Some(&kt));
    (server, mm, taker)
}

#[test]
fn a_market_maker_quotes_requotes_trades_and_cancels_with_one_message_each() {
    for begin in ["FIX.4.4", "FIXT.1.1"] {
        market_maker(begin);
    }
}

fn market_maker(begin: &'static str) {
    let (server, mut mm, mut taker) = mm_and_taker(begin, "");
    for (symbol, price) in [("BTC-PERP", "100"), ("ETH-PERP", "10")] {
        let (code, out) = server.cli(&["admin", "mark", "--instrument", symbol, "--price", price]);
        assert_eq!(code, 0, "{out}");
    }

    // Two instruments, both sides, every entry acknowledged (QuoteResponseLevel 2).
    mass_quote(
        &mut mm,
        "Q1",
        "2",
        &[
            (
                "E1",
                "BTC-PERP",
                &[(132, "99"), (133, "101"), (134, "1"), (135, "1")],
            ),
            (
                "E2",
                "ETH-PERP",
                &[(132, "9.9"), (133, "10.1"), (134, "2"), (135, "2")],
            ),
        ],
    );
    let ack = mm.expect("b");
    assert_fields(&ack, &[(117, "Q1"), (297, "0"), (301, "2")]);
    assert_eq!(
        ack_entries(&ack),
        [("E1".to_owned(), None), ("E2".to_owned(), None)]
    );
    assert_eq!(
        working(&mut mm, "W1"),
        [
            row("BTC-PERP", "1", "99.0", "1.000"),
            row("BTC-PERP", "2", "101.0", "1.000"),
            row("ETH-PERP", "1", "9.90", "2.00"),
            row("ETH-PERP", "2", "10.10", "2.00"),
        ]
    );

    // The taker sells into the bid: the market maker hears of the fill.
    taker.send(
        "D",
        &[
            (11, "T1"),
            (55, "BTC-PERP"),
            (54, "2"),
            (60, "20260101-00:00:00"),
            (38, "0.4"),
            (40, "2"),
            (44, "99"),
            (59, "3"),
        ],
    );
    assert_fields(&taker.expect("8"), &[(11, "T1"), (150, "0")]);
    assert_fields(&taker.expect("8"), &[(11, "T1"), (150, "F"), (39, "2")]);
    let fill = mm.expect("8");
    assert_fields(
        &fill,
        &[
            (55, "BTC-PERP"),
            (54, "1"),
            (150, "F"),
            (39, "1"),
            (32, "0.400"),
            (31, "99.0"),
            (151, "0.600"),
        ],
    );
    assert!(fill.get(11).unwrap().starts_with('Q'), "{fill:?}");

    // Requote: a smaller bid at the same price, the offer moved, ETH's offer taken out, and an
    // unknown instrument. Level 1: only the refused entry is acknowledged.
    mass_quote(
        &mut mm,
        "Q2",
        "1",
        &[
            (
                "E1",
                "BTC-PERP",
                &[(132, "99"), (133, "102"), (134, "0.5"), (135, "1")],
            ),
            (
                "E2",
                "ETH-PERP",
                &[(132, "9.9"), (133, "10.1"), (134, "2"), (135, "0")],
            ),
            ("E3", "XRP-PERP", &[(132, "1"), (134, "1")]),
        ],
    );
    let ack = mm.expect("b");
    assert_fields(&ack, &[(117, "Q2"), (297, "0")]);
    assert_eq!(ack_entries(&ack), [("E3".to_owned(), Some("1".to_owned()))]);
    assert!(
        ack.get(58).unwrap().contains("unknown symbol XRP-PERP"),
        "{ack:?}"
    );
    assert_eq!(
        working(&mut mm, "W2"),
        [
            row("BTC-PERP", "1", "99.0", "0.500"),
            row("BTC-PERP", "2", "102.0", "1.000"),
            row("ETH-PERP", "1", "9.90", "2.00"),
        ]
    );

    // A bid outside the price band is refused, and the bid it was to replace is taken out of
    // the market rather than left at 99.
    mass_quote(
        &mut mm,
        "Q3",
        "0",
        &[(
            "E1",
            "BTC-PERP",
            &[(132, "50"), (133, "102"), (134, "0.5"), (135, "1")],
        )],
    );
    let ack = mm.expect("b");
    assert_fields(&ack, &[(117, "Q3"), (297, "5")]);
    assert_eq!(ack_entries(&ack), [("E1".to_owned(), Some("8".to_owned()))]);
    assert_eq!(
        ack.get(58),
        Some("E1: bid: price outside the allowed band"),
        "{ack:?}"
    );
    assert_eq!(
        working(&mut mm, "W3"),
        [
            row("BTC-PERP", "2", "102.0", "1.000"),
            row("ETH-PERP", "1", "9.90", "2.00")
        ]
    );

    // QuoteCancel for ETH, then for everything.
    mm.send(
        "Z",
        &[(117, "C1"), (298, "1"), (295, "1"), (55, "ETH-PERP")],
    );
    assert_fields(&mm.expect("b"), &[(117, "C1"), (297, "1")]);
    assert_eq!(
        working(&mut mm, "W4"),
        [row("BTC-PERP", "2", "102.0", "1.000")]
    );
    mm.send("Z", &[(117, "C2"), (298, "4")]);
    assert_fields(&mm.expect("b"), &[(117, "C2"), (297, "4")]);
    assert!(working(&mut mm, "W5").is_empty());
    // The taker's buy finds nothing to trade with.
    taker.send(
        "D",
        &[
            (11, "T2"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260101-00:00:00"),
            (38, "1"),
            (40, "2"),
            (44, "105"),
            (59, "3"),
        ],
    );
    assert_fields(&taker.expect("8"), &[(11, "T2"), (150, "0")]);
    assert_fields(&taker.expect("8"), &[(11, "T2"), (150, "4"), (14, "0.000")]);

    // Quotes end with their connection.
    mass_quote(
        &mut mm,
        "Q4",
        "2",
        &[("E1", "BTC-PERP", &[(132, "99"), (134, "1")])],
    );
    assert_fields(&mm.expect("b"), &[(117, "Q4"), (297, "0")]);
    mm.send("5", &[]);
    mm.expect("5");
    assert!(mm.closed());
    taker.send(
        "D",
        &[
            (11, "T3"),
            (55, "BTC-PERP"),
            (54, "2"),
            (60, "20260101-00:00:00"),
            (38, "1"),
            (40, "2"),
            (44, "99"),
            (59, "3"),
        ],
    );
    assert_fields(&taker.expect("8"), &[(11, "T3"), (150, "0")]);
    assert_fields(&taker.expect("8"), &[(11, "T3"), (150, "4"), (14, "0.000")]);
}

#[test]
fn mass_quotes_are_refused_whole_where_they_cannot_be_taken() {
    let extra = "";
    let p = ports();
    let sessions = [
        S::plain("FIX.4.4", "MM", "ACC-MM"),
        S::plain("FIX.4.2", "MM42", "ACC-MM"),
    ];
    // Without cancel-on-disconnect, quotes could outlive their connection: refused.
    let cfg = config(p, &sessions, extra).replacen(
        "authentication = \"none\"\n",
        "authentication = \"none\"\ncancel_on_disconnect = false\n",
        1,
    );
    let mut server = Server::configure(&cfg, &p, &env());
    server.launch();
    let mut mm = connect(p, "FIX.4.4", "MM", None);
    mass_quote(
        &mut mm,
        "Q1",
        "2",
        &[("E1", "BTC-PERP", &[(132, "99"), (134, "1")])],
    );
    let ack = mm.expect("b");
    assert_fields(&ack, &[(117, "Q1"), (297, "5"), (300, "9")]);
    assert!(
        ack.get(58).unwrap().contains("cancel_on_disconnect"),
        "{ack:?}"
    );
    // FIX 4.2 has MassQuote, but Portcullis takes it from 4.4 on.
    let mut old = connect(p, "FIX.4.2", "MM42", None);
    old.send(
        "i",
        &[
            (117, "Q1"),
            (296, "1"),
            (302, "1"),
            (295, "1"),
            (299, "E1"),
            (55, "BTC-PERP"),
        ],
    );
    let reject = old.recv();
    assert_eq!(reject.msg_type(), "j", "{reject:?}");
    assert_fields(&reject, &[(372, "i"), (380, "3")]);
}

#[test]
fn market_maker_protection_takes_the_quotes_out_when_fills_reach_its_limit() {
    let p = ports();
    let sessions = [
        S::plain("FIX.4.4", "MM", "ACC-MM"),
        S::plain("FIX.4.4", "TAKER", "ACC-T"),
    ];
    let cfg = config(p, &sessions, "").replacen(
        "authentication = \"none\"\n",
        "authentication = \"none\"\nmmp = { interval_ms = 60000, qty = \"1\", frozen_ms = 500 }\n",
        1,
    );
    let mut server = Server::configure(&cfg, &p, &env());
    server.launch();
    let mut mm = connect(p, "FIX.4.4", "MM", None);
    let mut taker = connect(p, "FIX.4.4", "TAKER", None);
    let quotes: &[Entry<'_>] = &[
        (
            "E1",
            "BTC-PERP",
            &[(132, "99"), (133, "101"), (134, "0.6"), (135, "1")],
        ),
        ("E2", "ETH-PERP", &[(132, "9.9"), (134, "2")]),
    ];
    mass_quote(&mut mm, "Q1", "2", quotes);
    assert_fields(&mm.expect("b"), &[(117, "Q1"), (297, "0")]);
    let sell = |c: &mut FixClient, cl: &str, symbol: &str, qty: &str, price: &str| {
        c.send(
            "D",
            &[
                (11, cl),
                (55, symbol),
                (54, "2"),
                (60, "20260101-00:00:00"),
                (38, qty),
                (40, "2"),
                (44, price),
                (59, "3"),
            ],
        );
        assert_fields(&c.expect("8"), &[(11, cl), (150, "0")]);
        assert_fields(&c.expect("8"), &[(11, cl), (150, "F")]);
    };
    // 0.6 filled: below the limit of 1.
    sell(&mut taker, "T1", "BTC-PERP", "0.6", "99");
    assert_fields(&mm.expect("8"), &[(55, "BTC-PERP"), (150, "F"), (39, "2")]);
    // 0.5 more: 1.1, tripped. The market maker hears of the fill, then that its quotes are
    // out (the offer and the rest of the ETH bid cancelled) and why.
    sell(&mut taker, "T2", "ETH-PERP", "0.5", "9.9");
    assert_fields(&mm.expect("8"), &[(55, "ETH-PERP"), (150, "F"), (39, "1")]);
    let mut canceled = Vec::new();
    let mut notice = None;
    while canceled.len() < 2 || notice.is_none() {
        let m = mm.recv();
        match m.msg_type() {
            "8" => {
                assert_fields(&m, &[(150, "4"), (39, "4")]);
                canceled.push((m.get(55).unwrap().to_owned(), m.get(54).unwrap().to_owned()));
            }
            "b" => notice = Some(m),
            _ => panic!("unexpected {m:?}"),
        }
    }
    canceled.sort();
    assert_eq!(
        canceled,
        [
            ("BTC-PERP".into(), "2".into()),
            ("ETH-PERP".into(), "1".into())
        ]
    );
    let notice = notice.unwrap();
    assert_fields(&notice, &[(297, "6")]);
    assert!(
        notice.get(58).unwrap().contains("market maker protection"),
        "{notice:?}"
    );
    // Frozen: quotes are refused, then taken again once the freeze is over.
    mass_quote(&mut mm, "Q2", "2", quotes);
    let ack = mm.expect("b");
    assert_fields(&ack, &[(117, "Q2"), (297, "5"), (300, "99")]);
    assert!(
        ack.get(58)
            .unwrap()
            .contains("market maker protection tripped"),
        "{ack:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(600));
    mass_quote(&mut mm, "Q3", "2", quotes);
    assert_fields(&mm.expect("b"), &[(117, "Q3"), (297, "0")]);
}
