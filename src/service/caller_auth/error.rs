//! Why a caller's request (to issue, introspect or revoke) was refused or
//! failed. `http/` answers it as problem+json or as an OAuth2 error.

use std::time::Duration;

use crate::audit::AuditError;
use crate::domain::denial::{Denial, Rule};
use crate::service::error::ServiceError;
use crate::store::StoreError;

/// A request body that could not be read (415, 413, bad JSON). `http/`
/// puts its own error in and takes it back out to answer it as it is; the
/// service only records its text.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug)]
pub enum IssueError {
    /// A policy refusal, audited and counted.
    Denied {
        denial: Denial,
        retry_after: Option<Duration>,
    },
    /// The body could not be read (415, 413, bad JSON); audited as
    /// `invalid_request` and answered as is.
    Malformed(BodyError),
    /// asapd could not decide or could not audit (503, 500).
    Failed(ServiceError),
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

impl From<ServiceError> for IssueError {
    fn from(e: ServiceError) -> Self {
        IssueError::Failed(e)
    }
}

impl From<StoreError> for IssueError {
    fn from(e: StoreError) -> Self {
        IssueError::Failed(e.into())
    }
}

impl From<AuditError> for IssueError {
    fn from(e: AuditError) -> Self {
        IssueError::Failed(e.into())
    }
}
