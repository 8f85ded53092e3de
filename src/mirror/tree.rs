//! One pass over the mirror's directory, touching only what the mirror
//! owns.
//!
//! The manifest (`DIR/.asapd-mirror.json`) lists every file the mirror
//! wrote and every folder it created; nothing else in DIR is the mirror's.
//! It removes only manifest entries, writes over a file only if the
//! manifest has it, and adopts a file at a published path only when it
//! already holds the exact bytes it would write (a pass cut short between
//! a rename and the manifest, or a mirror from before manifests). Paths are
//! always `<folder>/<file>`, opened through [`Dir`], so no symlink is ever
//! followed below DIR. A failed entry is reported and the others go on.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::dirfd::{Dir, Kind, TMP_SUFFIX};

/// The manifest's name in DIR: a dot file, never a kid.
pub const MANIFEST: &str = ".asapd-mirror.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// Paths under DIR, `<folder>/<file>`.
    files: BTreeSet<String>,
    /// Folders the mirror created, removed once they hold none of its files.
    dirs: BTreeSet<String>,
}

/// A file the pass publishes: `<folder>/<file>` under DIR, and its bytes.
pub struct Wanted {
    pub path: String,
    pub body: Vec<u8>,
}

/// What a pass did; `failed` names each entry it could not do, and why.
#[derive(Debug, Default)]
pub struct Outcome {
    pub written: usize,
    pub removed: usize,
    pub failed: Vec<String>,
}

/// Publishes `wanted` (in order) under `root`, then removes the files of
/// earlier passes that are no longer wanted. Fails as a whole only when
/// DIR or its manifest cannot be read or the manifest cannot be saved:
/// without it, no file can be told to be the mirror's.
pub fn apply(root: &Path, wanted: &[Wanted]) -> anyhow::Result<Outcome> {
    let dir = Dir::open_root(root).with_context(|| format!("opening {}", root.display()))?;
    let mut manifest = Manifest::load(&dir)?;
    let mut out = Outcome::default();
    sweep_temporary_files(&dir, &manifest, wanted);

    let mut to_write = Vec::new();
    for file in wanted {
        match inspect(&dir, &manifest, file) {
            Ok(Step::Unchanged) => {}
            Ok(Step::Adopt) => {
                manifest.files.insert(file.path.clone());
            }
            Ok(Step::Write { create_dir }) => {
                // Claimed before they exist: a crash after the write still
                // leaves them the mirror's.
                manifest.files.insert(file.path.clone());
                if create_dir {
                    manifest.dirs.insert(split(&file.path).0.to_owned());
                }
                to_write.push(file);
            }
            Err(e) => out.failed.push(format!("{}: {e:#}", file.path)),
        }
    }
    manifest.save(&dir)?;
    for file in to_write {
        match write(&dir, file) {
            Ok(()) => out.written += 1,
            Err(e) => out.failed.push(format!("{}: {e:#}", file.path)),
        }
    }
    let keep: BTreeSet<&str> = wanted.iter().map(|f| f.path.as_str()).collect();
    remove_unwanted(&dir, &mut manifest, &keep, &mut out);
    manifest.save(&dir)?;
    Ok(out)
}

impl Manifest {
    fn load(dir: &Dir) -> anyhow::Result<Manifest> {
        let manifest: Manifest = match dir.kind(MANIFEST)? {
            Kind::Absent => return Ok(Manifest::default()),
            Kind::File => serde_json::from_slice(&dir.read(MANIFEST)?)
                .with_context(|| format!("{MANIFEST} is not the mirror's manifest"))?,
            _ => bail!("{MANIFEST} is not a regular file"),
        };
        let bad = manifest
            .files
            .iter()
            .find(|p| !valid_file(p))
            .or(manifest.dirs.iter().find(|d| !plain_name(d)));
        if let Some(bad) = bad {
            bail!("{MANIFEST} names {bad:?}, which is not a path the mirror writes");
        }
        Ok(manifest)
    }

