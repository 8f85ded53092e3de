//! `[keys]`: algorithms, rotation and publication of signing keys.

use serde::{Deserialize, Serialize};

use crate::domain::algorithm::Algorithm;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    /// Algorithm for callers created without one.
    pub default_algorithm: Algorithm,
    /// Default rotation period of a caller's signing key, in seconds.
    pub rotation_period_secs: i64,
    /// `Cache-Control: max-age` on published keys and the JWKS, in seconds.
    pub cache_max_age_secs: u32,
    /// How often each replica reloads the key ring from the database, so
    /// keys created or revoked by another replica are seen, in seconds.
    pub refresh_interval_secs: u64,
    /// Where new signing keys are made and held: sealed in the database
    /// (`software`) or inside a PKCS#11 token (`pkcs11`, see `[pkcs11]`).
    pub backend: KeyBackendSetting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyBackendSetting {
    #[default]
    Software,
    Pkcs11,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            default_algorithm: Algorithm::ES256,
            rotation_period_secs: 30 * 86_400,
            cache_max_age_secs: 300,
            refresh_interval_secs: 10,
            backend: KeyBackendSetting::Software,
        }
    }
}

impl KeySettings {
    pub fn validate(&self) -> Result<(), String> {
        crate::domain::caller::RotationPeriod::try_from(self.rotation_period_secs)
            .map_err(|e| format!("keys.rotation_period_secs: {e}"))?;
        if self.refresh_interval_secs == 0 {
            return Err("keys.refresh_interval_secs must be at least 1".into());
        }
        Ok(())
    }
}
