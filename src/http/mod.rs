//! HTTP surface: one file per resource. Routes and the OpenAPI document
//! come from the one list in [`routes`].

pub mod admin;
pub mod auth;
pub mod body_timeout;
pub mod context;
pub mod docs;
pub mod error;
pub mod health;
pub mod json;
pub mod keys;
pub mod metadata;
pub mod methods;
pub mod metrics;
pub mod oauth2;
pub mod openapi;
pub mod query;
pub mod raw_errors;
pub mod request_id;
pub mod responses;
pub mod server;
pub mod tokens;

use utoipa_actix_web::service_config::ServiceConfig;

/// Every route asapd serves.
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(metrics::metrics)
        .service(openapi::openapi_json)
        .service(keys::jwks)
        .service(keys::KeyRepository)
        .service(metadata::server_metadata)
        .service(tokens::issue_token)
        .service(oauth2::oauth2_token)
        .service(oauth2::oauth2_introspect)
        .service(oauth2::oauth2_revoke)
        .service(admin::callers::create_caller)
        .service(admin::callers::list_callers)
        .service(admin::callers::get_caller)
        .service(admin::callers::update_caller)
        .service(admin::callers::delete_caller)
        .service(admin::secrets::add_secret)
        .service(admin::secrets::list_secrets)
        .service(admin::secrets::revoke_secret)
        .service(admin::client_keys::add_client_key)
        .service(admin::client_keys::list_client_keys)
        .service(admin::client_keys::delete_client_key)
        .service(admin::keys::list_keys)
        .service(admin::keys::generate_key)
        .service(admin::keys::import_key)
        .service(admin::keys::rotate_keys)
        .service(admin::keys::revoke_key)
        .service(admin::keys::get_key)
        .service(admin::groups::create_group)
        .service(admin::groups::list_groups)
        .service(admin::groups::get_group)
        .service(admin::groups::update_group)
        .service(admin::groups::delete_group)
        .service(admin::issuers::create_issuer)
        .service(admin::issuers::list_issuers)
        .service(admin::issuers::get_issuer)
        .service(admin::issuers::update_issuer)
        .service(admin::issuers::delete_issuer)
        .service(admin::tokens::revoke_token)
        .service(admin::audit::list_audit)
        .service(admin::audit::export_audit)
        .service(admin::audit::get_retention)
        .service(admin::audit::put_retention)
        .map(docs::register);
}

/// Anything no route matched: 405 with `Allow` on a path served under other
/// methods, 404 otherwise. The app's default service.
pub use methods::unrouted as not_found;
