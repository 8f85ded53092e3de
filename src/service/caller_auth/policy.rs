//! The caller's token policy as the database holds it, through the
//! per-replica cache.

use std::sync::Arc;

use super::IssueError;
use crate::domain::caller::RateLimit;
use crate::domain::denial::{Denial, Rule};
use crate::domain::grants::Grant;
use crate::domain::group::{AudiencePattern, Cidr};
use crate::domain::policy::Policy;
use crate::service::error::ServiceError;
use crate::state::AppState;
use crate::store::{callers, groups, StoreError};

/// The caller's policy, from the cache or else the database.
pub async fn load_policy(state: &AppState, caller: &str) -> Result<Arc<Policy>, IssueError> {
    if let Some(policy) = state.callers.policy(caller) {
        return Ok(policy);
    }
    let ticket = state.callers.ticket();
    let policy = read_policy(state, caller).await?;
    Ok(state.callers.put_policy(ticket, caller, policy))
}

async fn read_policy(state: &AppState, caller: &str) -> Result<Policy, IssueError> {
    let mut conn = state.store.acquire().await?;
    let row = callers::get(&mut conn, caller).await?.ok_or_else(|| {
        IssueError::denied(Denial::new(
            Rule::InvalidCredentials,
            "invalid client credentials",
        ))
    })?;
    let groups = groups::list_for_caller(&mut conn, caller).await?;
    let corrupt = |m: String| IssueError::Failed(ServiceError::internal(StoreError::Corrupt(m)));
    let cidrs = parse_all::<Cidr>(row.cidrs).map_err(corrupt)?;
    let grants = groups
        .into_iter()
        .map(|g| {
            Ok(Grant {
                audiences: parse_all::<AudiencePattern>(g.audiences)?,
                cidrs: parse_all::<Cidr>(g.cidrs)?,
                max_lifetime: u32::try_from(g.max_lifetime)
                    .map_err(|_| format!("group {}: max_lifetime", g.name))?,
                allow_subject: g.allow_subject,
                group: g.name,
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(corrupt)?;
    Ok(Policy {
        cidrs,
        rate_limit: row.rate_limit.map(|(per_second, burst)| RateLimit {
            per_second: u32::try_from(per_second).unwrap_or(u32::MAX),
            burst: u32::try_from(burst).unwrap_or(u32::MAX),
        }),
        grants,
    })
}

fn parse_all<T: TryFrom<String, Error = String>>(items: Vec<String>) -> Result<Vec<T>, String> {
    items.into_iter().map(T::try_from).collect()
}
