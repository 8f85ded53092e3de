//! Client keys: public keys a caller registers so it can authenticate with
//! an assertion it signs itself (RFC 7523 `private_key_jwt`) instead of a
//! secret. Each change is audited in its transaction, which announces it
//! to the fleet; assertions are checked against the database, so a deleted
//! key stops working on every replica as soon as the deletion commits.

use serde_json::{json, Value};

use crate::audit::{self, action, AuditEvent, Origin, Outcome};
use crate::crypto::public_import::{self, ClientPublicKey};
use crate::service::callers::not_found;
use crate::service::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::store::client_keys::{self, ClientKeyRow};
use crate::store::{callers, StoreError};

/// Upper bound on a caller's client keys: enough to rotate, and it bounds
/// the keys an assertion without a matching `kid` is tried against.
pub const MAX_CLIENT_KEYS_PER_CALLER: usize = 5;

/// Registers `public_key` (a PEM string or a JWK object) for `caller`.
pub async fn add(
    state: &AppState,
    origin: &Origin,
    caller: &str,
    public_key: &Value,
) -> ServiceResult<ClientKeyRow> {
    let key = public_import::parse(public_key)
        .map_err(|e| ServiceError::bad_field(e.field, e.message))?;
    let mut tx = state.store.begin().await?;
    callers::get(&mut tx, caller)
        .await?
        .ok_or_else(|| not_found(caller))?;
    if client_keys::list(&mut tx, caller).await?.len() >= MAX_CLIENT_KEYS_PER_CALLER {
        return Err(ServiceError::Conflict(format!(
            "{caller} already has {MAX_CLIENT_KEYS_PER_CALLER} client keys; delete one first"
        )));
    }
    let row = row_of(caller, key, state.clock.now());
    match client_keys::insert(&mut tx, &row).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ServiceError::Conflict(format!(
                "{caller} has this key already, as client key {}",
                row.id
            )))
        }
        other => other?,
    }
    let event = event(state, origin, action::CLIENT_KEY_ADDED, caller)
        .detail(json!({ "client_key_id": row.id, "family": row.family }));
    audit::record_in(&mut tx, event).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(row)
}

fn row_of(caller: &str, key: ClientPublicKey, now: i64) -> ClientKeyRow {
    ClientKeyRow {
        id: key.id,
        caller: caller.to_owned(),
        family: key.family.name().to_owned(),
        spki_der: key.spki_der,
        created_at: now,
    }
}

pub async fn list(state: &AppState, caller: &str) -> ServiceResult<Vec<ClientKeyRow>> {
    let mut conn = state.store.acquire().await?;
    callers::get(&mut conn, caller)
        .await?
        .ok_or_else(|| not_found(caller))?;
    Ok(client_keys::list(&mut conn, caller).await?)
}

/// Deletes a client key: assertions it signed are refused from the commit
/// on, on every replica.
pub async fn delete(
    state: &AppState,
    origin: &Origin,
    caller: &str,
    id: &str,
) -> ServiceResult<()> {
    let mut tx = state.store.begin().await?;
    match client_keys::delete(&mut tx, caller, id).await {
        Err(StoreError::NotFound) => {
            return Err(ServiceError::NotFound(format!(
                "{caller} has no client key {id}"
            )))
        }
        other => other?,
    }
    let event = event(state, origin, action::CLIENT_KEY_DELETED, caller)
        .detail(json!({ "client_key_id": id }));
    audit::record_in(&mut tx, event).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

fn event(state: &AppState, origin: &Origin, action: &'static str, caller: &str) -> AuditEvent {
    AuditEvent::new(origin, state.clock.now_ms(), action, Outcome::Success)
        .target(format!("caller:{caller}"))
}
