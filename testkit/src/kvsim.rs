//! A deterministic simulator of a whole key-value cluster: Raft cores
//! ([`raft::RawNode`]) with the kvserver's apply-loop logic ([`kvserver::Machine`]) as
//! their state machine, and simulated Clerks (random client id, a sequence number per
//! write, retries across servers with the same sequence number), all on one thread in
//! simulated milliseconds, every random choice from one seeded RNG ([`Rng`]): a seed
//! replays a run exactly.
//!
//! The servers do what `kvserver::KvNode` does, in the same order: validate, propose (or
//! start a ReadIndex round), register the request with the [`Machine`] under its index,
//! answer when applied; WRONG_LEADER at once when the index went to another command or the
//! node stopped leading; snapshots once the persisted Raft state passes `max_raft_state`;
//! restore from the stored snapshot on restart and from an installed one.
//!
//! Checked after every event: at most one leader per term; no two nodes apply different
//! commands at one index; a node applies indexes in order without gaps. Every completed
//! Clerk operation is recorded ([`KvSim::history`]) with simulated invoke and return times
//! for the tests' own checks.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use bytes::Bytes;
use kvserver::{Machine, WriteResult};
use proto::Message;
use proto::kv::{Command, CommandOp, ErrorCode};
use raft::{Config, MemStorage, RaftMessage, RawNode};

use crate::sim::SimStorage;

use crate::sim::{NetConfig, Rng, TICK_MS, describe};

/// A Clerk operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Get(key).
    Get(Bytes),
    /// Put(key, value).
    Put(Bytes, Bytes),
    /// Append(key, value).
    Append(Bytes, Bytes),
    /// Delete(key).
    Delete(Bytes),
}

impl Op {
    fn key(&self) -> &Bytes {
        match self {
            Op::Get(k) | Op::Put(k, _) | Op::Append(k, _) | Op::Delete(k) => k,
        }
    }
}

/// What an operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// A Get's value (`None`: NO_KEY).
    Value(Option<Bytes>),
    /// A write applied (Delete: whether the key existed).
    Written {
        /// Delete only.
        existed: bool,
    },
    /// Refused before any proposal (INVALID_ARGUMENT), with the server's text.
    Invalid(String),
}

/// One completed operation.
#[derive(Clone, Debug)]
pub struct Record {
    /// Clerk index.
    pub clerk: usize,
    /// The operation.
    pub op: Op,
    /// Simulated ms when the Clerk was asked.
    pub invoke: u64,
    /// Simulated ms when it returned.
    pub ret: u64,
    /// Its result.
    pub result: OpResult,
}

#[derive(Clone, Debug)]
enum Msg {
    Raft(RaftMessage),
    Request {
        clerk: usize,
        req: u64,
        server: u64,
        op: Op,
        client_id: u64,
        seq: u64,
    },
    Reply {
        clerk: usize,
        req: u64,
        server: u64,
        err: ErrorCode,
        hint: u64,
        value: Option<Bytes>,
        existed: bool,
        text: String,
    },
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Tick { id: u64, incarnation: u64 },
    Deliver { seq: u64 },
    ClerkTimeout { clerk: usize, req: u64 },
    ClerkSend { clerk: usize, req: u64 },
}

/// A request waiting in a server: who to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Handle {
    clerk: usize,
    req: u64,
}

#[derive(Debug)]
struct Server {
    raw: RawNode,
    incarnation: u64,
    machine: Machine<Handle, Handle>,
    /// ReadIndex rounds not yet confirmed: ctx → (key, handle).
    reads: BTreeMap<u64, (Bytes, Handle)>,
    next_ctx: u64,
    /// Term this node led at the last check (0: not leading).
    led_term: u64,
}

#[derive(Debug)]
struct Clerk {
    client_id: u64,
    seq: u64,
    leader: u64,
    /// The operation in progress: (req id, op, seq, invoke time, attempts).
    current: Option<(u64, Op, u64, u64, u64)>,
    next_req: u64,
    /// Servers this Clerk can reach.
    reach: Vec<bool>,
}

/// Simulated ms a Clerk waits for a reply before trying the next server.
pub const CLERK_TIMEOUT_MS: u64 = 500;

/// A simulated key-value cluster and its Clerks.
#[derive(Debug)]
pub struct KvSim<S: SimStorage = MemStorage> {
    /// The seed this run replays from.
    pub seed: u64,
    /// The one RNG.
    pub rng: Rng,
    /// Simulated time in ms.
    pub now: u64,
    /// Network behaviour (also for Clerk traffic).
    pub net: NetConfig,
    /// Snapshot once a node's persisted Raft state passes this many bytes (`None`: never).
    pub max_raft_state: Option<usize>,
    /// Largest value accepted.
    pub max_value_bytes: usize,
    n: usize,
    servers: Vec<Option<Server>>,
    storages: Vec<S>,
    /// Partition group of each server (servers talk only within a group).
    group: Vec<u32>,
    clerks: Vec<Clerk>,
    events: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    in_flight: HashMap<u64, Msg>,
    next_seq: u64,
    incarnations: u64,
    leaders: BTreeMap<u64, u64>,
    applied_global: HashMap<u64, Bytes>,
    last_applied: Vec<u64>,
    /// Completed operations, in completion order.
    pub history: Vec<Record>,
    /// Largest persisted Raft state seen on any node, in bytes.
    pub max_raft_state_seen: usize,
    /// Snapshots taken.
    pub snapshots: u64,
    trace: bool,
}

