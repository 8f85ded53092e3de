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
use crate::crypto::signer::BackendKind;
use crate::domain::algorithm::Algorithm;
use crate::domain::group::MAX_TOKEN_LIFETIME_SECS;
use crate::domain::key::KeyState;
use crate::domain::kid::Kid;
use crate::domain::names::CallerName;
use crate::keyring;
use crate::service::error::{ServiceError, ServiceResult};
use crate::service::keys::{discard, make_key, new_key_name, refresh, store_key};
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
pub async fn run(state: &AppState) -> ServiceResult<RotationReport> {
    let now = state.clock.now();
    let origin = Origin::system();
    let (rows, periods) = load(state).await?;
    let mut by_caller: HashMap<&str, Vec<&KeyRow>> = HashMap::new();
    for row in &rows {
        by_caller.entry(row.caller.as_str()).or_default().push(row);
    }
    let mut report = RotationReport::default();
    for (caller, keys_of) in by_caller {
        if let Some(period) = periods.get(caller) {
            rotate_caller(state, &origin, caller, period, &keys_of, now, &mut report).await?;
        }
    }
    expire_retired(state, &origin, &rows, now, &mut report).await?;
    if report != RotationReport::default() {
        refresh(state).await?;
    }
    Ok(report)
}

/// Every published key, and each caller's rotation period and algorithm.
async fn load(state: &AppState) -> ServiceResult<(Vec<KeyRow>, HashMap<String, (i64, String)>)> {
    let mut conn = state.store.acquire().await?;
    let rows = keys::list_published(&mut conn).await?;
    let periods = callers::list(&mut conn)
        .await?
        .into_iter()
        .map(|c| (c.name, (c.rotation_period_secs, c.algorithm)))
        .collect();
    Ok((rows, periods))
}

/// Prepublishes the caller's next key when its active key is nearly due,
/// or activates the pending one once it is due and has been published
/// long enough.
async fn rotate_caller(
    state: &AppState,
    origin: &Origin,
    caller: &str,
    (period, algorithm): &(i64, String),
    keys_of: &[&KeyRow],
    now: i64,
    report: &mut RotationReport,
) -> ServiceResult<()> {
    let prepublish = i64::from(state.settings.keys.cache_max_age_secs);
    let active = keys_of
        .iter()
        .find(|k| k.state == KeyState::Active.as_str());
    let pending = keys_of
        .iter()
        .filter(|k| k.state == KeyState::Pending.as_str())
        .min_by_key(|k| k.created_at);
    let Some(active) = active else {
        return Ok(());
    };
    let due_at = active.activated_at.unwrap_or(active.created_at) + period;
    match pending {
        None if now >= due_at - prepublish => {
            let kid = prepublish_next(state, origin, caller, algorithm, now).await?;
            report.prepublished.extend(kid);
        }
        Some(next) if now >= due_at && now >= next.created_at + prepublish => {
            let kid = activate_pending(state, origin, caller, &next.kid, now).await?;
            report.activated.extend(kid);
        }
        _ => {}
    }
    Ok(())
}

/// Generates and stores the caller's next key as `pending`; its kid, or
/// `None` when another replica prepublished one first.
async fn prepublish_next(
    state: &AppState,
    origin: &Origin,
    caller: &str,
    algorithm: &str,
    now: i64,
) -> ServiceResult<Option<String>> {
    let algorithm = Algorithm::from_str(algorithm)
        .map_err(|m| ServiceError::internal(StoreError::Corrupt(m)))?;
    let caller = CallerName::parse(caller)?;
    let kid = Kid::new(&caller, &new_key_name(now));
    let made = make_key(state, &kid, algorithm).await?;
    let mut tx = state.store.begin().await?;
    // Decided on a read outside this transaction: another replica may have
    // prepublished since.
    if keys::oldest_pending(&mut tx, caller.as_str())
        .await?
        .is_some()
    {
        drop(tx);
        discard(state, made).await;
        return Ok(None);
    }
    let row = store_key(
        &mut tx,
        state,
        origin,
        action::KEY_CREATED,
        &kid,
        &made,
        false,
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Some(row.kid))
}

