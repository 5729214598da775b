//! The one symbol format, used on FIX (Symbol(55)) and on the WebSocket API (`symbol`) alike.
//!
//! ```text
//! symbol     = option / future / perpetual / spot
//! option     = underlying "-" date "-" strike "-" ("C" / "P")   BTC-261225-100000-C
//! future     = underlying "-" date                               BTC-261225
//! perpetual  = underlying "-PERP"                                BTC-PERP
//! spot       = underlying "-" quote                              BTC-USDT
//! underlying = 1*10 (A-Z / 0-9), at least one letter            the base asset
//! quote      = 1*10 (A-Z / 0-9), at least one letter, not "PERP"
//! date       = YYMMDD, a valid date in 2000-2099; the contract expires at 08:00:00 UTC that day
//! strike     = a positive decimal in canonical form: no sign, no leading zeros ("0.5", not
//!              ".5" or "00.5"), no trailing fractional zeros ("2.5", not "2.50"), no "."
//!              without a fraction; at most the option's price scale in decimals
//! ```
//!
//! Why these choices:
//! - Every part is separated by `-`, so a symbol splits without a currency list: spot is written
//!   `BTC-USDT` rather than the run-together `BTCUSDT` (which cannot be split into base and quote
//!   without knowing every quote currency; ccxt-style clients map a market's id to whatever the
//!   venue lists, so nothing is lost).
//! - The second part decides the kind: six digits are a date (a quote currency must contain a
//!   letter), `PERP` a perpetual, anything else a spot quote.
//! - Symbols are canonical: one instrument has exactly one spelling, so the text can be the key
//!   of the symbol → id map and a client cannot address one instrument under two names.
//! - The expiry time of day is fixed (08:00 UTC, the usual crypto-derivatives settlement time),
//!   so the symbol alone determines every listed contract's expiry instant.

use std::fmt::Write as _;

use portcullis_types::{parse_fixed, Price};

/// Dated contracts expire at this hour (UTC) of their expiry date.
pub const EXPIRY_HOUR_UTC: i64 = 8;

const MS_PER_DAY: i64 = 86_400_000;
const MAX_CODE_LEN: usize = 10;

/// A calendar date (UTC) on which a dated contract expires, at [`EXPIRY_HOUR_UTC`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExpiryDate {
    year: u16,
    month: u8,
    day: u8,
}

/// Day of the week, for expiry rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl ExpiryDate {
    /// A date in 2000-2099 (what YYMMDD can name), if it exists.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Self> {
        if !(2000..=2099).contains(&year) || !(1..=12).contains(&month) || day == 0 {
            return None;
        }
        if day > days_in_month(year, month) {
            return None;
        }
        Some(Self { year, month, day })
    }

    /// Year (2000-2099).
    pub fn year(self) -> u16 {
        self.year
    }

    /// Month (1-12).
    pub fn month(self) -> u8 {
        self.month
    }

    /// Day of the month (1-31).
    pub fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01.
    pub fn days_since_epoch(self) -> i64 {
        days_from_civil(
            i64::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        )
    }

    /// The date `days` days after 1970-01-01, if it is in 2000-2099.
    pub fn from_days_since_epoch(days: i64) -> Option<Self> {
        let (y, m, d) = civil_from_days(days);
        let y = u16::try_from(y).ok()?;
        Self::new(y, m as u8, d as u8)
    }

    /// The UTC date of an instant (ms since the epoch), if it is in 2000-2099.
    pub fn of_instant_ms(ms: i64) -> Option<Self> {
        Self::from_days_since_epoch(ms.div_euclid(MS_PER_DAY))
    }

    /// The expiry instant: [`EXPIRY_HOUR_UTC`]:00:00 UTC on this date, in ms since the epoch.
    pub fn expiry_ms(self) -> i64 {
        self.days_since_epoch() * MS_PER_DAY + EXPIRY_HOUR_UTC * 3_600_000
    }

    /// The day of the week.
    pub fn weekday(self) -> Weekday {
        // 1970-01-01 was a Thursday.
        match self.days_since_epoch().rem_euclid(7) {
            0 => Weekday::Thursday,
            1 => Weekday::Friday,
            2 => Weekday::Saturday,
            3 => Weekday::Sunday,
            4 => Weekday::Monday,
            5 => Weekday::Tuesday,
            _ => Weekday::Wednesday,
        }
    }

    /// Parses `YYMMDD`.
    pub fn parse_yymmdd(text: &[u8]) -> Option<Self> {
        if text.len() != 6 || !text.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let two = |i: usize| (text[i] - b'0') * 10 + (text[i + 1] - b'0');
        Self::new(2000 + u16::from(two(0)), two(2), two(4))
    }

    /// Appends `YYMMDD`.
    pub fn write_yymmdd(self, out: &mut String) {
        let _ = write!(
            out,
            "{:02}{:02}{:02}",
            self.year % 100,
            self.month,
            self.day
        );
    }
}

