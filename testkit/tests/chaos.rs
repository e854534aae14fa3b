//! Randomized chaos: many seeds, each a random cluster size, network, snapshot interval
//! and stream of faults (partitions, one-way links, drops, duplicates, long delays,
//! crashes, crashes in the middle of a Ready, restarts) under a random workload of
//! proposals and reads. The simulator checks safety after every event; at the end the
//! faults heal and the cluster must commit a new command on every node (liveness).
//!
//! The run itself is `testkit::chaos::run_seed`; a failing seed prints the command that
//! replays it and the `raft-viz` command that draws it.
//!
//! `CHAOS_SEEDS=n` runs n seeds (default 5000 in optimized builds such as `--profile ci`,
//! 500 in debug), `CHAOS_BASE=b` starts at seed b, and `SEED=s` replays exactly one seed:
//! `SEED=s cargo test -p testkit --profile ci --test chaos`. A value that is not a decimal
//! number is rejected with a message, not ignored.

use std::time::Instant;

use testkit::chaos::{Faults, run_seed};
use testkit::sim::seeds_from_env;

#[test]
fn chaos() {
    let seeds = seeds_from_env("CHAOS", 5000, 500);
    let t0 = Instant::now();
    let mut sim_ms = 0;
    for &seed in &seeds {
        sim_ms += run_seed(seed, &Faults::all());
    }
    let real = t0.elapsed().as_secs_f64();
    eprintln!(
        "chaos: {} seeds, {:.0} simulated s in {:.2} real s = {:.0} sim-s per real s",
        seeds.len(),
        sim_ms as f64 / 1000.0,
        real,
        sim_ms as f64 / 1000.0 / real
    );
}
