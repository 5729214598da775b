//! The FIX application: order entry through the pipeline.
//!
//! Each connection gets a [`FixConn`] (the transport's [`ConnectionApp`]) once it has claimed
//! its session. On the connection's task it
//!
//! - decodes NewOrderSingle (D), OrderCancelRequest (F), OrderCancelReplaceRequest (G),
//!   OrderStatusRequest (H) and OrderMassCancelRequest (q) with [`order_codec`]; an invalid
//!   request is answered here and never reaches the core thread;
//! - checks the account: Account(1), when present, must be the account of the key the session
//!   logged on with (or, for a session without authentication, one of its configured
//!   accounts); absent, that account is used;
//! - opens the session's route on the core thread with its first order-entry message, or at
//!   its Logon if an earlier connection traded (each configured session has its own slot for
//!   good, so reports of orders entered by an earlier connection reach this one), and pushes
//!   each request into the ingress queue; a full queue is answered at once with a "server
//!   busy" reject;
//! - sends the reports the core thread queues for it, when woken, as ExecutionReport (8),
//!   OrderCancelReject (9) or OrderMassCancelReport (r); a session that overflows its report
//!   queue is logged out ("slow consumer"), as is one the risk checks mark for sustained
//!   throttle abuse ("order rate limit exceeded");
//! - on disconnect, closes its route (cancel-on-disconnect per the session's config) before the
//!   session may connect again;
//! - keeps a market maker's quotes from MassQuote (i) and QuoteCancel (Z) as orders, and
//!   answers them with MassQuoteAcknowledgements (b) ([`crate::quotes`]);
//! - remembers its last orders that ended, so that a cancel of a filled order is answered "too
//!   late to cancel" (CxlRejReason 0) rather than "unknown order" (1).
//!
//! Other application messages a client may send (ExecutionReport 8, OrderCancelReject 9,
//! OrderMassCancelReport r, BusinessMessageReject j, ...) are answered with a
//! BusinessMessageReject(35=j), BusinessRejectReason(380) = 3 (Unsupported Message Type).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use portcullis_fix::{tag, BeginString, Decoder, Encoder, SeqNum, UtcTimestamp};
use portcullis_session::transport::{Application, ConnectionApp, ConnectionInfo};
use portcullis_session::{Session, SessionConfig};
use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, Command, Event, EventKind, InstrumentId, OrdType, OrderId,
    Price, Qty, RejectReason, SessionId, Side, TimeInForce,
};
use tracing::{debug, warn};

use crate::drop_copy::{DropCopyConn, DropCopyFeed, DropCopySession};
use crate::history::{OrderHistory, OrderState, PastOrder, Window};
use crate::market_data;
use crate::metrics::{Protocol, METRICS};
use crate::order_codec::{self, Ctx, Names, Refusal, Report, Request, MASS_STATUS_REQ_ID};
use crate::order_list::{self, ListStatus, ListStep, Lists};
use crate::pipeline::{
    Conn, DepthReply, DepthRequest, Directory, Ingress, OpenOrdersReply, OpenOrdersRequest,
    Outbound, Pipeline, PositionsReply, PositionsRequest,
};
use crate::positions::{self, PositionsAnswer, PositionsRefusal};
use crate::quotes::{Mmp, Quoting, NO_MESSAGE};
use crate::security::ServerAuth;
use crate::security_list::{self, ListRefusal, SecurityListAnswer};
use crate::security_status;
use crate::trading_session::{self, SessionSubscriptions};

/// BusinessRejectReason(380) = 3.
const UNSUPPORTED_MESSAGE_TYPE: u64 = 3;
/// BusinessRejectReason(380) = 4.
const APPLICATION_NOT_AVAILABLE: u64 = 4;

/// The fields of the BusinessMessageReject answering one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessReject {
    /// RefSeqNum(45): the rejected message's MsgSeqNum.
    pub ref_seq_num: SeqNum,
    /// RefMsgType(372).
    pub ref_msg_type: Vec<u8>,
    /// BusinessRejectRefID(379): the rejected message's ClOrdID(11), if it has one.
    pub ref_id: Option<Vec<u8>>,
    /// BusinessRejectReason(380).
    pub reason: u64,
    /// Text(58).
    pub text: &'static str,
}

impl BusinessReject {
    /// Appends the body fields, in the order of the specification's message layout.
    pub fn encode_body(&self, enc: &mut Encoder) {
        enc.uint(tag::REF_SEQ_NUM, self.ref_seq_num);
        enc.str(tag::REF_MSG_TYPE, &self.ref_msg_type);
        if let Some(id) = &self.ref_id {
            enc.str(tag::BUSINESS_REJECT_REF_ID, id);
        }
        enc.uint(tag::BUSINESS_REJECT_REASON, self.reason);
        enc.str(tag::TEXT, self.text.as_bytes());
    }

    /// The reject of `msg` (MsgSeqNum `seq`) for `reason`.
    pub(crate) fn of(
        seq: SeqNum,
        msg: &portcullis_fix::MessageRef<'_>,
        reason: u64,
        text: &'static str,
    ) -> Self {
        BusinessReject {
            ref_seq_num: seq,
            ref_msg_type: msg.msg_type().to_vec(),
            ref_id: msg
                .get(tag::CL_ORD_ID)
                .filter(|v| !v.is_empty())
                .map(<[u8]>::to_vec),
            reason,
            text,
        }
    }

    /// Sends it through `session`.
    pub(crate) fn send(&self, session: &mut Session, now: UtcTimestamp) {
        METRICS.fix_business_reject();
        match session.send_application(now, b"j", |enc| self.encode_body(enc)) {
            Ok(_) => METRICS.sent(Protocol::Fix),
            Err(e) => {
                warn!(seq = self.ref_seq_num, error = %e, "could not send BusinessMessageReject")
            }
        }
    }
}

/// What the application knows of one configured session.
#[derive(Debug)]
pub struct SessionInfo {
    /// `FIX.4.4:ISLD->TW`.
    pub name: String,
    /// The session's own slot (its index in the config).
    pub slot: SessionId,
    /// True if Logons are authenticated (the account is the key's).
    pub authenticate: bool,
    /// The accounts the session may trade for (`*` = any).
    pub accounts: Vec<String>,
    /// Cancel its resting orders when it ends.
    pub cancel_on_disconnect: bool,
    /// Market maker protection of its quotes (`mmp`).
    pub mmp: Option<Mmp>,
    /// Set once a connection of the session has opened its route: from then on the session may
    /// have orders (e.g. GTC orders with cancel-on-disconnect off) whose reports must reach its
    /// next connection from its logon on. A session that never traded opens its route (and
    /// allocates its report queue) only with its first order-entry message, so an idle session
    /// costs no queue. Set at start for a session with orders recovered from the journal.
    pub has_traded: std::sync::atomic::AtomicBool,
    /// The session's ended orders while no connection holds them: a connection takes them
    /// when it opens and gives them back when it ends, so a reconnected client can still ask
    /// for an order that ended before.
    pub finished: FinishedSlot,
    /// A drop copy session's accounts and cursor (`None`: an order-entry session).
    pub drop_copy: Option<Arc<DropCopySession>>,
}

/// Where a session's [`Finished`] orders wait between its connections.
#[derive(Default)]
pub struct FinishedSlot(std::sync::Mutex<Option<Finished>>);

impl std::fmt::Debug for FinishedSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FinishedSlot")
    }
}

impl FinishedSlot {
    fn take(&self) -> Finished {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.take()
            .unwrap_or_else(|| Finished::new(FINISHED_REMEMBERED))
    }

    /// Keeps `finished` unless it is empty and the slot holds some (a second connection of a
    /// session, refused while the first still ran, must not erase what the first kept).
    fn give_back(&self, finished: Finished) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() || !finished.is_empty() {
            *slot = Some(finished);
        }
    }
}

type SessionKey = (BeginString, String, String);

fn key_of(c: &SessionConfig) -> SessionKey {
    (
        c.begin_string,
        c.sender_comp_id.clone(),
        c.target_comp_id.clone(),
    )
}

/// The server's [`Application`]: order entry through the [`Pipeline`].
pub struct OrderEntryApp {
    pipeline: Arc<Pipeline>,
    sessions: HashMap<SessionKey, Arc<SessionInfo>>,
    auth: Arc<ServerAuth>,
    reply_spin: Duration,
    drop_copy: Option<Arc<DropCopyFeed>>,
    history: Option<Arc<OrderHistory>>,
}

impl std::fmt::Debug for OrderEntryApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderEntryApp")
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl OrderEntryApp {
    /// The application for `sessions` (with their configs), feeding `pipeline`; its drop copy
    /// sessions follow `drop_copy` (the journal); status requests for orders that ended
    /// before the session remembers are answered from `history`.
    pub fn new(
        pipeline: Arc<Pipeline>,
        sessions: impl IntoIterator<Item = (SessionConfig, SessionInfo)>,
        auth: Arc<ServerAuth>,
        reply_spin: Duration,
        drop_copy: Option<Arc<DropCopyFeed>>,
        history: Option<Arc<OrderHistory>>,
    ) -> Self {
        OrderEntryApp {
            pipeline,
            sessions: sessions
                .into_iter()
                .map(|(c, i)| (key_of(&c), Arc::new(i)))
                .collect(),
            auth,
            reply_spin,
            drop_copy,
            history,
        }
    }
}

