//! The open-loop engine. One pacing thread sends for every session and one receiver thread
//! reads every session (epoll), so the load generator costs two threads and few wake-ups
//! however many sessions it drives: on a small machine that shares its cores with the server,
//! a thread per session would spend the server's CPU on scheduling.
//!
//! The sessions share one evenly spaced schedule: global order `g` goes to session `g mod S`
//! as that session's order `g div S`. Each answer is timed from its order's intended send time
//! (coordinated-omission correction): a late wake-up of the pacer, a blocked write or a slow
//! server all count against every order they delay.

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::fix::{AnswerKind, Event, FixEncoder};
use crate::hist::{now_ns, sleep_until, tighten_timer_slack, Recorder, Schedule};
use crate::net::{connect, read_result, FixClient, FixReader, RecvBuf};
use crate::run::{echo_index, echo_message, Counts, FloodParams, FloodResult, Target};

/// The answers of one session: which orders were answered, and their latencies.
#[derive(Debug, Clone)]
pub struct Collector {
    sched: Schedule,
    warmup_n: u64,
    seen: Vec<bool>,
    /// Latencies from the intended send times (orders after the warm-up).
    pub recorder: Recorder,
    /// Answers by kind (all orders).
    pub counts: Counts,
    /// Orders answered.
    pub answered: u64,
    /// When the last first answer came.
    pub last_ns: u64,
    /// Why the session ended early, if it did (the server closed it, logged it out...).
    pub lost: Option<String>,
}

impl Collector {
    /// Collects answers to orders `0..total` of `sched`; those below `warmup_n` are counted
    /// but not timed.
    pub fn new(sched: Schedule, total: u64, warmup_n: u64) -> Self {
        Self {
            sched,
            warmup_n,
            seen: vec![false; total as usize],
            recorder: Recorder::new(),
            counts: Counts::default(),
            answered: 0,
            last_ns: 0,
            lost: None,
        }
    }

    /// An answer to order `i` arrived at `now_ns`. Only the first answer to an order counts
    /// (a fill after the acknowledgement does not); numbers outside the run are ignored.
    pub fn on_answer(&mut self, i: u64, kind: AnswerKind, now_ns: u64) {
        let Some(seen) = self.seen.get_mut(i as usize).filter(|s| !**s) else {
            return;
        };
        *seen = true;
        self.answered += 1;
        self.last_ns = now_ns;
        self.counts.add(kind);
        if i >= self.warmup_n {
            self.recorder
                .record_from_intended(self.sched.intended(i), now_ns);
        }
    }

    /// True once every order has an answer.
    pub fn complete(&self) -> bool {
        self.answered == self.seen.len() as u64
    }

    /// True once nothing more is expected: every order answered, or the session lost.
    pub fn finished(&self) -> bool {
        self.complete() || self.lost.is_some()
    }
}

/// The sending side of one session.
pub trait Tx: Send {
    /// Appends what the receiver asked to send (Heartbeats answering TestRequests, cancels).
    fn queued(&mut self, _out: &mut Vec<u8>) {}
    /// Appends order `i`.
    fn order(&mut self, i: u64, out: &mut Vec<u8>);
    /// Appends what ends the session (a FIX Logout), if anything.
    fn logout(&mut self, _out: &mut Vec<u8>) {}
}

/// What one decoded message from a session was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv {
    /// The answer to order `i` of the session.
    Answer(u64, AnswerKind),
    /// A message that answers no order (heartbeat, cancel acknowledgement...).
    Nothing,
}

/// The receiving side of one session.
pub trait Rx: Send {
    /// The socket.
    fn fd(&self) -> RawFd;
    /// Reads once without waiting; false if nothing was there.
    fn read_once(&mut self) -> Result<bool>;
    /// The next message among those read, or `None`.
    fn next(&mut self) -> Result<Option<Recv>>;
    /// After [`Tx::logout`] was sent: waits up to `timeout` for the peer's answer to it.
    fn await_logout(&mut self, _timeout: Duration) {}
}

