//! The WebSocket API session as a sans-IO state machine, in the style of the FIX session.
//!
//! Feed it text frames ([`WsSession::handle_text`]), the clock ([`WsSession::handle_timeout`]
//! when [`WsSession::poll_timeout`] is due) and the application's late output
//! ([`WsSession::handle_app_output`]); take from it the text frames to send
//! ([`WsSession::poll_transmit`]) and events ([`WsSession::poll_event`]). It never touches a
//! socket or the system clock.
//!
//! # Requests, as the dialect has them
//!
//! One JSON object per text frame: `{"id", "method", "params"}`. The `id` (a number, a string
//! or `null`) is echoed byte for byte; `method` may carry the `v3/` prefix; `params` is an
//! object, or absent. Answers are `{"id","status":200,"result":…,"rateLimits":[…]}` or
//! `{"id","status":4xx,"error":{"code","msg"},"rateLimits":[…]}`; `rateLimits` is left out when
//! the request (or the connection URL) says `returnRateLimits=false`. Input that is not a
//! request gets an error with `"id":null`; no request, however malformed, ends the connection
//! (only a rate-limit ban does).
//!
//! Processing order of a request: envelope, request weight (429 or 418), parameter names
//! (-1104), parameter values, authentication (`apiKey`/`signature` or the connection's
//! `session.logon`, `timestamp` and `recvWindow`, then the signature), then the symbol and its
//! filters, then the account's order rate limits, then the application.
//!
//! # Decisions
//!
//! - Malformed JSON, and JSON that is not an object: `-1135 Invalid JSON Request`. A missing or
//!   malformed `id` or `method`: -1102 naming it. An unknown method: `-1020 This operation is
//!   not supported.` A member other than `id`, `method`, `params`: -1103. A parameter the
//!   method does not take: -1104 with the dialect's counts. All with status 400.
//! - Revocation: when the key a connection logged on with stops being valid, the connection
//!   gets, unprompted, the dialect's
//!   `{"id":null,"status":401,"error":{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}}`
//!   (plus `eventStreamTerminated` if it had a user data stream), and acts for nobody from then
//!   on. The server's revocation signal and a periodic check make this immediate rather than
//!   "after the next request" as in the dialect.
//! - Authentication: a malformed `apiKey` is 401 -2014; an unknown, revoked or expired key, an
//!   address or permission not allowed 401 -2015; a signature that matches nothing 400 -1022
//!   (hex is case-insensitive, as the dialect says; see [`crate::ws::signing`] for the
//!   payload forms accepted); a key or address locked out after repeated failures 429 -1003
//!   with `retryAfter`, so clients back off. `recvWindow` over 60000 is -1102 with the
//!   dialect's "Cannot be greater than" message.
//! - Orders: `timeInForce` where the type takes none is -1114, `price` or `quoteOrderQty`
//!   where it takes none -1106. Against the symbol: precision beyond its decimals -1111;
//!   PRICE_FILTER, LOT_SIZE, ICEBERG_PARTS, TRAILING_DELTA and (for priced orders) NOTIONAL
//!   -1013 `Filter failure: NAME`; `trailingDelta` on a type that is no stop-loss or
//!   take-profit -1106, and such a type without `stopPrice` or `trailingDelta` -1102;
//!   PERCENT_PRICE, MAX_NUM_ORDERS and MARKET notionals need market state and are the
//!   application's.
//! - `userDataStream.subscribe` needs a logged-on connection (401 -1002 otherwise); the stream
//!   ends, with `eventStreamTerminated`, on unsubscribe, logout, a logon for another account,
//!   and revocation.
//! - A request the application answers late that gets no answer within `pending_timeout`:
//!   503 -1007 (execution status unknown), as the dialect's backend timeout.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_fix::UtcTimestamp;
use serde_json::value::RawValue;

use super::app::{
    AppOutput, AuthError, Dispatch, Outcome, Principal, RequestCtx, RequestToken, Security,
    SignedRequest, WsApplication, WsAuth,
};
use super::error::{codes, WsError};
use super::json::{parse_object, write_array, Obj, ObjectError, Scalar};
use super::params::{is_api_key, is_symbol, Params, SYMBOL_RANGE};
use super::ratelimit::{RateLimiter, Weigh};
use super::render;
use super::signing::{SignaturePayload, Timing};
use super::symbols::{SymbolInfo, SymbolTable};
use super::types::{
    AmendRequest, CancelReplaceMode, CancelReplaceRequest, CancelRequest, CancelRestrictions,
    ExecutionReport, HistoryQuery, ListStatus, OcoRequest, OrderListRef, OrderRef, OrderStrategy,
    OrderType, OtoRequest, RateLimitExceededMode, RespType, SafeId, Side, StpMode, SymbolStatus,
    TimeInForce, WsOrder,
};

/// Settings of one WebSocket session.
#[derive(Debug, Clone)]
pub struct WsSessionConfig {
    /// How long the application may take to answer a request it answered
    /// [`Dispatch::Pending`]; then the client gets -1007.
    pub pending_timeout: Duration,
    /// Requests waiting for the application at once; more get 429 -1003 "Too many requests
    /// queued."
    pub max_pending: usize,
    /// How often the key a connection logged on with is re-checked (besides the server's
    /// revocation signal).
    pub revocation_check_interval: Duration,
    /// Whether answers carry `rateLimits` unless a request says otherwise (the connection
    /// URL's `returnRateLimits`).
    pub return_rate_limits: bool,
}

impl Default for WsSessionConfig {
    fn default() -> Self {
        Self {
            pending_timeout: Duration::from_secs(10),
            max_pending: 256,
            revocation_check_interval: Duration::from_secs(1),
            return_rate_limits: true,
        }
    }
}

/// Why the session asks for the connection to be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsDisconnect {
    /// The peer's address is banned for rate-limit abuse (until Unix ms).
    Banned {
        /// End of the ban, Unix ms.
        until_ms: i64,
    },
    /// The application asked ([`AppOutput::Close`]).
    Application(String),
}

/// What the session reports to the code driving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// `session.logon` succeeded.
    LoggedOn {
        /// The key.
        api_key: String,
    },
    /// The connection's authentication ended by `session.logout` or another logon.
    LoggedOut {
        /// The key.
        api_key: String,
    },
    /// The key the connection logged on with was revoked; the connection lost its rights.
    Revoked {
        /// The key.
        api_key: String,
    },
    /// The user data stream started or stopped.
    UserDataStream {
        /// Whether it runs now.
        active: bool,
    },
    /// A request was refused (for counting bad input).
    Rejected {
        /// The method, if the request named a known one.
        method: Option<&'static str>,
        /// The answer's status.
        status: u16,
        /// The dialect's code.
        code: i32,
    },
    /// The application answered a request that had already timed out or does not exist.
    LateCompletion {
        /// The request.
        token: RequestToken,
    },
    /// Close the connection after sending what is pending.
    Disconnect(WsDisconnect),
}

// ---------------------------------------------------------------------------------------------
// Methods

/// A method of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `ping`.
    Ping,
    /// `time`.
    Time,
    /// `exchangeInfo`.
    ExchangeInfo,
    /// `session.logon`.
    SessionLogon,
    /// `session.status`.
    SessionStatus,
    /// `session.logout`.
    SessionLogout,
    /// `order.place`.
    OrderPlace,
    /// `order.test`.
    OrderTest,
    /// `order.status`.
    OrderStatus,
    /// `order.cancel`.
    OrderCancel,
    /// `order.cancelReplace`.
    OrderCancelReplace,
    /// `order.amend.keepPriority`.
    OrderAmendKeepPriority,
    /// `orderList.place.oco`.
    OrderListPlaceOco,
    /// `orderList.place.oto`.
    OrderListPlaceOto,
    /// `orderList.place.otoco`.
    OrderListPlaceOtoco,
    /// `orderList.status`.
    OrderListStatus,
    /// `orderList.cancel`.
    OrderListCancel,
    /// `openOrderLists.status`.
    OpenOrderListsStatus,
    /// `allOrderLists`.
    AllOrderLists,
    /// `openOrders.status`.
    OpenOrdersStatus,
    /// `openOrders.cancelAll`.
    OpenOrdersCancelAll,
    /// `account.status`.
    AccountStatus,
    /// `account.position` (the futures dialect's `v2/account.position`).
    AccountPosition,
    /// `depth`: the best levels of a symbol's book (an authenticated request here).
    Depth,
    /// `ticker.book`: a symbol's best bid and offer (an authenticated request here).
    TickerBook,
    /// `ticker.price`: a symbol's last price (an authenticated request here).
    TickerPrice,
    /// `account.commission`.
    AccountCommission,
    /// `account.rateLimits.orders`.
    AccountRateLimitsOrders,
    /// `allOrders`.
    AllOrders,
    /// `myTrades`.
    MyTrades,
    /// `userDataStream.subscribe`.
    UserDataStreamSubscribe,
    /// `userDataStream.subscribe.signature`.
    UserDataStreamSubscribeSignature,
    /// `session.subscriptions`.
    SessionSubscriptions,
    /// `userDataStream.unsubscribe`.
    UserDataStreamUnsubscribe,
}

const RRL: &str = "returnRateLimits";
const AUTH: [&str; 5] = ["apiKey", "signature", "timestamp", "recvWindow", RRL];
const ORDER: [&str; 16] = [
    "symbol",
    "side",
    "type",
    "timeInForce",
    "price",
    "quantity",
    "quoteOrderQty",
    "stopPrice",
    "trailingDelta",
    "icebergQty",
    "goodTillDate",
    "newClientOrderId",
    "newOrderRespType",
    "selfTradePreventionMode",
    "strategyId",
    "strategyType",
];

/// `orderList.place.oco`'s parameters: the shared ones, then each order's.
const OCO: [&str; 24] = [
    "symbol",
    "listClientOrderId",
    "side",
    "quantity",
    "newOrderRespType",
    "selfTradePreventionMode",
    "aboveType",
    "aboveClientOrderId",
    "aboveIcebergQty",
    "abovePrice",
    "aboveStopPrice",
    "aboveTrailingDelta",
    "aboveTimeInForce",
    "aboveStrategyId",
    "aboveStrategyType",
    "belowType",
    "belowClientOrderId",
    "belowIcebergQty",
    "belowPrice",
    "belowStopPrice",
    "belowTrailingDelta",
    "belowTimeInForce",
    "belowStrategyId",
    "belowStrategyType",
];

/// An order list request of either kind.
enum ListRequest {
    /// `orderList.place.oco`.
    Oco(Box<OcoRequest>),
    /// `orderList.place.oto` or `.otoco`.
    Oto(Box<OtoRequest>),
}

/// `orderList.place.oto` and `.otoco`'s shared parameters and their working order's.
const OTO_WORKING: [&str; 13] = [
    "symbol",
    "listClientOrderId",
    "newOrderRespType",
    "selfTradePreventionMode",
    "workingType",
    "workingSide",
    "workingClientOrderId",
    "workingPrice",
    "workingQuantity",
    "workingIcebergQty",
    "workingTimeInForce",
    "workingStrategyId",
    "workingStrategyType",
];

/// `orderList.place.oto`'s pending order's parameters.
const OTO_PENDING: [&str; 11] = [
    "pendingType",
    "pendingSide",
    "pendingClientOrderId",
    "pendingPrice",
    "pendingStopPrice",
    "pendingTrailingDelta",
    "pendingQuantity",
    "pendingIcebergQty",
    "pendingTimeInForce",
    "pendingStrategyId",
    "pendingStrategyType",
];

/// `orderList.place.otoco`'s pending pair's parameters.
const OTOCO_PENDING: [&str; 20] = [
    "pendingSide",
    "pendingQuantity",
    "pendingAboveType",
    "pendingAboveClientOrderId",
    "pendingAbovePrice",
    "pendingAboveStopPrice",
    "pendingAboveTrailingDelta",
    "pendingAboveIcebergQty",
    "pendingAboveTimeInForce",
    "pendingAboveStrategyId",
    "pendingAboveStrategyType",
    "pendingBelowType",
    "pendingBelowClientOrderId",
    "pendingBelowPrice",
    "pendingBelowStopPrice",
    "pendingBelowTrailingDelta",
    "pendingBelowIcebergQty",
    "pendingBelowTimeInForce",
    "pendingBelowStrategyId",
    "pendingBelowStrategyType",
];

