//! Matching rules, one test each, on a matcher without risk checks (`()` feedback).

use super::*;

const INST: InstrumentId = InstrumentId(0);

struct Fixture {
    m: Matcher,
    now: i64,
    cl: u32,
}

fn kinds(ev: &[Event]) -> Vec<EventKind> {
    ev.iter().map(|e| e.kind).collect()
}

impl Fixture {
    fn new() -> Self {
        Self::with_capacity(1024)
    }

    fn with_capacity(max_resting_orders: usize) -> Self {
        let mut m = Matcher::new(MatcherConfig {
            max_resting_orders,
            levels_per_side: 4,
            accounts: 2,
            sessions: 2,
            default_stp: StpMode::CancelIncoming,
        });
        m.add_book(INST);
        Self { m, now: 1, cl: 0 }
    }

    fn next_cl(&mut self) -> ClOrdId {
        self.cl += 1;
        ClOrdId::new(format!("c{}", self.cl).as_bytes()).unwrap()
    }

    /// A GTC limit order; session = account.
    fn order(&mut self, account: u32, side: Side, price: i64, qty: i64) -> NewOrder {
        NewOrder {
            session: SessionId(account),
            account: AccountId(account),
            instrument: INST,
            cl_ord_id: self.next_cl(),
            side,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(price),
            qty: Qty(qty),
            post_only: false,
            stp: None,
            received_ns: 0,
            display_qty: Qty(0),
            trailing: None,
            oco_with: None,
            pending: false,
            triggers: None,
        }
    }

    fn submit(&mut self, o: NewOrder) -> Vec<Event> {
        let mut ev = Vec::new();
        self.now += 1;
        self.m
            .submit_order(&o, self.now, &mut (), &mut |e| ev.push(e));
        ev
    }

    /// Places a resting order and returns its id.
    fn place(&mut self, account: u32, side: Side, price: i64, qty: i64) -> OrderId {
        let o = self.order(account, side, price, qty);
        let ev = self.submit(o);
        assert_eq!(kinds(&ev), [EventKind::New], "{ev:#?}");
        ev[0].order_id
    }

    fn slot(&self, id: OrderId) -> Option<u32> {
        self.m.orders.find_by_id(id)
    }

    fn cancel(&mut self, id: OrderId) -> Vec<Event> {
        let slot = self.slot(id).expect("working");
        let o = *self.m.orders.get(slot);
        let req = CancelOrder {
            session: o.session,
            account: o.account,
            instrument: o.instrument,
            cl_ord_id: self.next_cl(),
            order_id: Some(id),
            orig_cl_ord_id: ClOrdId::EMPTY,
            received_ns: 0,
        };
        let mut ev = Vec::new();
        self.m.close(
            slot,
            EventKind::Canceled,
            Some(&req),
            self.now,
            &mut (),
            &mut |e| ev.push(e),
        );
        // As `Matcher::cancel` does: the other order of a pair goes too.
        self.m.drain_cascade(self.now, &mut (), &mut |e| ev.push(e));
        ev
    }

    fn replace(&mut self, id: OrderId, price: i64, qty: i64) -> Result<Vec<Event>, RejectReason> {
        let now = self.now;
        self.replace_as(id, now, |r| {
            r.price = Price(price);
            r.qty = Qty(qty);
        })
    }

    /// A replace of order `id` at `now` that keeps everything but what `edit` changes.
    fn replace_as(
        &mut self,
        id: OrderId,
        now: i64,
        edit: impl FnOnce(&mut ReplaceOrder),
    ) -> Result<Vec<Event>, RejectReason> {
        let slot = self.slot(id).expect("working");
        let o = *self.m.orders.get(slot);
        let mut req = ReplaceOrder {
            session: o.session,
            account: o.account,
            instrument: o.instrument,
            cl_ord_id: self.next_cl(),
            order_id: Some(id),
            orig_cl_ord_id: o.cl_ord_id,
            price: o.price,
            qty: o.qty,
            received_ns: 0,
            tif: None,
        };
        edit(&mut req);
        let mut ev = Vec::new();
        self.m
            .replace_slot(slot, &req, now, &mut (), &mut |e| ev.push(e))?;
        Ok(ev)
    }

    fn side(&self, side: Side) -> Vec<(i64, i64, u32)> {
        self.m
            .book(INST)
            .unwrap()
            .levels(side)
            .map(|l| (l.price.0, l.qty.0, l.orders))
            .collect()
    }

    fn leaves(&self, id: OrderId) -> Option<i64> {
        self.slot(id).map(|s| self.m.orders.get(s).leaves().0)
    }
}

/// The (maker order id, price, qty) of each trade in `ev`, checking both sides were reported
/// with one trade id.
fn trades(ev: &[Event]) -> Vec<(OrderId, i64, i64)> {
    let fills: Vec<&Event> = ev
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Fill | EventKind::PartialFill))
        .collect();
    assert_eq!(fills.len() % 2, 0);
    fills
        .chunks(2)
        .map(|p| {
            let (maker, taker) = (p[0], p[1]);
            assert_eq!(maker.trade_id, taker.trade_id);
            assert_ne!(maker.trade_id, TradeId(0));
            assert_eq!(maker.side, taker.side.opposite());
            assert_eq!(
                (maker.last_px, maker.last_qty),
                (taker.last_px, taker.last_qty)
            );
            (maker.order_id, maker.last_px.0, maker.last_qty.0)
        })
        .collect()
}

#[test]
fn price_then_time_priority() {
    let mut f = Fixture::new();
    let a = f.place(1, Side::Sell, 100, 1);
    let b = f.place(1, Side::Sell, 100, 1);
    let c = f.place(1, Side::Sell, 99, 1);
    let o = f.order(0, Side::Buy, 100, 3);
    let ev = f.submit(o);
    assert_eq!(trades(&ev), [(c, 99, 1), (a, 100, 1), (b, 100, 1)]);
    let last = ev.last().unwrap();
    assert_eq!(last.kind, EventKind::Fill);
    assert_eq!((last.cum_qty, last.leaves_qty), (Qty(3), Qty(0)));
    // (99 + 100 + 100) / 3 = 99.67, rounded to the price scale.
    assert_eq!(last.avg_px, Price(100));
    assert!(f.side(Side::Sell).is_empty() && f.side(Side::Buy).is_empty());
}

#[test]
fn partial_fills_across_levels_then_the_rest_rests() {
    let mut f = Fixture::new();
    f.place(1, Side::Sell, 100, 1);
    f.place(1, Side::Sell, 101, 2);
    f.place(1, Side::Sell, 102, 5);
    let o = f.order(0, Side::Buy, 101, 4);
    let ev = f.submit(o);
    assert_eq!(
        kinds(&ev),
        [
            EventKind::New,
            EventKind::Fill,
            EventKind::PartialFill,
            EventKind::Fill,
            EventKind::PartialFill
        ]
    );
    let taker = ev[4];
    assert_eq!((taker.cum_qty, taker.leaves_qty), (Qty(3), Qty(1)));
    assert_eq!(taker.avg_px, Price(101)); // (100 + 2 × 101) / 3 = 100.67
    assert_eq!(f.side(Side::Buy), [(101, 1, 1)]);
    assert_eq!(f.side(Side::Sell), [(102, 5, 1)]);
    assert!(!f.m.book(INST).unwrap().is_crossed());
}

#[test]
fn a_partly_filled_maker_keeps_its_place() {
    let mut f = Fixture::new();
    let a = f.place(1, Side::Sell, 100, 5);
    let b = f.place(1, Side::Sell, 100, 5);
    let o = f.order(0, Side::Buy, 100, 2);
    let ev = f.submit(o);
    assert_eq!(
        kinds(&ev),
        [EventKind::New, EventKind::PartialFill, EventKind::Fill]
    );
    assert_eq!((ev[1].cum_qty, ev[1].leaves_qty), (Qty(2), Qty(3)));
    assert_eq!(f.side(Side::Sell), [(100, 8, 2)]);
    let o = f.order(0, Side::Buy, 100, 4);
    let ev = f.submit(o);
    assert_eq!(trades(&ev), [(a, 100, 3), (b, 100, 1)]);
}

#[test]
fn both_sides_are_reported_to_their_own_sessions_with_unique_exec_ids() {
    let mut f = Fixture::new();
    let maker = f.place(1, Side::Sell, 100, 1);
    let o = f.order(0, Side::Buy, 100, 1);
    let ev = f.submit(o);
    let (m, t) = (ev[1], ev[2]);
    assert_eq!(
        (m.order_id, m.session, m.account),
        (maker, SessionId(1), AccountId(1))
    );
    assert_eq!((t.session, t.account), (SessionId(0), AccountId(0)));
    assert_eq!((m.kind, t.kind), (EventKind::Fill, EventKind::Fill));
    let mut execs: Vec<u64> = ev.iter().map(|e| e.exec_id).collect();
    execs.push(1); // the maker's New
    execs.sort_unstable();
    execs.dedup();
    assert_eq!(execs.len(), 4);
}

#[test]
fn market_orders_sweep_and_the_rest_is_cancelled() {
    let mut f = Fixture::new();
    f.place(1, Side::Sell, 100, 1);
    f.place(1, Side::Sell, 105, 1);
    let mut o = f.order(0, Side::Buy, 0, 5);
    o.ord_type = OrdType::Market;
    let ev = f.submit(o);
    assert_eq!(
        kinds(&ev),
        [
            EventKind::New,
            EventKind::Fill,
            EventKind::PartialFill,
            EventKind::Fill,
            EventKind::PartialFill,
            EventKind::Canceled
        ]
    );
    let last = ev.last().unwrap();
    assert_eq!(
        (last.cum_qty, last.leaves_qty, last.price),
        (Qty(2), Qty(0), Price(0))
    );
    assert!(f.side(Side::Sell).is_empty() && f.side(Side::Buy).is_empty());
    // On an empty book: accepted, then cancelled; a market order never rests, even GTC.
    let mut o = f.order(0, Side::Sell, 0, 1);
    o.ord_type = OrdType::Market;
    assert_eq!(kinds(&f.submit(o)), [EventKind::New, EventKind::Canceled]);
    assert!(f.side(Side::Sell).is_empty());
}

#[test]
fn ioc_rest_is_cancelled() {
    let mut f = Fixture::new();
    f.place(1, Side::Sell, 100, 1);
    f.place(1, Side::Sell, 101, 1);
    let mut o = f.order(0, Side::Buy, 100, 3);
    o.tif = TimeInForce::Ioc;
    let ev = f.submit(o);
    assert_eq!(
        kinds(&ev),
        [
            EventKind::New,
            EventKind::Fill,
            EventKind::PartialFill,
            EventKind::Canceled
        ]
    );
    assert_eq!(ev[3].cum_qty, Qty(1));
    assert!(f.side(Side::Buy).is_empty());
    assert_eq!(f.side(Side::Sell), [(101, 1, 1)]);
}

#[test]
fn fok_fills_completely_or_expires_without_a_fill() {
    let mut f = Fixture::new();
    f.place(1, Side::Sell, 100, 1);
    f.place(1, Side::Sell, 101, 1);
    let mut o = f.order(0, Side::Buy, 101, 3);
    o.tif = TimeInForce::Fok;
    let ev = f.submit(o);
    assert_eq!(kinds(&ev), [EventKind::New, EventKind::Expired]);
    assert_eq!((ev[1].cum_qty, ev[1].leaves_qty), (Qty(0), Qty(0)));
    assert_eq!(f.side(Side::Sell), [(100, 1, 1), (101, 1, 1)]);
    // Enough only beyond the limit: still nothing.
    let mut o = f.order(0, Side::Buy, 100, 2);
    o.tif = TimeInForce::Fok;
    assert_eq!(kinds(&f.submit(o)), [EventKind::New, EventKind::Expired]);
    let mut o = f.order(0, Side::Buy, 101, 2);
    o.tif = TimeInForce::Fok;
    let ev = f.submit(o);
    assert_eq!(ev.last().unwrap().kind, EventKind::Fill);
    assert!(f.side(Side::Sell).is_empty());
}

