//! [`RiskEngine`]: the risk state of the core thread and the checks that run on it.

use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, Command, InstrumentId, InstrumentRules, InstrumentStatus,
    NewOrder, OrdType, Price, Qty, RejectReason, ReplaceOrder, SessionId, Side, StpMode,
    UnderlyingId,
};

use crate::config::{AccountLimits, ConfigError, Limits, RiskConfig};
use crate::decimal::Decimal;
use crate::tables::{
    instrument_key, underlying_key, ClOrdIdSet, InsertError, PairState, PairTable,
};
use crate::throttle::{AbuseWindow, TokenBucket};
use crate::{RiskChecked, WorkingOrder};

mod snapshot;

/// Instrument ids are indexes into a table; this bounds the table (and a bad id's damage).
pub const MAX_INSTRUMENTS: u32 = 1 << 20;

/// Parts per million.
const PPM: i128 = 1_000_000;

/// `10^n` for `n ≤ 18`.
const fn pow10(n: u8) -> i128 {
    let mut v: i128 = 1;
    let mut i = 0;
    while i < n {
        v *= 10;
        i += 1;
    }
    v
}

struct Account {
    name: String,
    kill: bool,
    config: AccountLimits,
    limits: Limits,
    bucket: TokenBucket,
    open_orders: u32,
    /// Σ |price| × leaves × multiplier over open orders, `10^-18` quote units.
    open_notional: i128,
    /// Σ exposure of its positions, `10^-18` quote units.
    exposure: i128,
}

struct Instrument {
    rules: InstrumentRules,
    /// Last trade or operator mark; always > 0.
    reference: Option<Price>,
    /// `multiplier × 10^(18 − price_scale − qty_scale)`: price units × qty units × this =
    /// `10^-18` quote units.
    notional_factor: i128,
    /// `10^(18 − qty_scale)`: qty units × this = `10^-18` contracts.
    qty_factor: i128,
    /// `multiplier × 10^(18 − qty_scale)`: qty units × this = `10^-18` underlying units.
    underlying_factor: i128,
}

impl Instrument {
    /// `|price| × qty × multiplier` in `10^-18` quote units; `None` on overflow (which is
    /// beyond every limit, as limits are `i128` too).
    #[inline]
    fn notional(&self, price: i64, qty: i64) -> Option<i128> {
        // |i64| × |i64| ≤ 2^126: the first product cannot overflow.
        mul(
            i128::from(price.unsigned_abs()) * i128::from(qty.unsigned_abs()),
            self.notional_factor,
        )
    }

    /// As [`notional`](Self::notional), saturating: for releasing what a check reserved (which
    /// fitted then).
    #[inline]
    fn notional_sat(&self, price: i64, qty: i128) -> i128 {
        mul_sat(
            mul_sat(i128::from(price.unsigned_abs()), qty.abs()),
            self.notional_factor,
        )
    }
}

struct Session {
    bucket: TokenBucket,
    abuse: AbuseWindow,
    /// Bumped by `session_closed`, and part of the ClOrdID key: the slot's next occupant does
    /// not inherit the previous one's ids (O(1) instead of deleting them; the stale entries
    /// stay counted until the end of the day).
    generation: u32,
}

/// The pre-trade risk state and checks. Owned by the single core thread: every method takes
/// `&mut self` or `&self` and there are no locks. The per-order methods (`check_*`, `on_*`)
/// do not allocate, lock or make system calls: every table is sized in [`RiskEngine::new`]
/// from the config (accounts and instruments are indexed by id, sessions by slot, ClOrdIDs and
/// position pairs in fixed-capacity open-addressing tables).
///
/// # Protocol with the engine
///
/// Reservations follow the order book exactly, so every accepted order must eventually be
/// released. For each `RiskChecked<NewOrder>` the engine accepts into matching, it calls
/// [`on_fill`](Self::on_fill) per fill, [`on_replaced`](Self::on_replaced) per applied
/// replace, and [`on_order_closed`](Self::on_order_closed) when it ends with leaves (cancel,
/// expiry, IOC rest, STP, post-only or FOK reject after acceptance). A fully filled order needs
/// no close: the fill that completes it releases it. A checked order the engine drops without
/// matching must be closed too. A checked replace changes nothing until `on_replaced`.
pub struct RiskEngine {
    global_kill: bool,
    accounts: Vec<Account>,
    /// Indexed by `InstrumentId`; `None` = not listed.
    instruments: Vec<Option<Instrument>>,
    /// Indexed by `SessionId`.
    sessions: Vec<Session>,
    /// `sessions.len() × abuse_n` reject times: the slots of session `s` are
    /// `s × abuse_n .. (s + 1) × abuse_n`.
    abuse_ring: Vec<i64>,
    abuse_n: usize,
    abuse_window_ns: i64,
    session_rate: u32,
    session_burst: u32,
    cl_ord_ids: ClOrdIdSet,
    pairs: PairTable,
    /// Releases that would have driven a counter below zero (an engine bookkeeping bug):
    /// clamped at zero, counted here for monitoring.
    anomalies: u64,
}

impl std::fmt::Debug for RiskEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RiskEngine")
            .field("global_kill", &self.global_kill)
            .field("accounts", &self.accounts.len())
            .field("sessions", &self.sessions.len())
            .field("cl_ord_ids_today", &self.cl_ord_ids.len())
            .field("position_slots", &self.pairs.len())
            .field("anomalies", &self.anomalies)
            .finish_non_exhaustive()
    }
}

