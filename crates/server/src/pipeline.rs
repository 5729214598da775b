//! The order pipeline (DESIGN.md §3): socket tasks → one bounded lock-free ingress queue → the
//! core thread, which owns the [`Core`] (every book and all risk state: a single writer, no
//! locks) → one bounded lock-free egress queue per session → the session's socket task.
//!
//! ```text
//!  socket task ──push──▶ ingress ArrayQueue<Ingress> ──pop──▶ core thread (std::thread)
//!   (decode, validate;    (full: the request is answered     Core::process → events
//!    unpark if parked)     "server busy" at once)                 │ route by session slot
//!                                                                 ▼
//!  socket task ◀─wake── egress ArrayQueue<Outbound> per session ◀─push (full: slow consumer)
//! ```
//!
//! Rules that keep the core thread fast and the system honest:
//!
//! - Everything crossing a queue is a small fixed-size value ([`Command`], [`Event`]); the
//!   queues, the routing table and the per-command scratch are allocated before the first order.
//!   The core thread takes no lock, allocates nothing and makes no system call per order
//!   (`tests::the_core_loop_does_not_allocate_per_order` counts). Waking a session's task is
//!   one atomic swap plus the runtime's wake of that task, once per command per session.
//! - The core thread busy-polls; after `idle_spin` without work it parks, and a producer that
//!   finds it parked unparks it after its push: the wake-up system call is on the producer's
//!   side, never on the core thread's path.
//! - [`Threading::Shared`] runs the same loop as a task on the runtime's one worker thread,
//!   beside the socket tasks: a hand-off is then a task wake-up on the same thread (no system
//!   call, no context switch), which is what a machine with few CPUs, or one shared with its
//!   clients, needs. Still a single writer: only that task touches the [`Core`].
//! - A full ingress queue is back-pressure: the socket task answers the request at once with
//!   a "server busy" reject and keeps nothing. A full egress queue means the session does not
//!   keep up: the core thread never waits for it; it marks the session overflowed and drops its
//!   further reports (the orders keep their state in the books), and the session's task logs it
//!   out ("slow consumer") and disconnects it.
//! - Session slots ([`SessionId`]): each configured FIX session has its own slot for good (its
//!   index in the config), so the orders it entered stay addressable by ClOrdID across
//!   reconnects and their later reports (a fill of a GTC order) reach the session's next
//!   connection. Slots above the reserved ones are handed out per connection
//!   ([`Pipeline::alloc_slot`], for connections that are not configured sessions) and come
//!   back only after the core thread has processed the connection's close. A connection opens
//!   its slot's route when it logs on ([`Ingress::Open`]) and closes it when it ends
//!   ([`Ingress::Close`], which runs cancel-on-disconnect); the transport waits for the close
//!   to be queued before the session can connect again, so the two never cross. The core
//!   thread delivers an event only if the connection in its slot trades for the event's
//!   account.
//! - Operator commands (kill switch, halt, mark, limits, pause) reach the core thread through a
//!   small queue of their own, so a flood of orders cannot delay a kill switch.
//! - Timers (option expiry and listing, end of the trading day) run from the loop's clock
//!   check: one clock read per loop, one comparison per timer.

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use crate::journal_queue::{journal_control, CoreJournal, ServerControl};
use arc_swap::ArcSwap;
use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use portcullis_engine::{Core, Instruments, OrderRef};
use portcullis_risk::AccountLimits;
use portcullis_types::{
    AccountId, ClOrdId, Command, Event, EventKind, InstrumentId, InstrumentStatus, OrdType,
    OrderId, Price, Qty, RejectReason, SessionId, Side, TimeInForce, TradeId,
};

/// Commands taken from the ingress queue before the loop looks at its clock, its timers and
/// the operator queue again: bounds how late a kill switch or a timer can be under a flood.
const BATCH: usize = 256;
/// How long a parked core thread sleeps before it checks its timers anyway.
const PARK_TICK: Duration = Duration::from_millis(50);
/// How often the instrument table is rolled (expiries, new option series).
const ROLL_EVERY_NS: i64 = 1_000_000_000;
/// Operator commands waiting at once.
const CONTROL_CAPACITY: usize = 64;
const NS_PER_DAY: i64 = 86_400_000_000_000;

/// Wall-clock time in ns since the Unix epoch (a vDSO read on Linux, not a system call).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

// ---------------------------------------------------------------------------------------------
// What crosses the queues

/// An OrderStatusRequest(H), answered by the core thread from the books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRequest {
    /// The asking session.
    pub session: SessionId,
    /// Its account.
    pub account: AccountId,
    /// The order, by OrderID or by the session's ClOrdID.
    pub order: OrderRef,
    /// The ClOrdID the request named (echoed when the order is unknown).
    pub cl_ord_id: ClOrdId,
    /// The instrument the request named.
    pub instrument: InstrumentId,
    /// The side the request named.
    pub side: Side,
}

/// The most orders one listing of open orders returns ([`OpenOrdersRequest`]).
pub const MAX_LISTED_ORDERS: usize = 10_000;

/// A listing of an account's working orders (the WebSocket API's `openOrders.status`). The
/// core thread leaves the list in `reply`, then answers with one `Outbound::Status` to the
/// asking session, which then reads it.
#[derive(Debug)]
pub struct OpenOrdersRequest {
    /// The asking session.
    pub session: SessionId,
    /// Its account.
    pub account: AccountId,
    /// Only this instrument's, if given.
    pub instrument: Option<InstrumentId>,
    /// Where the list goes.
    pub reply: Arc<OpenOrdersReply>,
}

/// The answer to an [`OpenOrdersRequest`]: the working orders, or `None` if there are more
/// than [`MAX_LISTED_ORDERS`]. Set once by the core thread before its status answer.
#[derive(Debug, Default)]
pub struct OpenOrdersReply(OnceLock<Option<Vec<portcullis_engine::OrderSnapshot>>>);

impl OpenOrdersReply {
    /// The list, once the core thread's answer has arrived.
    pub fn get(&self) -> Option<&Option<Vec<portcullis_engine::OrderSnapshot>>> {
        self.0.get()
    }
}

/// A listing of an account's net positions (FIX RequestForPositions, the WebSocket API's
/// `account.position`). Answered like an [`OpenOrdersRequest`]:
/// the list in `reply`, then one `Outbound::Status` to the asking session.
#[derive(Debug)]
pub struct PositionsRequest {
    /// The asking session.
    pub session: SessionId,
    /// Its account.
    pub account: AccountId,
    /// Only this instrument's, if given.
    pub instrument: Option<InstrumentId>,
    /// Where the list goes.
    pub reply: Arc<PositionsReply>,
}

/// The answer to a [`PositionsRequest`]: the instruments the account is not flat in. Set once
/// by the core thread before its status answer.
#[derive(Debug, Default)]
pub struct PositionsReply(OnceLock<Vec<portcullis_engine::Position>>);

impl PositionsReply {
    /// The list, once the core thread's answer has arrived.
    pub fn get(&self) -> Option<&[portcullis_engine::Position]> {
        self.0.get().map(Vec::as_slice)
    }
}

/// A listing of a book's best levels (the WebSocket API's `depth`). Answered like a
/// [`PositionsRequest`]: the levels in `reply`, then one `Outbound::Status` to the asking
/// session.
#[derive(Debug)]
pub struct DepthRequest {
    /// The asking session.
    pub session: SessionId,
    /// Its account (named in the status answer).
    pub account: AccountId,
    /// The book.
    pub instrument: InstrumentId,
    /// Levels a side, at most.
    pub levels: usize,
    /// Where the levels go.
    pub reply: Arc<DepthReply>,
}

/// The answer to a [`DepthRequest`]. Set once by the core thread before its status answer.
#[derive(Debug, Default)]
pub struct DepthReply(OnceLock<portcullis_engine::Depth>);

impl DepthReply {
    /// The levels, once the core thread's answer has arrived.
    pub fn get(&self) -> Option<&portcullis_engine::Depth> {
        self.0.get()
    }
}

/// One entry of the ingress queue.
#[derive(Debug)]
pub enum Ingress {
    /// A command for the core.
    Cmd(Command),
    /// An order status request.
    Status(StatusRequest),
    /// A listing of open orders.
    OpenOrders(OpenOrdersRequest),
    /// A listing of positions.
    Positions(PositionsRequest),
    /// A listing of a book's best levels.
    Depth(DepthRequest),
    /// A connection took a session slot: route the slot's events to it.
    Open(Arc<Conn>),
    /// The connection ended: cancel-on-disconnect, forget its route, free a per-connection
    /// slot. Ignored if the slot has another connection by now.
    Close(Arc<Conn>),
}

/// One entry of a session's egress queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// An execution event.
    Event(Event),
    /// The answer to an OrderStatusRequest: the order's state (kind `New` or `PartialFill`),
    /// or kind `Rejected(UnknownOrder)` when it is not a working order of the account.
    Status(Event),
}

