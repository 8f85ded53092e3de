//! The master key and AES-256-GCM encryption of private keys at rest.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use zeroize::Zeroizing;

/// Format byte in front of every sealed blob, so the scheme can change later
/// without guessing what old rows hold.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// The 256-bit key every private key is encrypted under.
#[derive(Clone)]
pub struct MasterKey(Aes256Gcm, aws_lc_rs::hmac::Key);

/// Labels the subkey that pseudonymises names in audit records, so it is
/// never the key that encrypts private keys.
const AUDIT_NAMES_LABEL: &[u8] = b"asapd:audit-names:v1";

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key is not valid base64")]
    NotBase64,
    #[error("the master key must be 32 bytes (256 bits) once base64-decoded, got {0}")]
    WrongLength(usize),
}

/// Decryption failed: wrong master key, or the row was altered.
#[derive(Debug, thiserror::Error)]
#[error("cannot decrypt: wrong master key or corrupted ciphertext")]
pub struct DecryptError;

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        use aws_lc_rs::hmac;
        let subkey = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, bytes), AUDIT_NAMES_LABEL);
        Self(
            Aes256Gcm::new(bytes.into()),
            hmac::Key::new(hmac::HMAC_SHA256, subkey.as_ref()),
        )
    }

    /// A keyed digest of `name` for audit records: the same name always
    /// gives the same digest under one master key, so repeated attempts can
    /// be told apart and matched, but the record does not hold the name
    /// itself (which may be a secret typed in the wrong field).
    pub fn audit_digest(&self, name: &str) -> String {
        let tag = aws_lc_rs::hmac::sign(&self.1, name.as_bytes());
        tag.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn from_base64(text: &str) -> Result<Self, MasterKeyError> {
        let raw = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| MasterKeyError::NotBase64)?,
        );
        let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(
            raw.as_slice()
                .try_into()
                .map_err(|_| MasterKeyError::WrongLength(raw.len()))?,
        );
        Ok(Self::from_bytes(&bytes))
    }

    /// A fresh random key, base64-encoded, for `--dev` and docs.
    pub fn generate_base64() -> String {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        STANDARD.encode(bytes.as_ref())
    }

    /// Encrypts `plaintext`, binding it to `aad` (the kid) so a ciphertext
    /// moved to another row no longer decrypts.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .0
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts a blob made by [`MasterKey::seal`] with the same `aad`. The
    /// plaintext (a private key) is zeroed when dropped.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != FORMAT_V1 {
            return Err(DecryptError);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| DecryptError)?;
        self.0
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_binds_the_aad() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let sealed = key.seal(b"secret", b"svc/k1");
        assert_eq!(key.open(&sealed, b"svc/k1").unwrap().as_slice(), b"secret");
        assert!(key.open(&sealed, b"svc/k2").is_err());
        let other = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        assert!(other.open(&sealed, b"svc/k1").is_err());
    }

    #[test]
    fn audit_digests_are_stable_per_key_and_hide_the_name() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let other = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let digest = key.audit_digest("asapd_s3cret");
        assert_eq!(digest, key.audit_digest("asapd_s3cret"));
        assert_ne!(digest, key.audit_digest("asapd_s3creT"));
        assert_ne!(digest, other.audit_digest("asapd_s3cret"));
        assert_eq!(digest.len(), 24);
        assert!(!digest.contains("s3cret"));
    }

    #[test]
    fn rejects_short_keys() {
        assert!(matches!(
            MasterKey::from_base64("c2hvcnQ="),
            Err(MasterKeyError::WrongLength(5))
        ));
    }
}
