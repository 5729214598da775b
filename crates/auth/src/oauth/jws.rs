//! JWS compact serialization (RFC 7515 §7.1), just what this server needs.
//!
//! Hand-written over ed25519-dalek and hmac rather than a JWT crate: the whole format is
//! `base64url(header).base64url(payload).base64url(signature)`, and owning those few lines
//! lets us accept exactly two algorithms chosen by the verifier — never by the token — with no
//! `none`, no RSA/ECDSA code paths, no key-from-header (`jwk`, `jku`, `x5u`) logic and no
//! further dependency in the auth crate.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::Deserialize;

/// Longest token accepted: far above any token this server issues or a client needs to send,
/// low enough that junk is refused before any decoding.
pub(crate) const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The JOSE header members we read. Others are ignored, except `crit`, whose presence means
/// "refuse unless you understand these extensions" (RFC 7515 §4.1.11) — we understand none.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// A compact JWS split and decoded, its signature not yet checked.
pub(crate) struct Parsed<'a> {
    pub header: Header,
    pub payload: Vec<u8>,
    /// `base64url(header) "." base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWS. The base64url must be unpadded and canonical, the header
/// a JSON object without `crit`.
pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, &'static str> {
    if token.len() > MAX_TOKEN_LEN {
        return Err("too long");
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not three dot-separated parts");
    };
    let header_bytes = B64URL.decode(h).map_err(|_| "header is not base64url")?;
    let header: Header =
        serde_json::from_slice(&header_bytes).map_err(|_| "header is not a JOSE header")?;
    if header.crit.is_some() {
        return Err("critical header extensions are not supported");
    }
    let payload = B64URL.decode(p).map_err(|_| "payload is not base64url")?;
    let signature = B64URL.decode(s).map_err(|_| "signature is not base64url")?;
    let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
    Ok(Parsed {
        header,
        payload,
        signing_input,
        signature,
    })
}

/// Builds a compact JWS: `sign` gets the signing input and returns the signature bytes.
pub(crate) fn encode(
    header_json: &[u8],
    payload_json: &[u8],
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let mut out = String::with_capacity((header_json.len() + payload_json.len() + 64) * 4 / 3 + 8);
    B64URL.encode_string(header_json, &mut out);
    out.push('.');
    B64URL.encode_string(payload_json, &mut out);
    let sig = sign(out.as_bytes());
    out.push('.');
    B64URL.encode_string(sig, &mut out);
    out
}

/// Unpadded base64url.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}
