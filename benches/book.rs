//! Order book and matching on a book with 10 000 resting orders (issue 4).
//!
//! The book: one perpetual, 5 000 bids and 5 000 asks of one account, 25 orders on each of 200
//! price levels per side. Every operation below leaves the book as it found it: what it adds
//! is removed outside the timing, in chunks of 64 operations, so the book stays at 10 000 to
//! 10 064 orders.
//!
//! `book/*` is the matching engine alone ([`Matcher`], with `()` risk feedback); the orders
//! enter as `RiskChecked` values made by a real `RiskEngine` outside the timing:
//! - `book/add`: a sell that does not cross, appended to one of the 200 existing ask levels
//!   (binary search for the level, link at the tail, index by OrderID and ClOrdID, the `New`
//!   report).
//! - `book/cancel`: cancel of such an order by handle (unlink, free the slot, drop it from
//!   both indexes, the `Canceled` report).
//! - `book/match_level_1`: an IOC buy that takes the best level, which holds one order (one
//!   trade, reports for both sides, the level removed). The chunk's levels are placed just
//!   below the best ask, one per buy.
//! - `book/match_level_25`: the same against a level of 25 orders (25 trades, 50 fill
//!   reports), the size of the book's own levels.
//!
//! `core/*` is the same through `Core::process` — risk checks, lookup, book and the risk
//! feedback — i.e. what the core thread spends per command: `core/add`, `core/cancel`
//! (by ClOrdID), `core/match_level_1`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_engine::instruments::ConfigDecimal;
use portcullis_engine::{
    Core, EngineConfig, InstrumentConfig, Instruments, Matcher, MatcherConfig, OrderHandle,
};
use portcullis_risk::{Decimal, RiskConfig, RiskEngine};
use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, Command, Event, InstrumentId, MassCancel, NewOrder, OrdType,
    Price, Qty, SessionId, Side, StpMode, TimeInForce,
};

const CHUNK: u64 = 64;
const BOB: AccountId = AccountId(1);
const CAROL: AccountId = AccountId(2);
const ALICE: AccountId = AccountId(0);
/// Asks at 1 020 000 + 5 i, bids at 990 000 − 5 i (price units of 0.1), i < 200.
const ASK0: i64 = 1_020_000;
const BID0: i64 = 990_000;

fn risk_config() -> RiskConfig {
    let mut r = RiskConfig::default();
    let d = &mut r.defaults;
    d.max_notional = Decimal::from_int(i64::MAX);
    d.credit_limit = Decimal::from_int(i64::MAX);
    d.max_position_per_instrument = Decimal::from_int(i64::MAX);
    d.max_position_per_underlying = Decimal::from_int(i64::MAX);
    d.price_band_pct = Decimal::from_int(100_000);
    d.max_open_orders = u32::MAX;
    d.max_open_orders_per_instrument = u32::MAX;
    d.order_rate_per_sec = u32::MAX;
    d.order_burst = u32::MAX;
    d.stp_mode = StpMode::CancelIncoming;
    r.session_rate_per_sec = u32::MAX;
    r.session_burst = u32::MAX;
    r.max_sessions = 8;
    r
}

fn instruments() -> Instruments {
    let perp = InstrumentConfig {
        symbol: "BTC-PERP".into(),
        price_scale: 1,
        qty_scale: 0,
        tick: ConfigDecimal::from("0.5"),
        lot: ConfigDecimal::from("1"),
        min_qty: ConfigDecimal::from("1"),
        max_qty: ConfigDecimal::from("1000000"),
        multiplier: 1,
        status: Default::default(),
    };
    Instruments::new(&[perp], &[], 0).unwrap()
}

const ACCOUNTS: [&str; 3] = ["ALICE", "BOB", "CAROL"];
const PERP: InstrumentId = InstrumentId(0);

/// Unique ClOrdIDs, formatted on the stack as the socket task would have them.
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> ClOrdId {
        self.0 += 1;
        let mut buf = [0u8; 24];
        let mut i = buf.len();
        let mut v = self.0;
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        ClOrdId::new(&buf[i..]).unwrap()
    }
}

