//! Compact JWS serialisation (RFC 7515 §7.1) over a kept key pair.
//!
//! jsonwebtoken builds the same three parts, but only from an `EncodingKey`
//! it parses on every call; here the protected header of a signer is encoded
//! once and the key pair stays parsed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;

use super::keypair::{KeyError, KeyPair};

/// A key pair with its protected header already encoded.
pub struct JwsSigner {
    pub kid: String,
    pub key: KeyPair,
    encoded_header: String,
}

impl JwsSigner {
    /// The header is `{"typ":"JWT","alg":…,"kid":…}`, what ASAP verifiers
    /// expect (docs/ARCHITECTURE.md, "What verifiers expect").
    pub fn new(kid: String, key: KeyPair) -> Self {
        let mut header = jsonwebtoken::Header::new(key.algorithm.to_jwt());
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
            self.encoded_header.len() + claims.len() * 4 / 3 + 2 + self.key.public.bits / 4,
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

#[cfg(test)]
mod tests {
    use super::*;
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
