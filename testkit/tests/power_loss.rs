//! Power loss over the real on-disk format: every node's storage is `raft::DiskStorage` on
//! a simulated file system (`testkit::disk::SimDisk`) that, at each crash, keeps only what
//! was synced (plus, half the time, a random prefix of what was written after), and
//! sometimes cuts the power in the middle of a `persist` call. Under random partitions,
//! drops, crashes (also in the middle of a Ready) and restarts, the simulator checks the
//! Raft safety properties after every event (no committed entry ever lost or changed,
//! Leader Completeness, one leader per term, one vote per node per term across restarts),
//! every restart checks that the directory reopened to exactly what was persisted (or, for
//! a cut persist, to the state just before it), and at the end the healed cluster must
//! commit again on every node.
//!
//! `POWER_SEEDS=n` runs n seeds (default 1000 in optimized builds, 60 in debug ones),
//! `POWER_BASE=b` starts at seed b; a failure prints its replay command:
//! `SEED=s cargo test -p testkit --profile ci --test power_loss`.

use std::time::Instant;

use testkit::disk::SimDisk;
use testkit::sim::{CrashPoint, NetConfig, Rng, Sim, default_config, rand_cmd, seeds_from_env};

/// Prints the replay command if the seed's run panics.
struct Replay(u64);

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "power_loss failed; replay: SEED={} cargo test -p testkit --profile ci --test power_loss",
                self.0
            );
        }
    }
}

#[derive(Default, Debug)]
struct Totals {
    sim_ms: u64,
    restarts: u64,
    cuts: u64,
    fsyncs: u64,
    committed: u64,
}

fn run_seed(seed: u64, t: &mut Totals) {
    let _replay = Replay(seed);
    let mut pick = Rng::new(seed ^ 0x9A3E_7000);
    let n = [3usize, 5][pick.range(0, 2) as usize];
    let voters: Vec<u64> = (1..=n as u64).collect();
    let segment_bytes = [512, 2048, 16 << 10][pick.range(0, 3) as usize];
    let cut_chance = [0.0, 0.01, 0.05][pick.range(0, 3) as usize];
    let mut s = Sim::with_storage(n, seed, default_config, |id| {
        let mut d = SimDisk::new(
            seed.wrapping_mul(31).wrapping_add(id),
            id,
            voters.clone(),
            segment_bytes,
        );
        d.cut_chance = cut_chance;
        d
    });
    if pick.chance(0.7) {
        s.snapshot_every = Some(pick.range(3, 25));
    }
    if pick.chance(0.3) {
        // A pipelined driver: the node steps and ticks while a Ready is being persisted.
        s.disk_latency = Some((1, pick.range(2, 20)));
    }
    s.net = NetConfig {
        drop: pick.range(0, 15) as f64 / 100.0,
        duplicate: pick.range(0, 5) as f64 / 100.0,
        delay: (1, pick.range(2, 40)),
        long_reorder: 0.0,
        long_delay: (200, 2200),
    };
    let nn = n as u64;
    let fault_rate = pick.range(10, 40) as f64 / 100.0;
    let end = 5_000 + pick.range(0, 5_000);
    while s.now < end {
        let ms = s.rng.range(5, 120);
        s.run_for(ms);
        let node = s.rng.range(1, nn + 1);
        if s.rng.chance(0.7) {
            let leader = (1..=nn)
                .find(|&i| s.raw(i).is_some_and(|r| r.is_leader()))
                .unwrap_or(node);
            for _ in 0..s.rng.range(1, 5) {
                let c = rand_cmd(&mut s);
                s.start(leader, c);
            }
        }
        if !s.rng.chance(fault_rate) {
            continue;
        }
        match s.rng.range(0, 10) {
            // Crashes are the point here: power goes out on that node's disk.
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
            7 => {
                let a: Vec<u64> = (1..=nn).filter(|_| s.rng.chance(0.5)).collect();
                let b: Vec<u64> = (1..=nn).filter(|i| !a.contains(i)).collect();
                s.partition(&[&a, &b]);
            }
            8 => s.unblock_all(),
            _ => {
                // Restart a running node: a power loss without a partition.
                if s.is_up(node) {
                    s.restart(node);
                }
            }
        }
    }
    // Heal: every node restarts from its disk, and the cluster commits on all of them.
    s.net = NetConfig::reliable();
    s.unblock_all();
    s.cancel_crash_point();
    for i in 1..=nn {
        s.storage_mut(i).cut_chance = 0.0;
        s.connect(i);
        if !s.is_up(i) {
            s.restart(i);
        }
    }
    s.run_for(1000);
    let c = rand_cmd(&mut s);
    s.one(c, n, true);
    t.sim_ms += s.now;
    t.committed += s.max_committed();
    for id in 1..=nn {
        let d = s.storage(id);
        t.restarts += d.restarts;
        t.cuts += d.cuts;
        t.fsyncs += d.fs().sync_counts().0;
    }
}

#[test]
fn power_loss() {
    let seeds = seeds_from_env("POWER", 1000, 60);
    let t0 = Instant::now();
    let mut t = Totals::default();
    for &seed in &seeds {
        run_seed(seed, &mut t);
    }
    eprintln!(
        "power_loss: {} seeds, {:.0} simulated s in {:.2} real s; {} restarts after power loss, \
         {} persists cut mid-write, {} fsyncs, {} entries committed",
        seeds.len(),
        t.sim_ms as f64 / 1000.0,
        t0.elapsed().as_secs_f64(),
        t.restarts,
        t.cuts,
        t.fsyncs,
        t.committed
    );
    if seeds.len() > 20 {
        assert!(t.restarts > seeds.len() as u64 && t.cuts > 0, "{t:?}");
    }
}
