//! Unit tests of the risk checks, named after the behaviour they pin down. Every limit is
//! tested at its boundary (passes) and one unit beyond it (refused with its exact reason).

// Fixed-point literals put the underscore at the decimal point: `Price(100_50)` is 100.50 at
// two decimals, `Price(2_5000)` is 2.5000 at four.
#![allow(clippy::inconsistent_digit_grouping)]

use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, InstrumentId, InstrumentKind, InstrumentRules,
    InstrumentStatus, NewOrder, OrdType, Price, Qty, RejectReason, ReplaceOrder, SessionId, Side,
    StpMode, TimeInForce, UnderlyingId,
};
use proptest::prelude::*;

use crate::{
    AbuseRule, AccountLimits, ConfigError, Decimal, RiskChecked, RiskConfig, RiskEngine,
    WorkingOrder,
};
use RejectReason::*;

const BTC: UnderlyingId = UnderlyingId(0);
const ETH: UnderlyingId = UnderlyingId(1);
/// BTC perpetual: price 0.01 (tick 0.50), whole contracts, min 2, max 1000, multiplier 1.
const PERP: InstrumentId = InstrumentId(0);
/// BTC future: multiplier 5 (5 BTC per contract).
const FUT: InstrumentId = InstrumentId(1);
/// BTC call: premium at 4 decimals (tick 0.0005), multiplier 100.
const CALL: InstrumentId = InstrumentId(2);
/// ETH spot: quantity at 3 decimals, lot 0.010.
const ETHUSD: InstrumentId = InstrumentId(3);

const ALICE: AccountId = AccountId(0);
const BOB: AccountId = AccountId(1);
const S0: SessionId = SessionId(0);
const S1: SessionId = SessionId(1);

fn instruments() -> Vec<InstrumentRules> {
    let base = InstrumentRules {
        id: PERP,
        kind: InstrumentKind::Perpetual { underlying: BTC },
        price_scale: 2,
        qty_scale: 0,
        tick: Price(50),
        lot: Qty(1),
        min_qty: Qty(2),
        max_qty: Qty(1000),
        multiplier: 1,
        status: InstrumentStatus::Trading,
    };
    vec![
        base,
        InstrumentRules {
            id: FUT,
            kind: InstrumentKind::Future {
                underlying: BTC,
                expiry_ms: 1_798_156_800_000,
            },
            min_qty: Qty(1),
            multiplier: 5,
            ..base
        },
        InstrumentRules {
            id: CALL,
            kind: InstrumentKind::Option {
                underlying: BTC,
                expiry_ms: 1_798_156_800_000,
                strike: Price(100_000_0000),
                call: true,
            },
            price_scale: 4,
            tick: Price(5),
            min_qty: Qty(1),
            multiplier: 100,
            ..base
        },
        InstrumentRules {
            id: ETHUSD,
            kind: InstrumentKind::Spot { underlying: ETH },
            qty_scale: 3,
            tick: Price(1),
            lot: Qty(10),
            min_qty: Qty(10),
            max_qty: Qty(1_000_000),
            ..base
        },
    ]
}

fn dec(s: &str) -> Decimal {
    Decimal::parse(s).unwrap()
}

/// Limits loose enough that only the one under test bites.
fn loose() -> AccountLimits {
    AccountLimits {
        max_notional: dec("1000000000"),
        price_band_pct: dec("10"),
        max_open_orders: 1000,
        max_open_orders_per_instrument: 1000,
        credit_limit: dec("1000000000"),
        max_position_per_instrument: dec("1000000"),
        max_position_per_underlying: dec("1000000"),
        order_rate_per_sec: 1_000_000,
        order_burst: 1_000_000,
        stp_mode: StpMode::CancelIncoming,
    }
}

struct Fx {
    risk: RiskEngine,
    n: u32,
    now: i64,
}

impl Fx {
    fn new(edit: impl FnOnce(&mut RiskConfig)) -> Self {
        let mut c = RiskConfig {
            defaults: loose(),
            session_rate_per_sec: 1_000_000,
            session_burst: 1_000_000,
            disconnect_after_throttled: AbuseRule {
                rejects: 3,
                within_ms: 1000,
            },
            max_sessions: 4,
            max_cl_ord_ids_per_day: 4096,
            max_position_slots: 64,
            ..RiskConfig::default()
        };
        edit(&mut c);
        let risk = RiskEngine::new(&c, &["ALICE", "BOB"], &instruments()).unwrap();
        Self { risk, n: 0, now: 0 }
    }

    fn limits(edit: impl FnOnce(&mut AccountLimits)) -> Self {
        Self::new(|c| edit(&mut c.defaults))
    }