impl Application for OrderEntryApp {
    fn on_message(&self, session: &mut Session, now: UtcTimestamp, seq: SeqNum, message: &[u8]) {
        METRICS.received(Protocol::Fix);
        // Only connections without a handler come here (none do): answer rather than ignore.
        let mut d = Decoder::new();
        let Ok(msg) = d.decode(message) else { return };
        let (reason, text) = if order_codec::is_order_entry(msg.msg_type()) {
            (APPLICATION_NOT_AVAILABLE, "application not available")
        } else {
            (UNSUPPORTED_MESSAGE_TYPE, "unsupported message type")
        };
        BusinessReject::of(seq, &msg, reason, text).send(session, now);
    }

    fn on_session_reject(&self, reason: Option<portcullis_fix::SessionRejectReason>) {
        METRICS.fix_session_reject(reason);
    }

    fn open(&self, conn: &ConnectionInfo<'_>) -> Option<Box<dyn ConnectionApp>> {
        let info = self.sessions.get(&key_of(conn.session))?.clone();
        if let Some(copy) = &info.drop_copy {
            // Checked at start-up: drop copy sessions need the journal.
            let feed = self.drop_copy.clone()?;
            return Some(Box::new(DropCopyConn::new(
                feed,
                copy.clone(),
                info.name.clone(),
                conn,
            )));
        }
        // Given back when the connection's handler is dropped (see `Drop for FixConn`).
        let finished = info.finished.take();
        let info_mmp = info.mmp;
        // Counted down when the connection's handler is dropped.
        METRICS.connected(Protocol::Fix, 1);
        Some(Box::new(FixConn {
            pipeline: self.pipeline.clone(),
            auth: self.auth.clone(),
            config: conn.session.clone(),
            version: conn.session.begin_string,
            info,
            conn_id: conn.id,
            allowed: None,
            conn: None,
            decoder: Decoder::new(),
            scratch: Vec::with_capacity(64),
            finished,
            status_waits: VecDeque::new(),
            listings: VecDeque::new(),
            lists: VecDeque::new(),
            status_subs: security_status::Subscriptions::default(),
            session_subs: SessionSubscriptions::default(),
            pause_bytes: conn.listener.output_pause(),
            history: self.history.clone(),
            reply_spin: self.reply_spin,
            unanswered: Unanswered::default(),
            quoting: Quoting::new(UtcTimestamp::now().nanos().div_euclid(1_000_000), info_mmp),
        }))
    }
}

/// The connection's requests handed to the core thread whose reports have not all been sent
/// through the session yet, oldest first: the session stores the expected MsgSeqNum only up
/// to the oldest of them, so that a crash before a request is answered makes the next Logon
/// ask for it again rather than lose it. Empty (and unallocated) on an idle connection.
#[derive(Debug, Default)]
struct Unanswered {
    /// (requests submitted before this one, its MsgSeqNum).
    requests: VecDeque<(u64, SeqNum)>,
    submitted: u64,
}

impl Unanswered {
    /// A request of MsgSeqNum `seq` went to the core thread.
    fn submitted(&mut self, seq: SeqNum) {
        self.requests.push_back((self.submitted, seq));
        self.submitted += 1;
    }

    /// The first `answered` requests (see [`Conn::answered`]) have their reports sent.
    fn answered(&mut self, answered: u64) {
        while self.requests.front().is_some_and(|&(i, _)| i < answered) {
            self.requests.pop_front();
        }
    }

    /// True if some request still waiting is among the first `answered`.
    fn any_answered(&self, answered: u64) -> bool {
        self.requests.front().is_some_and(|&(i, _)| i < answered)
    }

    /// Forgets the MsgSeqNums of the requests still waiting (an in-session sequence reset
    /// renumbered the session); their reports still count them as answered.
    fn forget_numbers(&mut self) {
        self.requests.clear();
    }

    /// The MsgSeqNum of the oldest request still waiting for its reports.
    fn oldest(&self) -> Option<SeqNum> {
        self.requests.front().map(|&(_, seq)| seq)
    }
}

/// How many ended orders a session remembers, to answer a status request with the order's
/// final state and to tell "too late" from "unknown order".
const FINISHED_REMEMBERED: usize = 4096;

/// What is kept of an order that ended: enough for a status answer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ended {
    /// Its final OrdStatus(39): filled, cancelled or expired.
    status: u8,
    order_id: OrderId,
    account: AccountId,
    instrument: InstrumentId,
    side: Side,
    ord_type: OrdType,
    tif: TimeInForce,
    price: Price,
    qty: Qty,
    cum_qty: Qty,
    avg_px: Price,
}

impl Ended {
    /// The answer to an OrderStatusRequest for it: the core's answer for an order it does not
    /// have (`unknown`: the request's session, ClOrdID and time, no fill, no ExecID of its
    /// own yet) with the order's final state.
    fn status_event(&self, unknown: &Event) -> Event {
        Event {
            kind: match self.status {
                b'2' => EventKind::Fill,
                b'C' => EventKind::Expired,
                _ => EventKind::Canceled,
            },
            account: self.account,
            instrument: self.instrument,
            order_id: self.order_id,
            side: self.side,
            ord_type: self.ord_type,
            tif: self.tif,
            price: self.price,
            qty: self.qty,
            cum_qty: self.cum_qty,
            leaves_qty: Qty(0),
            avg_px: self.avg_px,
            ..*unknown
        }
    }
}

/// The ClOrdIDs of the last orders of a session that ended (filled, cancelled, expired), with
/// their final state: a status request for one of them is answered with it, and a cancel or
/// replace naming one is answered "too late to cancel" (CxlRejReason 0), not "unknown order"
/// (1). Bounded, and allocated when the first order ends: an idle session does not pay for it.
/// It outlives the connection (see [`SessionInfo::finished`]), not a restart.
pub struct Finished {
    ended: HashMap<ClOrdId, Ended>,
    order: VecDeque<ClOrdId>,
    capacity: usize,
    /// The session's order lists being placed or working.
    lists: Lists,
}

impl Finished {
    fn new(capacity: usize) -> Self {
        Finished {
            ended: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity * 2,
            lists: Lists::default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty() && self.lists.is_empty()
    }

    fn remember(&mut self, id: ClOrdId, ended: Ended) {
        if id.is_empty() {
            return;
        }
        if self.order.capacity() == 0 {
            self.ended.reserve(self.capacity);
            self.order.reserve_exact(self.capacity);
        }
        if self.ended.insert(id, ended).is_none() {
            if self.order.len() == self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.ended.remove(&old);
                }
            }
            self.order.push_back(id);
        }
    }

    fn note(&mut self, e: &Event) {
        let status = match e.kind {
            EventKind::Fill => b'2',
            EventKind::Canceled => b'4',
            EventKind::Expired => b'C',
            _ => return,
        };
        let ended = Ended {
            status,
            order_id: e.order_id,
            account: e.account,
            instrument: e.instrument,
            side: e.side,
            ord_type: e.ord_type,
            tif: e.tif,
            price: e.price,
            qty: e.qty,
            cum_qty: e.cum_qty,
            avg_px: e.avg_px,
        };
        // A cancelled order is known by its own id and by the cancel request's.
        self.remember(e.cl_ord_id, ended);
        self.remember(e.orig_cl_ord_id, ended);
    }

    fn get(&self, id: &ClOrdId) -> Option<&Ended> {
        self.ended.get(id)
    }

    /// The ended order a status request the core did not know (`unknown`, its answer) asked
    /// for: same ClOrdID and account, and same OrderID if the request named one.
    fn status_of(&self, unknown: &Event) -> Option<&Ended> {
        self.get(&unknown.cl_ord_id).filter(|e| {
            e.account == unknown.account
                && (unknown.order_id == OrderId(0) || unknown.order_id == e.order_id)
        })
    }
}

/// What a status answer from the core thread answers.
#[derive(Debug)]
enum StatusWait {
    /// An OrderStatusRequest (H).
    Order,
    /// An OrderMassStatusRequest (AF).
    Mass(MassWait),
    /// A RequestForPositions (AN): its answer, waiting for the core thread's list.
    Positions(Box<PositionsWait>),
    /// A MarketDataRequest (V): its MDReqID and request, waiting for the core thread's levels.
    Depth(Box<DepthWait>),
}

/// A MarketDataRequest waiting for the core thread's levels.
#[derive(Debug)]
struct DepthWait {
    req_id: Box<[u8]>,
    request: market_data::SnapshotRequest,
    reply: Arc<DepthReply>,
}

/// A RequestForPositions in the ingress queue: the core puts its list in `reply`.
#[derive(Debug)]
struct PositionsWait {
    answer: PositionsAnswer,
    reply: Arc<PositionsReply>,
}

/// A long answer being sent at the client's reading pace.
#[derive(Debug)]
enum Listing {
    /// To an OrderMassStatusRequest.
    Mass(PendingMass),
    /// To a RequestForPositions.
    Positions(PositionsAnswer),
}

