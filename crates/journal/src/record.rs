//! What the journal records, and its binary encoding.
//!
//! # Record encoding (codec version 1)
//!
//! Hand-written, little-endian, every field explicit, no padding. A payload is
//! `[u8 codec version = 1][u8 tag][body]`; the body of each tag is below. `clordid` is
//! `[u8 len ≤ 64][len bytes of printable ASCII]` (len 0 = none); `opt<T>` is `[u8 0|1][T if 1]`;
//! `bool` is one byte 0 or 1; enums are one byte with the values listed at their `*_code`
//! functions. Decoding checks every length, every enum value and every id, and rejects
//! trailing bytes: a payload decodes to exactly one record or to a [`DecodeError`], never to a
//! panic.
//!
//! | tag | record | body |
//! |---|---|---|
//! | 1 | `Command::New` | session u32, account u32, instrument u32, clordid, side, ord_type (u8: 0 limit, 1 market, 2 stop, 3 stop-limit, 4 take-profit, 5 take-profit limit; a trigger price i64 follows the last four), tif, price i64, qty i64, flags u8 (bit 0 post-only, bit 1 iceberg: its display qty i64 follows; bit 2 trailing stop: its trailing delta in bips u16 follows; bit 3 second order of a one-cancels-the-other pair: the first's order id u64 follows; older records wrote a bool, the same byte), stp `opt<u8>`, received_ns i64 |
//! | 2 | `Command::Cancel` | session, account, instrument, clordid, order_id `opt<u64>`, orig clordid, received_ns |
//! | 3 | `Command::Replace` | session, account, instrument, clordid, order_id `opt<u64>`, orig clordid, price, qty, received_ns, then a new tif (as in `New`) only if the replace gives one |
//! | 4 | `Command::MassCancel` | session, account, instrument `opt<u32>`, clordid |
//! | 5 | `Command::SessionClosed` | session |
//! | 6 | `Command::Venue` | venue session u32, order_id u64, kind u8 (0 accepted, 1 fill, 2 canceled, 3 expired, 4 rejected, 5 cancel rejected, 6 replaced, 7 replace rejected), last_px i64, last_qty i64, cum_qty i64, received_ns i64 |
//! | 7 | `Command::VenueSync` | venue session u32 |
//! | 16 | `Event` | session, account, instrument, kind (u8 + `Rejected`: reason u8, `CancelRejected`: replace bool + reason u8, `MassCancelDone`: canceled u32), order_id u64, clordid, orig clordid, side, ord_type, tif, price, qty, cum_qty, leaves_qty, avg_px, last_px, last_qty (i64 each), trade_id u64, exec_id u64, ts_ns i64, received_ns i64, then only for an order with details a flags u8 (bit 0 post-only, bit 1 iceberg: display qty i64 follows, bit 2 trailing stop: bips u16 follows, bit 3 waiting for its trigger; never 0) |
//! | 32 | `KillSwitch` | account `opt<u32>`, on bool |
//! | 33 | `InstrumentStatus` | instrument u32, status u8 |
//! | 34 | `Limits` | account `opt<u32>`, len u32, len opaque bytes |
//! | 35 | `SessionSeq` | session u32, next_in u64, next_out u64 |
//! | 36 | `Snapshot` | seq u64, state_hash 32 bytes |
//! | 37 | `Clock` | now_ns i64 |

use std::fmt;

use portcullis_types::{
    AccountId, CancelOrder, ClOrdId, Command, Event, EventKind, InstrumentId, InstrumentStatus,
    MassCancel, NewOrder, OrdType, OrderDetails, OrderId, Price, Qty, RejectReason, ReplaceOrder,
    RouteRequest, SessionId, Side, StpMode, TimeInForce, TradeId, TrailingDelta, VenueReport,
    VenueReportKind,
};

use crate::Seq;

/// The version byte every payload starts with.
pub const CODEC_VERSION: u8 = 1;

/// Largest opaque payload of a [`JournalRecord::Limits`] record.
pub const MAX_LIMITS_BYTES: usize = 64 * 1024;