fn is_leap(year: u16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Why text is not a valid symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    /// Not one of the four shapes (wrong number of `-`-separated parts, empty parts).
    #[error("symbol must look like BTC-261225-100000-C, BTC-261225, BTC-PERP or BTC-USDT")]
    Shape,
    /// The underlying or quote code is not 1-10 of `A-Z0-9` with a letter.
    #[error("asset codes are 1 to 10 upper-case letters and digits, with at least one letter")]
    Code,
    /// The expiry is not a valid YYMMDD date.
    #[error("expiry must be a valid YYMMDD date")]
    Date,
    /// The strike is not a canonical positive decimal at the price scale.
    #[error("strike must be a positive decimal without leading or trailing zeros, within the price scale")]
    Strike,
    /// The option type is not `C` or `P`.
    #[error("option type must be C or P")]
    CallPut,
}

/// What a symbol names, apart from its underlying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SymbolKind<'a> {
    /// An option.
    Option {
        /// Expiry date.
        expiry: ExpiryDate,
        /// Strike, in the option's price scale.
        strike: Price,
        /// Call (`C`) or put (`P`).
        call: bool,
    },
    /// A dated future.
    Future {
        /// Expiry date.
        expiry: ExpiryDate,
    },
    /// A perpetual swap.
    Perpetual,
    /// A spot pair.
    Spot {
        /// The quote asset code.
        quote: &'a str,
    },
}

/// A parsed symbol, borrowing its codes from the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Symbol<'a> {
    /// The underlying (base asset) code.
    pub underlying: &'a str,
    /// The contract.
    pub kind: SymbolKind<'a>,
}

fn valid_code(code: &str) -> bool {
    let b = code.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_CODE_LEN
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && b.iter().any(u8::is_ascii_uppercase)
}

/// Parses a canonical strike; `None` if it is not canonical, not positive or too precise.
fn parse_strike(text: &str, price_scale: u8) -> Option<Price> {
    let b = text.as_bytes();
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.as_bytes(), Some(f.as_bytes())),
        None => (b, None),
    };
    if int.is_empty() || !int.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if int.len() > 1 && int[0] == b'0' {
        return None;
    }
    if let Some(f) = frac {
        if f.is_empty() || !f.iter().all(u8::is_ascii_digit) || f.last() == Some(&b'0') {
            return None;
        }
    }
    let v = parse_fixed(b, price_scale).ok()?;
    (v > 0).then_some(Price(v))
}

/// Appends a strike in canonical form.
fn write_strike(strike: Price, price_scale: u8, out: &mut String) {
    let pow = 10i64.pow(u32::from(price_scale.min(18)));
    let int = strike.0 / pow;
    let mut frac = strike.0 % pow;
    let _ = write!(out, "{int}");
    if frac != 0 {
        let mut digits = usize::from(price_scale);
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        let _ = write!(out, ".{frac:0digits$}");
    }
}

impl<'a> Symbol<'a> {
    /// Parses a symbol; strikes are read at `price_scale` (the option's price scale).
    pub fn parse(text: &'a str, price_scale: u8) -> Result<Self, SymbolError> {
        let mut parts = text.split('-');
        let underlying = parts.next().ok_or(SymbolError::Shape)?;
        let second = parts.next().ok_or(SymbolError::Shape)?;
        let third = parts.next();
        let fourth = parts.next();
        if parts.next().is_some() || underlying.is_empty() || second.is_empty() {
            return Err(SymbolError::Shape);
        }
        if !valid_code(underlying) {
            return Err(SymbolError::Code);
        }
        let is_date = second.len() == 6 && second.bytes().all(|c| c.is_ascii_digit());
        let kind = match (third, fourth) {
            (None, None) if second == "PERP" => SymbolKind::Perpetual,
            (None, None) if is_date => SymbolKind::Future {
                expiry: ExpiryDate::parse_yymmdd(second.as_bytes()).ok_or(SymbolError::Date)?,
            },
            (None, None) if second.bytes().all(|c| c.is_ascii_digit()) => {
                return Err(SymbolError::Date)
            }
            (None, None) => {
                if !valid_code(second) {
                    return Err(SymbolError::Code);
                }
                SymbolKind::Spot { quote: second }
            }
            (Some(strike), Some(cp)) => {
                if !second.bytes().all(|c| c.is_ascii_digit()) || second.len() != 6 {
                    return Err(SymbolError::Date);
                }
                let expiry =
                    ExpiryDate::parse_yymmdd(second.as_bytes()).ok_or(SymbolError::Date)?;
                let strike = parse_strike(strike, price_scale).ok_or(SymbolError::Strike)?;
                let call = match cp {
                    "C" => true,
                    "P" => false,
                    _ => return Err(SymbolError::CallPut),
                };
                SymbolKind::Option {
                    expiry,
                    strike,
                    call,
                }
            }
            _ => return Err(SymbolError::Shape),
        };
        Ok(Self { underlying, kind })
    }

