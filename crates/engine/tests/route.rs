//! Orders routed to a venue: the risk checks as for any order, then the venue's reports fill
//! and end them.

mod common;

use common::*;
use portcullis_engine::{EngineConfig, InstrumentsConfig};
use portcullis_types::{
    ClOrdId, Command, Event, EventKind, InstrumentId, MassCancel, OrdType, OrderId, Price, Qty,
    RejectReason, RouteRequest, SessionId, Side, TimeInForce, VenueReport, VenueReportKind,
};

const VENUE: SessionId = SessionId(7);

fn routed_run() -> (Run, InstrumentId) {
    let mut r = Run::new();
    let perp = r.perp();
    r.core.set_route(perp, Some(VENUE));
    (r, perp)
}

fn report(order: OrderId, kind: VenueReportKind, px: i64, last: i64, cum: i64) -> Command {
    Command::Venue(VenueReport {
        venue: VENUE,
        order_id: order,
        kind,
        last_px: Price(px),
        last_qty: Qty(last),
        cum_qty: Qty(cum),
        received_ns: 0,
    })
}

/// Submits an order that must go to the venue; returns the route request, whose ClOrdID is
/// the venue's (the order id), with the client's put back for the test's later requests.
fn route(r: &mut Run, o: portcullis_types::NewOrder) -> Event {
    let ev = r.submit(o);
    assert_eq!(
        kinds(&ev),
        [
            EventKind::Route(RouteRequest::New),
            EventKind::Pending(RouteRequest::New)
        ],
        "{ev:#?}"
    );
    assert_eq!(ev[0].session, VENUE);
    // The client hears that its order is on its way (FIX PendingNew).
    assert_eq!(
        (ev[1].session, ev[1].cl_ord_id, ev[1].order_id),
        (o.session, o.cl_ord_id, ev[0].order_id)
    );
    assert_eq!((ev[1].leaves_qty, ev[1].cum_qty), (o.qty, Qty(0)));
    assert_eq!(
        ev[0].cl_ord_id.as_str(),
        ev[0].order_id.0.to_string(),
        "the venue's ClOrdID"
    );
    Event {
        cl_ord_id: o.cl_ord_id,
        ..ev[0]
    }
}

#[test]
fn a_routed_order_goes_to_its_venue_and_the_client_hears_the_venues_answer() {
    let (mut r, perp) = routed_run();
    let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 5);
    let sent = route(&mut r, o);
    assert_eq!(
        (sent.side, sent.price, sent.qty),
        (Side::Buy, Price(1_000_000), Qty(5))
    );
    assert_eq!(sent.cl_ord_id, o.cl_ord_id);
    // Nothing on the local book; the risk engine counts it as open.
    assert_eq!(r.core.matcher().book(perp).unwrap().order_count(), 0);
    assert_eq!(r.core.risk().open_orders(ALICE), 1);
    let id = sent.order_id;
    let ev = r.cmd(report(id, VenueReportKind::Accepted, 0, 0, 0));
    assert_eq!(kinds(&ev), [EventKind::New]);
    assert_eq!(
        (ev[0].session, ev[0].cl_ord_id),
        (SessionId(0), o.cl_ord_id)
    );
    // A repeated accept says nothing new.
    assert!(r
        .cmd(report(id, VenueReportKind::Accepted, 0, 0, 0))
        .is_empty());
    let ev = r.cmd(report(id, VenueReportKind::Fill, 999_500, 2, 2));
    assert_eq!(kinds(&ev), [EventKind::PartialFill]);
    assert_eq!((ev[0].last_px, ev[0].last_qty), (Price(999_500), Qty(2)));
    assert_eq!((ev[0].cum_qty, ev[0].leaves_qty), (Qty(2), Qty(3)));
    assert_ne!(ev[0].trade_id.0, 0);
    assert_eq!(r.core.risk().position(ALICE, perp), Qty(2));
    // The same fill resent after a reconnect changes nothing.
    assert!(r
        .cmd(report(id, VenueReportKind::Fill, 999_500, 2, 2))
        .is_empty());
    let ev = r.cmd(report(id, VenueReportKind::Fill, 1_000_000, 3, 5));
    assert_eq!(kinds(&ev), [EventKind::Fill]);
    assert_eq!(ev[0].avg_px, Price(999_800));
    assert_eq!(r.core.risk().position(ALICE, perp), Qty(5));
    assert_eq!(r.core.risk().open_orders(ALICE), 0);
    assert_eq!(r.core.matcher().resting_orders(), 0);
    r.assert_consistent();
}

