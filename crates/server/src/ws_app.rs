//! The WebSocket API's application: one [`WsBridge`] per connection maps the dialect's
//! requests onto the order pipeline, the same queues, risk checks and books as FIX orders.
//!
//! - The connection takes a per-connection session slot ([`Pipeline::alloc_slot`]) and opens
//!   its route on the core thread with its first order request, for the account of the key
//!   that signed it. A connection trades for one account: a request signed by a key of another
//!   account is refused (open a second connection for it).
//! - `order.place` → [`Command::New`]; `order.cancel` → [`Command::Cancel`];
//!   `openOrders.cancelAll` → [`Command::MassCancel`]; `order.cancelReplace` → a cancel, then
//!   (per `cancelReplaceMode`) a new order, as the dialect defines it (a new order id, not an
//!   amend). Each answers [`Dispatch::Pending`]; the core thread's events, read from the
//!   connection's egress queue, complete it: `order.place` with ACK at the order's acceptance,
//!   RESULT/FULL when the answer to an order status request queued right behind the order
//!   arrives. The core thread takes the ingress queue in order, so that answer comes after
//!   every event of the order's initial matching, even when the task reads the egress queue
//!   while the core thread is still filling it.
//! - `order.status`: answered at once from the connection's own order table, kept from those
//!   events (open orders, and the last [`DONE_ORDERS_KEPT`] that ended); by orderId, an order
//!   the table does not hold is asked of the core thread, which knows every working order of
//!   the account, whichever connection or FIX session entered it ([`StatusWait::Query`]).
//!   Orders the table does not hold, by orderId or clientOrderId, are looked up in the
//!   account's history ([`OrderHistory`], fed by the journal): an ended order is answered
//!   from it, a working one is asked of the core thread by its orderId.
//! - `order.cancel` by the clientOrderId of another connection's (or FIX session's) order
//!   cancels it by the orderId the history knows for it.
//! - `openOrders.status`: the core thread lists the account's working orders
//!   ([`StatusWait::OpenOrders`]).
//! - `allOrders` and `myTrades`: from the account's history.
//! - `account.status`: the account's number and trading permission (`canTrade`: the key's
//!   scope, and no kill switch on for the account or everything); balances are not kept by
//!   the server (an empty list), commissions are zero.
//! - `account.position` (also `v2/account.position`, as the futures dialect names it): the
//!   core thread lists the account's net positions ([`StatusWait::Positions`]).
//! - `depth`, `ticker.book` and `ticker.price`: the core thread lists the book's best levels
//!   as the market sees them, and its last trade ([`StatusWait::Depth`]).
//! - With the user data stream subscribed, every event of the connection's orders is also
//!   pushed as an `executionReport`.
//! - When the connection ends, its route is closed ([`Ingress::Close`]): cancel-on-disconnect
//!   runs there if the listener enables it.
//!
//! Ids: order ids and trade ids come from the engine, which keeps them ≤ 2^53 − 1.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use portcullis_session::ws::{
    AccountStatus, AmendOutcome, AmendRequest, AppOutput, BookTicker, CancelReplaceMode,
    CancelReplaceOutcome, CancelReplaceRequest, CancelRequest, CancelResult, CommissionRates,
    Contingency, Decimal, DepthInfo, Dispatch, ExecutionReport, ExecutionType, Fill, HistoryQuery,
    ListStatus, NewOrderOutcome, OcoRequest, OrderInfo, OrderListInfo, OrderListRef,
    OrderListResult, OrderRef, OrderResult, OrderStatus, OrderStrategy, OrderType, OtoRequest,
    Outcome, PositionInfo, PriceTicker, Principal, RequestCtx, RequestToken, RespType, SafeId,
    StpMode, SymbolFilter, SymbolInfo, SymbolStatus, SymbolTable, TimeInForce, TradeInfo,
    WsAppFactory, WsApplication, WsConnectionInfo, WsError, WsOrder,
};
use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, Command, Event, EventKind, InstrumentId, InstrumentStatus,
    MassCancel, NewOrder, OrdType, OrderId, Price, Qty, RejectReason, ReplaceOrder, SessionId,
    TrailingDelta,
};
use tracing::{debug, warn};

use portcullis_engine::OrderRef as EngineOrderRef;

use crate::history::{OrderHistory, OrderState, PastList, PastOrder, PastTrade, Window};
use crate::metrics::{Protocol, METRICS};
use crate::order_list::Join;
use crate::pipeline::{
    now_ns, Conn, DepthReply, DepthRequest, Directory, Ingress, OpenOrdersReply, OpenOrdersRequest,
    Outbound, Pipeline, PositionsReply, PositionsRequest, StatusRequest, MAX_LISTED_ORDERS,
};
use crate::user_streams::{Subscription, UserStreams};

/// Orders that ended kept per connection for `order.status`.
pub const DONE_ORDERS_KEPT: usize = 1024;

/// The largest id (2^53 − 1), the fallback of ids out of range (which the engine never makes).
const MAX_ID: SafeId = match SafeId::new(SafeId::MAX) {
    Some(id) => id,
    None => panic!("SafeId::MAX is a SafeId"),
};

/// Numbers the client order ids the server assigns (unique per process, so never reused by
/// a later connection on the same slot).
static NEXT_GENERATED_ID: AtomicU64 = AtomicU64::new(1);

fn safe_id(v: u64) -> SafeId {
    SafeId::new(v).unwrap_or(MAX_ID)
}

fn generated_cl_ord_id() -> ClOrdId {
    let n = NEXT_GENERATED_ID.fetch_add(1, Ordering::Relaxed);
    let text = format!("pcws-{n}");
    // ASCII and short: always a valid id.
    ClOrdId::new(text.as_bytes()).unwrap_or(ClOrdId::EMPTY)
}

/// The ClOrdID of a request's `newClientOrderId`, or a generated one without it; an invalid
/// one is refused with `reject` (the request's own error).
fn new_cl_ord_id(
    given: Option<&String>,
    reject: impl FnOnce(String) -> WsError,
) -> Result<ClOrdId, WsError> {
    match given {
        Some(id) => {
            ClOrdId::new(id.as_bytes()).map_err(|e| reject(format!("newClientOrderId: {e}")))
        }
        None => Ok(generated_cl_ord_id()),
    }
}

/// `v / 10^scale` as decimal text with exactly `scale` places (`-` for negative values).
fn fmt_scaled(v: i128, scale: u8) -> String {
    let text = Decimal::from_parts(v.unsigned_abs(), scale)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| v.to_string());
    if v < 0 {
        format!("-{text}")
    } else {
        text
    }
}

fn ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

/// The first ns of the millisecond `ms`.
fn ms_to_ns(ms: i64) -> i64 {
    ms.saturating_mul(1_000_000)
}

/// The last ns of the millisecond `ms` (an inclusive end time).
fn ms_to_ns_end(ms: i64) -> i64 {
    ms_to_ns(ms).saturating_add(999_999)
}

/// The dialect's side of an engine order.
fn ws_side(side: portcullis_types::Side) -> portcullis_session::ws::Side {
    match side {
        portcullis_types::Side::Buy => portcullis_session::ws::Side::Buy,
        portcullis_types::Side::Sell => portcullis_session::ws::Side::Sell,
    }
}

/// The dialect's order type of an engine order (post-only limits read as LIMIT: the engine's
/// reports do not carry the flag).
fn ws_order_type(t: OrdType) -> OrderType {
    match t {
        OrdType::Market => OrderType::Market,
        OrdType::Limit => OrderType::Limit,
        OrdType::Stop { .. } => OrderType::StopLoss,
        OrdType::StopLimit { .. } => OrderType::StopLossLimit,
        OrdType::TakeProfit { .. } => OrderType::TakeProfit,
        OrdType::TakeProfitLimit { .. } => OrderType::TakeProfitLimit,
    }
}

/// The dialect's time in force of an engine order (Day, which the dialect lacks, as GTC).
fn ws_tif(tif: portcullis_types::TimeInForce) -> TimeInForce {
    match tif {
        portcullis_types::TimeInForce::Ioc => TimeInForce::Ioc,
        portcullis_types::TimeInForce::Fok => TimeInForce::Fok,
        portcullis_types::TimeInForce::Gtd { .. } => TimeInForce::Gtd,
        portcullis_types::TimeInForce::Gtc | portcullis_types::TimeInForce::Day => TimeInForce::Gtc,
    }
}

/// The `exchangeInfo` table of the current instrument directory, shared by a listener's
/// connections and rebuilt only when the core thread publishes a new directory.
pub struct SymbolCache {
    pipeline: Arc<Pipeline>,
    /// The table and the generation of the directory it was built from.
    cell: std::sync::Mutex<(u64, Arc<SymbolTable>)>,
}

impl SymbolCache {
    /// The table now.
    fn get(&self) -> Arc<SymbolTable> {
        let dir = self.pipeline.directory();
        let mut cell = self.cell.lock().unwrap_or_else(|p| p.into_inner());
        if cell.0 != dir.generation() {
            *cell = (dir.generation(), Arc::new(symbol_table(&dir)));
        }
        cell.1.clone()
    }
}

/// Creates each connection's [`WsBridge`].
pub struct WsBridgeFactory {
    pipeline: Arc<Pipeline>,
    cancel_on_disconnect: bool,
    symbols: Arc<SymbolCache>,
    history: Option<Arc<OrderHistory>>,
    streams: Option<Arc<UserStreams>>,
}

impl WsBridgeFactory {
    /// Connections of a listener on `pipeline`, cancelling their orders when they end if
    /// `cancel_on_disconnect`, answering from `history` what the core no longer knows, and
    /// streaming from `streams` the account's events of other connections and sessions.
    pub fn new(
        pipeline: Arc<Pipeline>,
        cancel_on_disconnect: bool,
        history: Option<Arc<OrderHistory>>,
        streams: Option<Arc<UserStreams>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            symbols: Arc::new(SymbolCache {
                pipeline: pipeline.clone(),
                cell: std::sync::Mutex::new((0, Arc::new(SymbolTable::default()))),
            }),
            pipeline,
            cancel_on_disconnect,
            history,
            streams,
        })
    }
}

impl WsAppFactory for WsBridgeFactory {
    fn on_traffic(&self, traffic: portcullis_session::ws::WsTraffic) {
        use portcullis_session::ws::WsTraffic;
        match traffic {
            WsTraffic::Received => METRICS.received(Protocol::Ws),
            WsTraffic::Sent => METRICS.sent(Protocol::Ws),
            WsTraffic::Rejected { code, .. } => METRICS.ws_reject(code),
        }
    }

    fn open(&self, conn: &WsConnectionInfo<'_>) -> Box<dyn WsApplication> {
        // Counted down when the bridge is dropped (see `Drop for WsBridge`).
        METRICS.connected(Protocol::Ws, 1);
        Box::new(WsBridge {
            symbols: self.symbols.clone(),
            pipeline: self.pipeline.clone(),
            history: self.history.clone(),
            streams: self.streams.clone(),
            others: None,
            conn_id: conn.id,
            cancel_on_disconnect: self.cancel_on_disconnect,
            slot: None,
            conn: None,
            account: None,
            pending: HashMap::new(),
            status_waits: VecDeque::new(),
            orders: IncrementalMap::with_hasher(RandomState::new()),
            by_cl: IncrementalMap::with_hasher(RandomState::new()),
            done: VecDeque::new(),
            lists: HashMap::new(),
            out: Vec::new(),
            user_stream: false,
            kicked: false,
        })
    }
}

/// The `exchangeInfo` view of the instrument directory: PRICE_FILTER from the tick, LOT_SIZE
/// from the lot and the quantity bounds.
pub fn symbol_table(dir: &Directory) -> SymbolTable {
    let mut out = Vec::with_capacity(dir.len());
    for i in 0..dir.len() {
        let Some(e) = dir.get(InstrumentId(i as u32)) else {
            continue;
        };
        let r = &e.rules;
        let (base, quote) = e.assets();
        let mut s = SymbolInfo::new(&e.symbol, base, quote, e.price_scale);
        s.base_asset_precision = e.qty_scale;
        s.quote_precision = e.price_scale;
        s.status = match r.status {
            InstrumentStatus::Trading => SymbolStatus::Trading,
            InstrumentStatus::Halted => SymbolStatus::Halt,
            _ => SymbolStatus::Break,
        };
        // The engine's self-trade prevention: cancel the incoming order by default.
        s.default_stp = StpMode::ExpireTaker;
        s.allowed_stp = vec![
            StpMode::ExpireTaker,
            StpMode::ExpireMaker,
            StpMode::ExpireBoth,
        ];
        let dec = |v: i64, scale: u8| {
            Decimal::from_parts(u128::try_from(v).unwrap_or(0), scale).unwrap_or(Decimal::ZERO)
        };
        s.filters = vec![
            SymbolFilter::Price {
                min_price: dec(r.tick.0, e.price_scale),
                max_price: Decimal::ZERO,
                tick_size: dec(r.tick.0, e.price_scale),
            },
            SymbolFilter::LotSize {
                min_qty: dec(r.min_qty.0, e.qty_scale),
                max_qty: dec(r.max_qty.0, e.qty_scale),
                step_size: dec(r.lot.0, e.qty_scale),
            },
            SymbolFilter::IcebergParts {
                limit: NewOrder::MAX_ICEBERG_PARTS as u32,
            },
            SymbolFilter::TrailingDelta {
                min_above: TrailingDelta::MIN_BIPS.into(),
                max_above: TrailingDelta::MAX_BIPS.into(),
                min_below: TrailingDelta::MIN_BIPS.into(),
                max_below: TrailingDelta::MAX_BIPS.into(),
            },
        ];
        out.push(s);
    }
    SymbolTable::new(out)
}

