//! Ports of the MIT 6.5840 Raft lab tests (labs 3A-3D, Spring 2024) to the deterministic
//! simulator, with the same limits in simulated time. Written from the scenario list in
//! `SCENARIOS.md`; node ids are 1-based, and because every new leader appends a no-op
//! entry, command indexes are checked relative to earlier ones rather than as absolute
//! numbers. Each test takes `SEED` from the environment to replay a failure.
//!
//! Each test is `pub` and marked `#[cfg_attr(test, test)]`: the `raft-viz` binary
//! (`src/bin/raft_viz.rs`) includes this file as a module and runs a scenario by name.

use bytes::Bytes;
use testkit::sim::{NetConfig, Sim, rand_cmd, seed_from_env};

/// The lab's RaftElectionTimeout.
const ELECTION_TIMEOUT: u64 = 1000;
/// The lab's MAXLOGSIZE.
const MAX_LOG_SIZE: usize = 2000;
/// The lab's SnapShotInterval.
const SNAPSHOT_INTERVAL: u64 = 10;

/// The lab's per-test limit, in simulated time.
const TEST_LIMIT_MS: u64 = 120_000;

/// A lab test's cluster; when the test ends without failing, checks that it took at most
/// the lab's 120 s (simulated).
struct LabSim(Sim);

impl std::ops::Deref for LabSim {
    type Target = Sim;
    fn deref(&self) -> &Sim {
        &self.0
    }
}

impl std::ops::DerefMut for LabSim {
    fn deref_mut(&mut self) -> &mut Sim {
        &mut self.0
    }
}

impl Drop for LabSim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        eprintln!("simulated {} ms (limit {TEST_LIMIT_MS})", self.0.now);
        if self.0.now > TEST_LIMIT_MS {
            self.0.fail(&format!(
                "the test took {} ms simulated, over the lab's {TEST_LIMIT_MS}",
                self.0.now
            ));
        }
    }
}

fn sim(n: usize, default_seed: u64) -> LabSim {
    let s = Sim::new(n, seed_from_env(default_seed));
    eprintln!("seed {}", s.seed);
    LabSim(s)
}

/// `(id - 1 + k) % n + 1`: the lab's `(leader + k) % servers` for 1-based ids.
fn nth(id: u64, k: u64, n: usize) -> u64 {
    (id - 1 + k) % n as u64 + 1
}

fn cmd(x: u64) -> Bytes {
    Bytes::copy_from_slice(&x.to_le_bytes())
}

// ------------------------------------------------------------------------------- 3A

#[cfg_attr(test, test)]
pub fn initial_election_3a() {
    let mut s = sim(3, 101);
    s.check_one_leader();
    s.run_for(50);
    let term1 = s.check_terms();
    assert!(term1 >= 1, "term is {term1}, but should be at least 1");
    s.run_for(2 * ELECTION_TIMEOUT);
    let term2 = s.check_terms();
    if term1 != term2 {
        s.fail("term changed even though there were no failures");
    }
    s.check_one_leader();
}

#[cfg_attr(test, test)]
pub fn re_election_3a() {
    let mut s = sim(3, 102);
    let leader1 = s.check_one_leader();
    s.disconnect(leader1);
    s.check_one_leader();
    s.connect(leader1);
    let leader2 = s.check_one_leader();
    s.disconnect(leader2);
    s.disconnect(nth(leader2, 1, 3));
    s.run_for(2 * ELECTION_TIMEOUT);
    s.check_no_leader();
    s.connect(nth(leader2, 1, 3));
    s.check_one_leader();
    s.connect(leader2);
    s.check_one_leader();
}

