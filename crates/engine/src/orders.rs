//! The resting-order store shared by every book: a pre-allocated slab of order nodes and the
//! indexes that find an order without allocating.
//!
//! - **Slab.** Nodes live in one `Vec` reserved once for the configured maximum of resting
//!   orders; a freed node goes on an intrusive free list and is reused, so adding and removing
//!   orders never touches the allocator. Nodes are addressed by `u32` slot (half the size of a
//!   pointer, and no lifetimes or `unsafe`). One store for all instruments instead of one per
//!   book: thousands of option books would each have to reserve for their own worst case.
//! - **Intrusive lists.** Each node carries three doubly linked lists by slot: the FIFO of its
//!   price level (linked by the book), its account's orders (mass cancel, kill switch) and its
//!   session's orders (cancel-on-disconnect). Unlinking is O(1) and allocation-free, and each
//!   bulk cancel visits only the orders concerned.
//! - **Indexes.** `OrderId → slot` and `(session, ClOrdID) → slot` are open-addressing tables
//!   with linear probing and backward-shift deletion, sized once to at least twice the slab
//!   (load factor ≤ ½): no tombstones, so no rehash and no allocation ever, and probe sequences
//!   stay short. Entries hold a 32-bit hash tag and the slot; keys are compared on the node, so
//!   an entry is 8 bytes. Client order ids are client-chosen, so they are hashed with a
//!   randomly keyed SipHash (std's `RandomState`) to keep crafted collisions from lengthening
//!   probes; engine order ids are sequential and use a multiplicative hash.
//! - **Expiries.** Good-till-date orders are in an indexed binary min-heap of slots keyed on
//!   (expiry time, order id), reserved for the whole slab; each node knows its heap position,
//!   so the next expiry is one read and a cancel or fill takes its order out in O(log n)
//!   (a lazy heap would keep dead entries of cancelled orders until their far expiry).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use portcullis_types::{
    prefetch, AccountId, ClOrdId, InstrumentId, OrdType, OrderId, Price, Qty, SessionId, Side,
    StpMode, TimeInForce, TrailingDelta,
};

/// "No slot": the end of a list, an empty index entry.
pub(crate) const NIL: u32 = u32::MAX;

/// A working order's state, as the book and the reports need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Order {
    pub id: OrderId,
    pub cl_ord_id: ClOrdId,
    pub session: SessionId,
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub side: Side,
    pub ord_type: OrdType,
    pub tif: TimeInForce,
    pub stp: Option<StpMode>,
    pub post_only: bool,
    /// A stop order waiting for its trigger: in its book's stop list, in no price level.
    pub untriggered: bool,
    pub price: Price,
    pub qty: Qty,
    pub cum: Qty,
    /// Σ fill price × fill qty, for the average price; `i128` so it cannot overflow.
    pub notional: i128,
    pub received_ns: i64,
    /// An iceberg's displayed quantity; `Qty(0)` for an order shown whole.
    pub display: Qty,
    /// An iceberg's filled quantity at which its shown part is used up and the next part is
    /// shown at the back of its level (a cumulative quantity, so a fill needs no second
    /// counter).
    pub tranche_end: Qty,
    /// A trailing stop's distance; while it waits (`untriggered`) it is on its book's
    /// trailing list, not a stop list, in the phase `trail`.
    pub trailing: Option<TrailingDelta>,
    /// A waiting trailing stop's phase.
    pub trail: TrailPhase,
    /// The other order of its one-cancels-the-other pair (its slot), `NIL` if none.
    pub sibling: u32,
    /// A pending order of a one-triggers-the-other list: in the store only (no level, no
    /// stop list) until its working order fills completely.
    pub pending: bool,
}

/// Where a routed order is with its venue; the default: not routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Route(u8);

impl Route {
    const ROUTED: u8 = 1;
    const ACKED: u8 = 2;
    const CANCEL_SENT: u8 = 4;
    const REPLACE_SENT: u8 = 8;

    /// A routed order, neither accepted nor being cancelled yet.
    pub const SENT: Route = Route(Self::ROUTED);

