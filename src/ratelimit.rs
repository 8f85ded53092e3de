//! Rate limits, in memory on each replica (governor, GCRA):
//!
//! - per caller: token requests, with the caller's own `rate_limit` or the
//!   configured default. governor gives one quota per limiter, so each
//!   caller has its own limiter, rebuilt when its quota changes; a changed
//!   override applies on the caller's next request, without a restart.
//! - per source IP: failed authentications. Once an IP has used up its
//!   allowance it is refused before its credentials are even checked, so
//!   guessing secrets gets no faster by sending more requests.
//!
//! With several replicas every replica enforces the limits on its own
//! share of the traffic.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use governor::clock::{Clock as _, Reference as _};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::clock::{Clock, LimiterClock};
use crate::config::TokenSettings;
use crate::domain::caller::RateLimit;

type DirectLimiter = RateLimiter<NotKeyed, InMemoryState, LimiterClock, NoOpMiddleware<Nanos>>;
type KeyedLimiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, LimiterClock, NoOpMiddleware<Nanos>>;

/// Failed authentications between sweeps of idle per-IP state: the keyed
/// limiter keeps an entry per IP that failed, so without sweeps addresses
/// that fail once (a scan from many IPv6 addresses) would pile up.
const SWEEP_EVERY: u64 = 1024;

struct CallerLimiter {
    quota: RateLimit,
    limiter: DirectLimiter,
}

pub struct RateLimits {
    default: RateLimit,
    /// One entry per caller that asked for a token; callers are created by
    /// admins, so this stays small.
    callers: RwLock<HashMap<String, Arc<CallerLimiter>>>,
    failed_auth: KeyedLimiter<IpAddr>,
    /// IPs whose failed-auth allowance is used up, and until when (on
    /// `clock`).
    blocked: Mutex<HashMap<IpAddr, Nanos>>,
    failures: AtomicU64,
    /// asapd's injectable clock, so tests advance time instead of sleeping.
    clock: LimiterClock,
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn quota(limit: RateLimit) -> Quota {
    Quota::per_second(nonzero(limit.per_second)).allow_burst(nonzero(limit.burst))
}

/// Seconds to announce in `Retry-After`: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

impl RateLimits {
    /// Limits from the token settings, timed by `clock`.
    pub fn new(settings: &TokenSettings, clock: Clock) -> Self {
        let failed = Quota::per_minute(nonzero(settings.failed_auth_per_minute))
            .allow_burst(nonzero(settings.failed_auth_burst));
        let clock = LimiterClock::new(clock);
        Self {
            default: RateLimit {
                per_second: settings.rate_limit_per_second,
                burst: settings.rate_limit_burst,
            },
            callers: RwLock::new(HashMap::new()),
            failed_auth: RateLimiter::new(failed, DefaultKeyedStateStore::default(), clock.clone()),
            blocked: Mutex::new(HashMap::new()),
            failures: AtomicU64::new(0),
            clock,
        }
    }

    fn direct(&self, quota: RateLimit) -> Arc<CallerLimiter> {
        Arc::new(CallerLimiter {
            quota,
            limiter: RateLimiter::direct_with_clock(self::quota(quota), self.clock.clone()),
        })
    }