/// The shared end of one connection's egress: the core thread pushes and wakes, the socket task
/// pops.
#[derive(Debug)]
pub struct Conn {
    slot: SessionId,
    accounts: Box<[AccountId]>,
    cancel_on_disconnect: bool,
    egress: ArrayQueue<Outbound>,
    /// The reports parked for the slot while it had no connection (configured sessions only):
    /// read before `egress`, which only gets reports made after this connection opened.
    parked: Option<Arc<Parked>>,
    waker: AtomicWaker,
    overflowed: AtomicBool,
    /// Set by the core thread when the risk checks mark the session for sustained throttle
    /// abuse: its task disconnects it.
    abusive: AtomicBool,
    /// Requests of this connection processed so far, counted once every report of each is in
    /// `egress` (under journal `fsync = "always"`: once they are durable and delivered).
    answered: AtomicU64,
}

impl Conn {
    /// The capacity of the report queue.
    pub fn capacity(&self) -> usize {
        self.egress.capacity()
    }

    /// Why the connection must end, once it must: it overflowed its report queue ("slow
    /// consumer") or kept sending while throttled ("order rate limit exceeded").
    pub fn kicked(&self) -> Option<&'static str> {
        if self.overflowed() {
            Some("slow consumer")
        } else if self.abusive.load(Ordering::Acquire) {
            Some("order rate limit exceeded")
        } else {
            None
        }
    }

    /// The connection's session slot.
    pub fn slot(&self) -> SessionId {
        self.slot
    }

    /// How many of the connection's requests (orders, cancels, replaces, mass cancels,
    /// status requests, in the order submitted) have all their reports in the queue: read it
    /// before draining the queue, and after draining it those requests are answered.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Acquire)
    }

    /// One more request is answered (by its only writer: the core thread, or the journal
    /// thread that delivers the reports under `fsync = "always"`), after its reports.
    pub(crate) fn note_answered(&self) {
        self.answered
            .store(self.answered.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    /// The next report for the connection: the ones parked while the session was away
    /// first, then its own.
    pub fn pop(&self) -> Option<Outbound> {
        if let Some(p) = &self.parked {
            if let Some(item) = p.pop(self.slot) {
                return Some(item);
            }
        }
        self.egress.pop()
    }

    fn parked_waiting(&self) -> bool {
        self.parked.as_ref().is_some_and(|p| p.waiting(self.slot))
    }

    /// Reports waiting (sampled by the metrics at scrape time).
    pub fn queued(&self) -> usize {
        self.egress.len()
    }

    /// True if a report is waiting.
    pub fn has_output(&self) -> bool {
        !self.egress.is_empty() || self.parked_waiting()
    }

    /// True once a report had to be dropped because the queue was full.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Ready when there is something to send (or the connection overflowed); otherwise
    /// registers the task to be woken by the core thread.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Register first, then look: a push between the two still finds the waker.
        self.waker.register(cx.waker());
        if !self.egress.is_empty() || self.parked_waiting() || self.kicked().is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn trades_for(&self, account: AccountId) -> bool {
        self.accounts.contains(&account)
    }

    /// Pushes a report the journal thread released (`fsync = "always"`), as [`deliver`] does:
    /// only if the connection trades for its account; a full queue overflows the connection.
    /// True if the task should be woken.
    pub(crate) fn deliver_now(&self, item: Outbound) -> bool {
        let (Outbound::Event(e) | Outbound::Status(e)) = item;
        if !self.trades_for(e.account) || self.overflowed.load(Ordering::Relaxed) {
            return false;
        }
        if self.egress.push(item).is_err() {
            self.overflowed.store(true, Ordering::Release);
        }
        true
    }

    /// Wakes the connection's task.
    pub(crate) fn wake(&self) {
        self.waker.wake();
    }
}

// ---------------------------------------------------------------------------------------------
// The instrument directory

/// One instrument as the socket tasks need it: its symbol and decimal scales.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The symbol.
    pub symbol: Box<str>,
    /// Decimal places of prices.
    pub price_scale: u8,
    /// Decimal places of quantities.
    pub qty_scale: u8,
    /// The instrument's trading rules (tick, lot, quantity bounds, status) when the snapshot
    /// was taken: the WebSocket API's `exchangeInfo` filters.
    pub rules: portcullis_types::InstrumentRules,
    /// Its orders are routed to a venue: accepted (or refused) only when the venue answers.
    pub routed: bool,
}

impl DirEntry {
    /// The base asset (the underlying) and the quote currency: a spot pair's quote, `USD` for
    /// derivatives (premiums and futures prices are quoted in USD).
    pub fn assets(&self) -> (&str, &str) {
        let mut parts = self.symbol.split('-');
        let base = parts.next().unwrap_or(&self.symbol);
        match self.rules.kind {
            portcullis_types::InstrumentKind::Spot { .. } => (base, parts.next().unwrap_or("USD")),
            _ => (base, "USD"),
        }
    }
}

/// A read-only snapshot of the instrument table for the socket tasks: symbol → id and the
/// scales to parse prices and quantities exactly. The core thread publishes a new snapshot when
/// it lists instruments; readers load it without a lock.
#[derive(Debug, Default)]
pub struct Directory {
    by_symbol: HashMap<Box<[u8]>, InstrumentId>,
    entries: Vec<DirEntry>,
    generation: u64,
    /// The global kill switch is on: nothing trades (FIX TradingSessionStatus "halted").
    halted: bool,
}

/// Numbers every snapshot, so a cache built from one can tell it has been replaced (an
/// address could be reused by a later snapshot).
static DIRECTORY_GENERATION: AtomicU64 = AtomicU64::new(1);

impl Directory {
    /// The snapshot of an instrument table (no instrument routed to a venue).
    #[cfg(test)]
    pub fn of(instruments: &Instruments) -> Self {
        Self::with_routes(instruments, |_| false)
    }

    /// The snapshot of the core's instrument table, with which instruments it routes and
    /// whether the global kill switch is on.
    pub fn of_core(core: &Core) -> Self {
        Self {
            halted: core.risk().kill_switch(None),
            ..Self::with_routes(core.instruments(), |i| core.route_of(i).is_some())
        }
    }

    fn with_routes(instruments: &Instruments, routed: impl Fn(InstrumentId) -> bool) -> Self {
        let mut d = Directory {
            by_symbol: HashMap::with_capacity(instruments.len()),
            entries: Vec::with_capacity(instruments.len()),
            generation: DIRECTORY_GENERATION.fetch_add(1, Ordering::Relaxed),
            halted: false,
        };
        for i in instruments.iter() {
            let r = i.rules();
            d.by_symbol.insert(
                i.symbol().as_bytes().into(),
                InstrumentId(d.entries.len() as u32),
            );
            debug_assert_eq!(r.id.0 as usize, d.entries.len());
            d.entries.push(DirEntry {
                symbol: i.symbol().into(),
                price_scale: r.price_scale,
                qty_scale: r.qty_scale,
                rules: *r,
                routed: routed(r.id),
            });
        }
        d
    }

    /// The instrument of a symbol (exact, canonical spelling).
    pub fn lookup(&self, symbol: &[u8]) -> Option<(InstrumentId, &DirEntry)> {
        let id = *self.by_symbol.get(symbol)?;
        Some((id, &self.entries[id.0 as usize]))
    }

    /// An instrument by id.
    pub fn get(&self, id: InstrumentId) -> Option<&DirEntry> {
        self.entries.get(id.0 as usize)
    }

    /// Number of instruments.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// This snapshot's number: a later snapshot has a larger one (0 for an empty default).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// True while the global kill switch is on (nothing trades).
    pub fn halted(&self) -> bool {
        self.halted
    }
}

// ---------------------------------------------------------------------------------------------
// Operator commands

/// An operator command for the core thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAction {
    /// Kill switch of one account (or of everything) on or off.
    Kill {
        /// The account; `None` = global.
        account: Option<String>,
        /// On (cancel resting orders, refuse new ones) or off.
        on: bool,
    },
    /// Halt or resume trading in an instrument.
    Halt {
        /// The symbol.
        symbol: String,
        /// True to halt, false to resume.
        halted: bool,
    },
    /// Set the reference price (mark) of an instrument.
    Mark {
        /// The symbol.
        symbol: String,
        /// The price, decimal text at the instrument's price scale.
        price: String,
    },
    /// Change some of an account's risk limits.
    Limits {
        /// The account.
        account: String,
        /// `key = value` pairs, keys as in `[risk.defaults]`.
        set: Vec<(String, String)>,
    },
    /// Stop taking commands from the ingress queue (a maintenance pause): requests queue up
    /// to the ingress capacity and are refused "server busy" beyond it.
    Pause,
    /// Take commands again after a pause.
    Resume,
    /// Read what operators see, changing nothing (so nothing is journaled): the kill
    /// switches, each account's limits, each instrument's status and reference price, as a
    /// JSON object in the answer (the admin API's reads).
    Describe,
}

/// What an operator command did: a message for the operator, or why it was refused (bad input).
pub type ControlResult = Result<String, String>;

/// An operator command with the channel of its answer.
#[derive(Debug)]
pub struct ControlRequest {
    /// The command.
    pub action: ControlAction,
    /// Where the core thread answers.
    pub reply: tokio::sync::oneshot::Sender<ControlResult>,
}

// ---------------------------------------------------------------------------------------------
// Event counts for the metrics

/// The label values of [`EventCounts::kind`]: one per [`EventKind`].
pub const EVENT_KIND_NAMES: [&str; 17] = [
    "new",
    "partial_fill",
    "fill",
    "canceled",
    "replaced",
    "rejected",
    "expired",
    "cancel_rejected",
    "mass_cancel_done",
    "triggered",
    "activated",
    "route_new",
    "route_cancel",
    "route_replace",
    "pending_new",
    "pending_cancel",
    "pending_replace",
];

