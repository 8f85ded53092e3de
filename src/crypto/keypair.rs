//! Key pairs: generation, parsing, and the public encodings verifiers need
//! (SPKI PEM for the ASAP key repository, JWK for JWKS consumers).
//!
//! The `rsa` crate is used for generation and parsing only; every private-key
//! operation (signing) goes through aws-lc-rs, the backend jsonwebtoken uses,
//! because `rsa` is not constant-time (RUSTSEC-2023-0071). The aws-lc-rs key
//! pair is parsed once and kept: `jsonwebtoken::encode` re-parses the DER on
//! every call, which costs RS256 two thirds of its signing rate.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as aws, EcdsaKeyPair, RsaEncoding, RsaKeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::DecodingKey;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::domain::algorithm::{Algorithm, KeyType};

/// The kind of key a private key turned out to be, to say what an import
/// got wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    P256,
    P384,
}

impl KeyFamily {
    /// The family `algorithm` signs with.
    pub fn of(algorithm: Algorithm) -> Self {
        match algorithm.key_type() {
            KeyType::Rsa { .. } => KeyFamily::Rsa,
            KeyType::P256 => KeyFamily::P256,
            KeyType::P384 => KeyFamily::P384,
        }
    }

    /// "an RSA key", "a P-256 EC key", …
    pub fn describe(self) -> &'static str {
        match self {
            KeyFamily::Rsa => "an RSA key",
            KeyFamily::P256 => "a P-256 EC key",
            KeyFamily::P384 => "a P-384 EC key",
        }
    }

    /// The `algorithm` values that pick this family, for hints.
    pub fn algorithms(self) -> &'static str {
        match self {
            KeyFamily::Rsa => "\"RS256\" (or PS256, RS384, PS384, RS512, PS512)",
            KeyFamily::P256 => "\"ES256\"",
            KeyFamily::P384 => "\"ES384\"",
        }
    }

    /// Which family a PKCS#8 DER private key belongs to, if any.
    fn detect(pkcs8_der: &[u8]) -> Option<Self> {
        if rsa::RsaPrivateKey::from_pkcs8_der(pkcs8_der).is_ok() {
            Some(KeyFamily::Rsa)
        } else if p256::SecretKey::from_pkcs8_der(pkcs8_der).is_ok() {
            Some(KeyFamily::P256)
        } else if p384::SecretKey::from_pkcs8_der(pkcs8_der).is_ok() {
            Some(KeyFamily::P384)
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key is not a readable {expected} private key (PKCS#8, or PKCS#1 for RSA)")]
    WrongType { expected: &'static str },
    /// A well-formed key of another family than the algorithm's.
    #[error(
        "this is {} but {algorithm} needs {}; pass \"algorithm\": {} to sign with it",
        found.describe(),
        KeyFamily::of(*algorithm).describe(),
        found.algorithms()
    )]
    Mismatch {
        found: KeyFamily,
        algorithm: Algorithm,
    },
    #[error("RSA key of {actual} bits is too small for {algorithm}: it needs at least {minimum}")]
    TooSmall {
        algorithm: Algorithm,
        actual: usize,
        minimum: usize,
    },
    #[error("key encoding failed: {0}")]
    Encoding(String),
    #[error("signing failed")]
    Signing,
    /// The key store (an HSM) cannot be reached; a retry may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The key store refused the key or the operation.
    #[error("{0}")]
    Refused(String),
}

/// The public half, in every encoding asapd serves. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub spki_der: Vec<u8>,
    pub pem: String,
    /// JWK members that describe the key itself (`kty`, `n`/`e` or `crv`/`x`/`y`).
    pub jwk_members: Value,
    /// RSA modulus size or curve size, in bits.
    pub bits: usize,
}

/// A parsed private key ready to sign, plus its public half.
pub struct KeyPair {
    pub algorithm: Algorithm,
    signing: SigningKey,
    pub public: PublicKey,
    /// PKCS#8 DER, kept only long enough to be sealed under the master key;
    /// zeroed on drop so the plaintext key does not linger in freed memory.
    pkcs8_der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.algorithm)
            .field("private", &"<redacted>")
            .finish()
    }
}

