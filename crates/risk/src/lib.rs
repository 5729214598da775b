//! Pre-trade risk checks of Portcullis (DESIGN.md §3: throttle → validate → **risk** → match).
//!
//! One [`RiskEngine`] is owned by the core thread, which also owns the order books: the checks
//! need no locks, and replaying the journal through them reproduces every decision. The
//! per-order methods neither allocate nor make system calls; amounts are exact integers
//! (`i128` at 18 decimals, see [`Decimal`]), never `f64`.
//!
//! A passed check is proof-carrying: only this crate can make a [`RiskChecked<T>`], and the
//! engine's book accepts only `RiskChecked<NewOrder>` / `RiskChecked<ReplaceOrder>`, so a path
//! that skips risk does not compile:
//!
//! ```compile_fail
//! # use portcullis_risk::RiskChecked;
//! # fn forge(o: portcullis_types::NewOrder) {
//! let forged = RiskChecked(o); // error: the field is private
//! # }
//! ```
//!
//! The engine keeps the risk state in step with its books through [`RiskEngine::on_fill`],
//! [`RiskEngine::on_order_closed`] and [`RiskEngine::on_replaced`] (see the protocol on
//! [`RiskEngine`]); instrument rules come from [`portcullis_types::InstrumentRules`], the same
//! table the engine lists and expires.
#![warn(missing_docs)]
// The one cache hint the tables use is portcullis_types::prefetch.
#![forbid(unsafe_code)]

mod config;
mod decimal;
mod engine;
mod tables;
mod throttle;

#[cfg(test)]
mod tests;

pub use config::{AbuseRule, AccountLimits, AccountLimitsOverride, ConfigError, RiskConfig};
pub use decimal::{Decimal, DecimalParseError};
pub use engine::{RiskEngine, MAX_INSTRUMENTS};

use portcullis_types::{AccountId, InstrumentId, NewOrder, Price, Qty, Side};

/// Proof that a `T` passed the risk checks (and that its reservation was made). Only this
/// crate constructs it; it is neither `Clone` nor `Copy`, so one check admits one order:
///
/// ```compile_fail
/// # fn twice(c: portcullis_risk::RiskChecked<portcullis_types::NewOrder>) {
/// let again = c.clone(); // error: no method `clone`
/// # }
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a checked order holds a reservation: hand it to the engine or release it"]
pub struct RiskChecked<T>(T);

impl<T> RiskChecked<T> {
    pub(crate) fn new(v: T) -> Self {
        Self(v)
    }

    /// The checked value.
    pub fn get(&self) -> &T {
        &self.0
    }

    /// The checked value, giving up the proof.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// A working order as the engine holds it: what the risk checks need to check a replace and
/// to release reservations. `price` is the order's limit price — for a market order, the
/// `price` of its `RiskChecked<NewOrder>` (the price its reservation was made at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingOrder {
    /// The account.
    pub account: AccountId,
    /// The instrument.
    pub instrument: InstrumentId,
    /// Buy or sell.
    pub side: Side,
    /// Limit price (the reserved price for a market order).
    pub price: Price,
    /// Total quantity.
    pub qty: Qty,
    /// Filled so far.
    pub cum_qty: Qty,
}

impl WorkingOrder {
    /// The working order of a just-checked new order (nothing filled yet).
    pub fn from_checked(order: &RiskChecked<NewOrder>) -> Self {
        let o = order.get();
        Self {
            account: o.account,
            instrument: o.instrument,
            side: o.side,
            price: o.price,
            qty: o.qty,
            cum_qty: Qty::ZERO,
        }
    }

    /// Quantity still open (`qty − cum_qty`, never negative).
    pub fn leaves(&self) -> Qty {
        Qty(self.qty.0.saturating_sub(self.cum_qty.0).max(0))
    }
}
