//! TOTP (RFC 6238): the operators' second factor (DESIGN.md §1: MFA on every change).
//!
//! The profile is the one every authenticator app implements by default and the only one we
//! accept: HMAC-SHA-1, 6 digits, a 30-second step, the current step ±1 accepted (a phone whose
//! clock is up to a step off, or a code typed as it rolls over). A code is accepted only once:
//! the last accepted step is remembered per secret, and a code of that step or an earlier one
//! is refused as a replay — a code seen over a shoulder or in a log cannot be used again.
//!
//! - [`TotpSecret`]: the shared secret (20 random bytes when generated), zeroized on drop,
//!   base32 (RFC 4648, no padding) for people and apps, and the `otpauth://` URI that QR codes
//!   carry.
//! - [`verify`]: the pure check, given the last accepted step (the vault keeps it per operator
//!   with the secret, see [`crate::Vault::verify_totp`]).
//! - [`TotpVerifier`]: the same check with the last accepted steps kept in memory, shared by
//!   threads.
//!
//! Time is Unix milliseconds, given by the caller like everywhere in this crate.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::key::fill_random;

/// Seconds per time step (RFC 6238 `X`).
pub const STEP_SECS: u64 = 30;
/// Digits in a code.
pub const DIGITS: u32 = 6;
/// Steps accepted on either side of the current one.
pub const SKEW_STEPS: u64 = 1;
/// Bytes in a generated secret: 160 bits, the HMAC-SHA-1 block-size recommendation of RFC 4226
/// §4 and what authenticator apps expect.
pub const SECRET_LEN: usize = 20;
/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "Portcullis";

/// Shortest secret accepted on import (RFC 4226 §4: at least 128 bits).
const MIN_SECRET_LEN: usize = 16;
/// Longest secret accepted on import.
const MAX_SECRET_LEN: usize = 64;

/// Why a TOTP secret, label or code was refused. Never contains secret material or the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// The code is not exactly 6 ASCII digits.
    #[error("a TOTP code is exactly {DIGITS} digits")]
    Malformed,
    /// The code matches none of the accepted steps.
    #[error("wrong TOTP code")]
    Invalid,
    /// The code is right but its step was already used (or an earlier one): a replay.
    #[error("this TOTP code was already used; wait for the next one")]
    Replayed,
    /// The operator has no TOTP secret enrolled.
    #[error("no TOTP secret is enrolled for operator {0:?}")]
    NotEnrolled(String),
    /// The secret text is not base32, or decodes to too few or too many bytes.
    #[error("invalid TOTP secret: {0}")]
    BadSecret(&'static str),
    /// The operator name is empty, too long, or has control characters or surrounding spaces.
    #[error("invalid operator name {0:?}: expected 1 to 64 printable characters")]
    BadOperator(String),
}

// ---------------------------------------------------------------------------------------------
// The secret

/// A TOTP shared secret (the HMAC-SHA-1 key). Zeroized when dropped; `Debug` prints
/// `[redacted]`. Serialized as its base32 text, so the vault stores it the way apps show it.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    /// A fresh secret of [`SECRET_LEN`] bytes from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut raw = Zeroizing::new(vec![0u8; SECRET_LEN]);
        fill_random(&mut raw);
        Self(raw)
    }

    /// A secret from its raw bytes (16 to 64 of them).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TotpError> {
        check_secret_len(bytes.len())?;
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// A secret from base32 text (RFC 4648 alphabet, either case; `=` padding, spaces and
    /// hyphens, as apps group the text for reading, are ignored).
    pub fn from_base32(text: &str) -> Result<Self, TotpError> {
        let raw = base32_decode(text)?;
        check_secret_len(raw.len())?;
        Ok(Self(raw))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret as base32 (RFC 4648, upper case, no padding), to show once at enrolment.
    pub fn to_base32(&self) -> Zeroizing<String> {
        base32_encode(&self.0)
    }

    /// The `otpauth://totp/Portcullis:<label>?secret=...&issuer=Portcullis&algorithm=SHA1&digits=6&period=30`
    /// URI an authenticator app reads from a QR code. The label (the operator's name) is
    /// percent-encoded. The URI carries the secret: show it once, never log it.
    pub fn otpauth_uri(&self, label: &str) -> Zeroizing<String> {
        let secret = self.to_base32();
        let mut uri = Zeroizing::new(String::with_capacity(128 + 3 * label.len()));
        uri.push_str("otpauth://totp/");
        uri.push_str(ISSUER);
        uri.push(':');
        percent_encode_into(label, &mut uri);
        uri.push_str("?secret=");
        uri.push_str(&secret);
        uri.push_str("&issuer=");
        uri.push_str(ISSUER);
        uri.push_str(&format!(
            "&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
        ));
        uri
    }

    /// The code for the step containing `now_ms`, as [`DIGITS`] digits (for tests and tools;
    /// the server only ever verifies). `None` before 1970.
    pub fn code_at(&self, now_ms: i64) -> Option<String> {
        let step = time_step(now_ms)?;
        Some(format_code(hotp(&self.0, step, DIGITS), DIGITS))
    }

    /// A fingerprint naming the secret without revealing it (SHA-256), to key replay state.
    fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(&self.0[..]).into()
    }
}