/// The aws-lc-rs key pair, parsed once.
enum SigningKey {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
}

impl SigningKey {
    fn parse(algorithm: Algorithm, pkcs8_der: &[u8]) -> Result<Self, KeyError> {
        let enc = |e: &dyn std::fmt::Display| KeyError::Encoding(e.to_string());
        let ecdsa = |alg| EcdsaKeyPair::from_pkcs8(alg, pkcs8_der).map_err(|e| enc(&e));
        let rsa = |padding| {
            RsaKeyPair::from_pkcs8(pkcs8_der)
                .map(|pair| SigningKey::Rsa(pair, padding))
                .map_err(|e| enc(&e))
        };
        match algorithm {
            Algorithm::ES256 => ecdsa(&aws::ECDSA_P256_SHA256_FIXED_SIGNING).map(Self::Ecdsa),
            Algorithm::ES384 => ecdsa(&aws::ECDSA_P384_SHA384_FIXED_SIGNING).map(Self::Ecdsa),
            Algorithm::RS256 => rsa(&aws::RSA_PKCS1_SHA256),
            Algorithm::RS384 => rsa(&aws::RSA_PKCS1_SHA384),
            Algorithm::RS512 => rsa(&aws::RSA_PKCS1_SHA512),
            Algorithm::PS256 => rsa(&aws::RSA_PSS_SHA256),
            Algorithm::PS384 => rsa(&aws::RSA_PSS_SHA384),
            Algorithm::PS512 => rsa(&aws::RSA_PSS_SHA512),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        // `SystemRandom` is a zero-sized handle on aws-lc's DRBG.
        let rng = SystemRandom::new();
        match self {
            SigningKey::Ecdsa(pair) => pair
                .sign(&rng, message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| KeyError::Signing),
            SigningKey::Rsa(pair, padding) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(*padding, &rng, message, &mut sig)
                    .map_err(|_| KeyError::Signing)?;
                Ok(sig)
            }
        }
    }
}

