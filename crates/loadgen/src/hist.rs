//! Latency recording: a monotonic nanosecond clock, the fixed send schedule of an open-loop
//! run, and an HDR histogram that measures from the intended send time (coordinated-omission
//! correction).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Nanoseconds on a monotonic clock whose zero is the first call in this process.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Sleeps until [`now_ns`] reaches `deadline_ns` (returns at once if it already has).
pub fn sleep_until(deadline_ns: u64) {
    let now = now_ns();
    if deadline_ns > now {
        std::thread::sleep(Duration::from_nanos(deadline_ns - now));
    }
}

/// Asks the kernel to wake this thread's sleeps on time rather than up to 50 µs late (the
/// default timer slack), so a paced sender's own lateness does not inflate its measurements.
/// Best effort: ignored where unsupported.
pub fn tighten_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// The intended send times of an open-loop run: message `i` is due at `start_ns + i ×
/// interval_ns`, whatever happened to the messages before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// When message 0 is due, on the [`now_ns`] clock.
    pub start_ns: u64,
    /// Nanoseconds between two messages (at least 1).
    pub interval_ns: u64,
}

impl Schedule {
    /// A schedule of `rate` messages per second from `start_ns`.
    pub fn per_second(start_ns: u64, rate: f64) -> Self {
        let interval = (1e9 / rate.max(1e-9)).round();
        Self {
            start_ns,
            interval_ns: (interval as u64).max(1),
        }
    }

    /// When message `i` is due.
    pub fn intended(&self, i: u64) -> u64 {
        self.start_ns
            .saturating_add(i.saturating_mul(self.interval_ns))
    }

    /// How many messages are due at `now_ns` (those with an intended time ≤ now).
    pub fn due_by(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            0
        } else {
            (now_ns - self.start_ns) / self.interval_ns + 1
        }
    }
}

/// Highest latency the histograms track: 60 s (larger values are clamped to it).
const MAX_TRACKABLE_NS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Recorder {
    hist: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder (1 ns to 60 s, 3 significant digits).
    pub fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, 3)
                .expect("static histogram bounds are valid"),
        }
    }

    /// Records one latency in nanoseconds (0 is counted as 1, huge values as the maximum).
    pub fn record(&mut self, latency_ns: u64) {
        self.hist
            .saturating_record(latency_ns.clamp(1, MAX_TRACKABLE_NS));
    }

    /// Records the latency of a response received at `received_ns` to a message that was due at
    /// `intended_ns`: measured from the intended time, so a stall of the sender, the network
    /// or the server counts against every message it delayed, not just the first.
    pub fn record_from_intended(&mut self, intended_ns: u64, received_ns: u64) {
        self.record(received_ns.saturating_sub(intended_ns));
    }

    /// Adds another recorder's values.
    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The summary of what was recorded.
    pub fn summary(&self) -> Summary {
        let h = &self.hist;
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            mean_ns: h.mean(),
        }
    }
}

/// Percentiles of a latency histogram, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest value.
    pub max_ns: u64,
    /// Mean.
    pub mean_ns: f64,
}

impl Summary {
    /// As JSON (nanoseconds).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "p50_ns": self.p50_ns,
            "p90_ns": self.p90_ns,
            "p99_ns": self.p99_ns,
            "p999_ns": self.p999_ns,
            "max_ns": self.max_ns,
            "mean_ns": self.mean_ns.round(),
        })
    }
}

/// Formats nanoseconds for people: `850 ns`, `12.3 µs`, `4.56 ms`, `1.20 s`.
pub fn fmt_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", f / 1e6)
    } else {
        format!("{:.2} s", f / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_times_and_due_counts() {
        let s = Schedule::per_second(1_000, 100_000.0); // every 10 µs
        assert_eq!(s.interval_ns, 10_000);
        assert_eq!(s.intended(0), 1_000);
        assert_eq!(s.intended(3), 31_000);
        assert_eq!(s.due_by(999), 0);
        assert_eq!(s.due_by(1_000), 1);
        assert_eq!(s.due_by(10_999), 1);
        assert_eq!(s.due_by(11_000), 2);
        assert_eq!(Schedule::per_second(0, 1e12).interval_ns, 1, "never zero");
    }

    /// A fake run: the server answers every message 5 µs after it was sent, but the sender
    /// stalls for 1 ms at message 10, so messages 10..=109 (due every 10 µs) all leave late.
    /// Measured from the actual send time only one message would look slow; measured from the
    /// intended time every delayed message carries its share of the stall.
    #[test]
    fn latency_counts_from_the_intended_send_time() {
        let s = Schedule {
            start_ns: 0,
            interval_ns: 10_000,
        };
        let stall_until = s.intended(10) + 1_000_000;
        let mut co = Recorder::new();
        let mut naive = Recorder::new();
        for i in 0..1_000 {
            let intended = s.intended(i);
            let sent = intended.max(stall_until * u64::from(i >= 10));
            let received = sent + 5_000;
            co.record_from_intended(intended, received);
            naive.record(received - sent);
        }
        let (co, naive) = (co.summary(), naive.summary());
        assert_eq!(co.count, 1_000);
        assert!((5_000..=5_010).contains(&naive.max_ns), "{naive:?}");
        assert!(naive.p99_ns <= 5_010, "{naive:?}");
        // The first delayed message waited 1 ms + 5 µs, the next 10 µs less, and so on: about
        // 100 of the 1000 messages are late, so p90 is still fast and p99 is in the stall.
        assert!((1_004_000..=1_006_000).contains(&co.max_ns), "{co:?}");
        assert!(co.p90_ns < 20_000, "{co:?}");
        assert!(co.p99_ns > 800_000, "{co:?}");
    }

    #[test]
    fn early_answers_and_outliers_are_clamped() {
        let mut r = Recorder::new();
        r.record_from_intended(100, 50); // clock skew cannot go negative
        r.record(u64::MAX);
        assert_eq!(r.count(), 2);
        let s = r.summary();
        assert_eq!(s.p50_ns, 1);
        assert!(s.max_ns >= MAX_TRACKABLE_NS);
        let mut m = Recorder::new();
        m.merge(&r);
        m.merge(&r);
        assert_eq!(m.count(), 4);
        assert_eq!(Recorder::new().summary(), Summary::default());
    }

    #[test]
    fn human_durations() {
        assert_eq!(fmt_ns(850), "850 ns");
        assert_eq!(fmt_ns(12_345), "12.3 µs");
        assert_eq!(fmt_ns(4_560_000), "4.56 ms");
        assert_eq!(fmt_ns(1_200_000_000), "1.20 s");
    }
}
