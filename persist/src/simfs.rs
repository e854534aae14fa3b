//! A simulated file system that can lose power: [`SimFs`].
//!
//! It keeps, for every file, what the program sees and what is durable, and for every
//! directory the names the program sees and the names that are durable. At
//! [`SimFs::power_loss`] the program's view is replaced by what a real disk could hold
//! after the power went out:
//!
//! - a file's content is what it held at its last [`FsFile::sync_data`], plus (if `torn`)
//!   a random prefix of the writes and `set_len`s made since, in the order they were made,
//!   the last of them possibly cut short (a torn write: whole records, part of one, or
//!   none);
//! - a create, rename or remove is kept only if its directory was synced after it
//!   ([`Fs::sync_dir`]); the ones after the last sync are kept as a random prefix (in the
//!   order they happened), so a rename may or may not have reached the disk;
//! - a file no durable name points to is gone.
//!
//! The model is the one the WAL's recovery assumes (see `wal` module docs): unsynced
//! appends survive as a prefix, not with holes.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::{Fs, FsFile};

#[derive(Debug, Clone)]
enum FileOp {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

fn apply_op(data: &mut Vec<u8>, op: &FileOp, keep: Option<usize>) {
    match op {
        FileOp::Write(off, bytes) => {
            let bytes = &bytes[..keep.unwrap_or(bytes.len()).min(bytes.len())];
            let off = *off as usize;
            if data.len() < off + bytes.len() {
                data.resize(off + bytes.len(), 0);
            }
            data[off..off + bytes.len()].copy_from_slice(bytes);
        }
        FileOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

#[derive(Debug, Default)]
struct Inode {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a power loss for sure.
    synced: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<FileOp>,
}

impl Inode {
    fn op(&mut self, op: FileOp) {
        apply_op(&mut self.data, &op, None);
        self.pending.push(op);
    }
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(PathBuf, u64),
    Unlink(PathBuf),
    /// One atomic step on a real file system: both names change or neither.
    Rename(PathBuf, PathBuf, u64),
}

impl DirOp {
    fn dir(&self) -> Option<&Path> {
        match self {
            DirOp::Link(p, _) | DirOp::Unlink(p) | DirOp::Rename(_, p, _) => p.parent(),
        }
    }
    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            DirOp::Link(p, ino) => {
                names.insert(p.clone(), *ino);
            }
            DirOp::Unlink(p) => {
                names.remove(p);
            }
            DirOp::Rename(from, to, ino) => {
                names.remove(from);
                names.insert(to.clone(), *ino);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    inodes: HashMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    pending: Vec<DirOp>,
    next_ino: u64,
    rng: u64,
    /// `sync_data` calls that had something to sync, and `sync_dir` calls.
    file_syncs: u64,
    dir_syncs: u64,
    /// Mutating calls still allowed before the simulated power cut (`None`: no limit).
    ops_left: Option<u64>,
}

impl Inner {
    fn next_rand(&mut self) -> u64 {
        // SplitMix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_rand() % n }
    }
    /// Counts one mutating call; fails once the power is cut (see [`SimFs::cut_power_after`]).
    fn op(&mut self) -> io::Result<()> {
        match &mut self.ops_left {
            None => Ok(()),
            Some(0) => Err(io::Error::other("simulated power cut")),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
        }
    }

    fn ino(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such file", path.display()),
            )
        })
    }
}

/// A simulated file system that remembers what was made durable and can lose power. Cheap
/// to clone: clones share the same files.
#[derive(Clone, Debug)]
pub struct SimFs {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    ino: u64,
}

impl SimFs {
    /// An empty file system whose power losses draw from `seed`.
    pub fn new(seed: u64) -> Self {
        SimFs {
            inner: Arc::new(Mutex::new(Inner {
                rng: seed,
                next_ino: 1,
                ..Inner::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Power goes out and comes back: every file and directory keeps what was synced, plus
    /// (if `torn`) a random prefix of what was appended or renamed after (see module docs).
    /// Open [`FsFile`]s of before the loss must not be used any more.
    pub fn power_loss(&self, torn: bool) {
        let mut g = self.lock();
        let pending = std::mem::take(&mut g.pending);
        let keep_ops = if torn {
            g.below(pending.len() as u64 + 1) as usize
        } else {
            0
        };
        let mut names = std::mem::take(&mut g.durable_names);
        for op in &pending[..keep_ops] {
            op.apply(&mut names);
        }
        let live: std::collections::HashSet<u64> = names.values().copied().collect();
        let mut inos: Vec<u64> = g.inodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            if !live.contains(&ino) {
                g.inodes.remove(&ino);
                continue;
            }
            let n_ops = g.inodes[&ino].pending.len() as u64;
            let (full, partial) = if torn && n_ops > 0 && g.below(2) == 1 {
                let k = g.below(n_ops + 1) as usize;
                let partial = if (k as u64) < n_ops {
                    Some(g.below(1 << 20) as usize)
                } else {
                    None
                };
                (k, partial)
            } else {
                (0, None)
            };
            let n = g.inodes.get_mut(&ino).expect("inode listed above");
            let mut data = std::mem::take(&mut n.synced);
            for op in &n.pending[..full] {
                apply_op(&mut data, op, None);
            }
            if let (Some(cut), Some(op)) = (partial, n.pending.get(full))
                && let FileOp::Write(_, bytes) = op
            {
                apply_op(&mut data, op, Some(cut % (bytes.len() + 1)));
            }
            n.pending.clear();
            n.synced = data.clone();
            n.data = data;
        }
        g.names = names.clone();
        g.durable_names = names;
        g.ops_left = None;
    }

    /// After `ops` more mutating calls (append, sync, set_len, create, rename, remove,
    /// directory sync) every mutating call fails, as if the power went out at that
    /// moment; follow with [`SimFs::power_loss`], which also lifts this. Reads still work.
    pub fn cut_power_after(&self, ops: u64) {
        self.lock().ops_left = Some(ops);
    }

    /// (file `sync_data` calls, directory syncs) so far.
    pub fn sync_counts(&self) -> (u64, u64) {
        let g = self.lock();
        (g.file_syncs, g.dir_syncs)
    }

    /// Replaces a file's content, durably (a test corrupting a file "on disk").
    pub fn overwrite(&self, path: &Path, data: Vec<u8>) -> io::Result<()> {
        let mut g = self.lock();
        let ino = g.ino(path)?;
        let n = g.inodes.get_mut(&ino).expect("named inode exists");
        n.synced = data.clone();
        n.data = data;
        n.pending.clear();
        Ok(())
    }
}

impl FsFile for SimFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut g = self.fs.lock();
        g.op()?;
        let n = g.inodes.get_mut(&self.ino).ok_or_else(gone)?;
        let end = n.data.len() as u64;
        n.op(FileOp::Write(end, buf.to_vec()));
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut g = self.fs.lock();
        g.op()?;
        let n = g.inodes.get_mut(&self.ino).ok_or_else(gone)?;
        n.op(FileOp::Write(offset, buf.to_vec()));
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let mut g = self.fs.lock();
        g.op()?;
        let n = g.inodes.get_mut(&self.ino).ok_or_else(gone)?;
        if !n.pending.is_empty() {
            n.synced = n.data.clone();
            n.pending.clear();
            g.file_syncs += 1;
        }
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut g = self.fs.lock();
        g.op()?;
        let n = g.inodes.get_mut(&self.ino).ok_or_else(gone)?;
        n.op(FileOp::SetLen(len));
        Ok(())
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "file lost in a simulated power loss",
    )
}

impl Fs for SimFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(()) // directories always exist and are durable in the simulation
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let g = self.lock();
        Ok(g.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let g = self.lock();
        let ino = g.ino(path)?;
        Ok(g.inodes[&ino].data.clone())
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut g = self.lock();
        g.op()?;
        if let Ok(ino) = g.ino(path) {
            g.inodes
                .get_mut(&ino)
                .expect("named inode")
                .op(FileOp::SetLen(0));
            return Ok(Box::new(SimFile {
                fs: self.clone(),
                ino,
            }));
        }
        let ino = g.next_ino;
        g.next_ino += 1;
        g.inodes.insert(ino, Inode::default());
        g.names.insert(path.to_path_buf(), ino);
        g.pending.push(DirOp::Link(path.to_path_buf(), ino));
        Ok(Box::new(SimFile {
            fs: self.clone(),
            ino,
        }))
    }
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let g = self.lock();
        let ino = g.ino(path)?;
        Ok(Box::new(SimFile {
            fs: self.clone(),
            ino,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut g = self.lock();
        g.op()?;
        let ino = g.ino(from)?;
        g.names.remove(from);
        g.names.insert(to.to_path_buf(), ino);
        g.pending
            .push(DirOp::Rename(from.to_path_buf(), to.to_path_buf(), ino));
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut g = self.lock();
        g.op()?;
        g.ino(path)?;
        g.names.remove(path);
        g.pending.push(DirOp::Unlink(path.to_path_buf()));
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut g = self.lock();
        g.op()?;
        let pending = std::mem::take(&mut g.pending);
        let mut durable = std::mem::take(&mut g.durable_names);
        let mut rest = Vec::new();
        for op in pending {
            if op.dir() == Some(dir) {
                op.apply(&mut durable);
            } else {
                rest.push(op);
            }
        }
        g.durable_names = durable;
        g.pending = rest;
        g.dir_syncs += 1;
        Ok(())
    }
}