#[cfg_attr(test, test)]
pub fn many_elections_3a() {
    let n = 7;
    let mut s = sim(n, 103);
    s.check_one_leader();
    for _ in 0..10 {
        let i1 = s.rng.range(1, n as u64 + 1);
        let i2 = s.rng.range(1, n as u64 + 1);
        let i3 = s.rng.range(1, n as u64 + 1);
        s.disconnect(i1);
        s.disconnect(i2);
        s.disconnect(i3);
        s.check_one_leader();
        s.connect(i1);
        s.connect(i2);
        s.connect(i3);
    }
    s.check_one_leader();
}

// ------------------------------------------------------------------------------- 3B

#[cfg_attr(test, test)]
pub fn basic_agree_3b() {
    let mut s = sim(3, 201);
    let mut last = 0;
    for i in 1..=3u64 {
        let (nd, _) = s.n_committed(last + 1);
        if nd > 0 {
            s.fail("some have committed before Start()");
        }
        let index = s.one(cmd(i * 100), 3, false);
        if last > 0 && index != last + 1 {
            s.fail(&format!("got index {index} but expected {}", last + 1));
        }
        last = index;
    }
    // Index 1 is the first leader's no-op entry.
    assert_eq!(last, 4, "three commands after one no-op");
}

#[cfg_attr(test, test)]
pub fn rpc_bytes_3b() {
    let n = 3;
    let mut s = sim(n, 202);
    let mut last = s.one(cmd(99), n, false);
    let bytes0 = s.bytes;
    let mut sent = 0u64;
    for _ in 0..10 {
        let data: Vec<u8> = (0..5000).map(|_| s.rng.next_u64() as u8).collect();
        let index = s.one(Bytes::from(data), n, false);
        if index != last + 1 {
            s.fail(&format!("got index {index} but expected {}", last + 1));
        }
        last = index;
        sent += 5000;
    }
    let got = s.bytes - bytes0;
    let expected = n as u64 * sent;
    eprintln!(
        "rpc bytes: {got} for {sent} command bytes (limit {})",
        expected + 50_000
    );
    if got > expected + 50_000 {
        s.fail(&format!(
            "too many RPC bytes; got {got}, expected {expected}"
        ));
    }
}

#[cfg_attr(test, test)]
pub fn follower_failure_3b() {
    let n = 3;
    let mut s = sim(n, 203);
    s.one(cmd(101), n, false);
    let leader1 = s.check_one_leader();
    s.disconnect(nth(leader1, 1, n));
    s.one(cmd(102), n - 1, false);
    s.run_for(ELECTION_TIMEOUT);
    let last = s.one(cmd(103), n - 1, false);
    let leader2 = s.check_one_leader();
    s.disconnect(nth(leader2, 1, n));
    s.disconnect(nth(leader2, 2, n));
    let Some((index, _)) = s.start(leader2, cmd(104)) else {
        s.fail("leader rejected Start()");
    };
    if index != last + 1 {
        s.fail(&format!("expected index {}, got {index}", last + 1));
    }
    s.run_for(2 * ELECTION_TIMEOUT);
    let (nd, _) = s.n_committed(index);
    if nd > 0 {
        s.fail(&format!("{nd} committed but no majority"));
    }
}

#[cfg_attr(test, test)]
pub fn leader_failure_3b() {
    let n = 3;
    let mut s = sim(n, 204);
    s.one(cmd(101), n, false);
    let leader1 = s.check_one_leader();
    s.disconnect(leader1);
    s.one(cmd(102), n - 1, false);
    s.run_for(ELECTION_TIMEOUT);
    let last = s.one(cmd(103), n - 1, false);
    let leader2 = s.check_one_leader();
    s.disconnect(leader2);
    for i in 1..=n as u64 {
        s.start(i, cmd(104));
    }
    s.run_for(2 * ELECTION_TIMEOUT);
    for index in last + 1..last + 4 {
        let (nd, _) = s.n_committed(index);
        if nd > 0 {
            s.fail(&format!("{nd} committed index {index} but no majority"));
        }
    }
}