/// Reject reasons counted (more than [`RejectReason`] has, so a new reason never indexes out).
const REJECT_SLOTS: usize = 32;

/// The core thread's events by kind and its rejects by reason, for the metrics (which read
/// them at scrape time). The core thread is the only writer, so a count is a relaxed load and
/// store — no locked read-modify-write, no fence — on a cache line no other thread writes.
#[derive(Debug)]
pub struct EventCounts {
    kinds: [AtomicU64; EVENT_KIND_NAMES.len()],
    rejects: [AtomicU64; REJECT_SLOTS],
    /// The ExecID and order of the last event counted.
    last_exec_id: AtomicU64,
    last_order_id: AtomicU64,
}

impl EventCounts {
    fn new() -> Self {
        Self {
            kinds: [const { AtomicU64::new(0) }; EVENT_KIND_NAMES.len()],
            rejects: [const { AtomicU64::new(0) }; REJECT_SLOTS],
            last_exec_id: AtomicU64::new(0),
            last_order_id: AtomicU64::new(0),
        }
    }

    /// Counts one event delivered, but not the second view of one execution (see
    /// [`Event::is_second_view_of`]; core thread only).
    #[inline]
    fn note_event(&self, e: &Event) {
        let second = e.exec_id != 0
            && e.exec_id == self.last_exec_id.load(Ordering::Relaxed)
            && e.order_id.0 == self.last_order_id.load(Ordering::Relaxed);
        self.last_exec_id.store(e.exec_id, Ordering::Relaxed);
        self.last_order_id.store(e.order_id.0, Ordering::Relaxed);
        if !second {
            self.note(e.kind);
        }
    }

