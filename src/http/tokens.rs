//! `POST /v1/tokens`: asapd's own JSON API for getting a token.

use std::fmt;

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::domain::denial::{Denial, Rule};
use crate::domain::grants::parse_audiences;
use crate::domain::group::Lifetime;
use crate::domain::qsh::CanonicalRequest;
use crate::http::auth::basic_credentials;
use crate::http::context::RequestMeta;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::json::read_json;
use crate::service::caller_auth::{
    ClientCredentials, Credentials, Endpoint, IssueError, PresentedAs, PresentedJwt,
};
use crate::service::tokens::{self, TokenRequest};
use crate::state::AppState;

/// A token request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequestBody {
    /// One audience, or a list (at most 16). Each must be granted by a group
    /// of the caller whose CIDRs, if any, contain the client IP.
    #[schema(value_type = AudienceSchema, example = json!(["svc-b", "reports-eu"]))]
    pub audience: Audiences,
    /// Seconds, 1..=3600. Above the longest lifetime the caller's grants
    /// allow for the audiences the request is refused (400,
    /// `lifetime_exceeded`), never shortened. Default:
    /// `tokens.default_lifetime_secs` (60), shortened to what the grants
    /// allow.
    pub lifetime: Option<Lifetime>,
    /// `sub` other than the caller; needs a group with `allow_subject`
    /// granting every audience. Default: the caller.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub subject: Option<String>,
    /// Extra claims. May not set `iss`, `sub`, `aud`, `jti`, `iat`, `nbf`
    /// or `exp`; at most `tokens.max_claims_bytes` of JSON.
    #[schema(value_type = Option<Object>)]
    pub claims: Option<Map<String, Value>>,
    /// `nbf`, Unix seconds, taken as given; must be before `exp`.
    pub not_before: Option<i64>,
    /// Binds the token to one HTTP request: it then carries `qsh`, Atlassian
    /// Connect's query string hash of that request, as npm `atlassian-jwt`
    /// computes it.
    pub request: Option<BoundRequestBody>,
}

/// The HTTP request a token is bound to.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BoundRequestBody {
    /// HTTP method (an RFC 9110 token); upper-cased for the hash.
    #[schema(
        example = "GET",
        min_length = 1,
        max_length = 32,
        pattern = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
    )]
    pub method: String,
    /// The request target as sent on the wire: a path starting with one
    /// `/`, an optional `?query` (a fragment is ignored). No whitespace or
    /// control characters (a space is `%20`, or `+` in the query), no `\`
    /// in the path, and every `%` in the query followed by two hex digits
    /// encoding UTF-8; at most 8192 bytes and 1000 query parameters.
    #[schema(
        example = "/rest/api/2/issue?fields=summary",
        min_length = 1,
        max_length = 8192,
        pattern = "^/([^/].*)?$"
    )]
    pub url: String,
}

/// `"svc-b"` or `["svc-b", …]`.
pub struct Audiences(pub Vec<String>);

/// The shape of `audience` in the OpenAPI document.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the schema only
pub enum AudienceSchema {
    One(AudienceName),
    Many(AudienceList),
}

/// An audience: printable ASCII without spaces.
#[derive(Serialize, ToSchema)]
#[schema(value_type = String, min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
#[allow(dead_code)] // documents the schema only
pub struct AudienceName(String);

/// 1 to 16 audiences (`domain::grants::MAX_AUDIENCES`).
#[derive(Serialize, ToSchema)]
#[schema(value_type = Vec<AudienceName>, min_items = 1, max_items = 16)]
#[allow(dead_code)] // documents the schema only
pub struct AudienceList(Vec<AudienceName>);

impl<'de> Deserialize<'de> for Audiences {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Audiences;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an audience name or a list of audience names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audiences, E> {
                Ok(Audiences(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audiences, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<String>()? {
                    out.push(v);
                }
                Ok(Audiences(out))
            }
        }
        de.deserialize_any(V)
    }
}

