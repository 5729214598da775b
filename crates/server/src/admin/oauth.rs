//! The OAuth 2.0 endpoints over HTTP, on the sans-IO [`OAuthServer`](portcullis_auth::OAuthServer) (whose module doc maps
//! each endpoint to its call). Errors are RFC 6749 §5.2 JSON (`error`, `error_description`),
//! the format OAuth client libraries read, not problem documents.
//!
//! | endpoint | |
//! |---|---|
//! | `POST /oauth/token` | client credentials (HTTP Basic or an RFC 7523 assertion) and refresh-token grants |
//! | `POST /oauth/revoke` | RFC 7009 |
//! | `POST /oauth/introspect` | RFC 7662 (a key with the `admin` scope sees every client's tokens) |
//! | `GET /oauth/jwks.json` | the public signing keys |
//! | `GET /.well-known/oauth-authorization-server` | RFC 8414 metadata |

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use hyper::{Method, Response, StatusCode};
use portcullis_auth::oauth::{ClientCredentials, Form};
use portcullis_auth::OAuthError;
use serde_json::Value;

use super::handlers::audit_call;
use super::problem::Problem;
use super::{json_response, AdminState, Call};

/// Answers a call under `/oauth/` or `/.well-known/` and audits it.
pub fn handle(
    state: &AdminState,
    call: &Call,
    segs: &[&str],
    now_ms: i64,
) -> Response<Full<Bytes>> {
    let oauth = &state.oauth;
    let expect = |m: Method| {
        if call.method == m {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                format!("this endpoint answers {m}"),
            )
            .header(hyper::header::ALLOW, m.as_str()))
        }
    };
    let endpoint = match segs {
        [".well-known", "oauth-authorization-server"] => Endpoint::Metadata,
        ["oauth", "jwks.json"] => Endpoint::Jwks,
        ["oauth", "token"] => Endpoint::Token,
        ["oauth", "revoke"] => Endpoint::Revoke,
        ["oauth", "introspect"] => Endpoint::Introspect,
        _ => {
            let p = Problem::not_found(format!("no such endpoint: {}", call.path));
            audit_call(state, call, None, None, p.status, &p.detail);
            return p.into_response();
        }
    };
    let method = match endpoint {
        Endpoint::Metadata | Endpoint::Jwks => Method::GET,
        _ => Method::POST,
    };
    if let Err(p) = expect(method) {
        audit_call(state, call, None, None, p.status, &p.detail);
        return p.into_response();
    }
    match endpoint {
        Endpoint::Metadata => {
            audit_call(state, call, None, None, StatusCode::OK, "metadata");
            json_response(StatusCode::OK, &oauth.metadata())
        }
        Endpoint::Jwks => {
            audit_call(state, call, None, None, StatusCode::OK, "jwks");
            json_response(StatusCode::OK, &oauth.jwks())
        }
        Endpoint::Token | Endpoint::Revoke | Endpoint::Introspect => {
            let authorization = call.header(&hyper::header::AUTHORIZATION);
            let form = match form(call) {
                Ok(f) => f,
                Err(e) => return oauth_error(state, call, None, &e),
            };
            // Who the caller says it is, for the audit event (proven or not).
            let client = ClientCredentials::from_request(authorization, &form)
                .ok()
                .and_then(|c| c.claimed_client_id().map(str::to_owned));
            let peer = Some(call.peer_ip);
            let result: Result<(Value, &str), OAuthError> = match endpoint {
                Endpoint::Token => oauth
                    .token(authorization, &form, peer, now_ms)
                    .and_then(|t| {
                        serde_json::to_value(&t)
                            .map(|v| (v, "token issued"))
                            .map_err(|e| OAuthError::InvalidRequest(e.to_string()))
                    }),
                Endpoint::Revoke => oauth
                    .revoke(authorization, &form, peer, now_ms)
                    .map(|()| (Value::Null, "token revoked")),
                _ => oauth
                    .introspect(authorization, &form, peer, now_ms)
                    .and_then(|i| {
                        serde_json::to_value(&i)
                            .map(|v| (v, "token introspected"))
                            .map_err(|e| OAuthError::InvalidRequest(e.to_string()))
                    }),
            };
            match result {
                Ok((body, note)) => {
                    let op = client.as_deref().map(|c| super::auth::Operator {
                        key_id: c.to_owned(),
                        account: String::new(),
                    });
                    audit_call(state, call, op.as_ref(), None, StatusCode::OK, note);
                    let mut r = if body.is_null() {
                        // RFC 7009 §2.2: 200 and no content to speak of.
                        json_response(StatusCode::OK, &serde_json::json!({}))
                    } else {
                        json_response(StatusCode::OK, &body)
                    };
                    r.headers_mut()
                        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
                    r
                }
                Err(e) => oauth_error(state, call, client.as_deref(), &e),
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Metadata,
    Jwks,
    Token,
    Revoke,
    Introspect,
}

/// The form body: `application/x-www-form-urlencoded` only (RFC 6749 §3.2).
fn form(call: &Call) -> Result<Form, OAuthError> {
    let ct = call.header(&CONTENT_TYPE).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded".into(),
        ));
    }
    Form::parse(&call.body)
}

fn oauth_error(
    state: &AdminState,
    call: &Call,
    client: Option<&str>,
    e: &OAuthError,
) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let op = client.map(|c| super::auth::Operator {
        key_id: c.to_owned(),
        account: String::new(),
    });
    audit_call(state, call, op.as_ref(), None, status, &e.to_string());
    let mut r = json_response(status, &e.to_json());
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    if let Some(w) = e.www_authenticate() {
        h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(w));
    }
    r
}
