//! The raftkv client: the [`Clerk`] and the `kvcli` command line.
//!
//! ```no_run
//! let kv = client::Clerk::new("1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003")?;
//! kv.put("k", "v1")?;
//! kv.append("k", "+v2")?;
//! assert_eq!(kv.get("k")?.as_deref(), Some(&b"v1+v2"[..]));
//! kv.delete("k")?;
//! assert_eq!(kv.get("k")?, None); // not found: None, distinct from Some(b"")
//! # Ok::<(), client::Error>(())
//! ```
//!
//! # What a Clerk does
//!
//! A Clerk sends each operation to the node that last answered as leader, and on failure
//! follows the server's leader hint or moves on to the next node, with a capped, jittered
//! backoff between rounds over all nodes, until the operation completes or its overall
//! deadline passes ([`ClerkBuilder::deadline`], default 10 s), when it returns
//! [`Error::DeadlineExceeded`] saying what each node answered last. It never retries
//! forever. The rules are in the `retry` module and are tested without sockets.
//!
//! # Exactly-once writes: client ids and sequence numbers
//!
//! A write that timed out may have been applied; retrying it blindly could apply it
//! twice (an Append would append twice). So every write carries a `client_id` and a
//! `seq`, and the servers keep, in their replicated state, the last `seq` applied per
//! `client_id` with its reply (the 6.5840 kvraft design; Raft thesis §6.3). A retry
//! reuses the same pair, so the cluster applies it once and answers the duplicate from
//! the table.
//!
//! - **Client ids are random 64-bit numbers from the OS** (`rand::random`, whose
//!   thread-local generator is seeded by the operating system's entropy source). Ids
//!   must differ between every two clients that ever talk to one cluster — also between
//!   two processes started in the same microsecond on two machines, which rules out
//!   clocks, pids and counters; the C++ original's unseeded `rand()` gave every Clerk the
//!   same id, so clients swallowed each other's writes as duplicates. With random 64-bit
//!   ids, a collision among a million clients has probability about 2.7e-8.
//! - **One write in flight per client id.** The duplicate table keeps only the *last*
//!   `seq` of a client, so two writes of one id in flight at once would break it: if
//!   `seq` 6 is applied before `seq` 5, 5 is then taken for an old duplicate and silently
//!   dropped. A Clerk therefore keeps a pool of *sessions* (client id + next `seq`): a
//!   write checks one out for its whole life, retries included, and returns it when it
//!   ends. One thread issuing writes one after another uses one id; N threads sharing a
//!   Clerk, or N non-blocking writes in flight, use up to N ids, reused afterwards, so the
//!   servers' table grows with the peak concurrency, not with the number of operations.
//! - A write that ended in [`Error::DeadlineExceeded`] gives its session back too: its
//!   next write has a higher `seq`, so if the abandoned one is still committed later it
//!   is applied before it or dropped as a duplicate, never after it.
//! - Reads carry no sequence number: a Get changes nothing, so it is safe to repeat.
//!
//! # Sharing and the non-blocking form
//!
//! `Clerk` is `Send + Sync` and cheap to clone (an `Arc`); clones share the connections,
//! the remembered leader and the session pool. [`Clerk::get_async`] and friends (or
//! [`Clerk::start`]) return at once and run a callback with the outcome, so one thread can
//! keep hundreds of operations in flight (benchmarks, pipelined loaders). Retries of
//! those wait on one timer thread per Clerk, never on the RPC I/O thread. Operations in
//! flight together are concurrent: the cluster may apply them in either order.
//!
//! # Endpoints
//!
//! [`parse_endpoints`] reads `1=host:port,2=host:port,…` (ids as in `kvserver --peers`)
//! or plain `host:port,…` (ids 1, 2, … by position). `kvcli` also reads
//! `RAFTKV_ENDPOINTS` and the endpoints file that `kvcluster` writes. When the followers
//! name a leader the Clerk was not given (a node added by a membership change), the Clerk
//! asks one of them for the member list and adds that node ([`Clerk::endpoints`] lists
//! it from then on); nodes are never dropped from the list.
//!
//! Not done: reads served by followers or leases (every Get goes to the leader), a full
//! refresh of the endpoint list from the membership (only a missing leader is added),
//! cancellation of an operation in flight.

mod admin;
mod clerk;
mod endpoints;
mod error;
mod retry;

pub use admin::{MemberInfo, Members};
pub use clerk::{Callback, Clerk, ClerkBuilder, MAX_KEY_LEN, MAX_VALUE_LEN, Op, Outcome};
pub use endpoints::{ENDPOINTS_ENV, Endpoint, format_endpoints, parse_endpoints};
pub use error::{Error, NodeOutcome, Result};
