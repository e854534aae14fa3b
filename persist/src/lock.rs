//! [`DirLock`]: one process per data directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, io_err};

/// The lock file's name inside the directory.
pub const LOCK_FILE: &str = "LOCK";

/// An exclusive `flock(2)` on `dir/LOCK`, held until drop (or until the process dies: the
/// kernel releases it, so a `kill -9` leaves no stale lock). The file holds the holder's
/// pid so that a second process can say who has it.
#[derive(Debug)]
pub struct DirLock {
    /// Holds the flock: the kernel releases it when this descriptor closes.
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` (creating it if missing). A directory locked by another process (or by
    /// another `DirLock` in this one) gives [`Error::Locked`] with the holder's pid.
    pub fn acquire(dir: &Path) -> Result<DirLock, Error> {
        std::fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        // SAFETY: flock takes a file descriptor we own (valid while `file` lives) and a
        // flag; it touches no memory of ours.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut s = String::new();
                let pid = file
                    .read_to_string(&mut s)
                    .ok()
                    .and_then(|_| s.trim().parse().ok());
                return Err(Error::Locked { path, pid });
            }
            return Err(io_err("flock", &path, e));
        }
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{pid}"))
            .map_err(|e| io_err("write", &path, e))?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