/// One order of the connection, as the events told it.
#[derive(Debug, Clone)]
struct LocalOrder {
    symbol: Box<str>,
    price_scale: u8,
    qty_scale: u8,
    order_id: u64,
    cl: ClOrdId,
    side: portcullis_session::ws::Side,
    order_type: OrderType,
    tif: TimeInForce,
    price: i64,
    /// Trigger price of a stop order, else 0.
    stop_price: i64,
    /// An iceberg's shown quantity, else 0.
    iceberg_qty: i64,
    /// When a GTD order expires, Unix ms.
    good_till_date: Option<i64>,
    /// A trailing stop's distance in bips.
    trailing_delta: Option<u16>,
    /// The client's strategy tags (not kept by the history: orders of other connections
    /// have none).
    strategy: OrderStrategy,
    /// The id of the order list it was placed in on this connection.
    list: Option<u64>,
    qty: i64,
    cum_qty: i64,
    /// Σ price × qty of the fills, at scale `price_scale + qty_scale`.
    cum_quote: i128,
    status: OrderStatus,
    time: i64,
    update_time: i64,
    working_time: i64,
    stp: StpMode,
}

/// An order list placed on this connection.
#[derive(Debug, Clone)]
struct LocalList {
    contingency: Contingency,
    /// The client's id of the list.
    client_id: Box<str>,
    symbol: Box<str>,
    /// Its orders' ids in the dialect's order (0 until accepted): OCO above, below; OTO
    /// working, pending; OTOCO working, pending above, pending below.
    orders: Vec<u64>,
    /// `listStatus` ALL_DONE has been sent.
    done_sent: bool,
}

/// `orderList.place.*` while its orders are placed one after the other (the core thread
/// checks each join): each accepted order sends the next, joined to those before it; the
/// last one's acceptance answers the request.
#[derive(Debug)]
struct ListPlacement {
    token: RequestToken,
    /// The order being placed now.
    template: LocalOrder,
    /// The orders still to place, each with its join and its place in the dialect's order.
    rest: VecDeque<(NewOrder, LocalOrder, Join, usize)>,
    /// The dialect's place of the order being placed now.
    shown_at: usize,
    /// The orders accepted so far, in placement order.
    placed: Vec<u64>,
    list: LocalList,
    /// RESULT or FULL: an order status request follows the last order (as for
    /// [`Pending::Place`]); the answer waits for it, so it shows the orders after the
    /// command's matching (a working order that filled on entry, its pending orders placed).
    fenced: bool,
}

impl LocalOrder {
    /// The dialect's `orderListId`: -1 outside a list.
    fn list_id(&self) -> i64 {
        self.list.map_or(-1, |id| id as i64)
    }

    fn px(&self, v: i64) -> String {
        fmt_scaled(v.into(), self.price_scale)
    }
    fn qty_text(&self, v: i64) -> String {
        fmt_scaled(v.into(), self.qty_scale)
    }
    fn quote(&self) -> String {
        fmt_scaled(
            self.cum_quote,
            self.price_scale.saturating_add(self.qty_scale),
        )
    }
    fn zero_quote(&self) -> String {
        fmt_scaled(0, self.price_scale)
    }
    fn is_open(&self) -> bool {
        matches!(
            self.status,
            OrderStatus::PendingNew | OrderStatus::New | OrderStatus::PartiallyFilled
        )
    }
    /// Open and on the book: not a stop or take-profit still waiting for its trigger.
    fn is_working(&self) -> bool {
        self.is_open() && self.working_time >= 0
    }

    fn result(&self, fills: Vec<Fill>) -> OrderResult {
        OrderResult {
            symbol: self.symbol.to_string(),
            order_id: safe_id(self.order_id),
            client_order_id: self.cl.as_str().to_owned(),
            transact_time: self.time,
            price: self.px(self.price),
            orig_qty: self.qty_text(self.qty),
            executed_qty: self.qty_text(self.cum_qty),
            orig_quote_order_qty: self.zero_quote(),
            cummulative_quote_qty: self.quote(),
            status: self.status,
            time_in_force: self.tif,
            order_type: self.order_type,
            side: self.side,
            stop_price: self
                .order_type
                .is_triggered()
                .then(|| self.px(self.stop_price)),
            trailing_delta: self.trailing_delta,
            good_till_date: self.good_till_date,
            working_time: self.working_time,
            stp: self.stp,
            fills,
            strategy: self.strategy,
            order_list_id: self.list_id(),
        }
    }

    fn info(&self) -> OrderInfo {
        OrderInfo {
            symbol: self.symbol.to_string(),
            order_id: safe_id(self.order_id),
            client_order_id: self.cl.as_str().to_owned(),
            price: self.px(self.price),
            orig_qty: self.qty_text(self.qty),
            executed_qty: self.qty_text(self.cum_qty),
            cummulative_quote_qty: self.quote(),
            status: self.status,
            time_in_force: self.tif,
            order_type: self.order_type,
            side: self.side,
            stop_price: self.px(self.stop_price),
            iceberg_qty: self.qty_text(self.iceberg_qty),
            trailing_delta: self.trailing_delta,
            good_till_date: self.good_till_date,
            time: self.time,
            update_time: self.update_time,
            is_working: self.is_working(),
            working_time: self.working_time,
            orig_quote_order_qty: self.zero_quote(),
            stp: self.stp,
            strategy: self.strategy,
            order_list_id: self.list_id(),
        }
    }

    fn cancel_result(&self, cancel_cl: &ClOrdId, now_ms: i64) -> CancelResult {
        CancelResult {
            symbol: self.symbol.to_string(),
            orig_client_order_id: self.cl.as_str().to_owned(),
            order_id: safe_id(self.order_id),
            client_order_id: cancel_cl.as_str().to_owned(),
            transact_time: now_ms,
            price: self.px(self.price),
            orig_qty: self.qty_text(self.qty),
            executed_qty: self.qty_text(self.cum_qty),
            orig_quote_order_qty: self.zero_quote(),
            cummulative_quote_qty: self.quote(),
            status: self.status,
            time_in_force: self.tif,
            order_type: self.order_type,
            side: self.side,
            stp: self.stp,
        }
    }
}

/// A request waiting for the core thread, keyed by the client order id of its command.
// A connection has a few of these at a time (bounded by the session's `max_pending`); boxing
// the larger variant would allocate once more per order for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Pending {
    /// `order.place`, or the new-order half of `order.cancelReplace` (`replace` holds the
    /// cancel's outcome).
    Place {
        token: RequestToken,
        resp: RespType,
        template: LocalOrder,
        accepted: bool,
        /// An order status request follows the order in the ingress queue: its answer comes
        /// after every event of the order's initial matching, and completes the request.
        fenced: bool,
        fills: Vec<Fill>,
        replace: Option<Result<CancelResult, WsError>>,
    },
    /// `order.cancel`, or the cancel half of `order.cancelReplace` (`then` holds the new
    /// order to place afterwards).
    Cancel {
        token: RequestToken,
        then: Option<Box<(NewOrder, LocalOrder, RespType, CancelReplaceMode)>>,
    },
    /// `order.amend.keepPriority`: answered by the order's Replaced event, or refused.
    Amend { token: RequestToken },
    /// `orderList.place.*`: one of its orders placed.
    List(Box<ListPlacement>),
    /// `orderList.cancel`: answered once each order still open when asked is cancelled.
    ListCancel {
        token: RequestToken,
        info: Box<OrderListInfo>,
        /// The orders still to hear cancelled of.
        waiting: Vec<u64>,
    },
    /// `openOrders.cancelAll` on `instrument`.
    CancelAll {
        token: RequestToken,
        instrument: InstrumentId,
        results: Vec<CancelResult>,
    },
}

/// What one order status request this connection put in the ingress queue is for. The core
/// thread answers each with one `Outbound::Status`, in the order they were queued.
#[derive(Debug)]
enum StatusWait {
    /// The fence behind a new order (see [`Pending::Place`]'s `fenced`).
    Fence(ClOrdId),
    /// `order.status` of an order this connection does not know: another connection's or
    /// session's working order of the account, by orderId.
    Query {
        token: RequestToken,
        symbol: Box<str>,
        client_order_id: Option<String>,
    },
    /// `openOrders.status`: the core thread's list is in `reply` when the answer comes.
    OpenOrders {
        token: RequestToken,
        reply: Arc<OpenOrdersReply>,
    },
    /// `account.position`: the core thread's list is in `reply` when the answer comes.
    Positions {
        token: RequestToken,
        reply: Arc<PositionsReply>,
    },
    /// `depth`, `ticker.book` or `ticker.price`: the core thread's levels of `instrument`
    /// are in `reply` when the answer comes.
    Depth {
        token: RequestToken,
        instrument: InstrumentId,
        reply: Arc<DepthReply>,
        answer: BookAnswer,
    },
}

/// What a book listing answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BookAnswer {
    /// `depth`.
    Depth,
    /// `ticker.book`.
    Best,
    /// `ticker.price`.
    LastPrice,
}

/// `ticker.book` of `instrument` from its best levels (`0` for an empty side).
fn book_ticker(pipeline: &Pipeline, instrument: InstrumentId, d: DepthInfo) -> BookTicker {
    let dir = pipeline.directory();
    let zero = |scale| Price(0).display(scale).to_string();
    let (px, qty) = dir
        .get(instrument)
        .map_or((0, 0), |e| (e.price_scale, e.qty_scale));
    let best = |v: Vec<(String, String)>| {
        v.into_iter()
            .next()
            .unwrap_or_else(|| (zero(px), Qty(0).display(qty).to_string()))
    };
    let (bid_price, bid_qty) = best(d.bids);
    let (ask_price, ask_qty) = best(d.asks);
    BookTicker {
        symbol: dir
            .get(instrument)
            .map_or(String::new(), |e| e.symbol.to_string()),
        bid_price,
        bid_qty,
        ask_price,
        ask_qty,
    }
}

/// A hash map that grows without an all-at-once resize.
type IncrementalMap<K, V> = griddle::HashMap<K, V, RandomState>;

/// One WebSocket connection's application.
pub struct WsBridge {
    pipeline: Arc<Pipeline>,
    history: Option<Arc<OrderHistory>>,
    streams: Option<Arc<UserStreams>>,
    /// While the user data stream runs: the account's events of its other connections and
    /// sessions.
    others: Option<Subscription>,
    symbols: Arc<SymbolCache>,
    conn_id: u64,
    cancel_on_disconnect: bool,
    slot: Option<SessionId>,
    conn: Option<Arc<Conn>>,
    account: Option<(String, AccountId)>,
    pending: HashMap<ClOrdId, Pending>,
    /// The order status requests in the ingress queue, oldest first.
    status_waits: VecDeque<StatusWait>,
    /// The connection's orders by orderId, and their clientOrderIds: they grow with its open
    /// orders, so they resize a few entries per insert rather than all at once (see Cargo.toml).
    /// SipHash with random keys, as std's maps: clientOrderIds are the client's choice.
    orders: IncrementalMap<u64, LocalOrder>,
    by_cl: IncrementalMap<ClOrdId, u64>,
    done: VecDeque<u64>,
    /// The connection's order lists by list id (its first placed order's id); a list goes
    /// when its first order leaves `orders`.
    lists: HashMap<u64, LocalList>,
    out: Vec<AppOutput>,
    user_stream: bool,
    kicked: bool,
}

impl Drop for WsBridge {
    fn drop(&mut self) {
        METRICS.connected(Protocol::Ws, -1);
    }
}

impl std::fmt::Debug for WsBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsBridge")
            .field("conn_id", &self.conn_id)
            .field("slot", &self.slot)
            .field("pending", &self.pending.len())
            .field("orders", &self.orders.len())
            .finish_non_exhaustive()
    }
}

/// An order list this connection does not have (or no longer has open, for a cancel).
fn no_such_list() -> WsError {
    WsError::bad_request(-2011, "Order list does not exist.")
}

/// How a core-thread reject of a new order reads in the dialect: the filter the instrument
/// rules express (-1013), or -2010 with the risk reason.
fn new_order_error(reason: RejectReason) -> WsError {
    match reason {
        RejectReason::BadTick => WsError::filter_failure("PRICE_FILTER"),
        RejectReason::BadLot | RejectReason::QtyTooSmall | RejectReason::QtyTooLarge => {
            WsError::filter_failure("LOT_SIZE")
        }
        RejectReason::ServerBusy => WsError::server_busy(),
        RejectReason::TooLateToEnter => WsError::order_rejected("goodTillDate is already past."),
        r => WsError::order_rejected(r.text()),
    }
}