#[test]
fn fok_counts_self_trade_prevention_exactly() {
    let mut f = Fixture::new();
    f.place(0, Side::Sell, 100, 1); // own order first in line
    f.place(1, Side::Sell, 100, 2);
    let mut o = f.order(0, Side::Buy, 100, 2);
    o.tif = TimeInForce::Fok;
    o.stp = Some(StpMode::CancelIncoming);
    // Matching would stop at the own order: not fillable, and nothing is cancelled.
    assert_eq!(kinds(&f.submit(o)), [EventKind::New, EventKind::Expired]);
    assert_eq!(f.side(Side::Sell), [(100, 3, 2)]);
    // Cancel-resting would skip it: fillable.
    let mut o = f.order(0, Side::Buy, 100, 2);
    o.tif = TimeInForce::Fok;
    o.stp = Some(StpMode::CancelResting);
    let ev = f.submit(o);
    assert_eq!(
        kinds(&ev),
        [
            EventKind::New,
            EventKind::Canceled,
            EventKind::Fill,
            EventKind::Fill
        ]
    );
}

#[test]
fn post_only_is_rejected_if_it_would_trade() {
    let mut f = Fixture::new();
    f.place(1, Side::Sell, 100, 1);
    let mut o = f.order(0, Side::Buy, 100, 1);
    o.post_only = true;
    let ev = f.submit(o);
    assert_eq!(
        kinds(&ev),
        [EventKind::Rejected(RejectReason::PostOnlyWouldTrade)]
    );
    assert_eq!(ev[0].order_id, OrderId(0));
    assert_eq!(f.side(Side::Sell), [(100, 1, 1)]);
    assert!(f.side(Side::Buy).is_empty());
    let mut o = f.order(0, Side::Buy, 99, 1);
    o.post_only = true;
    assert_eq!(kinds(&f.submit(o)), [EventKind::New]);
    assert_eq!(f.side(Side::Buy), [(99, 1, 1)]);
    // Post-only and immediate-or-cancel contradict each other.
    let mut o = f.order(0, Side::Buy, 98, 1);
    o.post_only = true;
    o.tif = TimeInForce::Ioc;
    assert_eq!(
        kinds(&f.submit(o)),
        [EventKind::Rejected(RejectReason::Unsupported)]
    );
}

#[test]
fn stp_cancel_resting_cancels_the_own_order_and_goes_on() {
    let mut f = Fixture::new();
    let own = f.place(0, Side::Sell, 100, 1);
    let other = f.place(1, Side::Sell, 100, 1);
    let mut o = f.order(0, Side::Buy, 100, 1);
    o.stp = Some(StpMode::CancelResting);
    let ev = f.submit(o);
    assert_eq!(
        kinds(&ev),
        [
            EventKind::New,
            EventKind::Canceled,
            EventKind::Fill,
            EventKind::Fill
        ]
    );
    assert_eq!(ev[1].order_id, own);
    assert_eq!(trades(&ev), [(other, 100, 1)]);
    assert!(f.side(Side::Sell).is_empty());
}

#[test]
fn stp_cancel_incoming_cancels_the_rest_of_the_incoming_order() {
    let mut f = Fixture::new();
    let other = f.place(1, Side::Sell, 99, 1);
    let own = f.place(0, Side::Sell, 100, 1);
    f.place(1, Side::Sell, 100, 1);
    let mut o = f.order(0, Side::Buy, 100, 3);
    o.stp = Some(StpMode::CancelIncoming);
    let ev = f.submit(o);
    assert_eq!(
        kinds(&ev),
        [
            EventKind::New,
            EventKind::Fill,
            EventKind::PartialFill,
            EventKind::Canceled
        ]
    );
    assert_eq!(trades(&ev), [(other, 99, 1)]);
    assert_eq!(ev[3].cum_qty, Qty(1));
    assert_eq!(f.leaves(own), Some(1));
    assert_eq!(f.side(Side::Sell), [(100, 2, 2)]);
    assert!(f.side(Side::Buy).is_empty());
}

#[test]
fn stp_cancel_both_cancels_both() {
    let mut f = Fixture::new();
    let own = f.place(0, Side::Sell, 100, 1);
    f.place(1, Side::Sell, 100, 1);
    let mut o = f.order(0, Side::Buy, 100, 1);
    o.stp = Some(StpMode::CancelBoth);
    let ev = f.submit(o);
    assert_eq!(
        kinds(&ev),
        [EventKind::New, EventKind::Canceled, EventKind::Canceled]
    );
    assert_eq!(ev[1].order_id, own);
    assert_eq!(ev[2].order_id, ev[0].order_id);
    assert_eq!(f.side(Side::Sell), [(100, 1, 1)]);
    // Without an override, the default (cancel incoming) applies.
    let mut f = Fixture::new();
    let own = f.place(0, Side::Sell, 100, 1);
    let o = f.order(0, Side::Buy, 100, 1);
    assert_eq!(kinds(&f.submit(o)), [EventKind::New, EventKind::Canceled]);
    assert_eq!(f.leaves(own), Some(1));
}

#[test]
fn replace_decreasing_quantity_keeps_priority() {
    let mut f = Fixture::new();
    let a = f.place(1, Side::Sell, 100, 5);
    let b = f.place(1, Side::Sell, 100, 5);
    let ev = f.replace(a, 100, 3).unwrap();
    assert_eq!(kinds(&ev), [EventKind::Replaced]);
    assert_eq!((ev[0].qty, ev[0].leaves_qty), (Qty(3), Qty(3)));
    assert_eq!(f.side(Side::Sell), [(100, 8, 2)]);
    let o = f.order(0, Side::Buy, 100, 4);
    assert_eq!(trades(&f.submit(o)), [(a, 100, 3), (b, 100, 1)]);
}

#[test]
fn replace_increasing_quantity_or_changing_price_loses_priority() {
    let mut f = Fixture::new();
    let a = f.place(1, Side::Sell, 100, 5);
    let b = f.place(1, Side::Sell, 100, 5);
    f.replace(a, 100, 6).unwrap();
    let o = f.order(0, Side::Buy, 100, 5);
    assert_eq!(trades(&f.submit(o)), [(b, 100, 5)]);

    let mut f = Fixture::new();
    let a = f.place(1, Side::Sell, 100, 5);
    let b = f.place(1, Side::Sell, 100, 5);
    f.replace(a, 101, 5).unwrap();
    assert_eq!(f.side(Side::Sell), [(100, 5, 1), (101, 5, 1)]);
    f.replace(a, 100, 5).unwrap();
    let o = f.order(0, Side::Buy, 100, 6);
    assert_eq!(trades(&f.submit(o)), [(b, 100, 5), (a, 100, 1)]);
}

#[test]
fn replace_to_a_crossing_price_trades_at_once() {
    let mut f = Fixture::new();
    let bid = f.place(0, Side::Buy, 99, 1);
    let a = f.place(1, Side::Sell, 100, 3);
    let ev = f.replace(a, 99, 3).unwrap();
    assert_eq!(
        kinds(&ev),
        [EventKind::Replaced, EventKind::Fill, EventKind::PartialFill]
    );
    assert_eq!(trades(&ev), [(bid, 99, 1)]);
    assert_eq!(f.side(Side::Sell), [(99, 2, 1)]);
    assert!(!f.m.book(INST).unwrap().is_crossed());
}

#[test]
fn replace_is_refused_without_changing_the_order() {
    let mut f = Fixture::new();
    f.place(0, Side::Buy, 99, 1);
    let mut o = f.order(1, Side::Sell, 100, 4);
    o.post_only = true;
    let a = f.submit(o)[0].order_id;
    assert_eq!(f.replace(a, 99, 4), Err(RejectReason::PostOnlyWouldTrade));
    // Fill 1, then a new total quantity of 1 (= filled) is refused.
    let o = f.order(0, Side::Buy, 100, 1);
    f.submit(o);
    assert_eq!(f.replace(a, 100, 1), Err(RejectReason::QtyTooSmall));
    assert_eq!(f.leaves(a), Some(3));
    assert_eq!(f.side(Side::Sell), [(100, 3, 1)]);
    // The new total counts what was filled: 2 more → leaves 1, same price: keeps its place.
    let ev = f.replace(a, 100, 2).unwrap();
    assert_eq!((ev[0].cum_qty, ev[0].leaves_qty), (Qty(1), Qty(1)));
    assert_eq!(f.side(Side::Sell), [(100, 1, 1)]);
}

#[test]
fn replace_renames_the_order_for_later_requests() {
    let mut f = Fixture::new();
    let a = f.place(1, Side::Sell, 100, 5);
    let old = f.m.orders.get(f.slot(a).unwrap()).cl_ord_id;
    let ev = f.replace(a, 100, 4).unwrap();
    assert_eq!(ev[0].orig_cl_ord_id, old);
    let new = ev[0].cl_ord_id;
    assert!(f
        .m
        .find(AccountId(1), None, SessionId(1), None, &old)
        .is_none());
    let h =
        f.m.find(AccountId(1), None, SessionId(1), None, &new)
            .unwrap();
    assert_eq!(f.m.snapshot(h).unwrap().order_id, a);
}

#[test]
fn cancel_removes_the_order_and_its_empty_level() {
    let mut f = Fixture::new();
    let a = f.place(1, Side::Sell, 100, 1);
    let b = f.place(1, Side::Sell, 100, 2);
    let ev = f.cancel(a);
    assert_eq!(kinds(&ev), [EventKind::Canceled]);
    assert_eq!((ev[0].order_id, ev[0].leaves_qty), (a, Qty(0)));
    assert!(!ev[0].orig_cl_ord_id.is_empty());
    assert_eq!(f.side(Side::Sell), [(100, 2, 1)]);
    f.cancel(b);
    assert!(f.side(Side::Sell).is_empty());
    assert_eq!(f.m.resting_orders(), 0);
}

