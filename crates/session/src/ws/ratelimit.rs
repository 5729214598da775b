//! The dialect's rate limits, shared by all connections of a listener.
//!
//! - `REQUEST_WEIGHT` per IP address and minute: every request costs its method's weight,
//!   connecting costs 2. Over the limit a request fails with 429 (-1003, `retryAfter`); an
//!   address that keeps sending after its 429s is banned (418) for 2 minutes, doubling per
//!   repeat up to 3 days, and its connections are closed.
//! - `ORDERS` per account, per 10 seconds and per day: every order placed (`order.place`,
//!   `order.cancelReplace`) counts; over the limit it fails with 429 (-1015).
//! - `CONNECTIONS` per IP address: at most 300 connection attempts in any 5 minutes.
//!
//! Intervals are fixed windows as the dialect defines them: a `1 MINUTE` window starts every
//! minute, `10 SECOND` windows at :00, :10, :20..., `1 DAY` at 00:00 UTC. Time comes from the
//! caller (Unix ms), so every rule is a deterministic test.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const MINUTE_MS: i64 = 60_000;
const TEN_S_MS: i64 = 10_000;
const DAY_MS: i64 = 86_400_000;
const CONNECTION_WINDOW_MS: i64 = 5 * MINUTE_MS;
/// Weight of opening a connection.
pub const CONNECT_WEIGHT: u32 = 2;

/// Limits of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `REQUEST_WEIGHT` per IP address per minute.
    pub request_weight_per_minute: u32,
    /// `ORDERS` per account per 10 seconds.
    pub orders_per_10s: u32,
    /// `ORDERS` per account per day.
    pub orders_per_day: u32,
    /// Connection attempts per IP address in any 5 minutes.
    pub connections_per_5min: u32,
    /// Requests refused with 429 in one minute after which the address is banned.
    pub ban_after_violations: u32,
    /// The first ban's length; each further ban doubles it.
    pub ban_initial: Duration,
    /// The longest ban.
    pub ban_max: Duration,
    /// Addresses tracked before idle ones are forgotten (bounds memory under a flood).
    pub max_tracked_addresses: usize,
}

impl Default for RateLimitConfig {
    /// The dialect's published limits.
    fn default() -> Self {
        Self {
            request_weight_per_minute: 6_000,
            orders_per_10s: 50,
            orders_per_day: 160_000,
            connections_per_5min: 300,
            ban_after_violations: 100,
            ban_initial: Duration::from_secs(120),
            ban_max: Duration::from_secs(3 * 86_400),
            max_tracked_addresses: 100_000,
        }
    }
}

/// The answer to one request's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Weigh {
    /// Within the limit; the minute's count including this request.
    Ok(u32),
    /// Over the limit (429): the count, and when the next minute starts.
    Limited { count: u32, retry_after_ms: i64 },
    /// Banned (418) until then.
    Banned { until_ms: i64 },
}

/// Why an order is refused by the order rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OrdersLimited {
    pub limit: u32,
    pub interval: &'static str,
    pub retry_after_ms: i64,
}

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefused {
    /// The address is banned until this time (Unix ms).
    #[error("address banned until {0}")]
    Banned(i64),
    /// The address made too many connection attempts in the last 5 minutes.
    #[error("too many connections from this address")]
    TooManyConnections,
}

#[derive(Debug, Default)]
struct IpState {
    minute: i64,
    weight: u32,
    violations: u32,
    banned_until: i64,
    bans: u32,
    connects: VecDeque<i64>,
    last_seen: i64,
}

#[derive(Debug, Default)]
struct OrderCounts {
    ten_s: i64,
    in_ten_s: u32,
    day: i64,
    in_day: u32,
}

#[derive(Debug, Default)]
struct State {
    ips: HashMap<IpAddr, IpState>,
    accounts: HashMap<String, OrderCounts>,
}

/// The rate limits of one listener: share one per listener between its connections.
#[derive(Debug, Default)]
pub struct RateLimiter {
    config: RateLimitConfig,
    state: Mutex<State>,
}

