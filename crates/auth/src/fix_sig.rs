//! The signatures of DESIGN.md §4, over HMAC-SHA256 keyed with the secret's ASCII text.
//!
//! **Logon**: RawData(96) = base64(HMAC-SHA256(secret, prehash)), where prehash is the raw values
//! of SendingTime(52), MsgType(35), MsgSeqNum(34), SenderCompID(49), TargetCompID(56) and
//! Username(553) (= key id) joined by SOH (0x01), in that order, with no trailing SOH. See the
//! crate documentation for a worked example.
//!
//! **Per message**: Signature(89) = base64(HMAC-SHA256(secret, the message's bytes from `8=` up
//! to and including the SOH before `93=`)); SignatureLength(93) is the signature's length (44),
//! and only CheckSum(10) may follow Signature(89). BodyLength(9) and CheckSum(10) count the
//! 93/89 fields as usual, so a client computes BodyLength with them included (they have a fixed
//! size: `93=44␁89=` + 44 characters + `␁`), signs, then appends 93, 89 and 10. Worked example,
//! same secret as the Logon example:
//!
//! ```
//! use portcullis_auth::fix_sig::{sign_message, verify_message};
//! let secret = b"6f1c0a7e3d5b49e2a8c4f0b1d9e7a6c5b3f2e1d0c9b8a7f6e5d4c3b2a1908172";
//! let signed = b"8=FIX.4.4\x019=207\x0135=D\x0134=2\x0149=CLIENT1\x0152=20240102-03:04:06.000\x01\
//! 56=PORTCULLIS\x0111=ORD-1\x0121=1\x0155=BTC-28JUN24-70000-C\x0154=1\x0138=10\x0140=2\x0144=0.0550\x01\
//! 59=0\x0160=20240102-03:04:06.000\x01";
//! let sig = sign_message(secret, signed);
//! assert_eq!(sig, "4ixvj9wgO1Id8mWM1ys//vpG+9EmeI8ZyV34rTf3xs4=");
//! let mut msg = signed.to_vec();
//! msg.extend_from_slice(b"93=44\x0189=");
//! msg.extend_from_slice(sig.as_bytes());
//! msg.extend_from_slice(b"\x0110=004\x01");
//! assert_eq!(verify_message(secret, &msg), Ok(()));
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The FIX field separator.
pub const SOH: u8 = 0x01;

/// Length of an HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;

/// Length of a base64 HMAC-SHA256 tag (the value of SignatureLength(93)).
pub const TAG_B64_LEN: usize = 44;

/// Longest base64 signature looked at; anything longer is malformed.
const MAX_SIG_B64: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The message has no SignatureLength(93)/Signature(89).
    #[error("signature missing")]
    Missing,
    /// The 93/89 trailer is malformed: length mismatch, not base64, not at the end of the
    /// message (only CheckSum(10) may follow it), or the message does not start with `8=`.
    #[error("signature malformed")]
    Malformed,
    /// The signature does not match the message.
    #[error("signature does not match")]
    Mismatch,
    /// The key the session logged on with has been revoked.
    #[error("key revoked")]
    KeyRevoked,
}

impl SigError {
    /// The precise reason for the audit log: `missing_signature`, `malformed_signature`,
    /// `bad_signature` or `key_revoked`.
    pub const fn reason(self) -> &'static str {
        match self {
            SigError::Missing => "missing_signature",
            SigError::Malformed => "malformed_signature",
            SigError::Mismatch => "bad_signature",
            SigError::KeyRevoked => "key_revoked",
        }
    }
}

/// The fields a Logon signature covers, as their raw values (no tag, no `=`, no SOH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogonFields<'a> {
    /// SendingTime(52).
    pub sending_time: &'a [u8],
    /// MsgType(35), `A` for a Logon.
    pub msg_type: &'a [u8],
    /// MsgSeqNum(34).
    pub msg_seq_num: &'a [u8],
    /// SenderCompID(49).
    pub sender_comp_id: &'a [u8],
    /// TargetCompID(56).
    pub target_comp_id: &'a [u8],
    /// Username(553): the key id.
    pub username: &'a [u8],
}

