//! The server's TOML configuration: parsing (unknown keys are errors) and validation (every
//! error names the key it is about).
//!
//! [`RawConfig`] and its sections mirror the file exactly; [`parse`] turns them into
//! [`Settings`], the checked values the server runs on. `configs/dev.toml` (the embedded
//! default) and `configs/conformance.toml` document every key for operators; the doc comments
//! here are the reference.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_auth::{AuthConfig, Scope};
use portcullis_engine::{
    EngineConfig, InstrumentConfig, InstrumentConfigError, OptionSeriesConfig,
};
use portcullis_fix::BeginString;
use portcullis_risk::RiskConfig;
use portcullis_session::store::SyncPolicy;
use portcullis_session::transport::Schedule;
use portcullis_session::{ResetPolicy, SessionConfig};
use serde::Deserialize;

/// The embedded default configuration (`portcullis serve` without `--config`).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../configs/dev.toml");

/// A configuration that cannot be used. The message names the key and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (syntax, unknown key, wrong type); the
    /// message from the TOML parser names the key and its line.
    #[error("{0}")]
    Parse(String),
    /// A value is not acceptable.
    #[error("{message}")]
    Invalid {
        /// The key, e.g. `listeners[0].tls`.
        key: String,
        /// The whole message, which starts with or contains the key.
        message: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key the error is about, when it is about one value.
    #[cfg(test)]
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

// -----------------------------------------------------------------------------------------
// The file, as written
// -----------------------------------------------------------------------------------------

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Directory for everything the server keeps: the FIX message stores under
    /// `sessions/<session>/` (encrypted: `gen-<n>/fixstore-*.seg`), the journal under
    /// `journal/`, the key vault `vault.bin`, the security audit log under `audit/` (encrypted:
    /// `audit-*.seg` written by the server, `audit_cli-*.seg` by the `keys` commands; read it
    /// with `portcullis audit export`), the operator control socket `control.sock`, the dev
    /// TLS certificate under `tls/`. Stores, journal and audit log are encrypted under the
    /// master key; only a server with no master key at all (no authenticated session and no
    /// key configured) writes plaintext stores (`sessions/<session>/store.log`) and a
    /// plaintext audit log `audit.jsonl`, with a warning. Relative paths are relative to the
    /// working directory. Default `./var`.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Listening endpoints; at least one.
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    /// WebSocket API endpoints (the Binance Spot WebSocket API dialect on `/ws-api/v3`).
    #[serde(default)]
    pub ws_listeners: Vec<RawWsListener>,
    /// Certificate and key for the TLS listeners.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// FIX sessions the server accepts.
    #[serde(default)]
    pub sessions: Vec<RawSession>,
    /// Authentication: where the master key is, logon window, lockout and anomaly settings.
    #[serde(default)]
    pub auth: RawAuth,
    /// The matching engine: order store size, book depth, the default cancel-on-disconnect.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Pre-trade risk: limits per account (with defaults), throttles, table capacities.
    #[serde(default)]
    pub risk: RiskConfig,
    /// Instruments listed one by one, by symbol.
    #[serde(default)]
    pub instruments: Vec<InstrumentConfig>,
    /// Option series listed by rule (expiries relative to the current time × a strike grid).
    #[serde(default)]
    pub option_series: Vec<OptionSeriesConfig>,
    /// The core thread and its queues.
    #[serde(default)]
    pub core: RawCore,
    /// The durable encrypted journal (portcullis_journal::JournalConfig, with the directory
    /// defaulting to `<data_dir>/journal`).
    #[serde(default)]
    pub journal: RawJournal,
    /// The admin API and the OAuth 2.0 authorization server (HTTPS only); absent = off.
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    /// The optional plain-HTTP `/metrics` listener (loopback only).
    #[serde(default)]
    pub metrics: RawMetrics,
    /// Security monitoring: the webhook for security events, the reject-rate spike detector.
    #[serde(default)]
    pub monitoring: RawMonitoring,
    /// How many of each account's recent orders and trades are kept for `allOrders`,
    /// `myTrades` and `order.status` (crate::history::HistoryLimits).
    #[serde(default)]
    pub history: crate::history::HistoryLimits,
    /// Venues the server routes orders to, each over a FIX session it initiates (README
    /// "Routing to a venue").
    #[serde(default)]
    pub venues: Vec<RawVenue>,
}

/// One `[[venues]]` entry: the FIX session this server opens to an upstream venue (an
/// exchange, or another Portcullis) and the instruments whose orders it routes there.
///
/// ```toml
/// [[venues]]
/// name = "upstream"                  # letters, digits, '-' and '_'; in logs and file names
/// connect = "venue.example:9878"     # the venue's FIX acceptor, host:port
/// tls = true                         # TLS 1.3 (default); plain TCP only to a loopback address
/// ca_file = "venue-ca.pem"           # roots the venue's certificate chains to (default: web PKI)
/// begin_string = "FIX.4.4"
/// sender_comp_id = "BROKER"          # ours
/// target_comp_id = "VENUE"           # theirs
/// instruments = ["BTC-PERP"]         # symbols of [[instruments]] whose orders go there
/// option_series = ["BTC"]            # and every option of these [[option_series]]
/// username = "key-id"                # Username(553) of a signed Logon (optional)
/// secret_file = "venue-secret.txt"   # the key's secret, for RawData(96) (with username)
/// account = "ACC-1"                  # Account(1) on what we send (optional)
/// heartbeat_secs = 30
/// reconnect_secs = 5
/// reset_on_logon = false
/// store_sync = "always"
/// ```
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawVenue {
    /// The venue's name: 1 to 32 letters, digits, `-` or `_` (its message store is under
    /// `<data_dir>/venues/<name>/`).
    pub name: String,
    /// `host:port` of the venue's FIX acceptor.
    pub connect: String,
    /// TLS 1.3 to the venue (default true). Plain TCP is allowed only to a loopback address.
    #[serde(default = "default_true")]
    pub tls: bool,
    /// PEM certificates the venue's certificate must chain to; default: the web PKI roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// The name the venue's certificate must carry; default: the host of `connect`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// `FIX.4.2`, `FIX.4.4` or `FIXT.1.1` (with DefaultApplVerID 9, FIX 5.0 SP2).
    pub begin_string: String,
    /// Our CompID on this session.
    pub sender_comp_id: String,
    /// The venue's CompID.
    pub target_comp_id: String,
    /// Symbols of `[[instruments]]` whose orders are routed to this venue (an instrument goes
    /// to one venue at most).
    #[serde(default)]
    pub instruments: Vec<String>,
    /// Underlyings of `[[option_series]]` whose options are all routed to this venue, those
    /// listed later included (an underlying goes to one venue at most). With `instruments`,
    /// at least one entry in all.
    #[serde(default)]
    pub option_series: Vec<String>,
    /// Username(553) of a signed Logon (DESIGN.md §4: the key id at the venue). Needs
    /// `secret_file`.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the key's secret (its first line), which signs the Logon's RawData(96).
    /// Needs `username`. Never put the secret itself in the config.
    #[serde(default)]
    pub secret_file: Option<String>,
    /// Account(1) on the orders sent to the venue (the firm's account there). Default: none.
    #[serde(default)]
    pub account: Option<String>,
    /// HeartBtInt(108) asked for, in seconds (1 to 3600). Default 30.
    #[serde(default = "default_venue_heartbeat")]
    pub heartbeat_secs: u32,
    /// Seconds between connection attempts (1 to 3600). Default 5.
    #[serde(default = "default_venue_reconnect")]
    pub reconnect_secs: u64,
    /// Start both sequences again at 1 at every Logon (ResetSeqNumFlag=Y). Default false.
    #[serde(default)]
    pub reset_on_logon: bool,
    /// Largest difference accepted between the venue's SendingTime(52) and our clock, in
    /// seconds. Default 120.
    #[serde(default = "default_sending_time_tolerance_secs")]
    pub sending_time_tolerance_secs: u64,
    /// When the message store forces writes to disk: `always` (default) or `never`.
    #[serde(default)]
    pub store_sync: RawStoreSync,
}

fn default_venue_heartbeat() -> u32 {
    30
}

fn default_venue_reconnect() -> u64 {
    5
}

/// Validated `[[venues]]` entry.
#[derive(Debug, Clone)]
pub struct VenueSettings {
    /// Its name.
    pub name: String,
    /// `host:port` to connect to.
    pub connect: String,
    /// TLS: the roots file (`None`: web PKI) and the server name to verify; `None`: plain TCP
    /// (loopback only).
    pub tls: Option<(Option<PathBuf>, String)>,
    /// The initiator session: BeginString, CompIDs, SendingTime tolerance.
    pub config: SessionConfig,
    /// The symbols routed there.
    pub instruments: Vec<String>,
    /// The underlyings whose option series are routed there.
    pub option_series: Vec<String>,
    /// Username(553) and the file of its secret, for a signed Logon.
    pub credentials: Option<(String, PathBuf)>,
    /// Account(1) on what we send.
    pub account: Option<String>,
    /// HeartBtInt(108) asked for.
    pub heartbeat_secs: u32,
    /// Time between connection attempts.
    pub reconnect: Duration,
    /// ResetSeqNumFlag=Y on every Logon.
    pub reset_on_logon: bool,
    /// Store fsync policy.
    pub store_sync: SyncPolicy,
}

/// The `[admin]` section: the admin API (JSON over HTTPS, TLS 1.3 only, on its own listener)
/// and the OAuth 2.0 authorization server for machine clients (README.md, "Admin API"). TLS is
/// always on, whatever the address: there is no plain-HTTP admin listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `IP:PORT` to listen on (port 0 picks a free port, printed at start as
    /// `listening: admin https://ADDR`).
    pub bind: String,
    /// PEM certificate chain of the admin listener; default: the `[tls]` section's, or (the
    /// embedded default only) the generated dev certificate. Give `key_file` with it.
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<String>,
    /// PEM file of the CAs that sign client certificates: when set, every client must present
    /// a certificate chaining to one of them (mutual TLS) before any HTTP is read.
    pub client_ca: Option<String>,
    /// The OAuth issuer identifier and base URL of the endpoints (`iss` of the tokens, the
    /// metadata's `issuer`): an `https://` URL without a trailing slash, e.g.
    /// `https://admin.example.com:9444`. Default `https://<bind address>:<port>`.
    pub issuer: Option<String>,
    /// Lifetime of access tokens in seconds. Default 600 (10 minutes).
    #[serde(default = "default_access_token_ttl_secs")]
    pub access_token_ttl_secs: u64,
    /// Connections served at once. Default 64.
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
}

fn default_access_token_ttl_secs() -> u64 {
    600
}

/// The `[journal]` section: the keys of [`portcullis_journal::JournalConfig`], every one
/// optional. `dir` defaults to `<data_dir>/journal` (not the library's `var/journal`), so a
/// config that moves `data_dir` moves the journal with it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    /// Segment and snapshot files; default `<data_dir>/journal`.
    pub dir: Option<String>,
    /// `"always"` (default), `"never"` or `{ interval_ms = N }`.
    #[serde(default)]
    pub fsync: portcullis_journal::FsyncPolicy,
    /// Segment size in bytes before a new segment starts.
    pub segment_bytes: Option<u64>,
    /// Records between two state-hash snapshot markers (0 = none).
    pub snapshot_every: Option<u64>,
    /// CPU to pin the journal thread (and the snapshot threads it starts) to, off the CPUs of
    /// the sockets and the core: its batch every few milliseconds otherwise delays the round
    /// trips it lands between.
    pub pin_cpu: Option<usize>,
}

/// The `[core]` section: the core thread that owns the books and the risk state, and the
/// bounded queues between it and the socket tasks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCore {
    /// Where the core loop runs. "dedicated" (the default): its own thread, which busy-polls
    /// for `idle_spin_us` after its last command, then parks — the lowest latency when it has
    /// a CPU to itself (set `pin_cpu`). "shared": a task on the one worker thread that also runs
    /// every socket task, so an order is read, matched and answered without a hand-off between
    /// threads — for machines with few CPUs, or CPUs shared with other processes. `idle_spin_us`,
    /// `reply_spin_us` and `pin_cpu` apply to "dedicated" only.
    pub threading: RawThreading,
    /// Commands (orders, cancels, ...) that may wait for the core thread, over all sessions.
    /// When the queue is full, a request is refused at once with a "server busy" reject
    /// (back-pressure), never buffered. Default 65536.
    pub ingress_capacity: u64,
    /// Reports that may wait, per session, for its socket task to send them. A session whose
    /// queue fills up is a slow consumer: the core thread never waits for it; the reports it
    /// cannot take are dropped (the orders keep their state) and the session is logged out
    /// ("slow consumer") and disconnected. Allocated (about 300 bytes an entry) when the
    /// session first trades. Default 1024.
    pub egress_capacity: u64,
    /// How long the core thread keeps polling its queues after the last command before it
    /// parks (a producer wakes it). Spinning costs a CPU while it lasts and saves the wake-up
    /// latency of a parked thread for the next command. Default 50 (microseconds).
    pub idle_spin_us: u64,
    /// How long a session's task, having just handed a request to an idle core thread, polls
    /// for the answer before it goes back to waiting. An answer within this time is sent in
    /// the same step, and the core thread's wake-up of the task costs no system call. Only
    /// when the ingress queue was (nearly) empty: under load the task never waits. 0 = never.
    /// Default 10 (microseconds).
    pub reply_spin_us: u64,
    /// Pin the core thread to this CPU (0-based); absent = no pinning.
    pub pin_cpu: Option<usize>,
    /// The end of the trading day, `HH:MM:SS` UTC: Day orders expire and ClOrdIDs may be used
    /// again; a GTD order's ExpireDate(432) means the end of that trading day. Default
    /// "00:00:00".
    pub trading_day_end: String,
    /// Accounts that may trade besides those named by the sessions, e.g. for sessions with
    /// `accounts = ["*"]`. The account table is this list, then every session's accounts.
    pub accounts: Vec<String>,
}

/// `core.threading`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawThreading {
    /// The core loop on its own thread.
    #[default]
    Dedicated,
    /// The core loop as a task on the single runtime worker thread.
    Shared,
}

impl Default for RawCore {
    fn default() -> Self {
        Self {
            threading: RawThreading::Dedicated,
            ingress_capacity: 65_536,
            egress_capacity: 1024,
            idle_spin_us: 50,
            reply_spin_us: 10,
            pin_cpu: None,
            trading_day_end: "00:00:00".to_owned(),
            accounts: Vec::new(),
        }
    }
}

