//! The in-memory Raft log: a snapshot boundary followed by entries.
//!
//! Invariants (checked with `assert!` where they are established):
//! - `entries[i].index == snap.index + 1 + i` — the log is contiguous after the snapshot;
//! - `snap.index <= applied <= commit <= last_index()`;
//! - entries at or below `commit` are never truncated (a peer asking for that is ignored);
//! - `unstable_from` is the first index not yet handed to the driver to persist;
//!   `stable <= last_index()` is the last index the driver has confirmed persisted.

use bytes::Bytes;
use proto::raft::{Entry, EntryType};

use crate::storage::Snapshot;

#[derive(Debug)]
pub(crate) struct RaftLog {
    /// The latest snapshot (taken locally or installed from a leader).
    pub snap: Snapshot,
    /// Entries after the snapshot.
    pub entries: Vec<Entry>,
    /// The highest index known committed.
    pub commit: u64,
    /// The highest index handed to the driver to apply.
    pub applied: u64,
    /// First index not yet handed to the driver to persist.
    pub unstable_from: u64,
    /// Last index confirmed persisted by the driver (`advance`).
    pub stable: u64,
    /// A snapshot not yet handed to the driver to persist.
    pub pending_snapshot: Option<Snapshot>,
    /// A snapshot not yet handed to the driver to apply.
    pub pending_apply_snapshot: Option<Snapshot>,
}

impl RaftLog {
    pub fn new(snap: Snapshot, entries: Vec<Entry>, commit: u64) -> Self {
        let last = snap.index + entries.len() as u64;
        let commit = commit.clamp(snap.index, last);
        let applied = snap.index;
        let apply_snapshot = (snap.index > 0).then(|| snap.clone());
        RaftLog {
            snap,
            entries,
            commit,
            applied,
            unstable_from: last + 1,
            stable: last,
            pending_snapshot: None,
            pending_apply_snapshot: apply_snapshot,
        }
    }

    pub fn first_index(&self) -> u64 {
        self.snap.index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.snap.index + self.entries.len() as u64
    }

    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.snap.term, |e| e.term)
    }

    /// The term of the entry at `index`: `None` if compacted away or past the end.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.snap.index {
            return Some(self.snap.term);
        }
        if index < self.snap.index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.snap.index - 1) as usize].term)
    }

    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index <= self.snap.index || index > self.last_index() {
            return None;
        }
        Some(&self.entries[(index - self.snap.index - 1) as usize])
    }

    /// Entries `[lo, hi]` (clamped to the log), at most `max_bytes` of data but at least one.
    pub fn slice(&self, lo: u64, hi: u64, max_bytes: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut size = 0usize;
        let lo = lo.max(self.first_index());
        let hi = hi.min(self.last_index());
        for i in lo..=hi {
            let e = &self.entries[(i - self.snap.index - 1) as usize];
            size += e.data.len() + 16;
            if !out.is_empty() && size > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        out
    }

    /// True if a log ending at (`index`, `term`) is at least as up to date as ours (§5.4.1).
    pub fn is_up_to_date(&self, index: u64, term: u64) -> bool {
        (term, index) >= (self.last_term(), self.last_index())
    }

    pub fn append_new(&mut self, term: u64, entry_type: EntryType, data: Bytes) -> u64 {
        let index = self.last_index() + 1;
        self.entries.push(Entry {
            term,
            index,
            entry_type: entry_type as i32,
            data,
        });
        index
    }

    /// Removes every entry from `index` on. Never touches committed entries.
    pub fn truncate_from(&mut self, index: u64) {
        assert!(
            index > self.commit,
            "truncating committed entries: from {index}, commit {}",
            self.commit
        );
        assert!(index > self.snap.index, "truncating into the snapshot");
        self.entries
            .truncate((index - self.snap.index - 1) as usize);
        self.unstable_from = self.unstable_from.min(index);
        self.stable = self.stable.min(index - 1);
    }

    /// The first index of the run of entries with the same term as `index`, not going below
    /// the first log index. Used for the conflict hint in a rejection.
    pub fn first_index_of_term_at(&self, index: u64) -> u64 {
        let Some(t) = self.term(index) else {
            return index;
        };
        let mut i = index;
        while i > self.first_index() && self.term(i - 1) == Some(t) {
            i -= 1;
        }
        i
    }

    /// The last index at or below `upto` whose entry has `term`, if the log still has one.
    pub fn last_index_of_term(&self, term: u64, upto: u64) -> Option<u64> {
        let mut i = upto.min(self.last_index());
        while i >= self.first_index() {
            let t = self.term(i)?;
            if t == term {
                return Some(i);
            }
            if t < term {
                return None;
            }
            i -= 1;
        }
        None
    }

    pub fn commit_to(&mut self, index: u64) -> bool {
        let index = index.min(self.last_index());
        if index > self.commit {
            self.commit = index;
            true
        } else {
            false
        }
    }

    /// Drops entries through `snap.index` after the service snapshotted there.
    pub fn compact(&mut self, snap: Snapshot) {
        assert!(
            snap.index > self.snap.index && snap.index <= self.applied,
            "compaction to {} outside ({}, {}]",
            snap.index,
            self.snap.index,
            self.applied
        );
        let n = (snap.index - self.snap.index) as usize;
        self.entries.drain(..n);
        self.snap = snap.clone();
        self.pending_snapshot = Some(snap);
        self.unstable_from = self.unstable_from.max(self.snap.index + 1);
    }

    /// Replaces the whole log with a snapshot received from the leader.
    pub fn restore(&mut self, snap: Snapshot) {
        assert!(snap.index > self.commit, "restoring an older snapshot");
        self.entries.clear();
        self.commit = snap.index;
        self.applied = snap.index;
        self.unstable_from = snap.index + 1;
        self.stable = self.stable.min(snap.index);
        self.snap = snap.clone();
        self.pending_snapshot = Some(snap.clone());
        self.pending_apply_snapshot = Some(snap);
    }
}
