//! The deterministic Raft core: [`RawNode`]. No threads, clock, sockets or files.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use proto::Message;
use proto::raft::raft_message::Body;
use proto::raft::{
    AppendEntriesReply, AppendEntriesRequest, ConfChange, ConfChangeType, Entry, EntryType,
    HardState, InstallSnapshotReply, InstallSnapshotRequest, RaftMessage, RequestVoteReply,
    RequestVoteRequest, TimeoutNow,
};

use crate::log::RaftLog;
use crate::storage::{ConfState, InitialState, Snapshot};
use crate::{Error, MembershipError, Result};

/// Static configuration of one node. Times are in ticks; see the crate docs for the
/// real-time value of a tick.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: u64,
    /// The voters the cluster was bootstrapped with. Membership changes in the log and the
    /// configuration in a snapshot override it. A node not among them starts as a
    /// non-member: it never campaigns, and it learns the configuration from the leader once
    /// it is added (as a learner) — give it the same bootstrap list so that replaying the
    /// log from index 1 yields the cluster's configuration.
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
    /// The leader refuses to promote a learner whose log lags its own by more than this
    /// many entries (default 1000): a voter that must first catch up can stall commits.
    pub max_learner_lag: u64,
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
            max_learner_lag: 1000,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |s: &str| Err(Error::InvalidConfig(s.to_string()));
        if self.id == 0 {
            return bad("id 0 is reserved for 'none'");
        }
        if self.peers.is_empty() {
            return bad("peers must list the cluster's bootstrap voters");
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
    /// The voters of the configuration in effect (sorted).
    pub voters: Vec<u64>,
    /// The learners of the configuration in effect (sorted).
    pub learners: Vec<u64>,
}

/// Counters of what the core dropped or did; for monitoring and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages claiming to come from node id 0 or from ourselves. Other senders are
    /// heard whether or not this node's configuration lists them (thesis §4.1: a new
    /// leader may be a member this node has not yet learned of).
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
    /// Leadership transfers abandoned after an election timeout without a new leader.
    pub transfers_abandoned: u64,
    /// Membership-change entries in the current log that did not apply to the
    /// configuration in effect (undecodable, or adding a member, removing a non-member,
    /// ...): they change nothing, and a correct leader never appends one. Recounted each
    /// time the configuration is recomputed.
    pub conf_changes_skipped: u64,
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

impl Progress {
    /// A follower the leader has not heard from yet: probe from `next`.
    fn new(next: u64) -> Self {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe { paused: false },
            active: true,
            stall: 0,
            commit_sent: 0,
            sent_to: 0,
            regress_rejections: 0,
        }
    }
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
    /// A leadership transfer under way (thesis §3.10).
    transfer: Option<Transfer>,
}

#[derive(Debug)]
struct Transfer {
    target: u64,
    /// Ticks since it started; abandoned at `election_tick`.
    elapsed: u32,
    /// TimeoutNow already sent.
    sent: bool,
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
    /// The configuration in effect: the snapshot's, changed by every ConfChange entry in
    /// the log, applied as soon as it is appended (thesis §4.1).
    conf: ConfState,
    /// Index of the last ConfChange entry in the log (0: none after the snapshot). A
    /// leader starts no new change while it is above the commit index.
    pending_conf_index: u64,
    /// Every other member (voters and learners), sorted: who a leader replicates to.
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
        Body::TimeoutNow(m) => m.term,
    }
}

