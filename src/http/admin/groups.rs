//! `/v1/admin/groups`.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::domain::group::{AudiencePattern, Cidr, Lifetime};
use crate::domain::names::GroupName;
use crate::http::auth::AdminCaller;
use crate::http::context::RequestMeta;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::json::ApiJson;
use crate::service::groups::{self, GroupChanges, GroupSpec};
use crate::state::AppState;
use crate::store::groups::GroupRow;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: GroupName,
    /// Audiences members may request: exact names or `*` globs.
    #[serde(default)]
    pub audiences: Vec<AudiencePattern>,
    /// Longest token lifetime this grant allows, seconds (default 3600).
    #[serde(default = "max_lifetime")]
    pub max_lifetime: Lifetime,
    /// Requests using this grant must come from one of these networks.
    #[serde(default)]
    pub cidrs: Vec<Cidr>,
    /// Members may ask for a `sub` other than themselves.
    #[serde(default)]
    pub allow_subject: bool,
}

fn max_lifetime() -> Lifetime {
    Lifetime::MAX
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroup {
    pub audiences: Option<Vec<AudiencePattern>>,
    pub max_lifetime: Option<Lifetime>,
    pub cidrs: Option<Vec<Cidr>>,
    pub allow_subject: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct GroupView {
    pub name: String,
    pub audiences: Vec<String>,
    pub max_lifetime: i64,
    pub cidrs: Vec<String>,
    pub allow_subject: bool,
    pub reserved: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<GroupRow> for GroupView {
    fn from(row: GroupRow) -> Self {
        Self {
            reserved: row.name == GroupName::ADMIN || row.name == GroupName::AUDITOR,
            name: row.name,
            audiences: row.audiences,
            max_lifetime: row.max_lifetime,
            cidrs: row.cidrs,
            allow_subject: row.allow_subject,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no group named {name}"))
}

fn group_in_path(name: &str) -> ApiResult<GroupName> {
    GroupName::parse(name).map_err(|_| not_found(name))
}

/// Creates a group: a grant of audiences with its lifetime, network and
/// subject rules.
#[utoipa::path(tag = "admin", security(("basic" = [])), request_body = CreateGroup, responses(
    (status = 201, body = GroupView),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/groups")]
pub async fn create_group(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    body: ApiJson<CreateGroup>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let b = body.0;
    let row = groups::create(
        &state,
        &origin,
        GroupSpec {
            name: b.name,
            audiences: b.audiences,
            max_lifetime: b.max_lifetime,
            cidrs: b.cidrs,
            allow_subject: b.allow_subject,
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(GroupView::from(row)))
}

/// Lists every group, reserved ones included.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses((status = 200, body = Vec<GroupView>)))]
#[get("/v1/admin/groups")]
pub async fn list_groups(
    _admin: AdminCaller,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let rows = groups::list(&state).await?;
    Ok(HttpResponse::Ok().json(rows.into_iter().map(GroupView::from).collect::<Vec<_>>()))
}

/// One group.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 200, body = GroupView),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/groups/{name}")]
pub async fn get_group(
    _admin: AdminCaller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let name = group_in_path(&name)?;
    Ok(HttpResponse::Ok().json(GroupView::from(groups::get(&state, name.as_str()).await?)))
}

/// Changes a group's grant; absent fields keep their value.
#[utoipa::path(tag = "admin", security(("basic" = [])), request_body = UpdateGroup, responses(
    (status = 200, body = GroupView),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[patch("/v1/admin/groups/{name}")]
pub async fn update_group(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: ApiJson<UpdateGroup>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let name = group_in_path(&name)?;
    let b = body.0;
    let row = groups::update(
        &state,
        &origin,
        name.as_str(),
        GroupChanges {
            audiences: b.audiences,
            max_lifetime: b.max_lifetime,
            cidrs: b.cidrs,
            allow_subject: b.allow_subject,
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(GroupView::from(row)))
}

/// Deletes a group that has no members. `admin` and `auditor` are reserved.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[delete("/v1/admin/groups/{name}")]
pub async fn delete_group(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let name = group_in_path(&name)?;
    groups::delete(&state, &origin, name.as_str()).await?;
    Ok(HttpResponse::NoContent().finish())
}
