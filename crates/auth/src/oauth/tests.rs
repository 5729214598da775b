//! Tests of the authorization server: every rule of the module, at fixed times.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

use super::jws;
use super::*;
use crate::key::{parse_ip_allowlist, ApiKey, KeyId, KeyStatus, Scope, Scopes, Secret};

const NOW: i64 = 1_700_000_000_000;
const NOW_S: i64 = NOW / 1000;
const ISSUER: &str = "https://portcullis.test";
const AUD: &str = "https://portcullis.test/api";
const TOKEN_URL: &str = "https://portcullis.test/oauth/token";
const SECRET: &str = "6f1c0a7e3d5b49e2a8c4f0b1d9e7a6c5b3f2e1d0c9b8a7f6e5d4c3b2a1908172";
const ADMIN_SECRET: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const TRADER: &str = "pk_trader";
const ED: &str = "pk_ed";
const ADMIN: &str = "pk_admin";

type Keys = Arc<RwLock<HashMap<String, ApiKey>>>;

struct Fx {
    server: OAuthServer,
    keys: Keys,
    ed_sk: SigningKey,
}

fn api_key(id: &str, secret: Option<&str>, account: &str, scopes: &str) -> ApiKey {
    ApiKey {
        key_id: KeyId::parse(id).unwrap(),
        secret: secret.map(|s| Secret::from_text(s).unwrap()),
        ed25519_public_key: None,
        account: account.into(),
        scopes: Scopes::parse(scopes).unwrap(),
        ip_allowlist: vec![],
        expires_at: None,
        status: KeyStatus::Active,
        created_at: 1,
        last_used_at: None,
        revoked_at: None,
    }
}

fn fixture_with(config: OAuthConfig) -> Fx {
    let ed_sk = SigningKey::from_bytes(&[7; 32]);
    let mut ed = api_key(ED, None, "ACC2", "trade");
    ed.ed25519_public_key = Some(ed_sk.verifying_key().to_bytes());
    let keys: Keys = Arc::new(RwLock::new(
        [
            api_key(TRADER, Some(SECRET), "ACC1", "read,trade"),
            ed,
            api_key(ADMIN, Some(ADMIN_SECRET), "OPS", "read,admin"),
        ]
        .into_iter()
        .map(|k| (k.key_id.to_string(), k))
        .collect(),
    ));
    let store_keys = Arc::clone(&keys);
    let server = OAuthServer::new(
        config,
        TokenSigningKey::from_seed(&[42; 32]),
        move |id: &str| store_keys.read().unwrap().get(id).cloned(),
    )
    .unwrap();
    Fx {
        server,
        keys,
        ed_sk,
    }
}

fn fixture() -> Fx {
    fixture_with(OAuthConfig::new(ISSUER, AUD))
}

impl Fx {
    fn edit_key(&self, id: &str, f: impl FnOnce(&mut ApiKey)) {
        f(self.keys.write().unwrap().get_mut(id).unwrap());
    }

    fn token(
        &self,
        auth: Option<&str>,
        pairs: &[(&str, &str)],
    ) -> Result<TokenResponse, OAuthError> {
        self.token_at(auth, pairs, NOW)
    }

    fn token_at(
        &self,
        auth: Option<&str>,
        pairs: &[(&str, &str)],
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        self.server
            .token(auth, &form(pairs), Some(ip("192.0.2.1")), now)
    }

    /// A client_credentials token for the trader key over Basic.
    fn cc(&self, extra: &[(&str, &str)]) -> TokenResponse {
        let mut pairs = vec![("grant_type", "client_credentials")];
        pairs.extend_from_slice(extra);
        self.token(Some(&basic(TRADER, SECRET)), &pairs).unwrap()
    }

    fn refresh(&self, rt: &str, now: i64) -> Result<TokenResponse, OAuthError> {
        self.token_at(
            Some(&basic(TRADER, SECRET)),
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            now,
        )
    }

    fn client(&self, id: &str, secret: &str) -> AuthenticatedClient {
        let creds = ClientCredentials::from_basic_header(&basic(id, secret)).unwrap();
        self.server
            .authenticate_client(&creds, Some(ip("192.0.2.1")), NOW)
            .unwrap()
    }

    /// Signs arbitrary header and claims with the server's key (for forged-claim tests).
    fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let key = TokenSigningKey::from_seed(&[42; 32]);
        jws::encode(
            &serde_json::to_vec(header).unwrap(),
            &serde_json::to_vec(claims).unwrap(),
            |i| key.sign(i).to_vec(),
        )
    }
}

fn form(pairs: &[(&str, &str)]) -> Form {
    Form::from_pairs(pairs.iter().copied()).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", B64.encode(format!("{id}:{secret}")))
}

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&B64URL.decode(h).unwrap()).unwrap()
}

fn claims_of(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64URL.decode(p).unwrap()).unwrap()
}

fn assertion_claims(id: &str, aud: Value, exp: i64, jti: &str) -> Value {
    json!({"iss": id, "sub": id, "aud": aud, "exp": exp, "iat": NOW_S, "jti": jti})
}

fn hs256_assertion(secret: &str, claims: &Value) -> String {
    use hmac::{Hmac, Mac};
    jws::encode(
        br#"{"alg":"HS256","typ":"JWT"}"#,
        &serde_json::to_vec(claims).unwrap(),
        |input| {
            let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        },
    )
}

fn eddsa_assertion(sk: &SigningKey, claims: &Value) -> String {
    jws::encode(
        br#"{"alg":"EdDSA"}"#,
        &serde_json::to_vec(claims).unwrap(),
        |input| sk.sign(input).to_bytes().to_vec(),
    )
}

fn with_assertion<'a>(assertion: &'a str, pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    v.extend_from_slice(pairs);
    v
}

fn code(r: Result<TokenResponse, OAuthError>) -> &'static str {
    r.map(|_| "ok").unwrap_or_else(|e| e.code())
}

// ---------------------------------------------------------------------------------------------
// Keys and JWS

