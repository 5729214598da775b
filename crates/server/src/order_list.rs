//! Order lists over FIX: a NewOrderList (E) with ContingencyType(1385) places a
//! one-cancels-the-other pair or a one-triggers-the-other list (FIX 4.4 and FIXT.1.1 / 5.0 SP2),
//! as the WebSocket API's `orderList.place.oco` / `.oto` / `.otoco` do, and is answered with
//! ListStatus (N) messages. Fields as crypto venues' FIX APIs use them, so their clients work
//! unchanged:
//!
//! | field | meaning |
//! |---|---|
//! | ClListID(25014) | the client's id of the list (or ListID(66) if it has none), echoed |
//! | ContingencyType(1385) | 1: one-cancels-the-other, two orders (0 below, 1 above, as the client likes: the core checks the pair); 2: one-triggers-the-other, order 0 the working limit order, orders 1 (and 2, a pair) pending until it fills completely |
//! | NoOrders(73) | 2 or 3 orders, each with a NewOrderSingle's fields (ClOrdID, Symbol, Side, OrderQty, OrdType, Price, StopPx, TimeInForce, ExecInst, ...), one instrument and account |
//! | NoListTriggeringInstructions(25010) | accepted and not needed: what triggers what follows from the contingency and the orders' places |
//!
//! Each order gets its ExecutionReports as a NewOrderSingle would, with ListID(66); the list's
//! state goes in ListStatus messages: ListStatusType(429) 4 / ListOrderStatus(431) 3 when all
//! its orders are accepted, 5 / 6 when all have ended, 2 / 7 with ListRejectReason(1386) and
//! Text(58) when it is refused (an order that was accepted before another was refused is
//! cancelled, so a list is placed whole or not at all). The ListID is the engine's OrderID of
//! the list's first placed order, as on the WebSocket API. An OrderCancelRequest (F) naming
//! ListID(66) or OrigClListID(25015) instead of an order cancels the whole list, as does the
//! cancel of any of its orders and a ListCancelRequest (K); a ListStatusRequest (M) is answered
//! with the list as it stands. After a restart, a list asked for by its ListID is found again
//! in the order history and followed from then on.
//!
//! The orders are placed one after the other (each joined to those before it on the core
//! thread), so nothing of a list waits on the core thread or costs the order path.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use portcullis_fix::{tag, BeginString, Encoder, MessageRef, SeqNum, TimePrecision, UtcTimestamp};
use portcullis_types::{
    AccountId, ClOrdId, Event, EventKind, InstrumentId, NewOrder, OrderId, Price, Qty, RejectReason,
};

use crate::history::{OrderState, PastList, PastOrder};
use crate::order_codec::{self, fixed, Ctx, Names};

/// ListID(66).
pub use order_codec::LIST_ID;
/// ContingencyType(1385).
const CONTINGENCY_TYPE: u32 = 1385;
/// ClListID(25014): the client's id of a list (user-defined, as venues use it).
pub const CL_LIST_ID: u32 = 25014;
/// OrigClListID(25015): the list an OrderCancelRequest cancels, by the client's id.
pub const ORIG_CL_LIST_ID: u32 = 25015;
/// NoOrders(73).
const NO_ORDERS: u32 = 73;
/// ListStatusType(429), NoRpts(82), ListOrderStatus(431), RptSeq(83), TotNoOrders(68).
const LIST_STATUS_TYPE: u32 = 429;
const NO_RPTS: u32 = 82;
const LIST_ORDER_STATUS: u32 = 431;
const RPT_SEQ: u32 = 83;
const TOT_NO_ORDERS: u32 = 68;
/// ListRejectReason(1386), CxlQty(84).
const LIST_REJECT_REASON: u32 = 1386;
const CXL_QTY: u32 = 84;

/// Most lists a session keeps (being placed or working): beyond it the oldest working list is
/// forgotten (its orders' reports go on without ListID, and no status follows), so what the
/// session task keeps is bounded even when a list's last reports never reach it.
pub const MAX_LISTS: usize = 1024;

/// The contingency of an order list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contingency {
    /// One cancels the other (ContingencyType 1).
    Oco,
    /// One triggers the other(s) (ContingencyType 2).
    Oto,
}

impl Contingency {
    fn code(self) -> u64 {
        match self {
            Contingency::Oco => 1,
            Contingency::Oto => 2,
        }
    }
}

/// How an order of a list is joined to one placed before it (by its place in placement order),
/// on FIX as on the WebSocket API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// The other of a one-cancels-the-other pair.
    OcoWith(usize),
    /// The working order that triggers this pending order (pair).
    Triggers(usize),
}

/// A decoded NewOrderList.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// The client's id of the list.
    pub client_id: ClOrdId,
    /// Its contingency.
    pub contingency: Contingency,
    /// The orders in placement order, each with its join to an earlier one and its place in
    /// the client's order.
    pub legs: Vec<(NewOrder, Option<Join>, usize)>,
}

/// Why a NewOrderList is refused before any of its orders is placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRefusal {
    /// The client's id of the list, as far as it could be read.
    pub client_id: ClOrdId,
    /// The reason (ListRejectReason(1386) follows from it).
    pub reason: RejectReason,
    /// Text(58).
    pub text: Cow<'static, str>,
}

fn refusal(
    client_id: ClOrdId,
    reason: RejectReason,
    text: impl Into<Cow<'static, str>>,
) -> ListRefusal {
    ListRefusal {
        client_id,
        reason,
        text: text.into(),
    }
}

