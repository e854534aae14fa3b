//! raftkv's protobuf-over-TCP RPC framework on mio. Knows nothing of Raft.
//!
//! TODO(essay): written below once the API settles.

pub mod client;
pub mod frame;
pub mod server;

pub use client::{Channel, ClientConfig, ClientRuntime};
pub use proto::service::{CallError, Caller, RawReply, Reply, Service, Status};
pub use server::{Server, ServerBuilder, ServerConfig};
