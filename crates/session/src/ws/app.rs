//! What the server plugs into the WebSocket protocol: the application (orders, queries, user
//! data) and the authentication (keys, signatures, lockout, audit).
//!
//! The protocol layer never touches the order pipeline or the key vault: it validates requests
//! and calls these traits with domain values, and the server maps them to the pipeline's
//! commands and the auth crate (DESIGN.md §2: only `server` knows all the crates).

use std::any::Any;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use portcullis_fix::UtcTimestamp;
use tokio::sync::watch;

use super::error::WsError;
use super::signing::SignaturePayload;
use super::symbols::SymbolTable;
use super::types::{
    AccountStatus, AmendOutcome, AmendRequest, CancelReplaceOutcome, CancelReplaceRequest,
    CancelRequest, CancelResult, CommissionRates, ExecutionReport, HistoryQuery, ListStatus,
    OcoRequest, OrderInfo, OrderListInfo, OrderListRef, OrderListResult, OrderRef, OrderResult,
    OtoRequest, PositionInfo, TradeInfo, WsOrder,
};
use super::types::{BookTicker, DepthInfo, PriceTicker};

// ---------------------------------------------------------------------------------------------
// Authentication

/// The dialect's security types: what a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Security {
    /// Public.
    None,
    /// Trading (signed; the key needs the trade permission).
    Trade,
    /// Private account data (signed; the key needs the read permission).
    UserData,
    /// User data stream management (an authenticated connection).
    UserStream,
    /// `session.logon` itself.
    Logon,
}

/// Who a request acts for: an API key the server verified.
#[derive(Clone)]
pub struct Principal {
    /// The key id (`apiKey`).
    pub api_key: String,
    /// The account the key belongs to.
    pub account: String,
    /// The key may trade (`TRADE` methods).
    pub can_trade: bool,
    /// The key may read account data (`USER_DATA` methods).
    pub can_read: bool,
    /// The server's own handle on the credential (for instance the auth crate's verifier,
    /// which knows when the key is revoked); opaque to the protocol layer.
    pub credential: Option<Arc<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("api_key", &self.api_key)
            .field("account", &self.account)
            .field("can_trade", &self.can_trade)
            .field("can_read", &self.can_read)
            .finish_non_exhaustive()
    }
}

/// Why authentication failed. Only these three outcomes reach the client, so it cannot probe
/// which check refused it (the server's audit log has the precise reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The signature matches no accepted payload: -1022.
    #[error("invalid signature")]
    InvalidSignature,
    /// Unknown, revoked or expired key, address not allowed, or permission missing: 401 -2015.
    #[error("key, address or permission not accepted")]
    Rejected,
    /// The key or address is locked out after repeated failures: 429 -1003 with `retryAfter`
    /// (Unix ms) when known, so clients back off.
    #[error("locked out")]
    Locked {
        /// When a new attempt may succeed, Unix ms.
        retry_after_ms: Option<i64>,
    },
}

/// A signed request (or `session.logon`) for the server to verify.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `apiKey`, well-formed (1 to 64 characters of `A-Z a-z 0-9 _ -`).
    pub api_key: &'a str,
    /// `signature` as sent: hex HMAC-SHA256 (any case) or base64 Ed25519.
    pub signature: &'a str,
    /// What the signature must cover: [`SignaturePayload::variants`] (as sent, then
    /// percent-encoded); a match of either is valid, nothing else is.
    pub payload: &'a SignaturePayload,
    /// What the method needs: the key must have the permission.
    pub security: Security,
    /// The method, without `v3/` (for the audit log).
    pub method: &'a str,
    /// The peer's address (allowlists, lockout).
    pub peer: IpAddr,
    /// The server clock. `timestamp` and `recvWindow` were checked already.
    pub now: UtcTimestamp,
}

