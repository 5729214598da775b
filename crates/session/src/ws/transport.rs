//! The WebSocket API's transport edge: tokio-tungstenite over rustls, driving one
//! [`WsSession`] per connection.
//!
//! Per connection:
//!
//! 1. at accept, the listener must be under `max_connections`, the peer's address under its
//!    connection rate (300 attempts per 5 minutes by default, [`RateLimiter::try_connect`]) and
//!    under `max_connections_per_ip` open connections; otherwise the socket is closed at once,
//!    before any TLS work;
//! 2. within `handshake_timeout`: the TLS 1.3 handshake (TLS listeners), then the HTTP upgrade,
//!    accepted only on the listener's path (`/ws-api/v3`; any other path gets 404). The URL may
//!    carry `returnRateLimits=false`; an `Authorization: Bearer` token is verified
//!    ([`WsAuth::bearer_logon`]) and logs the connection on (an invalid one gets 401), and is
//!    also handed to the application. No extension is negotiated: permessage-deflate offers are ignored, so frames
//!    are never compressed;
//! 3. the loop: text frames to the session, its answers out, the application's output
//!    ([`WsApplication::poll_output`]) in, the session's timers, a ping every `ping_interval`
//!    (20 s) and a disconnect when a ping stays unanswered for `pong_timeout` (60 s; a pong
//!    counts only if it echoes the ping's payload), a disconnect of anonymous connections idle
//!    for `idle_timeout`, and of every connection at `max_connection_age` (24 h, as the
//!    dialect's servers do);
//! 4. a peer that does not read is disconnected once `max_outbound_bytes` wait for it: output
//!    is never buffered without bound.
//!
//! On shutdown every connection gets the dialect's `serverShutdown` event and a close frame.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream};
use portcullis_fix::UtcTimestamp;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsProtoError, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, warn};

use super::app::{Principal, WsApplication, WsAuth};
use super::protocol::{WsDisconnect, WsEvent, WsSession, WsSessionConfig};
use super::ratelimit::{RateLimitConfig, RateLimiter};
use crate::transport::{forward_control, AbortOnDrop, AddressLimit, ControlFlags, ShutdownSignal};

/// How long a connection may take, after a shutdown was requested, to flush and close.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long the last frames may take to leave when a connection is closed.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Settings of one WebSocket listener.
#[derive(Clone)]
pub struct WsListenerConfig {
    /// Name used in logs.
    pub name: String,
    /// Address to bind.
    pub bind: SocketAddr,
    /// The only path upgraded to a WebSocket.
    pub path: String,
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Connections served at once from one source address (0: no limit but
    /// `max_connections`); one more from it is closed as soon as it is accepted.
    pub max_connections_per_ip: usize,
    /// Largest accepted message (and frame), bytes.
    pub max_message_size: usize,
    /// Time from accept to a completed upgrade (TLS handshake included).
    pub handshake_timeout: Duration,
    /// A connection that is not logged on and has no user data stream is closed after this
    /// long without a request.
    pub idle_timeout: Duration,
    /// Interval of the server's pings.
    pub ping_interval: Duration,
    /// A ping unanswered this long ends the connection.
    pub pong_timeout: Duration,
    /// Every connection is closed at this age.
    pub max_connection_age: Duration,
    /// Bytes of output that may wait for a slow reader before it is disconnected.
    pub max_outbound_bytes: usize,
    /// The sessions' settings (`return_rate_limits` is set per connection from the URL).
    pub session: WsSessionConfig,
    /// The rate limits shared by the listener's connections.
    pub rate_limits: RateLimitConfig,
}

impl std::fmt::Debug for WsListenerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsListenerConfig")
            .field("name", &self.name)
            .field("bind", &self.bind)
            .field("path", &self.path)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("max_message_size", &self.max_message_size)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("max_connection_age", &self.max_connection_age)
            .field("max_outbound_bytes", &self.max_outbound_bytes)
            .finish_non_exhaustive()
    }
}

impl WsListenerConfig {
    /// A listener on `bind` with the dialect's path, timers and limits.
    pub fn new(name: &str, bind: SocketAddr) -> Self {
        Self {
            name: name.to_owned(),
            bind,
            path: "/ws-api/v3".to_owned(),
            max_connections: 1024,
            max_connections_per_ip: 0,
            max_message_size: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
            max_connection_age: Duration::from_secs(24 * 3600),
            // An exchangeInfo of a few thousand instruments must fit.
            max_outbound_bytes: 4 * 1024 * 1024,
            session: WsSessionConfig::default(),
            rate_limits: RateLimitConfig::default(),
        }
    }

    fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            // Small buffers keep an idle connection's memory low; requests are small.
            .read_buffer_size(8 * 1024)
            // Answers gather in the buffer and leave together at the loop's flush after each
            // batch, in one write instead of one per answer (tungstenite writes out earlier
            // only past this size).
            .write_buffer_size(WRITE_BUFFER_BYTES)
            .max_write_buffer_size(self.max_outbound_bytes + self.max_message_size)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
    }
}

/// Frames buffered before tungstenite writes them out without waiting for the flush: a batch
/// of a few dozen answers, one write.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// Errors of the WebSocket transport.
#[derive(Debug, thiserror::Error)]
pub enum WsTransportError {
    /// A plain-TCP listener was asked to bind to an address that is not loopback.
    #[error(
        "listener {name}: plain TCP (no TLS) is only allowed on a loopback address, not {addr}"
    )]
    PlainTcpNotLoopback {
        /// The listener's name.
        name: String,
        /// The address.
        addr: SocketAddr,
    },
    /// Binding the socket failed.
    #[error("listener {name}: cannot bind {addr}: {source}")]
    Bind {
        /// The listener's name.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What the transport tells the application factory about a new connection.
#[derive(Debug, Clone, Copy)]
pub struct WsConnectionInfo<'a> {
    /// The connection's number in logs.
    pub id: u64,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The listener's name.
    pub listener: &'a str,
    /// The token of an `Authorization: Bearer` header of the upgrade request, if any (OAuth
    /// 2.0 bearer tokens; never logged).
    pub bearer_token: Option<&'a str>,
}

/// Creates each connection's application.
pub trait WsAppFactory: Send + Sync + 'static {
    /// The application of a new connection.
    fn open(&self, conn: &WsConnectionInfo<'_>) -> Box<dyn WsApplication>;

    /// What crossed a connection of the listener, for counting (the default does nothing).
    /// Called on the connection's task: it must not block.
    fn on_traffic(&self, _traffic: WsTraffic) {}
}

/// What [`WsAppFactory::on_traffic`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsTraffic {
    /// A text or binary message was read.
    Received,
    /// A text message (a response or an event) was written.
    Sent,
    /// A request was answered with an error (the answer is also counted as sent).
    Rejected {
        /// The answer's status.
        status: u16,
        /// The dialect's code.
        code: i32,
    },
}

/// What every connection of a listener shares.
pub(crate) struct Shared {
    pub config: WsListenerConfig,
    pub factory: Arc<dyn WsAppFactory>,
    pub auth: Arc<dyn WsAuth>,
    pub limiter: Arc<RateLimiter>,
}

