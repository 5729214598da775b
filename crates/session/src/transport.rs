//! The transport edge: tokio listeners, rustls TLS 1.3, and the loop that drives a [`Session`]
//! over one connection.
//!
//! The session layer itself never touches a socket (see [`crate::fix_session`]); this module is
//! the thin loop around it. Per connection it:
//!
//! 1. (TLS listeners) completes a TLS 1.3 handshake — nothing older is offered;
//! 2. reads until [`identify`] names the session the first message asks for, all within the
//!    listener's logon timeout, and closes the connection without a word if that session is not
//!    configured on this listener, is outside its schedule, or is already connected;
//! 3. creates a [`Session`] on the session's store and feeds it bytes ([`Session::handle_input`]),
//!    the clock ([`Session::handle_timeout`] when [`Session::poll_timeout`] is due) and, on server
//!    shutdown, a Logout ([`Session::logout`]); after every step it hands application messages to
//!    the [`Application`], writes [`Session::transmit`] and honours the session's requests to
//!    disconnect.
//!
//! With a [`ConnectionAuth`] ([`Listener::with_auth`]), each connection's session gets the
//! [`SessionAuth`] it builds for the peer's address, and the connection re-checks its credential
//! as soon as the [`ConnectionAuth`] signals a revocation, rather than at its next timer.
//!
//! Limits that keep one connection from hurting the others: a maximum message size, a logon
//! timeout, a maximum number of connections per listener, and a bound on unsent output (a
//! client that does not read its responses is disconnected rather than buffered for).

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use portcullis_fix::{BeginString, SeqNum, UtcTimestamp};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::fix_session::{identify, Identify, Session, SessionAuth, SessionConfig, SessionEvent};
use crate::store::{MessageStore, StoreError};

/// How long a connection may take, after a shutdown was requested, to complete the Logout
/// handshake before it is closed anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long the last bytes (e.g. a Logout) may take to leave when a connection is closed.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes read from a socket at a time. FIX messages are small; a modest buffer keeps the memory
/// of an idle connection low while still taking a burst of messages in one read.
const READ_CHUNK: usize = 8 * 1024;

/// Errors of the transport edge.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A plain-TCP listener was asked to bind to an address that is not loopback.
    #[error("listener {name}: plain TCP (tls = false) is only allowed on a loopback address, not {addr}")]
    PlainTcpNotLoopback {
        /// The listener's name.
        name: String,
        /// The address it was to bind.
        addr: SocketAddr,
    },
    /// Binding the listening socket failed.
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
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadPem {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A certificate or key file holds nothing usable.
    #[error("{path}: {detail}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Two sessions were registered with the same identity.
    #[error("session {0} is declared twice")]
    DuplicateSession(String),
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// A rustls server configuration that speaks TLS 1.3 and nothing else, with the ring provider.
///
/// TLS 1.2 and older are not offered at all, so a client that cannot do 1.3 fails the handshake.
pub fn tls13_server_config(
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// Loads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1) and builds a
/// TLS 1.3-only server configuration from them.
pub fn load_tls13_server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, TransportError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TransportError::ReadPem {
            path: path.to_owned(),
            source,
        })
    };
    let bad = |path: &Path, detail: String| TransportError::BadPem {
        path: path.to_owned(),
        detail,
    };
    let cert_pem = read(cert_file)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert_file, format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(cert_file, "no CERTIFICATE block found".into()));
    }
    let key_pem = read(key_file)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| bad(key_file, format!("malformed PEM: {e}")))?
        .ok_or_else(|| bad(key_file, "no PRIVATE KEY block found".into()))?;
    tls13_server_config(certs, key)
}

// ---------------------------------------------------------------------------------------------
// Listeners
// ---------------------------------------------------------------------------------------------

/// Settings of one listening endpoint.
#[derive(Clone)]
pub struct ListenerConfig {
    /// Name used in logs.
    pub name: String,
    /// Address to bind.
    pub bind: SocketAddr,
    /// TLS 1.3 configuration; `None` means plain TCP, which is only allowed on loopback.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The only BeginString accepted on this listener.
    pub begin_string: BeginString,
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Connections served at once from one source address (0: no limit but
    /// `max_connections`); one more from it is closed as soon as it is accepted, so one host
    /// cannot hold every slot with connections that never log on.
    pub max_connections_per_ip: usize,
    /// Largest accepted message, in bytes.
    pub max_message_size: usize,
    /// Time from accept (TLS handshake included) to a valid Logon.
    pub logon_timeout: Duration,
    /// Bytes of output that may wait for a slow reader before it is disconnected.
    pub max_unsent_bytes: usize,
}

impl std::fmt::Debug for ListenerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerConfig")
            .field("name", &self.name)
            .field("bind", &self.bind)
            .field("tls", &self.tls.is_some())
            .field("begin_string", &self.begin_string)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("max_message_size", &self.max_message_size)
            .field("logon_timeout", &self.logon_timeout)
            .field("max_unsent_bytes", &self.max_unsent_bytes)
            .finish()
    }
}

impl ListenerConfig {
    /// Unsent bytes at which a connection stops taking output from its handler
    /// ([`ConnectionApp::poll_output`]) until the peer has read some: half of
    /// `max_unsent_bytes`, so a handler with much to send (a drop copy catching up) fills the
    /// socket at the peer's pace instead of being dropped as a slow reader.
    pub fn output_pause(&self) -> usize {
        self.max_unsent_bytes / 2
    }

    /// A plain-TCP listener with the default limits (for tests and local tools).
    pub fn plain(name: &str, bind: SocketAddr, begin_string: BeginString) -> Self {
        Self {
            name: name.to_owned(),
            bind,
            tls: None,
            begin_string,
            max_connections: 64,
            max_connections_per_ip: 0,
            max_message_size: 64 * 1024,
            logon_timeout: Duration::from_secs(10),
            max_unsent_bytes: 1024 * 1024,
        }
    }
}

/// Counts a listener's open connections per source address, to refuse one more from an
/// address at its limit. Taken and given back once per connection, never per message.
#[derive(Debug)]
pub(crate) struct AddressLimit {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count (if there is a limit); gives it back when
/// dropped.
#[derive(Debug)]
pub(crate) struct AddressPermit(Option<(Arc<AddressLimit>, IpAddr)>);

impl AddressLimit {
    /// At most `max` connections at once per address; 0 for no limit.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(AddressLimit {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `ip`, or `None` if it has `max` already. Without
    /// a limit, nothing is counted.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<AddressPermit> {
        if self.max == 0 {
            return Some(AddressPermit(None));
        }
        // An IPv4 client over an IPv6 socket is the same host as over IPv4.
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressPermit(Some((self.clone(), ip))))
    }

    #[cfg(test)]
    fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let Some((limit, ip)) = self.0.take() else {
            return;
        };
        let mut open = limit.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// The shutdown request shared by listeners and connections.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Receives the shutdown request. Clone one per task.
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

/// A connected pair: trigger it once to ask every listener and connection to stop.
pub fn shutdown_channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), ShutdownSignal(rx))
}

