//! The dialect's enumerations and the domain values exchanged with the application.
//!
//! Inputs ([`WsOrder`], [`OrderRef`], [`CancelRequest`], [`CancelReplaceRequest`]) are fully
//! validated by the session before the application sees them. Outputs ([`OrderResult`],
//! [`OrderInfo`], [`CancelResult`], [`AccountStatus`], [`ExecutionReport`]) are JSON-ready:
//! prices and quantities are decimal text the application formats from its fixed-point values,
//! ids are [`SafeId`]s so every JSON client reads them exactly.

use super::decimal::Decimal;
use super::error::WsError;

macro_rules! dialect_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            /// Every value, in the dialect's order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The dialect's spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }

            /// Parses the dialect's spelling (case-sensitive, as the dialect is).
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$v),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

dialect_enum!(
    /// Order side.
    Side {
        /// Buy.
        Buy = "BUY",
        /// Sell.
        Sell = "SELL",
    }
);

dialect_enum!(
    /// The order types Portcullis accepts.
    OrderType {
        /// Limit order.
        Limit = "LIMIT",
        /// Market order.
        Market = "MARKET",
        /// Post-only limit order: rejected if it would trade as a taker.
        LimitMaker = "LIMIT_MAKER",
        /// Stop order: a market order once a trade reaches `stopPrice` (a buy at or above it,
        /// a sell at or below).
        StopLoss = "STOP_LOSS",
        /// Stop-limit order: a limit order at `price` once a trade reaches `stopPrice`.
        StopLossLimit = "STOP_LOSS_LIMIT",
        /// Take-profit order: a market order once a trade reaches `stopPrice` from the other
        /// side (a buy at or below it, a sell at or above).
        TakeProfit = "TAKE_PROFIT",
        /// Take-profit limit order: a limit order at `price` once a trade reaches `stopPrice`
        /// from the other side.
        TakeProfitLimit = "TAKE_PROFIT_LIMIT",
    }
);

impl OrderType {
    /// Whether it waits for a trade at its `stopPrice` (the stop-loss and take-profit types).
    pub fn is_triggered(self) -> bool {
        matches!(
            self,
            OrderType::StopLoss
                | OrderType::StopLossLimit
                | OrderType::TakeProfit
                | OrderType::TakeProfitLimit
        )
    }
}

dialect_enum!(
    /// Time in force.
    TimeInForce {
        /// Good 'til canceled.
        Gtc = "GTC",
        /// Immediate or cancel.
        Ioc = "IOC",
        /// Fill or kill.
        Fok = "FOK",
        /// Good 'til date: rests until `goodTillDate` (the futures dialect's value).
        Gtd = "GTD",
    }
);

dialect_enum!(
    /// The shape of the answer to `order.place`.
    RespType {
        /// Ids and time only.
        Ack = "ACK",
        /// The order's state after the initial matching.
        Result = "RESULT",
        /// RESULT plus the fills.
        Full = "FULL",
    }
);

dialect_enum!(
    /// Self-trade prevention mode.
    StpMode {
        /// No prevention.
        None = "NONE",
        /// The taker expires.
        ExpireTaker = "EXPIRE_TAKER",
        /// The maker expires.
        ExpireMaker = "EXPIRE_MAKER",
        /// Both expire.
        ExpireBoth = "EXPIRE_BOTH",
        /// Both are decremented.
        Decrement = "DECREMENT",
    }
);

dialect_enum!(
    /// Order status.
    OrderStatus {
        /// The pending order of a one-triggers-the-other list, waiting for its working order
        /// to fill.
        PendingNew = "PENDING_NEW",
        /// Accepted and working.
        New = "NEW",
        /// Partly filled and working.
        PartiallyFilled = "PARTIALLY_FILLED",
        /// Completely filled.
        Filled = "FILLED",
        /// Canceled by the user.
        Canceled = "CANCELED",
        /// Being canceled.
        PendingCancel = "PENDING_CANCEL",
        /// Rejected.
        Rejected = "REJECTED",
        /// Expired by its rules (IOC, FOK, MARKET) or by the venue.
        Expired = "EXPIRED",
        /// Expired by self-trade prevention.
        ExpiredInMatch = "EXPIRED_IN_MATCH",
    }
);

