//! Orders routed to a venue: the instrument's orders pass the same risk checks, then wait in
//! the order store (in no level) while its venue connector works them at the venue.
//!
//! - A new order goes to the connector as a [`RouteRequest::New`] event addressed to the
//!   connector's slot; the client hears nothing until the venue answers: `New` when it
//!   accepts, `Rejected(VenueRejected)` when it refuses.
//! - A cancel (the client's, a mass cancel, the kill switch, cancel-on-disconnect) goes to
//!   the venue as a [`RouteRequest::Cancel`]; the order ends only when the venue says it is
//!   cancelled, so a fill on the way is never lost. A client's cancel waits here for that
//!   answer (a bounded table), to report `Canceled` or `CancelRejected` under its ClOrdID.
//! - The venue's fills update the order and the risk state as fills on a book do (one side
//!   only: the other is at the venue). A fill counts only if its cumulative quantity is above
//!   the order's, so a report the venue resends after a reconnect changes nothing.

use portcullis_types::{
    CancelOrder, ClOrdId, Event, EventKind, NewOrder, OrderId, Qty, RejectReason, RouteRequest,
    SessionId, VenueReport, VenueReportKind,
};

use super::{done, report, working, Feedback, Matcher};
use crate::orders::{Order, Route};

/// Client cancels of routed orders that can wait for their venues' answers at once; one more
/// is refused as "server busy".
pub(crate) const MAX_ROUTE_CANCELS: usize = 4096;

/// A client's cancel of a routed order, waiting for the venue's answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteCancel {
    pub order: OrderId,
    pub session: SessionId,
    pub cl_ord_id: ClOrdId,
    pub received_ns: i64,
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
        let mut e = report(
            &o,
            EventKind::Route(RouteRequest::New),
            self.ids.exec(),
            now,
        );
        e.session = venue;
        let slot = self.orders.insert(o, cl_tag);
        *self.orders.route_mut(slot) = Route::SENT;
        out(e);
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
            if self.route_cancels.iter().any(|c| c.order == o.id) {
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
            });
        }
        // One cancel at the venue at a time: a later one would only be refused there.
        if !self.orders.route(slot).cancel_sent() {
            self.orders.route_mut(slot).set_cancel_sent(true);
            let mut e = report(
                &o,
                EventKind::Route(RouteRequest::Cancel),
                self.ids.exec(),
                now,
            );
            e.session = venue;
            out(e);
        }
        Ok(())
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
        for (_, slot) in slots {
            let route = self.orders.route(slot);
            let o = *self.orders.get(slot);
            let requests = [
                (!route.acked(), RouteRequest::New),
                (route.cancel_sent(), RouteRequest::Cancel),
            ];
            for (again, request) in requests {
                if again {
                    let mut e = report(&o, EventKind::Route(request), self.ids.exec(), now);
                    e.session = venue;
                    out(e);
                }
            }
        }
    }

    /// Takes out the client cancel waiting for `order`'s venue, if any.
    fn take_route_cancel(&mut self, order: OrderId) -> Option<RouteCancel> {
        let k = self.route_cancels.iter().position(|c| c.order == order)?;
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
        }
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
            replace: false,
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
            if let Some(c) = self.take_route_cancel(o.id) {
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
        fb.on_order_closed(&working(&o));
    }
}
