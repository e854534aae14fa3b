//! The deterministic Raft core: [`RawNode`]. No threads, clock, sockets or files.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use proto::raft::raft_message::Body;
use proto::raft::{
    AppendEntriesReply, AppendEntriesRequest, Entry, EntryType, HardState, InstallSnapshotReply,
    InstallSnapshotRequest, RaftMessage, RequestVoteReply, RequestVoteRequest,
};

use crate::log::RaftLog;
use crate::storage::{InitialState, Snapshot};
use crate::{Error, Result};

/// Static configuration of one node. Times are in ticks; see the crate docs for the
/// real-time value of a tick.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: u64,
    /// Every voter of the cluster, this node included.
    pub peers: Vec<u64>,
    /// Messages carrying another cluster id are dropped.
    pub cluster_id: u64,
    /// Minimum election timeout; each timeout is drawn from `[election_tick, 2 *
    /// election_tick)`. Also the CheckQuorum window and the leader-lease length.
    pub election_tick: u32,
    /// A leader sends heartbeats every `heartbeat_tick` ticks.
    pub heartbeat_tick: u32,
    /// Soft cap on entry bytes per AppendEntries (at least one entry is always sent).
    pub max_msg_bytes: usize,
    /// At most this many AppendEntries in flight per follower in replicate mode.
    pub max_inflight: usize,
    /// Bytes of snapshot per InstallSnapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// Run a PreVote round before starting an election (§9.6 of Ongaro's thesis).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a majority for `election_tick`
    /// ticks, and followers that have a live leader ignore vote requests.
    pub check_quorum: bool,
    /// Seed of the RNG that draws election timeouts (mixed with `id`; default: `id`).
    pub seed: u64,
    /// For the [`Node`](crate::Node) driver only (the core does not look at it): while it
    /// leads, persist on a separate thread and keep stepping and replicating meanwhile
    /// (see `Node`). Default off: on a CPU-bound machine the extra AppendEntries and thread
    /// hand-offs cost more than the overlap gains (README, "kv-bench").
    pub pipelined_persist: bool,
}

impl Config {
    /// The defaults described in the crate docs.
    pub fn new(id: u64, peers: Vec<u64>) -> Self {
        Config {
            id,
            peers,
            cluster_id: 0,
            election_tick: 10,
            heartbeat_tick: 3,
            max_msg_bytes: 1 << 20,
            max_inflight: 64,
            snapshot_chunk_bytes: 256 << 10,
            pre_vote: true,
            check_quorum: true,
            seed: id,
            pipelined_persist: false,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |s: &str| Err(Error::InvalidConfig(s.to_string()));
        if self.id == 0 {
            return bad("id 0 is reserved for 'none'");
        }
        if !self.peers.contains(&self.id) {
            return bad("peers must include this node");
        }
        if self.peers.contains(&0) {
            return bad("peer id 0 is reserved");
        }
        if self.heartbeat_tick == 0 || self.election_tick <= self.heartbeat_tick {
            return bad("need 0 < heartbeat_tick < election_tick");
        }
        if self.max_inflight == 0 || self.snapshot_chunk_bytes == 0 {
            return bad("max_inflight and snapshot_chunk_bytes must be positive");
        }
        Ok(())
    }
}

/// A node's role, as reported by [`RawNode::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for (pre-)votes.
    Candidate,
    /// Leads its term.
    Leader,
}

/// A snapshot of a node's state for monitoring and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: u64,
    /// Current term.
    pub term: u64,
    /// Current role.
    pub role: Role,
    /// The leader this node knows of in `term`.
    pub leader: Option<u64>,
    /// Highest index known committed.
    pub commit: u64,
    /// Highest index handed out to apply.
    pub applied: u64,
    /// First index still in the log (the snapshot covers those before it).
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Index of the latest snapshot.
    pub snapshot_index: u64,
    /// Entries in the log after the snapshot.
    pub log_entries: u64,
    /// Approximate in-memory size of those entries: payload bytes plus 16 per entry.
    pub log_bytes: u64,
}

/// Counters of what the core dropped or did; for monitoring and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages from a node id not in the configuration (or from ourselves).
    pub dropped_unknown_peer: u64,
    /// Messages with another cluster id.
    pub dropped_foreign_cluster: u64,
    /// Messages addressed to another node.
    pub dropped_misaddressed: u64,
    /// Messages without a body or with impossible contents.
    pub dropped_malformed: u64,
    /// Messages from an older term (answered when the protocol says so).
    pub stale_term: u64,
    /// Elections this node started (real ones, not PreVote).
    pub elections: u64,
    /// Followers found with a log shorter than what this leader recorded as matched
    /// (their disk was replaced or lost, or a bug): the probe at the match index was
    /// rejected twice, a resend interval apart. The leader then forgets the match and
    /// probes from what the follower has (a warning is logged each time).
    pub follower_log_regressions: u64,
}

/// The answer to a ReadIndex request: once the state machine has applied through
/// `index`, a read for `ctx` sees every write committed before the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's request id, as given to [`RawNode::read_index`].
    pub ctx: u64,
    /// The commit index to wait for.
    pub index: u64,
}

