//! The key-value service of raftkv.
//!
//! This crate will own:
//! - the RPC handlers for Get/Put/Append/Delete, which propose commands to Raft and answer
//!   when the apply loop has applied them (a reply handle kept by log index, no parked thread);
//! - the apply loop feeding the skiplist state machine, with the duplicate table
//!   (client id → last sequence number and reply) so a retried write applies once;
//! - snapshots past `max_raft_state` bytes of Raft log, and restore from them;
//! - the `kvserver` binary (one node) and a local-cluster launcher.
//!
//! Not built yet.
