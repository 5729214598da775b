//! The venue link's protocol: what it sends for the core's route requests and what it reads
//! from the venue's messages, on a session driven by hand.

use super::*;
use portcullis_engine::{Instruments, InstrumentsConfig};
use portcullis_fix::{Encoder, Frame, TimePrecision};
use portcullis_session::fix_session::SessionConfig;
use portcullis_session::store::{MemoryStore, SyncPolicy};
use portcullis_types::{ClOrdId, InstrumentId, OrderDetails, Side, TimeInForce, TradeId};
use proptest::strategy::Strategy;

const VENUE: SessionId = SessionId(3);

fn dir() -> Directory {
    let cfg: InstrumentsConfig = toml::from_str(
        r#"
        [[instruments]]
        symbol = "BTC-PERP"
        price_scale = 1
        qty_scale = 3
        tick = "0.5"
        lot = "0.001"
        min_qty = "0.001"
        max_qty = "1000"
        "#,
    )
    .unwrap();
    let inst = Instruments::new(&cfg.instruments, &cfg.option_series, 0).unwrap();
    Directory::of(&inst)
}

fn settings(v: BeginString) -> VenueSettings {
    VenueSettings {
        name: "up".into(),
        connect: "127.0.0.1:1".into(),
        tls: None,
        config: SessionConfig::new(v, "BROKER", "VENUE"),
        instruments: vec!["BTC-PERP".into()],
        option_series: Vec::new(),
        credentials: None,
        account: Some("ACC-9".into()),
        heartbeat_secs: 30,
        reconnect: Duration::from_secs(1),
        reset_on_logon: false,
        store_sync: SyncPolicy::Never,
    }
}

fn now() -> UtcTimestamp {
    UtcTimestamp::now()
}

/// A session logged on to the venue (its answer fed in), with our Logon taken off.
fn logged_on(v: BeginString) -> Session {
    let mut s = Session::initiate(
        settings(v).config,
        Box::new(MemoryStore::new(now())),
        now(),
        InitiatorLogon {
            heartbeat_secs: 30,
            reset_seq_num: false,
            signer: None,
        },
    );
    sent(&mut s);
    s.handle_input(now(), &venue_msg(v, "A", 1, &[(98, "0"), (108, "30")]));
    assert_eq!(s.state(), SessionState::Active);
    while s.poll_event().is_some() {}
    s
}

fn venue_msg(v: BeginString, msg_type: &str, seq: u64, fields: &[(u32, &str)]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.start(v.as_bytes(), msg_type.as_bytes());
    e.str(49, b"VENUE");
    e.str(56, b"BROKER");
    e.uint(34, seq);
    e.timestamp(52, now(), TimePrecision::Millis);
    for (t, val) in fields {
        e.str(*t, val.as_bytes());
    }
    e.finish().to_vec()
}

/// An ExecutionReport of the venue about a BTC-PERP order, with `fields` after its own.
fn execution_report(v: BeginString, fields: &[(u32, &str)]) -> Vec<u8> {
    let mut all = vec![(37, "V-1"), (17, "E-1"), (55, "BTC-PERP"), (54, "1")];
    all.extend_from_slice(fields);
    venue_msg(v, "8", 2, &all)
}

/// The messages the session queued, as (tag, value) lists; consumed.
fn sent(s: &mut Session) -> Vec<Vec<(u32, String)>> {
    s.commit_store();
    let tx = s.transmit().to_vec();
    s.consume_transmit(tx.len());
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < tx.len() {
        let Frame::Complete { len } = portcullis_fix::frame(&tx[pos..], 1 << 20) else {
            panic!("invalid message sent");
        };
        let mut d = Decoder::new();
        let m = d.decode(&tx[pos..pos + len]).unwrap();
        out.push(
            m.fields()
                .map(|f| (f.tag, String::from_utf8_lossy(f.value).into_owned()))
                .collect(),
        );
        pos += len;
    }
    out
}