#[test]
fn rfc8037_ed25519_vectors_kid_and_jws() {
    // RFC 8037 Appendix A.1 (private key d), A.3 (thumbprint), A.4 (JWS).
    let d = B64URL
        .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
        .unwrap();
    let key = TokenSigningKey::from_seed(&d.try_into().unwrap());
    assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    assert_eq!(
        key.public_jwk()["x"],
        "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    );
    let token = jws::encode(br#"{"alg":"EdDSA"}"#, b"Example of Ed25519 signing", |i| {
        key.sign(i).to_vec()
    });
    assert_eq!(
        token,
        "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    );
    let parsed = jws::parse(&token).unwrap();
    assert!(key
        .verifying_key()
        .verify(parsed.signing_input, &parsed.signature));
}

#[test]
fn signing_key_bytes_round_trip_and_jwks_shape() {
    let key = TokenSigningKey::generate();
    let bytes = key.to_bytes();
    assert_eq!(&bytes[..8], b"PCLSTSK1");
    let back = TokenSigningKey::from_bytes(&bytes).unwrap();
    assert_eq!(back.kid(), key.kid());
    assert_ne!(TokenSigningKey::generate().kid(), key.kid());
    assert_eq!(
        TokenSigningKey::from_bytes(&bytes[..39]).unwrap_err(),
        SigningKeyError::BadFormat
    );
    assert!(TokenSigningKey::from_bytes(&[0; 40]).is_err());
    assert!(!format!("{key:?}").contains(&hex::encode(&bytes[8..])));

    let fx = fixture();
    let set = fx.server.jwks();
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(k["kty"], "OKP");
    assert_eq!(k["crv"], "Ed25519");
    assert_eq!(k["use"], "sig");
    assert_eq!(k["alg"], "EdDSA");
    assert_eq!(k["kid"], TokenSigningKey::from_seed(&[42; 32]).kid());
    assert_eq!(B64URL.decode(k["x"].as_str().unwrap()).unwrap().len(), 32);
    assert!(k.get("d").is_none(), "never the private key");
}

// ---------------------------------------------------------------------------------------------
// client_credentials with HTTP Basic

#[test]
fn client_credentials_basic_issues_a_valid_rfc9068_token() {
    let fx = fixture();
    let r = fx.cc(&[]);
    assert_eq!(r.token_type, "Bearer");
    assert_eq!(r.expires_in, 600);
    assert_eq!(r.scope, "read trade");
    assert!(r.refresh_token.as_ref().unwrap().starts_with("pcrt_"));
    let h = header_of(&r.access_token);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["alg"], "EdDSA");
    assert_eq!(h["kid"], TokenSigningKey::from_seed(&[42; 32]).kid());
    let c = fx
        .server
        .validate_access_token(&r.access_token, NOW)
        .unwrap();
    assert_eq!(c.iss, ISSUER);
    assert_eq!(c.aud, AUD);
    assert_eq!(c.sub, "ACC1");
    assert_eq!(c.client_id, TRADER);
    assert_eq!(c.scope, "read trade");
    assert_eq!(c.iat, NOW_S);
    assert_eq!(c.exp, NOW_S + 600);
    assert_eq!(c.jti.len(), 22);
    assert!(c.has_scope(Scope::Trade) && !c.has_scope(Scope::Admin));
    assert!(c.instruments.is_none() && c.max_qty.is_none());
    assert!(c.allows_instrument("ANY"));
    // Each token has its own id.
    let c2 = fx
        .server
        .validate_access_token(&fx.cc(&[]).access_token, NOW)
        .unwrap();
    assert_ne!(c.jti, c2.jti);
    // JSON body shape.
    let body = serde_json::to_value(&r).unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["refresh_token"].is_string());
    assert!(!format!("{r:?}").contains(&r.access_token));
}

#[test]
fn lifetime_is_configurable_and_expiry_is_enforced_with_leeway() {
    let fx = fixture();
    let t = fx.cc(&[]).access_token.clone();
    let exp_ms = (NOW_S + 600) * 1000;
    assert!(fx.server.validate_access_token(&t, exp_ms - 1).is_ok());
    assert!(
        fx.server.validate_access_token(&t, exp_ms + 9_999).is_ok(),
        "leeway"
    );
    assert_eq!(
        fx.server.validate_access_token(&t, exp_ms + 10_000),
        Err(TokenError::Expired)
    );
    let mut cfg = OAuthConfig::new(ISSUER, AUD);
    cfg.access_token_ttl_ms = 60_000;
    let fx = fixture_with(cfg);
    assert_eq!(fx.cc(&[]).expires_in, 60);
}

#[test]
fn token_never_outlives_its_key() {
    let fx = fixture();
    fx.edit_key(TRADER, |k| k.expires_at = Some(NOW + 120_500));
    let r = fx.cc(&[]);
    assert_eq!(r.expires_in, 121);
    let t = r.access_token.clone();
    assert!(fx.server.validate_access_token(&t, NOW + 120_000).is_ok());
    // The key's own expiry ends the token to the millisecond.
    assert_eq!(
        fx.server.validate_access_token(&t, NOW + 120_500),
        Err(TokenError::ClientInactive)
    );
}

#[test]
fn scope_may_be_narrowed_never_widened() {
    let fx = fixture();
    assert_eq!(fx.cc(&[("scope", "trade")]).scope, "trade");
    assert_eq!(fx.cc(&[("scope", "trade  read")]).scope, "read trade");
    let auth = basic(TRADER, SECRET);
    for bad in ["trade admin", "admin", "withdraw", "Trade", "   "] {
        let e = fx
            .token(
                Some(&auth),
                &[("grant_type", "client_credentials"), ("scope", bad)],
            )
            .unwrap_err();
        assert_eq!(e.code(), "invalid_scope", "{bad:?}: {e}");
        assert_eq!(e.http_status(), 400);
    }
}

#[test]
fn grantable_scopes_limit_what_oauth_hands_out() {
    let mut cfg = OAuthConfig::new(ISSUER, AUD);
    cfg.grantable_scopes = Scopes::of(&[Scope::Read, Scope::Trade]);
    let fx = fixture_with(cfg);
    let auth = basic(ADMIN, ADMIN_SECRET);
    let r = fx
        .token(Some(&auth), &[("grant_type", "client_credentials")])
        .unwrap();
    assert_eq!(r.scope, "read", "admin is left out by default");
    let e = fx
        .token(
            Some(&auth),
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        )
        .unwrap_err();
    assert_eq!(e.code(), "invalid_scope");
    // A key whose every scope is outside: unauthorized_client.
    fx.edit_key(ADMIN, |k| k.scopes = Scopes::of(&[Scope::Admin]));
    let e = fx
        .token(Some(&auth), &[("grant_type", "client_credentials")])
        .unwrap_err();
    assert_eq!(e.code(), "unauthorized_client");
}

#[test]
fn restrictions_travel_in_the_token() {
    let fx = fixture();
    let r = fx.cc(&[
        ("scope", "trade"),
        ("instruments", "ETH-PERP BTC-PERP BTC-PERP"),
        ("max_qty", "010.500"),
    ]);
    let c = fx
        .server
        .validate_access_token(&r.access_token, NOW)
        .unwrap();
    assert_eq!(
        c.instruments.as_deref(),
        Some(&["BTC-PERP".to_owned(), "ETH-PERP".to_owned()][..])
    );
    assert_eq!(c.max_qty.as_deref(), Some("10.5"));
    assert!(c.allows_instrument("BTC-PERP") && !c.allows_instrument("SOL-PERP"));
    let raw = claims_of(&r.access_token);
    assert_eq!(raw["max_qty"], "10.5", "a decimal string, not a number");
    assert!(raw["instruments"].is_array());

    for bad in [
        "0",
        "0.000",
        "-1",
        "1e3",
        "1.",
        ".5",
        "1,5",
        "123456789012345678901",
    ] {
        let e = fx
            .token(
                Some(&basic(TRADER, SECRET)),
                &[("grant_type", "client_credentials"), ("max_qty", bad)],
            )
            .unwrap_err();
        assert_eq!(e.code(), "invalid_request", "{bad:?}");
    }
    assert_eq!(parse_max_qty("0.25").unwrap(), "0.25");
    assert_eq!(parse_max_qty("7").unwrap(), "7");
    assert!(parse_instruments(&"X".repeat(65)).is_err());
    assert!(parse_instruments("A\u{7f}B").is_err());
    let many: Vec<String> = (0..=MAX_INSTRUMENTS).map(|i| format!("S{i}")).collect();
    assert!(parse_instruments(&many.join(" ")).is_err());
}