/// One entry of the journal: a command the core thread accepted, an event it produced, or a
/// change of the state around them. Replaying these in order rebuilds the core's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalRecord {
    /// A command, as the core thread took it off its queue.
    Command(Command),
    /// An execution event the core thread produced.
    Event(Event),
    /// The kill switch of one account (`Some`) or the global one (`None`) was set or released.
    KillSwitch {
        /// The account, or `None` for the global switch.
        account: Option<AccountId>,
        /// On (orders refused) or off.
        on: bool,
    },
    /// An instrument changed status (halt, resume, expiry).
    InstrumentStatus {
        /// The instrument.
        instrument: InstrumentId,
        /// Its new status.
        status: InstrumentStatus,
    },
    /// Risk limits changed. The bytes are the server's own encoding of the new limits (the
    /// journal stores them as they are, encrypted like everything else).
    Limits {
        /// The account, or `None` for the defaults.
        account: Option<AccountId>,
        /// The encoded limits, at most [`MAX_LIMITS_BYTES`].
        data: Vec<u8>,
    },
    /// The FIX sequence numbers of a session, so they survive a restart.
    SessionSeq {
        /// The session's slot (stable: FIX sessions are configured).
        session: SessionId,
        /// The next MsgSeqNum expected from the counterparty.
        next_in: u64,
        /// The next MsgSeqNum to send.
        next_out: u64,
    },
    /// A snapshot of the core's state was taken after record `seq`; `state_hash` lets a replay
    /// check that it reached the same state at that point.
    Snapshot {
        /// The last record the snapshot includes.
        seq: Seq,
        /// The server's hash of the state at `seq`.
        state_hash: [u8; 32],
    },
    /// The core thread's clock, so time-driven behaviour (expiries, throttles, day ends)
    /// replays deterministically.
    Clock {
        /// Nanoseconds since the Unix epoch.
        now_ns: i64,
    },
}

impl From<Command> for JournalRecord {
    fn from(c: Command) -> Self {
        JournalRecord::Command(c)
    }
}

impl From<Event> for JournalRecord {
    fn from(e: Event) -> Self {
        JournalRecord::Event(e)
    }
}

/// Why a payload is not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("record byte {offset}: {what}")]
pub struct DecodeError {
    /// Byte offset in the payload where decoding failed.
    pub offset: usize,
    /// What was wrong.
    pub what: &'static str,
}

/// The kind of a record, for counting (verify) and filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// [`JournalRecord::Command`].
    Command,
    /// [`JournalRecord::Event`].
    Event,
    /// Any other record (kill switch, status, limits, session sequence, snapshot, clock).
    Control,
}

mod tag {
    pub const NEW: u8 = 1;
    pub const CANCEL: u8 = 2;
    pub const REPLACE: u8 = 3;
    pub const MASS_CANCEL: u8 = 4;
    pub const SESSION_CLOSED: u8 = 5;
    pub const VENUE: u8 = 6;
    pub const VENUE_SYNC: u8 = 7;
    pub const EVENT: u8 = 16;
    pub const KILL_SWITCH: u8 = 32;
    pub const INSTRUMENT_STATUS: u8 = 33;
    pub const LIMITS: u8 = 34;
    pub const SESSION_SEQ: u8 = 35;
    pub const SNAPSHOT: u8 = 36;
    pub const CLOCK: u8 = 37;
}

// ---------------------------------------------------------------------------------------------
// Enum codes. Exhaustive matches without wildcards: a new variant in the types crate fails to
// compile here until it gets a code.

