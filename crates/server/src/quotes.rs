//! Mass quoting over FIX (4.4 and 5.0 SP2): MassQuote (i) and QuoteCancel (Z), answered with
//! MassQuoteAcknowledgement (b), as an options market maker keeps two-sided quotes on many
//! series with one message.
//!
//! A connection has at most one quote per instrument, a bid and an offer, each a GTC limit
//! order of the connection's account in the books (so quotes trade with orders from FIX and
//! WebSocket alike, and pass every risk check an order does, throttle included: a side is one
//! order). A quote entry replaces the instrument's quote:
//!
//! | the side in the entry | no quote on that side yet | a quote on that side |
//! |---|---|---|
//! | price and size > 0 | a new order | unchanged if the same; else a cancel/replace to the new price and a total quantity of what has filled plus the size (a size decrease at the same price keeps its place in the queue) |
//! | no price, or size 0 | nothing | cancelled |
//!
//! Sizes come from BidSize(134) / OfferSize(135), else DefBidSize(293) / DefOfferSize(294).
//! The orders' ClOrdIDs are the server's (`Q<connection>-<n>`); their fills, and cancels the
//! market maker did not ask for (kill switch, expiry, another session's cancel, self-trade
//! prevention), are reported as ExecutionReports like any order's. What the quotes' own orders
//! answer (accepted, replaced, cancelled, refused) goes into the acknowledgement instead.
//!
//! A side whose update is refused (a price outside the band, a risk limit) is cancelled rather
//! than left at its old price: a quote never stays where the market maker has moved away
//! from. Quotes never outlive their connection: mass quoting needs the session's
//! cancel-on-disconnect.
//!
//! The acknowledgement follows QuoteResponseLevel(301): 2 lists every entry, with
//! QuoteEntryRejectReason(368) on the refused ones; 0 (the default), 1 and 3 only list refused
//! entries and are not sent when nothing was refused. It leaves once the core thread has
//! answered every order of the message, so the market maker's quotes are in the books (or
//! refused) when it reads it. A QuoteCancel (QuoteCancelType(298) 1 for the instruments it
//! lists, 4 for all) is always acknowledged (QuoteStatus(297) 1 or 4), after the cancels.
//!
//! Market maker protection (a session's `mmp`): when the quotes' fills within `interval_ms` add
//! up to `qty` (each fill's quantity in its instrument's units), every quote of the connection
//! is cancelled at once (ExecutionReports), an unsolicited MassQuoteAcknowledgement with
//! QuoteStatus 6 (removed from market) says why, and MassQuotes are refused for `frozen_ms`.
//! It acts on the connection's task as the fills are reported, so fills the core thread makes
//! before the cancels reach it still happen.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use portcullis_fix::{tag, Encoder, MessageRef, SeqNum};
use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, Command, DecimalError, Event, EventKind, InstrumentId,
    InstrumentStatus, NewOrder, OrdType, OrderId, Price, Qty, RejectReason, ReplaceOrder, Side,
    TimeInForce,
};

use crate::order_codec::{self, Ctx};
use crate::pipeline::DirEntry;

/// QuoteReqID(131), QuoteID(117), QuoteType(537), QuoteResponseLevel(301).
const QUOTE_REQ_ID: u32 = 131;
const QUOTE_ID: u32 = 117;
const QUOTE_TYPE: u32 = 537;
const QUOTE_RESPONSE_LEVEL: u32 = 301;
/// DefBidSize(293), DefOfferSize(294).
const DEF_BID_SIZE: u32 = 293;
const DEF_OFFER_SIZE: u32 = 294;
/// NoQuoteSets(296), QuoteSetID(302), TotNoQuoteEntries(304), LastFragment(893).
const NO_QUOTE_SETS: u32 = 296;
const QUOTE_SET_ID: u32 = 302;
const TOT_NO_QUOTE_ENTRIES: u32 = 304;
const LAST_FRAGMENT: u32 = 893;
/// NoQuoteEntries(295), QuoteEntryID(299).
const NO_QUOTE_ENTRIES: u32 = 295;
const QUOTE_ENTRY_ID: u32 = 299;
/// BidPx(132), OfferPx(133), BidSize(134), OfferSize(135).
const BID_PX: u32 = 132;
const OFFER_PX: u32 = 133;
const BID_SIZE: u32 = 134;
const OFFER_SIZE: u32 = 135;
/// QuoteStatus(297), QuoteRejectReason(300), QuoteEntryRejectReason(368), QuoteCancelType(298).
const QUOTE_STATUS: u32 = 297;
const QUOTE_REJECT_REASON: u32 = 300;
const QUOTE_ENTRY_REJECT_REASON: u32 = 368;
const QUOTE_CANCEL_TYPE: u32 = 298;

/// The MsgSeqNum given with requests that answer no message of the client (market maker
/// protection's cancels); the caller counts them against the next one it expects.
pub const NO_MESSAGE: SeqNum = 0;

/// Most quote entries in one MassQuote.
pub const MAX_ENTRIES: usize = 100;
/// Most MassQuotes and QuoteCancels of a connection waiting for the core thread's answers; one
/// more is refused at once.
pub const MAX_WAITING: usize = 64;
/// Refused entries named in an acknowledgement's Text(58).
const TEXT_ENTRIES: usize = 8;

/// Decimal places of [`Mmp::qty`]: fills of every instrument are added at this scale.
pub const MMP_QTY_SCALE: u8 = 8;

/// Market maker protection limits of a session (`mmp = { interval_ms, qty, frozen_ms }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mmp {
    /// The window fills are added over, in ns.
    pub interval_ns: i64,
    /// The filled quantity (at [`MMP_QTY_SCALE`]) that trips the protection.
    pub qty: i128,
    /// How long MassQuotes are refused after it trips, in ns.
    pub frozen_ns: i64,
}

/// The protection's state: recent fills, and the end of a freeze.
#[derive(Debug, Default)]
struct MmpState {
    /// (time, quantity at [`MMP_QTY_SCALE`]) of the fills within the window, oldest first.
    fills: VecDeque<(i64, i128)>,
    sum: i128,
    frozen_until: i64,
}

/// `qty` at `scale` decimals, at [`MMP_QTY_SCALE`].
fn at_mmp_scale(qty: Qty, scale: u8) -> i128 {
    let q = i128::from(qty.0);
    match scale.cmp(&MMP_QTY_SCALE) {
        std::cmp::Ordering::Less => q * 10i128.pow(u32::from(MMP_QTY_SCALE - scale)),
        std::cmp::Ordering::Equal => q,
        std::cmp::Ordering::Greater => q / 10i128.pow(u32::from(scale - MMP_QTY_SCALE)),
    }
}

/// QuoteStatus(297) values.
mod status {
    pub const ACCEPTED: u64 = 0;
    pub const CANCELED_FOR_SYMBOL: u64 = 1;
    pub const CANCELED_ALL: u64 = 4;
    pub const REJECTED: u64 = 5;
    pub const REMOVED_FROM_MARKET: u64 = 6;
}

/// QuoteRejectReason(300) / QuoteEntryRejectReason(368) values.
mod code {
    pub const UNKNOWN_SYMBOL: u32 = 1;
    pub const EXCHANGE_CLOSED: u32 = 2;
    pub const EXCEEDS_LIMIT: u32 = 3;
    pub const TOO_LATE: u32 = 4;
    pub const DUPLICATE: u32 = 6;
    pub const INVALID_SPREAD: u32 = 7;
    pub const INVALID_PRICE: u32 = 8;
    pub const NOT_AUTHORIZED: u32 = 9;
    pub const OTHER: u32 = 99;
}

/// The QuoteEntryRejectReason(368) of an order refused by the core thread.
fn entry_code(reason: RejectReason) -> u32 {
    match reason {
        RejectReason::UnknownInstrument => code::UNKNOWN_SYMBOL,
        RejectReason::InstrumentNotTrading => code::EXCHANGE_CLOSED,
        RejectReason::NotionalTooLarge
        | RejectReason::TooManyOpenOrders
        | RejectReason::CreditLimit
        | RejectReason::PositionLimit
        | RejectReason::QtyTooLarge => code::EXCEEDS_LIMIT,
        RejectReason::BadTick | RejectReason::PriceBand => code::INVALID_PRICE,
        RejectReason::UnknownOrder | RejectReason::TooLateToEnter => code::TOO_LATE,
        RejectReason::DuplicateClOrdId => code::DUPLICATE,
        RejectReason::KillSwitch | RejectReason::UnknownAccount => code::NOT_AUTHORIZED,
        RejectReason::BadLot
        | RejectReason::QtyTooSmall
        | RejectReason::Unsupported
        | RejectReason::PostOnlyWouldTrade
        | RejectReason::Throttled
        | RejectReason::ServerBusy
        | RejectReason::OrderListRejected
        | RejectReason::VenueRejected
        | RejectReason::CancelPending => code::OTHER,
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "bid",
        Side::Sell => "offer",
    }
}

