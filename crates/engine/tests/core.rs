//! The command processor end to end: risk checks, books, reports and the risk feedback.

mod common;

use common::*;
use portcullis_engine::{
    CoreError, EngineConfig, ExpiryDate, IdCounters, InstrumentConfig, OrderRef, Position,
    ALL_INSTRUMENTS, MAX_ID,
};
use portcullis_types::{
    AccountId, ClOrdId, Command, EventKind, InstrumentStatus, MassCancel, OrdType, OrderId, Price,
    Qty, RejectReason, ReplaceOrder, SessionId, Side, TimeInForce,
};

#[test]
fn orders_cross_and_both_sides_get_fills_and_positions() {
    let mut r = Run::new();
    let perp = r.perp();
    let (bob_id, _) = r.place(BOB, perp, Side::Sell, 1_000_000, 3);
    let o = r.order(ALICE, perp, Side::Buy, 1_000_005, 5);
    let ev = r.submit(o);
    assert_eq!(
        kinds(&ev),
        [EventKind::New, EventKind::Fill, EventKind::PartialFill]
    );
    let (maker, taker) = (ev[1], ev[2]);
    assert_eq!((maker.session, maker.order_id), (SessionId(1), bob_id));
    assert_eq!(taker.session, SessionId(0));
    assert_eq!(maker.trade_id, taker.trade_id);
    assert_eq!((taker.last_px, taker.last_qty), (Price(1_000_000), Qty(3)));
    assert_eq!((taker.cum_qty, taker.leaves_qty), (Qty(3), Qty(2)));
    let risk = r.core.risk();
    assert_eq!(risk.position(ALICE, perp), Qty(3));
    assert_eq!(risk.position(BOB, perp), Qty(-3));
    assert_eq!(risk.open_orders(ALICE), 1);
    assert_eq!(risk.open_orders(BOB), 0);
    assert_eq!(risk.reference_price(perp), Some(Price(1_000_000)));
    r.assert_consistent();
}

#[test]
fn risk_rejects_are_reported_with_their_reason() {
    let mut r = Run::new();
    let perp = r.perp();
    let o = r.order(ALICE, perp, Side::Buy, 1_000_001, 1);
    let ev = r.submit(o);
    assert_eq!(kinds(&ev), [EventKind::Rejected(RejectReason::BadTick)]);
    assert_eq!((ev[0].order_id, ev[0].cl_ord_id), (OrderId(0), o.cl_ord_id));
    let mut o = r.order(ALICE, perp, Side::Buy, 1_000_000, 1);
    o.account = portcullis_types::AccountId(9);
    assert_eq!(
        kinds(&r.submit(o)),
        [EventKind::Rejected(RejectReason::UnknownAccount)]
    );
    // A market order needs a reference price to be valued.
    let mut o = r.order(ALICE, perp, Side::Buy, 0, 1);
    o.ord_type = OrdType::Market;
    assert_eq!(
        kinds(&r.submit(o)),
        [EventKind::Rejected(RejectReason::PriceBand)]
    );
    r.core
        .risk_mut()
        .set_reference_price(perp, Price(1_000_000))
        .unwrap();
    r.place(BOB, perp, Side::Sell, 1_000_000, 1);
    let mut o = r.order(ALICE, perp, Side::Buy, 0, 2);
    o.ord_type = OrdType::Market;
    assert_eq!(
        kinds(&r.submit(o)),
        [
            EventKind::New,
            EventKind::Fill,
            EventKind::PartialFill,
            EventKind::Canceled
        ]
    );
    // The same ClOrdID again on the session (the book never saw it rest): risk refuses it.
    assert_eq!(
        kinds(&r.submit(o)),
        [EventKind::Rejected(RejectReason::DuplicateClOrdId)]
    );
    r.assert_consistent();
}

