//! Liveness and readiness probes.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The process is up and serving.
#[utoipa::path(tag = "health", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Ready to issue tokens: the database answers, every migration is
/// applied, and it accepts a write (a token's audit record must commit, so
/// a full or read-only database takes the replica out of the balancer);
/// with `keys.backend = "pkcs11"`, the token answers too.
#[utoipa::path(tag = "health", responses(
    (status = 200, body = Health),
    (status = 503, body = crate::http::error::Problem, content_type = "application/problem+json"),
))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    if !state.store.is_ready().await? {
        return Err(ApiError::Unavailable(
            "database migrations are not applied yet".into(),
        ));
    }
    state.store.check_writable(state.clock.now_ms()).await?;
    let backend = state.keyring.backend().clone();
    if backend.token().is_some() {
        tokio::task::spawn_blocking(move || backend.check_ready())
            .await
            .map_err(|e| ApiError::Internal(e.into()))?
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    }
    Ok(HttpResponse::Ok().json(Health { status: "ready" }))
}