/// Orders per write at most, to bound the buffers when far behind.
const MAX_BATCH: u64 = 1024;

/// Sends `per_session` orders on each session, order `g` of `sched` going to session
/// `g mod S`. Each wake-up sends everything due, one write per session, then sleeps until the
/// next intended send time, or for `tick` if that is longer. Once all are sent it keeps sending what the receiver queues until
/// `done` is set (also the way to stop it early). A session whose write fails is dropped (the
/// receiver reports why it ended). Returns how late each wake-up sent the first order due (the
/// load generator's own share of the latencies).
pub fn run_pacer<W: Write>(
    writers: &mut [W],
    txs: &mut [Box<dyn Tx>],
    sched: Schedule,
    per_session: u64,
    tick: Duration,
    done: &AtomicBool,
) -> Result<Recorder> {
    let tick = tick.as_nanos() as u64;
    tighten_timer_slack();
    let mut lag = Recorder::new();
    let n = txs.len() as u64;
    let total = per_session * n;
    let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| Vec::with_capacity(64 * 1024)).collect();
    let mut next = 0;
    let mut dead = vec![false; txs.len()];
    while !done.load(Ordering::Acquire) {
        let now = now_ns();
        let due = sched.due_by(now).min(total);
        let upto = due.min(next + MAX_BATCH);
        if upto > next {
            lag.record_from_intended(sched.intended(next), now);
        }
        for (tx, buf) in txs.iter_mut().zip(bufs.iter_mut()) {
            buf.clear();
            tx.queued(buf);
        }
        for g in next..upto {
            let k = (g % n) as usize;
            txs[k].order(g / n, &mut bufs[k]);
        }
        next = upto;
        for ((w, buf), dead) in writers.iter_mut().zip(bufs.iter()).zip(dead.iter_mut()) {
            if !buf.is_empty() && !*dead && w.write_all(buf).is_err() {
                *dead = true;
            }
        }
        if dead.iter().all(|d| *d) {
            bail!("every session's connection failed");
        }
        if next >= total {
            std::thread::sleep(Duration::from_micros(200));
        } else if next >= due {
            sleep_until(sched.intended(next).max(now + tick));
        }
    }
    Ok(lag)
}

/// Reads every session until each collector is complete or the clock passes `deadline_ns`.
pub fn run_receiver(
    rxs: &mut [Box<dyn Rx>],
    collectors: &mut [Collector],
    deadline_ns: u64,
) -> Result<()> {
    // SAFETY: plain system calls on descriptors we own; `events` outlives every epoll_wait.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(std::io::Error::last_os_error()).context("epoll_create1");
    }
    let result = (|| {
        for (k, rx) in rxs.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: k as u64,
            };
            // SAFETY: `ev` is a valid epoll_event for the duration of the call.
            if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, rx.fd(), &mut ev) } < 0 {
                return Err(std::io::Error::last_os_error()).context("epoll_ctl");
            }
        }
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let mut open = collectors.iter().filter(|c| !c.finished()).count();
        while open > 0 && now_ns() <= deadline_ns {
            // SAFETY: `events` has room for 64 entries.
            let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 64, 50) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("epoll_wait");
            }
            for ev in &events[..n as usize] {
                let k = ev.u64 as usize;
                let (rx, c) = (&mut rxs[k], &mut collectors[k]);
                if c.lost.is_some() {
                    continue;
                }
                let was_finished = c.finished();
                if let Err(e) = drain(rx.as_mut(), c) {
                    // The session is over (the server closed or logged it out): its missing
                    // answers count as unanswered, the other sessions go on.
                    c.lost = Some(format!("{e:#}"));
                    // SAFETY: removing a descriptor we added; no event pointer is needed.
                    unsafe {
                        libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, rx.fd(), std::ptr::null_mut())
                    };
                }
                if !was_finished && c.finished() {
                    open -= 1;
                }
            }
        }
        Ok(())
    })();
    // SAFETY: `ep` is ours and closed once.
    unsafe { libc::close(ep) };
    result
}

