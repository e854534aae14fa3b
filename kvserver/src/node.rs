//! One running kvserver node: a Raft [`Node`], the apply thread, the snapshot thread and
//! the `KvService` handlers, wired together. The binary adds flags, storage and the RPC
//! server around it.
//!
//! Threads: the Raft driver (owned by [`Node`]), the apply thread (owns the
//! [`Machine`]), the snapshot thread (serializes snapshot copies), and the rpc server's
//! event loop, which runs the handlers inline. No thread waits on a request: handlers
//! validate, propose with [`Node::start_with`] / [`Node::read_index_with`] (status with
//! [`Node::status_with`]) and return; the callbacks hand the reply handle to the apply
//! thread, which answers once the command is applied. Running them on the event loop
//! rather than the rpc worker pool saves a thread hand-off per request (kv-bench, 3 local
//! nodes: a 1-client linearizable get's p50 went from 0.18 to 0.06 ms, the leader's CPU
//! per get at 16 clients from 18 to 11 µs).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, select, unbounded};
use proto::Message;
use proto::kv::{
    Command, CommandOp, DeleteRequest, ErrorCode, GetReply, GetRequest, KvService, Member,
    MemberChangeReply, MemberChangeRequest, MemberListReply, MemberListRequest, PutAppendRequest,
    Role as WireRole, SnapshotChunkReply, SnapshotChunkRequest, StatusReply, StatusRequest,
    WriteReply,
};
use proto::raft::{ConfChange, ConfChangeType};
use proto::service::Reply;
use raft::rpc_transport::PeerBook;
use raft::{ApplyMsg, Node, Role};

use crate::machine::{DEFAULT_MAX_VALUE_BYTES, Machine, WriteResult, validate};
use crate::state::{BadEntry, SnapshotError, SnapshotView};

/// Service settings.
#[derive(Clone, Debug)]
pub struct KvConfig {
    /// Snapshot once the Raft log holds about this many bytes since the last snapshot
    /// (the lab's `maxraftstate`); 0 turns snapshots off.
    pub max_raft_state: u64,
    /// Largest value accepted by Put/Append, in bytes.
    pub max_value_bytes: usize,
    /// A request not answered within this time gets TIMEOUT (the Clerk retries).
    pub request_timeout: Duration,
    /// How often the apply thread checks that this node still leads (and fails waiting
    /// requests with WRONG_LEADER when it does not).
    pub leader_check: Duration,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            max_raft_state: 8 * 1024 * 1024,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            request_timeout: Duration::from_secs(3),
            leader_check: Duration::from_millis(50),
        }
    }
}

/// What the apply and snapshot threads publish for Status.
#[derive(Debug, Default)]
struct Published {
    applied: AtomicU64,
    keys: AtomicU64,
    snapshot_index: AtomicU64,
    snapshot_bytes: AtomicU64,
}

/// Why a node stopped on its own.
#[derive(Debug)]
pub enum Fatal {
    /// A committed entry is not a command.
    BadEntry(BadEntry),
    /// A snapshot did not restore.
    Snapshot(SnapshotError),
    /// The Raft driver stopped on its own (a storage error; its log line says which).
    RaftStopped,
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fatal::BadEntry(e) => write!(f, "{e}"),
            Fatal::Snapshot(e) => write!(f, "cannot install snapshot: {e}"),
            Fatal::RaftStopped => f.write_str(
                "the raft driver stopped (storage failure; see the log line before this one)",
            ),
        }
    }
}

struct WriteHandle {
    reply: Reply<WriteReply>,
    deadline: Instant,
}

struct ReadHandle {
    reply: Reply<GetReply>,
    deadline: Instant,
}

/// A membership change waiting to be applied at (index, term).
struct MemberWait {
    term: u64,
    reply: Reply<MemberChangeReply>,
    deadline: Instant,
}

enum Event {
    Write {
        index: u64,
        term: u64,
        client_id: u64,
        seq: u64,
        handle: WriteHandle,
    },
    Read {
        index: u64,
        key: Bytes,
        handle: ReadHandle,
    },
    SnapshotDone {
        index: u64,
        bytes: u64,
    },
    Member {
        index: u64,
        wait: MemberWait,
    },
    /// Take a fresh image of the state for a backup and answer its first chunk.
    Backup(Reply<SnapshotChunkReply>),
    Stop,
}

/// The image a backup is reading (`SnapshotChunk`), kept until the next one is taken.
struct BackupImage {
    index: u64,
    term: u64,
    crc: u32,
    data: Bytes,
}

/// Bytes per `SnapshotChunk` reply.
const BACKUP_CHUNK: usize = 1 << 20;

fn backup_chunk(img: &BackupImage, offset: u64) -> SnapshotChunkReply {
    let start = (offset as usize).min(img.data.len());
    let end = (start + BACKUP_CHUNK).min(img.data.len());
    SnapshotChunkReply {
        err: ErrorCode::Ok as i32,
        error_text: String::new(),
        index: img.index,
        term: img.term,
        total: img.data.len() as u64,
        crc: img.crc,
        chunk: img.data.slice(start..end),
    }
}

