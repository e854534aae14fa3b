//! The key-value service under chaos, on the real on-disk format: every server's storage is
//! `raft::DiskStorage` on a simulated file system (`testkit::disk::SimDisk`) that loses
//! whatever was not synced when it loses power, and sometimes loses power in the middle of
//! a `persist` (a crash mid-write, including a snapshot being written). Clerks run gets,
//! puts, appends and deletes on a few keys while servers crash and restart, partitions come
//! and go, messages are lost and delayed, and small `max_raft_state` values make snapshots
//! and InstallSnapshot frequent. At the end the cluster heals, all servers lose power at
//! once and restart, and a fresh Clerk reads every key; then the whole history, those reads
//! included, must be linearizable (`lincheck`, a decided verdict). A write acknowledged and
//! then lost shows up as a read that no order explains. The simulator's own checks (one
//! leader per term, one command per index, in-order apply) run on every event.
//!
//! `KV_CHAOS_SEEDS=n` runs n seeds (default 300 in optimized builds such as `--profile ci`, 20
//! in debug ones), `KV_CHAOS_BASE=b` starts at seed b, `SEED=s` runs one seed; a failure
//! prints its replay command and keeps the history and its HTML picture.

use std::time::Instant;

use bytes::Bytes;
use testkit::disk::SimDisk;
use testkit::kvsim::{KvSim, Op};
use testkit::sim::{NetConfig, Rng, replay_command, seeds_from_env};

/// Prints the replay command if the seed's run panics.
struct Replay(u64);

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kv_chaos failed; replay: {}", replay_command(self.0));
        }
    }
}

#[derive(Default, Debug)]
struct Totals {
    sim_ms: u64,
    ops: usize,
    restarts: u64,
    cuts: u64,
    snapshots: u64,
}

const KEYS: [&str; 3] = ["a", "b", "c"];

fn random_op(s: &mut KvSim<SimDisk>, c: usize, n: &mut u64) -> Op {
    let key = Bytes::from_static(KEYS[s.rng.range(0, KEYS.len() as u64) as usize].as_bytes());
    *n += 1;
    // Unique values, so a read names the writes it saw.
    let value = Bytes::from(format!("<{c}.{n}>"));
    match s.rng.range(0, 10) {
        0..4 => Op::Get(key),
        4..6 => Op::Put(key, value),
        6..9 => Op::Append(key, value),
        _ => Op::Delete(key),
    }
}

fn run_seed(seed: u64, t: &mut Totals) {
    let _replay = Replay(seed);
    let mut pick = Rng::new(seed ^ 0x4B56_C4A0);
    let n = [3usize, 5][pick.range(0, 2) as usize];
    let voters: Vec<u64> = (1..=n as u64).collect();
    let segment_bytes = [1024, 4096, 64 << 10][pick.range(0, 3) as usize];
    let cut_chance = [0.0, 0.01, 0.04][pick.range(0, 3) as usize];
    let mut s = KvSim::with_storage(n, seed, |id| {
        let mut d = SimDisk::new(
            seed.wrapping_mul(31).wrapping_add(id),
            id,
            voters.clone(),
            segment_bytes,
        );
        d.cut_chance = cut_chance;
        d
    });
    s.max_raft_state = [None, Some(1000), Some(4000)][pick.range(0, 3) as usize];
    s.net = NetConfig {
        drop: pick.range(0, 12) as f64 / 100.0,
        duplicate: 0.0,
        delay: (1, pick.range(2, 30)),
        long_reorder: if pick.chance(0.3) { 0.02 } else { 0.0 },
        long_delay: (200, 1500),
    };
    let clerks: Vec<usize> = (0..pick.range(2, 6)).map(|_| s.add_clerk()).collect();
    let nn = n as u64;
    let fault_rate = pick.range(5, 30) as f64 / 100.0;
    let end = 4_000 + pick.range(0, 4_000);
    let mut values = 0u64;
    while s.now < end {
        for &c in &clerks {
            if !s.busy(c) {
                let op = random_op(&mut s, c, &mut values);
                s.submit(c, op);
            }
        }
        let ms = s.rng.range(5, 100);
        s.run_for(ms);
        if !s.rng.chance(fault_rate) {
            continue;
        }
        let node = s.rng.range(1, nn + 1);
        match s.rng.range(0, 10) {
            // Power goes out on that server: what it had not synced is gone.
            0..3 => s.crash(node),
            3..6 => {
                for i in 1..=nn {
                    if !s.is_up(i) && s.rng.chance(0.7) {
                        s.restart(i);
                    }
                }
            }
            6 => s.restart(node),
            7 => {
                let a: Vec<u64> = (1..=nn).filter(|_| s.rng.chance(0.5)).collect();
                let b: Vec<u64> = (1..=nn).filter(|i| !a.contains(i)).collect();
                s.partition(&[&a, &b]);
            }
            _ => s.heal(),
        }
    }
    // Heal, bring every server back, and let every Clerk finish what it started.
    s.net = NetConfig::reliable();
    s.heal();
    for i in 1..=nn {
        s.storage_mut(i).cut_chance = 0.0;
        if !s.is_up(i) {
            s.restart(i);
        }
    }
    let deadline = s.now + 60_000;
    while clerks.iter().any(|&c| s.busy(c)) {
        s.run_for(10);
        if s.now > deadline {
            s.fail("Clerks did not finish within 60 s of healing");
        }
    }
    // Every server loses power at once; acknowledged writes must survive it.
    for i in 1..=nn {
        s.crash(i);
    }
    for i in 1..=nn {
        s.restart(i);
    }
    let reader = s.add_clerk();
    for k in KEYS {
        if s.run_op(reader, Op::Get(Bytes::from_static(k.as_bytes())), 30_000)
            .is_none()
        {
            s.fail(&format!("the final read of {k:?} did not finish in 30 s"));
        }
    }
    s.check_linearizable("kv_chaos");
    t.sim_ms += s.now;
    t.ops += s.history.len();
    t.snapshots += s.snapshots;
    for id in 1..=nn {
        t.restarts += s.storage(id).restarts;
        t.cuts += s.storage(id).cuts;
    }
}

#[test]
fn kv_chaos() {
    let seeds = seeds_from_env("KV_CHAOS", 300, 20);
    let t0 = Instant::now();
    let mut t = Totals::default();
    for &seed in &seeds {
        run_seed(seed, &mut t);
    }
    eprintln!(
        "kv_chaos: {} seeds, {:.0} simulated s in {:.2} real s; {} operations checked, {} \
         restarts after power loss, {} persists cut mid-write, {} snapshots",
        seeds.len(),
        t.sim_ms as f64 / 1000.0,
        t0.elapsed().as_secs_f64(),
        t.ops,
        t.restarts,
        t.cuts,
        t.snapshots
    );
    // The faults must have happened, or the run proves little.
    if seeds.len() >= 20 {
        assert!(
            t.restarts > seeds.len() as u64 && t.cuts > 0 && t.snapshots > 0,
            "{t:?}"
        );
    }
}