impl TokenRequestBody {
    fn into_request(self) -> Result<TokenRequest, IssueError> {
        Ok(TokenRequest {
            audiences: parse_audiences(self.audience.0, "audience").map_err(IssueError::denied)?,
            lifetime: self.lifetime.map(Lifetime::secs),
            subject: self.subject,
            claims: self.claims.unwrap_or_default(),
            not_before: self.not_before,
            bound_to: self
                .request
                .map(|r| CanonicalRequest::parse(&r.method, &r.url))
                .transpose()
                .map_err(|e| {
                    let e = e.within("request");
                    IssueError::denied(Denial::on_field(
                        Rule::InvalidRequest,
                        e.field.clone(),
                        e.to_string(),
                    ))
                })?,
        })
    }
}

/// A signed ASAP token.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// The JWT, for `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u32,
    /// RFC 3339, UTC.
    pub expires_at: String,
    /// The key that signed it: `<caller>/<key-name>`.
    pub kid: String,
    /// The token's unique id, as recorded in the audit log.
    pub jti: String,
    /// The token's `qsh` claim, when `request` bound it to a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qsh: Option<String>,
}

/// `Authorization: Bearer <JWT>` (a workload identity token of a trusted
/// issuer, or whatever else the JWT dispatcher accepts), else HTTP Basic.
fn credentials(req: &HttpRequest) -> ApiResult<Option<Credentials>> {
    let bearer = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
    if let Some((_, token)) = bearer {
        return Ok(Some(Credentials::Jwt(PresentedJwt {
            token: token.trim().to_owned(),
            presented_as: PresentedAs::Bearer,
        })));
    }
    Ok(basic_credentials(req)?
        .map(|(name, secret)| Credentials::Secret(ClientCredentials { name, secret })))
}

/// Issues an ASAP token to a caller.
///
/// The caller authenticates with HTTP Basic (`client_id:client_secret`), or
/// with `Authorization: Bearer <JWT>`: a workload identity token (Kubernetes,
/// GitHub Actions, another asapd) of a trusted issuer, bound to the caller.
/// The decision follows these rules, in order:
/// credentials (failed attempts limited per source IP), client IP, enabled
/// flag and the caller's own CIDRs, the caller's rate limit, audience
/// grants and lifetime, extra claims and subject; then the token is signed
/// with the caller's active key and returned only once its audit record is
/// committed. A `lifetime` above what the grants allow is refused with 400
/// (`lifetime_exceeded`), not shortened. Refusals name the rule they
/// broke, e.g. `(rule: audience_not_granted)`.
#[utoipa::path(tag = "tokens", security(("basic" = []), ("bearer" = [])), request_body = TokenRequestBody, responses(
    (status = 200, body = TokenResponse, headers(("Cache-Control" = String, description = "no-store"))),
    (status = 400, description = "Malformed request, reserved or oversized claims, lifetime above the grant, a request.method or request.url asapd cannot hash", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "Missing or wrong credentials", body = Problem, content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "Basic challenge"))),
    (status = 403, description = "Caller disabled, client IP not allowed, audience not granted, subject not allowed", body = Problem, content_type = "application/problem+json"),
    (status = 413, body = Problem, content_type = "application/problem+json"),
    (status = 415, body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Rate limited; see Retry-After", body = Problem, content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    (status = 503, description = "The audit log, the caller's key or a trusted issuer's keys are unavailable; no token was issued", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/tokens")]
pub async fn issue_token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    meta: RequestMeta,
) -> ApiResult<HttpResponse> {
    let credentials = credentials(&req)?;
    let body = read_json::<TokenRequestBody>(&req, payload.into_inner());
    let request = async move {
        body.await
            .map_err(ApiError::into_body_error)?
            .into_request()
    };
    let issued = tokens::issue(
        &state,
        meta.origin("anonymous"),
        Endpoint::Tokens,
        credentials,
        request,
    )
    .await
    .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(TokenResponse {
            token: issued.token,
            token_type: "Bearer",
            expires_in: issued.lifetime,
            expires_at: rfc3339(issued.expires_at),
            kid: issued.kid,
            jti: issued.jti,
            qsh: issued.qsh,
        }))
}
