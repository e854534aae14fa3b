//! The Raft consensus algorithm for raftkv.
//!
//! (Design essay: see the end of this file's docs; written last.)

mod core;
mod log;
mod node;
pub mod rpc_transport;
mod storage;
pub mod transport;

pub use crate::core::{Config, RawNode, ReadState, Ready, Role, Stats, Status};
pub use crate::node::{ApplyMsg, DEFAULT_TICK, Mailbox, Node, Transport};
pub use crate::storage::{InitialState, MemStorage, Snapshot, Storage, StorageError};
pub use proto::raft::{Entry, EntryType, HardState, RaftMessage};

/// Errors a caller of this crate branches on.
#[derive(Debug)]
pub enum Error {
    /// This node does not lead; `leader_hint` is the leader it knows of, if any.
    NotLeader {
        /// The leader of the current term as far as this node knows.
        leader_hint: Option<u64>,
    },
    /// `snapshot(index, ..)` for an index not yet handed out to apply.
    SnapshotNotApplied {
        /// The index asked for.
        index: u64,
        /// The highest index handed out to apply.
        applied: u64,
    },
    /// The configuration (or the stored state) is unusable.
    InvalidConfig(String),
    /// Storage failed; the node stops.
    Storage(StorageError),
    /// No answer in time (a ReadIndex round that got no majority).
    Timeout,
    /// The node has shut down.
    Shutdown,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotLeader { leader_hint } => write!(f, "not the leader (hint: {leader_hint:?})"),
            Error::SnapshotNotApplied { index, applied } => {
                write!(f, "snapshot at {index} but only {applied} applied")
            }
            Error::InvalidConfig(s) => write!(f, "invalid raft config: {s}"),
            Error::Storage(e) => write!(f, "{e}"),
            Error::Timeout => write!(f, "raft request timed out"),
            Error::Shutdown => write!(f, "raft node shut down"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
