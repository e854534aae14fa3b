//! Benchmark programs for raftkv: `skiplist-bench` (the storage engine beside std
//! `BTreeMap` and crossbeam-skiplist), `rpc-bench` (the RPC layer alone), `persist-bench` (the WAL), and the
//! whole cluster under load (`kv-bench`, with `compare-etcd.sh` beside the etcd anchor). Each
//! prints a table of figures; none asserts a speed.
