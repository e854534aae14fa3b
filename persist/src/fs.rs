//! The file-system operations this crate needs, behind a trait, so that tests can swap the
//! real file system ([`StdFs`]) for a simulated one that loses power ([`crate::SimFs`]).
//!
//! The set is small on purpose: whole-file reads, writes at the end or at an offset, `fdatasync`,
//! `set_len` (to cut a torn tail), create, rename, remove, list, and `fsync` of a
//! directory. Every durability rule of the crate is stated in these terms:
//!
//! - bytes written to a file are durable once [`FsFile::sync_data`] returned;
//! - a create, rename or remove is durable once [`Fs::sync_dir`] of its directory returned
//!   (POSIX leaves a new name undurable until then; ext4 and XFS really lose it).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// An open file, written at the end or at an offset.
pub trait FsFile: Send + fmt::Debug {
    /// Writes `buf` at the end of the file.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Writes `buf` at byte `offset` (over existing bytes, or extending the file).
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// `fdatasync`: every byte appended so far (and the file's length) is durable on return.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (not durable until [`FsFile::sync_data`]).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// A file system: the real one ([`StdFs`]) or a simulation ([`crate::SimFs`]).
pub trait Fs: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents if missing, durably: the parent of each directory
    /// created is synced, so that a power loss cannot take the new directory (and every
    /// file in it) away.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir` (not recursive, no `.`/`..`).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates a file, or empties an existing one, and opens it for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Opens an existing file for writing.
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Renames `from` to `to`, replacing `to` if it exists (atomic, like `rename(2)`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// `fsync` of a directory: the creates, renames and removes in it are durable on return.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system (`std::fs`; `sync_data` is `fdatasync(2)` on Linux).
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(File);

impl FsFile for StdFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.seek(SeekFrom::End(0))?;
        self.0.write_all(buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Fs for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        // A relative path's last ancestor is "" (the working directory): never create it.
        let missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.is_dir())
            .collect();
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => continue,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a directory", d.display()),
                    ));
                }
                Err(e) => return Err(e),
            }
            let parent = match d.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            self.sync_dir(parent)?;
        }
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_file() {
                names.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(StdFile(f)))
    }
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(StdFile(f)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
