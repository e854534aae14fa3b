//! The transport-agnostic side of RPC services: what the code generated from `service`
//! blocks is written against.
//!
//! `build.rs` turns every `service Foo { rpc Bar(A) returns (B); }` into three items in the
//! message module of its package:
//!
//! - a **server trait** `Foo` with one method per rpc, `fn bar(&self, request: A, reply:
//!   Reply<B>)`. The handler answers through the [`Reply`] now or later, from any thread;
//! - a **dispatcher** `FooServer<T: Foo>` implementing [`Service`]: it maps a method index
//!   to "decode the body as `A`, call `T::bar`". A server (the `rpc` crate) registers it;
//! - a **client stub** `FooClient<C: Caller>` with `bar(&request, timeout)` (blocking) and
//!   `bar_async(&request, timeout, done)` (the completion runs once, with the decoded reply
//!   or the error).
//!
//! This crate cannot name the `rpc` crate (it depends on us), so the two meet at the traits
//! here: the rpc server implements [`ReplyTarget`] and calls [`Service::call`]; the rpc
//! client channel implements [`Caller`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use crate::rpc::Status;

/// A message body that can be written into a frame: every prost message is one.
///
/// Object-safe, unlike `prost::Message::encode`, so that the transport can take
/// `&dyn Body` and write it straight into its output buffer (no intermediate `Vec`).
pub trait Body {
    /// Exact number of bytes [`Body::encode_into`] appends.
    fn body_len(&self) -> usize;
    /// Appends the protobuf encoding to `out`.
    fn encode_into(&self, out: &mut Vec<u8>);
}

impl<M: prost::Message> Body for M {
    fn body_len(&self) -> usize {
        self.encoded_len()
    }
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode_raw(out);
    }
}

/// A service as a server sees it: a name, its methods, and a way to run one.
///
/// Generated `FooServer` dispatchers implement this; tests may implement it by hand.
pub trait Service: Send + Sync + 'static {
    /// Full name as declared in the `.proto` file, e.g. `"raftkv.kv.KvService"`.
    fn name(&self) -> &'static str;
    /// Method names as declared in the service block; [`Service::call`] takes an index
    /// into this slice.
    fn methods(&self) -> &'static [&'static str];
    /// Decodes `body` as the input of method number `method` and runs its handler, which
    /// answers through `reply` (now or later). A body that does not decode is answered with
    /// [`Status::Decode`] here; a bad `method` index with [`Status::UnknownMethod`].
    fn call(&self, method: usize, body: Bytes, reply: RawReply);
}

/// What a server's reply handle answers into: implemented by the transport.
pub trait ReplyTarget: Send + Sync + 'static {
    /// Delivers the outcome of call `request_id` received on connection `conn`. Called
    /// exactly once per call. Must not block for long: it runs on handler threads.
    fn deliver(&self, conn: u64, request_id: u64, outcome: Outcome<'_>);
}

/// The outcome of one call, handed to [`ReplyTarget::deliver`].
#[derive(Clone, Copy)]
pub enum Outcome<'a> {
    /// The handler's reply message.
    Ok(&'a dyn Body),
    /// An RPC-level failure with a status and a human-readable text.
    Err(Status, &'a str),
}

impl fmt::Debug for Outcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(b) => write!(f, "Ok({} bytes)", b.body_len()),
            Outcome::Err(s, m) => write!(f, "Err({s:?}, {m:?})"),
        }
    }
}

/// An untyped, one-shot reply handle for one call.
///
/// `Send`, so it can move to any thread and be answered later. Dropping it unanswered
/// answers the caller with [`Status::Unavailable`] ("reply handle dropped"), or with
/// [`Status::HandlerPanic`] if the drop happens while the thread is panicking: a caller is
/// never left waiting on a handle nobody holds.
pub struct RawReply {
    target: Option<Arc<dyn ReplyTarget>>,
    conn: u64,
    request_id: u64,
}

impl RawReply {
    /// A handle that answers into `target`. Called by the transport.
    pub fn new(target: Arc<dyn ReplyTarget>, conn: u64, request_id: u64) -> Self {
        RawReply {
            target: Some(target),
            conn,
            request_id,
        }
    }

    /// Answers with a message.
    pub fn send(mut self, body: &dyn Body) {
        if let Some(t) = self.target.take() {
            t.deliver(self.conn, self.request_id, Outcome::Ok(body));
        }
    }

    /// Answers with an RPC-level error.
    pub fn fail(mut self, status: Status, message: &str) {
        if let Some(t) = self.target.take() {
            t.deliver(self.conn, self.request_id, Outcome::Err(status, message));
        }
    }

    /// The request id this handle answers.
    pub fn request_id(&self) -> u64 {
        self.request_id
    }
}

impl Drop for RawReply {
    fn drop(&mut self) {
        if let Some(t) = self.target.take() {
            let (status, text) = if std::thread::panicking() {
                (Status::HandlerPanic, "handler panicked")
            } else {
                (
                    Status::Unavailable,
                    "reply handle dropped without an answer",
                )
            };
            t.deliver(self.conn, self.request_id, Outcome::Err(status, text));
        }
    }
}

