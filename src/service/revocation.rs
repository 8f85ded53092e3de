//! Token revocation (RFC 7009; README, "Introspection and revocation"): by the caller a token was
//! issued to, or by an admin for any jti. A revoked jti is stored until
//! the token's `exp` (plus the leeway checks allow), committed with its
//! `token.revoked` record and a notification that tells every replica
//! (`token:<jti> exp=<exp>`).

use serde_json::json;

use crate::audit::{self, action, AuditEvent, Origin, Outcome};
use crate::clock::rfc3339;
use crate::domain::claims::LEEWAY_SECS;
use crate::domain::group::MAX_TOKEN_LIFETIME_SECS;
use crate::error_chain::Chain;
use crate::revoked;
use crate::service::caller_auth::Principal;
use crate::service::error::{ServiceError, ServiceResult};
use crate::service::token_check;
use crate::state::AppState;
use crate::store::{changes, revoked_tokens, StoreError};

/// The longest jti asapd accepts to revoke (its own are 24 characters).
const MAX_JTI_LEN: usize = 255;

/// What `POST /oauth2/revoke` did with a presented token.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    /// Its jti is revoked now.
    Revoked,
    /// Not a token asapd would accept (unknown, invalid, expired, already
    /// revoked): there is nothing to revoke, and RFC 7009 §2.2 answers 200.
    NotActive,
    /// A valid token of another caller: left alone, and refused.
    NotItsCaller,
}

/// RFC 7009 §2.1: the token's own caller (its `iss`) may revoke it; so may
/// an admin, who may revoke any jti anyway.
pub async fn revoke_presented(
    state: &AppState,
    origin: &Origin,
    caller: &Principal,
    token: &str,
) -> ServiceResult<Presented> {
    let Ok(checked) = token_check::check(state, token).await else {
        return Ok(Presented::NotActive);
    };
    let claims = checked.claims;
    let detail = json!({
        "endpoint": "/oauth2/revoke",
        "issuer": claims.iss,
        "kid": checked.kid,
        "expires_at": rfc3339(claims.exp),
    });
    let event = AuditEvent::new(
        origin,
        state.clock.now_ms(),
        action::TOKEN_REVOKED,
        Outcome::Success,
    )
    .target(format!("jti:{}", claims.jti));
    if claims.iss != caller.name && !caller.is_admin() {
        let refused = AuditEvent {
            outcome: Outcome::Denied,
            ..event
        }
        .detail(detail);
        // The refusal stands whether or not its record is written.
        if let Err(e) = state.audit.record(refused).await {
            tracing::warn!(error = %Chain(&e), "a refused token.revoked could not be audited");
        }
        return Ok(Presented::NotItsCaller);
    }
    store(state, event.detail(detail), &claims.jti, claims.exp).await?;
    Ok(Presented::Revoked)
}

/// Where the kept expiry of an admin revocation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirySource {
    /// The request's `expires_at`.
    Request,
    /// The `token.issued` audit record of the jti.
    Audit,
    /// Neither: kept as long as any token can live.
    MaxLifetime,
}

impl ExpirySource {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpirySource::Request => "request",
            ExpirySource::Audit => "audit",
            ExpirySource::MaxLifetime => "max_lifetime",
        }
    }
}

/// An admin revocation of `jti`, with the token's `exp` if the admin knows
/// it. Returns the `exp` the jti is kept until, and where it came from.
pub async fn revoke_jti(
    state: &AppState,
    origin: &Origin,
    jti: &str,
    expires_at: Option<i64>,
) -> ServiceResult<(i64, ExpirySource)> {
    check_jti(jti)?;
    let now = state.clock.now();
    // No token asapd issued lives past this: keeping a jti longer is moot.
    let latest = now + i64::from(MAX_TOKEN_LIFETIME_SECS) + LEEWAY_SECS;
    let issued = issued_expiry(state, jti, now).await?;
    // A jti kept for less than its token lives would make the token valid
    // again: an earlier `expires_at` than the token's own gives way.
    let (exp, source) = match (expires_at.map(|exp| exp.min(latest)), issued) {
        (Some(given), Some(exp)) if exp > given => (exp, ExpirySource::Audit),
        (Some(given), _) => (given, ExpirySource::Request),
        (None, Some(exp)) => (exp, ExpirySource::Audit),
        (None, None) => (
            now + i64::from(MAX_TOKEN_LIFETIME_SECS),
            ExpirySource::MaxLifetime,
        ),
    };
    let event = AuditEvent::new(
        origin,
        state.clock.now_ms(),
        action::TOKEN_REVOKED,
        Outcome::Success,
    )
    .target(format!("jti:{jti}"))
    .detail(json!({
        "endpoint": "/v1/admin/tokens/revoke",
        "expires_at": rfc3339(exp),
        "expiry_from": source.as_str(),
    }));
    store(state, event, jti, exp).await?;
    Ok((exp, source))
}

fn check_jti(jti: &str) -> ServiceResult<()> {
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(ServiceError::bad_field(
            "jti",
            format!("must be 1 to {MAX_JTI_LEN} characters"),
        ));
    }
    if !jti.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::bad_field(
            "jti",
            "must be printable ASCII without spaces, as asapd's jtis are",
        ));
    }
    Ok(())
}

/// The `exp` of the token with `jti`, from its `token.issued` record. Only
/// records of the last hour are looked at: older tokens have expired.
async fn issued_expiry(state: &AppState, jti: &str, now: i64) -> ServiceResult<Option<i64>> {
    let since = now - i64::from(MAX_TOKEN_LIFETIME_SECS) - LEEWAY_SECS;
    let mut conn = state.store.acquire().await?;
    Ok(revoked_tokens::issued_expiry(&mut conn, jti, since * 1000).await?)
}

/// Stores the revocation with its record in one transaction, then puts the
/// jti in this replica's set at once. The others hear the jti with its
/// `exp` and add it to theirs, without reading the table.
async fn store(state: &AppState, event: AuditEvent, jti: &str, exp: i64) -> ServiceResult<()> {
    let mut tx = state.store.begin().await?;
    revoked_tokens::insert(&mut tx, jti, exp).await?;
    audit::record_in(&mut tx, event).await?;
    changes::announce(&mut tx, &revoked::notification(jti, exp)).await?;
    tx.commit().await.map_err(StoreError::from)?;
    state.revoked.insert(jti, exp);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jtis_are_printable_ascii_of_bounded_length() {
        assert!(check_jti("kJ3-x_Q9aaaaaaaaaaaaaaaa").is_ok());
        assert!(check_jti("").is_err());
        assert!(check_jti("a b").is_err());
        assert!(check_jti("é").is_err());
        assert!(check_jti(&"x".repeat(256)).is_err());
    }
}
