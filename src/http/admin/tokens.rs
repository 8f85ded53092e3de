//! `/v1/admin/tokens`: revoking any token by its jti.

use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::http::auth::AdminCaller;
use crate::http::context::RequestMeta;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::json::ApiJson;
use crate::service::revocation;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    /// The token's `jti` (in the `token.issued` audit record and in the
    /// response that issued it).
    #[schema(min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    pub jti: String,
    /// The token's `exp`, RFC 3339. Default: the expiry its `token.issued`
    /// record holds, or an hour (the longest lifetime) if there is none.
    /// A time before the expiry in that record gives way to it.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RevokedToken {
    pub jti: String,
    /// Until when the jti is kept (RFC 3339): the token's `exp`.
    pub expires_at: String,
    /// `request`, `audit` (its `token.issued` record) or `max_lifetime`.
    pub expiry_from: &'static str,
}

/// Revokes a token by its jti, whoever it was issued to.
///
/// From then on introspection reports it inactive on every replica, and the
/// admin API refuses it as a Bearer token. The jti is kept until the
/// token's `exp`, then pruned: an `expires_at` earlier than the expiry in
/// the jti's `token.issued` record is overruled by it (`expiry_from:
/// audit`), so a revocation never lapses while its token lives. Revoking
/// a jti twice is harmless.
#[utoipa::path(tag = "admin", security(("basic" = [])), request_body = RevokeToken, responses(
    (status = 200, body = RevokedToken),
    (status = 400, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/tokens/revoke")]
pub async fn revoke_token(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    body: ApiJson<RevokeToken>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let body = body.0;
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|at| {
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|_| {
                    ApiError::bad_field(
                        "expires_at",
                        "must be an RFC 3339 time, such as 2026-01-02T03:04:05Z",
                    )
                })
        })
        .transpose()?;
    let (exp, source) = revocation::revoke_jti(&state, &origin, &body.jti, expires_at).await?;
    Ok(HttpResponse::Ok().json(RevokedToken {
        jti: body.jti,
        expires_at: rfc3339(exp),
        expiry_from: source.as_str(),
    }))
}