fn backup_error(err: ErrorCode, text: impl Into<String>) -> SnapshotChunkReply {
    SnapshotChunkReply {
        err: err as i32,
        error_text: text.into(),
        index: 0,
        term: 0,
        total: 0,
        crc: 0,
        chunk: Bytes::new(),
    }
}

struct Shared {
    id: u64,
    cfg: KvConfig,
    node: Node,
    events: Sender<Event>,
    published: Published,
    started: Instant,
    listen_addr: Mutex<String>,
    /// Where the peers are; the apply loop updates it as membership changes apply.
    peers: PeerBook,
    /// The voters the cluster was bootstrapped with (for MemberList: a joining node
    /// replays the log from them).
    bootstrap: Vec<u64>,
    /// The latest backup image (see `SnapshotChunk`).
    backup: Mutex<Option<Arc<BackupImage>>>,
}

/// A running kvserver node (without its RPC server): see the module docs.
pub struct KvNode {
    shared: Arc<Shared>,
    apply_thread: Option<JoinHandle<Option<Fatal>>>,
    fatal_rx: Receiver<()>,
}

impl std::fmt::Debug for KvNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvNode")
            .field("id", &self.shared.id)
            .finish()
    }
}

/// The `KvService` handlers of a node; register with `KvServiceServer::new`, inline
/// (`rpc::ServerBuilder::register_inline`): no handler waits, each validates and hands its
/// request to the Raft driver with a callback, so running them on the event loop saves a
/// thread hand-off per request.
#[derive(Clone)]
pub struct KvHandlers {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KvHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvHandlers")
            .field("id", &self.shared.id)
            .finish()
    }
}

impl KvNode {
    /// Wraps a spawned Raft node. `snapshot` is the stored snapshot the node restarts from
    /// (`None` or empty for none); it is restored before anything is applied. `peers` is
    /// the address book the node's transport sends to: the addresses of members added at
    /// run time are put there as their changes apply (and from the snapshot now).
    /// `bootstrap` lists the voters the cluster started with (`raft::Config::peers`).
    pub fn start(
        id: u64,
        cfg: KvConfig,
        node: Node,
        apply: Receiver<ApplyMsg>,
        snapshot: Option<raft::Snapshot>,
        peers: PeerBook,
        bootstrap: Vec<u64>,
    ) -> Result<KvNode, Fatal> {
        let mut machine: Machine<WriteHandle, ReadHandle> = Machine::new();
        let published = Published::default();
        let mut applied_term = 0;
        if let Some(snap) = snapshot.filter(|s| !s.data.is_empty()) {
            let s = snap.data;
            applied_term = snap.term;
            machine
                .restore(&s, &mut Vec::new(), &mut Vec::new())
                .map_err(Fatal::Snapshot)?;
            published
                .snapshot_index
                .store(machine.applied_index(), Ordering::Relaxed);
            published
                .snapshot_bytes
                .store(s.len() as u64, Ordering::Relaxed);
        }
        published
            .applied
            .store(machine.applied_index(), Ordering::Relaxed);
        learn_addresses(id, &peers, machine.state().members());
        published
            .keys
            .store(machine.state().len() as u64, Ordering::Relaxed);
        let (events, events_rx) = unbounded();
        let shared = Arc::new(Shared {
            id,
            cfg,
            node,
            events,
            published,
            started: Instant::now(),
            listen_addr: Mutex::new(String::new()),
            peers,
            bootstrap,
            backup: Mutex::new(None),
        });
        let (fatal_tx, fatal_rx) = crossbeam_channel::bounded(1);
        let s2 = shared.clone();
        let apply_thread = std::thread::Builder::new()
            .name(format!("kv-apply-{id}"))
            .spawn(move || {
                let r = ApplyLoop {
                    shared: s2,
                    machine,
                    apply,
                    events: events_rx,
                    since_snapshot: 0,
                    snapshotting: false,
                    fold_time: Duration::ZERO,
                    fold_steps: 0,
                    last_term: 0,
                    snap_thread: None,
                    member_waits: BTreeMap::new(),
                    applied_term,
                }
                .run();
                if r.is_some() {
                    let _ = fatal_tx.send(());
                }
                r
            })
            .map_err(|e| {
                Fatal::BadEntry(BadEntry {
                    index: 0,
                    reason: format!("cannot spawn the apply thread: {e}"),
                })
            })?;
        Ok(KvNode {
            shared,
            apply_thread: Some(apply_thread),
            fatal_rx,
        })
    }

    /// The handlers to register on the rpc server.
    pub fn handlers(&self) -> KvHandlers {
        KvHandlers {
            shared: self.shared.clone(),
        }
    }

    /// Records the client address for Status.
    pub fn set_listen_addr(&self, addr: String) {
        *self
            .shared
            .listen_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = addr;
    }

    /// The Raft node.
    pub fn raft(&self) -> &Node {
        &self.shared.node
    }

    /// Becomes ready when the apply thread stopped on its own (a [`Fatal`] error);
    /// [`KvNode::shutdown`] then returns it.
    pub fn fatal_signal(&self) -> &Receiver<()> {
        &self.fatal_rx
    }