/// Everything the driver must do after a batch of `tick` / `step` / `propose` calls. The
/// step numbers are those of the driver contract in the crate docs: take this Ready (1),
/// persist (2), send what waited for the persist (3), apply (4), then call
/// [`RawNode::advance`] (5).
#[derive(Debug, Default)]
pub struct Ready {
    /// Persist (step 2) if `Some`: the term, vote and commit index changed.
    pub hard_state: Option<HardState>,
    /// Persist (step 2, before `entries`): a snapshot taken locally or received from the
    /// leader. See [`Storage::persist`](crate::Storage::persist) for what it drops.
    pub snapshot: Option<Snapshot>,
    /// Persist (step 2): append, replacing any stored entry at or after `entries[0].index`.
    pub entries: Vec<Entry>,
    /// Send at once (step 1), before or during the persist: a leader's AppendEntries,
    /// heartbeats and snapshot chunks, which promise nothing about this node's disk.
    pub messages: Vec<RaftMessage>,
    /// Send (step 3) only after step 2 completed: votes, replies and vote requests, which
    /// promise that this node's term, vote and log are durable.
    pub persisted_messages: Vec<RaftMessage>,
    /// Apply (step 4, before `committed_entries`): replace the state machine with this
    /// snapshot.
    pub apply_snapshot: Option<Snapshot>,
    /// Apply (step 4) in order: committed entries (no-op entries included, with empty
    /// data; the driver skips them).
    pub committed_entries: Vec<Entry>,
    /// ReadIndex answers (step 4): serve each read once the state machine has applied
    /// through its index.
    pub read_states: Vec<ReadState>,
}

/// A tiny seeded RNG (SplitMix64): deterministic, no global state.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[derive(Debug)]
struct Follower {
    /// The leader of the current term, once heard from.
    leader: Option<u64>,
    /// A snapshot being received in chunks: (index, term, bytes so far).
    incoming: Option<(u64, u64, Vec<u8>)>,
}

#[derive(Debug)]
struct Candidate {
    /// A PreVote round (term not yet incremented) rather than a real election.
    pre_vote: bool,
    /// Answers so far, this node's own vote included.
    votes: BTreeMap<u64, bool>,
}

#[derive(Debug, PartialEq, Eq)]
enum ProgressState {
    /// One probe in flight at a time to find where the follower's log matches.
    Probe { paused: bool },
    /// Optimistic pipelining: `inflight` holds the last index of each unacknowledged
    /// AppendEntries.
    Replicate { inflight: VecDeque<u64> },
    /// Sending the snapshot at `index`; `offset` is the next byte to send.
    Snapshot { index: u64, offset: u64 },
}

/// What a leader knows of one follower.
#[derive(Debug)]
struct Progress {
    /// Highest index known to match the leader's log.
    matched: u64,
    /// Next index to send.
    next: u64,
    state: ProgressState,
    /// Heard from in the current CheckQuorum window.
    active: bool,
    /// Ticks since the last reply that acknowledged log or snapshot traffic while
    /// something was outstanding; at `resend_ticks` the leader resends.
    stall: u32,
    /// Highest commit index this follower has been told about.
    commit_sent: u64,
    /// Rejections of the probe at `matched` since the last success (see
    /// `handle_append_reply`): the second means the follower's log went backwards.
    regress_rejections: u8,
    /// Highest index carried by an AppendEntries possibly still on its way (reset when
    /// the leader resends after a silence): while it covers the snapshot, a follower whose
    /// `next` a late reply moved below the snapshot is caught up by those entries rather
    /// than sent the snapshot.
    sent_to: u64,
}

#[derive(Debug)]
struct PendingRead {
    ctx: u64,
    index: u64,
    seq: u64,
    acks: BTreeSet<u64>,
}

#[derive(Debug)]
struct Leader {
    progress: BTreeMap<u64, Progress>,
    heartbeat_elapsed: u32,
    quorum_elapsed: u32,
    /// Reads confirmed by a heartbeat round, in request order.
    reads: VecDeque<PendingRead>,
    /// Reads waiting for the first commit of this term (the leader's commit index is not
    /// known to be current before that).
    reads_waiting: Vec<u64>,
    read_seq: u64,
}

#[derive(Debug)]
enum RoleState {
    Follower(Follower),
    Candidate(Candidate),
    Leader(Leader),
}

/// The Raft state machine of one node. See the crate docs for how to drive it.
#[derive(Debug)]
pub struct RawNode {
    cfg: Config,
    /// The other voters, sorted.
    peers: Vec<u64>,
    term: u64,
    vote: u64,
    log: RaftLog,
    role: RoleState,
    election_elapsed: u32,
    randomized_timeout: u32,
    rng: Rng,
    /// Outgoing messages and whether each must wait for the persist.
    msgs: Vec<(RaftMessage, bool)>,
    read_states: Vec<ReadState>,
    /// The hard state last handed out in a Ready.
    prev_hs: HardState,
    /// Proposals were appended since the last broadcast: replicate them at the next
    /// `ready` (or `take_early_messages`), all in one AppendEntries per follower.
    bcast_pending: bool,
    stats: Stats,
}

/// Messages whose term is this far beyond ours are dropped as malformed: no honest peer
/// can get there (it would take decades of elections), and accepting them could exhaust
/// the term space.
const MAX_TERM_JUMP: u64 = 1 << 32;

/// Log indexes beyond this from a peer are malformed (index arithmetic stays far from
/// overflow).
const MAX_INDEX: u64 = u64::MAX / 4;

fn body_term(b: &Body) -> u64 {
    match b {
        Body::RequestVote(m) => m.term,
        Body::RequestVoteReply(m) => m.term,
        Body::AppendEntries(m) => m.term,
        Body::AppendEntriesReply(m) => m.term,
        Body::InstallSnapshot(m) => m.term,
        Body::InstallSnapshotReply(m) => m.term,
    }
}

