//! Order books and matching: price-time priority, limit, market, stop and trailing stop
//! orders, GTC/IOC/FOK/Day/GTD, post-only, cancel, cancel/replace and self-trade prevention.
//!
//! # Data structures (chosen for the hot path)
//!
//! - **Resting orders** live in one store shared by all books (the private `orders` module):
//!   a pre-allocated slab of nodes with a free list, O(1) lookup by `OrderId` and by
//!   `(session, ClOrdID)` through fixed-size open-addressing indexes, and intrusive lists per
//!   account and session. Adding, cancelling and filling an order allocates nothing.
//! - **Price levels** are a `Vec<Level>` per side, sorted so that the *best* price is the
//!   *last* element (bids ascending, asks descending), reserved up front for a typical depth.
//!   Matching only ever touches the end (pop a level that empties: O(1)); a new level near the
//!   top of the book — where almost all order flow lands — is a short `memmove` of a few 40-byte
//!   entries at the end; finding a level is a binary search over contiguous memory (cache
//!   friendly, no pointer chasing). A `BTreeMap` would allocate a node whenever a new price
//!   level splits a leaf and chase pointers on every lookup; a fixed price ladder (array
//!   indexed by tick) needs a bounded price range, which crypto prices that move by orders of
//!   magnitude and option premiums from 0.0001 to thousands do not give. The `Vec` only grows
//!   (allocates) when a side becomes deeper than ever before, never in the steady state.
//! - **Stop orders** waiting for their trigger are in the store (found, listed and cancelled
//!   like any order) but in no level: each book keeps one list per side of `(stop price,
//!   slot)`, sorted so that the next to trigger is the last element (buy stops lowest price
//!   first, sell stops highest first, each in time order). A trade checks only the two ends.
//!   When a trade reaches a stop price, the order works from then on as the market or limit
//!   order it carries, after the command that traded, and may itself trigger more.
//! - **One-cancels-the-other pairs** link their two orders' slots in the store: a fill (even
//!   partial) or trigger of one queues the other for cancelling after the command's matching
//!   (so no level is touched while one is being matched), as does a cancel or expiry.
//! - **Trailing stops** waiting for their trigger are on a per-book list in acceptance order:
//!   their trigger moves with every trade (the best price since they started tracking), so a
//!   sorted list would be re-sorted per trade; each trade instead updates them in one pass,
//!   which costs nothing on a book without any (one length check per trade).
//! - **Time priority** within a level is an intrusive doubly linked FIFO of slab slots (head,
//!   tail, count and total quantity in the level): append at the tail, fill from the head,
//!   unlink anywhere in O(1) on cancel.
//!
//! # Reports
//!
//! Every change is reported as an [`Event`] through the caller's sink (`&mut impl
//! FnMut(Event)`), so nothing is buffered or allocated here: the acceptance (`New`), each
//! fill for *both* sides (each to its order's own session, sharing one `trade_id`, each with
//! its own `exec_id`), and the end of an order (`Canceled`, `Expired`). The risk state is kept
//! in step through [`Feedback`].

use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, Command, Event, EventKind, InstrumentId, NewOrder, OrdType,
    OrderDetails, OrderId, Price, Qty, RejectReason, ReplaceOrder, SessionId, Side, StpMode,
    TimeInForce, TradeId, TrailingDelta, TriggerDirection,
};

use portcullis_risk::{RiskChecked, RiskEngine, WorkingOrder};

use crate::orders::{Order, Orders, TrailPhase, NIL};

/// Largest order, exec and trade id: 2^53 − 1, so JSON clients (IEEE doubles) read every id
/// exactly.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// What the risk state needs to hear from the book, so reservations, open-order counts and
/// positions follow the orders exactly (the protocol documented on `RiskEngine`): one
/// `on_fill` per fill with the order *as it was before* the fill, `on_replaced` per applied
/// replace, and `on_order_closed` when an accepted order ends with leaves (a fully filled
/// order needs no close). The risk engine implements it; `()` ignores everything (for tests
/// and benches of the book alone).
pub trait Feedback {
    /// `order` (before this fill) traded `fill_qty` at `fill_price`.
    fn on_fill(&mut self, order: &WorkingOrder, fill_price: Price, fill_qty: Qty);
    /// `order` stopped working with `qty − cum_qty` unfilled (cancelled, expired, IOC rest,
    /// self-trade prevention, or refused by the book after the risk checks accepted it).
    fn on_order_closed(&mut self, order: &WorkingOrder);
    /// `old` was replaced by `new_price` and `new_qty` (total, fills included).
    fn on_replaced(&mut self, old: &WorkingOrder, new_price: Price, new_qty: Qty);
}

impl Feedback for () {
    fn on_fill(&mut self, _: &WorkingOrder, _: Price, _: Qty) {}
    fn on_order_closed(&mut self, _: &WorkingOrder) {}
    fn on_replaced(&mut self, _: &WorkingOrder, _: Price, _: Qty) {}
}

impl Feedback for RiskEngine {
    fn on_fill(&mut self, order: &WorkingOrder, fill_price: Price, fill_qty: Qty) {
        RiskEngine::on_fill(self, order, fill_price, fill_qty);
    }
    fn on_order_closed(&mut self, order: &WorkingOrder) {
        RiskEngine::on_order_closed(self, order);
    }
    fn on_replaced(&mut self, old: &WorkingOrder, new_price: Price, new_qty: Qty) {
        RiskEngine::on_replaced(self, old, new_price, new_qty);
    }
}

/// The next order, exec and trade ids (each ≤ [`MAX_ID`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCounters {
    /// Next `OrderId`.
    pub order: u64,
    /// Next `ExecID`.
    pub exec: u64,
    /// Next `TradeId`.
    pub trade: u64,
}

impl Default for IdCounters {
    fn default() -> Self {
        Self {
            order: 1,
            exec: 1,
            trade: 1,
        }
    }
}

impl IdCounters {
    fn take(v: &mut u64) -> u64 {
        // Saturates instead of passing MAX_ID: new orders are refused well before (see
        // `exhausted`), so only the reports of their last cancels can get here.
        let id = *v;
        if *v < MAX_ID {
            *v += 1;
        }
        id
    }

    fn exec(&mut self) -> u64 {
        Self::take(&mut self.exec)
    }

    fn trade(&mut self) -> TradeId {
        TradeId(Self::take(&mut self.trade))
    }

    /// True when fewer ids remain than one more order could need: an order id, and for a sweep
    /// of every resting order two exec ids and a trade id each, plus its own reports.
    fn exhausted(&self, resting_capacity: u64) -> bool {
        let need = 2 * resting_capacity + 16;
        self.order >= MAX_ID || self.exec + need > MAX_ID || self.trade + need > MAX_ID
    }
}

/// Matching engine settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatcherConfig {
    /// Most resting orders across all books; the slab and indexes are sized for it once. A
    /// resting order beyond it is refused (`TooManyOpenOrders`).
    pub max_resting_orders: usize,
    /// Price levels reserved per book side.
    pub levels_per_side: usize,
    /// Accounts to reserve list heads for.
    pub accounts: usize,
    /// Sessions to reserve list heads for.
    pub sessions: usize,
    /// Self-trade prevention of an order without a mode. (Orders from the risk checks always
    /// carry one: the order's own or the account's configured mode.)
    pub default_stp: StpMode,
}

