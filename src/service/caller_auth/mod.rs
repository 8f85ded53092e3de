//! Who a caller is and whether it may make one more request:
//! authentication by client secret (`secret`) or by a signed JWT (`jwt`:
//! a federated workload identity or a client-key assertion), failed
//! attempts limited per source IP and audited either way, and the caller's
//! allowance (its rate limit).
//! Issuing, introspection, revocation and the admin API all use it.

use crate::audit::Origin;
use crate::config::RateLimitScope;
use crate::domain::caller::RateLimit;
use crate::domain::denial::{Denial, Rule};
use crate::ratelimit::retry_after_secs;
use crate::service::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::store::Backend;

mod client_key;
mod error;
mod federated;
pub mod jwt;
mod policy;
pub mod secret;

pub use error::{BodyError, IssueError};
pub use jwt::Peeked;
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

/// How a caller proves who it is.
#[derive(Debug)]
pub enum Credentials {
    /// `client_id:client_secret`.
    Secret(ClientCredentials),
    /// A signed JWT: a workload identity token or a client assertion.
    Jwt(PresentedJwt),
}

/// Where a JWT was presented: the same token is checked the same way
/// wherever it comes in; the place is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentedAs {
    /// `client_assertion` (RFC 7523 §2.2).
    ClientAssertion,
    /// `subject_token` of a token exchange (RFC 8693).
    SubjectToken,
    /// `Authorization: Bearer` on `/v1/tokens`.
    Bearer,
}

/// A JWT as presented. The token never reaches a log or an audit record.
pub struct PresentedJwt {
    pub token: String,
    pub presented_as: PresentedAs,
}

impl std::fmt::Debug for PresentedJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedJwt")
            .field("token", &"<redacted>")
            .field("presented_as", &self.presented_as)
            .finish()
    }
}

/// How an authenticated caller proved who it is, for the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    Secret,
    /// A token of the trusted issuer of this name.
    Federated {
        issuer: String,
    },
    /// An assertion signed with the client key of this id.
    ClientKey {
        id: String,
    },
}

/// A caller whose credentials checked out, enabled or not: issuing checks
/// the enabled flag as its own, audited step.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    pub enabled: bool,
    pub method: AuthMethod,
    /// What the presented token claimed, for JWT methods.
    pub presented: Option<Peeked>,
}

impl Authenticated {
    /// The `auth` detail of the audit record: the method, and the presented
    /// token's `iss`, `sub` and `jti` (never the token).
    pub fn audit(&self) -> serde_json::Value {
        let mut auth = serde_json::json!({ "method": self.method.audit_name() });
        if let Some(presented) = &self.presented {
            auth["presented"] = presented.audit();
        }
        auth
    }
}

/// Authenticates an OAuth2 caller of `endpoint` (failed attempts limited
/// per source IP and audited, as for issuing), refuses a disabled one and
/// takes one request from its rate limit: the same allowance as issuing.
pub async fn admit(
    state: &AppState,
    origin: &Origin,
    endpoint: Endpoint,
    credentials: Option<Credentials>,
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

/// Step 1: the failed-auth limit per source IP, then the credentials.
pub async fn authenticate(
    state: &AppState,
    origin: &Origin,
    endpoint: Endpoint,
    credentials: Option<Credentials>,
) -> Result<Authenticated, IssueError> {
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
    match credentials {
        None => Err(IssueError::denied(Denial::new(
            Rule::InvalidCredentials,
            "authenticate with HTTP Basic client_id:client_secret",
        ))),
        Some(Credentials::Secret(credentials)) => {
            by_secret(state, origin, endpoint, credentials).await
        }
        Some(Credentials::Jwt(jwt)) => by_jwt(state, origin, endpoint, jwt).await,
    }
}

async fn by_secret(
    state: &AppState,
    origin: &Origin,
    endpoint: Endpoint,
    credentials: ClientCredentials,
) -> Result<Authenticated, IssueError> {
    match secret::check_secret(state, &credentials.name, &credentials.secret).await {
        Ok(checked) => Ok(Authenticated {
            principal: checked.principal,
            enabled: checked.enabled,
            method: AuthMethod::Secret,
            presented: None,
        }),
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

/// A refused token is a failed authentication like a wrong secret:
/// audited with what it claimed, and counted against its source.
async fn by_jwt(
    state: &AppState,
    origin: &Origin,
    endpoint: Endpoint,
    jwt: PresentedJwt,
) -> Result<Authenticated, IssueError> {
    let peeked = Peeked::of(&jwt.token).unwrap_or_default();
    match jwt::authenticate(state, &jwt, &peeked).await {
        Ok(found) => Ok(found),
        Err(jwt::JwtError::Rejected { reason }) => {
            let path = endpoint.path();
            let detail = Some(peeked.audit());
            secret::failed_with(state, origin, path, None, "invalid_token", detail).await;
            Err(IssueError::denied(Denial::new(
                Rule::InvalidCredentials,
                reason,
            )))
        }
        Err(jwt::JwtError::Failed(e)) => Err(IssueError::Failed(e)),
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
