//! Operator control at run time: a local control socket and `portcullis admin ...`.
//!
//! The server listens on the Unix socket `<data_dir>/control.sock` (mode 0600: only the user
//! the server runs as, and root, can connect). One request per connection, one JSON line each
//! way:
//!
//! ```text
//! → {"command":"kill","account":"ALICE","off":false}
//! ← {"ok":true,"message":"kill switch on for account ALICE: 3 resting orders cancelled"}
//! ```
//!
//! | `portcullis admin ...` | effect |
//! |---|---|
//! | `kill [--account A]` | kill switch on, for one account or for everything: resting orders are cancelled (Canceled reports), new orders and replaces refused (OrdRejReason 0 "kill switch active"); cancels still work |
//! | `kill [--account A] --off` | kill switch off |
//! | `halt --instrument S` | the instrument stops trading: new orders and replaces refused (OrdRejReason 2); resting orders stay and may be cancelled |
//! | `resume --instrument S` | the instrument trades again |
//! | `mark --instrument S --price P` | the reference price of the price band, until the next trade |
//! | `limits --account A --set key=value ...` | changes risk limits (keys of `[risk.defaults]`); open orders and positions are kept |
//! | `pause-core` | maintenance pause: the core thread stops taking orders; they queue up to `core.ingress_capacity`, beyond which they are refused "server busy"; operator commands still work |
//! | `resume-core` | ends the pause |
//! | `sessions` | the FIX sessions: state, peer, next sequence numbers |
//! | `venues [--json]` | the venue connectors: logged on or down and since when, logons, orders sent, reports received, the last problem |
//! | `accounts [--account A] [--json]` | per account: kill switch, open orders, credit used, positions (net quantity per instrument, with its entry and reference prices) |
//! | `sequence --session NAME [--reset] [--next-sender N] [--next-target N]` | sets the sequence numbers of a session without a connection (a counterparty that started again at 1 without ResetSeqNumFlag: `--next-target 1`); ours only forward, or `--reset` to start again at 1 |
//! | `totp-enroll --key KEY_ID` | enrols an admin key's operator for TOTP (the admin API's second factor): prints an `otpauth://` URI once and stores the secret in the vault; needs no running server |
//!
//! Commands reach the core thread through their own small queue (never behind a flood of
//! orders; the session commands do not concern it), and every command — carried out or refused — is an event in the audit log
//! (`"kind":"admin"`, the command in `reason`, the result in `detail`).
//!
//! Exit codes of `portcullis admin`: 0 done, 2 bad input (including a command the server
//! refused, e.g. an unknown account), 1 the server cannot be reached.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use portcullis_auth::clock::now_ms;
use portcullis_auth::{AuditEvent, AuditKind, Outcome};
use portcullis_fix::UtcTimestamp;
use portcullis_session::transport::{SequenceChange, SessionRegistry, ShutdownSignal};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{error, info, warn};

use crate::at_rest::AuditLog;
use crate::config::{self, Settings};
use crate::pipeline::{ControlAction, ControlRequest, Pipeline};

/// The control socket of a data dir.
pub fn socket_path(settings: &Settings) -> PathBuf {
    settings.data_dir.join("control.sock")
}

/// Longest request line.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a command may take on the core thread (it answers within a loop pass).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// One request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Kill switch on (or off).
    Kill {
        /// One account, or everything.
        #[serde(default)]
        account: Option<String>,
        /// Turn it off.
        #[serde(default)]
        off: bool,
    },
    /// Halt an instrument.
    Halt {
        /// Its symbol.
        instrument: String,
    },
    /// Resume an instrument.
    Resume {
        /// Its symbol.
        instrument: String,
    },
    /// Set an instrument's reference price.
    Mark {
        /// Its symbol.
        instrument: String,
        /// The price (decimal text).
        price: String,
    },
    /// Change an account's limits.
    Limits {
        /// The account.
        account: String,
        /// `[key, value]` pairs.
        set: Vec<(String, String)>,
    },
    /// Maintenance pause of the core thread.
    PauseCore,
    /// End of the pause.
    ResumeCore,
    /// List the FIX sessions.
    Sessions,
    /// List the venue connectors.
    Venues,
    /// Show accounts: kill switch, open orders, credit used, positions.
    Accounts {
        /// One account, or every account.
        #[serde(default)]
        account: Option<String>,
    },
    /// Set a disconnected session's sequence numbers.
    Sequence {
        /// The session's name, `FIX.4.4:OURS->THEIRS` as `sessions` lists it.
        session: String,
        /// Start a new sequence at 1 first.
        #[serde(default)]
        reset: bool,
        /// Our next MsgSeqNum (only forward).
        #[serde(default)]
        next_sender_seq: Option<u64>,
        /// The counterparty's next expected MsgSeqNum.
        #[serde(default)]
        next_target_seq: Option<u64>,
    },
}

