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
//!
//! Refusals cost no writes: a lease that leaves the bucket empty tells
//! when it next holds a token, and until then the replica refuses from
//! memory. Replicas that disagree on a caller's quota (during a rolling
//! change of the default) share one level: a lease refills at its own
//! rate and caps at its own burst, and a change of quota never refills
//! the bucket, so the bound holds with the largest quota in play.

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
    /// The shared bucket holds no whole token before this time (on the
    /// injectable clock), as its last lease here showed: until then this
    /// replica refuses from memory, so a caller over its limit costs no
    /// database writes. Only leases take tokens, and the bucket refills at
    /// the quota's rate, so this refuses nothing a lease would grant.
    empty_until_ms: AtomicI64,
    /// One lease at a time per caller on this replica.
    refill: tokio::sync::Mutex<()>,
}

impl Lease {
    fn new(quota: RateLimit) -> Self {
        Self {
            quota,
            remaining: AtomicI64::new(0),
            expires_ms: AtomicI64::new(i64::MIN),
            empty_until_ms: AtomicI64::new(i64::MIN),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    /// Spends one token of the current slice, if it has one.
    fn spend(&self, now_ms: i64) -> bool {
        now_ms < self.expires_ms.load(Ordering::Acquire)
            && self.remaining.fetch_sub(1, Ordering::AcqRel) > 0
    }

    /// How long the bucket stays empty, while this replica knows it is.
    fn empty_for(&self, now_ms: i64) -> Option<Duration> {
        let until = self.empty_until_ms.load(Ordering::Acquire);
        (now_ms < until).then(|| Duration::from_millis(until.abs_diff(now_ms)))
    }
}

/// Milliseconds until a bucket with `left` tokens holds a whole one again,
/// refilled at `per_second`: 0 when it holds one now.
fn ms_until_whole(left: f64, per_second: u32) -> i64 {
    let missing = (1.0 - left).max(0.0);
    (missing * 1000.0 / f64::from(per_second.max(1))).ceil() as i64
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
        if let Some(wait) = lease.empty_for(now_ms) {
            return Ok(Err(wait));
        }
        let _one_lease = lease.refill.lock().await;
        // Another request may have leased while this one waited.
        if lease.spend(now_ms) {
            return Ok(Ok(()));
        }
        if let Some(wait) = lease.empty_for(now_ms) {
            return Ok(Err(wait));
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
        let empty_ms = ms_until_whole(leased.left, quota.per_second);
        lease
            .empty_until_ms
            .store(now_ms.saturating_add(empty_ms), Ordering::Release);
        if leased.granted == 0 {
            return Ok(Err(Duration::from_millis(empty_ms.max(1) as u64)));
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
    fn an_empty_bucket_waits_for_its_next_whole_token() {
        assert_eq!(ms_until_whole(1.0, 1), 0);
        assert_eq!(ms_until_whole(3.5, 1), 0);
        assert_eq!(ms_until_whole(0.0, 1), 1000);
        assert_eq!(ms_until_whole(0.75, 2), 125);
        assert_eq!(ms_until_whole(0.0, 3), 334);
    }

    #[test]
    fn slices_are_a_tenth_of_a_second_within_the_burst() {
        let q = |per_second, burst| RateLimit { per_second, burst };
        assert_eq!(slice_of(q(1, 6)), 1);
        assert_eq!(slice_of(q(100, 200)), 10);
        assert_eq!(slice_of(q(100, 4)), 4);
        assert_eq!(slice_of(q(1_000_000, 1_000_000)), 100_000);
    }
}