#[cfg_attr(test, test)]
pub fn fail_agree_3b() {
    let n = 3;
    let mut s = sim(n, 205);
    s.one(cmd(101), n, false);
    let leader = s.check_one_leader();
    s.disconnect(nth(leader, 1, n));
    s.one(cmd(102), n - 1, false);
    s.one(cmd(103), n - 1, false);
    s.run_for(ELECTION_TIMEOUT);
    s.one(cmd(104), n - 1, false);
    s.one(cmd(105), n - 1, false);
    s.connect(nth(leader, 1, n));
    s.one(cmd(106), n, true);
    s.run_for(ELECTION_TIMEOUT);
    s.one(cmd(107), n, true);
}

#[cfg_attr(test, test)]
pub fn fail_no_agree_3b() {
    let n = 5;
    let mut s = sim(n, 206);
    let last = s.one(cmd(10), n, false);
    let leader = s.check_one_leader();
    for k in 1..=3 {
        s.disconnect(nth(leader, k, n));
    }
    let Some((index, _)) = s.start(leader, cmd(20)) else {
        s.fail("leader rejected Start()");
    };
    if index != last + 1 {
        s.fail(&format!("expected index {}, got {index}", last + 1));
    }
    s.run_for(2 * ELECTION_TIMEOUT);
    let (nd, _) = s.n_committed(index);
    if nd > 0 {
        s.fail(&format!("{nd} committed but no majority"));
    }
    for k in 1..=3 {
        s.connect(nth(leader, k, n));
    }
    let leader2 = s.check_one_leader();
    let Some((index2, _)) = s.start(leader2, cmd(30)) else {
        s.fail("leader2 rejected Start()");
    };
    // The lab expects 2 or 3; one more here for a new leader's no-op.
    if index2 < index || index2 > index + 2 {
        s.fail(&format!("unexpected index {index2}"));
    }
    s.one(cmd(1000), n, true);
}

#[cfg_attr(test, test)]
pub fn concurrent_starts_3b() {
    let n = 3;
    let mut s = sim(n, 207);
    let mut success = false;
    'tries: for attempt in 0..5 {
        if attempt > 0 {
            s.run_for(3000);
        }
        let leader = s.check_one_leader();
        let Some((_, term)) = s.start(leader, cmd(1)) else {
            continue;
        };
        let mut indexes = Vec::new();
        for i in 0..5 {
            match s.start(leader, cmd(100 + i)) {
                Some((idx, t)) if t == term => indexes.push((idx, 100 + i)),
                _ => continue 'tries,
            }
        }
        for id in 1..=n as u64 {
            if s.raw(id).is_some_and(|r| r.term() != term) {
                continue 'tries;
            }
        }
        let mut got = Vec::new();
        for &(idx, _) in &indexes {
            match s.wait(idx, n, Some(term)) {
                Some(c) => got.push(u64::from_le_bytes(c[..8].try_into().unwrap_or_default())),
                None => continue 'tries,
            }
        }
        for &(_, x) in &indexes {
            if !got.contains(&x) {
                s.fail(&format!("cmd {x} missing in {got:?}"));
            }
        }
        success = true;
        break;
    }
    if !success {
        s.fail("term changed too often");
    }
}

#[cfg_attr(test, test)]
pub fn rejoin_3b() {
    let n = 3;
    let mut s = sim(n, 208);
    s.one(cmd(101), n, true);
    let leader1 = s.check_one_leader();
    s.disconnect(leader1);
    s.start(leader1, cmd(102));
    s.start(leader1, cmd(103));
    s.start(leader1, cmd(104));
    s.one(cmd(103), 2, true);
    let leader2 = s.check_one_leader();
    s.disconnect(leader2);
    s.connect(leader1);
    s.one(cmd(104), 2, true);
    s.connect(leader2);
    s.one(cmd(105), n, true);
}

