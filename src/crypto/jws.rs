//! Compact JWS serialisation (RFC 7515 §7.1) over a kept key pair.
//!
//! jsonwebtoken builds the same three parts, but only from an `EncodingKey`
//! it parses on every call; here the protected header of a signer is encoded
//! once and the key pair stays parsed.
//!
//! Verifying is the mirror image: jsonwebtoken's `decode` re-parses the
//! public key on every call and decodes the header twice; a [`JwsVerifier`]
//! keeps the key parsed, and a [`Jws`] is split and its header decoded once.

use aws_lc_rs::signature::{self as aws, ParsedPublicKey, VerificationAlgorithm};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;

use super::keypair::{KeyError, PublicKey};
use super::signer::Signer;
use crate::domain::algorithm::Algorithm;

/// A signer with its protected header already encoded.
pub struct JwsSigner {
    pub kid: String,
    pub key: Signer,
    encoded_header: String,
}

impl JwsSigner {
    /// The header is `{"typ":"JWT","alg":…,"kid":…}`, what ASAP verifiers
    /// expect (docs/ARCHITECTURE.md, "What verifiers expect").
    pub fn new(kid: String, key: impl Into<Signer>) -> Self {
        let key = key.into();
        let mut header = jsonwebtoken::Header::new(key.algorithm().to_jwt());
        header.kid = Some(kid.clone());
        let json = serde_json::to_vec(&header).expect("a JWS header always serialises");
        Self {
            encoded_header: URL_SAFE_NO_PAD.encode(json),
            kid,
            key,
        }
    }

    /// `b64(header).b64(claims).b64(signature)`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let claims = serde_json::to_vec(claims).map_err(|e| KeyError::Encoding(e.to_string()))?;
        let mut token = String::with_capacity(
            self.encoded_header.len() + claims.len() * 4 / 3 + 2 + self.key.public().bits / 4,
        );
        token.push_str(&self.encoded_header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let signature = self.key.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

/// A public key parsed once, to verify compact JWS of its algorithm.
#[derive(Debug, Clone)]
pub struct JwsVerifier {
    algorithm: Algorithm,
    key: ParsedPublicKey,
}

impl JwsVerifier {
    pub fn new(algorithm: Algorithm, public: &PublicKey) -> Result<Self, KeyError> {
        Self::from_spki(algorithm, &public.spki_der)
    }

    /// A verifier of SPKI DER that is not a key asapd made (a caller's
    /// registered client key).
    pub fn from_spki(algorithm: Algorithm, spki_der: &[u8]) -> Result<Self, KeyError> {
        // The same verification algorithms as jsonwebtoken's aws_lc_rs
        // backend, so a token verifies here exactly when it did there.
        let verification: &'static dyn VerificationAlgorithm = match algorithm {
            Algorithm::RS256 => &aws::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &aws::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &aws::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &aws::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &aws::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &aws::RSA_PSS_2048_8192_SHA512,
            Algorithm::ES256 => &aws::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &aws::ECDSA_P384_SHA384_FIXED,
        };
        let key = ParsedPublicKey::new(verification, spki_der)
            .map_err(|e| KeyError::Encoding(e.to_string()))?;
        Ok(Self { algorithm, key })
    }
}

/// Why a compact JWS did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsError {
    /// Its header names another algorithm than the key's.
    WrongAlgorithm,
    /// A part is not unpadded base64url.
    Malformed,
    BadSignature,
}