    /// Counts one event (core thread only: one writer).
    #[inline]
    fn note(&self, kind: EventKind) {
        fn bump(c: &AtomicU64) {
            c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
        let (k, reason) = match kind {
            EventKind::New => (0, None),
            EventKind::PartialFill => (1, None),
            EventKind::Fill => (2, None),
            EventKind::Canceled => (3, None),
            EventKind::Replaced => (4, None),
            EventKind::Rejected(r) => (5, Some(r)),
            EventKind::Expired => (6, None),
            EventKind::CancelRejected { reason, .. } => (7, Some(reason)),
            EventKind::MassCancelDone { .. } => (8, None),
            EventKind::Triggered => (9, None),
            EventKind::Activated => (10, None),
            EventKind::Route(portcullis_types::RouteRequest::New) => (11, None),
            EventKind::Route(portcullis_types::RouteRequest::Cancel) => (12, None),
            EventKind::Route(portcullis_types::RouteRequest::Replace) => (13, None),
            EventKind::Pending(portcullis_types::RouteRequest::New) => (14, None),
            EventKind::Pending(portcullis_types::RouteRequest::Cancel) => (15, None),
            EventKind::Pending(portcullis_types::RouteRequest::Replace) => (16, None),
        };
        bump(&self.kinds[k]);
        if let Some(c) = reason.and_then(|r| self.rejects.get(r as usize)) {
            bump(c);
        }
    }

    /// Events of kind `i` (an index into [`EVENT_KIND_NAMES`]).
    pub fn kind(&self, i: usize) -> u64 {
        self.kinds.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Rejects (of orders and of cancels) for the reason `i` (`RejectReason as usize`).
    pub fn reject(&self, i: usize) -> u64 {
        self.rejects.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

// ---------------------------------------------------------------------------------------------
// The shared part

/// Where the core loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threading {
    /// Its own OS thread that busy-polls for `idle_spin`, then parks (DESIGN.md §3): the
    /// lowest latency when it has a CPU to itself.
    #[default]
    Dedicated,
    /// A task on the async runtime's single worker thread, which also runs every socket task:
    /// no thread hand-off per order (see the module doc).
    Shared,
}

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Where the core loop runs.
    pub threading: Threading,
    /// Ingress queue capacity.
    pub ingress_capacity: usize,
    /// Per-session egress queue capacity.
    pub egress_capacity: usize,
    /// Busy-poll time before parking.
    pub idle_spin: Duration,
    /// CPU to pin the core thread to.
    pub pin_cpu: Option<usize>,
    /// End of the trading day, seconds after midnight UTC.
    pub trading_day_end_secs: u32,
    /// Session slots (the risk engine's `max_sessions`).
    pub max_sessions: u32,
    /// Slots `0..reserved_slots` belong to the configured sessions; the others are handed out
    /// per connection.
    pub reserved_slots: u32,
}

/// Reports parked per configured session slot while the session has no connection — a fill of
/// a resting GTC order, the cancels of cancel-on-disconnect — handed to its next connection
/// before anything newer (FIX venues deliver what happened meanwhile at the next logon). One
/// bounded lock-free queue per configured session, allocated at start; a full one drops the
/// newest report and counts it (the order's state stays queryable with OrderStatusRequest).
/// Per-connection slots (WebSocket) park nothing: their next connection is another client.
#[derive(Debug)]
pub struct Parked {
    queues: Box<[ArrayQueue<Outbound>]>,
    dropped: AtomicU64,
}

/// Reports one configured session can have parked.
pub const PARKED_CAPACITY: usize = 4096;

impl Parked {
    /// Queues for `slots` configured sessions.
    pub fn new(slots: u32) -> Arc<Self> {
        Arc::new(Self {
            queues: (0..slots)
                .map(|_| ArrayQueue::new(PARKED_CAPACITY))
                .collect(),
            dropped: AtomicU64::new(0),
        })
    }

    /// Parks an execution event of a slot without a connection (status answers are not
    /// parked: nobody asked any more).
    pub(crate) fn park(&self, item: Outbound) {
        let Outbound::Event(e) = item else { return };
        if let Some(q) = self.queues.get(e.session.0 as usize) {
            if q.push(item).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn pop(&self, slot: SessionId) -> Option<Outbound> {
        self.queues.get(slot.0 as usize)?.pop()
    }

    /// True if reports are parked for `slot`.
    pub fn waiting(&self, slot: SessionId) -> bool {
        self.queues
            .get(slot.0 as usize)
            .is_some_and(|q| !q.is_empty())
    }

    /// Reports parked now, over every slot.
    pub fn len(&self) -> usize {
        self.queues.iter().map(ArrayQueue::len).sum()
    }

    /// Reports dropped because a session's parking queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What the socket tasks and the core thread share.
pub struct Pipeline {
    ingress: ArrayQueue<Ingress>,
    control: ArrayQueue<ControlRequest>,
    free_slots: ArrayQueue<u32>,
    /// True while the core thread is parked or about to park; a producer that swaps it to
    /// false unparks the thread. Padded: every producer reads it after every push.
    sleeping: CachePadded<AtomicBool>,
    stop: AtomicBool,
    core_thread: OnceLock<Thread>,
    /// The core task's waker ([`Threading::Shared`]).
    core_task: AtomicWaker,
    directory: ArcSwap<Directory>,
    accounts: Vec<Box<str>>,
    account_ids: HashMap<Box<str>, AccountId>,
    /// Each account's own kill switch, as the core thread last set it (for the socket tasks'
    /// views; the checks themselves are the core's).
    account_kill: Box<[AtomicBool]>,
    egress_capacity: usize,
    reserved_slots: u32,
    /// Requests refused because the ingress queue was full.
    busy: AtomicU64,
    /// The core thread's events by kind and rejects by reason, for the metrics.
    events: CachePadded<EventCounts>,
    /// Reports for configured sessions without a connection.
    parked: Arc<Parked>,
    /// When the trading day ends (seconds after midnight UTC), for GTD expiry dates.
    trading_day_end_secs: u32,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("ingress", &self.ingress.len())
            .field("free_slots", &self.free_slots.len())
            .field("accounts", &self.accounts.len())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// The shared part for `accounts` (`AccountId(i)` = `accounts[i]`) and the instruments of
    /// `core`.
    pub fn new(config: &PipelineConfig, accounts: &[String], core: &Core) -> Arc<Self> {
        let free_slots = ArrayQueue::new(config.max_sessions.max(1) as usize);
        for s in config.reserved_slots..config.max_sessions {
            let _ = free_slots.push(s);
        }
        Arc::new(Pipeline {
            ingress: ArrayQueue::new(config.ingress_capacity.max(1)),
            control: ArrayQueue::new(CONTROL_CAPACITY),
            free_slots,
            sleeping: CachePadded::new(AtomicBool::new(false)),
            stop: AtomicBool::new(false),
            core_thread: OnceLock::new(),
            core_task: AtomicWaker::new(),
            directory: ArcSwap::from_pointee(Directory::of_core(core)),
            accounts: accounts.iter().map(|a| a.as_str().into()).collect(),
            account_ids: accounts
                .iter()
                .enumerate()
                .map(|(i, a)| (a.as_str().into(), AccountId(i as u32)))
                .collect(),
            account_kill: (0..accounts.len() as u32)
                .map(|a| AtomicBool::new(core.risk().kill_switch(Some(AccountId(a)))))
                .collect(),
            egress_capacity: config.egress_capacity.max(1),
            reserved_slots: config.reserved_slots,
            busy: AtomicU64::new(0),
            events: CachePadded::new(EventCounts::new()),
            parked: Parked::new(config.reserved_slots),
            trading_day_end_secs: config.trading_day_end_secs,
        })
    }

    /// The reports parked for configured sessions without a connection.
    pub fn parked(&self) -> &Arc<Parked> {
        &self.parked
    }

    /// Pushes a request for the core thread; gives it back if the queue is full (the caller
    /// answers "server busy"). Wakes the core thread if it is parked.
    // The request comes back by value, as from `ArrayQueue::push`: boxing it would allocate per
    // order.
    #[allow(clippy::result_large_err)]
    pub fn submit(&self, item: Ingress) -> Result<(), Ingress> {
        match self.ingress.push(item) {
            Ok(()) => {
                self.wake_core();
                Ok(())
            }
            Err(item) => {
                self.busy.fetch_add(1, Ordering::Relaxed);
                Err(item)
            }
        }
    }

    /// Queues an operator command; gives it back if too many are waiting.
    pub fn control(&self, req: ControlRequest) -> Result<(), ControlRequest> {
        self.control.push(req)?;
        self.wake_core();
        Ok(())
    }

    fn wake_core(&self) {
        // Pairs with the fence in `CoreLoop::park`: either the core thread sees our push before
        // it parks, or we see its `sleeping` flag and unpark it.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            if let Some(t) = self.core_thread.get() {
                t.unpark();
            }
            self.core_task.wake();
        }
    }

    /// Takes a free per-connection session slot (above the reserved ones), for connections that
    /// are not configured sessions (the WebSocket API's).
    #[allow(dead_code)] // until the WebSocket API is wired in
    pub fn alloc_slot(&self) -> Option<SessionId> {
        self.free_slots.pop().map(SessionId)
    }

    /// Gives back a per-connection slot that was never opened on the core thread.
    #[allow(dead_code)] // until the WebSocket API is wired in
    pub fn release_unopened_slot(&self, slot: SessionId) {
        if slot.0 >= self.reserved_slots {
            let _ = self.free_slots.push(slot.0);
        }
    }

    /// A connection's egress for `slot`, routing the events of `accounts`.
    pub fn new_conn(
        &self,
        slot: SessionId,
        accounts: &[AccountId],
        cancel_on_disconnect: bool,
    ) -> Arc<Conn> {
        Arc::new(Conn {
            slot,
            accounts: accounts.into(),
            cancel_on_disconnect,
            egress: ArrayQueue::new(self.egress_capacity),
            parked: (slot.0 < self.reserved_slots).then(|| self.parked.clone()),
            waker: AtomicWaker::new(),
            overflowed: AtomicBool::new(false),
            abusive: AtomicBool::new(false),
            answered: AtomicU64::new(0),
        })
    }

    /// The core thread's event counts (read by the metrics).
    pub fn event_counts(&self) -> &EventCounts {
        &self.events
    }

    /// Requests waiting for the core thread.
    pub fn queued(&self) -> usize {
        self.ingress.len()
    }

    /// The current instrument directory.
    pub fn directory(&self) -> arc_swap::Guard<Arc<Directory>> {
        self.directory.load()
    }

    /// The current instrument directory, held as long as the caller needs (a list sent in
    /// fragments).
    pub fn directory_snapshot(&self) -> Arc<Directory> {
        self.directory.load_full()
    }

    /// The id of an account name.
    pub fn account_id(&self, name: &str) -> Option<AccountId> {
        self.account_ids.get(name).copied()
    }

    /// True while the account may not trade: its own kill switch or the global one is on.
    pub fn trading_halted(&self, account: AccountId) -> bool {
        self.directory().halted()
            || self
                .account_kill
                .get(account.0 as usize)
                .is_some_and(|k| k.load(Ordering::Relaxed))
    }

    /// Every account name, indexed by [`AccountId`].
    pub fn account_names(&self) -> &[Box<str>] {
        &self.accounts
    }

    /// When the trading day ends (seconds after midnight UTC).
    pub fn trading_day_end_secs(&self) -> u32 {
        self.trading_day_end_secs
    }

    /// Requests refused "server busy" so far.
    pub fn busy_count(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// True once [`Pipeline::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Asks the core thread to stop (after the current batch).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.sleeping.store(false, Ordering::Release);
        if let Some(t) = self.core_thread.get() {
            t.unpark();
        }
        self.core_task.wake();
    }

    /// True if the core has something to take (`paused`: operator commands only).
    fn work_waiting(&self, paused: bool) -> bool {
        !self.control.is_empty()
            || (!paused && !self.ingress.is_empty())
            || self.stop.load(Ordering::Acquire)
    }
}

/// The running core loop, to wait for after [`Pipeline::stop`].
#[derive(Debug)]
pub enum CoreHandle {
    /// [`Threading::Dedicated`].
    Thread(JoinHandle<()>),
    /// [`Threading::Shared`].
    Task(tokio::task::JoinHandle<()>),
}

impl CoreHandle {
    /// Waits for the loop to end; false if it panicked.
    pub async fn join(self) -> bool {
        match self {
            // The loop ends right after `stop`: a short block of this worker.
            CoreHandle::Thread(h) => h.join().is_ok(),
            CoreHandle::Task(h) => h.await.is_ok(),
        }
    }
}

/// Starts the core loop as `config.threading` says: its own thread, or a task on the current
/// runtime (which must then have one worker thread: see [`Threading::Shared`]).
pub fn start_core(
    core: Core,
    pipeline: Arc<Pipeline>,
    config: &PipelineConfig,
    journal: Option<CoreJournal>,
) -> std::io::Result<CoreHandle> {
    match config.threading {
        Threading::Dedicated => {
            spawn_core_journaled(core, pipeline, config, journal).map(CoreHandle::Thread)
        }
        Threading::Shared => {
            let mut lp = CoreLoop::new(core, pipeline, config);
            lp.journal = journal;
            Ok(CoreHandle::Task(tokio::spawn(lp.run_shared())))
        }
    }
}

/// Pins the calling thread (the `what` thread, for the log) to `cpu`, or warns that it could
/// not.
pub fn pin_this_thread(cpu: usize, what: &str) {
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        tracing::info!(cpu, "{what} thread pinned");
    } else {
        tracing::warn!(cpu, "could not pin the {what} thread to this CPU");
    }
}

/// Starts the core thread; it runs until [`Pipeline::stop`].
#[allow(dead_code)] // the benches run the core without a journal
pub fn spawn_core(
    core: Core,
    pipeline: Arc<Pipeline>,
    config: &PipelineConfig,
) -> std::io::Result<JoinHandle<()>> {
    spawn_core_journaled(core, pipeline, config, None)
}

/// [`spawn_core`] with the journal's handle: the core thread journals every command, event
/// and control change (see [`crate::journal_queue`]).
pub fn spawn_core_journaled(
    core: Core,
    pipeline: Arc<Pipeline>,
    config: &PipelineConfig,
    journal: Option<CoreJournal>,
) -> std::io::Result<JoinHandle<()>> {
    let pin = config.pin_cpu;
    let mut lp = CoreLoop::new(core, pipeline.clone(), config);
    lp.journal = journal;
    let handle = std::thread::Builder::new()
        .name("portcullis-core".into())
        .spawn(move || {
            if let Some(cpu) = pin {
                pin_this_thread(cpu, "core");
            }
            lp.run();
        })?;
    let _ = pipeline.core_thread.set(handle.thread().clone());
    // A producer may have pushed before the thread handle was published: wake it once.
    handle.thread().unpark();
    Ok(handle)
}

// ---------------------------------------------------------------------------------------------
// The core thread

/// The core thread's state: the [`Core`] and the routing table. Public so that the bench and
/// the tests can drive it step by step.
pub struct CoreLoop {
    core: Core,
    shared: Arc<Pipeline>,
    /// By slot: the connection its events go to.
    routes: Vec<Option<Arc<Conn>>>,
    /// Slots that got events during the current command (woken once each after it).
    dirty: Vec<u32>,
    dirty_flag: Vec<bool>,
    paused: bool,
    spin_ns: i64,
    next_roll_ns: i64,
    next_eod_ns: i64,
    eod_secs: u32,
    last_work_ns: i64,
    /// The journal, if the server journals (the benches and unit tests run without).
    journal: Option<CoreJournal>,
}

impl std::fmt::Debug for CoreLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreLoop")
            .field("paused", &self.paused)
            .finish_non_exhaustive()
    }
}

/// Delivers one item to the connection in its slot, if that connection trades for the
/// item's account. Never blocks: a full queue marks the connection overflowed.
fn deliver(
    counts: &EventCounts,
    parked: &Parked,
    routes: &[Option<Arc<Conn>>],
    dirty: &mut Vec<u32>,
    dirty_flag: &mut [bool],
    journal: Option<&mut CoreJournal>,
    item: Outbound,
) {
    let (Outbound::Event(e) | Outbound::Status(e)) = item;
    if let Outbound::Event(e) = &item {
        counts.note_event(e);
    }
    let s = e.session.0 as usize;
    let route = routes.get(s).and_then(Option::as_ref);
    // The journal records every event; under fsync = "always" it also delivers it, once
    // durable.
    if let Some(j) = journal {
        if j.output(item, route) {
            return;
        }
    }
    let Some(conn) = route else {
        parked.park(item);
        return;
    };
    if !conn.trades_for(e.account) || conn.overflowed.load(Ordering::Relaxed) {
        return;
    }
    if conn.egress.push(item).is_err() {
        conn.overflowed.store(true, Ordering::Release);
    }
    if !dirty_flag[s] {
        dirty_flag[s] = true;
        dirty.push(s as u32);
    }
}

