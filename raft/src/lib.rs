//! The Raft consensus algorithm for raftkv.
//!
//! Raft (Ongaro and Ousterhout, "In Search of an Understandable Consensus Algorithm",
//! 2014; section numbers below refer to it, "thesis" to Ongaro's 2014 dissertation) keeps
//! a replicated log identical on a majority of nodes and hands each node's state machine
//! the committed entries in the same order. This crate has three layers:
//!
//! - [`RawNode`], the **deterministic core**: no threads, clock, sockets or files. Time is
//!   an abstract [`RawNode::tick`]; input is [`RawNode::step`] (a peer message),
//!   [`RawNode::propose`], [`RawNode::snapshot`] and [`RawNode::read_index`]; all output
//!   comes out of [`RawNode::ready`] as a [`Ready`]. The same inputs give the same
//!   outputs, so the simulator in `testkit` can replay any schedule from a seed.
//! - [`Node`], the **driver**: one thread per node that owns a `RawNode`, a [`Storage`]
//!   and a [`Transport`], ticks on a timer, and delivers [`ApplyMsg`]s on a channel.
//! - Transports: [`transport::LocalNetwork`] (in-process channels, for tests) and
//!   [`rpc_transport`] (the `rpc` crate's `RaftService.Step`, one-way batches).
//! - Storage: [`MemStorage`] (in memory, for tests) and [`DiskStorage`] (a data directory
//!   on the `persist` crate's WAL: one `fdatasync` per `persist`, snapshots in atomic files
//!   with the configuration, refuses another node's directory; how to open one and what each
//!   file is: the [`disk`] module).
//!
//! # Roles and terms
//!
//! A node is a follower, a candidate or a leader, and the state of each role lives in that
//! role's struct (a leader's per-follower progress cannot be touched by a follower).
//! [`RawNode::step`] first applies the rules shared by every role (§5.1): a message from a
//! newer term makes us a follower of that term; a message from an older term is dropped,
//! except that a stale leader or candidate is told the newer term so it steps down. Then
//! the role's own step function runs. Transitions are `become_follower`,
//! `become_candidate` and `become_leader`.
//!
//! # Election
//!
//! A follower that hears nothing for its election timeout (drawn from a seeded RNG in
//! `[election_tick, 2 * election_tick)` ticks, redrawn each time) first runs a **PreVote**
//! round (thesis §9.6): it asks whether the others *would* vote for it in the next term,
//! without changing anyone's term or vote. Only with a majority of yes does it start a
//! real election: term + 1, vote for itself, RequestVote to all (§5.2). A vote is granted
//! at most once per term and only to a candidate whose log is at least as up to date
//! (last term, then last index; §5.4.1). So a node that was partitioned away cannot
//! inflate the term and depose a healthy leader when it returns.
//!
//! **CheckQuorum** (thesis §6.2): a leader that has not heard from a majority within an
//! election timeout steps down, so a leader cut off from the majority stops accepting
//! commands it could never commit. In return followers that heard from a leader within
//! the minimum election timeout ignore vote requests (the leader lease, thesis §4.2.3), so
//! a node that can reach some peers but not the leader cannot disrupt it either.
//!
//! # Replication
//!
//! A new leader appends a **no-op entry** of its term (§8): entries of earlier terms are
//! committed only through it. The leader keeps a `Progress` per follower: in *probe*
//! mode it sends one AppendEntries at a time until it finds where the logs match; then in
//! *replicate* mode it pipelines up to `max_inflight` messages, each carrying as many
//! entries as fit in `max_msg_bytes` (at least one). A follower rejects an append whose
//! `prev_log_index` / `prev_log_term` it lacks, with a hint for **fast backtracking**: the
//! term of its conflicting entry and the first index of that term, or its log length if
//! the log is too short; the leader skips a whole term per round trip. A follower that
//! accepts truncates a conflicting suffix (only from the first conflicting entry, never a
//! committed one) and appends (§5.3). A rejection echoes the rejected `prev_log_index`,
//! so a late rejection of a superseded message is recognized and ignored. If nothing is
//! acknowledged for two heartbeat intervals the leader resends: the same probe in probe
//! mode, and in replicate mode it falls back to probing from the last known match. A
//! rejection that cannot move the next index is never answered by an immediate resend
//! (that would ping-pong as fast as the network allows). A follower that rejects the probe
//! at its recorded match twice in a row has lost entries it acknowledged (its log went
//! backwards: a replaced disk, or a bug): the leader logs a warning, counts it in
//! [`Stats::follower_log_regressions`], forgets the match and probes from what the
//! follower has, or sends the snapshot. See the README: a voter's data directory must
//! never be deleted.
//!
//! The leader **commits** the highest index stored on a majority (its own copy counts only
//! once persisted) *if that entry is of the current term* (§5.4.2, Figure 8). Followers
//! learn the commit index from appends and heartbeats, capped by what they are known to
//! hold. Heartbeats go every `heartbeat_tick`; a commit advance reaches followers at the
//! next tick.
//!
//! # Snapshots
//!
//! The service calls [`RawNode::snapshot`] (or [`Node::snapshot`]) after applying through
//! an index; the log through it is dropped and the snapshot persisted. A follower whose
//! next entry was dropped receives **InstallSnapshot in chunks** of `snapshot_chunk_bytes`:
//! one chunk in flight, each acknowledged with the next offset wanted, resent when lost.
//! (Unless entries past the snapshot were sent to it since the last resend: then a late
//! reply moved its next index back, and the leader waits for the answer to those first.)
//! The follower assembles the chunks (a chunk that does not continue where it is gets the
//! current offset back; a new snapshot restarts the assembly), and on the last one
//! replaces its log and state machine atomically: the snapshot goes to the driver to
//! persist and to apply *before* any later entry, in the same `Ready`. A snapshot at or
//! below the follower's commit index, or one whose last entry the follower already has,
//! is acknowledged and ignored.
//!
//! # Linearizable reads
//!
//! [`RawNode::read_index`] (thesis §6.4): the leader records its commit index, then
//! confirms it is still leader with a heartbeat round carrying a read sequence number;
//! when a majority has answered that round (or a later one) the read comes out as a
//! [`ReadState`]. The service serves the read once it has applied through that index. A
//! leader that has not yet committed an entry of its term waits for its no-op first.
//!
//! # Membership changes, learners, leadership transfer
//!
//! **Single-server changes** (thesis §4.1) are log entries of type `EntryConfChange`
//! whose data is a [`ConfChange`]: add a learner, promote a learner to voter, or remove a
//! node. Any two configurations one change apart have overlapping majorities, so no
//! joint consensus is needed. Rules, each checked by the simulator:
//!
//! - A change takes effect on each node **when appended**, committed or not, and is
//!   undone if the entry is truncated; every quorum (votes, commit, CheckQuorum, ReadIndex)
//!   counts the voters of the configuration in effect.
//! - The leader accepts a change ([`RawNode::propose_conf_change`]) only once it has
//!   committed an entry of its own term (its no-op; Ongaro, raft-dev, 2015: without this,
//!   changes of successive leaders can be decided by disjoint majorities) and while no
//!   other change is uncommitted; refusals are typed ([`MembershipError`]) and change
//!   nothing.
//! - **Learners** (thesis §4.2.1) receive entries and snapshots but are not asked to vote,
//!   their votes and acknowledgements do not count, and they never campaign. Promotion is
//!   a change, refused while the learner lags by more than `Config::max_learner_lag`
//!   entries.
//! - A leader that removes itself (thesis §4.2.2) leads without counting itself until the
//!   removal commits, then steps down. A node campaigns only if it is a voter of its
//!   latest configuration or of the one at its commit index, so a node that knows its
//!   removal committed never campaigns again; one that missed its removal is kept from
//!   disrupting by PreVote and the lease.
//! - Every snapshot records the configuration at its index ([`Snapshot::conf`]; the
//!   snapshot file and InstallSnapshot carry it), and a restarted node rebuilds its
//!   configuration from the snapshot and the change entries after it.
//! - Messages from any node id are heard (thesis §4.1: a leader may be a member this node
//!   has not learned of yet), except from id 0 and from itself.
//!
//! **Leadership transfer** ([`RawNode::transfer_leader`], thesis §3.10): the leader stops
//! taking proposals ([`Error::TransferInProgress`]), brings the target voter's log up to
//! date, then sends it `TimeoutNow`; the target starts an election at once, without
//! PreVote, and its vote requests are granted even by voters within their leader lease. If
//! no new leader appears within an election timeout the transfer is abandoned.
//!
//! # The driver contract
//!
//! After any batch of `tick` / `step` / `propose` / `snapshot` / `read_index` calls, while
//! [`RawNode::has_ready`]:
//!
//! 1. Take a [`Ready`] with [`RawNode::ready`]. Its `messages` (leader appends,
//!    heartbeats, snapshot chunks) may be sent right away, even while persisting.
//! 2. **Persist** `snapshot`, then `entries`, then `hard_state`, atomically with respect
//!    to crashes ([`Storage::persist`]).
//! 3. **Send** `persisted_messages` (votes, replies, vote requests): they promise that
//!    step 2 is durable.
//! 4. **Apply** `apply_snapshot`, then `committed_entries`, in order; answer
//!    `read_states` once the state machine has reached their index.
//! 5. Call [`RawNode::advance`] with the same `Ready`. Only then take the next one
//!    (`step` and `tick` may be called in between; their effects come in the next Ready).
//!
//! [`Node`] does exactly this on its thread. It waits on its input channel with a timeout
//! that ends at the next tick (no busy loop), handles a burst of inputs (up to 256) per
//! Ready so that one persist covers many proposals, and the proposals go out to followers
//! in the Ready right after them (not at the next heartbeat), all of them in one
//! AppendEntries per follower: [`RawNode::propose`] only appends, and `ready` broadcasts
//! once for every proposal since the last one.
//!
//! Between steps 1 and 5 a driver may go on calling `step`, `tick` and `propose` (their
//! effects come in the next Ready), and [`RawNode::take_early_messages`] gives the leader
//! traffic they produce, which may go out at once: that is how a driver persists on
//! another thread while the leader keeps replicating (thesis §10.2.1).
//!
//! # Timing defaults
//!
//! One tick is [`DEFAULT_TICK`] = 50 ms. Election timeout 10-20 ticks (0.5-1 s), heartbeat
//! every 3 ticks (150 ms, about 6.7 heartbeats per second per peer), CheckQuorum window 10
//! ticks. A fresh 3-node cluster on loopback elects in 0.5-1 s (the first timeout plus two
//! round trips); after a leader fails a new one is up within about 1.5 s.
//!
//! # Bad input
//!
//! Messages with another cluster id, from node id 0 or from the node itself, addressed
//! to another node, without a body, with entries that do not continue `prev_log_index`,
//! with absurd terms (more than 2^32 ahead) or indexes, or claiming matches past the
//! leader's log are dropped and counted in [`Stats`]. No index a peer sends is used to
//! index the log without a bounds check; a peer cannot make a node panic (a fuzz test
//! feeds random messages with extreme numbers to the core in debug builds).
//!
//! # Not implemented
//!
//! - **Joint consensus** (thesis §4.3): changes go one server at a time
//!   ([`Node::propose_conf_change_with`], [`Node::transfer_leader_with`]). A node that
//!   joins must be given the cluster's bootstrap voter list (`Config::peers`) to replay
//!   the log from index 1 (`kvserver --join` asks a member for it).
//! - Lease-based reads (reads use ReadIndex, which costs one heartbeat round per read
//!   batch).
//! - Flow control by bytes in flight (only by message count) and snapshot streaming from
//!   disk: the leader keeps the latest snapshot in memory and sends it from there.
//! - Asynchronous persistence by default: [`Node`] persists on its driver thread unless
//!   [`Config::pipelined_persist`] is set (then a leader persists on a separate thread and
//!   keeps replicating meanwhile, [`RawNode::take_early_messages`]); on the 2-core machine
//!   we measure on, the default is faster (the option's docs give the figures).