dialect_enum!(
    /// What happened to an order (`x` of an `executionReport`).
    ExecutionType {
        /// Accepted.
        New = "NEW",
        /// Canceled by the user.
        Canceled = "CANCELED",
        /// Replaced.
        Replaced = "REPLACED",
        /// Rejected.
        Rejected = "REJECTED",
        /// Traded.
        Trade = "TRADE",
        /// Expired.
        Expired = "EXPIRED",
        /// Expired by self-trade prevention.
        TradePrevention = "TRADE_PREVENTION",
    }
);

dialect_enum!(
    /// `cancelRestrictions`: cancel only in a given state.
    CancelRestrictions {
        /// Only if the order is NEW.
        OnlyNew = "ONLY_NEW",
        /// Only if the order is PARTIALLY_FILLED.
        OnlyPartiallyFilled = "ONLY_PARTIALLY_FILLED",
    }
);

dialect_enum!(
    /// `cancelReplaceMode`.
    CancelReplaceMode {
        /// No new order if the cancel fails.
        StopOnFailure = "STOP_ON_FAILURE",
        /// The new order is attempted even if the cancel fails.
        AllowFailure = "ALLOW_FAILURE",
    }
);

dialect_enum!(
    /// `orderRateLimitExceededMode` of `order.cancelReplace`.
    RateLimitExceededMode {
        /// Nothing is done when the order rate limit is exceeded.
        DoNothing = "DO_NOTHING",
        /// The cancel is still attempted.
        CancelOnly = "CANCEL_ONLY",
    }
);

dialect_enum!(
    /// A symbol's trading status.
    SymbolStatus {
        /// Open for trading.
        Trading = "TRADING",
        /// Halted.
        Halt = "HALT",
        /// Not trading (e.g. expired).
        Break = "BREAK",
    }
);

/// An id that every JSON client reads exactly: at most 2^53 − 1 (the largest integer a
/// double represents exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SafeId(u64);

impl SafeId {
    /// The largest id: 2^53 − 1.
    pub const MAX: u64 = (1 << 53) - 1;

    /// `None` if `v` is above [`SafeId::MAX`].
    pub const fn new(v: u64) -> Option<Self> {
        if v <= Self::MAX {
            Some(SafeId(v))
        } else {
            None
        }
    }

    /// The id.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for SafeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs

/// A new order, validated: the symbol exists and trades, the parameters the type requires are
/// present and the others absent, prices and quantities are exact decimals that pass the
/// symbol's PRICE_FILTER, LOT_SIZE and (for priced orders) NOTIONAL filters. The checks that
/// need state (PERCENT_PRICE, MAX_NUM_ORDERS, risk) are the application's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsOrder {
    /// The instrument.
    pub symbol: String,
    /// Buy or sell.
    pub side: Side,
    /// LIMIT, MARKET, LIMIT_MAKER, STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT or
    /// TAKE_PROFIT_LIMIT.
    pub order_type: OrderType,
    /// Present for LIMIT and the two `*_LIMIT` trigger orders only (required there); a LIMIT_MAKER
    /// rests until canceled.
    pub time_in_force: Option<TimeInForce>,
    /// Limit price (LIMIT and LIMIT_MAKER).
    pub price: Option<Decimal>,
    /// Quantity in the base asset (always, except a MARKET order by `quote_order_qty`).
    pub quantity: Option<Decimal>,
    /// MARKET only: the amount of quote asset to spend or receive instead of `quantity`.
    pub quote_order_qty: Option<Decimal>,
    /// The trigger price of STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT and TAKE_PROFIT_LIMIT
    /// orders (required there).
    pub stop_price: Option<Decimal>,
    /// An iceberg's shown quantity (LIMIT, LIMIT_MAKER and the `*_LIMIT` trigger orders, GTC
    /// only); one at least `quantity` shows all of it.
    pub iceberg_qty: Option<Decimal>,
    /// The client's id for the order (`^[.A-Z:/a-z0-9_-]{1,36}$`); `None`: the application
    /// assigns one, unique among the account's open orders.
    pub new_client_order_id: Option<String>,
    /// The answer's shape; defaulted as the dialect does (FULL for LIMIT and MARKET, ACK for
    /// the other types).
    pub resp_type: RespType,
    /// Self-trade prevention; `None`: the symbol's default.
    pub stp: Option<StpMode>,
    /// When a GTD order expires, Unix ms (required with `timeInForce` GTD, refused without).
    pub good_till_date: Option<i64>,
    /// A trailing stop's distance in bips (STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT and
    /// TAKE_PROFIT_LIMIT only; their `stop_price` is then optional, the activation price).
    pub trailing_delta: Option<u64>,
    /// The client's `strategyId` and `strategyType`, kept with the order.
    pub strategy: OrderStrategy,
}

