//! The `[risk]` section of the server's TOML: limits per account (with defaults), throttles,
//! the sustained-abuse rule and the capacities of the pre-allocated tables.
//!
//! Unknown keys are errors (`deny_unknown_fields`, so a misspelt limit is never silently
//! ignored); [`RiskConfig::validate`] names the key of every bad value, prefixed `risk.`.
//!
//! ```toml
//! [risk]
//! session_rate_per_sec = 200
//! session_burst = 400
//! disconnect_after_throttled = { rejects = 100, within_ms = 1000 }
//!
//! [risk.defaults]
//! max_notional = "1000000"          # quote currency, per order
//! price_band_pct = "10"             # ±10 % around the reference price
//! credit_limit = "10000000"
//! max_position_per_instrument = "1000"
//! max_position_per_underlying = "10000"
//! stp_mode = "cancel_incoming"
//!
//! [risk.accounts.ALICE]             # only what differs from the defaults
//! max_notional = "50000.50"
//! ```

use std::collections::BTreeMap;

use portcullis_types::{AccountId, InstrumentId, StpMode};
use serde::{Deserialize, Serialize};

use crate::decimal::Decimal;

/// A risk configuration or an administrative change that cannot be used. The message names
/// the key (or the account / instrument) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value is not acceptable.
    #[error("risk.{key}: {message}")]
    Invalid {
        /// The key below `[risk]`, e.g. `accounts.ALICE.max_notional`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// An administrative call named an account id outside the account table.
    #[error("account {0}: no such account")]
    UnknownAccount(AccountId),
    /// An administrative call named an instrument that is not listed.
    #[error("instrument {0}: not listed")]
    UnknownInstrument(InstrumentId),
    /// An instrument's rules cannot be used by the risk checks.
    #[error("instrument {id}: {message}")]
    BadInstrument {
        /// The instrument.
        id: InstrumentId,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key (below `[risk]`) the error is about, when it is about one config value.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// The `[risk]` section. Every field has a default, so an absent section is a working
/// (conservative) configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// Limits of every account without an entry in `accounts`, and the fallback of every field
    /// an entry leaves out.
    pub defaults: AccountLimits,
    /// Per-account overrides, by account name (as in the server's account table). A name that
    /// is not an account is an error, so a typo never leaves an account on the defaults.
    pub accounts: BTreeMap<String, AccountLimitsOverride>,
    /// Orders, replaces and cancels per second per session (token-bucket refill rate, ≥ 1).
    /// Default 200.
    pub session_rate_per_sec: u32,
    /// Largest burst per session (token-bucket size, ≥ 1). Default 400.
    pub session_burst: u32,
    /// Sustained abuse: this many throttle rejects on one session within this window mark the
    /// session for disconnection ([`crate::RiskEngine::throttle_abuse`]). Rejects by the
    /// session's bucket and by its account's both count: a client that keeps sending while
    /// refused is not backing off, whichever limit it hit. Default 100 rejects within 1000 ms.
    pub disconnect_after_throttled: AbuseRule,
    /// Session slots (`SessionId` values `0..max_sessions`); a request from a higher slot is
    /// refused as `ServerBusy`. Should match the server's connection limit. Default 1024.
    pub max_sessions: u32,
    /// ClOrdIDs remembered per trading day, over all sessions. When the table is full, new
    /// orders are refused as `ServerBusy` until `reset_trading_day` (refusing is the safe
    /// choice: forgetting an id could let a duplicate through). Default 1 048 576 (a 16 MiB
    /// table behind a 1.25 MiB filter).
    pub max_cl_ord_ids_per_day: u32,
    /// Distinct (account, instrument) and (account, underlying) pairs with risk state
    /// (positions, open orders). When full, an order that needs a new pair is refused as
    /// `ServerBusy`; idle pairs are dropped at `reset_trading_day`. Default 65 536.
    pub max_position_slots: u32,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            defaults: AccountLimits::default(),
            accounts: BTreeMap::new(),
            session_rate_per_sec: 200,
            session_burst: 400,
            disconnect_after_throttled: AbuseRule::default(),
            max_sessions: 1024,
            max_cl_ord_ids_per_day: 1 << 20,
            max_position_slots: 1 << 16,
        }
    }
}