#[test]
fn wrong_or_unknown_credentials_get_one_generic_invalid_client() {
    let fx = fixture();
    let cc = [("grant_type", "client_credentials")];
    let wrong = fx
        .token(Some(&basic(TRADER, ADMIN_SECRET)), &cc)
        .unwrap_err();
    let unknown = fx
        .token(Some(&basic("pk_nobody", SECRET)), &cc)
        .unwrap_err();
    let ed_only = fx.token(Some(&basic(ED, SECRET)), &cc).unwrap_err();
    let empty = fx.token(Some(&basic(TRADER, "")), &cc).unwrap_err();
    for e in [&wrong, &unknown, &ed_only, &empty] {
        assert_eq!(e, &wrong, "indistinguishable");
        assert_eq!(e.code(), "invalid_client");
        assert_eq!(e.http_status(), 401);
        assert!(e.www_authenticate().unwrap().starts_with("Basic realm="));
    }
    assert_eq!(wrong.description(), "client authentication failed");
}

#[test]
fn client_authentication_request_rules() {
    let fx = fixture();
    let cc = [("grant_type", "client_credentials")];
    let auth = basic(TRADER, SECRET);
    let code_of = |a: Option<&str>, p: &[(&str, &str)]| code(fx.token(a, p));
    assert_eq!(code_of(None, &cc), "invalid_client");
    assert_eq!(code_of(Some("Bearer abc"), &cc), "invalid_client");
    assert_eq!(code_of(Some("Basic !!!"), &cc), "invalid_client");
    assert_eq!(
        code_of(Some(&format!("Basic {}", B64.encode("no-colon"))), &cc),
        "invalid_client"
    );
    // client_secret_post is not offered.
    assert_eq!(
        code_of(
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", TRADER),
                ("client_secret", SECRET)
            ]
        ),
        "invalid_client"
    );
    // Two methods at once.
    let a = hs256_assertion(
        SECRET,
        &assertion_claims(TRADER, json!(TOKEN_URL), NOW_S + 60, "j"),
    );
    assert_eq!(
        code_of(Some(&auth), &with_assertion(&a, &[])),
        "invalid_request"
    );
    // A client_id that disagrees with Basic.
    assert_eq!(
        code_of(
            Some(&auth),
            &[("grant_type", "client_credentials"), ("client_id", ADMIN)]
        ),
        "invalid_request"
    );
    // Scheme name is case-insensitive; the matching client_id is fine.
    let lower = auth.replacen("Basic", "basic", 1);
    assert_eq!(
        code_of(
            Some(&lower),
            &[("grant_type", "client_credentials"), ("client_id", TRADER)]
        ),
        "ok"
    );
}

#[test]
fn basic_secret_is_form_decoded_and_raw_also_accepted() {
    let fx = fixture();
    let secret = "abc+def%2Fghi0123456789012345678901234";
    fx.keys.write().unwrap().insert(
        "pk_plus".into(),
        api_key("pk_plus", Some(secret), "ACC9", "read"),
    );
    let cc = [("grant_type", "client_credentials")];
    // As RFC 6749 §2.3.1 says: form-encoded.
    let encoded = "abc%2Bdef%252Fghi0123456789012345678901234";
    assert!(fx.token(Some(&basic("pk_plus", encoded)), &cc).is_ok());
    // As many clients do: raw.
    assert!(fx.token(Some(&basic("pk_plus", secret)), &cc).is_ok());
    assert!(fx
        .token(
            Some(&basic("pk_plus", "abc def%2Fghi0123456789012345678901234")),
            &cc
        )
        .is_err());
}

#[test]
fn inactive_keys_and_ip_allowlist() {
    let fx = fixture();
    let auth = basic(TRADER, SECRET);
    let cc = form(&[("grant_type", "client_credentials")]);
    fx.edit_key(TRADER, |k| {
        k.ip_allowlist = parse_ip_allowlist(&["10.0.0.0/8"]).unwrap();
    });
    assert!(fx
        .server
        .token(Some(&auth), &cc, Some(ip("10.1.2.3")), NOW)
        .is_ok());
    assert!(fx
        .server
        .token(Some(&auth), &cc, Some(ip("::ffff:10.1.2.3")), NOW)
        .is_ok());
    let e = fx
        .server
        .token(Some(&auth), &cc, Some(ip("192.0.2.1")), NOW)
        .unwrap_err();
    assert_eq!(e.code(), "invalid_client");
    assert!(e.description().contains("not allowed from this address"));
    assert!(
        fx.server.token(Some(&auth), &cc, None, NOW).is_err(),
        "fails closed without a peer address"
    );
    fx.edit_key(TRADER, |k| k.ip_allowlist.clear());

    fx.edit_key(TRADER, |k| k.expires_at = Some(NOW));
    let e = fx
        .token(Some(&auth), &[("grant_type", "client_credentials")])
        .unwrap_err();
    assert_eq!(e.description(), "the key has expired");
    fx.edit_key(TRADER, |k| {
        k.expires_at = None;
        k.status = KeyStatus::Revoked;
    });
    let e = fx
        .token(Some(&auth), &[("grant_type", "client_credentials")])
        .unwrap_err();
    assert_eq!(e.description(), "the key is revoked");
}

// ---------------------------------------------------------------------------------------------
// Client assertions (RFC 7523)

#[test]
fn hs256_and_eddsa_assertions_authenticate() {
    let fx = fixture();
    let a = hs256_assertion(
        SECRET,
        &assertion_claims(TRADER, json!(TOKEN_URL), NOW_S + 60, "a1"),
    );
    let r = fx
        .token(None, &with_assertion(&a, &[("client_id", TRADER)]))
        .unwrap();
    let c = fx
        .server
        .validate_access_token(&r.access_token, NOW)
        .unwrap();
    assert_eq!(c.client_id, TRADER);

    let creds = ClientCredentials::from_request(
        None,
        &form(&with_assertion(
            &hs256_assertion(
                SECRET,
                &assertion_claims(TRADER, json!(ISSUER), NOW_S + 60, "a2"),
            ),
            &[],
        )),
    )
    .unwrap();
    let client = fx.server.authenticate_client(&creds, None, NOW).unwrap();
    assert_eq!(client.method(), ClientAuthMethod::ClientSecretJwt);
    assert_eq!(client.account(), "ACC1");

    // EdDSA with the key's Ed25519 key; aud as an array.
    let a = eddsa_assertion(
        &fx.ed_sk,
        &assertion_claims(
            ED,
            json!(["https://other.example", TOKEN_URL]),
            NOW_S + 60,
            "e1",
        ),
    );
    let creds = ClientCredentials::from_request(None, &form(&with_assertion(&a, &[]))).unwrap();
    let client = fx.server.authenticate_client(&creds, None, NOW).unwrap();
    assert_eq!(client.method(), ClientAuthMethod::PrivateKeyJwt);
    assert_eq!(client.client_id(), ED);
    let r = fx
        .server
        .client_credentials_grant(&client, &GrantOptions::default(), NOW)
        .unwrap();
    assert_eq!(r.scope, "trade");
    assert!(format!("{creds:?}").contains("[redacted]"));
}

