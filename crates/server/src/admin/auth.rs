//! Who may call the admin API: a key with the `admin` scope, proven by an OAuth bearer token
//! or an HMAC-signed request, and for every change a TOTP code of that key's operator.
//!
//! - Bearer: `Authorization: Bearer <access token>` issued by this server's `/oauth/token`,
//!   validated with [`portcullis_auth::OAuthServer::validate_access_token`]; its scope must
//!   include `admin`.
//! - HMAC: `X-PC-APIKEY` (key id), `X-PC-TIMESTAMP` (Unix ms, within [`HMAC_WINDOW_MS`] of the
//!   server clock) and `X-PC-SIGNATURE` = hex(HMAC-SHA256(secret text, timestamp ‖ METHOD ‖
//!   path with query ‖ body)). Checked by the [`Authenticator`](portcullis_auth::Authenticator) the FIX and WebSocket logons
//!   go through (lockout, key status, IP allowlist, scope, audit). A signature is accepted
//!   once: a replay within the window is refused.
//! - TOTP (mutating calls): `X-PC-TOTP`, the RFC 6238 code of the operator (the key id),
//!   verified against the vault, which records the step so the code is spent across restarts
//!   ([`portcullis_auth::Vault::verify_totp`]).
//!
//! Every failure is audited by the authenticator, and counts towards the lockouts of the key
//! and of the address as a failed logon does; a locked key or address gets 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use hyper::header::{HeaderName, RETRY_AFTER};
use hyper::StatusCode;
use portcullis_auth::{Denied, RequestAttempt, RequestKind, Scope, TotpError, Vault, VaultError};
use tracing::error;

use super::problem::Problem;
use super::{AdminState, Call};

/// How far `X-PC-TIMESTAMP` may be from the server clock, either way.
pub const HMAC_WINDOW_MS: i64 = 5_000;

/// The session name of admin calls in the audit log.
pub const AUDIT_SESSION: &str = "admin api";

/// The key id header of a signed request.
pub const H_APIKEY: HeaderName = HeaderName::from_static("x-pc-apikey");
/// The timestamp header of a signed request (Unix ms).
pub const H_TIMESTAMP: HeaderName = HeaderName::from_static("x-pc-timestamp");
/// The signature header of a signed request (hex).
pub const H_SIGNATURE: HeaderName = HeaderName::from_static("x-pc-signature");
/// The TOTP code header.
pub const H_TOTP: HeaderName = HeaderName::from_static("x-pc-totp");

/// An authenticated caller with the `admin` scope.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The key id: also the operator's name for TOTP.
    pub key_id: String,
    /// The key's account.
    pub account: String,
}

/// Signatures of signed requests accepted within the last window, to refuse replays.
#[derive(Debug, Default)]
pub struct SeenSignatures(Mutex<HashMap<String, i64>>);

impl SeenSignatures {
    /// Records `sig` at `now_ms`; false if it was seen within the window (a replay).
    fn first_use(&self, sig: &str, now_ms: i64) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Entries older than twice the window can no longer be replayed: forget them.
        m.retain(|_, at| now_ms - *at <= 2 * HMAC_WINDOW_MS);
        m.insert(sig.to_ascii_lowercase(), now_ms).is_none()
    }
}

fn locked(until: i64, now_ms: i64) -> Problem {
    let secs = (until.saturating_sub(now_ms) + 999) / 1000;
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "locked-out",
        "Locked out",
        "too many failed attempts from this key or address; retry later",
    )
    .header(RETRY_AFTER, secs.max(1).to_string())
}

/// Authenticates the caller of an admin call (see the module doc).
pub fn authenticate(state: &AdminState, call: &Call, now_ms: i64) -> Result<Operator, Problem> {
    if let Some(auth) = call.header(&hyper::header::AUTHORIZATION) {
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Problem::unauthorized(
                    "invalid-token",
                    "Invalid token",
                    "the Authorization header must be \"Bearer <access token>\"",
                )
            })?;
        return bearer(state, token, call.peer_ip, now_ms);
    }
    if call.header(&H_APIKEY).is_some() {
        return hmac(state, call, now_ms);
    }
    Err(Problem::unauthorized(
        "authentication-required",
        "Authentication required",
        "send an OAuth access token (Authorization: Bearer) or a signed request (X-PC-APIKEY, X-PC-TIMESTAMP, X-PC-SIGNATURE) of a key with the admin scope",
    ))
}

fn bearer(state: &AdminState, token: &str, ip: IpAddr, now_ms: i64) -> Result<Operator, Problem> {
    let claims = state
        .oauth
        .validate_access_token(token, now_ms)
        .map_err(|e| Problem::unauthorized("invalid-token", "Invalid token", e.to_string()))?;
    let auth = &state.authenticator;
    if let Some(until) = auth.locked_until(&claims.client_id, ip, now_ms) {
        return Err(locked(until, now_ms));
    }
    if !auth.key_usable(&claims.client_id, ip, now_ms) {
        return Err(Problem::unauthorized(
            "invalid-token",
            "Invalid token",
            "the token's key may not be used from this address",
        ));
    }
    if !claims.has_scope(Scope::Admin) {
        return Err(Problem::insufficient_scope(format!(
            "the token's scope is {:?}; the admin API needs \"admin\"",
            claims.scope
        )));
    }
    Ok(Operator {
        key_id: claims.client_id,
        account: claims.sub,
    })
}

