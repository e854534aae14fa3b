//! The server: one mio event loop thread, a bounded handler pool, reply handles.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use proto::service::{Outcome, RawReply, ReplyTarget, Service, Status};

use crate::frame::{self, FrameKind};
use crate::reader::{FrameReader, KEEP_BUF};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Bytes read per `read` call: many frames per read.
const READ_CHUNK: usize = 64 * 1024;

/// Server limits and sizes. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest frame accepted, header included; a longer length prefix closes the
    /// connection before anything of that size is allocated. Default 64 MiB.
    pub max_frame: usize,
    /// Handler pool threads for services registered with [`ServerBuilder::register`].
    /// Default 4.
    pub workers: usize,
    /// Calls queued for the pool beyond which new calls are answered
    /// `RESOURCE_EXHAUSTED`. Default 4096.
    pub queue: usize,
    /// Open connections beyond which new ones are accepted and closed at once.
    /// Default 16,384.
    pub max_connections: usize,
    /// A connection with nothing in flight and no bytes for this long is closed.
    /// Default 10 minutes; `None` keeps connections forever.
    pub idle_timeout: Option<Duration>,
    /// On shutdown, how long in-flight calls get to finish before connections close.
    /// Default 1 s.
    pub shutdown_grace: Duration,
    /// After traffic, how long the event loop keeps polling before it sleeps, yielding
    /// the CPU between polls. On a VM, waking a thread whose vCPU has halted costs tens of
    /// microseconds; a request that comes within this window costs no wake-up.
    /// Default 50 µs; `Duration::ZERO` always sleeps at once.
    pub spin: Duration,
    /// Unsent reply bytes of one connection beyond which the server stops reading that
    /// connection (its readable interest is dropped) until the queue drains below half of
    /// this: a peer that sends requests and never reads its replies holds at most about
    /// this much of the server's memory. Default 8 MiB.
    pub max_write_queue: usize,
    /// Bytes held for incomplete requests, all connections together, beyond which the
    /// server closes the connection whose incomplete frame began last (and so on, until
    /// the bytes fit): headers announcing large frames on many connections cannot take
    /// all memory, while the frame that began first can still complete. Keep it at least
    /// `max_frame`. Default 256 MiB.
    pub max_partial_bytes: usize,
}

/// Counters of a running server's state, from [`Server::stats`]; for tests, metrics and
/// benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Open connections.
    pub connections: usize,
    /// Reply bytes queued and not yet accepted by the kernel, all connections together.
    pub queued_reply_bytes: usize,
    /// The most reply bytes ever queued for one connection at once (high-water mark).
    pub max_queued_reply_bytes: usize,
    /// Connections whose reading is paused because their write queue is over
    /// [`ServerConfig::max_write_queue`].
    pub read_paused: usize,
    /// The most bytes read from one connection in one turn of the event loop (at most
    /// [`READ_BUDGET`] plus one read).
    pub max_read_per_turn: usize,
    /// Bytes held for incomplete requests, all connections together.
    pub partial_frame_bytes: usize,
    /// The most bytes ever held for incomplete requests at once (high-water mark; at
    /// most [`ServerConfig::max_partial_bytes`] plus one read's first buffer, 128 KiB).
    pub max_partial_frame_bytes: usize,
    /// Connections closed because the bytes held for incomplete requests reached
    /// [`ServerConfig::max_partial_bytes`].
    pub partial_cap_closes: usize,
    /// New connections accepted and closed at once because the process was out of file
    /// descriptors (EMFILE/ENFILE), through the reserved spare descriptor.
    pub fd_refused: u64,
}

/// Bytes read from one connection per turn of the event loop before the loop moves on to
/// the other ready connections (and comes back to this one on the next turn): one busy
/// connection cannot hold the loop, which Raft heartbeats share. The client's I/O thread
/// uses the same budget per connection, so a peer streaming replies cannot hold it either.
pub const READ_BUDGET: usize = 256 * 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame: frame::DEFAULT_MAX_FRAME,
            workers: 4,
            queue: 4096,
            max_connections: 16_384,
            idle_timeout: Some(Duration::from_secs(600)),
            shutdown_grace: Duration::from_secs(1),
            spin: Duration::from_micros(50),
            max_write_queue: 8 << 20,
            max_partial_bytes: 256 << 20,
        }
    }
}

struct Entry {
    service: Arc<dyn Service>,
    methods: &'static [&'static str],
    inline: bool,
}