/// Why an `order.amend.keepPriority` was refused by the core thread.
fn amend_error(reason: RejectReason) -> WsError {
    match reason {
        RejectReason::UnknownOrder => WsError::no_such_order(),
        RejectReason::ServerBusy => WsError::server_busy(),
        // The core's refusal of an amend that does not reduce the quantity.
        RejectReason::Unsupported => WsError::amend_rejected(
            "newQty must be greater than 0 and less than the order's quantity.",
        ),
        RejectReason::QtyTooSmall => {
            WsError::amend_rejected("newQty must be greater than the order's executed quantity.")
        }
        RejectReason::DuplicateClOrdId => WsError::amend_rejected("Duplicate order sent."),
        r => WsError::amend_rejected(r.text()),
    }
}

fn cancel_error(reason: RejectReason) -> WsError {
    match reason {
        RejectReason::UnknownOrder => WsError::cancel_rejected("Unknown order sent."),
        RejectReason::ServerBusy => WsError::server_busy(),
        r => WsError::cancel_rejected(r.text()),
    }
}

impl WsBridge {
    /// The route of `principal`'s account on the core thread, opened on first use.
    fn route(&mut self, principal: &Principal) -> Result<(Arc<Conn>, AccountId), WsError> {
        if let Some((name, id)) = &self.account {
            if *name != principal.account {
                return Err(WsError::order_rejected(
                    "This connection trades for another account; use one connection per account.",
                ));
            }
            if let Some(c) = &self.conn {
                return Ok((c.clone(), *id));
            }
        }
        let Some(account) = self.pipeline.account_id(&principal.account) else {
            return Err(WsError::order_rejected("unknown account"));
        };
        let slot = match self.slot {
            Some(s) => s,
            None => {
                let Some(s) = self.pipeline.alloc_slot() else {
                    return Err(WsError::server_busy());
                };
                self.slot = Some(s);
                s
            }
        };
        let conn = self
            .pipeline
            .new_conn(slot, &[account], self.cancel_on_disconnect);
        if self.pipeline.submit(Ingress::Open(conn.clone())).is_err() {
            return Err(WsError::server_busy());
        }
        debug!(conn = self.conn_id, slot = slot.0, account = %principal.account, "ws route opened");
        crate::metrics::track_conn(&conn);
        self.account = Some((principal.account.clone(), account));
        self.conn = Some(conn.clone());
        Ok((conn, account))
    }

    fn submit(&mut self, cmd: Command) -> Result<(), WsError> {
        self.pipeline
            .submit(Ingress::Cmd(cmd))
            .map_err(|_| WsError::server_busy())
    }

    /// Submits a new order and records its pending request. For RESULT and FULL answers an
    /// order status request follows it (see [`Pending::Place`]'s `fenced`): the task may read
    /// the egress queue while the core thread is still queueing the order's fills.
    // The error gives the cancel-replace's cancel outcome back by value: it is moved once,
    // on a refusal, never on the way to the core thread.
    #[allow(clippy::result_large_err)]
    fn submit_place(
        &mut self,
        token: RequestToken,
        cmd: NewOrder,
        template: LocalOrder,
        resp: RespType,
        replace: Option<Result<CancelResult, WsError>>,
    ) -> Result<(), (WsError, Option<Result<CancelResult, WsError>>)> {
        if let Err(e) = self.submit(Command::New(cmd)) {
            return Err((e, replace));
        }
        // A routed order's matching happens at its venue: the answer waits for the venue's
        // accept (then the queue drained) or refusal, never for a fence.
        let routed = self
            .pipeline
            .directory()
            .get(cmd.instrument)
            .is_some_and(|d| d.routed);
        let fenced = resp != RespType::Ack && !routed && self.submit_fence(&cmd);
        self.pending.insert(
            cmd.cl_ord_id,
            Pending::Place {
                token,
                resp,
                template,
                accepted: false,
                fenced,
                fills: Vec::new(),
                replace,
            },
        );
        Ok(())
    }

    /// Queues an order status request behind new order `cmd`: its answer comes after every
    /// report of the order's initial matching. False if the queue is full (no fence).
    fn submit_fence(&mut self, cmd: &NewOrder) -> bool {
        let queued = self
            .pipeline
            .submit(Ingress::Status(StatusRequest {
                session: cmd.session,
                account: cmd.account,
                order: EngineOrderRef::ClOrdId(cmd.cl_ord_id),
                cl_ord_id: cmd.cl_ord_id,
                instrument: cmd.instrument,
                side: cmd.side,
            }))
            .is_ok();
        if queued {
            self.status_waits
                .push_back(StatusWait::Fence(cmd.cl_ord_id));
        }
        queued
    }

