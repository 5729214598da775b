//! Random command sequences through the core: nothing panics, no book stays crossed, every
//! trade is reported on both sides with equal price and quantity, the reports add up to the
//! books, and the risk state agrees with the books.

mod common;

use std::collections::HashMap;

use common::*;
use portcullis_engine::{EngineConfig, MAX_ID};
use portcullis_types::{
    AccountId, ClOrdId, Command, Event, EventKind, InstrumentId, MassCancel, OrdType, OrderId,
    Price, SessionId, Side, StpMode, TimeInForce,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    New {
        account: u32,
        instrument: usize,
        buy: bool,
        market: bool,
        tif: u8,
        ticks: i64,
        qty: i64,
        post_only: bool,
        stp: u8,
        /// 0: a stop, 1: a stop-limit, 2: a take-profit, 3: a take-profit limit (at
        /// `stop_ticks`); otherwise none of them.
        stop: u8,
        stop_ticks: i64,
        /// An iceberg's display quantity (0: none; one as large as the order is refused).
        display: i64,
    },
    Cancel {
        pick: usize,
        by_id: bool,
        other_account: bool,
    },
    Replace {
        pick: usize,
        ticks: i64,
        qty: i64,
    },
    MassCancel {
        account: u32,
        instrument: Option<usize>,
    },
    SessionClosed {
        account: u32,
    },
    /// Kill switch on (cancels), an order from a killed account is refused, switch off.
    Kill {
        account: Option<u32>,
    },
    /// The clock moves on `ns` and due good-till-date orders expire.
    Wait {
        ns: i64,
    },
    /// A one-triggers-the-other list: a pending order (the other side: a limit at
    /// `pending_ticks`, or a market order), then a limit working order triggering it.
    Oto {
        account: u32,
        instrument: usize,
        buy: bool,
        ticks: i64,
        qty: i64,
        ioc: bool,
        pending_ticks: i64,
        pending_market: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        14 => (0..3u32, 0..2usize, any::<bool>(), prop::bool::weighted(0.1), 0..5u8, 0..10i64,
              1..6i64, prop::bool::weighted(0.15), 0..4u8, 0..8u8, 0..10i64,
              prop_oneof![3 => Just(0i64), 1 => 1..3i64])
            .prop_map(|(account, instrument, buy, market, tif, ticks, qty, post_only, stp, stop,
                        stop_ticks, display)| {
                Op::New {
                    account, instrument, buy, market, tif, ticks, qty, post_only, stp, stop,
                    stop_ticks, display,
                }
            }),
        2 => (any::<usize>(), any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(pick, by_id, other_account)| Op::Cancel { pick, by_id, other_account }),
        2 => (any::<usize>(), 0..10i64, 1..8i64)
            .prop_map(|(pick, ticks, qty)| Op::Replace { pick, ticks, qty }),
        1 => (0..3u32, prop::option::of(0..2usize))
            .prop_map(|(account, instrument)| Op::MassCancel { account, instrument }),
        1 => (0..3u32).prop_map(|account| Op::SessionClosed { account }),
        1 => prop::option::of(0..3u32).prop_map(|account| Op::Kill { account }),
        1 => (0..6_000i64).prop_map(|ns| Op::Wait { ns }),
        3 => (0..3u32, 0..2usize, any::<bool>(), 0..10i64, 1..6i64, prop::bool::weighted(0.2),
              0..10i64, prop::bool::weighted(0.2))
            .prop_map(|(account, instrument, buy, ticks, qty, ioc, pending_ticks,
                        pending_market)| Op::Oto {
                account, instrument, buy, ticks, qty, ioc, pending_ticks, pending_market,
            }),
    ]
}

/// What the reports say about working orders: (instrument, side, leaves) by order id.
#[derive(Default)]
struct Ledger {
    live: HashMap<OrderId, (InstrumentId, Side, i64)>,
    trades: HashMap<u64, Vec<Event>>,
    last_exec: u64,
    /// The lowest and highest trade price of the last command, per instrument.
    swing: HashMap<InstrumentId, (Price, Price)>,
}

