//! The instrument table: every listed contract by [`InstrumentId`] (its index), the symbol ↔ id
//! map, the underlying table, option series listed from rules, and expiry.
//!
//! # Config
//!
//! The server embeds two arrays of tables in its TOML config; decimals are written as strings
//! (or integers) so they are read exactly at the contract's scale, never through a float:
//!
//! ```toml
//! # One contract, named by its symbol (see the `symbol` module for the format). The symbol
//! # determines the kind, the underlying and, for dated contracts, the expiry (08:00 UTC).
//! [[instruments]]
//! symbol = "BTC-PERP"
//! price_scale = 1          # prices in 0.1 quote units
//! qty_scale = 3            # quantities in 0.001 contracts
//! tick = "0.5"             # every price a multiple of this
//! lot = "0.001"            # every quantity a multiple of this
//! min_qty = "0.001"
//! max_qty = "100"
//! multiplier = 1           # optional, default 1
//! status = "trading"       # optional: "trading" (default) or "halted"
//!
//! # Options listed by rule, relative to the current time, so a config never goes stale:
//! # here calls and puts for the next 4 Fridays (08:00 UTC) at 11 strikes 75000..125000.
//! [[option_series]]
//! underlying = "BTC"
//! expiries = "weekly"      # "daily", "weekly" (Fridays) or "monthly" (last Friday)
//! count = 4                # how many expiries are listed at any time
//! strikes = { reference = "100000", step = "5000", each_side = 5 }
//! price_scale = 1
//! qty_scale = 1
//! tick = "0.5"
//! lot = "0.1"
//! min_qty = "0.1"
//! max_qty = "1000"
//! multiplier = 1
//! ```
//!
//! Expiries are the ones strictly after `now`: an option expiring today at 08:00 UTC is still
//! listed at 07:59. [`Instruments::roll`] keeps `count` expiries listed as time passes and
//! marks contracts past their expiry [`InstrumentStatus::Expired`]; the core then cancels their
//! resting orders with an Expired report. An explicit instrument and a series contract with the
//! same symbol are one instrument: the explicit one is listed first and wins.
//!
//! Ids are never reused: an expired contract keeps its id (and its row, a few dozen bytes), so
//! an id in a journal or an old report always names the same contract.

use std::collections::HashMap;
use std::fmt;

use portcullis_types::{
    DecimalError, InstrumentId, InstrumentKind, InstrumentRules, InstrumentRulesError,
    InstrumentStatus, Price, Qty, UnderlyingId,
};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::symbol::{ExpiryDate, Symbol, SymbolError, SymbolKind, Weekday};
use portcullis_types::snapshot::{status_byte, SnapshotError, SnapshotReader, SnapshotWriter};

/// Most instruments one table holds (listed and expired), a guard against a config that would
/// list millions of strikes.
pub const MAX_INSTRUMENTS: usize = 1 << 20;
/// Most contracts one option series may list at a time (expiries × strikes × 2).
pub const MAX_SERIES_CONTRACTS: usize = 10_000;

/// A decimal number in config, kept as text until its scale is known. Accepts a TOML string
/// (`"0.5"`) or integer (`5`); a TOML float is refused, since it has already been rounded to
/// binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDecimal(pub String);

impl ConfigDecimal {
    fn parse(&self, scale: u8) -> Result<i64, DecimalError> {
        portcullis_types::parse_fixed(self.0.as_bytes(), scale)
    }
}

impl From<&str> for ConfigDecimal {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl<'de> Deserialize<'de> for ConfigDecimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigDecimal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal as a string (\"0.5\") or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ConfigDecimal(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ConfigDecimal(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ConfigDecimal(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Err(E::custom(
                    "write decimals as strings (e.g. \"0.5\") so they are read exactly",
                ))
            }
        }
        d.deserialize_any(V)
    }
}

fn one() -> i64 {
    1
}

/// The status an instrument is listed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListedStatus {
    /// Open for trading (the default).
    #[default]
    Trading,
    /// Listed but halted until the operator resumes it.
    Halted,
}

/// One explicitly listed instrument (`[[instruments]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentConfig {
    /// The symbol; it determines kind, underlying and expiry.
    pub symbol: String,
    /// Decimal places of prices (and of an option's strike).
    pub price_scale: u8,
    /// Decimal places of quantities.
    pub qty_scale: u8,
    /// Tick size.
    pub tick: ConfigDecimal,
    /// Lot size.
    pub lot: ConfigDecimal,
    /// Smallest order quantity.
    pub min_qty: ConfigDecimal,
    /// Largest order quantity.
    pub max_qty: ConfigDecimal,
    /// Contract multiplier (default 1).
    #[serde(default = "one")]
    pub multiplier: i64,
    /// Status at listing (default trading).
    #[serde(default)]
    pub status: ListedStatus,
}

