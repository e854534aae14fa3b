//! A recording of one simulated run, for pictures ([`crate::viz`], the `raft-viz` binary).
//!
//! Recording is switched on per thread with [`record`]: every [`Sim`](crate::sim::Sim)
//! created inside the closure keeps a [`Recording`] of what happened, and hands it back
//! when it is dropped (also when the run fails with a panic). The recorder only watches:
//! it draws nothing from the simulation's RNG and changes no decision, so a recorded run
//! is the same run as an unrecorded one with the same seed (`tests/record.rs` checks this
//! on chaos seeds).
//!
//! What is recorded, each with the simulated time in ms:
//! - node starts, crashes (and why), role and term changes;
//! - each node's persisted log (entries appended, snapshots) and its last / commit /
//!   applied / snapshot indexes when they change;
//! - every message sent: from, to, kind, a one-line description, when it was delivered
//!   or why it was lost (random loss, a cut link, a node that was down);
//! - connectivity (disconnected nodes and blocked one-way links) when it changes;
//! - client actions: proposals (and the index they got), ReadIndex requests and answers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use proto::raft::RaftMessage;
use proto::raft::raft_message::Body;
use raft::Role;

/// The kind of a message, for colouring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgKind {
    /// RequestVote with `pre_vote` (thesis §9.6).
    PreVote,
    /// The answer to a PreVote.
    PreVoteReply,
    /// RequestVote (§5.2).
    Vote,
    /// The answer to a RequestVote.
    VoteReply,
    /// AppendEntries carrying a log position (§5.3).
    Append,
    /// The answer to an AppendEntries.
    AppendReply,
    /// AppendEntries sent as a heartbeat (§5.2; also ReadIndex rounds, thesis §6.4).
    Heartbeat,
    /// The answer to a heartbeat.
    HeartbeatReply,
    /// An InstallSnapshot chunk (§7).
    Snapshot,
    /// The answer to an InstallSnapshot chunk.
    SnapshotReply,
    /// A message without a body (only injected bad input).
    Other,
}

impl MsgKind {
    /// The kind of `m`.
    pub fn of(m: &RaftMessage) -> Self {
        match &m.body {
            Some(Body::RequestVote(r)) if r.pre_vote => MsgKind::PreVote,
            Some(Body::RequestVote(_)) => MsgKind::Vote,
            Some(Body::RequestVoteReply(r)) if r.pre_vote => MsgKind::PreVoteReply,
            Some(Body::RequestVoteReply(_)) => MsgKind::VoteReply,
            Some(Body::AppendEntries(a)) if a.heartbeat => MsgKind::Heartbeat,
            Some(Body::AppendEntries(_)) => MsgKind::Append,
            Some(Body::AppendEntriesReply(r)) if r.heartbeat => MsgKind::HeartbeatReply,
            Some(Body::AppendEntriesReply(_)) => MsgKind::AppendReply,
            Some(Body::InstallSnapshot(_)) => MsgKind::Snapshot,
            Some(Body::InstallSnapshotReply(_)) => MsgKind::SnapshotReply,
            // Leadership transfer (thesis §3.10): not drawn as its own kind yet.
            Some(Body::TimeoutNow(_)) | None => MsgKind::Other,
        }
    }

    /// A short name (used as a key by the picture's colour table).
    pub fn name(self) -> &'static str {
        match self {
            MsgKind::PreVote => "PreVote",
            MsgKind::PreVoteReply => "PreVoteReply",
            MsgKind::Vote => "Vote",
            MsgKind::VoteReply => "VoteReply",
            MsgKind::Append => "Append",
            MsgKind::AppendReply => "AppendReply",
            MsgKind::Heartbeat => "Heartbeat",
            MsgKind::HeartbeatReply => "HeartbeatReply",
            MsgKind::Snapshot => "Snapshot",
            MsgKind::SnapshotReply => "SnapshotReply",
            MsgKind::Other => "Other",
        }
    }
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Still on its way when the recording ended.
    InFlight,
    /// Delivered (stepped into the receiver) at this time.
    Delivered(u64),
    /// Lost at this time, for this reason (`"random loss"`, `"link cut"`, `"node down"`).
    Lost(u64, &'static str),
}