impl PartialEq for TotpSecret {
    /// Constant-time.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for TotpSecret {}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

impl Serialize for TotpSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base32())
    }
}

impl<'de> Deserialize<'de> for TotpSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        Self::from_base32(&text).map_err(serde::de::Error::custom)
    }
}

fn check_secret_len(n: usize) -> Result<(), TotpError> {
    if n < MIN_SECRET_LEN {
        Err(TotpError::BadSecret("shorter than 16 bytes (128 bits)"))
    } else if n > MAX_SECRET_LEN {
        Err(TotpError::BadSecret("longer than 64 bytes"))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// HOTP / TOTP

/// HOTP (RFC 4226 §5.3) with HMAC-SHA-1: the dynamically truncated HMAC of the big-endian
/// `counter`, modulo 10^`digits` (`digits` is clamped to 1..=9).
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac =
        <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[19] & 0x0f);
    let bin = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    bin % 10u32.pow(digits.clamp(1, 9))
}

/// The TOTP time step (RFC 6238 `T`, with `T0` = 0) containing `now_ms`; `None` before 1970.
pub fn time_step(now_ms: i64) -> Option<u64> {
    u64::try_from(now_ms.div_euclid(1000))
        .ok()
        .map(|secs| secs / STEP_SECS)
}

fn format_code(code: u32, digits: u32) -> String {
    format!("{code:0width$}", width = digits as usize)
}

/// Checks `code` against `secret` at `now_ms`: it must be [`DIGITS`] ASCII digits and match the
/// current step or one within [`SKEW_STEPS`] of it, and that step must be later than
/// `last_step` (the last step accepted for this secret, if any). Returns the step matched,
/// which the caller records as the new last step.
///
/// Constant-time in the code: every candidate step is computed and compared, and the
/// comparisons do not stop at the first match, so timing tells nothing about which digits or
/// which step matched.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    now_ms: i64,
    last_step: Option<u64>,
) -> Result<u64, TotpError> {
    let given = code.as_bytes();
    if given.len() != DIGITS as usize || !given.iter().all(u8::is_ascii_digit) {
        return Err(TotpError::Malformed);
    }
    let current = time_step(now_ms).ok_or(TotpError::Invalid)?;
    let mut any = Choice::from(0);
    let mut matched = 0u64;
    for step in current.saturating_sub(SKEW_STEPS)..=current.saturating_add(SKEW_STEPS) {
        let expected = Zeroizing::new(format_code(hotp(&secret.0, step, DIGITS), DIGITS));
        let eq: Choice = expected.as_bytes().ct_eq(given);
        // Selected without a branch on the comparison; the later step wins when two steps
        // share a code.
        matched = u64::conditional_select(&matched, &step, eq);
        any |= eq;
    }
    if !bool::from(any) {
        return Err(TotpError::Invalid);
    }
    let step = matched;
    if last_step.is_some_and(|last| step <= last) {
        return Err(TotpError::Replayed);
    }
    Ok(step)
}

