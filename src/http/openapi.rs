//! The OpenAPI document, built from the same route list as the router.

use actix_web::web::{Bytes, Data};
use actix_web::{get, HttpResponse};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "asapd",
        description = "Key management and token issuing for ASAP (Atlassian S2S Authentication Protocol)."
    ),
    modifiers(&AuthSchemes),
    tags(
        (name = "public", description = "Key repository and JWKS for verifiers (no auth)"),
        (name = "tokens", description = "ASAP tokens for callers (HTTP Basic client credentials)"),
        (name = "admin", description = "Callers, groups, secrets and keys (admin; auditor reads)"),
        (name = "audit", description = "Audit log and its retention (admin; auditor reads)"),
        (name = "health", description = "Probes"),
    )
)]
struct ApiDoc;

struct AuthSchemes;

impl Modify for AuthSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A caller's client credentials: its name as the username, one of its \
                         secrets as the password (what /docs asks for under Authorize)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An ASAP token this asapd issued to an admin or auditor caller for \
                         its own audience (tokens.audience, default asapd)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every admin operation accepts a Bearer token as well as Basic. Added
/// here, in one place, rather than on each admin handler.
fn admin_accepts_bearer(api: &mut utoipa::openapi::OpenApi) {
    for (path, item) in api.paths.paths.iter_mut() {
        if !path.starts_with("/v1/admin/") {
            continue;
        }
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let security = op.security.get_or_insert_with(Vec::new);
            security.push(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
    }
}

/// The audit filters take only known values; the lists live in the code
/// (`audit::action::ALL`, `Outcome`), so they are copied from there rather
/// than written again in the annotation.
fn audit_filter_enums(api: &mut utoipa::openapi::OpenApi) {
    use crate::audit::{action, Outcome};
    let outcomes = [Outcome::Success, Outcome::Denied, Outcome::Failure].map(Outcome::as_str);
    for path in ["/v1/admin/audit", "/v1/admin/audit/export"] {
        let params = api
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.get.as_mut())
            .and_then(|op| op.parameters.as_mut());
        let params = params.into_iter().flatten().filter_map(|p| match p {
            RefOr::T(p) => Some(p),
            RefOr::Ref(_) => None,
        });
        for param in params {
            let values: &[&str] = match param.name.as_str() {
                "action" => action::ALL,
                "outcome" => &outcomes,
                _ => continue,
            };
            param.schema = Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(values.iter().copied()))
                    .into(),
            );
        }
    }
}

/// The spec as served and committed in `openapi/openapi.json`.
pub fn spec() -> utoipa::openapi::OpenApi {
    let (_, mut api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(super::routes)
        .split_for_parts();
    admin_accepts_bearer(&mut api);
    audit_filter_enums(&mut api);
    super::responses::document_shared_errors(&mut api);
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