#[test]
fn cancel_by_cl_ord_id_or_order_id_and_cancel_rejects() {
    let mut r = Run::new();
    let perp = r.perp();
    let (a, a_cl) = r.place(ALICE, perp, Side::Buy, 990_000, 1);
    let (b, _) = r.place(ALICE, perp, Side::Buy, 990_000, 1);
    let c = r.cancel_req(ALICE, perp, None, a_cl);
    let ev = r.cmd(Command::Cancel(c));
    assert_eq!(kinds(&ev), [EventKind::Canceled]);
    assert_eq!(ev[0].order_id, a);
    assert_eq!((ev[0].cl_ord_id, ev[0].orig_cl_ord_id), (c.cl_ord_id, a_cl));
    // Again: no longer working.
    let c = r.cancel_req(ALICE, perp, None, a_cl);
    assert_eq!(
        kinds(&r.cmd(Command::Cancel(c))),
        [EventKind::CancelRejected {
            replace: false,
            reason: RejectReason::UnknownOrder
        }]
    );
    // Another account cannot cancel it, even knowing its id.
    let c = r.cancel_req(BOB, perp, Some(b), ClOrdId::EMPTY);
    let ev = r.cmd(Command::Cancel(c));
    assert_eq!(
        ev[0].kind,
        EventKind::CancelRejected {
            replace: false,
            reason: RejectReason::UnknownOrder
        }
    );
    assert_eq!(ev[0].order_id, OrderId(0));
    // The wrong instrument does not find it either.
    let opt = r.inst("BTC-261204-100000-C");
    let c = r.cancel_req(ALICE, opt, Some(b), ClOrdId::EMPTY);
    assert!(matches!(
        r.cmd(Command::Cancel(c))[0].kind,
        EventKind::CancelRejected { .. }
    ));
    let c = r.cancel_req(ALICE, perp, Some(b), ClOrdId::EMPTY);
    assert_eq!(kinds(&r.cmd(Command::Cancel(c))), [EventKind::Canceled]);
    // A filled order cannot be cancelled.
    let (s, s_cl) = r.place(BOB, perp, Side::Sell, 1_000_000, 1);
    let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 1);
    r.submit(o);
    let c = r.cancel_req(BOB, perp, Some(s), s_cl);
    assert_eq!(
        kinds(&r.cmd(Command::Cancel(c))),
        [EventKind::CancelRejected {
            replace: false,
            reason: RejectReason::UnknownOrder
        }]
    );
    r.assert_consistent();
}

#[test]
fn replace_commands_keep_or_lose_priority() {
    let mut r = Run::new();
    let perp = r.perp();
    let (a, a_cl) = r.place(BOB, perp, Side::Sell, 1_000_000, 5);
    let (b, _) = r.place(CAROL, perp, Side::Sell, 1_000_000, 5);
    let rep = r.replace_req(BOB, perp, a_cl, 1_000_000, 4);
    let ev = r.cmd(Command::Replace(rep));
    assert_eq!(kinds(&ev), [EventKind::Replaced]);
    assert_eq!((ev[0].order_id, ev[0].orig_cl_ord_id), (a, a_cl));
    let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 1);
    assert_eq!(r.submit(o)[1].order_id, a, "kept its place");
    // Quantity up: to the back of the level.
    let rep2 = r.replace_req(BOB, perp, rep.cl_ord_id, 1_000_000, 9);
    assert_eq!(kinds(&r.cmd(Command::Replace(rep2))), [EventKind::Replaced]);
    let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 1);
    assert_eq!(r.submit(o)[1].order_id, b, "lost its place");
    // Unknown order, and a risk reject (bad tick), both as OrderCancelReject.
    let bad = r.replace_req(BOB, perp, a_cl, 1_000_000, 9);
    assert_eq!(
        kinds(&r.cmd(Command::Replace(bad))),
        [EventKind::CancelRejected {
            replace: true,
            reason: RejectReason::UnknownOrder
        }]
    );
    let bad = r.replace_req(BOB, perp, rep2.cl_ord_id, 1_000_001, 9);
    let ev = r.cmd(Command::Replace(bad));
    assert_eq!(
        ev[0].kind,
        EventKind::CancelRejected {
            replace: true,
            reason: RejectReason::BadTick
        }
    );
    assert_eq!((ev[0].order_id, ev[0].leaves_qty), (a, Qty(8)));
    // A replace that crosses trades at once, and risk follows.
    let rep3 = r.replace_req(BOB, perp, rep2.cl_ord_id, 990_000, 9);
    r.place(ALICE, perp, Side::Buy, 995_000, 2);
    let ev = r.cmd(Command::Replace(rep3));
    assert_eq!(
        kinds(&ev),
        [EventKind::Replaced, EventKind::Fill, EventKind::PartialFill]
    );
    r.assert_consistent();
}

