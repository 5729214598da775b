//! Exact decimal amounts: an unsigned integer count of `10^-scale` units, parsed from and
//! written as decimal text. Balances are never floating point.

use std::fmt;

use thiserror::Error;

/// The most decimal places an asset may have (18, as the smallest unit of most tokens).
pub const MAX_SCALE: u8 = 18;

/// Why a decimal text is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AmountError {
    /// Empty text.
    #[error("empty amount")]
    Empty,
    /// A minus sign: liabilities to a customer are never negative.
    #[error("negative amount {0:?}: a balance owed to a customer is never negative")]
    Negative(String),
    /// Not digits with an optional fraction.
    #[error("{0:?} is not a decimal number (digits, optionally a '.' and more digits)")]
    Syntax(String),
    /// More decimal places than the asset's scale allows.
    #[error("{text:?} has more than {scale} decimal places")]
    TooPrecise {
        /// The text.
        text: String,
        /// The allowed places.
        scale: u8,
    },
    /// Too large for 128 bits at the asset's scale.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// The decimal places `text` has (0 for an integer), without validating it further.
pub fn decimal_places(text: &str) -> usize {
    text.split_once('.').map_or(0, |(_, f)| f.len())
}

/// Parses non-negative decimal text (`123`, `0.5`, `1.250`) into units of `10^-scale`.
pub fn parse_amount(text: &str, scale: u8) -> Result<u128, AmountError> {
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    if text.starts_with('-') {
        return Err(AmountError::Negative(text.to_owned()));
    }
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (text.contains('.') && frac.is_empty()) {
        return Err(AmountError::Syntax(text.to_owned()));
    }
    if frac.len() > usize::from(scale) {
        return Err(AmountError::TooPrecise {
            text: text.to_owned(),
            scale,
        });
    }
    let too_large = || AmountError::TooLarge(text.to_owned());
    let mut v: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(b - b'0')))
            .ok_or_else(too_large)?;
    }
    for _ in frac.len()..usize::from(scale) {
        v = v.checked_mul(10).ok_or_else(too_large)?;
    }
    Ok(v)
}

/// `units` at `scale` as decimal text without trailing fractional zeros (`1.5`, `100`).
pub fn format_amount(units: u128, scale: u8) -> String {
    Formatted(units, scale).to_string()
}

struct Formatted(u128, u8);

impl fmt::Display for Formatted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (units, scale) = (self.0, u32::from(self.1));
        let pow = 10u128.pow(scale);
        let (int, frac) = (units / pow, units % pow);
        if frac == 0 {
            return write!(f, "{int}");
        }
        let text = format!("{frac:0width$}", width = scale as usize);
        write!(f, "{int}.{}", text.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_exactly_at_the_scale() {
        assert_eq!(parse_amount("1.5", 8), Ok(150_000_000));
        assert_eq!(parse_amount("0", 8), Ok(0));
        assert_eq!(parse_amount("12", 0), Ok(12));
        assert_eq!(parse_amount("0.000000000000000001", 18), Ok(1));
        assert_eq!(parse_amount("007.10", 2), Ok(710));
    }

    #[test]
    fn refuses_what_is_not_a_non_negative_decimal() {
        assert_eq!(parse_amount("", 2), Err(AmountError::Empty));
        assert!(matches!(
            parse_amount("-1", 2),
            Err(AmountError::Negative(_))
        ));
        for bad in ["1.", ".5", "1e3", "+1", "1,5", " 1", "1.2.3", "0x10", "NaN"] {
            assert!(
                matches!(parse_amount(bad, 2), Err(AmountError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_amount("1.123", 2),
            Err(AmountError::TooPrecise { scale: 2, .. })
        ));
        assert!(matches!(
            parse_amount("340282366920938463463374607431768211456", 0),
            Err(AmountError::TooLarge(_))
        ));
        // 10^20 at 18 places is 10^38 units, below 2^128; 10^21 is not.
        assert_eq!(
            parse_amount("100000000000000000000", 18),
            Ok(10u128.pow(38))
        );
        assert!(matches!(
            parse_amount("1000000000000000000000", 18),
            Err(AmountError::TooLarge(_))
        ));
    }

    #[test]
    fn formats_without_trailing_zeros() {
        assert_eq!(format_amount(150_000_000, 8), "1.5");
        assert_eq!(format_amount(100, 2), "1");
        assert_eq!(format_amount(1, 18), "0.000000000000000001");
        assert_eq!(format_amount(0, 8), "0");
        assert_eq!(format_amount(42, 0), "42");
    }

    proptest! {
        #[test]
        fn format_then_parse_is_the_identity(units in any::<u64>(), scale in 0u8..=MAX_SCALE) {
            let units = u128::from(units);
            prop_assert_eq!(parse_amount(&format_amount(units, scale), scale), Ok(units));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,48}", scale in 0u8..=MAX_SCALE) {
            let _ = parse_amount(&text, scale);
        }
    }
}
