//! `asapd verify`: checks a token as an ASAP verifier does (docs/ARCHITECTURE.md,
//! "What verifiers expect"):
//! the key fetched by kid from a key repository, the signature with that
//! key, and the ASAP claim rules. Useful to see why a service refuses a
//! token, or to check a deployment end to end.

use std::collections::HashSet;

use anyhow::{anyhow, bail, Context};
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use serde_json::Value;

use asapd::domain::algorithm::{Algorithm, KeyType};
use asapd::domain::group::MAX_TOKEN_LIFETIME_SECS;
use asapd::domain::kid::Kid;
use asapd::domain::qsh::CanonicalRequest;

/// What the token must satisfy besides its signature.
pub struct Expectations<'a> {
    /// Key repository base URL, ending in `/` (`https://host/v1/keys/`).
    pub repository: &'a str,
    /// The verifier's own name: `aud` must contain it.
    pub audience: &'a str,
    /// Accepted issuers; empty accepts any.
    pub issuers: &'a [String],
    /// Accept `sub` other than `iss` (atlassian-jwt-auth refuses it unless
    /// configured to).
    pub allow_subject: bool,
    /// Seconds of clock skew tolerated (atlassian-jwt-auth: 0 by default).
    pub leeway: u64,
    /// The request the token must be bound to through `qsh`, as a Connect
    /// receiver checks it; `None` ignores `qsh`, as ASAP verifiers do.
    pub request: Option<&'a CanonicalRequest>,
}

/// The claims of a valid token.
pub async fn verify(
    client: &reqwest::Client,
    token: &str,
    expect: &Expectations<'_>,
) -> anyhow::Result<Value> {
    let header = decode_header(token).context("not a signed JWT")?;
    let algorithm = Algorithm::ALL
        .into_iter()
        .find(|a| a.to_jwt() == header.alg)
        .ok_or_else(|| anyhow!("alg {:?} is not an ASAP algorithm", header.alg))?;
    let kid = header.kid.ok_or_else(|| anyhow!("the header has no kid"))?;
    let kid = Kid::parse(&kid).map_err(|e| anyhow!("kid {kid:?}: {}", e.message))?;
    let pem = fetch_key(client, expect.repository, &kid).await?;
    let key = match algorithm.key_type() {
        KeyType::Rsa { .. } => DecodingKey::from_rsa_pem(pem.as_bytes()),
        KeyType::P256 | KeyType::P384 => DecodingKey::from_ec_pem(pem.as_bytes()),
    }
    .with_context(|| format!("the key of {kid} is not a {algorithm} public key"))?;

    let mut validation = Validation::new(header.alg);
    // `aud` is checked once, with the other ASAP rules, below.
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["iss", "aud", "exp", "iat", "jti"]);
    validation.validate_nbf = true;
    validation.leeway = expect.leeway;
    let claims = decode::<Value>(token, &key, &validation)
        .map_err(|e| anyhow!("{}", rejection(&e)))?
        .claims;
    check_asap_claims(&kid, &claims, expect)?;
    Ok(claims)
}

/// Why jsonwebtoken refused the token, in a verifier's words.
fn rejection(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => "bad signature: not signed by the key of its kid".into(),
        K::ExpiredSignature => "expired (exp is past)".into(),
        K::ImmatureSignature => "not valid yet (nbf is in the future)".into(),
        K::MissingRequiredClaim(claim) => format!("the claim {claim} is missing"),
        _ => format!("malformed token: {e}"),
    }
}

/// `GET <repository><kid>`, the kid's `/` literal, as atlassian-jwt-auth's
/// `HTTPSPublicKeyRetriever` does.
async fn fetch_key(
    client: &reqwest::Client,
    repository: &str,
    kid: &Kid,
) -> anyhow::Result<String> {
    let url = format!("{repository}{kid}");
    let res = client
        .get(&url)
        .header("accept", "application/x-pem-file")
        .send()
        .await
        .map_err(|e| super::request_failed(e, format!("GET {url}")))?;
    if !res.status().is_success() {
        bail!(
            "GET {url}: {} (an unknown, revoked or expired key)",
            res.status()
        );
    }
    res.text().await.with_context(|| format!("reading {url}"))
}

