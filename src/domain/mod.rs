//! Validated domain types and the rules that govern them. Nothing in here
//! knows about HTTP or SQL: handlers parse into these types, the store
//! persists them.

pub mod algorithm;
pub mod audit_event;
pub mod caller;
pub mod claims;
pub mod denial;
pub mod federation;
pub mod grants;
pub mod group;
pub mod key;
pub mod kid;
pub mod names;
pub mod policy;
pub mod qsh;

/// A rule violation in client-supplied input, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    /// JSON path of the offending field, e.g. `rate_limit.burst`.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl InvalidField {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Re-roots the error under `prefix`, e.g. `cidrs[2]`.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}
