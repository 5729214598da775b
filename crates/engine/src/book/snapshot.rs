//! The books in a journal snapshot: every resting order with every field a report or a later
//! match depends on, level by level in time priority, each book's last trade price and its
//! stop orders waiting for their trigger in trigger order and its waiting trailing stops with
//! their phase and best price (version 3; version 2 snapshots have none), its pending orders
//! of one-triggers-the-other lists (version 4; older snapshots have none), its orders routed
//! to a venue and the client cancels waiting for their venues (version 5), the account and
//! session lists in their order (the order of bulk cancels), and the id counters.

use portcullis_types::snapshot::{
    side_byte, stp_byte, SnapshotError, SnapshotReader, SnapshotWriter,
};
use portcullis_types::{
    AccountId, InstrumentId, OrderId, Price, Qty, SessionId, Side, TrailingDelta, TriggerDirection,
};

use super::{IdCounters, Matcher, OrderBook, StopEntry, StopList};
use crate::orders::{Order, Orders, Route, TrailPhase, NIL};

const VERSION: u8 = 5;
/// The version before routed orders, still read.
const VERSION_4: u8 = 4;
/// The version before pending orders, still read.
const VERSION_3: u8 = 3;
/// The version before trailing stops, still read.
const VERSION_2: u8 = 2;
/// Bytes of one order in the snapshot, at least (a 0-byte ClOrdID).
const MIN_ORDER_BYTES: usize = 8 + 1 + 4 + 4 + 4 + 5 + 8 * 4 + 16;