fn get(m: &[(u32, String)], t: u32) -> Option<&str> {
    m.iter().find(|(k, _)| *k == t).map(|(_, v)| v.as_str())
}

fn route(kind: RouteRequest, order: u64, exec_id: u64) -> Event {
    Event {
        session: VENUE,
        account: AccountId(0),
        instrument: InstrumentId(0),
        kind: EventKind::Route(kind),
        order_id: OrderId(order),
        cl_ord_id: ClOrdId::new(b"client-1").unwrap(),
        orig_cl_ord_id: ClOrdId::EMPTY,
        side: Side::Sell,
        ord_type: OrdType::Limit,
        tif: TimeInForce::Ioc,
        price: Price(1_000_005),
        qty: Qty(2_500),
        cum_qty: Qty(0),
        leaves_qty: Qty(2_500),
        avg_px: Price(0),
        last_px: Price(0),
        last_qty: Qty(0),
        trade_id: TradeId(0),
        exec_id,
        ts_ns: 0,
        received_ns: 0,
        details: OrderDetails {
            post_only: true,
            ..OrderDetails::default()
        },
    }
}

#[test]
fn a_routed_order_is_sent_as_a_new_order_single_with_its_order_id_as_cl_ord_id() {
    for v in [BeginString::Fix42, BeginString::Fix44] {
        let d = dir();
        let mut s = logged_on(v);
        let mut link = VenueLink::new(VENUE, &settings(v), VenueStatus::new("up", "127.0.0.1:1"));
        let r = link.on_route(&route(RouteRequest::New, 41, 7), Some(&mut s), &d, now());
        assert_eq!(r, None);
        let out = sent(&mut s);
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!(get(m, 35), Some("D"));
        assert_eq!(get(m, 11), Some("41"));
        assert_eq!(get(m, 1), Some("ACC-9"));
        assert_eq!(get(m, 55), Some("BTC-PERP"));
        assert_eq!(get(m, 54), Some("2"));
        assert_eq!(get(m, 38), Some("2.500"));
        assert_eq!(get(m, 40), Some("2"));
        assert_eq!(get(m, 44), Some("100000.5"));
        assert_eq!(get(m, 59), Some("3"));
        assert_eq!(get(m, 18), Some("6"));
        assert_eq!(get(m, 21), (v == BeginString::Fix42).then_some("1"));
    }
}