impl RiskEngine {
    /// Builds the risk state. `account_names[i]` is the name of `AccountId(i)` (the keys of
    /// `config.accounts`); `instruments` are the listed instruments (more can be added with
    /// [`add_instrument`](Self::add_instrument)). Allocates every table up front.
    pub fn new(
        config: &RiskConfig,
        account_names: &[&str],
        instruments: &[InstrumentRules],
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if account_names.len() >= 1 << 31 {
            return Err(ConfigError::invalid("accounts", "too many accounts"));
        }
        for name in config.accounts.keys() {
            if !account_names.contains(&name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("accounts.{name}"),
                    "no such account",
                ));
            }
        }
        let mut accounts = Vec::with_capacity(account_names.len());
        for (i, &name) in account_names.iter().enumerate() {
            if account_names[..i].contains(&name) {
                return Err(ConfigError::invalid(
                    format!("accounts.{name}"),
                    "account name listed twice",
                ));
            }
            let (prefix, cfg) = match config.accounts.get(name) {
                Some(o) => (format!("accounts.{name}"), o.apply(&config.defaults)),
                None => ("defaults".to_owned(), config.defaults),
            };
            let limits = cfg.resolve(&prefix)?;
            accounts.push(Account {
                name: name.to_owned(),
                kill: false,
                config: cfg,
                limits,
                bucket: TokenBucket::new(limits.order_rate_per_sec, limits.order_burst),
                open_orders: 0,
                open_notional: 0,
                exposure: 0,
            });
        }
        let n_sessions = config.max_sessions as usize;
        let abuse_n = config.disconnect_after_throttled.rejects as usize;
        let session = Session {
            bucket: TokenBucket::new(config.session_rate_per_sec, config.session_burst),
            abuse: AbuseWindow::default(),
            generation: 0,
        };
        let cl_ord_ids = ClOrdIdSet::new(config.max_cl_ord_ids_per_day);
        // Seed the pair table's layout from the keyed hasher (no extra randomness source).
        let seed = cl_ord_ids.hash(u64::MAX, b"pair-table-seed");
        let mut engine = Self {
            global_kill: false,
            accounts,
            instruments: Vec::new(),
            sessions: (0..n_sessions).map(|_| Session { ..session }).collect(),
            abuse_ring: vec![0; n_sessions * abuse_n],
            abuse_n,
            abuse_window_ns: config.disconnect_after_throttled.within_ms as i64 * 1_000_000,
            session_rate: config.session_rate_per_sec,
            session_burst: config.session_burst,
            cl_ord_ids,
            pairs: PairTable::new(config.max_position_slots, seed),
            anomalies: 0,
        };
        for rules in instruments {
            engine.add_instrument(*rules)?;
        }
        Ok(engine)
    }

    // -------------------------------------------------------------------------------------
    // Administration (core thread, not per order: may allocate)
    // -------------------------------------------------------------------------------------

    /// Lists an instrument (e.g. a new option series). Its rules must validate, its
    /// `price_scale + qty_scale` must be at most 18 (notional is compared at 18 decimals,
    /// exactly) and its id must be new and below [`MAX_INSTRUMENTS`]. Grows the instrument
    /// table if the id is beyond it.
    pub fn add_instrument(&mut self, rules: InstrumentRules) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::BadInstrument {
            id: rules.id,
            message,
        };
        rules.validate().map_err(|e| bad(e.to_string()))?;
        if rules.price_scale + rules.qty_scale > Decimal::SCALE {
            return Err(bad("price_scale + qty_scale must be at most 18".into()));
        }
        if rules.id.0 >= MAX_INSTRUMENTS {
            return Err(bad(format!("id must be below {MAX_INSTRUMENTS}")));
        }
        let i = rules.id.0 as usize;
        if matches!(self.instruments.get(i), Some(Some(_))) {
            return Err(bad("already listed".into()));
        }
        if i >= self.instruments.len() {
            self.instruments.resize_with(i + 1, || None);
        }
        let m = i128::from(rules.multiplier);
        self.instruments[i] = Some(Instrument {
            rules,
            reference: None,
            notional_factor: m * pow10(Decimal::SCALE - rules.price_scale - rules.qty_scale),
            qty_factor: pow10(Decimal::SCALE - rules.qty_scale),
            underlying_factor: m * pow10(Decimal::SCALE - rules.qty_scale),
        });
        Ok(())
    }

    /// Changes an instrument's status (halt, resume, expire). New orders and replaces on a
    /// non-trading instrument are refused; cancels are not.
    pub fn set_status(
        &mut self,
        instrument: InstrumentId,
        status: InstrumentStatus,
    ) -> Result<(), ConfigError> {
        self.instrument_mut(instrument)?.rules.status = status;
        Ok(())
    }

    /// Sets the reference price (an operator mark) that price bands are checked around until
    /// the next trade replaces it. Must be positive.
    pub fn set_reference_price(
        &mut self,
        instrument: InstrumentId,
        price: Price,
    ) -> Result<(), ConfigError> {
        let inst = self.instrument_mut(instrument)?;
        if price.0 <= 0 {
            return Err(ConfigError::BadInstrument {
                id: instrument,
                message: "reference price must be positive".into(),
            });
        }
        inst.reference = Some(price);
        Ok(())
    }

    /// Turns the kill switch of one account (`Some`) or of everything (`None`) on or off.
    /// While on, new orders and replaces are refused; cancels still go through, so clients
    /// (and the engine's kill-switch mass cancel) can always reduce risk.
    pub fn set_kill_switch(
        &mut self,
        account: Option<AccountId>,
        on: bool,
    ) -> Result<(), ConfigError> {
        match account {
            None => self.global_kill = on,
            Some(a) => self.account_mut(a)?.kill = on,
        }
        Ok(())
    }

    /// Replaces an account's limits at run time. They apply to the next check; open orders and
    /// positions are kept (a lowered limit refuses further risk, it does not cancel). The
    /// account's token bucket keeps what it has earned, up to the new burst.
    pub fn set_limits(
        &mut self,
        account: AccountId,
        limits: &AccountLimits,
    ) -> Result<(), ConfigError> {
        let acct = self.account_mut(account)?;
        let resolved = limits.resolve(&format!("accounts.{}", acct.name))?;
        acct.config = *limits;
        acct.limits = resolved;
        acct.bucket
            .reconfigure(resolved.order_rate_per_sec, resolved.order_burst);
        Ok(())
    }

    /// Starts a new trading day: forgets every ClOrdID and drops the position slots that are
    /// idle (no position, nothing open). Positions and open orders carry over.
    pub fn reset_trading_day(&mut self) {
        self.cl_ord_ids.clear();
        self.pairs.compact();
    }

    /// A session slot was released (disconnect, logout): its throttle and abuse state start
    /// over, and its ClOrdIDs are forgotten (the slot's next occupant may be another client).
    pub fn session_closed(&mut self, session: SessionId) {
        let (rate, burst) = (self.session_rate, self.session_burst);
        if let Some(s) = self.sessions.get_mut(session.0 as usize) {
            s.bucket = TokenBucket::new(rate, burst);
            s.abuse = AbuseWindow::default();
            s.generation = s.generation.wrapping_add(1);
        }
    }

    // -------------------------------------------------------------------------------------
    // Per-order checks
    // -------------------------------------------------------------------------------------

    /// The ClOrdID table's key of `id` on `session` (whose slot and generation are part of it);
    /// `None` for a session slot beyond `max_sessions`.
    #[inline]
    fn cl_ord_id_hash(&self, session: SessionId, id: &ClOrdId) -> Option<u64> {
        let s = self.sessions.get(session.0 as usize)?;
        let tag = (u64::from(session.0) << 32) | u64::from(s.generation);
        Some(self.cl_ord_ids.hash(tag, id.as_bytes()))
    }

    /// Starts loading the ClOrdID filter block a command's check will read, so that the core
    /// can overlap that cache miss with the command before it (see
    /// [`portcullis_types::prefetch`]). No effect on any result.
    pub fn prefetch(&self, cmd: &Command) {
        let (session, id) = match cmd {
            Command::New(o) => (o.session, &o.cl_ord_id),
            Command::Replace(r) => (r.session, &r.cl_ord_id),
            _ => return,
        };
        if let Some(hash) = self.cl_ord_id_hash(session, id) {
            self.cl_ord_ids.prefetch(hash);
        }
    }

    /// Checks a new order, cheapest first, and on success reserves it (one open order, its
    /// notional, its quantity on its side, its ClOrdID).
    ///
    /// In order: kill switch (global, then the account's, after `UnknownAccount`); throttles
    /// (session, then account: `Throttled`, a session slot beyond `max_sessions` is
    /// `ServerBusy`); instrument listed (`UnknownInstrument`) and trading
    /// (`InstrumentNotTrading`); post-only market (`Unsupported`); tick (`BadTick`; a limit price
    /// must be a positive multiple of the tick; a market order has no price); lot (`BadLot`);
    /// minimum and maximum quantity (`QtyTooSmall`, `QtyTooLarge`); notional per order
    /// (`NotionalTooLarge`); price band around the reference, for limit orders with a reference
    /// (`PriceBand`); open orders of the account, then in the instrument
    /// (`TooManyOpenOrders`); credit (`CreditLimit`); position in the instrument, then in the
    /// underlying (`PositionLimit`); ClOrdID already used today on this session
    /// (`DuplicateClOrdId`). Full tables are `ServerBusy`.
    ///
    /// A stop order's stop price must be a positive multiple of the tick (`BadTick`); a stop
    /// is valued as a market order would be at its stop price (needing no reference price),
    /// and a stop-limit's limit is banded around its stop price rather than the reference.
    /// Post-only stops are `Unsupported`.
    ///
    /// A market order is valued at the reference price plus the band, rounded up to a tick —
    /// the highest price the band allows, whatever its side, so the valuation never
    /// understates a limit — and is refused as `PriceBand` without a reference price. The checked
    /// order carries that valuation in its `price` (the engine ignores the price of a market
    /// order for matching, but must report it back as [`WorkingOrder::price`]), and its `stp`
    /// is always `Some`: the order's own mode or the account's.
    pub fn check_new(
        &mut self,
        o: &NewOrder,
        now_ns: i64,
    ) -> Result<RiskChecked<NewOrder>, RejectReason> {
        use RejectReason::*;
        let a = self.gate(o.account, true)?;
        self.throttle(o.session, a, now_ns)?;
        // The duplicate check comes last, but its memory (a block of the ClOrdID filter) may
        // not be in the L1 cache: start the load now so it overlaps the checks in between.
        let hash = self
            .cl_ord_id_hash(o.session, &o.cl_ord_id)
            .ok_or(ServerBusy)?;
        self.cl_ord_ids.prefetch(hash);
        let acct = &mut self.accounts[a];
        let lim = &acct.limits;
        let inst = match self.instruments.get(o.instrument.0 as usize) {
            Some(Some(i)) => i,
            _ => return Err(UnknownInstrument),
        };
        let rules = &inst.rules;
        if rules.status != InstrumentStatus::Trading {
            return Err(InstrumentNotTrading);
        }
        let market = o.ord_type.is_market();
        let stop_px = o.ord_type.stop_px();
        if (market || stop_px.is_some()) && o.post_only {
            return Err(Unsupported);
        }
        if !market && (o.price.0 <= 0 || o.price.0 % rules.tick.0 != 0) {
            return Err(BadTick);
        }
        if o.trailing.is_some() && stop_px.is_none() {
            return Err(Unsupported);
        }
        // A trailing stop may have no activation price (0).
        let no_stop_px = |s: Price| s.0 == 0 && o.trailing.is_some();
        if stop_px.is_some_and(|s| (s.0 <= 0 && !no_stop_px(s)) || s.0 % rules.tick.0 != 0) {
            return Err(BadTick);
        }
        // An iceberg's shown part is a quantity too: whole lots.
        if o.qty.0 % rules.lot.0 != 0 || o.display_qty.0 % rules.lot.0 != 0 {
            return Err(BadLot);
        }
        if o.qty < rules.min_qty {
            return Err(QtyTooSmall);
        }
        if o.qty > rules.max_qty {
            return Err(QtyTooLarge);
        }
        let price = match o.ord_type {
            OrdType::Market => match inst.reference {
                Some(r) => band_top(r, lim.band_ppm, rules.tick).ok_or(NotionalTooLarge)?,
                None => return Err(PriceBand),
            },
            // Triggered, it trades around its trigger price, whatever the market does now. A
            // trailing stop's trigger is not known yet: valued at its distance above its
            // activation price, or above the reference without one.
            OrdType::Stop { stop_px } | OrdType::TakeProfit { stop_px } => {
                let trigger = match o.trailing {
                    None => stop_px,
                    Some(d) => {
                        let from = if no_stop_px(stop_px) {
                            inst.reference.ok_or(PriceBand)?
                        } else {
                            stop_px
                        };
                        d.trigger_bound(from).ok_or(NotionalTooLarge)?
                    }
                };
                band_top(trigger, lim.band_ppm, rules.tick).ok_or(NotionalTooLarge)?
            }
            OrdType::Limit | OrdType::StopLimit { .. } | OrdType::TakeProfitLimit { .. } => o.price,
        };
        let notional = inst.notional(price.0, o.qty.0).ok_or(NotionalTooLarge)?;
        if notional > lim.max_notional {
            return Err(NotionalTooLarge);
        }
        // A limit is banded around the reference; a stop-limit's or take-profit limit's
        // around its trigger price, the market it will meet when triggered (a trailing one
        // without an activation price: around the reference).
        let band_centre = match o.ord_type {
            OrdType::Limit => inst.reference,
            OrdType::StopLimit { stop_px } | OrdType::TakeProfitLimit { stop_px }
                if no_stop_px(stop_px) =>
            {
                inst.reference
            }
            OrdType::StopLimit { stop_px } | OrdType::TakeProfitLimit { stop_px } => Some(stop_px),
            OrdType::Market | OrdType::Stop { .. } | OrdType::TakeProfit { .. } => None,
        };
        if let Some(r) = band_centre {
            if !within_band(price, r, lim.band_ppm) {
                return Err(PriceBand);
            }
        }
        if acct.open_orders >= lim.max_open_orders {
            return Err(TooManyOpenOrders);
        }
        let a32 = o.account.0;
        let pi = self
            .pairs
            .find_or_insert(instrument_key(a32, o.instrument.0))
            .ok_or(ServerBusy)?;
        let ui = self
            .pairs
            .find_or_insert(underlying_key(a32, rules.underlying().0))
            .ok_or(ServerBusy)?;
        let pair = *self.pairs.at(pi);
        if pair.open_orders >= lim.max_open_orders_per_instrument {
            return Err(TooManyOpenOrders);
        }
        let used = acct
            .open_notional
            .checked_add(acct.exposure)
            .and_then(|u| u.checked_add(notional))
            .ok_or(CreditLimit)?;
        if used > lim.credit_limit {
            return Err(CreditLimit);
        }
        let qty = i128::from(o.qty.0);
        if !within_position_limit(
            &pair,
            o.side,
            qty,
            inst.qty_factor,
            lim.max_position_per_instrument,
        ) {
            return Err(PositionLimit);
        }
        let qty_u = mul(qty, inst.underlying_factor).ok_or(PositionLimit)?;
        if !within_position_limit(
            self.pairs.at(ui),
            o.side,
            qty_u,
            1,
            lim.max_position_per_underlying,
        ) {
            return Err(PositionLimit);
        }
        let stp = o.stp.unwrap_or(lim.stp_mode);
        match self.cl_ord_ids.insert(hash) {
            Ok(()) => {}
            Err(InsertError::Duplicate) => return Err(DuplicateClOrdId),
            Err(InsertError::Full) => return Err(ServerBusy),
        }
        // Every check passed: reserve.
        acct.open_orders += 1;
        acct.open_notional += notional;
        let p = self.pairs.at(pi);
        p.open_orders += 1;
        *open_side(p, o.side) += qty;
        *open_side(self.pairs.at(ui), o.side) += qty_u;
        Ok(RiskChecked::new(NewOrder {
            price,
            stp: Some(stp),
            ..*o
        }))
    }

    /// Checks a cancel/replace of `working` (the order as the engine holds it now). Refused
    /// as `UnknownOrder` if the request's account or instrument is not the order's, and as
    /// `QtyTooSmall` if the new quantity does not exceed what is already filled. Otherwise the
    /// same checks as [`check_new`](Self::check_new), on the new price and quantity, except
    /// that the open-order counts do not change and credit and position count only the
    /// difference from the current leaves. Records the request's new ClOrdID; reservations
    /// change when the engine applies the replace ([`on_replaced`](Self::on_replaced)).
    pub fn check_replace(
        &mut self,
        r: &ReplaceOrder,
        working: &WorkingOrder,
        now_ns: i64,
    ) -> Result<RiskChecked<ReplaceOrder>, RejectReason> {
        use RejectReason::*;
        let a = self.gate(r.account, true)?;
        self.throttle(r.session, a, now_ns)?;
        let hash = self
            .cl_ord_id_hash(r.session, &r.cl_ord_id)
            .ok_or(ServerBusy)?;
        self.cl_ord_ids.prefetch(hash);
        if working.account != r.account || working.instrument != r.instrument {
            return Err(UnknownOrder);
        }
        let acct = &self.accounts[a];
        let lim = &acct.limits;
        let inst = match self.instruments.get(r.instrument.0 as usize) {
            Some(Some(i)) => i,
            _ => return Err(UnknownInstrument),
        };
        let rules = &inst.rules;
        if rules.status != InstrumentStatus::Trading {
            return Err(InstrumentNotTrading);
        }
        if r.price.0 <= 0 || r.price.0 % rules.tick.0 != 0 {
            return Err(BadTick);
        }
        if r.qty.0 % rules.lot.0 != 0 {
            return Err(BadLot);
        }
        if r.qty < rules.min_qty || r.qty <= working.cum_qty {
            return Err(QtyTooSmall);
        }
        if r.qty > rules.max_qty {
            return Err(QtyTooLarge);
        }
        let notional = inst.notional(r.price.0, r.qty.0).ok_or(NotionalTooLarge)?;
        if notional > lim.max_notional {
            return Err(NotionalTooLarge);
        }
        if let Some(reference) = inst.reference {
            if !within_band(r.price, reference, lim.band_ppm) {
                return Err(PriceBand);
            }
        }
        let old_leaves = i128::from(working.qty.0.saturating_sub(working.cum_qty.0).max(0));
        let new_leaves = i128::from(r.qty.0) - i128::from(working.cum_qty.0);
        let old_reserved = inst.notional_sat(working.price.0, old_leaves);
        let new_reserved = inst
            .notional(r.price.0, r.qty.0.saturating_sub(working.cum_qty.0))
            .ok_or(NotionalTooLarge)?;
        if new_reserved > old_reserved {
            let used = acct
                .open_notional
                .checked_add(acct.exposure)
                .and_then(|u| u.checked_add(new_reserved - old_reserved))
                .ok_or(CreditLimit)?;
            if used > lim.credit_limit {
                return Err(CreditLimit);
            }
        }
        let a32 = r.account.0;
        let empty = PairState::default();
        let pair = self
            .pairs
            .get(instrument_key(a32, r.instrument.0))
            .unwrap_or(&empty);
        // The working order's leaves are already in the open quantity: count only the change.
        let delta = new_leaves - old_leaves;
        if delta > 0 {
            if !within_position_limit(
                pair,
                working.side,
                delta,
                inst.qty_factor,
                lim.max_position_per_instrument,
            ) {
                return Err(PositionLimit);
            }
            let upair = self
                .pairs
                .get(underlying_key(a32, rules.underlying().0))
                .unwrap_or(&empty);
            let delta_u = mul(delta, inst.underlying_factor).ok_or(PositionLimit)?;
            if !within_position_limit(
                upair,
                working.side,
                delta_u,
                1,
                lim.max_position_per_underlying,
            ) {
                return Err(PositionLimit);
            }
        }
        match self.cl_ord_ids.insert(hash) {
            Ok(()) => {}
            Err(InsertError::Duplicate) => return Err(DuplicateClOrdId),
            Err(InsertError::Full) => return Err(ServerBusy),
        }
        Ok(RiskChecked::new(*r))
    }

    /// Checks a cancel: only the account and the throttles. The kill switch does not apply
    /// (cancelling reduces risk), nor does the instrument's status, nor the ClOrdID set (a
    /// full set must never stop a cancel).
    pub fn check_cancel(
        &mut self,
        c: &CancelOrder,
        now_ns: i64,
    ) -> Result<RiskChecked<CancelOrder>, RejectReason> {
        let a = self.gate(c.account, false)?;
        self.throttle(c.session, a, now_ns)?;
        Ok(RiskChecked::new(*c))
    }

    /// Kill switches and the account: the index of the account.
    #[inline]
    fn gate(&self, account: AccountId, kill_applies: bool) -> Result<usize, RejectReason> {
        if kill_applies && self.global_kill {
            return Err(RejectReason::KillSwitch);
        }
        let a = account.0 as usize;
        match self.accounts.get(a) {
            None => Err(RejectReason::UnknownAccount),
            Some(acct) if kill_applies && acct.kill => Err(RejectReason::KillSwitch),
            Some(_) => Ok(a),
        }
    }

    /// Takes a token from the session's and the account's bucket, or neither: a request
    /// refused by one bucket does not spend the other's token.
    #[inline]
    fn throttle(&mut self, session: SessionId, a: usize, now_ns: i64) -> Result<(), RejectReason> {
        let s = session.0 as usize;
        let Some(sess) = self.sessions.get_mut(s) else {
            return Err(RejectReason::ServerBusy);
        };
        let acct = &mut self.accounts[a].bucket;
        sess.bucket.refill(now_ns);
        acct.refill(now_ns);
        if sess.bucket.has_token() && acct.has_token() {
            sess.bucket.take();
            acct.take();
            return Ok(());
        }
        let n = self.abuse_n;
        sess.abuse.record(
            &mut self.abuse_ring[s * n..(s + 1) * n],
            now_ns,
            self.abuse_window_ns,
        );
        Err(RejectReason::Throttled)
    }

    // -------------------------------------------------------------------------------------
    // Feedback from the engine (per event; no allocation)
    // -------------------------------------------------------------------------------------

    /// A fill of `order` (as it was *before* this fill: its `cum_qty` does not include
    /// `fill_qty`) at `fill_price`. Releases the filled quantity's reservation (at the order's
    /// price, the one that was reserved), and the open order itself if this fill completes it;
    /// moves the position and the account's exposure; the fill price becomes the instrument's
    /// reference price.
    pub fn on_fill(&mut self, order: &WorkingOrder, fill_price: Price, fill_qty: Qty) {
        let done = order.cum_qty.0.saturating_add(fill_qty.0) >= order.qty.0;
        let qty = i128::from(fill_qty.0);
        if !self.release(order, qty, done) {
            return;
        }
        let Some(Some(inst)) = self.instruments.get_mut(order.instrument.0 as usize) else {
            return;
        };
        if fill_price.0 > 0 {
            inst.reference = Some(fill_price);
        }
        let signed = match order.side {
            Side::Buy => qty,
            Side::Sell => -qty,
        };
        let a32 = order.account.0;
        let underlying = inst.rules.underlying().0;
        let inst = &*inst;
        if let Some(p) = self.pairs.get_mut(instrument_key(a32, order.instrument.0)) {
            let d = move_position(p, signed, |q| inst.notional_sat(fill_price.0, q));
            let acct = &mut self.accounts[a32 as usize];
            acct.exposure = acct.exposure.saturating_add(d).max(0);
        }
        if let Some(u) = self.pairs.get_mut(underlying_key(a32, underlying)) {
            u.position = u
                .position
                .saturating_add(mul_sat(signed, inst.underlying_factor));
        }
    }

    /// `order` left the book with leaves (cancelled, expired, IOC rest, rejected after
    /// acceptance): releases its open order, and the reservation of `qty − cum_qty`.
    pub fn on_order_closed(&mut self, order: &WorkingOrder) {
        let leaves = i128::from(order.qty.0) - i128::from(order.cum_qty.0);
        self.release(order, leaves.max(0), true);
    }

    /// The engine applied a replace of `old` (as it was before) to `new_price` and `new_qty`
    /// (total, including `old.cum_qty`): the reservation moves from the old leaves at the old
    /// price to the new leaves at the new price. A new quantity at or below `cum_qty` closes
    /// the order.
    pub fn on_replaced(&mut self, old: &WorkingOrder, new_price: Price, new_qty: Qty) {
        let new_leaves = i128::from(new_qty.0) - i128::from(old.cum_qty.0);
        if new_leaves <= 0 {
            self.on_order_closed(old);
            return;
        }
        let old_leaves = (i128::from(old.qty.0) - i128::from(old.cum_qty.0)).max(0);
        if !self.release(old, old_leaves, false) {
            return;
        }
        let Some(Some(inst)) = self.instruments.get(old.instrument.0 as usize) else {
            return;
        };
        let a32 = old.account.0;
        let acct = &mut self.accounts[a32 as usize];
        acct.open_notional = acct
            .open_notional
            .saturating_add(inst.notional_sat(new_price.0, new_leaves));
        if let Some(p) = self.pairs.get_mut(instrument_key(a32, old.instrument.0)) {
            *open_side(p, old.side) += new_leaves;
        }
        if let Some(u) = self
            .pairs
            .get_mut(underlying_key(a32, inst.rules.underlying().0))
        {
            *open_side(u, old.side) += mul_sat(new_leaves, inst.underlying_factor);
        }
    }

    /// Releases `qty` of `order`'s reservation, and the open order if `close`. False if the
    /// order's account, instrument or pair is unknown (nothing was reserved here: counted as
    /// an anomaly).
    fn release(&mut self, order: &WorkingOrder, qty: i128, close: bool) -> bool {
        let inst = match self.instruments.get(order.instrument.0 as usize) {
            Some(Some(i)) => i,
            _ => {
                self.anomalies += 1;
                return false;
            }
        };
        let Some(acct) = self.accounts.get_mut(order.account.0 as usize) else {
            self.anomalies += 1;
            return false;
        };
        let a32 = order.account.0;
        let mut bad = false;
        let notional = inst.notional_sat(order.price.0, qty);
        acct.open_notional = sub_clamped(acct.open_notional, notional, &mut bad);
        if close {
            bad |= acct.open_orders == 0;
            acct.open_orders = acct.open_orders.saturating_sub(1);
        }
        match self.pairs.get_mut(instrument_key(a32, order.instrument.0)) {
            Some(p) => {
                let side = open_side(p, order.side);
                *side = sub_clamped(*side, qty, &mut bad);
                if close {
                    bad |= p.open_orders == 0;
                    p.open_orders = p.open_orders.saturating_sub(1);
                }
            }
            None => bad = true,
        }
        let qty_u = mul_sat(qty, inst.underlying_factor);
        match self
            .pairs
            .get_mut(underlying_key(a32, inst.rules.underlying().0))
        {
            Some(u) => {
                let side = open_side(u, order.side);
                *side = sub_clamped(*side, qty_u, &mut bad);
            }
            None => bad = true,
        }
        if bad {
            self.anomalies += 1;
        }
        true
    }

    // -------------------------------------------------------------------------------------
    // Queries (tests, admin, monitoring)
    // -------------------------------------------------------------------------------------

    /// True once the session has had `disconnect_after_throttled.rejects` throttle rejects
    /// within `within_ms`: the server should disconnect it. Cleared by
    /// [`session_closed`](Self::session_closed).
    pub fn throttle_abuse(&self, session: SessionId) -> bool {
        self.sessions
            .get(session.0 as usize)
            .is_some_and(|s| s.abuse.abusive)
    }

    /// The account's net position in the instrument (+ long, − short), in qty units.
    pub fn position(&self, account: AccountId, instrument: InstrumentId) -> Qty {
        let p = self
            .pairs
            .get(instrument_key(account.0, instrument.0))
            .map_or(0, |p| p.position);
        Qty(p.clamp(i64::MIN.into(), i64::MAX.into()) as i64)
    }

    /// The account's net position in the underlying over all its instruments (contracts ×
    /// multiplier, + long, − short), in underlying units: what `max_position_per_underlying`
    /// is checked against.
    pub fn underlying_position(&self, account: AccountId, underlying: UnderlyingId) -> Decimal {
        Decimal::from_units(
            self.pairs
                .get(underlying_key(account.0, underlying.0))
                .map_or(0, |p| p.position),
        )
    }

    /// The average entry price of the account's position in the instrument: the price its
    /// exposure is counted at (fills that add to the position average in, reducing fills
    /// keep it, a fill through flat starts again at its price), rounded to the instrument's
    /// price units. `None` when flat.
    pub fn entry_price(&self, account: AccountId, instrument: InstrumentId) -> Option<Price> {
        let p = self.pairs.get(instrument_key(account.0, instrument.0))?;
        let Some(Some(inst)) = self.instruments.get(instrument.0 as usize) else {
            return None;
        };
        let units = p
            .position
            .checked_abs()?
            .checked_mul(inst.notional_factor)?;
        if units == 0 {
            return None;
        }
        let px = p.exposure.checked_add(units / 2)? / units;
        i64::try_from(px).ok().map(Price)
    }

    /// The account's open orders (0 for an unknown account).
    pub fn open_orders(&self, account: AccountId) -> u32 {
        self.accounts
            .get(account.0 as usize)
            .map_or(0, |a| a.open_orders)
    }

    /// The account's open orders in one instrument.
    pub fn open_orders_in(&self, account: AccountId, instrument: InstrumentId) -> u32 {
        self.pairs
            .get(instrument_key(account.0, instrument.0))
            .map_or(0, |p| p.open_orders)
    }

    /// The kill switch of an account (`Some`, its own switch only) or the global one (`None`).
    pub fn kill_switch(&self, account: Option<AccountId>) -> bool {
        match account {
            None => self.global_kill,
            Some(a) => self.accounts.get(a.0 as usize).is_some_and(|a| a.kill),
        }
    }

    /// What the credit check counts for the account: open-order notional plus position
    /// exposure, in quote currency.
    pub fn credit_used(&self, account: AccountId) -> Decimal {
        self.accounts
            .get(account.0 as usize)
            .map_or(Decimal::ZERO, |a| {
                Decimal::from_units(a.open_notional.saturating_add(a.exposure))
            })
    }

    /// The account's limits as configured (after defaults).
    pub fn limits(&self, account: AccountId) -> Option<&AccountLimits> {
        self.accounts.get(account.0 as usize).map(|a| &a.config)
    }

    /// The self-trade prevention mode of the account.
    pub fn stp_mode(&self, account: AccountId) -> Option<StpMode> {
        self.accounts
            .get(account.0 as usize)
            .map(|a| a.limits.stp_mode)
    }

    /// The id of the account with this name.
    pub fn account_id(&self, name: &str) -> Option<AccountId> {
        self.accounts
            .iter()
            .position(|a| a.name == name)
            .map(|i| AccountId(i as u32))
    }

    /// The rules of a listed instrument.
    pub fn instrument(&self, instrument: InstrumentId) -> Option<&InstrumentRules> {
        match self.instruments.get(instrument.0 as usize) {
            Some(Some(i)) => Some(&i.rules),
            _ => None,
        }
    }

    /// The reference price of an instrument (last trade or operator mark).
    pub fn reference_price(&self, instrument: InstrumentId) -> Option<Price> {
        match self.instruments.get(instrument.0 as usize) {
            Some(Some(i)) => i.reference,
            _ => None,
        }
    }

    /// ClOrdIDs recorded today (stale ones of closed sessions included), against
    /// `max_cl_ord_ids_per_day`.
    pub fn cl_ord_ids_today(&self) -> u32 {
        self.cl_ord_ids.len()
    }

    /// Releases from the engine that did not match a reservation (counters clamped at zero).
    /// Always 0 when the engine follows the protocol; anything else is a bug to alert on.
    pub fn accounting_anomalies(&self) -> u64 {
        self.anomalies
    }

    fn account_mut(&mut self, account: AccountId) -> Result<&mut Account, ConfigError> {
        self.accounts
            .get_mut(account.0 as usize)
            .ok_or(ConfigError::UnknownAccount(account))
    }

    fn instrument_mut(&mut self, id: InstrumentId) -> Result<&mut Instrument, ConfigError> {
        match self.instruments.get_mut(id.0 as usize) {
            Some(Some(i)) => Ok(i),
            _ => Err(ConfigError::UnknownInstrument(id)),
        }
    }
}

