//! The core thread's side of the journal (DESIGN.md §3): what the core thread hands to the
//! journal thread, the bounded lock-free queue between them, and the journal thread itself.
//!
//! ```text
//!  core thread ──push──▶ ArrayQueue<JournalItem> ──pop──▶ journal thread
//!   Clock, Command, Event,  (full: the core thread waits:       append all, commit once
//!   controls, snapshot       it takes no new ingress meanwhile;  (group commit), then
//!   markers                  a record is never dropped)          deliver up to ack_seq()
//! ```
//!
//! - Every command the core thread takes is journaled after a `Clock` record holding the
//!   `now_ns` it processed the command with (one per loop pass: the pass's commands share
//!   it), so a replay feeds the core the same commands at the same times and gets the same
//!   state. Operator changes (kill switch, instrument status, limits, marks), timer firings
//!   (instrument roll, end of day) and session opens (cancel-on-disconnect flag) are journaled
//!   too; the server's own ones ride in `Limits` records with a kind byte ([`ServerControl`]).
//!   Status answers change nothing and are not journaled.
//! - Under `fsync = "always"` the core thread does not deliver events itself: it hands each
//!   to the journal thread with its connection, which delivers it once its record is
//!   durable ([`portcullis_journal::JournalWriter::ack_seq`]): an acknowledgement never leaves
//!   before its record is on disk. Status answers take the same path so they never overtake
//!   an earlier report. Under `never` / `interval_ms` the core thread delivers at once and
//!   the events are journaled alongside.
//! - Back-pressure: a full journal queue makes the core thread wait (spin, then yield) until
//!   the journal thread drained some of it; meanwhile it takes no new ingress, so the ingress
//!   queue fills and the socket tasks answer "server busy". Dropping a record would break the
//!   promise that everything acknowledged is journaled, so it is never done.
//! - A journal that cannot be written stops the server (exit code 1) rather than acknowledge
//!   anything it could not make durable.

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use portcullis_engine::Core;
use portcullis_journal::{JournalRecord, JournalWriter, Seq};
use portcullis_types::{AccountId, Command, InstrumentId, Price, SessionId};
use sha2::{Digest, Sha256};

use crate::pipeline::{Conn, Outbound, Parked};

/// Records the journal thread appends before it commits: bounds a batch (and so the latency
/// of the first acknowledgement in it) under a flood.
const MAX_DRAIN: usize = 4096;
/// How long the journal thread polls its queue before it parks.
const SPIN: Duration = Duration::from_micros(50);
/// Longest park of an idle journal thread (it also wakes for the `interval_ms` fsync).
const PARK: Duration = Duration::from_millis(5);

/// One entry of the journal queue.
#[derive(Debug)]
pub enum JournalItem {
    /// A record to journal.
    Record(JournalRecord),
    /// `fsync = "always"`: a report to deliver to a connection once everything before it is
    /// durable; an `Event` is journaled first, a `Status` is only delivered. Without a
    /// connection (none in the slot) an event is journaled, then parked for the session's
    /// next connection (configured sessions).
    Deliver(Outbound, Option<Arc<Conn>>),
    /// `fsync = "always"`: a request of this connection is answered once the reports before
    /// this item are delivered (see [`Conn::answered`]).
    Answered(Arc<Conn>),
}

/// What the journal thread releases once the records before it are durable. Not boxed: that
/// would allocate per report.
#[allow(clippy::large_enum_variant)]
enum Release {
    /// A report to deliver (or, without a connection, to park).
    Report(Outbound, Option<Arc<Conn>>),
    /// A request of this connection is answered.
    Answered(Arc<Conn>),
}