mod core;
pub mod disk;
mod log;
mod node;
pub mod rpc_transport;
mod storage;
pub mod transport;

pub use crate::core::{Config, RawNode, ReadState, Ready, Role, Stats, Status};
pub use crate::disk::{DiskError, DiskOptions, DiskStorage};
pub use crate::node::{ApplyMsg, Callback, DEFAULT_TICK, Mailbox, Node, Transport};
pub use crate::storage::{ConfState, InitialState, MemStorage, Snapshot, Storage, StorageError};
pub use proto::raft::{ConfChange, ConfChangeType, Entry, EntryType, HardState, RaftMessage};

/// Errors a caller of this crate branches on.
#[derive(Debug)]
pub enum Error {
    /// This node does not lead; `leader_hint` is the leader it knows of, if any.
    NotLeader {
        /// The leader of the current term as far as this node knows.
        leader_hint: Option<u64>,
    },
    /// `snapshot(index, ..)` for an index not yet handed out to apply.
    SnapshotNotApplied {
        /// The index asked for.
        index: u64,
        /// The highest index handed out to apply.
        applied: u64,
    },
    /// The configuration (or the stored state) is unusable.
    InvalidConfig(String),
    /// Storage failed; the node stops.
    Storage(StorageError),
    /// No answer in time (a ReadIndex round that got no majority).
    Timeout,
    /// The node has shut down.
    Shutdown,
    /// A membership change or leadership transfer was refused; nothing changed.
    Membership(MembershipError),
    /// A leadership transfer to `target` is under way (thesis §3.10): the leader takes no
    /// proposals until it ends, at most one election timeout later. Retry, at the new
    /// leader if the transfer succeeded.
    TransferInProgress {
        /// The node leadership is being handed to.
        target: u64,
    },
}

