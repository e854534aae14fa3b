//! [`DiskStorage`]: Raft's durable state in a data directory, on the `persist` crate.
//!
//! # Opening one for a node
//!
//! ```no_run
//! use raft::{Config, DiskOptions, DiskStorage, Node};
//! let mut cfg = Config::new(2, vec![1, 2, 3]); // node 2 of voters {1, 2, 3}
//! cfg.cluster_id = 7;
//! // Creates the directory if missing; refuses one written for another cluster or node,
//! // and one that another process has open (naming its pid).
//! let storage = DiskStorage::open("/var/lib/raftkv/n2", DiskOptions::from_config(&cfg))?;
//! # let transport = raft::transport::LocalNetwork::new().transport(2);
//! let (node, apply) = Node::spawn(cfg, storage, transport, raft::DEFAULT_TICK)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The data directory
//!
//! | file | what it is | may a person delete it? |
//! | --- | --- | --- |
//! | `LOCK` | an `flock` held while a process has the directory open; holds its pid | only when no process runs on the directory (it is recreated) |
//! | `IDENTITY` | `cluster_id` and `node_id` this directory belongs to (text) | no |
//! | `wal/<16 hex>.wal` | WAL segments: entries, hard state (term, vote, commit), snapshot markers | no |
//! | `wal/HEAD` | the first seq of the newest WAL segment, so that a lost newest segment is noticed | no |
//! | `snap-<index>-<term>.snap` | the snapshot the log's latest marker names: the service's state through `index`, with the voter set | no |
//! | `*.tmp` | a file being written atomically; a leftover is from a crash | yes (open removes them) |
//!
//! Nothing in a voting member's directory may be deleted: a node that forgets its log or
//! its vote can make a committed entry disappear or let two leaders be elected in one term.
//! A node whose directory is lost must be replaced through a membership change.
//!
//! # Format and atomicity
//!
//! One WAL (see [`persist::wal`]) holds every record, and one [`Storage::persist`] call
//! is one WAL append batch, which recovery keeps whole or not at all, then one
//! `fdatasync` (a call that only moves the commit index writes nothing: its hard state
//! goes with the next batch, so a restart may bring back an older commit index, see
//! `must_sync`). Record types:
//!
//! | type | payload | replay |
//! | --- | --- | --- |
//! | 1 entry | protobuf `Entry` | drop stored entries with index `>=` its index, append it |
//! | 2 hard state | protobuf `HardState` | replace |
//! | 3 snapshot marker | index u64 LE, term u64 LE | the snapshot rule of [`Storage`]; the data is in `snap-<index>-<term>.snap` |
//! | 4 checkpoint | index u64 LE, term u64 LE | forget everything before: the snapshot is this one, the log empty, the hard state zero (a hard state record and the live entries follow in the same batch) |
//!
//! A batch lists a snapshot marker, then the entries, then the hard state: replaying it is
//! exactly the three steps of [`Storage::persist`] (the model test checks this against
//! [`MemStorage`](crate::MemStorage), across reopens too). The log is never cut in place,
//! so a conflict is handled by the later entry records (as etcd does): cutting first and
//! appending after would leave, after a crash in between, a state that is neither the old
//! one nor the new one.
//!
//! **Snapshots.** A snapshot file is written atomically (temp, fsync, rename, fsync of the
//! directory) *before* the batch with its marker, so the marker never names a missing
//! file; a newer file whose marker did not make it (a crash in between) is deleted at open.
//! Older snapshot files are deleted only once the new marker is durable. Once the WAL has
//! more than one segment, a persisted snapshot is followed by a **checkpoint**: a new
//! segment starts with a batch holding the snapshot marker, the hard state and the live
//! entries after the snapshot, and the segments before it are deleted. Open replays from
//! the last checkpoint (or from seq 1), so a crash while deleting old segments is harmless;
//! a log that starts neither at seq 1 nor with a checkpoint lost its first segment and is
//! refused.
//!
//! Snapshot file layout (integers little-endian): magic `RAFTKVSN` (8), version u32 = 2,
//! voter count u32 `n`, cluster id u64, node id u64, index u64, term u64, `n` voter ids
//! u64, learner count u64 `l`, `l` learner ids u64, data length u64, data, CRC32C u32 of
//! everything before it. Version 1 (still read) has no learner count and no learners.
//! The voters and learners are the configuration in effect at `index`
//! ([`Snapshot::conf`]); a snapshot whose `conf` has no voters records
//! [`DiskOptions::voters`] instead.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use persist::{DirLock, Fs, StdFs, Wal, WalOptions, write_atomic};
use proto::Message;
use proto::raft::{Entry, HardState};

