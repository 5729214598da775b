//! API keys: a public key id, an HMAC secret and/or an Ed25519 public key, one account, scopes,
//! an optional IP allowlist and expiry, a status, and created/last-used times.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::clock::format_rfc3339_ms;

/// Why a key, or a part of one, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A key id must be 1 to 64 characters of `A-Z a-z 0-9 _ -`.
    #[error("invalid key id {0:?}: expected 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")]
    BadKeyId(String),
    /// A secret must be 32 to 128 printable ASCII characters without spaces.
    #[error("invalid secret: expected 32 to 128 printable ASCII characters without spaces")]
    BadSecret,
    /// The account is empty, too long or contains control characters.
    #[error("invalid account {0:?}: expected 1 to 64 printable characters")]
    BadAccount(String),
    /// A scope name is not `read`, `trade` or `admin`.
    #[error("unknown scope {0:?}: expected read, trade or admin")]
    UnknownScope(String),
    /// No scope was given.
    #[error("no scope given: expected a comma-separated list of read, trade, admin")]
    NoScopes,
    /// An IP allowlist entry is not an address or a CIDR.
    #[error("invalid IP allowlist entry {0:?}: expected an IPv4/IPv6 address or CIDR such as 10.0.0.0/8 or 2001:db8::/32")]
    BadCidr(String),
    /// The Ed25519 public key is not base64 of 32 bytes (raw, or a DER/PEM SubjectPublicKeyInfo),
    /// or is not a valid curve point.
    #[error("invalid Ed25519 public key: {0}")]
    BadEd25519Key(&'static str),
    /// The key would be created already expired.
    #[error("expiry {0} is not in the future")]
    ExpiryInPast(String),
}

// ---------------------------------------------------------------------------------------------
// Key id

/// The public identifier of a key: `pk_` and 32 lowercase hex characters when generated (16
/// random bytes). Sent as Username(553) on FIX and `apiKey` on WebSocket.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    /// A fresh random key id from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut b = [0u8; 16];
        fill_random(&mut b);
        Self(format!("pk_{}", hex::encode(b)))
    }

    /// Checks `s` is a well-formed key id (1 to 64 characters of `A-Z a-z 0-9 _ -`).
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if is_valid_key_id(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(KeyError::BadKeyId(s.chars().take(80).collect()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// True if `s` is 1 to 64 characters of `A-Z a-z 0-9 _ -`.
pub fn is_valid_key_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl TryFrom<String> for KeyId {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, KeyError> {
        if is_valid_key_id(&s) {
            Ok(Self(s))
        } else {
            Err(KeyError::BadKeyId(s))
        }
    }
}

impl From<KeyId> for String {
    fn from(k: KeyId) -> String {
        k.0
    }
}

impl FromStr for KeyId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::parse(s)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// ---------------------------------------------------------------------------------------------
// Secret

/// An HMAC secret, as its ASCII text (64 lowercase hex characters when generated from 32 random
/// bytes). The HMAC key is this text's bytes, exactly as printed — never a decoding of it
/// (DESIGN.md §4). Zeroized when dropped; `Debug` prints `[redacted]` and there is no `Display`.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl PartialEq for Secret {
    /// Constant-time, like [`Secret::ct_eq`].
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for Secret {}

impl Secret {
    /// A fresh secret: 32 bytes from the OS CSPRNG, as 64 lowercase hex characters.
    pub fn generate() -> Self {
        let mut raw = Zeroizing::new([0u8; 32]);
        fill_random(&mut raw[..]);
        // Built in place at its final capacity, so no reallocation leaves a copy behind.
        let mut text = Zeroizing::new(String::with_capacity(64));
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in raw.iter() {
            text.push(char::from(HEX[usize::from(b >> 4)]));
            text.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        Self(text)
    }

    /// A secret from its text (e.g. one issued elsewhere and imported): 32 to 128 printable
    /// ASCII characters without spaces.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        Self::from_string(Zeroizing::new(text.to_owned()))
    }

    fn from_string(text: Zeroizing<String>) -> Result<Self, KeyError> {
        let ok = (32..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(text))
        } else {
            Err(KeyError::BadSecret)
        }
    }

    /// The secret's text, to print once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key: the bytes of the secret's text.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Secret) -> bool {
        self.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        Self::from_string(text).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Scopes

/// One permission a key can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read-only access: market data, own orders and positions.
    Read,
    /// Place, amend and cancel orders.
    Trade,
    /// Operator actions.
    Admin,
}

impl Scope {
    /// All scopes, in display order.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Trade, Scope::Admin];

    /// The scope's name: `read`, `trade` or `admin`.
    pub const fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Trade => "trade",
            Scope::Admin => "admin",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Trade => 2,
            Scope::Admin => 4,
        }
    }
}

