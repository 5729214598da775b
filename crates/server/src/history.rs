//! Every account's recent orders and trades, as the journal tells them: what `allOrders`,
//! `myTrades` and `order.status` answer about orders that are no longer working, or that
//! another connection or FIX session entered.
//!
//! The history follows the journal on a thread of its own (as the drop copy does), up to the
//! last record the journal thread has acknowledged, so the core's hot path does nothing for
//! it and a restart rebuilds it from the records the journal still holds. It keeps the last
//! `orders_per_account` orders and `trades_per_account` trades of each account, the oldest
//! forgotten first, so its memory is bounded whatever the traffic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use portcullis_journal::{JournalError, JournalRecord, JournalTail, Seq};
use portcullis_types::{
    AccountId, ClOrdId, Command, Event, EventKind, InstrumentId, NewOrder, OrdType, OrderId, Price,
    Qty, RouteRequest, SessionId, Side, TimeInForce, TrailingDelta,
};
use serde::Deserialize;
use tracing::{info, warn};

use crate::at_rest::KeyringCell;

/// Records applied under one hold of the lock, so a query never waits long for the feed.
const RECORDS_PER_LOCK: usize = 512;
/// The shortest time between two passes over the journal: under load the history takes the
/// records of many journal batches in one pass rather than waking for each.
const WAKE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// The `[history]` section: how much of each account's past the server keeps for `allOrders`,
/// `myTrades` and `order.status`. Each order costs about 250 bytes, each trade about 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryLimits {
    /// The most recent orders kept per account, working or ended (0 = no history: `allOrders`
    /// and `myTrades` answer -1020). Default 100,000; at most 10,000,000.
    pub orders_per_account: usize,
    /// The most recent trades kept per account. Default 100,000; at most 10,000,000.
    pub trades_per_account: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            orders_per_account: 100_000,
            trades_per_account: 100_000,
        }
    }
}

impl HistoryLimits {
    /// The largest value of either limit.
    pub const MAX: usize = 10_000_000;

    /// True if the server keeps a history at all.
    pub fn enabled(&self) -> bool {
        self.orders_per_account > 0
    }
}

/// Where an order stands, as its last event told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    /// The pending order of a one-triggers-the-other list: accepted, placed once its
    /// working order fills.
    Pending,
    /// Working, nothing filled.
    Working,
    /// Working, partly filled.
    PartiallyFilled,
    /// Completely filled.
    Filled,
    /// Cancelled.
    Canceled,
    /// Expired (FOK, Day, option expiry, self-trade prevention).
    Expired,
}

impl OrderState {
    /// True while the order is open: on the book, waiting for its trigger or pending.
    pub fn is_working(self) -> bool {
        matches!(
            self,
            OrderState::Pending | OrderState::Working | OrderState::PartiallyFilled
        )
    }
}

/// One order of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastOrder {
    /// The instrument.
    pub instrument: InstrumentId,
    /// The engine's id.
    pub order_id: OrderId,
    /// The client's id (the latest, after a replace).
    pub cl_ord_id: ClOrdId,
    /// The session or connection that entered it.
    pub session: SessionId,
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
    /// Σ price × quantity of the fills, at the scale of price × quantity.
    pub cum_quote: i128,
    /// Average fill price, as the engine rounded it.
    pub avg_px: Price,
    /// Where it stands.
    pub state: OrderState,
    /// When its command was received, ns since the epoch.
    pub created_ns: i64,
    /// Its last event, ns since the epoch.
    pub updated_ns: i64,
    /// When it started working on the book (-1: never).
    pub working_ns: i64,
    /// An iceberg's displayed quantity (`Qty(0)`: none).
    pub display_qty: Qty,
    /// A trailing stop's distance.
    pub trailing: Option<TrailingDelta>,
}

impl PastOrder {
    /// The order an event names, in `state`, as the event tells it: created when its
    /// command was received, updated at the event, not (yet) known to have worked.
    pub fn of_event(e: &Event, state: OrderState) -> Self {
        PastOrder {
            instrument: e.instrument,
            order_id: e.order_id,
            cl_ord_id: e.cl_ord_id,
            session: e.session,
            side: e.side,
            ord_type: e.ord_type,
            tif: e.tif,
            price: e.price,
            qty: e.qty,
            cum_qty: e.cum_qty,
            cum_quote: i128::from(e.avg_px.0) * i128::from(e.cum_qty.0),
            avg_px: e.avg_px,
            state,
            created_ns: e.received_ns,
            updated_ns: e.ts_ns,
            working_ns: -1,
            display_qty: e.details.display_qty,
            trailing: e.details.trailing,
        }
    }
}

/// One trade of an account: one side of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastTrade {
    /// The instrument.
    pub instrument: InstrumentId,
    /// The engine's trade id (shared by the two sides).
    pub trade_id: u64,
    /// The account's order.
    pub order_id: OrderId,
    /// The account's side.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// When it traded, ns since the epoch.
    pub ts_ns: i64,
    /// The account's order was resting on the book.
    pub maker: bool,
}