#[test]
fn a_cancel_or_replace_from_another_session_is_reported_to_the_order_s_own_session_too() {
    let mut f = Fixture::new();
    let a = f.place(1, Side::Sell, 100, 5);
    let slot = f.slot(a).unwrap();
    let own_cl = f.m.orders.get(slot).cl_ord_id;
    // Session 0 trades for account 1 too, and replaces the order by its OrderID.
    let replace = ReplaceOrder {
        session: SessionId(0),
        account: AccountId(1),
        instrument: INST,
        cl_ord_id: f.next_cl(),
        order_id: Some(a),
        orig_cl_ord_id: ClOrdId::EMPTY,
        price: Price(100),
        qty: Qty(4),
        received_ns: 0,
        tif: None,
    };
    let mut ev = Vec::new();
    f.m.replace_slot(slot, &replace, f.now, &mut (), &mut |e| ev.push(e))
        .unwrap();
    assert_eq!(kinds(&ev), [EventKind::Replaced, EventKind::Replaced]);
    assert_eq!((ev[0].session, ev[1].session), (SessionId(0), SessionId(1)));
    assert_eq!(ev[0].exec_id, ev[1].exec_id);
    assert_eq!(
        (ev[1].cl_ord_id, ev[1].orig_cl_ord_id),
        (replace.cl_ord_id, own_cl)
    );
    assert_eq!(ev[1].qty, Qty(4));

    let cancel = CancelOrder {
        session: SessionId(0),
        account: AccountId(1),
        instrument: INST,
        cl_ord_id: f.next_cl(),
        order_id: Some(a),
        orig_cl_ord_id: ClOrdId::EMPTY,
        received_ns: 0,
    };
    let mut ev = Vec::new();
    f.m.close(
        slot,
        EventKind::Canceled,
        Some(&cancel),
        f.now,
        &mut (),
        &mut |e| ev.push(e),
    );
    assert_eq!(kinds(&ev), [EventKind::Canceled, EventKind::Canceled]);
    // The requester's answer names its request; the owner's report names the order.
    assert_eq!(ev[0].session, SessionId(0));
    assert_eq!(
        (ev[0].cl_ord_id, ev[0].orig_cl_ord_id),
        (cancel.cl_ord_id, replace.cl_ord_id)
    );
    assert_eq!(ev[1].session, SessionId(1));
    assert_eq!(
        (ev[1].cl_ord_id, ev[1].orig_cl_ord_id),
        (replace.cl_ord_id, ClOrdId::EMPTY)
    );
    assert_eq!(ev[0].exec_id, ev[1].exec_id);
    assert_eq!((ev[1].order_id, ev[1].leaves_qty), (a, Qty(0)));

    // From its own session: one report.
    let b = f.place(1, Side::Sell, 100, 1);
    assert_eq!(kinds(&f.cancel(b)), [EventKind::Canceled]);
}

#[test]
fn handles_do_not_outlive_their_order() {
    let mut f = Fixture::new();
    let a = f.place(1, Side::Sell, 100, 1);
    let h =
        f.m.find(
            AccountId(1),
            Some(INST),
            SessionId(1),
            Some(a),
            &ClOrdId::EMPTY,
        )
        .unwrap();
    // Another account cannot find it, by id or by ClOrdID.
    assert!(f
        .m
        .find(AccountId(0), None, SessionId(1), Some(a), &ClOrdId::EMPTY)
        .is_none());
    assert!(f
        .m
        .find(
            AccountId(1),
            Some(InstrumentId(7)),
            SessionId(1),
            Some(a),
            &ClOrdId::EMPTY
        )
        .is_none());
    f.cancel(a);
    // The slot is reused by the next order; the old handle still names nothing.
    f.place(1, Side::Sell, 100, 1);
    assert!(f.m.snapshot(h).is_none());
    assert!(f.m.working_order(h).is_none());
}

#[test]
fn a_working_cl_ord_id_cannot_be_reused_on_the_session() {
    let mut f = Fixture::new();
    let o = f.order(1, Side::Sell, 100, 1);
    f.submit(o);
    assert_eq!(
        kinds(&f.submit(o)),
        [EventKind::Rejected(RejectReason::DuplicateClOrdId)]
    );
}

#[test]
fn a_full_store_refuses_resting_orders_but_not_immediate_ones() {
    let mut f = Fixture::with_capacity(2);
    f.place(1, Side::Sell, 100, 1);
    f.place(1, Side::Sell, 101, 1);
    let o = f.order(1, Side::Sell, 102, 1);
    assert_eq!(
        kinds(&f.submit(o)),
        [EventKind::Rejected(RejectReason::TooManyOpenOrders)]
    );
    let mut o = f.order(0, Side::Buy, 100, 1);
    o.tif = TimeInForce::Ioc;
    assert_eq!(f.submit(o).last().unwrap().kind, EventKind::Fill);
}

#[test]
fn bulk_cancels_and_expiry() {
    let mut f = Fixture::new();
    let a = f.place(0, Side::Buy, 90, 1);
    let mut o = f.order(0, Side::Buy, 91, 1);
    o.tif = TimeInForce::Day;
    let day = f.submit(o)[0].order_id;
    f.place(1, Side::Sell, 110, 1);
    f.place(1, Side::Sell, 111, 1);
    let mut ev = Vec::new();
    assert_eq!(f.m.expire_day_orders(9, &mut (), &mut |e| ev.push(e)), 1);
    assert_eq!((ev[0].order_id, ev[0].kind), (day, EventKind::Expired));
    ev.clear();
    assert_eq!(
        f.m.cancel_session(SessionId(1), 9, &mut (), &mut |e| ev.push(e)),
        2
    );
    assert!(ev
        .iter()
        .all(|e| e.kind == EventKind::Canceled && e.account == AccountId(1)));
    assert!(f.side(Side::Sell).is_empty());
    f.place(1, Side::Sell, 110, 1);
    ev.clear();
    assert_eq!(
        f.m.expire_instrument(INST, 9, &mut (), &mut |e| ev.push(e)),
        2
    );
    assert!(ev.iter().all(|e| e.kind == EventKind::Expired));
    assert!(ev.iter().any(|e| e.order_id == a));
    assert_eq!(f.m.resting_orders(), 0);
    f.m.close_book(INST);
    let o = f.order(0, Side::Buy, 90, 1);
    assert_eq!(
        kinds(&f.submit(o)),
        [EventKind::Rejected(RejectReason::UnknownInstrument)]
    );
}

#[test]
fn ids_never_pass_2_pow_53_minus_1() {
    let mut f = Fixture::new();
    assert!(!f.m.resume_ids(IdCounters {
        order: MAX_ID + 1,
        exec: 1,
        trade: 1
    }));
    assert!(!f.m.resume_ids(IdCounters {
        order: 0,
        exec: 1,
        trade: 1
    }));
    // Just enough room for one more order (capacity 1024: 2 × 1024 + 16 exec and trade ids).
    let room = 2 * 1024 + 16;
    assert!(f.m.resume_ids(IdCounters {
        order: MAX_ID - 1,
        exec: MAX_ID - room,
        trade: MAX_ID - room
    }));
    let rest = f.place(1, Side::Sell, 100, 1);
    assert_eq!(rest, OrderId(MAX_ID - 1));
    let o = f.order(0, Side::Buy, 100, 1);
    let ev = f.submit(o);
    assert_eq!(ev[0].kind, EventKind::Rejected(RejectReason::ServerBusy));
    for e in &ev {
        assert!(e.exec_id <= MAX_ID && e.order_id.0 <= MAX_ID && e.trade_id.0 <= MAX_ID);
    }
    // Cancels still work and stay within range.
    let ev = f.cancel(rest);
    assert_eq!(ev[0].kind, EventKind::Canceled);
    assert!(ev[0].exec_id <= MAX_ID);
}

#[test]
fn snapshot_reports_status() {
    let mut f = Fixture::new();
    let a = f.place(1, Side::Sell, 100, 5);
    let o = f.order(0, Side::Buy, 100, 2);
    f.submit(o);
    let h =
        f.m.find(AccountId(1), None, SessionId(1), Some(a), &ClOrdId::EMPTY)
            .unwrap();
    let s = f.m.snapshot(h).unwrap();
    assert_eq!(
        (s.cum_qty, s.leaves_qty, s.avg_px),
        (Qty(2), Qty(3), Price(100))
    );
    let e = s.to_event(SessionId(1), 5);
    assert_eq!(
        (e.kind, e.exec_id, e.order_id),
        (EventKind::PartialFill, 0, a)
    );
}

impl Fixture {
    /// A GTC stop order (`limit` = `Some(price)` for a stop-limit).
    fn stop(
        &mut self,
        account: u32,
        side: Side,
        stop_px: i64,
        limit: Option<i64>,
        qty: i64,
    ) -> NewOrder {
        let stop_px = Price(stop_px);
        let mut o = self.order(account, side, limit.unwrap_or(0), qty);
        o.ord_type = match limit {
            Some(_) => OrdType::StopLimit { stop_px },
            None => OrdType::Stop { stop_px },
        };
        o
    }

    /// One trade of `qty` at `price` between accounts 0 (buyer) and 1.
    fn trade_at(&mut self, price: i64, qty: i64) -> Vec<Event> {
        self.place(1, Side::Sell, price, qty);
        let o = self.order(0, Side::Buy, price, qty);
        self.submit(o)
    }

    /// The trigger prices waiting for a rise, and for a fall, next to trigger first.
    fn stop_lists(&self) -> (Vec<i64>, Vec<i64>) {
        let b = self.m.book(INST).unwrap();
        let px = |l: &StopList| l.entries.iter().rev().map(|e| e.stop_px.0).collect();
        (px(&b.up_stops), px(&b.down_stops))
    }
}

#[test]
fn a_stop_order_waits_in_no_level_until_a_trade_reaches_its_price() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let resting = f.place(1, Side::Sell, 106, 5);
    // Buy stop at 105: a market buy once the last trade is 105 or higher.
    let o = f.stop(0, Side::Buy, 105, None, 2);
    let ev = f.submit(o);
    assert_eq!(kinds(&ev), [EventKind::New]);
    assert_eq!(
        ev[0].ord_type,
        OrdType::Stop {
            stop_px: Price(105)
        }
    );
    assert_eq!((ev[0].price, ev[0].leaves_qty), (Price(0), Qty(2)));
    let stop = ev[0].order_id;
    assert_eq!(f.leaves(stop), Some(2), "in the store: found, cancellable");
    assert_eq!(
        f.side(Side::Buy),
        [],
        "in no level: nothing trades against it"
    );
    assert_eq!(f.stop_lists(), (vec![105], vec![]));
    // A trade at 104 does not trigger it.
    f.trade_at(104, 1);
    assert_eq!(f.leaves(stop), Some(2));
    // A trade at 105 does, after that trade: it buys from the resting sell at 106.
    let ev = f.trade_at(105, 1);
    let after: Vec<&Event> = ev.iter().filter(|e| e.order_id == stop).collect();
    assert_eq!(after.len(), 2, "{ev:#?}");
    assert_eq!(
        (after[0].kind, after[1].kind),
        (EventKind::Triggered, EventKind::Fill)
    );
    let after = &after[1..];
    assert_eq!((after[0].last_px, after[0].last_qty), (Price(106), Qty(2)));
    assert_eq!(
        after[0].ord_type,
        OrdType::Stop {
            stop_px: Price(105)
        }
    );
    assert_eq!(f.leaves(resting), Some(3));
    assert_eq!(f.stop_lists(), (vec![], vec![]));
    assert_eq!(f.m.book(INST).unwrap().last_trade(), Some(Price(106)));
}

#[test]
fn sell_stops_trigger_on_a_fall_highest_first_then_in_time() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let a = f.place_stop(1, Side::Sell, 95, None);
    let b = f.place_stop(1, Side::Sell, 97, None);
    let c = f.place_stop(1, Side::Sell, 97, None);
    assert_eq!(f.stop_lists(), (vec![], vec![97, 97, 95]));
    // Bids for the stops to sell into.
    f.place(0, Side::Buy, 90, 10);
    let ev = f.trade_at(96, 1);
    let order: Vec<OrderId> = ev
        .iter()
        .filter(|e| {
            e.kind == EventKind::Fill && e.account == AccountId(1) && e.order_id != OrderId(0)
        })
        .map(|e| e.order_id)
        .filter(|id| [a, b, c].contains(id))
        .collect();
    // 96 triggers both 97s (b, then c, in time order), and their trades at 90 trigger 95.
    assert_eq!(order, [b, c, a], "{ev:#?}");
    assert_eq!(f.stop_lists(), (vec![], vec![]));
}

impl Fixture {
    /// Enters a stop order that waits and returns its id.
    fn place_stop(
        &mut self,
        account: u32,
        side: Side,
        stop_px: i64,
        limit: Option<i64>,
    ) -> OrderId {
        let o = self.stop(account, side, stop_px, limit, 1);
        let ev = self.submit(o);
        assert_eq!(kinds(&ev), [EventKind::New], "{ev:#?}");
        ev[0].order_id
    }
}