// ---------------------------------------------------------------------------------------------
// In-memory replay state

/// [`verify`] with the last accepted step of each secret kept in memory, for a long-running
/// process (the admin API). Thread-safe; the state is keyed by the secret's SHA-256, so a
/// re-enrolled operator starts afresh. Entries whose step can no longer matter are dropped as
/// time goes by, so the map stays as small as the set of operators active in the last minute.
///
/// A restart forgets the steps: a code used just before it could be used once more within its
/// 90-second window. Where that matters, use [`crate::Vault::verify_totp`], which persists them.
#[derive(Debug, Default)]
pub struct TotpVerifier {
    last_steps: Mutex<HashMap<[u8; 32], u64>>,
}

impl TotpVerifier {
    /// An empty verifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies `code` for `secret` at `now_ms` and, when accepted, records its step so the
    /// same code (or an earlier one) is refused from then on. Returns the step matched.
    pub fn verify(&self, secret: &TotpSecret, code: &str, now_ms: i64) -> Result<u64, TotpError> {
        let fp = secret.fingerprint();
        let mut map = self.last_steps.lock().unwrap_or_else(|p| p.into_inner());
        let step = verify(secret, code, now_ms, map.get(&fp).copied())?;
        map.insert(fp, step);
        // A recorded step below current − skew can no longer be matched, so it no longer
        // guards anything: forget it.
        if let Some(current) = time_step(now_ms) {
            let floor = current.saturating_sub(SKEW_STEPS);
            map.retain(|_, last| *last >= floor);
        }
        Ok(step)
    }
}

// ---------------------------------------------------------------------------------------------
// Operator names

/// Checks an operator name (the vault's key for a TOTP secret and the label in the app): 1 to
/// 64 characters, no control characters, no leading or trailing space.
pub fn validate_operator(name: &str) -> Result<(), TotpError> {
    let ok = (1..=64).contains(&name.chars().count())
        && !name.chars().any(char::is_control)
        && name.trim() == name;
    if ok {
        Ok(())
    } else {
        Err(TotpError::BadOperator(name.chars().take(80).collect()))
    }
}

// ---------------------------------------------------------------------------------------------
// Base32 (RFC 4648 §6) and percent-encoding — a few lines each, not worth a dependency.

const B32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 of `data`, upper case, without padding.
pub fn base32_encode(data: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(data.len().div_ceil(5) * 8));
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for &b in data {
        buffer = (buffer << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(B32_ALPHABET[usize::from((buffer >> bits) & 31)]));
        }
        // Only the low `bits` bits are still pending; clearing the rest keeps the shift in range.
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            B32_ALPHABET[usize::from((buffer << (5 - bits)) & 31)],
        ));
    }
    out
}