    /// Routed to a venue: in the store only (no level); its venue's reports fill and end it.
    pub fn routed(self) -> bool {
        self.0 & Self::ROUTED != 0
    }

    /// The venue has accepted it (its `New` went to the client).
    pub fn acked(self) -> bool {
        self.0 & Self::ACKED != 0
    }

    /// Its cancel is on its way to the venue.
    pub fn cancel_sent(self) -> bool {
        self.0 & Self::CANCEL_SENT != 0
    }

    /// A replace of it is on its way to the venue.
    pub fn replace_sent(self) -> bool {
        self.0 & Self::REPLACE_SENT != 0
    }

    /// Marks its replace sent (or answered: `false`).
    pub fn set_replace_sent(&mut self, on: bool) {
        if on {
            self.0 |= Self::REPLACE_SENT;
        } else {
            self.0 &= !Self::REPLACE_SENT;
        }
    }

    /// Marks it accepted.
    pub fn set_acked(&mut self) {
        self.0 |= Self::ACKED;
    }

    /// Marks its cancel sent (or answered: `false`).
    pub fn set_cancel_sent(&mut self, on: bool) {
        if on {
            self.0 |= Self::CANCEL_SENT;
        } else {
            self.0 &= !Self::CANCEL_SENT;
        }
    }

    /// The state as a snapshot byte: bit 0 accepted, bit 1 cancel sent, bit 2 replace sent.
    pub fn state_byte(self) -> u8 {
        self.0 >> 1
    }

    /// A routed order's state from [`Route::state_byte`]; `None` if it is not one.
    pub fn from_state_byte(b: u8) -> Option<Route> {
        (b <= 7).then_some(Route(Self::ROUTED | b << 1))
    }
}

/// Where a waiting trailing stop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrailPhase {
    /// Waiting for a trade to reach its activation price (its stop price), in the direction
    /// of its stop or take-profit.
    Arming,
    /// Tracking the best trade price since it started (`None` until the first trade).
    Tracking(Option<Price>),
    /// A trade reached its trigger: it works after the command that traded.
    Due,
}

impl Order {
    pub fn leaves(&self) -> Qty {
        Qty(self.qty.0 - self.cum.0)
    }

    /// What a resting order trades before it loses its place: all of it, or an iceberg's
    /// shown part.
    pub fn shown(&self) -> Qty {
        if self.display.0 == 0 {
            return self.leaves();
        }
        Qty((self.tranche_end.0 - self.cum.0).min(self.leaves().0))
    }

    /// Average fill price, rounded half away from zero to the price scale.
    pub fn avg_px(&self) -> Price {
        if self.cum.0 == 0 {
            return Price(0);
        }
        // The usual case fits in 64 bits: avoid a (much slower) 128-bit division per fill.
        if let Ok(n) = i64::try_from(self.notional) {
            let d = self.cum.0;
            let (q, r) = (n / d, n % d);
            let q = if 2 * r.unsigned_abs() >= d.unsigned_abs() {
                q + n.signum() * d.signum()
            } else {
                q
            };
            return Price(q);
        }
        let d = i128::from(self.cum.0);
        let (q, r) = (self.notional / d, self.notional % d);
        let q = if 2 * r.abs() >= d.abs() {
            q + self.notional.signum() * d.signum()
        } else {
            q
        };
        Price(q as i64)
    }
}

#[derive(Debug, Clone, Copy)]
struct Node {
    order: Order,
    live: bool,
    /// Hash tag of `(session, cl_ord_id)`, kept so removing the order does not hash again.
    cl_tag: u32,
    /// Level FIFO links (set by the book); `next` doubles as the free-list link.
    prev: u32,
    next: u32,
    acct_prev: u32,
    acct_next: u32,
    sess_prev: u32,
    sess_next: u32,
    /// Position in the expiry heap; `NIL` unless it is a good-till-date order.
    expiry_pos: u32,
    /// The other order of its one-triggers-the-other list (its slot): a working order's
    /// pending order, a pending order's working order; `NIL` if none. Here, not in `Order`,
    /// where it would grow every order by 16 bytes (past 256 per node).
    list: u32,
    /// Whether and how far the order is routed to a venue; here for the same reason.
    route: Route,
    /// How many times the venue has replaced the routed order (its ClOrdID there follows).
    venue_rev: u16,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    tag: u32,
    slot: u32,
}

