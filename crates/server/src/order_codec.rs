//! FIX order entry on the socket task: decoding NewOrderSingle (D), OrderCancelRequest (F),
//! OrderCancelReplaceRequest (G), OrderStatusRequest (H) and OrderMassCancelRequest (q) into the
//! pipeline's fixed-size requests, and encoding what comes back — ExecutionReport (8),
//! OrderCancelReject (9), OrderMassCancelReport (r) — correctly for each FIX version.
//!
//! Decoding validates everything that needs no shared state, so an invalid request is answered
//! here ([`Refusal`]) and never reaches the core thread: the symbol (through the instrument
//! [`Directory`]), the account (the session's own), side, order type, time in force, and
//! prices and quantities parsed exactly at the instrument's scales (too many decimals is a
//! reject naming the field and the scale, never a rounding).
//!
//! Versions (the field values each version's dictionary allows):
//!
//! | | FIX 4.2 | FIX 4.4 | FIX 5.0 SP2 |
//! |---|---|---|---|
//! | ExecTransType(20) | 0 (new), 3 (status) | — | — |
//! | ExecType(150) of fills | 1 partial, 2 fill | F trade | F trade |
//! | ExecType of a status | the OrdStatus | I | I |
//! | OrdStatus(39) after a replace | 5 replaced | the order's state | the order's state |
//! | OrdRejReason(103) | 0..=8, else 0 (broker option) | 0..=15, 99, else 99 | as is |
//! | CxlRejReason(102) | 0..=3, else 2 (broker option) | 0..=6, 99 | 0..=6, 18, 99 |
//!
//! Text(58) always carries the precise reason.

use std::borrow::Cow;

use portcullis_engine::{OrderRef, ALL_INSTRUMENTS};
use portcullis_fix::decode::parse_u64;
use portcullis_fix::{tag, BeginString, Encoder, MessageRef, TimePrecision, UtcTimestamp};
use portcullis_types::{
    format_fixed, AccountId, CancelOrder, ClOrdId, DecimalError, Event, EventKind, InstrumentId,
    MassCancel, NewOrder, OrdType, OrderDetails, OrderId, Price, Qty, RejectReason, ReplaceOrder,
    RouteRequest, SessionId, Side, TimeInForce, TrailingDelta, TriggerDirection,
};

use crate::pipeline::{DirEntry, Directory, StatusRequest};

/// TotalAffectedOrders(533).
const TOTAL_AFFECTED_ORDERS: u32 = 533;
/// CxlRejReason(102) 1: unknown order.
const CXL_REJ_UNKNOWN_ORDER: u32 = 1;

/// ListID(66): the order list an OrderCancelRequest may name instead of an order.
pub const LIST_ID: u32 = 66;

/// MassCancelRejectReason(532).
const MASS_CANCEL_REJECT_REASON: u32 = 532;
/// MassStatusReqID(584), MassStatusReqType(585), TotNumReports(911), LastRptRequested(912).
pub(crate) const MASS_STATUS_REQ_ID: u32 = 584;
const MASS_STATUS_REQ_TYPE: u32 = 585;
const TOT_NUM_REPORTS: u32 = 911;
const LAST_RPT_REQUESTED: u32 = 912;

/// What a decoder needs to know about the connection.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The instrument directory.
    pub directory: &'a Directory,
    /// Accounts the connection may trade for; the first is used when a request names none.
    pub allowed: &'a [AccountId],
    /// Account names by [`AccountId`].
    pub account_names: &'a [Box<str>],
    /// The connection's session slot.
    pub session: SessionId,
    /// When the message was received.
    pub now_ns: i64,
    /// When the trading day ends (seconds after midnight UTC): a GTD order's ExpireDate(432)
    /// means the end of that trading day.
    pub trading_day_end_secs: u32,
}

/// A decoded, valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// NewOrderSingle.
    New(NewOrder),
    /// OrderCancelRequest.
    Cancel(CancelOrder),
    /// OrderCancelReplaceRequest.
    Replace(ReplaceOrder),
    /// OrderStatusRequest.
    Status(StatusRequest),
    /// OrderMassCancelRequest.
    MassCancel(MassCancel),
    /// OrderMassStatusRequest.
    MassStatus(MassStatusRequest),
}

/// An OrderMassStatusRequest (AF): the working orders of an account, of one instrument or of
/// all, on one side or both. Its MassStatusReqID(584) is echoed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MassStatusRequest {
    /// The account (Account(1), or the session's first).
    pub account: AccountId,
    /// MassStatusReqType(585) 1: one instrument; 7: all (`None`).
    pub instrument: Option<InstrumentId>,
    /// Only this side's orders, if Side(54) was given.
    pub side: Option<Side>,
}

/// The fields of a request that its answer echoes, as the client sent them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo<'m> {
    cl_ord_id: Option<&'m [u8]>,
    orig_cl_ord_id: Option<&'m [u8]>,
    order_id: Option<&'m [u8]>,
    account: Option<&'m [u8]>,
    symbol: Option<&'m [u8]>,
    side: Option<&'m [u8]>,
    qty: Option<&'m [u8]>,
    price: Option<&'m [u8]>,
    ord_type: Option<&'m [u8]>,
    tif: Option<&'m [u8]>,
    mass_cancel_type: Option<&'m [u8]>,
    mass_status_req_id: Option<&'m [u8]>,
}

impl<'m> Echo<'m> {
    /// The echoed fields of `msg`.
    pub fn of(msg: &MessageRef<'m>) -> Self {
        let get = |t| msg.get(t).filter(|v| !v.is_empty());
        Echo {
            cl_ord_id: get(tag::CL_ORD_ID),
            orig_cl_ord_id: get(tag::ORIG_CL_ORD_ID),
            order_id: get(tag::ORDER_ID),
            account: get(tag::ACCOUNT),
            symbol: get(tag::SYMBOL),
            side: get(tag::SIDE),
            qty: get(tag::ORDER_QTY),
            price: get(tag::PRICE),
            ord_type: get(tag::ORD_TYPE),
            tif: get(tag::TIME_IN_FORCE),
            mass_cancel_type: get(tag::MASS_CANCEL_REQUEST_TYPE),
            mass_status_req_id: get(MASS_STATUS_REQ_ID),
        }
    }
}

/// A request refused on the socket task (invalid, or the server is busy). The answer, which
/// echoes the request's fields ([`encode_refusal`]): an ExecutionReport rejecting the order (D)
/// or the status request (H), an OrderCancelReject (F, G), an OrderMassCancelReport rejecting
/// the mass cancel (q).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The request's MsgType: `D`, `F`, `G`, `H` or `q`; `A` for `AF`.
    pub msg_type: u8,
    /// The reason, mapped to the version's reason code.
    pub reason: RejectReason,
    /// Text(58).
    pub text: Cow<'static, str>,
}

impl Refusal {
    /// A refusal of `msg` for `reason`, with the reason's own text.
    pub fn new(msg: &MessageRef<'_>, reason: RejectReason) -> Self {
        Self::with_text(msg, reason, reason.text())
    }

    /// A refusal of `msg` for `reason` with a precise text.
    pub fn with_text(
        msg: &MessageRef<'_>,
        reason: RejectReason,
        text: impl Into<Cow<'static, str>>,
    ) -> Self {
        Refusal {
            msg_type: msg.msg_type().first().copied().unwrap_or(b'D'),
            reason,
            text: text.into(),
        }
    }

    /// The MsgType of the answer.
    pub fn answer_type(&self) -> &'static [u8] {
        match self.msg_type {
            b'F' | b'G' => b"9",
            b'q' => b"r",
            _ => b"8",
        }
    }
}

/// True for the order-entry MsgTypes this module decodes.
pub fn is_order_entry(msg_type: &[u8]) -> bool {
    matches!(msg_type, b"D" | b"F" | b"G" | b"H" | b"q" | b"AF")
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes one order-entry message (validated by the session against its dictionary).
pub fn decode(msg: &MessageRef<'_>, ctx: &Ctx<'_>) -> Result<Request, Refusal> {
    match msg.msg_type() {
        b"D" => decode_new(msg, ctx).map(Request::New),
        b"F" => decode_cancel(msg, ctx, None).map(Request::Cancel),
        b"G" => decode_replace(msg, ctx).map(Request::Replace),
        b"H" => decode_status(msg, ctx).map(Request::Status),
        b"q" => decode_mass_cancel(msg, ctx).map(Request::MassCancel),
        b"AF" => decode_mass_status(msg, ctx).map(Request::MassStatus),
        _ => Err(Refusal::with_text(
            msg,
            RejectReason::Unsupported,
            "not an order-entry message",
        )),
    }
}

fn cl_ord_id(msg: &MessageRef<'_>, t: u32, name: &str) -> Result<ClOrdId, Refusal> {
    let v = msg.get(t).unwrap_or(b"");
    ClOrdId::new(v).map_err(|e| {
        Refusal::with_text(msg, RejectReason::Unsupported, format!("{name}({t}): {e}"))
    })
}

pub(crate) fn account(msg: &MessageRef<'_>, ctx: &Ctx<'_>) -> Result<AccountId, Refusal> {
    match msg.get(tag::ACCOUNT) {
        None => ctx.allowed.first().copied(),
        Some(name) => ctx.allowed.iter().copied().find(|a| {
            ctx.account_names
                .get(a.0 as usize)
                .is_some_and(|n| n.as_bytes() == name)
        }),
    }
    .ok_or_else(|| {
        Refusal::with_text(
            msg,
            RejectReason::UnknownAccount,
            "unknown account: Account(1) must be an account of the session",
        )
    })
}

fn instrument<'d>(
    msg: &MessageRef<'_>,
    ctx: &Ctx<'d>,
    reason: RejectReason,
) -> Result<(InstrumentId, &'d DirEntry), Refusal> {
    let symbol = msg.get(tag::SYMBOL).unwrap_or(b"");
    ctx.directory
        .lookup(symbol)
        .ok_or_else(|| Refusal::with_text(msg, reason, "unknown instrument"))
}

fn side(msg: &MessageRef<'_>) -> Result<Side, Refusal> {
    match msg.get(tag::SIDE) {
        Some(b"1") => Ok(Side::Buy),
        Some(b"2") => Ok(Side::Sell),
        _ => Err(Refusal::with_text(
            msg,
            RejectReason::Unsupported,
            "Side(54) must be 1 (buy) or 2 (sell)",
        )),
    }
}

/// OrdType(40), with StopPx(99) for a stop (3), stop-limit (4) or market-if-touched (J)
/// order. TriggerPriceDirection(1109) against the stop-loss direction of `side` makes a 3 or 4
/// a take-profit (as J is): U on a sell, D on a buy.
fn ord_type(
    msg: &MessageRef<'_>,
    side: Side,
    price_scale: u8,
    trailing: bool,
) -> Result<OrdType, Refusal> {
    // A trailing stop's StopPx is optional: its activation price.
    let stop_px = |msg: &MessageRef<'_>, scale: u8| {
        if trailing && msg.get(tag::STOP_PX).is_none() {
            Ok(Price(0))
        } else {
            stop_px(msg, scale)
        }
    };
    let stop_loss = TriggerDirection::stop_loss(side);
    let direction = match msg.get(tag::TRIGGER_PRICE_DIRECTION) {
        None => None,
        Some(b"U") => Some(TriggerDirection::Up),
        Some(b"D") => Some(TriggerDirection::Down),
        Some(_) => {
            return Err(Refusal::with_text(
                msg,
                RejectReason::Unsupported,
                "TriggerPriceDirection(1109) must be U (up) or D (down)",
            ))
        }
    };
    let take_profit = direction.is_some_and(|d| d != stop_loss);
    let t = match msg.get(tag::ORD_TYPE) {
        Some(b"1") => OrdType::Market,
        Some(b"2") => OrdType::Limit,
        Some(b"3") if take_profit => OrdType::TakeProfit {
            stop_px: stop_px(msg, price_scale)?,
        },
        Some(b"3") => OrdType::Stop {
            stop_px: stop_px(msg, price_scale)?,
        },
        Some(b"4") if take_profit => OrdType::TakeProfitLimit {
            stop_px: stop_px(msg, price_scale)?,
        },
        Some(b"4") => OrdType::StopLimit {
            stop_px: stop_px(msg, price_scale)?,
        },
        Some(b"J") if direction != Some(stop_loss) => OrdType::TakeProfit {
            stop_px: stop_px(msg, price_scale)?,
        },
        Some(b"J") => {
            return Err(Refusal::with_text(
                msg,
                RejectReason::Unsupported,
                match side {
                    Side::Buy => {
                        "a buy market-if-touched order (OrdType(40) J) triggers on a \
                                  fall: TriggerPriceDirection(1109) must be D"
                    }
                    Side::Sell => {
                        "a sell market-if-touched order (OrdType(40) J) triggers on a \
                                   rise: TriggerPriceDirection(1109) must be U"
                    }
                },
            ))
        }
        _ => {
            return Err(Refusal::with_text(
                msg,
                RejectReason::Unsupported,
                "OrdType(40) must be 1 (market), 2 (limit), 3 (stop), 4 (stop limit) or J \
                 (market if touched)",
            ))
        }
    };
    if direction.is_some() && t.stop_px().is_none() {
        return Err(Refusal::with_text(
            msg,
            RejectReason::Unsupported,
            "TriggerPriceDirection(1109) is only for OrdType(40) 3, 4 or J",
        ));
    }
    if trailing && t.stop_px().is_none() {
        return Err(Refusal::with_text(
            msg,
            RejectReason::Unsupported,
            "ExecInst(18) a (trailing stop peg) is only for OrdType(40) 3, 4 or J",
        ));
    }
    Ok(t)
}