fn side_code(s: Side) -> u8 {
    match s {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

fn side_from(c: u8) -> Option<Side> {
    Some(match c {
        0 => Side::Buy,
        1 => Side::Sell,
        _ => return None,
    })
}

fn stp_code(s: StpMode) -> u8 {
    match s {
        StpMode::CancelResting => 0,
        StpMode::CancelIncoming => 1,
        StpMode::CancelBoth => 2,
    }
}

fn stp_from(c: u8) -> Option<StpMode> {
    Some(match c {
        0 => StpMode::CancelResting,
        1 => StpMode::CancelIncoming,
        2 => StpMode::CancelBoth,
        _ => return None,
    })
}

fn venue_kind_code(k: VenueReportKind) -> u8 {
    match k {
        VenueReportKind::Accepted => 0,
        VenueReportKind::Fill => 1,
        VenueReportKind::Canceled => 2,
        VenueReportKind::Expired => 3,
        VenueReportKind::Rejected => 4,
        VenueReportKind::CancelRejected => 5,
        VenueReportKind::Replaced => 6,
        VenueReportKind::ReplaceRejected => 7,
    }
}

fn venue_kind_from(c: u8) -> Option<VenueReportKind> {
    Some(match c {
        0 => VenueReportKind::Accepted,
        1 => VenueReportKind::Fill,
        2 => VenueReportKind::Canceled,
        3 => VenueReportKind::Expired,
        4 => VenueReportKind::Rejected,
        5 => VenueReportKind::CancelRejected,
        6 => VenueReportKind::Replaced,
        7 => VenueReportKind::ReplaceRejected,
        _ => return None,
    })
}

fn status_code(s: InstrumentStatus) -> u8 {
    match s {
        InstrumentStatus::Trading => 0,
        InstrumentStatus::Halted => 1,
        InstrumentStatus::Expired => 2,
    }
}

fn status_from(c: u8) -> Option<InstrumentStatus> {
    Some(match c {
        0 => InstrumentStatus::Trading,
        1 => InstrumentStatus::Halted,
        2 => InstrumentStatus::Expired,
        _ => return None,
    })
}

fn reason_code(r: RejectReason) -> u8 {
    use RejectReason::*;
    match r {
        KillSwitch => 0,
        Throttled => 1,
        UnknownInstrument => 2,
        InstrumentNotTrading => 3,
        UnknownAccount => 4,
        BadTick => 5,
        BadLot => 6,
        QtyTooSmall => 7,
        QtyTooLarge => 8,
        NotionalTooLarge => 9,
        PriceBand => 10,
        TooManyOpenOrders => 11,
        CreditLimit => 12,
        PositionLimit => 13,
        DuplicateClOrdId => 14,
        PostOnlyWouldTrade => 15,
        Unsupported => 16,
        UnknownOrder => 17,
        ServerBusy => 18,
        TooLateToEnter => 19,
        OrderListRejected => 20,
        VenueRejected => 21,
        CancelPending => 22,
    }
}

fn reason_from(c: u8) -> Option<RejectReason> {
    use RejectReason::*;
    Some(match c {
        0 => KillSwitch,
        1 => Throttled,
        2 => UnknownInstrument,
        3 => InstrumentNotTrading,
        4 => UnknownAccount,
        5 => BadTick,
        6 => BadLot,
        7 => QtyTooSmall,
        8 => QtyTooLarge,
        9 => NotionalTooLarge,
        10 => PriceBand,
        11 => TooManyOpenOrders,
        12 => CreditLimit,
        13 => PositionLimit,
        14 => DuplicateClOrdId,
        15 => PostOnlyWouldTrade,
        16 => Unsupported,
        17 => UnknownOrder,
        18 => ServerBusy,
        19 => TooLateToEnter,
        20 => OrderListRejected,
        21 => VenueRejected,
        22 => CancelPending,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends to a buffer; with enough capacity (the writer keeps its batch buffer), no
/// allocation.
struct Enc<'a>(&'a mut Vec<u8>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// An order type: its code, then the stop price of a stop order.
    fn ord_type(&mut self, t: OrdType) {
        self.u8(t.code());
        if let Some(p) = t.stop_px() {
            self.i64(p.0);
        }
    }
    /// A time in force: its code, then the expiry time of a GTD order.
    fn tif(&mut self, t: TimeInForce) {
        self.u8(t.code());
        if let Some(e) = t.expire_ns() {
            self.i64(e);
        }
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn id(&mut self, id: &ClOrdId) {
        let b = id.as_bytes();
        self.0.push(b.len() as u8); // ≤ ClOrdId::MAX_LEN = 64 by construction
        self.0.extend_from_slice(b);
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u32(v);
            }
        }
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
        }
    }
    fn head(&mut self, session: SessionId, account: AccountId, instrument: InstrumentId) {
        self.u32(session.0);
        self.u32(account.0);
        self.u32(instrument.0);
    }
}

impl JournalRecord {
    /// Appends the record's encoding to `out`. Allocation-free when `out` has room (the
    /// largest record but `Limits` is under 400 bytes).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut e = Enc(out);
        e.u8(CODEC_VERSION);
        match self {
            JournalRecord::Command(Command::New(o)) => {
                e.u8(tag::NEW);
                e.head(o.session, o.account, o.instrument);
                e.id(&o.cl_ord_id);
                e.u8(side_code(o.side));
                e.ord_type(o.ord_type);
                e.tif(o.tif);
                e.i64(o.price.0);
                e.i64(o.qty.0);
                let iceberg = o.display_qty.0 != 0;
                e.u8(u8::from(o.post_only)
                    | u8::from(iceberg) << 1
                    | u8::from(o.trailing.is_some()) << 2
                    | u8::from(o.oco_with.is_some()) << 3
                    | u8::from(o.pending) << 4
                    | u8::from(o.triggers.is_some()) << 5);
                if iceberg {
                    e.i64(o.display_qty.0);
                }
                if let Some(t) = o.trailing {
                    e.0.extend_from_slice(&t.bips().to_le_bytes());
                }
                if let Some(first) = o.oco_with {
                    e.u64(first.0);
                }
                if let Some(pending) = o.triggers {
                    e.u64(pending.0);
                }
                match o.stp {
                    None => e.u8(0),
                    Some(s) => {
                        e.u8(1);
                        e.u8(stp_code(s));
                    }
                }
                e.i64(o.received_ns);
            }
            JournalRecord::Command(Command::Cancel(c)) => {
                e.u8(tag::CANCEL);
                e.head(c.session, c.account, c.instrument);
                e.id(&c.cl_ord_id);
                e.opt_u64(c.order_id.map(|o| o.0));
                e.id(&c.orig_cl_ord_id);
                e.i64(c.received_ns);
            }
            JournalRecord::Command(Command::Replace(r)) => {
                e.u8(tag::REPLACE);
                e.head(r.session, r.account, r.instrument);
                e.id(&r.cl_ord_id);
                e.opt_u64(r.order_id.map(|o| o.0));
                e.id(&r.orig_cl_ord_id);
                e.i64(r.price.0);
                e.i64(r.qty.0);
                e.i64(r.received_ns);
                // Only when given: a record without it reads as "keep", as older ones do.
                if let Some(t) = r.tif {
                    e.tif(t);
                }
            }
            JournalRecord::Command(Command::MassCancel(m)) => {
                e.u8(tag::MASS_CANCEL);
                e.u32(m.session.0);
                e.u32(m.account.0);
                e.opt_u32(m.instrument.map(|i| i.0));
                e.id(&m.cl_ord_id);
            }
            JournalRecord::Command(Command::SessionClosed(s)) => {
                e.u8(tag::SESSION_CLOSED);
                e.u32(s.0);
            }
            JournalRecord::Command(Command::VenueSync(s)) => {
                e.u8(tag::VENUE_SYNC);
                e.u32(s.0);
            }
            JournalRecord::Command(Command::Venue(r)) => {
                e.u8(tag::VENUE);
                e.u32(r.venue.0);
                e.u64(r.order_id.0);
                e.u8(venue_kind_code(r.kind));
                e.i64(r.last_px.0);
                e.i64(r.last_qty.0);
                e.i64(r.cum_qty.0);
                e.i64(r.received_ns);
            }
            JournalRecord::Event(ev) => {
                e.u8(tag::EVENT);
                e.head(ev.session, ev.account, ev.instrument);
                match ev.kind {
                    EventKind::New => e.u8(0),
                    EventKind::PartialFill => e.u8(1),
                    EventKind::Fill => e.u8(2),
                    EventKind::Canceled => e.u8(3),
                    EventKind::Replaced => e.u8(4),
                    EventKind::Rejected(r) => {
                        e.u8(5);
                        e.u8(reason_code(r));
                    }
                    EventKind::Expired => e.u8(6),
                    EventKind::CancelRejected { replace, reason } => {
                        e.u8(7);
                        e.bool(replace);
                        e.u8(reason_code(reason));
                    }
                    EventKind::MassCancelDone { canceled } => {
                        e.u8(8);
                        e.u32(canceled);
                    }
                    EventKind::Triggered => e.u8(9),
                    EventKind::Activated => e.u8(10),
                    EventKind::Route(RouteRequest::New) => e.u8(11),
                    EventKind::Route(RouteRequest::Cancel) => e.u8(12),
                    EventKind::Route(RouteRequest::Replace) => e.u8(13),
                    EventKind::Pending(RouteRequest::New) => e.u8(14),
                    EventKind::Pending(RouteRequest::Cancel) => e.u8(15),
                    EventKind::Pending(RouteRequest::Replace) => e.u8(16),
                }
                e.u64(ev.order_id.0);
                e.id(&ev.cl_ord_id);
                e.id(&ev.orig_cl_ord_id);
                e.u8(side_code(ev.side));
                e.ord_type(ev.ord_type);
                e.tif(ev.tif);
                for v in [
                    ev.price.0,
                    ev.qty.0,
                    ev.cum_qty.0,
                    ev.leaves_qty.0,
                    ev.avg_px.0,
                    ev.last_px.0,
                    ev.last_qty.0,
                ] {
                    e.i64(v);
                }
                e.u64(ev.trade_id.0);
                e.u64(ev.exec_id);
                e.i64(ev.ts_ns);
                e.i64(ev.received_ns);
                // Only an order with details writes them, so older records read unchanged.
                let d = &ev.details;
                if *d != OrderDetails::default() {
                    let iceberg = d.display_qty.0 != 0;
                    e.u8(u8::from(d.post_only)
                        | u8::from(iceberg) << 1
                        | u8::from(d.trailing.is_some()) << 2
                        | u8::from(d.waiting) << 3
                        | u8::from(d.pending) << 4);
                    if iceberg {
                        e.i64(d.display_qty.0);
                    }
                    if let Some(t) = d.trailing {
                        e.0.extend_from_slice(&t.bips().to_le_bytes());
                    }
                }
            }
            JournalRecord::KillSwitch { account, on } => {
                e.u8(tag::KILL_SWITCH);
                e.opt_u32(account.map(|a| a.0));
                e.bool(*on);
            }
            JournalRecord::InstrumentStatus { instrument, status } => {
                e.u8(tag::INSTRUMENT_STATUS);
                e.u32(instrument.0);
                e.u8(status_code(*status));
            }
            JournalRecord::Limits { account, data } => {
                e.u8(tag::LIMITS);
                e.opt_u32(account.map(|a| a.0));
                // Longer data is refused by `check`, which the writer runs first; here it is
                // cut at the limit so the encoding always stays decodable.
                let data = &data[..data.len().min(MAX_LIMITS_BYTES)];
                e.u32(data.len() as u32);
                e.0.extend_from_slice(data);
            }
            JournalRecord::SessionSeq {
                session,
                next_in,
                next_out,
            } => {
                e.u8(tag::SESSION_SEQ);
                e.u32(session.0);
                e.u64(*next_in);
                e.u64(*next_out);
            }
            JournalRecord::Snapshot { seq, state_hash } => {
                e.u8(tag::SNAPSHOT);
                e.u64(seq.0);
                e.0.extend_from_slice(state_hash);
            }
            JournalRecord::Clock { now_ns } => {
                e.u8(tag::CLOCK);
                e.i64(*now_ns);
            }
        }
    }

    /// Refuses what [`JournalRecord::encode`] cannot represent (an over-long `Limits` blob).
    pub fn check(&self) -> Result<(), DecodeError> {
        match self {
            JournalRecord::Limits { data, .. } if data.len() > MAX_LIMITS_BYTES => {
                Err(DecodeError {
                    offset: 0,
                    what: "limits data longer than MAX_LIMITS_BYTES",
                })
            }
            _ => Ok(()),
        }
    }

    /// Decodes one record from a whole payload.
    pub fn decode(bytes: &[u8]) -> Result<JournalRecord, DecodeError> {
        let mut d = Dec { b: bytes, pos: 0 };
        if d.u8()? != CODEC_VERSION {
            return Err(DecodeError {
                offset: 0,
                what: "unsupported record codec version",
            });
        }
        let tag_at = d.pos;
        let rec = match d.u8()? {
            tag::NEW => {
                let (session, account, instrument) = d.head()?;
                let cl_ord_id = d.id()?;
                let side = d.code(side_from, "invalid side")?;
                let ord_type = d.ord_type()?;
                let tif = d.tif()?;
                let price = Price(d.i64()?);
                let qty = Qty(d.i64()?);
                let flags = d.u8()?;
                if flags > 63 {
                    return Err(d.err(1, "invalid order flags"));
                }
                let display_qty = Qty(if flags & 2 != 0 { d.i64()? } else { 0 });
                let trailing = if flags & 4 != 0 {
                    let bips = u16::from_le_bytes(d.take(2)?.try_into().expect("2"));
                    Some(
                        TrailingDelta::new(bips)
                            .ok_or_else(|| d.err(2, "invalid trailing delta"))?,
                    )
                } else {
                    None
                };
                let oco_with = if flags & 8 != 0 {
                    Some(OrderId(d.u64()?))
                } else {
                    None
                };
                let triggers = if flags & 32 != 0 {
                    Some(OrderId(d.u64()?))
                } else {
                    None
                };
                JournalRecord::Command(Command::New(NewOrder {
                    session,
                    account,
                    instrument,
                    cl_ord_id,
                    side,
                    ord_type,
                    tif,
                    price,
                    qty,
                    post_only: flags & 1 != 0,
                    stp: match d.u8()? {
                        0 => None,
                        1 => Some(d.code(stp_from, "invalid self-trade prevention mode")?),
                        _ => return Err(d.err(1, "invalid option flag")),
                    },
                    received_ns: d.i64()?,
                    display_qty,
                    trailing,
                    oco_with,
                    pending: flags & 16 != 0,
                    triggers,
                }))
            }
            tag::CANCEL => {
                let (session, account, instrument) = d.head()?;
                JournalRecord::Command(Command::Cancel(CancelOrder {
                    session,
                    account,
                    instrument,
                    cl_ord_id: d.id()?,
                    order_id: d.opt_u64()?.map(OrderId),
                    orig_cl_ord_id: d.id()?,
                    received_ns: d.i64()?,
                }))
            }
            tag::REPLACE => {
                let (session, account, instrument) = d.head()?;
                JournalRecord::Command(Command::Replace(ReplaceOrder {
                    session,
                    account,
                    instrument,
                    cl_ord_id: d.id()?,
                    order_id: d.opt_u64()?.map(OrderId),
                    orig_cl_ord_id: d.id()?,
                    price: Price(d.i64()?),
                    qty: Qty(d.i64()?),
                    received_ns: d.i64()?,
                    tif: if d.pos < bytes.len() {
                        Some(d.tif()?)
                    } else {
                        None
                    },
                }))
            }
            tag::MASS_CANCEL => JournalRecord::Command(Command::MassCancel(MassCancel {
                session: SessionId(d.u32()?),
                account: AccountId(d.u32()?),
                instrument: d.opt_u32()?.map(InstrumentId),
                cl_ord_id: d.id()?,
            })),
            tag::SESSION_CLOSED => {
                JournalRecord::Command(Command::SessionClosed(SessionId(d.u32()?)))
            }
            tag::VENUE_SYNC => JournalRecord::Command(Command::VenueSync(SessionId(d.u32()?))),
            tag::VENUE => JournalRecord::Command(Command::Venue(VenueReport {
                venue: SessionId(d.u32()?),
                order_id: OrderId(d.u64()?),
                kind: d.code(venue_kind_from, "invalid venue report kind")?,
                last_px: Price(d.i64()?),
                last_qty: Qty(d.i64()?),
                cum_qty: Qty(d.i64()?),
                received_ns: d.i64()?,
            })),
            tag::EVENT => {
                let (session, account, instrument) = d.head()?;
                let kind = match d.u8()? {
                    0 => EventKind::New,
                    1 => EventKind::PartialFill,
                    2 => EventKind::Fill,
                    3 => EventKind::Canceled,
                    4 => EventKind::Replaced,
                    5 => EventKind::Rejected(d.code(reason_from, "invalid reject reason")?),
                    6 => EventKind::Expired,
                    7 => EventKind::CancelRejected {
                        replace: d.bool()?,
                        reason: d.code(reason_from, "invalid reject reason")?,
                    },
                    8 => EventKind::MassCancelDone { canceled: d.u32()? },
                    9 => EventKind::Triggered,
                    10 => EventKind::Activated,
                    11 => EventKind::Route(RouteRequest::New),
                    12 => EventKind::Route(RouteRequest::Cancel),
                    13 => EventKind::Route(RouteRequest::Replace),
                    14 => EventKind::Pending(RouteRequest::New),
                    15 => EventKind::Pending(RouteRequest::Cancel),
                    16 => EventKind::Pending(RouteRequest::Replace),
                    _ => return Err(d.err(1, "invalid event kind")),
                };
                let mut ev = Event {
                    session,
                    account,
                    instrument,
                    kind,
                    order_id: OrderId(d.u64()?),
                    cl_ord_id: d.id()?,
                    orig_cl_ord_id: d.id()?,
                    side: d.code(side_from, "invalid side")?,
                    ord_type: d.ord_type()?,
                    tif: d.tif()?,
                    price: Price(d.i64()?),
                    qty: Qty(d.i64()?),
                    cum_qty: Qty(d.i64()?),
                    leaves_qty: Qty(d.i64()?),
                    avg_px: Price(d.i64()?),
                    last_px: Price(d.i64()?),
                    last_qty: Qty(d.i64()?),
                    trade_id: TradeId(d.u64()?),
                    exec_id: d.u64()?,
                    ts_ns: d.i64()?,
                    received_ns: d.i64()?,
                    details: OrderDetails::default(),
                };
                if d.pos < bytes.len() {
                    let flags = d.u8()?;
                    if flags == 0 || flags > 31 {
                        return Err(d.err(1, "invalid order details flags"));
                    }
                    let details = &mut ev.details;
                    details.post_only = flags & 1 != 0;
                    details.waiting = flags & 8 != 0;
                    details.pending = flags & 16 != 0;
                    if flags & 2 != 0 {
                        details.display_qty = Qty(d.i64()?);
                        if details.display_qty.0 == 0 {
                            return Err(d.err(8, "invalid iceberg display qty"));
                        }
                    }
                    if flags & 4 != 0 {
                        let bips = u16::from_le_bytes(d.take(2)?.try_into().expect("2"));
                        details.trailing = Some(
                            TrailingDelta::new(bips)
                                .ok_or_else(|| d.err(2, "invalid trailing delta"))?,
                        );
                    }
                }
                JournalRecord::Event(ev)
            }
            tag::KILL_SWITCH => JournalRecord::KillSwitch {
                account: d.opt_u32()?.map(AccountId),
                on: d.bool()?,
            },
            tag::INSTRUMENT_STATUS => JournalRecord::InstrumentStatus {
                instrument: InstrumentId(d.u32()?),
                status: d.code(status_from, "invalid instrument status")?,
            },
            tag::LIMITS => {
                let account = d.opt_u32()?.map(AccountId);
                let len = d.u32()? as usize;
                if len > MAX_LIMITS_BYTES {
                    return Err(d.err(4, "limits data too long"));
                }
                JournalRecord::Limits {
                    account,
                    data: d.take(len)?.to_vec(),
                }
            }
            tag::SESSION_SEQ => JournalRecord::SessionSeq {
                session: SessionId(d.u32()?),
                next_in: d.u64()?,
                next_out: d.u64()?,
            },
            tag::SNAPSHOT => JournalRecord::Snapshot {
                seq: Seq(d.u64()?),
                state_hash: d.take(32)?.try_into().expect("32 bytes"),
            },
            tag::CLOCK => JournalRecord::Clock { now_ns: d.i64()? },
            _ => {
                return Err(DecodeError {
                    offset: tag_at,
                    what: "unknown record tag",
                })
            }
        };
        if d.pos != bytes.len() {
            return Err(DecodeError {
                offset: d.pos,
                what: "trailing bytes after the record",
            });
        }
        Ok(rec)
    }

    /// The record's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            JournalRecord::Command(_) => RecordKind::Command,
            JournalRecord::Event(_) => RecordKind::Event,
            _ => RecordKind::Control,
        }
    }
}

