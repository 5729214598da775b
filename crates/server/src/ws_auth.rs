//! The WebSocket API's authentication ([`WsAuth`]) on the auth crate's [`Authenticator`]: the
//! lockout, key checks (status, expiry, IP allowlist, scope), anomaly detection and audit log
//! are the ones FIX Logons go through ([`Authenticator::authenticate_request`]), not a copy.
//!
//! - HMAC keys: the hex HMAC-SHA256 of one of the payload's accepted forms
//!   ([`SignaturePayload::variants`](portcullis_session::ws::SignaturePayload::variants)) with the key's secret text, compared in constant time.
//! - Ed25519 keys: the base64 signature of the payload (`session.logon`, as in the dialect).
//! - Revocation: the vault watcher's reload marks HMAC verifiers revoked and bumps the
//!   revocation signal ([`crate::security::ServerAuth::signal_revocation`]); connections then
//!   re-check their key against the loaded table ([`Authenticator::key_usable`]).
//! - OAuth 2.0 bearer tokens (`Authorization: Bearer` at the upgrade, DESIGN.md §4): validated
//!   once with [`OAuthServer::validate_access_token`]; before every request the claims are
//!   re-checked without signature work ([`OAuthServer::recheck_access_claims`]: expiry,
//!   revoked token ids, the key still active), so a revoked or expired token ends the
//!   connection's rights at once. The token's restrictions (instruments, `max_qty`) are
//!   enforced on every new order before it reaches the core ([`check_order_restrictions`]).

use std::any::Any;
use std::net::IpAddr;
use std::sync::Arc;

use portcullis_auth::{
    AccessClaims, AuditEvent, AuditKind, Authenticator, Denied, MessageVerifier, OAuthServer,
    Outcome, RequestAttempt, RequestCredential, RequestKind, Scope,
};
use portcullis_fix::UtcTimestamp;
use portcullis_session::ws::{
    AuthError, Decimal, Principal, Security, SignedRequest, WsAuth, WsError,
};
use tokio::sync::watch;

/// What a [`Principal`] carries for the server: the key and the address it was proven from.
#[derive(Debug)]
struct WsCredential {
    key_id: String,
    peer: IpAddr,
    /// HMAC keys only: revocation without a lock.
    verifier: Option<MessageVerifier>,
}

/// What a [`Principal`] authenticated by an OAuth bearer token carries: the validated claims
/// (kept for the connection's life and re-checked before each request) and their `max_qty`
/// parsed once.
#[derive(Debug)]
struct BearerCredential {
    claims: AccessClaims,
    max_qty: Option<Decimal>,
    peer: IpAddr,
}

/// The server's [`WsAuth`].
pub struct ServerWsAuth {
    authenticator: Option<Arc<Authenticator>>,
    revocations: Option<watch::Receiver<u64>>,
    oauth: Option<Arc<OAuthServer>>,
}

impl ServerWsAuth {
    /// Authentication with `authenticator` (`None`: no vault is loaded, every signed request
    /// is refused), re-checking connections whenever `revocations` changes.
    pub fn new(
        authenticator: Option<Arc<Authenticator>>,
        revocations: Option<watch::Receiver<u64>>,
    ) -> Self {
        Self {
            authenticator,
            revocations,
            oauth: None,
        }
    }

    /// Also accepts OAuth 2.0 bearer tokens issued by `oauth` at the upgrade.
    pub fn with_oauth(mut self, oauth: Option<Arc<OAuthServer>>) -> Self {
        self.oauth = oauth;
        self
    }

