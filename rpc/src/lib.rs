//! raftkv's protobuf-over-TCP RPC framework on mio. It knows nothing of Raft.
//!
//! Raft peers, the KV service and every client ride on this layer. It replaces the C++
//! original's muduo RPC, which had no framing of replies, no request ids, no timeouts and
//! a thread per outgoing call; here every frame is length-prefixed, every call carries an
//! id, every call has a deadline, and one thread serves all outgoing connections.
//!
//! # Wire format
//!
//! A connection carries frames in both directions; the client sends requests, the server
//! answers each with one response or one error frame carrying the same request id, in any
//! order (a slow call does not hold up the ones behind it). All integers are big-endian.
//!
//! ```text
//! offset  size  field
//! 0       4     length L: bytes after this field, = 16 + E + body length (L >= 16)
//! 4       2     magic 0x52 0x4B ("RK")
//! 6       1     version, 1
//! 7       1     kind: 1 request, 2 response, 3 error
//! 8       8     request id (u64), chosen by the client, unique among its calls in flight
//!               on the connection; the server echoes it
//! 16      4     E: envelope length
//! 20      E     envelope, protobuf:
//!                 request:  raftkv.rpc.RequestHeader { service = 1, method = 2 }
//!                 response: empty (E = 0)
//!                 error:    raftkv.rpc.ErrorHeader { status = 1, message = 2 }
//! 20+E    L-16-E  body: the request or reply message, protobuf; empty on error frames
//! ```
//!
//! For example `Echo("hi")` as request 0x0102030405060708 to service `S`, method `M`:
//!
//! ```text
//! 00 00 00 1a  52 4b 01 01  01 02 03 04 05 06 07 08  00 00 00 06
//! 0a 01 53 12 01 4d          (RequestHeader { service: "S", method: "M" })
//! 0a 02 68 69                (EchoRequest { payload: "hi" })
//! ```
//!
//! [`frame`] holds the codec as plain functions; its tests pin these exact bytes. A frame
//! whose length exceeds the limit ([`ServerConfig::max_frame`], [`ClientConfig::max_frame`],
//! default 64 MiB), a wrong magic, version or kind, or an envelope longer than its frame
//! close the connection with a logged error: framing is lost, and the limit is checked on
//! the first 8 bytes, before anything of the announced size is allocated. A request whose
//! envelope or body does not decode keeps the connection and gets an error frame
//! (`STATUS_DECODE`).
//!
//! # Services
//!
//! A `service` block in `proto/proto/*.proto` is all it takes. `proto/build.rs` generates,
//! in that package's module of the `proto` crate:
//!
//! - a server trait, e.g. `proto::echo::EchoService` with
//!   `fn echo(&self, request: EchoRequest, reply: Reply<EchoReply>)`;
//! - a dispatcher `EchoServiceServer<T>` implementing [`Service`] (method name → decode →
//!   call);
//! - a client stub `EchoServiceClient<C: Caller>` with `echo(&req, timeout)` (blocking)
//!   and `echo_async(&req, timeout, done)` (non-blocking).
//!
//! ```no_run
//! use std::time::Duration;
//! use proto::echo::{EchoReply, EchoRequest, EchoService, EchoServiceClient, EchoServiceServer};
//! use rpc::{Channel, Reply, ServerBuilder};
//!
//! struct Echo;
//! impl EchoService for Echo {
//!     fn echo(&self, req: EchoRequest, reply: Reply<EchoReply>) {
//!         reply.send(EchoReply { payload: req.payload });
//!     }
//! }
//!
//! let server = ServerBuilder::new()
//!     .register_inline(EchoServiceServer::new(Echo)) // never blocks: run on the loop
//!     .bind("127.0.0.1:0".parse().unwrap())
//!     .unwrap();
//! let client = EchoServiceClient::new(Channel::new(server.local_addr()));
//! let reply = client.echo(&EchoRequest { payload: "hi".into() }, Duration::from_secs(1));
//! assert_eq!(&reply.unwrap().payload[..], b"hi");
//! ```
//!
//! The generated code lives in `proto`, which cannot depend on `rpc` (we depend on it), so
//! the two meet at the small traits of `proto::service`: [`Service`] and
//! [`proto::service::ReplyTarget`] on the server side, [`Caller`] on the client side.
//!
//! A [`Reply`] is a one-shot handle: `Send`, answerable later from any thread (the KV
//! server keeps it until the log entry is applied; no thread waits). Dropping it
//! unanswered answers `STATUS_UNAVAILABLE`; dropping it while panicking,
//! `STATUS_HANDLER_PANIC`. A caller is never left waiting for a handle nobody holds.
//!
//! **One port per node.** Register every service of a node (`RaftService` for peers,
//! `KvService` for clients) on one [`Server`]. Both are cheap to multiplex (the service
//! name is in every request), one port means one address per node in the configuration
//! and one event loop thread, and the handlers already differ where it matters: Raft
//! intake is registered inline (it only queues messages for the driver), KV handlers run
//! on the pool or answer later through their reply handles. Separate ports would only buy
//! isolation of accept queues and connection limits, which a cluster of a few nodes does
//! not need.
//!
//! # Threads
//!
//! **Server** ([`ServerBuilder::bind`]): one event loop thread (mio) accepts until
//! `WouldBlock`, reads each connection into a shared 64 KiB buffer (many frames per
//! `read`; only the tail of an incomplete frame is copied into a per-connection buffer, so
//! an idle connection holds no buffer), dispatches every complete frame, and appends
//! replies to a per-connection write buffer flushed once per batch (many replies per
//! `write`; the rest waits for `WRITABLE`). Handlers of services registered with
//! [`ServerBuilder::register`] run on a bounded pool ([`ServerConfig::workers`] threads, a
//! queue of [`ServerConfig::queue`] calls, beyond which calls are answered
//! `STATUS_RESOURCE_EXHAUSTED`); services registered with
//! [`ServerBuilder::register_inline`] run on the loop thread itself and their replies go
//! straight into the write buffer, with no hand-off and no wake-up. Replies from other
//! threads are queued and the loop is woken once per burst (a mio `Waker`).
//!
//! **Client** ([`ClientRuntime`]): one I/O thread per runtime serves every outgoing
//! connection; [`ClientRuntime::global`] is started on first use and lives as long as the
//! process, so by default there is one per process. A [`Channel`] is one connection to
//! one address, shared by all clones. A calling thread encodes its request and, if
//! nothing else is queued, writes it to the socket itself (no hop to the I/O thread); the
//! I/O thread reads replies, matches them to calls by request id, and wakes the blocking
//! caller or runs the completion. Completions run on the I/O thread: keep them short (one
//! that panics is caught and logged; the thread goes on). A
//! call made from a completion is queued and written with the rest of the batch.
//!
//! **Polling before sleeping.** A call and its reply cross two threads (three for a
//! blocking caller), and on a virtual machine waking a thread whose vCPU has halted costs
//! tens of microseconds: on the 2-vCPU development VM a 16-byte echo took 79-93 µs (p50)
//! when the machine was otherwise idle, 16 µs when it was busy. So after any connection
//! event the server loop and the client I/O thread keep polling (`epoll_wait` with a zero
//! timeout) for [`ServerConfig::spin`] / [`ClientConfig::spin`] (default 50 µs) before
//! they sleep, and a blocking caller checks for its reply for as long before it parks.
//! Between polls they call `sched_yield`, so a thread waiting for the same CPU (the
//! server the client waits for, say) is not held up; a pure busy loop was tried and made
//! things worse when the scheduler put both threads on one CPU. The same echo now takes
//! 12-18 µs on the idle machine. The cost: while calls follow each other within 50 µs the
//! threads keep their CPUs busy, and each burst of traffic ends with 50 µs of polling per
//! thread; with no traffic nothing polls. `Duration::ZERO` turns it off.
//!
//! # Errors
//!
//! Every call ends exactly once, with the reply or a [`CallError`]:
//!
//! - `Unavailable`: no connection (connect refused, backing off, broken with the call in
//!   flight, runtime shut down). Calls on a broken connection fail at once; they never
//!   hang. The next call after a break reconnects at once if the connection had worked,
//!   else after a backoff doubling from 10 ms to 1 s ([`ClientConfig`]). A server out of
//!   file descriptors accepts and closes a new connection at once (a reserved descriptor
//!   makes room), so its calls fail here rather than wait for their deadline.
//! - `Timeout`: no reply by the deadline. Blocking callers time themselves out exactly;
//!   non-blocking calls are timed out by the I/O thread, which sleeps until the earliest
//!   deadline. A reply that arrives later is dropped. A call that ends before any byte of
//!   its request was written takes its bytes out of the send queue. If the kernel took
//!   none of the connection's bytes for a call's whole deadline (the peer does not
//!   read), the connection is retired: new calls open a new one, and the old one closes
//!   once its calls have ended ([`ClientStats::queued_bytes`] falls back to 0).
//! - `Overloaded`: more than [`ClientConfig::max_in_flight`] calls, or more than
//!   [`ClientConfig::max_queued_bytes`] of unsent requests, on the connection; nothing was
//!   sent. This is the client's backpressure.
//! - `Remote { status, message }`: the server answered with an error frame: unknown
//!   service or method (the message names it), undecodable request, handler panic
//!   (the server keeps serving), dropped reply handle, queue full, shutting down.
//! - `Decode`: the reply did not decode as the method's output.
//!
//! # Limits and lifecycle
//!
//! Server: [`ServerConfig::max_connections`] (beyond it a new connection is accepted and
//! closed), [`ServerConfig::idle_timeout`] (a connection with no calls in flight and no
//! traffic is closed; so is one whose replies have not moved for that long),
//! [`ServerConfig::max_frame`], [`ServerConfig::max_write_queue`] (a connection's unsent
//! replies beyond which it is not read until they drain), [`ServerConfig::max_partial_bytes`]
//! (bytes held for incomplete requests, all connections together, beyond which the
//! connection whose incomplete frame began last is closed). Each connection gets at most
//! [`READ_BUDGET`] of reading per turn of the event loop, on the server and on the
//! client's I/O thread alike. At the open-file limit (`EMFILE`), a newcomer is accepted
//! through a reserved descriptor and closed at once. Dropping the [`Server`] shuts down
//! gracefully: stop accepting, answer new requests `STATUS_UNAVAILABLE`, give in-flight
//! calls [`ServerConfig::shutdown_grace`], close every connection, join every thread
//! (calls still queued for the pool when the grace ends are dropped unrun).
//!
//! Memory: an idle connection holds no buffers (about 0.25 KiB of server memory each,
//! measured with 10,000 of them); a write buffer is kept for reuse up to 1 MiB and freed
//! when it grew larger; frames of 16 KiB or more are read in place into buffers recycled
//! through a small process-wide pool (at most 8 MiB kept).
//!
//! Not done: TLS or authentication, streaming calls, cancellation propagated to the
//! server, detection of a silently dead
//! peer (no keepalive: a connection whose peer vanished without a reset stays open and
//! its calls time out until TCP gives up), a listen backlog above mio's 128.

pub mod client;
pub mod frame;
mod pool;
mod reader;
pub mod server;

pub use client::{Channel, ClientConfig, ClientRuntime, ClientStats};
pub use proto::service::{CallError, Caller, RawReply, Reply, Service, Status};
pub use server::{READ_BUDGET, Server, ServerBuilder, ServerConfig, ServerStats};