    /// The symbol text; the strike is written from `price_scale` units.
    pub fn format(&self, price_scale: u8) -> String {
        let mut s = String::with_capacity(32);
        s.push_str(self.underlying);
        s.push('-');
        match self.kind {
            SymbolKind::Option {
                expiry,
                strike,
                call,
            } => {
                expiry.write_yymmdd(&mut s);
                s.push('-');
                write_strike(strike, price_scale, &mut s);
                s.push_str(if call { "-C" } else { "-P" });
            }
            SymbolKind::Future { expiry } => expiry.write_yymmdd(&mut s),
            SymbolKind::Perpetual => s.push_str("PERP"),
            SymbolKind::Spot { quote } => s.push_str(quote),
        }
        s
    }

    /// The expiry instant (ms since the epoch) of a dated contract.
    pub fn expiry_ms(&self) -> Option<i64> {
        match self.kind {
            SymbolKind::Option { expiry, .. } | SymbolKind::Future { expiry } => {
                Some(expiry.expiry_ms())
            }
            SymbolKind::Perpetual | SymbolKind::Spot { .. } => None,
        }
    }
}

/// True if `code` is a valid underlying or quote asset code.
pub fn is_valid_asset_code(code: &str) -> bool {
    valid_code(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_date_arithmetic_matches_known_dates() {
        let d = ExpiryDate::new(2026, 12, 25).unwrap();
        assert_eq!(d.weekday(), Weekday::Friday);
        // 2026-12-25T08:00:00Z
        assert_eq!(d.expiry_ms(), 1_798_185_600_000);
        assert_eq!(ExpiryDate::of_instant_ms(d.expiry_ms()), Some(d));
        assert_eq!(
            ExpiryDate::new(2000, 1, 1).unwrap().days_since_epoch(),
            10_957
        );
        assert_eq!(
            ExpiryDate::new(2024, 2, 29).unwrap().weekday(),
            Weekday::Thursday
        );
        assert!(ExpiryDate::new(2025, 2, 29).is_none());
        assert!(ExpiryDate::new(2100, 2, 29).is_none());
        assert!(ExpiryDate::new(2026, 4, 31).is_none());
        for days in 10_957..(10_957 + 365 * 100) {
            let d = ExpiryDate::from_days_since_epoch(days).unwrap();
            assert_eq!(d.days_since_epoch(), days);
        }
    }

    #[test]
    fn symbols_round_trip() {
        for (text, scale) in [
            ("BTC-261225-100000-C", 2),
            ("BTC-261225-100000-P", 0),
            ("ETH-270101-2500.5-C", 4),
            ("XRP-260306-0.55-P", 4),
            ("BTC-261225", 2),
            ("BTC-PERP", 1),
            ("ETH-USDT", 2),
            ("1INCH-USDC", 4),
        ] {
            let s = Symbol::parse(text, scale).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(s.format(scale), text);
        }
        let s = Symbol::parse("BTC-261225-100000-C", 2).unwrap();
        assert_eq!(s.underlying, "BTC");
        assert_eq!(
            s.kind,
            SymbolKind::Option {
                expiry: ExpiryDate::new(2026, 12, 25).unwrap(),
                strike: Price(10_000_000),
                call: true
            }
        );
        assert_eq!(s.expiry_ms(), Some(1_798_185_600_000));
        assert_eq!(
            Symbol::parse("ETH-USDT", 2).unwrap().kind,
            SymbolKind::Spot { quote: "USDT" }
        );
        assert_eq!(Symbol::parse("BTC-PERP", 2).unwrap().expiry_ms(), None);
    }

    #[test]
    fn invalid_symbols_are_refused_with_a_reason() {
        use SymbolError::*;
        for (text, err) in [
            ("", Shape),
            ("BTC", Shape),
            ("BTC-", Shape),
            ("-PERP", Shape),
            ("BTC-261225-100000", Shape),
            ("BTC-261225-100000-C-X", Shape),
            ("BTC--100000-C", Shape),
            ("btc-PERP", Code),
            ("BTC-usdt", Code),
            ("BTCUSDTLONGER-PERP", Code),
            ("123-PERP", Code),
            ("BTC-2612", Date),
            ("BTC-261325", Date),
            ("BTC-260230", Date),
            ("BTC-2612250", Date),
            ("BTC-26122A-100000-C", Date),
            ("BTC-261225-0100000-C", Strike),
            ("BTC-261225-100000.0-C", Strike),
            ("BTC-261225-100000.-C", Strike),
            ("BTC-261225-.5-C", Strike),
            ("BTC-261225-0-C", Strike),
            ("BTC-261225--5-C", Shape),
            ("BTC-261225-1e5-C", Strike),
            ("BTC-261225-0.001-C", Strike),
            ("BTC-261225-100000-X", CallPut),
            ("BTC-261225-100000-c", CallPut),
            ("BTC USDT", Shape),
            ("BTC-US DT", Code),
        ] {
            assert_eq!(Symbol::parse(text, 2), Err(err), "{text:?}");
        }
    }
}
