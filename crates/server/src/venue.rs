//! Venue connectors: the orders of routed instruments leave through a FIX session this server
//! initiates to the venue (an exchange, or another Portcullis), and the venue's execution
//! reports come back as commands for the core thread (DESIGN.md §2, "venue connectors").
//!
//! ```text
//!  core thread ──Route event──▶ venue slot's egress ──▶ connector task ──NewOrderSingle──▶ venue
//!       ▲                                                  (FIX initiator,  ◀─ExecutionReport──
//!       └──────────────── Command::Venue (ingress) ◀───────  sans-IO Session)
//! ```
//!
//! - Each venue has its own session slot after the configured FIX sessions; the core thread
//!   addresses its route requests there, and the connector's route to the slot lives as long
//!   as the process (a reconnect does not lose requests).
//! - The engine's OrderID is the ClOrdID(11) at the venue (`<OrderID>-<n>` after the n-th
//!   replace), so a report names its order without a table; a cancel's ClOrdID is `C` and
//!   the request's ExecID.
//! - While the venue is not logged on, a new order is refused at once ("refused by the
//!   venue") rather than left waiting. After each Logon the connector asks the core thread
//!   for every request the venue may not have ([`Command::VenueSync`]): the orders it has not
//!   accepted and the cancels and replaces on their way (those asked for meanwhile among
//!   them). A
//!   duplicate of an order it has is refused by the venue (OrdRejReason 6) and ignored.
//! - Reports are at-least-once: the inbound sequence number the store keeps never passes a
//!   report the core thread has not processed (and journaled), so a crash makes the next
//!   Logon ask for it again; the core applies each fill once (by cumulative quantity).
//! - [`VenueLink`] is the protocol logic without I/O (fed events and bytes, tested here);
//!   [`run`] is the thin loop that connects, reconnects and moves bytes.

use std::collections::{HashMap, VecDeque};
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use portcullis_auth::clock::{format_rfc3339_ms, now_ms};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use portcullis_fix::{tag, BeginString, Decoder, MessageRef, SeqNum, UtcTimestamp};
use portcullis_session::fix_session::{
    DisconnectReason, InitiatorLogon, LogonHeader, LogonSigner, Session, SessionEvent, SessionState,
};
use portcullis_session::transport::{ShutdownSignal, StoreOpener};
use portcullis_types::{
    format_fixed, parse_fixed, AccountId, Command, Event, EventKind, OrdType, OrderId, Price, Qty,
    RouteRequest, SessionId, VenueReport, VenueReportKind,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{error, info, warn};

use crate::config::{Settings, VenueSettings};
use crate::order_codec::{side_char, tif_char};
use crate::pipeline::{Conn, Directory, Ingress, Outbound, Pipeline};

/// What the metrics (`portcullis_venue_*`) and the operator (`GET /v1/venues`,
/// `portcullis admin venues`) see of a venue connector.
#[derive(Debug, Default)]
pub struct VenueStatus {
    name: String,
    /// Where it connects (`host:port`).
    connect: String,
    logged_on: AtomicBool,
    /// When the session last logged on or ended (Unix ms; 0: never).
    since_ms: AtomicI64,
    logons: AtomicU64,
    orders_sent: AtomicU64,
    reports: AtomicU64,
    /// The last thing that went wrong (Unix ms, what), for the operator. Written by the
    /// connector task only when a connection fails or ends.
    last_problem: Mutex<Option<(i64, String)>>,
}

impl VenueStatus {
    /// The status of the venue `name` at `connect`, not connected yet.
    pub fn new(name: &str, connect: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            connect: connect.to_owned(),
            ..Self::default()
        })
    }

    /// Notes that the session logged on (`true`) or ended.
    fn set_logged_on(&self, on: bool) {
        if self.logged_on.swap(on, Ordering::Relaxed) != on {
            self.since_ms.store(now_ms(), Ordering::Relaxed);
        }
        if on {
            self.logons.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes what went wrong with the connection.
    fn problem(&self, what: String) {
        *self.last_problem.lock().unwrap_or_else(|p| p.into_inner()) = Some((now_ms(), what));
    }

    /// The operator's view: name, address, state and since when, counters, the last problem.
    pub fn describe(&self) -> serde_json::Value {
        let at = |ms: i64| (ms > 0).then(|| format_rfc3339_ms(ms));
        let problem = self
            .last_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        serde_json::json!({
            "name": self.name,
            "connect": self.connect,
            "logged_on": self.logged_on(),
            "since": at(self.since_ms.load(Ordering::Relaxed)),
            "logons": self.logons(),
            "orders_sent": self.orders_sent(),
            "reports": self.reports(),
            "last_problem": problem.map(|(ms, what)| serde_json::json!({"at": at(ms), "what": what})),
        })
    }

    /// The venue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while the session is logged on.
    pub fn logged_on(&self) -> bool {
        self.logged_on.load(Ordering::Relaxed)
    }

    /// Logons so far.
    pub fn logons(&self) -> u64 {
        self.logons.load(Ordering::Relaxed)
    }

    /// Orders sent so far.
    pub fn orders_sent(&self) -> u64 {
        self.orders_sent.load(Ordering::Relaxed)
    }

    /// Reports handed to the core thread so far.
    pub fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }
}