impl ShutdownTrigger {
    /// Asks everything holding a [`ShutdownSignal`] to stop.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl ShutdownSignal {
    /// True once shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when shutdown is requested (at once if it already was, or if the trigger is
    /// gone: nobody could ask for it any more, and a server without an owner should stop).
    pub async fn wait(&mut self) {
        loop {
            if *self.0.borrow_and_update() {
                return;
            }
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Authentication of the connections of the listeners: the server plugs its key vault in here
/// and gets, per connection, the [`SessionAuth`] that connection's [`Session`] calls.
pub trait ConnectionAuth: Send + Sync + 'static {
    /// The authentication for a connection from `peer`, accepted on `listener`, whose Logon
    /// names `session`. `Ok(None)`: the session does not authenticate its counterparty.
    /// `Err(why)`: the connection is closed without a word (`why` goes to the log).
    fn session_auth(
        &self,
        session: &SessionConfig,
        listener: &ListenerConfig,
        peer: SocketAddr,
    ) -> Result<Option<Box<dyn SessionAuth>>, String>;

    /// A value that changes whenever credentials may have been revoked or may have expired:
    /// every connection then asks its session to re-check its credential at once
    /// ([`Session::handle_timeout`]) instead of at its next timer. `None`: no such signal.
    fn revocations(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

/// A bound listening socket, ready to [`Listener::run`].
pub struct Listener {
    tcp: TcpListener,
    config: Arc<ListenerConfig>,
    auth: Option<Arc<dyn ConnectionAuth>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("tcp", &self.tcp)
            .field("config", &self.config)
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

/// Binds a listener. A plain-TCP listener (no TLS) is refused unless its address is loopback:
/// the config validation says so too, and this check keeps the rule even for callers that skip
/// the config.
pub async fn bind(config: ListenerConfig) -> Result<Listener, TransportError> {
    check_plain_tcp_loopback(&config)?;
    let tcp = TcpListener::bind(config.bind)
        .await
        .map_err(|source| TransportError::Bind {
            name: config.name.clone(),
            addr: config.bind,
            source,
        })?;
    Ok(Listener {
        tcp,
        config: Arc::new(config),
        auth: None,
    })
}

fn check_plain_tcp_loopback(config: &ListenerConfig) -> Result<(), TransportError> {
    if config.tls.is_none() && !config.bind.ip().is_loopback() {
        return Err(TransportError::PlainTcpNotLoopback {
            name: config.name.clone(),
            addr: config.bind,
        });
    }
    Ok(())
}

/// Numbers connections in logs.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

impl Listener {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The listener's settings.
    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    /// Authenticates the sessions of this listener's connections with `auth`.
    pub fn with_auth(mut self, auth: Arc<dyn ConnectionAuth>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Accepts and serves connections until `shutdown` is triggered, then waits (boundedly) for
    /// its connections to log out and close.
    pub async fn run(
        self,
        registry: Arc<SessionRegistry>,
        app: Arc<dyn Application>,
        mut shutdown: ShutdownSignal,
    ) {
        let limit = Arc::new(Semaphore::new(self.config.max_connections));
        let per_address = AddressLimit::new(self.config.max_connections_per_ip);
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => {
                    reap(&mut tasks);
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Usually out of file descriptors: back off instead of spinning.
                            warn!(listener = %self.config.name, error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        warn!(
                            listener = %self.config.name, %peer,
                            max_connections = self.config.max_connections,
                            "connection refused: listener is at max_connections"
                        );
                        drop(socket);
                        continue;
                    };
                    let Some(address_permit) = per_address.try_acquire(peer.ip()) else {
                        warn!(
                            listener = %self.config.name, %peer,
                            max_connections_per_ip = self.config.max_connections_per_ip,
                            "connection refused: its address is at max_connections_per_ip"
                        );
                        drop(socket);
                        continue;
                    };
                    let conn = Connection {
                        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
                        peer,
                        listener: self.config.clone(),
                        registry: registry.clone(),
                        app: app.clone(),
                        auth: self.auth.clone(),
                        shutdown: shutdown.clone(),
                        accepted_at: Instant::now(),
                    };
                    tasks.spawn(async move {
                        conn.serve(socket).await;
                        drop((permit, address_permit));
                    });
                }
                _ = shutdown.wait() => break,
            }
        }
        drop(self.tcp);
        // Every connection saw the same signal and bounds its own Logout handshake by
        // SHUTDOWN_GRACE (plus the final flush); this outer bound only guards against a bug.
        let all_done = async {
            while let Some(r) = tasks.join_next().await {
                log_task_end(r);
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE + 2 * FINAL_FLUSH_TIMEOUT, all_done)
            .await
            .is_err()
        {
            warn!(listener = %self.config.name, "connections still open after the shutdown grace period; closing them");
        }
        tasks.abort_all();
    }
}

fn reap(tasks: &mut JoinSet<()>) {
    while let Some(r) = tasks.try_join_next() {
        log_task_end(r);
    }
}

fn log_task_end(r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r {
        if e.is_panic() {
            error!(error = %e, "connection task panicked; its connection was closed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions known to the server
// ---------------------------------------------------------------------------------------------

/// A daily window in which logons are accepted, in a fixed offset from UTC.
///
/// `start` and `end` are seconds since local midnight; `end` is included. An `end` earlier than
/// `start` means the window spans midnight (e.g. 22:00 to 06:00). `start == end` is a whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// First second of the window, local time, seconds since midnight (0..86400).
    pub start: u32,
    /// Last second of the window, local time, seconds since midnight (0..86400).
    pub end: u32,
    /// Local time minus UTC, in seconds (e.g. +7200 for "+02:00").
    pub utc_offset_secs: i32,
}

impl Schedule {
    /// True if `now` falls inside the window.
    pub fn contains(&self, now: UtcTimestamp) -> bool {
        let secs = now.nanos().div_euclid(1_000_000_000) + i64::from(self.utc_offset_secs);
        let sod = secs.rem_euclid(86_400) as u32;
        match self.start.cmp(&self.end) {
            std::cmp::Ordering::Less => self.start <= sod && sod <= self.end,
            std::cmp::Ordering::Greater => sod >= self.start || sod <= self.end,
            std::cmp::Ordering::Equal => true,
        }
    }

    /// The first instant after `now` that is outside the window (the second after `end`), or
    /// `None` for a window open all day. Meant for a `now` inside the window: a session logged
    /// on inside it is logged out then.
    pub fn next_close(&self, now: UtcTimestamp) -> Option<UtcTimestamp> {
        if self.start == self.end {
            return None;
        }
        let secs = now.nanos().div_euclid(1_000_000_000);
        let sod = (secs + i64::from(self.utc_offset_secs)).rem_euclid(86_400);
        let close = (i64::from(self.end) + 1).rem_euclid(86_400);
        let mut ahead = (close - sod).rem_euclid(86_400);
        if ahead == 0 {
            ahead = 86_400;
        }
        Some(UtcTimestamp::from_nanos((secs + ahead) * 1_000_000_000))
    }
}

/// Opens a session's message store the first time the session connects.
pub type StoreOpener =
    Box<dyn Fn(UtcTimestamp) -> Result<Box<dyn MessageStore>, StoreError> + Send + Sync>;

/// A message store shared between the registry and the session currently using it, so that the
/// store lives as long as the server (sequence numbers carry over between connections even for
/// an in-memory store) and can be synced at shutdown. Only one connection uses a session at a
/// time, so the lock is never contended.
#[derive(Clone)]
pub struct SharedStore(Arc<Mutex<Box<dyn MessageStore>>>);

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedStore")
    }
}

impl SharedStore {
    /// Wraps a store.
    pub fn new(store: Box<dyn MessageStore>) -> Self {
        Self(Arc::new(Mutex::new(store)))
    }

    fn lock(&self) -> MutexGuard<'_, Box<dyn MessageStore>> {
        // A panic while holding the lock left the store as it was after its last complete call
        // (stores write atomically); carrying on is safer than refusing every later call.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A call that writes: off the worker when the store says it may wait for the disk.
    fn write<R>(&self, f: impl FnOnce(&mut dyn MessageStore) -> R) -> R {
        let mut store = self.lock();
        if store.may_wait_for_disk() {
            off_the_worker(|| f(&mut **store))
        } else {
            f(&mut **store)
        }
    }
}

/// Runs `f`, which may wait for the disk (an fsync takes 0.1 to tens of ms), where blocking is
/// allowed: on a worker of a multi-threaded tokio runtime, `block_in_place` first hands the
/// worker's other tasks (other connections, a core loop sharing the runtime) to another
/// thread, so they go on meanwhile; anywhere else `f` runs as is.
fn off_the_worker<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl MessageStore for SharedStore {
    fn next_sender_seq(&self) -> SeqNum {
        self.lock().next_sender_seq()
    }
    fn next_target_seq(&self) -> SeqNum {
        self.lock().next_target_seq()
    }
    fn set_next_sender_seq(&mut self, seq: SeqNum) -> Result<(), StoreError> {
        self.write(|s| s.set_next_sender_seq(seq))
    }
    fn set_next_target_seq(&mut self, seq: SeqNum) -> Result<(), StoreError> {
        self.write(|s| s.set_next_target_seq(seq))
    }
    fn save_outbound(&mut self, seq: SeqNum, message: &[u8]) -> Result<(), StoreError> {
        self.write(|s| s.save_outbound(seq, message))
    }
    fn save_inbound(&mut self, seq: SeqNum, message: &[u8]) -> Result<(), StoreError> {
        self.write(|s| s.save_inbound(seq, message))
    }
    fn outbound_range(
        &mut self,
        begin: SeqNum,
        end: SeqNum,
        out: &mut Vec<(SeqNum, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        // A resend reads (and decrypts) from the disk, megabytes for a long range.
        let mut store = self.lock();
        off_the_worker(|| store.outbound_range(begin, end, out))
    }
    /// Writes a new generation and fsyncs it: always off the worker.
    fn reset(&mut self, now: UtcTimestamp) -> Result<(), StoreError> {
        let mut store = self.lock();
        off_the_worker(|| store.reset(now))
    }
    fn creation_time(&self) -> UtcTimestamp {
        self.lock().creation_time()
    }
    /// An fsync: always off the worker.
    fn sync(&mut self) -> Result<(), StoreError> {
        let mut store = self.lock();
        off_the_worker(|| store.sync())
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        self.write(|s| s.commit())
    }
    fn has_uncommitted(&self) -> bool {
        self.lock().has_uncommitted()
    }
    fn may_wait_for_disk(&self) -> bool {
        self.lock().may_wait_for_disk()
    }
}

/// One configured session: its settings, its store, and whether a connection holds it.
pub struct SessionEntry {
    config: SessionConfig,
    schedule: Option<Schedule>,
    opener: StoreOpener,
    store: Mutex<Option<SharedStore>>,
    connected: AtomicBool,
    /// The connection holding the session, for operators ([`SessionEntry::status`]).
    live: Mutex<Option<LiveConnection>>,
    /// Bumped by [`SessionEntry::request_logout`]; the connection holding the session watches
    /// it (a counter, not a one-shot flag, so a request made while nobody is connected never
    /// reaches a later connection).
    logout: watch::Sender<u64>,
    /// The Text(58) of the last logout request.
    logout_text: Mutex<String>,
}

/// The connection holding a session.
#[derive(Debug, Clone, Copy)]
struct LiveConnection {
    peer: SocketAddr,
    since: UtcTimestamp,
    logged_on: bool,
}

/// A session as operators see it ([`SessionEntry::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    /// `FIX.4.4:OURS->THEIRS`.
    pub name: String,
    /// A connection holds the session.
    pub connected: bool,
    /// The connection completed its Logon (and has not logged out).
    pub logged_on: bool,
    /// The connection's peer address.
    pub peer: Option<SocketAddr>,
    /// When the connection claimed the session.
    pub connected_since: Option<UtcTimestamp>,
    /// MsgSeqNum(34) of our next message (`None` before the store is opened).
    pub next_sender_seq: Option<SeqNum>,
    /// MsgSeqNum(34) expected of the counterparty's next message.
    pub next_target_seq: Option<SeqNum>,
}

impl SessionStatus {
    /// `logged_on`, `connected` (a connection that has not completed its Logon) or
    /// `disconnected`, as operators' listings show it.
    pub fn state(&self) -> &'static str {
        if self.logged_on {
            "logged_on"
        } else if self.connected {
            "connected"
        } else {
            "disconnected"
        }
    }
}

impl std::fmt::Debug for SessionEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEntry")
            .field("config", &self.config)
            .field("schedule", &self.schedule)
            .field("connected", &self.connected.load(Ordering::Relaxed))
            .finish()
    }
}

impl SessionEntry {
    /// The session's settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The session's logon window, if it has one.
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// Short name for logs: `FIX.4.4:OURS->THEIRS`.
    pub fn name(&self) -> String {
        session_name(&self.config)
    }

    /// Marks the session as connected; `None` if another connection already holds it.
    pub fn try_claim(self: &Arc<Self>) -> Option<SessionClaim> {
        self.connected
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| SessionClaim(self.clone()))
    }

    /// True while a connection holds the session.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The session's state for operators: connection, peer, logon, sequence numbers.
    pub fn status(&self) -> SessionStatus {
        let live = *self.live.lock().unwrap_or_else(|p| p.into_inner());
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner()).clone();
        SessionStatus {
            name: self.name(),
            connected: live.is_some(),
            logged_on: live.is_some_and(|l| l.logged_on),
            peer: live.map(|l| l.peer),
            connected_since: live.map(|l| l.since),
            next_sender_seq: store.as_ref().map(|s| s.next_sender_seq()),
            next_target_seq: store.as_ref().map(|s| s.next_target_seq()),
        }
    }

    /// Asks the connection holding the session, if any, to log out now with Text(58) `text`
    /// (a Logout, then the connection closes when the counterparty answers or after the
    /// shutdown grace period). Returns false if no connection holds the session.
    pub fn request_logout(&self, text: &str) -> bool {
        if !self.is_connected() {
            return false;
        }
        *self.logout_text.lock().unwrap_or_else(|p| p.into_inner()) = text.to_owned();
        self.logout.send_modify(|n| *n = n.wrapping_add(1));
        true
    }

    fn set_live(&self, live: Option<LiveConnection>) {
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = live;
    }

    fn note_logged_on(&self, logged_on: bool) {
        if let Some(l) = self.live.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            l.logged_on = logged_on;
        }
    }

    /// The session's store, opened on first use and kept open afterwards.
    pub fn store(&self, now: UtcTimestamp) -> Result<SharedStore, StoreError> {
        let mut slot = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        // Opening verifies the last segment and may recover or rewrite: off the worker.
        let store = SharedStore::new(off_the_worker(|| (self.opener)(now))?);
        *slot = Some(store.clone());
        Ok(store)
    }

    /// Syncs the store if it was ever opened.
    pub fn sync_store(&self) -> Result<(), StoreError> {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match store {
            Some(mut s) => s.sync(),
            None => Ok(()),
        }
    }
}

/// An operator's change of a disconnected session's sequence numbers
/// ([`SessionEntry::set_sequence`]), what QuickFIX/J's `setNextSenderMsgSeqNum`,
/// `setNextTargetMsgSeqNum` and `reset` do: after a counterparty restarted its numbering
/// without ResetSeqNumFlag, its Logons are answered "MsgSeqNum too low" until the expected
/// number is set back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SequenceChange {
    /// Start a new sequence first: both numbers back to 1, the stored messages dropped (a
    /// later ResendRequest for older numbers is answered with a gap fill).
    pub reset: bool,
    /// MsgSeqNum(34) of our next message. Only forward: a lower number would reuse numbers of
    /// messages already sent, and a resend would then give the counterparty other messages
    /// under numbers it has processed.
    pub next_sender_seq: Option<SeqNum>,
    /// MsgSeqNum(34) expected of the counterparty's next message (any number from 1).
    pub next_target_seq: Option<SeqNum>,
}

/// Largest sequence number an operator may set: 2^53 − 1, so that it travels exactly as a
/// JSON number.
pub const MAX_OPERATOR_SEQ: SeqNum = (1 << 53) - 1;

