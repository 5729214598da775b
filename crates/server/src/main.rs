//! `portcullis`: the order-entry session server.
//!
//! - `portcullis serve [--config FILE]` runs the server (the embedded default config without
//!   `--config`);
//! - `portcullis check-config --config FILE` parses and validates a config;
//! - `portcullis keys create|list|revoke|rotate-master|retire-master|new-master-key` manages the
//!   key vault (see [`keys`]);
//! - `portcullis admin kill|halt|resume|mark|limits|pause-core|resume-core` sends an operator
//!   command to the running server over its control socket (see [`control`]);
//!   `portcullis admin totp-enroll` enrols an operator for the admin API's TOTP (see
//!   [`admin`], the HTTPS admin API and OAuth server);
//! - `portcullis journal verify|dump|export|reencrypt` reads the journal (see [`journal`]);
//! - `portcullis audit export` prints the encrypted security audit log (see [`at_rest`]).
//!
//! Exit codes: 0 clean shutdown or valid config, 1 runtime failure (e.g. a port in use),
//! 2 bad config (the message on stderr names the key), no or wrong master key, or an unreadable
//! key vault; every failing `keys` command exits 2; `admin` exits 2 on bad input and 1 when the
//! server cannot be reached.

mod admin;
mod app;
mod at_rest;
mod config;
mod control;
mod devcert;
mod drop_copy;
#[cfg(test)]
mod fix_fixtures;
mod fix_log;
mod history;
mod journal;
mod journal_queue;
mod keys;
mod liabilities;
mod market_data;
mod metrics;
mod monitoring;
mod order_codec;
mod order_list;
mod pipeline;
mod positions;
mod quotes;
mod replay;
mod security;
mod security_list;
mod security_status;
mod trading_session;
mod user_streams;
mod venue;
mod webhook;
mod ws_app;
mod ws_auth;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use portcullis_auth::Authenticator;
use portcullis_fix::UtcTimestamp;
use portcullis_session::store::FileStore;
use portcullis_session::transport::{self, Application, ListenerConfig, SessionRegistry};
use tracing::{error, info, warn};

use crate::config::{ConfigError, Settings};

// The allocator of the binary (DESIGN.md §3): faster and less fragmenting than the system's
// under many small per-connection allocations.
#[cfg(not(test))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Unit tests count the allocations of each thread (over the same allocator) to prove the core
// loop allocates nothing per order.
#[cfg(test)]
#[global_allocator]
static GLOBAL: alloc_tests::Counting = alloc_tests::Counting;

#[cfg(test)]
mod alloc_tests;

/// Portcullis: low-latency, security-first FIX order-entry session server.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server until SIGTERM or SIGINT.
    Serve {
        /// TOML config file; without it the embedded default (configs/dev.toml) is used.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Parse and validate a config file: exit 0 if it is valid, 2 if not.
    CheckConfig {
        /// TOML config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Manage the API keys of the vault and its master key (works while the server runs).
    Keys(keys::KeysArgs),
    /// Operator commands to the running server: kill switch, halt/resume, mark, limits, pause.
    Admin(control::AdminArgs),
    /// The durable encrypted journal: verify, dump, export, reencrypt (needs the master key).
    Journal(journal::JournalArgs),
    /// The security audit log, encrypted at rest: export (needs the master key).
    Audit(at_rest::AuditArgs),
    /// What the server sent a FIX session: its stored outbound messages, decrypted (needs the
    /// master key; works while the server runs).
    FixLog(fix_log::FixLogArgs),
    /// Proof of liabilities: publish a report and every customer's proof from a ledger
    /// export; verify a customer's proof; audit a publication.
    Liabilities(liabilities::LiabilitiesArgs),
}

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

/// Why `serve` stopped with an error.
enum Failure {
    Config(ConfigError),
    /// No usable master key, or a key vault that cannot be read: exit code 2.
    Auth(anyhow::Error),
    Runtime(anyhow::Error),
    /// The journal cannot be recovered (corruption, wrong key): exit code 2.
    Journal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Runtime(e)
    }
}

