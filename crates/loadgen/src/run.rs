//! The measurements: closed-loop ping-pong and open-loop floods, against a FIX server or the
//! bare TCP echo server, and the search for the highest rate that keeps p99 under 1 ms.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use crate::fix::{AnswerKind, Event, FixEncoder, FixOptions};
use crate::hist::{now_ns, Recorder, Summary};
use crate::net::{connect, is_timeout, FixClient, RecvBuf};

/// What a server is: the FIX server under test, or the echo floor.
#[derive(Debug, Clone)]
pub enum Target {
    /// A FIX server, spoken to with these options.
    Fix(Box<FixOptions>),
    /// The bare TCP echo server, sent messages of this many bytes.
    Echo {
        /// Bytes per message (at least 8: the first 8 carry the message number).
        size: usize,
    },
    /// The server's WebSocket API, spoken to with these options.
    Ws(Box<crate::ws::WsOptions>),
}

impl Target {
    /// `fix` or `echo`.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Fix(_) => "fix",
            Target::Echo { .. } => "echo",
            Target::Ws(_) => "ws",
        }
    }
}

/// How many answers of each kind came back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// ExecutionReports with ExecType New.
    pub exec_new: u64,
    /// ExecutionReports with ExecType Rejected.
    pub exec_rejected: u64,
    /// Other ExecutionReports.
    pub exec_other: u64,
    /// OrderCancelRejects.
    pub cancel_reject: u64,
    /// BusinessMessageRejects.
    pub business_reject: u64,
    /// Echoed messages.
    pub echo: u64,
}

impl Counts {
    /// Counts one answer.
    pub fn add(&mut self, kind: AnswerKind) {
        match kind {
            AnswerKind::New => self.exec_new += 1,
            AnswerKind::Rejected => self.exec_rejected += 1,
            AnswerKind::OtherExec(_) => self.exec_other += 1,
            AnswerKind::CancelReject => self.cancel_reject += 1,
            AnswerKind::BusinessReject => self.business_reject += 1,
            AnswerKind::Echo => self.echo += 1,
        }
    }

    /// Adds another count.
    pub fn merge(&mut self, o: &Counts) {
        self.exec_new += o.exec_new;
        self.exec_rejected += o.exec_rejected;
        self.exec_other += o.exec_other;
        self.cancel_reject += o.cancel_reject;
        self.business_reject += o.business_reject;
        self.echo += o.echo;
    }

    fn pairs(&self) -> [(&'static str, u64); 6] {
        [
            ("exec_new", self.exec_new),
            ("exec_rejected", self.exec_rejected),
            ("exec_other", self.exec_other),
            ("cancel_reject", self.cancel_reject),
            ("business_reject", self.business_reject),
            ("echo", self.echo),
        ]
    }

    /// As a JSON object of the non-zero counts.
    pub fn to_json(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .pairs()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| ((*k).to_owned(), json!(n)))
            .collect();
        serde_json::Value::Object(map)
    }

    /// `business_reject=1000, exec_new=3` (the non-zero counts).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .pairs()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A token unique to this run (base 36 of the microseconds since the epoch), so ClOrdIDs never
/// repeat across runs within a trading day.
pub fn run_token() -> String {
    let mut v = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let mut s = Vec::new();
    while v > 0 {
        s.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(v % 36) as usize]);
        v /= 36;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// The ClOrdID prefix of session `session` (1-based) in the run of `token`.
pub fn cl_ord_prefix(token: &str, session: usize) -> String {
    format!("{token}s{session}")
}

/// The size of the NewOrderSingle these options encode (the echo floor's default message size).
pub fn order_size(opts: &FixOptions) -> usize {
    let mut enc = FixEncoder::new(opts.for_session(1), &cl_ord_prefix(&run_token(), 1));
    let mut out = Vec::new();
    // The size of an order in the middle of a ping-pong (MsgSeqNum and ClOrdID number of five
    // digits).
    for _ in 0..10_000 {
        enc.heartbeat(None, &mut out);
        out.clear();
    }
    enc.order(12_345, &mut out);
    out.len()
}

// ---------------------------------------------------------------------------------------------
// Ping-pong

/// The outcome of a ping-pong run.
#[derive(Debug, Clone)]
pub struct PingPongResult {
    /// `fix` or `echo`.
    pub target: &'static str,
    /// Bytes of each message sent.
    pub message_size: usize,
    /// Mean bytes of the answers (FIX: the server's answer; echo: the same as sent).
    pub answer_size: f64,
    /// Round trips not measured first.
    pub warmup: u64,
    /// Round-trip times, nanoseconds.
    pub latency: Summary,
    /// What the answers were.
    pub counts: Counts,
}

impl PingPongResult {
    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "mode": "pingpong",
            "target": self.target,
            "sessions": 1,
            "message_size": self.message_size,
            "answer_size": self.answer_size.round(),
            "warmup": self.warmup,
            "latency": self.latency.to_json(),
            "answers": self.counts.to_json(),
        })
    }
}