/// Activates the pending key `next` and retires the active one; its kid,
/// or `None` when another replica rotated it in meanwhile.
async fn activate_pending(
    state: &AppState,
    origin: &Origin,
    caller: &str,
    next: &str,
    now: i64,
) -> ServiceResult<Option<String>> {
    let mut tx = state.store.begin().await?;
    if keys::oldest_pending(&mut tx, caller).await?.as_deref() != Some(next) {
        return Ok(None);
    }
    let retired = keys::retire_active(&mut tx, caller, now).await?;
    keys::activate(&mut tx, next, now).await?;
    let event = AuditEvent::new(
        origin,
        state.clock.now_ms(),
        action::KEY_ROTATED,
        Outcome::Success,
    )
    .target(format!("key:{next}"))
    .detail(json!({"caller": caller, "activated": next, "retired": retired, "scheduled": true}));
    audit::record_in(&mut tx, event).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Some(next.to_owned()))
}

/// Expires retired keys once no token they signed can still be valid.
async fn expire_retired(
    state: &AppState,
    origin: &Origin,
    rows: &[KeyRow],
    now: i64,
    report: &mut RotationReport,
) -> ServiceResult<()> {
    // Retired keys signed their last token at retirement here, and at most
    // one ring refresh later on other replicas.
    let ring_refresh = i64::try_from(state.settings.keys.refresh_interval_secs).unwrap_or(i64::MAX);
    let grace =
        (i64::from(MAX_TOKEN_LIFETIME_SECS) + EXPIRY_LEEWAY_SECS).saturating_add(ring_refresh);
    for row in rows
        .iter()
        .filter(|k| k.state == KeyState::Retired.as_str())
    {
        if now < row.retired_at.unwrap_or(now) + grace {
            continue;
        }
        // Destroyed before it is marked expired: if the token cannot be
        // reached, the key stays retired and the next pass tries again.
        let Some(destroyed) = destroy_in_token(state, row).await? else {
            continue;
        };
        let mut tx = state.store.begin().await?;
        if keys::expire(&mut tx, &row.kid).await? {
            let event = AuditEvent::new(
                origin,
                state.clock.now_ms(),
                action::KEY_EXPIRED,
                Outcome::Success,
            )
            .target(format!("key:{}", row.kid))
            .detail(json!({"caller": row.caller, "retired_at": row.retired_at}));
            audit::record_in(&mut tx, event).await?;
            if let Some(objects) = destroyed {
                let event = AuditEvent::new(
                    origin,
                    state.clock.now_ms(),
                    action::KEY_DESTROYED,
                    Outcome::Success,
                )
                .target(format!("key:{}", row.kid))
                .detail(json!({"caller": row.caller, "backend": row.backend, "objects": objects}));
                audit::record_in(&mut tx, event).await?;
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        report.expired.push(row.kid.clone());
    }
    Ok(())
}

/// Destroys the private key of a retired key held in a token: `Some(Some(
/// objects destroyed))`, `Some(None)` for a software key (its sealed row
/// is its only copy), `None` when the token cannot do it now.
async fn destroy_in_token(state: &AppState, row: &KeyRow) -> ServiceResult<Option<Option<usize>>> {
    let held = keyring::held(row).map_err(ServiceError::internal)?;
    if held.backend() == BackendKind::Software {
        return Ok(Some(None));
    }
    let backend = state.keyring.backend().clone();
    match tokio::task::spawn_blocking(move || backend.destroy(&held))
        .await
        .map_err(ServiceError::internal)?
    {
        Ok(objects) => Ok(Some(Some(objects))),
        Err(e) => {
            tracing::warn!(kid = %row.kid, error = %e, "a retired key could not be destroyed in its token yet");
            Ok(None)
        }
    }
}
