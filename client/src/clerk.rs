//! The Clerk: blocking and non-blocking operations over one retry policy.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::kv::{
    DeleteRequest, ErrorCode, GetReply, GetRequest, KvServiceClient, MemberListReply,
    MemberListRequest, PutAppendRequest, WriteReply,
};
use rpc::{CallError, Channel, ClientRuntime};

use crate::retry::{Attempts, Failure, Next, Timing};
use crate::{Endpoint, Error, Result, parse_endpoints};

/// Longest key the servers accept, in bytes (64 KiB). Longer or empty keys are refused
/// with [`Error::InvalidArgument`] before anything is sent.
pub const MAX_KEY_LEN: usize = 64 * 1024;

/// Largest value any server can accept, in bytes (32 MiB: the cap of `kvserver
/// --max-value-bytes`, whose default is 16 MiB, so that a request fits one 64 MiB rpc
/// frame). A larger value is refused with [`Error::InvalidArgument`] before anything is
/// sent; one under it but over a server's own limit gets [`Error::Rejected`] from the server.
pub const MAX_VALUE_LEN: usize = 32 * 1024 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Options of a [`Clerk`]; `Clerk::builder(endpoints)` starts one with the defaults.
#[derive(Debug, Clone)]
pub struct ClerkBuilder {
    endpoints: Vec<Endpoint>,
    timing: Timing,
    runtime: Option<ClientRuntime>,
}

impl ClerkBuilder {
    /// Overall time one operation may take, retries and backoff included, before it fails
    /// with [`Error::DeadlineExceeded`]. Default 10 s: enough for a leader election or two
    /// (an election takes about one election timeout, ~1 s by default).
    pub fn deadline(mut self, d: Duration) -> Self {
        self.timing.deadline = d;
        self
    }

    /// Longest wait for one server's reply before trying the next. Default 1 s. A leader
    /// answers a write once a majority has it durable (milliseconds); a node that stopped
    /// (SIGSTOP, a dead host without a TCP reset) is detected only by this timeout.
    pub fn attempt_timeout(mut self, d: Duration) -> Self {
        self.timing.attempt_timeout = d;
        self
    }

    /// First backoff between rounds over all servers; doubles each round up to
    /// [`ClerkBuilder::backoff_max`]. Default 20 ms.
    pub fn backoff_min(mut self, d: Duration) -> Self {
        self.timing.backoff_min = d;
        self
    }

    /// Cap of the backoff between rounds. Default 500 ms.
    pub fn backoff_max(mut self, d: Duration) -> Self {
        self.timing.backoff_max = d;
        self
    }

    /// Use this RPC client runtime (one I/O thread) instead of the process-wide one.
    pub fn runtime(mut self, rt: ClientRuntime) -> Self {
        self.runtime = Some(rt);
        self
    }

    /// Builds the Clerk. Connects lazily, on the first operation.
    pub fn build(self) -> Clerk {
        let rt = self.runtime.unwrap_or_else(ClientRuntime::global);
        let nodes = self
            .endpoints
            .iter()
            .map(|e| KvServiceClient::new(rt.channel(e.addr)))
            .collect();
        Clerk {
            inner: Arc::new(Inner {
                topo: RwLock::new(Arc::new(Topology {
                    endpoints: self.endpoints,
                    nodes,
                })),
                rt,
                timing: self.timing,
                leader: AtomicUsize::new(0),
                sessions: Mutex::new(Vec::new()),
                read_id: random_client_id(),
                timer: OnceLock::new(),
            }),
        }
    }
}

/// A client of a raftkv cluster: `get`, `put`, `append`, `delete`, linearizable, each
/// write applied exactly once however often it is retried.
///
/// ```no_run
/// let kv = client::Clerk::new("127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")?;
/// kv.put("greeting", "hello")?;
/// kv.append("greeting", ", world")?;
/// assert_eq!(kv.get_string("greeting")?.as_deref(), Some("hello, world"));
/// assert_eq!(kv.get("nobody")?, None); // not found is not an error, and not ""
/// # Ok::<(), client::Error>(())
/// ```
///
/// See the crate docs for the retry rules, client ids and sequence numbers, and sharing.
#[derive(Debug, Clone)]
pub struct Clerk {
    inner: Arc<Inner>,
}