/// Waits for the first answer to order `index` (or its cancel), answering TestRequests.
fn wait_answer(c: &mut FixClient, index: u64, cancel: bool) -> Result<AnswerKind> {
    loop {
        match c.reader.recv()? {
            Some(Event::Answer {
                index: i,
                cancel: cx,
                kind,
            }) if i == index && cx == cancel => return Ok(kind),
            Some(Event::TestRequest(id)) => c.heartbeat(Some(&id))?,
            Some(Event::Logout(text)) => bail!("the server logged us out: {text}"),
            Some(Event::SessionReject { ref_seq, text }) => {
                bail!("session-level reject of message {ref_seq:?}: {text}")
            }
            Some(_) => {}
            None => bail!("no answer to order {index} within 10 s"),
        }
    }
}

/// One order at a time over one FIX session: send, wait for the first answer, repeat.
/// `cancel_after` cancels each acknowledged order (not timed) to keep the book small.
pub fn pingpong_fix(
    addr: &str,
    opts: &FixOptions,
    warmup: u64,
    count: u64,
    cancel_after: bool,
) -> Result<PingPongResult> {
    let enc = FixEncoder::new(opts.for_session(1), &cl_ord_prefix(&run_token(), 1));
    let mut c = FixClient::logon(addr, enc)?;
    c.reader.set_timeout(Some(Duration::from_secs(10)))?;
    let mut rec = Recorder::new();
    let mut counts = Counts::default();
    let mut out = Vec::with_capacity(1024);
    let (mut size, mut answer_bytes) = (0, 0u64);
    for i in 0..warmup + count {
        out.clear();
        c.enc.order(i, &mut out);
        size = out.len();
        let t0 = now_ns();
        c.writer.write_all(&out)?;
        let kind = wait_answer(&mut c, i, false)?;
        let t1 = now_ns();
        if i >= warmup {
            rec.record(t1 - t0);
            counts.add(kind);
            answer_bytes += c.reader.last_len() as u64;
        }
        if cancel_after && kind == AnswerKind::New {
            out.clear();
            c.enc.cancel(i, &mut out);
            c.writer.write_all(&out)?;
            wait_answer(&mut c, i, true)?;
        }
    }
    c.logout()?;
    Ok(PingPongResult {
        target: "fix",
        message_size: size,
        answer_size: answer_bytes as f64 / count.max(1) as f64,
        warmup,
        latency: rec.summary(),
        counts,
    })
}

