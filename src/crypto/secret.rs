//! Client secrets: high-entropy random strings, stored as SHA-256 hashes.
//!
//! A slow password hash buys nothing for 256-bit random secrets and would
//! cap token throughput, so a plain SHA-256 is the right tool
//! (docs/ARCHITECTURE.md, "Invariants").

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix that makes leaked secrets easy to find with secret scanners.
const SECRET_PREFIX: &str = "asapd_";

/// A freshly generated secret; shown to the admin once, then dropped.
pub struct NewSecret {
    pub id: String,
    pub plaintext: String,
    pub hash: [u8; 32],
}

pub fn generate() -> NewSecret {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let plaintext = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&plaintext);
    NewSecret {
        id: generate_id(),
        plaintext,
        hash,
    }
}

/// Secret ids are public handles for listing and revoking.
fn generate_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("sec_{}", hex::encode(bytes))
}

pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time comparison of a presented secret with a stored hash.
pub fn matches(presented_hash: &[u8; 32], stored: &[u8]) -> bool {
    stored.len() == 32 && bool::from(presented_hash.ct_eq(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_verify_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a.plaintext, b.plaintext);
        assert!(a.plaintext.len() >= SECRET_PREFIX.len() + 43);
        assert!(matches(&hash(&a.plaintext), &a.hash));
        assert!(!matches(&hash(&b.plaintext), &a.hash));
    }
}
