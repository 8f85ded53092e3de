//! Keeps revoked jtis only as long as they matter: each pass brings this
//! replica's in-memory set up to date (the fallback for a missed change
//! notification) and forgets what has expired, then deletes the expired
//! rows. On PostgreSQL one replica deletes at a time.

use crate::revoked::keep_from;
use crate::state::AppState;
use crate::store::revoked_tokens;

/// Advisory lock id of this job ("asapd revoked prune").
const LOCK_KEY: i64 = 0x6173_6170_6472_7631;

/// One pass; returns how many rows were deleted (`None` when another
/// replica holds the lock).
pub async fn run_once(state: &AppState) -> anyhow::Result<Option<u64>> {
    let now = state.clock.now();
    state.revoked.reload(&state.store, now).await?;
    let Some(lock) = state.store.try_job_lock(LOCK_KEY).await? else {
        return Ok(None);
    };
    let pruned = async {
        let mut conn = state.store.acquire().await?;
        revoked_tokens::prune(&mut conn, keep_from(now)).await
    }
    .await;
    lock.release().await;
    let pruned = pruned?;
    if pruned > 0 {
        tracing::info!(pruned, "expired revoked jtis pruned");
    }
    Ok(Some(pruned))
}