/// Which expiries an option series lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpiryRule {
    /// Every day.
    Daily,
    /// Every Friday.
    Weekly,
    /// The last Friday of every month.
    Monthly,
}

/// The strike grid of an option series: `reference ± i × step` for `i` in `0..=each_side`,
/// positive strikes only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrikeGrid {
    /// The centre strike.
    pub reference: ConfigDecimal,
    /// Distance between strikes.
    pub step: ConfigDecimal,
    /// Strikes above and below the reference.
    pub each_side: u32,
}

/// Rules listing options of one underlying (`[[option_series]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSeriesConfig {
    /// Underlying asset code (e.g. `BTC`).
    pub underlying: String,
    /// Expiry calendar.
    pub expiries: ExpiryRule,
    /// How many upcoming expiries are listed at any time.
    pub count: u32,
    /// Strikes listed for every expiry (calls and puts).
    pub strikes: StrikeGrid,
    /// Decimal places of premiums and strikes.
    pub price_scale: u8,
    /// Decimal places of quantities.
    pub qty_scale: u8,
    /// Tick size of the premium.
    pub tick: ConfigDecimal,
    /// Lot size.
    pub lot: ConfigDecimal,
    /// Smallest order quantity.
    pub min_qty: ConfigDecimal,
    /// Largest order quantity.
    pub max_qty: ConfigDecimal,
    /// Contract multiplier (default 1).
    #[serde(default = "one")]
    pub multiplier: i64,
}

/// Both config arrays, for reading them on their own (the server has them at its top level).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentsConfig {
    /// Explicit instruments.
    #[serde(default)]
    pub instruments: Vec<InstrumentConfig>,
    /// Option series.
    #[serde(default)]
    pub option_series: Vec<OptionSeriesConfig>,
}

/// Why instrument config is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstrumentConfigError {
    /// A symbol is invalid.
    #[error("instrument {symbol:?}: {source}")]
    Symbol {
        /// The symbol.
        symbol: String,
        /// Why.
        source: SymbolError,
    },
    /// A decimal field does not parse at its scale.
    #[error("{what}: {field}: {source}")]
    Decimal {
        /// The instrument or series.
        what: String,
        /// The field.
        field: &'static str,
        /// Why.
        source: DecimalError,
    },
    /// The trading rules are inconsistent.
    #[error("{what}: {source}")]
    Rules {
        /// The instrument or series.
        what: String,
        /// Why.
        source: InstrumentRulesError,
    },
    /// Two explicit instruments with one symbol.
    #[error("instrument {0:?} is listed twice")]
    Duplicate(String),
    /// A series rule is unusable.
    #[error("option series {underlying:?}: {reason}")]
    Series {
        /// The series' underlying.
        underlying: String,
        /// Why.
        reason: &'static str,
    },
    /// `price_scale + qty_scale` above 18.
    #[error("{0}: price_scale + qty_scale must be at most 18")]
    Scales(String),
    /// The table is full ([`MAX_INSTRUMENTS`]).
    #[error("more than {MAX_INSTRUMENTS} instruments")]
    TooMany,
}

/// A contract's trading parameters, parsed at its scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spec {
    price_scale: u8,
    qty_scale: u8,
    tick: Price,
    lot: Qty,
    min_qty: Qty,
    max_qty: Qty,
    multiplier: i64,
}

#[allow(clippy::too_many_arguments)]
fn parse_spec(
    what: &str,
    price_scale: u8,
    qty_scale: u8,
    tick: &ConfigDecimal,
    lot: &ConfigDecimal,
    min_qty: &ConfigDecimal,
    max_qty: &ConfigDecimal,
    multiplier: i64,
) -> Result<Spec, InstrumentConfigError> {
    let dec = |field: &'static str, d: &ConfigDecimal, scale: u8| {
        d.parse(scale)
            .map_err(|source| InstrumentConfigError::Decimal {
                what: what.to_owned(),
                field,
                source,
            })
    };
    let spec = Spec {
        price_scale,
        qty_scale,
        tick: Price(dec("tick", tick, price_scale)?),
        lot: Qty(dec("lot", lot, qty_scale)?),
        min_qty: Qty(dec("min_qty", min_qty, qty_scale)?),
        max_qty: Qty(dec("max_qty", max_qty, qty_scale)?),
        multiplier,
    };
    // Notional is computed exactly at 18 decimals (price × qty): both scales must fit.
    if u16::from(price_scale) + u16::from(qty_scale) > 18 {
        return Err(InstrumentConfigError::Scales(what.to_owned()));
    }
    Ok(spec)
}