impl KeyPair {
    /// Signs `message` with the algorithm's padding and hash; the result is
    /// the raw JWS signature (fixed-size `r || s` for ECDSA, as JWS wants).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.signing.sign(message)
    }

    /// Generates a new key pair. CPU-heavy for RSA (seconds for 4096 bits):
    /// call it from a blocking thread.
    pub fn generate(algorithm: Algorithm) -> Result<Self, KeyError> {
        let mut rng = rand::rngs::OsRng;
        let der = match algorithm.key_type() {
            KeyType::Rsa { bits } => rsa::RsaPrivateKey::new(&mut rng, bits)
                .map_err(|e| KeyError::Encoding(e.to_string()))?
                .to_pkcs8_der(),
            KeyType::P256 => p256::SecretKey::random(&mut rng).to_pkcs8_der(),
            KeyType::P384 => p384::SecretKey::random(&mut rng).to_pkcs8_der(),
        }
        .map_err(|e| KeyError::Encoding(e.to_string()))?;
        Self::from_pkcs8_der(algorithm, der.as_bytes())
    }

    /// Parses a PKCS#8 DER private key for `algorithm`, checking that the
    /// key type (and RSA size) fits it.
    pub fn from_pkcs8_der(algorithm: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        Self::parse_pkcs8(algorithm, der).map_err(|e| match (&e, KeyFamily::detect(der)) {
            (KeyError::WrongType { .. }, Some(found)) => KeyError::Mismatch { found, algorithm },
            _ => e,
        })
    }

    fn parse_pkcs8(algorithm: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        let enc = |e: &dyn std::fmt::Display| KeyError::Encoding(e.to_string());
        let spki_der = match algorithm.key_type() {
            KeyType::Rsa { bits: minimum } => {
                let key = rsa::RsaPrivateKey::from_pkcs8_der(der)
                    .map_err(|_| KeyError::WrongType { expected: "RSA" })?;
                let actual = key.size() * 8;
                if actual < minimum {
                    return Err(KeyError::TooSmall {
                        algorithm,
                        actual,
                        minimum,
                    });
                }
                key.to_public_key()
                    .to_public_key_der()
                    .map_err(|e| enc(&e))?
            }
            KeyType::P256 => {
                let key =
                    p256::SecretKey::from_pkcs8_der(der).map_err(|_| KeyError::WrongType {
                        expected: "P-256 EC",
                    })?;
                key.public_key().to_public_key_der().map_err(|e| enc(&e))?
            }
            KeyType::P384 => {
                let key =
                    p384::SecretKey::from_pkcs8_der(der).map_err(|_| KeyError::WrongType {
                        expected: "P-384 EC",
                    })?;
                key.public_key().to_public_key_der().map_err(|e| enc(&e))?
            }
        };
        Ok(Self {
            algorithm,
            signing: SigningKey::parse(algorithm, der)?,
            public: PublicKey::from_spki_der(algorithm, spki_der.into_vec())?,
            pkcs8_der: Zeroizing::new(der.to_vec()),
        })
    }

    /// Parses an imported key given as PEM or base64 DER, in PKCS#8
    /// (`PRIVATE KEY`) or, for RSA, PKCS#1 (`RSA PRIVATE KEY`, what
    /// `openssl genrsa -traditional` writes and many ASAP set-ups hold).
    pub fn import(algorithm: Algorithm, text: &str) -> Result<Self, KeyError> {
        let pkcs8 = if text.contains("-----BEGIN") {
            let (label, doc) = p256::pkcs8::SecretDocument::from_pem(text)
                .map_err(|_| KeyError::Encoding("the PEM block could not be read".into()))?;
            match label {
                "PRIVATE KEY" => Zeroizing::new(doc.as_bytes().to_vec()),
                "RSA PRIVATE KEY" => pkcs1_to_pkcs8(doc.as_bytes())?,
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(KeyError::Encoding(
                        "the key is encrypted; decrypt it first \
                         (openssl pkcs8 -topk8 -nocrypt)"
                            .into(),
                    ))
                }
                "EC PRIVATE KEY" => {
                    return Err(KeyError::Encoding(
                        "SEC1 \"EC PRIVATE KEY\" blocks are not read; convert it to PKCS#8 \
                         (openssl pkcs8 -topk8 -nocrypt)"
                            .into(),
                    ))
                }
                other => {
                    return Err(KeyError::Encoding(format!(
                        "expected a \"PRIVATE KEY\" (PKCS#8) or \"RSA PRIVATE KEY\" (PKCS#1) \
                         PEM block, got {other:?}"
                    )))
                }
            }
        } else {
            let compact: String = text.split_whitespace().collect();
            let der =
                Zeroizing::new(STANDARD.decode(compact).map_err(|_| {
                    KeyError::Encoding("neither a PEM block nor base64 DER".into())
                })?);
            // A PKCS#1 RSAPrivateKey starts with two INTEGERs, a PKCS#8
            // PrivateKeyInfo with an INTEGER and a SEQUENCE: one parse tells.
            if rsa::RsaPrivateKey::from_pkcs1_der(&der).is_ok() {
                pkcs1_to_pkcs8(&der)?
            } else {
                der
            }
        };
        Self::from_pkcs8_der(algorithm, &pkcs8)
    }

    /// The private key in PKCS#8 DER, to be sealed by the master key. Never
    /// log, return or store the result unencrypted.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }
}

