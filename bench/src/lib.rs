//! Benchmark programs for raftkv: `skiplist-bench` (the storage engine beside std
//! `BTreeMap` and crossbeam-skiplist), `rpc-bench` (the RPC layer alone), and later the
//! whole cluster under load. Each prints a table of figures; none asserts a speed.
