//! [`SimDisk`]: `raft::DiskStorage` over [`persist::SimFs`], as a node's storage in the
//! simulator, so that crash tests run the real on-disk format through simulated power
//! losses.
//!
//! At every restart the file system loses power first ([`SimFs::power_loss`]: only synced
//! bytes and directory entries survive, plus, half the time, a random prefix of what was
//! written after), then the directory is reopened (recovery runs) and its state is compared
//! with a [`MemStorage`] shadow that received the same `persist` calls: it must be equal.
//! With probability [`SimDisk::cut_chance`] a `persist` call is cut by a power loss after a
//! random number of file-system calls; the node then stops (as the driver stops a node
//! whose storage fails), and at restart the state must be the one before that call or the
//! one after it (one `persist` is atomic).

use std::path::PathBuf;
use std::sync::Arc;

use persist::SimFs;
use raft::{
    DiskOptions, DiskStorage, Entry, HardState, InitialState, MemStorage, Snapshot, Storage,
    StorageError,
};

use crate::sim::{Rng, SimStorage};

/// `DiskStorage` on a simulated file system that loses power (module docs).
#[derive(Debug)]
pub struct SimDisk {
    fs: SimFs,
    dir: PathBuf,
    opts: DiskOptions,
    disk: Option<DiskStorage>,
    shadow: MemStorage,
    /// The state before a `persist` that a power cut interrupted (the shadow holds the
    /// state after it).
    before_cut: Option<InitialState>,
    rng: Rng,
    /// Probability that a `persist` is cut partway by a power loss.
    pub cut_chance: f64,
    /// Restarts so far, and how many came back with the state before a cut persist.
    pub restarts: u64,
    /// Persist calls cut by a power loss.
    pub cuts: u64,
}

fn copy_state(st: &InitialState) -> MemStorage {
    let m = MemStorage::new();
    let mut w = m.clone();
    let snap = (st.snapshot != Snapshot::default()).then_some(&st.snapshot);
    w.persist(Some(&st.hard_state), snap, &st.entries)
        .expect("mem storage");
    m
}

fn same(a: &InitialState, b: &InitialState) -> bool {
    a.hard_state == b.hard_state && a.snapshot == b.snapshot && a.entries == b.entries
}

fn describe(st: &InitialState) -> String {
    format!(
        "term {} vote {} commit {}, snapshot {}@{}, entries {}..={}",
        st.hard_state.term,
        st.hard_state.vote,
        st.hard_state.commit,
        st.snapshot.index,
        st.snapshot.term,
        st.snapshot.index + 1,
        st.snapshot.index + st.entries.len() as u64
    )
}

impl SimDisk {
    /// Node `node_id`'s directory on a fresh simulated disk; `seed` drives its power losses
    /// and cuts; `segment_bytes` small makes segment rolls and releases frequent.
    pub fn new(seed: u64, node_id: u64, voters: Vec<u64>, segment_bytes: u64) -> Self {
        let opts = DiskOptions {
            cluster_id: 1,
            node_id,
            voters,
            segment_bytes,
        };
        SimDisk {
            fs: SimFs::new(seed),
            dir: PathBuf::from(format!("/data/n{node_id}")),
            opts,
            disk: None,
            shadow: MemStorage::new(),
            before_cut: None,
            rng: Rng::new(seed ^ 0xD15C),
            cut_chance: 0.0,
            restarts: 0,
            cuts: 0,
        }
    }

    /// The simulated file system (for sync counts).
    pub fn fs(&self) -> &SimFs {
        &self.fs
    }
}

impl Storage for SimDisk {
    fn load(&self) -> Result<InitialState, StorageError> {
        match &self.disk {
            Some(d) => d.load(),
            None => Ok(self.shadow.state()),
        }
    }

    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        let Some(disk) = self.disk.as_mut() else {
            panic!("persist on a node whose disk is down");
        };
        let before = self.shadow.state();
        self.shadow.persist(hard_state, snapshot, entries)?;
        let cut = self.rng.chance(self.cut_chance);
        if cut {
            self.fs.cut_power_after(self.rng.range(0, 14));
        }
        let r = disk.persist(hard_state, snapshot, entries);
        match r {
            Ok(()) => {
                if cut {
                    self.fs.cut_power_after(u64::MAX); // the cut came after this call
                }
                Ok(())
            }
            Err(e) if cut => {
                self.cuts += 1;
                self.disk = None;
                self.before_cut = Some(before);
                Err(e)
            }
            Err(e) => panic!("n{}: DiskStorage::persist failed: {e}", self.opts.node_id),
        }
    }
}

impl SimStorage for SimDisk {
    fn hard_state(&self) -> HardState {
        match &self.disk {
            Some(d) => d.hard_state(),
            None => self.shadow.hard_state(),
        }
    }

    fn raft_state_size(&self) -> usize {
        match &self.disk {
            Some(d) => d.raft_state_size(),
            None => self.shadow.raft_state_size(),
        }
    }

    fn restart(&mut self) -> Result<(), String> {
        self.disk = None;
        let torn = self.rng.chance(0.5);
        self.fs.power_loss(torn);
        let disk =
            DiskStorage::open_with_fs(Arc::new(self.fs.clone()), &self.dir, self.opts.clone())
                .map_err(|e| format!("reopen after a power loss: {e}"))?;
        let got = disk.load().map_err(|e| e.to_string())?;
        let want = self.shadow.state();
        if !same(&got, &want) {
            match self.before_cut.take() {
                Some(before) if same(&got, &before) => self.shadow = copy_state(&before),
                _ => {
                    return Err(format!(
                        "reopened as ({}) but persisted ({})",
                        describe(&got),
                        describe(&want)
                    ));
                }
            }
        }
        self.before_cut = None;
        self.restarts += 1;
        self.disk = Some(disk);
        Ok(())
    }
}
