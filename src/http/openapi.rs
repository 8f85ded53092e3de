//! The OpenAPI document, built from the same route list as the router.

use actix_web::web::{Bytes, Data};
use actix_web::{get, HttpResponse};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "asapd",
        description = "Key management and token issuing for ASAP (Atlassian S2S Authentication Protocol)."
    ),
    modifiers(&BasicAuth),
    tags(
        (name = "public", description = "Key repository and JWKS for verifiers (no auth)"),
        (name = "admin", description = "Callers, groups, secrets and keys (admin; auditor reads)"),
        (name = "audit", description = "Audit log and its retention (admin; auditor reads)"),
        (name = "health", description = "Probes"),
    )
)]
struct ApiDoc;

struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "basic",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
            );
    }
}

/// The spec as served and committed in `openapi/openapi.json`.
pub fn spec() -> utoipa::openapi::OpenApi {
    let (_, api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(super::routes)
        .split_for_parts();
    api
}

/// Pretty JSON of [`spec`], with a trailing newline.
pub fn spec_json() -> String {
    let mut json = spec()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

/// The serialised spec, shared by every worker.
#[derive(Clone)]
pub struct SpecJson(pub Bytes);

/// This OpenAPI document.
#[utoipa::path(tag = "health", responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
#[get("/openapi.json")]
pub async fn openapi_json(spec: Data<SpecJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(spec.0.clone())
}