/// An OrderMassStatusRequest in the ingress queue: the core puts its list in `reply`.
#[derive(Debug)]
struct MassWait {
    /// MassStatusReqID(584).
    req_id: Box<[u8]>,
    side: Option<Side>,
    instrument: Option<InstrumentId>,
    reply: Arc<OpenOrdersReply>,
}

/// The answer to an OrderMassStatusRequest being sent: its reports leave as the client reads
/// them (at most until the session's unsent output reaches the listener's pause mark per
/// step), so a long list never trips the slow-reader bound.
#[derive(Debug)]
struct PendingMass {
    /// MassStatusReqID(584).
    req_id: Box<[u8]>,
    /// The working orders on the requested side, in OrderID order, as status events.
    orders: Vec<Event>,
    /// The next one to send.
    next: usize,
}

impl PendingMass {
    /// The answer to `wait` from the core thread's list (`done` is its "list ready" answer,
    /// to the requesting `slot`). With no order to report, that single report is sent now.
    #[allow(clippy::too_many_arguments)]
    fn start(
        wait: MassWait,
        done: &Event,
        slot: SessionId,
        session: &mut Session,
        now: UtcTimestamp,
        v: BeginString,
        names: &Names<'_>,
        scratch: &mut Vec<u8>,
    ) -> Option<PendingMass> {
        let (list, none_text) = match wait.reply.get() {
            Some(Some(list)) => (list.as_slice(), "no matching working orders"),
            Some(None) => (
                &[][..],
                "more working orders than one answer lists: ask for one instrument at a time",
            ),
            None => (&[][..], "the order list is unavailable"),
        };
        let mut orders: Vec<Event> = list
            .iter()
            .filter(|o| wait.side.map_or(true, |s| o.side == s))
            .map(|o| o.to_event(slot, done.ts_ns))
            .collect();
        orders.sort_by_key(|e| e.order_id);
        if orders.is_empty() {
            // The request's account, instrument (or none: "[N/A]") and side.
            let none = Event {
                instrument: wait.instrument.unwrap_or(InstrumentId(u32::MAX)),
                side: wait.side.unwrap_or(Side::Buy),
                ..*done
            };
            let report = Report::MassStatusNone {
                event: &none,
                req_id: &wait.req_id,
                text: none_text,
            };
            send_report(session, now, v, report, names, scratch);
            return None;
        }
        Some(PendingMass {
            req_id: wait.req_id,
            orders,
            next: 0,
        })
    }

    /// Sends reports while the session's unsent output is below `pause`; true once all are.
    fn send_some(
        &mut self,
        session: &mut Session,
        now: UtcTimestamp,
        v: BeginString,
        names: &Names<'_>,
        scratch: &mut Vec<u8>,
        pause: usize,
    ) -> bool {
        let total = self.orders.len();
        while self.next < total && session.unsent_len() < pause {
            let report = Report::MassStatus {
                event: &self.orders[self.next],
                req_id: &self.req_id,
                total,
                last: self.next + 1 == total,
            };
            send_report(session, now, v, report, names, scratch);
            self.next += 1;
        }
        self.next == total
    }
}

/// Sends one report through the session (stored, sequenced), counting it.
fn send_report(
    session: &mut Session,
    now: UtcTimestamp,
    v: BeginString,
    report: Report<'_>,
    names: &Names<'_>,
    scratch: &mut Vec<u8>,
) {
    send_list_report(session, now, v, report, None, names, scratch);
}

/// Sends a report of an order of the order list `list` (an ExecutionReport carries its
/// ListID(66)).
fn send_list_report(
    session: &mut Session,
    now: UtcTimestamp,
    v: BeginString,
    report: Report<'_>,
    list: Option<OrderId>,
    names: &Names<'_>,
    scratch: &mut Vec<u8>,
) {
    let msg_type = report.msg_type();
    send_app(session, now, msg_type, "a report", |enc| {
        order_codec::encode_report(enc, v, report, names, scratch);
        if let Some(id) = list.filter(|_| msg_type == b"8") {
            enc.uint(order_list::LIST_ID, id.0);
        }
    });
}

/// Sends a ListStatus (N).
fn send_list_status(
    session: &mut Session,
    now: UtcTimestamp,
    status: &ListStatus,
    names: &Names<'_>,
    scratch: &mut Vec<u8>,
) {
    send_app(session, now, b"N", "a list status", |enc| {
        status.encode(enc, names, scratch)
    });
}

/// Sends one application message through the session (stored, sequenced), counting it; false
/// (logged) if it could not be sent.
fn send_app(
    session: &mut Session,
    now: UtcTimestamp,
    msg_type: &[u8],
    what: &str,
    body: impl FnOnce(&mut Encoder),
) -> bool {
    match session.send_application(now, msg_type, body) {
        Ok(_) => {
            METRICS.sent(Protocol::Fix);
            true
        }
        Err(e) => {
            let name = crate::security::session_name(session.config());
            warn!(session = %name, error = %e, "could not send {what}");
            false
        }
    }
}

/// One connection's order entry.
pub struct FixConn {
    pipeline: Arc<Pipeline>,
    auth: Arc<ServerAuth>,
    config: SessionConfig,
    version: BeginString,
    info: Arc<SessionInfo>,
    conn_id: u64,
    /// The accounts the connection trades for, resolved when it logs on.
    allowed: Option<Arc<[AccountId]>>,
    /// The connection's route on the core thread, opened when it logs on.
    conn: Option<Arc<Conn>>,
    decoder: Decoder,
    scratch: Vec<u8>,
    finished: Finished,
    /// The status and mass status requests in the ingress queue, oldest first: their answers
    /// come back in this order.
    status_waits: VecDeque<StatusWait>,
    /// Mass status and position answers being sent, oldest first.
    listings: VecDeque<Listing>,
    /// SecurityList answers being sent, oldest first (at most
    /// [`security_list::MAX_IN_PROGRESS`]).
    lists: VecDeque<SecurityListAnswer>,
    /// SecurityStatus subscriptions (SecurityStatusRequest with SubscriptionRequestType 1).
    status_subs: security_status::Subscriptions,
    /// TradingSessionStatus subscriptions (TradingSessionStatusRequest, 263 = 1).
    session_subs: SessionSubscriptions,
    /// The listener's pause mark: unsent output at which a long answer waits for the client.
    pause_bytes: usize,
    /// The account's history: orders that ended before `finished` remembers (or before a
    /// restart).
    history: Option<Arc<OrderHistory>>,
    reply_spin: Duration,
    unanswered: Unanswered,
    /// The connection's quotes (MassQuote, QuoteCancel).
    quoting: Quoting,
}

impl std::fmt::Debug for FixConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixConn")
            .field("session", &self.info.name)
            .field("conn", &self.conn_id)
            .finish_non_exhaustive()
    }
}

impl Drop for FixConn {
    fn drop(&mut self) {
        METRICS.connected(Protocol::Fix, -1);
        let mut finished = std::mem::replace(&mut self.finished, Finished::new(0));
        finished
            .lists
            .connection_ended(self.info.cancel_on_disconnect);
        self.info.finished.give_back(finished);
    }
}

/// Sends one SecurityList message: the next fragment of `answer`.
fn send_security_list(
    session: &mut Session,
    now: UtcTimestamp,
    v: BeginString,
    answer: &mut SecurityListAnswer,
    scratch: &mut Vec<u8>,
) {
    if !send_app(session, now, b"y", "a security list", |enc| {
        answer.encode_next(enc, v, scratch)
    }) {
        answer.abandon();
    }
}

/// What decoding a request of session `slot` needs, at `now`.
fn order_ctx<'a>(
    pipeline: &'a Pipeline,
    directory: &'a Directory,
    allowed: &'a [AccountId],
    slot: SessionId,
    now: UtcTimestamp,
) -> Ctx<'a> {
    Ctx {
        directory,
        allowed,
        account_names: pipeline.account_names(),
        session: slot,
        now_ns: now.nanos(),
        trading_day_end_secs: pipeline.trading_day_end_secs(),
    }
}

/// Sends the next message of a positions answer; gives up the rest if it cannot be sent.
fn send_positions(
    session: &mut Session,
    now: UtcTimestamp,
    answer: &mut PositionsAnswer,
    scratch: &mut Vec<u8>,
) {
    let msg_type = answer.next_msg_type();
    if !send_app(session, now, msg_type, "a position report", |enc| {
        answer.encode_next(enc, scratch)
    }) {
        answer.abandon();
    }
}

/// Sends one TradingSessionStatus (h).
fn send_session_status(
    session: &mut Session,
    now: UtcTimestamp,
    v: BeginString,
    m: &trading_session::SessionStatus,
) {
    send_app(session, now, b"h", "a trading session status", |enc| {
        m.encode_body(enc, v)
    });
}

/// Sends one SecurityStatus (f).
fn send_security_status(
    session: &mut Session,
    now: UtcTimestamp,
    m: &security_status::StatusMessage,
) {
    send_app(session, now, b"f", "a security status", |enc| {
        m.encode_body(enc, now)
    });
}

