//! `/v1/admin/callers/{name}/secrets`.

use actix_web::{delete, get, post, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::caller_in_path;
use crate::clock::rfc3339;
use crate::http::auth::AdminCaller;
use crate::http::context::RequestMeta;
use crate::http::error::{ApiResult, Problem};
use crate::service::secrets;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct SecretView {
    pub id: String,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedSecret {
    pub id: String,
    /// Shown once: asapd stores only its hash.
    pub client_secret: String,
    pub created_at: String,
}

/// Adds a client secret (for rotation: callers may hold several).
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 201, body = CreatedSecret),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/callers/{name}/secrets")]
pub async fn add_secret(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let name = caller_in_path(&name)?;
    let created = secrets::add(&state, &origin, name.as_str()).await?;
    Ok(HttpResponse::Created().json(CreatedSecret {
        id: created.id,
        client_secret: created.client_secret,
        created_at: rfc3339(created.created_at),
    }))
}

/// Lists a caller's secrets: ids and creation times only.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 200, body = Vec<SecretView>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/callers/{name}/secrets")]
pub async fn list_secrets(
    _admin: AdminCaller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let name = caller_in_path(&name)?;
    let rows = secrets::list(&state, name.as_str()).await?;
    let views: Vec<_> = rows
        .into_iter()
        .map(|r| SecretView {
            id: r.id,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Revokes a secret: it stops authenticating at once.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[delete("/v1/admin/callers/{name}/secrets/{id}")]
pub async fn revoke_secret(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let (name, id) = path.into_inner();
    let name = caller_in_path(&name)?;
    secrets::revoke(&state, &origin, name.as_str(), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