/// One message copy (a duplicated message is two).
#[derive(Debug, Clone)]
pub struct Msg {
    /// Sender.
    pub from: u64,
    /// Receiver.
    pub to: u64,
    /// Kind.
    pub kind: MsgKind,
    /// One line, as in `SIM_TRACE=1`: `n1 → n2 Append@3 prev=4@2 [5@3] commit=4`.
    pub text: String,
    /// Sent at (ms).
    pub sent: u64,
    /// Delivery planned at (ms); `None` if lost when sent.
    pub due: Option<u64>,
    /// Delivered, lost, or still in flight.
    pub fate: Fate,
}

/// A log entry as the picture shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMark {
    /// Log index.
    pub index: u64,
    /// Term.
    pub term: u64,
    /// A leader's no-op (§8) rather than a command.
    pub noop: bool,
}

/// A node's log positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// Last index in the log.
    pub last: u64,
    /// Highest index known committed.
    pub commit: u64,
    /// Highest index applied by the service.
    pub applied: u64,
    /// Index of the latest snapshot.
    pub snapshot: u64,
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub enum What {
    /// A node (re)started from its storage.
    Start {
        /// The node.
        id: u64,
    },
    /// A node crashed: it loses what it had not persisted.
    Crash {
        /// The node.
        id: u64,
        /// Why (`"crash"`, `"crash before persist"`, a storage error, …).
        why: String,
    },
    /// A node's storage was replaced by an empty one.
    Wipe {
        /// The node.
        id: u64,
    },
    /// Role or term changed.
    Role {
        /// The node.
        id: u64,
        /// New role.
        role: Role,
        /// New term.
        term: u64,
    },
    /// Entries were persisted: they replace the log from `entries[0].index` on.
    Append {
        /// The node.
        id: u64,
        /// The entries.
        entries: Vec<EntryMark>,
    },
    /// A snapshot was persisted: the log through `index` is compacted.
    Snapshot {
        /// The node.
        id: u64,
        /// Last index covered.
        index: u64,
        /// Its term.
        term: u64,
    },
    /// Last, commit, applied or snapshot index changed.
    Marks {
        /// The node.
        id: u64,
        /// The new positions.
        marks: Marks,
    },
    /// A message was sent (index into [`Recording::messages`]).
    Send {
        /// The message.
        msg: usize,
    },
    /// A message arrived and was stepped into its receiver.
    Deliver {
        /// The message.
        msg: usize,
    },
    /// A message was lost (its fate says why).
    Lose {
        /// The message.
        msg: usize,
    },
    /// Connectivity changed.
    Net {
        /// Nodes cut off from everyone.
        disconnected: Vec<u64>,
        /// Blocked one-way links (from, to).
        blocked: Vec<(u64, u64)>,
    },
    /// A client proposed a command on a node.
    Propose {
        /// The node.
        id: u64,
        /// (index, term) if the node leads and took it.
        at: Option<(u64, u64)>,
    },
    /// A client asked a node for a read index.
    Read {
        /// The node.
        id: u64,
        /// The request id.
        ctx: u64,
    },
    /// A node answered a read: serve it once applied through `index`.
    ReadState {
        /// The node.
        id: u64,
        /// The request id.
        ctx: u64,
        /// The read index.
        index: u64,
    },
}

/// One event: simulated time (ms) and what happened.
#[derive(Debug, Clone)]
pub struct Event {
    /// Simulated ms.
    pub t: u64,
    /// What happened.
    pub what: What,
}

