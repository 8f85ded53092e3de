//! First start: the master-key check and the first admin.

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::crypto::MasterKey;
use crate::domain::names::{CallerName, GroupName};
use crate::service::callers::{self, CallerSpec};
use crate::state::AppState;
use crate::store::{callers as caller_store, meta, Store};

const CHECK_NAME: &str = "master_key_check";
const CHECK_AAD: &[u8] = b"asapd:master-key-check";
const CHECK_PLAINTEXT: &[u8] = b"asapd master key check v1";

/// Fails unless `key` is the master key this database was set up with.
/// The first start records a check value, so a wrong key is caught at
/// start, before it could write keys nobody can read.
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
        Ok(plain) if plain.as_slice() == CHECK_PLAINTEXT => Ok(()),
        _ => anyhow::bail!(
            "the master key does not match this database: its private keys were encrypted \
             under a different master key. Start asapd with the master key this database \
             was created with (ASAPD_MASTER_KEY or master_key_file; with --dev, \
             <data-dir>/master.key)"
        ),
    }
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