use crate::core::Config;
use crate::storage::{ConfState, InitialState, Snapshot, Storage, StorageError};

const REC_ENTRY: u8 = 1;
const REC_HARD_STATE: u8 = 2;
const REC_SNAPSHOT: u8 = 3;
const REC_CHECKPOINT: u8 = 4;

const IDENTITY_FILE: &str = "IDENTITY";
const WAL_DIR: &str = "wal";
const SNAP_MAGIC: &[u8; 8] = b"RAFTKVSN";

/// How to open a [`DiskStorage`].
#[derive(Clone, Debug)]
pub struct DiskOptions {
    /// The cluster the directory belongs to; a directory of another cluster is refused.
    pub cluster_id: u64,
    /// This node's id; a directory of another node is refused.
    pub node_id: u64,
    /// The voters the node started with: recorded in a snapshot that carries no
    /// configuration of its own ([`Snapshot::conf`] empty).
    pub voters: Vec<u64>,
    /// WAL segment size in bytes (default 64 MiB).
    pub segment_bytes: u64,
}

impl DiskOptions {
    /// Options for a node: cluster id, node id and voters from its Raft configuration.
    pub fn from_config(cfg: &Config) -> Self {
        DiskOptions {
            cluster_id: cfg.cluster_id,
            node_id: cfg.id,
            voters: cfg.peers.clone(),
            segment_bytes: WalOptions::default().segment_bytes,
        }
    }
}

/// Why a data directory cannot be used.
#[derive(Debug)]
pub enum DiskError {
    /// A file-level error: I/O, damage (file and offset), a lock held by another pid.
    Persist(persist::Error),
    /// The directory belongs to another cluster or node.
    WrongIdentity {
        /// The `IDENTITY` file.
        file: PathBuf,
        /// (cluster id, node id) found in it.
        found: (u64, u64),
        /// (cluster id, node id) asked for.
        expected: (u64, u64),
    },
    /// A damaged or missing file that is not a WAL segment, or an unusable request.
    Bad(String),
}

impl std::fmt::Display for DiskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskError::Persist(e) => write!(f, "{e}"),
            DiskError::WrongIdentity {
                file,
                found,
                expected,
            } => write!(
                f,
                "{} says this data directory belongs to cluster {} node {}, but this node is \
                 cluster {} node {}: check --data-dir and the node id (a directory is never \
                 shared or reused across nodes)",
                file.display(),
                found.0,
                found.1,
                expected.0,
                expected.1
            ),
            DiskError::Bad(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for DiskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DiskError::Persist(e) => Some(e),
            _ => None,
        }
    }
}

impl From<persist::Error> for StorageError {
    fn from(e: persist::Error) -> Self {
        StorageError(Box::new(DiskError::Persist(e)))
    }
}

impl From<DiskError> for StorageError {
    fn from(e: DiskError) -> Self {
        StorageError(Box::new(e))
    }
}

fn bad(s: impl Into<String>) -> StorageError {
    DiskError::Bad(s.into()).into()
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> StorageError {
    persist::Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
    .into()
}

/// Raft's [`Storage`] in a data directory (layout and format in the module docs).
#[derive(Debug)]
pub struct DiskStorage {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    opts: DiskOptions,
    wal: Wal,
    /// Everything persisted, as [`Storage::load`] returns it.
    state: InitialState,
    /// True once a snapshot marker has been persisted (`state.snapshot` is real).
    has_snapshot: bool,
    /// The voter set of the stored snapshot.
    snapshot_conf: ConfState,
    /// Set after a failed write: a node that cannot persist must stop.
    failed: bool,
    /// The in-memory hard state has a commit index not yet written to the WAL (see
    /// `must_sync`): the next batch carries it.
    hard_state_unwritten: bool,
    _lock: Option<DirLock>,
}

fn snap_name(index: u64, term: u64) -> String {
    format!("snap-{index:016x}-{term:016x}.snap")
}

fn parse_snap_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    let (i, t) = rest.split_once('-')?;
    if i.len() != 16 || t.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(i, 16).ok()?,
        u64::from_str_radix(t, 16).ok()?,
    ))
}

