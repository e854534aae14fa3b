//! One randomized chaos run from a seed: a random cluster size, network, snapshot interval
//! and stream of faults (partitions, one-way links, drops, duplicates, long delays,
//! crashes, crashes in the middle of a Ready, restarts) under a random workload of
//! proposals and reads. The simulator checks safety after every event; at the end the
//! faults heal and the cluster must commit a new command on every node (liveness).
//!
//! `tests/chaos.rs` runs thousands of seeds with every fault ([`Faults::all`]); the
//! `raft-viz` binary draws one (`--seed N`, and `--faults` to leave some kinds out). A
//! failing seed prints both the command that replays it and the one that draws it.

use crate::record;
use crate::sim::{CrashPoint, NetConfig, Rng, Sim, default_config, rand_cmd};

/// Which kinds of fault a run may inject. [`Faults::all`] is the `chaos` test's run; with
/// any kind left out the same seed gives a different run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Crash nodes (and restart them later).
    pub crash: bool,
    /// Crash a node in the middle of its next Ready (before or after the persist).
    pub crash_in_ready: bool,
    /// Split the nodes into two groups that cannot talk.
    pub partition: bool,
    /// Block single one-way links.
    pub one_way: bool,
    /// Cut single nodes off from everyone.
    pub disconnect: bool,
    /// Lose messages at random (0-19%).
    pub loss: bool,
    /// Deliver messages twice at random (0-9%).
    pub duplicate: bool,
    /// Delay some replies by 200-2200 ms (the lab's long reordering).
    pub long_delay: bool,
    /// A slow disk: persisting takes 1-30 ms while the node goes on stepping.
    pub slow_disk: bool,
}

impl Faults {
    /// The names `--faults` accepts, in order.
    pub const NAMES: [&'static str; 9] = [
        "crash",
        "crash-in-ready",
        "partition",
        "one-way",
        "disconnect",
        "loss",
        "duplicate",
        "long-delay",
        "slow-disk",
    ];

    /// Every kind of fault (the `chaos` test).
    pub fn all() -> Self {
        Faults {
            crash: true,
            crash_in_ready: true,
            partition: true,
            one_way: true,
            disconnect: true,
            loss: true,
            duplicate: true,
            long_delay: true,
            slow_disk: true,
        }
    }

    /// No fault at all (a reliable network with random delays, no crash).
    pub fn none() -> Self {
        Faults {
            crash: false,
            crash_in_ready: false,
            partition: false,
            one_way: false,
            disconnect: false,
            loss: false,
            duplicate: false,
            long_delay: false,
            slow_disk: false,
        }
    }

    fn flag(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "crash" => &mut self.crash,
            "crash-in-ready" => &mut self.crash_in_ready,
            "partition" => &mut self.partition,
            "one-way" => &mut self.one_way,
            "disconnect" => &mut self.disconnect,
            "loss" => &mut self.loss,
            "duplicate" => &mut self.duplicate,
            "long-delay" => &mut self.long_delay,
            "slow-disk" => &mut self.slow_disk,
            _ => return None,
        })
    }

    /// Parses `all`, `none`, or a comma-separated list of the [`Faults::NAMES`] to allow
    /// (e.g. `crash,partition`). An unknown name is an error that lists the known ones.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "all" => return Ok(Faults::all()),
            "none" => return Ok(Faults::none()),
            _ => {}
        }
        let mut f = Faults::none();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match f.flag(name) {
                Some(flag) => *flag = true,
                None => {
                    return Err(format!(
                        "unknown fault {name:?}: use all, none, or a comma-separated list of {}",
                        Faults::NAMES.join(", ")
                    ));
                }
            }
        }
        Ok(f)
    }

    /// The `--faults` value that gives these faults back (`all`, `none`, or a list).
    pub fn to_arg(&self) -> String {
        if *self == Faults::all() {
            return "all".into();
        }
        let mut f = *self;
        let on: Vec<&str> = Faults::NAMES
            .into_iter()
            .filter(|n| f.flag(n).is_some_and(|b| *b))
            .collect();
        if on.is_empty() {
            "none".into()
        } else {
            on.join(",")
        }
    }
}

/// The command that draws `seed` with `faults` in `raft-viz`.
pub fn viz_command(seed: u64, faults: &Faults) -> String {
    let extra = if *faults == Faults::all() {
        String::new()
    } else {
        format!(" --faults {}", faults.to_arg())
    };
    format!(
        "cargo run --release -p testkit --bin raft-viz -- --seed {seed}{extra} --out chaos-{seed}.html"
    )
}

/// Prints the `raft-viz` command of a failing run (outside `raft-viz` itself).
struct DrawOnFailure(u64, Faults);

impl Drop for DrawOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() && !record::recording_on() {
            eprintln!(
                "draw this run (a timeline of every message, role and log): {}",
                viz_command(self.0, &self.1)
            );
        }
    }
}

/// Runs chaos seed `seed` with the given kinds of fault; returns the simulated ms. Panics
/// (with the seed and the replay command) if a safety or liveness check fails.
pub fn run_seed(seed: u64, faults: &Faults) -> u64 {
    let _draw = DrawOnFailure(seed, *faults);
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
    let mut net = NetConfig {
        drop: pick.range(0, 20) as f64 / 100.0,
        duplicate: pick.range(0, 10) as f64 / 100.0,
        delay: (1, pick.range(2, 60)),
        long_reorder: if pick.chance(0.25) { 0.1 } else { 0.0 },
        long_delay: (200, 2200),
    };
    if !faults.loss {
        net.drop = 0.0;
    }
    if !faults.duplicate {
        net.duplicate = 0.0;
    }
    if !faults.long_delay {
        net.long_reorder = 0.0;
    }
    s.net = net;
    if pick.chance(0.33) && faults.slow_disk {
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
            0..3 if faults.crash => s.crash(node),
            3 if faults.crash_in_ready => {
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
            7..9 if faults.partition => {
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
            11 if faults.one_way => {
                let to = s.rng.range(1, nn + 1);
                if to != node {
                    s.block(node, to);
                }
            }
            12 if faults.disconnect => s.disconnect(node),
            13.. => s.connect(node),
            _ => {} // a kind of fault left out
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
