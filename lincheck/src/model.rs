//! Sequential specifications ("models") the checker linearizes against.
//!
//! A [`Model`] is a deterministic state machine: `init` gives the state before any operation,
//! `step` applies one operation with the output the history says it returned and answers
//! whether that output is legal from that state (and the state after it). Two models ship
//! here, [`RegisterModel`] (read / write / compare-and-set) and [`KvModel`]
//! (get / put / append / delete); another model is a few lines.

use std::fmt::Debug;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// A sequential specification.
///
/// Rules a model must follow for the checker's verdict to mean anything:
/// - `step` is a pure function of its arguments (no interior state, no randomness);
/// - `step` with `output == None` (the outcome is unknown: Jepsen's `info`, or a call that
///   never returned) applies the operation and accepts whatever it would return; it must
///   return `Some` from every state (the checker relies on an operation of unknown outcome
///   always fitting at the end of a linearization);
/// - states that behave the same must compare equal and hash equally (the memo cache of
///   Lowe's algorithm relies on it: equal states are explored once per linearized set);
/// - operations with different [`Model::partition_key`]s must not affect each other (the
///   checker then checks each key alone, which Herlihy & Wing's locality theorem makes
///   exact: a history is linearizable iff every per-object sub-history is).
pub trait Model: Sync {
    /// What the client asked for.
    type Input: Clone + Debug + Send + Sync;
    /// What the client got back, when it got an answer.
    type Output: Clone + Debug + Send + Sync;
    /// The object's state. Equality and hashing drive the memo cache.
    type State: Clone + Eq + Hash + Debug + Send;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state`. Returns the new state if `output` is what a sequential
    /// object in `state` would return (any output is fine when `output` is `None`), and
    /// `None` if the output is impossible from `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// Whether the operation never changes the state: `step` returns the state it was
    /// given whenever it succeeds (a read). The checker then linearizes such an operation
    /// as soon as it fits, without trying alternatives, which is exact for read-only
    /// operations (see the [`crate::checker`] docs) and makes many concurrent readers cheap.
    /// Saying `true` for an operation that can change the state makes verdicts wrong; the
    /// default `false` is always safe.
    fn is_read_only(&self, _input: &Self::Input) -> bool {
        false
    }

    /// Whether a partition made of exactly these operations only ever extends its state,
    /// so that a state, once reached, can never be left for an earlier one: for a key that
    /// only sees appends and reads, `true`. The checker then drops a candidate order as
    /// soon as its state can no longer lead to the answer of some read still to be placed
    /// (see [`Model::can_still_reach`]), which turns the exponential search over orders of
    /// concurrent appends into one guided by what the reads saw. The default `false` is
    /// always safe.
    fn is_monotone(&self, _inputs: &[&Self::Input]) -> bool {
        false
    }

    /// In a partition for which [`Model::is_monotone`] said `true`: whether some sequence of
    /// its operations can take `state` to one in which `input` returns `output`. Saying
    /// `false` where such a sequence exists makes verdicts wrong; the default `true` is
    /// always safe.
    fn can_still_reach(
        &self,
        _state: &Self::State,
        _input: &Self::Input,
        _output: &Self::Output,
    ) -> bool {
        true
    }

    /// The independent object this input touches (a key); one partition per distinct value.
    /// The default puts every operation in one partition.
    fn partition_key(&self, _input: &Self::Input) -> String {
        String::new()
    }

    /// A short human text for one operation, e.g. `put("k", "v")` or `get("k") → NoKey`.
    /// `output == None` is an operation with unknown outcome.
    fn describe_operation(&self, input: &Self::Input, output: Option<&Self::Output>) -> String;

    /// A short human text for a state.
    fn describe_state(&self, state: &Self::State) -> String;
}

// ---------------------------------------------------------------------------------------
// Register

/// An operation on a single integer register.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "lowercase")]
pub enum RegisterInput {
    /// Read the current value.
    Read,
    /// Set the value.
    Write {
        /// The value written.
        value: i64,
    },
    /// Compare-and-set: set to `to` if the current value is `from`.
    Cas {
        /// The value expected.
        from: i64,
        /// The value stored if the expectation holds.
        to: i64,
    },
}

/// What a register operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterOutput {
    /// The value read; `None`: the register was never written (Jepsen's `nil`).
    Read(Option<i64>),
    /// A write completed.
    Write,
    /// Whether the compare-and-set swapped.
    Cas(bool),
}

