//! The admin API and the OAuth 2.0 authorization server, over HTTPS on their own listener
//! (`[admin]` in the config; README.md, "Admin API").
//!
//! - Transport: TLS 1.3 only (rustls), always, whatever the address; optional mutual TLS
//!   (`client_ca`); HTTP/1.1 from hyper; request bodies of at most [`MAX_BODY`] bytes.
//! - JSON in and out; every error of the admin API is an RFC 9457 problem document
//!   ([`problem::Problem`]); the OAuth endpoints answer in the RFC 6749 error format their
//!   clients expect.
//! - Authentication ([`auth`]): a key with the `admin` scope by OAuth bearer token or
//!   HMAC-signed request, plus a TOTP code on every change.
//! - Every call is an audit event (kind `admin`) in the server's audit log, with the
//!   operator's key id, the address, the call and its result ([`handlers`]).
//! - OAuth ([`oauth`]): `/oauth/token`, `/oauth/revoke`, `/oauth/introspect`, the JWKS and
//!   the RFC 8414 metadata. Access tokens are signed with an Ed25519 key sealed under the
//!   master key ([`signing_key`]), so they survive a restart; the grant state (refresh-token
//!   families, revoked token ids) lives in memory: a restart invalidates refresh tokens and
//!   forgets revocations of access tokens, which then live at most their lifetime (10 minutes
//!   by default) unless their key is revoked.

pub mod auth;
mod enroll;
mod handlers;
mod oauth;
pub mod problem;
pub mod signing_key;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderName;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use portcullis_auth::{Authenticator, MasterKeyring, OAuthConfig, OAuthServer};
use portcullis_session::transport::{SessionRegistry, ShutdownSignal};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::at_rest::AuditLog;
use crate::config::{AdminSettings, ConfigError, Settings};
use crate::control::AdminAudit;
use crate::pipeline::Pipeline;
use crate::security::{LoadedKeyring, ServerAuth};

pub use enroll::totp_enroll;
use problem::Problem;

/// Largest request body.
pub const MAX_BODY: usize = 64 * 1024;
/// Time allowed for the TLS handshake and for a request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest life of one connection: then it is closed after its current request (clients
/// reconnect cheaply), so no connection holds a slot forever.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);

/// Everything the handlers use, shared by every connection.
pub struct AdminState {
    /// The server's settings (data dir, accounts, sessions).
    pub settings: Arc<Settings>,
    /// The order pipeline: operator commands go to the core thread through it.
    pub pipeline: Arc<Pipeline>,
    /// The FIX sessions.
    pub registry: Arc<SessionRegistry>,
    /// Keys, lockout and the authentication audit trail, shared with the other listeners.
    pub authenticator: Arc<Authenticator>,
    /// Revocation signal for live sessions, and their logged-on accounts.
    pub server_auth: Arc<ServerAuth>,
    /// The master keyring as loaded (re-read from its file on each use: a rotation may have
    /// changed it).
    pub loaded_keyring: LoadedKeyring,
    /// The vault file.
    pub vault_path: PathBuf,
    /// The audit log of the server.
    pub audit: Arc<AuditLog>,
    /// Where admin calls are audited (kind `admin`).
    pub admin_audit: AdminAudit,
    /// The authorization server.
    pub oauth: Arc<OAuthServer>,
    /// Signed requests already seen (replay protection).
    pub seen_signatures: auth::SeenSignatures,
    /// Each account's recent orders and trades.
    pub history: Option<Arc<crate::history::OrderHistory>>,
}

impl AdminState {
    /// The current master keyring.
    pub fn keyring(&self) -> Result<MasterKeyring, Problem> {
        self.loaded_keyring.reread().map(|k| k.ring).map_err(|e| {
            warn!(error = %format!("{e:#}"), "cannot re-read the master key");
            Problem::internal("the master key cannot be read")
        })
    }
}

/// One request, read whole.
#[derive(Debug)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// The path, percent-encoded as sent.
    pub path: String,
    /// The path and query as sent (what a signed request signs).
    pub target: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The headers.
    pub headers: hyper::HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The peer's address.
    pub peer_ip: IpAddr,
}

