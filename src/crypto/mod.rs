//! Cryptography: key generation, key encoding, at-rest encryption, client
//! secrets and the dev TLS certificate. Private keys exist in the clear only
//! inside this module's types, which never print them.

pub mod ca_pem;
pub mod jws;
pub mod keypair;
pub mod master_key;
pub mod public_import;
pub mod secret;
pub mod signer;
pub mod signing_pool;
pub mod tls;

pub use jws::{JwsSigner, JwsVerifier};
pub use keypair::{KeyPair, PublicKey};
pub use master_key::MasterKey;
pub use signer::{KeyBackend, Signer};