/// Collects services and limits, then binds a [`Server`].
///
/// ```no_run
/// # use proto::echo::{EchoService, EchoServiceServer, EchoRequest, EchoReply};
/// # use proto::service::Reply;
/// struct Echo;
/// impl EchoService for Echo {
///     fn echo(&self, req: EchoRequest, reply: Reply<EchoReply>) {
///         reply.send(EchoReply { payload: req.payload });
///     }
/// }
/// let server = rpc::ServerBuilder::new()
///     .register_inline(EchoServiceServer::new(Echo))
///     .bind("127.0.0.1:0".parse().unwrap())
///     .unwrap();
/// println!("listening on {}", server.local_addr());
/// ```
pub struct ServerBuilder {
    config: ServerConfig,
    services: HashMap<&'static str, Entry>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerBuilder {
    /// No services, default limits.
    pub fn new() -> Self {
        ServerBuilder {
            config: ServerConfig::default(),
            services: HashMap::new(),
        }
    }

    /// Replaces all limits at once.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds a service whose handlers run on the worker pool (the default: a slow handler
    /// stalls neither the event loop nor other connections).
    ///
    /// # Panics
    /// If a service of the same name is already registered.
    pub fn register(self, service: impl Service) -> Self {
        self.add(Arc::new(service), false)
    }

    /// Adds a service whose handlers run on the event loop thread itself: no hand-off, the
    /// reply goes straight into the connection's write buffer. Only for handlers that never
    /// block (echo, Raft message intake that just queues): while one runs, no other
    /// connection is served.
    ///
    /// # Panics
    /// If a service of the same name is already registered.
    pub fn register_inline(self, service: impl Service) -> Self {
        self.add(Arc::new(service), true)
    }

    fn add(mut self, service: Arc<dyn Service>, inline: bool) -> Self {
        let name = service.name();
        let methods = service.methods();
        let old = self.services.insert(
            name,
            Entry {
                service,
                methods,
                inline,
            },
        );
        assert!(old.is_none(), "service {name} registered twice");
        self
    }

    /// Binds `addr` (port 0 picks a free port) and starts the event loop and pool threads.
    pub fn bind(mut self, addr: SocketAddr) -> io::Result<Server> {
        if let Some(fit) = connections_that_fit()
            && self.config.max_connections > fit
        {
            log::warn!(
                "rpc server: max_connections {} exceeds what the open-file limit \
                 (RLIMIT_NOFILE, `ulimit -n`) leaves room for; lowered to {fit}. Raise the \
                 limit to keep {} connections",
                self.config.max_connections,
                self.config.max_connections
            );
            self.config.max_connections = fit;
        }
        let max_connections = self.config.max_connections;
        let mut listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            waker,
            replies: Mutex::new(Vec::new()),
            wake_pending: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            max_frame: self.config.max_frame,
            stats: Mutex::new((0, ServerStats::default())),
            stats_published: std::sync::Condvar::new(),
            stats_wanted: AtomicBool::new(false),
        });
        let needs_pool = self.services.values().any(|e| !e.inline);
        let mut workers = Vec::new();
        let pool = if needs_pool {
            let (tx, rx) = crossbeam_channel::bounded::<Job>(self.config.queue.max(1));
            for i in 0..self.config.workers.max(1) {
                let rx: Receiver<Job> = rx.clone();
                let shared = shared.clone();
                workers.push(
                    std::thread::Builder::new()
                        .name(format!("rpc-worker-{i}"))
                        .spawn(move || worker(rx, &shared))?,
                );
            }
            Some(tx)
        } else {
            None
        };
        let target: Arc<dyn ReplyTarget> = shared.clone();
        let event_loop = EventLoop {
            poll,
            listener: Some(listener),
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            accept_retry: None,
            turn_bytes: 0,
            max_queued: 0,
            max_read_per_turn: 0,
            spare_fd: Some(std::fs::File::open("/dev/null")?),
            partial_total: 0,
            max_partial_total: 0,
            partial_seq: 0,
            partial_cap_closes: 0,
            fd_refused: 0,
            fd_warned: None,
            scratch: vec![0; READ_CHUNK],
            backlog: Vec::new(),
            services: self.services,
            shared: shared.clone(),
            target,
            pool,
            config: self.config,
        };
        let thread = std::thread::Builder::new()
            .name(format!("rpc-server-{}", local_addr.port()))
            .spawn(move || event_loop.run())?;
        Ok(Server {
            max_connections,
            local_addr,
            shared,
            thread: Some(thread),
            workers,
        })
    }
}

