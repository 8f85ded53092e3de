//! `ApiJson<T>`: a JSON body extractor whose errors name the field at fault
//! (`rate_limit.burst: invalid type …`) and map to 400, 413 or 415.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{BytesMut, Data};
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;
use crate::state::AppState;

pub struct ApiJson<T>(pub T);

const DEFAULT_LIMIT: usize = 64 * 1024;

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        })
}

/// serde_json appends " at line 1 column 9"; the field path says more.
fn without_position(message: String) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read_json::<T>(req, payload.take());
        Box::pin(async move { read.await.map(ApiJson) })
    }
}

/// Reads and parses a JSON body, like the extractor does. For handlers that
/// must authenticate before they look at the body (token issuing).
pub fn read_json<T: DeserializeOwned + 'static>(
    req: &HttpRequest,
    mut payload: Payload,
) -> LocalBoxFuture<'static, Result<T, ApiError>> {
    let limit = req
        .app_data::<Data<AppState>>()
        .map(|s| s.settings.http.max_body_bytes)
        .unwrap_or(DEFAULT_LIMIT);
    let json = is_json(req);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    Box::pin(async move {
        if !json {
            return Err(ApiError::UnsupportedMediaType(
                "the request body must be JSON: send Content-Type: application/json".into(),
            ));
        }
        let body = read_body(&mut payload, limit, declared).await?;
        parse_json(&body)
    })
}

/// Reads a whole body of at most `limit` bytes (413 beyond).
pub async fn read_body(
    payload: &mut Payload,
    limit: usize,
    declared: Option<usize>,
) -> Result<BytesMut, ApiError> {
    let too_large = || ApiError::PayloadTooLarge(format!("the request body exceeds {limit} bytes"));
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest {
            field: None,
            detail: format!("could not read the request body: {e}"),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn not_json(e: &serde_json::Error) -> ApiError {
    ApiError::BadRequest {
        field: None,
        detail: format!(
            "the request body is not valid JSON: {}",
            without_position(e.to_string())
        ),
    }
}

/// Parses JSON, naming the field at fault in errors.
///
/// Every body asapd takes is an object, but serde happily fills a struct
/// from a JSON array (`[null, null]` would set every field in order), so
/// the top level is checked here, for every endpoint at once.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => ApiError::bad_field("body", "the request body must be a JSON object"),
                Err(e) => not_json(&e),
            },
        );
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => value,
        Err(e) if is_float_for_integer(e.inner()) => return parse_integral_floats(body),
        Err(e) => return Err(field_error(e)),
    };
    de.end().map_err(|_| ApiError::BadRequest {
        field: None,
        detail: "the request body has trailing data after the JSON value".into(),
    })?;
    Ok(value)
}

fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        not_json(&inner)
    } else {
        let message = without_position(inner.to_string());
        ApiError::bad_field(field_at_fault(&path, &message), message)
    }
}

/// The field an error is about: its path, or, for the errors serde raises
/// about a whole object (`missing field `audience``, `duplicate field
/// `actor``), the field the message names. Empty when neither says.
pub(crate) fn field_at_fault(path: &str, message: &str) -> String {
    let within = |prefix: &str| {
        if path == "." {
            prefix.to_owned()
        } else {
            format!("{path}.{prefix}")
        }
    };
    let named = ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|start| message.strip_prefix(start)?.split_once('`'))
        .map(|(field, _)| within(field));
    match named {
        Some(field) => field,
        None if path == "." => String::new(),
        None => path.to_owned(),
    }
}

fn is_float_for_integer(e: &serde_json::Error) -> bool {
    e.is_data() && e.to_string().starts_with("invalid type: floating point")
}

/// JSON has one number type: `60.0` is the integer 60 to JSON Schema and
/// to most clients' serialisers, while serde refuses a float for an
/// integer field. Only a body that failed on that pays for this second
/// parse, with integral floats turned into integers; non-integral ones
/// still fail, naming the field.
fn parse_integral_floats<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(|e| not_json(&e))?;
    integral_floats_to_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(field_error)
}

fn integral_floats_to_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            // Exactly representable in both types, so nothing is rounded.
            const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                if f.abs() <= EXACT {
                    *n = serde_json::Number::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}
