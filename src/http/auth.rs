//! Who is calling: HTTP Basic credentials, and the admin-API gate.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::http::context::RequestMeta;
use crate::http::error::{ApiError, ApiResult};
use crate::ratelimit::retry_after_secs;
use crate::service::bearer;
use crate::service::caller_auth::secret::{self as auth, Principal};
use crate::service::error::ServiceError;
use crate::state::AppState;

fn invalid_credentials() -> ApiError {
    auth::invalid_credentials().into()
}

/// `Authorization: Basic` credentials, if the header is present.
pub fn basic_credentials(req: &HttpRequest) -> ApiResult<Option<(String, String)>> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| invalid_credentials())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(invalid_credentials());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::Unauthorized(format!(
            "unsupported authorization scheme {:?}; use Basic",
            crate::audit::event::truncate(scheme, 20)
        )));
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid_credentials)?;
    let (name, secret) = decoded.split_once(':').ok_or_else(invalid_credentials)?;
    Ok(Some((name.to_owned(), secret.to_owned())))
}

/// How the request authenticates to the admin API.
enum AdminCredentials {
    Basic(String, String),
    Bearer(String),
}

fn admin_credentials(req: &HttpRequest) -> ApiResult<AdminCredentials> {
    let missing = || {
        ApiError::AdminUnauthorized(
            "admin API: authenticate with HTTP Basic or a Bearer token from asapd".into(),
        )
    };
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    if let Some((scheme, token)) = value.split_once(' ') {
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(AdminCredentials::Bearer(token.trim().to_owned()));
        }
    }
    match basic_credentials(req) {
        Ok(Some((name, secret))) => Ok(AdminCredentials::Basic(name, secret)),
        Ok(None) => Err(missing()),
        Err(ApiError::Unauthorized(m)) => Err(ApiError::AdminUnauthorized(
            m.replace("; use Basic", "; use Basic or Bearer"),
        )),
        Err(other) => Err(other),
    }
}

/// An authenticated admin-API user: HTTP Basic credentials of a caller, or
/// a Bearer ASAP token asapd issued to it for its own audience. `admin` may
/// do everything; `auditor` may only read (GET/HEAD).
///
/// [`admin_gate`] authenticates every `/v1/admin` request before routing;
/// this extractor only hands its result to the handler. Authenticating in
/// the extractor would race the body extractor (actix polls a handler's
/// extractors together), so a stranger could get a body's 400 instead of
/// the 401 they are owed.
#[derive(Debug, Clone)]
pub struct AdminCaller(pub Principal);

impl FromRequest for AdminCaller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            req.extensions()
                .get::<AdminCaller>()
                .cloned()
                .ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!(
                        "admin route {} outside the admin gate",
                        req.path()
                    ))
                }),
        )
    }
}

/// The admin API's prefix: every route under it is for admins and
/// auditors only.
const ADMIN_PREFIX: &str = "/v1/admin";

fn is_admin_path(path: &str) -> bool {
    path.strip_prefix(ADMIN_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether any spelling of the request's path reaches the admin API. The
/// router matches the path with unreserved characters percent-decoded
/// (`/v1/%61dmin` is `/v1/admin` to it), so the gate must look at that
/// form, not only at the raw one. It also looks at the fully decoded path
/// with empty and dot segments resolved, as a proxy in front might: a
/// stranger gets the admin API's 401 for every spelling of an admin path,
/// and nothing the router sends to an admin handler skips the gate.
fn reaches_admin(raw: &str, routed: &str) -> bool {
    is_admin_path(raw) || is_admin_path(routed) || is_admin_path(&normalized(routed))
}

/// `path` percent-decoded, with empty, `.` and `..` segments resolved.
fn normalized(path: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

/// Middleware: authenticates and authorises admin-API requests before any
/// handler or extractor runs.
pub async fn admin_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !reaches_admin(req.path(), req.match_info().as_str()) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    match authenticate_admin(req.request()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(e) => Ok(req.error_response(e)),
    }
}

async fn authenticate_admin(req: &HttpRequest) -> ApiResult<AdminCaller> {
    let state = req
        .app_data::<Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no app state")))?;
    let credentials = admin_credentials(req)?;
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    let origin = RequestMeta::of(req).origin("anonymous");
    let endpoint = req.match_pattern().unwrap_or_else(|| ADMIN_PREFIX.into());
    if let Some(wait) = auth::blocked(&state, &origin) {
        return Err(ApiError::TooManyRequests {
            detail: "too many failed authentications from this address".into(),
            retry_after_secs: retry_after_secs(wait),
        });
    }
    let (checked, presented_name, reason) = match credentials {
        AdminCredentials::Basic(name, secret) => {
            let checked = auth::authenticate(&state, &name, &secret).await;
            (checked, Some(name), "invalid_credentials")
        }
        AdminCredentials::Bearer(token) => (
            bearer::authenticate(&state, &token).await,
            None,
            "invalid_token",
        ),
    };
    let principal = match checked {
        Ok(principal) => principal,
        Err(ServiceError::Unauthenticated(m) | ServiceError::BearerRejected(m)) => {
            let name = presented_name.as_deref();
            auth::failed(&state, &origin, &endpoint, name, reason).await;
            return Err(ApiError::AdminUnauthorized(m));
        }
        Err(other) => return Err(other.into()),
    };
    let name = &principal.name;
    if principal.is_admin() || (read_only && principal.is_auditor()) {
        return Ok(AdminCaller(principal));
    }
    Err(ApiError::Forbidden(if principal.is_auditor() {
        format!("{name} is an auditor: the admin API is read-only for group auditor")
    } else {
        format!("{name} is not in group admin (or auditor, for reads)")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_an_admin_path_is_gated() {
        for (raw, routed) in [
            ("/v1/admin/callers", "/v1/admin/callers"),
            ("/v1/%61dmin/callers", "/v1/admin/callers"),
            ("//v1//admin/callers", "//v1//admin/callers"),
            ("/v1/./admin/callers", "/v1/./admin/callers"),
            ("/v1/keys/../admin/callers", "/v1/keys/../admin/callers"),
            ("/v1%2Fadmin/callers", "/v1%2Fadmin/callers"),
            ("/v1/admin", "/v1/admin"),
        ] {
            assert!(reaches_admin(raw, routed), "{raw} must be gated");
        }
        for path in ["/v1/keys/a/b", "/v1/administrator", "/v1/tokens", "/"] {
            assert!(!reaches_admin(path, path), "{path} is not admin");
        }
    }
}
