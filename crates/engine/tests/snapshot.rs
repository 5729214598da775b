//! Snapshots: a core restored from a snapshot continues exactly as the core it was taken from
//! — the same reports for the same commands (ids, fills, priority, throttles, duplicate
//! ClOrdIDs), the same state — and a damaged snapshot is refused, never a panic.

mod common;

use common::*;
use portcullis_engine::{Core, EngineConfig, InstrumentsConfig};
use portcullis_risk::RiskConfig;
use portcullis_types::{
    AccountId, ClOrdId, Command, Event, EventKind, InstrumentId, MassCancel, OrdType, OrderId,
    SessionId, Side, TimeInForce, VenueReportKind,
};
use proptest::prelude::*;

fn engine() -> EngineConfig {
    EngineConfig {
        max_resting_orders: 512,
        levels_per_side: 4,
        cancel_on_disconnect: true,
    }
}

/// Open limits, but throttles that bite: 50 orders/s per session with a burst of 20.
fn risk() -> RiskConfig {
    let mut r = open_risk();
    r.session_rate_per_sec = 50;
    r.session_burst = 20;
    r.max_cl_ord_ids_per_day = 1 << 12;
    r
}

fn restore(snapshot: &[u8]) -> Result<Core, portcullis_types::snapshot::SnapshotError> {
    let cfg: InstrumentsConfig = toml::from_str(CONFIG).unwrap();
    Core::restore_snapshot(
        &engine(),
        &risk(),
        &["ALICE", "BOB", "CAROL"],
        &cfg,
        NOW_NS / 1_000_000,
        snapshot,
    )
}

fn state(core: &Core) -> Vec<u8> {
    let mut v = Vec::new();
    core.write_state(&mut v, 3);
    v
}

#[derive(Debug, Clone)]
enum Op {
    New {
        account: u32,
        option: bool,
        buy: bool,
        /// 0: market, 1: stop, 2: stop-limit, 3: take-profit, 4: take-profit limit (trigger
        /// at the mirror of `ticks`), 11: trailing stop of 10 bips (activated there if
        /// `ticks` is odd), 12: trailing take-profit limit, else limit; 2, 4, 5 and 6 are
        /// icebergs showing 2 (1 of 2).
        kind: u8,
        tif: u8,
        ticks: i64,
        qty: i64,
        reuse_cl: bool,
        /// The second order of a one-cancels-the-other pair with the account's last accepted
        /// order (refused, with it, unless both can wait untouched).
        pair: bool,
        /// The pending order of a one-triggers-the-other list (waits for its working order).
        pending: bool,
        /// The working order (a limit) of a one-triggers-the-other list triggering the
        /// account's last pending order (refused, with it, if that is no longer unlinked).
        triggers: bool,
    },
    Cancel(usize),
    Replace(usize, i64, i64),
    MassCancel(u32),
    SessionClosed(u32),
    Wait(i64),
    /// A venue's report (kind 0..8 of `VenueReportKind`, in declaration order) about an
    /// accepted order: only a routed one's changes anything; kind 8: the venue's sync.
    Venue {
        pick: usize,
        kind: u8,
        ticks: i64,
        cum: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..3u32, any::<bool>(), any::<bool>(), 0..13u8, 0..5u8,
               0..8i64, 1..5i64, prop::bool::weighted(0.05), prop::bool::weighted(0.2),
               prop::bool::weighted(0.2), prop::bool::weighted(0.3))
            .prop_map(|(account, option, buy, kind, tif, ticks, qty, reuse_cl, pair, pending,
                        triggers)| Op::New {
                account, option, buy, kind, tif, ticks, qty, reuse_cl, pair, pending, triggers
            }),
        3 => any::<usize>().prop_map(Op::Cancel),
        2 => (any::<usize>(), 0..8i64, 1..6i64).prop_map(|(p, t, q)| Op::Replace(p, t, q)),
        1 => (0..3u32).prop_map(Op::MassCancel),
        1 => (0..3u32).prop_map(Op::SessionClosed),
        2 => (0..200_000_000i64).prop_map(Op::Wait),
        3 => (any::<usize>(), 0..9u8, 0..8i64, 0..6i64)
            .prop_map(|(pick, kind, ticks, cum)| Op::Venue { pick, kind, ticks, cum }),
    ]
}

