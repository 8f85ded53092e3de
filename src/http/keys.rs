//! The public key repository (ASAP layout) and the JWKS.

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{get, web, HttpResponse};

use crate::domain::kid::Kid;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

fn cache_control(state: &AppState) -> CacheControl {
    CacheControl(vec![
        CacheDirective::Public,
        CacheDirective::MaxAge(state.settings.keys.cache_max_age_secs),
    ])
}

/// The SPKI PEM of a published key. Verifiers fetch `<base-url><kid>`
/// literally, so `{kid}` spans `/`. Unknown, revoked, expired and malformed
/// kids all answer 404.
#[utoipa::path(
    tag = "public",
    params(("kid" = String, Path, description = "`<caller>/<key-name>`", example = "svc-a/20261122T061500Z-1a2b3c4d")),
    responses(
        (status = 200, description = "SPKI public key", content_type = "application/x-pem-file", body = String),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/keys/{kid:.*}")]
pub async fn public_key(
    state: web::Data<AppState>,
    kid: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let not_found = || ApiError::NotFound("no published key with that kid".into());
    let kid = Kid::parse(&kid).map_err(|_| not_found())?;
    let snapshot = state.keyring.snapshot();
    let key = snapshot.published.get(kid.as_str()).ok_or_else(not_found)?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .insert_header(cache_control(&state))
        .body(key.pem.clone()))
}

/// Every published key as a JWK Set; each JWK carries `kid`, `alg`, `use`.
#[utoipa::path(
    tag = "public",
    responses((status = 200, description = "JWK Set", content_type = "application/json", body = Object))
)]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let body = state.keyring.snapshot().jwks.clone();
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header(cache_control(&state))
        .body(body)
}
