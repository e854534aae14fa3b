//! The client: one I/O thread per [`ClientRuntime`], a [`Channel`] per address.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use prost::Message;
use proto::rpc::ErrorHeader;
use proto::service::{Body, CallError, Caller, Completion, Status};

use crate::frame::{self, FrameKind};
use crate::reader::{FrameReader, KEEP_BUF};
use crate::server::READ_BUDGET;

const WAKER: Token = Token(0);
const READ_CHUNK: usize = 64 * 1024;

/// Client limits. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Largest frame sent or accepted, header included. Default 64 MiB.
    pub max_frame: usize,
    /// Calls in flight per connection beyond which new calls fail at once with
    /// [`CallError::Overloaded`]. Default 8192.
    pub max_in_flight: usize,
    /// Request bytes queued and not yet taken by the kernel, per connection, beyond which
    /// new calls fail at once with [`CallError::Overloaded`]: a peer that stops reading
    /// holds at most about this much of the client's memory. Default 64 MiB.
    pub max_queued_bytes: usize,
    /// First wait before reconnecting after a failed connect; doubles on each failure.
    /// Default 10 ms.
    pub backoff_min: Duration,
    /// Cap of the reconnect wait. Default 1 s.
    pub backoff_max: Duration,
    /// After traffic, how long the I/O thread (and a blocking caller waiting for its
    /// reply) keeps polling before it sleeps, yielding the CPU between polls. On a VM,
    /// waking a thread whose vCPU has halted costs tens of microseconds; a reply that
    /// comes within this window costs no wake-up. Default 50 µs; `Duration::ZERO` always
    /// sleeps at once.
    pub spin: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            max_frame: frame::DEFAULT_MAX_FRAME,
            max_in_flight: 8192,
            max_queued_bytes: 64 << 20,
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            spin: Duration::from_micros(50),
        }
    }
}

/// Counters of a [`ClientRuntime`], from [`ClientRuntime::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Request bytes queued and not yet taken by the kernel, all connections together.
    /// Bytes of a call whose deadline passed before any of them were written are dropped
    /// from the queue, so this falls back to 0 once a stuck peer's calls have ended.
    pub queued_bytes: usize,
    /// The most bytes the I/O thread read from one connection in one turn of its loop (at
    /// most [`READ_BUDGET`] plus one read): a peer that streams replies cannot hold the
    /// thread that serves every other connection.
    pub max_read_per_turn: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Request ids are already well spread; hashing them again is wasted time.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Where a blocking caller waits: one per thread, reused by every call it makes.
struct Slot {
    thread: Thread,
    result: Mutex<Option<(u64, Result<Bytes, CallError>)>>,
}

thread_local! {
    static SLOT: Arc<Slot> = Arc::new(Slot {
        thread: std::thread::current(),
        result: Mutex::new(None),
    });
    /// Id of the runtime whose I/O thread this is (0: none).
    static IO_THREAD: Cell<usize> = const { Cell::new(0) };
}

static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

enum Waiter {
    Blocking { slot: Arc<Slot>, ticket: u64 },
    Callback(Completion),
}

impl Waiter {
    fn complete(self, r: Result<Bytes, CallError>) {
        match self {
            Waiter::Blocking { slot, ticket } => {
                *lock(&slot.result) = Some((ticket, r));
                slot.thread.unpark();
            }
            Waiter::Callback(f) if IO_THREAD.with(|c| c.get()) != 0 => {
                // A panicking completion must not kill the I/O thread: every other call
                // of the runtime (of the process, for the global one) would hang.
                let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(r)));
                if caught.is_err() {
                    log::error!("rpc client: a completion panicked; the I/O thread goes on");
                }
            }
            Waiter::Callback(f) => f(r),
        }
    }
}

struct Pending {
    waiter: Waiter,
    /// Set for non-blocking calls: the I/O thread times them out. Blocking callers time
    /// themselves out.
    deadline: Option<Instant>,
    /// When the request was queued: if the kernel has taken none of the connection's
    /// bytes since, by the deadline, the peer is not reading (see [`ConnState::expire`]).
    queued_at: Instant,
}

struct ConnState {
    /// Request bytes not yet taken by the kernel start at `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// `(request id, start, end)` in `out` of every request not wholly written, in order:
    /// a call that ends before any of its bytes were written takes them out of the queue.
    frames: VecDeque<(u64, usize, usize)>,
    /// When the kernel last took bytes of this connection, or the queue last went from
    /// empty to not empty.
    write_progress: Instant,
    /// The runtime's count of queued bytes, kept equal to the sum of `out.len() - out_pos`.
    queued: Arc<AtomicUsize>,
    pending: IdMap<Pending>,
    next_id: u64,
    connected: bool,
    /// Queued in the runtime's dirty list (calls made on the I/O thread).
    dirty: bool,
    closed: bool,
    /// The peer took no bytes for a whole deadline: new calls go to a new connection, and
    /// this one closes once its calls have ended.
    retired: bool,
}

impl ConnState {
    fn new(queued: Arc<AtomicUsize>) -> ConnState {
        ConnState {
            out: Vec::new(),
            out_pos: 0,
            frames: VecDeque::new(),
            write_progress: Instant::now(),
            queued,
            pending: IdMap::default(),
            next_id: 1,
            connected: false,
            dirty: false,
            closed: false,
            retired: false,
        }
    }