impl FixConn {
    /// Answers a SecurityStatusRequest (e) from the instrument directory; a subscription
    /// opens the session's route so the core thread's wake-up on a new directory reaches it.
    fn security_status_request(
        &mut self,
        session: &mut Session,
        now: UtcTimestamp,
        seq: SeqNum,
        msg: &portcullis_fix::MessageRef<'_>,
    ) {
        let Some(req) = security_status::decode(msg) else {
            // The dictionary requires 324, 55 and 263 (0, 1 or 2): only a 263 = 0 or 1 without
            // Symbol reaches here.
            BusinessReject::of(seq, msg, 5, "Symbol(55) is required").send(session, now);
            return;
        };
        let subscribe = matches!(req, security_status::StatusRequest::Subscribe { .. });
        if subscribe && self.ensure_conn().is_none() {
            BusinessReject::of(seq, msg, APPLICATION_NOT_AVAILABLE, "server busy")
                .send(session, now);
            return;
        }
        let dir = self.pipeline.directory_snapshot();
        match self.status_subs.request(req, &dir) {
            Ok(Some(m)) => send_security_status(session, now, &m),
            Ok(None) => {}
            Err(r) => BusinessReject {
                ref_id: msg
                    .get(security_status::SECURITY_STATUS_REQ_ID)
                    .map(<[u8]>::to_vec),
                ..BusinessReject::of(seq, msg, r.reason, r.text)
            }
            .send(session, now),
        }
    }

    /// Answers a TradingSessionStatusRequest (g) from the directory the core thread publishes
    /// (a subscription needs the route its wake-ups come through).
    fn trading_session_request(
        &mut self,
        session: &mut Session,
        now: UtcTimestamp,
        seq: SeqNum,
        msg: &portcullis_fix::MessageRef<'_>,
    ) {
        let req = trading_session::decode(msg);
        let subscribe = matches!(req, trading_session::SessionRequest::Subscribe(_));
        if subscribe && self.ensure_conn().is_none() {
            BusinessReject::of(seq, msg, APPLICATION_NOT_AVAILABLE, "server busy")
                .send(session, now);
            return;
        }
        let halted = self.pipeline.directory().halted();
        match self.session_subs.request(req, halted, self.version) {
            Ok(Some(m)) => send_session_status(session, now, self.version, &m),
            Ok(None) => {}
            Err(r) => BusinessReject {
                ref_id: msg
                    .get(trading_session::TRAD_SES_REQ_ID)
                    .map(<[u8]>::to_vec),
                ..BusinessReject::of(seq, msg, r.reason, r.text)
            }
            .send(session, now),
        }
    }

    /// Answers a SecurityListRequest (x) from the instrument directory: queued behind the
    /// answers in progress, or refused at once when there are too many of them.
    fn security_list_request(
        &mut self,
        session: &mut Session,
        now: UtcTimestamp,
        msg: &portcullis_fix::MessageRef<'_>,
    ) {
        let req_id = msg.get(security_list::SECURITY_REQ_ID).unwrap_or(b"");
        let dir = self.pipeline.directory_snapshot();
        if self.lists.len() >= security_list::MAX_IN_PROGRESS {
            let mut busy = SecurityListAnswer::new(req_id, dir, Err(ListRefusal::Busy));
            send_security_list(session, now, self.version, &mut busy, &mut self.scratch);
            return;
        }
        let outcome = security_list::decode(msg).and_then(|sel| security_list::select(&dir, &sel));
        self.lists
            .push_back(SecurityListAnswer::new(req_id, dir, outcome));
        self.send_lists(session, now);
    }

    /// Takes a RequestForPositions (AN): the core thread lists the account's positions, the
    /// answer leaves when they are in (a refused request is answered at once).
    fn positions_request(
        &mut self,
        session: &mut Session,
        now: UtcTimestamp,
        seq: SeqNum,
        msg: &portcullis_fix::MessageRef<'_>,
    ) {
        let allowed = self.allowed();
        let pipeline = self.pipeline.clone();
        let dir = pipeline.directory_snapshot();
        let ctx = order_ctx(&pipeline, &dir, &allowed, self.info.slot, now);
        let date = positions::clearing_business_date(now.nanos(), ctx.trading_day_end_secs);
        let query = positions::decode(msg, &ctx);
        let account = match query {
            Ok(q) => pipeline
                .account_names()
                .get(q.account.0 as usize)
                .map_or(&b""[..], |n| n.as_bytes()),
            Err(_) => msg.get(tag::ACCOUNT).unwrap_or(b""),
        };
        let refusal = match query {
            Err(r) => r,
            Ok(q) if self.ensure_conn().is_some() => {
                let reply = Arc::new(PositionsReply::default());
                let request = PositionsRequest {
                    session: self.info.slot,
                    account: q.account,
                    instrument: q.instrument,
                    reply: reply.clone(),
                };
                match pipeline.submit(Ingress::Positions(request)) {
                    Ok(()) => {
                        self.unanswered.submitted(seq);
                        let answer = PositionsAnswer::new(msg, account, date, dir, Ok(Vec::new()));
                        let wait = PositionsWait { answer, reply };
                        self.status_waits
                            .push_back(StatusWait::Positions(Box::new(wait)));
                        self.await_reply();
                        return;
                    }
                    Err(_) => PositionsRefusal::Busy,
                }
            }
            Ok(_) => PositionsRefusal::Busy,
        };
        let answer = PositionsAnswer::new(msg, account, date, dir, Err(refusal));
        self.listings.push_back(Listing::Positions(answer));
        let names = Names {
            directory: &pipeline.directory(),
            account_names: pipeline.account_names(),
        };
        self.send_listings(session, now, &names);
    }

    /// Takes a NewOrderList (E): its first order goes to the core thread, each acceptance
    /// sends the next (see [`order_list`]); a list refused at once is answered with a
    /// ListStatus.
    fn order_list(
        &mut self,
        session: &mut Session,
        now: UtcTimestamp,
        seq: SeqNum,
        msg: &portcullis_fix::MessageRef<'_>,
    ) {
        let allowed = self.allowed();
        let pipeline = self.pipeline.clone();
        let dir = pipeline.directory();
        let ctx = order_ctx(&pipeline, &dir, &allowed, self.info.slot, now);
        let refusal = match order_list::decode(msg, &ctx) {
            Err(r) => r,
            Ok(req) if !self.finished.lists.has_room() => order_list::ListRefusal {
                client_id: req.client_id,
                reason: RejectReason::TooManyOpenOrders,
                text: format!(
                    "too many order lists: at most {} being placed per session",
                    order_list::MAX_LISTS
                )
                .into(),
            },
            Ok(req) if self.ensure_conn().is_none() => order_list::ListRefusal {
                client_id: req.client_id,
                reason: RejectReason::ServerBusy,
                text: RejectReason::ServerBusy.text().into(),
            },
            Ok(req) => {
                let client_id = req.client_id;
                let first = match req.legs.first().map(|l| l.0.instrument) {
                    Some(instrument) => self.finished.lists.start(req, instrument, seq),
                    None => None,
                };
                let Some(first) = first else {
                    // Never from the decoder, which counts the orders first.
                    let refusal = order_list::ListRefusal {
                        client_id,
                        reason: RejectReason::OrderListRejected,
                        text: "a list has 2 or 3 orders".into(),
                    };
                    let status = ListStatus::refused(&refusal, now.nanos());
                    let names = Names {
                        directory: &dir,
                        account_names: pipeline.account_names(),
                    };
                    send_list_status(session, now, &status, &names, &mut self.scratch);
                    return;
                };
                if pipeline.submit(Ingress::Cmd(Command::New(first))).is_ok() {
                    self.unanswered.submitted(seq);
                    self.await_reply();
                    return;
                }
                let failed = self.finished.lists.fail(
                    first.cl_ord_id,
                    RejectReason::ServerBusy,
                    now.nanos(),
                );
                if let Some((_, status)) = failed {
                    let names = Names {
                        directory: &dir,
                        account_names: pipeline.account_names(),
                    };
                    send_list_status(session, now, &status, &names, &mut self.scratch);
                }
                return;
            }
        };
        debug!(conn = self.conn_id, seq, reason = ?refusal.reason, text = %refusal.text, "order list refused");
        let status = ListStatus::refused(&refusal, now.nanos());
        let names = Names {
            directory: &dir,
            account_names: pipeline.account_names(),
        };
        send_list_status(session, now, &status, &names, &mut self.scratch);
    }