impl LogonFields<'_> {
    fn parts(&self) -> [&[u8]; 6] {
        [
            self.sending_time,
            self.msg_type,
            self.msg_seq_num,
            self.sender_comp_id,
            self.target_comp_id,
            self.username,
        ]
    }
}

/// The Logon prehash: the six values joined by SOH, in order (for documentation and client
/// code; the verifier feeds the HMAC the same bytes without building this).
pub fn logon_prehash(fields: &LogonFields<'_>) -> Vec<u8> {
    let parts = fields.parts();
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(SOH);
        }
        out.extend_from_slice(p);
    }
    out
}

/// An HMAC-SHA256 key with the inner and outer pads already absorbed, so each signature costs
/// only the message's blocks. Built once per Logon; cheap to clone. The precomputed state is as
/// secret as the key: it is overwritten when dropped.
#[derive(Clone)]
pub struct HmacKey {
    mac: HmacSha256,
}

impl HmacKey {
    /// A key from the secret's bytes (its ASCII text, as printed).
    pub fn new(secret: &[u8]) -> Self {
        Self { mac: keyed(secret) }
    }

    /// HMAC-SHA256 of `data`.
    pub fn tag(&self, data: &[u8]) -> [u8; TAG_LEN] {
        let mut m = self.mac.clone();
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// HMAC-SHA256 of the Logon prehash of `fields`, fed piece by piece (no allocation).
    pub fn logon_tag(&self, fields: &LogonFields<'_>) -> [u8; TAG_LEN] {
        let mut m = self.mac.clone();
        for (i, p) in fields.parts().iter().enumerate() {
            if i > 0 {
                m.update(&[SOH]);
            }
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// Checks a Logon's RawData(96) in constant time. No allocation.
    pub fn verify_logon(&self, fields: &LogonFields<'_>, raw_data: &[u8]) -> bool {
        tag_matches_b64(&self.logon_tag(fields), raw_data)
    }

    /// Checks a base64 signature of `signed` in constant time. No allocation.
    pub fn verify_b64(&self, signed: &[u8], sig_b64: &[u8]) -> Result<(), SigError> {
        let (buf, n) = decode_b64_tag(sig_b64).ok_or(SigError::Malformed)?;
        if n != TAG_LEN {
            return Err(SigError::Malformed);
        }
        let mut m = self.mac.clone();
        m.update(signed);
        m.verify_slice(&buf[..n]).map_err(|_| SigError::Mismatch)
    }

    /// Checks the per-message signature of a whole FIX message (from `8=` through the CheckSum
    /// field, or ending right after Signature(89)). No allocation.
    pub fn verify_message(&self, message: &[u8]) -> Result<(), SigError> {
        let (signed, sig) = split_signed(message)?;
        self.verify_b64(signed, sig)
    }

    /// Checks a hex HMAC-SHA256 signature of `payload` (the WebSocket dialect; upper or lower
    /// case) in constant time. No allocation.
    pub fn verify_hex(&self, payload: &[u8], sig_hex: &[u8]) -> bool {
        let mut buf = [0u8; TAG_LEN];
        if sig_hex.len() != 2 * TAG_LEN || hex::decode_to_slice(sig_hex, &mut buf).is_err() {
            return false;
        }
        let mut m = self.mac.clone();
        m.update(payload);
        m.verify_slice(&buf).is_ok()
    }
}

impl Drop for HmacKey {
    fn drop(&mut self) {
        // `hmac` 0.12 has no zeroize support; replace the key-derived state with that of the
        // empty key (public), and keep the store from being optimized away.
        self.mac = keyed(&[]);
        std::hint::black_box(&mut self.mac);
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey([redacted])")
    }
}

fn keyed(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// True if `b64` is the canonical padded base64 of `tag`, compared in constant time. No
/// allocation.
pub fn tag_matches_b64(tag: &[u8; TAG_LEN], b64: &[u8]) -> bool {
    match decode_b64_tag(b64) {
        Some((buf, n)) => n == TAG_LEN && bool::from(tag.ct_eq(&buf[..TAG_LEN])),
        None => false,
    }
}

/// Decodes a canonical padded base64 tag into a stack buffer; `None` if it is not one or is
/// longer than any tag.
fn decode_b64_tag(b64: &[u8]) -> Option<([u8; 48], usize)> {
    if b64.is_empty() || b64.len() > MAX_SIG_B64 {
        return None;
    }
    let mut buf = [0u8; 48];
    let n = B64.decode_slice(b64, &mut buf).ok()?;
    Some((buf, n))
}

/// Splits a FIX message into the signed bytes (from `8=` up to and including the SOH before
/// `93=`) and the Signature(89) value, checking the trailer: `93=<len>␁89=<len bytes>␁`, then
/// nothing or `10=<3 digits>␁`. No allocation.
pub fn split_signed(message: &[u8]) -> Result<(&[u8], &[u8]), SigError> {
    const MARK: &[u8] = b"\x0193=";
    let at = message
        .windows(MARK.len())
        .rposition(|w| w == MARK)
        .ok_or(SigError::Missing)?;
    if !message.starts_with(b"8=") {
        return Err(SigError::Malformed);
    }
    let signed = &message[..=at];
    let rest = &message[at + MARK.len()..];
    // SignatureLength: 1 to 3 digits, then SOH.
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 3 || rest.get(digits) != Some(&SOH) {
        return Err(SigError::Malformed);
    }
    let len = rest[..digits]
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    let rest = rest[digits + 1..]
        .strip_prefix(b"89=")
        .ok_or(SigError::Malformed)?;
    if len == 0 || len > MAX_SIG_B64 || rest.len() <= len || rest[len] != SOH {
        return Err(SigError::Malformed);
    }
    let sig = &rest[..len];
    let tail = &rest[len + 1..];
    let tail_ok = tail.is_empty()
        || (tail.len() == 7
            && tail.starts_with(b"10=")
            && tail[3..6].iter().all(u8::is_ascii_digit)
            && tail[6] == SOH);
    if !tail_ok {
        return Err(SigError::Malformed);
    }
    Ok((signed, sig))
}

/// RawData(96) for a Logon: base64(HMAC-SHA256(secret, prehash)). `secret` is the secret's
/// ASCII text as printed.
pub fn sign_logon(secret: &[u8], fields: &LogonFields<'_>) -> String {
    B64.encode(HmacKey::new(secret).logon_tag(fields))
}

/// Checks a Logon's RawData(96) in constant time.
pub fn verify_logon(secret: &[u8], fields: &LogonFields<'_>, raw_data: &[u8]) -> bool {
    HmacKey::new(secret).verify_logon(fields, raw_data)
}

/// Signature(89) for the bytes of a message from `8=` up to and including the SOH before
/// `93=`.
pub fn sign_message(secret: &[u8], signed_bytes: &[u8]) -> String {
    B64.encode(HmacKey::new(secret).tag(signed_bytes))
}

/// Checks the per-message signature of a whole FIX message; see [`split_signed`]. No
/// allocation (prefer [`HmacKey::verify_message`] with a key built once per session).
pub fn verify_message(secret: &[u8], message: &[u8]) -> Result<(), SigError> {
    HmacKey::new(secret).verify_message(message)
}

/// Checks a base64 signature over already-delimited signed bytes (for callers that located
/// the trailer themselves). No allocation.
pub fn verify_signed_bytes(secret: &[u8], signed: &[u8], sig_b64: &[u8]) -> Result<(), SigError> {
    HmacKey::new(secret).verify_b64(signed, sig_b64)
}

/// hex(HMAC-SHA256(secret, payload)), lowercase: the WebSocket dialect's `signature`.
pub fn sign_hmac_hex(secret: &[u8], payload: &[u8]) -> String {
    hex::encode(HmacKey::new(secret).tag(payload))
}

/// Checks a hex HMAC-SHA256 signature (the WebSocket dialect) in constant time.
pub fn verify_hmac_hex(secret: &[u8], payload: &[u8], sig_hex: &[u8]) -> bool {
    HmacKey::new(secret).verify_hex(payload, sig_hex)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const SECRET: &[u8] =
        b"6f1c0a7e3d5b49e2a8c4f0b1d9e7a6c5b3f2e1d0c9b8a7f6e5d4c3b2a1908172";

    fn fields() -> LogonFields<'static> {
        LogonFields {
            sending_time: b"20240102-03:04:05.678",
            msg_type: b"A",
            msg_seq_num: b"1",
            sender_comp_id: b"CLIENT1",
            target_comp_id: b"PORTCULLIS",
            username: b"pk_0123456789abcdef0123456789abcdef",
        }
    }

    /// A message with correct BodyLength and CheckSum: `body` is everything after `9=N␁` up to
    /// and including the SOH before 93; the 93/89 fields are appended when `sign` is set.
    pub(crate) fn message(secret: &[u8], body: &[u8], sign: bool) -> Vec<u8> {
        let sig_fields = if sign { 3 + 3 + 3 + TAG_B64_LEN + 1 } else { 0 };
        let mut m = format!("8=FIX.4.4\x019={}\x01", body.len() + sig_fields).into_bytes();
        m.extend_from_slice(body);
        if sign {
            let sig = sign_message(secret, &m);
            m.extend_from_slice(b"93=44\x0189=");
            m.extend_from_slice(sig.as_bytes());
            m.push(SOH);
        }
        let sum = m.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        m.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
        m
    }

    pub(crate) const ORDER_BODY: &[u8] = b"35=D\x0134=2\x0149=CLIENT1\x0152=20240102-03:04:06.000\x01\
56=PORTCULLIS\x0111=ORD-1\x0121=1\x0155=BTC-28JUN24-70000-C\x0154=1\x0138=10\x0140=2\x0144=0.0550\x01\
59=0\x0160=20240102-03:04:06.000\x01";

    #[test]
    fn rfc4231_test_case_2_matches() {
        // The `hmac`+`sha2` pair against the published vector, through our precomputed key.
        let k = HmacKey::new(b"Jefe");
        assert_eq!(
            hex::encode(k.tag(b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn worked_example_logon_raw_data() {
        assert_eq!(
            logon_prehash(&fields()),
            b"20240102-03:04:05.678\x01A\x011\x01CLIENT1\x01PORTCULLIS\x01pk_0123456789abcdef0123456789abcdef"
        );
        let raw = sign_logon(SECRET, &fields());
        assert_eq!(raw, "9XdL99g8J5wfiOcnAqhlajz4rEvGrd9KSGQYaxXv81U=");
        assert!(verify_logon(SECRET, &fields(), raw.as_bytes()));
    }

    #[test]
    fn worked_example_message_signature() {
        let m = message(SECRET, ORDER_BODY, true);
        let (signed, sig) = split_signed(&m).unwrap();
        assert_eq!(signed.len() + 6 + 3 + TAG_B64_LEN + 1 + 7, m.len());
        assert!(
            signed.starts_with(b"8=FIX.4.4\x019=207\x01"),
            "{}",
            String::from_utf8_lossy(signed)
        );
        assert_eq!(sig, b"4ixvj9wgO1Id8mWM1ys//vpG+9EmeI8ZyV34rTf3xs4=");
        assert!(
            m.ends_with(b"\x0110=004\x01"),
            "{}",
            String::from_utf8_lossy(&m)
        );
        assert_eq!(verify_message(SECRET, &m), Ok(()));
    }

    #[test]
    fn logon_signature_over_different_comp_ids_is_refused() {
        let raw = sign_logon(SECRET, &fields());
        let mut f = fields();
        f.sender_comp_id = b"CLIENT2";
        assert!(!verify_logon(SECRET, &f, raw.as_bytes()));
        let mut f = fields();
        f.target_comp_id = b"OTHER";
        assert!(!verify_logon(SECRET, &f, raw.as_bytes()));
        // Moving a byte across the separator changes the prehash.
        let mut f = fields();
        f.sender_comp_id = b"CLIENT1P";
        f.target_comp_id = b"ORTCULLIS";
        assert!(!verify_logon(SECRET, &f, raw.as_bytes()));
    }

    #[test]
    fn logon_signature_with_another_secret_or_bad_base64_is_refused() {
        let raw = sign_logon(SECRET, &fields());
        let other = b"0000000000000000000000000000000000000000000000000000000000000000";
        assert!(!verify_logon(other, &fields(), raw.as_bytes()));
        assert!(!verify_logon(SECRET, &fields(), b""));
        assert!(!verify_logon(SECRET, &fields(), &raw.as_bytes()[..43]));
        assert!(!verify_logon(
            SECRET,
            &fields(),
            raw.trim_end_matches('=').as_bytes()
        ));
        assert!(!verify_logon(SECRET, &fields(), &[b'A'; 200]));
        // The key is the secret's text, not its hex decoding.
        let decoded = hex::decode(SECRET).unwrap();
        assert!(!verify_logon(&decoded, &fields(), raw.as_bytes()));
    }

    #[test]
    fn missing_per_message_signature_is_reported_as_missing() {
        let m = message(SECRET, ORDER_BODY, false);
        assert_eq!(verify_message(SECRET, &m), Err(SigError::Missing));
    }

    #[test]
    fn tampered_message_body_is_refused() {
        let m = message(SECRET, ORDER_BODY, true);
        let pos = m.windows(6).position(|w| w == b"38=10\x01").unwrap();
        for i in 0..=pos + 4 {
            let mut t = m.clone();
            t[i] ^= 0x04;
            assert!(verify_message(SECRET, &t).is_err(), "byte {i}");
        }
        let mut t = m.clone();
        t[pos + 3] = b'9'; // 38=90
        assert_eq!(verify_message(SECRET, &t), Err(SigError::Mismatch));
    }

    #[test]
    fn fields_after_the_signature_are_refused() {
        let m = message(SECRET, ORDER_BODY, true);
        let cut = m.len() - 7; // before 10=
        let mut t = m[..cut].to_vec();
        t.extend_from_slice(b"44=99\x0110=000\x01");
        assert_eq!(verify_message(SECRET, &t), Err(SigError::Malformed));
        // Without checksum is accepted (callers may strip it).
        assert_eq!(verify_message(SECRET, &m[..cut]), Ok(()));
    }

    #[test]
    fn malformed_trailers_are_refused() {
        let m = message(SECRET, ORDER_BODY, true);
        let s = String::from_utf8(m.clone()).unwrap();
        for bad in [
            s.replace("93=44", "93=43"),
            s.replace("93=44", "93=045x"),
            s.replace("93=44", "93="),
            s.replace("\x0189=", "\x0188="),
            s.replacen("8=FIX", "X=FIX", 1),
        ] {
            assert!(verify_message(SECRET, bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hex_signatures_for_the_websocket_dialect() {
        let payload = b"apiKey=pk_1&symbol=BTCUSDT&timestamp=1704164645678";
        let sig = sign_hmac_hex(SECRET, payload);
        assert_eq!(sig.len(), 64);
        assert!(verify_hmac_hex(SECRET, payload, sig.as_bytes()));
        assert!(verify_hmac_hex(
            SECRET,
            payload,
            sig.to_uppercase().as_bytes()
        ));
        assert!(!verify_hmac_hex(SECRET, b"apiKey=pk_1", sig.as_bytes()));
        assert!(!verify_hmac_hex(SECRET, payload, &sig.as_bytes()[..62]));
        assert!(!verify_hmac_hex(SECRET, payload, b"zz"));
    }

    #[test]
    fn verifying_does_not_depend_on_a_signature_longer_than_any_tag() {
        let m = message(SECRET, ORDER_BODY, true);
        let s = String::from_utf8(m).unwrap();
        let long = s.replace("93=44\x0189=", "93=999\x0189=");
        assert_eq!(
            verify_message(SECRET, long.as_bytes()),
            Err(SigError::Malformed)
        );
    }
}
