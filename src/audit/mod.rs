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
    // Every change is audited in its own transaction, so this is the one
    // place that sees them all: tell the other replicas too.
    if let Some(change) = announced_change(&event) {
        crate::store::changes::announce(conn, &change).await?;
    }
    Ok(())
}

/// What other replicas hear of an audited change: `<kind>:<name>`, from the
/// action's family and the target (`secret.revoked` on `caller:svc-a` is
/// `secret:svc-a`). Events that change nothing replicas keep in memory
/// (pruning) are not announced; a revocation announces itself, with the
/// token's `exp` (`crate::revoked::notification`).
fn announced_change(event: &AuditEvent) -> Option<String> {
    let kind = event.action.split('.').next()?;
    if !matches!(kind, "caller" | "secret" | "group" | "key" | "settings") {
        return None;
    }
    let target = event.target.as_deref().unwrap_or_default();
    let name = target.split_once(':').map_or(target, |(_, name)| name);
    Some(format!("{kind}:{name}"))
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