/// A parsed option series.
#[derive(Debug, Clone)]
struct Series {
    underlying: UnderlyingId,
    expiries: ExpiryRule,
    count: u32,
    strikes: Vec<Price>,
    spec: Spec,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instrument {
    symbol: String,
    rules: InstrumentRules,
}

impl Instrument {
    /// The symbol.
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// The trading rules (with the current status).
    pub fn rules(&self) -> &InstrumentRules {
        &self.rules
    }
}

/// What [`Instruments::roll`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roll {
    /// Newly listed contracts.
    pub listed: Vec<InstrumentId>,
    /// Contracts that reached expiry and are now [`InstrumentStatus::Expired`].
    pub expired: Vec<InstrumentId>,
}

/// The instrument table.
#[derive(Debug, Clone, Default)]
pub struct Instruments {
    list: Vec<Instrument>,
    by_symbol: HashMap<String, InstrumentId>,
    underlyings: Vec<String>,
    by_underlying: HashMap<String, UnderlyingId>,
    series: Vec<Series>,
    /// The earliest instant at which [`Instruments::roll`] can change anything: the nearest
    /// expiry of a contract still listed. The window of "the next N expiries after now" of a
    /// series only moves when its nearest listed expiry passes, so until then a roll is a
    /// comparison (cheap enough to call every second from the core thread).
    next_change_ms: i64,
}

impl Instruments {
    /// Builds the table from config, listing series relative to `now_ms` (ms since the
    /// epoch). Explicit dated contracts already past expiry are listed as expired.
    pub fn new(
        instruments: &[InstrumentConfig],
        option_series: &[OptionSeriesConfig],
        now_ms: i64,
    ) -> Result<Self, InstrumentConfigError> {
        let mut t = Self::default();
        for cfg in instruments {
            if t.by_symbol.contains_key(&cfg.symbol) {
                return Err(InstrumentConfigError::Duplicate(cfg.symbol.clone()));
            }
            t.list_explicit(cfg, now_ms)?;
        }
        for cfg in option_series {
            t.add_series(cfg)?;
        }
        t.roll(now_ms)?;
        Ok(t)
    }

    /// Builds the table from an [`InstrumentsConfig`].
    pub fn from_config(
        cfg: &InstrumentsConfig,
        now_ms: i64,
    ) -> Result<Self, InstrumentConfigError> {
        Self::new(&cfg.instruments, &cfg.option_series, now_ms)
    }

    /// Lists one instrument at run time (an operator action); returns its id. Refuses a symbol
    /// that is already listed.
    pub fn list_explicit(
        &mut self,
        cfg: &InstrumentConfig,
        now_ms: i64,
    ) -> Result<InstrumentId, InstrumentConfigError> {
        if self.by_symbol.contains_key(&cfg.symbol) {
            return Err(InstrumentConfigError::Duplicate(cfg.symbol.clone()));
        }
        let sym = Symbol::parse(&cfg.symbol, cfg.price_scale).map_err(|source| {
            InstrumentConfigError::Symbol {
                symbol: cfg.symbol.clone(),
                source,
            }
        })?;
        let spec = parse_spec(
            &cfg.symbol,
            cfg.price_scale,
            cfg.qty_scale,
            &cfg.tick,
            &cfg.lot,
            &cfg.min_qty,
            &cfg.max_qty,
            cfg.multiplier,
        )?;
        let underlying = self.intern_underlying(sym.underlying);
        let kind = match sym.kind {
            SymbolKind::Option {
                expiry,
                strike,
                call,
            } => InstrumentKind::Option {
                underlying,
                expiry_ms: expiry.expiry_ms(),
                strike,
                call,
            },
            SymbolKind::Future { expiry } => InstrumentKind::Future {
                underlying,
                expiry_ms: expiry.expiry_ms(),
            },
            SymbolKind::Perpetual => InstrumentKind::Perpetual { underlying },
            SymbolKind::Spot { .. } => InstrumentKind::Spot { underlying },
        };
        if let Some(exp) = kind.expiry_ms() {
            self.next_change_ms = self.next_change_ms.min(exp);
        }
        let status = match (kind.expiry_ms(), cfg.status) {
            (Some(exp), _) if exp <= now_ms => InstrumentStatus::Expired,
            (_, ListedStatus::Trading) => InstrumentStatus::Trading,
            (_, ListedStatus::Halted) => InstrumentStatus::Halted,
        };
        self.push(cfg.symbol.clone(), kind, spec, status)
    }

