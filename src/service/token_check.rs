//! The one check of a token asapd issued: admin Bearer authentication and
//! introspection both use it. It reads the key ring and the in-memory
//! revoked-jti set only; the database is read only for a kid the ring does
//! not hold yet (rate limited, see `KeyRing::find_unloaded`).
//!
//! The algorithm comes from the stored key, never from the token header,
//! so a token cannot choose how it is checked. Times are checked against
//! asapd's clock, not the system's, so every check follows the same
//! (injectable) time.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::crypto::jws::{Jws, JwsError};

use crate::domain::group::MAX_TOKEN_LIFETIME_SECS;
use crate::domain::key::KeyState;
use crate::keyring::PublishedKey;
use crate::state::AppState;

pub use crate::domain::claims::LEEWAY_SECS;

/// `aud`: one audience as a string, several as a list.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Aud {
    One(String),
    Many(Vec<String>),
}

/// By hand rather than `#[serde(untagged)]`, which buffers the value and
/// copies its strings before trying each shape: every introspection reads
/// an `aud`. Accepts exactly what the untagged enum did.
impl<'de> Deserialize<'de> for Aud {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> serde::de::Visitor<'de> for Shape {
            type Value = Aud;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Aud, E> {
                Ok(Aud::One(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Aud, E> {
                Ok(Aud::One(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Aud, A::Error> {
                let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(one) = seq.next_element::<String>()? {
                    all.push(one);
                }
                Ok(Aud::Many(all))
            }
        }
        d.deserialize_any(Shape)
    }
}

impl Aud {
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Aud::One(a) => a == name,
            Aud::Many(all) => all.iter().any(|a| a == name),
        }
    }
}

/// The claims of a token that passed every check.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: Option<String>,
    pub aud: Aud,
    pub exp: i64,
    pub iat: i64,
    pub nbf: Option<i64>,
    pub jti: String,
    /// Atlassian Connect's request binding, when the token carries one.
    pub qsh: Option<String>,
}

/// A token asapd issued, valid now.
#[derive(Debug, Clone)]
pub struct Checked {
    pub kid: String,
    pub claims: Claims,
}

/// Why a token was refused: for logs and audit records, never for the
/// client of an introspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    /// The token's jti, once its signature has been verified: a refused
    /// token that asapd did sign (expired, revoked) can still be named.
    pub jti: Option<String>,
}

fn rejected(reason: &'static str) -> Rejection {
    Rejection { reason, jti: None }
}

/// Checks signature, key, ASAP rules, times and revocation.
pub async fn check(state: &AppState, token: &str) -> Result<Checked, Rejection> {
    check_naming_kid(state, token).await.1
}

/// [`check`], with the header's kid when the token is a well-formed signed
/// JWT (verified or not): lets callers name the token in records without
/// trusting anything else in it. The header is decoded once, and the
/// signature verified with the key ring's parsed key.
pub async fn check_naming_kid(
    state: &AppState,
    token: &str,
) -> (Option<String>, Result<Checked, Rejection>) {
    let Some(jws) = Jws::parse(token) else {
        return (None, Err(rejected("not a signed JWT")));
    };
    let kid = jws.header.kid.clone();
    let checked = match &kid {
        Some(kid) => check_signed(state, &jws, kid).await,
        None => Err(rejected("no kid in its header")),
    };
    (kid, checked)
}