/// The session slot of venue `i` (after the configured FIX sessions' slots).
pub fn slot(settings: &Settings, i: usize) -> SessionId {
    SessionId((settings.sessions.len() + i) as u32)
}

/// Routes each venue's instruments to its slot (on every core the server builds: before
/// recovery replays the journal, and on snapshot replicas).
pub fn apply_routes(core: &mut portcullis_engine::Core, settings: &Settings) {
    for (i, v) in settings.venues.iter().enumerate() {
        for symbol in &v.instruments {
            if let Some(id) = core.instruments().by_symbol(symbol) {
                core.set_route(id, Some(slot(settings, i)));
            }
        }
        for underlying in &v.option_series {
            core.route_option_series(underlying, slot(settings, i));
        }
    }
}

/// Signs an initiator's Logon as DESIGN.md §4 says (the same rule a client of this server
/// follows): Username(553), RawDataLength(95)/RawData(96).
struct SignedLogon {
    username: String,
    secret: zeroize::Zeroizing<String>,
}

impl LogonSigner for SignedLogon {
    fn logon_fields(&self, h: &LogonHeader<'_>, out: &mut Vec<(u32, Vec<u8>)>) {
        let seq = h.msg_seq_num.to_string();
        let sig = portcullis_auth::fix_sig::sign_logon(
            self.secret.as_bytes(),
            &portcullis_auth::fix_sig::LogonFields {
                sending_time: h.sending_time,
                msg_type: b"A",
                msg_seq_num: seq.as_bytes(),
                sender_comp_id: h.sender_comp_id.as_bytes(),
                target_comp_id: h.target_comp_id.as_bytes(),
                username: self.username.as_bytes(),
            },
        );
        out.push((tag::RAW_DATA_LENGTH, sig.len().to_string().into_bytes()));
        out.push((tag::RAW_DATA, sig.into_bytes()));
        out.push((553, self.username.as_bytes().to_vec()));
    }
}

/// Reads a venue's secret file (its first line), at start: a missing file is a config error.
pub fn read_secret(path: &std::path::Path) -> Result<zeroize::Zeroizing<String>> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the venue secret file {}", path.display()))?,
    );
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(anyhow!("the venue secret file {} is empty", path.display()));
    }
    Ok(zeroize::Zeroizing::new(line.to_owned()))
}