#[test]
fn assertion_claims_are_checked() {
    let fx = fixture();
    let try_a = |claims: Value| {
        let a = hs256_assertion(SECRET, &claims);
        fx.token(None, &with_assertion(&a, &[])).map(|_| ())
    };
    let desc = |claims: Value| try_a(claims).unwrap_err().description().to_owned();
    // Wrong audience.
    assert!(desc(assertion_claims(
        TRADER,
        json!("https://evil.example/token"),
        NOW_S + 60,
        "x1"
    ))
    .contains("aud"));
    assert!(desc(assertion_claims(TRADER, json!([]), NOW_S + 60, "x2")).contains("aud"));
    // Expired, beyond the leeway; inside the leeway it passes.
    assert!(desc(assertion_claims(TRADER, json!(TOKEN_URL), NOW_S - 11, "x3")).contains("expired"));
    assert!(try_a(assertion_claims(TRADER, json!(TOKEN_URL), NOW_S - 5, "x4")).is_ok());
    // exp too far ahead: more than 5 min.
    assert!(desc(assertion_claims(
        TRADER,
        json!(TOKEN_URL),
        NOW_S + 3600,
        "x5"
    ))
    .contains("ahead"));
    assert!(try_a(assertion_claims(
        TRADER,
        json!(TOKEN_URL),
        NOW_S + 300,
        "x6"
    ))
    .is_ok());
    // Missing exp, missing jti, sub ≠ iss, iat/nbf in the future.
    let mut c = assertion_claims(TRADER, json!(TOKEN_URL), NOW_S + 60, "x7");
    c.as_object_mut().unwrap().remove("exp");
    assert!(desc(c).contains("exp"));
    let mut c = assertion_claims(TRADER, json!(TOKEN_URL), NOW_S + 60, "x8");
    c.as_object_mut().unwrap().remove("jti");
    assert!(desc(c).contains("jti"));
    let mut c = assertion_claims(TRADER, json!(TOKEN_URL), NOW_S + 60, "x9");
    c["sub"] = json!(ADMIN);
    assert!(desc(c).contains("sub"));
    let mut c = assertion_claims(TRADER, json!(TOKEN_URL), NOW_S + 60, "x10");
    c["iat"] = json!(NOW_S + 120);
    assert!(desc(c).contains("iat"));
    let mut c = assertion_claims(TRADER, json!(TOKEN_URL), NOW_S + 60, "x11");
    c["nbf"] = json!(NOW_S + 120);
    assert!(desc(c).contains("nbf"));
    // Every one of those is invalid_client.
    let e = try_a(assertion_claims(TRADER, json!("nope"), NOW_S + 60, "x12")).unwrap_err();
    assert_eq!(e.code(), "invalid_client");
}

#[test]
fn assertion_jti_is_single_use_per_client() {
    let fx = fixture();
    let a = hs256_assertion(
        SECRET,
        &assertion_claims(TRADER, json!(TOKEN_URL), NOW_S + 60, "once"),
    );
    assert!(fx.token(None, &with_assertion(&a, &[])).is_ok());
    let e = fx.token(None, &with_assertion(&a, &[])).unwrap_err();
    assert_eq!(e.code(), "invalid_client");
    assert!(e.description().contains("already used"));
    // Another client may use the same jti.
    let b = eddsa_assertion(
        &fx.ed_sk,
        &assertion_claims(ED, json!(TOKEN_URL), NOW_S + 60, "once"),
    );
    assert!(fx.token(None, &with_assertion(&b, &[])).is_ok());
}

#[test]
fn assertion_signatures_and_algorithms() {
    let fx = fixture();
    let claims = assertion_claims(TRADER, json!(TOKEN_URL), NOW_S + 60, "s1");
    let generic = "client authentication failed";
    let d = |a: &str| {
        fx.token(None, &with_assertion(a, &[]))
            .unwrap_err()
            .description()
            .to_owned()
    };
    // Wrong secret; unknown client; an Ed25519-only key asked to verify HS256.
    assert_eq!(d(&hs256_assertion(ADMIN_SECRET, &claims)), generic);
    let ghost = assertion_claims("pk_ghost", json!(TOKEN_URL), NOW_S + 60, "s2");
    assert_eq!(d(&hs256_assertion(SECRET, &ghost)), generic);
    let ed_hs = assertion_claims(ED, json!(TOKEN_URL), NOW_S + 60, "s3");
    assert_eq!(d(&hs256_assertion(SECRET, &ed_hs)), generic);
    // An EdDSA assertion for an HMAC-only key, or signed by another Ed25519 key.
    assert_eq!(d(&eddsa_assertion(&fx.ed_sk, &claims)), generic);
    let other = SigningKey::from_bytes(&[8; 32]);
    let ed_claims = assertion_claims(ED, json!(TOKEN_URL), NOW_S + 60, "s4");
    assert_eq!(d(&eddsa_assertion(&other, &ed_claims)), generic);
    // alg none / unsupported.
    let none = format!(
        "{}.{}.",
        B64URL.encode(br#"{"alg":"none"}"#),
        B64URL.encode(serde_json::to_vec(&claims).unwrap())
    );
    assert!(d(&none).contains("unsupported client assertion algorithm"));
    let rs = format!(
        "{}.{}.AAAA",
        B64URL.encode(br#"{"alg":"RS256"}"#),
        B64URL.encode(serde_json::to_vec(&claims).unwrap())
    );
    assert!(d(&rs).contains("unsupported"));
    assert!(d("not.a.jwt!").contains("malformed"));
    // Tampered claims under a valid signature.
    let good = hs256_assertion(SECRET, &claims);
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut forged = claims.clone();
    forged["exp"] = json!(NOW_S + 200);
    let forged_b64 = B64URL.encode(serde_json::to_vec(&forged).unwrap());
    parts[1] = &forged_b64;
    assert_eq!(d(&parts.join(".")), generic);
    // client_id parameter must match iss.
    let e = fx
        .token(None, &with_assertion(&good, &[("client_id", ADMIN)]))
        .unwrap_err();
    assert_eq!(e.code(), "invalid_client");
    // Assertion type rules.
    let e = fx
        .token(
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:other"),
                ("client_assertion", &good),
            ],
        )
        .unwrap_err();
    assert_eq!(e.code(), "invalid_client");
    let e = fx
        .token(
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion", &good),
            ],
        )
        .unwrap_err();
    assert_eq!(e.code(), "invalid_request");
}

#[test]
fn access_token_is_not_a_client_assertion() {
    let fx = fixture();
    let at = fx.cc(&[]).access_token.clone();
    let e = fx.token(None, &with_assertion(&at, &[])).unwrap_err();
    assert_eq!(e.code(), "invalid_client");
}

// ---------------------------------------------------------------------------------------------
// Refresh tokens

