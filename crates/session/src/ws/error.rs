//! Errors as the dialect reports them: an HTTP-like `status`, a negative `code` and a `msg`.
//!
//! Codes are the dialect's and stable (clients branch on them); messages follow the dialect's
//! wording where it has one, and never reveal which authentication check failed.

use std::borrow::Cow;

/// The dialect's error codes used by Portcullis.
pub mod codes {
    /// An unknown error occurred while processing the request.
    pub const UNKNOWN: i32 = -1000;
    /// You are not authorized to execute this request.
    pub const UNAUTHORIZED: i32 = -1002;
    /// Too many requests (request weight, queued requests, or a ban).
    pub const TOO_MANY_REQUESTS: i32 = -1003;
    /// Timeout waiting for the backend; execution status unknown.
    pub const TIMEOUT: i32 = -1007;
    /// Server busy.
    pub const SERVER_BUSY: i32 = -1008;
    /// Rejected before reaching the matching engine (filter failures and the like).
    pub const INVALID_MESSAGE: i32 = -1013;
    /// Too many new orders.
    pub const TOO_MANY_ORDERS: i32 = -1015;
    /// The service is shutting down.
    pub const SERVICE_SHUTTING_DOWN: i32 = -1016;
    /// This operation is not supported.
    pub const UNSUPPORTED_OPERATION: i32 = -1020;
    /// Timestamp outside of the recvWindow, or ahead of the server's time.
    pub const INVALID_TIMESTAMP: i32 = -1021;
    /// Signature for this request is not valid.
    pub const INVALID_SIGNATURE: i32 = -1022;
    /// Illegal characters found in a parameter.
    pub const ILLEGAL_CHARS: i32 = -1100;
    /// Too many parameters, or a parameter sent twice.
    pub const TOO_MANY_PARAMETERS: i32 = -1101;
    /// A mandatory parameter was not sent, was empty/null, or malformed.
    pub const MANDATORY_PARAM_EMPTY_OR_MALFORMED: i32 = -1102;
    /// An unknown parameter was sent.
    pub const UNKNOWN_PARAM: i32 = -1103;
    /// Not all sent parameters were read.
    pub const UNREAD_PARAMETERS: i32 = -1104;
    /// A parameter was empty.
    pub const PARAM_EMPTY: i32 = -1105;
    /// A parameter was sent when not required.
    pub const PARAM_NOT_REQUIRED: i32 = -1106;
    /// A parameter overflowed.
    pub const PARAM_OVERFLOW: i32 = -1108;
    /// A parameter has too much precision.
    pub const BAD_PRECISION: i32 = -1111;
    /// TimeInForce parameter sent when not required.
    pub const TIF_NOT_REQUIRED: i32 = -1114;
    /// Invalid timeInForce.
    pub const INVALID_TIF: i32 = -1115;
    /// Invalid orderType.
    pub const INVALID_ORDER_TYPE: i32 = -1116;
    /// Invalid side.
    pub const INVALID_SIDE: i32 = -1117;
    /// New client order ID was empty.
    pub const EMPTY_NEW_CL_ORD_ID: i32 = -1118;
    /// Original client order ID was empty.
    pub const EMPTY_ORG_CL_ORD_ID: i32 = -1119;
    /// Invalid symbol.
    pub const BAD_SYMBOL: i32 = -1121;
    /// Invalid symbolStatus.
    pub const INVALID_SYMBOL_STATUS: i32 = -1122;
    /// The time window of a history request is longer than 24 hours.
    pub const MORE_THAN_XX_HOURS: i32 = -1127;
    /// Combination of optional parameters invalid.
    pub const OPTIONAL_PARAMS_BAD_COMBO: i32 = -1128;
    /// Invalid data sent for a parameter.
    pub const INVALID_PARAMETER: i32 = -1130;
    /// `strategyType` below 1000000 (the values below are the venue's own).
    pub const BAD_STRATEGY_TYPE: i32 = -1134;
    /// Invalid JSON.
    pub const INVALID_JSON: i32 = -1135;
    /// Invalid cancelRestrictions.
    pub const INVALID_CANCEL_RESTRICTIONS: i32 = -1145;
    /// Symbol is present multiple times in the list.
    pub const DUPLICATE_SYMBOLS: i32 = -1151;
    /// New order rejected (the reason is in `msg`).
    pub const NEW_ORDER_REJECTED: i32 = -2010;
    /// Cancel rejected (the reason is in `msg`).
    pub const CANCEL_REJECTED: i32 = -2011;
    /// Order does not exist.
    pub const NO_SUCH_ORDER: i32 = -2013;
    /// API-key format invalid.
    pub const BAD_API_KEY_FMT: i32 = -2014;
    /// Invalid API-key, IP, or permissions for action.
    pub const REJECTED_MBX_KEY: i32 = -2015;
    /// Order cancel-replace partially failed.
    pub const CANCEL_REPLACE_PARTIAL: i32 = -2021;
    /// Order cancel-replace failed.
    pub const CANCEL_REPLACE_FAILED: i32 = -2022;
    /// Order amend (keep priority) rejected.
    pub const ORDER_AMEND_REJECTED: i32 = -2038;
}

