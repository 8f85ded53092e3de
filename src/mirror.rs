//! `asapd mirror`: the key repository as static files (DESIGN §9), so that
//! any web server or CDN can stand in for asapd when it is down.
//!
//! `DIR/<kid>` holds each published key's PEM (the `/` of the kid is a
//! directory) and `DIR/.well-known/jwks.json` the JWKS, byte for byte what
//! `serve` answers. It reads the database and nothing else: public keys
//! only, so no master key. What is published is the server's decision
//! (pending, active and retired keys, the retirement grace included); the
//! mirror copies it and removes the files of keys no longer published.
//!
//! `--watch` runs beside `serve`, as a process of its own (a sidecar next
//! to the web server that serves DIR): on PostgreSQL it hears the same
//! change notifications as the replicas, on SQLite it looks once a second.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::Write;
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
/// rest, so a verifier that reads the JWKS finds every key it names.
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
    let files: HashMap<Kid, String> = keys
        .into_iter()
        .map(|(kid, public, _)| (kid, public.pem))
        .collect();
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || write_tree(&dir, &files, &jwks))
        .await
        .context("mirror pass panicked")?
}

fn write_tree(dir: &Path, files: &HashMap<Kid, String>, jwks: &[u8]) -> anyhow::Result<Pass> {
    let mut pass = Pass {
        keys: files.len(),
        ..Pass::default()
    };
    for (kid, pem) in files {
        let path = dir
            .join(kid.caller())
            .join(&kid.as_str()[kid.caller().len() + 1..]);
        pass.written += usize::from(write_atomically(&path, pem.as_bytes())?);
    }
    pass.written += usize::from(write_atomically(&dir.join(JWKS_PATH), jwks)?);
    let published: HashSet<&str> = files.keys().map(Kid::as_str).collect();
    pass.removed = remove_unpublished(dir, &published)?;
    Ok(pass)
}

/// Writes `body` to `path` through a temporary file in the same directory
/// and a rename, so a reader sees the old file or the new one, never part
/// of one. Leaves an identical file alone; `true` when it wrote.
fn write_atomically(path: &Path, body: &[u8]) -> anyhow::Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == body) {
        return Ok(false);
    }
    let parent = path.parent().context("a mirror file has a directory")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // A leading dot: never a kid, so a pass never mistakes it for a key.
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(body)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(true)
}

/// Removes `DIR/<caller>/<name>` files that are kids but not published,
/// and the caller directories left empty. Anything else in DIR (the
/// JWKS, a web server's own files) is not a kid and stays.
fn remove_unpublished(dir: &Path, published: &HashSet<&str>) -> anyhow::Result<usize> {
    let mut removed = 0;
    for caller in read_dir(dir)? {
        if !caller.path().is_dir() {
            continue;
        }
        let Some(caller_name) = caller.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        for file in read_dir(&caller.path())? {
            let Some(name) = file.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let kid = format!("{caller_name}/{name}");
            if Kid::parse(&kid).is_err() || published.contains(kid.as_str()) {
                continue;
            }
            std::fs::remove_file(file.path())
                .with_context(|| format!("removing {}", file.path().display()))?;
            removed += 1;
        }
        // Fails, harmlessly, while the directory still holds something.
        let _ = std::fs::remove_dir(caller.path());
    }
    Ok(removed)
}

fn read_dir(dir: &Path) -> anyhow::Result<Vec<std::fs::DirEntry>> {
    std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", dir.display()))
}

/// A pass whose failure is logged, not fatal: `--watch` keeps going and
/// the next pass retries.
async fn sync_logged(store: &Store, dir: &Path) {
    match sync(store, dir).await {
        Ok(pass) if pass.written > 0 || pass.removed > 0 => tracing::info!(
            keys = pass.keys,
            written = pass.written,
            removed = pass.removed,
            dir = %dir.display(),
            "mirror updated"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(
            error = format!("{e:#}"),
            "mirror pass failed; the next one retries"
        ),
    }
}

/// `--watch`: a pass at once and after every change until `stop`
/// completes.
pub async fn watch(store: &Store, dir: &Path, stop: impl Future<Output = ()>) {
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
                sync_logged(store, dir).await;
                tokio::select! {
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    _ = &mut stop => return,
                }
            },
            Connected::Listener(listener) => listener,
        };
        // Whatever changed before LISTEN took effect was not heard.
        sync_logged(store, dir).await;
        loop {
            tokio::select! {
                heard = listener.next() => match heard {
                    Ok(Some(_)) => {
                        // A burst of changes costs one pass.
                        listener.buffered();
                        sync_logged(store, dir).await;
                    }
                    Ok(None) | Err(_) => {
                        tracing::warn!("mirror lost its change listener; reconnecting");
                        break;
                    }
                },
                _ = tokio::time::sleep(RESYNC_INTERVAL) => sync_logged(store, dir).await,
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

    #[test]
    fn only_unpublished_kids_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let kid = Kid::parse("svc-a/k1").unwrap();
        let files = HashMap::from([(kid, "PEM".to_owned())]);
        std::fs::create_dir_all(dir.path().join("svc-b")).unwrap();
        std::fs::write(dir.path().join("svc-b/gone"), "old").unwrap();
        std::fs::write(dir.path().join("index.html"), "mine").unwrap();
        std::fs::create_dir_all(dir.path().join("svc-a")).unwrap();
        std::fs::write(dir.path().join("svc-a/.k1.tmp-1"), "x").unwrap();

        let pass = write_tree(dir.path(), &files, b"{}").unwrap();
        assert_eq!((pass.keys, pass.written, pass.removed), (1, 2, 1));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("svc-a/k1")).unwrap(),
            "PEM"
        );
        assert!(
            !dir.path().join("svc-b").exists(),
            "empty caller dir removed"
        );
        assert!(dir.path().join("index.html").exists(), "not a kid: kept");
        assert!(
            dir.path().join("svc-a/.k1.tmp-1").exists(),
            "not a kid: kept"
        );
        let again = write_tree(dir.path(), &files, b"{}").unwrap();
        assert_eq!((again.written, again.removed), (0, 0), "nothing changed");
    }
}
