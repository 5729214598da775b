//! Time as the auth crate sees it: Unix milliseconds (`i64`), injected by the caller wherever a
//! decision depends on it, plus RFC 3339 text for the audit log, expiry input and listings.

use portcullis_fix::time::civil_from_days;
use portcullis_fix::UtcTimestamp;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch by the system clock (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `ms` (Unix milliseconds) as RFC 3339 UTC with exactly three fractional digits, e.g.
/// `2024-01-02T03:04:05.678Z`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Why an RFC 3339 timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an RFC 3339 timestamp (e.g. 2030-01-31T00:00:00Z): {reason}")]
pub struct TimeParseError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses an RFC 3339 timestamp (any offset) to Unix milliseconds, truncating below the
/// millisecond.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, TimeParseError> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|e| TimeParseError {
        input: s.to_owned(),
        reason: e.to_string(),
    })?;
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(ms).map_err(|_| TimeParseError {
        input: s.to_owned(),
        reason: "out of range".to_owned(),
    })
}

/// A FIX UTCTimestamp (`YYYYMMDD-HH:MM:SS[.sss[sss[sss]]]`) as Unix milliseconds (floored).
pub fn parse_fix_timestamp_ms(raw: &[u8]) -> Option<i64> {
    UtcTimestamp::parse(raw).map(UtcTimestamp::millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_millis() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(1_704_164_645_678),
            "2024-01-02T03:04:05.678Z"
        );
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_rfc3339_with_offsets() {
        assert_eq!(
            parse_rfc3339_ms("2024-01-02T03:04:05.678Z").unwrap(),
            1_704_164_645_678
        );
        assert_eq!(
            parse_rfc3339_ms("2024-01-02T04:04:05.678+01:00").unwrap(),
            1_704_164_645_678
        );
        assert!(parse_rfc3339_ms("2024-01-02").is_err());
        assert!(parse_rfc3339_ms("tomorrow").is_err());
    }

    #[test]
    fn round_trips_through_text() {
        for ms in [0, 1, 999, 1_704_164_645_678, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)).unwrap(), ms);
        }
    }

    #[test]
    fn parses_fix_sending_time() {
        assert_eq!(
            parse_fix_timestamp_ms(b"20240102-03:04:05.678"),
            Some(1_704_164_645_678)
        );
        assert_eq!(
            parse_fix_timestamp_ms(b"20240102-03:04:05"),
            Some(1_704_164_645_000)
        );
        assert_eq!(parse_fix_timestamp_ms(b"2024-01-02T03:04:05Z"), None);
    }
}