#[test]
fn a_stop_limit_rests_at_its_limit_once_triggered_and_can_then_be_replaced() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let o = f.stop(0, Side::Buy, 102, Some(103), 4);
    let ev = f.submit(o);
    assert_eq!(ev[0].price, Price(103), "a stop-limit reports its limit");
    let id = ev[0].order_id;
    // Waiting: a replace is refused (cancel and enter again), nothing changes.
    assert_eq!(
        f.replace(id, 104, 4).unwrap_err(),
        RejectReason::Unsupported
    );
    f.place(1, Side::Sell, 103, 1);
    f.trade_at(102, 1);
    // Triggered by the trade at 102: bought 1 at 103, the rest rests at its limit.
    assert_eq!(f.leaves(id), Some(3));
    assert_eq!(f.side(Side::Buy), [(103, 3, 1)]);
    let ev = f.replace(id, 101, 3).unwrap();
    assert_eq!(ev[0].kind, EventKind::Replaced);
    assert_eq!(f.side(Side::Buy), [(101, 2, 1)]);
}

impl Fixture {
    /// Enters a GTC take-profit order (`limit` = `Some(price)` for a take-profit limit) and
    /// returns its events.
    fn take_profit(
        &mut self,
        account: u32,
        side: Side,
        stop_px: i64,
        limit: Option<i64>,
        qty: i64,
    ) -> Vec<Event> {
        let mut o = self.stop(account, side, stop_px, limit, qty);
        let stop_px = Price(stop_px);
        o.ord_type = match limit {
            Some(_) => OrdType::TakeProfitLimit { stop_px },
            None => OrdType::TakeProfit { stop_px },
        };
        self.submit(o)
    }
}

#[test]
fn a_take_profit_buy_waits_for_a_fall_and_a_sell_for_a_rise() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    // Buy take-profit at 95: a market buy once a trade is at 95 or lower.
    let ev = f.take_profit(0, Side::Buy, 95, None, 2);
    assert_eq!(kinds(&ev), [EventKind::New]);
    let buy = ev[0].order_id;
    // Sell take-profit limit at 105, limit 104.
    let ev = f.take_profit(1, Side::Sell, 105, Some(104), 3);
    assert_eq!(kinds(&ev), [EventKind::New]);
    assert_eq!(
        ev[0].ord_type,
        OrdType::TakeProfitLimit {
            stop_px: Price(105)
        }
    );
    let sell = ev[0].order_id;
    assert_eq!(f.stop_lists(), (vec![105], vec![95]));
    // A rise to 104 triggers neither (a stop-loss buy at 95 would have), a fall to 96 neither.
    f.trade_at(104, 1);
    f.trade_at(96, 1);
    assert_eq!((f.leaves(buy), f.leaves(sell)), (Some(2), Some(3)));
    // A trade at 95 triggers the buy, which takes the offer at 97.
    f.place(1, Side::Sell, 97, 2);
    let ev = f.trade_at(95, 1);
    let fills: Vec<&Event> = ev
        .iter()
        .filter(|e| e.order_id == buy && e.kind != EventKind::Triggered)
        .collect();
    assert_eq!(fills.len(), 1, "{ev:#?}");
    assert_eq!(fills[0].kind, EventKind::Fill);
    assert_eq!((fills[0].last_px, fills[0].last_qty), (Price(97), Qty(2)));
    assert_eq!(f.stop_lists(), (vec![105], vec![]));
    // A trade at 105 triggers the sell: nothing to sell into at 104 or better, so it rests.
    f.trade_at(105, 1);
    assert_eq!(f.stop_lists(), (vec![], vec![]));
    assert_eq!(f.leaves(sell), Some(3));
    assert_eq!(f.side(Side::Sell), [(104, 3, 1)]);
}

#[test]
fn stops_and_take_profits_triggered_by_one_rise_work_in_price_then_time_order() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    // All three trigger on a rise: a buy stop at 103, sell take-profits at 102 and 103.
    let stop = f.place_stop(0, Side::Buy, 103, None);
    let tp_103 = f.take_profit(1, Side::Sell, 103, None, 1)[0].order_id;
    let tp_102 = f.take_profit(1, Side::Sell, 102, None, 1)[0].order_id;
    assert_eq!(f.stop_lists(), (vec![102, 103, 103], vec![]));
    // Liquidity on both sides for them, away from 103 so they trigger nothing further.
    f.place(1, Side::Sell, 110, 5);
    f.place(0, Side::Buy, 101, 5);
    let ev = f.trade_at(103, 1);
    let order: Vec<OrderId> = ev
        .iter()
        .filter(|e| e.kind == EventKind::Fill)
        .map(|e| e.order_id)
        .filter(|id| [stop, tp_102, tp_103].contains(id))
        .collect();
    assert_eq!(order, [tp_102, stop, tp_103], "{ev:#?}");
    assert_eq!(f.stop_lists(), (vec![], vec![]));
}

#[test]
fn a_take_profit_whose_price_the_last_trade_has_passed_works_at_once() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    f.place(1, Side::Sell, 101, 1);
    // A buy take-profit at 102: the last trade (100) is already below it.
    let ev = f.take_profit(0, Side::Buy, 102, None, 1);
    assert_eq!(
        kinds(&ev),
        [EventKind::New, EventKind::Fill, EventKind::Fill]
    );
    assert_eq!(f.stop_lists(), (vec![], vec![]));
}

#[test]
fn a_stop_already_through_its_price_works_at_once() {
    let mut f = Fixture::new();
    f.place(1, Side::Sell, 101, 1);
    f.trade_at(100, 1);
    let o = f.stop(0, Side::Buy, 99, None, 1);
    let ev = f.submit(o);
    assert_eq!(
        kinds(&ev),
        [EventKind::New, EventKind::Fill, EventKind::Fill]
    );
    assert_eq!(ev[2].last_px, Price(101));
    // Without any trade yet, no stop can trigger: it waits.
    let mut g = Fixture::new();
    let o = g.stop(0, Side::Buy, 99, None, 1);
    assert_eq!(kinds(&g.submit(o)), [EventKind::New]);
    assert_eq!(g.stop_lists(), (vec![99], vec![]));
}

#[test]
fn a_triggered_stop_without_liquidity_is_cancelled_as_a_market_order_is() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let o = f.stop(1, Side::Sell, 99, None, 2);
    let id = f.submit(o)[0].order_id;
    let ev = f.trade_at(99, 1);
    let mine: Vec<EventKind> = ev
        .iter()
        .filter(|e| e.order_id == id)
        .map(|e| e.kind)
        .collect();
    assert_eq!(mine, [EventKind::Triggered, EventKind::Canceled]);
    assert_eq!(f.leaves(id), None);
}

#[test]
fn waiting_stops_are_cancelled_expired_and_snapshotted_like_resting_orders() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let a = f.place_stop(0, Side::Buy, 110, Some(111));
    let b = f.place_stop(0, Side::Sell, 90, None);
    let mut day = f.stop(1, Side::Sell, 80, None, 1);
    day.tif = TimeInForce::Day;
    let d = f.submit(day)[0].order_id;
    f.place(1, Side::Sell, 120, 1);

    // A snapshot carries the waiting stops in trigger order and the last trade price.
    let copy = f.restored_copy();
    assert_eq!(copy.book(INST).unwrap().last_trade(), Some(Price(100)));
    assert_eq!(copy.book(INST).unwrap().stop_count(), 3);

    // A cancel takes it out of its list.
    let ev = f.cancel(a);
    assert_eq!(ev[0].kind, EventKind::Canceled);
    assert_eq!(f.stop_lists(), (vec![], vec![90, 80]));
    // End of day expires the Day stop, the GTC one stays.
    let mut ev = Vec::new();
    assert_eq!(f.m.expire_day_orders(9, &mut (), &mut |e| ev.push(e)), 1);
    assert_eq!((ev[0].order_id, ev[0].kind), (d, EventKind::Expired));
    // Expiry of the instrument ends the rest, stops included.
    let mut ev = Vec::new();
    assert_eq!(
        f.m.expire_instrument(INST, 10, &mut (), &mut |e| ev.push(e)),
        2
    );
    assert!(ev
        .iter()
        .any(|e| e.order_id == b && e.kind == EventKind::Expired));
    assert_eq!(f.m.book(INST).unwrap().stop_count(), 0);
    assert_eq!(f.m.resting_orders(), 0);
}

#[test]
fn a_post_only_stop_is_refused() {
    let mut f = Fixture::new();
    let mut o = f.stop(0, Side::Buy, 105, Some(106), 1);
    o.post_only = true;
    assert_eq!(
        kinds(&f.submit(o)),
        [EventKind::Rejected(RejectReason::Unsupported)]
    );
}

impl Fixture {
    /// Places a resting GTC iceberg limit order and returns its id.
    fn place_iceberg(
        &mut self,
        account: u32,
        side: Side,
        price: i64,
        qty: i64,
        display: i64,
    ) -> OrderId {
        let mut o = self.order(account, side, price, qty);
        o.display_qty = Qty(display);
        let ev = self.submit(o);
        assert_eq!(kinds(&ev), [EventKind::New], "{ev:#?}");
        // Its reports carry its display quantity.
        assert_eq!(ev[0].details.display_qty, Qty(display));
        ev[0].order_id
    }

    /// The (order, last qty) of each fill of the resting side in `ev`.
    /// A limit order of account 0 and what it took from each resting order: its events and
    /// the makers' (order, quantity) fills in order.
    fn take(&mut self, side: Side, price: i64, qty: i64) -> (Vec<Event>, Vec<(OrderId, i64)>) {
        let o = self.order(0, side, price, qty);
        let ev = self.submit(o);
        let fills = Self::maker_fills(&ev, ev[0].order_id);
        (ev, fills)
    }

    fn maker_fills(ev: &[Event], taker: OrderId) -> Vec<(OrderId, i64)> {
        ev.iter()
            .filter(|e| matches!(e.kind, EventKind::Fill | EventKind::PartialFill))
            .filter(|e| e.order_id != taker)
            .map(|e| (e.order_id, e.last_qty.0))
            .collect()
    }
}

#[test]
fn an_iceberg_trades_its_shown_part_then_shows_the_next_at_the_back_of_its_level() {
    let mut f = Fixture::new();
    // 10 shown 3 at a time, then a plain order of 2 behind it.
    let ice = f.place_iceberg(1, Side::Sell, 100, 10, 3);
    let plain = f.place(1, Side::Sell, 100, 2);
    assert_eq!(f.side(Side::Sell), [(100, 12, 2)]);
    // A buy of 4 takes the shown 3, then 1 of the plain order (the iceberg's next part
    // waits behind it).
    let (_, fills) = f.take(Side::Buy, 100, 4);
    assert_eq!(fills, [(ice, 3), (plain, 1)]);
    assert_eq!((f.leaves(ice), f.leaves(plain)), (Some(7), Some(1)));
    // A buy of 5: the plain order's 1, the iceberg's next 3, and, the level holding nothing
    // else, its part after that.
    let (_, fills) = f.take(Side::Buy, 100, 5);
    assert_eq!(fills, [(plain, 1), (ice, 3), (ice, 1)]);
    assert_eq!(f.leaves(ice), Some(3));
    assert_eq!(f.side(Side::Sell), [(100, 3, 1)]);
    // Its reports show its whole quantity, as any order's; 2 of its part of 3 are left shown,
    // so a buy of 3 takes them, then the last 1.
    let (ev, fills) = f.take(Side::Buy, 100, 3);
    assert_eq!(fills, [(ice, 2), (ice, 1)]);
    let last = ev.iter().rfind(|e| e.order_id == ice).unwrap();
    assert_eq!(
        (last.kind, last.qty, last.cum_qty),
        (EventKind::Fill, Qty(10), Qty(10))
    );
    assert_eq!(f.side(Side::Sell), []);
}