impl Request {
    fn name(&self) -> &'static str {
        match self {
            Request::Kill { off: false, .. } => "kill",
            Request::Kill { off: true, .. } => "kill_off",
            Request::Halt { .. } => "halt",
            Request::Resume { .. } => "resume",
            Request::Mark { .. } => "mark",
            Request::Limits { .. } => "limits",
            Request::PauseCore => "pause_core",
            Request::ResumeCore => "resume_core",
            Request::Sessions => "sessions",
            Request::Accounts { .. } => "accounts",
            Request::Venues => "venues",
            Request::Sequence { .. } => "sequence",
        }
    }

    /// The security event a successful command is (kill switch and limit changes).
    fn security_kind(&self) -> Option<crate::metrics::SecurityKind> {
        use crate::metrics::SecurityKind;
        match self {
            Request::Kill { off: false, .. } => Some(SecurityKind::KillSwitchOn),
            Request::Kill { off: true, .. } => Some(SecurityKind::KillSwitchOff),
            Request::Limits { .. } => Some(SecurityKind::LimitsChanged),
            _ => None,
        }
    }

    fn account(&self) -> Option<&str> {
        match self {
            Request::Kill { account, .. } => account.as_deref(),
            Request::Limits { account, .. } => Some(account),
            Request::Accounts { account } => account.as_deref(),
            _ => None,
        }
    }

    /// The core thread's part of the command (`None` for the session commands).
    fn action(self) -> Option<ControlAction> {
        Some(match self {
            Request::Kill { account, off } => ControlAction::Kill { account, on: !off },
            Request::Halt { instrument } => ControlAction::Halt {
                symbol: instrument,
                halted: true,
            },
            Request::Resume { instrument } => ControlAction::Halt {
                symbol: instrument,
                halted: false,
            },
            Request::Mark { instrument, price } => ControlAction::Mark {
                symbol: instrument,
                price,
            },
            Request::Limits { account, set } => ControlAction::Limits { account, set },
            Request::PauseCore => ControlAction::Pause,
            Request::ResumeCore => ControlAction::Resume,
            Request::Accounts { .. } => ControlAction::Describe,
            Request::Sessions | Request::Venues | Request::Sequence { .. } => return None,
        })
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Carried out.
    pub ok: bool,
    /// What happened, or why not.
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Audit

/// Writes operator commands into the server's audit log (encrypted under the master key
/// whenever the server has one), in its event format (the fields of [`AuditEvent`]) with
/// `"kind":"admin"`. The auth crate's kinds cover authentication and key management;
/// operator actions get their own kind so that a reader can tell them apart.
#[derive(Debug)]
pub struct AdminAudit {
    log: Arc<AuditLog>,
}

impl AdminAudit {
    /// Operator commands go to `log`, the server's audit log.
    pub fn new(log: Arc<AuditLog>) -> Self {
        AdminAudit { log }
    }

    fn record(&self, req: &Request, uid: Option<u32>, ok: bool, message: &str) {
        let outcome = if ok { Outcome::Ok } else { Outcome::Denied };
        // The kind is overwritten by record_event; the event builder bounds and formats the
        // fields.
        let mut event = AuditEvent::new(AuditKind::Anomaly, outcome, now_ms())
            .session(&match uid {
                Some(u) => format!("control socket (uid {u})"),
                None => "control socket".to_owned(),
            })
            .reason(req.name())
            .detail(message);
        if let Some(a) = req.account() {
            event = event.account(a);
        }
        self.record_event(&event);
    }

    /// Records `event` as an operator action: its fields as given, the kind `admin` (the admin
    /// API's calls go here too).
    pub fn record_event(&self, event: &AuditEvent) {
        let line = match serde_json::to_value(event) {
            Ok(mut v) => {
                v["kind"] = serde_json::Value::from("admin");
                v.to_string()
            }
            Err(e) => {
                error!(error = %e, "cannot format an admin audit event");
                return;
            }
        };
        if let Err(e) = self.log.record_line(&line) {
            error!(error = %e, "cannot write an admin audit event");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server side

/// Binds the control socket at `path`, mode 0600. A socket file left by a server that is gone
/// is replaced; one a running server answers on is an error.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(anyhow!(
                "another server is using the control socket {} (same data dir?)",
                path.display()
            ));
        }
        std::fs::remove_file(path).with_context(|| {
            format!("cannot remove the stale control socket {}", path.display())
        })?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot bind the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict the control socket {}", path.display()))?;
    Ok(listener)
}