#[cfg_attr(test, test)]
pub fn backup_3b() {
    let n = 5;
    let mut s = sim(n, 209);
    let c = rand_cmd(&mut s);
    s.one(c, n, true);
    let leader1 = s.check_one_leader();
    for k in 2..=4 {
        s.disconnect(nth(leader1, k, n));
    }
    for _ in 0..50 {
        let c = rand_cmd(&mut s);
        s.start(leader1, c);
    }
    s.run_for(ELECTION_TIMEOUT / 2);
    s.disconnect(leader1);
    s.disconnect(nth(leader1, 1, n));
    for k in 2..=4 {
        s.connect(nth(leader1, k, n));
    }
    for _ in 0..50 {
        let c = rand_cmd(&mut s);
        s.one(c, 3, true);
    }
    let leader2 = s.check_one_leader();
    let mut other = nth(leader1, 2, n);
    if leader2 == other {
        other = nth(leader2, 1, n);
    }
    s.disconnect(other);
    for _ in 0..50 {
        let c = rand_cmd(&mut s);
        s.start(leader2, c);
    }
    s.run_for(ELECTION_TIMEOUT / 2);
    for i in 1..=n as u64 {
        s.disconnect(i);
    }
    s.connect(leader1);
    s.connect(nth(leader1, 1, n));
    s.connect(other);
    let t0 = s.now;
    for _ in 0..50 {
        let c = rand_cmd(&mut s);
        s.one(c, 3, true);
    }
    eprintln!(
        "50 agreements after the swap took {} ms simulated",
        s.now - t0
    );
    for i in 1..=n as u64 {
        s.connect(i);
    }
    let c = rand_cmd(&mut s);
    s.one(c, n, true);
}

#[cfg_attr(test, test)]
pub fn count_3b() {
    let n = 3;
    let mut s = sim(n, 210);
    let leader = s.check_one_leader();
    let total = s.rpcs;
    eprintln!("election used {total} RPCs (limit 30), leader n{leader}");
    if !(1..=30).contains(&total) {
        s.fail(&format!(
            "too many or few RPCs ({total}) to elect initial leader"
        ));
    }
    let mut total2 = 0;
    let mut success = false;
    'tries: for attempt in 0..5 {
        if attempt > 0 {
            s.run_for(3000);
        }
        let leader = s.check_one_leader();
        let total1 = s.rpcs;
        let iters = 10u64;
        let Some((starti, term)) = s.start(leader, cmd(1)) else {
            continue;
        };
        let mut cmds = Vec::new();
        for i in 1..iters + 2 {
            let x = s.rng.next_u64();
            cmds.push(x);
            match s.start(leader, cmd(x)) {
                Some((index1, term1)) if term1 == term => {
                    if index1 != starti + i {
                        s.fail("Start() failed");
                    }
                }
                _ => continue 'tries,
            }
        }
        for i in 1..iters + 1 {
            match s.wait(starti + i, n, Some(term)) {
                Some(c) if c == cmd(cmds[(i - 1) as usize]) => {}
                Some(_) => s.fail("wrong value committed"),
                None => continue 'tries,
            }
        }
        total2 = s.rpcs;
        let used = total2 - total1;
        eprintln!(
            "{iters} agreements used {used} RPCs (limit {})",
            (iters + 1 + 3) * 3
        );
        if used > (iters + 1 + 3) * 3 {
            s.fail(&format!("too many RPCs ({used}) for {iters} entries"));
        }
        success = true;
        break;
    }
    if !success {
        s.fail("term changed too often");
    }
    s.run_for(ELECTION_TIMEOUT);
    let idle = s.rpcs - total2;
    eprintln!("idle second used {idle} RPCs (limit {})", 3 * 20);
    if idle > 3 * 20 {
        s.fail(&format!("too many RPCs ({idle}) for 1 second of idleness"));
    }
    // The handout's limit: at most 10 heartbeats per second per peer.
    if idle > 10 * (n as u64 - 1) {
        s.fail(&format!("{idle} heartbeats in 1 s to {} peers", n - 1));
    }
}