#[test]
fn an_iceberg_that_takes_liquidity_trades_its_whole_quantity_then_rests_showing_its_part() {
    let mut f = Fixture::new();
    f.place(0, Side::Sell, 100, 4);
    let mut o = f.order(1, Side::Buy, 100, 10);
    o.display_qty = Qty(3);
    let ev = f.submit(o);
    let ice = ev[0].order_id;
    assert_eq!(f.leaves(ice), Some(6), "took all 4 offered, not only 3");
    // Resting: a sell of 5 gets its shown 3, then its next part (alone at the level).
    let (_, fills) = f.take(Side::Sell, 100, 5);
    assert_eq!(fills, [(ice, 3), (ice, 2)]);
    assert_eq!(f.leaves(ice), Some(1));
}

#[test]
fn a_fill_or_kill_counts_icebergs_hidden_parts_only_behind_the_whole_level() {
    let mut f = Fixture::new();
    f.place_iceberg(1, Side::Sell, 100, 10, 2);
    // The buyer's own sell behind it: matching (cancel-incoming) would stop there after the
    // iceberg's shown 2, so a FOK for 5 expires untouched...
    let own = f.place(0, Side::Sell, 100, 1);
    let mut o = f.order(0, Side::Buy, 100, 5);
    o.tif = TimeInForce::Fok;
    let ev = f.submit(o);
    assert_eq!(kinds(&ev), [EventKind::New, EventKind::Expired], "{ev:#?}");
    assert_eq!(f.side(Side::Sell), [(100, 11, 2)]);
    // ...a FOK for 2 fills.
    let mut o = f.order(0, Side::Buy, 100, 2);
    o.tif = TimeInForce::Fok;
    let ev = f.submit(o);
    assert_eq!(ev.last().unwrap().kind, EventKind::Fill, "{ev:#?}");
    // Without the own order in the way the hidden part counts: a FOK for 8 fills.
    f.cancel(own);
    let mut o = f.order(0, Side::Buy, 100, 8);
    o.tif = TimeInForce::Fok;
    let ev = f.submit(o);
    assert_eq!(ev.last().unwrap().kind, EventKind::Fill, "{ev:#?}");
    assert_eq!(f.side(Side::Sell), []);
}

#[test]
fn icebergs_that_would_not_rest_or_show_too_little_are_refused() {
    let mut f = Fixture::new();
    type Change = fn(&mut NewOrder);
    let cases: [(&str, Change); 6] = [
        ("display = qty", |o| o.display_qty = o.qty),
        ("negative display", |o| o.display_qty = Qty(-1)),
        ("market", |o| o.ord_type = OrdType::Market),
        ("IOC", |o| o.tif = TimeInForce::Ioc),
        ("FOK", |o| o.tif = TimeInForce::Fok),
        // 1000 in parts of 9: 112 parts, above the 100 allowed.
        ("too many parts", |o| {
            o.qty = Qty(1000);
            o.display_qty = Qty(9);
        }),
    ];
    for (what, change) in cases {
        let mut o = f.order(1, Side::Sell, 100, 10);
        o.display_qty = Qty(3);
        change(&mut o);
        let ev = f.submit(o);
        assert_eq!(
            kinds(&ev),
            [EventKind::Rejected(RejectReason::Unsupported)],
            "{what}"
        );
    }
    // 1000 in parts of 10 is exactly 100 parts: taken.
    let mut o = f.order(1, Side::Sell, 100, 1000);
    o.display_qty = Qty(10);
    assert_eq!(kinds(&f.submit(o)), [EventKind::New]);
    assert_eq!(f.side(Side::Sell), [(100, 1000, 1)]);
}

impl Fixture {
    /// A GTD limit order expiring at `expire_ns`.
    fn gtd(&mut self, account: u32, side: Side, price: i64, qty: i64, expire_ns: i64) -> NewOrder {
        let mut o = self.order(account, side, price, qty);
        o.tif = TimeInForce::Gtd { expire_ns };
        o
    }

    /// A matcher restored from a snapshot of this one, checked to be in the same state.
    fn restored_copy(&self) -> Matcher {
        let mut snap = Vec::new();
        self.m.write_snapshot(&mut snap);
        let mut copy = Matcher::new(self.m.config);
        copy.restore_snapshot(&mut portcullis_types::snapshot::SnapshotReader::new(&snap))
            .unwrap();
        let (mut s1, mut s2) = (Vec::new(), Vec::new());
        self.m.write_state(&mut s1);
        copy.write_state(&mut s2);
        assert_eq!(s1, s2);
        copy
    }

    fn expire_due(&mut self, now: i64) -> Vec<Event> {
        let mut ev = Vec::new();
        let n = self.m.expire_due(now, &mut (), &mut |e| ev.push(e));
        assert_eq!(n as usize, ev.len());
        ev
    }
}

#[test]
fn a_gtd_order_rests_until_its_expiry_time_then_expires_with_what_it_filled() {
    let mut f = Fixture::new();
    let o = f.gtd(0, Side::Buy, 100, 5, 1_000);
    let a = f.submit(o)[0].order_id;
    let o = f.gtd(0, Side::Buy, 99, 1, 2_000);
    let b = f.submit(o)[0].order_id;
    assert_eq!(f.m.next_expiry(), Some(1_000));
    // A sell of 2 trades against it: it works on, partly filled.
    let o = f.order(1, Side::Sell, 100, 2);
    f.submit(o);
    assert_eq!(f.leaves(a), Some(3));
    // One nanosecond early nothing happens; at its time it ends, the later one stays.
    assert!(f.expire_due(999).is_empty());
    let ev = f.expire_due(1_000);
    assert_eq!(kinds(&ev), [EventKind::Expired]);
    let e = &ev[0];
    assert_eq!(
        (e.order_id, e.cum_qty, e.leaves_qty, e.avg_px),
        (a, Qty(2), Qty(0), Price(100))
    );
    assert_eq!(e.tif, TimeInForce::Gtd { expire_ns: 1_000 });
    assert_eq!(f.leaves(a), None);
    assert_eq!(f.m.next_expiry(), Some(2_000));
    // The end of the trading day leaves it (it is not a Day order).
    assert_eq!(f.m.expire_day_orders(1_500, &mut (), &mut |_| {}), 0);
    assert_eq!(f.leaves(b), Some(1));
    // Late, several at once: each ends, earliest first.
    let o = f.gtd(1, Side::Sell, 105, 1, 1_900);
    let c = f.submit(o)[0].order_id;
    let ids: Vec<_> = f.expire_due(5_000).iter().map(|e| e.order_id).collect();
    assert_eq!(ids, [c, b]);
    assert_eq!(f.m.next_expiry(), None);
    assert_eq!(f.m.resting_orders(), 0);
}

#[test]
fn a_gtd_order_already_past_its_expiry_is_refused_too_late_and_a_gtd_market_order_never_waits() {
    let mut f = Fixture::new();
    // `submit` runs at f.now + 1: an expiry at that time has passed.
    let o = f.gtd(0, Side::Buy, 100, 1, f.now + 1);
    assert_eq!(
        kinds(&f.submit(o)),
        [EventKind::Rejected(RejectReason::TooLateToEnter)]
    );
    let expiry = f.now + 2;
    let o = f.gtd(0, Side::Buy, 100, 1, expiry);
    assert_eq!(kinds(&f.submit(o)), [EventKind::New]);
    // A GTD market order does not rest: its unfilled rest is cancelled at once.
    let mut o = f.gtd(1, Side::Buy, 0, 1, 10_000);
    o.ord_type = OrdType::Market;
    assert_eq!(kinds(&f.submit(o)), [EventKind::New, EventKind::Canceled]);
    assert_eq!(f.m.next_expiry(), Some(expiry));
}

#[test]
fn a_cancelled_filled_or_replaced_gtd_order_leaves_the_expiry_schedule() {
    let mut f = Fixture::new();
    let o = f.gtd(0, Side::Buy, 100, 1, 1_000);
    let a = f.submit(o)[0].order_id;
    let o = f.gtd(0, Side::Buy, 99, 1, 2_000);
    let b = f.submit(o)[0].order_id;
    let o = f.gtd(0, Side::Buy, 98, 2, 3_000);
    let c = f.submit(o)[0].order_id;
    f.cancel(a);
    assert_eq!(f.m.next_expiry(), Some(2_000));
    let o = f.order(1, Side::Sell, 99, 1);
    f.submit(o);
    assert_eq!(f.leaves(b), None);
    assert_eq!(f.m.next_expiry(), Some(3_000));
    // A replace keeps the order's expiry, whether it keeps its place or not.
    f.replace(c, 98, 1).unwrap();
    assert_eq!(f.m.next_expiry(), Some(3_000));
    f.replace(c, 97, 1).unwrap();
    assert_eq!(f.m.next_expiry(), Some(3_000));
    let ev = f.expire_due(3_000);
    assert_eq!(
        (ev.len(), ev[0].order_id, ev[0].kind),
        (1, c, EventKind::Expired)
    );
    assert_eq!(f.m.next_expiry(), None);
}

#[test]
fn a_waiting_gtd_stop_expires_and_a_snapshot_keeps_gtd_expiries() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let mut o = f.stop(0, Side::Buy, 110, Some(111), 1);
    o.tif = TimeInForce::Gtd { expire_ns: 500 };
    let s = f.submit(o)[0].order_id;
    let o = f.gtd(1, Side::Sell, 120, 1, 700);
    f.submit(o);
    let copy = f.restored_copy();
    assert_eq!(copy.next_expiry(), Some(500));
    let ev = f.expire_due(500);
    assert_eq!(
        (ev.len(), ev[0].order_id, ev[0].kind),
        (1, s, EventKind::Expired)
    );
    assert_eq!(f.m.book(INST).unwrap().stop_count(), 0);
    assert_eq!(f.m.next_expiry(), Some(700));
}

impl Fixture {
    /// A replace of order `id` that keeps its price and quantity and gives it `tif`, at `now`.
    fn replace_tif(
        &mut self,
        id: OrderId,
        tif: TimeInForce,
        now: i64,
    ) -> Result<Vec<Event>, RejectReason> {
        self.replace_as(id, now, |r| r.tif = Some(tif))
    }
}

#[test]
fn a_replace_can_give_a_new_expiry_or_time_in_force_and_keeps_the_orders_place() {
    let mut f = Fixture::new();
    let o = f.gtd(0, Side::Buy, 100, 1, 1_000);
    let a = f.submit(o)[0].order_id;
    let b = f.place(0, Side::Buy, 100, 1);
    // A later expiry: reported, rescheduled, and the order is still first at its price.
    let later = TimeInForce::Gtd { expire_ns: 5_000 };
    let ev = f.replace_tif(a, later, 10).unwrap();
    assert_eq!((ev[0].kind, ev[0].tif), (EventKind::Replaced, later));
    assert_eq!(f.m.next_expiry(), Some(5_000));
    assert!(f.expire_due(1_000).is_empty());
    let o = f.order(1, Side::Sell, 100, 1);
    let ev = f.submit(o);
    assert!(ev
        .iter()
        .any(|e| e.order_id == a && e.kind == EventKind::Fill));
    assert_eq!(f.leaves(b), Some(1));
    // Refused, the order unchanged: a time in force that does not rest, an expiry past.
    let o = f.gtd(0, Side::Buy, 99, 1, 9_000);
    let c = f.submit(o)[0].order_id;
    assert_eq!(
        f.replace_tif(c, TimeInForce::Ioc, 100),
        Err(RejectReason::Unsupported)
    );
    assert_eq!(
        f.replace_tif(c, TimeInForce::Gtd { expire_ns: 100 }, 100),
        Err(RejectReason::TooLateToEnter)
    );
    assert_eq!(f.m.next_expiry(), Some(9_000));
    // GTC again: out of the schedule, still working.
    f.replace_tif(c, TimeInForce::Gtc, 100).unwrap();
    assert_eq!(f.m.next_expiry(), None);
    assert_eq!(f.leaves(c), Some(1));
}