impl FromStr for Scope {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let t = s.trim();
        Scope::ALL
            .into_iter()
            .find(|sc| sc.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| KeyError::UnknownScope(t.chars().take(40).collect()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`Scope`]s. Parses from and displays as a comma-separated list (`read,trade`);
/// stored as a JSON array of names.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope.
    pub const NONE: Scopes = Scopes(0);

    /// The set holding exactly `scopes`.
    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |acc, s| acc | s.bit()))
    }

    /// Parses a comma-separated list such as `trade,read` (case-insensitive, spaces ignored).
    /// Empty lists and unknown names are errors.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let mut set = Scopes::NONE;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            set.insert(part.parse()?);
        }
        if set.is_empty() {
            return Err(KeyError::NoScopes);
        }
        Ok(set)
    }

    /// True if `scope` is in the set.
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Adds `scope`.
    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    /// True if the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl FromStr for Scopes {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::parse(s)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(s.name())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Scope::name))
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut set = Scopes::NONE;
        for n in names {
            set.insert(n.parse().map_err(serde::de::Error::custom)?);
        }
        Ok(set)
    }
}

// ---------------------------------------------------------------------------------------------
// Ed25519 public keys

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE, AlgorithmIdentifier
/// { id-Ed25519 }, BIT STRING of 32 bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Parses an Ed25519 public key given as base64 of the raw 32 bytes, base64 of its DER
/// SubjectPublicKeyInfo (44 bytes), or a PEM `PUBLIC KEY` block (the form the Binance dialect's
/// clients register), and checks it is a valid curve point.
pub fn parse_ed25519_public_key(text: &str) -> Result<[u8; 32], KeyError> {
    let t = text.trim();
    let body: String = if t.starts_with("-----BEGIN") {
        let inner = t
            .strip_prefix("-----BEGIN PUBLIC KEY-----")
            .and_then(|r| r.trim_end().strip_suffix("-----END PUBLIC KEY-----"))
            .ok_or(KeyError::BadEd25519Key(
                "PEM must be a single PUBLIC KEY block",
            ))?;
        inner.split_whitespace().collect()
    } else {
        t.to_owned()
    };
    let der = B64
        .decode(body.as_bytes())
        .map_err(|_| KeyError::BadEd25519Key("not base64"))?;
    let raw: [u8; 32] = match der.len() {
        32 => der[..].try_into().expect("length checked"),
        44 if der[..12] == ED25519_SPKI_PREFIX => der[12..].try_into().expect("length checked"),
        _ => {
            return Err(KeyError::BadEd25519Key(
                "expected 32 raw bytes or an Ed25519 SubjectPublicKeyInfo",
            ))
        }
    };
    ed25519_dalek::VerifyingKey::from_bytes(&raw)
        .map_err(|_| KeyError::BadEd25519Key("not a valid Ed25519 point"))?;
    Ok(raw)
}

/// Verifies an Ed25519 `signature` (64 raw bytes) of `payload` under `public_key`, with the
/// strict rules (no small-order keys, canonical `S`). False for anything malformed.
pub fn verify_ed25519(public_key: &[u8; 32], payload: &[u8], signature: &[u8]) -> bool {
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    vk.verify_strict(payload, &sig).is_ok()
}