    fn add_series(&mut self, cfg: &OptionSeriesConfig) -> Result<(), InstrumentConfigError> {
        let err = |reason| InstrumentConfigError::Series {
            underlying: cfg.underlying.clone(),
            reason,
        };
        if !crate::symbol::is_valid_asset_code(&cfg.underlying) {
            return Err(err("underlying must be 1-10 of A-Z0-9 with a letter"));
        }
        if cfg.count == 0 {
            return Err(err("count must be at least 1"));
        }
        let what = format!("option series {}", cfg.underlying);
        let spec = parse_spec(
            &what,
            cfg.price_scale,
            cfg.qty_scale,
            &cfg.tick,
            &cfg.lot,
            &cfg.min_qty,
            &cfg.max_qty,
            cfg.multiplier,
        )?;
        let dec = |field, d: &ConfigDecimal| {
            d.parse(cfg.price_scale)
                .map_err(|source| InstrumentConfigError::Decimal {
                    what: what.clone(),
                    field,
                    source,
                })
        };
        let reference = dec("strikes.reference", &cfg.strikes.reference)?;
        let step = dec("strikes.step", &cfg.strikes.step)?;
        if reference <= 0 || step <= 0 {
            return Err(err("strike reference and step must be positive"));
        }
        let each = i64::from(cfg.strikes.each_side);
        let per_expiry = 2 * (2 * each as usize + 1);
        if cfg.count as usize * per_expiry > MAX_SERIES_CONTRACTS {
            return Err(err(
                "lists too many contracts (expiries × strikes × 2 > 10000)",
            ));
        }
        let strikes: Vec<Price> = (-each..=each)
            .filter_map(|i| step.checked_mul(i).and_then(|d| reference.checked_add(d)))
            .filter(|&k| k > 0)
            .map(Price)
            .collect();
        let underlying = self.intern_underlying(&cfg.underlying);
        // Validate the rules once here, so a bad series fails at startup, not at a roll.
        probe_rules(&what, spec)?;
        self.next_change_ms = i64::MIN;
        self.series.push(Series {
            underlying,
            expiries: cfg.expiries,
            count: cfg.count,
            strikes,
            spec,
        });
        Ok(())
    }

    fn intern_underlying(&mut self, code: &str) -> UnderlyingId {
        if let Some(&id) = self.by_underlying.get(code) {
            return id;
        }
        let id = UnderlyingId(self.underlyings.len() as u32);
        self.underlyings.push(code.to_owned());
        self.by_underlying.insert(code.to_owned(), id);
        id
    }

    fn push(
        &mut self,
        symbol: String,
        kind: InstrumentKind,
        spec: Spec,
        status: InstrumentStatus,
    ) -> Result<InstrumentId, InstrumentConfigError> {
        if self.list.len() >= MAX_INSTRUMENTS {
            return Err(InstrumentConfigError::TooMany);
        }
        let id = InstrumentId(self.list.len() as u32);
        let rules = InstrumentRules {
            id,
            kind,
            price_scale: spec.price_scale,
            qty_scale: spec.qty_scale,
            tick: spec.tick,
            lot: spec.lot,
            min_qty: spec.min_qty,
            max_qty: spec.max_qty,
            multiplier: spec.multiplier,
            status,
        };
        rules
            .validate()
            .map_err(|source| InstrumentConfigError::Rules {
                what: symbol.clone(),
                source,
            })?;
        self.by_symbol.insert(symbol.clone(), id);
        self.list.push(Instrument { symbol, rules });
        Ok(id)
    }

