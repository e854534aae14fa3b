//! # raftkv: the API docs
//!
//! raftkv is a key-value database replicated with Raft. This page is the start of its API
//! docs (`cargo doc --workspace --no-deps`, then open `target/doc/raftkv/index.html`); it
//! has no code. For a guided walk through the code, with diagrams, read the tour:
//! `docs/tour.md` (English) or `docs/tour.zh-CN.md` (中文).
//!
//! ## Where to start
//!
//! - **Using the database from Rust**: [`client::Clerk`] (`get`, `put`, `append`,
//!   `delete`; finds the leader, retries, applies each write once). The errors are
//!   [`client::Error`].
//! - **Learning Raft**: the [`raft`] crate's front page is an essay on election,
//!   replication, snapshots, reads and the driver contract, with the paper's section for
//!   each rule; then [`raft::RawNode`] (the deterministic core: `tick`, `step`, `propose`
//!   in, a [`raft::Ready`] out) and [`raft::Node`] (the driver thread).
//! - **The lab's API** (MIT 6.5840): `Make` is [`raft::Node::spawn`], `Start` is
//!   [`raft::Node::start`], `GetState` is [`raft::Node::status`], `ApplyMsg` is
//!   [`raft::ApplyMsg`], the `Persister` is the [`raft::Storage`] trait
//!   ([`raft::MemStorage`], [`raft::DiskStorage`]).
//! - **Running a server**: [`kvserver`] (the service, the apply loop, the duplicate table,
//!   snapshots; the `kvserver` and `kvcluster` binaries).
//!
//! ## The crates, bottom up
//!
//! | crate | what it is |
//! | --- | --- |
//! | [`proto`] | the protobuf messages: [`proto::raft::Entry`], [`proto::raft::HardState`], [`proto::raft::RaftMessage`], the KV service in [`proto::kv`] |
//! | [`rpc`] | protobuf over TCP on mio: frames, the server, client channels ([`rpc::Channel`]), deadlines |
//! | [`skiplist`] | [`skiplist::SkipMap`], the ordered map under the KV state |
//! | [`persist`] | the write-ahead log ([`persist::wal`]) and atomic files: durable bytes, knows nothing of Raft |
//! | [`raft`] | the consensus core, its driver, transports, [`raft::DiskStorage`] |
//! | [`kvserver`] | the KV service over Raft |
//! | [`client`] | the Clerk and `kvcli` |
//! | [`lincheck`] | a linearizability checker for recorded histories |
//! | [`testkit`] | the deterministic simulator ([`testkit::sim::Sim`]), the lab ports, and `raft-viz` ([`testkit::viz`]) |
//!
//! Dependencies point one way: `proto` ← `rpc` ← `raft` ← `kvserver`; `persist` ← `raft`;
//! `skiplist` and `persist` are leaves; `client` needs only `rpc` and `proto`.