    /// Appends request `id` to the queue.
    fn push_request(&mut self, id: u64, service: &str, method: &str, request: &dyn Body) {
        if self.out_pos == self.out.len() {
            self.write_progress = Instant::now();
        }
        let start = self.out.len();
        frame::encode_request(&mut self.out, id, service, method, request);
        let end = self.out.len();
        self.frames.push_back((id, start, end));
        self.queued.fetch_add(end - start, Ordering::AcqRel);
    }

    /// The kernel took `n` more bytes.
    fn wrote(&mut self, n: usize) {
        self.out_pos += n;
        self.queued.fetch_sub(n, Ordering::AcqRel);
        self.write_progress = Instant::now();
        while self.frames.front().is_some_and(|f| f.2 <= self.out_pos) {
            self.frames.pop_front();
        }
    }

    /// Forgets every queued byte (the connection is gone).
    fn clear_queue(&mut self) {
        self.queued
            .fetch_sub(self.out.len() - self.out_pos, Ordering::AcqRel);
        self.out = Vec::new();
        self.out_pos = 0;
        self.frames.clear();
    }

    /// Calls `(id, queued_at)` ended without their replies (deadline passed). The bytes
    /// of each whose request was not written at all leave the queue (one compaction for
    /// all). If one of them is still (partly) unwritten and the kernel has taken nothing
    /// of this connection since it was queued, the peer is not reading: the connection is
    /// retired (new calls reconnect); so is one left with unwritten bytes and no call
    /// waiting (`calls` must already be out of `pending`). Returns true when it was
    /// retired now.
    fn expire(&mut self, calls: &[(u64, Instant)]) -> bool {
        let mut drop = vec![false; self.frames.len()];
        let mut any = false;
        let mut stalled = false;
        for &(id, queued_at) in calls {
            let Some(k) = self.frames.iter().position(|f| f.0 == id) else {
                continue; // wholly written
            };
            stalled |= self.write_progress <= queued_at;
            if self.frames[k].1 >= self.out_pos {
                drop[k] = true;
                any = true;
            }
        }
        if any {
            // The frames cover every unwritten byte, from the first one's start (a frame
            // partly written is never dropped: framing would be lost).
            let base = self.frames.front().map_or(self.out_pos, |f| f.1);
            let mut out = Vec::with_capacity(self.out.len() - base);
            let mut kept = VecDeque::with_capacity(self.frames.len());
            let mut freed = 0;
            for (&(id, start, end), &gone) in self.frames.iter().zip(&drop) {
                if gone {
                    freed += end - start;
                    continue;
                }
                let from = out.len();
                out.extend_from_slice(&self.out[start..end]);
                kept.push_back((id, from, out.len()));
            }
            self.out_pos -= base;
            self.out = out;
            self.frames = kept;
            self.queued.fetch_sub(freed, Ordering::AcqRel);
        }
        // Bytes nobody waits for any more (the rest of a request partly written) that the
        // peer has not taken by a deadline: the connection goes too, or they would stay
        // queued for as long as the peer does not read.
        let orphaned = self.pending.is_empty() && self.out_pos < self.out.len();
        let retire = (stalled || orphaned) && !self.retired;
        self.retired |= retire;
        retire
    }
}

/// One outgoing TCP connection, shared by its [`Channel`] and the I/O thread.
struct Conn {
    token: Token,
    addr: SocketAddr,
    stream: TcpStream,
    state: Mutex<ConnState>,
    closed: AtomicBool,
    ever_connected: AtomicBool,
}

impl Conn {
    /// Writes queued bytes until done or `WouldBlock`. Errors are left for the I/O
    /// thread, which sees them as events.
    fn flush_locked(&self, st: &mut ConnState) -> io::Result<()> {
        while st.out_pos < st.out.len() {
            match (&self.stream).write(&st.out[st.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => st.wrote(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        st.out_pos = 0;
        st.frames.clear();
        if st.out.capacity() > KEEP_BUF {
            st.out = Vec::new();
        } else {
            st.out.clear();
        }
        Ok(())
    }
}

/// What the I/O thread and the callers share.
struct Shared {
    id: usize,
    config: ClientConfig,
    registry: mio::Registry,
    waker: Waker,
    new_conns: Mutex<Vec<Arc<Conn>>>,
    /// Connections that calls made on the I/O thread wrote to; flushed after the batch.
    dirty: Mutex<Vec<Arc<Conn>>>,
    next_token: AtomicUsize,
    shutdown: AtomicBool,
    base: Instant,
    /// When the I/O thread plans to look for expired non-blocking calls, in nanoseconds
    /// since `base` (`u64::MAX`: no plan).
    next_sweep: AtomicU64,
    /// Request bytes queued and not yet taken by the kernel, all connections together.
    queued_bytes: Arc<AtomicUsize>,
    /// The most bytes the I/O thread read from one connection in one turn.
    max_read_per_turn: AtomicUsize,
}

impl Shared {
    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }
    fn on_io_thread(&self) -> bool {
        IO_THREAD.with(|c| c.get()) == self.id
    }
    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("rpc client: cannot wake the I/O thread: {e}");
        }
    }
}

/// The client's I/O thread and the connections it serves. Cheap to clone; the thread stops
/// when the last clone (and the last [`Channel`] using it) is dropped, failing calls still
/// in flight with [`CallError::Unavailable`].
///
/// Most code uses [`ClientRuntime::global`], started on first use and alive for the whole
/// process: one I/O thread per process for all peers and clients. Tests and benchmarks
/// make their own with [`ClientRuntime::new`] to control its life and limits.
#[derive(Clone)]
pub struct ClientRuntime {
    inner: Arc<RuntimeHandle>,
}

struct RuntimeHandle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ClientRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRuntime")
            .field("id", &self.inner.shared.id)
            .finish()
    }
}