impl Default for MatcherConfig {
    fn default() -> Self {
        Self {
            max_resting_orders: 1 << 18,
            levels_per_side: 256,
            accounts: 64,
            sessions: 256,
            default_stp: StpMode::default(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Level {
    price: Price,
    /// Σ leaves of the level's orders; `i128` so no depth can overflow it.
    qty: i128,
    head: u32,
    tail: u32,
    count: u32,
}

/// One side of a book: levels sorted with the best price last.
#[derive(Debug, Clone)]
struct BookSide {
    levels: Vec<Level>,
    buy: bool,
}

impl BookSide {
    fn new(buy: bool, capacity: usize) -> Self {
        Self {
            levels: Vec::with_capacity(capacity),
            buy,
        }
    }

    fn search(&self, price: Price) -> Result<usize, usize> {
        if self.buy {
            self.levels.binary_search_by(|l| l.price.cmp(&price))
        } else {
            self.levels.binary_search_by(|l| price.cmp(&l.price))
        }
    }

    /// Appends a resting order at the back of its price level; an iceberg shows its next
    /// part there.
    fn push_back(&mut self, orders: &mut Orders, slot: u32) {
        let (price, leaves) = {
            let o = orders.get_mut(slot);
            o.tranche_end = Qty(o.cum.0 + o.display.0);
            (o.price, o.leaves())
        };
        let i = match self.search(price) {
            Ok(i) => i,
            Err(i) => {
                self.levels.insert(
                    i,
                    Level {
                        price,
                        qty: 0,
                        head: NIL,
                        tail: NIL,
                        count: 0,
                    },
                );
                i
            }
        };
        let l = &mut self.levels[i];
        orders.set_prev(slot, l.tail);
        orders.set_next(slot, NIL);
        if l.tail != NIL {
            orders.set_next(l.tail, slot);
        } else {
            l.head = slot;
        }
        l.tail = slot;
        l.count += 1;
        l.qty += i128::from(leaves.0);
    }

    /// Unlinks an order from level `i` (the level stays, possibly empty).
    fn unlink(&mut self, i: usize, orders: &mut Orders, slot: u32) {
        let (prev, next, leaves) = (
            orders.prev(slot),
            orders.next(slot),
            orders.get(slot).leaves(),
        );
        let l = &mut self.levels[i];
        if prev != NIL {
            orders.set_next(prev, next);
        } else {
            l.head = next;
        }
        if next != NIL {
            orders.set_prev(next, prev);
        } else {
            l.tail = prev;
        }
        l.count -= 1;
        l.qty -= i128::from(leaves.0);
    }

    /// Unlinks a resting order and drops its level if it empties.
    fn remove(&mut self, orders: &mut Orders, slot: u32) {
        let price = orders.get(slot).price;
        let Ok(i) = self.search(price) else {
            debug_assert!(false, "resting order without a level");
            return;
        };
        self.unlink(i, orders, slot);
        if self.levels[i].count == 0 {
            self.levels.remove(i);
        }
    }

    fn best(&self) -> Option<Price> {
        self.levels.last().map(|l| l.price)
    }
}

/// Whether a limit `price` on `side` trades against a resting level at `level`.
fn crosses(side: Side, price: Price, level: Price) -> bool {
    match side {
        Side::Buy => price >= level,
        Side::Sell => price <= level,
    }
}

/// A book's best levels as the market sees them ([`Matcher::depth`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Depth {
    /// Bid levels, best (highest) first: price and shown quantity.
    pub bids: Vec<(Price, Qty)>,
    /// Ask levels, best (lowest) first.
    pub asks: Vec<(Price, Qty)>,
    /// The last ExecID given: every change of a book is an event with a new one, so a later
    /// listing with the same id shows the same book.
    pub update_id: u64,
    /// The price of the book's last trade, if it has traded.
    pub last_trade: Option<Price>,
}

/// One price level as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelView {
    /// The price.
    pub price: Price,
    /// Total unfilled quantity (saturated to `i64`).
    pub qty: Qty,
    /// Number of orders.
    pub orders: u32,
}

/// A stop or take-profit order waiting for its trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StopEntry {
    stop_px: Price,
    slot: u32,
}

/// The untriggered orders that trigger in one direction (buy stops and sell take-profits on
/// a rise, sell stops and buy take-profits on a fall), the next to trigger last.
#[derive(Debug, Clone, Default)]
struct StopList {
    entries: Vec<StopEntry>,
}

impl StopList {
    /// Whether a trigger at `a` is reached after one at `b` by a price moving in `dir`.
    fn later(dir: TriggerDirection, a: Price, b: Price) -> bool {
        match dir {
            TriggerDirection::Up => a > b,
            TriggerDirection::Down => a < b,
        }
    }

    /// Adds an order behind those at the same trigger price (time priority).
    fn insert(&mut self, dir: TriggerDirection, stop_px: Price, slot: u32) {
        // Entries that trigger later come first; a new one triggers after every equal one,
        // so it goes before them.
        let at = self
            .entries
            .partition_point(|e| Self::later(dir, e.stop_px, stop_px));
        self.entries.insert(at, StopEntry { stop_px, slot });
    }

    fn remove(&mut self, dir: TriggerDirection, stop_px: Price, slot: u32) {
        let from = self
            .entries
            .partition_point(|e| Self::later(dir, e.stop_px, stop_px));
        let found = self.entries[from..]
            .iter()
            .take_while(|e| e.stop_px == stop_px)
            .position(|e| e.slot == slot);
        match found {
            Some(k) => {
                self.entries.remove(from + k);
            }
            None => debug_assert!(false, "untriggered stop order not in its list"),
        }
    }

    /// The next order to trigger, if a trade at `last` triggers it.
    fn next_triggered(&self, dir: TriggerDirection, last: Price) -> Option<StopEntry> {
        self.entries
            .last()
            .copied()
            .filter(|e| dir.reached(e.stop_px, last))
    }
}

/// The trades of one book as stop and take-profit orders see them.
#[derive(Debug, Clone, Default)]
struct Tape {
    /// The price of the last trade.
    last: Option<Price>,
    /// The lowest and highest trade prices since triggers last ran: an order that one of
    /// them reached is triggered even if a later trade moved back (a sell take-profit
    /// triggered by a rise and selling lower must not untrigger the buy stops of that rise).
    range: Option<(Price, Price)>,
    /// The waiting trailing stops, in the order they were accepted. Each trade updates every
    /// one of them (its trigger moves with the best price), so they are not kept sorted by
    /// trigger like the stop lists: one pass per trade over this book's trailing stops, and
    /// none when it has none (the usual case).
    trailing: Vec<u32>,
    /// A trailing stop became due since triggers last ran.
    trailing_due: bool,
}

impl Tape {
    fn record(&mut self, px: Price, orders: &mut Orders) {
        self.last = Some(px);
        self.range = Some(match self.range {
            Some((low, high)) => (low.min(px), high.max(px)),
            None => (px, px),
        });
        if !self.trailing.is_empty() {
            self.track(px, orders);
        }
    }

    /// Moves each waiting trailing stop on with a trade at `px`: arms it when `px` reaches
    /// its activation price (`px` its first best price), triggers it when `px` is its
    /// distance from its best price, else takes `px` as its best price if better.
    fn track(&mut self, px: Price, orders: &mut Orders) {
        for &slot in &self.trailing {
            let o = orders.get_mut(slot);
            let Some(delta) = o.trailing else { continue };
            o.trail = match o.trail {
                TrailPhase::Arming => match o.ord_type.trigger(o.side) {
                    Some((stop_px, dir)) if dir.reached(stop_px, px) => {
                        TrailPhase::Tracking(Some(px))
                    }
                    _ => TrailPhase::Arming,
                },
                TrailPhase::Tracking(None) => TrailPhase::Tracking(Some(px)),
                TrailPhase::Tracking(Some(best)) => {
                    if delta.reached(o.side, best, px) {
                        self.trailing_due = true;
                        TrailPhase::Due
                    } else if TrailingDelta::improves(o.side, best, px) {
                        TrailPhase::Tracking(Some(px))
                    } else {
                        TrailPhase::Tracking(Some(best))
                    }
                }
                TrailPhase::Due => TrailPhase::Due,
            };
        }
    }

    /// The first due trailing stop (the oldest): its index in `trailing` and slot.
    fn first_due(&self, orders: &Orders) -> Option<(usize, u32)> {
        if !self.trailing_due {
            return None;
        }
        self.trailing
            .iter()
            .position(|&s| orders.get(s).trail == TrailPhase::Due)
            .map(|k| (k, self.trailing[k]))
    }
}

/// The order book of one instrument (its resting orders live in the matcher's shared store).
#[derive(Debug, Clone)]
pub struct OrderBook {
    instrument: InstrumentId,
    /// False for the placeholder of an unlisted or expired instrument.
    open: bool,
    bids: BookSide,
    asks: BookSide,
    /// Orders waiting for a trade at or above their trigger price.
    up_stops: StopList,
    /// Orders waiting for a trade at or below their trigger price.
    down_stops: StopList,
    /// The trades that stop and take-profit orders trigger on.
    tape: Tape,
}

impl OrderBook {
    fn new(instrument: InstrumentId, levels_per_side: usize) -> Self {
        Self {
            instrument,
            open: false,
            bids: BookSide::new(true, levels_per_side),
            asks: BookSide::new(false, levels_per_side),
            up_stops: StopList::default(),
            down_stops: StopList::default(),
            tape: Tape::default(),
        }
    }

    fn stops(&self, dir: TriggerDirection) -> &StopList {
        match dir {
            TriggerDirection::Up => &self.up_stops,
            TriggerDirection::Down => &self.down_stops,
        }
    }

    fn stops_mut(&mut self, dir: TriggerDirection) -> &mut StopList {
        match dir {
            TriggerDirection::Up => &mut self.up_stops,
            TriggerDirection::Down => &mut self.down_stops,
        }
    }

    /// The side an order on `side` trades against, and the tape its trades go on.
    fn opposite_and_tape(&mut self, side: Side) -> (&mut BookSide, &mut Tape) {
        match side {
            Side::Buy => (&mut self.asks, &mut self.tape),
            Side::Sell => (&mut self.bids, &mut self.tape),
        }
    }

    /// The price of the last trade.
    pub fn last_trade(&self) -> Option<Price> {
        self.tape.last
    }

    /// Number of stop and take-profit orders waiting for their trigger (trailing stops
    /// included).
    pub fn stop_count(&self) -> usize {
        self.up_stops.entries.len() + self.down_stops.entries.len() + self.tape.trailing.len()
    }

    fn side(&self, side: Side) -> &BookSide {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut BookSide {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// The instrument.
    pub fn instrument(&self) -> InstrumentId {
        self.instrument
    }

    /// Best bid price.
    pub fn best_bid(&self) -> Option<Price> {
        self.bids.best()
    }

    /// Best ask price.
    pub fn best_ask(&self) -> Option<Price> {
        self.asks.best()
    }

    /// True if the best bid is at or above the best ask (never true between commands).
    pub fn is_crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some(b), Some(a)) if b >= a)
    }

    /// The levels of one side, best first.
    pub fn levels(&self, side: Side) -> impl Iterator<Item = LevelView> + '_ {
        self.side(side).levels.iter().rev().map(|l| LevelView {
            price: l.price,
            qty: Qty(i64::try_from(l.qty).unwrap_or(i64::MAX)),
            orders: l.count,
        })
    }

    /// Number of resting orders.
    pub fn order_count(&self) -> usize {
        self.bids
            .levels
            .iter()
            .chain(&self.asks.levels)
            .map(|l| l.count as usize)
            .sum()
    }
}

