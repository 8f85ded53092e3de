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
