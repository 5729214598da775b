//! The admin API's routes and handlers, and the audit event every call leaves.
//!
//! | call | what |
//! |---|---|
//! | `GET /healthz` | the process answers (no authentication) |
//! | `GET /readyz` | the core thread answers operator commands (no authentication) |
//! | `GET /v1/keys` | the API keys (never their secrets) |
//! | `POST /v1/keys` | creates a key: `{"account", "scopes", "ip_allowlist"?, "expires_at"?, "ed25519_public_key"?}` → 201 with the secret, shown once |
//! | `POST /v1/keys/{id}/revoke` | revokes a key; live sessions and tokens of it stop at once |
//! | `POST /v1/keys/{id}/rotate` | a new key with the same account, scopes, allowlist, expiry and TOTP enrolment; the old one is revoked → 201 with the new secret |
//! | `GET /v1/accounts`, `GET /v1/accounts/{acc}` | limits and kill switch of the accounts |
//! | `PUT /v1/accounts/{acc}/limits` | `{"max_notional": "50000", "max_open_orders": 10, ...}`: keys of `[risk.defaults]`; applies to the next order |
//! | `PUT /v1/accounts/{acc}/kill-switch` | `{"on": true}` cancels the account's resting orders and refuses new ones; `{"on": false}` ends it |
//! | `GET /v1/kill-switch`, `PUT /v1/kill-switch` | the global kill switch, `{"on": bool}` |
//! | `GET /v1/instruments` | status and reference price of each instrument |
//! | `POST /v1/instruments/{sym}/halt`, `.../resume` | halts or resumes trading |
//! | `PUT /v1/instruments/{sym}/mark` | `{"price": "100.5"}`: the reference price of the price band |
//! | `GET /v1/sessions` | FIX sessions: state, peer address, sequence numbers, account |
//! | `GET /v1/venues` | venue connectors: address, logged on and since when, logons, orders sent, reports received, the last problem |
//! | `POST /v1/sessions/{name}/logout` | logs the session's connection out (`{"text"?}`) |
//! | `POST /v1/sessions/{name}/sequence` | `{"reset"?, "next_sender_seq"?, "next_target_seq"?}`: sets the sequence numbers of a session without a connection (409 while one holds it); our next number only forward, or `reset` to start again at 1 |
//! | `GET /v1/audit?key_id=&account=&since=&until=&limit=` | the audit log, filtered (times RFC 3339), the last `limit` events (default 1000) |
//! | `GET /v1/accounts/{acc}/orders?symbol=&since=&until=&from_order_id=&limit=` | the account's recent orders from the order history, oldest first (default the last 100) |
//! | `GET /v1/accounts/{acc}/trades?symbol=&order_id=&since=&until=&from_trade_id=&limit=` | the account's recent trades from the order history |
//!
//! Every `/v1` call needs the `admin` scope; every one but `GET` also a TOTP code. Operator
//! commands go to the core thread through the control path of the control socket
//! ([`ControlAction`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use portcullis_auth::clock::{format_rfc3339_ms, now_ms, parse_rfc3339_ms};
use portcullis_auth::key::{parse_ed25519_public_key, parse_ip_allowlist};
use portcullis_auth::oauth::Form;
use portcullis_auth::{
    AuditEvent, AuditKind, AuditSink, KeyInfo, KeySpec, MasterKeyring, Outcome, Scopes, Vault,
    VaultError,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{error, info};

use super::auth::{self, Operator, AUDIT_SESSION};
use super::problem::Problem;
use super::{json_response, oauth, AdminState, Call};
use crate::pipeline::{ControlAction, ControlRequest};
use portcullis_session::transport::{SequenceChange, SequenceError};

/// How long the core thread may take to answer an operator command.
const CORE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default and largest number of audit events one query returns.
const AUDIT_DEFAULT_LIMIT: usize = 1000;
const AUDIT_MAX_LIMIT: usize = 10_000;

/// What a handler did: the status and body, and for the audit event the account it was
/// about and a short description.
struct Done {
    status: StatusCode,
    body: Value,
    account: Option<String>,
    note: String,
}

impl Done {
    fn ok(body: Value, note: impl Into<String>) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            account: None,
            note: note.into(),
        }
    }

    fn account(mut self, account: &str) -> Self {
        self.account = Some(account.to_owned());
        self
    }
}

type Handled = Result<Done, Problem>;