/// Decodes a NewOrderList (validated by the session against its dictionary): the orders with a
/// NewOrderSingle's rules, then the list's own.
pub fn decode(msg: &MessageRef<'_>, ctx: &Ctx<'_>) -> Result<ListRequest, ListRefusal> {
    let id_text = msg
        .get(CL_LIST_ID)
        .or_else(|| msg.get(LIST_ID))
        .unwrap_or(b"");
    let client_id = ClOrdId::new(id_text).map_err(|e| {
        refusal(
            ClOrdId::EMPTY,
            RejectReason::Unsupported,
            format!("ClListID(25014) or ListID(66): {e}"),
        )
    })?;
    let contingency = match msg.get(CONTINGENCY_TYPE) {
        Some(b"1") => Contingency::Oco,
        Some(b"2") => Contingency::Oto,
        Some(_) => {
            return Err(refusal(
                client_id,
                RejectReason::Unsupported,
                "ContingencyType(1385) must be 1 (one cancels the other) or 2 (one triggers the other)",
            ))
        }
        None => {
            return Err(refusal(
                client_id,
                RejectReason::Unsupported,
                "ContingencyType(1385) is required: 1 (one cancels the other) or 2 (one triggers the other)",
            ))
        }
    };
    let entries = entries(msg);
    let fits = match contingency {
        Contingency::Oco => entries.len() == 2,
        Contingency::Oto => entries.len() == 2 || entries.len() == 3,
    };
    if !fits {
        return Err(refusal(
            client_id,
            RejectReason::OrderListRejected,
            "a one-cancels-the-other list has 2 orders, a one-triggers-the-other list 2 or 3",
        ));
    }
    let mut orders: Vec<NewOrder> = Vec::with_capacity(3);
    for entry in entries {
        let o = order_codec::decode_new(&msg.part(entry), ctx).map_err(|r| {
            let n = orders.len();
            refusal(client_id, r.reason, format!("order {n}: {}", r.text))
        })?;
        orders.push(o);
    }
    let n = orders.len();
    let first = orders[0];
    if orders
        .iter()
        .any(|o| o.instrument != first.instrument || o.account != first.account)
    {
        return Err(refusal(
            client_id,
            RejectReason::OrderListRejected,
            "the orders of a list must be of one Symbol(55) and Account(1)",
        ));
    }
    for (k, o) in orders.iter().enumerate() {
        if orders[..k].iter().any(|p| p.cl_ord_id == o.cl_ord_id) {
            return Err(refusal(
                client_id,
                RejectReason::DuplicateClOrdId,
                format!("order {k}: its ClOrdID(11) is another order's of the list"),
            ));
        }
    }
    // The core joins an order to ones placed before it: a pending order (pair) is placed
    // before the working order that triggers it.
    let legs = match (contingency, n) {
        (Contingency::Oco, _) => vec![(orders[0], None, 0), (orders[1], Some(Join::OcoWith(0)), 1)],
        (Contingency::Oto, 2) => vec![
            (pending(orders[1]), None, 1),
            (orders[0], Some(Join::Triggers(0)), 0),
        ],
        _ => vec![
            (pending(orders[1]), None, 1),
            (pending(orders[2]), Some(Join::OcoWith(0)), 2),
            (orders[0], Some(Join::Triggers(0)), 0),
        ],
    };
    Ok(ListRequest {
        client_id,
        contingency,
        legs,
    })
}

fn pending(o: NewOrder) -> NewOrder {
    NewOrder { pending: true, ..o }
}

/// The field positions of each order of the NoOrders(73) group: from one ClOrdID(11) to the
/// next (or the message's end: the list's own fields there are not an order's).
fn entries(msg: &MessageRef<'_>) -> Vec<std::ops::Range<usize>> {
    let spans = msg.spans();
    let Some(start) = spans.iter().position(|s| s.tag == NO_ORDERS) else {
        return Vec::new();
    };
    let starts: Vec<usize> = (start + 1..spans.len())
        .filter(|&i| spans[i].tag == tag::CL_ORD_ID)
        .collect();
    let mut out = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(spans.len());
        out.push(s..end);
    }
    out
}

/// One order of a list as its ListStatus shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its ClOrdID(11).
    pub cl_ord_id: ClOrdId,
    /// The engine's id (0 until accepted).
    pub order_id: OrderId,
    /// Its quantity.
    pub qty: Qty,
    /// Filled so far.
    pub cum_qty: Qty,
    /// Still working.
    pub leaves_qty: Qty,
    /// Average fill price.
    pub avg_px: Price,
    /// OrdStatus(39).
    pub status: u8,
}

impl Member {
    fn of(o: &NewOrder) -> Self {
        Member {
            cl_ord_id: o.cl_ord_id,
            order_id: OrderId(0),
            qty: o.qty,
            cum_qty: Qty(0),
            leaves_qty: o.qty,
            avg_px: Price(0),
            status: if o.pending { b'A' } else { b'0' },
        }
    }

    /// Whether the order has ended (filled, cancelled, expired or refused).
    pub fn is_ended(&self) -> bool {
        matches!(self.status, b'2' | b'4' | b'C' | b'8')
    }

    fn note(&mut self, e: &Event) {
        self.order_id = e.order_id;
        self.cum_qty = e.cum_qty;
        self.leaves_qty = e.leaves_qty;
        self.avg_px = e.avg_px;
        self.status = order_codec::ord_status(BeginString::Fix44, e);
    }
}

/// A list of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderList {
    /// The ListID: the first placed order's OrderID (0 for a list refused before that).
    pub id: OrderId,
    /// The client's id.
    pub client_id: ClOrdId,
    /// The contingency.
    pub contingency: Contingency,
    /// The instrument.
    pub instrument: InstrumentId,
    /// The account.
    pub account: AccountId,
    /// Its orders in the client's order.
    pub orders: Vec<Member>,
    /// Refused while being placed: its accepted orders are being cancelled, and no status
    /// follows.
    pub refused: bool,
}

impl OrderList {
    /// A list of `account` as the order history has it (`orders`: its orders' states in
    /// placement order): what a session knows of its lists after a restart, without the
    /// client's id.
    pub fn from_history(account: AccountId, list: &PastList, orders: &[PastOrder]) -> Self {
        let mut members: Vec<Member> = orders
            .iter()
            .map(|p| Member {
                cl_ord_id: p.cl_ord_id,
                order_id: p.order_id,
                qty: p.qty,
                cum_qty: p.cum_qty,
                leaves_qty: if p.state.is_working() {
                    Qty(p.qty.0 - p.cum_qty.0)
                } else {
                    Qty(0)
                },
                avg_px: p.avg_px,
                status: match p.state {
                    OrderState::Pending => b'A',
                    OrderState::Working => b'0',
                    OrderState::PartiallyFilled => b'1',
                    OrderState::Filled => b'2',
                    OrderState::Canceled => b'4',
                    OrderState::Expired => b'C',
                },
            })
            .collect();
        // The client's order: a working order before the pending orders it triggers (placed
        // before it).
        if list.triggers {
            members.rotate_right(1);
        }
        OrderList {
            id: list.id,
            client_id: ClOrdId::EMPTY,
            contingency: if list.triggers {
                Contingency::Oto
            } else {
                Contingency::Oco
            },
            instrument: list.instrument,
            account,
            orders: members,
            refused: false,
        }
    }
}

/// What a ListStatus says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListState {
    /// Every order is accepted (ListStatusType 4, ListOrderStatus 3).
    Started,
    /// The answer to a ListStatusRequest (M): 2 and 3 (executing), or 6 once all its orders
    /// have ended.
    Working,
    /// The answer to a ListCancelRequest (K): its orders are being cancelled (2, 4).
    Cancelling,
    /// The answer to a ListStatusRequest or ListCancelRequest naming no working list of the
    /// session (2, 7, ListRejectReason 5); the list's `client_id` holds the ListID asked for.
    Unknown,
    /// Every order has ended (5, 6).
    AllDone,
    /// Refused (2, 7), why.
    Rejected(RejectReason, Cow<'static, str>),
}

/// A ListStatus (N) to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListStatus {
    /// The list as it stands.
    pub list: OrderList,
    /// What it says.
    pub state: ListState,
    /// When (ns since the epoch).
    pub ts_ns: i64,
}

impl ListStatus {
    /// A refusal of a list none of whose orders was placed.
    pub fn refused(r: &ListRefusal, ts_ns: i64) -> Self {
        ListStatus {
            list: OrderList {
                id: OrderId(0),
                client_id: r.client_id,
                contingency: Contingency::Oco,
                instrument: InstrumentId(u32::MAX),
                account: AccountId(0),
                orders: Vec::new(),
                refused: true,
            },
            state: ListState::Rejected(r.reason, r.text.clone()),
            ts_ns,
        }
    }

