//! Token buckets (order-rate throttles) and the sliding window of throttle rejects that flags
//! sustained abuse. Integer arithmetic only, driven by the caller's clock.

/// Nano-tokens per token: a bucket refilling at `r` tokens/s gains exactly `r` nano-tokens per
/// nanosecond, so refill is one multiplication with no rounding.
const NANO: u64 = 1_000_000_000;

/// A token bucket: `burst` tokens at most, refilled at `rate` tokens per second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    /// Available nano-tokens (≤ `cap`).
    tokens: u64,
    /// `burst × NANO`.
    cap: u64,
    /// Tokens per second = nano-tokens per nanosecond.
    rate: u64,
    /// Clock of the last refill.
    last_ns: i64,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate_per_sec: u32, burst: u32) -> Self {
        let cap = u64::from(burst) * NANO;
        Self {
            tokens: cap,
            cap,
            rate: u64::from(rate_per_sec),
            last_ns: i64::MIN,
        }
    }

    /// New rate and burst (a limit change at run time); tokens above the new burst are dropped,
    /// tokens already earned are kept.
    pub(crate) fn reconfigure(&mut self, rate_per_sec: u32, burst: u32) {
        self.cap = u64::from(burst) * NANO;
        self.rate = u64::from(rate_per_sec);
        self.tokens = self.tokens.min(self.cap);
    }

    /// Adds what was earned since the last refill. A clock that goes backwards earns nothing
    /// (and does not move `last_ns` back, so it cannot be used to earn twice).
    #[inline]
    pub(crate) fn refill(&mut self, now_ns: i64) {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        if elapsed > 0 {
            let earned = (elapsed as u64).saturating_mul(self.rate);
            self.tokens = self.tokens.saturating_add(earned).min(self.cap);
            self.last_ns = now_ns;
        }
    }

    /// True if one whole token is available (call [`refill`](Self::refill) first).
    #[inline]
    pub(crate) fn has_token(&self) -> bool {
        self.tokens >= NANO
    }

    /// Takes one token; only after [`has_token`](Self::has_token) said yes.
    #[inline]
    pub(crate) fn take(&mut self) {
        self.tokens -= NANO;
    }
}

impl TokenBucket {
    /// The bucket's state for a snapshot: tokens, cap, rate, last refill.
    pub(crate) fn parts(&self) -> (u64, u64, u64, i64) {
        (self.tokens, self.cap, self.rate, self.last_ns)
    }

    /// A bucket restored from [`parts`](Self::parts).
    pub(crate) fn from_parts(tokens: u64, cap: u64, rate: u64, last_ns: i64) -> Self {
        Self {
            tokens: tokens.min(cap),
            cap,
            rate,
            last_ns,
        }
    }
}

impl AbuseWindow {
    /// The window's ring position and fill for a snapshot.
    pub(crate) fn parts(&self) -> (u32, u32) {
        (self.head, self.len)
    }

    /// A window restored from [`parts`](Self::parts) (`n` = the ring size it indexes).
    pub(crate) fn from_parts(head: u32, len: u32, abusive: bool, n: u32) -> Option<Self> {
        (head < n.max(1) && len <= n).then_some(Self { head, len, abusive })
    }
}

/// Per session: the times of the last `N` throttle rejects, in a ring. The session is abusive
/// when `N` rejects fall within the window — exactly, not approximately: the entry about to be
/// overwritten is the oldest of the last `N`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AbuseWindow {
    /// Next ring index to write.
    head: u32,
    /// Entries written, up to `N`.
    len: u32,
    /// Latched until the session closes: the server disconnects it.
    pub(crate) abusive: bool,
}

impl AbuseWindow {
    /// Records a throttle reject at `now_ns` in `ring` (this session's `N` slots).
    pub(crate) fn record(&mut self, ring: &mut [i64], now_ns: i64, window_ns: i64) {
        let n = ring.len() as u32;
        if n == 0 {
            return;
        }
        ring[self.head as usize] = now_ns;
        self.head = if self.head + 1 == n { 0 } else { self.head + 1 };
        if self.len < n {
            self.len += 1;
        }
        if self.len == n {
            // The slot at `head` now holds the oldest of the last N rejects.
            let oldest = ring[self.head as usize];
            if now_ns.saturating_sub(oldest) <= window_ns {
                self.abusive = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_refills_at_the_rate() {
        let mut b = TokenBucket::new(10, 3);
        for _ in 0..3 {
            b.refill(0);
            assert!(b.has_token());
            b.take();
        }
        b.refill(0);
        assert!(!b.has_token());
        // 10/s: one token per 100 ms, not a nanosecond earlier.
        b.refill(99_999_999);
        assert!(!b.has_token());
        b.refill(100_000_000);
        assert!(b.has_token());
        // A clock going backwards earns nothing.
        b.take();
        b.refill(0);
        assert!(!b.has_token());
        // A long pause never earns more than the burst.
        b.refill(1_000_000_000_000);
        for _ in 0..3 {
            assert!(b.has_token());
            b.take();
        }
        assert!(!b.has_token());
    }

    #[test]
    fn abuse_needs_n_rejects_within_the_window() {
        let mut ring = [0i64; 3];
        let mut w = AbuseWindow::default();
        w.record(&mut ring, 0, 1000);
        w.record(&mut ring, 600, 1000);
        assert!(!w.abusive);
        // Third reject 1001 ns after the first: not within the window.
        w.record(&mut ring, 1001, 1000);
        assert!(!w.abusive);
        // Now 600, 1001, 1600: within 1000 ns.
        w.record(&mut ring, 1600, 1000);
        assert!(w.abusive);
    }
}
