//! What every request handler gets: passed explicitly, never global.

use std::sync::Arc;

use crate::audit::Auditor;
use crate::caller_cache::CallerCache;
use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::signing_pool::SigningPool;
use crate::domain::policy::Policy;
use crate::federation::Federation;
use crate::fleet_limits::FleetLimits;
use crate::keyring::KeyRing;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use crate::revoked::RevokedTokens;
use crate::store::secrets::Credentials;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub keyring: Arc<KeyRing>,
    pub settings: Arc<Settings>,
    pub clock: Clock,
    pub audit: Auditor,
    pub metrics: Arc<Metrics>,
    /// Credentials and policies of callers, cached per replica.
    pub callers: CallerCache<Credentials, Policy>,
    /// Per-caller token and per-IP failed-auth limits of this replica.
    pub limits: RateLimits,
    /// This replica's slices of callers' fleet-wide allowances (PostgreSQL).
    pub fleet_limits: FleetLimits,
    /// Bounds concurrent RSA signatures (two per core).
    pub signing: SigningPool,
    /// Revoked jtis of unexpired tokens, kept current like the key ring.
    pub revoked: Arc<RevokedTokens>,
    /// Trusted issuers, bindings and issuers' keys, cached per replica.
    pub federation: Federation,
}
