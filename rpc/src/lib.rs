//! raftkv's protobuf-over-TCP RPC framework on mio.
//!
//! This crate will own framing, the server event loop, service/method dispatch, and client
//! channels with many calls in flight, deadlines and reconnects. It knows nothing of Raft.
//!
//! Not built yet.