/// Logs on `sessions` FIX sessions (1..=sessions), says so on stdout, keeps them idle for
/// `hold` (answering test requests), then logs them out. With `first_alone`, session 1 logs on
/// first and stays alone that long (said on stdout too), so that the server's memory can be
/// read with one session and with all: the difference is what each further session costs,
/// without the one-time costs the first one brings.
pub fn idle_fix(
    addr: &str,
    opts: &FixOptions,
    sessions: usize,
    first_alone: Duration,
    hold: Duration,
) -> Result<()> {
    let token = run_token();
    let mut clients = Vec::with_capacity(sessions);
    for n in 1..=sessions {
        let enc = FixEncoder::new(opts.for_session(n), &cl_ord_prefix(&token, n));
        clients.push(FixClient::logon(addr, enc)?);
        if n == 1 && !first_alone.is_zero() && sessions > 1 {
            println!("idle: 1 session logged on");
            std::io::stdout().flush()?;
            std::thread::sleep(first_alone);
        }
    }
    println!("idle: {sessions} sessions logged on");
    std::io::stdout().flush()?;
    let end = std::time::Instant::now() + hold;
    while std::time::Instant::now() < end {
        for c in &mut clients {
            // Only session-level traffic can come: answer a TestRequest, skip the rest.
            while c.reader.read_dontwait()? {
                while let Some(ev) = c.reader.buffered()? {
                    if let Event::TestRequest(id) = ev {
                        c.heartbeat(Some(&id))?;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in clients {
        c.logout()?;
    }
    Ok(())
}

/// Writes message `index` of `size` bytes: the number (8 bytes, little endian), then filler.
pub(crate) fn echo_message(index: u64, size: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&index.to_le_bytes());
    out.resize(out.len() + size.saturating_sub(8), b'x');
}

/// The number carried by an echoed message.
pub(crate) fn echo_index(msg: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&msg[..8]);
    u64::from_le_bytes(b)
}

/// Reads the next echoed message of `size` bytes: its number, or `None` on a read timeout.
fn recv_echo(s: &mut TcpStream, rx: &mut RecvBuf, size: usize) -> Result<Option<u64>> {
    loop {
        if let Some(r) = rx.next_chunk(size) {
            return Ok(Some(echo_index(rx.bytes(r))));
        }
        match rx.fill_from(s) {
            Ok(0) => bail!("the echo server closed the connection"),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Ok(None),
            Err(e) => return Err(e).context("reading from the echo server"),
        }
    }
}

/// The floor: the same ping-pong against a bare TCP echo server, `size` bytes each way.
pub fn pingpong_echo(addr: &str, size: usize, warmup: u64, count: u64) -> Result<PingPongResult> {
    let size = size.max(8);
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut rx = RecvBuf::new();
    let mut rec = Recorder::new();
    let mut counts = Counts::default();
    let mut out = Vec::with_capacity(size);
    for i in 0..warmup + count {
        out.clear();
        echo_message(i, size, &mut out);
        let t0 = now_ns();
        s.write_all(&out)?;
        let got = recv_echo(&mut s, &mut rx, size)?
            .ok_or_else(|| anyhow!("no echo of message {i} within 10 s"))?;
        let t1 = now_ns();
        if got != i {
            bail!("echo of message {got} while waiting for {i}");
        }
        if i >= warmup {
            rec.record(t1 - t0);
            counts.add(AnswerKind::Echo);
        }
    }
    Ok(PingPongResult {
        target: "echo",
        message_size: size,
        answer_size: size as f64,
        warmup,
        latency: rec.summary(),
        counts,
    })
}

// ---------------------------------------------------------------------------------------------
// Open-loop flood

/// The shape of one open-loop run.
#[derive(Debug, Clone, Copy)]
pub struct FloodParams {
    /// Sessions (connections), each with its own sender and receiver thread.
    pub sessions: usize,
    /// Orders per second, all sessions together.
    pub rate: f64,
    /// Measured time.
    pub duration: Duration,
    /// Time at the same rate before the measured time (sent and answered, not recorded).
    pub warmup: Duration,
    /// How long after the last intended send time to wait for the last answers.
    pub drain: Duration,
    /// Cancel each acknowledged order (FIX only).
    pub cancel_after: bool,
    /// Shortest sleep of the pacing thread: zero wakes it for every intended send time; a tick
    /// lets orders due meanwhile go out together, as a batching client would send them (their
    /// wait still counts: latency is measured from the intended times).
    pub tick: Duration,
}

/// The outcome of one open-loop run.
#[derive(Debug, Clone)]
pub struct FloodResult {
    /// `fix` or `echo`.
    pub target: &'static str,
    /// Sessions.
    pub sessions: usize,
    /// Shortest sleep of the pacing thread (`FloodParams::tick`): zero for one write per order,
    /// more for a client that batches what falls due meanwhile.
    pub tick: Duration,
    /// Intended orders per second.
    pub rate: f64,
    /// Orders answered per second: answered / (first intended send to last answer, or the
    /// scheduled time if longer).
    pub achieved: f64,
    /// Orders the schedule called for.
    pub scheduled: u64,
    /// Orders that got an answer.
    pub answered: u64,
    /// Latency from each order's intended send time to its first answer (measured time only).
    pub latency: Summary,
    /// How late the pacing thread sent the first order due at each wake-up (whole run): the
    /// load generator's and the scheduler's share of `latency`.
    pub send_lag: Summary,
    /// What the answers were.
    pub counts: Counts,
    /// Sessions that ended before all their orders were answered, and why.
    pub lost: Vec<String>,
}

/// p99 must stay under this for a rate to count (DESIGN.md §6).
pub const P99_LIMIT_NS: u64 = 1_000_000;
/// The achieved rate must be at least this share of the intended one.
pub const MIN_ACHIEVED: f64 = 0.95;

impl FloodResult {
    /// Orders that got no answer.
    pub fn unanswered(&self) -> u64 {
        self.scheduled - self.answered
    }

    /// Orders the server refused (rejected ExecutionReports, BusinessMessageRejects, the
    /// WebSocket API's errors): a "server busy" is back-pressure, not a sustained rate.
    pub fn refused(&self) -> u64 {
        self.counts.exec_rejected + self.counts.business_reject
    }

    /// True if the run met p99 < 1 ms, achieved ≥ 95 % of the rate, and every order was
    /// answered and none refused.
    pub fn passed(&self) -> bool {
        self.latency.count > 0
            && self.latency.p99_ns < P99_LIMIT_NS
            && self.achieved >= MIN_ACHIEVED * self.rate
            && self.unanswered() == 0
            && self.refused() == 0
            && self.lost.is_empty()
    }

    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "target": self.target,
            "sessions": self.sessions,
            "tick_us": self.tick.as_micros() as u64,
            "rate": self.rate.round(),
            "achieved": self.achieved.round(),
            "scheduled": self.scheduled,
            "answered": self.answered,
            "unanswered": self.unanswered(),
            "passed": self.passed(),
            "latency": self.latency.to_json(),
            "send_lag": self.send_lag.to_json(),
            "answers": self.counts.to_json(),
            "lost_sessions": self.lost,
        })
    }
}