/// Turns ops into commands against a fixed instrument pair; order ids are looked up in the
/// reports seen so far, so both cores get the very same commands.
struct Driver {
    now: i64,
    cl: u64,
    accepted: Vec<(OrderId, ClOrdId, AccountId, InstrumentId)>,
    /// The pending orders accepted, by account.
    pending: Vec<(AccountId, OrderId, InstrumentId)>,
}

impl Driver {
    fn command(&mut self, op: &Op, instruments: [InstrumentId; 2]) -> Option<Command> {
        let base = [999_975i64, 4_975];
        self.cl += 1;
        let cl = cl_ord_id(self.cl);
        match *op {
            Op::New {
                account,
                option,
                buy,
                kind,
                tif,
                ticks,
                qty,
                reuse_cl,
                pair,
                pending,
                triggers,
            } => {
                let last_of_account = self
                    .accepted
                    .iter()
                    .rev()
                    .find(|(_, _, a, _)| a.0 == account)
                    .map(|(id, ..)| *id);
                let last_pending = self
                    .pending
                    .iter()
                    .rev()
                    .find(|(a, ..)| a.0 == account)
                    .map(|&(_, id, i)| (id, i))
                    .filter(|_| triggers);
                let k = last_pending.map_or(usize::from(option), |(_, i)| {
                    usize::from(i != instruments[0])
                });
                let cl = match self.accepted.last() {
                    Some((_, c, a, _)) if reuse_cl && a.0 == account => *c,
                    _ => cl,
                };
                Some(Command::New(portcullis_types::NewOrder {
                    session: SessionId(account),
                    account: AccountId(account),
                    instrument: instruments[k],
                    cl_ord_id: cl,
                    side: if buy { Side::Buy } else { Side::Sell },
                    ord_type: if last_pending.is_some() {
                        OrdType::Limit
                    } else {
                        let stop_px = portcullis_types::Price(base[k] + 5 * (7 - ticks));
                        match kind {
                            0 => OrdType::Market,
                            1 => OrdType::Stop { stop_px },
                            2 => OrdType::StopLimit { stop_px },
                            3 => OrdType::TakeProfit { stop_px },
                            4 | 12 => OrdType::TakeProfitLimit { stop_px },
                            11 => OrdType::Stop {
                                stop_px: if ticks % 2 == 1 {
                                    stop_px
                                } else {
                                    portcullis_types::Price(0)
                                },
                            },
                            _ => OrdType::Limit,
                        }
                    },
                    tif: [
                        TimeInForce::Gtc,
                        TimeInForce::Ioc,
                        TimeInForce::Fok,
                        TimeInForce::Day,
                        TimeInForce::Gtd {
                            expire_ns: self.now + 20_000_000 * (ticks + 1),
                        },
                    ][tif as usize],
                    price: portcullis_types::Price(base[k] + 5 * ticks),
                    qty: portcullis_types::Qty(qty),
                    // Limits of kind 9 and 10: post-only (a pair's limit must be).
                    post_only: matches!(kind, 9 | 10),
                    stp: None,
                    received_ns: self.now,
                    display_qty: portcullis_types::Qty(if matches!(kind, 2 | 4 | 5 | 6) {
                        (qty - 1).min(2)
                    } else {
                        0
                    }),
                    trailing: if kind >= 11 && last_pending.is_none() {
                        portcullis_types::TrailingDelta::new(10)
                    } else {
                        None
                    },
                    oco_with: last_of_account.filter(|_| pair && last_pending.is_none()),
                    pending,
                    triggers: last_pending.map(|(id, _)| id),
                }))
            }
            Op::Cancel(pick) if !self.accepted.is_empty() => {
                let (id, _, account, instrument) = self.accepted[pick % self.accepted.len()];
                Some(Command::Cancel(portcullis_types::CancelOrder {
                    session: SessionId(account.0),
                    account,
                    instrument,
                    cl_ord_id: cl,
                    order_id: Some(id),
                    orig_cl_ord_id: ClOrdId::EMPTY,
                    received_ns: self.now,
                }))
            }
            Op::Replace(pick, ticks, qty) if !self.accepted.is_empty() => {
                let k = pick % self.accepted.len();
                let (_, orig, account, instrument) = self.accepted[k];
                let which = usize::from(instrument != instruments[0]);
                self.accepted[k].1 = cl;
                Some(Command::Replace(portcullis_types::ReplaceOrder {
                    session: SessionId(account.0),
                    account,
                    instrument,
                    cl_ord_id: cl,
                    order_id: None,
                    orig_cl_ord_id: orig,
                    price: portcullis_types::Price(base[which] + 5 * ticks),
                    qty: portcullis_types::Qty(qty),
                    received_ns: self.now,
                    // Now and then a new expiry (or GTC again, for the GTD orders).
                    tif: match qty {
                        4 => Some(TimeInForce::Gtd {
                            expire_ns: self.now + 30_000_000 * ticks,
                        }),
                        5 => Some(TimeInForce::Gtc),
                        _ => None,
                    },
                }))
            }
            Op::MassCancel(a) => Some(Command::MassCancel(MassCancel {
                session: SessionId(a),
                account: AccountId(a),
                instrument: None,
                cl_ord_id: cl,
            })),
            Op::SessionClosed(a) => Some(Command::SessionClosed(SessionId(a))),
            Op::Venue { kind: 8, .. } => Some(Command::VenueSync(VENUE)),
            Op::Venue {
                pick,
                kind,
                ticks,
                cum,
            } if !self.accepted.is_empty() => {
                let (id, _, _, instrument) = self.accepted[pick % self.accepted.len()];
                let which = usize::from(instrument != instruments[0]);
                Some(Command::Venue(portcullis_types::VenueReport {
                    venue: VENUE,
                    order_id: id,
                    kind: [
                        VenueReportKind::Accepted,
                        VenueReportKind::Fill,
                        VenueReportKind::Canceled,
                        VenueReportKind::Expired,
                        VenueReportKind::Rejected,
                        VenueReportKind::CancelRejected,
                        VenueReportKind::Replaced,
                        VenueReportKind::ReplaceRejected,
                    ][kind as usize],
                    last_px: portcullis_types::Price(base[which] + 5 * ticks),
                    last_qty: portcullis_types::Qty(cum.max(1)),
                    cum_qty: portcullis_types::Qty(cum),
                    received_ns: self.now,
                }))
            }
            Op::Wait(_) | Op::Cancel(_) | Op::Replace(..) | Op::Venue { .. } => None,
        }
    }