impl Matcher {
    /// Appends the books to a snapshot (see the module docs). Off the hot path: allocates
    /// `out`'s growth.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        let mut w = SnapshotWriter::new(out);
        w.u8(VERSION);
        w.u64(self.ids.order);
        w.u64(self.ids.exec);
        w.u64(self.ids.trade);
        w.u32(self.books.len() as u32);
        // Pending orders are in no book list: found by one pass over the store, by book.
        let mut pending: Vec<Vec<u32>> = vec![Vec::new(); self.books.len()];
        let mut routed: Vec<Vec<u32>> = vec![Vec::new(); self.books.len()];
        for slot in 0..self.orders.high_water() {
            if self.orders.is_live(slot) {
                let o = self.orders.get(slot);
                if o.pending {
                    pending[o.instrument.0 as usize].push(slot);
                } else if self.orders.route(slot).routed() {
                    routed[o.instrument.0 as usize].push(slot);
                }
            }
        }
        for ((b, pending), routed) in self.books.iter().zip(&mut pending).zip(&mut routed) {
            w.u32(b.instrument.0);
            w.bool(b.open);
            for side in [&b.bids, &b.asks] {
                w.u32(side.levels.iter().map(|l| l.count).sum());
                // Best level first, each level's FIFO in order: re-appending in this order
                // rebuilds the same priority.
                for l in side.levels.iter().rev() {
                    let mut slot = l.head;
                    while slot != NIL {
                        write_order(&mut w, self.orders.get(slot), &self.orders);
                        slot = self.orders.next(slot);
                    }
                }
            }
            w.i64(b.tape.last.map_or(i64::MIN, |p| p.0));
            for stops in [&b.up_stops, &b.down_stops] {
                w.u32(stops.entries.len() as u32);
                for e in &stops.entries {
                    write_order(&mut w, self.orders.get(e.slot), &self.orders);
                }
            }
            w.u32(b.tape.trailing.len() as u32);
            for &slot in &b.tape.trailing {
                let o = self.orders.get(slot);
                write_order(&mut w, o, &self.orders);
                // Phase: 0 arming, 1 tracking without a trade yet, 2 tracking from a best
                // price (it follows). A due stop works before the command ends, so none is.
                match o.trail {
                    TrailPhase::Tracking(Some(best)) => {
                        w.u8(2);
                        w.i64(best.0);
                    }
                    TrailPhase::Tracking(None) => w.u8(1),
                    TrailPhase::Arming | TrailPhase::Due => w.u8(0),
                }
            }
            pending.sort_by_key(|&slot| self.orders.get(slot).id);
            w.u32(pending.len() as u32);
            for &slot in pending.iter() {
                write_order(&mut w, self.orders.get(slot), &self.orders);
            }
            routed.sort_by_key(|&slot| self.orders.get(slot).id);
            w.u32(routed.len() as u32);
            for &slot in routed.iter() {
                write_order(&mut w, self.orders.get(slot), &self.orders);
                w.u8(self.orders.route(slot).state_byte());
                w.u32(u32::from(self.orders.venue_rev(slot)));
            }
        }
        w.u32(self.route_cancels.len() as u32);
        for c in &self.route_cancels {
            w.u64(c.order.0);
            w.u32(c.session.0);
            w.cl_ord_id(&c.cl_ord_id);
            w.i64(c.received_ns);
            match c.replace {
                None => w.u8(0),
                Some((price, qty, tif)) => {
                    w.u8(1 + u8::from(tif.is_some()));
                    w.i64(price.0);
                    w.i64(qty.0);
                    if let Some(t) = tif {
                        w.tif(t);
                    }
                }
            }
        }
        for account in [true, false] {
            let owners = self.orders.owners(account);
            w.u32(owners);
            for o in 0..owners {
                let mut ids = Vec::new();
                let mut slot = if account {
                    self.orders.account_head(AccountId(o))
                } else {
                    self.orders.session_head(SessionId(o))
                };
                while slot != NIL {
                    ids.push(self.orders.get(slot).id);
                    slot = if account {
                        self.orders.account_next(slot)
                    } else {
                        self.orders.session_next(slot)
                    };
                }
                w.u32(ids.len() as u32);
                for id in ids {
                    w.u64(id.0);
                }
            }
        }
    }

    /// Restores [`write_snapshot`](Self::write_snapshot) into a matcher fresh from
    /// [`Matcher::new`] (no books, no orders).
    pub fn restore_snapshot(&mut self, r: &mut SnapshotReader<'_>) -> Result<(), SnapshotError> {
        let version = r.u8("book snapshot version")?;
        if !(VERSION_2..=VERSION).contains(&version) {
            return Err(r.invalid(1, "book snapshot version"));
        }
        let ids = IdCounters {
            order: r.u64("next order id")?,
            exec: r.u64("next exec id")?,
            trade: r.u64("next trade id")?,
        };
        if !self.resume_ids(ids) {
            return Err(r.invalid(24, "id counters"));
        }
        let n = r.count(5, "books")?;
        self.books.clear();
        // One-cancels-the-other pairs and one-triggers-the-other lists: (slot, the other's id,
        // where it was read), joined once every order is in.
        let mut links: Vec<(u32, OrderId, usize)> = Vec::new();
        let mut lists: Vec<(u32, OrderId, usize)> = Vec::new();
        for i in 0..n {
            let instrument = InstrumentId(r.u32("book instrument")?);
            if instrument.0 as usize != i {
                return Err(r.invalid(4, "book instrument"));
            }
            if r.bool("book open")? {
                self.add_book(instrument);
            } else {
                self.books.push(OrderBook::new(instrument, 0));
            }
            for side in [Side::Buy, Side::Sell] {
                let count = r.count(MIN_ORDER_BYTES, "resting orders")?;
                for _ in 0..count {
                    let at = r.position();
                    let (o, sibling, list) = read_order(r)?;
                    if o.instrument != instrument || o.side != side || o.ord_type.is_market() {
                        return Err(SnapshotError::Invalid {
                            offset: at,
                            what: "resting order",
                        });
                    }
                    let slot = self.restore_order(o, at)?;
                    links.extend(sibling.map(|s| (slot, s, at)));
                    lists.extend(list.map(|s| (slot, s, at)));
                    self.books[i]
                        .side_mut(side)
                        .push_back(&mut self.orders, slot);
                    // The shown part as it was, not a fresh one.
                    self.orders.get_mut(slot).tranche_end = o.tranche_end;
                }
            }
            let last = r.i64("last trade price")?;
            self.books[i].tape.last = (last != i64::MIN).then_some(Price(last));
            // Written in the pre-take-profit layout too: buy stops all trigger up, sell stops
            // down.
            for dir in [TriggerDirection::Up, TriggerDirection::Down] {
                let count = r.count(MIN_ORDER_BYTES, "stop orders")?;
                for _ in 0..count {
                    let at = r.position();
                    let (mut o, sibling, list) = read_order(r)?;
                    let trigger = o.ord_type.trigger(o.side).filter(|_| o.trailing.is_none());
                    let in_order = trigger.is_some_and(|(p, d)| {
                        d == dir
                            && self.books[i]
                                .stops(dir)
                                .entries
                                .last()
                                .map_or(true, |e| !StopList::later(dir, p, e.stop_px))
                    });
                    if o.instrument != instrument || !in_order {
                        return Err(SnapshotError::Invalid {
                            offset: at,
                            what: "stop order",
                        });
                    }
                    o.untriggered = true;
                    let slot = self.restore_order(o, at)?;
                    links.extend(sibling.map(|s| (slot, s, at)));
                    lists.extend(list.map(|s| (slot, s, at)));
                    self.books[i].stops_mut(dir).entries.push(StopEntry {
                        stop_px: trigger.map_or(Price(0), |(p, _)| p),
                        slot,
                    });
                }
            }
            if version == VERSION_2 {
                continue;
            }
            let count = r.count(MIN_ORDER_BYTES + 1, "trailing stops")?;
            for _ in 0..count {
                let at = r.position();
                let (mut o, sibling, list) = read_order(r)?;
                let bad = SnapshotError::Invalid {
                    offset: at,
                    what: "trailing stop",
                };
                // In the order they started to wait (a pending order placed later than its id).
                if o.instrument != instrument
                    || o.trailing.is_none()
                    || o.ord_type.stop_px().is_none()
                {
                    return Err(bad);
                }
                o.trail = match r.u8("trailing stop phase")? {
                    0 if o.ord_type.stop_px().is_some_and(|p| p.0 > 0) => TrailPhase::Arming,
                    1 => TrailPhase::Tracking(None),
                    2 => TrailPhase::Tracking(Some(r.price("trailing stop best price")?)),
                    _ => return Err(bad),
                };
                o.untriggered = true;
                let slot = self.restore_order(o, at)?;
                links.extend(sibling.map(|s| (slot, s, at)));
                lists.extend(list.map(|s| (slot, s, at)));
                self.books[i].tape.trailing.push(slot);
            }
            if version == VERSION_3 {
                continue;
            }
            let count = r.count(MIN_ORDER_BYTES, "pending orders")?;
            for _ in 0..count {
                let at = r.position();
                let (mut o, sibling, list) = read_order(r)?;
                if o.instrument != instrument {
                    return Err(SnapshotError::Invalid {
                        offset: at,
                        what: "pending order",
                    });
                }
                o.pending = true;
                let slot = self.restore_order(o, at)?;
                links.extend(sibling.map(|s| (slot, s, at)));
                lists.extend(list.map(|s| (slot, s, at)));
            }
            if version == VERSION_4 {
                continue;
            }
            let count = r.count(MIN_ORDER_BYTES + 1, "routed orders")?;
            for _ in 0..count {
                let at = r.position();
                let (o, sibling, list) = read_order(r)?;
                let state = Route::from_state_byte(r.u8("routed order state")?);
                let Some(state) = state.filter(|_| {
                    o.instrument == instrument
                        && sibling.is_none()
                        && list.is_none()
                        && o.display.0 == 0
                        && o.trailing.is_none()
                }) else {
                    return Err(SnapshotError::Invalid {
                        offset: at,
                        what: "routed order",
                    });
                };
                let rev = u16::try_from(r.u32("venue revision")?)
                    .map_err(|_| r.invalid(4, "venue revision"))?;
                let slot = self.restore_order(o, at)?;
                *self.orders.route_mut(slot) = state;
                self.orders.set_venue_rev(slot, rev);
            }
        }
        self.route_cancels.clear();
        if version > VERSION_4 {
            let count = r.count(8 + 4 + 1 + 8, "routed cancels")?;
            if count > super::route::MAX_ROUTE_CANCELS {
                return Err(r.invalid(4, "routed cancels"));
            }
            for _ in 0..count {
                let at = r.position();
                let order = OrderId(r.u64("routed cancel order")?);
                let session = SessionId(r.u32("routed cancel session")?);
                let cl_ord_id = r.cl_ord_id("routed cancel clordid")?;
                let received_ns = r.i64("routed cancel received")?;
                let replace = match r.u8("routed replace")? {
                    0 => None,
                    n @ (1 | 2) => {
                        let price = r.price("routed replace price")?;
                        let qty = r.qty("routed replace qty")?;
                        let tif = if n == 2 { Some(r.tif()?) } else { None };
                        Some((price, qty, tif))
                    }
                    _ => return Err(r.invalid(1, "routed replace")),
                };
                let routed = self
                    .orders
                    .find_by_id(order)
                    .is_some_and(|s| self.orders.route(s).routed());
                let twice = self
                    .route_cancels
                    .iter()
                    .any(|c| c.order == order && c.replace.is_some() == replace.is_some());
                if !routed || twice {
                    return Err(SnapshotError::Invalid {
                        offset: at,
                        what: "routed cancel",
                    });
                }
                self.route_cancels.push(super::route::RouteCancel {
                    order,
                    session,
                    cl_ord_id,
                    received_ns,
                    replace,
                });
            }
        }
        for &(slot, other, at) in &links {
            let pair = self.orders.find_by_id(other).filter(|&s| {
                s != slot && {
                    let (a, b) = (self.orders.get(slot), self.orders.get(s));
                    a.account == b.account && a.instrument == b.instrument && a.side == b.side
                }
            });
            let Some(s) = pair else {
                return Err(SnapshotError::Invalid {
                    offset: at,
                    what: "order list pair",
                });
            };
            self.orders.get_mut(slot).sibling = s;
        }
        // Both orders of every pair name each other.
        for &(slot, _, at) in &links {
            let s = self.orders.get(slot).sibling;
            if self.orders.get(s).sibling != slot {
                return Err(SnapshotError::Invalid {
                    offset: at,
                    what: "order list pair",
                });
            }
        }
        // A working order and its pending order of the same session, naming each other.
        for &(slot, other, at) in &lists {
            let joined = self.orders.find_by_id(other).filter(|&s| {
                let (a, b) = (self.orders.get(slot), self.orders.get(s));
                s != slot
                    && a.pending != b.pending
                    && a.session == b.session
                    && a.account == b.account
                    && a.instrument == b.instrument
            });
            let Some(s) = joined else {
                return Err(SnapshotError::Invalid {
                    offset: at,
                    what: "one-triggers-the-other list",
                });
            };
            if self.orders.list(s) != NIL && self.orders.list(s) != slot {
                return Err(SnapshotError::Invalid {
                    offset: at,
                    what: "one-triggers-the-other list",
                });
            }
            self.orders.link_list(slot, s);
        }
        for &(slot, _, at) in &lists {
            let s = self.orders.list(slot);
            if self.orders.list(s) != slot {
                return Err(SnapshotError::Invalid {
                    offset: at,
                    what: "one-triggers-the-other list",
                });
            }
        }
        let mut listed = 0usize;
        for account in [true, false] {
            let owners = r.count(4, "order lists")?;
            for owner in 0..owners as u32 {
                let n = r.count(8, "order list")?;
                let mut slots = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = OrderId(r.u64("order id")?);
                    slots.push(
                        self.orders
                            .find_by_id(id)
                            .ok_or_else(|| r.invalid(8, "order list entry"))?,
                    );
                }
                if !self.orders.set_owner_list(account, owner, &slots) {
                    return Err(r.invalid(0, "order list"));
                }
                if account {
                    listed += n;
                }
            }
        }
        // Every order is on exactly one account list (and the lists hold no order twice:
        // relinking a slot twice would lose orders, so the count tells).
        if listed != self.orders.len() || self.account_list_total() != self.orders.len() {
            return Err(r.invalid(0, "order lists (do not cover the orders)"));
        }
        Ok(())
    }

    /// Puts an order of the snapshot (read at `at`) into the store, after the checks every
    /// order must pass.
    fn restore_order(&mut self, o: Order, at: usize) -> Result<u32, SnapshotError> {
        let i = o.instrument.0 as usize;
        if i >= self.books.len()
            || !self.books[i].open
            || o.leaves().0 <= 0
            || o.cum.0 < 0
            || o.account.0 as usize >= self.config.accounts.max(1 << 16)
            || o.session.0 as usize >= self.config.sessions.max(1 << 16)
        {
            return Err(SnapshotError::Invalid {
                offset: at,
                what: "resting order",
            });
        }
        if self.orders.is_full() {
            return Err(SnapshotError::Mismatch(
                "more resting orders than engine.max_resting_orders".into(),
            ));
        }
        if self.orders.find_by_id(o.id).is_some() {
            return Err(SnapshotError::Invalid {
                offset: at,
                what: "resting order (id twice)",
            });
        }
        self.orders.reserve_owner(o.account, o.session);
        let tag = self.orders.cl_tag(o.session, &o.cl_ord_id);
        Ok(self.orders.insert(o, tag))
    }

    fn account_list_total(&self) -> usize {
        (0..self.orders.owners(true))
            .map(|a| self.account_orders(AccountId(a)) as usize)
            .sum()
    }
}

