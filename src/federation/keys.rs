//! One trusted issuer's signing keys, cached by this replica: fetched when
//! first needed, kept as long as the JWKS response's `max-age` allows
//! (within bounds), refetched at most once per interval for a token with an
//! unknown kid, and served past expiry for a bounded time while the issuer
//! cannot be reached.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use super::documents::{self, KeySet};
use super::fetch;
use super::{FederationError, TrustedIssuer};
use crate::clock::Clock;
use crate::config::FederationSettings;
use crate::metrics::Metrics;

/// Tokens whose signature this replica has checked, per key set, at most.
const MAX_VERIFIED: usize = 4096;

/// A verified token's claims, by the SHA-256 of the token.
type Verified = HashMap<[u8; 32], Arc<Map<String, Value>>>;

/// A key set and how long it may be used.
pub struct Cached {
    pub set: KeySet,
    fresh_until_ms: i64,
    /// The claims of tokens that verified under this set, by the SHA-256 of
    /// the whole token. A workload presents the same token until its
    /// platform replaces it (a Kubernetes pod for most of an hour), and the
    /// signature of the same bytes under the same keys cannot change, so it
    /// is checked once; the claims (time, audience, age) are checked on
    /// every use. A new set starts empty, so a key the issuer withdrew
    /// stops counting with the set that no longer has it.
    verified: RwLock<Verified>,
}

impl Cached {
    pub fn verified(&self, digest: &[u8; 32]) -> Option<Arc<Map<String, Value>>> {
        self.verified
            .read()
            .expect("verified lock")
            .get(digest)
            .cloned()
    }

    pub fn remember(&self, digest: [u8; 32], claims: Arc<Map<String, Value>>) {
        let mut verified = self.verified.write().expect("verified lock");
        if verified.len() >= MAX_VERIFIED {
            verified.clear();
        }
        verified.insert(digest, claims);
    }
}

#[derive(Default)]
struct Attempts {
    /// The last fetch, and whether it failed: a failing issuer is asked
    /// again only after the refetch interval.
    last_ms: Option<i64>,
    last_failed: bool,
    /// The last refetch for an unknown kid.
    last_kid_refetch_ms: Option<i64>,
}

pub(super) struct IssuerKeys {
    pub config: Arc<TrustedIssuer>,
    client: Result<reqwest::Client, String>,
    current: RwLock<Option<Arc<Cached>>>,
    /// Held while fetching, so concurrent requests wait for one fetch.
    attempts: tokio::sync::Mutex<Attempts>,
}

/// What a lookup needs from the replica.
pub(super) struct Context<'a> {
    pub settings: &'a FederationSettings,
    pub clock: &'a Clock,
    pub metrics: &'a Metrics,
}

impl IssuerKeys {
    pub fn new(config: Arc<TrustedIssuer>, settings: &FederationSettings) -> Self {
        let timeout = std::time::Duration::from_secs(settings.fetch_timeout_secs);
        Self {
            client: fetch::client(config.ca_pem.as_deref(), timeout),
            config,
            current: RwLock::new(None),
            attempts: tokio::sync::Mutex::new(Attempts::default()),
        }
    }

    fn current(&self) -> Option<Arc<Cached>> {
        self.current.read().expect("key cache lock").clone()
    }

    /// The current set while it is fresh, for a token already verified.
    pub fn fresh(&self, now_ms: i64) -> Option<Arc<Cached>> {
        self.current().filter(|c| now_ms < c.fresh_until_ms)
    }

