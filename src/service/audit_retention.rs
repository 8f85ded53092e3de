//! Audit retention: by age and by count, settable through the API and
//! applied by the pruning job in bounded batches.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::audit::{self, action, AuditEvent, Origin, Outcome};
use crate::domain::InvalidField;
use crate::service::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::store::audit::{self as audit_store, PruneBound};
use crate::store::{meta, StoreError};

const SETTING: &str = "audit_retention";
/// Rows per delete transaction: keeps each lock short so writers never
/// wait long behind a big prune.
pub const PRUNE_BATCH: i64 = 1000;

/// How long and how much audit history to keep. `null` disables a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Delete events older than this many days (1..=3650).
    #[schema(minimum = 1, maximum = 3650)]
    pub max_age_days: Option<i64>,
    /// Keep at most this many events, newest first (100..=1000000000).
    #[schema(minimum = 100, maximum = 1000000000)]
    pub max_entries: Option<i64>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age_days: Some(90),
            max_entries: Some(10_000_000),
        }
    }
}

impl Retention {
    pub fn validate(&self) -> Result<(), InvalidField> {
        if let Some(d) = self.max_age_days {
            if !(1..=3650).contains(&d) {
                return Err(InvalidField::new(
                    "max_age_days",
                    format!("must be between 1 and 3650 days, got {d}"),
                ));
            }
        }
        if let Some(n) = self.max_entries {
            if !(100..=1_000_000_000).contains(&n) {
                return Err(InvalidField::new(
                    "max_entries",
                    format!("must be between 100 and 1000000000, got {n}"),
                ));
            }
        }
        Ok(())
    }
}

pub async fn get(state: &AppState) -> ServiceResult<Retention> {
    let mut conn = state.store.acquire().await?;
    match meta::get(&mut conn, SETTING).await? {
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            ServiceError::internal(StoreError::Corrupt(format!("audit retention: {e}")))
        }),
        None => Ok(Retention::default()),
    }
}

/// Changes the retention; the change is audited in the same transaction.
pub async fn put(state: &AppState, origin: &Origin, new: Retention) -> ServiceResult<Retention> {
    new.validate()?;
    let old = get(state).await?;
    let mut tx = state.store.begin().await?;
    meta::put(
        &mut tx,
        SETTING,
        &serde_json::to_string(&new).expect("serialisable"),
    )
    .await?;
    let event = AuditEvent::new(
        origin,
        state.clock.now_ms(),
        action::SETTINGS_CHANGED,
        Outcome::Success,
    )
    .target("audit-retention")
    .detail(json!({"before": old, "after": new}));
    audit::record_in(&mut tx, event).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(new)
}

/// Rows removed by one pruning pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub by_age: u64,
    pub by_count: u64,
}

/// One pruning pass: by age, then by count, in bounded batches. Records
/// `audit.pruned` when anything went, also when a later batch failed.
///
/// Each batch is one autocommit `DELETE` (atomic alone), so a writer waits
/// at most one batch, and no transaction reads before it writes (which
/// SQLite in WAL mode could refuse with SQLITE_BUSY under load).
pub async fn prune(state: &AppState) -> ServiceResult<Pruned> {
    let retention = get(state).await?;
    let mut pruned = Pruned::default();
    let result = prune_batches(state, &retention, &mut pruned).await;
    let total = pruned.by_age + pruned.by_count;
    if total > 0 {
        state.metrics.audit_pruned.inc_by(total);
        let event = AuditEvent::new(
            &Origin::system(),
            state.clock.now_ms(),
            action::AUDIT_PRUNED,
            Outcome::Success,
        )
        .target("audit-log")
        .detail(json!({
            "by_age": pruned.by_age,
            "by_count": pruned.by_count,
            "rows": total,
            "max_age_days": retention.max_age_days,
            "max_entries": retention.max_entries,
            "complete": result.is_ok(),
        }));
        state.audit.record(event).await?;
    }
    result.map(|()| pruned)
}

async fn prune_batches(
    state: &AppState,
    retention: &Retention,
    pruned: &mut Pruned,
) -> ServiceResult<()> {
    if let Some(days) = retention.max_age_days {
        let cutoff = state.clock.now_ms() - days * 86_400_000;
        prune_in_batches(state, PruneBound::OlderThanMs(cutoff), &mut pruned.by_age).await?;
    }
    if let Some(keep) = retention.max_entries {
        let boundary = {
            let mut conn = state.store.acquire().await?;
            audit_store::count_boundary(&mut conn, keep).await?
        };
        if let Some(boundary) = boundary {
            prune_in_batches(state, PruneBound::UpToId(boundary), &mut pruned.by_count).await?;
        }
    }
    Ok(())
}

/// Deletes everything within `bound`, a batch at a time, counting into
/// `deleted` as it goes (so a failure midway still reports what went).
async fn prune_in_batches(
    state: &AppState,
    bound: PruneBound,
    deleted: &mut u64,
) -> ServiceResult<()> {
    loop {
        let mut conn = state.store.acquire().await?;
        let n = audit_store::prune_batch(&mut conn, bound, PRUNE_BATCH).await?;
        *deleted += n;
        if n < PRUNE_BATCH as u64 {
            return Ok(());
        }
    }
}
