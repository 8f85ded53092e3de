//! First start: the master-key check and the first admin.

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::crypto::MasterKey;
use crate::domain::names::{CallerName, GroupName};
use crate::service::callers::{self, CallerSpec};
use crate::state::AppState;
use crate::store::{callers as caller_store, meta, Store};

/// Where the check value lives in `meta`; `rekey` re-seals it.
pub(crate) const CHECK_NAME: &str = "master_key_check";
pub(crate) const CHECK_AAD: &[u8] = b"asapd:master-key-check";
const CHECK_PLAINTEXT: &[u8] = b"asapd master key check v1";

/// Fails unless `key` (its current or one of its previous keys) is a master
/// key this database was set up with. The first start records a check
/// value, so a wrong key is caught at start, before it could write keys
/// nobody can read. A check value still under a previous key means a
/// rotation is under way: allowed, with a reminder to finish it.
pub async fn verify_master_key(store: &Store, key: &MasterKey) -> anyhow::Result<()> {
    let mut conn = store.acquire().await?;
    let sealed = STANDARD.encode(key.seal(CHECK_PLAINTEXT, CHECK_AAD));
    meta::put_if_absent(&mut conn, CHECK_NAME, &sealed).await?;
    let stored = meta::get(&mut conn, CHECK_NAME)
        .await?
        .context("master key check vanished")?;
    let blob = STANDARD
        .decode(stored)
        .context("master key check is not base64")?;
    match key.open(&blob, CHECK_AAD) {
        Ok(plain) if plain.as_slice() == CHECK_PLAINTEXT => {
            if !key.is_current(&blob) {
                tracing::warn!(
                    current_key_id = %key.key_id(),
                    "this database is still sealed under a previous master key; run \
                     `asapd rekey` (same configuration), then drop previous_master_keys"
                );
            }
            Ok(())
        }
        _ => anyhow::bail!(
            "the master key does not match this database: its private keys were encrypted \
             under a different master key{}. Start asapd with the master key this database \
             was created with (ASAPD_MASTER_KEY or master_key_file; with --dev, \
             <data-dir>/master.key). To change the master key, pass the old key in \
             previous_master_keys (ASAPD_PREVIOUS_MASTER_KEYS or previous_master_keys_file) \
             next to the new one and run `asapd rekey`; drop the old key only after that",
            MasterKey::sealed_key_id(&blob)
                .map(|id| format!(
                    " (key id {id}; this configuration has key id {})",
                    key.key_id()
                ))
                .unwrap_or_default()
        ),
    }
}

/// Re-seals the check value under the current key unless it already is;
/// `expected` is the stored value it replaces, so a concurrent change is
/// never overwritten. Returns whether it was re-sealed.
pub(crate) async fn reseal_check(
    conn: &mut crate::store::Conn,
    key: &MasterKey,
) -> anyhow::Result<bool> {
    let stored = meta::get(conn, CHECK_NAME)
        .await?
        .context("no master key check value; start asapd once first")?;
    let blob = STANDARD
        .decode(&stored)
        .context("master key check is not base64")?;
    if key.is_current(&blob) {
        return Ok(false);
    }
    key.open(&blob, CHECK_AAD)
        .map_err(|_| anyhow::anyhow!("master key check does not decrypt"))?;
    let resealed = STANDARD.encode(key.seal(CHECK_PLAINTEXT, CHECK_AAD));
    Ok(meta::compare_and_set(conn, CHECK_NAME, &stored, &resealed).await?)
}

/// Credentials of the bootstrap admin, printed once.
#[derive(Debug, serde::Serialize)]
pub struct AdminCredentials {
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, thiserror::Error)]
#[error("an admin already exists ({0}); asapd init only sets up an empty database")]
pub struct AdminExists(pub String);

/// The name of some caller in group `admin`, if there is one.
pub async fn existing_admin(state: &AppState) -> anyhow::Result<Option<String>> {
    let mut conn = state.store.acquire().await?;
    Ok(caller_store::list(&mut conn)
        .await?
        .into_iter()
        .find(|c| c.groups.iter().any(|g| g == GroupName::ADMIN))
        .map(|c| c.name))
}

/// Creates the caller `admin` in group `admin` unless some admin exists.
pub async fn create_first_admin(
    state: &AppState,
) -> anyhow::Result<Result<AdminCredentials, AdminExists>> {
    if let Some(admin) = existing_admin(state).await? {
        return Ok(Err(AdminExists(admin)));
    }
    let spec = CallerSpec {
        name: CallerName::parse("admin").expect("valid name"),
        groups: vec![GroupName::parse(GroupName::ADMIN).expect("valid name")],
        algorithm: None,
        cidrs: Vec::new(),
        rate_limit: None,
        rotation_period: None,
        enabled: true,
        federated: Vec::new(),
    };
    let created = callers::create(state, &crate::audit::Origin::system(), spec)
        .await
        .map_err(anyhow::Error::new)
        .context("creating the admin caller")?;
    Ok(Ok(AdminCredentials {
        client_id: created.caller.name,
        client_secret: created.client_secret,
    }))
}