impl KvSim {
    /// `n` servers (ids 1..=n) on [`MemStorage`], all up and connected, a reliable
    /// network, no Clerks.
    pub fn new(n: usize, seed: u64) -> Self {
        KvSim::with_storage(n, seed, |_| MemStorage::new())
    }
}

impl<S: SimStorage> KvSim<S> {
    /// `n` servers (ids 1..=n), each on the storage `make_storage(id)` gives (for example
    /// [`crate::disk::SimDisk`], whose power losses the servers then live through), all up
    /// and connected, a reliable network, no Clerks.
    pub fn with_storage(n: usize, seed: u64, make_storage: impl FnMut(u64) -> S) -> Self {
        let mut s = KvSim {
            seed,
            rng: Rng::new(seed),
            now: 0,
            net: NetConfig::reliable(),
            max_raft_state: None,
            max_value_bytes: kvserver::DEFAULT_MAX_VALUE_BYTES,
            n,
            servers: (0..n).map(|_| None).collect(),
            storages: (1..=n as u64).map(make_storage).collect(),
            group: vec![0; n],
            clerks: Vec::new(),
            events: BinaryHeap::new(),
            in_flight: HashMap::new(),
            next_seq: 0,
            incarnations: 0,
            leaders: BTreeMap::new(),
            applied_global: HashMap::new(),
            last_applied: vec![0; n],
            history: Vec::new(),
            max_raft_state_seen: 0,
            snapshots: 0,
            trace: std::env::var_os("SIM_TRACE").is_some(),
        };
        for id in 1..=n as u64 {
            s.start_server(id);
        }
        s
    }

    /// Number of servers.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Panics with the seed and the replay hint.
    #[track_caller]
    pub fn fail(&self, msg: &str) -> ! {
        for (i, s) in self.servers.iter().enumerate() {
            match s {
                Some(s) => eprintln!(
                    "  n{} group={} applied={} {:?}",
                    i + 1,
                    self.group[i],
                    s.machine.applied_index(),
                    s.raw.status()
                ),
                None => eprintln!("  n{} down", i + 1),
            }
        }
        panic!("{msg} (t={} ms; replay with SEED={})", self.now, self.seed);
    }

    fn idx(id: u64) -> usize {
        (id - 1) as usize
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.next_seq += 1;
        self.events.push(Reverse((at, self.next_seq, ev)));
    }

    fn start_server(&mut self, id: u64) {
        let peers: Vec<u64> = (1..=self.n as u64).collect();
        let mut cfg = Config::new(id, peers);
        cfg.snapshot_chunk_bytes = 2048;
        cfg.seed = self.rng.next_u64();
        // A disk loses what was not synced here (nothing, for MemStorage).
        if let Err(e) = self.storages[Self::idx(id)].restart() {
            self.fail(&format!("n{id} restart: {e}"));
        }
        let state = self.storages[Self::idx(id)]
            .load()
            .unwrap_or_else(|e| self.fail(&format!("load: {e}")));
        let raw = RawNode::new(cfg, state).unwrap_or_else(|e| self.fail(&format!("new: {e}")));
        self.incarnations += 1;
        let incarnation = self.incarnations;
        self.last_applied[Self::idx(id)] = 0;
        self.servers[Self::idx(id)] = Some(Server {
            raw,
            incarnation,
            machine: Machine::new(),
            reads: BTreeMap::new(),
            next_ctx: 0,
            led_term: 0,
        });
        let phase = self.rng.range(1, TICK_MS + 1);
        self.push(self.now + phase, Ev::Tick { id, incarnation });
        self.process(id);
    }

    // ------------------------------------------------------------ faults

    /// Crashes a server: everything not in its storage is lost; requests waiting in it are
    /// never answered (their Clerks time out and retry).
    pub fn crash(&mut self, id: u64) {
        self.servers[Self::idx(id)] = None;
    }

    /// Restarts a crashed server from its storage (crashing it first if it is up).
    pub fn restart(&mut self, id: u64) {
        self.crash(id);
        self.start_server(id);
    }

    /// True if the server is running.
    pub fn is_up(&self, id: u64) -> bool {
        self.servers[Self::idx(id)].is_some()
    }