/// The admin routes (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Keys,
    Key(String, KeyAction),
    Accounts,
    Account(String),
    AccountLimits(String),
    AccountKill(String),
    AccountOrders(String),
    AccountTrades(String),
    GlobalKill,
    Instruments,
    Instrument(String, InstrumentAction),
    Sessions,
    Venues,
    SessionLogout(String),
    SessionSequence(String),
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAction {
    Revoke,
    Rotate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InstrumentAction {
    Halt,
    Resume,
    Mark,
}

/// The methods a route answers.
fn allowed(route: &Route) -> &'static [Method] {
    match route {
        Route::Keys => &[Method::GET, Method::POST],
        Route::Key(..) | Route::SessionLogout(_) | Route::SessionSequence(_) => &[Method::POST],
        Route::Instrument(_, InstrumentAction::Mark) => &[Method::PUT],
        Route::Instrument(..) => &[Method::POST],
        Route::AccountLimits(_) => &[Method::PUT, Method::PATCH],
        Route::AccountKill(_) => &[Method::PUT],
        Route::GlobalKill => &[Method::GET, Method::PUT],
        Route::Accounts
        | Route::Account(_)
        | Route::Instruments
        | Route::Sessions
        | Route::Venues
        | Route::Audit
        | Route::AccountOrders(_)
        | Route::AccountTrades(_) => &[Method::GET],
    }
}

fn route(segs: &[String]) -> Option<Route> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    Some(match s.as_slice() {
        ["keys"] => Route::Keys,
        ["keys", id, "revoke"] => Route::Key((*id).to_owned(), KeyAction::Revoke),
        ["keys", id, "rotate"] => Route::Key((*id).to_owned(), KeyAction::Rotate),
        ["accounts"] => Route::Accounts,
        ["accounts", a] => Route::Account((*a).to_owned()),
        ["accounts", a, "limits"] => Route::AccountLimits((*a).to_owned()),
        ["accounts", a, "kill-switch"] => Route::AccountKill((*a).to_owned()),
        ["accounts", a, "orders"] => Route::AccountOrders((*a).to_owned()),
        ["accounts", a, "trades"] => Route::AccountTrades((*a).to_owned()),
        ["kill-switch"] => Route::GlobalKill,
        ["instruments"] => Route::Instruments,
        ["instruments", i, "halt"] => Route::Instrument((*i).to_owned(), InstrumentAction::Halt),
        ["instruments", i, "resume"] => {
            Route::Instrument((*i).to_owned(), InstrumentAction::Resume)
        }
        ["instruments", i, "mark"] => Route::Instrument((*i).to_owned(), InstrumentAction::Mark),
        ["sessions"] => Route::Sessions,
        ["venues"] => Route::Venues,
        ["sessions", name, "logout"] => Route::SessionLogout((*name).to_owned()),
        ["sessions", name, "sequence"] => Route::SessionSequence((*name).to_owned()),
        ["audit"] => Route::Audit,
        _ => return None,
    })
}

/// The path's segments, percent-decoded (`None` if one is not valid percent-encoded UTF-8).
fn segments(path: &str) -> Option<Vec<String>> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Answers one call and audits it.
pub async fn dispatch(state: &Arc<AdminState>, call: Call) -> Response<Full<Bytes>> {
    let now = now_ms();
    let Some(segs) = segments(&call.path) else {
        let p = Problem::bad_request("the path is not valid percent-encoded UTF-8");
        audit_call(state, &call, None, None, p.status, &p.detail);
        return p.into_response();
    };
    let segs_ref: Vec<&str> = segs.iter().map(String::as_str).collect();
    // Unauthenticated endpoints: health, and OAuth (which authenticates its clients itself).
    let public = match (&call.method, segs_ref.as_slice()) {
        (&Method::GET, ["healthz"]) => Some(Ok(Done::ok(json!({"status": "ok"}), "healthy"))),
        (&Method::GET, ["readyz"]) => Some(ready(state).await),
        (_, ["healthz" | "readyz"]) => Some(Err(method_not_allowed(&[Method::GET]))),
        (_, ["oauth", ..] | [".well-known", ..]) => {
            return oauth::handle(state, &call, &segs_ref, now);
        }
        _ => None,
    };
    if let Some(result) = public {
        return finish(state, &call, None, result);
    }
    let route = match segs_ref.split_first() {
        Some((&"v1", rest)) => route(&rest.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()),
        _ => None,
    };
    let Some(route) = route else {
        return finish(
            state,
            &call,
            None,
            Err(Problem::not_found(format!(
                "no such endpoint: {}",
                call.path
            ))),
        );
    };
    let methods = allowed(&route);
    if !methods.contains(&call.method) {
        return finish(state, &call, None, Err(method_not_allowed(methods)));
    }
    let op = match auth::authenticate(state, &call, now) {
        Ok(op) => op,
        Err(p) => return finish(state, &call, None, Err(p)),
    };
    if call.method != Method::GET {
        if let Err(p) = auth::check_totp(state, &op, &call, now).await {
            return finish(state, &call, Some(&op), Err(p));
        }
    }
    let result = run(state, &call, &op, route).await;
    finish(state, &call, Some(&op), result)
}

fn method_not_allowed(methods: &[Method]) -> Problem {
    let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("this endpoint answers {}", allow.join(", ")),
    )
    .header(hyper::header::ALLOW, allow.join(", "))
}

