//! Recording a history from many client threads.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::history::{History, Operation};
use crate::model::{KvInput, KvOutput};

struct Shared<I, O> {
    start: Instant,
    next_client: AtomicU64,
    ops: Mutex<Vec<Operation<I, O>>>,
}

/// Records the operations of many clients into one history.
///
/// Cheap to clone and `Send`: hand one [`ClientRecorder`] (from [`Recorder::client`]) to
/// each client thread. Timestamps are nanoseconds since the recorder was created, read
/// from one [`Instant`], so they are monotonic and comparable across threads. Take the
/// call time *before* the request leaves and the return time *after* the answer arrived
/// (that is what [`ClientRecorder::call`] and [`PendingCall::ok`] do when called around the
/// request), otherwise the recorded intervals are too narrow and the checker may report a
/// violation the system did not commit.
///
/// # Example
/// ```
/// use lincheck::{KvInput, KvOutput, Recorder};
/// let rec = Recorder::new();
/// let c = rec.client();
/// let p = c.call(KvInput::Put { key: "k".into(), value: "v".into() });
/// // ... send the request, wait for the answer ...
/// p.ok(KvOutput::Done);
/// let p = c.call(KvInput::Get { key: "k".into() });
/// p.unknown(); // timed out: it may or may not have taken effect
/// assert_eq!(rec.history().len(), 2);
/// ```
pub struct Recorder<I = KvInput, O = KvOutput> {
    shared: Arc<Shared<I, O>>,
}

impl<I, O> Clone for Recorder<I, O> {
    fn clone(&self) -> Self {
        Recorder {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<I, O> fmt::Debug for Recorder<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl<I: Clone, O: Clone> Default for Recorder<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: Clone, O: Clone> Recorder<I, O> {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Recorder {
            shared: Arc::new(Shared {
                start: Instant::now(),
                next_client: AtomicU64::new(0),
                ops: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A handle for one client, with a fresh client id (0, 1, 2, ...).
    pub fn client(&self) -> ClientRecorder<I, O> {
        let id = self.shared.next_client.fetch_add(1, Ordering::Relaxed);
        self.client_with_id(id)
    }

    /// A handle with a chosen client id (e.g. a Jepsen-style process number).
    pub fn client_with_id(&self, client: u64) -> ClientRecorder<I, O> {
        ClientRecorder {
            recorder: self.clone(),
            client,
        }
    }

    /// Nanoseconds since the recorder was created.
    pub fn now(&self) -> u64 {
        u64::try_from(self.shared.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Adds a completed operation (for callers that keep their own timestamps from
    /// [`Recorder::now`]).
    pub fn push(&self, op: Operation<I, O>) {
        self.shared
            .ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(op);
    }

    /// A copy of the operations recorded so far (completed ones and ones marked unknown),
    /// in completion order. Calls still in flight are not included.
    pub fn history(&self) -> History<I, O> {
        self.shared
            .ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// One client's handle on a [`Recorder`]. `Clone + Send`; the client id stays the same.
pub struct ClientRecorder<I = KvInput, O = KvOutput> {
    recorder: Recorder<I, O>,
    client: u64,
}

impl<I, O> Clone for ClientRecorder<I, O> {
    fn clone(&self) -> Self {
        ClientRecorder {
            recorder: self.recorder.clone(),
            client: self.client,
        }
    }
}

impl<I, O> fmt::Debug for ClientRecorder<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRecorder")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl<I: Clone, O: Clone> ClientRecorder<I, O> {
    /// This client's id.
    pub fn id(&self) -> u64 {
        self.client
    }

    /// Notes the call of an operation now. Finish it with [`PendingCall::ok`],
    /// [`PendingCall::unknown`] or [`PendingCall::fail`]; dropping it unfinished records
    /// an unknown outcome (the call never returned).
    pub fn call(&self, input: I) -> PendingCall<I, O> {
        let call = self.recorder.now();
        PendingCall {
            recorder: self.recorder.clone(),
            op: Some(Operation {
                client: self.client,
                input,
                output: None,
                call,
                ret: None,
            }),
        }
    }
}

/// An operation in flight; see [`ClientRecorder::call`].
#[must_use = "finish the call with ok(), unknown() or fail(); dropping it records an unknown outcome"]
pub struct PendingCall<I: Clone = KvInput, O: Clone = KvOutput> {
    recorder: Recorder<I, O>,
    op: Option<Operation<I, O>>,
}

impl<I: Clone, O: Clone> fmt::Debug for PendingCall<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCall").finish_non_exhaustive()
    }
}

impl<I: Clone, O: Clone> PendingCall<I, O> {
    /// The answer arrived now.
    pub fn ok(mut self, output: O) {
        if let Some(mut op) = self.op.take() {
            op.output = Some(output);
            op.ret = Some(self.recorder.now());
            self.recorder.push(op);
        }
    }

    /// The outcome is unknown (timeout, connection lost, ambiguous error): the operation may
    /// take effect at any time from its call on.
    pub fn unknown(mut self) {
        if let Some(mut op) = self.op.take() {
            op.ret = Some(self.recorder.now());
            self.recorder.push(op);
        }
    }

    /// The operation certainly did not take effect (e.g. rejected before it was proposed);
    /// it is left out of the history.
    pub fn fail(mut self) {
        self.op = None;
    }
}

impl<I: Clone, O: Clone> Drop for PendingCall<I, O> {
    fn drop(&mut self) {
        if let Some(op) = self.op.take() {
            self.recorder.push(op);
        }
    }
}