/// Why a membership change ([`RawNode::propose_conf_change`]) or a leadership transfer
/// ([`RawNode::transfer_leader`]) was refused. Each leaves the configuration unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipError {
    /// An earlier change (at `index`) is not committed yet: single-server changes go one
    /// at a time (thesis §4.1). Retry once it commits.
    ChangePending {
        /// Index of the uncommitted change.
        index: u64,
    },
    /// This leader has not yet committed an entry of its own `term` (its no-op): until it
    /// does, a change could conflict with an uncommitted one of an earlier leader (Ongaro,
    /// raft-dev, 2015). Retry shortly.
    TermNotCommitted {
        /// The leader's term.
        term: u64,
    },
    /// The node is already a voter or a learner.
    AlreadyMember {
        /// The node asked for.
        id: u64,
    },
    /// The node is in neither the voters nor the learners.
    NotMember {
        /// The node asked for.
        id: u64,
    },
    /// Only learners can be promoted; this node is already a voter.
    NotLearner {
        /// The node asked for.
        id: u64,
    },
    /// A leadership transfer must go to a voter; this node is a learner.
    NotVoter {
        /// The node asked for.
        id: u64,
    },
    /// Removing the only voter would leave nobody to elect a leader or commit.
    LastVoter {
        /// The node asked for.
        id: u64,
    },
    /// The learner lags the leader's log by more than `Config::max_learner_lag` entries,
    /// or has acknowledged nothing yet (`matched` 0: it may not be running); promoting it
    /// now could stall commits while it catches up. Retry later.
    LearnerLagging {
        /// The learner.
        id: u64,
        /// Highest index it is known to hold.
        matched: u64,
        /// The leader's last index.
        last_index: u64,
        /// The configured limit.
        max_lag: u64,
    },
    /// Node id 0 means "none" and cannot be a member.
    ReservedId,
}