/// Audits the call and builds the response.
fn finish(
    state: &AdminState,
    call: &Call,
    op: Option<&Operator>,
    result: Handled,
) -> Response<Full<Bytes>> {
    match result {
        Ok(done) => {
            audit_call(
                state,
                call,
                op,
                done.account.as_deref(),
                done.status,
                &done.note,
            );
            json_response(done.status, &done.body)
        }
        Err(p) => {
            audit_call(state, call, op, None, p.status, &p.detail);
            p.into_response()
        }
    }
}

/// One audit event (kind `admin`) for a call: who (key id, address), what (method and path),
/// the status and what happened.
pub fn audit_call(
    state: &AdminState,
    call: &Call,
    op: Option<&Operator>,
    account: Option<&str>,
    status: StatusCode,
    note: &str,
) {
    let outcome = if status.is_success() {
        Outcome::Ok
    } else {
        Outcome::Denied
    };
    let mut event = AuditEvent::new(AuditKind::Anomaly, outcome, now_ms())
        .session(AUDIT_SESSION)
        .peer_ip(call.peer_ip)
        .reason(&format!("{} {}", call.method, call.path))
        .detail(format!("{} {note}", status.as_u16()));
    if let Some(op) = op {
        event = event.key_id(&op.key_id);
    }
    if let Some(a) = account {
        event = event.account(a);
    }
    state.admin_audit.record_event(&event);
    info!(
        method = %call.method, path = %call.path, status = status.as_u16(),
        key_id = op.map_or("-", |o| o.key_id.as_str()), peer = %call.peer_ip, "admin call"
    );
}

async fn run(state: &Arc<AdminState>, call: &Call, op: &Operator, route: Route) -> Handled {
    match (route, &call.method) {
        (Route::Keys, &Method::GET) => list_keys(state).await,
        (Route::Keys, _) => create_key(state, call, op).await,
        (Route::Key(id, KeyAction::Revoke), _) => {
            no_body(call)?;
            revoke_key(state, &id, op).await
        }
        (Route::Key(id, KeyAction::Rotate), _) => rotate_key(state, call, &id, op).await,
        (Route::Accounts, _) => {
            let d = describe(state).await?;
            Ok(Done::ok(
                json!({"accounts": d["accounts"]}),
                "accounts listed",
            ))
        }
        (Route::Account(a), _) => {
            let d = describe(state).await?;
            let acc = find_account(&d, &a)?;
            Ok(Done::ok(acc, "account shown").account(&a))
        }
        (Route::AccountLimits(a), _) => set_limits(state, call, &a).await,
        (Route::AccountKill(a), _) => kill(state, call, Some(a)).await,
        (Route::GlobalKill, &Method::GET) => {
            let d = describe(state).await?;
            Ok(Done::ok(
                json!({"on": d["global_kill_switch"]}),
                "global kill switch shown",
            ))
        }
        (Route::GlobalKill, _) => kill(state, call, None).await,
        (Route::Instruments, _) => {
            let d = describe(state).await?;
            Ok(Done::ok(
                json!({"instruments": d["instruments"]}),
                "instruments listed",
            ))
        }
        (Route::Instrument(sym, action), _) => instrument(state, call, &sym, action).await,
        (Route::Sessions, _) => Ok(Done::ok(sessions(state), "sessions listed")),
        (Route::Venues, _) => Ok(Done::ok(
            json!({"venues": crate::metrics::venues().iter().map(|v| v.describe()).collect::<Vec<_>>()}),
            "venues listed",
        )),
        (Route::SessionLogout(name), _) => logout(state, call, &name),
        (Route::SessionSequence(name), _) => set_sequence(state, call, &name).await,
        (Route::Audit, _) => audit_query(state, call).await,
        (Route::AccountOrders(a), _) => past(state, call, &a, false),
        (Route::AccountTrades(a), _) => past(state, call, &a, true),
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies

fn json_body<T: DeserializeOwned>(call: &Call) -> Result<T, Problem> {
    let ct = call.header(&hyper::header::CONTENT_TYPE).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as Content-Type: application/json",
        ));
    }
    serde_json::from_slice(&call.body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Problem::bad_request(e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => {
                Problem::malformed_json(format!("the body is not valid JSON: {e}"))
            }
        }
    })
}

/// No body, or an empty JSON object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn no_body(call: &Call) -> Result<(), Problem> {
    if call.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    json_body::<Empty>(call).map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// The core thread

/// Sends an operator command to the core thread and waits for its answer; a refusal (bad
/// input) is a 400 with the core's message.
async fn core(state: &AdminState, action: ControlAction) -> Result<String, Problem> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let unavailable = |d: &str| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "core-unavailable",
            "Core unavailable",
            d.to_owned(),
        )
    };
    if state
        .pipeline
        .control(ControlRequest { action, reply: tx })
        .is_err()
    {
        return Err(unavailable("too many operator commands waiting; try again"));
    }
    match tokio::time::timeout(CORE_TIMEOUT, rx).await {
        Ok(Ok(Ok(message))) => Ok(message),
        Ok(Ok(Err(message))) => Err(Problem::bad_request(message)),
        Ok(Err(_)) => Err(unavailable("the core thread stopped")),
        Err(_) => Err(unavailable("the core thread did not answer in time")),
    }
}

