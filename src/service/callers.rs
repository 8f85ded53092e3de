//! Caller management.

use serde_json::json;

use crate::audit::{self, action, AuditEvent, Origin, Outcome};
use crate::crypto::secret;
use crate::crypto::signer::MadeKey;
use crate::domain::algorithm::Algorithm;
use crate::domain::caller::{RateLimit, RotationPeriod};
use crate::domain::federation::{check_bindings, FederatedBinding};
use crate::domain::group::Cidr;
use crate::domain::kid::Kid;
use crate::domain::names::{CallerName, GroupName};
use crate::service::error::{ServiceError, ServiceResult};
use crate::service::keys::{self, make_key, new_key_name, store_key};
use crate::service::strings;
use crate::state::AppState;
use crate::store::callers::{self, CallerRow};
use crate::store::federation::{self as federation_store, BindingRow};
use crate::store::keys::KeyRow;
use crate::store::{groups, keys as key_store, secrets, Conn, StoreError};

#[derive(Debug, Clone)]
pub struct CallerSpec {
    pub name: CallerName,
    pub groups: Vec<GroupName>,
    pub algorithm: Option<Algorithm>,
    pub cidrs: Vec<Cidr>,
    pub rate_limit: Option<RateLimit>,
    pub rotation_period: Option<RotationPeriod>,
    pub enabled: bool,
    /// Federated identities that authenticate as this caller.
    pub federated: Vec<FederatedBinding>,
}

/// Fields an update may change; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct CallerChanges {
    pub groups: Option<Vec<GroupName>>,
    pub algorithm: Option<Algorithm>,
    pub cidrs: Option<Vec<Cidr>>,
    /// `Some(None)` removes the override and falls back to the default.
    pub rate_limit: Option<Option<RateLimit>>,
    pub rotation_period: Option<RotationPeriod>,
    pub enabled: Option<bool>,
    /// Replaces the caller's federated bindings.
    pub federated: Option<Vec<FederatedBinding>>,
}

/// A caller just created: the only time its secret is visible.
pub struct CreatedCaller {
    pub caller: CallerRow,
    pub secret_id: String,
    pub client_secret: String,
    pub kid: String,
}

/// Each group named once and existing: a repeated name would otherwise
/// reach the membership table's primary key as a misleading conflict.
async fn check_groups_exist(conn: &mut Conn, names: &[GroupName]) -> ServiceResult<()> {
    for (index, name) in names.iter().enumerate() {
        if names[..index].contains(name) {
            return Err(ServiceError::bad_field(
                format!("groups[{index}]"),
                format!("group {name} is listed twice"),
            ));
        }
    }
    let names = strings(names);
    let missing = groups::missing(conn, &names).await?;
    if let Some(first) = missing.first() {
        let index = names.iter().position(|n| n == first).unwrap_or(0);
        return Err(ServiceError::bad_field(
            format!("groups[{index}]"),
            format!("no group named {first}; create it first with POST /v1/admin/groups"),
        ));
    }
    Ok(())
}

/// The caller, its secret and its first key, in one transaction.
async fn insert(
    state: &AppState,
    origin: &Origin,
    (row, federated): (&CallerRow, &[FederatedBinding]),
    new_secret: &secret::NewSecret,
    kid: &Kid,
    made: &MadeKey,
    now: i64,
) -> ServiceResult<KeyRow> {
    keys::ensure_ring_loads(state).await?;
    let mut tx = state.store.begin().await?;
    let name = CallerName::parse(row.name.as_str())?;
    match callers::insert(&mut tx, row).await {
        Err(StoreError::Conflict(_)) => return Err(already_exists(&name)),
        other => other?,
    }
    secrets::insert(&mut tx, &new_secret.id, &row.name, &new_secret.hash, now).await?;
    let bindings = binding_rows(&row.name, federated);
    federation_store::set_bindings(&mut tx, &row.name, &bindings).await?;
    let mut detail = caller_detail(row);
    detail["federated"] = json!(federated);
    let event = caller_event(state, origin, action::CALLER_CREATED, row)
        .detail(json!({"caller": detail, "secret_id": new_secret.id}));
    audit::record_in(&mut tx, event).await?;
    let how = action::KEY_CREATED;
    let key = store_key(&mut tx, state, origin, how, kid, made, true, now).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(key)
}