/// `orderList.place.oco`: two orders of one symbol, side and quantity, one cancelling the
/// other (a `LIMIT_MAKER` or take-profit, and a stop-loss; the stop-loss below the market for
/// a sell, above it for a buy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcoRequest {
    /// The client's id of the list (`listClientOrderId`); `None`: the application assigns one.
    pub list_client_order_id: Option<String>,
    /// The order above the market (`above*` parameters).
    pub above: WsOrder,
    /// The order below the market (`below*` parameters).
    pub below: WsOrder,
    /// The answer's shape for the orders' reports (default ACK).
    pub resp_type: RespType,
}

/// `orderList.place.oto` and `orderList.place.otoco`: a working order (`LIMIT` or
/// `LIMIT_MAKER`) and the pending order, or one-cancels-the-other pair of pending orders,
/// placed once the working order fills completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtoRequest {
    /// The client's id of the list (`listClientOrderId`); `None`: the application assigns one.
    pub list_client_order_id: Option<String>,
    /// The working order (`working*` parameters).
    pub working: WsOrder,
    /// The pending order (`pending*`), or the pending pair (`pendingAbove*` then
    /// `pendingBelow*`, with the shared `pendingSide` and `pendingQuantity`).
    pub pending: Vec<WsOrder>,
    /// The answer's shape for the orders' reports (default ACK).
    pub resp_type: RespType,
}

dialect_enum!(
    /// The kind of an order list (`contingencyType`).
    Contingency {
        /// One cancels the other.
        Oco = "OCO",
        /// One triggers the other (also a working order triggering a pair).
        Oto = "OTO",
    }
);

/// The answer to `orderList.place.oco`, `.oto` and `.otoco`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderListResult {
    /// The list's id.
    pub order_list_id: SafeId,
    /// The kind of list.
    pub contingency: Contingency,
    /// The client's id of the list.
    pub list_client_order_id: String,
    /// When the list was placed, Unix ms.
    pub transaction_time: i64,
    /// The symbol.
    pub symbol: String,
    /// Every order, as `order.place` would answer each.
    pub reports: Vec<OrderResult>,
}

/// One order list, by its id or the client's id of it (at least one is present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderListRef {
    /// The list's id (`orderListId`).
    pub order_list_id: Option<SafeId>,
    /// The client's id of the list (`listClientOrderId`, or `origClientOrderId` in
    /// `orderList.status`).
    pub list_client_order_id: Option<String>,
}

/// An order list's state (`orderList.status`, `openOrderLists.status`), or the answer to
/// `orderList.cancel` with its orders' cancel reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderListInfo {
    /// The list's id.
    pub order_list_id: SafeId,
    /// The kind of list.
    pub contingency: Contingency,
    /// The client's id of the list.
    pub list_client_order_id: String,
    /// When the list was placed (or cancelled), Unix ms.
    pub transaction_time: i64,
    /// The symbol.
    pub symbol: String,
    /// Every order of the list is done (`ALL_DONE`), else `EXEC_STARTED` / `EXECUTING`.
    pub all_done: bool,
    /// The orders' ids and client ids.
    pub orders: Vec<(SafeId, String)>,
    /// `orderList.cancel`: the cancelled orders (`orderReports`); empty otherwise.
    pub cancel_reports: Vec<CancelResult>,
}