impl RawNode {
    /// A node restarting from `state` (use `InitialState::default()` for a new node).
    pub fn new(cfg: Config, state: InitialState) -> Result<Self> {
        cfg.validate()?;
        let InitialState {
            hard_state,
            mut snapshot,
            entries,
        } = state;
        if snapshot.conf.voters.is_empty() {
            snapshot.conf = ConfState::from_voters(&cfg.peers);
        }
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
            conf: ConfState::default(),
            pending_conf_index: 0,
            peers: Vec::new(),
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
        .map(|mut n| {
            n.refresh_conf();
            n
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
            voters: self.conf.voters.clone(),
            learners: self.conf.learners.clone(),
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

    /// The configuration in effect on this node: the latest one in its log, committed or
    /// not (single-server changes take effect when appended, thesis §4.1).
    pub fn conf_state(&self) -> &ConfState {
        &self.conf
    }

    /// The configuration the latest snapshot records (in effect at its index).
    pub fn snapshot_conf_state(&self) -> &ConfState {
        &self.log.snap.conf
    }

    /// Index of the last membership change in the log (0 if none since the snapshot);
    /// it is in progress while above the commit index.
    pub fn pending_conf_index(&self) -> u64 {
        self.pending_conf_index
    }

    /// The node a leadership transfer is under way to, on a leader.
    pub fn transfer_target(&self) -> Option<u64> {
        match &self.role {
            RoleState::Leader(l) => l.transfer.as_ref().map(|t| t.target),
            _ => None,
        }
    }

    // ---------------------------------------------------------------- inputs

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        match self.role {
            RoleState::Follower(_) | RoleState::Candidate(_) => {
                self.election_elapsed += 1;
                // Learners, removed nodes and nodes not yet added never campaign.
                if self.election_elapsed >= self.randomized_timeout && self.may_campaign() {
                    self.campaign();
                }
            }
            RoleState::Leader(_) => self.tick_leader(),
        }
    }

    /// Appends a command to the leader's log; the next [`RawNode::ready`] sends it to the
    /// followers, together with every other command proposed since the last one (one
    /// AppendEntries per follower for the whole batch, as far as `max_msg_bytes` allows).
    /// Returns its (index, term); on a non-leader, `Error::NotLeader` with a hint; during
    /// a leadership transfer, `Error::TransferInProgress`.
    pub fn propose(&mut self, data: Bytes) -> Result<(u64, u64)> {
        self.check_can_propose()?;
        let index = self.log.append_new(self.term, EntryType::EntryNormal, data);
        // Replicated by the next `ready` (or `take_early_messages`): every proposal made
        // before it goes to each follower in one AppendEntries, not one message each.
        self.bcast_pending = true;
        Ok((index, self.term))
    }

    fn check_can_propose(&self) -> Result<()> {
        let RoleState::Leader(l) = &self.role else {
            return Err(Error::NotLeader {
                leader_hint: self.leader(),
            });
        };
        if let Some(t) = &l.transfer {
            return Err(Error::TransferInProgress { target: t.target });
        }
        Ok(())
    }

    /// Appends a single-server membership change (thesis §4.1) to the leader's log; it
    /// takes effect on the leader at once and on each node as it appends the entry.
    /// Returns its (index, term); the change is done once that index commits.
    ///
    /// Refused (with [`Error::Membership`], nothing changed) while an earlier change is
    /// uncommitted, before this leader has committed an entry of its own term (Ongaro,
    /// raft-dev 2015: otherwise two leaders' changes can yield disjoint majorities), and
    /// when the change does not fit the configuration: adding a member, promoting a
    /// non-learner, a learner that has not acknowledged any entry yet, or one lagging by
    /// more than `Config::max_learner_lag` entries,
    /// removing a non-member or the last voter. Removing the leader itself is allowed: it
    /// leads (without counting itself) until the change commits, then steps down.
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<(u64, u64)> {
        self.check_can_propose()?;
        let refuse = |e| Err(Error::Membership(e));
        if self.log.term(self.log.commit) != Some(self.term) {
            return refuse(MembershipError::TermNotCommitted { term: self.term });
        }
        if self.pending_conf_index > self.log.commit {
            return refuse(MembershipError::ChangePending {
                index: self.pending_conf_index,
            });
        }
        let id = cc.node_id;
        if id == 0 {
            return refuse(MembershipError::ReservedId);
        }
        let c = &self.conf;
        match ConfChangeType::try_from(cc.change_type) {
            Ok(ConfChangeType::ConfChangeAddLearner) => {
                if c.contains(id) {
                    return refuse(MembershipError::AlreadyMember { id });
                }
            }
            Ok(ConfChangeType::ConfChangePromoteLearner) => {
                if c.is_voter(id) {
                    return refuse(MembershipError::NotLearner { id });
                }
                if !c.is_learner(id) {
                    return refuse(MembershipError::NotMember { id });
                }
                let matched = match &self.role {
                    RoleState::Leader(l) => l.progress.get(&id).map_or(0, |p| p.matched),
                    _ => 0,
                };
                let last_index = self.log.last_index();
                // A learner that never acknowledged an append may not even be running:
                // promoting it would add a voter that cannot vote.
                if matched == 0 || last_index - matched.min(last_index) > self.cfg.max_learner_lag {
                    return refuse(MembershipError::LearnerLagging {
                        id,
                        matched,
                        last_index,
                        max_lag: self.cfg.max_learner_lag,
                    });
                }
            }
            Ok(ConfChangeType::ConfChangeRemoveNode) => {
                if !c.contains(id) {
                    return refuse(MembershipError::NotMember { id });
                }
                if c.voters == [id] {
                    return refuse(MembershipError::LastVoter { id });
                }
            }
            Err(_) => {
                return Err(Error::InvalidConfig(format!(
                    "unknown membership change type {}",
                    cc.change_type
                )));
            }
        }
        let index = self.log.append_new(
            self.term,
            EntryType::EntryConfChange,
            cc.encode_to_vec().into(),
        );
        self.refresh_conf();
        self.bcast_append();
        self.maybe_commit();
        Ok((index, self.term))
    }

    /// Starts a leadership transfer to voter `target` (thesis §3.10): the leader stops
    /// taking proposals, brings `target`'s log up to date, then sends it TimeoutNow, upon
    /// which `target` starts an election at once (no PreVote, and voters ignore their
    /// leader lease for it). The transfer is abandoned after an election timeout
    /// (`Config::election_tick`) if this node still leads. A transfer to this node itself
    /// does nothing. Refused for a learner or a non-member ([`Error::Membership`]).
    pub fn transfer_leader(&mut self, target: u64) -> Result<()> {
        if !self.is_leader() {
            return Err(Error::NotLeader {
                leader_hint: self.leader(),
            });
        }
        if target == self.cfg.id {
            return Ok(());
        }
        if !self.conf.contains(target) {
            return Err(Error::Membership(MembershipError::NotMember { id: target }));
        }
        if !self.conf.is_voter(target) {
            return Err(Error::Membership(MembershipError::NotVoter { id: target }));
        }
        if let RoleState::Leader(l) = &mut self.role {
            l.transfer = Some(Transfer {
                target,
                elapsed: 0,
                sent: false,
            });
        }
        self.maybe_send_timeout_now(target);
        if self.transfer_target().is_some() && !self.transfer_sent() {
            self.send_append(target);
        }
        Ok(())
    }

    fn transfer_sent(&self) -> bool {
        matches!(&self.role, RoleState::Leader(Leader { transfer: Some(t), .. }) if t.sent)
    }

    /// Sends TimeoutNow to `from` if a transfer to it waits and its log is up to date.
    fn maybe_send_timeout_now(&mut self, from: u64) {
        let last = self.log.last_index();
        let term = self.term;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(t) = &mut l.transfer else {
            return;
        };
        if t.target != from || t.sent {
            return;
        }
        if l.progress.get(&from).is_some_and(|p| p.matched == last) {
            t.sent = true;
            self.send(from, Body::TimeoutNow(TimeoutNow { term }), false);
        }
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
        let conf = self.conf_at(index);
        self.log.compact(Snapshot {
            index,
            term,
            data,
            conf,
        });
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
        // Any other node of the cluster is heard, member or not (thesis §4.1): a leader
        // may have been added by entries this node has not received yet.
        if from == 0 || from == self.cfg.id {
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
                    if self.in_lease() && !r.leadership_transfer {
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
        if let Body::TimeoutNow(_) = body {
            // The leader of our term hands over (thesis §3.10): campaign at once, without
            // PreVote; voters skip their lease check for this election.
            if self.leader() == Some(from) && self.conf.is_voter(self.cfg.id) {
                self.become_candidate(false, true);
            }
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
        // Nothing goes out in a term before that term is durable: a leader elected by its
        // own vote alone (a single voter, with learners to send to) sends its first
        // appends only after the persist.
        let term_unpersisted = hs.term != self.prev_hs.term;
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
            if after_persist || term_unpersisted {
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

    /// True if this node may start an election: it is a voter of the configuration in
    /// effect, or of the one at its commit index. The second case is a node whose removal
    /// is appended but not known committed (say a leader that proposed its own removal
    /// and lost its leadership): the voters of the new configuration may need it to lead
    /// and commit that removal, since its log is ahead of theirs and they will not elect
    /// each other. It then counts votes of the new configuration only (not its own), and
    /// steps down once the removal commits. A node that knows its removal committed
    /// never campaigns.
    fn may_campaign(&mut self) -> bool {
        let me = self.cfg.id;
        self.conf.is_voter(me) || self.conf_at(self.log.commit).is_voter(me)
    }

    /// Votes or acknowledgements needed: a majority of the voters in effect.
    fn quorum(&self) -> usize {
        self.conf.quorum()
    }

    /// The configuration in effect at `index` (at most the last index): the snapshot's,
    /// changed by the ConfChange entries through `index`.
    fn conf_at(&mut self, index: u64) -> ConfState {
        let mut conf = self.log.snap.conf.clone();
        let mut skipped = 0;
        for e in &self.log.entries {
            if e.index > index {
                break;
            }
            if e.entry_type == EntryType::EntryConfChange as i32 {
                let applied = ConfChange::decode(e.data.clone())
                    .map(|cc| conf.apply_change(&cc))
                    .unwrap_or(false);
                if !applied {
                    skipped += 1;
                }
            }
        }
        if index == self.log.last_index() {
            self.stats.conf_changes_skipped = skipped;
        }
        conf
    }

    /// Recomputes the configuration after the log gained or lost ConfChange entries (an
    /// append, a truncation that rolls a change back, a snapshot), and on a leader the
    /// followers it tracks.
    fn refresh_conf(&mut self) {
        self.conf = self.conf_at(self.log.last_index());
        self.pending_conf_index = self
            .log
            .entries
            .iter()
            .rev()
            .find(|e| e.entry_type == EntryType::EntryConfChange as i32)
            .map_or(0, |e| e.index);
        let me = self.cfg.id;
        self.peers = (self.conf.voters.iter().chain(&self.conf.learners))
            .copied()
            .filter(|&p| p != me)
            .collect();
        self.peers.sort_unstable();
        let next = self.log.last_index() + 1;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        l.progress
            .retain(|p, _| self.peers.binary_search(p).is_ok());
        for &p in &self.peers {
            l.progress.entry(p).or_insert_with(|| Progress::new(next));
        }
        if let Some(t) = &l.transfer
            && !self.conf.is_voter(t.target)
        {
            l.transfer = None;
        }
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
            self.become_candidate(true, false);
        } else {
            self.become_candidate(false, false);
        }
    }

    /// Starts a PreVote round (`pre_vote`) or a real election in the next term;
    /// `transfer`: one a leader asked for with TimeoutNow (voters skip the lease check).
    fn become_candidate(&mut self, pre_vote: bool, transfer: bool) {
        if !pre_vote {
            self.term = self.term.saturating_add(1);
            self.vote = self.cfg.id;
            self.stats.elections += 1;
        }
        let mut votes = BTreeMap::new();
        // Our own vote counts only if we are a voter of the configuration in effect (see
        // `may_campaign` for when a node outside it campaigns).
        if self.conf.is_voter(self.cfg.id) {
            votes.insert(self.cfg.id, true);
        }
        self.role = RoleState::Candidate(Candidate { pre_vote, votes });
        self.reset_election_timer();
        if self.quorum() == 1 && self.conf.is_voter(self.cfg.id) {
            if pre_vote {
                self.become_candidate(false, false);
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
            leadership_transfer: transfer,
        };
        // Only voters are asked: learners' votes would not count.
        for p in self.conf.voters.clone() {
            if p != self.cfg.id {
                self.send(p, Body::RequestVote(req), true);
            }
        }
    }

    fn become_leader(&mut self) {
        let next = self.log.last_index() + 1;
        let progress = self
            .peers
            .iter()
            .map(|&p| (p, Progress::new(next)))
            .collect();
        self.role = RoleState::Leader(Leader {
            progress,
            heartbeat_elapsed: 0,
            quorum_elapsed: 0,
            reads: VecDeque::new(),
            reads_waiting: Vec::new(),
            read_seq: 0,
            transfer: None,
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
                if !self.conf.is_voter(from) {
                    // A learner's or a non-member's vote does not count (§4.2.1).
                    return;
                }
                c.votes.insert(from, r.vote_granted);
                let yes = c.votes.values().filter(|&&v| v).count();
                let no = c.votes.len() - yes;
                let pre = c.pre_vote;
                if yes >= quorum {
                    if pre {
                        self.become_candidate(false, false);
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
        let mut conf_touched = false;
        for e in entries {
            match self.log.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    // A conflict: drop it and everything after it (§5.3), undoing any
                    // membership change among them.
                    conf_touched |= self.pending_conf_index >= e.index;
                    self.log.truncate_from(e.index);
                }
                None => {}
            }
            debug_assert_eq!(e.index, self.log.last_index() + 1);
            conf_touched |= e.entry_type == EntryType::EntryConfChange as i32;
            self.log.entries.push(e.clone());
            self.log.unstable_from = self.log.unstable_from.min(e.index);
        }
        if conf_touched {
            // A change takes effect when appended, not when committed (thesis §4.1).
            self.refresh_conf();
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
            let mut conf = ConfState::from_voters(&s.voters);
            let mut learners = ConfState::from_voters(&s.learners).voters;
            learners.retain(|&l| !conf.is_voter(l) && l != 0);
            conf.voters.retain(|&v| v != 0);
            conf.learners = learners;
            if conf.voters.is_empty() {
                // A leader that sent no configuration: keep ours.
                conf = self.conf.clone();
            }
            self.log.restore(Snapshot {
                index,
                term,
                data: Bytes::from(buf),
                conf,
            });
            self.refresh_conf();
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
                    let me = usize::from(self.conf.is_voter(self.cfg.id));
                    let acks = rd.acks.iter().filter(|&&a| self.conf.is_voter(a)).count();
                    if acks + me < quorum {
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
            self.maybe_send_timeout_now(from);
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
            voters: snap.conf.voters.clone(),
            learners: snap.conf.learners.clone(),
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
        if let Some(t) = &mut l.transfer {
            t.elapsed += 1;
            if t.elapsed >= self.cfg.election_tick {
                // The target did not take over in an election timeout: lead on (§3.10).
                l.transfer = None;
                self.stats.transfers_abandoned += 1;
            }
        }
        if self.cfg.check_quorum && l.quorum_elapsed >= self.cfg.election_tick {
            l.quorum_elapsed = 0;
            let me = self.cfg.id;
            let active = (self.conf.voters.iter())
                .filter(|&&v| v == me || l.progress.get(&v).is_some_and(|p| p.active))
                .count();
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
        // Only voters count, this leader included only while it is one (a leader being
        // removed keeps leading without counting itself, thesis §4.2.2).
        let own = self.log.stable.min(self.log.last_index());
        let mut matched: Vec<u64> = (self.conf.voters.iter())
            .map(|&v| {
                if v == self.cfg.id {
                    own
                } else {
                    l.progress.get(&v).map_or(0, |p| p.matched)
                }
            })
            .collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&n) = matched.get(self.quorum() - 1) else {
            return;
        };
        if n > self.log.commit && self.log.term(n) == Some(self.term) {
            self.log.commit = n;
            self.on_commit_advanced();
        }
        if !self.conf.is_voter(self.cfg.id) && self.log.commit >= self.pending_conf_index {
            // The change that removed this leader has committed: step down (§4.2.2). It
            // never campaigns again while it is not a voter.
            self.become_follower(self.term, None);
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
        if self.conf.voters == [self.cfg.id] {
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