/// A bound WebSocket listener, ready to [`WsListener::serve`].
pub struct WsListener {
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsListener")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Numbers connections in logs.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

fn now_ms() -> i64 {
    UtcTimestamp::now().nanos().div_euclid(1_000_000)
}

impl WsListener {
    /// Binds a listener. `tls`: a TLS 1.3-only configuration
    /// ([`crate::transport::tls13_server_config`]); `None` is plain TCP, refused unless the
    /// address is loopback.
    pub async fn bind(
        config: WsListenerConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        app_factory: Arc<dyn WsAppFactory>,
        auth: Arc<dyn WsAuth>,
    ) -> Result<WsListener, WsTransportError> {
        if tls.is_none() && !config.bind.ip().is_loopback() {
            return Err(WsTransportError::PlainTcpNotLoopback {
                name: config.name.clone(),
                addr: config.bind,
            });
        }
        let tcp =
            TcpListener::bind(config.bind)
                .await
                .map_err(|source| WsTransportError::Bind {
                    name: config.name.clone(),
                    addr: config.bind,
                    source,
                })?;
        let limiter = Arc::new(RateLimiter::new(config.rate_limits.clone()));
        Ok(WsListener {
            tcp,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            shared: Arc::new(Shared {
                config,
                factory: app_factory,
                auth,
                limiter,
            }),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The listener's rate limits (shared by its connections).
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.shared.limiter
    }

    /// Accepts and serves connections until `shutdown` is triggered, then waits (boundedly)
    /// for its connections to close.
    pub async fn serve(self, mut shutdown: ShutdownSignal) {
        let cfg = &self.shared.config;
        let slots = Arc::new(Semaphore::new(cfg.max_connections));
        let per_address = AddressLimit::new(cfg.max_connections_per_ip);
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => {
                    while tasks.try_join_next().is_some() {}
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Usually out of file descriptors: back off instead of spinning.
                            warn!(listener = %cfg.name, error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        warn!(listener = %cfg.name, %peer, "connection refused: listener is at max_connections");
                        continue;
                    };
                    if let Err(why) = self.shared.limiter.try_connect(peer.ip(), now_ms()) {
                        info!(listener = %cfg.name, %peer, reason = %why, "connection refused");
                        continue;
                    }
                    // After the rate check: a refused attempt still counts as an attempt.
                    let Some(address_permit) = per_address.try_acquire(peer.ip()) else {
                        warn!(
                            listener = %cfg.name, %peer,
                            max_connections_per_ip = cfg.max_connections_per_ip,
                            "connection refused: its address is at max_connections_per_ip"
                        );
                        continue;
                    };
                    let conn = Connection {
                        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
                        peer,
                        shared: self.shared.clone(),
                        shutdown: shutdown.clone(),
                        accepted_at: Instant::now(),
                    };
                    let tls = self.tls.clone();
                    tasks.spawn(async move {
                        let _permits = (permit, address_permit);
                        conn.serve(socket, tls).await;
                    });
                }
                _ = shutdown.wait() => break,
            }
        }
        info!(listener = %cfg.name, "shutting down");
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE + 2 * FINAL_FLUSH_TIMEOUT, all)
            .await
            .is_err()
        {
            warn!(listener = %cfg.name, "connections still open after the shutdown grace period; closing them");
        }
        tasks.abort_all();
    }
}

// ---------------------------------------------------------------------------------------------
// One connection

/// What the upgrade request said.
#[derive(Debug, Default)]
struct Upgrade {
    bearer: Option<String>,
    return_rate_limits: Option<bool>,
}

pub(crate) struct Connection {
    pub id: u64,
    pub peer: SocketAddr,
    pub shared: Arc<Shared>,
    pub shutdown: ShutdownSignal,
    pub accepted_at: Instant,
}