/// `disconnect_after_throttled = { rejects = N, within_ms = M }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbuseRule {
    /// Throttle rejects (1..=4096) ...
    pub rejects: u32,
    /// ... within this many milliseconds (≥ 1).
    pub within_ms: u64,
}

impl Default for AbuseRule {
    fn default() -> Self {
        Self {
            rejects: 100,
            within_ms: 1000,
        }
    }
}

/// The limits of one account. Amounts are in the quote currency the instruments are priced in
/// (one common currency is assumed, e.g. USD); quantities in contracts (an instrument's
/// quantity unit) or, per underlying, in units of the underlying (`qty × multiplier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountLimits {
    /// Largest notional of one order, `price × qty × multiplier` (the premium for an
    /// option). A market order is valued at the reference price plus the band. Default
    /// "1000000".
    pub max_notional: Decimal,
    /// Largest distance of a limit price from the reference price, in percent of the
    /// reference, written as a decimal string with at most 4 decimals (`"2.5"` = ±2.5 %,
    /// `"0.05"` = 5 bp). Must be positive. Default "10".
    pub price_band_pct: Decimal,
    /// Largest number of open orders of the account. Default 1000.
    pub max_open_orders: u32,
    /// Largest number of open orders of the account in one instrument. Default 200.
    pub max_open_orders_per_instrument: u32,
    /// Credit limit: open-order notional (premium for options) plus position exposure (the
    /// positions at their average entry price), over all instruments. Default "10000000".
    pub credit_limit: Decimal,
    /// Largest absolute position in one instrument, in contracts, counting the worst case:
    /// position plus open orders on the order's side plus the order. Default "1000".
    pub max_position_per_instrument: Decimal,
    /// Largest absolute position per underlying, in units of the underlying (contracts ×
    /// multiplier, summed over its instruments; options count by contracts, not by delta),
    /// worst case as above. Default "10000".
    pub max_position_per_underlying: Decimal,
    /// Orders, replaces and cancels per second of the account over all its sessions (≥ 1).
    /// Default 100.
    pub order_rate_per_sec: u32,
    /// Largest burst of the account (≥ 1). Default 200.
    pub order_burst: u32,
    /// Self-trade prevention when the order does not choose one: `"cancel_resting"`,
    /// `"cancel_incoming"` or `"cancel_both"`. Default "cancel_incoming".
    #[serde(with = "stp_serde")]
    pub stp_mode: StpMode,
}

impl Default for AccountLimits {
    fn default() -> Self {
        Self {
            max_notional: Decimal::from_int(1_000_000),
            price_band_pct: Decimal::from_int(10),
            max_open_orders: 1000,
            max_open_orders_per_instrument: 200,
            credit_limit: Decimal::from_int(10_000_000),
            max_position_per_instrument: Decimal::from_int(1000),
            max_position_per_underlying: Decimal::from_int(10_000),
            order_rate_per_sec: 100,
            order_burst: 200,
            stp_mode: StpMode::CancelIncoming,
        }
    }
}

/// A `[risk.accounts.NAME]` entry: the same keys as [`AccountLimits`], each optional; an
/// absent key takes the value from `[risk.defaults]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountLimitsOverride {
    /// See [`AccountLimits::max_notional`].
    pub max_notional: Option<Decimal>,
    /// See [`AccountLimits::price_band_pct`].
    pub price_band_pct: Option<Decimal>,
    /// See [`AccountLimits::max_open_orders`].
    pub max_open_orders: Option<u32>,
    /// See [`AccountLimits::max_open_orders_per_instrument`].
    pub max_open_orders_per_instrument: Option<u32>,
    /// See [`AccountLimits::credit_limit`].
    pub credit_limit: Option<Decimal>,
    /// See [`AccountLimits::max_position_per_instrument`].
    pub max_position_per_instrument: Option<Decimal>,
    /// See [`AccountLimits::max_position_per_underlying`].
    pub max_position_per_underlying: Option<Decimal>,
    /// See [`AccountLimits::order_rate_per_sec`].
    pub order_rate_per_sec: Option<u32>,
    /// See [`AccountLimits::order_burst`].
    pub order_burst: Option<u32>,
    /// See [`AccountLimits::stp_mode`].
    #[serde(default, with = "stp_serde_opt")]
    pub stp_mode: Option<StpMode>,
}