// ------------------------------------------------------------------------------- 3C

#[cfg_attr(test, test)]
pub fn persist1_3c() {
    let n = 3;
    let mut s = sim(n, 301);
    s.one(cmd(11), n, true);
    for i in 1..=n as u64 {
        s.crash(i);
    }
    for i in 1..=n as u64 {
        s.restart(i);
    }
    s.one(cmd(12), n, true);
    let leader1 = s.check_one_leader();
    s.restart(leader1);
    s.one(cmd(13), n, true);
    let leader2 = s.check_one_leader();
    s.disconnect(leader2);
    let idx = s.one(cmd(14), n - 1, true);
    s.restart(leader2);
    s.connect(leader2);
    s.wait(idx, n, None);
    let i3 = nth(s.check_one_leader(), 1, n);
    s.disconnect(i3);
    s.one(cmd(15), n - 1, true);
    s.restart(i3);
    s.connect(i3);
    s.one(cmd(16), n, true);
}

#[cfg_attr(test, test)]
pub fn persist2_3c() {
    let n = 5;
    let mut s = sim(n, 302);
    let mut index = 1;
    for _ in 0..5 {
        s.one(cmd(10 + index), n, true);
        index += 1;
        let leader1 = s.check_one_leader();
        s.disconnect(nth(leader1, 1, n));
        s.disconnect(nth(leader1, 2, n));
        s.one(cmd(10 + index), n - 2, true);
        index += 1;
        s.disconnect(leader1);
        s.disconnect(nth(leader1, 3, n));
        s.disconnect(nth(leader1, 4, n));
        for k in 1..=2 {
            let id = nth(leader1, k, n);
            s.restart(id);
            s.connect(id);
        }
        s.run_for(ELECTION_TIMEOUT);
        let id = nth(leader1, 3, n);
        s.restart(id);
        s.connect(id);
        s.one(cmd(10 + index), n - 2, true);
        index += 1;
        s.connect(nth(leader1, 4, n));
        s.connect(leader1);
    }
    s.one(cmd(1000), n, true);
}

#[cfg_attr(test, test)]
pub fn persist3_3c() {
    let n = 3;
    let mut s = sim(n, 303);
    s.one(cmd(101), n, true);
    let leader = s.check_one_leader();
    s.disconnect(nth(leader, 2, n));
    s.one(cmd(102), 2, true);
    s.crash(leader);
    s.crash(nth(leader, 1, n));
    s.connect(nth(leader, 2, n));
    s.restart(leader);
    s.one(cmd(103), 2, true);
    s.restart(nth(leader, 1, n));
    s.one(cmd(104), n, true);
}

fn figure8(s: &mut Sim, unreliable: bool) {
    let n = s.n();
    let c = cmd(s.rng.next_u64() % 10_000);
    s.one(c, 1, true);
    let mut nup = n;
    for iters in 0..1000 {
        if unreliable && iters == 200 {
            s.net.long_reorder = 600.0 / 900.0;
        }
        let mut leader = None;
        for i in 1..=n as u64 {
            let c = cmd(s.rng.next_u64() % 10_000);
            if s.start(i, c).is_some() && s.is_connected(i) {
                leader = Some(i);
            }
        }
        let ms = if s.rng.range(0, 1000) < 100 {
            s.rng.range(0, 500)
        } else {
            s.rng.range(0, 13)
        };
        s.run_for(ms);
        if unreliable {
            if let Some(l) = leader
                && s.rng.range(0, 1000) < ELECTION_TIMEOUT / 2
            {
                s.disconnect(l);
                nup -= 1;
            }
            if nup < 3 {
                let i = s.rng.range(1, n as u64 + 1);
                if !s.is_connected(i) {
                    s.connect(i);
                    nup += 1;
                }
            }
        } else {
            if let Some(l) = leader {
                s.crash(l);
                nup -= 1;
            }
            if nup < 3 {
                let i = s.rng.range(1, n as u64 + 1);
                if !s.is_up(i) {
                    s.restart(i);
                    nup += 1;
                }
            }
        }
    }
    for i in 1..=n as u64 {
        if !s.is_up(i) {
            s.restart(i);
        }
        s.connect(i);
    }
    let c = cmd(s.rng.next_u64() % 10_000);
    s.one(c, n, true);
    eprintln!(
        "figure 8: {} ms simulated, {} events, {} messages, {} entries committed",
        s.now,
        s.steps,
        s.msgs,
        s.max_committed()
    );
}

