//! Orders, the commands that carry them to the core thread, and the events that come back.

use std::num::NonZeroU16;

use crate::{AccountId, ClOrdId, InstrumentId, OrderId, Price, Qty, SessionId, TradeId};

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Buy (FIX Side 1).
    Buy,
    /// Sell (FIX Side 2).
    Sell,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// Order type.
///
/// A stop or take-profit order waits, untriggered, until a trade in its instrument reaches its
/// trigger price, then works as the market or limit order it carries. A stop (stop-loss)
/// triggers in the direction the market moves against the order (a buy when the price rises
/// to it, a sell when it falls to it); a take-profit in the other (a buy when the price falls
/// to it, a sell when it rises to it). It keeps its type in every report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrdType {
    /// Limit order (FIX OrdType 2).
    Limit,
    /// Market order (FIX OrdType 1): trades at any price, never rests.
    Market,
    /// Stop order (FIX OrdType 3, Binance `STOP_LOSS`): a market order once triggered.
    Stop {
        /// The trigger price (FIX StopPx(99)).
        stop_px: Price,
    },
    /// Stop-limit order (FIX OrdType 4, Binance `STOP_LOSS_LIMIT`): a limit order at
    /// `price` once triggered.
    StopLimit {
        /// The trigger price (FIX StopPx(99)).
        stop_px: Price,
    },
    /// Take-profit order (FIX OrdType J, market if touched; Binance `TAKE_PROFIT`): a market
    /// order once triggered.
    TakeProfit {
        /// The trigger price (FIX StopPx(99)).
        stop_px: Price,
    },
    /// Take-profit limit order (limit if touched: FIX OrdType 4 with
    /// TriggerPriceDirection(1109); Binance `TAKE_PROFIT_LIMIT`): a limit order at `price`
    /// once triggered.
    TakeProfitLimit {
        /// The trigger price (FIX StopPx(99)).
        stop_px: Price,
    },
}

/// Which way the last trade price must move to reach a trigger price (FIX
/// TriggerPriceDirection(1109)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerDirection {
    /// Triggers when a trade is at or above the trigger price (FIX `U`).
    Up,
    /// Triggers when a trade is at or below the trigger price (FIX `D`).
    Down,
}

impl TriggerDirection {
    /// Whether a trade at `last` reaches `trigger_px`.
    pub fn reached(self, trigger_px: Price, last: Price) -> bool {
        match self {
            TriggerDirection::Up => last >= trigger_px,
            TriggerDirection::Down => last <= trigger_px,
        }
    }

    /// The direction in which a stop-loss on `side` triggers (a take-profit triggers in the
    /// other).
    pub fn stop_loss(side: Side) -> TriggerDirection {
        match side {
            Side::Buy => TriggerDirection::Up,
            Side::Sell => TriggerDirection::Down,
        }
    }

    /// The other direction.
    pub fn opposite(self) -> TriggerDirection {
        match self {
            TriggerDirection::Up => TriggerDirection::Down,
            TriggerDirection::Down => TriggerDirection::Up,
        }
    }
}

impl OrdType {
    /// Whether it trades at any price once working (market, stop and take-profit orders): no
    /// limit.
    pub fn is_market(self) -> bool {
        matches!(
            self,
            OrdType::Market | OrdType::Stop { .. } | OrdType::TakeProfit { .. }
        )
    }

    /// The type's snake_case name (`limit`, `stop_limit`, ...), for logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            OrdType::Limit => "limit",
            OrdType::Market => "market",
            OrdType::Stop { .. } => "stop",
            OrdType::StopLimit { .. } => "stop_limit",
            OrdType::TakeProfit { .. } => "take_profit",
            OrdType::TakeProfitLimit { .. } => "take_profit_limit",
        }
    }

    /// The type's code in the journal and snapshots: 0 limit, 1 market, 2 stop, 3 stop
    /// limit, 4 take-profit, 5 take-profit limit (a trigger price is stored after it).
    pub fn code(self) -> u8 {
        match self {
            OrdType::Limit => 0,
            OrdType::Market => 1,
            OrdType::Stop { .. } => 2,
            OrdType::StopLimit { .. } => 3,
            OrdType::TakeProfit { .. } => 4,
            OrdType::TakeProfitLimit { .. } => 5,
        }
    }

    /// The type of [`code`](Self::code) `c`, reading a trigger price with `stop_px`; `None`
    /// for an unknown code.
    pub fn from_code<E>(
        c: u8,
        stop_px: impl FnOnce() -> Result<Price, E>,
    ) -> Option<Result<OrdType, E>> {
        Some(match c {
            0 => Ok(OrdType::Limit),
            1 => Ok(OrdType::Market),
            2 => stop_px().map(|stop_px| OrdType::Stop { stop_px }),
            3 => stop_px().map(|stop_px| OrdType::StopLimit { stop_px }),
            4 => stop_px().map(|stop_px| OrdType::TakeProfit { stop_px }),
            5 => stop_px().map(|stop_px| OrdType::TakeProfitLimit { stop_px }),
            _ => return None,
        })
    }

    /// The trigger price of a stop or take-profit order.
    pub fn stop_px(self) -> Option<Price> {
        match self {
            OrdType::Stop { stop_px }
            | OrdType::StopLimit { stop_px }
            | OrdType::TakeProfit { stop_px }
            | OrdType::TakeProfitLimit { stop_px } => Some(stop_px),
            OrdType::Limit | OrdType::Market => None,
        }
    }

    /// Whether it is a take-profit (triggers when the price moves in the order's favour).
    pub fn is_take_profit(self) -> bool {
        matches!(
            self,
            OrdType::TakeProfit { .. } | OrdType::TakeProfitLimit { .. }
        )
    }

    /// The trigger price of a stop or take-profit order on `side` and the direction a trade
    /// must reach it from.
    pub fn trigger(self, side: Side) -> Option<(Price, TriggerDirection)> {
        let stop_px = self.stop_px()?;
        let dir = TriggerDirection::stop_loss(side);
        Some(if self.is_take_profit() {
            (stop_px, dir.opposite())
        } else {
            (stop_px, dir)
        })
    }
}