fn marker(index: u64, term: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&index.to_le_bytes());
    v.extend_from_slice(&term.to_le_bytes());
    v
}

fn parse_marker(p: &[u8]) -> Result<(u64, u64), String> {
    if p.len() != 16 {
        return Err(format!("snapshot marker of {} bytes, want 16", p.len()));
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&p[..8]);
    let i = u64::from_le_bytes(a);
    a.copy_from_slice(&p[8..]);
    Ok((i, u64::from_le_bytes(a)))
}

/// Step 1 of [`Storage::persist`]: the snapshot rule (shared by persist and replay).
fn apply_snapshot(st: &mut InitialState, snap: Snapshot) {
    let base = st.snapshot.index;
    let keep = snap.index > base
        && st
            .entries
            .get((snap.index - base - 1) as usize)
            .is_some_and(|e| e.term == snap.term);
    if keep {
        st.entries.drain(..(snap.index - base) as usize);
    } else {
        st.entries.clear();
    }
    st.snapshot = snap;
}

/// Step 2 for one entry: drop stored entries from its index on, append it.
fn apply_entry(st: &mut InitialState, e: Entry) -> Result<(), String> {
    let base = st.snapshot.index;
    let len = st.entries.len() as u64;
    if e.index <= base || e.index > base + len + 1 {
        return Err(format!(
            "entry {} does not follow the log (snapshot at {base}, {len} entries after it)",
            e.index
        ));
    }
    st.entries.truncate((e.index - base - 1) as usize);
    st.entries.push(e);
    Ok(())
}

struct Replay {
    state: InitialState,
    has_snapshot: bool,
    /// False while skipping the records before the first checkpoint of a log whose start
    /// was released.
    anchored: bool,
    first_seq: Option<u64>,
    last_checkpoint: Option<u64>,
}

impl Replay {
    fn record(&mut self, r: &persist::Record) -> Result<(), String> {
        if self.first_seq.is_none() {
            self.first_seq = Some(r.seq);
            self.anchored = r.seq == 1;
        }
        if r.kind == REC_CHECKPOINT {
            let (index, term) = parse_marker(&r.payload)?;
            self.state = InitialState {
                hard_state: HardState::default(),
                snapshot: Snapshot {
                    index,
                    term,
                    data: Bytes::new(),
                    conf: ConfState::default(),
                },
                entries: Vec::new(),
            };
            self.has_snapshot = true;
            self.anchored = true;
            self.last_checkpoint = Some(r.seq);
            return Ok(());
        }
        if !self.anchored {
            return Ok(()); // dead: a checkpoint later replaces it (checked at the end)
        }
        match r.kind {
            REC_ENTRY => {
                let e = Entry::decode(r.payload.clone())
                    .map_err(|e| format!("undecodable entry: {e}"))?;
                apply_entry(&mut self.state, e)
            }
            REC_HARD_STATE => {
                self.state.hard_state = HardState::decode(r.payload.clone())
                    .map_err(|e| format!("undecodable hard state: {e}"))?;
                Ok(())
            }
            REC_SNAPSHOT => {
                let (index, term) = parse_marker(&r.payload)?;
                apply_snapshot(
                    &mut self.state,
                    Snapshot {
                        index,
                        term,
                        data: Bytes::new(),
                        conf: ConfState::default(),
                    },
                );
                self.has_snapshot = true;
                Ok(())
            }
            k => Err(format!("unknown record type {k}")),
        }
    }
}

impl DiskStorage {
    /// Opens (or creates) the data directory `dir` on the real file system and locks it
    /// (see the module docs for an example). Errors: another process holds the lock (its
    /// pid is named), the directory belongs to another cluster or node, a damaged file
    /// (named, with the byte offset), or I/O.
    ///
    /// The returned storage holds the directory's [`DirLock`] until it is dropped (with
    /// the node that owns it); do not take a second `DirLock` on the same directory in
    /// this process: `flock` refuses it too.
    pub fn open(dir: impl AsRef<Path>, opts: DiskOptions) -> Result<DiskStorage, StorageError> {
        let dir = dir.as_ref();
        let lock = DirLock::acquire(dir)?;
        let mut s = Self::open_with_fs(Arc::new(StdFs), dir, opts)?;
        s._lock = Some(lock);
        Ok(s)
    }