/// How the loop ended.
enum End {
    /// Send what is pending, then a close frame with this code and reason.
    Close(CloseCode, &'static str),
    /// The peer sent a close frame: answer it (tungstenite queued the answer) and end.
    PeerClosed,
    /// The connection is gone or must be dropped at once.
    Drop,
}

/// One step of the socket.
enum IoStep {
    Message(Message),
    Closed,
    Error(WsProtoError),
}

impl Connection {
    async fn serve(self, socket: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        // Small messages must leave at once: Nagle's algorithm would add up to 40 ms.
        let _ = socket.set_nodelay(true);
        let deadline = self.accepted_at + self.shared.config.handshake_timeout;
        match tls {
            None => self.serve_stream(socket, deadline).await,
            Some(acceptor) => {
                match tokio::time::timeout_at(deadline, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => self.serve_stream(stream, deadline).await,
                    Ok(Err(e)) => {
                        debug!(conn = self.id, peer = %self.peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => {
                        debug!(conn = self.id, peer = %self.peer, "TLS handshake timed out")
                    }
                }
            }
        }
    }

    /// Upgrades `stream` and runs the session until the connection ends.
    // The handshake callback's error type is tungstenite's HTTP response, large by nature.
    #[allow(clippy::result_large_err)]
    pub(crate) async fn serve_stream<S>(mut self, stream: S, deadline: Instant)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let cfg = &self.shared.config;
        let mut upgrade = Upgrade::default();
        let auth = &self.shared.auth;
        let peer_ip = self.peer.ip();
        let conn_id = self.id;
        // A bearer token is checked during the upgrade: an invalid one gets 401, never a
        // connection.
        let mut bearer_principal: Option<Principal> = None;
        let callback = |req: &Request, resp: Response| {
            let resp = check_upgrade(req, resp, &cfg.path, &mut upgrade)?;
            if let Some(token) = upgrade.bearer.as_deref() {
                match auth.bearer_logon(token, peer_ip, UtcTimestamp::now()) {
                    Ok(p) => bearer_principal = Some(p),
                    Err(e) => {
                        debug!(conn = conn_id, error = %e, "bearer token refused at the upgrade");
                        return Err(refuse_bearer());
                    }
                }
            }
            Ok(resp)
        };
        let handshake = tokio_tungstenite::accept_hdr_async_with_config(
            stream,
            callback,
            Some(cfg.websocket_config()),
        );
        let mut ws = tokio::select! {
            r = tokio::time::timeout_at(deadline, handshake) => match r {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => {
                    debug!(conn = self.id, peer = %self.peer, error = %e, "WebSocket upgrade refused");
                    return;
                }
                Err(_) => {
                    debug!(conn = self.id, peer = %self.peer, "WebSocket upgrade timed out");
                    return;
                }
            },
            _ = self.shutdown.wait() => return,
        };
        let info = WsConnectionInfo {
            id: self.id,
            peer: self.peer,
            listener: &cfg.name,
            bearer_token: upgrade.bearer.as_deref(),
        };
        let mut app = self.shared.factory.open(&info);
        let mut session_config = cfg.session.clone();
        if let Some(r) = upgrade.return_rate_limits {
            session_config.return_rate_limits = r;
        }
        let mut session = WsSession::new(
            session_config,
            self.peer.ip(),
            UtcTimestamp::now(),
            self.shared.auth.clone(),
            self.shared.limiter.clone(),
        );
        if let Some(p) = bearer_principal {
            session.logon_principal(p, UtcTimestamp::now());
        }
        info!(conn = self.id, peer = %self.peer, listener = %cfg.name, "WebSocket connected");
        let end = self.drive(&mut ws, &mut session, &mut *app).await;
        session.on_disconnect(&mut *app);
        match end {
            End::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let finish = async {
                    while let Some(text) = session.poll_transmit() {
                        ws.feed(Message::text(text)).await?;
                    }
                    ws.close(Some(frame)).await
                };
                if let Ok(Err(e)) = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, finish).await {
                    debug!(conn = self.id, error = %e, "final flush failed");
                }
                info!(conn = self.id, peer = %self.peer, reason, "WebSocket closed");
            }
            End::PeerClosed => {
                // tungstenite queued the Close answer when it read the peer's Close; only a
                // flush sends it (`close()` refuses in the ClosedByPeer state).
                let _ = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, ws.flush()).await;
                info!(conn = self.id, peer = %self.peer, "WebSocket closed by the peer");
            }
            End::Drop => info!(conn = self.id, peer = %self.peer, "WebSocket dropped"),
        }
    }

    /// The connection loop: frames, timers, application output and shutdown in; frames out.
    async fn drive<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        session: &mut WsSession,
        app: &mut dyn WsApplication,
    ) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let cfg = self.shared.config.clone();
        let started = Instant::now();
        let age_limit = self.accepted_at + cfg.max_connection_age;
        let mut next_ping = started + cfg.ping_interval;
        let mut ping_counter: u64 = 0;
        // The payload of the oldest unanswered ping and when it went out.
        let mut unanswered: Option<(u64, Instant)> = None;
        let mut last_request = started;
        let mut control: VecDeque<Message> = VecDeque::new();
        let mut needs_flush = false;
        let mut app_output = Vec::new();
        // As in the FIX loop: shutdown and changed credentials reach this loop as one
        // lock-free flag, and one timer is moved rather than a new one made at every step.
        let control_flags = Arc::new(ControlFlags::default());
        let _forwarder = AbortOnDrop(tokio::spawn(forward_control(
            control_flags.clone(),
            self.shutdown.clone(),
            None,
            self.shared.auth.revocations(),
        )));
        let timer = tokio::time::sleep_until(started);
        tokio::pin!(timer);
        let mut armed = None;
        loop {
            // The session's requests first: they may end the connection.
            while let Some(event) = session.poll_event() {
                match event {
                    WsEvent::Disconnect(WsDisconnect::Banned { until_ms }) => {
                        warn!(conn = self.id, peer = %self.peer, until_ms, "address banned for rate-limit abuse");
                        return End::Close(CloseCode::Policy, "banned");
                    }
                    WsEvent::Disconnect(WsDisconnect::Application(reason)) => {
                        info!(conn = self.id, peer = %self.peer, %reason, "application ends the connection");
                        return End::Close(CloseCode::Policy, "closed by the server");
                    }
                    WsEvent::Rejected {
                        method,
                        code,
                        status,
                    } => {
                        self.shared
                            .factory
                            .on_traffic(WsTraffic::Rejected { status, code });
                        debug!(
                            conn = self.id,
                            method = method.unwrap_or("?"),
                            code,
                            "request refused"
                        )
                    }
                    WsEvent::LateCompletion { token } => {
                        debug!(conn = self.id, token = token.get(), "late answer dropped")
                    }
                    other => info!(conn = self.id, event = ?other, "session"),
                }
            }
            if session.outbound_bytes() > cfg.max_outbound_bytes {
                warn!(
                    conn = self.id, peer = %self.peer, unsent = session.outbound_bytes(),
                    "slow reader: unsent output over the limit; connection dropped"
                );
                return End::Drop;
            }
            let now = Instant::now();
            if let Some((_, sent)) = unanswered {
                if now >= sent + cfg.pong_timeout {
                    info!(conn = self.id, peer = %self.peer, "no pong within the pong timeout");
                    return End::Close(CloseCode::Policy, "pong timeout");
                }
            }
            if now >= age_limit {
                return End::Close(CloseCode::Normal, "connection age limit reached");
            }
            let idle_applies =
                session.logged_on_key().is_none() && !session.user_data_stream_active();
            if idle_applies && now >= last_request + cfg.idle_timeout {
                return End::Close(CloseCode::Normal, "idle timeout");
            }
            if now >= next_ping {
                ping_counter += 1;
                control.push_back(Message::Ping(ping_counter.to_be_bytes().to_vec().into()));
                unanswered.get_or_insert((ping_counter, now));
                next_ping = now + cfg.ping_interval;
            }
            let wake = [
                Some(next_ping),
                unanswered.map(|(_, sent)| sent + cfg.pong_timeout),
                Some(age_limit),
                idle_applies.then_some(last_request + cfg.idle_timeout),
                session.poll_timeout().map(|t| instant_at(t, now)),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("next_ping is always set");
            if armed != Some(wake) {
                timer.as_mut().reset(wake);
                armed = Some(wake);
            }
            tokio::select! {
                step = poll_fn(|cx| poll_io(cx, ws, &mut control, session, &mut needs_flush, &*self.shared.factory)) => match step {
                    IoStep::Message(Message::Text(text)) => {
                        self.shared.factory.on_traffic(WsTraffic::Received);
                        last_request = Instant::now();
                        session.handle_text(UtcTimestamp::now(), text.as_str(), app);
                    }
                    IoStep::Message(Message::Binary(_)) => {
                        self.shared.factory.on_traffic(WsTraffic::Received);
                        last_request = Instant::now();
                        session.handle_binary(UtcTimestamp::now());
                    }
                    IoStep::Message(Message::Pong(payload)) => {
                        // Only the echo of our oldest unanswered ping counts (unsolicited
                        // pongs do not keep a connection alive).
                        if unanswered.is_some_and(|(n, _)| payload[..] == n.to_be_bytes()) {
                            unanswered = None;
                        }
                    }
                    // tungstenite answers pings itself; the answer leaves with the next flush.
                    IoStep::Message(Message::Ping(_)) => needs_flush = true,
                    IoStep::Message(Message::Close(_)) => return End::PeerClosed,
                    IoStep::Message(Message::Frame(_)) => {}
                    IoStep::Closed => {
                        debug!(conn = self.id, "peer closed the connection");
                        return End::Drop;
                    }
                    IoStep::Error(WsProtoError::Capacity(e)) => {
                        info!(conn = self.id, peer = %self.peer, error = %e, "message too large");
                        return End::Close(CloseCode::Size, "message too large");
                    }
                    IoStep::Error(WsProtoError::Protocol(e)) => {
                        info!(conn = self.id, peer = %self.peer, error = %e, "WebSocket protocol error");
                        return End::Close(CloseCode::Protocol, "protocol error");
                    }
                    IoStep::Error(WsProtoError::Utf8(_)) => {
                        info!(conn = self.id, peer = %self.peer, "text frame is not UTF-8");
                        return End::Close(CloseCode::Invalid, "invalid UTF-8");
                    }
                    IoStep::Error(e) => {
                        debug!(conn = self.id, error = %e, "connection error");
                        return End::Drop;
                    }
                },
                _ = &mut timer, if armed.is_some() => {
                    armed = None;
                    session.handle_timeout(UtcTimestamp::now(), app);
                }
                _ = poll_fn(|cx| app.poll_output(cx)) => {
                    app.take_output(&mut app_output);
                    let now = UtcTimestamp::now();
                    for output in app_output.drain(..) {
                        session.handle_app_output(now, output);
                    }
                }
                raised = poll_fn(|cx| control_flags.poll_take(cx)) => {
                    if raised & ControlFlags::SHUTDOWN != 0 {
                        // The dialect's notice, then a close frame (sent after it by the caller).
                        session.server_shutdown(UtcTimestamp::now());
                        return End::Close(CloseCode::Away, "server shutting down");
                    }
                    if raised & ControlFlags::CREDENTIALS != 0 {
                        session.check_revocation(UtcTimestamp::now(), app);
                    }
                }
            }
        }
    }
}

