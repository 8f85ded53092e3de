//! What can go wrong writing the audit log. `http/` decides how a request
//! whose record cannot be written is answered.

use std::sync::Arc;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log cannot be written")]
    Unavailable(#[source] Arc<StoreError>),
    #[error("the audit log is shut down")]
    Closed,
}