mod ed25519_b64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(k) => s.serialize_some(&B64.encode(k)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(t) => parse_ed25519_public_key(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The key

/// Whether a key may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Revoked for good; sessions that logged on with it end.
    Revoked,
}

impl KeyStatus {
    /// `active` or `revoked`.
    pub const fn name(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
        }
    }
}

/// An API key as stored in the vault. `Debug` never shows the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Public identifier.
    pub key_id: KeyId,
    /// HMAC secret (absent for an Ed25519-only key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Ed25519 public key (raw 32 bytes; stored as base64), for WebSocket `session.logon`.
    #[serde(default, with = "ed25519_b64", skip_serializing_if = "Option::is_none")]
    pub ed25519_public_key: Option<[u8; 32]>,
    /// The one account the key acts for.
    pub account: String,
    /// What the key may do.
    pub scopes: Scopes,
    /// Source addresses allowed to use the key; empty = any.
    #[serde(default)]
    pub ip_allowlist: Vec<IpNet>,
    /// Expiry, Unix milliseconds; the key is refused from this instant on.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Active or revoked.
    pub status: KeyStatus,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Last successful use, Unix milliseconds.
    #[serde(default)]
    pub last_used_at: Option<i64>,
    /// When it was revoked, Unix milliseconds.
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

impl ApiKey {
    /// True if the key is revoked.
    pub fn is_revoked(&self) -> bool {
        self.status == KeyStatus::Revoked
    }

    /// True if the key has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|e| now_ms >= e)
    }

    /// True if `ip` may use the key: the allowlist is empty, or a CIDR in it contains `ip`.
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as dual-stack sockets report IPv4 peers)
    /// is matched as the IPv4 address it carries.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        if self.ip_allowlist.is_empty() {
            return true;
        }
        let ip = canonical_ip(ip);
        self.ip_allowlist.iter().any(|net| net.contains(&ip))
    }

    /// Verifies an Ed25519 signature (64 raw bytes) of `payload` with the key's Ed25519 public
    /// key; false if the key has none.
    pub fn verify_ed25519(&self, payload: &[u8], signature: &[u8]) -> bool {
        self.ed25519_public_key
            .as_ref()
            .is_some_and(|pk| verify_ed25519(pk, payload, signature))
    }

    /// The public view of the key, for listings (no secret).
    pub fn info(&self) -> KeyInfo {
        KeyInfo {
            key_id: self.key_id.to_string(),
            account: self.account.clone(),
            scopes: self.scopes,
            credential: match (self.secret.is_some(), self.ed25519_public_key.is_some()) {
                (true, true) => "hmac+ed25519",
                (true, false) => "hmac",
                (false, true) => "ed25519",
                (false, false) => "none",
            },
            ed25519_public_key: self.ed25519_public_key.map(|k| B64.encode(k)),
            ip_allowlist: self.ip_allowlist.iter().map(ToString::to_string).collect(),
            status: self.status.name(),
            expires_at: self.expires_at.map(format_rfc3339_ms),
            created_at: format_rfc3339_ms(self.created_at),
            last_used_at: self.last_used_at.map(format_rfc3339_ms),
            revoked_at: self.revoked_at.map(format_rfc3339_ms),
        }
    }
}

/// `ip` with an IPv4-mapped IPv6 address turned into its IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// The public view of a key for `keys list` (text or `--json`): never the secret; times as
/// RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// Public identifier.
    pub key_id: String,
    /// The key's account.
    pub account: String,
    /// Its scopes.
    pub scopes: Scopes,
    /// `hmac`, `ed25519` or `hmac+ed25519`.
    pub credential: &'static str,
    /// The Ed25519 public key, base64 of the raw 32 bytes.
    pub ed25519_public_key: Option<String>,
    /// Allowed source CIDRs (empty = any).
    pub ip_allowlist: Vec<String>,
    /// `active` or `revoked`.
    pub status: &'static str,
    /// Expiry.
    pub expires_at: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last successful use.
    pub last_used_at: Option<String>,
    /// Revocation time.
    pub revoked_at: Option<String>,
}

