//! [`SimDisk`]: `raft::DiskStorage` over [`persist::SimFs`], as a node's storage in the
//! simulator, so that crash tests run the real on-disk format through simulated power
//! losses.
//!
//! At every restart the file system loses power first ([`SimFs::power_loss_with`]: only
//! synced bytes and directory entries survive, plus, as drawn for each restart, nothing,
//! a random prefix, or a random subset of the sectors of what was written after), then the
//! directory is reopened (recovery runs) and its state is compared
//! with a [`MemStorage`] shadow that received the same `persist` calls: it must be equal,
//! except that the commit index may be the one of the last call that wrote (`DiskStorage`
//! writes nothing for a call that only moves the commit index).
//! With probability [`SimDisk::cut_chance`] a `persist` call is cut by a power loss after a
//! random number of file-system calls; the node then stops (as the driver stops a node
//! whose storage fails), and at restart the state must be the one before that call or the
//! one after it (one `persist` is atomic).

use std::path::PathBuf;
use std::sync::Arc;

use persist::{Loss, SimFs};
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
    /// The commit index as of the last persist that wrote: `DiskStorage` writes nothing for
    /// a call that only moves the commit index, so a restart brings back this one.
    synced_commit: u64,
}

fn copy_state(st: &InitialState) -> MemStorage {
    let m = MemStorage::new();
    let mut w = m.clone();
    let snap = (st.snapshot != Snapshot::default()).then_some(&st.snapshot);
    w.persist(Some(&st.hard_state), snap, &st.entries)
        .expect("mem storage");
    m
}

/// `got` is `want`, except that its commit index may be `written`, the one of the last
/// call that wrote (later calls that only moved the commit index wrote nothing).
fn same_but_commit(got: &InitialState, want: &InitialState, written: u64) -> bool {
    let (g, w) = (&got.hard_state, &want.hard_state);
    (g.term, g.vote) == (w.term, w.vote)
        && (g.commit == w.commit || g.commit == written)
        && got.snapshot == want.snapshot
        && got.entries == want.entries
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
            synced_commit: 0,
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
        let commit_only = snapshot.is_none()
            && entries.is_empty()
            && hard_state.is_none_or(|hs| {
                hs.term == before.hard_state.term && hs.vote == before.hard_state.vote
            });
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
                if !commit_only {
                    self.synced_commit = self.shadow.hard_state().commit;
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

    fn last_index_and_term(&self, index: u64) -> (u64, Option<u64>) {
        // After each `persist` the disk holds what the shadow holds (checked at every
        // restart), so the shadow answers for what is durable.
        self.shadow.last_index_and_term(index)
    }

    fn restart(&mut self) -> Result<(), String> {
        self.disk = None;
        let loss = [Loss::Synced, Loss::Prefix, Loss::Sectors][self.rng.range(0, 3) as usize];
        self.fs.power_loss_with(loss);
        let disk =
            DiskStorage::open_with_fs(Arc::new(self.fs.clone()), &self.dir, self.opts.clone())
                .map_err(|e| format!("reopen after a power loss: {e}"))?;
        let got = disk.load().map_err(|e| e.to_string())?;
        let want = self.shadow.state();
        // A call that only moved the commit index wrote nothing: the commit index comes back
        // as of the last call that wrote.
        let lo = self.synced_commit;
        if !same_but_commit(&got, &want, lo) {
            match self.before_cut.take() {
                Some(before) if same_but_commit(&got, &before, lo) => {
                    self.shadow = copy_state(&got);
                }
                _ => {
                    return Err(format!(
                        "reopened as ({}) but persisted ({})",
                        describe(&got),
                        describe(&want)
                    ));
                }
            }
        }
        if got.hard_state.commit != self.shadow.hard_state().commit {
            self.shadow = copy_state(&got);
        }
        self.synced_commit = got.hard_state.commit;
        self.before_cut = None;
        self.restarts += 1;
        self.disk = Some(disk);
        Ok(())
    }
}
