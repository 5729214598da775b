//! The authorization server: configuration, client authentication, the grants, revocation,
//! introspection, metadata and access-token validation.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::jws;
use super::keys::{jwks, TokenSigningKey, TokenVerifyingKey};
use super::request::{
    clip, is_subset, parse_scope, scope_string, ClientCredentials, Form, GrantOptions,
};
use super::{OAuthError, TokenError};
use crate::key::{fill_random, ApiKey, Scope, Scopes};
use crate::vault::Vault;

/// Path of the token endpoint under the issuer.
pub const TOKEN_PATH: &str = "/oauth/token";
/// Path of the revocation endpoint (RFC 7009) under the issuer.
pub const REVOCATION_PATH: &str = "/oauth/revoke";
/// Path of the introspection endpoint (RFC 7662) under the issuer.
pub const INTROSPECTION_PATH: &str = "/oauth/introspect";
/// Path of the JWK Set under the issuer.
pub const JWKS_PATH: &str = "/oauth/jwks.json";
/// Path of the authorization server metadata (RFC 8414 §3) under the issuer.
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// `typ` of access tokens (RFC 9068 §2.1).
const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Prefix of refresh tokens: opaque to clients, but recognisable by secret scanners and in
/// support requests.
const REFRESH_TOKEN_PREFIX: &str = "pcrt_";
/// Longest `jti` accepted in a client assertion.
const MAX_JTI_LEN: usize = 256;
/// How often (in `now` time) expired state is swept.
const PURGE_INTERVAL_MS: i64 = 60_000;

// ---------------------------------------------------------------------------------------------
// Configuration

/// Why an [`OAuthConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid OAuth configuration: {field}: {problem}")]
pub struct OAuthConfigError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// The authorization server's settings. Durations are milliseconds, like every time in this
/// crate; JWT claims carry seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The issuer identifier (`iss` of access tokens, RFC 8414 `issuer`): the base URL, e.g.
    /// `https://portcullis.example.com`, without a trailing slash, query or fragment.
    pub issuer: String,
    /// The token endpoint URL; also the audience client assertions must name (RFC 7523 §3).
    pub token_endpoint: String,
    /// The revocation endpoint URL.
    pub revocation_endpoint: String,
    /// The introspection endpoint URL.
    pub introspection_endpoint: String,
    /// The JWK Set URL.
    pub jwks_uri: String,
    /// The `aud` of access tokens: the resource servers (WebSocket API, admin API) check it.
    pub audience: String,
    /// Access-token lifetime (default 10 min). A token never outlives its key's expiry.
    pub access_token_ttl_ms: i64,
    /// Issue refresh tokens with `client_credentials` tokens (default true). RFC 6749 §4.4.3
    /// discourages them for this grant; they are offered because renewing with one is cheaper
    /// than signing a new assertion, the client still authenticates on every refresh, and
    /// rotation with reuse detection makes a stolen one short-lived.
    pub refresh_tokens: bool,
    /// Lifetime of one refresh token from its issue (default 1 h); using it rotates it.
    pub refresh_token_ttl_ms: i64,
    /// Longest life of a refresh-token family, however often it rotates (default 24 h).
    pub refresh_family_max_ms: i64,
    /// Most live refresh-token families per client (default 64); a new one past it drops the
    /// client's oldest, bounding the memory one client can use.
    pub max_families_per_client: usize,
    /// Longest remaining lifetime (`exp` − now) accepted in a client assertion (default 5 min):
    /// it bounds how long each `jti` is remembered.
    pub assertion_max_lifetime_ms: i64,
    /// Clock leeway for `exp`, `nbf` and `iat` (default 10 s).
    pub leeway_ms: i64,
    /// Scopes that may be granted through OAuth at all (default all); a key's scopes outside
    /// it are never put in a token.
    pub grantable_scopes: Scopes,
}

impl OAuthConfig {
    /// The defaults for the issuer `issuer_base_url` (a trailing `/` is dropped), with the
    /// endpoints at their standard paths below it and access tokens for `audience`.
    pub fn new(issuer_base_url: &str, audience: &str) -> Self {
        let issuer = issuer_base_url.trim().trim_end_matches('/').to_owned();
        Self {
            token_endpoint: format!("{issuer}{TOKEN_PATH}"),
            revocation_endpoint: format!("{issuer}{REVOCATION_PATH}"),
            introspection_endpoint: format!("{issuer}{INTROSPECTION_PATH}"),
            jwks_uri: format!("{issuer}{JWKS_PATH}"),
            issuer,
            audience: audience.to_owned(),
            access_token_ttl_ms: 10 * 60_000,
            refresh_tokens: true,
            refresh_token_ttl_ms: 60 * 60_000,
            refresh_family_max_ms: 24 * 60 * 60_000,
            max_families_per_client: 64,
            assertion_max_lifetime_ms: 5 * 60_000,
            leeway_ms: 10_000,
            grantable_scopes: Scopes::of(&Scope::ALL),
        }
    }

