//! The inputs of the endpoints, parsed from what the HTTP layer has: the form body and the
//! `Authorization` header.

use std::collections::BTreeSet;
use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use zeroize::{Zeroize, Zeroizing};

use super::OAuthError;
use crate::key::{Scope, Scopes};

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Largest form body accepted: a token request is a few hundred bytes; an assertion or a long
/// instrument list a few KiB.
pub const MAX_FORM_LEN: usize = 64 * 1024;
/// Most instruments a token may be restricted to.
pub const MAX_INSTRUMENTS: usize = 256;

// ---------------------------------------------------------------------------------------------
// Form bodies

/// The parameters of an `application/x-www-form-urlencoded` body. Each name may appear once
/// (RFC 6749 §3.2); an empty value counts as absent (RFC 6749 §3.1). Values (secrets and
/// refresh tokens among them) are zeroized on drop.
#[derive(Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses a body: `&`-separated `name=value` pairs, `+` as space, `%XX` escapes, UTF-8.
    pub fn parse(body: &[u8]) -> Result<Form, OAuthError> {
        if body.len() > MAX_FORM_LEN {
            return Err(OAuthError::request("request body too large"));
        }
        let mut form = Form::default();
        for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let name =
                form_decode(name).ok_or_else(|| OAuthError::request("malformed form encoding"))?;
            let value =
                form_decode(value).ok_or_else(|| OAuthError::request("malformed form encoding"))?;
            form.push(name.to_string(), value.to_string())?;
        }
        Ok(form)
    }

    /// A form from already decoded pairs (when the HTTP framework did the decoding).
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Form, OAuthError> {
        let mut form = Form::default();
        for (k, v) in pairs {
            form.push(k.as_ref().to_owned(), v.as_ref().to_owned())?;
        }
        Ok(form)
    }

    fn push(&mut self, name: String, value: String) -> Result<(), OAuthError> {
        if self.pairs.iter().any(|(n, _)| *n == name) {
            return Err(OAuthError::request(format!(
                "parameter {} appears more than once",
                clip(&name)
            )));
        }
        self.pairs.push((name, value));
        Ok(())
    }

    /// The value of `name`, `None` if absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The parameter names, in order (to refuse names a caller does not know).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(n, _)| n.as_str())
    }

    /// The value of `name`, or `invalid_request` naming it.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::request(format!("missing parameter {name}")))
    }
}

impl Drop for Form {
    fn drop(&mut self) {
        for (_, v) in &mut self.pairs {
            v.zeroize();
        }
    }
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: values include secrets, assertions and refresh tokens.
        f.debug_list()
            .entries(self.pairs.iter().map(|(n, _)| n))
            .finish()
    }
}

