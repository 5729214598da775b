//! The account-wide part of the WebSocket user data streams: one reader of the journal hands
//! each subscribed connection the events of its account that other connections and FIX
//! sessions caused (a connection's own orders' events come from its own egress queue).
//!
//! One thread follows the journal up to what the journal thread has acknowledged (durable
//! events, in the core's order), as the history and the drop copy do, so the core's hot path
//! does nothing for it and however many connections subscribe the journal is read and
//! decrypted once. It starts with the first subscription (a server whose clients never
//! subscribe runs no extra thread). Each subscriber has a bounded queue: one that does not
//! keep up is told it lost events (its stream ends) rather than buffering without bound.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use atomic_waker::AtomicWaker;
use portcullis_journal::JournalRecord;
use portcullis_types::{AccountId, Event, SessionId};
use tracing::{info, warn};

use crate::drop_copy::DropCopyFeed;

/// Events queued per subscriber at most; beyond, the subscriber has lost events.
pub const QUEUE_LIMIT: usize = 4096;

/// One connection's subscription: its account's events of other sessions, queued.
#[derive(Debug)]
pub struct Subscriber {
    /// The connection's own session slot: its events come from its egress queue.
    slot: SessionId,
    queue: Mutex<VecDeque<Event>>,
    waker: AtomicWaker,
    /// More events came than the queue holds: some are lost, the stream must end.
    overflowed: AtomicBool,
    /// The subscription ended: the reader forgets it.
    closed: AtomicBool,
}

impl Subscriber {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Event>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the connection's task to be woken when events come; true if some are there.
    pub fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> bool {
        // Register first, then look: a push between the two still finds the waker.
        self.waker.register(cx.waker());
        !self.lock().is_empty() || self.overflowed.load(Ordering::Acquire)
    }

    /// Takes the queued events.
    pub fn take(&self, out: &mut Vec<Event>) {
        out.extend(self.lock().drain(..));
    }

    /// True once events were lost (the queue was full).
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    fn push(&self, e: Event) {
        let mut q = self.lock();
        if q.len() >= QUEUE_LIMIT {
            self.overflowed.store(true, Ordering::Release);
        } else {
            q.push_back(e);
        }
        drop(q);
        self.waker.wake();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
    }
}

/// A connection's handle on its subscription; dropping it ends the subscription.
#[derive(Debug)]
pub struct Subscription(Arc<Subscriber>);

impl std::ops::Deref for Subscription {
    type Target = Subscriber;
    fn deref(&self) -> &Subscriber {
        &self.0
    }
}

/// The subscribers and the reader thread; see the module docs.
#[derive(Debug)]
pub struct UserStreams {
    /// The journal; `None` in unit tests, where events are delivered by hand.
    feed: Option<Arc<DropCopyFeed>>,
    subscribers: Mutex<HashMap<AccountId, Vec<Arc<Subscriber>>>>,
    started: AtomicBool,
}

