//! The master keys and AES-256-GCM sealing of secrets at rest.
//!
//! A [`MasterKey`] is the current master key plus the previous ones still
//! accepted while a rotation (`asapd rekey`) is under way. HKDF derives one
//! subkey per purpose from each, so the key that encrypts private keys is
//! never the one that seals audit cursors or digests audit names.

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use zeroize::Zeroizing;

/// The first format: sealed directly under the raw master key, no key id.
/// Still read, never written.
const FORMAT_V1: u8 = 1;
/// Sealed under a purpose subkey, naming the master key it came from.
const FORMAT_V2: u8 = 2;
const NONCE_LEN: usize = 12;
/// Length of a master key's id in a v2 blob.
pub const KEY_ID_LEN: usize = 8;
const V2_HEADER: usize = 1 + KEY_ID_LEN;

/// Fixed HKDF salt: the master key is already uniformly random, the salt
/// only separates asapd's derivations from any other use of the same bytes.
const HKDF_SALT: &[u8] = b"asapd master key v2";

/// What a subkey is for; the HKDF `info` of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Private keys and the start-up check value.
    KeyEncryption,
    /// Opaque audit-query cursors.
    AuditCursor,
}

const INFO_KEY_ID: &[u8] = b"asapd:key-id";
const INFO_KEY_ENCRYPTION: &[u8] = b"asapd:key-encryption";
const INFO_AUDIT_CURSOR: &[u8] = b"asapd:audit-cursor";
const INFO_AUDIT_NAMES: &[u8] = b"asapd:audit-names";

/// One master key and its derived subkeys.
struct Material {
    id: [u8; KEY_ID_LEN],
    /// v1 blobs were sealed with the raw key.
    legacy: Aes256Gcm,
    key_encryption: Aes256Gcm,
    audit_cursor: Aes256Gcm,
    audit_names: aws_lc_rs::hmac::Key,
}

impl Material {
    fn derive(bytes: &[u8; 32]) -> Self {
        let prk = Salt::new(HKDF_SHA256, HKDF_SALT).extract(bytes);
        let expand = |info: &[u8]| {
            let mut out = Zeroizing::new([0u8; 32]);
            prk.expand(&[info], HKDF_SHA256)
                .and_then(|okm| okm.fill(out.as_mut()))
                .expect("32 bytes is within HKDF-SHA256's output limit");
            out
        };
        let id_bytes = expand(INFO_KEY_ID);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&id_bytes[..KEY_ID_LEN]);
        Self {
            id,
            legacy: Aes256Gcm::new(bytes.into()),
            key_encryption: Aes256Gcm::new(expand(INFO_KEY_ENCRYPTION).as_ref().into()),
            audit_cursor: Aes256Gcm::new(expand(INFO_AUDIT_CURSOR).as_ref().into()),
            audit_names: aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                expand(INFO_AUDIT_NAMES).as_ref(),
            ),
        }
    }

    fn cipher(&self, purpose: Purpose) -> &Aes256Gcm {
        match purpose {
            Purpose::KeyEncryption => &self.key_encryption,
            Purpose::AuditCursor => &self.audit_cursor,
        }
    }
}

/// The current master key, which seals, and the previous ones, which only
/// open. Cheap to clone.
#[derive(Clone)]
pub struct MasterKey {
    current: Arc<Material>,
    previous: Arc<[Arc<Material>]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(id {}, <redacted>)", self.key_id())
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
        Self {
            current: Arc::new(Material::derive(bytes)),
            previous: Arc::new([]),
        }
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

    /// This key, also accepting blobs sealed under the current keys of
    /// `previous` (a rotation in progress). Their own previous keys and
    /// any repeat of the current key are dropped.
    pub fn with_previous(self, previous: impl IntoIterator<Item = MasterKey>) -> Self {
        let mut kept: Vec<Arc<Material>> = Vec::new();
        for key in previous {
            let material = key.current;
            if material.id != self.current.id && !kept.iter().any(|k| k.id == material.id) {
                kept.push(material);
            }
        }
        Self {
            current: self.current,
            previous: kept.into(),
        }
    }

    /// A fresh random key, base64-encoded, for `--dev` and docs.
    pub fn generate_base64() -> String {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        STANDARD.encode(bytes.as_ref())
    }

    /// The current key's id, in hex: safe to log and audit.
    pub fn key_id(&self) -> String {
        hex::encode(self.current.id)
    }

    /// How many previous keys are accepted.
    pub fn previous_count(&self) -> usize {
        self.previous.len()
    }

    /// A keyed digest of `name` for audit records: the same name always
    /// gives the same digest under one master key, so repeated attempts can
    /// be told apart and matched, but the record does not hold the name
    /// itself (which may be a secret typed in the wrong field).
    pub fn audit_digest(&self, name: &str) -> String {
        let tag = aws_lc_rs::hmac::sign(&self.current.audit_names, name.as_bytes());
        hex::encode(&tag.as_ref()[..12])
    }