pub use crate::flood::flood;

/// The default rate steps of `--find-max`, orders per second.
pub const DEFAULT_STEPS: &[f64] = &[
    10_000.0,
    25_000.0,
    35_000.0,
    50_000.0,
    75_000.0,
    100_000.0,
    150_000.0,
    200_000.0,
    300_000.0,
    400_000.0,
    500_000.0,
    750_000.0,
    1_000_000.0,
];

/// The outcome of a search for the highest passing rate.
#[derive(Debug, Clone)]
pub struct FindMaxResult {
    /// Every step run, in order (the last one failed unless every step passed).
    pub steps: Vec<FloodResult>,
}

impl FindMaxResult {
    /// The highest passing step, if any.
    pub fn best(&self) -> Option<&FloodResult> {
        self.steps.iter().rev().find(|s| s.passed())
    }

    /// As JSON.
    pub fn to_json(&self, target: &str, sessions: usize) -> serde_json::Value {
        let best = self.best();
        json!({
            "mode": "flood-max",
            "target": target,
            "sessions": sessions,
            "tick_us": self.steps.first().map_or(0, |s| s.tick.as_micros() as u64),
            "max_rate": best.map_or(0.0, |b| b.rate.round()),
            "max_achieved": best.map_or(0.0, |b| b.achieved.round()),
            "p99_ns_at_max": best.map(|b| b.latency.p99_ns),
            "all_steps_passed": self.steps.iter().all(FloodResult::passed),
            "steps": self.steps.iter().map(FloodResult::to_json).collect::<Vec<_>>(),
        })
    }
}

/// How [`find_max`] steps through the rates.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// The rates, orders per second, in the order they are tried.
    pub steps: Vec<f64>,
    /// Runs at one rate before the step counts as failed (a retry keeps one stall of a shared
    /// machine from failing a step).
    pub attempts: u32,
    /// Consecutive failed steps that end the search (1: stop at the first failure).
    pub patience: u32,
}

/// Runs `flood` at each rate of `search.steps` in turn: a step passes if one of its
/// `attempts` runs has p99 < 1 ms, at least 95 % of the rate achieved and every order
/// answered; the search ends after `patience` consecutive failed steps. The result's best is
/// the highest rate that passed. `on_step` sees each run as it finishes.
pub fn find_max(
    addr: &str,
    target: &Target,
    p: &FloodParams,
    search: &Search,
    on_step: impl FnMut(&FloodResult),
) -> Result<FindMaxResult> {
    search_rates(
        search,
        |rate| {
            let r = flood(addr, target, &FloodParams { rate, ..*p });
            // Let the server settle (logouts, queued output) before the next run.
            std::thread::sleep(Duration::from_millis(200));
            r
        },
        on_step,
    )
}