/// Whether ExecInst(18) holds `value` (its values are space-separated).
fn exec_inst(msg: &MessageRef<'_>, value: &[u8]) -> bool {
    msg.get(tag::EXEC_INST)
        .is_some_and(|v| v.split(|&b| b == b' ').any(|c| c == value))
}

/// A trailing stop's distance: ExecInst(18) `a` (trailing stop peg) with PegOffsetValue(211)
/// in basis points (PegOffsetType(836) 1, which may be left out), a whole number from
/// [`TrailingDelta::MIN_BIPS`] to [`TrailingDelta::MAX_BIPS`]. Either field without `a` is
/// refused, so no peg instruction is silently ignored.
fn trailing(msg: &MessageRef<'_>) -> Result<Option<TrailingDelta>, Refusal> {
    let refuse =
        |text: Cow<'static, str>| Err(Refusal::with_text(msg, RejectReason::Unsupported, text));
    let offset = msg.get(tag::PEG_OFFSET_VALUE);
    let offset_type = msg.get(tag::PEG_OFFSET_TYPE);
    if !exec_inst(msg, b"a") {
        if offset.is_some() || offset_type.is_some() {
            return refuse(
                "PegOffsetValue(211) and PegOffsetType(836) are only for trailing stops \
                 (ExecInst(18) a)"
                    .into(),
            );
        }
        return Ok(None);
    }
    if offset_type.is_some_and(|t| t != b"1") {
        return refuse("PegOffsetType(836) must be 1 (basis points)".into());
    }
    let Some(offset) = offset else {
        return refuse(
            "PegOffsetValue(211) is required with ExecInst(18) a (trailing stop peg)".into(),
        );
    };
    match std::str::from_utf8(offset)
        .ok()
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(TrailingDelta::new)
    {
        Some(d) => Ok(Some(d)),
        None => refuse(
            format!(
                "PegOffsetValue(211) must be whole basis points from {} to {}",
                TrailingDelta::MIN_BIPS,
                TrailingDelta::MAX_BIPS
            )
            .into(),
        ),
    }
}

fn tif(msg: &MessageRef<'_>, ctx: &Ctx<'_>) -> Result<TimeInForce, Refusal> {
    let t = match msg.get(tag::TIME_IN_FORCE) {
        None | Some(b"0") => TimeInForce::Day,
        Some(b"1") => TimeInForce::Gtc,
        Some(b"3") => TimeInForce::Ioc,
        Some(b"4") => TimeInForce::Fok,
        Some(b"6") => {
            let expire_ns = gtd_expiry(msg, ctx.trading_day_end_secs)?;
            return Ok(TimeInForce::Gtd { expire_ns });
        }
        Some(_) => {
            return Err(Refusal::with_text(
                msg,
                RejectReason::Unsupported,
                "TimeInForce(59) must be 0 (day), 1 (GTC), 3 (IOC), 4 (FOK) or 6 (GTD)",
            ))
        }
    };
    // An expiry on another time in force is a client that expects its order to end: refused
    // rather than left working.
    for (t, name) in [
        (tag::EXPIRE_TIME, "ExpireTime(126)"),
        (tag::EXPIRE_DATE, "ExpireDate(432)"),
    ] {
        if msg.get(t).is_some() {
            return Err(Refusal::with_text(
                msg,
                RejectReason::Unsupported,
                format!("{name} is only for TimeInForce(59) 6 (GTD)"),
            ));
        }
    }
    Ok(t)
}

/// A GTD order's expiry (ns since the epoch): ExpireTime(126), else the end of the trading
/// day ExpireDate(432) names (the first `trading_day_end_secs` after its midnight UTC).
fn gtd_expiry(msg: &MessageRef<'_>, trading_day_end_secs: u32) -> Result<i64, Refusal> {
    let refuse = |text: &'static str| Refusal::with_text(msg, RejectReason::Unsupported, text);
    if let Some(v) = msg.get(tag::EXPIRE_TIME) {
        return UtcTimestamp::parse(v)
            .map(UtcTimestamp::nanos)
            .ok_or_else(|| refuse("ExpireTime(126) must be a UTCTimestamp"));
    }
    let Some(v) = msg.get(tag::EXPIRE_DATE) else {
        return Err(refuse(
            "TimeInForce(59) 6 (GTD) needs ExpireTime(126) or ExpireDate(432)",
        ));
    };
    end_of_trading_day(v, trading_day_end_secs)
        .ok_or_else(|| refuse("ExpireDate(432) must be a date YYYYMMDD before 2262"))
}

/// The end of trading day `date` (YYYYMMDD): its midnight UTC plus `trading_day_end_secs`,
/// or the next midnight for a day that ends at 00:00.
pub fn end_of_trading_day(date: &[u8], trading_day_end_secs: u32) -> Option<i64> {
    if date.len() != 8 {
        return None;
    }
    let mut ts = *b"00000000-00:00:00";
    ts[..8].copy_from_slice(date);
    let midnight = UtcTimestamp::parse(&ts)?.nanos();
    let secs = match trading_day_end_secs {
        0 => 86_400,
        s => i64::from(s),
    };
    midnight.checked_add(secs.checked_mul(1_000_000_000)?)
}

fn qty(msg: &MessageRef<'_>, scale: u8) -> Result<Qty, Refusal> {
    let Some(text) = msg.get(tag::ORDER_QTY) else {
        return Err(Refusal::with_text(
            msg,
            RejectReason::QtyTooSmall,
            "OrderQty(38) is required",
        ));
    };
    parse_qty(msg, text, "OrderQty(38)", scale)
}

/// A positive quantity field's value; `name` is how the errors call it.
fn parse_qty(msg: &MessageRef<'_>, text: &[u8], name: &str, scale: u8) -> Result<Qty, Refusal> {
    match Qty::parse(text, scale) {
        Ok(q) if q.0 > 0 => Ok(q),
        Ok(_) => Err(Refusal::with_text(
            msg,
            RejectReason::QtyTooSmall,
            format!("{name} must be positive"),
        )),
        Err(DecimalError::TooPrecise { scale }) => Err(Refusal::with_text(
            msg,
            RejectReason::BadLot,
            format!("{name} has more than {scale} decimal places for this instrument"),
        )),
        Err(DecimalError::Overflow) => Err(Refusal::with_text(
            msg,
            RejectReason::QtyTooLarge,
            format!("{name} out of range"),
        )),
        Err(DecimalError::Malformed) => Err(Refusal::with_text(
            msg,
            RejectReason::QtyTooSmall,
            format!("{name} is not a decimal number"),
        )),
    }
}

/// MaxFloor(111), or DisplayQty(1138) (FIX 5.0 SP2): an iceberg's shown quantity, and the
/// field's name. One at least the order's quantity shows all of it: no iceberg, `Qty(0)`.
fn display_qty(msg: &MessageRef<'_>, qty: Qty, scale: u8) -> Result<(Qty, &'static str), Refusal> {
    let (text, name) = match (msg.get(tag::MAX_FLOOR), msg.get(tag::DISPLAY_QTY)) {
        (Some(a), Some(b)) if a != b => {
            return Err(Refusal::with_text(
                msg,
                RejectReason::Unsupported,
                "MaxFloor(111) and DisplayQty(1138) differ",
            ))
        }
        (Some(v), _) => (v, "MaxFloor(111)"),
        (None, Some(v)) => (v, "DisplayQty(1138)"),
        (None, None) => return Ok((Qty(0), "")),
    };
    let d = parse_qty(msg, text, name, scale)?;
    if d >= qty {
        return Ok((Qty(0), name));
    }
    if qty.0 > d.0.saturating_mul(NewOrder::MAX_ICEBERG_PARTS) {
        return Err(Refusal::with_text(
            msg,
            RejectReason::Unsupported,
            format!(
                "{name} would show the order in more than {} parts",
                NewOrder::MAX_ICEBERG_PARTS
            ),
        ));
    }
    Ok((d, name))
}

fn price(msg: &MessageRef<'_>, scale: u8) -> Result<Price, Refusal> {
    price_field(msg, tag::PRICE, "Price(44)", "a limit order", scale)
}

fn stop_px(msg: &MessageRef<'_>, scale: u8) -> Result<Price, Refusal> {
    price_field(msg, tag::STOP_PX, "StopPx(99)", "a stop order", scale)
}

/// A required price field: `name` is how the errors call it, `required_for` what needs it.
fn price_field(
    msg: &MessageRef<'_>,
    field: u32,
    name: &str,
    required_for: &str,
    scale: u8,
) -> Result<Price, Refusal> {
    let Some(text) = msg.get(field) else {
        return Err(Refusal::with_text(
            msg,
            RejectReason::Unsupported,
            format!("{name} is required for {required_for}"),
        ));
    };
    Price::parse(text, scale).map_err(|e| {
        let text = match e {
            DecimalError::TooPrecise { scale } => {
                format!("{name} has more than {scale} decimal places for this instrument")
            }
            DecimalError::Overflow => format!("{name} out of range"),
            DecimalError::Malformed => format!("{name} is not a decimal number"),
        };
        Refusal::with_text(msg, RejectReason::BadTick, text)
    })
}

/// An OrderID(37) of this server: a decimal number.
fn order_id(msg: &MessageRef<'_>) -> Result<Option<OrderId>, Refusal> {
    match msg.get(tag::ORDER_ID) {
        None => Ok(None),
        Some(v) => parse_u64(v)
            .filter(|&id| id > 0)
            .map(|id| Some(OrderId(id)))
            .ok_or_else(|| {
                Refusal::with_text(msg, RejectReason::UnknownOrder, "unknown OrderID(37)")
            }),
    }
}

/// The order a cancel, replace or status request names: OrderID(37), else OrigClOrdID(41)
/// (or ClOrdID(11) for a status request).
fn orig(
    msg: &MessageRef<'_>,
    orig_tag: u32,
    orig_name: &str,
) -> Result<(Option<OrderId>, ClOrdId), Refusal> {
    let id = order_id(msg)?;
    let orig = match msg.get(orig_tag) {
        Some(v) if !v.is_empty() => ClOrdId::new(v).map_err(|e| {
            Refusal::with_text(
                msg,
                RejectReason::UnknownOrder,
                format!("{orig_name}({orig_tag}): {e}"),
            )
        })?,
        _ => ClOrdId::EMPTY,
    };
    if id.is_none() && orig.is_empty() {
        return Err(Refusal::with_text(
            msg,
            RejectReason::UnknownOrder,
            format!("OrderID(37) or {orig_name}({orig_tag}) is required"),
        ));
    }
    Ok((id, orig))
}

pub(crate) fn decode_new(msg: &MessageRef<'_>, ctx: &Ctx<'_>) -> Result<NewOrder, Refusal> {
    let cl_ord_id = cl_ord_id(msg, tag::CL_ORD_ID, "ClOrdID")?;
    let account = account(msg, ctx)?;
    let (instrument, entry) = instrument(msg, ctx, RejectReason::UnknownInstrument)?;
    let side = side(msg)?;
    let trailing = trailing(msg)?;
    let ord_type = ord_type(msg, side, entry.price_scale, trailing.is_some())?;
    let tif = tif(msg, ctx)?;
    let qty = qty(msg, entry.qty_scale)?;
    let price = if ord_type.is_market() {
        // A market or stop order has no limit; a Price(44) sent with one is ignored.
        Price(0)
    } else {
        price(msg, entry.price_scale)?
    };
    let post_only = exec_inst(msg, b"6");
    let (display_qty, display_name) = display_qty(msg, qty, entry.qty_scale)?;
    let o = NewOrder {
        session: ctx.session,
        account,
        instrument,
        cl_ord_id,
        side,
        ord_type,
        tif,
        price,
        qty,
        post_only,
        stp: None,
        received_ns: ctx.now_ns,
        display_qty,
        trailing,
        oco_with: None,
        pending: false,
        triggers: None,
    };
    if !o.iceberg_ok() {
        return Err(Refusal::with_text(
            msg,
            RejectReason::Unsupported,
            format!("{display_name} is only for orders that rest: limit, GTC, Day or GTD"),
        ));
    }
    Ok(o)
}