/// Which orders or trades of one instrument a query wants; times in ns since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Orders: from this order id up. Trades: only this order's.
    pub order_id: Option<u64>,
    /// Trades: from this trade id up.
    pub from_trade_id: Option<u64>,
    /// From this time on (inclusive).
    pub start_ns: Option<i64>,
    /// Up to this time (inclusive).
    pub end_ns: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// An order list of an account: orders joined one-cancels-the-other or
/// one-triggers-the-other, as the journal's new-order commands joined them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastList {
    /// The list's id: its first order's id.
    pub id: OrderId,
    /// The instrument.
    pub instrument: InstrumentId,
    /// A working order triggers pending orders (else one cancels the other).
    pub triggers: bool,
    /// The orders in the order they were placed.
    pub orders: Vec<OrderId>,
    /// When its first order was received, ns since the epoch.
    pub created_ns: i64,
}

/// One account's past.
#[derive(Debug, Default)]
struct AccountPast {
    /// Orders of lists whose acceptance is awaited: (session, client id) → the order joined
    /// and whether this one triggers it (else pairs with it). At most one per session and
    /// client id, gone with the order's first event.
    joins: HashMap<(SessionId, ClOrdId), (OrderId, bool)>,
    /// Order lists by id, and the list of each order in one.
    lists: BTreeMap<u64, PastList>,
    list_of: HashMap<u64, u64>,
    orders: HashMap<InstrumentId, BTreeMap<u64, PastOrder>>,
    instrument_of: HashMap<u64, InstrumentId>,
    /// The latest order of each client id.
    by_cl: HashMap<ClOrdId, u64>,
    /// Orders in the order they were first seen: the oldest is forgotten first.
    order_fifo: VecDeque<(InstrumentId, u64)>,
    /// Trades by (trade id, order id): both sides of a self-match are the account's.
    trades: HashMap<InstrumentId, BTreeMap<(u64, u64), PastTrade>>,
    trade_fifo: VecDeque<(InstrumentId, (u64, u64))>,
}

/// Every account's recent orders and trades.
#[derive(Debug)]
pub struct OrderHistory {
    limits: HistoryLimits,
    accounts: Mutex<HashMap<AccountId, AccountPast>>,
    /// The last journal record applied.
    position: AtomicU64,
    /// The last event applied, to skip the second view of one execution.
    last_event: Mutex<Option<Event>>,
}

