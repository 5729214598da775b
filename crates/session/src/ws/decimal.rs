//! Exact decimal numbers for prices and quantities, parsed from the dialect's decimal text.
//!
//! The dialect sends prices and quantities as decimal strings (`"52000.00"`), sometimes as JSON
//! numbers. Floats would round them, so they stay integers: a mantissa and a count of decimal
//! places. Comparisons, multiples and products are exact; anything that would not fit is an
//! overflow, never a rounding.

use std::cmp::Ordering;
use std::fmt;

/// Most digits accepted before and after the decimal point, as in the dialect's legal range
/// `^([0-9]{1,20})(\.[0-9]{1,20})?$`.
pub const MAX_DIGITS: usize = 20;

/// Why a decimal text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not `digits[.digits]` with 1 to 20 digits on each side.
    #[error("not a decimal number")]
    Syntax,
    /// The value does not fit (more than 38 significant digits, or a product or alignment
    /// beyond 128 bits).
    #[error("decimal overflow")]
    Overflow,
    /// More decimal places than the requested scale.
    #[error("too much precision")]
    TooPrecise,
}

/// A non-negative decimal number: `mantissa / 10^scale`, kept with the number of decimal places
/// it was written with so it prints back as written (`0.00000100` stays `0.00000100`).
///
/// Equality and ordering are by value: `1.50` equals `1.5`.
#[derive(Clone, Copy)]
pub struct Decimal {
    /// The value without trailing fractional zeros: `52000.00` is 52000 with scale 0.
    mantissa: u128,
    scale: u8,
    /// Decimal places as written (at least `scale`).
    written_scale: u8,
}