    /// Marks every dated contract whose expiry is at or before `now_ms` as expired, and lists
    /// the series contracts of the next `count` expiries after `now_ms` that are not listed
    /// yet. Idempotent: a second call with the same `now_ms` changes nothing.
    pub fn roll(&mut self, now_ms: i64) -> Result<Roll, InstrumentConfigError> {
        let mut roll = Roll::default();
        if now_ms < self.next_change_ms {
            return Ok(roll);
        }
        for inst in &mut self.list {
            if inst.rules.status != InstrumentStatus::Expired
                && inst.rules.kind.expiry_ms().is_some_and(|e| e <= now_ms)
            {
                inst.rules.status = InstrumentStatus::Expired;
                roll.expired.push(inst.rules.id);
            }
        }
        for s in 0..self.series.len() {
            let series = self.series[s].clone();
            let name = self.underlyings[series.underlying.0 as usize].clone();
            for expiry in upcoming_expiries(series.expiries, series.count, now_ms) {
                for &strike in &series.strikes {
                    for call in [true, false] {
                        let sym = Symbol {
                            underlying: &name,
                            kind: SymbolKind::Option {
                                expiry,
                                strike,
                                call,
                            },
                        };
                        let text = sym.format(series.spec.price_scale);
                        if self.by_symbol.contains_key(&text) {
                            continue;
                        }
                        let kind = InstrumentKind::Option {
                            underlying: series.underlying,
                            expiry_ms: expiry.expiry_ms(),
                            strike,
                            call,
                        };
                        let id = self.push(text, kind, series.spec, InstrumentStatus::Trading)?;
                        roll.listed.push(id);
                    }
                }
            }
        }
        self.next_change_ms = self
            .list
            .iter()
            .filter(|i| i.rules.status != InstrumentStatus::Expired)
            .filter_map(|i| i.rules.kind.expiry_ms())
            .min()
            .unwrap_or(i64::MAX);
        Ok(roll)
    }

    /// The instrument with this id.
    pub fn get(&self, id: InstrumentId) -> Option<&Instrument> {
        self.list.get(id.0 as usize)
    }

    /// The trading rules of an instrument.
    pub fn rules(&self, id: InstrumentId) -> Option<&InstrumentRules> {
        self.get(id).map(Instrument::rules)
    }

    /// The id of a symbol (exact, canonical spelling).
    pub fn by_symbol(&self, symbol: &str) -> Option<InstrumentId> {
        self.by_symbol.get(symbol).copied()
    }

    /// The symbol of an instrument.
    pub fn symbol(&self, id: InstrumentId) -> Option<&str> {
        self.get(id).map(Instrument::symbol)
    }

    /// The id of an underlying asset code.
    pub fn underlying(&self, code: &str) -> Option<UnderlyingId> {
        self.by_underlying.get(code).copied()
    }

    /// The code of an underlying.
    pub fn underlying_code(&self, id: UnderlyingId) -> Option<&str> {
        self.underlyings.get(id.0 as usize).map(String::as_str)
    }

    /// Every underlying code, indexed by [`UnderlyingId`].
    pub fn underlying_codes(&self) -> &[String] {
        &self.underlyings
    }

    /// Sets an instrument's status; `false` if there is no such instrument or it is expired
    /// (expiry is final).
    pub fn set_status(&mut self, id: InstrumentId, status: InstrumentStatus) -> bool {
        match self.list.get_mut(id.0 as usize) {
            Some(i) if i.rules.status != InstrumentStatus::Expired => {
                i.rules.status = status;
                true
            }
            _ => false,
        }
    }

    /// Number of instruments (listed and expired).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every instrument, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Instrument> {
        self.list.iter()
    }
}