    /// The answer to a ListStatusRequest (M) or ListCancelRequest (K) for a ListID the
    /// session has no working list of (`list_id`, as the client sent it).
    pub fn unknown(list_id: ClOrdId, ts_ns: i64) -> Self {
        ListStatus {
            list: OrderList {
                id: OrderId(0),
                client_id: list_id,
                contingency: Contingency::Oco,
                instrument: InstrumentId(u32::MAX),
                account: AccountId(0),
                orders: Vec::new(),
                refused: true,
            },
            state: ListState::Unknown,
            ts_ns,
        }
    }

    /// Writes the body of the ListStatus (N).
    pub fn encode(&self, enc: &mut Encoder, names: &Names<'_>, scratch: &mut Vec<u8>) {
        let l = &self.list;
        let (status_type, order_status) = match self.state {
            ListState::Started => (4, 3),
            ListState::Working if l.orders.iter().all(Member::is_ended) => (2, 6),
            ListState::Working => (2, 3),
            ListState::Cancelling => (2, 4),
            ListState::AllDone => (5, 6),
            ListState::Rejected(..) | ListState::Unknown => (2, 7),
        };
        if l.id.0 == 0 {
            // Refused before it had an id: the client's stands in for it.
            let id = l.client_id.as_bytes();
            enc.str(LIST_ID, if id.is_empty() { b"NONE" } else { id });
        } else {
            enc.uint(LIST_ID, l.id.0);
        }
        enc.uint(LIST_STATUS_TYPE, status_type);
        enc.uint(NO_RPTS, 1);
        enc.uint(LIST_ORDER_STATUS, order_status);
        match &self.state {
            ListState::Rejected(reason, _) => {
                enc.uint(LIST_REJECT_REASON, list_reject_reason(*reason));
            }
            ListState::Unknown => {
                enc.uint(
                    LIST_REJECT_REASON,
                    list_reject_reason(RejectReason::UnknownOrder),
                );
            }
            _ => {}
        }
        enc.uint(RPT_SEQ, 1);
        if !l.orders.is_empty() {
            enc.uint(CONTINGENCY_TYPE, l.contingency.code());
        }
        let entry = names.directory.get(l.instrument);
        if let Some(d) = entry {
            enc.str(tag::SYMBOL, d.symbol.as_bytes());
        }
        enc.timestamp(
            tag::TRANSACT_TIME,
            UtcTimestamp::from_nanos(self.ts_ns),
            TimePrecision::Micros,
        );
        // Before the group, whose entries may have a Text(58) of their own.
        match &self.state {
            ListState::Rejected(_, text) => {
                enc.str(tag::TEXT, text.as_bytes());
            }
            ListState::Unknown => {
                enc.str(
                    tag::TEXT,
                    b"unknown order list: ListID(66) names no working list of the session",
                );
            }
            _ => {}
        }
        enc.uint(TOT_NO_ORDERS, l.orders.len() as u64);
        let (px_scale, qty_scale) = entry.map_or((0, 0), |d| (d.price_scale, d.qty_scale));
        enc.uint(NO_ORDERS, l.orders.len() as u64);
        for m in &l.orders {
            enc.str(tag::CL_ORD_ID, m.cl_ord_id.as_bytes());
            if m.order_id.0 != 0 {
                enc.uint(tag::ORDER_ID, m.order_id.0);
            }
            if let Some(d) = entry {
                enc.str(tag::SYMBOL, d.symbol.as_bytes());
            }
            fixed(enc, tag::CUM_QTY, m.cum_qty.0, qty_scale, scratch);
            enc.char(tag::ORD_STATUS, m.status);
            fixed(enc, tag::LEAVES_QTY, m.leaves_qty.0, qty_scale, scratch);
            let cxl = if m.is_ended() {
                m.qty.0 - m.cum_qty.0 - m.leaves_qty.0
            } else {
                0
            };
            fixed(enc, CXL_QTY, cxl.max(0), qty_scale, scratch);
            fixed(enc, tag::AVG_PX, m.avg_px.0, px_scale, scratch);
        }
        if !l.client_id.is_empty() && self.state != ListState::Unknown {
            enc.str(CL_LIST_ID, l.client_id.as_bytes());
        }
    }
}

/// ListRejectReason(1386) of a refusal.
fn list_reject_reason(reason: RejectReason) -> u64 {
    match reason {
        RejectReason::KillSwitch => 0,
        RejectReason::TooLateToEnter => 4,
        RejectReason::UnknownOrder => 5,
        RejectReason::DuplicateClOrdId => 6,
        RejectReason::Unsupported
        | RejectReason::OrderListRejected
        | RejectReason::PostOnlyWouldTrade => 7,
        _ => 99,
    }
}

/// A list being placed: the orders still to send, and those accepted.
#[derive(Debug)]
struct Placement {
    /// The NewOrderList's MsgSeqNum: each of its orders is a request of it.
    seq: SeqNum,
    rest: VecDeque<(NewOrder, Option<Join>, usize)>,
    placed: Vec<OrderId>,
    list: OrderList,
}

/// What the session task does about an event of a list's order.
#[derive(Debug, PartialEq, Eq)]
pub enum ListStep {
    /// Not an order of a list.
    None,
    /// An order of list `ListID`: its report carries it.
    Member(OrderId),
    /// The next order of a list being placed is to be sent, a request of MsgSeqNum `seq`
    /// (the report carries the ListID).
    Send(NewOrder, OrderId, SeqNum),
    /// The list's state changed: its report carries the ListID, then the status goes.
    Status(OrderId, Box<ListStatus>),
    /// An order of a list being placed was refused: the list is refused; the orders already
    /// accepted (the first of them, whose cancel takes the others) are cancelled.
    Refused {
        /// The report's ListID, and the order to cancel, if any order was accepted.
        list: Option<OrderId>,
        /// The refusal.
        status: Box<ListStatus>,
    },
}

/// A session's order lists: those being placed and those working. Kept with the session's
/// ended orders, so a reconnected client still hears of its lists.
#[derive(Debug, Default)]
pub struct Lists {
    placing: HashMap<ClOrdId, Placement>,
    live: HashMap<OrderId, OrderList>,
    /// The list of each working order of a live list.
    member_of: HashMap<OrderId, OrderId>,
    /// The working lists by the client's id.
    by_client: HashMap<ClOrdId, OrderId>,
    /// The working lists, oldest first (some may have ended since).
    age: VecDeque<OrderId>,
    /// The last lists that ended, as they ended, newest last (at most [`MAX_ENDED`]): asked
    /// for, they are answered as they ended, whatever the history, which lags, says yet.
    ended: VecDeque<OrderList>,
}

/// Ended lists a session remembers.
const MAX_ENDED: usize = 256;

impl Lists {
    /// True if the session has no list placed or working.
    pub fn is_empty(&self) -> bool {
        self.placing.is_empty() && self.live.is_empty()
    }