impl Ledger {
    fn apply(&mut self, e: &Event) -> Result<(), TestCaseError> {
        prop_assert!(e.exec_id > self.last_exec, "exec ids increase: {e:?}");
        self.last_exec = e.exec_id;
        prop_assert!(e.exec_id <= MAX_ID && e.order_id.0 <= MAX_ID && e.trade_id.0 <= MAX_ID);
        match e.kind {
            EventKind::New
            | EventKind::PartialFill
            | EventKind::Replaced
            | EventKind::Triggered
            | EventKind::Activated => {
                prop_assert_eq!(e.cum_qty.0 + e.leaves_qty.0, e.qty.0, "{:?}", e);
                prop_assert!(e.leaves_qty.0 > 0);
                self.live
                    .insert(e.order_id, (e.instrument, e.side, e.leaves_qty.0));
            }
            EventKind::Fill => {
                prop_assert_eq!(e.cum_qty, e.qty);
                prop_assert_eq!(e.leaves_qty.0, 0);
                self.live.remove(&e.order_id);
            }
            EventKind::Canceled | EventKind::Expired => {
                prop_assert_eq!(e.leaves_qty.0, 0);
                self.live.remove(&e.order_id);
            }
            EventKind::Rejected(_)
            | EventKind::CancelRejected { .. }
            | EventKind::MassCancelDone { .. } => {}
            EventKind::Route(_) | EventKind::Pending(_) => {
                prop_assert!(false, "no instrument is routed: {:?}", e)
            }
        }
        if matches!(e.kind, EventKind::Fill | EventKind::PartialFill) {
            prop_assert!(e.last_qty.0 > 0);
            self.trades.entry(e.trade_id.0).or_default().push(*e);
            let px = e.last_px;
            let s = self.swing.entry(e.instrument).or_insert((px, px));
            *s = (s.0.min(px), s.1.max(px));
        }
        Ok(())
    }
}