    /// Stops the apply thread (waiting requests get SHUTTING_DOWN) and returns why it
    /// stopped early, if it did. The Raft node stops when the last handle is dropped.
    pub fn shutdown(mut self) -> Option<Fatal> {
        self.stop()
    }

    fn stop(&mut self) -> Option<Fatal> {
        let _ = self.shared.events.send(Event::Stop);
        self.apply_thread
            .take()
            .and_then(|t| t.join().ok())
            .flatten()
    }
}

impl Drop for KvNode {
    fn drop(&mut self) {
        if let Some(f) = self.stop() {
            log::error!("kv node {} stopped: {f}", self.shared.id);
        }
    }
}

fn write_reply(err: ErrorCode, hint: u64, text: impl Into<String>) -> WriteReply {
    WriteReply {
        err: err as i32,
        leader_hint: hint,
        error_text: text.into(),
        existed: false,
    }
}

fn get_reply(err: ErrorCode, hint: u64, text: impl Into<String>) -> GetReply {
    GetReply {
        err: err as i32,
        value: Bytes::new(),
        leader_hint: hint,
        error_text: text.into(),
    }
}

fn member_reply(
    err: ErrorCode,
    hint: u64,
    text: impl Into<String>,
    index: u64,
) -> MemberChangeReply {
    MemberChangeReply {
        err: err as i32,
        leader_hint: hint,
        error_text: text.into(),
        index,
    }
}

/// Puts the addresses of run-time members (from the state machine) into the transport's
/// book; an address that does not parse is logged and left out.
fn learn_addresses(me: u64, peers: &PeerBook, members: &BTreeMap<u64, String>) {
    for (&id, addr) in members {
        if id == me {
            continue;
        }
        match addr.parse() {
            Ok(a) => peers.set(id, a),
            Err(e) => log::warn!(
                "member {id}: address {addr:?} does not parse ({e}); node {id} is unreachable from here"
            ),
        }
    }
}

fn raft_error_code(e: &raft::Error) -> (ErrorCode, u64, String) {
    match e {
        raft::Error::Membership(m) => (ErrorCode::Refused, 0, m.to_string()),
        raft::Error::TransferInProgress { target } => (
            ErrorCode::WrongLeader,
            *target,
            format!("leadership is being transferred to node {target}; retry there"),
        ),
        raft::Error::NotLeader { leader_hint } => (
            ErrorCode::WrongLeader,
            leader_hint.unwrap_or(0),
            match leader_hint {
                Some(l) => format!("not the leader; node {l} is"),
                None => "not the leader; no leader known yet".into(),
            },
        ),
        raft::Error::Timeout => (
            ErrorCode::Timeout,
            0,
            "no majority confirmed this node's leadership in time".into(),
        ),
        raft::Error::Shutdown => (ErrorCode::ShuttingDown, 0, "the node is stopping".into()),
        other => (ErrorCode::ShuttingDown, 0, format!("raft: {other}")),
    }
}

impl KvHandlers {
    fn write(
        &self,
        op: CommandOp,
        key: Bytes,
        value: Bytes,
        client_id: u64,
        seq: u64,
        reply: Reply<WriteReply>,
    ) {
        let s = &self.shared;
        let v = (op != CommandOp::OpDelete).then_some(&value[..]);
        if let Err(text) = validate(&key, v, Some((client_id, seq)), s.cfg.max_value_bytes) {
            reply.send(write_reply(ErrorCode::InvalidArgument, 0, text));
            return;
        }
        let data = Bytes::from(
            Command {
                op: op as i32,
                key,
                value,
                client_id,
                seq,
            }
            .encode_to_vec(),
        );
        let events = s.events.clone();
        let deadline = Instant::now() + s.cfg.request_timeout;
        s.node.start_with(
            data,
            Box::new(move |r| match r {
                Ok((index, term)) => {
                    let handle = WriteHandle { reply, deadline };
                    if let Err(e) = events.send(Event::Write {
                        index,
                        term,
                        client_id,
                        seq,
                        handle,
                    }) && let Event::Write { handle, .. } = e.into_inner()
                    {
                        handle.reply.send(write_reply(
                            ErrorCode::ShuttingDown,
                            0,
                            "the node is stopping",
                        ));
                    }
                }
                Err(e) => {
                    let (code, hint, text) = raft_error_code(&e);
                    reply.send(write_reply(code, hint, text));
                }
            }),
        );
    }
}