    /// Takes a MarketDataRequest (V): the core thread lists the book's levels, the snapshot
    /// leaves when they are in; a request refused is answered at once with a
    /// MarketDataRequestReject (Y).
    fn market_data_request(
        &mut self,
        session: &mut Session,
        now: UtcTimestamp,
        seq: SeqNum,
        msg: &portcullis_fix::MessageRef<'_>,
    ) {
        let req_id = msg.get(market_data::MD_REQ_ID).unwrap_or(b"");
        let refusal = match market_data::decode(msg, &self.pipeline.directory()) {
            Err(r) => r,
            Ok(request) => match self.ensure_conn() {
                None => market_data::MdRefusal {
                    reason: None,
                    text: RejectReason::ServerBusy.text(),
                },
                Some(_) => {
                    let reply = Arc::new(DepthReply::default());
                    let allowed = self.allowed();
                    let depth = DepthRequest {
                        session: self.info.slot,
                        account: allowed.first().copied().unwrap_or(AccountId(0)),
                        instrument: request.instrument,
                        levels: request.levels,
                        reply: reply.clone(),
                    };
                    if self.pipeline.submit(Ingress::Depth(depth)).is_ok() {
                        self.unanswered.submitted(seq);
                        self.status_waits
                            .push_back(StatusWait::Depth(Box::new(DepthWait {
                                req_id: req_id.into(),
                                request,
                                reply,
                            })));
                        self.await_reply();
                        return;
                    }
                    market_data::MdRefusal {
                        reason: None,
                        text: RejectReason::ServerBusy.text(),
                    }
                }
            },
        };
        send_app(session, now, b"Y", "a market data reject", |enc| {
            market_data::encode_reject(enc, req_id, &refusal)
        });
    }

    /// Takes a ListStatusRequest (M) or ListCancelRequest (K) for a list of the session:
    /// answered with its ListStatus (for a cancel: ListOrderStatus 4, cancelling; its orders'
    /// reports and the list's ALL_DONE follow), or ListOrderStatus 7 if it has no such list.
    fn list_request(
        &mut self,
        session: &mut Session,
        now: UtcTimestamp,
        seq: SeqNum,
        msg: &portcullis_fix::MessageRef<'_>,
    ) {
        let asked = msg.get(order_list::LIST_ID).unwrap_or(b"");
        let status_request = msg.msg_type() == b"M";
        let known = portcullis_fix::decode::parse_u64(asked).and_then(|id| {
            let id = OrderId(id);
            let lists = &self.finished.lists;
            if let Some(l) = lists.working(id) {
                return Some(l.clone());
            }
            if let Some(l) = lists.ended(id) {
                // Its status, as it ended; nothing to cancel.
                return status_request.then(|| l.clone());
            }
            // A list from before a restart: the history has it.
            let l = self.list_in_history(id)?;
            self.finished.lists.adopt(l.clone());
            Some(l)
        });
        let status = match known {
            None => ListStatus::unknown(ClOrdId::new(asked).unwrap_or(ClOrdId::EMPTY), now.nanos()),
            Some(list)
                if list.orders.iter().all(order_list::Member::is_ended) && !status_request =>
            {
                ListStatus::unknown(ClOrdId::new(asked).unwrap_or(ClOrdId::EMPTY), now.nanos())
            }
            Some(list) if status_request => ListStatus {
                list,
                state: order_list::ListState::Working,
                ts_ns: now.nanos(),
            },
            Some(list) => {
                // The cancel of the list's first order takes the others.
                let cancel = Command::Cancel(CancelOrder {
                    session: self.info.slot,
                    account: list.account,
                    instrument: list.instrument,
                    cl_ord_id: ClOrdId::EMPTY,
                    order_id: Some(list.id),
                    orig_cl_ord_id: ClOrdId::EMPTY,
                    received_ns: now.nanos(),
                });
                let sent = self.ensure_conn().is_some()
                    && self.pipeline.submit(Ingress::Cmd(cancel)).is_ok();
                let state = if sent {
                    self.unanswered.submitted(seq);
                    order_list::ListState::Cancelling
                } else {
                    let busy = RejectReason::ServerBusy;
                    order_list::ListState::Rejected(busy, busy.text().into())
                };
                ListStatus {
                    list,
                    state,
                    ts_ns: now.nanos(),
                }
            }
        };
        let pipeline = self.pipeline.clone();
        let names = Names {
            directory: &pipeline.directory(),
            account_names: pipeline.account_names(),
        };
        send_list_status(session, now, &status, &names, &mut self.scratch);
    }

    /// An OrderCancelRequest naming a list by ListID(66) alone: a list from before a restart
    /// is followed again (its cancel reports carry its ListID, its end is told).
    fn recall_list(&mut self, msg: &portcullis_fix::MessageRef<'_>) {
        if msg.get(tag::ORDER_ID).is_some() || msg.get(tag::ORIG_CL_ORD_ID).is_some() {
            return;
        }
        let Some(id) = msg
            .get(order_list::LIST_ID)
            .and_then(portcullis_fix::decode::parse_u64)
        else {
            return;
        };
        let id = OrderId(id);
        let lists = &self.finished.lists;
        if lists.working(id).is_some() || lists.ended(id).is_some() {
            return;
        }
        if let Some(l) = self.list_in_history(id) {
            self.finished.lists.adopt(l);
        }
    }

    /// The order list `id` of this session as the account's history has it (its orders all
    /// entered by this session), for a list from before a restart.
    fn list_in_history(&self, id: OrderId) -> Option<order_list::OrderList> {
        let history = self.history.as_ref()?;
        let allowed = self.allowed.clone()?;
        let w = Window {
            order_id: Some(id.0),
            limit: 1,
            ..Window::default()
        };
        allowed.iter().find_map(|&account| {
            let list = history
                .lists(account, &w)
                .into_iter()
                .find(|l| l.id == id)?;
            let orders: Vec<PastOrder> = list
                .orders
                .iter()
                .map(|&o| history.order(account, o))
                .collect::<Option<_>>()?;
            orders
                .iter()
                .all(|o| o.session == self.info.slot)
                .then(|| order_list::OrderList::from_history(account, &list, &orders))
        })
    }

    /// Decodes an order-entry message; an OrderCancelRequest naming a list by the client's
    /// id (OrigClListID(25015)) cancels the session's working list of that id.
    fn decode_order_entry(
        &self,
        msg: &portcullis_fix::MessageRef<'_>,
        ctx: &Ctx<'_>,
    ) -> Result<Request, Refusal> {
        let by_client_id = msg
            .get(order_list::ORIG_CL_LIST_ID)
            .filter(|_| msg.msg_type() == b"F" && msg.get(order_list::LIST_ID).is_none());
        let Some(client_id) = by_client_id else {
            return order_codec::decode(msg, ctx);
        };
        let list = ClOrdId::new(client_id)
            .ok()
            .and_then(|c| self.finished.lists.by_client_id(&c));
        match list {
            Some(id) => order_codec::decode_list_cancel(msg, ctx, id).map(Request::Cancel),
            None => Err(Refusal::with_text(
                msg,
                RejectReason::UnknownOrder,
                "unknown order list: OrigClListID(25015) names no working list of the session",
            )),
        }
    }

    /// Does what an event of an order list's order asks for (see [`ListStep`]), once its
    /// report is sent: sends the list's next order, or its status.
    fn list_step(
        &mut self,
        session: &mut Session,
        now: UtcTimestamp,
        e: &Event,
        step: ListStep,
        names: &Names<'_>,
    ) {
        let status = match step {
            ListStep::None | ListStep::Member(_) => return,
            ListStep::Status(_, status) | ListStep::Refused { status, .. } => status,
            ListStep::Send(next, _, seq) => {
                if self
                    .pipeline
                    .submit(Ingress::Cmd(Command::New(next)))
                    .is_ok()
                {
                    self.unanswered.submitted(seq);
                    return;
                }
                let lists = &mut self.finished.lists;
                let Some((list, status)) =
                    lists.fail(next.cl_ord_id, RejectReason::ServerBusy, now.nanos())
                else {
                    return;
                };
                if let Some(id) = list {
                    // The orders placed go: the cancel of the first takes the others.
                    let cancel = Command::Cancel(CancelOrder {
                        session: self.info.slot,
                        account: e.account,
                        instrument: e.instrument,
                        cl_ord_id: ClOrdId::EMPTY,
                        order_id: Some(id),
                        orig_cl_ord_id: ClOrdId::EMPTY,
                        received_ns: now.nanos(),
                    });
                    if self.pipeline.submit(Ingress::Cmd(cancel)).is_ok() {
                        self.unanswered.submitted(session.next_target_seq());
                    }
                }
                status
            }
        };
        send_list_status(session, now, &status, names, &mut self.scratch);
    }

    /// Takes a MassQuote (i) or QuoteCancel (Z): its order requests go to the core thread
    /// (each counted as a request of MsgSeqNum `seq`), and its acknowledgement leaves when they
    /// are answered (at once if nothing had to be asked).
    fn quote_message(
        &mut self,
        session: &mut Session,
        now: UtcTimestamp,
        seq: SeqNum,
        msg: &portcullis_fix::MessageRef<'_>,
    ) {
        let allowed = self.allowed();
        let pipeline = self.pipeline.clone();
        let dir = pipeline.directory();
        let ctx = order_ctx(&pipeline, &dir, &allowed, self.info.slot, now);
        // No route (the ingress queue is full): every request is refused "server busy".
        let routed = self.ensure_conn().is_some();
        let unanswered = &mut self.unanswered;
        let mut submit = |cmd: Command, seq: SeqNum| {
            routed && pipeline.submit(Ingress::Cmd(cmd)).is_ok() && {
                unanswered.submitted(seq);
                true
            }
        };
        if msg.msg_type() == b"i" {
            let cancel_on_disconnect = self.info.cancel_on_disconnect;
            self.quoting
                .mass_quote(msg, &ctx, cancel_on_disconnect, seq, &mut submit);
        } else {
            self.quoting.quote_cancel(msg, &ctx, seq, &mut submit);
        }
        self.send_quote_acks(session, now);
    }