#[cfg_attr(test, test)]
pub fn figure8_3c() {
    // One seed commits only a few dozen entries (the leader is crashed every iteration),
    // so several seeds run; `SEED` still replays one.
    for seed in [304, 3041, 3042, 3043, 3044, 3045] {
        let mut s = sim(5, seed);
        figure8(&mut s, false);
        if std::env::var_os("SEED").is_some() {
            break;
        }
    }
}

/// Several one()s at once: every command is submitted before any is waited for, each is
/// resubmitted (to whoever leads) when it has not been applied by `expected` nodes within
/// 2 s of its submission, and all must agree within one()'s 10 s.
fn one_concurrent(s: &mut Sim, cmds: &[Bytes], expected: usize) {
    let t0 = s.now;
    // Per command: (index, submitted at) of its latest submission.
    let mut pending: Vec<(Bytes, Option<(u64, u64)>)> =
        cmds.iter().map(|c| (c.clone(), None)).collect();
    while !pending.is_empty() {
        if s.now - t0 > 10_000 {
            s.fail(&format!(
                "{} of {} concurrent one()s failed to reach agreement in 10 s",
                pending.len(),
                cmds.len()
            ));
        }
        for (c, sub) in pending.iter_mut() {
            if sub.is_some_and(|(_, at)| s.now - at < 2_000) {
                continue;
            }
            *sub = None;
            for id in 1..=s.n() as u64 {
                if s.is_up(id)
                    && s.is_connected(id)
                    && let Some((i, _)) = s.start(id, c.clone())
                {
                    *sub = Some((i, s.now));
                    break;
                }
            }
        }
        s.run_for(20);
        pending.retain(|(c, sub)| match sub {
            Some((i, _)) => {
                let (nd, got) = s.n_committed(*i);
                !(nd >= expected && got.as_ref() == Some(c))
            }
            None => true,
        });
    }
}

#[cfg_attr(test, test)]
pub fn unreliable_agree_3c() {
    let n = 5;
    let mut s = sim(n, 305);
    s.net = NetConfig::unreliable();
    for iter in 1..50u64 {
        // The lab runs four one()s concurrently with a fifth.
        let mut cmds: Vec<Bytes> = (0..4).map(|j| cmd(100 * iter + j)).collect();
        cmds.push(cmd(iter));
        one_concurrent(&mut s, &cmds, 1);
    }
    s.net = NetConfig::reliable();
    s.one(cmd(100), n, true);
}

#[cfg_attr(test, test)]
pub fn figure8_unreliable_3c() {
    // With long reordering and CheckQuorum most leaders are short-lived (one seed commits
    // a dozen entries), so several seeds run; `SEED` still replays one.
    for seed in [306, 3061, 3062, 3063, 3064, 3065] {
        let mut s = sim(5, seed);
        s.net = NetConfig::unreliable();
        figure8(&mut s, true);
        if std::env::var_os("SEED").is_some() {
            break;
        }
    }
}