    /// Encrypts a private key (or the check value) under the current key,
    /// binding it to `aad` (the kid) so a ciphertext moved to another row
    /// no longer decrypts.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        self.seal_for(Purpose::KeyEncryption, plaintext, aad)
    }

    /// Decrypts a blob made by [`MasterKey::seal`] under the current or a
    /// previous key. The plaintext (a private key) is zeroed when dropped.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        self.open_for(Purpose::KeyEncryption, sealed, aad)
    }

    /// Seals `plaintext` under the current key's subkey for `purpose`:
    /// format byte, key id, nonce, ciphertext.
    pub fn seal_for(&self, purpose: Purpose, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .current
            .cipher(purpose)
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(V2_HEADER + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V2);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens a blob sealed for `purpose`. A v2 blob is tried under the key
    /// it names only; a v1 blob (no id) under the current key, then each
    /// previous one.
    pub fn open_for(
        &self,
        purpose: Purpose,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        match sealed.first() {
            Some(&FORMAT_V2) if sealed.len() >= V2_HEADER => {
                let id = &sealed[1..V2_HEADER];
                let material = self.keys().find(|k| k.id == id).ok_or(DecryptError)?;
                decrypt(material.cipher(purpose), &sealed[V2_HEADER..], aad)
            }
            Some(&FORMAT_V1) => self
                .keys()
                .find_map(|k| decrypt(&k.legacy, &sealed[1..], aad).ok())
                .ok_or(DecryptError),
            _ => Err(DecryptError),
        }
    }

    /// Whether `sealed` is already in the current format under the current
    /// key, so `rekey` can skip it.
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.first() == Some(&FORMAT_V2)
            && sealed.get(1..V2_HEADER) == Some(self.current.id.as_slice())
    }

    /// The id of the master key a blob names, in hex; `None` for a v1 blob
    /// (or anything else), which names none.
    pub fn sealed_key_id(sealed: &[u8]) -> Option<String> {
        (sealed.first() == Some(&FORMAT_V2))
            .then(|| sealed.get(1..V2_HEADER).map(hex::encode))
            .flatten()
    }

    fn keys(&self) -> impl Iterator<Item = &Material> {
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .map(Arc::as_ref)
    }
}

fn decrypt(
    cipher: &Aes256Gcm,
    nonce_and_ciphertext: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    if nonce_and_ciphertext.len() < NONCE_LEN {
        return Err(DecryptError);
    }
    let (nonce, ciphertext) = nonce_and_ciphertext.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| DecryptError)?;
    cipher
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (String, MasterKey) {
        let text = MasterKey::generate_base64();
        let key = MasterKey::from_base64(&text).unwrap();
        (text, key)
    }

    /// A blob as the first format wrote it: raw key, no id.
    fn seal_v1(raw_base64: &str, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let raw: [u8; 32] = STANDARD.decode(raw_base64).unwrap().try_into().unwrap();
        let nonce = [7u8; NONCE_LEN];
        let ct = Aes256Gcm::new((&raw).into())
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap();
        [&[FORMAT_V1][..], &nonce, &ct].concat()
    }

    #[test]
    fn round_trips_and_binds_the_aad() {
        let (_, key) = fresh();
        let sealed = key.seal(b"secret", b"svc/k1");
        assert_eq!(sealed[0], FORMAT_V2);
        assert_eq!(key.open(&sealed, b"svc/k1").unwrap().as_slice(), b"secret");
        assert!(key.open(&sealed, b"svc/k2").is_err());
        let (_, other) = fresh();
        assert!(other.open(&sealed, b"svc/k1").is_err());
    }

    #[test]
    fn blobs_name_their_key_and_open_under_a_previous_one() {
        let (_, old) = fresh();
        let (_, new) = fresh();
        let sealed = old.seal(b"pk", b"kid");
        assert_eq!(MasterKey::sealed_key_id(&sealed), Some(old.key_id()));
        let rotating = new.clone().with_previous([old.clone()]);
        assert_eq!(rotating.previous_count(), 1);
        assert_eq!(rotating.open(&sealed, b"kid").unwrap().as_slice(), b"pk");
        assert!(!rotating.is_current(&sealed));
        assert!(rotating.is_current(&rotating.seal(b"pk", b"kid")));
        assert!(new.open(&sealed, b"kid").is_err());
    }

    #[test]
    fn v1_blobs_stay_readable_under_current_or_previous_keys() {
        let (old_text, old) = fresh();
        let (_, new) = fresh();
        let v1 = seal_v1(&old_text, b"pk", b"kid");
        assert_eq!(old.open(&v1, b"kid").unwrap().as_slice(), b"pk");
        assert!(!old.is_current(&v1));
        assert_eq!(MasterKey::sealed_key_id(&v1), None);
        let rotating = new.clone().with_previous([old]);
        assert_eq!(rotating.open(&v1, b"kid").unwrap().as_slice(), b"pk");
        assert!(new.open(&v1, b"kid").is_err());
    }

    #[test]
    fn purposes_use_separate_subkeys() {
        let (_, key) = fresh();
        let cursor = key.seal_for(Purpose::AuditCursor, b"42", b"aad");
        assert!(key.open(&cursor, b"aad").is_err());
        assert_eq!(
            key.open_for(Purpose::AuditCursor, &cursor, b"aad")
                .unwrap()
                .as_slice(),
            b"42"
        );
    }

    #[test]
    fn audit_digests_are_stable_per_key_and_hide_the_name() {
        let (_, key) = fresh();
        let (_, other) = fresh();
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