/// The nodes a Clerk knows: the endpoints it was given, then any it learned from the
/// cluster (a leader hint naming a node added by a membership change). It only grows, so
/// an endpoint index stays valid in every later version.
pub(crate) struct Topology {
    pub(crate) endpoints: Vec<Endpoint>,
    nodes: Vec<KvServiceClient<Channel>>,
}

pub(crate) struct Inner {
    topo: RwLock<Arc<Topology>>,
    /// For the channels of learned nodes.
    rt: ClientRuntime,
    timing: Timing,
    /// Endpoint index of the node that last completed an operation: where the next one
    /// goes first.
    pub(crate) leader: AtomicUsize,
    /// Idle write sessions. A write checks one out (or makes a new one) and returns it
    /// when done, so no two writes in flight ever share a client id.
    sessions: Mutex<Vec<Session>>,
    /// Sent as the client id of reads, which need no deduplication.
    read_id: u64,
    /// Wakes non-blocking operations whose retry waits a backoff; started on first need.
    timer: OnceLock<Timer>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clerk")
            .field("endpoints", &self.topo().endpoints)
            .field("leader", &self.leader.load(Ordering::Relaxed))
            .field("timing", &self.timing)
            .finish()
    }
}

/// A client id and the sequence number of its next write (the server's duplicate table
/// keeps, per client id, the last sequence number applied and its reply).
#[derive(Debug)]
struct Session {
    client_id: u64,
    next_seq: u64,
}

/// One operation, as sent.
#[derive(Debug, Clone)]
enum Request {
    Get(GetRequest),
    Put(PutAppendRequest),
    Append(PutAppendRequest),
    Delete(DeleteRequest),
}

impl Request {
    fn name(&self) -> &'static str {
        match self {
            Request::Get(_) => "get",
            Request::Put(_) => "put",
            Request::Append(_) => "append",
            Request::Delete(_) => "delete",
        }
    }
}

/// What a completed operation returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A Get: the value, or `None` when the key does not exist.
    Value(Option<Bytes>),
    /// A Put, Append or Delete was applied (exactly once). `existed`: for a Delete,
    /// whether the key existed when it applied; `false` for Put and Append.
    Written {
        /// Delete only: the key existed.
        existed: bool,
    },
}

enum Raw {
    Get(GetReply),
    Write(WriteReply),
}

/// How one attempt ended.
enum Answer {
    Done(Outcome),
    Retry(Failure),
    Fatal(Error),
}

pub(crate) fn describe(e: &CallError, timeout: Duration) -> String {
    match e {
        CallError::Unavailable {
            reason,
            source: Some(s),
        } => format!("{reason}: {s}"),
        CallError::Unavailable { reason, .. } => (*reason).to_string(),
        CallError::Timeout => format!("no reply within {timeout:.1?}"),
        other => other.to_string(),
    }
}

fn classify(addr: std::net::SocketAddr, r: Result<Raw, CallError>, timeout: Duration) -> Answer {
    let (err, hint, text, value, existed) = match r {
        Err(e) => return Answer::Retry(Failure::Other(describe(&e, timeout))),
        Ok(Raw::Get(g)) => (g.err, g.leader_hint, g.error_text, Some(g.value), false),
        Ok(Raw::Write(w)) => (w.err, w.leader_hint, w.error_text, None, w.existed),
    };
    let with_text = |what: &str| {
        if text.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {text}")
        }
    };
    match ErrorCode::try_from(err) {
        Ok(ErrorCode::Ok) => Answer::Done(match value {
            Some(v) => Outcome::Value(Some(v)),
            None => Outcome::Written { existed },
        }),
        Ok(ErrorCode::NoKey) => Answer::Done(match value {
            Some(_) => Outcome::Value(None),
            // A Delete of a missing key is still a completed delete.
            None => Outcome::Written { existed: false },
        }),
        Ok(ErrorCode::WrongLeader) => Answer::Retry(Failure::WrongLeader { hint }),
        Ok(ErrorCode::Timeout) => Answer::Retry(Failure::Other(with_text(
            "the leader did not apply it in time (server TIMEOUT)",
        ))),
        Ok(ErrorCode::ShuttingDown) => Answer::Retry(Failure::Other(with_text("shutting down"))),
        Ok(code @ (ErrorCode::InvalidArgument | ErrorCode::StaleRequest | ErrorCode::Refused)) => {
            Answer::Fatal(Error::Rejected {
                addr,
                code: code.as_str_name().to_string(),
                message: with_text("the server refused the request"),
            })
        }
        Err(_) => Answer::Fatal(Error::Rejected {
            addr,
            code: format!("error code {err}"),
            message: with_text("a code this client does not know; use a newer client"),
        }),
    }
}

