//! A deterministic simulator for `raft::RawNode` clusters.
//!
//! Everything runs on one thread in simulated milliseconds; every random choice (message
//! delay, drop, duplication, tick phase, workload) comes from one seeded RNG, so a seed
//! replays a run exactly (a failure prints the command, see [`replay_command`]). Each node's `Ready` is handled atomically in the contract order
//! (persist, send, apply, advance) unless the test asks for a crash in the middle of one,
//! or gives the disk a latency: then the node goes on stepping while a Ready is being
//! persisted and sends its leader traffic at once (`RawNode::take_early_messages`), as
//! raft's pipelined `Node` driver does.
//!
//! `SIM_TRACE=1` prints one line per event (send drops, deliveries, crashes, restarts,
//! role changes), e.g. `   1013 deliver n2 → n1 Append@1 prev=0@0 [1@1] commit=0`.
//!
//! After every event the simulator checks the Raft safety properties:
//! - at most one leader per term (Election Safety);
//! - Log Matching: two entries with the same index and term hold the same data and follow
//!   entries of the same term (checked on every entry any node appends, which by
//!   induction gives identical prefixes);
//! - a committed entry never changes or disappears: every node's committed prefix agrees
//!   with the first committed term recorded for each index, no node rewrites a committed
//!   index with another term, and the leader of every term holds every entry committed
//!   in an earlier term (Leader Completeness);
//! - no two nodes apply different commands at one index (State Machine Safety);
//! - each node applies a gap-free prefix, snapshots included;
//! - every message goes out in a term its sender has persisted, and every vote (granted or
//!   asked for) only once the sender's storage holds it;
//! - every acknowledged entry is durable: when a node sends an AppendEntries success reply
//!   with `match_index = k`, its storage already holds entries through `k` (or a snapshot
//!   covering them), and the entry at `k` has the term of the leader's entry at `k`;
//! - no node votes for two candidates in one term, across any number of crashes.
//!
//! With membership changes, the checker recomputes each node's configuration from its own
//! log (the snapshot's configuration, then every ConfChange entry; see [`conf_of`]),
//! independently of the core, and checks against the configuration in effect:
//! - a new leader of term T holds granted votes (sent, persisted) of a majority of the
//!   voters of its configuration, its own vote included only if it is a voter;
//! - whenever a leader's commit index advances, a majority of the voters of its
//!   configuration have the entry there durable (a leader being removed does not count
//!   itself);
//! - a membership change is accepted only by a leader that has committed an entry of its
//!   term and has no uncommitted change in its log (thesis §4.1 and the raft-dev 2015
//!   fix), checked at [`Sim::propose_conf_change`];
//! - only voters ask for votes: of the latest configuration in the node's log, or of the
//!   one at its commit index (a node whose own removal is not yet committed may have to
//!   lead to commit it); learners and nodes that know their removal committed never
//!   campaign. Skipped when a slow disk delays Readies.
//!
//! Storage is [`MemStorage`] unless the test passes another [`SimStorage`] to
//! [`Sim::with_storage`] (`crate::disk::SimDisk` writes the real on-disk format to a
//! simulated file system that loses unsynced data at each crash).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use bytes::{Bytes, BytesMut};
use proto::Message;
use proto::raft::raft_message::Body;
use raft::{
    ConfChange, ConfChangeType, Config, EntryType, HardState, MemStorage, RaftMessage, RawNode,
    Ready, Role, Storage,
};

use crate::record::{self, EntryMark, Marks, Recording, What};

/// Simulated milliseconds per Raft tick (the driver's default too).
pub const TICK_MS: u64 = 50;

/// SplitMix64: small, seedable, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// An RNG from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)` (`lo` if empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

/// A number from the environment variable `name`: `None` if it is unset. A value that is
/// not a decimal `u64` panics with a message saying so (a typo must not silently run the
/// default seeds instead of the one asked for).
pub fn u64_from_env(name: &str) -> Option<u64> {
    let v = std::env::var_os(name)?;
    match v.to_str().map(str::trim).map(str::parse::<u64>) {
        Some(Ok(n)) => Some(n),
        _ => panic!(
            "{name}={v:?} is not a number: give a decimal u64, e.g. {name}=215673 (a failing \
             run prints the seed to replay and the whole command)"
        ),
    }
}

/// The seed for a test: `SEED` from the environment if set, else `default`. Panics if
/// `SEED` is set but is not a decimal `u64`.
pub fn seed_from_env(default: u64) -> u64 {
    u64_from_env("SEED").unwrap_or(default)
}

/// The seeds a many-seed test runs: `SEED=s` alone if set; otherwise `{PREFIX}_SEEDS`
/// seeds (default `optimized` in optimized builds such as `--profile ci`, `debug` in
/// unoptimized ones, which are about 15x slower) from `{PREFIX}_BASE` (default 1). Every
/// value must be a decimal `u64`: anything else panics with a message, never silently
/// runs the default.
pub fn seeds_from_env(prefix: &str, optimized: u64, debug: u64) -> Vec<u64> {
    if let Some(s) = u64_from_env("SEED") {
        return vec![s];
    }
    let base = u64_from_env(&format!("{prefix}_BASE")).unwrap_or(1);
    let default = if cfg!(optimized) { optimized } else { debug };
    let n = u64_from_env(&format!("{prefix}_SEEDS")).unwrap_or(default);
    (base..base.saturating_add(n)).collect()
}

/// The command that replays `seed` in the running test: `SEED=… cargo test -p testkit
/// --profile ci --test <file> <test name>` (the test binary's and thread's names).
pub fn replay_command(seed: u64) -> String {
    let exe = std::env::args()
        .next()
        .as_deref()
        .and_then(|p| {
            std::path::Path::new(p)
                .file_name()?
                .to_str()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    // A cargo test binary is `<file>-<16 hex digits>`; any other program (raft-viz) is
    // replayed by running it again.
    let file = match exe.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_owned()
        }
        _ if !exe.is_empty() => return format!("run {exe} again with the same arguments"),
        _ => "<file>".to_owned(),
    };
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("<test>")
        .to_owned();
    format!("SEED={seed} cargo test -p testkit --profile ci --test {file} {test} -- --exact")
}

/// Network behaviour.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Drop each message with this probability (the lab's unreliable net: 0.1).
    pub drop: f64,
    /// Deliver a message twice with this probability.
    pub duplicate: f64,
    /// Per-message delay in ms, uniform in `[min, max]`.
    pub delay: (u64, u64),
    /// With this probability a reply is instead delayed by `long_delay` (the lab's long
    /// reordering: 2/3 of replies by 200-2200 ms).
    pub long_reorder: f64,
    /// Range of the long delay in ms.
    pub long_delay: (u64, u64),
}

