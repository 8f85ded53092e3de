//! Workload identity federation: a token from a trusted issuer (a
//! Kubernetes service-account token, a GitHub Actions OIDC token, another
//! asapd's ASAP token), verified offline against the issuer's cached keys
//! and bound to exactly one caller.

use super::jwt::{JwtError, Peeked};
use super::secret::Principal;
use super::{AuthMethod, Authenticated, PresentedJwt};
use crate::audit::event::truncate;
use crate::federation::{FederationError, Verified};
use crate::service::error::ServiceError;
use crate::state::AppState;
use crate::store::secrets as secret_store;

/// `Ok(None)`: `iss` is no trusted issuer, so the token is for another
/// method to check.
pub(super) async fn authenticate(
    state: &AppState,
    jwt: &PresentedJwt,
    iss: &str,
) -> Result<Option<Authenticated>, JwtError> {
    let (trust, verified) = match state.federation.verify(&state.store, &jwt.token, iss).await {
        Ok(None) => return Ok(None),
        Ok(Some(found)) => found,
        Err(FederationError::Rejected(reason)) => return Err(JwtError::rejected(reason)),
        Err(FederationError::Unavailable(m)) => {
            return Err(JwtError::Failed(ServiceError::Unavailable(m)))
        }
        Err(FederationError::Store(e)) => return Err(JwtError::Failed(e.into())),
    };
    let callers = trust.callers_for(&verified);
    let caller = match callers.as_slice() {
        [one] => one,
        [] => {
            return Err(JwtError::rejected(format!(
                "no caller is bound to subject {:?} of trusted issuer {} with these claims",
                truncate(&verified.subject, 200),
                verified.issuer
            )))
        }
        many => {
            return Err(JwtError::rejected(format!(
                "subject {:?} of trusted issuer {} is bound to {} callers ({}); a federated \
                 identity must name exactly one",
                truncate(&verified.subject, 200),
                verified.issuer,
                many.len(),
                many.join(", ")
            )))
        }
    };
    let Some((groups, enabled)) = caller_state(state, caller).await? else {
        return Err(JwtError::rejected(format!(
            "caller {caller} no longer exists"
        )));
    };
    Ok(Some(Authenticated {
        principal: Principal {
            name: caller.clone(),
            groups,
        },
        enabled,
        method: AuthMethod::Federated {
            issuer: verified.issuer.clone(),
        },
        presented: Some(presented(&verified)),
    }))
}

/// What the audit records of the token: its `iss`, `sub` and `jti`.
fn presented(verified: &Verified) -> Peeked {
    let text = |name: &str| {
        verified
            .claims
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    Peeked {
        iss: text("iss"),
        sub: text("sub"),
        jti: text("jti"),
    }
}

/// The bound caller's groups and enabled flag, through the caller cache.
async fn caller_state(
    state: &AppState,
    name: &str,
) -> Result<Option<(Vec<String>, bool)>, ServiceError> {
    if let Some(cached) = state.callers.credentials(name) {
        return Ok(Some((cached.groups.clone(), cached.enabled)));
    }
    let ticket = state.callers.ticket();
    let mut conn = state.store.acquire().await?;
    Ok(secret_store::credentials(&mut conn, name)
        .await?
        .map(|c| state.callers.put_credentials(ticket, name, c))
        .map(|c| (c.groups.clone(), c.enabled)))
}