/// The protocol side of one venue connection: what to send for a route request, what a
/// venue's message reports, and the requests that wait for a Logon. No I/O.
pub struct VenueLink {
    venue: SessionId,
    account: Option<String>,
    begin_string: BeginString,
    /// Our MsgSeqNum of each request sent and not yet answered, for a session-level Reject of
    /// it (RefSeqNum) to refuse it.
    sent_orders: HashMap<SeqNum, (OrderId, RouteRequest)>,
    decoder: Decoder,
    text: Vec<u8>,
    status: Arc<VenueStatus>,
}

/// Orders remembered by MsgSeqNum at most (the oldest are forgotten: their answers came).
const MAX_SENT_ORDERS: usize = 65_536;

impl VenueLink {
    /// A link for the venue in slot `venue`, counting in `status`.
    pub fn new(venue: SessionId, settings: &VenueSettings, status: Arc<VenueStatus>) -> Self {
        Self {
            venue,
            account: settings.account.clone(),
            begin_string: settings.config.begin_string,
            sent_orders: HashMap::new(),
            decoder: Decoder::new(),
            text: Vec::with_capacity(32),
            status,
        }
    }

    /// A route request from the core thread: sent on `session` if it is logged on. A new
    /// order that cannot be sent comes back as the venue's refusal (to submit); a cancel that
    /// cannot is asked for again after the next Logon (the core's [`Command::VenueSync`]).
    pub fn on_route(
        &mut self,
        e: &Event,
        session: Option<&mut Session>,
        dir: &Directory,
        now: UtcTimestamp,
    ) -> Option<VenueReport> {
        let EventKind::Route(kind) = e.kind else {
            return None;
        };
        let session = session.filter(|s| s.state() == SessionState::Active);
        match (kind, session) {
            (RouteRequest::New, Some(s)) => {
                if self.send_request(RouteRequest::New, e, s, dir, now) {
                    None
                } else {
                    Some(self.report(e.order_id, VenueReportKind::Rejected, now))
                }
            }
            (RouteRequest::New, None) => {
                Some(self.report(e.order_id, VenueReportKind::Rejected, now))
            }
            (RouteRequest::Cancel, Some(s)) => {
                self.send_request(RouteRequest::Cancel, e, s, dir, now);
                None
            }
            (RouteRequest::Replace, Some(s)) => {
                self.send_request(RouteRequest::Replace, e, s, dir, now);
                None
            }
            (RouteRequest::Cancel | RouteRequest::Replace, None) => None,
        }
    }

    fn report(&self, order: OrderId, kind: VenueReportKind, now: UtcTimestamp) -> VenueReport {
        VenueReport {
            venue: self.venue,
            order_id: order,
            kind,
            last_px: Price(0),
            last_qty: Qty(0),
            cum_qty: Qty(0),
            received_ns: now.nanos(),
        }
    }