#[test]
fn a_venue_reject_is_the_clients_reject_and_frees_the_reservation() {
    let (mut r, perp) = routed_run();
    let o = r.order(ALICE, perp, Side::Sell, 1_000_000, 1);
    let id = route(&mut r, o).order_id;
    let ev = r.cmd(report(id, VenueReportKind::Rejected, 0, 0, 0));
    assert_eq!(
        kinds(&ev),
        [EventKind::Rejected(RejectReason::VenueRejected)]
    );
    assert_eq!(ev[0].leaves_qty, Qty(0));
    assert_eq!(r.core.risk().open_orders(ALICE), 0);
    r.assert_consistent();
}

#[test]
fn a_cancel_goes_to_the_venue_and_ends_the_order_when_the_venue_confirms() {
    let (mut r, perp) = routed_run();
    let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 4);
    let id = route(&mut r, o).order_id;
    r.cmd(report(id, VenueReportKind::Accepted, 0, 0, 0));
    let c = r.cancel_req(ALICE, perp, Some(id), o.cl_ord_id);
    let ev = r.cmd(Command::Cancel(c));
    assert_eq!(
        kinds(&ev),
        [
            EventKind::Route(RouteRequest::Cancel),
            EventKind::Pending(RouteRequest::Cancel)
        ]
    );
    assert_eq!((ev[0].session, ev[0].order_id), (VENUE, id));
    // The client hears that its cancel is on its way (FIX PendingCancel).
    assert_eq!(
        (ev[1].session, ev[1].cl_ord_id, ev[1].orig_cl_ord_id),
        (c.session, c.cl_ord_id, o.cl_ord_id)
    );
    assert_eq!(ev[1].leaves_qty, Qty(4), "the order as it stands");
    // A second cancel while the first is on its way is refused; none goes to the venue.
    let c2 = r.cancel_req(ALICE, perp, Some(id), o.cl_ord_id);
    let ev = r.cmd(Command::Cancel(c2));
    assert_eq!(
        kinds(&ev),
        [EventKind::CancelRejected {
            replace: false,
            reason: RejectReason::CancelPending
        }]
    );
    // A fill on the way still counts.
    let ev = r.cmd(report(id, VenueReportKind::Fill, 1_000_000, 1, 1));
    assert_eq!(kinds(&ev), [EventKind::PartialFill]);
    let ev = r.cmd(report(id, VenueReportKind::Canceled, 0, 0, 1));
    assert_eq!(kinds(&ev), [EventKind::Canceled]);
    assert_eq!(
        (ev[0].cl_ord_id, ev[0].orig_cl_ord_id),
        (c.cl_ord_id, o.cl_ord_id)
    );
    assert_eq!((ev[0].cum_qty, ev[0].leaves_qty), (Qty(1), Qty(0)));
    assert_eq!(r.core.risk().open_orders(ALICE), 0);
    assert_eq!(r.core.risk().position(ALICE, perp), Qty(1));
    r.assert_consistent();
}

#[test]
fn a_cancel_the_venue_refuses_is_the_clients_cancel_reject() {
    let (mut r, perp) = routed_run();
    let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 4);
    let id = route(&mut r, o).order_id;
    let c = r.cancel_req(ALICE, perp, None, o.cl_ord_id);
    r.cmd(Command::Cancel(c));
    let ev = r.cmd(report(id, VenueReportKind::CancelRejected, 0, 0, 0));
    assert_eq!(
        kinds(&ev),
        [EventKind::CancelRejected {
            replace: false,
            reason: RejectReason::VenueRejected
        }]
    );
    assert_eq!(ev[0].cl_ord_id, c.cl_ord_id);
    // The order still works, and can be cancelled again.
    let c = r.cancel_req(ALICE, perp, None, o.cl_ord_id);
    assert_eq!(
        kinds(&r.cmd(Command::Cancel(c))),
        [
            EventKind::Route(RouteRequest::Cancel),
            EventKind::Pending(RouteRequest::Cancel)
        ]
    );
    r.assert_consistent();
}

#[test]
fn a_fill_that_completes_the_order_answers_a_cancel_on_its_way() {
    let (mut r, perp) = routed_run();
    let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 2);
    let id = route(&mut r, o).order_id;
    let c = r.cancel_req(ALICE, perp, Some(id), o.cl_ord_id);
    r.cmd(Command::Cancel(c));
    // Filled at once, before any accept: the client hears New, then the fill.
    let ev = r.cmd(report(id, VenueReportKind::Fill, 1_000_000, 2, 2));
    assert_eq!(
        kinds(&ev),
        [
            EventKind::New,
            EventKind::Fill,
            EventKind::CancelRejected {
                replace: false,
                reason: RejectReason::UnknownOrder
            }
        ]
    );
    assert_eq!(ev[2].cl_ord_id, c.cl_ord_id);
    // The venue's own cancel reject for it finds nothing left.
    assert!(r
        .cmd(report(id, VenueReportKind::CancelRejected, 0, 0, 0))
        .is_empty());
    r.assert_consistent();
}

