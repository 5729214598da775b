//! The single-writer command processor of the core thread.
//!
//! [`Core`] owns the risk engine, the instrument table and every book (through the
//! [`Matcher`]). The core thread pops [`Command`]s from the ingress queue and calls
//! [`Core::process`] for each; the events it produces go to a caller-provided sink (the
//! per-session egress queues and the journal). One writer, no locks: replaying the same
//! commands with the same timestamps reproduces the same events.
//!
//! Per command:
//!
//! | command | path | events |
//! |---|---|---|
//! | `New` | `risk.check_new` → book | `Rejected(reason)`, or `New` then fills (both sides), then `Canceled`/`Expired` for an unfilled rest that does not rest; a stop order that waits for its trigger: `New` only; then the reports of any stop orders the command's trades triggered |
//! | `Cancel` | `risk.check_cancel` → find (by OrderID, else by the session's OrigClOrdID) → book | `Canceled`, or `CancelRejected { replace: false, reason }` |
//! | `Replace` | find → `risk.check_replace` → book | `Replaced` then any fills (and triggered stops), or `CancelRejected { replace: true, reason }` (`Unsupported` for a waiting stop) |
//! | `MassCancel` | book | `Canceled` per order, then `MassCancelDone { canceled }` |
//! | `SessionClosed` | cancel-on-disconnect if set for the session, then `risk.session_closed` | `Canceled` per order |
//! | `New`, `Cancel`, `Replace` of a routed instrument | as above, then the order store instead of the book | `Route` requests to the venue connector's slot (the client hears the venue's answers) |
//! | `Venue` | the routed order it names | `New`, fills, `Replaced`, `Canceled`, `Expired`, `Rejected`, `CancelRejected` as the venue reports |
//! | `VenueSync` | every routed order of the venue | `Route` requests it may have missed |
//!
//! The risk state follows the books through [`Feedback`](crate::Feedback): every fill, replace and close is
//! reported to the risk engine as it happens, so open-order counts, reservations and positions
//! always match the books.
//!
//! Events are addressed to a session slot (`Event::session`) and carry the account: the
//! server routes each to the slot's current connection only if that connection trades for the
//! event's account (a GTC order can outlive the connection that entered it).

use portcullis_risk::{ConfigError, RiskConfig, RiskEngine, WorkingOrder};
use portcullis_types::snapshot::{SnapshotError, SnapshotReader, SnapshotWriter};
use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, Command, Event, EventKind, InstrumentId, InstrumentKind,
    InstrumentRules, InstrumentStatus, MassCancel, NewOrder, OrdType, OrderDetails, OrderId, Price,
    Qty, RejectReason, ReplaceOrder, SessionId, Side, StpMode, TimeInForce, TradeId,
};
use serde::Deserialize;

use crate::book::{IdCounters, Matcher, MatcherConfig, OrderSnapshot};
use crate::instruments::{InstrumentConfig, InstrumentConfigError, Instruments, Roll};

/// An account's net position in one instrument ([`Core::positions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The instrument.
    pub instrument: InstrumentId,
    /// Net quantity: positive long, negative short (in the instrument's quantity units).
    pub qty: Qty,
    /// The instrument's reference price (last trade, or the operator's mark), if it has one.
    pub reference_price: Option<Price>,
    /// The position's average entry price ([`RiskEngine::entry_price`]).
    pub entry_price: Option<Price>,
}

/// Most resting orders a depth listing walks ([`Core::depth`]): about 6 ns an order (`cargo bench
/// --bench book -- book/depth`), so about 0.4 ms of the core thread at worst.
pub const MAX_DEPTH_ORDERS: usize = 65_536;

/// Format of [`Core::write_snapshot`]; bumped on any change of any part.
const SNAPSHOT_VERSION: u8 = 1;

/// `Event::instrument` of a `MassCancelDone` for a mass cancel over all instruments.
pub const ALL_INSTRUMENTS: InstrumentId = InstrumentId(u32::MAX);

