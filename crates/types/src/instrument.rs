//! Instrument trading rules shared by the risk checks and the matching engine.
//!
//! The engine owns the instrument table (it lists option series from config and expires them);
//! the risk crate keeps its own copy of each instrument's [`InstrumentRules`], fed by the core
//! thread through `RiskEngine::add_instrument` / `set_status`, so both agree on tick, lot,
//! quantity bounds, multiplier and status without sharing mutable state.
//!
//! Units: a [`Price`] is in `10^-price_scale` quote units, a [`Qty`] in `10^-qty_scale`
//! contracts (or base units for spot). The notional of `qty` at `price` in quote units is
//! `price × qty × multiplier / 10^(price_scale + qty_scale)`; compute it in `i128`, never `f64`.

use crate::{InstrumentId, Price, Qty};

/// An underlying asset (e.g. BTC), by its index in the server's underlying table. Position
/// limits per underlying add up every instrument that shares one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnderlyingId(pub u32);

impl std::fmt::Display for UnderlyingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether an instrument accepts orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InstrumentStatus {
    /// Open for trading.
    #[default]
    Trading,
    /// Temporarily halted by the operator: new orders and replaces are rejected; cancels are
    /// still accepted.
    Halted,
    /// Past expiry: never trades again. The engine cancels its resting orders (with a report)
    /// when it switches an instrument to this status.
    Expired,
}

/// What kind of contract an instrument is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstrumentKind {
    /// A European option.
    Option {
        /// What it is an option on.
        underlying: UnderlyingId,
        /// Expiry instant, ms since the Unix epoch (UTC).
        expiry_ms: i64,
        /// Strike price, in the option's own price scale.
        strike: Price,
        /// True for a call, false for a put.
        call: bool,
    },
    /// A dated future.
    Future {
        /// What it is a future on.
        underlying: UnderlyingId,
        /// Expiry instant, ms since the Unix epoch (UTC).
        expiry_ms: i64,
    },
    /// A perpetual swap (no expiry).
    Perpetual {
        /// What it tracks.
        underlying: UnderlyingId,
    },
    /// A spot pair; the underlying is the base asset.
    Spot {
        /// The base asset.
        underlying: UnderlyingId,
    },
}

impl InstrumentKind {
    /// The underlying (the base asset for spot).
    pub fn underlying(&self) -> UnderlyingId {
        match *self {
            InstrumentKind::Option { underlying, .. }
            | InstrumentKind::Future { underlying, .. }
            | InstrumentKind::Perpetual { underlying }
            | InstrumentKind::Spot { underlying } => underlying,
        }
    }

    /// Expiry in ms since the epoch, for options and futures.
    pub fn expiry_ms(&self) -> Option<i64> {
        match *self {
            InstrumentKind::Option { expiry_ms, .. } | InstrumentKind::Future { expiry_ms, .. } => {
                Some(expiry_ms)
            }
            InstrumentKind::Perpetual { .. } | InstrumentKind::Spot { .. } => None,
        }
    }

    /// True for options: their credit usage is the premium (price × qty × multiplier), which is
    /// what the risk crate reserves for an option order.
    pub fn is_option(&self) -> bool {
        matches!(self, InstrumentKind::Option { .. })
    }
}

/// Why a set of [`InstrumentRules`] is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InstrumentRulesError {
    /// The tick size is zero or negative.
    #[error("tick must be positive")]
    Tick,
    /// The lot size is zero or negative.
    #[error("lot must be positive")]
    Lot,
    /// `min_qty` is not positive, or is above `max_qty`.
    #[error("min_qty must be positive and at most max_qty")]
    QtyBounds,
    /// The contract multiplier is zero or negative.
    #[error("multiplier must be positive")]
    Multiplier,
    /// A scale above 18 decimals (an `i64` holds at most 18 full decimal digits).
    #[error("price_scale and qty_scale must be at most 18")]
    Scale,
}

/// The trading rules of one instrument: what the risk checks validate an order against and
/// what the engine matches with. Small and `Copy`, so each side keeps its own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstrumentRules {
    /// The instrument.
    pub id: InstrumentId,
    /// Option, future, perpetual or spot, with its underlying.
    pub kind: InstrumentKind,
    /// Decimal places of its prices: a [`Price`] counts `10^-price_scale` quote units.
    pub price_scale: u8,
    /// Decimal places of its quantities: a [`Qty`] counts `10^-qty_scale` contracts.
    pub qty_scale: u8,
    /// Tick size: every limit price is a multiple of it (in price units, > 0).
    pub tick: Price,
    /// Lot size: every quantity is a multiple of it (in qty units, > 0).
    pub lot: Qty,
    /// Smallest order quantity (inclusive).
    pub min_qty: Qty,
    /// Largest order quantity (inclusive).
    pub max_qty: Qty,
    /// Contract multiplier: notional = price × qty × multiplier (1 for spot and most perps).
    pub multiplier: i64,
    /// Whether it trades now.
    pub status: InstrumentStatus,
}