/// Turns transparent huge pages off for this process, before the order tables are allocated.
/// A first touch of a huge-page region may have the kernel compact memory first (the usual
/// `defrag = madvise` applies to the allocator's arenas): measured, WebSocket ping-pong max
/// 24-50 ms with them, 7 ms without; FIX ping-pong and floods unchanged.
fn disable_transparent_huge_pages() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_THP_DISABLE) takes plain integers and reads or writes no memory
        // of ours; it only sets a flag of the calling process.
        #[allow(unsafe_code)]
        let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        r == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Keys(args) => match keys::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("portcullis keys: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Journal(args) => match journal::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("portcullis journal: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::FixLog(args) => match fix_log::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("portcullis fix-log: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Audit(args) => match at_rest::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("portcullis audit: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Liabilities(args) => match liabilities::run(args) {
            Ok(message) => {
                println!("{message}");
                ExitCode::SUCCESS
            }
            Err(liabilities::LiabilitiesError::BadInput(e)) => {
                eprintln!("portcullis liabilities: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
            Err(liabilities::LiabilitiesError::NotVerified(e)) => {
                eprintln!("portcullis liabilities: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        },
        Command::Admin(args) => match control::run(args) {
            Ok(message) => {
                println!("{message}");
                ExitCode::SUCCESS
            }
            Err(control::AdminError::BadInput(e)) => {
                eprintln!("portcullis admin: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
            Err(control::AdminError::Unreachable(e)) => {
                eprintln!("portcullis admin: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        },
        Command::CheckConfig { config } => {
            match config::load(&config).and_then(|s| tls_server_config(&s).map(|_| s)) {
                Ok(s) => {
                    println!(
                        "{}: ok ({} listeners, {} sessions)",
                        config.display(),
                        s.listeners.len(),
                        s.sessions.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => config_error(Some(&config), &e),
            }
        }
        Command::Serve { config } => {
            if !disable_transparent_huge_pages() {
                warn!(
                    "transparent huge pages stay on: their first touch may stall for milliseconds"
                );
            }
            let settings = match &config {
                Some(path) => config::load(path),
                None => config::embedded_default(),
            };
            let settings = match settings {
                Ok(s) => s,
                Err(e) => return config_error(config.as_deref(), &e),
            };
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if settings.core.threading == pipeline::Threading::Shared {
                // The core loop is a task beside the socket tasks: one worker runs them all.
                builder.worker_threads(1);
            }
            let runtime = match builder.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("portcullis: cannot start the async runtime: {e}");
                    return ExitCode::from(EXIT_RUNTIME);
                }
            };
            match runtime.block_on(serve(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(Failure::Config(e)) => config_error(config.as_deref(), &e),
                Err(Failure::Auth(e)) => {
                    eprintln!("portcullis: {e:#}");
                    ExitCode::from(EXIT_CONFIG)
                }
                Err(Failure::Journal(e)) => {
                    eprintln!("portcullis: cannot recover the journal: {e:#}");
                    ExitCode::from(EXIT_CONFIG)
                }
                Err(Failure::Runtime(e)) => {
                    eprintln!("portcullis: {e:#}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
    }
}

fn config_error(path: Option<&Path>, e: &ConfigError) -> ExitCode {
    match path {
        Some(p) => eprintln!("portcullis: config error in {}: {e}", p.display()),
        None => eprintln!("portcullis: config error in the embedded default: {e}"),
    }
    ExitCode::from(EXIT_CONFIG)
}

/// Logs go to stderr (stdout carries the `listening:` lines tools wait for); `RUST_LOG` filters,
/// `info` by default.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The TLS configuration from `[tls]`, if the config has that section. A file that cannot be
/// read or used is a config error naming the key.
fn tls_server_config(s: &Settings) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
    let Some(files) = &s.tls else {
        return Ok(None);
    };
    transport::load_tls13_server_config(&files.cert_file, &files.key_file)
        .map(Some)
        .map_err(|e| ConfigError::Invalid {
            key: "tls".into(),
            message: format!("tls (cert_file / key_file): {e}"),
        })
}

async fn serve(settings: Settings) -> Result<(), Failure> {
    // Shared with the admin API (its audit query reads the logs the config names).
    let settings = Arc::new(settings);
    let data_dir = &settings.data_dir;
    std::fs::create_dir_all(data_dir.join("sessions"))
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    let data_dir_shown = data_dir.canonicalize().unwrap_or_else(|_| data_dir.clone());

    // TLS: from [tls], or the dev certificate of the embedded default.
    let mut tls = tls_server_config(&settings).map_err(Failure::Config)?;
    let mut dev_cert = None;
    if tls.is_none()
        && (settings.listeners.iter().any(|l| l.tls) || settings.ws_listeners.iter().any(|l| l.tls))
    {
        // Validation allows TLS listeners without [tls] only for the embedded default; this
        // check keeps any other config from ever getting a self-signed certificate.
        if !settings.embedded {
            return Err(Failure::Config(ConfigError::Invalid {
                key: "tls".into(),
                message: "TLS listeners need a [tls] section with cert_file and key_file".into(),
            }));
        }
        let cert = devcert::ensure(&data_dir.join("tls"))?;
        let cfg = transport::load_tls13_server_config(&cert.cert_file, &cert.key_file)
            .with_context(|| {
                format!(
                    "the dev certificate in {} is unusable; delete that directory to regenerate it",
                    data_dir.join("tls").display()
                )
            })?;
        tls = Some(cfg);
        dev_cert = Some(cert);
    }

    // The master key encrypts the vault, the journal, the message stores and the audit log.
    // Authenticated sessions need it (its absence is exit code 2); a config without them may
    // have none: it then runs without a journal and with plaintext stores and audit log
    // (loudly), as a test or dev setup would.
    let loaded_keyring = if settings.any_authenticated_session() {
        Some(security::load_keyring(&settings, true).map_err(Failure::Auth)?)
    } else {
        match security::load_keyring(&settings, true) {
            Ok(k) => Some(k),
            Err(e) => {
                warn!(error = %format!("{e:#}"), "NO JOURNAL: without a master key nothing is journaled and nothing survives a restart of the server (orders, positions)");
                warn!("NO ENCRYPTION AT REST: without a master key the FIX message stores and the security audit log are written in plaintext");
                None
            }
        }
    };
    let keyring = loaded_keyring.as_ref().map(|k| k.ring.clone());
    if keyring.is_none() {
        if let Some(i) = settings
            .sessions
            .iter()
            .position(|s| !s.drop_copy.is_empty())
        {
            return Err(Failure::Config(ConfigError::Invalid {
                key: format!("sessions[{i}].drop_copy"),
                message: format!(
                    "sessions[{i}].drop_copy: a drop copy session is fed from the journal, which needs a master key (PORTCULLIS_MASTER_KEY or auth.master_key_file)"
                ),
            }));
        }
    }
    let audit =
        at_rest::open_server_audit(&settings, keyring.as_ref()).map_err(Failure::Runtime)?;

    // Authentication: vault and authenticator (before anything listens).
    let auth = setup_auth(&settings, loaded_keyring, audit.clone())?;

    // The order pipeline: the core (books and risk state) on its own thread.
    let (pipeline, core_thread, journal, had_orders) = start_pipeline(&settings, keyring.as_ref())?;
    // Metrics and security monitoring: the queues sampled at scrape time, the journal's fsync
    // durations, the webhook task and the reject-spike detector.
    metrics::install_sources(pipeline.clone(), journal.as_ref().map(|j| j.queue.clone()));
    if let Some(j) = &journal {
        j.queue
            .set_fsync_observer(|d| metrics::METRICS.fsync().record(d));
    }
    monitoring::install(&settings.monitoring, &settings.accounts, audit.clone()).map_err(|e| {
        Failure::Config(ConfigError::Invalid {
            key: "monitoring.webhook_ca_file".into(),
            message: format!("{e:#}"),
        })
    })?;
    let metrics_listener = match settings.metrics.bind {
        Some(addr) => Some(
            metrics::bind_http(addr)
                .await
                .with_context(|| format!("cannot bind the metrics listener {addr}"))?,
        ),
        None => None,
    };
    let admin_audit = Arc::new(control::AdminAudit::new(audit.clone()));
    let control_path = control::socket_path(&settings);
    let control_listener = control::bind(&control_path).map_err(Failure::Runtime)?;

    // Sessions and their stores: encrypted under the keyring (shared, so a new keyring reaches
    // every store) whenever there is one.
    let store_keys = keyring.clone().map(at_rest::KeyringCell::new);
    let mut registry = SessionRegistry::new();
    for s in &settings.sessions {
        let c = &s.config;
        let dir = data_dir.join("sessions").join(FileStore::session_dir_name(
            c.begin_string.as_str(),
            &c.sender_comp_id,
            &c.target_comp_id,
        ));
        let opener = at_rest::store_opener(dir, s.store_sync, store_keys.clone());
        let name = security::session_name(c);
        if s.authenticate {
            info!(
                session = %name, accounts = ?s.accounts, access = %s.access,
                require_message_signature = c.require_message_signature,
                "session configured"
            );
        } else {
            warn!(session = %name, "session configured WITHOUT authentication (authentication = \"none\", loopback listeners only)");
        }
        registry
            .insert(c.clone(), s.schedule, opener)
            .context("registering sessions")?;
    }
    let failures = registry.open_all(UtcTimestamp::now());
    if let Some((name, e)) = failures.into_iter().next() {
        return Err(anyhow::Error::new(e)
            .context(format!("cannot open the message store of session {name}"))
            .into());
    }
    let registry = Arc::new(registry);

    // Signals are hooked before anything listens, so a signal right after start is handled
    // (and a SIGHUP reloads the vault instead of ending the process).
    let mut signals = Signals::new().context("cannot install signal handlers")?;
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    let server_auth = Arc::new(security::ServerAuth::new(
        &settings,
        auth.as_ref().map(|a| a.authenticator.clone()),
    ));

    let mut listeners = Vec::with_capacity(settings.listeners.len());
    for l in &settings.listeners {
        let cfg = ListenerConfig {
            name: l.name.clone(),
            bind: l.bind,
            tls: if l.tls { tls.clone() } else { None },
            begin_string: l.begin_string,
            max_connections: l.max_connections,
            max_connections_per_ip: l.max_connections_per_ip,
            max_message_size: l.max_message_size,
            logon_timeout: l.logon_timeout,
            max_unsent_bytes: l.max_unsent_bytes,
        };
        let listener = transport::bind(cfg).await.context("starting listeners")?;
        listeners.push(listener.with_auth(server_auth.clone()));
    }
    // Every account's recent orders and trades, from the journal (none without a journal).
    let history = match (&journal, &store_keys) {
        (Some(j), Some(keys)) if settings.history.enabled() => {
            let h = history::OrderHistory::new(settings.history);
            h.follow(
                settings.journal.dir.clone(),
                keys.clone(),
                j.queue.acknowledged(),
                settings.journal_pin_cpu,
            )
            .context("starting the order history thread")?;
            metrics::track_history(h.clone());
            Some(h)
        }
        _ => None,
    };
    // The journal as the drop copy and the WebSocket user data streams follow it.
    let journal_feed = match (&journal, &store_keys) {
        (Some(j), Some(keys)) => Some(drop_copy::DropCopyFeed::new(
            settings.journal.dir.clone(),
            keys.clone(),
            j.queue.acknowledged(),
            pipeline.clone(),
        )),
        _ => None,
    };
    let user_streams = journal_feed.clone().map(user_streams::UserStreams::new);
    // The admin API and the OAuth authorization server (config validation makes [admin]
    // imply a vault, so `auth` is there).
    let admin = match (&settings.admin, &auth) {
        (Some(admin), Some(a)) => {
            let parts = admin::Parts {
                settings: settings.clone(),
                pipeline: pipeline.clone(),
                registry: registry.clone(),
                authenticator: a.authenticator.clone(),
                server_auth: server_auth.clone(),
                keyring: a.keyring.clone(),
                audit: audit.clone(),
                history: history.clone(),
            };
            match admin::start(admin, parts).await {
                Ok(server) => Some(server),
                Err(admin::StartError::Config(e)) => return Err(Failure::Config(e)),
                Err(admin::StartError::Runtime(e)) => {
                    return Err(Failure::Runtime(e.context("starting the admin API")))
                }
            }
        }
        _ => None,
    };
    // The WebSocket API: the same pipeline, the same authenticator (lockout, audit), the same
    // revocation signal as the FIX sessions; bearer tokens of the admin listener's OAuth server.
    let ws_auth: Arc<dyn portcullis_session::ws::WsAuth> = Arc::new(
        ws_auth::ServerWsAuth::new(
            auth.as_ref().map(|a| a.authenticator.clone()),
            transport::ConnectionAuth::revocations(&*server_auth),
        )
        .with_oauth(admin.as_ref().map(admin::AdminServer::oauth)),
    );
    let mut ws_listeners = Vec::with_capacity(settings.ws_listeners.len());
    for l in &settings.ws_listeners {
        let mut cfg = portcullis_session::ws::WsListenerConfig::new(&l.name, l.bind);
        cfg.max_connections = l.max_connections;
        cfg.max_connections_per_ip = l.max_connections_per_ip;
        cfg.max_message_size = l.max_message_size;
        cfg.session.max_pending = l.max_pending_requests;
        let r = &l.rate_limits;
        if let Some(v) = r.request_weight_per_minute {
            cfg.rate_limits.request_weight_per_minute = v;
        }
        if let Some(v) = r.orders_per_10s {
            cfg.rate_limits.orders_per_10s = v;
        }
        if let Some(v) = r.orders_per_day {
            cfg.rate_limits.orders_per_day = v;
        }
        if let Some(v) = r.connections_per_5min {
            cfg.rate_limits.connections_per_5min = v;
        }
        let path = cfg.path.clone();
        let factory = ws_app::WsBridgeFactory::new(
            pipeline.clone(),
            l.cancel_on_disconnect,
            history.clone(),
            user_streams.clone(),
        );
        let listener = portcullis_session::ws::WsListener::bind(
            cfg,
            if l.tls { tls.clone() } else { None },
            factory,
            ws_auth.clone(),
        )
        .await
        .context("starting WebSocket listeners")?;
        ws_listeners.push((listener, l.tls, path));
    }

    println!("data dir: {}", data_dir_shown.display());
    if let Some(cert) = &dev_cert {
        println!(
            "tls certificate: {} (self-signed dev certificate for localhost, 127.0.0.1, ::1{})",
            cert.cert_file.display(),
            if cert.generated {
                ", generated now"
            } else {
                ""
            }
        );
    }
    if let Some(a) = &auth {
        println!(
            "key vault: {} ({} keys; master key from {}); audit log: {}",
            settings.vault_path().display(),
            a.authenticator.key_count(),
            a.keyring.source,
            audit.location()
        );
    }
    if let Some((key, account)) = auth.as_ref().and_then(|a| a.demo_key.as_ref()) {
        println!(
            "demo API key, printed this once (it is stored only encrypted):\n  key id: {}\n  secret: {}\n  account {account}, scopes trade,read: log on with Username(553) = the key id and RawData(96) = the logon signature (README.md, \"Signing\")",
            key.key_id,
            key.secret.as_ref().map_or("(none)", |s| s.expose()),
        );
    }
    for l in &listeners {
        let addr = l.local_addr().context("listener address")?;
        let c = l.config();
        let proto = if c.tls.is_some() { "tls" } else { "tcp" };
        println!("listening: fix {} {proto} {addr}", c.begin_string);
        info!(listener = %c.name, %addr, begin_string = %c.begin_string, tls = c.tls.is_some(), "listening");
    }
    for (l, tls, path) in &ws_listeners {
        let addr = l.local_addr().context("WebSocket listener address")?;
        let proto = if *tls { "tls" } else { "tcp" };
        println!("listening: ws {proto} {addr}{path}");
        info!(%addr, tls, "listening (WebSocket API)");
    }
    if let Some(a) = &admin {
        let addr = a.local_addr().context("admin listener address")?;
        println!("listening: admin https://{addr}");
        info!(%addr, "listening (admin API and OAuth, HTTPS)");
    }
    if let Some(l) = &metrics_listener {
        let addr = l.local_addr().context("metrics listener address")?;
        println!("listening: metrics http://{addr}");
        info!(%addr, "listening (metrics, plain HTTP on loopback)");
    }

    println!(
        "order pipeline: {} instruments, {} accounts; control socket: {}",
        pipeline.directory().len(),
        pipeline.account_names().len(),
        control_path.display()
    );
    let app: Arc<dyn Application> = Arc::new(app::OrderEntryApp::new(
        pipeline.clone(),
        settings.sessions.iter().enumerate().map(|(i, s)| {
            (
                s.config.clone(),
                app::SessionInfo {
                    name: security::session_name(&s.config),
                    slot: portcullis_types::SessionId(i as u32),
                    authenticate: s.authenticate,
                    accounts: s.accounts.clone(),
                    cancel_on_disconnect: s.cancel_on_disconnect,
                    mmp: s.mmp,
                    has_traded: had_orders.get(i).copied().unwrap_or(false).into(),
                    finished: Default::default(),
                    drop_copy: (!s.drop_copy.is_empty()).then(|| {
                        let copied = if s
                            .drop_copy
                            .iter()
                            .any(|a| a == portcullis_auth::ANY_ACCOUNT)
                        {
                            drop_copy::Copied::All
                        } else {
                            drop_copy::Copied::Accounts(
                                s.drop_copy
                                    .iter()
                                    .filter_map(|a| pipeline.account_id(a))
                                    .collect(),
                            )
                        };
                        let c = &s.config;
                        let file = data_dir.join("drop-copy").join(format!(
                            "{}.cursor",
                            FileStore::session_dir_name(
                                c.begin_string.as_str(),
                                &c.sender_comp_id,
                                &c.target_comp_id
                            )
                        ));
                        let session = drop_copy::DropCopySession::new(
                            security::session_name(c),
                            copied,
                            file,
                        );
                        metrics::track_drop_copy(session.clone());
                        session
                    }),
                },
            )
        }),
        server_auth.clone(),
        // A task that polled for its answer would hold the thread the core task runs on.
        match settings.core.threading {
            pipeline::Threading::Dedicated => settings.core.reply_spin,
            pipeline::Threading::Shared => Duration::ZERO,
        },
        journal_feed.clone(),
        history.clone(),
    ));
    // Venue connectors: their secrets and TLS roots are read now, so a bad file stops the
    // start with a config error rather than failing every connection attempt later.
    let mut connectors = Vec::with_capacity(settings.venues.len());
    for (i, v) in settings.venues.iter().enumerate() {
        let key = |k: &str| format!("venues[{i}].{k}");
        let secret = match &v.credentials {
            Some((_, file)) => Some(venue::read_secret(file).map_err(|e| {
                Failure::Config(ConfigError::Invalid {
                    key: key("secret_file"),
                    message: format!("{}: {e:#}", key("secret_file")),
                })
            })?),
            None => None,
        };
        let tls = match &v.tls {
            Some((ca_file, _)) => Some(
                webhook::tls_client_config(ca_file.as_deref(), &key("ca_file")).map_err(|e| {
                    Failure::Config(ConfigError::Invalid {
                        key: key("ca_file"),
                        message: format!("{e:#}"),
                    })
                })?,
            ),
            None => None,
        };
        let dir = data_dir.join("venues").join(&v.name);
        info!(venue = %v.name, connect = %v.connect, instruments = ?v.instruments, "venue configured");
        let status = venue::VenueStatus::new(&v.name, &v.connect);
        metrics::track_venue(status.clone());
        connectors.push(venue::Connector {
            status,
            settings: v.clone(),
            slot: venue::slot(&settings, i),
            opener: at_rest::store_opener(dir, v.store_sync, store_keys.clone()),
            secret,
            tls,
        });
    }
    let (trigger, signal) = transport::shutdown_channel();
    if let Some(l) = metrics_listener {
        tokio::spawn(metrics::serve_http(l, signal.clone()));
    }
    let control_task = tokio::spawn(control::serve(
        control_listener,
        control_path,
        pipeline.clone(),
        registry.clone(),
        admin_audit,
        signal.clone(),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        tasks.spawn(l.run(registry.clone(), app.clone(), signal.clone()));
    }
    for (l, _, _) in ws_listeners {
        tasks.spawn(l.serve(signal.clone()));
    }
    if let Some(a) = admin {
        tasks.spawn(a.serve(signal.clone()));
    }
    for c in connectors {
        tasks.spawn(venue::run(c, pipeline.clone(), signal.clone()));
    }
    let watcher = match auth {
        Some(a) => {
            let mut w = security::VaultWatcher::new(
                settings.vault_path(),
                a.keyring,
                &a.vault,
                a.authenticator,
                server_auth.clone(),
            );
            // A rotated key file re-keys the stores, the audit log and the journal too.
            let journal_queue = journal.as_ref().map(|j| j.queue.clone());
            let at_rest_hook = store_keys
                .as_ref()
                .map(|keys| at_rest::on_new_keyring(keys.clone(), registry.clone(), audit.clone()));
            if at_rest_hook.is_some() || journal_queue.is_some() {
                w = w.on_new_keyring(Box::new(move |ring| {
                    if let Some(hook) = &at_rest_hook {
                        hook(ring);
                    }
                    if let Some(q) = &journal_queue {
                        q.rekey(ring);
                    }
                }));
            }
            tokio::spawn(w.run(hangup, signal.clone()))
        }
        None => tokio::spawn(ignore_hangups(hangup, signal.clone())),
    };

    let name = signals.recv().await;
    info!(signal = name, "shutting down: logging out every session");
    trigger.trigger();
    // Each listener waits (boundedly) for its sessions' Logout handshakes; a second signal
    // stops waiting.
    let drained = async {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                error!(error = %e, "listener task failed");
            }
        }
    };
    tokio::select! {
        _ = drained => {}
        _ = tokio::time::sleep(transport::SHUTDOWN_GRACE + Duration::from_secs(3)) => {
            warn!("shutdown took too long; stopping anyway");
        }
        n = signals.recv() => warn!(signal = n, "second signal: stopping now"),
    }
    for (session, e) in registry.sync_all() {
        error!(%session, error = %e, "message store sync failed at shutdown");
    }
    // The sessions have closed their slots (cancel-on-disconnect ran); give the last closes a
    // moment to reach the core thread, then stop it.
    let _ = tokio::time::timeout(Duration::from_secs(1), control_task).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    pipeline.stop();
    if !core_thread.join().await {
        error!("the core thread panicked");
    }
    // The core thread has pushed its last record: the journal thread drains, fsyncs, closes.
    if let Some(journal) = journal {
        journal.queue.stop();
        match journal.thread.join() {
            Ok(seq) => info!(
                durable_seq = seq.0,
                full_waits = journal.queue.full_waits(),
                "journal closed"
            ),
            Err(_) => error!("the journal thread panicked"),
        }
    }
    info!(
        refused_server_busy = pipeline.busy_count(),
        "order pipeline stopped"
    );
    // The watcher writes the keys' last-use times once more as it stops.
    if tokio::time::timeout(Duration::from_secs(3), watcher)
        .await
        .is_err()
    {
        warn!("the key vault watcher did not stop in time");
    }
    if let Err(e) = audit.sync() {
        error!(error = %e, "audit log sync failed at shutdown");
    }
    info!("stopped");
    Ok(())
}

/// The journal thread and its queue.
struct JournalThread {
    queue: Arc<journal_queue::JournalQueue>,
    thread: std::thread::JoinHandle<portcullis_journal::Seq>,
}

/// What [`start_pipeline`] started: the shared pipeline, the core thread, the journal thread.
type Started = (
    Arc<pipeline::Pipeline>,
    pipeline::CoreHandle,
    Option<JournalThread>,
    Vec<bool>,
);

/// Journal items the core thread may queue ahead of the journal thread (about 256 bytes
/// each): a few group commits' worth under a flood.
const JOURNAL_QUEUE_CAPACITY: usize = 1 << 16;

/// Lists the instruments, builds the core, recovers its state from the journal and starts the
/// core and journal threads.
fn start_pipeline(
    settings: &Settings,
    keyring: Option<&portcullis_auth::MasterKeyring>,
) -> Result<Started, Failure> {
    let now_ns = pipeline::now_ns();
    let instruments = portcullis_engine::Instruments::new(
        &settings.instruments,
        &settings.option_series,
        now_ns / 1_000_000,
    )
    .map_err(|e| {
        Failure::Config(config::instrument_error(
            &e,
            &settings.instruments,
            &settings.option_series,
        ))
    })?;
    let names: Vec<&str> = settings.accounts.iter().map(String::as_str).collect();
    let mut core =
        portcullis_engine::Core::new(&settings.engine, &settings.risk, &names, instruments)
            .map_err(|e| {
                Failure::Config(ConfigError::Invalid {
                    key: "engine".into(),
                    message: e.to_string(),
                })
            })?;
    // Before recovery: replayed orders of routed instruments go to their venues again.
    venue::apply_routes(&mut core, settings);
    let config = pipeline::PipelineConfig {
        threading: settings.core.threading,
        ingress_capacity: settings.core.ingress_capacity,
        egress_capacity: settings.core.egress_capacity,
        idle_spin: settings.core.idle_spin,
        pin_cpu: settings.core.pin_cpu,
        trading_day_end_secs: settings.core.trading_day_end_secs,
        max_sessions: settings.risk.max_sessions,
        // The configured sessions own slots 0..n, the venues the next ones (config validation
        // keeps them within max_sessions).
        reserved_slots: (settings.sessions.len() + settings.venues.len()) as u32,
    };
    order_codec::seed_local_ids((now_ns / 1_000) as u64);
    security_list::seed_response_ids((now_ns / 1_000_000) as u64);
    positions::seed_report_ids((now_ns / 1_000_000) as u64);
    // Which configured sessions have orders working from before the start: their reports
    // flow from their next Logon on (see `app::SessionInfo::has_traded`).
    let traded = |core: &portcullis_engine::Core| -> Vec<bool> {
        (0..settings.sessions.len())
            .map(|i| {
                core.matcher()
                    .session_has_orders(portcullis_types::SessionId(i as u32))
            })
            .collect()
    };
    let Some(keyring) = keyring else {
        let pipeline = pipeline::Pipeline::new(&config, &settings.accounts, &core);
        let had_orders = traded(&core);
        let handle = pipeline::start_core(core, pipeline.clone(), &config, None)
            .context("cannot start the core thread")?;
        return Ok((pipeline, handle, None, had_orders));
    };
    // Recovery: the whole state from the latest snapshot and the journal after it, before
    // anything listens.
    let (writer, replayed, core, unjournaled) =
        journal::recover(settings, keyring, core).map_err(Failure::Journal)?;
    println!(
        "journal: {} ({} records replayed{}: {} commands; state hash {}; fsync {:?})",
        settings.journal.dir.display(),
        replayed.records,
        replayed.snapshot_seq.map_or(String::new(), |s| format!(
            " after the snapshot at record {s}"
        )),
        replayed.commands,
        hex::encode(replayed.state_hash),
        settings.journal.fsync
    );
    // The snapshot replica starts as an exact copy of the recovered core.
    let replica = if settings.journal.snapshot_every > 0 {
        let mut state = Vec::new();
        journal::encode_state(&core, replayed.clock, &mut state);
        let (copy, _) = journal::decode_state(settings, &state).map_err(Failure::Journal)?;
        Some(journal_queue::SnapshotReplica::new(
            copy,
            replayed.clock,
            replayed.last_seq,
            settings.accounts.len(),
            settings.journal.snapshot_every,
        ))
    } else {
        None
    };
    let gated = settings.journal.fsync == portcullis_journal::FsyncPolicy::Always;
    let queue = journal_queue::JournalQueue::new(JOURNAL_QUEUE_CAPACITY, gated);
    let core_journal = journal_queue::CoreJournal::new(queue.clone(), replayed.last_seq);
    let pipeline = pipeline::Pipeline::new(&config, &settings.accounts, &core);
    // Reports of the last commands before a crash that nobody received: the sessions' next
    // logons get them first, like reports of fills while they were away.
    for e in unjournaled {
        pipeline.parked().park(pipeline::Outbound::Event(e));
    }
    let journal_thread = journal_queue::spawn_writer(
        writer,
        queue.clone(),
        replica,
        pipeline.parked().clone(),
        settings.journal_pin_cpu,
    )
    .context("cannot start the journal thread")?;
    let had_orders = traded(&core);
    let handle = pipeline::start_core(core, pipeline.clone(), &config, Some(core_journal))
        .context("cannot start the core thread")?;
    info!(
        instruments = pipeline.directory().len(),
        accounts = settings.accounts.len(),
        ingress_capacity = config.ingress_capacity,
        egress_capacity = config.egress_capacity,
        threading = ?config.threading,
        "order pipeline started"
    );
    Ok((
        pipeline,
        handle,
        Some(JournalThread {
            queue,
            thread: journal_thread,
        }),
        had_orders,
    ))
}

/// What `serve` needs for authentication.
struct AuthSetup {
    keyring: security::LoadedKeyring,
    vault: portcullis_auth::Vault,
    authenticator: Arc<Authenticator>,
    demo_key: Option<(portcullis_auth::NewKey, String)>,
}

/// Loads the vault with the master `keyring` (loaded by the caller) and builds the
/// authenticator, which writes to `audit`, if any session authenticates. An unreadable vault
/// is [`Failure::Auth`] (exit code 2).
fn setup_auth(
    settings: &Settings,
    keyring: Option<security::LoadedKeyring>,
    audit: Arc<at_rest::AuditLog>,
) -> Result<Option<AuthSetup>, Failure> {
    if !settings.any_authenticated_session() {
        warn!("no session requires authentication: no key vault loaded");
        return Ok(None);
    }
    let Some(keyring) = keyring else {
        return Err(Failure::Auth(anyhow::anyhow!("no master key")));
    };
    let opened = security::open_vault_at_start(settings, &keyring.ring, &*audit)
        .context("cannot open the key vault")
        .map_err(Failure::Auth)?;
    let authenticator =
        // Every auth audit event also feeds the metrics and the security events.
        Authenticator::with_vault(
            settings.auth.config.clone(),
            &opened.vault,
            Arc::new(monitoring::MonitoredAudit::new(audit)),
        )
        .map_err(
            |e| {
                Failure::Config(ConfigError::Invalid {
                    key: format!("auth.{}", e.field),
                    message: e.to_string(),
                })
            },
        )?;
    Ok(Some(AuthSetup {
        keyring,
        vault: opened.vault,
        authenticator: Arc::new(authenticator),
        demo_key: opened.demo_key,
    }))
}

/// Without a vault, SIGHUP has nothing to reload; it must still not end the process.
async fn ignore_hangups(
    mut hangup: tokio::signal::unix::Signal,
    mut shutdown: transport::ShutdownSignal,
) {
    loop {
        tokio::select! {
            Some(()) = hangup.recv() => info!("SIGHUP: no key vault to reload"),
            _ = shutdown.wait() => return,
        }
    }
}

/// SIGTERM and SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