impl Drop for RuntimeHandle {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.wake();
        if self.shared.on_io_thread() {
            return; // the last handle died in a completion; the thread exits by itself
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl ClientRuntime {
    /// Starts an I/O thread with `config`.
    pub fn new(config: ClientConfig) -> io::Result<ClientRuntime> {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            config,
            registry: poll.registry().try_clone()?,
            waker,
            new_conns: Mutex::new(Vec::new()),
            dirty: Mutex::new(Vec::new()),
            next_token: AtomicUsize::new(1),
            shutdown: AtomicBool::new(false),
            base: Instant::now(),
            next_sweep: AtomicU64::new(u64::MAX),
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            max_read_per_turn: AtomicUsize::new(0),
        });
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("rpc-client-io".into())
            .spawn(move || IoLoop::new(poll, s2).run())?;
        Ok(ClientRuntime {
            inner: Arc::new(RuntimeHandle {
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The process-wide runtime, started with default limits on first use.
    ///
    /// # Panics
    /// If the I/O thread cannot be started the first time (no threads or fds left).
    pub fn global() -> ClientRuntime {
        static GLOBAL: OnceLock<ClientRuntime> = OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                ClientRuntime::new(ClientConfig::default())
                    .expect("rpc: cannot start the client I/O thread")
            })
            .clone()
    }

    /// The runtime's counters; for tests, metrics and benchmarks.
    pub fn stats(&self) -> ClientStats {
        let sh = &self.inner.shared;
        ClientStats {
            queued_bytes: sh.queued_bytes.load(Ordering::Acquire),
            max_read_per_turn: sh.max_read_per_turn.load(Ordering::Relaxed),
        }
    }

    /// A channel to `addr` served by this runtime. Connects on first call.
    pub fn channel(&self, addr: SocketAddr) -> Channel {
        Channel {
            inner: Arc::new(ChannelInner {
                addr,
                rt: self.clone(),
                state: Mutex::new(ChanState {
                    conn: None,
                    backoff: Duration::ZERO,
                    retry_at: None,
                }),
            }),
        }
    }
}

/// A connection to one server address, shared by any number of threads (clone it freely:
/// clones share the connection). Many calls are in flight at once, matched by request id.
///
/// Connects lazily on the first call; after the connection breaks, the next call
/// reconnects at once if the connection had worked, else after a backoff that doubles from
/// [`ClientConfig::backoff_min`] to [`ClientConfig::backoff_max`]. While backing off,
/// calls fail at once with [`CallError::Unavailable`]. Calls in flight when a connection
/// breaks fail with `Unavailable`.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<ChannelInner>,
}

struct ChannelInner {
    addr: SocketAddr,
    rt: ClientRuntime,
    state: Mutex<ChanState>,
}

struct ChanState {
    conn: Option<Arc<Conn>>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        if let Some(c) = lock(&self.state).conn.take() {
            // The I/O thread sees the hang-up and fails whatever is still in flight.
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

/// `timeout` from now, at most a century: longer ones (e.g. `Duration::MAX` for "no
/// limit") would overflow `Instant` or the I/O thread's nanosecond clock.
fn deadline_after(timeout: Duration) -> Instant {
    Instant::now() + timeout.min(Duration::from_secs(100 * 365 * 24 * 3600))
}

fn unavailable(reason: &'static str, source: Option<io::Error>) -> CallError {
    CallError::Unavailable {
        reason,
        source: source.map(Arc::new),
    }
}

impl Channel {
    /// A channel on the process-wide runtime ([`ClientRuntime::global`]).
    pub fn new(addr: SocketAddr) -> Channel {
        ClientRuntime::global().channel(addr)
    }

    /// The server address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The live connection, connecting if allowed.
    fn conn(&self) -> Result<Arc<Conn>, CallError> {
        let shared = &self.inner.rt.inner.shared;
        if shared.shutdown.load(Ordering::Relaxed) {
            return Err(unavailable("client runtime shut down", None));
        }
        let mut cs = lock(&self.inner.state);
        if let Some(c) = &cs.conn {
            if !c.closed.load(Ordering::Acquire) {
                return Ok(c.clone());
            }
            let cfg = &shared.config;
            if c.ever_connected.load(Ordering::Acquire) {
                cs.backoff = Duration::ZERO;
                cs.retry_at = None;
            } else {
                cs.backoff = if cs.backoff.is_zero() {
                    cfg.backoff_min
                } else {
                    (cs.backoff * 2).min(cfg.backoff_max)
                };
                cs.retry_at = Some(Instant::now() + cs.backoff);
            }
            cs.conn = None;
        }
        if let Some(at) = cs.retry_at
            && Instant::now() < at
        {
            return Err(unavailable("backing off after a failed connect", None));
        }
        let stream = TcpStream::connect(self.inner.addr).map_err(|e| {
            let cfg = &shared.config;
            cs.backoff = (cs.backoff * 2).clamp(cfg.backoff_min, cfg.backoff_max);
            cs.retry_at = Some(Instant::now() + cs.backoff);
            unavailable("connect failed", Some(e))
        })?;
        let _ = stream.set_nodelay(true);
        let token = Token(shared.next_token.fetch_add(1, Ordering::Relaxed));
        let conn = Arc::new(Conn {
            token,
            addr: self.inner.addr,
            stream,
            state: Mutex::new(ConnState::new(shared.queued_bytes.clone())),
            closed: AtomicBool::new(false),
            ever_connected: AtomicBool::new(false),
        });
        // Hand it to the I/O thread before registering: every event for the token then
        // finds it in the I/O thread's map.
        lock(&shared.new_conns).push(conn.clone());
        shared
            .registry
            .register(
                &mut SourceFd(&conn.stream.as_raw_fd()),
                token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| {
                conn.closed.store(true, Ordering::Release);
                lock(&conn.state).closed = true;
                unavailable("cannot register the socket", Some(e))
            })?;
        cs.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Queues a request and writes it if nobody else is writing. Returns the connection
    /// and request id, or the error with the waiter handed back.
    fn start(
        &self,
        service: &str,
        method: &str,
        request: &dyn Body,
        waiter: Waiter,
        deadline: Option<Instant>,
    ) -> Result<(Arc<Conn>, u64), (CallError, Waiter)> {
        let shared = &self.inner.rt.inner.shared;
        let len = frame::HEADER_LEN + service.len() + method.len() + 12 + request.body_len();
        if len > shared.config.max_frame {
            return Err((
                CallError::Remote {
                    status: Status::ResourceExhausted,
                    message: format!(
                        "request of {len} bytes exceeds the frame limit of {}",
                        shared.config.max_frame
                    ),
                },
                waiter,
            ));
        }
        let mut conn = match self.conn() {
            Ok(c) => c,
            Err(e) => return Err((e, waiter)),
        };
        let mut st = lock(&conn.state);
        if st.closed || st.retired {
            // Closed or retired since `conn()` looked: once more, for the new connection.
            drop(st);
            conn = match self.conn() {
                Ok(c) => c,
                Err(e) => return Err((e, waiter)),
            };
            st = lock(&conn.state);
        }
        if st.closed {
            return Err((unavailable("connection closed", None), waiter));
        }
        if st.retired {
            return Err((
                unavailable(
                    "connection reset: the server took no bytes for a whole deadline",
                    None,
                ),
                waiter,
            ));
        }
        if st.pending.len() >= shared.config.max_in_flight
            || st.out.len() - st.out_pos > shared.config.max_queued_bytes
        {
            return Err((CallError::Overloaded, waiter));
        }
        let id = st.next_id;
        st.next_id += 1;
        let was_empty = st.out.len() == st.out_pos;
        st.push_request(id, service, method, request);
        st.pending.insert(
            id,
            Pending {
                waiter,
                deadline,
                queued_at: Instant::now(),
            },
        );
        if shared.on_io_thread() {
            if !st.dirty {
                st.dirty = true;
                lock(&shared.dirty).push(conn.clone());
            }
        } else if was_empty && st.connected {
            // Errors surface as events on the I/O thread.
            let _ = conn.flush_locked(&mut st);
        }
        drop(st);
        if let Some(d) = deadline {
            let n = shared.nanos(d);
            let prev = shared.next_sweep.fetch_min(n, Ordering::AcqRel);
            if n < prev && !shared.on_io_thread() {
                shared.wake();
            }
        }
        Ok((conn, id))
    }

    fn call_blocking(
        &self,
        service: &str,
        method: &str,
        request: &dyn Body,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        if self.inner.rt.inner.shared.on_io_thread() {
            // Only this thread reads replies: waiting here would wait forever.
            return Err(unavailable(
                "blocking call from a completion (on the I/O thread); use a non-blocking call",
                None,
            ));
        }
        let deadline = deadline_after(timeout);
        let slot = SLOT.with(|s| s.clone());
        let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
        let waiter = Waiter::Blocking {
            slot: slot.clone(),
            ticket,
        };
        let (conn, id) = self
            .start(service, method, request, waiter, None)
            .map_err(|(e, _)| e)?;
        let take = || {
            let mut g = lock(&slot.result);
            match g.take() {
                Some((t, r)) if t == ticket => Some(r),
                _ => None,
            }
        };
        let spin_until = Instant::now() + self.inner.rt.inner.shared.config.spin;
        loop {
            if let Some(r) = take() {
                return r;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if now < spin_until {
                std::thread::yield_now();
                continue;
            }
            std::thread::park_timeout(deadline - now);
        }
        {
            let mut st = lock(&conn.state);
            if let Some(p) = st.pending.remove(&id) {
                if st.expire(&[(id, p.queued_at)]) {
                    conn.closed.store(true, Ordering::Release);
                    log::warn!(
                        "rpc client: {} took no request bytes for a whole call deadline; \
                         new calls use a new connection",
                        conn.addr
                    );
                }
                if st.retired && st.pending.is_empty() {
                    // The I/O thread sees the hang-up and closes it.
                    let _ = conn.stream.shutdown(std::net::Shutdown::Both);
                }
                return Err(CallError::Timeout);
            }
        }
        // The I/O thread already took the call and is completing it.
        loop {
            if let Some(r) = take() {
                return r;
            }
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }

    fn call_nonblocking(
        &self,
        service: &str,
        method: &str,
        request: &dyn Body,
        timeout: Duration,
        done: Completion,
    ) {
        let deadline = deadline_after(timeout);
        if let Err((e, w)) = self.start(
            service,
            method,
            request,
            Waiter::Callback(done),
            Some(deadline),
        ) {
            w.complete(Err(e));
        }
    }
}

impl Caller for Channel {
    fn call(
        &self,
        service: &'static str,
        method: &'static str,
        request: &dyn Body,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        self.call_blocking(service, method, request, timeout)
    }

    fn call_async(
        &self,
        service: &'static str,
        method: &'static str,
        request: &dyn Body,
        timeout: Duration,
        done: Completion,
    ) {
        self.call_nonblocking(service, method, request, timeout, done)
    }
}

/// The I/O thread's own state.
struct IoLoop {
    poll: Poll,
    shared: Arc<Shared>,
    conns: HashMap<Token, (Arc<Conn>, FrameReader)>,
    scratch: Vec<u8>,
    done: Vec<(Waiter, Result<Bytes, CallError>)>,
    /// Connections that used their read budget with bytes possibly left in the socket:
    /// read again on the next turn (after the other events and the deadline sweep).
    backlog: Vec<Token>,
}

impl IoLoop {
    fn new(poll: Poll, shared: Arc<Shared>) -> IoLoop {
        IoLoop {
            poll,
            shared,
            conns: HashMap::new(),
            scratch: vec![0; READ_CHUNK],
            done: Vec::new(),
            backlog: Vec::new(),
        }
    }

    fn run(mut self) {
        IO_THREAD.with(|c| c.set(self.shared.id));
        let mut events = Events::with_capacity(1024);
        let spin = self.shared.config.spin;
        let mut spin_until: Option<Instant> = None;
        loop {
            let next = self.shared.next_sweep.load(Ordering::Acquire);
            let timeout = if next == u64::MAX {
                None
            } else {
                let now = self.shared.nanos(Instant::now());
                // Round up to a whole millisecond so the poll does not return just early.
                Some(Duration::from_nanos(next.saturating_sub(now)) + Duration::from_micros(999))
            };
            let spinning = spin_until.is_some_and(|t| Instant::now() < t);
            let timeout = if spinning || !self.backlog.is_empty() {
                Some(Duration::ZERO)
            } else {
                timeout
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("rpc client: poll failed, stopping: {e}");
                break;
            }
            if self.shared.shutdown.load(Ordering::SeqCst) {
                break;
            }
            if spinning && events.is_empty() {
                // Lets a thread waiting for this CPU (say, the server we wait for) run.
                std::thread::yield_now();
            }
            self.adopt_new_conns();
            let mut active = !self.backlog.is_empty();
            for token in std::mem::take(&mut self.backlog) {
                if let Some((conn, _)) = self.conns.get(&token) {
                    let conn = conn.clone();
                    // As if the end of stream might be there: read on to `WouldBlock`.
                    self.read(token, &conn, true);
                }
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                active = true;
                self.conn_event(ev.token(), ev.is_error(), ev.is_read_closed());
            }
            if active && !spin.is_zero() {
                spin_until = Some(Instant::now() + spin);
            }
            self.flush_dirty();
            let next = self.shared.next_sweep.load(Ordering::Acquire);
            if next != u64::MAX && self.shared.nanos(Instant::now()) >= next {
                self.sweep_timeouts();
                self.flush_dirty();
            }
        }
        // Shutting down: fail everything still in flight.
        self.adopt_new_conns();
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            self.fail_conn(t, "client runtime shut down", None);
        }
    }

    /// Takes over the connections callers opened since the last look.
    fn adopt_new_conns(&mut self) {
        for c in std::mem::take(&mut *lock(&self.shared.new_conns)) {
            self.conns.insert(c.token, (c, FrameReader::default()));
        }
    }

    fn flush_dirty(&mut self) {
        loop {
            let dirty = std::mem::take(&mut *lock(&self.shared.dirty));
            if dirty.is_empty() {
                return;
            }
            for c in dirty {
                let mut st = lock(&c.state);
                st.dirty = false;
                if st.connected && !st.closed {
                    let _ = c.flush_locked(&mut st);
                }
            }
        }
    }

    /// `read_closed`: the event reports the end of the stream, which a short read does
    /// not show: the read goes on until the socket says so.
    fn conn_event(&mut self, token: Token, is_error: bool, read_closed: bool) {
        let Some((conn, _)) = self.conns.get(&token) else {
            return;
        };
        let conn = conn.clone();
        {
            let mut st = lock(&conn.state);
            if !st.connected {
                match conn.stream.take_error() {
                    Ok(Some(e)) | Err(e) => {
                        drop(st);
                        self.fail_conn(token, "connect failed", Some(e));
                        return;
                    }
                    Ok(None) => {}
                }
                match conn.stream.peer_addr() {
                    Ok(_) => {
                        st.connected = true;
                        conn.ever_connected.store(true, Ordering::Release);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotConnected && !is_error => {
                        return; // still connecting
                    }
                    Err(e) => {
                        drop(st);
                        self.fail_conn(token, "connect failed", Some(e));
                        return;
                    }
                }
            }
            if let Err(e) = conn.flush_locked(&mut st) {
                drop(st);
                self.fail_conn(token, "write failed", Some(e));
                return;
            }
        }
        self.read(token, &conn, read_closed || is_error);
    }

    fn read(&mut self, token: Token, conn: &Arc<Conn>, hup: bool) {
        let max = self.shared.config.max_frame;
        let Some((_, rb)) = self.conns.get_mut(&token) else {
            return;
        };
        let mut turn = 0;
        let end = read_event(
            rb,
            &mut self.scratch,
            |buf| {
                let r = (&conn.stream).read(buf);
                if let Ok(n) = r {
                    turn += n;
                }
                r
            },
            hup,
            max,
            READ_BUDGET,
            &conn.state,
            &mut self.done,
        );
        self.shared
            .max_read_per_turn
            .fetch_max(turn, Ordering::Relaxed);
        match end {
            ReadEnd::Drained => {}
            ReadEnd::Budget => {
                // Fairness: the other connections (and the deadlines) go first; this one
                // is read again on the next turn. Readiness is edge-triggered: no new
                // event would announce the bytes left in the socket.
                if !self.backlog.contains(&token) {
                    self.backlog.push(token);
                }
            }
            ReadEnd::Closed(None) => self.fail_conn(token, "connection closed by the server", None),
            ReadEnd::Closed(Some(e)) => self.fail_conn(token, "read failed", Some(e)),
            ReadEnd::Protocol(e) => {
                log::error!("rpc client: bad frame from {}: {e}", conn.addr);
                self.fail_conn(token, "protocol error from the server", None);
            }
        }
    }

    /// Closes a connection and fails everything in flight on it.
    fn fail_conn(&mut self, token: Token, reason: &'static str, source: Option<io::Error>) {
        let Some((conn, _)) = self.conns.remove(&token) else {
            return;
        };
        let _ = self
            .shared
            .registry
            .deregister(&mut SourceFd(&conn.stream.as_raw_fd()));
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        let pending = {
            let mut st = lock(&conn.state);
            st.closed = true;
            conn.closed.store(true, Ordering::Release);
            st.clear_queue();
            std::mem::take(&mut st.pending)
        };
        if !pending.is_empty() {
            log::debug!(
                "rpc client: {reason} ({}); failing {} calls",
                conn.addr,
                pending.len()
            );
        }
        let source = source.map(Arc::new);
        for (_, p) in pending {
            p.waiter.complete(Err(CallError::Unavailable {
                reason,
                source: source.clone(),
            }));
        }
    }

    fn sweep_timeouts(&mut self) {
        self.shared.next_sweep.store(u64::MAX, Ordering::Release);
        // A caller that lowered `next_sweep` before the store above had already queued
        // its connection: take it over now, or a call on a connection opened since the
        // loop last looked (e.g. while a completion ran) loses its deadline.
        self.adopt_new_conns();
        let now = Instant::now();
        let mut earliest: Option<Instant> = None;
        let mut expired = Vec::new();
        let mut ended = Vec::new();
        let mut finished = Vec::new();
        for (token, (conn, _)) in &self.conns {
            let mut st = lock(&conn.state);
            ended.clear();
            st.pending.retain(|&id, p| match p.deadline {
                Some(d) if d <= now => {
                    expired.push(std::mem::replace(
                        &mut p.waiter,
                        Waiter::Callback(Box::new(|_| {})),
                    ));
                    ended.push((id, p.queued_at));
                    false
                }
                Some(d) => {
                    earliest = Some(earliest.map_or(d, |e| e.min(d)));
                    true
                }
                None => true,
            });
            if !ended.is_empty() && st.expire(&ended) {
                conn.closed.store(true, Ordering::Release);
                log::warn!(
                    "rpc client: {} took no request bytes for a whole call deadline; new \
                     calls use a new connection, this one closes once its calls end",
                    conn.addr
                );
            }
            if st.retired && st.pending.is_empty() {
                finished.push(*token);
            }
        }
        if let Some(e) = earliest {
            self.shared
                .next_sweep
                .fetch_min(self.shared.nanos(e), Ordering::AcqRel);
        }
        for t in finished {
            self.fail_conn(t, "connection retired: the server took no bytes", None);
        }
        for w in expired {
            w.complete(Err(CallError::Timeout));
        }
    }
}

/// How the reads of one readiness event ended.
enum ReadEnd {
    /// Nothing more to read until the next event.
    Drained,
    /// The connection used its [`READ_BUDGET`] for this turn with bytes possibly left in
    /// the socket: read it again on the next turn, after the other connections.
    Budget,
    /// End of stream (`None`) or a read error: the connection is gone.
    Closed(Option<io::Error>),
    /// The server sent bytes that are not a response frame: framing is lost.
    Protocol(frame::FrameError),
}

/// Reads what one readiness event announced through `read`, matching every complete
/// reply to its waiter in `state` and completing it (completions run here, between
/// reads). Bytes of an incomplete frame stay in `rb` for the next event.
#[allow(clippy::too_many_arguments)]
fn read_event(
    rb: &mut FrameReader,
    scratch: &mut [u8],
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    hup: bool,
    max: usize,
    budget: usize,
    state: &Mutex<ConnState>,
    done: &mut Vec<(Waiter, Result<Bytes, CallError>)>,
) -> ReadEnd {
    let mut taken = 0;
    loop {
        if taken >= budget {
            return ReadEnd::Budget;
        }
        let (buf, want) = rb.read_buf(scratch);
        let n = match read(buf) {
            Ok(0) => return ReadEnd::Closed(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadEnd::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return ReadEnd::Closed(Some(e)),
        };
        taken += n;
        let result = rb.feed(scratch, n, max, |data, owned| {
            parse_responses(data, owned, max, state, done)
        });
        if let Ok(true) = result {
            // A large frame still incomplete: nothing was parsed.
            if n < want && !hup {
                return ReadEnd::Drained;
            }
            continue;
        }
        for (w, r) in done.drain(..) {
            w.complete(r);
        }
        if let Err(e) = result {
            return ReadEnd::Protocol(e);
        }
        if n < want && !hup {
            // Drained: edge-triggered readiness reports the next bytes. Not an end of
            // stream that came with this event's bytes: read on to see it.
            return ReadEnd::Drained;
        }
    }
}

/// Parses response and error frames in `data`, moving matching waiters to `done`. Returns
/// the bytes consumed.
fn parse_responses(
    data: &[u8],
    owned: Option<&Bytes>,
    max: usize,
    state: &Mutex<ConnState>,
    done: &mut Vec<(Waiter, Result<Bytes, CallError>)>,
) -> Result<usize, frame::FrameError> {
    let mut pos = 0;
    let mut st: Option<MutexGuard<'_, ConnState>> = None;
    while pos < data.len() {
        let Some((f, n)) = frame::decode(&data[pos..], max)? else {
            break;
        };
        pos += n;
        let result = match f.kind {
            FrameKind::Response => Ok(match owned {
                Some(b) => b.slice_ref(f.body),
                None => Bytes::copy_from_slice(f.body),
            }),
            FrameKind::Error => Err(match ErrorHeader::decode(f.envelope) {
                Ok(h) => CallError::Remote {
                    status: Status::try_from(h.status).unwrap_or(Status::Internal),
                    message: h.message,
                },
                Err(e) => CallError::Decode(e),
            }),
            FrameKind::Request => return Err(frame::FrameError::BadKind(f.kind as u8)),
        };
        let st = st.get_or_insert_with(|| lock(state));
        if let Some(p) = st.pending.remove(&f.request_id) {
            done.push((p.waiter, result));
        }
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::echo::EchoReply;

    fn state_with(ids: &[u64], seen: &Arc<Mutex<Vec<(u64, String)>>>) -> Mutex<ConnState> {
        let mut pending = IdMap::default();
        for &id in ids {
            let seen = seen.clone();
            let f: Completion = Box::new(move |r| {
                let text = match r {
                    Ok(b) => {
                        String::from_utf8(EchoReply::decode(b).unwrap().payload.to_vec()).unwrap()
                    }
                    Err(e) => e.to_string(),
                };
                lock(&seen).push((id, text));
            });
            pending.insert(
                id,
                Pending {
                    waiter: Waiter::Callback(f),
                    deadline: None,
                    queued_at: Instant::now(),
                },
            );
        }
        let mut st = ConnState::new(Arc::new(AtomicUsize::new(0)));
        st.pending = pending;
        st.connected = true;
        Mutex::new(st)
    }

    fn reply(out: &mut Vec<u8>, id: u64, text: &str) {
        let r = EchoReply {
            payload: Bytes::copy_from_slice(text.as_bytes()),
        };
        frame::encode_response(out, id, &r);
    }

    #[test]
    fn replies_in_any_order_reach_their_own_callers() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = state_with(&[1, 2, 3, 4], &seen);
        let mut bytes = Vec::new();
        reply(&mut bytes, 3, "three");
        reply(&mut bytes, 99, "nobody waits for this"); // timed out earlier: dropped
        frame::encode_error(&mut bytes, 1, Status::UnknownMethod, "no such method");
        reply(&mut bytes, 2, "two");
        reply(&mut bytes, 4, "four");
        let cut = bytes.len() - 3; // the last frame arrives split
        let mut done = Vec::new();
        let used = parse_responses(&bytes[..cut], None, 1 << 20, &state, &mut done).unwrap();
        assert_eq!(done.len(), 3);
        let rest = [&bytes[used..cut], &bytes[cut..]].concat();
        let used2 = parse_responses(&rest, None, 1 << 20, &state, &mut done).unwrap();
        assert_eq!(used2, rest.len());
        for (w, r) in done.drain(..) {
            w.complete(r);
        }
        let mut got = lock(&seen).clone();
        got.sort();
        assert_eq!(
            got,
            vec![
                (
                    1,
                    "remote error STATUS_UNKNOWN_METHOD: no such method".to_string()
                ),
                (2, "two".to_string()),
                (3, "three".to_string()),
                (4, "four".to_string()),
            ]
        );
        assert!(lock(&state).pending.is_empty());
    }

    #[test]
    fn a_request_frame_from_the_server_is_a_protocol_error() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = state_with(&[1], &seen);
        let mut bytes = Vec::new();
        frame::encode_request(&mut bytes, 1, "s", "m", &EchoReply::default());
        let mut done = Vec::new();
        assert!(parse_responses(&bytes, None, 1 << 20, &state, &mut done).is_err());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// Serves `stream` to `read_event` the way a socket would: each readiness event
        /// makes the next `chunk` bytes readable; reads past them say `WouldBlock`, and
        /// after the last byte, if `eof`, the end of stream is readable too.
        struct FakeSocket<'a> {
            stream: &'a [u8],
            pos: usize,
            readable_to: usize,
            eof: bool,
        }

        impl FakeSocket<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.pos == self.stream.len() && self.eof {
                    return Ok(0);
                }
                if self.pos == self.readable_to {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = buf.len().min(self.readable_to - self.pos);
                buf[..n].copy_from_slice(&self.stream[self.pos..self.pos + n]);
                self.pos += n;
                Ok(n)
            }
        }

        fn payload(id: u64, len: usize) -> Vec<u8> {
            (0..len).map(|i| (id as usize * 31 + i) as u8).collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Replies in any order, some large (read in place), some errors, some for
            /// calls nobody waits for, cut into arbitrary pieces: every waiter gets its
            /// own reply exactly once, the rest stay pending, nothing is left buffered.
            #[test]
            fn replies_split_anywhere_reach_their_own_callers(
                calls in 1usize..24,
                answers in proptest::collection::vec(
                    (any::<u16>(), any::<bool>(), prop_oneof![
                        8 => 0usize..100,
                        2 => 16_000usize..40_000,
                    ]),
                    0..24,
                ),
                strays in proptest::collection::vec((1_000u64..2_000, 0usize..20_000), 0..4),
                chunks in proptest::collection::vec(prop_oneof![
                    1usize..8, 1usize..300, 1usize..70_000,
                ], 1..40),
                scratch_len in prop_oneof![Just(READ_CHUNK), 20usize..300],
                eof in any::<bool>(),
            ) {
                let seen = Arc::new(Mutex::new(Vec::new()));
                let ids: Vec<u64> = (1..=calls as u64).collect();
                let state = state_with(&ids, &seen);
                // Which calls get answered, in which order, how.
                let mut order: Vec<(u16, u64, bool, usize)> = answers
                    .iter()
                    .zip(&ids)
                    .map(|(&(key, err, len), &id)| (key, id, err, len))
                    .collect();
                order.sort();
                let mut stream = Vec::new();
                let mut want = std::collections::BTreeMap::new();
                for (k, &(_, id, err, len)) in order.iter().enumerate() {
                    if let Some(&(stray, slen)) = strays.get(k) {
                        reply(&mut stream, stray, &String::from_utf8_lossy(&payload(stray, slen)));
                    }
                    if err {
                        let text = format!("error for {id}");
                        frame::encode_error(&mut stream, id, Status::Internal, &text);
                        want.insert(id, format!("remote error STATUS_INTERNAL: {text}"));
                    } else {
                        let text: String =
                            payload(id, len).iter().map(|b| char::from(b'a' + b % 26)).collect();
                        reply(&mut stream, id, &text);
                        want.insert(id, text);
                    }
                }
                let mut sock = FakeSocket { stream: &stream, pos: 0, readable_to: 0, eof };
                let mut rb = FrameReader::default();
                let mut scratch = vec![0u8; scratch_len];
                let mut done = Vec::new();
                let mut events = 0;
                let mut closed = false;
                for &c in chunks.iter().cycle() {
                    sock.readable_to = (sock.pos + c).min(stream.len());
                    let last = sock.readable_to == stream.len();
                    events += 1;
                    prop_assert!(events < 1_000_000);
                    // The event that brings the end of stream says so.
                    let hup = last && eof;
                    match read_event(&mut rb, &mut scratch, |b| sock.read(b), hup, 1 << 20, usize::MAX, &state, &mut done) {
                        ReadEnd::Drained => prop_assert!(!hup),
                        ReadEnd::Budget => prop_assert!(false, "no budget was set"),
                        ReadEnd::Closed(None) => {
                            prop_assert!(hup);
                            closed = true;
                        }
                        ReadEnd::Closed(Some(e)) => prop_assert!(false, "read error {}", e),
                        ReadEnd::Protocol(e) => prop_assert!(false, "protocol error {}", e),
                    }
                    if last {
                        break;
                    }
                }
                prop_assert_eq!(sock.pos, stream.len());
                prop_assert_eq!(closed, eof);
                prop_assert!(done.is_empty());
                prop_assert!(rb.is_empty(), "bytes left buffered");
                let got: std::collections::BTreeMap<u64, String> =
                    lock(&seen).iter().cloned().collect();
                prop_assert_eq!(lock(&seen).len(), got.len(), "a call completed twice");
                prop_assert_eq!(&got, &want);
                let mut pending: Vec<u64> = lock(&state).pending.keys().copied().collect();
                pending.sort();
                let unanswered: Vec<u64> =
                    ids.iter().copied().filter(|id| !want.contains_key(id)).collect();
                prop_assert_eq!(pending, unanswered);
            }
        }
    }
}
