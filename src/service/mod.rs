//! Use cases: each function validates with domain rules, does its work in
//! one transaction, commits, then refreshes in-memory state. Handlers call
//! these and stay thin.

pub mod audit_retention;
pub mod bearer;
pub mod bootstrap;
pub mod caller_auth;
pub mod callers;
pub mod client_keys;
pub mod error;
pub mod groups;
pub mod introspection;
pub mod issuers;
pub mod keys;
pub mod rekey;
pub mod revocation;
pub mod rotation;
pub mod secrets;
pub mod token_check;
pub mod tokens;

/// Validated names and patterns as the strings the store keeps.
pub(crate) fn strings<T: Clone + Into<String>>(items: &[T]) -> Vec<String> {
    items.iter().cloned().map(Into::into).collect()
}
