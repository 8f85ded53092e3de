//! Public keys from outside: the keys callers register to sign their own
//! client assertions (RFC 7523 `private_key_jwt`), given as an SPKI PEM
//! (or an RSA PKCS#1 public PEM) or as a JWK (RFC 7517). Only RSA of
//! 2048 to 4096 bits, P-256 and P-384 are taken; private key material and
//! symmetric keys are refused, naming the member that gave them away.
//!
//! Every accepted key is reduced to its SPKI DER (what is stored and what
//! aws-lc-rs verifies with) and named by its RFC 7638 JWK thumbprint, so
//! the same key has the same id whichever way it was sent.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use super::keypair::spki_pem;
use super::keypair::KeyFamily;
use crate::domain::algorithm::Algorithm;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest: the `rsa` crate reads no larger public key.
pub const MAX_RSA_BITS: usize = 4096;

/// A registered public key, reduced to what verification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPublicKey {
    /// RFC 7638 thumbprint (SHA-256, base64url): the key's id.
    pub id: String,
    pub family: KeyFamily,
    pub spki_der: Vec<u8>,
}

/// Why a key was refused: the member at fault (`public_key`,
/// `public_key.d`, …) and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidPublicKey {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> InvalidPublicKey {
    InvalidPublicKey {
        field: field.to_owned(),
        message: message.into(),
    }
}

const FIELD: &str = "public_key";

impl KeyFamily {
    /// How the family is stored and shown: `RSA`, `P-256`, `P-384`.
    pub fn name(self) -> &'static str {
        match self {
            KeyFamily::Rsa => "RSA",
            KeyFamily::P256 => "P-256",
            KeyFamily::P384 => "P-384",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [KeyFamily::Rsa, KeyFamily::P256, KeyFamily::P384]
            .into_iter()
            .find(|f| f.name() == name)
    }

    /// Whether a signature under `algorithm` can come from a key of this
    /// family.
    pub fn signs(self, algorithm: Algorithm) -> bool {
        KeyFamily::of(algorithm) == self
    }
}

/// Parses `public_key` as sent in a registration: a PEM string or a JWK
/// object.
pub fn parse(value: &Value) -> Result<ClientPublicKey, InvalidPublicKey> {
    match value {
        Value::String(pem) => from_pem(pem),
        Value::Object(jwk) => from_jwk(jwk),
        _ => Err(invalid(
            FIELD,
            "must be a PEM string (-----BEGIN PUBLIC KEY-----) or a JWK object",
        )),
    }
}

/// An SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY` PEM block.
pub fn from_pem(text: &str) -> Result<ClientPublicKey, InvalidPublicKey> {
    if text.contains("PRIVATE KEY-----") {
        return Err(invalid(
            FIELD,
            "this is a private key: register the public key only \
             (openssl pkey -pubout); its private half must stay with the caller",
        ));
    }
    let (label, doc) = p256::pkcs8::Document::from_pem(text.trim()).map_err(|_| {
        invalid(
            FIELD,
            "not a readable PEM block: expected -----BEGIN PUBLIC KEY-----",
        )
    })?;
    match label {
        "PUBLIC KEY" => from_spki_der(doc.as_bytes()),
        "RSA PUBLIC KEY" => {
            let key = rsa::RsaPublicKey::from_pkcs1_der(doc.as_bytes())
                .map_err(|_| invalid(FIELD, "not a readable RSA public key"))?;
            rsa_key(&key, FIELD)
        }
        other => Err(invalid(
            FIELD,
            format!("expected a \"PUBLIC KEY\" PEM block, got {other:?}"),
        )),
    }
}

/// SPKI DER of an RSA, P-256 or P-384 key.
pub fn from_spki_der(der: &[u8]) -> Result<ClientPublicKey, InvalidPublicKey> {
    if let Ok(key) = p256::PublicKey::from_public_key_der(der) {
        return ec_key(KeyFamily::P256, &key.to_sec1_bytes(), der);
    }
    if let Ok(key) = p384::PublicKey::from_public_key_der(der) {
        return ec_key(KeyFamily::P384, &key.to_sec1_bytes(), der);
    }
    match rsa::RsaPublicKey::from_public_key_der(der) {
        Ok(key) => rsa_key(&key, FIELD),
        Err(_) => Err(invalid(
            FIELD,
            format!(
                "not an RSA ({MIN_RSA_BITS} to {MAX_RSA_BITS} bits), P-256 or P-384 public key"
            ),
        )),
    }
}