    /// Takes one token request from `caller`'s allowance. `Err` carries how
    /// long to wait.
    pub fn check_caller(&self, caller: &str, own: Option<RateLimit>) -> Result<(), Duration> {
        let wanted = own.unwrap_or(self.default);
        let current = self
            .callers
            .read()
            .expect("rate limit lock poisoned")
            .get(caller)
            .filter(|l| l.quota == wanted)
            .cloned();
        let limiter = match current {
            Some(l) => l,
            None => {
                let mut map = self.callers.write().expect("rate limit lock poisoned");
                let entry = map
                    .entry(caller.to_owned())
                    .or_insert_with(|| self.direct(wanted));
                if entry.quota != wanted {
                    *entry = self.direct(wanted);
                }
                entry.clone()
            }
        };
        limiter
            .limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Whether `ip` must wait before it may try to authenticate again.
    pub fn auth_blocked(&self, ip: IpAddr) -> Option<Duration> {
        let now = self.clock.now();
        let blocked = self.blocked.lock().expect("rate limit lock poisoned");
        blocked
            .get(&ip)
            .filter(|until| **until > now)
            .map(|until| until.duration_since(now).into())
    }

    /// Counts a failed authentication from `ip`. Returns how long `ip` is
    /// now blocked when this failure used up its allowance.
    pub fn auth_failed(&self, ip: IpAddr) -> Option<Duration> {
        if self.failures.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        let wait = self
            .failed_auth
            .check_key(&ip)
            .err()
            .map(|not_until| not_until.wait_time_from(self.clock.now()))?;
        self.blocked
            .lock()
            .expect("rate limit lock poisoned")
            .insert(ip, self.clock.now() + Nanos::from(wait));
        Some(wait)
    }

    /// Forgets IPs whose allowance is whole again and blocks that ended.
    fn sweep(&self) {
        let now = self.clock.now();
        self.blocked
            .lock()
            .expect("rate limit lock poisoned")
            .retain(|_, until| *until > now);
        self.failed_auth.retain_recent();
        self.failed_auth.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_second: u32, burst: u32) -> TokenSettings {
        TokenSettings {
            rate_limit_per_second: per_second,
            rate_limit_burst: burst,
            failed_auth_per_minute: 1,
            failed_auth_burst: 2,
            ..TokenSettings::default()
        }
    }

    #[test]
    fn default_quota_then_override_applies_at_once() {
        let limits = RateLimits::new(&settings(1, 2), Clock::manual(1_000));
        assert!(limits.check_caller("a", None).is_ok());
        assert!(limits.check_caller("a", None).is_ok());
        let wait = limits.check_caller("a", None).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1), "time stands still");
        // Other callers have their own allowance.
        assert!(limits.check_caller("b", None).is_ok());
        // A new override replaces the limiter.
        let bigger = RateLimit {
            per_second: 1,
            burst: 5,
        };
        for _ in 0..5 {
            assert!(limits.check_caller("a", Some(bigger)).is_ok());
        }
        assert!(limits.check_caller("a", Some(bigger)).is_err());
    }

    #[test]
    fn failed_auth_blocks_an_ip_after_its_burst() {
        let clock = Clock::manual(1_000);
        let limits = RateLimits::new(&settings(1, 1), clock.clone());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limits.auth_blocked(ip).is_none());
        assert!(limits.auth_failed(ip).is_none());
        assert!(limits.auth_failed(ip).is_none());
        let wait = limits.auth_failed(ip).expect("third failure blocks");
        assert_eq!(wait, Duration::from_secs(60), "one failure a minute");
        assert_eq!(limits.auth_blocked(ip), Some(wait));
        assert!(limits.auth_blocked("10.0.0.2".parse().unwrap()).is_none());
        // Sweeping keeps live blocks; the block shrinks as time passes and
        // ends when its minute is over.
        limits.sweep();
        clock.advance(59);
        assert_eq!(limits.auth_blocked(ip), Some(Duration::from_secs(1)));
        clock.advance(1);
        assert!(limits.auth_blocked(ip).is_none());
        limits.sweep();
        assert!(limits.blocked.lock().unwrap().is_empty(), "swept");
        assert!(limits.auth_failed(ip).is_none(), "one failure came back");
    }

    #[test]
    fn the_callers_allowance_comes_back_as_the_clock_moves() {
        let clock = Clock::manual(1_000);
        let limits = RateLimits::new(&settings(2, 2), clock.clone());
        assert!(limits.check_caller("a", None).is_ok());
        assert!(limits.check_caller("a", None).is_ok());
        assert_eq!(
            limits.check_caller("a", None),
            Err(Duration::from_millis(500))
        );
        clock.advance_ms(499);
        assert!(limits.check_caller("a", None).is_err(), "not yet");
        clock.advance_ms(1);
        assert!(limits.check_caller("a", None).is_ok(), "one cell back");
        assert!(limits.check_caller("a", None).is_err());
        clock.advance(10);
        assert!(
            limits.check_caller("a", None).is_ok(),
            "never more than the burst"
        );
        assert!(limits.check_caller("a", None).is_ok());
        assert!(limits.check_caller("a", None).is_err());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