    /// Like [`DiskStorage::open`] over any file system (tests use [`persist::SimFs`]),
    /// without the process lock.
    pub fn open_with_fs(
        fs: Arc<dyn Fs>,
        dir: &Path,
        opts: DiskOptions,
    ) -> Result<DiskStorage, StorageError> {
        fs.create_dir_all(dir)
            .map_err(|e| io("create directory", dir, e))?;
        let wal_dir = dir.join(WAL_DIR);
        fs.create_dir_all(&wal_dir)
            .map_err(|e| io("create directory", &wal_dir, e))?;
        let names = fs.list(dir).map_err(|e| io("list", dir, e))?;
        let mut tmp_removed = false;
        for n in names.iter().filter(|n| n.ends_with(persist::TMP_SUFFIX)) {
            let p = dir.join(n);
            log::warn!(
                "{}: removing a file left half-written by a crash",
                p.display()
            );
            fs.remove(&p).map_err(|e| io("remove", &p, e))?;
            tmp_removed = true;
        }
        if tmp_removed {
            fs.sync_dir(dir).map_err(|e| io("sync directory", dir, e))?;
        }
        Self::check_identity(&*fs, dir, &names, &opts)?;

        let mut rp = Replay {
            state: InitialState::default(),
            has_snapshot: false,
            anchored: false,
            first_seq: None,
            last_checkpoint: None,
        };
        let (mut wal, rec) = Wal::open(
            fs.clone(),
            &wal_dir,
            WalOptions {
                segment_bytes: opts.segment_bytes,
                // Zeros ahead of the data: fdatasync then commits no file-size change.
                preallocate_bytes: (opts.segment_bytes / 8).min(8 << 20),
            },
            |r, _| rp.record(r),
        )?;
        if let Some((file, at, n)) = &rec.cut {
            log::warn!(
                "raft storage: {} bytes of an unfinished write cut at {}:{at}",
                n,
                file.display()
            );
        }
        let fresh = rp.first_seq.is_none() && wal.first_seq() == 1;
        if !rp.anchored && !fresh {
            let first = wal.segment_paths().first().cloned().unwrap_or_default();
            return Err(persist::Error::Corrupt {
                file: first,
                offset: 0,
                what: format!(
                    "the log starts at record seq {} without a checkpoint: an earlier \
                     segment file is missing",
                    rp.first_seq.unwrap_or(0)
                ),
            }
            .into());
        }
        if let Some(cp) = rp.last_checkpoint {
            // Finish a release a crash interrupted.
            wal.release_before(cp)?;
        }

        // The snapshot the log names; other snapshot files are leftovers.
        let mut state = rp.state;
        let mut snapshot_conf = ConfState::default();
        if rp.has_snapshot {
            let (data, conf) =
                Self::read_snapshot(&*fs, dir, state.snapshot.index, state.snapshot.term, &opts)?;
            state.snapshot.data = data;
            state.snapshot.conf = conf.clone();
            snapshot_conf = conf;
        }
        let keep = rp
            .has_snapshot
            .then(|| snap_name(state.snapshot.index, state.snapshot.term));
        for n in &names {
            if let Some((i, _)) = parse_snap_name(n)
                && Some(n) != keep.as_ref()
            {
                let p = dir.join(n);
                if i > state.snapshot.index {
                    log::warn!(
                        "{}: removing a snapshot whose log record a crash lost",
                        p.display()
                    );
                }
                fs.remove(&p).map_err(|e| io("remove", &p, e))?;
            }
        }
        Ok(DiskStorage {
            fs,
            dir: dir.to_path_buf(),
            opts,
            wal,
            state,
            has_snapshot: rp.has_snapshot,
            snapshot_conf,
            failed: false,
            hard_state_unwritten: false,
            _lock: None,
        })
    }