/// What to create: the input of [`crate::Vault::create_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The account the key acts for.
    pub account: String,
    /// Its scopes (at least one).
    pub scopes: Scopes,
    /// Allowed source CIDRs (empty = any); see [`parse_ip_allowlist`].
    pub ip_allowlist: Vec<IpNet>,
    /// Expiry, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// An Ed25519 public key instead of an HMAC secret (see [`parse_ed25519_public_key`]). With
    /// it, no secret is generated.
    pub ed25519_public_key: Option<[u8; 32]>,
}

impl KeySpec {
    /// A spec for an HMAC key of `account` with `scopes`, no IP restriction and no expiry.
    pub fn new(account: &str, scopes: Scopes) -> Self {
        Self {
            account: account.to_owned(),
            scopes,
            ip_allowlist: Vec::new(),
            expires_at: None,
            ed25519_public_key: None,
        }
    }
}

/// A newly created key: its id and, for an HMAC key, the secret, returned this once.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The key id.
    pub key_id: KeyId,
    /// The secret (none for an Ed25519 key). Print it once; it is not shown again.
    pub secret: Option<Secret>,
}

/// Checks an account name: 1 to 64 characters, no control characters, no leading or trailing
/// space.
pub fn validate_account(account: &str) -> Result<(), KeyError> {
    let ok = (1..=64).contains(&account.chars().count())
        && !account.chars().any(char::is_control)
        && account.trim() == account;
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadAccount(account.chars().take(80).collect()))
    }
}

/// Parses one allowlist entry: a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a bare address
/// (a /32 or /128). Host bits are cleared (`10.1.2.3/8` → `10.0.0.0/8`).
pub fn parse_cidr(s: &str) -> Result<IpNet, KeyError> {
    let t = s.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    t.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| KeyError::BadCidr(t.chars().take(80).collect()))
}

/// Parses each entry with [`parse_cidr`].
pub fn parse_ip_allowlist<S: AsRef<str>>(entries: &[S]) -> Result<Vec<IpNet>, KeyError> {
    entries.iter().map(|e| parse_cidr(e.as_ref())).collect()
}

