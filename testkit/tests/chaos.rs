//! Randomized chaos: many seeds, each a random cluster size, network, snapshot interval
//! and stream of faults (partitions, one-way links, drops, duplicates, long delays,
//! crashes, crashes in the middle of a Ready, restarts) under a random workload of
//! proposals and reads. The simulator checks safety after every event; at the end the
//! faults heal and the cluster must commit a new command on every node (liveness).
//!
//! `CHAOS_SEEDS=n` runs n seeds (default 5000 in optimized builds such as `--profile ci`,
//! 500 in debug), `CHAOS_BASE=b` starts at seed b, and `SEED=s` replays exactly one seed:
//! `SEED=s cargo test -p testkit --profile ci --test chaos`. A value that is not a decimal
//! number is rejected with a message, not ignored.

use std::time::Instant;

use testkit::sim::{CrashPoint, NetConfig, Rng, Sim, default_config, rand_cmd, u64_from_env};

/// A number from the environment; a value that is not a decimal u64 panics and says so.
fn env(name: &str) -> Option<u64> {
    u64_from_env(name)
}

/// One chaos run; returns simulated ms.
fn run_seed(seed: u64) -> u64 {
    let mut pick = Rng::new(seed ^ 0xC4A0_5000);
    let n = [3usize, 5, 7][pick.range(0, 3) as usize];
    // Half the seeds send one entry per message with a short pipeline, so that replies can
    // acknowledge old-term entries without the new leader's entries (Figure 8 territory).
    let small = pick.chance(0.5);
    let inflight = pick.range(1, 8) as usize;
    let mut s = Sim::with_config(n, seed, move |id, peers| {
        let mut c = default_config(id, peers);
        if small {
            c.max_msg_bytes = 1;
            c.max_inflight = inflight;
        }
        c
    });
    if pick.chance(0.5) {
        s.snapshot_every = Some(pick.range(3, 30));
    }
    let net = NetConfig {
        drop: pick.range(0, 20) as f64 / 100.0,
        duplicate: pick.range(0, 10) as f64 / 100.0,
        delay: (1, pick.range(2, 60)),
        long_reorder: if pick.chance(0.25) { 0.1 } else { 0.0 },
        long_delay: (200, 2200),
    };
    s.net = net;
    if pick.chance(0.33) {
        s.disk_latency = Some((1, pick.range(2, 30)));
    }
    let nn = n as u64;
    let mut ctx = 0u64;
    let fault_rate = pick.range(5, 40) as f64 / 100.0;
    let end = 15_000 + pick.range(0, 10_000);
    while s.now < end {
        let ms = s.rng.range(5, 150);
        s.run_for(ms);
        let node = s.rng.range(1, nn + 1);
        // A client: proposes to whoever claims to lead (a random node if none does).
        if s.rng.chance(0.6) {
            let leader = (1..=nn)
                .find(|&i| s.raw(i).is_some_and(|r| r.is_leader()))
                .unwrap_or(node);
            for _ in 0..s.rng.range(1, 4) {
                let c = rand_cmd(&mut s);
                s.start(leader, c);
            }
        }
        if s.rng.chance(0.1) {
            ctx += 1;
            let target = (1..=nn)
                .find(|&i| s.raw(i).is_some_and(|r| r.is_leader()) && s.rng.chance(0.8))
                .unwrap_or(node);
            s.read_index(target, ctx);
        }
        if !s.rng.chance(fault_rate) {
            continue;
        }
        match s.rng.range(0, 16) {
            0..3 => s.crash(node),
            3 => {
                let p = if s.rng.chance(0.5) {
                    CrashPoint::BeforePersist
                } else {
                    CrashPoint::AfterPersist
                };
                s.crash_during_next_ready(node, p);
            }
            4..7 => {
                for i in 1..=nn {
                    if !s.is_up(i) && s.rng.chance(0.7) {
                        s.restart(i);
                    }
                }
            }
            7..9 => {
                let mut a = Vec::new();
                let mut b = Vec::new();
                for i in 1..=nn {
                    if s.rng.chance(0.5) {
                        a.push(i);
                    } else {
                        b.push(i);
                    }
                }
                s.partition(&[&a, &b]);
            }
            9..11 => s.unblock_all(),
            11 => {
                let to = s.rng.range(1, nn + 1);
                if to != node {
                    s.block(node, to);
                }
            }
            12 => s.disconnect(node),
            _ => s.connect(node),
        }
    }
    // Heal everything: the cluster must make progress again.
    s.net = NetConfig::reliable();
    s.unblock_all();
    s.cancel_crash_point();
    for i in 1..=nn {
        s.connect(i);
        if !s.is_up(i) {
            s.restart(i);
        }
    }
    s.run_for(1000);
    let c = rand_cmd(&mut s);
    s.one(c, n, true);
    // And a linearizable read on the leader after healing.
    let leader = s.check_one_leader();
    ctx += 1;
    s.read_index(leader, ctx);
    s.run_for(500);
    if !s
        .read_states()
        .iter()
        .any(|&(id, c, _)| id == leader && c == ctx)
    {
        s.fail("ReadIndex on a healthy leader got no answer");
    }
    if std::env::var("CHAOS_VERBOSE").is_ok() {
        eprintln!(
            "seed {seed}: n={n} t={} ms steps={} msgs={} commit={} reads={}",
            s.now,
            s.steps,
            s.msgs,
            s.max_committed(),
            s.read_states().len()
        );
    }
    s.now
}

#[test]
fn chaos() {
    let seeds: Vec<u64> = match env("SEED") {
        Some(s) => vec![s],
        None => {
            let base = env("CHAOS_BASE").unwrap_or(1);
            // Unoptimized builds are ~15x slower; optimized runs (CI) do the full count.
            let default = if cfg!(optimized) { 5000 } else { 500 };
            (base..base + env("CHAOS_SEEDS").unwrap_or(default)).collect()
        }
    };
    let t0 = Instant::now();
    let mut sim_ms = 0;
    for &seed in &seeds {
        sim_ms += run_seed(seed);
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