    /// Sends the MassQuoteAcknowledgements whose answers are all in, in order.
    fn send_quote_acks(&mut self, session: &mut Session, now: UtcTimestamp) {
        while let Some(ack) = self.quoting.next_ack() {
            if !ack.is_sent() {
                continue;
            }
            match session.send_application(now, b"b", |enc| ack.encode(enc)) {
                Ok(_) => METRICS.sent(Protocol::Fix),
                Err(e) => {
                    warn!(conn = self.conn_id, error = %e, "could not send a mass quote acknowledgement")
                }
            }
        }
    }

    /// Sends the SecurityList answers in progress, oldest first, until the session's unsent
    /// output reaches the pause mark (the rest leaves as the client reads).
    fn send_lists(&mut self, session: &mut Session, now: UtcTimestamp) {
        while let Some(a) = self.lists.front_mut() {
            while !a.is_done() && session.unsent_len() < self.pause_bytes {
                send_security_list(session, now, self.version, a, &mut self.scratch);
            }
            if !a.is_done() {
                break;
            }
            self.lists.pop_front();
        }
    }

    /// Sends what the pending mass status and position answers have, oldest first, until the
    /// session's unsent output reaches the pause mark.
    fn send_listings(&mut self, session: &mut Session, now: UtcTimestamp, names: &Names<'_>) {
        let v = self.version;
        let pause = self.pause_bytes;
        while let Some(l) = self.listings.front_mut() {
            let done = match l {
                Listing::Mass(p) => p.send_some(session, now, v, names, &mut self.scratch, pause),
                Listing::Positions(a) => {
                    while !a.is_done() && session.unsent_len() < pause {
                        send_positions(session, now, a, &mut self.scratch);
                    }
                    a.is_done()
                }
            };
            if !done {
                break;
            }
            self.listings.pop_front();
        }
    }

    /// An order of this session that ended, as the account's history has it: by OrderID if
    /// the request named one, else by the session's ClOrdID `cl`. A working order is not
    /// reported as ended (the core has just said it does not have it: the history lags).
    fn ended_in_history(&self, account: AccountId, cl: &ClOrdId, id: OrderId) -> Option<Ended> {
        let h = self.history.as_ref()?;
        let p = if id != OrderId(0) {
            h.order(account, id)?
        } else {
            h.order_by_cl(account, cl)?
        };
        // ClOrdIDs are the session's: another session's order of the same id is not this one.
        if p.session != self.info.slot || p.cl_ord_id != *cl {
            return None;
        }
        let status = match p.state {
            OrderState::Filled => b'2',
            OrderState::Canceled => b'4',
            OrderState::Expired => b'C',
            OrderState::Pending | OrderState::Working | OrderState::PartiallyFilled => return None,
        };
        Some(Ended {
            status,
            order_id: p.order_id,
            account,
            instrument: p.instrument,
            side: p.side,
            ord_type: p.ord_type,
            tif: p.tif,
            price: p.price,
            qty: p.qty,
            cum_qty: p.cum_qty,
            avg_px: p.avg_px,
        })
    }

    /// The accounts of this connection: the logged-on key's account (authenticated sessions),
    /// or the session's configured accounts (every account for `*`).
    fn resolve_accounts(&self) -> Arc<[AccountId]> {
        let p = &self.pipeline;
        if self.info.authenticate {
            return self
                .auth
                .logged_on_account(&self.config)
                .and_then(|a| p.account_id(&a))
                .into_iter()
                .collect();
        }
        if self
            .info
            .accounts
            .iter()
            .any(|a| a == portcullis_auth::ANY_ACCOUNT)
        {
            return (0..p.account_names().len() as u32).map(AccountId).collect();
        }
        self.info
            .accounts
            .iter()
            .filter_map(|a| p.account_id(a))
            .collect()
    }

    /// The connection's accounts (shared, so taking them per message allocates nothing).
    fn allowed(&mut self) -> Arc<[AccountId]> {
        match &self.allowed {
            Some(a) => a.clone(),
            None => {
                let a = self.resolve_accounts();
                self.allowed = Some(a.clone());
                a
            }
        }
    }

    /// With an idle core thread the answer comes within a microsecond or two: poll for it a
    /// little (`core.reply_spin_us`) so that it is sent in this step. The task then never goes
    /// to sleep between request and answer, so the core thread's wake-up of it finds it
    /// running and costs no system call. Not when other requests are queued: the answer would
    /// be late anyway, and the task has better things to do.
    fn await_reply(&self) {
        let (Some(conn), spin) = (&self.conn, self.reply_spin) else {
            return;
        };
        if spin.is_zero() || self.pipeline.queued() > 1 {
            return;
        }
        let deadline = std::time::Instant::now() + spin;
        while !conn.has_output() && std::time::Instant::now() < deadline {
            std::hint::spin_loop();
        }
    }

    /// The connection's route on the core thread, opened on first use; `None` while the ingress
    /// queue is full (the request is then refused "server busy", and the next one tries again).
    fn ensure_conn(&mut self) -> Option<Arc<Conn>> {
        if let Some(c) = &self.conn {
            return Some(c.clone());
        }
        let allowed = self.allowed();
        let p = &self.pipeline;
        let conn = p.new_conn(self.info.slot, &allowed, self.info.cancel_on_disconnect);
        p.submit(Ingress::Open(conn.clone())).ok()?;
        self.info
            .has_traded
            .store(true, std::sync::atomic::Ordering::Relaxed);
        debug!(conn = self.conn_id, session = %self.info.name, slot = conn.slot().0, "session route opened");
        crate::metrics::track_conn(&conn);
        self.conn = Some(conn.clone());
        Some(conn)
    }
}

/// Counts a report the session is about to send: its rejects, the order-to-ack latency of an
/// acknowledgement or reject of a new order (from the `received_ns` its command carries to
/// `now`, when the report is written), and the account's reject rate.
fn note_event(e: &Event, now: UtcTimestamp) {
    let ack = match e.kind {
        EventKind::New => true,
        EventKind::Rejected(reason) => {
            METRICS.fix_reject(reason);
            crate::monitoring::order_rejected(e.account, e.ts_ns.div_euclid(1_000_000));
            true
        }
        EventKind::CancelRejected { reason, .. } => {
            METRICS.fix_reject(reason);
            false
        }
        _ => false,
    };
    if ack && e.received_ns > 0 {
        METRICS
            .ack_latency(Protocol::Fix)
            .record_ns(now.nanos() - e.received_ns);
    }
}

fn send_refusal(
    session: &mut Session,
    v: BeginString,
    now: UtcTimestamp,
    r: &Refusal,
    request: &portcullis_fix::MessageRef<'_>,
) {
    METRICS.fix_reject(r.reason);
    let res = session.send_application(now, r.answer_type(), |enc| {
        order_codec::encode_refusal(enc, v, r, request, now.nanos())
    });
    match res {
        Ok(_) => METRICS.sent(Protocol::Fix),
        Err(e) => warn!(error = %e, "could not send a reject"),
    }
}

impl ConnectionApp for FixConn {
    fn on_logon(&mut self, _session: &mut Session, _now: UtcTimestamp) {
        self.allowed = Some(self.resolve_accounts());
        // Reports of orders an earlier connection entered (fills of GTC orders) flow from the
        // Logon on.
        // So do reports parked for the slot (of orders from before a restart).
        if self
            .info
            .has_traded
            .load(std::sync::atomic::Ordering::Relaxed)
            || self.pipeline.parked().waiting(self.info.slot)
        {
            let _ = self.ensure_conn();
        }
    }