impl AccountLimitsOverride {
    /// The override applied on top of `defaults`.
    pub fn apply(&self, defaults: &AccountLimits) -> AccountLimits {
        AccountLimits {
            max_notional: self.max_notional.unwrap_or(defaults.max_notional),
            price_band_pct: self.price_band_pct.unwrap_or(defaults.price_band_pct),
            max_open_orders: self.max_open_orders.unwrap_or(defaults.max_open_orders),
            max_open_orders_per_instrument: self
                .max_open_orders_per_instrument
                .unwrap_or(defaults.max_open_orders_per_instrument),
            credit_limit: self.credit_limit.unwrap_or(defaults.credit_limit),
            max_position_per_instrument: self
                .max_position_per_instrument
                .unwrap_or(defaults.max_position_per_instrument),
            max_position_per_underlying: self
                .max_position_per_underlying
                .unwrap_or(defaults.max_position_per_underlying),
            order_rate_per_sec: self
                .order_rate_per_sec
                .unwrap_or(defaults.order_rate_per_sec),
            order_burst: self.order_burst.unwrap_or(defaults.order_burst),
            stp_mode: self.stp_mode.unwrap_or(defaults.stp_mode),
        }
    }
}

/// Most abuse-ring entries (`max_sessions × rejects`, 8 bytes each): 128 MiB.
const MAX_ABUSE_RING: u64 = 1 << 24;

impl RiskConfig {
    /// Checks every value; the error names the first bad key (`risk.defaults.max_notional`,
    /// `risk.accounts.ALICE.order_burst`, ...). Account names are checked against the server's
    /// accounts by [`crate::RiskEngine::new`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.defaults.resolve("defaults")?;
        for (name, o) in &self.accounts {
            o.apply(&self.defaults)
                .resolve(&format!("accounts.{name}"))?;
        }
        positive(self.session_rate_per_sec, "session_rate_per_sec")?;
        positive(self.session_burst, "session_burst")?;
        let abuse = &self.disconnect_after_throttled;
        if !(1..=4096).contains(&abuse.rejects) {
            return Err(ConfigError::invalid(
                "disconnect_after_throttled.rejects",
                "must be between 1 and 4096",
            ));
        }
        if abuse.within_ms == 0 || abuse.within_ms > i64::MAX as u64 / 1_000_000 {
            return Err(ConfigError::invalid(
                "disconnect_after_throttled.within_ms",
                "must be at least 1 (and fit in nanoseconds)",
            ));
        }
        if !(1..=1 << 20).contains(&self.max_sessions) {
            return Err(ConfigError::invalid(
                "max_sessions",
                "must be between 1 and 1048576",
            ));
        }
        if u64::from(self.max_sessions) * u64::from(abuse.rejects) > MAX_ABUSE_RING {
            return Err(ConfigError::invalid(
                "disconnect_after_throttled.rejects",
                format!(
                    "max_sessions × rejects must be at most {MAX_ABUSE_RING} (one timestamp each)"
                ),
            ));
        }
        if !(1..=1 << 28).contains(&self.max_cl_ord_ids_per_day) {
            return Err(ConfigError::invalid(
                "max_cl_ord_ids_per_day",
                "must be between 1 and 268435456",
            ));
        }
        if !(1..=1 << 26).contains(&self.max_position_slots) {
            return Err(ConfigError::invalid(
                "max_position_slots",
                "must be between 1 and 67108864",
            ));
        }
        Ok(())
    }
}

fn positive(v: u32, key: &str) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(ConfigError::invalid(key, "must be at least 1"));
    }
    Ok(())
}