    fn save(&self, dir: &Dir) -> anyhow::Result<()> {
        let body = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        if dir.read(MANIFEST).is_ok_and(|old| old == body) {
            return Ok(());
        }
        dir.replace(MANIFEST, &body)
            .with_context(|| format!("saving {MANIFEST}"))
    }
}

/// A name within one directory: no `/`, not `.` or `..`.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// A file the mirror writes: `<folder>/<file>`, both plain names.
fn valid_file(path: &str) -> bool {
    path.split_once('/')
        .is_some_and(|(folder, name)| plain_name(folder) && plain_name(name))
}

fn split(path: &str) -> (&str, &str) {
    path.split_once('/')
        .expect("mirror paths are <folder>/<file>")
}

enum Step {
    Unchanged,
    Adopt,
    Write { create_dir: bool },
}

fn inspect(dir: &Dir, manifest: &Manifest, file: &Wanted) -> anyhow::Result<Step> {
    let (folder, name) = split(&file.path);
    let Some(folder) = open_dir(dir, folder)? else {
        return Ok(Step::Write { create_dir: true });
    };
    let ours = manifest.files.contains(&file.path);
    match folder.kind(name)? {
        Kind::Absent => Ok(Step::Write { create_dir: false }),
        Kind::File => {
            let same = folder.read(name)? == file.body;
            match (same, ours) {
                (true, true) => Ok(Step::Unchanged),
                (true, false) => Ok(Step::Adopt),
                (false, true) => Ok(Step::Write { create_dir: false }),
                (false, false) => bail!(
                    "a file the mirror did not write is in the way; it is left as it is \
                     (move it away to let the mirror publish here)"
                ),
            }
        }
        Kind::Dir | Kind::Symlink | Kind::Other => {
            bail!("a directory or symlink is in the way; the mirror replaces only its own files")
        }
    }
}

/// `folder` under `dir`, never through a symlink.
fn open_dir(dir: &Dir, folder: &str) -> anyhow::Result<Option<Dir>> {
    dir.open_dir(folder).map_err(|e| {
        // O_NOFOLLOW | O_DIRECTORY on a symlink fails with ENOTDIR or
        // ELOOP: say which it was.
        match dir.kind(folder) {
            Ok(Kind::Symlink) => {
                anyhow::anyhow!("{folder}/ is a symlink; the mirror never follows one")
            }
            Ok(Kind::File | Kind::Other) => anyhow::anyhow!("{folder} is not a directory"),
            _ => anyhow::Error::from(e).context(format!("opening {folder}/")),
        }
    })
}

fn write(dir: &Dir, file: &Wanted) -> anyhow::Result<()> {
    let (folder_name, name) = split(&file.path);
    let folder = match open_dir(dir, folder_name)? {
        Some(folder) => folder,
        None => dir
            .create_dir(folder_name)
            .with_context(|| format!("creating {folder_name}/"))?,
    };
    folder.replace(name, &file.body).context("writing")
}

/// Removes the manifest's files that are not in `keep`, then the folders
/// the mirror created that none of its files need any more.
fn remove_unwanted(dir: &Dir, manifest: &mut Manifest, keep: &BTreeSet<&str>, out: &mut Outcome) {
    let stale: Vec<String> = manifest
        .files
        .iter()
        .filter(|p| !keep.contains(p.as_str()))
        .cloned()
        .collect();
    for path in stale {
        match remove(dir, &path) {
            Ok(Removal::Gone) => {}
            Ok(Removal::Done) => out.removed += 1,
            Ok(Removal::Disowned) => out.failed.push(format!(
                "{path}: no longer a regular file; left alone and forgotten"
            )),
            Err(e) => {
                out.failed.push(format!("{path}: {e:#}"));
                continue;
            }
        }
        manifest.files.remove(&path);
    }
    let needed: BTreeSet<&str> = manifest.files.iter().map(|p| split(p).0).collect();
    let unneeded: Vec<String> = manifest
        .dirs
        .iter()
        .filter(|d| !needed.contains(d.as_str()))
        .cloned()
        .collect();
    for folder in unneeded {
        match dir.remove_dir(&folder) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Someone else's files are in it now: it stays, still ours.
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => continue,
            Err(e) => {
                out.failed.push(format!("{folder}/: removing: {e}"));
                continue;
            }
        }
        manifest.dirs.remove(&folder);
    }
    if let Err(e) = dir.sync() {
        out.failed.push(format!("syncing the directory: {e}"));
    }
}

