//! The Clerk's one error type.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// What went wrong with a Clerk operation. Each variant is a condition a caller branches
/// on; "key not found" is not an error (`get` returns `Ok(None)`).
#[derive(Debug, Clone)]
pub enum Error {
    /// No server completed the operation before the Clerk's overall deadline
    /// ([`crate::ClerkBuilder::deadline`]). For a write, the outcome is **unknown**: it may
    /// have been applied (and a later retry with the same client id and sequence number
    /// would not apply it twice), or not. `nodes` says what each server answered last.
    DeadlineExceeded {
        /// `"get"`, `"put"`, `"append"` or `"delete"`.
        op: &'static str,
        /// Time from the call to giving up.
        elapsed: Duration,
        /// Requests sent (attempts), all servers together.
        attempts: u32,
        /// Per server, in endpoint order: how often it was tried and its last answer.
        nodes: Vec<NodeOutcome>,
        /// A node the servers named as leader that is not among the endpoints (one added
        /// by a membership change): add it to the endpoints.
        unknown_leader: Option<u64>,
    },
    /// A server refused the request as invalid (e.g. a value over its configured maximum);
    /// retrying cannot help. Not applied.
    Rejected {
        /// Which server said so.
        addr: SocketAddr,
        /// The server's error code name, e.g. `"VALUE_TOO_LARGE"`.
        code: String,
        /// What to change.
        message: String,
    },
    /// The request was refused before sending: empty key, key over [`crate::MAX_KEY_LEN`],
    /// or value over [`crate::MAX_VALUE_LEN`]. Not applied.
    InvalidArgument(String),
    /// The endpoint list is unusable (empty, unparsable, duplicate ids).
    InvalidEndpoints(String),
}

/// One server's part in a failed operation.
#[derive(Debug, Clone)]
pub struct NodeOutcome {
    /// The node's Raft id.
    pub id: u64,
    /// Its address.
    pub addr: SocketAddr,
    /// How many requests went to it.
    pub tries: u32,
    /// Its last answer in words (`"connection refused"`, `"not the leader (hint n2)"`,
    /// `"no reply within 1s"`); `None` if it was never tried.
    pub last: Option<String>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::DeadlineExceeded {
                op,
                elapsed,
                attempts,
                nodes,
                unknown_leader,
            } => {
                write!(
                    f,
                    "{op} did not complete within {elapsed:.1?} ({attempts} attempts); "
                )?;
                for (i, n) in nodes.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    match &n.last {
                        Some(last) => {
                            write!(f, "n{} {} tried {}x, last: {last}", n.id, n.addr, n.tries)?
                        }
                        None => write!(f, "n{} {} not tried", n.id, n.addr)?,
                    }
                }
                if let Some(id) = unknown_leader {
                    write!(
                        f,
                        ". Node {id}, which the nodes name as the leader, is not among the \
                         endpoints (added by a membership change?): add it to the endpoints \
                         (`kvcli member list` shows its address)"
                    )?;
                    if *op != "get" {
                        f.write_str("; the write may or may not have been applied")?;
                    }
                    Ok(())
                } else if *op != "get" {
                    f.write_str(
                        ". The write may or may not have been applied; check that a majority \
                         of the nodes is running and reachable (kvcli status)",
                    )
                } else {
                    f.write_str(
                        ". Check that a majority of the nodes is running and reachable \
                         (kvcli status)",
                    )
                }
            }
            Error::Rejected {
                addr,
                code,
                message,
            } => write!(f, "{addr} refused the request ({code}): {message}"),
            Error::InvalidArgument(m) => write!(f, "invalid request: {m}"),
            Error::InvalidEndpoints(m) => write!(f, "invalid endpoints: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// The Clerk's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