/// The `[engine]` config section.
///
/// ```toml
/// [engine]
/// max_resting_orders = 262144   # all books together; sized once at start
/// levels_per_side = 256         # price levels reserved per book side
/// cancel_on_disconnect = true   # default for sessions (the server sets it per session)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Most resting orders over all books (1 to 2^24). The order store and its indexes are
    /// allocated for it once (about 180 bytes of address space per order, touched as used,
    /// plus 16 bytes of index); an order that would rest beyond it is refused as
    /// `TooManyOpenOrders`. Default 262 144.
    pub max_resting_orders: u32,
    /// Price levels reserved per side of each book (0 to 65 536); a deeper side grows once.
    /// Default 256.
    pub levels_per_side: u32,
    /// Whether a session's resting orders are cancelled when it disconnects or logs out,
    /// for sessions the server does not configure otherwise. Default true.
    pub cancel_on_disconnect: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_resting_orders: 1 << 18,
            levels_per_side: 256,
            cancel_on_disconnect: true,
        }
    }
}

/// Why the core could not be built or an administrative action failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The risk engine refused its config or the change.
    #[error(transparent)]
    Risk(#[from] ConfigError),
    /// Instrument config or listing failed.
    #[error(transparent)]
    Instruments(#[from] InstrumentConfigError),
    /// An `[engine]` value is out of range.
    #[error("engine.{key}: {message}")]
    Config {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: &'static str,
    },
    /// No such instrument, or it has expired (expiry is final).
    #[error("instrument {0}: unknown or expired")]
    Instrument(InstrumentId),
}

/// How an order status request names the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderRef {
    /// By the engine's OrderID.
    Id(OrderId),
    /// By the session's ClOrdID.
    ClOrdId(ClOrdId),
}

/// The command processor; see the module docs.
#[derive(Debug)]
pub struct Core {
    risk: RiskEngine,
    instruments: Instruments,
    matcher: Matcher,
    cancel_on_disconnect: Vec<bool>,
    default_cancel_on_disconnect: bool,
    /// Option series routed to a venue: every option of the underlying, as it is listed.
    series_routes: Vec<(portcullis_types::UnderlyingId, SessionId)>,
}

impl Core {
    /// Builds the core: the risk engine from `risk` (`account_names[i]` names `AccountId(i)`)
    /// with the rules of every listed instrument, and a book for each instrument that has not
    /// expired. Allocates everything the hot path needs.
    pub fn new(
        config: &EngineConfig,
        risk: &RiskConfig,
        account_names: &[&str],
        instruments: Instruments,
    ) -> Result<Self, CoreError> {
        if !(1..=1 << 24).contains(&config.max_resting_orders) {
            return Err(CoreError::Config {
                key: "max_resting_orders",
                message: "must be between 1 and 16777216",
            });
        }
        if config.levels_per_side > 1 << 16 {
            return Err(CoreError::Config {
                key: "levels_per_side",
                message: "must be at most 65536",
            });
        }
        let rules: Vec<InstrumentRules> = instruments.iter().map(|i| *i.rules()).collect();
        let risk_engine = RiskEngine::new(risk, account_names, &rules)?;
        let mut matcher = Matcher::new(MatcherConfig {
            max_resting_orders: config.max_resting_orders as usize,
            levels_per_side: config.levels_per_side as usize,
            accounts: account_names.len(),
            sessions: risk.max_sessions as usize,
            default_stp: StpMode::default(),
        });
        for r in &rules {
            if r.status != InstrumentStatus::Expired {
                matcher.add_book(r.id);
            }
        }
        Ok(Self {
            risk: risk_engine,
            instruments,
            matcher,
            cancel_on_disconnect: vec![config.cancel_on_disconnect; risk.max_sessions as usize],
            default_cancel_on_disconnect: config.cancel_on_disconnect,
            series_routes: Vec::new(),
        })
    }

    /// Starts loading the table entries `cmd` will touch (risk's ClOrdID filter, the order
    /// store's buckets) without processing it: called for the next command while the current
    /// one is processed, so that their cache misses overlap. No effect on any result.
    pub fn prefetch(&self, cmd: &Command) {
        self.risk.prefetch(cmd);
        self.matcher.prefetch(cmd);
    }

    /// Processes one command at `now_ns` (ns since the epoch), writing its events to `out`.
    /// Allocation-free in the steady state.
    pub fn process(&mut self, cmd: Command, now_ns: i64, out: &mut (impl FnMut(Event) + ?Sized)) {
        match cmd {
            Command::New(o) => self.new_order(&o, now_ns, out),
            Command::Cancel(c) => self.cancel(&c, now_ns, out),
            Command::Replace(r) => self.replace(&r, now_ns, out),
            Command::MassCancel(m) => self.mass_cancel(&m, now_ns, out),
            Command::SessionClosed(s) => self.session_closed(s, now_ns, out),
            Command::Venue(r) => self
                .matcher
                .on_venue_report(&r, now_ns, &mut self.risk, out),
            Command::VenueSync(venue) => self.matcher.route_sync(venue, now_ns, out),
        }
    }