#[test]
fn a_replace_that_keeps_the_price_amends_the_quantity_in_place() {
    let mut r = Run::new();
    let perp = r.perp();
    let (a, a_cl) = r.place(BOB, perp, Side::Sell, 1_000_000, 5);
    let (b, _) = r.place(CAROL, perp, Side::Sell, 1_000_000, 5);
    // Repriced by another request meanwhile: the amend keeps today's price, not the old one.
    let moved = r.replace_req(BOB, perp, a_cl, 1_000_500, 5);
    assert_eq!(
        kinds(&r.cmd(Command::Replace(moved))),
        [EventKind::Replaced]
    );
    let back = r.replace_req(BOB, perp, moved.cl_ord_id, 1_000_000, 5);
    assert_eq!(kinds(&r.cmd(Command::Replace(back))), [EventKind::Replaced]);
    let mut amend = r.replace_req(BOB, perp, back.cl_ord_id, 0, 3);
    amend.price = ReplaceOrder::KEEP_PRICE;
    let ev = r.cmd(Command::Replace(amend));
    assert_eq!(kinds(&ev), [EventKind::Replaced]);
    assert_eq!((ev[0].order_id, ev[0].price), (a, Price(1_000_000)));
    assert_eq!((ev[0].qty, ev[0].leaves_qty), (Qty(3), Qty(3)));
    // Still first at its level (the reprice and back put it behind CAROL's; the amend did not
    // move it again).
    let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 1);
    assert_eq!(r.submit(o)[1].order_id, b);
    let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 5);
    let fills: Vec<_> = r
        .submit(o)
        .iter()
        .filter(|e| e.session != SessionId(0))
        .map(|e| (e.order_id, e.last_qty))
        .collect();
    assert_eq!(fills, [(b, Qty(4)), (a, Qty(1))]);
    // Not a reduction: refused, as is an amend down to what is filled.
    let mut up = r.replace_req(BOB, perp, amend.cl_ord_id, 0, 3);
    up.price = ReplaceOrder::KEEP_PRICE;
    assert_eq!(
        r.cmd(Command::Replace(up))[0].kind,
        EventKind::CancelRejected {
            replace: true,
            reason: RejectReason::Unsupported
        }
    );
    let mut amend = r.replace_req(BOB, perp, amend.cl_ord_id, 0, 1);
    amend.price = ReplaceOrder::KEEP_PRICE;
    let ev = r.cmd(Command::Replace(amend));
    assert_eq!(
        ev[0].kind,
        EventKind::CancelRejected {
            replace: true,
            reason: RejectReason::QtyTooSmall
        }
    );
    r.assert_consistent();
}

#[test]
fn mass_cancel_cancels_the_accounts_orders_and_reports_the_count() {
    let mut r = Run::new();
    let perp = r.perp();
    let opt = r.inst("BTC-261211-95000-P");
    r.place(ALICE, perp, Side::Buy, 990_000, 1);
    r.place(ALICE, perp, Side::Sell, 1_010_000, 1);
    r.place(ALICE, opt, Side::Buy, 5_000, 1);
    r.place(BOB, perp, Side::Buy, 990_000, 1);
    let m = MassCancel {
        session: SessionId(0),
        account: ALICE,
        instrument: Some(perp),
        cl_ord_id: r.next_cl(),
    };
    let ev = r.cmd(Command::MassCancel(m));
    assert_eq!(
        kinds(&ev),
        [
            EventKind::Canceled,
            EventKind::Canceled,
            EventKind::MassCancelDone { canceled: 2 }
        ]
    );
    assert_eq!(ev[2].cl_ord_id, m.cl_ord_id);
    let m = MassCancel {
        instrument: None,
        cl_ord_id: r.next_cl(),
        ..m
    };
    let ev = r.cmd(Command::MassCancel(m));
    assert_eq!(
        kinds(&ev),
        [
            EventKind::Canceled,
            EventKind::MassCancelDone { canceled: 1 }
        ]
    );
    assert_eq!(ev[1].instrument, ALL_INSTRUMENTS);
    assert_eq!(r.core.matcher().account_orders(BOB), 1);
    r.assert_consistent();
}