fn check_books(
    r: &Run,
    ledger: &Ledger,
    instruments: &[InstrumentId],
) -> Result<(), TestCaseError> {
    for &i in instruments {
        let book = r.core.matcher().book(i).unwrap();
        prop_assert!(!book.is_crossed());
        let waiting: Vec<_> = r.core.matcher().waiting_stops(i).collect();
        for w in &waiting {
            // An order whose trigger the last trade has reached is never left waiting.
            let (stop_px, dir) = w.ord_type.trigger(w.side).unwrap();
            let last = book.last_trade();
            prop_assert!(
                !last.is_some_and(|l| dir.reached(stop_px, l)),
                "{:?} waits after a trade at {:?}",
                w,
                last
            );
            // Nor one that any trade of the last command reached, even if later trades of
            // that command (of orders it triggered) moved back.
            let swing = ledger.swing.get(&i);
            prop_assert!(
                !swing.is_some_and(
                    |&(low, high)| dir.reached(stop_px, low) || dir.reached(stop_px, high)
                ),
                "{:?} waits after trades between {:?}",
                w,
                swing
            );
        }
        for side in [Side::Buy, Side::Sell] {
            // Pending orders of lists are in the store, off the book.
            let pending: i64 = [ALICE, BOB, CAROL]
                .iter()
                .flat_map(|&a| r.core.matcher().working_orders(a))
                .filter(|o| o.details.pending && o.instrument == i && o.side == side)
                .map(|o| o.leaves_qty.0)
                .sum();
            let in_book: i64 = book.levels(side).map(|l| l.qty.0).sum::<i64>()
                + waiting
                    .iter()
                    .filter(|w| w.side == side)
                    .map(|w| w.leaves_qty.0)
                    .sum::<i64>()
                + pending;
            let reported: i64 = ledger
                .live
                .values()
                .filter(|(inst, s, _)| *inst == i && *s == side)
                .map(|(_, _, q)| q)
                .sum();
            prop_assert_eq!(in_book, reported, "{:?} {:?}", i, side);
        }
    }
    prop_assert_eq!(r.core.matcher().resting_orders(), ledger.live.len());
    // The next expiry is that of the working GTD order that expires first.
    let first_expiry = [ALICE, BOB, CAROL]
        .iter()
        .flat_map(|&a| r.core.matcher().working_orders(a))
        .filter_map(|o| o.tif.expire_ns())
        .min();
    prop_assert_eq!(r.core.next_expiry(), first_expiry);
    let risk = r.core.risk();
    prop_assert_eq!(risk.accounting_anomalies(), 0);
    for a in [ALICE, BOB, CAROL] {
        prop_assert_eq!(risk.open_orders(a), r.core.matcher().account_orders(a));
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut risk = open_risk();
    risk.max_cl_ord_ids_per_day = 1 << 12;
    let mut r = Run::with(
        EngineConfig {
            max_resting_orders: 256,
            levels_per_side: 4,
            cancel_on_disconnect: true,
        },
        risk,
    );
    let instruments = [r.perp(), r.inst("BTC-261204-100000-C")];
    let base = [999_975i64, 4_975];
    for (i, b) in instruments.iter().zip(base) {
        r.core
            .risk_mut()
            .set_reference_price(*i, Price(b + 25))
            .unwrap();
    }
    r.core.set_cancel_on_disconnect(SessionId(2), false);
    let mut ledger = Ledger::default();
    // Every order ever accepted: (id, ClOrdID, account, instrument).
    let mut accepted: Vec<(OrderId, ClOrdId, AccountId, InstrumentId)> = Vec::new();
    // Pending orders of lists and their working orders; pending orders placed since.
    let mut lists: HashMap<OrderId, OrderId> = HashMap::new();
    let mut activated: std::collections::HashSet<OrderId> = Default::default();
    for op in ops {
        let mut events = Vec::new();
        match op {
            Op::New {
                account,
                instrument,
                buy,
                market,
                tif,
                ticks,
                qty,
                post_only,
                stp,
                stop,
                stop_ticks,
                display,
            } => {
                let inst = instruments[instrument];
                let side = if buy { Side::Buy } else { Side::Sell };
                let mut o = r.order(
                    AccountId(account),
                    inst,
                    side,
                    base[instrument] + 5 * ticks,
                    qty,
                );
                let stop_px = Price(base[instrument] + 5 * stop_ticks);
                o.ord_type = match (market, stop) {
                    (true, 0) => OrdType::Stop { stop_px },
                    (true, 2) => OrdType::TakeProfit { stop_px },
                    (true, _) => OrdType::Market,
                    (false, 1) => OrdType::StopLimit { stop_px },
                    (false, 3) => OrdType::TakeProfitLimit { stop_px },
                    (false, _) => OrdType::Limit,
                };
                // Commands are 1 µs apart: a GTD order expires within a few of them.
                o.tif = [
                    TimeInForce::Gtc,
                    TimeInForce::Ioc,
                    TimeInForce::Fok,
                    TimeInForce::Day,
                    TimeInForce::Gtd {
                        expire_ns: r.now + 500 + 1_000 * (ticks % 4),
                    },
                ][tif as usize];
                o.post_only = post_only;
                o.display_qty = portcullis_types::Qty(display);
                o.stp = [
                    None,
                    Some(StpMode::CancelResting),
                    Some(StpMode::CancelIncoming),
                    Some(StpMode::CancelBoth),
                ][stp as usize];
                events = r.submit(o);
                if let Some(e) = events.first().filter(|e| e.kind == EventKind::New) {
                    accepted.push((e.order_id, o.cl_ord_id, o.account, inst));
                    // A fill-or-kill that works at once fills completely or not at all.
                    let id = e.order_id;
                    let last = events.iter().rfind(|e| e.order_id == id).unwrap();
                    if o.tif == TimeInForce::Fok && o.ord_type.stop_px().is_none() {
                        prop_assert!(
                            last.cum_qty.0 == 0 || last.cum_qty == o.qty,
                            "fill-or-kill partly filled: {:?}",
                            last
                        );
                    }
                }
            }
            Op::Cancel {
                pick,
                by_id,
                other_account,
            } if !accepted.is_empty() => {
                let (id, cl, account, inst) = accepted[pick % accepted.len()];
                let account = if other_account {
                    AccountId((account.0 + 1) % 3)
                } else {
                    account
                };
                let c = if by_id {
                    r.cancel_req(account, inst, Some(id), ClOrdId::EMPTY)
                } else {
                    r.cancel_req(account, inst, None, cl)
                };
                events = r.cmd(Command::Cancel(c));
                if other_account {
                    let rejected = matches!(events[0].kind, EventKind::CancelRejected { .. });
                    prop_assert!(rejected, "another account's cancel: {:?}", events);
                }
            }
            Op::Replace { pick, ticks, qty } if !accepted.is_empty() => {
                let k = pick % accepted.len();
                let (id, cl, account, inst) = accepted[k];
                let which = instruments.iter().position(|&i| i == inst).unwrap();
                let mut rep = r.replace_req(account, inst, cl, base[which] + 5 * ticks, qty);
                // Now and then a new expiry, or one already past (refused), or GTC again.
                rep.tif = match qty {
                    5 => Some(TimeInForce::Gtd {
                        expire_ns: r.now + 1_000 * (ticks - 1),
                    }),
                    6 => Some(TimeInForce::Gtc),
                    _ => None,
                };
                events = r.cmd(Command::Replace(rep));
                if events.first().map(|e| e.kind) == Some(EventKind::Replaced) {
                    accepted[k] = (id, rep.cl_ord_id, account, inst);
                }
            }
            Op::MassCancel {
                account,
                instrument,
            } => {
                let m = MassCancel {
                    session: SessionId(account),
                    account: AccountId(account),
                    instrument: instrument.map(|i| instruments[i]),
                    cl_ord_id: r.next_cl(),
                };
                events = r.cmd(Command::MassCancel(m));
                let done = events.last().unwrap();
                prop_assert_eq!(
                    done.kind,
                    EventKind::MassCancelDone {
                        canceled: (events.len() - 1) as u32
                    }
                );
            }
            Op::SessionClosed { account } => {
                events = r.cmd(Command::SessionClosed(SessionId(account)));
            }
            Op::Kill { account } => {
                r.now += 1_000;
                let now = r.now;
                r.core
                    .kill(account.map(AccountId), now, &mut |e| events.push(e))
                    .unwrap();
                let a = AccountId(account.unwrap_or(0));
                prop_assert_eq!(r.core.matcher().account_orders(a), 0);
                let o = r.order(a, instruments[0], Side::Buy, base[0], 1);
                let refused = r.submit(o);
                prop_assert_eq!(
                    refused[0].kind,
                    EventKind::Rejected(portcullis_types::RejectReason::KillSwitch)
                );
                events.extend(refused);
                r.core.release_kill(account.map(AccountId)).unwrap();
            }
            Op::Wait { ns } => {
                r.now += ns;
                let now = r.now;
                r.core.expire_due(now, &mut |e| events.push(e));
                for e in &events {
                    prop_assert_eq!(e.kind, EventKind::Expired);
                    prop_assert!(e.tif.expire_ns().is_some_and(|t| t <= now), "{:?}", e);
                }
                prop_assert!(r.core.next_expiry().map_or(true, |t| t > now));
            }
            Op::Oto {
                account,
                instrument,
                buy,
                ticks,
                qty,
                ioc,
                pending_ticks,
                pending_market,
            } => {
                let inst = instruments[instrument];
                let side = if buy { Side::Buy } else { Side::Sell };
                let a = AccountId(account);
                let mut p = r.order(
                    a,
                    inst,
                    side.opposite(),
                    base[instrument] + 5 * pending_ticks,
                    qty,
                );
                p.pending = true;
                if pending_market {
                    p.ord_type = OrdType::Market;
                    p.tif = TimeInForce::Ioc;
                }
                events = r.submit(p);
                if let Some(e) = events.first().filter(|e| e.kind == EventKind::New) {
                    prop_assert!(e.details.pending, "{:?}", e);
                    let pid = e.order_id;
                    accepted.push((pid, p.cl_ord_id, a, inst));
                    let mut w = r.order(a, inst, side, base[instrument] + 5 * ticks, qty);
                    w.triggers = Some(pid);
                    if ioc {
                        w.tif = TimeInForce::Ioc;
                    }
                    for e in &events {
                        ledger.apply(e)?;
                    }
                    events = r.submit(w);
                    match events.first() {
                        Some(e) if e.kind == EventKind::New => {
                            lists.insert(pid, e.order_id);
                            accepted.push((e.order_id, w.cl_ord_id, a, inst));
                        }
                        // Refused (risk): the pending order goes with it.
                        _ => prop_assert!(
                            events
                                .iter()
                                .any(|e| e.order_id == pid && e.kind == EventKind::Canceled),
                            "{:?}",
                            events
                        ),
                    }
                }
            }
            Op::Cancel { .. } | Op::Replace { .. } => {}
        }
        for e in &events {
            if e.kind == EventKind::Activated {
                prop_assert!(lists.contains_key(&e.order_id), "{:?}", e);
                activated.insert(e.order_id);
            }
            // A pending order never trades before it is placed.
            if matches!(e.kind, EventKind::Fill | EventKind::PartialFill)
                && lists.contains_key(&e.order_id)
            {
                prop_assert!(activated.contains(&e.order_id), "{:?}", e);
            }
        }
        ledger.swing.clear();
        for e in &events {
            ledger.apply(e)?;
        }
        check_books(&r, &ledger, &instruments)?;
        // A pending order waits only while its working order works (not placed: it neither
        // filled nor ended).
        for acct in [ALICE, BOB, CAROL] {
            for o in r.core.matcher().working_orders(acct) {
                if o.details.pending {
                    let w = lists.get(&o.order_id);
                    prop_assert!(
                        w.is_some_and(|w| ledger.live.contains_key(w)),
                        "pending {:?} without a working order",
                        o
                    );
                }
            }
        }
    }
    // Every trade: two reports, opposite sides, equal price and quantity, two accounts (never
    // a self-trade), one instrument.
    let (mut bought, mut sold) = (0i64, 0i64);
    for (trade, fills) in &ledger.trades {
        prop_assert_eq!(fills.len(), 2, "trade {}", trade);
        let (a, b) = (&fills[0], &fills[1]);
        prop_assert_eq!(a.side, b.side.opposite());
        prop_assert_eq!((a.last_px, a.last_qty), (b.last_px, b.last_qty));
        prop_assert_eq!(a.instrument, b.instrument);
        prop_assert_ne!(a.account, b.account);
        for f in fills {
            match f.side {
                Side::Buy => bought += f.last_qty.0,
                Side::Sell => sold += f.last_qty.0,
            }
        }
    }
    prop_assert_eq!(bought, sold);
    // Positions net to zero per instrument.
    for i in instruments {
        let net: i64 = [ALICE, BOB, CAROL]
            .iter()
            .map(|&a| r.core.risk().position(a, i).0)
            .sum();
        prop_assert_eq!(net, 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_keep_books_reports_and_risk_consistent(
        ops in prop::collection::vec(op(), 1..250)
    ) {
        run(ops)?;
    }
}