#[test]
fn a_waiting_stop_reports_its_trigger_before_what_it_does_and_one_already_reached_does_not() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let s = f.place_stop(0, Side::Buy, 101, Some(101));
    // A trade at 101 triggers it: Triggered (still open, nothing filled), then it rests.
    let ev = f.trade_at(101, 1);
    let mine: Vec<_> = ev.iter().filter(|e| e.order_id == s).collect();
    assert_eq!(mine.len(), 1, "{ev:#?}");
    let e = mine[0];
    assert_eq!(
        (
            e.kind,
            e.cum_qty,
            e.leaves_qty,
            e.price,
            e.ord_type.stop_px()
        ),
        (
            EventKind::Triggered,
            Qty(0),
            Qty(1),
            Price(101),
            Some(Price(101))
        )
    );
    assert_eq!(f.leaves(s), Some(1));
    // A stop whose price the last trade already reached works at once: New, no trigger.
    let o = f.stop(0, Side::Buy, 101, Some(99), 1);
    assert_eq!(kinds(&f.submit(o)), [EventKind::New]);
}

impl Fixture {
    /// A GTC trailing stop of `bips` (a stop-limit with `limit`), activated at `stop_px` (0:
    /// none).
    fn trailing(
        &mut self,
        account: u32,
        side: Side,
        stop_px: i64,
        limit: Option<i64>,
        bips: u16,
    ) -> NewOrder {
        let mut o = self.stop(account, side, stop_px, limit, 1);
        o.trailing = TrailingDelta::new(bips);
        o
    }

    /// Trades at each price in turn; the events of order `id` they caused.
    fn trades_then(&mut self, prices: &[i64], id: OrderId) -> Vec<Event> {
        let mut mine = Vec::new();
        for &p in prices {
            let ev = self.trade_at(p, 1);
            mine.extend(ev.into_iter().filter(|e| e.order_id == id));
        }
        mine
    }

    fn trailing_phase(&self, id: OrderId) -> TrailPhase {
        self.m.orders.get(self.slot(id).unwrap()).trail
    }
}

#[test]
fn a_trailing_sell_arms_at_its_activation_price_and_triggers_its_distance_below_the_best_price() {
    // The dialect's scenario B: activation 39,000, 10 %, limit 38,000, last trade 40,000.
    let mut f = Fixture::new();
    f.trade_at(40_000, 1);
    let o = f.trailing(1, Side::Sell, 39_000, Some(38_000), 1000);
    let ev = f.submit(o);
    assert_eq!(kinds(&ev), [EventKind::New]);
    // Its reports carry its distance, and that it waits.
    assert_eq!(
        ev[0].details,
        OrderDetails {
            trailing: TrailingDelta::new(1000),
            waiting: true,
            ..OrderDetails::default()
        }
    );
    let t = ev[0].order_id;
    assert_eq!(f.m.book(INST).unwrap().stop_count(), 1);
    assert_eq!(f.trailing_phase(t), TrailPhase::Arming);
    // A rise is ignored while it waits for its activation price; 39,000 arms it there.
    assert_eq!(f.trades_then(&[41_500, 39_000], t), []);
    assert_eq!(
        f.trailing_phase(t),
        TrailPhase::Tracking(Some(Price(39_000)))
    );
    // 37,000 is less than 10 % below 39,000; 41,000 is the new best price.
    assert_eq!(f.trades_then(&[37_000, 41_000], t), []);
    assert_eq!(
        f.trailing_phase(t),
        TrailPhase::Tracking(Some(Price(41_000)))
    );
    // 36,901 is not yet 10 % below 41,000; 36,900 is: it works as a limit at 38,000, after
    // the trade, and rests (no buyer at 38,000).
    assert_eq!(f.trades_then(&[36_901], t), []);
    let ev = f.trades_then(&[36_900], t);
    assert_eq!(kinds(&ev), [EventKind::Triggered]);
    assert!(!ev[0].details.waiting);
    assert_eq!(ev[0].details.trailing, TrailingDelta::new(1000));
    assert_eq!(f.side(Side::Sell), [(38_000, 1, 1)]);
    assert_eq!(f.m.book(INST).unwrap().stop_count(), 0);
    // Working now, it is an order like any: a buy at 38,000 fills it.
    let buy = f.order(0, Side::Buy, 38_000, 1);
    let ev = f.submit(buy);
    assert!(
        ev.iter()
            .any(|e| e.order_id == t && e.kind == EventKind::Fill),
        "{ev:#?}"
    );
}

#[test]
fn a_trailing_stop_without_an_activation_price_tracks_from_the_last_trade() {
    // Scenario E: no stop price, 7 %, limit 39,000, last trade 40,000.
    let mut f = Fixture::new();
    f.trade_at(40_000, 1);
    let o = f.trailing(1, Side::Sell, 0, Some(39_000), 700);
    let t = f.submit(o)[0].order_id;
    assert_eq!(
        f.trailing_phase(t),
        TrailPhase::Tracking(Some(Price(40_000)))
    );
    assert_eq!(f.trades_then(&[42_000, 39_500, 45_500, 42_316], t), []);
    let ev = f.trades_then(&[42_315], t);
    assert_eq!(kinds(&ev), [EventKind::Triggered]);
    // On a book without trades, it tracks from the next one.
    let mut f = Fixture::new();
    let o = f.trailing(1, Side::Sell, 0, None, 100);
    let t = f.submit(o)[0].order_id;
    assert_eq!(f.trailing_phase(t), TrailPhase::Tracking(None));
    f.trade_at(1_000, 1);
    assert_eq!(
        f.trailing_phase(t),
        TrailPhase::Tracking(Some(Price(1_000)))
    );
}

#[test]
fn a_trailing_buy_follows_the_lowest_price_and_triggers_as_a_market_order_on_a_rise() {
    // Scenario C's take-profit buy: activation 38,000 on a fall, 8.5 %.
    let mut f = Fixture::new();
    f.trade_at(40_000, 1);
    let mut o = f.trailing(0, Side::Buy, 38_000, None, 850);
    o.ord_type = OrdType::TakeProfit {
        stop_px: Price(38_000),
    };
    let t = f.submit(o)[0].order_id;
    assert_eq!(
        f.trades_then(&[42_000, 38_000, 37_000, 39_000, 38_000], t),
        []
    );
    assert_eq!(
        f.trailing_phase(t),
        TrailPhase::Tracking(Some(Price(37_000)))
    );
    // 40,145 = 37,000 × 1.085: it buys at market from the sell resting at 40,200.
    let ask = f.place(1, Side::Sell, 40_200, 1);
    assert_eq!(f.trades_then(&[40_144], t), []);
    let ev = f.trades_then(&[40_145], t);
    assert_eq!(
        kinds(&ev),
        [EventKind::Triggered, EventKind::Fill],
        "{ev:#?}"
    );
    assert_eq!(ev[1].last_px, Price(40_200));
    assert_eq!(f.leaves(ask), None);
}

#[test]
fn trailing_stops_are_cancelled_snapshotted_and_refused_like_other_stops() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let o = f.trailing(1, Side::Sell, 0, Some(90), 1000);
    let a = f.submit(o)[0].order_id;
    // A take-profit sell arms on a rise to 120 (a stop-loss sell at 120 would track at once:
    // the last trade has already fallen to it).
    let mut o = f.trailing(1, Side::Sell, 120, None, 500);
    o.ord_type = OrdType::TakeProfit {
        stop_px: Price(120),
    };
    let b = f.submit(o)[0].order_id;
    let o = f.trailing(0, Side::Buy, 0, None, 2000);
    let c = f.submit(o)[0].order_id;
    f.trade_at(110, 1);
    // A snapshot keeps each one's phase and best price; the copy goes on exactly as the
    // original does.
    let mut copy = Fixture {
        m: f.restored_copy(),
        now: f.now,
        cl: f.cl,
    };
    assert_eq!(
        copy.trailing_phase(a),
        TrailPhase::Tracking(Some(Price(110)))
    );
    assert_eq!(copy.trailing_phase(b), TrailPhase::Arming);
    assert_eq!(
        copy.trailing_phase(c),
        TrailPhase::Tracking(Some(Price(100)))
    );
    for fx in [&mut f, &mut copy] {
        // 99 = 110 × 0.9: a triggers (and rests at 90: no buyer); b and c wait on.
        let ev = fx.trade_at(99, 1);
        assert!(
            ev.iter()
                .any(|e| e.order_id == a && e.kind == EventKind::Triggered),
            "{ev:#?}"
        );
        assert_eq!(fx.m.book(INST).unwrap().stop_count(), 2);
        assert_eq!(kinds(&fx.cancel(b)), [EventKind::Canceled]);
        assert_eq!(fx.m.book(INST).unwrap().stop_count(), 1);
        // A waiting trailing stop is not replaced (cancel and enter a new one).
        assert_eq!(fx.replace(c, 0, 2), Err(RejectReason::Unsupported));
    }
    let (mut s1, mut s2) = (Vec::new(), Vec::new());
    f.m.write_state(&mut s1);
    copy.m.write_state(&mut s2);
    assert_eq!(s1, s2);
    // Only stop and take-profit orders trail; only trailing stops may have no stop price.
    let mut o = f.order(0, Side::Buy, 100, 1);
    o.trailing = TrailingDelta::new(100);
    let ev = f.submit(o);
    assert_eq!(kinds(&ev), [EventKind::Rejected(RejectReason::Unsupported)]);
    let o = f.stop(0, Side::Buy, 0, None, 1);
    assert_eq!(
        kinds(&f.submit(o)),
        [EventKind::Rejected(RejectReason::BadTick)]
    );
}

impl Fixture {
    /// A one-cancels-the-other pair of account 1 selling 2: a post-only limit at `limit`,
    /// then a stop at `stop` joined to it. Returns (limit, stop) ids.
    fn sell_pair(&mut self, limit: i64, stop: i64) -> (OrderId, OrderId) {
        self.pair(limit, stop, false)
    }

    /// [`Fixture::sell_pair`], both orders pending (the pair of an OTOCO) if `pending`.
    fn pair(&mut self, limit: i64, stop: i64, pending: bool) -> (OrderId, OrderId) {
        let mut first = self.order(1, Side::Sell, limit, 2);
        first.post_only = true;
        first.pending = pending;
        let ev = self.submit(first);
        assert_eq!(kinds(&ev), [EventKind::New], "{ev:#?}");
        let first = ev[0].order_id;
        let mut second = self.stop(1, Side::Sell, stop, None, 2);
        second.pending = pending;
        second.oco_with = Some(first);
        let ev = self.submit(second);
        assert_eq!(kinds(&ev), [EventKind::New], "{ev:#?}");
        (first, ev[0].order_id)
    }

    fn pair_of(&self, id: OrderId) -> Option<OrderId> {
        let o = self.m.orders.get(self.slot(id)?);
        self.m.orders.sibling_id(o)
    }
}