/// Fills `buf` from the OS CSPRNG. Aborts the process if the OS has no randomness to give:
/// continuing without it would issue guessable secrets and nonces.
pub(crate) fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::getrandom(buf) {
        // No recoverable course exists: every caller needs unpredictable bytes.
        eprintln!("portcullis-auth: the OS random number generator failed: {e}");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn key() -> ApiKey {
        ApiKey {
            key_id: KeyId::generate(),
            secret: Some(Secret::generate()),
            ed25519_public_key: None,
            account: "ACC1".into(),
            scopes: Scopes::parse("trade,read").unwrap(),
            ip_allowlist: vec![],
            expires_at: None,
            status: KeyStatus::Active,
            created_at: 1,
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn generated_ids_and_secrets_have_the_documented_shape() {
        let id = KeyId::generate();
        assert_eq!(id.as_str().len(), 35);
        assert!(id.as_str().starts_with("pk_"));
        let s = Secret::generate();
        assert_eq!(s.expose().len(), 64);
        assert!(s.expose().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(Secret::generate().expose(), s.expose());
        assert_eq!(s.as_bytes(), s.expose().as_bytes());
    }

    #[test]
    fn secret_debug_is_redacted_everywhere() {
        let k = key();
        let text = k.secret.as_ref().unwrap().expose().to_owned();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&text), "{dbg}");
        assert!(dbg.contains("[redacted]"));
        let info = serde_json::to_string(&k.info()).unwrap();
        assert!(!info.contains(&text));
    }

    #[test]
    fn scopes_parse_display_and_serde() {
        let s = Scopes::parse(" trade , READ ").unwrap();
        assert!(s.contains(Scope::Trade) && s.contains(Scope::Read) && !s.contains(Scope::Admin));
        assert_eq!(s.to_string(), "read,trade");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"["read","trade"]"#);
        let back: Scopes = serde_json::from_str(r#"["trade","read"]"#).unwrap();
        assert_eq!(back, s);
        assert_eq!(Scopes::parse(""), Err(KeyError::NoScopes));
        assert!(matches!(
            Scopes::parse("trade,withdraw"),
            Err(KeyError::UnknownScope(_))
        ));
    }

    #[test]
    fn key_ids_are_validated() {
        assert!(KeyId::parse("pk_abc-DEF_0").is_ok());
        for bad in ["", "a b", "pk_\u{1}", "ключ", &"x".repeat(65)] {
            assert!(KeyId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<KeyId>(r#""no spaces allowed""#).is_err());
    }

    #[test]
    fn ip_allowlist_matches_v4_and_v6_cidrs() {
        let mut k = key();
        assert!(
            k.ip_allowed(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))),
            "empty = any"
        );
        k.ip_allowlist =
            parse_ip_allowlist(&["10.1.0.0/16", "2001:db8::/32", "192.0.2.7"]).unwrap();
        assert!(k.ip_allowed("10.1.200.3".parse().unwrap()));
        assert!(!k.ip_allowed("10.2.0.1".parse().unwrap()));
        assert!(k.ip_allowed("192.0.2.7".parse().unwrap()));
        assert!(!k.ip_allowed("192.0.2.8".parse().unwrap()));
        assert!(k.ip_allowed("2001:db8:ffff::1".parse().unwrap()));
        assert!(!k.ip_allowed("2001:db9::1".parse().unwrap()));
        assert!(k.ip_allowed(IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped())));
        assert!(!k.ip_allowed(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("example.com").is_err());
        assert_eq!(parse_cidr("10.9.8.7/8").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn expiry_is_inclusive_of_its_instant() {
        let mut k = key();
        assert!(!k.is_expired(i64::MAX));
        k.expires_at = Some(1000);
        assert!(!k.is_expired(999));
        assert!(k.is_expired(1000));
    }

    #[test]
    fn api_key_serde_round_trips_with_secret_and_ed25519() {
        let mut k = key();
        k.ed25519_public_key = Some(test_ed25519().1);
        k.ip_allowlist = parse_ip_allowlist(&["10.0.0.0/8", "::1"]).unwrap();
        k.expires_at = Some(5);
        let json = serde_json::to_string(&k).unwrap();
        let back: ApiKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back, k);
    }

    fn test_ed25519() -> (ed25519_dalek::SigningKey, [u8; 32]) {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let pk = sk.verifying_key().to_bytes();
        (sk, pk)
    }

    #[test]
    fn ed25519_keys_parse_raw_der_and_pem_and_verify() {
        use ed25519_dalek::Signer;
        let (sk, pk) = test_ed25519();
        let raw_b64 = B64.encode(pk);
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&pk);
        let der_b64 = B64.encode(&der);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{der_b64}\n-----END PUBLIC KEY-----\n");
        for text in [&raw_b64, &der_b64, &pem] {
            assert_eq!(parse_ed25519_public_key(text).unwrap(), pk);
        }
        assert!(parse_ed25519_public_key("AAAA").is_err());
        assert!(parse_ed25519_public_key("not base64!").is_err());
        let mut k = key();
        k.ed25519_public_key = Some(pk);
        let sig = sk.sign(b"apiKey=x&timestamp=1").to_bytes();
        assert!(k.verify_ed25519(b"apiKey=x&timestamp=1", &sig));
        assert!(!k.verify_ed25519(b"apiKey=x&timestamp=2", &sig));
        assert!(!k.verify_ed25519(b"apiKey=x&timestamp=1", &sig[..63]));
        k.ed25519_public_key = None;
        assert!(!k.verify_ed25519(b"apiKey=x&timestamp=1", &sig));
    }

    #[test]
    fn accounts_are_validated() {
        assert!(validate_account("ACC-1").is_ok());
        for bad in ["", " ACC", "A\nB", &"x".repeat(65)] {
            assert!(validate_account(bad).is_err(), "{bad:?}");
        }
    }
}
