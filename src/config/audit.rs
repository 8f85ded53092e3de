//! `[audit]`: group-commit pacing and the pruning schedule (the retention
//! bounds themselves live in the database, settable through the API).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Seconds between pruning passes.
    pub prune_interval_secs: u64,
    /// Under load, at most one audit commit starts per this many
    /// milliseconds, unless `commit_batch` events are already waiting; 0
    /// commits whatever is queued as soon as the previous commit ends.
    pub commit_interval_ms: u64,
    /// Events that make a batch worth committing at once.
    pub commit_batch: usize,
    /// Audit events queued for the writer at most: past it, requests that
    /// wait for their record wait for room, and introspection records are
    /// dropped (and counted) once less than a quarter is free.
    pub queue_capacity: usize,
}

/// Queue depth before writers wait: back-pressure instead of unbounded
/// memory (the default of `audit.queue_capacity`).
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            prune_interval_secs: 3600,
            commit_interval_ms: 1,
            commit_batch: 8,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

impl AuditSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.prune_interval_secs == 0 {
            return Err("audit.prune_interval_secs must be at least 1".into());
        }
        if self.commit_interval_ms > 1000 {
            return Err(format!(
                "audit.commit_interval_ms is {}: every token waits up to that long for its \
                 audit record; use at most 1000 (0 turns pacing off)",
                self.commit_interval_ms
            ));
        }
        if self.commit_batch == 0 {
            return Err("audit.commit_batch must be at least 1".into());
        }
        if !(16..=1_048_576).contains(&self.queue_capacity) {
            return Err(format!(
                "audit.queue_capacity is {}: use 16 to 1048576 events",
                self.queue_capacity
            ));
        }
        Ok(())
    }

    /// The writer's pacing.
    pub fn pacing(&self) -> CommitPacing {
        CommitPacing {
            interval: Duration::from_millis(self.commit_interval_ms),
            enough: self.commit_batch,
        }
    }
}

/// How the audit writer paces its commits; set by `audit.commit_interval_ms` and `audit.commit_batch`.
#[derive(Debug, Clone, Copy)]
pub struct CommitPacing {
    /// At most one commit started per interval while events trickle in.
    /// Zero: commit whatever is queued as soon as the previous commit ends.
    pub interval: Duration,
    /// The batch worth a commit: one this large never waits.
    pub enough: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_bounds_say_how_to_fix_them() {
        let long = AuditSettings {
            commit_interval_ms: 5000,
            ..AuditSettings::default()
        };
        let e = long.validate().unwrap_err();
        assert!(
            e.contains("at most 1000") && e.contains("0 turns pacing off"),
            "{e}"
        );
        let none = AuditSettings {
            commit_batch: 0,
            ..AuditSettings::default()
        };
        assert!(none.validate().unwrap_err().contains("commit_batch"));
        assert!(AuditSettings::default().validate().is_ok());
        for queue_capacity in [0, 15, 1_048_577] {
            let bad = AuditSettings {
                queue_capacity,
                ..AuditSettings::default()
            };
            assert!(bad.validate().unwrap_err().contains("16 to 1048576"));
        }
    }
}