/// Creates a caller with one secret and an active key, in one transaction.
pub async fn create(
    state: &AppState,
    origin: &Origin,
    spec: CallerSpec,
) -> ServiceResult<CreatedCaller> {
    let algorithm = spec
        .algorithm
        .unwrap_or(state.settings.keys.default_algorithm);
    {
        let mut conn = state.store.acquire().await?;
        check_groups_exist(&mut conn, &spec.groups).await?;
        check_bindings_valid(&mut conn, &spec.federated).await?;
        if callers::get(&mut conn, spec.name.as_str()).await?.is_some() {
            return Err(already_exists(&spec.name));
        }
    }
    let now = state.clock.now();
    let kid = Kid::new(&spec.name, &new_key_name(now));
    let made = make_key(state, &kid, algorithm).await?;
    let new_secret = secret::generate();
    let row = CallerRow {
        name: spec.name.to_string(),
        algorithm: algorithm.to_string(),
        cidrs: strings(&spec.cidrs),
        rate_limit: spec
            .rate_limit
            .map(|r| (i64::from(r.per_second), i64::from(r.burst))),
        rotation_period_secs: spec
            .rotation_period
            .map(RotationPeriod::secs)
            .unwrap_or(state.settings.keys.rotation_period_secs),
        enabled: spec.enabled,
        created_at: now,
        updated_at: now,
        groups: strings(&spec.groups),
    };
    let inserted = insert(
        state,
        origin,
        (&row, &spec.federated),
        &new_secret,
        &kid,
        &made,
        now,
    )
    .await;
    let key = match inserted {
        Ok(key) => key,
        Err(e) => {
            // Nothing was stored: a key made in a token for it goes too.
            keys::discard(state, made).await;
            return Err(e);
        }
    };
    state.callers.invalidate();
    state.federation.invalidate();
    // Committed: the one-time secret must reach the admin even if the
    // reload fails now (a key sealed in between under a master key this
    // replica lacks); the change listener reloads again.
    if let Err(err) = keys::refresh(state).await {
        tracing::warn!(error = ?err, "key ring reload after creating a caller failed");
    }
    Ok(CreatedCaller {
        caller: row,
        secret_id: new_secret.id,
        client_secret: new_secret.plaintext,
        kid: key.kid,
    })
}

pub async fn get(state: &AppState, name: &str) -> ServiceResult<CallerRow> {
    let mut conn = state.store.acquire().await?;
    callers::get(&mut conn, name)
        .await?
        .ok_or_else(|| not_found(name))
}

pub async fn list(state: &AppState) -> ServiceResult<Vec<CallerRow>> {
    let mut conn = state.store.acquire().await?;
    Ok(callers::list(&mut conn).await?)
}