impl OrderHistory {
    /// An empty history keeping what `limits` allow.
    pub fn new(limits: HistoryLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            accounts: Mutex::new(HashMap::new()),
            position: AtomicU64::new(0),
            last_event: Mutex::new(None),
        })
    }

    /// The last journal record the history has applied.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<AccountId, AccountPast>> {
        // A panic while applying leaves maps that are still consistent per entry.
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes new orders that join an order list (the journal's commands), under one hold of
    /// the lock; their acceptance, a later event, puts them in it.
    pub fn apply_joins(&self, orders: &[NewOrder]) {
        let mut accounts = self.lock();
        for o in orders {
            let joined = match (o.oco_with, o.triggers) {
                (_, Some(pending)) => (pending, true),
                (Some(first), None) => (first, false),
                (None, None) => continue,
            };
            let past = accounts.entry(o.account).or_default();
            // Bounded by the orders kept: joins whose order never came are dropped first.
            if past.joins.len() >= self.limits.orders_per_account.max(1) {
                past.joins.clear();
            }
            past.joins.insert((o.session, o.cl_ord_id), joined);
        }
    }

    /// Applies a batch of events under one hold of the lock.
    pub fn apply(&self, events: &[Event]) {
        let mut accounts = self.lock();
        let mut last = self.last_event.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            // A cancel or replace by OrderID from another session is reported to both under
            // one ExecID: the first view is the one applied.
            let second = last.is_some_and(|p| e.is_second_view_of(&p));
            *last = Some(*e);
            if !second {
                self.apply_one(&mut accounts, e);
            }
        }
    }

    fn apply_one(&self, accounts: &mut HashMap<AccountId, AccountPast>, e: &Event) {
        if matches!(e.kind, EventKind::New | EventKind::Rejected(_)) {
            if let Some(past) = accounts.get_mut(&e.account) {
                if let Some((joined, triggers)) = past.joins.remove(&(e.session, e.cl_ord_id)) {
                    if e.kind == EventKind::New {
                        past.join_list(e, joined, triggers);
                    }
                }
            }
        }
        if e.order_id.0 == 0 {
            return; // refused before it was an order
        }
        let state = match e.kind {
            EventKind::New if e.details.pending => OrderState::Pending,
            // A routed order waiting for its venue's acceptance.
            EventKind::Pending(RouteRequest::New) => OrderState::Pending,
            EventKind::New | EventKind::Replaced | EventKind::Triggered | EventKind::Activated => {
                if e.cum_qty.0 > 0 {
                    OrderState::PartiallyFilled
                } else {
                    OrderState::Working
                }
            }
            EventKind::PartialFill => OrderState::PartiallyFilled,
            EventKind::Fill => OrderState::Filled,
            EventKind::Canceled => OrderState::Canceled,
            EventKind::Expired => OrderState::Expired,
            EventKind::Rejected(_)
            | EventKind::CancelRejected { .. }
            | EventKind::MassCancelDone { .. }
            | EventKind::Route(_)
            | EventKind::Pending(_) => return,
        };
        let limits = self.limits;
        let past = accounts.entry(e.account).or_default();
        let id = e.order_id.0;
        let instrument = *past.instrument_of.entry(id).or_insert(e.instrument);
        let orders = past.orders.entry(instrument).or_default();
        let mut fresh = false;
        let order = orders.entry(id).or_insert_with(|| {
            fresh = true;
            past.order_fifo.push_back((instrument, id));
            // Fills are counted as their events come (below), from nothing.
            PastOrder {
                instrument,
                cum_qty: Qty(0),
                cum_quote: 0,
                avg_px: Price(0),
                ..PastOrder::of_event(e, state)
            }
        });
        order.updated_ns = e.ts_ns;
        order.state = state;
        match e.kind {
            // A stop or take-profit waiting for its trigger is not working yet.
            EventKind::New if order.working_ns < 0 && !e.details.waiting && !e.details.pending => {
                order.working_ns = e.ts_ns
            }
            // A stop or take-profit works from its trigger on; a pending order from when it
            // is placed, unless it is a stop that waits then.
            EventKind::Triggered => order.working_ns = e.ts_ns,
            EventKind::Activated if !e.details.waiting => order.working_ns = e.ts_ns,
            EventKind::Replaced => {
                order.price = e.price;
                order.qty = e.qty;
                order.cl_ord_id = e.cl_ord_id;
            }
            _ => {}
        }
        if fresh || e.kind == EventKind::Replaced {
            past.by_cl.insert(order.cl_ord_id, id);
        }
        if matches!(e.kind, EventKind::PartialFill | EventKind::Fill) {
            order.cum_qty = e.cum_qty;
            order.avg_px = e.avg_px;
            let key = (e.trade_id.0, id);
            let trades = past.trades.entry(instrument).or_default();
            if let std::collections::btree_map::Entry::Vacant(v) = trades.entry(key) {
                order.cum_quote += i128::from(e.last_px.0) * i128::from(e.last_qty.0);
                v.insert(PastTrade {
                    instrument,
                    trade_id: e.trade_id.0,
                    order_id: e.order_id,
                    side: e.side,
                    price: e.last_px,
                    qty: e.last_qty,
                    ts_ns: e.ts_ns,
                    // An order that was on the book before this event's step: the resting side.
                    maker: order.working_ns >= 0 && order.working_ns < e.ts_ns,
                });
                past.trade_fifo.push_back((instrument, key));
            }
        }
        past.forget_beyond(limits);
    }

    /// The account's orders of `instrument` (of every instrument if `None`) that `w` selects,
    /// oldest first.
    pub fn orders(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        w: &Window,
    ) -> Vec<PastOrder> {
        let accounts = self.lock();
        let Some(past) = accounts.get(&account) else {
            return Vec::new();
        };
        match instrument {
            Some(i) => past
                .orders
                .get(&i)
                .map_or_else(Vec::new, |m| pick_orders(m.values(), w)),
            None => {
                let mut all: Vec<&PastOrder> =
                    past.orders.values().flat_map(|m| m.values()).collect();
                all.sort_unstable_by_key(|o| o.order_id);
                pick_orders(all.into_iter(), w)
            }
        }
    }

    /// The account's trades of `instrument` (of every instrument if `None`) that `w` selects,
    /// oldest first.
    pub fn trades(
        &self,
        account: AccountId,
        instrument: Option<InstrumentId>,
        w: &Window,
    ) -> Vec<PastTrade> {
        let accounts = self.lock();
        let Some(past) = accounts.get(&account) else {
            return Vec::new();
        };
        match instrument {
            Some(i) => past
                .trades
                .get(&i)
                .map_or_else(Vec::new, |m| pick_trades(m.values(), w)),
            None => {
                let mut all: Vec<&PastTrade> =
                    past.trades.values().flat_map(|m| m.values()).collect();
                all.sort_unstable_by_key(|t| (t.trade_id, t.order_id));
                pick_trades(all.into_iter(), w)
            }
        }
    }

    /// The account's order lists that `w` selects (`w.order_id`: from this list id up; the
    /// time window on the lists' creation), oldest first.
    pub fn lists(&self, account: AccountId, w: &Window) -> Vec<PastList> {
        let accounts = self.lock();
        let Some(past) = accounts.get(&account) else {
            return Vec::new();
        };
        let from = w.order_id.unwrap_or(0);
        let in_window = |l: &&PastList| {
            l.id.0 >= from
                && w.start_ns.map_or(true, |s| l.created_ns >= s)
                && w.end_ns.map_or(true, |e| l.created_ns <= e)
        };
        let lists = past.lists.values().filter(in_window);
        if w.order_id.is_some() || w.start_ns.is_some() {
            lists.take(w.limit).cloned().collect()
        } else {
            let mut last: Vec<PastList> = lists.rev().take(w.limit).cloned().collect();
            last.reverse();
            last
        }
    }

    /// The account's order `id`, if the history still has it.
    pub fn order(&self, account: AccountId, id: OrderId) -> Option<PastOrder> {
        let accounts = self.lock();
        let past = accounts.get(&account)?;
        let instrument = past.instrument_of.get(&id.0)?;
        past.orders.get(instrument)?.get(&id.0).cloned()
    }

    /// The account's latest order with the client id `cl`, if the history still has it.
    pub fn order_by_cl(&self, account: AccountId, cl: &ClOrdId) -> Option<PastOrder> {
        let id = {
            let accounts = self.lock();
            *accounts.get(&account)?.by_cl.get(cl)?
        };
        self.order(account, OrderId(id))
    }

    /// Follows the journal in `dir` on a thread of its own, up to what `acknowledged` says
    /// the journal thread has acknowledged, from the first record the journal holds. The
    /// thread ends when the journal's acknowledgements end (the journal closed).
    pub fn follow(
        self: &Arc<Self>,
        dir: PathBuf,
        keys: Arc<KeyringCell>,
        acknowledged: tokio::sync::watch::Receiver<u64>,
        pin_cpu: Option<usize>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let history = self.clone();
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("portcullis-history".into())
            .spawn(move || {
                if let Some(cpu) = pin_cpu {
                    core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                }
                let mut feed = Feed {
                    history,
                    dir,
                    keys,
                    acknowledged,
                    tail: None,
                };
                feed.run(&runtime);
            })
    }
}