const POW10: [u128; 39] = {
    let mut t = [1u128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

fn pow10(n: u32) -> Option<u128> {
    POW10.get(n as usize).copied()
}

impl Decimal {
    /// Zero.
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        scale: 0,
        written_scale: 0,
    };

    /// Parses `digits[.digits]`: 1 to 20 digits before the point and, if there is a point, 1
    /// to 20 after it. No sign, no exponent, no spaces.
    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        let b = text.as_bytes();
        let (int, frac) = match b.iter().position(|&c| c == b'.') {
            Some(dot) => (&b[..dot], Some(&b[dot + 1..])),
            None => (b, None),
        };
        let digits =
            |s: &[u8]| !s.is_empty() && s.len() <= MAX_DIGITS && s.iter().all(u8::is_ascii_digit);
        if !digits(int) || frac.is_some_and(|f| !digits(f)) {
            return Err(DecimalError::Syntax);
        }
        let frac = frac.unwrap_or(&[]);
        // Trailing fractional zeros carry no value; dropping them keeps the mantissa small.
        let significant = frac.len() - frac.iter().rev().take_while(|&&c| c == b'0').count();
        let mut m: u128 = 0;
        for &c in int.iter().chain(&frac[..significant]) {
            m = m
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(c - b'0')))
                .ok_or(DecimalError::Overflow)?;
        }
        Ok(Decimal {
            mantissa: m,
            scale: significant as u8,
            written_scale: frac.len() as u8,
        })
    }

    /// `mantissa / 10^scale`, printed with `scale` decimal places (at most 38).
    pub fn from_parts(mantissa: u128, scale: u8) -> Result<Decimal, DecimalError> {
        if scale > 38 {
            return Err(DecimalError::Overflow);
        }
        let mut d = Decimal {
            mantissa,
            scale,
            written_scale: scale,
        };
        while d.scale > 0 && d.mantissa.is_multiple_of(10) {
            d.mantissa /= 10;
            d.scale -= 1;
        }
        Ok(d)
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// Decimal places that carry value (`0.01000000` has 2).
    pub fn significant_scale(&self) -> u8 {
        self.scale
    }

    /// Decimal places as written (`0.01000000` has 8).
    pub fn written_scale(&self) -> u8 {
        self.written_scale
    }

    /// The value as an integer count of `10^-scale` units: `52000.5` at scale 2 is 5200050.
    /// [`DecimalError::TooPrecise`] if the value has more significant decimal places than
    /// `scale`; [`DecimalError::Overflow`] if it does not fit in 128 bits.
    pub fn to_scaled(&self, scale: u8) -> Result<u128, DecimalError> {
        if self.scale > scale {
            return Err(DecimalError::TooPrecise);
        }
        let f = pow10(u32::from(scale - self.scale)).ok_or(DecimalError::Overflow)?;
        self.mantissa.checked_mul(f).ok_or(DecimalError::Overflow)
    }

    /// Both values as integers of the same scale (the larger of the two).
    fn aligned(&self, other: &Decimal) -> Option<(u128, u128, u8)> {
        let s = self.scale.max(other.scale);
        Some((self.to_scaled(s).ok()?, other.to_scaled(s).ok()?, s))
    }

    /// True if `self` is a whole multiple of `step` (always false for a zero `step`).
    /// `None` if the values cannot be aligned in 128 bits.
    pub fn is_multiple_of(&self, step: &Decimal) -> Option<bool> {
        if step.is_zero() {
            return Some(false);
        }
        let (a, b, _) = self.aligned(step)?;
        Some(a % b == 0)
    }

    /// The exact product, or `None` on overflow.
    pub fn checked_mul(&self, other: &Decimal) -> Option<Decimal> {
        let m = self.mantissa.checked_mul(other.mantissa)?;
        let scale = self.scale.checked_add(other.scale)?;
        Decimal::from_parts(m, scale).ok()
    }

    /// The exact difference `self - other`, or `None` if negative or on overflow.
    pub fn checked_sub(&self, other: &Decimal) -> Option<Decimal> {
        let (a, b, s) = self.aligned(other)?;
        Decimal::from_parts(a.checked_sub(b)?, s).ok()
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        // Integer parts first, then the fractional parts at a common scale: each fits in 128
        // bits whatever the values, so the comparison never overflows.
        let split = |d: &Decimal| {
            let p = POW10[usize::from(d.scale)];
            (d.mantissa / p, d.mantissa % p)
        };
        let (ai, af) = split(self);
        let (bi, bf) = split(other);
        ai.cmp(&bi).then_with(|| {
            let s = self.scale.max(other.scale);
            let af = af * POW10[usize::from(s - self.scale)];
            let bf = bf * POW10[usize::from(s - other.scale)];
            af.cmp(&bf)
        })
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = POW10[usize::from(self.scale)];
        let (int, frac) = (self.mantissa / p, self.mantissa % p);
        write!(f, "{int}")?;
        if self.written_scale > 0 {
            let pad = usize::from(self.written_scale - self.scale);
            write!(f, ".")?;
            if self.scale > 0 {
                write!(f, "{frac:0width$}", width = usize::from(self.scale))?;
            }
            for _ in 0..pad {
                f.write_str("0")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn parses_the_dialects_decimal_text_and_prints_it_back() {
        for s in ["0", "52000.00", "0.01000000", "0.00000100", "123.456", "1"] {
            assert_eq!(d(s).to_string(), s);
        }
        assert_eq!(d("0.01000000").significant_scale(), 2);
        assert_eq!(d("0.01000000").written_scale(), 8);
        assert_eq!(d("52000.00"), d("52000"));
        assert!(d("1.5") < d("1.50001"));
        assert!(d("10") > d("9.99999999999999999999"));
    }

    #[test]
    fn refuses_anything_but_plain_digits() {
        for s in [
            "",
            ".",
            "1.",
            ".5",
            "-1",
            "+1",
            "1e5",
            "1.2.3",
            " 1",
            "1 ",
            "0x10",
            "１",
            "123456789012345678901",
            "1.123456789012345678901",
        ] {
            assert_eq!(Decimal::parse(s), Err(DecimalError::Syntax), "{s:?}");
        }
        assert_eq!(
            Decimal::parse("99999999999999999999.99999999999999999999"),
            Err(DecimalError::Overflow)
        );
    }

    #[test]
    fn scaling_multiples_and_products_are_exact() {
        assert_eq!(d("52000.5").to_scaled(2), Ok(5_200_050));
        assert_eq!(d("52000.505").to_scaled(2), Err(DecimalError::TooPrecise));
        assert_eq!(d("0.03").is_multiple_of(&d("0.01")), Some(true));
        assert_eq!(d("0.035").is_multiple_of(&d("0.01")), Some(false));
        assert_eq!(d("1").is_multiple_of(&Decimal::ZERO), Some(false));
        assert_eq!(d("52000.00").checked_mul(&d("0.01000000")), Some(d("520")));
        assert_eq!(d("0.5").checked_sub(&d("0.25")), Some(d("0.25")));
        assert_eq!(d("0.25").checked_sub(&d("0.5")), None);
        assert_eq!(Decimal::from_parts(1_500, 3).unwrap().to_string(), "1.500");
    }
}