enum Removal {
    /// Already not there.
    Gone,
    Done,
    /// Replaced by something else: not the mirror's any more.
    Disowned,
}

fn remove(dir: &Dir, path: &str) -> anyhow::Result<Removal> {
    let (folder, name) = split(path);
    let Some(folder) = open_dir(dir, folder)? else {
        return Ok(Removal::Gone);
    };
    match folder.kind(name)? {
        Kind::Absent => Ok(Removal::Gone),
        Kind::File => {
            folder.remove_file(name).context("removing")?;
            folder.sync().context("syncing its directory")?;
            Ok(Removal::Done)
        }
        Kind::Dir | Kind::Symlink | Kind::Other => Ok(Removal::Disowned),
    }
}

/// Removes the mirror's temporary files (`.<name>.asapd-tmp`) that a pass
/// cut short left behind, in DIR and in every folder it writes to. Best
/// effort: a folder that cannot be read is reported by the pass itself.
fn sweep_temporary_files(dir: &Dir, manifest: &Manifest, wanted: &[Wanted]) {
    let folders: BTreeSet<&str> = manifest
        .files
        .iter()
        .map(String::as_str)
        .chain(wanted.iter().map(|f| f.path.as_str()))
        .map(|p| split(p).0)
        .collect();
    let sweep = |folder: &Dir| {
        for name in folder.names().unwrap_or_default() {
            if name.starts_with('.')
                && name.ends_with(TMP_SUFFIX)
                && folder.kind(&name).is_ok_and(|k| k == Kind::File)
            {
                let _ = folder.remove_file(&name);
            }
        }
    };
    sweep(dir);
    for folder in folders {
        if let Ok(Some(folder)) = dir.open_dir(folder) {
            sweep(&folder);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(paths: &[&str]) -> Vec<Wanted> {
        paths
            .iter()
            .map(|p| Wanted {
                path: (*p).to_owned(),
                body: p.as_bytes().to_vec(),
            })
            .collect()
    }

    #[test]
    fn only_files_and_folders_of_the_manifest_are_removed() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("site")).unwrap();
        std::fs::write(root.path().join("site/page"), "theirs").unwrap();
        let first = apply(root.path(), &wanted(&["svc-a/k1", "svc-b/k1", "site/k1"])).unwrap();
        assert_eq!((first.written, first.removed), (3, 0), "{first:?}");
        let again = apply(root.path(), &wanted(&["svc-a/k1", "svc-b/k1", "site/k1"])).unwrap();
        assert_eq!((again.written, again.removed), (0, 0), "nothing changed");

        let last = apply(root.path(), &wanted(&["svc-a/k1"])).unwrap();
        assert_eq!((last.written, last.removed), (0, 2), "{last:?}");
        assert!(last.failed.is_empty(), "{last:?}");
        assert!(!root.path().join("svc-b").exists(), "the folder it made");
        assert!(!root.path().join("site/k1").exists());
        assert!(root.path().join("site/page").exists(), "not its folder");
    }

    #[test]
    fn manifests_naming_other_paths_are_refused() {
        assert!(valid_file("svc-a/k1") && valid_file(".well-known/jwks.json"));
        for bad in ["k1", "../x/k1", "a/../k", "a/b/c", "/etc/passwd", "a/"] {
            assert!(!valid_file(bad), "{bad}");
        }
    }
}
