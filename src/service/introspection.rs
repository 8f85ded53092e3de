//! Token introspection (RFC 7662, DESIGN §9): whether a token asapd issued
//! is active, for a caller among its audiences. The happy path reads the
//! key ring, the caller cache and the revoked-jti set: no database.
//!
//! Its audit record is handed to the group-commit writer and not awaited:
//! nothing leaves asapd that must be accounted for, so a crash may lose the
//! last records, and when the writer's queue is short of room the record
//! is dropped and counted instead (the README says so).

use serde_json::json;

use crate::audit::event::truncate;
use crate::audit::{action, AuditEvent, Origin, Outcome};
use crate::domain::denial::{Denial, Rule};
use crate::service::auth::Principal;
use crate::service::token_check::{self, Checked, Rejection};
use crate::service::tokens::policy::load_policy;
use crate::service::tokens::{self, ClientCredentials, Endpoint, IssueError};
use crate::state::AppState;

/// Authenticates an OAuth2 caller of `endpoint` (failed attempts limited
/// per source IP and audited, as for issuing), refuses a disabled one and
/// takes one request from its rate limit: the same allowance as issuing.
pub async fn admit(
    state: &AppState,
    origin: &Origin,
    endpoint: Endpoint,
    credentials: Option<ClientCredentials>,
) -> Result<Principal, IssueError> {
    let caller = tokens::authenticate(state, origin, endpoint, credentials).await?;
    let name = &caller.principal.name;
    if !caller.enabled {
        return Err(IssueError::denied(Denial::new(
            Rule::CallerDisabled,
            format!("caller {name} is disabled"),
        )));
    }
    let policy = load_policy(state, name).await?;
    tokens::allowance(state, name, policy.rate_limit).await?;
    Ok(caller.principal)
}

/// What introspection found: `None` is `{"active": false}`.
pub async fn introspect(
    state: &AppState,
    origin: &Origin,
    caller: &str,
    token: &str,
) -> Option<Checked> {
    let (kid, found) = token_check::check_naming_kid(state, token).await;
    let found = found.and_then(|checked| {
        if checked.claims.aud.contains(caller) {
            Ok(checked)
        } else {
            Err(Rejection {
                reason: "the introspecting caller is not among its audiences",
                jti: Some(checked.claims.jti),
            })
        }
    });
    let (jti, reason) = match &found {
        Ok(checked) => (Some(checked.claims.jti.clone()), None),
        Err(r) => (r.jti.clone(), Some(r.reason)),
    };
    let mut event = AuditEvent::new(
        &origin.as_actor(caller),
        state.clock.now_ms(),
        action::TOKEN_INTROSPECTED,
        Outcome::Success,
    )
    .detail(json!({
        "jti": jti,
        "active": found.is_ok(),
        "reason": reason,
        // Unverified when inactive: recorded as sent, shortened.
        "kid": kid.map(|k| truncate(&k, 128)),
    }));
    if let Some(jti) = &jti {
        event = event.target(format!("jti:{jti}"));
    }
    state.audit.record_or_drop(event);
    found.ok()
}