    /// Validates and converts an order for the core thread.
    fn new_order(
        &mut self,
        ctx: &RequestCtx<'_>,
        order: &WsOrder,
    ) -> Result<(NewOrder, LocalOrder), WsError> {
        // A delegated token's restrictions, before anything reaches the core.
        crate::ws_auth::check_order_restrictions(
            ctx.principal,
            &order.symbol,
            order.quantity.as_ref(),
        )?;
        let (_, account) = self.route(ctx.principal)?;
        let Some(slot) = self.slot else {
            return Err(WsError::server_busy());
        };
        let dir = self.pipeline.directory();
        let Some((instrument, entry)) = dir.lookup(order.symbol.as_bytes()) else {
            return Err(WsError::invalid_symbol());
        };
        let scaled = |d: &Decimal, scale: u8, what: &'static str| {
            d.to_scaled(scale)
                .ok()
                .and_then(|v| i64::try_from(v).ok())
                .ok_or_else(|| WsError::order_rejected(format!("{what} out of range")))
        };
        let Some(q) = &order.quantity else {
            // MARKET by quoteOrderQty: refused by the symbol table already; kept for safety.
            return Err(WsError::order_rejected("quoteOrderQty is not supported"));
        };
        let qty = scaled(q, entry.qty_scale, "quantity")?;
        let price = match &order.price {
            Some(p) => scaled(p, entry.price_scale, "price")?,
            None => 0,
        };
        let stop_px = match &order.stop_price {
            Some(p) => Price(scaled(p, entry.price_scale, "stopPrice")?),
            None => Price(0),
        };
        // The protocol checked it against the TRAILING_DELTA filter, which has the engine's
        // bounds.
        let trailing = match order.trailing_delta {
            Some(d) => Some(
                u16::try_from(d)
                    .ok()
                    .and_then(TrailingDelta::new)
                    .ok_or_else(|| WsError::filter_failure("TRAILING_DELTA"))?,
            ),
            None => None,
        };
        let display_qty = match &order.iceberg_qty {
            Some(d) => Qty(scaled(d, entry.qty_scale, "icebergQty")?),
            None => Qty(0),
        };
        // At least the quantity: all of it shown, no iceberg.
        let display_qty = if display_qty.0 < qty {
            display_qty
        } else {
            Qty(0)
        };
        let tif_of = |tif: Option<TimeInForce>| match tif.unwrap_or(TimeInForce::Gtc) {
            TimeInForce::Gtc => portcullis_types::TimeInForce::Gtc,
            TimeInForce::Ioc => portcullis_types::TimeInForce::Ioc,
            TimeInForce::Fok => portcullis_types::TimeInForce::Fok,
            TimeInForce::Gtd => portcullis_types::TimeInForce::Gtd {
                // The protocol requires goodTillDate with GTD, within the nanosecond clock.
                expire_ns: order.good_till_date.unwrap_or(0).saturating_mul(1_000_000),
            },
        };
        let cl = new_cl_ord_id(order.new_client_order_id.as_ref(), WsError::order_rejected)?;
        if self.pending.contains_key(&cl) {
            return Err(WsError::order_rejected("duplicate ClOrdID"));
        }
        let ord_type = match order.order_type {
            OrderType::Limit | OrderType::LimitMaker => OrdType::Limit,
            OrderType::Market => OrdType::Market,
            OrderType::StopLoss => OrdType::Stop { stop_px },
            OrderType::StopLossLimit => OrdType::StopLimit { stop_px },
            OrderType::TakeProfit => OrdType::TakeProfit { stop_px },
            OrderType::TakeProfitLimit => OrdType::TakeProfitLimit { stop_px },
        };
        let tif = match order.order_type {
            OrderType::Market => portcullis_types::TimeInForce::Ioc,
            // A LIMIT_MAKER rests until canceled; a stop or take-profit waits until triggered,
            // then trades as a market order (its rest is cancelled).
            OrderType::LimitMaker | OrderType::StopLoss | OrderType::TakeProfit => {
                portcullis_types::TimeInForce::Gtc
            }
            OrderType::Limit | OrderType::StopLossLimit | OrderType::TakeProfitLimit => {
                tif_of(order.time_in_force)
            }
        };
        let post_only = order.order_type == OrderType::LimitMaker;
        let stp = order.stp.unwrap_or(StpMode::ExpireTaker);
        let engine_stp = match stp {
            StpMode::ExpireTaker => Some(portcullis_types::StpMode::CancelIncoming),
            StpMode::ExpireMaker => Some(portcullis_types::StpMode::CancelResting),
            StpMode::ExpireBoth => Some(portcullis_types::StpMode::CancelBoth),
            StpMode::None | StpMode::Decrement => None,
        };
        let now = ms(ctx.now.nanos());
        let cmd = NewOrder {
            session: slot,
            account,
            instrument,
            cl_ord_id: cl,
            side: match order.side {
                portcullis_session::ws::Side::Buy => portcullis_types::Side::Buy,
                portcullis_session::ws::Side::Sell => portcullis_types::Side::Sell,
            },
            ord_type,
            tif,
            price: Price(price),
            qty: Qty(qty),
            post_only,
            stp: engine_stp,
            received_ns: now_ns(),
            display_qty,
            trailing,
            oco_with: None,
            pending: false,
            triggers: None,
        };
        let local = LocalOrder {
            symbol: entry.symbol.clone(),
            price_scale: entry.price_scale,
            qty_scale: entry.qty_scale,
            order_id: 0,
            cl,
            side: order.side,
            order_type: order.order_type,
            // The dialect reports GTC for MARKET and LIMIT_MAKER.
            tif: match order.order_type {
                OrderType::Limit | OrderType::StopLossLimit | OrderType::TakeProfitLimit => {
                    order.time_in_force.unwrap_or(TimeInForce::Gtc)
                }
                _ => TimeInForce::Gtc,
            },
            price,
            stop_price: stop_px.0,
            iceberg_qty: display_qty.0,
            good_till_date: tif.expire_ns().map(ms),
            trailing_delta: trailing.map(TrailingDelta::bips),
            strategy: order.strategy,
            list: None,
            qty,
            cum_qty: 0,
            cum_quote: 0,
            status: OrderStatus::New,
            time: now,
            update_time: now,
            working_time: -1,
            stp,
        };
        Ok((cmd, local))
    }

    fn find(&self, r: &OrderRef) -> Option<&LocalOrder> {
        let by_id = r.order_id.and_then(|id| self.orders.get(&id.get()));
        let by_cl = r
            .orig_client_order_id
            .as_deref()
            .and_then(|c| ClOrdId::new(c.as_bytes()).ok())
            .and_then(|c| self.by_cl.get(&c))
            .and_then(|id| self.orders.get(id));
        let o = match (r.order_id, &r.orig_client_order_id) {
            (Some(_), Some(cl)) => by_id.filter(|o| o.cl.as_str() == cl)?,
            (Some(_), None) => by_id?,
            _ => by_cl?,
        };
        (*o.symbol == *r.symbol).then_some(o)
    }

    fn place_cancel(
        &mut self,
        ctx: &RequestCtx<'_>,
        cancel: &CancelRequest,
        then: Option<Box<(NewOrder, LocalOrder, RespType, CancelReplaceMode)>>,
    ) -> Result<(), WsError> {
        let (_, account) = self.route(ctx.principal)?;
        let Some(slot) = self.slot else {
            return Err(WsError::server_busy());
        };
        let dir = self.pipeline.directory();
        let Some((instrument, _)) = dir.lookup(cancel.target.symbol.as_bytes()) else {
            return Err(WsError::invalid_symbol());
        };
        let orig = match &cancel.target.orig_client_order_id {
            Some(c) => ClOrdId::new(c.as_bytes())
                .map_err(|_| WsError::cancel_rejected("Unknown order sent."))?,
            None => ClOrdId::EMPTY,
        };
        let cl = new_cl_ord_id(
            cancel.new_client_order_id.as_ref(),
            WsError::cancel_rejected,
        )?;
        let (order_id, orig_cl_ord_id) =
            self.engine_target(&cancel.target, orig, account, slot, instrument);
        let cmd = CancelOrder {
            session: slot,
            account,
            instrument,
            cl_ord_id: cl,
            order_id,
            orig_cl_ord_id,
            received_ns: now_ns(),
        };
        self.submit(Command::Cancel(cmd))?;
        self.pending.insert(
            cl,
            Pending::Cancel {
                token: ctx.token,
                then,
            },
        );
        Ok(())
    }

    /// How the engine is to find the order a request names (its orderId, or else the
    /// session's clientOrderId `orig`): by the orderId the request gives, or for an
    /// origClientOrderId the connection did not choose, by the orderId of the other
    /// connection's or FIX session's order the account's history knows (the engine knows
    /// another session's order by orderId only); else by `orig`.
    fn engine_target(
        &self,
        target: &OrderRef,
        orig: ClOrdId,
        account: AccountId,
        slot: SessionId,
        instrument: InstrumentId,
    ) -> (Option<OrderId>, ClOrdId) {
        let elsewhere = || {
            if self.by_cl.contains_key(&orig) {
                return None;
            }
            let p = self.history.as_ref()?.order_by_cl(account, &orig)?;
            (p.session != slot && p.instrument == instrument).then_some(p.order_id)
        };
        match target
            .order_id
            .map(|id| OrderId(id.get()))
            .or_else(elsewhere)
        {
            Some(id) => (Some(id), ClOrdId::EMPTY),
            None => (None, orig),
        }
    }

    /// Queues an `order.amend.keepPriority` as a replace at the order's own price
    /// ([`ReplaceOrder::KEEP_PRICE`]), which the core refuses unless it reduces the quantity.
    fn place_amend(&mut self, ctx: &RequestCtx<'_>, req: &AmendRequest) -> Result<(), WsError> {
        let (_, account) = self.route(ctx.principal)?;
        let Some(slot) = self.slot else {
            return Err(WsError::server_busy());
        };
        let dir = self.pipeline.directory();
        let Some((instrument, entry)) = dir.lookup(req.target.symbol.as_bytes()) else {
            return Err(WsError::invalid_symbol());
        };
        let qty = req
            .new_qty
            .to_scaled(entry.qty_scale)
            .ok()
            .and_then(|v| i64::try_from(v).ok())
            .ok_or_else(|| WsError::amend_rejected("newQty out of range"))?;
        let orig = match &req.target.orig_client_order_id {
            Some(c) => ClOrdId::new(c.as_bytes()).map_err(|_| WsError::no_such_order())?,
            None => ClOrdId::EMPTY,
        };
        let cl = new_cl_ord_id(req.new_client_order_id.as_ref(), WsError::amend_rejected)?;
        if self.pending.contains_key(&cl) {
            return Err(WsError::amend_rejected("Duplicate order sent."));
        }
        let (order_id, orig_cl_ord_id) =
            self.engine_target(&req.target, orig, account, slot, instrument);
        let cmd = ReplaceOrder {
            session: slot,
            account,
            instrument,
            cl_ord_id: cl,
            order_id,
            orig_cl_ord_id,
            price: ReplaceOrder::KEEP_PRICE,
            qty: Qty(qty),
            received_ns: now_ns(),
            tif: None,
        };
        self.submit(Command::Replace(cmd))?;
        self.pending.insert(cl, Pending::Amend { token: ctx.token });
        Ok(())
    }

    /// The answer to an amend from its Replaced event: the connection's order as its table
    /// now has it, or another connection's order as the event tells it.
    fn amend_outcome(&self, e: &Event, own: Option<&LocalOrder>) -> Result<AmendOutcome, WsError> {
        let order = match own {
            Some(o) => o.info(),
            None => {
                let state = if e.cum_qty.0 > 0 {
                    OrderState::PartiallyFilled
                } else {
                    OrderState::Working
                };
                let p = PastOrder {
                    updated_ns: e.ts_ns,
                    working_ns: e.received_ns,
                    ..PastOrder::of_event(e, state)
                };
                self.local_order_of(&p).ok_or_else(WsError::unknown)?.info()
            }
        };
        Ok(AmendOutcome {
            transact_time: ms(e.ts_ns),
            execution_id: safe_id(e.exec_id),
            orig_client_order_id: e.orig_cl_ord_id.as_str().to_owned(),
            order,
        })
    }

    fn complete(&mut self, token: RequestToken, result: Result<Outcome, WsError>) {
        self.out.push(AppOutput::Complete { token, result });
    }

    /// Applies one event to the connection's orders, its pending requests, and the user data
    /// stream.
    fn on_event(&mut self, e: &Event) {
        if let EventKind::Pending(_) = e.kind {
            // The dialect has no report of a request on its way to a venue: the venue's
            // answer is the order's next event.
            return;
        }
        let now = ms(e.ts_ns);
        // The order the event is about: known, or being placed by a pending request.
        let mut order = self.orders.get(&e.order_id.0).cloned();
        if order.is_none() {
            let template = match self.pending.get(&e.cl_ord_id) {
                Some(Pending::Place { template, .. }) => Some(template),
                Some(Pending::List(p)) => Some(&p.template),
                _ => None,
            };
            if let Some(template) = template {
                let mut o = template.clone();
                o.order_id = e.order_id.0;
                // A list's first order gives the list its id.
                if let Some(Pending::List(p)) = self.pending.get(&e.cl_ord_id) {
                    o.list = Some(p.placed.first().copied().unwrap_or(o.order_id));
                }
                order = Some(o);
            }
        }
        if let Some(o) = order.as_mut() {
            o.update_time = now;
            match e.kind {
                EventKind::New | EventKind::Activated => {
                    o.status = if e.details.pending {
                        OrderStatus::PendingNew
                    } else {
                        OrderStatus::New
                    };
                    // A stop or take-profit waiting for its trigger works from the trigger, a
                    // pending order once placed.
                    if !e.details.waiting && !e.details.pending {
                        o.working_time = now;
                    }
                }
                EventKind::PartialFill | EventKind::Fill => {
                    o.cum_qty = e.cum_qty.0;
                    o.cum_quote += i128::from(e.last_px.0) * i128::from(e.last_qty.0);
                    o.status = if e.kind == EventKind::Fill {
                        OrderStatus::Filled
                    } else {
                        OrderStatus::PartiallyFilled
                    };
                }
                EventKind::Canceled => o.status = OrderStatus::Canceled,
                EventKind::Expired => o.status = OrderStatus::Expired,
                EventKind::Replaced => {
                    o.price = e.price.0;
                    o.qty = e.qty.0;
                    // The order goes by its new clientOrderId from now on.
                    if !e.cl_ord_id.is_empty() && e.cl_ord_id != o.cl {
                        self.by_cl.remove(&o.cl);
                        o.cl = e.cl_ord_id;
                    }
                }
                EventKind::Rejected(_) => o.status = OrderStatus::Rejected,
                // A stop or take-profit works from its trigger on.
                EventKind::Triggered => o.working_time = now,
                EventKind::CancelRejected { .. }
                | EventKind::MassCancelDone { .. }
                | EventKind::Route(_)
                | EventKind::Pending(_) => {}
            }
            if o.order_id != 0 && !matches!(e.kind, EventKind::Rejected(_)) {
                let id = o.order_id;
                let open = o.is_open();
                self.by_cl.insert(o.cl, id);
                self.orders.insert(id, o.clone());
                if !open && !self.done.contains(&id) {
                    self.done.push_back(id);
                    while self.done.len() > DONE_ORDERS_KEPT {
                        if let Some(old) = self.done.pop_front() {
                            if let Some(gone) = self.orders.remove(&old) {
                                self.by_cl.remove(&gone.cl);
                            }
                            self.lists.remove(&old);
                        }
                    }
                }
            }
        }

        if self.user_stream {
            if let Some(report) = order.as_ref().and_then(|o| execution_report(e, o)) {
                self.out.push(AppOutput::ExecutionReport(report));
            }
        }

        // An order list whose orders are all done.
        if let Some(o) = &order {
            self.list_done(o, now);
        }
        // The pending request the event answers.
        match e.kind {
            EventKind::Rejected(reason)
                if matches!(self.pending.get(&e.cl_ord_id), Some(Pending::List(_))) =>
            {
                // Refused, the list is: the core thread cancels its orders placed before.
                if let Some(Pending::List(p)) = self.pending.remove(&e.cl_ord_id) {
                    self.complete(p.token, Err(new_order_error(reason)));
                }
            }
            EventKind::New if matches!(self.pending.get(&e.cl_ord_id), Some(Pending::List(_))) => {
                self.list_order_accepted(e, now);
            }
            EventKind::Rejected(reason) => {
                if let Some(Pending::Place { token, replace, .. }) =
                    self.pending.remove(&e.cl_ord_id)
                {
                    let err = new_order_error(reason);
                    match replace {
                        Some(cancel) => self.complete(
                            token,
                            Ok(CancelReplaceOutcome {
                                cancel,
                                new_order: NewOrderOutcome::Failure(err),
                            }
                            .into()),
                        ),
                        None => self.complete(token, Err(err)),
                    }
                }
            }
            EventKind::New => {
                if let Some(Pending::Place { accepted, resp, .. }) =
                    self.pending.get_mut(&e.cl_ord_id)
                {
                    *accepted = true;
                    if *resp == RespType::Ack {
                        self.finish_place(e.cl_ord_id);
                    }
                }
            }
            EventKind::PartialFill | EventKind::Fill => {
                if let Some(Pending::Place { fills, .. }) = self.pending.get_mut(&e.cl_ord_id) {
                    if let Some(o) = &order {
                        fills.push(Fill {
                            price: o.px(e.last_px.0),
                            qty: o.qty_text(e.last_qty.0),
                            commission: fmt_scaled(0, o.price_scale),
                            commission_asset: "USD".to_owned(),
                            trade_id: safe_id(e.trade_id.0),
                        });
                    }
                }
            }
            EventKind::Canceled
                if self.pending.values().any(|p| {
                    matches!(p, Pending::ListCancel { waiting, .. } if waiting.contains(&e.order_id.0))
                }) =>
            {
                self.list_order_cancelled(e, now, order.as_ref());
            }
            EventKind::Canceled => {
                if let Some(Pending::Cancel { .. }) = self.pending.get(&e.cl_ord_id) {
                    if let Some(Pending::Cancel { token, then }) =
                        self.pending.remove(&e.cl_ord_id)
                    {
                        let result = match &order {
                            Some(o) => o.cancel_result(&e.cl_ord_id, now),
                            None => self.cancel_result_of_event(e),
                        };
                        self.after_cancel(token, Ok(result), then);
                    }
                } else if self.pending.values().any(|p| {
                    matches!(p, Pending::CancelAll { instrument, .. } if *instrument == e.instrument)
                }) {
                    let r = match &order {
                        Some(o) => o.cancel_result(&e.cl_ord_id, now),
                        None => self.cancel_result_of_event(e),
                    };
                    for p in self.pending.values_mut() {
                        if let Pending::CancelAll {
                            instrument,
                            results,
                            ..
                        } = p
                        {
                            if *instrument == e.instrument {
                                results.push(r);
                                break;
                            }
                        }
                    }
                } else if let Some(Pending::Place { .. }) = self.pending.get(&e.cl_ord_id) {
                    // The unfilled rest of an IOC/MARKET order: the order's answer carries it.
                }
            }
            EventKind::CancelRejected { reason, .. }
                if matches!(self.pending.get(&e.cl_ord_id), Some(Pending::ListCancel { .. })) =>
            {
                if let Some(Pending::ListCancel { token, .. }) = self.pending.remove(&e.cl_ord_id) {
                    self.complete(token, Err(cancel_error(reason)));
                }
            }
            EventKind::CancelRejected { reason, .. } => {
                if let Some(Pending::Amend { .. }) = self.pending.get(&e.cl_ord_id) {
                    if let Some(Pending::Amend { token }) = self.pending.remove(&e.cl_ord_id) {
                        self.complete(token, Err(amend_error(reason)));
                    }
                } else if let Some(Pending::Cancel { token, then }) =
                    self.pending.remove(&e.cl_ord_id)
                {
                    self.after_cancel(token, Err(cancel_error(reason)), then);
                } else if let Some(Pending::CancelAll { token, .. }) =
                    self.pending.remove(&e.cl_ord_id)
                {
                    self.complete(token, Err(cancel_error(reason)));
                }
            }
            EventKind::MassCancelDone { .. } => {
                if let Some(Pending::CancelAll { token, results, .. }) =
                    self.pending.remove(&e.cl_ord_id)
                {
                    self.complete(token, Ok(results.into()));
                }
            }
            EventKind::Replaced => {
                if let Some(Pending::Amend { .. }) = self.pending.get(&e.cl_ord_id) {
                    if let Some(Pending::Amend { token }) = self.pending.remove(&e.cl_ord_id) {
                        let own = self.orders.get(&e.order_id.0).cloned();
                        let result = self.amend_outcome(e, own.as_ref());
                        self.complete(token, result.map(Into::into));
                    }
                }
            }
            EventKind::Expired
            | EventKind::Triggered
            | EventKind::Activated
            | EventKind::Route(_)
            | EventKind::Pending(_) => {}
        }
    }

    fn cancel_result_of_event(&self, e: &Event) -> CancelResult {
        let dir = self.pipeline.directory();
        let (symbol, ps, qs) = dir
            .get(e.instrument)
            .map(|d| (d.symbol.to_string(), d.price_scale, d.qty_scale))
            .unwrap_or_default();
        CancelResult {
            symbol,
            orig_client_order_id: if e.orig_cl_ord_id.is_empty() {
                e.cl_ord_id.as_str().to_owned()
            } else {
                e.orig_cl_ord_id.as_str().to_owned()
            },
            order_id: safe_id(e.order_id.0),
            client_order_id: e.cl_ord_id.as_str().to_owned(),
            transact_time: ms(e.ts_ns),
            price: fmt_scaled(e.price.0.into(), ps),
            orig_qty: fmt_scaled(e.qty.0.into(), qs),
            executed_qty: fmt_scaled(e.cum_qty.0.into(), qs),
            orig_quote_order_qty: fmt_scaled(0, ps),
            cummulative_quote_qty: fmt_scaled(
                i128::from(e.avg_px.0) * i128::from(e.cum_qty.0),
                ps.saturating_add(qs),
            ),
            status: OrderStatus::Canceled,
            time_in_force: ws_tif(e.tif),
            order_type: ws_order_type(e.ord_type),
            side: ws_side(e.side),
            stp: StpMode::ExpireTaker,
        }
    }

    /// A cancel is done: answer `order.cancel`, or go on with the cancel-replace's new order.
    fn after_cancel(
        &mut self,
        token: RequestToken,
        result: Result<CancelResult, WsError>,
        then: Option<Box<(NewOrder, LocalOrder, RespType, CancelReplaceMode)>>,
    ) {
        let Some(next) = then else {
            self.complete(token, result.map(Into::into));
            return;
        };
        let (cmd, template, resp, mode) = *next;
        if result.is_err() && mode == CancelReplaceMode::StopOnFailure {
            self.complete(
                token,
                Ok(CancelReplaceOutcome {
                    cancel: result,
                    new_order: NewOrderOutcome::NotAttempted,
                }
                .into()),
            );
            return;
        }
        if let Err((err, cancel)) = self.submit_place(token, cmd, template, resp, Some(result)) {
            self.complete(
                token,
                Ok(CancelReplaceOutcome {
                    cancel: cancel.unwrap_or_else(|| Err(WsError::unknown())),
                    new_order: NewOrderOutcome::Failure(err),
                }
                .into()),
            );
        }
    }

    /// Answers an accepted `order.place` with the order's state now.
    /// An order of a list being placed was accepted: the next one goes, joined to those
    /// before it; the last one's acceptance answers the request.
    fn list_order_accepted(&mut self, e: &Event, now: i64) {
        let Some(Pending::List(mut p)) = self.pending.remove(&e.cl_ord_id) else {
            return;
        };
        let id = e.order_id.0;
        p.placed.push(id);
        p.list.orders[p.shown_at] = id;
        let list_id = p.placed[0];
        if let Some(o) = self.orders.get_mut(&id) {
            o.list = Some(list_id);
        }
        self.lists.insert(list_id, p.list.clone());
        if let Some((mut cmd, template, join, shown_at)) = p.rest.pop_front() {
            match join {
                Join::OcoWith(i) => cmd.oco_with = Some(OrderId(p.placed[i])),
                Join::Triggers(i) => cmd.triggers = Some(OrderId(p.placed[i])),
            }
            if let Err(err) = self.submit(Command::New(cmd)) {
                // The orders placed stay alone: cancelled (the first's cancel takes the
                // others), as the list is refused.
                self.cancel_own(list_id);
                self.complete(p.token, Err(err));
                return;
            }
            if p.rest.is_empty() && p.fenced {
                p.fenced = self.submit_fence(&cmd);
            }
            p.template = LocalOrder {
                list: Some(list_id),
                ..template
            };
            p.shown_at = shown_at;
            self.pending.insert(cmd.cl_ord_id, Pending::List(p));
            return;
        }
        if self.user_stream {
            let status = self.list_status(list_id, &p.list, false, now);
            self.out.push(AppOutput::ListStatus(status));
        }
        if p.fenced {
            // The answer waits for the fence behind the last order.
            self.pending.insert(e.cl_ord_id, Pending::List(p));
            return;
        }
        self.finish_list(&p, now);
    }

    /// Answers a list placement whose orders are all accepted, each as it stands now.
    fn finish_list(&mut self, p: &ListPlacement, now: i64) {
        let list = &p.list;
        let reports: Vec<OrderResult> = list
            .orders
            .iter()
            .filter_map(|id| self.orders.get(id))
            .map(|o| o.result(Vec::new()))
            .collect();
        if reports.len() != list.orders.len() {
            self.complete(p.token, Err(WsError::unknown()));
            return;
        }
        let result = OrderListResult {
            order_list_id: safe_id(p.placed[0]),
            contingency: list.contingency,
            list_client_order_id: list.client_id.to_string(),
            transaction_time: now,
            symbol: list.symbol.to_string(),
            reports,
        };
        self.complete(p.token, Ok(result.into()));
    }

    /// A `listStatus` event of list `id`.
    fn list_status(&self, id: u64, list: &LocalList, all_done: bool, now: i64) -> ListStatus {
        ListStatus {
            event_time: now,
            symbol: list.symbol.to_string(),
            order_list_id: safe_id(id),
            contingency: list.contingency,
            all_done,
            list_client_order_id: list.client_id.to_string(),
            transaction_time: now,
            orders: self.list_orders(list),
        }
    }

    /// The ids and client ids of a list's accepted orders, in the dialect's order.
    fn list_orders(&self, list: &LocalList) -> Vec<(SafeId, String)> {
        list.orders
            .iter()
            .filter_map(|id| self.orders.get(id))
            .map(|o| (safe_id(o.order_id), o.cl.as_str().to_owned()))
            .collect()
    }

    /// Whether every order of a list is done (one the connection no longer keeps is).
    fn list_all_done(&self, list: &LocalList) -> bool {
        list.orders
            .iter()
            .all(|id| self.orders.get(id).map_or(true, |o| !o.is_open()))
    }

    /// An order of a list being cancelled by `orderList.cancel` was: its report joins the
    /// answer, which goes once every open order of the list is cancelled.
    fn list_order_cancelled(&mut self, e: &Event, now: i64, order: Option<&LocalOrder>) {
        let key = self.pending.iter().find_map(|(k, p)| match p {
            Pending::ListCancel { waiting, .. } if waiting.contains(&e.order_id.0) => Some(*k),
            _ => None,
        });
        let Some(key) = key else { return };
        let report = match order {
            Some(o) => o.cancel_result(&key, now),
            None => self.cancel_result_of_event(e),
        };
        let Some(Pending::ListCancel { info, waiting, .. }) = self.pending.get_mut(&key) else {
            return;
        };
        waiting.retain(|&id| id != e.order_id.0);
        info.cancel_reports.push(report);
        if waiting.is_empty() {
            if let Some(Pending::ListCancel {
                token, mut info, ..
            }) = self.pending.remove(&key)
            {
                info.all_done = true;
                info.transaction_time = now;
                self.complete(token, Ok((*info).into()));
            }
        }
    }

    /// Sends `listStatus` ALL_DONE once every order of `o`'s list is done (when the last
    /// of them ends).
    fn list_done(&mut self, o: &LocalOrder, now: i64) {
        let Some(id) = o.list else { return };
        if o.is_open() || !self.user_stream {
            return;
        }
        let Some(list) = self.lists.get(&id) else {
            return;
        };
        if list.done_sent || list.orders.contains(&0) || !self.list_all_done(list) {
            return;
        }
        let status = self.list_status(id, list, true, now);
        self.out.push(AppOutput::ListStatus(status));
        if let Some(list) = self.lists.get_mut(&id) {
            list.done_sent = true;
        }
    }

    /// The order list `r` names among this connection's: its id and state.
    fn find_list(&self, r: &OrderListRef) -> Option<(u64, &LocalList)> {
        self.lists
            .iter()
            .find(|(&id, l)| {
                r.order_list_id.map_or(true, |want| want.get() == id)
                    && r.list_client_order_id
                        .as_deref()
                        .map_or(true, |c| c == &*l.client_id)
            })
            .map(|(&id, l)| (id, l))
    }

    /// An order list's state as the dialect shows it.
    fn list_info(&self, id: u64, list: &LocalList, now: i64) -> OrderListInfo {
        OrderListInfo {
            order_list_id: safe_id(id),
            contingency: list.contingency,
            list_client_order_id: list.client_id.to_string(),
            transaction_time: now,
            symbol: list.symbol.to_string(),
            all_done: self.list_all_done(list),
            orders: self.list_orders(list),
            cancel_reports: Vec::new(),
        }
    }

    /// Places an order list: `legs` in placement order, each joined as `joins` says to those
    /// before it; `shown[i]` is leg `i`'s place in the dialect's order of the list's orders.
    /// The first goes now, each acceptance sends the next.
    fn place_list(
        &mut self,
        ctx: &RequestCtx<'_>,
        contingency: Contingency,
        list_client_order_id: &Option<String>,
        legs: &[&WsOrder],
        joins: &[Option<Join>],
        shown: &[usize],
    ) -> Dispatch<OrderListResult> {
        let mut orders = Vec::with_capacity(legs.len());
        for leg in legs {
            match self.new_order(ctx, leg) {
                Ok(o) => orders.push(o),
                Err(e) => return Dispatch::Ready(Err(e)),
            }
        }
        for (k, (a, _)) in orders.iter().enumerate() {
            if orders[..k].iter().any(|(b, _)| b.cl_ord_id == a.cl_ord_id) {
                return Dispatch::Ready(Err(WsError::order_rejected("duplicate ClOrdID")));
            }
        }
        // A list's orders wait in the core for the others (a pending order for its working
        // order); the join marks who waits for whom.
        let pending_legs = match contingency {
            Contingency::Oco => 0,
            Contingency::Oto => legs.len() - 1,
        };
        for (k, (cmd, _)) in orders.iter_mut().enumerate() {
            cmd.pending = k < pending_legs;
        }
        let client_id: Box<str> = match list_client_order_id {
            Some(c) => c.as_str().into(),
            None => generated_cl_ord_id().as_str().into(),
        };
        let mut rest: VecDeque<(NewOrder, LocalOrder, Join, usize)> = VecDeque::new();
        let mut it = orders.into_iter().zip(joins).zip(shown);
        let Some((((first, first_template), _), &first_shown)) = it.next() else {
            return Dispatch::Ready(Err(WsError::unknown()));
        };
        for (((cmd, template), join), &at) in it {
            let Some(join) = *join else {
                return Dispatch::Ready(Err(WsError::unknown()));
            };
            rest.push_back((cmd, template, join, at));
        }
        if let Err(e) = self.submit(Command::New(first)) {
            return Dispatch::Ready(Err(e));
        }
        let list = LocalList {
            contingency,
            client_id,
            symbol: first_template.symbol.clone(),
            orders: vec![0; legs.len()],
            done_sent: false,
        };
        self.pending.insert(
            first.cl_ord_id,
            Pending::List(Box::new(ListPlacement {
                token: ctx.token,
                template: first_template,
                rest,
                shown_at: first_shown,
                placed: Vec::with_capacity(legs.len()),
                list,
                // Wanted; set to whether it was queued when the last order is sent.
                fenced: legs.first().is_some_and(|l| l.resp_type != RespType::Ack),
            })),
        );
        Dispatch::Pending
    }

    /// An order list of the account's history as the dialect shows it: its client id only if
    /// this connection placed it (the history does not know it).
    fn past_list_info(
        &self,
        history: &OrderHistory,
        account: AccountId,
        l: &PastList,
    ) -> OrderListInfo {
        // The dialect lists a working order before the pending orders it triggers (placed
        // before it).
        let mut ids = l.orders.clone();
        if l.triggers {
            ids.rotate_right(1);
        }
        let past: Vec<Option<PastOrder>> =
            ids.iter().map(|&id| history.order(account, id)).collect();
        OrderListInfo {
            order_list_id: safe_id(l.id.0),
            contingency: if l.triggers {
                Contingency::Oto
            } else {
                Contingency::Oco
            },
            list_client_order_id: self
                .lists
                .get(&l.id.0)
                .map_or(String::new(), |own| own.client_id.to_string()),
            transaction_time: ms(l.created_ns),
            symbol: self
                .pipeline
                .directory()
                .get(l.instrument)
                .map_or(String::new(), |e| e.symbol.to_string()),
            all_done: past
                .iter()
                .all(|p| p.as_ref().map_or(true, |p| !p.state.is_working())),
            orders: ids
                .iter()
                .zip(&past)
                .map(|(id, p)| {
                    let cl = p.as_ref().map_or("", |p| p.cl_ord_id.as_str());
                    (safe_id(id.0), cl.to_owned())
                })
                .collect(),
            cancel_reports: Vec::new(),
        }
    }

    /// The account's order lists in the history that `w` selects, with the history and the
    /// account; `None` without a history.
    fn past_lists(&self, ctx: &RequestCtx<'_>, w: &Window) -> Option<Vec<OrderListInfo>> {
        let history = self.history.clone()?;
        let account = self.pipeline.account_id(&ctx.principal.account)?;
        let lists = history.lists(account, w);
        Some(
            lists
                .iter()
                .map(|l| self.past_list_info(&history, account, l))
                .collect(),
        )
    }

    /// Cancels an order of this connection by id (no answer awaited).
    fn cancel_own(&mut self, order_id: u64) {
        let (Some(o), Some(slot), Some((_, account))) =
            (self.orders.get(&order_id), self.slot, self.account.as_ref())
        else {
            return;
        };
        let Some((instrument, _)) = self.pipeline.directory().lookup(o.symbol.as_bytes()) else {
            return;
        };
        let cmd = Command::Cancel(CancelOrder {
            session: slot,
            account: *account,
            instrument,
            cl_ord_id: ClOrdId::EMPTY,
            order_id: Some(OrderId(order_id)),
            orig_cl_ord_id: ClOrdId::EMPTY,
            received_ns: now_ns(),
        });
        let _ = self.submit(cmd);
    }

    fn finish_place(&mut self, cl: ClOrdId) {
        let Some(Pending::Place {
            token,
            resp,
            template,
            fills,
            replace,
            ..
        }) = self.pending.remove(&cl)
        else {
            return;
        };
        let order = self
            .by_cl
            .get(&cl)
            .and_then(|id| self.orders.get(id))
            .cloned()
            .unwrap_or(template);
        let fills = if resp == RespType::Full {
            fills
        } else {
            Vec::new()
        };
        let result = order.result(fills);
        match replace {
            Some(cancel) => self.complete(
                token,
                Ok(CancelReplaceOutcome {
                    cancel,
                    new_order: NewOrderOutcome::Success(result),
                }
                .into()),
            ),
            None => self.complete(token, Ok(result.into())),
        }
    }

    /// The dialect's view of a working order from the core thread's answer to a status
    /// request; `None` for an unknown order. What the core thread does not keep is reported
    /// as for orders of the connection: the time it was received for `time`, `updateTime`
    /// and `workingTime`, the quote quantity from the average price, and EXPIRE_TAKER.
    fn working_order_info(&self, e: &Event) -> Option<OrderInfo> {
        let state = match e.kind {
            EventKind::New if e.details.pending => OrderState::Pending,
            EventKind::New => OrderState::Working,
            EventKind::PartialFill => OrderState::PartiallyFilled,
            _ => return None,
        };
        let order = PastOrder {
            updated_ns: e.received_ns,
            working_ns: if e.details.waiting || e.details.pending {
                -1
            } else {
                e.received_ns
            },
            ..PastOrder::of_event(e, state)
        };
        Some(self.local_order_of(&order)?.info())
    }

    /// An order of the account's history as the dialect shows it; the connection's own table
    /// is fresher for its orders (the history follows the journal).
    fn past_order_info(&self, p: &PastOrder) -> Option<OrderInfo> {
        if let Some(own) = self.orders.get(&p.order_id.0) {
            return Some(own.info());
        }
        Some(self.local_order_of(p)?.info())
    }

    /// An order of another connection or session, as the connection's own orders are kept
    /// (the STP mode, which only the core keeps, as EXPIRE_TAKER).
    fn local_order_of(&self, p: &PastOrder) -> Option<LocalOrder> {
        let dir = self.pipeline.directory();
        let entry = dir.get(p.instrument)?;
        let working = if p.working_ns >= 0 {
            ms(p.working_ns)
        } else {
            -1
        };
        let order = LocalOrder {
            symbol: entry.symbol.clone(),
            price_scale: entry.price_scale,
            qty_scale: entry.qty_scale,
            order_id: p.order_id.0,
            cl: p.cl_ord_id,
            side: ws_side(p.side),
            order_type: ws_order_type(p.ord_type),
            tif: ws_tif(p.tif),
            price: p.price.0,
            stop_price: p.ord_type.stop_px().map_or(0, |s| s.0),
            iceberg_qty: p.display_qty.0,
            trailing_delta: p.trailing.map(TrailingDelta::bips),
            strategy: OrderStrategy::default(),
            list: None,
            good_till_date: p.tif.expire_ns().map(ms),
            qty: p.qty.0,
            cum_qty: p.cum_qty.0,
            cum_quote: p.cum_quote,
            status: match p.state {
                OrderState::Pending => OrderStatus::PendingNew,
                OrderState::Working => OrderStatus::New,
                OrderState::PartiallyFilled => OrderStatus::PartiallyFilled,
                OrderState::Filled => OrderStatus::Filled,
                OrderState::Canceled => OrderStatus::Canceled,
                OrderState::Expired => OrderStatus::Expired,
            },
            time: ms(p.created_ns),
            update_time: ms(p.updated_ns),
            working_time: working,
            stp: StpMode::ExpireTaker,
        };
        Some(order)
    }

    /// One trade of the account's history as the dialect shows it.
    fn past_trade_info(&self, t: &PastTrade) -> Option<TradeInfo> {
        let dir = self.pipeline.directory();
        let entry = dir.get(t.instrument)?;
        let (ps, qs) = (entry.price_scale, entry.qty_scale);
        Some(TradeInfo {
            symbol: entry.symbol.to_string(),
            id: safe_id(t.trade_id),
            order_id: safe_id(t.order_id.0),
            price: fmt_scaled(t.price.0.into(), ps),
            qty: fmt_scaled(t.qty.0.into(), qs),
            quote_qty: fmt_scaled(
                i128::from(t.price.0) * i128::from(t.qty.0),
                ps.saturating_add(qs),
            ),
            commission: fmt_scaled(0, ps),
            commission_asset: "USD".to_owned(),
            time: ms(t.ts_ns),
            is_buyer: t.side == portcullis_types::Side::Buy,
            is_maker: t.maker,
        })
    }

    /// The account's history and the instrument a history request names.
    fn history_of(
        &mut self,
        ctx: &RequestCtx<'_>,
        symbol: &str,
    ) -> Result<(Arc<OrderHistory>, AccountId, InstrumentId), WsError> {
        let Some(history) = self.history.clone() else {
            return Err(WsError::unsupported());
        };
        let Some(account) = self.pipeline.account_id(&ctx.principal.account) else {
            return Err(WsError::order_rejected("unknown account"));
        };
        let Some((instrument, _)) = self.pipeline.directory().lookup(symbol.as_bytes()) else {
            return Err(WsError::invalid_symbol());
        };
        Ok((history, account, instrument))
    }

    /// The answer to `openOrders.status` from the core thread's list: this connection's
    /// orders as its table tells them, the others as [`Self::working_order_info`] does, by
    /// orderId.
    fn open_orders_info(
        &self,
        reply: &OpenOrdersReply,
        now_ns: i64,
    ) -> Result<Vec<OrderInfo>, WsError> {
        let Some(list) = reply.get() else {
            return Err(WsError::unknown());
        };
        let Some(list) = list else {
            return Err(WsError::bad_request(
                -1000,
                format!("more than {MAX_LISTED_ORDERS} open orders: ask for one symbol at a time"),
            ));
        };
        let mut out: Vec<OrderInfo> = list
            .iter()
            .filter_map(|snap| match self.orders.get(&snap.order_id.0) {
                Some(own) if own.is_open() => Some(own.info()),
                _ => self.working_order_info(&snap.to_event(snap.session, now_ns)),
            })
            .collect();
        out.sort_by_key(|o| o.order_id);
        Ok(out)
    }

    /// Who asks the core thread for a listing (open orders, positions) and of what: the
    /// connection's slot, the request's account, the symbol's instrument (or all).
    fn listing_scope(
        &mut self,
        ctx: &RequestCtx<'_>,
        symbol: Option<&str>,
    ) -> Result<(SessionId, AccountId, Option<InstrumentId>), WsError> {
        let (_, account) = self.route(ctx.principal)?;
        let slot = self.slot.ok_or_else(WsError::server_busy)?;
        let instrument = match symbol {
            Some(s) => match self.pipeline.directory().lookup(s.as_bytes()) {
                Some((id, _)) => Some(id),
                None => return Err(WsError::invalid_symbol()),
            },
            None => None,
        };
        Ok((slot, account, instrument))
    }

    /// The core thread's positions as the dialect shows them.
    fn positions_info(&self, reply: &PositionsReply) -> Result<Vec<PositionInfo>, WsError> {
        let list = reply.get().ok_or_else(WsError::unknown)?;
        let dir = self.pipeline.directory();
        Ok(list
            .iter()
            .filter_map(|p| {
                let e = dir.get(p.instrument)?;
                let mark = p.reference_price;
                Some(PositionInfo {
                    symbol: e.symbol.to_string(),
                    position_amt: p.qty.display(e.qty_scale).to_string(),
                    entry_price: p
                        .entry_price
                        .unwrap_or(Price(0))
                        .display(e.price_scale)
                        .to_string(),
                    mark_price: mark.map(|m| m.display(e.price_scale).to_string()),
                    notional: mark.map(|m| {
                        let units = i128::from(p.qty.0)
                            * i128::from(m.0)
                            * i128::from(e.rules.multiplier.max(1));
                        fmt_scaled(units, e.qty_scale + e.price_scale)
                    }),
                })
            })
            .collect())
    }

    /// Asks the core thread for `symbol`'s best `levels` a side and last trade, for `answer`:
    /// the core owns the books and lists them off the order path.
    fn list_levels<T>(
        &mut self,
        ctx: &RequestCtx<'_>,
        symbol: &str,
        levels: usize,
        answer: BookAnswer,
    ) -> Dispatch<T> {
        let (slot, account, instrument) = match self.listing_scope(ctx, Some(symbol)) {
            Ok((slot, account, Some(instrument))) => (slot, account, instrument),
            Ok(_) => return Dispatch::Ready(Err(WsError::invalid_symbol())),
            Err(e) => return Dispatch::Ready(Err(e)),
        };
        let reply = Arc::new(DepthReply::default());
        let request = DepthRequest {
            session: slot,
            account,
            instrument,
            levels,
            reply: reply.clone(),
        };
        if self.pipeline.submit(Ingress::Depth(request)).is_err() {
            return Dispatch::Ready(Err(WsError::server_busy()));
        }
        self.status_waits.push_back(StatusWait::Depth {
            token: ctx.token,
            instrument,
            reply,
            answer,
        });
        Dispatch::Pending
    }

    /// The last trade price of `instrument` in the core thread's listing, as the dialect
    /// shows it (`0` before the first trade).
    fn last_price(
        &self,
        instrument: InstrumentId,
        reply: &DepthReply,
    ) -> Result<PriceTicker, WsError> {
        let d = reply.get().ok_or_else(WsError::unknown)?;
        let dir = self.pipeline.directory();
        let e = dir.get(instrument).ok_or_else(WsError::invalid_symbol)?;
        Ok(PriceTicker {
            symbol: e.symbol.to_string(),
            price: d
                .last_trade
                .unwrap_or(Price(0))
                .display(e.price_scale)
                .to_string(),
        })
    }

    /// The core thread's levels of `instrument` as the dialect shows them.
    fn depth_info(
        &self,
        instrument: InstrumentId,
        reply: &DepthReply,
    ) -> Result<DepthInfo, WsError> {
        let d = reply.get().ok_or_else(WsError::unknown)?;
        let dir = self.pipeline.directory();
        let e = dir.get(instrument).ok_or_else(WsError::invalid_symbol)?;
        let levels = |v: &[(Price, Qty)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(p, q)| {
                    (
                        p.display(e.price_scale).to_string(),
                        q.display(e.qty_scale).to_string(),
                    )
                })
                .collect()
        };
        Ok(DepthInfo {
            last_update_id: d.update_id,
            bids: levels(&d.bids),
            asks: levels(&d.asks),
        })
    }

    /// Reads the connection's egress queue.
    /// Streams the account's events of other connections and sessions that came since the
    /// last turn (this connection's own come from its queue).
    fn drain_others(&mut self) {
        let Some(o) = &self.others else {
            return;
        };
        if o.overflowed() {
            // Events were lost: the client must not go on believing its view is complete.
            warn!(
                conn = self.conn_id,
                "user data stream: the client does not keep up; closing"
            );
            self.others = None;
            self.out.push(AppOutput::Close(
                "user data stream overflowed: the connection did not keep up".to_owned(),
            ));
            return;
        }
        let mut events = Vec::new();
        o.take(&mut events);
        for e in events {
            // A cancel of one of this connection's orders that another session asked for is
            // reported to this connection by its own queue.
            if self.orders.contains_key(&e.order_id.0) {
                continue;
            }
            if let Some(report) = self.others_report(&e) {
                self.out.push(AppOutput::ExecutionReport(report));
            }
        }
    }

    /// The `executionReport` of another connection's or session's order event; `None` for
    /// events the stream does not carry (refusals before an order existed, cancel rejects,
    /// mass cancel summaries, triggers).
    fn others_report(&self, e: &Event) -> Option<ExecutionReport> {
        let state = match e.kind {
            EventKind::New if e.details.pending => OrderState::Pending,
            EventKind::New | EventKind::Replaced | EventKind::Activated if e.cum_qty.0 > 0 => {
                OrderState::PartiallyFilled
            }
            EventKind::New | EventKind::Replaced | EventKind::Activated => OrderState::Working,
            EventKind::PartialFill => OrderState::PartiallyFilled,
            EventKind::Fill => OrderState::Filled,
            EventKind::Canceled => OrderState::Canceled,
            EventKind::Expired => OrderState::Expired,
            EventKind::Rejected(_)
            | EventKind::CancelRejected { .. }
            | EventKind::MassCancelDone { .. }
            | EventKind::Triggered
            | EventKind::Route(_)
            | EventKind::Pending(_) => return None,
        };
        let past = PastOrder {
            working_ns: if e.details.waiting || e.details.pending {
                -1
            } else {
                e.received_ns
            },
            ..PastOrder::of_event(e, state)
        };
        let order = self.local_order_of(&past)?;
        execution_report(e, &order)
    }

    fn drain(&mut self) {
        let Some(conn) = self.conn.clone() else {
            return;
        };
        // One clock read per wake-up, only if an acknowledgement is among the reports.
        let mut now = None;
        while let Some(o) = conn.pop() {
            match o {
                Outbound::Event(e) => {
                    note_event(&e, &mut now);
                    self.on_event(&e)
                }
                Outbound::Status(e) => match self.status_waits.pop_front() {
                    // The fence behind a new order: its initial matching is complete.
                    Some(StatusWait::Fence(cl)) => match self.pending.get(&cl) {
                        Some(Pending::Place { .. }) => self.finish_place(cl),
                        Some(Pending::List(p))
                            if p.rest.is_empty() && p.placed.len() == p.list.orders.len() =>
                        {
                            if let Some(Pending::List(p)) = self.pending.remove(&cl) {
                                self.finish_list(&p, ms(e.ts_ns));
                            }
                        }
                        _ => {}
                    },
                    Some(StatusWait::Query {
                        token,
                        symbol,
                        client_order_id,
                    }) => {
                        let info = self
                            .working_order_info(&e)
                            .filter(|o| {
                                o.symbol == *symbol
                                    && client_order_id
                                        .as_ref()
                                        .map_or(true, |c| *c == o.client_order_id)
                            })
                            .ok_or_else(WsError::no_such_order);
                        self.complete(token, info.map(Into::into));
                    }
                    Some(StatusWait::OpenOrders { token, reply }) => {
                        let result = self.open_orders_info(&reply, e.ts_ns);
                        self.complete(token, result.map(Into::into));
                    }
                    Some(StatusWait::Positions { token, reply }) => {
                        let result = self.positions_info(&reply);
                        self.complete(token, result.map(Into::into));
                    }
                    Some(StatusWait::Depth {
                        token,
                        instrument,
                        reply,
                        answer,
                    }) => {
                        let outcome = match answer {
                            BookAnswer::Depth => {
                                self.depth_info(instrument, &reply).map(Into::into)
                            }
                            BookAnswer::Best => self
                                .depth_info(instrument, &reply)
                                .map(|d| book_ticker(&self.pipeline, instrument, d).into()),
                            BookAnswer::LastPrice => {
                                self.last_price(instrument, &reply).map(Into::into)
                            }
                        };
                        self.complete(token, outcome);
                    }
                    None => {}
                },
            }
        }
        // Orders without a fence (the status request could not be queued): answered once the
        // queue is drained, the best the connection can tell.
        let ready: Vec<ClOrdId> = self
            .pending
            .iter()
            .filter_map(|(cl, p)| match p {
                Pending::Place {
                    accepted: true,
                    fenced: false,
                    ..
                } => Some(*cl),
                _ => None,
            })
            .collect();
        for cl in ready {
            self.finish_place(cl);
        }
        if let Some(why) = conn.kicked() {
            if !self.kicked {
                self.kicked = true;
                warn!(conn = self.conn_id, reason = why, "ws connection ends");
                self.out.push(AppOutput::Close(why.to_owned()));
            }
        }
    }
}