/// IPv4 peers seen through an IPv6 socket count as themselves.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl RateLimiter {
    /// A limiter with `config`.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// The limits.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is counters only: after a panic elsewhere they are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ip<'s>(&self, state: &'s mut State, ip: IpAddr, now_ms: i64) -> &'s mut IpState {
        let ip = canonical(ip);
        if !state.ips.contains_key(&ip) && state.ips.len() >= self.config.max_tracked_addresses {
            // Forget addresses with nothing left to remember: no ban, no attempts in the
            // connection window, no weight in the current minute.
            state.ips.retain(|_, s| {
                s.banned_until > now_ms || now_ms - s.last_seen < CONNECTION_WINDOW_MS
            });
        }
        let s = state.ips.entry(ip).or_default();
        s.last_seen = now_ms;
        let minute = now_ms.div_euclid(MINUTE_MS);
        if s.minute != minute {
            s.minute = minute;
            s.weight = 0;
            s.violations = 0;
        }
        s
    }

    /// Records a connection attempt from `ip`: refused if the address is banned or made
    /// [`RateLimitConfig::connections_per_5min`] attempts in the last 5 minutes. An accepted
    /// connection costs [`CONNECT_WEIGHT`].
    pub fn try_connect(&self, ip: IpAddr, now_ms: i64) -> Result<(), ConnectRefused> {
        let mut state = self.lock();
        let limit = self.config.connections_per_5min as usize;
        let s = self.ip(&mut state, ip, now_ms);
        if s.banned_until > now_ms {
            return Err(ConnectRefused::Banned(s.banned_until));
        }
        while s
            .connects
            .front()
            .is_some_and(|&t| now_ms - t >= CONNECTION_WINDOW_MS)
        {
            s.connects.pop_front();
        }
        if s.connects.len() >= limit {
            return Err(ConnectRefused::TooManyConnections);
        }
        s.connects.push_back(now_ms);
        s.weight = s.weight.saturating_add(CONNECT_WEIGHT);
        Ok(())
    }

    /// The ban on `ip`, if any: until when (Unix ms).
    pub fn banned_until(&self, ip: IpAddr, now_ms: i64) -> Option<i64> {
        let state = self.lock();
        state
            .ips
            .get(&canonical(ip))
            .map(|s| s.banned_until)
            .filter(|&t| t > now_ms)
    }

    /// Charges a request of `weight` to `ip`.
    pub(crate) fn weigh(&self, ip: IpAddr, weight: u32, now_ms: i64) -> Weigh {
        let mut state = self.lock();
        let limit = self.config.request_weight_per_minute;
        let (after, initial, max) = (
            self.config.ban_after_violations,
            self.config.ban_initial,
            self.config.ban_max,
        );
        let s = self.ip(&mut state, ip, now_ms);
        if s.banned_until > now_ms {
            return Weigh::Banned {
                until_ms: s.banned_until,
            };
        }
        let count = s.weight.saturating_add(weight);
        if count <= limit {
            s.weight = count;
            return Weigh::Ok(count);
        }
        // Refused requests do not add weight (the count stays at the limit's edge), but they
        // do count as violations: a client that does not back off gets banned.
        s.violations += 1;
        if s.violations >= after {
            // A ban more than a day after the last one starts again from the first length.
            if now_ms - s.banned_until > DAY_MS {
                s.bans = 0;
            }
            let factor = 1u32 << s.bans.min(20);
            let length = initial.saturating_mul(factor).min(max);
            s.bans += 1;
            s.violations = 0;
            s.banned_until = now_ms + length.as_millis() as i64;
            return Weigh::Banned {
                until_ms: s.banned_until,
            };
        }
        Weigh::Limited {
            count: s.weight,
            retry_after_ms: (s.minute + 1) * MINUTE_MS,
        }
    }

    /// The minute's weight so far for `ip`.
    pub(crate) fn weight_count(&self, ip: IpAddr, now_ms: i64) -> u32 {
        let mut state = self.lock();
        self.ip(&mut state, ip, now_ms).weight
    }

    fn counts<'s>(state: &'s mut State, account: &str, now_ms: i64) -> &'s mut OrderCounts {
        if !state.accounts.contains_key(account) {
            // Accounts are few (one per key in the vault); still, forget yesterday's.
            if state.accounts.len() >= 10_000 {
                let today = now_ms.div_euclid(DAY_MS);
                state.accounts.retain(|_, c| c.day == today);
            }
            state
                .accounts
                .insert(account.to_owned(), OrderCounts::default());
        }
        let c = state.accounts.get_mut(account).expect("inserted above");
        let (ten_s, day) = (now_ms.div_euclid(TEN_S_MS), now_ms.div_euclid(DAY_MS));
        if c.ten_s != ten_s {
            c.ten_s = ten_s;
            c.in_ten_s = 0;
        }
        if c.day != day {
            c.day = day;
            c.in_day = 0;
        }
        c
    }

    /// Counts one new order of `account`, unless that would exceed a limit.
    pub(crate) fn order(&self, account: &str, now_ms: i64) -> Result<(), OrdersLimited> {
        let mut state = self.lock();
        let (per_10s, per_day) = (self.config.orders_per_10s, self.config.orders_per_day);
        let c = Self::counts(&mut state, account, now_ms);
        if c.in_ten_s >= per_10s {
            return Err(OrdersLimited {
                limit: per_10s,
                interval: "10 SECOND",
                retry_after_ms: (c.ten_s + 1) * TEN_S_MS,
            });
        }
        if c.in_day >= per_day {
            return Err(OrdersLimited {
                limit: per_day,
                interval: "1 DAY",
                retry_after_ms: (c.day + 1) * DAY_MS,
            });
        }
        c.in_ten_s += 1;
        c.in_day += 1;
        Ok(())
    }

    /// `account`'s orders in the current 10-second window and day.
    pub(crate) fn order_counts(&self, account: &str, now_ms: i64) -> (u32, u32) {
        let mut state = self.lock();
        let c = Self::counts(&mut state, account, now_ms);
        (c.in_ten_s, c.in_day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn small() -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            request_weight_per_minute: 10,
            orders_per_10s: 2,
            orders_per_day: 3,
            connections_per_5min: 3,
            ban_after_violations: 3,
            ..RateLimitConfig::default()
        })
    }

    #[test]
    fn weight_resets_at_the_start_of_each_minute_and_429s_lead_to_a_doubling_ban() {
        let l = small();
        let t0 = 1_700_000_040_000; // the start of a minute
        assert_eq!(l.weigh(ip(1), 6, t0), Weigh::Ok(6));
        assert_eq!(l.weigh(ip(1), 4, t0), Weigh::Ok(10));
        let next_minute = 1_700_000_100_000;
        assert_eq!(
            l.weigh(ip(1), 1, t0),
            Weigh::Limited {
                count: 10,
                retry_after_ms: next_minute
            }
        );
        // Another address has its own count.
        assert_eq!(l.weigh(ip(2), 1, t0), Weigh::Ok(1));
        // A new minute: counted from zero again.
        assert_eq!(l.weigh(ip(1), 1, next_minute), Weigh::Ok(1));
        // Three refusals in one minute: banned for 2 minutes.
        let t1 = next_minute + 1_000;
        l.weigh(ip(1), 9, t1);
        assert!(matches!(l.weigh(ip(1), 1, t1), Weigh::Limited { .. }));
        assert!(matches!(l.weigh(ip(1), 1, t1), Weigh::Limited { .. }));
        assert_eq!(
            l.weigh(ip(1), 1, t1),
            Weigh::Banned {
                until_ms: t1 + 120_000
            }
        );
        assert_eq!(l.banned_until(ip(1), t1), Some(t1 + 120_000));
        assert_eq!(
            l.try_connect(ip(1), t1),
            Err(ConnectRefused::Banned(t1 + 120_000))
        );
        // The next ban lasts twice as long.
        let t2 = t1 + 120_000;
        assert_eq!(l.banned_until(ip(1), t2), None);
        l.weigh(ip(1), 10, t2);
        for _ in 0..2 {
            l.weigh(ip(1), 1, t2);
        }
        assert_eq!(
            l.weigh(ip(1), 1, t2),
            Weigh::Banned {
                until_ms: t2 + 240_000
            }
        );
    }

    #[test]
    fn connection_attempts_are_limited_in_a_sliding_five_minute_window() {
        let l = small();
        let t = 1_700_000_000_000;
        for i in 0..3 {
            assert_eq!(l.try_connect(ip(1), t + i * 1_000), Ok(()));
        }
        assert_eq!(
            l.try_connect(ip(1), t + 299_999),
            Err(ConnectRefused::TooManyConnections)
        );
        assert_eq!(l.try_connect(ip(2), t + 299_999), Ok(()));
        // The first attempt leaves the window.
        assert_eq!(l.try_connect(ip(1), t + 300_000), Ok(()));
        // IPv4 through an IPv6 socket is the same address.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            l.try_connect(mapped, t + 300_000),
            Err(ConnectRefused::TooManyConnections)
        );
        // Each accepted connection weighs 2.
        assert_eq!(l.weight_count(ip(2), t + 299_999), 2);
    }

    #[test]
    fn orders_are_counted_per_account_in_ten_second_and_daily_windows() {
        let l = small();
        let t = 1_700_000_000_000; // a multiple of 10 s
        assert_eq!(l.order("A", t), Ok(()));
        assert_eq!(l.order("A", t + 9_999), Ok(()));
        let e = l.order("A", t + 9_999).unwrap_err();
        assert_eq!(
            (e.limit, e.interval, e.retry_after_ms),
            (2, "10 SECOND", t + 10_000)
        );
        assert_eq!(l.order("B", t), Ok(()));
        assert_eq!(l.order("A", t + 10_000), Ok(()));
        assert_eq!(l.order_counts("A", t + 10_000), (1, 3));
        let e = l.order("A", t + 20_000).unwrap_err();
        assert_eq!(e.interval, "1 DAY");
    }
}