impl Call {
    /// A header's value, if present and text.
    pub fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The bound admin listener, before it serves.
pub struct AdminServer {
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    state: Arc<AdminState>,
    max_connections: usize,
}

/// What [`start`] needs from the server.
pub struct Parts {
    /// The validated config.
    pub settings: Arc<Settings>,
    /// The order pipeline.
    pub pipeline: Arc<Pipeline>,
    /// The FIX sessions.
    pub registry: Arc<SessionRegistry>,
    /// The shared authenticator.
    pub authenticator: Arc<Authenticator>,
    /// The FIX connections' authentication (revocation signal).
    pub server_auth: Arc<ServerAuth>,
    /// The master keyring.
    pub keyring: LoadedKeyring,
    /// The server's audit log.
    pub audit: Arc<AuditLog>,
    /// Each account's recent orders and trades (none without a journal or with
    /// `history.orders_per_account = 0`).
    pub history: Option<Arc<crate::history::OrderHistory>>,
}

/// Why the admin API cannot start.
#[derive(Debug)]
pub enum StartError {
    /// A setting (certificate, CA file, issuer) is unusable: exit code 2.
    Config(ConfigError),
    /// Anything else (the port is taken, the signing key cannot be stored): exit code 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Runtime(e)
    }
}

fn invalid(key: &str, message: String) -> StartError {
    StartError::Config(ConfigError::Invalid {
        key: key.to_owned(),
        message,
    })
}

/// Binds the admin listener of `[admin]` and builds the authorization server: the TLS
/// certificate (its own, `[tls]`'s, or the embedded default's dev certificate), the sealed
/// signing key, the issuer (by default `https://<bound address>`).
pub async fn start(admin: &AdminSettings, parts: Parts) -> Result<AdminServer, StartError> {
    let settings = &parts.settings;
    let (cert_file, key_file, key_name) = match (&admin.tls, &settings.tls) {
        (Some(t), _) => (t.cert_file.clone(), t.key_file.clone(), "admin.cert_file"),
        (None, Some(t)) => (t.cert_file.clone(), t.key_file.clone(), "tls"),
        (None, None) => {
            if !settings.embedded {
                return Err(invalid(
                    "admin.cert_file",
                    "the admin API is HTTPS only: set admin.cert_file and admin.key_file".into(),
                ));
            }
            let dev = crate::devcert::ensure(&settings.data_dir.join("tls"))?;
            (dev.cert_file, dev.key_file, "tls")
        }
    };
    let tls = tls_config(&cert_file, &key_file, admin.client_ca.as_deref())
        .map_err(|e| invalid(key_name, format!("{key_name}: {e:#}")))?;
    let listener = TcpListener::bind(admin.bind)
        .await
        .with_context(|| format!("cannot bind the admin listener {}", admin.bind))?;
    let local = listener.local_addr().context("admin listener address")?;
    let issuer = admin
        .issuer
        .clone()
        .unwrap_or_else(|| default_issuer(local));
    let mut config = OAuthConfig::new(&issuer, &issuer);
    config.access_token_ttl_ms =
        i64::try_from(admin.access_token_ttl.as_millis()).unwrap_or(i64::MAX);
    let signing_key = tokio::task::block_in_place(|| {
        signing_key::load_or_create(&signing_key::path(&settings.data_dir), &parts.keyring.ring)
    })?;
    let store = parts.authenticator.clone();
    let oauth = OAuthServer::new(config, signing_key, move |id: &str| store.key(id))
        .map_err(|e| invalid("admin.issuer", format!("admin.issuer: {e}")))?;
    let state = Arc::new(AdminState {
        vault_path: settings.vault_path(),
        settings: parts.settings.clone(),
        pipeline: parts.pipeline,
        registry: parts.registry,
        authenticator: parts.authenticator,
        server_auth: parts.server_auth,
        loaded_keyring: parts.keyring,
        admin_audit: AdminAudit::new(parts.audit.clone()),
        audit: parts.audit,
        oauth: Arc::new(oauth),
        seen_signatures: auth::SeenSignatures::default(),
        history: parts.history,
    });
    Ok(AdminServer {
        listener,
        tls: tokio_rustls::TlsAcceptor::from(tls),
        state,
        max_connections: admin.max_connections,
    })
}