    /// The key set to check a token with `kid` against: the cached one
    /// while fresh and holding the kid, else after a fetch if one is due.
    /// A set that lacks the kid is returned as is; the caller refuses.
    pub async fn keys_for(
        &self,
        kid: Option<&str>,
        cx: &Context<'_>,
    ) -> Result<Arc<Cached>, FederationError> {
        let fresh = |c: &Cached, now: i64| now < c.fresh_until_ms && c.set.has(kid);
        if let Some(cached) = self.current().filter(|c| fresh(c, cx.clock.now_ms())) {
            return Ok(cached);
        }
        let mut attempts = self.attempts.lock().await;
        let now = cx.clock.now_ms();
        let cached = self.current();
        if let Some(cached) = cached.as_ref().filter(|c| fresh(c, now)) {
            return Ok(cached.clone());
        }
        let interval = (cx.settings.jwks_refetch_interval_secs * 1000) as i64;
        let recently = |t: Option<i64>| t.is_some_and(|t| now - t < interval);
        let expired = cached.as_ref().is_none_or(|c| now >= c.fresh_until_ms);
        let due = if attempts.last_failed && recently(attempts.last_ms) {
            false
        } else if expired {
            true
        } else {
            !recently(attempts.last_kid_refetch_ms)
        };
        let mut failure = None;
        if due {
            if !expired {
                attempts.last_kid_refetch_ms = Some(now);
            }
            attempts.last_ms = Some(now);
            match self.fetch(cx).await {
                Ok(fetched) => {
                    attempts.last_failed = false;
                    *self.current.write().expect("key cache lock") = Some(fetched);
                }
                Err(reason) => {
                    attempts.last_failed = true;
                    failure = Some(reason);
                }
            }
        }
        self.usable(now, failure, cx)
    }

    /// The set to use after a fetch attempt: the current one unless it is
    /// missing or stale past the bound, which is asapd's trouble (503).
    fn usable(
        &self,
        now: i64,
        failure: Option<String>,
        cx: &Context<'_>,
    ) -> Result<Arc<Cached>, FederationError> {
        let stale_ms = (cx.settings.jwks_stale_secs * 1000) as i64;
        let name = &self.config.name;
        match self.current() {
            Some(c) if now < c.fresh_until_ms.saturating_add(stale_ms) => {
                if let Some(reason) = failure {
                    tracing::warn!(issuer = %name, reason, "issuer keys could not be refreshed; serving the last good set");
                    cx.metrics
                        .federation_jwks_fetches
                        .with_label_values(&[name, "stale"])
                        .inc();
                }
                Ok(c)
            }
            _ => {
                let why =
                    failure.unwrap_or_else(|| "the last fetch failed; retrying shortly".into());
                Err(FederationError::Unavailable(format!(
                    "the signing keys of trusted issuer {name} are unavailable: {why}"
                )))
            }
        }
    }

    async fn fetch(&self, cx: &Context<'_>) -> Result<Arc<Cached>, String> {
        let result = self.fetch_set(cx).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        cx.metrics
            .federation_jwks_fetches
            .with_label_values(&[&self.config.name, outcome])
            .inc();
        if let Err(reason) = &result {
            tracing::warn!(issuer = %self.config.name, reason, "fetching a trusted issuer's keys failed");
        }
        result
    }

    async fn fetch_set(&self, cx: &Context<'_>) -> Result<Arc<Cached>, String> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        let max = cx.settings.max_document_bytes;
        let jwks_uri = match &self.config.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let url = discovery_url(&self.config.issuer);
                let doc = fetch::get(client, &url, max).await?;
                documents::parse_discovery(&doc.body, &self.config.issuer)?
            }
        };
        let doc = fetch::get(client, &jwks_uri, max).await?;
        let set = documents::parse_jwks(&doc.body)?;
        let s = cx.settings;
        let secs = doc
            .cache_control
            .as_deref()
            .and_then(documents::max_age)
            .unwrap_or(s.jwks_cache_default_secs)
            .clamp(s.jwks_cache_min_secs, s.jwks_cache_max_secs);
        Ok(Arc::new(Cached {
            set,
            fresh_until_ms: cx.clock.now_ms().saturating_add((secs * 1000) as i64),
            verified: RwLock::new(HashMap::new()),
        }))
    }
}

/// OIDC Discovery §4: the issuer with `/.well-known/openid-configuration`
/// appended (a trailing `/` of the issuer not doubled).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}
