//! `GET /.well-known/oauth-authorization-server`: RFC 8414 server metadata,
//! so OAuth2 client libraries find the token, introspection and
//! revocation endpoints, the JWKS and the client authentication methods
//! without being told.

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::algorithm::Algorithm;
use crate::state::AppState;

/// The token-exchange grant type (RFC 8693).
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// RFC 8414 §2 (the members asapd has).
#[derive(Serialize, ToSchema)]
pub struct ServerMetadata {
    /// `http.public_url`, or the scheme and host this request came to.
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    /// Empty: asapd has no authorization endpoint.
    pub response_types_supported: Vec<&'static str>,
    pub grant_types_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
}

const AUTH_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];

impl ServerMetadata {
    pub fn at(base: &str) -> Self {
        let methods = AUTH_METHODS.to_vec();
        Self {
            issuer: base.to_owned(),
            token_endpoint: format!("{base}/oauth2/token"),
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            introspection_endpoint: format!("{base}/oauth2/introspect"),
            revocation_endpoint: format!("{base}/oauth2/revoke"),
            response_types_supported: Vec::new(),
            grant_types_supported: vec!["client_credentials", TOKEN_EXCHANGE],
            token_endpoint_auth_methods_supported: methods.clone(),
            token_endpoint_auth_signing_alg_values_supported: Algorithm::ALL
                .iter()
                .map(|a| a.as_str())
                .collect(),
            introspection_endpoint_auth_methods_supported: methods.clone(),
            revocation_endpoint_auth_methods_supported: methods,
        }
    }
}

/// OAuth 2.0 authorization server metadata (RFC 8414).
///
/// The URLs start with `http.public_url` when it is set. Otherwise they
/// are built from this request's scheme and `Host` (as a proxy in front
/// forwards them), and the answer is not cached, since another `Host`
/// gets other URLs.
#[utoipa::path(tag = "public", responses(
    (status = 200, body = ServerMetadata, headers(("Cache-Control" = String))),
))]
#[get("/.well-known/oauth-authorization-server")]
pub async fn server_metadata(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (base, cache) = match state.settings.http.public_base() {
        Some(base) => (
            base.to_owned(),
            CacheControl(vec![CacheDirective::Public, CacheDirective::MaxAge(3600)]),
        ),
        None => {
            let info = req.connection_info();
            (
                format!("{}://{}", info.scheme(), info.host()),
                CacheControl(vec![CacheDirective::NoStore]),
            )
        }
    };
    HttpResponse::Ok()
        .insert_header(cache)
        .insert_header((header::VARY, "Host"))
        .json(ServerMetadata::at(&base))
}