impl NetConfig {
    /// A reliable network with small delays.
    pub fn reliable() -> Self {
        NetConfig {
            drop: 0.0,
            duplicate: 0.0,
            delay: (1, 3),
            long_reorder: 0.0,
            long_delay: (200, 2200),
        }
    }
    /// The lab's unreliable network: 10% loss, 0-26 ms delay.
    pub fn unreliable() -> Self {
        NetConfig {
            drop: 0.1,
            duplicate: 0.0,
            delay: (1, 27),
            ..NetConfig::reliable()
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    Tick { id: u64, incarnation: u64 },
    Disk { id: u64, incarnation: u64 },
    Deliver { seq: u64 },
}

/// Where to crash inside the next Ready of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After sending the leader messages that may precede the persist, before persisting.
    BeforePersist,
    /// After persisting, before sending the messages that waited for it and applying.
    AfterPersist,
}

#[derive(Debug)]
struct SimNode {
    raw: RawNode,
    incarnation: u64,
    /// The service's state machine: index -> command data (no-ops are not commands).
    applied: BTreeMap<u64, Bytes>,
    last_applied: u64,
    /// Commit index already checked against the committed history.
    checked_commit: u64,
    was_leader_in: Option<u64>,
    /// A Ready being persisted by a slow disk (see [`Sim::disk_latency`]).
    disk: Option<Ready>,
    /// Role and term at the last check (for traces).
    role: (Role, u64),
}

/// Builds each node's configuration.
struct MakeConfig(Box<dyn Fn(u64, Vec<u64>) -> Config>);

impl std::fmt::Debug for MakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeConfig")
    }
}

/// A node's storage in the simulator: [`MemStorage`] by default, or one that really
/// writes files (`testkit::disk::SimDisk`: `raft::DiskStorage` over a power-loss file
/// system), passed to [`Sim::with_storage`].
pub trait SimStorage: Storage + std::fmt::Debug {
    /// The persisted term, vote and commit index.
    fn hard_state(&self) -> HardState;
    /// Bytes of persisted hard state and log (the lab's "Raft state size").
    fn raft_state_size(&self) -> usize;
    /// The persisted log's last index and the persisted term at `index` (see
    /// [`MemStorage::last_index_and_term`]); for checks that must not copy the log.
    fn last_index_and_term(&self, index: u64) -> (u64, Option<u64>);
    /// Called before a node (re)starts from this storage, after a crash: a disk loses
    /// what was not synced here. An error fails the run.
    fn restart(&mut self) -> Result<(), String> {
        Ok(())
    }
}

impl SimStorage for MemStorage {
    fn hard_state(&self) -> HardState {
        MemStorage::hard_state(self)
    }
    fn raft_state_size(&self) -> usize {
        MemStorage::raft_state_size(self)
    }
    fn last_index_and_term(&self, index: u64) -> (u64, Option<u64>) {
        MemStorage::last_index_and_term(self, index)
    }
}

/// A simulated cluster.
#[derive(Debug)]
pub struct Sim<S: SimStorage = MemStorage> {
    /// The seed this run replays from.
    pub seed: u64,
    /// The one RNG (tests may draw workload from it too).
    pub rng: Rng,
    /// Simulated time in ms.
    pub now: u64,
    /// Network behaviour (changeable mid-run).
    pub net: NetConfig,
    /// Snapshot after every this many applied indexes (`None`: never).
    pub snapshot_every: Option<u64>,
    /// `None`: each Ready is persisted at once. `Some((lo, hi))`: persisting takes lo-hi
    /// ms, during which the node goes on stepping and ticking (a pipelined driver).
    pub disk_latency: Option<(u64, u64)>,
    /// Per-node override of `disk_latency`.
    pub slow_disk: BTreeMap<u64, (u64, u64)>,
    n: usize,
    make_config: MakeConfig,
    nodes: Vec<Option<SimNode>>,
    storages: Vec<S>,
    connected: Vec<bool>,
    blocked: BTreeSet<(u64, u64)>,
    events: BinaryHeap<Reverse<(u64, u64, EventKind)>>,
    in_flight: HashMap<u64, RaftMessage>,
    next_seq: u64,
    incarnations: u64,
    crash_point: Option<(u64, CrashPoint)>,
    // checker state
    leaders: BTreeMap<u64, u64>,
    pairs: HashMap<(u64, u64), (u64, u64)>,
    committed: Vec<u64>,
    /// Per index: the term in which it was first seen committed.
    commit_terms: Vec<u64>,
    applied_global: BTreeMap<u64, Bytes>,
    reads: Vec<(u64, u64, u64)>,
    read_required: HashMap<(u64, u64), u64>,
    /// (voter, term) -> the candidate it voted for, across restarts.
    votes: HashMap<(u64, u64), u64>,
    // counters
    /// Request messages sent (RequestVote, AppendEntries, InstallSnapshot): the lab's RPCs.
    pub rpcs: u64,
    /// Request messages sent per (from, to) link.
    pub rpcs_by_link: BTreeMap<(u64, u64), u64>,
    /// AppendEntries that carry a log position (not heartbeats) sent per (from, to) link.
    pub appends_by_link: BTreeMap<(u64, u64), u64>,
    /// All messages sent, replies included.
    pub msgs: u64,
    /// Encoded bytes of all messages sent.
    pub bytes: u64,
    /// Events processed.
    pub steps: u64,
    /// InstallSnapshot chunks sent.
    pub snapshot_chunks: u64,
    /// Snapshot transfers that reached a node which already had the snapshot's last entry
    /// (counted at the first chunk's delivery): the entries were on their way and the
    /// transfer was wasted.
    pub needless_snapshots: u64,
    /// Print one line per event (`SIM_TRACE=1`).
    pub trace: bool,
    /// When `Some`, every trace line is also recorded here (golden tests).
    pub trace_log: Option<Vec<String>>,
    /// What happened, for a picture: `Some` when the simulator was created inside
    /// [`record::record`] (handed back there when the `Sim` is dropped).
    recording: Option<Recording>,
}