/// Members that only a private or symmetric JWK has (RFC 7518 §6.2.2,
/// §6.3.2, §6.4.1).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A public JWK of `kty` RSA or EC.
pub fn from_jwk(jwk: &Map<String, Value>) -> Result<ClientPublicKey, InvalidPublicKey> {
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(invalid(
            &format!("{FIELD}.{member}"),
            "this JWK holds private key material: register the public key only; \
             its private half must stay with the caller",
        ));
    }
    let text = |name: &str| -> Result<Option<&str>, InvalidPublicKey> {
        match jwk.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(&format!("{FIELD}.{name}"), "must be a string")),
        }
    };
    if text("use")?.is_some_and(|u| u != "sig") {
        return Err(invalid(
            &format!("{FIELD}.use"),
            "must be \"sig\": the key signs client assertions",
        ));
    }
    let key = match text("kty")? {
        None => return Err(invalid(&format!("{FIELD}.kty"), "is required")),
        Some("RSA") => {
            let n = b64_member(jwk, "n")?;
            let e = b64_member(jwk, "e")?;
            let key = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|e| invalid(&format!("{FIELD}.n"), format!("not a usable RSA key: {e}")))?;
            rsa_key(&key, &format!("{FIELD}.n"))?
        }
        Some("EC") => ec_jwk(jwk, text("crv")?)?,
        Some("oct") => {
            return Err(invalid(
                &format!("{FIELD}.kty"),
                "a symmetric key (oct) cannot authenticate a caller: register an RSA \
                 or EC public key whose private half only the caller holds",
            ))
        }
        Some(other) => {
            return Err(invalid(
                &format!("{FIELD}.kty"),
                format!("{other:?} is not supported: use RSA or EC (P-256, P-384)"),
            ))
        }
    };
    if let Some(alg) = text("alg")? {
        let fits = Algorithm::ALL
            .into_iter()
            .any(|a| a.as_str() == alg && key.family.signs(a));
        if !fits {
            return Err(invalid(
                &format!("{FIELD}.alg"),
                format!(
                    "{alg:?} is not an algorithm {} keys sign with",
                    key.family.name()
                ),
            ));
        }
    }
    Ok(key)
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, InvalidPublicKey> {
    let field = format!("{FIELD}.{name}");
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&field, "is required, as a base64url string"))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| invalid(&field, "is not unpadded base64url"))
}

fn ec_jwk(
    jwk: &Map<String, Value>,
    crv: Option<&str>,
) -> Result<ClientPublicKey, InvalidPublicKey> {
    let (family, size) = match crv {
        Some("P-256") => (KeyFamily::P256, 32),
        Some("P-384") => (KeyFamily::P384, 48),
        Some(other) => {
            return Err(invalid(
                &format!("{FIELD}.crv"),
                format!("{other:?} is not supported: use P-256 or P-384"),
            ))
        }
        None => return Err(invalid(&format!("{FIELD}.crv"), "is required for kty EC")),
    };
    let (x, y) = (b64_member(jwk, "x")?, b64_member(jwk, "y")?);
    if x.len() != size || y.len() != size {
        return Err(invalid(
            &format!("{FIELD}.x"),
            "x and y must be 32 bytes each for P-256, 48 for P-384",
        ));
    }
    let sec1 = [&[4u8][..], &x, &y].concat();
    let der = match family {
        KeyFamily::P256 => p256::PublicKey::from_sec1_bytes(&sec1)
            .ok()
            .and_then(|k| k.to_public_key_der().ok()),
        _ => p384::PublicKey::from_sec1_bytes(&sec1)
            .ok()
            .and_then(|k| k.to_public_key_der().ok()),
    };
    let der = der.ok_or_else(|| {
        invalid(
            &format!("{FIELD}.x"),
            "x and y are not a point of the curve",
        )
    })?;
    ec_key(family, &sec1, der.as_bytes())
}

