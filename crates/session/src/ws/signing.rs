//! Signed requests: the signature payload and the timing rule.
//!
//! # The payload
//!
//! All request `params` except `signature`, sorted by name, written `name=value` and joined
//! with `&`, each value as its literal JSON text: a string's characters, a number as written,
//! `true`/`false` (DESIGN.md §4, the dialect's rule). The dialect's documented example:
//!
//! ```text
//! apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&newOrderRespType=ACK&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT
//! ```
//!
//! signed with the secret `NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j`
//! (its ASCII text is the HMAC key) gives
//! `cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a`.
//!
//! Official SDKs sign the percent-encoded form of the same pairs (form encoding: `A-Z a-z 0-9
//! - . _ ~` kept, space as `+`, every other byte `%XX`). A request is accepted if its signature
//! matches either form, and no other: [`SignaturePayload`] holds both, the verifier tries them.
//! (Parameters are validated before their signature is checked, so a value that encoders
//! disagree on — spaces, `!*'()` — never reaches this point.)
//!
//! # Timing
//!
//! `timestamp` is Unix milliseconds (up to 13 digits) or microseconds (14 to 16 digits);
//! `recvWindow` is milliseconds, at most 60000, default 5000, with up to three decimals for
//! microsecond precision. A request is accepted only if `timestamp < now + 1000 ms` and
//! `now - timestamp <= recvWindow`.

use super::error::{codes, WsError};
use super::params::Params;

/// `recvWindow` when the request sends none, milliseconds.
pub const DEFAULT_RECV_WINDOW_MS: i64 = 5_000;
/// Largest `recvWindow`, milliseconds.
pub const MAX_RECV_WINDOW_MS: i64 = 60_000;
/// How far ahead of the server's clock a timestamp may be, microseconds.
const MAX_AHEAD_US: i64 = 1_000_000;

/// The payload a request's signature covers, in the forms a client may have signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignaturePayload {
    raw: String,
    encoded: Option<String>,
}

impl SignaturePayload {
    /// Builds the payload of `params` (every parameter but `signature`).
    pub(crate) fn build(params: &Params<'_>) -> Self {
        let mut pairs: Vec<(&str, &str)> = params
            .iter()
            .filter(|p| p.name != "signature")
            .map(|p| (&*p.name, p.value.payload_text()))
            .collect();
        // By name, bytewise: the same order as the clients' sort of ASCII names.
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Self::from_pairs(&pairs)
    }

    /// The payload of `pairs`, already sorted by name (see the module doc).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let len: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let mut raw = String::with_capacity(len);
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                raw.push('&');
            }
            raw.push_str(k);
            raw.push('=');
            raw.push_str(v);
        }
        // The encoded form differs exactly when some byte is not unreserved; most requests
        // (symbols, decimals, ids of letters and digits) have none, and skip building it.
        let differs = pairs
            .iter()
            .any(|(k, v)| !k.bytes().chain(v.bytes()).all(unreserved));
        let encoded = differs.then(|| {
            let mut encoded = String::with_capacity(len + 16);
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    encoded.push('&');
                }
                form_encode(k, &mut encoded);
                encoded.push('=');
                form_encode(v, &mut encoded);
            }
            encoded
        });
        Self { raw, encoded }
    }

    /// The payload with the values as sent.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The percent-encoded payload, if it differs from [`SignaturePayload::raw`].
    pub fn encoded(&self) -> Option<&str> {
        self.encoded.as_deref()
    }

    /// The forms a valid signature may cover: the raw payload first, then the encoded one.
    pub fn variants(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.raw.as_bytes()).chain(self.encoded.as_deref().map(str::as_bytes))
    }
}

/// A byte `application/x-www-form-urlencoded` keeps as it is.
fn unreserved(b: u8) -> bool {
    matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~')
}

/// Appends `s` in `application/x-www-form-urlencoded` form (as Python's `urlencode`, which the
/// official SDKs use): unreserved bytes kept, space as `+`, anything else `%XX` (upper case).
fn form_encode(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b if unreserved(b) => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
}

/// A request's validity window, in Unix microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub timestamp_us: i64,
    pub recv_window_us: i64,
}

impl Timing {
    /// Reads `timestamp` (mandatory) and `recvWindow` (optional).
    pub(crate) fn read(params: &Params<'_>) -> Result<Self, WsError> {
        let ts = params.req_digits("timestamp")?;
        // 13 digits of milliseconds cover the years 2001 to 2286, 16 digits of microseconds
        // the same span; anything longer is not a timestamp.
        let timestamp_us = match ts.len() {
            0..=13 => ts.parse::<i64>().map(|ms| ms * 1_000),
            14..=16 => ts.parse::<i64>(),
            _ => return Err(WsError::mandatory("timestamp")),
        }
        .map_err(|_| WsError::mandatory("timestamp"))?;
        let recv_window_us = match params.opt_decimal("recvWindow")? {
            None => DEFAULT_RECV_WINDOW_MS * 1_000,
            Some(w) => {
                if w.significant_scale() > 3 {
                    return Err(WsError::too_precise("recvWindow"));
                }
                let us = w
                    .to_scaled(3)
                    .map_err(|_| WsError::overflow("recvWindow"))?;
                if us > (MAX_RECV_WINDOW_MS * 1_000) as u128 {
                    return Err(WsError::bad_request(
                        codes::MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                        format!(
                            "'recvWindow' contains unexpected value. Cannot be greater than '{MAX_RECV_WINDOW_MS}'."
                        ),
                    ));
                }
                us as i64
            }
        };
        Ok(Self {
            timestamp_us,
            recv_window_us,
        })
    }