/// A one-triggers-the-other list's names for one order's parameters (`prefix` + the
/// capitalised name), as `order.place` names them.
fn oto_leg_names(prefix: &'static str) -> Vec<(&'static str, &'static str)> {
    const PLAIN: [(&str, &str); 11] = [
        ("Type", "type"),
        ("Side", "side"),
        ("ClientOrderId", "newClientOrderId"),
        ("Price", "price"),
        ("StopPrice", "stopPrice"),
        ("TrailingDelta", "trailingDelta"),
        ("Quantity", "quantity"),
        ("IcebergQty", "icebergQty"),
        ("TimeInForce", "timeInForce"),
        ("StrategyId", "strategyId"),
        ("StrategyType", "strategyType"),
    ];
    PLAIN
        .iter()
        .map(|&(suffix, plain)| {
            // The pair's orders share their side and quantity.
            let name: &'static str = match (prefix, suffix) {
                ("pendingAbove" | "pendingBelow", "Side") => "pendingSide",
                ("pendingAbove" | "pendingBelow", "Quantity") => "pendingQuantity",
                _ => leg_name(prefix, suffix),
            };
            (name, plain)
        })
        .collect()
}

/// `prefix` + `suffix` as one of the parameter names of the OTO and OTOCO lists.
fn leg_name(prefix: &str, suffix: &str) -> &'static str {
    OTO_WORKING
        .iter()
        .chain(&OTO_PENDING)
        .chain(&OTOCO_PENDING)
        .copied()
        .find(|n| {
            n.len() == prefix.len() + suffix.len() && n.starts_with(prefix) && n.ends_with(suffix)
        })
        .unwrap_or("")
}

/// An order list's `listClientOrderId` and `newOrderRespType` (default ACK).
fn read_list_head(params: &Params<'_>) -> Result<(Option<String>, RespType), WsError> {
    let list_client_order_id =
        params.opt_client_id("listClientOrderId", || WsError::empty("listClientOrderId"))?;
    let resp_type = params
        .opt_enum("newOrderRespType", RespType::parse, || {
            WsError::invalid_value("newOrderRespType")
        })?
        .unwrap_or(RespType::Ack);
    Ok((list_client_order_id, resp_type))
}

/// Reads `orderList.place.oto` (`otoco` false) or `orderList.place.otoco`: each order as
/// `order.place` reads one (errors name the list's parameters), then the list's rules: a
/// `LIMIT` or `LIMIT_MAKER` working order; for `otoco`, a pending pair as
/// `orderList.place.oco` takes one.
fn read_oto(params: &Params<'_>, otoco: bool) -> Result<OtoRequest, WsError> {
    const SHARED: [&str; 3] = ["symbol", "newOrderRespType", "selfTradePreventionMode"];
    let (list_client_order_id, resp_type) = read_list_head(params)?;
    let read = |prefix: &'static str| -> Result<WsOrder, WsError> {
        let names = oto_leg_names(prefix);
        let type_name = names[0].0;
        let order_type = params.req_enum(type_name, OrderType::parse, || {
            WsError::invalid_value(type_name)
        })?;
        // The working order is a limit; a pair's orders wait (as `orderList.place.oco`'s).
        let refused = match prefix {
            "working" => !matches!(order_type, OrderType::Limit | OrderType::LimitMaker),
            "pending" => false,
            _ => matches!(order_type, OrderType::Limit | OrderType::Market),
        };
        if refused {
            return Err(WsError::invalid_value(type_name));
        }
        let leg = params.leg(&SHARED, &names);
        let mut order = read_order(&leg).map_err(|e| e.renamed(&names))?;
        order.resp_type = resp_type;
        Ok(order)
    };
    let working = read("working")?;
    let pending = if otoco {
        let above = read("pendingAbove")?;
        let below = read("pendingBelow")?;
        check_oco_pair(&above, &below, "pendingAboveType", "pendingBelowType")?;
        vec![above, below]
    } else {
        vec![read("pending")?]
    };
    Ok(OtoRequest {
        list_client_order_id,
        working,
        pending,
        resp_type,
    })
}

/// The rules of a one-cancels-the-other pair beyond each order's: no `LIMIT` or `MARKET`
/// order, one stop-loss (below the market on a sell, above on a buy) and one `LIMIT_MAKER` or
/// take-profit. The error names the type parameter at fault.
fn check_oco_pair(
    above: &WsOrder,
    below: &WsOrder,
    above_name: &str,
    below_name: &str,
) -> Result<(), WsError> {
    for (o, name) in [(above, above_name), (below, below_name)] {
        if matches!(o.order_type, OrderType::Limit | OrderType::Market) {
            return Err(WsError::invalid_value(name));
        }
    }
    let stop_loss =
        |o: &WsOrder| matches!(o.order_type, OrderType::StopLoss | OrderType::StopLossLimit);
    // The stop-loss is the order the market reaches against the position: below it for a
    // sell, above it for a buy; the other order is the one in its favour.
    let (loss, profit, loss_name, profit_name) = match above.side {
        Side::Sell => (below, above, below_name, above_name),
        Side::Buy => (above, below, above_name, below_name),
    };
    if !stop_loss(loss) {
        return Err(WsError::invalid_value(loss_name));
    }
    if stop_loss(profit) {
        return Err(WsError::invalid_value(profit_name));
    }
    Ok(())
}

/// An order list's own parameter names for one order's (`above` or `below` + the name).
fn leg_names(above: bool) -> [(&'static str, &'static str); 9] {
    if above {
        [
            ("aboveType", "type"),
            ("aboveClientOrderId", "newClientOrderId"),
            ("aboveIcebergQty", "icebergQty"),
            ("abovePrice", "price"),
            ("aboveStopPrice", "stopPrice"),
            ("aboveTrailingDelta", "trailingDelta"),
            ("aboveTimeInForce", "timeInForce"),
            ("aboveStrategyId", "strategyId"),
            ("aboveStrategyType", "strategyType"),
        ]
    } else {
        [
            ("belowType", "type"),
            ("belowClientOrderId", "newClientOrderId"),
            ("belowIcebergQty", "icebergQty"),
            ("belowPrice", "price"),
            ("belowStopPrice", "stopPrice"),
            ("belowTrailingDelta", "trailingDelta"),
            ("belowTimeInForce", "timeInForce"),
            ("belowStrategyId", "strategyId"),
            ("belowStrategyType", "strategyType"),
        ]
    }
}

/// An order list by `orderListId` or the client's id (named `cl_name`): one is required.
fn read_list_ref(params: &Params<'_>, cl_name: &str) -> Result<OrderListRef, WsError> {
    let order_list_id = params
        .opt_u64("orderListId", (1 << 53) - 1)?
        .and_then(SafeId::new);
    let list_client_order_id = params.opt_client_id(cl_name, || WsError::empty(cl_name))?;
    if order_list_id.is_none() && list_client_order_id.is_none() {
        return Err(WsError::either_mandatory("orderListId", cl_name));
    }
    Ok(OrderListRef {
        order_list_id,
        list_client_order_id,
    })
}

/// The session's answer to the application's dispatch of request `token`: rendered now in
/// the shape of `method` and `resp`, or once the application completes it.
fn answer_of<T: Into<Outcome>>(
    method: Method,
    resp: RespType,
    token: RequestToken,
    d: Dispatch<T>,
) -> Answer {
    match d {
        Dispatch::Ready(r) => Answer::Done(
            r.map(Into::into)
                .and_then(|o| render_outcome(method, resp, o)),
        ),
        Dispatch::Pending => Answer::Pending(token, resp),
    }
}