/// A `listStatus` event of the user data stream: an order list started, or all its orders
/// are done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListStatus {
    /// `E`: event time, Unix ms.
    pub event_time: i64,
    /// `s`: symbol.
    pub symbol: String,
    /// `g`: the list's id.
    pub order_list_id: SafeId,
    /// `c`: the kind of list.
    pub contingency: Contingency,
    /// `l` and `L`: true once every order of the list is done (`ALL_DONE`), else
    /// `EXEC_STARTED` / `EXECUTING`.
    pub all_done: bool,
    /// `C`: the client's id of the list.
    pub list_client_order_id: String,
    /// `T`: transaction time, Unix ms.
    pub transaction_time: i64,
    /// `O`: the orders' ids and client ids.
    pub orders: Vec<(SafeId, String)>,
}

/// The client's tags of the strategy an order belongs to: the dialect's `strategyId` and
/// `strategyType`, repeated in the order's answers and `executionReport`s (`j`, `J`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OrderStrategy {
    /// Any number the client gives (`strategyId`).
    pub id: Option<u64>,
    /// The strategy's type (`strategyType`, at least 1000000).
    pub kind: Option<u32>,
}

/// One order, by exchange id and/or client id (at least one is present). When both are given
/// the order is looked up by `order_id` and its client id must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRef {
    /// The instrument.
    pub symbol: String,
    /// The exchange's order id.
    pub order_id: Option<SafeId>,
    /// The client's id of the order.
    pub orig_client_order_id: Option<String>,
}

/// A cancel of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// The order.
    pub target: OrderRef,
    /// A new client id for the canceled order, freeing its old one.
    pub new_client_order_id: Option<String>,
    /// Cancel only in this state.
    pub restrictions: Option<CancelRestrictions>,
}

/// `order.cancelReplace`: cancel one order and place a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelReplaceRequest {
    /// Whether the new order is attempted when the cancel fails.
    pub mode: CancelReplaceMode,
    /// The cancel (`cancelOrderId`, `cancelOrigClientOrderId`, `cancelNewClientOrderId`,
    /// `cancelRestrictions`).
    pub cancel: CancelRequest,
    /// The new order (same symbol).
    pub order: WsOrder,
    /// What to do when the account's order rate limit is exceeded.
    pub rate_limit_exceeded_mode: RateLimitExceededMode,
}

/// `order.amend.keepPriority`: reduce an order's quantity in place, keeping its price and
/// its priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmendRequest {
    /// The order.
    pub target: OrderRef,
    /// The order's client id after the amend (the application generates one if absent).
    pub new_client_order_id: Option<String>,
    /// The new total quantity (filled part included): positive and, for the amend to be
    /// accepted, less than the order's quantity. The session has checked it against the
    /// symbol's `LOT_SIZE` filter.
    pub new_qty: Decimal,
}

// ---------------------------------------------------------------------------------------------
// Outputs

/// A trade that filled (part of) a new order (`fills` of a FULL answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    /// Trade price.
    pub price: String,
    /// Traded quantity.
    pub qty: String,
    /// Commission charged.
    pub commission: String,
    /// Asset of the commission.
    pub commission_asset: String,
    /// Trade id.
    pub trade_id: SafeId,
}

