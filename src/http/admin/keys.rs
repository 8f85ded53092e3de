//! `/v1/admin/callers/{name}/keys` and `/v1/admin/keys/{kid}`.

use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::caller_in_path;
use crate::clock::rfc3339;
use crate::domain::algorithm::Algorithm;
use crate::domain::key::KeyState;
use crate::domain::kid::Kid;
use crate::domain::names::KeyName;
use crate::http::auth::AdminCaller;
use crate::http::context::RequestMeta;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::json::ApiJson;
use crate::service::keys::{self, KeyInfo, NewKey};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateKey {
    /// Default: the caller's algorithm.
    pub algorithm: Option<Algorithm>,
    /// Default: a time-ordered unique name.
    pub name: Option<KeyName>,
    /// `true`: active at once (the active key retires). Default: pending,
    /// published ahead of activation so caches see it first.
    #[serde(default)]
    pub activate: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportKey {
    /// Private key, PEM or base64 DER: PKCS#8 (`-----BEGIN PRIVATE KEY-----`)
    /// or, for RSA, PKCS#1 (`-----BEGIN RSA PRIVATE KEY-----`).
    pub private_key: String,
    /// Picks the key family: default the caller's algorithm, so an RSA key
    /// for an ES256 caller needs `"algorithm": "RS256"` (or another RSA one).
    pub algorithm: Option<Algorithm>,
    /// Default: a time-ordered unique name. Not with `kid`.
    pub name: Option<KeyName>,
    /// The kid a service already uses for this key, kept as it is: it must
    /// be `<caller>/<key-name>` for this caller, with a key name of ASCII
    /// letters, digits and `_ . - +` (at most 64, starting with a letter or
    /// digit). Not with `name`. 409 if a key has it already.
    #[schema(
        example = "svc-a/2024-prod",
        max_length = 129,
        pattern = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*/[A-Za-z0-9][A-Za-z0-9_.+-]*$"
    )]
    pub kid: Option<String>,
    #[serde(default)]
    pub activate: bool,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub kid: String,
    pub caller: String,
    pub algorithm: Algorithm,
    pub state: KeyState,
    /// Whether verifiers can resolve it now.
    pub published: bool,
    pub public_key_pem: String,
    pub created_at: String,
    pub activated_at: Option<String>,
    pub retired_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<KeyInfo> for KeyView {
    fn from(k: KeyInfo) -> Self {
        Self {
            published: k.state.is_published(),
            kid: k.kid,
            caller: k.caller,
            algorithm: k.algorithm,
            state: k.state,
            public_key_pem: k.public_key_pem,
            created_at: rfc3339(k.created_at),
            activated_at: k.activated_at.map(rfc3339),
            retired_at: k.retired_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Revoked {
    pub revoked: KeyView,
    /// The key that became active when the active key was revoked.
    pub replacement: Option<KeyView>,
}

fn kid_in_path(kid: &str) -> ApiResult<Kid> {
    Kid::parse(kid).map_err(|_| ApiError::NotFound(format!("no key with kid {kid}")))
}

/// A caller's keys in every state, newest first.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 200, body = Vec<KeyView>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/callers/{name}/keys")]
pub async fn list_keys(
    _admin: AdminCaller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let name = caller_in_path(&name)?;
    let keys = keys::list(&state, &name).await?;
    Ok(HttpResponse::Ok().json(keys.into_iter().map(KeyView::from).collect::<Vec<_>>()))
}

/// Generates a key pair for a caller, pending or active.
#[utoipa::path(tag = "admin", security(("basic" = [])), request_body = GenerateKey, responses(
    (status = 201, body = KeyView),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/callers/{name}/keys")]
pub async fn generate_key(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: ApiJson<GenerateKey>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let name = caller_in_path(&name)?;
    let b = body.0;
    let req = NewKey {
        algorithm: b.algorithm,
        name: b.name,
        activate: b.activate,
    };
    let key = keys::generate(&state, &origin, &name, req).await?;
    Ok(HttpResponse::Created().json(KeyView::from(key)))
}

/// Imports an existing private key for a caller. The private key is
/// encrypted at rest and never returned. With `kid` the key keeps the kid
/// its service already uses.
#[utoipa::path(tag = "admin", security(("basic" = [])), request_body = ImportKey, responses(
    (status = 201, body = KeyView),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/callers/{name}/keys/import")]
pub async fn import_key(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: ApiJson<ImportKey>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let name = caller_in_path(&name)?;
    let b = body.0;
    let req = NewKey {
        algorithm: b.algorithm,
        name: keys::imported_key_name(&name, b.name, b.kid.as_deref())?,
        activate: b.activate,
    };
    let key = keys::import(&state, &origin, &name, req, b.private_key).await?;
    Ok(HttpResponse::Created().json(KeyView::from(key)))
}

/// Rotates now: the oldest pending key (or a new one) becomes active and
/// the active key retires, still published for tokens it signed.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 200, body = KeyView),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/callers/{name}/keys/rotate")]
pub async fn rotate_keys(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let name = caller_in_path(&name)?;
    Ok(HttpResponse::Ok().json(KeyView::from(keys::rotate(&state, &origin, &name).await?)))
}

/// One key by kid (`{kid}` spans `/`).
#[utoipa::path(tag = "admin", security(("basic" = [])),
    params(("kid" = String, Path, description = "`<caller>/<key-name>`")),
    responses(
        (status = 200, body = KeyView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/keys/{kid:.+}")]
pub async fn get_key(
    _admin: AdminCaller,
    state: web::Data<AppState>,
    kid: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let kid = kid_in_path(&kid)?;
    Ok(HttpResponse::Ok().json(KeyView::from(keys::get(&state, &kid).await?)))
}

/// Revokes a key: unpublished at once, tokens it signed stop verifying.
/// Revoking the active key activates a freshly generated replacement.
#[utoipa::path(tag = "admin", security(("basic" = [])),
    params(("kid" = String, Path, description = "`<caller>/<key-name>`")),
    responses(
        (status = 200, body = Revoked),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/keys/{kid:.+}/revoke")]
pub async fn revoke_key(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    kid: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let kid = kid_in_path(&kid)?;
    let (revoked, replacement) = keys::revoke(&state, &origin, &kid).await?;
    Ok(HttpResponse::Ok().json(Revoked {
        revoked: revoked.into(),
        replacement: replacement.map(KeyView::from),
    }))
}
