//! What a use case says went wrong, in its own words: `http/` alone turns
//! it into a status and a problem body (`http::error`).

use crate::audit::AuditError;
use crate::domain::InvalidField;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Client input breaks a rule; `field` names it when there is one.
    #[error("{detail}")]
    InvalidInput {
        field: Option<String>,
        detail: String,
    },
    /// The presented credentials do not identify a caller.
    #[error("{0}")]
    Unauthenticated(String),
    /// A Bearer token for the admin API was refused.
    #[error("{0}")]
    BearerRejected(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Too many requests; the caller may retry after this many seconds.
    #[error("{detail}")]
    RateLimited {
        detail: String,
        retry_after_secs: u64,
    },
    /// Nothing was done, and a retry later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The database said no; what that means for the client is decided in
    /// `http/` (not found, conflict, unavailable…).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit record could not be written, so nothing was done.
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    /// Invalid input at `field` (none when empty); the detail names it.
    pub fn bad_field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let field = field.into();
        let detail = detail.into();
        ServiceError::InvalidInput {
            detail: if field.is_empty() {
                detail
            } else {
                format!("{field}: {detail}")
            },
            field: Some(field).filter(|f| !f.is_empty()),
        }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ServiceError::Internal(err.into())
    }
}

impl From<InvalidField> for ServiceError {
    fn from(e: InvalidField) -> Self {
        ServiceError::bad_field(e.field, e.message)
    }
}
