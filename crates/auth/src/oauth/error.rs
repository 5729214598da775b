//! The errors of the authorization server (RFC 6749 §5.2) and of access-token validation
//! (RFC 6750 §3.1), each with the HTTP status and headers the HTTP layer answers with.

/// An error of the token, revocation or introspection endpoint, with the RFC 6749 §5.2 code it
/// maps to and a human-readable description (sent as `error_description`).
///
/// Descriptions never say whether a key exists or which part of a credential was wrong before
/// the client has proven it holds the key: every failed client authentication reads "client
/// authentication failed".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// `invalid_request`: a parameter is missing, repeated, malformed or not allowed here.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// `invalid_client`: client authentication failed (unknown key, wrong secret, bad
    /// assertion, revoked or expired key, address not allowed).
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// `invalid_grant`: the refresh token is unknown, expired, revoked, reused or belongs to
    /// another client.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// `unauthorized_client`: the authenticated client may not use this grant.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// `unsupported_grant_type`: the grant type is not one this server issues tokens for.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// `invalid_scope`: the scope is unknown or exceeds what the key holds.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
}

impl OAuthError {
    /// The RFC 6749 §5.2 `error` code.
    pub const fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> &str {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::InvalidClient(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::UnsupportedGrantType(d)
            | OAuthError::InvalidScope(d) => d,
        }
    }

    /// The HTTP status to answer with: 401 for `invalid_client`, 400 for the others
    /// (RFC 6749 §5.2).
    pub const fn http_status(&self) -> u16 {
        match self {
            OAuthError::InvalidClient(_) => 401,
            _ => 400,
        }
    }

    /// The `WWW-Authenticate` header to send with a 401 (RFC 6749 §5.2 requires one when the
    /// client authenticated, or tried to, with HTTP Basic); `None` for the 400s.
    pub const fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            OAuthError::InvalidClient(_) => Some("Basic realm=\"portcullis\", charset=\"UTF-8\""),
            _ => None,
        }
    }

    /// The JSON body of the error response: `{"error": ..., "error_description": ...}`. The
    /// description is reduced to the characters RFC 6749 allows there (printable ASCII without
    /// `"` and `\`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.code(),
            "error_description": sanitize_description(self.description()),
        })
    }

    pub(crate) fn request(d: impl Into<String>) -> Self {
        OAuthError::InvalidRequest(d.into())
    }

    pub(crate) fn client(d: impl Into<String>) -> Self {
        OAuthError::InvalidClient(d.into())
    }

    /// The one answer to every failed proof of possession, so it never tells an unknown key
    /// from a wrong secret or signature.
    pub(crate) fn client_auth_failed() -> Self {
        OAuthError::InvalidClient("client authentication failed".into())
    }

    pub(crate) fn grant(d: impl Into<String>) -> Self {
        OAuthError::InvalidGrant(d.into())
    }

    pub(crate) fn scope(d: impl Into<String>) -> Self {
        OAuthError::InvalidScope(d.into())
    }
}

/// RFC 6749 §5.2: `error_description` is limited to %x20-21 / %x23-5B / %x5D-7E.
fn sanitize_description(d: &str) -> String {
    d.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// Why an access token was refused by [`super::OAuthServer::validate_access_token`]. Every
/// variant is an RFC 6750 `invalid_token` (HTTP 401); the variants exist for the audit log and
/// the description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS of three base64url parts with JSON header and claims, too long, or a
    /// header with a `crit` member.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not `EdDSA` (`none`, `HS256` and every other algorithm are
    /// refused, whatever the token says).
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    /// The header's `typ` is not `at+jwt` (RFC 9068 §2.1), so it is not an access token.
    #[error("not an access token (typ must be at+jwt)")]
    WrongType,
    /// The header's `kid` names no key of this server.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad token signature")]
    BadSignature,
    /// The `iss` claim is not this server.
    #[error("token issued by another issuer")]
    WrongIssuer,
    /// The `aud` claim is not this resource server.
    #[error("token intended for another audience")]
    WrongAudience,
    /// Past `exp` (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// Before `nbf`, or `iat` in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// Revoked (directly, or with its refresh-token family).
    #[error("token revoked")]
    Revoked,
    /// The API key it was issued to is revoked, expired or gone.
    #[error("the client's key is no longer active")]
    ClientInactive,
}

impl TokenError {
    /// The HTTP status: always 401 (RFC 6750 §3.1 `invalid_token`).
    pub const fn http_status(&self) -> u16 {
        401
    }

    /// The `WWW-Authenticate` challenge for the 401:
    /// `Bearer error="invalid_token", error_description="..."`.
    pub fn www_authenticate(&self) -> String {
        format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            sanitize_description(&self.to_string())
        )
    }
}
