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
    /// Passes over the keys after the first, each re-sealing what it found.
    pub check_passes: u64,
    /// Private keys the check passes found under a previous key: added
    /// behind the first pass by a replica still sealing under it.
    pub keys_found_by_check: u64,
    /// Whether the last check pass found every private key under the
    /// current master key; only then may previous keys be dropped.
    pub verified: bool,
    /// Keys held in a PKCS#11 token: never sealed, so not part of a rekey,
    /// and left as they are.
    pub keys_in_token: u64,
}

/// Passes over the keys after the first before `rekey` gives up on
/// seeing one that finds every row current: a replica that still seals
/// under the old key keeps adding rows, and only a restart stops it.
pub const CHECK_PASSES: u64 = 3;

/// What one pass over the keys table saw.
#[derive(Debug, Default, Clone, Copy)]
struct Pass {
    total: u64,
    rekeyed: u64,
    already_current: u64,
    changed_concurrently: u64,
    batches: u64,
}

impl Pass {
    /// Rows this pass found under a key other than the current one.
    fn found_previous(&self) -> u64 {
        self.total - self.already_current
    }
}

/// Re-encrypts every private key, then the check value, under the current
/// master key, in batches of `batch`; audited as `master_key.rotated`.
///
/// A replica still running with the old key as current can add a key
/// behind the cursor while the first pass runs, so the run ends with check
/// passes, each sealing what it finds, until one finds every row current.
/// Only then is `verified` true and previous keys safe to drop.
pub async fn run(state: &AppState, batch: i64) -> anyhow::Result<RekeySummary> {
    let key = state.keyring.master_key();
    let first = pass(state, batch).await?;
    let mut summary = RekeySummary {
        key_id: key.key_id(),
        keys_total: first.total,
        keys_rekeyed: first.rekeyed,
        keys_already_current: first.already_current,
        keys_changed_concurrently: first.changed_concurrently,
        batches: first.batches,
        ..RekeySummary::default()
    };
    while summary.check_passes < CHECK_PASSES {
        let check = pass(state, batch).await?;
        summary.check_passes += 1;
        summary.batches += check.batches;
        summary.keys_found_by_check += check.found_previous();
        if check.found_previous() == 0 {
            summary.verified = true;
            break;
        }
    }
    let in_token = keys::count_in_token(&mut *state.store.acquire().await?).await?;
    summary.keys_in_token = u64::try_from(in_token).unwrap_or_default();
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

/// One pass over every private key in kid order, re-sealing those not
/// under the current key, one transaction per page.
async fn pass(state: &AppState, batch: i64) -> anyhow::Result<Pass> {
    let key = state.keyring.master_key();
    let mut counts = Pass::default();
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
            counts.total += 1;
            if key.is_current(sealed) {
                counts.already_current += 1;
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
                counts.rekeyed += 1;
            } else {
                counts.changed_concurrently += 1;
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        counts.batches += 1;
    }
    Ok(counts)
}

impl RekeySummary {
    /// What the operator may do next, from what the check passes found.
    pub fn advice(&self) -> String {
        let token = match self.keys_in_token {
            0 => String::new(),
            n => format!(
                " {n} key(s) held in the PKCS#11 token are not part of a rekey: they were \
                 never sealed under a master key, and were left as they are."
            ),
        };
        let advice = if self.verified {
            format!(
                "A final pass found every private key sealed under master key {}: every \
                 replica can now drop previous_master_keys.",
                self.key_id
            )
        } else {
            format!(
                "Keep previous_master_keys: {} check passes each still found private keys \
                 sealed under a previous master key ({} in all), so some replica still seals \
                 new keys under the old one. Restart every replica with master key {} as \
                 current, then run asapd rekey again.",
                self.check_passes, self.keys_found_by_check, self.key_id
            )
        };
        advice + &token
    }
}