    /// Sends route request `e` on `s`: a NewOrderSingle (ClOrdID the OrderID), an
    /// OrderCancelRequest (ClOrdID `C<ExecID>`) or an OrderCancelReplaceRequest (the ClOrdIDs
    /// the event names), and remembers its MsgSeqNum for a session-level reject of it. False
    /// if it was not sent (an unknown instrument, a session that cannot send).
    fn send_request(
        &mut self,
        request: RouteRequest,
        e: &Event,
        s: &mut Session,
        dir: &Directory,
        now: UtcTimestamp,
    ) -> bool {
        let Some(d) = dir.get(e.instrument) else {
            return false;
        };
        let text = &mut self.text;
        let account = self.account.as_deref();
        let v42 = self.begin_string == BeginString::Fix42;
        let msg_type: &[u8] = match request {
            RouteRequest::New => b"D",
            RouteRequest::Cancel => b"F",
            RouteRequest::Replace => b"G",
        };
        let sent = s.send_application(now, msg_type, |enc| {
            text.clear();
            match request {
                RouteRequest::New => text.extend_from_slice(e.order_id.0.to_string().as_bytes()),
                RouteRequest::Cancel => {
                    text.push(b'C');
                    text.extend_from_slice(e.exec_id.to_string().as_bytes());
                }
                RouteRequest::Replace => text.extend_from_slice(e.cl_ord_id.as_bytes()),
            }
            enc.str(tag::CL_ORD_ID, text);
            if request != RouteRequest::New {
                enc.str(
                    tag::ORIG_CL_ORD_ID,
                    venue_id(e, &e.orig_cl_ord_id).as_bytes(),
                );
            }
            if request == RouteRequest::Cancel {
                if let Some(a) = account {
                    enc.str(tag::ACCOUNT, a.as_bytes());
                }
                enc.str(tag::SYMBOL, d.symbol.as_bytes());
                enc.char(tag::SIDE, side_char(e.side));
                enc.timestamp(
                    tag::TRANSACT_TIME,
                    now,
                    portcullis_fix::TimePrecision::Millis,
                );
                text.clear();
                format_fixed(e.qty.0, d.qty_scale, text);
                enc.str(tag::ORDER_QTY, text);
                return;
            }
            order_fields(enc, e, d, account, v42, now, text);
            if request == RouteRequest::New && e.details.post_only {
                enc.char(tag::EXEC_INST, b'6');
            }
        });
        match sent {
            Ok(seq) => {
                self.remember(seq, e.order_id, request);
                if request == RouteRequest::New {
                    self.status.orders_sent.fetch_add(1, Ordering::Relaxed);
                }
                true
            }
            Err(err) => {
                warn!(error = %err, order = e.order_id.0, request = ?request, "request not sent to the venue");
                false
            }
        }
    }

    fn remember(&mut self, seq: SeqNum, order: OrderId, request: RouteRequest) {
        if self.sent_orders.len() >= MAX_SENT_ORDERS {
            let oldest = self.sent_orders.keys().min().copied();
            if let Some(k) = oldest {
                self.sent_orders.remove(&k);
            }
        }
        self.sent_orders.insert(seq, (order, request));
    }

    /// What an application message from the venue reports about a routed order, if anything:
    /// ExecutionReport(8), OrderCancelReject(9), or a Reject(3) / BusinessMessageReject(j)
    /// of an order we sent. Anything malformed is logged and ignored (never reaches the core).
    pub fn on_message(
        &mut self,
        bytes: &[u8],
        dir: &Directory,
        now: UtcTimestamp,
    ) -> Option<VenueReport> {
        let mut dec = std::mem::take(&mut self.decoder);
        let r = match dec.decode(bytes) {
            Ok(m) => self.read(&m, dir, now),
            Err(e) => {
                warn!(error = %e, "venue message does not decode; ignored");
                None
            }
        };
        self.decoder = dec;
        r
    }

    fn read(
        &mut self,
        m: &MessageRef<'_>,
        dir: &Directory,
        now: UtcTimestamp,
    ) -> Option<VenueReport> {
        match m.msg_type() {
            b"8" => self.read_execution_report(m, dir, now),
            b"9" => {
                let order = order_ref(m, tag::ORIG_CL_ORD_ID)?;
                // CxlRejResponseTo(434): 1 a cancel, 2 a cancel/replace.
                let kind = if m.get(tag::CXL_REJ_RESPONSE_TO) == Some(b"2") {
                    VenueReportKind::ReplaceRejected
                } else {
                    VenueReportKind::CancelRejected
                };
                Some(self.report(order, kind, now))
            }
            b"3" | b"j" => {
                let ref_seq = m.get_u64(tag::REF_SEQ_NUM)?;
                let (order, request) = self.sent_orders.remove(&ref_seq)?;
                warn!(
                    order = order.0,
                    request = ?request,
                    text = m.get_str(tag::TEXT).unwrap_or(""),
                    "the venue rejected a request at the session level"
                );
                let kind = match request {
                    RouteRequest::New => VenueReportKind::Rejected,
                    RouteRequest::Cancel => VenueReportKind::CancelRejected,
                    RouteRequest::Replace => VenueReportKind::ReplaceRejected,
                };
                Some(self.report(order, kind, now))
            }
            _ => None,
        }
    }