/// The `executionReport` of an event for the connection's order `o` (state after the event).
/// Counts an event the connection is about to answer with: the order-to-ack latency of an
/// acknowledgement or reject of a new order (from the `received_ns` its command carries), and
/// the account's reject rate.
fn note_event(e: &Event, now: &mut Option<i64>) {
    let ack = match e.kind {
        EventKind::New => true,
        EventKind::Rejected(_) => {
            crate::monitoring::order_rejected(e.account, e.ts_ns.div_euclid(1_000_000));
            true
        }
        _ => false,
    };
    if ack && e.received_ns > 0 {
        let t = *now.get_or_insert_with(now_ns);
        METRICS
            .ack_latency(Protocol::Ws)
            .record_ns(t - e.received_ns);
    }
}

/// The server charges no commission.
fn no_commission() -> CommissionRates {
    let zero = "0.00000000".to_owned();
    CommissionRates {
        maker: zero.clone(),
        taker: zero.clone(),
        buyer: zero.clone(),
        seller: zero,
    }
}

/// The history window of an `allOrders` or `allOrderLists` query: from the id `from` up, or
/// (the dialect then ignores the id) a time window.
fn listing_window(q: &HistoryQuery, from: Option<u64>) -> Window {
    let by_time = q.start_time.is_some() || q.end_time.is_some();
    Window {
        order_id: from.filter(|_| !by_time),
        from_trade_id: None,
        start_ns: q.start_time.map(ms_to_ns),
        end_ns: q.end_time.map(ms_to_ns_end),
        limit: q.limit,
    }
}