/// The `[auth]` section. The key vault is `<data_dir>/vault.bin` and the audit log, encrypted
/// under the master key, `<data_dir>/audit/`. Every setting but `master_key_file` is a field of
/// [`portcullis_auth::AuthConfig`], with its default when absent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// File holding the master key that encrypts the vault: 64 hex characters, or a keyring
    /// `ID:HEX,ID:HEX` whose first entry is current. Read only when `PORTCULLIS_MASTER_KEY` is not
    /// set; never the key itself. The embedded default names `./var/master.key` and creates it
    /// (with a warning) if it is missing; any other config needs the file to exist.
    pub master_key_file: Option<String>,
    /// Largest distance of a Logon's SendingTime(52) from the server clock, either way, in
    /// milliseconds; also how long signatures are remembered against replay. Default 5000.
    pub logon_window_ms: Option<u64>,
    /// Failed logons per key id or per source address, within `failure_window_ms`, that lock
    /// it out. Default 5.
    pub max_failures: Option<u32>,
    /// The window over which failures are counted, in milliseconds. Default 60000.
    pub failure_window_ms: Option<u64>,
    /// First lockout in milliseconds; each further one doubles it. Default 1000.
    pub lockout_base_ms: Option<u64>,
    /// Longest lockout in milliseconds; also the quiet time after which the doubling starts
    /// over. Default 900000 (15 minutes).
    pub lockout_max_ms: Option<u64>,
    /// Per-message signature failures on one session, within `signature_burst_window_ms`, that
    /// raise a `signature_failure_burst` anomaly. Default 5.
    pub signature_burst_threshold: Option<u32>,
    /// The window of `signature_burst_threshold`, in milliseconds. Default 10000.
    pub signature_burst_window_ms: Option<u64>,
    /// Successful logons of one key from two or more addresses within this many milliseconds
    /// raise a `multiple_ips` anomaly. Default 60000.
    pub multi_ip_window_ms: Option<u64>,
}

fn default_data_dir() -> String {
    "./var".to_owned()
}

/// One `[[listeners]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Name used in logs; unique.
    pub name: String,
    /// `IP:PORT` to listen on, e.g. `127.0.0.1:9878` (port 0 picks a free port, printed at start).
    pub bind: String,
    /// TLS 1.3 (`true`, the default) or plain TCP (`false`, only on a loopback address).
    #[serde(default = "default_true")]
    pub tls: bool,
    /// The one BeginString served here: `FIX.4.2`, `FIX.4.4` or `FIXT.1.1`.
    pub begin_string: String,
    /// Connections served at once; one more is closed as soon as it is accepted. Default 64.
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
    /// Connections served at once from one source address; one more from it is closed as soon
    /// as it is accepted, so one host cannot take every slot with connections that never log
    /// on. 0 (the default): no limit but `max_connections`. At most `max_connections`.
    #[serde(default)]
    pub max_connections_per_ip: u64,
    /// Largest accepted message in bytes; a peer announcing a larger one is disconnected.
    /// Default 65536; 256 to just under 16 MiB (the largest message a store record holds).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    /// Seconds from accept (TLS handshake included) to a valid Logon. Default 10.
    #[serde(default = "default_logon_timeout_secs")]
    pub logon_timeout_secs: u64,
    /// Bytes of output that may wait for a client that does not read; past this the client is
    /// disconnected as a slow reader. Default 1 MiB (1048576). At least `max_message_size`.
    #[serde(default = "default_max_unsent_bytes")]
    pub max_unsent_bytes: u64,
}

fn default_true() -> bool {
    true
}
fn default_max_connections() -> u64 {
    64
}
fn default_max_message_size() -> u64 {
    65_536
}
fn default_logon_timeout_secs() -> u64 {
    10
}
fn default_max_unsent_bytes() -> u64 {
    1024 * 1024
}

/// One `[[ws_listeners]]` entry: a WebSocket API endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWsListener {
    /// Name used in logs; unique among the WebSocket listeners.
    pub name: String,
    /// `IP:PORT` to listen on (port 0 picks a free port, printed at start).
    pub bind: String,
    /// TLS 1.3 (`true`, the default) or plain TCP (`false`, only on a loopback address).
    #[serde(default = "default_true")]
    pub tls: bool,
    /// Connections served at once. Default 1024.
    #[serde(default = "default_ws_max_connections")]
    pub max_connections: u64,
    /// Connections served at once from one source address; one more from it is closed as soon
    /// as it is accepted. 0 (the default): no limit but `max_connections` (and the connection
    /// rate, `connections_per_5min`). At most `max_connections`.
    #[serde(default)]
    pub max_connections_per_ip: u64,
    /// Largest accepted message (and frame) in bytes. Default 65536.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    /// Cancel a connection's orders when it ends. Default true.
    #[serde(default = "default_true")]
    pub cancel_on_disconnect: bool,
    /// Requests of one connection waiting for the order pipeline at once (order placements,
    /// cancels, queries); one more is answered 429 -1003 "Too many requests queued.".
    /// Default 256.
    #[serde(default = "default_ws_max_pending_requests")]
    pub max_pending_requests: u64,
    /// `REQUEST_WEIGHT` per IP address per minute. Default: the dialect's 6000.
    pub request_weight_per_minute: Option<u64>,
    /// `ORDERS` per account per 10 seconds. Default: the dialect's 50.
    pub orders_per_10s: Option<u64>,
    /// `ORDERS` per account per day. Default: the dialect's 160000.
    pub orders_per_day: Option<u64>,
    /// Connection attempts per IP address in any 5 minutes. Default: the dialect's 300.
    pub connections_per_5min: Option<u64>,
}

fn default_ws_max_connections() -> u64 {
    1024
}
fn default_ws_max_pending_requests() -> u64 {
    256
}
/// Largest `max_pending_requests`: each waiting request holds its answer's routing state.
const MAX_PENDING_REQUESTS_LIMIT: u64 = 65536;

/// The `[tls]` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file with the server certificate chain, leaf first.
    pub cert_file: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

/// One `[[sessions]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    /// `FIX.4.2`, `FIX.4.4` or `FIXT.1.1`; a listener must serve it.
    pub begin_string: String,
    /// Our CompID: SenderCompID(49) of what we send, TargetCompID(56) of what we receive.
    pub sender_comp_id: String,
    /// The counterparty's CompID.
    pub target_comp_id: String,
    /// `[min, max]` HeartBtInt(108) accepted in the Logon, in seconds. Default `[1, 3600]`:
    /// 0 (no heartbeats at all) is refused by default, since a dead peer would then go unnoticed.
    #[serde(default = "default_heartbeat_range")]
    pub heartbeat_range_secs: [u32; 2],
    /// Largest accepted difference between SendingTime(52) and our clock, in seconds. Default 120.
    #[serde(default = "default_sending_time_tolerance_secs")]
    pub sending_time_tolerance_secs: u64,
    /// Sequence numbers start again from 1 at every Logon. Default false.
    #[serde(default)]
    pub reset_on_logon: bool,
    /// Sequence numbers start again from 1 after a completed Logout. Default false.
    #[serde(default)]
    pub reset_on_logout: bool,
    /// Sequence numbers start again from 1 whenever the connection ends. Default false.
    #[serde(default)]
    pub reset_on_disconnect: bool,
    /// Accounts this session may trade for: a Logon's key must belong to one of them (`"*"`
    /// allows any account). Required (non-empty) when `authentication = "required"`.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Daily window in which Logons are accepted; a session still logged on when it ends is
    /// logged out. Absent = always.
    #[serde(default)]
    pub schedule: Option<RawSchedule>,
    /// Who may log on: `required` (the default) — a Logon must carry an API key id in
    /// Username(553) and its signature in RawData(96), for a key whose account is in `accounts`
    /// and that holds the `access` scope — or `none`: no authentication at all, for third-party
    /// session-level test suites that cannot sign. `none` is only allowed when every listener
    /// serving the session's BeginString is bound to a loopback address.
    #[serde(default)]
    pub authentication: RawAuthentication,
    /// The scope a key needs to log on: `trade` (the default) or `read` (a read-only session).
    #[serde(default)]
    pub access: RawAccess,
    /// Every application message must carry SignatureLength(93)/Signature(89), the HMAC of the
    /// message under the key the session logged on with. Default false. Needs
    /// `authentication = "required"`.
    #[serde(default)]
    pub require_message_signature: bool,
    /// Keep every message received once the session is logged on in its message store, next to
    /// the outbound ones, so `portcullis fix-log` shows both sides (encrypted stores only: a
    /// server with a master key). Written with the store's grouped commits, no extra write.
    /// Default false.
    #[serde(default)]
    pub log_inbound: bool,
    /// When the message store forces writes to disk: `always` (default) or `never`.
    ///
    /// `always` is the default because FIX sequence numbers must never go backwards: a number
    /// acknowledged to the counterparty and then lost in a power cut makes the next Logon fail
    /// (MsgSeqNum too low) and loses messages a ResendRequest should have served. `never` (the OS
    /// writes back when it likes; still safe against a process crash) is for tests and
    /// benchmarks.
    #[serde(default)]
    pub store_sync: RawStoreSync,
    /// DefaultApplVerID(1137) expected in the Logon of a FIXT.1.1 session; `9` (FIX 5.0 SP2) by
    /// default. Only allowed on FIXT.1.1 sessions.
    #[serde(default)]
    pub default_appl_ver_id: Option<String>,
    /// Cancel the session's resting orders when it logs out or its connection ends. Default:
    /// `engine.cancel_on_disconnect` (true unless changed).
    #[serde(default)]
    pub cancel_on_disconnect: Option<bool>,
    /// Market maker protection of the session's mass quotes (README "Mass quoting"): when the
    /// quotes' fills within `interval_ms` add up to `qty`, every quote is cancelled and
    /// MassQuotes are refused for `frozen_ms`. Absent: none.
    #[serde(default)]
    pub mmp: Option<RawMmp>,
    /// Makes this a drop copy session (for a clearing firm or a risk desk): it takes no orders
    /// and is sent a copy of every ExecutionReport (acknowledgements, fills, cancels,
    /// replaces, rejects, expiries) of these accounts (`["*"]`: every account), whichever
    /// session or connection the orders came from, in the journal's order, from the first
    /// record the journal holds on. Every key that may log on (see `accounts`) sees them all.
    /// Needs `access = "read"`, and a journal (a master key). Default: empty, an order-entry
    /// session.
    #[serde(default)]
    pub drop_copy: Vec<String>,
}

fn default_heartbeat_range() -> [u32; 2] {
    [1, 3600]
}
fn default_sending_time_tolerance_secs() -> u64 {
    120
}

/// `authentication` values.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RawAuthentication {
    /// A signed Logon with an API key.
    #[default]
    Required,
    /// No authentication (loopback listeners only).
    None,
}

/// `access` values.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RawAccess {
    /// Keys need the `trade` scope.
    #[default]
    Trade,
    /// Keys need the `read` scope.
    Read,
}

/// `store_sync` values.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RawStoreSync {
    /// fsync after every write.
    #[default]
    Always,
    /// Leave write-back to the OS.
    Never,
}

/// A session's `mmp = { interval_ms = 1000, qty = "50", frozen_ms = 5000 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMmp {
    /// The window the quotes' fills are added over, in ms (1 to 3,600,000).
    pub interval_ms: u64,
    /// The filled quantity within the window that trips the protection: a positive decimal
    /// (at most 8 decimal places), each fill counted in its instrument's units.
    pub qty: String,
    /// How long MassQuotes are refused after it trips, in ms (0 to 86,400,000).
    pub frozen_ms: u64,
}

/// A session's `schedule = { start = "HH:MM:SS", end = "HH:MM:SS", time_zone = "UTC" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// First second of the window, `HH:MM:SS` local time.
    pub start: String,
    /// Last second of the window (included), `HH:MM:SS` local time; earlier than `start` for a
    /// window across midnight.
    pub end: String,
    /// `UTC` (the default) or a fixed offset such as `+02:00` / `-05:30`. Named zones with
    /// daylight saving (e.g. `Europe/London`) are not supported: write the offset in force.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

// -----------------------------------------------------------------------------------------
// Checked settings
// -----------------------------------------------------------------------------------------

/// A validated configuration.
#[derive(Debug)]
pub struct Settings {
    /// Where the server keeps its files.
    pub data_dir: PathBuf,
    /// Listening endpoints.
    pub listeners: Vec<ListenerSettings>,
    /// WebSocket API endpoints.
    pub ws_listeners: Vec<WsListenerSettings>,
    /// TLS certificate and key files, if configured.
    pub tls: Option<TlsFiles>,
    /// Sessions.
    pub sessions: Vec<SessionSettings>,
    /// Authentication settings.
    pub auth: AuthSettings,
    /// True for the embedded default, which may generate a dev certificate and a dev master key.
    pub embedded: bool,
    /// `[engine]`.
    pub engine: EngineConfig,
    /// `[risk]`, validated.
    pub risk: RiskConfig,
    /// `[[instruments]]`, validated (listed once at load to check them).
    pub instruments: Vec<InstrumentConfig>,
    /// `[[option_series]]`, validated.
    pub option_series: Vec<OptionSeriesConfig>,
    /// `[core]`, validated.
    pub core: CoreSettings,
    /// The account table: `AccountId(i)` is `accounts[i]` (`core.accounts`, then the accounts
    /// of every session in order, each once, without `*`).
    pub accounts: Vec<String>,
    /// `[journal]`, validated, with its directory resolved.
    pub journal: portcullis_journal::JournalConfig,
    /// `journal.pin_cpu`: the CPU of the journal thread, if pinned.
    pub journal_pin_cpu: Option<usize>,
    /// `[admin]`, validated; `None` when the section is absent.
    pub admin: Option<AdminSettings>,
    /// `[metrics]`, validated.
    pub metrics: MetricsSettings,
    /// `[monitoring]`, validated.
    pub monitoring: MonitoringSettings,
    /// `[history]`: how much of each account's past is kept.
    pub history: crate::history::HistoryLimits,
    /// `[[venues]]`: the venues orders are routed to; venue `i` has session slot
    /// `sessions.len() + i`.
    pub venues: Vec<VenueSettings>,
}

/// Validated `[admin]` settings.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Address to bind.
    pub bind: SocketAddr,
    /// The listener's own certificate and key, if given (else `[tls]` or the dev certificate).
    pub tls: Option<TlsFiles>,
    /// CAs of client certificates: mutual TLS when set.
    pub client_ca: Option<PathBuf>,
    /// The OAuth issuer; `None`: `https://<bound address>`, known once bound.
    pub issuer: Option<String>,
    /// Access-token lifetime.
    pub access_token_ttl: Duration,
    /// Connections at once.
    pub max_connections: usize,
}

/// Validated `[core]` settings.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// Where the core loop runs.
    pub threading: crate::pipeline::Threading,
    /// Ingress queue capacity.
    pub ingress_capacity: usize,
    /// Per-session egress queue capacity.
    pub egress_capacity: usize,
    /// Busy-poll time before parking.
    pub idle_spin: Duration,
    /// How long a session's task polls for the answer to its request.
    pub reply_spin: Duration,
    /// CPU to pin the core thread to.
    pub pin_cpu: Option<usize>,
    /// End of the trading day, seconds after midnight UTC.
    pub trading_day_end_secs: u32,
}

impl Settings {
    /// The key vault: `<data_dir>/vault.bin`.
    pub fn vault_path(&self) -> PathBuf {
        self.data_dir.join("vault.bin")
    }

    /// The plaintext security audit log of a server without a master key:
    /// `<data_dir>/audit.jsonl` (with a key, [`Settings::audit_dir`]).
    pub fn audit_path(&self) -> PathBuf {
        self.data_dir.join("audit.jsonl")
    }