/// The answer to `order.place` (and the new-order half of `order.cancelReplace`). The session
/// writes the members the request's [`RespType`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderResult {
    /// The instrument.
    pub symbol: String,
    /// The exchange's order id.
    pub order_id: SafeId,
    /// The order's client id (sent or assigned).
    pub client_order_id: String,
    /// When the order was accepted, Unix ms.
    pub transact_time: i64,
    /// Limit price (`0` with the symbol's decimals for MARKET).
    pub price: String,
    /// Ordered quantity.
    pub orig_qty: String,
    /// Filled quantity.
    pub executed_qty: String,
    /// Quote quantity ordered (MARKET by quote quantity), else zero.
    pub orig_quote_order_qty: String,
    /// Quote quantity filled.
    pub cummulative_quote_qty: String,
    /// Status after the initial matching.
    pub status: OrderStatus,
    /// Time in force (GTC for LIMIT_MAKER and MARKET, as the dialect reports them).
    pub time_in_force: TimeInForce,
    /// Order type.
    pub order_type: OrderType,
    /// Side.
    pub side: Side,
    /// The trigger price of a stop-loss or take-profit order (shown only for those, as the
    /// dialect's conditional field).
    pub stop_price: Option<String>,
    /// The id of the order list it belongs to, -1 if none.
    pub order_list_id: i64,
    /// A trailing stop's distance in bips (shown only for those).
    pub trailing_delta: Option<u16>,
    /// When a GTD order expires, Unix ms (shown only for those).
    pub good_till_date: Option<i64>,
    /// The client's `strategyId` and `strategyType` (shown only when given).
    pub strategy: OrderStrategy,
    /// When the order started working on the book, Unix ms; -1 if it never did.
    pub working_time: i64,
    /// Self-trade prevention mode in force.
    pub stp: StpMode,
    /// Trades of the initial matching (FULL answers).
    pub fills: Vec<Fill>,
}

/// An order's state (`order.status`, `openOrders.status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderInfo {
    /// The instrument.
    pub symbol: String,
    /// The exchange's order id.
    pub order_id: SafeId,
    /// The client's id.
    pub client_order_id: String,
    /// Limit price.
    pub price: String,
    /// Ordered quantity.
    pub orig_qty: String,
    /// Filled quantity.
    pub executed_qty: String,
    /// Quote quantity filled.
    pub cummulative_quote_qty: String,
    /// Status.
    pub status: OrderStatus,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Order type.
    pub order_type: OrderType,
    /// Side.
    pub side: Side,
    /// Trigger price of a stop order, else zero.
    pub stop_price: String,
    /// An iceberg's shown quantity, else zero.
    pub iceberg_qty: String,
    /// The id of the order list it belongs to, -1 if none.
    pub order_list_id: i64,
    /// A trailing stop's distance in bips (shown only for those).
    pub trailing_delta: Option<u16>,
    /// When a GTD order expires, Unix ms (shown only for those).
    pub good_till_date: Option<i64>,
    /// The client's `strategyId` and `strategyType` (shown only when given).
    pub strategy: OrderStrategy,
    /// When the order was placed, Unix ms.
    pub time: i64,
    /// Last update, Unix ms.
    pub update_time: i64,
    /// On the book now.
    pub is_working: bool,
    /// When it started working, Unix ms; -1 if never.
    pub working_time: i64,
    /// Quote quantity ordered, else zero.
    pub orig_quote_order_qty: String,
    /// Self-trade prevention mode.
    pub stp: StpMode,
}

/// The answer to `order.amend.keepPriority`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmendOutcome {
    /// When the amend was done, Unix ms.
    pub transact_time: i64,
    /// The id of the amend's execution.
    pub execution_id: SafeId,
    /// The order's client id before the amend.
    pub orig_client_order_id: String,
    /// The order after the amend (`orig_qty` is the new quantity).
    pub order: OrderInfo,
}

/// Which orders or trades of one symbol `allOrders` and `myTrades` ask for. Read and checked
/// by the session: `limit` is within 1..=[`HistoryQuery::MAX_LIMIT`], a time window is at most
/// 24 hours and starts before it ends, `from_id` comes without a time window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The instrument (empty for `allOrderLists`, over every instrument).
    pub symbol: String,
    /// `allOrders`: orders from this order id up; `myTrades`: only this order's trades.
    pub order_id: Option<u64>,
    /// `myTrades`: trades from this trade id up; `allOrderLists`: lists from this list id up.
    pub from_id: Option<u64>,
    /// From this time on, Unix ms (inclusive).
    pub start_time: Option<i64>,
    /// Up to this time, Unix ms (inclusive).
    pub end_time: Option<i64>,
    /// At most this many, oldest first. Without `order_id` (`allOrders`), `from_id` or
    /// `start_time`, the most recent ones.
    pub limit: usize,
}

