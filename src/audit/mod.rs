//! The audit log: the group-commit writer, in-transaction records and
//! queries. The event record itself is domain data
//! (`domain::audit_event`), so the store can keep it without importing
//! this module; retention is a use case (`service::audit_retention`).

pub mod error;
mod fold;
pub mod pacing;
pub mod query;
pub mod writer;

pub use crate::domain::audit_event as event;
pub use error::AuditError;
pub use event::{action, AuditEvent, Origin, Outcome};
pub use writer::Auditor;

use crate::store::{audit as audit_store, Conn, StoreResult};

/// Records an event inside the caller's transaction: the change and its
/// audit record commit together or not at all.
pub async fn record_in(conn: &mut Conn, event: AuditEvent) -> StoreResult<()> {
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
    if !matches!(
        kind,
        "caller" | "secret" | "group" | "key" | "settings" | "client_key" | "issuer"
    ) {
        return None;
    }
    let target = event.target.as_deref().unwrap_or_default();
    let name = target.split_once(':').map_or(target, |(_, name)| name);
    Some(format!("{kind}:{name}"))
}
