//! `asapd rekey`: re-encrypts everything sealed under a master key other
//! than the current one, so a previous key can leave the configuration.
//!
//! Safe while replicas serve: kids and public keys do not change, so
//! nothing is announced, and every row is replaced only if it still holds
//! the blob that was read (a compare on the old value), so a concurrent
//! rekey or a key change is never overwritten. Replicas configured with the
//! new key as current and the old one as previous read both forms.
//! Resumable: rows already under the current key are skipped, so running
//! it again after an interruption finishes the job.

use serde::Serialize;
use serde_json::json;

use crate::audit::{self, action, AuditEvent, Origin, Outcome};
use crate::state::AppState;
use crate::store::{keys, StoreError};

use super::bootstrap;

/// Rows re-encrypted per transaction: short transactions keep SQLite's
/// writer lock and PostgreSQL's row locks brief for serving replicas.
pub const BATCH: i64 = 100;

/// What a run did, printed by `asapd rekey` and kept in the audit record.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RekeySummary {
    /// The id of the master key everything is now sealed under.
    pub key_id: String,
    /// Private keys looked at.
    pub keys_total: u64,
    /// Private keys re-encrypted by this run.
    pub keys_rekeyed: u64,
    /// Private keys already under the current key (an earlier run, or
    /// created since the rotation began).
    pub keys_already_current: u64,
    /// Private keys changed by someone else between read and write; they
    /// were sealed under the current key by whoever changed them.
    pub keys_changed_concurrently: u64,
    /// Whether the start-up check value was re-sealed.
    pub check_value_rekeyed: bool,
    /// Transactions committed.
    pub batches: u64,
}

/// Re-encrypts every private key, then the check value, under the current
/// master key, in batches of `batch`; audited as `master_key.rotated`.
pub async fn run(state: &AppState, batch: i64) -> anyhow::Result<RekeySummary> {
    let key = state.keyring.master_key();
    let mut summary = RekeySummary {
        key_id: key.key_id(),
        ..RekeySummary::default()
    };
    let mut after = String::new();
    loop {
        let page = {
            let mut conn = state.store.acquire().await?;
            keys::sealed_page(&mut conn, &after, batch).await?
        };
        let Some((last, _)) = page.last() else { break };
        after = last.clone();
        let mut tx = state.store.begin().await?;
        for (kid, sealed) in &page {
            summary.keys_total += 1;
            if key.is_current(sealed) {
                summary.keys_already_current += 1;
                continue;
            }
            let plain = key.open(sealed, kid.as_bytes()).map_err(|_| {
                anyhow::anyhow!(
                    "the private key of {kid} opens under none of the configured master keys \
                     (it names key {}); add the key it was sealed with to previous_master_keys",
                    crate::crypto::MasterKey::sealed_key_id(sealed)
                        .unwrap_or_else(|| "none: the first format".into())
                )
            })?;
            let resealed = key.seal(&plain, kid.as_bytes());
            if keys::reseal(&mut tx, kid, sealed, &resealed).await? {
                summary.keys_rekeyed += 1;
            } else {
                summary.keys_changed_concurrently += 1;
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        summary.batches += 1;
    }
    let mut tx = state.store.begin().await?;
    summary.check_value_rekeyed = bootstrap::reseal_check(&mut tx, key).await?;
    let event = AuditEvent::new(
        &Origin::system(),
        state.clock.now_ms(),
        action::MASTER_KEY_ROTATED,
        Outcome::Success,
    )
    .target(format!("master_key:{}", summary.key_id))
    .detail(json!(summary));
    audit::record_in(&mut tx, event).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(summary)
}