#[test]
fn refresh_rotates_and_keeps_the_grant() {
    let fx = fixture();
    let first = fx.cc(&[
        ("scope", "trade"),
        ("instruments", "BTC-PERP"),
        ("max_qty", "5"),
    ]);
    let rt1 = first.refresh_token.clone().unwrap();
    let second = fx.refresh(&rt1, NOW + 60_000).unwrap();
    let rt2 = second.refresh_token.clone().unwrap();
    assert_ne!(rt1, rt2);
    assert_eq!(second.scope, "trade");
    let c = fx
        .server
        .validate_access_token(&second.access_token, NOW + 60_000)
        .unwrap();
    assert_eq!(c.instruments.as_deref(), Some(&["BTC-PERP".to_owned()][..]));
    assert_eq!(c.max_qty.as_deref(), Some("5"));
    assert_eq!(c.iat, NOW_S + 60);
    // The new one works in turn.
    let third = fx.refresh(&rt2, NOW + 120_000).unwrap();
    assert!(third.refresh_token.is_some());
    // Narrowing on refresh: fine; widening: refused; restrictions cannot change.
    let auth = basic(TRADER, SECRET);
    let rt3 = third.refresh_token.clone().unwrap();
    let e = fx
        .token_at(
            Some(&auth),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt3),
                ("scope", "read trade"),
            ],
            NOW + 130_000,
        )
        .unwrap_err();
    assert_eq!(e.code(), "invalid_scope");
    let e = fx
        .token_at(
            Some(&auth),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt3),
                ("instruments", "ETH-PERP"),
            ],
            NOW + 130_000,
        )
        .unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    // Refused requests did not spend it.
    assert!(fx.refresh(&rt3, NOW + 140_000).is_ok());
    assert_eq!(
        code(fx.token(Some(&auth), &[("grant_type", "refresh_token")])),
        "invalid_request"
    );
    assert_eq!(code(fx.refresh("pcrt_unknown", NOW)), "invalid_grant");
}

#[test]
fn reusing_a_refresh_token_revokes_the_whole_family() {
    let fx = fixture();
    let first = fx.cc(&[]);
    let other_family = fx.cc(&[]);
    let rt1 = first.refresh_token.clone().unwrap();
    let second = fx.refresh(&rt1, NOW + 1000).unwrap();
    let rt2 = second.refresh_token.clone().unwrap();
    // The spent token comes back (a thief, or a confused client).
    let e = fx.refresh(&rt1, NOW + 2000).unwrap_err();
    assert_eq!(e.code(), "invalid_grant");
    assert!(e.description().contains("reused"));
    // Everything of the family is dead: the live refresh token and both access tokens.
    assert_eq!(code(fx.refresh(&rt2, NOW + 3000)), "invalid_grant");
    for at in [&first.access_token, &second.access_token] {
        assert_eq!(
            fx.server.validate_access_token(at, NOW + 3000),
            Err(TokenError::Revoked)
        );
        let caller = fx.client(TRADER, SECRET);
        assert!(
            !fx.server
                .introspect_token(&caller, at, None, NOW + 3000)
                .active
        );
    }
    // Another family of the same client is untouched.
    assert!(fx
        .server
        .validate_access_token(&other_family.access_token, NOW + 3000)
        .is_ok());
    assert!(fx
        .refresh(other_family.refresh_token.as_ref().unwrap(), NOW + 3000)
        .is_ok());
}

#[test]
fn concurrent_use_of_one_refresh_token_succeeds_once() {
    let fx = Arc::new(fixture());
    let rt = fx.cc(&[]).refresh_token.clone().unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let fx = Arc::clone(&fx);
            let rt = rt.clone();
            std::thread::spawn(move || fx.refresh(&rt, NOW + 1000).is_ok())
        })
        .collect();
    let ok = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&b| b)
        .count();
    assert_eq!(ok, 1);
}

#[test]
fn refresh_token_of_another_client_is_refused_and_left_alone() {
    let fx = fixture();
    let rt = fx.cc(&[]).refresh_token.clone().unwrap();
    let e = fx
        .token(
            Some(&basic(ADMIN, ADMIN_SECRET)),
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .unwrap_err();
    assert_eq!(e.code(), "invalid_grant");
    assert!(fx.refresh(&rt, NOW + 1000).is_ok());
}

#[test]
fn refresh_tokens_expire_and_families_end() {
    let fx = fixture();
    let rt = fx.cc(&[]).refresh_token.clone().unwrap();
    // One refresh token lives 1 h.
    assert_eq!(code(fx.refresh(&rt, NOW + 3_600_000)), "invalid_grant");

    // Rotating every 50 min keeps a family going up to 24 h, not beyond.
    let mut rt = fx.cc(&[]).refresh_token.clone().unwrap();
    let mut now = NOW;
    let mut rotations = 0;
    loop {
        now += 50 * 60_000;
        match fx.refresh(&rt, now) {
            Ok(r) => {
                rt = r.refresh_token.clone().unwrap();
                rotations += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), "invalid_grant");
                break;
            }
        }
    }
    assert_eq!(rotations, 28, "24 h / 50 min");
    assert!(now - NOW > 24 * 3_600_000);

    // A revoked key can no longer refresh (client authentication fails first).
    let rt = fx.cc(&[]).refresh_token.clone().unwrap();
    fx.edit_key(TRADER, |k| k.status = KeyStatus::Revoked);
    assert_eq!(code(fx.refresh(&rt, NOW + 1000)), "invalid_client");
}

#[test]
fn refresh_family_count_per_client_is_bounded() {
    let mut cfg = OAuthConfig::new(ISSUER, AUD);
    cfg.max_families_per_client = 2;
    let fx = fixture_with(cfg);
    let a = fx.cc(&[]).refresh_token.clone().unwrap();
    let b = fx
        .token_at(
            Some(&basic(TRADER, SECRET)),
            &[("grant_type", "client_credentials")],
            NOW + 1,
        )
        .unwrap()
        .refresh_token
        .clone()
        .unwrap();
    let c = fx
        .token_at(
            Some(&basic(TRADER, SECRET)),
            &[("grant_type", "client_credentials")],
            NOW + 2,
        )
        .unwrap()
        .refresh_token
        .clone()
        .unwrap();
    assert_eq!(
        code(fx.refresh(&a, NOW + 10)),
        "invalid_grant",
        "oldest dropped"
    );
    assert!(fx.refresh(&b, NOW + 10).is_ok());
    assert!(fx.refresh(&c, NOW + 10).is_ok());
}

#[test]
fn refresh_tokens_can_be_disabled() {
    let mut cfg = OAuthConfig::new(ISSUER, AUD);
    cfg.refresh_tokens = false;
    let fx = fixture_with(cfg);
    let r = fx.cc(&[]);
    assert!(r.refresh_token.is_none());
    assert!(serde_json::to_value(&r)
        .unwrap()
        .get("refresh_token")
        .is_none());
    assert_eq!(
        code(fx.token(
            Some(&basic(TRADER, SECRET)),
            &[("grant_type", "refresh_token"), ("refresh_token", "pcrt_x")]
        )),
        "unsupported_grant_type"
    );
    let grants = fx.server.metadata()["grant_types_supported"].clone();
    assert_eq!(grants, json!(["client_credentials"]));
}

