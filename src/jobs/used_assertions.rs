//! Forgets the jtis of client assertions that have expired: a replay of
//! one is refused for its `exp` anyway, so the row has done its work. On
//! PostgreSQL one replica deletes at a time.

use crate::state::AppState;
use crate::store::client_keys;

/// Advisory lock id of this job ("asapd used jti").
const LOCK_KEY: i64 = 0x6173_6170_646a_7469;

/// How often a pass runs.
pub const INTERVAL_SECS: u64 = 60;

/// One pass; returns how many rows were deleted (`None` when another
/// replica holds the lock).
pub async fn run_once(state: &AppState) -> anyhow::Result<Option<u64>> {
    let Some(lock) = state.store.try_job_lock(LOCK_KEY).await? else {
        return Ok(None);
    };
    let pruned = async {
        let mut conn = state.store.acquire().await?;
        client_keys::prune_used(&mut conn, state.clock.now()).await
    }
    .await;
    lock.release().await;
    let pruned = pruned?;
    if pruned > 0 {
        tracing::debug!(pruned, "expired client assertion jtis pruned");
    }
    Ok(Some(pruned))
}
