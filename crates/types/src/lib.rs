//! The trading domain values of Portcullis.
//!
//! These are the small, fixed-size, `Copy` values that cross threads on the hot path (commands
//! into the core thread, events out of it): no heap allocation, no `String`, no `f64`. Prices
//! and quantities are fixed-point integers in the instrument's scale, parsed exactly from
//! decimal text.
//!
//! They live in their own crate because both `risk` (which proves an order was checked) and
//! `engine` (which only accepts checked orders) need them, and neither may depend on the other's
//! internals.
#![warn(missing_docs)]

mod decimal;
mod hint;
mod ids;
mod instrument;
mod order;
pub mod snapshot;

pub use decimal::{format_fixed, parse_fixed, DecimalError, Price, Qty};
pub use hint::prefetch;
pub use ids::{AccountId, ClOrdId, ClOrdIdError, InstrumentId, OrderId, SessionId, TradeId};
pub use instrument::{
    InstrumentKind, InstrumentRules, InstrumentRulesError, InstrumentStatus, UnderlyingId,
};
pub use order::{
    CancelOrder, Command, Event, EventKind, MassCancel, NewOrder, OrdType, OrderDetails,
    RejectReason, ReplaceOrder, RouteRequest, Side, StpMode, TimeInForce, TrailingDelta,
    TriggerDirection, VenueReport, VenueReportKind,
};