    fn authenticate(
        &self,
        req: &SignedRequest<'_>,
        kind: RequestKind,
    ) -> Result<Principal, AuthError> {
        let Some(auth) = &self.authenticator else {
            return Err(AuthError::Rejected);
        };
        let now_ms = ms(req.now);
        let session = format!("ws {}", req.method);
        let attempt = RequestAttempt {
            key_id: req.api_key,
            peer_ip: req.peer,
            session: &session,
            required_scope: match req.security {
                Security::Trade => Some(Scope::Trade),
                Security::UserData => Some(Scope::Read),
                Security::None | Security::UserStream | Security::Logon => None,
            },
            kind,
            now_ms,
        };
        let ed25519 = kind == RequestKind::Logon;
        let verify = |cred: &RequestCredential<'_>| {
            let sig = req.signature.as_bytes();
            // Every accepted form is tried, whatever matches first: the work does not depend
            // on which one the client signed.
            let mut ok = false;
            for payload in req.payload.variants() {
                ok |= cred.verify_hex(payload, sig);
                if ed25519 {
                    ok |= cred.verify_ed25519_b64(payload, sig);
                }
            }
            ok
        };
        match auth.authenticate_request(&attempt, verify) {
            Ok(grant) => Ok(Principal {
                api_key: grant.key_id.as_str().to_owned(),
                account: grant.account.clone(),
                can_trade: grant.scopes.contains(Scope::Trade),
                can_read: grant.scopes.contains(Scope::Read),
                credential: Some(Arc::new(WsCredential {
                    key_id: grant.key_id.as_str().to_owned(),
                    peer: req.peer,
                    verifier: grant.verifier,
                }) as Arc<dyn Any + Send + Sync>),
            }),
            Err(Denied::Locked) => Err(AuthError::Locked {
                retry_after_ms: auth.locked_until(req.api_key, req.peer, now_ms),
            }),
            Err(Denied::BadSignature | Denied::MissingSignature) => {
                Err(AuthError::InvalidSignature)
            }
            Err(_) => Err(AuthError::Rejected),
        }
    }
}

/// Unix milliseconds of a timestamp.
fn ms(t: UtcTimestamp) -> i64 {
    t.nanos().div_euclid(1_000_000)
}

impl WsAuth for ServerWsAuth {
    fn verify_request(&self, req: &SignedRequest<'_>) -> Result<Principal, AuthError> {
        self.authenticate(req, RequestKind::Request)
    }

    fn session_logon(&self, req: &SignedRequest<'_>) -> Result<Principal, AuthError> {
        self.authenticate(req, RequestKind::Logon)
    }

    fn revoked(&self, principal: &Principal, now: UtcTimestamp) -> bool {
        let Some(auth) = &self.authenticator else {
            return true;
        };
        if let Some(bearer) = bearer_credential(principal) {
            let Some(oauth) = &self.oauth else {
                return true;
            };
            return oauth
                .recheck_access_claims(&bearer.claims, ms(now))
                .is_err()
                || !auth.key_usable(&bearer.claims.client_id, bearer.peer, ms(now));
        }
        let Some(cred) = principal
            .credential
            .as_ref()
            .and_then(|c| c.downcast_ref::<WsCredential>())
        else {
            // Not one of ours: nothing vouches for it.
            return true;
        };
        if cred.verifier.as_ref().is_some_and(|v| v.is_revoked()) {
            return true;
        }
        !auth.key_usable(&cred.key_id, cred.peer, ms(now))
    }

    fn revocations(&self) -> Option<watch::Receiver<u64>> {
        self.revocations.clone()
    }

    fn bearer_logon(
        &self,
        token: &str,
        peer: IpAddr,
        now: UtcTimestamp,
    ) -> Result<Principal, AuthError> {
        let (Some(auth), Some(oauth)) = (&self.authenticator, &self.oauth) else {
            return Err(AuthError::Rejected);
        };
        let now_ms = ms(now);
        let event = |outcome, reason: &str| {
            AuditEvent::new(AuditKind::Logon, outcome, now_ms)
                .peer_ip(peer)
                .session("ws bearer")
                .reason(reason)
        };
        let claims = match oauth.validate_access_token(token, now_ms) {
            Ok(c) => c,
            Err(e) => {
                auth.record(event(Outcome::Denied, "bearer_token_invalid").detail(e.to_string()));
                return Err(AuthError::Rejected);
            }
        };
        if let Some(retry) = auth.locked_until(&claims.client_id, peer, now_ms) {
            return Err(AuthError::Locked {
                retry_after_ms: Some(retry),
            });
        }
        let refuse = |reason: &str| {
            auth.record(
                event(Outcome::Denied, reason)
                    .key_id(&claims.client_id)
                    .account(&claims.sub),
            );
            AuthError::Rejected
        };
        // The key's own policy (IP allowlist) holds for its tokens too.
        if !auth.key_usable(&claims.client_id, peer, now_ms) {
            return Err(refuse("ip_not_allowed"));
        }
        let max_qty = match claims.max_qty.as_deref().map(Decimal::parse) {
            None => None,
            Some(Ok(d)) => Some(d),
            // Issued by this server, so always a decimal; refuse rather than ignore a limit.
            Some(Err(_)) => return Err(refuse("bad_max_qty")),
        };
        auth.record(
            event(Outcome::Ok, "bearer_token")
                .key_id(&claims.client_id)
                .account(&claims.sub),
        );
        Ok(Principal {
            api_key: claims.client_id.clone(),
            account: claims.sub.clone(),
            can_trade: claims.has_scope(Scope::Trade),
            can_read: claims.has_scope(Scope::Read),
            credential: Some(Arc::new(BearerCredential {
                claims,
                max_qty,
                peer,
            }) as Arc<dyn Any + Send + Sync>),
        })
    }
}

