//! Where Raft's durable state lives: the [`Storage`] trait and the in-memory
//! [`MemStorage`] that tests can "crash" (the on-disk one is `crate::DiskStorage`, checked
//! against `MemStorage` by a model test).
//!
//! The core never calls storage itself: the driver loads an [`InitialState`] once at start
//! and then hands every [`Ready`](crate::Ready) to [`Storage::persist`] before sending the
//! messages that depend on it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proto::Message;
use proto::raft::{ConfChange, ConfChangeType, Entry, HardState};

/// A state-machine snapshot: everything applied through `index` (whose entry had `term`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The last log index the snapshot covers.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The service's opaque state-machine image.
    pub data: Bytes,
    /// The configuration in effect at `index`. Empty `voters` means "the voters the node
    /// was started with" ([`Config::peers`](crate::Config::peers)): a snapshot written
    /// before membership changes existed.
    pub conf: ConfState,
}

/// A configuration: who votes and who only learns (etcd's `ConfState`). Both lists are
/// sorted and disjoint. Stored in every snapshot's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfState {
    /// Node ids whose votes and acknowledgements count (a majority of them elects and
    /// commits).
    pub voters: Vec<u64>,
    /// Node ids that receive the log and snapshots but neither vote nor count toward
    /// commit (thesis §4.2.1, etcd's learners).
    pub learners: Vec<u64>,
}

impl ConfState {
    /// A configuration of these voters and no learners (sorted, deduplicated).
    pub fn from_voters(voters: &[u64]) -> Self {
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        voters.dedup();
        ConfState {
            voters,
            learners: Vec::new(),
        }
    }

    /// True if `id` votes.
    pub fn is_voter(&self, id: u64) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// True if `id` is a learner.
    pub fn is_learner(&self, id: u64) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    /// True if `id` is a voter or a learner.
    pub fn contains(&self, id: u64) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Votes needed to elect or commit: a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Applies one change as a log entry describes it. A change that does not apply (adding
    /// a member, promoting a non-learner, removing a non-member or the last voter, node id
    /// 0) changes nothing and returns false: every node decodes the same entry the same
    /// way, so they all skip it alike. The leader refuses such changes before they reach
    /// the log (see `RawNode::propose_conf_change`).
    pub fn apply_change(&mut self, cc: &ConfChange) -> bool {
        let id = cc.node_id;
        if id == 0 {
            return false;
        }
        match ConfChangeType::try_from(cc.change_type) {
            Ok(ConfChangeType::ConfChangeAddLearner) if !self.contains(id) => {
                let at = self.learners.binary_search(&id).unwrap_or_else(|i| i);
                self.learners.insert(at, id);
                true
            }
            Ok(ConfChangeType::ConfChangePromoteLearner) if self.is_learner(id) => {
                self.learners.retain(|&l| l != id);
                let at = self.voters.binary_search(&id).unwrap_or_else(|i| i);
                self.voters.insert(at, id);
                true
            }
            Ok(ConfChangeType::ConfChangeRemoveNode)
                if self.is_learner(id) || (self.is_voter(id) && self.voters.len() > 1) =>
            {
                self.learners.retain(|&l| l != id);
                self.voters.retain(|&v| v != id);
                true
            }
            _ => false,
        }
    }
}

/// What a node restarts from.
#[derive(Clone, Debug, Default)]
pub struct InitialState {
    /// The last persisted term, vote and commit index.
    pub hard_state: HardState,
    /// The last persisted snapshot (index 0 means none).
    pub snapshot: Snapshot,
    /// The log after the snapshot: `entries[i].index == snapshot.index + 1 + i`.
    pub entries: Vec<Entry>,
}

/// An error from storage. The driver stops the node on it: a node that cannot persist
/// must not send anything that promises it did.
#[derive(Debug)]
pub struct StorageError(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "raft storage: {}", self.0)
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Durable Raft state. One `persist` call is one atomic write (a crash keeps all of it or
/// none of it), applied in this order (an implementation may leave a call that only moves
/// the commit index unsynced: after a crash the commit index may then be older, which
/// Raft allows, as it is volatile state):
///
/// 1. `snapshot`, if any: store it, then drop every log entry with index `<=
///    snapshot.index` — and every later entry too, unless the stored entry at
///    `snapshot.index` has `snapshot.term` (then the log after it is kept);
/// 2. `entries`, if any: drop every stored entry with index `>= entries[0].index`, then
///    append `entries` (they are contiguous and follow the log or the snapshot);
/// 3. `hard_state`, if any: replace the stored one.
pub trait Storage: Send {
    /// Reads everything persisted so far.
    fn load(&self) -> Result<InitialState, StorageError>;
    /// Persists one [`Ready`](crate::Ready)'s worth of state (see the trait docs).
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
    ) -> Result<(), StorageError>;
}

#[derive(Debug, Default)]
struct MemInner {
    state: InitialState,
}

/// Storage in memory. Clones share the same state, so a test can drop a node (a crash: all
/// it had not persisted is gone) and restart a new one from the clone it kept.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<MemInner>>,
}

impl MemStorage {
    /// Empty storage: a node that never ran.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of persisted Raft state: the encoded hard state and log entries, not the
    /// snapshot (the lab's "Raft state size").
    pub fn raft_state_size(&self) -> usize {
        let g = self.lock();
        g.state.hard_state.encoded_len()
            + g.state
                .entries
                .iter()
                .map(|e| e.encoded_len())
                .sum::<usize>()
    }

    /// The persisted term, vote and commit index.
    pub fn hard_state(&self) -> HardState {
        self.lock().state.hard_state
    }

    /// Bytes of the persisted snapshot.
    pub fn snapshot_size(&self) -> usize {
        self.lock().state.snapshot.data.len()
    }

    /// The persisted log's last index (the snapshot's if no entry follows it) and the term
    /// of the persisted entry at `index` (`None` if it is not stored; the snapshot's term
    /// at the snapshot's index). For checks that must not copy the whole log.
    pub fn last_index_and_term(&self, index: u64) -> (u64, Option<u64>) {
        let g = self.lock();
        let (snap, entries) = (&g.state.snapshot, &g.state.entries);
        let last = snap.index + entries.len() as u64;
        let term = if index == snap.index {
            Some(snap.term)
        } else if index > snap.index && index <= last {
            Some(entries[(index - snap.index - 1) as usize].term)
        } else {
            None
        };
        (last, term)
    }

    /// A copy of everything persisted.
    pub fn state(&self) -> InitialState {
        self.lock().state.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        // A panic while holding the lock leaves consistent data (every write is a whole
        // assignment), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for MemStorage {
    fn load(&self) -> Result<InitialState, StorageError> {
        Ok(self.state())
    }

    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        let mut g = self.lock();
        let st = &mut g.state;
        if let Some(snap) = snapshot {
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
            st.snapshot = snap.clone();
        }
        if let Some(first) = entries.first() {
            let base = st.snapshot.index;
            assert!(
                first.index > base && first.index <= base + st.entries.len() as u64 + 1,
                "persisted entries must follow the log: first {} base {} len {}",
                first.index,
                base,
                st.entries.len()
            );
            st.entries.truncate((first.index - base - 1) as usize);
            st.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hard_state {
            st.hard_state = *hs;
        }
        Ok(())
    }
}