    fn check_identity(
        fs: &dyn Fs,
        dir: &Path,
        names: &[String],
        opts: &DiskOptions,
    ) -> Result<(), StorageError> {
        let path = dir.join(IDENTITY_FILE);
        let want = (opts.cluster_id, opts.node_id);
        if names.iter().any(|n| n == IDENTITY_FILE) {
            let text = fs.read(&path).map_err(|e| io("read", &path, e))?;
            let text = String::from_utf8_lossy(&text);
            let mut cluster = None;
            let mut node = None;
            for line in text.lines() {
                match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                    Some(("cluster_id", v)) => cluster = v.parse::<u64>().ok(),
                    Some(("node_id", v)) => node = v.parse::<u64>().ok(),
                    _ => {}
                }
            }
            let (Some(c), Some(n)) = (cluster, node) else {
                return Err(bad(format!(
                    "{} is damaged (want lines `cluster_id = N` and `node_id = N`); restore \
                     it or the whole directory from a backup",
                    path.display()
                )));
            };
            if (c, n) != want {
                return Err(DiskError::WrongIdentity {
                    file: path,
                    found: (c, n),
                    expected: want,
                }
                .into());
            }
            return Ok(());
        }
        let wal_dir = dir.join(WAL_DIR);
        let has_wal = !fs
            .list(&wal_dir)
            .map_err(|e| io("list", &wal_dir, e))?
            .is_empty();
        if has_wal || names.iter().any(|n| parse_snap_name(n).is_some()) {
            return Err(bad(format!(
                "{} holds Raft data but no {IDENTITY_FILE} file: refusing to guess whose it is",
                dir.display()
            )));
        }
        let text = format!(
            "# raftkv data directory: do not edit or delete anything here\ncluster_id = {}\nnode_id = {}\n",
            want.0, want.1
        );
        write_atomic(fs, dir, IDENTITY_FILE, text.as_bytes())?;
        Ok(())
    }

    fn read_snapshot(
        fs: &dyn Fs,
        dir: &Path,
        index: u64,
        term: u64,
        opts: &DiskOptions,
    ) -> Result<(Bytes, ConfState), StorageError> {
        let path = dir.join(snap_name(index, term));
        let b = fs.read(&path).map_err(|e| {
            bad(format!(
                "the log names snapshot {index}@{term} but {} cannot be read ({e}): restore \
                 the directory from a backup, or replace this node through a membership change",
                path.display()
            ))
        })?;
        let damaged = |offset: usize, what: &str| -> StorageError {
            persist::Error::Corrupt {
                file: path.clone(),
                offset: offset as u64,
                what: what.to_string(),
            }
            .into()
        };
        if b.len() < 60 || &b[..8] != SNAP_MAGIC {
            return Err(damaged(0, "not a raftkv snapshot file"));
        }
        let body = b.len() - 4;
        let crc = u32::from_le_bytes([b[body], b[body + 1], b[body + 2], b[body + 3]]);
        if crc32c::crc32c(&b[..body]) != crc {
            return Err(damaged(body, "snapshot checksum mismatch"));
        }
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(a)
        };
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let nv = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
        if version != 1 && version != 2 {
            return Err(damaged(8, "unknown snapshot format version"));
        }
        if (u64_at(16), u64_at(24)) != (opts.cluster_id, opts.node_id)
            || (u64_at(32), u64_at(40)) != (index, term)
        {
            return Err(damaged(
                16,
                "snapshot header does not match its name or node",
            ));
        }
        let voters_end = 48 + nv * 8;
        if voters_end + 8 > body {
            return Err(damaged(12, "voter count runs past the end"));
        }
        let voters = (0..nv).map(|i| u64_at(48 + i * 8)).collect();
        let mut learners = Vec::new();
        let mut at = voters_end;
        if version == 2 {
            let nl = u64_at(at);
            if nl > ((body - at) / 8) as u64 || at + 8 + nl as usize * 8 + 8 > body {
                return Err(damaged(at, "learner count runs past the end"));
            }
            learners = (0..nl as usize).map(|i| u64_at(at + 8 + i * 8)).collect();
            at += 8 + nl as usize * 8;
        }
        let len = u64_at(at) as usize;
        if at.checked_add(8 + len) != Some(body) {
            return Err(damaged(at, "data length does not match the file size"));
        }
        let data = Bytes::from(b).slice(at + 8..body);
        Ok((data, ConfState { voters, learners }))
    }

    fn write_snapshot(&self, s: &Snapshot) -> Result<(), StorageError> {
        let conf = self.conf_to_store(s);
        let (v, l) = (&conf.voters, &conf.learners);
        let mut b = Vec::with_capacity(72 + (v.len() + l.len()) * 8 + s.data.len());
        b.extend_from_slice(SNAP_MAGIC);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&(v.len() as u32).to_le_bytes());
        for x in [self.opts.cluster_id, self.opts.node_id, s.index, s.term] {
            b.extend_from_slice(&x.to_le_bytes());
        }
        for x in v {
            b.extend_from_slice(&x.to_le_bytes());
        }
        b.extend_from_slice(&(l.len() as u64).to_le_bytes());
        for x in l {
            b.extend_from_slice(&x.to_le_bytes());
        }
        b.extend_from_slice(&(s.data.len() as u64).to_le_bytes());
        b.extend_from_slice(&s.data);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        write_atomic(&*self.fs, &self.dir, &snap_name(s.index, s.term), &b)?;
        Ok(())
    }

    /// The configuration to record with `s`: its own, or the voters this storage was
    /// opened with if it has none.
    fn conf_to_store(&self, s: &Snapshot) -> ConfState {
        if s.conf.voters.is_empty() {
            ConfState::from_voters(&self.opts.voters)
        } else {
            s.conf.clone()
        }
    }

    /// The persisted term and vote, and the latest commit index (which may not be written
    /// yet: see `must_sync`).
    pub fn hard_state(&self) -> HardState {
        self.state.hard_state
    }

    /// Bytes of persisted Raft state: the encoded hard state and log entries, not the
    /// snapshot (as [`MemStorage::raft_state_size`](crate::MemStorage::raft_state_size)).
    pub fn raft_state_size(&self) -> usize {
        self.state.hard_state.encoded_len()
            + self
                .state
                .entries
                .iter()
                .map(|e| e.encoded_len())
                .sum::<usize>()
    }

    /// Bytes of the persisted snapshot's data.
    pub fn snapshot_size(&self) -> usize {
        self.state.snapshot.data.len()
    }

    /// The configuration stored with the snapshot (empty if there is no snapshot).
    pub fn snapshot_conf_state(&self) -> &ConfState {
        &self.snapshot_conf
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The WAL segment files, oldest first.
    pub fn wal_segments(&self) -> Vec<PathBuf> {
        self.wal.segment_paths()
    }

    fn persist_inner(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        // Check the entries follow the log as it will be after the snapshot, before
        // writing anything.
        if let Some(first) = entries.first() {
            let (base, len) = match snapshot {
                None => (self.state.snapshot.index, self.state.entries.len() as u64),
                Some(s) => {
                    // What the snapshot rule keeps of the stored log.
                    let base = self.state.snapshot.index;
                    let keep = s.index > base
                        && self
                            .state
                            .entries
                            .get((s.index - base - 1) as usize)
                            .is_some_and(|e| e.term == s.term);
                    let len = if keep {
                        base + self.state.entries.len() as u64 - s.index
                    } else {
                        0
                    };
                    (s.index, len)
                }
            };
            let contiguous = entries
                .iter()
                .enumerate()
                .all(|(i, e)| e.index == first.index + i as u64);
            if first.index <= base || first.index > base + len + 1 || !contiguous {
                return Err(bad(format!(
                    "persisted entries must be contiguous and follow the log: first {} \
                     base {base} len {len}",
                    first.index
                )));
            }
        }
        if snapshot.is_none() && entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        if !must_sync(&self.state.hard_state, hard_state, snapshot, entries) {
            // Only the commit index moved: remember it, write it with the next batch.
            if let Some(hs) = hard_state {
                self.state.hard_state = *hs;
                self.hard_state_unwritten = true;
            }
            return Ok(());
        }
        self.failed = true; // until this call completes
        if let Some(s) = snapshot {
            self.write_snapshot(s)?;
        }
        let mut payloads: Vec<(u8, Vec<u8>)> = Vec::with_capacity(entries.len() + 2);
        if let Some(s) = snapshot {
            payloads.push((REC_SNAPSHOT, marker(s.index, s.term)));
        }
        for e in entries {
            payloads.push((REC_ENTRY, e.encode_to_vec()));
        }
        // The hard state of this call, or the one whose commit index moved since the last
        // write (it goes with this batch).
        let hs = hard_state
            .copied()
            .or(self.hard_state_unwritten.then_some(self.state.hard_state));
        if let Some(hs) = &hs {
            payloads.push((REC_HARD_STATE, hs.encode_to_vec()));
        }
        self.wal
            .append(payloads.iter().map(|(k, p)| (*k, p.as_slice())))?;
        self.wal.sync()?;
        self.hard_state_unwritten = false;

        // Durable: now the in-memory copy.
        let old_snap = self
            .has_snapshot
            .then_some((self.state.snapshot.index, self.state.snapshot.term));
        if let Some(s) = snapshot {
            let conf = self.conf_to_store(s);
            apply_snapshot(
                &mut self.state,
                Snapshot {
                    conf: conf.clone(),
                    ..s.clone()
                },
            );
            self.has_snapshot = true;
            self.snapshot_conf = conf;
        }
        for e in entries {
            apply_entry(&mut self.state, e.clone()).map_err(bad)?;
        }
        if let Some(hs) = hard_state {
            self.state.hard_state = *hs;
        }
        if let Some(s) = snapshot {
            if let Some((i, t)) = old_snap
                && (i, t) != (s.index, s.term)
            {
                let p = self.dir.join(snap_name(i, t));
                if let Err(e) = self.fs.remove(&p) {
                    log::warn!("cannot remove the old snapshot {}: {e}", p.display());
                }
            }
            if self.wal.segment_paths().len() > 1 {
                self.checkpoint()?;
            }
        }
        self.failed = false;
        Ok(())
    }

    /// Starts a new segment with the whole live state (snapshot marker, hard state, the
    /// entries after the snapshot) and deletes the segments before it.
    fn checkpoint(&mut self) -> Result<(), StorageError> {
        self.wal.roll()?;
        let st = &self.state;
        let mut payloads: Vec<(u8, Vec<u8>)> = Vec::with_capacity(st.entries.len() + 2);
        payloads.push((REC_CHECKPOINT, marker(st.snapshot.index, st.snapshot.term)));
        payloads.push((REC_HARD_STATE, st.hard_state.encode_to_vec()));
        for e in &st.entries {
            payloads.push((REC_ENTRY, e.encode_to_vec()));
        }
        let seq = self
            .wal
            .append(payloads.iter().map(|(k, p)| (*k, p.as_slice())))?;
        self.wal.sync()?;
        self.wal.release_before(seq)?;
        Ok(())
    }
}