impl RawNode {
    /// A node restarting from `state` (use `InitialState::default()` for a new node).
    pub fn new(cfg: Config, state: InitialState) -> Result<Self> {
        cfg.validate()?;
        let mut peers: Vec<u64> = cfg.peers.iter().copied().filter(|&p| p != cfg.id).collect();
        peers.sort_unstable();
        peers.dedup();
        let InitialState {
            hard_state,
            snapshot,
            entries,
        } = state;
        for (i, e) in entries.iter().enumerate() {
            if e.index != snapshot.index + 1 + i as u64 {
                return Err(Error::InvalidConfig(format!(
                    "stored log is not contiguous at entry {i} (index {})",
                    e.index
                )));
            }
        }
        let log = RaftLog::new(snapshot, entries, hard_state.commit);
        // Mix the id in so that nodes given the same seed still draw different timeouts
        // (identical timeouts would split every vote).
        let mut rng = Rng(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ cfg.id);
        let randomized_timeout = cfg.election_tick + (rng.next() % cfg.election_tick as u64) as u32;
        let prev_hs = HardState {
            commit: log.commit,
            ..hard_state
        };
        Ok(RawNode {
            term: hard_state.term,
            vote: hard_state.vote,
            cfg,
            peers,
            log,
            role: RoleState::Follower(Follower {
                leader: None,
                incoming: None,
            }),
            election_elapsed: 0,
            randomized_timeout,
            rng,
            msgs: Vec::new(),
            read_states: Vec::new(),
            prev_hs,
            bcast_pending: false,
            stats: Stats::default(),
        })
    }