/// Decodes an OrderCancelRequest (F) for the order list `list` (its ListID, found by the
/// request's OrigClListID(25015)) unless it names an order: cancelling one order of a list
/// cancels the list.
pub fn decode_list_cancel(
    msg: &MessageRef<'_>,
    ctx: &Ctx<'_>,
    list: OrderId,
) -> Result<CancelOrder, Refusal> {
    decode_cancel(msg, ctx, Some(list))
}

fn decode_cancel(
    msg: &MessageRef<'_>,
    ctx: &Ctx<'_>,
    list: Option<OrderId>,
) -> Result<CancelOrder, Refusal> {
    let cl_ord_id = cl_ord_id(msg, tag::CL_ORD_ID, "ClOrdID")?;
    // A list by ListID(66): the engine's id of one of its orders.
    let list = list.or_else(|| {
        msg.get(LIST_ID)
            .and_then(parse_u64)
            .filter(|&id| id > 0)
            .map(OrderId)
    });
    let names_order = msg.get(tag::ORDER_ID).is_some() || msg.get(tag::ORIG_CL_ORD_ID).is_some();
    let (order_id, orig_cl_ord_id) = match list {
        Some(id) if !names_order => (Some(id), ClOrdId::EMPTY),
        _ => orig(msg, tag::ORIG_CL_ORD_ID, "OrigClOrdID").map_err(|r| {
            if names_order {
                r
            } else {
                Refusal::with_text(
                    msg,
                    RejectReason::UnknownOrder,
                    "OrderID(37), OrigClOrdID(41), ListID(66) or OrigClListID(25015) is required",
                )
            }
        })?,
    };
    let account = account(msg, ctx)?;
    let (instrument, _) = instrument(msg, ctx, RejectReason::UnknownOrder)?;
    Ok(CancelOrder {
        session: ctx.session,
        account,
        instrument,
        cl_ord_id,
        order_id,
        orig_cl_ord_id,
        received_ns: ctx.now_ns,
    })
}

fn decode_replace(msg: &MessageRef<'_>, ctx: &Ctx<'_>) -> Result<ReplaceOrder, Refusal> {
    let cl_ord_id = cl_ord_id(msg, tag::CL_ORD_ID, "ClOrdID")?;
    let (order_id, orig_cl_ord_id) = orig(msg, tag::ORIG_CL_ORD_ID, "OrigClOrdID")?;
    let account = account(msg, ctx)?;
    let (instrument, entry) = instrument(msg, ctx, RejectReason::UnknownOrder)?;
    let side = side(msg)?;
    // A stop-limit or take-profit limit order is replaced once triggered (it works as a
    // limit order then).
    let trailing = trailing(msg)?.is_some();
    if ord_type(msg, side, entry.price_scale, trailing)?.is_market() {
        return Err(Refusal::with_text(
            msg,
            RejectReason::Unsupported,
            "only limit orders can be replaced: OrdType(40) must be 2 or 4",
        ));
    }
    let qty = qty(msg, entry.qty_scale)?;
    let price = price(msg, entry.price_scale)?;
    // Without any of them the order keeps its time in force (and a GTD order its expiry).
    let given = [tag::TIME_IN_FORCE, tag::EXPIRE_TIME, tag::EXPIRE_DATE]
        .iter()
        .any(|&t| msg.get(t).is_some());
    let tif = match given.then(|| tif(msg, ctx)).transpose()? {
        Some(t) if !t.rests() => {
            return Err(Refusal::with_text(
                msg,
                RejectReason::Unsupported,
                "TimeInForce(59) of a replace must be 0 (day), 1 (GTC) or 6 (GTD)",
            ))
        }
        t => t,
    };
    Ok(ReplaceOrder {
        session: ctx.session,
        account,
        instrument,
        cl_ord_id,
        order_id,
        orig_cl_ord_id,
        price,
        qty,
        received_ns: ctx.now_ns,
        tif,
    })
}

fn decode_status(msg: &MessageRef<'_>, ctx: &Ctx<'_>) -> Result<StatusRequest, Refusal> {
    let (order_id, cl) = orig(msg, tag::CL_ORD_ID, "ClOrdID")?;
    let account = account(msg, ctx)?;
    let (instrument, _) = instrument(msg, ctx, RejectReason::UnknownOrder)?;
    let side = side(msg)?;
    Ok(StatusRequest {
        session: ctx.session,
        account,
        order: match order_id {
            Some(id) => OrderRef::Id(id),
            None => OrderRef::ClOrdId(cl),
        },
        cl_ord_id: cl,
        instrument,
        side,
    })
}

fn decode_mass_cancel(msg: &MessageRef<'_>, ctx: &Ctx<'_>) -> Result<MassCancel, Refusal> {
    let cl_ord_id = cl_ord_id(msg, tag::CL_ORD_ID, "ClOrdID")?;
    let account = account(msg, ctx)?;
    let instrument = match msg.get(tag::MASS_CANCEL_REQUEST_TYPE) {
        Some(b"1") => Some(instrument(msg, ctx, RejectReason::UnknownInstrument)?.0),
        Some(b"7") => None,
        _ => {
            return Err(Refusal::with_text(
                msg,
                RejectReason::Unsupported,
                "MassCancelRequestType(530) must be 1 (one instrument) or 7 (all orders)",
            ))
        }
    };
    Ok(MassCancel {
        session: ctx.session,
        account,
        instrument,
        cl_ord_id,
    })
}

fn decode_mass_status(msg: &MessageRef<'_>, ctx: &Ctx<'_>) -> Result<MassStatusRequest, Refusal> {
    let account = account(msg, ctx)?;
    let instrument = match msg.get(MASS_STATUS_REQ_TYPE) {
        Some(b"1") => Some(instrument(msg, ctx, RejectReason::UnknownInstrument)?.0),
        Some(b"7") => None,
        _ => {
            return Err(Refusal::with_text(
                msg,
                RejectReason::Unsupported,
                "MassStatusReqType(585) must be 1 (one instrument) or 7 (all orders)",
            ))
        }
    };
    let side = match msg.get(tag::SIDE) {
        None => None,
        Some(_) => Some(side(msg)?),
    };
    Ok(MassStatusRequest {
        account,
        instrument,
        side,
    })
}

// ---------------------------------------------------------------------------------------------
// Codes per version

/// OrdRejReason(103) as `v` defines it: a code the version lacks becomes its "other".
pub fn ord_rej_code(v: BeginString, reason: RejectReason) -> u32 {
    let c = reason.ord_rej_reason();
    match v {
        BeginString::Fix42 if c > 8 => 0,
        BeginString::Fix44 if c > 15 && c != 99 => 99,
        _ => c,
    }
}

/// CxlRejReason(102) as `v` defines it.
pub fn cxl_rej_code(v: BeginString, reason: RejectReason) -> u32 {
    let other = if v == BeginString::Fix42 { 2 } else { 99 };
    match reason {
        RejectReason::UnknownOrder => CXL_REJ_UNKNOWN_ORDER,
        RejectReason::DuplicateClOrdId if v != BeginString::Fix42 => 6,
        _ => other,
    }
}

/// MassCancelRejectReason(532).
fn mass_cancel_rej_code(reason: RejectReason) -> u32 {
    match reason {
        RejectReason::UnknownInstrument => 1,
        RejectReason::Unsupported => 0,
        _ => 99,
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Names the encoder needs: symbols and scales, account names.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// The instrument directory.
    pub directory: &'a Directory,
    /// Account names by [`AccountId`].
    pub account_names: &'a [Box<str>],
}

/// A report for the client: an event of the core, or the answer to a status request.
#[derive(Debug, Clone, Copy)]
pub enum Report<'e> {
    /// An execution event.
    Event(&'e Event),
    /// A status answer.
    Status(&'e Event),
    /// A cancel or replace reject of an order that has already ended, with its final
    /// OrdStatus(39): "too late to cancel" (CxlRejReason 0) instead of "unknown order".
    TooLate {
        /// The `CancelRejected` event.
        event: &'e Event,
        /// `2` filled, `4` cancelled, `C` expired.
        status: u8,
    },
    /// One report of the answer to an OrderMassStatusRequest: a working order's status
    /// (`event`, as for a status request) numbered within the answer.
    MassStatus {
        /// The order's state.
        event: &'e Event,
        /// MassStatusReqID(584) of the request.
        req_id: &'e [u8],
        /// TotNumReports(911).
        total: usize,
        /// LastRptRequested(912): the last report of the answer.
        last: bool,
    },
    /// The whole answer to an OrderMassStatusRequest that lists no order: one report with
    /// OrderID NONE and OrdStatus 8, and why in Text(58).
    MassStatusNone {
        /// The request's account, instrument (`u32::MAX`: all), side and time.
        event: &'e Event,
        /// MassStatusReqID(584) of the request.
        req_id: &'e [u8],
        /// Text(58).
        text: &'static str,
    },
}

impl Report<'_> {
    /// The MsgType of the report.
    pub fn msg_type(&self) -> &'static [u8] {
        match self {
            Report::Event(e) => match e.kind {
                EventKind::CancelRejected { .. } => b"9",
                EventKind::MassCancelDone { .. } => b"r",
                _ => b"8",
            },
            Report::Status(_) | Report::MassStatus { .. } | Report::MassStatusNone { .. } => b"8",
            Report::TooLate { .. } => b"9",
        }
    }
}

/// Local ExecIDs (refusals, status answers) are `L<n>`, so they never collide with the core's
/// numeric ones. Seeded from the clock so they also differ across restarts.
static LOCAL_EXEC_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Seeds the local ExecID counter (once at start).
pub fn seed_local_ids(seed: u64) {
    LOCAL_EXEC_ID.store(seed, std::sync::atomic::Ordering::Relaxed);
}

fn local_exec_id(enc: &mut Encoder, t: u32) {
    let n = LOCAL_EXEC_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut digits = [0u8; 21];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    i -= 1;
    digits[i] = b'L';
    enc.str(t, &digits[i..]);
}

/// Writes field `t` as the fixed-point decimal `v` at `scale` (through `scratch`).
pub(crate) fn fixed(enc: &mut Encoder, t: u32, v: i64, scale: u8, scratch: &mut Vec<u8>) {
    scratch.clear();
    format_fixed(v, scale, scratch);
    enc.str(t, scratch);
}

fn order_id_field(enc: &mut Encoder, id: OrderId) {
    if id.0 == 0 {
        enc.str(tag::ORDER_ID, b"NONE");
    } else {
        enc.uint(tag::ORDER_ID, id.0);
    }
}

/// Side(54) of a side.
pub(crate) fn side_char(s: Side) -> u8 {
    match s {
        Side::Buy => b'1',
        Side::Sell => b'2',
    }
}

/// TimeInForce(59) of a time in force.
pub(crate) fn tif_char(t: TimeInForce) -> u8 {
    match t {
        TimeInForce::Day => b'0',
        TimeInForce::Gtc => b'1',
        TimeInForce::Ioc => b'3',
        TimeInForce::Fok => b'4',
        TimeInForce::Gtd { .. } => b'6',
    }
}

/// OrdStatus(39) of a working order (after a replace, or in a cancel reject): A for the
/// pending order of a list.
fn working_status(e: &Event) -> u8 {
    if e.details.pending {
        b'A'
    } else if e.cum_qty.0 > 0 {
        if e.leaves_qty.0 > 0 {
            b'1'
        } else {
            b'2'
        }
    } else {
        b'0'
    }
}

/// OrdStatus(39) of an order after an execution event.
pub(crate) fn ord_status(v: BeginString, e: &Event) -> u8 {
    exec_type_and_status(v, e).1
}

/// ExecType(150) and OrdStatus(39) of an execution event.
fn exec_type_and_status(v: BeginString, e: &Event) -> (u8, u8) {
    let v42 = v == BeginString::Fix42;
    match e.kind {
        // The pending order of a list: Pending New until its working order fills, then New.
        EventKind::New if e.details.pending => (b'A', b'A'),
        EventKind::New => (b'0', b'0'),
        EventKind::Activated => (b'0', working_status(e)),
        EventKind::PartialFill => (if v42 { b'1' } else { b'F' }, b'1'),
        EventKind::Fill => (if v42 { b'2' } else { b'F' }, b'2'),
        EventKind::Canceled => (b'4', b'4'),
        EventKind::Replaced => (b'5', if v42 { b'5' } else { working_status(e) }),
        EventKind::Rejected(_) => (b'8', b'8'),
        EventKind::Expired => (b'C', b'C'),
        // Triggered or activated by system (FIX 5.0 SP2; callers skip it on older versions).
        EventKind::Triggered => (b'L', working_status(e)),
        // A routed order's request is on its way to the venue.
        EventKind::Pending(RouteRequest::New) => (b'A', b'A'),
        EventKind::Pending(RouteRequest::Cancel) => (b'6', b'6'),
        EventKind::Pending(RouteRequest::Replace) => (b'E', b'E'),
        // Not execution reports; callers route them elsewhere.
        EventKind::CancelRejected { .. }
        | EventKind::MassCancelDone { .. }
        | EventKind::Route(_) => (b'8', b'8'),
    }
}

