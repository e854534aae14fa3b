//! The MIT 6.5840 lab 4A/4B key-value tests (Spring 2024 `kvraft/test_test.go`), ported
//! to the deterministic KV simulator (`testkit::kvsim`) with the lab's parameters and
//! limits, in simulated time (each test's simulated time is bounded by the lab's 120 s).
//!
//! GenericTest: 3 rounds; in each, the Clerks run Append/Get for 5 s (own key, or random
//! keys), a partitioner re-splits the servers every 1-1.2 s, then (with crashes) every
//! server is crashed and restarted; every Get of a Clerk's own key must hold exactly its
//! appends so far, in order. Every history is checked with
//! `kvsim::check_append_history` (the lab's exactly-once/in-order checks plus the real-time
//! conditions of linearizability for append-only keys). With `maxraftstate` the persisted
//! Raft state must stay under 8 × maxraftstate. Then every test's whole history goes
//! through `lincheck` (Porcupine's algorithm over the KV model); a violation keeps the
//! history file and its HTML picture and prints their paths.
//!
//! A failing test prints `replay with SEED=...`:
//! `SEED=... cargo test -p testkit --release --test lab4 <name>` replays it exactly
//! (`SIM_TRACE=1` prints every delivered Raft message).

use std::collections::BTreeMap;

use bytes::Bytes;
use testkit::kvsim::{KvSim, Op, OpResult, check_append_history};
use testkit::sim::{NetConfig, seed_from_env};

/// The lab's limit for one test, in simulated ms.
const TEST_LIMIT_MS: u64 = 120_000;
/// The lab's election timeout (1 s) in simulated ms.
const ELECTION_MS: u64 = 1000;

fn b(s: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(s.as_ref())
}

/// Runs `op` on clerk `c`; fails the test (with the seed) if it does not complete within
/// 10 s of simulated time.
fn must(sim: &mut KvSim, c: usize, op: Op) -> OpResult {
    let what = format!("{op:?}");
    match sim.run_op(c, op, 10_000) {
        Some(r) => r,
        None => sim.fail(&format!("clerk {c}: {what} did not complete in 10 s")),
    }
}

fn get(sim: &mut KvSim, c: usize, k: &str) -> Option<Bytes> {
    match must(sim, c, Op::Get(b(k))) {
        OpResult::Value(v) => v,
        other => sim.fail(&format!("Get({k}) gave {other:?}")),
    }
}

/// Reads every key with a fresh Clerk and checks the history against the final values,
/// then the whole history with `lincheck`.
fn check_history(sim: &mut KvSim, keys: &[String]) {
    let name = std::thread::current().name().unwrap_or("kv").to_string();
    let c = sim.add_clerk();
    let mut finals = BTreeMap::new();
    for k in keys {
        if let Some(v) = get(sim, c, k) {
            finals.insert(b(k), v);
        }
    }
    if let Err(e) = check_append_history(&sim.history, &finals) {
        sim.fail(&format!("history of {} operations: {e}", sim.history.len()));
    }
    sim.check_linearizable(&name);
}

#[derive(Clone, Copy, Debug)]
struct Params {
    clients: usize,
    servers: usize,
    unreliable: bool,
    crash: bool,
    partitions: bool,
    max_raft_state: Option<usize>,
    random_keys: bool,
}

fn p(clients: usize, servers: usize, unreliable: bool, crash: bool, partitions: bool) -> Params {
    Params {
        clients,
        servers,
        unreliable,
        crash,
        partitions,
        max_raft_state: None,
        random_keys: false,
    }
}