    /// Checks the settings: URLs absolute `https://` (or `http://` for a loopback test setup)
    /// without query or fragment, lifetimes positive and in range.
    pub fn validate(&self) -> Result<(), OAuthConfigError> {
        for (field, url) in [
            ("issuer", &self.issuer),
            ("token_endpoint", &self.token_endpoint),
            ("revocation_endpoint", &self.revocation_endpoint),
            ("introspection_endpoint", &self.introspection_endpoint),
            ("jwks_uri", &self.jwks_uri),
        ] {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let ok = rest.is_some_and(|r| {
                !r.is_empty() && !r.starts_with('/') && !r.contains(['?', '#', ' '])
            });
            if !ok {
                return Err(OAuthConfigError {
                    field,
                    problem: format!(
                        "{:?} is not an absolute http(s) URL without query or fragment",
                        clip(url)
                    ),
                });
            }
        }
        if self.issuer.ends_with('/') {
            return Err(OAuthConfigError {
                field: "issuer",
                problem: "must not end with '/'".into(),
            });
        }
        if self.audience.is_empty() {
            return Err(OAuthConfigError {
                field: "audience",
                problem: "empty".into(),
            });
        }
        const DAY_MS: i64 = 86_400_000;
        for (field, v, max) in [
            ("access_token_ttl_ms", self.access_token_ttl_ms, DAY_MS),
            (
                "refresh_token_ttl_ms",
                self.refresh_token_ttl_ms,
                30 * DAY_MS,
            ),
            (
                "refresh_family_max_ms",
                self.refresh_family_max_ms,
                365 * DAY_MS,
            ),
            (
                "assertion_max_lifetime_ms",
                self.assertion_max_lifetime_ms,
                DAY_MS,
            ),
        ] {
            if v < 1000 || v > max {
                return Err(OAuthConfigError {
                    field,
                    problem: format!("{v} is outside 1000..={max}"),
                });
            }
        }
        if !(0..=300_000).contains(&self.leeway_ms) {
            return Err(OAuthConfigError {
                field: "leeway_ms",
                problem: format!("{} is outside 0..=300000", self.leeway_ms),
            });
        }
        if self.max_families_per_client == 0 {
            return Err(OAuthConfigError {
                field: "max_families_per_client",
                problem: "must be at least 1".into(),
            });
        }
        if self.grantable_scopes.is_empty() {
            return Err(OAuthConfigError {
                field: "grantable_scopes",
                problem: "empty".into(),
            });
        }
        Ok(())
    }

    /// The audiences a client assertion may name: the token endpoint URL (RFC 7523 §3) or the
    /// issuer identifier (what the RFC 7523 update recommends clients use).
    fn assertion_audiences(&self) -> [&str; 2] {
        [&self.token_endpoint, &self.issuer]
    }
}

// ---------------------------------------------------------------------------------------------
// Key lookup

/// Where the server finds API keys (the OAuth clients: client id = key id). Called on every
/// client authentication and token validation, so a revoked or expired key stops working at
/// once, tokens included.
pub trait ClientStore: Send + Sync {
    /// The key `client_id` as it is now (revoked and expired keys included: the server checks
    /// their state), or `None` if there is no such key.
    fn client(&self, client_id: &str) -> Option<ApiKey>;
}

impl<F> ClientStore for F
where
    F: Fn(&str) -> Option<ApiKey> + Send + Sync,
{
    fn client(&self, client_id: &str) -> Option<ApiKey> {
        self(client_id)
    }
}

impl ClientStore for Vault {
    fn client(&self, client_id: &str) -> Option<ApiKey> {
        self.get(client_id).cloned()
    }
}

impl ClientStore for RwLock<Vault> {
    fn client(&self, client_id: &str) -> Option<ApiKey> {
        self.read()
            .unwrap_or_else(|p| p.into_inner())
            .get(client_id)
            .cloned()
    }
}

impl<T: ClientStore + ?Sized> ClientStore for Arc<T> {
    fn client(&self, client_id: &str) -> Option<ApiKey> {
        (**self).client(client_id)
    }
}

// ---------------------------------------------------------------------------------------------
// Public types

/// How a client authenticated, by its RFC 8414 / OpenID name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// HTTP Basic with the key's secret.
    ClientSecretBasic,
    /// An HS256 JWT assertion keyed with the secret text.
    ClientSecretJwt,
    /// An EdDSA JWT assertion signed with the key's Ed25519 private key.
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    /// `client_secret_basic`, `client_secret_jwt` or `private_key_jwt`.
    pub const fn name(self) -> &'static str {
        match self {
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthMethod::ClientSecretJwt => "client_secret_jwt",
            ClientAuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// A client that has proven it holds its key, and whose key is active, unexpired and allowed
/// from the peer address. Only [`OAuthServer::authenticate_client`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedClient {
    client_id: String,
    account: String,
    scopes: Scopes,
    key_expires_at: Option<i64>,
    method: ClientAuthMethod,
}

impl AuthenticatedClient {
    /// The key id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The key's account (the `sub` of its tokens).
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The key's scopes.
    pub fn scopes(&self) -> Scopes {
        self.scopes
    }

    /// How it authenticated.
    pub fn method(&self) -> ClientAuthMethod {
        self.method
    }
}

/// The claims of an access token (RFC 9068 §2.2 plus the restrictions), as issued and as
/// returned by [`OAuthServer::validate_access_token`]. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: [`OAuthConfig::issuer`].
    pub iss: String,
    /// Subject: the key's account.
    pub sub: String,
    /// Audience: [`OAuthConfig::audience`].
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issue time.
    pub iat: i64,
    /// Not valid before (not set by this server; checked if present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Unique token id: the handle for revocation.
    pub jti: String,
    /// The key id of the client the token was issued to.
    pub client_id: String,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// Only these instruments may be traded, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruments: Option<Vec<String>>,
    /// Largest quantity per order, a decimal string, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_qty: Option<String>,
}

impl AccessClaims {
    /// The granted scopes (names this build does not know are ignored).
    pub fn scopes(&self) -> Scopes {
        let mut set = Scopes::NONE;
        for name in self.scope.split(' ') {
            if let Some(s) = Scope::ALL.into_iter().find(|s| s.name() == name) {
                set.insert(s);
            }
        }
        set
    }

    /// True if the token grants `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes().contains(scope)
    }

    /// True if the token allows trading `symbol` (no `instruments` claim allows every one).
    pub fn allows_instrument(&self, symbol: &str) -> bool {
        self.instruments
            .as_ref()
            .map_or(true, |list| list.iter().any(|s| s == symbol))
    }
}

/// A successful token response (RFC 6749 §5.1), to serialize as the JSON body (send it with
/// `Cache-Control: no-store`). The tokens are zeroized on drop and hidden from `Debug`.
#[derive(Serialize)]
pub struct TokenResponse {
    /// The JWT access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The new refresh token, if refresh tokens are enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The granted scopes, space-separated.
    pub scope: String,
}

impl Drop for TokenResponse {
    fn drop(&mut self) {
        self.access_token.zeroize();
        if let Some(r) = &mut self.refresh_token {
            r.zeroize();
        }
    }
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("scope", &self.scope)
            .finish()
    }
}

