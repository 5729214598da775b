//! End-to-end tests: the real `portcullis` binary, real sockets, real files.

mod harness;

mod admin;
mod at_rest;
mod auth;
mod binance_interop;
mod config_errors;
mod crash;
mod drop_copy;
mod fix_session;
mod hostile;
mod interop;
mod liabilities;
mod metrics;
mod pipeline;
mod quotes;
mod readme;
mod restart;
mod tls;
mod venue;
mod ws;