#[test]
fn grant_type_rules() {
    let fx = fixture();
    let auth = basic(TRADER, SECRET);
    assert_eq!(code(fx.token(Some(&auth), &[])), "invalid_request");
    for g in [
        "password",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ] {
        let e = fx.token(Some(&auth), &[("grant_type", g)]).unwrap_err();
        assert_eq!(e.code(), "unsupported_grant_type", "{g}");
        assert_eq!(e.http_status(), 400);
    }
}

// ---------------------------------------------------------------------------------------------
// Revocation and introspection

#[test]
fn revoked_access_token_fails_validation_and_introspection() {
    let fx = fixture();
    let r = fx.cc(&[]);
    let auth = basic(TRADER, SECRET);
    let caller = fx.client(TRADER, SECRET);
    assert!(
        fx.server
            .introspect_token(&caller, &r.access_token, None, NOW)
            .active
    );
    let claims = fx
        .server
        .validate_access_token(&r.access_token, NOW)
        .unwrap();
    assert_eq!(fx.server.recheck_access_claims(&claims, NOW), Ok(()));
    assert_eq!(
        fx.server
            .recheck_access_claims(&claims, (claims.exp + 11) * 1000),
        Err(TokenError::Expired)
    );
    fx.server
        .revoke(
            Some(&auth),
            &form(&[
                ("token", &r.access_token),
                ("token_type_hint", "access_token"),
            ]),
            Some(ip("192.0.2.1")),
            NOW,
        )
        .unwrap();
    assert_eq!(
        fx.server.validate_access_token(&r.access_token, NOW),
        Err(TokenError::Revoked)
    );
    assert_eq!(
        fx.server.recheck_access_claims(&claims, NOW),
        Err(TokenError::Revoked)
    );
    let i = fx
        .server
        .introspect(
            Some(&auth),
            &form(&[("token", &r.access_token)]),
            Some(ip("192.0.2.1")),
            NOW,
        )
        .unwrap();
    assert_eq!(i, Introspection::inactive());
    assert_eq!(serde_json::to_value(&i).unwrap(), json!({"active": false}));
    // Revoking the access token leaves its refresh token usable (RFC 7009 lets us choose).
    assert!(fx
        .refresh(r.refresh_token.as_ref().unwrap(), NOW + 1000)
        .is_ok());
}

#[test]
fn revoking_a_refresh_token_revokes_its_family() {
    let fx = fixture();
    let r = fx.cc(&[]);
    let rt = r.refresh_token.clone().unwrap();
    let caller = fx.client(TRADER, SECRET);
    fx.server
        .revoke_token(&caller, &rt, Some("refresh_token"), NOW);
    assert_eq!(code(fx.refresh(&rt, NOW + 1000)), "invalid_grant");
    assert_eq!(
        fx.server.validate_access_token(&r.access_token, NOW),
        Err(TokenError::Revoked)
    );
}

#[test]
fn revocation_of_unknown_or_foreign_tokens_is_silent() {
    let fx = fixture();
    let auth = basic(TRADER, SECRET);
    for t in ["pcrt_unknown", "garbage", "a.b.c", "x.y"] {
        assert!(fx
            .server
            .revoke(
                Some(&auth),
                &form(&[("token", t)]),
                Some(ip("192.0.2.1")),
                NOW
            )
            .is_ok());
    }
    // Another client cannot revoke the trader's tokens.
    let r = fx.cc(&[]);
    let admin = fx.client(ADMIN, ADMIN_SECRET);
    fx.server.revoke_token(&admin, &r.access_token, None, NOW);
    fx.server
        .revoke_token(&admin, r.refresh_token.as_ref().unwrap(), None, NOW);
    assert!(fx
        .server
        .validate_access_token(&r.access_token, NOW)
        .is_ok());
    assert!(fx
        .refresh(r.refresh_token.as_ref().unwrap(), NOW + 1)
        .is_ok());
    // The endpoint still wants a token and an authenticated client.
    assert_eq!(
        fx.server
            .revoke(Some(&auth), &form(&[]), Some(ip("192.0.2.1")), NOW)
            .unwrap_err()
            .code(),
        "invalid_request"
    );
    assert_eq!(
        fx.server
            .revoke(None, &form(&[("token", "x")]), Some(ip("192.0.2.1")), NOW)
            .unwrap_err()
            .code(),
        "invalid_client"
    );
}

#[test]
fn introspection_shows_own_tokens_and_admin_sees_all() {
    let fx = fixture();
    let r = fx.cc(&[("instruments", "BTC-PERP")]);
    let me = fx.client(TRADER, SECRET);
    let i = fx.server.introspect_token(&me, &r.access_token, None, NOW);
    assert!(i.active);
    assert_eq!(i.scope.as_deref(), Some("read trade"));
    assert_eq!(i.client_id.as_deref(), Some(TRADER));
    assert_eq!(i.sub.as_deref(), Some("ACC1"));
    assert_eq!(i.token_type, Some("Bearer"));
    assert_eq!(i.exp, Some(NOW_S + 600));
    assert_eq!(i.iat, Some(NOW_S));
    assert_eq!(i.aud.as_deref(), Some(AUD));
    assert_eq!(i.iss.as_deref(), Some(ISSUER));
    assert_eq!(i.instruments.as_deref(), Some(&["BTC-PERP".to_owned()][..]));

    let rt = r.refresh_token.clone().unwrap();
    let i = fx
        .server
        .introspect_token(&me, &rt, Some("refresh_token"), NOW);
    assert!(i.active);
    assert_eq!(i.token_type, Some("refresh_token"));
    assert_eq!(i.exp, Some(NOW_S + 3600));
    assert!(i.jti.is_none());

    // Another ordinary client sees nothing; an admin key sees it.
    fx.keys.write().unwrap().insert(
        "pk_other".into(),
        api_key("pk_other", Some(ADMIN_SECRET), "ACC3", "read"),
    );
    let other = fx.client("pk_other", ADMIN_SECRET);
    assert!(
        !fx.server
            .introspect_token(&other, &r.access_token, None, NOW)
            .active
    );
    assert!(!fx.server.introspect_token(&other, &rt, None, NOW).active);
    let admin = fx.client(ADMIN, ADMIN_SECRET);
    assert!(
        fx.server
            .introspect_token(&admin, &r.access_token, None, NOW)
            .active
    );
    assert!(fx.server.introspect_token(&admin, &rt, None, NOW).active);

    // Expired, garbage, spent: inactive.
    assert!(
        !fx.server
            .introspect_token(&me, &r.access_token, None, NOW + 700_000)
            .active
    );
    assert!(!fx.server.introspect_token(&me, "garbage", None, NOW).active);
    fx.refresh(&rt, NOW + 1).unwrap();
    assert!(!fx.server.introspect_token(&me, &rt, None, NOW + 2).active);
}

// ---------------------------------------------------------------------------------------------
// Validation against forged tokens