/// Reads `orderList.place.oco`: each order as `order.place` reads one (errors name the list's
/// parameters), then the list's rules: the types an order list takes, one stop-loss (below the
/// market on a sell, above on a buy) and one `LIMIT_MAKER` or take-profit.
fn read_oco(params: &Params<'_>) -> Result<OcoRequest, WsError> {
    const SHARED: [&str; 5] = [
        "symbol",
        "side",
        "quantity",
        "newOrderRespType",
        "selfTradePreventionMode",
    ];
    let (list_client_order_id, resp_type) = read_list_head(params)?;
    let mut legs = Vec::with_capacity(2);
    for above in [true, false] {
        let names = leg_names(above);
        let type_name = names[0].0;
        let order_type = params.req_enum(type_name, OrderType::parse, || {
            WsError::invalid_value(type_name)
        })?;
        if matches!(order_type, OrderType::Limit | OrderType::Market) {
            return Err(WsError::invalid_value(type_name));
        }
        let leg = params.leg(&SHARED, &names);
        let mut order = read_order(&leg).map_err(|e| e.renamed(&names))?;
        order.resp_type = resp_type;
        legs.push(order);
    }
    let below = legs.pop().expect("two legs");
    let above = legs.pop().expect("two legs");
    check_oco_pair(&above, &below, "aboveType", "belowType")?;
    Ok(OcoRequest {
        list_client_order_id,
        above,
        below,
        resp_type,
    })
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 34] = [
        Method::Ping,
        Method::Time,
        Method::ExchangeInfo,
        Method::SessionLogon,
        Method::SessionStatus,
        Method::SessionLogout,
        Method::OrderPlace,
        Method::OrderTest,
        Method::OrderStatus,
        Method::OrderCancel,
        Method::OrderCancelReplace,
        Method::OrderAmendKeepPriority,
        Method::OrderListPlaceOco,
        Method::OrderListPlaceOto,
        Method::OrderListPlaceOtoco,
        Method::OrderListStatus,
        Method::OrderListCancel,
        Method::OpenOrderListsStatus,
        Method::AllOrderLists,
        Method::OpenOrdersStatus,
        Method::OpenOrdersCancelAll,
        Method::AccountStatus,
        Method::AccountPosition,
        Method::Depth,
        Method::TickerBook,
        Method::TickerPrice,
        Method::AccountCommission,
        Method::AccountRateLimitsOrders,
        Method::AllOrders,
        Method::MyTrades,
        Method::UserDataStreamSubscribe,
        Method::UserDataStreamSubscribeSignature,
        Method::SessionSubscriptions,
        Method::UserDataStreamUnsubscribe,
    ];

    /// The method's name, without `v3/`.
    pub const fn name(self) -> &'static str {
        match self {
            Method::Ping => "ping",
            Method::Time => "time",
            Method::ExchangeInfo => "exchangeInfo",
            Method::SessionLogon => "session.logon",
            Method::SessionStatus => "session.status",
            Method::SessionLogout => "session.logout",
            Method::OrderPlace => "order.place",
            Method::OrderTest => "order.test",
            Method::OrderStatus => "order.status",
            Method::OrderCancel => "order.cancel",
            Method::OrderCancelReplace => "order.cancelReplace",
            Method::OrderAmendKeepPriority => "order.amend.keepPriority",
            Method::OrderListPlaceOco => "orderList.place.oco",
            Method::OrderListPlaceOto => "orderList.place.oto",
            Method::OrderListPlaceOtoco => "orderList.place.otoco",
            Method::OrderListStatus => "orderList.status",
            Method::OrderListCancel => "orderList.cancel",
            Method::OpenOrderListsStatus => "openOrderLists.status",
            Method::AllOrderLists => "allOrderLists",
            Method::OpenOrdersStatus => "openOrders.status",
            Method::OpenOrdersCancelAll => "openOrders.cancelAll",
            Method::AccountStatus => "account.status",
            Method::AccountPosition => "account.position",
            Method::Depth => "depth",
            Method::TickerBook => "ticker.book",
            Method::TickerPrice => "ticker.price",
            Method::AccountCommission => "account.commission",
            Method::AccountRateLimitsOrders => "account.rateLimits.orders",
            Method::AllOrders => "allOrders",
            Method::MyTrades => "myTrades",
            Method::UserDataStreamSubscribe => "userDataStream.subscribe",
            Method::UserDataStreamSubscribeSignature => "userDataStream.subscribe.signature",
            Method::SessionSubscriptions => "session.subscriptions",
            Method::UserDataStreamUnsubscribe => "userDataStream.unsubscribe",
        }
    }

    /// The method named `name`, with or without the `v3/` prefix (`account.position` also as
    /// the futures dialect's `v2/account.position`).
    pub fn parse(name: &str) -> Option<Method> {
        if name == "v2/account.position" {
            return Some(Method::AccountPosition);
        }
        let name = name.strip_prefix("v3/").unwrap_or(name);
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The dialect's security type.
    pub const fn security(self) -> Security {
        match self {
            Method::Ping
            | Method::Time
            | Method::ExchangeInfo
            | Method::SessionStatus
            | Method::SessionLogout => Security::None,
            Method::SessionLogon => Security::Logon,
            Method::OrderPlace
            | Method::OrderTest
            | Method::OrderCancel
            | Method::OrderCancelReplace
            | Method::OrderAmendKeepPriority
            | Method::OrderListPlaceOco
            | Method::OrderListPlaceOto
            | Method::OrderListPlaceOtoco
            | Method::OrderListCancel
            | Method::OpenOrdersCancelAll => Security::Trade,
            Method::OrderListStatus | Method::OpenOrderListsStatus | Method::AllOrderLists => {
                Security::UserData
            }
            Method::OrderStatus
            | Method::OpenOrdersStatus
            | Method::AccountStatus
            | Method::AccountPosition
            | Method::AccountRateLimitsOrders
            | Method::AccountCommission
            | Method::AllOrders
            | Method::MyTrades => Security::UserData,
            // Public in the dialect; here the answer comes through the connection's order
            // route, which an authenticated connection has.
            Method::Depth | Method::TickerBook | Method::TickerPrice => Security::UserData,
            Method::UserDataStreamSubscribe
            | Method::UserDataStreamUnsubscribe
            | Method::SessionSubscriptions => Security::UserStream,
            // Signed; the events it streams are the account's data.
            Method::UserDataStreamSubscribeSignature => Security::UserData,
        }
    }

    /// The dialect's request weight.
    fn weight(self, params: &Params<'_>) -> u32 {
        match self {
            Method::Ping | Method::Time => 1,
            Method::ExchangeInfo
            | Method::AccountStatus
            | Method::AllOrders
            | Method::MyTrades
            | Method::AllOrderLists
            | Method::AccountCommission => 20,
            Method::SessionLogon
            | Method::SessionStatus
            | Method::SessionLogout
            | Method::UserDataStreamSubscribe
            | Method::UserDataStreamSubscribeSignature
            | Method::UserDataStreamUnsubscribe
            | Method::SessionSubscriptions => 2,
            Method::OrderPlace
            | Method::OrderTest
            | Method::OrderCancel
            | Method::OrderCancelReplace
            | Method::OrderListPlaceOco
            | Method::OrderListPlaceOto
            | Method::OrderListPlaceOtoco
            | Method::OrderListCancel
            | Method::OpenOrdersCancelAll => 1,
            Method::OrderListStatus => 4,
            Method::OpenOrderListsStatus => 6,
            Method::OrderStatus | Method::OrderAmendKeepPriority => 4,
            Method::OpenOrdersStatus if params.has("symbol") => 6,
            Method::OpenOrdersStatus => 80,
            Method::AccountRateLimitsOrders => 40,
            Method::AccountPosition => 5,
            // One symbol, as the dialect weighs it.
            Method::TickerBook | Method::TickerPrice => 2,
            // As the dialect weighs it by `limit`.
            Method::Depth => match params.opt_u64("limit", u64::MAX).ok().flatten() {
                Some(n) if n > 1000 => 250,
                Some(n) if n > 500 => 50,
                Some(n) if n > 100 => 25,
                _ => 5,
            },
        }
    }

    /// True if the application may answer the method later.
    const fn may_pend(self) -> bool {
        matches!(
            self,
            Method::OrderPlace
                | Method::OrderStatus
                | Method::OrderCancel
                | Method::OrderCancelReplace
                | Method::OrderAmendKeepPriority
                | Method::OrderListPlaceOco
                | Method::OrderListPlaceOto
                | Method::OrderListPlaceOtoco
                | Method::OrderListStatus
                | Method::OrderListCancel
                | Method::OpenOrderListsStatus
                | Method::AllOrderLists
                | Method::OpenOrdersStatus
                | Method::OpenOrdersCancelAll
                | Method::AccountStatus
                | Method::AccountPosition
                | Method::Depth
                | Method::TickerBook
                | Method::TickerPrice
                | Method::AllOrders
                | Method::MyTrades
        )
    }

    /// The parameters the method reads.
    fn accepts(self, name: &str) -> bool {
        let own: &[&str] = match self {
            Method::Ping
            | Method::Time
            | Method::SessionStatus
            | Method::SessionLogout
            | Method::UserDataStreamSubscribe
            | Method::SessionSubscriptions => return name == RRL,
            Method::UserDataStreamUnsubscribe => return matches!(name, "subscriptionId" | RRL),
            Method::UserDataStreamSubscribeSignature => &[],
            Method::ExchangeInfo => {
                return matches!(name, "symbol" | "symbols" | "symbolStatus" | RRL)
            }
            Method::SessionLogon | Method::AccountRateLimitsOrders => &[],
            Method::OrderPlace => &ORDER,
            Method::OrderTest => {
                if name == "computeCommissionRates" {
                    return true;
                }
                &ORDER
            }
            Method::OrderStatus => &["symbol", "orderId", "origClientOrderId"],
            Method::OrderCancel => &[
                "symbol",
                "orderId",
                "origClientOrderId",
                "newClientOrderId",
                "cancelRestrictions",
            ],
            Method::OrderListPlaceOco => &OCO,
            Method::OrderListPlaceOto => {
                return [&OTO_WORKING[..], &OTO_PENDING, &AUTH]
                    .iter()
                    .any(|l| l.contains(&name))
            }
            Method::OrderListPlaceOtoco => {
                return [&OTO_WORKING[..], &OTOCO_PENDING, &AUTH]
                    .iter()
                    .any(|l| l.contains(&name))
            }
            Method::OrderListStatus => &["origClientOrderId", "orderListId"],
            Method::OrderListCancel => &[
                "symbol",
                "orderListId",
                "listClientOrderId",
                "newClientOrderId",
            ],
            Method::OpenOrderListsStatus => &[],
            Method::AllOrderLists => &["fromId", "startTime", "endTime", "limit"],
            Method::OrderCancelReplace => {
                if matches!(
                    name,
                    "cancelReplaceMode"
                        | "cancelOrderId"
                        | "cancelOrigClientOrderId"
                        | "cancelNewClientOrderId"
                        | "cancelRestrictions"
                        | "orderRateLimitExceededMode"
                ) {
                    return true;
                }
                &ORDER
            }
            Method::OrderAmendKeepPriority => &[
                "symbol",
                "orderId",
                "origClientOrderId",
                "newClientOrderId",
                "newQty",
            ],
            Method::OpenOrdersStatus | Method::OpenOrdersCancelAll => &["symbol"],
            Method::AccountStatus => &["omitZeroBalances"],
            Method::AccountPosition => &["symbol"],
            Method::Depth => &["symbol", "limit"],
            Method::TickerBook | Method::TickerPrice => &["symbol"],
            Method::AccountCommission => &["symbol"],
            Method::AllOrders => &["symbol", "orderId", "startTime", "endTime", "limit"],
            Method::MyTrades => &[
                "symbol",
                "orderId",
                "startTime",
                "endTime",
                "fromId",
                "limit",
            ],
        };
        own.contains(&name) || AUTH.contains(&name)
    }
}

/// `depth`'s `limit` when absent, and its largest, as the dialect has them.
pub const DEPTH_DEFAULT_LIMIT: usize = 100;
/// See [`DEPTH_DEFAULT_LIMIT`].
pub const DEPTH_MAX_LIMIT: usize = 5000;

// ---------------------------------------------------------------------------------------------
// The session

/// Who the connection acts for after `session.logon`.
#[derive(Debug, Clone)]
struct Logon {
    principal: Arc<Principal>,
    since_ms: i64,
}

/// A request waiting for the application.
#[derive(Debug)]
struct Pending {
    id: Box<str>,
    method: Method,
    rate_limits: bool,
    resp_type: RespType,
    orders_account: Option<String>,
}

/// How to answer one request.
struct Reply<'a> {
    id: &'a str,
    method: Option<Method>,
    rate_limits: bool,
    /// Show the `ORDERS` windows of this account.
    orders_account: Option<String>,
}

/// What a method handler produced.
enum Answer {
    /// `result`, as JSON text.
    Done(Result<String, WsError>),
    /// The application answers later.
    Pending(RequestToken, RespType),
}

/// The connection's user data stream subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserStream {
    /// `subscriptionId`, in the answer and in every event.
    id: u32,
    /// Made by `userDataStream.subscribe.signature` (it outlives a `session.logout`).
    by_signature: bool,
    /// The account whose events it carries.
    account: String,
}

/// One WebSocket API connection's protocol state.
pub struct WsSession {
    config: WsSessionConfig,
    peer: IpAddr,
    connected_at_ms: i64,
    auth: Arc<dyn WsAuth>,
    limiter: Arc<RateLimiter>,
    logon: Option<Logon>,
    /// The user data stream subscription, if one runs (one per connection: a connection
    /// trades for one account).
    stream: Option<UserStream>,
    /// The next subscription's id (numbered from 0 over the connection's life).
    next_subscription: u32,
    next_token: u64,
    pending: HashMap<u64, Pending>,
    /// Deadlines of pending requests, in the order they were made (so in deadline order).
    deadlines: VecDeque<(i64, u64)>,
    next_revocation_check: Option<i64>,
    outbox: VecDeque<String>,
    outbox_bytes: usize,
    events: VecDeque<WsEvent>,
    closed: bool,
}

impl std::fmt::Debug for WsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsSession")
            .field("peer", &self.peer)
            .field("logon", &self.logon.as_ref().map(|l| &l.principal.api_key))
            .field("stream", &self.stream)
            .field("pending", &self.pending.len())
            .field("outbox_bytes", &self.outbox_bytes)
            .finish_non_exhaustive()
    }
}

fn ms(t: UtcTimestamp) -> i64 {
    t.nanos().div_euclid(1_000_000)
}

fn us(t: UtcTimestamp) -> i64 {
    t.nanos().div_euclid(1_000)
}

const REVOKED_FRAME: &str = r#"{"id":null,"status":401,"error":{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}}"#;

impl WsSession {
    /// A session for a connection from `peer` that opened at `now`, authenticating with
    /// `auth` and sharing its listener's `limiter`.
    pub fn new(
        config: WsSessionConfig,
        peer: IpAddr,
        now: UtcTimestamp,
        auth: Arc<dyn WsAuth>,
        limiter: Arc<RateLimiter>,
    ) -> Self {
        Self {
            config,
            peer,
            connected_at_ms: ms(now),
            auth,
            limiter,
            logon: None,
            stream: None,
            next_subscription: 0,
            next_token: 1,
            pending: HashMap::new(),
            deadlines: VecDeque::new(),
            next_revocation_check: None,
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            events: VecDeque::new(),
            closed: false,
        }
    }

    /// Logs the connection on as `principal`, authenticated outside the protocol (an OAuth
    /// bearer token at the upgrade): as after `session.logon`, requests need no signature and
    /// the principal is re-checked ([`WsAuth::revoked`]) before each one.
    pub fn logon_principal(&mut self, principal: Principal, now: UtcTimestamp) {
        self.events.push_back(WsEvent::LoggedOn {
            api_key: principal.api_key.clone(),
        });
        self.logon = Some(Logon {
            principal: Arc::new(principal),
            since_ms: ms(now),
        });
        self.next_revocation_check = Some(self.now_check_due(now));
    }