/// Why [`SessionEntry::set_sequence`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    /// A connection holds the session; its numbers change only between connections.
    #[error("session {0} has a connection: log it out first")]
    Connected(String),
    /// The change asks for nothing.
    #[error("nothing to change: give reset, next_sender_seq or next_target_seq")]
    Empty,
    /// A number is 0 or above [`MAX_OPERATOR_SEQ`].
    #[error("{field} must be between 1 and {MAX_OPERATOR_SEQ}, not {value}")]
    OutOfRange {
        /// `next_sender_seq` or `next_target_seq`.
        field: &'static str,
        /// The number given.
        value: SeqNum,
    },
    /// The next outbound number would go back (see [`SequenceChange::next_sender_seq`]).
    #[error(
        "next_sender_seq {requested} is below the next number to send, {current}: numbers \
         already sent would be reused; reset starts a new sequence at 1"
    )]
    SenderBackwards {
        /// The number asked for.
        requested: SeqNum,
        /// The next number the session would send.
        current: SeqNum,
    },
    /// The store failed; it may have taken part of the change (it is the one it reports).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SequenceChange {
    fn validate(&self) -> Result<(), SequenceError> {
        if !self.reset && self.next_sender_seq.is_none() && self.next_target_seq.is_none() {
            return Err(SequenceError::Empty);
        }
        for (field, value) in [
            ("next_sender_seq", self.next_sender_seq),
            ("next_target_seq", self.next_target_seq),
        ] {
            if let Some(value) = value.filter(|v| !(1..=MAX_OPERATOR_SEQ).contains(v)) {
                return Err(SequenceError::OutOfRange { field, value });
            }
        }
        Ok(())
    }
}

impl SessionEntry {
    /// Applies an operator's [`SequenceChange`] to the session's store and makes it durable.
    /// Refused while a connection holds the session (the session is claimed meanwhile, so no
    /// Logon can take it halfway). Returns the next sender and target numbers after the change.
    /// May wait for the disk: call it where blocking is allowed.
    pub fn set_sequence(
        self: &Arc<Self>,
        change: SequenceChange,
        now: UtcTimestamp,
    ) -> Result<(SeqNum, SeqNum), SequenceError> {
        change.validate()?;
        let Some(_claim) = self.try_claim() else {
            return Err(SequenceError::Connected(self.name()));
        };
        let mut store = self.store(now)?;
        let current = if change.reset {
            1
        } else {
            store.next_sender_seq()
        };
        if let Some(requested) = change.next_sender_seq.filter(|&n| n < current) {
            return Err(SequenceError::SenderBackwards { requested, current });
        }
        if change.reset {
            store.reset(now)?;
        }
        if let Some(n) = change.next_sender_seq {
            store.set_next_sender_seq(n)?;
        }
        if let Some(n) = change.next_target_seq {
            store.set_next_target_seq(n)?;
        }
        store.commit()?;
        store.sync()?;
        Ok((store.next_sender_seq(), store.next_target_seq()))
    }
}

/// Proof that a connection holds a session; releases it when dropped (also on panic).
#[derive(Debug)]
pub struct SessionClaim(Arc<SessionEntry>);

impl Drop for SessionClaim {
    fn drop(&mut self) {
        self.0.set_live(None);
        self.0.connected.store(false, Ordering::Release);
    }
}

fn session_name(c: &SessionConfig) -> String {
    format!(
        "{}:{}->{}",
        c.begin_string, c.sender_comp_id, c.target_comp_id
    )
}

/// The sessions the server accepts, by (BeginString, our CompID, their CompID).
#[derive(Debug, Default)]
pub struct SessionRegistry {
    sessions: HashMap<(BeginString, String, String), Arc<SessionEntry>>,
}

impl SessionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a session.
    pub fn insert(
        &mut self,
        config: SessionConfig,
        schedule: Option<Schedule>,
        opener: StoreOpener,
    ) -> Result<(), TransportError> {
        let key = (
            config.begin_string,
            config.sender_comp_id.clone(),
            config.target_comp_id.clone(),
        );
        if self.sessions.contains_key(&key) {
            return Err(TransportError::DuplicateSession(session_name(&config)));
        }
        let entry = SessionEntry {
            config,
            schedule,
            opener,
            store: Mutex::new(None),
            connected: AtomicBool::new(false),
            live: Mutex::new(None),
            logout: watch::channel(0).0,
            logout_text: Mutex::new(String::new()),
        };
        self.sessions.insert(key, Arc::new(entry));
        Ok(())
    }

    /// The session a counterparty means when it sends `begin_string`, its own SenderCompID
    /// (`their_sender`, our target) and its TargetCompID (`their_target`, our CompID).
    pub fn lookup_incoming(
        &self,
        begin_string: BeginString,
        their_sender: &str,
        their_target: &str,
    ) -> Option<Arc<SessionEntry>> {
        self.sessions
            .get(&(
                begin_string,
                their_target.to_owned(),
                their_sender.to_owned(),
            ))
            .cloned()
    }

    /// All sessions.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<SessionEntry>> {
        self.sessions.values()
    }

    /// The session operators call `name` (`FIX.4.4:OURS->THEIRS`, [`SessionEntry::name`]).
    pub fn by_name(&self, name: &str) -> Option<Arc<SessionEntry>> {
        self.sessions.values().find(|e| e.name() == name).cloned()
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True if no session is configured.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Opens every session's store now rather than at its first logon, so that a damaged store
    /// or a data dir locked by another process is reported at start-up. Returns the failures.
    pub fn open_all(&self, now: UtcTimestamp) -> Vec<(String, StoreError)> {
        self.sessions
            .values()
            .filter_map(|e| e.store(now).err().map(|err| (e.name(), err)))
            .collect()
    }

    /// Syncs every opened store; returns the failures.
    pub fn sync_all(&self) -> Vec<(String, StoreError)> {
        self.sessions
            .values()
            .filter_map(|e| e.sync_store().err().map(|err| (e.name(), err)))
            .collect()
    }
}

/// Receives the application messages of every session.
pub trait Application: Send + Sync + 'static {
    /// Handles one validated, in-sequence application message of `session`. Replies go out
    /// through [`Session::send_application`]. Not called for a connection that has its own
    /// [`ConnectionApp`] (see [`Application::open`]).
    fn on_message(&self, session: &mut Session, now: UtcTimestamp, seq: SeqNum, message: &[u8]);

    /// A handler of its own for one connection, created once the connection has claimed its
    /// session (only one connection per session at a time). `None` (the default): the
    /// connection's messages go to [`Application::on_message`].
    fn open(&self, _conn: &ConnectionInfo<'_>) -> Option<Box<dyn ConnectionApp>> {
        None
    }

    /// The session sent a session-level Reject(3) with this SessionRejectReason(373) (for
    /// counting bad input; the default does nothing).
    fn on_session_reject(&self, _reason: Option<portcullis_fix::SessionRejectReason>) {}
}

/// What the transport tells an [`Application`] about a connection it opens a handler for.
#[derive(Debug)]
pub struct ConnectionInfo<'a> {
    /// The connection's number in logs.
    pub id: u64,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The listener that accepted it.
    pub listener: &'a ListenerConfig,
    /// The session it claimed.
    pub session: &'a SessionConfig,
}

/// One connection's application handler: it gets the session's application messages, and it
/// may have output of its own that arrives from elsewhere (e.g. execution reports from another
/// thread), for which it wakes the connection's task.
///
/// The connection's task calls [`ConnectionApp::write_output`] after every step and whenever
/// [`ConnectionApp::poll_output`] is ready; the handler is dropped when the connection ends.
pub trait ConnectionApp: Send {
    /// Handles one validated, in-sequence application message.
    fn on_message(&mut self, session: &mut Session, now: UtcTimestamp, seq: SeqNum, message: &[u8]);

    /// Ready when there is output for [`ConnectionApp::write_output`]; otherwise arranges for
    /// the task to be woken when there is.
    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<()>;

    /// Sends the pending output through the session. `Err(text)`: the connection must end — the
    /// session logs out with `text` and the connection is closed without waiting for the
    /// counterparty's Logout.
    fn write_output(&mut self, session: &mut Session, now: UtcTimestamp) -> Result<(), String>;

    /// The session has logged on (its credentials, if any, are checked).
    fn on_logon(&mut self, _session: &mut Session, _now: UtcTimestamp) {}

    /// Both sequences started again at 1 while logged on: the MsgSeqNums of messages handed
    /// to [`ConnectionApp::on_message`] before are of the old sequence, so
    /// [`ConnectionApp::unanswered`] no longer names them.
    fn on_sequence_reset(&mut self) {}

    /// The MsgSeqNum of the oldest message given to [`ConnectionApp::on_message`] whose
    /// answers have not all gone through [`ConnectionApp::write_output`] yet (`None`: every
    /// message is answered, the default for handlers that answer in `on_message`). The stored
    /// expected MsgSeqNum stays at it (see [`Session::set_unanswered`]).
    fn unanswered(&self) -> Option<SeqNum> {
        None
    }

