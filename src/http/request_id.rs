//! Request ids, and the one place where errors become problem+json.
//!
//! Every response carries `X-Request-Id` (the client's, if it sent a sane
//! one). Error responses are (re-)rendered here because only here is the
//! request id known; errors that did not come from our handlers (unknown
//! route, wrong method) get the same problem+json shape.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use rand::RngCore;
use tracing::Instrument;

use crate::http::error::{ApiError, PROBLEM_JSON};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Accept a client id only if it is short and harmless in logs.
fn sane(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_owned())
}

/// 96 random bits as hex. A request id needs uniqueness, not secrecy from
/// the OS: the thread-local CSPRNG avoids a `getrandom` syscall per request,
/// and `hex::encode` allocates once where twelve `format!`s did
/// (`benches/profile.sh healthz` had those at 14 % of the server's CPU on
/// `/healthz`).
pub(crate) fn new_id() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(sane)
        .unwrap_or_else(new_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    // Every line logged while serving the request, however deep in a
    // service, carries its id through this span. The path, not the URI:
    // a query string may hold anything. At ERROR level so that it is on
    // whenever any line is (`ASAPD_LOG=warn` would drop an INFO span, and
    // the warnings inside would lose their id); the level of a span is
    // not printed.
    let span = tracing::error_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    async move {
        // Handlers' and extractors' errors arrive as responses; an `Err`
        // here could only come from an inner middleware, and actix renders
        // it with the same `ApiError::render`.
        let res = next.call(req).await?.map_into_boxed_body();
        let mut res = to_problem(res, &id);
        if let Ok(value) = HeaderValue::from_str(&id) {
            res.headers_mut().insert(REQUEST_ID, value);
        }
        Ok(res)
    }
    .instrument(span)
    .await
}

fn to_problem(res: ServiceResponse<BoxBody>, id: &str) -> ServiceResponse<BoxBody> {
    if let Some(api) = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
    {
        let rendered = api.render(Some(id));
        return res.into_response(rendered);
    }
    let status = res.status();
    // A handler that chose a JSON error body keeps it: OAuth2 clients
    // expect RFC 6749 §5.2 documents, not problem+json.
    let is_shaped = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(PROBLEM_JSON.as_bytes())
            || v.as_bytes().starts_with(b"application/json")
    });
    if !(status.is_client_error() || status.is_server_error()) || is_shaped {
        return res;
    }
    let cause = res.response().error().map(|e| e.to_string());
    let api = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound("no such resource".into()),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed {
            detail: "this resource does not support that method".into(),
            allow: res
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        },
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge("request body too large".into()),
        s if s.is_client_error() => ApiError::BadRequest {
            field: None,
            detail: cause.unwrap_or_else(|| "bad request".into()),
        },
        _ => ApiError::internal(anyhow::anyhow!(
            "unhandled {status}: {}",
            cause.unwrap_or_default()
        )),
    };
    let mut rendered = api.render(Some(id));
    // Keep the status the framework chose (e.g. 405 stays 405).
    *rendered.status_mut() = status;
    res.into_response(rendered)
}