/// One register, initially unwritten (`None`). The model of Jepsen's etcd register tests
/// and of Porcupine's `etcd` model: a compare-and-set that returned `fail` still happened
/// (it saw a value other than `from`), a read of a never-written register returns `nil`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterModel;

impl Model for RegisterModel {
    type Input = RegisterInput;
    type Output = RegisterOutput;
    type State = Option<i64>;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Option<Option<i64>> {
        match (input, output) {
            (RegisterInput::Read, None) => Some(*state),
            (RegisterInput::Read, Some(RegisterOutput::Read(v))) => (v == state).then_some(*state),
            (RegisterInput::Write { value }, None | Some(RegisterOutput::Write)) => {
                Some(Some(*value))
            }
            (RegisterInput::Cas { from, to }, out) => {
                let swaps = *state == Some(*from);
                match out {
                    None => Some(if swaps { Some(*to) } else { *state }),
                    Some(RegisterOutput::Cas(ok)) if *ok == swaps => {
                        Some(if swaps { Some(*to) } else { *state })
                    }
                    _ => None,
                }
            }
            // An output of the wrong kind is never legal.
            _ => None,
        }
    }

    fn is_read_only(&self, input: &RegisterInput) -> bool {
        matches!(input, RegisterInput::Read)
    }

    fn describe_operation(&self, input: &RegisterInput, output: Option<&RegisterOutput>) -> String {
        let call = match input {
            RegisterInput::Read => "read()".to_string(),
            RegisterInput::Write { value } => format!("write({value})"),
            RegisterInput::Cas { from, to } => format!("cas({from}→{to})"),
        };
        let ret = match output {
            None => "?".to_string(),
            Some(RegisterOutput::Read(Some(v))) => v.to_string(),
            Some(RegisterOutput::Read(None)) => "nil".to_string(),
            Some(RegisterOutput::Write) => "ok".to_string(),
            Some(RegisterOutput::Cas(true)) => "ok".to_string(),
            Some(RegisterOutput::Cas(false)) => "fail".to_string(),
        };
        format!("{call} → {ret}")
    }

    fn describe_state(&self, state: &Option<i64>) -> String {
        match state {
            Some(v) => v.to_string(),
            None => "nil (never written)".to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Key-value store

/// An operation on a key-value store. This is also the shape of the `raftkv` history
/// format (see the crate docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "lowercase")]
pub enum KvInput {
    /// Read the key's value.
    Get {
        /// The key.
        key: String,
    },
    /// Set the key's value.
    Put {
        /// The key.
        key: String,
        /// The value stored.
        value: String,
    },
    /// Concatenate `value` to the key's value (to `""` if the key is absent).
    Append {
        /// The key.
        key: String,
        /// The suffix appended.
        value: String,
    },
    /// Remove the key.
    Delete {
        /// The key.
        key: String,
    },
}

impl KvInput {
    /// The key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            KvInput::Get { key }
            | KvInput::Put { key, .. }
            | KvInput::Append { key, .. }
            | KvInput::Delete { key } => key,
        }
    }
}

/// What a key-value operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOutput {
    /// A get's answer: the value, or `None` for "no such key" (distinct from `Some("")`).
    Value(Option<String>),
    /// A put, append or delete completed.
    Done,
}

/// A key-value store whose keys are independent registers of strings (one partition per
/// key). The state of one key is `Option<String>`: `None` is "no such key".
///
/// [`KvModel::default()`] starts every key absent (raftkv's semantics: a get of a missing
/// key answers `NoKey`, distinct from the empty string). [`KvModel::jepsen()`] starts every
/// key at `""` (the semantics of the Jepsen-style KV logs of the corpus, where a get of a
/// never-written key returns `""`).
#[derive(Clone, Debug, Default)]
pub struct KvModel {
    /// The value of a key before any operation touched it.
    pub initial: Option<String>,
}

impl KvModel {
    /// Every key starts as `""` (Porcupine's and the Jepsen-style logs' KV semantics).
    pub fn jepsen() -> KvModel {
        KvModel {
            initial: Some(String::new()),
        }
    }
}

impl Model for KvModel {
    type Input = KvInput;
    type Output = KvOutput;
    type State = Option<String>;

    fn init(&self) -> Option<String> {
        self.initial.clone()
    }

