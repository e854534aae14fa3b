//! The crate's error type: the conditions a caller branches on, each with the file (and
//! byte offset) it is about and what an operator can do.

use std::io;
use std::path::{Path, PathBuf};

/// An error from `persist`.
#[derive(Debug)]
pub enum Error {
    /// A file-system call failed.
    Io {
        /// What we were doing ("fdatasync", "rename", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Damaged bytes that are not a torn tail: the directory cannot be opened as it is.
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damaged record or header.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A record that is intact but that the caller's replay rejected.
    Invalid {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// Its sequence number.
        seq: u64,
        /// Why the caller rejected it.
        what: String,
    },
    /// Another process holds the directory's lock.
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid as written in the lock file, if readable.
        pid: Option<u32>,
    },
    /// A bad argument (record type 0, oversized payload, truncation inside a batch).
    BadRecord(String),
    /// An earlier write or sync failed; nothing more is accepted (reopen to recover).
    Failed {
        /// The WAL directory.
        dir: PathBuf,
    },
}

pub(crate) fn io_err(op: &'static str, path: &Path, source: io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::Corrupt { file, offset, what } => write!(
                f,
                "{} is damaged at byte offset {offset}: {what}. Refusing to start rather than \
                 lose acknowledged data; restore the directory from a backup, or remove this \
                 node from the cluster and add a fresh one (membership change)",
                file.display()
            ),
            Error::Invalid {
                file,
                offset,
                seq,
                what,
            } => write!(
                f,
                "{} at byte offset {offset} (record seq {seq}): {what}",
                file.display()
            ),
            Error::Locked { path, pid } => match pid {
                Some(pid) => write!(
                    f,
                    "{} is locked by process {pid}: another server is using this data \
                     directory; stop it first or choose another directory",
                    path.display()
                ),
                None => write!(
                    f,
                    "{} is locked by another process: another server is using this data \
                     directory; stop it first or choose another directory",
                    path.display()
                ),
            },
            Error::BadRecord(s) => write!(f, "bad WAL request: {s}"),
            Error::Failed { dir } => write!(
                f,
                "the WAL in {} failed an earlier write or sync and accepts nothing more; \
                 restart the process to recover from what is durable",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
