//! Deletes audit events past the retention bounds, in bounded batches. On
//! PostgreSQL one replica prunes at a time.

use crate::service::audit_retention::{self as retention, Pruned};
use crate::state::AppState;

/// Advisory lock id of this job ("asapd audit prune").
const LOCK_KEY: i64 = 0x6173_6170_6470_7231;

/// One pass; `None` when another replica holds the lock.
pub async fn run_once(state: &AppState) -> anyhow::Result<Option<Pruned>> {
    let Some(lock) = state.store.try_job_lock(LOCK_KEY).await? else {
        return Ok(None);
    };
    let result = retention::prune(state).await;
    lock.release().await;
    // Keep the cause: the job loop logs the whole chain (`{:#}`).
    let pruned = result.map_err(anyhow::Error::new)?;
    if pruned.by_age + pruned.by_count > 0 {
        tracing::info!(
            by_age = pruned.by_age,
            by_count = pruned.by_count,
            "audit pruned"
        );
    }
    Ok(Some(pruned))
}