    /// The connection has ended. The transport awaits this (until the server shuts down) before
    /// it releases the session, so whatever the handler must tell others about the end happens
    /// before the session's next connection can begin.
    fn close(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

// ---------------------------------------------------------------------------------------------
// One connection
// ---------------------------------------------------------------------------------------------

struct Connection {
    id: u64,
    peer: SocketAddr,
    listener: Arc<ListenerConfig>,
    registry: Arc<SessionRegistry>,
    app: Arc<dyn Application>,
    auth: Option<Arc<dyn ConnectionAuth>>,
    shutdown: ShutdownSignal,
    accepted_at: Instant,
}

/// Why the first bytes of a connection led nowhere.
enum Refusal {
    Closed,
    Timeout,
    Shutdown,
    Io(io::Error),
    Invalid(String),
    TooLarge,
}

impl Connection {
    async fn serve(mut self, socket: TcpStream) {
        // Small messages must leave at once: Nagle's algorithm would add up to 40 ms.
        if let Err(e) = socket.set_nodelay(true) {
            debug!(conn = self.id, error = %e, "set_nodelay failed");
        }
        let deadline = self.accepted_at + self.listener.logon_timeout;
        debug!(conn = self.id, peer = %self.peer, listener = %self.listener.name, "accepted");
        match self.listener.tls.clone() {
            None => self.serve_stream(socket, deadline).await,
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                let handshake = tokio::time::timeout_at(deadline, acceptor.accept(socket));
                let stream = tokio::select! {
                    r = handshake => match r {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            info!(conn = self.id, peer = %self.peer, listener = %self.listener.name, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            info!(conn = self.id, peer = %self.peer, listener = %self.listener.name, "TLS handshake not completed within the logon timeout");
                            return;
                        }
                    },
                    _ = self.shutdown.wait() => return,
                };
                self.serve_stream(stream, deadline).await;
            }
        }
    }

    async fn serve_stream<S>(&mut self, mut stream: S, deadline: Instant)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let max = self.listener.max_message_size;
        let mut buf = Vec::new();
        let found = match self.read_identity(&mut stream, &mut buf, deadline).await {
            Ok(found) => found,
            Err(refusal) => {
                let why = match refusal {
                    Refusal::Closed => "peer closed before sending a Logon".to_owned(),
                    Refusal::Timeout => "no Logon within the logon timeout".to_owned(),
                    Refusal::Shutdown => "server shutting down".to_owned(),
                    Refusal::Io(e) => format!("read error: {e}"),
                    Refusal::Invalid(why) => format!("first message invalid: {why}"),
                    Refusal::TooLarge => format!("first message larger than {max} bytes"),
                };
                info!(conn = self.id, peer = %self.peer, listener = %self.listener.name, "connection closed: {why}");
                return;
            }
        };
        let (begin_string, their_sender, their_target) = found;
        let now = UtcTimestamp::now();
        let refuse = |why: &str| {
            warn!(
                conn = self.id, peer = %self.peer, listener = %self.listener.name,
                begin_string = %begin_string, sender_comp_id = %their_sender, target_comp_id = %their_target,
                "connection closed: {why}"
            );
        };
        if begin_string != self.listener.begin_string {
            refuse(&format!(
                "BeginString {begin_string} is not served by this listener (it serves {})",
                self.listener.begin_string
            ));
            return;
        }
        let Some(entry) = self
            .registry
            .lookup_incoming(begin_string, &their_sender, &their_target)
        else {
            refuse("no such session configured");
            return;
        };
        if let Some(schedule) = entry.schedule() {
            if !schedule.contains(now) {
                refuse("logon outside the session's schedule");
                return;
            }
        }
        let session_auth = match &self.auth {
            None => None,
            Some(auth) => match auth.session_auth(entry.config(), &self.listener, self.peer) {
                Ok(a) => a,
                Err(why) => {
                    refuse(&why);
                    return;
                }
            },
        };
        let Some(claim) = entry.try_claim() else {
            refuse("session already connected");
            return;
        };
        entry.set_live(Some(LiveConnection {
            peer: self.peer,
            since: now,
            logged_on: false,
        }));
        let store = match entry.store(now) {
            Ok(s) => s,
            Err(e) => {
                error!(conn = self.id, session = %entry.name(), error = %e, "cannot open the session's message store; connection closed");
                return;
            }
        };
        let mut config = entry.config().clone();
        config.max_message_size = max;
        // The logon timeout counts from accept, so the session gets what is left of it.
        config.logon_timeout = deadline.saturating_duration_since(Instant::now());
        let mut session = Session::new(config, Box::new(store.clone()), now);
        if let Some(a) = session_auth {
            session = session.with_auth(a);
        }
        let name = entry.name();
        info!(conn = self.id, peer = %self.peer, listener = %self.listener.name, session = %name, "session connected");
        let mut conn_app = self.app.open(&ConnectionInfo {
            id: self.id,
            peer: self.peer,
            listener: &self.listener,
            session: entry.config(),
        });
        session.handle_input(now, &buf);
        drop(buf);

        let schedule_close = entry
            .schedule()
            .and_then(|s| s.next_close(now))
            .map(|t| instant_at(t, UtcTimestamp::now()));
        let end = self
            .drive(
                &mut stream,
                &mut session,
                conn_app.as_deref_mut(),
                &entry,
                schedule_close,
            )
            .await;
        // The session is finished with its store before the connection closes, and released:
        // a client that sees the connection end may reconnect at once. The handler closes
        // first, while the connection still holds its session.
        if let Some(app) = conn_app.as_deref_mut() {
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                _ = app.close() => {}
                _ = shutdown.wait() => {}
            }
        }
        drop(conn_app);
        let now = UtcTimestamp::now();
        session.on_disconnect(now);
        drain_log_only(&mut session, self.id, &name);
        let mut store = store;
        if let Err(e) = store.sync() {
            error!(conn = self.id, session = %name, error = %e, "message store sync failed");
        }
        drop(claim);
        match end {
            End::Disconnect => {
                // Borrow the bytes, not the session: the future must be Send.
                let pending = session.transmit();
                let flush = async {
                    stream.write_all(pending).await?;
                    stream.flush().await?;
                    stream.shutdown().await
                };
                if let Err(e) = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, flush)
                    .await
                    .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
                {
                    debug!(conn = self.id, session = %name, error = %e, "final flush failed");
                }
            }
            End::Drop => {}
        }
        info!(conn = self.id, peer = %self.peer, session = %name, "session disconnected");
    }

    /// Reads until the first message names its session.
    async fn read_identity<S>(
        &mut self,
        stream: &mut S,
        buf: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<(BeginString, String, String), Refusal>
    where
        S: AsyncRead + Unpin,
    {
        let max = self.listener.max_message_size;
        let mut chunk = [0u8; 1024];
        loop {
            if !buf.is_empty() {
                match identify(buf, max) {
                    Identify::NeedMore => {}
                    Identify::Invalid(why) => return Err(Refusal::Invalid(why)),
                    Identify::Found {
                        begin_string,
                        sender_comp_id,
                        target_comp_id,
                    } => return Ok((begin_string, sender_comp_id, target_comp_id)),
                }
            }
            // identify() reports oversized messages itself; this bound holds even if it did not.
            if buf.len() > max {
                return Err(Refusal::TooLarge);
            }
            let read = tokio::time::timeout_at(deadline, read_some(stream, &mut chunk));
            tokio::select! {
                r = read => match r {
                    Err(_) => return Err(Refusal::Timeout),
                    Ok(Ok(0)) => return Err(Refusal::Closed),
                    Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                    Ok(Err(e)) => return Err(Refusal::Io(e)),
                },
                _ = self.shutdown.wait() => return Err(Refusal::Shutdown),
            }
        }
    }

    /// The session loop: socket input, timers and shutdown in, bytes and events out.
    /// `schedule_close` is when the session's daily window ends: it is logged out then.
    async fn drive<S>(
        &mut self,
        stream: &mut S,
        session: &mut Session,
        mut conn_app: Option<&mut (dyn ConnectionApp + 'static)>,
        entry: &SessionEntry,
        mut schedule_close: Option<Instant>,
    ) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = entry.name();
        let name = name.as_str();
        let mut rbuf = vec![0u8; READ_CHUNK];
        let mut flush_pending = false;
        let mut logout_deadline: Option<Instant> = None;
        // Requests made before this connection are not for it.
        let mut logout_requests = entry.logout.subscribe();
        logout_requests.mark_unchanged();
        let control = Arc::new(ControlFlags::default());
        let _forwarder = AbortOnDrop(tokio::spawn(forward_control(
            control.clone(),
            self.shutdown.clone(),
            Some(logout_requests),
            self.auth.as_ref().and_then(|a| a.revocations()),
        )));
        // One timer for the connection's life, moved as its wake time moves: moving it later
        // (the usual case: traffic pushes the next heartbeat back) takes no lock in the driver.
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        // What the armed timer was computed from: the session's deadline and the connection's.
        let mut armed_session: Option<UtcTimestamp> = None;
        let mut armed_deadlines: [Option<Instant>; 2] = [None, None];
        let mut noted_logged_on = None;
        // The clock read of the step that just handled input, reused by the next step.
        let mut read_at: Option<UtcTimestamp> = None;
        loop {
            let now = read_at.take().unwrap_or_else(UtcTimestamp::now);
            if handle_events(
                session,
                &*self.app,
                conn_app.as_deref_mut(),
                self.id,
                name,
                now,
            ) {
                return End::Disconnect;
            }
            let logged_on = session.state() == crate::fix_session::SessionState::Active;
            if noted_logged_on != Some(logged_on) {
                entry.note_logged_on(logged_on);
                noted_logged_on = Some(logged_on);
            }
            if let Some(app) = conn_app.as_deref_mut() {
                if let Err(text) = app.write_output(session, now) {
                    warn!(conn = self.id, peer = %self.peer, session = %name, reason = %text, "application ends the session");
                    session.logout(UtcTimestamp::now(), &text);
                    return End::Disconnect;
                }
            }
            // What the handlers sent is stored (one commit for all of it) before it can leave,
            // with the numbers of the messages answered so far.
            if let Some(app) = conn_app.as_deref() {
                session.set_unanswered(app.unanswered());
            }
            session.commit_store();
            let unsent = session.transmit().len();
            if unsent > self.listener.max_unsent_bytes {
                warn!(
                    conn = self.id, peer = %self.peer, session = %name, unsent,
                    max_unsent_bytes = self.listener.max_unsent_bytes,
                    "slow reader: unsent output over the limit; connection dropped"
                );
                return End::Drop;
            }
            let session_timer = session.poll_timeout();
            let deadlines = [logout_deadline, schedule_close];
            if timer_stale(
                armed,
                armed_session,
                &armed_deadlines,
                session_timer,
                &deadlines,
            ) {
                let wake = next_wake(session_timer, &deadlines, now);
                if let Some(at) = wake {
                    timer.as_mut().reset(at);
                }
                armed = wake;
                armed_session = session_timer;
                armed_deadlines = deadlines;
            }
            tokio::select! {
                step = io_step(stream, &mut rbuf, session.transmit(), flush_pending) => match step {
                    IoStep::Read(0) => {
                        info!(conn = self.id, session = %name, "peer closed the connection");
                        return End::Drop;
                    }
                    IoStep::Read(n) => {
                        let at = UtcTimestamp::now();
                        session.handle_input(at, &rbuf[..n]);
                        read_at = Some(at);
                    }
                    IoStep::Wrote(n) => {
                        session.consume_transmit(n);
                        flush_pending = true;
                    }
                    IoStep::Flushed => flush_pending = false,
                    IoStep::Error(e) => {
                        info!(conn = self.id, session = %name, error = %e, "connection error");
                        return End::Drop;
                    }
                },
                _ = &mut timer, if armed.is_some() => {
                    armed = None;
                    if logout_deadline.is_some_and(|d| Instant::now() >= d) {
                        info!(conn = self.id, session = %name, "no Logout reply within the shutdown grace period");
                        return End::Disconnect;
                    }
                    if schedule_close.is_some_and(|d| Instant::now() >= d) {
                        info!(conn = self.id, session = %name, "end of the session's schedule: logging out");
                        // The session's own logout timeout bounds the handshake.
                        session.logout(UtcTimestamp::now(), "end of the session's schedule");
                        schedule_close = None;
                    }
                    session.handle_timeout(UtcTimestamp::now());
                }
                _ = output_ready(conn_app.as_deref_mut()), if session.unsent_len() < self.listener.output_pause() => {
                    // Written at the top of the loop.
                }
                raised = poll_fn(|cx| control.poll_take(cx)) => {
                    // Once logging out (shutdown or an operator's request), the handshake runs
                    // its course: a second request changes nothing.
                    if raised & ControlFlags::SHUTDOWN != 0 && logout_deadline.is_none() {
                        session.logout(UtcTimestamp::now(), "server shutting down");
                        logout_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                    }
                    if raised & ControlFlags::LOGOUT != 0 && logout_deadline.is_none() {
                        let text = entry.logout_text.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        warn!(conn = self.id, peer = %self.peer, session = %name, reason = %text, "logout requested by an operator");
                        session.logout(UtcTimestamp::now(), &text);
                        // As at shutdown: the counterparty's Logout, or the grace period.
                        logout_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                    }
                    if raised & ControlFlags::CREDENTIALS != 0 {
                        // Credentials were revoked or expired somewhere: the session checks
                        // its own now (and logs out if it is one of them).
                        debug!(conn = self.id, session = %name, "credentials changed: re-checking");
                        session.handle_timeout(UtcTimestamp::now());
                    }
                }
            }
        }
    }
}

/// How the session loop ended.
enum End {
    /// The session asked to disconnect: send what is pending, then close.
    Disconnect,
    /// The connection is gone or must be dropped at once.
    Drop,
}

