//! The key-value service of raftkv.
//!
//! - [`state`]: the replicated state machine ([`KvState`]: the key-value map on our
//!   skiplist plus the duplicate table client id → last sequence number and its reply)
//!   with its checksummed snapshot format. Pure.
//! - [`machine`]: the apply loop's logic without its thread ([`Machine`]): requests
//!   waiting for their log index or read point, answered when applied. Pure; the
//!   simulator in `testkit` drives it too.
//! - [`node`]: one running node ([`KvNode`]): the Raft driver, the apply thread, the
//!   snapshot thread and the `KvService` handlers.
//! - the `kvserver` binary (one node) and `kvcluster` (a local cluster of them).
//!
//! # Guarantees
//!
//! - Writes are linearizable and apply exactly once per (client id, sequence number):
//!   they go through the Raft log and the duplicate table (§6.3 of Ongaro's thesis).
//! - Gets are linearizable: served by a leader after a ReadIndex round (thesis §6.4),
//!   once the state machine has applied through the read point; never by a follower or a
//!   deposed leader. Concurrent Gets share one heartbeat round.
//! - No request waits forever: a waiting request is answered WRONG_LEADER as soon as its
//!   log index is applied with another command or this node stops leading, TIMEOUT at its
//!   deadline, SHUTTING_DOWN when the node stops.
//! - A committed entry that does not decode as a command stops the node, naming the index.

pub mod cli;
pub mod machine;
pub mod node;
pub mod state;

pub use machine::{DEFAULT_MAX_VALUE_BYTES, MAX_KEY_BYTES, Machine, WriteResult, validate};
pub use node::{Fatal, KvConfig, KvHandlers, KvNode};
pub use state::{Applied, BadEntry, KvState, SnapshotError, SnapshotView, WriteOutcome};