    fn step(
        &self,
        state: &Option<String>,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<Option<String>> {
        match (input, output) {
            (KvInput::Get { .. }, None) => Some(state.clone()),
            (KvInput::Get { .. }, Some(KvOutput::Value(v))) => (v == state).then(|| state.clone()),
            (KvInput::Put { value, .. }, None | Some(KvOutput::Done)) => Some(Some(value.clone())),
            (KvInput::Append { value, .. }, None | Some(KvOutput::Done)) => {
                let mut s = state.clone().unwrap_or_default();
                s.push_str(value);
                Some(Some(s))
            }
            (KvInput::Delete { .. }, None | Some(KvOutput::Done)) => Some(None),
            _ => None,
        }
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        matches!(input, KvInput::Get { .. })
    }

    fn partition_key(&self, input: &KvInput) -> String {
        input.key().to_string()
    }

    /// Appends and gets only: an append turns `s` into `s + v` (absent counts as ""), so
    /// every later state has the current one as a prefix.
    fn is_monotone(&self, inputs: &[&KvInput]) -> bool {
        inputs
            .iter()
            .all(|i| matches!(i, KvInput::Append { .. } | KvInput::Get { .. }))
    }

    /// With appends only, a get that returned `v` can still be placed after `state` iff
    /// `state` is a prefix of `v`; one that returned NoKey iff the key is still absent.
    fn can_still_reach(&self, state: &Option<String>, input: &KvInput, output: &KvOutput) -> bool {
        match (input, output, state) {
            (KvInput::Get { .. }, KvOutput::Value(Some(v)), Some(s)) => v.starts_with(s.as_str()),
            (KvInput::Get { .. }, KvOutput::Value(None), Some(_)) => false,
            _ => true,
        }
    }

    fn describe_operation(&self, input: &KvInput, output: Option<&KvOutput>) -> String {
        let call = match input {
            KvInput::Get { key } => format!("get({key:?})"),
            KvInput::Put { key, value } => format!("put({key:?}, {value:?})"),
            KvInput::Append { key, value } => format!("append({key:?}, {value:?})"),
            KvInput::Delete { key } => format!("delete({key:?})"),
        };
        let ret = match output {
            None => "?".to_string(),
            Some(KvOutput::Value(Some(v))) => format!("{v:?}"),
            Some(KvOutput::Value(None)) => "NoKey".to_string(),
            Some(KvOutput::Done) => "ok".to_string(),
        };
        format!("{call} → {ret}")
    }

    fn describe_state(&self, state: &Option<String>) -> String {
        match state {
            Some(v) => format!("{v:?}"),
            None => "NoKey (absent)".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_read_of_unwritten_register_is_nil() {
        let m = RegisterModel;
        let s = m.init();
        assert_eq!(
            m.step(&s, &RegisterInput::Read, Some(&RegisterOutput::Read(None))),
            Some(None)
        );
        assert_eq!(
            m.step(
                &s,
                &RegisterInput::Read,
                Some(&RegisterOutput::Read(Some(0)))
            ),
            None
        );
    }

    #[test]
    fn register_cas_outputs_must_match_the_state() {
        let m = RegisterModel;
        let s = Some(3);
        let cas = RegisterInput::Cas { from: 3, to: 4 };
        assert_eq!(
            m.step(&s, &cas, Some(&RegisterOutput::Cas(true))),
            Some(Some(4))
        );
        assert_eq!(m.step(&s, &cas, Some(&RegisterOutput::Cas(false))), None);
        assert_eq!(m.step(&s, &cas, None), Some(Some(4)));
        let other = Some(5);
        assert_eq!(
            m.step(&other, &cas, Some(&RegisterOutput::Cas(false))),
            Some(Some(5))
        );
        assert_eq!(m.step(&other, &cas, None), Some(Some(5)));
    }

    #[test]
    fn kv_nokey_is_distinct_from_empty() {
        let m = KvModel::default();
        let get = KvInput::Get { key: "k".into() };
        assert_eq!(
            m.step(&None, &get, Some(&KvOutput::Value(None))),
            Some(None)
        );
        assert_eq!(
            m.step(&None, &get, Some(&KvOutput::Value(Some(String::new())))),
            None
        );
        let app = KvInput::Append {
            key: "k".into(),
            value: "x".into(),
        };
        assert_eq!(
            m.step(&None, &app, Some(&KvOutput::Done)),
            Some(Some("x".into()))
        );
        let del = KvInput::Delete { key: "k".into() };
        assert_eq!(
            m.step(&Some("x".into()), &del, Some(&KvOutput::Done)),
            Some(None)
        );
        assert_eq!(KvModel::jepsen().init(), Some(String::new()));
    }
}