impl fmt::Debug for RawReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawReply")
            .field("conn", &self.conn)
            .field("request_id", &self.request_id)
            .field("answered", &self.target.is_none())
            .finish()
    }
}

/// A typed reply handle: answer with a `T` or an error, once, from any thread.
///
/// Same drop rule as [`RawReply`]: an unanswered handle answers the caller with an error.
pub struct Reply<T> {
    raw: RawReply,
    _reply: PhantomData<fn(T)>,
}

impl<T: prost::Message> Reply<T> {
    /// Wraps an untyped handle. Called by generated dispatchers.
    pub fn new(raw: RawReply) -> Self {
        Reply {
            raw,
            _reply: PhantomData,
        }
    }

    /// Answers with `reply`.
    pub fn send(self, reply: T) {
        self.raw.send(&reply);
    }

    /// Answers by reference (no move needed).
    pub fn send_ref(self, reply: &T) {
        self.raw.send(reply);
    }

    /// Answers with an RPC-level error; the caller sees
    /// `CallError::Remote { status, message }`.
    pub fn fail(self, status: Status, message: &str) {
        self.raw.fail(status, message);
    }
}

impl<T> fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.raw.fmt(f)
    }
}

/// Why a call failed, as the client sees it.
#[derive(Debug, Clone)]
pub enum CallError {
    /// No usable connection: connect failed or is backing off, the connection broke with
    /// the call in flight, or the client runtime is shut down. Safe to retry elsewhere;
    /// the server may or may not have run the call.
    Unavailable {
        /// What happened, in a few words.
        reason: &'static str,
        /// The socket error behind it, when there is one.
        source: Option<Arc<std::io::Error>>,
    },
    /// No reply before the deadline. The server may still run the call.
    Timeout,
    /// Too many calls in flight on this connection (see the channel's limit); nothing was
    /// sent.
    Overloaded,
    /// The server answered with an RPC-level error (unknown method, undecodable request,
    /// handler panic, dropped reply handle, shutting down, ...).
    Remote {
        /// Which kind of failure.
        status: Status,
        /// The server's text, e.g. naming the unknown method.
        message: String,
    },
    /// The reply arrived but did not decode as the method's output message (or the frame
    /// carrying it was malformed).
    Decode(prost::DecodeError),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Unavailable { reason, .. } => write!(f, "unavailable: {reason}"),
            CallError::Timeout => f.write_str("deadline exceeded"),
            CallError::Overloaded => f.write_str("too many calls in flight on this connection"),
            CallError::Remote { status, message } => {
                write!(f, "remote error {}: {message}", status.as_str_name())
            }
            CallError::Decode(e) => write!(f, "reply did not decode: {e}"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Unavailable {
                source: Some(e), ..
            } => Some(&**e),
            CallError::Decode(e) => Some(e),
            _ => None,
        }
    }
}

/// A completion for a non-blocking call: runs exactly once with the raw reply body or the
/// error, on the transport's I/O thread (keep it short; hand heavy work to a channel).
pub type Completion = Box<dyn FnOnce(Result<Bytes, CallError>) + Send + 'static>;

/// The client side of a transport, as generated stubs use it. `rpc::Channel` implements it.
pub trait Caller {
    /// Sends `request` to `service`/`method` and waits for the raw reply body, at most
    /// `timeout`.
    fn call(
        &self,
        service: &'static str,
        method: &'static str,
        request: &dyn Body,
        timeout: Duration,
    ) -> Result<Bytes, CallError>;

    /// Sends `request` and returns at once; `done` runs exactly once with the outcome
    /// (possibly before this returns, e.g. on a broken connection).
    fn call_async(
        &self,
        service: &'static str,
        method: &'static str,
        request: &dyn Body,
        timeout: Duration,
        done: Completion,
    );
}

impl<C: Caller + ?Sized> Caller for &C {
    fn call(
        &self,
        service: &'static str,
        method: &'static str,
        request: &dyn Body,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        (**self).call(service, method, request, timeout)
    }
    fn call_async(
        &self,
        service: &'static str,
        method: &'static str,
        request: &dyn Body,
        timeout: Duration,
        done: Completion,
    ) {
        (**self).call_async(service, method, request, timeout, done)
    }
}

impl<C: Caller + ?Sized> Caller for Arc<C> {
    fn call(
        &self,
        service: &'static str,
        method: &'static str,
        request: &dyn Body,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        (**self).call(service, method, request, timeout)
    }
    fn call_async(
        &self,
        service: &'static str,
        method: &'static str,
        request: &dyn Body,
        timeout: Duration,
        done: Completion,
    ) {
        (**self).call_async(service, method, request, timeout, done)
    }
}

/// Decodes a reply body as `T`, mapping failure to [`CallError::Decode`]. Used by stubs.
pub fn decode_reply<T: prost::Message + Default>(body: Bytes) -> Result<T, CallError> {
    T::decode(body).map_err(CallError::Decode)
}