#[test]
fn tampered_tokens_are_refused() {
    let fx = fixture();
    let t = fx.cc(&[("scope", "read")]).access_token.clone();
    let parts: Vec<&str> = t.split('.').collect();
    // Claims swapped for more scope, signature kept.
    let mut claims = claims_of(&t);
    claims["scope"] = json!("read trade admin");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert_eq!(
        fx.server.validate_access_token(&forged, NOW),
        Err(TokenError::BadSignature)
    );
    // A flipped signature bit.
    let mut sig = B64URL.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let forged = format!("{}.{}.{}", parts[0], parts[1], B64URL.encode(&sig));
    assert_eq!(
        fx.server.validate_access_token(&forged, NOW),
        Err(TokenError::BadSignature)
    );
    // Structure.
    for bad in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        &format!("{t}.x"),
        &format!("{t}="),
    ] {
        assert!(
            matches!(
                fx.server.validate_access_token(bad, NOW),
                Err(TokenError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
    let long = "a".repeat(9000);
    assert!(matches!(
        fx.server.validate_access_token(&long, NOW),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    let fx = fixture();
    let t = fx.cc(&[]).access_token.clone();
    let claims = claims_of(&t);
    let kid = header_of(&t)["kid"].clone();
    let payload = B64URL.encode(serde_json::to_vec(&claims).unwrap());
    for alg in ["none", "None", "NONE"] {
        let h = B64URL
            .encode(serde_json::to_vec(&json!({"alg": alg, "typ": "at+jwt", "kid": kid})).unwrap());
        assert_eq!(
            fx.server
                .validate_access_token(&format!("{h}.{payload}."), NOW),
            Err(TokenError::UnsupportedAlgorithm),
            "{alg}"
        );
    }
    // HS256 keyed with the (public) verification key: the classic confusion.
    use hmac::{Hmac, Mac};
    let pk = TokenSigningKey::from_seed(&[42; 32])
        .verifying_key()
        .to_bytes();
    let h = B64URL
        .encode(serde_json::to_vec(&json!({"alg": "HS256", "typ": "at+jwt", "kid": kid})).unwrap());
    let input = format!("{h}.{payload}");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&pk).unwrap();
    mac.update(input.as_bytes());
    let forged = format!("{input}.{}", B64URL.encode(mac.finalize().into_bytes()));
    assert_eq!(
        fx.server.validate_access_token(&forged, NOW),
        Err(TokenError::UnsupportedAlgorithm)
    );
    // crit headers are refused.
    let forged = fx.sign_raw(
        &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "crit": ["exp"]}),
        &claims,
    );
    assert!(matches!(
        fx.server.validate_access_token(&forged, NOW),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn wrong_kid_type_issuer_audience_and_times() {
    let fx = fixture();
    let t = fx.cc(&[]).access_token.clone();
    let claims = claims_of(&t);
    let kid = header_of(&t)["kid"].as_str().unwrap().to_owned();
    let hdr = |typ: Value, kid: Value| json!({"alg": "EdDSA", "typ": typ, "kid": kid});

    // Signed by another key (a server with another signing key).
    let other = fixture_with(OAuthConfig::new(ISSUER, AUD));
    other
        .server
        .rotate_signing_key(TokenSigningKey::from_seed(&[1; 32]));
    other.server.retire_key(&kid);
    let foreign = other
        .token(
            Some(&basic(TRADER, SECRET)),
            &[("grant_type", "client_credentials")],
        )
        .unwrap()
        .access_token
        .clone();
    assert_eq!(
        fx.server.validate_access_token(&foreign, NOW),
        Err(TokenError::UnknownKey)
    );
    // Our signature, but a kid we do not have, or none.
    let forged = fx.sign_raw(&hdr(json!("at+jwt"), json!("nope")), &claims);
    assert_eq!(
        fx.server.validate_access_token(&forged, NOW),
        Err(TokenError::UnknownKey)
    );
    let forged = fx.sign_raw(&json!({"alg": "EdDSA", "typ": "at+jwt"}), &claims);
    assert_eq!(
        fx.server.validate_access_token(&forged, NOW),
        Err(TokenError::UnknownKey)
    );
    // typ: a plain JWT (an ID token, an assertion) is not an access token.
    for typ in [json!("JWT"), json!(null)] {
        let forged = fx.sign_raw(&hdr(typ, json!(kid)), &claims);
        assert_eq!(
            fx.server.validate_access_token(&forged, NOW),
            Err(TokenError::WrongType)
        );
    }
    let ok = fx.sign_raw(&hdr(json!("application/at+jwt"), json!(kid)), &claims);
    assert!(fx.server.validate_access_token(&ok, NOW).is_ok());

    let with = |name: &str, v: Value| {
        let mut c = claims.clone();
        c[name] = v;
        fx.sign_raw(&hdr(json!("at+jwt"), json!(kid)), &c)
    };
    assert_eq!(
        fx.server
            .validate_access_token(&with("iss", json!("https://evil.example")), NOW),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        fx.server
            .validate_access_token(&with("aud", json!("https://other.example")), NOW),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(
        fx.server
            .validate_access_token(&with("nbf", json!(NOW_S + 60)), NOW),
        Err(TokenError::NotYetValid)
    );
    assert!(fx
        .server
        .validate_access_token(&with("nbf", json!(NOW_S + 5)), NOW)
        .is_ok());
    assert_eq!(
        fx.server
            .validate_access_token(&with("iat", json!(NOW_S + 60)), NOW),
        Err(TokenError::NotYetValid)
    );
    assert!(matches!(
        fx.server
            .validate_access_token(&with("exp", json!("soon")), NOW),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn revoking_the_key_ends_its_tokens() {
    let fx = fixture();
    let t = fx.cc(&[]).access_token.clone();
    fx.edit_key(TRADER, |k| k.status = KeyStatus::Revoked);
    assert_eq!(
        fx.server.validate_access_token(&t, NOW),
        Err(TokenError::ClientInactive)
    );
    fx.keys.write().unwrap().remove(TRADER);
    assert_eq!(
        fx.server.validate_access_token(&t, NOW),
        Err(TokenError::ClientInactive)
    );
}

#[test]
fn signing_key_rotation_keeps_old_tokens_until_retired() {
    let fx = fixture();
    let old_t = fx.cc(&[]).access_token.clone();
    let old_kid = header_of(&old_t)["kid"].as_str().unwrap().to_owned();
    let new_key = TokenSigningKey::from_seed(&[2; 32]);
    let new_kid = new_key.kid().to_owned();
    fx.server.rotate_signing_key(new_key);
    let new_t = fx.cc(&[]).access_token.clone();
    assert_eq!(header_of(&new_t)["kid"], new_kid.as_str());
    assert!(fx.server.validate_access_token(&old_t, NOW).is_ok());
    assert!(fx.server.validate_access_token(&new_t, NOW).is_ok());
    let kids: Vec<String> = fx.server.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, [new_kid.clone(), old_kid.clone()]);
    assert!(fx.server.retire_key(&old_kid));
    assert!(!fx.server.retire_key(&old_kid));
    assert_eq!(
        fx.server.validate_access_token(&old_t, NOW),
        Err(TokenError::UnknownKey)
    );
    assert!(fx.server.validate_access_token(&new_t, NOW).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Metadata, errors, forms, config, store

#[test]
fn metadata_is_rfc8414() {
    let fx = fixture_with(OAuthConfig::new("https://portcullis.test/", AUD));
    let m = fx.server.metadata();
    assert_eq!(m["issuer"], ISSUER);
    assert_eq!(m["token_endpoint"], TOKEN_URL);
    assert_eq!(
        m["revocation_endpoint"],
        "https://portcullis.test/oauth/revoke"
    );
    assert_eq!(
        m["introspection_endpoint"],
        "https://portcullis.test/oauth/introspect"
    );
    assert_eq!(m["jwks_uri"], "https://portcullis.test/oauth/jwks.json");
    assert_eq!(
        m["grant_types_supported"],
        json!(["client_credentials", "refresh_token"])
    );
    assert_eq!(
        m["token_endpoint_auth_methods_supported"],
        json!([
            "client_secret_basic",
            "private_key_jwt",
            "client_secret_jwt"
        ])
    );
    assert_eq!(
        m["token_endpoint_auth_signing_alg_values_supported"],
        json!(["HS256", "EdDSA"])
    );
    assert_eq!(m["scopes_supported"], json!(["read", "trade", "admin"]));
    assert_eq!(m["response_types_supported"], json!([]));
    assert_eq!(METADATA_PATH, "/.well-known/oauth-authorization-server");
}

#[test]
fn errors_map_to_rfc6749_codes_and_statuses() {
    let cases = [
        (
            OAuthError::InvalidRequest("a".into()),
            "invalid_request",
            400,
        ),
        (OAuthError::InvalidClient("b".into()), "invalid_client", 401),
        (OAuthError::InvalidGrant("c".into()), "invalid_grant", 400),
        (
            OAuthError::UnauthorizedClient("d".into()),
            "unauthorized_client",
            400,
        ),
        (
            OAuthError::UnsupportedGrantType("e".into()),
            "unsupported_grant_type",
            400,
        ),
        (OAuthError::InvalidScope("f".into()), "invalid_scope", 400),
    ];
    for (e, code, status) in cases {
        assert_eq!(e.code(), code);
        assert_eq!(e.http_status(), status);
        assert_eq!(e.www_authenticate().is_some(), status == 401);
        assert_eq!(e.to_json()["error"], code);
        assert!(e.to_string().starts_with(code));
    }
    let e = OAuthError::InvalidRequest("bad \"quote\" \\ é\n".into());
    assert_eq!(e.to_json()["error_description"], "bad 'quote' ' ??");
    assert_eq!(
        TokenError::Expired.www_authenticate(),
        "Bearer error=\"invalid_token\", error_description=\"token expired\""
    );
    assert_eq!(TokenError::Revoked.http_status(), 401);
}

#[test]
fn form_parsing() {
    let f = Form::parse(b"grant_type=client_credentials&scope=read+trade&x=%41%2b&empty=&flag")
        .unwrap();
    assert_eq!(f.get("grant_type"), Some("client_credentials"));
    assert_eq!(f.get("scope"), Some("read trade"));
    assert_eq!(f.get("x"), Some("A+"));
    assert_eq!(f.get("empty"), None);
    assert_eq!(f.get("flag"), None);
    assert_eq!(f.require("missing").unwrap_err().code(), "invalid_request");
    for bad in [&b"a=%4"[..], b"a=%zz", b"a=%ff", b"a=1&a=2"] {
        assert_eq!(
            Form::parse(bad).unwrap_err().code(),
            "invalid_request",
            "{bad:?}"
        );
    }
    assert!(Form::parse(&vec![b'a'; MAX_FORM_LEN + 1]).is_err());
    assert!(Form::from_pairs([("a", "1"), ("a", "1")]).is_err());
    let secret_form = Form::parse(b"client_assertion=SECRETVALUE").unwrap();
    assert!(!format!("{secret_form:?}").contains("SECRETVALUE"));
}

#[test]
fn config_is_validated() {
    let ok = OAuthConfig::new(ISSUER, AUD);
    assert!(ok.validate().is_ok());
    assert!(OAuthConfig::new("http://127.0.0.1:8443", AUD)
        .validate()
        .is_ok());
    for bad in [
        "",
        "portcullis.test",
        "ftp://x",
        "https://",
        "https://x?y=1",
        "https://x#f",
    ] {
        assert!(OAuthConfig::new(bad, AUD).validate().is_err(), "{bad:?}");
    }
    assert!(OAuthConfig::new(ISSUER, "").validate().is_err());
    let mut c = ok.clone();
    c.access_token_ttl_ms = 0;
    assert_eq!(c.validate().unwrap_err().field, "access_token_ttl_ms");
    let mut c = ok.clone();
    c.leeway_ms = -1;
    assert!(c.validate().is_err());
    let mut c = ok.clone();
    c.max_families_per_client = 0;
    assert!(c.validate().is_err());
    let mut c = ok;
    c.grantable_scopes = Scopes::NONE;
    assert!(OAuthServer::new(c, TokenSigningKey::generate(), |_: &str| None).is_err());
}

#[test]
fn vault_is_a_client_store() {
    let dir = tempfile::tempdir().unwrap();
    let ring = crate::MasterKeyring::generate("t").unwrap();
    let mut vault = crate::Vault::create(dir.path().join("v.bin"), &ring).unwrap();
    let nk = vault
        .create_key(
            crate::KeySpec::new("ACC1", Scopes::parse("trade").unwrap()),
            NOW,
        )
        .unwrap();
    let id = nk.key_id.to_string();
    let secret = nk.secret.unwrap().expose().to_owned();
    let store = Arc::new(RwLock::new(vault));
    let server = OAuthServer::new(
        OAuthConfig::new(ISSUER, AUD),
        TokenSigningKey::generate(),
        Arc::clone(&store),
    )
    .unwrap();
    let r = server
        .token(
            Some(&basic(&id, &secret)),
            &form(&[("grant_type", "client_credentials")]),
            None,
            NOW,
        )
        .unwrap();
    assert!(server.validate_access_token(&r.access_token, NOW).is_ok());
    store.write().unwrap().revoke(&id, NOW).unwrap();
    assert_eq!(
        server.validate_access_token(&r.access_token, NOW),
        Err(TokenError::ClientInactive)
    );
}

#[test]
fn server_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<OAuthServer>();
}

#[test]
fn expired_state_is_purged() {
    let fx = fixture();
    let r = fx.cc(&[]);
    let caller = fx.client(TRADER, SECRET);
    fx.server.revoke_token(&caller, &r.access_token, None, NOW);
    let a = hs256_assertion(
        SECRET,
        &assertion_claims(TRADER, json!(TOKEN_URL), NOW_S + 60, "p"),
    );
    fx.token(None, &with_assertion(&a, &[])).unwrap();
    // (families, refresh tokens, revoked ids, assertion ids)
    assert_eq!(fx.server.state_sizes(), (2, 2, 1, 1));
    // Two days on, any call that touches the state sweeps it.
    let later = NOW + 2 * 86_400_000;
    let _ = fx.refresh("pcrt_x", later);
    assert_eq!(fx.server.state_sizes(), (0, 0, 0, 0));
}
