//! The matching side of Portcullis' core thread.
//!
//! - [`instruments`]: the instrument table, the one symbol format ([`symbol`]), option series
//!   listed from rules relative to the current time, and expiry.
//! - [`book`]: one price-time priority order book per instrument and the matching engine
//!   ([`Matcher`]): limit and market orders, GTC/IOC/FOK/Day/GTD, post-only, cancel,
//!   cancel/replace and self-trade prevention, without heap allocation per order.
//! - [`core`]: the single-writer command processor ([`Core`]) that owns the risk engine, the
//!   instrument table and every book, turns [`Command`](portcullis_types::Command)s into
//!   [`Event`](portcullis_types::Event)s and keeps the risk state in step with the books.
#![warn(missing_docs)]

pub mod book;
pub mod core;
pub mod instruments;
mod orders;
pub mod symbol;

pub use crate::core::{
    Core, CoreError, EngineConfig, OrderRef, Position, ALL_INSTRUMENTS, MAX_DEPTH_ORDERS,
};
pub use book::{
    Depth, Feedback, IdCounters, LevelView, Matcher, MatcherConfig, OrderBook, OrderHandle,
    OrderSnapshot, MAX_ID,
};
pub use instruments::{
    ConfigDecimal, ExpiryRule, InstrumentConfig, InstrumentConfigError, Instruments,
    InstrumentsConfig, ListedStatus, OptionSeriesConfig, Roll, StrikeGrid,
};
pub use symbol::{ExpiryDate, Symbol, SymbolError, SymbolKind};