fn execution_report(e: &Event, o: &LocalOrder) -> Option<ExecutionReport> {
    let (x, trade) = match e.kind {
        // A pending order placed when its working order filled is new (again) to the dialect.
        EventKind::New | EventKind::Activated => (ExecutionType::New, false),
        EventKind::PartialFill | EventKind::Fill => (ExecutionType::Trade, true),
        EventKind::Canceled => (ExecutionType::Canceled, false),
        EventKind::Replaced => (ExecutionType::Replaced, false),
        EventKind::Rejected(_) => (ExecutionType::Rejected, false),
        EventKind::Expired => (ExecutionType::Expired, false),
        // The dialect sends no event when a stop triggers: its trades or rest follow.
        EventKind::CancelRejected { .. }
        | EventKind::MassCancelDone { .. }
        | EventKind::Triggered
        | EventKind::Route(_)
        | EventKind::Pending(_) => return None,
    };
    let now = ms(e.ts_ns);
    let (last_qty, last_px) = if trade {
        (e.last_qty.0, e.last_px.0)
    } else {
        (0, 0)
    };
    Some(ExecutionReport {
        event_time: now,
        symbol: o.symbol.to_string(),
        client_order_id: e.cl_ord_id.as_str().to_owned(),
        side: o.side,
        order_type: o.order_type,
        time_in_force: o.tif,
        quantity: o.qty_text(o.qty),
        price: o.px(o.price),
        stop_price: o.px(o.stop_price),
        iceberg_qty: o.qty_text(o.iceberg_qty),
        trailing_delta: o.trailing_delta,
        orig_client_order_id: match e.kind {
            EventKind::Canceled => o.cl.as_str().to_owned(),
            EventKind::Replaced => e.orig_cl_ord_id.as_str().to_owned(),
            _ => String::new(),
        },
        execution_type: x,
        order_status: o.status,
        reject_reason: match e.kind {
            EventKind::Rejected(r) => r.text().to_owned(),
            _ => "NONE".to_owned(),
        },
        order_id: safe_id(o.order_id),
        last_qty: o.qty_text(last_qty),
        cum_qty: o.qty_text(o.cum_qty),
        last_price: o.px(last_px),
        commission: fmt_scaled(0, o.price_scale),
        commission_asset: None,
        transaction_time: now,
        trade_id: trade.then(|| safe_id(e.trade_id.0)),
        execution_id: safe_id(e.exec_id),
        is_working: o.is_working(),
        // The resting order's fill is the maker's: its event is not the one that arrived.
        is_maker: trade && o.working_time >= 0 && o.working_time < now,
        creation_time: o.time,
        cum_quote_qty: o.quote(),
        last_quote_qty: fmt_scaled(
            i128::from(last_px) * i128::from(last_qty),
            o.price_scale.saturating_add(o.qty_scale),
        ),
        quote_order_qty: o.zero_quote(),
        working_time: (o.working_time >= 0).then_some(o.working_time),
        stp: o.stp,
        strategy: o.strategy,
        order_list_id: o.list_id(),
    })
}