/// A snapshot of a working order, for order status requests (FIX OrderStatusRequest(H)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderSnapshot {
    /// The session that owns the order (gets its reports).
    pub session: SessionId,
    /// The account.
    pub account: AccountId,
    /// The instrument.
    pub instrument: InstrumentId,
    /// The engine's id.
    pub order_id: OrderId,
    /// The order's current client id.
    pub cl_ord_id: ClOrdId,
    /// Side.
    pub side: Side,
    /// Order type.
    pub ord_type: OrdType,
    /// Time in force.
    pub tif: TimeInForce,
    /// Limit price.
    pub price: Price,
    /// Order quantity.
    pub qty: Qty,
    /// Filled so far.
    pub cum_qty: Qty,
    /// Still working.
    pub leaves_qty: Qty,
    /// Average fill price, rounded to the price scale.
    pub avg_px: Price,
    /// When the order's command was received (ns since the epoch).
    pub received_ns: i64,
    /// Post-only, iceberg, trailing, waiting for its trigger.
    pub details: OrderDetails,
}

impl OrderSnapshot {
    /// The snapshot as a status report: kind `New` without fills, `PartialFill` with some,
    /// `exec_id` 0 (a status answer is not an execution), no last fill.
    pub fn to_event(&self, session: SessionId, ts_ns: i64) -> Event {
        Event {
            session,
            account: self.account,
            instrument: self.instrument,
            kind: if self.cum_qty.0 == 0 {
                EventKind::New
            } else {
                EventKind::PartialFill
            },
            order_id: self.order_id,
            cl_ord_id: self.cl_ord_id,
            orig_cl_ord_id: ClOrdId::EMPTY,
            side: self.side,
            ord_type: self.ord_type,
            tif: self.tif,
            price: self.price,
            qty: self.qty,
            cum_qty: self.cum_qty,
            leaves_qty: self.leaves_qty,
            avg_px: self.avg_px,
            last_px: Price(0),
            last_qty: Qty(0),
            trade_id: TradeId(0),
            exec_id: 0,
            ts_ns,
            received_ns: self.received_ns,
            details: self.details,
        }
    }
}

/// One order's fields in [`Matcher::write_state`]. A limit or market order's are what they
/// were before stop orders existed, so a journal's older state hashes still compare.
fn write_order_state(out: &mut Vec<u8>, o: &Order, orders: &Orders) {
    out.extend_from_slice(&o.id.0.to_le_bytes());
    out.push(o.cl_ord_id.as_bytes().len() as u8);
    out.extend_from_slice(o.cl_ord_id.as_bytes());
    out.extend_from_slice(&o.session.0.to_le_bytes());
    out.extend_from_slice(&o.account.0.to_le_bytes());
    out.extend_from_slice(&o.instrument.0.to_le_bytes());
    out.extend_from_slice(&[
        o.side as u8,
        o.ord_type.code(),
        o.tif.code(),
        o.stp.map_or(0xff, |m| m as u8),
        u8::from(o.post_only) | u8::from(o.display.0 != 0) << 1,
    ]);
    for v in [o.price.0, o.qty.0, o.cum.0, o.received_ns] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&o.notional.to_le_bytes());
    if o.display.0 != 0 {
        out.extend_from_slice(&o.display.0.to_le_bytes());
        out.extend_from_slice(&o.tranche_end.0.to_le_bytes());
    }
    if let Some(stop_px) = o.ord_type.stop_px() {
        out.extend_from_slice(&stop_px.0.to_le_bytes());
        out.push(u8::from(o.untriggered));
    }
    if let Some(expire_ns) = o.tif.expire_ns() {
        out.extend_from_slice(&expire_ns.to_le_bytes());
    }
    if let Some(t) = o.trailing {
        out.extend_from_slice(&t.bips().to_le_bytes());
    }
    if let Some(id) = orders.sibling_id(o) {
        out.extend_from_slice(&id.0.to_le_bytes());
    }
    let list = orders.list_id(o);
    if o.pending || list.is_some() {
        out.push(2 | u8::from(o.pending));
        if let Some(id) = list {
            out.extend_from_slice(&id.0.to_le_bytes());
        }
    }
}

/// A report about an order in its current state. A market order's `price` is the risk
/// valuation, not a limit: reported as 0.
fn report(o: &Order, kind: EventKind, exec_id: u64, now: i64) -> Event {
    Event {
        session: o.session,
        account: o.account,
        instrument: o.instrument,
        kind,
        order_id: o.id,
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
        cum_qty: o.cum,
        leaves_qty: o.leaves(),
        avg_px: o.avg_px(),
        last_px: Price(0),
        last_qty: Qty(0),
        trade_id: TradeId(0),
        exec_id,
        ts_ns: now,
        received_ns: o.received_ns,
        details: details(o),
    }
}

/// What reports repeat of an order beyond its type, prices and quantities.
fn details(o: &Order) -> OrderDetails {
    OrderDetails {
        post_only: o.post_only,
        display_qty: o.display,
        trailing: o.trailing,
        waiting: o.untriggered,
        pending: o.pending,
    }
}

/// A report that an order is done without further fills: leaves 0.
fn done(o: &Order, kind: EventKind, exec_id: u64, now: i64) -> Event {
    let mut e = report(o, kind, exec_id, now);
    e.leaves_qty = Qty(0);
    e
}

/// The order as the risk engine sees it.
fn working(o: &Order) -> WorkingOrder {
    WorkingOrder {
        account: o.account,
        instrument: o.instrument,
        side: o.side,
        price: o.price,
        qty: o.qty,
        cum_qty: o.cum,
    }
}

/// What trades and ends of orders do to the other orders of their lists, done once the
/// matching that caused them is over (slot and id of each, checked on use: the slot may have
/// been freed and reused meanwhile).
#[derive(Debug, Default)]
struct Follow {
    /// Orders to cancel: the other of a one-cancels-the-other pair that traded, triggered or
    /// ended; the other of a one-triggers-the-other list that ended unfilled.
    cancel: Vec<(u32, OrderId)>,
    /// Pending orders to place, oldest cause first: their working order filled completely.
    activate: Vec<(u32, OrderId)>,
}

impl Follow {
    fn with_capacity(n: usize) -> Self {
        Self {
            cancel: Vec::with_capacity(n),
            activate: Vec::with_capacity(n),
        }
    }

    /// The order in `slot` traded (even partly) or triggered: the other of its pair goes.
    fn traded(&mut self, orders: &mut Orders, slot: u32) {
        self.cancel.extend(orders.unlink_sibling(slot));
    }

    /// The order in `slot`, which traded ([`Follow::traded`]), filled completely: the pending
    /// order it triggers is placed.
    fn filled(&mut self, orders: &mut Orders, slot: u32) {
        if !orders.get(slot).pending {
            self.activate.extend(orders.unlink_list(slot));
        }
    }

    /// The order in `slot` ends unfilled (cancelled, expired, refused): every other order of
    /// its lists goes.
    fn ended(&mut self, orders: &mut Orders, slot: u32) {
        self.cancel.extend(orders.unlink_sibling(slot));
        self.cancel.extend(orders.unlink_list(slot));
    }
}

/// A working order found by [`Matcher::find`]: its slot and id, checked again on use so a
/// handle kept across commands can never reach another order that reused the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderHandle {
    slot: u32,
    id: OrderId,
}

/// All books and resting orders, and the id counters: everything of the core except the risk
/// state. Single-threaded by design (the core thread owns it).
///
/// Orders and replaces enter only as [`RiskChecked`] values, which only the risk crate makes,
/// so no path can reach a book without the risk checks. Cancels of every kind need no proof:
/// they only ever reduce risk.
#[derive(Debug)]
pub struct Matcher {
    orders: Orders,
    books: Vec<OrderBook>,
    ids: IdCounters,
    config: MatcherConfig,
    /// Orders of lists to cancel or place because of what another order of their list did:
    /// collected where matching must not touch other levels, done before the command's
    /// triggers run.
    follow: Follow,
    /// The venue connector slot of each routed instrument (by instrument id).
    routes: Vec<Option<SessionId>>,
    /// Client cancels of routed orders waiting for their venue's answer.
    route_cancels: Vec<route::RouteCancel>,
}

impl Matcher {
    /// An engine without books; add them with [`Matcher::add_book`]. Allocates the order store
    /// for `config.max_resting_orders` once.
    pub fn new(config: MatcherConfig) -> Self {
        Self {
            orders: Orders::new(config.max_resting_orders, config.accounts, config.sessions),
            books: Vec::new(),
            ids: IdCounters::default(),
            config,
            follow: Follow::with_capacity(64),
            routes: Vec::new(),
            route_cancels: Vec::with_capacity(route::MAX_ROUTE_CANCELS),
        }
    }

    /// Starts loading the order-store buckets `cmd` will look up (a new order's client id and
    /// the slots it takes if it rests; the order a cancel or replace names by client id), so
    /// the core can overlap those cache misses with the command before it. A hint only.
    pub fn prefetch(&self, cmd: &Command) {
        match cmd {
            // Called while the command before it (in a burst, most likely a new order taking
            // the current id) is still being processed: this one would be given the next id.
            Command::New(o) => self.orders.prefetch(
                self.orders.cl_tag(o.session, &o.cl_ord_id),
                Some(OrderId(self.ids.order.wrapping_add(1))),
            ),
            Command::Cancel(CancelOrder {
                session,
                order_id: None,
                orig_cl_ord_id,
                ..
            })
            | Command::Replace(ReplaceOrder {
                session,
                order_id: None,
                orig_cl_ord_id,
                ..
            }) => self
                .orders
                .prefetch(self.orders.cl_tag(*session, orig_cl_ord_id), None),
            _ => {}
        }
    }