async fn check_signed(state: &AppState, jws: &Jws<'_>, kid: &str) -> Result<Checked, Rejection> {
    let key = published(state, kid)
        .await
        .ok_or(rejected("its kid is not a key published by this asapd"))?;
    // Only keys that have signed can have signed this; revoked and expired
    // keys are no longer published at all.
    if !matches!(key.state, KeyState::Active | KeyState::Retired) {
        return Err(rejected("its key has never signed tokens"));
    }
    let payload = jws.verify(&key.verifier).map_err(|e| {
        rejected(match e {
            JwsError::WrongAlgorithm => "its alg is not its key's algorithm",
            JwsError::BadSignature => "bad signature",
            JwsError::Malformed => "malformed",
        })
    })?;
    // Required claims are the fields `Claims` does not make optional.
    let claims: Claims = serde_json::from_slice(&payload)
        .map_err(|_| rejected("iss, aud, iat, exp or jti is missing or malformed"))?;
    if claims.iss != key.caller {
        return Err(rejected("its issuer does not own its kid"));
    }
    let signed = |reason| Rejection {
        reason,
        jti: Some(claims.jti.clone()),
    };
    asap_rules(kid, &claims, state.clock.now()).map_err(signed)?;
    if state.revoked.contains(&claims.jti) {
        return Err(signed("its jti is revoked"));
    }
    Ok(Checked {
        kid: kid.to_owned(),
        claims,
    })
}

/// The key for `kid`: from the ring, or, for a key another replica has
/// just published, from the database.
async fn published(state: &AppState, kid: &str) -> Option<Arc<PublishedKey>> {
    if let Some(key) = state.keyring.snapshot().published.get(kid) {
        return Some(key.clone());
    }
    match state.keyring.find_unloaded(&state.store, kid).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                kid,
                "looking up an unloaded kid failed"
            );
            None
        }
    }
}

/// ASAP: the kid belongs to the issuer; the token is valid now, was not
/// issued in the future and lives at most an hour.
fn asap_rules(kid: &str, claims: &Claims, now: i64) -> Result<(), &'static str> {
    let owned = kid
        .strip_prefix(claims.iss.as_str())
        .is_some_and(|rest| rest.starts_with('/'));
    if !owned {
        return Err("its kid does not start with its issuer");
    }
    if claims.jti.is_empty() {
        return Err("its jti is empty");
    }
    if claims.exp <= now - LEEWAY_SECS {
        return Err("expired");
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
        return Err("not valid yet (nbf)");
    }
    if claims.iat > now + LEEWAY_SECS {
        return Err("issued in the future");
    }
    if claims.exp - claims.iat > i64::from(MAX_TOKEN_LIFETIME_SECS) {
        return Err("it lives longer than an hour");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iat: i64, exp: i64, nbf: Option<i64>) -> Claims {
        Claims {
            iss: "svc-a".into(),
            sub: None,
            aud: Aud::One("svc-b".into()),
            exp,
            iat,
            nbf,
            jti: "j".into(),
            qsh: None,
        }
    }

    #[test]
    fn asap_time_rules_with_leeway() {
        let ok = |c: &Claims, now| asap_rules("svc-a/k1", c, now);
        assert!(ok(&claims(100, 160, None), 164).is_ok());
        assert_eq!(ok(&claims(100, 160, None), 165), Err("expired"));
        assert!(ok(&claims(100, 160, Some(150)), 145).is_ok());
        assert_eq!(
            ok(&claims(100, 160, Some(150)), 144),
            Err("not valid yet (nbf)")
        );
        assert_eq!(
            ok(&claims(200, 260, None), 194),
            Err("issued in the future")
        );
        assert!(ok(&claims(0, 3601, None), 10).is_err());
        assert!(asap_rules("svc-ab/k1", &claims(100, 160, None), 120).is_err());
    }

    #[test]
    fn aud_is_a_string_or_a_list() {
        let one: Aud = serde_json::from_str(r#""svc-b""#).unwrap();
        let many: Aud = serde_json::from_str(r#"["svc-b","svc-c"]"#).unwrap();
        assert!(one.contains("svc-b") && !one.contains("svc-c"));
        assert!(many.contains("svc-c") && !many.contains("svc-a"));
        let escaped: Aud = serde_json::from_str(r#""svc-\u0062""#).unwrap();
        assert!(escaped.contains("svc-b"));
        assert!(matches!(serde_json::from_str::<Aud>("[]"), Ok(Aud::Many(v)) if v.is_empty()));
        for bad in ["1", "null", "{}", "[1]", r#"["a",null]"#, "true"] {
            assert!(serde_json::from_str::<Aud>(bad).is_err(), "{bad}");
        }
    }
}
