//! Pre-trade risk checks on the core thread. Target (issue 4): one order through all risk
//! checks ≤ 100 ns median.
//!
//! - `check_new+close/limit`: a limit order that passes every check of `RiskEngine::check_new`
//!   (kill switches, session and account token buckets, instrument status, tick, lot, min/max
//!   quantity, notional, price band around a reference price, open orders, credit, position per
//!   instrument and per underlying, duplicate ClOrdID with its recording), then
//!   `on_order_closed`, which releases its reservation so the state stays steady.
//!
//!   Every order has a ClOrdID the session has not used: the ids come from a pool of 4096
//!   built beforehand (the socket task builds them, not the core thread), and after each
//!   round of the pool the session slot is released (`session_closed`, which makes its ids
//!   new again). The ClOrdID set is day-sized (capacity 2^20: a 16 MiB table, which no cache
//!   holds, behind a 1.25 MiB filter) and is cleared every 2^19 orders outside the timing, so
//!   it runs between 0 and 50 % of its capacity.
//! - `check_new+close/market`: the same for a market order (valued at the top of the band).
//! - `check_new+close/limit/small_id_set`: the same with a 4096-id ClOrdID set that stays in
//!   the L1/L2 cache, to show what the day-sized one costs.
//! - `check_cancel`: a cancel (account and throttles only).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_risk::{AccountLimits, Decimal, RiskConfig, RiskEngine, WorkingOrder};
use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, InstrumentId, InstrumentKind, InstrumentRules,
    InstrumentStatus, NewOrder, OrdType, Price, Qty, SessionId, Side, StpMode, TimeInForce,
    UnderlyingId,
};

/// Prebuilt ClOrdIDs, used round-robin.
const POOL: usize = 4096;

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

/// Buy 2.500 at 60100.00 (reference 60000.00) for account 42 on session 3.
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
        display_qty: Qty(0),
        trailing: None,
        pending: false,
        triggers: None,
        oco_with: None,
    }
}

fn bench_new(c: &mut Criterion, name: &str, ord_type: OrdType, cl_ord_ids: u32) {
    let ids: Vec<ClOrdId> = (0..POOL)
        .map(|i| ClOrdId::new(format!("ORD-{i:012}").as_bytes()).unwrap())
        .collect();
    // Clear the ClOrdID set when it is half full (outside the timing).
    let day = u64::from(cl_ord_ids) / 2;
    let mut risk = engine(cl_ord_ids);
    let template = order(ord_type);
    let mut seq: u64 = 0;
    let mut now: i64 = 1_700_000_000_000_000_000;
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(day - seq % day);
                let start = Instant::now();
                for _ in 0..n {
                    let i = (seq % POOL as u64) as usize;
                    if i == 0 {
                        risk.session_closed(template.session);
                    }
                    seq += 1;
                    now += 1_000;
                    let o = NewOrder {
                        cl_ord_id: ids[i],
                        ..template
                    };
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
    bench_new(c, "check_new+close/limit", OrdType::Limit, 1 << 20);
    bench_new(c, "check_new+close/market", OrdType::Market, 1 << 20);
    bench_new(
        c,
        "check_new+close/limit/small_id_set",
        OrdType::Limit,
        1 << 13,
    );

    let mut risk = engine(1 << 20);
    let mut now: i64 = 1_700_000_000_000_000_000;
    let cancel = CancelOrder {
        session: SessionId(3),
        account: AccountId(42),
        instrument: InstrumentId(7),
        cl_ord_id: ClOrdId::new(b"CXL-1").unwrap(),
        order_id: None,
        orig_cl_ord_id: ClOrdId::new(b"ORD-1").unwrap(),
        received_ns: 0,
    };
    c.bench_function("check_cancel", |b| {
        b.iter(|| {
            now += 1_000;
            risk.check_cancel(black_box(&cancel), now).is_ok()
        })
    });
}

criterion_group!(benches, risk_check);
criterion_main!(benches);