/// Writes the body of the report (everything after the standard header). The caller starts
/// the message with [`Report::msg_type`] (the session does, in `send_application`).
pub fn encode_report(
    enc: &mut Encoder,
    v: BeginString,
    report: Report<'_>,
    names: &Names<'_>,
    scratch: &mut Vec<u8>,
) {
    match report {
        Report::Event(e) => match e.kind {
            EventKind::CancelRejected { replace, reason } => {
                encode_cancel_reject(enc, v, e, replace, reason, None, names)
            }
            EventKind::MassCancelDone { canceled } => {
                encode_mass_cancel_report(enc, v, e, canceled, names)
            }
            _ => encode_execution_report(enc, v, e, false, names, scratch),
        },
        Report::Status(e) => encode_execution_report(enc, v, e, true, names, scratch),
        Report::MassStatus {
            event,
            req_id,
            total,
            last,
        } => {
            encode_execution_report(enc, v, event, true, names, scratch);
            enc.str(MASS_STATUS_REQ_ID, req_id);
            enc.uint(TOT_NUM_REPORTS, total as u64);
            enc.char(LAST_RPT_REQUESTED, if last { b'Y' } else { b'N' });
        }
        Report::MassStatusNone {
            event,
            req_id,
            text,
        } => {
            encode_no_mass_status(enc, v, event, names);
            enc.str(MASS_STATUS_REQ_ID, req_id);
            enc.uint(TOT_NUM_REPORTS, 0);
            enc.char(LAST_RPT_REQUESTED, b'Y');
            enc.str(tag::TEXT, text.as_bytes());
        }
        Report::TooLate { event, status } => {
            let (replace, reason) = match event.kind {
                EventKind::CancelRejected { replace, reason } => (replace, reason),
                _ => (false, RejectReason::UnknownOrder),
            };
            encode_cancel_reject(enc, v, event, replace, reason, Some(status), names)
        }
    }
}

fn encode_execution_report(
    enc: &mut Encoder,
    v: BeginString,
    e: &Event,
    status: bool,
    names: &Names<'_>,
    scratch: &mut Vec<u8>,
) {
    let entry = names.directory.get(e.instrument);
    let (px_scale, qty_scale) = entry.map_or((0, 0), |d| (d.price_scale, d.qty_scale));
    let (mut exec_type, ord_status) = exec_type_and_status(v, e);
    if status {
        exec_type = if v == BeginString::Fix42 {
            ord_status
        } else {
            b'I'
        };
    }
    order_id_field(enc, e.order_id);
    if !e.cl_ord_id.is_empty() {
        enc.str(tag::CL_ORD_ID, e.cl_ord_id.as_bytes());
    }
    if !e.orig_cl_ord_id.is_empty() {
        enc.str(tag::ORIG_CL_ORD_ID, e.orig_cl_ord_id.as_bytes());
    }
    if e.exec_id == 0 {
        local_exec_id(enc, tag::EXEC_ID);
    } else {
        enc.uint(tag::EXEC_ID, e.exec_id);
    }
    if v == BeginString::Fix42 {
        enc.char(tag::EXEC_TRANS_TYPE, if status { b'3' } else { b'0' });
    }
    enc.char(tag::EXEC_TYPE, exec_type);
    enc.char(tag::ORD_STATUS, ord_status);
    if let EventKind::Rejected(reason) = e.kind {
        enc.uint(tag::ORD_REJ_REASON, u64::from(ord_rej_code(v, reason)));
    }
    if let Some(name) = names.account_names.get(e.account.0 as usize) {
        enc.str(tag::ACCOUNT, name.as_bytes());
    }
    if let Some(d) = entry {
        enc.str(tag::SYMBOL, d.symbol.as_bytes());
    }
    enc.char(tag::SIDE, side_char(e.side));
    if e.qty.0 > 0 {
        fixed(enc, tag::ORDER_QTY, e.qty.0, qty_scale, scratch);
    }
    enc.char(
        tag::ORD_TYPE,
        match e.ord_type {
            OrdType::Market => b'1',
            OrdType::Limit => b'2',
            OrdType::Stop { .. } => b'3',
            OrdType::StopLimit { .. } | OrdType::TakeProfitLimit { .. } => b'4',
            // FIX 4.2 has neither J nor TriggerPriceDirection(1109): a take-profit shows as
            // the stop order it becomes once triggered.
            OrdType::TakeProfit { .. } if v == BeginString::Fix42 => b'3',
            OrdType::TakeProfit { .. } => b'J',
        },
    );
    if !e.ord_type.is_market() && e.price.0 != 0 {
        fixed(enc, tag::PRICE, e.price.0, px_scale, scratch);
    }
    if let Some((stop_px, dir)) = e.ord_type.trigger(e.side) {
        // 0: a trailing stop without an activation price.
        if stop_px.0 != 0 {
            fixed(enc, tag::STOP_PX, stop_px.0, px_scale, scratch);
        }
        if e.ord_type.is_take_profit() && v != BeginString::Fix42 {
            enc.char(
                tag::TRIGGER_PRICE_DIRECTION,
                match dir {
                    TriggerDirection::Up => b'U',
                    TriggerDirection::Down => b'D',
                },
            );
        }
    }
    enc.char(tag::TIME_IN_FORCE, tif_char(e.tif));
    if let Some(expire_ns) = e.tif.expire_ns() {
        // As precise as the client gave it (an ExpireDate's end is whole seconds).
        let precision = match expire_ns % 1_000_000_000 {
            0 => TimePrecision::Seconds,
            n if n % 1_000_000 == 0 => TimePrecision::Millis,
            n if n % 1_000 == 0 => TimePrecision::Micros,
            _ => TimePrecision::Nanos,
        };
        enc.timestamp(
            tag::EXPIRE_TIME,
            UtcTimestamp::from_nanos(expire_ns),
            precision,
        );
    }
    order_details(enc, v, &e.details, qty_scale, scratch);
    if matches!(e.kind, EventKind::PartialFill | EventKind::Fill) && !status {
        fixed(enc, tag::LAST_QTY, e.last_qty.0, qty_scale, scratch);
        fixed(enc, tag::LAST_PX, e.last_px.0, px_scale, scratch);
    }
    fixed(enc, tag::LEAVES_QTY, e.leaves_qty.0, qty_scale, scratch);
    fixed(enc, tag::CUM_QTY, e.cum_qty.0, qty_scale, scratch);
    fixed(enc, tag::AVG_PX, e.avg_px.0, px_scale, scratch);
    enc.timestamp(
        tag::TRANSACT_TIME,
        UtcTimestamp::from_nanos(e.ts_ns),
        TimePrecision::Micros,
    );
    if let EventKind::Rejected(reason) = e.kind {
        enc.str(tag::TEXT, reason.text().as_bytes());
    }
}

/// What a report repeats of the order as it was entered: ExecInst(18) `6` (post-only) and `a`
/// (trailing stop peg), an iceberg's MaxFloor(111) (FIX 5.0 SP2: DisplayQty(1138)), a
/// trailing stop's PegOffsetValue(211) in basis points with PegOffsetType(836) 1 (not in FIX
/// 4.2's dictionary).
fn order_details(
    enc: &mut Encoder,
    v: BeginString,
    d: &OrderDetails,
    qty_scale: u8,
    scratch: &mut Vec<u8>,
) {
    let exec_inst: &[u8] = match (d.post_only, d.trailing.is_some()) {
        (true, true) => b"6 a",
        (true, false) => b"6",
        (false, true) => b"a",
        (false, false) => b"",
    };
    if !exec_inst.is_empty() {
        enc.str(tag::EXEC_INST, exec_inst);
    }
    if d.display_qty.0 > 0 {
        let t = if v == BeginString::Fixt11 {
            tag::DISPLAY_QTY
        } else {
            tag::MAX_FLOOR
        };
        fixed(enc, t, d.display_qty.0, qty_scale, scratch);
    }
    if let Some(t) = d.trailing {
        enc.uint(tag::PEG_OFFSET_VALUE, u64::from(t.bips()));
        if v != BeginString::Fix42 {
            enc.char(tag::PEG_OFFSET_TYPE, b'1');
        }
    }
}

/// The one report answering an OrderMassStatusRequest that matches no working order: no order
/// (OrderID NONE), OrdStatus 8, the request's account and time.
fn encode_no_mass_status(enc: &mut Encoder, v: BeginString, e: &Event, names: &Names<'_>) {
    enc.str(tag::ORDER_ID, b"NONE");
    local_exec_id(enc, tag::EXEC_ID);
    if v == BeginString::Fix42 {
        enc.char(tag::EXEC_TRANS_TYPE, b'3');
    }
    enc.char(tag::EXEC_TYPE, b'I');
    enc.char(tag::ORD_STATUS, b'8');
    if let Some(name) = names.account_names.get(e.account.0 as usize) {
        enc.str(tag::ACCOUNT, name.as_bytes());
    }
    // Symbol(55) is required: the instrument asked about, or the spec's "[N/A]" for all.
    let symbol = names
        .directory
        .get(e.instrument)
        .map(|d| d.symbol.as_bytes());
    enc.str(tag::SYMBOL, symbol.unwrap_or(b"[N/A]"));
    enc.char(tag::SIDE, side_char(e.side));
    enc.str(tag::LEAVES_QTY, b"0");
    enc.str(tag::CUM_QTY, b"0");
    enc.str(tag::AVG_PX, b"0");
    enc.timestamp(
        tag::TRANSACT_TIME,
        UtcTimestamp::from_nanos(e.ts_ns),
        TimePrecision::Micros,
    );
}

#[allow(clippy::too_many_arguments)]
fn encode_cancel_reject(
    enc: &mut Encoder,
    v: BeginString,
    e: &Event,
    replace: bool,
    reason: RejectReason,
    too_late: Option<u8>,
    names: &Names<'_>,
) {
    order_id_field(enc, e.order_id);
    enc.str(tag::CL_ORD_ID, e.cl_ord_id.as_bytes());
    if !e.orig_cl_ord_id.is_empty() {
        enc.str(tag::ORIG_CL_ORD_ID, e.orig_cl_ord_id.as_bytes());
    } else if v != BeginString::Fixt11 {
        // Required before 5.0; a cancel by OrderID alone names no client id.
        enc.str(tag::ORIG_CL_ORD_ID, b"NONE");
    }
    // The order's current state when it is known (or its final one when it has ended);
    // Rejected when it is not known at all.
    let status = match too_late {
        Some(s) => s,
        None if e.order_id.0 == 0 => b'8',
        None => working_status(e),
    };
    enc.char(tag::ORD_STATUS, status);
    if let Some(name) = names.account_names.get(e.account.0 as usize) {
        enc.str(tag::ACCOUNT, name.as_bytes());
    }
    enc.timestamp(
        tag::TRANSACT_TIME,
        UtcTimestamp::from_nanos(e.ts_ns),
        TimePrecision::Micros,
    );
    enc.char(tag::CXL_REJ_RESPONSE_TO, if replace { b'2' } else { b'1' });
    match too_late {
        Some(_) => {
            enc.uint(tag::CXL_REJ_REASON, 0);
            enc.str(tag::TEXT, b"too late: the order has already ended");
        }
        None => {
            enc.uint(tag::CXL_REJ_REASON, u64::from(cxl_rej_code(v, reason)));
            enc.str(tag::TEXT, reason.text().as_bytes());
        }
    }
}

fn encode_mass_cancel_report(
    enc: &mut Encoder,
    v: BeginString,
    e: &Event,
    canceled: u32,
    names: &Names<'_>,
) {
    let request_type = if e.instrument == ALL_INSTRUMENTS {
        b'7'
    } else {
        b'1'
    };
    enc.str(tag::CL_ORD_ID, e.cl_ord_id.as_bytes());
    // The report's own id (OrderID(37) is required): its ExecID.
    enc.uint(tag::ORDER_ID, e.exec_id);
    enc.char(tag::MASS_CANCEL_REQUEST_TYPE, request_type);
    enc.char(tag::MASS_CANCEL_RESPONSE, request_type);
    enc.uint(TOTAL_AFFECTED_ORDERS, u64::from(canceled));
    if request_type == b'1' {
        if let Some(d) = names.directory.get(e.instrument) {
            enc.str(tag::SYMBOL, d.symbol.as_bytes());
        }
    }
    if v == BeginString::Fixt11 {
        if let Some(name) = names.account_names.get(e.account.0 as usize) {
            enc.str(tag::ACCOUNT, name.as_bytes());
        }
    }
    enc.timestamp(
        tag::TRANSACT_TIME,
        UtcTimestamp::from_nanos(e.ts_ns),
        TimePrecision::Micros,
    );
}