impl UserStreams {
    /// The streams of the journal `feed` follows.
    pub fn new(feed: Arc<DropCopyFeed>) -> Arc<Self> {
        Arc::new(Self {
            feed: Some(feed),
            subscribers: Mutex::new(HashMap::new()),
            started: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<AccountId, Vec<Arc<Subscriber>>>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes the connection of session slot `slot` to `account`'s events of other
    /// sessions from now on; starts the reader with the first subscription.
    pub fn subscribe(self: &Arc<Self>, account: AccountId, slot: SessionId) -> Subscription {
        let sub = Arc::new(Subscriber {
            slot,
            queue: Mutex::new(VecDeque::new()),
            waker: AtomicWaker::new(),
            overflowed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        self.lock().entry(account).or_default().push(sub.clone());
        if let Some(feed) = self
            .feed
            .clone()
            .filter(|_| !self.started.swap(true, Ordering::AcqRel))
        {
            let streams = self.clone();
            let runtime = tokio::runtime::Handle::current();
            let spawned = std::thread::Builder::new()
                .name("portcullis-user-streams".into())
                .spawn(move || streams.run(&feed, &runtime));
            if let Err(e) = spawned {
                warn!(error = %e, "user data streams: cannot start the journal reader; streams carry the connection's own orders only");
            }
        }
        Subscription(sub)
    }

    /// Hands one event to its account's subscribers other than the session that caused it.
    fn deliver(&self, e: &Event) {
        let mut subs = self.lock();
        let Some(list) = subs.get_mut(&e.account) else {
            return;
        };
        list.retain(|s| !s.closed.load(Ordering::Acquire));
        for s in list.iter() {
            if s.slot != e.session {
                s.push(*e);
            }
        }
    }

    /// The reader: from the journal's acknowledged end when it starts, each newly
    /// acknowledged event to its subscribers, until the journal closes.
    fn run(&self, feed: &DropCopyFeed, runtime: &tokio::runtime::Handle) {
        let mut acknowledged = feed.acknowledged();
        let mut at = *acknowledged.borrow_and_update();
        let mut tail = match feed.open_tail(at) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "user data streams: cannot follow the journal; streams carry the connection's own orders only");
                return;
            }
        };
        info!("user data streams: following the journal");
        let mut last: Option<Event> = None;
        let mut reopened_at = None;
        loop {
            let end = *acknowledged.borrow_and_update();
            let mut empty_reads = 0;
            while tail.position().0 < end {
                match tail.next_decoded() {
                    Ok(Some((seq, record))) => {
                        at = seq.0;
                        if let JournalRecord::Event(e) = record {
                            // A cancel or replace from another session is reported to both
                            // under one ExecID: the first (the requester's) view is handed on.
                            let second = last.is_some_and(|p| e.is_second_view_of(&p));
                            last = Some(e);
                            if !second {
                                self.deliver(&e);
                            }
                        }
                    }
                    // Acknowledged but not readable yet (a segment being started): again
                    // shortly, for a while.
                    Ok(None) => {
                        empty_reads += 1;
                        if empty_reads > 1000 {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    // A segment under a master key rotated since the tail was opened: follow
                    // the journal again from here, once.
                    Err(e) => match feed.open_tail(at) {
                        Ok(t) if reopened_at != Some(at) => {
                            reopened_at = Some(at);
                            tail = t;
                        }
                        _ => {
                            warn!(error = %e, "user data streams: cannot read the journal; streams carry the connection's own orders only");
                            return;
                        }
                    },
                }
            }
            if runtime.block_on(acknowledged.changed()).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_types::{
        ClOrdId, EventKind, InstrumentId, OrdType, OrderDetails, OrderId, Price, Qty, Side,
        TimeInForce, TradeId,
    };

    fn detached() -> Arc<UserStreams> {
        Arc::new(UserStreams {
            feed: None,
            subscribers: Mutex::new(HashMap::new()),
            started: AtomicBool::new(false),
        })
    }

    fn event(account: u32, session: u32, exec_id: u64) -> Event {
        Event {
            session: SessionId(session),
            account: AccountId(account),
            instrument: InstrumentId(0),
            kind: EventKind::New,
            order_id: OrderId(exec_id),
            cl_ord_id: ClOrdId::EMPTY,
            orig_cl_ord_id: ClOrdId::EMPTY,
            side: Side::Buy,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            price: Price(1),
            qty: Qty(1),
            cum_qty: Qty(0),
            leaves_qty: Qty(1),
            avg_px: Price(0),
            last_px: Price(0),
            last_qty: Qty(0),
            trade_id: TradeId(0),
            exec_id,
            ts_ns: 0,
            received_ns: 0,
            details: OrderDetails::default(),
        }
    }

    #[test]
    fn a_subscriber_gets_its_accounts_events_of_other_sessions_only() {
        let streams = detached();
        let a = streams.subscribe(AccountId(1), SessionId(10));
        let b = streams.subscribe(AccountId(2), SessionId(11));
        for e in [
            event(1, 10, 1),
            event(1, 12, 2),
            event(2, 12, 3),
            event(3, 12, 4),
        ] {
            streams.deliver(&e);
        }
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        a.take(&mut got_a);
        b.take(&mut got_b);
        assert_eq!(got_a.iter().map(|e| e.exec_id).collect::<Vec<_>>(), [2]);
        assert_eq!(got_b.iter().map(|e| e.exec_id).collect::<Vec<_>>(), [3]);
        // Dropped: forgotten at the next event of its account.
        drop(a);
        streams.deliver(&event(1, 12, 5));
        assert!(streams.lock()[&AccountId(1)].is_empty());
    }

    #[test]
    fn a_subscriber_that_does_not_keep_up_is_told_it_lost_events() {
        let streams = detached();
        let s = streams.subscribe(AccountId(1), SessionId(10));
        for i in 0..QUEUE_LIMIT as u64 {
            streams.deliver(&event(1, 12, i + 1));
        }
        assert!(!s.overflowed());
        streams.deliver(&event(1, 12, 1_000_000));
        assert!(s.overflowed());
        let mut got = Vec::new();
        s.take(&mut got);
        assert_eq!(got.len(), QUEUE_LIMIT);
    }
}