    /// Makes sure a trading book exists for `instrument` (books are indexed by instrument id).
    pub fn add_book(&mut self, instrument: InstrumentId) {
        let i = instrument.0 as usize;
        while self.books.len() <= i {
            let id = InstrumentId(self.books.len() as u32);
            self.books.push(OrderBook::new(id, 0));
        }
        if !self.books[i].open {
            self.books[i] = OrderBook::new(instrument, self.config.levels_per_side);
            self.books[i].open = true;
        }
    }

    /// Closes the book of an instrument that will never trade again (expired), after its
    /// orders were ended: releases its level memory, and any order still sent to it is
    /// refused.
    pub fn close_book(&mut self, instrument: InstrumentId) {
        if let Some(b) = self.books.get_mut(instrument.0 as usize) {
            if b.order_count() == 0 && b.stop_count() == 0 {
                *b = OrderBook::new(instrument, 0);
            }
        }
    }

    /// Routes `instrument`'s orders to the venue connector in slot `venue` (`None`: they
    /// match on the instrument's book). Set before the first order.
    pub fn set_route(&mut self, instrument: InstrumentId, venue: Option<SessionId>) {
        let i = instrument.0 as usize;
        if self.routes.len() <= i {
            self.routes.resize(i + 1, None);
        }
        self.routes[i] = venue;
    }

    /// The venue connector slot `instrument`'s orders go to, if it is routed.
    pub fn route_of(&self, instrument: InstrumentId) -> Option<SessionId> {
        self.routes.get(instrument.0 as usize).copied().flatten()
    }

    /// The book of an instrument.
    pub fn book(&self, instrument: InstrumentId) -> Option<&OrderBook> {
        self.books.get(instrument.0 as usize)
    }

    /// The book of `instrument` as the market sees it: on each side its best price levels
    /// (at most `levels`), best first, each with the quantity its orders show (an iceberg
    /// only its shown part). It walks the levels' orders, at most half of `max_orders` a side:
    /// a level beyond that is left out, so a listing's cost is bounded whatever the book holds.
    pub fn depth(&self, instrument: InstrumentId, levels: usize, max_orders: usize) -> Depth {
        let side_of = |side: &BookSide| -> Vec<(Price, Qty)> {
            let mut budget = max_orders / 2;
            let mut out = Vec::with_capacity(levels.min(side.levels.len()));
            for l in side.levels.iter().rev().take(levels) {
                if l.count as usize > budget {
                    break;
                }
                budget -= l.count as usize;
                let mut shown: i128 = 0;
                let mut slot = l.head;
                while slot != NIL {
                    shown += i128::from(self.orders.get(slot).shown().0);
                    slot = self.orders.next(slot);
                }
                out.push((l.price, Qty(i64::try_from(shown).unwrap_or(i64::MAX))));
            }
            out
        };
        match self.books.get(instrument.0 as usize) {
            Some(b) => Depth {
                bids: side_of(&b.bids),
                asks: side_of(&b.asks),
                update_id: self.ids.exec.saturating_sub(1),
                last_trade: b.tape.last,
            },
            None => Depth::default(),
        }
    }

    /// Resting orders across all books.
    pub fn resting_orders(&self) -> usize {
        self.orders.len()
    }

    /// Whether orders entered by `session` still work (or wait for a trigger or a venue).
    pub fn session_has_orders(&self, session: SessionId) -> bool {
        self.orders.session_head(session) != NIL
    }

    /// Resting orders of one account (walks its list: for monitoring and tests).
    pub fn account_orders(&self, account: AccountId) -> u32 {
        let mut n = 0;
        let mut slot = self.orders.account_head(account);
        while slot != NIL {
            n += 1;
            slot = self.orders.account_next(slot);
        }
        n
    }

    /// The next ids to be assigned.
    pub fn ids(&self) -> IdCounters {
        self.ids
    }

    /// Appends a canonical dump of every book to `out`, for the state hash that checks a
    /// journal replay: per book, per side, the levels best first and each level's orders in
    /// time priority, with every field a report or a later match depends on, then the id
    /// counters. Read only; allocates only `out`'s growth.
    pub fn write_state(&self, out: &mut Vec<u8>) {
        for b in &self.books {
            out.extend_from_slice(&b.instrument.0.to_le_bytes());
            out.push(u8::from(b.open));
            for side in [&b.bids, &b.asks] {
                out.extend_from_slice(&(side.levels.len() as u64).to_le_bytes());
                for l in side.levels.iter().rev() {
                    out.extend_from_slice(&l.price.0.to_le_bytes());
                    out.extend_from_slice(&l.count.to_le_bytes());
                    let mut slot = l.head;
                    while slot != NIL {
                        let o = self.orders.get(slot);
                        out.extend_from_slice(&o.id.0.to_le_bytes());
                        out.push(o.cl_ord_id.as_bytes().len() as u8);
                        out.extend_from_slice(o.cl_ord_id.as_bytes());
                        out.extend_from_slice(&o.session.0.to_le_bytes());
                        out.extend_from_slice(&o.account.0.to_le_bytes());
                        out.extend_from_slice(&o.instrument.0.to_le_bytes());
                        write_order_state(out, o, &self.orders);
                        slot = self.orders.next(slot);
                    }
                }
            }
            if b.stop_count() == 0 {
                continue;
            }
            out.extend_from_slice(&b.tape.last.map_or(i64::MIN, |p| p.0).to_le_bytes());
            for stops in [&b.up_stops, &b.down_stops] {
                out.extend_from_slice(&(stops.entries.len() as u64).to_le_bytes());
                for e in &stops.entries {
                    write_order_state(out, self.orders.get(e.slot), &self.orders);
                }
            }
            // Only books with trailing stops add this, so older state hashes still compare.
            if !b.tape.trailing.is_empty() {
                out.extend_from_slice(&(b.tape.trailing.len() as u64).to_le_bytes());
                for &slot in &b.tape.trailing {
                    let o = self.orders.get(slot);
                    write_order_state(out, o, &self.orders);
                    let (phase, best) = match o.trail {
                        TrailPhase::Arming => (0u8, 0),
                        TrailPhase::Tracking(None) => (1, 0),
                        TrailPhase::Tracking(Some(p)) => (2, p.0),
                        TrailPhase::Due => (3, 0),
                    };
                    out.push(phase);
                    out.extend_from_slice(&best.to_le_bytes());
                }
            }
        }
        // Pending orders are in no book list; added only when some wait, so older state
        // hashes still compare.
        let mut pending: Vec<&Order> = (0..self.orders.high_water())
            .filter(|&slot| self.orders.is_live(slot) && self.orders.get(slot).pending)
            .map(|slot| self.orders.get(slot))
            .collect();
        if !pending.is_empty() {
            pending.sort_by_key(|o| o.id);
            out.extend_from_slice(&(pending.len() as u64).to_le_bytes());
            for o in pending {
                write_order_state(out, o, &self.orders);
            }
        }
        // Routed orders and the cancels waiting for their venues, likewise only when any.
        let mut routed: Vec<u32> = (0..self.orders.high_water())
            .filter(|&slot| self.orders.is_live(slot) && self.orders.route(slot).routed())
            .collect();
        if !routed.is_empty() || !self.route_cancels.is_empty() {
            routed.sort_by_key(|&slot| self.orders.get(slot).id);
            out.extend_from_slice(&(routed.len() as u64).to_le_bytes());
            for slot in routed {
                write_order_state(out, self.orders.get(slot), &self.orders);
                out.push(self.orders.route(slot).state_byte());
                out.extend_from_slice(&self.orders.venue_rev(slot).to_le_bytes());
            }
            let mut cancels = self.route_cancels.clone();
            cancels.sort_by_key(|c| (c.order, c.replace.is_some()));
            out.extend_from_slice(&(cancels.len() as u64).to_le_bytes());
            for c in cancels {
                out.extend_from_slice(&c.order.0.to_le_bytes());
                out.extend_from_slice(&c.session.0.to_le_bytes());
                out.push(c.cl_ord_id.as_bytes().len() as u8);
                out.extend_from_slice(c.cl_ord_id.as_bytes());
                out.extend_from_slice(&c.received_ns.to_le_bytes());
                if let Some((price, qty, tif)) = c.replace {
                    out.extend_from_slice(&price.0.to_le_bytes());
                    out.extend_from_slice(&qty.0.to_le_bytes());
                    out.push(tif.map_or(0xff, |t| t.code()));
                    out.extend_from_slice(
                        &tif.and_then(|t| t.expire_ns()).unwrap_or(0).to_le_bytes(),
                    );
                }
            }
        }
        for v in [self.ids.order, self.ids.exec, self.ids.trade] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Continues numbering from `next` (after a restart, from the journal). Refused (`false`)
    /// if an id is 0 or above [`MAX_ID`].
    pub fn resume_ids(&mut self, next: IdCounters) -> bool {
        let ok = |v: u64| (1..=MAX_ID).contains(&v);
        if !(ok(next.order) && ok(next.exec) && ok(next.trade)) {
            return false;
        }
        self.ids = next;
        true
    }

    /// A fresh exec id, for reports the core makes itself (risk rejects).
    pub(crate) fn next_exec_id(&mut self) -> u64 {
        self.ids.exec()
    }

    /// Finds a working order by engine id or, without one, by the session's client id —
    /// only among `account`'s orders (and `instrument`'s, if given): another account's order
    /// is "unknown", not "forbidden", so its existence does not leak.
    pub fn find(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        session: SessionId,
        order_id: Option<OrderId>,
        cl_ord_id: &ClOrdId,
    ) -> Option<OrderHandle> {
        let slot = match order_id {
            Some(id) => self.orders.find_by_id(id)?,
            None => self.orders.find_by_cl(session, cl_ord_id)?,
        };
        let o = self.orders.get(slot);
        (o.account == account && instrument.map_or(true, |i| i == o.instrument))
            .then_some(OrderHandle { slot, id: o.id })
    }

    /// Every working order of `account` (in the account's list order, not time order).
    pub fn working_orders(&self, account: AccountId) -> impl Iterator<Item = OrderSnapshot> + '_ {
        let mut slot = self.orders.account_head(account);
        std::iter::from_fn(move || {
            if slot == NIL {
                return None;
            }
            let here = slot;
            slot = self.orders.account_next(here);
            self.snapshot(OrderHandle {
                slot: here,
                id: self.orders.get(here).id,
            })
        })
    }