/// Writes the body of the answer to a refused request; the message type is
/// [`Refusal::answer_type`].
pub fn encode_refusal(
    enc: &mut Encoder,
    v: BeginString,
    r: &Refusal,
    request: &MessageRef<'_>,
    now_ns: i64,
) {
    let e = &Echo::of(request);
    let now = UtcTimestamp::from_nanos(now_ns);
    let put = |enc: &mut Encoder, t: u32, val: Option<&[u8]>| {
        if let Some(val) = val {
            enc.str(t, val);
        }
    };
    match r.msg_type {
        b'F' | b'G' => {
            let code = cxl_rej_code(v, r.reason);
            // The spec: OrderID(37) "NONE" when CxlRejReason is "Unknown order".
            let order_id = match e.order_id {
                Some(id) if code != CXL_REJ_UNKNOWN_ORDER => id,
                _ => b"NONE",
            };
            enc.str(tag::ORDER_ID, order_id);
            enc.str(tag::CL_ORD_ID, e.cl_ord_id.unwrap_or(b"NONE"));
            match (e.orig_cl_ord_id, v) {
                (Some(o), _) => {
                    enc.str(tag::ORIG_CL_ORD_ID, o);
                }
                (None, BeginString::Fixt11) => {}
                (None, _) => {
                    enc.str(tag::ORIG_CL_ORD_ID, b"NONE");
                }
            }
            enc.char(tag::ORD_STATUS, b'8');
            put(enc, tag::ACCOUNT, e.account);
            enc.timestamp(tag::TRANSACT_TIME, now, TimePrecision::Micros);
            enc.char(
                tag::CXL_REJ_RESPONSE_TO,
                if r.msg_type == b'G' { b'2' } else { b'1' },
            );
            enc.uint(tag::CXL_REJ_REASON, u64::from(code));
        }
        b'q' => {
            enc.str(tag::CL_ORD_ID, e.cl_ord_id.unwrap_or(b"NONE"));
            local_exec_id(enc, tag::ORDER_ID);
            enc.str(
                tag::MASS_CANCEL_REQUEST_TYPE,
                e.mass_cancel_type.unwrap_or(b"7"),
            );
            enc.char(tag::MASS_CANCEL_RESPONSE, b'0');
            enc.uint(
                MASS_CANCEL_REJECT_REASON,
                u64::from(mass_cancel_rej_code(r.reason)),
            );
            put(enc, tag::SYMBOL, e.symbol);
            enc.timestamp(tag::TRANSACT_TIME, now, TimePrecision::Micros);
        }
        _ => {
            let status = matches!(r.msg_type, b'H' | b'A');
            enc.str(
                tag::ORDER_ID,
                if status {
                    e.order_id.unwrap_or(b"NONE")
                } else {
                    b"NONE"
                },
            );
            put(enc, tag::CL_ORD_ID, e.cl_ord_id);
            local_exec_id(enc, tag::EXEC_ID);
            if v == BeginString::Fix42 {
                enc.char(tag::EXEC_TRANS_TYPE, if status { b'3' } else { b'0' });
            }
            let exec_type = if status && v != BeginString::Fix42 {
                b'I'
            } else {
                b'8'
            };
            enc.char(tag::EXEC_TYPE, exec_type);
            enc.char(tag::ORD_STATUS, b'8');
            enc.uint(tag::ORD_REJ_REASON, u64::from(ord_rej_code(v, r.reason)));
            put(enc, tag::ACCOUNT, e.account);
            // Symbol is required in 4.2 and 4.4 reports; the request had one (also required),
            // but for a mass status request of all orders: the spec's "[N/A]".
            enc.str(tag::SYMBOL, e.symbol.unwrap_or(b"[N/A]"));
            enc.str(tag::SIDE, e.side.unwrap_or(b"1"));
            if !status {
                put(enc, tag::ORDER_QTY, e.qty);
                put(enc, tag::ORD_TYPE, e.ord_type);
                put(enc, tag::PRICE, e.price);
                put(enc, tag::TIME_IN_FORCE, e.tif);
            }
            enc.str(tag::LEAVES_QTY, b"0");
            enc.str(tag::CUM_QTY, b"0");
            enc.str(tag::AVG_PX, b"0");
            enc.timestamp(tag::TRANSACT_TIME, now, TimePrecision::Micros);
            if r.msg_type == b'A' {
                // The whole answer to the mass status request: this one report.
                put(enc, MASS_STATUS_REQ_ID, e.mass_status_req_id);
                enc.uint(TOT_NUM_REPORTS, 1);
                enc.char(LAST_RPT_REQUESTED, b'Y');
            }
        }
    }
    enc.str(tag::TEXT, r.text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests::test_core;
    use portcullis_fix::{Decoder, Dictionary};
    use portcullis_types::TradeId;

    const V: [BeginString; 3] = [BeginString::Fix42, BeginString::Fix44, BeginString::Fixt11];

    fn msg(v: BeginString, msg_type: &str, body: &[(u32, &str)]) -> Vec<u8> {
        let mut enc = Encoder::new();
        enc.start(v.as_bytes(), msg_type.as_bytes());
        enc.str(49, b"TW").str(56, b"ISLD").uint(34, 2);
        enc.str(52, b"20260102-10:00:00.000");
        for (t, val) in body {
            enc.str(*t, val.as_bytes());
        }
        enc.finish().to_vec()
    }

    struct Fixture {
        dir: Directory,
        names: Vec<Box<str>>,
        allowed: Vec<AccountId>,
    }

    fn fixture() -> Fixture {
        let core = test_core(&["A", "B"]);
        Fixture {
            dir: Directory::of(core.instruments()),
            names: vec!["A".into(), "B".into()],
            allowed: vec![AccountId(0)],
        }
    }

    impl Fixture {
        fn ctx(&self, v: BeginString) -> Ctx<'_> {
            let _ = v;
            Ctx {
                directory: &self.dir,
                allowed: &self.allowed,
                account_names: &self.names,
                session: SessionId(3),
                now_ns: 7,
                trading_day_end_secs: 21 * 3600,
            }
        }

        fn names(&self) -> Names<'_> {
            Names {
                directory: &self.dir,
                account_names: &self.names,
            }
        }
    }

    fn decode_bytes(
        f: &Fixture,
        v: BeginString,
        bytes: &[u8],
    ) -> Result<Request, (RejectReason, String)> {
        let mut d = Decoder::new();
        let m = d.decode(bytes).unwrap();
        decode(&m, &f.ctx(v)).map_err(|r| (r.reason, r.text.into_owned()))
    }

    /// Checks a whole outgoing message against the version's dictionary.
    fn validate(v: BeginString, msg_type: &[u8], body: impl FnOnce(&mut Encoder)) -> Vec<u8> {
        let mut enc = Encoder::new();
        enc.start(v.as_bytes(), msg_type);
        enc.str(49, b"ISLD").str(56, b"TW").uint(34, 2);
        enc.str(52, b"20260102-10:00:00.000");
        body(&mut enc);
        let bytes = enc.finish().to_vec();
        let mut d = Decoder::new();
        let m = d.decode(&bytes).unwrap();
        let shown = String::from_utf8_lossy(&bytes).replace('\x01', "|");
        Dictionary::for_version(v)
            .validate(&m)
            .unwrap_or_else(|r| panic!("{v}: {r:?}: {shown}"));
        bytes
    }

    fn field(bytes: &[u8], t: u32) -> Option<&str> {
        let needle = format!("\x01{t}=");
        let s = std::str::from_utf8(bytes).unwrap();
        let i = s.find(&needle)? + needle.len();
        let j = s[i..].find('\x01')? + i;
        Some(&s[i..j])
    }

    const ORDER: &[(u32, &str)] = &[
        (11, "C1"),
        (21, "1"),
        (55, "BTC-PERP"),
        (54, "1"),
        (60, "20260102-10:00:00"),
        (38, "1.5"),
        (40, "2"),
        (44, "100.5"),
        (59, "1"),
        (18, "6"),
    ];

    #[test]
    fn a_new_order_single_decodes_exactly() {
        let f = fixture();
        for v in V {
            let r = decode_bytes(&f, v, &msg(v, "D", ORDER)).unwrap();
            let Request::New(o) = r else { panic!("{r:?}") };
            assert_eq!(o.cl_ord_id.as_str(), "C1");
            assert_eq!(o.price, Price(1005));
            assert_eq!(o.qty, Qty(1500));
            assert_eq!(o.tif, TimeInForce::Gtc);
            assert_eq!(o.side, Side::Buy);
            assert!(o.post_only);
            assert_eq!(o.account, AccountId(0));
            assert_eq!(o.session, SessionId(3));
            assert_eq!(o.received_ns, 7);
        }
    }

    fn with(
        base: &[(u32, &'static str)],
        t: u32,
        val: Option<&'static str>,
    ) -> Vec<(u32, &'static str)> {
        let mut out: Vec<_> = base.iter().copied().filter(|(x, _)| *x != t).collect();
        if let Some(val) = val {
            out.push((t, val));
        }
        out
    }

    #[test]
    fn invalid_orders_are_refused_with_a_precise_reason() {
        let f = fixture();
        let v = BeginString::Fix44;
        let cases: &[(u32, Option<&str>, RejectReason, &str)] = &[
            (
                44,
                Some("100.25"),
                RejectReason::BadTick,
                "more than 1 decimal places",
            ),
            (
                38,
                Some("1.0005"),
                RejectReason::BadLot,
                "more than 3 decimal places",
            ),
            (38, Some("0"), RejectReason::QtyTooSmall, "positive"),
            (
                55,
                Some("ETH-PERP"),
                RejectReason::UnknownInstrument,
                "unknown instrument",
            ),
            (1, Some("B"), RejectReason::UnknownAccount, "Account(1)"),
            (54, Some("5"), RejectReason::Unsupported, "Side(54)"),
            (40, Some("P"), RejectReason::Unsupported, "OrdType(40)"),
            (
                40,
                Some("3"),
                RejectReason::Unsupported,
                "StopPx(99) is required",
            ),
            (59, Some("6"), RejectReason::Unsupported, "TimeInForce(59)"),
            (44, None, RejectReason::Unsupported, "Price(44) is required"),
            (
                38,
                None,
                RejectReason::QtyTooSmall,
                "OrderQty(38) is required",
            ),
            (
                11,
                Some("x".repeat(65).leak()),
                RejectReason::Unsupported,
                "ClOrdID(11)",
            ),
        ];
        for (t, val, reason, text) in cases {
            let m = msg(v, "D", &with(ORDER, *t, *val));
            let (r, got) = decode_bytes(&f, v, &m).unwrap_err();
            assert_eq!(r, *reason, "{t}={val:?}");
            assert!(got.contains(text), "{t}={val:?}: {got}");
        }
        // A stop-limit carries its StopPx(99), at the instrument's price scale.
        let stop_limit = with(&with(ORDER, 40, Some("4")), 99, Some("101"));
        let Ok(Request::New(o)) = decode_bytes(&f, v, &msg(v, "D", &stop_limit)) else {
            panic!()
        };
        assert_eq!(
            (o.ord_type, o.price),
            (
                OrdType::StopLimit {
                    stop_px: Price(1010)
                },
                Price(1005)
            )
        );
        let bad_stop = with(&stop_limit, 99, Some("1e3"));
        let (r, got) = decode_bytes(&f, v, &msg(v, "D", &bad_stop)).unwrap_err();
        assert_eq!(r, RejectReason::BadTick);
        assert!(got.contains("StopPx(99) is not a decimal number"), "{got}");
        // Trailing zeros beyond the scale are exact, not extra precision.
        assert!(decode_bytes(&f, v, &msg(v, "D", &with(ORDER, 44, Some("100.5000")))).is_ok());
        // Absent TimeInForce is Day; a market order ignores Price.
        let Ok(Request::New(o)) = decode_bytes(
            &f,
            v,
            &msg(v, "D", &with(&with(ORDER, 59, None), 40, Some("1"))),
        ) else {
            panic!()
        };
        assert_eq!(
            (o.tif, o.ord_type, o.price),
            (TimeInForce::Day, OrdType::Market, Price(0))
        );
    }

    #[test]
    fn trailing_stops_decode_from_exec_inst_a_and_peg_offset_value_in_basis_points() {
        let f = fixture();
        // A sell stop trailing 2.5 %, activated at 99; then without an activation price.
        let base = with(
            &with(&with(ORDER, 40, Some("3")), 54, Some("2")),
            18,
            Some("a"),
        );
        let trailing = with(&with(&base, 211, Some("250")), 99, Some("99"));
        for v in V {
            let Ok(Request::New(o)) = decode_bytes(&f, v, &msg(v, "D", &trailing)) else {
                panic!("{v:?}")
            };
            assert_eq!(
                (o.ord_type, o.trailing, o.post_only),
                (
                    OrdType::Stop {
                        stop_px: Price(990)
                    },
                    TrailingDelta::new(250),
                    false
                )
            );
        }
        let v = BeginString::Fix44;
        let decode = |body: &[(u32, &'static str)]| decode_bytes(&f, v, &msg(v, "D", body));
        let Ok(Request::New(o)) = decode(&with(&trailing, 99, None)) else {
            panic!()
        };
        assert_eq!(o.ord_type, OrdType::Stop { stop_px: Price(0) });
        // PegOffsetType(836) 1 (basis points) may be given; with a stop-limit and post-only
        // in the same ExecInst.
        let stop_limit = with(
            &with(&with(&trailing, 40, Some("4")), 836, Some("1")),
            18,
            Some("6 a"),
        );
        let Ok(Request::New(o)) = decode(&stop_limit) else {
            panic!()
        };
        assert_eq!(
            (o.ord_type.stop_px(), o.trailing, o.post_only, o.price),
            (Some(Price(990)), TrailingDelta::new(250), true, Price(1005))
        );
        for (body, text) in [
            (with(&base, 211, None), "PegOffsetValue(211) is required"),
            (with(&base, 211, Some("9")), "from 10 to 2000"),
            (with(&base, 211, Some("2001")), "from 10 to 2000"),
            (with(&base, 211, Some("2.5")), "whole basis points"),
            (with(&base, 211, Some("-250")), "whole basis points"),
            (
                with(&with(&base, 211, Some("250")), 836, Some("0")),
                "PegOffsetType(836) must be 1",
            ),
            (
                with(&with(&base, 211, Some("250")), 40, Some("2")),
                "only for OrdType(40) 3, 4 or J",
            ),
            (
                with(ORDER, 211, Some("250")),
                "only for trailing stops (ExecInst(18) a)",
            ),
            (
                with(ORDER, 836, Some("1")),
                "only for trailing stops (ExecInst(18) a)",
            ),
            // A stop without `a` still needs its StopPx.
            (
                with(&with(ORDER, 40, Some("3")), 18, None),
                "StopPx(99) is required",
            ),
        ] {
            let (r, got) = decode(&body).unwrap_err();
            assert_eq!(r, RejectReason::Unsupported, "{body:?}");
            assert!(got.contains(text), "{body:?}: {got}");
        }
    }

    #[test]
    fn cancels_replaces_status_and_mass_cancels_decode() {
        let f = fixture();
        let v = BeginString::Fix44;
        let cancel = [
            (41, "C1"),
            (11, "X1"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260102-10:00:00"),
        ];
        let Ok(Request::Cancel(c)) = decode_bytes(&f, v, &msg(v, "F", &cancel)) else {
            panic!()
        };
        assert_eq!((c.orig_cl_ord_id.as_str(), c.order_id), ("C1", None));
        let by_id = with(&cancel, 37, Some("42"));
        let Ok(Request::Cancel(c)) = decode_bytes(&f, v, &msg(v, "F", &by_id)) else {
            panic!()
        };
        assert_eq!(c.order_id, Some(OrderId(42)));
        let (r, _) =
            decode_bytes(&f, v, &msg(v, "F", &with(&cancel, 37, Some("abc")))).unwrap_err();
        assert_eq!(r, RejectReason::UnknownOrder);
        // A list by ListID(66) (an order named as well is the one cancelled); naming nothing is
        // answered with what to name.
        let list = with(&with(&cancel, 41, None), 66, Some("77"));
        let Ok(Request::Cancel(c)) = decode_bytes(&f, v, &msg(v, "F", &list)) else {
            panic!()
        };
        assert_eq!(
            (c.order_id, c.orig_cl_ord_id),
            (Some(OrderId(77)), ClOrdId::EMPTY)
        );
        let Ok(Request::Cancel(c)) =
            decode_bytes(&f, v, &msg(v, "F", &with(&cancel, 66, Some("77"))))
        else {
            panic!()
        };
        assert_eq!((c.order_id, c.orig_cl_ord_id.as_str()), (None, "C1"));
        let (r, text) = decode_bytes(&f, v, &msg(v, "F", &with(&cancel, 41, None))).unwrap_err();
        assert_eq!(r, RejectReason::UnknownOrder);
        assert_eq!(
            text,
            "OrderID(37), OrigClOrdID(41), ListID(66) or OrigClListID(25015) is required"
        );
        let (r, _) =
            decode_bytes(&f, v, &msg(v, "F", &with(&cancel, 55, Some("NOPE")))).unwrap_err();
        assert_eq!(r, RejectReason::UnknownOrder);

        let replace = [
            (41, "C1"),
            (11, "C2"),
            (21, "1"),
            (55, "BTC-PERP"),
            (54, "1"),
            (60, "20260102-10:00:00"),
            (38, "2"),
            (40, "2"),
            (44, "101"),
        ];
        let Ok(Request::Replace(r)) = decode_bytes(&f, v, &msg(v, "G", &replace)) else {
            panic!()
        };
        assert_eq!((r.price, r.qty), (Price(1010), Qty(2000)));
        // Without TimeInForce(59) the order keeps its own.
        assert_eq!(r.tif, None);
        let (r, _) = decode_bytes(&f, v, &msg(v, "G", &with(&replace, 40, Some("1")))).unwrap_err();
        assert_eq!(r, RejectReason::Unsupported);
        // A new expiry, or GTC; IOC and FOK cannot be given to a resting order.
        let gtd = with(
            &with(&replace, 59, Some("6")),
            126,
            Some("20261204-00:00:01"),
        );
        let Ok(Request::Replace(r)) = decode_bytes(&f, v, &msg(v, "G", &gtd)) else {
            panic!()
        };
        assert_eq!(
            r.tif,
            Some(TimeInForce::Gtd {
                expire_ns: (20_791 * 86_400 + 1) * 1_000_000_000
            })
        );
        let Ok(Request::Replace(r)) =
            decode_bytes(&f, v, &msg(v, "G", &with(&replace, 59, Some("1"))))
        else {
            panic!()
        };
        assert_eq!(r.tif, Some(TimeInForce::Gtc));
        let (r, text) =
            decode_bytes(&f, v, &msg(v, "G", &with(&replace, 59, Some("3")))).unwrap_err();
        assert_eq!(r, RejectReason::Unsupported);
        assert!(
            text.contains("of a replace must be 0 (day), 1 (GTC) or 6 (GTD)"),
            "{text}"
        );
        let (_, text) = decode_bytes(
            &f,
            v,
            &msg(v, "G", &with(&replace, 126, Some("20261204-00:00:01"))),
        )
        .unwrap_err();
        assert!(text.contains("only for TimeInForce(59) 6"), "{text}");

        let status = [(11, "C1"), (55, "BTC-PERP"), (54, "1")];
        let Ok(Request::Status(s)) = decode_bytes(&f, v, &msg(v, "H", &status)) else {
            panic!()
        };
        assert_eq!(s.order, OrderRef::ClOrdId(ClOrdId::new(b"C1").unwrap()));

        let mass = [(11, "M1"), (530, "7"), (60, "20260102-10:00:00")];
        let Ok(Request::MassCancel(m)) = decode_bytes(&f, v, &msg(v, "q", &mass)) else {
            panic!()
        };
        assert_eq!(m.instrument, None);
        let one = [
            (11, "M1"),
            (530, "1"),
            (55, "BTC-PERP"),
            (60, "20260102-10:00:00"),
        ];
        let Ok(Request::MassCancel(m)) = decode_bytes(&f, v, &msg(v, "q", &one)) else {
            panic!()
        };
        assert_eq!(m.instrument, Some(InstrumentId(0)));
        let (r, _) = decode_bytes(&f, v, &msg(v, "q", &with(&mass, 530, Some("3")))).unwrap_err();
        assert_eq!(r, RejectReason::Unsupported);
    }

    fn event(kind: EventKind) -> Event {
        Event {
            session: SessionId(3),
            account: AccountId(0),
            instrument: InstrumentId(0),
            kind,
            order_id: OrderId(17),
            cl_ord_id: ClOrdId::new(b"C1").unwrap(),
            orig_cl_ord_id: ClOrdId::EMPTY,
            side: Side::Buy,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(1005),
            qty: Qty(3000),
            cum_qty: Qty(1000),
            leaves_qty: Qty(2000),
            avg_px: Price(1005),
            last_px: Price(1005),
            last_qty: Qty(1000),
            trade_id: TradeId(5),
            exec_id: 99,
            ts_ns: 1_767_348_000_000_000_000,
            received_ns: 0,
            details: Default::default(),
        }
    }

    #[test]
    fn every_report_is_valid_in_every_version_with_its_codes() {
        let f = fixture();
        let names = f.names();
        let kinds = [
            EventKind::New,
            EventKind::PartialFill,
            EventKind::Fill,
            EventKind::Canceled,
            EventKind::Replaced,
            EventKind::Expired,
            EventKind::Rejected(RejectReason::PriceBand),
            EventKind::Rejected(RejectReason::BadTick),
            EventKind::Rejected(RejectReason::ServerBusy),
            EventKind::CancelRejected {
                replace: false,
                reason: RejectReason::UnknownOrder,
            },
            EventKind::CancelRejected {
                replace: true,
                reason: RejectReason::DuplicateClOrdId,
            },
            EventKind::CancelRejected {
                replace: true,
                reason: RejectReason::Throttled,
            },
            EventKind::Pending(RouteRequest::New),
            EventKind::Pending(RouteRequest::Cancel),
            EventKind::Pending(RouteRequest::Replace),
        ];
        let mut scratch = Vec::new();
        for v in V {
            for kind in kinds {
                let e = event(kind);
                let r = Report::Event(&e);
                let bytes = validate(v, r.msg_type(), |enc| {
                    encode_report(enc, v, r, &names, &mut scratch)
                });
                match kind {
                    EventKind::PartialFill => {
                        assert_eq!(
                            field(&bytes, 150),
                            Some(if v == BeginString::Fix42 { "1" } else { "F" })
                        );
                        assert_eq!(field(&bytes, 39), Some("1"));
                        assert_eq!(field(&bytes, 32), Some("1.000"));
                        assert_eq!(field(&bytes, 31), Some("100.5"));
                        assert_eq!(field(&bytes, 14), Some("1.000"));
                        assert_eq!(field(&bytes, 151), Some("2.000"));
                        assert_eq!(field(&bytes, 6), Some("100.5"));
                        assert_eq!(field(&bytes, 17), Some("99"));
                        assert_eq!(field(&bytes, 20), (v == BeginString::Fix42).then_some("0"));
                        assert_eq!(field(&bytes, 55), Some("BTC-PERP"));
                        assert_eq!(field(&bytes, 1), Some("A"));
                    }
                    EventKind::Rejected(RejectReason::PriceBand) => {
                        let want = match v {
                            BeginString::Fix42 => "0",
                            BeginString::Fix44 => "99",
                            BeginString::Fixt11 => "16",
                        };
                        assert_eq!(field(&bytes, 103), Some(want));
                        assert_eq!(field(&bytes, 58), Some("price outside the allowed band"));
                    }
                    EventKind::Rejected(RejectReason::ServerBusy) => {
                        assert_eq!(
                            field(&bytes, 103),
                            Some(if v == BeginString::Fix42 { "0" } else { "99" })
                        );
                        assert_eq!(field(&bytes, 58), Some("server busy"));
                    }
                    EventKind::Replaced => {
                        assert_eq!(
                            field(&bytes, 39),
                            Some(if v == BeginString::Fix42 { "5" } else { "1" })
                        );
                    }
                    EventKind::CancelRejected {
                        reason: RejectReason::UnknownOrder,
                        ..
                    } => {
                        assert_eq!(field(&bytes, 102), Some("1"));
                        assert_eq!(field(&bytes, 434), Some("1"));
                    }
                    EventKind::CancelRejected {
                        reason: RejectReason::DuplicateClOrdId,
                        ..
                    } => {
                        assert_eq!(
                            field(&bytes, 102),
                            Some(if v == BeginString::Fix42 { "2" } else { "6" })
                        );
                        assert_eq!(field(&bytes, 434), Some("2"));
                    }
                    // A routed order's request on its way to the venue, every version.
                    EventKind::Pending(request) => {
                        let code = match request {
                            RouteRequest::New => "A",
                            RouteRequest::Cancel => "6",
                            RouteRequest::Replace => "E",
                        };
                        assert_eq!(field(&bytes, 150), Some(code));
                        assert_eq!(field(&bytes, 39), Some(code));
                        assert_eq!(field(&bytes, 151), Some("2.000"));
                    }
                    _ => {}
                }
            }
            // Status answers: ExecType I (4.4+) or the OrdStatus with ExecTransType 3 (4.2).
            let mut e = event(EventKind::PartialFill);
            e.exec_id = 0;
            let bytes = validate(v, b"8", |enc| {
                encode_report(enc, v, Report::Status(&e), &names, &mut scratch)
            });
            assert_eq!(
                field(&bytes, 150),
                Some(if v == BeginString::Fix42 { "1" } else { "I" })
            );
            assert_eq!(field(&bytes, 20), (v == BeginString::Fix42).then_some("3"));
            assert!(field(&bytes, 17).unwrap().starts_with('L'));
            assert_eq!(field(&bytes, 32), None);
            let unknown = event(EventKind::Rejected(RejectReason::UnknownOrder));
            let bytes = validate(v, b"8", |enc| {
                encode_report(enc, v, Report::Status(&unknown), &names, &mut scratch)
            });
            assert_eq!(field(&bytes, 39), Some("8"));
            assert_eq!(field(&bytes, 103), Some("5"));
            if v != BeginString::Fix42 {
                for (instrument, want) in [(ALL_INSTRUMENTS, "7"), (InstrumentId(0), "1")] {
                    let mut e = event(EventKind::MassCancelDone { canceled: 4 });
                    e.instrument = instrument;
                    let bytes = validate(v, b"r", |enc| {
                        encode_report(enc, v, Report::Event(&e), &names, &mut scratch)
                    });
                    assert_eq!(field(&bytes, 531), Some(want));
                    assert_eq!(field(&bytes, 533), Some("4"));
                }
                // A mass status answer: numbered status reports, or one without an order.
                let e = event(EventKind::PartialFill);
                let r = Report::MassStatus {
                    event: &e,
                    req_id: b"S1",
                    total: 2,
                    last: false,
                };
                let bytes = validate(v, b"8", |enc| {
                    encode_report(enc, v, r, &names, &mut scratch)
                });
                assert_eq!(field(&bytes, 150), Some("I"));
                assert_eq!(field(&bytes, 39), Some("1"));
                assert_eq!(field(&bytes, 584), Some("S1"));
                assert_eq!(field(&bytes, 911), Some("2"));
                assert_eq!(field(&bytes, 912), Some("N"));
                let mut none = event(EventKind::New);
                none.instrument = InstrumentId(u32::MAX);
                let r = Report::MassStatusNone {
                    event: &none,
                    req_id: b"S2",
                    text: "no matching working orders",
                };
                let bytes = validate(v, b"8", |enc| {
                    encode_report(enc, v, r, &names, &mut scratch)
                });
                assert_eq!(field(&bytes, 37), Some("NONE"));
                assert_eq!(field(&bytes, 39), Some("8"));
                assert_eq!(field(&bytes, 55), Some("[N/A]"));
                assert_eq!(field(&bytes, 911), Some("0"));
                assert_eq!(field(&bytes, 912), Some("Y"));
                assert_eq!(field(&bytes, 58), Some("no matching working orders"));
            }
        }
    }

    #[test]
    fn reports_repeat_post_only_iceberg_and_trailing_details_valid_in_every_version() {
        let f = fixture();
        let names = f.names();
        let mut scratch = Vec::new();
        for v in V {
            // A post-only iceberg: ExecInst 6, its display as MaxFloor (5.0 SP2: DisplayQty).
            let mut e = event(EventKind::New);
            e.details = OrderDetails {
                post_only: true,
                display_qty: Qty(500),
                ..OrderDetails::default()
            };
            let bytes = validate(v, b"8", |enc| {
                encode_report(enc, v, Report::Event(&e), &names, &mut scratch)
            });
            assert_eq!(field(&bytes, 18), Some("6"));
            let (floor, display) = match v {
                BeginString::Fixt11 => (None, Some("0.500")),
                _ => (Some("0.500"), None),
            };
            assert_eq!((field(&bytes, 111), field(&bytes, 1138)), (floor, display));
            assert_eq!(field(&bytes, 211), None);
            // A waiting trailing stop: ExecInst a, PegOffsetValue in bips, PegOffsetType 1
            // (FIX 4.2's dictionary has no 836).
            let mut e = event(EventKind::New);
            e.ord_type = OrdType::Stop { stop_px: Price(0) };
            e.details = OrderDetails {
                trailing: TrailingDelta::new(250),
                waiting: true,
                ..OrderDetails::default()
            };
            let bytes = validate(v, b"8", |enc| {
                encode_report(enc, v, Report::Event(&e), &names, &mut scratch)
            });
            assert_eq!(field(&bytes, 18), Some("a"));
            assert_eq!(field(&bytes, 211), Some("250"));
            assert_eq!(field(&bytes, 836), (v != BeginString::Fix42).then_some("1"));
            assert_eq!(field(&bytes, 99), None, "no activation price");
            // Both instructions in one ExecInst; a plain order has none of these fields.
            e.details.post_only = true;
            let bytes = validate(v, b"8", |enc| {
                encode_report(enc, v, Report::Event(&e), &names, &mut scratch)
            });
            assert_eq!(field(&bytes, 18), Some("6 a"));
            let e = event(EventKind::New);
            let bytes = validate(v, b"8", |enc| {
                encode_report(enc, v, Report::Event(&e), &names, &mut scratch)
            });
            for t in [18, 111, 1138, 211, 836] {
                assert_eq!(field(&bytes, t), None, "{t}");
            }
        }
    }

    #[test]
    fn an_iceberg_comes_from_max_floor_or_display_qty_and_is_refused_where_it_cannot_rest() {
        let f = fixture();
        // ORDER: 1.5 lots of 0.001, GTC limit, post-only.
        let new = |v, body: &[(u32, &'static str)]| match decode_bytes(&f, v, &msg(v, "D", body)) {
            Ok(Request::New(o)) => Ok(o.display_qty),
            Ok(r) => panic!("{r:?}"),
            Err(e) => Err(e),
        };
        for v in V {
            assert_eq!(new(v, &with(ORDER, 111, Some("0.5"))), Ok(Qty(500)), "{v}");
            // All of it shown: not an iceberg.
            assert_eq!(new(v, &with(ORDER, 111, Some("1.5"))), Ok(Qty(0)));
            assert_eq!(new(v, &with(ORDER, 111, Some("2"))), Ok(Qty(0)));
            assert_eq!(new(v, ORDER), Ok(Qty(0)));
            type Refused<'a> = (&'a [(u32, &'static str)], RejectReason, &'static str);
            let refused: &[Refused<'_>] = &[
                (
                    &with(ORDER, 111, Some("0.01")),
                    RejectReason::Unsupported,
                    "MaxFloor(111) would show the order in more than 100 parts",
                ),
                (
                    &with(&with(ORDER, 111, Some("0.5")), 59, Some("3")),
                    RejectReason::Unsupported,
                    "MaxFloor(111) is only for orders that rest",
                ),
                (
                    &with(
                        &with(&with(ORDER, 111, Some("0.5")), 40, Some("1")),
                        18,
                        None,
                    ),
                    RejectReason::Unsupported,
                    "MaxFloor(111) is only for orders that rest",
                ),
                (
                    &with(ORDER, 111, Some("0.0005")),
                    RejectReason::BadLot,
                    "MaxFloor(111) has more than 3 decimal places",
                ),
                (
                    &with(ORDER, 111, Some("0")),
                    RejectReason::QtyTooSmall,
                    "MaxFloor(111) must be positive",
                ),
            ];
            for (body, reason, text) in refused {
                let (r, got) = new(v, body).unwrap_err();
                assert_eq!(r, *reason, "{v} {body:?}");
                assert!(got.contains(text), "{v} {body:?}: {got}");
            }
        }
        // FIX 5.0 SP2's DisplayQty(1138), alone or agreeing with MaxFloor(111).
        let v = BeginString::Fixt11;
        assert_eq!(new(v, &with(ORDER, 1138, Some("0.3"))), Ok(Qty(300)));
        let both = with(&with(ORDER, 1138, Some("0.3")), 111, Some("0.3"));
        assert_eq!(new(v, &both), Ok(Qty(300)));
        let differ = with(&both, 111, Some("0.4"));
        let (r, got) = new(v, &differ).unwrap_err();
        assert_eq!(r, RejectReason::Unsupported);
        assert!(
            got.contains("MaxFloor(111) and DisplayQty(1138) differ"),
            "{got}"
        );
    }

    #[test]
    fn take_profit_orders_decode_from_j_or_a_trigger_direction_and_are_reported_so() {
        let f = fixture();
        let names = f.names();
        let tp = |stop_px| OrdType::TakeProfit { stop_px };
        let tpl = |stop_px| OrdType::TakeProfitLimit { stop_px };
        let stop_limit = |stop_px| OrdType::StopLimit { stop_px };
        // (Side, OrdType, TriggerPriceDirection) → the order type, or the refusal's text.
        type Case = (
            &'static str,
            &'static str,
            Option<&'static str>,
            Result<OrdType, &'static str>,
        );
        let cases: &[Case] = &[
            ("1", "J", None, Ok(tp(Price(1010)))),
            ("1", "J", Some("D"), Ok(tp(Price(1010)))),
            ("1", "J", Some("U"), Err("must be D")),
            ("2", "J", Some("D"), Err("must be U")),
            ("2", "3", Some("U"), Ok(tp(Price(1010)))),
            ("1", "4", Some("D"), Ok(tpl(Price(1010)))),
            // The stop-loss direction, given explicitly: a stop-limit.
            ("1", "4", Some("U"), Ok(stop_limit(Price(1010)))),
            ("1", "2", Some("U"), Err("only for OrdType(40) 3, 4 or J")),
        ];
        for v in [BeginString::Fix44, BeginString::Fixt11] {
            for (side, ord_type, dir, want) in cases {
                let mut body = with(&with(ORDER, 54, Some(side)), 40, Some(ord_type));
                body = with(&with(&body, 18, None), 99, Some("101"));
                if let Some(d) = dir {
                    body.push((1109, d));
                }
                let bytes = msg(v, "D", &body);
                // Valid in the dictionary of 4.4 and 5.0 SP2 alike.
                let mut d = Decoder::new();
                Dictionary::for_version(v)
                    .validate(&d.decode(&bytes).unwrap())
                    .unwrap();
                let got = decode_bytes(&f, v, &bytes);
                match (want, got) {
                    (Ok(t), Ok(Request::New(o))) => assert_eq!(o.ord_type, *t, "{body:?}"),
                    (Err(text), Err((r, got))) => {
                        assert_eq!(r, RejectReason::Unsupported);
                        assert!(got.contains(text), "{body:?}: {got}");
                    }
                    (want, got) => panic!("{body:?}: want {want:?}, got {got:?}"),
                }
            }
        }
        // FIX 4.2 has neither OrdType J nor TriggerPriceDirection(1109): its dictionary refuses
        // them before the order is decoded.
        let j = msg(BeginString::Fix42, "D", &with(ORDER, 40, Some("J")));
        let mut d = Decoder::new();
        assert!(Dictionary::for_version(BeginString::Fix42)
            .validate(&d.decode(&j).unwrap())
            .is_err());
        // Reports: J for a take-profit, 4 with the direction for a take-profit limit; a 4.2
        // session sees the stop types they become.
        let mut scratch = Vec::new();
        for v in V {
            for (t, want_40, want_1109) in [
                (
                    tp(Price(990)),
                    if v == BeginString::Fix42 { "3" } else { "J" },
                    "D",
                ),
                (tpl(Price(990)), "4", "D"),
                (stop_limit(Price(1010)), "4", ""),
            ] {
                let mut e = event(EventKind::New);
                e.ord_type = t;
                let bytes = validate(v, b"8", |enc| {
                    encode_report(enc, v, Report::Event(&e), &names, &mut scratch)
                });
                assert_eq!(field(&bytes, 40), Some(want_40), "{v} {t:?}");
                assert_eq!(
                    field(&bytes, 99),
                    Some(if t.is_take_profit() { "99.0" } else { "101.0" })
                );
                let want_1109 =
                    (v != BeginString::Fix42 && !want_1109.is_empty()).then_some(want_1109);
                assert_eq!(field(&bytes, 1109), want_1109, "{v} {t:?}");
            }
        }
    }

    #[test]
    fn gtd_orders_expire_at_their_expire_time_or_at_the_end_of_their_expire_date() {
        let f = fixture();
        let names = f.names();
        // 2026-12-04 00:00:00 UTC.
        let midnight = 20_791 * 86_400 * 1_000_000_000i64;
        let new = |v, body: &[(u32, &'static str)]| match decode_bytes(&f, v, &msg(v, "D", body)) {
            Ok(Request::New(o)) => Ok(o.tif),
            Ok(r) => panic!("{r:?}"),
            Err(e) => Err(e),
        };
        let gtd = |body: &[(u32, &'static str)]| with(body, 59, Some("6"));
        for v in V {
            let at = |ns| Ok(TimeInForce::Gtd { expire_ns: ns });
            assert_eq!(
                new(v, &with(&gtd(ORDER), 126, Some("20261204-15:30:00.250"))),
                at(midnight + (15 * 3600 + 30 * 60) * 1_000_000_000 + 250_000_000),
                "{v}"
            );
            // The fixture's trading day ends at 21:00 UTC.
            assert_eq!(
                new(v, &with(&gtd(ORDER), 432, Some("20261204"))),
                at(midnight + 21 * 3600 * 1_000_000_000)
            );
            // Both: the time is the precise one.
            let both = with(
                &with(&gtd(ORDER), 432, Some("20261204")),
                126,
                Some("20261204-01:00:00"),
            );
            assert_eq!(new(v, &both), at(midnight + 3600 * 1_000_000_000));
            type Refused<'a> = (&'a [(u32, &'static str)], &'static str);
            let refused: &[Refused<'_>] = &[
                (&gtd(ORDER), "needs ExpireTime(126) or ExpireDate(432)"),
                (
                    &with(ORDER, 126, Some("20261204-15:30:00")),
                    "ExpireTime(126) is only for TimeInForce(59) 6 (GTD)",
                ),
                (
                    &with(&with(ORDER, 59, Some("0")), 432, Some("20261204")),
                    "ExpireDate(432) is only for TimeInForce(59) 6 (GTD)",
                ),
                (
                    &with(&gtd(ORDER), 432, Some("99991231")),
                    "ExpireDate(432) must be a date YYYYMMDD before 2262",
                ),
                (&with(ORDER, 59, Some("5")), "6 (GTD)"),
            ];
            for (body, text) in refused {
                let (r, got) = new(v, body).unwrap_err();
                assert_eq!(r, RejectReason::Unsupported, "{v} {body:?}");
                assert!(got.contains(text), "{v} {body:?}: {got}");
            }
        }
        // A day that ends at midnight ends at the next one.
        assert_eq!(
            end_of_trading_day(b"20261204", 0),
            Some(midnight + 86_400 * 1_000_000_000)
        );
        assert_eq!(end_of_trading_day(b"20261304", 0), None);
        assert_eq!(end_of_trading_day(b"2026120", 0), None);
        // Reports carry TimeInForce 6 and ExpireTime(126) as precisely as it was given, valid
        // in every version's dictionary.
        let mut scratch = Vec::new();
        for v in V {
            for (expire_ns, want) in [
                (midnight + 21 * 3600 * 1_000_000_000, "20261204-21:00:00"),
                (midnight + 250_000_000, "20261204-00:00:00.250"),
                (midnight + 1_500, "20261204-00:00:00.000001500"),
            ] {
                let mut e = event(EventKind::Expired);
                e.tif = TimeInForce::Gtd { expire_ns };
                let bytes = validate(v, b"8", |enc| {
                    encode_report(enc, v, Report::Event(&e), &names, &mut scratch)
                });
                assert_eq!(field(&bytes, 59), Some("6"), "{v}");
                assert_eq!(field(&bytes, 126), Some(want), "{v}");
                assert_eq!(field(&bytes, 150), Some("C"));
            }
            let e = event(EventKind::New);
            let bytes = validate(v, b"8", |enc| {
                encode_report(enc, v, Report::Event(&e), &names, &mut scratch)
            });
            assert_eq!(field(&bytes, 126), None);
        }
        // An expiry already past is the engine's refusal: OrdRejReason 4 in every version.
        for v in V {
            assert_eq!(ord_rej_code(v, RejectReason::TooLateToEnter), 4);
        }
    }

    #[test]
    fn a_pending_order_is_pending_new_and_new_once_placed_in_every_version() {
        let f = fixture();
        let names = f.names();
        let mut scratch = Vec::new();
        for v in V {
            let mut e = event(EventKind::New);
            (e.cum_qty, e.leaves_qty) = (Qty(0), Qty(3000));
            e.details.pending = true;
            let bytes = validate(v, b"8", |enc| {
                encode_report(enc, v, Report::Event(&e), &names, &mut scratch)
            });
            assert_eq!(
                (field(&bytes, 150), field(&bytes, 39)),
                (Some("A"), Some("A"))
            );
            e.kind = EventKind::Activated;
            e.details.pending = false;
            let bytes = validate(v, b"8", |enc| {
                encode_report(enc, v, Report::Event(&e), &names, &mut scratch)
            });
            assert_eq!(
                (field(&bytes, 150), field(&bytes, 39)),
                (Some("0"), Some("0"))
            );
        }
    }

    #[test]
    fn a_trigger_is_exec_type_l_in_fix_50_sp2() {
        let f = fixture();
        let names = f.names();
        let mut scratch = Vec::new();
        let mut e = event(EventKind::Triggered);
        e.ord_type = OrdType::StopLimit {
            stop_px: Price(1010),
        };
        (e.cum_qty, e.leaves_qty) = (Qty(0), Qty(3000));
        let v = BeginString::Fixt11;
        let bytes = validate(v, b"8", |enc| {
            encode_report(enc, v, Report::Event(&e), &names, &mut scratch)
        });
        assert_eq!(field(&bytes, 150), Some("L"));
        assert_eq!(field(&bytes, 39), Some("0"));
        // FIX 4.4's dictionary has no ExecType L: the application does not send it there.
        let v = BeginString::Fix44;
        let mut enc = Encoder::new();
        enc.start(v.as_bytes(), b"8");
        enc.str(49, b"ISLD").str(56, b"TW").uint(34, 2);
        enc.str(52, b"20260102-10:00:00.000");
        encode_report(&mut enc, v, Report::Event(&e), &names, &mut scratch);
        let bytes = enc.finish().to_vec();
        let mut d = Decoder::new();
        assert!(Dictionary::for_version(v)
            .validate(&d.decode(&bytes).unwrap())
            .is_err());
    }

    #[test]
    fn mass_status_requests_decode_with_their_scope_and_side() {
        let f = fixture();
        for v in [BeginString::Fix44, BeginString::Fixt11] {
            let req = |body: &[(u32, &str)]| {
                let bytes = msg(v, "AF", body);
                let mut d = Decoder::new();
                let m = d.decode(&bytes).unwrap();
                decode(&m, &f.ctx(v)).map_err(|r| (r.msg_type, r.reason, r.answer_type()))
            };
            let Ok(Request::MassStatus(all)) = req(&[(584, "S1"), (585, "7")]) else {
                panic!("a mass status of every order decodes");
            };
            assert_eq!((all.instrument, all.side), (None, None));
            let Ok(Request::MassStatus(one)) =
                req(&[(584, "S1"), (585, "1"), (55, "BTC-PERP"), (54, "2")])
            else {
                panic!("a mass status of one instrument decodes");
            };
            assert_eq!(
                (one.instrument, one.side),
                (Some(InstrumentId(0)), Some(Side::Sell))
            );
            assert_eq!(
                req(&[(584, "S1"), (585, "3")]).unwrap_err(),
                (b'A', RejectReason::Unsupported, &b"8"[..])
            );
            assert_eq!(
                req(&[(584, "S1"), (585, "1"), (55, "NOPE")]).unwrap_err(),
                (b'A', RejectReason::UnknownInstrument, &b"8"[..])
            );
        }
    }

    #[test]
    fn refusals_are_valid_answers_in_every_version() {
        let f = fixture();
        for v in V {
            let cases: Vec<(&str, Vec<(u32, &str)>)> = vec![
                ("D", with(ORDER, 44, Some("100.25"))),
                (
                    "F",
                    vec![
                        (41, "C1"),
                        (11, "X1"),
                        (55, "NOPE"),
                        (54, "1"),
                        (60, "20260102-10:00:00"),
                    ],
                ),
                (
                    "G",
                    vec![
                        (41, "C1"),
                        (11, "C2"),
                        (21, "1"),
                        (55, "NOPE"),
                        (54, "1"),
                        (60, "20260102-10:00:00"),
                        (38, "2"),
                        (40, "2"),
                        (44, "1"),
                    ],
                ),
                ("H", vec![(11, "C1"), (55, "NOPE"), (54, "1")]),
                ("AF", vec![(584, "S1"), (585, "1"), (55, "NOPE")]),
                ("AF", vec![(584, "S2"), (585, "3")]),
                (
                    "q",
                    vec![
                        (11, "M1"),
                        (530, "1"),
                        (55, "NOPE"),
                        (60, "20260102-10:00:00"),
                    ],
                ),
            ];
            for (t, body) in cases {
                if matches!(t, "q" | "AF") && v == BeginString::Fix42 {
                    continue;
                }
                let bytes = msg(v, t, &body);
                let mut d = Decoder::new();
                let m = d.decode(&bytes).unwrap();
                let r = decode(&m, &f.ctx(v)).unwrap_err();
                let out = validate(v, r.answer_type(), |enc| {
                    encode_refusal(enc, v, &r, &m, 1_767_348_000_000_000_000)
                });
                assert!(field(&out, 58).is_some(), "{t}");
                // The same shape answers "server busy".
                let busy = Refusal::new(&m, RejectReason::ServerBusy);
                let out = validate(v, busy.answer_type(), |enc| {
                    encode_refusal(enc, v, &busy, &m, 0)
                });
                assert_eq!(field(&out, 58), Some("server busy"));
            }
        }
    }

    #[test]
    fn a_cancel_reject_for_an_unknown_order_names_no_order_id() {
        let f = fixture();
        for v in V {
            let body = [
                (37, "42"),
                (41, "C1"),
                (11, "X1"),
                (55, "NOPE"),
                (54, "1"),
                (60, "20260102-10:00:00"),
            ];
            let bytes = msg(v, "F", &body);
            let mut d = Decoder::new();
            let m = d.decode(&bytes).unwrap();
            let r = decode(&m, &f.ctx(v)).unwrap_err();
            let out = validate(v, r.answer_type(), |enc| encode_refusal(enc, v, &r, &m, 0));
            assert_eq!(field(&out, 102), Some("1"), "{v:?}");
            assert_eq!(field(&out, 37), Some("NONE"), "{v:?}");
            // Refused for another reason, the order the request named is echoed.
            let busy = Refusal::new(&m, RejectReason::ServerBusy);
            let out = validate(v, busy.answer_type(), |enc| {
                encode_refusal(enc, v, &busy, &m, 0)
            });
            assert_ne!(field(&out, 102), Some("1"), "{v:?}");
            assert_eq!(field(&out, 37), Some("42"), "{v:?}");
        }
    }

    #[test]
    fn arbitrary_order_fields_never_panic_the_decoder() {
        // A deterministic xorshift stream of field values from an alphabet that reaches every
        // branch of the decimal, symbol and id parsers.
        const ALPHABET: &[u8] = b"0123456789.-ABCPTU!~ ";
        let f = fixture();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut text = |max: u64| -> String {
            let n = next() % (max + 1);
            (0..n)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize] as char)
                .collect::<String>()
                .trim()
                .replace(' ', "")
        };
        for _ in 0..2000 {
            let (price, qty, sym, cl) = (text(24), text(24), text(12), text(80));
            let (stop, ord_type) = (text(24), ["1", "2", "3", "4", "J", "P"][text(5).len()]);
            let (direction, side) = (
                ["", "U", "D", "X"][text(3).len()],
                ["1", "2"][text(1).len()],
            );
            // Time in force and a GTD expiry: valid, far (beyond i64 nanoseconds), garbled.
            let tif = ["", "0", "1", "3", "4", "6", "6", "9"][text(7).len()];
            let garbled = text(20);
            let expire_time = [
                "",
                "20261204-10:00:00.123",
                "99991231-23:59:59",
                "22620411-23:47:16.854775808",
                garbled.as_str(),
            ][text(4).len()];
            let expire_date = [
                "",
                "20261204",
                "22620411",
                "99991231",
                "2026120",
                garbled.as_str(),
            ][text(5).len()];
            // Trailing stops: ExecInst a (with post-only, or neither), an offset, its type.
            let exec_inst = ["", "a", "6 a", "6", "a6"][text(4).len()];
            let peg_offset_type = ["", "1", "0", "x"][text(3).len()];
            for v in V {
                for t in ["D", "F", "G", "H", "q"] {
                    let body = [
                        (11, cl.as_str()),
                        (41, "O"),
                        (37, qty.as_str()),
                        (55, sym.as_str()),
                        (54, side),
                        (60, "20260102-10:00:00"),
                        (38, qty.as_str()),
                        (40, ord_type),
                        (44, price.as_str()),
                        (99, stop.as_str()),
                        (1109, direction),
                        (59, tif),
                        (126, expire_time),
                        (432, expire_date),
                        (111, price.as_str()),
                        (530, price.as_str()),
                        (18, exec_inst),
                        (211, stop.as_str()),
                        (836, peg_offset_type),
                    ];
                    let body: Vec<_> = body.into_iter().filter(|(_, v)| !v.is_empty()).collect();
                    let bytes = msg(v, t, &body);
                    let mut d = Decoder::new();
                    if let Ok(m) = d.decode(&bytes) {
                        let _ = decode(&m, &f.ctx(v));
                    }
                }
            }
        }
    }
}
