//! The two pre-allocated hash tables of the risk state: the ClOrdIDs seen today and the
//! per-(account, instrument) / per-(account, underlying) position slots. Both are sized once
//! from the config and never grow, so the per-order path does not allocate; both use open
//! addressing with linear probing in a power-of-two table kept at most half full (a probe
//! touches one or two cache lines on average). The ClOrdID table has a filter in front of it,
//! so that a new id is usually confirmed new without touching the table (see [`ClOrdIdSet`]).

use std::hash::{BuildHasher, Hasher};

use portcullis_types::prefetch;

/// 128 random bits from std's per-process random source (the one `HashMap` keys come
/// from), without another dependency for a once-per-set key.
fn random_keys() -> (u64, u64) {
    let s = std::collections::hash_map::RandomState::new();
    (s.hash_one(0x5eed_u64), s.hash_one(0x5eed_u64 ^ u64::MAX))
}

/// Slot count for `capacity` entries at a load factor of at most 1/2.
fn table_len(capacity: u32) -> usize {
    (capacity as usize * 2).next_power_of_two().max(2)
}

/// The set of (session, generation, ClOrdID) seen in the trading day, stored as keyed 64-bit
/// hashes (8 bytes each, never the 64-byte id itself).
///
/// The hash is SipHash-1-3 with a random key (std's `RandomState`): a client cannot choose ids
/// that collide with another session's future ids (which would have them refused as
/// duplicates) or that pile up in one probe run. An honest false positive needs two of the
/// day's ids to share 64 bits: about `n² / 2^65`, i.e. 3 × 10^-8 for a million ids.
///
/// # Layout: a filter in the cache in front of an exact table in memory
///
/// The exact table (open addressing, at most half full) is 16 MiB for the default million ids:
/// a probe of a random slot is a cache miss, ~100 ns — more than all the other checks
/// together. So a split-block Bloom filter (10 bits per id, 1.25 MiB: it stays in the L2/L3
/// cache) answers first: for a new id (nearly every order) it says "certainly absent" after
/// touching one 32-byte block. Only when it says "maybe" (a real duplicate, or about 1 % of
/// new ids when the day is full) is the exact table probed. The insertion into the exact
/// table is deferred by [`PENDING`] insertions, with its slot prefetched meanwhile, so its miss
/// overlaps other work instead of stalling an order; until then the id waits in a small ring
/// and is compared directly. The filter never forgets (only [`clear`](Self::clear) empties it), so
/// "certainly absent" is always right: the answers are exactly those of the table alone.
///
/// When `capacity` ids are stored the set is full and [`insert`](Self::insert) refuses
/// (the order is rejected as `ServerBusy`) rather than evicting: evicting would let a
/// duplicate of the evicted id through, which is the failure this check exists to prevent.
pub(crate) struct ClOrdIdSet {
    /// Exact table; 0 = empty (a hash of 0 is stored as 1).
    slots: Vec<u64>,
    mask: usize,
    /// Split-block Bloom filter: 8 words per block, one bit set per word.
    blocks: Vec<[u32; 8]>,
    /// The last ids recorded, not yet in `slots` (their slots are being prefetched); 0 = none.
    pending: [u64; PENDING],
    /// Where the next id goes in `pending` (the oldest one there moves to `slots`).
    next_pending: usize,
    /// Ids recorded, `pending` included.
    len: u32,
    capacity: u32,
    /// The SipHash-1-3 key: random per set, and part of a snapshot (the stored hashes mean
    /// nothing under another key).
    keys: (u64, u64),
}

/// Why an id could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InsertError {
    /// Already there.
    Duplicate,
    /// The set is full.
    Full,
}

/// The odd multipliers of the split-block Bloom filter (those of Parquet's specification):
/// each picks one bit of one word of the block from the hash's low 32 bits.
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// Recorded ids that wait before going into the exact table, so that the cache miss of their
/// slot (prefetched when they are recorded) has time to complete.
pub(crate) const PENDING: usize = 8;

/// Filter bits per id of capacity: about 1 % false "maybe" when full.
const FILTER_BITS_PER_ID: usize = 10;

/// Touches every page of a freshly zeroed table. Zeroed allocations are lazily mapped by the
/// OS: without this, their page faults land on the core thread during the first orders of the
/// day (tens of µs each), instead of here at start-up.
pub(crate) fn prefault<T: Copy + Default>(table: Vec<T>) -> Vec<T> {
    // black_box hides that the memory is known to be zero, so the stores are not elided.
    let mut table = std::hint::black_box(table);
    let step = (4096 / std::mem::size_of::<T>().max(1)).max(1);
    for i in (0..table.len()).step_by(step) {
        table[i] = T::default();
    }
    table
}