#[test]
fn one_of_a_pair_trading_even_partly_cancels_the_other() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let (limit, stop) = f.sell_pair(110, 90);
    assert_eq!(
        (f.pair_of(limit), f.pair_of(stop)),
        (Some(stop), Some(limit))
    );
    // A buy of 1 at 110 takes half the limit: the stop is cancelled after the trade.
    let buy = f.order(0, Side::Buy, 110, 1);
    let ev = f.submit(buy);
    let mine: Vec<_> = ev
        .iter()
        .filter(|e| e.order_id == limit || e.order_id == stop)
        .map(|e| (e.order_id, e.kind))
        .collect();
    assert_eq!(
        mine,
        [(limit, EventKind::PartialFill), (stop, EventKind::Canceled)],
        "{ev:#?}"
    );
    assert_eq!(f.leaves(stop), None);
    assert_eq!(f.stop_lists(), (vec![], vec![]));
    // The limit works on as a plain order.
    assert_eq!((f.leaves(limit), f.pair_of(limit)), (Some(1), None));
}

#[test]
fn one_of_a_pair_triggering_cancels_the_other_before_it_trades() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let (limit, stop) = f.sell_pair(110, 95);
    // A bid at 94 for the stop to sell into; a trade at 95 triggers it.
    f.place(0, Side::Buy, 94, 5);
    let ev = f.trade_at(95, 1);
    let mine: Vec<_> = ev
        .iter()
        .filter(|e| e.order_id == limit || e.order_id == stop)
        .map(|e| (e.order_id, e.kind))
        .collect();
    assert_eq!(
        mine,
        [
            (stop, EventKind::Triggered),
            (limit, EventKind::Canceled),
            (stop, EventKind::Fill)
        ],
        "{ev:#?}"
    );
    assert_eq!(f.side(Side::Sell), []);
}

#[test]
fn cancelling_or_expiring_one_of_a_pair_cancels_the_other_and_neither_is_replaced() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let (limit, stop) = f.sell_pair(110, 90);
    assert_eq!(f.replace(limit, 111, 2), Err(RejectReason::Unsupported));
    let ev = f.cancel(stop);
    assert_eq!(
        ev.iter().map(|e| (e.order_id, e.kind)).collect::<Vec<_>>(),
        [(stop, EventKind::Canceled), (limit, EventKind::Canceled)]
    );
    assert_eq!((f.leaves(limit), f.leaves(stop)), (None, None));
    // A GTD limit expiring takes its stop with it.
    let mut first = f.gtd(1, Side::Sell, 110, 2, 1_000);
    first.post_only = true;
    let first = f.submit(first)[0].order_id;
    let mut second = f.stop(1, Side::Sell, 90, None, 2);
    second.oco_with = Some(first);
    let second = f.submit(second)[0].order_id;
    let mut ev = Vec::new();
    let n = f.m.expire_due(1_000, &mut (), &mut |e| ev.push(e));
    assert_eq!(n, 1);
    assert_eq!(
        ev.iter().map(|e| (e.order_id, e.kind)).collect::<Vec<_>>(),
        [(first, EventKind::Expired), (second, EventKind::Canceled)]
    );
}

#[test]
fn a_pair_is_refused_whole_unless_both_orders_wait_untouched() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let refused = |f: &mut Fixture, edit: &dyn Fn(&mut NewOrder, OrderId)| {
        let mut first = f.order(1, Side::Sell, 110, 2);
        first.post_only = true;
        let first = f.submit(first)[0].order_id;
        let mut second = f.stop(1, Side::Sell, 90, None, 2);
        edit(&mut second, first);
        let ev = f.submit(second);
        (first, ev)
    };
    type Edit<'a> = &'a dyn Fn(&mut NewOrder, OrderId);
    let cases: [(&str, Edit); 5] = [
        ("a second limit", &|o, first| {
            o.ord_type = OrdType::Limit;
            o.price = Price(120);
            o.post_only = true;
            o.oco_with = Some(first);
        }),
        ("a stop already reached", &|o, first| {
            o.ord_type = OrdType::Stop {
                stop_px: Price(100),
            };
            o.oco_with = Some(first);
        }),
        ("another side", &|o, first| {
            o.side = Side::Buy;
            o.ord_type = OrdType::Stop {
                stop_px: Price(105),
            };
            o.oco_with = Some(first);
        }),
        ("another account's order", &|o, first| {
            o.account = AccountId(0);
            o.session = SessionId(0);
            o.oco_with = Some(first);
        }),
        ("no such order", &|o, _| o.oco_with = Some(OrderId(999_999))),
    ];
    for (what, edit) in cases {
        let (first, ev) = refused(&mut f, edit);
        assert_eq!(
            ev[0].kind,
            EventKind::Rejected(RejectReason::OrderListRejected),
            "{what}: {ev:#?}"
        );
        // The first order of the session's own refused pair is cancelled with it; another
        // session's is not touched.
        let own = !matches!(what, "another account's order" | "no such order");
        assert_eq!(ev.len(), 1 + usize::from(own), "{what}: {ev:#?}");
        if own {
            assert_eq!((ev[1].order_id, ev[1].kind), (first, EventKind::Canceled));
        } else {
            f.cancel(first);
        }
    }
    // A first order that has traded cannot be paired; it works on.
    let mut first = f.order(1, Side::Sell, 110, 2);
    first.post_only = true;
    let first = f.submit(first)[0].order_id;
    let buy = f.order(0, Side::Buy, 110, 1);
    f.submit(buy);
    let mut second = f.stop(1, Side::Sell, 90, None, 2);
    second.oco_with = Some(first);
    let ev = f.submit(second);
    assert_eq!(
        kinds(&ev),
        [EventKind::Rejected(RejectReason::OrderListRejected)]
    );
    assert_eq!(f.leaves(first), Some(1));
}

#[test]
fn a_snapshot_keeps_pairs_and_the_copy_cancels_as_the_original_does() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let (limit, stop) = f.sell_pair(110, 90);
    let mut copy = Fixture {
        m: f.restored_copy(),
        now: f.now,
        cl: f.cl,
    };
    assert_eq!(copy.pair_of(limit), Some(stop));
    for fx in [&mut f, &mut copy] {
        let buy = fx.order(0, Side::Buy, 110, 2);
        let ev = fx.submit(buy);
        assert!(
            ev.iter()
                .any(|e| e.order_id == stop && e.kind == EventKind::Canceled),
            "{ev:#?}"
        );
    }
    let (mut s1, mut s2) = (Vec::new(), Vec::new());
    f.m.write_state(&mut s1);
    copy.m.write_state(&mut s2);
    assert_eq!(s1, s2);
}

#[test]
fn a_waiting_trailing_stop_expires_with_its_instrument() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let o = f.trailing(1, Side::Sell, 0, None, 100);
    let t = f.submit(o)[0].order_id;
    let mut ev = Vec::new();
    assert_eq!(
        f.m.expire_instrument(INST, 10, &mut (), &mut |e| ev.push(e)),
        1
    );
    assert_eq!((ev[0].order_id, ev[0].kind), (t, EventKind::Expired));
    assert_eq!(f.m.book(INST).unwrap().stop_count(), 0);
    assert_eq!(f.m.resting_orders(), 0);
}

impl Fixture {
    /// A one-triggers-the-other list of account 1: `pending` placed first (pending), then
    /// `working` triggering it. Returns (working events, working id, pending id).
    fn oto(
        &mut self,
        mut pending: NewOrder,
        mut working: NewOrder,
    ) -> (Vec<Event>, OrderId, OrderId) {
        pending.pending = true;
        let ev = self.submit(pending);
        assert_eq!(kinds(&ev), [EventKind::New], "{ev:#?}");
        assert!(ev[0].details.pending);
        let p = ev[0].order_id;
        working.triggers = Some(p);
        let ev = self.submit(working);
        let w = ev[0].order_id;
        (ev, w, p)
    }

    fn list_of(&self, id: OrderId) -> Option<OrderId> {
        let o = self.m.orders.get(self.slot(id)?);
        self.m.orders.list_id(o)
    }
}

#[test]
fn a_pending_order_waits_off_the_book_until_its_working_order_fills_completely() {
    let mut f = Fixture::new();
    // Account 1 buys 2 at 100; once bought, it sells 2 at 120.
    let take_profit = f.order(1, Side::Sell, 120, 2);
    let entry = f.order(1, Side::Buy, 100, 2);
    let (ev, w, p) = f.oto(take_profit, entry);
    assert_eq!(kinds(&ev), [EventKind::New]);
    assert_eq!((f.list_of(w), f.list_of(p)), (Some(p), Some(w)));
    // Not on the book: the sell side is empty; the pending order is not replaceable.
    assert_eq!(f.m.book(INST).unwrap().side(Side::Sell).best(), None);
    assert_eq!(f.replace(p, 121, 2), Err(RejectReason::Unsupported));
    assert_eq!(f.replace(w, 101, 2), Err(RejectReason::Unsupported));
    // A partial fill of the working order places nothing.
    let sell = f.order(0, Side::Sell, 100, 1);
    let ev = f.submit(sell);
    assert!(ev.iter().all(|e| e.order_id != p), "{ev:#?}");
    assert_eq!(f.leaves(p), Some(2));
    // The rest fills it: the pending order is placed after the fill and rests at 120.
    let sell = f.order(0, Side::Sell, 100, 1);
    let ev = f.submit(sell);
    let last = ev.last().unwrap();
    assert_eq!(
        (last.order_id, last.kind),
        (p, EventKind::Activated),
        "{ev:#?}"
    );
    assert!(!last.details.pending && !last.details.waiting);
    assert_eq!(
        f.m.book(INST).unwrap().side(Side::Sell).best(),
        Some(Price(120))
    );
    assert_eq!(f.list_of(p), None);
    // It is an ordinary order now: it trades.
    let buy = f.order(0, Side::Buy, 120, 2);
    let ev = f.submit(buy);
    assert!(ev
        .iter()
        .any(|e| e.order_id == p && e.kind == EventKind::Fill));
}

#[test]
fn a_working_order_filled_on_entry_places_its_pending_order_in_the_same_command() {
    let mut f = Fixture::new();
    f.place(0, Side::Sell, 100, 2);
    f.place(0, Side::Buy, 90, 1);
    // The pending order is a market sell: placed once the buy fills, it sells into the bid.
    let mut market = f.order(1, Side::Sell, 0, 1);
    market.ord_type = OrdType::Market;
    market.tif = TimeInForce::Ioc;
    let entry = f.order(1, Side::Buy, 100, 2);
    let (ev, w, p) = f.oto(market, entry);
    let seen: Vec<_> = ev.iter().map(|e| (e.order_id, e.kind)).collect();
    let at = |id, kind| seen.iter().position(|&s| s == (id, kind)).unwrap();
    assert!(
        at(w, EventKind::Fill) < at(p, EventKind::Activated),
        "{ev:#?}"
    );
    assert!(
        at(p, EventKind::Activated) < at(p, EventKind::Fill),
        "{ev:#?}"
    );
    assert_eq!(
        ev.iter()
            .find(|e| e.order_id == p && e.kind == EventKind::Fill)
            .unwrap()
            .last_px,
        Price(90)
    );
}