async fn describe(state: &AdminState) -> Result<Value, Problem> {
    let text = core(state, ControlAction::Describe).await?;
    serde_json::from_str(&text).map_err(|e| {
        error!(error = %e, "the core's description is not JSON");
        Problem::internal("the core's answer could not be read")
    })
}

async fn ready(state: &AdminState) -> Handled {
    if state.pipeline.is_stopping() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            "the server is stopping",
        ));
    }
    match describe(state).await {
        Ok(d) => Ok(Done::ok(
            json!({"status": "ready", "core_paused": d["paused"]}),
            "ready",
        )),
        Err(p) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            p.detail,
        )),
    }
}

fn find_account(d: &Value, name: &str) -> Result<Value, Problem> {
    d["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["account"] == name))
        .cloned()
        .ok_or_else(|| Problem::not_found(format!("no account {name:?}")))
}

fn require_account(state: &AdminState, name: &str) -> Result<(), Problem> {
    state
        .pipeline
        .account_id(name)
        .map(|_| ())
        .ok_or_else(|| Problem::not_found(format!("no account {name:?}")))
}

// ---------------------------------------------------------------------------------------------
// Accounts, kill switch, instruments

async fn set_limits(state: &AdminState, call: &Call, account: &str) -> Handled {
    let body: serde_json::Map<String, Value> = json_body(call)?;
    require_account(state, account)?;
    if body.is_empty() {
        return Err(Problem::bad_request(
            "give at least one limit, e.g. {\"max_notional\": \"50000\"}",
        ));
    }
    let mut set = Vec::with_capacity(body.len());
    for (k, v) in body {
        let text = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => {
                return Err(Problem::bad_request(format!(
                    "{k}: expected a number or a decimal string, got {other}"
                )))
            }
        };
        set.push((k, text));
    }
    let message = core(
        state,
        ControlAction::Limits {
            account: account.to_owned(),
            set,
        },
    )
    .await?;
    // A security event too (counter, webhook); the call's audit event is written by the caller.
    crate::monitoring::operator_change(
        crate::metrics::SecurityKind::LimitsChanged,
        Some(account),
        AUDIT_SESSION,
        &message,
    );
    let d = describe(state).await?;
    let acc = find_account(&d, account)?;
    Ok(Done::ok(
        json!({"account": account, "message": message, "limits": acc["limits"]}),
        message,
    )
    .account(account))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KillBody {
    on: bool,
}

async fn kill(state: &AdminState, call: &Call, account: Option<String>) -> Handled {
    let body: KillBody = json_body(call)?;
    if let Some(a) = &account {
        require_account(state, a)?;
    }
    let message = core(
        state,
        ControlAction::Kill {
            account: account.clone(),
            on: body.on,
        },
    )
    .await?;
    // A security event too (counter, webhook); the call's audit event is written by the caller.
    crate::monitoring::operator_change(
        if body.on {
            crate::metrics::SecurityKind::KillSwitchOn
        } else {
            crate::metrics::SecurityKind::KillSwitchOff
        },
        account.as_deref(),
        AUDIT_SESSION,
        &message,
    );
    let done = Done::ok(
        json!({"account": account, "on": body.on, "message": message}),
        message.clone(),
    );
    Ok(match &account {
        Some(a) => done.account(a),
        None => done,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkBody {
    price: String,
}

async fn instrument(
    state: &AdminState,
    call: &Call,
    symbol: &str,
    action: InstrumentAction,
) -> Handled {
    let action = match action {
        InstrumentAction::Mark => {
            let body: MarkBody = json_body(call)?;
            ControlAction::Mark {
                symbol: symbol.to_owned(),
                price: body.price,
            }
        }
        InstrumentAction::Halt | InstrumentAction::Resume => {
            no_body(call)?;
            ControlAction::Halt {
                symbol: symbol.to_owned(),
                halted: action == InstrumentAction::Halt,
            }
        }
    };
    if state
        .pipeline
        .directory()
        .lookup(symbol.as_bytes())
        .is_none()
    {
        return Err(Problem::not_found(format!("no instrument {symbol:?}")));
    }
    let message = core(state, action).await?;
    Ok(Done::ok(
        json!({"symbol": symbol, "message": message}),
        message,
    ))
}

// ---------------------------------------------------------------------------------------------
// Sessions

fn sessions(state: &AdminState) -> Value {
    let mut list: Vec<Value> = state
        .registry
        .iter()
        .map(|e| {
            let s = e.status();
            json!({
                "name": s.name,
                "begin_string": e.config().begin_string.as_str(),
                "sender_comp_id": e.config().sender_comp_id,
                "target_comp_id": e.config().target_comp_id,
                "state": s.state(),
                "peer": s.peer.map(|p| p.to_string()),
                "peer_ip": s.peer.map(|p| p.ip().to_string()),
                "connected_since": s.connected_since.map(|t| format_rfc3339_ms(t.millis())),
                "next_sender_seq": s.next_sender_seq,
                "next_target_seq": s.next_target_seq,
                "account": if s.connected { state.server_auth.logged_on_account(e.config()) } else { None },
            })
        })
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json!({ "sessions": list })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogoutBody {
    #[serde(default)]
    text: Option<String>,
}

fn logout(state: &AdminState, call: &Call, name: &str) -> Handled {
    let text = if call.body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        json_body::<LogoutBody>(call)?.text
    };
    let text = text.unwrap_or_else(|| "logged out by an operator".to_owned());
    if text.len() > 200 || text.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "text: at most 200 characters, no control characters",
        ));
    }
    let Some(entry) = state.registry.by_name(name) else {
        return Err(Problem::not_found(format!("no session {name:?}")));
    };
    if !entry.request_logout(&text) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "not-connected",
            "Session not connected",
            format!("session {name} has no connection to log out"),
        ));
    }
    Ok(Done::ok(
        json!({"session": name, "logout_requested": true}),
        format!("logout of {name} requested"),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SequenceBody {
    #[serde(default)]
    reset: bool,
    #[serde(default)]
    next_sender_seq: Option<u64>,
    #[serde(default)]
    next_target_seq: Option<u64>,
}

async fn set_sequence(state: &AdminState, call: &Call, name: &str) -> Handled {
    let body = json_body::<SequenceBody>(call)?;
    let Some(entry) = state.registry.by_name(name) else {
        return Err(Problem::not_found(format!("no session {name:?}")));
    };
    let change = SequenceChange {
        reset: body.reset,
        next_sender_seq: body.next_sender_seq,
        next_target_seq: body.next_target_seq,
    };
    // The store syncs to disk: off the runtime's workers.
    let result = tokio::task::spawn_blocking(move || {
        entry.set_sequence(change, portcullis_fix::UtcTimestamp::now())
    })
    .await;
    let (sender, target) = match result {
        Ok(Ok(numbers)) => numbers,
        Ok(Err(e @ (SequenceError::Connected(_) | SequenceError::SenderBackwards { .. }))) => {
            let slug = match e {
                SequenceError::Connected(_) => "connected",
                _ => "sequence-backwards",
            };
            return Err(Problem::new(
                StatusCode::CONFLICT,
                slug,
                "Sequence numbers not changed",
                e.to_string(),
            ));
        }
        Ok(Err(e @ (SequenceError::Empty | SequenceError::OutOfRange { .. }))) => {
            return Err(Problem::bad_request(e.to_string()));
        }
        Ok(Err(SequenceError::Store(e))) => {
            error!(session = name, error = %e, "an operator's sequence change failed in the store");
            return Err(Problem::internal("the session's message store failed"));
        }
        Err(e) => {
            error!(session = name, error = %e, "an operator's sequence change failed");
            return Err(Problem::internal("the sequence change failed"));
        }
    };
    let reset = if change.reset { "reset, " } else { "" };
    Ok(Done::ok(
        json!({"session": name, "next_sender_seq": sender, "next_target_seq": target}),
        format!("sequence of {name} set: {reset}next sender {sender}, next target {target}"),
    ))
}

// ---------------------------------------------------------------------------------------------
// Keys

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        error!(error = %e, "an admin vault operation failed");
        Err(Problem::internal("the vault operation failed"))
    })
}