    /// Whether another list may be placed (the lists being placed are bounded, the oldest
    /// working ones forgotten).
    pub fn has_room(&self) -> bool {
        self.placing.len() < MAX_LISTS
    }

    /// Gives up the lists being placed (their connection is closing): the ListID, account
    /// and instrument of each that has an order placed already, to cancel (a list is placed
    /// whole or not at all).
    pub fn abandon(&mut self) -> Vec<(OrderId, AccountId, InstrumentId)> {
        let out = self
            .placing
            .values()
            .filter_map(|p| {
                let id = p.placed.first()?;
                Some((*id, p.list.account, p.list.instrument))
            })
            .collect();
        self.placing.clear();
        out
    }

    /// The session's connection ended: with cancel-on-disconnect every list is done.
    pub fn connection_ended(&mut self, cancel_on_disconnect: bool) {
        self.placing.clear();
        if cancel_on_disconnect {
            self.ended.clear();
            self.live.clear();
            self.member_of.clear();
            self.by_client.clear();
            self.age.clear();
        }
    }

    /// Takes a working list the session had before a restart (as the history has it): its
    /// orders' reports carry its ListID again, and its end is told. A list that has ended is
    /// not kept.
    pub fn adopt(&mut self, list: OrderList) {
        if list.orders.iter().all(Member::is_ended)
            || self.live.contains_key(&list.id)
            || self.ended(list.id).is_some()
        {
            return;
        }
        for m in &list.orders {
            self.member_of.insert(m.order_id, list.id);
        }
        self.keep(list.id, list);
    }

    /// Keeps the working list `list` of id `id`, forgetting the oldest beyond [`MAX_LISTS`].
    fn keep(&mut self, id: OrderId, list: OrderList) {
        while self.live.len() >= MAX_LISTS {
            let Some(old) = self.age.pop_front() else {
                break;
            };
            if let Some(l) = self.live.remove(&old) {
                for m in &l.orders {
                    self.member_of.remove(&m.order_id);
                }
                self.by_client.remove(&l.client_id);
            }
        }
        if !list.refused {
            self.by_client.insert(list.client_id, id);
        }
        self.live.insert(id, list);
        self.age.push_back(id);
        if self.age.len() > 2 * MAX_LISTS {
            // Ids of lists that ended since.
            let live = &self.live;
            self.age.retain(|id| live.contains_key(id));
        }
    }

    /// The working list `id` as it stands, if the session has it (and it was not refused).
    pub fn working(&self, id: OrderId) -> Option<&OrderList> {
        self.live.get(&id).filter(|l| !l.refused)
    }

    /// The list `id` as it ended, if it is one of the last to have ended.
    pub fn ended(&self, id: OrderId) -> Option<&OrderList> {
        self.ended.iter().rev().find(|l| l.id == id)
    }

    /// The list the client calls `client_id`, if it is working.
    pub fn by_client_id(&self, client_id: &ClOrdId) -> Option<OrderId> {
        self.by_client.get(client_id).copied()
    }

    /// Starts placing `req` (MsgSeqNum `seq`): returns its first order to send (`None` for a
    /// list without orders, which [`decode`] never makes).
    pub fn start(
        &mut self,
        req: ListRequest,
        instrument: InstrumentId,
        seq: SeqNum,
    ) -> Option<NewOrder> {
        let mut orders: Vec<Member> = vec![
            Member {
                cl_ord_id: ClOrdId::EMPTY,
                order_id: OrderId(0),
                qty: Qty(0),
                cum_qty: Qty(0),
                leaves_qty: Qty(0),
                avg_px: Price(0),
                status: b'0',
            };
            req.legs.len()
        ];
        for (o, _, at) in &req.legs {
            orders[*at] = Member::of(o);
        }
        let mut rest: VecDeque<_> = req.legs.into();
        let (first, _, _) = rest.pop_front()?;
        self.placing.insert(
            first.cl_ord_id,
            Placement {
                seq,
                rest,
                placed: Vec::with_capacity(3),
                list: OrderList {
                    id: OrderId(0),
                    client_id: req.client_id,
                    contingency: req.contingency,
                    instrument,
                    account: first.account,
                    orders,
                    refused: false,
                },
            },
        );
        Some(first)
    }

    /// The order `cl_ord_id` of a list being placed could not be sent (the core thread's
    /// queue is full): the list is refused for `reason`, as by [`ListStep::Refused`].
    pub fn fail(
        &mut self,
        cl_ord_id: ClOrdId,
        reason: RejectReason,
        ts_ns: i64,
    ) -> Option<(Option<OrderId>, Box<ListStatus>)> {
        let p = self.placing.remove(&cl_ord_id)?;
        Some(self.refuse(p, cl_ord_id, None, reason, ts_ns))
    }

    /// Refuses a list being placed whose order `cl_ord_id` was refused (`e`, its report) or
    /// not sent.
    fn refuse(
        &mut self,
        mut p: Placement,
        cl_ord_id: ClOrdId,
        e: Option<&Event>,
        reason: RejectReason,
        ts_ns: i64,
    ) -> (Option<OrderId>, Box<ListStatus>) {
        for m in p.list.orders.iter_mut() {
            match e {
                Some(e) if m.cl_ord_id == cl_ord_id => m.note(e),
                // Never placed.
                _ if m.order_id.0 == 0 => m.status = b'8',
                _ => {}
            }
        }
        let status = Box::new(ListStatus {
            list: p.list.clone(),
            state: ListState::Rejected(reason, Cow::Borrowed(reason.text())),
            ts_ns,
        });
        // The orders accepted are cancelled by the caller (the first's cancel takes the
        // others); their last reports still carry the list's id, and no status follows.
        let list = p.placed.first().copied();
        if let Some(id) = list {
            p.list.refused = true;
            self.keep(id, p.list);
        }
        (list, status)
    }