/// How long an order stays working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeInForce {
    /// Good till cancel (FIX 1).
    Gtc,
    /// Immediate or cancel (FIX 3): the unfilled rest is cancelled.
    Ioc,
    /// Fill or kill (FIX 4): all at once or nothing.
    Fok,
    /// Day (FIX 0): cancelled at the end of the trading day.
    Day,
    /// Good till date (FIX 6 with ExpireTime(126) or ExpireDate(432)): rests until it ends
    /// with an `Expired` report at `expire_ns` (ns since the epoch, UTC).
    Gtd {
        /// When it expires.
        expire_ns: i64,
    },
}

impl TimeInForce {
    /// Its lower-case name (`gtc`, `ioc`, `fok`, `day`, `gtd`), for logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            TimeInForce::Gtc => "gtc",
            TimeInForce::Ioc => "ioc",
            TimeInForce::Fok => "fok",
            TimeInForce::Day => "day",
            TimeInForce::Gtd { .. } => "gtd",
        }
    }

    /// The time in force's code in the journal and snapshots: 0 GTC, 1 IOC, 2 FOK, 3 Day,
    /// 4 GTD (its expiry time is stored after it).
    pub fn code(self) -> u8 {
        match self {
            TimeInForce::Gtc => 0,
            TimeInForce::Ioc => 1,
            TimeInForce::Fok => 2,
            TimeInForce::Day => 3,
            TimeInForce::Gtd { .. } => 4,
        }
    }

    /// The time in force of [`code`](Self::code) `c`, reading a GTD order's expiry time with
    /// `expire_ns`; `None` for an unknown code.
    pub fn from_code<E>(
        c: u8,
        expire_ns: impl FnOnce() -> Result<i64, E>,
    ) -> Option<Result<TimeInForce, E>> {
        Some(match c {
            0 => Ok(TimeInForce::Gtc),
            1 => Ok(TimeInForce::Ioc),
            2 => Ok(TimeInForce::Fok),
            3 => Ok(TimeInForce::Day),
            4 => expire_ns().map(|expire_ns| TimeInForce::Gtd { expire_ns }),
            _ => return None,
        })
    }

    /// Whether an order's unfilled rest stays in the book (GTC, Day and GTD; not IOC or FOK).
    pub fn rests(self) -> bool {
        matches!(
            self,
            TimeInForce::Gtc | TimeInForce::Day | TimeInForce::Gtd { .. }
        )
    }

    /// A good-till-date order's expiry time.
    pub fn expire_ns(self) -> Option<i64> {
        match self {
            TimeInForce::Gtd { expire_ns } => Some(expire_ns),
            _ => None,
        }
    }
}

/// A trailing stop's distance in basis points (Binance `trailingDelta`; 100 = 1 %).
///
/// A sell tracks the highest trade price since it started tracking and triggers on a trade
/// at or below that price less the distance; a buy tracks the lowest and triggers on a trade
/// at or above it plus the distance. An order with an activation price (its stop price)
/// starts tracking at the first trade that reaches it (in its stop or take-profit direction),
/// that trade's price being the first best price; one without tracks from its acceptance,
/// from the last trade price then (or the next trade).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrailingDelta(NonZeroU16);

impl TrailingDelta {
    /// The smallest distance taken: 10 bips (0.1 %), the dialect's usual `TRAILING_DELTA`
    /// filter minimum.
    pub const MIN_BIPS: u16 = 10;
    /// The largest distance taken: 2000 bips (20 %), the dialect's usual maximum.
    pub const MAX_BIPS: u16 = 2000;