/// An introspection response (RFC 7662 §2.2). Anything unknown, invalid, expired, revoked or
/// not visible to the caller is just `{"active": false}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Introspection {
    /// Whether the token is usable now.
    pub active: bool,
    /// Granted scopes, space-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client (key id) it was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// `Bearer` for an access token, `refresh_token` for a refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// Expiry, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issue time, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Audience (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Token id (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Instrument restriction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instruments: Option<Vec<String>>,
    /// Quantity restriction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_qty: Option<String>,
}

impl Introspection {
    /// `{"active": false}`.
    pub fn inactive() -> Self {
        Self::default()
    }
}

// ---------------------------------------------------------------------------------------------
// State

/// Signing keys: the current one signs, earlier ones still verify the tokens they signed.
struct KeySet {
    current: TokenSigningKey,
    previous: Vec<TokenVerifyingKey>,
}

impl KeySet {
    fn find(&self, kid: &str) -> Option<&TokenVerifyingKey> {
        std::iter::once(self.current.verifying_key())
            .chain(self.previous.iter())
            .find(|k| k.kid() == kid)
    }
}

/// What one `client_credentials` grant carries through its refresh tokens.
struct Family {
    client_id: String,
    account: String,
    scope: Scopes,
    instruments: Option<Vec<String>>,
    max_qty: Option<String>,
    created_ms: i64,
    expires_ms: i64,
    /// The hash of the one refresh token of this family that may be used.
    current: [u8; 32],
    /// Every refresh-token hash issued in the family (used ones kept to detect reuse).
    hashes: Vec<[u8; 32]>,
    /// Access tokens issued from the family: (jti, exp in seconds), revoked with it.
    access: Vec<(String, i64)>,
}

struct RefreshEntry {
    family: u64,
    issued_ms: i64,
    expires_ms: i64,
    used: bool,
}

#[derive(Default)]
struct State {
    families: HashMap<u64, Family>,
    /// SHA-256 of each refresh token → its entry. The tokens themselves are never stored.
    refresh: HashMap<[u8; 32], RefreshEntry>,
    /// Revoked access-token ids → their `exp` (seconds), kept until then.
    revoked_jtis: HashMap<String, i64>,
    /// Client-assertion ids seen, per client → the assertion's `exp` (seconds).
    assertion_jtis: HashMap<(String, String), i64>,
    next_family: u64,
    last_purge_ms: Option<i64>,
}

impl State {
    fn remove_family(&mut self, id: u64) -> Option<Family> {
        let fam = self.families.remove(&id)?;
        for h in &fam.hashes {
            self.refresh.remove(h);
        }
        Some(fam)
    }

    /// Removes the family and revokes the access tokens issued from it.
    fn revoke_family(&mut self, id: u64) {
        if let Some(fam) = self.remove_family(id) {
            for (jti, exp) in fam.access {
                self.revoked_jtis.insert(jti, exp);
            }
        }
    }

    /// Drops what can no longer matter: dead families (expired, or whose current refresh
    /// token expired), access-token records past their expiry, revoked ids and assertion ids
    /// past theirs.
    fn purge(&mut self, now_ms: i64, leeway_ms: i64) {
        if self
            .last_purge_ms
            .is_some_and(|t| now_ms >= t && now_ms - t < PURGE_INTERVAL_MS)
        {
            return;
        }
        self.last_purge_ms = Some(now_ms);
        let horizon_s = (now_ms - leeway_ms).div_euclid(1000);
        let dead: Vec<u64> = self
            .families
            .iter()
            .filter(|(_, f)| {
                f.expires_ms <= now_ms
                    || self
                        .refresh
                        .get(&f.current)
                        .map_or(true, |e| e.expires_ms <= now_ms)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.remove_family(id);
        }
        for f in self.families.values_mut() {
            f.access.retain(|(_, exp)| *exp >= horizon_s);
        }
        self.revoked_jtis.retain(|_, exp| *exp >= horizon_s);
        self.assertion_jtis.retain(|_, exp| *exp >= horizon_s);
    }
}

// ---------------------------------------------------------------------------------------------
// The server

/// The OAuth 2.0 authorization server core (sans-IO): the HTTP layer parses the request into a
/// [`Form`] and the `Authorization` header, passes the time, and sends back what it returns.
/// Shared by all handlers (`Send + Sync`); state changes take one short lock.
///
/// State (refresh-token families, revoked token ids, assertion ids) lives in memory: a restart
/// invalidates every refresh token and forgets revocations of access tokens, which then live
/// at most [`OAuthConfig::access_token_ttl_ms`] more — unless their key was revoked, which
/// every validation checks.
pub struct OAuthServer {
    config: OAuthConfig,
    keys: RwLock<KeySet>,
    store: Box<dyn ClientStore>,
    state: Mutex<State>,
    /// Compared against when the client id is unknown, so that case costs what a wrong secret
    /// costs.
    dummy_secret: Zeroizing<String>,
}

impl fmt::Debug for OAuthServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthServer")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl OAuthServer {
    /// A server with `config`, signing tokens with `signing_key`, finding clients in `store`.
    pub fn new(
        config: OAuthConfig,
        signing_key: TokenSigningKey,
        store: impl ClientStore + 'static,
    ) -> Result<Self, OAuthConfigError> {
        config.validate()?;
        let mut raw = Zeroizing::new([0u8; 32]);
        fill_random(&mut raw[..]);
        Ok(Self {
            config,
            keys: RwLock::new(KeySet {
                current: signing_key,
                previous: Vec::new(),
            }),
            store: Box::new(store),
            state: Mutex::new(State::default()),
            dummy_secret: Zeroizing::new(hex::encode(&raw[..])),
        })
    }

