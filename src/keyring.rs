//! The in-memory key ring: published public keys (PEM and JWKS, encoded
//! once, and parsed once for verifying) and each caller's parsed active
//! signing key.
//!
//! The database is the source of truth; every replica reloads its ring
//! after its own changes and on a timer, so changes made by another replica
//! show up within `keys.refresh_interval_secs`. A kid's key never changes,
//! so entries are reused across reloads and each private key is decrypted
//! and parsed once.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use actix_web::web::Bytes;
use anyhow::Context;
use serde_json::json;

use crate::crypto::signer::Held;
use crate::crypto::{JwsSigner, JwsVerifier, KeyBackend, MasterKey, PublicKey};
use crate::domain::algorithm::Algorithm;
use crate::domain::key::KeyState;
use crate::store::{keys, keys::KeyRow, Store};

/// A key verifiers can resolve.
#[derive(Debug)]
pub struct PublishedKey {
    pub kid: String,
    pub caller: String,
    pub algorithm: Algorithm,
    pub state: KeyState,
    pub public: PublicKey,
    /// The SPKI PEM body, ready to send.
    pub pem: Bytes,
    /// Its entity tag: derived from the content, so every replica gives the
    /// same one for the same key.
    pub etag: String,
    /// Parsed once, to verify asapd's own tokens (Bearer authentication,
    /// introspection) without parsing the key per token.
    pub verifier: JwsVerifier,
}

#[derive(Default)]
pub struct Snapshot {
    pub published: HashMap<String, Arc<PublishedKey>>,
    /// Each caller's active key, parsed and ready to sign, by caller name.
    pub signers: HashMap<String, Arc<JwsSigner>>,
    /// `{"keys": [...]}`, sorted by kid, serialised once per reload.
    pub jwks: Bytes,
    pub jwks_etag: String,
}