impl WsApplication for WsBridge {
    fn symbols(&self) -> Arc<SymbolTable> {
        self.symbols.get()
    }

    fn order_place(&mut self, ctx: &RequestCtx<'_>, order: &WsOrder) -> Dispatch<OrderResult> {
        let (cmd, template) = match self.new_order(ctx, order) {
            Ok(v) => v,
            Err(e) => return Dispatch::Ready(Err(e)),
        };
        match self.submit_place(ctx.token, cmd, template, order.resp_type, None) {
            Ok(()) => Dispatch::Pending,
            Err((e, _)) => Dispatch::Ready(Err(e)),
        }
    }

    fn order_list_place_oco(
        &mut self,
        ctx: &RequestCtx<'_>,
        list: &OcoRequest,
    ) -> Dispatch<OrderListResult> {
        let legs = [&list.above, &list.below];
        // Above, then below joined to it (the core thread checks the pair and refuses it
        // whole).
        let joins = [None, Some(Join::OcoWith(0))];
        self.place_list(
            ctx,
            Contingency::Oco,
            &list.list_client_order_id,
            &legs,
            &joins,
            &[0, 1],
        )
    }

    fn order_list_place_oto(
        &mut self,
        ctx: &RequestCtx<'_>,
        list: &OtoRequest,
    ) -> Dispatch<OrderListResult> {
        // The pending order(s) first, then the working order triggering them: what it
        // triggers must wait in the core before it can trade.
        let mut legs: Vec<&WsOrder> = list.pending.iter().collect();
        legs.push(&list.working);
        let (joins, shown): (&[Option<Join>], &[usize]) = match list.pending.len() {
            1 => (&[None, Some(Join::Triggers(0))], &[1, 0]),
            _ => (
                &[None, Some(Join::OcoWith(0)), Some(Join::Triggers(0))],
                &[1, 2, 0],
            ),
        };
        self.place_list(
            ctx,
            Contingency::Oto,
            &list.list_client_order_id,
            &legs,
            joins,
            shown,
        )
    }

    fn order_list_status(
        &mut self,
        ctx: &RequestCtx<'_>,
        list: &OrderListRef,
    ) -> Dispatch<OrderListInfo> {
        let now = ms(now_ns());
        if let Some((id, l)) = self.find_list(list) {
            return Dispatch::Ready(Ok(self.list_info(id, l, now)));
        }
        // Another connection's list of the account, by id, from the history.
        let past = list.order_list_id.and_then(|id| {
            let w = Window {
                order_id: Some(id.get()),
                limit: 1,
                ..Window::default()
            };
            self.past_lists(ctx, &w)?
                .into_iter()
                .find(|l| l.order_list_id == id && list.list_client_order_id.is_none())
        });
        Dispatch::Ready(past.ok_or_else(no_such_list))
    }

    fn open_order_lists_status(&mut self, ctx: &RequestCtx<'_>) -> Dispatch<Vec<OrderListInfo>> {
        let now = ms(now_ns());
        let mut lists: Vec<OrderListInfo> = self
            .lists
            .iter()
            .map(|(&id, l)| self.list_info(id, l, now))
            .filter(|l| !l.all_done)
            .collect();
        // The account's other connections' open lists, as the history has them.
        let w = Window {
            limit: HistoryQuery::MAX_LIMIT,
            ..Window::default()
        };
        for l in self.past_lists(ctx, &w).unwrap_or_default() {
            if !l.all_done && !self.lists.contains_key(&l.order_list_id.get()) {
                lists.push(l);
            }
        }
        lists.sort_by_key(|l| l.order_list_id.get());
        Dispatch::Ready(Ok(lists))
    }

    fn order_list_cancel(
        &mut self,
        ctx: &RequestCtx<'_>,
        symbol: &str,
        list: &OrderListRef,
    ) -> Dispatch<OrderListInfo> {
        let now = ms(now_ns());
        let Some((id, l)) = self.find_list(list) else {
            return Dispatch::Ready(Err(no_such_list()));
        };
        if &*l.symbol != symbol {
            return Dispatch::Ready(Err(no_such_list()));
        }
        let info = self.list_info(id, l, now);
        let open: Vec<u64> = l
            .orders
            .iter()
            .filter_map(|id| self.orders.get(id))
            .filter(|o| o.is_open())
            .map(|o| o.order_id)
            .collect();
        let Some(&target) = open.first() else {
            return Dispatch::Ready(Err(no_such_list()));
        };
        let (Some(slot), Some((_, account))) = (self.slot, self.account.as_ref()) else {
            return Dispatch::Ready(Err(WsError::server_busy()));
        };
        let Some((instrument, _)) = self.pipeline.directory().lookup(symbol.as_bytes()) else {
            return Dispatch::Ready(Err(WsError::invalid_symbol()));
        };
        // Cancelling one order cancels the others: all are awaited.
        let cl = generated_cl_ord_id();
        let cmd = Command::Cancel(CancelOrder {
            session: slot,
            account: *account,
            instrument,
            cl_ord_id: cl,
            order_id: Some(OrderId(target)),
            orig_cl_ord_id: ClOrdId::EMPTY,
            received_ns: now_ns(),
        });
        if let Err(e) = self.submit(cmd) {
            return Dispatch::Ready(Err(e));
        }
        self.pending.insert(
            cl,
            Pending::ListCancel {
                token: ctx.token,
                info: Box::new(info),
                waiting: open,
            },
        );
        Dispatch::Pending
    }

