//! Trusted issuers of workload identity tokens: created, changed and
//! deleted through the audited path, so every replica hears of it.

use serde_json::json;

use crate::audit::{self, action, AuditEvent, Origin, Outcome};
use crate::crypto::ca_pem::parse_ca_pem;
use crate::domain::federation::{
    check_https_url, check_issuer, check_issuer_audiences, MaxTokenAge,
};
use crate::domain::names::IssuerName;
use crate::service::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::store::federation::{self as store, IssuerRow};
use crate::store::StoreError;

/// An issuer as the admin describes it (on create, and on a full update).
#[derive(Debug, Clone)]
pub struct IssuerSpec {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub ca_pem: Option<String>,
    pub audiences: Vec<String>,
    /// Default: `federation.default_max_token_age_secs`.
    pub max_token_age: Option<MaxTokenAge>,
}

impl IssuerSpec {
    /// Every field's rule, the failing one named.
    fn check(&self) -> ServiceResult<()> {
        if let Some(uri) = &self.jwks_uri {
            check_https_url(uri).map_err(|m| ServiceError::bad_field("jwks_uri", m))?;
        }
        check_issuer(&self.issuer, self.jwks_uri.is_some())
            .map_err(|m| ServiceError::bad_field("issuer", m))?;
        check_issuer_audiences(&self.audiences).map_err(|(index, m)| {
            let field = index.map_or_else(|| "audiences".to_owned(), |i| format!("audiences[{i}]"));
            ServiceError::bad_field(field, m)
        })?;
        if let Some(pem) = &self.ca_pem {
            parse_ca_pem(pem).map_err(|m| ServiceError::bad_field("ca_pem", m))?;
        }
        Ok(())
    }

    fn into_row(self, state: &AppState, name: String, created_at: i64) -> IssuerRow {
        IssuerRow {
            name,
            issuer: self.issuer,
            jwks_uri: self.jwks_uri,
            ca_pem: self.ca_pem,
            audiences: self.audiences,
            max_token_age_secs: self.max_token_age.map_or(
                state.settings.federation.default_max_token_age_secs,
                MaxTokenAge::secs,
            ),
            created_at,
            updated_at: state.clock.now(),
        }
    }
}

pub async fn create(
    state: &AppState,
    origin: &Origin,
    name: IssuerName,
    spec: IssuerSpec,
) -> ServiceResult<IssuerRow> {
    spec.check()?;
    let row = spec.into_row(state, name.to_string(), state.clock.now());
    let mut tx = state.store.begin().await?;
    if store::get_issuer(&mut tx, &row.name).await?.is_some() {
        return Err(ServiceError::Conflict(format!(
            "issuer {} already exists",
            row.name
        )));
    }
    match store::insert_issuer(&mut tx, &row).await {
        Err(StoreError::Conflict(_)) => return Err(same_iss(&row.issuer)),
        other => other?,
    }
    audit::record_in(&mut tx, event(state, origin, action::ISSUER_CREATED, &row)).await?;
    tx.commit().await.map_err(StoreError::from)?;
    state.federation.invalidate();
    Ok(row)
}

pub async fn get(state: &AppState, name: &str) -> ServiceResult<IssuerRow> {
    let mut conn = state.store.acquire().await?;
    store::get_issuer(&mut conn, name)
        .await?
        .ok_or_else(|| not_found(name))
}

pub async fn list(state: &AppState) -> ServiceResult<Vec<IssuerRow>> {
    let mut conn = state.store.acquire().await?;
    Ok(store::list_issuers(&mut conn).await?)
}

/// Replaces an issuer's settings; its name and bindings stay.
pub async fn update(
    state: &AppState,
    origin: &Origin,
    name: &str,
    spec: IssuerSpec,
) -> ServiceResult<IssuerRow> {
    spec.check()?;
    let mut tx = state.store.begin().await?;
    let before = store::get_issuer(&mut tx, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    let row = spec.into_row(state, name.to_owned(), before.created_at);
    match store::update_issuer(&mut tx, &row).await {
        Err(StoreError::Conflict(_)) => return Err(same_iss(&row.issuer)),
        other => other?,
    }
    let detail = json!({"before": detail(&before), "after": detail(&row)});
    let event = event(state, origin, action::ISSUER_UPDATED, &row).detail(detail);
    audit::record_in(&mut tx, event).await?;
    tx.commit().await.map_err(StoreError::from)?;
    state.federation.invalidate();
    Ok(row)
}

/// Deletes an issuer no caller is bound to.
pub async fn delete(state: &AppState, origin: &Origin, name: &str) -> ServiceResult<()> {
    let mut tx = state.store.begin().await?;
    let row = store::get_issuer(&mut tx, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    let bound = store::callers_bound_to(&mut tx, name).await?;
    if !bound.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "issuer {name} is still bound to caller(s) {}; remove their federated bindings first",
            bound.join(", ")
        )));
    }
    store::delete_issuer(&mut tx, name).await?;
    audit::record_in(&mut tx, event(state, origin, action::ISSUER_DELETED, &row)).await?;
    tx.commit().await.map_err(StoreError::from)?;
    state.federation.invalidate();
    Ok(())
}

fn event(state: &AppState, origin: &Origin, action: &'static str, row: &IssuerRow) -> AuditEvent {
    AuditEvent::new(origin, state.clock.now_ms(), action, Outcome::Success)
        .target(format!("issuer:{}", row.name))
        .detail(detail(row))
}

/// The issuer as its audit records describe it (the CA only as present or
/// not: certificates are public, but long).
fn detail(row: &IssuerRow) -> serde_json::Value {
    json!({
        "issuer": row.issuer,
        "jwks_uri": row.jwks_uri,
        "ca_pem": row.ca_pem.is_some(),
        "audiences": row.audiences,
        "max_token_age_secs": row.max_token_age_secs,
    })
}

fn same_iss(iss: &str) -> ServiceError {
    ServiceError::Conflict(format!(
        "another trusted issuer already has issuer {iss:?}: a token's iss must select one"
    ))
}

pub fn not_found(name: &str) -> ServiceError {
    ServiceError::NotFound(format!("no trusted issuer named {name}"))
}