fn rsa_key(key: &rsa::RsaPublicKey, field: &str) -> Result<ClientPublicKey, InvalidPublicKey> {
    let bits = key.size() * 8;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(invalid(
            field,
            format!("an RSA key of {bits} bits; use {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"),
        ));
    }
    let der = key
        .to_public_key_der()
        .map_err(|_| invalid(field, "not a usable RSA key"))?;
    let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
    Ok(ClientPublicKey {
        id: thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#)),
        family: KeyFamily::Rsa,
        spki_der: der.as_bytes().to_vec(),
    })
}

/// `sec1` is the uncompressed point `04 || x || y`.
fn ec_key(family: KeyFamily, sec1: &[u8], der: &[u8]) -> Result<ClientPublicKey, InvalidPublicKey> {
    let half = (sec1.len() - 1) / 2;
    if sec1.first() != Some(&4) || half == 0 {
        return Err(invalid(FIELD, "an EC point that is not uncompressed"));
    }
    let x = URL_SAFE_NO_PAD.encode(&sec1[1..=half]);
    let y = URL_SAFE_NO_PAD.encode(&sec1[half + 1..]);
    let crv = family.name();
    Ok(ClientPublicKey {
        id: thumbprint(&format!(
            r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#
        )),
        family,
        spki_der: der.to_vec(),
    })
}

/// RFC 7638 §3: SHA-256 of the required members, sorted, without
/// whitespace (the callers above write them so), base64url.
fn thumbprint(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;
    use serde_json::json;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk = json!({ "kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29" });
        let key = parse(&jwk).unwrap();
        assert_eq!(key.id, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(key.family, KeyFamily::Rsa);
    }

    #[test]
    fn pem_and_jwk_of_one_key_have_one_id() {
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::RS256] {
            let pair = KeyPair::generate(alg).unwrap();
            let from_pem = parse(&Value::String(pair.public.pem.clone())).unwrap();
            let from_jwk = parse(&pair.public.jwk("x/y", alg)).unwrap();
            assert_eq!(from_pem, from_jwk, "{alg}");
            assert_eq!(from_pem.spki_der, pair.public.spki_der, "{alg}");
            assert!(from_pem.family.signs(alg));
        }
    }

    #[test]
    fn private_and_symmetric_keys_are_refused_naming_the_member() {
        let pair = KeyPair::generate(Algorithm::ES256).unwrap();
        let mut jwk = pair.public.jwk("x/y", Algorithm::ES256);
        jwk["d"] = json!("AAAA");
        assert_eq!(parse(&jwk).unwrap_err().field, "public_key.d");
        let oct = json!({ "kty": "oct", "alg": "HS256" });
        assert_eq!(parse(&oct).unwrap_err().field, "public_key.kty");
        let oct_k = json!({ "kty": "oct", "k": "c2VjcmV0" });
        assert_eq!(parse(&oct_k).unwrap_err().field, "public_key.k");
        let pem =
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        assert_eq!(parse(&json!(pem)).unwrap_err().field, "public_key");
    }

    #[test]
    fn small_rsa_keys_and_foreign_algorithms_are_refused() {
        let small = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
            &small.to_public_key(),
            rsa::pkcs8::LineEnding::LF,
        )
        .unwrap();
        assert!(parse(&json!(pem))
            .unwrap_err()
            .message
            .contains("1024 bits"));
        let pair = KeyPair::generate(Algorithm::ES256).unwrap();
        let mut jwk = pair.public.jwk("x/y", Algorithm::ES256);
        jwk["alg"] = json!("RS256");
        assert_eq!(parse(&jwk).unwrap_err().field, "public_key.alg");
        jwk["alg"] = json!("ES256");
        jwk["crv"] = json!("P-384");
        assert!(parse(&jwk).is_err());
        assert!(parse(&json!(42)).is_err());
        assert!(parse(&json!({})).is_err());
    }
}