fn hmac(state: &AdminState, call: &Call, now_ms: i64) -> Result<Operator, Problem> {
    let missing = |h: &HeaderName| {
        Problem::unauthorized(
            "authentication-required",
            "Authentication required",
            format!("a signed request needs the {h} header"),
        )
    };
    let key_id = call.header(&H_APIKEY).unwrap_or_default();
    let ts_text = call
        .header(&H_TIMESTAMP)
        .ok_or_else(|| missing(&H_TIMESTAMP))?;
    let sig = call
        .header(&H_SIGNATURE)
        .ok_or_else(|| missing(&H_SIGNATURE))?;
    let ts: i64 = ts_text.parse().map_err(|_| {
        Problem::unauthorized(
            "invalid-signature",
            "Invalid signature",
            "X-PC-TIMESTAMP must be Unix milliseconds",
        )
    })?;
    if (now_ms - ts).abs() > HMAC_WINDOW_MS {
        return Err(Problem::unauthorized(
            "stale-request",
            "Request outside the time window",
            format!(
                "X-PC-TIMESTAMP is {} ms from the server clock; at most {HMAC_WINDOW_MS} ms allowed",
                now_ms - ts
            ),
        ));
    }
    let mut payload = Vec::with_capacity(
        ts_text.len() + call.method.as_str().len() + call.target.len() + call.body.len(),
    );
    payload.extend_from_slice(ts_text.as_bytes());
    payload.extend_from_slice(call.method.as_str().as_bytes());
    payload.extend_from_slice(call.target.as_bytes());
    payload.extend_from_slice(&call.body);
    let attempt = RequestAttempt {
        key_id,
        peer_ip: call.peer_ip,
        session: AUDIT_SESSION,
        required_scope: Some(Scope::Admin),
        kind: RequestKind::Request,
        now_ms,
    };
    let auth = &state.authenticator;
    match auth.authenticate_request(&attempt, |c| c.verify_hex(&payload, sig.as_bytes())) {
        Ok(grant) => {
            if !state.seen_signatures.first_use(sig, now_ms) {
                return Err(Problem::unauthorized(
                    "replayed-request",
                    "Replayed request",
                    "this signature was already used; sign each request anew",
                ));
            }
            Ok(Operator {
                key_id: grant.key_id.as_str().to_owned(),
                account: grant.account,
            })
        }
        Err(Denied::Locked) => Err(locked(
            auth.locked_until(key_id, call.peer_ip, now_ms)
                .unwrap_or(now_ms),
            now_ms,
        )),
        Err(Denied::MissingScope) => Err(Problem::insufficient_scope(
            "the key does not hold the admin scope",
        )),
        // The precise reason is in the audit log; the caller learns nothing more.
        Err(_) => Err(Problem::unauthorized(
            "invalid-signature",
            "Authentication failed",
            "the key, signature or address was not accepted",
        )),
    }
}

/// Checks the TOTP code of a mutating call (`X-PC-TOTP`) for `op`; the vault records the step
/// so the code cannot be used again. Failures are audited and count towards the lockouts.
pub async fn check_totp(
    state: &Arc<AdminState>,
    op: &Operator,
    call: &Call,
    now_ms: i64,
) -> Result<(), Problem> {
    let fail = |reason: &str, problem: Problem| {
        state.authenticator.record_second_factor_failure(
            &op.key_id,
            call.peer_ip,
            AUDIT_SESSION,
            Some(&op.account),
            reason,
            now_ms,
        );
        problem
    };
    let Some(code) = call.header(&H_TOTP).map(str::to_owned) else {
        return Err(fail(
            "totp_missing",
            Problem::unauthorized(
                "totp-required",
                "TOTP code required",
                "every change needs the operator's current TOTP code in X-PC-TOTP",
            ),
        ));
    };
    let path = state.vault_path.clone();
    let keyring = state.keyring()?;
    let operator = op.key_id.clone();
    let result = tokio::task::spawn_blocking(move || {
        // A refused code returns an error, so the vault is written only when a step is spent.
        Vault::update(&path, &keyring, false, |v| {
            v.verify_totp(&operator, &code, now_ms)
                .map_err(VaultError::from)
        })
    })
    .await;
    match result {
        Ok(Ok(_step)) => Ok(()),
        Ok(Err(VaultError::Totp(e))) => {
            let (reason, slug, title) = match e {
                TotpError::Replayed => ("totp_reused", "totp-reused", "TOTP code already used"),
                TotpError::NotEnrolled(_) => (
                    "totp_not_enrolled",
                    "totp-not-enrolled",
                    "No TOTP secret enrolled",
                ),
                _ => ("totp_wrong", "invalid-totp", "Invalid TOTP code"),
            };
            Err(fail(
                reason,
                Problem::unauthorized(slug, title, e.to_string()),
            ))
        }
        Ok(Err(e)) => {
            error!(error = %e, "cannot check a TOTP code against the vault");
            Err(Problem::internal("the key vault cannot be read"))
        }
        Err(e) => {
            error!(error = %e, "the TOTP check failed");
            Err(Problem::internal("the TOTP check failed"))
        }
    }
}
