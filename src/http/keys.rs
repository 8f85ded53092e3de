//! The public key repository (ASAP layout) and the JWKS.

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::header::{self, CacheControl, CacheDirective, Header};
use actix_web::http::Method;
use actix_web::{get, web, HttpMessage, HttpRequest, HttpResponse};
use utoipa::openapi::path::Paths;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa_actix_web::OpenApiFactory;

use super::metrics::RouteLabel;
use crate::domain::kid::Kid;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::keyring::PublishedKey;
use crate::state::AppState;
use std::sync::Arc;

fn cache_control(state: &AppState) -> CacheControl {
    CacheControl(vec![
        CacheDirective::Public,
        CacheDirective::MaxAge(state.settings.keys.cache_max_age_secs),
    ])
}

/// The SPKI PEM of a published key. Verifiers fetch `<base-url><kid>`
/// literally, so the kid spans `/`. Unknown, revoked, expired and malformed
/// kids all answer 404.
#[utoipa::path(
    get,
    path = "/v1/keys/{kid}",
    tag = "public",
    params(
        ("kid" = String, Path, description = "`<caller>/<key-name>`", example = "svc-a/20261122T061500Z-1a2b3c4d"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer: 304 if the key is unchanged"),
    ),
    responses(
        (status = 200, description = "SPKI public key", content_type = "application/x-pem-file", body = String,
            headers(("ETag" = String, description = "Derived from the content: the same on every replica"))),
        (status = 304, description = "Unchanged since the `ETag` in `If-None-Match`",
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn public_key(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    req.extensions_mut().insert(RouteLabel(ROUTE));
    // HEAD arrives here as GET (`methods::head_as_get`).
    if req.method() != Method::GET {
        return Err(ApiError::MethodNotAllowed {
            detail: "the key repository only answers GET and HEAD".into(),
            allow: "GET, HEAD".into(),
        });
    }
    // What the scope left of the (percent-decoded) path: `/<kid>`. Every
    // kid in the map is valid by construction, so a lookup is the whole
    // check: malformed kids and path traversal simply are not there.
    let kid = req.match_info().unprocessed().strip_prefix('/');
    let snapshot = state.keyring.snapshot();
    let key = match kid.and_then(|kid| snapshot.published.get(kid)) {
        Some(key) => key.clone(),
        None => unloaded_key(&state, kid)
            .await
            .ok_or_else(|| ApiError::NotFound("no published key with that kid".into()))?,
    };
    Ok(cacheable(
        &req,
        &state,
        &key.etag,
        "application/x-pem-file",
        key.pem.clone(),
    ))
}

/// A well-formed kid the ring does not hold yet may have just been
/// published through another replica: look in the database, and reload the
/// ring in the background when it is there.
async fn unloaded_key(state: &web::Data<AppState>, kid: Option<&str>) -> Option<Arc<PublishedKey>> {
    let kid = Kid::parse(kid?).ok()?;
    match state
        .keyring
        .find_unloaded(&state.store, kid.as_str())
        .await
    {
        Ok(Some(key)) => {
            let state = state.clone();
            tokio::spawn(async move {
                if let Err(e) = state.keyring.reload(&state.store).await {
                    tracing::warn!(error = format!("{e:#}"), "key ring reload failed");
                }
            });
            Some(key)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "looking up a kid missing from the key ring"
            );
            None
        }
    }
}

/// A public, cacheable answer with its `ETag`; `304 Not Modified` (same
/// `ETag` and `Cache-Control`, no body) when the client's `If-None-Match`
/// already names it, as a CDN or a verifier's HTTP cache revalidates.
fn cacheable(
    req: &HttpRequest,
    state: &AppState,
    etag: &str,
    content_type: &'static str,
    body: web::Bytes,
) -> HttpResponse {
    let unchanged = matches_if_none_match(req, etag);
    let mut res = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag))
        .insert_header(cache_control(state));
    if unchanged {
        return res.finish();
    }
    res.insert_header((header::CONTENT_TYPE, content_type))
        .body(body)
}

/// RFC 9110 §13.1.2: `*`, or a list of tags compared weakly (a `W/`
/// prefix does not matter for `If-None-Match`). `etag` is a quoted strong
/// tag, as [`crate::keyring::etag_of`] makes them. A header that does not
/// parse matches nothing: the full answer is always a safe reply.
fn matches_if_none_match(req: &HttpRequest, etag: &str) -> bool {
    // Most fetches send none: skip the parse and its allocations.
    if !req.headers().contains_key(header::IF_NONE_MATCH) {
        return false;
    }
    match header::IfNoneMatch::parse(req) {
        Ok(header::IfNoneMatch::Any) => true,
        Ok(header::IfNoneMatch::Items(tags)) => {
            let ours = header::EntityTag::new_strong(etag.trim_matches('"').to_owned());
            tags.iter().any(|tag| tag.weak_eq(&ours))
        }
        Err(_) => false,
    }
}

/// `GET /v1/keys/{kid}`, routed by its static prefix.
///
/// Verifiers hit this route hardest. A `{kid:.*}` route costs a regex run
/// (actix-router's `regex-lite` PikeVM) on every request that reaches it in
/// the routing order: a third of a key fetch's CPU (benches/README.md). A
/// scope matches its prefix with a string comparison and hands the rest of
/// the path to [`public_key`]; the OpenAPI entry comes from its annotation.
pub struct KeyRepository;

/// This route in metrics labels.
const ROUTE: &str = "/v1/keys/{kid}";

impl HttpServiceFactory for KeyRepository {
    fn register(self, config: &mut AppService) {
        web::scope("/v1/keys")
            .default_service(web::to(public_key))
            .register(config);
    }
}

impl OpenApiFactory for KeyRepository {
    fn paths(&self) -> Paths {
        __path_public_key.paths()
    }

    fn schemas(&self, schemas: &mut Vec<(String, RefOr<Schema>)>) {
        __path_public_key.schemas(schemas)
    }
}

/// Every published key as a JWK Set; each JWK carries `kid`, `alg`, `use`.
#[utoipa::path(
    tag = "public",
    params(("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer: 304 if the JWKS is unchanged")),
    responses(
        (status = 200, description = "JWK Set, sorted by kid", content_type = "application/json", body = Object,
            headers(("ETag" = String, description = "Derived from the content: the same on every replica"))),
        (status = 304, description = "Unchanged since the `ETag` in `If-None-Match`",
            headers(("ETag" = String), ("Cache-Control" = String))),
    )
)]
#[get("/.well-known/jwks.json")]
pub async fn jwks(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.keyring.snapshot();
    cacheable(
        &req,
        &state,
        &snapshot.jwks_etag,
        "application/json",
        snapshot.jwks.clone(),
    )
}