fn order(ids: &mut Ids, account: AccountId, side: Side, price: i64, qty: i64) -> NewOrder {
    NewOrder {
        session: SessionId(account.0),
        account,
        instrument: PERP,
        cl_ord_id: ids.next(),
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

/// The 10 000 resting orders of BOB.
fn depth() -> impl Iterator<Item = (Side, i64)> {
    (0..5_000i64).flat_map(|i| {
        [
            (Side::Buy, BID0 - 5 * (i % 200)),
            (Side::Sell, ASK0 + 5 * (i % 200)),
        ]
    })
}

struct BookBench {
    risk: RiskEngine,
    m: Matcher,
    ids: Ids,
    now: i64,
}

impl BookBench {
    fn new() -> Self {
        let inst = instruments();
        let rules: Vec<_> = inst.iter().map(|i| *i.rules()).collect();
        let mut risk = RiskEngine::new(&risk_config(), &ACCOUNTS, &rules).unwrap();
        let mut m = Matcher::new(MatcherConfig {
            max_resting_orders: 1 << 16,
            accounts: 3,
            sessions: 8,
            ..MatcherConfig::default()
        });
        m.add_book(PERP);
        let mut ids = Ids(0);
        for (side, price) in depth() {
            let t = risk
                .check_new(&order(&mut ids, BOB, side, price, 1), 0)
                .unwrap();
            m.submit(t, 0, &mut (), &mut |_| {});
        }
        assert_eq!(m.resting_orders(), 10_000);
        Self {
            risk,
            m,
            ids,
            now: 0,
        }
    }

    /// A checked order (outside the timing). The risk engine's day is reset now and then so
    /// its ClOrdID table never fills.
    fn checked(&mut self, o: NewOrder) -> portcullis_risk::RiskChecked<NewOrder> {
        if self.risk.cl_ord_ids_today() > 1 << 19 {
            self.risk.reset_trading_day();
        }
        self.now += 1_000;
        self.risk.check_new(&o, self.now).unwrap()
    }

    /// Removes everything CAROL added (outside the timing).
    fn clean(&mut self) {
        self.m
            .cancel_account(CAROL, None, self.now, &mut (), &mut |_| {});
        debug_assert_eq!(self.m.resting_orders(), 10_000);
    }
}

/// Times `op` over chunks of `CHUNK` prepared inputs; `prepare` and `clean` run untimed.
fn chunked<S, T>(
    iters: u64,
    state: &mut S,
    mut prepare: impl FnMut(&mut S, u64) -> T,
    mut op: impl FnMut(&mut S, T),
    mut clean: impl FnMut(&mut S),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    let mut inputs = Vec::with_capacity(CHUNK as usize);
    let mut k = 0u64;
    while left > 0 {
        let n = left.min(CHUNK);
        inputs.clear();
        for _ in 0..n {
            inputs.push(prepare(state, k));
            k += 1;
        }
        let start = Instant::now();
        for input in inputs.drain(..) {
            op(state, input);
        }
        total += start.elapsed();
        clean(state);
        left -= n;
    }
    total
}

fn bench_book(c: &mut Criterion) {
    let mut g = c.benchmark_group("book");
    let mut b = BookBench::new();
    let mut events = 0u64;

    g.bench_function("add", |bench| {
        bench.iter_custom(|iters| {
            chunked(
                iters,
                &mut b,
                |b, k| {
                    let o = order(
                        &mut b.ids,
                        CAROL,
                        Side::Sell,
                        ASK0 + 5 * (k as i64 % 200),
                        1,
                    );
                    b.checked(o)
                },
                |b, t| {
                    let now = b.now;
                    b.m.submit(t, now, &mut (), &mut |e: Event| {
                        events += black_box(e.exec_id) & 1
                    });
                },
                BookBench::clean,
            )
        })
    });

    // A depth listing (the core thread's, for `depth` and FIX market data): the best 100
    // levels a side, and the whole book (200 levels a side, all 10,000 orders walked).
    for (name, levels) in [("depth_100_levels", 100), ("depth_whole_book", 5_000)] {
        g.bench_function(name, |bench| {
            bench.iter(|| black_box(b.m.depth(PERP, levels, portcullis_engine::MAX_DEPTH_ORDERS)))
        });
    }

    g.bench_function("cancel", |bench| {
        bench.iter_custom(|iters| {
            chunked(
                iters,
                &mut b,
                |b, k| {
                    let o = order(
                        &mut b.ids,
                        CAROL,
                        Side::Sell,
                        ASK0 + 5 * (k as i64 % 200),
                        1,
                    );
                    let t = b.checked(o);
                    b.m.submit(t, b.now, &mut (), &mut |_| {});
                    let h: OrderHandle =
                        b.m.find(CAROL, Some(PERP), SessionId(2), None, &o.cl_ord_id)
                            .unwrap();
                    let c = CancelOrder {
                        session: SessionId(2),
                        account: CAROL,
                        instrument: PERP,
                        cl_ord_id: b.ids.next(),
                        order_id: None,
                        orig_cl_ord_id: o.cl_ord_id,
                        received_ns: 0,
                    };
                    (h, b.risk.check_cancel(&c, b.now).unwrap())
                },
                |b, (h, t)| {
                    let now = b.now;
                    b.m.cancel(h, t, now, &mut (), &mut |e: Event| {
                        events += black_box(e.exec_id) & 1
                    })
                    .unwrap();
                },
                BookBench::clean,
            )
        })
    });

    for level in [1i64, 25] {
        g.bench_function(format!("match_level_{level}"), |bench| {
            bench.iter_custom(|iters| {
                chunked(
                    iters,
                    &mut b,
                    |b, k| {
                        // A level of `level` orders below the best ask (one per input of the
                        // chunk, so each buy takes exactly one whole level: the best), then
                        // the buy.
                        let px = ASK0 - 5 * (1 + (k % CHUNK) as i64);
                        for _ in 0..level {
                            let o = order(&mut b.ids, CAROL, Side::Sell, px, 1);
                            let t = b.checked(o);
                            b.m.submit(t, b.now, &mut (), &mut |_| {});
                        }
                        let mut o = order(&mut b.ids, ALICE, Side::Buy, ASK0 - 5, level);
                        o.tif = TimeInForce::Ioc;
                        b.checked(o)
                    },
                    |b, t| {
                        let now = b.now;
                        b.m.submit(t, now, &mut (), &mut |e: Event| {
                            events += black_box(e.exec_id) & 1
                        });
                    },
                    BookBench::clean,
                )
            })
        });
    }
    g.finish();
    assert_eq!(b.m.resting_orders(), 10_000);
    assert_eq!(b.m.book(PERP).unwrap().best_ask(), Some(Price(ASK0)));
    black_box(events);
}

struct CoreBench {
    core: Core,
    ids: Ids,
    now: i64,
}

impl CoreBench {
    fn new() -> Self {
        let mut core = Core::new(
            &EngineConfig {
                max_resting_orders: 1 << 16,
                ..EngineConfig::default()
            },
            &risk_config(),
            &ACCOUNTS,
            instruments(),
        )
        .unwrap();
        let mut ids = Ids(0);
        for (side, price) in depth() {
            core.process(
                Command::New(order(&mut ids, BOB, side, price, 1)),
                0,
                &mut |_| {},
            );
        }
        assert_eq!(core.matcher().resting_orders(), 10_000);
        Self { core, ids, now: 0 }
    }

    fn tick(&mut self) -> i64 {
        if self.core.risk().cl_ord_ids_today() > 1 << 19 {
            self.core.risk_mut().reset_trading_day();
        }
        self.now += 1_000;
        self.now
    }

    fn clean(&mut self) {
        let m = MassCancel {
            session: SessionId(2),
            account: CAROL,
            instrument: None,
            cl_ord_id: self.ids.next(),
        };
        self.core
            .process(Command::MassCancel(m), self.now, &mut |_| {});
    }
}

fn bench_core(c: &mut Criterion) {
    let mut g = c.benchmark_group("core");
    let mut b = CoreBench::new();
    let mut events = 0u64;

    g.bench_function("add", |bench| {
        bench.iter_custom(|iters| {
            chunked(
                iters,
                &mut b,
                |b, k| {
                    let now = b.tick();
                    let o = order(
                        &mut b.ids,
                        CAROL,
                        Side::Sell,
                        ASK0 + 5 * (k as i64 % 200),
                        1,
                    );
                    (Command::New(o), now)
                },
                |b, (cmd, now)| {
                    b.core
                        .process(cmd, now, &mut |e: Event| events += black_box(e.exec_id) & 1)
                },
                CoreBench::clean,
            )
        })
    });

    g.bench_function("cancel", |bench| {
        bench.iter_custom(|iters| {
            chunked(
                iters,
                &mut b,
                |b, k| {
                    let now = b.tick();
                    let o = order(
                        &mut b.ids,
                        CAROL,
                        Side::Sell,
                        ASK0 + 5 * (k as i64 % 200),
                        1,
                    );
                    b.core.process(Command::New(o), now, &mut |_| {});
                    let c = CancelOrder {
                        session: SessionId(2),
                        account: CAROL,
                        instrument: PERP,
                        cl_ord_id: b.ids.next(),
                        order_id: None,
                        orig_cl_ord_id: o.cl_ord_id,
                        received_ns: 0,
                    };
                    (Command::Cancel(c), b.tick())
                },
                |b, (cmd, now)| {
                    b.core
                        .process(cmd, now, &mut |e: Event| events += black_box(e.exec_id) & 1)
                },
                CoreBench::clean,
            )
        })
    });

    g.bench_function("match_level_1", |bench| {
        bench.iter_custom(|iters| {
            chunked(
                iters,
                &mut b,
                |b, k| {
                    let px = ASK0 - 5 * (1 + (k % CHUNK) as i64);
                    let now = b.tick();
                    let o = order(&mut b.ids, CAROL, Side::Sell, px, 1);
                    b.core.process(Command::New(o), now, &mut |_| {});
                    let mut o = order(&mut b.ids, ALICE, Side::Buy, ASK0 - 5, 1);
                    o.tif = TimeInForce::Ioc;
                    (Command::New(o), b.tick())
                },
                |b, (cmd, now)| {
                    b.core
                        .process(cmd, now, &mut |e: Event| events += black_box(e.exec_id) & 1)
                },
                CoreBench::clean,
            )
        })
    });
    g.finish();
    assert_eq!(b.core.matcher().resting_orders(), 10_000);
    assert_eq!(b.core.risk().accounting_anomalies(), 0);
    black_box(events);
}

criterion_group!(benches, bench_book, bench_core);
criterion_main!(benches);
