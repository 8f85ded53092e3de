//! RFC 6749 §5.2 error answers, and how each refusal rule maps to one.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::denial::Rule;
use crate::http::error::ApiError;
use crate::ratelimit::retry_after_secs;
use crate::service::caller_auth::IssueError;

/// RFC 6749 §5.2 (plus RFC 8707 `invalid_target`).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuth2Error {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `invalid_target`,
    /// `temporarily_unavailable` (429, 503) or `server_error`.
    pub error: &'static str,
    pub error_description: String,
    #[serde(skip)]
    status: StatusCode,
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl OAuth2Error {
    pub(super) fn new(
        error: &'static str,
        status: StatusCode,
        description: impl AsRef<str>,
    ) -> Self {
        Self {
            error,
            error_description: description_chars(description.as_ref()),
            status,
            retry_after: None,
        }
    }

    pub(super) fn invalid_request(description: impl AsRef<str>) -> Self {
        Self::new("invalid_request", StatusCode::BAD_REQUEST, description)
    }

    /// A refused subject token of a token exchange: the grant is invalid
    /// (RFC 6749 §5.2 `invalid_grant`), not the client; no Basic challenge.
    pub(super) fn refuse_grant(&mut self) {
        self.error = "invalid_grant";
        self.status = StatusCode::BAD_REQUEST;
    }

    pub(super) fn response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header(no_store()).insert_header(pragma());
        match self.status {
            StatusCode::UNAUTHORIZED => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="asapd", charset="UTF-8""#),
                ));
            }
            _ => {
                if let Some(secs) = self.retry_after {
                    res.insert_header((header::RETRY_AFTER, secs.to_string()));
                }
            }
        }
        res.json(self)
    }
}

/// The refusals shared by the OAuth2 endpoints that authenticate a caller
/// for something other than a token (introspection, revocation).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documents the responses for the OpenAPI document only
pub enum CallerRefusals {
    #[response(status = 401, description = "invalid_client",
        headers(("WWW-Authenticate" = String, description = "Basic challenge")))]
    InvalidClient(OAuth2Error),
    #[response(status = 429, description = "temporarily_unavailable; see Retry-After",
        headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))]
    RateLimited(OAuth2Error),
    #[response(
        status = 503,
        description = "temporarily_unavailable: nothing was done"
    )]
    Unavailable(OAuth2Error),
}

/// The answer of a handler: the response, or its RFC 6749 §5.2 error.
pub(super) fn answer(result: Result<HttpResponse, OAuth2Error>) -> HttpResponse {
    result.unwrap_or_else(|e| e.response())
}

/// RFC 6749 §5.2 allows only printable ASCII without `"` and `\`.
fn description_chars(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

pub(super) fn no_store() -> (header::HeaderName, HeaderValue) {
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
}

pub(super) fn pragma() -> (header::HeaderName, HeaderValue) {
    (header::PRAGMA, HeaderValue::from_static("no-cache"))
}

impl From<IssueError> for OAuth2Error {
    fn from(e: IssueError) -> Self {
        let (denial, retry_after) = match e {
            IssueError::Denied {
                denial,
                retry_after,
            } => (denial, retry_after),
            other => return from_api_error(&ApiError::from(other)),
        };
        let description = denial.to_string();
        let (error, status) = match denial.rule {
            Rule::InvalidCredentials => ("invalid_client", StatusCode::UNAUTHORIZED),
            Rule::AuthRateLimited | Rule::RateLimited => {
                ("temporarily_unavailable", StatusCode::TOO_MANY_REQUESTS)
            }
            Rule::CallerDisabled | Rule::CallerNetwork | Rule::SubjectNotAllowed => {
                ("unauthorized_client", StatusCode::BAD_REQUEST)
            }
            Rule::UnsupportedGrantType => ("unsupported_grant_type", StatusCode::BAD_REQUEST),
            Rule::InvalidScope => ("invalid_scope", StatusCode::BAD_REQUEST),
            Rule::InvalidTarget | Rule::AudienceNotGranted | Rule::GrantNetwork => {
                ("invalid_target", StatusCode::BAD_REQUEST)
            }
            Rule::InvalidRequest
            | Rule::LifetimeExceeded
            | Rule::ReservedClaim
            | Rule::ClaimsTooLarge => ("invalid_request", StatusCode::BAD_REQUEST),
            Rule::NoActiveKey => ("temporarily_unavailable", StatusCode::SERVICE_UNAVAILABLE),
        };
        let mut out = OAuth2Error::new(error, status, description);
        out.retry_after = retry_after.map(retry_after_secs);
        out
    }
}

impl From<ApiError> for OAuth2Error {
    fn from(e: ApiError) -> Self {
        from_api_error(&e)
    }
}

fn from_api_error(api: &ApiError) -> OAuth2Error {
    match api {
        ApiError::Unavailable(m) => OAuth2Error::new(
            "temporarily_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            m,
        ),
        ApiError::Internal(e) => {
            tracing::error!(error = format!("{e:#}"), "token request failed");
            OAuth2Error::new(
                "server_error",
                StatusCode::INTERNAL_SERVER_ERROR,
                "an unexpected error occurred; it has been logged",
            )
        }
        other => OAuth2Error::invalid_request(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_stay_within_the_rfc_charset() {
        assert_eq!(description_chars("a \"b\" \\ é"), "a 'b' / ?");
    }
}