    /// The distance of `bips` basis points, if within [`MIN_BIPS`](Self::MIN_BIPS) and
    /// [`MAX_BIPS`](Self::MAX_BIPS).
    pub fn new(bips: u16) -> Option<TrailingDelta> {
        if (Self::MIN_BIPS..=Self::MAX_BIPS).contains(&bips) {
            NonZeroU16::new(bips).map(TrailingDelta)
        } else {
            None
        }
    }

    /// The distance in basis points.
    pub fn bips(self) -> u16 {
        self.0.get()
    }

    /// Whether a trade at `px` is a better price than `best` for a trailing order on `side`
    /// (higher for a sell, lower for a buy): its new best price.
    pub fn improves(side: Side, best: Price, px: Price) -> bool {
        match side {
            Side::Sell => px > best,
            Side::Buy => px < best,
        }
    }

    /// Whether a trade at `px` triggers a trailing order on `side` whose best price is
    /// `best`: `px ≤ best × (1 − bips/10⁴)` for a sell, `px ≥ best × (1 + bips/10⁴)` for a buy,
    /// exactly (no rounding).
    pub fn reached(self, side: Side, best: Price, px: Price) -> bool {
        let px = i128::from(px.0) * 10_000;
        let d = i128::from(self.bips());
        match side {
            Side::Sell => px <= i128::from(best.0) * (10_000 - d),
            Side::Buy => px >= i128::from(best.0) * (10_000 + d),
        }
    }

    /// `best × (1 + bips/10⁴)` rounded up: the highest price a trailing order whose best price
    /// is `best` triggers at (a buy's trigger; a sell's is below `best`); `None` on overflow.
    /// The risk checks value a trailing stop at it.
    pub fn trigger_bound(self, best: Price) -> Option<Price> {
        let num = i128::from(best.0) * (10_000 + i128::from(self.bips()));
        let p = (num + 9_999).div_euclid(10_000);
        i64::try_from(p).ok().map(Price)
    }
}

/// Self-trade prevention: what happens when an order would trade against the same account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StpMode {
    /// Cancel the resting order, go on matching the incoming one.
    CancelResting,
    /// Cancel the incoming order (the default, as on most venues).
    #[default]
    CancelIncoming,
    /// Cancel both.
    CancelBoth,
}

/// A new order, decoded, authenticated and addressed to an instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOrder {
    /// The session it came from (where its reports go).
    pub session: SessionId,
    /// The account it trades for.
    pub account: AccountId,
    /// The instrument.
    pub instrument: InstrumentId,
    /// The client's id.
    pub cl_ord_id: ClOrdId,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    pub ord_type: OrdType,
    /// Time in force.
    pub tif: TimeInForce,
    /// Limit price (ignored for market orders).
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Post-only (FIX ExecInst 6, `LIMIT_MAKER`): rejected if it would trade on arrival.
    pub post_only: bool,
    /// Self-trade prevention override; `None` uses the account's configured mode.
    pub stp: Option<StpMode>,
    /// When the socket task received it (ns since the epoch), for latency measurement.
    pub received_ns: i64,
    /// An iceberg's displayed quantity (FIX MaxFloor(111) / DisplayQty(1138), Binance
    /// `icebergQty`): while it rests, only this much of it trades before the next part is shown
    /// at the back of its price level. `Qty(0)`: all of it is shown.
    pub display_qty: Qty,
    /// A trailing stop's distance (Binance `trailingDelta`), on a stop or take-profit order
    /// only: its trigger follows the best trade price since it started tracking (see
    /// [`TrailingDelta`]). Its `stop_px` is then the activation price, or `Price(0)` to track
    /// from the moment it is accepted.
    pub trailing: Option<TrailingDelta>,
    /// One-cancels-the-other: this order is the second of a pair whose first is this working
    /// order of the same session (Binance `orderList.place.oco`). Both must wait without
    /// trading: a post-only limit and a stop or take-profit (or two of those). When either
    /// trades (even partly) or triggers, or is cancelled or expires, the other is cancelled. If
    /// this order is refused, the first is cancelled too while it is untouched.
    pub oco_with: Option<OrderId>,
    /// The pending order of a one-triggers-the-other list (Binance `orderList.place.oto`):
    /// accepted now, it waits outside the book until the list's working order fills
    /// completely, then works as if entered at that moment (a pair of pending orders, joined
    /// by `oco_with`, is placed together). If the working order ends otherwise, or never
    /// joins it, it is cancelled; if it is cancelled, so is the working order.
    pub pending: bool,
    /// The working order of a one-triggers-the-other list: this order places the pending
    /// order `triggers` (of the same session, account and instrument, not yet in a list) when
    /// it fills completely. A limit order; if it is refused, the pending order is cancelled.
    pub triggers: Option<OrderId>,
}

impl NewOrder {
    /// The most parts an iceberg may be shown in (`qty ≤ display_qty × MAX_ICEBERG_PARTS`, the
    /// dialect's ICEBERG_PARTS filter): each part is a separate fill for whoever takes the
    /// level, so this bounds the reports one incoming order can cause.
    pub const MAX_ICEBERG_PARTS: i64 = 100;