#[test]
fn cancel_on_disconnect_follows_the_session_setting() {
    let mut r = Run::new();
    let perp = r.perp();
    r.place(ALICE, perp, Side::Buy, 990_000, 1);
    r.place(ALICE, perp, Side::Buy, 980_000, 1);
    r.place(BOB, perp, Side::Sell, 1_010_000, 1);
    assert!(r.core.cancel_on_disconnect(SessionId(0)));
    r.core.set_cancel_on_disconnect(SessionId(1), false);
    let ev = r.cmd(Command::SessionClosed(SessionId(0)));
    assert_eq!(kinds(&ev), [EventKind::Canceled, EventKind::Canceled]);
    assert!(ev.iter().all(|e| e.account == ALICE));
    assert!(r.cmd(Command::SessionClosed(SessionId(1))).is_empty());
    assert_eq!(r.core.matcher().account_orders(BOB), 1);
    // Off by default when the engine config says so.
    let mut r = Run::with(
        EngineConfig {
            cancel_on_disconnect: false,
            ..EngineConfig::default()
        },
        open_risk(),
    );
    let perp = r.perp();
    r.place(ALICE, perp, Side::Buy, 990_000, 1);
    assert!(r.cmd(Command::SessionClosed(SessionId(0))).is_empty());
    r.assert_consistent();
}

#[test]
fn kill_switch_cancels_and_blocks() {
    let mut r = Run::new();
    let perp = r.perp();
    r.place(ALICE, perp, Side::Buy, 990_000, 1);
    r.place(ALICE, perp, Side::Buy, 980_000, 1);
    let (bob, bob_cl) = r.place(BOB, perp, Side::Sell, 1_010_000, 1);
    let mut ev = Vec::new();
    let n = r
        .core
        .kill(Some(ALICE), r.now, &mut |e| ev.push(e))
        .unwrap();
    assert_eq!(n, 2);
    assert!(ev
        .iter()
        .all(|e| e.kind == EventKind::Canceled && e.account == ALICE));
    let o = r.order(ALICE, perp, Side::Buy, 990_000, 1);
    assert_eq!(
        kinds(&r.submit(o)),
        [EventKind::Rejected(RejectReason::KillSwitch)]
    );
    r.place(BOB, perp, Side::Sell, 1_020_000, 1);
    r.core.release_kill(Some(ALICE)).unwrap();
    r.place(ALICE, perp, Side::Buy, 990_000, 1);
    // Everything.
    let mut ev = Vec::new();
    assert_eq!(r.core.kill(None, r.now, &mut |e| ev.push(e)).unwrap(), 3);
    assert_eq!(r.core.matcher().resting_orders(), 0);
    let o = r.order(BOB, perp, Side::Sell, 1_010_000, 1);
    assert_eq!(
        kinds(&r.submit(o)),
        [EventKind::Rejected(RejectReason::KillSwitch)]
    );
    // Cancels still go through the risk checks (to an unknown order here).
    let c = r.cancel_req(BOB, perp, Some(bob), bob_cl);
    assert_eq!(
        kinds(&r.cmd(Command::Cancel(c))),
        [EventKind::CancelRejected {
            replace: false,
            reason: RejectReason::UnknownOrder
        }]
    );
    assert!(matches!(
        r.core
            .kill(Some(portcullis_types::AccountId(99)), r.now, &mut |_| {}),
        Err(CoreError::Risk(_))
    ));
    r.assert_consistent();
}

