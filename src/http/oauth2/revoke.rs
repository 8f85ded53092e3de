//! `POST /oauth2/revoke`: RFC 7009 token revocation.

use actix_web::http::StatusCode;
use actix_web::{post, web, HttpRequest, HttpResponse};
use utoipa::ToSchema;

use super::error::{answer, no_store, pragma, CallerRefusals, OAuth2Error};
use super::presented_token;
use crate::http::context::RequestMeta;
use crate::http::error::ApiError;
use crate::service::caller_auth::Endpoint;
use crate::service::revocation::{self, Presented};
use crate::state::AppState;

/// The form of a revocation request (RFC 7009 §2.1).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the form for the OpenAPI document only
pub struct RevocationForm {
    /// The token to revoke.
    token: String,
    /// Ignored: asapd has one kind of token.
    token_type_hint: Option<String>,
    /// With `client_secret`, instead of HTTP Basic (never both).
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Token revocation (RFC 7009).
///
/// The caller a token was issued to (its `iss`) revokes it; an admin may
/// revoke any. Authenticate as on `/oauth2/token`. From then on
/// introspection reports the token inactive on every replica, and asapd's
/// admin API refuses it as a Bearer token, until it expires. ASAP verifiers
/// that only check signatures cannot see revocations: short lifetimes are
/// their protection. A token that is not active anyway (unknown, invalid,
/// expired, already revoked) gets 200 as RFC 7009 §2.2 asks. A valid token
/// of another caller is refused with 400 `unauthorized_client` and stays
/// valid.
#[utoipa::path(tag = "tokens", security(("basic" = []), ()),
    request_body(content = RevocationForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke", headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "invalid_request; unauthorized_client: the token is another caller's, or the caller is disabled", body = OAuth2Error),
        CallerRefusals,
    )
)]
#[post("/oauth2/revoke")]
pub async fn oauth2_revoke(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    meta: RequestMeta,
) -> HttpResponse {
    answer(revoke(&req, payload, &state, meta).await)
}

async fn revoke(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    meta: RequestMeta,
) -> Result<HttpResponse, OAuth2Error> {
    let (caller, origin, token) =
        presented_token(req, payload, state, meta, Endpoint::Revoke).await?;
    match revocation::revoke_presented(state, &origin, &caller, &token).await {
        Ok(Presented::Revoked | Presented::NotActive) => Ok(HttpResponse::Ok()
            .insert_header(no_store())
            .insert_header(pragma())
            .finish()),
        Ok(Presented::NotItsCaller) => Err(OAuth2Error::new(
            "unauthorized_client",
            StatusCode::BAD_REQUEST,
            format!(
                "the token was not issued to {}: only its own caller or an admin can revoke it",
                caller.name
            ),
        )),
        Err(e) => Err(ApiError::from(e).into()),
    }
}