/// The search of [`find_max`] over any way of running one rate.
pub fn search_rates(
    search: &Search,
    mut run: impl FnMut(f64) -> Result<FloodResult>,
    mut on_step: impl FnMut(&FloodResult),
) -> Result<FindMaxResult> {
    let mut out = FindMaxResult { steps: Vec::new() };
    let mut failed_in_a_row = 0;
    for &rate in &search.steps {
        let mut passed = false;
        for _ in 0..search.attempts.max(1) {
            let r = run(rate)?;
            on_step(&r);
            passed = r.passed();
            out.steps.push(r);
            if passed {
                break;
            }
        }
        if passed {
            failed_in_a_row = 0;
        } else {
            failed_in_a_row += 1;
            if failed_in_a_row >= search.patience.max(1) {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_verdicts() {
        let mut r = FloodResult {
            target: "fix",
            sessions: 16,
            tick: Duration::from_micros(200),
            rate: 100_000.0,
            achieved: 99_000.0,
            scheduled: 10,
            answered: 10,
            latency: Summary {
                count: 10,
                p99_ns: 999_999,
                ..Summary::default()
            },
            send_lag: Summary::default(),
            counts: Counts::default(),
            lost: Vec::new(),
        };
        assert!(r.passed());
        r.latency.p99_ns = P99_LIMIT_NS;
        assert!(!r.passed(), "p99 must be under 1 ms");
        r.latency.p99_ns = 10;
        r.achieved = 94_000.0;
        assert!(!r.passed(), "95 % of the rate at least");
        r.achieved = 100_000.0;
        r.answered = 9;
        assert!(!r.passed(), "every order answered");
        r.answered = 10;
        r.lost = vec!["session 2: the server closed the connection".into()];
        assert!(!r.passed(), "no session lost");
        r.lost.clear();
        r.counts.exec_rejected = 1;
        assert!(!r.passed(), "no order refused");
        r.counts.exec_rejected = 0;
        r.counts.business_reject = 1;
        assert!(!r.passed(), "no order refused");
        r.counts.business_reject = 0;
        assert!(r.passed());
        r.answered = 9;
        let m = FindMaxResult {
            steps: vec![
                FloodResult {
                    answered: 10,
                    rate: 50_000.0,
                    ..r.clone()
                },
                r.clone(),
            ],
        };
        assert_eq!(m.best().unwrap().rate, 50_000.0);
        let j = m.to_json("fix", 16);
        assert_eq!(j["max_rate"], 50_000.0);
        assert_eq!(j["steps"][1]["unanswered"], 1);
        assert_eq!(j["tick_us"], 200);
    }

    fn fake_run(rate: f64, passes: bool) -> FloodResult {
        FloodResult {
            target: "echo",
            sessions: 1,
            tick: Duration::ZERO,
            rate,
            achieved: rate,
            scheduled: 10,
            answered: 10,
            latency: Summary {
                count: 10,
                p99_ns: if passes { 100 } else { P99_LIMIT_NS },
                ..Summary::default()
            },
            send_lag: Summary::default(),
            counts: Counts::default(),
            lost: Vec::new(),
        }
    }

    #[test]
    fn the_search_retries_and_stops_after_enough_failed_steps() {
        let steps = vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0];
        // 20 fails once then passes; 30 fails twice; 40 passes; 50 and 60 fail.
        let script = |rate: f64, attempt: u32| match rate as u32 {
            20 => attempt == 1,
            30 | 50 | 60 => false,
            _ => true,
        };
        let run_with = |patience| {
            let mut attempts_at = std::collections::HashMap::new();
            let mut seen = Vec::new();
            let m = search_rates(
                &Search {
                    steps: steps.clone(),
                    attempts: 2,
                    patience,
                },
                |rate| {
                    let a = attempts_at.entry(rate as u32).or_insert(0);
                    let r = fake_run(rate, script(rate, *a));
                    *a += 1;
                    Ok(r)
                },
                |r| seen.push((r.rate, r.passed())),
            )
            .unwrap();
            assert_eq!(seen.len(), m.steps.len());
            (m.best().map(|b| b.rate), seen)
        };
        // Patience 1: the search ends at 30 (two failed attempts); the best is 20.
        let (best, seen) = run_with(1);
        assert_eq!(best, Some(20.0));
        assert_eq!(
            seen,
            vec![
                (10.0, true),
                (20.0, false),
                (20.0, true),
                (30.0, false),
                (30.0, false)
            ]
        );
        // Patience 2: 30 fails, 40 passes, 50 and 60 fail: the best is 40.
        let (best, seen) = run_with(2);
        assert_eq!(best, Some(40.0));
        assert_eq!(seen.len(), 10);
        assert_eq!(seen.last(), Some(&(60.0, false)));
    }

    #[test]
    fn counts_and_tokens() {
        let mut c = Counts::default();
        c.add(AnswerKind::BusinessReject);
        c.add(AnswerKind::BusinessReject);
        c.add(AnswerKind::New);
        assert_eq!(c.describe(), "exec_new=1, business_reject=2");
        assert_eq!(c.to_json(), json!({"exec_new": 1, "business_reject": 2}));
        assert_eq!(Counts::default().describe(), "none");
        let t = run_token();
        assert!(
            t.len() >= 8 && t.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{t}"
        );
    }
}