impl std::fmt::Display for MembershipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MembershipError::ChangePending { index } => write!(
                f,
                "the membership change at index {index} is not committed yet; changes go one \
                 at a time, retry once it commits"
            ),
            MembershipError::TermNotCommitted { term } => write!(
                f,
                "the new leader has not committed an entry of its term {term} yet; retry shortly"
            ),
            MembershipError::AlreadyMember { id } => {
                write!(
                    f,
                    "node {id} is already a member; remove it first to re-add it"
                )
            }
            MembershipError::NotMember { id } => {
                write!(f, "node {id} is not a member (see the member list)")
            }
            MembershipError::NotLearner { id } => {
                write!(
                    f,
                    "node {id} is already a voter; only learners can be promoted"
                )
            }
            MembershipError::NotVoter { id } => write!(
                f,
                "node {id} is a learner; leadership can only go to a voter (promote it first)"
            ),
            MembershipError::LastVoter { id } => write!(
                f,
                "node {id} is the last voter; add and promote another node before removing it"
            ),
            MembershipError::LearnerLagging {
                id,
                matched,
                last_index,
                max_lag,
            } if *matched == 0 => write!(
                f,
                "learner {id} has not acknowledged any entry yet (log at {last_index}); is it \
                 running and reachable? wait for it to catch up (limit {max_lag} entries \
                 behind), then retry"
            ),
            MembershipError::LearnerLagging {
                id,
                matched,
                last_index,
                max_lag,
            } => write!(
                f,
                "learner {id} holds the log through {matched} of {last_index}, more than \
                 {max_lag} entries behind; wait for it to catch up, then retry"
            ),
            MembershipError::ReservedId => write!(f, "node id 0 is reserved for 'none'"),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotLeader { leader_hint } => write!(f, "not the leader (hint: {leader_hint:?})"),
            Error::SnapshotNotApplied { index, applied } => {
                write!(f, "snapshot at {index} but only {applied} applied")
            }
            Error::InvalidConfig(s) => write!(f, "invalid raft config: {s}"),
            Error::Storage(e) => write!(f, "{e}"),
            Error::Timeout => write!(f, "raft request timed out"),
            Error::Shutdown => write!(f, "raft node shut down"),
            Error::Membership(e) => write!(f, "{e}"),
            Error::TransferInProgress { target } => write!(
                f,
                "leadership is being transferred to node {target}; retry at the new leader"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