#[cfg(test)]
impl RiskEngine {
    /// Σ open orders and Σ open notional over accounts, Σ open quantities and open orders over
    /// position pairs: all zero once every accepted order is closed or filled.
    pub(crate) fn open_totals(&self) -> (u64, i128, i128, u64) {
        let orders = self.accounts.iter().map(|a| u64::from(a.open_orders)).sum();
        let notional = self.accounts.iter().map(|a| a.open_notional).sum();
        let qty = self
            .pairs
            .states()
            .iter()
            .map(|p| p.open_buy + p.open_sell)
            .sum();
        let pair_orders = self
            .pairs
            .states()
            .iter()
            .map(|p| u64::from(p.open_orders))
            .sum();
        (orders, notional, qty, pair_orders)
    }
}

/// The open quantity of `side`.
#[inline]
fn open_side(p: &mut PairState, side: Side) -> &mut i128 {
    match side {
        Side::Buy => &mut p.open_buy,
        Side::Sell => &mut p.open_sell,
    }
}

/// True if position + open orders on `side` + `qty` (the worst case if every order on that
/// side fills), times `factor`, stays within `limit`; false if not, or on overflow. A reducing
/// order (against the position) passes whenever its side does.
#[inline]
fn within_position_limit(p: &PairState, side: Side, qty: i128, factor: i128, limit: i128) -> bool {
    let (pos, open) = match side {
        Side::Buy => (p.position, p.open_buy),
        Side::Sell => (p.position.saturating_neg(), p.open_sell),
    };
    match pos.checked_add(open).and_then(|w| w.checked_add(qty)) {
        Some(worst) if worst <= 0 => true,
        Some(worst) => mul(worst, factor).is_some_and(|w| w <= limit),
        None => false,
    }
}

