//! The raftkv client.
//!
//! This crate will own the Clerk API (`get`, `put`, `append`, `delete`; it finds the leader,
//! retries, and tags each write with a client id and sequence number so a retried write
//! applies once) and the `kvcli` command line.
//!
//! Not built yet.