fn churn(s: &mut Sim, unreliable: bool) {
    let n = s.n() as u64;
    if unreliable {
        s.net = NetConfig::unreliable();
    }
    // Three clients, each with at most one command outstanding: (value, index, deadline).
    let mut pending: [Option<(u64, u64, u64)>; 3] = [None; 3];
    let mut committed_values: Vec<u64> = Vec::new();
    let mut next_action = s.now + 700;
    let end = s.now + 20 * 700;
    while s.now < end {
        for p in pending.iter_mut() {
            if let Some((v, idx, deadline)) = *p {
                let (nd, c) = s.n_committed(idx);
                if nd > 0 {
                    if c == Some(cmd(v)) {
                        committed_values.push(v);
                    }
                    *p = None;
                } else if s.now > deadline {
                    *p = None;
                }
            } else {
                let v = s.rng.next_u64();
                for i in 1..=n {
                    if s.is_connected(i)
                        && let Some((idx, _)) = s.start(i, cmd(v))
                    {
                        *p = Some((v, idx, s.now + 2000));
                        break;
                    }
                }
            }
        }
        let ms = s.rng.range(1, 30);
        s.run_for(ms);
        if s.now >= next_action {
            next_action += 700;
            if s.rng.range(0, 1000) < 200 {
                let i = s.rng.range(1, n + 1);
                s.disconnect(i);
            }
            if s.rng.range(0, 1000) < 500 {
                let i = s.rng.range(1, n + 1);
                if !s.is_up(i) {
                    s.restart(i);
                }
                s.connect(i);
            }
            if s.rng.range(0, 1000) < 200 {
                let i = s.rng.range(1, n + 1);
                if s.is_up(i) {
                    s.crash(i);
                }
            }
        }
    }
    s.net = NetConfig::reliable();
    for i in 1..=n {
        if !s.is_up(i) {
            s.restart(i);
        }
        s.connect(i);
    }
    s.run_for(ELECTION_TIMEOUT);
    let c = rand_cmd(s);
    let last = s.one(c, n as usize, true);
    let mut really = Vec::new();
    for idx in 1..=last {
        if let (_, Some(c)) = s.n_committed(idx)
            && c.len() == 8
        {
            really.push(u64::from_le_bytes(c[..].try_into().unwrap_or_default()));
        }
    }
    for v in &committed_values {
        if !really.contains(v) {
            s.fail(&format!("didn't find a value {v}"));
        }
    }
    eprintln!("churn: {} client values committed", committed_values.len());
    if committed_values.is_empty() {
        s.fail("no progress under churn");
    }
}

#[cfg_attr(test, test)]
pub fn reliable_churn_3c() {
    let mut s = sim(5, 307);
    churn(&mut s, false);
}

#[cfg_attr(test, test)]
pub fn unreliable_churn_3c() {
    let mut s = sim(5, 308);
    churn(&mut s, true);
}

// ------------------------------------------------------------------------------- 3D