/// Decodes RFC 4648 base32 (either case; `=` padding at the end, spaces and hyphens ignored).
/// Lengths no encoding produces, and non-zero unused trailing bits, are refused so that one
/// secret has one text.
pub fn base32_decode(text: &str) -> Result<Zeroizing<Vec<u8>>, TotpError> {
    let body = text.trim_end_matches(['=', ' ']);
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() * 5 / 8 + 1));
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    let mut symbols = 0usize;
    for c in body.bytes() {
        if c == b' ' || c == b'-' {
            continue;
        }
        let v = match c.to_ascii_uppercase() {
            u @ b'A'..=b'Z' => u - b'A',
            d @ b'2'..=b'7' => d - b'2' + 26,
            _ => return Err(TotpError::BadSecret("not base32 (A-Z, 2-7)")),
        };
        symbols += 1;
        buffer = (buffer << 5) | u16::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    if matches!(symbols % 8, 1 | 3 | 6) {
        return Err(TotpError::BadSecret("not a valid base32 length"));
    }
    if buffer != 0 {
        return Err(TotpError::BadSecret("non-canonical base32 (trailing bits)"));
    }
    Ok(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode_into(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B's SHA-1 seed: the ASCII of "12345678901234567890".
    const RFC_SEED: &[u8] = b"12345678901234567890";

    /// (Unix seconds, 8-digit SHA-1 TOTP) from RFC 6238 Appendix B.
    const RFC_VECTORS: [(i64, u32); 6] = [
        (59, 94_287_082),
        (1_111_111_109, 7_081_804),
        (1_111_111_111, 14_050_471),
        (1_234_567_890, 89_005_924),
        (2_000_000_000, 69_279_037),
        (20_000_000_000, 65_353_130),
    ];

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(RFC_SEED).unwrap()
    }

    #[test]
    fn rfc6238_appendix_b_sha1_eight_digits() {
        for (secs, expected) in RFC_VECTORS {
            let step = time_step(secs * 1000).unwrap();
            assert_eq!(hotp(RFC_SEED, step, 8), expected, "T = {secs}");
        }
    }

    #[test]
    fn rfc6238_vectors_truncated_to_six_digits_verify() {
        for (secs, eight) in RFC_VECTORS {
            let six = format!("{:06}", eight % 1_000_000);
            let now_ms = secs * 1000;
            assert_eq!(rfc_secret().code_at(now_ms).unwrap(), six, "T = {secs}");
            assert_eq!(
                verify(&rfc_secret(), &six, now_ms, None),
                Ok(time_step(now_ms).unwrap())
            );
        }
        // Spot-check the text form keeps leading zeros: 07081804 → 081804.
        assert_eq!(rfc_secret().code_at(1_111_111_109_000).unwrap(), "081804");
    }

    #[test]
    fn rfc4226_appendix_d_hotp_values() {
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, want) in expected.into_iter().enumerate() {
            assert_eq!(hotp(RFC_SEED, counter as u64, 6), want);
        }
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let s = TotpSecret::generate();
        let now = 1_700_000_015_000; // mid-step
        let step = time_step(now).unwrap();
        let code = |st: u64| format_code(hotp(s.as_bytes(), st, DIGITS), DIGITS);
        assert_eq!(verify(&s, &code(step), now, None), Ok(step));
        assert_eq!(verify(&s, &code(step - 1), now, None), Ok(step - 1));
        assert_eq!(verify(&s, &code(step + 1), now, None), Ok(step + 1));
        for far in [step - 2, step + 2, step - 10] {
            // Codes of other steps may collide by chance (1 in 10^6); skip that case.
            if [step - 1, step, step + 1]
                .iter()
                .any(|st| code(*st) == code(far))
            {
                continue;
            }
            assert_eq!(verify(&s, &code(far), now, None), Err(TotpError::Invalid));
        }
        // A code typed 29 s after its step ended still passes; 31 s after the next one, not.
        let c = code(step);
        let step_end = (step + 1) as i64 * 30_000;
        assert!(verify(&s, &c, step_end + 29_000, None).is_ok());
        if code(step + 2) != c && code(step + 1) != c && code(step + 3) != c {
            assert_eq!(
                verify(&s, &c, step_end + 31_000, None),
                Err(TotpError::Invalid)
            );
        }
    }

    #[test]
    fn wrong_and_malformed_codes() {
        let s = rfc_secret();
        let now = 59_000;
        assert_eq!(verify(&s, "287083", now, None), Err(TotpError::Invalid));
        for bad in ["", "28708", "2870822", "28708a", " 287082", "２８７０８２"] {
            assert_eq!(
                verify(&s, bad, now, None),
                Err(TotpError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(verify(&s, "287082", -1, None), Err(TotpError::Invalid));
    }

    #[test]
    fn a_code_is_accepted_once_and_earlier_steps_are_replays() {
        let s = rfc_secret();
        let now = 1_111_111_111_000;
        let step = time_step(now).unwrap();
        let code = s.code_at(now).unwrap();
        assert_eq!(verify(&s, &code, now, Some(step - 5)), Ok(step));
        assert_eq!(verify(&s, &code, now, Some(step)), Err(TotpError::Replayed));
        // The previous step's code, still inside the window, is older than the last accepted.
        let prev = format_code(hotp(s.as_bytes(), step - 1, DIGITS), DIGITS);
        assert_eq!(verify(&s, &prev, now, Some(step)), Err(TotpError::Replayed));
        // The next step's code is still fine.
        let next = format_code(hotp(s.as_bytes(), step + 1, DIGITS), DIGITS);
        assert_eq!(verify(&s, &next, now, Some(step)), Ok(step + 1));
    }

    #[test]
    fn verifier_remembers_steps_per_secret() {
        let v = TotpVerifier::new();
        let a = rfc_secret();
        let b = TotpSecret::generate();
        let now = 1_234_567_890_000;
        let ca = a.code_at(now).unwrap();
        let cb = b.code_at(now).unwrap();
        assert!(v.verify(&a, &ca, now).is_ok());
        assert_eq!(v.verify(&a, &ca, now + 1000), Err(TotpError::Replayed));
        // Another secret has its own state.
        assert!(v.verify(&b, &cb, now).is_ok());
        // The next step's code is accepted; then the old one is a replay even within the window.
        let later = now + 30_000;
        let ca2 = a.code_at(later).unwrap();
        assert!(v.verify(&a, &ca2, later).is_ok());
        assert_eq!(v.verify(&a, &ca, later), Err(TotpError::Replayed));
        // Old entries are pruned as time passes.
        let much_later = now + 3_600_000;
        let cb2 = b.code_at(much_later).unwrap();
        assert!(v.verify(&b, &cb2, much_later).is_ok());
        assert_eq!(v.last_steps.lock().unwrap().len(), 1);
    }

    #[test]
    fn base32_rfc4648_vectors_and_round_trip() {
        for (plain, enc) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(&*base32_encode(plain.as_bytes()), enc);
            assert_eq!(&*base32_decode(enc).unwrap(), plain.as_bytes());
        }
        assert_eq!(&*base32_decode("mzxw6ytboi======").unwrap(), b"foobar");
        assert_eq!(&*base32_decode("MZXW 6YTB-OI").unwrap(), b"foobar");
        assert!(
            base32_decode("MZXW6YTB1").is_err(),
            "1 is not in the alphabet"
        );
        assert!(base32_decode("MZXW6YTBO").is_err(), "impossible length");
        assert!(base32_decode("MZ").is_err(), "non-zero trailing bits");
        let s = TotpSecret::generate();
        assert_eq!(s.as_bytes().len(), SECRET_LEN);
        assert_eq!(s.to_base32().len(), 32);
        assert_eq!(TotpSecret::from_base32(&s.to_base32()).unwrap(), s);
        assert_ne!(TotpSecret::generate(), s);
    }

    #[test]
    fn secret_lengths_debug_and_serde() {
        assert!(TotpSecret::from_bytes(&[1; 15]).is_err());
        assert!(TotpSecret::from_bytes(&[1; 65]).is_err());
        assert!(TotpSecret::from_base32("MZXW6YTBOI").is_err(), "6 bytes");
        let s = rfc_secret();
        assert_eq!(&*s.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(!format!("{s:?}").contains("GEZ"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"");
        assert_eq!(serde_json::from_str::<TotpSecret>(&json).unwrap(), s);
        assert!(serde_json::from_str::<TotpSecret>("\"!!\"").is_err());
    }

    #[test]
    fn otpauth_uri_shape_and_label_encoding() {
        let s = rfc_secret();
        assert_eq!(
            &*s.otpauth_uri("alice"),
            "otpauth://totp/Portcullis:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Portcullis&algorithm=SHA1&digits=6&period=30"
        );
        let uri = s.otpauth_uri("bob smith@desk/1");
        assert!(
            uri.starts_with("otpauth://totp/Portcullis:bob%20smith%40desk%2F1?secret="),
            "{}",
            &*uri
        );
    }

    #[test]
    fn operator_names_are_validated() {
        assert!(validate_operator("alice@ops").is_ok());
        for bad in ["", " alice", "a\nb", &"x".repeat(65)] {
            assert!(validate_operator(bad).is_err(), "{bad:?}");
        }
    }
}