#[test]
fn a_list_ends_whole_when_either_order_ends_unfilled() {
    // The working order cancelled (after a partial fill): the pending order goes too.
    let mut f = Fixture::new();
    let (_, w, p) = {
        let tp = f.order(1, Side::Sell, 120, 2);
        let entry = f.order(1, Side::Buy, 100, 2);
        f.oto(tp, entry)
    };
    let sell = f.order(0, Side::Sell, 100, 1);
    f.submit(sell);
    let ev = f.cancel(w);
    assert_eq!(
        ev.iter().map(|e| (e.order_id, e.kind)).collect::<Vec<_>>(),
        [(w, EventKind::Canceled), (p, EventKind::Canceled)]
    );
    assert_eq!(f.m.resting_orders(), 0);
    // The pending order cancelled: its working order goes too.
    let (_, w, p) = {
        let tp = f.order(1, Side::Sell, 120, 2);
        let entry = f.order(1, Side::Buy, 100, 2);
        f.oto(tp, entry)
    };
    let ev = f.cancel(p);
    assert_eq!(
        ev.iter().map(|e| (e.order_id, e.kind)).collect::<Vec<_>>(),
        [(p, EventKind::Canceled), (w, EventKind::Canceled)]
    );
    // An IOC working order whose rest is cancelled: nothing is placed.
    f.place(0, Side::Sell, 100, 1);
    let tp = f.order(1, Side::Sell, 120, 2);
    let mut entry = f.order(1, Side::Buy, 100, 2);
    entry.tif = TimeInForce::Ioc;
    let (ev, w, p) = f.oto(tp, entry);
    let seen: Vec<_> = ev.iter().map(|e| (e.order_id, e.kind)).collect();
    assert!(
        seen.contains(&(w, EventKind::Canceled)) && seen.contains(&(p, EventKind::Canceled)),
        "{ev:#?}"
    );
    assert_eq!(f.m.resting_orders(), 0);
}

#[test]
fn a_working_order_that_cannot_join_its_pending_order_refuses_the_list() {
    let mut f = Fixture::new();
    type Edit = dyn Fn(&mut NewOrder, &mut NewOrder);
    // (case, whether the pending order is cancelled with the list)
    let cases: [(&str, &Edit, bool); 5] = [
        ("not pending", &|p, _| p.pending = false, false),
        (
            "another account's",
            &|_, w| {
                w.account = AccountId(0);
                w.session = SessionId(0);
            },
            false,
        ),
        (
            "a stop as working order",
            &|_, w| {
                w.ord_type = OrdType::Stop {
                    stop_px: Price(100),
                }
            },
            true,
        ),
        (
            "a market working order",
            &|_, w| w.ord_type = OrdType::Market,
            true,
        ),
        (
            "also in a pair",
            &|_, w| w.oco_with = Some(OrderId(1)),
            true,
        ),
    ];
    for (what, edit, cancels) in cases {
        let mut p = f.order(1, Side::Sell, 120, 2);
        p.pending = true;
        let mut w = f.order(1, Side::Buy, 100, 2);
        edit(&mut p, &mut w);
        let pending = f.submit(p);
        let pid = pending[0].order_id;
        w.triggers = Some(pid);
        let ev = f.submit(w);
        assert_eq!(
            ev[0].kind,
            EventKind::Rejected(RejectReason::OrderListRejected),
            "{what}: {ev:#?}"
        );
        // A pending order refused with its list is cancelled; an order that is not pending,
        // or is another account's, is not touched.
        if cancels {
            assert_eq!(
                (ev[1].order_id, ev[1].kind),
                (pid, EventKind::Canceled),
                "{what}"
            );
        } else {
            assert_eq!(ev.len(), 1, "{what}");
            f.cancel(pid);
        }
        assert_eq!(f.m.resting_orders(), 0, "{what}");
    }
    // A pending order already triggered by another working order cannot be joined again.
    let (_, _, p) = {
        let tp = f.order(1, Side::Sell, 120, 2);
        let entry = f.order(1, Side::Buy, 100, 2);
        f.oto(tp, entry)
    };
    let mut again = f.order(1, Side::Buy, 99, 2);
    again.triggers = Some(p);
    assert_eq!(
        kinds(&f.submit(again)),
        [EventKind::Rejected(RejectReason::OrderListRejected)]
    );
    assert_eq!(f.m.resting_orders(), 2);
}

#[test]
fn a_pending_pair_is_placed_together_and_then_one_cancels_the_other() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    // OTOCO: buy 2 at 100; then sell 2 at 120 (post-only) or stop out at 90.
    let (above, below) = f.pair(120, 90, true);
    // A pending stop is not in the stop lists: a trade at 90 does not trigger it.
    f.trade_at(90, 1);
    assert_eq!(f.leaves(below), Some(2));
    assert_eq!(f.stop_lists(), (vec![], vec![]));
    f.trade_at(100, 1);
    let mut entry = f.order(1, Side::Buy, 100, 2);
    entry.triggers = Some(above);
    let w = f.submit(entry)[0].order_id;
    // The entry fills: both are placed, the limit rests, the stop waits.
    let sell = f.order(0, Side::Sell, 100, 2);
    let ev = f.submit(sell);
    let activated: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == EventKind::Activated)
        .map(|e| (e.order_id, e.details.waiting))
        .collect();
    assert_eq!(activated, [(above, false), (below, true)], "{ev:#?}");
    assert!(f.slot(w).is_none());
    assert_eq!(f.stop_lists(), (vec![], vec![90]));
    assert_eq!(
        (f.pair_of(above), f.pair_of(below)),
        (Some(below), Some(above))
    );
    // The stop triggers on a trade at 90: the limit is cancelled, the stop sells.
    f.place(0, Side::Buy, 90, 3);
    let sell = f.order(1, Side::Sell, 90, 1);
    let ev = f.submit(sell);
    let seen: Vec<_> = ev.iter().map(|e| (e.order_id, e.kind)).collect();
    assert!(seen.contains(&(above, EventKind::Canceled)), "{ev:#?}");
    assert!(seen.contains(&(below, EventKind::Fill)), "{ev:#?}");
}

#[test]
fn a_pending_post_only_order_that_would_trade_when_placed_is_refused_with_its_pair() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    // Two lists of account 1, both working orders bought by one sell: the first places a
    // buy at 106, so the second's post-only sell at 105 would trade when it is placed.
    let mut bid = f.order(1, Side::Buy, 106, 1);
    bid.pending = true;
    let bid = f.submit(bid)[0].order_id;
    let mut entry = f.order(1, Side::Buy, 100, 1);
    entry.triggers = Some(bid);
    f.submit(entry);
    let (above, below) = f.pair(105, 90, true);
    let mut entry = f.order(1, Side::Buy, 100, 1);
    entry.triggers = Some(above);
    f.submit(entry);
    let sell = f.order(0, Side::Sell, 100, 2);
    let ev = f.submit(sell);
    assert_eq!(
        f.m.book(INST).unwrap().side(Side::Buy).best(),
        Some(Price(106))
    );
    let seen: Vec<_> = ev.iter().map(|e| (e.order_id, e.kind)).collect();
    let at = |id, kind| seen.iter().position(|&s| s == (id, kind));
    assert!(at(above, EventKind::Activated).is_some(), "{ev:#?}");
    assert!(
        at(above, EventKind::Rejected(RejectReason::PostOnlyWouldTrade)).is_some(),
        "{ev:#?}"
    );
    assert!(at(below, EventKind::Canceled).is_some(), "{ev:#?}");
    assert!(at(below, EventKind::Activated).is_none(), "{ev:#?}");
    assert_eq!(f.m.resting_orders(), 1, "the bid at 106 only");
}

#[test]
fn a_snapshot_keeps_lists_and_pending_orders_and_the_copy_places_them_as_the_original_does() {
    let mut f = Fixture::new();
    f.trade_at(100, 1);
    let mut above = f.order(1, Side::Sell, 120, 2);
    above.post_only = true;
    above.pending = true;
    let above = f.submit(above)[0].order_id;
    let mut below = f.trailing(1, Side::Sell, 0, None, 100);
    below.qty = Qty(2);
    below.pending = true;
    below.oco_with = Some(above);
    let below = f.submit(below)[0].order_id;
    let mut entry = f.order(1, Side::Buy, 100, 2);
    entry.triggers = Some(above);
    let w = f.submit(entry)[0].order_id;
    let mut copy = Fixture {
        m: f.restored_copy(),
        now: f.now,
        cl: f.cl,
    };
    assert_eq!(
        (copy.list_of(w), copy.list_of(above)),
        (Some(above), Some(w))
    );
    assert_eq!(copy.pair_of(below), Some(above));
    let mut events = Vec::new();
    for fx in [&mut f, &mut copy] {
        let sell = fx.order(0, Side::Sell, 100, 2);
        let ev = fx.submit(sell);
        assert!(
            ev.iter()
                .any(|e| e.order_id == below && e.kind == EventKind::Activated),
            "{ev:#?}"
        );
        events.push(ev);
    }
    assert_eq!(events[0], events[1]);
    let (mut s1, mut s2) = (Vec::new(), Vec::new());
    f.m.write_state(&mut s1);
    copy.m.write_state(&mut s2);
    assert_eq!(s1, s2);
}

#[test]
fn pending_orders_expire_with_their_instrument() {
    let mut f = Fixture::new();
    let mut p = f.order(1, Side::Sell, 120, 2);
    p.pending = true;
    let p = f.submit(p)[0].order_id;
    let mut ev = Vec::new();
    assert_eq!(
        f.m.expire_instrument(INST, 10, &mut (), &mut |e| ev.push(e)),
        1
    );
    assert_eq!((ev[0].order_id, ev[0].kind), (p, EventKind::Expired));
    assert_eq!(f.m.resting_orders(), 0);
}

#[test]
fn depth_shows_each_levels_shown_quantity_best_first_within_its_bounds() {
    let mut f = Fixture::new();
    let depth = |f: &Fixture, levels: usize, max: usize| {
        let d = f.m.depth(INST, levels, max);
        let side = |v: &[(Price, Qty)]| v.iter().map(|(p, q)| (p.0, q.0)).collect::<Vec<_>>();
        (side(&d.bids), side(&d.asks), d.update_id)
    };
    assert_eq!(depth(&f, 10, 100), (vec![], vec![], 0));
    f.place(1, Side::Buy, 98, 2);
    f.place(1, Side::Buy, 99, 1);
    f.place(1, Side::Buy, 99, 4);
    // An iceberg of 10 shows 3: the level shows 3 + 2, not its whole 12.
    f.place_iceberg(1, Side::Sell, 101, 10, 3);
    f.place(1, Side::Sell, 101, 2);
    f.place(1, Side::Sell, 103, 5);
    let (bids, asks, id) = depth(&f, 10, 100);
    assert_eq!(bids, [(99, 5), (98, 2)]);
    assert_eq!(asks, [(101, 5), (103, 5)]);
    assert!(id > 0);
    assert_eq!(f.side(Side::Sell)[0], (101, 12, 2));
    // At most `levels` a side, best first.
    let (bids, asks, _) = depth(&f, 1, 100);
    assert_eq!((bids, asks), (vec![(99, 5)], vec![(101, 5)]));
    // Within the orders it may walk (half a side): a level that would pass it is left out.
    let (bids, asks, _) = depth(&f, 10, 4);
    assert_eq!((bids, asks), (vec![(99, 5)], vec![(101, 5)]));
    let (bids, asks, _) = depth(&f, 10, 3);
    assert_eq!((bids, asks), (vec![], vec![]));
    // A change of the book moves the update id; a trade is the last trade.
    assert_eq!(f.m.depth(INST, 1, 100).last_trade, None);
    f.take(Side::Buy, 101, 1);
    let (_, asks, later) = depth(&f, 10, 100);
    assert_eq!(asks, [(101, 4), (103, 5)]);
    assert!(later > id);
    assert_eq!(f.m.depth(INST, 0, 100).last_trade, Some(Price(101)));
    // No such book: nothing.
    assert_eq!(f.m.depth(InstrumentId(999), 10, 100), Depth::default());
}
