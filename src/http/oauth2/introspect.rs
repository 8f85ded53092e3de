//! `POST /oauth2/introspect`: RFC 7662 token introspection.

use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{answer, no_store, pragma, CallerRefusals, OAuth2Error};
use super::presented_token;
use crate::http::context::RequestMeta;
use crate::service::caller_auth::Endpoint;
use crate::service::introspection;
use crate::service::token_check::{Aud, Checked};
use crate::state::AppState;

/// The form of an introspection request (RFC 7662 §2.1).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the form for the OpenAPI document only
pub struct IntrospectionForm {
    /// The token to introspect.
    token: String,
    /// Ignored: asapd has one kind of token.
    token_type_hint: Option<String>,
    /// With `client_secret`, instead of HTTP Basic (never both).
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// RFC 7662 §2.2. An inactive token gets `{"active": false}` and nothing
/// else; an active one its claims, `client_id` (its issuer) and `kid`.
#[derive(Serialize, ToSchema, Default)]
pub struct IntrospectionResponse {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// A string for one audience, a list for several, as in the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::http::tokens::AudienceSchema>)]
    pub aud: Option<Aud>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The caller the token was issued to: its `iss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Always `Bearer` for an active token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// The key that signed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Atlassian Connect's query string hash, when the token is bound to a
    /// request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qsh: Option<String>,
}

impl From<Checked> for IntrospectionResponse {
    fn from(Checked { kid, claims }: Checked) -> Self {
        Self {
            active: true,
            // ASAP: no `sub` means the issuer itself.
            sub: Some(claims.sub.unwrap_or_else(|| claims.iss.clone())),
            client_id: Some(claims.iss.clone()),
            iss: Some(claims.iss),
            aud: Some(claims.aud),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            nbf: claims.nbf,
            jti: Some(claims.jti),
            token_type: Some("Bearer"),
            kid: Some(kid),
            qsh: claims.qsh,
        }
    }
}

/// Token introspection (RFC 7662).
///
/// For services that cannot or should not verify ASAP tokens themselves.
/// The introspecting caller authenticates as on `/oauth2/token` (HTTP
/// Basic or `client_id`/`client_secret`) and sends the token as `token`.
/// The answer is `{"active": true, …}` with the token's claims, `client_id`
/// (= `iss`), `token_type` and `kid`, or `{"active": false}` and nothing
/// more for a token asapd did not issue, a bad signature or broken ASAP
/// rules, an expired or not yet valid token, a revoked or expired key, a
/// revoked jti, or a caller that is not among the token's audiences.
/// Rate limited per caller, from the same allowance as issuing tokens.
#[utoipa::path(tag = "tokens", security(("basic" = []), ()),
    request_body(content = IntrospectionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = IntrospectionResponse, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "invalid_request, unauthorized_client (disabled caller)", body = OAuth2Error),
        CallerRefusals,
    )
)]
#[post("/oauth2/introspect")]
pub async fn oauth2_introspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    meta: RequestMeta,
) -> HttpResponse {
    answer(introspect(&req, payload, &state, meta).await)
}

async fn introspect(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    meta: RequestMeta,
) -> Result<HttpResponse, OAuth2Error> {
    let (caller, origin, token) =
        presented_token(req, payload, state, meta, Endpoint::Introspect).await?;
    let found = introspection::introspect(state, &origin, &caller.name, &token).await;
    Ok(HttpResponse::Ok()
        .insert_header(no_store())
        .insert_header(pragma())
        .json(found.map_or_else(IntrospectionResponse::default, IntrospectionResponse::from)))
}
