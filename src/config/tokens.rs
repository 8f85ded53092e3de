//! `[tokens]`: token lifetimes, extra-claim bounds, rate limits and the
//! audience asapd itself answers to.

use serde::{Deserialize, Serialize};

use crate::domain::group::{check_audience, MAX_TOKEN_LIFETIME_SECS};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// Lifetime of a token whose request names none, in seconds. Clamped to
    /// the longest lifetime the caller's grants allow.
    pub default_lifetime_secs: u32,
    /// Largest `claims` object a request may add, in bytes of compact JSON.
    /// Tokens travel in headers; proxies commonly cap those at 8 KiB.
    pub max_claims_bytes: usize,
    /// Token requests per second per caller, unless the caller has its own
    /// `rate_limit`.
    pub rate_limit_per_second: u32,
    /// Requests a caller may make at once above the steady rate.
    pub rate_limit_burst: u32,
    /// Whom a caller's rate limit binds on PostgreSQL: the whole `fleet`
    /// (slices leased from the database, src/fleet_limits.rs), or each
    /// `replica` on its own (N replicas allow N times the quota; for
    /// measuring what the fleet limit costs). SQLite is one process: both
    /// mean the same there.
    pub rate_limit_scope: RateLimitScope,
    /// Failed authentications tolerated per source IP and minute.
    pub failed_auth_per_minute: u32,
    /// Failed authentications tolerated from one IP in a quick burst.
    pub failed_auth_burst: u32,
    /// asapd's own audience: tokens for it, issued to `admin`/`auditor`
    /// callers, are accepted as Bearer credentials by the admin API.
    pub audience: String,
    /// How far ahead of now a client assertion's `exp` may be, in seconds
    /// (RFC 7523 `private_key_jwt`). Short, since whoever holds an
    /// assertion can use it once; some clients (authlib) sign an hour.
    pub client_assertion_max_secs: u32,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            default_lifetime_secs: 60,
            max_claims_bytes: 4096,
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            rate_limit_scope: RateLimitScope::Fleet,
            failed_auth_per_minute: 60,
            failed_auth_burst: 30,
            audience: "asapd".into(),
            client_assertion_max_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitScope {
    Fleet,
    Replica,
}

impl TokenSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_TOKEN_LIFETIME_SECS).contains(&self.default_lifetime_secs) {
            return Err(format!(
                "tokens.default_lifetime_secs must be between 1 and {MAX_TOKEN_LIFETIME_SECS} \
                 (ASAP verifiers reject longer tokens), got {}",
                self.default_lifetime_secs
            ));
        }
        if !(2..=64 * 1024).contains(&self.max_claims_bytes) {
            return Err(format!(
                "tokens.max_claims_bytes must be between 2 and 65536, got {}",
                self.max_claims_bytes
            ));
        }
        for (name, value) in [
            ("rate_limit_per_second", self.rate_limit_per_second),
            ("rate_limit_burst", self.rate_limit_burst),
            ("failed_auth_per_minute", self.failed_auth_per_minute),
            ("failed_auth_burst", self.failed_auth_burst),
        ] {
            if !(1..=1_000_000).contains(&value) {
                return Err(format!(
                    "tokens.{name} must be between 1 and 1000000, got {value}"
                ));
            }
        }
        check_audience(&self.audience).map_err(|e| format!("tokens.audience: {e}"))?;
        if !(30..=MAX_TOKEN_LIFETIME_SECS).contains(&self.client_assertion_max_secs) {
            return Err(format!(
                "tokens.client_assertion_max_secs must be between 30 and \
                 {MAX_TOKEN_LIFETIME_SECS}, got {}",
                self.client_assertion_max_secs
            ));
        }
        Ok(())
    }
}