impl KvHandlers {
    /// Proposes `cc`; the reply waits on the apply loop for the change's index.
    fn change(
        &self,
        cc: ConfChange,
        addr: Option<std::net::SocketAddr>,
        reply: Reply<MemberChangeReply>,
    ) {
        let s = &self.shared;
        let events = s.events.clone();
        let deadline = Instant::now() + s.cfg.request_timeout;
        let peers = s.peers.clone();
        let id = cc.node_id;
        s.node.propose_conf_change_with(
            cc,
            Box::new(move |r| match r {
                Ok((index, term)) => {
                    // Runs on the driver thread before the Ready that sends the new entry:
                    // the leader can reach the new learner from its first AppendEntries.
                    if let Some(a) = addr {
                        peers.set(id, a);
                    }
                    let wait = MemberWait {
                        term,
                        reply,
                        deadline,
                    };
                    if let Err(e) = events.send(Event::Member { index, wait })
                        && let Event::Member { wait, .. } = e.into_inner()
                    {
                        wait.reply.send(member_reply(
                            ErrorCode::ShuttingDown,
                            0,
                            "the node is stopping",
                            0,
                        ));
                    }
                }
                Err(e) => {
                    let (code, hint, text) = raft_error_code(&e);
                    reply.send(member_reply(code, hint, text, 0));
                }
            }),
        );
    }
}

fn conf_change(kind: ConfChangeType, id: u64, context: &str) -> ConfChange {
    ConfChange {
        change_type: kind as i32,
        node_id: id,
        context: Bytes::copy_from_slice(context.as_bytes()),
    }
}

impl KvService for KvHandlers {
    fn member_list(&self, _req: MemberListRequest, reply: Reply<MemberListReply>) {
        let s = Arc::clone(&self.shared);
        self.shared.node.status_with(Box::new(move |r| {
            let Ok(st) = r else {
                reply.fail(rpc::Status::Unavailable, "the raft node has stopped");
                return;
            };
            let book = s.peers.all();
            let own = s
                .listen_addr
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let addr = |id: u64| {
                if id == s.id {
                    own.clone()
                } else {
                    book.get(&id).map(|a| a.to_string()).unwrap_or_default()
                }
            };
            let members = st
                .voters
                .iter()
                .map(|&id| (id, false))
                .chain(st.learners.iter().map(|&id| (id, true)))
                .map(|(id, learner)| Member {
                    id,
                    addr: addr(id),
                    learner,
                })
                .collect();
            reply.send(MemberListReply {
                err: ErrorCode::Ok as i32,
                error_text: String::new(),
                members,
                leader_id: st.leader.unwrap_or(0),
                bootstrap_voters: s.bootstrap.clone(),
                node_id: s.id,
            });
        }));
    }

    fn add_learner(&self, req: MemberChangeRequest, reply: Reply<MemberChangeReply>) {
        let addr: std::net::SocketAddr = match req.addr.parse() {
            Ok(a) => a,
            Err(e) => {
                reply.send(member_reply(
                    ErrorCode::InvalidArgument,
                    0,
                    format!(
                        "address {:?} of node {} is not IP:PORT ({e}); give the address the new node will listen on, e.g. 127.0.0.1:7004",
                        req.addr, req.node_id
                    ),
                    0,
                ));
                return;
            }
        };
        // One address, one node (etcd refuses a peer URL that exists, too): a second
        // member at a member's address is a typo, or a replacement added before the node
        // it replaces was removed.
        let s = &self.shared;
        let own = s
            .listen_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .parse::<std::net::SocketAddr>()
            .ok();
        let holder = s
            .peers
            .all()
            .into_iter()
            .chain(own.map(|a| (s.id, a)))
            .find(|&(id, a)| a == addr && id != req.node_id);
        if let Some((other, _)) = holder {
            reply.send(member_reply(
                ErrorCode::Refused,
                0,
                format!(
                    "{addr} is the address of node {other}; give node {} an address of its own, or remove node {other} first (`kvcli member remove {other}`) if the new node replaces it there",
                    req.node_id
                ),
                0,
            ));
            return;
        }
        let cc = conf_change(
            ConfChangeType::ConfChangeAddLearner,
            req.node_id,
            &addr.to_string(),
        );
        self.change(cc, Some(addr), reply);
    }

    fn promote_learner(&self, req: MemberChangeRequest, reply: Reply<MemberChangeReply>) {
        let cc = conf_change(ConfChangeType::ConfChangePromoteLearner, req.node_id, "");
        self.change(cc, None, reply);
    }

    fn remove_member(&self, req: MemberChangeRequest, reply: Reply<MemberChangeReply>) {
        let cc = conf_change(ConfChangeType::ConfChangeRemoveNode, req.node_id, "");
        self.change(cc, None, reply);
    }

    fn snapshot_chunk(&self, req: SnapshotChunkRequest, reply: Reply<SnapshotChunkReply>) {
        let s = &self.shared;
        if req.offset == 0 && req.index == 0 {
            if let Err(e) = s.events.send(Event::Backup(reply))
                && let Event::Backup(reply) = e.into_inner()
            {
                reply.send(backup_error(
                    ErrorCode::ShuttingDown,
                    "the node is stopping",
                ));
            }
            return;
        }
        let mut slot = s.backup.lock().unwrap_or_else(|p| p.into_inner());
        let img = slot.clone();
        match img {
            Some(img) if img.index == req.index => {
                let chunk = backup_chunk(&img, req.offset);
                if req.offset + chunk.chunk.len() as u64 >= chunk.total {
                    // The last chunk: the image is not kept (it can be as large as the map).
                    *slot = None;
                }
                drop(slot);
                reply.send(chunk)
            }
            _ => reply.send(backup_error(
                ErrorCode::Timeout,
                format!(
                    "the image at index {} was replaced by a newer backup; start again",
                    req.index
                ),
            )),
        }
    }