/// Authentication of WebSocket requests, implemented by the server with the auth crate:
/// lockout, audit and the constant-time signature checks happen there.
pub trait WsAuth: Send + Sync + 'static {
    /// Verifies a request that carries its own `apiKey` and `signature`.
    fn verify_request(&self, req: &SignedRequest<'_>) -> Result<Principal, AuthError>;

    /// Verifies `session.logon`: the connection then acts for the returned principal until
    /// `session.logout`, another logon, or revocation. Ed25519 keys sign as the dialect has it
    /// (base64); HMAC keys (our extension) sign with hex, as for any request.
    fn session_logon(&self, req: &SignedRequest<'_>) -> Result<Principal, AuthError>;

    /// True once `principal`'s key no longer holds (revoked, expired, removed, address no longer
    /// allowed): the connection loses its authentication at once.
    fn revoked(&self, principal: &Principal, now: UtcTimestamp) -> bool;

    /// Authenticates a connection by the OAuth 2.0 bearer token of its upgrade request
    /// (`Authorization: Bearer`): the connection then acts for the returned principal as after
    /// `session.logon`, and [`WsAuth::revoked`] is asked before every request. An error refuses
    /// the upgrade (401). The default accepts no bearer token.
    fn bearer_logon(
        &self,
        _token: &str,
        _peer: IpAddr,
        _now: UtcTimestamp,
    ) -> Result<Principal, AuthError> {
        Err(AuthError::Rejected)
    }

    /// A value that changes whenever credentials may have been revoked: connections then check
    /// their principal at once instead of at their next periodic check. `None`: no such
    /// signal.
    fn revocations(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// The connection logged out (`session.logout`, another logon, or the connection ended).
    fn session_closed(&self, _principal: &Principal) {}
}

// ---------------------------------------------------------------------------------------------
// Application

/// Identifies one request the application answers later ([`AppOutput::Complete`],
/// [`crate::ws::WsSession::complete`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestToken(pub(crate) u64);

impl RequestToken {
    /// The token's number (unique per connection).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The context of an authenticated request.
#[derive(Debug, Clone, Copy)]
pub struct RequestCtx<'a> {
    /// Completes the request later, if the application answers [`Dispatch::Pending`].
    pub token: RequestToken,
    /// Who the request acts for.
    pub principal: &'a Principal,
    /// The server clock when the request arrived.
    pub now: UtcTimestamp,
}

/// An application's answer: now, or later through [`AppOutput::Complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch<T> {
    /// The answer.
    Ready(Result<T, WsError>),
    /// The answer comes later, with the request's token. If it does not come within the
    /// session's `pending_timeout`, the client gets -1007 (execution status unknown).
    Pending,
}

/// A late answer, for the method of the request it completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `order.place`.
    Placed(OrderResult),
    /// `order.status`.
    Order(OrderInfo),
    /// `order.cancel`.
    Canceled(CancelResult),
    /// `order.cancelReplace` (boxed: it holds two results).
    CancelReplaced(Box<CancelReplaceOutcome>),
    /// `order.amend.keepPriority`.
    Amended(Box<AmendOutcome>),
    /// `openOrders.status`.
    OpenOrders(Vec<OrderInfo>),
    /// `openOrders.cancelAll`.
    CanceledAll(Vec<CancelResult>),
    /// `account.status`.
    Account(AccountStatus),
    /// `allOrders`.
    Orders(Vec<OrderInfo>),
    /// `myTrades`.
    Trades(Vec<TradeInfo>),
    /// `orderList.place.oco`.
    OrderList(Box<OrderListResult>),
    /// `orderList.status` and `orderList.cancel`.
    OrderListInfo(Box<OrderListInfo>),
    /// `openOrderLists.status`.
    OrderLists(Vec<OrderListInfo>),
    /// `account.position`.
    Positions(Vec<PositionInfo>),
    /// `depth`.
    Depth(Box<DepthInfo>),
    /// `ticker.book`.
    BookTicker(Box<BookTicker>),
    /// `ticker.price`.
    PriceTicker(Box<PriceTicker>),
}

impl From<PriceTicker> for Outcome {
    fn from(v: PriceTicker) -> Self {
        Outcome::PriceTicker(Box::new(v))
    }
}

impl From<BookTicker> for Outcome {
    fn from(v: BookTicker) -> Self {
        Outcome::BookTicker(Box::new(v))
    }
}

impl From<DepthInfo> for Outcome {
    fn from(v: DepthInfo) -> Self {
        Outcome::Depth(Box::new(v))
    }
}

impl From<Vec<PositionInfo>> for Outcome {
    fn from(v: Vec<PositionInfo>) -> Self {
        Outcome::Positions(v)
    }
}

