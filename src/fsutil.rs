//! Small filesystem helpers for files that hold secrets.

use std::io::Write;
use std::path::Path;

/// Writes `contents` to a new file readable by the owner only (0600).
/// Refuses to overwrite: a secret file that exists is never clobbered.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Creates `path` (and missing parents) for asapd's data: the last
/// directory is the owner's only (0700), whatever the umask, since it holds
/// the database and, with `--dev`, the master key. A directory that exists
/// is left as the operator made it.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates an empty file readable by the owner only (0600) unless one
/// exists. SQLite gives its `-wal` and `-shm` files the mode of the
/// database file, so creating `asapd.db` this way before SQLite opens it
/// keeps all three private, whatever the umask.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    match write_private(path, b"") {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// The file a `sqlite:` URL names, unless it is in memory.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty() || path == ":memory:" || query.contains("mode=memory");
    (!in_memory).then(|| std::path::PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::sqlite_file;

    #[test]
    fn sqlite_file_of_a_url() {
        assert_eq!(
            sqlite_file("sqlite:///var/lib/asapd/asapd.db?mode=rwc"),
            Some("/var/lib/asapd/asapd.db".into())
        );
        assert_eq!(sqlite_file("sqlite:data/a.db"), Some("data/a.db".into()));
        assert_eq!(sqlite_file("sqlite://:memory:"), None);
        assert_eq!(sqlite_file("sqlite://x.db?mode=memory"), None);
        assert_eq!(sqlite_file("postgres://h/db"), None);
    }
}