    fn transfer_leader(&self, req: MemberChangeRequest, reply: Reply<MemberChangeReply>) {
        self.shared.node.transfer_leader_with(
            req.node_id,
            Box::new(move |r| match r {
                Ok(()) => reply.send(member_reply(ErrorCode::Ok, 0, "", 0)),
                Err(e) => {
                    let (code, hint, text) = raft_error_code(&e);
                    reply.send(member_reply(code, hint, text, 0));
                }
            }),
        );
    }

    fn get(&self, req: GetRequest, reply: Reply<GetReply>) {
        let s = &self.shared;
        if let Err(text) = validate(&req.key, None, None, s.cfg.max_value_bytes) {
            reply.send(get_reply(ErrorCode::InvalidArgument, 0, text));
            return;
        }
        let events = s.events.clone();
        let deadline = Instant::now() + s.cfg.request_timeout;
        let key = req.key;
        s.node.read_index_with(Box::new(move |r| match r {
            Ok(index) => {
                let handle = ReadHandle { reply, deadline };
                if let Err(e) = events.send(Event::Read { index, key, handle })
                    && let Event::Read { handle, .. } = e.into_inner()
                {
                    handle.reply.send(get_reply(
                        ErrorCode::ShuttingDown,
                        0,
                        "the node is stopping",
                    ));
                }
            }
            Err(e) => {
                let (code, hint, text) = raft_error_code(&e);
                reply.send(get_reply(code, hint, text));
            }
        }));
    }

    fn put(&self, req: PutAppendRequest, reply: Reply<WriteReply>) {
        self.write(
            CommandOp::OpPut,
            req.key,
            req.value,
            req.client_id,
            req.seq,
            reply,
        );
    }

    fn append(&self, req: PutAppendRequest, reply: Reply<WriteReply>) {
        self.write(
            CommandOp::OpAppend,
            req.key,
            req.value,
            req.client_id,
            req.seq,
            reply,
        );
    }

    fn delete(&self, req: DeleteRequest, reply: Reply<WriteReply>) {
        self.write(
            CommandOp::OpDelete,
            req.key,
            Bytes::new(),
            req.client_id,
            req.seq,
            reply,
        );
    }

    fn status(&self, _req: StatusRequest, reply: Reply<StatusReply>) {
        // Answered from the driver thread: the handler itself never waits (it runs on the
        // rpc event loop, see `KvHandlers`).
        let s = Arc::clone(&self.shared);
        self.shared.node.status_with(Box::new(move |r| {
            let st = match r {
                Ok(st) => st,
                Err(_) => {
                    reply.fail(rpc::Status::Unavailable, "the raft node has stopped");
                    return;
                }
            };
            let p = &s.published;
            reply.send(StatusReply {
                node_id: s.id,
                role: match st.role {
                    Role::Follower => WireRole::Follower,
                    Role::Candidate => WireRole::Candidate,
                    Role::Leader => WireRole::Leader,
                } as i32,
                term: st.term,
                leader_id: st.leader.unwrap_or(0),
                commit_index: st.commit,
                applied_index: p.applied.load(Ordering::Relaxed),
                log_bytes: st.log_bytes,
                snapshot_index: st
                    .snapshot_index
                    .max(p.snapshot_index.load(Ordering::Relaxed)),
                snapshot_bytes: p.snapshot_bytes.load(Ordering::Relaxed),
                uptime_ms: s.started.elapsed().as_millis() as u64,
                key_count: p.keys.load(Ordering::Relaxed),
                last_log_index: st.last_index,
                max_raft_state: s.cfg.max_raft_state,
                listen_addr: s
                    .listen_addr
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
                voters: st.voters,
                learners: st.learners,
            });
        }));
    }
}

/// Entries applied per batch before the loop looks at its events again.
const APPLY_BATCH: usize = 1024;

/// Overlay entries folded back into the map per step between batches after a snapshot
/// (each a skiplist insert or remove: 0.8 ms per step on average at 1M keys, measured by
/// `examples/snapshot_stall.rs`).
const FOLD_CHUNK: usize = 256;

struct ApplyLoop {
    shared: Arc<Shared>,
    machine: Machine<WriteHandle, ReadHandle>,
    apply: Receiver<ApplyMsg>,
    events: Receiver<Event>,
    /// Approximate Raft log bytes applied since the last snapshot (payload + 16 per
    /// entry, as `raft::Status::log_bytes` counts).
    since_snapshot: u64,
    snapshotting: bool,
    /// Time spent folding since the last snapshot started, and the steps taken.
    fold_time: Duration,
    fold_steps: u32,
    /// The term in which this node last led (0: not leading at the last check).
    last_term: u64,
    snap_thread: Option<(Sender<SnapshotView>, JoinHandle<()>)>,
    /// Membership changes waiting for their index to apply.
    member_waits: BTreeMap<u64, MemberWait>,
    /// The term of the entry at the applied index (for backup images).
    applied_term: u64,
}