/// [`AccountLimits`] converted to the units the checks compare in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// `10^-18` quote units.
    pub max_notional: i128,
    /// Parts per million of the reference price.
    pub band_ppm: i128,
    pub max_open_orders: u32,
    pub max_open_orders_per_instrument: u32,
    /// `10^-18` quote units.
    pub credit_limit: i128,
    /// `10^-18` contracts.
    pub max_position_per_instrument: i128,
    /// `10^-18` underlying units.
    pub max_position_per_underlying: i128,
    pub order_rate_per_sec: u32,
    pub order_burst: u32,
    pub stp_mode: StpMode,
}

/// `10^-18` units per ppm of a percent value: 1 % = 10^4 ppm, so 1 ppm = 10^-4 % = 10^14 units.
const UNITS_PER_PPM: i128 = 100_000_000_000_000;

impl AccountLimits {
    /// Checks every value; `prefix` is `defaults` or `accounts.NAME` for the error's key.
    pub(crate) fn resolve(&self, prefix: &str) -> Result<Limits, ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        let non_negative = |v: Decimal, k: &str| {
            if v.is_negative() {
                Err(ConfigError::invalid(key(k), "must not be negative"))
            } else {
                Ok(v.units())
            }
        };
        let band = self.price_band_pct.units();
        if band <= 0 {
            return Err(ConfigError::invalid(
                key("price_band_pct"),
                "must be positive",
            ));
        }
        if band % UNITS_PER_PPM != 0 {
            return Err(ConfigError::invalid(
                key("price_band_pct"),
                "at most 4 decimal places (0.0001 % = 1 ppm)",
            ));
        }
        if band > 1_000_000_000 * UNITS_PER_PPM {
            return Err(ConfigError::invalid(
                key("price_band_pct"),
                "must be at most 100000 (percent)",
            ));
        }
        if self.order_rate_per_sec == 0 {
            return Err(ConfigError::invalid(
                key("order_rate_per_sec"),
                "must be at least 1",
            ));
        }
        if self.order_burst == 0 {
            return Err(ConfigError::invalid(
                key("order_burst"),
                "must be at least 1",
            ));
        }
        Ok(Limits {
            max_notional: non_negative(self.max_notional, "max_notional")?,
            band_ppm: band / UNITS_PER_PPM,
            max_open_orders: self.max_open_orders,
            max_open_orders_per_instrument: self.max_open_orders_per_instrument,
            credit_limit: non_negative(self.credit_limit, "credit_limit")?,
            max_position_per_instrument: non_negative(
                self.max_position_per_instrument,
                "max_position_per_instrument",
            )?,
            max_position_per_underlying: non_negative(
                self.max_position_per_underlying,
                "max_position_per_underlying",
            )?,
            order_rate_per_sec: self.order_rate_per_sec,
            order_burst: self.order_burst,
            stp_mode: self.stp_mode,
        })
    }
}

/// `StpMode` lives in the serde-free types crate; its config spelling is defined here.
mod stp_serde {
    use portcullis_types::StpMode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn name(m: StpMode) -> &'static str {
        match m {
            StpMode::CancelResting => "cancel_resting",
            StpMode::CancelIncoming => "cancel_incoming",
            StpMode::CancelBoth => "cancel_both",
        }
    }

    pub(super) fn from_name<E: serde::de::Error>(s: &str) -> Result<StpMode, E> {
        match s {
            "cancel_resting" => Ok(StpMode::CancelResting),
            "cancel_incoming" => Ok(StpMode::CancelIncoming),
            "cancel_both" => Ok(StpMode::CancelBoth),
            other => Err(E::unknown_variant(
                other,
                &["cancel_resting", "cancel_incoming", "cancel_both"],
            )),
        }
    }

    pub fn serialize<S: Serializer>(m: &StpMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(name(*m))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StpMode, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        from_name(&s)
    }
}

mod stp_serde_opt {
    use portcullis_types::StpMode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Option<StpMode>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_some(super::stp_serde::name(*m)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StpMode>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        s.map(|s| super::stp_serde::from_name(&s)).transpose()
    }
}
