//! Durable bytes on disk, knowing nothing of Raft's meaning.
//!
//! This crate will own:
//! - an append-only log of checksummed records split into segments, with `fsync` batching,
//!   torn-tail recovery (a half-written last record is cut off; damage before the tail is an
//!   error naming the file and byte offset), prefix compaction and suffix truncation;
//! - atomic whole-file writes (temp file, `fsync`, rename, `fsync` of the directory) for
//!   snapshots and metadata such as Raft's hard state.
//!
//! Not built yet: the Raft node driver uses an in-memory storage until this crate lands.