/// A random non-zero 64-bit id from the OS-seeded thread generator (0 is refused by the
/// servers as "no client id").
fn random_client_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("the key is empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "the key is {} bytes; the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

impl Inner {
    /// The nodes known now.
    pub(crate) fn topo(&self) -> Arc<Topology> {
        Arc::clone(&self.topo.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn node(&self, index: usize) -> KvServiceClient<Channel> {
        self.topo().nodes[index].clone()
    }

    /// Adds node `id` with the address `list` gives it, if it is not known yet. Returns
    /// whether it is known now. The cluster's own word is trusted for this: a leader hint
    /// and a member list come from the servers the caller chose.
    pub(crate) fn learn(&self, id: u64, list: &MemberListReply) -> bool {
        if self.index_of(id).is_some() {
            return true;
        }
        let Some(addr) = list
            .members
            .iter()
            .find(|m| m.id == id)
            .and_then(|m| m.addr.parse::<std::net::SocketAddr>().ok())
        else {
            return false;
        };
        let mut t = self.topo.write().unwrap_or_else(PoisonError::into_inner);
        if !t.endpoints.iter().any(|e| e.id == id) {
            let mut endpoints = t.endpoints.clone();
            let mut nodes = t.nodes.clone();
            endpoints.push(Endpoint { id, addr });
            nodes.push(KvServiceClient::new(self.rt.channel(addr)));
            *t = Arc::new(Topology { endpoints, nodes });
        }
        true
    }

    /// After `target` named `hint` as leader: whether this is a node to look up (not
    /// known, not looked up yet by this operation, whose `asked` list it joins).
    pub(crate) fn should_learn(&self, hint: u64, asked: &mut Vec<u64>) -> bool {
        if hint == 0 || self.index_of(hint).is_some() || asked.contains(&hint) {
            return false;
        }
        asked.push(hint);
        true
    }

    /// Asks node `target` (blocking) where node `id` is, and learns it.
    pub(crate) fn learn_from(&self, target: usize, id: u64, timeout: Duration) {
        if let Ok(list) = self
            .node(target)
            .member_list(&MemberListRequest {}, timeout)
        {
            self.learn(id, &list);
        }
    }

    pub(crate) fn admin_attempts(&self, op: &'static str) -> Attempts {
        Attempts::new(
            op,
            self.topo().endpoints.len(),
            self.leader.load(Ordering::Relaxed),
            self.timing,
            Instant::now(),
        )
    }

    pub(crate) fn index_of(&self, id: u64) -> Option<usize> {
        self.topo().endpoints.iter().position(|e| e.id == id)
    }

    fn checkout(&self) -> Session {
        lock(&self.sessions).pop().unwrap_or_else(|| Session {
            client_id: random_client_id(),
            next_seq: 1,
        })
    }

    fn checkin(&self, s: Session) {
        lock(&self.sessions).push(s);
    }

    /// Builds the request; writes take a session and the next sequence number.
    fn request(&self, op: Op) -> Result<(Request, Option<Session>)> {
        check_key(op.key())?;
        if let Op::Put(_, v) | Op::Append(_, v) = &op
            && v.len() > MAX_VALUE_LEN
        {
            return Err(Error::InvalidArgument(format!(
                "the value is {} bytes; no server accepts more than {MAX_VALUE_LEN} \
                 (kvserver --max-value-bytes, default 16 MiB)",
                v.len()
            )));
        }
        if let Op::Get(key) = op {
            let r = GetRequest {
                key,
                client_id: self.read_id,
                seq: 0,
            };
            return Ok((Request::Get(r), None));
        }
        let mut s = self.checkout();
        let (client_id, seq) = (s.client_id, s.next_seq);
        s.next_seq += 1;
        let req = match op {
            Op::Get(_) => unreachable!("handled above"),
            Op::Put(key, value) => Request::Put(PutAppendRequest {
                key,
                value,
                client_id,
                seq,
            }),
            Op::Append(key, value) => Request::Append(PutAppendRequest {
                key,
                value,
                client_id,
                seq,
            }),
            Op::Delete(key) => Request::Delete(DeleteRequest {
                key,
                client_id,
                seq,
            }),
        };
        Ok((req, Some(s)))
    }

    fn call(&self, target: usize, req: &Request, timeout: Duration) -> Result<Raw, CallError> {
        let n = self.node(target);
        match req {
            Request::Get(r) => n.get(r, timeout).map(Raw::Get),
            Request::Put(r) => n.put(r, timeout).map(Raw::Write),
            Request::Append(r) => n.append(r, timeout).map(Raw::Write),
            Request::Delete(r) => n.delete(r, timeout).map(Raw::Write),
        }
    }

    fn call_async(
        &self,
        target: usize,
        req: &Request,
        timeout: Duration,
        done: impl FnOnce(Result<Raw, CallError>) + Send + 'static,
    ) {
        let n = self.node(target);
        match req {
            Request::Get(r) => n.get_async(r, timeout, move |x| done(x.map(Raw::Get))),
            Request::Put(r) => n.put_async(r, timeout, move |x| done(x.map(Raw::Write))),
            Request::Append(r) => n.append_async(r, timeout, move |x| done(x.map(Raw::Write))),
            Request::Delete(r) => n.delete_async(r, timeout, move |x| done(x.map(Raw::Write))),
        }
    }

    fn attempts(&self, req: &Request) -> Attempts {
        Attempts::new(
            req.name(),
            self.topo().endpoints.len(),
            self.leader.load(Ordering::Relaxed),
            self.timing,
            Instant::now(),
        )
    }

    /// Runs one operation on the calling thread.
    fn run(&self, op: Op) -> Result<Outcome> {
        let (req, session) = self.request(op)?;
        let result = self.run_request(&req);
        if let Some(s) = session {
            // Back to the pool even after DeadlineExceeded: the next write of this session
            // has a higher sequence number, so should the old one still be committed
            // later, it is either applied before it or dropped as a duplicate.
            self.checkin(s);
        }
        result
    }

    fn run_request(&self, req: &Request) -> Result<Outcome> {
        let mut at = self.attempts(req);
        let mut asked = Vec::new();
        loop {
            let Some(timeout) = at.begin(Instant::now()) else {
                return Err(at.give_up(&self.topo().endpoints, Instant::now()));
            };
            let target = at.target();
            let r = self.call(target, req, timeout);
            match classify(self.topo().endpoints[target].addr, r, timeout) {
                Answer::Done(o) => {
                    self.leader.store(target, Ordering::Relaxed);
                    return Ok(o);
                }
                Answer::Fatal(e) => return Err(e),
                Answer::Retry(f) => {
                    // A leader this Clerk does not know (added by a membership change):
                    // ask the node that named it where it is, then follow the hint.
                    if let Failure::WrongLeader { hint } = f
                        && self.should_learn(hint, &mut asked)
                    {
                        self.learn_from(target, hint, timeout);
                    }
                    // Nodes learned, by this operation or another, join its rotation.
                    at.grow(self.topo().endpoints.len());
                    let now = Instant::now();
                    match at.failed(f, |id| self.index_of(id), now, rand::random()) {
                        Next::Retry { wait, .. } => std::thread::sleep(wait),
                        Next::GiveUp => return Err(at.give_up(&self.topo().endpoints, now)),
                    }
                }
            }
        }
    }

    fn timer(&self) -> &Timer {
        self.timer.get_or_init(Timer::start)
    }
}

/// Called once with the result of a non-blocking operation.
pub type Callback<T> = Box<dyn FnOnce(Result<T>) + Send + 'static>;

/// A non-blocking operation in progress.
struct Pending {
    inner: Arc<Inner>,
    req: Request,
    session: Option<Session>,
    at: Attempts,
    /// Leader hints this operation looked up (see [`Inner::should_learn`]).
    asked: Vec<u64>,
    done: Callback<Outcome>,
}

impl Pending {
    fn finish(self, r: Result<Outcome>) {
        if let Some(s) = self.session {
            self.inner.checkin(s);
        }
        (self.done)(r);
    }

    /// Sends the next attempt; its completion decides what follows. Recursion through an
    /// immediate failure is bounded: at most one attempt per node before a backoff, and
    /// backoffs go through the timer thread.
    fn send(mut self: Box<Self>) {
        let Some(timeout) = self.at.begin(Instant::now()) else {
            let e = self
                .at
                .give_up(&self.inner.topo().endpoints, Instant::now());
            return self.finish(Err(e));
        };
        let target = self.at.target();
        let inner = Arc::clone(&self.inner);
        let req = self.req.clone();
        inner.call_async(target, &req, timeout, move |r| {
            self.answered(target, timeout, r)
        });
    }

    fn answered(mut self: Box<Self>, target: usize, timeout: Duration, r: Result<Raw, CallError>) {
        let inner = Arc::clone(&self.inner);
        match classify(inner.topo().endpoints[target].addr, r, timeout) {
            Answer::Done(o) => {
                inner.leader.store(target, Ordering::Relaxed);
                self.finish(Ok(o));
            }
            Answer::Fatal(e) => self.finish(Err(e)),
            Answer::Retry(f) => {
                // As in the blocking form: look up a leader this Clerk does not know, with
                // a non-blocking MemberList to the node that named it, then go on.
                if let Failure::WrongLeader { hint } = f
                    && inner.should_learn(hint, &mut self.asked)
                {
                    let i2 = Arc::clone(&inner);
                    inner.node(target).member_list_async(
                        &MemberListRequest {},
                        timeout,
                        move |list| {
                            if let Ok(list) = list {
                                i2.learn(hint, &list);
                            }
                            self.retry(f);
                        },
                    );
                    return;
                }
                self.retry(f);
            }
        }
    }

    /// After a failed attempt: the next one now, after a backoff (on the timer thread), or
    /// the end.
    fn retry(mut self: Box<Self>, f: Failure) {
        let inner = Arc::clone(&self.inner);
        // Nodes learned, by this operation or another, join its rotation.
        self.at.grow(inner.topo().endpoints.len());
        let now = Instant::now();
        match self
            .at
            .failed(f, |id| inner.index_of(id), now, rand::random())
        {
            Next::Retry { wait, .. } if wait.is_zero() => self.send(),
            Next::Retry { wait, .. } => inner.timer().schedule(now + wait, self),
            Next::GiveUp => {
                let e = self.at.give_up(&inner.topo().endpoints, now);
                self.finish(Err(e));
            }
        }
    }
}

/// One thread per Clerk (started on the first backoff of a non-blocking operation) that
/// sends retries whose backoff has passed. Non-blocking operations never sleep on the RPC
/// I/O thread.
struct Timer {
    shared: Arc<TimerShared>,
}

struct TimerShared {
    state: Mutex<TimerState>,
    wake: Condvar,
}

#[derive(Default)]
struct TimerState {
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    ops: std::collections::HashMap<u64, Box<Pending>>,
    next_id: u64,
    stop: bool,
}

impl Timer {
    fn start() -> Timer {
        let shared = Arc::new(TimerShared {
            state: Mutex::new(TimerState::default()),
            wake: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        // Detached: it ends when the Clerk is dropped (its last pending operation holds the
        // Clerk alive until it finishes).
        std::thread::Builder::new()
            .name("clerk-retry".into())
            .spawn(move || Timer::run(&s))
            .expect("cannot start the Clerk's retry thread (out of threads?)");
        Timer { shared }
    }

    fn schedule(&self, at: Instant, op: Box<Pending>) {
        let mut st = lock(&self.shared.state);
        let id = st.next_id;
        st.next_id += 1;
        st.ops.insert(id, op);
        st.queue.push(Reverse((at, id)));
        drop(st);
        self.shared.wake.notify_one();
    }

    fn run(shared: &TimerShared) {
        let mut st = lock(&shared.state);
        loop {
            if st.stop {
                return;
            }
            let now = Instant::now();
            match st.queue.peek() {
                Some(Reverse((at, _))) if *at <= now => {
                    let Some(Reverse((_, id))) = st.queue.pop() else {
                        continue;
                    };
                    if let Some(op) = st.ops.remove(&id) {
                        drop(st);
                        op.send();
                        st = lock(&shared.state);
                    }
                }
                Some(Reverse((at, _))) => {
                    let wait = at.saturating_duration_since(now);
                    st = shared
                        .wake
                        .wait_timeout(st, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None => {
                    st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
    }
}

fn bytes_of(b: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(b.as_ref())
}

impl Clerk {
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
    /// A Clerk with default options for the endpoints in `endpoints` (see
    /// [`crate::parse_endpoints`]: `"1=host:port,2=host:port"` or `"host:port,host:port"`).
    ///
    /// # Errors
    /// [`Error::InvalidEndpoints`] if the list does not parse.
    pub fn new(endpoints: &str) -> Result<Clerk> {
        Ok(Clerk::builder(parse_endpoints(endpoints)?).build())
    }

    /// Options for a Clerk of these endpoints.
    ///
    /// # Panics
    /// If `endpoints` is empty or repeats an id ([`crate::parse_endpoints`] never returns
    /// such a list).
    pub fn builder(endpoints: Vec<Endpoint>) -> ClerkBuilder {
        assert!(!endpoints.is_empty(), "a Clerk needs at least one endpoint");
        for (i, e) in endpoints.iter().enumerate() {
            assert!(
                endpoints[..i].iter().all(|o| o.id != e.id),
                "node id {} appears twice",
                e.id
            );
        }
        ClerkBuilder {
            endpoints,
            timing: Timing {
                deadline: Duration::from_secs(10),
                attempt_timeout: Duration::from_secs(1),
                backoff_min: Duration::from_millis(20),
                backoff_max: Duration::from_millis(500),
            },
            runtime: None,
        }
    }

    /// The cluster's endpoints: those given, in their order, then any learned from the
    /// cluster (a leader that joined by a membership change, found through a follower's
    /// member list).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.inner.topo().endpoints.clone()
    }

    /// The node this Clerk sends to first: the last one that completed an operation.
    pub fn leader(&self) -> Endpoint {
        self.inner.topo().endpoints[self.inner.leader.load(Ordering::Relaxed)]
    }

    /// The value of `key`, or `None` if it does not exist (never written, or deleted).
    /// Linearizable: served by a current leader after a ReadIndex round.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad key; [`Error::DeadlineExceeded`] when no
    /// leader answered in time; [`Error::Rejected`] if a server refused it.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        match self.inner.run(Op::Get(bytes_of(key)))? {
            Outcome::Value(v) => Ok(v),
            Outcome::Written { .. } => unreachable!("a Get completes with a value"),
        }
    }

    /// [`Clerk::get`] as text; bytes that are not UTF-8 are replaced by U+FFFD.
    ///
    /// # Errors
    /// As [`Clerk::get`].
    pub fn get_string(&self, key: impl AsRef<[u8]>) -> Result<Option<String>> {
        Ok(self
            .get(key)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Sets `key` to `value`. Applied exactly once, however often it is retried.
    ///
    /// # Errors
    /// As [`Clerk::get`]; after [`Error::DeadlineExceeded`] the write may or may not
    /// have been applied.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.inner
            .run(Op::Put(bytes_of(key), bytes_of(value)))
            .map(drop)
    }

    /// Appends `value` to the value of `key` (a missing key counts as empty). Applied
    /// exactly once, however often it is retried.
    ///
    /// # Errors
    /// As [`Clerk::put`].
    pub fn append(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.inner
            .run(Op::Append(bytes_of(key), bytes_of(value)))
            .map(drop)
    }

    /// Removes `key` and says whether it existed; removing a missing key is not an
    /// error. Applied exactly once (a retried delete reports what the first application
    /// saw, from the servers' duplicate table).
    ///
    /// # Errors
    /// As [`Clerk::put`].
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        match self.inner.run(Op::Delete(bytes_of(key)))? {
            Outcome::Written { existed } => Ok(existed),
            Outcome::Value(_) => unreachable!("a Delete completes with Written"),
        }
    }

    /// Starts `op` without waiting; `done` runs once with its outcome.
    ///
    /// `done` runs on the RPC client's I/O thread, on this Clerk's retry thread, or —
    /// if the operation fails before anything is sent (bad key) — on the calling thread
    /// before this returns. Keep it short (send to a channel, bump a counter): while it
    /// runs, no other reply of the process is read.
    ///
    /// Any number of operations may be in flight: each write uses its own client id
    /// (sessions are pooled), so they never shadow each other in the servers' duplicate
    /// tables. Operations in flight together are concurrent in the linearizability sense:
    /// the cluster may apply them in any order; wait for one's callback before starting
    /// another if their order matters.
    pub fn start(&self, op: Op, done: impl FnOnce(Result<Outcome>) + Send + 'static) {
        let (req, session) = match self.inner.request(op) {
            Ok(x) => x,
            Err(e) => return done(Err(e)),
        };
        let at = self.inner.attempts(&req);
        Box::new(Pending {
            inner: Arc::clone(&self.inner),
            req,
            session,
            at,
            asked: Vec::new(),
            done: Box::new(done),
        })
        .send();
    }

    /// Non-blocking [`Clerk::get`]: `done` gets the value or `None` (see [`Clerk::start`]
    /// for where `done` runs).
    pub fn get_async(
        &self,
        key: impl AsRef<[u8]>,
        done: impl FnOnce(Result<Option<Bytes>>) + Send + 'static,
    ) {
        self.start(Op::Get(bytes_of(key)), move |r| {
            done(r.map(|o| match o {
                Outcome::Value(v) => v,
                Outcome::Written { .. } => None,
            }))
        });
    }

    /// Non-blocking [`Clerk::put`] (see [`Clerk::start`]).
    pub fn put_async(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        done: impl FnOnce(Result<()>) + Send + 'static,
    ) {
        self.start(Op::Put(bytes_of(key), bytes_of(value)), move |r| {
            done(r.map(drop))
        });
    }

    /// Non-blocking [`Clerk::append`] (see [`Clerk::start`]).
    pub fn append_async(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        done: impl FnOnce(Result<()>) + Send + 'static,
    ) {
        self.start(Op::Append(bytes_of(key), bytes_of(value)), move |r| {
            done(r.map(drop))
        });
    }

    /// Non-blocking [`Clerk::delete`] (see [`Clerk::start`]); `done` gets whether the key
    /// existed.
    pub fn delete_async(
        &self,
        key: impl AsRef<[u8]>,
        done: impl FnOnce(Result<bool>) + Send + 'static,
    ) {
        self.start(Op::Delete(bytes_of(key)), move |r| {
            done(r.map(|o| matches!(o, Outcome::Written { existed: true })))
        });
    }
}

/// An operation for [`Clerk::start`] (keys and values as [`Bytes`]: no copy).
#[derive(Debug, Clone)]
pub enum Op {
    /// Read a key.
    Get(Bytes),
    /// Set a key.
    Put(Bytes, Bytes),
    /// Append to a key's value.
    Append(Bytes, Bytes),
    /// Remove a key.
    Delete(Bytes),
}

impl Op {
    fn key(&self) -> &[u8] {
        match self {
            Op::Get(k) | Op::Put(k, _) | Op::Append(k, _) | Op::Delete(k) => k,
        }
    }
}