    fn read_execution_report(
        &mut self,
        m: &MessageRef<'_>,
        dir: &Directory,
        now: UtcTimestamp,
    ) -> Option<VenueReport> {
        let exec_type = m.get(tag::EXEC_TYPE).and_then(|v| v.first().copied());
        let exec_type = exec_type.or_else(|| {
            // FIX 4.2 before ExecType: the order's status says it.
            m.get(tag::ORD_STATUS).and_then(|v| v.first().copied())
        })?;
        // Cancels and expiries answer our cancel request: the order is its OrigClOrdID.
        let order = order_ref(m, tag::ORIG_CL_ORD_ID).or_else(|| order_ref(m, tag::CL_ORD_ID))?;
        // A duplicate of an order it has: ours sent twice (a route request regenerated by
        // crash recovery): the venue works the first.
        if exec_type == b'8' && m.get(tag::ORD_REJ_REASON) == Some(b"6") {
            info!(
                order = order.0,
                "the venue already has the order; duplicate ignored"
            );
            return None;
        }
        let kind = match exec_type {
            b'0' => VenueReportKind::Accepted,
            b'1' | b'2' | b'F' => VenueReportKind::Fill,
            b'4' => VenueReportKind::Canceled,
            b'C' => VenueReportKind::Expired,
            b'5' => VenueReportKind::Replaced,
            b'8' => VenueReportKind::Rejected,
            // Pending new / cancel / replace, status, triggered, done for day: nothing the
            // order's state needs (its answer follows).
            _ => return None,
        };
        self.sent_orders.retain(|_, (o, _)| *o != order);
        let mut r = self.report(order, kind, now);
        if kind == VenueReportKind::Fill {
            let symbol = m.get(tag::SYMBOL)?;
            let (_, d) = dir.lookup(symbol)?;
            let px = parse_fixed(m.get(tag::LAST_PX)?, d.price_scale).ok()?;
            let qty = parse_fixed(m.get(tag::LAST_QTY)?, d.qty_scale).ok()?;
            let cum = parse_fixed(m.get(tag::CUM_QTY)?, d.qty_scale).ok()?;
            if px <= 0 || qty <= 0 || cum < qty {
                warn!(
                    order = order.0,
                    "venue fill with impossible quantities; ignored"
                );
                return None;
            }
            r.last_px = Price(px);
            r.last_qty = Qty(qty);
            r.cum_qty = Qty(cum);
        }
        Some(r)
    }
}

/// The fields a NewOrderSingle and an OrderCancelReplaceRequest share after the ClOrdIDs:
/// Account(1), HandlInst(21) on 4.2, the instrument, side, time, quantity, type, price and
/// time in force of the route request `e` (decimals at the instrument's scales).
#[allow(clippy::too_many_arguments)]
fn order_fields(
    enc: &mut portcullis_fix::Encoder,
    e: &Event,
    d: &crate::pipeline::DirEntry,
    account: Option<&str>,
    v42: bool,
    now: UtcTimestamp,
    text: &mut Vec<u8>,
) {
    if let Some(a) = account {
        enc.str(tag::ACCOUNT, a.as_bytes());
    }
    if v42 {
        enc.char(tag::HANDL_INST, b'1');
    }
    enc.str(tag::SYMBOL, d.symbol.as_bytes());
    enc.char(tag::SIDE, side_char(e.side));
    enc.timestamp(
        tag::TRANSACT_TIME,
        now,
        portcullis_fix::TimePrecision::Millis,
    );
    text.clear();
    format_fixed(e.qty.0, d.qty_scale, text);
    enc.str(tag::ORDER_QTY, text);
    if e.ord_type == OrdType::Market {
        enc.char(tag::ORD_TYPE, b'1');
    } else {
        enc.char(tag::ORD_TYPE, b'2');
        text.clear();
        format_fixed(e.price.0, d.price_scale, text);
        enc.str(tag::PRICE, text);
    }
    enc.char(tag::TIME_IN_FORCE, tif_char(e.tif));
}

