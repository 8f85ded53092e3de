//! The admin API: callers, their secrets and keys, and groups.

pub mod audit;
pub mod callers;
pub mod client_keys;
pub mod groups;
pub mod issuers;
pub mod keys;
pub mod secrets;
pub mod tokens;

use serde::{Deserialize, Deserializer};

use crate::domain::names::CallerName;
use crate::http::error::ApiError;

/// A caller name from the path; a name that cannot exist is simply not found.
pub(crate) fn caller_in_path(name: &str) -> Result<CallerName, ApiError> {
    CallerName::parse(name).map_err(|_| ApiError::from(crate::service::callers::not_found(name)))
}

/// Distinguishes an absent field (`None`) from an explicit `null`
/// (`Some(None)`) in PATCH bodies.
pub(crate) fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}
