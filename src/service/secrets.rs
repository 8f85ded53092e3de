//! Client secrets of a caller: several at once, for rotation.

use serde_json::json;

use crate::audit::{self, action, AuditEvent, Origin, Outcome};
use crate::crypto::secret;
use crate::service::callers::{ensure_another_admin, not_found};
use crate::service::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::store::secrets::{self, SecretRow};
use crate::store::{callers, StoreError, Tx};

/// Upper bound on live secrets: enough to rotate, too few to hoard.
pub const MAX_SECRETS_PER_CALLER: usize = 5;

pub struct CreatedSecret {
    pub id: String,
    pub client_secret: String,
    pub created_at: i64,
}

pub async fn add(state: &AppState, origin: &Origin, caller: &str) -> ServiceResult<CreatedSecret> {
    let mut tx = state.store.begin().await?;
    callers::get(&mut tx, caller)
        .await?
        .ok_or_else(|| not_found(caller))?;
    if secrets::list(&mut tx, caller).await?.len() >= MAX_SECRETS_PER_CALLER {
        return Err(ServiceError::Conflict(format!(
            "{caller} already has {MAX_SECRETS_PER_CALLER} secrets; revoke one first"
        )));
    }
    let created = insert_new(state, &mut tx, caller).await?;
    let event = secret_event(state, origin, action::SECRET_CREATED, caller, &created.id);
    commit(state, tx, event).await?;
    Ok(created)
}

/// A new secret for `caller`, stored hashed in `tx`; the plaintext is
/// returned to be shown once.
async fn insert_new(state: &AppState, tx: &mut Tx, caller: &str) -> ServiceResult<CreatedSecret> {
    let new = secret::generate();
    let now = state.clock.now();
    secrets::insert(tx, &new.id, caller, &new.hash, now).await?;
    Ok(CreatedSecret {
        id: new.id,
        client_secret: new.plaintext,
        created_at: now,
    })
}

/// Commits a secret change with its audit record; the credential caches
/// forget the caller.
async fn commit(state: &AppState, mut tx: Tx, event: AuditEvent) -> ServiceResult<()> {
    audit::record_in(&mut tx, event).await?;
    tx.commit().await.map_err(StoreError::from)?;
    state.callers.invalidate();
    Ok(())
}

pub async fn list(state: &AppState, caller: &str) -> ServiceResult<Vec<SecretRow>> {
    let mut conn = state.store.acquire().await?;
    callers::get(&mut conn, caller)
        .await?
        .ok_or_else(|| not_found(caller))?;
    Ok(secrets::list(&mut conn, caller).await?)
}

pub async fn revoke(
    state: &AppState,
    origin: &Origin,
    caller: &str,
    id: &str,
) -> ServiceResult<()> {
    let mut tx = state.store.begin().await?;
    match secrets::delete(&mut tx, caller, id).await {
        Err(StoreError::NotFound) => {
            return Err(ServiceError::NotFound(format!(
                "{caller} has no secret {id}"
            )))
        }
        other => other?,
    }
    if secrets::list(&mut tx, caller).await?.is_empty() {
        // Dropped, not committed, if it was the last way in for the last admin.
        ensure_another_admin(&mut tx, caller).await?;
    }
    let event = secret_event(state, origin, action::SECRET_REVOKED, caller, id);
    commit(state, tx, event).await
}

/// The secret's id only: the secret itself is never recorded.
fn secret_event(
    state: &AppState,
    origin: &Origin,
    action: &'static str,
    caller: &str,
    id: &str,
) -> AuditEvent {
    AuditEvent::new(origin, state.clock.now_ms(), action, Outcome::Success)
        .target(format!("caller:{caller}"))
        .detail(json!({ "secret_id": id }))
}

/// Offline recovery of a caller whose secrets are lost (`asapd admin
/// reset-secret`): every secret it has is revoked and one new secret is
/// returned, in one transaction with its `secret.reset` record. Run with
/// the database and the master key, not through the API, so it works when
/// no admin can sign in any more.
pub async fn reset(state: &AppState, caller: &str) -> ServiceResult<CreatedSecret> {
    let mut tx = state.store.begin().await?;
    callers::get(&mut tx, caller)
        .await?
        .ok_or_else(|| not_found(caller))?;
    let revoked: Vec<String> = secrets::list(&mut tx, caller)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    for id in &revoked {
        secrets::delete(&mut tx, caller, id).await?;
    }
    let created = insert_new(state, &mut tx, caller).await?;
    let event = secret_event(
        state,
        &Origin::system(),
        action::SECRET_RESET,
        caller,
        &created.id,
    )
    .detail(json!({ "secret_id": created.id, "revoked_secret_ids": revoked }));
    commit(state, tx, event).await?;
    Ok(created)
}