/// True if `price` is within `band_ppm` of `reference`: `|price − ref| × 10^6 ≤ ref × band`.
#[inline]
fn within_band(price: Price, reference: Price, band_ppm: i128) -> bool {
    let diff = (i128::from(price.0) - i128::from(reference.0)).abs();
    diff * PPM <= i128::from(reference.0) * band_ppm
}

/// The highest price within the band, `ref × (1 + band)`, rounded up to a tick (so it is never
/// below the band's top); `None` if it does not fit in a price.
#[inline]
fn band_top(reference: Price, band_ppm: i128, tick: Price) -> Option<Price> {
    let den = PPM * i128::from(tick.0);
    let num = i128::from(reference.0) * (PPM + band_ppm);
    let ticks = (num + den - 1) / den;
    i64::try_from(ticks * i128::from(tick.0)).ok().map(Price)
}

/// `a × b`, `None` on overflow. Through `u128` on purpose: LLVM inlines the overflow check
/// of an unsigned 128-bit multiplication, while the signed one is a call to `__muloti4`.
#[inline]
fn mul(a: i128, b: i128) -> Option<i128> {
    let m = i128::try_from(a.unsigned_abs().checked_mul(b.unsigned_abs())?).ok()?;
    Some(if (a < 0) != (b < 0) { -m } else { m })
}