    /// Whether its iceberg display quantity, if any, is one the book takes: positive, less
    /// than the quantity, in at most [`MAX_ICEBERG_PARTS`](Self::MAX_ICEBERG_PARTS) parts, on
    /// an order that rests (a limit, GTC, Day or GTD; stop-limits and take-profit limits once
    /// triggered).
    pub fn iceberg_ok(&self) -> bool {
        let d = self.display_qty.0;
        d == 0
            || (d > 0
                && d < self.qty.0
                && self.qty.0 <= d.saturating_mul(Self::MAX_ICEBERG_PARTS)
                && !self.ord_type.is_market()
                && self.tif.rests())
    }

    /// Whether its trigger fields fit together: a trailing distance only on a stop or
    /// take-profit order, whose stop price is positive, or `Price(0)` (no activation price)
    /// when it trails.
    pub fn trigger_ok(&self) -> bool {
        match (self.ord_type.stop_px(), self.trailing) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(p), None) => p.0 > 0,
            (Some(p), Some(_)) => p.0 >= 0,
        }
    }
}

/// A cancel request for one order, found by the engine's id or by the client's original id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelOrder {
    /// The requesting session.
    pub session: SessionId,
    /// The account.
    pub account: AccountId,
    /// The instrument.
    pub instrument: InstrumentId,
    /// The id of this cancel request.
    pub cl_ord_id: ClOrdId,
    /// The order's engine id, if the client gave it.
    pub order_id: Option<OrderId>,
    /// The order's client id (OrigClOrdID(41)); empty if `order_id` is given.
    pub orig_cl_ord_id: ClOrdId,
    /// When received (ns since the epoch).
    pub received_ns: i64,
}

/// A cancel/replace: new price and/or quantity for a working order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaceOrder {
    /// The requesting session.
    pub session: SessionId,
    /// The account.
    pub account: AccountId,
    /// The instrument.
    pub instrument: InstrumentId,
    /// The new client id of the order.
    pub cl_ord_id: ClOrdId,
    /// The order's engine id, if given.
    pub order_id: Option<OrderId>,
    /// The order's current client id.
    pub orig_cl_ord_id: ClOrdId,
    /// New limit price, or [`ReplaceOrder::KEEP_PRICE`] to keep the order's price (an amend
    /// of the quantity only).
    pub price: Price,
    /// New total quantity (including what has already been filled, as in FIX).
    pub qty: Qty,
    /// When received (ns since the epoch).
    pub received_ns: i64,
    /// A new time in force (one that rests: GTC, Day or GTD, e.g. a GTD order's new expiry);
    /// `None` keeps the order's.
    pub tif: Option<TimeInForce>,
}

impl ReplaceOrder {
    /// The price of a replace that keeps the order's price, whatever it is when the core
    /// thread gets the request: a quantity amend cannot move the order even if another
    /// session repriced it meanwhile. No decimal text parses to it (`i64::MIN` has no
    /// positive counterpart).
    pub const KEEP_PRICE: Price = Price(i64::MIN);
}

/// Cancel every working order of an account (optionally of one instrument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MassCancel {
    /// The requesting session.
    pub session: SessionId,
    /// The account.
    pub account: AccountId,
    /// Only this instrument, if given.
    pub instrument: Option<InstrumentId>,
    /// The request's id.
    pub cl_ord_id: ClOrdId,
}

/// What socket tasks send to the core thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// A new order.
    New(NewOrder),
    /// A cancel.
    Cancel(CancelOrder),
    /// A cancel/replace.
    Replace(ReplaceOrder),
    /// A mass cancel.
    MassCancel(MassCancel),
    /// A session went away (cancel-on-disconnect, release its slot).
    SessionClosed(SessionId),
    /// What a venue reported about an order routed to it (an execution report its connector
    /// received).
    Venue(VenueReport),
    /// The venue connector in this slot has logged on: the route requests the venue may never
    /// have received (a crash between the journal and the connector's store) are made again
    /// — a duplicate of an order the venue has is refused there and ignored here.
    VenueSync(SessionId),
}

/// What a venue's execution report says happened to an order routed to it, as its connector
/// read it. Applied by the core only to a routed order still open, and only once: a fill
/// counts only if its cumulative quantity is above the order's (a report resent after a
/// reconnect changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VenueReport {
    /// The slot of the venue connector that received it: a report about an order routed
    /// to another venue changes nothing.
    pub venue: SessionId,
    /// The order (the connector sends the engine's OrderID as the venue's ClOrdID).
    pub order_id: OrderId,
    /// What happened.
    pub kind: VenueReportKind,
    /// Price of this fill (fills only).
    pub last_px: Price,
    /// Quantity of this fill (fills only).
    pub last_qty: Qty,
    /// The venue's cumulative quantity filled after this report.
    pub cum_qty: Qty,
    /// When the connector received it (ns since the epoch).
    pub received_ns: i64,
}