/// A bounds-checked reader over a payload.
struct Dec<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn err(&self, back: usize, what: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos.saturating_sub(back),
            what,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.b.len() => {
                let s = &self.b[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => Err(DecodeError {
                offset: self.pos,
                what: "record ends early",
            }),
        }
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn ord_type(&mut self) -> Result<OrdType, DecodeError> {
        let c = self.u8()?;
        OrdType::from_code(c, || self.i64().map(Price))
            .unwrap_or_else(|| Err(self.err(1, "invalid order type")))
    }
    fn tif(&mut self) -> Result<TimeInForce, DecodeError> {
        let c = self.u8()?;
        TimeInForce::from_code(c, || self.i64())
            .unwrap_or_else(|| Err(self.err(1, "invalid time in force")))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.err(1, "invalid boolean")),
        }
    }
    fn code<T>(&mut self, f: fn(u8) -> Option<T>, what: &'static str) -> Result<T, DecodeError> {
        let c = self.u8()?;
        f(c).ok_or_else(|| self.err(1, what))
    }
    fn id(&mut self) -> Result<ClOrdId, DecodeError> {
        let len = usize::from(self.u8()?);
        if len == 0 {
            return Ok(ClOrdId::EMPTY);
        }
        if len > ClOrdId::MAX_LEN {
            return Err(self.err(1, "client order id too long"));
        }
        let at = self.pos;
        ClOrdId::new(self.take(len)?).map_err(|_| DecodeError {
            offset: at,
            what: "invalid client order id",
        })
    }
    fn opt_u32(&mut self) -> Result<Option<u32>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u32()?)),
            _ => Err(self.err(1, "invalid option flag")),
        }
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u64()?)),
            _ => Err(self.err(1, "invalid option flag")),
        }
    }
    fn head(&mut self) -> Result<(SessionId, AccountId, InstrumentId), DecodeError> {
        Ok((
            SessionId(self.u32()?),
            AccountId(self.u32()?),
            InstrumentId(self.u32()?),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Human-readable form (`journal dump`)

pub(crate) fn side_str(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// ` display_qty=N` for an iceberg order, nothing otherwise.
struct DisplayQty(Qty);

impl fmt::Display for DisplayQty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 .0 {
            0 => Ok(()),
            q => write!(f, " display_qty={q}"),
        }
    }
}

/// ` stop_px=N` for a stop or take-profit order, nothing otherwise.
struct StopPx(OrdType);

impl fmt::Display for StopPx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.stop_px() {
            Some(p) => write!(f, " stop_px={}", p.0),
            None => Ok(()),
        }
    }
}