/// One line for a message, for `SIM_TRACE=1` output: `n1@3 → n2 Append prev=4@2 [5@3]`.
pub fn describe(m: &RaftMessage) -> String {
    let body = match &m.body {
        None => "(no body)".to_string(),
        Some(Body::RequestVote(r)) => format!(
            "{}@{} last={}@{}",
            if r.pre_vote { "PreVote" } else { "Vote" },
            r.term,
            r.last_log_index,
            r.last_log_term
        ),
        Some(Body::RequestVoteReply(r)) => format!(
            "{}Reply@{} {}",
            if r.pre_vote { "PreVote" } else { "Vote" },
            r.term,
            if r.vote_granted {
                "granted"
            } else {
                "rejected"
            }
        ),
        Some(Body::AppendEntries(a)) if a.heartbeat => {
            format!(
                "Heartbeat@{} commit={} read={}",
                a.term, a.leader_commit, a.read_ctx
            )
        }
        Some(Body::AppendEntries(a)) => {
            let es = match (a.entries.first(), a.entries.last()) {
                (Some(f), Some(l)) if a.entries.len() > 2 => {
                    format!(
                        "{}@{} .. {}@{} ({})",
                        f.index,
                        f.term,
                        l.index,
                        l.term,
                        a.entries.len()
                    )
                }
                _ => a
                    .entries
                    .iter()
                    .map(|e| format!("{}@{}", e.index, e.term))
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            format!(
                "Append@{} prev={}@{} [{es}] commit={}",
                a.term, a.prev_log_index, a.prev_log_term, a.leader_commit
            )
        }
        Some(Body::AppendEntriesReply(r)) if r.heartbeat => {
            format!("HeartbeatReply@{} read={}", r.term, r.read_ctx)
        }
        Some(Body::AppendEntriesReply(r)) if r.success => {
            format!("AppendOk@{} match={}", r.term, r.match_index)
        }
        Some(Body::AppendEntriesReply(r)) => format!(
            "AppendReject@{} at={} hint={}@{} last={}",
            r.term, r.reject_index, r.conflict_index, r.conflict_term, r.last_log_index
        ),
        Some(Body::InstallSnapshot(x)) => format!(
            "Snapshot@{} {}@{} off={} len={}{}",
            x.term,
            x.last_included_index,
            x.last_included_term,
            x.offset,
            x.data.len(),
            if x.done { " done" } else { "" }
        ),
        Some(Body::InstallSnapshotReply(r)) => format!(
            "SnapshotReply@{} {} next={}{}",
            r.term,
            r.last_included_index,
            r.next_offset,
            if r.done { " done" } else { "" }
        ),
        Some(Body::TimeoutNow(t)) => format!("TimeoutNow@{}", t.term),
    };
    format!("n{} → n{} {body}", m.from, m.to)
}

/// A stable 64-bit hash for Log Matching checks (FNV-1a).
fn hash(data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in data {
        h = (h ^ *b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn encode_snapshot(applied: &BTreeMap<u64, Bytes>, last: u64) -> Bytes {
    let mut b = BytesMut::new();
    b.extend_from_slice(&last.to_le_bytes());
    for (i, d) in applied {
        b.extend_from_slice(&i.to_le_bytes());
        b.extend_from_slice(&(d.len() as u32).to_le_bytes());
        b.extend_from_slice(d);
    }
    b.freeze()
}

fn decode_snapshot(data: &Bytes) -> Option<(u64, BTreeMap<u64, Bytes>)> {
    let mut m = BTreeMap::new();
    let last = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
    let mut p = 8;
    while p < data.len() {
        let i = u64::from_le_bytes(data.get(p..p + 8)?.try_into().ok()?);
        let l = u32::from_le_bytes(data.get(p + 8..p + 12)?.try_into().ok()?) as usize;
        if p + 12 + l > data.len() {
            return None;
        }
        let d = data.slice(p + 12..p + 12 + l);
        m.insert(i, d);
        p += 12 + l;
    }
    Some((last, m))
}

/// The simulator's default node configuration: the crate defaults with small snapshot
/// chunks (so InstallSnapshot really is chunked) and a seed per node.
pub fn default_config(id: u64, peers: Vec<u64>) -> Config {
    let mut c = Config::new(id, peers);
    c.snapshot_chunk_bytes = 512;
    c
}

impl Sim {
    /// `n` nodes (ids 1..=n), all up and connected, reliable network.
    pub fn new(n: usize, seed: u64) -> Self {
        Self::with_config(n, seed, default_config)
    }

    /// Like [`Sim::new`] with a custom per-node configuration.
    pub fn with_config(
        n: usize,
        seed: u64,
        make_config: impl Fn(u64, Vec<u64>) -> Config + 'static,
    ) -> Self {
        Sim::with_storage(n, seed, make_config, |_| MemStorage::new())
    }
}

impl<S: SimStorage> Sim<S> {
    /// Like [`Sim::with_config`], with node `id`'s storage from `make_storage(id)`.
    pub fn with_storage(
        n: usize,
        seed: u64,
        make_config: impl Fn(u64, Vec<u64>) -> Config + 'static,
        make_storage: impl FnMut(u64) -> S,
    ) -> Self {
        let make_config = MakeConfig(Box::new(make_config));
        let mut sim = Sim {
            seed,
            rng: Rng::new(seed),
            now: 0,
            net: NetConfig::reliable(),
            snapshot_every: None,
            disk_latency: None,
            slow_disk: BTreeMap::new(),
            n,
            make_config,
            nodes: (0..n).map(|_| None).collect(),
            storages: (1..=n as u64).map(make_storage).collect(),
            connected: vec![true; n],
            blocked: BTreeSet::new(),
            events: BinaryHeap::new(),
            in_flight: HashMap::new(),
            next_seq: 0,
            incarnations: 0,
            crash_point: None,
            leaders: BTreeMap::new(),
            pairs: HashMap::new(),
            committed: vec![0],
            commit_terms: vec![u64::MAX],
            applied_global: BTreeMap::new(),
            reads: Vec::new(),
            read_required: HashMap::new(),
            votes: HashMap::new(),
            rpcs: 0,
            rpcs_by_link: BTreeMap::new(),
            appends_by_link: BTreeMap::new(),
            msgs: 0,
            bytes: 0,
            steps: 0,
            snapshot_chunks: 0,
            needless_snapshots: 0,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            trace_log: None,
            recording: record::recording_on().then(|| Recording::new(n, seed)),
        };
        for id in 1..=n as u64 {
            sim.start_node(id);
        }
        sim
    }

    /// Adds an event to the recording, if there is one (see [`crate::record`]).
    fn rec(&mut self, what: impl FnOnce() -> What) {
        if let Some(r) = &mut self.recording {
            r.push(self.now, what());
        }
    }

    /// Records the connectivity, if recording and it changed.
    fn rec_net(&mut self) {
        if let Some(r) = &mut self.recording {
            let disconnected = (1..=self.n as u64)
                .filter(|&id| !self.connected[Self::idx(id)])
                .collect();
            r.net(
                self.now,
                disconnected,
                self.blocked.iter().copied().collect(),
            );
        }
    }

    fn emit(&mut self, line: impl FnOnce() -> String) {
        if !self.trace && self.trace_log.is_none() {
            return;
        }
        let line = format!("{:>6} {}", self.now, line());
        if self.trace {
            eprintln!("{line}");
        }
        if let Some(log) = &mut self.trace_log {
            log.push(line);
        }
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Panics with the seed, so the run can be replayed.
    #[track_caller]
    pub fn fail(&self, msg: &str) -> ! {
        for (i, n) in self.nodes.iter().enumerate() {
            let id = i as u64 + 1;
            match n {
                Some(n) => eprintln!(
                    "  n{id} connected={} applied={} {:?} {:?}",
                    self.connected[i],
                    n.last_applied,
                    n.raw.status(),
                    n.raw.stats()
                ),
                None => eprintln!("  n{id} down"),
            }
        }
        panic!(
            "{msg} (t={} ms; replay with SEED={}: {})",
            self.now,
            self.seed,
            replay_command(self.seed)
        );
    }

    fn idx(id: u64) -> usize {
        (id - 1) as usize
    }

    fn start_node(&mut self, id: u64) {
        let peers: Vec<u64> = (1..=self.n as u64).collect();
        let mut cfg = (self.make_config.0)(id, peers);
        cfg.seed = self.rng.next_u64();
        if let Err(e) = self.storages[Self::idx(id)].restart() {
            self.fail(&format!("n{id} restart: {e}"));
        }
        let state = self.storages[Self::idx(id)]
            .load()
            .unwrap_or_else(|e| self.fail(&format!("load: {e}")));
        let raw = RawNode::new(cfg, state).unwrap_or_else(|e| self.fail(&format!("new: {e}")));
        self.incarnations += 1;
        let incarnation = self.incarnations;
        self.emit(|| format!("start   n{id}"));
        self.rec(|| What::Start { id });
        self.nodes[Self::idx(id)] = Some(SimNode {
            raw,
            incarnation,
            applied: BTreeMap::new(),
            last_applied: 0,
            checked_commit: 0,
            was_leader_in: None,
            disk: None,
            role: (Role::Follower, 0),
        });
        let phase = self.rng.range(1, TICK_MS + 1);
        self.push_event(self.now + phase, EventKind::Tick { id, incarnation });
        self.process(id);
    }

    fn push_event(&mut self, at: u64, kind: EventKind) {
        self.next_seq += 1;
        self.events.push(Reverse((at, self.next_seq, kind)));
    }

    // ------------------------------------------------------------ faults

    /// Cuts a node off from everyone (it keeps running).
    pub fn disconnect(&mut self, id: u64) {
        self.connected[Self::idx(id)] = false;
        self.rec_net();
    }
    /// Reconnects a node.
    pub fn connect(&mut self, id: u64) {
        self.connected[Self::idx(id)] = true;
        self.rec_net();
    }
    /// True if the node is connected.
    pub fn is_connected(&self, id: u64) -> bool {
        self.connected[Self::idx(id)]
    }
    /// Blocks the one-way link `from -> to`.
    pub fn block(&mut self, from: u64, to: u64) {
        self.blocked.insert((from, to));
        self.rec_net();
    }
    /// Heals every one-way block.
    pub fn unblock_all(&mut self) {
        self.blocked.clear();
        self.rec_net();
    }
    /// Only nodes in the same group can talk (all nodes stay "connected").
    pub fn partition(&mut self, groups: &[&[u64]]) {
        self.blocked.clear();
        for a in 1..=self.n as u64 {
            for b in 1..=self.n as u64 {
                let same = groups.iter().any(|g| g.contains(&a) && g.contains(&b));
                if a != b && !same {
                    self.blocked.insert((a, b));
                }
            }
        }
        self.rec_net();
    }
    /// Crashes a node: it loses everything it had not persisted.
    pub fn crash(&mut self, id: u64) {
        if self.nodes[Self::idx(id)].is_some() {
            self.emit(|| format!("crash   n{id}"));
            self.rec(|| What::Crash {
                id,
                why: "crashed".into(),
            });
        }
        self.nodes[Self::idx(id)] = None;
    }
    /// Crashes the node inside its next Ready, at `point`.
    pub fn crash_during_next_ready(&mut self, id: u64, point: CrashPoint) {
        self.crash_point = Some((id, point));
    }
    /// Cancels a pending [`Sim::crash_during_next_ready`].
    pub fn cancel_crash_point(&mut self) {
        self.crash_point = None;
    }
    /// Restarts a crashed node from its storage (crashing it first if it is up).
    pub fn restart(&mut self, id: u64) {
        self.crash(id);
        self.start_node(id);
    }
    /// True if the node is running.
    pub fn is_up(&self, id: u64) -> bool {
        self.nodes[Self::idx(id)].is_some()
    }

    // ------------------------------------------------------------ inspection

    /// The node's core, if it is up.
    pub fn raw(&self, id: u64) -> Option<&RawNode> {
        self.nodes[Self::idx(id)].as_ref().map(|n| &n.raw)
    }
    /// Largest persisted Raft state (hard state + log) over all nodes, in bytes.
    pub fn max_raft_state(&self) -> usize {
        self.storages
            .iter()
            .map(|s| s.raft_state_size())
            .max()
            .unwrap_or(0)
    }
    /// The node's storage.
    pub fn storage(&self, id: u64) -> &S {
        &self.storages[Self::idx(id)]
    }
    /// The node's storage, to change its fault settings.
    pub fn storage_mut(&mut self, id: u64) -> &mut S {
        &mut self.storages[Self::idx(id)]
    }
    /// Index of the last entry the node's service applied.
    pub fn last_applied(&self, id: u64) -> Option<u64> {
        self.nodes[Self::idx(id)].as_ref().map(|n| n.last_applied)
    }
    /// How many running nodes applied a command at `index`, and the command.
    pub fn n_committed(&self, index: u64) -> (usize, Option<Bytes>) {
        let mut count = 0;
        let mut cmd: Option<Bytes> = None;
        for n in self.nodes.iter().flatten() {
            if let Some(d) = n.applied.get(&index) {
                if let Some(c) = &cmd
                    && c != d
                {
                    self.fail(&format!("nodes applied different commands at {index}"));
                }
                count += 1;
                cmd = Some(d.clone());
            }
        }
        (count, cmd)
    }

    // ------------------------------------------------------------ running

    /// Runs the cluster for `ms` simulated milliseconds.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.now + ms;
        while let Some(Reverse((at, _, _))) = self.events.peek() {
            if *at > until {
                break;
            }
            let Some(Reverse((at, _, kind))) = self.events.pop() else {
                break;
            };
            self.now = at;
            self.steps += 1;
            match kind {
                EventKind::Tick { id, incarnation } => {
                    let Some(node) = self.nodes[Self::idx(id)].as_mut() else {
                        continue;
                    };
                    if node.incarnation != incarnation {
                        continue;
                    }
                    node.raw.tick();
                    self.push_event(at + TICK_MS, EventKind::Tick { id, incarnation });
                    self.process(id);
                }
                EventKind::Disk { id, incarnation } => self.disk_done(id, incarnation),
                EventKind::Deliver { seq } => {
                    let Some(m) = self.in_flight.remove(&seq) else {
                        continue;
                    };
                    if !self.link_ok(m.from, m.to) {
                        if let Some(r) = &mut self.recording {
                            r.arrive(at, seq, Some("link cut"));
                        }
                        continue;
                    }
                    let to = m.to;
                    self.emit(|| format!("deliver {}", describe(&m)));
                    if let Some(r) = &mut self.recording {
                        let up = self.nodes[Self::idx(to)].is_some();
                        r.arrive(at, seq, (!up).then_some("node down"));
                    }
                    let Some(node) = self.nodes[Self::idx(to)].as_mut() else {
                        continue;
                    };
                    if let Some(Body::InstallSnapshot(x)) = &m.body
                        && x.offset == 0
                        && (node.raw.log_term(x.last_included_index) == Some(x.last_included_term)
                            || node.raw.status().commit >= x.last_included_index)
                    {
                        self.needless_snapshots += 1;
                    }
                    node.raw.step(m);
                    self.process(to);
                }
            }
        }
        self.now = until;
    }

    fn link_ok(&self, from: u64, to: u64) -> bool {
        from >= 1
            && to >= 1
            && from as usize <= self.n
            && to as usize <= self.n
            && self.connected[Self::idx(from)]
            && self.connected[Self::idx(to)]
            && !self.blocked.contains(&(from, to))
    }

    /// Injects a raw message (bad input tests); delivered after the usual delay.
    pub fn inject(&mut self, m: RaftMessage) {
        let to = m.to;
        if to >= 1
            && to as usize <= self.n
            && let Some(node) = self.nodes[Self::idx(to)].as_mut()
        {
            node.raw.step(m);
            self.process(to);
        }
    }

    fn send(&mut self, m: RaftMessage) {
        self.msgs += 1;
        self.bytes += m.encoded_len() as u64;
        let request = matches!(
            m.body,
            Some(Body::RequestVote(_) | Body::AppendEntries(_) | Body::InstallSnapshot(_))
        );
        if request {
            self.rpcs += 1;
            *self.rpcs_by_link.entry((m.from, m.to)).or_default() += 1;
        }
        if matches!(m.body, Some(Body::InstallSnapshot(_))) {
            self.snapshot_chunks += 1;
        }
        if matches!(&m.body, Some(Body::AppendEntries(a)) if !a.heartbeat) {
            *self.appends_by_link.entry((m.from, m.to)).or_default() += 1;
        }
        let cut = !self.link_ok(m.from, m.to);
        if cut || self.rng.chance(self.net.drop) {
            self.emit(|| format!("drop    {}", describe(&m)));
            if let Some(r) = &mut self.recording {
                let why = if cut { "link cut" } else { "random loss" };
                r.send(self.now, &m, describe(&m), &[], why);
            }
            return;
        }
        let copies = if self.rng.chance(self.net.duplicate) {
            2
        } else {
            1
        };
        let mut due = Vec::new();
        for _ in 0..copies {
            let delay = if !request && self.rng.chance(self.net.long_reorder) {
                self.rng
                    .range(self.net.long_delay.0, self.net.long_delay.1 + 1)
            } else {
                self.rng.range(self.net.delay.0, self.net.delay.1 + 1)
            };
            self.next_seq += 1;
            let seq = self.next_seq;
            self.in_flight.insert(seq, m.clone());
            self.push_event(self.now + delay, EventKind::Deliver { seq });
            due.push((seq, self.now + delay));
        }
        if let Some(r) = &mut self.recording {
            r.send(self.now, &m, describe(&m), &due, "");
        }
    }

    /// Proposes `cmd` on node `id`; returns (index, term) if it leads.
    pub fn start(&mut self, id: u64, cmd: Bytes) -> Option<(u64, u64)> {
        let node = self.nodes[Self::idx(id)].as_mut()?;
        let r = node.raw.propose(cmd).ok();
        self.rec(|| What::Propose { id, at: r });
        self.process(id);
        r
    }

    /// Proposes a membership change on node `id` (see `RawNode::propose_conf_change`).
    /// `None` if the node is down. If the core accepts, the checker verifies that it was
    /// allowed to: this leader had committed an entry of its own term, and its log held no
    /// uncommitted ConfChange entry.
    pub fn propose_conf_change(
        &mut self,
        id: u64,
        cc: ConfChange,
    ) -> Option<Result<(u64, u64), raft::Error>> {
        let node = self.nodes[Self::idx(id)].as_mut()?;
        let st = node.raw.status();
        let own_term_committed = node.raw.log_term(st.commit) == Some(st.term);
        let uncommitted_change = (st.commit + 1..=st.last_index).find(|&i| {
            node.raw
                .log_entry(i)
                .is_some_and(|e| e.entry_type == EntryType::EntryConfChange as i32)
        });
        let r = node.raw.propose_conf_change(cc.clone());
        if r.is_ok() {
            if !own_term_committed {
                self.fail(&format!(
                    "n{id} accepted a membership change in term {} before committing an \
                     entry of that term",
                    st.term
                ));
            }
            if let Some(i) = uncommitted_change {
                self.fail(&format!(
                    "n{id} accepted a membership change while the one at {i} is uncommitted"
                ));
            }
        }
        self.emit(|| format!("confchg n{id} {cc:?} -> {r:?}"));
        self.process(id);
        Some(r)
    }

    /// Asks node `id` to hand leadership to `target`; `None` if the node is down.
    pub fn transfer_leader(&mut self, id: u64, target: u64) -> Option<Result<(), raft::Error>> {
        let node = self.nodes[Self::idx(id)].as_mut()?;
        let r = node.raw.transfer_leader(target);
        self.emit(|| format!("transfer n{id} -> n{target}: {r:?}"));
        self.process(id);
        Some(r)
    }

    /// Asks node `id` for a read index with `ctx`; the answer comes in `read_states`.
    pub fn read_index(&mut self, id: u64, ctx: u64) -> bool {
        let Some(node) = self.nodes[Self::idx(id)].as_mut() else {
            return false;
        };
        let ok = node.raw.read_index(ctx).is_ok();
        self.rec(|| What::Read { id, ctx });
        let required = self.max_committed();
        self.read_required.insert((id, ctx), required);
        self.process(id);
        ok
    }

    /// ReadIndex answers received so far, per node: (node, ctx, index).
    pub fn read_states(&self) -> &[(u64, u64, u64)] {
        &self.reads
    }

    /// Handles every Ready of node `id`, checking as it goes.
    fn process(&mut self, id: u64) {
        let i = Self::idx(id);
        let Some(mut node) = self.nodes[i].take() else {
            return;
        };
        while node.disk.is_none() && node.raw.has_ready() {
            let rd = node.raw.ready();
            self.check_ready(id, &node, &rd);
            if self.disk_latency.is_none() && self.slow_disk.is_empty() {
                let asks = rd
                    .persisted_messages
                    .iter()
                    .any(|m| matches!(&m.body, Some(Body::RequestVote(r)) if r.candidate_id == id));
                let commit = node.raw.status().commit;
                if asks
                    && !conf_of(&node.raw).0.contains(&id)
                    && !conf_of_upto(&node.raw, commit).0.contains(&id)
                {
                    self.fail(&format!(
                        "n{id} asks for votes but is a voter neither in its configuration nor \
                         in the one at its commit index {commit}"
                    ));
                }
            }
            // Leader traffic may go before (and while) the Ready is persisted.
            for m in &rd.messages {
                self.check_durable(id, m);
                self.send(m.clone());
            }
            if let Some(&(lo, hi)) = self.slow_disk.get(&id).or(self.disk_latency.as_ref()) {
                // A slow disk: the node keeps stepping and ticking while this Ready is
                // being persisted; the next Ready waits for it.
                let at = self.now + self.rng.range(lo, hi + 1);
                let incarnation = node.incarnation;
                node.disk = Some(rd);
                self.push_event(at, EventKind::Disk { id, incarnation });
                break;
            }
            if !self.finish_ready(id, &mut node, rd) {
                return; // crashed
            }
        }
        if node.disk.is_some() {
            // A pipelined driver (raft's `Node` when it leads) sends the leader traffic
            // stepped while its disk write is in flight at once: new entries go to the
            // followers before the leader's own copy is durable (thesis §10.2.1).
            for m in node.raw.take_early_messages() {
                self.check_durable(id, &m);
                self.send(m);
            }
        }
        self.check_node(id, &mut node);
        self.nodes[i] = Some(node);
    }

    /// Persists `rd`, sends what waited for it, applies, advances. False if the node
    /// crashed on the way (it is then gone).
    fn finish_ready(&mut self, id: u64, node: &mut SimNode, rd: Ready) -> bool {
        let i = Self::idx(id);
        let crash = match self.crash_point {
            Some((c, p)) if c == id => {
                self.crash_point = None;
                Some(p)
            }
            _ => None,
        };
        if crash == Some(CrashPoint::BeforePersist) {
            self.rec(|| What::Crash {
                id,
                why: "crashed before persisting its Ready".into(),
            });
            return false; // nothing of this Ready persisted
        }
        if let Err(e) =
            self.storages[i].persist(rd.hard_state.as_ref(), rd.snapshot.as_ref(), &rd.entries)
        {
            // The driver stops a node whose storage fails (a simulated power cut in the
            // middle of a write): a crash at this point.
            self.emit(|| format!("crash   n{id} (storage: {e})"));
            self.rec(|| What::Crash {
                id,
                why: format!("storage: {e}"),
            });
            return false;
        }
        if let Some(s) = &rd.snapshot {
            self.rec(|| What::Snapshot {
                id,
                index: s.index,
                term: s.term,
            });
        }
        if !rd.entries.is_empty() {
            self.rec(|| What::Append {
                id,
                entries: rd
                    .entries
                    .iter()
                    .map(|e| EntryMark {
                        index: e.index,
                        term: e.term,
                        noop: e.is_noop(),
                    })
                    .collect(),
            });
        }
        if crash == Some(CrashPoint::AfterPersist) {
            self.rec(|| What::Crash {
                id,
                why: "crashed after persisting its Ready, before sending".into(),
            });
            return false;
        }
        for m in &rd.persisted_messages {
            self.check_durable(id, m);
            self.send(m.clone());
        }
        self.apply(id, node, &rd);
        for r in &rd.read_states {
            // Linearizable reads: the read point covers everything committed anywhere
            // before the request.
            if let Some(req) = self.read_required.remove(&(id, r.ctx))
                && r.index < req
            {
                self.fail(&format!(
                    "n{id} read {} at index {} but {req} was committed before",
                    r.ctx, r.index
                ));
            }
            self.reads.push((id, r.ctx, r.index));
            self.rec(|| What::ReadState {
                id,
                ctx: r.ctx,
                index: r.index,
            });
        }
        node.raw.advance(&rd);
        true
    }

    /// A node speaks only in a term it has persisted, and grants or asks for a vote only
    /// once that vote is persisted: otherwise a crash could make it take back what it said
    /// (vote twice in a term, or fall back to an older term and accept a deposed leader's
    /// entries over ones it acknowledged).
    fn check_durable(&mut self, id: u64, m: &RaftMessage) {
        let hs = self.storages[Self::idx(id)].hard_state();
        let (term, vote_for) = match &m.body {
            // A PreVote request asks about the next term; a granted PreVote echoes it.
            Some(Body::RequestVote(r)) if r.pre_vote => (r.term.saturating_sub(1), None),
            Some(Body::RequestVoteReply(r)) if r.pre_vote && r.vote_granted => return,
            Some(Body::RequestVote(r)) => (r.term, Some(m.from)),
            Some(Body::RequestVoteReply(r)) if r.vote_granted => (r.term, Some(m.to)),
            Some(Body::RequestVoteReply(r)) => (r.term, None),
            Some(Body::AppendEntries(r)) => (r.term, None),
            Some(Body::AppendEntriesReply(r)) => (r.term, None),
            Some(Body::InstallSnapshot(r)) => (r.term, None),
            Some(Body::InstallSnapshotReply(r)) => (r.term, None),
            Some(Body::TimeoutNow(r)) => (r.term, None),
            None => return,
        };
        self.check_ack_durable(id, m);
        if term > hs.term {
            self.fail(&format!(
                "n{id} sends in term {term} but persisted only term {}: {}",
                hs.term,
                describe(m)
            ));
        }
        // (A vote from a term the node has since left is harmless: it can never act in
        // that term again.)
        if let Some(v) = vote_for
            && hs.term == term
            && hs.vote != v
        {
            self.fail(&format!(
                "n{id} sends {} but persisted vote {} in term {}",
                describe(m),
                hs.vote,
                hs.term
            ));
        }
        // One vote per term per node, across crashes and restarts (§5.2; what the
        // persisted vote is for).
        if let Some(v) = vote_for {
            match self.votes.insert((id, term), v) {
                Some(old) if old != v => self.fail(&format!(
                    "n{id} voted twice in term {term}: for n{old}, then for n{v}"
                )),
                _ => {}
            }
        }
    }

    /// An AppendEntries success reply with `match_index = k` tells the leader that this
    /// node's log matches the leader's through `k`, and the leader counts it toward a
    /// commit (§5.3, §5.4.2). So the node's storage must hold those entries when the reply
    /// goes out: a crash right after the send must not take back what was acknowledged
    /// (the leader could then have committed an entry on a minority of disks).
    fn check_ack_durable(&self, id: u64, m: &RaftMessage) {
        let Some(Body::AppendEntriesReply(r)) = &m.body else {
            return;
        };
        if !r.success || r.heartbeat || r.match_index == 0 {
            return;
        }
        let k = r.match_index;
        let (last, stored) = self.storages[Self::idx(id)].last_index_and_term(k);
        if k > last {
            self.fail(&format!(
                "n{id} acknowledges entries through {k} but its storage holds only through \
                 {last}: {}",
                describe(m)
            ));
        }
        let Some(stored) = stored else {
            return; // inside the persisted snapshot: committed entries
        };
        // The leader of the reply's term, while it still leads that term, has an
        // append-only log: its entry at `k` is the one acknowledged.
        let leader_term = self
            .leaders
            .get(&r.term)
            .and_then(|&l| self.raw(l))
            .filter(|l| l.is_leader() && l.term() == r.term)
            .and_then(|l| l.log_term(k));
        if let Some(t) = leader_term
            && t != stored
        {
            self.fail(&format!(
                "n{id} acknowledges {k} for the leader of term {} (entry term {t}) but its \
                 storage holds term {stored} there: {}",
                r.term,
                describe(m)
            ));
        }
    }

    fn disk_done(&mut self, id: u64, incarnation: u64) {
        let i = Self::idx(id);
        let Some(mut node) = self.nodes[i].take() else {
            return;
        };
        if node.incarnation != incarnation {
            self.nodes[i] = Some(node);
            return;
        }
        let Some(rd) = node.disk.take() else {
            self.nodes[i] = Some(node);
            return;
        };
        if !self.finish_ready(id, &mut node, rd) {
            return; // crashed
        }
        self.nodes[i] = Some(node);
        self.process(id);
    }

    fn apply(&mut self, id: u64, node: &mut SimNode, rd: &Ready) {
        if let Some(s) = &rd.apply_snapshot {
            if s.index <= node.last_applied {
                self.fail(&format!(
                    "n{id} applies snapshot {} after applying {}",
                    s.index, node.last_applied
                ));
            }
            let Some((last, map)) = decode_snapshot(&s.data) else {
                self.fail(&format!("n{id} got a corrupt snapshot at {}", s.index));
            };
            if last != s.index {
                self.fail(&format!("snapshot data for {last} labelled {}", s.index));
            }
            for (i, d) in &map {
                self.check_applied(id, *i, d);
            }
            node.applied = map;
            node.last_applied = s.index;
        }
        for e in &rd.committed_entries {
            if e.index != node.last_applied + 1 {
                self.fail(&format!(
                    "n{id} applies {} after {} (gap or repeat)",
                    e.index, node.last_applied
                ));
            }
            node.last_applied = e.index;
            if e.entry_type != EntryType::EntryNormal as i32 {
                self.check_applied(id, e.index, &Bytes::from_static(b"\0noop"));
                continue;
            }
            self.check_applied(id, e.index, &e.data);
            node.applied.insert(e.index, e.data.clone());
            if let Some(every) = self.snapshot_every
                && e.index % every == 0
            {
                let data = encode_snapshot(&node.applied, e.index);
                if let Err(err) = node.raw.snapshot(e.index, data) {
                    self.fail(&format!("n{id} snapshot at {}: {err}", e.index));
                }
            }
        }
    }

    fn check_applied(&mut self, id: u64, index: u64, data: &Bytes) {
        match self.applied_global.get(&index) {
            Some(d) if d != data => {
                self.fail(&format!("n{id} applied a different command at {index}"))
            }
            Some(_) => {}
            None => {
                self.applied_global.insert(index, data.clone());
            }
        }
    }

    fn committed_term(&self, index: u64) -> Option<u64> {
        self.committed
            .get(index as usize)
            .copied()
            .filter(|&t| t > 0)
    }

    fn check_ready(&mut self, id: u64, node: &SimNode, rd: &Ready) {
        if let Some(s) = &rd.snapshot
            && let Some(t) = self.committed_term(s.index)
            && t != s.term
        {
            self.fail(&format!(
                "n{id} snapshot at {} has term {} != committed {t}",
                s.index, s.term
            ));
        }
        for e in &rd.entries {
            let prev_term = node.raw.log_term(e.index - 1).unwrap_or(0);
            let key = (e.index, e.term);
            let val = (hash(&e.data), prev_term);
            match self.pairs.get(&key) {
                Some(v) if *v != val => self.fail(&format!(
                    "Log Matching violated at index {} term {} on n{id}",
                    e.index, e.term
                )),
                Some(_) => {}
                None => {
                    self.pairs.insert(key, val);
                }
            }
            // A lagging node may hold (and even receive) stale entries at indexes it does not
            // yet know are committed; rewriting one it knew committed is a violation.
            if e.index <= node.checked_commit
                && let Some(t) = self.committed_term(e.index)
                && t != e.term
            {
                self.fail(&format!(
                    "n{id} overwrites committed index {} (term {t}) with term {}",
                    e.index, e.term
                ));
            }
        }
    }

    fn check_node(&mut self, id: u64, node: &mut SimNode) {
        let st = node.raw.status();
        if node.role != (st.role, st.term) {
            self.emit(|| format!("role    n{id} {:?}@{}", st.role, st.term));
            self.rec(|| What::Role {
                id,
                role: st.role,
                term: st.term,
            });
        }
        if let Some(r) = &mut self.recording {
            let marks = Marks {
                last: st.last_index,
                commit: st.commit,
                applied: node.last_applied,
                snapshot: st.snapshot_index,
            };
            r.marks(self.now, id, marks);
        }
        node.role = (st.role, st.term);
        if node.raw.is_leader() {
            match self.leaders.get(&st.term) {
                Some(&l) if l != id => {
                    self.fail(&format!("two leaders in term {}: n{l} and n{id}", st.term))
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(st.term, id);
                }
            }
            if node.was_leader_in != Some(st.term) {
                node.was_leader_in = Some(st.term);
                // Election by a majority of the configuration in effect (§4.1): count the
                // granted votes this leader's voters sent for it in this term.
                let (voters, _) = conf_of(&node.raw);
                let granted = voters
                    .iter()
                    .filter(|&&v| v == id || self.votes.get(&(v, st.term)) == Some(&id))
                    .count();
                if granted < voters.len() / 2 + 1 {
                    self.fail(&format!(
                        "n{id} leads term {} with votes of {granted} of voters {voters:?}",
                        st.term
                    ));
                }
                // Leader Completeness (§5.4.3): the leader of term T holds every entry
                // committed in a term before T. (A stale election in a lower term can
                // complete after a later commit; that leader need not hold it.)
                for i in st.snapshot_index + 1..self.committed.len() as u64 {
                    if let Some(t) = self.committed_term(i)
                        && self.commit_terms[i as usize] < st.term
                        && node.raw.log_term(i) != Some(t)
                    {
                        self.fail(&format!(
                            "new leader n{id} (term {}) lacks committed entry {i}",
                            st.term
                        ));
                    }
                }
            }
        }
        // A leader's commit needs the entry durable on a majority of the voters of its
        // configuration (a leader being removed does not count itself).
        if node.raw.is_leader()
            && st.commit > node.checked_commit
            && let Some(t) = node.raw.log_term(st.commit)
        {
            let (voters, _) = conf_of(&node.raw);
            let holders = voters
                .iter()
                .filter(|&&v| {
                    let (last, term) = self.storages[Self::idx(v)].last_index_and_term(st.commit);
                    term == Some(t) || (term.is_none() && st.commit <= last)
                })
                .count();
            if holders < voters.len() / 2 + 1 {
                self.fail(&format!(
                    "n{id} committed {} in term {} with the entry durable on only {holders} of \
                     voters {voters:?}",
                    st.commit, st.term
                ));
            }
        }
        // Every entry through the commit index agrees with the committed history.
        let from = node.checked_commit.max(st.snapshot_index) + 1;
        for i in from..=st.commit {
            let Some(t) = node.raw.log_term(i) else {
                self.fail(&format!("n{id} committed {i} but has no entry"));
            };
            if (self.committed.len() as u64) <= i {
                self.committed.resize(i as usize + 1, 0);
                self.commit_terms.resize(i as usize + 1, u64::MAX);
            }
            // The term in which the entry became committed: the lowest term of any node
            // seen knowing it committed (the committing leader is the first, in its term).
            let ct = &mut self.commit_terms[i as usize];
            *ct = (*ct).min(st.term);
            match self.committed[i as usize] {
                0 => self.committed[i as usize] = t,
                c if c != t => self.fail(&format!(
                    "committed entry {i} changed: term {c} then {t} on n{id}"
                )),
                _ => {}
            }
        }
        node.checked_commit = node.checked_commit.max(st.commit);
    }

    // ------------------------------------------------------------ lab helpers

    /// The lab's checkOneLeader: polls up to 10 times, 450-550 ms apart, for a leader in
    /// the latest term among connected nodes; fails on two leaders in a term.
    pub fn check_one_leader(&mut self) -> u64 {
        for _ in 0..10 {
            let ms = self.rng.range(450, 551);
            self.run_for(ms);
            let mut by_term: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for id in 1..=self.n as u64 {
                if let Some(r) = self.raw(id)
                    && self.is_connected(id)
                    && r.is_leader()
                {
                    by_term.entry(r.term()).or_default().push(id);
                }
            }
            for (t, ls) in &by_term {
                if ls.len() > 1 {
                    self.fail(&format!("term {t} has {} leaders", ls.len()));
                }
            }
            if let Some((_, ls)) = by_term.iter().next_back() {
                return ls[0];
            }
        }
        self.fail("expected one leader, got none");
    }

    /// The lab's checkTerms: all connected nodes agree on the term.
    pub fn check_terms(&self) -> u64 {
        let mut term = None;
        for id in 1..=self.n as u64 {
            if let Some(r) = self.raw(id)
                && self.is_connected(id)
            {
                match term {
                    None => term = Some(r.term()),
                    Some(t) if t != r.term() => self.fail("servers disagree on term"),
                    _ => {}
                }
            }
        }
        term.unwrap_or(0)
    }

    /// The lab's checkNoLeader: no connected node thinks it leads.
    pub fn check_no_leader(&self) {
        for id in 1..=self.n as u64 {
            if let Some(r) = self.raw(id)
                && self.is_connected(id)
                && r.is_leader()
            {
                self.fail(&format!("n{id} leads but none expected"));
            }
        }
    }

    /// The lab's one(): submits `cmd` to a leader, retrying for up to 10 s, and waits until
    /// `expected` nodes applied it. Returns its index.
    pub fn one(&mut self, cmd: Bytes, expected: usize, retry: bool) -> u64 {
        let t0 = self.now;
        let mut starts = 0u64;
        while self.now - t0 < 10_000 {
            let mut index = None;
            for _ in 0..self.n {
                starts = starts % self.n as u64 + 1;
                if self.is_up(starts)
                    && self.is_connected(starts)
                    && let Some((i, _)) = self.start(starts, cmd.clone())
                {
                    index = Some(i);
                    break;
                }
            }
            if let Some(index) = index {
                let t1 = self.now;
                while self.now - t1 < 2_000 {
                    let (nd, c) = self.n_committed(index);
                    if nd > 0 && nd >= expected && c.as_ref() == Some(&cmd) {
                        return index;
                    }
                    self.run_for(20);
                }
                if !retry {
                    self.fail(&format!("one({cmd:?}) failed to reach agreement"));
                }
            } else {
                self.run_for(50);
            }
        }
        self.fail(&format!("one({cmd:?}) failed to reach agreement in 10 s"));
    }

    /// The lab's wait(): waits for `n` nodes to apply `index`; `None` if a term passed
    /// `start_term` meanwhile (the command may never commit).
    pub fn wait(&mut self, index: u64, n: usize, start_term: Option<u64>) -> Option<Bytes> {
        let mut to = 10;
        for _ in 0..30 {
            let (nd, c) = self.n_committed(index);
            if nd >= n {
                return c;
            }
            self.run_for(to);
            if to < 1000 {
                to *= 2;
            }
            if let Some(st) = start_term {
                for id in 1..=self.n as u64 {
                    if self.raw(id).is_some_and(|r| r.term() > st) {
                        return None;
                    }
                }
            }
        }
        let (nd, c) = self.n_committed(index);
        if nd < n {
            self.fail(&format!("only {nd} decided for index {index}; wanted {n}"));
        }
        c
    }

    /// The index of the last entry known committed by any node.
    pub fn max_committed(&self) -> u64 {
        self.committed.len() as u64 - 1
    }
}

impl Sim<MemStorage> {
    /// Crashes a node and restarts it with empty storage, as if its disk had been replaced:
    /// it has forgotten its term, its vote and every entry it acknowledged. Raft assumes
    /// this never happens to a voter (it can break safety); tests use it to check that the
    /// leader notices a follower whose log went backwards and catches it up.
    pub fn restart_with_empty_disk(&mut self, id: u64) {
        self.crash(id);
        self.storages[Self::idx(id)] = MemStorage::new();
        self.rec(|| What::Wipe { id });
        // The node forgot its votes with its disk: a second vote in a term it voted in
        // before is what this fault does, not a bug the one-vote check should report.
        self.votes.retain(|&(voter, _), _| voter != id);
        self.start_node(id);
    }
}

impl<S: SimStorage> Drop for Sim<S> {
    fn drop(&mut self) {
        if let Some(mut r) = self.recording.take() {
            r.end = r.end.max(self.now);
            record::hand_back(r);
        }
        if std::thread::panicking() {
            eprintln!(
                "simulation failed; replay with SEED={}: {}",
                self.seed,
                replay_command(self.seed)
            );
        }
    }
}

/// The configuration in effect on `raw` as the checker sees it: (voters, learners),
/// recomputed from the node's snapshot configuration and every ConfChange entry in its
/// log (a change takes effect when appended, thesis §4.1). Written apart from the core's
/// own bookkeeping so that a bug there does not hide itself.
pub fn conf_of(raw: &RawNode) -> (BTreeSet<u64>, BTreeSet<u64>) {
    conf_of_upto(raw, u64::MAX)
}

/// Like [`conf_of`], counting only the ConfChange entries through `upto` (the
/// configuration in effect at that index, if it is not before the snapshot).
pub fn conf_of_upto(raw: &RawNode, upto: u64) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let snap = raw.snapshot_conf_state();
    let mut voters: BTreeSet<u64> = snap.voters.iter().copied().collect();
    let mut learners: BTreeSet<u64> = snap.learners.iter().copied().collect();
    let st = raw.status();
    for i in st.first_index..=st.last_index.min(upto) {
        let Some(e) = raw.log_entry(i) else { continue };
        if e.entry_type != EntryType::EntryConfChange as i32 {
            continue;
        }
        let Ok(cc) = ConfChange::decode(e.data.clone()) else {
            continue;
        };
        let id = cc.node_id;
        match ConfChangeType::try_from(cc.change_type) {
            Ok(ConfChangeType::ConfChangeAddLearner)
                if id != 0 && !voters.contains(&id) && !learners.contains(&id) =>
            {
                learners.insert(id);
            }
            Ok(ConfChangeType::ConfChangePromoteLearner) if learners.remove(&id) => {
                voters.insert(id);
            }
            Ok(ConfChangeType::ConfChangeRemoveNode) => {
                if !(voters.len() == 1 && voters.contains(&id)) {
                    voters.remove(&id);
                }
                learners.remove(&id);
            }
            _ => {}
        }
    }
    (voters, learners)
}

/// A command of 8 random bytes from the simulation's RNG.
pub fn rand_cmd<S: SimStorage>(sim: &mut Sim<S>) -> Bytes {
    Bytes::copy_from_slice(&sim.rng.next_u64().to_le_bytes())
}
