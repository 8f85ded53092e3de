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
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::TokenSettings;
use crate::domain::caller::RateLimit;

/// Failed authentications between sweeps of idle per-IP state: the keyed
/// limiter keeps an entry per IP that failed, so without sweeps addresses
/// that fail once (a scan from many IPv6 addresses) would pile up.
const SWEEP_EVERY: u64 = 1024;

struct CallerLimiter {
    quota: RateLimit,
    limiter: DefaultDirectRateLimiter,
}

pub struct RateLimits {
    default: RateLimit,
    /// One entry per caller that asked for a token; callers are created by
    /// admins, so this stays small.
    callers: RwLock<HashMap<String, Arc<CallerLimiter>>>,
    failed_auth: DefaultKeyedRateLimiter<IpAddr>,
    /// IPs whose failed-auth allowance is used up, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    failures: AtomicU64,
    clock: DefaultClock,
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
    pub fn new(settings: &TokenSettings) -> Self {
        let failed = Quota::per_minute(nonzero(settings.failed_auth_per_minute))
            .allow_burst(nonzero(settings.failed_auth_burst));
        Self {
            default: RateLimit {
                per_second: settings.rate_limit_per_second,
                burst: settings.rate_limit_burst,
            },
            callers: RwLock::new(HashMap::new()),
            failed_auth: RateLimiter::keyed(failed),
            blocked: Mutex::new(HashMap::new()),
            failures: AtomicU64::new(0),
            clock: DefaultClock::default(),
        }
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
                let entry = map.entry(caller.to_owned()).or_insert_with(|| {
                    Arc::new(CallerLimiter {
                        quota: wanted,
                        limiter: RateLimiter::direct(quota(wanted)),
                    })
                });
                if entry.quota != wanted {
                    *entry = Arc::new(CallerLimiter {
                        quota: wanted,
                        limiter: RateLimiter::direct(quota(wanted)),
                    });
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
        let now = Instant::now();
        let blocked = self.blocked.lock().expect("rate limit lock poisoned");
        blocked
            .get(&ip)
            .filter(|until| **until > now)
            .map(|until| *until - now)
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
            .insert(ip, Instant::now() + wait);
        Some(wait)
    }

    /// Forgets IPs whose allowance is whole again and blocks that ended.
    fn sweep(&self) {
        let now = Instant::now();
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
        let limits = RateLimits::new(&settings(1, 2));
        assert!(limits.check_caller("a", None).is_ok());
        assert!(limits.check_caller("a", None).is_ok());
        let wait = limits.check_caller("a", None).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
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
        let limits = RateLimits::new(&settings(1, 1));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limits.auth_blocked(ip).is_none());
        assert!(limits.auth_failed(ip).is_none());
        assert!(limits.auth_failed(ip).is_none());
        let wait = limits.auth_failed(ip).expect("third failure blocks");
        assert!(wait > Duration::from_secs(50));
        assert!(limits.auth_blocked(ip).is_some());
        assert!(limits.auth_blocked("10.0.0.2".parse().unwrap()).is_none());
        // Sweeping keeps live blocks.
        limits.sweep();
        assert!(limits.auth_blocked(ip).is_some());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