/// GenericTest.
fn generic(seed: u64, prm: Params) -> KvSim {
    let mut sim = KvSim::new(prm.servers, seed);
    sim.max_raft_state = prm.max_raft_state;
    if prm.unreliable {
        sim.net = NetConfig::unreliable();
    }
    let clerks: Vec<usize> = (0..prm.clients).map(|_| sim.add_clerk()).collect();
    let nkeys = prm.clients.max(1);
    let keys: Vec<String> = (0..nkeys).map(|k| k.to_string()).collect();
    // Appends so far per clerk (own-key mode): the lab's `j`.
    let mut count = vec![0usize; prm.clients];
    let mut checked = 0usize;
    let mut done_appends: Vec<Vec<(u64, Bytes)>> = vec![Vec::new(); prm.clients];
    for round in 0..3 {
        let round_end = sim.now + 5_000;
        let mut next_partition = sim.now + sim.rng.range(1_000, 1_200);
        while sim.now < round_end {
            for (i, &c) in clerks.iter().enumerate() {
                if sim.busy(c) {
                    continue;
                }
                let key = if prm.random_keys {
                    keys[sim.rng.range(0, nkeys as u64) as usize].clone()
                } else {
                    i.to_string()
                };
                let op = if sim.rng.chance(0.5) {
                    count[i] += 1;
                    Op::Append(b(&key), b(format!("x {i} {} {round} y", count[i])))
                } else {
                    Op::Get(b(&key))
                };
                sim.submit(c, op);
            }
            sim.run_for(5);
            if prm.partitions && sim.now >= next_partition {
                let mut a = Vec::new();
                let mut z = Vec::new();
                for id in 1..=prm.servers as u64 {
                    if sim.rng.chance(0.5) {
                        a.push(id);
                    } else {
                        z.push(id);
                    }
                }
                sim.partition(&[&a, &z]);
                next_partition = sim.now + sim.rng.range(1_000, 1_200);
            }
            // The lab's in-loop check: a Get of the clerk's own key holds exactly its
            // appends that finished before the Get started, in order (and maybe a later
            // one in flight).
            if !prm.random_keys {
                while checked < sim.history.len() {
                    let r = sim.history[checked].clone();
                    checked += 1;
                    let i = r.clerk;
                    match (&r.op, &r.result) {
                        (Op::Append(_, tok), OpResult::Written { .. }) => {
                            done_appends[i].push((r.ret, tok.clone()));
                        }
                        (Op::Get(k), OpResult::Value(v)) => {
                            let v = v.clone().unwrap_or_default();
                            let mut from = 0;
                            for (j, (ret, tok)) in done_appends[i].iter().enumerate() {
                                if *ret > r.invoke {
                                    break;
                                }
                                match v[from..].windows(tok.len()).position(|w| w == &tok[..]) {
                                    Some(p) => from += p + tok.len(),
                                    None => sim.fail(&format!(
                                        "clerk {i}: Get({}) misses or misorders its append {}: {:?}",
                                        String::from_utf8_lossy(k),
                                        j + 1,
                                        String::from_utf8_lossy(&v)
                                    )),
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        if prm.partitions {
            sim.heal();
            sim.run_for(ELECTION_MS);
        }
        if prm.crash {
            for id in 1..=prm.servers as u64 {
                sim.crash(id);
            }
            let pause = sim.rng.range(0, 100);
            sim.run_for(pause);
            for id in 1..=prm.servers as u64 {
                sim.restart(id);
            }
        }
        // Let the clerks finish what they started.
        let deadline = sim.now + 20_000;
        while clerks.iter().any(|&c| sim.busy(c)) {
            if sim.now > deadline {
                sim.fail("clerks did not finish their operations within 20 s of the round's end");
            }
            sim.run_for(10);
        }
        if let Some(max) = prm.max_raft_state
            && sim.max_raft_state_seen > 8 * max
        {
            sim.fail(&format!(
                "persisted Raft state reached {} bytes > 8 × maxraftstate {max}",
                sim.max_raft_state_seen
            ));
        }
    }
    if prm.max_raft_state.is_none() && sim.snapshots > 0 {
        sim.fail("snapshots taken with maxraftstate = -1");
    }
    if prm.max_raft_state.is_some() && sim.snapshots == 0 {
        sim.fail("no snapshot was ever taken");
    }
    check_history(&mut sim, &keys);
    if sim.now > TEST_LIMIT_MS {
        sim.fail(&format!(
            "took {} ms of simulated time > the lab's 120 s",
            sim.now
        ));
    }
    sim
}

macro_rules! generic_test {
    ($name:ident, $seed:expr, $prm:expr) => {
        #[test]
        fn $name() {
            let sim = generic(seed_from_env($seed), $prm);
            eprintln!(
                "{}: {} ops in {} simulated ms, {} snapshots, max raft state {} bytes",
                stringify!($name),
                sim.history.len(),
                sim.now,
                sim.snapshots,
                sim.max_raft_state_seen
            );
        }
    };
}

fn snap(mut prm: Params, random_keys: bool) -> Params {
    prm.max_raft_state = Some(1000);
    prm.random_keys = random_keys;
    prm
}

fn rk(mut prm: Params) -> Params {
    prm.random_keys = true;
    prm
}

generic_test!(basic_4a, 41, p(1, 5, false, false, false));
generic_test!(concurrent_4a, 42, p(5, 5, false, false, false));
generic_test!(unreliable_4a, 43, p(5, 5, true, false, false));
generic_test!(
    many_partitions_one_client_4a,
    44,
    p(1, 5, false, false, true)
);
generic_test!(
    many_partitions_many_clients_4a,
    45,
    p(5, 5, false, false, true)
);
generic_test!(persist_one_client_4a, 46, p(1, 5, false, true, false));
generic_test!(persist_concurrent_4a, 47, p(5, 5, false, true, false));
generic_test!(
    persist_concurrent_unreliable_4a,
    48,
    p(5, 5, true, true, false)
);
generic_test!(persist_partition_4a, 49, p(5, 5, false, true, true));
generic_test!(
    persist_partition_unreliable_4a,
    50,
    p(5, 5, true, true, true)
);
generic_test!(
    persist_partition_unreliable_linearizable_4a,
    51,
    rk(p(15, 7, true, true, true))
);
generic_test!(
    snapshot_recover_4b,
    52,
    snap(p(1, 5, false, true, false), false)
);
generic_test!(
    snapshot_recover_many_clients_4b,
    53,
    snap(p(20, 5, false, true, false), false)
);
generic_test!(
    snapshot_unreliable_4b,
    54,
    snap(p(5, 5, true, false, false), false)
);
generic_test!(
    snapshot_unreliable_recover_4b,
    55,
    snap(p(5, 5, true, true, false), false)
);
generic_test!(
    snapshot_unreliable_recover_concurrent_partition_4b,
    56,
    snap(p(5, 5, true, true, true), false)
);
generic_test!(
    snapshot_unreliable_recover_concurrent_partition_linearizable_4b,
    57,
    snap(p(15, 7, true, true, true), true)
);

/// TestUnreliableOneKey4A: 5 clerks × 10 concurrent appends to one key on an unreliable
/// network; each value exactly once, each clerk's in its order.
#[test]
fn unreliable_one_key_4a() {
    let mut sim = KvSim::new(3, seed_from_env(60));
    sim.net = NetConfig::unreliable();
    let clerks: Vec<usize> = (0..5).map(|_| sim.add_clerk()).collect();
    let c0 = clerks[0];
    assert_eq!(
        must(&mut sim, c0, Op::Put(b("k"), b(""))),
        OpResult::Written { existed: false }
    );
    sim.history.clear();
    let mut sent = [0usize; 5];
    while sent.iter().any(|&n| n < 10) || clerks.iter().any(|&c| sim.busy(c)) {
        for (i, &c) in clerks.iter().enumerate() {
            if !sim.busy(c) && sent[i] < 10 {
                sent[i] += 1;
                sim.submit(c, Op::Append(b("k"), b(format!("x {i} {} y", sent[i]))));
            }
        }
        sim.run_for(5);
        if sim.now > TEST_LIMIT_MS {
            sim.fail("appends did not finish in 120 s");
        }
    }
    check_history(&mut sim, &["k".to_string()]);
}

/// TestOnePartition4A: the leader and one follower in a minority; the majority makes
/// progress; a Put and a Get sent to the minority must not complete (within 1 s, and in
/// fact not at all while partitioned); both complete within 3 s after the partition heals.
#[test]
fn one_partition_4a() {
    let mut sim = KvSim::new(5, seed_from_env(61));
    let ck = sim.add_clerk();
    assert!(matches!(
        must(&mut sim, ck, Op::Put(b("1"), b("13"))),
        OpResult::Written { .. }
    ));
    let Some(leader) = sim.leader() else {
        sim.fail("no leader after the first Put");
    };
    let others: Vec<u64> = (1..=5).filter(|&i| i != leader).collect();
    let p1: Vec<u64> = others[..3].to_vec();
    let p2: Vec<u64> = vec![leader, others[3]];
    sim.partition(&[&p1, &p2]);
    let ckp1 = sim.add_clerk();
    sim.set_reach(ckp1, &p1);
    let ckp2a = sim.add_clerk();
    sim.set_reach(ckp2a, &p2);
    let ckp2b = sim.add_clerk();
    sim.set_reach(ckp2b, &p2);

    // Progress in the majority.
    assert!(matches!(
        must(&mut sim, ckp1, Op::Put(b("1"), b("14"))),
        OpResult::Written { .. }
    ));
    assert_eq!(get(&mut sim, ckp1, "1"), Some(b("14")));

    // No progress in the minority: its old leader cannot complete a Put or a Get.
    let before = sim.history.len();
    sim.submit(ckp2a, Op::Put(b("1"), b("15")));
    sim.submit(ckp2b, Op::Get(b("1")));
    sim.run_for(1_000);
    if sim.history.len() != before {
        sim.fail(&format!(
            "a minority completed {:?}",
            &sim.history[before..]
        ));
    }
    // ... however long it waits (the lab checks 1 s; a stale leader must never answer).
    sim.run_for(10_000);
    if sim.history.len() != before {
        sim.fail(&format!(
            "a minority completed {:?}",
            &sim.history[before..]
        ));
    }
    assert_eq!(get(&mut sim, ckp1, "1"), Some(b("14")));

    // Heal: both complete within 3 s.
    sim.heal();
    sim.set_reach(ckp2a, &[1, 2, 3, 4, 5]);
    sim.set_reach(ckp2b, &[1, 2, 3, 4, 5]);
    let t0 = sim.now;
    while sim.busy(ckp2a) || sim.busy(ckp2b) {
        if sim.now - t0 > 3_000 {
            sim.fail("Put/Get in the old minority did not complete within 3 s of healing");
        }
        sim.run_for(5);
    }
    assert_eq!(get(&mut sim, ckp1, "1"), Some(b("15")));
}

/// TestSnapshotRPC4B: the majority trims its log while a minority server is cut off; the
/// lagging server catches up by InstallSnapshot and serves after a re-partition.
#[test]
fn snapshot_rpc_4b() {
    let mut sim = KvSim::new(3, seed_from_env(62));
    sim.max_raft_state = Some(1000);
    let ck = sim.add_clerk();
    must(&mut sim, ck, Op::Put(b("a"), b("A")));
    // A minority of 3 is cut off; the majority applies 50 Puts and snapshots.
    sim.partition(&[&[1, 2], &[3]]);
    let ck1 = sim.add_clerk();
    sim.set_reach(ck1, &[1, 2]);
    for i in 0..50 {
        must(&mut sim, ck1, Op::Put(b(i.to_string()), b(i.to_string())));
    }
    sim.run_for(ELECTION_MS);
    must(&mut sim, ck1, Op::Put(b("b"), b("B")));
    if sim.max_raft_state_seen > 8 * 1000 {
        sim.fail(&format!(
            "log grew to {} bytes > 8 × 1000",
            sim.max_raft_state_seen
        ));
    }
    let snaps_before = sim.snapshots;
    if snaps_before == 0 {
        sim.fail("the majority took no snapshot");
    }
    // Now 3 is in the majority with 1: it must catch up (only by snapshot: the log it
    // needs was trimmed) before serving.
    sim.partition(&[&[1, 3], &[2]]);
    let ck2 = sim.add_clerk();
    sim.set_reach(ck2, &[1, 3]);
    must(&mut sim, ck2, Op::Put(b("c"), b("C")));
    must(&mut sim, ck2, Op::Put(b("d"), b("D")));
    assert_eq!(get(&mut sim, ck2, "a"), Some(b("A")));
    assert_eq!(get(&mut sim, ck2, "b"), Some(b("B")));
    assert_eq!(get(&mut sim, ck2, "1"), Some(b("1")));
    assert_eq!(get(&mut sim, ck2, "49"), Some(b("49")));
    if sim.value_at(3, b"49") != Some(b("49")) {
        sim.fail("server 3 did not catch up");
    }
    // Everyone together again.
    sim.heal();
    let ck3 = sim.add_clerk();
    must(&mut sim, ck3, Op::Put(b("e"), b("E")));
    assert_eq!(get(&mut sim, ck3, "c"), Some(b("C")));
    assert_eq!(get(&mut sim, ck3, "e"), Some(b("E")));
    assert_eq!(get(&mut sim, ck3, "1"), Some(b("1")));
    if sim.max_raft_state_seen > 8 * 1000 {
        sim.fail(&format!(
            "log grew to {} bytes > 8 × 1000",
            sim.max_raft_state_seen
        ));
    }
}

/// TestSnapshotSize4B: 200 × (Put x=0, Get, Put x=1, Get) on one key with maxraftstate
/// 1000: the log stays ≤ 8000 bytes and a snapshot of this tiny state ≤ 500 bytes.
#[test]
fn snapshot_size_4b() {
    let mut sim = KvSim::new(3, seed_from_env(63));
    sim.max_raft_state = Some(1000);
    let ck = sim.add_clerk();
    for _ in 0..200 {
        must(&mut sim, ck, Op::Put(b("x"), b("0")));
        assert_eq!(get(&mut sim, ck, "x"), Some(b("0")));
        must(&mut sim, ck, Op::Put(b("x"), b("1")));
        assert_eq!(get(&mut sim, ck, "x"), Some(b("1")));
    }
    if sim.max_raft_state_seen > 8 * 1000 {
        sim.fail(&format!(
            "log grew to {} bytes > 8000",
            sim.max_raft_state_seen
        ));
    }
    for id in 1..=3 {
        let size = sim.storage(id).snapshot_size();
        if size > 500 {
            sim.fail(&format!("n{id}'s snapshot is {size} bytes > 500"));
        }
    }
    if sim.snapshots == 0 {
        sim.fail("no snapshot taken");
    }
}

/// TestSpeed4A/4B: 1000 sequential Appends by one Clerk; the lab asserts at most 33.3 ms
/// per operation (three per 100 ms heartbeat), checked here in simulated time.
fn speed(max_raft_state: Option<usize>, seed: u64) {
    let mut sim = KvSim::new(3, seed_from_env(seed));
    sim.max_raft_state = max_raft_state;
    let ck = sim.add_clerk();
    must(&mut sim, ck, Op::Put(b("x"), b("")));
    let t0 = sim.now;
    for i in 0..1000 {
        must(&mut sim, ck, Op::Append(b("x"), b(format!("x 0 {i} y"))));
    }
    let per_op = (sim.now - t0) as f64 / 1000.0;
    eprintln!("1000 sequential appends: {per_op:.2} simulated ms per operation");
    if per_op > 33.3 {
        sim.fail(&format!("{per_op:.2} ms per operation > the lab's 33.3"));
    }
    check_history(&mut sim, &["x".to_string()]);
}

#[test]
fn speed_4a() {
    speed(None, 64);
}

#[test]
fn speed_4b() {
    speed(Some(1000), 65);
}

/// Bad input through the whole path: refused with INVALID_ARGUMENT before any proposal.
#[test]
fn bad_input_is_refused_before_raft() {
    let mut sim = KvSim::new(3, seed_from_env(66));
    sim.max_value_bytes = 100;
    let ck = sim.add_clerk();
    must(&mut sim, ck, Op::Put(b("k"), b("v")));
    let leader = sim.leader().unwrap_or_else(|| sim.fail("no leader"));
    let last = sim.raw(leader).map(|r| r.status().last_index);
    for op in [
        Op::Put(b(""), b("v")),
        Op::Get(b("")),
        Op::Append(Bytes::from(vec![b'k'; 64 * 1024 + 1]), b("v")),
        Op::Put(b("k"), Bytes::from(vec![0; 101])),
    ] {
        match must(&mut sim, ck, op.clone()) {
            OpResult::Invalid(text) => assert!(!text.is_empty()),
            other => sim.fail(&format!("{op:?} gave {other:?}")),
        }
    }
    assert_eq!(
        sim.raw(leader).map(|r| r.status().last_index),
        last,
        "bad input was proposed"
    );
    assert_eq!(get(&mut sim, ck, "k"), Some(b("v")));
    assert_eq!(get(&mut sim, ck, "missing"), None);
}