    fn order_test(&mut self, ctx: &RequestCtx<'_>, order: &WsOrder) -> Result<(), WsError> {
        crate::ws_auth::check_order_restrictions(
            ctx.principal,
            &order.symbol,
            order.quantity.as_ref(),
        )?;
        let dir = self.pipeline.directory();
        if dir.lookup(order.symbol.as_bytes()).is_none() {
            return Err(WsError::invalid_symbol());
        }
        if self.pipeline.account_id(&ctx.principal.account).is_none() {
            return Err(WsError::order_rejected("unknown account"));
        }
        Ok(())
    }

    fn order_status(&mut self, ctx: &RequestCtx<'_>, order: &OrderRef) -> Dispatch<OrderInfo> {
        if let Some(o) = self.find(order) {
            return Dispatch::Ready(Ok(o.info()));
        }
        // Not this connection's: the account's history knows its recent orders, whichever
        // connection or FIX session entered them; an ended one is answered from it. A working
        // one is asked of the core thread by orderId, which knows every working order of
        // the account.
        let (_, account) = match self.route(ctx.principal) {
            Ok(v) => v,
            Err(e) => return Dispatch::Ready(Err(e)),
        };
        let past = self.history.as_ref().and_then(|h| match order.order_id {
            Some(id) => h.order(account, OrderId(id.get())),
            None => {
                let cl = ClOrdId::new(order.orig_client_order_id.as_deref()?.as_bytes()).ok()?;
                h.order_by_cl(account, &cl)
            }
        });
        let past = past.filter(|p| {
            order
                .orig_client_order_id
                .as_deref()
                .map_or(true, |c| p.cl_ord_id.as_str() == c)
        });
        let id = match &past {
            Some(p) if !p.state.is_working() => {
                let info = self
                    .past_order_info(p)
                    .filter(|o| o.symbol == order.symbol)
                    .ok_or_else(WsError::no_such_order);
                return Dispatch::Ready(info);
            }
            Some(p) => p.order_id.0,
            None => match order.order_id {
                Some(id) => id.get(),
                None => return Dispatch::Ready(Err(WsError::no_such_order())),
            },
        };
        let Some(slot) = self.slot else {
            return Dispatch::Ready(Err(WsError::server_busy()));
        };
        let request = StatusRequest {
            session: slot,
            account,
            order: EngineOrderRef::Id(OrderId(id)),
            cl_ord_id: ClOrdId::EMPTY,
            instrument: InstrumentId(0),
            side: portcullis_types::Side::Buy,
        };
        if self.pipeline.submit(Ingress::Status(request)).is_err() {
            return Dispatch::Ready(Err(WsError::server_busy()));
        }
        self.status_waits.push_back(StatusWait::Query {
            token: ctx.token,
            symbol: order.symbol.as_str().into(),
            client_order_id: order.orig_client_order_id.clone(),
        });
        Dispatch::Pending
    }

    fn order_cancel(
        &mut self,
        ctx: &RequestCtx<'_>,
        cancel: &CancelRequest,
    ) -> Dispatch<CancelResult> {
        match self.place_cancel(ctx, cancel, None) {
            Ok(()) => Dispatch::Pending,
            Err(e) => Dispatch::Ready(Err(e)),
        }
    }

    fn order_amend_keep_priority(
        &mut self,
        ctx: &RequestCtx<'_>,
        request: &AmendRequest,
    ) -> Dispatch<AmendOutcome> {
        match self.place_amend(ctx, request) {
            Ok(()) => Dispatch::Pending,
            Err(e) => Dispatch::Ready(Err(e)),
        }
    }

    fn order_cancel_replace(
        &mut self,
        ctx: &RequestCtx<'_>,
        request: &CancelReplaceRequest,
    ) -> Dispatch<CancelReplaceOutcome> {
        let (cmd, template) = match self.new_order(ctx, &request.order) {
            Ok(v) => v,
            Err(e) => return Dispatch::Ready(Err(e)),
        };
        let then = Box::new((cmd, template, request.order.resp_type, request.mode));
        match self.place_cancel(ctx, &request.cancel, Some(then)) {
            Ok(()) => Dispatch::Pending,
            Err(e) => Dispatch::Ready(Err(e)),
        }
    }

    fn all_orders(&mut self, ctx: &RequestCtx<'_>, q: &HistoryQuery) -> Dispatch<Vec<OrderInfo>> {
        let (history, account, instrument) = match self.history_of(ctx, &q.symbol) {
            Ok(v) => v,
            Err(e) => return Dispatch::Ready(Err(e)),
        };
        let w = listing_window(q, q.order_id);
        let list = history.orders(account, Some(instrument), &w);
        Dispatch::Ready(Ok(list
            .iter()
            .filter_map(|p| self.past_order_info(p))
            .collect()))
    }

    fn all_order_lists(
        &mut self,
        ctx: &RequestCtx<'_>,
        q: &HistoryQuery,
    ) -> Dispatch<Vec<OrderListInfo>> {
        let w = listing_window(q, q.from_id);
        Dispatch::Ready(self.past_lists(ctx, &w).ok_or_else(WsError::unsupported))
    }

    fn my_trades(&mut self, ctx: &RequestCtx<'_>, q: &HistoryQuery) -> Dispatch<Vec<TradeInfo>> {
        let (history, account, instrument) = match self.history_of(ctx, &q.symbol) {
            Ok(v) => v,
            Err(e) => return Dispatch::Ready(Err(e)),
        };
        let w = Window {
            order_id: q.order_id,
            from_trade_id: q.from_id,
            start_ns: q.start_time.map(ms_to_ns),
            end_ns: q.end_time.map(ms_to_ns_end),
            limit: q.limit,
        };
        let list = history.trades(account, Some(instrument), &w);
        Dispatch::Ready(Ok(list
            .iter()
            .filter_map(|t| self.past_trade_info(t))
            .collect()))
    }

    fn open_orders_status(
        &mut self,
        ctx: &RequestCtx<'_>,
        symbol: Option<&str>,
    ) -> Dispatch<Vec<OrderInfo>> {
        // The core thread knows every working order of the account, whichever connection or
        // FIX session entered it.
        let (slot, account, instrument) = match self.listing_scope(ctx, symbol) {
            Ok(v) => v,
            Err(e) => return Dispatch::Ready(Err(e)),
        };
        let reply = Arc::new(OpenOrdersReply::default());
        let request = OpenOrdersRequest {
            session: slot,
            account,
            instrument,
            reply: reply.clone(),
        };
        if self.pipeline.submit(Ingress::OpenOrders(request)).is_err() {
            return Dispatch::Ready(Err(WsError::server_busy()));
        }
        self.status_waits.push_back(StatusWait::OpenOrders {
            token: ctx.token,
            reply,
        });
        Dispatch::Pending
    }

    fn open_orders_cancel_all(
        &mut self,
        ctx: &RequestCtx<'_>,
        symbol: &str,
    ) -> Dispatch<Vec<CancelResult>> {
        let (_, account) = match self.route(ctx.principal) {
            Ok(v) => v,
            Err(e) => return Dispatch::Ready(Err(e)),
        };
        let Some(slot) = self.slot else {
            return Dispatch::Ready(Err(WsError::server_busy()));
        };
        let instrument = match self.pipeline.directory().lookup(symbol.as_bytes()) {
            Some((id, _)) => id,
            None => return Dispatch::Ready(Err(WsError::invalid_symbol())),
        };
        let cl = generated_cl_ord_id();
        let cmd = MassCancel {
            session: slot,
            account,
            instrument: Some(instrument),
            cl_ord_id: cl,
        };
        if let Err(e) = self.submit(Command::MassCancel(cmd)) {
            return Dispatch::Ready(Err(e));
        }
        self.pending.insert(
            cl,
            Pending::CancelAll {
                token: ctx.token,
                instrument,
                results: Vec::new(),
            },
        );
        Dispatch::Pending
    }

    fn account_positions(
        &mut self,
        ctx: &RequestCtx<'_>,
        symbol: Option<&str>,
    ) -> Dispatch<Vec<PositionInfo>> {
        // The core thread keeps every account's positions, whichever connection or FIX
        // session traded.
        let (slot, account, instrument) = match self.listing_scope(ctx, symbol) {
            Ok(v) => v,
            Err(e) => return Dispatch::Ready(Err(e)),
        };
        let reply = Arc::new(PositionsReply::default());
        let request = PositionsRequest {
            session: slot,
            account,
            instrument,
            reply: reply.clone(),
        };
        if self.pipeline.submit(Ingress::Positions(request)).is_err() {
            return Dispatch::Ready(Err(WsError::server_busy()));
        }
        self.status_waits.push_back(StatusWait::Positions {
            token: ctx.token,
            reply,
        });
        Dispatch::Pending
    }

    fn depth(&mut self, ctx: &RequestCtx<'_>, symbol: &str, limit: usize) -> Dispatch<DepthInfo> {
        self.list_levels(ctx, symbol, limit, BookAnswer::Depth)
    }

    fn ticker_book(&mut self, ctx: &RequestCtx<'_>, symbol: &str) -> Dispatch<BookTicker> {
        self.list_levels(ctx, symbol, 1, BookAnswer::Best)
    }

    fn ticker_price(&mut self, ctx: &RequestCtx<'_>, symbol: &str) -> Dispatch<PriceTicker> {
        self.list_levels(ctx, symbol, 0, BookAnswer::LastPrice)
    }

    fn account_status(
        &mut self,
        ctx: &RequestCtx<'_>,
        _omit_zero_balances: bool,
    ) -> Dispatch<AccountStatus> {
        let Some(id) = self.pipeline.account_id(&ctx.principal.account) else {
            return Dispatch::Ready(Err(WsError::order_rejected("unknown account")));
        };
        Dispatch::Ready(Ok(AccountStatus {
            maker_commission: 0,
            taker_commission: 0,
            // The key's scope, and no kill switch on for the account or everything.
            can_trade: ctx.principal.can_trade && !self.pipeline.trading_halted(id),
            commission_rates: no_commission(),
            require_self_trade_prevention: false,
            update_time: ms(ctx.now.nanos()),
            balances: Vec::new(),
            uid: safe_id(u64::from(id.0)),
        }))
    }

    fn commission_rates(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _symbol: &str,
    ) -> Result<CommissionRates, WsError> {
        Ok(no_commission())
    }

    fn user_data_stream(&mut self, principal: Option<&Principal>) -> Result<(), WsError> {
        self.others = None;
        if let Some(p) = principal {
            // The stream carries the events of the connection's account: the connection is
            // bound to it now (a connection trades and streams for one account).
            self.route(p)?;
            // The account's other orders, from now on.
            if let (Some(streams), Some((_, account)), Some(slot)) =
                (&self.streams, &self.account, self.slot)
            {
                self.others = Some(streams.subscribe(*account, slot));
            }
        }
        self.user_stream = principal.is_some();
        Ok(())
    }

    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.out.is_empty() {
            return Poll::Ready(());
        }
        if self.others.as_ref().is_some_and(|o| o.poll_ready(cx)) {
            return Poll::Ready(());
        }
        match &self.conn {
            Some(c) => c.poll_ready(cx),
            None => Poll::Pending,
        }
    }

    fn take_output(&mut self, out: &mut Vec<AppOutput>) {
        self.drain();
        self.drain_others();
        out.append(&mut self.out);
    }

    fn on_close(&mut self) {
        let pipeline = self.pipeline.clone();
        match self.conn.take() {
            Some(conn) => {
                // The close must reach the core thread (cancel-on-disconnect, the route, the
                // slot): while the queue is full, retry shortly on the runtime.
                if let Err(item) = pipeline.submit(Ingress::Close(conn)) {
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        rt.spawn(async move {
                            let mut item = item;
                            loop {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                match pipeline.submit(item) {
                                    Ok(()) => return,
                                    Err(back) => item = back,
                                }
                                if pipeline.is_stopping() {
                                    return;
                                }
                            }
                        });
                    } else {
                        warn!(conn = self.conn_id, "ws route close lost: no runtime");
                    }
                }
            }
            None => {
                if let Some(slot) = self.slot.take() {
                    pipeline.release_unopened_slot(slot);
                }
            }
        }
    }
}