/// The queue between the core thread and the journal thread, and their wake-up flags.
#[derive(Debug)]
pub struct JournalQueue {
    queue: ArrayQueue<JournalItem>,
    gated: bool,
    sleeping: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
    /// Times the core thread found the queue full and had to wait.
    full_waits: AtomicU64,
    /// A new master keyring for the journal thread (a rotation while the server runs); the
    /// flag keeps the journal thread's check to one atomic load per loop pass.
    rekey: std::sync::Mutex<Option<portcullis_auth::MasterKeyring>>,
    rekey_pending: AtomicBool,
    /// Told each fsync's duration on the journal thread (the server's metrics); a plain fn so
    /// that calling it allocates nothing.
    fsync_observer: OnceLock<fn(Duration)>,
    /// The last record acknowledged (written, and under `fsync = "always"` durable), for
    /// readers that follow the journal (the FIX drop copy): what is up to it can be read.
    /// Published once per batch by the journal thread.
    acknowledged: tokio::sync::watch::Sender<u64>,
}

impl JournalQueue {
    /// A queue of `capacity` items; `gated` (for `fsync = "always"`) routes the reports
    /// through the journal thread.
    pub fn new(capacity: usize, gated: bool) -> Arc<Self> {
        Arc::new(Self {
            queue: ArrayQueue::new(capacity.max(16)),
            gated,
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
            full_waits: AtomicU64::new(0),
            rekey: std::sync::Mutex::new(None),
            rekey_pending: AtomicBool::new(false),
            fsync_observer: OnceLock::new(),
            acknowledged: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Follows the last record acknowledged: see [`JournalQueue`]'s `acknowledged`.
    pub fn acknowledged(&self) -> tokio::sync::watch::Receiver<u64> {
        self.acknowledged.subscribe()
    }

    /// The last record acknowledged, now.
    pub fn acknowledged_now(&self) -> u64 {
        *self.acknowledged.borrow()
    }

    /// Called by the journal thread when the value moved.
    fn publish_acknowledged(&self, seq: Seq) {
        self.acknowledged.send_replace(seq.0);
    }

    /// Hands a rotated master keyring to the journal thread: the next batch starts a new
    /// segment under its current key (older segments stay readable while their key is in the
    /// keyring; `portcullis journal reencrypt` rewrites them).
    pub fn rekey(&self, keyring: &portcullis_auth::MasterKeyring) {
        if let Ok(mut slot) = self.rekey.lock() {
            *slot = Some(keyring.clone());
        }
        self.rekey_pending.store(true, Ordering::Release);
        self.sleeping.store(false, Ordering::Release);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// The keyring handed over by [`JournalQueue::rekey`], once.
    fn take_rekey(&self) -> Option<portcullis_auth::MasterKeyring> {
        if !self.rekey_pending.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.rekey.lock().ok().and_then(|mut s| s.take())
    }

    /// Pushes an item, waiting while the queue is full (never drops it).
    fn push(&self, mut item: JournalItem) {
        loop {
            match self.queue.push(item) {
                Ok(()) => break,
                Err(back) => {
                    item = back;
                    self.full_waits.fetch_add(1, Ordering::Relaxed);
                    self.wake();
                    std::thread::yield_now();
                }
            }
        }
        // Gated (`fsync = "always"`): reports wait for this thread, so wake it at once. Otherwise
        // nobody waits for it: let it find the records on its next tick (PARK) and keep the
        // unpark syscall off the core thread, unless the queue is filling up.
        if self.gated || self.queue.len() >= self.queue.capacity() / 4 {
            self.wake();
        }
    }

    fn wake(&self) {
        // Pairs with the fence in the journal thread's park: either it sees the push before
        // it parks, or we see its flag and unpark it.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    /// The next item, for tests that play the journal thread.
    #[cfg(test)]
    pub(crate) fn pop(&self) -> Option<JournalItem> {
        self.queue.pop()
    }

    /// Items waiting for the journal thread (sampled by the metrics).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Calls `f` with the duration of every fsync of the journal, on the journal thread.
    pub fn set_fsync_observer(&self, f: fn(Duration)) {
        let _ = self.fsync_observer.set(f);
    }

    /// Times the core thread waited for room.
    pub fn full_waits(&self) -> u64 {
        self.full_waits.load(Ordering::Relaxed)
    }

    /// Asks the journal thread to drain the queue, close the journal and stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.sleeping.store(false, Ordering::Release);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// A server change journaled in a [`JournalRecord::Limits`] record, whose bytes are the
/// server's own encoding: `[u8 kind][body]`.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerControl {
    /// Kind 1: an account's whole new limits, as JSON (the record's account is set).
    AccountLimits(Vec<u8>),
    /// Kind 2: an instrument's reference price: instrument u32, price i64.
    Mark(InstrumentId, Price),
    /// Kind 3: the instrument roll ran at the preceding clock.
    Roll,
    /// Kind 4: the end of the trading day ran at the preceding clock.
    EndOfDay,
    /// Kind 5: a connection opened a session slot: slot u32, cancel-on-disconnect u8.
    Open(SessionId, bool),
    /// Kind 6: the good-till-date orders due at the preceding clock expired.
    ExpireOrders,
}

impl ServerControl {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ServerControl::AccountLimits(json) => {
                let mut v = vec![1];
                v.extend_from_slice(json);
                v
            }
            ServerControl::Mark(i, p) => {
                let mut v = vec![2];
                v.extend_from_slice(&i.0.to_le_bytes());
                v.extend_from_slice(&p.0.to_le_bytes());
                v
            }
            ServerControl::Roll => vec![3],
            ServerControl::EndOfDay => vec![4],
            ServerControl::Open(s, cod) => {
                let mut v = vec![5];
                v.extend_from_slice(&s.0.to_le_bytes());
                v.push(u8::from(*cod));
                v
            }
            ServerControl::ExpireOrders => vec![6],
        }
    }

    /// Decodes a record's bytes; `None` if they are not a server control.
    pub fn decode(data: &[u8]) -> Option<Self> {
        let (&kind, body) = data.split_first()?;
        let u32_at = |i: usize| -> Option<u32> {
            Some(u32::from_le_bytes(body.get(i..i + 4)?.try_into().ok()?))
        };
        match kind {
            1 => Some(ServerControl::AccountLimits(body.to_vec())),
            2 if body.len() == 12 => Some(ServerControl::Mark(
                InstrumentId(u32_at(0)?),
                Price(i64::from_le_bytes(body.get(4..12)?.try_into().ok()?)),
            )),
            3 if body.is_empty() => Some(ServerControl::Roll),
            4 if body.is_empty() => Some(ServerControl::EndOfDay),
            5 if body.len() == 5 => Some(ServerControl::Open(
                SessionId(u32_at(0)?),
                match body[4] {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
            )),
            6 if body.is_empty() => Some(ServerControl::ExpireOrders),
            _ => None,
        }
    }

    /// As a journal record.
    pub fn record(&self, account: Option<AccountId>) -> JournalRecord {
        JournalRecord::Limits {
            account,
            data: self.encode(),
        }
    }
}

/// SHA-256 of the core's canonical state dump ([`Core::write_state`]).
pub fn state_hash(core: &Core, accounts: usize) -> [u8; 32] {
    Sha256::digest(state_dump(core, accounts)).into()
}

/// The canonical dump of the state that [`state_hash`] hashes.
fn state_dump(core: &Core, accounts: usize) -> Vec<u8> {
    let mut dump = Vec::with_capacity(4096);
    core.write_state(&mut dump, accounts);
    dump
}

/// The core thread's handle on the journal: what it pushes, and the bookkeeping that numbers
/// the records as the journal will (the core thread is the only producer).
#[derive(Debug)]
pub struct CoreJournal {
    queue: Arc<JournalQueue>,
    last_clock: i64,
    /// The sequence number of the last record pushed.
    last_seq: u64,
}

impl CoreJournal {
    /// The handle for a journal whose last record is `last_seq`.
    pub fn new(queue: Arc<JournalQueue>, last_seq: Seq) -> Self {
        Self {
            queue,
            last_clock: i64::MIN,
            last_seq: last_seq.0,
        }
    }

    /// Journals a record.
    pub fn record(&mut self, r: JournalRecord) {
        self.last_seq += 1;
        self.queue.push(JournalItem::Record(r));
    }

    /// Journals the clock if it moved since the last record that needed it.
    pub fn clock(&mut self, now_ns: i64) {
        if now_ns != self.last_clock {
            self.last_clock = now_ns;
            self.record(JournalRecord::Clock { now_ns });
        }
    }

    /// Journals a command the core thread is about to process at `now_ns`.
    pub fn command(&mut self, cmd: &Command, now_ns: i64) {
        self.clock(now_ns);
        self.record(JournalRecord::Command(*cmd));
    }

    /// Journals a server control change at `now_ns`.
    pub fn control(&mut self, c: &ServerControl, account: Option<AccountId>, now_ns: i64) {
        self.clock(now_ns);
        self.record(c.record(account));
    }

    /// Under `fsync = "always"`, hands the count of a request of `conn` as answered to the
    /// journal thread, behind the request's reports, and returns true; otherwise returns false
    /// (the caller counts it: the reports are already in the connection's queue).
    pub fn answered(&mut self, conn: &Arc<Conn>) -> bool {
        if self.queue.gated {
            self.queue.push(JournalItem::Answered(conn.clone()));
        }
        self.queue.gated
    }

    /// Takes a report: under `fsync = "always"` hands it to the journal thread (which
    /// journals an event and delivers it once durable) and returns true; otherwise journals
    /// an event and returns false (the caller delivers it).
    pub fn output(&mut self, item: Outbound, conn: Option<&Arc<Conn>>) -> bool {
        if self.queue.gated {
            if let Outbound::Event(_) = item {
                self.last_seq += 1;
            }
            self.queue.push(JournalItem::Deliver(item, conn.cloned()));
            true
        } else {
            if let Outbound::Event(e) = item {
                self.record(JournalRecord::Event(e));
            }
            false
        }
    }
}

/// The journal thread's copy of the core, fed with every record the journal thread writes
/// (exactly as a recovery replays them), from which it takes the snapshots: the core thread
/// never stops to serialise its state. Every `snapshot_every` records the replica's state is
/// encoded on the journal thread, after the batch's acknowledgements were released; the
/// encryption, write and fsync of the file run on a short-lived thread of their own.
pub struct SnapshotReplica {
    core: Core,
    replayer: crate::replay::Replayer,
    accounts: usize,
    every: u64,
    next: u64,
    batch: Vec<(Seq, JournalRecord)>,
    writing: Option<JoinHandle<()>>,
    /// A record the replica could not apply: it no longer mirrors the core, so it stops.
    broken: bool,
}

impl std::fmt::Debug for SnapshotReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReplica")
            .field("last_seq", &self.replayer.last_seq())
            .field("next", &self.next)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl SnapshotReplica {
    /// A replica of a core whose state is that after record `last_seq`, replayed up to clock
    /// `now`; it snapshots every `every` records (≥ 1).
    pub fn new(core: Core, now: i64, last_seq: Seq, accounts: usize, every: u64) -> Self {
        let every = every.max(1);
        Self {
            core,
            replayer: crate::replay::Replayer::resume(accounts, now, last_seq)
                .without_event_pairing(),
            accounts,
            every,
            next: last_seq.0 + every,
            batch: Vec::with_capacity(MAX_DRAIN),
            writing: None,
            broken: false,
        }
    }

    /// Queues a record the journal thread appended as `seq`.
    pub fn push(&mut self, seq: Seq, record: JournalRecord) {
        if !self.broken {
            self.batch.push((seq, record));
        }
    }

    /// Applies the queued records; true when a snapshot is due.
    pub fn catch_up(&mut self) -> bool {
        for (seq, rec) in self.batch.drain(..) {
            if self.broken {
                break;
            }
            if let Err(e) = self.replayer.apply(&mut self.core, seq, rec) {
                tracing::error!(error = %format!("{e:#}"), record = seq.0, "snapshot replica: a record does not apply; no more snapshots until a restart");
                self.broken = true;
            }
        }
        !self.broken && self.replayer.last_seq().0 >= self.next
    }

    /// A snapshot of the current state is being taken: the next one is due `every` records on.
    pub fn taken(&mut self) {
        self.next = self.replayer.last_seq().0 + self.every;
    }

    /// The state to snapshot: (after record, state hash, encoded state).
    #[cfg(test)]
    pub fn encode(&self) -> (Seq, [u8; 32], Vec<u8>) {
        let (seq, dump, state) = self.encode_parts();
        (seq, Sha256::digest(&dump).into(), state)
    }

    /// The snapshot's parts taken from the replica: (after record, the canonical state dump
    /// its hash is computed from, encoded state). Only the copying happens on the journal
    /// thread; hashing and sealing happen on the snapshot thread.
    fn encode_parts(&self) -> (Seq, Vec<u8>, Vec<u8>) {
        let mut state = Vec::new();
        crate::replay::encode_state(&self.core, self.replayer.clock(), &mut state);
        let dump = state_dump(&self.core, self.accounts);
        (self.replayer.last_seq(), dump, state)
    }

    /// After a batch: applies it and, when due and no snapshot is being written, encodes one
    /// and hands it to a writer thread. A failed snapshot is logged, never fatal: the journal
    /// alone recovers everything.
    fn after_batch(&mut self, writer: &mut JournalWriter) {
        if !self.catch_up() {
            return;
        }
        if self.writing.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.taken();
        let (seq, dump, state) = self.encode_parts();
        let sink = match writer.snapshot_sink() {
            Ok(sink) => sink,
            Err(e) => {
                tracing::error!(error = %e, "journal: cannot sync before a snapshot");
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("portcullis-snapshot".into())
            .spawn(move || {
                // Hashing, sealing and writing tens of MB must not take CPU from the core
                // thread and the sockets on a small machine: lowest priority.
                lower_thread_priority();
                let hash: [u8; 32] = Sha256::digest(&dump).into();
                drop(dump);
                match sink.write(seq, &hash, &state) {
                    Ok(path) => tracing::info!(
                        seq = seq.0, bytes = state.len(), path = %path.display(),
                        "journal: snapshot written"
                    ),
                    Err(e) => tracing::error!(error = %e, seq = seq.0, "journal: snapshot failed"),
                }
            });
        match spawned {
            Ok(h) => self.writing = Some(h),
            Err(e) => tracing::error!(error = %e, "journal: cannot start the snapshot writer"),
        }
    }

    /// Waits for a snapshot being written (shutdown).
    fn finish(&mut self) {
        if let Some(h) = self.writing.take() {
            let _ = h.join();
        }
    }
}

/// Gives the calling thread the lowest CPU priority (nice 19) and, where the kernel's I/O
/// scheduler honours it, the idle I/O class: for background work that must yield to the order
/// path. Best effort: failures are ignored (the work only runs slower than it could).
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority and the ioprio_set system call take plain integers and touch no
        // memory of ours; on Linux `who = 0` with PRIO_PROCESS / IOPRIO_WHO_PROCESS names the
        // calling thread (nice and I/O priority are per-thread attributes there).
        #[allow(unsafe_code)]
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
            const IOPRIO_WHO_PROCESS: libc::c_long = 1;
            const IOPRIO_CLASS_IDLE: libc::c_long = 3;
            libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                0 as libc::c_long,
                IOPRIO_CLASS_IDLE << 13,
            );
        }
    }
}

/// Starts the journal thread: it runs until [`JournalQueue::stop`], then closes the journal
/// (fsync) and returns the last durable seq. A write error ends the process (exit 1).
pub fn spawn_writer(
    mut writer: JournalWriter,
    queue: Arc<JournalQueue>,
    mut replica: Option<SnapshotReplica>,
    parked: Arc<Parked>,
    pin_cpu: Option<usize>,
) -> std::io::Result<JoinHandle<Seq>> {
    let q = queue.clone();
    // Published before any connection can read it: a drop copy that logs on at once sees the
    // recovered journal's end, not 0.
    queue.publish_acknowledged(writer.ack_seq());
    let handle = std::thread::Builder::new()
        .name("portcullis-journal".into())
        .spawn(move || {
            // The snapshot threads it starts inherit the CPU.
            if let Some(cpu) = pin_cpu {
                crate::pipeline::pin_this_thread(cpu, "journal");
            }
            let fail = |what: &str, e: portcullis_journal::JournalError| -> ! {
                tracing::error!(error = %e, "journal {what} failed: stopping the server (nothing may be acknowledged that is not journaled)");
                eprintln!("portcullis: journal {what} failed: {e}");
                std::process::exit(1);
            };
            // Reports waiting for durability; without a connection they are parked for the
            // session's next one once durable.
            let mut pending: VecDeque<(Seq, Release)> = VecDeque::new();
            let mut woken: Vec<Arc<Conn>> = Vec::new();
            let mut last_work = Instant::now();
            let mut seen_syncs = writer.fsync_stats().0;
            let mut published = writer.ack_seq();
            q.publish_acknowledged(published);
            loop {
                if let Some(ring) = q.take_rekey() {
                    match writer.set_keyring(&ring) {
                        Ok(()) => tracing::info!(key = ring.current().id(), "journal: new segments use the rotated master key"),
                        Err(e) => fail("re-key", e),
                    }
                }
                let mut n = 0;
                while n < MAX_DRAIN {
                    let Some(item) = q.queue.pop() else { break };
                    n += 1;
                    match item {
                        JournalItem::Record(r) => match writer.append(&r) {
                            Ok(seq) => {
                                if let Some(rep) = replica.as_mut() {
                                    rep.push(seq, r);
                                }
                            }
                            Err(e) => fail("append", e),
                        },
                        JournalItem::Deliver(out, conn) => {
                            let seq = match out {
                                Outbound::Event(e) => {
                                    let rec = JournalRecord::Event(e);
                                    match writer.append(&rec) {
                                        Ok(s) => {
                                            if let Some(rep) = replica.as_mut() {
                                                rep.push(s, rec);
                                            }
                                            s
                                        }
                                        Err(e) => fail("append", e),
                                    }
                                }
                                // Released with the records before it: never overtakes them.
                                Outbound::Status(_) => Seq(writer.next_seq().0 - 1),
                            };
                            pending.push_back((seq, Release::Report(out, conn)));
                        }
                        JournalItem::Answered(conn) => {
                            let seq = Seq(writer.next_seq().0 - 1);
                            pending.push_back((seq, Release::Answered(conn)));
                        }
                    }
                }
                let r = if n > 0 {
                    writer.commit()
                } else {
                    writer.poll()
                };
                if let Err(e) = r {
                    fail("commit", e);
                }
                let (syncs, took) = writer.fsync_stats();
                if syncs != seen_syncs {
                    seen_syncs = syncs;
                    if let Some(observe) = q.fsync_observer.get() {
                        observe(took);
                    }
                }
                let ack = writer.ack_seq();
                while pending.front().is_some_and(|(s, _)| *s <= ack) {
                    let Some((_, release)) = pending.pop_front() else {
                        break;
                    };
                    let (out, conn) = match release {
                        Release::Report(out, Some(conn)) => (out, conn),
                        Release::Report(out, None) => {
                            parked.park(out);
                            continue;
                        }
                        Release::Answered(conn) => {
                            conn.note_answered();
                            continue;
                        }
                    };
                    if conn.deliver_now(out) && !woken.iter().any(|c| Arc::ptr_eq(c, &conn)) {
                        woken.push(conn);
                    }
                }
                for c in woken.drain(..) {
                    c.wake();
                }
                if ack != published {
                    published = ack;
                    q.publish_acknowledged(ack);
                }
                // The replica follows after the acknowledgements are out: it never delays them.
                if let Some(rep) = replica.as_mut() {
                    rep.after_batch(&mut writer);
                }
                if n > 0 {
                    last_work = Instant::now();
                    continue;
                }
                if q.stop.load(Ordering::Acquire) && q.queue.is_empty() {
                    break;
                }
                // Spinning only pays when reports wait for us; otherwise it takes a CPU from
                // the core thread and the sockets.
                if q.gated && last_work.elapsed() < SPIN {
                    std::hint::spin_loop();
                    continue;
                }
                q.sleeping.store(true, Ordering::Relaxed);
                fence(Ordering::SeqCst);
                if q.queue.is_empty() && !q.stop.load(Ordering::Acquire) {
                    let park = writer
                        .sync_deadline()
                        .map_or(PARK, |d| d.saturating_duration_since(Instant::now()))
                        .min(PARK);
                    std::thread::park_timeout(park);
                }
                q.sleeping.store(false, Ordering::Relaxed);
                last_work = Instant::now();
            }
            if let Some(rep) = replica.as_mut() {
                rep.finish();
            }
            match writer.close() {
                Ok(seq) => seq,
                Err(e) => fail("close", e),
            }
        })?;
    let _ = queue.thread.set(handle.thread().clone());
    handle.thread().unpark();
    Ok(handle)
}

/// Journals an operator command that succeeded, with the state it produced (the new limits,
/// the parsed price), so a replay needs no parsing and cannot disagree with the live run.
pub fn journal_control(
    j: &mut CoreJournal,
    core: &Core,
    pipeline: &crate::pipeline::Pipeline,
    action: &crate::pipeline::ControlAction,
    now_ns: i64,
) {
    use crate::pipeline::ControlAction as A;
    let account = |name: &str| pipeline.account_id(name);
    let instrument = |symbol: &str| core.instruments().by_symbol(symbol);
    match action {
        A::Kill { account: a, on } => {
            let id = match a.as_deref() {
                Some(name) => match account(name) {
                    Some(id) => Some(id),
                    None => return,
                },
                None => None,
            };
            j.clock(now_ns);
            j.record(JournalRecord::KillSwitch {
                account: id,
                on: *on,
            });
        }
        A::Halt { symbol, .. } => {
            if let Some(id) = instrument(symbol) {
                if let Some(r) = core.instruments().rules(id) {
                    j.clock(now_ns);
                    j.record(JournalRecord::InstrumentStatus {
                        instrument: id,
                        status: r.status,
                    });
                }
            }
        }
        A::Mark { symbol, .. } => {
            if let Some(id) = instrument(symbol) {
                if let Some(p) = core.risk().reference_price(id) {
                    j.control(&ServerControl::Mark(id, p), None, now_ns);
                }
            }
        }
        A::Limits { account: a, .. } => {
            let Some(id) = account(a) else { return };
            let Some(limits) = core.risk().limits(id) else {
                return;
            };
            match serde_json::to_vec(limits) {
                Ok(json) => j.control(&ServerControl::AccountLimits(json), Some(id), now_ns),
                Err(e) => tracing::error!(error = %e, "cannot journal the limits change"),
            }
        }
        A::Pause | A::Resume | A::Describe => {}
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn background_threads_drop_to_the_lowest_priority_and_only_themselves() {
        // SAFETY: getpriority takes plain integers and reads no memory of ours.
        #[allow(unsafe_code)]
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let before = nice();
        let inside = std::thread::spawn(move || {
            super::lower_thread_priority();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(inside, 19);
        assert_eq!(nice(), before, "the calling thread keeps its priority");
    }
}
