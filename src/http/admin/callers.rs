//! `/v1/admin/callers`.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{caller_in_path, nullable};
use crate::clock::rfc3339;
use crate::domain::algorithm::Algorithm;
use crate::domain::caller::{RateLimit, RotationPeriod};
use crate::domain::federation::FederatedBinding;
use crate::domain::group::Cidr;
use crate::domain::names::{CallerName, GroupName};
use crate::http::auth::AdminCaller;
use crate::http::context::RequestMeta;
use crate::http::error::{ApiResult, Problem};
use crate::http::json::ApiJson;
use crate::service::callers::{self, CallerChanges, CallerSpec};
use crate::state::AppState;
use crate::store::callers::CallerRow;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCaller {
    /// Becomes the `iss` of its tokens and its OAuth2 `client_id`.
    pub name: CallerName,
    #[serde(default)]
    pub groups: Vec<GroupName>,
    /// Default: the server's `keys.default_algorithm` (ES256).
    pub algorithm: Option<Algorithm>,
    /// The caller's own IP allow-list; empty means any address.
    #[serde(default)]
    pub cidrs: Vec<Cidr>,
    /// Per-caller override of the default token rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Default: the server's `keys.rotation_period_secs` (30 days).
    pub rotation_period_secs: Option<RotationPeriod>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Workload identities (tokens of trusted issuers) that authenticate
    /// as this caller instead of a secret.
    #[serde(default)]
    pub federated: Vec<FederatedBinding>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCaller {
    pub groups: Option<Vec<GroupName>>,
    /// Used for the next key; the active key is not replaced.
    pub algorithm: Option<Algorithm>,
    pub cidrs: Option<Vec<Cidr>>,
    /// `null` removes the override.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<Option<RateLimit>>,
    pub rotation_period_secs: Option<RotationPeriod>,
    pub enabled: Option<bool>,
    /// Replaces the caller's federated bindings (`[]` removes them all).
    pub federated: Option<Vec<FederatedBinding>>,
}

#[derive(Serialize, ToSchema)]
pub struct CallerView {
    pub name: String,
    pub client_id: String,
    pub groups: Vec<String>,
    pub algorithm: String,
    pub cidrs: Vec<String>,
    pub rate_limit: Option<RateLimit>,
    pub rotation_period_secs: i64,
    pub enabled: bool,
    /// The kid that signs this caller's tokens now.
    pub active_kid: Option<String>,
    /// Federated identities bound to this caller.
    pub federated: Vec<FederatedBinding>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedCaller {
    #[serde(flatten)]
    pub caller: CallerView,
    /// Shown once: asapd stores only its hash.
    pub client_secret: String,
    pub secret_id: String,
    pub kid: String,
}

fn view(state: &AppState, row: CallerRow, federated: Vec<FederatedBinding>) -> CallerView {
    let active_kid = state
        .keyring
        .snapshot()
        .signers
        .get(&row.name)
        .map(|s| s.kid.clone());
    CallerView {
        client_id: row.name.clone(),
        rate_limit: row.rate_limit.map(|(p, b)| RateLimit {
            per_second: p as u32,
            burst: b as u32,
        }),
        name: row.name,
        groups: row.groups,
        algorithm: row.algorithm,
        cidrs: row.cidrs,
        rotation_period_secs: row.rotation_period_secs,
        enabled: row.enabled,
        active_kid,
        federated,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }
}

/// Registers a caller with one client secret (returned once) and an
/// active signing key.
#[utoipa::path(tag = "admin", security(("basic" = [])), request_body = CreateCaller, responses(
    (status = 201, body = CreatedCaller),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/callers")]
pub async fn create_caller(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    body: ApiJson<CreateCaller>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let b = body.0;
    let created = callers::create(
        &state,
        &origin,
        CallerSpec {
            name: b.name,
            groups: b.groups,
            algorithm: b.algorithm,
            cidrs: b.cidrs,
            rate_limit: b.rate_limit,
            rotation_period: b.rotation_period_secs,
            enabled: b.enabled,
            federated: b.federated.clone(),
        },
    )
    .await?;
    let caller = view(&state, created.caller, b.federated);
    Ok(HttpResponse::Created().json(CreatedCaller {
        caller,
        client_secret: created.client_secret,
        secret_id: created.secret_id,
        kid: created.kid,
    }))
}

/// Lists every caller.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 200, body = Vec<CallerView>),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/callers")]
pub async fn list_callers(
    _admin: AdminCaller,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let rows = callers::list(&state).await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        let federated = callers::bindings(&state, &row.name).await?;
        views.push(view(&state, row, federated));
    }
    Ok(HttpResponse::Ok().json(views))
}

/// One caller.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 200, body = CallerView),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/callers/{name}")]
pub async fn get_caller(
    _admin: AdminCaller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let name = caller_in_path(&name)?;
    let row = callers::get(&state, name.as_str()).await?;
    let federated = callers::bindings(&state, name.as_str()).await?;
    Ok(HttpResponse::Ok().json(view(&state, row, federated)))
}

/// Changes groups, IP allow-list, rate limit, algorithm, rotation period or
/// the enabled flag. Absent fields keep their value.
#[utoipa::path(tag = "admin", security(("basic" = [])), request_body = UpdateCaller, responses(
    (status = 200, body = CallerView),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[patch("/v1/admin/callers/{name}")]
pub async fn update_caller(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: ApiJson<UpdateCaller>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let name = caller_in_path(&name)?;
    let b = body.0;
    let row = callers::update(
        &state,
        &origin,
        name.as_str(),
        CallerChanges {
            groups: b.groups,
            algorithm: b.algorithm,
            cidrs: b.cidrs,
            rate_limit: b.rate_limit,
            rotation_period: b.rotation_period_secs,
            enabled: b.enabled,
            federated: b.federated,
        },
    )
    .await?;
    let federated = callers::bindings(&state, name.as_str()).await?;
    Ok(HttpResponse::Ok().json(view(&state, row, federated)))
}

/// Deletes a caller with its secrets and keys (unpublished at once).
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[delete("/v1/admin/callers/{name}")]
pub async fn delete_caller(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let name = caller_in_path(&name)?;
    callers::delete(&state, &origin, name.as_str()).await?;
    Ok(HttpResponse::NoContent().finish())
}