fn vault_problem(e: VaultError) -> Problem {
    match e {
        VaultError::KeyNotFound { key_id } => Problem::not_found(format!("no key {key_id:?}")),
        VaultError::InvalidKey(e) => Problem::bad_request(e.to_string()),
        other => {
            error!(error = %other, "key vault operation failed");
            Problem::internal("the key vault cannot be updated")
        }
    }
}

/// Reloads the authenticator from the vault now (rather than at the watcher's next poll), so
/// a revoked key stops at once; live sessions of a revoked key are signalled.
fn reload(state: &AdminState, ring: &MasterKeyring) {
    match Vault::open(&state.vault_path, ring) {
        Ok(v) => {
            let stats = state.authenticator.reload(&v);
            if stats.revoked > 0 {
                state.server_auth.signal_revocation();
            }
        }
        Err(e) => error!(error = %e, "cannot reload the key vault after an admin change"),
    }
}

fn record(state: &AdminState, event: AuditEvent) {
    if let Err(e) = state.audit.record(&event) {
        error!(error = %e, "cannot write an audit event");
    }
}

async fn list_keys(state: &Arc<AdminState>) -> Handled {
    let ring = state.keyring()?;
    let path = state.vault_path.clone();
    let infos = blocking(move || {
        let v = Vault::open(&path, &ring).map_err(vault_problem)?;
        let now = now_ms();
        Ok(v.list()
            .map(|k| {
                let mut info: KeyInfo = k.info();
                if info.status == "active" && k.is_expired(now) {
                    info.status = "expired";
                }
                info
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let n = infos.len();
    Ok(Done::ok(
        json!({ "keys": infos }),
        format!("{n} keys listed"),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyBody {
    account: String,
    scopes: Vec<String>,
    #[serde(default)]
    ip_allowlist: Vec<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    ed25519_public_key: Option<String>,
}

async fn create_key(state: &Arc<AdminState>, call: &Call, op: &Operator) -> Handled {
    let body: CreateKeyBody = json_body(call)?;
    let scopes = Scopes::parse(&body.scopes.join(","))
        .map_err(|e| Problem::bad_request(format!("scopes: {e}")))?;
    let mut spec = KeySpec::new(&body.account, scopes);
    spec.ip_allowlist = parse_ip_allowlist(&body.ip_allowlist)
        .map_err(|e| Problem::bad_request(format!("ip_allowlist: {e}")))?;
    spec.expires_at = body
        .expires_at
        .as_deref()
        .map(parse_rfc3339_ms)
        .transpose()
        .map_err(|e| Problem::bad_request(format!("expires_at: {e}")))?;
    spec.ed25519_public_key = body
        .ed25519_public_key
        .as_deref()
        .map(parse_ed25519_public_key)
        .transpose()
        .map_err(|e| Problem::bad_request(format!("ed25519_public_key: {e}")))?;
    let ring = state.keyring()?;
    let path = state.vault_path.clone();
    let now = now_ms();
    let ring2 = ring.clone();
    let key = blocking(move || {
        Vault::update(&path, &ring2, false, |v| v.create_key(spec, now)).map_err(vault_problem)
    })
    .await?;
    reload(state, &ring);
    record(
        state,
        AuditEvent::new(AuditKind::KeyCreated, Outcome::Ok, now)
            .key_id(key.key_id.as_str())
            .account(&body.account)
            .reason("admin_api")
            .detail(format!("scopes {scopes}; created by {}", op.key_id)),
    );
    Ok(Done {
        status: StatusCode::CREATED,
        body: json!({
            "key_id": key.key_id.as_str(),
            "secret": key.secret.as_ref().map(|s| s.expose()),
            "account": body.account,
            "scopes": scopes,
        }),
        account: Some(body.account.clone()),
        note: format!("key {} created", key.key_id),
    })
}

async fn revoke_key(state: &Arc<AdminState>, key_id: &str, op: &Operator) -> Handled {
    let ring = state.keyring()?;
    let path = state.vault_path.clone();
    let now = now_ms();
    let id = key_id.to_owned();
    let ring2 = ring.clone();
    let (changed, account) = blocking(move || {
        Vault::update(&path, &ring2, false, |v| {
            let changed = v.revoke(&id, now)?;
            let account = v.get(&id).map(|k| k.account.clone()).unwrap_or_default();
            Ok((changed, account))
        })
        .map_err(vault_problem)
    })
    .await?;
    reload(state, &ring);
    if changed {
        record(
            state,
            AuditEvent::new(AuditKind::KeyRevoked, Outcome::Ok, now)
                .key_id(key_id)
                .account(&account)
                .reason("admin_api")
                .detail(format!("revoked by {}", op.key_id)),
        );
    }
    Ok(Done::ok(
        json!({"key_id": key_id, "revoked": changed}),
        format!("key {key_id} revoked"),
    )
    .account(&account))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// For an Ed25519 key: the new public key (its private half never reaches the server).
    #[serde(default)]
    ed25519_public_key: Option<String>,
}

async fn rotate_key(state: &Arc<AdminState>, call: &Call, key_id: &str, op: &Operator) -> Handled {
    let body: RotateBody = if call.body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        json_body(call)?
    };
    let new_ed = body
        .ed25519_public_key
        .as_deref()
        .map(parse_ed25519_public_key)
        .transpose()
        .map_err(|e| Problem::bad_request(format!("ed25519_public_key: {e}")))?;
    let ring = state.keyring()?;
    let path = state.vault_path.clone();
    let now = now_ms();
    let old_id = key_id.to_owned();
    let ring2 = ring.clone();
    let (key, account) = blocking(move || {
        let result = Vault::update(&path, &ring2, false, |v| {
            let old = v
                .get(&old_id)
                .cloned()
                .ok_or_else(|| VaultError::KeyNotFound {
                    key_id: old_id.clone(),
                })?;
            if old.is_revoked() {
                return Ok(Err(Problem::new(
                    StatusCode::CONFLICT,
                    "key-revoked",
                    "Key revoked",
                    format!("key {old_id} is revoked: create a new key instead"),
                )));
            }
            let mut spec = KeySpec::new(&old.account, old.scopes);
            spec.ip_allowlist = old.ip_allowlist.clone();
            spec.expires_at = old.expires_at;
            spec.ed25519_public_key = match (old.ed25519_public_key, new_ed) {
                (_, Some(new)) => Some(new),
                (Some(_), None) => {
                    return Ok(Err(Problem::bad_request(
                        "an Ed25519 key is rotated with a new ed25519_public_key",
                    )))
                }
                (None, None) => None,
            };
            let key = v.create_key(spec, now)?;
            // The operator keeps the same authenticator app.
            if let Some(t) = v.totp(&old_id).map(|t| t.secret.clone()) {
                v.set_totp(key.key_id.as_str(), t, now)?;
            }
            v.revoke(&old_id, now)?;
            Ok(Ok((key, old.account)))
        });
        result.map_err(vault_problem)?
    })
    .await?;
    reload(state, &ring);
    record(
        state,
        AuditEvent::new(AuditKind::KeyCreated, Outcome::Ok, now)
            .key_id(key.key_id.as_str())
            .account(&account)
            .reason("admin_api_rotate")
            .detail(format!("replaces {key_id}; rotated by {}", op.key_id)),
    );
    record(
        state,
        AuditEvent::new(AuditKind::KeyRevoked, Outcome::Ok, now)
            .key_id(key_id)
            .account(&account)
            .reason("admin_api_rotate")
            .detail(format!("replaced by {}", key.key_id)),
    );
    Ok(Done {
        status: StatusCode::CREATED,
        body: json!({
            "key_id": key.key_id.as_str(),
            "secret": key.secret.as_ref().map(|s| s.expose()),
            "replaces": key_id,
            "account": account,
        }),
        account: Some(account.clone()),
        note: format!("key {key_id} rotated to {}", key.key_id),
    })
}

// ---------------------------------------------------------------------------------------------
// Audit log

async fn audit_query(state: &Arc<AdminState>, call: &Call) -> Handled {
    let form = Form::parse(call.query.as_deref().unwrap_or("").as_bytes())
        .map_err(|e| Problem::bad_request(format!("query: {}", e.description())))?;
    let mut filter = crate::at_rest::Filter::default();
    let mut limit = AUDIT_DEFAULT_LIMIT;
    for k in form.names() {
        let v = form.get(k).unwrap_or("");
        match k {
            "key_id" | "key" => filter.key_id = Some(v.to_owned()),
            "account" => filter.account = Some(v.to_owned()),
            "since" | "until" => {
                let t =
                    parse_rfc3339_ms(v).map_err(|e| Problem::bad_request(format!("{k}: {e}")))?;
                if k == "since" {
                    filter.since_ms = Some(t);
                } else {
                    filter.until_ms = Some(t);
                }
            }
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=AUDIT_MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Problem::bad_request(format!("limit: 1 to {AUDIT_MAX_LIMIT}"))
                    })?;
            }
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown query parameter {other:?}: use key_id, account, since, until, limit"
                )))
            }
        }
    }
    let settings = state.settings.clone();
    let lines = blocking(move || {
        let mut out = Vec::new();
        crate::at_rest::export(&settings, &filter, &mut out).map_err(|e| {
            error!(error = %format!("{e:#}"), "cannot read the audit log");
            Problem::internal("the audit log cannot be read")
        })?;
        Ok(out)
    })
    .await?;
    let text = String::from_utf8_lossy(&lines);
    let all: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let skip = all.len().saturating_sub(limit);
    let events: Vec<Value> = all.into_iter().skip(skip).collect();
    let n = events.len();
    Ok(Done::ok(
        json!({"events": events, "count": n, "truncated": skip > 0}),
        format!("{n} audit events read"),
    ))
}