impl InstrumentRules {
    /// Checks the rules are self-consistent (positive tick, lot and multiplier; `0 < min_qty ≤
    /// max_qty`; scales ≤ 18). Both the engine and the risk crate call it when an instrument
    /// is listed, so an inconsistent listing is refused at the door instead of tripping a
    /// division by zero on the hot path.
    pub fn validate(&self) -> Result<(), InstrumentRulesError> {
        if self.price_scale > 18 || self.qty_scale > 18 {
            return Err(InstrumentRulesError::Scale);
        }
        if self.tick.0 <= 0 {
            return Err(InstrumentRulesError::Tick);
        }
        if self.lot.0 <= 0 {
            return Err(InstrumentRulesError::Lot);
        }
        if self.min_qty.0 <= 0 || self.min_qty > self.max_qty {
            return Err(InstrumentRulesError::QtyBounds);
        }
        if self.multiplier <= 0 {
            return Err(InstrumentRulesError::Multiplier);
        }
        Ok(())
    }

    /// The underlying of the instrument.
    pub fn underlying(&self) -> UnderlyingId {
        self.kind.underlying()
    }

    /// True if `price` is a multiple of the tick (call only on validated rules).
    pub fn on_tick(&self, price: Price) -> bool {
        self.tick.0 > 0 && price.0 % self.tick.0 == 0
    }

    /// True if `qty` is a multiple of the lot (call only on validated rules).
    pub fn on_lot(&self, qty: Qty) -> bool {
        self.lot.0 > 0 && qty.0 % self.lot.0 == 0
    }

    /// True if the instrument accepts new orders and replaces.
    pub fn is_trading(&self) -> bool {
        self.status == InstrumentStatus::Trading
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perp() -> InstrumentRules {
        InstrumentRules {
            id: InstrumentId(1),
            kind: InstrumentKind::Perpetual {
                underlying: UnderlyingId(7),
            },
            price_scale: 2,
            qty_scale: 3,
            tick: Price(50),
            lot: Qty(10),
            min_qty: Qty(10),
            max_qty: Qty(1_000_000),
            multiplier: 1,
            status: InstrumentStatus::Trading,
        }
    }

    #[test]
    fn every_kind_has_an_underlying_and_only_dated_kinds_expire() {
        let u = UnderlyingId(3);
        let kinds = [
            InstrumentKind::Option {
                underlying: u,
                expiry_ms: 10,
                strike: Price(1),
                call: true,
            },
            InstrumentKind::Future {
                underlying: u,
                expiry_ms: 20,
            },
            InstrumentKind::Perpetual { underlying: u },
            InstrumentKind::Spot { underlying: u },
        ];
        for k in kinds {
            assert_eq!(k.underlying(), u);
        }
        assert_eq!(kinds[0].expiry_ms(), Some(10));
        assert_eq!(kinds[1].expiry_ms(), Some(20));
        assert_eq!(kinds[2].expiry_ms(), None);
        assert!(kinds[0].is_option() && !kinds[3].is_option());
    }

    #[test]
    fn rules_validate_and_check_tick_and_lot() {
        let r = perp();
        assert_eq!(r.validate(), Ok(()));
        assert!(r.on_tick(Price(100)) && !r.on_tick(Price(101)));
        assert!(r.on_lot(Qty(20)) && !r.on_lot(Qty(25)));
        assert!(r.is_trading());
        let bad = |f: fn(&mut InstrumentRules)| {
            let mut r = perp();
            f(&mut r);
            r.validate()
        };
        assert_eq!(bad(|r| r.tick = Price(0)), Err(InstrumentRulesError::Tick));
        assert_eq!(bad(|r| r.lot = Qty(-1)), Err(InstrumentRulesError::Lot));
        assert_eq!(
            bad(|r| r.min_qty = Qty(2_000_000)),
            Err(InstrumentRulesError::QtyBounds)
        );
        assert_eq!(
            bad(|r| r.multiplier = 0),
            Err(InstrumentRulesError::Multiplier)
        );
        assert_eq!(bad(|r| r.qty_scale = 19), Err(InstrumentRulesError::Scale));
    }
}
