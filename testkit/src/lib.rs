//! What raftkv's tests share.
//!
//! This crate will own a deterministic simulated network and clock with fault injection,
//! a linearizability checker for key-value histories, and a launcher for real
//! multi-process clusters.
//!
//! Not built yet.
