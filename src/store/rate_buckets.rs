//! The `rate_buckets` table: one token bucket per caller for the fleet.
//! Its `per_second` and `burst` record the quota of the last lease, for
//! reading only: the level carries over a change of quota.

use super::{Conn, StoreResult};

/// What a lease got: tokens granted (0 when the bucket is empty) and the
/// tokens left in the bucket afterwards (below 1 when it is empty).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Leased {
    pub granted: u32,
    pub left: f64,
}

/// The tokens in `b` now: refilled at `$5` per second since it was last
/// touched, capped at the burst `$2`. A bucket last leased under another
/// quota keeps its level (capped at the new burst): replicas that disagree
/// on the quota must not refill it for each other.
macro_rules! available {
    () => {
        "LEAST($2, b.tokens + GREATEST(0, $3 - b.updated_ms) * $5 / 1000.0)"
    };
}

/// The tokens one lease takes: up to a slice (`$4`) of whole tokens.
macro_rules! taken {
    () => {
        concat!("LEAST($4, FLOOR(", available!(), "))")
    };
}

/// One statement, so the row lock makes concurrent leases from several
/// replicas queue. (`SET` expressions all see the row as it was.)
const LEASE: &str = concat!(
    "INSERT INTO rate_buckets AS b (caller, tokens, updated_ms, per_second, burst, last_granted) \
     VALUES ($1, $2 - LEAST($4, $2), $3, $5, $2, LEAST($4, $2)) \
     ON CONFLICT (caller) DO UPDATE SET last_granted = ",
    taken!(),
    ", tokens = ",
    available!(),
    " - ",
    taken!(),
    ", updated_ms = GREATEST(b.updated_ms, $3), per_second = $5, burst = $2 \
     RETURNING tokens, last_granted"
);

/// Refills `caller`'s bucket to `now_ms` and takes up to `slice` whole
/// tokens. A caller's first lease finds a full bucket.
pub async fn lease(
    conn: &mut Conn,
    caller: &str,
    per_second: f64,
    burst: f64,
    slice: f64,
    now_ms: i64,
) -> StoreResult<Leased> {
    let (left, granted): (f64, f64) = sqlx::query_as(LEASE)
        .bind(caller)
        .bind(burst)
        .bind(now_ms)
        .bind(slice)
        .bind(per_second)
        .fetch_one(conn)
        .await?;
    Ok(Leased {
        granted: granted.max(0.0) as u32,
        left,
    })
}