    // ---------------------------------------------------------------- inspection

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.cfg.id
    }

    /// Current term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Current state for monitoring.
    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            term: self.term,
            role: match self.role {
                RoleState::Follower(_) => Role::Follower,
                RoleState::Candidate(_) => Role::Candidate,
                RoleState::Leader(_) => Role::Leader,
            },
            leader: self.leader(),
            commit: self.log.commit,
            applied: self.log.applied,
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            snapshot_index: self.log.snap.index,
            log_entries: self.log.entries.len() as u64,
            log_bytes: self
                .log
                .entries
                .iter()
                .map(|e| e.data.len() as u64 + 16)
                .sum(),
        }
    }

    /// What was dropped and why.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// True while this node leads.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, RoleState::Leader(_))
    }

    /// The leader known in the current term.
    pub fn leader(&self) -> Option<u64> {
        match &self.role {
            RoleState::Follower(f) => f.leader,
            RoleState::Candidate(_) => None,
            RoleState::Leader(_) => Some(self.cfg.id),
        }
    }

    /// The term of the log entry at `index`, if the log still holds it (or the snapshot
    /// ends there).
    pub fn log_term(&self, index: u64) -> Option<u64> {
        self.log.term(index)
    }

    /// The log entry at `index`, if the log still holds it.
    pub fn log_entry(&self, index: u64) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// The latest snapshot's data (empty if none).
    pub fn snapshot_data(&self) -> &Bytes {
        &self.log.snap.data
    }

    // ---------------------------------------------------------------- inputs

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        match self.role {
            RoleState::Follower(_) | RoleState::Candidate(_) => {
                self.election_elapsed += 1;
                if self.election_elapsed >= self.randomized_timeout {
                    self.campaign();
                }
            }
            RoleState::Leader(_) => self.tick_leader(),
        }
    }

    /// Appends a command to the leader's log; the next [`RawNode::ready`] sends it to the
    /// followers, together with every other command proposed since the last one (one
    /// AppendEntries per follower for the whole batch, as far as `max_msg_bytes` allows).
    /// Returns its (index, term); on a non-leader, `Error::NotLeader` with a hint.
    pub fn propose(&mut self, data: Bytes) -> Result<(u64, u64)> {
        if !self.is_leader() {
            return Err(Error::NotLeader {
                leader_hint: self.leader(),
            });
        }
        let index = self.log.append_new(self.term, EntryType::EntryNormal, data);
        // Replicated by the next `ready` (or `take_early_messages`): every proposal made
        // before it goes to each follower in one AppendEntries, not one message each.
        self.bcast_pending = true;
        Ok((index, self.term))
    }

    /// The service has applied through `index` and serialized its state as `data`: keep
    /// that as the snapshot and drop the log through `index`. Ignored if `index` is not
    /// past the current snapshot; an error if `index` has not been handed out to apply.
    pub fn snapshot(&mut self, index: u64, data: Bytes) -> Result<()> {
        if index <= self.log.snap.index {
            return Ok(());
        }
        if index > self.log.applied {
            return Err(Error::SnapshotNotApplied {
                index,
                applied: self.log.applied,
            });
        }
        let term = self.log.term(index).ok_or(Error::SnapshotNotApplied {
            index,
            applied: self.log.applied,
        })?;
        self.log.compact(Snapshot { index, term, data });
        Ok(())
    }

    /// Asks for a linearizable read point. On a leader, a [`ReadState`] with `ctx` comes
    /// out in a later Ready once a majority has confirmed the leadership; the read must
    /// wait until the state machine has applied through its index.
    pub fn read_index(&mut self, ctx: u64) -> Result<()> {
        let committed_in_term = self.log.term(self.log.commit) == Some(self.term);
        let RoleState::Leader(l) = &mut self.role else {
            return Err(Error::NotLeader {
                leader_hint: self.leader(),
            });
        };
        if committed_in_term {
            self.issue_read(ctx);
        } else {
            l.reads_waiting.push(ctx);
        }
        Ok(())
    }

    /// Handles one message from a peer. Bad input is dropped and counted, never a panic.
    pub fn step(&mut self, m: RaftMessage) {
        if m.cluster_id != self.cfg.cluster_id {
            self.stats.dropped_foreign_cluster += 1;
            return;
        }
        if m.to != self.cfg.id {
            self.stats.dropped_misaddressed += 1;
            return;
        }
        let from = m.from;
        if self.peers.binary_search(&from).is_err() {
            self.stats.dropped_unknown_peer += 1;
            return;
        }
        let Some(body) = m.body else {
            self.stats.dropped_malformed += 1;
            return;
        };
        let term = body_term(&body);
        if term > self.term.saturating_add(MAX_TERM_JUMP) {
            // No honest peer gets this far ahead; accepting it could exhaust the term space.
            self.stats.dropped_malformed += 1;
            return;
        }

        // The term rules shared by every role (§5.1), with PreVote and the leader lease.
        if term > self.term {
            match &body {
                Body::RequestVote(r) => {
                    if self.in_lease() {
                        // A live leader exists: a node that cannot hear it must not
                        // disrupt the cluster (CheckQuorum lease, thesis §4.2.3).
                        return;
                    }
                    if !r.pre_vote {
                        self.become_follower(term, None);
                    }
                }
                Body::RequestVoteReply(r) if r.pre_vote && r.vote_granted => {
                    // A granted PreVote carries the term we would campaign in.
                }
                Body::AppendEntries(_) | Body::InstallSnapshot(_) => {
                    self.become_follower(term, Some(from))
                }
                _ => self.become_follower(term, None),
            }
        } else if term < self.term {
            self.stats.stale_term += 1;
            match &body {
                // Tell a stale leader or candidate about the newer term.
                Body::AppendEntries(_) => self.send(
                    from,
                    Body::AppendEntriesReply(AppendEntriesReply {
                        term: self.term,
                        success: false,
                        ..Default::default()
                    }),
                    true,
                ),
                Body::InstallSnapshot(_) => self.send(
                    from,
                    Body::InstallSnapshotReply(InstallSnapshotReply {
                        term: self.term,
                        ..Default::default()
                    }),
                    true,
                ),
                Body::RequestVote(r) => self.send(
                    from,
                    Body::RequestVoteReply(RequestVoteReply {
                        term: self.term,
                        vote_granted: false,
                        pre_vote: r.pre_vote,
                    }),
                    true,
                ),
                _ => {}
            }
            return;
        }

        if let Body::RequestVote(r) = body {
            self.handle_vote_request(from, r);
            return;
        }
        match self.role {
            RoleState::Follower(_) => self.step_follower(from, body),
            RoleState::Candidate(_) => self.step_candidate(from, body),
            RoleState::Leader(_) => self.step_leader(from, body),
        }
    }

    // ---------------------------------------------------------------- outputs

    /// True if [`RawNode::ready`] has anything to do.
    pub fn has_ready(&self) -> bool {
        self.bcast_pending
            || self.hard_state() != self.prev_hs
            || self.log.unstable_from <= self.log.last_index()
            || self.log.pending_snapshot.is_some()
            || self.log.pending_apply_snapshot.is_some()
            || !self.msgs.is_empty()
            || self.log.commit > self.log.applied
            || !self.read_states.is_empty()
    }

    /// Takes everything to persist, send and apply. Handle it in the order of the crate
    /// docs, then call [`RawNode::advance`] before the next `ready`.
    pub fn ready(&mut self) -> Ready {
        self.flush_proposals();
        let hs = self.hard_state();
        let hard_state = (hs != self.prev_hs).then_some(hs);
        self.prev_hs = hs;
        let snapshot = self.log.pending_snapshot.take();
        let entries = if self.log.unstable_from <= self.log.last_index() {
            self.log
                .slice(self.log.unstable_from, self.log.last_index(), usize::MAX)
        } else {
            Vec::new()
        };
        self.log.unstable_from = self.log.last_index() + 1;
        let apply_snapshot = self.log.pending_apply_snapshot.take();
        let committed_entries = if self.log.commit > self.log.applied {
            self.log
                .slice(self.log.applied + 1, self.log.commit, usize::MAX)
        } else {
            Vec::new()
        };
        self.log.applied = self.log.applied.max(self.log.commit);
        let mut messages = Vec::new();
        let mut persisted_messages = Vec::new();
        for (m, after_persist) in self.msgs.drain(..) {
            if after_persist {
                persisted_messages.push(m);
            } else {
                messages.push(m);
            }
        }
        Ready {
            hard_state,
            snapshot,
            entries,
            messages,
            persisted_messages,
            apply_snapshot,
            committed_entries,
            read_states: std::mem::take(&mut self.read_states),
        }
    }

    /// While a [`Ready`] is being persisted (between [`RawNode::ready`] and
    /// [`RawNode::advance`]), takes the messages produced since that may go out at once:
    /// a leader's AppendEntries (new proposals included), heartbeats (ReadIndex rounds
    /// included) and snapshot chunks, the ones a `Ready` puts in `messages` (step 1).
    /// Messages that promise durability (votes, replies) stay for the next `Ready`.
    ///
    /// This is what lets a driver persist on another thread and keep replicating: the
    /// leader sends new entries to its followers while its own disk write of earlier ones
    /// is in flight, and its own copy counts towards a commit only once a later `advance`
    /// says it is persisted (thesis §10.2.1: the leader writes its log in parallel with
    /// replication). The new entries themselves are handed out for persisting by the next
    /// `ready`.
    pub fn take_early_messages(&mut self) -> Vec<RaftMessage> {
        self.flush_proposals();
        if self.msgs.iter().all(|(_, after_persist)| *after_persist) {
            return Vec::new();
        }
        let (late, early): (Vec<_>, Vec<_>) = std::mem::take(&mut self.msgs)
            .into_iter()
            .partition(|(_, after_persist)| *after_persist);
        self.msgs = late;
        early.into_iter().map(|(m, _)| m).collect()
    }

    /// Step 5: the driver has persisted `rd` (step 2), sent it (steps 1 and 3) and applied
    /// it (step 4). The leader may now count its own copy of the new entries towards a
    /// commit.
    pub fn advance(&mut self, rd: &Ready) {
        if let Some(s) = &rd.snapshot {
            self.log.stable = self.log.stable.max(s.index.min(self.log.last_index()));
        }
        if let Some(last) = rd.entries.last()
            && self.log.term(last.index) == Some(last.term)
        {
            self.log.stable = self.log.stable.max(last.index);
        }
        if self.is_leader() {
            self.maybe_commit();
        }
    }

    // ---------------------------------------------------------------- internals

    /// Sends the proposals appended since the last broadcast, one AppendEntries per
    /// follower (in replicate mode; a probing follower gets them once it matches).
    fn flush_proposals(&mut self) {
        if std::mem::take(&mut self.bcast_pending) {
            self.bcast_append();
        }
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit,
        }
    }

    fn quorum(&self) -> usize {
        let voters = self.peers.len() + 1;
        voters / 2 + 1
    }

    fn in_lease(&self) -> bool {
        if !self.cfg.check_quorum {
            return false;
        }
        match &self.role {
            RoleState::Follower(f) => {
                f.leader.is_some() && self.election_elapsed < self.cfg.election_tick
            }
            RoleState::Candidate(_) => false,
            RoleState::Leader(_) => true,
        }
    }

    fn send(&mut self, to: u64, body: Body, after_persist: bool) {
        self.msgs.push((
            RaftMessage {
                cluster_id: self.cfg.cluster_id,
                from: self.cfg.id,
                to,
                body: Some(body),
            },
            after_persist,
        ));
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.randomized_timeout =
            self.cfg.election_tick + (self.rng.next() % self.cfg.election_tick as u64) as u32;
    }

    fn become_follower(&mut self, term: u64, leader: Option<u64>) {
        if term > self.term {
            self.term = term;
            self.vote = 0;
        }
        self.role = RoleState::Follower(Follower {
            leader,
            incoming: None,
        });
        self.reset_election_timer();
    }

    fn campaign(&mut self) {
        if self.cfg.pre_vote {
            self.become_candidate(true);
        } else {
            self.become_candidate(false);
        }
    }

    /// Starts a PreVote round (`pre_vote`) or a real election in the next term.
    fn become_candidate(&mut self, pre_vote: bool) {
        if !pre_vote {
            self.term = self.term.saturating_add(1);
            self.vote = self.cfg.id;
            self.stats.elections += 1;
        }
        let mut votes = BTreeMap::new();
        votes.insert(self.cfg.id, true);
        self.role = RoleState::Candidate(Candidate { pre_vote, votes });
        self.reset_election_timer();
        if self.quorum() == 1 {
            if pre_vote {
                self.become_candidate(false);
            } else {
                self.become_leader();
            }
            return;
        }
        let req = RequestVoteRequest {
            term: if pre_vote {
                self.term.saturating_add(1)
            } else {
                self.term
            },
            candidate_id: self.cfg.id,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            pre_vote,
        };
        for p in self.peers.clone() {
            self.send(p, Body::RequestVote(req), true);
        }
    }

    fn become_leader(&mut self) {
        let next = self.log.last_index() + 1;
        let progress = self
            .peers
            .iter()
            .map(|&p| {
                (
                    p,
                    Progress {
                        matched: 0,
                        next,
                        state: ProgressState::Probe { paused: false },
                        active: true,
                        stall: 0,
                        commit_sent: 0,
                        sent_to: 0,
                        regress_rejections: 0,
                    },
                )
            })
            .collect();
        self.role = RoleState::Leader(Leader {
            progress,
            heartbeat_elapsed: 0,
            quorum_elapsed: 0,
            reads: VecDeque::new(),
            reads_waiting: Vec::new(),
            read_seq: 0,
        });
        // The no-op entry of this term: commits everything before it (§5.4.2, §8).
        self.log
            .append_new(self.term, EntryType::EntryNoop, Bytes::new());
        self.bcast_append();
    }

    fn handle_vote_request(&mut self, from: u64, r: RequestVoteRequest) {
        let leader = self.leader();
        let can_vote = self.vote == from
            || (self.vote == 0 && leader.is_none())
            || (r.pre_vote && r.term > self.term);
        let granted = can_vote && self.log.is_up_to_date(r.last_log_index, r.last_log_term);
        if granted && !r.pre_vote {
            self.vote = from;
            self.reset_election_timer();
        }
        let term = if granted && r.pre_vote {
            r.term
        } else {
            self.term
        };
        self.send(
            from,
            Body::RequestVoteReply(RequestVoteReply {
                term,
                vote_granted: granted,
                pre_vote: r.pre_vote,
            }),
            true,
        );
    }

    fn step_follower(&mut self, from: u64, body: Body) {
        match body {
            Body::AppendEntries(a) => {
                self.note_leader(from);
                self.handle_append(from, a);
            }
            Body::InstallSnapshot(s) => {
                self.note_leader(from);
                self.handle_snapshot(from, s);
            }
            // Replies meant for an earlier role of ours.
            _ => {}
        }
    }

    fn note_leader(&mut self, from: u64) {
        self.election_elapsed = 0;
        if let RoleState::Follower(f) = &mut self.role {
            f.leader = Some(from);
        }
    }

    fn step_candidate(&mut self, from: u64, body: Body) {
        match body {
            Body::AppendEntries(_) | Body::InstallSnapshot(_) => {
                // A leader won this term.
                self.become_follower(self.term, Some(from));
                self.step_follower(from, body);
            }
            Body::RequestVoteReply(r) => {
                let quorum = self.quorum();
                let RoleState::Candidate(c) = &mut self.role else {
                    return;
                };
                if r.pre_vote != c.pre_vote {
                    return;
                }
                let expected_term = if c.pre_vote {
                    self.term.saturating_add(1)
                } else {
                    self.term
                };
                if r.vote_granted && r.term != expected_term {
                    return;
                }
                c.votes.insert(from, r.vote_granted);
                let yes = c.votes.values().filter(|&&v| v).count();
                let no = c.votes.len() - yes;
                let pre = c.pre_vote;
                if yes >= quorum {
                    if pre {
                        self.become_candidate(false);
                    } else {
                        self.become_leader();
                    }
                } else if no >= quorum {
                    self.become_follower(self.term, None);
                }
            }
            _ => {}
        }
    }

    fn handle_append(&mut self, from: u64, a: AppendEntriesRequest) {
        let reply = |s: &Self| AppendEntriesReply {
            term: s.term,
            last_log_index: s.log.last_index(),
            read_ctx: a.read_ctx,
            heartbeat: a.heartbeat,
            ..Default::default()
        };
        if a.heartbeat {
            self.log.commit_to(a.leader_commit);
            let r = AppendEntriesReply {
                success: true,
                ..reply(self)
            };
            self.send(from, Body::AppendEntriesReply(r), true);
            return;
        }
        // Peer input: the entries must continue prev_log_index with sane terms.
        let mut prev_t = a.prev_log_term;
        for (i, e) in a.entries.iter().enumerate() {
            if e.index != a.prev_log_index.wrapping_add(1 + i as u64)
                || e.term < prev_t
                || e.term > a.term
            {
                self.stats.dropped_malformed += 1;
                return;
            }
            prev_t = e.term;
        }
        let mut prev = a.prev_log_index;
        let mut prev_term = a.prev_log_term;
        let mut entries = &a.entries[..];
        let commit = self.log.commit;
        if prev < commit {
            // Our log through `commit` is committed, so it matches any leader's log.
            let skip = ((commit - prev) as usize).min(entries.len());
            entries = &entries[skip..];
            if entries.is_empty() {
                let r = AppendEntriesReply {
                    success: true,
                    match_index: commit,
                    ..reply(self)
                };
                self.send(from, Body::AppendEntriesReply(r), true);
                return;
            }
            prev = commit;
            prev_term = self.log.term(commit).unwrap_or(0);
        }
        match self.log.term(prev) {
            Some(t) if t == prev_term => {}
            found => {
                let (conflict_term, conflict_index) = match found {
                    None => (0, self.log.last_index() + 1),
                    Some(t) => (t, self.log.first_index_of_term_at(prev).max(commit + 1)),
                };
                let r = AppendEntriesReply {
                    success: false,
                    conflict_term,
                    conflict_index,
                    reject_index: a.prev_log_index,
                    ..reply(self)
                };
                self.send(from, Body::AppendEntriesReply(r), true);
                return;
            }
        }
        for e in entries {
            match self.log.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    // A conflict: drop it and everything after it (§5.3).
                    self.log.truncate_from(e.index);
                }
                None => {}
            }
            debug_assert_eq!(e.index, self.log.last_index() + 1);
            self.log.entries.push(e.clone());
            self.log.unstable_from = self.log.unstable_from.min(e.index);
        }
        let last_new = prev + entries.len() as u64;
        self.log.commit_to(a.leader_commit.min(last_new));
        let r = AppendEntriesReply {
            success: true,
            match_index: last_new,
            ..reply(self)
        };
        self.send(from, Body::AppendEntriesReply(r), true);
    }

    fn handle_snapshot(&mut self, from: u64, s: InstallSnapshotRequest) {
        let (index, term) = (s.last_included_index, s.last_included_term);
        let done_reply = |t| InstallSnapshotReply {
            term: t,
            last_included_index: index,
            next_offset: 0,
            done: true,
        };
        if index > MAX_INDEX {
            self.stats.dropped_malformed += 1;
            return;
        }
        if index <= self.log.commit {
            // Stale or duplicate: we already have all of it.
            self.send(
                from,
                Body::InstallSnapshotReply(done_reply(self.term)),
                true,
            );
            return;
        }
        if self.log.term(index) == Some(term) {
            // Our log already has the snapshot's last entry: it is committed.
            self.log.commit_to(index);
            self.send(
                from,
                Body::InstallSnapshotReply(done_reply(self.term)),
                true,
            );
            return;
        }
        let RoleState::Follower(f) = &mut self.role else {
            return;
        };
        // Only a chunk that continues exactly where the received bytes end is taken.
        let (have, took) = match &mut f.incoming {
            Some((i, t, buf)) if *i == index && *t == term => {
                let took = s.offset == buf.len() as u64;
                if took {
                    buf.extend_from_slice(&s.data);
                }
                (buf.len() as u64, took)
            }
            _ if s.offset == 0 => {
                f.incoming = Some((index, term, s.data.to_vec()));
                (s.data.len() as u64, true)
            }
            _ => (0, false),
        };
        let complete = s.done && took;
        if complete {
            let (_, _, buf) = f.incoming.take().unwrap_or_default();
            self.log.restore(Snapshot {
                index,
                term,
                data: Bytes::from(buf),
            });
            self.send(
                from,
                Body::InstallSnapshotReply(done_reply(self.term)),
                true,
            );
        } else {
            let r = InstallSnapshotReply {
                term: self.term,
                last_included_index: index,
                next_offset: have,
                done: false,
            };
            self.send(from, Body::InstallSnapshotReply(r), true);
        }
    }

    fn step_leader(&mut self, from: u64, body: Body) {
        match body {
            Body::AppendEntriesReply(r) => self.handle_append_reply(from, r),
            Body::InstallSnapshotReply(r) => self.handle_snapshot_reply(from, r),
            // Another leader in our term is impossible; our own stale vote replies are not.
            _ => {}
        }
    }

    fn handle_append_reply(&mut self, from: u64, r: AppendEntriesReply) {
        let last = self.log.last_index();
        let quorum = self.quorum();
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(pr) = l.progress.get_mut(&from) else {
            return;
        };
        pr.active = true;
        if r.heartbeat {
            if r.read_ctx > 0 {
                for rd in l.reads.iter_mut() {
                    if rd.seq <= r.read_ctx {
                        rd.acks.insert(from);
                    }
                }
                while let Some(rd) = l.reads.pop_front() {
                    if rd.acks.len() + 1 < quorum {
                        l.reads.push_front(rd);
                        break;
                    }
                    self.read_states.push(ReadState {
                        ctx: rd.ctx,
                        index: rd.index,
                    });
                }
            }
            return;
        }
        if r.success {
            if r.match_index > last {
                self.stats.dropped_malformed += 1;
                return;
            }
            pr.stall = 0;
            pr.regress_rejections = 0;
            let updated = r.match_index > pr.matched;
            if updated {
                pr.matched = r.match_index;
            }
            let caught_up_probe = r.match_index + 1 >= pr.next;
            if pr.next <= pr.matched {
                pr.next = pr.matched + 1;
            }
            match &mut pr.state {
                ProgressState::Probe { .. } => {
                    if caught_up_probe || updated {
                        pr.next = pr.matched + 1;
                        pr.state = ProgressState::Replicate {
                            inflight: VecDeque::new(),
                        };
                    }
                }
                ProgressState::Replicate { inflight } => {
                    while inflight.front().is_some_and(|&i| i <= pr.matched) {
                        inflight.pop_front();
                    }
                }
                ProgressState::Snapshot { index, .. } => {
                    if pr.matched >= *index {
                        pr.next = pr.matched + 1;
                        pr.state = ProgressState::Probe { paused: false };
                    }
                }
            }
            if updated {
                self.maybe_commit();
            }
            self.send_append(from);
        } else {
            let hint = if r.conflict_term > 0 {
                self.log
                    .last_index_of_term(r.conflict_term, r.reject_index)
                    .map_or(r.conflict_index, |i| i + 1)
            } else {
                r.conflict_index
            };
            let RoleState::Leader(l) = &mut self.role else {
                return;
            };
            let Some(pr) = l.progress.get_mut(&from) else {
                return;
            };
            let (current, probing) = match &pr.state {
                ProgressState::Replicate { .. } => (r.reject_index > pr.matched, false),
                ProgressState::Probe { .. } => (r.reject_index == pr.next - 1, true),
                ProgressState::Snapshot { .. } => (false, false),
            };
            if !current {
                return;
            }
            pr.stall = 0;
            let mut next = hint.min(r.reject_index).max(pr.matched + 1);
            if probing && next == pr.next {
                // The follower rejects the probe at `matched`: it lacks an entry it
                // acknowledged in this term. A correct follower never drops an entry that
                // matches the leader's, so either this is a stale duplicate of an old
                // rejection, or the follower's log went backwards (its disk was replaced or
                // lost, or a bug). Resending the same probe at once would ping-pong with the
                // follower as fast as the network allows, so wait for the resend timer. If
                // the answer to that resent probe is the same rejection, the follower
                // really lost its log: forget the recorded match and probe from what it
                // says it has (or send the snapshot if that is compacted away).
                pr.regress_rejections += 1;
                if pr.regress_rejections < 2 {
                    pr.state = ProgressState::Probe { paused: true };
                    return;
                }
                ::log::warn!(
                    "raft: n{from} rejected the append at its match index {} twice, with its \
                     last index at {}: its log went backwards (replaced disk?); probing again \
                     from what it has",
                    pr.matched,
                    r.last_log_index
                );
                self.stats.follower_log_regressions += 1;
                pr.regress_rejections = 0;
                pr.matched = 0;
                pr.sent_to = 0;
                next = hint.min(r.reject_index).max(1);
                if next == pr.next {
                    // Nothing lower to try (a rejection of `prev = 0`: malformed).
                    pr.state = ProgressState::Probe { paused: true };
                    return;
                }
            }
            pr.next = next;
            pr.state = ProgressState::Probe { paused: false };
            self.send_append(from);
        }
    }

    fn handle_snapshot_reply(&mut self, from: u64, r: InstallSnapshotReply) {
        let snap_len = self.log.snap.data.len() as u64;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(pr) = l.progress.get_mut(&from) else {
            return;
        };
        pr.active = true;
        match &mut pr.state {
            ProgressState::Snapshot { index, offset } if *index == r.last_included_index => {
                pr.stall = 0;
                if r.done {
                    pr.matched = pr.matched.max(*index);
                    pr.next = pr.matched + 1;
                    pr.state = ProgressState::Probe { paused: false };
                    self.maybe_commit();
                    self.send_append(from);
                } else {
                    *offset = r.next_offset.min(snap_len);
                    self.send_snapshot_chunk(from);
                }
            }
            _ => {}
        }
    }

    /// Sends what `to` needs next, as allowed by its progress state.
    fn send_append(&mut self, to: u64) {
        loop {
            let RoleState::Leader(l) = &mut self.role else {
                return;
            };
            let Some(pr) = l.progress.get_mut(&to) else {
                return;
            };
            match &pr.state {
                ProgressState::Snapshot { .. } | ProgressState::Probe { paused: true } => return,
                ProgressState::Replicate { inflight } => {
                    if inflight.len() >= self.cfg.max_inflight || pr.next > self.log.last_index() {
                        return;
                    }
                }
                ProgressState::Probe { paused: false } => {}
            }
            let prev = pr.next - 1;
            let Some(prev_term) = self.log.term(prev) else {
                if prev < self.log.snap.index && pr.sent_to >= self.log.snap.index {
                    // A stale acknowledgement moved `next` back below the snapshot, but
                    // entries past it are already on their way: wait for their answer
                    // (if they were lost, the resend timer clears `sent_to`).
                    pr.state = ProgressState::Probe { paused: true };
                    return;
                }
                // The entries it needs are compacted away: send the snapshot.
                pr.state = ProgressState::Snapshot {
                    index: self.log.snap.index,
                    offset: 0,
                };
                pr.stall = 0;
                self.send_snapshot_chunk(to);
                return;
            };
            let entries = self
                .log
                .slice(pr.next, self.log.last_index(), self.cfg.max_msg_bytes);
            let n = entries.len() as u64;
            let commit = self.log.commit.min(prev + n);
            pr.commit_sent = pr.commit_sent.max(commit);
            pr.sent_to = pr.sent_to.max(prev + n);
            let probe = match &mut pr.state {
                ProgressState::Probe { paused } => {
                    *paused = true;
                    true
                }
                ProgressState::Replicate { inflight } => {
                    pr.next = prev + n + 1;
                    inflight.push_back(prev + n);
                    false
                }
                ProgressState::Snapshot { .. } => true,
            };
            let req = AppendEntriesRequest {
                term: self.term,
                leader_id: self.cfg.id,
                prev_log_index: prev,
                prev_log_term: prev_term,
                entries,
                leader_commit: commit,
                read_ctx: 0,
                heartbeat: false,
            };
            self.send(to, Body::AppendEntries(req), false);
            if probe {
                return;
            }
        }
    }

    fn send_snapshot_chunk(&mut self, to: u64) {
        let snap = &self.log.snap;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(pr) = l.progress.get_mut(&to) else {
            return;
        };
        let ProgressState::Snapshot { index, offset } = &mut pr.state else {
            return;
        };
        if *index != snap.index {
            // The leader compacted again since: send the newer snapshot from the start.
            *index = snap.index;
            *offset = 0;
        }
        let len = snap.data.len() as u64;
        let start = (*offset).min(len) as usize;
        let end = (start + self.cfg.snapshot_chunk_bytes).min(len as usize);
        let req = InstallSnapshotRequest {
            term: self.term,
            leader_id: self.cfg.id,
            last_included_index: snap.index,
            last_included_term: snap.term,
            offset: start as u64,
            data: snap.data.slice(start..end),
            done: end as u64 == len,
        };
        self.send(to, Body::InstallSnapshot(req), false);
    }

    fn bcast_append(&mut self) {
        for p in self.peers.clone() {
            self.send_append(p);
        }
    }

    fn send_heartbeat(&mut self, to: u64, read_ctx: u64) {
        let commit = self.log.commit;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(pr) = l.progress.get_mut(&to) else {
            return;
        };
        let commit = commit.min(pr.matched);
        pr.commit_sent = pr.commit_sent.max(commit);
        let req = AppendEntriesRequest {
            term: self.term,
            leader_id: self.cfg.id,
            leader_commit: commit,
            read_ctx,
            heartbeat: true,
            ..Default::default()
        };
        self.send(to, Body::AppendEntries(req), false);
    }

    fn bcast_heartbeat(&mut self, read_ctx: u64) {
        for p in self.peers.clone() {
            self.send_heartbeat(p, read_ctx);
        }
    }

    fn tick_leader(&mut self) {
        let quorum = self.quorum();
        let commit = self.log.commit;
        let resend_ticks = self.cfg.heartbeat_tick * 2;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        l.heartbeat_elapsed += 1;
        l.quorum_elapsed += 1;
        if self.cfg.check_quorum && l.quorum_elapsed >= self.cfg.election_tick {
            l.quorum_elapsed = 0;
            let active = 1 + l.progress.values().filter(|p| p.active).count();
            for p in l.progress.values_mut() {
                p.active = false;
            }
            if active < quorum {
                // Cut off from the majority: stop acting as leader (thesis §6.2).
                self.become_follower(self.term, None);
                return;
            }
        }
        let heartbeat_due = l.heartbeat_elapsed >= self.cfg.heartbeat_tick;
        if heartbeat_due {
            l.heartbeat_elapsed = 0;
        }
        let read_ctx = if l.reads.is_empty() { 0 } else { l.read_seq };
        let mut resend = Vec::new();
        let mut commit_update = Vec::new();
        for (&id, pr) in l.progress.iter_mut() {
            let outstanding = match &pr.state {
                ProgressState::Probe { paused } => *paused,
                ProgressState::Replicate { inflight } => !inflight.is_empty(),
                ProgressState::Snapshot { .. } => true,
            };
            if outstanding {
                pr.stall += 1;
                if pr.stall >= resend_ticks {
                    pr.stall = 0;
                    resend.push(id);
                }
            } else {
                pr.stall = 0;
            }
            if !heartbeat_due && commit.min(pr.matched) > pr.commit_sent {
                commit_update.push(id);
            }
        }
        for id in resend {
            self.resend(id);
        }
        if heartbeat_due {
            self.bcast_heartbeat(read_ctx);
        } else {
            for id in commit_update {
                self.send_heartbeat(id, read_ctx);
            }
        }
    }

    /// Nothing came back for a while: assume loss and send again.
    fn resend(&mut self, to: u64) {
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(pr) = l.progress.get_mut(&to) else {
            return;
        };
        pr.sent_to = 0;
        match &mut pr.state {
            ProgressState::Snapshot { .. } => self.send_snapshot_chunk(to),
            // The probe (or its answer) was lost: send the same probe again. Going back
            // to `matched + 1` would resend a whole log to a follower the leader has not
            // heard from yet in its term (its `matched` is still 0).
            ProgressState::Probe { paused } => {
                *paused = false;
                self.send_append(to);
            }
            // The pipeline stalled: restart from what is known to match.
            ProgressState::Replicate { .. } => {
                pr.next = pr.matched + 1;
                pr.state = ProgressState::Probe { paused: false };
                self.send_append(to);
            }
        }
    }

    /// Commits the highest index a majority holds, if it is of the current term (§5.4.2).
    fn maybe_commit(&mut self) {
        let RoleState::Leader(l) = &self.role else {
            return;
        };
        let mut matched: Vec<u64> = l.progress.values().map(|p| p.matched).collect();
        matched.push(self.log.stable.min(self.log.last_index()));
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let n = matched[self.quorum() - 1];
        if n > self.log.commit && self.log.term(n) == Some(self.term) {
            self.log.commit = n;
            self.on_commit_advanced();
        }
    }

    fn on_commit_advanced(&mut self) {
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        if l.reads_waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut l.reads_waiting);
        for ctx in waiting {
            self.issue_read(ctx);
        }
    }

    fn issue_read(&mut self, ctx: u64) {
        let index = self.log.commit;
        if self.peers.is_empty() {
            self.read_states.push(ReadState { ctx, index });
            return;
        }
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        l.read_seq += 1;
        let seq = l.read_seq;
        l.reads.push_back(PendingRead {
            ctx,
            index,
            seq,
            acks: BTreeSet::new(),
        });
        self.bcast_heartbeat(seq);
    }
}