impl HistoryQuery {
    /// The default `limit`.
    pub const DEFAULT_LIMIT: usize = 500;
    /// The largest `limit`.
    pub const MAX_LIMIT: usize = 1000;
    /// The longest time window, in ms.
    pub const MAX_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
}

/// One trade of the account (`myTrades`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeInfo {
    /// The instrument.
    pub symbol: String,
    /// The trade id.
    pub id: SafeId,
    /// The account's order in the trade.
    pub order_id: SafeId,
    /// Price.
    pub price: String,
    /// Quantity.
    pub qty: String,
    /// Price × quantity.
    pub quote_qty: String,
    /// Commission charged.
    pub commission: String,
    /// The asset of the commission.
    pub commission_asset: String,
    /// When it traded, Unix ms.
    pub time: i64,
    /// The account bought.
    pub is_buyer: bool,
    /// The account's order was resting on the book.
    pub is_maker: bool,
}

/// A canceled order (`order.cancel`, `openOrders.cancelAll`, the cancel half of
/// `order.cancelReplace`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelResult {
    /// The instrument.
    pub symbol: String,
    /// The client id the order had.
    pub orig_client_order_id: String,
    /// The exchange's order id.
    pub order_id: SafeId,
    /// The order's client id now (the cancel's `newClientOrderId`, or a generated one).
    pub client_order_id: String,
    /// When it was canceled, Unix ms.
    pub transact_time: i64,
    /// Limit price.
    pub price: String,
    /// Ordered quantity.
    pub orig_qty: String,
    /// Filled quantity.
    pub executed_qty: String,
    /// Quote quantity ordered, else zero.
    pub orig_quote_order_qty: String,
    /// Quote quantity filled.
    pub cummulative_quote_qty: String,
    /// Status (CANCELED).
    pub status: OrderStatus,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Order type.
    pub order_type: OrderType,
    /// Side.
    pub side: Side,
    /// Self-trade prevention mode.
    pub stp: StpMode,
}

/// How the new-order half of a cancel-replace went.
// One per cancel-replace answer, moved straight into it: boxing the result would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewOrderOutcome {
    /// Placed.
    Success(OrderResult),
    /// Attempted and rejected.
    Failure(WsError),
    /// Not attempted (`STOP_ON_FAILURE` after a failed cancel).
    NotAttempted,
}

/// How a cancel-replace went; the session answers 200, 409 (-2021) or 400 (-2022) from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelReplaceOutcome {
    /// The cancel.
    pub cancel: Result<CancelResult, WsError>,
    /// The new order.
    pub new_order: NewOrderOutcome,
}

/// One position of the account (`account.position`, the futures dialect's
/// `v2/account.position`): its net quantity in one symbol, one-way mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionInfo {
    /// The symbol.
    pub symbol: String,
    /// `positionAmt`: net quantity, negative when short (decimal text).
    pub position_amt: String,
    /// `entryPrice`: the average entry price (`breakEvenPrice` too: there are no fees).
    pub entry_price: String,
    /// `markPrice`: the price the server values the position at (its reference price), if
    /// it has one.
    pub mark_price: Option<String>,
    /// `notional`: `positionAmt` × `markPrice` × the contract multiplier, in the quote
    /// currency (signed like the position), when there is a mark price.
    pub notional: Option<String>,
}

/// A book's best levels (`depth`), as decimal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepthInfo {
    /// `lastUpdateId`: the book's version (a later answer with the same id shows the same
    /// book).
    pub last_update_id: u64,
    /// `bids`: (price, quantity), best first.
    pub bids: Vec<(String, String)>,
    /// `asks`: (price, quantity), best first.
    pub asks: Vec<(String, String)>,
}

/// A symbol's best bid and offer (`ticker.book`), as decimal text (`0` at the instrument's
/// scale for an empty side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookTicker {
    /// The symbol.
    pub symbol: String,
    /// `bidPrice`.
    pub bid_price: String,
    /// `bidQty`.
    pub bid_qty: String,
    /// `askPrice`.
    pub ask_price: String,
    /// `askQty`.
    pub ask_qty: String,
}