#[test]
fn mass_cancel_and_disconnect_ask_the_venue_once() {
    let (mut r, perp) = routed_run();
    let a = r.order(ALICE, perp, Side::Buy, 1_000_000, 1);
    let a = route(&mut r, a);
    let b = r.order(ALICE, perp, Side::Sell, 1_100_000, 1);
    let b = route(&mut r, b);
    let cl_ord_id = r.next_cl();
    let ev = r.cmd(Command::MassCancel(MassCancel {
        session: SessionId(0),
        account: ALICE,
        instrument: None,
        cl_ord_id,
    }));
    assert_eq!(
        kinds(&ev),
        [
            EventKind::Route(RouteRequest::Cancel),
            EventKind::Route(RouteRequest::Cancel),
            EventKind::MassCancelDone { canceled: 2 }
        ]
    );
    // Asked once: a disconnect now sends no second cancel.
    assert!(r.cmd(Command::SessionClosed(SessionId(0))).is_empty());
    for id in [a.order_id, b.order_id] {
        let ev = r.cmd(report(id, VenueReportKind::Canceled, 0, 0, 0));
        assert_eq!(kinds(&ev), [EventKind::Canceled]);
        assert_eq!(ev[0].session, SessionId(0));
    }
    assert_eq!(r.core.risk().open_orders(ALICE), 0);
    r.assert_consistent();
}

#[test]
fn only_plain_orders_are_routed_and_reports_for_other_orders_change_nothing() {
    let (mut r, perp) = routed_run();
    let mut o = r.order(ALICE, perp, Side::Buy, 1_000_000, 4);
    o.display_qty = Qty(1);
    assert_eq!(
        kinds(&r.submit(o)),
        [EventKind::Rejected(RejectReason::Unsupported)]
    );
    let mut o = r.order(ALICE, perp, Side::Buy, 1_000_000, 4);
    o.ord_type = OrdType::Stop {
        stop_px: Price(1_100_000),
    };
    assert_eq!(
        kinds(&r.submit(o)),
        [EventKind::Rejected(RejectReason::Unsupported)]
    );
    let mut o = r.order(ALICE, perp, Side::Buy, 1_000_000, 4);
    o.tif = TimeInForce::Ioc;
    route(&mut r, o);
    // A local order on another instrument is not the venue's.
    let option = r
        .core
        .instruments()
        .iter()
        .map(|i| i.rules().id)
        .find(|&i| i != perp)
        .unwrap();
    let (local, _) = r.place(BOB, option, Side::Buy, 1_000, 1);
    assert!(r
        .cmd(report(local, VenueReportKind::Canceled, 0, 0, 0))
        .is_empty());
    assert!(r
        .cmd(report(OrderId(999), VenueReportKind::Fill, 1, 1, 1))
        .is_empty());
    assert_eq!(r.core.matcher().resting_orders(), 2);
    r.assert_consistent();
}

#[test]
fn routed_orders_and_waiting_cancels_survive_a_snapshot() {
    let (mut r, perp) = routed_run();
    let a = r.order(ALICE, perp, Side::Buy, 1_000_000, 4);
    let a = route(&mut r, a);
    r.cmd(report(a.order_id, VenueReportKind::Accepted, 0, 0, 0));
    r.cmd(report(a.order_id, VenueReportKind::Fill, 1_000_000, 1, 1));
    let b = r.order(BOB, perp, Side::Sell, 1_100_000, 1);
    let b = route(&mut r, b);
    let c = r.cancel_req(BOB, perp, Some(b.order_id), b.cl_ord_id);
    r.cmd(Command::Cancel(c));
    let mut snap = Vec::new();
    r.core.write_snapshot(&mut snap);
    let cfg: InstrumentsConfig = toml::from_str(CONFIG).unwrap();
    let mut restored = portcullis_engine::Core::restore_snapshot(
        &EngineConfig::default(),
        &open_risk(),
        &["ALICE", "BOB", "CAROL"],
        &cfg,
        NOW_NS / 1_000_000,
        &snap,
    )
    .unwrap();
    restored.set_route(perp, Some(VENUE));
    let (mut s1, mut s2) = (Vec::new(), Vec::new());
    r.core.write_state(&mut s1, 3);
    restored.write_state(&mut s2, 3);
    assert_eq!(s1, s2);
    // The restored core goes on where the first left off.
    r.core = restored;
    let ev = r.cmd(report(b.order_id, VenueReportKind::Canceled, 0, 0, 0));
    assert_eq!(kinds(&ev), [EventKind::Canceled]);
    assert_eq!(ev[0].cl_ord_id, c.cl_ord_id);
    let ev = r.cmd(report(a.order_id, VenueReportKind::Fill, 1_000_000, 3, 4));
    assert_eq!(kinds(&ev), [EventKind::Fill]);
    assert_eq!(r.core.risk().position(ALICE, perp), Qty(4));
    r.assert_consistent();
}