/// A running server. Dropping it shuts down gracefully: stop accepting, give in-flight
/// calls [`ServerConfig::shutdown_grace`] to finish, close every connection, join the
/// event loop and pool threads (a handler still running delays the drop until it returns;
/// calls still queued for the pool once the grace is over are dropped unrun).
pub struct Server {
    max_connections: usize,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Server {
    /// The connection limit in force: [`ServerConfig::max_connections`], lowered at bind
    /// to what the process's open-file limit leaves room for.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counters, counted by the event loop for this call.
    ///
    /// Asks the event loop to count (it does so only on request: the count walks every
    /// connection) and waits for the answer, at most 1 s (then the last counts are
    /// returned: a loop held by an inline handler cannot answer).
    pub fn stats(&self) -> ServerStats {
        let sh = &self.shared;
        let mut g = sh.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let want = g.0 + 1;
        sh.stats_wanted.store(true, Ordering::Release);
        if let Err(e) = sh.waker.wake() {
            log::error!("rpc server: cannot wake the event loop for stats: {e}");
            return g.1;
        }
        let until = Instant::now() + Duration::from_secs(1);
        while g.0 < want {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || sh.stopped.load(Ordering::Acquire) {
                break;
            }
            g = sh
                .stats_published
                .wait_timeout(g, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        g.1
    }

    /// Shuts down and waits for every thread (same as dropping).
    pub fn shutdown(self) {}
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Err(e) = self.shared.waker.wake() {
            log::error!(
                "rpc server {}: cannot wake event loop: {e}",
                self.local_addr
            );
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::error!("rpc server {}: event loop panicked", self.local_addr);
        }
        // The loop dropped the pool's sender on exit; workers finish their queue and stop.
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// State shared between the event loop and whoever answers reply handles.
struct Shared {
    /// Distinguishes servers in one process for the inline fast path.
    id: usize,
    waker: Waker,
    /// Encoded reply frames from other threads: (connection, frame bytes).
    replies: Mutex<Vec<(u64, Vec<u8>)>>,
    /// Set when a wake is already on its way, so a burst of replies costs one wake.
    wake_pending: AtomicBool,
    shutdown: AtomicBool,
    /// The event loop has exited: every connection is closed, so calls still queued for
    /// the pool are dropped unrun instead of holding up the shutdown.
    stopped: AtomicBool,
    /// Replies longer than this are answered `RESOURCE_EXHAUSTED` instead.
    max_frame: usize,
    /// Published by the event loop after every turn.
    stats: Mutex<(u64, ServerStats)>,
    /// Signalled when the loop publishes `stats` (with a new generation number).
    stats_published: std::sync::Condvar,
    /// `Server::stats` asked: the loop counts (O(connections)) only on request.
    stats_wanted: AtomicBool,
}

/// While the event loop runs inline handlers of one connection, that connection's write
/// buffer lives here, so a reply made on the loop thread is appended without a lock or a
/// wake.
struct InlineCtx {
    server: usize,
    conn: u64,
    out: Vec<u8>,
    answered: usize,
}

thread_local! {
    static INLINE: RefCell<Option<InlineCtx>> = const { RefCell::new(None) };
}

fn encode_outcome(out: &mut Vec<u8>, id: u64, outcome: Outcome<'_>, max_frame: usize) {
    match outcome {
        Outcome::Ok(body) if frame::HEADER_LEN + body.body_len() > max_frame => {
            let text = format!(
                "reply of {} bytes exceeds the frame limit of {max_frame}",
                body.body_len()
            );
            log::error!("rpc server: {text}");
            frame::encode_error(out, id, Status::ResourceExhausted, &text)
        }
        Outcome::Ok(body) => frame::encode_response(out, id, body),
        Outcome::Err(status, text) => frame::encode_error(out, id, status, text),
    }
}

impl ReplyTarget for Shared {
    fn deliver(&self, conn: u64, request_id: u64, outcome: Outcome<'_>) {
        let done_inline = INLINE.with(|c| {
            let Ok(mut slot) = c.try_borrow_mut() else {
                return false;
            };
            match slot.as_mut() {
                Some(ctx) if ctx.server == self.id && ctx.conn == conn => {
                    encode_outcome(&mut ctx.out, request_id, outcome, self.max_frame);
                    ctx.answered += 1;
                    true
                }
                _ => false,
            }
        });
        if done_inline {
            return;
        }
        let mut buf = Vec::new();
        encode_outcome(&mut buf, request_id, outcome, self.max_frame);
        self.replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((conn, buf));
        if !self.wake_pending.swap(true, Ordering::AcqRel)
            && let Err(e) = self.waker.wake()
        {
            log::error!("rpc server: cannot wake event loop for a reply: {e}");
        }
    }
}

/// A call handed to the pool.
struct Job {
    service: Arc<dyn Service>,
    method: usize,
    body: Bytes,
    reply: RawReply,
}

fn worker(rx: Receiver<Job>, shared: &Shared) {
    while let Ok(job) = rx.recv() {
        let Job {
            service,
            method,
            body,
            reply,
        } = job;
        if shared.stopped.load(Ordering::Acquire) {
            // Its connection is gone: nobody would read the answer.
            reply.fail(Status::Unavailable, "server shut down");
            continue;
        }
        run_handler(&*service, method, body, reply);
    }
}

/// Runs a handler, turning a panic into an error reply (the reply handle's drop during
/// unwinding answers `HANDLER_PANIC`).
fn run_handler(service: &dyn Service, method: usize, body: Bytes, reply: RawReply) {
    let r = catch_unwind(AssertUnwindSafe(|| service.call(method, body, reply)));
    if r.is_err() {
        log::error!(
            "rpc handler {}/{} panicked; answered HANDLER_PANIC",
            service.name(),
            service.methods().get(method).copied().unwrap_or("?")
        );
    }
}

/// A name from the peer, quoted for an error text: at most 64 characters of it, so an
/// error reply never echoes back a huge (or, escaped, several times larger) name.
struct Clipped<'a>(&'a str);

impl std::fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const KEEP: usize = 64;
        match self.0.char_indices().nth(KEEP) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}... ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

struct Conn {
    stream: TcpStream,
    peer: Option<SocketAddr>,
    /// Bytes of a frame not yet complete.
    reader: FrameReader,
    out: Vec<u8>,
    out_pos: usize,
    /// Calls dispatched and not yet answered.
    in_flight: usize,
    last_active: Instant,
    /// The peer closed its side, or we stopped reading after a framing error: close as
    /// soon as the in-flight calls are answered and written.
    read_closed: bool,
    /// Reading stopped (readable interest dropped) because the write queue is over
    /// `max_write_queue`; resumes below half of it.
    read_paused: bool,
    /// When the peer last took reply bytes, or the queue last went from empty to not
    /// empty: a queue that does not move for the idle timeout closes the connection.
    write_progress: Instant,
    /// When (in `EventLoop::partial_seq` order) the incomplete frame it holds began.
    partial_since: u64,
}

struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    /// When to call `accept` again after it failed (not on `WouldBlock`).
    accept_retry: Option<Instant>,
    scratch: Vec<u8>,
    services: HashMap<&'static str, Entry>,
    shared: Arc<Shared>,
    target: Arc<dyn ReplyTarget>,
    pool: Option<Sender<Job>>,
    config: ServerConfig,
    /// Connections that used their read budget with bytes possibly left in the socket:
    /// readiness is edge-triggered, so no new event will announce those bytes; the loop
    /// reads them on its next turn.
    backlog: Vec<Token>,
    /// Bytes read from the connection being read, this turn.
    turn_bytes: usize,
    max_read_per_turn: usize,
    /// High-water mark of one connection's queued reply bytes.
    max_queued: usize,
    /// A descriptor held in reserve (`/dev/null`): when `accept` fails for lack of
    /// descriptors, it is closed to accept the newcomer and close it at once, then
    /// re-opened.
    spare_fd: Option<std::fs::File>,
    /// New connections closed at once for lack of descriptors.
    fd_refused: u64,
    /// When that was last logged (at most once per [`FD_WARN_EVERY`]).
    fd_warned: Option<Instant>,
    /// Bytes held for incomplete requests, all connections together (the sum of their
    /// readers' `held()`), kept at most `max_partial_bytes` by `make_room`.
    partial_total: usize,
    max_partial_total: usize,
    /// Numbers incomplete frames in the order they began (`Conn::partial_since`).
    partial_seq: u64,
    partial_cap_closes: usize,
}

/// How often running out of descriptors is logged at most.
const FD_WARN_EVERY: Duration = Duration::from_secs(10);

/// Descriptors kept free for everything else in the process (listener, poll, waker,
/// files, outgoing connections).
const FD_RESERVE: u64 = 64;

/// How many connections the soft open-file limit (RLIMIT_NOFILE) leaves room for, or
/// `None` if it cannot be read (or is unlimited).
fn connections_that_fit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit`; getrlimit only writes into it.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    #[allow(clippy::useless_conversion)] // rlim_t is not u64 on every target
    let soft = u64::try_from(lim.rlim_cur).ok()?;
    Some(usize::try_from(soft.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX))
}

/// `d` from now, at most a century: a configured `Duration::MAX` ("never") would
/// overflow `Instant` and kill the event loop.
fn after(d: Duration) -> Instant {
    Instant::now() + d.min(Duration::from_secs(100 * 365 * 24 * 3600))
}

enum ReadOutcome {
    Open,
    Close,
}

impl EventLoop {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut draining_until: Option<Instant> = None;
        let mut next_sweep = self.config.idle_timeout.map(after);
        let spin = self.config.spin;
        let mut spin_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let mut timeout = next_sweep.map(|t| t.saturating_duration_since(now));
            if let Some(at) = self.accept_retry {
                let left = at.saturating_duration_since(now);
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
            if let Some(d) = draining_until {
                let left = d.saturating_duration_since(now);
                timeout = Some(
                    timeout
                        .map_or(left, |t| t.min(left))
                        .min(Duration::from_millis(10)),
                );
            }
            let spinning = spin_until.is_some_and(|t| now < t);
            if spinning || !self.backlog.is_empty() {
                timeout = Some(Duration::ZERO);
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("rpc server: poll failed, stopping: {e}");
                break;
            }
            if spinning && events.is_empty() {
                // Lets a thread waiting for this CPU (say, the client we answer) run.
                std::thread::yield_now();
            }
            let mut active = !self.backlog.is_empty();
            for token in std::mem::take(&mut self.backlog) {
                // As if the end of stream might be there: read on to `WouldBlock`.
                self.conn_event(token, true, true);
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    token => {
                        active = true;
                        self.conn_event(
                            token,
                            ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                            ev.is_read_closed() || ev.is_error(),
                        )
                    }
                }
            }
            if active && !spin.is_zero() {
                spin_until = Some(Instant::now() + spin);
            }
            if let Some(at) = self.accept_retry
                && Instant::now() >= at
            {
                self.accept_retry = None;
                self.accept();
            }
            // Replies from other threads (cheap to check; the waker may have fired).
            self.drain_replies();
            if self.shared.stats_wanted.swap(false, Ordering::AcqRel) {
                self.publish_stats();
            }

            if draining_until.is_none() && self.shared.shutdown.load(Ordering::SeqCst) {
                if let Some(mut l) = self.listener.take() {
                    let _ = self.poll.registry().deregister(&mut l);
                }
                draining_until = Some(after(self.config.shutdown_grace));
                // Connections with nothing in flight can go now.
                let idle: Vec<Token> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.in_flight == 0 && c.out_pos == c.out.len())
                    .map(|(t, _)| *t)
                    .collect();
                for t in idle {
                    self.close(t);
                }
            }
            if let Some(d) = draining_until {
                let done: Vec<Token> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.in_flight == 0 && c.out_pos == c.out.len())
                    .map(|(t, _)| *t)
                    .collect();
                for t in done {
                    self.close(t);
                }
                if self.conns.is_empty() || Instant::now() >= d {
                    break;
                }
            }
            if let (Some(idle), Some(at)) = (self.config.idle_timeout, next_sweep)
                && Instant::now() >= at
            {
                self.sweep_idle(idle);
                next_sweep = Some(after((idle / 4).max(Duration::from_millis(10))));
            }
        }
        let n = self.conns.len();
        if n > 0 {
            log::warn!("rpc server: closing {n} connections with calls still in flight");
        }
        self.conns.clear();
        self.shared.stopped.store(true, Ordering::Release);
        // Dropping `self.pool` lets the workers exit once the queue is empty (what is
        // left in it is dropped unrun, see `worker`).
    }

    fn accept(&mut self) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.config.max_connections {
                        log::warn!(
                            "rpc server: connection limit {} reached, closing {peer}",
                            self.config.max_connections
                        );
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::error!("rpc server: cannot register {peer}: {e}");
                        continue;
                    }
                    self.conns.insert(
                        token,
                        Conn {
                            stream,
                            peer: Some(peer),
                            reader: FrameReader::default(),
                            out: Vec::new(),
                            out_pos: 0,
                            in_flight: 0,
                            last_active: Instant::now(),
                            read_closed: false,
                            read_paused: false,
                            write_progress: Instant::now(),
                            partial_since: 0,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                        && self.spare_fd.is_some() =>
                {
                    // Out of descriptors: the newcomer would wait in the backlog for its
                    // whole deadline. Free the spare, take the newcomer and close it at
                    // once (its calls fail with a closed connection), take the spare back.
                    self.spare_fd = None;
                    let refused = listener.accept();
                    // Close the newcomer before taking the spare back: at the limit, the
                    // newcomer holds the one descriptor the spare needs.
                    let refused = refused.map(|(stream, peer)| {
                        drop(stream);
                        peer
                    });
                    self.spare_fd = std::fs::File::open("/dev/null").ok();
                    match refused {
                        Ok(peer) => {
                            self.fd_refused += 1;
                            let now = Instant::now();
                            if self
                                .fd_warned
                                .is_none_or(|t| now.duration_since(t) >= FD_WARN_EVERY)
                            {
                                log::warn!(
                                    "rpc server: out of file descriptors ({e}); closed {} new \
                                     connections so far (the latest from {peer}) instead of \
                                     leaving them waiting. Raise `ulimit -n` or lower \
                                     max_connections",
                                    self.fd_refused
                                );
                                self.fd_warned = Some(now);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            log::error!("rpc server: accept failed, retrying in 100 ms: {e}");
                            self.accept_retry = Some(Instant::now() + Duration::from_millis(100));
                            break;
                        }
                    }
                    if self.spare_fd.is_none() {
                        log::error!(
                            "rpc server: cannot re-open the spare descriptor; new connections \
                             wait in the backlog until descriptors are free"
                        );
                    }
                }
                Err(e) => {
                    // E.g. EMFILE without a spare: the rest stay in the backlog. Readiness
                    // is edge-triggered, so no new event may come for them: retry on a
                    // timer.
                    log::error!("rpc server: accept failed, retrying in 100 ms: {e}");
                    self.accept_retry = Some(Instant::now() + Duration::from_millis(100));
                    break;
                }
            }
        }
    }

    /// `hup`: the event reports the end of the stream (or an error), which a short read
    /// does not: read on until the socket says so.
    fn conn_event(&mut self, token: Token, readable: bool, hup: bool) {
        if readable {
            match self.read(token, hup) {
                ReadOutcome::Open => {}
                ReadOutcome::Close => {
                    self.close(token);
                    return;
                }
            }
        }
        self.flush(token);
    }

    /// Reads until `WouldBlock` (or a short read, unless `hup`), dispatching every
    /// complete frame.
    fn read(&mut self, token: Token, hup: bool) -> ReadOutcome {
        let mut scratch = std::mem::take(&mut self.scratch);
        let outcome = self.read_with(token, &mut scratch, hup);
        self.scratch = scratch;
        outcome
    }

    fn read_with(&mut self, token: Token, scratch: &mut [u8], hup: bool) -> ReadOutcome {
        let conn_id = token.0 as u64;
        self.turn_bytes = 0;
        loop {
            if self.turn_bytes >= READ_BUDGET {
                // Fairness: this connection had its share of the turn; the others go
                // first, and it is read again on the next turn.
                if !self.backlog.contains(&token) {
                    self.backlog.push(token);
                }
                return ReadOutcome::Open;
            }
            let Some(conn) = self.conns.get_mut(&token) else {
                return ReadOutcome::Close;
            };
            if conn.read_closed || conn.read_paused {
                return ReadOutcome::Open;
            }
            if conn.out.len() - conn.out_pos > self.config.max_write_queue {
                // Backpressure: the peer does not read its replies; stop reading its
                // requests until it does (`flush` resumes).
                conn.read_paused = true;
                if let Err(e) =
                    self.poll
                        .registry()
                        .reregister(&mut conn.stream, token, Interest::WRITABLE)
                {
                    log::error!("rpc server: cannot pause reading {:?}: {e}", conn.peer);
                    return ReadOutcome::Close;
                }
                return ReadOutcome::Open;
            }
            let extra = conn.reader.growth();
            if extra > 0
                && self.partial_total + extra > self.config.max_partial_bytes
                && !self.make_room(token, extra)
            {
                return ReadOutcome::Close;
            }
            let Some(conn) = self.conns.get_mut(&token) else {
                return ReadOutcome::Close;
            };
            // `read_buf` grows the buffer of a large frame in progress by `extra`: count
            // it now, whatever the read brings.
            self.partial_total += extra;
            let held_before = conn.reader.held() + extra;
            // A large frame in progress is read straight into its own buffer.
            let (buf, want) = conn.reader.read_buf(scratch);
            let n = match conn.stream.read(buf) {
                Ok(0) => {
                    conn.read_closed = true;
                    // A peer that only shut down its sending side still gets every reply:
                    // `flush` closes once the last one is written.
                    return if conn.in_flight == 0 && conn.out_pos == conn.out.len() {
                        ReadOutcome::Close
                    } else {
                        ReadOutcome::Open
                    };
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("rpc server: read from {:?} failed: {e}", conn.peer);
                    return ReadOutcome::Close;
                }
            };
            conn.last_active = Instant::now();
            self.turn_bytes += n;
            self.max_read_per_turn = self.max_read_per_turn.max(self.turn_bytes);
            let mut out = std::mem::take(&mut conn.out);
            // `dispatch_all` borrows `self`: the reader comes out of the conn meanwhile.
            let mut reader = std::mem::take(&mut conn.reader);
            let mut delta = 0;
            let fed = reader.feed(scratch, n, self.config.max_frame, |data, owned| {
                self.dispatch_all(conn_id, data, owned, &mut out)
                    .map(|(used, d)| {
                        delta = d;
                        used
                    })
                    .map_err(|(e, d)| {
                        delta = d;
                        e
                    })
            });
            let Some(conn) = self.conns.get_mut(&token) else {
                return ReadOutcome::Close;
            };
            conn.reader = reader;
            conn.out = out;
            let held_after = conn.reader.held();
            if held_before == 0 && held_after > 0 {
                self.partial_seq += 1;
                conn.partial_since = self.partial_seq;
            }
            self.partial_total = self.partial_total + held_after - held_before;
            self.max_partial_total = self.max_partial_total.max(self.partial_total);
            self.max_queued = self.max_queued.max(conn.out.len() - conn.out_pos);
            let result = match fed {
                Ok(true) => {
                    // A large frame still incomplete: nothing was dispatched.
                    if n < want && !hup {
                        return ReadOutcome::Open; // drained; the next edge brings more
                    }
                    continue;
                }
                Ok(false) => Ok(delta),
                Err(e) => Err((e, delta)),
            };
            match result {
                Ok(delta) => conn.in_flight = conn.in_flight.wrapping_add_signed(delta),
                Err((e, delta)) => {
                    conn.in_flight = conn.in_flight.wrapping_add_signed(delta);
                    log::error!(
                        "rpc server: closing connection from {:?} once the requests before \
                         the bad bytes are answered: {e}",
                        conn.peer
                    );
                    // Framing is lost: read nothing more, but the requests before the bad
                    // bytes were dispatched and their replies are owed. `flush` closes
                    // once the last one is written.
                    conn.read_closed = true;
                    return if conn.in_flight == 0 && conn.out_pos == conn.out.len() {
                        ReadOutcome::Close
                    } else {
                        ReadOutcome::Open
                    };
                }
            }
            if self.partial_total > self.config.max_partial_bytes && !self.make_room(token, 0) {
                return ReadOutcome::Close;
            }
            // Flush what inline handlers answered before reading more.
            self.flush(token);
            if n < want && !hup {
                // A short read drained the socket: with edge-triggered readiness the next
                // bytes bring a new event, so skip the read that would say WouldBlock.
                // Not so for an end of stream that came in the same event as the bytes
                // (`hup`): no event will announce it again, so read on to see it.
                return ReadOutcome::Open;
            }
        }
    }

    /// Closes connections holding large incomplete frames, the one whose frame began last
    /// first, until `extra` more bytes fit under [`ServerConfig::max_partial_bytes`].
    /// Returns false when `token` itself is the one to close (the caller closes it).
    fn make_room(&mut self, token: Token, extra: usize) -> bool {
        while self.partial_total + extra > self.config.max_partial_bytes {
            let victim = self
                .conns
                .iter()
                .filter(|(_, c)| c.reader.held() >= crate::reader::LARGE)
                .max_by_key(|(_, c)| c.partial_since)
                .map(|(t, c)| (*t, c.peer, c.reader.held()));
            let Some((victim, peer, held)) = victim else {
                return true; // only small tails: nothing worth closing
            };
            self.partial_cap_closes += 1;
            log::warn!(
                "rpc server: {} bytes held for incomplete requests reach max_partial_bytes \
                 ({}); closing the connection from {peer:?} whose incomplete frame began \
                 last ({held} bytes held)",
                self.partial_total + extra,
                self.config.max_partial_bytes
            );
            if victim == token {
                return false;
            }
            self.close(victim);
        }
        true
    }

    /// Dispatches every complete frame in `data`. Returns the bytes consumed and the change
    /// in calls in flight; or the framing error (the connection must close).
    #[allow(clippy::type_complexity)]
    fn dispatch_all(
        &self,
        conn_id: u64,
        data: &[u8],
        owned: Option<&Bytes>,
        out: &mut Vec<u8>,
    ) -> Result<(usize, isize), (frame::FrameError, isize)> {
        INLINE.with(|c| {
            *c.borrow_mut() = Some(InlineCtx {
                server: self.shared.id,
                conn: conn_id,
                out: std::mem::take(out),
                answered: 0,
            })
        });
        let mut pos = 0;
        let mut dispatched = 0isize;
        let mut err = None;
        while pos < data.len() {
            match frame::decode(&data[pos..], self.config.max_frame) {
                Ok(Some((f, n))) => {
                    pos += n;
                    if f.kind != FrameKind::Request {
                        err = Some(frame::FrameError::BadKind(f.kind as u8));
                        break;
                    }
                    if self.dispatch(conn_id, f.request_id, f.envelope, f.body, owned) {
                        dispatched += 1;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let ctx = INLINE.with(|c| c.borrow_mut().take());
        let answered = match ctx {
            Some(ctx) => {
                *out = ctx.out;
                ctx.answered as isize
            }
            None => 0,
        };
        let delta = dispatched - answered;
        match err {
            None => Ok((pos, delta)),
            Some(e) => Err((e, delta)),
        }
    }

    /// Handles one request; true if a handler now owns its reply.
    fn dispatch(
        &self,
        conn_id: u64,
        id: u64,
        envelope: &[u8],
        body: &[u8],
        owned: Option<&Bytes>,
    ) -> bool {
        let fail = |status: Status, text: &str| {
            INLINE.with(|c| {
                if let Some(ctx) = c.borrow_mut().as_mut() {
                    frame::encode_error(&mut ctx.out, id, status, text);
                }
            })
        };
        let Some((service, method)) = frame::parse_request_header(envelope) else {
            fail(Status::Decode, "request header does not decode");
            return false;
        };
        let Some(entry) = self.services.get(service) else {
            fail(
                Status::UnknownService,
                &format!("unknown service {}", Clipped(service)),
            );
            return false;
        };
        let Some(m) = entry.methods.iter().position(|x| *x == method) else {
            fail(
                Status::UnknownMethod,
                &format!("service {service} has no method {}", Clipped(method)),
            );
            return false;
        };
        if self.shared.shutdown.load(Ordering::Relaxed) {
            fail(Status::Unavailable, "server shutting down");
            return false;
        }
        let body = match owned {
            Some(b) => b.slice_ref(body),
            None => Bytes::copy_from_slice(body),
        };
        let reply = RawReply::new(self.target.clone(), conn_id, id);
        if entry.inline {
            run_handler(&*entry.service, m, body, reply);
            return true;
        }
        let Some(pool) = self.pool.as_ref() else {
            reply.fail(Status::Internal, "no worker pool");
            return true;
        };
        match pool.try_send(Job {
            service: entry.service.clone(),
            method: m,
            body,
            reply,
        }) {
            Ok(()) => true,
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                job.reply
                    .fail(Status::ResourceExhausted, "handler queue full, retry later");
                true
            }
        }
    }

    fn drain_replies(&mut self) {
        // Every queued reply sets the flag after queuing, so a clear flag means nothing
        // to take (or a wake on its way).
        if !self.shared.wake_pending.load(Ordering::Acquire) {
            return;
        }
        self.shared.wake_pending.store(false, Ordering::Release);
        let replies = std::mem::take(
            &mut *self
                .shared
                .replies
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if replies.is_empty() {
            return;
        }
        let mut touched = Vec::new();
        for (conn, bytes) in replies {
            let token = Token(conn as usize);
            if let Some(c) = self.conns.get_mut(&token) {
                if c.out.is_empty() && c.out_pos == 0 {
                    c.out = bytes;
                } else {
                    c.out.extend_from_slice(&bytes);
                }
                c.in_flight = c.in_flight.saturating_sub(1);
                c.last_active = Instant::now();
                self.max_queued = self.max_queued.max(c.out.len() - c.out_pos);
                touched.push(token);
            }
        }
        touched.dedup();
        for t in touched {
            self.flush(t);
        }
    }

    /// Writes as much of the queue as the socket takes; the rest waits for `WRITABLE`.
    fn flush(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        while conn.out_pos < conn.out.len() {
            match conn.stream.write(&conn.out[conn.out_pos..]) {
                Ok(0) => {
                    self.close(token);
                    return;
                }
                Ok(n) => {
                    conn.out_pos += n;
                    conn.write_progress = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let queued = conn.out.len() - conn.out_pos;
                    if conn.read_paused && queued <= self.config.max_write_queue / 2 {
                        self.resume(token);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("rpc server: write to {:?} failed: {e}", conn.peer);
                    self.close(token);
                    return;
                }
            }
        }
        conn.out_pos = 0;
        conn.write_progress = Instant::now();
        if conn.out.capacity() > KEEP_BUF {
            conn.out = Vec::new();
        } else {
            conn.out.clear();
        }
        if conn.read_closed && conn.in_flight == 0 {
            self.close(token);
            return;
        }
        if conn.read_paused {
            self.resume(token);
        }
    }

    /// Reads a paused connection again: its readable interest comes back, and what
    /// arrived meanwhile is read now (no new edge may announce it).
    fn resume(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        conn.read_paused = false;
        if let Err(e) = self.poll.registry().reregister(
            &mut conn.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::error!("rpc server: cannot resume reading {:?}: {e}", conn.peer);
            self.close(token);
            return;
        }
        // What arrived meanwhile is read on the next turn: no new edge may announce it.
        if !self.backlog.contains(&token) {
            self.backlog.push(token);
        }
    }

    fn publish_stats(&mut self) {
        let mut guard = self
            .shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        guard.0 += 1;
        let st = &mut guard.1;
        st.max_queued_reply_bytes = self.max_queued;
        st.connections = self.conns.len();
        st.max_read_per_turn = self.max_read_per_turn;
        st.max_partial_frame_bytes = self.max_partial_total;
        st.partial_cap_closes = self.partial_cap_closes;
        st.fd_refused = self.fd_refused;
        st.queued_reply_bytes = 0;
        st.partial_frame_bytes = 0;
        st.read_paused = 0;
        for c in self.conns.values() {
            let q = c.out.len() - c.out_pos;
            st.queued_reply_bytes += q;
            st.read_paused += usize::from(c.read_paused);
            st.partial_frame_bytes += c.reader.held();
        }
        drop(guard);
        self.shared.stats_published.notify_all();
    }

    fn sweep_idle(&mut self, idle: Duration) {
        let now = Instant::now();
        let stale: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let idle_conn = c.in_flight == 0
                    && c.out_pos == c.out.len()
                    && now.duration_since(c.last_active) >= idle;
                // A peer that has taken none of its queued replies for that long (also
                // after it half-closed) is gone or hostile: its queue is freed.
                let stuck = c.out_pos < c.out.len() && now.duration_since(c.write_progress) >= idle;
                idle_conn || stuck
            })
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            log::debug!("rpc server: closing idle connection");
            self.close(t);
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut c) = self.conns.remove(&token) {
            self.partial_total -= c.reader.held();
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }
}