impl ClOrdIdSet {
    pub(crate) fn new(capacity: u32) -> Self {
        let n = table_len(capacity);
        let blocks = (capacity as usize * FILTER_BITS_PER_ID)
            .div_ceil(256)
            .max(1);
        Self {
            slots: prefault(vec![0; n]),
            mask: n - 1,
            blocks: prefault(vec![[0; 8]; blocks]),
            pending: [0; PENDING],
            next_pending: 0,
            len: 0,
            capacity,
            keys: random_keys(),
        }
    }

    /// The keyed hash of one session's id; `tag` is the session slot and its generation.
    #[inline]
    pub(crate) fn hash(&self, tag: u64, id: &[u8]) -> u64 {
        let mut h = siphasher::sip::SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        // Fixed-width tag first, then the bytes: SipHash mixes in the total length, so no two
        // (tag, id) pairs produce the same input.
        h.write_u64(tag);
        h.write(id);
        h.finish().max(1)
    }

    /// The filter block of `hash`: its high 32 bits scaled to the block count (the low 32
    /// pick the bits, the low bits of the whole hash the table slot).
    #[inline]
    fn block(&self, hash: u64) -> usize {
        (((hash >> 32) * self.blocks.len() as u64) >> 32) as usize
    }

    /// The bit of each word of the block that `hash` sets.
    #[inline]
    fn masks(hash: u64) -> [u32; 8] {
        let key = hash as u32;
        SALT.map(|salt| 1 << (key.wrapping_mul(salt) >> 27))
    }

    /// Starts loading the filter block of `hash` into the cache, so that
    /// [`insert`](Self::insert), a few checks later, finds it there.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        prefetch(&self.blocks[self.block(hash)]);
    }

    /// True if `hash` is recorded.
    #[cfg(test)]
    pub(crate) fn contains(&self, hash: u64) -> bool {
        self.pending.contains(&hash) || self.in_table(hash)
    }

    /// True if `hash` is in the exact table (a likely cache miss).
    fn in_table(&self, hash: u64) -> bool {
        let mut i = hash as usize & self.mask;
        loop {
            match self.slots[i] {
                0 => return false,
                h if h == hash => return true,
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    /// Records `hash` unless it is already there or the set is full.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64) -> Result<(), InsertError> {
        let b = self.block(hash);
        let masks = Self::masks(hash);
        let maybe = self.blocks[b].iter().zip(masks).all(|(w, m)| w & m != 0);
        if maybe && (self.pending.contains(&hash) || self.in_table(hash)) {
            return Err(InsertError::Duplicate);
        }
        if self.len >= self.capacity {
            return Err(InsertError::Full);
        }
        for (w, m) in self.blocks[b].iter_mut().zip(masks) {
            *w |= m;
        }
        // The oldest pending id goes into the table now: its slot was prefetched when it was
        // recorded, `PENDING` insertions ago. It is certainly not there (it passed this
        // check), and the table has twice `capacity` slots, so an empty slot is always found.
        let prev = std::mem::replace(&mut self.pending[self.next_pending], hash);
        self.next_pending = (self.next_pending + 1) % PENDING;
        if prev != 0 {
            let mut i = prev as usize & self.mask;
            while self.slots[i] != 0 {
                i = (i + 1) & self.mask;
            }
            self.slots[i] = prev;
        }
        prefetch(&self.slots[hash as usize & self.mask]);
        self.len += 1;
        Ok(())
    }

    /// Ids recorded.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Forgets every id (a new trading day). Touches both tables once; not per order.
    pub(crate) fn clear(&mut self) {
        self.slots.fill(0);
        self.blocks.fill([0; 8]);
        self.pending = [0; PENDING];
        self.len = 0;
    }
}

impl ClOrdIdSet {
    /// The set for a snapshot: its key, pending ring and every recorded hash (pending ones
    /// included, in ring order first).
    pub(crate) fn snapshot_parts(&self) -> ((u64, u64), [u64; PENDING], usize, Vec<u64>) {
        let table = self.slots.iter().copied().filter(|&h| h != 0).collect();
        (self.keys, self.pending, self.next_pending, table)
    }

    /// Restores what [`snapshot_parts`](Self::snapshot_parts) gave into this (empty) set of
    /// the same or larger capacity; `false` if it does not fit.
    pub(crate) fn restore(
        &mut self,
        keys: (u64, u64),
        pending: [u64; PENDING],
        next_pending: usize,
        table: &[u64],
    ) -> bool {
        let n = table.len() + pending.iter().filter(|&&h| h != 0).count();
        if n > self.capacity as usize || next_pending >= PENDING {
            return false;
        }
        self.clear();
        self.keys = keys;
        for &h in table.iter().chain(pending.iter().filter(|&&h| h != 0)) {
            let b = self.block(h);
            for (w, m) in self.blocks[b].iter_mut().zip(Self::masks(h)) {
                *w |= m;
            }
        }
        for &h in table {
            if h == 0 {
                return false;
            }
            let mut i = h as usize & self.mask;
            while self.slots[i] != 0 {
                i = (i + 1) & self.mask;
            }
            self.slots[i] = h;
        }
        self.pending = pending;
        self.next_pending = next_pending;
        self.len = n as u32;
        true
    }
}

/// What the risk checks keep per (account, instrument) — and, with the same layout, per
/// (account, underlying), where quantities are in `10^-18` units of the underlying.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PairState {
    /// `key_of(..)`; identifies the pair.
    pub key: u64,
    /// Net position (+ long, − short).
    pub position: i128,
    /// Leaves quantity of open buy orders.
    pub open_buy: i128,
    /// Leaves quantity of open sell orders.
    pub open_sell: i128,
    /// Per instrument only: the position at its average entry price, `10^-18` quote units.
    pub exposure: i128,
    /// Per instrument only: open orders.
    pub open_orders: u32,
}

