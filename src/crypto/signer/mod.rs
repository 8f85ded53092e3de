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

pub mod software;

use super::keypair::{KeyError, KeyPair, PublicKey};
use super::master_key::MasterKey;
use crate::domain::algorithm::Algorithm;

/// Where a private key lives, as the database records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Sealed under the master key in the database, parsed in memory.
    Software,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Software => "software",
        }
    }
}

/// A private key ready to sign, and its public half.
pub enum Signer {
    Software(KeyPair),
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
        }
    }

    pub fn public(&self) -> &PublicKey {
        match self {
            Signer::Software(pair) => &pair.public,
        }
    }

    pub fn backend(&self) -> BackendKind {
        match self {
            Signer::Software(_) => BackendKind::Software,
        }
    }

    /// The raw JWS signature of `message` (fixed-size `r || s` for ECDSA).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self {
            Signer::Software(pair) => pair.sign(message),
        }
    }
}

/// How the database holds the private half of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// AES-256-GCM under the master key, the kid as associated data.
    Sealed(Vec<u8>),
}

/// A key just generated or imported: what the database stores of it.
#[derive(Debug, Clone)]
pub struct MadeKey {
    pub algorithm: Algorithm,
    pub public: PublicKey,
    pub held: Held,
}

impl MadeKey {
    pub fn backend(&self) -> BackendKind {
        match self.held {
            Held::Sealed(_) => BackendKind::Software,
        }
    }
}

/// Where new keys are made, and how stored keys are opened for signing.
#[derive(Clone)]
pub struct KeyBackend {
    master_key: MasterKey,
}

impl KeyBackend {
    pub fn software(master_key: MasterKey) -> Self {
        Self { master_key }
    }

    pub fn master_key(&self) -> &MasterKey {
        &self.master_key
    }

    /// Where this backend puts new keys.
    pub fn kind(&self) -> BackendKind {
        BackendKind::Software
    }

    /// Generates a key for `kid`. CPU-heavy for RSA (seconds for 4096
    /// bits): call it from a blocking thread.
    pub fn generate(&self, kid: &str, algorithm: Algorithm) -> Result<MadeKey, KeyError> {
        software::seal(&self.master_key, kid, KeyPair::generate(algorithm)?)
    }

    /// Takes an imported key pair in for `kid`.
    pub fn import(&self, kid: &str, pair: KeyPair) -> Result<MadeKey, KeyError> {
        software::seal(&self.master_key, kid, pair)
    }

    /// Opens a stored key for signing.
    pub fn open(&self, kid: &str, algorithm: Algorithm, held: &Held) -> anyhow::Result<Signer> {
        match held {
            Held::Sealed(sealed) => {
                software::open(&self.master_key, kid, algorithm, sealed).map(Signer::Software)
            }
        }
    }
}