/// `https://<address>`; an unspecified address (`0.0.0.0`, `::`) names `localhost`.
fn default_issuer(addr: SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() => format!("https://localhost:{}", addr.port()),
        IpAddr::V4(ip) => format!("https://{ip}:{}", addr.port()),
        IpAddr::V6(ip) => format!("https://[{ip}]:{}", addr.port()),
    }
}

/// A TLS 1.3-only server config for HTTP/1.1, with client certificates required when
/// `client_ca` is given.
fn tls_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let cert_pem = read(cert_file)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: malformed PEM", cert_file.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no CERTIFICATE block", cert_file.display()));
    }
    let key_pem = read(key_file)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("{}: malformed PEM", key_file.display()))?
        .ok_or_else(|| anyhow!("{}: no PRIVATE KEY block", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let pem = read(ca)?;
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                let c = c.with_context(|| format!("{}: malformed PEM", ca.display()))?;
                roots
                    .add(c)
                    .with_context(|| format!("{}: unusable CA certificate", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(anyhow!("{}: no CERTIFICATE block", ca.display()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .with_context(|| format!("{}: cannot verify clients with it", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("the certificate and key do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl AdminServer {
    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The authorization server (the WebSocket API validates bearer tokens with it).
    pub fn oauth(&self) -> Arc<OAuthServer> {
        self.state.oauth.clone()
    }

    /// Serves until `shutdown`; open connections get a short grace period to finish.
    pub async fn serve(self, mut shutdown: ShutdownSignal) {
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    while tasks.try_join_next().is_some() {}
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            warn!(error = %e, "admin accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        warn!(%peer, "admin connection refused: max_connections reached");
                        continue;
                    };
                    let (tls, state, shutdown) = (self.tls.clone(), self.state.clone(), shutdown.clone());
                    tasks.spawn(async move {
                        serve_connection(socket, peer, tls, state, shutdown).await;
                        drop(permit);
                    });
                }
                _ = shutdown.wait() => break,
            }
        }
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(2), all)
            .await
            .is_err()
        {
            tasks.abort_all();
        }
    }
}

async fn serve_connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: tokio_rustls::TlsAcceptor,
    state: Arc<AdminState>,
    mut shutdown: ShutdownSignal,
) {
    let _ = socket.set_nodelay(true);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(socket)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "admin TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "admin TLS handshake timed out");
            return;
        }
    };
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(state, peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = &mut conn => {
            if let Err(e) = r {
                debug!(%peer, error = %e, "admin connection ended with an error");
            }
        }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
        _ = tokio::time::sleep(MAX_CONNECTION_AGE) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn).await;
        }
    }
}

/// Reads the request whole (at most [`MAX_BODY`] bytes) and answers it.
async fn handle(
    state: Arc<AdminState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let mut call = Call {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        target,
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body: Bytes::new(),
        peer_ip: portcullis_auth::key::canonical_ip(peer.ip()),
    };
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => call.body = b.to_bytes(),
        Err(e) => {
            let problem = if e.is::<http_body_util::LengthLimitError>() {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "Request body too large",
                    format!("request bodies are limited to {MAX_BODY} bytes"),
                )
            } else {
                Problem::bad_request("the request body could not be read")
            };
            handlers::audit_call(&state, &call, None, None, problem.status, &problem.detail);
            return problem.into_response();
        }
    }
    handlers::dispatch(&state, call).await
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_issuer_is_the_bound_address() {
        assert_eq!(
            default_issuer("127.0.0.1:9444".parse().unwrap()),
            "https://127.0.0.1:9444"
        );
        assert_eq!(
            default_issuer("[::1]:9444".parse().unwrap()),
            "https://[::1]:9444"
        );
        assert_eq!(
            default_issuer("0.0.0.0:9444".parse().unwrap()),
            "https://localhost:9444"
        );
    }

    #[test]
    fn tls_config_is_tls13_http11_with_optional_client_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let dev = crate::devcert::ensure(dir.path()).unwrap();
        let c = tls_config(&dev.cert_file, &dev.key_file, None).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let m = tls_config(&dev.cert_file, &dev.key_file, Some(&dev.cert_file)).unwrap();
        assert_eq!(m.alpn_protocols, c.alpn_protocols);
        assert!(tls_config(&dev.cert_file, &dev.key_file, Some(&dev.key_file)).is_err());
        assert!(tls_config(&dev.key_file, &dev.key_file, None).is_err());
    }
}