impl From<OrderListInfo> for Outcome {
    fn from(v: OrderListInfo) -> Self {
        Outcome::OrderListInfo(Box::new(v))
    }
}
impl From<Vec<OrderListInfo>> for Outcome {
    fn from(v: Vec<OrderListInfo>) -> Self {
        Outcome::OrderLists(v)
    }
}
impl From<OrderListResult> for Outcome {
    fn from(v: OrderListResult) -> Self {
        Outcome::OrderList(Box::new(v))
    }
}
impl From<OrderResult> for Outcome {
    fn from(v: OrderResult) -> Self {
        Outcome::Placed(v)
    }
}
impl From<OrderInfo> for Outcome {
    fn from(v: OrderInfo) -> Self {
        Outcome::Order(v)
    }
}
impl From<CancelResult> for Outcome {
    fn from(v: CancelResult) -> Self {
        Outcome::Canceled(v)
    }
}
impl From<CancelReplaceOutcome> for Outcome {
    fn from(v: CancelReplaceOutcome) -> Self {
        Outcome::CancelReplaced(Box::new(v))
    }
}
impl From<AmendOutcome> for Outcome {
    fn from(v: AmendOutcome) -> Self {
        Outcome::Amended(Box::new(v))
    }
}
impl From<Vec<OrderInfo>> for Outcome {
    fn from(v: Vec<OrderInfo>) -> Self {
        Outcome::OpenOrders(v)
    }
}
impl From<Vec<CancelResult>> for Outcome {
    fn from(v: Vec<CancelResult>) -> Self {
        Outcome::CanceledAll(v)
    }
}
impl From<Vec<TradeInfo>> for Outcome {
    fn from(v: Vec<TradeInfo>) -> Self {
        Outcome::Trades(v)
    }
}
impl From<AccountStatus> for Outcome {
    fn from(v: AccountStatus) -> Self {
        Outcome::Account(v)
    }
}

/// Output the application produces between requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppOutput {
    /// The answer to a request answered [`Dispatch::Pending`].
    Complete {
        /// The request.
        token: RequestToken,
        /// The answer.
        result: Result<Outcome, WsError>,
    },
    /// An order event for the user data stream (sent only while the connection subscribes).
    ExecutionReport(ExecutionReport),
    /// An order list event for the user data stream (sent only while the connection
    /// subscribes).
    ListStatus(ListStatus),
    /// The connection must end (e.g. the account was halted); the text goes to the log.
    Close(String),
}

/// One connection's application: the server's bridge to the order pipeline. Called on the
/// connection's task with requests the session has parsed, validated and authenticated.
///
/// Methods answer at once ([`Dispatch::Ready`]) or later ([`Dispatch::Pending`], then
/// [`AppOutput::Complete`] from [`WsApplication::take_output`]); the transport calls
/// [`WsApplication::take_output`] whenever [`WsApplication::poll_output`] is ready.
pub trait WsApplication: Send {
    /// The instruments now (for `exchangeInfo` and order validation).
    fn symbols(&self) -> Arc<SymbolTable>;

