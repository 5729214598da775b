//! Pre-trade risk checks on the core thread. Target (issue 4): one order through all risk
//! checks ≤ 100 ns median.
//!
//! - `check_new+close/limit`: a limit order that passes every check of `RiskEngine::check_new`
//!   (kill switches, session and account token buckets, instrument status, tick, lot, min/max
//!   quantity, notional, price band around a reference price, open orders, credit, position per
//!   instrument and per underlying, duplicate ClOrdID with insertion), then
//!   `on_order_closed`, which releases its reservation so the state stays steady. Each order
//!   has a fresh ClOrdID (built in the loop, as the socket task would have); the ClOrdID table
//!   is cleared every 2^19 orders outside the timing, so it runs between 0 and 25 % full
//!   (its 2^21 slots, 16 MiB, do not fit in a cache: each insert is a miss, as in production).
//! - `check_new+close/limit/pipelined`: the same, with the next order's ClOrdID slot
//!   prefetched (`RiskEngine::prefetch`) while this one is checked, as the core thread does with
//!   the next command in its queue: the cache miss of the ClOrdID table leaves the critical path.
//! - `check_new+close/market`: the same for a market order (valued at the top of the band).
//! - `check_new+close/limit/hot_ids`: the same with a 4096-id ClOrdID table that stays in
//!   cache, to show what the cache misses of a day-sized table cost.
//! - `check_cancel`: a cancel (account and throttles only).
//! - `cl_ord_id_new`: building the ClOrdID alone, to subtract from the above.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_risk::{AccountLimits, Decimal, RiskConfig, RiskEngine, WorkingOrder};
use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, Command, InstrumentId, InstrumentKind, InstrumentRules,
    InstrumentStatus, NewOrder, OrdType, Price, Qty, SessionId, Side, StpMode, TimeInForce,
    UnderlyingId,
};

fn engine(cl_ord_ids: u32) -> RiskEngine {
    let d = |s: &str| Decimal::parse(s).unwrap();
    let config = RiskConfig {
        defaults: AccountLimits {
            max_notional: d("1000000"),
            price_band_pct: d("10"),
            max_open_orders: 1000,
            max_open_orders_per_instrument: 200,
            credit_limit: d("10000000"),
            max_position_per_instrument: d("1000"),
            max_position_per_underlying: d("10000"),
            // The fake clock advances 1 µs per order: rates high enough never to throttle.
            order_rate_per_sec: 2_000_000_000,
            order_burst: 1_000_000,
            stp_mode: StpMode::CancelIncoming,
        },
        session_rate_per_sec: 2_000_000_000,
        session_burst: 1_000_000,
        max_sessions: 1024,
        max_cl_ord_ids_per_day: cl_ord_ids,
        max_position_slots: 1 << 16,
        ..RiskConfig::default()
    };
    let perp = InstrumentRules {
        id: InstrumentId(7),
        kind: InstrumentKind::Perpetual {
            underlying: UnderlyingId(0),
        },
        price_scale: 2,
        qty_scale: 3,
        tick: Price(50),
        lot: Qty(1),
        min_qty: Qty(1),
        max_qty: Qty(100_000),
        multiplier: 1,
        status: InstrumentStatus::Trading,
    };
    let names: Vec<String> = (0..100).map(|i| format!("ACC{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut risk = RiskEngine::new(&config, &names, &[perp]).unwrap();
    risk.set_reference_price(perp.id, Price(6_000_000)).unwrap();
    risk
}

fn order(ord_type: OrdType) -> NewOrder {
    NewOrder {
        session: SessionId(3),
        account: AccountId(42),
        instrument: InstrumentId(7),
        cl_ord_id: ClOrdId::EMPTY,
        side: Side::Buy,
        ord_type,
        tif: TimeInForce::Gtc,
        price: Price(6_010_000),
        qty: Qty(2_500),
        post_only: false,
        stp: None,
        received_ns: 0,
    }
}

/// A 16-character ClOrdID with `n` in it.
#[inline]
fn cl_ord_id(n: u64) -> ClOrdId {
    let mut b = *b"BENCH-0000000000";
    let mut v = n;
    for i in (6..16).rev() {
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    ClOrdId::new(&b).unwrap()
}

/// One `check_new` + `on_order_closed` series.
struct Case {
    name: &'static str,
    ord_type: OrdType,
    /// `max_cl_ord_ids_per_day`.
    cl_ord_ids: u32,
    /// Prefetch the next order's ClOrdID slot while checking this one, as the core thread does
    /// with the next command in its queue.
    pipelined: bool,
}

fn bench_new(c: &mut Criterion, case: Case) {
    // Clear the ClOrdID table when it is a quarter full (it has 2 slots per id of capacity).
    let day = u64::from(case.cl_ord_ids) / 2;
    let mut risk = engine(case.cl_ord_ids);
    let template = order(case.ord_type);
    let mut seq: u64 = 0;
    let mut now: i64 = 1_700_000_000_000_000_000;
    c.bench_function(case.name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            let mut next = cl_ord_id(seq + 1);
            while left > 0 {
                let n = left.min(day - seq % day);
                let start = Instant::now();
                for _ in 0..n {
                    seq += 1;
                    now += 1_000;
                    let o = NewOrder {
                        cl_ord_id: next,
                        ..template
                    };
                    // One ClOrdID built per order in every case (see `cl_ord_id_new`).
                    next = cl_ord_id(seq + 1);
                    if case.pipelined {
                        risk.prefetch(&Command::New(NewOrder {
                            cl_ord_id: next,
                            ..template
                        }));
                    }
                    let checked = risk.check_new(black_box(&o), now).expect("passes");
                    risk.on_order_closed(&WorkingOrder::from_checked(&checked));
                }
                total += start.elapsed();
                left -= n;
                if seq % day == 0 {
                    risk.reset_trading_day();
                }
            }
            total
        })
    });
    assert_eq!(risk.open_orders(AccountId(42)), 0);
    assert_eq!(risk.accounting_anomalies(), 0);
}

fn risk_check(c: &mut Criterion) {
    let case = |name, ord_type, cl_ord_ids, pipelined| Case {
        name,
        ord_type,
        cl_ord_ids,
        pipelined,
    };
    let day_sized = 1 << 20;
    bench_new(
        c,
        case("check_new+close/limit", OrdType::Limit, day_sized, false),
    );
    bench_new(
        c,
        case(
            "check_new+close/limit/pipelined",
            OrdType::Limit,
            day_sized,
            true,
        ),
    );
    bench_new(
        c,
        case("check_new+close/market", OrdType::Market, day_sized, false),
    );
    bench_new(
        c,
        case(
            "check_new+close/limit/hot_ids",
            OrdType::Limit,
            1 << 12,
            false,
        ),
    );

    let mut risk = engine(1 << 20);
    let mut now: i64 = 1_700_000_000_000_000_000;
    let cancel = CancelOrder {
        session: SessionId(3),
        account: AccountId(42),
        instrument: InstrumentId(7),
        cl_ord_id: cl_ord_id(1),
        order_id: None,
        orig_cl_ord_id: cl_ord_id(0),
        received_ns: 0,
    };
    c.bench_function("check_cancel", |b| {
        b.iter(|| {
            now += 1_000;
            risk.check_cancel(black_box(&cancel), now).is_ok()
        })
    });

    let mut n = 0u64;
    c.bench_function("cl_ord_id_new", |b| {
        b.iter(|| {
            n += 1;
            cl_ord_id(black_box(n))
        })
    });
}

criterion_group!(benches, risk_check);
criterion_main!(benches);