impl PairState {
    /// Nothing open, no position: the slot can be dropped at the end of the day.
    fn idle(&self) -> bool {
        self.position == 0
            && self.open_buy == 0
            && self.open_sell == 0
            && self.exposure == 0
            && self.open_orders == 0
    }
}

/// Key of an (account, instrument) pair.
#[inline]
pub(crate) fn instrument_key(account: u32, instrument: u32) -> u64 {
    (u64::from(account) << 32) | u64::from(instrument)
}

/// Key of an (account, underlying) pair: bit 63 set, so it never equals an instrument key
/// (account ids are below 2^31: the engine checks it).
#[inline]
pub(crate) fn underlying_key(account: u32, underlying: u32) -> u64 {
    (1 << 63) | (u64::from(account) << 32) | u64::from(underlying)
}

/// Pre-allocated pair states (dense, in insertion order) behind an open-addressing index.
/// Pairs are only added during the day, so there are no tombstones; idle pairs are dropped by
/// [`compact`](Self::compact) at the end of the day.
pub(crate) struct PairTable {
    states: Vec<PairState>,
    /// `state index + 1`, 0 = empty.
    index: Vec<u32>,
    mask: usize,
    /// `64 - log2(index.len())`: the home slot is the top bits of the product.
    shift: u32,
    capacity: u32,
    /// Keys are server-assigned ids, not client text, so a multiplicative hash is enough;
    /// the random seed keeps the layout from being the same on every start.
    seed: u64,
}