/// Counts a request of `session`'s connection as answered, after its reports: at once, or
/// through the journal thread when that delivers the reports (once durable).
fn note_answered(
    routes: &[Option<Arc<Conn>>],
    journal: Option<&mut CoreJournal>,
    session: SessionId,
) {
    let Some(Some(conn)) = routes.get(session.0 as usize) else {
        return;
    };
    if let Some(j) = journal {
        if j.answered(conn) {
            return;
        }
    }
    conn.note_answered();
}

/// The next instant strictly after `now` that is `secs` after a UTC midnight.
fn next_time_of_day(now_ns: i64, secs: u32) -> i64 {
    let day = now_ns.div_euclid(NS_PER_DAY) * NS_PER_DAY;
    let t = day + i64::from(secs) * 1_000_000_000;
    if t > now_ns {
        t
    } else {
        t + NS_PER_DAY
    }
}

impl CoreLoop {
    /// The loop for `core`, sharing `shared` with the socket tasks.
    pub fn new(core: Core, shared: Arc<Pipeline>, config: &PipelineConfig) -> Self {
        let slots = config.max_sessions as usize;
        let now = now_ns();
        CoreLoop {
            core,
            shared,
            routes: vec![None; slots],
            dirty: Vec::with_capacity(slots),
            dirty_flag: vec![false; slots],
            paused: false,
            spin_ns: config.idle_spin.as_nanos().min(i64::MAX as u128) as i64,
            next_roll_ns: now + ROLL_EVERY_NS,
            next_eod_ns: next_time_of_day(now, config.trading_day_end_secs),
            eod_secs: config.trading_day_end_secs,
            last_work_ns: now,
            journal: None,
        }
    }

    /// The core (read only), for tests.
    #[cfg(test)]
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Journals through `journal` from now on, for tests.
    #[cfg(test)]
    pub(crate) fn set_journal(&mut self, journal: CoreJournal) {
        self.journal = Some(journal);
    }

    /// Runs until the pipeline is stopped.
    pub fn run(&mut self) {
        while !self.shared.stop.load(Ordering::Acquire) {
            let now = now_ns();
            if !self.step(now) {
                self.idle(now);
            }
        }
    }