/// Reads what one session has and hands its answers to its collector.
fn drain(rx: &mut dyn Rx, c: &mut Collector) -> Result<()> {
    rx.read_once()?;
    while let Some(r) = rx.next()? {
        if let Recv::Answer(i, kind) = r {
            c.on_answer(i, kind, now_ns());
        }
    }
    Ok(())
}

/// Messages a FIX receiver asks the pacer to send.
#[derive(Debug, Default)]
struct Queued {
    cancels: Vec<u64>,
    test_reqs: Vec<Vec<u8>>,
}

struct FixTx {
    enc: FixEncoder,
    queued: Arc<Mutex<Queued>>,
}

impl Tx for FixTx {
    fn queued(&mut self, out: &mut Vec<u8>) {
        let Ok(mut q) = self.queued.lock() else {
            return;
        };
        for i in q.cancels.drain(..) {
            self.enc.cancel(i, out);
        }
        for id in q.test_reqs.drain(..) {
            self.enc.heartbeat(Some(&id), out);
        }
    }

    fn order(&mut self, i: u64, out: &mut Vec<u8>) {
        self.enc.order(i, out);
    }

    fn logout(&mut self, out: &mut Vec<u8>) {
        self.enc.logout(out);
    }
}

struct FixRx {
    reader: FixReader,
    queued: Arc<Mutex<Queued>>,
    cancel_after: bool,
}

impl Rx for FixRx {
    fn fd(&self) -> RawFd {
        self.reader.fd()
    }

    fn read_once(&mut self) -> Result<bool> {
        self.reader.read_dontwait()
    }

    fn next(&mut self) -> Result<Option<Recv>> {
        let Some(ev) = self.reader.buffered()? else {
            return Ok(None);
        };
        Ok(Some(match ev {
            Event::Answer {
                index,
                cancel: false,
                kind,
            } => {
                if self.cancel_after && kind == AnswerKind::New {
                    if let Ok(mut q) = self.queued.lock() {
                        q.cancels.push(index);
                    }
                }
                Recv::Answer(index, kind)
            }
            Event::TestRequest(id) => {
                if let Ok(mut q) = self.queued.lock() {
                    q.test_reqs.push(id);
                }
                Recv::Nothing
            }
            Event::Logout(text) => bail!("the server logged us out: {text}"),
            Event::SessionReject { ref_seq, text } => {
                bail!("session-level reject of message {ref_seq:?}: {text}")
            }
            _ => Recv::Nothing,
        }))
    }

