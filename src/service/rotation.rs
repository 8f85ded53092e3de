//! Scheduled key rotation (README, "Key lifecycle").
//!
//! Before a caller's active key reaches its rotation period, the next key
//! is generated `pending` and published for `keys.cache_max_age_secs`, so
//! verifier caches hold it before it signs anything. When the period is
//! over, the pending key becomes active and the old one retires; a retired
//! key stays published until every token it signed has expired, then
//! expires: the longest token lifetime plus leeway plus one key ring refresh
//! interval after `retired_at` (another replica may sign with it until its
//! next refresh).

use std::collections::HashMap;
use std::str::FromStr;

use serde_json::json;

use crate::audit::{self, action, AuditEvent, Origin, Outcome};
use crate::domain::algorithm::Algorithm;
use crate::domain::group::MAX_TOKEN_LIFETIME_SECS;
use crate::domain::key::KeyState;
use crate::domain::names::CallerName;
use crate::error::{ApiError, ApiResult};
use crate::service::keys::{generate_pair, new_key_name, refresh, store_key};
use crate::state::AppState;
use crate::store::keys::{self, KeyRow};
use crate::store::{callers, StoreError};

/// Clock skew allowed to verifiers beyond a token's `exp`.
pub const EXPIRY_LEEWAY_SECS: i64 = 60;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RotationReport {
    pub prepublished: Vec<String>,
    pub activated: Vec<String>,
    pub expired: Vec<String>,
}

/// One pass over every caller's keys.
pub async fn run(state: &AppState) -> ApiResult<RotationReport> {
    let now = state.clock.now();
    let origin = Origin::system();
    let prepublish = i64::from(state.settings.keys.cache_max_age_secs);
    let (rows, periods) = {
        let mut conn = state.store.acquire().await?;
        let rows = keys::list_published(&mut conn).await?;
        let periods: HashMap<String, (i64, String)> = callers::list(&mut conn)
            .await?
            .into_iter()
            .map(|c| (c.name, (c.rotation_period_secs, c.algorithm)))
            .collect();
        (rows, periods)
    };
    let mut by_caller: HashMap<&str, Vec<&KeyRow>> = HashMap::new();
    for row in &rows {
        by_caller.entry(row.caller.as_str()).or_default().push(row);
    }
    let mut report = RotationReport::default();
    for (caller, keys_of) in by_caller {
        let Some((period, algorithm)) = periods.get(caller) else {
            continue;
        };
        let active = keys_of
            .iter()
            .find(|k| k.state == KeyState::Active.as_str());
        let pending = keys_of
            .iter()
            .filter(|k| k.state == KeyState::Pending.as_str())
            .min_by_key(|k| k.created_at);
        let Some(active) = active else { continue };
        let due_at = active.activated_at.unwrap_or(active.created_at) + period;
        match pending {
            None if now >= due_at - prepublish => {
                let algorithm = Algorithm::from_str(algorithm)
                    .map_err(|m| ApiError::internal(StoreError::Corrupt(m)))?;
                let pair = generate_pair(algorithm).await?;
                let caller = CallerName::parse(caller)?;
                let mut tx = state.store.begin().await?;
                // Decided on a read outside this transaction: another
                // replica may have prepublished since.
                if keys::oldest_pending(&mut tx, caller.as_str())
                    .await?
                    .is_some()
                {
                    continue;
                }
                let name = new_key_name(now);
                let row = store_key(
                    &mut tx,
                    state,
                    &origin,
                    action::KEY_CREATED,
                    &caller,
                    &name,
                    &pair,
                    false,
                    now,
                )
                .await?;
                tx.commit().await.map_err(StoreError::from)?;
                report.prepublished.push(row.kid);
            }
            Some(next) if now >= due_at && now >= next.created_at + prepublish => {
                let mut tx = state.store.begin().await?;
                if keys::oldest_pending(&mut tx, caller).await?.as_deref() != Some(&next.kid) {
                    continue; // another replica rotated it in meanwhile
                }
                let retired = keys::retire_active(&mut tx, caller, now).await?;
                keys::activate(&mut tx, &next.kid, now).await?;
                let event = AuditEvent::new(&origin, state.clock.now_ms(), action::KEY_ROTATED, Outcome::Success)
                    .target(format!("key:{}", next.kid))
                    .detail(json!({"caller": caller, "activated": next.kid, "retired": retired, "scheduled": true}));
                audit::record_in(&mut tx, event).await?;
                tx.commit().await.map_err(StoreError::from)?;
                report.activated.push(next.kid.clone());
            }
            _ => {}
        }
    }
    // Retired keys signed their last token at retirement here, and at most
    // one ring refresh later on other replicas.
    let ring_refresh = i64::try_from(state.settings.keys.refresh_interval_secs).unwrap_or(i64::MAX);
    let grace =
        (i64::from(MAX_TOKEN_LIFETIME_SECS) + EXPIRY_LEEWAY_SECS).saturating_add(ring_refresh);
    for row in rows
        .iter()
        .filter(|k| k.state == KeyState::Retired.as_str())
    {
        if now >= row.retired_at.unwrap_or(now) + grace {
            let mut tx = state.store.begin().await?;
            if keys::expire(&mut tx, &row.kid).await? {
                let event = AuditEvent::new(
                    &origin,
                    state.clock.now_ms(),
                    action::KEY_EXPIRED,
                    Outcome::Success,
                )
                .target(format!("key:{}", row.kid))
                .detail(json!({"caller": row.caller, "retired_at": row.retired_at}));
                audit::record_in(&mut tx, event).await?;
            }
            tx.commit().await.map_err(StoreError::from)?;
            report.expired.push(row.kid.clone());
        }
    }
    if report != RotationReport::default() {
        refresh(state).await?;
    }
    Ok(report)
}
