//! `asapd mirror`: the key repository as static files (README, "A static
//! mirror of the key repository"), so that
//! any web server or CDN can stand in for asapd when it is down.
//!
//! `DIR/<kid>` holds each published key's PEM (the `/` of the kid is a
//! directory) and `DIR/.well-known/jwks.json` the JWKS, byte for byte what
//! `serve` answers. It reads the database and nothing else: public keys
//! only, so no master key. What is published is the server's decision
//! (pending, active and retired keys, the retirement grace included); the
//! mirror copies it and removes the files of keys no longer published.
//!
//! DIR is usually a web root with a site of its own: the mirror touches
//! only the files its manifest says it wrote, never follows a symlink
//! below DIR, and reports each entry it could not do (`tree`, `dirfd`).
//!
//! `--watch` runs beside `serve`, as a process of its own (a sidecar next
//! to the web server that serves DIR): on PostgreSQL it hears the same
//! change notifications as the replicas, on SQLite it looks once a second.

mod dirfd;
mod report;
mod tree;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::crypto::PublicKey;
use crate::domain::algorithm::Algorithm;
use crate::domain::kid::Kid;
use crate::keyring::jwks_document;
use crate::store::changes::{connect_retrying, Connected};
use crate::store::{keys, Store};
pub use report::Report;
use tree::Wanted;
pub use tree::MANIFEST;

/// How often `--watch` looks on SQLite, which has no notifications.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// On PostgreSQL, a full pass this often even without a notification: one
/// lost while the listener reconnects is made good here at the latest.
const RESYNC_INTERVAL: Duration = Duration::from_secs(60);

/// Where the JWKS goes, under the mirror's directory.
pub const JWKS_PATH: &str = ".well-known/jwks.json";

/// What one pass changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Published keys.
    pub keys: usize,
    /// Files written (new or changed, the JWKS included).
    pub written: usize,
    /// Key files removed.
    pub removed: usize,
    /// Entries this pass could not write or remove, each with its reason.
    pub failed: Vec<String>,
}

/// Opens `database_url` for reading keys: no migration (that is `serve`'s
/// and `migrate`'s job), and a refusal, not an empty file, when the
/// SQLite database does not exist.
pub async fn open_store(database_url: &str) -> anyhow::Result<Store> {
    if let Some(path) = sqlite_path(database_url) {
        if !path.exists() {
            bail!(
                "the database {} does not exist; point --data-dir or --database-url at \
                 asapd's database",
                path.display()
            );
        }
    }
    let store = Store::connect(database_url, 2)
        .await
        .context("cannot open the database; check --database-url / ASAPD_DATABASE_URL")?;
    if !store.is_ready().await.unwrap_or(false) {
        bail!("the database is not migrated to this asapd's schema; run `asapd migrate` first");
    }
    Ok(store)
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// One pass: writes what is published, then the JWKS, then removes the
/// files of earlier passes no longer published. An entry that fails is in
/// [`Pass::failed`]; the error is for a pass that could not run at all.
pub async fn sync(store: &Store, dir: &Path) -> anyhow::Result<Pass> {
    let rows = {
        let mut conn = store.acquire().await?;
        keys::list_published(&mut conn).await?
    };
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let kid = Kid::parse(&row.kid)
            .map_err(|e| anyhow::anyhow!("stored kid {:?}: {}", row.kid, e.message))?;
        let algorithm = Algorithm::from_str(&row.algorithm).map_err(anyhow::Error::msg)?;
        let public = PublicKey::from_spki_der(algorithm, row.public_der)
            .with_context(|| format!("public key of {kid}"))?;
        keys.push((kid, public, algorithm));
    }
    let jwks = jwks_document(
        keys.iter()
            .map(|(kid, public, algorithm)| (kid.as_str(), public, *algorithm)),
    )?;
    // The keys first, then the JWKS: a verifier that reads the JWKS finds
    // every key it names.
    let mut wanted: Vec<Wanted> = keys
        .into_iter()
        .map(|(kid, public, _)| Wanted {
            path: kid.as_str().to_owned(),
            body: public.pem.into_bytes(),
        })
        .collect();
    let published = wanted.len();
    wanted.push(Wanted {
        path: JWKS_PATH.to_owned(),
        body: jwks.to_vec(),
    });
    let dir = dir.to_owned();
    let outcome = tokio::task::spawn_blocking(move || tree::apply(&dir, &wanted))
        .await
        .context("mirror pass panicked")??;
    Ok(Pass {
        keys: published,
        written: outcome.written,
        removed: outcome.removed,
        failed: outcome.failed,
    })
}

/// A pass whose failures are logged and reported, not fatal: `--watch`
/// keeps going and the next pass retries.
async fn sync_logged(store: &Store, dir: &Path, report: Option<&Report>) {
    let result = sync(store, dir).await;
    match &result {
        Ok(pass) => log_pass(pass, dir),
        Err(e) => tracing::warn!(
            error = format!("{e:#}"),
            "mirror pass failed; the next one retries"
        ),
    }
    if let Some(report) = report {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if let Err(e) = report.record(result.as_ref().ok(), now) {
            tracing::warn!(error = format!("{e:#}"), "mirror metrics not written");
        }
    }
}

fn log_pass(pass: &Pass, dir: &Path) {
    for failure in &pass.failed {
        tracing::warn!(dir = %dir.display(), entry = %failure, "mirror entry failed");
    }
    if pass.written > 0 || pass.removed > 0 {
        tracing::info!(
            keys = pass.keys,
            written = pass.written,
            removed = pass.removed,
            failed = pass.failed.len(),
            dir = %dir.display(),
            "mirror updated"
        );
    }
}

/// `--watch`: a pass at once and after every change until `stop`
/// completes.
pub async fn watch(
    store: &Store,
    dir: &Path,
    report: Option<&Report>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let connected = connect_retrying(store, stop.as_mut(), |e, retry| {
            tracing::warn!(
                error = format!("{:#}", anyhow::Error::from(e)),
                retry_in_ms = retry.as_millis() as u64,
                "mirror cannot listen for changes; retrying"
            );
        })
        .await;
        let mut listener = match connected {
            Connected::Stopped => return,
            // SQLite: no notifications, and one writer at a time; a pass
            // that finds nothing changed writes nothing.
            Connected::NoNotifications => loop {
                sync_logged(store, dir, report).await;
                tokio::select! {
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    _ = &mut stop => return,
                }
            },
            Connected::Listener(listener) => listener,
        };
        // Whatever changed before LISTEN took effect was not heard.
        sync_logged(store, dir, report).await;
        loop {
            tokio::select! {
                heard = listener.next() => match heard {
                    Ok(Some(_)) => {
                        // A burst of changes costs one pass.
                        listener.buffered();
                        sync_logged(store, dir, report).await;
                    }
                    Ok(None) | Err(_) => {
                        tracing::warn!("mirror lost its change listener; reconnecting");
                        break;
                    }
                },
                _ = tokio::time::sleep(RESYNC_INTERVAL) => sync_logged(store, dir, report).await,
                _ = &mut stop => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_found_in_urls() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/asapd/asapd.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/asapd/asapd.db"))
        );
        assert_eq!(sqlite_path("sqlite://:memory:"), None);
        assert_eq!(sqlite_path("postgres://db/asapd"), None);
    }
}