#[test]
fn without_a_logged_on_venue_an_order_is_refused_and_a_cancel_is_left_to_the_next_sync() {
    let d = dir();
    let v = BeginString::Fix44;
    let mut link = VenueLink::new(VENUE, &settings(v), VenueStatus::new("up", "127.0.0.1:1"));
    let r = link
        .on_route(&route(RouteRequest::New, 41, 7), None, &d, now())
        .unwrap();
    assert_eq!(
        (r.venue, r.order_id, r.kind),
        (VENUE, OrderId(41), VenueReportKind::Rejected)
    );
    assert_eq!(
        link.on_route(&route(RouteRequest::Cancel, 40, 9), None, &d, now()),
        None
    );
    // Once logged on, the core's sync asks for the cancel again: it is sent then.
    let mut s = logged_on(v);
    assert!(sent(&mut s).is_empty());
    link.on_route(&route(RouteRequest::Cancel, 40, 9), Some(&mut s), &d, now());
    let out = sent(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(get(&out[0], 35), Some("F"));
    assert_eq!(get(&out[0], 11), Some("C9"));
    assert_eq!(get(&out[0], 41), Some("40"));
    assert_eq!(get(&out[0], 38), Some("2.500"));
}

#[test]
fn execution_reports_become_venue_reports_of_the_order_they_name() {
    let d = dir();
    let v = BeginString::Fix44;
    let mut link = VenueLink::new(VENUE, &settings(v), VenueStatus::new("up", "127.0.0.1:1"));
    let er = |f: &[(u32, &str)]| execution_report(v, f);
    let r = link
        .on_message(&er(&[(11, "41"), (150, "0"), (39, "0")]), &d, now())
        .unwrap();
    assert_eq!(
        (r.order_id, r.kind),
        (OrderId(41), VenueReportKind::Accepted)
    );
    let r = link
        .on_message(
            &er(&[
                (11, "41"),
                (150, "F"),
                (39, "1"),
                (31, "99999.5"),
                (32, "1.5"),
                (14, "1.5"),
            ]),
            &d,
            now(),
        )
        .unwrap();
    assert_eq!(r.kind, VenueReportKind::Fill);
    assert_eq!(
        (r.last_px, r.last_qty, r.cum_qty),
        (Price(999_995), Qty(1_500), Qty(1_500))
    );
    // A cancel answers our request: the order is the OrigClOrdID.
    let r = link
        .on_message(
            &er(&[(11, "C9"), (41, "41"), (150, "4"), (39, "4")]),
            &d,
            now(),
        )
        .unwrap();
    assert_eq!(
        (r.order_id, r.kind),
        (OrderId(41), VenueReportKind::Canceled)
    );
    let r = link
        .on_message(&er(&[(11, "41"), (150, "C"), (39, "C")]), &d, now())
        .unwrap();
    assert_eq!(r.kind, VenueReportKind::Expired);
    let r = link
        .on_message(
            &er(&[(11, "41"), (150, "8"), (39, "8"), (103, "3")]),
            &d,
            now(),
        )
        .unwrap();
    assert_eq!(r.kind, VenueReportKind::Rejected);
    let cxl = venue_msg(
        v,
        "9",
        3,
        &[(37, "V-1"), (11, "C9"), (41, "41"), (39, "2"), (434, "1")],
    );
    let r = link.on_message(&cxl, &d, now()).unwrap();
    assert_eq!(
        (r.order_id, r.kind),
        (OrderId(41), VenueReportKind::CancelRejected)
    );
    // Pending and replaced reports change nothing.
    assert_eq!(
        link.on_message(&er(&[(11, "41"), (150, "A"), (39, "A")]), &d, now()),
        None
    );
}

#[test]
fn malformed_reports_never_reach_the_core() {
    let d = dir();
    let v = BeginString::Fix44;
    let mut link = VenueLink::new(VENUE, &settings(v), VenueStatus::new("up", "127.0.0.1:1"));
    let er = |fields: &[(u32, &str)]| venue_msg(v, "8", 2, fields);
    for bad in [
        // Not one of our ClOrdIDs.
        er(&[(11, "abc"), (150, "0"), (55, "BTC-PERP")]),
        er(&[(11, "0"), (150, "0"), (55, "BTC-PERP")]),
        // A fill without its quantities, of an unknown symbol, or with impossible ones.
        er(&[(11, "41"), (150, "F"), (55, "BTC-PERP"), (31, "1")]),
        er(&[
            (11, "41"),
            (150, "F"),
            (55, "ETH-PERP"),
            (31, "1"),
            (32, "1"),
            (14, "1"),
        ]),
        er(&[
            (11, "41"),
            (150, "F"),
            (55, "BTC-PERP"),
            (31, "1"),
            (32, "2"),
            (14, "1"),
        ]),
        er(&[
            (11, "41"),
            (150, "F"),
            (55, "BTC-PERP"),
            (31, "-1"),
            (32, "1"),
            (14, "1"),
        ]),
        er(&[
            (11, "41"),
            (150, "F"),
            (55, "BTC-PERP"),
            (31, "1.25"),
            (32, "1"),
            (14, "1"),
        ]),
        // No ExecType or OrdStatus.
        er(&[(11, "41"), (55, "BTC-PERP")]),
        b"8=FIX.4.4\x019=5\x0135=8\x01garbage".to_vec(),
        Vec::new(),
    ] {
        assert_eq!(link.on_message(&bad, &d, now()), None, "{bad:?}");
    }
}

#[test]
fn a_session_reject_of_an_order_we_sent_refuses_it() {
    let d = dir();
    let v = BeginString::Fix44;
    let mut s = logged_on(v);
    let mut link = VenueLink::new(VENUE, &settings(v), VenueStatus::new("up", "127.0.0.1:1"));
    link.on_route(&route(RouteRequest::New, 41, 7), Some(&mut s), &d, now());
    let seq = get(&sent(&mut s)[0], 34).unwrap().to_owned();
    let reject = venue_msg(v, "3", 2, &[(45, &seq), (373, "5"), (58, "bad")]);
    let r = link.on_message(&reject, &d, now()).unwrap();
    assert_eq!(
        (r.order_id, r.kind),
        (OrderId(41), VenueReportKind::Rejected)
    );
    // Once only; and a reject of anything else is not about an order.
    assert_eq!(link.on_message(&reject, &d, now()), None);
    // A rejected cancel is the cancel's refusal, not the order's.
    link.on_route(&route(RouteRequest::Cancel, 40, 9), Some(&mut s), &d, now());
    let seq = get(&sent(&mut s)[0], 34).unwrap().to_owned();
    let reject = venue_msg(v, "j", 3, &[(45, &seq), (380, "3"), (372, "F")]);
    let r = link.on_message(&reject, &d, now()).unwrap();
    assert_eq!(
        (r.order_id, r.kind),
        (OrderId(40), VenueReportKind::CancelRejected)
    );
}

#[test]
fn a_duplicate_order_reject_means_the_venue_already_works_it() {
    let d = dir();
    let v = BeginString::Fix44;
    let mut link = VenueLink::new(VENUE, &settings(v), VenueStatus::new("up", "127.0.0.1:1"));
    let dup = venue_msg(
        v,
        "8",
        2,
        &[
            (11, "41"),
            (150, "8"),
            (39, "8"),
            (103, "6"),
            (55, "BTC-PERP"),
        ],
    );
    assert_eq!(link.on_message(&dup, &d, now()), None);
}

#[test]
fn a_signed_logon_follows_the_servers_own_rule() {
    let signer = SignedLogon {
        username: "key-1".into(),
        secret: zeroize::Zeroizing::new("s3cret".into()),
    };
    let mut out = Vec::new();
    signer.logon_fields(
        &LogonHeader {
            sending_time: b"20261129-10:00:00.000",
            msg_seq_num: 4,
            sender_comp_id: "BROKER",
            target_comp_id: "VENUE",
        },
        &mut out,
    );
    let raw = out.iter().find(|(t, _)| *t == 96).unwrap().1.clone();
    assert!(portcullis_auth::fix_sig::verify_logon(
        b"s3cret",
        &portcullis_auth::fix_sig::LogonFields {
            sending_time: b"20261129-10:00:00.000",
            msg_type: b"A",
            msg_seq_num: b"4",
            sender_comp_id: b"BROKER",
            target_comp_id: b"VENUE",
            username: b"key-1",
        },
        &raw,
    ));
    assert_eq!(out.iter().find(|(t, _)| *t == 553).unwrap().1, b"key-1");
}

proptest::proptest! {
    /// Whatever a venue sends, the link reads it without panicking, and what it hands the
    /// core names one of our orders with fill quantities that make sense.
    #[test]
    fn any_message_from_the_venue_is_read_safely(
        msg_type in proptest::sample::select(vec!["8", "9", "3", "j", "0", "D"]),
        fields in proptest::collection::vec(
            (
                proptest::sample::select(vec![11u32, 41, 150, 39, 31, 32, 14, 55, 45, 103, 58, 37]),
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "0", "1", "2", "4", "8", "C", "F", "A", "41", "-5", "1.5", "0.001",
                        "99999.5", "BTC-PERP", "ETH-PERP", "18446744073709551616", "",
                    ])
                    .prop_map(str::to_owned),
                    "[ -~]{0,12}",
                ],
            ),
            0..12,
        ),
    ) {
        let d = dir();
        let mut link = VenueLink::new(VENUE, &settings(BeginString::Fix44), VenueStatus::new("up", "127.0.0.1:1"));
        let f: Vec<(u32, &str)> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
        let bytes = venue_msg(BeginString::Fix44, msg_type, 2, &f);
        if let Some(r) = link.on_message(&bytes, &d, now()) {
            proptest::prop_assert!(r.order_id.0 > 0);
            proptest::prop_assert_eq!(r.venue, VENUE);
            if r.kind == VenueReportKind::Fill {
                proptest::prop_assert!(r.last_px.0 > 0 && r.last_qty.0 > 0);
                proptest::prop_assert!(r.cum_qty >= r.last_qty);
            }
        }
        // Bytes that are not a message at all, too.
        let cut = bytes.len() / 2;
        let _ = link.on_message(&bytes[..cut], &d, now());
    }
}