/// The ASAP rules jsonwebtoken does not know (docs/ARCHITECTURE.md, "What
/// verifiers expect").
fn check_asap_claims(kid: &Kid, claims: &Value, expect: &Expectations<'_>) -> anyhow::Result<()> {
    let text = |name: &str| claims[name].as_str();
    let iss = text("iss").ok_or_else(|| anyhow!("iss is not a string"))?;
    if kid.caller() != iss {
        bail!("the kid {kid} does not start with the issuer {iss}/");
    }
    if !expect.issuers.is_empty() && !expect.issuers.iter().any(|i| i == iss) {
        bail!("issuer {iss} is not one of the accepted issuers");
    }
    if let Some(sub) = claims.get("sub") {
        let sub = sub.as_str().ok_or_else(|| anyhow!("sub is not a string"))?;
        if sub != iss && !expect.allow_subject {
            bail!("sub {sub} differs from iss {iss} (allow it with --allow-subject)");
        }
    }
    if text("jti").is_none_or(str::is_empty) {
        bail!("jti is missing or empty");
    }
    let number = |name: &str| {
        claims[name]
            .as_i64()
            .ok_or_else(|| anyhow!("{name} is not a whole number"))
    };
    let (iat, exp) = (number("iat")?, number("exp")?);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if iat > now + expect.leeway as i64 {
        bail!("iat is {}s in the future", iat - now);
    }
    if exp - iat > i64::from(MAX_TOKEN_LIFETIME_SECS) {
        bail!(
            "the token lives {}s; ASAP allows at most {MAX_TOKEN_LIFETIME_SECS}s",
            exp - iat
        );
    }
    let audiences: HashSet<&str> = match &claims["aud"] {
        Value::String(a) => [a.as_str()].into(),
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => bail!("aud is neither a string nor a list"),
    };
    if !audiences.contains(expect.audience) {
        bail!("the token is not for {} (aud)", expect.audience);
    }
    if let Some(request) = expect.request {
        check_qsh(claims, request)?;
    }
    Ok(())
}

/// The token is bound to `request`: its `qsh` is the hash of that request.
fn check_qsh(claims: &Value, request: &CanonicalRequest) -> anyhow::Result<()> {
    let Some(qsh) = claims.get("qsh") else {
        bail!("the token has no qsh: it is not bound to a request");
    };
    let qsh = qsh.as_str().ok_or_else(|| anyhow!("qsh is not a string"))?;
    if qsh != request.qsh() {
        bail!(
            "qsh {qsh} is not the hash of this request ({}), so the token was issued for \
             another one",
            request.as_str()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect(allow_subject: bool, issuers: &[String]) -> Expectations<'_> {
        Expectations {
            repository: "https://x/v1/keys/",
            audience: "svc-b",
            issuers,
            allow_subject,
            leeway: 0,
            request: None,
        }
    }

    fn claims() -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json!({"iss": "svc-a", "sub": "svc-a", "aud": ["svc-b"], "jti": "j",
               "iat": now, "exp": now + 60})
    }

    #[test]
    fn asap_rules_beyond_the_signature() {
        let kid = Kid::parse("svc-a/k1").unwrap();
        let ok = claims();
        check_asap_claims(&kid, &ok, &expect(false, &[])).unwrap();

        let foreign = Kid::parse("svc-x/k1").unwrap();
        assert!(check_asap_claims(&foreign, &ok, &expect(false, &[])).is_err());
        let only_c = ["svc-c".to_owned()];
        assert!(check_asap_claims(&kid, &ok, &expect(false, &only_c)).is_err());

        let mut other_sub = claims();
        other_sub["sub"] = json!("user-1");
        assert!(check_asap_claims(&kid, &other_sub, &expect(false, &[])).is_err());
        check_asap_claims(&kid, &other_sub, &expect(true, &[])).unwrap();

        let mut long = claims();
        long["exp"] = json!(long["iat"].as_i64().unwrap() + 3601);
        assert!(check_asap_claims(&kid, &long, &expect(false, &[])).is_err());

        let mut future = claims();
        future["iat"] = json!(future["iat"].as_i64().unwrap() + 30);
        assert!(check_asap_claims(&kid, &future, &expect(false, &[])).is_err());

        let mut elsewhere = claims();
        elsewhere["aud"] = json!("svc-z");
        assert!(check_asap_claims(&kid, &elsewhere, &expect(false, &[])).is_err());

        let request = CanonicalRequest::parse("GET", "/a?b=1").unwrap();
        let bound = Expectations {
            request: Some(&request),
            ..expect(false, &[])
        };
        assert!(check_asap_claims(&kid, &ok, &bound).is_err(), "no qsh");
        let mut with_qsh = claims();
        with_qsh["qsh"] = json!(request.qsh());
        check_asap_claims(&kid, &with_qsh, &bound).unwrap();
        with_qsh["qsh"] = json!(CanonicalRequest::parse("GET", "/a?b=2").unwrap().qsh());
        assert!(
            check_asap_claims(&kid, &with_qsh, &bound).is_err(),
            "other request"
        );

        let mut no_jti = claims();
        no_jti["jti"] = json!("");
        assert!(check_asap_claims(&kid, &no_jti, &expect(false, &[])).is_err());
    }
}