/// The kinds of [`VenueReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VenueReportKind {
    /// The venue accepted the order (it works there).
    Accepted,
    /// A fill (partial or complete: the order's quantity tells).
    Fill,
    /// The venue cancelled the order (on our request or its own).
    Canceled,
    /// The venue expired the order (IOC rest, Day order at its close, ...).
    Expired,
    /// The venue refused the order.
    Rejected,
    /// The venue refused our cancel request (the order is filled or gone there).
    CancelRejected,
    /// The venue replaced the order as we asked (new price, quantity, time in force).
    Replaced,
    /// The venue refused our cancel/replace request.
    ReplaceRejected,
}

/// A request the core makes of a venue connector about a routed order (the event is addressed
/// to the connector's slot, [`EventKind::Route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteRequest {
    /// Send the order (the event's fields) to the venue, with its OrderID as ClOrdID.
    New,
    /// Cancel it at the venue; the event's `exec_id` names this cancel request and its
    /// `orig_cl_ord_id` is the order's current ClOrdID at the venue.
    Cancel,
    /// Replace it at the venue with the event's price, quantity and time in force; its
    /// `cl_ord_id` is the order's next ClOrdID at the venue, `orig_cl_ord_id` the current one.
    Replace,
}

/// Why an order or request was refused. Each maps to a FIX OrdRejReason(103) and a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The global or the account's kill switch is on.
    KillSwitch,
    /// Order-rate throttle exceeded.
    Throttled,
    /// No such instrument.
    UnknownInstrument,
    /// The instrument is halted or expired.
    InstrumentNotTrading,
    /// The account is unknown or not allowed for the session.
    UnknownAccount,
    /// Price not a multiple of the tick size.
    BadTick,
    /// Quantity not a multiple of the lot size.
    BadLot,
    /// Quantity below the minimum.
    QtyTooSmall,
    /// Quantity above the maximum.
    QtyTooLarge,
    /// Price × quantity above the maximum notional.
    NotionalTooLarge,
    /// Price outside the band around the reference price.
    PriceBand,
    /// Too many open orders for the account or the instrument.
    TooManyOpenOrders,
    /// The account's credit limit would be exceeded.
    CreditLimit,
    /// A position limit would be exceeded.
    PositionLimit,
    /// The ClOrdID was already used on this session today.
    DuplicateClOrdId,
    /// A post-only order would have traded on arrival.
    PostOnlyWouldTrade,
    /// Unsupported combination (e.g. market order with FOK on an empty book is fine, but
    /// post-only market is not).
    Unsupported,
    /// The order to cancel or replace does not exist or is no longer working.
    UnknownOrder,
    /// The core thread's queue is full: back-pressure.
    ServerBusy,
    /// A good-till-date order whose expiry time has already passed.
    TooLateToEnter,
    /// The second order of a one-cancels-the-other pair whose first is no longer an
    /// untouched working order of the session, or a pair whose orders cannot both wait; or
    /// the working order of a one-triggers-the-other list whose pending order is not an
    /// unlinked pending order of the session (or that is not a limit order itself).
    OrderListRejected,
    /// The venue the order was routed to refused it.
    VenueRejected,
    /// A cancel of the order is already on its way to its venue.
    CancelPending,
}

impl RejectReason {
    /// FIX OrdRejReason(103).
    pub const fn ord_rej_reason(self) -> u32 {
        match self {
            Self::KillSwitch => 0,
            Self::UnknownInstrument => 1,
            Self::InstrumentNotTrading => 2,
            Self::NotionalTooLarge
            | Self::TooManyOpenOrders
            | Self::CreditLimit
            | Self::PositionLimit => 3,
            Self::TooLateToEnter => 4,
            Self::UnknownOrder => 5,
            Self::DuplicateClOrdId => 6,
            Self::Unsupported | Self::PostOnlyWouldTrade | Self::OrderListRejected => 11,
            Self::VenueRejected | Self::CancelPending => 0,
            Self::BadLot | Self::QtyTooSmall | Self::QtyTooLarge => 13,
            Self::UnknownAccount => 15,
            Self::PriceBand => 16,
            Self::BadTick => 18,
            Self::Throttled | Self::ServerBusy => 99,
        }
    }

