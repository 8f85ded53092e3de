//! Key-bound callers (RFC 7523 `private_key_jwt`): an assertion signed with
//! a key the caller registered (`service::client_keys`).
//!
//! The caller's keys are read from the database on every assertion, as
//! the jti must be written there anyway: a key deleted on one replica is
//! refused on every other as soon as the deletion commits. The algorithm
//! must be asymmetric and fit the key; the header's `kid`, when it is a
//! key's id, picks that key, otherwise each of the caller's keys (at most
//! `MAX_CLIENT_KEYS_PER_CALLER`) is tried.

use serde::Deserialize;

use super::jwt::{JwtError, Peeked};
use super::secret::Principal;
use super::{AuthMethod, Authenticated, PresentedJwt};
use crate::crypto::jws::{Jws, JwsError, JwsVerifier};
use crate::crypto::keypair::KeyFamily;
use crate::domain::algorithm::Algorithm;
use crate::domain::names::CallerName;
use crate::service::error::ServiceResult;
use crate::service::token_check::Aud;
use crate::state::AppState;
use crate::store::client_keys::{self, ClientKeyRow};
use crate::store::secrets as secret_store;

/// Clock skew tolerated between a caller and asapd, for `exp`, `nbf`,
/// `iat` and the bound above.
pub const ASSERTION_LEEWAY_SECS: i64 = 30;
/// Longest `jti` kept: an assertion's id, not a place to store data.
const MAX_JTI_LEN: usize = 256;

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Aud>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
}

pub(super) async fn authenticate(
    state: &AppState,
    jwt: &PresentedJwt,
    iss: &str,
) -> Result<Authenticated, JwtError> {
    let nobody = || {
        JwtError::rejected(format!(
            "{iss} is neither a trusted issuer nor a caller with client keys"
        ))
    };
    if CallerName::parse(iss).is_err() {
        return Err(nobody());
    }
    let Some(jws) = Jws::parse(&jwt.token) else {
        return Err(JwtError::rejected(
            "the assertion is not a signed JWT with an RS, PS or ES alg",
        ));
    };
    let mut conn = state.store.acquire().await.map_err(to_failed)?;
    let keys = client_keys::list(&mut conn, iss).await.map_err(to_failed)?;
    if keys.is_empty() {
        return Err(nobody());
    }
    let (key, payload) = verify(&jws, &keys)?;
    let claims: AssertionClaims = serde_json::from_slice(&payload)
        .map_err(|_| JwtError::rejected("the assertion's claims are malformed"))?;
    let (jti, exp) = check_claims(state, iss, &claims)?;
    let keep_until = exp + ASSERTION_LEEWAY_SECS;
    let fresh = client_keys::use_jti(&mut conn, iss, jti, keep_until, state.clock.now())
        .await
        .map_err(to_failed)?;
    if !fresh {
        return Err(JwtError::rejected(
            "the assertion's jti was used already: an assertion is accepted once",
        ));
    }
    let (principal, enabled) = principal(state, &mut conn, iss).await?;
    Ok(Authenticated {
        principal,
        enabled,
        method: AuthMethod::ClientKey { id: key.id.clone() },
        presented: Some(Peeked {
            iss: claims.iss,
            sub: claims.sub,
            jti: claims.jti,
        }),
    })
}

fn to_failed(e: impl Into<crate::service::error::ServiceError>) -> JwtError {
    JwtError::Failed(e.into())
}

/// The key that signed `jws`, and the payload it verified.
fn verify<'k>(
    jws: &Jws<'_>,
    keys: &'k [ClientKeyRow],
) -> Result<(&'k ClientKeyRow, Vec<u8>), JwtError> {
    let Some(algorithm) = Algorithm::ALL
        .into_iter()
        .find(|a| a.to_jwt() == jws.header.alg)
    else {
        return Err(JwtError::rejected(format!(
            "alg {:?} is not allowed: sign the assertion with RS, PS or ES",
            jws.header.alg
        )));
    };
    let named = jws
        .header
        .kid
        .as_deref()
        .and_then(|kid| keys.iter().find(|k| k.id == kid));
    let candidates: Vec<&ClientKeyRow> = match named {
        Some(key) => vec![key],
        None => keys.iter().collect(),
    };
    let mut fitting = false;
    for key in candidates {
        let fits = KeyFamily::from_name(&key.family).is_some_and(|f| f.signs(algorithm));
        if !fits {
            continue;
        }
        fitting = true;
        let Ok(verifier) = JwsVerifier::from_spki(algorithm, &key.spki_der) else {
            tracing::warn!(
                caller = key.caller,
                id = key.id,
                "a stored client key does not parse"
            );
            continue;
        };
        match jws.verify(&verifier) {
            Ok(payload) => return Ok((key, payload)),
            Err(JwsError::Malformed) => {
                return Err(JwtError::rejected(
                    "the assertion is not unpadded base64url",
                ))
            }
            Err(_) => {}
        }
    }
    Err(JwtError::rejected(if fitting {
        "the assertion's signature matches none of the caller's client keys".to_owned()
    } else {
        format!("the caller has no client key that signs with {algorithm}")
    }))
}