    /// The encrypted security audit logs: `<data_dir>/audit/`.
    pub fn audit_dir(&self) -> PathBuf {
        self.data_dir.join("audit")
    }

    /// True if at least one session authenticates its counterparty (so the server needs the
    /// master key and the vault). WebSocket listeners always do: every order there is signed;
    /// so does the admin API.
    pub fn any_authenticated_session(&self) -> bool {
        self.sessions.iter().any(|s| s.authenticate)
            || !self.ws_listeners.is_empty()
            || self.admin.is_some()
    }
}

/// Validated `[auth]` settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The master key file, if configured.
    pub master_key_file: Option<PathBuf>,
    /// Logon window, lockout and anomaly settings.
    pub config: AuthConfig,
}

/// A validated listener.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// Name for logs.
    pub name: String,
    /// Address to bind.
    pub bind: SocketAddr,
    /// TLS 1.3 or plain TCP.
    pub tls: bool,
    /// The BeginString served.
    pub begin_string: BeginString,
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one address (0: no limit).
    pub max_connections_per_ip: usize,
    /// Largest message.
    pub max_message_size: usize,
    /// Accept to Logon.
    pub logon_timeout: Duration,
    /// Slow-reader bound.
    pub max_unsent_bytes: usize,
}

/// A validated WebSocket listener.
#[derive(Debug, Clone)]
pub struct WsListenerSettings {
    /// Name for logs.
    pub name: String,
    /// Address to bind.
    pub bind: SocketAddr,
    /// TLS 1.3 or plain TCP (loopback only).
    pub tls: bool,
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one address (0: no limit).
    pub max_connections_per_ip: usize,
    /// Largest message.
    pub max_message_size: usize,
    /// Cancel-on-disconnect.
    pub cancel_on_disconnect: bool,
    /// Requests of one connection waiting for the order pipeline at once.
    pub max_pending_requests: usize,
    /// The listener's rate limits: request weight per IP per minute, orders per account per
    /// 10 s and per day, connections per IP per 5 minutes (`None`: the dialect's default).
    pub rate_limits: WsRateLimits,
}

/// Overrides of the WebSocket dialect's published rate limits (`None`: the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WsRateLimits {
    /// `REQUEST_WEIGHT` per IP address per minute.
    pub request_weight_per_minute: Option<u32>,
    /// `ORDERS` per account per 10 seconds.
    pub orders_per_10s: Option<u32>,
    /// `ORDERS` per account per day.
    pub orders_per_day: Option<u32>,
    /// Connection attempts per IP address in any 5 minutes.
    pub connections_per_5min: Option<u32>,
}

/// Validated `[tls]` paths.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain PEM.
    pub cert_file: PathBuf,
    /// Private key PEM.
    pub key_file: PathBuf,
}

/// A validated session.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// What the session state machine needs (message size and logon timeout are the listener's
    /// and are filled in per connection).
    pub config: SessionConfig,
    /// Logon window.
    pub schedule: Option<Schedule>,
    /// Store fsync policy.
    pub store_sync: SyncPolicy,
    /// Accounts allowed (`*` = any).
    pub accounts: Vec<String>,
    /// True if a Logon must be signed with an API key (`authentication = "required"`).
    pub authenticate: bool,
    /// The scope a key needs to log on.
    pub access: Scope,
    /// Cancel the session's resting orders when it ends.
    pub cancel_on_disconnect: bool,
    /// Market maker protection of its mass quotes.
    pub mmp: Option<crate::quotes::Mmp>,
    /// The accounts a drop copy session copies the executions of (`*` = every account);
    /// empty for an order-entry session.
    pub drop_copy: Vec<String>,
}

/// Bounds that keep a typo from becoming a resource problem. A FIX message the session
/// accepts must fit a message-store record (`log_inbound` keeps it), hence just under 16 MiB.
const MAX_MESSAGE_SIZE_LIMIT: u64 = portcullis_session::store::MAX_STORED_MESSAGE_LEN as u64;
const MIN_MESSAGE_SIZE: u64 = 256;
const MAX_UNSENT_LIMIT: u64 = 1024 * 1024 * 1024;
const MAX_CONNECTIONS_LIMIT: u64 = 100_000;
const MAX_TIMEOUT_SECS: u64 = 3600;
const MAX_HEARTBEAT_SECS: u32 = 86_400;
const MAX_ID_LEN: usize = 64;

/// Reads and validates a config file. A file whose bytes are exactly the embedded default is
/// treated as the embedded default (so `check-config --config configs/dev.toml` agrees with
/// `serve` without `--config`).
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let embedded = text == EMBEDDED_DEFAULT;
    parse(&text, embedded)
}

/// The embedded default, validated.
pub fn embedded_default() -> Result<Settings, ConfigError> {
    parse(EMBEDDED_DEFAULT, true)
}

/// Parses and validates config text. `embedded` marks the embedded default, the only config
/// allowed to have TLS listeners without a `[tls]` section (a dev certificate is generated).
pub fn parse(text: &str, embedded: bool) -> Result<Settings, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    validate(raw, embedded)
}

fn validate(raw: RawConfig, embedded: bool) -> Result<Settings, ConfigError> {
    if raw.data_dir.trim().is_empty() {
        return Err(ConfigError::invalid(
            "data_dir",
            "data_dir must not be empty",
        ));
    }
    if raw.listeners.is_empty() {
        return Err(ConfigError::invalid(
            "listeners",
            "listeners: at least one [[listeners]] entry is required",
        ));
    }

    let mut listeners = Vec::with_capacity(raw.listeners.len());
    let mut names = HashMap::new();
    let mut binds = HashMap::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let key = |k: &str| format!("listeners[{i}].{k}");
        if l.name.trim().is_empty() {
            return Err(ConfigError::invalid(
                key("name"),
                format!("{} must not be empty", key("name")),
            ));
        }
        if let Some(j) = names.insert(l.name.as_str(), i) {
            return Err(ConfigError::invalid(
                key("name"),
                format!(
                    "{} = {:?} is already the name of listeners[{j}]",
                    key("name"),
                    l.name
                ),
            ));
        }
        let bind = listener_bind(&key, &l.bind, l.tls, "\"127.0.0.1:9878\" or \"[::1]:9878\"")?;
        if bind.port() != 0 {
            if let Some(j) = binds.insert(bind, i) {
                return Err(ConfigError::invalid(
                    key("bind"),
                    format!(
                        "{} = {:?} is already bound by listeners[{j}]",
                        key("bind"),
                        l.bind
                    ),
                ));
            }
        }
        let begin_string = parse_begin_string(&key("begin_string"), &l.begin_string)?;
        let max_connections = in_range(
            &key("max_connections"),
            l.max_connections,
            1,
            MAX_CONNECTIONS_LIMIT,
        )?;
        let max_connections_per_ip = in_range(
            &key("max_connections_per_ip"),
            l.max_connections_per_ip,
            0,
            max_connections,
        )?;
        let max_message_size = in_range(
            &key("max_message_size"),
            l.max_message_size,
            MIN_MESSAGE_SIZE,
            MAX_MESSAGE_SIZE_LIMIT,
        )?;
        let logon_timeout_secs = in_range(
            &key("logon_timeout_secs"),
            l.logon_timeout_secs,
            1,
            MAX_TIMEOUT_SECS,
        )?;
        let max_unsent_bytes = in_range(
            &key("max_unsent_bytes"),
            l.max_unsent_bytes,
            1,
            MAX_UNSENT_LIMIT,
        )?;
        if max_unsent_bytes < max_message_size {
            return Err(ConfigError::invalid(
                key("max_unsent_bytes"),
                format!(
                    "{} = {max_unsent_bytes} is smaller than max_message_size ({max_message_size}): one reply must fit",
                    key("max_unsent_bytes")
                ),
            ));
        }
        if l.tls && raw.tls.is_none() && !embedded {
            return Err(ConfigError::invalid(
                key("tls"),
                format!(
                    "{} = true needs a [tls] section with cert_file and key_file (only the embedded default generates a dev certificate)",
                    key("tls")
                ),
            ));
        }
        listeners.push(ListenerSettings {
            name: l.name.clone(),
            bind,
            tls: l.tls,
            begin_string,
            max_connections: max_connections as usize,
            max_connections_per_ip: max_connections_per_ip as usize,
            max_message_size: max_message_size as usize,
            logon_timeout: Duration::from_secs(logon_timeout_secs),
            max_unsent_bytes: max_unsent_bytes as usize,
        });
    }

    let tls = match &raw.tls {
        None => None,
        Some(t) => {
            if t.cert_file.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "tls.cert_file",
                    "tls.cert_file must not be empty",
                ));
            }
            if t.key_file.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "tls.key_file",
                    "tls.key_file must not be empty",
                ));
            }
            Some(TlsFiles {
                cert_file: PathBuf::from(&t.cert_file),
                key_file: PathBuf::from(&t.key_file),
            })
        }
    };

    let served: HashSet<BeginString> = listeners.iter().map(|l| l.begin_string).collect();
    let mut seen: HashMap<(BeginString, &str, &str), usize> = HashMap::new();
    let mut sessions = Vec::with_capacity(raw.sessions.len());
    for (i, s) in raw.sessions.iter().enumerate() {
        let key = |k: &str| format!("sessions[{i}].{k}");
        let begin_string = parse_begin_string(&key("begin_string"), &s.begin_string)?;
        if !served.contains(&begin_string) {
            return Err(ConfigError::invalid(
                key("begin_string"),
                format!(
                    "{} = {:?}: no listener serves this BeginString",
                    key("begin_string"),
                    s.begin_string
                ),
            ));
        }
        check_id(&key("sender_comp_id"), &s.sender_comp_id)?;
        check_id(&key("target_comp_id"), &s.target_comp_id)?;
        if s.sender_comp_id == s.target_comp_id {
            return Err(ConfigError::invalid(
                key("target_comp_id"),
                format!("{} must differ from sender_comp_id", key("target_comp_id")),
            ));
        }
        if let Some(j) = seen.insert(
            (
                begin_string,
                s.sender_comp_id.as_str(),
                s.target_comp_id.as_str(),
            ),
            i,
        ) {
            return Err(ConfigError::invalid(
                format!("sessions[{i}]"),
                format!(
                    "sessions[{i}] ({begin_string} {} -> {}) duplicates sessions[{j}]",
                    s.sender_comp_id, s.target_comp_id
                ),
            ));
        }
        let [hb_min, hb_max] = s.heartbeat_range_secs;
        if hb_min > hb_max || hb_max > MAX_HEARTBEAT_SECS {
            return Err(ConfigError::invalid(
                key("heartbeat_range_secs"),
                format!(
                    "{} = [{hb_min}, {hb_max}] must be [min, max] with min <= max <= {MAX_HEARTBEAT_SECS}",
                    key("heartbeat_range_secs")
                ),
            ));
        }
        let tolerance = in_range(
            &key("sending_time_tolerance_secs"),
            s.sending_time_tolerance_secs,
            1,
            86_400,
        )?;
        let mut accounts_seen = HashSet::new();
        for (a, account) in s.accounts.iter().enumerate() {
            let akey = format!("sessions[{i}].accounts[{a}]");
            check_id(&akey, account)?;
            if !accounts_seen.insert(account.as_str()) {
                return Err(ConfigError::invalid(
                    akey.clone(),
                    format!("{akey} = {account:?} is listed twice"),
                ));
            }
        }
        let authenticate = s.authentication == RawAuthentication::Required;
        if authenticate && s.accounts.is_empty() {
            return Err(ConfigError::invalid(
                key("accounts"),
                format!(
                    "{} is empty: list the accounts this session may trade for (or \"*\" for any); with none, no Logon could succeed",
                    key("accounts")
                ),
            ));
        }
        if !authenticate {
            if s.require_message_signature {
                return Err(ConfigError::invalid(
                    key("require_message_signature"),
                    format!(
                        "{} = true needs authentication = \"required\": signatures are checked with the key the session logged on with",
                        key("require_message_signature")
                    ),
                ));
            }
            if let Some(l) = listeners
                .iter()
                .find(|l| l.begin_string == begin_string && !l.bind.ip().is_loopback())
            {
                return Err(ConfigError::invalid(
                    key("authentication"),
                    format!(
                        "{} = \"none\" is only allowed when every listener serving {begin_string} is on a loopback address; listener {:?} binds {}",
                        key("authentication"),
                        l.name,
                        l.bind
                    ),
                ));
            }
        }
        let schedule = match &s.schedule {
            None => None,
            Some(sch) => Some(parse_schedule(&key("schedule"), sch)?),
        };
        let mut config = SessionConfig::new(begin_string, &s.sender_comp_id, &s.target_comp_id);
        match (&s.default_appl_ver_id, begin_string) {
            (None, _) => {}
            (Some(v), BeginString::Fixt11) => {
                if v.is_empty() || v.len() > 8 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(ConfigError::invalid(
                        key("default_appl_ver_id"),
                        format!(
                            "{} = {v:?} is not an ApplVerID (e.g. \"9\" for FIX 5.0 SP2)",
                            key("default_appl_ver_id")
                        ),
                    ));
                }
                config.default_appl_ver_id = v.clone();
            }
            (Some(_), _) => {
                return Err(ConfigError::invalid(
                    key("default_appl_ver_id"),
                    format!(
                        "{} is only allowed on FIXT.1.1 sessions",
                        key("default_appl_ver_id")
                    ),
                ));
            }
        }
        config.heartbeat_range = (hb_min, hb_max);
        config.sending_time_tolerance = Duration::from_secs(tolerance);
        config.reset = ResetPolicy {
            on_logon: s.reset_on_logon,
            on_logout: s.reset_on_logout,
            on_disconnect: s.reset_on_disconnect,
        };
        config.require_message_signature = s.require_message_signature;
        config.log_inbound = s.log_inbound;
        let cancel_on_disconnect = s
            .cancel_on_disconnect
            .unwrap_or(raw.engine.cancel_on_disconnect);
        if !s.drop_copy.is_empty() {
            if s.access != RawAccess::Read {
                return Err(ConfigError::invalid(
                    key("drop_copy"),
                    format!(
                        "{} makes a drop copy session, which takes no orders: it needs access = \"read\"",
                        key("drop_copy")
                    ),
                ));
            }
            for (j, a) in s.drop_copy.iter().enumerate() {
                let k = key(&format!("drop_copy[{j}]"));
                check_id(&k, a)?;
                if s.drop_copy[..j].contains(a)
                    || (a == portcullis_auth::ANY_ACCOUNT && s.drop_copy.len() > 1)
                {
                    return Err(ConfigError::invalid(
                        k.clone(),
                        format!("{k} = {a:?}: list each account once, or \"*\" alone"),
                    ));
                }
            }
        }
        let mmp = match &s.mmp {
            None => None,
            Some(m) => Some(parse_mmp(&key("mmp"), m)?),
        };
        sessions.push(SessionSettings {
            drop_copy: s.drop_copy.clone(),
            cancel_on_disconnect,
            mmp,
            config,
            schedule,
            store_sync: match s.store_sync {
                RawStoreSync::Always => SyncPolicy::Always,
                RawStoreSync::Never => SyncPolicy::Never,
            },
            accounts: s.accounts.clone(),
            authenticate,
            access: match s.access {
                RawAccess::Trade => Scope::Trade,
                RawAccess::Read => Scope::Read,
            },
        });
    }

    let auth = validate_auth(&raw.auth)?;
    let core = validate_core(&raw.core)?;
    let accounts = account_table(&raw.core.accounts, &sessions)?;
    for (i, s) in sessions.iter().enumerate() {
        for (j, a) in s.drop_copy.iter().enumerate() {
            if a != portcullis_auth::ANY_ACCOUNT && !accounts.contains(a) {
                let k = format!("sessions[{i}].drop_copy[{j}]");
                return Err(ConfigError::invalid(
                    k.clone(),
                    format!("{k} = {a:?} is not an account (list it in a session's accounts or in core.accounts)"),
                ));
            }
        }
    }
    validate_engine(&raw.engine)?;
    validate_risk(&raw.risk, &accounts)?;
    let venues = validate_venues(&raw.venues, &raw.instruments, &raw.option_series)?;
    if (sessions.len() + venues.len()) as u64 > u64::from(raw.risk.max_sessions) {
        return Err(ConfigError::invalid(
            "risk.max_sessions",
            format!(
                "risk.max_sessions = {} is less than the {} configured sessions and venues (each has its own session slot)",
                raw.risk.max_sessions,
                sessions.len() + venues.len()
            ),
        ));
    }
    let ws_listeners = validate_ws_listeners(&raw.ws_listeners, &listeners)?;
    validate_instruments(&raw.instruments, &raw.option_series)?;
    let journal = journal_config(&raw.journal, &raw.data_dir)?;
    if let Some(cpu) = raw.journal.pin_cpu {
        in_range("journal.pin_cpu", cpu as u64, 0, 4095)?;
    }
    let admin = raw
        .admin
        .as_ref()
        .map(|a| validate_admin(a, raw.tls.is_some() || embedded))
        .transpose()?;
    if let Some(a) = &admin {
        let taken = a.bind.port() != 0
            && (listeners.iter().any(|l| l.bind == a.bind)
                || ws_listeners.iter().any(|l| l.bind == a.bind));
        if taken {
            return Err(ConfigError::invalid(
                "admin.bind",
                format!(
                    "admin.bind = \"{}\" is already bound by another listener",
                    a.bind
                ),
            ));
        }
    }
    let metrics = validate_metrics(&raw.metrics)?;
    let monitoring = validate_monitoring(&raw.monitoring)?;
    let max = crate::history::HistoryLimits::MAX as u64;
    in_range(
        "history.orders_per_account",
        raw.history.orders_per_account as u64,
        0,
        max,
    )?;
    in_range(
        "history.trades_per_account",
        raw.history.trades_per_account as u64,
        0,
        max,
    )?;

    Ok(Settings {
        data_dir: PathBuf::from(&raw.data_dir),
        listeners,
        ws_listeners,
        tls,
        sessions,
        auth,
        embedded,
        engine: raw.engine,
        risk: raw.risk,
        instruments: raw.instruments,
        option_series: raw.option_series,
        core,
        accounts,
        journal,
        journal_pin_cpu: raw.journal.pin_cpu,
        admin,
        metrics,
        monitoring,
        history: raw.history,
        venues,
    })
}