    /// Text(58) for the reject.
    pub const fn text(self) -> &'static str {
        match self {
            Self::KillSwitch => "kill switch active",
            Self::Throttled => "order rate limit exceeded",
            Self::UnknownInstrument => "unknown instrument",
            Self::InstrumentNotTrading => "instrument not trading",
            Self::UnknownAccount => "unknown account",
            Self::BadTick => "price is not a multiple of the tick size",
            Self::BadLot => "quantity is not a multiple of the lot size",
            Self::QtyTooSmall => "quantity below minimum",
            Self::QtyTooLarge => "quantity above maximum",
            Self::NotionalTooLarge => "order notional above maximum",
            Self::PriceBand => "price outside the allowed band",
            Self::TooManyOpenOrders => "too many open orders",
            Self::CreditLimit => "credit limit exceeded",
            Self::PositionLimit => "position limit exceeded",
            Self::DuplicateClOrdId => "duplicate ClOrdID",
            Self::PostOnlyWouldTrade => "post-only order would trade",
            Self::Unsupported => "unsupported order characteristic",
            Self::UnknownOrder => "unknown order",
            Self::ServerBusy => "server busy",
            Self::TooLateToEnter => "expire time has already passed",
            Self::VenueRejected => "refused by the venue",
            Self::CancelPending => "a cancel of the order is already pending at its venue",
            Self::OrderListRejected => {
                "order list rejected: a pair must wait untouched (a post-only limit and a stop); \
                 a pending order needs an untouched limit to trigger it"
            }
        }
    }
}

/// What happened to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Accepted and working (or about to trade).
    New,
    /// Partly filled; `last_qty`/`last_px` describe this fill.
    PartialFill,
    /// Completely filled.
    Fill,
    /// Cancelled (by request, mass cancel, kill switch, disconnect, self-trade prevention,
    /// or the unfilled rest of an IOC order).
    Canceled,
    /// Replaced: new price/quantity in effect.
    Replaced,
    /// Refused.
    Rejected(RejectReason),
    /// Expired (FOK not fillable, Day order at end of day, option at expiry).
    Expired,
    /// A cancel or replace request was refused (FIX OrderCancelReject).
    CancelRejected {
        /// True if the request was a cancel/replace, false for a cancel.
        replace: bool,
        /// Why.
        reason: RejectReason,
    },
    /// A mass cancel completed.
    MassCancelDone {
        /// Orders cancelled.
        canceled: u32,
    },
    /// A waiting stop or take-profit order was triggered: it works now, and its fills, rest
    /// or cancel follow (FIX 5.0 SP2 ExecType L).
    Triggered,
    /// The pending order of a one-triggers-the-other list was placed because its working
    /// order filled completely: it is a new order now (a stop waiting for its trigger, or
    /// working), and its fills, rest or cancel follow (FIX 5.0 SP2 ExecType L).
    Activated,
    /// To a venue connector: send or cancel a routed order there. Never reaches a client.
    Route(RouteRequest),
    /// To the client: its routed order, cancel or cancel/replace is on its way to the venue,
    /// whose answer follows (FIX ExecType A PendingNew, 6 PendingCancel, E PendingReplace).
    /// A cancel's or replace's event carries the request's ClOrdID and the order's as
    /// OrigClOrdID, and the order as it stands.
    Pending(RouteRequest),
}

/// An execution event produced by the core thread for one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The session the report goes to.
    pub session: SessionId,
    /// The account.
    pub account: AccountId,
    /// The instrument.
    pub instrument: InstrumentId,
    /// What happened.
    pub kind: EventKind,
    /// The engine's id of the order (0 if it was never accepted).
    pub order_id: OrderId,
    /// The order's client id (the request's, for cancels/replaces).
    pub cl_ord_id: ClOrdId,
    /// The previous client id, for cancels and replaces.
    pub orig_cl_ord_id: ClOrdId,
    /// Side.
    pub side: Side,
    /// Order type.
    pub ord_type: OrdType,
    /// Time in force.
    pub tif: TimeInForce,
    /// Limit price.
    pub price: Price,
    /// Order quantity.
    pub qty: Qty,
    /// Filled so far.
    pub cum_qty: Qty,
    /// Still working (0 once done).
    pub leaves_qty: Qty,
    /// Average fill price, rounded to the instrument's price scale.
    pub avg_px: Price,
    /// Price of this fill.
    pub last_px: Price,
    /// Quantity of this fill.
    pub last_qty: Qty,
    /// The trade, for fills.
    pub trade_id: TradeId,
    /// Unique id of this event (ExecID); shared only by the two views of a cancel or
    /// replace from another session (see [`Event::is_second_view_of`]).
    pub exec_id: u64,
    /// When the core thread produced it (ns since the epoch).
    pub ts_ns: i64,
    /// When the order's command was received (for order-to-ack latency).
    pub received_ns: i64,
    /// What reports repeat of the order beyond its type, prices and quantities.
    pub details: OrderDetails,
}

/// What reports repeat of an order beyond its type, prices and quantities: FIX ExecInst(18),
/// MaxFloor(111) / DisplayQty(1138) and PegOffsetValue(211); the dialect's `icebergQty`,
/// `trailingDelta` and `isWorking`. The default: none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OrderDetails {
    /// Post-only (FIX ExecInst 6, `LIMIT_MAKER`).
    pub post_only: bool,
    /// An iceberg's displayed quantity; `Qty(0)`: shown whole.
    pub display_qty: Qty,
    /// A trailing stop's distance.
    pub trailing: Option<TrailingDelta>,
    /// A stop, take-profit or trailing stop still waiting for its trigger (not working yet).
    pub waiting: bool,
    /// The pending order of a one-triggers-the-other list, waiting for its working order to
    /// fill (FIX OrdStatus A, the dialect's `PENDING_NEW`).
    pub pending: bool,
}