/// Everything recorded about one simulated run.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Nodes (ids `1..=nodes`).
    pub nodes: usize,
    /// The run's seed.
    pub seed: u64,
    /// Events in the order they happened (times never decrease).
    pub events: Vec<Event>,
    /// Every message copy sent.
    pub messages: Vec<Msg>,
    /// Simulated time when the recording ended.
    pub end: u64,
    by_seq: HashMap<u64, usize>,
    marks: Vec<Marks>,
    net: (Vec<u64>, Vec<(u64, u64)>),
}

impl Recording {
    /// An empty recording of `nodes` nodes.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Recording {
            nodes,
            seed,
            events: Vec::new(),
            messages: Vec::new(),
            end: 0,
            by_seq: HashMap::new(),
            marks: vec![Marks::default(); nodes],
            net: (Vec::new(), Vec::new()),
        }
    }

    pub(crate) fn push(&mut self, t: u64, what: What) {
        self.end = self.end.max(t);
        self.events.push(Event { t, what });
    }

    /// A message was sent; `due` holds (network seq, delivery time) of each copy, empty
    /// if it was lost at once for `lost`.
    pub(crate) fn send(
        &mut self,
        t: u64,
        m: &RaftMessage,
        text: String,
        due: &[(u64, u64)],
        lost: &'static str,
    ) {
        let base = Msg {
            from: m.from,
            to: m.to,
            kind: MsgKind::of(m),
            text,
            sent: t,
            due: None,
            fate: Fate::Lost(t, lost),
        };
        if due.is_empty() {
            self.messages.push(base);
            let msg = self.messages.len() - 1;
            self.push(t, What::Send { msg });
            self.push(t, What::Lose { msg });
            return;
        }
        for &(seq, at) in due {
            let mut copy = base.clone();
            copy.due = Some(at);
            copy.fate = Fate::InFlight;
            self.messages.push(copy);
            let msg = self.messages.len() - 1;
            self.by_seq.insert(seq, msg);
            self.push(t, What::Send { msg });
        }
    }

    /// The copy with network `seq` arrived (`lost` is `None`) or was lost on arrival.
    pub(crate) fn arrive(&mut self, t: u64, seq: u64, lost: Option<&'static str>) {
        let Some(msg) = self.by_seq.remove(&seq) else {
            return;
        };
        match lost {
            None => {
                self.messages[msg].fate = Fate::Delivered(t);
                self.push(t, What::Deliver { msg });
            }
            Some(why) => {
                self.messages[msg].fate = Fate::Lost(t, why);
                self.push(t, What::Lose { msg });
            }
        }
    }

    /// Records `marks` for node `id` if they changed.
    pub(crate) fn marks(&mut self, t: u64, id: u64, marks: Marks) {
        let i = (id - 1) as usize;
        if self.marks[i] != marks {
            self.marks[i] = marks;
            self.push(t, What::Marks { id, marks });
        }
    }

    /// Records the connectivity if it changed.
    pub(crate) fn net(&mut self, t: u64, disconnected: Vec<u64>, blocked: Vec<(u64, u64)>) {
        if self.net.0 != disconnected || self.net.1 != blocked {
            self.net = (disconnected.clone(), blocked.clone());
            self.push(
                t,
                What::Net {
                    disconnected,
                    blocked,
                },
            );
        }
    }
}

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static DONE: RefCell<Vec<Recording>> = const { RefCell::new(Vec::new()) };
}

/// True while [`record`] runs on this thread: a new `Sim` then records itself.
pub(crate) fn recording_on() -> bool {
    ON.with(Cell::get)
}

/// Called by a dropped `Sim` with its recording.
pub(crate) fn hand_back(r: Recording) {
    DONE.with(|d| d.borrow_mut().push(r));
}

/// Runs `f` with recording on: returns what `f` returned (or its panic, caught) and the
/// recordings of every `Sim` it created and dropped, in the order they were dropped.
pub fn record<R>(f: impl FnOnce() -> R) -> (std::thread::Result<R>, Vec<Recording>) {
    let was = ON.with(|on| on.replace(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    ON.with(|on| on.set(was));
    let recs = DONE.with(|d| std::mem::take(&mut *d.borrow_mut()));
    (out, recs)
}
