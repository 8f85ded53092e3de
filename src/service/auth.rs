//! Authenticating callers by name and secret.

use crate::crypto::secret;
use crate::domain::names::GroupName;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::secrets as secret_store;

/// An authenticated caller and the groups it belongs to.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub groups: Vec<String>,
}

impl Principal {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    pub fn is_admin(&self) -> bool {
        self.in_group(GroupName::ADMIN)
    }

    pub fn is_auditor(&self) -> bool {
        self.in_group(GroupName::AUDITOR)
    }
}

/// Checks `name:secret` and refuses disabled callers.
pub async fn authenticate(state: &AppState, name: &str, presented: &str) -> ApiResult<Principal> {
    let checked = check_secret(state, name, presented).await?;
    if !checked.enabled {
        return Err(ApiError::Forbidden(format!("caller {name} is disabled")));
    }
    Ok(checked.principal)
}

/// A caller whose secret matched, enabled or not: token issuing checks
/// the enabled flag as its own, audited step (DESIGN §4 step 3).
#[derive(Debug, Clone)]
pub struct CheckedSecret {
    pub principal: Principal,
    pub enabled: bool,
}

/// Checks `name:secret`. Every stored hash is compared in constant time,
/// and an unknown caller costs the same hash as a known one.
pub async fn check_secret(
    state: &AppState,
    name: &str,
    presented: &str,
) -> ApiResult<CheckedSecret> {
    let presented_hash = secret::hash(presented);
    let credentials = match state.callers.credentials(name) {
        Some(cached) => Some(cached),
        None => {
            let ticket = state.callers.ticket();
            let mut conn = state.store.acquire().await?;
            secret_store::credentials(&mut conn, name)
                .await?
                .map(|c| state.callers.put_credentials(ticket, name, c))
        }
    };
    let Some(credentials) = credentials else {
        let _ = secret::matches(&presented_hash, &[0u8; 32]);
        return Err(invalid_credentials());
    };
    let matched = credentials.hashes.iter().fold(false, |acc, stored| {
        acc | secret::matches(&presented_hash, stored)
    });
    if !matched {
        return Err(invalid_credentials());
    }
    Ok(CheckedSecret {
        principal: Principal {
            name: name.to_owned(),
            groups: credentials.groups.clone(),
        },
        enabled: credentials.enabled,
    })
}

pub fn invalid_credentials() -> ApiError {
    ApiError::Unauthorized("invalid client credentials".into())
}
