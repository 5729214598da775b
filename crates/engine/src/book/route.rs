//! Orders routed to a venue: the instrument's orders pass the same risk checks, then wait in
//! the order store (in no level) while its venue connector works them at the venue.
//!
//! - A new order goes to the connector as a [`RouteRequest::New`] event addressed to the
//!   connector's slot; the client hears `Pending(New)` (FIX PendingNew) as it leaves, then
//!   `New` when the venue accepts, `Rejected(VenueRejected)` when it refuses. A client's
//!   cancel or replace is acknowledged the same way (`Pending(Cancel)`, `Pending(Replace)`).
//! - A cancel (the client's, a mass cancel, the kill switch, cancel-on-disconnect) goes to
//!   the venue as a [`RouteRequest::Cancel`]; the order ends only when the venue says it is
//!   cancelled, so a fill on the way is never lost. A client's cancel waits here for that
//!   answer (a bounded table), to report `Canceled` or `CancelRejected` under its ClOrdID.
//! - A cancel/replace goes to the venue as a [`RouteRequest::Replace`] (the order's ClOrdID
//!   there is its OrderID, then `<OrderID>-<n>` after its n-th replace); the order changes,
//!   and the client hears `Replaced`, when the venue confirms; a cancel asked for meanwhile
//!   goes once the replace is answered, under the ClOrdID it left.
//! - The venue's fills update the order and the risk state as fills on a book do (one side
//!   only: the other is at the venue). A fill counts only if its cumulative quantity is above
//!   the order's, so a report the venue resends after a reconnect changes nothing.

use portcullis_types::{
    CancelOrder, ClOrdId, Event, EventKind, NewOrder, OrderId, Price, Qty, RejectReason,
    ReplaceOrder, RouteRequest, SessionId, TimeInForce, VenueReport, VenueReportKind,
};

use portcullis_risk::RiskChecked;

use super::{done, report, working, Feedback, Matcher, OrderHandle};
use crate::orders::{Order, Route};

/// Client cancels of routed orders that can wait for their venues' answers at once; one more
/// is refused as "server busy".
pub(crate) const MAX_ROUTE_CANCELS: usize = 4096;

/// A client's cancel (or cancel/replace) of a routed order, waiting for the venue's answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteCancel {
    pub order: OrderId,
    pub session: SessionId,
    pub cl_ord_id: ClOrdId,
    pub received_ns: i64,
    /// A replace's new price, quantity and time in force (if it changes it); `None`: a cancel.
    pub replace: Option<(Price, Qty, Option<TimeInForce>)>,
}

/// The ClOrdID at the venue of order `id` after `rev` replaces: `41`, then `41-1`, `41-2`...
pub(crate) fn venue_cl_ord_id(id: OrderId, rev: u16) -> ClOrdId {
    let text = if rev == 0 {
        id.0.to_string()
    } else {
        format!("{}-{rev}", id.0)
    };
    // At most 16 + 1 + 5 visible characters: always a valid ClOrdID.
    ClOrdId::new(text.as_bytes()).unwrap_or(ClOrdId::EMPTY)
}

/// Whether a venue can be sent `o`: a limit or market order, good till cancel, immediate or
/// cancel, fill or kill or for the day, post-only or not; not a stop, iceberg, trailing stop,
/// good-till-date order or an order of a list (those need the engine's own book).
pub(crate) fn routable(o: &NewOrder) -> bool {
    o.ord_type.stop_px().is_none()
        && o.display_qty.0 == 0
        && o.trailing.is_none()
        && o.tif.expire_ns().is_none()
        && !o.pending
        && o.oco_with.is_none()
        && o.triggers.is_none()
}

impl Matcher {
    /// Stores a routed order that passed every check and asks its venue's connector to send it.
    pub(super) fn route_new(
        &mut self,
        o: Order,
        cl_tag: u32,
        venue: SessionId,
        now: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        let e = self.route_event(&o, RouteRequest::New, venue, now);
        let pending = report(
            &o,
            EventKind::Pending(RouteRequest::New),
            self.ids.exec(),
            now,
        );
        let slot = self.orders.insert(o, cl_tag);
        *self.orders.route_mut(slot) = Route::SENT;
        out(e);
        out(pending);
    }