    /// Accepted only if `timestamp < now + 1000 ms` and `now - timestamp <= recvWindow`.
    pub(crate) fn check(&self, now_us: i64) -> Result<(), WsError> {
        if self.timestamp_us >= now_us.saturating_add(MAX_AHEAD_US) {
            return Err(WsError::bad_request(
                codes::INVALID_TIMESTAMP,
                "Timestamp for this request was 1000ms ahead of the server's time.",
            ));
        }
        if now_us.saturating_sub(self.timestamp_us) > self.recv_window_us {
            return Err(WsError::bad_request(
                codes::INVALID_TIMESTAMP,
                "Timestamp for this request is outside of the recvWindow.",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::json::parse_object;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// The dialect's documented HMAC example (Spot WebSocket API, "SIGNED request example
    /// (HMAC)").
    pub(crate) const DOC_SECRET: &str =
        "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    pub(crate) const DOC_API_KEY: &str =
        "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
    pub(crate) const DOC_SIGNATURE: &str =
        "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a";
    const DOC_PAYLOAD: &str = "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&newOrderRespType=ACK&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT";

    fn hmac_hex(secret: &str, payload: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(payload);
        hex::encode(mac.finalize().into_bytes())
    }

    fn payload_of(params_json: &str) -> SignaturePayload {
        let o = parse_object(params_json).unwrap();
        SignaturePayload::build(&Params::from_members(o.0).unwrap())
    }

    #[test]
    fn the_documented_example_builds_the_documented_payload_and_signature() {
        // The parameters in the order of the documented request, signature included.
        let p = payload_of(&format!(
            r#"{{"symbol":"BTCUSDT","side":"SELL","type":"LIMIT","timeInForce":"GTC",
                "quantity":"0.01000000","price":"52000.00","newOrderRespType":"ACK",
                "recvWindow":100,"timestamp":1645423376532,"apiKey":"{DOC_API_KEY}",
                "signature":"{DOC_SIGNATURE}"}}"#
        ));
        assert_eq!(p.raw(), DOC_PAYLOAD);
        assert_eq!(p.encoded(), None, "nothing to encode in this payload");
        assert_eq!(hmac_hex(DOC_SECRET, p.raw().as_bytes()), DOC_SIGNATURE);
    }

    #[test]
    fn values_are_their_literal_json_text_and_the_encoded_form_is_offered_too() {
        let p =
            payload_of(r#"{"b":true,"a":"x y/z","c":10000,"d":"1.50","newClientOrderId":"a:b/c"}"#);
        assert_eq!(
            p.raw(),
            "a=x y/z&b=true&c=10000&d=1.50&newClientOrderId=a:b/c"
        );
        assert_eq!(
            p.encoded(),
            Some("a=x+y%2Fz&b=true&c=10000&d=1.50&newClientOrderId=a%3Ab%2Fc")
        );
        assert_eq!(p.variants().count(), 2);
    }

    fn timing(json: &str) -> Result<Timing, WsError> {
        let o = parse_object(json).unwrap();
        Timing::read(&Params::from_members(o.0).unwrap())
    }

    #[test]
    fn timestamps_in_ms_or_us_and_the_recv_window_rule() {
        let now_us = 1_645_423_376_532_000;
        let t = timing(r#"{"timestamp":1645423376532}"#).unwrap();
        assert_eq!(t.timestamp_us, now_us);
        assert_eq!(t.recv_window_us, 5_000_000);
        let t = timing(r#"{"timestamp":"1645423376532123","recvWindow":"100.5"}"#).unwrap();
        assert_eq!(t.timestamp_us, now_us + 123);
        assert_eq!(t.recv_window_us, 100_500);
        // Exactly recvWindow old: accepted; one microsecond older: refused.
        let t = Timing {
            timestamp_us: now_us,
            recv_window_us: 100_000,
        };
        assert!(t.check(now_us + 100_000).is_ok());
        assert_eq!(t.check(now_us + 100_001).unwrap_err().code(), -1021);
        // Ahead by less than a second: accepted; by a full second: refused.
        assert!(t.check(now_us - 999_999).is_ok());
        let e = t.check(now_us - 1_000_000).unwrap_err();
        assert_eq!(e.code(), -1021);
        assert!(e.msg().contains("ahead"));
    }

    #[test]
    fn bad_timestamps_and_windows_are_refused_with_the_dialects_codes() {
        for bad in [
            r#"{}"#,
            r#"{"timestamp":null}"#,
            r#"{"timestamp":""}"#,
            r#"{"timestamp":-1}"#,
            r#"{"timestamp":1.5}"#,
            r#"{"timestamp":"abc"}"#,
            r#"{"timestamp":12345678901234567}"#,
        ] {
            assert_eq!(timing(bad).unwrap_err().code(), -1102, "{bad}");
        }
        let e = timing(r#"{"timestamp":1,"recvWindow":60001}"#).unwrap_err();
        assert_eq!(e.code(), -1102);
        assert!(
            e.msg().contains("Cannot be greater than '60000'"),
            "{}",
            e.msg()
        );
        assert!(timing(r#"{"timestamp":1,"recvWindow":60000}"#).is_ok());
        assert!(timing(r#"{"timestamp":1,"recvWindow":"59999.999"}"#).is_ok());
        assert_eq!(
            timing(r#"{"timestamp":1,"recvWindow":"1.0001"}"#)
                .unwrap_err()
                .code(),
            -1111
        );
        assert_eq!(
            timing(r#"{"timestamp":1,"recvWindow":"-5"}"#)
                .unwrap_err()
                .code(),
            -1100
        );
    }
}
