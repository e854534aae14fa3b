//! Operations and histories.

use serde::{Deserialize, Serialize};

/// One operation of a history: what a client asked, what it got, and when.
///
/// Times are in any monotonic unit (the [`crate::Recorder`] uses nanoseconds since it was
/// created; the Jepsen parsers use the line number). Only their order matters: operation
/// `a` precedes `b` in real time iff `a.ret < b.call`. Operations whose intervals touch
/// (`a.ret == b.call`) are treated as concurrent, which can only make the checker more
/// permissive, never wrongly strict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation<I, O> {
    /// Who issued it. A client has at most one operation in flight (not required by the
    /// checker, used to draw one lane per client).
    pub client: u64,
    /// What was asked.
    pub input: I,
    /// What was answered; `None` if the outcome is unknown (Jepsen's `info`, a timeout, a
    /// call that never returned): the operation may or may not have taken effect, at any
    /// moment after its call.
    pub output: Option<O>,
    /// When the call started.
    pub call: u64,
    /// When the answer arrived; `None` if it never did. The checker treats the return of an
    /// operation with unknown outcome as +∞ whatever this field holds (the time a client
    /// gave up is not a bound on when the operation took effect).
    #[serde(rename = "return")]
    pub ret: Option<u64>,
}

impl<I, O> Operation<I, O> {
    /// The return time the checker uses: +∞ (`u64::MAX`) for an unknown outcome.
    pub fn effective_return(&self) -> u64 {
        match (&self.output, self.ret) {
            (Some(_), Some(t)) => t,
            _ => u64::MAX,
        }
    }

    /// Whether the outcome is unknown.
    pub fn is_unknown(&self) -> bool {
        self.output.is_none()
    }
}

/// A history: operations in any order.
pub type History<I, O> = Vec<Operation<I, O>>;