/// A time in force, with ` expire_ns=…` after a GTD order's.
struct Tif(TimeInForce);

impl fmt::Display for Tif {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())?;
        match self.0.expire_ns() {
            Some(t) => write!(f, " expire_ns={t}"),
            None => Ok(()),
        }
    }
}

fn stp_str(s: Option<StpMode>) -> &'static str {
    match s {
        None => "account",
        Some(StpMode::CancelResting) => "cancel_resting",
        Some(StpMode::CancelIncoming) => "cancel_incoming",
        Some(StpMode::CancelBoth) => "cancel_both",
    }
}

fn status_str(s: InstrumentStatus) -> &'static str {
    match s {
        InstrumentStatus::Trading => "trading",
        InstrumentStatus::Halted => "halted",
        InstrumentStatus::Expired => "expired",
    }
}

fn venue_kind_str(k: VenueReportKind) -> &'static str {
    match k {
        VenueReportKind::Accepted => "accepted",
        VenueReportKind::Fill => "fill",
        VenueReportKind::Canceled => "canceled",
        VenueReportKind::Expired => "expired",
        VenueReportKind::Rejected => "rejected",
        VenueReportKind::CancelRejected => "cancel_rejected",
        VenueReportKind::Replaced => "replaced",
        VenueReportKind::ReplaceRejected => "replace_rejected",
    }
}

