//! Runs scheduled key rotation; on PostgreSQL one replica at a time, and a
//! rotation is one transaction.

use crate::service::rotation::{self, RotationReport};
use crate::state::AppState;

/// Advisory lock id of this job ("asapd key rotation").
const LOCK_KEY: i64 = 0x6173_6170_6472_6f74;

/// One pass; `None` when another replica holds the lock.
pub async fn run_once(state: &AppState) -> anyhow::Result<Option<RotationReport>> {
    let Some(lock) = state.store.try_job_lock(LOCK_KEY).await? else {
        return Ok(None);
    };
    let result = rotation::run(state).await;
    lock.release().await;
    // Keep the cause: the job loop logs the whole chain (`{:#}`).
    let report = result.map_err(anyhow::Error::new)?;
    if report != RotationReport::default() {
        tracing::info!(?report, "keys rotated");
    }
    Ok(Some(report))
}
