//! Group management.

use serde_json::json;

use crate::audit::{self, action, AuditEvent, Origin, Outcome};
use crate::domain::group::{AudiencePattern, Cidr, Lifetime};
use crate::domain::names::GroupName;
use crate::service::error::{ServiceError, ServiceResult};
use crate::service::strings;
use crate::state::AppState;
use crate::store::groups::{self, GroupRow};
use crate::store::StoreError;

/// A group's grant as the admin describes it.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: GroupName,
    pub audiences: Vec<AudiencePattern>,
    pub max_lifetime: Lifetime,
    pub cidrs: Vec<Cidr>,
    pub allow_subject: bool,
}

/// Fields an update may change; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct GroupChanges {
    pub audiences: Option<Vec<AudiencePattern>>,
    pub max_lifetime: Option<Lifetime>,
    pub cidrs: Option<Vec<Cidr>>,
    pub allow_subject: Option<bool>,
}

pub async fn create(state: &AppState, origin: &Origin, spec: GroupSpec) -> ServiceResult<GroupRow> {
    let now = state.clock.now();
    let row = GroupRow {
        name: spec.name.to_string(),
        audiences: strings(&spec.audiences),
        max_lifetime: i64::from(spec.max_lifetime.secs()),
        cidrs: strings(&spec.cidrs),
        allow_subject: spec.allow_subject,
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.store.begin().await?;
    match groups::insert(&mut tx, &row).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ServiceError::Conflict(format!(
                "group {} already exists",
                row.name
            )))
        }
        other => other?,
    }
    audit::record_in(
        &mut tx,
        group_event(state, origin, action::GROUP_CREATED, &row),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    state.callers.invalidate();
    Ok(row)
}

fn group_event(
    state: &AppState,
    origin: &Origin,
    action: &'static str,
    row: &GroupRow,
) -> AuditEvent {
    AuditEvent::new(origin, state.clock.now_ms(), action, Outcome::Success)
        .target(format!("group:{}", row.name))
        .detail(json!({
            "audiences": row.audiences,
            "max_lifetime": row.max_lifetime,
            "cidrs": row.cidrs,
            "allow_subject": row.allow_subject,
        }))
}

pub async fn get(state: &AppState, name: &str) -> ServiceResult<GroupRow> {
    let mut conn = state.store.acquire().await?;
    groups::get(&mut conn, name)
        .await?
        .ok_or_else(|| not_found(name))
}

pub async fn list(state: &AppState) -> ServiceResult<Vec<GroupRow>> {
    let mut conn = state.store.acquire().await?;
    Ok(groups::list(&mut conn).await?)
}

pub async fn update(
    state: &AppState,
    origin: &Origin,
    name: &str,
    changes: GroupChanges,
) -> ServiceResult<GroupRow> {
    let mut tx = state.store.begin().await?;
    let mut row = groups::get(&mut tx, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    if let Some(a) = changes.audiences {
        row.audiences = strings(&a);
    }
    if let Some(l) = changes.max_lifetime {
        row.max_lifetime = i64::from(l.secs());
    }
    if let Some(c) = changes.cidrs {
        row.cidrs = strings(&c);
    }
    if let Some(s) = changes.allow_subject {
        row.allow_subject = s;
    }
    row.updated_at = state.clock.now();
    groups::update(&mut tx, &row).await?;
    audit::record_in(
        &mut tx,
        group_event(state, origin, action::GROUP_UPDATED, &row),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    state.callers.invalidate();
    Ok(row)
}

pub async fn delete(state: &AppState, origin: &Origin, name: &str) -> ServiceResult<()> {
    let mut tx = state.store.begin().await?;
    let row = groups::get(&mut tx, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    if GroupName::parse(name).is_ok_and(|n| n.is_reserved()) {
        return Err(ServiceError::Conflict(format!(
            "group {name} is reserved and cannot be deleted"
        )));
    }
    let members = groups::member_count(&mut tx, name).await?;
    if members > 0 {
        return Err(ServiceError::Conflict(format!(
            "group {name} still has {members} member(s); remove them from the group first"
        )));
    }
    groups::delete(&mut tx, name).await?;
    audit::record_in(
        &mut tx,
        group_event(state, origin, action::GROUP_DELETED, &row),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    state.callers.invalidate();
    Ok(())
}

fn not_found(name: &str) -> ServiceError {
    ServiceError::NotFound(format!("no group named {name}"))
}
