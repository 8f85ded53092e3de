//! Workload identity federation, as each replica holds it: the trusted
//! issuers and the callers' bindings (a copy of the database, reloaded on
//! change like the caller cache), each issuer's signing keys (fetched over
//! HTTPS and cached), and the offline check of a presented token against
//! them. No call to the issuer is made per request.

pub mod documents;
mod fetch;
mod keys;
mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::config::FederationSettings;
use crate::domain::federation::FederatedBinding;
use crate::domain::names::IssuerName;
use crate::metrics::Metrics;
use crate::store::federation as store;
use crate::store::{Store, StoreError};

pub use keys::discovery_url;
use keys::IssuerKeys;

/// A trusted issuer as configured: its row. Keys cached for it are kept
/// while the row is unchanged, and fetched again after any update.
pub use crate::store::federation::IssuerRow as TrustedIssuer;

/// Why a presented token was not accepted.
#[derive(Debug)]
pub enum FederationError {
    /// The token does not check out: a failed authentication.
    Rejected(String),
    /// asapd cannot check it now (the issuer's keys cannot be had).
    Unavailable(String),
    /// The trusted issuers could not be read.
    Store(StoreError),
}

impl From<StoreError> for FederationError {
    fn from(e: StoreError) -> Self {
        FederationError::Store(e)
    }
}

/// A token that verified: its issuer's name and its claims.
pub struct Verified {
    pub issuer: String,
    pub subject: String,
    pub claims: Arc<Map<String, Value>>,
}

/// One binding of the index: the caller it names and what it requires.
struct Bound {
    caller: String,
    binding: FederatedBinding,
}

/// A snapshot of the trusted issuers and bindings.
pub struct Trust {
    by_iss: HashMap<String, Arc<IssuerKeys>>,
    /// (issuer name, subject) → bindings.
    bindings: HashMap<(String, String), Vec<Bound>>,
}

impl Trust {
    /// The callers whose bindings admit a verified token, each once.
    pub fn callers_for(&self, token: &Verified) -> Vec<String> {
        let key = (token.issuer.clone(), token.subject.clone());
        let mut callers: Vec<String> = self
            .bindings
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|b| b.binding.admits(&token.claims))
            .map(|b| b.caller.clone())
            .collect();
        callers.sort();
        callers.dedup();
        callers
    }
}

struct Snapshot {
    generation: u64,
    loaded: Instant,
    trust: Arc<Trust>,
}

pub struct Federation {
    settings: FederationSettings,
    clock: Clock,
    metrics: Arc<Metrics>,
    /// How long a snapshot lives without a change notification (changes
    /// made through another replica without one still apply in this time).
    ttl: Duration,
    generation: AtomicU64,
    snapshot: RwLock<Option<Snapshot>>,
    loading: tokio::sync::Mutex<()>,
}

impl Federation {
    pub fn new(
        settings: FederationSettings,
        clock: Clock,
        metrics: Arc<Metrics>,
        ttl: Duration,
    ) -> Self {
        Self {
            settings,
            clock,
            metrics,
            ttl,
            generation: AtomicU64::new(0),
            snapshot: RwLock::new(None),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// Call after committing a change to issuers or bindings (or hearing
    /// of one): the next request reloads them.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The current snapshot, loaded from the database when stale.
    pub async fn trust(&self, db: &Store) -> Result<Arc<Trust>, StoreError> {
        if let Some(trust) = self.fresh() {
            return Ok(trust);
        }
        let _loading = self.loading.lock().await;
        if let Some(trust) = self.fresh() {
            return Ok(trust);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let trust = Arc::new(self.load(db).await?);
        *self.snapshot.write().expect("federation lock") = Some(Snapshot {
            generation,
            loaded: Instant::now(),
            trust: trust.clone(),
        });
        Ok(trust)
    }

    fn fresh(&self) -> Option<Arc<Trust>> {
        let current = self.generation.load(Ordering::Acquire);
        let snapshot = self.snapshot.read().expect("federation lock");
        snapshot
            .as_ref()
            .filter(|s| s.generation == current && s.loaded.elapsed() < self.ttl)
            .map(|s| s.trust.clone())
    }

    async fn load(&self, db: &Store) -> Result<Trust, StoreError> {
        let (issuers, bindings) = {
            let mut conn = db.acquire().await?;
            (
                store::list_issuers(&mut conn).await?,
                store::all_bindings(&mut conn).await?,
            )
        };
        // Keys cached for an issuer whose settings did not change are kept:
        // a new binding must not cost every issuer a refetch.
        let previous: HashMap<String, Arc<IssuerKeys>> = self
            .snapshot
            .read()
            .expect("federation lock")
            .as_ref()
            .map(|s| {
                s.trust
                    .by_iss
                    .values()
                    .map(|k| (k.config.name.clone(), k.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut by_iss = HashMap::new();
        for row in issuers {
            let config = row;
            let keys = match previous.get(&config.name) {
                Some(kept) if *kept.config == config => kept.clone(),
                _ => Arc::new(IssuerKeys::new(Arc::new(config.clone()), &self.settings)),
            };
            by_iss.insert(config.issuer.clone(), keys);
        }
        let mut index: HashMap<(String, String), Vec<Bound>> = HashMap::new();
        for row in bindings {
            let Ok(issuer) = IssuerName::parse(row.issuer.as_str()) else {
                continue;
            };
            index
                .entry((row.issuer.clone(), row.subject.clone()))
                .or_default()
                .push(Bound {
                    caller: row.caller,
                    binding: FederatedBinding {
                        issuer,
                        subject: row.subject,
                        claims: row.claims,
                    },
                });
        }
        Ok(Trust {
            by_iss,
            bindings: index,
        })
    }

    /// Checks `token`, whose unverified `iss` is `iss`, against the trusted
    /// issuer of that `iss`. `Ok(None)`: no trusted issuer has it.
    pub async fn verify(
        &self,
        db: &Store,
        token: &str,
        iss: &str,
    ) -> Result<Option<(Arc<Trust>, Verified)>, FederationError> {
        let trust = self.trust(db).await?;
        let Some(keys) = trust.by_iss.get(iss).cloned() else {
            return Ok(None);
        };
        let cx = keys::Context {
            settings: &self.settings,
            clock: &self.clock,
            metrics: &self.metrics,
        };
        let verified = verify::verify(&keys, token, &cx).await?;
        Ok(Some((trust, verified)))
    }
}