/// Checks the upgrade request: the path, the query's `returnRateLimits`, and a bearer token.
// The signature is tungstenite's handshake callback's, error response included.
#[allow(clippy::result_large_err)]
fn check_upgrade(
    req: &Request,
    resp: Response,
    path: &str,
    upgrade: &mut Upgrade,
) -> Result<Response, ErrorResponse> {
    let refuse = |status: StatusCode| {
        let mut r = ErrorResponse::new(Some(status.canonical_reason().unwrap_or("").to_owned()));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != path {
        return Err(refuse(StatusCode::NOT_FOUND));
    }
    for pair in req.uri().query().unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("returnRateLimits", "true")) => upgrade.return_rate_limits = Some(true),
            Some(("returnRateLimits", "false")) => upgrade.return_rate_limits = Some(false),
            Some(("returnRateLimits", _)) => return Err(refuse(StatusCode::BAD_REQUEST)),
            // Other query parameters of the dialect (e.g. timeUnit) are not served.
            _ => {}
        }
    }
    upgrade.bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    Ok(resp)
}

/// The answer to an upgrade whose bearer token is not valid (RFC 6750 §3.1).
fn refuse_bearer() -> ErrorResponse {
    let mut r = ErrorResponse::new(Some("invalid bearer token".to_owned()));
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    if let Ok(v) = "Bearer error=\"invalid_token\"".parse() {
        r.headers_mut().insert("www-authenticate", v);
    }
    r
}