    fn new_order(&mut self, o: &NewOrder, now: i64, out: &mut (impl FnMut(Event) + ?Sized)) {
        match self.risk.check_new(o, now) {
            Ok(checked) => self.matcher.submit(checked, now, &mut self.risk, out),
            Err(reason) => {
                let exec_id = self.matcher.next_exec_id();
                out(Event {
                    session: o.session,
                    account: o.account,
                    instrument: o.instrument,
                    kind: EventKind::Rejected(reason),
                    order_id: OrderId(0),
                    cl_ord_id: o.cl_ord_id,
                    orig_cl_ord_id: ClOrdId::EMPTY,
                    side: o.side,
                    ord_type: o.ord_type,
                    tif: o.tif,
                    price: if o.ord_type.is_market() {
                        Price(0)
                    } else {
                        o.price
                    },
                    qty: o.qty,
                    cum_qty: Qty(0),
                    leaves_qty: Qty(0),
                    avg_px: Price(0),
                    last_px: Price(0),
                    last_qty: Qty(0),
                    trade_id: TradeId(0),
                    exec_id,
                    ts_ns: now,
                    received_ns: o.received_ns,
                    details: OrderDetails::of(o),
                });
                // An order of a list refused: so is the list.
                if o.oco_with.is_some() || o.triggers.is_some() {
                    self.matcher.cancel_unjoined(o, now, &mut self.risk, out);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn cancel_reject(
        &mut self,
        session: SessionId,
        account: AccountId,
        instrument: InstrumentId,
        cl_ord_id: ClOrdId,
        orig_cl_ord_id: ClOrdId,
        order: Option<OrderSnapshot>,
        replace: bool,
        reason: RejectReason,
        now: i64,
        received_ns: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        let exec_id = self.matcher.next_exec_id();
        let mut e = Event {
            session,
            account,
            instrument,
            kind: EventKind::CancelRejected { replace, reason },
            order_id: OrderId(0),
            cl_ord_id,
            orig_cl_ord_id,
            side: Side::Buy,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(0),
            qty: Qty(0),
            cum_qty: Qty(0),
            leaves_qty: Qty(0),
            avg_px: Price(0),
            last_px: Price(0),
            last_qty: Qty(0),
            trade_id: TradeId(0),
            exec_id,
            ts_ns: now,
            received_ns,
            details: OrderDetails::default(),
        };
        // With the order known, the reject carries its current state (FIX OrdStatus(39)).
        if let Some(o) = order {
            e.order_id = o.order_id;
            e.side = o.side;
            e.ord_type = o.ord_type;
            e.tif = o.tif;
            e.price = o.price;
            e.qty = o.qty;
            e.cum_qty = o.cum_qty;
            e.leaves_qty = o.leaves_qty;
            e.avg_px = o.avg_px;
            e.details = o.details;
        }
        out(e);
    }

    fn cancel(&mut self, c: &CancelOrder, now: i64, out: &mut (impl FnMut(Event) + ?Sized)) {
        let checked = self.risk.check_cancel(c, now);
        let found = self.matcher.find(
            c.account,
            Some(c.instrument),
            c.session,
            c.order_id,
            &c.orig_cl_ord_id,
        );
        let result = match (checked, found) {
            (Ok(checked), Some(h)) => self
                .matcher
                .cancel(h, checked, now, &mut self.risk, out)
                .map_err(|r| (r, None)),
            (Ok(_), None) => Err((RejectReason::UnknownOrder, None)),
            (Err(reason), h) => Err((reason, h.and_then(|h| self.matcher.snapshot(h)))),
        };
        if let Err((reason, snapshot)) = result {
            self.cancel_reject(
                c.session,
                c.account,
                c.instrument,
                c.cl_ord_id,
                c.orig_cl_ord_id,
                snapshot,
                false,
                reason,
                now,
                c.received_ns,
                out,
            );
        }
    }

    fn replace(&mut self, r: &ReplaceOrder, now: i64, out: &mut (impl FnMut(Event) + ?Sized)) {
        let found = self.matcher.find(
            r.account,
            Some(r.instrument),
            r.session,
            r.order_id,
            &r.orig_cl_ord_id,
        );
        let Some(h) = found else {
            self.cancel_reject(
                r.session,
                r.account,
                r.instrument,
                r.cl_ord_id,
                r.orig_cl_ord_id,
                None,
                true,
                RejectReason::UnknownOrder,
                now,
                r.received_ns,
                out,
            );
            return;
        };
        let snapshot = self.matcher.snapshot(h);
        let result = match self.matcher.working_order(h) {
            None => Err(RejectReason::UnknownOrder),
            // Changed by cancelling it and entering a new one (as on most venues); refused
            // before the risk checks so the request's ClOrdID stays free.
            Some(_) if self.matcher.is_untriggered(h) => Err(RejectReason::Unsupported),
            // An amend that keeps the price only ever reduces the quantity (so it never moves
            // the order back in its queue).
            Some(working) if r.price == ReplaceOrder::KEEP_PRICE && r.qty >= working.qty => {
                Err(RejectReason::Unsupported)
            }
            Some(working) => match self
                .risk
                .check_replace(&keep_price(r, &working), &working, now)
            {
                // A routed order changes when its venue confirms.
                Ok(checked) if self.matcher.is_routed(h) => {
                    self.matcher.replace_routed(h, checked, now, out)
                }
                Ok(checked) => self.matcher.replace(h, checked, now, &mut self.risk, out),
                Err(reason) => Err(reason),
            },
        };
        if let Err(reason) = result {
            self.cancel_reject(
                r.session,
                r.account,
                r.instrument,
                r.cl_ord_id,
                r.orig_cl_ord_id,
                snapshot,
                true,
                reason,
                now,
                r.received_ns,
                out,
            );
        }
    }

    fn mass_cancel(&mut self, m: &MassCancel, now: i64, out: &mut (impl FnMut(Event) + ?Sized)) {
        let canceled =
            self.matcher
                .cancel_account(m.account, m.instrument, now, &mut self.risk, out);
        let exec_id = self.matcher.next_exec_id();
        out(Event {
            session: m.session,
            account: m.account,
            instrument: m.instrument.unwrap_or(ALL_INSTRUMENTS),
            kind: EventKind::MassCancelDone { canceled },
            order_id: OrderId(0),
            cl_ord_id: m.cl_ord_id,
            orig_cl_ord_id: ClOrdId::EMPTY,
            side: Side::Buy,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(0),
            qty: Qty(0),
            cum_qty: Qty(0),
            leaves_qty: Qty(0),
            avg_px: Price(0),
            last_px: Price(0),
            last_qty: Qty(0),
            trade_id: TradeId(0),
            exec_id,
            ts_ns: now,
            received_ns: now,
            details: OrderDetails::default(),
        });
    }

    fn session_closed(&mut self, s: SessionId, now: i64, out: &mut (impl FnMut(Event) + ?Sized)) {
        if self.cancel_on_disconnect(s) {
            self.matcher.cancel_session(s, now, &mut self.risk, out);
        }
        self.risk.session_closed(s);
    }

    /// Routes `instrument`'s orders to the venue connector in slot `venue` (`None`: its own
    /// book). Set at start, before the first order.
    pub fn set_route(&mut self, instrument: InstrumentId, venue: Option<SessionId>) {
        self.matcher.set_route(instrument, venue);
    }

    /// Routes every option on `underlying` (its code, e.g. `BTC`) to the venue connector in
    /// slot `venue`: those listed now and those the series list later. False if no listed
    /// instrument has that underlying.
    pub fn route_option_series(&mut self, underlying: &str, venue: SessionId) -> bool {
        let Some(u) = self.instruments.underlying(underlying) else {
            return false;
        };
        self.series_routes.retain(|(x, _)| *x != u);
        self.series_routes.push((u, venue));
        let options: Vec<InstrumentId> = self
            .instruments
            .iter()
            .map(|i| *i.rules())
            .filter(
                |r| matches!(r.kind, InstrumentKind::Option { underlying, .. } if underlying == u),
            )
            .map(|r| r.id)
            .collect();
        for id in options {
            self.matcher.set_route(id, Some(venue));
        }
        true
    }

    /// The venue connector slot `instrument`'s orders are routed to, if any.
    pub fn route_of(&self, instrument: InstrumentId) -> Option<SessionId> {
        self.matcher.route_of(instrument)
    }

    /// Sets whether a session's resting orders are cancelled when it closes (FIX
    /// cancel-on-disconnect / cancel-on-logout, per session config).
    pub fn set_cancel_on_disconnect(&mut self, session: SessionId, on: bool) {
        let s = session.0 as usize;
        if s >= self.cancel_on_disconnect.len() {
            self.cancel_on_disconnect
                .resize(s + 1, self.default_cancel_on_disconnect);
        }
        self.cancel_on_disconnect[s] = on;
    }

    /// Whether a session's resting orders are cancelled when it closes.
    pub fn cancel_on_disconnect(&self, session: SessionId) -> bool {
        self.cancel_on_disconnect
            .get(session.0 as usize)
            .copied()
            .unwrap_or(self.default_cancel_on_disconnect)
    }

    /// Turns on the kill switch of one account (`Some`) or of everything (`None`) and cancels
    /// the account's (or every) resting order with a `Canceled` report; returns how many. New
    /// orders and replaces are refused (`KillSwitch`) until [`Core::release_kill`]; cancels
    /// still go through.
    pub fn kill(
        &mut self,
        account: Option<AccountId>,
        now_ns: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> Result<u32, CoreError> {
        self.risk.set_kill_switch(account, true)?;
        Ok(match account {
            Some(a) => self
                .matcher
                .cancel_account(a, None, now_ns, &mut self.risk, out),
            None => self.matcher.cancel_all(now_ns, &mut self.risk, out),
        })
    }

    /// Turns a kill switch off again.
    pub fn release_kill(&mut self, account: Option<AccountId>) -> Result<(), CoreError> {
        Ok(self.risk.set_kill_switch(account, false)?)
    }

    /// Halts, resumes or expires an instrument. Expiring ends its resting orders with
    /// `Expired` reports (returns how many) and closes its book for good; halting keeps them
    /// (cancels are still accepted).
    pub fn set_status(
        &mut self,
        instrument: InstrumentId,
        status: InstrumentStatus,
        now_ns: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> Result<u32, CoreError> {
        if !self.instruments.set_status(instrument, status) {
            return Err(CoreError::Instrument(instrument));
        }
        self.risk.set_status(instrument, status)?;
        Ok(if status == InstrumentStatus::Expired {
            self.expire(instrument, now_ns, out)
        } else {
            0
        })
    }

    fn expire(
        &mut self,
        instrument: InstrumentId,
        now: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> u32 {
        let n = self
            .matcher
            .expire_instrument(instrument, now, &mut self.risk, out);
        self.matcher.close_book(instrument);
        n
    }

    /// Rolls the instrument table to `now_ns`: contracts at or past expiry stop trading and
    /// their resting orders end with `Expired` reports; option series list their new
    /// expiries. Call it periodically (e.g. every second) from the core thread.
    pub fn roll(
        &mut self,
        now_ns: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> Result<Roll, CoreError> {
        let roll = self.instruments.roll(now_ns.div_euclid(1_000_000))?;
        for &id in &roll.listed {
            self.list_in_engines(id)?;
        }
        for &id in &roll.expired {
            self.risk.set_status(id, InstrumentStatus::Expired)?;
            self.expire(id, now_ns, out);
        }
        Ok(roll)
    }

    fn list_in_engines(&mut self, id: InstrumentId) -> Result<(), CoreError> {
        let rules = *self
            .instruments
            .rules(id)
            .ok_or(CoreError::Instrument(id))?;
        self.risk.add_instrument(rules)?;
        if rules.status != InstrumentStatus::Expired {
            self.matcher.add_book(id);
        }
        if let InstrumentKind::Option { underlying, .. } = rules.kind {
            if let Some(&(_, venue)) = self.series_routes.iter().find(|(u, _)| *u == underlying) {
                self.matcher.set_route(id, Some(venue));
            }
        }
        Ok(())
    }

    /// Lists an instrument at run time (an operator action).
    pub fn list_instrument(
        &mut self,
        cfg: &InstrumentConfig,
        now_ns: i64,
    ) -> Result<InstrumentId, CoreError> {
        let id = self
            .instruments
            .list_explicit(cfg, now_ns.div_euclid(1_000_000))?;
        self.list_in_engines(id)?;
        Ok(id)
    }

    /// End of the trading day: Day orders end with `Expired` reports (returns how many) and
    /// the risk engine starts a new day (ClOrdIDs are forgotten).
    pub fn end_of_day(&mut self, now_ns: i64, out: &mut (impl FnMut(Event) + ?Sized)) -> u32 {
        let n = self.matcher.expire_day_orders(now_ns, &mut self.risk, out);
        self.risk.reset_trading_day();
        n
    }

    /// When the next good-till-date order expires (ns since the epoch): the core loop calls
    /// [`Core::expire_due`] once its clock reaches it.
    pub fn next_expiry(&self) -> Option<i64> {
        self.matcher.next_expiry()
    }

    /// Good-till-date orders whose expiry time is at or before `now_ns` end with `Expired`
    /// reports; returns how many.
    pub fn expire_due(&mut self, now_ns: i64, out: &mut (impl FnMut(Event) + ?Sized)) -> u32 {
        self.matcher.expire_due(now_ns, &mut self.risk, out)
    }

    /// Every working order of `account` (of `instrument` only, if given), for a listing of
    /// open orders; `None` if there are more than `max` (the caller allocates the list: a
    /// rare request, bounded).
    pub fn open_orders(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        max: usize,
    ) -> Option<Vec<OrderSnapshot>> {
        let mut out = Vec::new();
        for o in self.matcher.working_orders(account) {
            if instrument.map_or(true, |i| i == o.instrument) {
                if out.len() == max {
                    return None;
                }
                out.push(o);
            }
        }
        Some(out)
    }

    /// The net positions of `account`: every instrument (or only `instrument`) in which it is
    /// not flat, in instrument order, with the instrument's reference price (for a position
    /// report; the caller allocates the list: a rare request, bounded by the instrument table).
    pub fn positions(&self, account: AccountId, instrument: Option<InstrumentId>) -> Vec<Position> {
        self.instruments
            .iter()
            .map(|i| i.rules().id)
            .filter(|id| instrument.map_or(true, |i| i == *id))
            .filter_map(|id| {
                let qty = self.risk.position(account, id);
                (qty.0 != 0).then(|| Position {
                    instrument: id,
                    qty,
                    reference_price: self.risk.reference_price(id),
                    entry_price: self.risk.entry_price(account, id),
                })
            })
            .collect()
    }

    /// The book of `instrument` as the market sees it ([`Matcher::depth`]): at most `levels`
    /// per side, walking at most [`MAX_DEPTH_ORDERS`] orders. A rare, rate-weighted request
    /// that allocates its lists, never an order's path.
    pub fn depth(&self, instrument: InstrumentId, levels: usize) -> crate::book::Depth {
        self.matcher.depth(instrument, levels, MAX_DEPTH_ORDERS)
    }

    /// The state of a working order of `account`, for an OrderStatusRequest(H): by OrderID,
    /// or by the ClOrdID `session` gave it. `None` if it is not working (never was, filled,
    /// cancelled) or belongs to another account.
    pub fn order_status(
        &self,
        session: SessionId,
        account: AccountId,
        order: OrderRef,
    ) -> Option<OrderSnapshot> {
        let h = match order {
            OrderRef::Id(id) => {
                self.matcher
                    .find(account, None, session, Some(id), &ClOrdId::EMPTY)
            }
            OrderRef::ClOrdId(cl) => self.matcher.find(account, None, session, None, &cl),
        }?;
        self.matcher.snapshot(h)
    }

    /// The instrument table (symbols, rules, status).
    pub fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    /// The books (read only).
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// The risk state (read only: positions, open orders, throttle abuse, anomalies).
    pub fn risk(&self) -> &RiskEngine {
        &self.risk
    }

    /// The risk engine, for administrative changes that do not touch the books (limits,
    /// reference prices). Use [`Core::kill`], [`Core::set_status`] and [`Core::roll`] for the
    /// changes that must also cancel orders.
    pub fn risk_mut(&mut self) -> &mut RiskEngine {
        &mut self.risk
    }

    /// Appends a canonical dump of the state a journal replay must reproduce to `out`: every
    /// book in priority order with its orders and the id counters ([`Matcher::write_state`]),
    /// then per account the kill switch, open orders and per instrument its position and open
    /// orders, and the global kill switch and reference prices. Hash it to compare two states.
    pub fn write_state(&self, out: &mut Vec<u8>, accounts: usize) {
        self.matcher.write_state(out);
        let instruments = self.instruments.len();
        out.push(u8::from(self.risk.kill_switch(None)));
        for i in 0..instruments {
            let id = InstrumentId(i as u32);
            out.extend_from_slice(
                &self
                    .risk
                    .reference_price(id)
                    .map_or(i64::MIN, |p| p.0)
                    .to_le_bytes(),
            );
        }
        for a in 0..accounts {
            let a = AccountId(a as u32);
            out.push(u8::from(self.risk.kill_switch(Some(a))));
            out.extend_from_slice(&self.risk.open_orders(a).to_le_bytes());
            for i in 0..instruments {
                let id = InstrumentId(i as u32);
                out.extend_from_slice(&self.risk.position(a, id).0.to_le_bytes());
                out.extend_from_slice(&self.risk.open_orders_in(a, id).to_le_bytes());
            }
        }
    }

    /// Appends a full snapshot of the core to `out`: the instrument table, every book and
    /// resting order, the risk state and the sessions' cancel-on-disconnect flags —
    /// everything [`Core::restore_snapshot`] needs to continue exactly where this core is.
    /// Not for the core thread (it allocates and walks the whole state): the server takes it
    /// on a replica fed from the journal.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        out.push(SNAPSHOT_VERSION);
        self.instruments.write_snapshot(out);
        self.matcher.write_snapshot(out);
        self.risk.write_snapshot(out);
        let mut w = SnapshotWriter::new(out);
        w.u32(self.cancel_on_disconnect.len() as u32);
        for &c in &self.cancel_on_disconnect {
            w.bool(c);
        }
    }

    /// Rebuilds a core from a snapshot and the current config (which supplies what a
    /// snapshot does not carry: table sizes, default limits, series rules; explicit
    /// instruments new in the config are listed as of `now_ms`). Refused with
    /// [`SnapshotError::Mismatch`] when the config no longer fits the snapshot (accounts or
    /// sessions changed): recover from the journal's records instead.
    pub fn restore_snapshot(
        config: &EngineConfig,
        risk: &RiskConfig,
        account_names: &[&str],
        instruments: &crate::InstrumentsConfig,
        now_ms: i64,
        snapshot: &[u8],
    ) -> Result<Self, SnapshotError> {
        let mut r = SnapshotReader::new(snapshot);
        if r.u8("snapshot version")? != SNAPSHOT_VERSION {
            return Err(r.invalid(1, "snapshot version"));
        }
        let table = Instruments::restore_snapshot(
            &mut r,
            &instruments.instruments,
            &instruments.option_series,
            now_ms,
        )?;
        let mut core = Core::new(config, risk, account_names, table)
            .map_err(|e| SnapshotError::Mismatch(e.to_string()))?;
        core.matcher.restore_snapshot(&mut r)?;
        for i in core.instruments.iter() {
            if i.rules().status != InstrumentStatus::Expired {
                core.matcher.add_book(i.rules().id);
            }
        }
        core.risk.restore_snapshot(&mut r)?;
        let n = r.count(1, "sessions")?;
        if n != core.cancel_on_disconnect.len() {
            return Err(SnapshotError::Mismatch(format!(
                "{n} session slots in the snapshot, {} configured (risk.max_sessions)",
                core.cancel_on_disconnect.len()
            )));
        }
        for c in &mut core.cancel_on_disconnect {
            *c = r.bool("cancel on disconnect")?;
        }
        if !r.is_empty() {
            return Err(r.invalid(0, "snapshot (bytes after the end)"));
        }
        Ok(core)
    }

    /// The next ids to be assigned (for the journal).
    pub fn ids(&self) -> IdCounters {
        self.matcher.ids()
    }

    /// Continues id numbering after a restart; `false` if an id is 0 or above
    /// [`MAX_ID`](crate::MAX_ID).
    pub fn resume_ids(&mut self, next: IdCounters) -> bool {
        self.matcher.resume_ids(next)
    }
}
/// A replace as the risk checks and the book see it: at the working order's price when it
/// asks to keep it ([`ReplaceOrder::KEEP_PRICE`]).
fn keep_price(r: &ReplaceOrder, working: &WorkingOrder) -> ReplaceOrder {
    if r.price == ReplaceOrder::KEEP_PRICE {
        ReplaceOrder {
            price: working.price,
            ..*r
        }
    } else {
        *r
    }
}
