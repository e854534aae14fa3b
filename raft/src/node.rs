//! The node driver: one thread that owns a [`RawNode`], its [`Storage`] and a
//! [`Transport`], ticks it on a timer, and delivers committed commands on an apply channel.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use proto::Message;
use proto::raft::{ConfChange, Entry, EntryType, HardState, RaftMessage};

use crate::core::{Config, RawNode, Ready, Role, Status};
use crate::storage::{Snapshot, Storage, StorageError};
use crate::{Error, Result};

/// Real time per tick by default. With the default `Config` (election timeout 10-20
/// ticks, heartbeat every 3 ticks) a leader sends about 6.7 heartbeats per second per
/// peer and a fresh 3-node cluster elects within 0.5-1 s.
pub const DEFAULT_TICK: Duration = Duration::from_millis(50);

/// Sends Raft messages to peers. Best effort: a message may be lost, duplicated or
/// reordered (Raft tolerates all three), but `send` must not block for long, because the
/// driver thread calls it.
pub trait Transport: Send + 'static {
    /// Sends each message to `m.to`.
    fn send(&self, msgs: Vec<RaftMessage>);
}

/// What the apply channel delivers, strictly in log order, each index at most once per
/// node incarnation (no-op entries are skipped, so indexes may have gaps; a service that
/// counts applied indexes must treat [`ApplyMsg::ConfChange`] as applied too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyMsg {
    /// A committed command.
    Command {
        /// Its log index.
        index: u64,
        /// The term it was proposed in.
        term: u64,
        /// The command as given to [`Node::start`].
        data: Bytes,
    },
    /// A committed membership change (single-server, thesis §4.1). Raft already acts on it
    /// (a change takes effect when appended); the service sees it here, in log order, to
    /// learn what Raft does not keep (kvserver: the new node's address in `context`).
    ConfChange {
        /// Its log index.
        index: u64,
        /// The term it was proposed in.
        term: u64,
        /// The change as given to [`Node::propose_conf_change_with`].
        change: ConfChange,
    },
    /// Replace the state machine with this snapshot (covers everything through `index`).
    Snapshot {
        /// The last index the snapshot covers.
        index: u64,
        /// The term of that entry.
        term: u64,
        /// The service's serialized state.
        data: Bytes,
    },
}

/// A completion callback of [`Node::start_with`] / [`Node::read_index_with`]. It runs on the
/// driver thread, so it must be quick and must not call back into the [`Node`] (hand the
/// result to another thread through a channel or a lock instead).
pub type Callback<T> = Box<dyn FnOnce(Result<T>) + Send + 'static>;

enum Input {
    Step(RaftMessage),
    Propose(Bytes, Callback<(u64, u64)>),
    ConfChange(ConfChange, Callback<(u64, u64)>),
    TransferLeader(u64, Callback<()>),
    ReadIndex(Callback<u64>),
    Snapshot(u64, Bytes, Sender<Result<()>>),
    Status(Callback<Status>),
    /// The persist thread finished a job: the Ready's parts handed back, or the error.
    Persisted(std::result::Result<PersistJob, StorageError>),
    Shutdown,
}

/// What the persist thread writes for one Ready (step 2 of the contract), handed back to
/// the driver when done so that the Ready can be completed without copying entries.
struct PersistJob {
    hard_state: Option<HardState>,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

/// Hands incoming messages to a running node; cheap to clone. The transport's receiving
/// side (an RPC handler, a channel) calls [`Mailbox::step`].
#[derive(Clone, Debug)]
pub struct Mailbox {
    tx: Sender<Input>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Step(_) => "Step",
            Input::Propose(..) => "Propose",
            Input::ConfChange(..) => "ConfChange",
            Input::TransferLeader(..) => "TransferLeader",
            Input::ReadIndex(_) => "ReadIndex",
            Input::Snapshot(..) => "Snapshot",
            Input::Status(_) => "Status",
            Input::Persisted(_) => "Persisted",
            Input::Shutdown => "Shutdown",
        })
    }
}

