//! `[federation]`: how each replica fetches and caches trusted issuers'
//! keys, and the clock leeway of presented tokens.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSettings {
    /// How long a fetched JWKS is used when its response has no
    /// `Cache-Control: max-age`, in seconds.
    pub jwks_cache_default_secs: u64,
    /// Bounds on an issuer's `max-age`: a tiny one would refetch per
    /// request, a huge one would keep a withdrawn key for days.
    pub jwks_cache_min_secs: u64,
    pub jwks_cache_max_secs: u64,
    /// At most one refetch per issuer in this many seconds, whether for a
    /// token with an unknown kid or after a failed fetch: a flood of forged
    /// kids must not become a flood of requests to the issuer.
    pub jwks_refetch_interval_secs: u64,
    /// How long past its expiry the last good JWKS is still used while the
    /// issuer cannot be reached.
    pub jwks_stale_secs: u64,
    /// Connect-and-read limit of one discovery or JWKS fetch.
    pub fetch_timeout_secs: u64,
    /// Largest discovery document or JWKS accepted, in bytes.
    pub max_document_bytes: usize,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: i64,
    /// An issuer's `max_token_age_secs` when it names none.
    pub default_max_token_age_secs: i64,
}

impl Default for FederationSettings {
    fn default() -> Self {
        Self {
            jwks_cache_default_secs: 300,
            jwks_cache_min_secs: 60,
            jwks_cache_max_secs: 86_400,
            jwks_refetch_interval_secs: 30,
            jwks_stale_secs: 6 * 3600,
            fetch_timeout_secs: 5,
            max_document_bytes: 256 * 1024,
            leeway_secs: 30,
            default_max_token_age_secs: 3600,
        }
    }
}

impl FederationSettings {
    pub fn validate(&self) -> Result<(), String> {
        let day = 86_400;
        let bounded = [
            ("jwks_cache_min_secs", self.jwks_cache_min_secs, 1, day),
            ("jwks_cache_max_secs", self.jwks_cache_max_secs, 1, 7 * day),
            (
                "jwks_cache_default_secs",
                self.jwks_cache_default_secs,
                1,
                7 * day,
            ),
            (
                "jwks_refetch_interval_secs",
                self.jwks_refetch_interval_secs,
                0,
                3600,
            ),
            ("jwks_stale_secs", self.jwks_stale_secs, 0, 7 * day),
            ("fetch_timeout_secs", self.fetch_timeout_secs, 1, 60),
        ];
        for (name, value, min, max) in bounded {
            if !(min..=max).contains(&value) {
                return Err(format!(
                    "federation.{name} must be between {min} and {max}, got {value}"
                ));
            }
        }
        if self.jwks_cache_min_secs > self.jwks_cache_max_secs {
            return Err(format!(
                "federation.jwks_cache_min_secs ({}) is above jwks_cache_max_secs ({})",
                self.jwks_cache_min_secs, self.jwks_cache_max_secs
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_document_bytes) {
            return Err(format!(
                "federation.max_document_bytes must be between 1024 and 16777216, got {}",
                self.max_document_bytes
            ));
        }
        if !(0..=300).contains(&self.leeway_secs) {
            return Err(format!(
                "federation.leeway_secs must be between 0 and 300, got {}",
                self.leeway_secs
            ));
        }
        if !(60..=86_400).contains(&self.default_max_token_age_secs) {
            return Err(format!(
                "federation.default_max_token_age_secs must be between 60 and 86400, got {}",
                self.default_max_token_age_secs
            ));
        }
        Ok(())
    }
}