/// One side of a quote, as the server last asked the core thread for it.
#[derive(Debug, Clone, Copy)]
struct QuoteSide {
    /// The ClOrdID of the last request for it (the order's ClOrdID once answered).
    cl: ClOrdId,
    /// The ClOrdID of the new order that started it: its answer carries the OrderID.
    origin: ClOrdId,
    /// The engine's id, once the new order is answered.
    order_id: Option<OrderId>,
    price: Price,
    /// Total quantity, fills included.
    qty: Qty,
    /// Filled so far, as reported.
    cum: Qty,
}

/// What an order request of the quotes was for.
#[derive(Debug, Clone, Copy)]
enum Asked {
    New,
    /// A cancel/replace of the side's order.
    Replace,
    Cancel,
    /// A cancel by market maker protection: reported to the client.
    Protect,
}

/// A request in the ingress queue whose first report answers part of an acknowledgement.
#[derive(Debug, Clone, Copy)]
struct Answer {
    /// The acknowledgement (its number) and entry it answers; none for a cancel of a side
    /// whose update was refused.
    ack: Option<(u64, u32)>,
    key: (InstrumentId, Side),
    asked: Asked,
    /// The MsgSeqNum of the message it came from (requests are counted against it).
    seq: SeqNum,
    /// The side's `origin` when it was asked: which order it is about.
    origin: ClOrdId,
}

/// A working order of the quotes.
#[derive(Debug, Clone, Copy)]
struct Live {
    key: (InstrumentId, Side),
    /// The ClOrdID of the new order that placed it.
    origin: ClOrdId,
}

/// One quote entry of an acknowledgement.
#[derive(Debug, Clone)]
struct AckEntry {
    set_id: Box<[u8]>,
    entry_id: Box<[u8]>,
    symbol: Box<[u8]>,
    /// QuoteEntryRejectReason(368) and why.
    reject: Option<(u32, String)>,
}

/// A MassQuoteAcknowledgement (b) being collected, sent once every order request of its
/// message is answered.
#[derive(Debug, Clone)]
pub struct Ack {
    quote_id: Option<Box<[u8]>>,
    quote_req_id: Option<Box<[u8]>>,
    /// QuoteResponseLevel(301) as asked (echoed), if given.
    level: Option<u64>,
    /// For a QuoteCancel: its QuoteStatus(297) (1 or 4); 6 for the notice that market maker
    /// protection took every quote out.
    canceled: Option<u64>,
    /// Text(58) of such a notice.
    notice: Option<String>,
    /// The whole message refused: QuoteRejectReason(300) and why.
    refused: Option<(u32, Cow<'static, str>)>,
    entries: Vec<AckEntry>,
    /// Order requests not answered yet.
    outstanding: u32,
}

impl Ack {
    fn new(msg: &MessageRef<'_>) -> Self {
        let owned = |t| msg.get(t).map(Box::<[u8]>::from);
        Ack {
            quote_id: owned(QUOTE_ID),
            quote_req_id: owned(QUOTE_REQ_ID),
            level: msg.get_u64(QUOTE_RESPONSE_LEVEL),
            canceled: None,
            notice: None,
            refused: None,
            entries: Vec::new(),
            outstanding: 0,
        }
    }

    fn refuse(mut self, code: u32, text: impl Into<Cow<'static, str>>) -> Self {
        self.refused = Some((code, text.into()));
        self
    }

    fn reject_entry(&mut self, entry: usize, code: u32, text: String) {
        if let Some(e) = self.entries.get_mut(entry) {
            // The first refusal of an entry is the one reported.
            e.reject.get_or_insert((code, text));
        }
    }

    /// Whether the market maker gets this acknowledgement: always for a refused message or a
    /// QuoteCancel; for a MassQuote at level 2, or when an entry was refused.
    pub fn is_sent(&self) -> bool {
        self.refused.is_some()
            || self.canceled.is_some()
            || self.level == Some(2)
            || self.entries.iter().any(|e| e.reject.is_some())
    }

    /// QuoteStatus(297).
    fn status(&self) -> u64 {
        if self.refused.is_some() {
            return status::REJECTED;
        }
        if let Some(s) = self.canceled {
            return s;
        }
        if !self.entries.is_empty() && self.entries.iter().all(|e| e.reject.is_some()) {
            status::REJECTED
        } else {
            status::ACCEPTED
        }
    }

    /// The body of the MassQuoteAcknowledgement.
    pub fn encode(&self, enc: &mut Encoder) {
        if let Some(r) = &self.quote_req_id {
            enc.str(QUOTE_REQ_ID, r);
        }
        if let Some(q) = &self.quote_id {
            enc.str(QUOTE_ID, q);
        }
        enc.uint(QUOTE_STATUS, self.status());
        if let Some((c, _)) = &self.refused {
            enc.uint(QUOTE_REJECT_REASON, u64::from(*c));
        }
        if let Some(l) = self.level {
            enc.uint(QUOTE_RESPONSE_LEVEL, l);
        }
        if let Some(text) = self.text() {
            enc.str(tag::TEXT, text.as_bytes());
        }
        let all = self.level == Some(2);
        let listed: Vec<&AckEntry> = self
            .entries
            .iter()
            .filter(|e| all || e.reject.is_some())
            .collect();
        if listed.is_empty() {
            return;
        }
        // Consecutive entries of one QuoteSetID form a set, as they came.
        let sets = 1 + listed
            .windows(2)
            .filter(|w| w[0].set_id != w[1].set_id)
            .count();
        enc.uint(NO_QUOTE_SETS, sets as u64);
        for run in listed.chunk_by(|a, b| a.set_id == b.set_id) {
            enc.str(QUOTE_SET_ID, &run[0].set_id);
            enc.uint(TOT_NO_QUOTE_ENTRIES, run.len() as u64);
            enc.uint(NO_QUOTE_ENTRIES, run.len() as u64);
            for e in run {
                enc.str(QUOTE_ENTRY_ID, &e.entry_id);
                if !e.symbol.is_empty() {
                    enc.str(tag::SYMBOL, &e.symbol);
                }
                if let Some((c, _)) = &e.reject {
                    enc.uint(QUOTE_ENTRY_REJECT_REASON, u64::from(*c));
                }
            }
        }
    }

    /// Text(58): why the message, or which entries, were refused.
    fn text(&self) -> Option<String> {
        if let Some((_, t)) = &self.refused {
            return Some(t.to_string());
        }
        if let Some(t) = &self.notice {
            return Some(t.clone());
        }
        let refused: Vec<&AckEntry> = self.entries.iter().filter(|e| e.reject.is_some()).collect();
        if refused.is_empty() {
            return None;
        }
        let mut text = String::new();
        for e in refused.iter().take(TEXT_ENTRIES) {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(&String::from_utf8_lossy(&e.entry_id));
            text.push_str(": ");
            text.push_str(e.reject.as_ref().map_or("", |(_, t)| t));
        }
        if refused.len() > TEXT_ENTRIES {
            text.push_str(&format!("; and {} more", refused.len() - TEXT_ENTRIES));
        }
        Some(text)
    }
}

/// A quote entry as sent, before it is checked.
#[derive(Debug, Default, Clone, Copy)]
struct RawEntry<'m> {
    set_id: &'m [u8],
    entry_id: &'m [u8],
    symbol: &'m [u8],
    bid_px: Option<&'m [u8]>,
    offer_px: Option<&'m [u8]>,
    bid_size: Option<&'m [u8]>,
    offer_size: Option<&'m [u8]>,
}