    /// Buy 10 PERP at 100.00 for ALICE on session 0, with a fresh ClOrdID.
    fn order(&mut self) -> NewOrder {
        self.n += 1;
        NewOrder {
            session: S0,
            account: ALICE,
            instrument: PERP,
            cl_ord_id: ClOrdId::new(format!("O{}", self.n).as_bytes()).unwrap(),
            side: Side::Buy,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(100_00),
            qty: Qty(10),
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

    fn check(
        &mut self,
        edit: impl FnOnce(&mut NewOrder),
    ) -> Result<RiskChecked<NewOrder>, RejectReason> {
        let mut o = self.order();
        edit(&mut o);
        self.risk.check_new(&o, self.now)
    }

    fn ok(&mut self, edit: impl FnOnce(&mut NewOrder)) -> WorkingOrder {
        let c = self.check(edit).expect("accepted");
        WorkingOrder::from_checked(&c)
    }

    fn rej(&mut self, edit: impl FnOnce(&mut NewOrder)) -> RejectReason {
        self.check(edit).expect_err("refused")
    }

    fn cancel(&mut self, session: SessionId, account: AccountId) -> Result<(), RejectReason> {
        let c = CancelOrder {
            session,
            account,
            instrument: PERP,
            cl_ord_id: ClOrdId::new(b"C").unwrap(),
            order_id: None,
            orig_cl_ord_id: ClOrdId::new(b"O1").unwrap(),
            received_ns: 0,
        };
        self.risk.check_cancel(&c, self.now).map(|_| ())
    }

    fn replace(&mut self, w: &WorkingOrder, price: i64, qty: i64) -> Result<(), RejectReason> {
        self.replace_as(w.account, w.instrument, w, price, qty)
    }

    /// A replace request of `account` for `instrument`, of the working order `w`.
    fn replace_as(
        &mut self,
        account: AccountId,
        instrument: InstrumentId,
        w: &WorkingOrder,
        price: i64,
        qty: i64,
    ) -> Result<(), RejectReason> {
        self.n += 1;
        let r = ReplaceOrder {
            session: S0,
            account,
            instrument,
            cl_ord_id: ClOrdId::new(format!("R{}", self.n).as_bytes()).unwrap(),
            order_id: None,
            orig_cl_ord_id: ClOrdId::EMPTY,
            price: Price(price),
            qty: Qty(qty),
            received_ns: 0,
            tif: None,
        };
        self.risk.check_replace(&r, w, self.now).map(|_| ())
    }

    fn fill(&mut self, w: &mut WorkingOrder, price: i64, qty: i64) {
        self.risk.on_fill(w, Price(price), Qty(qty));
        w.cum_qty.0 += qty;
    }

    fn assert_balanced(&self) {
        assert_eq!(self.risk.accounting_anomalies(), 0);
    }
}

// ---------------------------------------------------------------------------------------
// Kill switch and order of checks
// ---------------------------------------------------------------------------------------

#[test]
fn global_kill_switch_blocks_new_orders_and_replaces_of_every_account() {
    let mut fx = Fx::new(|_| {});
    let w = fx.ok(|_| {});
    fx.risk.set_kill_switch(None, true).unwrap();
    assert!(fx.risk.kill_switch(None));
    assert_eq!(fx.rej(|_| {}), KillSwitch);
    assert_eq!(fx.rej(|o| o.account = BOB), KillSwitch);
    assert_eq!(fx.replace(&w, 100_00, 8), Err(KillSwitch));
    fx.risk.set_kill_switch(None, false).unwrap();
    fx.ok(|o| o.account = BOB);
}

#[test]
fn account_kill_switch_blocks_only_that_account() {
    let mut fx = Fx::new(|_| {});
    fx.risk.set_kill_switch(Some(ALICE), true).unwrap();
    assert!(fx.risk.kill_switch(Some(ALICE)) && !fx.risk.kill_switch(Some(BOB)));
    assert_eq!(fx.rej(|_| {}), KillSwitch);
    fx.ok(|o| o.account = BOB);
    fx.risk.set_kill_switch(Some(ALICE), false).unwrap();
    fx.ok(|_| {});
    assert_eq!(
        fx.risk.set_kill_switch(Some(AccountId(9)), true),
        Err(ConfigError::UnknownAccount(AccountId(9)))
    );
}

#[test]
fn kill_switch_blocks_new_orders_but_not_cancels() {
    let mut fx = Fx::new(|_| {});
    fx.risk.set_kill_switch(None, true).unwrap();
    fx.risk.set_kill_switch(Some(ALICE), true).unwrap();
    assert_eq!(fx.rej(|_| {}), KillSwitch);
    assert_eq!(fx.cancel(S0, ALICE), Ok(()));
    // Nor does a halted instrument block a cancel.
    fx.risk.set_status(PERP, InstrumentStatus::Halted).unwrap();
    assert_eq!(fx.cancel(S0, ALICE), Ok(()));
}

#[test]
fn cancels_are_throttled_and_need_a_known_account() {
    let mut fx = Fx::new(|c| c.session_burst = 1);
    assert_eq!(fx.cancel(S0, ALICE), Ok(()));
    assert_eq!(fx.cancel(S0, ALICE), Err(Throttled));
    assert_eq!(fx.cancel(S1, AccountId(7)), Err(UnknownAccount));
}

#[test]
fn checks_run_cheapest_first_each_with_its_own_reason() {
    let mut fx = Fx::limits(|l| {
        l.max_notional = dec("1000");
        l.max_open_orders = 1;
        l.credit_limit = dec("1400");
        l.max_position_per_instrument = dec("14");
    });
    // Every later check would also fail: the first in the documented order wins.
    fx.risk.set_kill_switch(Some(ALICE), true).unwrap();
    assert_eq!(fx.rej(|o| o.price = Price(100_01)), KillSwitch);
    assert_eq!(
        fx.rej(|o| {
            o.account = AccountId(5);
            o.price = Price(1);
        }),
        UnknownAccount
    );
    fx.risk.set_kill_switch(Some(ALICE), false).unwrap();
    assert_eq!(
        fx.rej(|o| {
            o.session = SessionId(99);
            o.instrument = InstrumentId(42);
        }),
        ServerBusy
    );
    assert_eq!(
        fx.rej(|o| {
            o.instrument = InstrumentId(42);
            o.price = Price(1);
        }),
        UnknownInstrument
    );
    fx.risk.set_status(FUT, InstrumentStatus::Expired).unwrap();
    assert_eq!(
        fx.rej(|o| {
            o.instrument = FUT;
            o.price = Price(1);
        }),
        InstrumentNotTrading
    );
    assert_eq!(
        fx.rej(|o| {
            o.ord_type = OrdType::Market;
            o.post_only = true;
        }),
        Unsupported
    );
    assert_eq!(
        fx.rej(|o| {
            o.instrument = ETHUSD;
            o.price = Price(0);
            o.qty = Qty(15);
        }),
        BadTick
    );
    assert_eq!(
        fx.rej(|o| {
            o.instrument = ETHUSD;
            o.qty = Qty(5);
        }),
        BadLot
    );
    assert_eq!(fx.rej(|o| o.qty = Qty(1)), QtyTooSmall);
    assert_eq!(
        fx.rej(|o| {
            o.qty = Qty(1001);
            o.price = Price(1000_00);
        }),
        QtyTooLarge
    );
    fx.risk.set_reference_price(PERP, Price(100_00)).unwrap();
    assert_eq!(fx.rej(|o| o.price = Price(200_00)), NotionalTooLarge);
    assert_eq!(
        fx.rej(|o| {
            o.price = Price(50_00);
            o.qty = Qty(2);
        }),
        PriceBand
    );
    let first = fx.check(|o| o.qty = Qty(5)).unwrap(); // 500 open, position 5
    let first_id = first.get().cl_ord_id;
    // One order open (the maximum): too many, though credit (500 + 1000 > 1400) and position
    // (5 + 10 > 14) would fail too.
    assert_eq!(fx.rej(|_| {}), TooManyOpenOrders);
    let raise = |fx: &mut Fx, edit: fn(&mut AccountLimits)| {
        let mut l = *fx.risk.limits(ALICE).unwrap();
        edit(&mut l);
        fx.risk.set_limits(ALICE, &l).unwrap();
    };
    raise(&mut fx, |l| l.max_open_orders = 10);
    assert_eq!(fx.rej(|_| {}), CreditLimit);
    // 500 + 900 = 1400 and 5 + 9 = 14: at both limits.
    let w2 = fx.ok(|o| o.qty = Qty(9));
    fx.risk.on_order_closed(&w2);
    raise(&mut fx, |l| l.max_position_per_instrument = dec("13"));
    // A duplicate id too, but the position comes first.
    assert_eq!(
        fx.rej(|o| {
            o.qty = Qty(9);
            o.cl_ord_id = first_id;
        }),
        PositionLimit
    );
    assert_eq!(
        fx.rej(|o| {
            o.qty = Qty(2);
            o.cl_ord_id = first_id;
        }),
        DuplicateClOrdId
    );
    fx.assert_balanced();
}

// ---------------------------------------------------------------------------------------
// Throttles
// ---------------------------------------------------------------------------------------

#[test]
fn session_throttle_allows_the_burst_then_refills_at_the_rate() {
    let mut fx = Fx::new(|c| {
        c.session_rate_per_sec = 10;
        c.session_burst = 3;
    });
    for _ in 0..3 {
        fx.ok(|_| {});
    }
    assert_eq!(fx.rej(|_| {}), Throttled);
    // Another session has its own bucket.
    fx.ok(|o| o.session = S1);
    // 10/s: one token per 100 ms.
    fx.now = 99_999_999;
    assert_eq!(fx.rej(|_| {}), Throttled);
    fx.now = 100_000_000;
    fx.ok(|_| {});
    assert_eq!(fx.rej(|_| {}), Throttled);
    // A long pause refills up to the burst only.
    fx.now = 3_600_000_000_000;
    for _ in 0..3 {
        fx.ok(|_| {});
    }
    assert_eq!(fx.rej(|_| {}), Throttled);
}

#[test]
fn account_throttle_spans_sessions_and_spends_no_session_token_when_it_refuses() {
    let mut fx = Fx::limits(|l| {
        l.order_rate_per_sec = 1;
        l.order_burst = 2;
    });
    fx.ok(|_| {});
    fx.ok(|o| o.session = S1);
    assert_eq!(fx.rej(|o| o.session = S1), Throttled);
    // BOB has his own bucket.
    fx.ok(|o| o.account = BOB);
    fx.now = 1_000_000_000;
    fx.ok(|o| o.session = S1);
    assert_eq!(fx.rej(|_| {}), Throttled);
}

#[test]
fn sustained_throttle_rejects_flag_the_session_for_disconnection() {
    let mut fx = Fx::new(|c| {
        c.session_rate_per_sec = 1;
        c.session_burst = 1;
        c.disconnect_after_throttled = AbuseRule {
            rejects: 3,
            within_ms: 1000,
        };
    });
    fx.ok(|_| {});
    // Rejects at 0.1 s, 0.2 s and 1.100000001 s: not three within 1000 ms.
    fx.now = 100_000_000;
    assert_eq!(fx.rej(|_| {}), Throttled);
    fx.now = 200_000_000;
    assert_eq!(fx.rej(|_| {}), Throttled);
    fx.now = 1_100_000_001;
    fx.ok(|_| {}); // refilled
    assert_eq!(fx.rej(|_| {}), Throttled);
    assert!(!fx.risk.throttle_abuse(S0));
    // Rejects at 0.2 s, 1.1 s, 1.2 s: three within 1000 ms.
    fx.now = 1_200_000_000;
    assert_eq!(fx.rej(|_| {}), Throttled);
    assert!(fx.risk.throttle_abuse(S0));
    assert!(!fx.risk.throttle_abuse(S1));
    fx.risk.session_closed(S0);
    assert!(!fx.risk.throttle_abuse(S0));
    // The slot starts over with a full bucket.
    fx.ok(|_| {});
}

// ---------------------------------------------------------------------------------------
// Instrument rules
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_halted_and_expired_instruments_are_refused() {
    let mut fx = Fx::new(|_| {});
    assert_eq!(
        fx.rej(|o| o.instrument = InstrumentId(4)),
        UnknownInstrument
    );
    assert_eq!(
        fx.rej(|o| o.instrument = InstrumentId(u32::MAX)),
        UnknownInstrument
    );
    fx.risk.set_status(PERP, InstrumentStatus::Halted).unwrap();
    assert_eq!(fx.rej(|_| {}), InstrumentNotTrading);
    fx.risk.set_status(PERP, InstrumentStatus::Trading).unwrap();
    fx.ok(|_| {});
    fx.risk.set_status(PERP, InstrumentStatus::Expired).unwrap();
    assert_eq!(fx.rej(|_| {}), InstrumentNotTrading);
    assert_eq!(
        fx.risk
            .set_status(InstrumentId(4), InstrumentStatus::Halted),
        Err(ConfigError::UnknownInstrument(InstrumentId(4)))
    );
}

#[test]
fn price_must_be_a_positive_multiple_of_the_tick() {
    let mut fx = Fx::new(|_| {});
    fx.ok(|o| o.price = Price(100_50));
    assert_eq!(fx.rej(|o| o.price = Price(100_51)), BadTick);
    assert_eq!(fx.rej(|o| o.price = Price(100_49)), BadTick);
    assert_eq!(fx.rej(|o| o.price = Price(0)), BadTick);
    assert_eq!(fx.rej(|o| o.price = Price(-100_00)), BadTick);
    // A market order has no price to check (valued at the reference instead).
    fx.risk.set_reference_price(PERP, Price(100_00)).unwrap();
    fx.ok(|o| {
        o.ord_type = OrdType::Market;
        o.price = Price(7);
    });
}

#[test]
fn quantity_must_be_a_multiple_of_the_lot() {
    let mut fx = Fx::new(|_| {});
    fx.ok(|o| {
        o.instrument = ETHUSD;
        o.qty = Qty(20);
    });
    assert_eq!(
        fx.rej(|o| {
            o.instrument = ETHUSD;
            o.qty = Qty(21);
        }),
        BadLot
    );
}

#[test]
fn quantity_must_be_within_min_and_max() {
    let mut fx = Fx::new(|_| {});
    fx.ok(|o| o.qty = Qty(2));
    assert_eq!(fx.rej(|o| o.qty = Qty(1)), QtyTooSmall);
    assert_eq!(fx.rej(|o| o.qty = Qty(0)), QtyTooSmall);
    assert_eq!(fx.rej(|o| o.qty = Qty(-5)), QtyTooSmall);
    fx.ok(|o| o.qty = Qty(1000));
    assert_eq!(fx.rej(|o| o.qty = Qty(1001)), QtyTooLarge);
}

// ---------------------------------------------------------------------------------------
// Notional and price band
// ---------------------------------------------------------------------------------------

#[test]
fn order_notional_may_reach_but_not_exceed_the_maximum() {
    let mut fx = Fx::limits(|l| l.max_notional = dec("1000"));
    // 100.00 × 10 × 1 = 1000.
    fx.ok(|o| o.price = Price(100_00));
    assert_eq!(fx.rej(|o| o.price = Price(100_50)), NotionalTooLarge);
    // The multiplier counts: 20.00 × 10 × 5 = 1000 on the future.
    fx.ok(|o| {
        o.instrument = FUT;
        o.price = Price(20_00);
    });
    assert_eq!(
        fx.rej(|o| {
            o.instrument = FUT;
            o.price = Price(20_50);
        }),
        NotionalTooLarge
    );
    // A fractional limit is exact: 100.50 × 10 = 1005.
    let mut fx = Fx::limits(|l| l.max_notional = dec("1004.99"));
    assert_eq!(fx.rej(|o| o.price = Price(100_50)), NotionalTooLarge);
    let mut fx = Fx::limits(|l| l.max_notional = dec("1005"));
    fx.ok(|o| o.price = Price(100_50));
}

#[test]
fn notional_overflow_is_refused_not_a_panic() {
    let mut fx = Fx::limits(|l| l.max_notional = Decimal::MAX);
    // 9.2 × 10^18 units × 1000 × (5 × 10^16) does not fit in an i128.
    assert_eq!(
        fx.rej(|o| {
            o.instrument = FUT;
            o.price = Price(i64::MAX / 50 * 50);
            o.qty = Qty(1000);
        }),
        NotionalTooLarge
    );
}

#[test]
fn price_band_is_inclusive_around_the_reference() {
    let mut fx = Fx::new(|_| {});
    // No reference: no band.
    fx.ok(|o| o.price = Price(1_000_00));
    fx.risk.set_reference_price(PERP, Price(100_00)).unwrap();
    fx.ok(|o| o.price = Price(110_00));
    assert_eq!(fx.rej(|o| o.price = Price(110_50)), PriceBand);
    fx.ok(|o| {
        o.side = Side::Sell;
        o.price = Price(90_00);
    });
    assert_eq!(
        fx.rej(|o| {
            o.side = Side::Sell;
            o.price = Price(89_50);
        }),
        PriceBand
    );
    // A decimal percent: ±2.5 %.
    let mut fx = Fx::limits(|l| l.price_band_pct = dec("2.5"));
    fx.risk.set_reference_price(PERP, Price(100_00)).unwrap();
    fx.ok(|o| o.price = Price(102_50));
    assert_eq!(fx.rej(|o| o.price = Price(103_00)), PriceBand);
    assert_eq!(
        fx.risk.set_reference_price(PERP, Price(0)),
        Err(ConfigError::BadInstrument {
            id: PERP,
            message: "reference price must be positive".into()
        })
    );
}

#[test]
fn the_last_trade_becomes_the_reference_price() {
    let mut fx = Fx::new(|_| {});
    fx.risk.set_reference_price(PERP, Price(100_00)).unwrap();
    let mut w = fx.ok(|_| {});
    fx.fill(&mut w, 105_00, 10);
    assert_eq!(fx.risk.reference_price(PERP), Some(Price(105_00)));
    fx.ok(|o| o.price = Price(115_50));
    assert_eq!(fx.rej(|o| o.price = Price(116_00)), PriceBand);
}

#[test]
fn market_orders_are_valued_at_the_top_of_the_band_and_need_a_reference() {
    let mut fx = Fx::limits(|l| l.max_notional = dec("1100"));
    assert_eq!(fx.rej(|o| o.ord_type = OrdType::Market), PriceBand);
    fx.risk.set_reference_price(PERP, Price(100_00)).unwrap();
    // 100.00 + 10 % = 110.00; × 10 = 1100: at the limit, whichever side.
    for side in [Side::Buy, Side::Sell] {
        let c = fx
            .check(|o| {
                o.ord_type = OrdType::Market;
                o.side = side;
            })
            .unwrap();
        assert_eq!(c.get().price, Price(110_00));
        assert_eq!(fx.risk.credit_used(ALICE), dec("1100"));
        fx.risk.on_order_closed(&WorkingOrder::from_checked(&c));
    }
    assert_eq!(
        fx.rej(|o| {
            o.ord_type = OrdType::Market;
            o.qty = Qty(11);
        }),
        NotionalTooLarge
    );
    // The top of the band rounds up to a tick: 100.10 × 1.1 = 110.11 → 110.50.
    let mut fx2 = Fx::new(|_| {});
    fx2.risk.set_reference_price(PERP, Price(100_10)).unwrap();
    let c = fx2.check(|o| o.ord_type = OrdType::Market).unwrap();
    assert_eq!(c.get().price, Price(110_50));
    fx.assert_balanced();
}

#[test]
fn checked_orders_carry_the_self_trade_mode() {
    let mut fx = Fx::new(|c| {
        c.accounts.insert(
            "BOB".into(),
            crate::AccountLimitsOverride {
                stp_mode: Some(StpMode::CancelBoth),
                ..Default::default()
            },
        );
    });
    let a = fx.check(|_| {}).unwrap();
    assert_eq!(a.get().stp, Some(StpMode::CancelIncoming));
    let b = fx.check(|o| o.account = BOB).unwrap();
    assert_eq!(b.get().stp, Some(StpMode::CancelBoth));
    let c = fx
        .check(|o| {
            o.account = BOB;
            o.stp = Some(StpMode::CancelResting);
        })
        .unwrap();
    assert_eq!(c.into_inner().stp, Some(StpMode::CancelResting));
    assert_eq!(fx.risk.stp_mode(BOB), Some(StpMode::CancelBoth));
}

// ---------------------------------------------------------------------------------------
// Open orders, credit, positions
// ---------------------------------------------------------------------------------------

#[test]
fn open_orders_per_account_may_reach_but_not_exceed_the_maximum() {
    let mut fx = Fx::limits(|l| l.max_open_orders = 2);
    let w = fx.ok(|_| {});
    fx.ok(|o| o.instrument = FUT);
    assert_eq!(fx.risk.open_orders(ALICE), 2);
    assert_eq!(fx.rej(|o| o.instrument = ETHUSD), TooManyOpenOrders);
    fx.ok(|o| o.account = BOB);
    fx.risk.on_order_closed(&w);
    fx.ok(|_| {});
    fx.assert_balanced();
}

#[test]
fn open_orders_per_instrument_may_reach_but_not_exceed_the_maximum() {
    let mut fx = Fx::limits(|l| l.max_open_orders_per_instrument = 2);
    fx.ok(|_| {});
    let mut w = fx.ok(|_| {});
    assert_eq!(fx.risk.open_orders_in(ALICE, PERP), 2);
    assert_eq!(fx.rej(|_| {}), TooManyOpenOrders);
    fx.ok(|o| o.instrument = FUT);
    // A complete fill frees the slot; a partial one does not.
    fx.fill(&mut w, 100_00, 4);
    assert_eq!(fx.rej(|_| {}), TooManyOpenOrders);
    fx.fill(&mut w, 100_00, 6);
    assert_eq!(fx.risk.open_orders_in(ALICE, PERP), 1);
    fx.ok(|_| {});
    fx.assert_balanced();
}

#[test]
fn credit_limit_counts_open_orders_and_may_be_reached_exactly() {
    let mut fx = Fx::limits(|l| l.credit_limit = dec("2000"));
    let w = fx.ok(|_| {}); // 1000
    fx.ok(|o| o.side = Side::Sell); // 1000: both sides count
    assert_eq!(fx.risk.credit_used(ALICE), dec("2000"));
    assert_eq!(
        fx.rej(|o| {
            o.price = Price(50);
            o.qty = Qty(2);
        }),
        CreditLimit
    );
    fx.ok(|o| o.account = BOB);
    fx.risk.on_order_closed(&w);
    assert_eq!(fx.risk.credit_used(ALICE), dec("1000"));
    // 1000 + 99.50 × 10 = 1995, + 0.50 × 10 = 2000 exactly.
    fx.ok(|o| o.price = Price(99_50));
    fx.ok(|o| o.price = Price(50));
    assert_eq!(
        fx.rej(|o| {
            o.price = Price(50);
            o.qty = Qty(2)
        }),
        CreditLimit
    );
    fx.assert_balanced();
}

#[test]
fn credit_limit_counts_option_premium_times_multiplier_and_positions_held() {
    let mut fx = Fx::limits(|l| {
        l.credit_limit = dec("1000");
        l.price_band_pct = dec("100");
    });
    // Premium 2.5000 × 4 contracts × 100 = 1000.
    let mut w = fx.ok(|o| {
        o.instrument = CALL;
        o.price = Price(2_5000);
        o.qty = Qty(4);
    });
    assert_eq!(fx.risk.credit_used(ALICE), dec("1000"));
    assert_eq!(
        fx.rej(|o| {
            o.instrument = CALL;
            o.price = Price(5);
            o.qty = Qty(1);
        }),
        CreditLimit
    );
    // Filled at a better premium: the reservation goes (at the order's price), the position
    // stays counted at its entry premium: 2.0000 × 4 × 100 = 800.
    fx.fill(&mut w, 2_0000, 4);
    assert_eq!(fx.risk.credit_used(ALICE), dec("800"));
    assert_eq!(fx.risk.position(ALICE, CALL), Qty(4));
    // 800 + 0.5000 × 4 × 100 = 1000: exactly at the limit; one tick more is not.
    assert_eq!(
        fx.rej(|o| {
            o.instrument = CALL;
            o.price = Price(5005);
            o.qty = Qty(4);
        }),
        CreditLimit
    );
    let mut sell = fx.ok(|o| {
        o.instrument = CALL;
        o.side = Side::Sell;
        o.price = Price(5000);
        o.qty = Qty(4);
    });
    assert_eq!(fx.risk.entry_price(ALICE, CALL), Some(Price(2_0000)));
    // Selling half the position releases half its exposure; the entry price stays.
    fx.fill(&mut sell, 2_1000, 2);
    assert_eq!(fx.risk.position(ALICE, CALL), Qty(2));
    assert_eq!(fx.risk.credit_used(ALICE), dec("500"));
    assert_eq!(fx.risk.entry_price(ALICE, CALL), Some(Price(2_0000)));
    assert_eq!(fx.risk.entry_price(BOB, CALL), None, "flat");
    fx.risk.on_order_closed(&sell);
    assert_eq!(fx.risk.credit_used(ALICE), dec("400"));
    fx.assert_balanced();
}

#[test]
fn position_limit_per_instrument_counts_open_orders_on_the_same_side() {
    let mut fx = Fx::limits(|l| l.max_position_per_instrument = dec("10"));
    let mut w = fx.ok(|o| o.qty = Qty(6));
    fx.ok(|o| o.qty = Qty(4)); // 6 + 4 = 10
    assert_eq!(fx.rej(|o| o.qty = Qty(2)), PositionLimit);
    // The other side is checked on its own: short 10 worst case.
    let s = fx.ok(|o| {
        o.side = Side::Sell;
        o.qty = Qty(10);
    });
    fx.risk.on_order_closed(&s);
    // Filled: long 6 + 4 open = 10, still full.
    fx.fill(&mut w, 100_00, 6);
    assert_eq!(fx.risk.position(ALICE, PERP), Qty(6));
    assert_eq!(fx.rej(|o| o.qty = Qty(2)), PositionLimit);
    // A sell against the long may go to short 10: −6 + 16 = 10.
    fx.ok(|o| {
        o.side = Side::Sell;
        o.qty = Qty(16);
    });
    assert_eq!(
        fx.rej(|o| {
            o.side = Side::Sell;
            o.qty = Qty(2);
        }),
        PositionLimit
    );
    fx.assert_balanced();
}

#[test]
fn position_limit_per_underlying_adds_instruments_by_multiplier() {
    let mut fx = Fx::limits(|l| l.max_position_per_underlying = dec("50"));
    let mut perp = fx.ok(|o| o.qty = Qty(25)); // 25 BTC
    let mut fut = fx.ok(|o| {
        o.instrument = FUT;
        o.qty = Qty(5); // 5 × 5 = 25 BTC
    });
    // Filled in part: the operator sees the underlying position the limit counts.
    assert_eq!(fx.risk.underlying_position(ALICE, BTC), dec("0"));
    fx.fill(&mut perp, 100_00, 10);
    fx.fill(&mut fut, 100_00, 2);
    assert_eq!(fx.risk.underlying_position(ALICE, BTC), dec("20"));
    assert_eq!(fx.risk.underlying_position(ALICE, ETH), dec("0"));
    assert_eq!(fx.rej(|o| o.qty = Qty(2)), PositionLimit);
    assert_eq!(
        fx.rej(|o| {
            o.instrument = FUT;
            o.qty = Qty(1);
        }),
        PositionLimit
    );
    // Another underlying, another account: their own limits. 50.000 ETH passes, 50.010 not.
    fx.ok(|o| {
        o.instrument = ETHUSD;
        o.qty = Qty(50_000);
    });
    assert_eq!(
        fx.rej(|o| {
            o.instrument = ETHUSD;
            o.qty = Qty(10);
        }),
        PositionLimit
    );
    fx.ok(|o| {
        o.account = BOB;
        o.qty = Qty(50);
    });
}

// ---------------------------------------------------------------------------------------
// Reservations
// ---------------------------------------------------------------------------------------

#[test]
fn reservations_are_released_on_cancel() {
    let mut fx = Fx::new(|_| {});
    let w = fx.ok(|_| {});
    assert_eq!(fx.risk.open_orders(ALICE), 1);
    assert_eq!(fx.risk.credit_used(ALICE), dec("1000"));
    fx.risk.on_order_closed(&w);
    assert_eq!(fx.risk.open_orders(ALICE), 0);
    assert_eq!(fx.risk.open_orders_in(ALICE, PERP), 0);
    assert_eq!(fx.risk.credit_used(ALICE), Decimal::ZERO);
    assert_eq!(fx.risk.open_totals(), (0, 0, 0, 0));
    fx.assert_balanced();
}

#[test]
fn reservations_are_released_on_fills_at_the_order_price_whatever_the_fill_price() {
    let mut fx = Fx::new(|_| {});
    let mut w = fx.ok(|_| {});
    fx.fill(&mut w, 99_00, 4);
    // Open: 6 × 100 = 600; position: 4 at 99 = 396.
    assert_eq!(fx.risk.credit_used(ALICE), dec("996"));
    assert_eq!(fx.risk.open_orders(ALICE), 1);
    fx.fill(&mut w, 98_00, 6);
    assert_eq!(fx.risk.open_orders(ALICE), 0);
    assert_eq!(fx.risk.credit_used(ALICE), dec("984"));
    assert_eq!(fx.risk.position(ALICE, PERP), Qty(10));
    assert_eq!(fx.risk.open_totals(), (0, 0, 0, 0));
    // Closing through zero: sell 15 at 101: long 10 released, short 5 at 101 = 505.
    let mut s = fx.ok(|o| {
        o.side = Side::Sell;
        o.price = Price(101_00);
        o.qty = Qty(15);
    });
    fx.fill(&mut s, 101_00, 15);
    assert_eq!(fx.risk.position(ALICE, PERP), Qty(-5));
    assert_eq!(fx.risk.credit_used(ALICE), dec("505"));
    fx.assert_balanced();
}

#[test]
fn a_replace_moves_the_reservation_when_applied() {
    let mut fx = Fx::limits(|l| {
        l.credit_limit = dec("1500");
        l.max_position_per_instrument = dec("15");
    });
    let mut w = fx.ok(|_| {});
    fx.fill(&mut w, 100_00, 2);
    // 8 open at 100 + 2 held at 100 = 1000; to 15 total at 100: 13 open + 2 held = 1500.
    assert_eq!(fx.replace(&w, 100_00, 15), Ok(()));
    assert_eq!(fx.replace(&w, 100_00, 16), Err(CreditLimit));
    assert_eq!(fx.replace(&w, 100_50, 15), Err(CreditLimit));
    // Checking alone reserves nothing; applying moves it.
    assert_eq!(fx.risk.credit_used(ALICE), dec("1000"));
    fx.risk.on_replaced(&w, Price(100_00), Qty(15));
    w.qty = Qty(15);
    assert_eq!(fx.risk.credit_used(ALICE), dec("1500"));
    assert_eq!(fx.risk.open_orders(ALICE), 1);
    // Decrease: always within limits.
    assert_eq!(fx.replace(&w, 100_00, 3), Ok(()));
    fx.risk.on_replaced(&w, Price(100_00), Qty(3));
    w.qty = Qty(3);
    assert_eq!(fx.risk.credit_used(ALICE), dec("300"));
    fx.risk.on_order_closed(&w);
    assert_eq!(fx.risk.credit_used(ALICE), dec("200"));
    assert_eq!(fx.risk.open_totals(), (0, 0, 0, 0));
    fx.assert_balanced();
}

#[test]
fn a_replace_down_to_the_filled_quantity_closes_the_order() {
    let mut fx = Fx::new(|_| {});
    let mut w = fx.ok(|_| {});
    fx.fill(&mut w, 100_00, 4);
    fx.risk.on_replaced(&w, Price(100_00), Qty(4));
    assert_eq!(fx.risk.open_orders(ALICE), 0);
    assert_eq!(fx.risk.credit_used(ALICE), dec("400"));
    assert_eq!(fx.risk.open_totals(), (0, 0, 0, 0));
    fx.assert_balanced();
}

#[test]
fn releases_that_match_no_reservation_are_clamped_at_zero_and_counted() {
    let mut fx = Fx::new(|_| {});
    let w = fx.ok(|_| {});
    fx.risk.on_order_closed(&w);
    fx.assert_balanced();
    // Closed twice: nothing goes negative, and the engine's bug shows in the counter.
    fx.risk.on_order_closed(&w);
    assert_eq!(fx.risk.open_orders(ALICE), 0);
    assert_eq!(fx.risk.credit_used(ALICE), Decimal::ZERO);
    assert_eq!(fx.risk.open_totals(), (0, 0, 0, 0));
    assert_eq!(fx.risk.accounting_anomalies(), 1);
    // An order never checked here (another account's pair, an unlisted instrument).
    fx.risk.on_order_closed(&WorkingOrder { account: BOB, ..w });
    fx.risk.on_fill(
        &WorkingOrder {
            instrument: InstrumentId(99),
            ..w
        },
        Price(100_00),
        Qty(1),
    );
    assert_eq!(fx.risk.accounting_anomalies(), 3);
    assert_eq!(fx.risk.position(BOB, PERP), Qty(0));
}

#[test]
fn a_replace_is_checked_like_a_new_order_on_its_new_terms() {
    let mut fx = Fx::limits(|l| {
        l.max_notional = dec("2000");
        l.max_position_per_instrument = dec("20");
    });
    fx.risk.set_reference_price(PERP, Price(100_00)).unwrap();
    let mut w = fx.ok(|_| {});
    assert_eq!(fx.replace(&w, 100_25, 10), Err(BadTick));
    assert_eq!(fx.replace(&w, 100_00, 1), Err(QtyTooSmall));
    assert_eq!(fx.replace(&w, 100_00, 1001), Err(QtyTooLarge));
    assert_eq!(fx.replace(&w, 100_00, 20), Ok(()));
    assert_eq!(fx.replace(&w, 100_00, 21), Err(NotionalTooLarge));
    assert_eq!(fx.replace(&w, 110_00, 10), Ok(()));
    assert_eq!(fx.replace(&w, 110_50, 10), Err(PriceBand));
    fx.fill(&mut w, 100_00, 4);
    // Not above what is filled.
    assert_eq!(fx.replace(&w, 100_00, 4), Err(QtyTooSmall));
    // Position: 4 held + 16 open = 20; other orders count too.
    fx.ok(|o| o.qty = Qty(2));
    assert_eq!(fx.replace(&w, 100_00, 18), Ok(()));
    assert_eq!(fx.replace(&w, 100_00, 19), Err(PositionLimit));
    // Not this account's or this instrument's order.
    assert_eq!(fx.replace_as(BOB, PERP, &w, 100_00, 10), Err(UnknownOrder));
    assert_eq!(fx.replace_as(ALICE, FUT, &w, 100_00, 10), Err(UnknownOrder));
    fx.risk.set_status(PERP, InstrumentStatus::Halted).unwrap();
    assert_eq!(fx.replace(&w, 100_00, 10), Err(InstrumentNotTrading));
    fx.assert_balanced();
}

#[test]
fn a_replace_needs_a_new_cl_ord_id() {
    let mut fx = Fx::new(|_| {});
    let w = fx.ok(|_| {});
    let mut r = ReplaceOrder {
        session: S0,
        account: ALICE,
        instrument: PERP,
        cl_ord_id: ClOrdId::new(b"O1").unwrap(),
        order_id: None,
        orig_cl_ord_id: ClOrdId::new(b"O1").unwrap(),
        price: Price(100_00),
        qty: Qty(8),
        received_ns: 0,
        tif: None,
    };
    assert_eq!(
        fx.risk.check_replace(&r, &w, 0).unwrap_err(),
        DuplicateClOrdId
    );
    r.cl_ord_id = ClOrdId::new(b"R1").unwrap();
    assert!(fx.risk.check_replace(&r, &w, 0).is_ok());
    assert_eq!(
        fx.risk.check_replace(&r, &w, 0).unwrap_err(),
        DuplicateClOrdId
    );
}

// ---------------------------------------------------------------------------------------
// Duplicate ClOrdIDs
// ---------------------------------------------------------------------------------------

#[test]
fn duplicate_cl_ord_id_is_refused_per_session_within_the_day() {
    let mut fx = Fx::new(|_| {});
    let id = ClOrdId::new(b"ORD-1").unwrap();
    // A refused order does not use up its id.
    assert_eq!(
        fx.rej(|o| {
            o.cl_ord_id = id;
            o.price = Price(1);
        }),
        BadTick
    );
    fx.ok(|o| o.cl_ord_id = id);
    assert_eq!(fx.rej(|o| o.cl_ord_id = id), DuplicateClOrdId);
    // Another session may use the same id.
    fx.ok(|o| {
        o.cl_ord_id = id;
        o.session = S1;
    });
    // A new day forgets them.
    fx.risk.reset_trading_day();
    assert_eq!(fx.risk.cl_ord_ids_today(), 0);
    fx.ok(|o| o.cl_ord_id = id);
    assert_eq!(fx.rej(|o| o.cl_ord_id = id), DuplicateClOrdId);
    // So does releasing the session slot (its next occupant is another client).
    fx.risk.session_closed(S0);
    fx.ok(|o| o.cl_ord_id = id);
    assert_eq!(fx.rej(|o| o.cl_ord_id = id), DuplicateClOrdId);
}

#[test]
fn a_full_cl_ord_id_table_refuses_as_server_busy_rather_than_forgetting() {
    let mut fx = Fx::new(|c| c.max_cl_ord_ids_per_day = 2);
    let first = fx.ok(|_| {});
    fx.ok(|_| {});
    assert_eq!(fx.rej(|_| {}), ServerBusy);
    // Duplicates are still recognised, and cancels still pass.
    assert_eq!(
        fx.rej(|o| o.cl_ord_id = ClOrdId::new(b"O1").unwrap()),
        DuplicateClOrdId
    );
    assert_eq!(fx.cancel(S0, ALICE), Ok(()));
    fx.risk.on_order_closed(&first);
    fx.risk.reset_trading_day();
    fx.ok(|_| {});
}

#[test]
fn a_full_position_table_refuses_new_pairs_and_compacts_at_the_end_of_the_day() {
    // One (account, instrument) and one (account, underlying) slot per order here.
    let mut fx = Fx::new(|c| c.max_position_slots = 2);
    let w = fx.ok(|_| {});
    assert_eq!(fx.rej(|o| o.account = BOB), ServerBusy);
    let w2 = fx.ok(|_| {}); // same pairs
    fx.risk.on_order_closed(&w);
    fx.risk.reset_trading_day();
    // ALICE's PERP slots still hold an open order: kept.
    assert_eq!(fx.rej(|o| o.account = BOB), ServerBusy);
    fx.risk.on_order_closed(&w2);
    fx.risk.reset_trading_day();
    fx.ok(|o| o.account = BOB);
}

// ---------------------------------------------------------------------------------------
// Administration
// ---------------------------------------------------------------------------------------

#[test]
fn limits_change_at_run_time_and_are_validated() {
    let mut fx = Fx::new(|_| {});
    fx.ok(|_| {});
    let mut l = *fx.risk.limits(ALICE).unwrap();
    l.max_notional = dec("999.99");
    fx.risk.set_limits(ALICE, &l).unwrap();
    assert_eq!(fx.rej(|_| {}), NotionalTooLarge);
    fx.ok(|o| o.account = BOB);
    l.credit_limit = dec("-1");
    let e = fx.risk.set_limits(ALICE, &l).unwrap_err();
    assert_eq!(e.key(), Some("accounts.ALICE.credit_limit"));
    assert_eq!(
        fx.risk.set_limits(AccountId(2), &loose()),
        Err(ConfigError::UnknownAccount(AccountId(2)))
    );
    assert_eq!(fx.risk.account_id("BOB"), Some(BOB));
    assert_eq!(fx.risk.account_id("CAROL"), None);
}

#[test]
fn instruments_listed_at_run_time_are_checked_and_tradable() {
    let mut fx = Fx::new(|_| {});
    let put = InstrumentRules {
        id: InstrumentId(500),
        kind: InstrumentKind::Option {
            underlying: BTC,
            expiry_ms: 1_800_000_000_000,
            strike: Price(90_000_0000),
            call: false,
        },
        ..instruments()[2]
    };
    assert_eq!(fx.rej(|o| o.instrument = put.id), UnknownInstrument);
    fx.risk.add_instrument(put).unwrap();
    fx.ok(|o| {
        o.instrument = put.id;
        o.price = Price(1_0000);
    });
    assert!(matches!(
        fx.risk.add_instrument(put),
        Err(ConfigError::BadInstrument { message, .. }) if message == "already listed"
    ));
    let bad = |f: fn(&mut InstrumentRules)| {
        let mut r = put;
        r.id = InstrumentId(501);
        f(&mut r);
        r
    };
    for r in [
        bad(|r| r.tick = Price(0)),
        bad(|r| {
            r.price_scale = 10;
            r.qty_scale = 9;
        }),
        bad(|r| r.id = InstrumentId(crate::MAX_INSTRUMENTS)),
    ] {
        assert!(matches!(
            fx.risk.add_instrument(r),
            Err(ConfigError::BadInstrument { .. })
        ));
    }
    assert_eq!(fx.risk.instrument(put.id), Some(&put));
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

fn parse(text: &str) -> Result<RiskConfig, String> {
    toml::from_str::<RiskConfig>(text).map_err(|e| e.to_string())
}

#[test]
fn config_parses_with_overrides_falling_back_to_defaults() {
    let c = parse(
        r#"
        session_rate_per_sec = 50
        session_burst = 100
        disconnect_after_throttled = { rejects = 20, within_ms = 500 }
        max_sessions = 16
        max_cl_ord_ids_per_day = 1000
        max_position_slots = 100

        [defaults]
        max_notional = "250000.50"
        price_band_pct = "0.05"
        max_open_orders = 10
        max_open_orders_per_instrument = 5
        credit_limit = 1000000
        max_position_per_instrument = "100"
        max_position_per_underlying = "500.5"
        order_rate_per_sec = 20
        order_burst = 40
        stp_mode = "cancel_both"

        [accounts.ALICE]
        max_notional = "50000"
        stp_mode = "cancel_resting"
        "#,
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.defaults.max_notional, dec("250000.5"));
    assert_eq!(c.defaults.credit_limit, dec("1000000"));
    let alice = c.accounts["ALICE"].apply(&c.defaults);
    assert_eq!(alice.max_notional, dec("50000"));
    assert_eq!(alice.stp_mode, StpMode::CancelResting);
    assert_eq!(alice.max_open_orders, 10);
    assert_eq!(alice.price_band_pct, dec("0.05"));
    let risk = RiskEngine::new(&c, &["ALICE", "BOB"], &instruments()).unwrap();
    assert_eq!(risk.limits(BOB).unwrap().stp_mode, StpMode::CancelBoth);
    assert_eq!(risk.limits(ALICE).unwrap().max_notional, dec("50000"));
    // An empty section is the documented defaults, and they validate.
    let d = parse("").unwrap();
    assert_eq!(d, RiskConfig::default());
    d.validate().unwrap();
}

#[test]
fn config_with_an_unknown_key_is_an_error_naming_it() {
    for (text, key) in [
        ("max_notionall = \"1\"", "max_notionall"),
        ("[defaults]\nprice_band = \"5\"", "price_band"),
        ("[accounts.ALICE]\ncredit = \"5\"", "credit"),
        (
            "disconnect_after_throttled = { rejects = 1, within_ms = 1, per = 2 }",
            "per",
        ),
    ] {
        let e = parse(text).unwrap_err();
        assert!(
            e.contains(key) && e.contains("unknown field"),
            "{text}: {e}"
        );
    }
}

#[test]
fn config_refuses_floats_and_inexact_values() {
    let e = parse("[defaults]\nmax_notional = 1000.5").unwrap_err();
    assert!(e.contains("float"), "{e}");
    let e = parse("[defaults]\nmax_notional = \"1e6\"").unwrap_err();
    assert!(e.contains("not a decimal number"), "{e}");
    let e = parse("[defaults]\nstp_mode = \"cancel_all\"").unwrap_err();
    assert!(e.contains("cancel_all"), "{e}");
}

#[test]
fn config_validation_names_the_bad_key() {
    let check = |edit: fn(&mut RiskConfig), key: &str| {
        let mut c = RiskConfig::default();
        edit(&mut c);
        let e = c.validate().unwrap_err();
        assert_eq!(e.key(), Some(key), "{e}");
        assert!(e.to_string().starts_with(&format!("risk.{key}: ")), "{e}");
    };
    check(
        |c| c.defaults.max_notional = dec("-1"),
        "defaults.max_notional",
    );
    check(
        |c| c.defaults.price_band_pct = dec("0"),
        "defaults.price_band_pct",
    );
    check(
        |c| c.defaults.price_band_pct = dec("0.00001"),
        "defaults.price_band_pct",
    );
    check(
        |c| c.defaults.order_rate_per_sec = 0,
        "defaults.order_rate_per_sec",
    );
    check(|c| c.defaults.order_burst = 0, "defaults.order_burst");
    check(
        |c| {
            c.accounts.insert(
                "ALICE".into(),
                crate::AccountLimitsOverride {
                    max_position_per_underlying: Some(dec("-5")),
                    ..Default::default()
                },
            );
        },
        "accounts.ALICE.max_position_per_underlying",
    );
    check(|c| c.session_rate_per_sec = 0, "session_rate_per_sec");
    check(|c| c.session_burst = 0, "session_burst");
    check(
        |c| c.disconnect_after_throttled.rejects = 0,
        "disconnect_after_throttled.rejects",
    );
    check(
        |c| c.disconnect_after_throttled.within_ms = 0,
        "disconnect_after_throttled.within_ms",
    );
    check(|c| c.max_sessions = 0, "max_sessions");
    check(|c| c.max_cl_ord_ids_per_day = 0, "max_cl_ord_ids_per_day");
    check(|c| c.max_position_slots = 0, "max_position_slots");
    // 4 decimals of a percent are fine.
    let mut c = RiskConfig::default();
    c.defaults.price_band_pct = dec("0.0001");
    c.validate().unwrap();
}

#[test]
fn overrides_for_accounts_that_do_not_exist_are_errors() {
    let mut c = RiskConfig::default();
    c.accounts.insert("ALLICE".into(), Default::default());
    let e = RiskEngine::new(&c, &["ALICE"], &[]).unwrap_err();
    assert_eq!(e.key(), Some("accounts.ALLICE"));
    assert_eq!(e.to_string(), "risk.accounts.ALLICE: no such account");
    let e = RiskEngine::new(&RiskConfig::default(), &["A", "A"], &[]).unwrap_err();
    assert_eq!(e.key(), Some("accounts.A"));
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

fn arb_order() -> impl Strategy<Value = NewOrder> {
    let price = prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        -10i64..10,
        (1i64..400).prop_map(|t| t * 50),
        any::<i64>(),
    ];
    let qty = prop_oneof![Just(i64::MIN), Just(i64::MAX), -5i64..30, any::<i64>(),];
    (
        0u32..6,
        0u32..3,
        prop_oneof![0u32..5, Just(u32::MAX)],
        0u32..40,
        any::<bool>(),
        any::<bool>(),
        price,
        qty,
        any::<bool>(),
    )
        .prop_map(
            |(session, account, instrument, id, buy, market, price, qty, post_only)| NewOrder {
                session: SessionId(session),
                account: AccountId(account),
                instrument: InstrumentId(instrument),
                cl_ord_id: ClOrdId::new(format!("P{id}").as_bytes()).unwrap(),
                side: if buy { Side::Buy } else { Side::Sell },
                ord_type: if market {
                    OrdType::Market
                } else {
                    OrdType::Limit
                },
                tif: TimeInForce::Gtc,
                price: Price(price),
                qty: Qty(qty),
                post_only,
                stp: None,
                received_ns: 0,
                display_qty: Qty(0),
                trailing: None,
                oco_with: None,
                pending: false,
                triggers: None,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_orders_never_panic_and_closing_them_leaves_nothing_open(
        orders in proptest::collection::vec((arb_order(), 0i64..12, any::<i64>()), 1..60),
        reference in prop_oneof![Just(None), (1i64..400).prop_map(|t| Some(t * 50))],
        tight in any::<bool>(),
    ) {
        let mut fx = Fx::new(|c| {
            c.session_burst = 20;
            c.max_position_slots = 12;
            if tight {
                c.defaults.max_notional = dec("5000");
                c.defaults.credit_limit = dec("20000");
                c.defaults.max_position_per_instrument = dec("30");
                c.defaults.max_position_per_underlying = dec("60");
                c.defaults.max_open_orders = 8;
            }
        });
        if let Some(r) = reference {
            fx.risk.set_reference_price(PERP, Price(r)).unwrap();
        }
        let mut open = Vec::new();
        for (i, (o, fill, fill_px)) in orders.iter().enumerate() {
            if let Ok(c) = fx.risk.check_new(o, i as i64 * 1_000_000) {
                let mut w = WorkingOrder::from_checked(&c);
                // Fill part of it (or all) at an arbitrary price.
                let q = (*fill).min(w.qty.0);
                if q > 0 {
                    fx.risk.on_fill(&w, Price(fill_px.rem_euclid(1_000_000) + 1), Qty(q));
                    w.cum_qty = Qty(q);
                }
                if w.cum_qty < w.qty {
                    open.push(w);
                }
            }
        }
        for w in &open {
            fx.risk.on_order_closed(w);
        }
        for a in [ALICE, BOB, AccountId(2)] {
            prop_assert_eq!(fx.risk.open_orders(a), 0);
        }
        prop_assert_eq!(fx.risk.open_totals(), (0, 0, 0, 0));
        prop_assert_eq!(fx.risk.accounting_anomalies(), 0);
        // Positions keep credit in use; nothing is negative.
        prop_assert!(!fx.risk.credit_used(ALICE).is_negative());
    }
}

#[test]
fn stop_orders_are_valued_around_their_stop_price_without_a_reference() {
    // Band 10 %, tick 0.50 (see `Fx`); no reference price has been set.
    let mut fx = Fx::limits(|l| l.max_notional = dec("1100"));
    let stop = |px: i64| OrdType::Stop { stop_px: Price(px) };
    // A stop (market once triggered) at 100.00 is valued at 110.00: × 10 = 1100, at the limit.
    let c = fx.check(|o| o.ord_type = stop(100_00)).unwrap();
    assert_eq!(c.get().price, Price(110_00));
    fx.risk.on_order_closed(&WorkingOrder::from_checked(&c));
    assert_eq!(fx.rej(|o| o.ord_type = stop(100_50)), NotionalTooLarge);
    // The stop price is on the tick and positive.
    assert_eq!(fx.rej(|o| o.ord_type = stop(100_10)), BadTick);
    assert_eq!(fx.rej(|o| o.ord_type = stop(0)), BadTick);
    // A stop-limit's limit is banded around its stop price, not around the market.
    fx.risk.set_reference_price(PERP, Price(50_00)).unwrap();
    let stop_limit = |px: i64| OrdType::StopLimit { stop_px: Price(px) };
    let w = fx.ok(|o| {
        o.ord_type = stop_limit(100_00);
        o.price = Price(110_00);
    });
    assert_eq!(w.price, Price(110_00));
    fx.risk.on_order_closed(&w);
    assert_eq!(
        fx.rej(|o| {
            o.ord_type = stop_limit(100_00);
            o.price = Price(89_50);
        }),
        PriceBand
    );
    assert_eq!(
        fx.rej(|o| {
            o.ord_type = stop_limit(100_00);
            o.price = Price(100_10);
        }),
        BadTick
    );
    // Post-only has no meaning for an order that waits for a trade.
    assert_eq!(
        fx.rej(|o| {
            o.ord_type = stop_limit(100_00);
            o.price = Price(100_00);
            o.post_only = true;
        }),
        Unsupported
    );
    fx.assert_balanced();
}

#[test]
fn trailing_stops_are_valued_at_their_distance_beyond_the_activation_price_or_the_reference() {
    // Band 10 %, tick 0.50 (see `Fx`).
    let mut fx = Fx::limits(|l| l.max_notional = dec("1331"));
    let d = portcullis_types::TrailingDelta::new(1000);
    let stop = |px: i64| OrdType::Stop { stop_px: Price(px) };
    // Activation at 100.00, 10 %: it triggers at 110.00 at most; with the band, 121.00.
    let c = fx
        .check(|o| {
            o.ord_type = stop(100_00);
            o.trailing = d;
        })
        .unwrap();
    assert_eq!(c.get().price, Price(121_00));
    fx.risk.on_order_closed(&WorkingOrder::from_checked(&c));
    // Without an activation price it needs a reference, as a market order does.
    assert_eq!(
        fx.rej(|o| {
            o.ord_type = stop(0);
            o.trailing = d;
        }),
        PriceBand
    );
    fx.risk.set_reference_price(PERP, Price(100_00)).unwrap();
    let w = fx.ok(|o| {
        o.ord_type = stop(0);
        o.trailing = d;
    });
    assert_eq!(w.price, Price(121_00));
    fx.risk.on_order_closed(&w);
    // 110.50 → 121.55 → 133.705, rounded up to the tick 134.00: × 10 above the limit.
    assert_eq!(
        fx.rej(|o| {
            o.ord_type = stop(110_50);
            o.trailing = d;
        }),
        NotionalTooLarge
    );
    // Only stop and take-profit orders trail; a stop price is still on the tick.
    assert_eq!(fx.rej(|o| o.trailing = d), Unsupported);
    assert_eq!(
        fx.rej(|o| {
            o.ord_type = stop(100_10);
            o.trailing = d;
        }),
        BadTick
    );
    assert_eq!(
        fx.rej(|o| {
            o.ord_type = stop(-50);
            o.trailing = d;
        }),
        BadTick
    );
    // A trailing stop-limit without an activation price: its limit banded around the
    // reference.
    let stop_limit = |px: i64| OrdType::StopLimit { stop_px: Price(px) };
    let w = fx.ok(|o| {
        o.ord_type = stop_limit(0);
        o.trailing = d;
        o.price = Price(95_00);
    });
    fx.risk.on_order_closed(&w);
    assert_eq!(
        fx.rej(|o| {
            o.ord_type = stop_limit(0);
            o.trailing = d;
            o.price = Price(89_50);
        }),
        PriceBand
    );
    fx.assert_balanced();
}

#[test]
fn the_entry_price_averages_adding_fills_and_restarts_through_flat() {
    let mut fx = Fx::limits(|_| {});
    let mut buy = fx.ok(|o| o.qty = Qty(4));
    fx.fill(&mut buy, 100_00, 2);
    assert_eq!(fx.risk.entry_price(ALICE, PERP), Some(Price(100_00)));
    fx.fill(&mut buy, 110_00, 2);
    assert_eq!(fx.risk.entry_price(ALICE, PERP), Some(Price(105_00)));
    // Through flat: short 2 from the sell's price.
    let mut sell = fx.ok(|o| {
        o.side = Side::Sell;
        o.qty = Qty(6);
        o.price = Price(110_00);
    });
    fx.fill(&mut sell, 120_00, 6);
    assert_eq!(fx.risk.position(ALICE, PERP), Qty(-2));
    assert_eq!(fx.risk.entry_price(ALICE, PERP), Some(Price(120_00)));
    // Rounded to the price unit: short 2 at 120.00 and 2 at 100.01 is 110.005.
    let mut more = fx.ok(|o| {
        o.side = Side::Sell;
        o.qty = Qty(2);
        o.price = Price(120_00);
    });
    fx.fill(&mut more, 100_01, 2);
    assert_eq!(fx.risk.entry_price(ALICE, PERP), Some(Price(110_01)));
    fx.assert_balanced();
}