/// The engine OrderID in field `t` (a ClOrdID we sent: `41`, or `41-2` after replaces), if
/// it is one.
fn order_ref(m: &MessageRef<'_>, t: u32) -> Option<OrderId> {
    let v = m.get(t)?;
    let digits = match v.iter().position(|&b| b == b'-') {
        Some(i) => {
            // The revision must be a number too.
            portcullis_fix::decode::parse_u64(&v[i + 1..])?;
            &v[..i]
        }
        None => v,
    };
    let id = portcullis_fix::decode::parse_u64(digits)?;
    (id > 0).then_some(OrderId(id))
}

/// The venue ClOrdID a route request names, or the order's first one if it names none.
fn venue_id(e: &Event, id: &portcullis_types::ClOrdId) -> String {
    if id.is_empty() {
        e.order_id.0.to_string()
    } else {
        id.as_str().to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// The connection loop

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What the connector task needs, built at start.
pub struct Connector {
    /// The venue's settings.
    pub settings: VenueSettings,
    /// Its session slot.
    pub slot: SessionId,
    /// Opens its message store.
    pub opener: StoreOpener,
    /// The Logon's credentials (username, secret), read at start.
    pub secret: Option<zeroize::Zeroizing<String>>,
    /// TLS to the venue (`None`: plain TCP to loopback).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// What the metrics show of it.
    pub status: Arc<VenueStatus>,
}

/// Reports submitted to the core thread, by the inbound MsgSeqNum that carried them, until
/// the core has processed them ([`Conn::answered`]).
#[derive(Default)]
struct Unanswered {
    submitted: u64,
    waiting: VecDeque<(u64, SeqNum)>,
}

impl Unanswered {
    fn oldest(&mut self, answered: u64) -> Option<SeqNum> {
        while self.waiting.front().is_some_and(|&(i, _)| i < answered) {
            self.waiting.pop_front();
        }
        self.waiting.front().map(|&(_, s)| s)
    }
}

/// Runs the connector until `shutdown`: connects, logs on, moves orders and reports, and
/// reconnects after `reconnect` whenever the connection ends.
pub async fn run(c: Connector, pipeline: Arc<Pipeline>, mut shutdown: ShutdownSignal) {
    let name = c.settings.name.clone();
    let accounts: Vec<AccountId> = (0..pipeline.account_names().len() as u32)
        .map(AccountId)
        .collect();
    let conn = pipeline.new_conn(c.slot, &accounts, false);
    let mut item = Ingress::Open(conn.clone());
    loop {
        match pipeline.submit(item) {
            Ok(()) => break,
            Err(back) => item = back,
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut store = match (c.opener)(UtcTimestamp::now()) {
        Ok(s) => Some(s),
        Err(e) => {
            c.status
                .problem(format!("cannot open the venue's message store: {e}"));
            error!(venue = %name, error = %e, "cannot open the venue's message store; not connecting");
            None
        }
    };
    let mut link = VenueLink::new(c.slot, &c.settings, c.status.clone());
    let mut unanswered = Unanswered::default();
    let mut first = true;
    while !shutdown.is_triggered() {
        if !first {
            // Between attempts, route requests are still answered (new orders refused).
            let wait = tokio::time::sleep(c.settings.reconnect);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    _ = shutdown.wait() => return,
                    _ = std::future::poll_fn(|cx| conn.poll_ready(cx)) => {
                        drain_routes(&conn, &mut link, None, &pipeline, &mut unanswered).await;
                    }
                }
            }
        }
        first = false;
        let Some(s) = store.take() else {
            // No store: refuse every order routed here, forever.
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = std::future::poll_fn(|cx| conn.poll_ready(cx)) => {
                    drain_routes(&conn, &mut link, None, &pipeline, &mut unanswered).await;
                    continue;
                }
            }
        };
        let stream = tokio::select! {
            r = connect(&c) => r,
            _ = shutdown.wait() => { store = Some(s); break; }
        };
        let stream = match stream {
            Ok(st) => st,
            Err(e) => {
                c.status.problem(format!("cannot connect: {e:#}"));
                warn!(venue = %name, error = %format!("{e:#}"), "cannot connect to the venue");
                store = Some(s);
                continue;
            }
        };
        let logon = InitiatorLogon {
            heartbeat_secs: c.settings.heartbeat_secs,
            reset_seq_num: c.settings.reset_on_logon,
            signer: match (&c.settings.credentials, &c.secret) {
                (Some((username, _)), Some(secret)) => Some(Box::new(SignedLogon {
                    username: username.clone(),
                    secret: secret.clone(),
                })
                    as Box<dyn LogonSigner>),
                _ => None,
            },
        };
        let session = Session::initiate(c.settings.config.clone(), s, UtcTimestamp::now(), logon);
        let session = connection(
            &name,
            session,
            stream,
            &conn,
            &mut link,
            &pipeline,
            &mut unanswered,
            &mut shutdown,
        )
        .await;
        let mut session = session;
        c.status.set_logged_on(false);
        session.on_disconnect(UtcTimestamp::now());
        store = Some(session.into_store());
        // Reports not yet processed are asked for again at the next Logon.
        unanswered.waiting.clear();
    }
    if let Some(mut s) = store {
        let _ = s.sync();
    }
}

async fn connect(c: &Connector) -> Result<Box<dyn Stream>> {
    let addr = c
        .settings
        .connect
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", c.settings.connect))?
        .next()
        .ok_or_else(|| anyhow!("{} resolves to no address", c.settings.connect))?;
    if c.tls.is_none() && !addr.ip().is_loopback() {
        return Err(anyhow!(
            "{addr} is not a loopback address: plain TCP refused"
        ));
    }
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| anyhow!("connecting to {addr} timed out"))?
    .with_context(|| format!("connecting to {addr}"))?;
    let _ = tcp.set_nodelay(true);
    match (&c.tls, &c.settings.tls) {
        (Some(config), Some((_, server_name))) => {
            let name = rustls::pki_types::ServerName::try_from(server_name.clone())
                .context("server name")?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {addr}"))?;
            Ok(Box::new(tls))
        }
        _ => Ok(Box::new(tcp)),
    }
}