const EMPTY: Entry = Entry { tag: 0, slot: NIL };

/// An open-addressing `hash → slot` index; see the module docs.
#[derive(Debug, Clone)]
struct SlotIndex {
    entries: Box<[Entry]>,
    mask: usize,
}

impl SlotIndex {
    fn new(max_entries: usize) -> Self {
        let n = (max_entries.max(8) * 2).next_power_of_two();
        Self {
            entries: vec![EMPTY; n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask
    }

    fn find(&self, tag: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = self.home(tag);
        loop {
            let e = self.entries[i];
            if e.slot == NIL {
                return None;
            }
            if e.tag == tag && eq(e.slot) {
                return Some(e.slot);
            }
            i = (i + 1) & self.mask;
        }
    }

    fn insert(&mut self, tag: u32, slot: u32) {
        let mut i = self.home(tag);
        while self.entries[i].slot != NIL {
            i = (i + 1) & self.mask;
        }
        self.entries[i] = Entry { tag, slot };
    }

    fn remove(&mut self, tag: u32, slot: u32) {
        let mut i = self.home(tag);
        loop {
            match self.entries[i].slot {
                NIL => return,
                s if s == slot => break,
                _ => i = (i + 1) & self.mask,
            }
        }
        // Backward shift: pull later entries of the probe run into the hole when the hole lies
        // between their home and where they sit, so every run stays contiguous.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let e = self.entries[j];
            if e.slot == NIL {
                break;
            }
            let from_home = j.wrapping_sub(self.home(e.tag)) & self.mask;
            let from_hole = j.wrapping_sub(hole) & self.mask;
            if from_home >= from_hole {
                self.entries[hole] = e;
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.entries[hole] = EMPTY;
    }
}

fn id_tag(id: OrderId) -> u32 {
    (id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// The resting-order store; see the module docs.
#[derive(Debug)]
pub(crate) struct Orders {
    nodes: Vec<Node>,
    capacity: usize,
    free: u32,
    live: usize,
    by_id: SlotIndex,
    by_cl: SlotIndex,
    hasher: RandomState,
    accounts: Vec<u32>,
    sessions: Vec<u32>,
    /// Good-till-date orders' slots, a min-heap on (expiry, order id); see the module docs.
    expiries: Vec<u32>,
}

impl Orders {
    /// Breaks the one-cancels-the-other pair of the order in `slot`, if it has one: neither
    /// order names the other any more. Returns the other's slot and id (to cancel it).
    pub fn unlink_sibling(&mut self, slot: u32) -> Option<(u32, OrderId)> {
        let sibling = self.get(slot).sibling;
        if sibling == NIL {
            return None;
        }
        self.get_mut(slot).sibling = NIL;
        let other = self.get_mut(sibling);
        other.sibling = NIL;
        Some((sibling, other.id))
    }

    /// Breaks the one-triggers-the-other link of the order in `slot`, if it has one. Returns
    /// the other's slot and id (to cancel or place it).
    pub fn unlink_list(&mut self, slot: u32) -> Option<(u32, OrderId)> {
        let list = self.list(slot);
        if list == NIL {
            return None;
        }
        self.nodes[slot as usize].list = NIL;
        self.nodes[list as usize].list = NIL;
        Some((list, self.get(list).id))
    }

    /// The slot of the other order of the one-triggers-the-other list of the order in `slot`;
    /// `NIL` if none.
    pub fn list(&self, slot: u32) -> u32 {
        self.nodes[slot as usize].list
    }

    /// Joins the orders in slots `a` and `b` as a one-triggers-the-other list.
    pub fn link_list(&mut self, a: u32, b: u32) {
        self.nodes[a as usize].list = b;
        self.nodes[b as usize].list = a;
    }

    /// The id of the other order of the one-triggers-the-other list of `o`, if it has one.
    /// Looks `o` up by id: for snapshots and state hashes, not the hot path.
    pub fn list_id(&self, o: &Order) -> Option<OrderId> {
        let list = self.list(self.find_by_id(o.id)?);
        (list != NIL).then(|| self.get(list).id)
    }

    /// The id of the other order of the pair of `o`, if it has one.
    pub fn sibling_id(&self, o: &Order) -> Option<OrderId> {
        (o.sibling != NIL).then(|| self.get(o.sibling).id)
    }
    /// A store for at most `capacity` resting orders (at most `u32::MAX - 1`), with list heads
    /// reserved for the given numbers of accounts and sessions.
    pub fn new(capacity: usize, accounts: usize, sessions: usize) -> Self {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        let mut nodes: Vec<Node> = Vec::with_capacity(capacity);
        // Touch every page of the slab now: otherwise each first use of a page faults on the
        // core thread in the middle of the trading day.
        let spare = std::hint::black_box(nodes.spare_capacity_mut());
        let step = (4096 / std::mem::size_of::<Node>()).max(1);
        for i in (0..spare.len()).step_by(step) {
            spare[i] = std::mem::MaybeUninit::zeroed();
        }
        Self {
            nodes,
            capacity,
            free: NIL,
            live: 0,
            by_id: SlotIndex::new(capacity),
            by_cl: SlotIndex::new(capacity),
            hasher: RandomState::new(),
            accounts: vec![NIL; accounts],
            sessions: vec![NIL; sessions],
            expiries: Vec::with_capacity(capacity),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_full(&self) -> bool {
        self.live >= self.capacity
    }

    /// Makes sure list heads exist for this account and session. Allocates only the first time
    /// an id beyond the reserved range is seen (ids are dense table slots).
    pub fn reserve_owner(&mut self, account: AccountId, session: SessionId) {
        let (a, s) = (account.0 as usize, session.0 as usize);
        if a >= self.accounts.len() {
            self.accounts.resize(a + 1, NIL);
        }
        if s >= self.sessions.len() {
            self.sessions.resize(s + 1, NIL);
        }
    }

    /// The index tag of a session's client order id (a keyed SipHash: computed once per
    /// command and passed to [`Orders::find_by_cl_tag`] and [`Orders::insert`]).
    pub fn cl_tag(&self, session: SessionId, cl: &ClOrdId) -> u32 {
        let h = self.hasher.hash_one((session.0, cl.as_bytes()));
        (h ^ (h >> 32)) as u32
    }

    /// Stores a resting order (level links unset); the caller checked `!is_full()`, called
    /// `reserve_owner`, and computed `cl_tag` with [`Orders::cl_tag`].
    pub fn insert(&mut self, order: Order, cl_tag: u32) -> u32 {
        debug_assert_eq!(cl_tag, self.cl_tag(order.session, &order.cl_ord_id));
        let node = Node {
            order,
            live: true,
            cl_tag,
            prev: NIL,
            next: NIL,
            acct_prev: NIL,
            acct_next: self.accounts[order.account.0 as usize],
            sess_prev: NIL,
            sess_next: self.sessions[order.session.0 as usize],
            expiry_pos: NIL,
            list: NIL,
            route: Route::default(),
            venue_rev: 0,
        };
        let slot = if self.free != NIL {
            let s = self.free;
            self.free = self.nodes[s as usize].next;
            self.nodes[s as usize] = node;
            s
        } else {
            debug_assert!(self.nodes.len() < self.capacity);
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        };
        if node.acct_next != NIL {
            self.nodes[node.acct_next as usize].acct_prev = slot;
        }
        self.accounts[order.account.0 as usize] = slot;
        if node.sess_next != NIL {
            self.nodes[node.sess_next as usize].sess_prev = slot;
        }
        self.sessions[order.session.0 as usize] = slot;
        self.by_id.insert(id_tag(order.id), slot);
        self.by_cl.insert(cl_tag, slot);
        self.live += 1;
        if order.tif.expire_ns().is_some() {
            self.expiry_push(slot);
        }
        slot
    }

    /// Drops an order from the store (the book unlinked it from its level first).
    pub fn remove(&mut self, slot: u32) -> Order {
        let n = self.nodes[slot as usize];
        debug_assert!(n.live);
        let o = n.order;
        if n.acct_prev != NIL {
            self.nodes[n.acct_prev as usize].acct_next = n.acct_next;
        } else {
            self.accounts[o.account.0 as usize] = n.acct_next;
        }
        if n.acct_next != NIL {
            self.nodes[n.acct_next as usize].acct_prev = n.acct_prev;
        }
        if n.sess_prev != NIL {
            self.nodes[n.sess_prev as usize].sess_next = n.sess_next;
        } else {
            self.sessions[o.session.0 as usize] = n.sess_next;
        }
        if n.sess_next != NIL {
            self.nodes[n.sess_next as usize].sess_prev = n.sess_prev;
        }
        self.by_id.remove(id_tag(o.id), slot);
        self.by_cl.remove(n.cl_tag, slot);
        if n.expiry_pos != NIL {
            self.expiry_remove(n.expiry_pos as usize);
        }
        let node = &mut self.nodes[slot as usize];
        node.live = false;
        node.next = self.free;
        self.free = slot;
        self.live -= 1;
        o
    }

    /// Gives a working order a new time in force, moving it in or out of the expiry heap.
    pub fn set_tif(&mut self, slot: u32, tif: TimeInForce) {
        let pos = self.nodes[slot as usize].expiry_pos;
        if pos != NIL {
            self.expiry_remove(pos as usize);
        }
        self.nodes[slot as usize].order.tif = tif;
        if tif.expire_ns().is_some() {
            self.expiry_push(slot);
        }
    }

    /// The good-till-date order that expires first: its expiry time and slot.
    pub fn next_expiry(&self) -> Option<(i64, u32)> {
        let &slot = self.expiries.first()?;
        Some((self.expiry_key(slot).0, slot))
    }

    fn expiry_key(&self, slot: u32) -> (i64, u64) {
        let o = &self.nodes[slot as usize].order;
        (o.tif.expire_ns().unwrap_or(i64::MAX), o.id.0)
    }

    fn expiry_set(&mut self, pos: usize, slot: u32) {
        self.expiries[pos] = slot;
        self.nodes[slot as usize].expiry_pos = pos as u32;
    }

    fn expiry_push(&mut self, slot: u32) {
        // Within the capacity reserved for the whole slab: never reallocates.
        self.expiries.push(slot);
        let pos = self.expiries.len() - 1;
        self.nodes[slot as usize].expiry_pos = pos as u32;
        self.expiry_up(pos);
    }

    fn expiry_remove(&mut self, pos: usize) {
        let gone = self.expiries[pos];
        self.nodes[gone as usize].expiry_pos = NIL;
        let last = self.expiries.pop().expect("a heap position is in the heap");
        if pos < self.expiries.len() {
            self.expiry_set(pos, last);
            // The moved entry may belong above or below the hole.
            self.expiry_up(pos);
            self.expiry_down(self.nodes[last as usize].expiry_pos as usize);
        }
    }

    fn expiry_up(&mut self, mut pos: usize) {
        let slot = self.expiries[pos];
        let key = self.expiry_key(slot);
        while pos > 0 {
            let parent = (pos - 1) / 2;
            let p = self.expiries[parent];
            if self.expiry_key(p) <= key {
                break;
            }
            self.expiry_set(pos, p);
            pos = parent;
        }
        self.expiry_set(pos, slot);
    }

    fn expiry_down(&mut self, mut pos: usize) {
        let slot = self.expiries[pos];
        let key = self.expiry_key(slot);
        let n = self.expiries.len();
        loop {
            let l = 2 * pos + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c =
                if r < n && self.expiry_key(self.expiries[r]) < self.expiry_key(self.expiries[l]) {
                    r
                } else {
                    l
                };
            let child = self.expiries[c];
            if key <= self.expiry_key(child) {
                break;
            }
            self.expiry_set(pos, child);
            pos = c;
        }
        self.expiry_set(pos, slot);
    }

    pub fn get(&self, slot: u32) -> &Order {
        &self.nodes[slot as usize].order
    }

    /// Whether and how far the order in `slot` is routed to a venue.
    pub fn route(&self, slot: u32) -> Route {
        self.nodes[slot as usize].route
    }

    /// How many times the venue has replaced the routed order in `slot`.
    pub fn venue_rev(&self, slot: u32) -> u16 {
        self.nodes[slot as usize].venue_rev
    }

    /// Sets it (a replace confirmed, a snapshot restored).
    pub fn set_venue_rev(&mut self, slot: u32, rev: u16) {
        self.nodes[slot as usize].venue_rev = rev;
    }

    /// The routing state of the order in `slot`, to change it.
    pub fn route_mut(&mut self, slot: u32) -> &mut Route {
        &mut self.nodes[slot as usize].route
    }

    pub fn get_mut(&mut self, slot: u32) -> &mut Order {
        &mut self.nodes[slot as usize].order
    }

    pub fn next(&self, slot: u32) -> u32 {
        self.nodes[slot as usize].next
    }

    pub fn prev(&self, slot: u32) -> u32 {
        self.nodes[slot as usize].prev
    }

    pub fn set_next(&mut self, slot: u32, next: u32) {
        self.nodes[slot as usize].next = next;
    }

    pub fn set_prev(&mut self, slot: u32, prev: u32) {
        self.nodes[slot as usize].prev = prev;
    }

    /// The working order with this engine id.
    pub fn find_by_id(&self, id: OrderId) -> Option<u32> {
        self.by_id
            .find(id_tag(id), |s| self.nodes[s as usize].order.id == id)
    }

    /// The working order a session knows by this client id.
    pub fn find_by_cl(&self, session: SessionId, cl: &ClOrdId) -> Option<u32> {
        self.find_by_cl_tag(self.cl_tag(session, cl), session, cl)
    }

    /// Starts loading what a command for this client id touches first: its bucket in the
    /// client-id index and, for a new order that rests as `next_id`, its bucket in the id index
    /// and the slab node it takes. A cache hint only.
    pub fn prefetch(&self, cl_tag: u32, next_id: Option<OrderId>) {
        prefetch(&self.by_cl.entries[self.by_cl.home(cl_tag)]);
        if let Some(id) = next_id {
            prefetch(&self.by_id.entries[self.by_id.home(id_tag(id))]);
            if self.free != NIL {
                prefetch(&self.nodes[self.free as usize]);
            }
        }
    }

    /// [`Orders::find_by_cl`] with the tag already computed.
    pub fn find_by_cl_tag(&self, tag: u32, session: SessionId, cl: &ClOrdId) -> Option<u32> {
        self.by_cl.find(tag, |s| {
            let o = &self.nodes[s as usize].order;
            o.session == session && o.cl_ord_id == *cl
        })
    }

    /// Gives a working order a new client id (after a replace).
    pub fn rekey_cl(&mut self, slot: u32, cl: ClOrdId) {
        let n = self.nodes[slot as usize];
        self.by_cl.remove(n.cl_tag, slot);
        let tag = self.cl_tag(n.order.session, &cl);
        let node = &mut self.nodes[slot as usize];
        node.order.cl_ord_id = cl;
        node.cl_tag = tag;
        self.by_cl.insert(tag, slot);
    }

    /// First order of an account's list.
    pub fn account_head(&self, account: AccountId) -> u32 {
        self.accounts
            .get(account.0 as usize)
            .copied()
            .unwrap_or(NIL)
    }

    /// Next order of the same account.
    pub fn account_next(&self, slot: u32) -> u32 {
        self.nodes[slot as usize].acct_next
    }

    /// First order of a session's list.
    pub fn session_head(&self, session: SessionId) -> u32 {
        self.sessions
            .get(session.0 as usize)
            .copied()
            .unwrap_or(NIL)
    }

    /// Next order of the same session.
    pub fn session_next(&self, slot: u32) -> u32 {
        self.nodes[slot as usize].sess_next
    }

    /// One past the highest slot ever used (for scans of every live order).
    pub fn high_water(&self) -> u32 {
        self.nodes.len() as u32
    }

    /// True if the slot holds a working order.
    pub fn is_live(&self, slot: u32) -> bool {
        self.nodes.get(slot as usize).is_some_and(|n| n.live)
    }

    /// Relinks an owner's list (the account's with `account = true`, else the session's) to
    /// exactly `slots`, in that order (a snapshot restores the lists as they were: their
    /// order is the order of bulk cancels). The slots must be live orders of that owner;
    /// `false` otherwise.
    pub fn set_owner_list(&mut self, account: bool, owner: u32, slots: &[u32]) -> bool {
        let o = owner as usize;
        let heads = if account {
            &mut self.accounts
        } else {
            &mut self.sessions
        };
        if o >= heads.len() {
            heads.resize(o + 1, NIL);
        }
        for &s in slots {
            let Some(n) = self.nodes.get(s as usize).filter(|n| n.live) else {
                return false;
            };
            let mine = if account {
                n.order.account.0
            } else {
                n.order.session.0
            };
            if mine != owner {
                return false;
            }
        }
        let mut prev = NIL;
        for &s in slots {
            let n = &mut self.nodes[s as usize];
            if account {
                n.acct_prev = prev;
            } else {
                n.sess_prev = prev;
            }
            if prev == NIL {
                heads[o] = s;
            } else if account {
                self.nodes[prev as usize].acct_next = s;
            } else {
                self.nodes[prev as usize].sess_next = s;
            }
            prev = s;
        }
        if prev == NIL {
            heads[o] = NIL;
        } else if account {
            self.nodes[prev as usize].acct_next = NIL;
        } else {
            self.nodes[prev as usize].sess_next = NIL;
        }
        true
    }

    /// Owners (accounts or sessions) with a list head.
    pub fn owners(&self, account: bool) -> u32 {
        if account {
            self.accounts.len() as u32
        } else {
            self.sessions.len() as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: u64, account: u32, session: u32, cl: &str) -> Order {
        Order {
            id: OrderId(id),
            cl_ord_id: ClOrdId::new(cl.as_bytes()).unwrap(),
            session: SessionId(session),
            account: AccountId(account),
            instrument: InstrumentId(0),
            side: Side::Buy,
            ord_type: OrdType::Limit,
            tif: TimeInForce::Gtc,
            stp: None,
            post_only: false,
            untriggered: false,
            price: Price(100),
            qty: Qty(10),
            cum: Qty(0),
            notional: 0,
            received_ns: 0,
            display: Qty(0),
            tranche_end: Qty(0),
            trailing: None,
            trail: TrailPhase::Arming,
            sibling: NIL,
            pending: false,
        }
    }

    #[test]
    fn an_order_node_stays_within_four_cache_lines() {
        // Matching walks nodes: a 257th byte would cost every order a fifth line.
        assert!(std::mem::size_of::<Node>() <= 256);
    }

    #[test]
    fn average_price_rounds_half_away_from_zero() {
        let mut o = order(1, 0, 0, "a");
        o.cum = Qty(3);
        o.notional = 100 + 100 + 101; // 100.333…
        assert_eq!(o.avg_px(), Price(100));
        o.notional = 100 + 101 + 101 + 100;
        o.cum = Qty(4);
        assert_eq!(o.avg_px(), Price(101)); // 100.5 rounds up
        o.notional = -402;
        assert_eq!(o.avg_px(), Price(-101));
        // Beyond 64 bits.
        o.cum = Qty(1 << 40);
        o.notional = i128::from(3i64 << 40) * (1 << 40) + (1 << 39);
        assert_eq!(o.avg_px(), Price((3 << 40) + 1));
    }

    #[test]
    fn indexes_find_insert_remove_and_survive_churn() {
        let mut s = Orders::new(64, 2, 2);
        let mut slots = Vec::new();
        for i in 0..64u64 {
            let o = order(i + 1, (i % 2) as u32, (i % 2) as u32, &format!("c{i}"));
            s.reserve_owner(o.account, o.session);
            let tag = s.cl_tag(o.session, &o.cl_ord_id);
            slots.push(s.insert(o, tag));
        }
        assert!(s.is_full());
        for i in 0..64u64 {
            let slot = s.find_by_id(OrderId(i + 1)).unwrap();
            assert_eq!(s.get(slot).id, OrderId(i + 1));
            let cl = ClOrdId::new(format!("c{i}").as_bytes()).unwrap();
            assert_eq!(s.find_by_cl(SessionId((i % 2) as u32), &cl), Some(slot));
            assert_eq!(s.find_by_cl(SessionId(((i + 1) % 2) as u32), &cl), None);
        }
        // Remove every other order, then check the rest are all still found.
        for (i, &slot) in slots.iter().enumerate().step_by(2) {
            s.remove(slot);
            assert!(s.find_by_id(OrderId(i as u64 + 1)).is_none());
        }
        for i in (1..64u64).step_by(2) {
            assert!(s.find_by_id(OrderId(i + 1)).is_some());
        }
        // Account 0 held the even orders: its list is empty now; account 1 has 32.
        assert_eq!(s.account_head(AccountId(0)), NIL);
        let mut n = 0;
        let mut at = s.account_head(AccountId(1));
        while at != NIL {
            n += 1;
            at = s.account_next(at);
        }
        assert_eq!(n, 32);
        // Freed slots are reused without growing the slab.
        let o = order(1000, 0, 0, "again");
        let slot = s.insert(o, s.cl_tag(o.session, &o.cl_ord_id));
        assert!(slot < 64);
        assert_eq!(s.high_water(), 64);
        s.rekey_cl(slot, ClOrdId::new(b"renamed").unwrap());
        assert_eq!(s.find_by_cl(SessionId(0), &o.cl_ord_id), None);
        assert_eq!(
            s.find_by_cl(SessionId(0), &ClOrdId::new(b"renamed").unwrap()),
            Some(slot)
        );
    }

    proptest::proptest! {
        /// The expiry heap always offers the live good-till-date order with the earliest
        /// (expiry, id), whatever the order of inserts and removals, and never reallocates.
        #[test]
        fn the_next_expiry_is_the_earliest_live_gtd_order(
            ops in proptest::collection::vec((0u8..3, 0i64..20, 0usize..64), 1..300)
        ) {
            let mut s = Orders::new(48, 1, 1);
            let reserved = s.expiries.capacity();
            let mut live: Vec<(u32, Option<i64>, u64)> = Vec::new();
            let mut id = 0;
            for (op, t, pick) in ops {
                if op < 2 && !s.is_full() {
                    id += 1;
                    let mut o = order(id, 0, 0, &format!("c{id}"));
                    // Two in three are GTD, on a few distinct times so keys tie on time.
                    let expiry = (op == 0 || t % 3 != 0).then_some(t);
                    if let Some(expire_ns) = expiry {
                        o.tif = TimeInForce::Gtd { expire_ns };
                    }
                    let slot = s.insert(o, s.cl_tag(o.session, &o.cl_ord_id));
                    live.push((slot, expiry, id));
                } else if !live.is_empty() {
                    let (slot, ..) = live.swap_remove(pick % live.len());
                    s.remove(slot);
                }
                let want = live
                    .iter()
                    .filter_map(|&(slot, e, id)| e.map(|e| (e, id, slot)))
                    .min()
                    .map(|(e, _, slot)| (e, slot));
                proptest::prop_assert_eq!(s.next_expiry(), want);
                proptest::prop_assert_eq!(s.expiries.capacity(), reserved);
            }
        }
    }
}