    /// The API key the connection is logged on with, if any.
    pub fn logged_on_key(&self) -> Option<&str> {
        self.logon.as_ref().map(|l| l.principal.api_key.as_str())
    }

    /// True while the user data stream runs.
    pub fn user_data_stream_active(&self) -> bool {
        self.stream.is_some()
    }

    /// Requests waiting for the application.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// The next text frame to send.
    pub fn poll_transmit(&mut self) -> Option<String> {
        let frame = self.outbox.pop_front()?;
        self.outbox_bytes -= frame.len();
        Some(frame)
    }

    /// Bytes of frames waiting to be sent (a client that does not read is disconnected by
    /// the transport when this grows too large).
    pub fn outbound_bytes(&self) -> usize {
        self.outbox_bytes
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<WsEvent> {
        self.events.pop_front()
    }

    /// When [`WsSession::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<UtcTimestamp> {
        let pending = self.deadlines.front().map(|&(t, _)| t);
        let check = self.logon.as_ref().and(self.next_revocation_check);
        [pending, check]
            .into_iter()
            .flatten()
            .min()
            .map(UtcTimestamp::from_nanos)
    }

    fn push(&mut self, frame: String) {
        self.outbox_bytes += frame.len();
        self.outbox.push_back(frame);
    }

    fn now_check_due(&self, now: UtcTimestamp) -> i64 {
        now.nanos()
            .saturating_add(self.config.revocation_check_interval.as_nanos() as i64)
    }

    // -----------------------------------------------------------------------------------------
    // Input

    /// Handles one text frame.
    pub fn handle_text(&mut self, now: UtcTimestamp, text: &str, app: &mut dyn WsApplication) {
        if self.closed {
            return;
        }
        let now_ms = ms(now);
        let envelope = Envelope::parse(text);
        let id = envelope.id.unwrap_or("null");
        let (method, weight) = match &envelope.request {
            Ok((m, p)) => (Some(*m), m.weight(p)),
            Err(_) => (None, 1),
        };
        let rate_limits = envelope
            .request
            .as_ref()
            .ok()
            .and_then(|(_, p)| p.opt_bool(RRL).ok().flatten())
            .unwrap_or(self.config.return_rate_limits);
        let mut reply = Reply {
            id,
            method,
            rate_limits,
            orders_account: None,
        };
        if !self.admit(now_ms, weight, &reply) {
            return;
        }
        let (method, params) = match envelope.request {
            Ok(r) => r,
            Err(e) => {
                self.respond(now_ms, &reply, Err(e));
                return;
            }
        };
        if method.may_pend() && self.pending.len() >= self.config.max_pending {
            let e = WsError::new(429, codes::TOO_MANY_REQUESTS, "Too many requests queued.");
            self.respond(now_ms, &reply, Err(e));
            return;
        }
        // A key that stopped being valid loses its rights before anything else is done.
        self.check_revocation(now, app);
        let answer = self.dispatch(now, method, &params, &mut reply, app);
        match answer {
            Answer::Done(result) => self.respond(now_ms, &reply, result),
            Answer::Pending(token, resp_type) => {
                let deadline = now
                    .nanos()
                    .saturating_add(self.config.pending_timeout.as_nanos() as i64);
                self.pending.insert(
                    token.0,
                    Pending {
                        id: reply.id.into(),
                        method,
                        rate_limits: reply.rate_limits,
                        resp_type,
                        orders_account: reply.orders_account.take(),
                    },
                );
                self.deadlines.push_back((deadline, token.0));
            }
        }
    }

    /// Charges a frame's request weight: false (and the frame answered) if the address is over
    /// its limit (429) or banned (418, and the connection is to be closed).
    fn admit(&mut self, now_ms: i64, weight: u32, reply: &Reply<'_>) -> bool {
        match self.limiter.weigh(self.peer, weight, now_ms) {
            Weigh::Ok(_) => true,
            Weigh::Limited { retry_after_ms, .. } => {
                let limit = self.limiter.config().request_weight_per_minute;
                let e = WsError::new(
                    429,
                    codes::TOO_MANY_REQUESTS,
                    format!("Too much request weight used; current limit is {limit} request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."),
                )
                .with_retry_after(now_ms, retry_after_ms);
                self.respond(now_ms, reply, Err(e));
                false
            }
            Weigh::Banned { until_ms } => {
                let e = WsError::new(
                    418,
                    codes::TOO_MANY_REQUESTS,
                    format!("Way too much request weight used; IP banned until {until_ms}. Please use WebSocket Streams for live updates to avoid bans."),
                )
                .with_retry_after(now_ms, until_ms);
                self.respond(now_ms, reply, Err(e));
                self.closed = true;
                self.events
                    .push_back(WsEvent::Disconnect(WsDisconnect::Banned { until_ms }));
                false
            }
        }
    }

    /// Handles a binary frame: the API speaks JSON in text frames only.
    pub fn handle_binary(&mut self, now: UtcTimestamp) {
        if self.closed {
            return;
        }
        let now_ms = ms(now);
        let reply = Reply {
            id: "null",
            method: None,
            rate_limits: self.config.return_rate_limits,
            orders_account: None,
        };
        if self.admit(now_ms, 1, &reply) {
            let e = WsError::bad_request(
                codes::INVALID_JSON,
                "Invalid JSON Request: requests are JSON in text frames.",
            );
            self.respond(now_ms, &reply, Err(e));
        }
    }

    /// Handles the passage of time: requests the application did not answer in time get
    /// -1007, and the logged-on key is re-checked when its check is due.
    pub fn handle_timeout(&mut self, now: UtcTimestamp, app: &mut dyn WsApplication) {
        let now_ns = now.nanos();
        while let Some(&(deadline, token)) = self.deadlines.front() {
            if deadline > now_ns {
                break;
            }
            self.deadlines.pop_front();
            if let Some(p) = self.pending.remove(&token) {
                let reply = Reply {
                    id: &p.id,
                    method: Some(p.method),
                    rate_limits: p.rate_limits,
                    orders_account: p.orders_account.clone(),
                };
                self.respond(ms(now), &reply, Err(WsError::timeout()));
            }
        }
        if self
            .next_revocation_check
            .is_some_and(|t| t <= now_ns && self.logon.is_some())
        {
            self.check_revocation(now, app);
        }
    }

    /// Re-checks the logged-on key now (the server's revocation signal calls this). A revoked
    /// key loses the connection's rights at once (see the module doc).
    pub fn check_revocation(&mut self, now: UtcTimestamp, app: &mut dyn WsApplication) {
        let Some(logon) = &self.logon else {
            return;
        };
        if !self.auth.revoked(&logon.principal, now) {
            self.next_revocation_check = Some(self.now_check_due(now));
            return;
        }
        let logon = self.logon.take().expect("checked above");
        self.next_revocation_check = None;
        self.push(REVOKED_FRAME.to_owned());
        if self.stream.is_some() {
            self.end_user_data_stream(now, app);
        }
        self.auth.session_closed(&logon.principal);
        self.events.push_back(WsEvent::Revoked {
            api_key: logon.principal.api_key.clone(),
        });
    }

    /// Applies one item of the application's output.
    pub fn handle_app_output(&mut self, now: UtcTimestamp, output: AppOutput) {
        match output {
            AppOutput::Complete { token, result } => self.complete(token, now, result),
            AppOutput::ExecutionReport(r) => self.push_execution_report(now, &r),
            AppOutput::ListStatus(r) => self.push_list_status(&r),
            AppOutput::Close(reason) => {
                self.closed = true;
                self.events
                    .push_back(WsEvent::Disconnect(WsDisconnect::Application(reason)));
            }
        }
    }

    /// Answers a request the application answered [`Dispatch::Pending`]. An unknown or
    /// timed-out token is reported as [`WsEvent::LateCompletion`] and otherwise ignored.
    pub fn complete(
        &mut self,
        token: RequestToken,
        now: UtcTimestamp,
        result: Result<Outcome, WsError>,
    ) {
        let Some(p) = self.pending.remove(&token.0) else {
            self.events.push_back(WsEvent::LateCompletion { token });
            return;
        };
        // Its deadline stays queued and is skipped when it comes due.
        let body = result.and_then(|o| render_outcome(p.method, p.resp_type, o));
        let reply = Reply {
            id: &p.id,
            method: Some(p.method),
            rate_limits: p.rate_limits,
            orders_account: p.orders_account.clone(),
        };
        self.respond(ms(now), &reply, body);
    }

    /// Sends an order event on the user data stream, if it runs.
    pub fn push_execution_report(&mut self, _now: UtcTimestamp, report: &ExecutionReport) {
        let Some(stream) = self.stream.as_ref().filter(|_| !self.closed) else {
            return;
        };
        let mut out = String::with_capacity(660);
        render::execution_report(&mut out, Some(stream.id), report);
        self.push(out);
    }

    /// Sends a `listStatus` event to the user data stream, if subscribed.
    pub fn push_list_status(&mut self, status: &ListStatus) {
        let Some(stream) = self.stream.as_ref().filter(|_| !self.closed) else {
            return;
        };
        let mut out = String::with_capacity(340);
        render::list_status(&mut out, Some(stream.id), status);
        self.push(out);
    }

    /// Tells the client the server is about to shut down (`serverShutdown`).
    pub fn server_shutdown(&mut self, now: UtcTimestamp) {
        let mut out = String::with_capacity(64);
        render::simple_event(&mut out, None, "serverShutdown", ms(now));
        self.push(out);
    }

    /// The connection ended: the application and the authenticator are told.
    pub fn on_disconnect(&mut self, app: &mut dyn WsApplication) {
        self.closed = true;
        if let Some(logon) = self.logon.take() {
            self.auth.session_closed(&logon.principal);
        }
        app.on_close();
    }

    // -----------------------------------------------------------------------------------------
    // Output

    fn respond(&mut self, now_ms: i64, reply: &Reply<'_>, result: Result<String, WsError>) {
        let mut out =
            String::with_capacity(96 + reply.id.len() + result.as_ref().map_or(64, String::len));
        out.push_str("{\"id\":");
        out.push_str(reply.id);
        match &result {
            Ok(body) => {
                out.push_str(",\"status\":200,\"result\":");
                out.push_str(body);
            }
            Err(e) => {
                let _ = write!(out, ",\"status\":{},\"error\":", e.status());
                render::error(&mut out, e);
                self.events.push_back(WsEvent::Rejected {
                    method: reply.method.map(Method::name),
                    status: e.status(),
                    code: e.code(),
                });
            }
        }
        if reply.rate_limits {
            out.push_str(",\"rateLimits\":");
            self.write_rate_limits(&mut out, now_ms, reply.orders_account.as_deref());
        }
        out.push('}');
        self.push(out);
    }

    fn write_rate_limits(&self, out: &mut String, now_ms: i64, orders_account: Option<&str>) {
        let cfg = self.limiter.config();
        out.push('[');
        if let Some(account) = orders_account {
            let (ten_s, day) = self.limiter.order_counts(account, now_ms);
            rate_limit(out, "ORDERS", "SECOND", 10, cfg.orders_per_10s, Some(ten_s));
            out.push(',');
            rate_limit(out, "ORDERS", "DAY", 1, cfg.orders_per_day, Some(day));
            out.push(',');
        }
        let weight = self.limiter.weight_count(self.peer, now_ms);
        rate_limit(
            out,
            "REQUEST_WEIGHT",
            "MINUTE",
            1,
            cfg.request_weight_per_minute,
            Some(weight),
        );
        out.push(']');
    }