#[test]
fn options_stop_trading_at_expiry_and_resting_orders_expire() {
    let mut r = Run::new();
    let opt = r.inst("BTC-261204-100000-C");
    let later = r.inst("BTC-261211-100000-C");
    let (a, _) = r.place(ALICE, opt, Side::Buy, 5_000, 2);
    r.place(BOB, opt, Side::Sell, 6_000, 1);
    r.place(BOB, later, Side::Sell, 6_000, 1);
    let expiry_ns = ExpiryDate::new(2026, 12, 4).unwrap().expiry_ms() * 1_000_000;
    // A second before expiry nothing changes.
    let roll = r.core.roll(expiry_ns - 1_000_000_000, &mut |_| {}).unwrap();
    assert!(roll.expired.is_empty() && roll.listed.is_empty());
    let mut ev = Vec::new();
    let roll = r.core.roll(expiry_ns, &mut |e| ev.push(e)).unwrap();
    assert_eq!(roll.expired.len(), 6);
    assert_eq!(roll.listed.len(), 6);
    assert_eq!(kinds(&ev), [EventKind::Expired, EventKind::Expired]);
    assert!(ev.iter().any(|e| e.order_id == a && e.leaves_qty == Qty(0)));
    let rules = r.core.instruments().rules(opt).unwrap();
    assert_eq!(rules.status, InstrumentStatus::Expired);
    r.now = expiry_ns;
    let o = r.order(ALICE, opt, Side::Buy, 5_000, 1);
    assert_eq!(
        kinds(&r.submit(o)),
        [EventKind::Rejected(RejectReason::InstrumentNotTrading)]
    );
    // The later expiry still trades, and the newly listed one (2026-12-18) too.
    assert_eq!(r.core.matcher().account_orders(BOB), 1);
    let new = r.inst("BTC-261218-105000-P");
    r.place(ALICE, new, Side::Buy, 1_000, 1);
    r.assert_consistent();
}

#[test]
fn halt_keeps_orders_and_refuses_new_ones() {
    let mut r = Run::new();
    let perp = r.perp();
    let (_, cl) = r.place(ALICE, perp, Side::Buy, 990_000, 1);
    let n = r
        .core
        .set_status(perp, InstrumentStatus::Halted, r.now, &mut |_| {})
        .unwrap();
    assert_eq!(n, 0);
    let o = r.order(BOB, perp, Side::Sell, 990_000, 1);
    assert_eq!(
        kinds(&r.submit(o)),
        [EventKind::Rejected(RejectReason::InstrumentNotTrading)]
    );
    let c = r.cancel_req(ALICE, perp, None, cl);
    assert_eq!(kinds(&r.cmd(Command::Cancel(c))), [EventKind::Canceled]);
    r.core
        .set_status(perp, InstrumentStatus::Trading, r.now, &mut |_| {})
        .unwrap();
    r.place(ALICE, perp, Side::Buy, 990_000, 1);
    // Expiring by hand ends the orders; expiry is final.
    let mut ev = Vec::new();
    let n = r
        .core
        .set_status(perp, InstrumentStatus::Expired, r.now, &mut |e| ev.push(e))
        .unwrap();
    assert_eq!((n, kinds(&ev)), (1, vec![EventKind::Expired]));
    assert_eq!(
        r.core
            .set_status(perp, InstrumentStatus::Trading, r.now, &mut |_| {}),
        Err(CoreError::Instrument(perp))
    );
    r.assert_consistent();
}

#[test]
fn end_of_day_expires_day_orders_only() {
    let mut r = Run::new();
    let perp = r.perp();
    let mut o = r.order(ALICE, perp, Side::Buy, 990_000, 1);
    o.tif = TimeInForce::Day;
    let day = r.submit(o)[0].order_id;
    r.place(ALICE, perp, Side::Buy, 980_000, 1);
    let mut ev = Vec::new();
    assert_eq!(r.core.end_of_day(r.now, &mut |e| ev.push(e)), 1);
    assert_eq!((ev[0].order_id, ev[0].kind), (day, EventKind::Expired));
    // A new day: ClOrdIDs may be used again.
    assert_eq!(r.core.risk().cl_ord_ids_today(), 0);
    r.assert_consistent();
}