/// Serves the control socket until shutdown.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    pipeline: Arc<Pipeline>,
    registry: Arc<SessionRegistry>,
    audit: Arc<AdminAudit>,
    mut shutdown: ShutdownSignal,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (p, r, a) = (pipeline.clone(), registry.clone(), audit.clone());
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, &p, &r, &a).await {
                            warn!(error = %format!("{e:#}"), "control connection failed");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.wait() => break,
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
}

async fn handle(
    stream: UnixStream,
    pipeline: &Pipeline,
    registry: &SessionRegistry,
    audit: &AdminAudit,
) -> Result<()> {
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
    tokio::time::timeout(REPLY_TIMEOUT, reader.read_line(&mut line))
        .await
        .context("no request within the timeout")??;
    let response = match serde_json::from_str::<Request>(line.trim()) {
        Err(e) => Response {
            ok: false,
            message: format!("bad request: {e}"),
        },
        Ok(req) => {
            let response = match &req {
                Request::Sessions => Response {
                    ok: true,
                    message: list_sessions(registry),
                },
                Request::Venues => Response {
                    ok: true,
                    message: serde_json::Value::from(
                        crate::metrics::venues()
                            .iter()
                            .map(|v| v.describe())
                            .collect::<Vec<_>>(),
                    )
                    .to_string(),
                },
                Request::Sequence {
                    session,
                    reset,
                    next_sender_seq,
                    next_target_seq,
                } => {
                    let change = SequenceChange {
                        reset: *reset,
                        next_sender_seq: *next_sender_seq,
                        next_target_seq: *next_target_seq,
                    };
                    set_sequence(registry, session, change).await
                }
                Request::Accounts { account } => {
                    let r = execute(req.clone(), pipeline).await;
                    match r.ok {
                        true => accounts_of(&r.message, account.as_deref()),
                        false => r,
                    }
                }
                _ => execute(req.clone(), pipeline).await,
            };
            info!(command = req.name(), ok = response.ok, message = %response.message, "operator command");
            audit.record(&req, uid, response.ok, &response.message);
            if let (true, Some(kind)) = (response.ok, req.security_kind()) {
                let actor = match uid {
                    Some(u) => format!("control socket (uid {u})"),
                    None => "control socket".to_owned(),
                };
                crate::monitoring::operator_change(kind, req.account(), &actor, &response.message);
            }
            response
        }
    };
    let mut out = serde_json::to_string(&response)?;
    out.push('\n');
    write.write_all(out.as_bytes()).await?;
    write.shutdown().await?;
    Ok(())
}

/// One line per session, by name: state, peer, next sequence numbers.
fn list_sessions(registry: &SessionRegistry) -> String {
    let mut lines: Vec<String> = registry
        .iter()
        .map(|e| {
            let s = e.status();
            let state = s.state();
            let num = |n: Option<u64>| n.map_or("-".to_owned(), |n| n.to_string());
            format!(
                "{} {state} peer={} next_sender_seq={} next_target_seq={}",
                s.name,
                s.peer.map_or("-".to_owned(), |p| p.to_string()),
                num(s.next_sender_seq),
                num(s.next_target_seq),
            )
        })
        .collect();
    lines.sort();
    if lines.is_empty() {
        "no FIX sessions configured".to_owned()
    } else {
        lines.join("\n")
    }
}