    fn status_json(&self, now_ms: i64) -> String {
        let mut out = String::with_capacity(200);
        let mut o = Obj::open(&mut out);
        match &self.logon {
            Some(l) => {
                o.str("apiKey", &l.principal.api_key)
                    .int("authorizedSince", l.since_ms);
            }
            None => {
                o.raw("apiKey", "null").raw("authorizedSince", "null");
            }
        }
        o.int("connectedSince", self.connected_at_ms)
            .bool("returnRateLimits", self.config.return_rate_limits)
            .int("serverTime", now_ms)
            .bool("userDataStream", self.stream.is_some())
            .close();
        out
    }

    /// Starts the user data stream for `principal`'s account (`userDataStream.subscribe`, or
    /// `.subscribe.signature` if `by_signature`), or answers the one running for it; a
    /// connection streams for one account. The answer: `{"subscriptionId":N}`.
    fn start_user_data_stream(
        &mut self,
        principal: &Principal,
        by_signature: bool,
        app: &mut dyn WsApplication,
    ) -> Result<String, WsError> {
        if let Some(s) = &self.stream {
            if s.account != principal.account {
                return Err(WsError::new(
                    400,
                    codes::UNAUTHORIZED,
                    "This connection streams another account's events; use one connection per account.",
                ));
            }
            return Ok(format!("{{\"subscriptionId\":{}}}", s.id));
        }
        app.user_data_stream(Some(principal))?;
        let id = self.next_subscription;
        self.next_subscription = self.next_subscription.wrapping_add(1);
        self.stream = Some(UserStream {
            id,
            by_signature,
            account: principal.account.clone(),
        });
        self.events
            .push_back(WsEvent::UserDataStream { active: true });
        Ok(format!("{{\"subscriptionId\":{id}}}"))
    }