impl OrderDetails {
    /// The details a new order asks for (not waiting yet: the book decides).
    pub fn of(o: &NewOrder) -> OrderDetails {
        OrderDetails {
            post_only: o.post_only,
            display_qty: o.display_qty,
            trailing: o.trailing,
            waiting: false,
            pending: o.pending,
        }
    }
}

impl Event {
    /// Whether this is the order's own session's view of the execution `prev` reported to
    /// the session that requested it: a cancel or replace by OrderID from another session of
    /// the account is reported to both, one after the other, under one ExecID. Consumers of
    /// every event (the drop copy, the journal export) take the first view only.
    pub fn is_second_view_of(&self, prev: &Event) -> bool {
        self.exec_id != 0
            && self.exec_id == prev.exec_id
            && self.order_id == prev.order_id
            && self.kind == prev.kind
            && self.session != prev.session
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_other_session_s_view_of_one_execution_is_a_second_view() {
        let first = Event {
            session: SessionId(2),
            account: AccountId(1),
            instrument: InstrumentId(0),
            kind: EventKind::Canceled,
            order_id: OrderId(9),
            cl_ord_id: ClOrdId::EMPTY,
            orig_cl_ord_id: ClOrdId::EMPTY,
            side: Side::Buy,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(1),
            qty: Qty(1),
            cum_qty: Qty(0),
            leaves_qty: Qty(0),
            avg_px: Price(0),
            last_px: Price(0),
            last_qty: Qty(0),
            trade_id: TradeId(0),
            exec_id: 40,
            ts_ns: 0,
            received_ns: 0,
            details: Default::default(),
        };
        let owner = Event {
            session: SessionId(1),
            ..first
        };
        assert!(owner.is_second_view_of(&first));
        assert!(!first.is_second_view_of(&first));
        // Events without an ExecID (status answers) are never views of one another.
        let none = Event {
            exec_id: 0,
            ..first
        };
        assert!(!Event {
            exec_id: 0,
            ..owner
        }
        .is_second_view_of(&none));
        for other in [
            Event {
                exec_id: 41,
                ..owner
            },
            Event {
                order_id: OrderId(8),
                ..owner
            },
            Event {
                kind: EventKind::Replaced,
                ..owner
            },
        ] {
            assert!(!other.is_second_view_of(&first), "{other:?}");
        }
    }

    #[test]
    fn stops_trigger_against_the_order_and_take_profits_in_its_favour() {
        let px = Price(100);
        let cases = [
            (
                OrdType::Stop { stop_px: px },
                Side::Buy,
                TriggerDirection::Up,
            ),
            (
                OrdType::StopLimit { stop_px: px },
                Side::Sell,
                TriggerDirection::Down,
            ),
            (
                OrdType::TakeProfit { stop_px: px },
                Side::Buy,
                TriggerDirection::Down,
            ),
            (
                OrdType::TakeProfitLimit { stop_px: px },
                Side::Sell,
                TriggerDirection::Up,
            ),
        ];
        for (t, side, dir) in cases {
            assert_eq!(t.trigger(side), Some((px, dir)), "{t:?} {side:?}");
            // Every type survives its journal code with its trigger price.
            let back = OrdType::from_code(t.code(), || Ok::<_, ()>(px));
            assert_eq!(back, Some(Ok(t)));
        }
        assert_eq!(OrdType::Limit.trigger(Side::Buy), None);
        assert_eq!(OrdType::from_code(6, || Ok::<_, ()>(px)), None);
        // At the trigger price counts as reached, one tick short does not.
        assert!(TriggerDirection::Up.reached(px, Price(100)));
        assert!(!TriggerDirection::Up.reached(px, Price(99)));
        assert!(TriggerDirection::Down.reached(px, Price(100)));
        assert!(!TriggerDirection::Down.reached(px, Price(101)));
        assert!(OrdType::TakeProfit { stop_px: px }.is_market());
        assert!(!OrdType::TakeProfitLimit { stop_px: px }.is_market());
    }

    #[test]
    fn time_in_force_codes_keep_a_gtd_expiry_and_only_gtc_day_and_gtd_rest() {
        let gtd = TimeInForce::Gtd {
            expire_ns: 1_795_000_000_000_000_000,
        };
        for t in [
            TimeInForce::Gtc,
            TimeInForce::Ioc,
            TimeInForce::Fok,
            TimeInForce::Day,
            gtd,
        ] {
            let back = TimeInForce::from_code(t.code(), || Ok::<_, ()>(1_795_000_000_000_000_000));
            assert_eq!(back, Some(Ok(t)));
            assert_eq!(
                t.rests(),
                !matches!(t, TimeInForce::Ioc | TimeInForce::Fok),
                "{t:?}"
            );
        }
        assert_eq!(TimeInForce::from_code(5, || Ok::<_, ()>(0)), None);
        assert_eq!(gtd.expire_ns(), Some(1_795_000_000_000_000_000));
        assert_eq!(TimeInForce::Day.expire_ns(), None);
        assert_eq!(RejectReason::TooLateToEnter.ord_rej_reason(), 4);
    }

    #[test]
    fn a_trailing_delta_is_10_to_2000_bips_and_triggers_exactly_that_far_from_the_best_price() {
        assert_eq!(TrailingDelta::new(9), None);
        assert_eq!(TrailingDelta::new(0), None);
        assert_eq!(TrailingDelta::new(2001), None);
        let d = TrailingDelta::new(1000).unwrap();
        assert_eq!(d.bips(), 1000);
        assert_eq!(TrailingDelta::new(10).unwrap().bips(), 10);
        assert_eq!(TrailingDelta::new(2000).unwrap().bips(), 2000);
        // 10 % from 41,000: a sell triggers at 36,900 and below, a buy from 42,000 at 46,200
        // and above.
        assert!(d.reached(Side::Sell, Price(41_000), Price(36_900)));
        assert!(!d.reached(Side::Sell, Price(41_000), Price(36_901)));
        assert!(d.reached(Side::Buy, Price(42_000), Price(46_200)));
        assert!(!d.reached(Side::Buy, Price(42_000), Price(46_199)));
        assert!(TrailingDelta::improves(Side::Sell, Price(10), Price(11)));
        assert!(!TrailingDelta::improves(Side::Sell, Price(10), Price(10)));
        assert!(TrailingDelta::improves(Side::Buy, Price(10), Price(9)));
        assert!(!TrailingDelta::improves(Side::Buy, Price(10), Price(11)));
        // Rounded up: 1.1 × 101 = 111.1 → 112.
        assert_eq!(d.trigger_bound(Price(101)), Some(Price(112)));
        assert_eq!(d.trigger_bound(Price(100)), Some(Price(110)));
        assert_eq!(d.trigger_bound(Price(i64::MAX)), None);
        // No overflow at the extremes of a price.
        assert!(!d.reached(Side::Buy, Price(i64::MAX), Price(i64::MAX)));
        assert!(d.reached(Side::Sell, Price(i64::MAX), Price(i64::MIN)));
    }

    #[test]
    fn only_stop_and_take_profit_orders_trail_and_only_they_may_have_no_stop_price() {
        let o = |ord_type, trailing| NewOrder {
            session: SessionId(0),
            account: AccountId(0),
            instrument: InstrumentId(0),
            cl_ord_id: ClOrdId::EMPTY,
            side: Side::Sell,
            ord_type,
            tif: TimeInForce::Gtc,
            price: Price(1),
            qty: Qty(1),
            post_only: false,
            stp: None,
            received_ns: 0,
            display_qty: Qty(0),
            trailing,
            oco_with: None,
            pending: false,
            triggers: None,
        };
        let d = TrailingDelta::new(100);
        let stop = |p| OrdType::Stop { stop_px: Price(p) };
        let tp_limit = |p| OrdType::TakeProfitLimit { stop_px: Price(p) };
        assert!(o(OrdType::Limit, None).trigger_ok());
        assert!(!o(OrdType::Limit, d).trigger_ok());
        assert!(!o(OrdType::Market, d).trigger_ok());
        assert!(o(stop(5), None).trigger_ok());
        assert!(!o(stop(0), None).trigger_ok());
        assert!(o(stop(0), d).trigger_ok());
        assert!(o(tp_limit(5), d).trigger_ok());
        assert!(!o(tp_limit(-1), d).trigger_ok());
    }

    #[test]
    fn commands_and_events_are_small_fixed_size_values() {
        // They cross lock-free queues by value: keep them within a few cache lines.
        assert!(std::mem::size_of::<Command>() <= 256);
        assert!(std::mem::size_of::<Event>() <= 320);
    }

    #[test]
    fn every_reject_reason_has_a_fix_code_and_text() {
        use RejectReason::*;
        for r in [
            KillSwitch,
            Throttled,
            UnknownInstrument,
            InstrumentNotTrading,
            UnknownAccount,
            BadTick,
            BadLot,
            QtyTooSmall,
            QtyTooLarge,
            NotionalTooLarge,
            PriceBand,
            TooManyOpenOrders,
            CreditLimit,
            PositionLimit,
            DuplicateClOrdId,
            PostOnlyWouldTrade,
            Unsupported,
            UnknownOrder,
            ServerBusy,
            TooLateToEnter,
        ] {
            assert!(!r.text().is_empty());
            assert!(r.ord_rej_reason() <= 99);
        }
    }
}
