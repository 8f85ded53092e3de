//! The offline check of a presented token against a trusted issuer: an
//! asymmetric signature by one of the issuer's cached keys, then `iss`,
//! `aud`, `exp`, `nbf`, `iat` and the token's age.

use serde_json::{Map, Value};

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::keys::{Cached, Context, IssuerKeys};
use super::{FederationError, TrustedIssuer, Verified};
use crate::audit::event::truncate;
use crate::crypto::jws::Jws;
use crate::domain::algorithm::Algorithm;

fn rejected(reason: impl Into<String>) -> FederationError {
    FederationError::Rejected(reason.into())
}

pub(super) async fn verify(
    keys: &IssuerKeys,
    token: &str,
    cx: &Context<'_>,
) -> Result<Verified, FederationError> {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let seen = keys.fresh(cx.clock.now_ms());
    if let Some(claims) = seen.and_then(|set| set.verified(&digest)) {
        return checked(keys, claims, cx);
    }
    let (cached, claims) = verify_signature(keys, token, cx).await?;
    let claims = Arc::new(claims);
    cached.remember(digest, claims.clone());
    checked(keys, claims, cx)
}

/// The claims of a token whose signature verified, if they hold now.
fn checked(
    keys: &IssuerKeys,
    claims: Arc<Map<String, Value>>,
    cx: &Context<'_>,
) -> Result<Verified, FederationError> {
    let subject = check_claims(
        &keys.config,
        &claims,
        cx.clock.now(),
        cx.settings.leeway_secs,
    )?;
    Ok(Verified {
        issuer: keys.config.name.clone(),
        subject,
        claims,
    })
}

/// The signature, under an asymmetric `alg` and a key of the issuer's set
/// that fits it; the set it verified under and the claims.
async fn verify_signature(
    keys: &IssuerKeys,
    token: &str,
    cx: &Context<'_>,
) -> Result<(Arc<Cached>, Map<String, Value>), FederationError> {
    let name = &keys.config.name;
    let jws = Jws::parse(token).ok_or_else(|| {
        rejected("the token is not a compact JWS with a valid header (alg none is refused)")
    })?;
    let alg = Algorithm::ALL
        .into_iter()
        .find(|a| a.to_jwt() == jws.header.alg)
        .ok_or_else(|| {
            rejected(format!(
                "alg {:?} is refused: only asymmetric RS*, PS* and ES* signatures are accepted",
                jws.header.alg
            ))
        })?;
    let kid = jws.header.kid.as_deref();
    let cached = keys.keys_for(kid, cx).await?;
    if !cached.set.has(kid) {
        return Err(rejected(format!(
            "trusted issuer {name} has no key with kid {:?}, even after refetching its keys",
            kid.map(|k| truncate(k, 100))
        )));
    }
    let payload = cached
        .set
        .candidates(kid)
        .filter_map(|key| key.verifier(alg))
        .find_map(|verifier| jws.verify(verifier).ok())
        .ok_or_else(|| {
            rejected(format!(
                "the signature does not verify under {alg} with trusted issuer {name}'s key"
            ))
        })?;
    let claims: Map<String, Value> = serde_json::from_slice(&payload)
        .map_err(|_| rejected("the token's claims are not a JSON object"))?;
    Ok((cached, claims))
}

/// `iss`, `aud`, `exp`, `nbf`, `iat` and age, with `leeway` seconds of
/// clock skew; returns the `sub`.
pub(super) fn check_claims(
    issuer: &TrustedIssuer,
    claims: &Map<String, Value>,
    now: i64,
    leeway: i64,
) -> Result<String, FederationError> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(rejected("iss does not match the trusted issuer exactly"));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences
        .iter()
        .any(|a| issuer.audiences.iter().any(|ok| ok == a))
    {
        return Err(rejected(format!(
            "aud names none of trusted issuer {}'s audiences ({})",
            issuer.name,
            issuer.audiences.join(", ")
        )));
    }
    let time = |name: &str| claims.get(name).and_then(numeric_date);
    let exp = time("exp").ok_or_else(|| rejected("the token has no numeric exp"))?;
    if now > exp.saturating_add(leeway) {
        return Err(rejected("the token has expired (exp)"));
    }
    if time("nbf").is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(rejected("the token is not valid yet (nbf)"));
    }
    let iat = time("iat").ok_or_else(|| rejected("the token has no numeric iat"))?;
    if iat > now.saturating_add(leeway) {
        return Err(rejected("the token was issued in the future (iat)"));
    }
    if now.saturating_sub(iat) > issuer.max_token_age_secs {
        return Err(rejected(format!(
            "the token is older than trusted issuer {}'s max_token_age_secs ({})",
            issuer.name, issuer.max_token_age_secs
        )));
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() => Ok(sub.to_owned()),
        _ => Err(rejected("the token has no sub")),
    }
}

/// RFC 7519 NumericDate: seconds, possibly with a fraction (dropped).
fn numeric_date(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issuer() -> TrustedIssuer {
        TrustedIssuer {
            name: "k8s".into(),
            issuer: "https://k8s".into(),
            jwks_uri: None,
            ca_pem: None,
            audiences: vec!["asapd".into()],
            max_token_age_secs: 3600,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn check(claims: Value, now: i64) -> Result<String, String> {
        let claims = claims.as_object().unwrap().clone();
        check_claims(&issuer(), &claims, now, 30).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn times_are_checked_with_leeway() {
        let ok = json!({"iss": "https://k8s", "aud": ["x", "asapd"], "sub": "s", "iat": 1000, "exp": 2000});
        assert_eq!(check(ok.clone(), 1500).unwrap(), "s");
        assert!(check(ok.clone(), 2030).is_ok());
        assert!(check(ok.clone(), 2031).unwrap_err().contains("expired"));
        assert!(check(ok.clone(), 969).unwrap_err().contains("future"));
        let mut nbf = ok.clone();
        nbf["nbf"] = json!(1200);
        assert!(check(nbf, 1100).unwrap_err().contains("not valid yet"));
        let mut old = ok;
        old["exp"] = json!(100_000);
        assert!(check(old, 1000 + 3601).unwrap_err().contains("older"));
    }

    #[test]
    fn iss_and_aud_must_match() {
        let wrong_aud =
            json!({"iss": "https://k8s", "aud": "other", "sub": "s", "iat": 1, "exp": 2});
        assert!(check(wrong_aud, 1).unwrap_err().contains("aud"));
        let wrong_iss =
            json!({"iss": "https://k8s/", "aud": "asapd", "sub": "s", "iat": 1, "exp": 2});
        assert!(check(wrong_iss, 1).unwrap_err().contains("iss"));
        let no_sub = json!({"iss": "https://k8s", "aud": "asapd", "iat": 1, "exp": 2});
        assert!(check(no_sub, 1).unwrap_err().contains("sub"));
    }
}
