//! How a refused or failed token request is answered by `/v1/tokens`.

use std::time::Duration;

use crate::domain::denial::{Denial, Rule};
use crate::error::ApiError;
use crate::ratelimit::retry_after_secs;
use crate::store::StoreError;

#[derive(Debug)]
pub enum IssueError {
    /// A policy refusal, audited and counted.
    Denied {
        denial: Denial,
        retry_after: Option<Duration>,
    },
    /// The body could not be read (415, 413, bad JSON); audited as
    /// `invalid_request` and answered as is.
    Malformed(ApiError),
    /// asapd could not decide or could not audit (503, 500).
    Failed(ApiError),
}

impl IssueError {
    pub fn denied(denial: Denial) -> Self {
        IssueError::Denied {
            denial,
            retry_after: None,
        }
    }

    /// The rule, for the OAuth2 error mapping.
    pub fn rule(&self) -> Option<Rule> {
        match self {
            IssueError::Denied { denial, .. } => Some(denial.rule),
            IssueError::Malformed(_) => Some(Rule::InvalidRequest),
            IssueError::Failed(_) => None,
        }
    }
}

impl From<ApiError> for IssueError {
    fn from(e: ApiError) -> Self {
        IssueError::Failed(e)
    }
}

impl From<StoreError> for IssueError {
    fn from(e: StoreError) -> Self {
        IssueError::Failed(e.into())
    }
}

/// The problem+json answer of `/v1/tokens`.
impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        let (denial, retry_after) = match e {
            IssueError::Malformed(e) | IssueError::Failed(e) => return e,
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