fn snapcommon(default_seed: u64, disconnect: bool, reliable: bool, crash: bool) {
    let n = 3;
    let mut s = sim(n, default_seed);
    s.snapshot_every = Some(SNAPSHOT_INTERVAL);
    if !reliable {
        s.net = NetConfig::unreliable();
    }
    let c = rand_cmd(&mut s);
    s.one(c, n, true);
    let mut leader1 = s.check_one_leader();
    for i in 0..30 {
        let mut victim = nth(leader1, 1, n);
        let mut sender = leader1;
        if i % 3 == 1 {
            sender = nth(leader1, 1, n);
            victim = leader1;
        }
        if disconnect {
            s.disconnect(victim);
            let c = rand_cmd(&mut s);
            s.one(c, n - 1, true);
        }
        if crash {
            s.crash(victim);
            let c = rand_cmd(&mut s);
            s.one(c, n - 1, true);
        }
        let nn = SNAPSHOT_INTERVAL / 2 + s.rng.range(0, SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            let c = rand_cmd(&mut s);
            s.start(sender, c);
        }
        let c = rand_cmd(&mut s);
        if !disconnect && !crash {
            s.one(c, n, true);
        } else {
            s.one(c, n - 1, true);
        }
        if s.max_raft_state() >= MAX_LOG_SIZE {
            s.fail(&format!("log size too large: {}", s.max_raft_state()));
        }
        if disconnect {
            s.connect(victim);
            let c = rand_cmd(&mut s);
            s.one(c, n, true);
            leader1 = s.check_one_leader();
        }
        if crash {
            s.restart(victim);
            s.connect(victim);
            let c = rand_cmd(&mut s);
            s.one(c, n, true);
            leader1 = s.check_one_leader();
        }
    }
    eprintln!(
        "snapshot chunks sent: {}, max raft state {} bytes",
        s.snapshot_chunks,
        s.max_raft_state()
    );
    if (disconnect || crash) && s.snapshot_chunks == 0 {
        s.fail("no InstallSnapshot was needed; the scenario did not exercise it");
    }
    // With every node up and no message lost, a follower needs the snapshot only if
    // reordering left it an entry short just when the leader compacted; a snapshot sent to
    // a follower that the entries in flight were about to catch up is waste. (This once
    // asserted that no chunk at all is sent; that held for the default seed only: 14 of
    // seeds 1..=60 sent a snapshot that the lagging follower did need.)
    if !disconnect && !crash && reliable && s.needless_snapshots > 0 {
        s.fail(&format!(
            "{} snapshot transfers reached a follower that already had their last entry \
             ({} chunks in all)",
            s.needless_snapshots, s.snapshot_chunks
        ));
    }
}

#[cfg_attr(test, test)]
pub fn snapshot_basic_3d() {
    snapcommon(401, false, true, false);
}

#[cfg_attr(test, test)]
pub fn snapshot_install_3d() {
    snapcommon(402, true, true, false);
}

#[cfg_attr(test, test)]
pub fn snapshot_install_unreliable_3d() {
    snapcommon(403, true, false, false);
}

#[cfg_attr(test, test)]
pub fn snapshot_install_crash_3d() {
    snapcommon(404, false, true, true);
}

#[cfg_attr(test, test)]
pub fn snapshot_install_uncrash_3d() {
    snapcommon(405, false, false, true);
}

#[cfg_attr(test, test)]
pub fn snapshot_all_crash_3d() {
    let n = 3;
    let mut s = sim(n, 406);
    s.snapshot_every = Some(SNAPSHOT_INTERVAL);
    let c = rand_cmd(&mut s);
    s.one(c, n, true);
    for _ in 0..5 {
        let nn = SNAPSHOT_INTERVAL / 2 + s.rng.range(0, SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            let c = rand_cmd(&mut s);
            s.one(c, n, true);
        }
        let c = rand_cmd(&mut s);
        let index1 = s.one(c, n, true);
        for i in 1..=n as u64 {
            s.crash(i);
        }
        for i in 1..=n as u64 {
            s.restart(i);
        }
        let c = rand_cmd(&mut s);
        let index2 = s.one(c, n, true);
        if index2 < index1 + 1 {
            s.fail(&format!("index decreased from {index1} to {index2}"));
        }
    }
}

#[cfg_attr(test, test)]
pub fn snapshot_init_3d() {
    let n = 3;
    let mut s = sim(n, 407);
    s.snapshot_every = Some(SNAPSHOT_INTERVAL);
    let c = rand_cmd(&mut s);
    s.one(c, n, true);
    for _ in 0..=SNAPSHOT_INTERVAL {
        let c = rand_cmd(&mut s);
        s.one(c, n, true);
    }
    for _ in 0..2 {
        for i in 1..=n as u64 {
            s.crash(i);
        }
        for i in 1..=n as u64 {
            s.restart(i);
        }
        let c = rand_cmd(&mut s);
        s.one(c, n, true);
    }
    if s.storage(1).snapshot_size() == 0 {
        s.fail("no snapshot persisted");
    }
}