    /// [`Threading::Shared`]: runs as a task until the pipeline is stopped. After a pass that
    /// left work queued it yields, so the socket tasks send what it produced and read on; idle,
    /// it sleeps until a producer wakes it or the timer tick.
    pub async fn run_shared(mut self) {
        let shared = self.shared.clone();
        let mut tick = tokio::time::interval(PARK_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !shared.stop.load(Ordering::Acquire) {
            if self.step(now_ns()) {
                if shared.work_waiting(self.paused) {
                    tokio::task::yield_now().await;
                }
                continue;
            }
            shared.sleeping.store(true, Ordering::Relaxed);
            // Pairs with the fence in `Pipeline::wake_core`, as in the dedicated loop.
            fence(Ordering::SeqCst);
            let paused = self.paused;
            std::future::poll_fn(|cx| {
                // Register, then look: a producer that cleared `sleeping` after the look wakes
                // the registered waker.
                shared.core_task.register(cx.waker());
                if !shared.sleeping.load(Ordering::Acquire)
                    || shared.work_waiting(paused)
                    || tick.poll_tick(cx).is_ready()
                {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            shared.sleeping.store(false, Ordering::Relaxed);
        }
    }

    /// One pass: operator commands, then up to [`BATCH`] ingress items, then the timers.
    /// Returns true if it did any work.
    pub fn step(&mut self, now: i64) -> bool {
        let mut worked = false;
        while let Some(req) = self.shared.control.pop() {
            // Journaled once it succeeded (a copy: operator commands are rare).
            let action = self.journal.is_some().then(|| req.action.clone());
            let result = self.control(req.action, now);
            if let (Ok(_), Some(action), Some(j)) = (&result, action, self.journal.as_mut()) {
                journal_control(j, &self.core, &self.shared, &action, now);
            }
            let _ = req.reply.send(result);
            worked = true;
        }
        // Before the commands: none may trade against an order whose time has passed.
        if self.core.next_expiry().is_some_and(|t| t <= now) {
            self.expire_orders(now);
            worked = true;
        }
        if !self.paused {
            // One command ahead: its table entries are prefetched while the one before is
            // processed (a burst's lookups in large tables then overlap instead of queueing).
            let mut next = self.shared.ingress.pop();
            for i in 0..BATCH {
                let Some(item) = next.take() else {
                    break;
                };
                if i + 1 < BATCH {
                    next = self.shared.ingress.pop();
                    if let Some(Ingress::Cmd(cmd)) = &next {
                        self.core.prefetch(cmd);
                    }
                }
                self.handle(item, now);
                worked = true;
            }
        }
        self.timers(now);
        if worked {
            self.last_work_ns = now;
        }
        worked
    }

    /// Nothing to do: spin a little longer, then park until a producer unparks us (or the
    /// timer tick).
    fn idle(&mut self, now: i64) {
        if now.saturating_sub(self.last_work_ns) < self.spin_ns {
            std::hint::spin_loop();
            return;
        }
        let shared = &*self.shared;
        shared.sleeping.store(true, Ordering::Relaxed);
        // Pairs with the fence in `Pipeline::wake_core` (see there).
        fence(Ordering::SeqCst);
        if !shared.work_waiting(self.paused) {
            std::thread::park_timeout(PARK_TICK);
        }
        shared.sleeping.store(false, Ordering::Relaxed);
        // Spin again after waking: the next command likely follows closely.
        self.last_work_ns = now_ns();
    }

    /// Processes one ingress item at `now`.
    pub fn handle(&mut self, item: Ingress, now: i64) {
        let CoreLoop {
            core,
            routes,
            dirty,
            dirty_flag,
            shared,
            journal,
            ..
        } = self;
        let counts: &EventCounts = &shared.events;
        let parked: &Parked = &shared.parked;
        match item {
            Ingress::Cmd(cmd) => {
                if let Some(j) = journal.as_mut() {
                    j.command(&cmd, now);
                }
                let from = match &cmd {
                    Command::New(o) => Some(o.session),
                    Command::Cancel(c) => Some(c.session),
                    Command::Replace(r) => Some(r.session),
                    // The venue connector counts its reports answered, as a session its requests.
                    Command::Venue(r) => Some(r.venue),
                    Command::VenueSync(venue) => Some(*venue),
                    Command::MassCancel(_) | Command::SessionClosed(_) => None,
                };
                let requester = match &cmd {
                    Command::MassCancel(m) => Some(m.session),
                    _ => from,
                };
                core.process(cmd, now, &mut |e| {
                    deliver(
                        counts,
                        parked,
                        routes,
                        dirty,
                        dirty_flag,
                        journal.as_mut(),
                        Outbound::Event(e),
                    )
                });
                if let Some(s) = requester {
                    note_answered(routes, journal.as_mut(), s);
                }
                // Sustained throttle abuse ends the session (its task disconnects it).
                if let Some(s) = from.filter(|&s| core.risk().throttle_abuse(s)) {
                    if let Some(Some(conn)) = routes.get(s.0 as usize) {
                        if !conn.abusive.swap(true, Ordering::AcqRel) {
                            conn.waker.wake();
                        }
                    }
                }
            }
            // Answered with one status report to the asking session.
            Ingress::Status(_)
            | Ingress::OpenOrders(_)
            | Ingress::Positions(_)
            | Ingress::Depth(_) => {
                let ev = match item {
                    Ingress::Status(r) => match core.order_status(r.session, r.account, r.order) {
                        Some(snap) => snap.to_event(r.session, now),
                        None => unknown_order(&r, now),
                    },
                    Ingress::OpenOrders(r) => {
                        // A rare, rate-weighted request that allocates its list (bounded by
                        // MAX_LISTED_ORDERS), never an order's path; the report says it is set.
                        let _ = r.reply.0.set(core.open_orders(
                            r.account,
                            r.instrument,
                            MAX_LISTED_ORDERS,
                        ));
                        listing_ready(r.session, r.account, r.instrument, now)
                    }
                    Ingress::Positions(r) => {
                        // Rare and rate-weighted like the listing above; bounded by the
                        // instrument table.
                        let _ = r.reply.0.set(core.positions(r.account, r.instrument));
                        listing_ready(r.session, r.account, r.instrument, now)
                    }
                    Ingress::Depth(r) => {
                        // Rare and rate-weighted like the listings above; bounded by the levels
                        // asked for and the orders it may walk (MAX_DEPTH_ORDERS).
                        let _ = r.reply.0.set(core.depth(r.instrument, r.levels));
                        listing_ready(r.session, r.account, Some(r.instrument), now)
                    }
                    _ => return,
                };
                let session = ev.session;
                deliver(
                    counts,
                    parked,
                    routes,
                    dirty,
                    dirty_flag,
                    journal.as_mut(),
                    Outbound::Status(ev),
                );
                note_answered(routes, journal.as_mut(), session);
            }
            Ingress::Open(conn) => {
                let s = conn.slot.0 as usize;
                core.set_cancel_on_disconnect(conn.slot, conn.cancel_on_disconnect);
                if let Some(j) = journal.as_mut() {
                    let open = ServerControl::Open(conn.slot, conn.cancel_on_disconnect);
                    j.control(&open, None, now);
                }
                if let Some(r) = routes.get_mut(s) {
                    *r = Some(conn);
                }
            }
            Ingress::Close(conn) => {
                let slot = conn.slot;
                let current = routes
                    .get(slot.0 as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|c| Arc::ptr_eq(c, &conn));
                if current {
                    // The connection is gone: its cancel-on-disconnect reports are parked for
                    // the session's next connection (configured sessions) or dropped.
                    routes[slot.0 as usize] = None;
                    if let Some(j) = journal.as_mut() {
                        j.command(&Command::SessionClosed(slot), now);
                    }
                    core.process(Command::SessionClosed(slot), now, &mut |e| {
                        deliver(
                            counts,
                            parked,
                            routes,
                            dirty,
                            dirty_flag,
                            journal.as_mut(),
                            Outbound::Event(e),
                        )
                    });
                    routes[slot.0 as usize] = None;
                    // Only now may a per-connection slot get a new occupant.
                    if slot.0 >= shared.reserved_slots {
                        let _ = shared.free_slots.push(slot.0);
                    }
                }
            }
        }
        self.wake_dirty();
    }

    fn wake_dirty(&mut self) {
        for s in self.dirty.drain(..) {
            self.dirty_flag[s as usize] = false;
            if let Some(Some(conn)) = self.routes.get(s as usize) {
                conn.waker.wake();
            }
        }
    }

    /// Events of an operator action go where order events go.
    fn with_sink<R>(&mut self, f: impl FnOnce(&mut Core, &mut dyn FnMut(Event)) -> R) -> R {
        let CoreLoop {
            core,
            routes,
            dirty,
            dirty_flag,
            journal,
            shared,
            ..
        } = self;
        let counts: &EventCounts = &shared.events;
        let parked: &Parked = &shared.parked;
        let r = f(core, &mut |e| {
            deliver(
                counts,
                parked,
                routes,
                dirty,
                dirty_flag,
                journal.as_mut(),
                Outbound::Event(e),
            )
        });
        self.wake_dirty();
        r
    }

    /// Good-till-date orders due at `now` end with `Expired` reports.
    fn expire_orders(&mut self, now: i64) {
        if let Some(j) = self.journal.as_mut() {
            j.control(&ServerControl::ExpireOrders, None, now);
        }
        let n = self.with_sink(|core, out| core.expire_due(now, out));
        tracing::debug!(expired_gtd_orders = n, "good-till-date orders expired");
    }

    fn timers(&mut self, now: i64) {
        if now >= self.next_roll_ns {
            self.next_roll_ns = now + ROLL_EVERY_NS;
            match self.with_sink(|core, out| core.roll(now, out)) {
                Ok(roll) => {
                    // Journaled only when it changed something (a replay ignores the events,
                    // which went in first); an idle roll is not worth a record a second.
                    if !roll.listed.is_empty() || !roll.expired.is_empty() {
                        if let Some(j) = self.journal.as_mut() {
                            j.control(&ServerControl::Roll, None, now);
                        }
                    }
                    if !roll.listed.is_empty() || !roll.expired.is_empty() {
                        tracing::info!(
                            listed = roll.listed.len(),
                            expired = roll.expired.len(),
                            "instrument table rolled"
                        );
                    }
                    // Newly listed contracts, and the status of expired ones.
                    if !roll.listed.is_empty() || !roll.expired.is_empty() {
                        self.publish_directory();
                    }
                }
                Err(e) => tracing::error!(error = %e, "instrument roll failed"),
            }
        }
        if now >= self.next_eod_ns {
            self.next_eod_ns = next_time_of_day(now, self.eod_secs);
            if let Some(j) = self.journal.as_mut() {
                j.control(&ServerControl::EndOfDay, None, now);
            }
            let n = self.with_sink(|core, out| core.end_of_day(now, out));
            tracing::info!(expired_day_orders = n, "end of the trading day");
        }
    }

    fn publish_directory(&self) {
        self.shared
            .directory
            .store(Arc::new(Directory::of_core(&self.core)));
        // Sessions subscribed to instrument status compare it on their next turn.
        for conn in self.routes.iter().flatten() {
            conn.waker.wake();
        }
    }

    fn instrument(&self, symbol: &str) -> Result<InstrumentId, String> {
        self.core
            .instruments()
            .by_symbol(symbol)
            .ok_or_else(|| format!("unknown instrument {symbol:?}"))
    }

    fn account(&self, name: &str) -> Result<AccountId, String> {
        self.shared
            .account_id(name)
            .ok_or_else(|| format!("unknown account {name:?}"))
    }

    /// Carries out an operator command (may allocate: not per order).
    fn control(&mut self, action: ControlAction, now: i64) -> ControlResult {
        match action {
            ControlAction::Kill { account, on } => {
                let id = account.as_deref().map(|a| self.account(a)).transpose()?;
                let what =
                    account.map_or_else(|| "all accounts".to_owned(), |a| format!("account {a}"));
                let answer = if on {
                    let n = self
                        .with_sink(|core, out| core.kill(id, now, out))
                        .map_err(|e| e.to_string())?;
                    Ok(format!(
                        "kill switch on for {what}: {n} resting orders cancelled"
                    ))
                } else {
                    self.core.release_kill(id).map_err(|e| e.to_string())?;
                    Ok(format!("kill switch off for {what}"))
                };
                match id {
                    // The socket tasks' view of the trading session (FIX TradingSessionStatus).
                    None => self.publish_directory(),
                    Some(a) => {
                        if let Some(k) = self.shared.account_kill.get(a.0 as usize) {
                            k.store(on, Ordering::Relaxed);
                        }
                    }
                }
                answer
            }
            ControlAction::Halt { symbol, halted } => {
                let id = self.instrument(&symbol)?;
                let status = if halted {
                    InstrumentStatus::Halted
                } else {
                    InstrumentStatus::Trading
                };
                self.with_sink(|core, out| core.set_status(id, status, now, out))
                    .map_err(|e| e.to_string())?;
                // The socket tasks' instrument lists (exchangeInfo, SecurityList) show it.
                self.publish_directory();
                Ok(format!(
                    "{symbol} {}",
                    if halted { "halted" } else { "trading again" }
                ))
            }
            ControlAction::Mark { symbol, price } => {
                let id = self.instrument(&symbol)?;
                let scale = self
                    .core
                    .instruments()
                    .rules(id)
                    .map_or(0, |r| r.price_scale);
                let p = Price::parse(price.as_bytes(), scale)
                    .map_err(|e| format!("price {price:?}: {e} (price scale {scale})"))?;
                self.core
                    .risk_mut()
                    .set_reference_price(id, p)
                    .map_err(|e| e.to_string())?;
                Ok(format!("{symbol} reference price set to {price}"))
            }
            ControlAction::Limits { account, set } => {
                let id = self.account(&account)?;
                let current = *self
                    .core
                    .risk()
                    .limits(id)
                    .ok_or_else(|| format!("unknown account {account:?}"))?;
                let limits = merge_limits(&current, &set)?;
                self.core
                    .risk_mut()
                    .set_limits(id, &limits)
                    .map_err(|e| e.to_string())?;
                let keys: Vec<&str> = set.iter().map(|(k, _)| k.as_str()).collect();
                Ok(format!("limits of {account} changed: {}", keys.join(", ")))
            }
            ControlAction::Pause => {
                self.paused = true;
                Ok(format!(
                    "core paused: {} requests waiting; new ones queue up to the ingress capacity",
                    self.shared.ingress.len()
                ))
            }
            ControlAction::Resume => {
                self.paused = false;
                Ok(format!(
                    "core resumed: {} requests waiting",
                    self.shared.ingress.len()
                ))
            }
            ControlAction::Describe => Ok(self.describe().to_string()),
        }
    }

    /// The state [`ControlAction::Describe`] answers with.
    fn describe(&self) -> serde_json::Value {
        let risk = self.core.risk();
        let accounts: Vec<serde_json::Value> = self
            .shared
            .account_names()
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let id = AccountId(i as u32);
                let positions: Vec<serde_json::Value> = self
                    .core
                    .positions(id, None)
                    .iter()
                    .filter_map(|p| {
                        let i = self.core.instruments().get(p.instrument)?;
                        let r = i.rules();
                        Some(serde_json::json!({
                            "symbol": i.symbol(),
                            "position": p.qty.display(r.qty_scale).to_string(),
                            "entry_price": p
                                .entry_price
                                .map(|px| px.display(r.price_scale).to_string()),
                            "reference_price": p
                                .reference_price
                                .map(|px| px.display(r.price_scale).to_string()),
                        }))
                    })
                    .collect();
                let underlyings: Vec<serde_json::Value> = (0u32..)
                    .zip(self.core.instruments().underlying_codes())
                    .filter_map(|(u, code)| {
                        let p = risk.underlying_position(id, portcullis_types::UnderlyingId(u));
                        (p != portcullis_risk::Decimal::ZERO)
                            .then(|| serde_json::json!({"underlying": code, "position": p}))
                    })
                    .collect();
                serde_json::json!({
                    "account": &**name,
                    "kill_switch": risk.kill_switch(Some(id)),
                    "limits": risk.limits(id),
                    "open_orders": risk.open_orders(id),
                    "credit_used": risk.credit_used(id),
                    "positions": positions,
                    "underlyings": underlyings,
                })
            })
            .collect();
        let instruments: Vec<serde_json::Value> = self
            .core
            .instruments()
            .iter()
            .map(|i| {
                let r = i.rules();
                serde_json::json!({
                    "symbol": i.symbol(),
                    "status": format!("{:?}", r.status).to_lowercase(),
                    "reference_price": risk
                        .reference_price(r.id)
                        .map(|p| p.display(r.price_scale).to_string()),
                })
            })
            .collect();
        serde_json::json!({
            "global_kill_switch": risk.kill_switch(None),
            "paused": self.paused,
            "accounts": accounts,
            "instruments": instruments,
        })
    }
}

/// An account's limits with some keys changed: each value is read as the TOML value of that
/// key in `[risk.defaults]` (a number, or a string for decimals and the STP mode).
fn merge_limits(
    current: &AccountLimits,
    set: &[(String, String)],
) -> Result<AccountLimits, String> {
    if set.is_empty() {
        return Err("nothing to set: give key=value pairs".to_owned());
    }
    let mut table = toml::Value::try_from(current).map_err(|e| e.to_string())?;
    let map = table
        .as_table_mut()
        .ok_or_else(|| "limits are not a table".to_owned())?;
    for (k, v) in set {
        let Some(old) = map.get(k) else {
            return Err(format!("unknown limit {k:?}"));
        };
        let new = match old {
            toml::Value::Integer(_) => v
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| format!("{k} = {v:?}: expected an integer"))?,
            _ => toml::Value::String(v.clone()),
        };
        map.insert(k.clone(), new);
    }
    table
        .try_into::<AccountLimits>()
        .map_err(|e| format!("limits: {}", e.message()))
}

/// The status answer that tells a session its listing (open orders, positions) is in the
/// reply: an "unknown order" with no ClOrdID.
fn listing_ready(
    session: SessionId,
    account: AccountId,
    instrument: Option<InstrumentId>,
    now: i64,
) -> Event {
    let done = StatusRequest {
        session,
        account,
        order: OrderRef::Id(OrderId(0)),
        cl_ord_id: ClOrdId::EMPTY,
        instrument: instrument.unwrap_or(InstrumentId(0)),
        side: Side::Buy,
    };
    unknown_order(&done, now)
}

/// The status answer for an order that is not a working order of the account.
fn unknown_order(r: &StatusRequest, now: i64) -> Event {
    Event {
        session: r.session,
        account: r.account,
        instrument: r.instrument,
        kind: EventKind::Rejected(RejectReason::UnknownOrder),
        order_id: match r.order {
            OrderRef::Id(id) => id,
            OrderRef::ClOrdId(_) => OrderId(0),
        },
        cl_ord_id: r.cl_ord_id,
        orig_cl_ord_id: ClOrdId::EMPTY,
        side: r.side,
        ord_type: OrdType::Limit,
        tif: TimeInForce::Day,
        price: Price(0),
        qty: Qty(0),
        cum_qty: Qty(0),
        leaves_qty: Qty(0),
        avg_px: Price(0),
        last_px: Price(0),
        last_qty: Qty(0),
        trade_id: TradeId(0),
        exec_id: 0,
        ts_ns: now,
        received_ns: now,
        details: Default::default(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use portcullis_engine::{EngineConfig, InstrumentConfig};
    use portcullis_risk::RiskConfig;
    use portcullis_types::{NewOrder, TimeInForce};
    use std::task::Wake;

    /// The test engine, risk config (limits no test reaches) and instrument (one perpetual).
    pub(crate) fn test_parts() -> (EngineConfig, RiskConfig, InstrumentConfig) {
        let inst = InstrumentConfig {
            symbol: "BTC-PERP".into(),
            price_scale: 1,
            qty_scale: 3,
            tick: "0.5".into(),
            lot: "0.001".into(),
            min_qty: "0.001".into(),
            max_qty: "100".into(),
            multiplier: 1,
            status: Default::default(),
        };
        let mut risk = RiskConfig {
            session_rate_per_sec: 1_000_000,
            session_burst: 1_000_000,
            max_sessions: 8,
            ..RiskConfig::default()
        };
        risk.defaults.order_rate_per_sec = 1_000_000;
        risk.defaults.order_burst = 1_000_000;
        risk.defaults.max_open_orders = 100_000;
        risk.defaults.max_open_orders_per_instrument = 100_000;
        let engine = EngineConfig {
            max_resting_orders: 1 << 16,
            ..EngineConfig::default()
        };
        (engine, risk, inst)
    }

    pub(crate) fn test_core(accounts: &[&str]) -> Core {
        let (engine, risk, inst) = test_parts();
        let instruments = Instruments::new(&[inst], &[], now_ns() / 1_000_000).unwrap();
        Core::new(&engine, &risk, accounts, instruments).unwrap()
    }

    pub(crate) fn config(ingress: usize, egress: usize) -> PipelineConfig {
        PipelineConfig {
            threading: Threading::Dedicated,
            ingress_capacity: ingress,
            egress_capacity: egress,
            idle_spin: Duration::from_micros(10),
            pin_cpu: None,
            trading_day_end_secs: 0,
            max_sessions: 8,
            reserved_slots: 0,
        }
    }

    /// Queues a GTC limit order of `account` on `conn`'s session for the core loop.
    pub(crate) fn place(
        p: &Pipeline,
        conn: &Conn,
        account: u32,
        id: &str,
        side: Side,
        price: i64,
        qty: i64,
    ) {
        p.submit(Ingress::Cmd(order(
            conn.slot().0,
            account,
            id,
            side,
            price,
            qty,
        )))
        .unwrap_or_else(|_| panic!("the ingress queue is full"));
    }

    pub(crate) fn order(
        session: u32,
        account: u32,
        id: &str,
        side: Side,
        price: i64,
        qty: i64,
    ) -> Command {
        Command::New(NewOrder {
            session: SessionId(session),
            account: AccountId(account),
            instrument: InstrumentId(0),
            cl_ord_id: ClOrdId::new(id.as_bytes()).unwrap(),
            side,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(price),
            qty: Qty(qty),
            post_only: false,
            stp: None,
            received_ns: 0,
            display_qty: Qty(0),
            trailing: None,
            oco_with: None,
            pending: false,
            triggers: None,
        })
    }

    struct Counter(AtomicU64);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn setup(ingress: usize, egress: usize) -> (CoreLoop, Arc<Pipeline>) {
        let accounts = ["A".to_owned(), "B".to_owned()];
        let core = test_core(&["A", "B"]);
        let cfg = config(ingress, egress);
        let p = Pipeline::new(&cfg, &accounts, &core);
        (CoreLoop::new(core, p.clone(), &cfg), p)
    }

    pub(crate) fn open(lp: &mut CoreLoop, p: &Pipeline, account: u32) -> Arc<Conn> {
        let slot = p.alloc_slot().unwrap();
        let conn = p.new_conn(slot, &[AccountId(account)], true);
        p.submit(Ingress::Open(conn.clone())).unwrap();
        lp.step(now_ns());
        conn
    }

    fn drain(conn: &Conn) -> Vec<Event> {
        std::iter::from_fn(|| conn.pop())
            .map(|o| match o {
                Outbound::Event(e) | Outbound::Status(e) => e,
            })
            .collect()
    }

    #[test]
    fn events_are_routed_to_their_slot_and_account_and_wake_the_task_once() {
        let (mut lp, p) = setup(16, 16);
        let a = open(&mut lp, &p, 0);
        let b = open(&mut lp, &p, 1);
        let wakes = Arc::new(Counter(AtomicU64::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(a.poll_ready(&mut cx).is_pending());
        place(&p, &a, 0, "S1", Side::Sell, 1000, 5);
        place(&p, &b, 1, "B1", Side::Buy, 1000, 2);
        lp.step(now_ns());
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "one wake for A's New");
        let ea = drain(&a);
        let eb = drain(&b);
        assert_eq!(
            ea.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [EventKind::New, EventKind::PartialFill]
        );
        assert_eq!(
            eb.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [EventKind::New, EventKind::Fill]
        );
        assert_eq!(ea[1].leaves_qty, Qty(3));
        // An event for a slot whose connection trades for another account is not delivered.
        place(&p, &a, 1, "X", Side::Buy, 500, 1);
        lp.step(now_ns());
        assert!(drain(&a).is_empty());
    }

    #[test]
    fn a_burst_longer_than_a_step_is_answered_whole_and_in_order() {
        // The step reads one command ahead (to prefetch its tables): across the step's batch
        // limit no command may be lost, reordered or answered twice, and a duplicate ClOrdID
        // right behind its original is still refused.
        let n = 2 * BATCH + 3;
        let (mut lp, p) = setup(4 * BATCH, 4 * BATCH);
        let a = open(&mut lp, &p, 0);
        for i in 0..n {
            place(&p, &a, 0, &format!("O{i}"), Side::Buy, 500, 1);
        }
        place(&p, &a, 0, "O0", Side::Buy, 500, 1);
        assert_eq!(a.answered(), 0);
        assert!(lp.step(now_ns()));
        assert_eq!(
            a.answered(),
            BATCH as u64,
            "each request counted once processed"
        );
        assert_eq!(drain(&a).len(), BATCH, "one batch per step");
        while lp.step(now_ns()) {}
        assert_eq!(a.answered(), n as u64 + 1);
        let rest = drain(&a);
        assert_eq!(rest.len(), n + 1 - BATCH);
        let ids: Vec<String> = rest
            .iter()
            .map(|e| String::from_utf8_lossy(e.cl_ord_id.as_bytes()).into_owned())
            .collect();
        let expected: Vec<String> = (BATCH..n).map(|i| format!("O{i}")).collect();
        assert_eq!(&ids[..n - BATCH], &expected[..]);
        assert!(rest[..n - BATCH].iter().all(|e| e.kind == EventKind::New));
        assert_eq!(
            rest[n - BATCH].kind,
            EventKind::Rejected(RejectReason::DuplicateClOrdId)
        );
    }

    #[test]
    fn a_full_egress_queue_overflows_the_connection_without_blocking_the_core() {
        let (mut lp, p) = setup(64, 2);
        let a = open(&mut lp, &p, 0);
        for i in 0..5 {
            place(&p, &a, 0, &format!("O{i}"), Side::Buy, 500, 1);
        }
        lp.step(now_ns());
        assert!(a.overflowed());
        assert_eq!(drain(&a).len(), 2);
        // Orders beyond the queue kept their state in the book.
        assert_eq!(lp.core().risk().open_orders(AccountId(0)), 5);
    }

    #[test]
    fn a_full_ingress_queue_gives_the_request_back() {
        let (_lp, p) = setup(2, 2);
        for i in 0..2 {
            p.submit(Ingress::Cmd(order(
                0,
                0,
                &format!("O{i}"),
                Side::Buy,
                500,
                1,
            )))
            .unwrap();
        }
        assert!(p
            .submit(Ingress::Cmd(order(0, 0, "O3", Side::Buy, 500, 1)))
            .is_err());
        assert_eq!(p.busy_count(), 1);
    }

    #[test]
    fn a_slot_is_free_again_only_after_the_core_processed_the_close() {
        let (mut lp, p) = setup(16, 16);
        let a = open(&mut lp, &p, 0);
        place(&p, &a, 0, "R1", Side::Buy, 500, 1);
        lp.step(now_ns());
        let free = p.free_slots.len();
        // A close of a connection the slot no longer has changes nothing.
        let stale = p.new_conn(a.slot(), &[AccountId(0)], true);
        p.submit(Ingress::Close(stale)).unwrap();
        lp.step(now_ns());
        assert_eq!(lp.core().risk().open_orders(AccountId(0)), 1);
        p.submit(Ingress::Close(a.clone())).unwrap();
        assert_eq!(p.free_slots.len(), free);
        lp.step(now_ns());
        assert_eq!(p.free_slots.len(), free + 1);
        // Cancel-on-disconnect cancelled the resting order.
        assert_eq!(lp.core().risk().open_orders(AccountId(0)), 0);
    }

    #[test]
    fn operator_commands_are_answered_and_pause_stops_the_ingress() {
        let (mut lp, p) = setup(16, 16);
        let a = open(&mut lp, &p, 0);
        let ask = |lp: &mut CoreLoop, action| {
            let (tx, mut rx) = tokio::sync::oneshot::channel();
            p.control(ControlRequest { action, reply: tx }).unwrap();
            lp.step(now_ns());
            rx.try_recv().unwrap()
        };
        assert!(ask(&mut lp, ControlAction::Pause).is_ok());
        place(&p, &a, 0, "P1", Side::Buy, 500, 1);
        lp.step(now_ns());
        assert!(drain(&a).is_empty(), "paused: nothing processed");
        assert!(ask(&mut lp, ControlAction::Resume).is_ok());
        assert_eq!(drain(&a).len(), 1);
        let r = ask(
            &mut lp,
            ControlAction::Kill {
                account: Some("A".into()),
                on: true,
            },
        );
        assert!(r.unwrap().contains("1 resting orders cancelled"));
        assert_eq!(drain(&a)[0].kind, EventKind::Canceled);
        assert!(ask(
            &mut lp,
            ControlAction::Kill {
                account: Some("NOPE".into()),
                on: true
            }
        )
        .is_err());
        let r = ask(
            &mut lp,
            ControlAction::Limits {
                account: "B".into(),
                set: vec![
                    ("max_notional".into(), "5".into()),
                    ("max_open_orders".into(), "3".into()),
                ],
            },
        );
        assert!(r.is_ok(), "{r:?}");
        let l = lp.core().risk().limits(AccountId(1)).unwrap();
        assert_eq!(l.max_open_orders, 3);
        for bad in [
            vec![("max_open_order".to_owned(), "3".to_owned())],
            vec![("max_open_orders".to_owned(), "x".to_owned())],
            vec![("max_notional".to_owned(), "-1".to_owned())],
            vec![("stp_mode".to_owned(), "sometimes".to_owned())],
        ] {
            let r = ask(
                &mut lp,
                ControlAction::Limits {
                    account: "B".into(),
                    set: bad.clone(),
                },
            );
            assert!(r.is_err(), "{bad:?}: {r:?}");
        }
        assert!(ask(
            &mut lp,
            ControlAction::Mark {
                symbol: "BTC-PERP".into(),
                price: "100.25".into()
            }
        )
        .is_err());
        assert!(ask(
            &mut lp,
            ControlAction::Mark {
                symbol: "BTC-PERP".into(),
                price: "100.5".into()
            }
        )
        .is_ok());
        assert!(ask(
            &mut lp,
            ControlAction::Halt {
                symbol: "BTC-PERP".into(),
                halted: true
            }
        )
        .is_ok());
        // Operators read back what they changed.
        let state: serde_json::Value =
            serde_json::from_str(&ask(&mut lp, ControlAction::Describe).unwrap()).unwrap();
        let btc = state["instruments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["symbol"] == "BTC-PERP")
            .unwrap();
        assert_eq!(btc["status"], "halted", "{state}");
        assert_eq!(btc["reference_price"], "100.5", "{state}");
        assert!(
            state["accounts"][0]["limits"]["max_notional"].is_string(),
            "{state}"
        );
    }

    #[test]
    fn next_time_of_day_is_strictly_after_now() {
        let day = 20_000 * NS_PER_DAY;
        assert_eq!(next_time_of_day(day, 0), day + NS_PER_DAY);
        assert_eq!(next_time_of_day(day - 1, 0), day);
        assert_eq!(next_time_of_day(day + 5, 3600), day + 3_600_000_000_000);
    }

    #[test]
    fn the_core_thread_parks_and_a_producer_wakes_it() {
        let (mut lp, p) = setup(16, 16);
        let shared = p.clone();
        let t = std::thread::spawn(move || lp.run());
        let _ = shared.core_thread.set(t.thread().clone());
        // Let it spin out and park.
        std::thread::sleep(Duration::from_millis(20));
        let slot = p.alloc_slot().unwrap();
        let conn = p.new_conn(slot, &[AccountId(0)], true);
        p.submit(Ingress::Open(conn.clone())).unwrap();
        p.submit(Ingress::Cmd(order(slot.0, 0, "W1", Side::Buy, 500, 1)))
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while conn.egress.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "core thread not woken"
            );
            std::thread::yield_now();
        }
        p.stop();
        t.join().unwrap();
    }

    #[test]
    fn a_shared_core_task_sleeps_wakes_on_a_submit_answers_and_stops() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut cfg = config(16, 16);
            cfg.threading = Threading::Shared;
            let p = Pipeline::new(&cfg, &["A".to_owned()], &test_core(&["A"]));
            let handle = start_core(test_core(&["A"]), p.clone(), &cfg, None).unwrap();
            assert!(matches!(handle, CoreHandle::Task(_)));
            // Idle: the task sleeps (nothing spins on the one worker, or this sleep would
            // never end).
            tokio::time::sleep(Duration::from_millis(20)).await;
            let slot = p.alloc_slot().unwrap();
            let conn = p.new_conn(slot, &[AccountId(0)], true);
            p.submit(Ingress::Open(conn.clone())).unwrap();
            p.submit(Ingress::Cmd(order(slot.0, 0, "S1", Side::Buy, 500, 1)))
                .unwrap();
            // The report comes once this task lets the core task run.
            let answer = tokio::time::timeout(
                Duration::from_secs(2),
                std::future::poll_fn(|cx| conn.poll_ready(cx)),
            )
            .await;
            assert!(answer.is_ok(), "the core task was not woken");
            let Some(Outbound::Event(e)) = conn.pop() else {
                panic!("no report")
            };
            assert_eq!(e.kind, EventKind::New);
            p.stop();
            let joined = tokio::time::timeout(Duration::from_secs(2), handle.join()).await;
            assert_eq!(joined.ok(), Some(true), "the core task did not stop");
        });
    }

    #[test]
    fn queue_entries_are_a_few_cache_lines() {
        // core.egress_capacity × this is the report queue of a trading session (documented in
        // configs/dev.toml); the ingress queue is core.ingress_capacity × its entry.
        let out = std::mem::size_of::<Outbound>();
        let ingress = std::mem::size_of::<Ingress>();
        assert!(out <= 320, "{out}");
        assert!(ingress <= 256, "{ingress}");
    }
}