/// The entries of a MassQuote in message order (the session has checked the groups'
/// structure against the dictionary), or why the message is refused.
fn raw_entries<'m>(msg: &MessageRef<'m>) -> Result<Vec<RawEntry<'m>>, (u32, &'static str)> {
    let mut set: &[u8] = b"";
    let mut entries: Vec<RawEntry<'m>> = Vec::new();
    let mut in_entry = false;
    for f in msg.fields() {
        match f.tag {
            QUOTE_SET_ID => {
                set = f.value;
                in_entry = false;
            }
            LAST_FRAGMENT if f.value != b"Y" => {
                return Err((code::OTHER, "fragmented mass quotes (LastFragment(893)=N) are not supported: send each set whole"));
            }
            QUOTE_ENTRY_ID => {
                if entries.len() == MAX_ENTRIES {
                    return Err((
                        code::EXCEEDS_LIMIT,
                        "more than 100 quote entries in one MassQuote",
                    ));
                }
                entries.push(RawEntry {
                    set_id: set,
                    entry_id: f.value,
                    ..RawEntry::default()
                });
                in_entry = true;
            }
            t if in_entry => {
                let e = entries.last_mut().expect("in an entry");
                match t {
                    tag::SYMBOL => e.symbol = f.value,
                    BID_PX => e.bid_px = Some(f.value),
                    OFFER_PX => e.offer_px = Some(f.value),
                    BID_SIZE => e.bid_size = Some(f.value),
                    OFFER_SIZE => e.offer_size = Some(f.value),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if entries.is_empty() {
        return Err((
            code::OTHER,
            "no quote entries: each QuoteSet needs NoQuoteEntries(295) with QuoteEntryID(299)",
        ));
    }
    Ok(entries)
}

/// One side of an entry: `None` if it is not quoted (no price, or size 0).
fn entry_side(
    px: Option<&[u8]>,
    size: Option<&[u8]>,
    default_size: Option<&[u8]>,
    side: Side,
    d: &DirEntry,
) -> Result<Option<(Price, Qty)>, (u32, String)> {
    let (px_name, size_name) = match side {
        Side::Buy => ("BidPx(132)", "BidSize(134)"),
        Side::Sell => ("OfferPx(133)", "OfferSize(135)"),
    };
    let size = match size.or(default_size) {
        None => None,
        Some(text) => match Qty::parse(text, d.qty_scale) {
            Ok(q) if q.0 < 0 => return Err((code::OTHER, format!("{size_name} is negative"))),
            Ok(q) => Some(q),
            Err(DecimalError::TooPrecise { scale }) => {
                return Err((
                    code::OTHER,
                    format!("{size_name} has more than {scale} decimal places for this instrument"),
                ))
            }
            Err(_) => return Err((code::OTHER, format!("{size_name} is not a valid quantity"))),
        },
    };
    let price = match px {
        None => None,
        Some(text) => match Price::parse(text, d.price_scale) {
            Ok(p) if p.0 <= 0 => {
                return Err((code::INVALID_PRICE, format!("{px_name} must be positive")))
            }
            Ok(p) => Some(p),
            Err(DecimalError::TooPrecise { scale }) => {
                return Err((
                    code::INVALID_PRICE,
                    format!("{px_name} has more than {scale} decimal places for this instrument"),
                ))
            }
            Err(_) => {
                return Err((
                    code::INVALID_PRICE,
                    format!("{px_name} is not a valid price"),
                ))
            }
        },
    };
    match (price, size) {
        (_, Some(q)) if q.0 == 0 => Ok(None),
        (None, None) => Ok(None),
        (Some(p), Some(q)) => Ok(Some((p, q))),
        (Some(_), None) => Err((
            code::OTHER,
            format!("{size_name} is required with {px_name} (or a default size)"),
        )),
        (None, Some(_)) => Err((
            code::INVALID_PRICE,
            format!("{size_name} without {px_name}"),
        )),
    }
}

/// The quotes of one FIX connection: what it has asked of the core thread, the answers it
/// waits for, the acknowledgements to send. See the module docs.
#[derive(Debug)]
pub struct Quoting {
    /// ClOrdIDs of the quotes' orders: this prefix, then a counter.
    prefix: String,
    next_cl: u64,
    /// The account the connection quotes for (set by its first MassQuote).
    account: Option<AccountId>,
    sides: HashMap<(InstrumentId, Side), QuoteSide>,
    /// Working orders of the quotes (including sides since replaced by a new order).
    by_order: HashMap<OrderId, Live>,
    answers: HashMap<ClOrdId, Answer>,
    acks: VecDeque<Ack>,
    /// The number of `acks[0]`.
    first_ack: u64,
    /// Quantity decimals of the instruments quoted.
    qty_scales: HashMap<InstrumentId, u8>,
    mmp: Option<(Mmp, MmpState)>,
}

impl Quoting {
    /// The quotes of a connection that started at `start_ms` (ms since the epoch): its
    /// orders' ClOrdIDs start with `Q` and that time in base 36, unique per session and day
    /// as ClOrdIDs must be.
    pub fn new(start_ms: i64, mmp: Option<Mmp>) -> Self {
        let mut n = start_ms.unsigned_abs();
        let mut digits = Vec::new();
        while n > 0 || digits.is_empty() {
            digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
            n /= 36;
        }
        digits.reverse();
        Quoting {
            prefix: format!("Q{}-", String::from_utf8_lossy(&digits)),
            next_cl: 1,
            account: None,
            sides: HashMap::new(),
            by_order: HashMap::new(),
            answers: HashMap::new(),
            acks: VecDeque::new(),
            first_ack: 0,
            qty_scales: HashMap::new(),
            mmp: mmp.map(|m| (m, MmpState::default())),
        }
    }

    /// Whether the connection has quotes or quote requests in flight (if not, its reports
    /// need no look-up here).
    pub fn is_active(&self) -> bool {
        !self.by_order.is_empty() || !self.answers.is_empty() || !self.acks.is_empty()
    }

    fn next_cl(&mut self) -> ClOrdId {
        let id = format!("{}{}", self.prefix, self.next_cl);
        self.next_cl += 1;
        ClOrdId::new(id.as_bytes()).expect("a short ASCII id")
    }

    fn push_ack(&mut self, ack: Ack) -> u64 {
        self.acks.push_back(ack);
        self.first_ack + self.acks.len() as u64 - 1
    }

    fn ack_mut(&mut self, id: u64) -> Option<&mut Ack> {
        let i = id.checked_sub(self.first_ack)?;
        self.acks.get_mut(i as usize)
    }

    /// The next acknowledgement whose answers are all in, oldest first (acknowledgements
    /// leave in the order of their messages). The caller sends it if [`Ack::is_sent`].
    pub fn next_ack(&mut self) -> Option<Ack> {
        if self.acks.front()?.outstanding > 0 {
            return None;
        }
        self.first_ack += 1;
        self.acks.pop_front()
    }

    /// Takes a MassQuote (i) received as MsgSeqNum `seq`: checks it and asks the core thread
    /// for the order requests it needs through `submit` (false: the ingress queue is full).
    #[allow(clippy::too_many_arguments)]
    pub fn mass_quote(
        &mut self,
        msg: &MessageRef<'_>,
        ctx: &Ctx<'_>,
        cancel_on_disconnect: bool,
        seq: SeqNum,
        submit: &mut dyn FnMut(Command, SeqNum) -> bool,
    ) {
        let ack = Ack::new(msg);
        if self.acks.len() >= MAX_WAITING {
            self.push_ack(ack.refuse(
                code::OTHER,
                "too many mass quotes waiting for their answers: wait for the acknowledgements",
            ));
            return;
        }
        if let Some((_, state)) = &self.mmp {
            if ctx.now_ns < state.frozen_until {
                let ms = (state.frozen_until - ctx.now_ns).div_euclid(1_000_000) + 1;
                let text = format!(
                    "market maker protection tripped: quotes are refused for another {ms} ms"
                );
                self.push_ack(ack.refuse(code::OTHER, text));
                return;
            }
        }
        if !cancel_on_disconnect {
            self.push_ack(ack.refuse(
                code::NOT_AUTHORIZED,
                "mass quoting needs cancel_on_disconnect on this session: quotes never outlive their connection",
            ));
            return;
        }
        if let Some(t) = msg.get(QUOTE_TYPE) {
            if t != b"1" {
                self.push_ack(ack.refuse(code::OTHER, "QuoteType(537) must be 1 (tradeable)"));
                return;
            }
        }
        let account = match order_codec::account(msg, ctx) {
            Ok(a) => a,
            Err(r) => {
                self.push_ack(ack.refuse(code::NOT_AUTHORIZED, r.text));
                return;
            }
        };
        if self.account.is_some_and(|a| a != account) {
            self.push_ack(ack.refuse(
                code::NOT_AUTHORIZED,
                "a connection quotes for one account: this one already quotes for another",
            ));
            return;
        }
        let raw = match raw_entries(msg) {
            Ok(r) => r,
            Err((c, text)) => {
                self.push_ack(ack.refuse(c, text));
                return;
            }
        };
        self.account = Some(account);
        let id = self.push_ack(ack);
        let def_bid = msg.get(DEF_BID_SIZE);
        let def_offer = msg.get(DEF_OFFER_SIZE);
        let mut seen: Vec<InstrumentId> = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let entry = AckEntry {
                set_id: r.set_id.into(),
                entry_id: r.entry_id.into(),
                symbol: r.symbol.into(),
                reject: None,
            };
            self.ack_mut(id).expect("just pushed").entries.push(entry);
            let checked = self.check_entry(r, ctx, &seen, def_bid, def_offer);
            let (instrument, bid, offer) = match checked {
                Ok(c) => c,
                Err((c, text)) => {
                    self.ack_mut(id).expect("pushed").reject_entry(i, c, text);
                    continue;
                }
            };
            seen.push(instrument);
            if let Some((_, d)) = ctx.directory.lookup(r.symbol) {
                self.qty_scales.insert(instrument, d.qty_scale);
            }
            for (side, want) in [(Side::Buy, bid), (Side::Sell, offer)] {
                let ack = Some((id, i as u32));
                if !self.update_side(ctx, account, instrument, side, want, ack, seq, submit) {
                    let text = format!("{}: server busy", side_name(side));
                    self.ack_mut(id)
                        .expect("pushed")
                        .reject_entry(i, code::OTHER, text);
                }
            }
        }
    }

    /// An entry's instrument and wanted sides, or its QuoteEntryRejectReason and why.
    #[allow(clippy::type_complexity)]
    fn check_entry(
        &self,
        r: &RawEntry<'_>,
        ctx: &Ctx<'_>,
        seen: &[InstrumentId],
        def_bid: Option<&[u8]>,
        def_offer: Option<&[u8]>,
    ) -> Result<(InstrumentId, Option<(Price, Qty)>, Option<(Price, Qty)>), (u32, String)> {
        let Some((instrument, d)) = ctx.directory.lookup(r.symbol) else {
            return Err((
                code::UNKNOWN_SYMBOL,
                format!("unknown symbol {}", String::from_utf8_lossy(r.symbol)),
            ));
        };
        if seen.contains(&instrument) {
            return Err((
                code::DUPLICATE,
                "the instrument is quoted twice in this MassQuote".to_owned(),
            ));
        }
        if d.rules.status == InstrumentStatus::Expired {
            return Err((
                code::EXCHANGE_CLOSED,
                "the instrument has expired".to_owned(),
            ));
        }
        let bid = entry_side(r.bid_px, r.bid_size, def_bid, Side::Buy, d)?;
        let offer = entry_side(r.offer_px, r.offer_size, def_offer, Side::Sell, d)?;
        if let (Some((b, _)), Some((o, _))) = (bid, offer) {
            if b.0 >= o.0 {
                return Err((
                    code::INVALID_SPREAD,
                    "the bid is at or above the offer".to_owned(),
                ));
            }
        }
        Ok((instrument, bid, offer))
    }

    /// Asks for what one side needs to become `want`; false if the request could not be
    /// queued (the side is then as it was).
    #[allow(clippy::too_many_arguments)]
    fn update_side(
        &mut self,
        ctx: &Ctx<'_>,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        want: Option<(Price, Qty)>,
        ack: Option<(u64, u32)>,
        seq: SeqNum,
        submit: &mut dyn FnMut(Command, SeqNum) -> bool,
    ) -> bool {
        let key = (instrument, side);
        let current = self.sides.get(&key).copied();
        let origin = current.map(|c| c.origin);
        let (cmd, asked, next) = match (current, want) {
            (None, None) => return true,
            (Some(c), Some((p, q))) if c.price == p && c.qty.0 - c.cum.0 == q.0 => return true,
            (None, Some((price, qty))) => {
                let cl = self.next_cl();
                let cmd = Command::New(NewOrder {
                    session: ctx.session,
                    account,
                    instrument,
                    cl_ord_id: cl,
                    side,
                    ord_type: OrdType::Limit,
                    tif: TimeInForce::Gtc,
                    price,
                    qty,
                    post_only: false,
                    stp: None,
                    received_ns: ctx.now_ns,
                    display_qty: Qty(0),
                    trailing: None,
                    oco_with: None,
                    pending: false,
                    triggers: None,
                });
                let next = QuoteSide {
                    cl,
                    origin: cl,
                    order_id: None,
                    price,
                    qty,
                    cum: Qty(0),
                };
                (cmd, Asked::New, Some(next))
            }
            (Some(c), Some((price, qty))) => {
                let cl = self.next_cl();
                let total = Qty(c.cum.0.saturating_add(qty.0));
                let cmd = Command::Replace(ReplaceOrder {
                    session: ctx.session,
                    account,
                    instrument,
                    cl_ord_id: cl,
                    order_id: c.order_id,
                    orig_cl_ord_id: c.cl,
                    price,
                    qty: total,
                    received_ns: ctx.now_ns,
                    tif: None,
                });
                let next = QuoteSide {
                    cl,
                    price,
                    qty: total,
                    ..c
                };
                (cmd, Asked::Replace, Some(next))
            }
            (Some(c), None) => {
                let cl = self.next_cl();
                let cmd = Command::Cancel(CancelOrder {
                    session: ctx.session,
                    account,
                    instrument,
                    cl_ord_id: cl,
                    order_id: c.order_id,
                    orig_cl_ord_id: c.cl,
                    received_ns: ctx.now_ns,
                });
                (cmd, Asked::Cancel, None)
            }
        };
        let cl = match &cmd {
            Command::New(o) => o.cl_ord_id,
            Command::Replace(r) => r.cl_ord_id,
            Command::Cancel(c) => c.cl_ord_id,
            _ => unreachable!("quotes ask for new orders, replaces and cancels only"),
        };
        if !submit(cmd, seq) {
            return false;
        }
        match next {
            Some(s) => self.sides.insert(key, s),
            None => self.sides.remove(&key),
        };
        if let Some((id, _)) = ack {
            if let Some(a) = self.ack_mut(id) {
                a.outstanding += 1;
            }
        }
        let origin = origin.unwrap_or(cl);
        self.answers.insert(
            cl,
            Answer {
                ack,
                key,
                asked,
                seq,
                origin,
            },
        );
        true
    }

    /// Takes a QuoteCancel (Z) received as MsgSeqNum `seq`: cancels the connection's quotes on
    /// the instruments it lists (QuoteCancelType 1) or all of them (4).
    pub fn quote_cancel(
        &mut self,
        msg: &MessageRef<'_>,
        ctx: &Ctx<'_>,
        seq: SeqNum,
        submit: &mut dyn FnMut(Command, SeqNum) -> bool,
    ) {
        let mut ack = Ack::new(msg);
        if self.acks.len() >= MAX_WAITING {
            self.push_ack(ack.refuse(
                code::OTHER,
                "too many quote messages waiting for their answers: wait for the acknowledgements",
            ));
            return;
        }
        if let Err(r) = order_codec::account(msg, ctx) {
            self.push_ack(ack.refuse(code::NOT_AUTHORIZED, r.text));
            return;
        }
        let instruments: Option<Vec<InstrumentId>> = match msg.get(QUOTE_CANCEL_TYPE) {
            Some(b"4") => None,
            Some(b"1") => {
                let mut ids = Vec::new();
                for f in msg.fields().filter(|f| f.tag == tag::SYMBOL) {
                    match ctx.directory.lookup(f.value) {
                        Some((id, _)) => ids.push(id),
                        None => {
                            let text =
                                format!("unknown symbol {}", String::from_utf8_lossy(f.value));
                            self.push_ack(ack.refuse(code::UNKNOWN_SYMBOL, text));
                            return;
                        }
                    }
                }
                if ids.is_empty() {
                    self.push_ack(ack.refuse(
                        code::UNKNOWN_SYMBOL,
                        "QuoteCancelType(298)=1 needs the instruments in NoQuoteEntries(295)",
                    ));
                    return;
                }
                Some(ids)
            }
            _ => {
                self.push_ack(ack.refuse(
                    code::OTHER,
                    "QuoteCancelType(298) must be 1 (the instruments listed) or 4 (all quotes)",
                ));
                return;
            }
        };
        ack.canceled = Some(if instruments.is_some() {
            status::CANCELED_FOR_SYMBOL
        } else {
            status::CANCELED_ALL
        });
        let id = self.push_ack(ack);
        let mut keys: Vec<(InstrumentId, Side)> = self
            .sides
            .keys()
            .copied()
            .filter(|(i, _)| instruments.as_ref().map_or(true, |l| l.contains(i)))
            .collect();
        keys.sort_by_key(|&(i, s)| (i, s == Side::Sell));
        let Some(account) = self.account else {
            return;
        };
        for (instrument, side) in keys {
            // A cancel that cannot be queued leaves the quote: the acknowledgement says so.
            if !self.update_side(
                ctx,
                account,
                instrument,
                side,
                None,
                Some((id, 0)),
                seq,
                submit,
            ) {
                if let Some(a) = self.ack_mut(id) {
                    if a.refused.is_none() {
                        a.refused = Some((code::OTHER, Cow::Borrowed("server busy: some quotes were not cancelled, send the QuoteCancel again")));
                    }
                }
            }
        }
    }

    /// Takes a report for this connection: `true` if it goes to the client as an
    /// ExecutionReport (any report of an order that is not a quote's; a quote's fills and the
    /// cancels it did not ask for), `false` if it answers a quote's request (its outcome goes
    /// into the acknowledgement). A refused update of a side cancels the side's order through
    /// `submit`.
    pub fn on_event(&mut self, e: &Event, submit: &mut dyn FnMut(Command, SeqNum) -> bool) -> bool {
        if !self.is_active() {
            return true;
        }
        if let Some(a) = self.answers.remove(&e.cl_ord_id) {
            return self.on_answer(e, a, submit);
        }
        let Some(&Live { key, .. }) = self.by_order.get(&e.order_id) else {
            return true;
        };
        let ended = matches!(
            e.kind,
            EventKind::Fill | EventKind::Canceled | EventKind::Expired
        );
        let own = self
            .sides
            .get(&key)
            .is_some_and(|s| s.order_id == Some(e.order_id));
        if ended {
            self.by_order.remove(&e.order_id);
            if own {
                self.sides.remove(&key);
            }
        } else if let Some(s) = self.sides.get_mut(&key).filter(|_| own) {
            match e.kind {
                EventKind::PartialFill => s.cum = e.cum_qty,
                // Another session of the account replaced the quote's order by OrderID.
                EventKind::Replaced => {
                    s.cl = e.cl_ord_id;
                    s.price = e.price;
                    s.qty = e.qty;
                    s.cum = e.cum_qty;
                }
                _ => {}
            }
        }
        // After the side's own bookkeeping: a quote this fill ended needs no cancel.
        if matches!(e.kind, EventKind::PartialFill | EventKind::Fill) {
            self.count_fill(e, submit);
        }
        true
    }

    /// Adds a quote's fill to the protection's window; trips it at the limit.
    fn count_fill(&mut self, e: &Event, submit: &mut dyn FnMut(Command, SeqNum) -> bool) {
        let scale = self.qty_scales.get(&e.instrument).copied().unwrap_or(0);
        let Some((limits, state)) = &mut self.mmp else {
            return;
        };
        let now = e.ts_ns;
        while state
            .fills
            .front()
            .is_some_and(|&(t, _)| t <= now - limits.interval_ns)
        {
            let (_, q) = state.fills.pop_front().expect("just seen");
            state.sum -= q;
        }
        let q = at_mmp_scale(e.last_qty, scale);
        state.fills.push_back((now, q));
        state.sum += q;
        if state.sum < limits.qty {
            return;
        }
        state.fills.clear();
        state.sum = 0;
        state.frozen_until = now.saturating_add(limits.frozen_ns);
        let text = format!(
            "market maker protection: the quotes' fills reached the limit within {} ms; every quote is cancelled and MassQuotes are refused for {} ms",
            limits.interval_ns.div_euclid(1_000_000),
            limits.frozen_ns.div_euclid(1_000_000),
        );
        self.trip(e, submit, text);
    }

    /// Market maker protection tripped: every quote is cancelled (reported to the client as
    /// ExecutionReports) and a MassQuoteAcknowledgement with QuoteStatus 6 says why. The
    /// cancels answer no message: they are counted with [`NO_MESSAGE`].
    fn trip(
        &mut self,
        e: &Event,
        submit: &mut dyn FnMut(Command, SeqNum) -> bool,
        mut text: String,
    ) {
        let mut keys: Vec<(InstrumentId, Side)> = self.sides.keys().copied().collect();
        keys.sort_by_key(|&(i, s)| (i, s == Side::Sell));
        let mut left = 0;
        for key in keys {
            let Some(s) = self.sides.get(&key).copied() else {
                continue;
            };
            let cl = self.next_cl();
            let cancel = Command::Cancel(CancelOrder {
                session: e.session,
                account: e.account,
                instrument: key.0,
                cl_ord_id: cl,
                order_id: s.order_id,
                orig_cl_ord_id: s.cl,
                received_ns: e.ts_ns,
            });
            if submit(cancel, NO_MESSAGE) {
                self.sides.remove(&key);
                let answer = Answer {
                    ack: None,
                    key,
                    asked: Asked::Protect,
                    seq: NO_MESSAGE,
                    origin: s.origin,
                };
                self.answers.insert(cl, answer);
            } else {
                left += 1;
            }
        }
        if left > 0 {
            text.push_str(&format!(
                " ({left} cancels could not be queued, server busy: send a QuoteCancel)"
            ));
        }
        self.push_ack(Ack {
            quote_id: None,
            quote_req_id: None,
            level: None,
            canceled: Some(status::REMOVED_FROM_MARKET),
            notice: Some(text),
            refused: None,
            entries: Vec::new(),
            outstanding: 0,
        });
    }

    /// Takes the report that answers one of the quotes' requests; `true` if the client sees it.
    fn on_answer(
        &mut self,
        e: &Event,
        a: Answer,
        submit: &mut dyn FnMut(Command, SeqNum) -> bool,
    ) -> bool {
        let key = a.key;
        let mut refused = None;
        match (a.asked, e.kind) {
            (Asked::New, EventKind::Rejected(reason)) => {
                if self.sides.get(&key).is_some_and(|s| s.origin == a.origin) {
                    self.sides.remove(&key);
                }
                refused = Some(reason);
            }
            (Asked::New, _) => {
                // Accepted: New, or its first fill or cancel if it never rested.
                let ended = matches!(
                    e.kind,
                    EventKind::Fill | EventKind::Canceled | EventKind::Expired
                );
                let mine = self.sides.get(&key).is_some_and(|s| s.origin == a.origin);
                if ended {
                    if mine {
                        self.sides.remove(&key);
                    }
                } else {
                    let live = Live {
                        key,
                        origin: a.origin,
                    };
                    self.by_order.insert(e.order_id, live);
                    if let Some(s) = self.sides.get_mut(&key).filter(|_| mine) {
                        s.order_id = Some(e.order_id);
                    }
                }
            }
            (Asked::Replace, EventKind::Replaced) => {
                if let Some(s) = self.sides.get_mut(&key) {
                    if s.origin == a.origin {
                        s.cum = e.cum_qty;
                    }
                }
            }
            (Asked::Cancel, EventKind::Canceled) => {
                self.by_order.remove(&e.order_id);
            }
            (Asked::Protect, EventKind::Canceled) => {
                self.by_order.remove(&e.order_id);
                return true;
            }
            // The order ended before the protection's cancel reached it.
            (Asked::Protect, _) => return false,
            (_, EventKind::CancelRejected { reason, .. }) => {
                if matches!(a.asked, Asked::Replace) {
                    refused = Some(reason);
                }
                self.refused_update(e, &a, submit);
            }
            // A cancel or replace answered otherwise: nothing to follow.
            (Asked::Cancel, _) | (Asked::Replace, _) => {}
        }
        let Some((id, entry)) = a.ack else {
            return false;
        };
        let Some(ack) = self.ack_mut(id) else {
            return false;
        };
        ack.outstanding = ack.outstanding.saturating_sub(1);
        if let Some(reason) = refused {
            if ack.canceled.is_none() {
                let text = match reason {
                    RejectReason::UnknownOrder => {
                        "the quote's order was not found (it ended, or an earlier update of it was refused)".to_owned()
                    }
                    r => r.text().to_owned(),
                };
                let text = format!("{}: {text}", side_name(key.1));
                ack.reject_entry(entry as usize, entry_code(reason), text);
            }
        }
        false
    }

    /// A replace or cancel of a side was refused. Unless a later request for the same order
    /// is on its way (it is answered on its own), the order, if it still works, is cancelled
    /// by its OrderID: it would otherwise stay at a price the market maker has left. (A
    /// request queued before the order's first answer names it by a ClOrdID that a refused
    /// replace never gave it; the OrderID is known by the time the refusal comes back.)
    fn refused_update(
        &mut self,
        e: &Event,
        a: &Answer,
        submit: &mut dyn FnMut(Command, SeqNum) -> bool,
    ) {
        let side = self.sides.get(&a.key).copied();
        if side.is_some_and(|s| s.origin == a.origin && s.cl != e.cl_ord_id) {
            return;
        }
        if side.is_some_and(|s| s.cl == e.cl_ord_id) {
            self.sides.remove(&a.key);
        }
        if a.ack.is_none() {
            // The refusal of such a cancel: the order has ended.
            return;
        }
        let live = self
            .by_order
            .iter()
            .find(|(_, l)| l.origin == a.origin)
            .map(|(&id, _)| id);
        let Some(order_id) = live else {
            return;
        };
        let cl = self.next_cl();
        let cancel = Command::Cancel(CancelOrder {
            session: e.session,
            account: e.account,
            instrument: a.key.0,
            cl_ord_id: cl,
            order_id: Some(order_id),
            orig_cl_ord_id: ClOrdId::EMPTY,
            received_ns: e.ts_ns,
        });
        if submit(cancel, a.seq) {
            let answer = Answer {
                ack: None,
                asked: Asked::Cancel,
                ..*a
            };
            self.answers.insert(cl, answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Directory;
    use portcullis_fix::{BeginString, Decoder, Dictionary};

    use crate::fix_fixtures;
    use portcullis_types::{SessionId, TradeId};

    const ACC: AccountId = AccountId(0);
    const SESSION: SessionId = SessionId(3);

    fn directory() -> Directory {
        Directory::of(&fix_fixtures::instruments(
            r#"
            [[instruments]]
            symbol = "BTC-PERP"
            price_scale = 1
            qty_scale = 3
            tick = "0.5"
            lot = "0.001"
            min_qty = "0.001"
            max_qty = "10"

            [[instruments]]
            symbol = "ETH-PERP"
            price_scale = 2
            qty_scale = 2
            tick = "0.05"
            lot = "0.01"
            min_qty = "0.01"
            max_qty = "100"
            "#,
            0,
        ))
    }

    fn id(d: &Directory, s: &str) -> InstrumentId {
        d.lookup(s.as_bytes()).unwrap().0
    }

    fn message(v: BeginString, mt: &[u8], body: &[(u32, &str)]) -> Vec<u8> {
        fix_fixtures::message(v, mt, body)
    }

    /// A MassQuote of one set with the entries (id, symbol, [(tag, value)]).
    /// (QuoteEntryID, Symbol, the entry's other fields).
    type Entry<'a> = (&'a str, &'a str, &'a [(u32, &'a str)]);

    fn mass_quote(level: &str, entries: &[Entry<'_>]) -> Vec<u8> {
        let n = entries.len().to_string();
        let mut body: Vec<(u32, &str)> = vec![
            (117, "MQ1"),
            (301, level),
            (296, "1"),
            (302, "S1"),
            (304, &n),
            (295, &n),
        ];
        for (eid, sym, fields) in entries {
            body.push((299, eid));
            body.push((55, sym));
            body.extend_from_slice(fields);
        }
        message(BeginString::Fix44, b"i", &body)
    }

    struct Harness {
        dir: Directory,
        q: Quoting,
        sent: Vec<Command>,
        queue_full: bool,
        names: Vec<Box<str>>,
        now_ns: i64,
    }

    impl Harness {
        fn new() -> Self {
            Harness {
                dir: directory(),
                q: Quoting::new(1_795_000_000_000, None),
                sent: Vec::new(),
                queue_full: false,
                names: vec!["ACC".into()],
                now_ns: 1,
            }
        }

        fn with_msg(&mut self, bytes: &[u8], f: impl FnOnce(&mut Self, &MessageRef<'_>)) {
            let mut d = Decoder::new();
            let m = d.decode(bytes).unwrap();
            Dictionary::for_version(BeginString::Fix44)
                .validate(&m)
                .unwrap_or_else(|r| panic!("{r:?}"));
            f(self, &m);
        }

        fn quote(&mut self, bytes: &[u8]) -> Vec<Command> {
            self.with_msg(bytes, |h, m| {
                let ctx = Ctx {
                    directory: &h.dir,
                    allowed: &[ACC],
                    account_names: &h.names,
                    session: SESSION,
                    now_ns: h.now_ns,
                    trading_day_end_secs: 0,
                };
                let full = h.queue_full;
                let sent = &mut h.sent;
                let mut submit = |c: Command, _seq: SeqNum| {
                    if !full {
                        sent.push(c);
                    }
                    !full
                };
                match m.msg_type() {
                    b"i" => h.q.mass_quote(m, &ctx, true, 2, &mut submit),
                    b"Z" => h.q.quote_cancel(m, &ctx, 2, &mut submit),
                    t => panic!("{t:?}"),
                }
            });
            std::mem::take(&mut self.sent)
        }

        fn event(&mut self, e: Event) -> bool {
            let sent = &mut self.sent;
            self.q.on_event(&e, &mut |c, _| {
                sent.push(c);
                true
            })
        }

        /// The acknowledgement, if one is ready and sent, as (tag, value) pairs.
        fn ack(&mut self) -> Option<Vec<(u32, String)>> {
            let a = self.q.next_ack()?;
            if !a.is_sent() {
                return Some(Vec::new());
            }
            let fields = fix_fixtures::answer(BeginString::Fix44, b"b", |enc| a.encode(enc));
            // The body: after SendingTime(52), before CheckSum(10).
            Some(
                fields
                    .into_iter()
                    .skip_while(|f| f.0 != 52)
                    .skip(1)
                    .take_while(|f| f.0 != 10)
                    .collect(),
            )
        }
    }

    fn event(kind: EventKind, cl: ClOrdId, order: u64, instrument: InstrumentId) -> Event {
        Event {
            session: SESSION,
            account: ACC,
            instrument,
            kind,
            order_id: OrderId(order),
            cl_ord_id: cl,
            orig_cl_ord_id: ClOrdId::EMPTY,
            side: Side::Buy,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(0),
            qty: Qty(0),
            cum_qty: Qty(0),
            leaves_qty: Qty(0),
            avg_px: Price(0),
            last_px: Price(0),
            last_qty: Qty(0),
            trade_id: TradeId(0),
            exec_id: 1,
            ts_ns: 1,
            received_ns: 1,
            details: Default::default(),
        }
    }

    fn get(fields: &[(u32, String)], tag: u32) -> Option<&str> {
        fields
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }

    fn new_of(c: &Command) -> NewOrder {
        match c {
            Command::New(o) => *o,
            c => panic!("not a new order: {c:?}"),
        }
    }

    #[test]
    fn a_two_sided_quote_becomes_two_orders_acknowledged_once_both_are_answered() {
        let mut h = Harness::new();
        let perp = id(&h.dir, "BTC-PERP");
        let cmds = h.quote(&mass_quote(
            "2",
            &[(
                "E1",
                "BTC-PERP",
                &[(132, "100000.5"), (133, "100010"), (134, "1.5"), (135, "2")],
            )],
        ));
        assert_eq!(cmds.len(), 2);
        let (bid, offer) = (new_of(&cmds[0]), new_of(&cmds[1]));
        assert_eq!(
            (bid.side, bid.price, bid.qty),
            (Side::Buy, Price(1_000_005), Qty(1500))
        );
        assert_eq!(
            (offer.side, offer.price, offer.qty),
            (Side::Sell, Price(1_000_100), Qty(2000))
        );
        assert_eq!(
            (bid.tif, bid.ord_type, bid.account),
            (TimeInForce::Gtc, OrdType::Limit, ACC)
        );
        assert!(bid.cl_ord_id.as_bytes().starts_with(b"Q"));
        assert_ne!(bid.cl_ord_id, offer.cl_ord_id);
        // Not before the core has answered both sides.
        assert!(!h.event(event(EventKind::New, bid.cl_ord_id, 7, perp)));
        assert!(h.q.next_ack().is_none());
        assert!(!h.event(event(EventKind::New, offer.cl_ord_id, 8, perp)));
        let ack = h.ack().expect("ready");
        assert_eq!(get(&ack, 297), Some("0"));
        assert_eq!(get(&ack, 117), Some("MQ1"));
        assert_eq!(get(&ack, 299), Some("E1"));
        assert_eq!(get(&ack, 368), None);
        // A fill of the bid is the client's to see, as an ExecutionReport.
        let mut fill = event(EventKind::PartialFill, bid.cl_ord_id, 7, perp);
        fill.cum_qty = Qty(500);
        assert!(h.event(fill));
        // Requoting the bid at the same price and size: nothing to do (1 of 1.5 left after
        // the fill, so 1.5 is an increase, and 1 is no change).
        let same = h.quote(&mass_quote(
            "0",
            &[(
                "E1",
                "BTC-PERP",
                &[(132, "100000.5"), (133, "100010"), (134, "1"), (135, "2")],
            )],
        ));
        assert!(same.is_empty(), "{same:?}");
        assert_eq!(h.ack(), Some(Vec::new()), "level 0: no acknowledgement");
        // A smaller bid at the same price is a replace of the same order to fills + size.
        let cmds = h.quote(&mass_quote(
            "1",
            &[(
                "E1",
                "BTC-PERP",
                &[(132, "100000.5"), (133, "100010"), (134, "0.5"), (135, "2")],
            )],
        ));
        let [Command::Replace(r)] = cmds.as_slice() else {
            panic!("{cmds:?}")
        };
        assert_eq!(
            (r.order_id, r.orig_cl_ord_id),
            (Some(OrderId(7)), bid.cl_ord_id)
        );
        assert_eq!((r.price, r.qty), (Price(1_000_005), Qty(1000)));
        assert!(!h.event(event(EventKind::Replaced, r.cl_ord_id, 7, perp)));
        assert_eq!(
            h.ack(),
            Some(Vec::new()),
            "level 1, nothing refused: not sent"
        );
    }

    #[test]
    fn a_missing_or_zero_side_cancels_it_and_quote_cancel_takes_everything_out() {
        let mut h = Harness::new();
        let (btc, eth) = (id(&h.dir, "BTC-PERP"), id(&h.dir, "ETH-PERP"));
        let cmds = h.quote(&mass_quote(
            "2",
            &[
                (
                    "E1",
                    "BTC-PERP",
                    &[(132, "100"), (133, "101"), (134, "1"), (135, "1")],
                ),
                ("E2", "ETH-PERP", &[(132, "10"), (134, "1")]),
            ],
        ));
        assert_eq!(cmds.len(), 3, "one-sided ETH quote: {cmds:?}");
        for (c, (inst, oid)) in cmds.iter().zip([(btc, 1), (btc, 2), (eth, 3)]) {
            assert!(!h.event(event(EventKind::New, new_of(c).cl_ord_id, oid, inst)));
        }
        assert_eq!(get(&h.ack().unwrap(), 297), Some("0"));
        // The offer's size 0: cancelled; the bid unchanged.
        let cmds = h.quote(&mass_quote(
            "2",
            &[(
                "E1",
                "BTC-PERP",
                &[(132, "100"), (133, "101"), (134, "1"), (135, "0")],
            )],
        ));
        let [Command::Cancel(c)] = cmds.as_slice() else {
            panic!("{cmds:?}")
        };
        assert_eq!(c.order_id, Some(OrderId(2)));
        assert!(!h.event(event(EventKind::Canceled, c.cl_ord_id, 2, btc)));
        assert_eq!(get(&h.ack().unwrap(), 297), Some("0"));
        // QuoteCancel of ETH only, then of everything left.
        let cancel = message(
            BeginString::Fix44,
            b"Z",
            &[(117, "QC1"), (298, "1"), (295, "1"), (55, "ETH-PERP")],
        );
        let cmds = h.quote(&cancel);
        let [Command::Cancel(c)] = cmds.as_slice() else {
            panic!("{cmds:?}")
        };
        assert_eq!((c.instrument, c.order_id), (eth, Some(OrderId(3))));
        assert!(h.q.next_ack().is_none(), "acknowledged after the cancel");
        assert!(!h.event(event(EventKind::Canceled, c.cl_ord_id, 3, eth)));
        let ack = h.ack().unwrap();
        assert_eq!((get(&ack, 297), get(&ack, 117)), (Some("1"), Some("QC1")));
        let all = message(BeginString::Fix44, b"Z", &[(117, "QC2"), (298, "4")]);
        let cmds = h.quote(&all);
        let [Command::Cancel(c)] = cmds.as_slice() else {
            panic!("{cmds:?}")
        };
        assert_eq!(c.order_id, Some(OrderId(1)));
        assert!(!h.event(event(EventKind::Canceled, c.cl_ord_id, 1, btc)));
        assert_eq!(get(&h.ack().unwrap(), 297), Some("4"));
        assert!(!h.q.is_active(), "nothing left");
        // Nothing to cancel is still acknowledged.
        assert!(h.quote(&all).is_empty());
        assert_eq!(get(&h.ack().unwrap(), 297), Some("4"));
    }

    #[test]
    fn invalid_entries_are_refused_each_with_its_reason_and_the_rest_go_through() {
        let mut h = Harness::new();
        let cmds = h.quote(&mass_quote(
            "1",
            &[
                ("E1", "NOPE-PERP", &[(132, "1"), (134, "1")]),
                (
                    "E2",
                    "BTC-PERP",
                    &[(132, "101"), (133, "100"), (134, "1"), (135, "1")],
                ),
                ("E3", "BTC-PERP", &[(132, "99.25"), (134, "1")]),
                ("E4", "ETH-PERP", &[(132, "10"), (134, "1.005")]),
                ("E5", "ETH-PERP", &[(132, "10")]),
                ("E6", "ETH-PERP", &[(134, "2")]),
                ("E7", "BTC-PERP", &[(132, "99"), (134, "1")]),
                ("E8", "BTC-PERP", &[(133, "120"), (135, "1")]),
            ],
        ));
        // Only E7 is valid (E8 quotes BTC-PERP a second time).
        assert_eq!(cmds.len(), 1, "{cmds:?}");
        let o = new_of(&cmds[0]);
        assert!(!h.event(event(EventKind::New, o.cl_ord_id, 1, o.instrument)));
        let ack = h.ack().unwrap();
        assert_eq!(get(&ack, 297), Some("0"));
        let codes: Vec<(&str, &str)> = ack
            .windows(3)
            .filter(|w| w[0].0 == 299 && w[2].0 == 368)
            .map(|w| (w[0].1.as_str(), w[2].1.as_str()))
            .collect();
        assert_eq!(
            codes,
            [
                ("E1", "1"),
                ("E2", "7"),
                ("E3", "8"),
                ("E4", "99"),
                ("E5", "99"),
                ("E6", "8"),
                ("E8", "6")
            ]
        );
        let text = get(&ack, 58).unwrap();
        assert!(text.contains("E1: unknown symbol NOPE-PERP"), "{text}");
        assert!(
            text.contains("E3: BidPx(132) has more than 1 decimal places"),
            "{text}"
        );
        assert!(
            text.contains("E8: the instrument is quoted twice"),
            "{text}"
        );
        // Only the refused entries are listed at level 1.
        assert!(!ack.iter().any(|(t, v)| *t == 299 && v == "E7"));
    }

    #[test]
    fn a_refused_update_takes_the_old_quote_out_of_the_market() {
        let mut h = Harness::new();
        let btc = id(&h.dir, "BTC-PERP");
        let cmds = h.quote(&mass_quote(
            "1",
            &[("E1", "BTC-PERP", &[(132, "100"), (134, "1")])],
        ));
        let bid = new_of(&cmds[0]);
        assert!(!h.event(event(EventKind::New, bid.cl_ord_id, 9, btc)));
        assert_eq!(h.ack(), Some(Vec::new()));
        let cmds = h.quote(&mass_quote(
            "1",
            &[("E1", "BTC-PERP", &[(132, "150"), (134, "1")])],
        ));
        let [Command::Replace(r)] = cmds.as_slice() else {
            panic!("{cmds:?}")
        };
        let refused = EventKind::CancelRejected {
            replace: true,
            reason: RejectReason::PriceBand,
        };
        assert!(!h.event(event(refused, r.cl_ord_id, 9, btc)));
        let [Command::Cancel(c)] = h.sent.as_slice() else {
            panic!("{:?}", h.sent)
        };
        assert_eq!(c.order_id, Some(OrderId(9)));
        let c = *c;
        let ack = h.ack().unwrap();
        assert_eq!(get(&ack, 368), Some("8"));
        assert_eq!(
            get(&ack, 58),
            Some("E1: bid: price outside the allowed band")
        );
        // The cancel's own answer is not the client's.
        assert!(!h.event(event(EventKind::Canceled, c.cl_ord_id, 9, btc)));
        assert!(!h.q.is_active());
    }

    #[test]
    fn quote_fills_and_unasked_cancels_reach_the_client_and_end_the_side() {
        let mut h = Harness::new();
        let btc = id(&h.dir, "BTC-PERP");
        let cmds = h.quote(&mass_quote(
            "0",
            &[(
                "E1",
                "BTC-PERP",
                &[(132, "100"), (133, "101"), (134, "1"), (135, "1")],
            )],
        ));
        let (bid, offer) = (new_of(&cmds[0]), new_of(&cmds[1]));
        h.event(event(EventKind::New, bid.cl_ord_id, 1, btc));
        h.event(event(EventKind::New, offer.cl_ord_id, 2, btc));
        let _ = h.ack();
        // Someone else's order (not a quote) is none of this module's business.
        assert!(h.event(event(
            EventKind::Fill,
            ClOrdId::new(b"C1").unwrap(),
            50,
            btc
        )));
        assert!(h.event(event(EventKind::Fill, bid.cl_ord_id, 1, btc)));
        assert!(h.event(event(EventKind::Canceled, offer.cl_ord_id, 2, btc)));
        // Both sides ended: the next quote places new orders.
        let cmds = h.quote(&mass_quote(
            "0",
            &[(
                "E1",
                "BTC-PERP",
                &[(132, "100"), (133, "101"), (134, "1"), (135, "1")],
            )],
        ));
        assert!(
            matches!(cmds.as_slice(), [Command::New(_), Command::New(_)]),
            "{cmds:?}"
        );
    }

    #[test]
    fn updates_queued_before_the_first_answer_name_the_order_by_its_client_id() {
        let mut h = Harness::new();
        let btc = id(&h.dir, "BTC-PERP");
        let first = h.quote(&mass_quote(
            "2",
            &[("E1", "BTC-PERP", &[(132, "100"), (134, "1")])],
        ));
        let second = h.quote(&mass_quote(
            "2",
            &[("E1", "BTC-PERP", &[(132, "99"), (134, "1")])],
        ));
        let bid = new_of(&first[0]);
        let [Command::Replace(r)] = second.as_slice() else {
            panic!("{second:?}")
        };
        assert_eq!((r.order_id, r.orig_cl_ord_id), (None, bid.cl_ord_id));
        assert!(!h.event(event(EventKind::New, bid.cl_ord_id, 4, btc)));
        assert_eq!(get(&h.ack().unwrap(), 297), Some("0"));
        assert!(!h.event(event(EventKind::Replaced, r.cl_ord_id, 4, btc)));
        assert_eq!(get(&h.ack().unwrap(), 297), Some("0"));
        // The side knows its order now: a cancel names it.
        let cmds = h.quote(&message(
            BeginString::Fix44,
            b"Z",
            &[(117, "Q"), (298, "4")],
        ));
        let [Command::Cancel(c)] = cmds.as_slice() else {
            panic!("{cmds:?}")
        };
        assert_eq!(
            (c.order_id, c.orig_cl_ord_id),
            (Some(OrderId(4)), r.cl_ord_id)
        );
    }

    #[test]
    fn updates_chained_on_a_refused_update_leave_no_stale_quote() {
        let mut h = Harness::new();
        let btc = id(&h.dir, "BTC-PERP");
        // Three quotes before the first answer: a new bid, then two replaces, each naming the
        // order by the ClOrdID the one before was to give it.
        let q = |px: &'static str| mass_quote("2", &[("E1", "BTC-PERP", &[(132, px), (134, "1")])]);
        let new = new_of(&h.quote(&q("100"))[0]);
        let Command::Replace(r2) = h.quote(&q("150"))[0] else {
            panic!()
        };
        let Command::Replace(r3) = h.quote(&q("99"))[0] else {
            panic!()
        };
        assert_eq!((r3.order_id, r3.orig_cl_ord_id), (None, r2.cl_ord_id));
        assert!(!h.event(event(EventKind::New, new.cl_ord_id, 5, btc)));
        assert_eq!(get(&h.ack().unwrap(), 297), Some("0"));
        // The first replace is refused; the next one is on its way: nothing to do yet.
        let band = EventKind::CancelRejected {
            replace: true,
            reason: RejectReason::PriceBand,
        };
        assert!(!h.event(event(band, r2.cl_ord_id, 5, btc)));
        assert!(h.sent.is_empty(), "{:?}", h.sent);
        assert_eq!(get(&h.ack().unwrap(), 368), Some("8"));
        // The next names a ClOrdID the order never got: unknown. The order still works at
        // 100, so it is cancelled by its OrderID.
        let unknown = EventKind::CancelRejected {
            replace: true,
            reason: RejectReason::UnknownOrder,
        };
        let mut e = event(unknown, r3.cl_ord_id, 0, btc);
        e.order_id = OrderId(0);
        assert!(!h.event(e));
        let [Command::Cancel(c)] = h.sent.as_slice() else {
            panic!("{:?}", h.sent)
        };
        assert_eq!(c.order_id, Some(OrderId(5)));
        let c = *c;
        let ack = h.ack().unwrap();
        assert_eq!(get(&ack, 368), Some("4"));
        assert!(get(&ack, 58).unwrap().contains("not found"), "{ack:?}");
        assert!(!h.event(event(EventKind::Canceled, c.cl_ord_id, 5, btc)));
        assert!(!h.q.is_active());
    }

    #[test]
    fn whole_messages_are_refused_with_a_reason() {
        let mut h = Harness::new();
        // A full ingress queue: the entry says so and nothing is remembered.
        h.queue_full = true;
        assert!(h
            .quote(&mass_quote(
                "2",
                &[("E1", "BTC-PERP", &[(132, "100"), (134, "1")])]
            ))
            .is_empty());
        let ack = h.ack().unwrap();
        assert_eq!((get(&ack, 297), get(&ack, 368)), (Some("5"), Some("99")));
        assert_eq!(get(&ack, 58), Some("E1: bid: server busy"));
        h.queue_full = false;
        assert!(!h.q.is_active());
        // Indicative quotes, fragments, unknown cancel types.
        let indicative = message(
            BeginString::Fix44,
            b"i",
            &[
                (117, "M"),
                (537, "0"),
                (296, "1"),
                (302, "1"),
                (295, "1"),
                (299, "E"),
                (55, "BTC-PERP"),
            ],
        );
        assert!(h.quote(&indicative).is_empty());
        let ack = h.ack().unwrap();
        assert_eq!((get(&ack, 297), get(&ack, 300)), (Some("5"), Some("99")));
        assert_eq!(get(&ack, 58), Some("QuoteType(537) must be 1 (tradeable)"));
        let fragment = message(
            BeginString::Fix44,
            b"i",
            &[
                (117, "M"),
                (296, "1"),
                (302, "1"),
                (893, "N"),
                (295, "1"),
                (299, "E"),
                (55, "BTC-PERP"),
            ],
        );
        assert!(h.quote(&fragment).is_empty());
        assert!(get(&h.ack().unwrap(), 58).unwrap().contains("fragmented"));
        let by_type = message(BeginString::Fix44, b"Z", &[(117, "Q"), (298, "2")]);
        assert!(h.quote(&by_type).is_empty());
        let ack = h.ack().unwrap();
        assert_eq!((get(&ack, 297), get(&ack, 300)), (Some("5"), Some("99")));
        // Too many entries.
        let many: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("E{i}")).collect();
        let entries: Vec<Entry<'_>> = many
            .iter()
            .map(|e| (e.as_str(), "BTC-PERP", &[][..]))
            .collect();
        assert!(h.quote(&mass_quote("2", &entries)).is_empty());
        let ack = h.ack().unwrap();
        assert_eq!((get(&ack, 297), get(&ack, 300)), (Some("5"), Some("3")));
    }

    #[test]
    fn market_maker_protection_takes_every_quote_out_and_freezes_quoting() {
        let mut h = Harness::new();
        let mmp = Mmp {
            interval_ns: 1_000_000_000,
            qty: 150_000_000,
            frozen_ns: 5_000_000_000,
        };
        h.q = Quoting::new(1_795_000_000_000, Some(mmp));
        let (btc, eth) = (id(&h.dir, "BTC-PERP"), id(&h.dir, "ETH-PERP"));
        let quote = mass_quote(
            "0",
            &[
                (
                    "E1",
                    "BTC-PERP",
                    &[(132, "100"), (133, "101"), (134, "1"), (135, "1")],
                ),
                ("E2", "ETH-PERP", &[(132, "10"), (134, "2")]),
            ],
        );
        let cmds = h.quote(&quote);
        for (c, (inst, oid)) in cmds.iter().zip([(btc, 1), (btc, 2), (eth, 3)]) {
            assert!(!h.event(event(EventKind::New, new_of(c).cl_ord_id, oid, inst)));
        }
        assert_eq!(h.ack(), Some(Vec::new()));
        let fill = |kind, order: &NewOrder, id, last: i64, ts: i64| {
            let mut e = event(kind, order.cl_ord_id, id, order.instrument);
            e.last_qty = Qty(last);
            e.ts_ns = ts;
            e
        };
        let (bid, eth_bid) = (new_of(&cmds[0]), new_of(&cmds[2]));
        // 1.0 BTC (3 decimals), then 0.6 ETH (2 decimals) more than a second later: below 1.5
        // within any second.
        assert!(h.event(fill(EventKind::Fill, &bid, 1, 1000, 1_000_000_000)));
        assert!(h.event(fill(EventKind::PartialFill, &eth_bid, 3, 60, 2_100_000_000)));
        assert!(h.sent.is_empty(), "{:?}", h.sent);
        // The rest of the ETH bid, 1.4, within the second: 2.0, tripped. The quotes left are
        // cancelled (not the bid this fill ended).
        assert!(h.event(fill(EventKind::Fill, &eth_bid, 3, 140, 2_200_000_000)));
        let cancels: Vec<CancelOrder> = std::mem::take(&mut h.sent)
            .into_iter()
            .map(|c| match c {
                Command::Cancel(c) => c,
                c => panic!("{c:?}"),
            })
            .collect();
        let ids: Vec<_> = cancels.iter().map(|c| c.order_id).collect();
        assert_eq!(ids, [Some(OrderId(2))]);
        let notice = h.ack().unwrap();
        assert_eq!(get(&notice, 297), Some("6"));
        assert!(
            get(&notice, 58)
                .unwrap()
                .contains("market maker protection"),
            "{notice:?}"
        );
        // Their cancels are the client's to see.
        for (c, id) in cancels.iter().zip([2]) {
            assert!(h.event(event(EventKind::Canceled, c.cl_ord_id, id, c.instrument)));
        }
        assert!(!h.q.is_active());
        // Frozen for 5 s from the fill that tripped it.
        h.now_ns = 7_100_000_000;
        assert!(h.quote(&quote).is_empty());
        let ack = h.ack().unwrap();
        assert_eq!((get(&ack, 297), get(&ack, 300)), (Some("5"), Some("99")));
        assert!(
            get(&ack, 58)
                .unwrap()
                .contains("refused for another 101 ms"),
            "{ack:?}"
        );
        h.now_ns = 7_200_000_000;
        assert_eq!(h.quote(&quote).len(), 3);
    }

    #[test]
    fn ids_are_unique_per_connection_start() {
        let a = Quoting::new(1_795_000_000_000, None).prefix;
        let b = Quoting::new(1_795_000_000_001, None).prefix;
        assert_ne!(a, b);
        assert!(a.len() < 12, "{a}");
    }
}
