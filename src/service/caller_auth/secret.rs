//! Authenticating callers by name and secret, and the failed-attempt
//! limit every endpoint that takes a secret or a token shares.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde_json::json;

use crate::audit::{action, AuditEvent, Origin, Outcome};
use crate::crypto::secret;
use crate::domain::names::{CallerName, GroupName};
use crate::error_chain::Chain;
use crate::service::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::store::secrets::{self as secret_store, Credentials};

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
pub async fn authenticate(
    state: &AppState,
    name: &str,
    presented: &str,
) -> ServiceResult<Principal> {
    let checked = check_secret(state, name, presented).await?;
    if !checked.enabled {
        return Err(ServiceError::Forbidden(format!(
            "caller {name} is disabled"
        )));
    }
    Ok(checked.principal)
}

/// A caller whose secret matched, enabled or not: token issuing checks
/// the enabled flag as its own, audited step (step 3 of docs/ARCHITECTURE.md, "The path of a token request").
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
) -> ServiceResult<CheckedSecret> {
    let presented_hash = secret::hash(presented);
    // A name outside the caller grammar (a NUL, say) names no caller: the
    // same answer as an unknown one, and the database never sees it.
    if CallerName::parse(name).is_err() {
        let _ = secret::matches(&presented_hash, &[0u8; 32]);
        return Err(invalid_credentials());
    }
    let load = || async {
        let ticket = state.callers.ticket();
        let mut conn = state.store.acquire().await?;
        ServiceResult::Ok(
            secret_store::credentials(&mut conn, name)
                .await?
                .map(|c| state.callers.put_credentials(ticket, name, c)),
        )
    };
    let matches = |credentials: &Credentials| {
        credentials.hashes.iter().fold(false, |acc, stored| {
            acc | secret::matches(&presented_hash, stored)
        })
    };
    let credentials = match state.callers.credentials(name) {
        // A secret added since the entry was cached (through another
        // replica, or `asapd admin reset-secret`) must work at once: a
        // mismatch re-reads the database. Failures are rate limited per
        // source IP, which bounds what this costs.
        Some(cached) if !matches(&cached) => load().await?,
        Some(cached) => Some(cached),
        None => load().await?,
    };
    let Some(credentials) = credentials else {
        let _ = secret::matches(&presented_hash, &[0u8; 32]);
        return Err(invalid_credentials());
    };
    if !matches(&credentials) {
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

pub fn invalid_credentials() -> ServiceError {
    ServiceError::Unauthenticated("invalid client credentials".into())
}

/// Failed authentications are limited per source IP (step 1 of docs/ARCHITECTURE.md, "The path of a token request") on
/// every endpoint that takes a secret or a token: requests without a known
/// address share one bucket.
fn limit_key(ip: Option<IpAddr>) -> IpAddr {
    ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// How long the request's source must wait before it may authenticate
/// again, if it is blocked. Not audited one by one, since a flood of these
/// would flood the log: the failure that started the block was audited.
pub fn blocked(state: &AppState, origin: &Origin) -> Option<Duration> {
    let wait = state.limits.auth_blocked(limit_key(origin.source_ip))?;
    state
        .metrics
        .rate_limited
        .with_label_values(&["failed_auth"])
        .inc();
    Some(wait)
}

/// The target of an `auth.failed` record: `caller:<name>` for a caller that
/// exists, so its history shows attacks on it. Anything else is recorded
/// as a keyed digest (`unknown-caller:<hex>`), as Vault's audit log does:
/// what a client sends as its name may be its secret, typed in the wrong
/// field, and must not be stored.
async fn failed_login_target(state: &AppState, name: &str) -> String {
    let exists = CallerName::parse(name).is_ok()
        && match state.callers.credentials(name) {
            Some(_) => true,
            None => match state.store.acquire().await {
                Ok(mut conn) => matches!(
                    secret_store::credentials(&mut conn, name).await,
                    Ok(Some(_))
                ),
                Err(_) => false,
            },
        };
    if exists {
        format!("caller:{name}")
    } else {
        format!(
            "unknown-caller:{}",
            state.keyring.master_key().audit_digest(name)
        )
    }
}

/// Counts a failed authentication against its source IP and audits it as
/// `auth.failed` (`caller:<presented name>` as target, never the secret). Returns
/// how long the source is now blocked, if this failure used up its
/// allowance.
pub async fn failed(
    state: &AppState,
    origin: &Origin,
    endpoint: &str,
    presented_name: Option<&str>,
    reason: &str,
) -> Option<Duration> {
    failed_with(state, origin, endpoint, presented_name, reason, None).await
}

/// [`failed`], with what a presented token claimed (`iss`, `sub`, `jti`:
/// never the token) in the record's `presented` detail.
pub async fn failed_with(
    state: &AppState,
    origin: &Origin,
    endpoint: &str,
    presented_name: Option<&str>,
    reason: &str,
    presented: Option<serde_json::Value>,
) -> Option<Duration> {
    state.metrics.auth_failures.inc();
    let blocked = state.limits.auth_failed(limit_key(origin.source_ip));
    let mut detail = json!({
        "endpoint": endpoint,
        "reason": reason,
        "ip_blocked_secs": blocked.map(crate::ratelimit::retry_after_secs),
    });
    if let Some(presented) = presented {
        detail["presented"] = presented;
    }
    let mut event = AuditEvent::new(
        &origin.as_actor("anonymous"),
        state.clock.now_ms(),
        action::AUTH_FAILED,
        Outcome::Denied,
    )
    .detail(detail);
    if let Some(name) = presented_name {
        event = event.target(failed_login_target(state, name).await);
    }
    // The refusal stands whether or not its record lands: a failed write
    // must not turn a wrong secret into a 503 an attacker can provoke.
    if let Err(e) = state.audit.record(event).await {
        tracing::warn!(error = %Chain(&e), "auth.failed could not be audited");
    }
    blocked
}