/// What `w` selects of `orders` (in order id order): with a time window, those created in
/// it (the first ones from its start, else the last ones); else from an order id up; else the
/// latest.
fn pick_orders<'a>(
    orders: impl DoubleEndedIterator<Item = &'a PastOrder>,
    w: &Window,
) -> Vec<PastOrder> {
    if w.start_ns.is_some() || w.end_ns.is_some() {
        let in_window = |o: &&PastOrder| {
            w.start_ns.map_or(true, |s| o.created_ns >= s)
                && w.end_ns.map_or(true, |e| o.created_ns <= e)
        };
        select(orders.filter(in_window), w.start_ns.is_some(), w.limit)
    } else if let Some(from) = w.order_id {
        orders
            .filter(|o| o.order_id.0 >= from)
            .take(w.limit)
            .cloned()
            .collect()
    } else {
        select(orders, false, w.limit)
    }
}

/// What `w` selects of `trades` (in trade id order): of one order, from a trade id, in a time
/// window; the first ones from a trade id, a start time or of one order, else the latest.
fn pick_trades<'a>(
    trades: impl DoubleEndedIterator<Item = &'a PastTrade>,
    w: &Window,
) -> Vec<PastTrade> {
    let matches = |t: &&PastTrade| {
        w.order_id.map_or(true, |id| t.order_id.0 == id)
            && w.from_trade_id.map_or(true, |from| t.trade_id >= from)
            && w.start_ns.map_or(true, |s| t.ts_ns >= s)
            && w.end_ns.map_or(true, |e| t.ts_ns <= e)
    };
    let from_start = w.from_trade_id.is_some() || w.start_ns.is_some() || w.order_id.is_some();
    select(trades.filter(matches), from_start, w.limit)
}

/// The first `limit` of `items` (`from_start`), or the last `limit`, oldest first.
fn select<'a, T: Clone + 'a>(
    items: impl DoubleEndedIterator<Item = &'a T>,
    from_start: bool,
    limit: usize,
) -> Vec<T> {
    if from_start {
        items.take(limit).cloned().collect()
    } else {
        let mut v: Vec<T> = items.rev().take(limit).cloned().collect();
        v.reverse();
        v
    }
}

impl AccountPast {
    /// Forgets the oldest orders and trades beyond the limits.
    /// The order of event `e` (its acceptance) joins the list of order `joined`: the list
    /// `joined` is in, or a new one it starts.
    fn join_list(&mut self, e: &Event, joined: OrderId, triggers: bool) {
        let id = self.list_of.get(&joined.0).copied().unwrap_or(joined.0);
        let created_ns = self
            .instrument_of
            .get(&joined.0)
            .and_then(|i| self.orders.get(i)?.get(&joined.0))
            .map_or(e.received_ns, |o| o.created_ns);
        let list = self.lists.entry(id).or_insert_with(|| PastList {
            id: OrderId(id),
            instrument: e.instrument,
            triggers: false,
            orders: vec![OrderId(id)],
            created_ns,
        });
        list.triggers |= triggers;
        list.orders.push(e.order_id);
        self.list_of.insert(id, id);
        self.list_of.insert(e.order_id.0, id);
    }