#[test]
fn a_replace_is_sent_as_a_cancel_replace_request_and_its_answers_name_the_order() {
    let d = dir();
    let v = BeginString::Fix44;
    let mut s = logged_on(v);
    let mut link = VenueLink::new(VENUE, &settings(v), VenueStatus::new("up", "127.0.0.1:1"));
    let mut e = route(RouteRequest::Replace, 41, 12);
    e.cl_ord_id = ClOrdId::new(b"41-2").unwrap();
    e.orig_cl_ord_id = ClOrdId::new(b"41-1").unwrap();
    e.price = Price(999_990);
    e.qty = Qty(3_000);
    assert_eq!(link.on_route(&e, Some(&mut s), &d, now()), None);
    let out = sent(&mut s);
    let m = &out[0];
    assert_eq!(get(m, 35), Some("G"));
    assert_eq!((get(m, 11), get(m, 41)), (Some("41-2"), Some("41-1")));
    assert_eq!((get(m, 44), get(m, 38)), (Some("99999.0"), Some("3.000")));
    // A cancel names the order as the venue knows it.
    let mut c = route(RouteRequest::Cancel, 41, 13);
    c.orig_cl_ord_id = ClOrdId::new(b"41-2").unwrap();
    link.on_route(&c, Some(&mut s), &d, now());
    let out = sent(&mut s);
    assert_eq!(
        (get(&out[0], 11), get(&out[0], 41)),
        (Some("C13"), Some("41-2"))
    );
    // The venue's answers: replaced, a replace refused (434=2), a fill under the new id.
    let er = |f: &[(u32, &str)]| execution_report(v, f);
    let r = link
        .on_message(
            &er(&[(11, "41-2"), (41, "41-1"), (150, "5"), (39, "0")]),
            &d,
            now(),
        )
        .unwrap();
    assert_eq!(
        (r.order_id, r.kind),
        (OrderId(41), VenueReportKind::Replaced)
    );
    let cxl = venue_msg(
        v,
        "9",
        6,
        &[
            (11, "41-3"),
            (41, "41-2"),
            (39, "0"),
            (434, "2"),
            (37, "V-1"),
        ],
    );
    let r = link.on_message(&cxl, &d, now()).unwrap();
    assert_eq!(
        (r.order_id, r.kind),
        (OrderId(41), VenueReportKind::ReplaceRejected)
    );
    let r = link
        .on_message(
            &er(&[
                (11, "41-2"),
                (150, "F"),
                (39, "1"),
                (31, "1"),
                (32, "1"),
                (14, "1"),
            ]),
            &d,
            now(),
        )
        .unwrap();
    assert_eq!((r.order_id, r.kind), (OrderId(41), VenueReportKind::Fill));
    // Not our ids.
    assert_eq!(
        link.on_message(&er(&[(11, "41-x"), (150, "0")]), &d, now()),
        None
    );
    assert_eq!(
        link.on_message(&er(&[(11, "-2"), (150, "0")]), &d, now()),
        None
    );
}