fn write_order(w: &mut SnapshotWriter<'_>, o: &Order, orders: &Orders) {
    w.u64(o.id.0);
    w.cl_ord_id(&o.cl_ord_id);
    w.u32(o.session.0);
    w.u32(o.account.0);
    w.u32(o.instrument.0);
    w.u8(side_byte(o.side));
    w.ord_type(o.ord_type);
    w.tif(o.tif);
    w.u8(stp_byte(o.stp));
    // Flags: bit 0 post-only, bit 1 iceberg (its display and tranche end follow the order),
    // bit 2 trailing stop (its distance in bips follows, as a u32), bit 3 one of a
    // one-cancels-the-other pair (the other's order id follows), bit 4 one of a
    // one-triggers-the-other list (the other's order id follows).
    let sibling = orders.sibling_id(o);
    let list = orders.list_id(o);
    w.u8(u8::from(o.post_only)
        | u8::from(o.display.0 != 0) << 1
        | u8::from(o.trailing.is_some()) << 2
        | u8::from(sibling.is_some()) << 3
        | u8::from(list.is_some()) << 4);
    w.i64(o.price.0);
    w.i64(o.qty.0);
    w.i64(o.cum.0);
    w.i64(o.received_ns);
    w.i128(o.notional);
    if o.display.0 != 0 {
        w.i64(o.display.0);
        w.i64(o.tranche_end.0);
    }
    if let Some(t) = o.trailing {
        w.u32(u32::from(t.bips()));
    }
    if let Some(id) = sibling {
        w.u64(id.0);
    }
    if let Some(id) = list {
        w.u64(id.0);
    }
}

