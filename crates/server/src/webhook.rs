//! The security-event webhook (`[monitoring] webhook_url`): each event is POSTed as one JSON
//! object over HTTPS (TLS 1.3, rustls) by one background task.
//!
//! - Producers (the auth layer's audit sink, the socket tasks, the control socket) hand the
//!   event's JSON to a bounded channel with `try_send`: never a wait, never an allocation
//!   beyond the event itself; a full queue drops the event and counts it
//!   (`portcullis_webhook_events_total{result="dropped"}`). The event is in the audit log and
//!   the counters anyway: the webhook is a notification, not the record.
//! - The task sends one event at a time on a fresh connection (events are rare; a kept-alive
//!   connection would have to be health-checked): connect, TLS handshake, HTTP/1.1 POST, read
//!   the status. A 2xx answer is a delivery; anything else (an error, a timeout, a non-2xx
//!   status) is retried up to `webhook_retries` times with back-off doubling from 500 ms up to
//!   30 s, then counted as failed.
//! - The receiver is authenticated by its certificate: the public web PKI roots (webpki-roots,
//!   the Mozilla root program compiled in, so the result does not depend on the host's CA
//!   store), or only the certificates of `webhook_ca_file`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::metrics::{WebhookResult, METRICS};

/// First back-off after a failed attempt; doubled after each further one.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where the webhook posts: an `https://` URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host name or IP address (without brackets).
    pub host: String,
    /// The port (443 unless given).
    pub port: u16,
    /// The `Host` header: the URL's authority.
    pub authority: String,
    /// Path and query, `/` when the URL has none.
    pub path: String,
}

impl Target {
    /// Parses an `https://HOST[:PORT][/PATH][?QUERY]` URL. No user info, no fragment, no other
    /// scheme: security events are never sent in the clear.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some(s) => return Err(format!("the scheme must be https, not {s}")),
            None => return Err("the URL must start with https://".into()),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| "the URL has no host".to_owned())?;
        if authority.as_str().contains('@') {
            return Err("user info in the URL is not supported".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        if ServerName::try_from(host.clone()).is_err() {
            return Err(format!("{host:?} is not a valid host name"));
        }
        Ok(Target {
            port: authority.port_u16().unwrap_or(443),
            authority: authority.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            host,
        })
    }
}

/// Validated webhook settings (`[monitoring]`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Where to post.
    pub target: Target,
    /// Time for one attempt.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// Certificates to trust instead of the web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Events that may wait.
    pub queue: usize,
}

/// The producers' end: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    tx: mpsc::Sender<String>,
}

impl WebhookSender {
    /// Queues one event's JSON; drops and counts it if the queue is full (or the task ended).
    pub fn send(&self, json: String) {
        if self.tx.try_send(json).is_err() {
            METRICS.webhook(WebhookResult::Dropped);
        }
    }
}

/// The TLS client configuration of the webhook: TLS 1.3, the web PKI roots or the certificates
/// of `ca_file`.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>> {
    tls_client_config(ca_file, "webhook_ca_file")
}

/// A TLS 1.3 client configuration trusting the web PKI roots or the certificates of
/// `ca_file` (named `what` in errors): the webhook's and the venue connectors'.
pub fn tls_client_config(
    ca_file: Option<&std::path::Path>,
    what: &str,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read {what} {}", path.display()))?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert
                    .with_context(|| format!("{what} {}: bad PEM certificate", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| anyhow!("{what} {}: {e}", path.display()))?;
                n += 1;
            }
            if n == 0 {
                bail!("{what} {} holds no certificate", path.display());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 client configuration")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Starts the webhook task (it ends with the process); returns the producers' end. Fails
/// only on an unusable `webhook_ca_file`.
pub fn start(settings: &WebhookSettings) -> Result<WebhookSender> {
    let tls = tls_config(settings.ca_file.as_deref())?;
    let (tx, rx) = mpsc::channel(settings.queue.max(1));
    let poster = Poster {
        target: settings.target.clone(),
        timeout: settings.timeout,
        retries: settings.retries,
        tls,
    };
    tokio::spawn(poster.run(rx));
    Ok(WebhookSender { tx })
}

/// The background task's state.
struct Poster {
    target: Target,
    timeout: Duration,
    retries: u32,
    tls: Arc<rustls::ClientConfig>,
}

impl Poster {
    async fn run(self, mut rx: mpsc::Receiver<String>) {
        info!(host = %self.target.host, port = self.target.port, "security event webhook ready");
        while let Some(json) = rx.recv().await {
            self.deliver(json).await;
        }
    }

    async fn deliver(&self, json: String) {
        let body = Bytes::from(json);
        let mut backoff = BACKOFF_START;
        for attempt in 0..=self.retries {
            let outcome = tokio::time::timeout(self.timeout, self.post(body.clone())).await;
            let why = match outcome {
                Ok(Ok(status)) if status.is_success() => {
                    debug!(%status, attempt, "security event delivered to the webhook");
                    METRICS.webhook(WebhookResult::Delivered);
                    return;
                }
                Ok(Ok(status)) => format!("answered {status}"),
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
            };
            if attempt == self.retries {
                warn!(error = %why, attempts = attempt + 1, "security event webhook failed; event dropped (it is in the audit log)");
                break;
            }
            warn!(error = %why, attempt = attempt + 1, retry_in_ms = backoff.as_millis() as u64, "security event webhook failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        METRICS.webhook(WebhookResult::Failed);
    }

    /// One attempt: a new connection, one POST, the answer's status.
    async fn post(&self, body: Bytes) -> Result<hyper::StatusCode> {
        let t = &self.target;
        let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
            .await
            .with_context(|| format!("connect to {}", t.authority))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(t.host.clone()).context("host name")?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP handshake")?;
        // The connection is driven by its own task; it ends when `sender` is dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = hyper::Request::post(t.path.as_str())
            .header(hyper::header::HOST, t.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("portcullis/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .context("request")?;
        let response = sender.send_request(request).await.context("POST")?;
        Ok(response.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_with_a_host_are_targets() {
        let t = Target::parse("https://hooks.example.com/services/x?y=1").unwrap();
        assert_eq!(t.host, "hooks.example.com");
        assert_eq!(t.port, 443);
        assert_eq!(t.authority, "hooks.example.com");
        assert_eq!(t.path, "/services/x?y=1");
        let t = Target::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8443, "/")
        );
        let t = Target::parse("https://[::1]:9000/h").unwrap();
        assert_eq!(
            (t.host.as_str(), t.authority.as_str()),
            ("::1", "[::1]:9000")
        );
        for bad in [
            "http://hooks.example.com/x",
            "hooks.example.com/x",
            "https://user:pw@hooks.example.com/",
            "https:///x",
            "not a url",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "nothing here\n").unwrap();
        assert!(tls_config(Some(&f)).is_err());
        assert!(tls_config(Some(&dir.path().join("missing.pem"))).is_err());
        assert!(tls_config(None).is_ok());
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(1);
        let s = WebhookSender { tx };
        let before = crate::metrics::METRICS.webhook_count(WebhookResult::Dropped);
        s.send("{}".into());
        s.send("{}".into());
        assert!(crate::metrics::METRICS.webhook_count(WebhookResult::Dropped) > before);
    }
}