pub async fn update(
    state: &AppState,
    origin: &Origin,
    name: &str,
    changes: CallerChanges,
) -> ServiceResult<CallerRow> {
    let mut tx = state.store.begin().await?;
    let mut row = callers::get(&mut tx, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    let mut before = caller_detail(&row);
    let was_enabled = row.enabled;
    if let Some(groups) = &changes.groups {
        check_groups_exist(&mut tx, groups).await?;
        row.groups = strings(groups);
    }
    if let Some(a) = changes.algorithm {
        row.algorithm = a.to_string();
    }
    if let Some(c) = &changes.cidrs {
        row.cidrs = strings(c);
    }
    if let Some(r) = changes.rate_limit {
        row.rate_limit = r.map(|r| (i64::from(r.per_second), i64::from(r.burst)));
    }
    if let Some(p) = changes.rotation_period {
        row.rotation_period_secs = p.secs();
    }
    if let Some(e) = changes.enabled {
        row.enabled = e;
    }
    let stays_admin = row.enabled && row.groups.iter().any(|g| g == GroupName::ADMIN);
    if !stays_admin {
        ensure_another_admin(&mut tx, name).await?;
    }
    row.updated_at = state.clock.now();
    callers::update(&mut tx, &row).await?;
    let mut after = caller_detail(&row);
    if let Some(federated) = &changes.federated {
        check_bindings_valid(&mut tx, federated).await?;
        let old = federation_store::bindings_of(&mut tx, name).await?;
        before["federated"] = json!(old.iter().map(binding_detail).collect::<Vec<_>>());
        after["federated"] = json!(federated);
        federation_store::set_bindings(&mut tx, name, &binding_rows(name, federated)).await?;
    }
    let how = if was_enabled && !row.enabled {
        action::CALLER_DISABLED
    } else {
        action::CALLER_UPDATED
    };
    let event =
        caller_event(state, origin, how, &row).detail(json!({"before": before, "after": after}));
    audit::record_in(&mut tx, event).await?;
    tx.commit().await.map_err(StoreError::from)?;
    state.callers.invalidate();
    state.federation.invalidate();
    Ok(row)
}

pub async fn delete(state: &AppState, origin: &Origin, name: &str) -> ServiceResult<()> {
    let mut tx = state.store.begin().await?;
    let row = callers::get(&mut tx, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    ensure_another_admin(&mut tx, name).await?;
    // The caller's keys and secrets go with it (ON DELETE CASCADE): its
    // record names them, so "which keys ceased to exist" stays answerable.
    let deleted_keys: Vec<_> = key_store::list_for_caller(&mut tx, name)
        .await?
        .into_iter()
        .map(|k| json!({"kid": k.kid, "state": k.state}))
        .collect();
    let deleted_secrets: Vec<_> = secrets::list(&mut tx, name)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    callers::delete(&mut tx, name).await?;
    // Its bindings go with it (ON DELETE CASCADE); the federation snapshot
    // is reloaded below.
    let event = caller_event(state, origin, action::CALLER_DELETED, &row).detail(json!({
        "caller": caller_detail(&row),
        "deleted_keys": deleted_keys,
        "deleted_secret_ids": deleted_secrets,
    }));
    audit::record_in(&mut tx, event).await?;
    tx.commit().await.map_err(StoreError::from)?;
    state.callers.invalidate();
    state.federation.invalidate();
    keys::refresh_after_commit(state, action::CALLER_DELETED).await;
    Ok(())
}

/// Refuses a change that would leave no admin able to sign in (enabled,
/// with a live secret): nobody could manage asapd any more without
/// `asapd admin reset-secret` on the database itself.
pub(crate) async fn ensure_another_admin(conn: &mut Conn, name: &str) -> ServiceResult<()> {
    let row = callers::get(conn, name).await?;
    let is_admin_now =
        row.is_some_and(|r| r.enabled && r.groups.iter().any(|g| g == GroupName::ADMIN));
    if is_admin_now && callers::count_usable_members(conn, GroupName::ADMIN, name).await? == 0 {
        return Err(ServiceError::Conflict(format!(
            "{name} is the last enabled admin; add another admin before removing, disabling or \
             demoting it, or revoking its last secret"
        )));
    }
    Ok(())
}

fn caller_event(
    state: &AppState,
    origin: &Origin,
    action: &'static str,
    row: &CallerRow,
) -> AuditEvent {
    AuditEvent::new(origin, state.clock.now_ms(), action, Outcome::Success)
        .target(format!("caller:{}", row.name))
}

/// The caller's policy as recorded in audit details (no secrets here).
fn caller_detail(row: &CallerRow) -> serde_json::Value {
    json!({
        "groups": row.groups,
        "algorithm": row.algorithm,
        "cidrs": row.cidrs,
        "rate_limit": row.rate_limit.map(|(p, b)| json!({"per_second": p, "burst": b})),
        "rotation_period_secs": row.rotation_period_secs,
        "enabled": row.enabled,
    })
}

/// A caller's federated bindings, as the admin API shows them.
pub async fn bindings(state: &AppState, name: &str) -> ServiceResult<Vec<FederatedBinding>> {
    let mut conn = state.store.acquire().await?;
    let rows = federation_store::bindings_of(&mut conn, name).await?;
    Ok(rows.into_iter().filter_map(binding_of_row).collect())
}

fn binding_of_row(row: BindingRow) -> Option<FederatedBinding> {
    Some(FederatedBinding {
        issuer: crate::domain::names::IssuerName::parse(row.issuer).ok()?,
        subject: row.subject,
        claims: row.claims,
    })
}

fn binding_detail(row: &BindingRow) -> serde_json::Value {
    json!({"issuer": row.issuer, "subject": row.subject, "claims": row.claims})
}

fn binding_rows(caller: &str, bindings: &[FederatedBinding]) -> Vec<BindingRow> {
    bindings
        .iter()
        .map(|b| BindingRow {
            caller: caller.to_owned(),
            issuer: b.issuer.to_string(),
            subject: b.subject.clone(),
            claims: b.claims.clone(),
        })
        .collect()
}

/// Bindings listed once each, each naming a trusted issuer.
async fn check_bindings_valid(conn: &mut Conn, bindings: &[FederatedBinding]) -> ServiceResult<()> {
    check_bindings(bindings).map_err(|(index, m)| {
        let field = index.map_or_else(|| "federated".to_owned(), |i| format!("federated[{i}]"));
        ServiceError::bad_field(field, m)
    })?;
    let names: Vec<&str> = bindings.iter().map(|b| b.issuer.as_str()).collect();
    let missing = federation_store::missing_issuers(conn, &names).await?;
    if let Some(first) = missing.first() {
        let index = names.iter().position(|n| n == first).unwrap_or(0);
        return Err(ServiceError::bad_field(
            format!("federated[{index}].issuer"),
            format!("no trusted issuer named {first}; create it first with POST /v1/admin/issuers"),
        ));
    }
    Ok(())
}

fn already_exists(name: &CallerName) -> ServiceError {
    ServiceError::Conflict(format!("caller {name} already exists"))
}

pub fn not_found(name: &str) -> ServiceError {
    ServiceError::NotFound(format!("no caller named {name}"))
}