/// Rows of the order history per call by default, and at most.
const HISTORY_DEFAULT_LIMIT: usize = 100;
const HISTORY_MAX_LIMIT: usize = 1000;

/// `GET /v1/accounts/{acc}/orders` (`trades` false) or `.../trades`: the account's recent
/// orders or trades as the order history has them, oldest first.
fn past(state: &AdminState, call: &Call, account: &str, trades: bool) -> Handled {
    use crate::history::{OrderState, Window};
    let Some(history) = &state.history else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-history",
            "No order history",
            "the server keeps no order history (history.orders_per_account = 0, or no journal)",
        ));
    };
    let Some(acc) = state.pipeline.account_id(account) else {
        return Err(Problem::not_found(format!("no account {account:?}")));
    };
    let form = Form::parse(call.query.as_deref().unwrap_or("").as_bytes())
        .map_err(|e| Problem::bad_request(format!("query: {}", e.description())))?;
    let dir = state.pipeline.directory();
    let mut instrument = None;
    let mut w = Window {
        limit: HISTORY_DEFAULT_LIMIT,
        ..Window::default()
    };
    let id = |k: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| Problem::bad_request(format!("{k}: a non-negative integer")))
    };
    for k in form.names() {
        let v = form.get(k).unwrap_or("");
        match k {
            "symbol" => {
                let (i, _) = dir
                    .lookup(v.as_bytes())
                    .ok_or_else(|| Problem::bad_request(format!("symbol: no instrument {v:?}")))?;
                instrument = Some(i);
            }
            "since" | "until" => {
                let t =
                    parse_rfc3339_ms(v).map_err(|e| Problem::bad_request(format!("{k}: {e}")))?;
                let ns = t.saturating_mul(1_000_000);
                if k == "since" {
                    w.start_ns = Some(ns);
                } else {
                    w.end_ns = Some(ns.saturating_add(999_999));
                }
            }
            "from_order_id" if !trades => w.order_id = Some(id(k, v)?),
            "order_id" if trades => w.order_id = Some(id(k, v)?),
            "from_trade_id" if trades => w.from_trade_id = Some(id(k, v)?),
            "limit" => {
                w.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=HISTORY_MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Problem::bad_request(format!("limit: 1 to {HISTORY_MAX_LIMIT}"))
                    })?;
            }
            other => {
                let known = if trades {
                    "symbol, order_id, since, until, from_trade_id, limit"
                } else {
                    "symbol, since, until, from_order_id, limit"
                };
                return Err(Problem::bad_request(format!(
                    "unknown query parameter {other:?}: use {known}"
                )));
            }
        }
    }
    // A session slot is a configured FIX session's, or a WebSocket connection's.
    let session_name = |slot: portcullis_types::SessionId| {
        state.settings.sessions.get(slot.0 as usize).map_or_else(
            || "websocket".to_owned(),
            |s| crate::security::session_name(&s.config),
        )
    };
    let time = |ns: i64| format_rfc3339_ms(ns.div_euclid(1_000_000));
    let side = |s: portcullis_types::Side| match s {
        portcullis_types::Side::Buy => "buy",
        portcullis_types::Side::Sell => "sell",
    };
    if trades {
        let list = history.trades(acc, instrument, &w);
        let rows: Vec<Value> = list
            .iter()
            .filter_map(|t| {
                let e = dir.get(t.instrument)?;
                Some(json!({
                    "trade_id": t.trade_id,
                    "order_id": t.order_id.0,
                    "symbol": &*e.symbol,
                    "side": side(t.side),
                    "price": t.price.display(e.price_scale).to_string(),
                    "quantity": t.qty.display(e.qty_scale).to_string(),
                    "liquidity": if t.maker { "maker" } else { "taker" },
                    "time": time(t.ts_ns),
                }))
            })
            .collect();
        let n = rows.len();
        return Ok(Done::ok(
            json!({"account": account, "trades": rows}),
            format!("{n} trades listed"),
        )
        .account(account));
    }
    let list = history.orders(acc, instrument, &w);
    let rows: Vec<Value> = list
        .iter()
        .filter_map(|o| {
            let e = dir.get(o.instrument)?;
            Some(json!({
                "order_id": o.order_id.0,
                "client_order_id": o.cl_ord_id.as_str(),
                "symbol": &*e.symbol,
                "session": session_name(o.session),
                "side": side(o.side),
                "type": o.ord_type.name(),
                // A trailing stop without an activation price has none (0).
                "stop_price": o
                    .ord_type
                    .stop_px()
                    .filter(|p| p.0 != 0)
                    .map(|p| p.display(e.price_scale).to_string()),
                "trailing_delta_bips": o.trailing.map(|t| t.bips()),
                "display_quantity": (o.display_qty.0 != 0)
                    .then(|| o.display_qty.display(e.qty_scale).to_string()),
                "time_in_force": o.tif.name(),
                "expire_time": o.tif.expire_ns().map(time),
                "price": o.price.display(e.price_scale).to_string(),
                "quantity": o.qty.display(e.qty_scale).to_string(),
                "filled": o.cum_qty.display(e.qty_scale).to_string(),
                "average_price": o.avg_px.display(e.price_scale).to_string(),
                "status": match o.state {
                    OrderState::Pending => "pending",
                    OrderState::Working => "working",
                    OrderState::PartiallyFilled => "partially_filled",
                    OrderState::Filled => "filled",
                    OrderState::Canceled => "canceled",
                    OrderState::Expired => "expired",
                },
                "created": time(o.created_ns),
                "updated": time(o.updated_ns),
            }))
        })
        .collect();
    let n = rows.len();
    Ok(Done::ok(
        json!({"account": account, "orders": rows}),
        format!("{n} orders listed"),
    )
    .account(account))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_their_methods() {
        let r = |p: &str| route(&segments(p).unwrap());
        assert_eq!(r("keys"), Some(Route::Keys));
        assert_eq!(
            r("/keys/pk_1/rotate"),
            Some(Route::Key("pk_1".into(), KeyAction::Rotate))
        );
        assert_eq!(
            r("sessions/FIX.4.4:PORTCULLIS-%3EDEMO/logout"),
            Some(Route::SessionLogout("FIX.4.4:PORTCULLIS->DEMO".into()))
        );
        assert_eq!(r("keys/pk_1"), None);
        assert_eq!(r("nope"), None);
        assert!(segments("/a/%zz").is_none());
        assert!(segments("/a/%ff").is_none());
        assert!(allowed(&Route::GlobalKill).contains(&Method::PUT));
        assert!(!allowed(&Route::Sessions).contains(&Method::POST));
    }
}