/// Queues what can be written (control frames first, then the session's frames) and returns
/// the next thing read; once nothing is left to read, flushes. Frames are taken from the
/// queues only once the sink has room, so nothing is lost when the caller's `select!` drops
/// this future.
fn poll_io<S>(
    cx: &mut Context<'_>,
    ws: &mut WebSocketStream<S>,
    control: &mut VecDeque<Message>,
    session: &mut WsSession,
    needs_flush: &mut bool,
    factory: &dyn WsAppFactory,
) -> Poll<IoStep>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while !control.is_empty() || session.outbound_bytes() > 0 {
        match Pin::new(&mut *ws).poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(IoStep::Error(e)),
            Poll::Pending => break,
        }
        let message = match control.pop_front() {
            Some(m) => m,
            None => match session.poll_transmit() {
                Some(text) => {
                    factory.on_traffic(WsTraffic::Sent);
                    Message::text(text)
                }
                None => break,
            },
        };
        if let Err(e) = Pin::new(&mut *ws).start_send(message) {
            return Poll::Ready(IoStep::Error(e));
        }
        *needs_flush = true;
    }
    // The next request first: answers queued meanwhile leave together once the input is
    // drained (one write for a burst of requests answered at once, such as a flood of refused
    // ones), or earlier when the write buffer fills.
    match Pin::new(&mut *ws).poll_next(cx) {
        Poll::Ready(Some(Ok(m))) => return Poll::Ready(IoStep::Message(m)),
        Poll::Ready(Some(Err(e))) => return Poll::Ready(IoStep::Error(e)),
        Poll::Ready(None) => return Poll::Ready(IoStep::Closed),
        Poll::Pending => {}
    }
    if *needs_flush {
        match Pin::new(&mut *ws).poll_flush(cx) {
            Poll::Ready(Ok(())) => *needs_flush = false,
            Poll::Ready(Err(e)) => return Poll::Ready(IoStep::Error(e)),
            Poll::Pending => {}
        }
    }
    Poll::Pending
}

/// The tokio instant of wall-clock time `t`, the tokio clock reading `now`.
fn instant_at(t: UtcTimestamp, now: Instant) -> Instant {
    let ahead = t.nanos().saturating_sub(UtcTimestamp::now().nanos()).max(0);
    now + Duration::from_nanos(ahead as u64)
}
