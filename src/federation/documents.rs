//! The documents a trusted issuer serves, parsed from outside input: its
//! OIDC Discovery document, its JWKS, and the `Cache-Control` of the
//! JWKS response. Public so the property tests can feed them anything.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs8::EncodePublicKey;
use serde::Deserialize;
use serde_json::Value;

use crate::crypto::{JwsVerifier, PublicKey};
use crate::domain::algorithm::Algorithm;
use crate::domain::federation::check_https_url;

/// Keys read from one JWKS, at most: a bigger set is not an issuer's.
pub const MAX_KEYS: usize = 100;

/// A key of the set, parsed once, with a verifier for each algorithm it
/// may be used with (its `alg` if it names one).
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub verifiers: Vec<(Algorithm, JwsVerifier)>,
}

impl VerifyingKey {
    pub fn verifier(&self, alg: Algorithm) -> Option<&JwsVerifier> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }
}

/// An issuer's usable signing keys.
pub struct KeySet {
    pub keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// The keys a token with this `kid` may be signed with: the one of that
    /// kid or, for a token without one, every key.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a VerifyingKey> {
        self.keys
            .iter()
            .filter(move |k| kid.is_none() || k.kid.as_deref() == kid)
    }

    pub fn has(&self, kid: Option<&str>) -> bool {
        self.candidates(kid).next().is_some()
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

/// The `jwks_uri` of an OIDC Discovery document, which must name `issuer`
/// exactly (OpenID Connect Discovery §4.3) and an https URL.
pub fn parse_discovery(bytes: &[u8], issuer: &str) -> Result<String, String> {
    let doc: Discovery = serde_json::from_slice(bytes)
        .map_err(|e| format!("the discovery document is not JSON of the expected shape: {e}"))?;
    if doc.issuer.as_deref() != Some(issuer) {
        return Err(format!(
            "the discovery document names issuer {:?}, not {issuer:?}",
            doc.issuer
                .as_deref()
                .map(|s| crate::audit::event::truncate(s, 200))
        ));
    }
    let uri = doc
        .jwks_uri
        .ok_or("the discovery document has no jwks_uri")?;
    check_https_url(&uri).map_err(|m| format!("the discovery document's jwks_uri: {m}"))?;
    Ok(uri)
}

/// The usable keys of a JWKS (RFC 7517 §5). Keys asapd cannot use (other
/// types or curves, `use` other than `sig`, symmetric keys, malformed
/// members) are skipped so one odd key does not take the issuer down; a
/// set with no usable key at all is an error.
pub fn parse_jwks(bytes: &[u8]) -> Result<KeySet, String> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no keys array")?;
    let keys: Vec<VerifyingKey> = keys.iter().take(MAX_KEYS).filter_map(parse_jwk).collect();
    if keys.is_empty() {
        return Err("the JWKS holds no usable signing key (RSA, or EC P-256/P-384)".into());
    }
    Ok(KeySet { keys })
}

fn parse_jwk(jwk: &Value) -> Option<VerifyingKey> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let named: Option<Algorithm> = match jwk.get("alg") {
        None => None,
        Some(alg) => Some(alg.as_str()?.parse().ok()?),
    };
    let (spki, allowed): (Vec<u8>, &[Algorithm]) = match text("kty")? {
        "RSA" => (rsa_spki(text("n")?, text("e")?)?, &RSA_ALGORITHMS),
        "EC" => match text("crv")? {
            "P-256" => (p256_spki(text("x")?, text("y")?)?, &[Algorithm::ES256]),
            "P-384" => (p384_spki(text("x")?, text("y")?)?, &[Algorithm::ES384]),
            _ => return None,
        },
        _ => return None,
    };
    // A key that names its algorithm is used with that one only, and only
    // if it suits the key type (RFC 7518 §6: `alg` must match `kty`).
    let algorithms: Vec<Algorithm> = match named {
        Some(alg) if allowed.contains(&alg) => vec![alg],
        Some(_) => return None,
        None => allowed.to_vec(),
    };
    let verifiers: Vec<(Algorithm, JwsVerifier)> = algorithms
        .into_iter()
        .filter_map(|alg| {
            let public = PublicKey::from_spki_der(alg, spki.clone()).ok()?;
            Some((alg, JwsVerifier::new(alg, &public).ok()?))
        })
        .collect();
    if verifiers.is_empty() {
        return None;
    }
    Some(VerifyingKey {
        kid: text("kid").map(str::to_owned),
        verifiers,
    })
}

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

fn b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

fn rsa_spki(n: &str, e: &str) -> Option<Vec<u8>> {
    let n = rsa::BigUint::from_bytes_be(&b64(n)?);
    let e = rsa::BigUint::from_bytes_be(&b64(e)?);
    let key = rsa::RsaPublicKey::new(n, e).ok()?;
    Some(key.to_public_key_der().ok()?.into_vec())
}

/// SEC1 uncompressed point `04 || x || y`.
fn ec_point(x: &str, y: &str) -> Option<Vec<u8>> {
    let (x, y) = (b64(x)?, b64(y)?);
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Some(point)
}

fn p256_spki(x: &str, y: &str) -> Option<Vec<u8>> {
    let key = p256::PublicKey::from_sec1_bytes(&ec_point(x, y)?).ok()?;
    Some(key.to_public_key_der().ok()?.into_vec())
}

fn p384_spki(x: &str, y: &str) -> Option<Vec<u8>> {
    let key = p384::PublicKey::from_sec1_bytes(&ec_point(x, y)?).ok()?;
    Some(key.to_public_key_der().ok()?.into_vec())
}

/// `max-age` of a `Cache-Control` value; `no-store`/`no-cache` read as 0
/// (the caller's lower bound applies). `None` when it says nothing.
pub fn max_age(cache_control: &str) -> Option<u64> {
    let mut found = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "no-store" | "no-cache" => return Some(0),
            "max-age" => {
                found = value.trim().trim_matches('"').parse::<u64>().ok().or(found);
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(max_age("public, max-age=3600"), Some(3600));
        assert_eq!(max_age("max-age=\"60\""), Some(60));
        assert_eq!(max_age("no-store, max-age=60"), Some(0));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=-1"), None);
    }

    #[test]
    fn discovery_names_the_issuer_and_an_https_jwks_uri() {
        let doc = br#"{"issuer":"https://i","jwks_uri":"https://i/keys"}"#;
        assert_eq!(parse_discovery(doc, "https://i").unwrap(), "https://i/keys");
        assert!(parse_discovery(doc, "https://other").is_err());
        let http = br#"{"issuer":"https://i","jwks_uri":"http://i/keys"}"#;
        assert!(parse_discovery(http, "https://i").is_err());
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let pair = crate::crypto::KeyPair::generate(Algorithm::ES256).unwrap();
        let good = pair.public.jwk("k1", Algorithm::ES256);
        let mut wrong_alg = good.clone();
        wrong_alg["alg"] = "RS256".into();
        let mut hmac = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"});
        hmac["alg"] = "HS256".into();
        let doc = serde_json::json!({"keys": [good, wrong_alg, hmac]});
        let set = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(set.has(Some("k1")) && !set.has(Some("h")));
        assert!(parse_jwks(br#"{"keys":[]}"#).is_err());
        assert!(parse_jwks(b"[]").is_err());
    }
}