/// Checks `[[venues]]`: names, addresses (plain TCP only to loopback), TLS files, CompIDs,
/// credentials, and the routed instruments (explicitly listed, each routed once).
fn validate_venues(
    raw: &[RawVenue],
    instruments: &[InstrumentConfig],
    series: &[OptionSeriesConfig],
) -> Result<Vec<VenueSettings>, ConfigError> {
    let mut routed_series: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<VenueSettings> = Vec::with_capacity(raw.len());
    let mut routed: HashMap<&str, usize> = HashMap::new();
    for (i, v) in raw.iter().enumerate() {
        let key = |k: &str| format!("venues[{i}].{k}");
        let name_ok = !v.name.is_empty()
            && v.name.len() <= 32
            && v.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(ConfigError::invalid(
                key("name"),
                format!(
                    "{} = {:?} must be 1 to 32 letters, digits, '-' or '_'",
                    key("name"),
                    v.name
                ),
            ));
        }
        if let Some(j) = out.iter().position(|o| o.name == v.name) {
            return Err(ConfigError::invalid(
                key("name"),
                format!("{} = {:?} is also venues[{j}]'s name", key("name"), v.name),
            ));
        }
        let Some((host, _)) = v
            .connect
            .rsplit_once(':')
            .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
        else {
            return Err(ConfigError::invalid(
                key("connect"),
                format!(
                    "{} = {:?} must be host:port (port 1 to 65535)",
                    key("connect"),
                    v.connect
                ),
            ));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let tls = if v.tls {
            let server_name = v.server_name.clone().unwrap_or_else(|| host.to_owned());
            if rustls::pki_types::ServerName::try_from(server_name.clone()).is_err() {
                return Err(ConfigError::invalid(
                    key("server_name"),
                    format!(
                        "{}: {server_name:?} is not a DNS name or an IP address",
                        key("server_name")
                    ),
                ));
            }
            Some((v.ca_file.as_ref().map(PathBuf::from), server_name))
        } else {
            if !loopback {
                return Err(ConfigError::invalid(
                    key("tls"),
                    format!(
                        "{} = false is only allowed when connect is a loopback address; {:?} is not",
                        key("tls"),
                        v.connect
                    ),
                ));
            }
            if v.ca_file.is_some() || v.server_name.is_some() {
                return Err(ConfigError::invalid(
                    key("tls"),
                    format!(
                        "{} = false: ca_file and server_name apply to TLS only",
                        key("tls")
                    ),
                ));
            }
            None
        };
        let begin_string = parse_begin_string(&key("begin_string"), &v.begin_string)?;
        check_id(&key("sender_comp_id"), &v.sender_comp_id)?;
        check_id(&key("target_comp_id"), &v.target_comp_id)?;
        if v.sender_comp_id == v.target_comp_id {
            return Err(ConfigError::invalid(
                key("target_comp_id"),
                format!("{} must differ from sender_comp_id", key("target_comp_id")),
            ));
        }
        let credentials = match (&v.username, &v.secret_file) {
            (None, None) => None,
            (Some(u), Some(f)) => {
                check_id(&key("username"), u)?;
                if f.is_empty() {
                    return Err(ConfigError::invalid(
                        key("secret_file"),
                        format!("{} must not be empty", key("secret_file")),
                    ));
                }
                Some((u.clone(), PathBuf::from(f)))
            }
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    key("secret_file"),
                    format!(
                        "{} is missing: username signs the Logon with the secret it holds",
                        key("secret_file")
                    ),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    key("username"),
                    format!(
                        "{} is missing: secret_file needs the key id it belongs to",
                        key("username")
                    ),
                ))
            }
        };
        if let Some(a) = &v.account {
            check_id(&key("account"), a)?;
        }
        if v.instruments.is_empty() && v.option_series.is_empty() {
            return Err(ConfigError::invalid(
                key("instruments"),
                format!(
                    "{} is empty: list the symbols (or option_series) routed to this venue",
                    key("instruments")
                ),
            ));
        }
        for (j, u) in v.option_series.iter().enumerate() {
            let k = key(&format!("option_series[{j}]"));
            if !series.iter().any(|s| s.underlying == *u) {
                return Err(ConfigError::invalid(
                    k.clone(),
                    format!("{k} = {u:?} is not the underlying of an [[option_series]]"),
                ));
            }
            if let Some(other) = routed_series.insert(u.as_str(), i) {
                return Err(ConfigError::invalid(
                    k.clone(),
                    format!("{k} = {u:?} is already routed by venues[{other}]"),
                ));
            }
        }
        for (j, sym) in v.instruments.iter().enumerate() {
            let k = key(&format!("instruments[{j}]"));
            if !instruments.iter().any(|c| c.symbol == *sym) {
                return Err(ConfigError::invalid(
                    k.clone(),
                    format!("{k} = {sym:?} is not an instrument listed in [[instruments]]"),
                ));
            }
            if let Some(other) = routed.insert(sym.as_str(), i) {
                return Err(ConfigError::invalid(
                    k.clone(),
                    format!("{k} = {sym:?} is already routed by venues[{other}]"),
                ));
            }
        }
        let heartbeat = in_range(&key("heartbeat_secs"), v.heartbeat_secs.into(), 1, 3600)?;
        let reconnect = in_range(&key("reconnect_secs"), v.reconnect_secs, 1, 3600)?;
        let tolerance = in_range(
            &key("sending_time_tolerance_secs"),
            v.sending_time_tolerance_secs,
            1,
            86_400,
        )?;
        let mut config = SessionConfig::new(begin_string, &v.sender_comp_id, &v.target_comp_id);
        config.sending_time_tolerance = Duration::from_secs(tolerance);
        config.heartbeat_range = (1, MAX_HEARTBEAT_SECS);
        // The venue's reports are the record of what happened to routed orders: kept next to
        // what was sent (`portcullis fix-log --venue NAME`; encrypted stores only).
        config.log_inbound = true;
        out.push(VenueSettings {
            name: v.name.clone(),
            connect: v.connect.clone(),
            tls,
            config,
            instruments: v.instruments.clone(),
            option_series: v.option_series.clone(),
            credentials,
            account: v.account.clone(),
            heartbeat_secs: heartbeat as u32,
            reconnect: Duration::from_secs(reconnect),
            reset_on_logon: v.reset_on_logon,
            store_sync: match v.store_sync {
                RawStoreSync::Always => SyncPolicy::Always,
                RawStoreSync::Never => SyncPolicy::Never,
            },
        });
    }
    Ok(out)
}

/// Checks `[admin]`: the address, a certificate (its own, `[tls]`'s, or the embedded
/// default's dev certificate), the issuer URL, the token lifetime.
fn validate_admin(a: &RawAdmin, have_server_cert: bool) -> Result<AdminSettings, ConfigError> {
    let bind: SocketAddr = a.bind.parse().map_err(|_| {
        ConfigError::invalid(
            "admin.bind",
            format!(
                "admin.bind = {:?} is not an IP:PORT address (e.g. \"127.0.0.1:9444\")",
                a.bind
            ),
        )
    })?;
    let path = |key: &str, v: &str| {
        if v.trim().is_empty() {
            Err(ConfigError::invalid(
                key,
                format!("{key} must not be empty"),
            ))
        } else {
            Ok(PathBuf::from(v))
        }
    };
    let tls = match (&a.cert_file, &a.key_file) {
        (Some(c), Some(k)) => Some(TlsFiles {
            cert_file: path("admin.cert_file", c)?,
            key_file: path("admin.key_file", k)?,
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "admin.key_file",
                "admin.key_file is missing: admin.cert_file needs its private key",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "admin.cert_file",
                "admin.cert_file is missing: admin.key_file needs its certificate",
            ))
        }
    };
    if tls.is_none() && !have_server_cert {
        return Err(ConfigError::invalid(
            "admin.cert_file",
            "the admin API is HTTPS only: set admin.cert_file and admin.key_file, or a [tls] section",
        ));
    }
    let client_ca = a
        .client_ca
        .as_deref()
        .map(|c| path("admin.client_ca", c))
        .transpose()?;
    let issuer = match &a.issuer {
        None => None,
        Some(i) => {
            let rest = i.strip_prefix("https://").unwrap_or("");
            if rest.is_empty() || rest.ends_with('/') || rest.contains(['?', '#', ' ']) {
                return Err(ConfigError::invalid(
                    "admin.issuer",
                    format!(
                        "admin.issuer = {i:?} is not an https:// URL without a trailing slash, query or fragment"
                    ),
                ));
            }
            Some(i.clone())
        }
    };
    let ttl = in_range(
        "admin.access_token_ttl_secs",
        a.access_token_ttl_secs,
        1,
        86_400,
    )?;
    let max_connections = in_range(
        "admin.max_connections",
        a.max_connections,
        1,
        MAX_CONNECTIONS_LIMIT,
    )?;
    Ok(AdminSettings {
        bind,
        tls,
        client_ca,
        issuer,
        access_token_ttl: Duration::from_secs(ttl),
        max_connections: max_connections as usize,
    })
}

/// Checks the `[[ws_listeners]]`: names unique, addresses parse and are not bound twice (nor
/// by a FIX listener), plain TCP only on loopback, limits in range.
fn validate_ws_listeners(
    raw: &[RawWsListener],
    fix: &[ListenerSettings],
) -> Result<Vec<WsListenerSettings>, ConfigError> {
    let mut out: Vec<WsListenerSettings> = Vec::with_capacity(raw.len());
    for (i, l) in raw.iter().enumerate() {
        let key = |k: &str| format!("ws_listeners[{i}].{k}");
        if l.name.trim().is_empty() {
            return Err(ConfigError::invalid(
                key("name"),
                format!("{} must not be empty", key("name")),
            ));
        }
        if let Some(j) = out.iter().position(|o| o.name == l.name) {
            return Err(ConfigError::invalid(
                key("name"),
                format!(
                    "{} = {:?} is already the name of ws_listeners[{j}]",
                    key("name"),
                    l.name
                ),
            ));
        }
        let bind = listener_bind(&key, &l.bind, l.tls, "\"127.0.0.1:9443\"")?;
        let taken = bind.port() != 0
            && (fix.iter().any(|f| f.bind == bind) || out.iter().any(|o| o.bind == bind));
        if taken {
            return Err(ConfigError::invalid(
                key("bind"),
                format!(
                    "{} = {:?} is already bound by another listener",
                    key("bind"),
                    l.bind
                ),
            ));
        }
        let max_connections = in_range(
            &key("max_connections"),
            l.max_connections,
            1,
            MAX_CONNECTIONS_LIMIT,
        )?;
        let max_connections_per_ip = in_range(
            &key("max_connections_per_ip"),
            l.max_connections_per_ip,
            0,
            max_connections,
        )?;
        let max_message_size = in_range(
            &key("max_message_size"),
            l.max_message_size,
            1024,
            16 * 1024 * 1024,
        )?;
        let max_pending_requests = in_range(
            &key("max_pending_requests"),
            l.max_pending_requests,
            1,
            MAX_PENDING_REQUESTS_LIMIT,
        )?;
        let limit = |k: &str, v: Option<u64>| -> Result<Option<u32>, ConfigError> {
            v.map(|v| in_range(&key(k), v, 1, u64::from(u32::MAX)).map(|v| v as u32))
                .transpose()
        };
        let rate_limits = WsRateLimits {
            request_weight_per_minute: limit(
                "request_weight_per_minute",
                l.request_weight_per_minute,
            )?,
            orders_per_10s: limit("orders_per_10s", l.orders_per_10s)?,
            orders_per_day: limit("orders_per_day", l.orders_per_day)?,
            connections_per_5min: limit("connections_per_5min", l.connections_per_5min)?,
        };
        out.push(WsListenerSettings {
            name: l.name.clone(),
            bind,
            tls: l.tls,
            max_connections: max_connections as usize,
            max_connections_per_ip: max_connections_per_ip as usize,
            max_message_size: max_message_size as usize,
            cancel_on_disconnect: l.cancel_on_disconnect,
            max_pending_requests: max_pending_requests as usize,
            rate_limits,
        });
    }
    Ok(out)
}