    /// Splits the servers into groups; servers talk only within their group. Clerks keep
    /// reaching every server unless [`KvSim::set_reach`] says otherwise.
    pub fn partition(&mut self, groups: &[&[u64]]) {
        for (g, ids) in groups.iter().enumerate() {
            for &id in *ids {
                self.group[Self::idx(id)] = g as u32 + 1;
            }
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.group = vec![0; self.n];
    }

    /// The servers Clerk `c` can reach.
    pub fn set_reach(&mut self, c: usize, servers: &[u64]) {
        let reach = (1..=self.n as u64).map(|i| servers.contains(&i)).collect();
        self.clerks[c].reach = reach;
    }

    // ------------------------------------------------------------ inspection

    /// The leader with the highest term among running servers, if any.
    pub fn leader(&self) -> Option<u64> {
        self.servers
            .iter()
            .flatten()
            .filter(|s| s.raw.is_leader())
            .max_by_key(|s| s.raw.term())
            .map(|s| s.raw.id())
    }

    /// The server's core, if up.
    pub fn raw(&self, id: u64) -> Option<&RawNode> {
        self.servers[Self::idx(id)].as_ref().map(|s| &s.raw)
    }

    /// The server's storage.
    pub fn storage(&self, id: u64) -> &S {
        &self.storages[Self::idx(id)]
    }

    /// The server's storage, to change its fault settings.
    pub fn storage_mut(&mut self, id: u64) -> &mut S {
        &mut self.storages[Self::idx(id)]
    }

    /// The value a running server's state machine holds for `key` (`None` if down or absent).
    pub fn value_at(&self, id: u64, key: &[u8]) -> Option<Bytes> {
        self.servers[Self::idx(id)]
            .as_ref()
            .and_then(|s| s.machine.state().get(key).cloned())
    }

    /// The index a running server applied through.
    pub fn applied(&self, id: u64) -> Option<u64> {
        self.servers[Self::idx(id)]
            .as_ref()
            .map(|s| s.machine.applied_index())
    }

    // ------------------------------------------------------------ clerks

    /// Adds a Clerk reaching every server; returns its index.
    pub fn add_clerk(&mut self) -> usize {
        let client_id = self.rng.next_u64() | 1;
        let leader = self.rng.range(1, self.n as u64 + 1);
        self.clerks.push(Clerk {
            client_id,
            seq: 0,
            leader,
            current: None,
            next_req: 0,
            reach: vec![true; self.n],
        });
        self.clerks.len() - 1
    }

    /// True if Clerk `c` has an operation in progress.
    pub fn busy(&self, c: usize) -> bool {
        self.clerks[c].current.is_some()
    }

    /// Starts an operation on an idle Clerk; it completes into [`KvSim::history`].
    pub fn submit(&mut self, c: usize, op: Op) {
        assert!(
            !self.busy(c),
            "clerk {c} already has an operation in progress"
        );
        let cl = &mut self.clerks[c];
        let seq = if matches!(op, Op::Get(_)) {
            0
        } else {
            cl.seq += 1;
            cl.seq
        };
        cl.next_req += 1;
        let req = cl.next_req;
        cl.current = Some((req, op, seq, self.now, 0));
        self.clerk_send(c, req);
    }

    /// Runs an operation to completion (or until `limit_ms` of simulated time passes:
    /// then `None`, and the operation stays in progress).
    pub fn run_op(&mut self, c: usize, op: Op, limit_ms: u64) -> Option<OpResult> {
        let before = self.history.len();
        self.submit(c, op);
        let until = self.now + limit_ms;
        while self.now < until {
            self.run_for(5);
            if let Some(i) = self.history[before..].iter().position(|r| r.clerk == c) {
                return Some(self.history[before + i].result.clone());
            }
        }
        None
    }

    fn clerk_send(&mut self, c: usize, req: u64) {
        let cl = &mut self.clerks[c];
        let Some((cur, op, seq, _, attempts)) = &mut cl.current else {
            return;
        };
        if *cur != req {
            return;
        }
        *attempts += 1;
        let msg = Msg::Request {
            clerk: c,
            req,
            server: cl.leader,
            op: op.clone(),
            client_id: cl.client_id,
            seq: *seq,
        };
        self.push(
            self.now + CLERK_TIMEOUT_MS,
            Ev::ClerkTimeout { clerk: c, req },
        );
        self.send(msg);
    }

    /// Moves Clerk `c` to another server and resends after `delay` ms.
    fn clerk_retry(&mut self, c: usize, req: u64, hint: u64, delay: u64) {
        let n = self.n as u64;
        let cl = &mut self.clerks[c];
        cl.leader = if hint >= 1 && hint <= n && hint != cl.leader {
            hint
        } else {
            cl.leader % n + 1
        };
        cl.next_req += 1;
        let new_req = cl.next_req;
        if let Some(cur) = &mut cl.current
            && cur.0 == req
        {
            cur.0 = new_req;
            self.push(
                self.now + delay,
                Ev::ClerkSend {
                    clerk: c,
                    req: new_req,
                },
            );
        }
    }

    fn clerk_reply(&mut self, c: usize, req: u64, reply: &Msg) {
        let Msg::Reply {
            err,
            hint,
            value,
            existed,
            text,
            ..
        } = reply
        else {
            return;
        };
        let Some((cur, ..)) = &self.clerks[c].current else {
            return;
        };
        if *cur != req {
            return; // a late reply to an attempt the Clerk gave up on
        }
        let result = match err {
            ErrorCode::Ok | ErrorCode::NoKey => {
                let (_, op, ..) =
                    self.clerks[c]
                        .current
                        .clone()
                        .unwrap_or((0, Op::Get(Bytes::new()), 0, 0, 0));
                if matches!(op, Op::Get(_)) {
                    OpResult::Value(if *err == ErrorCode::NoKey {
                        None
                    } else {
                        value.clone()
                    })
                } else {
                    OpResult::Written { existed: *existed }
                }
            }
            ErrorCode::InvalidArgument => OpResult::Invalid(text.clone()),
            ErrorCode::StaleRequest => {
                self.fail(&format!("clerk {c} got STALE_REQUEST: {text}"));
            }
            _ => {
                // WRONG_LEADER / TIMEOUT / SHUTTING_DOWN: try elsewhere; a short pause once
                // every server was tried, so a leaderless cluster is not flooded.
                let delay = if self.rng.chance(1.0 / self.n as f64) {
                    20
                } else {
                    1
                };
                self.clerk_retry(c, req, *hint, delay);
                return;
            }
        };
        let Some((_, op, _, invoke, _)) = self.clerks[c].current.take() else {
            return;
        };
        if let (Op::Put(..) | Op::Append(..) | Op::Delete(..), OpResult::Written { .. }) =
            (&op, &result)
        {
            self.clerks[c].leader = match reply {
                Msg::Reply { server, .. } => *server,
                _ => self.clerks[c].leader,
            };
        }
        self.history.push(Record {
            clerk: c,
            op,
            invoke,
            ret: self.now,
            result,
        });
    }

    // ------------------------------------------------------------ network

    fn reachable(&self, m: &Msg) -> bool {
        match m {
            Msg::Raft(r) => {
                r.from >= 1
                    && r.to >= 1
                    && r.from as usize <= self.n
                    && r.to as usize <= self.n
                    && self.group[Self::idx(r.from)] == self.group[Self::idx(r.to)]
            }
            Msg::Request { clerk, server, .. } | Msg::Reply { clerk, server, .. } => {
                self.clerks[*clerk].reach[Self::idx(*server)]
            }
        }
    }

    fn send(&mut self, m: Msg) {
        if !self.reachable(&m) || self.rng.chance(self.net.drop) {
            return;
        }
        let (lo, hi) = self.net.delay;
        let mut delay = self.rng.range(lo, hi + 1);
        if matches!(m, Msg::Reply { .. } | Msg::Raft(_)) && self.rng.chance(self.net.long_reorder) {
            delay = self
                .rng
                .range(self.net.long_delay.0, self.net.long_delay.1 + 1);
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        self.in_flight.insert(seq, m);
        self.push(self.now + delay, Ev::Deliver { seq });
    }

    // ------------------------------------------------------------ running

    /// Runs for `ms` simulated milliseconds.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.now + ms;
        while let Some(Reverse((at, _, _))) = self.events.peek() {
            if *at > until {
                break;
            }
            let Some(Reverse((at, _, ev))) = self.events.pop() else {
                break;
            };
            self.now = at;
            match ev {
                Ev::Tick { id, incarnation } => {
                    let Some(s) = self.servers[Self::idx(id)].as_mut() else {
                        continue;
                    };
                    if s.incarnation != incarnation {
                        continue;
                    }
                    s.raw.tick();
                    self.push(at + TICK_MS, Ev::Tick { id, incarnation });
                    self.process(id);
                }
                Ev::Deliver { seq } => {
                    let Some(m) = self.in_flight.remove(&seq) else {
                        continue;
                    };
                    if !self.reachable(&m) {
                        continue;
                    }
                    self.deliver(m);
                }
                Ev::ClerkTimeout { clerk, req } => self.clerk_retry(clerk, req, 0, 0),
                Ev::ClerkSend { clerk, req } => self.clerk_send(clerk, req),
            }
        }
        self.now = until;
    }

    fn deliver(&mut self, m: Msg) {
        match m {
            Msg::Raft(r) => {
                let to = r.to;
                if self.trace {
                    eprintln!("{:>7} deliver {}", self.now, describe(&r));
                }
                let Some(s) = self.servers[Self::idx(to)].as_mut() else {
                    return;
                };
                s.raw.step(r);
                self.process(to);
            }
            Msg::Request {
                clerk,
                req,
                server,
                op,
                client_id,
                seq,
            } => {
                if self.servers[Self::idx(server)].is_some() {
                    self.serve(server, Handle { clerk, req }, op, client_id, seq);
                    self.process(server);
                }
            }
            reply @ Msg::Reply { .. } => {
                let (clerk, req) = match &reply {
                    Msg::Reply { clerk, req, .. } => (*clerk, *req),
                    _ => return,
                };
                self.clerk_reply(clerk, req, &reply);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        server: u64,
        h: Handle,
        err: ErrorCode,
        hint: u64,
        value: Option<Bytes>,
        existed: bool,
        text: String,
    ) {
        self.send(Msg::Reply {
            clerk: h.clerk,
            req: h.req,
            server,
            err,
            hint,
            value,
            existed,
            text,
        });
    }

    /// What `KvHandlers` does with a request.
    fn serve(&mut self, id: u64, h: Handle, op: Op, client_id: u64, seq: u64) {
        let max = self.max_value_bytes;
        let (key, value, cmd_op) = match &op {
            Op::Get(k) => (k.clone(), None, None),
            Op::Put(k, v) => (k.clone(), Some(v.clone()), Some(CommandOp::OpPut)),
            Op::Append(k, v) => (k.clone(), Some(v.clone()), Some(CommandOp::OpAppend)),
            Op::Delete(k) => (k.clone(), None, Some(CommandOp::OpDelete)),
        };
        let ids = cmd_op.map(|_| (client_id, seq));
        if let Err(text) = kvserver::validate(op.key(), value.as_deref(), ids, max) {
            self.reply(id, h, ErrorCode::InvalidArgument, 0, None, false, text);
            return;
        }
        let Some(s) = self.servers[Self::idx(id)].as_mut() else {
            return;
        };
        let hint = s.raw.leader().unwrap_or(0);
        match cmd_op {
            None => {
                s.next_ctx += 1;
                let ctx = s.next_ctx;
                match s.raw.read_index(ctx) {
                    Ok(()) => {
                        s.reads.insert(ctx, (key, h));
                    }
                    Err(_) => self.reply(
                        id,
                        h,
                        ErrorCode::WrongLeader,
                        hint,
                        None,
                        false,
                        String::new(),
                    ),
                }
            }
            Some(o) => {
                let data = Bytes::from(
                    Command {
                        op: o as i32,
                        key,
                        value: value.unwrap_or_default(),
                        client_id,
                        seq,
                    }
                    .encode_to_vec(),
                );
                match s.raw.propose(data) {
                    Ok((index, term)) => {
                        if let Some((h, r)) =
                            s.machine.register_write(index, term, client_id, seq, h)
                        {
                            self.answer_write(id, h, r);
                        }
                    }
                    Err(_) => self.reply(
                        id,
                        h,
                        ErrorCode::WrongLeader,
                        hint,
                        None,
                        false,
                        String::new(),
                    ),
                }
            }
        }
    }

    fn answer_write(&mut self, id: u64, h: Handle, r: WriteResult) {
        self.reply(id, h, r.err, 0, None, r.existed, String::new());
    }

    /// The driver contract for one server (persist, send, apply, advance), then the
    /// snapshot rule and the leadership check.
    fn process(&mut self, id: u64) {
        let i = Self::idx(id);
        loop {
            let Some(s) = self.servers[i].as_mut() else {
                return;
            };
            if !s.raw.has_ready() {
                break;
            }
            let mut rd = s.raw.ready();
            let early = std::mem::take(&mut rd.messages);
            let late = std::mem::take(&mut rd.persisted_messages);
            if let Err(e) =
                self.storages[i].persist(rd.hard_state.as_ref(), rd.snapshot.as_ref(), &rd.entries)
            {
                // The driver stops a node whose storage fails (a simulated power cut in the
                // middle of a write): a crash at this point; nothing of this Ready is sent,
                // applied or answered.
                if self.trace {
                    eprintln!("{:>7} crash n{id} (storage: {e})", self.now);
                }
                self.servers[i] = None;
                return;
            }
            for m in early.into_iter().chain(late) {
                self.send(Msg::Raft(m));
            }
            let mut writes = Vec::new();
            let mut reads = Vec::new();
            let Some(s) = self.servers[i].as_mut() else {
                return;
            };
            if let Some(snap) = &rd.apply_snapshot {
                if let Err(e) = s.machine.restore(&snap.data, &mut writes, &mut reads) {
                    self.fail(&format!(
                        "n{id} cannot restore snapshot {}: {e}",
                        snap.index
                    ));
                }
                let held = s.machine.applied_index();
                if held != snap.index {
                    self.fail(&format!(
                        "n{id} snapshot labelled {} holds index {held}",
                        snap.index
                    ));
                }
                self.last_applied[i] = snap.index;
            }
            let mut bad = None;
            let mut applied_now = Vec::new();
            for e in &rd.committed_entries {
                if e.index != self.last_applied[i] + 1 {
                    bad = Some(format!(
                        "n{id} applies {} after {}",
                        e.index, self.last_applied[i]
                    ));
                    break;
                }
                self.last_applied[i] = e.index;
                if e.is_noop() {
                    s.machine.skip_to(e.index, &mut reads);
                    applied_now.push((e.index, Bytes::from_static(b"\0noop")));
                    continue;
                }
                if let Err(err) =
                    s.machine
                        .apply_command(e.index, e.term, &e.data, &mut writes, &mut reads)
                {
                    bad = Some(format!("n{id} stops: {err}"));
                    break;
                }
                applied_now.push((e.index, e.data.clone()));
            }
            for r in &rd.read_states {
                if let Some((key, h)) = s.reads.remove(&r.ctx)
                    && let Some(done) = s.machine.register_read(r.index, key, h)
                {
                    reads.push(done);
                }
            }
            s.raw.advance(&rd);
            if let Some(b) = bad {
                self.fail(&b);
            }
            for (index, data) in applied_now {
                match self.applied_global.get(&index) {
                    Some(d) if *d != data => {
                        self.fail(&format!("n{id} applied a different command at {index}"))
                    }
                    Some(_) => {}
                    None => {
                        self.applied_global.insert(index, data);
                    }
                }
            }
            for (h, r) in writes {
                self.answer_write(id, h, r);
            }
            for (h, v) in reads {
                let err = if v.is_some() {
                    ErrorCode::Ok
                } else {
                    ErrorCode::NoKey
                };
                self.reply(id, h, err, 0, v, false, String::new());
            }
        }
        self.after_ready(id);
    }

    fn after_ready(&mut self, id: u64) {
        let i = Self::idx(id);
        let size = self.storages[i].raft_state_size();
        self.max_raft_state_seen = self.max_raft_state_seen.max(size);
        let Some(s) = self.servers[i].as_mut() else {
            return;
        };
        // Election Safety.
        if s.raw.is_leader() {
            let term = s.raw.term();
            match self.leaders.get(&term) {
                Some(&l) if l != id => {
                    self.fail(&format!("two leaders in term {term}: n{l} and n{id}"))
                }
                _ => {
                    self.leaders.insert(term, id);
                }
            }
        }
        let s = self.servers[i].as_mut().expect("checked above");
        // Snapshot past max_raft_state (the lab's rule: persisted Raft state size).
        if let Some(max) = self.max_raft_state
            && size >= max
            && s.machine.applied_index() > s.raw.status().snapshot_index
        {
            let index = s.machine.applied_index();
            let data = s.machine.state().snapshot();
            if let Err(e) = s.raw.snapshot(index, data) {
                let msg = format!("n{id} snapshot at {index}: {e}");
                self.fail(&msg);
            }
            self.snapshots += 1;
        }
        // Leadership lost (or a new term): waiting writes and unconfirmed reads fail now.
        let s = self.servers[i].as_mut().expect("checked above");
        let leading = if s.raw.is_leader() { s.raw.term() } else { 0 };
        let (w, _) = s.machine.waiting();
        let mut failed = Vec::new();
        if (w > 0 || !s.reads.is_empty())
            && (leading == 0 || (s.led_term != 0 && leading != s.led_term))
        {
            failed.extend(s.machine.drain_writes());
            failed.extend(std::mem::take(&mut s.reads).into_values().map(|(_, h)| h));
        }
        s.led_term = leading;
        let hint = s.raw.leader().unwrap_or(0);
        let more = s.raw.has_ready();
        for h in failed {
            self.reply(
                id,
                h,
                ErrorCode::WrongLeader,
                hint,
                None,
                false,
                String::new(),
            );
        }
        if more {
            self.process(id);
        }
    }
}

/// Checks a history of Appends and Gets over keys that are only ever appended to, each
/// Append carrying a token that occurs nowhere else, against the final value of every key
/// (read after the run). These are the lab's checks (every acknowledged append present
/// exactly once, each client's appends in its order) plus the real-time conditions of
/// linearizability for append-only values:
/// - every Get returns a prefix of the final value;
/// - an Append that returned before a Get was invoked is in that Get's value; one invoked
///   after the Get returned is not;
/// - a Get that returned before another was invoked returned no more than it;
/// - two Appends ordered in real time appear in that order.
///
/// Returns a description of the first violation.
pub fn check_append_history(
    history: &[Record],
    finals: &BTreeMap<Bytes, Bytes>,
) -> Result<(), String> {
    let pos = |hay: &[u8], needle: &[u8]| -> Vec<usize> {
        if needle.is_empty() || hay.len() < needle.len() {
            return Vec::new();
        }
        (0..=hay.len() - needle.len())
            .filter(|&i| &hay[i..i + needle.len()] == needle)
            .collect()
    };
    let empty = Bytes::new();
    let appends: Vec<&Record> = history
        .iter()
        .filter(|r| matches!(r.op, Op::Append(..)) && matches!(r.result, OpResult::Written { .. }))
        .collect();
    let gets: Vec<(&Record, Bytes)> = history
        .iter()
        .filter_map(|r| match (&r.op, &r.result) {
            (Op::Get(_), OpResult::Value(v)) => Some((r, v.clone().unwrap_or_default())),
            _ => None,
        })
        .collect();
    let mut at: HashMap<usize, usize> = HashMap::new();
    for (i, a) in appends.iter().enumerate() {
        let Op::Append(k, tok) = &a.op else { continue };
        let f = finals.get(k).unwrap_or(&empty);
        let p = pos(f, tok);
        if p.len() != 1 {
            return Err(format!(
                "acknowledged append {:?} to {:?} occurs {} times in the final value",
                String::from_utf8_lossy(tok),
                String::from_utf8_lossy(k),
                p.len()
            ));
        }
        at.insert(i, p[0]);
    }
    // Per key, the appends in final-value order and the gets.
    let mut by_key: HashMap<&Bytes, (Vec<usize>, Vec<usize>)> = HashMap::new();
    for (i, a) in appends.iter().enumerate() {
        by_key.entry(a.op.key()).or_default().0.push(i);
    }
    for (g, (r, _)) in gets.iter().enumerate() {
        by_key.entry(r.op.key()).or_default().1.push(g);
    }
    for (key, (ais, gis)) in &mut by_key {
        ais.sort_by_key(|i| at[i]);
        // Real-time order of appends: in final order, no append may have started after a
        // later-placed append finished. Scan keeping the max invoke seen so far.
        let mut max_invoke: Option<&Record> = None;
        for &i in ais.iter() {
            let a = appends[i];
            if let Some(m) = max_invoke
                && a.ret < m.invoke
            {
                return Err(format!(
                    "append {:?} finished before {:?} started but comes after it",
                    a.op, m.op
                ));
            }
            if max_invoke.is_none_or(|m| a.invoke > m.invoke) {
                max_invoke = Some(a);
            }
        }
        let f = finals.get(*key).unwrap_or(&empty);
        for &gi in gis.iter() {
            let (g, v) = &gets[gi];
            if !f.starts_with(v) {
                return Err(format!(
                    "Get({:?}) by clerk {} at {}..{} returned {:?}, not a prefix of the final {:?}",
                    String::from_utf8_lossy(g.op.key()),
                    g.clerk,
                    g.invoke,
                    g.ret,
                    String::from_utf8_lossy(v),
                    String::from_utf8_lossy(f)
                ));
            }
            for &i in ais.iter() {
                let a = appends[i];
                let Op::Append(k, tok) = &a.op else { continue };
                let inside = at[&i] + tok.len() <= v.len();
                if a.ret < g.invoke && !inside {
                    return Err(format!(
                        "Get({:?}) at {}..{} misses append {:?} that finished at {} (stale read)",
                        String::from_utf8_lossy(k),
                        g.invoke,
                        g.ret,
                        String::from_utf8_lossy(tok),
                        a.ret
                    ));
                }
                if g.ret < a.invoke && inside {
                    return Err(format!(
                        "Get({:?}) at {}..{} sees append {:?} that started later, at {}",
                        String::from_utf8_lossy(k),
                        g.invoke,
                        g.ret,
                        String::from_utf8_lossy(tok),
                        a.invoke
                    ));
                }
            }
        }
        // Reads never go backwards in real time: sorted by return time, a read's length
        // must not exceed that of any read invoked after it returned.
        let mut order: Vec<usize> = gis.clone();
        order.sort_by_key(|&g| gets[g].0.invoke);
        let mut by_ret: Vec<usize> = gis.clone();
        by_ret.sort_by_key(|&g| gets[g].0.ret);
        let mut longest: Option<usize> = None;
        let mut j = 0;
        for &g in &order {
            let (r2, v2) = &gets[g];
            while j < by_ret.len() && gets[by_ret[j]].0.ret < r2.invoke {
                let c = by_ret[j];
                if longest.is_none_or(|l| gets[c].1.len() > gets[l].1.len()) {
                    longest = Some(c);
                }
                j += 1;
            }
            if let Some(l) = longest
                && gets[l].1.len() > v2.len()
            {
                let r1 = gets[l].0;
                return Err(format!(
                    "Get({:?}) at {}..{} returned less than an earlier Get at {}..{}",
                    String::from_utf8_lossy(r2.op.key()),
                    r2.invoke,
                    r2.ret,
                    r1.invoke,
                    r1.ret
                ));
            }
        }
    }
    Ok(())
}

impl<S: SimStorage> KvSim<S> {
    /// The whole history for the `lincheck` checker: every completed operation, and every
    /// operation still in progress as one whose outcome is unknown (it may or may not have
    /// taken effect). Refused requests (INVALID_ARGUMENT) changed nothing and are left out.
    pub fn lincheck_history(
        &self,
    ) -> Vec<lincheck::Operation<lincheck::KvInput, lincheck::KvOutput>> {
        let s = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let input = |op: &Op| match op {
            Op::Get(k) => lincheck::KvInput::Get { key: s(k) },
            Op::Put(k, v) => lincheck::KvInput::Put {
                key: s(k),
                value: s(v),
            },
            Op::Append(k, v) => lincheck::KvInput::Append {
                key: s(k),
                value: s(v),
            },
            Op::Delete(k) => lincheck::KvInput::Delete { key: s(k) },
        };
        let mut out: Vec<_> = self
            .history
            .iter()
            .filter_map(|r| {
                let output = match &r.result {
                    OpResult::Value(v) => lincheck::KvOutput::Value(v.as_ref().map(s)),
                    OpResult::Written { .. } => lincheck::KvOutput::Done,
                    OpResult::Invalid(_) => return None,
                };
                Some(lincheck::Operation {
                    client: r.clerk as u64,
                    input: input(&r.op),
                    output: Some(output),
                    call: r.invoke,
                    ret: Some(r.ret),
                })
            })
            .collect();
        for (c, cl) in self.clerks.iter().enumerate() {
            if let Some((_, op, _, invoke, _)) = &cl.current {
                out.push(lincheck::Operation {
                    client: c as u64,
                    input: input(op),
                    output: None,
                    call: *invoke,
                    ret: None,
                });
            }
        }
        out
    }

    /// Checks the whole history with `lincheck` (Porcupine's algorithm). On a violation the
    /// history and its HTML picture are kept (their paths are printed) and the run fails
    /// with the seed. A search that runs out of its budget (30 s) fails the run too: unlike
    /// the lab, which lets Porcupine's timeout pass, no history goes unchecked.
    pub fn check_linearizable(&self, name: &str) {
        let h = self.lincheck_history();
        let r = lincheck::check_kv_history(
            &format!("{name}-seed{}", self.seed),
            &h,
            std::time::Duration::from_secs(30),
            None,
        );
        match r.report.verdict {
            lincheck::Verdict::Linearizable => {}
            lincheck::Verdict::Unknown => {
                // The lab lets Porcupine's timeout pass; here a check that did not decide
                // fails, so no test passes without its history being checked.
                self.fail(&format!(
                    "{name}: lincheck could not decide the history of {} operations within \
                     its 30 s budget; make the scenario's history smaller or teach the \
                     model to prune it (see lincheck::Model::is_monotone)",
                    h.len()
                ));
            }
            lincheck::Verdict::NotLinearizable => {
                let at = r
                    .artifacts
                    .map(|a| {
                        format!(
                            "history {}, picture {}",
                            a.history.display(),
                            a.html.display()
                        )
                    })
                    .unwrap_or_else(|| r.artifacts_error.unwrap_or_default());
                self.fail(&format!(
                    "{name}: history of {} operations is not linearizable ({at})",
                    h.len()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(clerk: usize, op: Op, invoke: u64, ret: u64, result: OpResult) -> Record {
        Record {
            clerk,
            op,
            invoke,
            ret,
            result,
        }
    }
    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn the_append_checker_catches_each_violation() {
        let w = OpResult::Written { existed: false };
        let a1 = rec(0, Op::Append(b("k"), b("[a]")), 0, 10, w.clone());
        let a2 = rec(1, Op::Append(b("k"), b("[b]")), 20, 30, w.clone());
        let finals: BTreeMap<Bytes, Bytes> = [(b("k"), b("[a][b]"))].into();
        let good = rec(2, Op::Get(b("k")), 12, 15, OpResult::Value(Some(b("[a]"))));
        assert!(check_append_history(&[a1.clone(), a2.clone(), good.clone()], &finals).is_ok());
        // A stale read: misses [a], which finished before the Get started.
        let stale = rec(2, Op::Get(b("k")), 12, 15, OpResult::Value(None));
        assert!(
            check_append_history(&[a1.clone(), a2.clone(), stale], &finals)
                .unwrap_err()
                .contains("stale")
        );
        // A read from the future.
        let future = rec(
            2,
            Op::Get(b("k")),
            12,
            15,
            OpResult::Value(Some(b("[a][b]"))),
        );
        assert!(check_append_history(&[a1.clone(), a2.clone(), future], &finals).is_err());
        // A lost or doubled append.
        let lost: BTreeMap<Bytes, Bytes> = [(b("k"), b("[b]"))].into();
        assert!(check_append_history(&[a1.clone(), a2.clone()], &lost).is_err());
        let twice: BTreeMap<Bytes, Bytes> = [(b("k"), b("[a][a][b]"))].into();
        assert!(check_append_history(&[a1.clone(), a2.clone()], &twice).is_err());
        // Out of real-time order.
        let swapped: BTreeMap<Bytes, Bytes> = [(b("k"), b("[b][a]"))].into();
        assert!(check_append_history(&[a1.clone(), a2.clone()], &swapped).is_err());
        // Reads going backwards.
        let g1 = rec(
            2,
            Op::Get(b("k")),
            31,
            32,
            OpResult::Value(Some(b("[a][b]"))),
        );
        let g2 = rec(3, Op::Get(b("k")), 33, 34, OpResult::Value(Some(b("[a]"))));
        assert!(check_append_history(&[a1, a2, g1, g2], &finals).is_err());
    }
}