    /// The client's report that its cancel or replace `request` (ClOrdID `cl_ord_id`, made by
    /// `session`) of `o` is on its way to the venue.
    fn pending_event(
        &mut self,
        o: &Order,
        request: RouteRequest,
        session: SessionId,
        cl_ord_id: ClOrdId,
        received_ns: i64,
        now: i64,
    ) -> Event {
        let mut e = report(o, EventKind::Pending(request), self.ids.exec(), now);
        e.session = session;
        e.cl_ord_id = cl_ord_id;
        e.orig_cl_ord_id = o.cl_ord_id;
        e.received_ns = received_ns;
        e
    }

    /// A route request about `o` for the connector in slot `venue` (for a new order, with
    /// its ClOrdID at the venue).
    fn route_event(
        &mut self,
        o: &Order,
        request: RouteRequest,
        venue: SessionId,
        now: i64,
    ) -> Event {
        let mut e = report(o, EventKind::Route(request), self.ids.exec(), now);
        e.session = venue;
        if request == RouteRequest::New {
            e.cl_ord_id = venue_cl_ord_id(o.id, 0);
        }
        e
    }

    /// Asks the venue to cancel the routed order in `slot`; a client's request (`requester`)
    /// waits for the answer. `CancelPending` if a client's cancel is already on its way,
    /// `ServerBusy` if the table of waiting cancels is full.
    pub(super) fn route_cancel(
        &mut self,
        slot: u32,
        requester: Option<&CancelOrder>,
        now: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> Result<(), RejectReason> {
        let o = *self.orders.get(slot);
        // No route any more (the config changed across a restart): no venue to ask.
        let Some(venue) = self.route_of(o.instrument) else {
            return Err(RejectReason::UnknownOrder);
        };
        if let Some(r) = requester {
            let cancelling = self
                .route_cancels
                .iter()
                .any(|c| c.order == o.id && c.replace.is_none());
            if cancelling {
                return Err(RejectReason::CancelPending);
            }
            if self.route_cancels.len() >= MAX_ROUTE_CANCELS {
                return Err(RejectReason::ServerBusy);
            }
            self.route_cancels.push(RouteCancel {
                order: o.id,
                session: r.session,
                cl_ord_id: r.cl_ord_id,
                received_ns: r.received_ns,
                replace: None,
            });
        }
        // One cancel at the venue at a time: a later one would only be refused there. While
        // a replace is on its way, the cancel waits for its answer (which names the order).
        let route = self.orders.route(slot);
        if !route.cancel_sent() {
            self.orders.route_mut(slot).set_cancel_sent(true);
            if !route.replace_sent() {
                self.send_route_cancel(slot, venue, now, out);
            }
        }
        if let Some(r) = requester {
            let (session, cl, received) = (r.session, r.cl_ord_id, r.received_ns);
            out(self.pending_event(&o, RouteRequest::Cancel, session, cl, received, now));
        }
        Ok(())
    }

    fn send_route_cancel(
        &mut self,
        slot: u32,
        venue: SessionId,
        now: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        let o = *self.orders.get(slot);
        let mut e = self.route_event(&o, RouteRequest::Cancel, venue, now);
        e.orig_cl_ord_id = venue_cl_ord_id(o.id, self.orders.venue_rev(slot));
        out(e);
    }

    /// Asks the venue to replace the routed order `h` on a checked request (its price
    /// resolved): `Replaced` follows when the venue confirms. The error is the reason for an
    /// OrderCancelReject and changes nothing.
    pub fn replace_routed(
        &mut self,
        h: OrderHandle,
        req: RiskChecked<ReplaceOrder>,
        now_ns: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> Result<(), RejectReason> {
        let slot = self.resolve(h).ok_or(RejectReason::UnknownOrder)?;
        self.route_replace(slot, req.get(), now_ns, out)
    }

    /// Asks the venue to replace the routed order in `slot` as `req` says (its price already
    /// resolved); the order changes when the venue confirms. `CancelPending` while a cancel or
    /// replace of it is on its way; `Unsupported` for a good-till-date time in force.
    fn route_replace(
        &mut self,
        slot: u32,
        req: &ReplaceOrder,
        now: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) -> Result<(), RejectReason> {
        let o = *self.orders.get(slot);
        let Some(venue) = self.route_of(o.instrument) else {
            return Err(RejectReason::UnknownOrder);
        };
        let route = self.orders.route(slot);
        if route.cancel_sent() || route.replace_sent() {
            return Err(RejectReason::CancelPending);
        }
        if req.qty.0 <= o.cum.0 {
            return Err(RejectReason::QtyTooSmall);
        }
        if req.tif.is_some_and(|t| t.expire_ns().is_some()) {
            return Err(RejectReason::Unsupported);
        }
        if req.cl_ord_id != o.cl_ord_id
            && self.orders.find_by_cl(o.session, &req.cl_ord_id).is_some()
        {
            return Err(RejectReason::DuplicateClOrdId);
        }
        if self.route_cancels.len() >= MAX_ROUTE_CANCELS {
            return Err(RejectReason::ServerBusy);
        }
        let c = RouteCancel {
            order: o.id,
            session: req.session,
            cl_ord_id: req.cl_ord_id,
            received_ns: req.received_ns,
            replace: Some((req.price, req.qty, req.tif)),
        };
        self.route_cancels.push(c);
        self.orders.route_mut(slot).set_replace_sent(true);
        self.send_route_replace(slot, &c, venue, now, out);
        let (session, cl, received) = (req.session, req.cl_ord_id, req.received_ns);
        out(self.pending_event(&o, RouteRequest::Replace, session, cl, received, now));
        Ok(())
    }

    fn send_route_replace(
        &mut self,
        slot: u32,
        c: &RouteCancel,
        venue: SessionId,
        now: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        let Some((price, qty, tif)) = c.replace else {
            return;
        };
        let o = *self.orders.get(slot);
        let rev = self.orders.venue_rev(slot);
        let mut e = self.route_event(&o, RouteRequest::Replace, venue, now);
        e.price = price;
        e.qty = qty;
        e.tif = tif.unwrap_or(o.tif);
        e.leaves_qty = Qty(qty.0 - o.cum.0);
        e.cl_ord_id = venue_cl_ord_id(o.id, rev.saturating_add(1));
        e.orig_cl_ord_id = venue_cl_ord_id(o.id, rev);
        out(e);
    }

    /// Asks the venue in slot `venue` again for what it may not have: every order it has not
    /// accepted yet (sent again: a venue refuses a ClOrdID it has), and every cancel on its way.
    /// After its connector's Logon; scans the store and allocates the list (rare, off the
    /// order path). In order id order, as replaying the journal elsewhere must repeat it.
    pub fn route_sync(
        &mut self,
        venue: SessionId,
        now: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        let mut slots: Vec<(OrderId, u32)> = (0..self.orders.high_water())
            .filter(|&slot| {
                self.orders.is_live(slot)
                    && self.orders.route(slot).routed()
                    && self.route_of(self.orders.get(slot).instrument) == Some(venue)
            })
            .map(|slot| (self.orders.get(slot).id, slot))
            .collect();
        slots.sort_unstable();
        for (id, slot) in slots {
            let route = self.orders.route(slot);
            if !route.acked() {
                let o = *self.orders.get(slot);
                out(self.route_event(&o, RouteRequest::New, venue, now));
            }
            if route.replace_sent() {
                let pending = self
                    .route_cancels
                    .iter()
                    .find(|c| c.order == id && c.replace.is_some())
                    .copied();
                if let Some(c) = pending {
                    self.send_route_replace(slot, &c, venue, now, out);
                }
            } else if route.cancel_sent() {
                self.send_route_cancel(slot, venue, now, out);
            }
        }
    }

    /// Takes out the client cancel waiting for `order`'s venue, if any.
    fn take_route_cancel(&mut self, order: OrderId) -> Option<RouteCancel> {
        let k = self
            .route_cancels
            .iter()
            .position(|c| c.order == order && c.replace.is_none())?;
        Some(self.route_cancels.swap_remove(k))
    }

    /// Takes out the client replace waiting for `order`'s venue, if any.
    fn take_route_replace(&mut self, order: OrderId) -> Option<RouteCancel> {
        let k = self
            .route_cancels
            .iter()
            .position(|c| c.order == order && c.replace.is_some())?;
        Some(self.route_cancels.swap_remove(k))
    }

    /// Applies what a venue reported about a routed order; a report about an order that is not
    /// (or no longer) an open routed order, or a fill the order already has, changes nothing.
    pub fn on_venue_report(
        &mut self,
        r: &VenueReport,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        let Some(slot) = self.orders.find_by_id(r.order_id) else {
            return;
        };
        let instrument = self.orders.get(slot).instrument;
        if !self.orders.route(slot).routed() || self.route_of(instrument) != Some(r.venue) {
            return;
        }
        match r.kind {
            VenueReportKind::Accepted => self.venue_accepted(slot, now, out),
            VenueReportKind::Fill => self.venue_fill(slot, r, now, fb, out),
            VenueReportKind::Canceled => {
                self.venue_ended(slot, EventKind::Canceled, now, fb, out);
            }
            VenueReportKind::Expired => self.venue_ended(slot, EventKind::Expired, now, fb, out),
            VenueReportKind::Rejected => {
                let kind = if self.orders.route(slot).acked() {
                    // Refused after it was accepted: it no longer works there.
                    EventKind::Canceled
                } else {
                    EventKind::Rejected(RejectReason::VenueRejected)
                };
                self.venue_ended(slot, kind, now, fb, out);
            }
            VenueReportKind::CancelRejected => {
                self.orders.route_mut(slot).set_cancel_sent(false);
                if let Some(c) = self.take_route_cancel(r.order_id) {
                    let o = *self.orders.get(slot);
                    self.refuse_cancel(&c, &o, RejectReason::VenueRejected, false, now, out);
                }
            }
            VenueReportKind::Replaced => self.venue_replaced(slot, r.venue, now, fb, out),
            VenueReportKind::ReplaceRejected => {
                if !self.orders.route(slot).replace_sent() {
                    return;
                }
                self.orders.route_mut(slot).set_replace_sent(false);
                if let Some(c) = self.take_route_replace(r.order_id) {
                    let o = *self.orders.get(slot);
                    self.refuse_cancel(&c, &o, RejectReason::VenueRejected, false, now, out);
                }
                self.send_deferred_cancel(slot, r.venue, now, out);
            }
        }
    }

    /// A cancel asked for while a replace was on its way goes now that it is answered.
    fn send_deferred_cancel(
        &mut self,
        slot: u32,
        venue: SessionId,
        now: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        if self.orders.route(slot).cancel_sent() {
            self.send_route_cancel(slot, venue, now, out);
        }
    }

    /// The venue replaced the order as the waiting request asked: the order takes its new
    /// price, quantity, time in force and client ClOrdID, the risk state follows, and the
    /// requester hears `Replaced` (the order's own session too, if another asked).
    fn venue_replaced(
        &mut self,
        slot: u32,
        venue: SessionId,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        if !self.orders.route(slot).replace_sent() {
            return;
        }
        self.orders.route_mut(slot).set_replace_sent(false);
        let old = *self.orders.get(slot);
        let Some(c) = self.take_route_replace(old.id) else {
            return;
        };
        let Some((price, qty, tif)) = c.replace else {
            return;
        };
        let rev = self.orders.venue_rev(slot).saturating_add(1);
        self.orders.set_venue_rev(slot, rev);
        if qty.0 > old.cum.0 {
            let o = self.orders.get_mut(slot);
            o.price = price;
            o.qty = qty;
            if let Some(t) = tif.filter(|&t| t != old.tif) {
                self.orders.set_tif(slot, t);
            }
            if c.cl_ord_id != old.cl_ord_id {
                self.orders.rekey_cl(slot, c.cl_ord_id);
            }
            fb.on_replaced(&working(&old), price, qty);
            let mut e = report(
                self.orders.get(slot),
                EventKind::Replaced,
                self.ids.exec(),
                now,
            );
            e.session = c.session;
            e.orig_cl_ord_id = old.cl_ord_id;
            e.received_ns = c.received_ns;
            out(e);
            if c.session != old.session {
                out(Event {
                    session: old.session,
                    ..e
                });
            }
        } else {
            // Filled past the new quantity meanwhile: nothing left to change here.
            self.refuse_cancel(&c, &old, RejectReason::QtyTooSmall, false, now, out);
        }
        self.send_deferred_cancel(slot, venue, now, out);
    }

    /// Answers the client's cancel `c` of order `o` with a `CancelRejected` for `reason`, the
    /// order's state as it is (`ended`: no longer working).
    fn refuse_cancel(
        &mut self,
        c: &RouteCancel,
        o: &Order,
        reason: RejectReason,
        ended: bool,
        now: i64,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        let kind = EventKind::CancelRejected {
            replace: c.replace.is_some(),
            reason,
        };
        let mut e = if ended {
            done(o, kind, self.ids.exec(), now)
        } else {
            report(o, kind, self.ids.exec(), now)
        };
        e.session = c.session;
        e.cl_ord_id = c.cl_ord_id;
        e.orig_cl_ord_id = o.cl_ord_id;
        e.received_ns = c.received_ns;
        out(e);
    }

    /// The venue works the order: the client hears `New` (once).
    fn venue_accepted(&mut self, slot: u32, now: i64, out: &mut (impl FnMut(Event) + ?Sized)) {
        if self.orders.route(slot).acked() {
            return;
        }
        self.orders.route_mut(slot).set_acked();
        let o = *self.orders.get(slot);
        out(report(&o, EventKind::New, self.ids.exec(), now));
    }

    fn venue_fill(
        &mut self,
        slot: u32,
        r: &VenueReport,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        let before = *self.orders.get(slot);
        // The cumulative quantity is the report's identity; beyond the order's quantity the
        // venue is wrong, and the order is simply complete.
        let cum = r.cum_qty.min(before.qty);
        if cum <= before.cum || r.last_px.0 <= 0 {
            return;
        }
        // Some venues fill an immediate order without accepting it first.
        self.venue_accepted(slot, now, out);
        let qty = Qty(cum.0 - before.cum.0);
        fb.on_fill(&working(&before), r.last_px, qty);
        let o = self.orders.get_mut(slot);
        o.cum = cum;
        o.notional += i128::from(r.last_px.0) * i128::from(qty.0);
        let o = *o;
        let filled = o.cum == o.qty;
        let mut e = report(
            &o,
            if filled {
                EventKind::Fill
            } else {
                EventKind::PartialFill
            },
            self.ids.exec(),
            now,
        );
        e.last_px = r.last_px;
        e.last_qty = qty;
        e.trade_id = self.ids.trade();
        out(e);
        if filled {
            self.orders.remove(slot);
            // A client cancel on its way came too late.
            for c in [self.take_route_cancel(o.id), self.take_route_replace(o.id)]
                .into_iter()
                .flatten()
            {
                self.refuse_cancel(&c, &o, RejectReason::UnknownOrder, true, now, out);
            }
        }
    }

    /// The venue ended the order: reported to the client whose cancel caused it (and to the
    /// order's own session, under the same ExecID, if that is another), else to the order's
    /// session.
    fn venue_ended(
        &mut self,
        slot: u32,
        kind: EventKind,
        now: i64,
        fb: &mut impl Feedback,
        out: &mut (impl FnMut(Event) + ?Sized),
    ) {
        let o = self.orders.remove(slot);
        let mut e = done(&o, kind, self.ids.exec(), now);
        let requester = self.take_route_cancel(o.id);
        match requester {
            Some(c) if kind == EventKind::Canceled => {
                let owner = (c.session != o.session).then_some(e);
                e.session = c.session;
                e.cl_ord_id = c.cl_ord_id;
                e.orig_cl_ord_id = o.cl_ord_id;
                e.received_ns = c.received_ns;
                out(e);
                if let Some(owner) = owner {
                    out(owner);
                }
            }
            Some(c) => {
                // Ended otherwise while a client's cancel was on its way: both hear it.
                out(e);
                self.refuse_cancel(&c, &o, RejectReason::UnknownOrder, true, now, out);
            }
            None => out(e),
        }
        if let Some(c) = self.take_route_replace(o.id) {
            self.refuse_cancel(&c, &o, RejectReason::UnknownOrder, true, now, out);
        }
        fb.on_order_closed(&working(&o));
    }
}