    fn await_logout(&mut self, timeout: Duration) {
        // Answers still in flight come first; the server may close right after its Logout.
        let deadline = now_ns() + timeout.as_nanos() as u64;
        if self
            .reader
            .set_timeout(Some(Duration::from_millis(100)))
            .is_err()
        {
            return;
        }
        while now_ns() < deadline {
            match self.reader.recv() {
                Ok(Some(Event::Logout(_))) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

struct EchoTx {
    size: usize,
}

impl Tx for EchoTx {
    fn order(&mut self, i: u64, out: &mut Vec<u8>) {
        echo_message(i, self.size, out);
    }
}

struct EchoRx {
    stream: TcpStream,
    rx: RecvBuf,
    size: usize,
}

impl Rx for EchoRx {
    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    fn read_once(&mut self) -> Result<bool> {
        read_result(self.rx.fill_dontwait(self.fd()), "the echo server")
    }

    fn next(&mut self) -> Result<Option<Recv>> {
        Ok(self
            .rx
            .next_chunk(self.size)
            .map(|r| Recv::Answer(echo_index(self.rx.bytes(r)), AnswerKind::Echo)))
    }
}

/// One open-loop run over `p.sessions` connections at `p.rate` orders per second in all.
pub fn flood(addr: &str, target: &Target, p: &FloodParams) -> Result<FloodResult> {
    let sessions = p.sessions.max(1);
    let n = sessions as u64;
    let secs = (p.warmup + p.duration).as_secs_f64();
    let per_session_rate = p.rate / sessions as f64;
    let per_session = ((per_session_rate * secs).round() as u64).max(1);
    let warmup_n = (per_session_rate * p.warmup.as_secs_f64()).round() as u64;
    let token = crate::run::run_token();

    // Connect (and log on) everyone first, then start the schedule.
    let mut writers = Vec::with_capacity(sessions);
    let mut txs: Vec<Box<dyn Tx>> = Vec::with_capacity(sessions);
    let mut rxs: Vec<Box<dyn Rx>> = Vec::with_capacity(sessions);
    for k in 1..=sessions {
        match target {
            Target::Fix(o) => {
                let enc = FixEncoder::new(o.for_session(k), &crate::run::cl_ord_prefix(&token, k));
                let (enc, writer, reader) = FixClient::logon(addr, enc)?.into_parts();
                let queued = Arc::new(Mutex::new(Queued::default()));
                writers.push(writer);
                txs.push(Box::new(FixTx {
                    enc,
                    queued: queued.clone(),
                }));
                rxs.push(Box::new(FixRx {
                    reader,
                    queued,
                    cancel_after: p.cancel_after,
                }));
            }
            Target::Ws(o) => {
                let (writer, tx, rx) = crate::ws::flood_session(addr, o, &token, k)?;
                writers.push(writer);
                txs.push(tx);
                rxs.push(rx);
            }
            Target::Echo { size } => {
                let s = connect(addr)?;
                writers.push(s.try_clone()?);
                txs.push(Box::new(EchoTx {
                    size: (*size).max(8),
                }));
                rxs.push(Box::new(EchoRx {
                    stream: s,
                    rx: RecvBuf::new(),
                    size: (*size).max(8),
                }));
            }
        }
    }
    let global = Schedule::per_second(now_ns() + 20_000_000, p.rate);
    let interval = global.interval_ns;
    let mut collectors: Vec<Collector> = (0..n)
        .map(|k| {
            let sched = Schedule {
                start_ns: global.start_ns + k * interval,
                interval_ns: interval * n,
            };
            Collector::new(sched, per_session, warmup_n)
        })
        .collect();
    let deadline = global.intended(per_session * n) + p.drain.as_nanos() as u64;

    let done = Arc::new(AtomicBool::new(false));
    let pacer = {
        let done = done.clone();
        let tick = p.tick;
        std::thread::spawn(move || {
            let r = run_pacer(&mut writers, &mut txs, global, per_session, tick, &done);
            (r, writers, txs)
        })
    };
    let received = run_receiver(&mut rxs, &mut collectors, deadline);
    if p.cancel_after && received.is_ok() {
        // Let the last queued cancels go out.
        std::thread::sleep(Duration::from_millis(5));
    }
    done.store(true, Ordering::Release);
    let (sent, mut writers, mut txs) = pacer
        .join()
        .map_err(|_| anyhow!("the pacing thread panicked"))?;
    received?;
    let send_lag = sent?.summary();

    // End the sessions (FIX: Logout, and wait for the server's).
    let mut buf = Vec::new();
    for ((tx, w), c) in txs.iter_mut().zip(writers.iter_mut()).zip(&collectors) {
        buf.clear();
        tx.logout(&mut buf);
        if !buf.is_empty() && c.lost.is_none() {
            // A session the server has just dropped may fail here too: nothing to log out.
            let _ = w.write_all(&buf);
        }
    }
    for (rx, c) in rxs.iter_mut().zip(&collectors) {
        if c.lost.is_none() {
            rx.await_logout(Duration::from_secs(5));
        }
    }

    let mut recorder = Recorder::new();
    let mut counts = Counts::default();
    let (mut answered, mut last) = (0, global.start_ns);
    let mut lost = Vec::new();
    for (k, c) in collectors.iter().enumerate() {
        if let Some(why) = &c.lost {
            lost.push(format!("session {}: {why}", k + 1));
        }
        recorder.merge(&c.recorder);
        counts.merge(&c.counts);
        answered += c.answered;
        last = last.max(c.last_ns);
    }
    let elapsed = ((last - global.start_ns) as f64 / 1e9).max(secs);
    Ok(FloodResult {
        target: target.name(),
        sessions,
        tick: p.tick,
        rate: p.rate,
        achieved: answered as f64 / elapsed,
        scheduled: per_session * n,
        answered,
        latency: recorder.summary(),
        send_lag,
        counts,
        lost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn first_answers_are_timed_from_their_intended_send_times() {
        let sched = Schedule {
            start_ns: 1_000,
            interval_ns: 100,
        };
        let mut c = Collector::new(sched, 4, 1);
        // Out of order, a duplicate, a stranger, a late one.
        c.on_answer(1, AnswerKind::BusinessReject, 1_150);
        c.on_answer(0, AnswerKind::New, 1_200);
        c.on_answer(0, AnswerKind::OtherExec(b'2'), 1_250); // a later fill of order 0
        c.on_answer(99, AnswerKind::New, 1_260); // not in the run
        c.on_answer(2, AnswerKind::New, 1_300);
        assert!(!c.complete());
        c.on_answer(3, AnswerKind::Rejected, 2_300); // 1 µs late
        assert!(c.complete());
        assert_eq!(c.answered, 4);
        assert_eq!(c.last_ns, 2_300);
        assert_eq!(c.counts.exec_new, 2);
        assert_eq!(c.counts.business_reject, 1);
        assert_eq!(c.counts.exec_rejected, 1);
        assert_eq!(c.counts.exec_other, 0);
        // Order 0 is warm-up; 1: 1150-1100 = 50, 2: 1300-1200 = 100, 3: 2300-1300 = 1000.
        let s = c.recorder.summary();
        assert_eq!(s.count, 3);
        assert_eq!(s.p50_ns, 100);
        assert_eq!(s.max_ns, 1_000);
    }

    struct Numbers(Vec<u64>);
    impl Tx for Numbers {
        fn order(&mut self, i: u64, out: &mut Vec<u8>) {
            self.0.push(i);
            echo_message(i, 8, out);
        }
    }

    /// Collects what was written; stops the pacer once all sinks together have `stop_at` bytes.
    struct Sink<'a>(Vec<u8>, &'a AtomicBool, &'a AtomicUsize, usize);
    impl Write for Sink<'_> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(b);
            if self.2.fetch_add(b.len(), Ordering::AcqRel) + b.len() >= self.3 {
                self.1.store(true, Ordering::Release);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_pacer_deals_orders_round_robin_and_sends_all_that_is_due() {
        let done = AtomicBool::new(false);
        let written = AtomicUsize::new(0);
        let mut sinks = vec![
            Sink(Vec::new(), &done, &written, 200 * 8),
            Sink(Vec::new(), &done, &written, 200 * 8),
        ];
        let mut txs: Vec<Box<dyn Tx>> = vec![Box::new(Numbers(vec![])), Box::new(Numbers(vec![]))];
        // 200 orders at one per 10 µs: 2 ms. The pacer starts behind: a whole batch is due.
        let sched = Schedule {
            start_ns: now_ns().saturating_sub(500_000),
            interval_ns: 10_000,
        };
        run_pacer(&mut sinks, &mut txs, sched, 100, Duration::ZERO, &done).unwrap();
        for (k, sink) in sinks.iter().enumerate() {
            let got: Vec<u64> = sink.0.chunks(8).map(echo_index).collect();
            assert_eq!(got, (0..100).collect::<Vec<_>>(), "session {k}");
        }
    }
}
