//! The one error type of the HTTP API, rendered as RFC 9457 problem+json in
//! one place. Unexpected errors log their cause chain and answer an opaque
//! 500 that carries only the request id. What the layers below say went
//! wrong (`ServiceError`, `StoreError`, `AuditError`) becomes a status and a
//! problem here and nowhere else.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::audit::AuditError;
use crate::domain::denial::Rule;
use crate::domain::InvalidField;
use crate::error_chain::Chain;
use crate::ratelimit::retry_after_secs;
use crate::service::caller_auth::{BodyError, IssueError};
use crate::service::error::ServiceError;
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

fn basic_challenge() -> HeaderValue {
    HeaderValue::from_static(r#"Basic realm="asapd", charset="UTF-8""#)
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest {
        field: Option<String>,
        detail: String,
    },
    #[error("{0}")]
    Unauthorized(String),
    /// A 401 from the admin API, which takes Basic or Bearer credentials:
    /// its challenge offers both.
    #[error("{0}")]
    AdminUnauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// `allow` lists the methods the resource answers, for the `Allow`
    /// header RFC 9110 §15.5.6 requires on a 405.
    #[error("{detail}")]
    MethodNotAllowed { detail: String, allow: String },
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// The request this answers; quote it when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The request field at fault, for 400s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// A 400 naming `field`, worded as the service layer words it.
    pub fn bad_field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ServiceError::bad_field(field, detail).into()
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(err.into())
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest { .. } => ("bad-request", "Bad Request"),
            ApiError::Unauthorized(_) | ApiError::AdminUnauthorized(_) => {
                ("unauthorized", "Unauthorized")
            }
            ApiError::Forbidden(_) => ("forbidden", "Forbidden"),
            ApiError::NotFound(_) => ("not-found", "Not Found"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::PayloadTooLarge(_) => ("payload-too-large", "Payload Too Large"),
            ApiError::UnsupportedMediaType(_) => {
                ("unsupported-media-type", "Unsupported Media Type")
            }
            ApiError::MethodNotAllowed { .. } => ("method-not-allowed", "Method Not Allowed"),
            ApiError::TooManyRequests { .. } => ("rate-limited", "Too Many Requests"),
            ApiError::Unavailable(_) => ("unavailable", "Service Unavailable"),
            ApiError::Internal(_) => ("internal", "Internal Server Error"),
        }
    }

    /// The problem document; internal details never reach the client.
    pub fn problem(&self, request_id: Option<&str>) -> Problem {
        let (slug, title) = self.slug_and_title();
        let detail = match self {
            ApiError::Internal(_) => {
                "an unexpected error occurred; it has been logged with this request id".to_owned()
            }
            other => other.to_string(),
        };
        Problem {
            kind: format!("urn:asapd:problem:{slug}"),
            title,
            status: self.status_code().as_u16(),
            detail,
            request_id: request_id.map(str::to_owned),
            field: match self {
                ApiError::BadRequest { field, .. } => field.clone(),
                _ => None,
            },
        }
    }

    /// Renders the response; called by the request-id middleware, which
    /// knows the id, and logs unexpected errors with their cause chain.
    pub fn render(&self, request_id: Option<&str>) -> HttpResponse {
        if let ApiError::Internal(err) = self {
            tracing::error!(request_id, error = format!("{err:#}"), "request failed");
        }
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        match self {
            ApiError::Unauthorized(_) => {
                res.insert_header((header::WWW_AUTHENTICATE, basic_challenge()));
            }
            ApiError::AdminUnauthorized(_) => {
                res.insert_header((header::WWW_AUTHENTICATE, basic_challenge()));
                res.append_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="asapd""#),
                ));
            }
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                res.insert_header((header::ALLOW, allow.as_str()));
            }
            _ => {}
        }
        res.body(serde_json::to_vec(&self.problem(request_id)).expect("problem serialises"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::AdminUnauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.render(None)
    }
}

impl From<InvalidField> for ApiError {
    fn from(e: InvalidField) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("no such resource".into()),
            StoreError::Conflict(_) => {
                ApiError::Conflict("the change conflicts with existing data".into())
            }
            StoreError::Unavailable(source) => {
                tracing::warn!(error = %Chain(&source), "database unavailable");
                ApiError::Unavailable("the database is unavailable; retry later".into())
            }
            StoreError::UnstorableText => ApiError::BadRequest {
                field: None,
                detail: "the request holds a control character (such as NUL) where text \
                         is expected"
                    .into(),
            },
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        tracing::warn!(
            error = %Chain(&e),
            "refusing a request whose audit record cannot be written"
        );
        ApiError::Unavailable(
            "the audit log cannot be written; nothing was done, retry later".into(),
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::InvalidInput { field, detail } => ApiError::BadRequest { field, detail },
            ServiceError::Unauthenticated(m) => ApiError::Unauthorized(m),
            ServiceError::BearerRejected(m) => ApiError::AdminUnauthorized(m),
            ServiceError::Forbidden(m) => ApiError::Forbidden(m),
            ServiceError::NotFound(m) => ApiError::NotFound(m),
            ServiceError::Conflict(m) => ApiError::Conflict(m),
            ServiceError::RateLimited {
                detail,
                retry_after_secs,
            } => ApiError::TooManyRequests {
                detail,
                retry_after_secs,
            },
            ServiceError::Unavailable(m) => ApiError::Unavailable(m),
            ServiceError::Store(e) => e.into(),
            ServiceError::Audit(e) => e.into(),
            ServiceError::Internal(e) => ApiError::Internal(e),
        }
    }
}

/// The problem+json answer of `/v1/tokens` (and of the OAuth2 endpoints'
/// errors that are not OAuth2 errors).
impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        let (denial, retry_after) = match e {
            IssueError::Malformed(body) => return ApiError::from_body_error(body),
            IssueError::Failed(e) => return e.into(),
            IssueError::Denied {
                denial,
                retry_after,
            } => (denial, retry_after),
        };
        let detail = denial.to_string();
        match denial.rule {
            Rule::InvalidCredentials => ApiError::Unauthorized(denial.message),
            Rule::AuthRateLimited | Rule::RateLimited => ApiError::TooManyRequests {
                detail,
                retry_after_secs: retry_after_secs(retry_after.unwrap_or_default()),
            },
            Rule::CallerDisabled
            | Rule::CallerNetwork
            | Rule::AudienceNotGranted
            | Rule::GrantNetwork
            | Rule::SubjectNotAllowed => ApiError::Forbidden(detail),
            Rule::NoActiveKey => ApiError::Unavailable(detail),
            Rule::InvalidRequest
            | Rule::UnsupportedGrantType
            | Rule::InvalidScope
            | Rule::InvalidTarget
            | Rule::LifetimeExceeded
            | Rule::ReservedClaim
            | Rule::ClaimsTooLarge => ApiError::BadRequest {
                field: denial.field,
                detail,
            },
        }
    }
}

impl ApiError {
    /// A request body this layer refused ([`IssueError::Malformed`] holds
    /// it while the service audits the refusal), answered as it was.
    pub fn into_body_error(self) -> IssueError {
        IssueError::Malformed(Box::new(self))
    }

    fn from_body_error(body: BodyError) -> Self {
        match body.downcast::<ApiError>() {
            Ok(api) => *api,
            Err(other) => ApiError::BadRequest {
                field: None,
                detail: other.to_string(),
            },
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