/// RFC 7523 §3: who, for whom, until when, and a jti to accept once.
/// Returns the jti and `exp`.
fn check_claims<'c>(
    state: &AppState,
    iss: &str,
    claims: &'c AssertionClaims,
) -> Result<(&'c str, i64), JwtError> {
    let reject = |m: String| Err(JwtError::rejected(m));
    if claims.iss.as_deref() != Some(iss) {
        return reject("the assertion's iss is malformed".into());
    }
    // ASAP: an absent sub means the issuer.
    if claims.sub.as_deref().is_some_and(|sub| sub != iss) {
        return reject(format!("the assertion's sub must equal its iss ({iss})"));
    }
    let accepted = accepted_audiences(state);
    match &claims.aud {
        Some(aud) if accepted.iter().any(|a| aud.contains(a)) => {}
        _ => {
            return reject(format!(
                "the assertion's aud must name asapd: one of {}",
                accepted.join(", ")
            ))
        }
    }
    let now = state.clock.now();
    let Some(exp) = claims.exp else {
        return reject("the assertion has no exp".into());
    };
    if exp <= now - ASSERTION_LEEWAY_SECS {
        return reject("the assertion has expired".into());
    }
    // RFC 7523 §3 leaves the bound to the server: `tokens.client_assertion_max_secs`.
    let ahead = i64::from(state.settings.tokens.client_assertion_max_secs);
    if exp > now + ahead + ASSERTION_LEEWAY_SECS {
        return reject(format!(
            "the assertion's exp is more than {ahead} s ahead (tokens.client_assertion_max_secs)"
        ));
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now + ASSERTION_LEEWAY_SECS)
    {
        return reject("the assertion is not valid yet (nbf)".into());
    }
    if claims
        .iat
        .is_some_and(|iat| iat > now + ASSERTION_LEEWAY_SECS)
    {
        return reject("the assertion was issued in the future (iat)".into());
    }
    match claims.jti.as_deref() {
        Some(jti) if !jti.is_empty() && jti.len() <= MAX_JTI_LEN => Ok((jti, exp)),
        Some(_) => reject(format!(
            "the assertion's jti must be 1 to {MAX_JTI_LEN} bytes"
        )),
        None => reject("the assertion has no jti: one is required, and accepted once".into()),
    }
}

/// What an assertion's `aud` may name: the configured public URL and its
/// token endpoint (when `http.public_url` is set), and `tokens.audience`.
pub fn accepted_audiences(state: &AppState) -> Vec<String> {
    let mut accepted = Vec::with_capacity(3);
    if let Some(base) = state.settings.http.public_base() {
        accepted.push(format!("{base}/oauth2/token"));
        accepted.push(base.to_owned());
    }
    accepted.push(state.settings.tokens.audience.clone());
    accepted
}

/// The caller's groups and enabled flag, from the caller cache or the
/// database.
async fn principal(
    state: &AppState,
    conn: &mut crate::store::Conn,
    name: &str,
) -> Result<(Principal, bool), JwtError> {
    let found = match state.callers.credentials(name) {
        Some(cached) => Some((cached.groups.clone(), cached.enabled)),
        None => load(state, conn, name).await.map_err(JwtError::Failed)?,
    };
    // Deleted between reading its keys and now: its keys went with it.
    let Some((groups, enabled)) = found else {
        return Err(JwtError::rejected(format!("no caller named {name}")));
    };
    Ok((
        Principal {
            name: name.to_owned(),
            groups,
        },
        enabled,
    ))
}

async fn load(
    state: &AppState,
    conn: &mut crate::store::Conn,
    name: &str,
) -> ServiceResult<Option<(Vec<String>, bool)>> {
    let ticket = state.callers.ticket();
    Ok(secret_store::credentials(conn, name)
        .await?
        .map(|c| state.callers.put_credentials(ticket, name, c))
        .map(|c| (c.groups.clone(), c.enabled)))
}