impl Instruments {
    /// Appends the table to a journal snapshot: the underlyings in id order, every instrument
    /// in id order with its symbol and rules (status included), and when the next roll can
    /// change anything. The series rules are not written: they come from the config.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        let mut w = SnapshotWriter::new(out);
        w.u32(self.underlyings.len() as u32);
        for u in &self.underlyings {
            w.bytes(u.as_bytes());
        }
        w.u32(self.list.len() as u32);
        for i in &self.list {
            let r = &i.rules;
            w.bytes(i.symbol.as_bytes());
            w.instrument_kind(&r.kind);
            w.u8(r.price_scale);
            w.u8(r.qty_scale);
            for v in [r.tick.0, r.lot.0, r.min_qty.0, r.max_qty.0, r.multiplier] {
                w.i64(v);
            }
            w.u8(status_byte(r.status));
        }
        w.u32(self.series.len() as u32);
        w.i64(self.next_change_ms);
    }

    /// Rebuilds the table of a snapshot: its instruments keep their ids (journaled commands
    /// name instruments by id), the series rules come from `option_series`, and explicit
    /// `instruments` of the config that the snapshot does not have are listed after them
    /// (with new ids) as of `now_ms`.
    pub fn restore_snapshot(
        r: &mut SnapshotReader<'_>,
        instruments: &[InstrumentConfig],
        option_series: &[OptionSeriesConfig],
        now_ms: i64,
    ) -> Result<Self, SnapshotError> {
        let mismatch = |e: InstrumentConfigError| SnapshotError::Mismatch(e.to_string());
        let mut t = Self::default();
        let n = r.count(4, "underlyings")?;
        for _ in 0..n {
            let code = r.bytes("underlying")?;
            let code = std::str::from_utf8(code).map_err(|_| r.invalid(0, "underlying"))?;
            t.intern_underlying(code);
        }
        let n = r.count(4 + 5 + 2 + 40 + 1, "instruments")?;
        for i in 0..n {
            let at = r.position();
            let symbol = r.bytes("symbol")?;
            let symbol = std::str::from_utf8(symbol)
                .map_err(|_| r.invalid(0, "symbol"))?
                .to_owned();
            let kind = r.instrument_kind()?;
            let rules = InstrumentRules {
                id: InstrumentId(i as u32),
                kind,
                price_scale: r.u8("price scale")?,
                qty_scale: r.u8("qty scale")?,
                tick: r.price("tick")?,
                lot: r.qty("lot")?,
                min_qty: r.qty("min qty")?,
                max_qty: r.qty("max qty")?,
                multiplier: r.i64("multiplier")?,
                status: r.status()?,
            };
            let bad = SnapshotError::Invalid {
                offset: at,
                what: "instrument",
            };
            if rules.validate().is_err()
                || t.by_symbol.contains_key(&symbol)
                || rules.underlying().0 as usize >= t.underlyings.len()
            {
                return Err(bad);
            }
            t.by_symbol.insert(symbol.clone(), rules.id);
            t.list.push(Instrument { symbol, rules });
        }
        let series = r.u32("series count")? as usize;
        let next_change_ms = r.i64("next roll")?;
        for cfg in option_series {
            t.add_series(cfg).map_err(mismatch)?;
        }
        // A series added to the config since the snapshot lists at the next roll.
        t.next_change_ms = if series == option_series.len() {
            next_change_ms
        } else {
            i64::MIN
        };
        for cfg in instruments {
            if !t.by_symbol.contains_key(&cfg.symbol) {
                t.list_explicit(cfg, now_ms).map_err(mismatch)?;
            }
        }
        Ok(t)
    }
}

fn probe_rules(what: &str, spec: Spec) -> Result<(), InstrumentConfigError> {
    InstrumentRules {
        id: InstrumentId(0),
        kind: InstrumentKind::Perpetual {
            underlying: UnderlyingId(0),
        },
        price_scale: spec.price_scale,
        qty_scale: spec.qty_scale,
        tick: spec.tick,
        lot: spec.lot,
        min_qty: spec.min_qty,
        max_qty: spec.max_qty,
        multiplier: spec.multiplier,
        status: InstrumentStatus::Trading,
    }
    .validate()
    .map_err(|source| InstrumentConfigError::Rules {
        what: what.to_owned(),
        source,
    })
}