/// Decodes one `application/x-www-form-urlencoded` component; `None` on a bad escape or
/// invalid UTF-8.
fn form_decode(raw: &[u8]) -> Option<Zeroizing<String>> {
    let mut out = Zeroizing::new(Vec::with_capacity(raw.len()));
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_val(*raw.get(i + 1)?)?;
                let lo = hex_val(*raw.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    let text = std::str::from_utf8(&out).ok()?;
    Some(Zeroizing::new(text.to_owned()))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// At most 64 characters of `s`, for error descriptions.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

// ---------------------------------------------------------------------------------------------
// Client credentials

/// How a client proves it holds its key, as found in a request. `Debug` never shows the secret
/// or the assertion.
pub enum ClientCredentials {
    /// `client_secret_basic`: HTTP Basic with the key id and the secret text.
    Basic {
        /// The key id.
        client_id: String,
        /// The secret, form-urldecoded as RFC 6749 §2.3.1 says clients must encode it.
        secret: Zeroizing<String>,
        /// The secret exactly as sent, when it differs from `secret`: many clients do not
        /// form-encode, and a `+` or `%` in an imported secret would otherwise be mangled.
        raw_secret: Option<Zeroizing<String>>,
    },
    /// `client_secret_jwt` (HS256) or `private_key_jwt` (EdDSA): a JWT assertion (RFC 7523).
    Assertion {
        /// The `client_id` form parameter, if sent (it must then equal the assertion's `iss`).
        client_id: Option<String>,
        /// The compact JWT.
        assertion: Zeroizing<String>,
    },
}

impl ClientCredentials {
    /// Parses an `Authorization: Basic base64(client_id ":" secret)` header value.
    pub fn from_basic_header(value: &str) -> Result<Self, OAuthError> {
        let value = value.trim();
        let (scheme, rest) = value
            .split_once(' ')
            .ok_or_else(|| OAuthError::client("malformed Authorization header"))?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(OAuthError::client(
                "unsupported authentication scheme (use Basic or a client assertion)",
            ));
        }
        let decoded = B64
            .decode(rest.trim())
            .map(Zeroizing::new)
            .map_err(|_| OAuthError::client("malformed Basic credentials"))?;
        let text = std::str::from_utf8(&decoded)
            .map_err(|_| OAuthError::client("malformed Basic credentials"))?;
        let (id_raw, secret_raw) = text
            .split_once(':')
            .ok_or_else(|| OAuthError::client("malformed Basic credentials"))?;
        let client_id = form_decode(id_raw.as_bytes())
            .ok_or_else(|| OAuthError::client("malformed Basic credentials"))?;
        // A secret that is not valid form encoding (a lone '%') is taken as sent.
        let secret = form_decode(secret_raw.as_bytes())
            .unwrap_or_else(|| Zeroizing::new(secret_raw.to_owned()));
        let raw_secret =
            (secret.as_str() != secret_raw).then(|| Zeroizing::new(secret_raw.to_owned()));
        Ok(ClientCredentials::Basic {
            client_id: client_id.to_string(),
            secret,
            raw_secret,
        })
    }

    /// The credentials of a request: HTTP Basic from the `Authorization` header, or a JWT
    /// assertion from the form. Exactly one method must be used (RFC 6749 §2.3);
    /// `client_secret_post` is not supported.
    pub fn from_request(authorization: Option<&str>, form: &Form) -> Result<Self, OAuthError> {
        let assertion_type = form.get("client_assertion_type");
        let assertion = form.get("client_assertion");
        if form.get("client_secret").is_some() {
            return Err(OAuthError::client(
                "client_secret in the body is not supported: use HTTP Basic",
            ));
        }
        match authorization {
            Some(h) => {
                if assertion_type.is_some() || assertion.is_some() {
                    return Err(OAuthError::request(
                        "more than one client authentication method",
                    ));
                }
                let creds = Self::from_basic_header(h)?;
                if let (Some(id), ClientCredentials::Basic { client_id, .. }) =
                    (form.get("client_id"), &creds)
                {
                    if id != client_id {
                        return Err(OAuthError::request(
                            "client_id does not match the authenticated client",
                        ));
                    }
                }
                Ok(creds)
            }
            None => match (assertion_type, assertion) {
                (Some(JWT_BEARER_ASSERTION_TYPE), Some(a)) => Ok(ClientCredentials::Assertion {
                    client_id: form.get("client_id").map(str::to_owned),
                    assertion: Zeroizing::new(a.to_owned()),
                }),
                (Some(JWT_BEARER_ASSERTION_TYPE), None) => {
                    Err(OAuthError::request("missing parameter client_assertion"))
                }
                (Some(_), _) => Err(OAuthError::client(format!(
                    "unsupported client_assertion_type (expected {JWT_BEARER_ASSERTION_TYPE})"
                ))),
                (None, Some(_)) => Err(OAuthError::request(
                    "missing parameter client_assertion_type",
                )),
                (None, None) => Err(OAuthError::client("client authentication required")),
            },
        }
    }

    /// The client id the credentials claim, if readable without verification.
    pub fn claimed_client_id(&self) -> Option<&str> {
        match self {
            ClientCredentials::Basic { client_id, .. } => Some(client_id),
            ClientCredentials::Assertion { client_id, .. } => client_id.as_deref(),
        }
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCredentials::Basic { client_id, .. } => {
                write!(f, "Basic({client_id}, [redacted])")
            }
            ClientCredentials::Assertion { client_id, .. } => {
                write!(f, "Assertion({client_id:?}, [redacted])")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Grant options

/// What a client may ask of a `client_credentials` token: a narrower scope, and restrictions
/// that travel in the token for the resource server to enforce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantOptions {
    /// The scope asked for (`scope`, space-separated); `None` means all the key may grant.
    pub scope: Option<Scopes>,
    /// Only these instruments (`instruments`, space-separated symbols), sorted, no duplicates.
    pub instruments: Option<Vec<String>>,
    /// At most this quantity per order (`max_qty`, a positive decimal), in canonical form.
    pub max_qty: Option<String>,
}

impl GrantOptions {
    /// Reads `scope`, `instruments` and `max_qty` from a token request.
    pub fn from_form(form: &Form) -> Result<Self, OAuthError> {
        Ok(Self {
            scope: form.get("scope").map(parse_scope).transpose()?,
            instruments: form.get("instruments").map(parse_instruments).transpose()?,
            max_qty: form.get("max_qty").map(parse_max_qty).transpose()?,
        })
    }
}

/// Parses an OAuth `scope`: space-separated, case-sensitive names (`read`, `trade`, `admin`).
pub fn parse_scope(text: &str) -> Result<Scopes, OAuthError> {
    let mut set = Scopes::NONE;
    for name in text.split(' ').filter(|s| !s.is_empty()) {
        let scope = Scope::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| OAuthError::scope(format!("unknown scope {}", clip(name))))?;
        set.insert(scope);
    }
    if set.is_empty() {
        return Err(OAuthError::scope("empty scope"));
    }
    Ok(set)
}

/// A scope set as OAuth writes it: names separated by single spaces.
pub fn scope_string(scopes: Scopes) -> String {
    scopes.iter().map(Scope::name).collect::<Vec<_>>().join(" ")
}

/// True if every scope of `a` is in `b`.
pub(crate) fn is_subset(a: Scopes, b: Scopes) -> bool {
    a.iter().all(|s| b.contains(s))
}

/// Parses `instruments`: space-separated symbols of 1 to 64 printable ASCII characters,
/// at most [`MAX_INSTRUMENTS`] distinct ones.
pub fn parse_instruments(text: &str) -> Result<Vec<String>, OAuthError> {
    let mut set = BTreeSet::new();
    for sym in text.split(' ').filter(|s| !s.is_empty()) {
        let ok = sym.len() <= 64 && sym.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(OAuthError::request(format!(
                "invalid instrument symbol {}",
                clip(sym)
            )));
        }
        set.insert(sym.to_owned());
    }
    if set.is_empty() {
        return Err(OAuthError::request("empty instruments list"));
    }
    if set.len() > MAX_INSTRUMENTS {
        return Err(OAuthError::request(format!(
            "more than {MAX_INSTRUMENTS} instruments"
        )));
    }
    Ok(set.into_iter().collect())
}

/// Parses `max_qty`: a positive decimal (`10`, `0.5`; at most 20 integer and 18 fractional
/// digits), returned in canonical form (no leading zeros, no trailing fractional zeros), so the
/// claim reads the same however the client wrote it.
pub fn parse_max_qty(text: &str) -> Result<String, OAuthError> {
    let bad = || OAuthError::request("max_qty must be a positive decimal such as 10 or 0.5");
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || int.len() > 20
        || frac.len() > 18
        || !digits(int)
        || !digits(frac)
        || (text.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    let int = if int.is_empty() { "0" } else { int };
    Ok(if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    })
}
