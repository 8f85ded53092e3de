//! `/v1/admin/issuers`: trusted issuers of workload identity tokens.

use actix_web::{delete, get, post, put, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::domain::federation::MaxTokenAge;
use crate::domain::names::IssuerName;
use crate::http::auth::AdminCaller;
use crate::http::context::RequestMeta;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::json::ApiJson;
use crate::http::tokens::AudienceName;
use crate::service::issuers::{self, IssuerSpec};
use crate::state::AppState;
use crate::store::federation::IssuerRow;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIssuer {
    /// What bindings and the audit call this issuer.
    pub name: IssuerName,
    /// The exact `iss` of its tokens. Without `jwks_uri`, an https URL:
    /// its keys are found by OIDC Discovery at
    /// `<issuer>/.well-known/openid-configuration`.
    #[schema(
        min_length = 1,
        max_length = 1024,
        example = "https://kubernetes.default.svc"
    )]
    pub issuer: String,
    /// The issuer's JWKS (https). Default: from OIDC Discovery.
    #[schema(max_length = 1024, pattern = "^https://")]
    pub jwks_uri: Option<String>,
    /// PEM certificates of a private CA to trust, for this issuer only, in
    /// addition to the system's roots (a cluster's own CA).
    pub ca_pem: Option<String>,
    /// Required and never empty: a token's `aud` must name one of these.
    #[serde(default)]
    #[schema(value_type = Vec<AudienceName>, min_items = 1, max_items = 16, example = json!(["asapd"]))]
    pub audiences: Vec<String>,
    /// The oldest a token may be (now − `iat`), seconds. Default:
    /// `federation.default_max_token_age_secs` (3600).
    pub max_token_age_secs: Option<MaxTokenAge>,
}

/// PUT's body: every setting of the issuer (the name is in the path).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIssuer {
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub issuer: String,
    #[schema(max_length = 1024, pattern = "^https://")]
    pub jwks_uri: Option<String>,
    pub ca_pem: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<AudienceName>, min_items = 1, max_items = 16)]
    pub audiences: Vec<String>,
    pub max_token_age_secs: Option<MaxTokenAge>,
}

impl From<UpdateIssuer> for IssuerSpec {
    fn from(b: UpdateIssuer) -> Self {
        Self {
            issuer: b.issuer,
            jwks_uri: b.jwks_uri,
            ca_pem: b.ca_pem,
            audiences: b.audiences,
            max_token_age: b.max_token_age_secs,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IssuerView {
    pub name: String,
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub ca_pem: Option<String>,
    pub audiences: Vec<String>,
    pub max_token_age_secs: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<IssuerRow> for IssuerView {
    fn from(row: IssuerRow) -> Self {
        Self {
            name: row.name,
            issuer: row.issuer,
            jwks_uri: row.jwks_uri,
            ca_pem: row.ca_pem,
            audiences: row.audiences,
            max_token_age_secs: row.max_token_age_secs,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

fn issuer_in_path(name: &str) -> ApiResult<IssuerName> {
    IssuerName::parse(name).map_err(|_| ApiError::from(issuers::not_found(name)))
}

/// Trusts an issuer of workload identity tokens (Kubernetes, GitHub
/// Actions, any OIDC issuer, another asapd): callers bound to its
/// identities may then present its tokens instead of a secret.
#[utoipa::path(tag = "admin", security(("basic" = [])), request_body = CreateIssuer, responses(
    (status = 201, body = IssuerView),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/issuers")]
pub async fn create_issuer(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    body: ApiJson<CreateIssuer>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let b = body.0;
    let spec = UpdateIssuer {
        issuer: b.issuer,
        jwks_uri: b.jwks_uri,
        ca_pem: b.ca_pem,
        audiences: b.audiences,
        max_token_age_secs: b.max_token_age_secs,
    };
    let row = issuers::create(&state, &origin, b.name, spec.into()).await?;
    Ok(HttpResponse::Created().json(IssuerView::from(row)))
}

/// Lists the trusted issuers.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses((status = 200, body = Vec<IssuerView>)))]
#[get("/v1/admin/issuers")]
pub async fn list_issuers(
    _admin: AdminCaller,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let rows = issuers::list(&state).await?;
    Ok(HttpResponse::Ok().json(rows.into_iter().map(IssuerView::from).collect::<Vec<_>>()))
}

/// One trusted issuer.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 200, body = IssuerView),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/issuers/{name}")]
pub async fn get_issuer(
    _admin: AdminCaller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let name = issuer_in_path(&name)?;
    Ok(HttpResponse::Ok().json(IssuerView::from(issuers::get(&state, name.as_str()).await?)))
}

/// Replaces a trusted issuer's settings (every field; absent optional ones
/// are cleared). Its keys are fetched again.
#[utoipa::path(tag = "admin", security(("basic" = [])), request_body = UpdateIssuer, responses(
    (status = 200, body = IssuerView),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[put("/v1/admin/issuers/{name}")]
pub async fn update_issuer(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: ApiJson<UpdateIssuer>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let name = issuer_in_path(&name)?;
    let row = issuers::update(&state, &origin, name.as_str(), body.0.into()).await?;
    Ok(HttpResponse::Ok().json(IssuerView::from(row)))
}

/// Stops trusting an issuer. Refused (409) while a caller is bound to it.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[delete("/v1/admin/issuers/{name}")]
pub async fn delete_issuer(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let name = issuer_in_path(&name)?;
    issuers::delete(&state, &origin, name.as_str()).await?;
    Ok(HttpResponse::NoContent().finish())
}