/// A strong entity tag for `body`: part of its SHA-256, quoted.
pub fn etag_of(body: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

pub struct KeyRing {
    current: RwLock<Arc<Snapshot>>,
    reload_lock: tokio::sync::Mutex<()>,
    backend: KeyBackend,
    /// Bounds the database lookups of kids the ring does not hold: the key
    /// repository is public, and unknown kids cost nothing else.
    miss_lookups: governor::DefaultDirectRateLimiter,
}

/// Database lookups of kids missing from the ring, per second and replica.
const MISS_LOOKUPS_PER_SECOND: u32 = 50;

impl KeyRing {
    pub fn new(backend: KeyBackend) -> Self {
        Self {
            current: RwLock::new(Arc::new(Snapshot {
                jwks: Bytes::from_static(br#"{"keys":[]}"#),
                jwks_etag: etag_of(br#"{"keys":[]}"#),
                ..Snapshot::default()
            })),
            reload_lock: tokio::sync::Mutex::new(()),
            backend,
            miss_lookups: governor::RateLimiter::direct(governor::Quota::per_second(
                std::num::NonZeroU32::new(MISS_LOOKUPS_PER_SECOND).expect("non-zero"),
            )),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("key ring lock poisoned").clone()
    }

    pub fn master_key(&self) -> &MasterKey {
        self.backend.master_key()
    }

    /// Where new keys are made and stored keys are opened.
    pub fn backend(&self) -> &KeyBackend {
        &self.backend
    }

    /// A key that is published in the database but not yet in this ring:
    /// another replica has just created or rotated it in, and the change
    /// notification is still on its way. A verifier that fetches the kid
    /// of a token signed a moment ago must get it from every replica, not
    /// a 404 from the one that has not reloaded yet. Lookups are rate
    /// limited; past the limit the answer is the ring's (none).
    pub async fn find_unloaded(
        &self,
        store: &Store,
        kid: &str,
    ) -> anyhow::Result<Option<Arc<PublishedKey>>> {
        if self.miss_lookups.check().is_err() {
            return Ok(None);
        }
        let row = {
            let mut conn = store.acquire().await?;
            keys::get_published(&mut conn, kid).await?
        };
        row.map(|row| {
            let state = KeyState::from_str(&row.state).map_err(anyhow::Error::msg)?;
            let algorithm = Algorithm::from_str(&row.algorithm).map_err(anyhow::Error::msg)?;
            published_key(&row, state, algorithm).map(Arc::new)
        })
        .transpose()
    }

    /// Rebuilds the ring from the database. Fails if a private key does
    /// not decrypt, which at start means a wrong master key.
    pub async fn reload(&self, store: &Store) -> anyhow::Result<()> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let rows = {
            let mut conn = store.acquire().await?;
            keys::list_published(&mut conn).await?
        };
        let previous = self.snapshot();
        let backend = self.backend.clone();
        // Decrypting and parsing RSA keys is CPU work: keep it off the
        // async workers.
        let next = tokio::task::spawn_blocking(move || build(&previous, rows, &backend))
            .await
            .context("key ring rebuild panicked")??;
        *self.current.write().expect("key ring lock poisoned") = Arc::new(next);
        Ok(())
    }
}

fn build(previous: &Snapshot, rows: Vec<KeyRow>, backend: &KeyBackend) -> anyhow::Result<Snapshot> {
    let mut published = HashMap::with_capacity(rows.len());
    let mut signers = HashMap::new();
    for row in rows {
        let state = KeyState::from_str(&row.state).map_err(anyhow::Error::msg)?;
        let algorithm = Algorithm::from_str(&row.algorithm).map_err(anyhow::Error::msg)?;
        let entry = match previous.published.get(&row.kid) {
            Some(old) if old.state == state => old.clone(),
            Some(old) => Arc::new(PublishedKey {
                state,
                kid: old.kid.clone(),
                caller: old.caller.clone(),
                algorithm: old.algorithm,
                public: old.public.clone(),
                pem: old.pem.clone(),
                etag: old.etag.clone(),
                verifier: old.verifier.clone(),
            }),
            None => Arc::new(published_key(&row, state, algorithm)?),
        };
        if state == KeyState::Active {
            let signer = match previous.signers.get(&row.caller) {
                Some(s) if s.kid == row.kid => s.clone(),
                _ => Arc::new(open_signer(&row, algorithm, &entry.public, backend)?),
            };
            signers.insert(row.caller.clone(), signer);
        }
        published.insert(row.kid.clone(), entry);
    }
    let jwks = jwks_document(
        published
            .values()
            .map(|k| (k.kid.as_str(), &k.public, k.algorithm)),
    )?;
    Ok(Snapshot {
        published,
        signers,
        jwks_etag: etag_of(&jwks),
        jwks,
    })
}

/// `{"keys": [...]}` of `keys`, sorted by kid: the exact bytes of
/// `/.well-known/jwks.json`, which `asapd mirror` writes too.
pub fn jwks_document<'a>(
    keys: impl Iterator<Item = (&'a str, &'a PublicKey, Algorithm)>,
) -> anyhow::Result<Bytes> {
    let mut jwks: Vec<_> = keys
        .map(|(kid, public, algorithm)| public.jwk(kid, algorithm))
        .collect();
    jwks.sort_by(|a, b| a["kid"].as_str().cmp(&b["kid"].as_str()));
    Ok(Bytes::from(serde_json::to_vec(&json!({ "keys": jwks }))?))
}

/// The public side of a stored key, encoded for verifiers.
fn published_key(
    row: &KeyRow,
    state: KeyState,
    algorithm: Algorithm,
) -> anyhow::Result<PublishedKey> {
    let public = PublicKey::from_spki_der(algorithm, row.public_der.clone())
        .with_context(|| format!("public key of {}", row.kid))?;
    let verifier = JwsVerifier::new(algorithm, &public)
        .with_context(|| format!("public key of {}", row.kid))?;
    Ok(PublishedKey {
        verifier,
        etag: etag_of(public.pem.as_bytes()),
        pem: Bytes::from(public.pem.clone()),
        kid: row.kid.clone(),
        caller: row.caller.clone(),
        algorithm,
        state,
        public,
    })
}

/// Opens a stored key for signing, wherever its private half lives.
pub fn open_signer(
    row: &KeyRow,
    algorithm: Algorithm,
    public: &PublicKey,
    backend: &KeyBackend,
) -> anyhow::Result<JwsSigner> {
    let signer = backend.open(&row.kid, algorithm, &held(row)?, public)?;
    Ok(JwsSigner::new(row.kid.clone(), signer))
}

/// Where the database says the private half of `row` lives.
pub fn held(row: &KeyRow) -> anyhow::Result<Held> {
    match (row.backend.as_str(), &row.token_object_id) {
        ("software", _) => Ok(Held::Sealed(row.private_enc.clone())),
        ("pkcs11", Some(id)) => Ok(Held::Token {
            object_id: id.clone(),
        }),
        (other, _) => anyhow::bail!("key {} has an unknown backend {other:?}", row.kid),
    }
}