/// The snake_case name of an event kind (`new`, `partial_fill`, `fill`, ...).
pub(crate) fn event_kind_str(k: &EventKind) -> &'static str {
    match k {
        EventKind::New => "new",
        EventKind::PartialFill => "partial_fill",
        EventKind::Fill => "fill",
        EventKind::Canceled => "canceled",
        EventKind::Replaced => "replaced",
        EventKind::Rejected(_) => "rejected",
        EventKind::Expired => "expired",
        EventKind::CancelRejected { .. } => "cancel_rejected",
        EventKind::MassCancelDone { .. } => "mass_cancel_done",
        EventKind::Triggered => "triggered",
        EventKind::Activated => "activated",
        EventKind::Route(RouteRequest::New) => "route_new",
        EventKind::Route(RouteRequest::Cancel) => "route_cancel",
        EventKind::Route(RouteRequest::Replace) => "route_replace",
        EventKind::Pending(RouteRequest::New) => "pending_new",
        EventKind::Pending(RouteRequest::Cancel) => "pending_cancel",
        EventKind::Pending(RouteRequest::Replace) => "pending_replace",
    }
}

/// Optional ids print as `-` when absent.
struct Opt<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Client ids print as `-` when empty.
struct Id<'a>(&'a ClOrdId);

impl fmt::Display for Id<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(self.0.as_str())
        }
    }
}