#[test]
fn a_sync_asks_the_venue_again_for_unaccepted_orders_and_cancels_on_their_way() {
    let (mut r, perp) = routed_run();
    let a = r.order(ALICE, perp, Side::Buy, 1_000_000, 1);
    let a = route(&mut r, a);
    let b = r.order(ALICE, perp, Side::Buy, 1_000_000, 1);
    let b = route(&mut r, b);
    let c = r.order(BOB, perp, Side::Sell, 1_100_000, 1);
    let c = route(&mut r, c);
    // a is accepted and works; b is accepted and being cancelled; c never reached the venue.
    r.cmd(report(a.order_id, VenueReportKind::Accepted, 0, 0, 0));
    r.cmd(report(b.order_id, VenueReportKind::Accepted, 0, 0, 0));
    let cancel = r.cancel_req(ALICE, perp, Some(b.order_id), b.cl_ord_id);
    r.cmd(Command::Cancel(cancel));
    let ev = r.cmd(Command::VenueSync(VENUE));
    let asked: Vec<(EventKind, OrderId)> = ev.iter().map(|e| (e.kind, e.order_id)).collect();
    assert_eq!(
        asked,
        [
            (EventKind::Route(RouteRequest::Cancel), b.order_id),
            (EventKind::Route(RouteRequest::New), c.order_id),
        ]
    );
    assert!(ev.iter().all(|e| e.session == VENUE));
    // Another venue's sync is not about these orders.
    assert!(r.cmd(Command::VenueSync(SessionId(8))).is_empty());
    // The waiting cancel is still answered under its ClOrdID.
    let ev = r.cmd(report(b.order_id, VenueReportKind::Canceled, 0, 0, 0));
    assert_eq!(ev[0].cl_ord_id, cancel.cl_ord_id);
    r.assert_consistent();
}

#[test]
fn a_routed_option_series_routes_its_options_and_those_it_lists_later() {
    let mut r = Run::new();
    assert!(!r.core.route_option_series("ETH", VENUE));
    assert!(r.core.route_option_series("BTC", VENUE));
    let options: Vec<InstrumentId> = r
        .core
        .instruments()
        .iter()
        .filter(|i| {
            matches!(
                i.rules().kind,
                portcullis_types::InstrumentKind::Option { .. }
            )
        })
        .map(|i| i.rules().id)
        .collect();
    assert!(!options.is_empty());
    assert!(options.iter().all(|&i| r.core.route_of(i) == Some(VENUE)));
    // The perpetual still matches here.
    assert_eq!(r.core.route_of(r.perp()), None);
    // A week on, the series lists a new expiry: routed too.
    let mut events = Vec::new();
    let roll = r
        .core
        .roll(NOW_NS + 8 * 86_400_000_000_000, &mut |e| events.push(e))
        .unwrap();
    assert!(!roll.listed.is_empty());
    assert!(roll
        .listed
        .iter()
        .all(|&i| r.core.route_of(i) == Some(VENUE)));
    let o = r.order(ALICE, roll.listed[0], Side::Buy, 1_000, 1);
    r.now = NOW_NS + 8 * 86_400_000_000_000;
    route(&mut r, o);
}

/// A replace request of ALICE's order `order` to `price` and `qty`.
fn replace(
    r: &mut Run,
    perp: InstrumentId,
    order: OrderId,
    price: i64,
    qty: i64,
) -> portcullis_types::ReplaceOrder {
    let mut req = r.replace_req(ALICE, perp, ClOrdId::EMPTY, price, qty);
    req.order_id = Some(order);
    req
}