/// Takes the venue slot's route requests off its queue and acts on them.
async fn drain_routes(
    conn: &Conn,
    link: &mut VenueLink,
    mut session: Option<&mut Session>,
    pipeline: &Pipeline,
    unanswered: &mut Unanswered,
) {
    let dir = pipeline.directory();
    let now = UtcTimestamp::now();
    while let Some(Outbound::Event(e) | Outbound::Status(e)) = conn.pop() {
        if let Some(r) = link.on_route(&e, session.as_deref_mut(), &dir, now) {
            submit(&link.status, pipeline, Command::Venue(r), unanswered, None).await;
        }
    }
    if conn.overflowed() {
        // Route requests were lost (their orders wait until cancelled): loud, and no spin
        // on the queue that stays ready from now on.
        error!(
            capacity = conn.capacity(),
            "venue route queue overflowed: requests lost; raise core.egress_capacity"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Hands a venue's report (or a [`Command::VenueSync`]) to the core thread; waits while the
/// ingress queue is full (a report must not be lost).
async fn submit(
    status: &VenueStatus,
    pipeline: &Pipeline,
    cmd: Command,
    unanswered: &mut Unanswered,
    seq: Option<SeqNum>,
) {
    let report = matches!(cmd, Command::Venue(_));
    let mut item = Ingress::Cmd(cmd);
    loop {
        match pipeline.submit(item) {
            Ok(()) => break,
            Err(back) => item = back,
        }
        if pipeline.is_stopping() {
            return;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let i = unanswered.submitted;
    unanswered.submitted += 1;
    if report {
        status.reports.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(seq) = seq {
        unanswered.waiting.push_back((i, seq));
    }
}

/// One connection's life; returns the session once it has ended.
#[allow(clippy::too_many_arguments)]
async fn connection(
    name: &str,
    mut session: Session,
    mut stream: Box<dyn Stream>,
    conn: &Arc<Conn>,
    link: &mut VenueLink,
    pipeline: &Pipeline,
    unanswered: &mut Unanswered,
    shutdown: &mut ShutdownSignal,
) -> Session {
    let mut buf = vec![0u8; 64 * 1024];
    let mut logging_out = false;
    loop {
        // Events of what was fed in, then the bytes to send.
        while let Some(ev) = session.poll_event() {
            match ev {
                SessionEvent::LoggedOn {
                    heartbeat_secs,
                    reset,
                } => {
                    link.status.set_logged_on(true);
                    info!(venue = %name, heartbeat_secs, reset, "logged on to the venue");
                    let sync = Command::VenueSync(link.venue);
                    submit(&link.status, pipeline, sync, unanswered, None).await;
                }
                SessionEvent::Application { seq, message } => {
                    let dir = pipeline.directory();
                    let r = link.on_message(&message, &dir, UtcTimestamp::now());
                    drop(dir);
                    session.recycle_message(message);
                    if let Some(r) = r {
                        submit(
                            &link.status,
                            pipeline,
                            Command::Venue(r),
                            unanswered,
                            Some(seq),
                        )
                        .await;
                    }
                }
                SessionEvent::RejectSent { text, .. } => {
                    warn!(venue = %name, %text, "message from the venue rejected");
                }
                SessionEvent::Garbled { reason } => {
                    warn!(venue = %name, %reason, "garbled bytes from the venue ignored");
                }
                SessionEvent::LoggedOut => info!(venue = %name, "logged out of the venue"),
                SessionEvent::SequenceReset => unanswered.waiting.clear(),
                SessionEvent::Disconnect(reason) => match reason {
                    DisconnectReason::LogoutComplete => {}
                    r => {
                        link.status.problem(format!("session ended: {r}"));
                        warn!(venue = %name, reason = ?r, "venue session ended");
                    }
                },
            }
        }
        session.set_unanswered(unanswered.oldest(conn.answered()));
        session.commit_store();
        let out = session.transmit();
        if !out.is_empty() {
            let n = out.len();
            if let Err(e) = stream.write_all(out).await {
                link.status.problem(format!("connection lost: {e}"));
                warn!(venue = %name, error = %e, "venue connection lost");
                return session;
            }
            session.consume_transmit(n);
        }
        if session.state() == SessionState::Disconnected {
            let _ = stream.shutdown().await;
            return session;
        }
        let deadline = session.poll_timeout();
        let sleep = async {
            match deadline {
                Some(t) => {
                    let wait = (t.nanos() - UtcTimestamp::now().nanos()).max(0) as u64;
                    tokio::time::sleep(Duration::from_nanos(wait)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    info!(venue = %name, "venue connection closed");
                    return session;
                }
                Ok(n) => session.handle_input(UtcTimestamp::now(), &buf[..n]),
            },
            _ = std::future::poll_fn(|cx| conn.poll_ready(cx)) => {
                drain_routes(conn, link, Some(&mut session), pipeline, unanswered).await;
            }
            _ = sleep => session.handle_timeout(UtcTimestamp::now()),
            _ = shutdown.wait(), if !logging_out => {
                logging_out = true;
                session.logout(UtcTimestamp::now(), "server shutting down");
            }
        }
        // Reports processed since: the stored number may move on.
        session.set_unanswered(unanswered.oldest(conn.answered()));
    }
}

#[cfg(test)]
mod tests;