/// Drains the session's events: application messages to the connection's handler if it has
/// one, else to `app`; the rest to the log. Returns true if the session asked for the
/// connection to be closed.
fn handle_events(
    session: &mut Session,
    app: &dyn Application,
    mut conn_app: Option<&mut (dyn ConnectionApp + 'static)>,
    conn: u64,
    name: &str,
    now: UtcTimestamp,
) -> bool {
    let mut disconnect = false;
    while let Some(event) = session.poll_event() {
        match event {
            SessionEvent::Application { seq, message } => {
                match conn_app.as_deref_mut() {
                    Some(h) => h.on_message(session, now, seq, &message),
                    None => app.on_message(session, now, seq, &message),
                }
                session.recycle_message(message);
            }
            SessionEvent::Disconnect(reason) => {
                info!(conn, session = %name, ?reason, "session requests disconnect");
                disconnect = true;
            }
            event @ SessionEvent::LoggedOn { .. } => {
                log_event(conn, name, event);
                if let Some(h) = conn_app.as_deref_mut() {
                    h.on_logon(session, now);
                }
            }
            SessionEvent::SequenceReset => {
                log_event(conn, name, SessionEvent::SequenceReset);
                if let Some(h) = conn_app.as_deref_mut() {
                    h.on_sequence_reset();
                }
            }
            other => {
                if let SessionEvent::RejectSent { reason, .. } = &other {
                    app.on_session_reject(*reason);
                }
                log_event(conn, name, other)
            }
        }
    }
    disconnect
}

/// Drains events after the connection has ended: nothing can be sent any more.
fn drain_log_only(session: &mut Session, conn: u64, name: &str) {
    while let Some(event) = session.poll_event() {
        match event {
            SessionEvent::Application { seq, .. } => {
                warn!(conn, session = %name, seq, "application message after disconnect not processed");
            }
            SessionEvent::Disconnect(_) => {}
            other => log_event(conn, name, other),
        }
    }
}

fn log_event(conn: u64, name: &str, event: SessionEvent) {
    match event {
        SessionEvent::LoggedOn {
            heartbeat_secs,
            reset,
        } => info!(conn, session = %name, heartbeat_secs, reset, "logged on"),
        SessionEvent::LoggedOut => info!(conn, session = %name, "logged out"),
        SessionEvent::RejectSent {
            ref_seq,
            reason,
            text,
        } => {
            info!(conn, session = %name, ref_seq, reason = ?reason.map(|r| r.code()), %text, "reject sent")
        }
        SessionEvent::Garbled { reason } => {
            warn!(conn, session = %name, %reason, "garbled message ignored")
        }
        SessionEvent::Application { seq, .. } => {
            debug!(conn, session = %name, seq, "application message")
        }
        SessionEvent::SequenceReset => {
            info!(conn, session = %name, "both sequences start again at 1 (in-session reset)")
        }
        SessionEvent::Disconnect(reason) => info!(conn, session = %name, ?reason, "disconnect"),
    }
}

/// The tokio instant of wall-clock time `t`, given that the wall clock reads `now`.
fn instant_at(t: UtcTimestamp, now: UtcTimestamp) -> Instant {
    let ahead = t.nanos().saturating_sub(now.nanos()).max(0);
    Instant::now() + Duration::from_nanos(ahead as u64)
}

/// The earliest of the session's timer and the connection's own deadlines, the wall clock
/// reading `now`.
fn next_wake(
    session_timer: Option<UtcTimestamp>,
    deadlines: &[Option<Instant>],
    now: UtcTimestamp,
) -> Option<Instant> {
    session_timer
        .map(|t| instant_at(t, now))
        .into_iter()
        .chain(deadlines.iter().flatten().copied())
        .min()
}

/// True if the timer armed for `armed` (from `armed_session` and `armed_deadlines`) must be
/// armed again for `session_timer` and `deadlines`. A session deadline that only moved later
/// (traffic pushes the next heartbeat back at every message) keeps the timer: it fires early
/// once, finds nothing due, and is armed again then, which saves two clock reads per step.
fn timer_stale(
    armed: Option<Instant>,
    armed_session: Option<UtcTimestamp>,
    armed_deadlines: &[Option<Instant>; 2],
    session_timer: Option<UtcTimestamp>,
    deadlines: &[Option<Instant>; 2],
) -> bool {
    if armed.is_none() {
        return session_timer.is_some() || deadlines.iter().any(Option::is_some);
    }
    deadlines != armed_deadlines
        || session_timer.is_some_and(|t| armed_session.is_none_or(|at| t < at))
}

/// Resolves when the connection's handler has output; never without a handler.
async fn output_ready(app: Option<&mut (dyn ConnectionApp + 'static)>) {
    match app {
        Some(app) => poll_fn(|cx| app.poll_output(cx)).await,
        None => std::future::pending().await,
    }
}

/// Resolves with true when the watched value changes, false once its sender is gone; never if
/// there is nothing to watch.
pub(crate) async fn changed_opt(rx: &mut Option<watch::Receiver<u64>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// What a connection's loop must react to besides its socket and its handler: shutdown, an
/// operator's logout request, changed credentials. A helper task ([`forward_control`]) waits
/// on their watch channels and raises a flag here, so every step of the loop polls one
/// lock-free waker rather than three watch receivers (each poll of which locks a mutex).
#[derive(Default)]
pub(crate) struct ControlFlags {
    raised: std::sync::atomic::AtomicU8,
    waker: futures_util::task::AtomicWaker,
}

impl ControlFlags {
    pub(crate) const SHUTDOWN: u8 = 1;
    pub(crate) const LOGOUT: u8 = 2;
    pub(crate) const CREDENTIALS: u8 = 4;

    fn raise(&self, flag: u8) {
        self.raised.fetch_or(flag, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Ready with the flags raised since the last time, which it clears.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<u8> {
        if self.raised.load(Ordering::Acquire) == 0 {
            self.waker.register(cx.waker());
            // A flag raised between the look and the registration woke nobody: look again.
            if self.raised.load(Ordering::Acquire) == 0 {
                return Poll::Pending;
            }
        }
        Poll::Ready(self.raised.swap(0, Ordering::AcqRel))
    }
}

/// Raises `flags` for as long as the connection lives (aborted with it): shutdown once, each
/// operator's logout request and each change of credentials until their senders are gone.
pub(crate) async fn forward_control(
    flags: Arc<ControlFlags>,
    mut shutdown: ShutdownSignal,
    mut logout_requests: Option<watch::Receiver<u64>>,
    mut credentials: Option<watch::Receiver<u64>>,
) {
    let mut shutdown_pending = true;
    loop {
        tokio::select! {
            _ = shutdown.wait(), if shutdown_pending => {
                shutdown_pending = false;
                flags.raise(ControlFlags::SHUTDOWN);
            }
            changed = changed_opt(&mut logout_requests) => {
                if changed {
                    flags.raise(ControlFlags::LOGOUT);
                } else {
                    logout_requests = None;
                }
            }
            changed = changed_opt(&mut credentials) => {
                if changed {
                    flags.raise(ControlFlags::CREDENTIALS);
                } else {
                    credentials = None;
                }
            }
        }
    }
}

/// Aborts the task when dropped: a helper that must not outlive its connection.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn read_some<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// What one [`io_step`] did.
#[derive(Debug)]
enum IoStep {
    Read(usize),
    Wrote(usize),
    Flushed,
    Error(io::Error),
}

/// Makes progress on the socket in both directions with one borrow of it: writes pending output
/// (or flushes what an earlier write left inside the TLS layer) and reads input, whichever is
/// ready first. Output is tried first so that a peer flooding us still gets its responses, and
/// the unsent-bytes bound is checked between steps.
fn io_step<'a, S>(
    stream: &'a mut S,
    rbuf: &'a mut [u8],
    tx: &'a [u8],
    flush_pending: bool,
) -> impl Future<Output = IoStep> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    poll_fn(move |cx: &mut Context<'_>| {
        if !tx.is_empty() {
            match Pin::new(&mut *stream).poll_write(cx, tx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(IoStep::Error(io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => return Poll::Ready(IoStep::Wrote(n)),
                Poll::Ready(Err(e)) => return Poll::Ready(IoStep::Error(e)),
                Poll::Pending => {}
            }
        } else if flush_pending {
            match Pin::new(&mut *stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(IoStep::Flushed),
                Poll::Ready(Err(e)) => return Poll::Ready(IoStep::Error(e)),
                Poll::Pending => {}
            }
        }
        let mut rb = ReadBuf::new(rbuf);
        match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(IoStep::Read(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(IoStep::Error(e)),
            Poll::Pending => Poll::Pending,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use tokio::io::AsyncReadExt;

    /// A store whose commits, resets and syncs wait (as for an fsync) until another task of
    /// the runtime signals them.
    struct DiskBoundStore {
        inner: MemoryStore,
        wait_for_disk: bool,
        entered: Arc<AtomicBool>,
        disk: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
    }

    impl DiskBoundStore {
        /// Waits for the other task's signal; false if it never came.
        fn disk(&self) -> bool {
            self.entered.store(true, Ordering::Release);
            let rx = self.disk.lock().unwrap();
            rx.recv_timeout(Duration::from_secs(10)).is_ok()
        }
    }

    impl MessageStore for DiskBoundStore {
        fn next_sender_seq(&self) -> SeqNum {
            self.inner.next_sender_seq()
        }
        fn next_target_seq(&self) -> SeqNum {
            self.inner.next_target_seq()
        }
        fn set_next_sender_seq(&mut self, seq: SeqNum) -> Result<(), StoreError> {
            self.inner.set_next_sender_seq(seq)
        }
        fn set_next_target_seq(&mut self, seq: SeqNum) -> Result<(), StoreError> {
            self.inner.set_next_target_seq(seq)
        }
        fn save_outbound(&mut self, seq: SeqNum, message: &[u8]) -> Result<(), StoreError> {
            self.inner.save_outbound(seq, message)
        }
        fn outbound_range(
            &mut self,
            begin: SeqNum,
            end: SeqNum,
            out: &mut Vec<(SeqNum, Vec<u8>)>,
        ) -> Result<(), StoreError> {
            assert!(self.disk(), "resend: no other task ran while it waited");
            self.inner.outbound_range(begin, end, out)
        }
        fn reset(&mut self, now: UtcTimestamp) -> Result<(), StoreError> {
            assert!(self.disk(), "reset: no other task ran while it waited");
            self.inner.reset(now)
        }
        fn creation_time(&self) -> UtcTimestamp {
            self.inner.creation_time()
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            assert!(self.disk(), "sync: no other task ran while it waited");
            Ok(())
        }
        fn commit(&mut self) -> Result<(), StoreError> {
            assert!(self.disk(), "commit: no other task ran while it waited");
            Ok(())
        }
        fn may_wait_for_disk(&self) -> bool {
            self.wait_for_disk
        }
    }

    /// Runs `call` on a store in a task of a one-worker runtime (as the server's with a shared
    /// core) and, in a second task, signals the "disk" once the call waits for it: the call
    /// only completes if the worker's other tasks went on meanwhile.
    fn other_tasks_run_during(
        wait_for_disk: bool,
        call: impl FnOnce(&mut SharedStore) -> Result<(), StoreError> + Send + 'static,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let entered = Arc::new(AtomicBool::new(false));
        let mut store = SharedStore::new(Box::new(DiskBoundStore {
            inner: MemoryStore::new(ts(9, 0, 0)),
            wait_for_disk,
            entered: entered.clone(),
            disk: Arc::new(Mutex::new(rx)),
        }));
        rt.block_on(async move {
            let caller = tokio::spawn(async move { call(&mut store) });
            let disk = tokio::spawn(async move {
                while !entered.load(Ordering::Acquire) {
                    tokio::task::yield_now().await;
                }
                tx.send(()).unwrap();
            });
            caller.await.expect("the store call").expect("store ok");
            disk.await.unwrap();
        });
    }

    #[test]
    fn store_calls_that_wait_for_the_disk_let_the_workers_other_tasks_run() {
        other_tasks_run_during(true, |s| s.commit());
        other_tasks_run_during(true, |s| s.set_next_target_seq(2).and_then(|()| s.commit()));
        // Resets, syncs and resends' reads always may wait, whatever the store says.
        other_tasks_run_during(false, |s| s.reset(ts(9, 0, 1)));
        other_tasks_run_during(false, |s| s.sync());
        other_tasks_run_during(false, |s| s.outbound_range(1, 9, &mut Vec::new()));
    }

    fn ts(h: i64, m: i64, s: i64) -> UtcTimestamp {
        // 2024-01-02 at h:m:s UTC
        let day = 19_724i64;
        UtcTimestamp::from_nanos((day * 86_400 + h * 3600 + m * 60 + s) * 1_000_000_000)
    }

    #[test]
    fn schedule_same_day_window_includes_its_ends() {
        let s = Schedule {
            start: 8 * 3600,
            end: 17 * 3600,
            utc_offset_secs: 0,
        };
        assert!(!s.contains(ts(7, 59, 59)));
        assert!(s.contains(ts(8, 0, 0)));
        assert!(s.contains(ts(12, 0, 0)));
        assert!(s.contains(ts(17, 0, 0)));
        assert!(!s.contains(ts(17, 0, 1)));
    }

    #[test]
    fn schedule_window_across_midnight() {
        let s = Schedule {
            start: 22 * 3600,
            end: 6 * 3600,
            utc_offset_secs: 0,
        };
        assert!(s.contains(ts(23, 0, 0)));
        assert!(s.contains(ts(0, 30, 0)));
        assert!(s.contains(ts(6, 0, 0)));
        assert!(!s.contains(ts(12, 0, 0)));
    }

    #[test]
    fn schedule_applies_the_utc_offset() {
        // 08:00-17:00 at +02:00 is 06:00-15:00 UTC.
        let s = Schedule {
            start: 8 * 3600,
            end: 17 * 3600,
            utc_offset_secs: 7200,
        };
        assert!(s.contains(ts(6, 0, 0)));
        assert!(!s.contains(ts(5, 59, 59)));
        assert!(!s.contains(ts(16, 0, 0)));
        // Negative offsets wrap below midnight correctly.
        let s = Schedule {
            start: 20 * 3600,
            end: 23 * 3600,
            utc_offset_secs: -5 * 3600,
        };
        assert!(s.contains(ts(1, 0, 0)));
        assert!(!s.contains(ts(5, 0, 0)));
    }

    #[test]
    fn schedule_next_close_is_the_second_after_the_end() {
        let s = Schedule {
            start: 8 * 3600,
            end: 17 * 3600,
            utc_offset_secs: 0,
        };
        let noonish = UtcTimestamp::from_nanos(ts(12, 0, 0).nanos() + 500_000_000);
        assert_eq!(s.next_close(noonish), Some(ts(17, 0, 1)));
        assert!(!s.contains(ts(17, 0, 1)));
        // Across midnight: closes the next morning.
        let s = Schedule {
            start: 22 * 3600,
            end: 6 * 3600,
            utc_offset_secs: 0,
        };
        let next_morning = UtcTimestamp::from_nanos(ts(6, 0, 1).nanos() + 86_400_000_000_000);
        assert_eq!(s.next_close(ts(23, 0, 0)), Some(next_morning));
        assert_eq!(s.next_close(ts(1, 0, 0)), Some(ts(6, 0, 1)));
        // With an offset: 17:00 at +02:00 is 15:00 UTC.
        let s = Schedule {
            start: 8 * 3600,
            end: 17 * 3600,
            utc_offset_secs: 7200,
        };
        assert_eq!(s.next_close(ts(10, 0, 0)), Some(ts(15, 0, 1)));
        // Open all day: never closes.
        let s = Schedule {
            start: 0,
            end: 0,
            utc_offset_secs: 0,
        };
        assert_eq!(s.next_close(ts(10, 0, 0)), None);
    }

    #[test]
    fn schedule_with_equal_ends_is_always_open() {
        let s = Schedule {
            start: 0,
            end: 0,
            utc_offset_secs: 0,
        };
        assert!(s.contains(ts(13, 0, 0)));
    }

    fn memory_opener() -> StoreOpener {
        Box::new(|now| Ok(Box::new(MemoryStore::new(now)) as Box<dyn MessageStore>))
    }

    fn registry_with(begin: BeginString, ours: &str, theirs: &str) -> SessionRegistry {
        let mut r = SessionRegistry::new();
        r.insert(
            SessionConfig::new(begin, ours, theirs),
            None,
            memory_opener(),
        )
        .unwrap();
        r
    }

    #[test]
    fn registry_looks_up_by_the_counterpartys_view() {
        let r = registry_with(BeginString::Fix44, "ISLD", "TW");
        // They send 49=TW 56=ISLD.
        assert!(r
            .lookup_incoming(BeginString::Fix44, "TW", "ISLD")
            .is_some());
        assert!(r
            .lookup_incoming(BeginString::Fix44, "ISLD", "TW")
            .is_none());
        assert!(r
            .lookup_incoming(BeginString::Fix42, "TW", "ISLD")
            .is_none());
    }

    #[test]
    fn registry_refuses_duplicate_sessions() {
        let mut r = registry_with(BeginString::Fix44, "ISLD", "TW");
        let err = r
            .insert(
                SessionConfig::new(BeginString::Fix44, "ISLD", "TW"),
                None,
                memory_opener(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("FIX.4.4:ISLD->TW"), "{err}");
    }

    #[test]
    fn an_operator_sets_a_disconnected_sessions_sequence_numbers() {
        let r = registry_with(BeginString::Fix44, "ISLD", "TW");
        let e = r.lookup_incoming(BeginString::Fix44, "TW", "ISLD").unwrap();
        let now = ts(9, 0, 0);
        let mut store = e.store(now).unwrap();
        store.save_outbound(1, b"first").unwrap();
        store.save_outbound(2, b"second").unwrap();
        store.set_next_target_seq(7).unwrap();
        let set = |c: SequenceChange| e.set_sequence(c, now);

        // The counterparty started again at 1: expect 1 from it; our numbers go on.
        let target = SequenceChange {
            next_target_seq: Some(1),
            ..Default::default()
        };
        assert_eq!(set(target).unwrap(), (3, 1));
        // Forward is allowed, backward is not, and a refused change changes nothing.
        let sender = |n| SequenceChange {
            next_sender_seq: Some(n),
            ..Default::default()
        };
        assert_eq!(set(sender(10)).unwrap(), (10, 1));
        let err = set(sender(9)).unwrap_err();
        assert!(
            matches!(
                err,
                SequenceError::SenderBackwards {
                    requested: 9,
                    current: 10
                }
            ),
            "{err}"
        );
        assert_eq!((store.next_sender_seq(), store.next_target_seq()), (10, 1));
        // A reset drops the stored messages; a number given with it applies after it.
        let reset = SequenceChange {
            reset: true,
            next_target_seq: Some(5),
            ..Default::default()
        };
        assert_eq!(set(reset).unwrap(), (1, 5));
        let mut kept = Vec::new();
        store.outbound_range(1, 10, &mut kept).unwrap();
        assert!(kept.is_empty());

        // Bad requests name the problem.
        assert!(matches!(
            set(SequenceChange::default()),
            Err(SequenceError::Empty)
        ));
        for bad in [0, MAX_OPERATOR_SEQ + 1] {
            let err = set(sender(bad)).unwrap_err();
            assert!(
                err.to_string()
                    .contains("next_sender_seq must be between 1"),
                "{err}"
            );
        }
        // Never under a live connection, and the change releases its own claim.
        let claim = e.try_claim().unwrap();
        let err = set(target).unwrap_err();
        assert_eq!(
            err.to_string(),
            "session FIX.4.4:ISLD->TW has a connection: log it out first"
        );
        drop(claim);
        assert_eq!(set(target).unwrap(), (1, 1));
        assert!(!e.is_connected());
    }

    #[test]
    fn only_one_claim_per_session_at_a_time() {
        let r = registry_with(BeginString::Fix44, "ISLD", "TW");
        let e = r.lookup_incoming(BeginString::Fix44, "TW", "ISLD").unwrap();
        let claim = e.try_claim().expect("first claim");
        assert!(e.is_connected());
        assert!(e.try_claim().is_none());
        drop(claim);
        assert!(!e.is_connected());
        assert!(e.try_claim().is_some());
    }

    #[test]
    fn the_store_is_opened_once_and_kept_across_connections() {
        let r = registry_with(BeginString::Fix44, "ISLD", "TW");
        let e = r.lookup_incoming(BeginString::Fix44, "TW", "ISLD").unwrap();
        let now = UtcTimestamp::from_millis(1);
        let mut s1 = e.store(now).unwrap();
        s1.save_outbound(1, b"x").unwrap();
        s1.set_next_target_seq(5).unwrap();
        let s2 = e.store(now).unwrap();
        assert_eq!(s2.next_sender_seq(), 2);
        assert_eq!(s2.next_target_seq(), 5);
        assert!(r.sync_all().is_empty());
    }

    #[tokio::test]
    async fn plain_tcp_is_refused_off_loopback() {
        let cfg = ListenerConfig::plain("public", "0.0.0.0:0".parse().unwrap(), BeginString::Fix44);
        let err = bind(cfg).await.unwrap_err();
        assert!(matches!(err, TransportError::PlainTcpNotLoopback { .. }));
        let cfg = ListenerConfig::plain("v6", "[::]:0".parse().unwrap(), BeginString::Fix44);
        assert!(bind(cfg).await.is_err());
    }

    struct NoApp;
    impl Application for NoApp {
        fn on_message(&self, _: &mut Session, _: UtcTimestamp, _: SeqNum, _: &[u8]) {}
    }

    async fn start(
        cfg: ListenerConfig,
    ) -> (SocketAddr, ShutdownTrigger, tokio::task::JoinHandle<()>) {
        let listener = bind(cfg).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, signal) = shutdown_channel();
        let registry = Arc::new(registry_with(BeginString::Fix44, "ISLD", "TW"));
        let handle = tokio::spawn(listener.run(registry, Arc::new(NoApp), signal));
        (addr, trigger, handle)
    }

    /// Reads until EOF or error; returns the bytes received.
    async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_at_the_logon_timeout() {
        let mut cfg = ListenerConfig::plain("t", loopback(), BeginString::Fix44);
        cfg.logon_timeout = Duration::from_millis(200);
        let (addr, trigger, handle) = start(cfg).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let t0 = std::time::Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut c))
            .await
            .expect("closed by the server");
        assert!(got.is_empty(), "nothing is sent before identification");
        assert!(t0.elapsed() >= Duration::from_millis(150));
        trigger.trigger();
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn connections_beyond_max_connections_are_closed_at_once() {
        let mut cfg = ListenerConfig::plain("t", loopback(), BeginString::Fix44);
        cfg.max_connections = 1;
        cfg.logon_timeout = Duration::from_secs(30);
        let (addr, trigger, handle) = start(cfg).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        // Give the listener time to accept the first one.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut second))
            .await
            .expect("second connection closed at once");
        assert!(got.is_empty());
        // The first is still open: a read does not complete.
        let mut b = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), first.read(&mut b))
                .await
                .is_err()
        );
        trigger.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut first)).await;
        handle.await.unwrap();
    }

    #[test]
    fn an_address_gets_at_most_its_limit_and_its_places_come_back() {
        let limit = AddressLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.try_acquire(a).expect("first from a");
        let second = limit.try_acquire(a).expect("second from a");
        assert!(limit.try_acquire(a).is_none(), "a third from a");
        // The same host over an IPv6 socket counts as the same address.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(limit.try_acquire(mapped).is_none());
        // Other addresses are not affected.
        let other = limit.try_acquire(b).expect("b has its own count");
        drop(first);
        assert_eq!(limit.open_from(a), 1);
        let again = limit.try_acquire(a).expect("a place came back");
        drop((second, again, other));
        assert_eq!((limit.open_from(a), limit.open_from(b)), (0, 0));
        assert!(
            limit.open.lock().unwrap().is_empty(),
            "no entry left behind"
        );
        // 0: no limit, nothing counted.
        let none = AddressLimit::new(0);
        let permits: Vec<_> = (0..100).map(|_| none.try_acquire(a).unwrap()).collect();
        assert_eq!(none.open_from(a), 0);
        drop(permits);
    }

    #[tokio::test]
    async fn connections_beyond_max_connections_per_ip_are_closed_at_once() {
        let mut cfg = ListenerConfig::plain("t", loopback(), BeginString::Fix44);
        cfg.max_connections_per_ip = 1;
        cfg.logon_timeout = Duration::from_secs(30);
        let (addr, trigger, handle) = start(cfg).await;
        let first = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut second))
            .await
            .expect("second connection from the address closed at once");
        assert!(got.is_empty());
        // Once the first has gone, the address may connect again, and is served.
        drop(first);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut b = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), third.read(&mut b))
                .await
                .is_err(),
            "the third connection is open, waiting for a Logon"
        );
        trigger.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut third)).await;
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_closes_unidentified_connections_and_stops_the_listener() {
        let cfg = ListenerConfig::plain("t", loopback(), BeginString::Fix44);
        let (addr, trigger, handle) = start(cfg).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut c))
            .await
            .expect("closed on shutdown");
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("listener stops")
            .unwrap();
    }

    fn self_signed() -> (Vec<u8>, Vec<u8>) {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        (
            ck.cert.pem().into_bytes(),
            ck.key_pair.serialize_pem().into_bytes(),
        )
    }

    #[test]
    fn tls_config_loads_pem_files_and_offers_only_tls13() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let cp = dir.path().join("cert.pem");
        let kp = dir.path().join("key.pem");
        std::fs::write(&cp, cert).unwrap();
        std::fs::write(&kp, key).unwrap();
        let cfg = load_tls13_server_config(&cp, &kp).unwrap();
        assert!(cfg.alpn_protocols.is_empty());
        // Errors name the file.
        let err = load_tls13_server_config(&dir.path().join("missing.pem"), &kp).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let err = load_tls13_server_config(&kp, &kp).unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
        let err = load_tls13_server_config(&cp, &cp).unwrap_err();
        assert!(err.to_string().contains("no PRIVATE KEY"), "{err}");
    }

    fn client_config(
        cert_pem: &[u8],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut &cert_pem[..]) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    async fn tls_listener() -> (
        Vec<u8>,
        SocketAddr,
        ShutdownTrigger,
        tokio::task::JoinHandle<()>,
    ) {
        let (cert, key) = self_signed();
        let certs = rustls_pemfile::certs(&mut &cert[..])
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key_der = rustls_pemfile::private_key(&mut &key[..]).unwrap().unwrap();
        let mut cfg = ListenerConfig::plain("tls", loopback(), BeginString::Fix44);
        cfg.tls = Some(tls13_server_config(certs, key_der).unwrap());
        let (addr, trigger, handle) = start(cfg).await;
        (cert, addr, trigger, handle)
    }

    #[tokio::test]
    async fn tls13_client_completes_the_handshake() {
        let (cert, addr, trigger, handle) = tls_listener().await;
        let connector =
            tokio_rustls::TlsConnector::from(client_config(&cert, &[&rustls::version::TLS13]));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector
            .connect(name, tcp)
            .await
            .expect("TLS 1.3 handshake");
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        trigger.trigger();
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn tls12_client_is_refused() {
        let (cert, addr, trigger, handle) = tls_listener().await;
        let connector =
            tokio_rustls::TlsConnector::from(client_config(&cert, &[&rustls::version::TLS12]));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        assert!(connector.connect(name, tcp).await.is_err());
        trigger.trigger();
        handle.await.unwrap();
    }

    /// A stream whose writes accept at most `cap` bytes in total, then stay pending (a peer
    /// that stopped reading), and whose reads never complete.
    struct StuckPeer {
        cap: usize,
        written: usize,
    }

    impl AsyncRead for StuckPeer {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for StuckPeer {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let room = self.cap - self.written;
            if room == 0 {
                return Poll::Pending;
            }
            let n = room.min(buf.len());
            self.written += n;
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn io_step_writes_before_reading_and_stops_when_the_peer_stops_reading() {
        let mut peer = StuckPeer {
            cap: 10,
            written: 0,
        };
        let mut rbuf = [0u8; 16];
        let tx = [7u8; 25];
        let step = io_step(&mut peer, &mut rbuf, &tx, false).await;
        assert!(matches!(step, IoStep::Wrote(10)));
        // With nothing left to write, a pending flush completes.
        let step = io_step(&mut peer, &mut rbuf, &[], true).await;
        assert!(matches!(step, IoStep::Flushed));
        // Nothing more can be written and nothing read: the step stays pending.
        let pending = tokio::time::timeout(
            Duration::from_millis(50),
            io_step(&mut peer, &mut rbuf, &tx[10..], false),
        )
        .await;
        assert!(pending.is_err());
    }

    #[tokio::test]
    async fn io_step_reads_when_nothing_is_pending() {
        let (mut a, mut b) = tokio::io::duplex(64);
        b.write_all(b"hello").await.unwrap();
        let mut rbuf = [0u8; 16];
        match io_step(&mut a, &mut rbuf, &[], false).await {
            IoStep::Read(n) => assert_eq!(&rbuf[..n], b"hello"),
            other => panic!("unexpected {other:?}"),
        }
    }

    // --- whole connections over in-memory streams -------------------------------------------

    fn fix(msg_type: &[u8], seq: u64, fields: &[(u32, &[u8])]) -> Vec<u8> {
        fix_as(b"FIX.4.4", b"TW", msg_type, seq, fields)
    }

    fn fix_as(
        begin: &[u8],
        sender: &[u8],
        msg_type: &[u8],
        seq: u64,
        fields: &[(u32, &[u8])],
    ) -> Vec<u8> {
        let mut enc = portcullis_fix::Encoder::new();
        enc.start(begin, msg_type);
        enc.str(49, sender).str(56, b"ISLD").uint(34, seq);
        enc.timestamp(
            52,
            UtcTimestamp::now(),
            portcullis_fix::TimePrecision::Millis,
        );
        for (t, v) in fields {
            enc.str(*t, v);
        }
        enc.finish().to_vec()
    }

    const LOGON_FIELDS: &[(u32, &[u8])] = &[(98, b"0"), (108, b"30"), (141, b"Y")];

    fn logon() -> Vec<u8> {
        fix(b"A", 1, LOGON_FIELDS)
    }

    /// Answers every application message with a `j` carrying its MsgSeqNum in RefSeqNum.
    struct Echo;
    impl Application for Echo {
        fn on_message(&self, session: &mut Session, now: UtcTimestamp, seq: SeqNum, _: &[u8]) {
            session
                .send_application(now, b"j", |enc| {
                    enc.uint(45, seq).str(372, b"D").uint(380, 4);
                })
                .unwrap();
        }
    }

    fn connection(
        cfg: ListenerConfig,
        shutdown: ShutdownSignal,
    ) -> (Connection, Arc<SessionEntry>) {
        let registry = Arc::new(registry_with(BeginString::Fix44, "ISLD", "TW"));
        let entry = registry
            .lookup_incoming(BeginString::Fix44, "TW", "ISLD")
            .unwrap();
        let conn = Connection {
            id: 0,
            peer: loopback(),
            listener: Arc::new(cfg),
            registry,
            app: Arc::new(Echo),
            auth: None,
            shutdown,
            accepted_at: Instant::now(),
        };
        (conn, entry)
    }

    /// Reads whole FIX messages from `r` until one of type `msg_type` arrives.
    async fn read_until<R: AsyncRead + Unpin>(
        r: &mut R,
        buf: &mut Vec<u8>,
        msg_type: &str,
    ) -> Vec<u8> {
        let needle = format!("\x0135={msg_type}\x01");
        loop {
            while let portcullis_fix::Frame::Complete { len } = portcullis_fix::frame(buf, 1 << 20)
            {
                let m: Vec<u8> = buf.drain(..len).collect();
                if m.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    return m;
                }
            }
            let mut chunk = [0u8; 512];
            let n = r.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a 35={msg_type} arrived");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn contains(m: &[u8], field: &str) -> bool {
        m.windows(field.len()).any(|w| w == field.as_bytes())
    }

    #[tokio::test]
    async fn a_session_is_driven_from_logon_to_application_reply_to_shutdown_logout() {
        let (trigger, signal) = shutdown_channel();
        let cfg = ListenerConfig::plain("t", loopback(), BeginString::Fix44);
        let (mut conn, entry) = connection(cfg, signal);
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let deadline = Instant::now() + Duration::from_secs(10);
        let task = tokio::spawn(async move { conn.serve_stream(server, deadline).await });
        client.write_all(&logon()).await.unwrap();
        let mut rx = Vec::new();
        let ack = read_until(&mut client, &mut rx, "A").await;
        assert!(contains(&ack, "\x0149=ISLD\x0156=TW\x01"));
        assert!(entry.is_connected());
        client
            .write_all(&fix(
                b"D",
                2,
                &[
                    (11, b"o1"),
                    (21, b"1"),
                    (55, b"X"),
                    (54, b"1"),
                    (60, b"20240102-10:00:00"),
                    (40, b"1"),
                    (38, b"1"),
                ],
            ))
            .await
            .unwrap();
        let reply = read_until(&mut client, &mut rx, "j").await;
        assert!(
            contains(&reply, "\x0145=2\x01"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        // Shutdown: the server logs out; answering completes the handshake and closes.
        trigger.trigger();
        let logout = read_until(&mut client, &mut rx, "5").await;
        assert!(contains(&logout, "server shutting down"));
        client.write_all(&fix(b"5", 3, &[])).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("connection ends after the Logout handshake")
            .unwrap();
        assert!(!entry.is_connected());
        // The store kept the numbers for the next connection.
        assert_eq!(
            entry.store(UtcTimestamp::now()).unwrap().next_target_seq(),
            4
        );
    }

    #[tokio::test]
    async fn a_reader_that_stops_reading_is_disconnected_at_max_unsent_bytes() {
        let (_trigger, signal) = shutdown_channel();
        let mut cfg = ListenerConfig::plain("t", loopback(), BeginString::Fix44);
        cfg.max_unsent_bytes = 4096;
        let (mut conn, entry) = connection(cfg, signal);
        // The pipe holds 1 KiB; the client never reads, so the server's output piles up.
        let (mut client, server) = tokio::io::duplex(1024);
        let deadline = Instant::now() + Duration::from_secs(10);
        let task = tokio::spawn(async move { conn.serve_stream(server, deadline).await });
        client.write_all(&logon()).await.unwrap();
        let mut seq = 2;
        let ended = loop {
            if task.is_finished() {
                break true;
            }
            if seq > 2000 {
                break false;
            }
            // Each TestRequest asks for a Heartbeat of about 80 bytes.
            let id = format!("req-{seq}");
            if client
                .write_all(&fix(b"1", seq, &[(112, id.as_bytes())]))
                .await
                .is_err()
            {
                break true;
            }
            seq += 1;
            tokio::task::yield_now().await;
        };
        assert!(ended, "slow reader was never disconnected");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(!entry.is_connected());
        assert!(seq > 40, "disconnected too early, after {seq} messages");
    }

    #[tokio::test]
    async fn a_second_connection_for_a_connected_session_is_closed_silently() {
        let (_trigger, signal) = shutdown_channel();
        let cfg = ListenerConfig::plain("t", loopback(), BeginString::Fix44);
        let (mut conn, entry) = connection(cfg.clone(), signal.clone());
        let registry = conn.registry.clone();
        let (mut c1, s1) = tokio::io::duplex(64 * 1024);
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = tokio::spawn(async move { conn.serve_stream(s1, deadline).await });
        c1.write_all(&logon()).await.unwrap();
        read_until(&mut c1, &mut Vec::new(), "A").await;
        assert!(entry.is_connected());

        let mut conn2 = Connection {
            id: 1,
            peer: loopback(),
            listener: Arc::new(cfg),
            registry,
            app: Arc::new(Echo),
            auth: None,
            shutdown: signal,
            accepted_at: Instant::now(),
        };
        let (mut c2, s2) = tokio::io::duplex(64 * 1024);
        let second = tokio::spawn(async move { conn2.serve_stream(s2, deadline).await });
        c2.write_all(&logon()).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c2.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert!(got.is_empty(), "nothing is sent to the second connection");
        second.await.unwrap();
        assert!(
            entry.is_connected(),
            "the first connection keeps the session"
        );
        drop(c1);
        first.await.unwrap();
    }

    #[tokio::test]
    async fn unknown_sessions_and_wrong_begin_strings_are_closed_silently() {
        let (_trigger, signal) = shutdown_channel();
        for first in [
            // Unknown counterparty.
            fix_as(b"FIX.4.4", b"XX", b"A", 1, LOGON_FIELDS),
            // A session that exists, but on a FIX.4.2 message sent to a FIX.4.4 listener.
            fix_as(b"FIX.4.2", b"TW", b"A", 1, LOGON_FIELDS),
            // Not FIX at all.
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ] {
            let cfg = ListenerConfig::plain("t", loopback(), BeginString::Fix44);
            let (mut conn, entry) = connection(cfg, signal.clone());
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let deadline = Instant::now() + Duration::from_secs(10);
            let task = tokio::spawn(async move { conn.serve_stream(server, deadline).await });
            client.write_all(&first).await.unwrap();
            let mut got = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
                .await
                .unwrap()
                .unwrap();
            assert!(got.is_empty());
            task.await.unwrap();
            assert!(!entry.is_connected());
        }
    }

    /// Accepts Logons whose Username(553) is `good`, refuses connections from a peer it was
    /// told to refuse, and reports revocation through a shared flag and a watch channel.
    struct FlagAuth {
        revoked: Arc<AtomicBool>,
        changes: watch::Sender<u64>,
        refuse: bool,
    }

    struct FlagSessionAuth(Arc<AtomicBool>);

    impl SessionAuth for FlagSessionAuth {
        fn authenticate_logon(
            &mut self,
            logon: &portcullis_fix::MessageRef<'_>,
            _now: UtcTimestamp,
        ) -> Result<(), String> {
            match logon.get(553) {
                Some(b"good") => Ok(()),
                _ => Err("Authentication failed".into()),
            }
        }
        fn verify_message(
            &mut self,
            _: &portcullis_fix::MessageRef<'_>,
        ) -> Result<(), crate::MessageAuthError> {
            Ok(())
        }
        fn revoked(&self, _now: UtcTimestamp) -> bool {
            self.0.load(Ordering::Acquire)
        }
    }

    impl ConnectionAuth for FlagAuth {
        fn session_auth(
            &self,
            session: &SessionConfig,
            _listener: &ListenerConfig,
            peer: SocketAddr,
        ) -> Result<Option<Box<dyn SessionAuth>>, String> {
            assert_eq!(session.target_comp_id, "TW");
            assert_eq!(peer, loopback());
            if self.refuse {
                return Err("peer refused by the authenticator".into());
            }
            Ok(Some(Box::new(FlagSessionAuth(self.revoked.clone()))))
        }
        fn revocations(&self) -> Option<watch::Receiver<u64>> {
            Some(self.changes.subscribe())
        }
    }

    fn authed_connection(
        signal: ShutdownSignal,
        refuse: bool,
    ) -> (Connection, Arc<SessionEntry>, Arc<FlagAuth>) {
        let cfg = ListenerConfig::plain("t", loopback(), BeginString::Fix44);
        let (mut conn, entry) = connection(cfg, signal);
        let auth = Arc::new(FlagAuth {
            revoked: Arc::new(AtomicBool::new(false)),
            changes: watch::channel(0).0,
            refuse,
        });
        conn.auth = Some(auth.clone());
        (conn, entry, auth)
    }

    #[tokio::test]
    async fn the_session_gets_the_connections_auth_and_a_refused_logon_gets_only_a_logout() {
        let (_trigger, signal) = shutdown_channel();
        let (mut conn, entry, _auth) = authed_connection(signal, false);
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let deadline = Instant::now() + Duration::from_secs(10);
        let task = tokio::spawn(async move { conn.serve_stream(server, deadline).await });
        client
            .write_all(&fix(b"A", 1, &[(98, b"0"), (108, b"30"), (553, b"bad")]))
            .await
            .unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert!(contains(&got, "\x0135=5\x01"));
        assert!(contains(&got, "\x0158=Authentication failed\x01"));
        assert_eq!(
            portcullis_fix::frame(&got, 1 << 20),
            portcullis_fix::Frame::Complete { len: got.len() },
            "one message only"
        );
        // Released as soon as the connection ends: the client may reconnect at once.
        assert!(!entry.is_connected());
        task.await.unwrap();
        assert_eq!(
            entry.store(UtcTimestamp::now()).unwrap().next_target_seq(),
            1
        );
    }

    #[tokio::test]
    async fn a_connection_the_auth_refuses_is_closed_silently() {
        let (_trigger, signal) = shutdown_channel();
        let (mut conn, entry, _auth) = authed_connection(signal, true);
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let deadline = Instant::now() + Duration::from_secs(10);
        let task = tokio::spawn(async move { conn.serve_stream(server, deadline).await });
        client
            .write_all(&fix(b"A", 1, &[(98, b"0"), (108, b"30"), (553, b"good")]))
            .await
            .unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert!(got.is_empty());
        task.await.unwrap();
        assert!(!entry.is_connected());
    }

    #[tokio::test]
    async fn a_revocation_signal_ends_a_logged_on_session_at_once() {
        let (_trigger, signal) = shutdown_channel();
        let (mut conn, _entry, auth) = authed_connection(signal, false);
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let deadline = Instant::now() + Duration::from_secs(10);
        let task = tokio::spawn(async move { conn.serve_stream(server, deadline).await });
        // HeartBtInt 30: no session timer fires during the test.
        client
            .write_all(&fix(b"A", 1, &[(98, b"0"), (108, b"30"), (553, b"good")]))
            .await
            .unwrap();
        let mut rx = Vec::new();
        read_until(&mut client, &mut rx, "A").await;
        // A change that does not concern this session leaves it alone.
        auth.changes.send_modify(|n| *n += 1);
        client
            .write_all(&fix(b"1", 2, &[(112, b"STILL")]))
            .await
            .unwrap();
        let hb = read_until(&mut client, &mut rx, "0").await;
        assert!(contains(&hb, "\x01112=STILL\x01"));
        // Revoked: the session is told at once, not at its next heartbeat.
        let at = Instant::now();
        auth.revoked.store(true, Ordering::Release);
        auth.changes.send_modify(|n| *n += 1);
        let logout = tokio::time::timeout(
            Duration::from_secs(2),
            read_until(&mut client, &mut rx, "5"),
        )
        .await
        .expect("Logout soon after the revocation");
        assert!(contains(&logout, "\x0158=Credential revoked\x01"));
        assert!(at.elapsed() < Duration::from_secs(2));
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn next_wake_takes_the_earlier_deadline() {
        let now = UtcTimestamp::now();
        assert!(next_wake(None, &[None, None], now).is_none());
        let soon = Instant::now() + Duration::from_millis(10);
        let far = UtcTimestamp::from_nanos(now.nanos() + 3_600_000_000_000);
        assert_eq!(next_wake(Some(far), &[Some(soon), None], now), Some(soon));
        let sooner = soon - Duration::from_millis(5);
        assert_eq!(
            next_wake(Some(far), &[Some(soon), Some(sooner)], now),
            Some(sooner)
        );
        let past = UtcTimestamp::from_nanos(0);
        let w = next_wake(Some(past), &[], now).unwrap();
        assert!(w <= Instant::now());
        // A session deadline 30 s after `now` is about 30 s after the instant of the call.
        let in_30s = UtcTimestamp::from_nanos(now.nanos() + 30_000_000_000);
        let w = next_wake(Some(in_30s), &[], now).unwrap();
        let ahead = w.saturating_duration_since(Instant::now());
        assert!(ahead > Duration::from_secs(29) && ahead <= Duration::from_secs(30));
    }

    #[test]
    fn the_timer_is_armed_again_only_when_a_deadline_comes_sooner() {
        let t0 = UtcTimestamp::from_nanos(1_000_000_000_000);
        let later = UtcTimestamp::from_nanos(t0.nanos() + 1_000_000);
        let sooner = UtcTimestamp::from_nanos(t0.nanos() - 1_000_000);
        let at = Instant::now();
        let none = [None, None];
        // Not armed: armed as soon as there is anything to wait for.
        assert!(!timer_stale(None, None, &none, None, &none));
        assert!(timer_stale(None, None, &none, Some(t0), &none));
        assert!(timer_stale(None, None, &none, None, &[Some(at), None]));
        // Armed for the session's t0: a heartbeat pushed back keeps it, an earlier one not.
        let armed = Some(at);
        assert!(!timer_stale(armed, Some(t0), &none, Some(t0), &none));
        assert!(!timer_stale(armed, Some(t0), &none, Some(later), &none));
        assert!(!timer_stale(armed, Some(t0), &none, None, &none));
        assert!(timer_stale(armed, Some(t0), &none, Some(sooner), &none));
        // Armed for a connection deadline only: a session deadline appearing re-arms it.
        assert!(timer_stale(
            armed,
            None,
            &[Some(at), None],
            Some(later),
            &[Some(at), None]
        ));
        // Any change of the connection's deadlines (shutdown grace, schedule) re-arms it.
        assert!(timer_stale(
            armed,
            Some(t0),
            &none,
            Some(t0),
            &[Some(at), None]
        ));
        assert!(!timer_stale(
            armed,
            Some(t0),
            &[None, Some(at)],
            Some(later),
            &[None, Some(at)]
        ));
    }

    #[tokio::test]
    async fn control_flags_wake_the_loop_and_are_taken_once() {
        let (trigger, signal) = shutdown_channel();
        let (logout_tx, logout_rx) = watch::channel(0u64);
        let (cred_tx, cred_rx) = watch::channel(0u64);
        let flags = Arc::new(ControlFlags::default());
        let _fwd = AbortOnDrop(tokio::spawn(forward_control(
            flags.clone(),
            signal,
            Some(logout_rx),
            Some(cred_rx),
        )));
        let take = || poll_fn(|cx| flags.poll_take(cx));
        let quiet = |f: &Arc<ControlFlags>| {
            let waker = futures_util::task::noop_waker();
            f.poll_take(&mut Context::from_waker(&waker)).is_pending()
        };
        assert!(quiet(&flags), "nothing raised yet");

        // Raised while the loop waits: it wakes with exactly that flag.
        let waiting = tokio::spawn({
            let flags = flags.clone();
            async move { poll_fn(|cx| flags.poll_take(cx)).await }
        });
        tokio::task::yield_now().await;
        logout_tx.send_replace(1);
        let woken = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(
            woken.expect("the raise wakes the loop").unwrap(),
            ControlFlags::LOGOUT
        );
        assert!(quiet(&flags), "a flag is taken once");

        // Raised before the loop looks: both are there at the next look, together.
        cred_tx.send_replace(1);
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), async {
            let mut seen = 0;
            while seen != ControlFlags::SHUTDOWN | ControlFlags::CREDENTIALS {
                seen |= take().await;
            }
        })
        .await
        .expect("shutdown and changed credentials are raised");
        assert!(quiet(&flags));

        // Credentials whose sender is gone are no longer watched; a second shutdown is not
        // raised again.
        drop(cred_tx);
        trigger.trigger();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(quiet(&flags));
    }
}
