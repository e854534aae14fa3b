//! What raftkv's tests share.
//!
//! - [`sim`]: a deterministic simulator for Raft clusters (simulated time, one seeded
//!   RNG, faults, crash/restart, safety checks after every event).
//!
//! Still to come (other issues): a linearizability checker for key-value histories and a
//! launcher for real multi-process clusters.

pub mod sim;