impl ApplyLoop {
    fn run(mut self) -> Option<Fatal> {
        let tick = self.shared.cfg.leader_check;
        let mut next_check = Instant::now() + tick;
        let fatal = loop {
            // With overlay entries left to fold, look for work without waiting.
            let timeout = if self.fold_pending() {
                Duration::ZERO
            } else {
                next_check.saturating_duration_since(Instant::now())
            };
            let mut stop = false;
            select! {
                recv(self.apply) -> m => match m {
                    Ok(m) => {
                        // Registrations sent before this entry reached us are queued on
                        // `events`: take them first (see `Node::start_with`).
                        stop |= self.drain_events();
                        if let Err(f) = self.apply_batch(m) {
                            break Some(f);
                        }
                    }
                    Err(_) => break Some(Fatal::RaftStopped),
                },
                recv(self.events) -> e => match e {
                    Ok(e) => {
                        stop |= self.handle(e);
                        stop |= self.drain_events();
                    }
                    Err(_) => stop = true,
                },
                default(timeout) => {}
            }
            if stop {
                break None;
            }
            if Instant::now() >= next_check {
                self.check_leadership();
                next_check = Instant::now() + tick;
            }
            if self.fold_pending() {
                self.fold_step();
            }
        };
        // Nobody waits forever: everything still waiting is answered.
        for w in self.machine.drain_writes() {
            w.reply.send(write_reply(
                ErrorCode::ShuttingDown,
                0,
                "the node is stopping",
            ));
        }
        for r in self.machine.drain_reads() {
            r.reply.send(get_reply(
                ErrorCode::ShuttingDown,
                0,
                "the node is stopping",
            ));
        }
        for (_, w) in std::mem::take(&mut self.member_waits) {
            w.reply.send(member_reply(
                ErrorCode::ShuttingDown,
                0,
                "the node is stopping",
                0,
            ));
        }
        while let Ok(e) = self.events.try_recv() {
            self.handle(e);
        }
        if let Some((tx, t)) = self.snap_thread.take() {
            drop(tx);
            let _ = t.join();
        }
        if let Some(f) = &fatal {
            log::error!("kv node {} stops: {f}", self.shared.id);
        }
        fatal
    }

    /// Returns true on Stop.
    fn drain_events(&mut self) -> bool {
        let mut stop = false;
        while let Ok(e) = self.events.try_recv() {
            stop |= self.handle(e);
        }
        stop
    }

    /// Returns true on Stop.
    fn handle(&mut self, e: Event) -> bool {
        match e {
            Event::Write {
                index,
                term,
                client_id,
                seq,
                handle,
            } => {
                if let Some((h, r)) = self
                    .machine
                    .register_write(index, term, client_id, seq, handle)
                {
                    answer_write(h, r, 0);
                }
            }
            Event::Read { index, key, handle } => {
                if let Some((h, v)) = self.machine.register_read(index, key, handle) {
                    answer_read(h, v);
                }
            }
            Event::Member { index, wait } => {
                if index <= self.machine.applied_index() {
                    // Already applied (or passed by a snapshot) before the wait arrived.
                    wait.reply.send(member_reply(
                        ErrorCode::WrongLeader,
                        0,
                        "the change's index was applied before its reply was registered; check `kvcli member list`",
                        index,
                    ));
                } else {
                    self.member_waits.insert(index, wait);
                }
            }
            Event::Backup(reply) => self.start_backup(reply),
            Event::SnapshotDone { index, bytes } => {
                self.snapshotting = false;
                let p = &self.shared.published;
                p.snapshot_index.store(index, Ordering::Relaxed);
                p.snapshot_bytes.store(bytes, Ordering::Relaxed);
            }
            Event::Stop => return true,
        }
        false
    }

    fn apply_batch(&mut self, first: ApplyMsg) -> Result<(), Fatal> {
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        let mut next = Some(first);
        let mut n = 0;
        while let Some(m) = next.take() {
            match m {
                ApplyMsg::Command { index, term, data } => {
                    self.applied_term = term;
                    self.since_snapshot += data.len() as u64 + 16;
                    self.machine
                        .apply_command(index, term, &data, &mut writes, &mut reads)
                        .map_err(Fatal::BadEntry)?;
                }
                ApplyMsg::ConfChange {
                    index,
                    term,
                    change,
                } => {
                    self.applied_term = term;
                    self.since_snapshot += change.context.len() as u64 + 32;
                    if !self
                        .machine
                        .apply_conf_change(index, &change, &mut writes, &mut reads)
                    {
                        log::warn!(
                            "kv node {}: membership change at {index} adds node {} without an address; it is unreachable until one is known",
                            self.shared.id,
                            change.node_id
                        );
                    }
                    self.member_applied(index, term, &change);
                }
                ApplyMsg::Snapshot { index, term, data } => {
                    self.applied_term = term;
                    self.machine
                        .restore(&data, &mut writes, &mut reads)
                        .map_err(Fatal::Snapshot)?;
                    learn_addresses(
                        self.shared.id,
                        &self.shared.peers,
                        self.machine.state().members(),
                    );
                    self.fail_member_waits_through(index);
                    self.since_snapshot = 0;
                    let p = &self.shared.published;
                    p.snapshot_index.store(index, Ordering::Relaxed);
                    p.snapshot_bytes.store(data.len() as u64, Ordering::Relaxed);
                }
            }
            n += 1;
            if n < APPLY_BATCH {
                next = self.apply.try_recv().ok();
            }
        }
        let hint = self.shared.id;
        for (h, r) in writes {
            answer_write(h, r, hint);
        }
        for (h, v) in reads {
            answer_read(h, v);
        }
        let p = &self.shared.published;
        p.applied
            .store(self.machine.applied_index(), Ordering::Relaxed);
        p.keys
            .store(self.machine.state().len() as u64, Ordering::Relaxed);
        self.maybe_snapshot();
        Ok(())
    }