/// `a × b`, saturating.
#[inline]
fn mul_sat(a: i128, b: i128) -> i128 {
    mul(a, b).unwrap_or(if (a < 0) != (b < 0) {
        -i128::MAX
    } else {
        i128::MAX
    })
}

/// `a − b`, clamped at zero; sets `bad` if it had to clamp.
#[inline]
fn sub_clamped(a: i128, b: i128, bad: &mut bool) -> i128 {
    let r = a.saturating_sub(b);
    if r < 0 {
        *bad = true;
        0
    } else {
        r
    }
}

/// Moves a position by `delta` (signed qty) at a fill whose notional for `q` units is
/// `notional(q)`, keeping `exposure` = |position| at its average entry price. Returns the
/// change of exposure.
///
/// Adding to a position adds the fill's notional. Reducing it releases the reduced share of
/// the exposure, rounded down (so what remains is rounded up: credit is never understated);
/// a reduction through zero releases everything and opens the rest at the fill price.
fn move_position(p: &mut PairState, delta: i128, notional: impl Fn(i128) -> i128) -> i128 {
    let old_pos = p.position;
    let old_exp = p.exposure;
    if delta == 0 {
        return 0;
    }
    let new_exp = if old_pos == 0 || (old_pos > 0) == (delta > 0) {
        old_exp.saturating_add(notional(delta.abs()))
    } else {
        let held = old_pos.abs();
        let reduce = delta.abs().min(held);
        let rest = delta.abs() - reduce;
        if rest > 0 {
            notional(rest)
        } else if reduce == held {
            0
        } else {
            let released = mul(old_exp, reduce).map_or(old_exp / held * reduce, |x| x / held);
            old_exp - released
        }
    };
    p.position = old_pos.saturating_add(delta);
    p.exposure = new_exp;
    new_exp - old_exp
}
