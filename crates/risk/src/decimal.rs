//! [`Decimal`]: the exact decimal of risk limits (quote-currency amounts, positions, percents).

use std::fmt;
use std::str::FromStr;

/// Why text is not a valid [`Decimal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecimalParseError {
    /// Empty, or not `[-]digits[.digits]`.
    #[error("not a decimal number (expected e.g. \"1000000\" or \"2.5\")")]
    Malformed,
    /// More than 18 significant fractional digits.
    #[error("more than 18 decimal places")]
    TooPrecise,
    /// Larger than about 1.7 × 10^20.
    #[error("number out of range")]
    Overflow,
}

/// An exact decimal with [`Decimal::SCALE`] fractional digits, held as an `i128` count of
/// `10^-18` units (range about ±1.7 × 10^20).
///
/// Every amount the risk checks compare is converted to this one scale: an instrument's
/// `price × qty × multiplier` (at `price_scale + qty_scale` decimals, at most 18) is multiplied
/// by a power of ten, never divided, so the comparison with a limit is exact. Limits are written
/// in the config as strings (`"2500000.50"`) or integers; floats are refused, because a binary
/// fraction cannot say `0.1` exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Decimal(i128);

const ONE: i128 = 1_000_000_000_000_000_000;

impl Decimal {
    /// Fractional digits.
    pub const SCALE: u8 = 18;
    /// Zero.
    pub const ZERO: Decimal = Decimal(0);
    /// The largest value.
    pub const MAX: Decimal = Decimal(i128::MAX);

    /// A whole number.
    pub const fn from_int(v: i64) -> Self {
        // |i64| × 10^18 < 9.3 × 10^36 < i128::MAX: cannot overflow.
        Decimal(v as i128 * ONE)
    }

    /// From a raw count of `10^-18` units.
    pub const fn from_units(units: i128) -> Self {
        Decimal(units)
    }

    /// The raw count of `10^-18` units.
    pub const fn units(self) -> i128 {
        self.0
    }

    /// True if below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Parses `[-]digits[.digits]` exactly (trailing zeros beyond 18 decimals are accepted,
    /// significant digits are an error, never rounded).
    pub fn parse(text: &str) -> Result<Self, DecimalParseError> {
        let (neg, digits) = match text.as_bytes().split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text.as_bytes()),
        };
        let (int_part, frac_part) = match digits.iter().position(|&b| b == b'.') {
            Some(p) => (&digits[..p], &digits[p + 1..]),
            None => (digits, &[][..]),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DecimalParseError::Malformed);
        }
        let mut v: i128 = 0;
        for &b in int_part {
            if !b.is_ascii_digit() {
                return Err(DecimalParseError::Malformed);
            }
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(i128::from(b - b'0')))
                .ok_or(DecimalParseError::Overflow)?;
        }
        v = v.checked_mul(ONE).ok_or(DecimalParseError::Overflow)?;
        let mut frac: i128 = 0;
        let mut place = ONE;
        for &b in frac_part {
            if !b.is_ascii_digit() {
                return Err(DecimalParseError::Malformed);
            }
            place /= 10;
            if place == 0 {
                if b != b'0' {
                    return Err(DecimalParseError::TooPrecise);
                }
            } else {
                frac += i128::from(b - b'0') * place;
            }
        }
        let v = v.checked_add(frac).ok_or(DecimalParseError::Overflow)?;
        Ok(Decimal(if neg { -v } else { v }))
    }
}

impl FromStr for Decimal {
    type Err = DecimalParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::parse(s)
    }
}

impl fmt::Display for Decimal {
    /// The shortest exact text: no trailing fractional zeros, no exponent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let abs = self.0.unsigned_abs();
        let int = abs / ONE as u128;
        let mut frac = abs % ONE as u128;
        if self.0 < 0 {
            f.write_str("-")?;
        }
        write!(f, "{int}")?;
        if frac != 0 {
            let mut width = 18;
            while frac % 10 == 0 {
                frac /= 10;
                width -= 1;
            }
            write!(f, ".{frac:0width$}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Decimal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Decimal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Decimal;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal number as a string (e.g. \"2.5\") or an integer")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Decimal, E> {
                Decimal::parse(v).map_err(|e| E::custom(format_args!("{v:?}: {e}")))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Decimal, E> {
                Ok(Decimal::from_int(v))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Decimal, E> {
                i64::try_from(v)
                    .map(Decimal::from_int)
                    .map_err(|_| E::custom("number out of range"))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Decimal, E> {
                Err(E::custom(format_args!(
                    "{v} is a float; write decimal limits as strings (e.g. \"{v}\") so they are exact"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly_and_print_shortest() {
        assert_eq!(Decimal::parse("1").unwrap(), Decimal::from_int(1));
        assert_eq!(Decimal::parse("0.1").unwrap().units(), ONE / 10);
        assert_eq!(Decimal::parse("-2.50").unwrap().units(), -5 * ONE / 2);
        assert_eq!(Decimal::parse(".000000000000000001").unwrap().units(), 1);
        assert_eq!(
            Decimal::parse("1.0000000000000000000").unwrap(),
            Decimal::from_int(1)
        );
        assert_eq!(
            Decimal::parse("0.0000000000000000001"),
            Err(DecimalParseError::TooPrecise)
        );
        for bad in [
            "", "-", ".", "1e3", "+1", " 1", "1,5", "1.2.3", "--1", "0x10",
        ] {
            assert_eq!(
                Decimal::parse(bad),
                Err(DecimalParseError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            Decimal::parse("200000000000000000000"),
            Err(DecimalParseError::Overflow)
        );
        for s in [
            "0",
            "1",
            "-1",
            "2.5",
            "1000000",
            "0.000000000000000001",
            "-0.25",
        ] {
            assert_eq!(Decimal::parse(s).unwrap().to_string(), s);
        }
    }
}