/// The journal's config from `[journal]`: the library's defaults, the directory under
/// `data_dir` unless given, and the library's range checks (the error names the key).
fn journal_config(
    raw: &RawJournal,
    data_dir: &str,
) -> Result<portcullis_journal::JournalConfig, ConfigError> {
    let mut c = portcullis_journal::JournalConfig::new(match &raw.dir {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(data_dir).join("journal"),
    });
    c.fsync = raw.fsync;
    if let Some(b) = raw.segment_bytes {
        c.segment_bytes = b;
    }
    if let Some(n) = raw.snapshot_every {
        c.snapshot_every = n;
    }
    c.validate().map_err(|e| {
        let msg = e.to_string();
        let key = ["dir", "fsync", "segment_bytes"]
            .into_iter()
            .find(|k| msg.contains(&format!("journal.{k}")))
            .map_or_else(|| "journal".to_owned(), |k| format!("journal.{k}"));
        ConfigError::invalid(key, msg)
    })?;
    Ok(c)
}

/// Largest ingress queue (commands) and per-session egress queue (reports).
const MAX_INGRESS: u64 = 1 << 24;
const MAX_EGRESS: u64 = 1 << 20;
/// Longest busy-poll before parking: a second of spinning is already a wasted CPU.
const MAX_SPIN_US: u64 = 1_000_000;

fn validate_core(raw: &RawCore) -> Result<CoreSettings, ConfigError> {
    let ingress = in_range(
        "core.ingress_capacity",
        raw.ingress_capacity,
        1,
        MAX_INGRESS,
    )?;
    let egress = in_range("core.egress_capacity", raw.egress_capacity, 1, MAX_EGRESS)?;
    let spin = in_range("core.idle_spin_us", raw.idle_spin_us, 0, MAX_SPIN_US)?;
    // A task that spins blocks its worker thread: keep it short.
    let reply_spin = in_range("core.reply_spin_us", raw.reply_spin_us, 0, 1000)?;
    if let Some(cpu) = raw.pin_cpu {
        in_range("core.pin_cpu", cpu as u64, 0, 4095)?;
        if raw.threading == RawThreading::Shared {
            return Err(ConfigError::invalid(
                "core.pin_cpu",
                "pins the dedicated core thread; with threading = \"shared\" there is none \
                 (pin the whole process instead, e.g. with taskset)",
            ));
        }
    }
    let end = parse_time_of_day(&raw.trading_day_end)
        .ok_or_else(|| bad_time("core.trading_day_end", &raw.trading_day_end))?;
    Ok(CoreSettings {
        threading: match raw.threading {
            RawThreading::Dedicated => crate::pipeline::Threading::Dedicated,
            RawThreading::Shared => crate::pipeline::Threading::Shared,
        },
        ingress_capacity: ingress as usize,
        egress_capacity: egress as usize,
        idle_spin: Duration::from_micros(spin),
        reply_spin: Duration::from_micros(reply_spin),
        pin_cpu: raw.pin_cpu,
        trading_day_end_secs: end,
    })
}

/// `core.accounts`, then every session's accounts, each once, without `*`.
fn account_table(
    extra: &[String],
    sessions: &[SessionSettings],
) -> Result<Vec<String>, ConfigError> {
    let mut table: Vec<String> = Vec::new();
    for (i, a) in extra.iter().enumerate() {
        let key = format!("core.accounts[{i}]");
        check_id(&key, a)?;
        if a == portcullis_auth::ANY_ACCOUNT {
            return Err(ConfigError::invalid(
                key.clone(),
                format!("{key} = \"*\" is not an account name"),
            ));
        }
        if table.contains(a) {
            return Err(ConfigError::invalid(
                key.clone(),
                format!("{key} = {a:?} is listed twice"),
            ));
        }
        table.push(a.clone());
    }
    for s in sessions {
        for a in &s.accounts {
            if a != portcullis_auth::ANY_ACCOUNT && !table.contains(a) {
                table.push(a.clone());
            }
        }
    }
    Ok(table)
}

fn validate_engine(e: &EngineConfig) -> Result<(), ConfigError> {
    // The same bounds Core::new enforces, checked here so check-config reports them too.
    in_range(
        "engine.max_resting_orders",
        u64::from(e.max_resting_orders),
        1,
        1 << 24,
    )?;
    in_range(
        "engine.levels_per_side",
        u64::from(e.levels_per_side),
        0,
        1 << 16,
    )?;
    Ok(())
}

fn validate_risk(r: &RiskConfig, accounts: &[String]) -> Result<(), ConfigError> {
    r.validate().map_err(|e| {
        let key = e
            .key()
            .map_or_else(|| "risk".to_owned(), |k| format!("risk.{k}"));
        ConfigError::invalid(key, e.to_string())
    })?;
    for name in r.accounts.keys() {
        if !accounts.contains(name) {
            let key = format!("risk.accounts.{name}");
            return Err(ConfigError::invalid(
                key.clone(),
                format!(
                    "{key}: no such account (accounts are those of the sessions and core.accounts)"
                ),
            ));
        }
    }
    Ok(())
}

/// Lists the instruments once (as of now) so that a bad symbol, decimal or rule is reported
/// at load, with the key of the entry it is in.
fn validate_instruments(
    instruments: &[InstrumentConfig],
    series: &[OptionSeriesConfig],
) -> Result<(), ConfigError> {
    let now_ms = portcullis_auth::clock::now_ms();
    portcullis_engine::Instruments::new(instruments, series, now_ms)
        .map(|_| ())
        .map_err(|e| instrument_error(&e, instruments, series))
}

/// The key of the entry an instrument error is about, with the error.
pub fn instrument_error(
    e: &InstrumentConfigError,
    instruments: &[InstrumentConfig],
    series: &[OptionSeriesConfig],
) -> ConfigError {
    let by_symbol = |s: &str| {
        instruments
            .iter()
            .rposition(|i| i.symbol == s)
            .map(|i| format!("instruments[{i}]"))
    };
    let by_underlying = |u: &str| {
        series
            .iter()
            .position(|x| x.underlying == u)
            .map(|i| format!("option_series[{i}]"))
    };
    // Series errors name the entry "option series <underlying>".
    let by_what =
        |w: &str| by_symbol(w).or_else(|| w.strip_prefix("option series ").and_then(by_underlying));
    let key = match e {
        InstrumentConfigError::Symbol { symbol, .. } | InstrumentConfigError::Duplicate(symbol) => {
            by_symbol(symbol)
        }
        InstrumentConfigError::Decimal { what, field, .. } => {
            by_what(what).map(|k| format!("{k}.{field}"))
        }
        InstrumentConfigError::Rules { what, .. } | InstrumentConfigError::Scales(what) => {
            by_what(what)
        }
        InstrumentConfigError::Series { underlying, .. } => by_underlying(underlying),
        InstrumentConfigError::TooMany => None,
    }
    .unwrap_or_else(|| "instruments".to_owned());
    ConfigError::invalid(key.clone(), format!("{key}: {e}"))
}

fn validate_auth(raw: &RawAuth) -> Result<AuthSettings, ConfigError> {
    let master_key_file = match &raw.master_key_file {
        None => None,
        Some(f) if f.trim().is_empty() => {
            return Err(ConfigError::invalid(
                "auth.master_key_file",
                "auth.master_key_file must not be empty (leave it out to use PORTCULLIS_MASTER_KEY only)",
            ))
        }
        Some(f) => Some(PathBuf::from(f)),
    };
    let d = AuthConfig::default();
    let config = AuthConfig {
        logon_window_ms: raw.logon_window_ms.unwrap_or(d.logon_window_ms),
        max_failures: raw.max_failures.unwrap_or(d.max_failures),
        failure_window_ms: raw.failure_window_ms.unwrap_or(d.failure_window_ms),
        lockout_base_ms: raw.lockout_base_ms.unwrap_or(d.lockout_base_ms),
        lockout_max_ms: raw.lockout_max_ms.unwrap_or(d.lockout_max_ms),
        signature_burst_threshold: raw
            .signature_burst_threshold
            .unwrap_or(d.signature_burst_threshold),
        signature_burst_window_ms: raw
            .signature_burst_window_ms
            .unwrap_or(d.signature_burst_window_ms),
        multi_ip_window_ms: raw.multi_ip_window_ms.unwrap_or(d.multi_ip_window_ms),
    };
    config.validate().map_err(|e| {
        ConfigError::invalid(
            format!("auth.{}", e.field),
            format!(
                "auth.{} = {}: {}",
                e.field,
                auth_value(&config, e.field),
                e.problem
            ),
        )
    })?;
    Ok(AuthSettings {
        master_key_file,
        config,
    })
}

/// The value of one [`AuthConfig`] setting, for error messages.
fn auth_value(c: &AuthConfig, field: &str) -> String {
    match field {
        "logon_window_ms" => c.logon_window_ms.to_string(),
        "max_failures" => c.max_failures.to_string(),
        "failure_window_ms" => c.failure_window_ms.to_string(),
        "lockout_base_ms" => c.lockout_base_ms.to_string(),
        "lockout_max_ms" => c.lockout_max_ms.to_string(),
        "signature_burst_threshold" => c.signature_burst_threshold.to_string(),
        "signature_burst_window_ms" => c.signature_burst_window_ms.to_string(),
        "multi_ip_window_ms" => c.multi_ip_window_ms.to_string(),
        _ => "?".to_owned(),
    }
}

fn parse_begin_string(key: &str, value: &str) -> Result<BeginString, ConfigError> {
    value
        .parse()
        .map_err(|e: String| ConfigError::invalid(key, format!("{key}: {e}")))
}

fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            key,
            format!("{key} = {value} is out of range ({min}..={max})"),
        ));
    }
    Ok(value)
}

/// CompIDs and account names: 1..=64 visible ASCII characters (no spaces, no control
/// characters such as SOH), so they are safe in FIX fields, logs and file names.
fn check_id(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() || value.len() > MAX_ID_LEN || !value.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ConfigError::invalid(
            key,
            format!("{key} = {value:?} must be 1 to {MAX_ID_LEN} visible ASCII characters"),
        ));
    }
    Ok(())
}

fn parse_mmp(key: &str, m: &RawMmp) -> Result<crate::quotes::Mmp, ConfigError> {
    if !(1..=3_600_000).contains(&m.interval_ms) {
        return Err(ConfigError::invalid(
            format!("{key}.interval_ms"),
            format!(
                "{key}.interval_ms = {}: must be 1 to 3600000",
                m.interval_ms
            ),
        ));
    }
    if m.frozen_ms > 86_400_000 {
        return Err(ConfigError::invalid(
            format!("{key}.frozen_ms"),
            format!(
                "{key}.frozen_ms = {}: must be at most 86400000",
                m.frozen_ms
            ),
        ));
    }
    let qty = match portcullis_types::Qty::parse(m.qty.as_bytes(), crate::quotes::MMP_QTY_SCALE) {
        Ok(q) if q.0 > 0 => i128::from(q.0),
        _ => {
            return Err(ConfigError::invalid(
                format!("{key}.qty"),
                format!(
                    "{key}.qty = {:?}: must be a positive decimal with at most 8 decimal places",
                    m.qty
                ),
            ))
        }
    };
    Ok(crate::quotes::Mmp {
        interval_ns: m.interval_ms as i64 * 1_000_000,
        qty,
        frozen_ns: m.frozen_ms as i64 * 1_000_000,
    })
}

fn parse_schedule(key: &str, s: &RawSchedule) -> Result<Schedule, ConfigError> {
    let start =
        parse_time_of_day(&s.start).ok_or_else(|| bad_time(&format!("{key}.start"), &s.start))?;
    let end = parse_time_of_day(&s.end).ok_or_else(|| bad_time(&format!("{key}.end"), &s.end))?;
    if start == end {
        return Err(ConfigError::invalid(
            format!("{key}.end"),
            format!(
                "{key}: start and end are equal; leave the schedule out for a session open all day"
            ),
        ));
    }
    let utc_offset_secs = parse_time_zone(&s.time_zone).ok_or_else(|| {
        ConfigError::invalid(
            format!("{key}.time_zone"),
            format!(
                "{key}.time_zone = {:?} must be \"UTC\" or a fixed offset like \"+02:00\" or \"-05:30\"",
                s.time_zone
            ),
        )
    })?;
    Ok(Schedule {
        start,
        end,
        utc_offset_secs,
    })
}

fn bad_time(key: &str, value: &str) -> ConfigError {
    ConfigError::invalid(
        key,
        format!("{key} = {value:?} is not a time of day HH:MM:SS (00:00:00 to 23:59:59)"),
    )
}

fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => None,
    }
}

/// `HH:MM:SS` as seconds since midnight.
fn parse_time_of_day(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, sec) = (
        two_digits(&b[0..2])?,
        two_digits(&b[3..5])?,
        two_digits(&b[6..8])?,
    );
    (h < 24 && m < 60 && sec < 60).then_some(h * 3600 + m * 60 + sec)
}

/// `UTC`, `Z`, or `±HH:MM` (up to ±14:00) as seconds east of UTC.
fn parse_time_zone(s: &str) -> Option<i32> {
    if s == "UTC" || s == "Z" {
        return Some(0);
    }
    let b = s.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = (two_digits(&b[1..3])?, two_digits(&b[4..6])?);
    if m >= 60 || h * 60 + m > 14 * 60 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60) as i32)
}

/// A listener's `bind` address; plain TCP (`tls = false`) is refused off loopback.
fn listener_bind(
    key: &dyn Fn(&str) -> String,
    bind: &str,
    tls: bool,
    example: &str,
) -> Result<SocketAddr, ConfigError> {
    let addr: SocketAddr = bind.parse().map_err(|_| {
        ConfigError::invalid(
            key("bind"),
            format!(
                "{} = {bind:?} is not an IP:PORT address (e.g. {example})",
                key("bind")
            ),
        )
    })?;
    if !tls && !addr.ip().is_loopback() {
        return Err(ConfigError::invalid(
            key("tls"),
            format!(
                "{} = false is only allowed on a loopback address",
                key("tls")
            ),
        ));
    }
    Ok(addr)
}

// -----------------------------------------------------------------------------------------
// [metrics] and [monitoring]
// -----------------------------------------------------------------------------------------

/// The `[metrics]` section: an optional plain-HTTP listener answering `GET /metrics` with the
/// Prometheus text format (the admin API serves the same over HTTPS).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `IP:PORT` of the listener, e.g. `127.0.0.1:9464` (port 0 picks a free port, printed at
    /// start as `listening: metrics http://ADDR`). Plain HTTP without authentication, so only
    /// a loopback address is accepted: scrape from the same host, or through a local agent.
    /// Absent = no listener.
    pub bind: Option<String>,
}