/// A JSON value as a line of `portcullis admin` output shows it: strings bare, null `-`.
fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        v => v.to_string(),
    }
}

/// The accounts of the core's state (`ControlAction::Describe`), or the one asked for, as a
/// JSON array: what `portcullis admin accounts` prints.
fn accounts_of(state: &str, only: Option<&str>) -> Response {
    let mut state: serde_json::Value = serde_json::from_str(state).unwrap_or_default();
    let accounts: Vec<serde_json::Value> = match state["accounts"].take() {
        serde_json::Value::Array(a) => a
            .into_iter()
            .filter(|a| only.map_or(true, |o| a["account"] == o))
            .collect(),
        _ => Vec::new(),
    };
    match (accounts.is_empty(), only) {
        (true, Some(o)) => Response {
            ok: false,
            message: format!("unknown account {o:?}"),
        },
        _ => Response {
            ok: true,
            message: serde_json::Value::from(accounts).to_string(),
        },
    }
}

/// One line per venue connector (from the server's JSON): state and since when, counters,
/// the last problem.
fn venue_lines(json: &str) -> String {
    let venues: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    if venues.is_empty() {
        return "no venues configured".to_owned();
    }
    venues
        .iter()
        .map(|d| {
            let problem = match &d["last_problem"] {
                serde_json::Value::Null => "-".to_owned(),
                p => format!("{} at {}", json_text(&p["what"]), json_text(&p["at"])),
            };
            format!(
                "{} {} connect={} since={} logons={} orders_sent={} reports={} last_problem={problem}",
                json_text(&d["name"]),
                if d["logged_on"] == true { "logged_on" } else { "down" },
                json_text(&d["connect"]),
                json_text(&d["since"]),
                json_text(&d["logons"]),
                json_text(&d["orders_sent"]),
                json_text(&d["reports"]),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line per account (from the server's JSON): kill switch, open orders, credit used, each
/// position with its entry and reference prices, the underlying positions.
fn account_lines(json: &str) -> String {
    let accounts: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    if accounts.is_empty() {
        return "no accounts configured".to_owned();
    }
    let empty = Vec::new();
    accounts
        .iter()
        .map(|a| {
            let positions: Vec<String> = a["positions"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|p| {
                    format!(
                        "{} {} (entry {}, reference {})",
                        json_text(&p["symbol"]),
                        json_text(&p["position"]),
                        json_text(&p["entry_price"]),
                        json_text(&p["reference_price"])
                    )
                })
                .collect();
            let underlyings: Vec<String> = a["underlyings"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|u| {
                    format!(
                        "{} {}",
                        json_text(&u["underlying"]),
                        json_text(&u["position"])
                    )
                })
                .collect();
            let list = |v: Vec<String>| {
                if v.is_empty() {
                    "none".to_owned()
                } else {
                    v.join(", ")
                }
            };
            format!(
                "{} kill_switch={} open_orders={} credit_used={} positions: {}; underlyings: {}",
                json_text(&a["account"]),
                if a["kill_switch"] == true {
                    "on"
                } else {
                    "off"
                },
                json_text(&a["open_orders"]),
                json_text(&a["credit_used"]),
                list(positions),
                list(underlyings),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn set_sequence(registry: &SessionRegistry, name: &str, change: SequenceChange) -> Response {
    let Some(entry) = registry.by_name(name) else {
        return Response {
            ok: false,
            message: format!("no session {name:?} (`portcullis admin sessions` lists them)"),
        };
    };
    // The store syncs to disk: off the runtime's workers.
    let result =
        tokio::task::spawn_blocking(move || entry.set_sequence(change, UtcTimestamp::now())).await;
    match result {
        Ok(Ok((sender, target))) => Response {
            ok: true,
            message: format!(
                "sequence of {name} set:{} next_sender_seq={sender} next_target_seq={target}",
                if change.reset { " reset," } else { "" }
            ),
        },
        Ok(Err(e)) => Response {
            ok: false,
            message: e.to_string(),
        },
        Err(e) => Response {
            ok: false,
            message: format!("the sequence change failed: {e}"),
        },
    }
}

async fn execute(req: Request, pipeline: &Pipeline) -> Response {
    let Some(action) = req.action() else {
        return Response {
            ok: false,
            message: "not a core command".into(),
        };
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let request = ControlRequest { action, reply: tx };
    if pipeline.control(request).is_err() {
        return Response {
            ok: false,
            message: "too many operator commands waiting; try again".into(),
        };
    }
    match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
        Ok(Ok(Ok(message))) => Response { ok: true, message },
        Ok(Ok(Err(message))) => Response { ok: false, message },
        Ok(Err(_)) => Response {
            ok: false,
            message: "the core thread stopped".into(),
        },
        Err(_) => Response {
            ok: false,
            message: "the core thread did not answer in time".into(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The CLI side

/// `portcullis admin`: operator commands to a running server.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The server's TOML config (for its data dir, where the control socket is); without it,
    /// the embedded default (`./var`).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The control socket, instead of `<data_dir>/control.sock`.
    #[arg(long, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Kill switch: cancel the resting orders of an account (or of every account) and refuse
    /// new orders until `--off`.
    Kill {
        /// Only this account (default: everything).
        #[arg(long, value_name = "ACCOUNT")]
        account: Option<String>,
        /// Turn the kill switch off again.
        #[arg(long)]
        off: bool,
    },
    /// Halt trading in an instrument (resting orders stay; cancels are accepted).
    Halt {
        /// The instrument's symbol.
        #[arg(long, value_name = "SYMBOL")]
        instrument: String,
    },
    /// Resume trading in a halted instrument.
    Resume {
        /// The instrument's symbol.
        #[arg(long, value_name = "SYMBOL")]
        instrument: String,
    },
    /// Set the reference price (mark) the price band is checked around.
    Mark {
        /// The instrument's symbol.
        #[arg(long, value_name = "SYMBOL")]
        instrument: String,
        /// The price, at most the instrument's price scale in decimals.
        #[arg(long, value_name = "PRICE")]
        price: String,
    },
    /// Change risk limits of an account (keys as in [risk.defaults]).
    Limits {
        /// The account.
        #[arg(long, value_name = "ACCOUNT")]
        account: String,
        /// `key=value`, e.g. `max_notional=50000` or `stp_mode=cancel_both`; repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE", required = true, num_args = 1..)]
        set: Vec<String>,
    },
    /// Maintenance pause: the core thread stops taking orders until `resume-core`.
    PauseCore,
    /// End a maintenance pause.
    ResumeCore,
    /// List the FIX sessions: state, peer, next sequence numbers.
    Sessions,
    /// List the venue connectors: logged on or down and since when, logons, orders sent,
    /// reports received, the last problem.
    Venues {
        /// Print the JSON array instead of one line per venue.
        #[arg(long)]
        json: bool,
    },
    /// Show accounts: kill switch, open orders, credit used and positions (net quantity per
    /// instrument, with its entry and reference prices).
    Accounts {
        /// Only this account (default: every account).
        #[arg(long, value_name = "ACCOUNT")]
        account: Option<String>,
        /// Print the JSON array instead of one line per account.
        #[arg(long)]
        json: bool,
    },
    /// Set the sequence numbers of a FIX session that has no connection (log it out first).
    Sequence {
        /// The session, `FIX.4.4:OURS->THEIRS` as `sessions` lists it.
        #[arg(long, value_name = "NAME")]
        session: String,
        /// Start a new sequence: both numbers back to 1, stored messages dropped.
        #[arg(long)]
        reset: bool,
        /// Our next MsgSeqNum(34); only forward.
        #[arg(long, value_name = "N")]
        next_sender: Option<u64>,
        /// The MsgSeqNum(34) expected of the counterparty's next message.
        #[arg(long, value_name = "N")]
        next_target: Option<u64>,
    },
    /// Enrol an operator (an API key with the admin scope) for the admin API's TOTP second
    /// factor: prints an otpauth:// URI (shown once) and stores the secret in the vault.
    TotpEnroll {
        /// The operator's key id.
        #[arg(long, value_name = "KEY_ID")]
        key: String,
        /// Print `{"key_id", "otpauth_uri", "secret"}` as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Why `portcullis admin` failed.
#[derive(Debug)]
pub enum AdminError {
    /// Bad arguments or config, or the server refused the command: exit 2.
    BadInput(String),
    /// The server cannot be reached: exit 1.
    Unreachable(String),
}

/// Runs `portcullis admin ...`; prints the server's message on success.
pub fn run(args: AdminArgs) -> Result<String, AdminError> {
    // The listings come as JSON: printed as such with --json, else one line per item.
    let lines: Option<fn(&str) -> String> = match args.command {
        AdminCommand::Accounts { json: false, .. } => Some(account_lines),
        AdminCommand::Venues { json: false } => Some(venue_lines),
        _ => None,
    };
    let request = match args.command {
        AdminCommand::Kill { account, off } => Request::Kill { account, off },
        AdminCommand::Halt { instrument } => Request::Halt { instrument },
        AdminCommand::Resume { instrument } => Request::Resume { instrument },
        AdminCommand::Mark { instrument, price } => Request::Mark { instrument, price },
        AdminCommand::Limits { account, set } => {
            let mut pairs = Vec::with_capacity(set.len());
            for kv in set {
                let (k, v) = kv.split_once('=').ok_or_else(|| {
                    AdminError::BadInput(format!("--set {kv:?}: expected KEY=VALUE"))
                })?;
                pairs.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            Request::Limits {
                account,
                set: pairs,
            }
        }
        AdminCommand::PauseCore => Request::PauseCore,
        AdminCommand::ResumeCore => Request::ResumeCore,
        AdminCommand::Sessions => Request::Sessions,
        AdminCommand::Accounts { account, .. } => Request::Accounts { account },
        AdminCommand::Venues { .. } => Request::Venues,
        AdminCommand::Sequence {
            session,
            reset,
            next_sender,
            next_target,
        } => Request::Sequence {
            session,
            reset,
            next_sender_seq: next_sender,
            next_target_seq: next_target,
        },
        // Works on the vault, not through the control socket (the server need not run).
        AdminCommand::TotpEnroll { key, json } => {
            return crate::admin::totp_enroll(args.config.as_deref(), &key, json)
                .map_err(|e| AdminError::BadInput(format!("{e:#}")));
        }
    };
    let path = match args.socket {
        Some(p) => p,
        None => {
            let settings = match &args.config {
                Some(c) => config::load(c),
                None => config::embedded_default(),
            }
            .map_err(|e| AdminError::BadInput(format!("config: {e}")))?;
            socket_path(&settings)
        }
    };
    let response = send(&path, &request).map_err(|e| AdminError::Unreachable(format!("{e:#}")))?;
    if !response.ok {
        return Err(AdminError::BadInput(response.message));
    }
    Ok(match lines {
        Some(f) => f(&response.message),
        None => response.message,
    })
}

/// Sends one request and reads the answer.
pub fn send(path: &Path, request: &Request) -> Result<Response> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).with_context(|| {
        format!(
            "cannot connect to the control socket {} (is the server running?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT + Duration::from_secs(1)))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("no answer from the server")?;
    serde_json::from_str(answer.trim())
        .with_context(|| format!("bad answer from the server: {answer:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json_lines() {
        let r = Request::Limits {
            account: "A".into(),
            set: vec![("max_notional".into(), "5".into())],
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"command":"limits","account":"A","set":[["max_notional","5"]]}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        let k: Request = serde_json::from_str(r#"{"command":"kill"}"#).unwrap();
        assert_eq!(
            k,
            Request::Kill {
                account: None,
                off: false
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"command":"kill","acount":"A"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"command":"explode"}"#).is_err());
    }

    #[test]
    fn admin_audit_lines_have_the_audit_fields_and_kind_admin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let a = AdminAudit::new(Arc::new(AuditLog::Plain(
            crate::at_rest::PlainAuditLog::open(&path).unwrap(),
        )));
        a.record(
            &Request::Kill {
                account: Some("A".into()),
                off: false,
            },
            Some(1000),
            true,
            "done",
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["kind"], "admin");
        assert_eq!(v["reason"], "kill");
        assert_eq!(v["account"], "A");
        assert_eq!(v["outcome"], "ok");
        assert_eq!(v["detail"], "done");
        assert_eq!(v["session"], "control socket (uid 1000)");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }
}