/// One line per record, `key=value` pairs. Prices and quantities are in instrument units
/// (integer counts of `10^-scale`), as stored: the journal does not know the scales.
impl fmt::Display for JournalRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalRecord::Command(Command::New(o)) => write!(
                f,
                "new_order session={} account={} instrument={} cl_ord_id={} side={} type={}{} tif={} price={} qty={}{} post_only={} stp={} received_ns={}",
                o.session, o.account, o.instrument, Id(&o.cl_ord_id), side_str(o.side),
                o.ord_type.name(), StopPx(o.ord_type), Tif(o.tif), o.price.0, o.qty.0,
                DisplayQty(o.display_qty), o.post_only, stp_str(o.stp), o.received_ns
            ),
            JournalRecord::Command(Command::Cancel(c)) => write!(
                f,
                "cancel session={} account={} instrument={} cl_ord_id={} order_id={} orig_cl_ord_id={} received_ns={}",
                c.session, c.account, c.instrument, Id(&c.cl_ord_id), Opt(c.order_id),
                Id(&c.orig_cl_ord_id), c.received_ns
            ),
            JournalRecord::Command(Command::Replace(r)) => {
                // An amend of the quantity keeps whatever price the order has.
                let price: &dyn fmt::Display = if r.price == ReplaceOrder::KEEP_PRICE {
                    &"keep"
                } else {
                    &r.price.0
                };
                write!(
                    f,
                    "replace session={} account={} instrument={} cl_ord_id={} order_id={} orig_cl_ord_id={} price={} qty={} received_ns={}",
                    r.session, r.account, r.instrument, Id(&r.cl_ord_id), Opt(r.order_id),
                    Id(&r.orig_cl_ord_id), price, r.qty.0, r.received_ns
                )?;
                match r.tif {
                    Some(t) => write!(f, " tif={}", Tif(t)),
                    None => Ok(()),
                }
            }
            JournalRecord::Command(Command::MassCancel(m)) => write!(
                f,
                "mass_cancel session={} account={} instrument={} cl_ord_id={}",
                m.session, m.account, Opt(m.instrument), Id(&m.cl_ord_id)
            ),
            JournalRecord::Command(Command::SessionClosed(s)) => {
                write!(f, "session_closed session={s}")
            }
            JournalRecord::Command(Command::VenueSync(s)) => write!(f, "venue_sync venue={s}"),
            JournalRecord::Command(Command::Venue(r)) => write!(
                f,
                "venue_report venue={} order_id={} kind={} last_px={} last_qty={} cum_qty={} received_ns={}",
                r.venue, r.order_id, venue_kind_str(r.kind), r.last_px.0, r.last_qty.0, r.cum_qty.0,
                r.received_ns
            ),
            JournalRecord::Event(e) => {
                write!(f, "event {}", event_kind_str(&e.kind))?;
                match e.kind {
                    EventKind::Rejected(r) => write!(f, " reason=\"{}\"", r.text())?,
                    EventKind::CancelRejected { replace, reason } => {
                        write!(f, " replace={replace} reason=\"{}\"", reason.text())?
                    }
                    EventKind::MassCancelDone { canceled } => write!(f, " canceled={canceled}")?,
                    _ => {}
                }
                write!(
                    f,
                    " session={} account={} instrument={} order_id={} cl_ord_id={} orig_cl_ord_id={} side={} type={}{} tif={} price={} qty={} cum_qty={} leaves_qty={} avg_px={} last_px={} last_qty={} trade_id={} exec_id={} ts_ns={} received_ns={}",
                    e.session, e.account, e.instrument, e.order_id, Id(&e.cl_ord_id),
                    Id(&e.orig_cl_ord_id), side_str(e.side), e.ord_type.name(),
                    StopPx(e.ord_type), Tif(e.tif), e.price.0, e.qty.0, e.cum_qty.0, e.leaves_qty.0, e.avg_px.0,
                    e.last_px.0, e.last_qty.0, e.trade_id, e.exec_id, e.ts_ns, e.received_ns
                )
            }
            JournalRecord::KillSwitch { account, on } => write!(
                f,
                "kill_switch account={} on={on}",
                match account {
                    Some(a) => a.to_string(),
                    None => "global".into(),
                }
            ),
            JournalRecord::InstrumentStatus { instrument, status } => write!(
                f,
                "instrument_status instrument={instrument} status={}",
                status_str(*status)
            ),
            JournalRecord::Limits { account, data } => write!(
                f,
                "limits account={} bytes={}",
                match account {
                    Some(a) => a.to_string(),
                    None => "defaults".into(),
                },
                data.len()
            ),
            JournalRecord::SessionSeq {
                session,
                next_in,
                next_out,
            } => write!(
                f,
                "session_seq session={session} next_in={next_in} next_out={next_out}"
            ),
            JournalRecord::Snapshot { seq, state_hash } => write!(
                f,
                "snapshot seq={seq} state_hash={}",
                hex::encode(state_hash)
            ),
            JournalRecord::Clock { now_ns } => write!(f, "clock now_ns={now_ns}"),
        }
    }
}