    fn on_message(
        &mut self,
        session: &mut Session,
        now: UtcTimestamp,
        seq: SeqNum,
        message: &[u8],
    ) {
        METRICS.received(Protocol::Fix);
        let v = self.version;
        let mut decoder = std::mem::take(&mut self.decoder);
        let Ok(msg) = decoder.decode(message) else {
            warn!(
                conn = self.conn_id,
                seq, "application message does not decode; not answered"
            );
            self.decoder = decoder;
            return;
        };
        // The messages that are not order entry, each with its own answer.
        let answered = match msg.msg_type() {
            b"x" => {
                self.security_list_request(session, now, &msg);
                true
            }
            b"e" => {
                self.security_status_request(session, now, seq, &msg);
                true
            }
            b"g" => {
                self.trading_session_request(session, now, seq, &msg);
                true
            }
            b"AN" => {
                self.positions_request(session, now, seq, &msg);
                true
            }
            b"i" | b"Z" => {
                self.quote_message(session, now, seq, &msg);
                true
            }
            b"E" => {
                self.order_list(session, now, seq, &msg);
                true
            }
            b"K" | b"M" => {
                self.list_request(session, now, seq, &msg);
                true
            }
            b"V" => {
                self.market_data_request(session, now, seq, &msg);
                true
            }
            _ => false,
        };
        if answered {
            self.decoder = decoder;
            return;
        }
        if !order_codec::is_order_entry(msg.msg_type()) {
            BusinessReject::of(
                seq,
                &msg,
                UNSUPPORTED_MESSAGE_TYPE,
                "unsupported message type",
            )
            .send(session, now);
            self.decoder = decoder;
            return;
        }
        if msg.msg_type() == b"F" {
            self.recall_list(&msg);
        }
        let allowed = self.allowed();
        let dir = self.pipeline.directory();
        let ctx = order_ctx(&self.pipeline, &dir, &allowed, self.info.slot, now);
        let outcome = match self.decode_order_entry(&msg, &ctx) {
            Err(refusal) => Err(refusal),
            Ok(req) => match self.ensure_conn() {
                None => Err(Refusal::new(&msg, RejectReason::ServerBusy)),
                Some(_) => {
                    // Status answers come back in the order their requests were queued.
                    let mut status_wait = None;
                    let item = match req {
                        Request::New(o) => Ingress::Cmd(Command::New(o)),
                        Request::Cancel(c) => Ingress::Cmd(Command::Cancel(c)),
                        Request::Replace(r) => Ingress::Cmd(Command::Replace(r)),
                        Request::MassCancel(m) => Ingress::Cmd(Command::MassCancel(m)),
                        Request::Status(s) => {
                            status_wait = Some(StatusWait::Order);
                            Ingress::Status(s)
                        }
                        Request::MassStatus(m) => {
                            let reply = Arc::new(OpenOrdersReply::default());
                            status_wait = Some(StatusWait::Mass(MassWait {
                                req_id: msg.get(MASS_STATUS_REQ_ID).unwrap_or(b"").into(),
                                side: m.side,
                                instrument: m.instrument,
                                reply: reply.clone(),
                            }));
                            Ingress::OpenOrders(OpenOrdersRequest {
                                session: self.info.slot,
                                account: m.account,
                                instrument: m.instrument,
                                reply,
                            })
                        }
                    };
                    match self.pipeline.submit(item) {
                        Ok(()) => {
                            self.unanswered.submitted(seq);
                            if let Some(w) = status_wait {
                                self.status_waits.push_back(w);
                            }
                            self.await_reply();
                            Ok(())
                        }
                        Err(_) => Err(Refusal::new(&msg, RejectReason::ServerBusy)),
                    }
                }
            },
        };
        if let Err(r) = outcome {
            debug!(conn = self.conn_id, seq, reason = ?r.reason, text = %r.text, "request refused");
            send_refusal(session, v, now, &r, &msg);
        }
        drop(dir);
        self.decoder = decoder;
    }

    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.listings.is_empty() || !self.lists.is_empty() {
            // A mass status or security list answer has more to send (the transport calls again only while
            // the client reads).
            return Poll::Ready(());
        }
        // Only a session with subscriptions looks at the directory (a load per poll otherwise).
        if !self.status_subs.is_empty() || !self.session_subs.is_empty() {
            let dir = self.pipeline.directory();
            if self.status_subs.stale(&dir) || self.session_subs.stale(dir.halted()) {
                // An instrument's status, or the session's, may have changed: the subscribers
                // hear of it.
                return Poll::Ready(());
            }
        }
        match &self.conn {
            // A request answered after its reports were sent (the core counts it once they
            // are queued; a reply spin may have sent them first): its MsgSeqNum may be stored.
            Some(c) if self.unanswered.any_answered(c.answered()) => Poll::Ready(()),
            Some(c) => c.poll_ready(cx),
            // No route yet: nothing can arrive; the request that opens one comes through
            // on_message or on_logon, after which the transport polls again.
            None => Poll::Pending,
        }
    }

    fn write_output(&mut self, session: &mut Session, now: UtcTimestamp) -> Result<(), String> {
        self.send_lists(session, now);
        if !self.status_subs.is_empty() && self.status_subs.stale(&self.pipeline.directory()) {
            let dir = self.pipeline.directory_snapshot();
            for m in self.status_subs.changes(&dir) {
                send_security_status(session, now, &m);
            }
        }
        if !self.session_subs.is_empty() {
            let halted = self.pipeline.directory().halted();
            for m in self.session_subs.changes(halted) {
                send_session_status(session, now, self.version, &m);
            }
        }
        let Some(conn) = self.conn.clone() else {
            return Ok(());
        };
        let v = self.version;
        // The names borrow a handle of the pipeline, not the connection, which changes below.
        let pipeline = self.pipeline.clone();
        let dir = pipeline.directory();
        let names = Names {
            directory: &dir,
            account_names: pipeline.account_names(),
        };
        self.send_listings(session, now, &names);
        // Requests counted here have all their reports in the queue: once it is drained they
        // are answered.
        let answered = conn.answered();
        let mut drained = false;
        // At most one queue's worth per call, so reading the socket is never starved.
        for _ in 0..conn.capacity() {
            let Some(item) = conn.pop() else {
                drained = true;
                break;
            };
            let status_answer;
            let mut list_step = ListStep::None;
            let report = match &item {
                Outbound::Event(e) => {
                    note_event(e, now);
                    self.finished.note(e);
                    if self.quoting.is_active() {
                        let (pipeline, unanswered) = (&self.pipeline, &mut self.unanswered);
                        let next_in = session.next_target_seq();
                        let forward = self.quoting.on_event(e, &mut |cmd, seq| {
                            pipeline.submit(Ingress::Cmd(cmd)).is_ok() && {
                                let seq = if seq == NO_MESSAGE { next_in } else { seq };
                                unanswered.submitted(seq);
                                true
                            }
                        });
                        if !forward {
                            // An acknowledgement leaves before the reports of later requests.
                            self.send_quote_acks(session, now);
                            continue;
                        }
                    }
                    list_step = self.finished.lists.on_event(e);
                    match e.kind {
                        // ExecType L exists from FIX 5.0 on: older sessions see what the
                        // triggered order does next.
                        EventKind::Triggered if v != BeginString::Fixt11 => continue,
                        EventKind::CancelRejected {
                            reason: RejectReason::UnknownOrder,
                            ..
                        } => match self.finished.get(&e.orig_cl_ord_id).copied().or_else(|| {
                            self.ended_in_history(e.account, &e.orig_cl_ord_id, e.order_id)
                        }) {
                            Some(ended) => Report::TooLate {
                                event: e,
                                status: ended.status,
                            },
                            None => Report::Event(e),
                        },
                        _ => Report::Event(e),
                    }
                }
                Outbound::Status(_)
                    if matches!(self.status_waits.front(), Some(StatusWait::Depth(_))) =>
                {
                    if let Some(StatusWait::Depth(wait)) = self.status_waits.pop_front() {
                        if let Some(depth) = wait.reply.get() {
                            let scratch = &mut self.scratch;
                            send_app(session, now, b"W", "a market data snapshot", |enc| {
                                market_data::encode_snapshot(
                                    enc,
                                    &wait.req_id,
                                    &wait.request,
                                    depth,
                                    &dir,
                                    scratch,
                                )
                            });
                        }
                    }
                    continue;
                }
                Outbound::Status(_)
                    if matches!(self.status_waits.front(), Some(StatusWait::Positions(_))) =>
                {
                    if let Some(StatusWait::Positions(wait)) = self.status_waits.pop_front() {
                        let PositionsWait { mut answer, reply } = *wait;
                        answer.fill(&reply, self.pipeline.directory_snapshot());
                        self.listings.push_back(Listing::Positions(answer));
                        self.send_listings(session, now, &names);
                    }
                    continue;
                }
                Outbound::Status(e)
                    if matches!(self.status_waits.front(), Some(StatusWait::Mass(_))) =>
                {
                    if let Some(StatusWait::Mass(wait)) = self.status_waits.pop_front() {
                        let slot = self.info.slot;
                        let scratch = &mut self.scratch;
                        if let Some(p) =
                            PendingMass::start(wait, e, slot, session, now, v, &names, scratch)
                        {
                            self.listings.push_back(Listing::Mass(p));
                        }
                        self.send_listings(session, now, &names);
                    }
                    continue;
                }
                Outbound::Status(e) => {
                    if self.status_waits.pop_front().is_none() && e.cl_ord_id.is_empty() {
                        // A mass status list whose request went with an earlier connection of
                        // the session: nothing to answer on this one.
                        continue;
                    }
                    // Not a working order: an order that ended is answered with its final state.
                    let ended = self
                        .finished
                        .status_of(e)
                        .copied()
                        .or_else(|| self.ended_in_history(e.account, &e.cl_ord_id, e.order_id));
                    match ended {
                        Some(ended)
                            if e.kind == EventKind::Rejected(RejectReason::UnknownOrder) =>
                        {
                            status_answer = ended.status_event(e);
                            Report::Status(&status_answer)
                        }
                        _ => Report::Status(e),
                    }
                }
            };
            let list = match &list_step {
                ListStep::None => None,
                ListStep::Member(id) | ListStep::Send(_, id, _) | ListStep::Status(id, _) => {
                    Some(*id)
                }
                ListStep::Refused { list, .. } => *list,
            };
            send_list_report(session, now, v, report, list, &names, &mut self.scratch);
            if let Outbound::Event(e) = &item {
                self.list_step(session, now, e, list_step, &names);
            }
        }
        self.send_quote_acks(session, now);
        if drained {
            self.unanswered.answered(answered);
        }
        if let Some(why) = conn.kicked() {
            return Err(why.to_owned());
        }
        Ok(())
    }

    fn unanswered(&self) -> Option<SeqNum> {
        self.unanswered.oldest()
    }

    fn on_sequence_reset(&mut self) {
        self.unanswered.forget_numbers();
    }

    fn close(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let conn = self.conn.take();
        let pipeline = self.pipeline.clone();
        // Order lists being placed are not completed: the orders they placed are cancelled
        // (cancel-on-disconnect does it anyway).
        let slot = self.info.slot;
        let abandoned = self.finished.lists.abandon();
        let now = crate::pipeline::now_ns();
        let cancels: Vec<Ingress> = abandoned
            .into_iter()
            .filter(|_| !self.info.cancel_on_disconnect)
            .map(|(id, account, instrument)| {
                Ingress::Cmd(Command::Cancel(CancelOrder {
                    session: slot,
                    account,
                    instrument,
                    cl_ord_id: ClOrdId::EMPTY,
                    order_id: Some(id),
                    orig_cl_ord_id: ClOrdId::EMPTY,
                    received_ns: now,
                }))
            })
            .collect();
        Box::pin(async move {
            let Some(conn) = conn else { return };
            // The close must reach the core thread (cancel-on-disconnect, the route): while the
            // queue is full, try again shortly; the transport waits for this before the
            // session may connect again.
            for item in cancels.into_iter().chain([Ingress::Close(conn)]) {
                let mut item = item;
                loop {
                    match pipeline.submit(item) {
                        Ok(()) => break,
                        Err(back) => item = back,
                    }
                    if pipeline.is_stopping() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_types::TradeId;

    fn message(msg_type: &str, seq: u64, body: &[(u32, &str)]) -> Vec<u8> {
        let mut enc = Encoder::new();
        enc.start(b"FIX.4.4", msg_type.as_bytes());
        enc.str(49, b"DEMO").str(56, b"PORTCULLIS").uint(34, seq);
        enc.str(52, b"20240102-10:00:00.000");
        for (t, v) in body {
            enc.str(*t, v.as_bytes());
        }
        enc.finish().to_vec()
    }

    fn cl(id: &str) -> ClOrdId {
        ClOrdId::new(id.as_bytes()).unwrap()
    }

    /// A report of `kind` for order 7 of account 1 (ClOrdID `id`, previously `orig`).
    fn report(kind: EventKind, id: &str, orig: &str) -> Event {
        Event {
            session: SessionId(0),
            account: AccountId(1),
            instrument: InstrumentId(2),
            kind,
            order_id: OrderId(7),
            cl_ord_id: cl(id),
            orig_cl_ord_id: if orig.is_empty() {
                ClOrdId::EMPTY
            } else {
                cl(orig)
            },
            side: Side::Sell,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(1000),
            qty: Qty(3000),
            cum_qty: Qty(3000),
            leaves_qty: Qty(0),
            avg_px: Price(1003),
            last_px: Price(1010),
            last_qty: Qty(1000),
            trade_id: TradeId(9),
            exec_id: 44,
            ts_ns: 1,
            received_ns: 1,
            details: Default::default(),
        }
    }

    /// The core's answer to a status request for an order it does not have.
    /// As `pipeline::unknown_order` makes it: the request's ids, nothing of an order.
    fn unknown(id: &str, account: u32, order_id: u64) -> Event {
        Event {
            account: AccountId(account),
            order_id: OrderId(order_id),
            price: Price(0),
            qty: Qty(0),
            cum_qty: Qty(0),
            avg_px: Price(0),
            last_px: Price(0),
            last_qty: Qty(0),
            trade_id: TradeId(0),
            exec_id: 0,
            ..report(EventKind::Rejected(RejectReason::UnknownOrder), id, "")
        }
    }

    #[test]
    fn an_ended_order_is_answered_with_its_final_state() {
        let mut f = Finished::new(8);
        assert!(f.status_of(&unknown("A", 1, 0)).is_none());
        f.note(&report(EventKind::Fill, "A", ""));
        // The core's answer, as for any order it does not have.
        let request = Event {
            session: SessionId(3),
            ts_ns: 99,
            ..unknown("A", 1, 0)
        };
        let answer = f.status_of(&request).unwrap().status_event(&request);
        assert_eq!(answer.kind, EventKind::Fill);
        assert_eq!(
            (answer.cl_ord_id, answer.price, answer.qty),
            (cl("A"), Price(1000), Qty(3000))
        );
        assert_eq!(
            (answer.cum_qty, answer.leaves_qty, answer.avg_px),
            (Qty(3000), Qty(0), Price(1003))
        );
        assert_eq!(
            (answer.order_id, answer.session, answer.ts_ns),
            (OrderId(7), SessionId(3), 99)
        );
        assert_eq!(
            (answer.last_qty, answer.exec_id),
            (Qty(0), 0),
            "not a fill: an ExecID of its own"
        );
        // Named with its OrderID too: only if it is this order's.
        assert!(f.status_of(&unknown("A", 1, 7)).is_some());
        assert!(f.status_of(&unknown("A", 1, 8)).is_none());
        // Another account's request never sees it.
        assert!(f.status_of(&unknown("A", 2, 0)).is_none());
        // A cancelled order is known by its own ClOrdID and by the cancel request's.
        f.note(&report(EventKind::Canceled, "C2", "C1"));
        for id in ["C1", "C2"] {
            let e = f.status_of(&unknown(id, 1, 0)).unwrap();
            assert_eq!(e.status, b'4');
            let answer = e.status_event(&unknown(id, 1, 0));
            assert_eq!(
                (answer.kind, answer.cl_ord_id),
                (EventKind::Canceled, cl(id))
            );
        }
        // Working states are not remembered.
        f.note(&report(EventKind::PartialFill, "P", ""));
        assert!(f.get(&cl("P")).is_none());
    }

    #[test]
    fn the_oldest_ended_orders_are_forgotten_first() {
        let mut f = Finished::new(2);
        for id in ["A", "B", "C", "D", "E"] {
            f.note(&report(EventKind::Expired, id, ""));
        }
        assert!(f.get(&cl("A")).is_none());
        for id in ["B", "C", "D", "E"] {
            assert_eq!(f.get(&cl(id)).map(|e| e.status), Some(b'C'), "{id}");
        }
    }

    #[test]
    fn a_sessions_ended_orders_outlive_its_connection() {
        let slot = FinishedSlot::default();
        let mut first = slot.take();
        first.note(&report(EventKind::Fill, "A", ""));
        // A second connection of the session, refused while the first runs, ends first.
        let refused = slot.take();
        assert!(refused.is_empty());
        slot.give_back(refused);
        slot.give_back(first);
        // An empty table never replaces a kept one.
        slot.give_back(Finished::new(FINISHED_REMEMBERED));
        let next = slot.take();
        assert!(next.get(&cl("A")).is_some());
    }

    #[test]
    fn requests_are_answered_in_the_order_submitted() {
        let mut u = Unanswered::default();
        assert_eq!(u.oldest(), None);
        for seq in [5, 6, 9] {
            u.submitted(seq);
        }
        assert_eq!(u.oldest(), Some(5));
        u.answered(0);
        assert_eq!(u.oldest(), Some(5), "nothing answered yet");
        // The core counting a request answered after its reports went out wakes the
        // connection to store its number.
        assert!(!u.any_answered(0));
        assert!(u.any_answered(1) && u.any_answered(2));
        u.answered(2);
        assert_eq!(u.oldest(), Some(9), "the first two are answered");
        u.submitted(12);
        u.answered(3);
        assert_eq!(u.oldest(), Some(12));
        u.answered(4);
        assert_eq!(u.oldest(), None);
        // A count read before an earlier drain never takes back what was answered.
        u.answered(1);
        assert_eq!(u.oldest(), None);
    }

    #[test]
    fn after_a_sequence_reset_only_the_new_sequences_numbers_are_named() {
        let mut u = Unanswered::default();
        for seq in [57, 58] {
            u.submitted(seq);
        }
        u.forget_numbers();
        assert_eq!(u.oldest(), None);
        // The new sequence's next request; the two old ones are answered first.
        u.submitted(2);
        assert_eq!(u.oldest(), Some(2));
        u.answered(2);
        assert_eq!(u.oldest(), Some(2), "only the old requests are answered");
        u.answered(3);
        assert_eq!(u.oldest(), None);
    }

    #[test]
    fn business_reject_layout() {
        let m = message("8", 4, &[(11, "c")]);
        let mut d = Decoder::new();
        let msg = d.decode(&m).unwrap();
        let r = BusinessReject::of(
            4,
            &msg,
            UNSUPPORTED_MESSAGE_TYPE,
            "unsupported message type",
        );
        let mut enc = Encoder::new();
        enc.start(b"FIX.4.4", b"j");
        r.encode_body(&mut enc);
        assert_eq!(
            enc.body(),
            b"35=j\x0145=4\x01372=8\x01379=c\x01380=3\x0158=unsupported message type\x01"
        );
    }
}