    fn resolve(&self, h: OrderHandle) -> Option<u32> {
        (self.orders.is_live(h.slot) && self.orders.get(h.slot).id == h.id).then_some(h.slot)
    }

    /// The order as the risk checks see it (for `check_replace`).
    pub fn working_order(&self, h: OrderHandle) -> Option<WorkingOrder> {
        self.resolve(h).map(|s| working(self.orders.get(s)))
    }

    /// The stop and take-profit orders of an instrument waiting for their trigger: those
    /// that trigger on a rise, then those that trigger on a fall, each in trigger order, then
    /// the trailing stops in the order they were accepted.
    pub fn waiting_stops(
        &self,
        instrument: InstrumentId,
    ) -> impl Iterator<Item = OrderSnapshot> + '_ {
        let book = self.books.get(instrument.0 as usize);
        let slots = book.into_iter().flat_map(|b| {
            b.up_stops
                .entries
                .iter()
                .rev()
                .chain(b.down_stops.entries.iter().rev())
                .map(|e| e.slot)
                .chain(b.tape.trailing.iter().copied())
        });
        slots.filter_map(move |slot| {
            self.snapshot(OrderHandle {
                slot,
                id: self.orders.get(slot).id,
            })
        })
    }

    /// Whether the order is a stop order still waiting for its trigger.
    pub fn is_untriggered(&self, h: OrderHandle) -> bool {
        self.resolve(h)
            .is_some_and(|s| self.orders.get(s).untriggered)
    }

    /// Whether the order is routed to a venue (replaced there only by a cancel and a new
    /// order).
    pub fn is_routed(&self, h: OrderHandle) -> bool {
        self.resolve(h)
            .is_some_and(|s| self.orders.route(s).routed())
    }

    /// A snapshot of a working order.
    pub fn snapshot(&self, h: OrderHandle) -> Option<OrderSnapshot> {
        let o = self.orders.get(self.resolve(h)?);
        Some(OrderSnapshot {
            session: o.session,
            account: o.account,
            instrument: o.instrument,
            order_id: o.id,
            cl_ord_id: o.cl_ord_id,
            side: o.side,
            ord_type: o.ord_type,
            tif: o.tif,
            price: o.price,
            qty: o.qty,
            cum_qty: o.cum,
            leaves_qty: o.leaves(),
            avg_px: o.avg_px(),
            received_ns: o.received_ns,
            details: details(o),
        })
    }

    fn can_accept(&self) -> bool {
        !self.ids.exhausted(self.orders.capacity() as u64)
    }

    /// Matches a new order that passed the risk checks: `New`, then fills (both sides), then
    /// `Canceled` for an IOC or market rest, `Expired` for a fill-or-kill that cannot fill
    /// completely; or one `Rejected` if the book refuses it (post-only that would trade,
    /// `TooManyOpenOrders` when the store is full, a ClOrdID still working on the session,
    /// post-only that is not GTC/Day/GTD or a stop, a GTD order whose expiry time is not after
    /// `now_ns`, ids exhausted, a trailing distance on an order that is not a stop or
    /// take-profit). A stop order the last trade has not reached waits after its `New` (it
    /// takes a place in the store), as does every trailing stop; then come the reports of the
    /// stop orders this order's trades triggered.
    pub fn submit(
        &mut self,
        order: RiskChecked<NewOrder>,
        now_ns: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        self.submit_order(order.get(), now_ns, fb, out);
    }

    pub(crate) fn submit_order(
        &mut self,
        o: &NewOrder,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        let mut taker = Order {
            id: OrderId(0),
            cl_ord_id: o.cl_ord_id,
            session: o.session,
            account: o.account,
            instrument: o.instrument,
            side: o.side,
            ord_type: o.ord_type,
            tif: o.tif,
            stp: o.stp,
            post_only: o.post_only,
            untriggered: false,
            price: o.price,
            qty: o.qty,
            cum: Qty(0),
            notional: 0,
            received_ns: o.received_ns,
            display: o.display_qty,
            tranche_end: o.display_qty,
            trailing: o.trailing,
            trail: TrailPhase::Arming,
            sibling: NIL,
            pending: false,
        };
        let stop_px = o.ord_type.stop_px();
        // A market order never rests, whatever its time in force; a stop order waits in the
        // store for its trigger, a pending order for its working order.
        let rests_working = rests_when_working(&taker);
        let i = o.instrument.0 as usize;
        let route = self.route_of(o.instrument);
        // A routed order waits in the store for its venue's reports, whatever its kind.
        let rests = o.pending || stop_px.is_some() || rests_working || route.is_some();
        let cl_tag = self.orders.cl_tag(o.session, &o.cl_ord_id);
        let reason = if i >= self.books.len() || !self.books[i].open {
            Some(RejectReason::UnknownInstrument)
        } else if o.qty.0 <= 0 {
            Some(RejectReason::QtyTooSmall)
        } else if o.tif.expire_ns().is_some_and(|t| t <= now) {
            Some(RejectReason::TooLateToEnter)
        } else if (o.post_only && (stop_px.is_some() || !rests_working))
            || !o.iceberg_ok()
            || (o.trailing.is_some() && stop_px.is_none())
            || (route.is_some() && !route::routable(o))
        {
            Some(RejectReason::Unsupported)
        } else if !o.trigger_ok() {
            Some(RejectReason::BadTick)
        } else if !self.can_accept() {
            Some(RejectReason::ServerBusy)
        } else if rests && self.orders.is_full() {
            Some(RejectReason::TooManyOpenOrders)
        } else if self
            .orders
            .find_by_cl_tag(cl_tag, o.session, &o.cl_ord_id)
            .is_some()
        {
            // Risk refuses ClOrdIDs seen today; this also covers a GTC order from an earlier
            // day that still works under the same id.
            Some(RejectReason::DuplicateClOrdId)
        } else if o
            .oco_with
            .is_some_and(|first| self.oco_first(o, first).is_none())
            || o.triggers
                .is_some_and(|pending| self.oto_pending(o, pending).is_none())
        {
            Some(RejectReason::OrderListRejected)
        } else if o.post_only
            && !o.pending
            && self.books[i]
                .side(o.side.opposite())
                .best()
                .is_some_and(|best| crosses(o.side, o.price, best))
        {
            Some(RejectReason::PostOnlyWouldTrade)
        } else {
            None
        };
        if let Some(reason) = reason {
            out(done(
                &taker,
                EventKind::Rejected(reason),
                self.ids.exec(),
                now,
            ));
            fb.on_order_closed(&working(&taker));
            self.cancel_unjoined(o, now, fb, out);
            return;
        }
        // Checked above: the first order of its pair, untouched; the pending order it
        // triggers, unlinked.
        let first = o.oco_with.and_then(|first| self.oco_first(o, first));
        let triggers = o
            .triggers
            .and_then(|pending| self.oto_pending(o, pending))
            .map(|slot| (slot, self.orders.get(slot).id));
        self.orders.reserve_owner(o.account, o.session);
        taker.id = OrderId(IdCounters::take(&mut self.ids.order));
        if let Some(venue) = route {
            self.route_new(taker, cl_tag, venue, now, out);
            return;
        }
        if o.pending {
            // It waits in the store alone until its working order fills.
            taker.pending = true;
            out(report(&taker, EventKind::New, self.ids.exec(), now));
            let slot = self.orders.insert(taker, cl_tag);
            if let Some(first) = first {
                self.link(first, slot);
            }
            return;
        }
        let book = &mut self.books[i];
        let last = book.tape.last;
        let trigger = o.ord_type.trigger(o.side);
        // A stop or take-profit whose price the last trade has already reached works at
        // once; a trailing stop always waits: it tracks from the last trade if it has no
        // activation price or the last trade has already reached it, else it arms first.
        let reached = trigger
            .is_some_and(|(stop_px, dir)| last.is_some_and(|last| dir.reached(stop_px, last)));
        if o.trailing.is_some() {
            let armed = reached || trigger.map_or(true, |(stop_px, _)| stop_px.0 == 0);
            taker.untriggered = true;
            taker.trail = if armed {
                TrailPhase::Tracking(last)
            } else {
                TrailPhase::Arming
            };
        } else {
            taker.untriggered = trigger.is_some() && !reached;
        }
        out(report(&taker, EventKind::New, self.ids.exec(), now));
        if taker.untriggered {
            let slot = self.orders.insert(taker, cl_tag);
            match trigger {
                Some((stop_px, dir)) if o.trailing.is_none() => {
                    book.stops_mut(dir).insert(dir, stop_px, slot)
                }
                _ => book.tape.trailing.push(slot),
            }
            if let Some(first) = first {
                self.link(first, slot);
            }
            return;
        }
        self.work(taker, cl_tag, triggers, now, fb, out);
        if let Some(first) = first {
            // A post-only limit that does not cross: it rests.
            if let Some(slot) = self.orders.find_by_cl(o.session, &o.cl_ord_id) {
                self.link(first, slot);
            }
        }
        self.run_triggers(i, now, fb, out);
    }

    /// The slot of the first order of the one-cancels-the-other pair `o` would complete: a
    /// working order of `o`'s session, account, instrument and side, untouched (nothing
    /// filled, in no pair); with `o`, a pair of orders that wait without trading: a post-only
    /// limit resting and a stop or take-profit waiting (one not already reached), or two of
    /// those. `None` if not.
    fn oco_first(&self, o: &NewOrder, first: OrderId) -> Option<u32> {
        let slot = self.orders.find_by_id(first)?;
        let f = self.orders.get(slot);
        let same = f.account == o.account
            && f.session == o.session
            && f.instrument == o.instrument
            && f.side == o.side;
        if !same
            || f.cum.0 != 0
            || f.sibling != NIL
            || f.pending != o.pending
            || self.orders.list(slot) != NIL
        {
            return None;
        }
        // A pending pair's stops are checked against the market when they are placed.
        let first_limit = if f.pending {
            f.ord_type.stop_px().is_none()
        } else {
            !f.untriggered
        };
        let second_limit = o.ord_type.stop_px().is_none();
        if first_limit && (!f.post_only || second_limit) {
            return None;
        }
        if second_limit {
            return (o.post_only && o.ord_type == OrdType::Limit).then_some(slot);
        }
        if o.pending {
            return Some(slot);
        }
        // A stop already reached would work at once; a trailing stop always waits.
        let last = self.books[o.instrument.0 as usize].tape.last;
        let reached = o
            .ord_type
            .trigger(o.side)
            .is_some_and(|(stop_px, dir)| last.is_some_and(|last| dir.reached(stop_px, last)));
        (o.trailing.is_some() || !reached).then_some(slot)
    }

    /// The slot of the pending order `o` would trigger as the working order of a
    /// one-triggers-the-other list: a pending order of `o`'s session, account and instrument,
    /// untouched and in no list yet (it may be one of a pending pair); `o` itself a limit
    /// order in no other list. `None` if not.
    fn oto_pending(&self, o: &NewOrder, pending: OrderId) -> Option<u32> {
        let slot = self.orders.find_by_id(pending)?;
        let p = self.orders.get(slot);
        let fits = p.pending
            && self.orders.list(slot) == NIL
            && p.cum.0 == 0
            && p.account == o.account
            && p.session == o.session
            && p.instrument == o.instrument
            && !o.pending
            && o.oco_with.is_none()
            && o.ord_type == OrdType::Limit
            && o.trailing.is_none();
        fits.then_some(slot)
    }

    /// Pairs two orders: one cancels the other.
    fn link(&mut self, a: u32, b: u32) {
        self.orders.get_mut(a).sibling = b;
        self.orders.get_mut(b).sibling = a;
    }

    /// The order `o` of a list was refused: the list's orders placed before it are
    /// cancelled while they are untouched orders of the session in no other list (the list
    /// is refused whole): the first of its pair, or the pending order (pair) it triggers.
    pub(crate) fn cancel_unjoined(
        &mut self,
        o: &NewOrder,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        for (id, pending) in [(o.oco_with, false), (o.triggers, true)] {
            let Some(slot) = id.and_then(|id| self.orders.find_by_id(id)) else {
                continue;
            };
            let f = self.orders.get(slot);
            let alone = if pending {
                f.pending && self.orders.list(slot) == NIL
            } else {
                f.sibling == NIL
            };
            if f.account == o.account && f.session == o.session && f.cum.0 == 0 && alone {
                self.close(slot, EventKind::Canceled, None, now, fb, out);
            }
        }
        self.drain_cascade(now, fb, out);
    }

    /// Cancels the orders whose list's other order traded, triggered or ended, then places
    /// the pending orders whose working order filled (each may trade, and so cancel or place
    /// more).
    fn drain_cascade(
        &mut self,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        loop {
            if let Some((slot, id)) = self.follow.cancel.pop() {
                if self.orders.is_live(slot) && self.orders.get(slot).id == id {
                    self.close(slot, EventKind::Canceled, None, now, fb, out);
                }
                continue;
            }
            if self.follow.activate.is_empty() {
                return;
            }
            let (slot, id) = self.follow.activate.remove(0);
            if self.orders.is_live(slot) {
                let o = self.orders.get(slot);
                if o.id == id && o.pending {
                    self.activate(slot, now, fb, out);
                }
            }
        }
    }

    /// Places the pending order in `slot`, whose working order filled completely: reported
    /// `Activated`, it then waits for its trigger or works as a new order entered now would
    /// (a post-only limit that would trade is refused); the other order of a pending pair is
    /// placed after it.
    fn activate(
        &mut self,
        slot: u32,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        let o = *self.orders.get(slot);
        let i = o.instrument.0 as usize;
        if o.sibling != NIL && self.orders.get(o.sibling).pending {
            let other = self.orders.get(o.sibling).id;
            self.follow.activate.push((o.sibling, other));
        }
        let last = self.books[i].tape.last;
        let trigger = o.ord_type.trigger(o.side);
        let reached = trigger
            .is_some_and(|(stop_px, dir)| last.is_some_and(|last| dir.reached(stop_px, last)));
        let waits = o.trailing.is_some() || (trigger.is_some() && !reached);
        let node = self.orders.get_mut(slot);
        node.pending = false;
        node.untriggered = waits;
        if o.trailing.is_some() {
            let armed = reached || trigger.map_or(true, |(stop_px, _)| stop_px.0 == 0);
            node.trail = if armed {
                TrailPhase::Tracking(last)
            } else {
                TrailPhase::Arming
            };
        }
        let o = *node;
        out(report(&o, EventKind::Activated, self.ids.exec(), now));
        let book = &mut self.books[i];
        match trigger {
            Some(_) if o.trailing.is_some() => return book.tape.trailing.push(slot),
            Some((stop_px, dir)) if waits => return book.stops_mut(dir).insert(dir, stop_px, slot),
            _ => {}
        }
        if o.post_only {
            // Half of a pair resting without trading, as when a pair is placed.
            let crossing = book
                .side(o.side.opposite())
                .best()
                .is_some_and(|best| crosses(o.side, o.price, best));
            if !crossing {
                return book.side_mut(o.side).push_back(&mut self.orders, slot);
            }
            self.follow.ended(&mut self.orders, slot);
            let o = self.orders.remove(slot);
            out(done(
                &o,
                EventKind::Rejected(RejectReason::PostOnlyWouldTrade),
                self.ids.exec(),
                now,
            ));
            fb.on_order_closed(&working(&o));
            return;
        }
        // It works now: the other of its pair is cancelled first, as for a trigger.
        self.follow.traded(&mut self.orders, slot);
        self.drain_cascade_cancels(now, fb, out);
        let o = self.orders.remove(slot);
        let cl_tag = self.orders.cl_tag(o.session, &o.cl_ord_id);
        self.work(o, cl_tag, None, now, fb, out);
    }

    /// The cancels of [`drain_cascade`](Self::drain_cascade) only.
    fn drain_cascade_cancels(
        &mut self,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        while let Some((slot, id)) = self.follow.cancel.pop() {
            if self.orders.is_live(slot) && self.orders.get(slot).id == id {
                self.close(slot, EventKind::Canceled, None, now, fb, out);
            }
        }
    }

    /// Matches an accepted order that is now working (new, or a stop just triggered): a
    /// fill-or-kill that cannot fill completely expires, what trades is reported, a rest
    /// that may rest goes to the back of its level, any other rest is cancelled. `pending`:
    /// the pending order (slot, id) this working order of a list triggers.
    fn work(
        &mut self,
        mut taker: Order,
        cl_tag: u32,
        pending: Option<(u32, OrderId)>,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        let stp = taker.stp.unwrap_or(self.config.default_stp);
        let book = &mut self.books[taker.instrument.0 as usize];
        let (opp, tape) = book.opposite_and_tape(taker.side);
        // The working order of a list is not in the store yet: its pending order is placed
        // if it fills, joined to it if it rests, cancelled otherwise.
        if taker.tif == TimeInForce::Fok && !fok_fillable(opp, &self.orders, &taker, stp) {
            out(done(&taker, EventKind::Expired, self.ids.exec(), now));
            fb.on_order_closed(&working(&taker));
            self.follow.cancel.extend(pending);
            return;
        }
        let stopped = match_taker(
            opp,
            tape,
            &mut self.orders,
            &mut self.ids,
            &mut self.follow,
            &mut taker,
            stp,
            now,
            fb,
            out,
        );
        if taker.leaves().0 == 0 {
            self.follow.activate.extend(pending);
            return;
        }
        if rests_when_working(&taker) && !stopped {
            let slot = self.orders.insert(taker, cl_tag);
            book.side_mut(taker.side).push_back(&mut self.orders, slot);
            if let Some((p, _)) = pending {
                self.orders.link_list(slot, p);
            }
            return;
        }
        out(done(&taker, EventKind::Canceled, self.ids.exec(), now));
        fb.on_order_closed(&working(&taker));
        self.follow.cancel.extend(pending);
    }

    /// Works every stop and take-profit order of book `i` that a trade since triggers last
    /// ran has reached, in trigger order (of those triggering on a rise the lowest price
    /// first, on a fall the highest, then time; the older of the two next ones), until none
    /// is: each may trade and so trigger more.
    fn run_triggers(
        &mut self,
        i: usize,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        loop {
            // Orders whose pair's other order traded are cancelled before any trigger runs.
            self.drain_cascade(now, fb, out);
            let book = &self.books[i];
            let Some((low, high)) = book.tape.range else {
                return;
            };
            // The next of each kind: stops triggering up, down, and due trailing stops; the
            // oldest of them works first.
            let up = book.up_stops.next_triggered(TriggerDirection::Up, high);
            let down = book.down_stops.next_triggered(TriggerDirection::Down, low);
            let due = book.tape.first_due(&self.orders);
            let candidates = [
                up.map(|e| (e.slot, Some(TriggerDirection::Up))),
                down.map(|e| (e.slot, Some(TriggerDirection::Down))),
                due.map(|(_, slot)| (slot, None)),
            ];
            let Some((_, dir)) = candidates
                .into_iter()
                .flatten()
                .min_by_key(|&(slot, _)| self.orders.get(slot).id)
            else {
                let tape = &mut self.books[i].tape;
                tape.range = None;
                tape.trailing_due = false;
                return;
            };
            let slot = match (dir, due) {
                (Some(dir), _) => match self.books[i].stops_mut(dir).entries.pop() {
                    Some(entry) => entry.slot,
                    None => return,
                },
                (None, Some((k, slot))) => {
                    self.books[i].tape.trailing.remove(k);
                    slot
                }
                (None, None) => return,
            };
            // One of a pair triggers: the other is cancelled before it works.
            self.follow.traded(&mut self.orders, slot);
            let mut o = self.orders.remove(slot);
            o.untriggered = false;
            out(report(&o, EventKind::Triggered, self.ids.exec(), now));
            self.drain_cascade(now, fb, out);
            let cl_tag = self.orders.cl_tag(o.session, &o.cl_ord_id);
            self.work(o, cl_tag, None, now, fb, out);
        }
    }

    /// Takes a resting order (or a stop waiting for its trigger) out of its book and the
    /// store.
    fn take_resting(&mut self, slot: u32) -> Order {
        let o = *self.orders.get(slot);
        if o.pending || self.orders.route(slot).routed() {
            return self.orders.remove(slot);
        }
        let book = &mut self.books[o.instrument.0 as usize];
        if o.untriggered && o.trailing.is_some() {
            let trailing = &mut book.tape.trailing;
            match trailing.iter().position(|&s| s == slot) {
                Some(k) => {
                    trailing.remove(k);
                }
                None => debug_assert!(false, "waiting trailing stop not in its list"),
            }
            return self.orders.remove(slot);
        }
        match o.ord_type.trigger(o.side).filter(|_| o.untriggered) {
            Some((stop_px, dir)) => book.stops_mut(dir).remove(dir, stop_px, slot),
            None => book.side_mut(o.side).remove(&mut self.orders, slot),
        }
        self.orders.remove(slot)
    }

    /// Ends a resting order with a `Canceled` or `Expired` report (to the requester when a
    /// client asked, with the request's ClOrdID and the order's as OrigClOrdID).
    fn close(
        &mut self,
        slot: u32,
        kind: EventKind,
        requester: Option<&CancelOrder>,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        if self.orders.route(slot).routed() {
            // Its venue decides: the cancel goes there, and its answer ends the order.
            let _ = self.route_cancel(slot, requester, now, out);
            return;
        }
        self.follow.ended(&mut self.orders, slot);
        let o = self.take_resting(slot);
        let mut e = done(&o, kind, self.ids.exec(), now);
        // Cancelled by another session of the account (by OrderID): the order's own session
        // is told too, unsolicited as for a mass cancel, under the same ExecID (one
        // execution, two views of it).
        let mut owner = None;
        if let Some(r) = requester {
            if r.session != o.session {
                owner = Some(e);
            }
            e.session = r.session;
            e.orig_cl_ord_id = o.cl_ord_id;
            e.cl_ord_id = r.cl_ord_id;
        }
        out(e);
        if let Some(owner) = owner {
            out(owner);
        }
        fb.on_order_closed(&working(&o));
    }

    /// Cancels a working order on a checked request; `UnknownOrder` if the handle no longer
    /// names a working order.
    pub fn cancel(
        &mut self,
        h: OrderHandle,
        req: RiskChecked<CancelOrder>,
        now_ns: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> Result<(), RejectReason> {
        let slot = self.resolve(h).ok_or(RejectReason::UnknownOrder)?;
        if self.orders.route(slot).routed() {
            return self.route_cancel(slot, Some(req.get()), now_ns, out);
        }
        self.close(slot, EventKind::Canceled, Some(req.get()), now_ns, fb, out);
        self.drain_cascade(now_ns, fb, out);
        Ok(())
    }

    /// Replaces a working order's price and/or quantity on a checked request. Keeps its time
    /// priority only for a quantity decrease (or no change) at the same price; otherwise it
    /// goes to the back of the (new) level, and if the new price crosses, it trades at once.
    /// On success reports `Replaced` (to the requester) and then any fills; the error is the
    /// reason for an OrderCancelReject and changes nothing.
    pub fn replace(
        &mut self,
        h: OrderHandle,
        req: RiskChecked<ReplaceOrder>,
        now_ns: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> Result<(), RejectReason> {
        let slot = self.resolve(h).ok_or(RejectReason::UnknownOrder)?;
        self.replace_slot(slot, req.get(), now_ns, fb, out)
    }

    pub(crate) fn replace_slot(
        &mut self,
        slot: u32,
        req: &ReplaceOrder,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> Result<(), RejectReason> {
        let i = self.orders.get(slot).instrument.0 as usize;
        self.replace_working(slot, req, now, fb, out)?;
        self.run_triggers(i, now, fb, out);
        Ok(())
    }

    fn replace_working(
        &mut self,
        slot: u32,
        req: &ReplaceOrder,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> Result<(), RejectReason> {
        let old = *self.orders.get(slot);
        let i = old.instrument.0 as usize;
        if old.untriggered || old.pending || old.sibling != NIL || self.orders.list(slot) != NIL {
            // A waiting stop, or an order of a list, is changed by cancelling it and entering
            // a new one.
            return Err(RejectReason::Unsupported);
        }
        if req.qty.0 <= old.cum.0 {
            return Err(RejectReason::QtyTooSmall);
        }
        if !old.ord_type.is_market() && req.price.0 <= 0 {
            return Err(RejectReason::BadTick);
        }
        if let Some(tif) = req.tif {
            if !tif.rests() {
                return Err(RejectReason::Unsupported);
            }
            if tif.expire_ns().is_some_and(|t| t <= now) {
                return Err(RejectReason::TooLateToEnter);
            }
        }
        if !self.can_accept() {
            return Err(RejectReason::ServerBusy);
        }
        if req.cl_ord_id != old.cl_ord_id
            && self
                .orders
                .find_by_cl(old.session, &req.cl_ord_id)
                .is_some()
        {
            return Err(RejectReason::DuplicateClOrdId);
        }
        let opp_best = self.books[i].side(old.side.opposite()).best();
        let crossing = opp_best.is_some_and(|b| crosses(old.side, req.price, b));
        if old.post_only && crossing {
            return Err(RejectReason::PostOnlyWouldTrade);
        }
        let new_leaves = req.qty.0 - old.cum.0;
        let keep = req.price == old.price && new_leaves <= old.leaves().0;
        let book = &mut self.books[i];
        if keep {
            let side = book.side_mut(old.side);
            if let Ok(l) = side.search(old.price) {
                side.levels[l].qty -= i128::from(old.leaves().0 - new_leaves);
            }
            self.orders.get_mut(slot).qty = req.qty;
        } else {
            book.side_mut(old.side).remove(&mut self.orders, slot);
            let o = self.orders.get_mut(slot);
            o.price = req.price;
            o.qty = req.qty;
        }
        if req.cl_ord_id != old.cl_ord_id {
            self.orders.rekey_cl(slot, req.cl_ord_id);
        }
        // A new time in force or expiry alone keeps the order's place.
        if let Some(tif) = req.tif.filter(|&t| t != old.tif) {
            self.orders.set_tif(slot, tif);
        }
        let mut e = report(
            self.orders.get(slot),
            EventKind::Replaced,
            self.ids.exec(),
            now,
        );
        e.session = req.session;
        e.orig_cl_ord_id = old.cl_ord_id;
        out(e);
        if req.session != old.session {
            // As for a cancel: the order's own session hears of it too, same ExecID.
            out(Event {
                session: old.session,
                ..e
            });
        }
        fb.on_replaced(&working(&old), req.price, req.qty);
        if keep {
            return Ok(());
        }
        let mut taker = *self.orders.get(slot);
        let stopped = if crossing {
            let stp = taker.stp.unwrap_or(self.config.default_stp);
            let (opp, tape) = self.books[i].opposite_and_tape(old.side);
            match_taker(
                opp,
                tape,
                &mut self.orders,
                &mut self.ids,
                &mut self.follow,
                &mut taker,
                stp,
                now,
                fb,
                out,
            )
        } else {
            false
        };
        *self.orders.get_mut(slot) = taker;
        if taker.leaves().0 > 0 && !stopped {
            self.books[i]
                .side_mut(old.side)
                .push_back(&mut self.orders, slot);
            return Ok(());
        }
        // Done: filled completely, or cancelled by self-trade prevention. It is in no level
        // now, so only the store forgets it.
        let o = self.orders.remove(slot);
        if o.leaves().0 > 0 {
            out(done(&o, EventKind::Canceled, self.ids.exec(), now));
            fb.on_order_closed(&working(&o));
        }
        Ok(())
    }

    /// Cancels every working order of an account (optionally only in one instrument), each
    /// with a `Canceled` report to its own session; returns how many (mass cancel, kill
    /// switch).
    pub fn cancel_account(
        &mut self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        now_ns: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> u32 {
        let mut n = 0;
        let mut slot = self.orders.account_head(account);
        while slot != NIL {
            let next = self.orders.account_next(slot);
            if instrument.map_or(true, |i| i == self.orders.get(slot).instrument) {
                self.close(slot, EventKind::Canceled, None, now_ns, fb, out);
                n += 1;
            }
            slot = next;
        }
        // The other orders of pairs are the account's too, cancelled above: found gone.
        self.drain_cascade(now_ns, fb, out);
        n
    }

    /// Cancels every working order entered by a session (cancel-on-disconnect); returns how
    /// many.
    pub fn cancel_session(
        &mut self,
        session: SessionId,
        now_ns: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> u32 {
        let mut n = 0;
        let mut slot = self.orders.session_head(session);
        while slot != NIL {
            let next = self.orders.session_next(slot);
            self.close(slot, EventKind::Canceled, None, now_ns, fb, out);
            n += 1;
            slot = next;
        }
        self.drain_cascade(now_ns, fb, out);
        n
    }

    /// Cancels every working order (global kill switch); returns how many. Scans the store:
    /// for a rare, global action.
    pub fn cancel_all(
        &mut self,
        now_ns: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> u32 {
        self.close_where(EventKind::Canceled, |_| true, now_ns, fb, out)
    }

    /// Ends every working Day order with an `Expired` report (end of the trading day);
    /// returns how many.
    pub fn expire_day_orders(
        &mut self,
        now_ns: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> u32 {
        self.close_where(
            EventKind::Expired,
            |o| o.tif == TimeInForce::Day,
            now_ns,
            fb,
            out,
        )
    }

    /// When the next good-till-date order expires (ns since the epoch); `None` if none works.
    /// One read: the core loop checks it every turn.
    pub fn next_expiry(&self) -> Option<i64> {
        self.orders.next_expiry().map(|(t, _)| t)
    }

    /// Ends every good-till-date order whose expiry time is at or before `now_ns` with an
    /// `Expired` report, earliest expiry (then oldest order) first; returns how many.
    pub fn expire_due(
        &mut self,
        now_ns: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> u32 {
        let mut n = 0;
        while let Some((t, slot)) = self.orders.next_expiry() {
            if t > now_ns {
                break;
            }
            // `close` frees the slot, which takes it out of the expiry heap.
            self.close(slot, EventKind::Expired, None, now_ns, fb, out);
            n += 1;
        }
        // The other order of an expired one's pair is cancelled (not counted as expired).
        self.drain_cascade(now_ns, fb, out);
        n
    }

    fn close_where(
        &mut self,
        kind: EventKind,
        mut pred: impl FnMut(&Order) -> bool,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> u32 {
        let mut n = 0;
        for slot in 0..self.orders.high_water() {
            // A routed order's venue expires it, not this engine.
            let venue_ends = kind == EventKind::Expired && self.orders.route(slot).routed();
            if self.orders.is_live(slot) && !venue_ends && pred(self.orders.get(slot)) {
                self.close(slot, kind, None, now, fb, out);
                n += 1;
            }
        }
        self.drain_cascade(now, fb, out);
        n
    }

    /// Ends every resting order of one instrument with an `Expired` report (the contract
    /// expired); returns how many.
    pub fn expire_instrument(
        &mut self,
        instrument: InstrumentId,
        now_ns: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> u32 {
        let i = instrument.0 as usize;
        if i >= self.books.len() {
            return 0;
        }
        let mut n = 0;
        for (side, dir) in [
            (Side::Buy, TriggerDirection::Up),
            (Side::Sell, TriggerDirection::Down),
        ] {
            // Always the best level's head: `close` unlinks it and drops emptied levels.
            while let Some(slot) = self.books[i].side(side).levels.last().map(|l| l.head) {
                self.close(slot, EventKind::Expired, None, now_ns, fb, out);
                n += 1;
            }
            while let Some(e) = self.books[i].stops(dir).entries.last().copied() {
                self.close(e.slot, EventKind::Expired, None, now_ns, fb, out);
                n += 1;
            }
        }
        while let Some(&slot) = self.books[i].tape.trailing.last() {
            self.close(slot, EventKind::Expired, None, now_ns, fb, out);
            n += 1;
        }
        // Pending orders of lists are in no book list; most went with their working orders.
        for slot in 0..self.orders.high_water() {
            if self.orders.is_live(slot) {
                let o = self.orders.get(slot);
                if o.pending && o.instrument == instrument {
                    self.close(slot, EventKind::Expired, None, now_ns, fb, out);
                    n += 1;
                }
            }
        }
        self.drain_cascade(now_ns, fb, out);
        n
    }
}

/// Whether a working order's unfilled rest stays in the book (limit GTC, Day and GTD orders).
fn rests_when_working(o: &Order) -> bool {
    !o.ord_type.is_market() && o.tif.rests()
}

/// True if a fill-or-kill order can fill completely now. Walks resting orders in priority
/// order as matching would, so self-trade prevention is accounted for exactly: an own order
/// that would be cancelled (cancel-resting) is skipped, one that would stop the incoming order
/// ends the walk. Icebergs' hidden parts come after the whole level, where their refreshed
/// parts go.
fn fok_fillable(opp: &BookSide, orders: &Orders, taker: &Order, stp: StpMode) -> bool {
    let mut need = taker.leaves().0;
    for level in opp.levels.iter().rev() {
        if !taker.ord_type.is_market() && !crosses(taker.side, taker.price, level.price) {
            return false;
        }
        let mut hidden = 0i64;
        let mut slot = level.head;
        while slot != NIL {
            let m = orders.get(slot);
            if m.account == taker.account {
                if stp != StpMode::CancelResting {
                    return false;
                }
            } else {
                let shown = m.shown().0;
                need -= shown;
                hidden += m.leaves().0 - shown;
                if need <= 0 {
                    return true;
                }
            }
            slot = orders.next(slot);
        }
        need -= hidden;
        if need <= 0 {
            return true;
        }
    }
    false
}

/// Matches `taker` against the opposite side until it is filled, the book no longer crosses
/// its limit, or self-trade prevention stops it (returns `true` then: the caller cancels the
/// rest). Trades at the resting order's price; reports both sides of each fill and removes
/// filled makers.
#[allow(clippy::too_many_arguments)]
fn match_taker(
    opp: &mut BookSide,
    tape: &mut Tape,
    orders: &mut Orders,
    ids: &mut IdCounters,
    follow: &mut Follow,
    taker: &mut Order,
    stp: StpMode,
    now: i64,
    fb: &mut impl Feedback,
    out: &mut (impl FnMut(Event) + ?Sized),
) -> bool {
    let mut stopped = false;
    while taker.leaves().0 > 0 && !stopped {
        let Some(li) = opp.levels.len().checked_sub(1) else {
            break;
        };
        let px = opp.levels[li].price;
        if !taker.ord_type.is_market() && !crosses(taker.side, taker.price, px) {
            break;
        }
        let mut slot = opp.levels[li].head;
        while slot != NIL && taker.leaves().0 > 0 {
            let next = orders.next(slot);
            if orders.get(slot).account == taker.account {
                // Self-trade prevention: the incoming order's mode decides.
                if stp != StpMode::CancelIncoming {
                    follow.ended(orders, slot);
                    opp.unlink(li, orders, slot);
                    let m = orders.remove(slot);
                    out(done(&m, EventKind::Canceled, ids.exec(), now));
                    fb.on_order_closed(&working(&m));
                }
                if stp != StpMode::CancelResting {
                    stopped = true;
                    break;
                }
                slot = next;
                continue;
            }
            let q = taker.leaves().0.min(orders.get(slot).shown().0);
            let trade = ids.trade();
            tape.record(px, orders);
            opp.levels[li].qty -= i128::from(q);
            let notional = i128::from(px.0) * i128::from(q);
            // One of a pair trades: the other is cancelled (after this command's matching).
            follow.traded(orders, slot);
            let m = orders.get_mut(slot);
            let maker_before = working(m);
            m.cum.0 += q;
            m.notional += notional;
            let maker = *m;
            let taker_before = working(taker);
            taker.cum.0 += q;
            taker.notional += notional;
            let sides = [
                (&maker, maker_before, ids.exec()),
                (&*taker, taker_before, ids.exec()),
            ];
            for (o, before, exec) in sides {
                let kind = if o.leaves().0 == 0 {
                    EventKind::Fill
                } else {
                    EventKind::PartialFill
                };
                let mut e = report(o, kind, exec, now);
                e.last_px = px;
                e.last_qty = Qty(q);
                e.trade_id = trade;
                out(e);
                fb.on_fill(&before, px, Qty(q));
            }
            if maker.leaves().0 == 0 {
                // Filled: the pending order it triggers is placed (after this matching).
                follow.filled(orders, slot);
                opp.unlink(li, orders, slot);
                orders.remove(slot);
            } else if maker.shown().0 == 0 {
                // An iceberg's shown part is used up: its next part goes to the back of the
                // level, behind the orders that were waiting there (this taker may reach it).
                opp.unlink(li, orders, slot);
                opp.push_back(orders, slot);
            }
            slot = next;
        }
        if opp.levels[li].count == 0 {
            opp.levels.pop();
        }
    }
    stopped
}

mod route;
mod snapshot;

#[cfg(test)]
mod tests;