    fn end_user_data_stream(&mut self, now: UtcTimestamp, app: &mut dyn WsApplication) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let mut out = String::with_capacity(84);
        render::simple_event(&mut out, Some(stream.id), "eventStreamTerminated", ms(now));
        self.push(out);
        // Stopping cannot meaningfully fail; the session drops reports from now on anyway.
        let _ = app.user_data_stream(None);
        self.events
            .push_back(WsEvent::UserDataStream { active: false });
    }

    fn token(&mut self) -> RequestToken {
        let t = RequestToken(self.next_token);
        self.next_token += 1;
        t
    }

    // -----------------------------------------------------------------------------------------
    // Methods

    fn dispatch(
        &mut self,
        now: UtcTimestamp,
        method: Method,
        params: &Params<'_>,
        reply: &mut Reply<'_>,
        app: &mut dyn WsApplication,
    ) -> Answer {
        let now_ms = ms(now);
        let read = params.iter().filter(|p| method.accepts(&p.name)).count();
        if read != params.len() {
            return Answer::Done(Err(WsError::unread(read, params.len())));
        }
        if let Err(e) = params.opt_bool(RRL) {
            return Answer::Done(Err(e));
        }
        let done = |r: Result<String, WsError>| Answer::Done(r);
        match method {
            Method::Ping => done(Ok("{}".to_owned())),
            Method::Time => done(Ok(format!("{{\"serverTime\":{now_ms}}}"))),
            Method::ExchangeInfo => done(self.exchange_info(now_ms, params, app)),
            Method::SessionLogon => done(self.session_logon(now, params, app)),
            Method::SessionStatus => done(Ok(self.status_json(now_ms))),
            Method::SessionLogout => {
                if let Some(logon) = self.logon.take() {
                    // A subscription made with a signature outlives the logon.
                    if self.stream.as_ref().is_some_and(|s| !s.by_signature) {
                        self.end_user_data_stream(now, app);
                    }
                    self.auth.session_closed(&logon.principal);
                    self.events.push_back(WsEvent::LoggedOut {
                        api_key: logon.principal.api_key.clone(),
                    });
                }
                done(Ok(self.status_json(now_ms)))
            }
            Method::UserDataStreamSubscribe => {
                let Some(logon) = self.logon.clone() else {
                    return done(Err(WsError::new(
                        401,
                        codes::UNAUTHORIZED,
                        "You are not authorized to execute this request.",
                    )));
                };
                done(self.start_user_data_stream(&logon.principal, false, app))
            }
            Method::UserDataStreamSubscribeSignature => {
                if !params.has("apiKey") {
                    return done(Err(WsError::mandatory("apiKey")));
                }
                match self.authorize(now, method, params) {
                    Ok(principal) => done(self.start_user_data_stream(&principal, true, app)),
                    Err(e) => done(Err(e)),
                }
            }
            Method::UserDataStreamUnsubscribe => {
                let id = match params.opt_u64("subscriptionId", u64::from(u32::MAX)) {
                    Ok(id) => id,
                    Err(e) => return done(Err(e)),
                };
                match (&self.stream, id) {
                    (Some(s), Some(id)) if u64::from(s.id) != id => {
                        return done(Err(WsError::invalid_value("subscriptionId")))
                    }
                    (None, Some(_)) => return done(Err(WsError::invalid_value("subscriptionId"))),
                    _ => {}
                }
                self.end_user_data_stream(now, app);
                done(Ok("{}".to_owned()))
            }
            Method::SessionSubscriptions => done(Ok(match &self.stream {
                Some(s) => format!("[{{\"subscriptionId\":{}}}]", s.id),
                None => "[]".to_owned(),
            })),
            Method::AccountCommission => {
                let symbol = match read_symbol(params) {
                    Ok(s) => s.to_owned(),
                    Err(e) => return done(Err(e)),
                };
                if app.symbols().get(&symbol).is_none() {
                    return done(Err(WsError::invalid_symbol()));
                }
                let principal = match self.authorize(now, method, params) {
                    Ok(p) => p,
                    Err(e) => return done(Err(e)),
                };
                let ctx = RequestCtx {
                    token: self.token(),
                    principal: &principal,
                    now,
                };
                done(app.commission_rates(&ctx, &symbol).map(|r| {
                    let mut out = String::with_capacity(480);
                    render::account_commission(&mut out, &symbol, &r);
                    out
                }))
            }
            Method::AccountRateLimitsOrders => {
                let principal = match self.authorize(now, method, params) {
                    Ok(p) => p,
                    Err(e) => return done(Err(e)),
                };
                let (ten_s, day) = self.limiter.order_counts(&principal.account, now_ms);
                let cfg = self.limiter.config();
                let mut out = String::with_capacity(200);
                out.push('[');
                rate_limit(
                    &mut out,
                    "ORDERS",
                    "SECOND",
                    10,
                    cfg.orders_per_10s,
                    Some(ten_s),
                );
                out.push(',');
                rate_limit(&mut out, "ORDERS", "DAY", 1, cfg.orders_per_day, Some(day));
                out.push(']');
                done(Ok(out))
            }
            Method::OrderPlace | Method::OrderTest => self
                .order_place(now, method, params, reply, app)
                .unwrap_or_else(|e| Answer::Done(Err(e))),
            Method::OrderCancelReplace => self
                .order_cancel_replace(now, params, reply, app)
                .unwrap_or_else(|e| Answer::Done(Err(e))),
            Method::OrderListPlaceOco | Method::OrderListPlaceOto | Method::OrderListPlaceOtoco => {
                self.order_list_place(now, method, params, reply, app)
                    .unwrap_or_else(|e| Answer::Done(Err(e)))
            }
            Method::OrderListStatus
            | Method::OrderListCancel
            | Method::OpenOrderListsStatus
            | Method::AllOrderLists => self
                .order_list_query(now, method, params, app)
                .unwrap_or_else(|e| Answer::Done(Err(e))),
            Method::OrderStatus
            | Method::OrderCancel
            | Method::OrderAmendKeepPriority
            | Method::OpenOrdersStatus
            | Method::OpenOrdersCancelAll
            | Method::AccountStatus
            | Method::AccountPosition
            | Method::Depth
            | Method::TickerBook
            | Method::TickerPrice
            | Method::AllOrders
            | Method::MyTrades => self
                .order_query(now, method, params, app)
                .unwrap_or_else(|e| Answer::Done(Err(e))),
        }
    }

    /// Resolves who a signed request acts for: its own `apiKey` and `signature`, or the
    /// connection's logon; `timestamp`/`recvWindow` checked either way.
    fn authorize(
        &mut self,
        now: UtcTimestamp,
        method: Method,
        params: &Params<'_>,
    ) -> Result<Arc<Principal>, WsError> {
        let security = method.security();
        let principal = if params.has("apiKey") {
            let api_key = params.req_str("apiKey")?;
            if !is_api_key(api_key) {
                return Err(WsError::new(
                    401,
                    codes::BAD_API_KEY_FMT,
                    "API-key format invalid.",
                ));
            }
            let signature = read_signature(params)?;
            Timing::read(params)?.check(us(now))?;
            let payload = SignaturePayload::build(params);
            let req = SignedRequest {
                api_key,
                signature,
                payload: &payload,
                security,
                method: method.name(),
                peer: self.peer,
                now,
            };
            Arc::new(
                self.auth
                    .verify_request(&req)
                    .map_err(|e| auth_error(e, ms(now)))?,
            )
        } else {
            let Some(logon) = &self.logon else {
                return Err(WsError::mandatory("apiKey"));
            };
            if params.has("signature") {
                return Err(WsError::not_required("signature"));
            }
            let principal = logon.principal.clone();
            Timing::read(params)?.check(us(now))?;
            principal
        };
        let allowed = match security {
            Security::Trade => principal.can_trade,
            Security::UserData => principal.can_read,
            _ => true,
        };
        if !allowed {
            return Err(WsError::rejected_key());
        }
        Ok(principal)
    }

    fn session_logon(
        &mut self,
        now: UtcTimestamp,
        params: &Params<'_>,
        app: &mut dyn WsApplication,
    ) -> Result<String, WsError> {
        let api_key = params.req_str("apiKey")?;
        if !is_api_key(api_key) {
            return Err(WsError::new(
                401,
                codes::BAD_API_KEY_FMT,
                "API-key format invalid.",
            ));
        }
        let signature = read_signature(params)?;
        Timing::read(params)?.check(us(now))?;
        let payload = SignaturePayload::build(params);
        let req = SignedRequest {
            api_key,
            signature,
            payload: &payload,
            security: Security::Logon,
            method: Method::SessionLogon.name(),
            peer: self.peer,
            now,
        };
        // A refused logon leaves the connection as it was.
        let principal = Arc::new(
            self.auth
                .session_logon(&req)
                .map_err(|e| auth_error(e, ms(now)))?,
        );
        if let Some(old) = self.logon.take() {
            if self
                .stream
                .as_ref()
                .is_some_and(|s| s.account != principal.account)
            {
                self.end_user_data_stream(now, app);
            }
            self.auth.session_closed(&old.principal);
            self.events.push_back(WsEvent::LoggedOut {
                api_key: old.principal.api_key.clone(),
            });
        }
        self.events.push_back(WsEvent::LoggedOn {
            api_key: principal.api_key.clone(),
        });
        self.logon = Some(Logon {
            principal,
            since_ms: ms(now),
        });
        self.next_revocation_check = Some(self.now_check_due(now));
        Ok(self.status_json(ms(now)))
    }

    fn exchange_info(
        &mut self,
        now_ms: i64,
        params: &Params<'_>,
        app: &mut dyn WsApplication,
    ) -> Result<String, WsError> {
        let symbol = params.opt_str("symbol")?;
        let symbols = read_symbol_list(params)?;
        let status = params.opt_enum("symbolStatus", SymbolStatus::parse, || {
            WsError::bad_request(codes::INVALID_SYMBOL_STATUS, "Invalid symbolStatus.")
        })?;
        if (symbol.is_some() && symbols.is_some())
            || (status.is_some() && (symbol.is_some() || symbols.is_some()))
        {
            return Err(WsError::bad_combo());
        }
        let table = app.symbols();
        let mut chosen: Vec<&SymbolInfo> = Vec::new();
        if let Some(s) = symbol {
            if !is_symbol(s) {
                return Err(WsError::illegal_chars("symbol", SYMBOL_RANGE));
            }
            chosen.push(table.get(s).ok_or_else(WsError::invalid_symbol)?);
        } else if let Some(list) = &symbols {
            for s in list {
                chosen.push(table.get(s).ok_or_else(WsError::invalid_symbol)?);
            }
        } else {
            chosen.extend(
                table
                    .iter()
                    .filter(|s| status.is_none_or(|st| s.status == st)),
            );
        }
        let cfg = self.limiter.config();
        let mut out = String::with_capacity(256 + 900 * chosen.len());
        Obj::open(&mut out)
            .str("timezone", "UTC")
            .int("serverTime", now_ms)
            .with("rateLimits", |out| {
                out.push('[');
                rate_limit(
                    out,
                    "REQUEST_WEIGHT",
                    "MINUTE",
                    1,
                    cfg.request_weight_per_minute,
                    None,
                );
                out.push(',');
                rate_limit(out, "ORDERS", "SECOND", 10, cfg.orders_per_10s, None);
                out.push(',');
                rate_limit(out, "ORDERS", "DAY", 1, cfg.orders_per_day, None);
                out.push(',');
                rate_limit(
                    out,
                    "CONNECTIONS",
                    "MINUTE",
                    5,
                    cfg.connections_per_5min,
                    None,
                );
                out.push(']');
            })
            .raw("exchangeFilters", "[]")
            .with("symbols", |out| {
                write_array(out, &chosen, |out, s| render::symbol(out, s))
            })
            .close();
        Ok(out)
    }

    fn order_place(
        &mut self,
        now: UtcTimestamp,
        method: Method,
        params: &Params<'_>,
        reply: &mut Reply<'_>,
        app: &mut dyn WsApplication,
    ) -> Result<Answer, WsError> {
        let order = read_order(params)?;
        let compute_commission = if method == Method::OrderTest {
            params.opt_bool("computeCommissionRates")?.unwrap_or(false)
        } else {
            false
        };
        let principal = self.authorize(now, method, params)?;
        let table = app.symbols();
        check_order(&table, &order)?;
        if method == Method::OrderTest {
            let ctx = RequestCtx {
                token: self.token(),
                principal: &principal,
                now,
            };
            app.order_test(&ctx, &order)?;
            if compute_commission {
                let rates = app.commission_rates(&ctx, &order.symbol)?;
                let mut out = String::with_capacity(320);
                render::order_commission(&mut out, &rates);
                return Ok(Answer::Done(Ok(out)));
            }
            return Ok(Answer::Done(Ok("{}".to_owned())));
        }
        self.count_order(&principal, ms(now), reply)?;
        let ctx = RequestCtx {
            token: self.token(),
            principal: &principal,
            now,
        };
        let d = app.order_place(&ctx, &order);
        Ok(answer_of(method, order.resp_type, ctx.token, d))
    }

    /// `orderList.place.oco`, `.oto` and `.otoco`: every order checked as `order.place`
    /// checks one and counted in the ORDERS limits, the symbol allowing the kind of list.
    fn order_list_place(
        &mut self,
        now: UtcTimestamp,
        method: Method,
        params: &Params<'_>,
        reply: &mut Reply<'_>,
        app: &mut dyn WsApplication,
    ) -> Result<Answer, WsError> {
        let list = match method {
            Method::OrderListPlaceOco => ListRequest::Oco(Box::new(read_oco(params)?)),
            _ => ListRequest::Oto(Box::new(read_oto(
                params,
                method == Method::OrderListPlaceOtoco,
            )?)),
        };
        let (orders, resp_type): (Vec<&WsOrder>, RespType) = match &list {
            ListRequest::Oco(l) => (vec![&l.above, &l.below], l.resp_type),
            ListRequest::Oto(l) => (
                std::iter::once(&l.working).chain(&l.pending).collect(),
                l.resp_type,
            ),
        };
        let principal = self.authorize(now, method, params)?;
        let table = app.symbols();
        if let Some(info) = table.get(&orders[0].symbol) {
            match list {
                ListRequest::Oco(_) if !info.oco_allowed => {
                    return Err(WsError::order_rejected(
                        "OCO orders are not supported for this symbol.",
                    ))
                }
                ListRequest::Oto(_) if !info.oto_allowed => {
                    return Err(WsError::order_rejected(
                        "OTO orders are not supported for this symbol.",
                    ))
                }
                _ => {}
            }
        }
        for o in &orders {
            check_order(&table, o)?;
        }
        for _ in &orders {
            self.count_order(&principal, ms(now), reply)?;
        }
        let ctx = RequestCtx {
            token: self.token(),
            principal: &principal,
            now,
        };
        let d = match &list {
            ListRequest::Oco(l) => app.order_list_place_oco(&ctx, l),
            ListRequest::Oto(l) => app.order_list_place_oto(&ctx, l),
        };
        Ok(answer_of(method, resp_type, ctx.token, d))
    }

    /// `orderList.status`, `orderList.cancel`, `openOrderLists.status` and `allOrderLists`.
    fn order_list_query(
        &mut self,
        now: UtcTimestamp,
        method: Method,
        params: &Params<'_>,
        app: &mut dyn WsApplication,
    ) -> Result<Answer, WsError> {
        let (symbol, list) = match method {
            Method::OrderListStatus => (None, Some(read_list_ref(params, "origClientOrderId")?)),
            Method::OrderListCancel => {
                let symbol = read_symbol(params)?.to_owned();
                if app.symbols().get(&symbol).is_none() {
                    return Err(WsError::invalid_symbol());
                }
                (
                    Some(symbol),
                    Some(read_list_ref(params, "listClientOrderId")?),
                )
            }
            _ => (None, None),
        };
        let history = if method == Method::AllOrderLists {
            Some(read_history_query(params, HistoryKind::Lists)?)
        } else {
            None
        };
        let principal = self.authorize(now, method, params)?;
        let ctx = RequestCtx {
            token: self.token(),
            principal: &principal,
            now,
        };
        let (token, ack) = (ctx.token, RespType::Ack);
        if let Some(q) = history {
            return Ok(answer_of(method, ack, token, app.all_order_lists(&ctx, &q)));
        }
        Ok(match (method, symbol, list) {
            (Method::OrderListStatus, _, Some(list)) => {
                answer_of(method, ack, token, app.order_list_status(&ctx, &list))
            }
            (Method::OrderListCancel, Some(symbol), Some(list)) => answer_of(
                method,
                ack,
                token,
                app.order_list_cancel(&ctx, &symbol, &list),
            ),
            _ => answer_of(method, ack, token, app.open_order_lists_status(&ctx)),
        })
    }

    /// Counts a new order in the account's `ORDERS` windows (429 -1015 over a limit), and
    /// shows those windows in the answer.
    fn count_order(
        &mut self,
        principal: &Principal,
        now_ms: i64,
        reply: &mut Reply<'_>,
    ) -> Result<(), WsError> {
        reply.orders_account = Some(principal.account.clone());
        self.limiter.order(&principal.account, now_ms).map_err(|l| {
            WsError::too_many_orders(l.limit, l.interval).with_retry_after(now_ms, l.retry_after_ms)
        })
    }

    fn order_cancel_replace(
        &mut self,
        now: UtcTimestamp,
        params: &Params<'_>,
        reply: &mut Reply<'_>,
        app: &mut dyn WsApplication,
    ) -> Result<Answer, WsError> {
        let method = Method::OrderCancelReplace;
        let mode = params.req_enum("cancelReplaceMode", CancelReplaceMode::parse, || {
            WsError::invalid_value("cancelReplaceMode")
        })?;
        let order = read_order(params)?;
        let target = read_order_ref(
            params,
            &order.symbol,
            "cancelOrderId",
            "cancelOrigClientOrderId",
        )?;
        let new_client_order_id = params.opt_client_id("cancelNewClientOrderId", || {
            WsError::empty("cancelNewClientOrderId")
        })?;
        let restrictions = read_restrictions(params)?;
        let rate_limit_exceeded_mode = params
            .opt_enum(
                "orderRateLimitExceededMode",
                RateLimitExceededMode::parse,
                || WsError::invalid_value("orderRateLimitExceededMode"),
            )?
            .unwrap_or(RateLimitExceededMode::DoNothing);
        let principal = self.authorize(now, method, params)?;
        let table = app.symbols();
        check_order(&table, &order)?;
        if table
            .get(&order.symbol)
            .is_some_and(|s| !s.cancel_replace_allowed)
        {
            return Err(WsError::order_rejected(
                "Order cancel-replace is not supported for this symbol.",
            ));
        }
        self.count_order(&principal, ms(now), reply)?;
        let request = CancelReplaceRequest {
            mode,
            cancel: CancelRequest {
                target,
                new_client_order_id,
                restrictions,
            },
            order,
            rate_limit_exceeded_mode,
        };
        let ctx = RequestCtx {
            token: self.token(),
            principal: &principal,
            now,
        };
        let resp_type = request.order.resp_type;
        let d = app.order_cancel_replace(&ctx, &request);
        Ok(answer_of(method, resp_type, ctx.token, d))
    }

    fn order_query(
        &mut self,
        now: UtcTimestamp,
        method: Method,
        params: &Params<'_>,
        app: &mut dyn WsApplication,
    ) -> Result<Answer, WsError> {
        // Read and validate everything before authenticating, as for orders.
        enum Query {
            Status(OrderRef),
            Cancel(CancelRequest),
            Amend(AmendRequest),
            Open(Option<String>),
            Positions(Option<String>),
            CancelAll(String),
            Account(bool),
            History(HistoryQuery),
            Depth(String, usize),
            TickerBook(String),
            TickerPrice(String),
        }
        let query = match method {
            Method::OrderStatus => {
                let symbol = read_symbol(params)?;
                Query::Status(read_order_ref(
                    params,
                    symbol,
                    "orderId",
                    "origClientOrderId",
                )?)
            }
            Method::OrderCancel => {
                let symbol = read_symbol(params)?;
                let target = read_order_ref(params, symbol, "orderId", "origClientOrderId")?;
                let new_client_order_id = params.opt_client_id("newClientOrderId", || {
                    WsError::bad_request(
                        codes::EMPTY_NEW_CL_ORD_ID,
                        "New client order ID was empty.",
                    )
                })?;
                Query::Cancel(CancelRequest {
                    target,
                    new_client_order_id,
                    restrictions: read_restrictions(params)?,
                })
            }
            Method::OrderAmendKeepPriority => {
                let symbol = read_symbol(params)?;
                let target = read_order_ref(params, symbol, "orderId", "origClientOrderId")?;
                let new_client_order_id = params.opt_client_id("newClientOrderId", || {
                    WsError::bad_request(
                        codes::EMPTY_NEW_CL_ORD_ID,
                        "New client order ID was empty.",
                    )
                })?;
                let new_qty = params.req_decimal("newQty")?;
                if new_qty.is_zero() {
                    return Err(WsError::amend_rejected(
                        "newQty must be greater than 0 and less than the order's quantity.",
                    ));
                }
                Query::Amend(AmendRequest {
                    target,
                    new_client_order_id,
                    new_qty,
                })
            }
            Method::OpenOrdersStatus | Method::AccountPosition => {
                let symbol = match params.opt_str("symbol")? {
                    Some(s) if !is_symbol(s) => {
                        return Err(WsError::illegal_chars("symbol", SYMBOL_RANGE))
                    }
                    s => s.map(str::to_owned),
                };
                if method == Method::AccountPosition {
                    Query::Positions(symbol)
                } else {
                    Query::Open(symbol)
                }
            }
            Method::OpenOrdersCancelAll => Query::CancelAll(read_symbol(params)?.to_owned()),
            Method::Depth => {
                let symbol = read_symbol(params)?.to_owned();
                let limit = match params.opt_u64("limit", u64::MAX)? {
                    None => DEPTH_DEFAULT_LIMIT,
                    Some(n) if (1..=DEPTH_MAX_LIMIT as u64).contains(&n) => n as usize,
                    Some(_) => {
                        return Err(WsError::bad_request(
                            codes::INVALID_PARAMETER,
                            format!(
                                "Invalid data sent for a parameter: 'limit' must be 1 to {DEPTH_MAX_LIMIT}."
                            ),
                        ))
                    }
                };
                Query::Depth(symbol, limit)
            }
            Method::TickerBook => Query::TickerBook(read_symbol(params)?.to_owned()),
            Method::TickerPrice => Query::TickerPrice(read_symbol(params)?.to_owned()),
            Method::AllOrders | Method::MyTrades => {
                let kind = if method == Method::MyTrades {
                    HistoryKind::Trades
                } else {
                    HistoryKind::Orders
                };
                Query::History(read_history_query(params, kind)?)
            }
            _ => Query::Account(params.opt_bool("omitZeroBalances")?.unwrap_or(false)),
        };
        let principal = self.authorize(now, method, params)?;
        let symbol = match &query {
            Query::Status(r) => Some(&r.symbol),
            Query::Cancel(c) => Some(&c.target.symbol),
            Query::Amend(a) => Some(&a.target.symbol),
            Query::Open(s) | Query::Positions(s) => s.as_ref(),
            Query::CancelAll(s)
            | Query::Depth(s, _)
            | Query::TickerBook(s)
            | Query::TickerPrice(s) => Some(s),
            Query::Account(_) => None,
            Query::History(q) => Some(&q.symbol),
        };
        if let Some(s) = symbol {
            let table = app.symbols();
            let Some(info) = table.get(s) else {
                return Err(WsError::invalid_symbol());
            };
            // The new quantity passes the symbol's LOT_SIZE filter, as an order's would.
            if let Query::Amend(a) = &query {
                if !info.amend_allowed {
                    return Err(WsError::amend_rejected(
                        "Order amend is not supported for this symbol.",
                    ));
                }
                info.check_order(OrderType::Limit, None, Some(&a.new_qty), None)?;
            }
        }
        let ctx = RequestCtx {
            token: self.token(),
            principal: &principal,
            now,
        };
        fn answer<T: Into<Outcome>>(method: Method, d: Dispatch<T>, token: RequestToken) -> Answer {
            answer_of(method, RespType::Full, token, d)
        }
        Ok(match &query {
            Query::Status(r) => answer(method, app.order_status(&ctx, r), ctx.token),
            Query::Cancel(c) => answer(method, app.order_cancel(&ctx, c), ctx.token),
            Query::Amend(a) => answer(method, app.order_amend_keep_priority(&ctx, a), ctx.token),
            Query::Open(s) => answer(
                method,
                app.open_orders_status(&ctx, s.as_deref()),
                ctx.token,
            ),
            Query::Positions(s) => {
                answer(method, app.account_positions(&ctx, s.as_deref()), ctx.token)
            }
            Query::CancelAll(s) => answer(method, app.open_orders_cancel_all(&ctx, s), ctx.token),
            Query::Account(omit) => answer(method, app.account_status(&ctx, *omit), ctx.token),
            Query::History(q) if method == Method::AllOrders => {
                answer(method, app.all_orders(&ctx, q), ctx.token)
            }
            Query::History(q) => answer(method, app.my_trades(&ctx, q), ctx.token),
            Query::Depth(s, limit) => answer(method, app.depth(&ctx, s, *limit), ctx.token),
            Query::TickerBook(s) => answer(method, app.ticker_book(&ctx, s), ctx.token),
            Query::TickerPrice(s) => answer(method, app.ticker_price(&ctx, s), ctx.token),
        })
    }
}

