//! Time, injectable so tests can move it instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use governor::nanos::Nanos;

#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// A clock that moves only when told to (tests); holds milliseconds.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn manual(start_secs: i64) -> Self {
        Clock::Manual(Arc::new(AtomicI64::new(start_secs * 1000)))
    }

    /// Seconds since the Unix epoch, UTC.
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Milliseconds since the Unix epoch, UTC.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => {
                (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
            }
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; no effect on the system clock.
    pub fn advance(&self, secs: i64) {
        self.advance_ms(secs * 1000);
    }

    /// Moves a manual clock forward by milliseconds; no effect on the
    /// system clock.
    pub fn advance_ms(&self, ms: i64) {
        if let Clock::Manual(t) = self {
            t.fetch_add(ms, Ordering::SeqCst);
        }
    }
}

/// A [`Clock`] as governor's rate limiters read it: nanoseconds since this
/// reader was made. The system clock is read through the monotonic clock,
/// since wall time may step back and GCRA state must not; a manual clock
/// moves only when a test advances it, so rate-limit tests need no sleeps.
#[derive(Debug, Clone)]
pub struct LimiterClock {
    clock: Clock,
    start: Instant,
    start_ms: i64,
}

impl LimiterClock {
    pub fn new(clock: Clock) -> Self {
        Self {
            start: Instant::now(),
            start_ms: clock.now_ms(),
            clock,
        }
    }
}

impl governor::clock::Clock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match &self.clock {
            Clock::System => Nanos::from(self.start.elapsed()),
            Clock::Manual(_) => {
                let ms = u64::try_from(self.clock.now_ms() - self.start_ms).unwrap_or(0);
                Nanos::from(ms.saturating_mul(1_000_000))
            }
        }
    }
}

/// RFC 3339 rendering of Unix milliseconds, for audit records.
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// RFC 3339 rendering of a Unix timestamp, for API responses.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}