    /// Takes note of an event of the session's orders: what to do about it.
    pub fn on_event(&mut self, e: &Event) -> ListStep {
        if self.is_empty() {
            return ListStep::None;
        }
        if let Some(mut p) = self.placing.remove(&e.cl_ord_id) {
            match e.kind {
                EventKind::New => {
                    p.placed.push(e.order_id);
                    let id = p.placed[0];
                    p.list.id = id;
                    if let Some(m) = p
                        .list
                        .orders
                        .iter_mut()
                        .find(|m| m.cl_ord_id == e.cl_ord_id)
                    {
                        m.note(e);
                    }
                    self.member_of.insert(e.order_id, id);
                    let Some((mut next, join, _)) = p.rest.pop_front() else {
                        let list = p.list.clone();
                        self.keep(id, p.list);
                        return ListStep::Status(
                            id,
                            Box::new(ListStatus {
                                list,
                                state: ListState::Started,
                                ts_ns: e.ts_ns,
                            }),
                        );
                    };
                    match join {
                        Some(Join::OcoWith(i)) => next.oco_with = Some(p.placed[i]),
                        Some(Join::Triggers(i)) => next.triggers = Some(p.placed[i]),
                        None => {}
                    }
                    let seq = p.seq;
                    self.placing.insert(next.cl_ord_id, p);
                    ListStep::Send(next, id, seq)
                }
                EventKind::Rejected(reason) => {
                    let (list, status) = self.refuse(p, e.cl_ord_id, Some(e), reason, e.ts_ns);
                    ListStep::Refused { list, status }
                }
                _ => {
                    // Not the answer yet (nothing else comes before an order's New or
                    // Rejected): keep waiting.
                    self.placing.insert(e.cl_ord_id, p);
                    ListStep::None
                }
            }
        } else {
            let Some(&id) = self.member_of.get(&e.order_id) else {
                return ListStep::None;
            };
            let Some(list) = self.live.get_mut(&id) else {
                return ListStep::Member(id);
            };
            if let Some(m) = list.orders.iter_mut().find(|m| m.order_id == e.order_id) {
                if matches!(
                    e.kind,
                    EventKind::CancelRejected { .. } | EventKind::MassCancelDone { .. }
                ) {
                    return ListStep::Member(id);
                }
                m.note(e);
            }
            if !list.orders.iter().all(Member::is_ended) {
                return ListStep::Member(id);
            }
            let Some(list) = self.live.remove(&id) else {
                return ListStep::Member(id);
            };
            for m in &list.orders {
                self.member_of.remove(&m.order_id);
            }
            if list.refused {
                return ListStep::Member(id);
            }
            self.by_client.remove(&list.client_id);
            if self.ended.len() == MAX_ENDED {
                self.ended.pop_front();
            }
            self.ended.push_back(list.clone());
            ListStep::Status(
                id,
                Box::new(ListStatus {
                    list,
                    state: ListState::AllDone,
                    ts_ns: e.ts_ns,
                }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_fix::{Decoder, Dictionary};
    use portcullis_types::{AccountId, OrdType, SessionId, Side, TimeInForce, TradeId};
    use std::sync::Arc;

    use crate::fix_fixtures::{answer, instruments, message, taken, PERPETUALS};
    use crate::pipeline::Directory;

    const V: [BeginString; 2] = [BeginString::Fix44, BeginString::Fixt11];
    const NOW_NS: i64 = (20_785 * 86_400 + 36_000) * 1_000_000_000;

    fn directory() -> Arc<Directory> {
        Arc::new(Directory::of(&instruments(PERPETUALS, NOW_NS / 1_000_000)))
    }

    /// Decodes a NewOrderList as the session (dictionary) and the app do, for a session
    /// trading for ACC-A and ACC-B.
    fn list(v: BeginString, body: &[(u32, &str)]) -> Result<ListRequest, ListRefusal> {
        let dir = directory();
        let names: Vec<Box<str>> = vec!["ACC-A".into(), "ACC-B".into()];
        let ctx = Ctx {
            directory: &dir,
            allowed: &[AccountId(0), AccountId(1)],
            account_names: &names,
            session: SessionId(3),
            now_ns: NOW_NS,
            trading_day_end_secs: 0,
        };
        taken(v, b"E", body, |m| decode(m, &ctx)).unwrap_or_else(|r| panic!("{v}: {r:?}"))
    }

    const LIMIT_BUY: &[(u32, &str)] = &[
        (11, "w"),
        (55, "BTC-PERP"),
        (54, "1"),
        (38, "0.5"),
        (40, "2"),
        (44, "100"),
        (59, "1"),
    ];
    const STOP_SELL: &[(u32, &str)] = &[
        (11, "s"),
        (55, "BTC-PERP"),
        (54, "2"),
        (38, "0.5"),
        (40, "3"),
        (99, "90"),
    ];
    const MAKER_SELL: &[(u32, &str)] = &[
        (11, "t"),
        (55, "BTC-PERP"),
        (54, "2"),
        (38, "0.5"),
        (40, "2"),
        (18, "6"),
        (44, "120"),
    ];

    const MARKET_SELL: &[(u32, &str)] = &[
        (11, "m"),
        (55, "BTC-PERP"),
        (54, "2"),
        (38, "0.5"),
        (40, "1"),
    ];

    fn body<'a>(contingency: &'a str, orders: &[&[(u32, &'a str)]]) -> Vec<(u32, &'a str)> {
        let n: &'static str = ["0", "1", "2", "3", "4"][orders.len()];
        let mut b = vec![(CL_LIST_ID, "L1"), (1385, contingency), (73, n)];
        for o in orders {
            b.extend_from_slice(o);
        }
        b
    }

    /// Each order in placement order: its ClOrdID, whether it is pending, its join and its
    /// place in the client's order.
    fn shape(l: &ListRequest) -> Vec<(ClOrdId, bool, Option<Join>, usize)> {
        l.legs
            .iter()
            .map(|(o, j, at)| (o.cl_ord_id, o.pending, *j, *at))
            .collect()
    }

    #[test]
    fn lists_are_placed_so_that_each_order_joins_one_placed_before_it() {
        for v in V {
            // One cancels the other: in the client's order, the second joined to the first.
            let oco = list(v, &body("1", &[STOP_SELL, MAKER_SELL])).unwrap();
            assert_eq!(oco.client_id, ClOrdId::new(b"L1").unwrap());
            assert_eq!(oco.contingency, Contingency::Oco);
            let id = |s: &str| ClOrdId::new(s.as_bytes()).unwrap();
            assert_eq!(
                shape(&oco),
                [
                    (id("s"), false, None, 0),
                    (id("t"), false, Some(Join::OcoWith(0)), 1)
                ]
            );
            assert!(matches!(oco.legs[0].0.ord_type, OrdType::Stop { .. }));
            assert!(oco.legs[1].0.post_only && oco.legs[1].0.session == SessionId(3));
            // One triggers the other: the pending order first, then the working order.
            let oto = list(v, &body("2", &[LIMIT_BUY, STOP_SELL])).unwrap();
            assert_eq!(
                shape(&oto),
                [
                    (id("s"), true, None, 1),
                    (id("w"), false, Some(Join::Triggers(0)), 0)
                ]
            );
            // ... and of a pending pair.
            let otoco = list(v, &body("2", &[LIMIT_BUY, STOP_SELL, MAKER_SELL])).unwrap();
            assert_eq!(
                shape(&otoco),
                [
                    (id("s"), true, None, 1),
                    (id("t"), true, Some(Join::OcoWith(0)), 2),
                    (id("w"), false, Some(Join::Triggers(0)), 0)
                ]
            );
        }
    }

    #[test]
    fn venues_triggering_instructions_and_field_order_are_accepted() {
        // As a venue's FIX client sends an OTO: fields in its order, the instructions inside
        // the pending order, the contingency and the client's id after the orders.
        let b = [
            (73, "2"),
            (11, "w"),
            (55, "BTC-PERP"),
            (54, "1"),
            (38, "0.5"),
            (40, "2"),
            (44, "100"),
            (59, "1"),
            (11, "p"),
            (55, "BTC-PERP"),
            (54, "2"),
            (38, "0.5"),
            (40, "1"),
            (25010, "1"),
            (25011, "3"),
            (25012, "0"),
            (25013, "1"),
            (1385, "2"),
            (25014, "venue-style"),
        ];
        let l = list(BeginString::Fix44, &b).unwrap();
        assert_eq!(l.client_id, ClOrdId::new(b"venue-style").unwrap());
        assert_eq!(l.legs.len(), 2);
        assert!(l.legs[0].0.pending && l.legs[0].0.ord_type == OrdType::Market);
        assert_eq!(l.legs[1].0.price, Price(1000));
    }

    #[test]
    fn a_list_that_cannot_be_placed_is_refused_with_the_reason() {
        let text = |r: Result<ListRequest, ListRefusal>| r.unwrap_err().text.into_owned();
        let v = BeginString::Fixt11;
        let mut no_type = body("1", &[STOP_SELL, MAKER_SELL]);
        no_type.retain(|f| f.0 != 1385);
        assert!(text(list(v, &no_type)).starts_with("ContingencyType(1385) is required"));
        assert!(text(list(v, &body("3", &[STOP_SELL, MAKER_SELL])))
            .starts_with("ContingencyType(1385) must be"));
        let oco3 = list(v, &body("1", &[STOP_SELL, MAKER_SELL, LIMIT_BUY])).unwrap_err();
        assert_eq!(oco3.reason, RejectReason::OrderListRejected);
        // Every order counts, even beyond three (none of them is decoded then).
        let four = [STOP_SELL, MAKER_SELL, LIMIT_BUY, STOP_SELL];
        let r = list(v, &body("2", &four)).unwrap_err();
        assert!(
            r.text
                .starts_with("a one-cancels-the-other list has 2 orders"),
            "{}",
            r.text
        );
        assert_eq!(oco3.client_id, ClOrdId::new(b"L1").unwrap());
        let eth: Vec<(u32, &str)> = MAKER_SELL
            .iter()
            .map(|&(t, x)| if t == 55 { (t, "ETH-PERP") } else { (t, x) })
            .collect();
        assert_eq!(
            text(list(v, &body("1", &[STOP_SELL, &eth]))),
            "the orders of a list must be of one Symbol(55) and Account(1)"
        );
        let same_id: Vec<(u32, &str)> = MAKER_SELL
            .iter()
            .map(|&(t, x)| if t == 11 { (t, "s") } else { (t, x) })
            .collect();
        let dup = list(v, &body("1", &[STOP_SELL, &same_id])).unwrap_err();
        assert_eq!(dup.reason, RejectReason::DuplicateClOrdId);
        // An order's own problem is named with its place.
        let bad_tick: Vec<(u32, &str)> = MAKER_SELL
            .iter()
            .map(|&(t, x)| if t == 44 { (t, "120.25") } else { (t, x) })
            .collect();
        let r = list(v, &body("1", &[STOP_SELL, &bad_tick])).unwrap_err();
        assert!(r.text.starts_with("order 1: "), "{}", r.text);
        let unknown: Vec<(u32, &str)> = [STOP_SELL, &[(1, "ACC-Z")]].concat();
        let r = list(v, &body("1", &[&unknown, MAKER_SELL])).unwrap_err();
        assert_eq!(r.reason, RejectReason::UnknownAccount);
        let no_id = list(v, &body("1", &[STOP_SELL, MAKER_SELL])[1..]).unwrap_err();
        assert!(
            no_id.text.starts_with("ClListID(25014) or ListID(66)"),
            "{}",
            no_id.text
        );
    }

    fn event(kind: EventKind, cl: &str, order_id: u64) -> Event {
        Event {
            session: SessionId(3),
            account: AccountId(0),
            instrument: InstrumentId(0),
            kind,
            order_id: OrderId(order_id),
            cl_ord_id: ClOrdId::new(cl.as_bytes()).unwrap(),
            orig_cl_ord_id: ClOrdId::EMPTY,
            side: Side::Sell,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(1200),
            qty: Qty(500),
            cum_qty: Qty(0),
            leaves_qty: Qty(500),
            avg_px: Price(0),
            last_px: Price(0),
            last_qty: Qty(0),
            trade_id: TradeId(0),
            exec_id: 1,
            ts_ns: NOW_NS,
            received_ns: NOW_NS,
            details: Default::default(),
        }
    }

    /// A ListStatus as sent, checked against the version's dictionary.
    fn sent(v: BeginString, status: &ListStatus) -> Vec<(u32, String)> {
        let dir = directory();
        let account_names: Vec<Box<str>> = vec!["ACC-A".into()];
        let names = Names {
            directory: &dir,
            account_names: &account_names,
        };
        answer(v, b"N", |enc| status.encode(enc, &names, &mut Vec::new()))
    }

    fn values(m: &[(u32, String)], t: u32) -> Vec<&str> {
        m.iter()
            .filter(|(x, _)| *x == t)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn a_list_is_started_when_all_its_orders_are_accepted_and_done_when_all_have_ended() {
        let v = BeginString::Fix44;
        let req = list(v, &body("2", &[LIMIT_BUY, STOP_SELL, MAKER_SELL])).unwrap();
        let mut lists = Lists::default();
        let first = lists.start(req, InstrumentId(0), 9).unwrap();
        assert_eq!(first.cl_ord_id, ClOrdId::new(b"s").unwrap());
        assert!(!lists.is_empty());
        // Another order's events are none of the list's business.
        assert_eq!(
            lists.on_event(&event(EventKind::New, "x", 50)),
            ListStep::None
        );
        let ListStep::Send(second, id, seq) = lists.on_event(&event(EventKind::New, "s", 70))
        else {
            panic!("the second order goes next");
        };
        assert_eq!(
            (second.oco_with, id, seq),
            (Some(OrderId(70)), OrderId(70), 9)
        );
        let ListStep::Send(third, _, _) = lists.on_event(&event(EventKind::New, "t", 71)) else {
            panic!("the working order goes last");
        };
        assert_eq!((third.triggers, third.pending), (Some(OrderId(70)), false));
        let ListStep::Status(id, started) = lists.on_event(&event(EventKind::New, "w", 72)) else {
            panic!("started");
        };
        assert_eq!(id, OrderId(70));
        assert_eq!(
            lists.by_client_id(&ClOrdId::new(b"L1").unwrap()),
            Some(OrderId(70))
        );
        for v in V {
            let m = sent(v, &started);
            assert_eq!(values(&m, 66), ["70"]);
            assert_eq!(values(&m, 429), ["4"]);
            assert_eq!(values(&m, 431), ["3"]);
            assert_eq!(values(&m, 1385), ["2"]);
            assert_eq!(values(&m, 25014), ["L1"]);
            // In the client's order: the working order first.
            assert_eq!(values(&m, 11), ["w", "s", "t"]);
            assert_eq!(values(&m, 37), ["72", "70", "71"]);
            assert_eq!(values(&m, 55), ["BTC-PERP"; 4]);
            assert_eq!(values(&m, 68), ["3"]);
        }
        // The working order fills: the pair works; one of it fills, the other is cancelled.
        let mut fill = event(EventKind::Fill, "w", 72);
        fill.cum_qty = Qty(500);
        fill.leaves_qty = Qty(0);
        fill.avg_px = Price(1000);
        assert_eq!(lists.on_event(&fill), ListStep::Member(OrderId(70)));
        assert_eq!(
            lists.on_event(&event(EventKind::Activated, "s", 70)),
            ListStep::Member(OrderId(70))
        );
        let mut filled = event(EventKind::Fill, "t", 71);
        filled.cum_qty = Qty(500);
        filled.leaves_qty = Qty(0);
        filled.avg_px = Price(1200);
        assert_eq!(lists.on_event(&filled), ListStep::Member(OrderId(70)));
        let mut canceled = event(EventKind::Canceled, "s", 70);
        canceled.leaves_qty = Qty(0);
        let ListStep::Status(_, done) = lists.on_event(&canceled) else {
            panic!("all done");
        };
        assert!(lists.is_empty());
        assert_eq!(lists.by_client_id(&ClOrdId::new(b"L1").unwrap()), None);
        let m = sent(v, &done);
        assert_eq!((values(&m, 429), values(&m, 431)), (vec!["5"], vec!["6"]));
        assert_eq!(values(&m, 39), ["2", "4", "2"]);
        assert_eq!(values(&m, 14), ["0.500", "0.000", "0.500"]);
        assert_eq!(values(&m, 84), ["0.000", "0.500", "0.000"]);
        assert_eq!(values(&m, 6), ["100.0", "0.0", "120.0"]);
    }

    #[test]
    fn a_list_with_a_refused_order_is_refused_whole() {
        let v = BeginString::Fixt11;
        let mut lists = Lists::default();
        let req = list(v, &body("1", &[STOP_SELL, MAKER_SELL])).unwrap();
        lists.start(req, InstrumentId(0), 4);
        assert!(matches!(
            lists.on_event(&event(EventKind::New, "s", 80)),
            ListStep::Send(..)
        ));
        let refused = event(EventKind::Rejected(RejectReason::OrderListRejected), "t", 0);
        let ListStep::Refused { list: id, status } = lists.on_event(&refused) else {
            panic!("refused");
        };
        assert_eq!(id, Some(OrderId(80)));
        let m = sent(v, &status);
        assert_eq!((values(&m, 429), values(&m, 431)), (vec!["2"], vec!["7"]));
        assert_eq!(values(&m, 1386), ["7"]);
        assert_eq!(values(&m, 39), ["0", "8"]);
        assert_eq!(values(&m, 58), [RejectReason::OrderListRejected.text()]);
        // The core cancels the first order: its report still carries the list's id, and no
        // other status follows.
        let mut canceled = event(EventKind::Canceled, "s", 80);
        canceled.leaves_qty = Qty(0);
        assert_eq!(lists.on_event(&canceled), ListStep::Member(OrderId(80)));
        assert!(lists.is_empty());

        // Refused before any order is placed (the queue was full): no id, nothing to cancel.
        let req = list(v, &body("2", &[LIMIT_BUY, STOP_SELL])).unwrap();
        let first = lists.start(req, InstrumentId(0), 5).unwrap();
        let (list, status) = lists
            .fail(first.cl_ord_id, RejectReason::ServerBusy, NOW_NS)
            .unwrap();
        assert_eq!(list, None);
        let m = sent(v, &status);
        assert_eq!(values(&m, 66), ["L1"]);
        assert_eq!(values(&m, 1386), ["99"]);
        assert_eq!(values(&m, 58), ["server busy"]);
        assert!(lists.is_empty());
        // A refusal at decoding.
        let r = list_refusal();
        for v in V {
            let m = sent(v, &ListStatus::refused(&r, NOW_NS));
            assert_eq!(values(&m, 66), ["L9"]);
            assert_eq!(values(&m, 73), ["0"]);
            assert_eq!(values(&m, 58), ["bad"]);
        }
    }

    #[test]
    fn what_a_session_keeps_of_its_lists_is_bounded_and_ends_with_its_connection() {
        let v = BeginString::Fix44;
        let req = list(v, &body("1", &[STOP_SELL, MAKER_SELL])).unwrap();
        let mut lists = Lists::default();
        // Working lists beyond the bound: the oldest is forgotten.
        for k in 0..=MAX_LISTS as u64 {
            let first = lists.start(req.clone(), InstrumentId(0), k).unwrap();
            let id = 2 * k + 1;
            let mut ev = event(EventKind::New, "s", id);
            ev.cl_ord_id = first.cl_ord_id;
            assert!(matches!(lists.on_event(&ev), ListStep::Send(..)));
            let second = event(EventKind::New, "t", id + 1);
            assert!(matches!(lists.on_event(&second), ListStep::Status(..)));
        }
        assert_eq!(lists.live.len(), MAX_LISTS);
        assert_eq!(
            lists.on_event(&event(EventKind::Canceled, "s", 1)),
            ListStep::None
        );
        assert_eq!(
            lists.on_event(&event(EventKind::PartialFill, "s", 3)),
            ListStep::Member(OrderId(3))
        );
        assert!(lists.member_of.len() <= 2 * MAX_LISTS && lists.age.len() <= 2 * MAX_LISTS);

        // A list being placed when the connection closes: its placed order is to be cancelled.
        lists.start(req.clone(), InstrumentId(0), 1);
        assert!(matches!(
            lists.on_event(&event(EventKind::New, "s", 9001)),
            ListStep::Send(..)
        ));
        lists.start(
            list(v, &body("2", &[LIMIT_BUY, STOP_SELL])).unwrap(),
            InstrumentId(0),
            2,
        );
        assert_eq!(
            lists.abandon(),
            [(OrderId(9001), AccountId(0), InstrumentId(0))]
        );
        assert!(lists.has_room());
        // A list without orders starts nothing.
        let empty = ListRequest {
            legs: Vec::new(),
            ..req.clone()
        };
        assert_eq!(lists.start(empty, InstrumentId(0), 3), None);
        assert!(lists.abandon().is_empty());
        // With cancel-on-disconnect nothing of the session's lists works on.
        lists.connection_ended(false);
        assert!(!lists.is_empty());
        lists.connection_ended(true);
        assert!(lists.is_empty());
    }

    #[test]
    fn answers_to_list_requests_say_working_cancelling_or_unknown() {
        let req = list(BeginString::Fix44, &body("1", &[STOP_SELL, MAKER_SELL])).unwrap();
        let mut lists = Lists::default();
        lists.start(req, InstrumentId(0), 1);
        lists.on_event(&event(EventKind::New, "s", 40));
        lists.on_event(&event(EventKind::New, "t", 41));
        let l = lists.working(OrderId(40)).cloned().unwrap();
        assert_eq!(l.account, AccountId(0));
        assert!(lists.working(OrderId(41)).is_none());
        for v in V {
            for (state, code) in [(ListState::Working, "3"), (ListState::Cancelling, "4")] {
                let m = sent(
                    v,
                    &ListStatus {
                        list: l.clone(),
                        state,
                        ts_ns: NOW_NS,
                    },
                );
                assert_eq!((values(&m, 429), values(&m, 431)), (vec!["2"], vec![code]));
                assert_eq!(values(&m, 11), ["s", "t"]);
            }
            let m = sent(
                v,
                &ListStatus::unknown(ClOrdId::new(b"999").unwrap(), NOW_NS),
            );
            assert_eq!(values(&m, 66), ["999"]);
            assert_eq!(values(&m, 1386), ["5"]);
            assert!(values(&m, 25014).is_empty());
            let m = sent(v, &ListStatus::unknown(ClOrdId::EMPTY, NOW_NS));
            assert_eq!(values(&m, 66), ["NONE"]);
        }
    }

    proptest::proptest! {
        /// Any NewOrderList the dictionary lets through is either a list the engine can be
        /// asked for (2 or 3 orders, distinct ids, each joined to one placed before it) whose
        /// start is a valid ListStatus, or refused with a reason in a valid ListStatus.
        #[test]
        fn any_list_is_placed_whole_or_refused_with_a_valid_status(
            orders in proptest::collection::vec(
                (
                    0..4usize,
                    proptest::option::weighted(0.25, (
                        proptest::sample::select(vec![11u32, 55, 54, 40, 44, 99, 38, 18, 59]),
                        proptest::sample::select(vec!["o0", "ETH-PERP", "NOPE", "3", "1", "4", "90", "0", "6", "a", "11"]),
                    )),
                ),
                1..5,
            ),
            contingency in proptest::option::weighted(0.9, proptest::sample::select(vec!["1", "1", "2", "2", "4"])),
            client_id in proptest::option::weighted(0.9, proptest::sample::select(vec!["L1", "L1", "L1", "x y"])),
            v in proptest::sample::select(V.to_vec()),
        ) {
            let n = orders.len().to_string();
            let ids = ["o0", "o1", "o2", "o3"];
            let mut body: Vec<(u32, &str)> = vec![(73, &n)];
            for (k, (template, change)) in orders.iter().enumerate() {
                let base = [LIMIT_BUY, STOP_SELL, MAKER_SELL, MARKET_SELL][*template];
                for &(t, x) in base {
                    let x = if t == 11 { ids[k] } else { x };
                    match change {
                        Some((ct, cx)) if *ct == t => body.push((t, cx)),
                        _ => body.push((t, x)),
                    }
                }
                if let Some((ct, cx)) = change.filter(|(ct, _)| base.iter().all(|f| f.0 != *ct)) {
                    body.push((ct, cx));
                }
            }
            body.extend(contingency.map(|c| (1385, c)));
            body.extend(client_id.map(|c| (25014, c)));
            let bytes = message(v, b"E", &body);
            let mut d = Decoder::new();
            let m = d.decode(&bytes).unwrap();
            if Dictionary::for_version(v).validate(&m).is_err() {
                // The session answers it with a Reject; the app never sees it.
                return Ok(());
            }
            match list(v, &body) {
                Err(r) => {
                    proptest::prop_assert!(!r.text.is_empty());
                    let m = sent(v, &ListStatus::refused(&r, NOW_NS));
                    proptest::prop_assert_eq!(values(&m, 431), vec!["7"]);
                }
                Ok(req) => {
                    let k = req.legs.len();
                    proptest::prop_assert!(k == 2 || k == 3);
                    for (i, (o, join, _)) in req.legs.iter().enumerate() {
                        let to = match join {
                            None => None,
                            Some(Join::OcoWith(t)) | Some(Join::Triggers(t)) => Some(*t),
                        };
                        proptest::prop_assert_eq!(to.is_none(), i == 0);
                        proptest::prop_assert!(to.map_or(true, |t| t < i));
                        proptest::prop_assert!(req.legs[..i].iter().all(|p| p.0.cl_ord_id != o.cl_ord_id));
                    }
                    let mut lists = Lists::default();
                    let mut next = lists.start(req, InstrumentId(0), 1).unwrap();
                    for i in 0..k {
                        let mut e = event(EventKind::New, "a", 100 + i as u64);
                        e.cl_ord_id = next.cl_ord_id;
                        match lists.on_event(&e) {
                            ListStep::Send(o, _, _) => next = o,
                            ListStep::Status(_, st) => {
                                proptest::prop_assert_eq!(i + 1, k);
                                let m = sent(v, &st);
                                proptest::prop_assert_eq!(values(&m, 429), vec!["4"]);
                                proptest::prop_assert_eq!(values(&m, 11).len(), k);
                            }
                            other => proptest::prop_assert!(false, "{other:?}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_list_from_before_a_restart_is_followed_again_until_it_ends() {
        // An OTO list as the history has it: the pending order placed first.
        let mut pending = event(EventKind::New, "p", 60);
        pending.details.pending = true;
        let working = event(EventKind::New, "w", 61);
        let past = PastList {
            id: OrderId(60),
            instrument: InstrumentId(0),
            triggers: true,
            orders: vec![OrderId(60), OrderId(61)],
            created_ns: NOW_NS,
        };
        let orders = [
            PastOrder::of_event(&pending, OrderState::Pending),
            PastOrder::of_event(&working, OrderState::Working),
        ];
        let l = OrderList::from_history(AccountId(0), &past, &orders);
        assert_eq!(l.contingency, Contingency::Oto);
        let shown: Vec<_> = l.orders.iter().map(|m| (m.order_id.0, m.status)).collect();
        assert_eq!(shown, [(61, b'0'), (60, b'A')]);
        let m = sent(
            BeginString::Fix44,
            &ListStatus {
                list: l.clone(),
                state: ListState::Working,
                ts_ns: NOW_NS,
            },
        );
        assert_eq!(values(&m, 431), ["3"]);
        assert!(values(&m, 25014).is_empty());

        let mut lists = Lists::default();
        lists.adopt(l.clone());
        assert_eq!(lists.working(OrderId(60)), Some(&l));
        let mut canceled = event(EventKind::Canceled, "w", 61);
        canceled.leaves_qty = Qty(0);
        assert_eq!(lists.on_event(&canceled), ListStep::Member(OrderId(60)));
        canceled.order_id = OrderId(60);
        let ListStep::Status(_, done) = lists.on_event(&canceled) else {
            panic!("all done");
        };
        assert_eq!(done.state, ListState::AllDone);
        // Ended, it is known as it ended, and the history (which lags) does not revive it.
        assert!(lists.working(OrderId(60)).is_none());
        let ended = lists.ended(OrderId(60)).unwrap().clone();
        assert!(ended.orders.iter().all(Member::is_ended));
        lists.adopt(l);
        assert!(lists.working(OrderId(60)).is_none());
        let m = sent(
            BeginString::Fix44,
            &ListStatus {
                list: ended,
                state: ListState::Working,
                ts_ns: NOW_NS,
            },
        );
        assert_eq!(values(&m, 431), ["6"]);
    }

    fn list_refusal() -> ListRefusal {
        refusal(
            ClOrdId::new(b"L9").unwrap(),
            RejectReason::Unsupported,
            "bad",
        )
    }
}
