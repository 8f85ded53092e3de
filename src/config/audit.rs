//! `[audit]`: the pruning schedule (the retention bounds themselves live in
//! the database, settable through the API).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Seconds between pruning passes.
    pub prune_interval_secs: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            prune_interval_secs: 3600,
        }
    }
}

impl AuditSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.prune_interval_secs == 0 {
            return Err("audit.prune_interval_secs must be at least 1".into());
        }
        Ok(())
    }
}
