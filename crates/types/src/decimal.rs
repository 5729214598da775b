//! Exact fixed-point decimals for prices and quantities.

use std::fmt;

/// Why decimal text is not a valid fixed-point value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Empty, or not `[-]digits[.digits]`.
    #[error("not a decimal number")]
    Malformed,
    /// More significant fractional digits than the instrument's scale allows.
    #[error("more than {scale} decimal places")]
    TooPrecise {
        /// The scale.
        scale: u8,
    },
    /// Does not fit in 64 bits at this scale.
    #[error("number out of range")]
    Overflow,
}

const POW10: [i64; 19] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
];

/// Parses decimal text (`-12.3400`) into an integer count of `10^-scale` units, exactly.
/// Trailing zeros beyond the scale are accepted; significant digits beyond it are an error,
/// never rounded. No exponent, no `+`, no spaces.
pub fn parse_fixed(text: &[u8], scale: u8) -> Result<i64, DecimalError> {
    if scale as usize >= POW10.len() {
        return Err(DecimalError::Overflow);
    }
    let (neg, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(DecimalError::Malformed);
    }
    let (int_part, frac_part) = match digits.iter().position(|&b| b == b'.') {
        Some(p) => (&digits[..p], &digits[p + 1..]),
        None => (digits, &[][..]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(DecimalError::Malformed);
    }
    let mut v: i64 = 0;
    for &b in int_part {
        if !b.is_ascii_digit() {
            return Err(DecimalError::Malformed);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or(DecimalError::Overflow)?;
    }
    v = v
        .checked_mul(POW10[scale as usize])
        .ok_or(DecimalError::Overflow)?;
    let mut frac: i64 = 0;
    for (i, &b) in frac_part.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(DecimalError::Malformed);
        }
        if i < scale as usize {
            frac = frac * 10 + i64::from(b - b'0');
        } else if b != b'0' {
            return Err(DecimalError::TooPrecise { scale });
        }
    }
    let shown = frac_part.len().min(scale as usize);
    frac *= POW10[scale as usize - shown];
    let v = v.checked_add(frac).ok_or(DecimalError::Overflow)?;
    Ok(if neg { -v } else { v })
}

/// Writes `value` (in `10^-scale` units) as decimal text with exactly `scale` decimals,
/// without allocating beyond `out`'s growth (it is used when encoding execution reports).
pub fn format_fixed(value: i64, scale: u8, out: &mut Vec<u8>) {
    let scale = (scale as usize).min(POW10.len() - 1);
    let abs = value.unsigned_abs();
    if value < 0 {
        out.push(b'-');
    }
    // Digits of |value|, at least scale + 1 of them so there is an integer digit.
    let mut digits = [b'0'; 24];
    let mut n = 0;
    let mut v = abs;
    while v > 0 || n <= scale {
        digits[n] = b'0' + (v % 10) as u8;
        v /= 10;
        n += 1;
    }
    for i in (scale..n).rev() {
        out.push(digits[i]);
    }
    if scale > 0 {
        out.push(b'.');
        for i in (0..scale).rev() {
            out.push(digits[i]);
        }
    }
}

macro_rules! fixed {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ", $what, " as an integer count of `10^-scale` units of its instrument.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub i64);

        impl $name {
            /// Zero.
            pub const ZERO: Self = Self(0);

            #[doc = concat!("Parses decimal text exactly at `scale` decimal places.")]
            pub fn parse(text: &[u8], scale: u8) -> Result<Self, DecimalError> {
                parse_fixed(text, scale).map(Self)
            }

            /// The raw integer value.
            pub const fn units(self) -> i64 {
                self.0
            }

            /// Decimal text at `scale` decimal places.
            pub fn display(self, scale: u8) -> Scaled {
                Scaled(self.0, scale)
            }
        }
    };
}

fixed!(Price, "price");
fixed!(Qty, "quantity");

/// A fixed-point value with its scale, for `Display`.
#[derive(Debug, Clone, Copy)]
pub struct Scaled(i64, u8);

impl fmt::Display for Scaled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = Vec::with_capacity(24);
        format_fixed(self.0, self.1, &mut v);
        f.write_str(std::str::from_utf8(&v).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_exactly_at_scale() {
        assert_eq!(parse_fixed(b"100.5", 2), Ok(10050));
        assert_eq!(parse_fixed(b"0.0550", 4), Ok(550));
        assert_eq!(parse_fixed(b"-1.25", 2), Ok(-125));
        assert_eq!(parse_fixed(b"7", 3), Ok(7000));
        assert_eq!(parse_fixed(b".5", 1), Ok(5));
        assert_eq!(parse_fixed(b"5.", 1), Ok(50));
        assert_eq!(parse_fixed(b"1.2300", 2), Ok(123));
    }

    #[test]
    fn rejects_what_is_not_exact_or_not_a_number() {
        assert_eq!(
            parse_fixed(b"1.234", 2),
            Err(DecimalError::TooPrecise { scale: 2 })
        );
        for bad in [
            &b""[..],
            b"-",
            b".",
            b"1e5",
            b"+1",
            b" 1",
            b"1,5",
            b"1.2.3",
            b"--1",
        ] {
            assert_eq!(parse_fixed(bad, 2), Err(DecimalError::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse_fixed(b"99999999999999999999", 0),
            Err(DecimalError::Overflow)
        );
        assert_eq!(parse_fixed(b"100000000000", 8), Err(DecimalError::Overflow));
    }

    #[test]
    fn formats_with_all_decimals() {
        assert_eq!(Price(10050).display(2).to_string(), "100.50");
        assert_eq!(Price(-5).display(3).to_string(), "-0.005");
        assert_eq!(Qty(7).display(0).to_string(), "7");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(v in (i64::MIN + 1)..=i64::MAX, scale in 0u8..=8) {
            let mut s = Vec::new();
            format_fixed(v, scale, &mut s);
            prop_assert_eq!(parse_fixed(&s, scale), Ok(v));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40), scale in 0u8..=30) {
            let _ = parse_fixed(&b, scale);
        }
    }
}
