//! The software signer: key pairs sealed under the master key in the
//! database, decrypted once into the key ring and kept parsed
//! (docs/ARCHITECTURE.md, "Invariants").

use anyhow::Context;

use super::{Held, MadeKey};
use crate::crypto::keypair::{KeyError, KeyPair};
use crate::crypto::master_key::MasterKey;
use crate::domain::algorithm::Algorithm;

/// Seals `pair` under the master key, the kid as associated data, so a
/// sealed key copied to another kid's row does not open.
pub fn seal(master_key: &MasterKey, kid: &str, pair: KeyPair) -> Result<MadeKey, KeyError> {
    Ok(MadeKey {
        algorithm: pair.algorithm,
        held: Held::Sealed(master_key.seal(pair.pkcs8_der(), kid.as_bytes())),
        public: pair.public,
    })
}

/// Decrypts and parses a sealed private key.
pub fn open(
    master_key: &MasterKey,
    kid: &str,
    algorithm: Algorithm,
    sealed: &[u8],
) -> anyhow::Result<KeyPair> {
    let der = master_key
        .open(sealed, kid.as_bytes())
        .with_context(|| format!("private key of {kid} does not decrypt with this master key"))?;
    KeyPair::from_pkcs8_der(algorithm, &der)
        .with_context(|| format!("private key of {kid} does not parse"))
}