/// The `[monitoring]` section: where security events go besides the audit log and the
/// `portcullis_security_events_total` counter, and when rejects count as a spike.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMonitoring {
    /// `https://HOST[:PORT][/PATH]`: each security event is POSTed there as one JSON object,
    /// from a background task (never from a socket task or the core thread). HTTPS only.
    /// Absent = no webhook.
    pub webhook_url: Option<String>,
    /// Time for one delivery attempt (connect, TLS, request, response), in milliseconds.
    /// Default 5000.
    pub webhook_timeout_ms: u64,
    /// Further attempts after a failed one, with back-off doubling from 500 ms up to 30 s.
    /// Default 3.
    pub webhook_retries: u64,
    /// PEM file of the certificates to trust for the webhook instead of the public web PKI
    /// roots (a private CA, or the receiver's own self-signed certificate). Absent = the
    /// Mozilla root program's CAs (compiled in).
    pub webhook_ca_file: Option<String>,
    /// Events that may wait for delivery; when full, new events are dropped and counted
    /// (`portcullis_webhook_events_total{result="dropped"}`). Default 1024.
    pub webhook_queue: u64,
    /// Rejects of one account (orders refused by the core thread) within
    /// `reject_spike_window_ms` that raise a `reject_rate_spike` security event (at most one
    /// per window and account). 0 = off. Default 50.
    pub reject_spike_threshold: u64,
    /// The window of `reject_spike_threshold`, in milliseconds (fixed windows). Default 10000.
    pub reject_spike_window_ms: u64,
}

impl Default for RawMonitoring {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_timeout_ms: 5000,
            webhook_retries: 3,
            webhook_ca_file: None,
            webhook_queue: 1024,
            reject_spike_threshold: 50,
            reject_spike_window_ms: 10_000,
        }
    }
}

/// Validated `[metrics]` settings.
#[derive(Debug, Clone, Default)]
pub struct MetricsSettings {
    /// The plain-HTTP listener's address (loopback), if any.
    pub bind: Option<SocketAddr>,
}

/// Validated `[monitoring]` settings.
#[derive(Debug, Clone)]
pub struct MonitoringSettings {
    /// The webhook, if any.
    pub webhook: Option<crate::webhook::WebhookSettings>,
    /// Rejects per account and window that are a spike (0 = off).
    pub reject_spike_threshold: u64,
    /// The spike window.
    pub reject_spike_window: Duration,
}

