//! Admin API Bearer authentication: an ASAP token this asapd issued, for
//! its own audience (`tokens.audience`), verified against its own published
//! keys. The algorithm comes from the stored key, never from the token
//! header, so a token cannot choose how it is checked.

use jsonwebtoken::{decode, decode_header, Validation};
use serde::Deserialize;

use crate::domain::group::MAX_TOKEN_LIFETIME_SECS;
use crate::domain::key::KeyState;
use crate::error::{ApiError, ApiResult};
use crate::service::auth::Principal;
use crate::state::AppState;
use crate::store::callers;

/// Clock skew tolerated between replicas, in seconds.
const LEEWAY_SECS: i64 = 5;

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: Option<String>,
    iat: i64,
    exp: i64,
}

fn rejected(why: &str) -> ApiError {
    ApiError::AdminUnauthorized(format!("bearer token rejected: {why}"))
}

/// Verifies `token` and returns the caller it was issued to, with its
/// current groups. The caller must still exist and be enabled.
pub async fn authenticate(state: &AppState, token: &str) -> ApiResult<Principal> {
    let header = decode_header(token).map_err(|_| rejected("not a signed JWT"))?;
    let kid = header.kid.ok_or_else(|| rejected("no kid in its header"))?;
    let key = state
        .keyring
        .snapshot()
        .published
        .get(&kid)
        .cloned()
        .ok_or_else(|| rejected("its kid is not a key published by this asapd"))?;
    // Only keys that have signed can have signed this.
    if !matches!(key.state, KeyState::Active | KeyState::Retired) {
        return Err(rejected("its key has never signed tokens"));
    }
    let audience = &state.settings.tokens.audience;
    let mut validation = Validation::new(key.algorithm.to_jwt());
    validation.set_audience(&[audience]);
    validation.set_issuer(&[&key.caller]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECS as u64;
    let claims = decode::<Claims>(token, &key.verifier, &validation)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            rejected(match e.kind() {
                K::ExpiredSignature => "expired",
                K::ImmatureSignature => "not valid yet (nbf)",
                K::InvalidAudience => "it is for another audience",
                K::InvalidIssuer => "its issuer does not own its kid",
                K::InvalidAlgorithm => "its alg is not its key's algorithm",
                K::InvalidSignature => "bad signature",
                K::MissingRequiredClaim(_) => "iss, aud, iat or exp is missing",
                _ => "malformed",
            })
        })?
        .claims;
    // ASAP: the kid belongs to the issuer.
    if !kid.starts_with(&format!("{}/", claims.iss)) {
        return Err(rejected("its kid does not start with its issuer"));
    }
    if claims.sub.as_deref().is_some_and(|s| s != claims.iss) {
        return Err(rejected("its subject is not its issuer"));
    }
    let now = state.clock.now();
    if claims.iat > now + LEEWAY_SECS {
        return Err(rejected("issued in the future"));
    }
    if claims.exp - claims.iat > i64::from(MAX_TOKEN_LIFETIME_SECS) {
        return Err(rejected("it lives longer than an hour"));
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
        Some(row) => Err(ApiError::Forbidden(format!(
            "caller {} is disabled",
            row.name
        ))),
        None => Err(rejected("its issuer no longer exists")),
    }
}
