//! The one signing interface (docs/ARCHITECTURE.md, "The signer interface").
//!
//! Issuing, rotation, import and publishing hold a [`Signer`] and a
//! [`KeyBackend`]; neither hands out private key bytes. A signer is one of
//! the implementations below, chosen per key by where the database says its
//! private half lives; the backend decides where new keys go. A cloud KMS
//! would be one more variant of each, with its own `sign` and `generate`.
//!
//! An enum rather than a trait object: the software path is the hot path
//! of issuing (ES256 in tens of microseconds), and a match costs nothing
//! next to a virtual call and the `Arc<dyn …>` it would need.

pub mod pkcs11;
pub mod software;

use std::sync::Arc;

use super::keypair::{KeyError, KeyPair, PublicKey};
use super::master_key::MasterKey;
use crate::domain::algorithm::Algorithm;
use pkcs11::Token;

/// Where a private key lives, as the database records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Sealed under the master key in the database, parsed in memory.
    Software,
    /// Inside a PKCS#11 token; the database has its `CKA_ID`.
    Pkcs11,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Software => "software",
            BackendKind::Pkcs11 => "pkcs11",
        }
    }
}

/// A key held in a PKCS#11 token.
pub struct TokenKey {
    pub token: Arc<Token>,
    pub object_id: Vec<u8>,
    pub algorithm: Algorithm,
    pub public: PublicKey,
}

/// A private key ready to sign, and its public half.
pub enum Signer {
    Software(KeyPair),
    Pkcs11(TokenKey),
}

impl From<KeyPair> for Signer {
    fn from(pair: KeyPair) -> Self {
        Signer::Software(pair)
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("backend", &self.backend().as_str())
            .field("algorithm", &self.algorithm())
            .finish()
    }
}

impl Signer {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Signer::Software(pair) => pair.algorithm,
            Signer::Pkcs11(key) => key.algorithm,
        }
    }

    pub fn public(&self) -> &PublicKey {
        match self {
            Signer::Software(pair) => &pair.public,
            Signer::Pkcs11(key) => &key.public,
        }
    }

    pub fn backend(&self) -> BackendKind {
        match self {
            Signer::Software(_) => BackendKind::Software,
            Signer::Pkcs11(_) => BackendKind::Pkcs11,
        }
    }

    /// The raw JWS signature of `message` (fixed-size `r || s` for ECDSA).
    /// Blocking on PKCS#11: call it off the async workers.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self {
            Signer::Software(pair) => pair.sign(message),
            Signer::Pkcs11(key) => Ok(key.token.sign(&key.object_id, key.algorithm, message)?),
        }
    }
}

/// How the database holds the private half of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// AES-256-GCM under the master key, the kid as associated data.
    Sealed(Vec<u8>),
    /// In the PKCS#11 token, as the object with this `CKA_ID`.
    Token { object_id: Vec<u8> },
}

impl Held {
    pub fn backend(&self) -> BackendKind {
        match self {
            Held::Sealed(_) => BackendKind::Software,
            Held::Token { .. } => BackendKind::Pkcs11,
        }
    }
}

/// A key just generated or imported: what the database stores of it.
#[derive(Debug, Clone)]
pub struct MadeKey {
    pub algorithm: Algorithm,
    pub public: PublicKey,
    pub held: Held,
}

/// Where new keys are made, and how stored keys are opened for signing.
#[derive(Clone)]
pub struct KeyBackend {
    master_key: MasterKey,
    /// Set with `keys.backend = "pkcs11"`: new keys go into it.
    token: Option<Arc<Token>>,
}

impl KeyBackend {
    pub fn software(master_key: MasterKey) -> Self {
        Self {
            master_key,
            token: None,
        }
    }

    pub fn pkcs11(master_key: MasterKey, token: Arc<Token>) -> Self {
        Self {
            master_key,
            token: Some(token),
        }
    }

    pub fn master_key(&self) -> &MasterKey {
        &self.master_key
    }

    pub fn token(&self) -> Option<&Arc<Token>> {
        self.token.as_ref()
    }

    /// Where this backend puts new keys.
    pub fn kind(&self) -> BackendKind {
        match self.token {
            None => BackendKind::Software,
            Some(_) => BackendKind::Pkcs11,
        }
    }

    /// Generates a key for `kid`. CPU-heavy for RSA (seconds for 4096
    /// bits): call it from a blocking thread.
    pub fn generate(&self, kid: &str, algorithm: Algorithm) -> Result<MadeKey, KeyError> {
        match &self.token {
            None => software::seal(&self.master_key, kid, KeyPair::generate(algorithm)?),
            Some(token) => {
                let (object_id, public) = token.generate(kid, algorithm)?;
                Ok(MadeKey {
                    algorithm,
                    public,
                    held: Held::Token { object_id },
                })
            }
        }
    }

    /// Takes an imported key pair in for `kid`.
    pub fn import(&self, kid: &str, pair: KeyPair) -> Result<MadeKey, KeyError> {
        match &self.token {
            None => software::seal(&self.master_key, kid, pair),
            Some(token) => Ok(MadeKey {
                held: Held::Token {
                    object_id: token.import(kid, &pair)?,
                },
                algorithm: pair.algorithm,
                public: pair.public.clone(),
            }),
        }
    }

    /// Opens a stored key for signing.
    pub fn open(
        &self,
        kid: &str,
        algorithm: Algorithm,
        held: &Held,
        public: &PublicKey,
    ) -> anyhow::Result<Signer> {
        match held {
            Held::Sealed(sealed) => {
                software::open(&self.master_key, kid, algorithm, sealed).map(Signer::Software)
            }
            Held::Token { object_id } => {
                let token = self.token.clone().ok_or_else(|| {
                    anyhow::anyhow!(
                        "key {kid} is held in a PKCS#11 token, and this replica has none: \
                         start it with keys.backend = \"pkcs11\" and the [pkcs11] settings"
                    )
                })?;
                Ok(Signer::Pkcs11(TokenKey {
                    token,
                    object_id: object_id.clone(),
                    algorithm,
                    public: public.clone(),
                }))
            }
        }
    }

    /// Destroys a key's private half where it lives: the token's objects
    /// (how many); nothing for a sealed key, whose row is its only copy.
    /// Blocking.
    pub fn destroy(&self, held: &Held) -> Result<usize, KeyError> {
        match (held, &self.token) {
            (Held::Sealed(_), _) => Ok(0),
            (Held::Token { object_id }, Some(token)) => Ok(token.destroy(object_id)?),
            (Held::Token { .. }, None) => Err(KeyError::Unavailable(
                "the key is held in a PKCS#11 token and this replica has none".into(),
            )),
        }
    }

    /// Whether signing can work now: the token answers (always, for
    /// software keys). Blocking.
    pub fn check_ready(&self) -> Result<(), KeyError> {
        match &self.token {
            None => Ok(()),
            Some(token) => Ok(token.probe()?),
        }
    }
}