    /// Past `max_raft_state` bytes of log: take a view of the state (O(clients + overlay),
    /// no copy of the map) and let the snapshot thread serialize it and hand it to Raft.
    /// Writes go to the state's overlay until the view is dropped; then `fold_step`
    /// folds them back a chunk at a time.
    fn maybe_snapshot(&mut self) {
        let max = self.shared.cfg.max_raft_state;
        if max == 0 || self.snapshotting || self.since_snapshot < max {
            return;
        }
        let t0 = Instant::now();
        let view = self.machine.state().snapshot_view();
        let pause = t0.elapsed();
        self.fold_time = Duration::ZERO;
        self.fold_steps = 0;
        log::debug!(
            "kv node {}: snapshot view of {} keys at index {} paused apply for {pause:?}",
            self.shared.id,
            self.machine.state().len(),
            view.applied_index()
        );
        if self.snap_thread.is_none() {
            let (tx, rx) = unbounded::<SnapshotView>();
            let shared = self.shared.clone();
            match std::thread::Builder::new()
                .name(format!("kv-snap-{}", self.shared.id))
                .spawn(move || snapshot_thread(shared, rx))
            {
                Ok(t) => self.snap_thread = Some((tx, t)),
                Err(e) => {
                    log::error!("cannot start the snapshot thread: {e}; snapshots are off");
                    return;
                }
            }
        }
        if let Some((tx, _)) = &self.snap_thread
            && tx.send(view).is_ok()
        {
            self.snapshotting = true;
            self.since_snapshot = 0;
        }
    }

    /// Whether the snapshot thread has let go of the map and overlay entries remain.
    fn fold_pending(&self) -> bool {
        !self.snapshotting && self.machine.state().overlay_len() > 0
    }

    /// Folds one chunk of the overlay back into the map (see [`FOLD_CHUNK`]).
    fn fold_step(&mut self) {
        let t0 = Instant::now();
        let left = self.machine.fold_overlay(FOLD_CHUNK);
        self.fold_time += t0.elapsed();
        self.fold_steps += 1;
        if left == 0 {
            log::debug!(
                "kv node {}: overlay folded back in {} steps, {:?} in all",
                self.shared.id,
                self.fold_steps,
                self.fold_time
            );
        }
    }

    /// The change at `index` applied: keep the transport's book in step and answer the
    /// request waiting on it (changes at lower indexes lost their index to other entries).
    fn member_applied(&mut self, index: u64, term: u64, cc: &ConfChange) {
        let id = cc.node_id;
        match ConfChangeType::try_from(cc.change_type) {
            Ok(ConfChangeType::ConfChangeAddLearner) => {
                learn_addresses(
                    self.shared.id,
                    &self.shared.peers,
                    self.machine.state().members(),
                );
                log::info!(
                    "kv node {}: node {id} added as a learner (index {index})",
                    self.shared.id
                );
            }
            Ok(ConfChangeType::ConfChangePromoteLearner) => {
                log::info!(
                    "kv node {}: node {id} promoted to voter (index {index})",
                    self.shared.id
                );
            }
            Ok(ConfChangeType::ConfChangeRemoveNode) => {
                if id == self.shared.id {
                    log::warn!(
                        "kv node {}: this node was removed from the cluster (index {index}); it no longer votes or campaigns; stop it and do not restart it with this data directory",
                        self.shared.id
                    );
                } else {
                    self.shared.peers.remove(id);
                    log::info!(
                        "kv node {}: node {id} removed (index {index})",
                        self.shared.id
                    );
                }
            }
            Err(_) => {}
        }
        self.fail_member_waits_through(index - 1);
        if let Some(w) = self.member_waits.remove(&index) {
            if w.term == term {
                w.reply.send(member_reply(ErrorCode::Ok, 0, "", index));
            } else {
                w.reply.send(member_reply(
                    ErrorCode::WrongLeader,
                    0,
                    "another leader's entry took this change's index; check `kvcli member list` and retry",
                    index,
                ));
            }
        }
    }

