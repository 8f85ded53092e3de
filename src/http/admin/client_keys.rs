//! `/v1/admin/callers/{name}/client-keys`: public keys a caller signs its
//! own client assertions with (RFC 7523 `private_key_jwt`).

use actix_web::{delete, get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::caller_in_path;
use crate::clock::rfc3339;
use crate::crypto::public_import;
use crate::http::auth::AdminCaller;
use crate::http::context::RequestMeta;
use crate::http::error::{ApiResult, Problem};
use crate::http::json::ApiJson;
use crate::service::client_keys;
use crate::state::AppState;
use crate::store::client_keys::ClientKeyRow;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddClientKey {
    /// The public key: an SPKI PEM string (`-----BEGIN PUBLIC KEY-----`, or
    /// `-----BEGIN RSA PUBLIC KEY-----`) or a public JWK object. RSA of
    /// 2048 to 4096 bits, EC P-256 or P-384. Private key material and
    /// symmetric (`oct`) keys are refused.
    #[schema(example = json!({
        "kty": "EC", "crv": "P-256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
    }))]
    pub public_key: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct ClientKeyView {
    /// The key's RFC 7638 JWK thumbprint (SHA-256, base64url). An
    /// assertion may name it as its `kid`.
    pub id: String,
    pub caller: String,
    /// `RSA`, `P-256` or `P-384`.
    pub family: String,
    pub public_key_pem: String,
    pub created_at: String,
}

impl From<ClientKeyRow> for ClientKeyView {
    fn from(row: ClientKeyRow) -> Self {
        Self {
            public_key_pem: public_import::spki_pem(&row.spki_der),
            id: row.id,
            caller: row.caller,
            family: row.family,
            created_at: rfc3339(row.created_at),
        }
    }
}

/// Registers a public key the caller signs client assertions with; the
/// caller may then authenticate to `/oauth2/token` with
/// `client_assertion` instead of a secret.
#[utoipa::path(tag = "admin", security(("basic" = [])), request_body = AddClientKey, responses(
    (status = 201, body = ClientKeyView),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/callers/{name}/client-keys")]
pub async fn add_client_key(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: ApiJson<AddClientKey>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let name = caller_in_path(&name)?;
    let row = client_keys::add(&state, &origin, name.as_str(), &body.0.public_key).await?;
    Ok(HttpResponse::Created().json(ClientKeyView::from(row)))
}

/// Lists a caller's client keys, oldest first.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 200, body = Vec<ClientKeyView>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/callers/{name}/client-keys")]
pub async fn list_client_keys(
    _admin: AdminCaller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let name = caller_in_path(&name)?;
    let rows = client_keys::list(&state, name.as_str()).await?;
    let views: Vec<_> = rows.into_iter().map(ClientKeyView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Deletes a client key: assertions it signs are refused at once, on every
/// replica.
#[utoipa::path(tag = "admin", security(("basic" = [])), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[delete("/v1/admin/callers/{name}/client-keys/{id}")]
pub async fn delete_client_key(
    admin: AdminCaller,
    meta: RequestMeta,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let origin = meta.origin(&admin.0.name);
    let (name, id) = path.into_inner();
    let name = caller_in_path(&name)?;
    client_keys::delete(&state, &origin, name.as_str(), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
