//! UTCTimestamp values (`YYYYMMDD-HH:MM:SS[.sss[sss[sss]]]`), exact to the nanosecond.

use std::fmt;

/// A point in time as nanoseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UtcTimestamp(pub i64);

/// Digits after the seconds when formatting a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimePrecision {
    /// `HH:MM:SS`
    Seconds,
    /// `HH:MM:SS.sss` (the FIX default)
    #[default]
    Millis,
    /// `HH:MM:SS.ssssss`
    Micros,
    /// `HH:MM:SS.sssssssss`
    Nanos,
}

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

impl UtcTimestamp {
    /// From nanoseconds since the epoch.
    pub const fn from_nanos(n: i64) -> Self {
        Self(n)
    }

    /// From milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms * 1_000_000)
    }

    /// Nanoseconds since the epoch.
    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// Milliseconds since the epoch (floored).
    pub const fn millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// The current system time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(d.as_nanos() as i64)
    }

    /// Parses a FIX UTCTimestamp: seconds, or with 3, 6 or 9 fractional digits.
    pub fn parse(s: &[u8]) -> Option<Self> {
        if s.len() < 17 || s[8] != b'-' || s[11] != b':' || s[14] != b':' {
            return None;
        }
        let year = digits(&s[0..4])? as i64;
        let month = digits(&s[4..6])?;
        let day = digits(&s[6..8])?;
        let hour = digits(&s[9..11])? as i64;
        let min = digits(&s[12..14])? as i64;
        let sec = digits(&s[15..17])? as i64;
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || min > 59
            || sec > 60
        {
            return None;
        }
        let frac = &s[17..];
        let nanos = match frac.len() {
            0 => 0,
            4 | 7 | 10 if frac[0] == b'.' => {
                let d = digits(&frac[1..])? as i64;
                d * 10i64.pow(10 - frac.len() as u32)
            }
            _ => return None,
        };
        // A leap second (60) is folded into the next second, as most engines do.
        let days = days_from_civil(year, month, day);
        let secs = days * SECS_PER_DAY + hour * 3600 + min * 60 + sec;
        // Years far outside the epoch's range do not fit in i64 nanoseconds: not a timestamp.
        secs.checked_mul(NANOS_PER_SEC)?
            .checked_add(nanos)
            .map(Self)
    }

    /// Writes the timestamp in FIX format at the given precision into `out` (no allocation if
    /// `out` has capacity).
    pub fn write(self, precision: TimePrecision, out: &mut Vec<u8>) {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC);
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let mut buf = [0u8; 27];
        put(&mut buf[0..4], y as u64);
        put(&mut buf[4..6], u64::from(m));
        put(&mut buf[6..8], u64::from(d));
        buf[8] = b'-';
        put(&mut buf[9..11], (sod / 3600) as u64);
        buf[11] = b':';
        put(&mut buf[12..14], ((sod / 60) % 60) as u64);
        buf[14] = b':';
        put(&mut buf[15..17], (sod % 60) as u64);
        buf[17] = b'.';
        let len = match precision {
            TimePrecision::Seconds => 17,
            TimePrecision::Millis => {
                put(&mut buf[18..21], (nanos / 1_000_000) as u64);
                21
            }
            TimePrecision::Micros => {
                put(&mut buf[18..24], (nanos / 1_000) as u64);
                24
            }
            TimePrecision::Nanos => {
                put(&mut buf[18..27], nanos as u64);
                27
            }
        };
        out.extend_from_slice(&buf[..len]);
    }
}

impl fmt::Display for UtcTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = Vec::with_capacity(27);
        self.write(TimePrecision::Millis, &mut v);
        f.write_str(std::str::from_utf8(&v).map_err(|_| fmt::Error)?)
    }
}

fn put(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seconds_millis_micros_nanos() {
        let s = UtcTimestamp::parse(b"20240229-23:59:58").unwrap();
        assert_eq!(s.nanos(), 1_709_251_198 * NANOS_PER_SEC);
        let ms = UtcTimestamp::parse(b"20240229-23:59:58.123").unwrap();
        assert_eq!(ms.nanos() - s.nanos(), 123_000_000);
        let us = UtcTimestamp::parse(b"20240229-23:59:58.123456").unwrap();
        assert_eq!(us.nanos() - s.nanos(), 123_456_000);
        let ns = UtcTimestamp::parse(b"20240229-23:59:58.123456789").unwrap();
        assert_eq!(ns.nanos() - s.nanos(), 123_456_789);
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for bad in [
            &b"20240230-00:00:00"[..],
            b"20241301-00:00:00",
            b"20240101-24:00:00",
            b"20240101 00:00:00",
            b"20240101-00:00:00.12",
            b"20240101-00:00:00,123",
            b"2024010-00:00:00",
            b"99990101-00:00:00",
            b"10000101-00:00:00",
        ] {
            assert!(UtcTimestamp::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn formats_round_trip() {
        let t = UtcTimestamp::parse(b"19991231-12:34:56.789").unwrap();
        assert_eq!(t.to_string(), "19991231-12:34:56.789");
        let mut v = Vec::new();
        t.write(TimePrecision::Micros, &mut v);
        assert_eq!(v, b"19991231-12:34:56.789000");
    }
}
