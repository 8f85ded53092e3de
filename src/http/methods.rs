//! What a request no route took gets: 405 with `Allow` when its path is
//! served under other methods, 404 otherwise. And HEAD, which every path
//! served under GET answers through its GET route.
//!
//! Each `#[get]`/`#[post]` handler is a resource of its own guarded by its
//! method, so actix falls through to the default service on a wrong method
//! and cannot tell it from an unknown path. The methods per path come from
//! the OpenAPI document, which is built from the same route list as the
//! router, so the two cannot drift apart.

use std::sync::LazyLock;

use actix_web::body::MessageBody;
use actix_web::dev::{ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use utoipa::openapi::path::PathItem;

use crate::http::error::ApiError;

/// One documented path and the methods it answers, in `Allow` order.
struct Served {
    path: ResourceDef,
    /// Characters outside parameters: where two templates match a path
    /// (`/v1/admin/keys/{kid}` and `…/{kid}/revoke`), the one that spells
    /// out more of it is the resource meant.
    literal_len: usize,
    methods: Vec<&'static str>,
}

fn literal_len(template: &str) -> usize {
    let mut depth = 0usize;
    template
        .chars()
        .filter(|&c| {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .count()
}

/// A `{kid}` spans `/` (kids are `<caller>/<key-name>`); every other path
/// parameter is one segment, as in the routes.
fn resource_def(template: &str) -> ResourceDef {
    ResourceDef::new(template.replace("{kid}", "{kid:.+}"))
}

fn methods_of(item: &PathItem) -> Vec<&'static str> {
    [
        ("GET", item.get.is_some()),
        // RFC 9110 §9.3.2: HEAD wherever GET works (see `head_as_get`).
        ("HEAD", item.get.is_some() || item.head.is_some()),
        ("POST", item.post.is_some()),
        ("PUT", item.put.is_some()),
        ("PATCH", item.patch.is_some()),
        ("DELETE", item.delete.is_some()),
    ]
    .into_iter()
    .filter_map(|(method, served)| served.then_some(method))
    .collect()
}

static SERVED: LazyLock<Vec<Served>> = LazyLock::new(|| {
    super::openapi::spec()
        .paths
        .paths
        .iter()
        .map(|(template, item)| Served {
            path: resource_def(template),
            literal_len: literal_len(template),
            methods: methods_of(item),
        })
        .collect()
});

/// The methods some route answers on `path`, as an `Allow` value; `None`
/// when no route has this path.
pub fn allowed(path: &str) -> Option<String> {
    SERVED
        .iter()
        .filter(|s| s.path.is_match(path))
        .max_by_key(|s| s.literal_len)
        .map(|s| s.methods.join(", "))
}

/// RFC 9110 §9.3.2: HEAD answers as GET would, without the body. Each
/// route is guarded by GET, so a HEAD becomes a GET before routing; the
/// connection layer decoded a HEAD and leaves the body off (keeping its
/// `Content-Length`). Paths not served under GET keep HEAD and get 405.
/// Marks a HEAD request `head_as_get` handed to a GET route, so the
/// request metrics still count it as the HEAD it was.
#[derive(Clone, Copy)]
pub struct AnsweredAsGet;

pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::HEAD
        && allowed(req.path()).is_none_or(|allow| allow.starts_with("GET"))
    {
        req.head_mut().method = Method::GET;
        req.extensions_mut().insert(AnsweredAsGet);
    }
    next.call(req).await
}

/// The default service: anything no route matched.
pub async fn unrouted(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(match allowed(req.match_info().as_str()) {
        Some(allow) => ApiError::MethodNotAllowed {
            detail: format!("{} is not served here; use {allow}", req.method()),
            allow,
        },
        None => ApiError::NotFound("no such resource".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn a_path_gets_the_methods_of_its_routes() {
        assert_eq!(
            allowed("/v1/admin/callers").as_deref(),
            Some("GET, HEAD, POST")
        );
        assert_eq!(
            allowed("/v1/admin/callers/svc-a").as_deref(),
            Some("GET, HEAD, PATCH, DELETE")
        );
        assert_eq!(allowed("/v1/keys/svc-a/k1").as_deref(), Some("GET, HEAD"));
        assert_eq!(
            allowed("/v1/admin/keys/svc-a/k1/revoke").as_deref(),
            Some("POST")
        );
        assert_eq!(
            allowed("/v1/admin/keys/svc-a/k1").as_deref(),
            Some("GET, HEAD")
        );
        assert_eq!(allowed("/nothing/here"), None);
    }
}