impl Mailbox {
    /// Queues a message for the node. Returns false if the node has stopped.
    pub fn step(&self, m: RaftMessage) -> bool {
        self.tx.send(Input::Step(m)).is_ok()
    }
}

/// A running Raft node: a driver thread around a [`RawNode`].
#[derive(Debug)]
pub struct Node {
    tx: Sender<Input>,
    thread: Option<JoinHandle<()>>,
    /// How long `read_index` waits for a heartbeat round.
    read_timeout: Duration,
}

impl Node {
    /// Starts a node: loads `storage`, spawns the driver thread, and returns the node and
    /// its apply channel. `tick` is the real time of one tick ([`DEFAULT_TICK`]).
    pub fn spawn<S: Storage + 'static, T: Transport>(
        cfg: Config,
        storage: S,
        transport: T,
        tick: Duration,
    ) -> Result<(Node, Receiver<ApplyMsg>)> {
        let state = storage.load()?;
        let read_timeout = tick * cfg.election_tick * 2;
        let cfg_election_tick = cfg.election_tick;
        let pipelined = cfg.pipelined_persist;
        let id = cfg.id;
        let raw = RawNode::new(cfg, state)?;
        let (tx, rx) = unbounded();
        let (apply_tx, apply_rx) = unbounded();
        let storage = Arc::new(Mutex::new(storage));
        // The persist thread exists only with `Config::pipelined_persist`.
        let (jobs, persist_thread) = if pipelined {
            let (jobs_tx, jobs_rx) = bounded::<PersistJob>(1);
            let persister = Persister {
                storage: Arc::clone(&storage),
                jobs: jobs_rx,
                done: tx.clone(),
            };
            let t = std::thread::Builder::new()
                .name(format!("raft-persist-{id}"))
                .spawn(move || persister.run())
                .map_err(|e| Error::InvalidConfig(format!("cannot spawn persist thread: {e}")))?;
            (Some(jobs_tx), Some(t))
        } else {
            (None, None)
        };
        let driver = Driver {
            raw,
            storage,
            jobs,
            persist_thread,
            in_flight: None,
            storage_failed: None,
            transport,
            apply: apply_tx,
            rx,
            tick,
            read_timeout_ticks: u64::from(cfg_election_tick) * 2,
            ticks: 0,
            read_queue: Vec::new(),
            read_round: None,
            next_ctx: 0,
            noops: std::collections::BTreeSet::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("raft-{id}"))
            .spawn(move || driver.run())
            .map_err(|e| Error::InvalidConfig(format!("cannot spawn driver thread: {e}")))?;
        Ok((
            Node {
                tx,
                thread: Some(thread),
                read_timeout,
            },
            apply_rx,
        ))
    }

    /// Where the transport delivers incoming messages.
    pub fn mailbox(&self) -> Mailbox {
        Mailbox {
            tx: self.tx.clone(),
        }
    }

    fn call<R>(&self, make: impl FnOnce(Sender<R>) -> Input) -> Result<R> {
        let (tx, rx) = bounded(1);
        self.tx.send(make(tx)).map_err(|_| Error::Shutdown)?;
        rx.recv().map_err(|_| Error::Shutdown)
    }

    /// Proposes a command; replication starts at once. Returns the (index, term) it will
    /// commit at if this node stays leader, or `NotLeader` with a hint. Blocks the caller
    /// until the driver thread has taken the proposal (not until it commits); see
    /// [`Node::start_with`] for the form that never blocks.
    pub fn start(&self, command: Bytes) -> Result<(u64, u64)> {
        let (tx, rx) = bounded(1);
        self.start_with(
            command,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().map_err(|_| Error::Shutdown)?
    }

    /// The non-blocking [`Node::start`]: queues the proposal and returns at once; `done`
    /// runs on the driver thread with the (index, term) or the error, before any Ready
    /// that could commit the entry is processed (so a service that records the pending
    /// request in `done` sees it recorded before the entry can reach the apply channel).
    /// If the node has stopped, `done` runs at once on the caller's thread with
    /// `Error::Shutdown`.
    pub fn start_with(&self, command: Bytes, done: Callback<(u64, u64)>) {
        if let Err(e) = self.tx.send(Input::Propose(command, done))
            && let Input::Propose(_, done) = e.into_inner()
        {
            done(Err(Error::Shutdown));
        }
    }

    /// Proposes a membership change ([`RawNode::propose_conf_change`]: add a learner,
    /// promote one, remove a node; one at a time). Never blocks: `done` runs on the driver
    /// thread with the (index, term) of the change's entry, or the refusal
    /// ([`Error::Membership`], `NotLeader`, ...), before any Ready that could commit it
    /// (as [`Node::start_with`]). The change is done once that index is delivered as
    /// [`ApplyMsg::ConfChange`]. If the node has stopped, `done` runs at once with
    /// `Error::Shutdown`.
    pub fn propose_conf_change_with(&self, change: ConfChange, done: Callback<(u64, u64)>) {
        if let Err(e) = self.tx.send(Input::ConfChange(change, done))
            && let Input::ConfChange(_, done) = e.into_inner()
        {
            done(Err(Error::Shutdown));
        }
    }

    /// Starts a leadership transfer to voter `target` ([`RawNode::transfer_leader`],
    /// thesis §3.10). Never blocks: `done` runs on the driver thread once the transfer has
    /// started (or was refused); whether it succeeded shows in [`Node::status`] (the
    /// leader) within an election timeout.
    pub fn transfer_leader_with(&self, target: u64, done: Callback<()>) {
        if let Err(e) = self.tx.send(Input::TransferLeader(target, done))
            && let Input::TransferLeader(_, done) = e.into_inner()
        {
            done(Err(Error::Shutdown));
        }
    }

    /// Term, role, leader, commit and applied index, log bounds.
    pub fn status(&self) -> Result<Status> {
        let (tx, rx) = bounded(1);
        self.status_with(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx.recv().map_err(|_| Error::Shutdown)?
    }

    /// The non-blocking [`Node::status`]: `done` runs on the driver thread with the status
    /// (or at once on the caller's thread with `Error::Shutdown` if the node has stopped),
    /// so an RPC handler can answer from the event loop without parking a thread.
    pub fn status_with(&self, done: Callback<Status>) {
        if let Err(e) = self.tx.send(Input::Status(done))
            && let Input::Status(done) = e.into_inner()
        {
            done(Err(Error::Shutdown));
        }
    }

    /// The service applied through `index` and serialized its state as `data`.
    pub fn snapshot(&self, index: u64, data: Bytes) -> Result<()> {
        self.call(|tx| Input::Snapshot(index, data, tx))?
    }

    /// A linearizable read point: once the state machine has applied through the returned
    /// index, a read sees every write committed before this call. The index is one the
    /// apply channel delivers (or a snapshot covers): a read point on a no-op entry,
    /// which the channel skips, is moved down to the entry before it (same state). Fails with `NotLeader`
    /// on a follower or if leadership is lost, and `Timeout` if no majority answers.
    pub fn read_index(&self) -> Result<u64> {
        let (tx, rx) = bounded(1);
        self.read_index_with(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        match rx.recv_timeout(self.read_timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(Error::Shutdown),
        }
    }

    /// The non-blocking [`Node::read_index`]: returns at once; `done` runs on the driver
    /// thread with the read index, or `NotLeader` (not the leader, or leadership lost
    /// before the round completed), or `Timeout` when no majority confirmed the round
    /// within two election timeouts, or `Shutdown`. Every request gets exactly one answer.
    ///
    /// Reads share heartbeat rounds: the driver keeps at most one ReadIndex round in
    /// flight; the requests that arrive while it is in flight wait and all go out together
    /// in the next round (one round for the whole batch, as etcd's read loop does). They
    /// cannot join the round in flight: its read point was fixed before they arrived and
    /// could miss a write acknowledged in between.
    pub fn read_index_with(&self, done: Callback<u64>) {
        if let Err(e) = self.tx.send(Input::ReadIndex(done))
            && let Input::ReadIndex(done) = e.into_inner()
        {
            done(Err(Error::Shutdown));
        }
    }

    /// Stops the driver and joins its thread. Everything persisted stays persisted.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.tx.send(Input::Shutdown);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::error!("raft driver thread panicked");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Persists jobs on its own thread, one at a time (the driver never has more than one
/// Ready in flight), and hands each back to the driver as `Input::Persisted`.
struct Persister<S> {
    storage: Arc<Mutex<S>>,
    jobs: Receiver<PersistJob>,
    /// The driver's input channel.
    done: Sender<Input>,
}

fn persist_job<S: Storage>(
    storage: &Mutex<S>,
    job: &PersistJob,
) -> std::result::Result<(), StorageError> {
    // Never contended: the driver persists inline only while no job is in flight.
    storage
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .persist(job.hard_state.as_ref(), job.snapshot.as_ref(), &job.entries)
}

impl<S: Storage> Persister<S> {
    fn run(self) {
        for job in self.jobs.iter() {
            let r = persist_job(&self.storage, &job).map(|()| job);
            let failed = r.is_err();
            if self.done.send(Input::Persisted(r)).is_err() || failed {
                return; // the driver is gone, or the storage failed: the node stops
            }
        }
    }
}

struct Driver<S, T> {
    raw: RawNode,
    /// Shared with the persist thread; used by one of the two at a time.
    storage: Arc<Mutex<S>>,
    /// Jobs for the persist thread, which exists with `Config::pipelined_persist` only
    /// (dropped when the driver stops: the thread then ends).
    jobs: Option<Sender<PersistJob>>,
    persist_thread: Option<JoinHandle<()>>,
    /// The Ready whose persist job is on the persist thread (its entries, hard state and
    /// snapshot travel with the job and come back with `Input::Persisted`).
    in_flight: Option<Ready>,
    /// The persist thread's storage error: the node stops.
    storage_failed: Option<StorageError>,
    transport: T,
    apply: Sender<ApplyMsg>,
    rx: Receiver<Input>,
    tick: Duration,
    /// Ticks after which an unanswered ReadIndex round fails with `Timeout`.
    read_timeout_ticks: u64,
    /// Ticks since start.
    ticks: u64,
    /// ReadIndex requests that arrived while a round was in flight: the next round's.
    read_queue: Vec<Callback<u64>>,
    /// The round in flight: its context, the tick it started at, and its requests.
    read_round: Option<(u64, u64, Vec<Callback<u64>>)>,
    next_ctx: u64,
    /// The latest no-op indexes handed out (not delivered on the apply channel), so that a
    /// read point that falls on one is moved down to the command before it.
    noops: std::collections::BTreeSet<u64>,
}

/// Inputs handled per Ready: enough to batch a burst of proposals into one persist.
const MAX_BATCH: usize = 256;

impl<S: Storage, T: Transport> Driver<S, T> {
    fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick;
        'run: loop {
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                self.ticks += 1;
                if let Some((_, started, _)) = &self.read_round
                    && self.ticks - started >= self.read_timeout_ticks
                    && let Some((_, _, waiting)) = self.read_round.take()
                {
                    for done in waiting {
                        done(Err(Error::Timeout));
                    }
                }
                next_tick += self.tick;
                if next_tick < now {
                    next_tick = now + self.tick; // fell behind: do not tick in a burst
                }
            } else {
                match self.rx.recv_timeout(next_tick - now) {
                    Ok(input) => {
                        if !self.handle(input) {
                            break 'run;
                        }
                        for _ in 0..MAX_BATCH {
                            match self.rx.try_recv() {
                                Ok(input) => {
                                    if !self.handle(input) {
                                        break 'run;
                                    }
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break 'run,
                }
            }
            loop {
                // A round that completed in the last Ready lets the reads queued behind it go.
                if self.read_round.is_none() && !self.read_queue.is_empty() {
                    self.start_read_round();
                }
                if let Err(e) = self.process_ready() {
                    log::error!("raft node {} stops: {e}", self.raw.id());
                    break 'run;
                }
                if self.read_round.is_some() || self.read_queue.is_empty() {
                    break;
                }
            }
            if (self.read_round.is_some() || !self.read_queue.is_empty()) && !self.raw.is_leader() {
                let hint = self.raw.leader();
                let round = self
                    .read_round
                    .take()
                    .map(|(_, _, w)| w)
                    .unwrap_or_default();
                for done in round
                    .into_iter()
                    .chain(std::mem::take(&mut self.read_queue))
                {
                    done(Err(Error::NotLeader { leader_hint: hint }));
                }
            }
        }
        if let Some(e) = self.storage_failed.take() {
            log::error!("raft node {} stops: {e}", self.raw.id());
        }
        // Let the persist thread finish the job in flight (what it writes stays written)
        // and release the storage before `Node::shutdown` returns.
        self.jobs = None;
        if let Some(t) = self.persist_thread.take()
            && t.join().is_err()
        {
            log::error!("raft persist thread panicked");
        }
        // Every request gets an answer, also at shutdown.
        let round = self
            .read_round
            .take()
            .map(|(_, _, w)| w)
            .unwrap_or_default();
        for done in round
            .into_iter()
            .chain(std::mem::take(&mut self.read_queue))
        {
            done(Err(Error::Shutdown));
        }
    }

    /// One ReadIndex round for every queued read request.
    fn start_read_round(&mut self) {
        let waiting = std::mem::take(&mut self.read_queue);
        self.next_ctx += 1;
        match self.raw.read_index(self.next_ctx) {
            Ok(()) => self.read_round = Some((self.next_ctx, self.ticks, waiting)),
            Err(e) => {
                let hint = match &e {
                    Error::NotLeader { leader_hint } => *leader_hint,
                    _ => self.raw.leader(),
                };
                for done in waiting {
                    done(Err(Error::NotLeader { leader_hint: hint }));
                }
            }
        }
    }

    /// Returns false when the driver must stop (shutdown, or a storage failure).
    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Step(m) => self.raw.step(m),
            Input::Propose(data, done) => done(self.raw.propose(data)),
            Input::ConfChange(cc, done) => done(self.raw.propose_conf_change(cc)),
            Input::TransferLeader(target, done) => done(self.raw.transfer_leader(target)),
            Input::ReadIndex(done) => self.read_queue.push(done),
            Input::Snapshot(index, data, tx) => {
                let _ = tx.send(self.raw.snapshot(index, data));
            }
            Input::Status(done) => done(Ok(self.raw.status())),
            Input::Persisted(Ok(job)) => {
                if let Some(mut rd) = self.in_flight.take() {
                    rd.hard_state = job.hard_state;
                    rd.snapshot = job.snapshot;
                    rd.entries = job.entries;
                    self.finish_ready(rd);
                }
            }
            Input::Persisted(Err(e)) => {
                self.storage_failed = Some(e);
                return false;
            }
            Input::Shutdown => return false,
        }
        true
    }

    /// Takes each Ready in the contract's order: send, persist, send what waited for the
    /// persist, apply, advance.
    ///
    /// With `Config::pipelined_persist`, a leader persists on the persist thread and goes
    /// on stepping meanwhile: follower
    /// acknowledgments, new proposals and read requests are handled while its disk write
    /// is in flight, and the AppendEntries and heartbeats they cause go out at once
    /// ([`RawNode::take_early_messages`]), so replication of new entries overlaps the
    /// leader's own fsync (thesis §10.2.1), as etcd's asynchronous storage writes do. Its
    /// own copy counts towards a commit only once persisted (at `advance`), so a majority
    /// is still a majority of disks. A follower or candidate persists inline: everything it
    /// sends after a persist (acknowledgments, votes) has to wait for the disk anyway, and
    /// a hand-off would add a thread wake-up to every acknowledgment. Without the option
    /// the leader persists inline too; its AppendEntries still go out before its own write
    /// (step 1), so that write overlaps the followers' round trip either way.
    ///
    /// Measured with kv-bench on the 2-core development VM (3 local nodes, medians of 3):
    /// the option gave 52k against 54k puts/s at 256 clients and 68k against 93k with one
    /// Clerk pipelining 256 puts, because the AppendEntries sent during the leader's fsync
    /// are more and smaller (more messages, more follower fsyncs, more CPU on a machine
    /// whose 2 cores are the bottleneck). It should pay where the disk is slow and cores
    /// are spare.
    fn process_ready(&mut self) -> Result<()> {
        while self.in_flight.is_none() && self.raw.has_ready() {
            let mut rd = self.raw.ready();
            // 1. Leader traffic promises nothing about our disk: send it first.
            let early = std::mem::take(&mut rd.messages);
            if !early.is_empty() {
                self.transport.send(early);
            }
            // 2. Persist.
            if rd.hard_state.is_some() || rd.snapshot.is_some() || !rd.entries.is_empty() {
                let job = PersistJob {
                    hard_state: rd.hard_state.take(),
                    snapshot: rd.snapshot.take(),
                    entries: std::mem::take(&mut rd.entries),
                };
                if self.raw.is_leader()
                    && let Some(jobs) = &self.jobs
                {
                    match jobs.send(job) {
                        Ok(()) => {
                            self.in_flight = Some(rd);
                            break;
                        }
                        Err(_) => {
                            return Err(Error::InvalidConfig(
                                "the persist thread has stopped".into(),
                            ));
                        }
                    }
                }
                persist_job(&self.storage, &job)?;
                rd.hard_state = job.hard_state;
                rd.snapshot = job.snapshot;
                rd.entries = job.entries;
            }
            self.finish_ready(rd);
        }
        if self.in_flight.is_some() {
            let early = self.raw.take_early_messages();
            if !early.is_empty() {
                self.transport.send(early);
            }
        }
        Ok(())
    }

    /// Steps 3-5 for a persisted Ready: send what promised durability, apply, advance.
    fn finish_ready(&mut self, mut rd: Ready) {
        let late = std::mem::take(&mut rd.persisted_messages);
        if !late.is_empty() {
            self.transport.send(late);
        }
        if let Some(s) = &rd.apply_snapshot {
            let _ = self.apply.send(ApplyMsg::Snapshot {
                index: s.index,
                term: s.term,
                data: s.data.clone(),
            });
        }
        for e in &rd.committed_entries {
            if e.entry_type == EntryType::EntryConfChange as i32 {
                // The core checked it when it was appended; one that does not decode
                // (never written by us) is passed over like a no-op.
                if let Ok(change) = ConfChange::decode(e.data.clone()) {
                    let _ = self.apply.send(ApplyMsg::ConfChange {
                        index: e.index,
                        term: e.term,
                        change,
                    });
                    continue;
                }
            }
            if e.entry_type != EntryType::EntryNormal as i32 {
                self.noops.insert(e.index);
                if self.noops.len() > 64 {
                    self.noops.pop_first();
                }
                continue;
            }
            let _ = self.apply.send(ApplyMsg::Command {
                index: e.index,
                term: e.term,
                data: e.data.clone(),
            });
        }
        for r in &rd.read_states {
            if let Some((ctx, _, _)) = &self.read_round
                && *ctx == r.ctx
                && let Some((_, _, waiting)) = self.read_round.take()
            {
                // A read point on a no-op (a new leader's first entry) would never be
                // reached by a service counting delivered commands: use the index of
                // the entry before it, which holds the same state.
                let mut index = r.index;
                while index > 0 && self.noops.contains(&index) {
                    index -= 1;
                }
                for done in waiting {
                    done(Ok(index));
                }
            }
        }
        self.raw.advance(&rd);
    }
}

impl Status {
    /// True if this node leads.
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
}