/// Extra detail of an error: the `data` member of the error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ErrorData {
    /// Rate-limit answers (429 and 418): when the client may retry, Unix ms.
    RetryAfter { server_time: i64, retry_after: i64 },
    /// JSON written by this crate (the cancel-replace report).
    Json(String),
}

/// An error answer: `{"code": …, "msg": …}` with the response's `status`.
///
/// Applications build them with the constructors ([`WsError::order_rejected`],
/// [`WsError::filter_failure`], …) or [`WsError::new`]; the session renders them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status {status}, code {code}: {msg}")]
pub struct WsError {
    status: u16,
    code: i32,
    msg: Cow<'static, str>,
    data: Option<ErrorData>,
}

impl WsError {
    /// An error with an HTTP-like `status` (400, 401, 403, 409, 418, 429, 5xx), a dialect
    /// `code` (see [`codes`]) and a message.
    pub fn new(status: u16, code: i32, msg: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            msg: msg.into(),
            data: None,
        }
    }

    /// Status 400 with `code`.
    pub fn bad_request(code: i32, msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, code, msg)
    }

    /// The error with each parameter name `'from'` in its message written `'to'` (an order
    /// list's `price` error is its `abovePrice`'s).
    pub(crate) fn renamed(mut self, names: &[(&str, &str)]) -> Self {
        for (to, from) in names {
            let quoted = format!("'{from}'");
            if self.msg.contains(&quoted) {
                self.msg = self.msg.replace(&quoted, &format!("'{to}'")).into();
            }
        }
        self
    }

    /// The response's status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The dialect's error code.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The message.
    pub fn msg(&self) -> &str {
        &self.msg
    }

    /// Adds `"data": {"serverTime", "retryAfter"}` (Unix ms), as rate-limit answers carry.
    pub fn with_retry_after(mut self, server_time_ms: i64, retry_after_ms: i64) -> Self {
        self.data = Some(ErrorData::RetryAfter {
            server_time: server_time_ms,
            retry_after: retry_after_ms,
        });
        self
    }

    pub(crate) fn with_json_data(mut self, json: String) -> Self {
        self.data = Some(ErrorData::Json(json));
        self
    }

    pub(crate) fn data(&self) -> Option<&ErrorData> {
        self.data.as_ref()
    }

    /// -1000, status 500: something failed inside the server.
    pub fn unknown() -> Self {
        Self::new(
            500,
            codes::UNKNOWN,
            "An unknown error occurred while processing the request.",
        )
    }

    /// -1007, status 503: no answer from the backend in time; execution status unknown.
    pub fn timeout() -> Self {
        Self::new(
            503,
            codes::TIMEOUT,
            "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
        )
    }

    /// -1008, status 503: the server cannot take the request now (a full queue).
    pub fn server_busy() -> Self {
        Self::new(
            503,
            codes::SERVER_BUSY,
            "Server is currently overloaded with other requests. Please try again in a few minutes.",
        )
    }

    /// -1013 `Filter failure: NAME` (`PRICE_FILTER`, `LOT_SIZE`, `PERCENT_PRICE`, `NOTIONAL`,
    /// `MAX_NUM_ORDERS`, ...).
    pub fn filter_failure(filter: &str) -> Self {
        Self::bad_request(codes::INVALID_MESSAGE, format!("Filter failure: {filter}"))
    }

    /// -1015, status 429: the account's order rate limit.
    pub fn too_many_orders(limit: u32, interval: &str) -> Self {
        Self::new(
            429,
            codes::TOO_MANY_ORDERS,
            format!("Too many new orders; current limit is {limit} orders per {interval}."),
        )
    }

    /// -1121 Invalid symbol.
    pub fn invalid_symbol() -> Self {
        Self::bad_request(codes::BAD_SYMBOL, "Invalid symbol.")
    }

    /// -2010: the new order was rejected; `reason` says why (a risk check, `Duplicate order
    /// sent.`, `Market is closed.`, ...).
    pub fn order_rejected(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::bad_request(codes::NEW_ORDER_REJECTED, reason)
    }

    /// -2011: the cancel was rejected; `reason` says why (`Unknown order sent.`, ...).
    pub fn cancel_rejected(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::bad_request(codes::CANCEL_REJECTED, reason)
    }

    /// -2038: an `order.amend.keepPriority` was rejected; `reason` says why.
    pub fn amend_rejected(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::bad_request(codes::ORDER_AMEND_REJECTED, reason)
    }

    /// -2013 Order does not exist.
    pub fn no_such_order() -> Self {
        Self::bad_request(codes::NO_SUCH_ORDER, "Order does not exist.")
    }

    /// -2015, status 401: the key is unknown, revoked or expired, the peer's address is not
    /// allowed, or the key lacks the permission.
    pub fn rejected_key() -> Self {
        Self::new(
            401,
            codes::REJECTED_MBX_KEY,
            "Invalid API-key, IP, or permissions for action.",
        )
    }

    /// -1022 Signature for this request is not valid.
    pub fn invalid_signature() -> Self {
        Self::bad_request(
            codes::INVALID_SIGNATURE,
            "Signature for this request is not valid.",
        )
    }

    /// -1020 This operation is not supported.
    pub fn unsupported() -> Self {
        Self::bad_request(
            codes::UNSUPPORTED_OPERATION,
            "This operation is not supported.",
        )
    }

    // --- Parameter errors with the dialect's wording ------------------------------------------

    pub(crate) fn mandatory(name: &str) -> Self {
        Self::bad_request(
            codes::MANDATORY_PARAM_EMPTY_OR_MALFORMED,
            format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
        )
    }

    pub(crate) fn either_mandatory(a: &str, b: &str) -> Self {
        Self::bad_request(
            codes::MANDATORY_PARAM_EMPTY_OR_MALFORMED,
            format!("Param '{a}' or '{b}' must be sent, but both were empty/null!"),
        )
    }

    pub(crate) fn illegal_chars(name: &str, legal: &str) -> Self {
        Self::bad_request(
            codes::ILLEGAL_CHARS,
            format!("Illegal characters found in parameter '{name}'; legal range is '{legal}'."),
        )
    }

    pub(crate) fn empty(name: &str) -> Self {
        Self::bad_request(codes::PARAM_EMPTY, format!("Parameter '{name}' was empty."))
    }

    pub(crate) fn not_required(name: &str) -> Self {
        Self::bad_request(
            codes::PARAM_NOT_REQUIRED,
            format!("Parameter '{name}' sent when not required."),
        )
    }

    pub(crate) fn invalid_value(name: &str) -> Self {
        Self::bad_request(
            codes::INVALID_PARAMETER,
            format!("Data sent for parameter '{name}' is not valid."),
        )
    }

    pub(crate) fn overflow(name: &str) -> Self {
        Self::bad_request(
            codes::PARAM_OVERFLOW,
            format!("Parameter '{name}' overflowed."),
        )
    }

    pub(crate) fn too_precise(name: &str) -> Self {
        Self::bad_request(
            codes::BAD_PRECISION,
            format!("Parameter '{name}' has too much precision."),
        )
    }

    pub(crate) fn unread(read: usize, sent: usize) -> Self {
        Self::bad_request(
            codes::UNREAD_PARAMETERS,
            format!("Not all sent parameters were read; read '{read}' parameter(s) but was sent '{sent}'."),
        )
    }

    pub(crate) fn duplicate_param() -> Self {
        Self::bad_request(
            codes::TOO_MANY_PARAMETERS,
            "Duplicate values for a parameter detected.",
        )
    }

    pub(crate) fn bad_combo() -> Self {
        Self::bad_request(
            codes::OPTIONAL_PARAMS_BAD_COMBO,
            "Combination of optional parameters invalid.",
        )
    }
}