    /// The settings.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `key` the signing key. The previous one keeps verifying the tokens it signed (and
    /// stays in the JWKS) until [`OAuthServer::retire_key`].
    pub fn rotate_signing_key(&self, key: TokenSigningKey) {
        let mut ks = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut ks.current, key);
        let old_pub = old.verifying_key().clone();
        if old_pub.kid() != ks.current.kid() && ks.find(old_pub.kid()).is_none() {
            ks.previous.push(old_pub);
        }
    }

    /// Stops accepting tokens signed by the earlier key `kid` (at the earliest one access-token
    /// lifetime after the rotation). Returns false if no such earlier key is kept.
    pub fn retire_key(&self, kid: &str) -> bool {
        let mut ks = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let before = ks.previous.len();
        ks.previous.retain(|k| k.kid() != kid);
        ks.previous.len() != before
    }

    /// The JWK Set (`{"keys":[...]}`) of every key whose tokens are accepted, for the
    /// `jwks_uri`.
    pub fn jwks(&self) -> serde_json::Value {
        let ks = self.keys();
        jwks(std::iter::once(ks.current.verifying_key()).chain(ks.previous.iter()))
    }

    /// The authorization server metadata (RFC 8414), served at [`METADATA_PATH`].
    pub fn metadata(&self) -> serde_json::Value {
        let c = &self.config;
        let mut grants = vec!["client_credentials"];
        if c.refresh_tokens {
            grants.push("refresh_token");
        }
        let methods = [
            ClientAuthMethod::ClientSecretBasic.name(),
            ClientAuthMethod::PrivateKeyJwt.name(),
            ClientAuthMethod::ClientSecretJwt.name(),
        ];
        let algs = ["HS256", "EdDSA"];
        let scopes: Vec<&str> = c.grantable_scopes.iter().map(Scope::name).collect();
        serde_json::json!({
            "issuer": c.issuer,
            "token_endpoint": c.token_endpoint,
            "revocation_endpoint": c.revocation_endpoint,
            "introspection_endpoint": c.introspection_endpoint,
            "jwks_uri": c.jwks_uri,
            "grant_types_supported": grants,
            // No authorization endpoint: no response type is supported.
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": methods,
            "token_endpoint_auth_signing_alg_values_supported": algs,
            "revocation_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_signing_alg_values_supported": algs,
            "introspection_endpoint_auth_methods_supported": methods,
            "introspection_endpoint_auth_signing_alg_values_supported": algs,
            "scopes_supported": scopes,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Endpoints, from the raw request

    /// The token endpoint: authenticates the client from `authorization` (the `Authorization`
    /// header value, if any) or the form's assertion, then runs the `grant_type` of `form`.
    /// `peer_ip` is the connection's address, checked against the key's allowlist (a key with
    /// an allowlist is refused when it is `None`).
    pub fn token(
        &self,
        authorization: Option<&str>,
        form: &Form,
        peer_ip: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let grant_type = form.require("grant_type")?;
        match grant_type {
            "client_credentials" => {}
            "refresh_token" if self.config.refresh_tokens => {}
            other => {
                return Err(OAuthError::UnsupportedGrantType(format!(
                    "grant_type {} is not supported",
                    clip(other)
                )))
            }
        }
        let creds = ClientCredentials::from_request(authorization, form)?;
        let client = self.authenticate_client(&creds, peer_ip, now_ms)?;
        if grant_type == "client_credentials" {
            let options = GrantOptions::from_form(form)?;
            self.client_credentials_grant(&client, &options, now_ms)
        } else {
            if form.get("instruments").is_some() || form.get("max_qty").is_some() {
                return Err(OAuthError::request(
                    "instruments and max_qty are fixed when the grant is made",
                ));
            }
            let scope = form.get("scope").map(parse_scope).transpose()?;
            self.refresh_grant(&client, form.require("refresh_token")?, scope, now_ms)
        }
    }

    /// The revocation endpoint (RFC 7009): authenticates the client, then revokes the form's
    /// `token` (hint `token_type_hint`). Unknown, expired and other clients' tokens are not an
    /// error (the HTTP layer answers 200 with an empty body).
    pub fn revoke(
        &self,
        authorization: Option<&str>,
        form: &Form,
        peer_ip: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<(), OAuthError> {
        let creds = ClientCredentials::from_request(authorization, form)?;
        let client = self.authenticate_client(&creds, peer_ip, now_ms)?;
        let token = form.require("token")?;
        self.revoke_token(&client, token, form.get("token_type_hint"), now_ms);
        Ok(())
    }

    /// The introspection endpoint (RFC 7662): authenticates the caller, then describes the
    /// form's `token` (see [`OAuthServer::introspect_token`] for what a caller may see).
    pub fn introspect(
        &self,
        authorization: Option<&str>,
        form: &Form,
        peer_ip: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<Introspection, OAuthError> {
        let creds = ClientCredentials::from_request(authorization, form)?;
        let caller = self.authenticate_client(&creds, peer_ip, now_ms)?;
        let token = form.require("token")?;
        Ok(self.introspect_token(&caller, token, form.get("token_type_hint"), now_ms))
    }

    // -----------------------------------------------------------------------------------------
    // Client authentication

    /// Authenticates a client: the secret (constant-time) or the assertion, then the key's
    /// state: active, not expired, `peer_ip` in its allowlist.
    pub fn authenticate_client(
        &self,
        creds: &ClientCredentials,
        peer_ip: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let (key, method, assertion_jti) = match creds {
            ClientCredentials::Basic {
                client_id,
                secret,
                raw_secret,
            } => {
                let raw = raw_secret.as_ref().map(|r| r.as_str());
                let key = self.verify_basic(client_id, secret, raw)?;
                (key, ClientAuthMethod::ClientSecretBasic, None)
            }
            ClientCredentials::Assertion {
                client_id,
                assertion,
            } => {
                let (key, method, jti) =
                    self.verify_assertion(client_id.as_deref(), assertion, now_ms)?;
                (key, method, Some(jti))
            }
        };
        check_key_usable(&key, peer_ip, now_ms)?;
        if let Some((jti, exp)) = assertion_jti {
            // Recorded only once everything else passed, and checked under the same lock,
            // so two concurrent requests with one assertion cannot both pass.
            let mut st = self.state();
            st.purge(now_ms, self.config.leeway_ms);
            let slot = (key.key_id.as_str().to_owned(), jti);
            if st.assertion_jtis.contains_key(&slot) {
                return Err(OAuthError::client("client assertion already used (jti)"));
            }
            st.assertion_jtis.insert(slot, exp);
        }
        Ok(AuthenticatedClient {
            client_id: key.key_id.as_str().to_owned(),
            account: key.account.clone(),
            scopes: key.scopes,
            key_expires_at: key.expires_at,
            method,
        })
    }

    fn verify_basic(
        &self,
        client_id: &str,
        secret: &str,
        raw_secret: Option<&str>,
    ) -> Result<ApiKey, OAuthError> {
        let key = self.store.client(client_id);
        let expected: &[u8] = match key.as_ref().and_then(|k| k.secret.as_ref()) {
            Some(s) => s.as_bytes(),
            None => self.dummy_secret.as_bytes(),
        };
        let a = expected.ct_eq(secret.as_bytes());
        let b = raw_secret.map_or(subtle::Choice::from(0), |r| expected.ct_eq(r.as_bytes()));
        match key {
            Some(k) if k.secret.is_some() && bool::from(a | b) => Ok(k),
            _ => Err(OAuthError::client_auth_failed()),
        }
    }

    /// Verifies an RFC 7523 client assertion; returns the key, the method, and the `jti` with
    /// its `exp` (seconds) for the replay check.
    fn verify_assertion(
        &self,
        client_id_param: Option<&str>,
        assertion: &str,
        now_ms: i64,
    ) -> Result<(ApiKey, ClientAuthMethod, (String, i64)), OAuthError> {
        let malformed =
            |why: &str| OAuthError::client(format!("malformed client assertion: {why}"));
        let parsed = jws::parse(assertion).map_err(malformed)?;
        let method = match parsed.header.alg.as_str() {
            "HS256" => ClientAuthMethod::ClientSecretJwt,
            "EdDSA" => ClientAuthMethod::PrivateKeyJwt,
            _ => {
                return Err(OAuthError::client(
                    "unsupported client assertion algorithm (use HS256 or EdDSA)",
                ))
            }
        };
        if parsed
            .header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP))
        {
            return Err(malformed("an access token is not a client assertion"));
        }
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&parsed.payload)
                .map_err(|_| malformed("claims are not JSON"))?;
        let iss = claim_str(&claims, "iss").ok_or_else(|| malformed("missing iss"))?;
        if client_id_param.is_some_and(|c| c != iss) {
            return Err(OAuthError::client(
                "client_id does not match the assertion's iss",
            ));
        }

        // Proof of possession first: nothing about the key is told before it.
        let key = self.store.client(iss);
        let verified = match (method, key.as_ref()) {
            (ClientAuthMethod::ClientSecretJwt, Some(k)) => k.secret.as_ref().is_some_and(|s| {
                hs256_verify(s.as_bytes(), parsed.signing_input, &parsed.signature)
            }),
            (ClientAuthMethod::PrivateKeyJwt, Some(k)) => {
                k.verify_ed25519(parsed.signing_input, &parsed.signature)
            }
            (_, None) => {
                // Same work as a wrong HMAC for an unknown client id.
                hs256_verify(
                    self.dummy_secret.as_bytes(),
                    parsed.signing_input,
                    &parsed.signature,
                );
                false
            }
            (ClientAuthMethod::ClientSecretBasic, Some(_)) => false,
        };
        let Some(key) = key.filter(|_| verified) else {
            return Err(OAuthError::client_auth_failed());
        };

        // Signed by the client: now the claims (RFC 7523 §3).
        if claim_str(&claims, "sub") != Some(iss) {
            return Err(OAuthError::client(
                "client assertion sub must equal iss (the key id)",
            ));
        }
        let aud_ok = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => {
                self.config.assertion_audiences().contains(&a.as_str())
            }
            Some(serde_json::Value::Array(list)) => list.iter().any(|a| {
                a.as_str()
                    .is_some_and(|a| self.config.assertion_audiences().contains(&a))
            }),
            _ => false,
        };
        if !aud_ok {
            return Err(OAuthError::client(format!(
                "client assertion aud must be the token endpoint {}",
                self.config.token_endpoint
            )));
        }
        let leeway = self.config.leeway_ms;
        let exp = numeric_date(&claims, "exp")
            .map_err(malformed)?
            .ok_or_else(|| malformed("missing exp"))?;
        let exp_ms = exp.saturating_mul(1000);
        if now_ms >= exp_ms.saturating_add(leeway) {
            return Err(OAuthError::client("client assertion expired"));
        }
        if exp_ms.saturating_sub(now_ms) > self.config.assertion_max_lifetime_ms + leeway {
            return Err(OAuthError::client(format!(
                "client assertion exp is more than {} s ahead",
                self.config.assertion_max_lifetime_ms / 1000
            )));
        }
        for name in ["nbf", "iat"] {
            if let Some(t) = numeric_date(&claims, name).map_err(malformed)? {
                if t.saturating_mul(1000) > now_ms.saturating_add(leeway) {
                    return Err(OAuthError::client(format!(
                        "client assertion {name} is in the future"
                    )));
                }
            }
        }
        let jti = claim_str(&claims, "jti")
            .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
            .ok_or_else(|| malformed("missing or overlong jti"))?;
        Ok((key, method, (jti.to_owned(), exp)))
    }

    // -----------------------------------------------------------------------------------------
    // Grants

    /// The `client_credentials` grant (RFC 6749 §4.4): a token for the client's account with
    /// the scope asked for (default: all the key may grant), which must be within the key's
    /// scopes and [`OAuthConfig::grantable_scopes`], plus the restrictions asked for; and a
    /// fresh refresh-token family if enabled.
    pub fn client_credentials_grant(
        &self,
        client: &AuthenticatedClient,
        options: &GrantOptions,
        now_ms: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let grantable = Scopes::of(
            &client
                .scopes
                .iter()
                .filter(|s| self.config.grantable_scopes.contains(*s))
                .collect::<Vec<_>>(),
        );
        let scope = match options.scope {
            None if grantable.is_empty() => {
                return Err(OAuthError::UnauthorizedClient(
                    "none of the key's scopes may be granted through OAuth".into(),
                ))
            }
            None => grantable,
            Some(asked) => {
                if !is_subset(asked, client.scopes) {
                    return Err(OAuthError::scope(format!(
                        "requested scope exceeds the key's scopes ({})",
                        scope_string(client.scopes)
                    )));
                }
                if !is_subset(asked, self.config.grantable_scopes) {
                    return Err(OAuthError::scope(format!(
                        "only {} may be granted through OAuth",
                        scope_string(self.config.grantable_scopes)
                    )));
                }
                asked
            }
        };
        let grant = Grant {
            client_id: &client.client_id,
            account: &client.account,
            scope,
            instruments: options.instruments.as_deref(),
            max_qty: options.max_qty.as_deref(),
            key_expires_at: client.key_expires_at,
        };
        let (access_token, jti, exp, expires_in) = self.issue_access_token(&grant, now_ms)?;
        let refresh_token = if self.config.refresh_tokens {
            let mut st = self.state();
            st.purge(now_ms, self.config.leeway_ms);
            Some(self.new_family(&mut st, &grant, (jti, exp), now_ms))
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token,
            scope: scope_string(scope),
        })
    }

    /// The `refresh_token` grant (RFC 6749 §6) with rotation: the token is spent and a new one
    /// issued in the same family. Presenting a spent token again revokes the whole family —
    /// its live refresh token and every access token issued from it — since either the client
    /// or a thief holds a copy (OAuth 2.0 Security BCP §4.14.2). `scope` may narrow the new
    /// access token's scope; the family keeps its own.
    pub fn refresh_grant(
        &self,
        client: &AuthenticatedClient,
        refresh_token: &str,
        scope: Option<Scopes>,
        now_ms: i64,
    ) -> Result<TokenResponse, OAuthError> {
        if !self.config.refresh_tokens {
            return Err(OAuthError::UnsupportedGrantType(
                "refresh tokens are disabled".into(),
            ));
        }
        let hash = token_hash(refresh_token);
        let mut st = self.state();
        st.purge(now_ms, self.config.leeway_ms);
        let invalid = || OAuthError::grant("refresh token is invalid, expired or revoked");
        let (family_id, used, expired) = match st.refresh.get(&hash) {
            Some(e) => (e.family, e.used, e.expires_ms <= now_ms),
            None => return Err(invalid()),
        };
        let Some(fam) = st.families.get(&family_id) else {
            return Err(invalid());
        };
        if fam.client_id != client.client_id {
            // Not this client's token: refused, and its family left alone — revoking it
            // would let any client end another's grant with a leaked token.
            return Err(invalid());
        }
        if used {
            st.revoke_family(family_id);
            return Err(OAuthError::grant(
                "refresh token reused: the grant and its tokens have been revoked",
            ));
        }
        if expired || fam.expires_ms <= now_ms {
            st.remove_family(family_id);
            return Err(invalid());
        }
        let fam_scope = fam.scope;
        if !is_subset(fam_scope, client.scopes) {
            // The key lost a scope since the grant: the grant no longer stands.
            st.remove_family(family_id);
            return Err(OAuthError::grant(
                "the key no longer holds the scope of this grant",
            ));
        }
        let scope = match scope {
            None => fam_scope,
            Some(asked) if is_subset(asked, fam_scope) => asked,
            Some(_) => {
                return Err(OAuthError::scope(format!(
                    "requested scope exceeds the grant's ({})",
                    scope_string(fam_scope)
                )))
            }
        };
        let instruments = fam.instruments.clone();
        let max_qty = fam.max_qty.clone();
        let account = fam.account.clone();
        let fam_expires = fam.expires_ms;
        let grant = Grant {
            client_id: &client.client_id,
            account: &account,
            scope,
            instruments: instruments.as_deref(),
            max_qty: max_qty.as_deref(),
            key_expires_at: client.key_expires_at,
        };
        let (access_token, jti, exp, expires_in) = self.issue_access_token(&grant, now_ms)?;

        // Rotate: spend the presented token, issue its successor.
        if let Some(e) = st.refresh.get_mut(&hash) {
            e.used = true;
        }
        let (new_token, new_hash) = new_refresh_token();
        let expires_ms = (now_ms.saturating_add(self.config.refresh_token_ttl_ms)).min(fam_expires);
        st.refresh.insert(
            new_hash,
            RefreshEntry {
                family: family_id,
                issued_ms: now_ms,
                expires_ms,
                used: false,
            },
        );
        if let Some(fam) = st.families.get_mut(&family_id) {
            fam.current = new_hash;
            fam.hashes.push(new_hash);
            fam.access.push((jti, exp));
        }
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token: Some(new_token),
            scope: scope_string(scope),
        })
    }

    /// Starts a refresh-token family for `grant`, whose first access token is `access`;
    /// returns its first refresh token.
    fn new_family(
        &self,
        st: &mut State,
        grant: &Grant<'_>,
        access: (String, i64),
        now_ms: i64,
    ) -> String {
        // Bound one client's families: drop its oldest beyond the limit.
        let mut own: Vec<(i64, u64)> = st
            .families
            .iter()
            .filter(|(_, f)| f.client_id == grant.client_id)
            .map(|(id, f)| (f.created_ms, *id))
            .collect();
        if own.len() >= self.config.max_families_per_client {
            own.sort_unstable();
            let excess = own.len() + 1 - self.config.max_families_per_client;
            for (_, id) in own.into_iter().take(excess) {
                st.remove_family(id);
            }
        }
        let mut expires_ms = now_ms.saturating_add(self.config.refresh_family_max_ms);
        if let Some(k) = grant.key_expires_at {
            expires_ms = expires_ms.min(k);
        }
        let (token, hash) = new_refresh_token();
        let id = st.next_family;
        st.next_family += 1;
        st.refresh.insert(
            hash,
            RefreshEntry {
                family: id,
                issued_ms: now_ms,
                expires_ms: now_ms
                    .saturating_add(self.config.refresh_token_ttl_ms)
                    .min(expires_ms),
                used: false,
            },
        );
        st.families.insert(
            id,
            Family {
                client_id: grant.client_id.to_owned(),
                account: grant.account.to_owned(),
                scope: grant.scope,
                instruments: grant.instruments.map(<[String]>::to_vec),
                max_qty: grant.max_qty.map(str::to_owned),
                created_ms: now_ms,
                expires_ms,
                current: hash,
                hashes: vec![hash],
                access: vec![access],
            },
        );
        token
    }

    /// Signs an access token for `grant`; returns it with its `jti`, `exp` and `expires_in`.
    fn issue_access_token(
        &self,
        grant: &Grant<'_>,
        now_ms: i64,
    ) -> Result<(String, String, i64, i64), OAuthError> {
        let iat = now_ms.div_euclid(1000);
        let mut exp = iat.saturating_add(self.config.access_token_ttl_ms / 1000);
        if let Some(k) = grant.key_expires_at {
            // Never outlive the key (rounded up to the second: validation also checks the key).
            exp = exp.min(k.saturating_add(999).div_euclid(1000));
        }
        let mut jti_raw = [0u8; 16];
        fill_random(&mut jti_raw);
        let jti = jws::b64url(&jti_raw);
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: grant.account.to_owned(),
            aud: self.config.audience.clone(),
            exp,
            iat,
            nbf: None,
            jti: jti.clone(),
            client_id: grant.client_id.to_owned(),
            scope: scope_string(grant.scope),
            instruments: grant.instruments.map(<[String]>::to_vec),
            max_qty: grant.max_qty.map(str::to_owned),
        };
        let payload = serde_json::to_vec(&claims)
            .map_err(|e| OAuthError::request(format!("cannot encode the token: {e}")))?;
        let ks = self.keys();
        let header = serde_json::to_vec(&serde_json::json!({
            "alg": "EdDSA",
            "typ": ACCESS_TOKEN_TYP,
            "kid": ks.current.kid(),
        }))
        .map_err(|e| OAuthError::request(format!("cannot encode the token: {e}")))?;
        let token = jws::encode(&header, &payload, |input| ks.current.sign(input).to_vec());
        Ok((token, jti, exp, exp - iat))
    }

    // -----------------------------------------------------------------------------------------
    // Revocation and introspection

    /// Revokes `token` for `client` (RFC 7009 §2.1). A refresh token revokes its whole family,
    /// the access tokens issued from it included; an access token is revoked alone, until its
    /// expiry. Tokens that are unknown, invalid, expired, or another client's are left as they
    /// are without an error, so the answer tells nothing about them. `hint` is accepted and
    /// not needed: both kinds are looked for.
    pub fn revoke_token(
        &self,
        client: &AuthenticatedClient,
        token: &str,
        hint: Option<&str>,
        now_ms: i64,
    ) {
        let _ = hint; // Both lookups are cheap; RFC 7009 §2.1 lets the server search beyond it.
        if !token.contains('.') {
            let hash = token_hash(token);
            let mut st = self.state();
            let family = st.refresh.get(&hash).map(|e| e.family);
            if let Some(id) = family {
                if st
                    .families
                    .get(&id)
                    .is_some_and(|f| f.client_id == client.client_id)
                {
                    st.revoke_family(id);
                }
            }
            return;
        }
        let Ok(claims) = self.verify_access_signature(token) else {
            return;
        };
        let exp_ms = claims.exp.saturating_mul(1000);
        if claims.client_id == client.client_id
            && now_ms < exp_ms.saturating_add(self.config.leeway_ms)
        {
            let mut st = self.state();
            st.purge(now_ms, self.config.leeway_ms);
            st.revoked_jtis.insert(claims.jti, claims.exp);
        }
    }

    /// Describes `token` to `caller` (RFC 7662 §2.2). A caller sees its own tokens; a key with
    /// the `admin` scope sees every client's (resource servers, operators). Anything else, and
    /// anything invalid, expired, revoked or from an inactive key, is `active: false`.
    pub fn introspect_token(
        &self,
        caller: &AuthenticatedClient,
        token: &str,
        hint: Option<&str>,
        now_ms: i64,
    ) -> Introspection {
        let _ = hint; // The token's shape says which kind it is.
        let visible =
            |client_id: &str| caller.client_id == client_id || caller.scopes.contains(Scope::Admin);
        if !token.contains('.') {
            let hash = token_hash(token);
            let found = {
                let st = self.state();
                st.refresh.get(&hash).and_then(|e| {
                    let f = st.families.get(&e.family)?;
                    let live = !e.used && e.expires_ms > now_ms && f.expires_ms > now_ms;
                    live.then(|| {
                        (
                            f.client_id.clone(),
                            f.account.clone(),
                            f.scope,
                            e.issued_ms,
                            e.expires_ms,
                            f.instruments.clone(),
                            f.max_qty.clone(),
                        )
                    })
                })
            };
            let Some((client_id, sub, scope, issued, expires, instruments, max_qty)) = found else {
                return Introspection::inactive();
            };
            if !visible(&client_id) || !self.key_active(&client_id, now_ms) {
                return Introspection::inactive();
            }
            return Introspection {
                active: true,
                scope: Some(scope_string(scope)),
                client_id: Some(client_id),
                sub: Some(sub),
                token_type: Some("refresh_token"),
                exp: Some(expires.div_euclid(1000)),
                iat: Some(issued.div_euclid(1000)),
                iss: Some(self.config.issuer.clone()),
                instruments,
                max_qty,
                ..Introspection::default()
            };
        }
        match self.validate_access_token(token, now_ms) {
            Ok(c) if visible(&c.client_id) => Introspection {
                active: true,
                scope: Some(c.scope),
                client_id: Some(c.client_id),
                sub: Some(c.sub),
                token_type: Some("Bearer"),
                exp: Some(c.exp),
                iat: Some(c.iat),
                nbf: c.nbf,
                aud: Some(c.aud),
                iss: Some(c.iss),
                jti: Some(c.jti),
                instruments: c.instruments,
                max_qty: c.max_qty,
            },
            _ => Introspection::inactive(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Validation

    /// Validates an access token for a resource server (the WebSocket upgrade, the admin API):
    /// the JWS with `alg` `EdDSA` only, `typ` `at+jwt`, a known `kid` and a valid signature;
    /// then `iss`, `aud`, `exp`, `nbf` and `iat` (with [`OAuthConfig::leeway_ms`]), revocation,
    /// and that the key it was issued to is still active. Returns the claims: the caller
    /// enforces `scope`, `instruments` and `max_qty`.
    pub fn validate_access_token(
        &self,
        token: &str,
        now_ms: i64,
    ) -> Result<AccessClaims, TokenError> {
        let claims = self.verify_access_signature(token)?;
        if claims.iss != self.config.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.aud != self.config.audience {
            return Err(TokenError::WrongAudience);
        }
        let leeway = self.config.leeway_ms;
        if now_ms >= claims.exp.saturating_mul(1000).saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        let future = |t: i64| t.saturating_mul(1000) > now_ms.saturating_add(leeway);
        if claims.nbf.is_some_and(future) || future(claims.iat) {
            return Err(TokenError::NotYetValid);
        }
        if self.state().revoked_jtis.contains_key(&claims.jti) {
            return Err(TokenError::Revoked);
        }
        if !self.key_active(&claims.client_id, now_ms) {
            return Err(TokenError::ClientInactive);
        }
        Ok(claims)
    }

    /// Re-checks claims that [`OAuthServer::validate_access_token`] accepted earlier (a
    /// WebSocket connection keeps them for its life): not expired, not revoked, and the key
    /// still active. No signature work: cheap enough to run before every request, so a revoked
    /// or expired token stops at once.
    pub fn recheck_access_claims(
        &self,
        claims: &AccessClaims,
        now_ms: i64,
    ) -> Result<(), TokenError> {
        if now_ms
            >= claims
                .exp
                .saturating_mul(1000)
                .saturating_add(self.config.leeway_ms)
        {
            return Err(TokenError::Expired);
        }
        if self.state().revoked_jtis.contains_key(&claims.jti) {
            return Err(TokenError::Revoked);
        }
        if !self.key_active(&claims.client_id, now_ms) {
            return Err(TokenError::ClientInactive);
        }
        Ok(())
    }

    /// The header and signature checks of an access token, and its claims.
    fn verify_access_signature(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let parsed = jws::parse(token).map_err(TokenError::Malformed)?;
        // The verifier picks the algorithm: anything but EdDSA — `none`, HS256 keyed with the
        // public key, ... — is refused before any key is looked at.
        if parsed.header.alg != "EdDSA" {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let typ_ok = parsed.header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(TokenError::WrongType);
        }
        let kid = parsed.header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        {
            let ks = self.keys();
            let key = ks.find(kid).ok_or(TokenError::UnknownKey)?;
            if !key.verify(parsed.signing_input, &parsed.signature) {
                return Err(TokenError::BadSignature);
            }
        }
        serde_json::from_slice(&parsed.payload)
            .map_err(|_| TokenError::Malformed("claims are not an access token's"))
    }

    /// (families, refresh-token entries, revoked ids, assertion ids), for tests of the purge.
    #[cfg(test)]
    pub(super) fn state_sizes(&self) -> (usize, usize, usize, usize) {
        let st = self.state();
        (
            st.families.len(),
            st.refresh.len(),
            st.revoked_jtis.len(),
            st.assertion_jtis.len(),
        )
    }

    fn key_active(&self, client_id: &str, now_ms: i64) -> bool {
        self.store
            .client(client_id)
            .is_some_and(|k| !k.is_revoked() && !k.is_expired(now_ms))
    }
}

/// What one issued token is for.
struct Grant<'a> {
    client_id: &'a str,
    account: &'a str,
    scope: Scopes,
    instruments: Option<&'a [String]>,
    max_qty: Option<&'a str>,
    key_expires_at: Option<i64>,
}

/// The key's state after its holder proved possession: active, unexpired, allowed from here.
/// These descriptions are specific: only the key's holder can get this far.
fn check_key_usable(key: &ApiKey, peer_ip: Option<IpAddr>, now_ms: i64) -> Result<(), OAuthError> {
    if key.is_revoked() {
        return Err(OAuthError::client("the key is revoked"));
    }
    if key.is_expired(now_ms) {
        return Err(OAuthError::client("the key has expired"));
    }
    if !key.ip_allowlist.is_empty() {
        match peer_ip {
            Some(ip) if key.ip_allowed(ip) => {}
            Some(_) => {
                return Err(OAuthError::client(
                    "the key is not allowed from this address",
                ))
            }
            // Fail closed: an allowlist that cannot be checked refuses.
            None => {
                return Err(OAuthError::client(
                    "the key has an IP allowlist and the peer address is unknown",
                ))
            }
        }
    }
    Ok(())
}

/// A fresh refresh token (32 random bytes, base64url, prefixed) and its SHA-256.
fn new_refresh_token() -> (String, [u8; 32]) {
    let mut raw = Zeroizing::new([0u8; 32]);
    fill_random(&mut raw[..]);
    let token = format!("{REFRESH_TOKEN_PREFIX}{}", jws::b64url(&raw[..]));
    let hash = token_hash(&token);
    (token, hash)
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// HMAC-SHA256 verification in constant time.
fn hs256_verify(key: &[u8], input: &[u8], signature: &[u8]) -> bool {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(input);
    mac.verify_slice(signature).is_ok()
}

fn claim_str<'a>(
    claims: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<&'a str> {
    claims.get(name).and_then(serde_json::Value::as_str)
}

/// A JWT NumericDate claim (RFC 7519 §2: seconds, possibly fractional), floored to seconds.
fn numeric_date(
    claims: &serde_json::Map<String, serde_json::Value>,
    name: &'static str,
) -> Result<Option<i64>, &'static str> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => {
            if let Some(i) = v.as_i64() {
                return Ok(Some(i));
            }
            match v.as_f64() {
                Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                _ => Err("a time claim is not a number of seconds"),
            }
        }
    }
}