/// Whether a persist call must reach the disk now: yes for entries, a snapshot, a new term
/// or vote; no when only the commit index moved. The commit index is volatile state in Raft
/// (Figure 2 of the paper): a node that comes back with an older one learns the current one
/// from the leader, and nothing it promised depended on it. So such a call only updates the
/// in-memory state, and the hard state goes into the next batch that is written (and
/// synced); a restart before that brings back the commit index of the last written batch.
/// (Writing the record without a sync would leave unsynced records that a later batch
/// could outlive, a hole the WAL's recovery rightly refuses.) etcd's WAL does not sync for
/// a commit index either (`raft.MustSync`). On a leader this saves the second fsync of
/// every write: the one that recorded the commit before the entry could be applied.
fn must_sync(
    stored: &HardState,
    hard_state: Option<&HardState>,
    snapshot: Option<&Snapshot>,
    entries: &[Entry],
) -> bool {
    snapshot.is_some()
        || !entries.is_empty()
        || hard_state.is_some_and(|hs| hs.term != stored.term || hs.vote != stored.vote)
}

impl Storage for DiskStorage {
    fn load(&self) -> Result<InitialState, StorageError> {
        Ok(self.state.clone())
    }

    /// One WAL batch and one `fdatasync` (plus, with a snapshot, the atomic snapshot file
    /// before it); nothing is written when only the commit index changed: it goes with the
    /// next batch (see `must_sync`).
    /// After an error every later call fails: the node must stop.
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        if self.failed {
            return Err(bad(format!(
                "an earlier write to {} failed; restart the node to recover from what is durable",
                self.dir.display()
            )));
        }
        self.persist_inner(hard_state, snapshot, entries)
    }
}