#[test]
fn a_replace_goes_to_the_venue_and_changes_the_order_when_the_venue_confirms() {
    let (mut r, perp) = routed_run();
    let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 4);
    let id = route(&mut r, o).order_id;
    r.cmd(report(id, VenueReportKind::Accepted, 0, 0, 0));
    r.cmd(report(id, VenueReportKind::Fill, 1_000_000, 1, 1));
    let req = replace(&mut r, perp, id, 999_000, 6);
    let ev = r.cmd(Command::Replace(req));
    assert_eq!(
        kinds(&ev),
        [
            EventKind::Route(RouteRequest::Replace),
            EventKind::Pending(RouteRequest::Replace)
        ]
    );
    // The client hears that its replace is on its way (FIX PendingReplace), the order
    // unchanged until the venue confirms.
    assert_eq!(
        (ev[1].session, ev[1].cl_ord_id, ev[1].orig_cl_ord_id),
        (req.session, req.cl_ord_id, o.cl_ord_id)
    );
    assert_eq!((ev[1].price, ev[1].leaves_qty), (Price(1_000_000), Qty(3)));
    let e = ev[0];
    assert_eq!(
        (e.session, e.price, e.qty, e.leaves_qty),
        (VENUE, Price(999_000), Qty(6), Qty(5))
    );
    assert_eq!(
        (e.orig_cl_ord_id.as_str(), e.cl_ord_id.as_str()),
        (id.0.to_string().as_str(), format!("{}-1", id.0).as_str())
    );
    // Unchanged until the venue confirms; a second change or a cancel waits meanwhile.
    assert_eq!(r.core.matcher().resting_orders(), 1);
    let again = replace(&mut r, perp, id, 998_000, 6);
    assert_eq!(
        kinds(&r.cmd(Command::Replace(again))),
        [EventKind::CancelRejected {
            replace: true,
            reason: RejectReason::CancelPending
        }]
    );
    let c = r.cancel_req(ALICE, perp, Some(id), ClOrdId::EMPTY);
    assert_eq!(
        kinds(&r.cmd(Command::Cancel(c))),
        [EventKind::Pending(RouteRequest::Cancel)],
        "the cancel waits for the replace's answer"
    );
    let ev = r.cmd(report(id, VenueReportKind::Replaced, 0, 0, 1));
    assert_eq!(
        kinds(&ev),
        [EventKind::Replaced, EventKind::Route(RouteRequest::Cancel)]
    );
    assert_eq!(
        (ev[0].cl_ord_id, ev[0].orig_cl_ord_id),
        (req.cl_ord_id, o.cl_ord_id)
    );
    assert_eq!(
        (ev[0].price, ev[0].qty, ev[0].cum_qty, ev[0].leaves_qty),
        (Price(999_000), Qty(6), Qty(1), Qty(5))
    );
    // The cancel names the order as the venue knows it now.
    assert_eq!(ev[1].orig_cl_ord_id.as_str(), format!("{}-1", id.0));
    let ev = r.cmd(report(id, VenueReportKind::Canceled, 0, 0, 1));
    assert_eq!(kinds(&ev), [EventKind::Canceled]);
    assert_eq!(ev[0].cl_ord_id, c.cl_ord_id);
    assert_eq!(r.core.risk().open_orders(ALICE), 0);
    r.assert_consistent();
}

#[test]
fn a_replace_the_venue_refuses_leaves_the_order_as_it_was() {
    let (mut r, perp) = routed_run();
    let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 4);
    let id = route(&mut r, o).order_id;
    r.cmd(report(id, VenueReportKind::Accepted, 0, 0, 0));
    let req = replace(&mut r, perp, id, 999_000, 2);
    r.cmd(Command::Replace(req));
    let ev = r.cmd(report(id, VenueReportKind::ReplaceRejected, 0, 0, 0));
    assert_eq!(
        kinds(&ev),
        [EventKind::CancelRejected {
            replace: true,
            reason: RejectReason::VenueRejected
        }]
    );
    assert_eq!(
        (ev[0].cl_ord_id, ev[0].price, ev[0].qty),
        (req.cl_ord_id, Price(1_000_000), Qty(4))
    );
    // A replace confirmed after a refusal changes nothing; the next replace is the first.
    assert!(r
        .cmd(report(id, VenueReportKind::Replaced, 0, 0, 0))
        .is_empty());
    let req = replace(&mut r, perp, id, 999_000, 2);
    let ev = r.cmd(Command::Replace(req));
    assert_eq!(ev[0].cl_ord_id.as_str(), format!("{}-1", id.0));
    // Filled completely before the venue answers: the replace is refused too late.
    let ev = r.cmd(report(id, VenueReportKind::Fill, 1_000_000, 4, 4));
    assert_eq!(
        kinds(&ev),
        [
            EventKind::Fill,
            EventKind::CancelRejected {
                replace: true,
                reason: RejectReason::UnknownOrder
            }
        ]
    );
    r.assert_consistent();
}