fn validate_metrics(raw: &RawMetrics) -> Result<MetricsSettings, ConfigError> {
    let Some(bind) = &raw.bind else {
        return Ok(MetricsSettings::default());
    };
    let addr: SocketAddr = bind.parse().map_err(|_| {
        ConfigError::invalid(
            "metrics.bind",
            format!("metrics.bind = {bind:?} is not an IP:PORT address (e.g. \"127.0.0.1:9464\")"),
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(ConfigError::invalid(
            "metrics.bind",
            format!(
                "metrics.bind = {bind:?}: the metrics listener is plain HTTP and only allowed on a loopback address (scrape the admin API's /metrics over HTTPS from elsewhere)"
            ),
        ));
    }
    Ok(MetricsSettings { bind: Some(addr) })
}

fn validate_monitoring(raw: &RawMonitoring) -> Result<MonitoringSettings, ConfigError> {
    let timeout = in_range(
        "monitoring.webhook_timeout_ms",
        raw.webhook_timeout_ms,
        100,
        120_000,
    )?;
    let retries = in_range("monitoring.webhook_retries", raw.webhook_retries, 0, 20)?;
    let queue = in_range("monitoring.webhook_queue", raw.webhook_queue, 1, 1 << 20)?;
    let threshold = in_range(
        "monitoring.reject_spike_threshold",
        raw.reject_spike_threshold,
        0,
        u64::from(u32::MAX),
    )?;
    let window = in_range(
        "monitoring.reject_spike_window_ms",
        raw.reject_spike_window_ms,
        100,
        86_400_000,
    )?;
    let webhook = match &raw.webhook_url {
        None => {
            if raw.webhook_ca_file.is_some() {
                return Err(ConfigError::invalid(
                    "monitoring.webhook_ca_file",
                    "monitoring.webhook_ca_file is set but monitoring.webhook_url is not",
                ));
            }
            None
        }
        Some(url) => {
            let target = crate::webhook::Target::parse(url).map_err(|e| {
                ConfigError::invalid(
                    "monitoring.webhook_url",
                    format!("monitoring.webhook_url = {url:?}: {e}"),
                )
            })?;
            let ca_file = match &raw.webhook_ca_file {
                Some(f) if f.trim().is_empty() => {
                    return Err(ConfigError::invalid(
                        "monitoring.webhook_ca_file",
                        "monitoring.webhook_ca_file must not be empty",
                    ))
                }
                Some(f) => Some(PathBuf::from(f)),
                None => None,
            };
            Some(crate::webhook::WebhookSettings {
                target,
                timeout: Duration::from_millis(timeout),
                retries: retries as u32,
                ca_file,
                queue: queue as usize,
            })
        }
    };
    Ok(MonitoringSettings {
        webhook,
        reject_spike_threshold: threshold,
        reject_spike_window: Duration::from_millis(window),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[listeners]]
        name = "fix44"
        bind = "127.0.0.1:9881"
        tls = false
        begin_string = "FIX.4.4"

        [[sessions]]
        begin_string = "FIX.4.4"
        sender_comp_id = "US"
        target_comp_id = "THEM"
        accounts = ["ACC1"]
    "#;

    fn err(text: &str) -> ConfigError {
        parse(text, false).expect_err("config should be refused")
    }

    fn ok(text: &str) -> Settings {
        parse(text, false).expect("config should be accepted")
    }

    #[test]
    fn drop_copy_sessions_need_read_access_and_known_accounts() {
        let dc = |extra: &str| {
            format!(
                "{MINIMAL}\n[[sessions]]\nbegin_string = \"FIX.4.4\"\nsender_comp_id = \"US\"\ntarget_comp_id = \"DC\"\naccounts = [\"CLEAR\"]\n{extra}\n"
            )
        };
        // An order-entry session by default.
        assert!(ok(MINIMAL).sessions[0].drop_copy.is_empty());
        let s = ok(&dc("access = \"read\"\ndrop_copy = [\"ACC1\", \"CLEAR\"]"));
        assert_eq!(s.sessions[1].drop_copy, ["ACC1", "CLEAR"]);
        assert_eq!(
            ok(&dc("access = \"read\"\ndrop_copy = [\"*\"]")).sessions[1].drop_copy,
            ["*"]
        );
        for (extra, key, says) in [
            (
                "drop_copy = [\"ACC1\"]",
                "sessions[1].drop_copy",
                "access = \"read\"",
            ),
            (
                "access = \"read\"\ndrop_copy = [\"NOBODY\"]",
                "sessions[1].drop_copy[0]",
                "is not an account",
            ),
            (
                "access = \"read\"\ndrop_copy = [\"ACC1\", \"ACC1\"]",
                "sessions[1].drop_copy[1]",
                "once",
            ),
            (
                "access = \"read\"\ndrop_copy = [\"ACC1\", \"*\"]",
                "sessions[1].drop_copy[1]",
                "alone",
            ),
            (
                "access = \"read\"\ndrop_copy = [\"\"]",
                "sessions[1].drop_copy[0]",
                "",
            ),
        ] {
            let e = err(&dc(extra));
            assert_eq!(e.key(), Some(key), "{extra}: {e}");
            assert!(e.to_string().contains(says), "{extra}: {e}");
        }
    }

    #[test]
    fn a_fix_listeners_largest_message_fits_a_message_store_record() {
        let with = |n: u64| {
            MINIMAL.replace(
                "begin_string = \"FIX.4.4\"\n\n",
                &format!(
                    "begin_string = \"FIX.4.4\"\nmax_message_size = {n}\nmax_unsent_bytes = {n}\n\n"
                ),
            )
        };
        let max = portcullis_session::store::MAX_STORED_MESSAGE_LEN as u64;
        assert_eq!(ok(&with(max)).listeners[0].max_message_size as u64, max);
        let e = err(&with(16 * 1024 * 1024));
        assert_eq!(e.key(), Some("listeners[0].max_message_size"), "{e}");
    }

    #[test]
    fn embedded_default_parses_and_validates() {
        let s = embedded_default().unwrap();
        assert!(s.embedded);
        assert_eq!(s.data_dir, PathBuf::from("./var"));
        let tls: Vec<_> = s.listeners.iter().filter(|l| l.tls).collect();
        assert_eq!(tls.len(), 1);
        assert_eq!(tls[0].bind, "127.0.0.1:9878".parse().unwrap());
        assert_eq!(
            (tls[0].max_connections, tls[0].max_connections_per_ip),
            (64, 16)
        );
        let ws_tls = s
            .ws_listeners
            .iter()
            .find(|l| l.tls)
            .expect("a wss listener");
        assert_eq!(
            (ws_tls.max_connections, ws_tls.max_connections_per_ip),
            (1024, 256)
        );
        assert_eq!(tls[0].begin_string, BeginString::Fix44);
        for (version, port) in [
            (BeginString::Fix42, 9880),
            (BeginString::Fix44, 9881),
            (BeginString::Fixt11, 9882),
        ] {
            let l = s
                .listeners
                .iter()
                .find(|l| !l.tls && l.begin_string == version)
                .unwrap();
            assert_eq!(l.bind.port(), port);
            assert!(l.bind.ip().is_loopback());
            assert!(s.sessions.iter().any(|x| x.config.begin_string == version
                && x.config.sender_comp_id == "PORTCULLIS"
                && x.config.target_comp_id == "DEMO"));
        }
        assert!(s
            .sessions
            .iter()
            .all(|x| x.authenticate && x.accounts == ["DEMO-ACC"] && x.access == Scope::Trade));
        assert_eq!(
            s.auth.master_key_file,
            Some(PathBuf::from("./var/master.key"))
        );
        assert_eq!(s.auth.config, AuthConfig::default());
    }

    #[test]
    fn ws_listeners_take_their_limits_and_refuse_out_of_range_values() {
        let ws = |extra: &str| {
            format!(
                "{MINIMAL}\n[[ws_listeners]]\nname = \"ws\"\nbind = \"127.0.0.1:0\"\ntls = false\n{extra}\n"
            )
        };
        let s = parse(&ws(""), false).unwrap();
        let l = &s.ws_listeners[0];
        assert_eq!((l.max_connections, l.max_message_size), (1024, 65536));
        assert_eq!(l.max_pending_requests, 256);
        assert_eq!(l.max_connections_per_ip, 0);
        assert_eq!(l.rate_limits, WsRateLimits::default());
        let s = parse(
            &ws("max_connections = 8\nmax_connections_per_ip = 8"),
            false,
        )
        .unwrap();
        assert_eq!(s.ws_listeners[0].max_connections_per_ip, 8);
        let e = err(&ws("max_connections = 8\nmax_connections_per_ip = 9"));
        assert_eq!(e.key(), Some("ws_listeners[0].max_connections_per_ip"));
        assert!(e.to_string().contains("out of range (0..=8)"), "{e}");
        let s = parse(
            &ws("max_pending_requests = 4096\norders_per_10s = 1000"),
            false,
        )
        .unwrap();
        let l = &s.ws_listeners[0];
        assert_eq!(l.max_pending_requests, 4096);
        assert_eq!(l.rate_limits.orders_per_10s, Some(1000));
        for bad in ["max_pending_requests = 0", "max_pending_requests = 65537"] {
            let e = err(&ws(bad));
            assert!(
                e.to_string()
                    .contains("ws_listeners[0].max_pending_requests"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_admin_section_is_checked_and_tls_is_never_off() {
        let s = embedded_default().unwrap();
        let a = s.admin.as_ref().expect("dev.toml enables the admin API");
        assert!(a.bind.ip().is_loopback());
        assert_eq!(a.access_token_ttl, Duration::from_secs(600));
        assert!(s.any_authenticated_session());
        let with =
            |admin: &str| parse(&format!("{MINIMAL}\n[admin]\n{admin}\n"), false).map(|s| s.admin);
        // Outside the embedded default a certificate is required: no plain-HTTP admin API.
        let e = with(r#"bind = "127.0.0.1:0""#).unwrap_err();
        assert_eq!(e.key(), Some("admin.cert_file"), "{e}");
        let e = with(
            r#"bind = "127.0.0.1:0"
            cert_file = "c.pem""#,
        )
        .unwrap_err();
        assert_eq!(e.key(), Some("admin.key_file"), "{e}");
        let e = with(
            r#"bind = "127.0.0.1:9881"
            cert_file = "c.pem"
            key_file = "k.pem""#,
        )
        .unwrap_err();
        assert_eq!(e.key(), Some("admin.bind"), "{e}");
        let e = with(
            r#"bind = "127.0.0.1:0"
            tls = false"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let ok = with(
            r#"bind = "0.0.0.0:9444"
            cert_file = "c.pem"
            key_file = "k.pem"
            client_ca = "ca.pem"
            issuer = "https://admin.example.com:9444"
            access_token_ttl_secs = 60"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.client_ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(ok.issuer.as_deref(), Some("https://admin.example.com:9444"));
        for (bad, key) in [
            (r#"issuer = "http://x""#, "admin.issuer"),
            (r#"issuer = "https://x/""#, "admin.issuer"),
            ("access_token_ttl_secs = 0", "admin.access_token_ttl_secs"),
        ] {
            let e = with(&format!(
                "bind = \"127.0.0.1:0\"\ncert_file = \"c\"\nkey_file = \"k\"\n{bad}"
            ))
            .unwrap_err();
            assert_eq!(e.key(), Some(key), "{bad}: {e}");
        }
    }

    #[test]
    fn the_embedded_default_is_configs_dev_toml() {
        let on_disk =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/dev.toml"))
                .unwrap();
        assert_eq!(on_disk, EMBEDDED_DEFAULT);
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/dev.toml"));
        assert!(load(path).unwrap().embedded);
    }

    #[test]
    fn conformance_config_parses_and_validates() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/conformance.toml"
        ));
        let s = load(path).unwrap();
        assert!(!s.embedded);
        assert!(s
            .listeners
            .iter()
            .all(|l| !l.tls && l.bind.ip().is_loopback()));
        for version in [BeginString::Fix42, BeginString::Fix44, BeginString::Fixt11] {
            assert!(s.listeners.iter().any(|l| l.begin_string == version));
            let x = s
                .sessions
                .iter()
                .find(|x| x.config.begin_string == version)
                .unwrap();
            assert_eq!(x.config.sender_comp_id, "ISLD");
            assert_eq!(x.config.target_comp_id, "TW");
            assert!(x.config.reset.on_logon);
            assert_eq!(x.accounts, vec!["TW-ACC".to_owned()]);
            assert!(x.authenticate, "TW logs on with an API key");
            assert_eq!(x.access, Scope::Trade);
        }
        assert_eq!(
            s.auth.master_key_file,
            Some(PathBuf::from("./var/conformance/master.key"))
        );
        assert_eq!(s.auth.config, AuthConfig::default());
    }

    #[test]
    fn defaults_apply() {
        let s = parse(MINIMAL, false).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("./var"));
        let l = &s.listeners[0];
        assert_eq!(l.max_message_size, 65_536);
        assert_eq!(l.logon_timeout, Duration::from_secs(10));
        assert_eq!(l.max_unsent_bytes, 1024 * 1024);
        assert_eq!(l.max_connections, 64);
        let x = &s.sessions[0];
        assert_eq!(x.config.sending_time_tolerance, Duration::from_secs(120));
        assert_eq!(x.config.heartbeat_range, (1, 3600));
        assert_eq!(x.config.reset, ResetPolicy::default());
        assert_eq!(x.store_sync, SyncPolicy::Always);
        assert!(x.schedule.is_none());
        assert_eq!(x.accounts, vec!["ACC1"]);
        assert!(x.authenticate, "authentication is required by default");
        assert_eq!(x.access, Scope::Trade);
        assert!(!x.config.require_message_signature);
        assert!(s.tls.is_none());
        assert_eq!(s.auth.config, AuthConfig::default());
        assert_eq!(s.auth.config.logon_window_ms, 5000);
        assert!(s.auth.master_key_file.is_none());
        assert_eq!(s.vault_path(), PathBuf::from("./var/vault.bin"));
        assert_eq!(s.audit_path(), PathBuf::from("./var/audit.jsonl"));
        assert_eq!(s.audit_dir(), PathBuf::from("./var/audit"));
    }

    #[test]
    fn tls_defaults_to_on() {
        let text = MINIMAL.replace("tls = false\n", "");
        let e = err(&text);
        assert_eq!(e.key(), Some("listeners[0].tls"));
        assert!(e.to_string().contains("[tls]"), "{e}");
        let with_tls = format!("{text}\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n");
        let s = parse(&with_tls, false).unwrap();
        assert!(s.listeners[0].tls);
        assert_eq!(s.tls.unwrap().cert_file, PathBuf::from("c.pem"));
    }

    #[test]
    fn unknown_top_level_key_is_named() {
        let e = err(&format!("colour = \"blue\"\n{MINIMAL}"));
        assert!(matches!(e, ConfigError::Parse(_)));
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn unknown_key_in_a_section_is_named() {
        let e = err(&MINIMAL.replace("tls = false", "tls = false\nmax_conections = 3"));
        assert!(e.to_string().contains("max_conections"), "{e}");
        let e = err(&MINIMAL.replace(
            "target_comp_id = \"THEM\"",
            "target_comp_id = \"THEM\"\nreset_on_logn = true",
        ));
        assert!(e.to_string().contains("reset_on_logn"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\nschedule = {{ start = \"08:00:00\", end = \"17:00:00\", tz = \"UTC\" }}"
        ));
        assert!(e.to_string().contains("tz"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[tls]\ncert_file = \"a\"\nkey_file = \"b\"\npassword = \"x\"\n"
        ));
        assert!(e.to_string().contains("password"), "{e}");
    }

    #[test]
    fn plain_tcp_off_loopback_is_refused() {
        let e = err(&MINIMAL.replace("127.0.0.1:9881", "0.0.0.0:9881"));
        assert_eq!(e.key(), Some("listeners[0].tls"));
        assert_eq!(
            e.to_string(),
            "listeners[0].tls = false is only allowed on a loopback address"
        );
        let e = err(&MINIMAL.replace("127.0.0.1:9881", "192.0.2.10:9881"));
        assert_eq!(e.key(), Some("listeners[0].tls"));
        // IPv6 loopback is loopback.
        assert!(parse(&MINIMAL.replace("127.0.0.1:9881", "[::1]:9881"), false).is_ok());
    }

    #[test]
    fn bad_bind_is_named() {
        let e = err(&MINIMAL.replace("127.0.0.1:9881", "localhost:9881"));
        assert_eq!(e.key(), Some("listeners[0].bind"));
    }

    #[test]
    fn bad_begin_string_is_named() {
        let e = err(&MINIMAL.replacen(
            "begin_string = \"FIX.4.4\"",
            "begin_string = \"FIX.4.3\"",
            1,
        ));
        assert_eq!(e.key(), Some("listeners[0].begin_string"));
        let e = err(&MINIMAL.replace(
            "begin_string = \"FIX.4.4\"\n        sender",
            "begin_string = \"FIX.5.0\"\n        sender",
        ));
        assert_eq!(e.key(), Some("sessions[0].begin_string"));
    }

    #[test]
    fn session_without_listener_is_refused() {
        let text = format!(
            "{MINIMAL}\n[[sessions]]\nbegin_string = \"FIX.4.2\"\nsender_comp_id = \"US\"\ntarget_comp_id = \"THEM\"\n"
        );
        let e = err(&text);
        assert_eq!(e.key(), Some("sessions[1].begin_string"));
        assert!(e.to_string().contains("no listener"), "{e}");
    }

    #[test]
    fn duplicate_session_is_refused() {
        let text = format!(
            "{MINIMAL}\n[[sessions]]\nbegin_string = \"FIX.4.4\"\nsender_comp_id = \"US\"\ntarget_comp_id = \"THEM\"\n"
        );
        let e = err(&text);
        assert_eq!(e.key(), Some("sessions[1]"));
        assert!(e.to_string().contains("duplicates sessions[0]"), "{e}");
    }

    #[test]
    fn duplicate_listener_name_and_address_are_refused() {
        let second = "\n[[listeners]]\nname = \"fix44\"\nbind = \"127.0.0.1:9882\"\ntls = false\nbegin_string = \"FIX.4.2\"\n";
        assert_eq!(
            err(&format!("{MINIMAL}{second}")).key(),
            Some("listeners[1].name")
        );
        let second = second
            .replace("\"fix44\"", "\"other\"")
            .replace("9882", "9881");
        assert_eq!(
            err(&format!("{MINIMAL}{second}")).key(),
            Some("listeners[1].bind")
        );
    }

    #[test]
    fn limits_are_checked() {
        let e = err(&MINIMAL.replace("tls = false", "tls = false\nmax_connections = 0"));
        assert_eq!(e.key(), Some("listeners[0].max_connections"));
        // Per address: 0 (none, the default) up to the listener's max_connections.
        assert_eq!(ok(MINIMAL).listeners[0].max_connections_per_ip, 0);
        let per_ip = |n: u64| {
            MINIMAL.replace(
                "tls = false",
                &format!("tls = false\nmax_connections = 8\nmax_connections_per_ip = {n}"),
            )
        };
        assert_eq!(ok(&per_ip(8)).listeners[0].max_connections_per_ip, 8);
        let e = err(&per_ip(9));
        assert_eq!(e.key(), Some("listeners[0].max_connections_per_ip"));
        assert!(e.to_string().contains("out of range (0..=8)"), "{e}");
        let e = err(&MINIMAL.replace("tls = false", "tls = false\nmax_message_size = 10"));
        assert_eq!(e.key(), Some("listeners[0].max_message_size"));
        let e = err(&MINIMAL.replace("tls = false", "tls = false\nlogon_timeout_secs = 0"));
        assert_eq!(e.key(), Some("listeners[0].logon_timeout_secs"));
        let e = err(&MINIMAL.replace("tls = false", "tls = false\nmax_unsent_bytes = 1000"));
        assert_eq!(e.key(), Some("listeners[0].max_unsent_bytes"));
        let e = err(&format!("{MINIMAL}\nheartbeat_range_secs = [30, 10]"));
        assert_eq!(e.key(), Some("sessions[0].heartbeat_range_secs"));
        let e = err(&format!("{MINIMAL}\nsending_time_tolerance_secs = 0"));
        assert_eq!(e.key(), Some("sessions[0].sending_time_tolerance_secs"));
        // A negative number is a type error from the parser, which names the key.
        let e = err(&MINIMAL.replace("tls = false", "tls = false\nmax_connections = -1"));
        assert!(e.to_string().contains("max_connections"), "{e}");
    }

    /// MINIMAL with BTC-PERP listed and a venue routing it, with `venue` keys replaced.
    fn with_venue(venue: &str, extra: &str) -> String {
        format!(
            r#"{MINIMAL}
        [[instruments]]
        symbol = "BTC-PERP"
        price_scale = 1
        qty_scale = 3
        tick = "0.5"
        lot = "0.001"
        min_qty = "0.001"
        max_qty = "10"

        [[venues]]
        {venue}
        {extra}
        "#
        )
    }

    const VENUE: &str = r#"name = "up"
        connect = "127.0.0.1:9878"
        tls = false
        begin_string = "FIX.4.4"
        sender_comp_id = "BROKER"
        target_comp_id = "VENUE"
        instruments = ["BTC-PERP"]"#;

    #[test]
    fn venues_are_validated_key_by_key() {
        let s = ok(&with_venue(
            VENUE,
            "username = \"k1\"\nsecret_file = \"s.txt\"",
        ));
        let v = &s.venues[0];
        assert_eq!((v.name.as_str(), v.tls.is_none()), ("up", true));
        assert_eq!(v.credentials, Some(("k1".into(), PathBuf::from("s.txt"))));
        assert_eq!(
            (v.heartbeat_secs, v.reconnect),
            (30, Duration::from_secs(5))
        );
        // TLS by default, with the host as the name to verify.
        let s = ok(&with_venue(&VENUE.replace("tls = false", ""), ""));
        assert_eq!(s.venues[0].tls, Some((None, "127.0.0.1".into())));
        for (venue, extra, key) in [
            (VENUE.replace("\"up\"", "\"u p\""), "", "venues[0].name"),
            (
                VENUE.replace("127.0.0.1:9878", "127.0.0.1"),
                "",
                "venues[0].connect",
            ),
            (
                VENUE.replace("127.0.0.1:9878", "10.1.2.3:9878"),
                "",
                "venues[0].tls",
            ),
            (
                VENUE.replace("\"VENUE\"", "\"BROKER\""),
                "",
                "venues[0].target_comp_id",
            ),
            (
                VENUE.replace("FIX.4.4", "FIX.4.3"),
                "",
                "venues[0].begin_string",
            ),
            (
                VENUE.replace("\"BTC-PERP\"", "\"ETH-PERP\""),
                "",
                "venues[0].instruments[0]",
            ),
            (
                VENUE.replace("[\"BTC-PERP\"]", "[]"),
                "",
                "venues[0].instruments",
            ),
            (
                VENUE.to_owned(),
                "username = \"k1\"",
                "venues[0].secret_file",
            ),
            (
                VENUE.to_owned(),
                "secret_file = \"s\"",
                "venues[0].username",
            ),
            (
                VENUE.to_owned(),
                "heartbeat_secs = 0",
                "venues[0].heartbeat_secs",
            ),
            (
                VENUE.to_owned(),
                "reconnect_secs = 4000",
                "venues[0].reconnect_secs",
            ),
            (VENUE.to_owned(), "ca_file = \"ca.pem\"", "venues[0].tls"),
        ] {
            let e = err(&with_venue(&venue, extra));
            assert_eq!(e.key(), Some(key), "{e}");
        }
        // Option series by underlying, listed in [[option_series]], each to one venue.
        let series = r#"
        [[option_series]]
        underlying = "BTC"
        expiries = "weekly"
        count = 1
        strikes = { reference = "100000", step = "5000", each_side = 1 }
        price_scale = 1
        qty_scale = 1
        tick = "0.5"
        lot = "0.1"
        min_qty = "0.1"
        max_qty = "10"
        "#;
        let only_series =
            VENUE.replace("instruments = [\"BTC-PERP\"]", "option_series = [\"BTC\"]");
        let s = ok(&(with_venue(&only_series, "") + series));
        assert_eq!(s.venues[0].option_series, vec!["BTC".to_owned()]);
        assert!(s.venues[0].instruments.is_empty());
        let e = err(&with_venue(&only_series, ""));
        assert_eq!(e.key(), Some("venues[0].option_series[0]"));
        // An instrument goes to one venue; names are unique.
        let two = format!(
            "{}\n[[venues]]\n{}",
            with_venue(VENUE, ""),
            VENUE.replace("\"up\"", "\"up2\"")
        );
        assert_eq!(err(&two).key(), Some("venues[1].instruments[0]"));
        let same = format!("{}\n[[venues]]\n{}", with_venue(VENUE, ""), VENUE);
        assert_eq!(err(&same).key(), Some("venues[1].name"));
        // A venue takes a session slot.
        let full = with_venue(VENUE, "") + "\n[risk]\nmax_sessions = 1\n";
        assert_eq!(err(&full).key(), Some("risk.max_sessions"));
        // Unknown keys are refused as everywhere.
        assert!(matches!(
            err(&with_venue(VENUE, "password = \"x\"")),
            ConfigError::Parse(_)
        ));
    }

    #[test]
    fn comp_ids_and_accounts_are_checked() {
        let e = err(&MINIMAL.replace("\"US\"", "\"U S\""));
        assert_eq!(e.key(), Some("sessions[0].sender_comp_id"));
        let e = err(&MINIMAL.replace("\"THEM\"", "\"\""));
        assert_eq!(e.key(), Some("sessions[0].target_comp_id"));
        let e = err(&MINIMAL.replace("\"THEM\"", "\"US\""));
        assert_eq!(e.key(), Some("sessions[0].target_comp_id"));
        let with = |a: &str| MINIMAL.replace("accounts = [\"ACC1\"]", a);
        let e = err(&with("accounts = [\"A\", \"A\"]"));
        assert_eq!(e.key(), Some("sessions[0].accounts[1]"));
        let s = parse(&with("accounts = [\"A\", \"B-1\"]"), false).unwrap();
        assert_eq!(s.sessions[0].accounts, vec!["A", "B-1"]);
    }

    #[test]
    fn schedule_parses_utc_and_fixed_offsets() {
        let s = parse(
            &format!("{MINIMAL}\nschedule = {{ start = \"08:00:00\", end = \"17:30:00\", time_zone = \"+02:00\" }}"),
            false,
        )
        .unwrap();
        assert_eq!(
            s.sessions[0].schedule,
            Some(Schedule {
                start: 8 * 3600,
                end: 17 * 3600 + 1800,
                utc_offset_secs: 7200
            })
        );
        let s = parse(
            &format!("{MINIMAL}\nschedule = {{ start = \"22:00:00\", end = \"06:00:00\" }}"),
            false,
        )
        .unwrap();
        assert_eq!(s.sessions[0].schedule.unwrap().utc_offset_secs, 0);
        assert_eq!(parse_time_zone("-05:30"), Some(-(5 * 3600 + 1800)));
    }

    #[test]
    fn bad_schedules_are_named() {
        let with = |sch: &str| err(&format!("{MINIMAL}\nschedule = {sch}"));
        assert_eq!(
            with("{ start = \"24:00:00\", end = \"17:00:00\" }").key(),
            Some("sessions[0].schedule.start")
        );
        assert_eq!(
            with("{ start = \"08:00\", end = \"17:00:00\" }").key(),
            Some("sessions[0].schedule.start")
        );
        assert_eq!(
            with("{ start = \"08:00:00\", end = \"17:60:00\" }").key(),
            Some("sessions[0].schedule.end")
        );
        assert_eq!(
            with("{ start = \"08:00:00\", end = \"08:00:00\" }").key(),
            Some("sessions[0].schedule.end")
        );
        assert_eq!(
            with("{ start = \"08:00:00\", end = \"17:00:00\", time_zone = \"Europe/Paris\" }")
                .key(),
            Some("sessions[0].schedule.time_zone")
        );
        assert_eq!(
            with("{ start = \"08:00:00\", end = \"17:00:00\", time_zone = \"+15:00\" }").key(),
            Some("sessions[0].schedule.time_zone")
        );
    }

    #[test]
    fn market_maker_protection_is_read_and_checked() {
        let s = parse(
            &format!("{MINIMAL}\nmmp = {{ interval_ms = 1000, qty = \"12.5\", frozen_ms = 5000 }}"),
            false,
        )
        .unwrap();
        assert_eq!(
            s.sessions[0].mmp,
            Some(crate::quotes::Mmp {
                interval_ns: 1_000_000_000,
                qty: 1_250_000_000,
                frozen_ns: 5_000_000_000,
            })
        );
        assert_eq!(parse(MINIMAL, false).unwrap().sessions[0].mmp, None);
        let with = |m: &str| err(&format!("{MINIMAL}\nmmp = {m}"));
        for (m, key) in [
            (
                "{ interval_ms = 0, qty = \"1\", frozen_ms = 0 }",
                "sessions[0].mmp.interval_ms",
            ),
            (
                "{ interval_ms = 10, qty = \"0\", frozen_ms = 0 }",
                "sessions[0].mmp.qty",
            ),
            (
                "{ interval_ms = 10, qty = \"1e3\", frozen_ms = 0 }",
                "sessions[0].mmp.qty",
            ),
            (
                "{ interval_ms = 10, qty = \"0.000000001\", frozen_ms = 0 }",
                "sessions[0].mmp.qty",
            ),
            (
                "{ interval_ms = 10, qty = \"1\", frozen_ms = 86400001 }",
                "sessions[0].mmp.frozen_ms",
            ),
        ] {
            assert_eq!(with(m).key(), Some(key), "{m}");
        }
        let e = with("{ interval_ms = 10, qty = \"1\" }");
        assert!(e.to_string().contains("frozen_ms"), "{e}");
    }

    #[test]
    fn store_sync_and_resets_and_appl_ver_id() {
        let s = parse(
            &format!("{MINIMAL}\nstore_sync = \"never\"\nreset_on_logon = true\nreset_on_disconnect = true"),
            false,
        )
        .unwrap();
        assert_eq!(s.sessions[0].store_sync, SyncPolicy::Never);
        assert!(s.sessions[0].config.reset.on_logon);
        assert!(!s.sessions[0].config.reset.on_logout);
        assert!(s.sessions[0].config.reset.on_disconnect);
        let e = err(&format!("{MINIMAL}\nstore_sync = \"sometimes\""));
        assert!(e.to_string().contains("store_sync"), "{e}");
        let e = err(&format!("{MINIMAL}\ndefault_appl_ver_id = \"9\""));
        assert_eq!(e.key(), Some("sessions[0].default_appl_ver_id"));
    }

    #[test]
    fn auth_section_sets_every_auth_config_field() {
        let s = parse(
            &format!(
                "{MINIMAL}\n[auth]\nmaster_key_file = \"/etc/portcullis/master.key\"\nlogon_window_ms = 2000\n\
                 max_failures = 3\nfailure_window_ms = 30000\nlockout_base_ms = 500\nlockout_max_ms = 60000\n\
                 signature_burst_threshold = 7\nsignature_burst_window_ms = 20000\nmulti_ip_window_ms = 1000\n"
            ),
            false,
        )
        .unwrap();
        assert_eq!(
            s.auth.master_key_file,
            Some(PathBuf::from("/etc/portcullis/master.key"))
        );
        assert_eq!(
            s.auth.config,
            AuthConfig {
                logon_window_ms: 2000,
                max_failures: 3,
                failure_window_ms: 30000,
                lockout_base_ms: 500,
                lockout_max_ms: 60000,
                signature_burst_threshold: 7,
                signature_burst_window_ms: 20000,
                multi_ip_window_ms: 1000,
            }
        );
    }

    #[test]
    fn raw_auth_knows_every_auth_config_field() {
        // Every field of the auth crate's config (serialized with its defaults) is a key of
        // [auth]: a field added there cannot be forgotten here.
        let text = toml::to_string(&AuthConfig::default()).unwrap();
        let raw: RawAuth = toml::from_str(&text).unwrap();
        let s = validate_auth(&raw).unwrap();
        assert_eq!(s.config, AuthConfig::default());
    }

    #[test]
    fn bad_auth_settings_are_named() {
        let e = err(&format!("{MINIMAL}\n[auth]\nlogon_window_ms = 0\n"));
        assert_eq!(e.key(), Some("auth.logon_window_ms"));
        assert!(
            e.to_string().starts_with("auth.logon_window_ms = 0: "),
            "{e}"
        );
        let e = err(&format!(
            "{MINIMAL}\n[auth]\nlockout_base_ms = 10\nlockout_max_ms = 5\n"
        ));
        assert_eq!(e.key(), Some("auth.lockout_max_ms"));
        let e = err(&format!("{MINIMAL}\n[auth]\nmaster_key = \"00\"\n"));
        assert!(e.to_string().contains("master_key"), "{e}");
        let e = err(&format!("{MINIMAL}\n[auth]\nmaster_key_file = \" \"\n"));
        assert_eq!(e.key(), Some("auth.master_key_file"));
    }

    #[test]
    fn session_auth_settings() {
        let s = parse(
            &format!("{MINIMAL}\naccess = \"read\"\nrequire_message_signature = true\n"),
            false,
        )
        .unwrap();
        assert_eq!(s.sessions[0].access, Scope::Read);
        assert!(s.sessions[0].config.require_message_signature);
        assert!(s.any_authenticated_session());
        let e = err(&format!("{MINIMAL}\naccess = \"admin\"\n"));
        assert!(e.to_string().contains("access"), "{e}");
        let e = err(&format!("{MINIMAL}\nauthentication = \"maybe\"\n"));
        assert!(e.to_string().contains("authentication"), "{e}");
    }

    #[test]
    fn an_authenticated_session_needs_accounts() {
        let e = err(&MINIMAL.replace("accounts = [\"ACC1\"]", ""));
        assert_eq!(e.key(), Some("sessions[0].accounts"));
        let s = parse(&MINIMAL.replace("\"ACC1\"", "\"*\""), false).unwrap();
        assert_eq!(s.sessions[0].accounts, vec!["*"]);
    }

    #[test]
    fn no_authentication_only_on_loopback_and_without_signatures() {
        let none = MINIMAL.replace("accounts = [\"ACC1\"]", "authentication = \"none\"");
        let s = parse(&none, false).unwrap();
        assert!(!s.sessions[0].authenticate);
        assert!(!s.any_authenticated_session());
        // A TLS listener on a public address serving the same BeginString.
        let public = format!(
            "{none}\n[[listeners]]\nname = \"pub\"\nbind = \"0.0.0.0:9443\"\nbegin_string = \"FIX.4.4\"\n\
             [tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n"
        );
        let e = err(&public);
        assert_eq!(e.key(), Some("sessions[0].authentication"));
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(e.to_string().contains("\"pub\""), "{e}");
        let e = err(&format!("{none}\nrequire_message_signature = true\n"));
        assert_eq!(e.key(), Some("sessions[0].require_message_signature"));
    }

    #[test]
    fn no_listener_is_an_error() {
        let e = err("data_dir = \"/tmp/x\"\n");
        assert_eq!(e.key(), Some("listeners"));
    }

    const PERP: &str = r#"
        [[instruments]]
        symbol = "BTC-PERP"
        price_scale = 1
        qty_scale = 3
        tick = "0.5"
        lot = "0.001"
        min_qty = "0.001"
        max_qty = "100"
    "#;

    #[test]
    fn the_embedded_default_lists_demo_instruments_and_limits() {
        let s = embedded_default().unwrap();
        assert_eq!(s.accounts, vec!["DEMO-ACC"]);
        assert!(s.instruments.iter().any(|i| i.symbol == "BTC-PERP"));
        assert!(s.instruments.iter().any(|i| i.symbol == "BTC-USDT"));
        assert_eq!(s.option_series.len(), 1);
        assert!(s.risk.accounts.contains_key("DEMO-ACC"));
        assert!(s.sessions.iter().all(|x| x.cancel_on_disconnect));
        assert_eq!(s.core.ingress_capacity, 65_536);
        assert_eq!(s.core.egress_capacity, 1024);
        assert_eq!(s.core.idle_spin, Duration::from_micros(50));
        assert_eq!(s.core.reply_spin, Duration::from_micros(10));
        assert_eq!(s.core.trading_day_end_secs, 0);
        assert_eq!(s.core.threading, crate::pipeline::Threading::Dedicated);
        let now = portcullis_auth::clock::now_ms();
        let table =
            portcullis_engine::Instruments::new(&s.instruments, &s.option_series, now).unwrap();
        // 4 weekly expiries × 11 strikes × call and put, plus the perpetual and the spot pair.
        assert_eq!(table.len(), 4 * 11 * 2 + 2);
    }

    #[test]
    fn pipeline_sections_default_and_the_account_table_is_built() {
        let s = parse(MINIMAL, false).unwrap();
        assert_eq!(s.engine, EngineConfig::default());
        assert_eq!(s.risk, RiskConfig::default());
        assert!(s.instruments.is_empty());
        assert_eq!(s.accounts, vec!["ACC1"]);
        assert!(s.sessions[0].cancel_on_disconnect);
        let text = format!(
            "{MINIMAL}\ncancel_on_disconnect = false\n[core]\naccounts = [\"X\", \"ACC1\"]\npin_cpu = 1\n\
             trading_day_end = \"21:00:00\"\n[engine]\ncancel_on_disconnect = false\n{PERP}"
        );
        let s = parse(&text, false).unwrap();
        assert!(!s.sessions[0].cancel_on_disconnect);
        assert_eq!(s.accounts, vec!["X", "ACC1"]);
        assert_eq!(s.core.pin_cpu, Some(1));
        assert_eq!(s.core.trading_day_end_secs, 21 * 3600);
        assert!(!s.engine.cancel_on_disconnect);
        assert_eq!(s.instruments.len(), 1);
        // Sessions follow the engine's default unless they say otherwise.
        let s = parse(
            &format!("{MINIMAL}\n[engine]\ncancel_on_disconnect = false\n"),
            false,
        )
        .unwrap();
        assert!(!s.sessions[0].cancel_on_disconnect);
    }

    #[test]
    fn the_core_runs_on_its_own_thread_or_shared_with_the_sockets() {
        let s = parse(
            &format!("{MINIMAL}\n[core]\nthreading = \"shared\"\n"),
            false,
        )
        .unwrap();
        assert_eq!(s.core.threading, crate::pipeline::Threading::Shared);
        let e = err(&format!("{MINIMAL}\n[core]\nthreading = \"both\"\n"));
        assert!(e.to_string().contains("threading"), "{e}");
        // Pinning names the dedicated core thread, which "shared" does not have.
        let e = err(&format!(
            "{MINIMAL}\n[core]\nthreading = \"shared\"\npin_cpu = 1\n"
        ));
        assert_eq!(e.key(), Some("core.pin_cpu"));
        assert!(e.to_string().contains("shared"), "{e}");
    }

    #[test]
    fn the_journal_thread_may_be_pinned_to_a_cpu() {
        assert_eq!(parse(MINIMAL, false).unwrap().journal_pin_cpu, None);
        let s = parse(&format!("{MINIMAL}\n[journal]\npin_cpu = 1\n"), false).unwrap();
        assert_eq!(s.journal_pin_cpu, Some(1));
        let e = err(&format!("{MINIMAL}\n[journal]\npin_cpu = 5000\n"));
        assert_eq!(e.key(), Some("journal.pin_cpu"));
    }

    #[test]
    fn bad_pipeline_settings_are_named() {
        let e = err(&format!("{MINIMAL}\n[core]\ningress_capacity = 0\n"));
        assert_eq!(e.key(), Some("core.ingress_capacity"));
        let e = err(&format!("{MINIMAL}\n[core]\nreply_spin_us = 5000\n"));
        assert_eq!(e.key(), Some("core.reply_spin_us"));
        let e = err(&format!("{MINIMAL}\n[core]\negress_capacity = 0\n"));
        assert_eq!(e.key(), Some("core.egress_capacity"));
        let e = err(&format!(
            "{MINIMAL}\n[core]\ntrading_day_end = \"25:00:00\"\n"
        ));
        assert_eq!(e.key(), Some("core.trading_day_end"));
        let e = err(&format!("{MINIMAL}\n[core]\naccounts = [\"*\"]\n"));
        assert_eq!(e.key(), Some("core.accounts[0]"));
        let e = err(&format!("{MINIMAL}\n[core]\nspin = 3\n"));
        assert!(e.to_string().contains("spin"), "{e}");
        let e = err(&format!("{MINIMAL}\n[engine]\nmax_resting_orders = 0\n"));
        assert_eq!(e.key(), Some("engine.max_resting_orders"));
        let e = err(&format!("{MINIMAL}\n[engine]\nmax_orders = 5\n"));
        assert!(e.to_string().contains("max_orders"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[risk.defaults]\nmax_notional = \"-1\"\n"
        ));
        assert_eq!(e.key(), Some("risk.defaults.max_notional"));
        let e = err(&format!(
            "{MINIMAL}\n[risk.accounts.NOBODY]\nmax_open_orders = 3\n"
        ));
        assert_eq!(e.key(), Some("risk.accounts.NOBODY"));
        let e = err(&format!("{MINIMAL}\n[risk]\nsession_burst = 0\n"));
        assert_eq!(e.key(), Some("risk.session_burst"));
        let e = err(&format!(
            "{MINIMAL}\n[risk.defaults]\nmax_notionall = \"1\"\n"
        ));
        assert!(e.to_string().contains("max_notionall"), "{e}");
        let e = err(&format!(
            "{MINIMAL}{}",
            PERP.replace("BTC-PERP", "btc perp")
        ));
        assert_eq!(e.key(), Some("instruments[0]"));
        let e = err(&format!("{MINIMAL}{}", PERP.replace("\"0.5\"", "\"0.05\"")));
        assert_eq!(e.key(), Some("instruments[0].tick"));
        let e = err(&format!("{MINIMAL}{PERP}{PERP}"));
        assert_eq!(e.key(), Some("instruments[1]"));
        let e = err(&format!(
            "{MINIMAL}{}",
            PERP.replace("tick = \"0.5\"", "tick = 0.5")
        ));
        assert!(e.to_string().contains("tick"), "{e}");
        let series = r#"
            [[option_series]]
            underlying = "BTC"
            expiries = "weekly"
            count = 2
            strikes = { reference = "100000", step = "5000", each_side = 1 }
            price_scale = 1
            qty_scale = 1
            tick = "0.05"
            lot = "0.1"
            min_qty = "0.1"
            max_qty = "10"
        "#;
        let e = err(&format!("{MINIMAL}{series}"));
        assert_eq!(e.key(), Some("option_series[0].tick"), "{e}");
        assert!(parse(
            &format!("{MINIMAL}{}", series.replace("0.05", "0.5")),
            false
        )
        .is_ok());
    }
}
