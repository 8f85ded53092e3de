//! Directory handles that never follow a symlink.
//!
//! Every operation names one entry of an open directory (`openat`,
//! `renameat`, `unlinkat` on its descriptor), and every open below the
//! mirror's root carries `O_NOFOLLOW`. A symlink put in place of a folder
//! or a file, even in the middle of a pass, makes that operation fail; it
//! never sends a read, a write or a delete elsewhere.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};

/// Suffix of the mirror's temporary files: `.<name>.asapd-tmp`. A leading
/// dot and this suffix are never a kid nor the JWKS.
pub const TMP_SUFFIX: &str = ".asapd-tmp";

/// What an entry of a directory is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Absent,
    File,
    Dir,
    Symlink,
    /// A socket, a FIFO, a device: never the mirror's.
    Other,
}

/// An open directory.
pub struct Dir(OwnedFd);

impl Dir {
    /// The mirror's root, created if missing. The operator names it, so a
    /// symlink here is followed; nothing below it is.
    pub fn open_root(path: &Path) -> io::Result<Dir> {
        std::fs::create_dir_all(path)?;
        let fd = rustix::fs::openat(CWD, path, dir_flags(false), Mode::empty())?;
        Ok(Dir(fd))
    }

    /// The subdirectory `name`; `None` if it does not exist. A symlink
    /// there is an error (`ELOOP`), as is a file (`ENOTDIR`).
    pub fn open_dir(&self, name: &str) -> io::Result<Option<Dir>> {
        match rustix::fs::openat(&self.0, name, dir_flags(true), Mode::empty()) {
            Ok(fd) => Ok(Some(Dir(fd))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the subdirectory `name` (0755); an existing one is an error.
    pub fn create_dir(&self, name: &str) -> io::Result<Dir> {
        rustix::fs::mkdirat(&self.0, name, Mode::from_raw_mode(0o755))?;
        self.sync()?;
        self.open_dir(name)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    pub fn kind(&self, name: &str) -> io::Result<Kind> {
        match rustix::fs::statat(&self.0, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => Kind::File,
                FileType::Directory => Kind::Dir,
                FileType::Symlink => Kind::Symlink,
                _ => Kind::Other,
            }),
            Err(rustix::io::Errno::NOENT) => Ok(Kind::Absent),
            Err(e) => Err(e.into()),
        }
    }

    /// The contents of the regular file `name`.
    pub fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        // NONBLOCK: a FIFO swapped in must not hang the pass.
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let mut file = File::from(rustix::fs::openat(&self.0, name, flags, Mode::empty())?);
        if !file.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut body = Vec::new();
        file.read_to_end(&mut body)?;
        Ok(body)
    }

    /// Replaces `name` with `body` through a temporary file and a rename,
    /// so a reader sees the old file or the new one, never part of one.
    /// The file and then the directory are synced: the rename survives a
    /// crash. A temporary file left by an interrupted pass is replaced.
    pub fn replace(&self, name: &str, body: &[u8]) -> io::Result<()> {
        let tmp = format!(".{name}{TMP_SUFFIX}");
        if self.kind(&tmp)? == Kind::File {
            self.remove_file(&tmp)?;
        }
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        let fd = rustix::fs::openat(&self.0, &tmp, flags, Mode::from_raw_mode(0o644))?;
        let written = (|| {
            let mut file = File::from(fd);
            file.write_all(body)?;
            file.sync_all()?;
            rustix::fs::renameat(&self.0, &tmp, &self.0, name)?;
            self.sync()
        })();
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.0, &tmp, AtFlags::empty());
        }
        written
    }

    /// Removes the entry `name` itself (a symlink is not followed).
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.0, name, AtFlags::empty())?)
    }

    /// Removes the empty subdirectory `name`.
    pub fn remove_dir(&self, name: &str) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.0, name, AtFlags::REMOVEDIR)?)
    }

    /// The names in this directory, `.` and `..` left out.
    pub fn names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.0)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy();
            if name != "." && name != ".." {
                names.push(name.into_owned());
            }
        }
        Ok(names)
    }

    /// Makes renames and removals in this directory durable.
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.0)?)
    }
}

fn dir_flags(no_follow: bool) -> OFlags {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if no_follow {
        flags | OFlags::NOFOLLOW
    } else {
        flags
    }
}
