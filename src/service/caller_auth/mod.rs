//! Who a caller is and whether it may make one more request:
//! authentication by client secret (`secret`: failed attempts limited per
//! source IP and audited) and the caller's allowance (its rate limit).
//! Issuing, introspection, revocation and the admin API all use it.

use crate::audit::Origin;
use crate::config::RateLimitScope;
use crate::domain::caller::RateLimit;
use crate::domain::denial::{Denial, Rule};
use crate::ratelimit::retry_after_secs;
use crate::service::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::store::Backend;

mod error;
mod policy;
pub mod secret;

pub use error::{BodyError, IssueError};
pub use policy::load_policy;
pub use secret::Principal;

/// Where the request came in; recorded in audit details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Tokens,
    OAuth2,
    Introspect,
    Revoke,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Tokens => "/v1/tokens",
            Endpoint::OAuth2 => "/oauth2/token",
            Endpoint::Introspect => "/oauth2/introspect",
            Endpoint::Revoke => "/oauth2/revoke",
        }
    }
}

/// `client_id:client_secret` as presented. The secret never reaches a log.
pub struct ClientCredentials {
    pub name: String,
    pub secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Authenticates an OAuth2 caller of `endpoint` (failed attempts limited
/// per source IP and audited, as for issuing), refuses a disabled one and
/// takes one request from its rate limit: the same allowance as issuing.
pub async fn admit(
    state: &AppState,
    origin: &Origin,
    endpoint: Endpoint,
    credentials: Option<ClientCredentials>,
) -> Result<Principal, IssueError> {
    let caller = authenticate(state, origin, endpoint, credentials).await?;
    let name = &caller.principal.name;
    if !caller.enabled {
        return Err(IssueError::denied(Denial::new(
            Rule::CallerDisabled,
            format!("caller {name} is disabled"),
        )));
    }
    let policy = load_policy(state, name).await?;
    allowance(state, name, policy.rate_limit).await?;
    Ok(caller.principal)
}

/// Step 1: the failed-auth limit per source IP, then the secret.
pub async fn authenticate(
    state: &AppState,
    origin: &Origin,
    endpoint: Endpoint,
    credentials: Option<ClientCredentials>,
) -> Result<secret::CheckedSecret, IssueError> {
    if let Some(wait) = secret::blocked(state, origin) {
        let source = origin
            .source_ip
            .map_or_else(|| "this address".to_owned(), |ip| ip.to_string());
        return Err(IssueError::Denied {
            denial: Denial::new(
                Rule::AuthRateLimited,
                format!(
                    "too many failed authentications from {source}; retry after {} s",
                    retry_after_secs(wait)
                ),
            ),
            retry_after: Some(wait),
        });
    }
    let Some(credentials) = credentials else {
        return Err(IssueError::denied(Denial::new(
            Rule::InvalidCredentials,
            "authenticate with HTTP Basic client_id:client_secret",
        )));
    };
    match secret::check_secret(state, &credentials.name, &credentials.secret).await {
        Ok(checked) => Ok(checked),
        Err(ServiceError::Unauthenticated(message)) => {
            let name = Some(credentials.name.as_str());
            secret::failed(state, origin, endpoint.path(), name, "invalid_credentials").await;
            Err(IssueError::denied(Denial::new(
                Rule::InvalidCredentials,
                message,
            )))
        }
        Err(other) => Err(IssueError::Failed(other)),
    }
}

/// Step 4 as a refusal: one request from the caller's rate limit, or
/// `rate_limited` with how long to wait.
pub async fn allowance(
    state: &AppState,
    caller: &str,
    own: Option<RateLimit>,
) -> Result<(), IssueError> {
    let Err(wait) = take_allowance(state, caller, own).await? else {
        return Ok(());
    };
    state
        .metrics
        .rate_limited
        .with_label_values(&["caller"])
        .inc();
    Err(IssueError::Denied {
        denial: Denial::new(
            Rule::RateLimited,
            format!(
                "caller {caller} exceeded its token rate limit; retry after {} s",
                retry_after_secs(wait)
            ),
        ),
        retry_after: Some(wait),
    })
}

/// Takes one request from the caller's rate limit: the fleet's on
/// PostgreSQL (unless `tokens.rate_limit_scope = "replica"`), this
/// process's on SQLite. `Ok(Err(wait))` when it is used up. A limit that
/// cannot be checked (the database is down) refuses with 503 rather than
/// falling back to a per-replica limit.
pub async fn take_allowance(
    state: &AppState,
    caller: &str,
    own: Option<RateLimit>,
) -> ServiceResult<Result<(), std::time::Duration>> {
    let fleet = state.store.backend() == Backend::Postgres
        && state.settings.tokens.rate_limit_scope == RateLimitScope::Fleet;
    if !fleet {
        return Ok(state.limits.check_caller(caller, own));
    }
    let tokens = &state.settings.tokens;
    let quota = own.unwrap_or(RateLimit {
        per_second: tokens.rate_limit_per_second,
        burst: tokens.rate_limit_burst,
    });
    Ok(state
        .fleet_limits
        .take(&state.store, caller, quota, state.clock.now_ms())
        .await?)
}
