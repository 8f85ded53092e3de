//! `GET /docs`: Swagger UI over this server's own `/openapi.json`.
//!
//! The UI's files are compiled into the binary (utoipa-swagger-ui's
//! `vendored` feature), so the page loads nothing from a CDN and works on a
//! machine without internet. "Try it out" sends requests to the page's own
//! origin, with the Basic or Bearer credentials entered under "Authorize"
//! (the spec's `basic` and `bearer` security schemes).

use actix_web::{http::header, web, HttpResponse};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// Where the UI is served; `/docs` itself redirects here, since the page's
/// assets are relative to a trailing slash.
const PREFIX: &str = "/docs/";

/// Registers `/docs` and `/docs/…`. Not part of the OpenAPI document: it
/// is a page for people, not an operation of the API.
pub fn register(cfg: &mut web::ServiceConfig) -> &mut web::ServiceConfig {
    let ui = SwaggerUi::new(format!("{PREFIX}{{_:.*}}")).config(
        Config::new(["/openapi.json"])
            // Keeps what was typed under "Authorize" across reloads of the
            // page (in this browser's local storage only).
            .persist_authorization(true)
            .try_it_out_enabled(true)
            .display_request_duration(true),
    );
    cfg.route("/docs", web::get().to(to_trailing_slash))
        .service(ui)
}

async fn to_trailing_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, PREFIX))
        .finish()
}
