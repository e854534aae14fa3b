//! What raftkv's tests share.
//!
//! - [`sim`]: a deterministic simulator for Raft clusters (simulated time, one seeded
//!   RNG, faults, crash/restart, safety checks after every event).
//! - [`chaos`]: one randomized fault run from a seed (the `chaos` test's body).
//! - [`record`] and [`viz`]: a recording of a simulated run and its picture, a
//!   self-contained HTML page (the `raft-viz` binary draws any lab scenario or chaos seed).
//! - [`disk`]: `SimDisk`, the real on-disk storage (`raft::DiskStorage`) over a file
//!   system that loses power, as a simulated node's storage.
//! - [`kvsim`]: the key-value service (Raft cores, the kvserver `Machine`, simulated
//!   Clerks) in the same simulated world, over `MemStorage` or `SimDisk`.
//!
//! Its tests (`cargo test -p testkit --profile ci`: optimized, with overflow checks and debug
//! assertions on, as CI runs them):
//! - `tests/lab3.rs`: the MIT 6.5840 lab 3A-3D scenarios with their limits;
//! - `tests/scenarios.rs`: PreVote, CheckQuorum, one-way links, ReadIndex, bad input, a
//!   staged Figure 8, vote durability, the leader's unpersisted copy;
//! - `tests/chaos.rs`: thousands of random seeds (`CHAOS_SEEDS`, `CHAOS_BASE`);
//! - `tests/power_loss.rs`: hundreds of seeds over `SimDisk` with crashes that lose
//!   unsynced data and power cuts in the middle of a persist (`POWER_SEEDS`);
//! - `tests/lab4.rs`: the MIT 6.5840 lab 4A/4B key-value scenarios, each history checked
//!   by `lincheck`;
//! - `tests/kv_chaos.rs`: the key-value service over `SimDisk` under power losses,
//!   partitions and snapshots, then a whole-cluster power loss; every history checked by
//!   `lincheck` (`KV_CHAOS_SEEDS`, `KV_CHAOS_BASE`);
//! - `tests/record.rs`: a recorded run is the same run, and the recording agrees with the
//!   nodes; `tests/viz_chromium.rs`: `raft-viz` pages in headless Chromium;
//! - `tests/tour_links.rs`: every code link of `docs/tour*.md` lands on its name.
//!
//! A failing run prints the seed and the command that replays it exactly, e.g.
//! `SEED=401 cargo test -p testkit --profile ci --test lab3 snapshot_basic_3d -- --exact`;
//! add `SIM_TRACE=1` to print every event, or draw the run with `raft-viz` (a chaos seed
//! prints that command too). `SEED` must be a decimal number: anything else
//! (a typo, or a placeholder copied from a doc) is rejected with a message.

pub mod chaos;
pub mod disk;
pub mod kvsim;
pub mod record;
pub mod sim;
pub mod viz;