/// A symbol's last price (`ticker.price`), as decimal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTicker {
    /// The symbol.
    pub symbol: String,
    /// `price`: the last trade's price (`0` at the instrument's scale before the first).
    pub price: String,
}

/// Commission rates, as decimal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommissionRates {
    /// Maker rate.
    pub maker: String,
    /// Taker rate.
    pub taker: String,
    /// Buyer rate.
    pub buyer: String,
    /// Seller rate.
    pub seller: String,
}

/// One asset's balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// Asset.
    pub asset: String,
    /// Available.
    pub free: String,
    /// Locked by open orders.
    pub locked: String,
}

/// The answer to `account.status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountStatus {
    /// Maker commission, basis points.
    pub maker_commission: u32,
    /// Taker commission, basis points.
    pub taker_commission: u32,
    /// Trading allowed.
    pub can_trade: bool,
    /// Commission rates.
    pub commission_rates: CommissionRates,
    /// Self-trade prevention is mandatory for the account.
    pub require_self_trade_prevention: bool,
    /// Last change, Unix ms.
    pub update_time: i64,
    /// Balances.
    pub balances: Vec<Balance>,
    /// The account's number.
    pub uid: SafeId,
}

/// An order event for the user data stream (`executionReport`); the session writes it with the
/// dialect's one-letter keys inside `{"event": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionReport {
    /// `E`: event time, Unix ms.
    pub event_time: i64,
    /// `s`: symbol.
    pub symbol: String,
    /// `c`: client order id.
    pub client_order_id: String,
    /// `S`: side.
    pub side: Side,
    /// `o`: order type.
    pub order_type: OrderType,
    /// `f`: time in force.
    pub time_in_force: TimeInForce,
    /// `q`: order quantity.
    pub quantity: String,
    /// `p`: order price.
    pub price: String,
    /// `P`: stop price (zero unless a stop order).
    pub stop_price: String,
    /// `F`: an iceberg's shown quantity (zero unless an iceberg).
    pub iceberg_qty: String,
    /// `d`: a trailing stop's distance in bips (shown only for those).
    pub trailing_delta: Option<u16>,
    /// `g`: the id of the order list it belongs to, -1 if none.
    pub order_list_id: i64,
    /// `j` and `J`: the client's `strategyId` and `strategyType` (shown only when given).
    pub strategy: OrderStrategy,
    /// `C`: the client id of the order being canceled (cancels), else empty.
    pub orig_client_order_id: String,
    /// `x`: execution type.
    pub execution_type: ExecutionType,
    /// `X`: order status.
    pub order_status: OrderStatus,
    /// `r`: reject reason, `NONE` if none.
    pub reject_reason: String,
    /// `i`: order id.
    pub order_id: SafeId,
    /// `l`: last executed quantity.
    pub last_qty: String,
    /// `z`: cumulative filled quantity.
    pub cum_qty: String,
    /// `L`: last executed price.
    pub last_price: String,
    /// `n`: commission.
    pub commission: String,
    /// `N`: commission asset, `null` if none.
    pub commission_asset: Option<String>,
    /// `T`: transaction time, Unix ms.
    pub transaction_time: i64,
    /// `t`: trade id, -1 if none.
    pub trade_id: Option<SafeId>,
    /// `I`: execution id.
    pub execution_id: SafeId,
    /// `w`: on the book.
    pub is_working: bool,
    /// `m`: this trade was the maker side.
    pub is_maker: bool,
    /// `O`: order creation time, Unix ms.
    pub creation_time: i64,
    /// `Z`: cumulative quote quantity.
    pub cum_quote_qty: String,
    /// `Y`: last quote quantity.
    pub last_quote_qty: String,
    /// `Q`: quote order quantity.
    pub quote_order_qty: String,
    /// `W`: working time, Unix ms, if the order is on the book.
    pub working_time: Option<i64>,
    /// `V`: self-trade prevention mode.
    pub stp: StpMode,
}