/// The other order's id of an order's pair or list.
type Link = Option<OrderId>;

/// An order and, for one of a pair or a list, the other's id.
fn read_order(r: &mut SnapshotReader<'_>) -> Result<(Order, Link, Link), SnapshotError> {
    let mut o = Order {
        id: OrderId(r.u64("order id")?),
        cl_ord_id: r.cl_ord_id("clordid")?,
        session: SessionId(r.u32("session")?),
        account: AccountId(r.u32("account")?),
        instrument: InstrumentId(r.u32("instrument")?),
        side: r.side()?,
        ord_type: r.ord_type()?,
        tif: r.tif()?,
        stp: r.stp()?,
        post_only: false,
        untriggered: false,
        price: Price(0),
        qty: Qty(0),
        cum: Qty(0),
        received_ns: 0,
        notional: 0,
        display: Qty(0),
        tranche_end: Qty(0),
        trailing: None,
        trail: TrailPhase::Arming,
        sibling: NIL,
        pending: false,
    };
    let at = r.position();
    let flags = r.u8("order flags")?;
    if flags > 31 {
        return Err(SnapshotError::Invalid {
            offset: at,
            what: "order flags",
        });
    }
    o.post_only = flags & 1 != 0;
    o.price = r.price("price")?;
    o.qty = r.qty("qty")?;
    o.cum = r.qty("cum qty")?;
    o.received_ns = r.i64("received")?;
    o.notional = r.i128("fill notional")?;
    if flags & 2 != 0 {
        o.display = r.qty("iceberg display qty")?;
        o.tranche_end = r.qty("iceberg tranche end")?;
        // What the matcher relies on: a part shown, never more than the display.
        let shown = o.tranche_end.0 - o.cum.0;
        if o.display.0 <= 0 || shown <= 0 || shown > o.display.0 {
            return Err(SnapshotError::Invalid {
                offset: at,
                what: "iceberg order",
            });
        }
    }
    if flags & 4 != 0 {
        let bips = r.u32("trailing delta")?;
        o.trailing = u16::try_from(bips).ok().and_then(TrailingDelta::new);
        if o.trailing.is_none() {
            return Err(r.invalid(4, "trailing delta"));
        }
    }
    let sibling = if flags & 8 != 0 {
        Some(OrderId(r.u64("order list pair")?))
    } else {
        None
    };
    let list = if flags & 16 != 0 {
        Some(OrderId(r.u64("one-triggers-the-other list")?))
    } else {
        None
    };
    Ok((o, sibling, list))
}