    fn forget_beyond(&mut self, limits: HistoryLimits) {
        while self.order_fifo.len() > limits.orders_per_account {
            let Some((instrument, id)) = self.order_fifo.pop_front() else {
                break;
            };
            self.instrument_of.remove(&id);
            // A list goes with its first order (the oldest of its orders).
            if let Some(list) = self.list_of.remove(&id) {
                if list == id {
                    if let Some(l) = self.lists.remove(&list) {
                        for o in l.orders {
                            self.list_of.remove(&o.0);
                        }
                    }
                }
            }
            if let Some(orders) = self.orders.get_mut(&instrument) {
                if let Some(o) = orders.remove(&id) {
                    if self.by_cl.get(&o.cl_ord_id) == Some(&id) {
                        self.by_cl.remove(&o.cl_ord_id);
                    }
                }
            }
        }
        while self.trade_fifo.len() > limits.trades_per_account {
            let Some((instrument, key)) = self.trade_fifo.pop_front() else {
                break;
            };
            if let Some(trades) = self.trades.get_mut(&instrument) {
                trades.remove(&key);
            }
        }
    }
}

/// What one pass over the journal read.
struct Batch {
    events: Vec<Event>,
    joins: Vec<NewOrder>,
}

/// The history's reader of the journal.
struct Feed {
    history: Arc<OrderHistory>,
    dir: PathBuf,
    keys: Arc<KeyringCell>,
    acknowledged: tokio::sync::watch::Receiver<u64>,
    tail: Option<JournalTail>,
}