    /// `order.place`: the order is validated (see [`WsOrder`]) and counted in the account's
    /// order rate limits. Reject with [`WsError::order_rejected`] (-2010, the risk reason in
    /// the message) or [`WsError::filter_failure`] (-1013).
    fn order_place(&mut self, ctx: &RequestCtx<'_>, order: &WsOrder) -> Dispatch<OrderResult>;

    /// `orderList.place.oco`: both orders validated as `order.place`'s and counted (two) in
    /// the order rate limits. By default -1020 (not supported).
    fn order_list_place_oco(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _list: &OcoRequest,
    ) -> Dispatch<OrderListResult> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// `orderList.place.oto` and `orderList.place.otoco`: every order validated as
    /// `order.place`'s and counted in the order rate limits. By default -1020 (not supported).
    fn order_list_place_oto(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _list: &OtoRequest,
    ) -> Dispatch<OrderListResult> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// `orderList.status`: one of the connection's order lists. By default -1020.
    fn order_list_status(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _list: &OrderListRef,
    ) -> Dispatch<OrderListInfo> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// `openOrderLists.status`: the connection's order lists with an open order. By default
    /// -1020.
    fn open_order_lists_status(&mut self, _ctx: &RequestCtx<'_>) -> Dispatch<Vec<OrderListInfo>> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// `orderList.cancel` of a list of `symbol`: every open order of it is cancelled; the
    /// answer has their cancel reports. By default -1020.
    fn order_list_cancel(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _symbol: &str,
        _list: &OrderListRef,
    ) -> Dispatch<OrderListInfo> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// `order.test`: the same checks as `order.place` without placing anything.
    fn order_test(&mut self, _ctx: &RequestCtx<'_>, _order: &WsOrder) -> Result<(), WsError> {
        Ok(())
    }

    /// `order.status`.
    fn order_status(&mut self, ctx: &RequestCtx<'_>, order: &OrderRef) -> Dispatch<OrderInfo>;

    /// `order.cancel`: reject with [`WsError::cancel_rejected`] (-2011).
    fn order_cancel(
        &mut self,
        ctx: &RequestCtx<'_>,
        cancel: &CancelRequest,
    ) -> Dispatch<CancelResult>;

    /// `order.cancelReplace` (counted in the order rate limits like a new order).
    fn order_cancel_replace(
        &mut self,
        ctx: &RequestCtx<'_>,
        request: &CancelReplaceRequest,
    ) -> Dispatch<CancelReplaceOutcome>;

    /// `order.amend.keepPriority`: reduce the order's quantity keeping its price and priority;
    /// reject with [`WsError::amend_rejected`] (-2038) or [`WsError::no_such_order`] (-2013).
    /// By default -1020 (not supported).
    fn order_amend_keep_priority(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _request: &AmendRequest,
    ) -> Dispatch<AmendOutcome> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// `openOrders.status`, for one symbol or all.
    fn open_orders_status(
        &mut self,
        ctx: &RequestCtx<'_>,
        symbol: Option<&str>,
    ) -> Dispatch<Vec<OrderInfo>>;

    /// `openOrders.cancelAll` on one symbol.
    fn open_orders_cancel_all(
        &mut self,
        ctx: &RequestCtx<'_>,
        symbol: &str,
    ) -> Dispatch<Vec<CancelResult>>;

    /// `allOrders`: the account's orders of one symbol, open and ended, oldest first. By
    /// default -1020 (not supported): an application that keeps no history.
    fn all_orders(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _query: &HistoryQuery,
    ) -> Dispatch<Vec<OrderInfo>> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// `allOrderLists`: the account's order lists (`from_id`, `start_time`, `end_time`,
    /// `limit` of `query`; no symbol), oldest first. By default -1020 (not supported).
    fn all_order_lists(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _query: &HistoryQuery,
    ) -> Dispatch<Vec<OrderListInfo>> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// `myTrades`: the account's trades of one symbol, oldest first. By default -1020 (not
    /// supported).
    fn my_trades(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _query: &HistoryQuery,
    ) -> Dispatch<Vec<TradeInfo>> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// The account's commission rates on `symbol` (`account.commission`, `order.test` with
    /// `computeCommissionRates`). By default -1020 (not supported).
    fn commission_rates(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _symbol: &str,
    ) -> Result<CommissionRates, WsError> {
        Err(WsError::unsupported())
    }

    /// `depth`: the best `limit` levels a side of `symbol`'s book (the session has checked
    /// it is listed). By default -1020 (not supported).
    fn depth(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _symbol: &str,
        _limit: usize,
    ) -> Dispatch<DepthInfo> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// `ticker.price`: `symbol`'s last trade price (the session has checked it is listed).
    /// By default -1020 (not supported).
    fn ticker_price(&mut self, _ctx: &RequestCtx<'_>, _symbol: &str) -> Dispatch<PriceTicker> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// `ticker.book`: `symbol`'s best bid and offer (the session has checked it is listed).
    /// By default -1020 (not supported).
    fn ticker_book(&mut self, _ctx: &RequestCtx<'_>, _symbol: &str) -> Dispatch<BookTicker> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// `account.position`: the account's net positions (in `symbol` only, if given; the
    /// session has checked it is listed). By default -1020 (not supported).
    fn account_positions(
        &mut self,
        _ctx: &RequestCtx<'_>,
        _symbol: Option<&str>,
    ) -> Dispatch<Vec<PositionInfo>> {
        Dispatch::Ready(Err(WsError::unsupported()))
    }

    /// `account.status`; with `omit_zero_balances`, only non-zero balances.
    fn account_status(
        &mut self,
        ctx: &RequestCtx<'_>,
        omit_zero_balances: bool,
    ) -> Dispatch<AccountStatus>;

    /// The user data stream: `Some(principal)` starts sending that account's execution reports
    /// ([`AppOutput::ExecutionReport`]), `None` stops.
    fn user_data_stream(&mut self, principal: Option<&Principal>) -> Result<(), WsError>;

    /// Ready when [`WsApplication::take_output`] has something; otherwise arranges for the
    /// task to be woken when it has.
    fn poll_output(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }

    /// Moves pending output into `out`.
    fn take_output(&mut self, _out: &mut Vec<AppOutput>) {}

    /// The connection ended (cancel-on-disconnect goes here).
    fn on_close(&mut self) {}
}
