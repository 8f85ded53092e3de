//! The audit log: event types, the group-commit writer, queries and
//! retention.

pub mod event;
pub mod pacing;
pub mod query;
pub mod retention;
pub mod writer;

pub use event::{action, AuditEvent, Origin, Outcome};
pub use pacing::CommitPacing;
pub use writer::{AuditError, Auditor};

use crate::error::ApiError;
use crate::store::{audit as audit_store, Conn};
use crate::telemetry::Chain;

/// Records an event inside the caller's transaction: the change and its
/// audit record commit together or not at all.
pub async fn record_in(conn: &mut Conn, event: AuditEvent) -> Result<(), ApiError> {
    audit_store::insert_batch(conn, std::slice::from_ref(&event)).await?;
    Ok(())
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
