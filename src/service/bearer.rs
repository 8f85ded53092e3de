//! Admin API Bearer authentication: an ASAP token this asapd issued, for
//! its own audience (`tokens.audience`), checked as every token asapd
//! issued is checked (`token_check`), revocation included.

use crate::service::caller_auth::Principal;
use crate::service::error::{ServiceError, ServiceResult};
use crate::service::token_check::{self, Rejection};
use crate::state::AppState;
use crate::store::callers;

fn rejected(why: &str) -> ServiceError {
    ServiceError::BearerRejected(format!("bearer token rejected: {why}"))
}

/// Verifies `token` and returns the caller it was issued to, with its
/// current groups. The caller must still exist and be enabled.
pub async fn authenticate(state: &AppState, token: &str) -> ServiceResult<Principal> {
    let claims = token_check::check(state, token)
        .await
        .map_err(|r: Rejection| rejected(r.reason))?
        .claims;
    if !claims.aud.contains(&state.settings.tokens.audience) {
        return Err(rejected("it is for another audience"));
    }
    if claims.sub.as_deref().is_some_and(|s| s != claims.iss) {
        return Err(rejected("its subject is not its issuer"));
    }
    let row = {
        let mut conn = state.store.acquire().await?;
        callers::get(&mut conn, &claims.iss).await?
    };
    match row {
        Some(row) if row.enabled => Ok(Principal {
            name: row.name,
            groups: row.groups,
        }),
        Some(row) => Err(ServiceError::Forbidden(format!(
            "caller {} is disabled",
            row.name
        ))),
        None => Err(rejected("its issuer no longer exists")),
    }
}