#[test]
fn order_status_answers_for_working_orders_of_the_account() {
    let mut r = Run::new();
    let perp = r.perp();
    let (id, cl) = r.place(ALICE, perp, Side::Buy, 990_000, 5);
    let o = r.order(BOB, perp, Side::Sell, 990_000, 2);
    r.submit(o);
    let s = r
        .core
        .order_status(SessionId(0), ALICE, OrderRef::ClOrdId(cl))
        .unwrap();
    assert_eq!((s.order_id, s.cum_qty, s.leaves_qty), (id, Qty(2), Qty(3)));
    assert_eq!(
        r.core.order_status(SessionId(0), ALICE, OrderRef::Id(id)),
        Some(s)
    );
    assert_eq!(
        r.core.order_status(SessionId(1), BOB, OrderRef::Id(id)),
        None
    );
    assert_eq!(
        r.core
            .order_status(SessionId(1), ALICE, OrderRef::ClOrdId(cl)),
        None,
        "ClOrdIDs are per session"
    );
}

#[test]
fn open_orders_lists_the_accounts_working_orders_up_to_a_bound() {
    let mut r = Run::new();
    let perp = r.perp();
    let call = r
        .core
        .instruments()
        .iter()
        .map(|i| i.symbol().to_string())
        .find(|s| s.ends_with("-C"))
        .unwrap();
    let option = r.inst(&call);
    let (a, _) = r.place(ALICE, perp, Side::Buy, 990_000, 5);
    let (b, _) = r.place(ALICE, option, Side::Buy, 10, 1);
    let (c, _) = r.place(ALICE, perp, Side::Buy, 980_000, 1);
    r.place(BOB, perp, Side::Sell, 1_100_000, 1);
    // A partly filled order is listed as it stands.
    let o = r.order(BOB, perp, Side::Sell, 990_000, 2);
    r.submit(o);
    let ids = |list: Vec<portcullis_engine::OrderSnapshot>| {
        let mut v: Vec<(OrderId, Qty)> = list.iter().map(|s| (s.order_id, s.leaves_qty)).collect();
        v.sort();
        v
    };
    assert_eq!(
        ids(r.core.open_orders(ALICE, None, 10).unwrap()),
        [(a, Qty(3)), (b, Qty(1)), (c, Qty(1))]
    );
    assert_eq!(
        ids(r.core.open_orders(ALICE, Some(option), 10).unwrap()),
        [(b, Qty(1))]
    );
    assert_eq!(r.core.open_orders(CAROL, None, 10), Some(Vec::new()));
    assert_eq!(r.core.open_orders(ALICE, None, 3).map(|l| l.len()), Some(3));
    assert_eq!(
        r.core.open_orders(ALICE, None, 2),
        None,
        "more than the bound"
    );
    assert_eq!(
        r.core.open_orders(ALICE, Some(option), 1).map(|l| l.len()),
        Some(1)
    );
    // A cancelled order is gone.
    let cancel = r.cancel_req(ALICE, perp, Some(c), ClOrdId::EMPTY);
    r.cmd(Command::Cancel(cancel));
    assert_eq!(
        ids(r.core.open_orders(ALICE, Some(perp), 10).unwrap()),
        [(a, Qty(3))]
    );
}

#[test]
fn positions_list_the_instruments_an_account_is_not_flat_in() {
    let mut r = Run::new();
    let perp = r.perp();
    let call = r
        .core
        .instruments()
        .iter()
        .map(|i| i.symbol().to_string())
        .find(|s| s.ends_with("-C"))
        .unwrap();
    let option = r.inst(&call);
    assert_eq!(r.core.positions(ALICE, None), Vec::new(), "flat at start");
    r.place(BOB, perp, Side::Sell, 1_000_000, 3);
    let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 2);
    r.submit(o);
    r.place(ALICE, option, Side::Sell, 10, 4);
    let o = r.order(BOB, option, Side::Buy, 10, 4);
    r.submit(o);
    let long_perp = Position {
        instrument: perp,
        qty: Qty(2),
        reference_price: Some(Price(1_000_000)),
        entry_price: Some(Price(1_000_000)),
    };
    let short_call = Position {
        instrument: option,
        qty: Qty(-4),
        reference_price: Some(Price(10)),
        entry_price: Some(Price(10)),
    };
    let (first, second) = if perp < option {
        (long_perp, short_call)
    } else {
        (short_call, long_perp)
    };
    assert_eq!(r.core.positions(ALICE, None), [first, second]);
    assert_eq!(r.core.positions(ALICE, Some(option)), [short_call]);
    assert_eq!(r.core.positions(BOB, Some(perp))[0].qty, Qty(-2));
    // Closing the position makes the account flat there: it is no longer listed.
    r.place(ALICE, perp, Side::Sell, 990_000, 2);
    let o = r.order(CAROL, perp, Side::Buy, 990_000, 2);
    r.submit(o);
    assert_eq!(r.core.positions(ALICE, None), [short_call]);
    assert_eq!(r.core.positions(CAROL, None)[0].qty, Qty(2));
    assert_eq!(r.core.positions(AccountId(7), None), Vec::new());
}