fn bearer_credential(principal: &Principal) -> Option<&BearerCredential> {
    principal
        .credential
        .as_ref()
        .and_then(|c| c.downcast_ref::<BearerCredential>())
}

/// Enforces the restrictions of a delegated token on a new order (`order.place`, the new order
/// of `order.cancelReplace`, `order.test`): the symbol must be in its `instruments`, and the
/// quantity at most its `max_qty` (a MARKET order given by quote amount has no quantity to
/// check, so such a token cannot send one). Principals of signed requests and
/// `session.logon` have no restrictions.
pub fn check_order_restrictions(
    principal: &Principal,
    symbol: &str,
    quantity: Option<&Decimal>,
) -> Result<(), WsError> {
    let Some(bearer) = bearer_credential(principal) else {
        return Ok(());
    };
    if !bearer.claims.allows_instrument(symbol) {
        return Err(WsError::order_rejected(
            "The access token does not allow trading this symbol.",
        ));
    }
    if let Some(max) = &bearer.max_qty {
        match quantity {
            Some(q) if q <= max => {}
            Some(_) => {
                return Err(WsError::order_rejected(
                    "Quantity above the access token's max_qty.",
                ))
            }
            None => {
                return Err(WsError::order_rejected(
                    "The access token has a max_qty: give the order's quantity.",
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_auth::fix_sig::sign_hmac_hex;
    use portcullis_auth::{ApiKey, AuthConfig, KeyId, KeyStatus, MemoryAuditLog, Scopes, Secret};
    use portcullis_session::ws::SignaturePayload;

    fn key(scopes: &str) -> ApiKey {
        ApiKey {
            key_id: KeyId::generate(),
            secret: Some(Secret::generate()),
            ed25519_public_key: None,
            account: "ACC1".into(),
            scopes: Scopes::parse(scopes).unwrap(),
            ip_allowlist: vec![],
            expires_at: None,
            status: KeyStatus::Active,
            created_at: 0,
            last_used_at: None,
            revoked_at: None,
        }
    }

    fn req<'a>(
        key: &'a str,
        sig: &'a str,
        payload: &'a SignaturePayload,
        security: Security,
    ) -> SignedRequest<'a> {
        SignedRequest {
            api_key: key,
            signature: sig,
            payload,
            security,
            method: "order.place",
            peer: "127.0.0.1".parse().unwrap(),
            now: UtcTimestamp::now(),
        }
    }

    #[test]
    fn hmac_signatures_scopes_and_revocation() {
        let k = key("trade,read");
        let ro = key("read");
        let auth = Arc::new(
            Authenticator::new(AuthConfig::default(), Arc::new(MemoryAuditLog::new())).unwrap(),
        );
        auth.reload_keys(vec![k.clone(), ro.clone()]);
        let ws = ServerWsAuth::new(Some(auth.clone()), None);
        // A value with a space: clients sign it raw or percent-encoded, both are accepted.
        let payload = SignaturePayload::from_pairs(&[("a", "x y"), ("b", "1")]);
        let secret = k.secret.as_ref().unwrap().as_bytes();
        let raw = sign_hmac_hex(secret, b"a=x y&b=1");
        let enc = sign_hmac_hex(secret, b"a=x+y&b=1");
        let id = k.key_id.as_str();
        let p = ws
            .verify_request(&req(id, &raw, &payload, Security::Trade))
            .unwrap();
        assert_eq!(p.account, "ACC1");
        assert!(p.can_trade && p.can_read);
        ws.verify_request(&req(id, &enc.to_uppercase(), &payload, Security::Trade))
            .unwrap();
        let bad = sign_hmac_hex(secret, b"a=x y&b=2");
        assert_eq!(
            ws.verify_request(&req(id, &bad, &payload, Security::Trade))
                .unwrap_err(),
            AuthError::InvalidSignature
        );
        // A read-only key cannot trade.
        let ro_sig = sign_hmac_hex(ro.secret.as_ref().unwrap().as_bytes(), b"a=x y&b=1");
        let r = ws.verify_request(&req(ro.key_id.as_str(), &ro_sig, &payload, Security::Trade));
        assert_eq!(r.unwrap_err(), AuthError::Rejected);

        assert!(!ws.revoked(&p, UtcTimestamp::now()));
        let mut gone = k.clone();
        gone.status = KeyStatus::Revoked;
        auth.reload_keys(vec![gone, ro]);
        assert!(ws.revoked(&p, UtcTimestamp::now()));
    }

    #[test]
    fn bearer_tokens_log_on_carry_their_restrictions_and_stop_when_revoked() {
        use base64::Engine as _;
        use portcullis_auth::oauth::Form;
        use portcullis_auth::{OAuthConfig, TokenSigningKey};
        let k = key("trade,read");
        let auth = Arc::new(
            Authenticator::new(AuthConfig::default(), Arc::new(MemoryAuditLog::new())).unwrap(),
        );
        auth.reload_keys(vec![k.clone()]);
        let store = auth.clone();
        let oauth = Arc::new(
            OAuthServer::new(
                OAuthConfig::new("https://127.0.0.1:9444", "https://127.0.0.1:9444"),
                TokenSigningKey::generate(),
                move |id: &str| store.key(id),
            )
            .unwrap(),
        );
        let ws = ServerWsAuth::new(Some(auth.clone()), None).with_oauth(Some(oauth.clone()));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                k.key_id.as_str(),
                k.secret.as_ref().unwrap().expose()
            ))
        );
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let now = UtcTimestamp::now();
        let form = Form::from_pairs([
            ("grant_type", "client_credentials"),
            ("scope", "trade"),
            ("instruments", "BTC-PERP"),
            ("max_qty", "1.5"),
        ])
        .unwrap();
        let t = oauth
            .token(Some(&basic), &form, Some(peer), ms(now))
            .unwrap();
        let p = ws.bearer_logon(&t.access_token, peer, now).unwrap();
        assert_eq!(p.api_key, k.key_id.as_str());
        assert_eq!(p.account, "ACC1");
        assert!(p.can_trade && !p.can_read);
        let d = |s: &str| Decimal::parse(s).unwrap();
        assert!(check_order_restrictions(&p, "BTC-PERP", Some(&d("1.5"))).is_ok());
        assert!(check_order_restrictions(&p, "ETH-PERP", Some(&d("1"))).is_err());
        assert!(check_order_restrictions(&p, "BTC-PERP", Some(&d("1.6"))).is_err());
        assert!(check_order_restrictions(&p, "BTC-PERP", None).is_err());
        assert!(!ws.revoked(&p, now));
        assert!(ws.bearer_logon("not.a.token", peer, now).is_err());
        // Revoked: the connection's principal stops at once.
        let revoke = Form::from_pairs([("token", t.access_token.as_str())]).unwrap();
        oauth
            .revoke(Some(&basic), &revoke, Some(peer), ms(now))
            .unwrap();
        assert!(ws.revoked(&p, now));
        assert!(ws.bearer_logon(&t.access_token, peer, now).is_err());
        // Principals of signed requests have no restrictions.
        let plain = Principal {
            api_key: "k".into(),
            account: "A".into(),
            can_trade: true,
            can_read: true,
            credential: None,
        };
        assert!(check_order_restrictions(&plain, "ETH-PERP", None).is_ok());
    }

    #[test]
    fn ed25519_logon() {
        use base64::Engine as _;
        use ed25519_dalek::Signer as _;
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let mut k = key("trade");
        k.secret = None;
        k.ed25519_public_key = Some(signing.verifying_key().to_bytes());
        let auth = Arc::new(
            Authenticator::new(AuthConfig::default(), Arc::new(MemoryAuditLog::new())).unwrap(),
        );
        auth.reload_keys(vec![k.clone()]);
        let ws = ServerWsAuth::new(Some(auth), None);
        let payload = SignaturePayload::from_pairs(&[("apiKey", k.key_id.as_str()), ("t", "1")]);
        let sig = base64::engine::general_purpose::STANDARD
            .encode(signing.sign(payload.raw().as_bytes()).to_bytes());
        let id = k.key_id.as_str();
        let p = ws
            .session_logon(&req(id, &sig, &payload, Security::Logon))
            .unwrap();
        assert!(p.can_trade && !p.can_read);
        // Ed25519 signs the logon only, as in the dialect.
        assert_eq!(
            ws.verify_request(&req(id, &sig, &payload, Security::Trade))
                .unwrap_err(),
            AuthError::InvalidSignature
        );
        assert!(!ws.revoked(&p, UtcTimestamp::now()));
    }
}
