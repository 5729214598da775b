//! The OAuth 2.0 authorization server core (sans-IO: no HTTP, time passed in), for the
//! operator plane and for clients that authenticate WebSocket connections with bearer tokens
//! (DESIGN.md §4).
//!
//! # The model
//!
//! - Clients are API keys: `client_id` = key id. A client authenticates with its secret over
//!   HTTP Basic (`client_secret_basic`), or with a JWT assertion (RFC 7523) signed HS256 with
//!   the secret's text (`client_secret_jwt`, the same HMAC key as every other protocol) or
//!   EdDSA with its Ed25519 key (`private_key_jwt`). The key must be active, unexpired and
//!   allowed from the peer address.
//! - Grants: `client_credentials` (a token for the key's account, with the key's scopes or a
//!   subset, optionally restricted to `instruments` and a `max_qty`), and `refresh_token` with
//!   rotation and reuse detection (a spent refresh token presented again revokes its family).
//! - Access tokens are JWTs in the RFC 9068 profile (`typ: at+jwt`), signed EdDSA with the
//!   server's [`TokenSigningKey`]; resource servers call
//!   [`OAuthServer::validate_access_token`]. Refresh tokens are opaque; only their SHA-256 is
//!   kept.
//! - Revocation (RFC 7009), introspection (RFC 7662), metadata (RFC 8414) and the JWKS.
//!
//! # Wiring it to HTTP
//!
//! | request | call | answer |
//! |---|---|---|
//! | `POST /oauth/token` | [`Form::parse`], [`OAuthServer::token`] | 200 [`TokenResponse`] as JSON, `Cache-Control: no-store`; or [`OAuthError::http_status`] with [`OAuthError::to_json`] (and [`OAuthError::www_authenticate`] on 401) |
//! | `POST /oauth/revoke` | [`OAuthServer::revoke`] | 200, empty body; or the error |
//! | `POST /oauth/introspect` | [`OAuthServer::introspect`] | 200 [`Introspection`] as JSON; or the error |
//! | `GET /oauth/jwks.json` | [`OAuthServer::jwks`] | 200 JSON |
//! | `GET /.well-known/oauth-authorization-server` | [`OAuthServer::metadata`] | 200 JSON |
//! | `Authorization: Bearer ...` on a resource | [`OAuthServer::validate_access_token`] | on error 401 with [`TokenError::www_authenticate`] |

mod error;
mod jws;
mod keys;
mod request;
mod server;

#[cfg(test)]
mod tests;

pub use error::{OAuthError, TokenError};
pub use keys::{jwks, SigningKeyError, TokenSigningKey, TokenVerifyingKey};
pub use request::{
    parse_instruments, parse_max_qty, parse_scope, scope_string, ClientCredentials, Form,
    GrantOptions, JWT_BEARER_ASSERTION_TYPE, MAX_FORM_LEN, MAX_INSTRUMENTS,
};
pub use server::{
    AccessClaims, AuthenticatedClient, ClientAuthMethod, ClientStore, Introspection, OAuthConfig,
    OAuthConfigError, OAuthServer, TokenResponse, INTROSPECTION_PATH, JWKS_PATH, METADATA_PATH,
    REVOCATION_PATH, TOKEN_PATH,
};