fn auth_error(e: AuthError, now_ms: i64) -> WsError {
    match e {
        AuthError::InvalidSignature => WsError::invalid_signature(),
        AuthError::Rejected => WsError::rejected_key(),
        AuthError::Locked { retry_after_ms } => {
            let e = WsError::new(
                429,
                codes::TOO_MANY_REQUESTS,
                "Too many failed authentication attempts; retry later.",
            );
            match retry_after_ms {
                Some(t) => e.with_retry_after(now_ms, t),
                None => e,
            }
        }
    }
}

/// One entry of a `rateLimits` array; `count` is left out where the dialect has none
/// (`exchangeInfo`).
fn rate_limit(
    out: &mut String,
    kind: &str,
    interval: &str,
    num: u32,
    limit: u32,
    count: Option<u32>,
) {
    let mut o = Obj::open(out);
    o.str("rateLimitType", kind)
        .str("interval", interval)
        .int("intervalNum", num)
        .int("limit", limit);
    if let Some(c) = count {
        o.int("count", c);
    }
    o.close();
}

/// The `result` JSON of a completed request, checking the outcome is the method's.
fn render_outcome(method: Method, resp: RespType, outcome: Outcome) -> Result<String, WsError> {
    let mut out = String::with_capacity(512);
    match (method, outcome) {
        (Method::OrderPlace, Outcome::Placed(r)) => render::order_result(&mut out, &r, resp),
        (Method::OrderStatus, Outcome::Order(r)) => render::order_info(&mut out, &r),
        (Method::OrderCancel, Outcome::Canceled(r)) => render::cancel_result(&mut out, &r),
        (Method::OrderCancelReplace, Outcome::CancelReplaced(r)) => {
            return render::cancel_replace(&r, resp)
        }
        (Method::OrderAmendKeepPriority, Outcome::Amended(a)) => render::amend(&mut out, &a),
        (Method::OpenOrdersStatus, Outcome::OpenOrders(v)) => {
            write_array(&mut out, &v, render::order_info)
        }
        (Method::OpenOrdersCancelAll, Outcome::CanceledAll(v)) => {
            write_array(&mut out, &v, render::cancel_result)
        }
        (Method::AccountStatus, Outcome::Account(a)) => render::account(&mut out, &a),
        (Method::AccountPosition, Outcome::Positions(v)) => {
            write_array(&mut out, &v, render::position_info)
        }
        (Method::AllOrders, Outcome::Orders(v) | Outcome::OpenOrders(v)) => {
            write_array(&mut out, &v, render::order_info)
        }
        (Method::MyTrades, Outcome::Trades(v)) => write_array(&mut out, &v, render::trade_info),
        (Method::Depth, Outcome::Depth(d)) => render::depth(&mut out, &d),
        (Method::TickerBook, Outcome::BookTicker(t)) => render::book_ticker(&mut out, &t),
        (Method::TickerPrice, Outcome::PriceTicker(t)) => render::price_ticker(&mut out, &t),
        (
            Method::OrderListPlaceOco | Method::OrderListPlaceOto | Method::OrderListPlaceOtoco,
            Outcome::OrderList(r),
        ) => render::order_list_result(&mut out, &r, resp),
        (Method::OrderListStatus | Method::OrderListCancel, Outcome::OrderListInfo(r)) => {
            render::order_list_info(&mut out, &r)
        }
        (Method::OpenOrderListsStatus | Method::AllOrderLists, Outcome::OrderLists(v)) => {
            write_array(&mut out, &v, render::order_list_info)
        }
        // The application answered with another method's outcome: a server bug, reported
        // as such rather than sent.
        _ => return Err(WsError::unknown()),
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Envelope

/// A frame split into the request's parts.
struct Envelope<'a> {
    /// The raw `id`, if one could be read.
    id: Option<&'a str>,
    request: Result<(Method, Params<'a>), WsError>,
}

impl<'a> Envelope<'a> {
    fn parse(text: &'a str) -> Self {
        let invalid_json = || WsError::bad_request(codes::INVALID_JSON, "Invalid JSON Request");
        let members = match parse_object(text) {
            Ok(o) => o.0,
            Err(ObjectError::Syntax | ObjectError::NotObject) => {
                return Envelope {
                    id: None,
                    request: Err(invalid_json()),
                }
            }
        };
        let (mut id, mut method, mut params): (
            Option<&'a RawValue>,
            Option<&'a RawValue>,
            Option<&'a RawValue>,
        ) = (None, None, None);
        let mut error = None;
        for m in members {
            let slot = match &*m.name {
                "id" => &mut id,
                "method" => &mut method,
                "params" => &mut params,
                _ => {
                    error.get_or_insert_with(|| {
                        WsError::bad_request(codes::UNKNOWN_PARAM, "An unknown parameter was sent.")
                    });
                    continue;
                }
            };
            if slot.replace(m.value).is_some() {
                error.get_or_insert_with(invalid_json);
            }
        }
        // The id is echoed only if it is what the dialect allows: an integer, a string or
        // null, of reasonable length; anything else is answered with a null id.
        let id_text = id.and_then(|raw| {
            let ok = raw.get().len() <= 256
                && match Scalar::of(raw) {
                    Scalar::Null | Scalar::Str(_) => true,
                    Scalar::Num(n) => {
                        let digits = n.strip_prefix('-').unwrap_or(n);
                        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                    }
                    _ => false,
                };
            ok.then(|| raw.get())
        });
        let fail = |e: WsError| Envelope {
            id: id_text,
            request: Err(e),
        };
        if id_text.is_none() {
            return Envelope {
                id: None,
                request: Err(error.unwrap_or_else(|| WsError::mandatory("id"))),
            };
        }
        if let Some(e) = error {
            return fail(e);
        }
        let method = match method.map(Scalar::of) {
            Some(Scalar::Str(name)) if !name.is_empty() => match Method::parse(&name) {
                Some(m) => m,
                None => return fail(WsError::unsupported()),
            },
            _ => return fail(WsError::mandatory("method")),
        };
        let params = match params.map(|p| (p, Scalar::of(p))) {
            None | Some((_, Scalar::Null)) => Params::default(),
            Some((p, Scalar::Composite(t))) if t.starts_with('{') => {
                match parse_object(p.get())
                    .map_err(|_| invalid_json())
                    .and_then(|o| Params::from_members(o.0))
                {
                    Ok(p) => p,
                    Err(e) => return fail(e),
                }
            }
            Some(_) => {
                return fail(WsError::bad_request(
                    codes::INVALID_JSON,
                    "JSON sent for parameter 'params' is not valid",
                ))
            }
        };
        Envelope {
            id: id_text,
            request: Ok((method, params)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parameter groups

fn read_symbol<'p>(params: &'p Params<'_>) -> Result<&'p str, WsError> {
    let s = params.req_str("symbol")?;
    if !is_symbol(s) {
        return Err(WsError::illegal_chars("symbol", SYMBOL_RANGE));
    }
    Ok(s)
}

/// `symbols`: a JSON array of symbols, or a string holding one (as REST clients send it).
fn read_symbol_list(params: &Params<'_>) -> Result<Option<Vec<String>>, WsError> {
    const RANGE: &str = r#"^\[("[A-Z0-9-_.]{1,32}"(,"[A-Z0-9-_.]{1,32}"){0,}){0,1}\]$"#;
    let Some(p) = params.get("symbols") else {
        return Ok(None);
    };
    let text: &str = match &p.value {
        Scalar::Composite(t) => t,
        Scalar::Str(s) => s,
        Scalar::Null => return Err(WsError::empty("symbols")),
        _ => return Err(WsError::illegal_chars("symbols", RANGE)),
    };
    let list: Vec<String> =
        serde_json::from_str(text).map_err(|_| WsError::illegal_chars("symbols", RANGE))?;
    if list.is_empty() {
        return Err(WsError::empty("symbols"));
    }
    if list.len() > 100 || !list.iter().all(|s| is_symbol(s)) {
        return Err(WsError::illegal_chars("symbols", RANGE));
    }
    for (i, s) in list.iter().enumerate() {
        if list[..i].contains(s) {
            return Err(WsError::bad_request(
                codes::DUPLICATE_SYMBOLS,
                "Symbol is present multiple times in the list.",
            ));
        }
    }
    Ok(Some(list))
}

/// `signature`: hex (HMAC) or base64 (Ed25519) text of a sane length; anything else cannot
/// match and is refused before it reaches the verifier.
fn read_signature<'p>(params: &'p Params<'_>) -> Result<&'p str, WsError> {
    let s = params.req_str("signature")?;
    let plausible = s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if plausible {
        Ok(s)
    } else {
        Err(WsError::invalid_signature())
    }
}

fn read_restrictions(params: &Params<'_>) -> Result<Option<CancelRestrictions>, WsError> {
    params.opt_enum("cancelRestrictions", CancelRestrictions::parse, || {
        WsError::bad_request(
            codes::INVALID_CANCEL_RESTRICTIONS,
            "Invalid cancelRestrictions",
        )
    })
}

/// An order by exchange id and/or client id, at least one.
fn read_order_ref(
    params: &Params<'_>,
    symbol: &str,
    id_name: &str,
    client_name: &str,
) -> Result<OrderRef, WsError> {
    let order_id = params.opt_u64(id_name, SafeId::MAX)?.and_then(SafeId::new);
    let orig_client_order_id = params.opt_client_id(client_name, || {
        WsError::bad_request(
            codes::EMPTY_ORG_CL_ORD_ID,
            "Original client order ID was empty.",
        )
    })?;
    if order_id.is_none() && orig_client_order_id.is_none() {
        return Err(WsError::either_mandatory(id_name, client_name));
    }
    Ok(OrderRef {
        symbol: symbol.to_owned(),
        order_id,
        orig_client_order_id,
    })
}

/// Reads the parameters of `allOrders` (`trades` false) or `myTrades`, with the dialect's
/// rules: `limit` 1 to 1000 (default 500), a time window of at most 24 hours that does not end
/// before it starts, and for trades `fromId` only without a time window.
/// What a history query lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HistoryKind {
    /// `allOrders`: `symbol`, `orderId`.
    Orders,
    /// `myTrades`: `symbol`, `orderId`, `fromId` (a trade id).
    Trades,
    /// `allOrderLists`: no symbol, `fromId` (a list id).
    Lists,
}

fn read_history_query(params: &Params<'_>, kind: HistoryKind) -> Result<HistoryQuery, WsError> {
    let symbol = match kind {
        HistoryKind::Lists => String::new(),
        _ => read_symbol(params)?.to_owned(),
    };
    let order_id = match kind {
        HistoryKind::Lists => None,
        _ => params.opt_u64("orderId", SafeId::MAX)?,
    };
    let from_id = match kind {
        HistoryKind::Orders => None,
        _ => params.opt_u64("fromId", SafeId::MAX)?,
    };
    // Unix ms fit an i64 for the next 292 million years.
    let time = |name: &str| -> Result<Option<i64>, WsError> {
        Ok(params.opt_u64(name, i64::MAX as u64)?.map(|v| v as i64))
    };
    let start_time = time("startTime")?;
    let end_time = time("endTime")?;
    let limit = match params.opt_u64("limit", u64::MAX)? {
        None => HistoryQuery::DEFAULT_LIMIT,
        Some(n) if (1..=HistoryQuery::MAX_LIMIT as u64).contains(&n) => n as usize,
        Some(_) => {
            return Err(WsError::bad_request(
                codes::INVALID_PARAMETER,
                format!(
                    "Invalid data sent for a parameter: 'limit' must be 1 to {}.",
                    HistoryQuery::MAX_LIMIT
                ),
            ))
        }
    };
    if from_id.is_some() && (start_time.is_some() || end_time.is_some()) {
        return Err(WsError::bad_request(
            codes::OPTIONAL_PARAMS_BAD_COMBO,
            "Combination of optional parameters invalid: 'fromId' with 'startTime' or 'endTime'.",
        ));
    }
    if let (Some(s), Some(e)) = (start_time, end_time) {
        if e < s {
            return Err(WsError::bad_request(
                codes::INVALID_PARAMETER,
                "Invalid data sent for a parameter: 'endTime' is before 'startTime'.",
            ));
        }
        if e - s > HistoryQuery::MAX_WINDOW_MS {
            return Err(WsError::bad_request(
                codes::MORE_THAN_XX_HOURS,
                "More than 24 hours between startTime and endTime.",
            ));
        }
    }
    Ok(HistoryQuery {
        symbol,
        order_id,
        from_id,
        start_time,
        end_time,
        limit,
    })
}

/// Reads a new order's parameters and applies the rules that depend on its type.
fn read_order(params: &Params<'_>) -> Result<WsOrder, WsError> {
    let symbol = read_symbol(params)?.to_owned();
    let side = params.req_enum("side", Side::parse, || {
        WsError::bad_request(codes::INVALID_SIDE, "Invalid side.")
    })?;
    let order_type = params.req_enum("type", OrderType::parse, || {
        WsError::bad_request(codes::INVALID_ORDER_TYPE, "Invalid orderType.")
    })?;
    let time_in_force = params.opt_enum("timeInForce", TimeInForce::parse, || {
        WsError::bad_request(codes::INVALID_TIF, "Invalid timeInForce.")
    })?;
    let decimal = |name: &str, required: bool| {
        if required {
            params.req_decimal(name).map(Some)
        } else if params.has(name) {
            Err(WsError::not_required(name))
        } else {
            Ok(None)
        }
    };
    let (price, quantity, quote_order_qty) = match order_type {
        OrderType::Limit
        | OrderType::LimitMaker
        | OrderType::StopLossLimit
        | OrderType::TakeProfitLimit => {
            let needs_tif = order_type != OrderType::LimitMaker;
            if needs_tif != time_in_force.is_some() {
                return Err(if needs_tif {
                    WsError::mandatory("timeInForce")
                } else {
                    tif_not_required()
                });
            }
            let price = decimal("price", true)?;
            let quantity = decimal("quantity", true)?;
            (price, quantity, decimal("quoteOrderQty", false)?)
        }
        OrderType::Market => {
            if time_in_force.is_some() {
                return Err(tif_not_required());
            }
            let price = decimal("price", false)?;
            match (params.has("quantity"), params.has("quoteOrderQty")) {
                (false, false) => {
                    return Err(WsError::either_mandatory("quantity", "quoteOrderQty"))
                }
                (true, true) => return Err(WsError::not_required("quoteOrderQty")),
                (true, false) => (price, decimal("quantity", true)?, None),
                (false, true) => (price, None, decimal("quoteOrderQty", true)?),
            }
        }
        OrderType::StopLoss | OrderType::TakeProfit => {
            if time_in_force.is_some() {
                return Err(tif_not_required());
            }
            let price = decimal("price", false)?;
            (
                price,
                decimal("quantity", true)?,
                decimal("quoteOrderQty", false)?,
            )
        }
    };
    // A trailing stop's stopPrice is optional (its activation price); another trigger order
    // needs one of the two.
    let trailing_delta = params.opt_u64("trailingDelta", u64::from(u32::MAX))?;
    let stop_price = match (order_type.is_triggered(), trailing_delta) {
        (false, Some(_)) => return Err(WsError::not_required("trailingDelta")),
        (true, Some(_)) if params.has("stopPrice") => decimal("stopPrice", true)?,
        (true, Some(_)) => None,
        (true, None) if !params.has("stopPrice") => {
            return Err(WsError::either_mandatory("stopPrice", "trailingDelta"))
        }
        (required, None) => decimal("stopPrice", required)?,
    };
    let iceberg_qty = match order_type {
        OrderType::Limit
        | OrderType::LimitMaker
        | OrderType::StopLossLimit
        | OrderType::TakeProfitLimit
            if params.has("icebergQty") =>
        {
            Some(params.req_decimal("icebergQty")?)
        }
        _ => decimal("icebergQty", false)?,
    };
    let new_client_order_id = params.opt_client_id("newClientOrderId", || {
        WsError::bad_request(codes::EMPTY_NEW_CL_ORD_ID, "New client order ID was empty.")
    })?;
    let resp_type = params
        .opt_enum("newOrderRespType", RespType::parse, || {
            WsError::invalid_value("newOrderRespType")
        })?
        // The dialect's defaults: FULL for MARKET and LIMIT, ACK for the other types.
        .unwrap_or(match order_type {
            OrderType::Limit | OrderType::Market => RespType::Full,
            OrderType::LimitMaker
            | OrderType::StopLoss
            | OrderType::StopLossLimit
            | OrderType::TakeProfit
            | OrderType::TakeProfitLimit => RespType::Ack,
        });
    let stp = params.opt_enum("selfTradePreventionMode", StpMode::parse, || {
        WsError::invalid_value("selfTradePreventionMode")
    })?;
    // The client's tags for its own strategies, kept with the order and repeated in its
    // reports; the types below 1000000 are the venue's.
    let strategy_id = params.opt_u64("strategyId", i64::MAX as u64)?;
    let strategy_type = match params.opt_u64("strategyType", i32::MAX as u64)? {
        Some(t) if t < 1_000_000 => {
            return Err(WsError::bad_request(
                codes::BAD_STRATEGY_TYPE,
                "strategyType was less than 1000000.",
            ))
        }
        t => t.map(|t| t as u32),
    };
    // Unix ms, as far as the engine's nanosecond clock reaches (year 2262).
    let good_till_date = params.opt_u64("goodTillDate", i64::MAX as u64 / 1_000_000)?;
    let good_till_date = match (time_in_force == Some(TimeInForce::Gtd), good_till_date) {
        (true, None) => return Err(WsError::mandatory("goodTillDate")),
        (false, Some(_)) => return Err(WsError::not_required("goodTillDate")),
        (_, t) => t.map(|t| t as i64),
    };
    Ok(WsOrder {
        symbol,
        side,
        order_type,
        time_in_force,
        price,
        quantity,
        quote_order_qty,
        stop_price,
        iceberg_qty,
        new_client_order_id,
        resp_type,
        stp,
        good_till_date,
        trailing_delta,
        strategy: OrderStrategy {
            id: strategy_id,
            kind: strategy_type,
        },
    })
}

fn tif_not_required() -> WsError {
    WsError::bad_request(
        codes::TIF_NOT_REQUIRED,
        "TimeInForce parameter sent when not required.",
    )
}

/// The checks of an order against its symbol: it exists and trades, takes the order's type,
/// STP mode and quote quantity, and the order passes its static filters.
fn check_order(table: &SymbolTable, order: &WsOrder) -> Result<(), WsError> {
    let info = table
        .get(&order.symbol)
        .ok_or_else(WsError::invalid_symbol)?;
    if info.status != SymbolStatus::Trading {
        return Err(WsError::order_rejected("Market is closed."));
    }
    if !info.order_types.contains(&order.order_type) {
        return Err(WsError::order_rejected("Unsupported order combination"));
    }
    if order.quote_order_qty.is_some() && !info.quote_order_qty_market_allowed {
        return Err(WsError::order_rejected(
            "Quote order qty market orders are not support for this symbol.",
        ));
    }
    if order.stp.is_some_and(|m| !info.allowed_stp.contains(&m)) {
        return Err(WsError::invalid_value("selfTradePreventionMode"));
    }
    info.check_order(
        order.order_type,
        order.price.as_ref(),
        order.quantity.as_ref(),
        order.quote_order_qty.as_ref(),
    )?;
    if let (Some(iceberg), Some(qty)) = (&order.iceberg_qty, &order.quantity) {
        // An iceberg rests: good 'til canceled (LIMIT_MAKER is) or, here, good 'til date.
        if order
            .time_in_force
            .is_some_and(|t| !matches!(t, TimeInForce::Gtc | TimeInForce::Gtd))
        {
            return Err(WsError::order_rejected("Iceberg orders must be GTC."));
        }
        info.check_iceberg_qty(iceberg, qty)?;
    }
    if let Some(d) = order.trailing_delta {
        // Above the market once trailing: a buy stop-loss, a sell take-profit.
        let take_profit = matches!(
            order.order_type,
            OrderType::TakeProfit | OrderType::TakeProfitLimit
        );
        info.check_trailing_delta(d, (order.side == Side::Buy) != take_profit)?;
    }
    match &order.stop_price {
        Some(stop) => info.check_stop_price(stop),
        None => Ok(()),
    }
}