/// The next `count` expiry dates of a calendar whose expiry instant is strictly after `now_ms`.
pub fn upcoming_expiries(rule: ExpiryRule, count: u32, now_ms: i64) -> Vec<ExpiryDate> {
    let mut out = Vec::with_capacity(count as usize);
    let Some(today) = ExpiryDate::of_instant_ms(now_ms) else {
        return out;
    };
    let mut day = today.days_since_epoch();
    match rule {
        ExpiryRule::Daily | ExpiryRule::Weekly => {
            let step = if rule == ExpiryRule::Daily { 1 } else { 7 };
            if rule == ExpiryRule::Weekly {
                while ExpiryDate::from_days_since_epoch(day).map(ExpiryDate::weekday)
                    != Some(Weekday::Friday)
                {
                    day += 1;
                }
            }
            while out.len() < count as usize {
                let Some(d) = ExpiryDate::from_days_since_epoch(day) else {
                    break;
                };
                if d.expiry_ms() > now_ms {
                    out.push(d);
                }
                day += step;
            }
        }
        ExpiryRule::Monthly => {
            let (mut y, mut m) = (today.year(), today.month());
            while out.len() < count as usize {
                let Some(d) = last_friday(y, m) else { break };
                if d.expiry_ms() > now_ms {
                    out.push(d);
                }
                (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            }
        }
    }
    out
}

fn last_friday(year: u16, month: u8) -> Option<ExpiryDate> {
    let mut d = (28..=31)
        .rev()
        .find_map(|day| ExpiryDate::new(year, month, day))?;
    while d.weekday() != Weekday::Friday {
        d = ExpiryDate::from_days_since_epoch(d.days_since_epoch() - 1)?;
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Saturday 2026-11-28 12:00:00 UTC.
    const NOW: i64 = 1_795_867_200_000;

    fn date(y: u16, m: u8, d: u8) -> ExpiryDate {
        ExpiryDate::new(y, m, d).unwrap()
    }

    const CONFIG: &str = r#"
        [[instruments]]
        symbol = "BTC-PERP"
        price_scale = 1
        qty_scale = 3
        tick = "0.5"
        lot = "0.001"
        min_qty = "0.001"
        max_qty = 100

        [[instruments]]
        symbol = "ETH-USDT"
        price_scale = 2
        qty_scale = 4
        tick = "0.01"
        lot = "0.0001"
        min_qty = "0.001"
        max_qty = "1000"
        status = "halted"

        [[instruments]]
        symbol = "BTC-261225"
        price_scale = 1
        qty_scale = 0
        tick = "0.5"
        lot = "1"
        min_qty = "1"
        max_qty = "10000"
        multiplier = 10

        [[option_series]]
        underlying = "BTC"
        expiries = "weekly"
        count = 4
        strikes = { reference = "100000", step = "5000", each_side = 5 }
        price_scale = 1
        qty_scale = 1
        tick = "0.5"
        lot = "0.1"
        min_qty = "0.1"
        max_qty = "1000"
    "#;

    fn table() -> Instruments {
        let cfg: InstrumentsConfig = toml::from_str(CONFIG).unwrap();
        Instruments::from_config(&cfg, NOW).unwrap()
    }

    #[test]
    fn roll_is_a_comparison_until_the_nearest_expiry() {
        let mut t = table();
        let first = date(2026, 12, 4).expiry_ms();
        assert_eq!(t.next_change_ms, first);
        assert_eq!(t.roll(first - 1).unwrap(), Roll::default());
        assert_eq!(t.roll(first).unwrap().expired.len(), 22);
        assert_eq!(t.next_change_ms, date(2026, 12, 11).expiry_ms());
        // Only perpetuals and spot: nothing ever changes.
        let cfg: InstrumentsConfig = toml::from_str(
            "[[instruments]]\nsymbol = \"BTC-PERP\"\nprice_scale = 1\nqty_scale = 0\n\
             tick = \"0.5\"\nlot = \"1\"\nmin_qty = \"1\"\nmax_qty = \"10\"\n",
        )
        .unwrap();
        let t = Instruments::from_config(&cfg, NOW).unwrap();
        assert_eq!(t.next_change_ms, i64::MAX);
    }

    #[test]
    fn weekly_series_list_the_next_fridays_from_a_fixed_now() {
        assert_eq!(
            upcoming_expiries(ExpiryRule::Weekly, 4, NOW),
            vec![
                date(2026, 12, 4),
                date(2026, 12, 11),
                date(2026, 12, 18),
                date(2026, 12, 25)
            ]
        );
        // On a Friday before 08:00 UTC that Friday still counts; at 08:00 it has expired.
        let fri = date(2026, 12, 4).expiry_ms();
        assert_eq!(
            upcoming_expiries(ExpiryRule::Weekly, 1, fri - 1),
            vec![date(2026, 12, 4)]
        );
        assert_eq!(
            upcoming_expiries(ExpiryRule::Weekly, 1, fri),
            vec![date(2026, 12, 11)]
        );
        assert_eq!(
            upcoming_expiries(ExpiryRule::Daily, 2, NOW),
            vec![date(2026, 11, 29), date(2026, 11, 30)]
        );
        assert_eq!(
            upcoming_expiries(ExpiryRule::Monthly, 3, NOW),
            vec![date(2026, 12, 25), date(2027, 1, 29), date(2027, 2, 26)]
        );
        // Late on the last Friday of the month: the month's expiry has passed.
        assert_eq!(
            upcoming_expiries(ExpiryRule::Monthly, 1, date(2026, 11, 27).expiry_ms()),
            vec![date(2026, 12, 25)]
        );
    }

    #[test]
    fn config_lists_explicit_instruments_and_series() {
        let t = table();
        // 3 explicit + 4 expiries × 11 strikes × (call, put).
        assert_eq!(t.len(), 3 + 4 * 11 * 2);
        let perp = t.by_symbol("BTC-PERP").unwrap();
        assert_eq!(perp, InstrumentId(0));
        let r = t.rules(perp).unwrap();
        assert_eq!((r.tick, r.lot, r.max_qty), (Price(5), Qty(1), Qty(100_000)));
        assert_eq!(
            t.rules(InstrumentId(1)).unwrap().status,
            InstrumentStatus::Halted
        );
        let fut = t.rules(t.by_symbol("BTC-261225").unwrap()).unwrap();
        assert_eq!(fut.multiplier, 10);
        assert_eq!(fut.kind.expiry_ms(), Some(date(2026, 12, 25).expiry_ms()));
        let opt = t.by_symbol("BTC-261204-75000-P").unwrap();
        let r = t.rules(opt).unwrap();
        assert_eq!(
            r.kind,
            InstrumentKind::Option {
                underlying: t.underlying("BTC").unwrap(),
                expiry_ms: date(2026, 12, 4).expiry_ms(),
                strike: Price(750_000),
                call: false
            }
        );
        assert_eq!(t.symbol(opt), Some("BTC-261204-75000-P"));
        assert!(t.by_symbol("BTC-261204-70000-P").is_none());
        assert!(t.by_symbol("BTC-261225-125000-C").is_some());
        assert_eq!(t.underlying_codes(), ["BTC", "ETH"]);
        // Every id is its index, every symbol maps back to it.
        for (i, inst) in t.iter().enumerate() {
            assert_eq!(inst.rules().id, InstrumentId(i as u32));
            assert_eq!(t.by_symbol(inst.symbol()), Some(inst.rules().id));
        }
    }

    #[test]
    fn roll_expires_past_contracts_and_lists_new_expiries() {
        let mut t = table();
        let before = t.len();
        assert_eq!(t.roll(NOW).unwrap(), Roll::default());
        let first = date(2026, 12, 4).expiry_ms();
        let roll = t.roll(first).unwrap();
        assert_eq!(roll.expired.len(), 22);
        for id in &roll.expired {
            let r = t.rules(*id).unwrap();
            assert_eq!(r.status, InstrumentStatus::Expired);
            assert_eq!(r.kind.expiry_ms(), Some(first));
        }
        assert_eq!(roll.listed.len(), 22);
        assert!(t.symbol(roll.listed[0]).unwrap().starts_with("BTC-270101-"));
        assert_eq!(t.len(), before + 22);
        // Expiry is final.
        assert!(!t.set_status(roll.expired[0], InstrumentStatus::Trading));
        // The future expires with the Christmas options.
        let roll = t.roll(date(2026, 12, 25).expiry_ms()).unwrap();
        assert!(roll.expired.contains(&t.by_symbol("BTC-261225").unwrap()));
    }

    #[test]
    fn bad_config_is_refused() {
        let parse = |s: &str| toml::from_str::<InstrumentsConfig>(s);
        assert!(parse("[[instruments]]\nsymbol = \"BTC-PERP\"\nbogus = 1").is_err());
        let base = "[[instruments]]\nsymbol = \"BTC-PERP\"\nprice_scale = 1\nqty_scale = 0\n\
                    lot = \"1\"\nmin_qty = \"1\"\nmax_qty = \"10\"\n";
        // A float has already been rounded: refused.
        assert!(parse(&format!("{base}tick = 0.5")).is_err());
        let cfg = parse(&format!("{base}tick = \"0.05\"")).unwrap();
        assert!(matches!(
            Instruments::from_config(&cfg, NOW),
            Err(InstrumentConfigError::Decimal { field: "tick", .. })
        ));
        let cfg = parse(&format!("{base}tick = \"0\"")).unwrap();
        assert!(matches!(
            Instruments::from_config(&cfg, NOW),
            Err(InstrumentConfigError::Rules { .. })
        ));
        let mut cfg = parse(&format!("{base}tick = \"0.5\"")).unwrap();
        cfg.instruments.push(cfg.instruments[0].clone());
        assert_eq!(
            Instruments::from_config(&cfg, NOW).unwrap_err(),
            InstrumentConfigError::Duplicate("BTC-PERP".into())
        );
        cfg.instruments[1].symbol = "BTC-PERP-X".into();
        assert!(matches!(
            Instruments::from_config(&cfg, NOW),
            Err(InstrumentConfigError::Symbol { .. })
        ));
        let mut series: InstrumentsConfig = toml::from_str(CONFIG).unwrap();
        series.option_series[0].strikes.each_side = 5000;
        assert!(matches!(
            Instruments::from_config(&series, NOW),
            Err(InstrumentConfigError::Series { .. })
        ));
    }

    #[test]
    fn explicit_contracts_past_expiry_are_listed_expired() {
        let cfg: InstrumentsConfig = toml::from_str(CONFIG).unwrap();
        let t = Instruments::from_config(&cfg, date(2027, 1, 1).expiry_ms()).unwrap();
        let fut = t.by_symbol("BTC-261225").unwrap();
        assert_eq!(t.rules(fut).unwrap().status, InstrumentStatus::Expired);
    }
}
