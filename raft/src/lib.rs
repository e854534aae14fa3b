//! The Raft consensus algorithm for raftkv.
//!
//! This crate will own a deterministic core (no threads, clock, sockets or files), a thin
//! node driver wiring it to a transport, durable storage and the apply channel.
//!
//! Not built yet.