    /// A fresh image of the state at the applied index for a backup: a view (no copy of
    /// the map, as for a snapshot) encoded on a thread of its own, which then keeps it for
    /// the following chunks and answers the first.
    fn start_backup(&mut self, reply: Reply<SnapshotChunkReply>) {
        let index = self.machine.applied_index();
        if index == 0 || self.applied_term == 0 {
            reply.send(backup_error(
                ErrorCode::Refused,
                "nothing to back up: this node has applied no write yet (a new cluster holds no data until its first write; a node that just started catches up in a moment)",
            ));
            return;
        }
        let view = self.machine.state().snapshot_view();
        let term = self.applied_term;
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("kv-backup-{}", self.shared.id))
            .spawn(move || {
                let data = view.encode();
                drop(view);
                let img = Arc::new(BackupImage {
                    index,
                    term,
                    crc: crc32fast::hash(&data),
                    data,
                });
                // Kept for the following chunks, if there are any.
                *shared.backup.lock().unwrap_or_else(|p| p.into_inner()) =
                    (img.data.len() > BACKUP_CHUNK).then(|| img.clone());
                reply.send(backup_chunk(&img, 0));
            });
        if let Err(e) = spawned {
            log::error!(
                "kv node {}: cannot start a backup thread: {e}",
                self.shared.id
            );
        }
    }

    /// Waiting changes at or below `index` will never see their entry: WRONG_LEADER.
    fn fail_member_waits_through(&mut self, index: u64) {
        while let Some(e) = self.member_waits.first_entry() {
            if *e.key() > index {
                break;
            }
            e.remove().reply.send(member_reply(
                ErrorCode::WrongLeader,
                0,
                "the change was replaced by another leader's entry; check `kvcli member list` and retry",
                0,
            ));
        }
    }

    fn check_leadership(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .member_waits
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(i, _)| *i)
            .collect();
        for i in expired {
            if let Some(w) = self.member_waits.remove(&i) {
                w.reply.send(member_reply(
                    ErrorCode::Timeout,
                    0,
                    "the change did not apply in time (is a majority of voters up?); check `kvcli member list` before retrying",
                    i,
                ));
            }
        }
        let (ws, rs) = self
            .machine
            .drain_expired(|w| w.deadline <= now, |r| r.deadline <= now);
        for w in ws {
            w.reply.send(write_reply(
                ErrorCode::Timeout,
                0,
                "not applied in time; retry (the same client_id/seq applies at most once)",
            ));
        }
        for r in rs {
            r.reply.send(get_reply(
                ErrorCode::Timeout,
                0,
                "not applied in time; retry",
            ));
        }
        let (w, r) = self.machine.waiting();
        if w + r == 0 {
            self.last_term = 0;
            return;
        }
        let Ok(st) = self.shared.node.status() else {
            return;
        };
        let leading_term = if st.role == Role::Leader { st.term } else { 0 };
        // Writes were proposed as leader of some term; once this node is not the leader of
        // that term any more they may never be applied here: answer WRONG_LEADER now.
        if self.last_term != 0 && leading_term != self.last_term || leading_term == 0 {
            let hint = st.leader.unwrap_or(0);
            for h in self.machine.drain_writes() {
                h.reply.send(write_reply(
                    ErrorCode::WrongLeader,
                    hint,
                    "leadership lost before the command applied; retry at the leader",
                ));
            }
        }
        self.last_term = leading_term;
    }
}

fn answer_write(h: WriteHandle, r: WriteResult, hint: u64) {
    let text = match r.err {
        ErrorCode::Ok => String::new(),
        ErrorCode::WrongLeader => {
            "another command took this log index (leadership changed); retry".into()
        }
        ErrorCode::StaleRequest => "a later write of this client has already applied".into(),
        _ => String::new(),
    };
    h.reply.send(WriteReply {
        err: r.err as i32,
        leader_hint: if r.err == ErrorCode::Ok { hint } else { 0 },
        error_text: text,
        existed: r.existed,
    });
}

fn answer_read(h: ReadHandle, v: Option<Bytes>) {
    h.reply.send(match v {
        Some(value) => GetReply {
            err: ErrorCode::Ok as i32,
            value,
            leader_hint: 0,
            error_text: String::new(),
        },
        None => GetReply {
            err: ErrorCode::NoKey as i32,
            value: Bytes::new(),
            leader_hint: 0,
            error_text: String::new(),
        },
    });
}

fn snapshot_thread(shared: Arc<Shared>, rx: Receiver<SnapshotView>) {
    for view in rx {
        let index = view.applied_index();
        let t0 = Instant::now();
        let data = view.encode();
        // Let go of the map before saying so: the apply thread folds once this is dropped.
        drop(view);
        let bytes = data.len() as u64;
        match shared.node.snapshot(index, data) {
            Ok(()) => log::info!(
                "kv node {}: snapshot at index {index}, {bytes} bytes, encoded in {:?}",
                shared.id,
                t0.elapsed()
            ),
            Err(e) => log::warn!("kv node {}: snapshot at {index} refused: {e}", shared.id),
        }
        let _ = shared.events.send(Event::SnapshotDone { index, bytes });
    }
}
