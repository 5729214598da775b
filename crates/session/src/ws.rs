//! The WebSocket API for algo trading firms: the Binance Spot WebSocket API (ws-api v3)
//! dialect, so that client code and libraries written for it work by changing the URL.
//!
//! - [`protocol`]: the session as a sans-IO state machine ([`WsSession`]): envelope, rate
//!   limits, parameter validation, signed requests and `session.logon`, dispatch to the
//!   [`WsApplication`], answers and user data events.
//! - [`signing`]: the signature payload (the dialect's documented example is a test) and the
//!   `timestamp`/`recvWindow` rule.
//! - [`app`]: the traits the server implements: [`WsApplication`] (the order pipeline) and
//!   [`WsAuth`] (keys, signatures, lockout, audit).
//! - [`types`], [`symbols`], [`decimal`]: the domain values, instruments and their filters,
//!   exact decimals.
//! - [`ratelimit`]: the dialect's request-weight, order and connection limits.
//! - [`transport`]: tokio-tungstenite over rustls TLS 1.3 on `/ws-api/v3`.
//! - [`error`]: the dialect's error codes.

pub mod app;
pub mod decimal;
pub mod error;
mod json;
mod params;
pub mod protocol;
pub mod ratelimit;
mod render;
pub mod signing;
pub mod symbols;
pub mod transport;
pub mod types;

pub use app::{
    AppOutput, AuthError, Dispatch, Outcome, Principal, RequestCtx, RequestToken, Security,
    SignedRequest, WsApplication, WsAuth,
};
pub use decimal::{Decimal, DecimalError};
pub use error::{codes, WsError};
pub use protocol::{Method, WsDisconnect, WsEvent, WsSession, WsSessionConfig};
pub use ratelimit::{ConnectRefused, RateLimitConfig, RateLimiter};
pub use signing::SignaturePayload;
pub use symbols::{SymbolFilter, SymbolInfo, SymbolTable};
pub use transport::{
    WsAppFactory, WsConnectionInfo, WsListener, WsListenerConfig, WsTraffic, WsTransportError,
};
pub use types::*;

#[cfg(test)]
mod tests;