impl Feed {
    fn run(&mut self, runtime: &tokio::runtime::Handle) {
        let mut batch = Batch {
            events: Vec::with_capacity(RECORDS_PER_LOCK),
            joins: Vec::new(),
        };
        info!("order history: following the journal");
        loop {
            let acknowledged = *self.acknowledged.borrow_and_update();
            // A tail looks at the segment's length again only on the call after one that found
            // nothing: a record acknowledged meanwhile is read on a second call.
            let mut empty_reads = 0;
            loop {
                match self.read(acknowledged, &mut batch) {
                    Ok(more) => {
                        // A list's joining order is commanded before it is accepted.
                        self.history.apply_joins(&batch.joins);
                        self.history.apply(&batch.events);
                        batch.events.clear();
                        batch.joins.clear();
                        if self.history.position() >= acknowledged {
                            break;
                        }
                        if !more {
                            empty_reads += 1;
                            if empty_reads > 2 {
                                // Not there yet (a segment being started): look again shortly.
                                std::thread::sleep(std::time::Duration::from_millis(1));
                            }
                            if empty_reads > 1000 {
                                warn!(acknowledged, at = self.history.position(), "order history: the journal's acknowledged records cannot be read; waiting for more");
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "order history: cannot read the journal; allOrders and myTrades stop at what was read");
                        return;
                    }
                }
            }
            // Wait for the journal thread's next acknowledgement (none left: the journal
            // closed), and let more come: one pass per WAKE_INTERVAL at most under load.
            if runtime.block_on(self.acknowledged.changed()).is_err() {
                return;
            }
            std::thread::sleep(WAKE_INTERVAL);
        }
    }

    /// Reads up to [`RECORDS_PER_LOCK`] records up to `acknowledged` into `batch` (events,
    /// and new orders that join a list); true if there may be more.
    fn read(&mut self, acknowledged: u64, batch: &mut Batch) -> Result<bool, String> {
        if self.tail.is_none() {
            self.tail = Some(self.open(0)?);
        }
        let mut reopened = false;
        for _ in 0..RECORDS_PER_LOCK {
            let Some(tail) = self.tail.as_mut() else {
                return Ok(false);
            };
            if tail.position().0 >= acknowledged {
                return Ok(false);
            }
            match tail.next_decoded() {
                Ok(Some((seq, record))) => {
                    match record {
                        JournalRecord::Event(e) => batch.events.push(e),
                        JournalRecord::Command(Command::New(o))
                            if o.oco_with.is_some() || o.triggers.is_some() =>
                        {
                            batch.joins.push(o)
                        }
                        _ => {}
                    }
                    self.history.position.store(seq.0, Ordering::Release);
                }
                Ok(None) => return Ok(false),
                // A segment under a master key rotated since the tail was opened: follow the
                // journal again from here with the current keyring.
                Err(_) if !reopened => {
                    reopened = true;
                    let at = self.history.position();
                    self.tail = Some(self.open(at)?);
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(true)
    }

    /// The journal after record `after`, or from its first record if the ones after `after`
    /// were compacted away.
    fn open(&self, after: u64) -> Result<JournalTail, String> {
        let ring = self.keys.current();
        match JournalTail::open(&self.dir, &ring, Seq(after)) {
            Ok(t) => Ok(t),
            Err(JournalError::Missing { first, .. }) => {
                if after > 0 {
                    warn!(after, first = first.0, "order history: journal records were compacted away; it goes on at the first one left");
                } else {
                    info!(first = first.0, "order history: the journal starts at a snapshot; earlier orders are not listed");
                }
                JournalTail::open(&self.dir, &ring, Seq(first.0.saturating_sub(1)))
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, id: u64, ts_ns: i64) -> Event {
        Event {
            session: SessionId(1),
            account: AccountId(3),
            instrument: InstrumentId(2),
            kind,
            order_id: OrderId(id),
            cl_ord_id: ClOrdId::new(format!("c{id}").as_bytes()).unwrap(),
            orig_cl_ord_id: ClOrdId::EMPTY,
            side: Side::Buy,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(100),
            qty: Qty(10),
            cum_qty: Qty(0),
            leaves_qty: Qty(10),
            avg_px: Price(0),
            last_px: Price(0),
            last_qty: Qty(0),
            trade_id: portcullis_types::TradeId(0),
            exec_id: id * 100 + ts_ns as u64,
            ts_ns,
            received_ns: ts_ns,
            details: Default::default(),
        }
    }

    fn fill(id: u64, trade: u64, qty: i64, cum: i64, px: i64, ts_ns: i64) -> Event {
        let mut e = event(
            if cum == 10 {
                EventKind::Fill
            } else {
                EventKind::PartialFill
            },
            id,
            ts_ns,
        );
        e.trade_id = portcullis_types::TradeId(trade);
        e.last_qty = Qty(qty);
        e.last_px = Price(px);
        e.cum_qty = Qty(cum);
        e
    }

    const A: AccountId = AccountId(3);
    const I: InstrumentId = InstrumentId(2);

    fn all(limit: usize) -> Window {
        Window {
            limit,
            ..Window::default()
        }
    }

    #[test]
    fn an_orders_events_make_its_state_and_its_trades() {
        let h = OrderHistory::new(HistoryLimits::default());
        // Order 1 rests at t=10, is filled 4 at t=20 (maker) and 6 at t=30.
        h.apply(&[
            event(EventKind::New, 1, 10),
            fill(1, 7, 4, 4, 100, 20),
            fill(1, 9, 6, 10, 99, 30),
        ]);
        // Order 2 arrives at t=40 and trades at once (taker), then is cancelled.
        h.apply(&[
            event(EventKind::New, 2, 40),
            fill(2, 11, 3, 3, 101, 40),
            event(EventKind::Canceled, 2, 50),
        ]);
        let o = h.order(A, OrderId(1)).unwrap();
        assert_eq!(o.state, OrderState::Filled);
        assert_eq!((o.cum_qty, o.cum_quote), (Qty(10), 4 * 100 + 6 * 99));
        assert_eq!((o.created_ns, o.working_ns, o.updated_ns), (10, 10, 30));
        let o = h.order_by_cl(A, &ClOrdId::new(b"c2").unwrap()).unwrap();
        assert_eq!(
            (o.order_id, o.state, o.cum_qty),
            (OrderId(2), OrderState::Canceled, Qty(3))
        );
        let t = h.trades(A, Some(I), &all(10));
        assert_eq!(
            t.iter()
                .map(|t| (t.trade_id, t.order_id.0, t.maker))
                .collect::<Vec<_>>(),
            [(7, 1, true), (9, 1, true), (11, 2, false)]
        );
        // Another account, another instrument: nothing.
        assert!(h.orders(AccountId(4), Some(I), &all(10)).is_empty());
        assert!(h.trades(A, Some(InstrumentId(5)), &all(10)).is_empty());
    }

    /// The new-order command of order `id` (client id `c{id}`), joining `joined`.
    fn joining(id: u64, joined: u64, triggers: bool) -> NewOrder {
        let e = event(EventKind::New, id, 0);
        NewOrder {
            session: e.session,
            account: e.account,
            instrument: e.instrument,
            cl_ord_id: e.cl_ord_id,
            side: e.side,
            ord_type: e.ord_type,
            tif: e.tif,
            price: e.price,
            qty: e.qty,
            post_only: false,
            stp: None,
            received_ns: 0,
            display_qty: Qty(0),
            trailing: None,
            oco_with: (!triggers).then_some(OrderId(joined)),
            pending: false,
            triggers: triggers.then_some(OrderId(joined)),
        }
    }

    #[test]
    fn order_lists_are_made_of_the_orders_their_commands_joined() {
        let h = OrderHistory::new(HistoryLimits {
            orders_per_account: 6,
            trades_per_account: 10,
        });
        // A pair (1, 2); a bracket: pending 3 and 4 paired, working 5 triggering 3; a working
        // order 6 refused with its list; a plain order 7.
        h.apply(&[event(EventKind::New, 1, 10)]);
        h.apply_joins(&[joining(2, 1, false)]);
        h.apply(&[event(EventKind::New, 2, 11), event(EventKind::New, 3, 20)]);
        h.apply_joins(&[joining(4, 3, false), joining(5, 3, true)]);
        h.apply(&[event(EventKind::New, 4, 21), event(EventKind::New, 5, 22)]);
        h.apply_joins(&[joining(6, 1, true)]);
        let mut refused = event(
            EventKind::Rejected(portcullis_types::RejectReason::OrderListRejected),
            6,
            30,
        );
        refused.order_id = OrderId(0);
        h.apply(&[refused, event(EventKind::New, 7, 40)]);
        let lists = h.lists(A, &all(10));
        let seen: Vec<(u64, bool, Vec<u64>, i64)> = lists
            .iter()
            .map(|l| {
                (
                    l.id.0,
                    l.triggers,
                    l.orders.iter().map(|o| o.0).collect(),
                    l.created_ns,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [(1, false, vec![1, 2], 10), (3, true, vec![3, 4, 5], 20)]
        );
        // From a list id, in a time window, the latest.
        let from = Window {
            order_id: Some(2),
            ..all(10)
        };
        assert_eq!(h.lists(A, &from).len(), 1);
        let window = Window {
            start_ns: Some(15),
            ..all(10)
        };
        assert_eq!(h.lists(A, &window)[0].id, OrderId(3));
        assert_eq!(h.lists(A, &all(1))[0].id, OrderId(3));
        // A list goes with its first order, forgotten as the oldest.
        h.apply(&[event(EventKind::New, 8, 50)]);
        h.apply(&[event(EventKind::New, 9, 60)]);
        let ids: Vec<OrderId> = h.lists(A, &all(10)).iter().map(|l| l.id).collect();
        assert_eq!(ids, [OrderId(3)]);
        assert!(h.lists(AccountId(4), &all(10)).is_empty());
    }

    #[test]
    fn a_repeated_fill_or_second_view_is_applied_once() {
        let h = OrderHistory::new(HistoryLimits::default());
        let f = fill(1, 7, 4, 4, 100, 20);
        h.apply(&[event(EventKind::New, 1, 10), f]);
        h.apply(&[f]);
        assert_eq!(h.order(A, OrderId(1)).unwrap().cum_quote, 400);
        assert_eq!(h.trades(A, Some(I), &all(10)).len(), 1);
        // A cancel by OrderID from session 2, then the owner's view of it.
        let mut c = event(EventKind::Canceled, 1, 30);
        c.session = SessionId(2);
        let mut owner = c;
        owner.session = SessionId(1);
        h.apply(&[c, owner]);
        let o = h.order(A, OrderId(1)).unwrap();
        assert_eq!((o.state, o.session), (OrderState::Canceled, SessionId(1)));
    }

    #[test]
    fn refusals_leave_no_order() {
        let h = OrderHistory::new(HistoryLimits::default());
        let mut r = event(
            EventKind::Rejected(portcullis_types::RejectReason::BadTick),
            0,
            10,
        );
        h.apply(&[r]);
        r.order_id = OrderId(5);
        r.kind = EventKind::CancelRejected {
            replace: false,
            reason: portcullis_types::RejectReason::UnknownOrder,
        };
        h.apply(&[r]);
        assert!(h.orders(A, Some(I), &all(10)).is_empty());
    }

    #[test]
    fn windows_select_by_id_time_and_limit() {
        let h = OrderHistory::new(HistoryLimits::default());
        for id in 1..=10u64 {
            h.apply(&[event(EventKind::New, id, id as i64 * 100)]);
            h.apply(&[fill(id, 1000 + id, 10, 10, 100, id as i64 * 100 + 1)]);
        }
        let ids = |v: Vec<PastOrder>| v.iter().map(|o| o.order_id.0).collect::<Vec<_>>();
        let tids = |v: Vec<PastTrade>| v.iter().map(|t| t.trade_id).collect::<Vec<_>>();
        // The latest by default, oldest first.
        assert_eq!(ids(h.orders(A, Some(I), &all(3))), [8, 9, 10]);
        // From an order id up.
        let w = Window {
            order_id: Some(4),
            limit: 2,
            ..Window::default()
        };
        assert_eq!(ids(h.orders(A, Some(I), &w)), [4, 5]);
        // A time window (inclusive): the first ones from its start; only an end: the last.
        let w = Window {
            start_ns: Some(300),
            end_ns: Some(600),
            limit: 10,
            ..Window::default()
        };
        assert_eq!(ids(h.orders(A, Some(I), &w)), [3, 4, 5, 6]);
        let w = Window {
            end_ns: Some(600),
            limit: 2,
            ..Window::default()
        };
        assert_eq!(ids(h.orders(A, Some(I), &w)), [5, 6]);
        // Trades: from a trade id, of one order, in a window, the latest.
        let w = Window {
            from_trade_id: Some(1008),
            limit: 10,
            ..Window::default()
        };
        assert_eq!(tids(h.trades(A, Some(I), &w)), [1008, 1009, 1010]);
        let w = Window {
            order_id: Some(2),
            limit: 10,
            ..Window::default()
        };
        assert_eq!(tids(h.trades(A, Some(I), &w)), [1002]);
        let w = Window {
            start_ns: Some(201),
            end_ns: Some(401),
            limit: 10,
            ..Window::default()
        };
        assert_eq!(tids(h.trades(A, Some(I), &w)), [1002, 1003, 1004]);
        assert_eq!(tids(h.trades(A, Some(I), &all(2))), [1009, 1010]);
    }

    proptest::proptest! {
        /// Whatever the events, in whatever order and repeated: the history stays within its
        /// limits, its indexes agree, and every query answers at most `limit` items, oldest
        /// first, each one it was asked for.
        #[test]
        fn any_events_keep_the_history_bounded_and_consistent(
            steps in proptest::collection::vec((0u8..7, 1u64..40, 0i64..10, 1u64..30), 0..300),
            limits in (1usize..20, 1usize..20),
            query in (proptest::option::of(1u64..40), proptest::option::of(0i64..400), 1usize..10),
        ) {
            let h = OrderHistory::new(HistoryLimits {
                orders_per_account: limits.0,
                trades_per_account: limits.1,
            });
            for (i, (k, id, qty, trade)) in steps.into_iter().enumerate() {
                let ts = i as i64 * 10;
                let e = match k {
                    0 => event(EventKind::New, id, ts),
                    1 => fill(id, trade, qty, qty, 100, ts),
                    2 => fill(id, trade, qty, 10, 101, ts),
                    3 => event(EventKind::Canceled, id, ts),
                    4 => event(EventKind::Expired, id, ts),
                    5 => event(EventKind::Replaced, id, ts),
                    _ => event(EventKind::Rejected(portcullis_types::RejectReason::BadLot), id, ts),
                };
                h.apply(&[e]);
            }
            {
                let accounts = h.lock();
                if let Some(p) = accounts.get(&A) {
                    let n: usize = p.orders.values().map(BTreeMap::len).sum();
                    proptest::prop_assert!(n <= limits.0);
                    proptest::prop_assert_eq!(n, p.order_fifo.len());
                    proptest::prop_assert_eq!(n, p.instrument_of.len());
                    for id in p.by_cl.values() {
                        proptest::prop_assert!(p.instrument_of.contains_key(id));
                    }
                    let t: usize = p.trades.values().map(BTreeMap::len).sum();
                    proptest::prop_assert!(t <= limits.1);
                    proptest::prop_assert_eq!(t, p.trade_fifo.len());
                }
            }
            let w = Window {
                order_id: query.0,
                start_ns: query.1,
                limit: query.2,
                ..Window::default()
            };
            let orders = h.orders(A, Some(I), &w);
            proptest::prop_assert!(orders.len() <= w.limit);
            proptest::prop_assert!(orders.windows(2).all(|p| p[0].order_id < p[1].order_id));
            for o in &orders {
                proptest::prop_assert!(w.start_ns.map_or(true, |s| o.created_ns >= s));
                if w.start_ns.is_none() {
                    proptest::prop_assert!(w.order_id.map_or(true, |id| o.order_id.0 >= id));
                }
            }
            let trades = h.trades(A, Some(I), &w);
            proptest::prop_assert!(trades.len() <= w.limit);
            proptest::prop_assert!(trades.windows(2).all(|p| (p[0].trade_id, p[0].order_id) < (p[1].trade_id, p[1].order_id)));
            for t in &trades {
                proptest::prop_assert!(w.order_id.map_or(true, |id| t.order_id.0 == id));
            }
        }
    }

    #[test]
    fn every_instrument_at_once_comes_in_id_order() {
        let h = OrderHistory::new(HistoryLimits::default());
        for id in 1..=6u64 {
            let mut e = event(EventKind::New, id, id as i64);
            e.instrument = InstrumentId((id % 2) as u32);
            let mut f = fill(id, 100 + id, 10, 10, 100, id as i64 + 1);
            f.instrument = e.instrument;
            h.apply(&[e, f]);
        }
        let ids = |v: Vec<PastOrder>| v.iter().map(|o| o.order_id.0).collect::<Vec<_>>();
        assert_eq!(ids(h.orders(A, None, &all(10))), [1, 2, 3, 4, 5, 6]);
        assert_eq!(ids(h.orders(A, None, &all(2))), [5, 6]);
        assert_eq!(ids(h.orders(A, Some(InstrumentId(1)), &all(10))), [1, 3, 5]);
        let t: Vec<u64> = h
            .trades(A, None, &all(3))
            .iter()
            .map(|t| t.trade_id)
            .collect();
        assert_eq!(t, [104, 105, 106]);
    }

    #[test]
    fn the_oldest_orders_and_trades_are_forgotten_beyond_the_limits() {
        let h = OrderHistory::new(HistoryLimits {
            orders_per_account: 3,
            trades_per_account: 2,
        });
        for id in 1..=5u64 {
            h.apply(&[event(EventKind::New, id, id as i64)]);
            h.apply(&[fill(id, 100 + id, 10, 10, 100, id as i64 + 1)]);
        }
        let ids: Vec<u64> = h
            .orders(A, Some(I), &all(10))
            .iter()
            .map(|o| o.order_id.0)
            .collect();
        assert_eq!(ids, [3, 4, 5]);
        assert!(h.order(A, OrderId(2)).is_none());
        assert!(h.order_by_cl(A, &ClOrdId::new(b"c1").unwrap()).is_none());
        let t: Vec<u64> = h
            .trades(A, Some(I), &all(10))
            .iter()
            .map(|t| t.trade_id)
            .collect();
        assert_eq!(t, [104, 105]);
    }
}