    fn seen(&mut self, events: &[Event], cmd: &Command) {
        if let (Command::New(o), Some(e)) = (cmd, events.first()) {
            let routed = e.kind == EventKind::Route(portcullis_types::RouteRequest::New);
            if e.kind == EventKind::New || routed {
                self.accepted
                    .push((e.order_id, o.cl_ord_id, o.account, o.instrument));
                if e.details.pending {
                    self.pending.push((o.account, e.order_id, o.instrument));
                }
            }
        }
    }
}

/// The slot of the venue the option is routed to when a run routes it.
const VENUE: SessionId = SessionId(7);

fn run(ops: Vec<Op>, split: usize, routed: bool) -> Result<(), TestCaseError> {
    let mut live = core_with(engine(), risk());
    let instruments = [
        live.instruments().by_symbol("BTC-PERP").unwrap(),
        live.instruments().by_symbol("BTC-261204-100000-C").unwrap(),
    ];
    let route = routed.then_some(VENUE);
    live.set_route(instruments[1], route);
    live.set_cancel_on_disconnect(SessionId(2), false);
    live.risk_mut()
        .set_reference_price(instruments[0], portcullis_types::Price(1_000_000))
        .unwrap();
    let mut d = Driver {
        now: NOW_NS,
        cl: 0,
        accepted: Vec::new(),
        pending: Vec::new(),
    };
    let split = split % (ops.len() + 1);
    let mut restored: Option<Core> = None;
    for (i, op) in ops.iter().enumerate() {
        if i == split {
            let mut snap = Vec::new();
            live.write_snapshot(&mut snap);
            let mut core = restore(&snap).map_err(|e| TestCaseError::fail(e.to_string()))?;
            core.set_route(instruments[1], route);
            prop_assert_eq!(state(&core), state(&live), "restored state differs");
            restored = Some(core);
        }
        d.now += match op {
            Op::Wait(ns) => *ns,
            _ => 1_000,
        };
        // As the core loop does before each command: due GTD orders expire.
        let mut a = Vec::new();
        live.expire_due(d.now, &mut |e| a.push(e));
        if let Some(core) = restored.as_mut() {
            let mut b = Vec::new();
            core.expire_due(d.now, &mut |e| b.push(e));
            prop_assert_eq!(&a, &b, "expiries differ after a restore at {}", d.now);
        }
        let Some(cmd) = d.command(op, instruments) else {
            continue;
        };
        let mut a = Vec::new();
        live.process(cmd, d.now, &mut |e| a.push(e));
        if let Some(core) = restored.as_mut() {
            let mut b = Vec::new();
            core.process(cmd, d.now, &mut |e| b.push(e));
            prop_assert_eq!(&a, &b, "reports differ after a restore, command {:?}", cmd);
        }
        d.seen(&a, &cmd);
    }
    if let Some(core) = restored {
        prop_assert_eq!(state(&core), state(&live));
        prop_assert_eq!(
            core.risk().cl_ord_ids_today(),
            live.risk().cl_ord_ids_today()
        );
        prop_assert_eq!(core.risk().accounting_anomalies(), 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn a_restored_core_continues_exactly_as_the_live_one(
        ops in prop::collection::vec(op(), 1..200),
        split in any::<usize>(),
    ) {
        run(ops, split, false)?;
    }

    #[test]
    fn with_an_instrument_routed_to_a_venue_a_restored_core_continues_exactly_as_the_live_one(
        ops in prop::collection::vec(op(), 1..200),
        split in any::<usize>(),
    ) {
        run(ops, split, true)?;
    }

    #[test]
    fn a_damaged_snapshot_is_an_error_never_a_panic(
        ops in prop::collection::vec(op(), 1..60),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let mut live = core_with(engine(), risk());
        let mut d = Driver { now: NOW_NS, cl: 0, accepted: Vec::new(), pending: Vec::new() };
        let instruments = [
            live.instruments().by_symbol("BTC-PERP").unwrap(),
            live.instruments().by_symbol("BTC-261204-100000-C").unwrap(),
        ];
        // Routed orders and waiting cancels in the snapshot too.
        live.set_route(instruments[1], Some(VENUE));
        for op in &ops {
            d.now += 1_000;
            if let Some(cmd) = d.command(op, instruments) {
                let mut a = Vec::new();
                live.process(cmd, d.now, &mut |e| a.push(e));
                d.seen(&a, &cmd);
            }
        }
        let mut snap = Vec::new();
        live.write_snapshot(&mut snap);
        let truncated = &snap[..cut % snap.len()];
        prop_assert!(restore(truncated).is_err());
        for (at, x) in flips {
            let i = at % snap.len();
            snap[i] ^= x.max(1);
        }
        // Flipped bytes may still decode to a consistent state; they must never panic.
        let _ = restore(&snap);
    }
}

#[test]
fn a_snapshot_of_other_accounts_is_refused_by_name() {
    let live = core_with(engine(), risk());
    let mut snap = Vec::new();
    live.write_snapshot(&mut snap);
    let cfg: InstrumentsConfig = toml::from_str(CONFIG).unwrap();
    let err = Core::restore_snapshot(
        &engine(),
        &risk(),
        &["ALICE", "BOB", "DAVE"],
        &cfg,
        NOW_NS / 1_000_000,
        &snap,
    )
    .unwrap_err();
    assert!(err.to_string().contains("DAVE"), "{err}");
}
