//! A core with three accounts, a perpetual and a small weekly option series, risk limits wide
//! open (so the matching rules are what is tested), and helpers to drive it.
#![allow(dead_code)] // each test binary uses a different part

use portcullis_engine::{Core, EngineConfig, Instruments, InstrumentsConfig};
use portcullis_risk::{Decimal, RiskConfig};
use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, Command, Event, EventKind, InstrumentId, NewOrder, OrdType,
    OrderId, Price, Qty, ReplaceOrder, SessionId, Side, StpMode, TimeInForce,
};

/// Saturday 2026-11-28 12:00:00 UTC.
pub const NOW_NS: i64 = 1_795_867_200_000_000_000;

pub const ALICE: AccountId = AccountId(0);
pub const BOB: AccountId = AccountId(1);
pub const CAROL: AccountId = AccountId(2);

pub const CONFIG: &str = r#"
    [[instruments]]
    symbol = "BTC-PERP"
    price_scale = 1
    qty_scale = 0
    tick = "0.5"
    lot = "1"
    min_qty = "1"
    max_qty = "1000000"

    [[option_series]]
    underlying = "BTC"
    expiries = "weekly"
    count = 2
    strikes = { reference = "100000", step = "5000", each_side = 1 }
    price_scale = 1
    qty_scale = 0
    tick = "0.5"
    lot = "1"
    min_qty = "1"
    max_qty = "1000000"
"#;

/// Limits no test order reaches.
pub fn open_risk() -> RiskConfig {
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

pub fn core_with(engine: EngineConfig, risk: RiskConfig) -> Core {
    let cfg: InstrumentsConfig = toml::from_str(CONFIG).unwrap();
    let instruments = Instruments::from_config(&cfg, NOW_NS / 1_000_000).unwrap();
    Core::new(&engine, &risk, &["ALICE", "BOB", "CAROL"], instruments).unwrap()
}

/// Drives a core, collecting events per command.
pub struct Run {
    pub core: Core,
    pub now: i64,
    cl: u64,
}

impl Run {
    pub fn new() -> Self {
        Self::with(EngineConfig::default(), open_risk())
    }

    pub fn with(engine: EngineConfig, risk: RiskConfig) -> Self {
        Self {
            core: core_with(engine, risk),
            now: NOW_NS,
            cl: 0,
        }
    }

    pub fn perp(&self) -> InstrumentId {
        self.core.instruments().by_symbol("BTC-PERP").unwrap()
    }

    pub fn inst(&self, symbol: &str) -> InstrumentId {
        self.core.instruments().by_symbol(symbol).unwrap()
    }

    /// A fresh ClOrdID (allocation-free, for the counting-allocator test).
    pub fn next_cl(&mut self) -> ClOrdId {
        self.cl += 1;
        cl_ord_id(self.cl)
    }

    /// A GTC limit order from the account's own session (session id = account id).
    pub fn order(
        &mut self,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        price: i64,
        qty: i64,
    ) -> NewOrder {
        NewOrder {
            session: SessionId(account.0),
            account,
            instrument,
            cl_ord_id: self.next_cl(),
            side,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(price),
            qty: Qty(qty),
            post_only: false,
            stp: None,
            received_ns: self.now,
            display_qty: Qty(0),
            trailing: None,
            oco_with: None,
            pending: false,
            triggers: None,
        }
    }

    pub fn cmd(&mut self, cmd: Command) -> Vec<Event> {
        self.now += 1_000;
        let mut ev = Vec::new();
        self.core.process(cmd, self.now, &mut |e| ev.push(e));
        ev
    }

    pub fn submit(&mut self, o: NewOrder) -> Vec<Event> {
        self.cmd(Command::New(o))
    }

    /// Places an order that must be accepted without trading; returns (id, ClOrdID).
    pub fn place(
        &mut self,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        price: i64,
        qty: i64,
    ) -> (OrderId, ClOrdId) {
        let o = self.order(account, instrument, side, price, qty);
        let ev = self.submit(o);
        assert_eq!(kinds(&ev), [EventKind::New], "{ev:#?}");
        (ev[0].order_id, o.cl_ord_id)
    }

    pub fn cancel_req(
        &mut self,
        account: AccountId,
        instrument: InstrumentId,
        order_id: Option<OrderId>,
        orig: ClOrdId,
    ) -> CancelOrder {
        CancelOrder {
            session: SessionId(account.0),
            account,
            instrument,
            cl_ord_id: self.next_cl(),
            order_id,
            orig_cl_ord_id: orig,
            received_ns: self.now,
        }
    }

    pub fn replace_req(
        &mut self,
        account: AccountId,
        instrument: InstrumentId,
        orig: ClOrdId,
        price: i64,
        qty: i64,
    ) -> ReplaceOrder {
        ReplaceOrder {
            session: SessionId(account.0),
            account,
            instrument,
            cl_ord_id: self.next_cl(),
            order_id: None,
            orig_cl_ord_id: orig,
            price: Price(price),
            qty: Qty(qty),
            received_ns: self.now,
            tif: None,
        }
    }

    /// Risk state and books agree: no accounting anomaly, and each account's open orders in
    /// the risk engine are its resting orders in the books.
    pub fn assert_consistent(&self) {
        let risk = self.core.risk();
        assert_eq!(risk.accounting_anomalies(), 0);
        for a in [ALICE, BOB, CAROL] {
            assert_eq!(
                risk.open_orders(a),
                self.core.matcher().account_orders(a),
                "open orders of {a}"
            );
        }
        for inst in self.core.instruments().iter() {
            if let Some(book) = self.core.matcher().book(inst.rules().id) {
                assert!(!book.is_crossed(), "{} is crossed", inst.symbol());
            }
        }
    }
}

/// `c<n>` as a ClOrdID, formatted on the stack.
pub fn cl_ord_id(n: u64) -> ClOrdId {
    let mut buf = [0u8; 24];
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    i -= 1;
    buf[i] = b'c';
    ClOrdId::new(&buf[i..]).unwrap()
}

pub fn kinds(ev: &[Event]) -> Vec<EventKind> {
    ev.iter().map(|e| e.kind).collect()
}