impl PublicKey {
    /// Rebuilds every public encoding from the stored SPKI DER.
    pub fn from_spki_der(algorithm: Algorithm, spki_der: Vec<u8>) -> Result<Self, KeyError> {
        let (jwk_members, bits) = match algorithm.key_type() {
            KeyType::Rsa { .. } => {
                let key = rsa::RsaPublicKey::from_public_key_der(&spki_der)
                    .map_err(|_| KeyError::WrongType { expected: "RSA" })?;
                let members = json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                    "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
                });
                (members, key.size() * 8)
            }
            KeyType::P256 => {
                let key = p256::PublicKey::from_public_key_der(&spki_der).map_err(|_| {
                    KeyError::WrongType {
                        expected: "P-256 EC",
                    }
                })?;
                let point = p256::EncodedPoint::from(key);
                (ec_members("P-256", point.x(), point.y()), 256)
            }
            KeyType::P384 => {
                let key = p384::PublicKey::from_public_key_der(&spki_der).map_err(|_| {
                    KeyError::WrongType {
                        expected: "P-384 EC",
                    }
                })?;
                let point = p384::EncodedPoint::from(key);
                (ec_members("P-384", point.x(), point.y()), 384)
            }
        };
        Ok(Self {
            pem: spki_pem(&spki_der),
            spki_der,
            jwk_members,
            bits,
        })
    }

    /// The key as jsonwebtoken wants it, to check asapd's tokens the way an
    /// outside verifier would (asapd itself verifies with a `JwsVerifier`).
    pub fn decoding_key(&self, algorithm: Algorithm) -> Result<DecodingKey, KeyError> {
        let parsed = match algorithm.key_type() {
            KeyType::Rsa { .. } => DecodingKey::from_rsa_pem(self.pem.as_bytes()),
            KeyType::P256 | KeyType::P384 => DecodingKey::from_ec_pem(self.pem.as_bytes()),
        };
        parsed.map_err(|e| KeyError::Encoding(e.to_string()))
    }

    /// The JWK as JWKS consumers need it: with `kid`, `alg` and `use`.
    pub fn jwk(&self, kid: &str, algorithm: Algorithm) -> Value {
        let mut jwk = self.jwk_members.clone();
        let map = jwk.as_object_mut().expect("JWK members are an object");
        map.insert("kid".into(), kid.into());
        map.insert("alg".into(), algorithm.as_str().into());
        map.insert("use".into(), "sig".into());
        jwk
    }
}

fn ec_members<T: AsRef<[u8]>>(crv: &str, x: Option<&T>, y: Option<&T>) -> Value {
    let b64 = |v: Option<&T>| v.map(|v| URL_SAFE_NO_PAD.encode(v.as_ref()));
    json!({ "kty": "EC", "crv": crv, "x": b64(x), "y": b64(y) })
}

/// Re-encodes a PKCS#1 RSA private key as PKCS#8, the form asapd seals and
/// aws-lc-rs signs with.
fn pkcs1_to_pkcs8(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let key = rsa::RsaPrivateKey::from_pkcs1_der(der)
        .map_err(|_| KeyError::WrongType { expected: "RSA" })?;
    let doc = key
        .to_pkcs8_der()
        .map_err(|e| KeyError::Encoding(e.to_string()))?;
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

/// RFC 7468 PEM with 64-column lines, as OpenSSL writes it.
pub fn spki_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = String::with_capacity(b64.len() + 80);
    pem.push_str("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_keys_round_trip_through_pkcs8() {
        for alg in [Algorithm::ES256, Algorithm::ES384] {
            let pair = KeyPair::generate(alg).unwrap();
            let again = KeyPair::from_pkcs8_der(alg, pair.pkcs8_der()).unwrap();
            assert_eq!(pair.public.spki_der, again.public.spki_der);
            assert!(pair.public.pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        }
    }

    #[test]
    fn key_type_must_fit_the_algorithm() {
        let ec = KeyPair::generate(Algorithm::ES256).unwrap();
        assert!(KeyPair::from_pkcs8_der(Algorithm::RS256, ec.pkcs8_der()).is_err());
        assert!(KeyPair::from_pkcs8_der(Algorithm::ES384, ec.pkcs8_der()).is_err());
    }
}
