//! Per-caller rate limits for the whole fleet (PostgreSQL).
//!
//! Each caller has one token bucket in the database. A replica does not
//! touch it per token: it leases a slice of the caller's allowance (the
//! bucket is refilled to now and up to a slice of whole tokens is taken, in
//! one statement) and spends the slice locally. A slice is spent within
//! [`LEASE_MS`] or forgotten.
//!
//! Bound: leased tokens are taken out of the shared bucket, so the fleet
//! never issues more than the bucket holds, except that a slice leased
//! before an interval may be spent in it: over any interval, a caller gets
//! at most `burst + per_second × interval` plus one slice per replica.
//! A slice is `per_second / 10` tokens (at least 1, at most `burst`), so the
//! database sees about ten leases a second per busy caller and replica,
//! whatever the token rate. Leftovers of a forgotten slice are lost to the
//! caller: the limit errs on the side of refusing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounter;

use crate::domain::caller::RateLimit;
use crate::store::{rate_buckets, Store, StoreResult};

/// How long a leased slice may be spent.
pub const LEASE_MS: i64 = 1000;

/// The slice a replica leases for `quota`.
pub fn slice_of(quota: RateLimit) -> u32 {
    (quota.per_second / 10).clamp(1, quota.burst.max(1))
}

struct Lease {
    quota: RateLimit,
    /// Tokens of the current slice not yet spent (may dip below zero while
    /// requests race for the last one).
    remaining: AtomicI64,
    expires_ms: AtomicI64,
    /// One lease at a time per caller on this replica.
    refill: tokio::sync::Mutex<()>,
}

impl Lease {
    fn new(quota: RateLimit) -> Self {
        Self {
            quota,
            remaining: AtomicI64::new(0),
            expires_ms: AtomicI64::new(i64::MIN),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    /// Spends one token of the current slice, if it has one.
    fn spend(&self, now_ms: i64) -> bool {
        now_ms < self.expires_ms.load(Ordering::Acquire)
            && self.remaining.fetch_sub(1, Ordering::AcqRel) > 0
    }
}

/// This replica's slices, by caller.
pub struct FleetLimits {
    leases: Mutex<HashMap<String, Arc<Lease>>>,
    /// Counts the statements that write a bucket.
    writes: IntCounter,
}

impl FleetLimits {
    pub fn new(writes: IntCounter) -> Self {
        Self {
            leases: Mutex::new(HashMap::new()),
            writes,
        }
    }

    fn lease_of(&self, caller: &str, quota: RateLimit) -> Arc<Lease> {
        let mut leases = self.leases.lock().expect("lease map poisoned");
        match leases.get(caller) {
            Some(lease) if lease.quota == quota => lease.clone(),
            // New, or its quota changed: the old slice is forgotten.
            _ => {
                let lease = Arc::new(Lease::new(quota));
                leases.insert(caller.to_owned(), lease.clone());
                lease
            }
        }
    }

    /// Takes one token from `caller`'s fleet-wide allowance. `Ok(Err(wait))`
    /// when it is used up; a database error means the limit cannot be
    /// checked, and the request must not go ahead as if it had been.
    pub async fn take(
        &self,
        store: &Store,
        caller: &str,
        quota: RateLimit,
        now_ms: i64,
    ) -> StoreResult<Result<(), Duration>> {
        let lease = self.lease_of(caller, quota);
        if lease.spend(now_ms) {
            return Ok(Ok(()));
        }
        let _one_lease = lease.refill.lock().await;
        // Another request may have leased while this one waited.
        if lease.spend(now_ms) {
            return Ok(Ok(()));
        }
        let leased = {
            let mut conn = store.acquire().await?;
            self.writes.inc();
            rate_buckets::lease(
                &mut conn,
                caller,
                f64::from(quota.per_second),
                f64::from(quota.burst),
                f64::from(slice_of(quota)),
                now_ms,
            )
            .await?
        };
        if leased.granted == 0 {
            let missing = (1.0 - leased.left).max(0.0);
            let wait = missing / f64::from(quota.per_second.max(1));
            return Ok(Err(Duration::from_secs_f64(wait.max(0.001))));
        }
        // This request spends the first token of the slice.
        lease
            .remaining
            .store(i64::from(leased.granted) - 1, Ordering::Release);
        lease
            .expires_ms
            .store(now_ms.saturating_add(LEASE_MS), Ordering::Release);
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_a_tenth_of_a_second_within_the_burst() {
        let q = |per_second, burst| RateLimit { per_second, burst };
        assert_eq!(slice_of(q(1, 6)), 1);
        assert_eq!(slice_of(q(100, 200)), 10);
        assert_eq!(slice_of(q(100, 4)), 4);
        assert_eq!(slice_of(q(1_000_000, 1_000_000)), 100_000);
    }
}