/// A compact JWS split into its parts, its header decoded; nothing
/// verified yet.
pub struct Jws<'a> {
    pub header: jsonwebtoken::Header,
    signing_input: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl<'a> Jws<'a> {
    /// Splits `token` as jsonwebtoken does (at its last two dots) and
    /// decodes the header into jsonwebtoken's `Header`, so what is accepted
    /// as a header is unchanged. `None`: not a compact JWS.
    pub fn parse(token: &'a str) -> Option<Self> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.rsplit_once('.')?;
        let json = URL_SAFE_NO_PAD.decode(header).ok()?;
        Some(Self {
            header: serde_json::from_slice(&json).ok()?,
            signing_input,
            payload,
            signature,
        })
    }

    /// Checks the header's `alg` against the key's and the signature, and
    /// returns the decoded payload.
    pub fn verify(&self, key: &JwsVerifier) -> Result<Vec<u8>, JwsError> {
        if self.header.alg != key.algorithm.to_jwt() {
            return Err(JwsError::WrongAlgorithm);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(self.signature)
            .map_err(|_| JwsError::Malformed)?;
        key.key
            .verify_sig(self.signing_input.as_bytes(), &signature)
            .map_err(|_| JwsError::BadSignature)?;
        URL_SAFE_NO_PAD
            .decode(self.payload)
            .map_err(|_| JwsError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;
    use crate::domain::algorithm::Algorithm;
    use jsonwebtoken::{decode, decode_header, Validation};
    use serde_json::{json, Value};

    #[test]
    fn every_algorithm_signs_a_token_jsonwebtoken_verifies() {
        for algorithm in Algorithm::ALL {
            let pair = KeyPair::generate(algorithm).unwrap();
            let verifier = pair.public.decoding_key(algorithm).unwrap();
            let signer = JwsSigner::new("svc/k1".into(), pair);
            let claims = json!({ "iss": "svc", "aud": "x", "exp": 4_000_000_000u64 });
            let token = signer.sign(&claims).unwrap();

            let header = decode_header(&token).unwrap();
            assert_eq!(header.alg, algorithm.to_jwt(), "{algorithm}");
            assert_eq!(header.kid.as_deref(), Some("svc/k1"));
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            let mut validation = Validation::new(algorithm.to_jwt());
            validation.set_audience(&["x"]);
            let data = decode::<Value>(&token, &verifier, &validation).unwrap();
            assert_eq!(data.claims, claims, "{algorithm}");
        }
    }

    #[test]
    fn the_kept_verifier_accepts_what_jsonwebtoken_accepts() {
        for algorithm in Algorithm::ALL {
            let pair = KeyPair::generate(algorithm).unwrap();
            let verifier = JwsVerifier::new(algorithm, &pair.public).unwrap();
            let claims = json!({ "iss": "svc", "exp": 4_000_000_000u64 });
            let token = JwsSigner::new("svc/k1".into(), pair).sign(&claims).unwrap();
            let jws = Jws::parse(&token).unwrap();
            assert_eq!(jws.header.kid.as_deref(), Some("svc/k1"));
            let payload = jws.verify(&verifier).unwrap();
            assert_eq!(
                serde_json::from_slice::<Value>(&payload).unwrap(),
                claims,
                "{algorithm}"
            );
        }
    }

    #[test]
    fn the_kept_verifier_refuses_tampering_and_other_algorithms() {
        let pair = KeyPair::generate(Algorithm::ES256).unwrap();
        let verifier = JwsVerifier::new(Algorithm::ES256, &pair.public).unwrap();
        let token = JwsSigner::new("a/k".into(), pair)
            .sign(&json!({ "exp": 4_000_000_000u64 }))
            .unwrap();
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let other = URL_SAFE_NO_PAD.encode(br#"{"exp":1}"#);
        let tampered = format!("{head}.{other}.{signature}");
        let verify = |t: &str| Jws::parse(t).unwrap().verify(&verifier);
        assert_eq!(verify(&tampered), Err(JwsError::BadSignature));
        assert_eq!(verify(&format!("{token}=")), Err(JwsError::Malformed));
        let hs = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"a/k"}"#);
        assert_eq!(
            verify(&format!("{hs}.{rest}")),
            Err(JwsError::WrongAlgorithm)
        );
        assert!(Jws::parse("no-dots").is_none());
        assert!(Jws::parse("a.b.c").is_none(), "the header is not JSON");
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert!(Jws::parse(&format!("{none}.{rest}")).is_none());
    }

    #[test]
    fn a_signature_does_not_verify_under_another_key() {
        let signer = JwsSigner::new("a/k".into(), KeyPair::generate(Algorithm::ES256).unwrap());
        let other = KeyPair::generate(Algorithm::ES256).unwrap();
        let token = signer.sign(&json!({ "exp": 4_000_000_000u64 })).unwrap();
        let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.validate_aud = false;
        let verifier = other.public.decoding_key(Algorithm::ES256).unwrap();
        assert!(decode::<Value>(&token, &verifier, &validation).is_err());
    }
}