#[test]
fn instruments_can_be_listed_at_run_time() {
    let mut r = Run::new();
    let cfg: InstrumentConfig = toml::from_str(
        r#"
        symbol = "ETH-USDT"
        price_scale = 2
        qty_scale = 3
        tick = "0.01"
        lot = "0.001"
        min_qty = "0.001"
        max_qty = "100"
        "#,
    )
    .unwrap();
    let id = r.core.list_instrument(&cfg, r.now).unwrap();
    assert_eq!(r.core.instruments().by_symbol("ETH-USDT"), Some(id));
    r.place(ALICE, id, Side::Buy, 300_000, 1_000);
    assert!(r.core.list_instrument(&cfg, r.now).is_err());
    r.assert_consistent();
}

#[test]
fn ids_stay_within_2_pow_53_minus_1() {
    let mut r = Run::with(
        EngineConfig {
            max_resting_orders: 16,
            ..EngineConfig::default()
        },
        open_risk(),
    );
    let perp = r.perp();
    let room = 2 * 16 + 16;
    assert!(!r.core.resume_ids(IdCounters {
        order: MAX_ID + 1,
        exec: 1,
        trade: 1
    }));
    assert!(r.core.resume_ids(IdCounters {
        order: MAX_ID - 2,
        exec: MAX_ID - room - 8,
        trade: MAX_ID - room - 8
    }));
    let mut all = Vec::new();
    let (a, _) = r.place(BOB, perp, Side::Sell, 1_000_000, 1);
    assert_eq!(a, OrderId(MAX_ID - 2));
    for _ in 0..4 {
        let o = r.order(ALICE, perp, Side::Buy, 1_000_000, 1);
        all.extend(r.submit(o));
    }
    assert!(all
        .iter()
        .any(|e| e.kind == EventKind::Rejected(RejectReason::ServerBusy)));
    for e in &all {
        assert!(e.order_id.0 <= MAX_ID && e.exec_id <= MAX_ID && e.trade_id.0 <= MAX_ID);
    }
    r.assert_consistent();
}

#[test]
fn engine_config_is_read_strictly_and_validated() {
    let cfg: EngineConfig = toml::from_str(
        "max_resting_orders = 1024\nlevels_per_side = 16\ncancel_on_disconnect = false\n",
    )
    .unwrap();
    assert_eq!(
        cfg,
        EngineConfig {
            max_resting_orders: 1024,
            levels_per_side: 16,
            cancel_on_disconnect: false
        }
    );
    assert_eq!(
        toml::from_str::<EngineConfig>("").unwrap(),
        EngineConfig::default()
    );
    assert!(toml::from_str::<EngineConfig>("max_resting = 5").is_err());
    let cfg: portcullis_engine::InstrumentsConfig = toml::from_str(CONFIG).unwrap();
    let instruments =
        portcullis_engine::Instruments::from_config(&cfg, NOW_NS / 1_000_000).unwrap();
    let bad = EngineConfig {
        max_resting_orders: 0,
        ..EngineConfig::default()
    };
    assert!(matches!(
        portcullis_engine::Core::new(&bad, &open_risk(), &["ALICE"], instruments.clone()),
        Err(CoreError::Config {
            key: "max_resting_orders",
            ..
        })
    ));
    // A risk config naming an account the server does not have is refused.
    let mut risk = open_risk();
    risk.accounts.insert("MALLORY".into(), Default::default());
    assert!(matches!(
        portcullis_engine::Core::new(&EngineConfig::default(), &risk, &["ALICE"], instruments),
        Err(CoreError::Risk(_))
    ));
}