impl PairTable {
    pub(crate) fn new(capacity: u32, seed: u64) -> Self {
        let n = table_len(capacity);
        Self {
            states: Vec::with_capacity(capacity as usize),
            index: prefault(vec![0; n]),
            mask: n - 1,
            shift: 64 - n.trailing_zeros(),
            capacity,
            seed,
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        // Fibonacci hashing: the high bits of the product by 2^64/φ are well mixed.
        ((key ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// The state of `key`, if it has one.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<&PairState> {
        let mut i = self.home(key);
        loop {
            match self.index[i] {
                0 => return None,
                s => {
                    let st = &self.states[s as usize - 1];
                    if st.key == key {
                        return Some(st);
                    }
                    i = (i + 1) & self.mask;
                }
            }
        }
    }

    /// The state index of `key`, adding an empty state if there is none; `None` when the
    /// table is full.
    #[inline]
    pub(crate) fn find_or_insert(&mut self, key: u64) -> Option<usize> {
        let mut i = self.home(key);
        loop {
            match self.index[i] {
                0 => break,
                s => {
                    if self.states[s as usize - 1].key == key {
                        return Some(s as usize - 1);
                    }
                    i = (i + 1) & self.mask;
                }
            }
        }
        if self.states.len() >= self.capacity as usize {
            return None;
        }
        // Within the capacity reserved in `new`: no reallocation.
        self.states.push(PairState {
            key,
            ..PairState::default()
        });
        self.index[i] = self.states.len() as u32;
        Some(self.states.len() - 1)
    }

    /// The state at an index from [`find_or_insert`](Self::find_or_insert).
    #[inline]
    pub(crate) fn at(&mut self, i: usize) -> &mut PairState {
        &mut self.states[i]
    }

    /// The state of `key` for updating, if it has one.
    #[inline]
    pub(crate) fn get_mut(&mut self, key: u64) -> Option<&mut PairState> {
        let mut i = self.home(key);
        loop {
            match self.index[i] {
                0 => return None,
                s => {
                    if self.states[s as usize - 1].key == key {
                        return Some(&mut self.states[s as usize - 1]);
                    }
                    i = (i + 1) & self.mask;
                }
            }
        }
    }

    /// Every state (tests).
    #[cfg(test)]
    pub(crate) fn states(&self) -> &[PairState] {
        &self.states
    }

    /// Pairs in use.
    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// The states in order and the layout seed, for a snapshot.
    pub(crate) fn snapshot_parts(&self) -> (u64, &[PairState]) {
        (self.seed, &self.states)
    }

    /// Restores [`snapshot_parts`](Self::snapshot_parts) into this empty table; `false` if
    /// they do not fit its capacity.
    pub(crate) fn restore(&mut self, seed: u64, states: Vec<PairState>) -> bool {
        if states.len() > self.capacity as usize {
            return false;
        }
        self.seed = seed;
        self.states.clear();
        self.states.extend(states);
        // Rebuild the index exactly as the end-of-day compaction does (no idle pair is dropped:
        // compact() only drops idle ones, and a snapshot keeps them all).
        self.index.fill(0);
        for n in 0..self.states.len() {
            let mut i = self.home(self.states[n].key);
            while self.index[i] != 0 {
                i = (i + 1) & self.mask;
            }
            self.index[i] = n as u32 + 1;
        }
        true
    }

    /// Drops idle pairs and rebuilds the index (end of day; no allocation).
    pub(crate) fn compact(&mut self) {
        self.states.retain(|s| !s.idle());
        self.index.fill(0);
        for n in 0..self.states.len() {
            let mut i = self.home(self.states[n].key);
            while self.index[i] != 0 {
                i = (i + 1) & self.mask;
            }
            self.index[i] = n as u32 + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cl_ord_id_set_detects_duplicates_and_refuses_when_full() {
        let mut s = ClOrdIdSet::new(3);
        let a = s.hash(1, b"A");
        let b = s.hash(2, b"A");
        assert_ne!(a, b, "the session is part of the key");
        assert_eq!(s.insert(a), Ok(()));
        assert_eq!(s.insert(a), Err(InsertError::Duplicate));
        assert_eq!(s.insert(b), Ok(()));
        assert_eq!(s.insert(s.hash(1, b"B")), Ok(()));
        assert_eq!(s.insert(s.hash(1, b"C")), Err(InsertError::Full));
        // A duplicate is still reported as such when full.
        assert_eq!(s.insert(a), Err(InsertError::Duplicate));
        assert!(s.contains(a));
        s.clear();
        assert!(!s.contains(a));
        assert_eq!(s.len(), 0);
        assert_eq!(s.insert(a), Ok(()));
    }

    proptest::proptest! {
        /// The filter and the deferred insertion are invisible: the set answers exactly as a
        /// plain set with a capacity would (small capacities make the filter answer "maybe"
        /// often, so the exact path is exercised too).
        #[test]
        fn cl_ord_id_set_answers_exactly_like_a_set(
            ops in proptest::collection::vec((0u64..400, 0u8..40), 0..600),
            capacity in 1u32..300,
        ) {
            let mut s = ClOrdIdSet::new(capacity);
            let mut model = std::collections::HashSet::new();
            for (k, op) in ops {
                if op == 0 {
                    s.clear();
                    model.clear();
                    continue;
                }
                let h = s.hash(k % 3, &k.to_le_bytes());
                let expected = if model.contains(&h) {
                    Err(InsertError::Duplicate)
                } else if model.len() >= capacity as usize {
                    Err(InsertError::Full)
                } else {
                    model.insert(h);
                    Ok(())
                };
                proptest::prop_assert_eq!(s.insert(h), expected);
                proptest::prop_assert_eq!(s.len() as usize, model.len());
                proptest::prop_assert!(s.contains(h) == model.contains(&h));
            }
        }
    }

    #[test]
    fn pair_table_finds_inserts_refuses_when_full_and_compacts() {
        let mut t = PairTable::new(4, 12345);
        let k: Vec<u64> = (0..4).map(|i| instrument_key(i, i * 7)).collect();
        for &key in &k {
            let i = t.find_or_insert(key).unwrap();
            assert_eq!(t.at(i).key, key);
        }
        assert_eq!(t.find_or_insert(k[2]), Some(2));
        assert_eq!(t.find_or_insert(underlying_key(0, 0)), None);
        t.get_mut(k[1]).unwrap().position = 5;
        t.compact();
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(k[1]).unwrap().position, 5);
        assert!(t.get(k[0]).is_none());
        assert!(t.find_or_insert(k[0]).is_some());
    }
}
