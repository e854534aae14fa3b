//! Three nodes over the real `rpc` transport on 127.0.0.1, with the default tick: elect,
//! replicate 12,000 commands (1 and 64 concurrent proposers, commands/s printed), survive
//! the leader's shutdown, and the restarted node catches up by InstallSnapshot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::rpc_transport::{RaftIntake, RpcTransport};
use raft::{ApplyMsg, Config, DEFAULT_TICK, Error, MemStorage, Node};
use rpc::{ClientConfig, ClientRuntime, ServerBuilder};

#[derive(Debug, Default)]
struct Applied {
    last: u64,
    count: u64,
    hash: u64,
    /// Hash of the state after applying each multiple of 100.
    checkpoints: BTreeMap<u64, u64>,
    /// Snapshots received on the apply channel (index).
    snapshots: Vec<u64>,
}

type Shared = Arc<(Mutex<Applied>, Condvar)>;

struct Peer {
    id: u64,
    addr: SocketAddr,
    intake: RaftIntake,
    server: Option<rpc::Server>,
    node: Option<Arc<Node>>,
    storage: MemStorage,
    applier: Option<JoinHandle<()>>,
    applied: Shared,
}

const SNAPSHOT_EVERY: u64 = 1000;

fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3))
}

fn start_node(p: &mut Peer, rt: &ClientRuntime, addrs: &BTreeMap<u64, SocketAddr>) {
    let peers: BTreeMap<u64, SocketAddr> = addrs
        .iter()
        .filter(|(i, _)| **i != p.id)
        .map(|(i, a)| (*i, *a))
        .collect();
    let mut cfg = Config::new(p.id, addrs.keys().copied().collect());
    cfg.cluster_id = 42;
    let transport = RpcTransport::new(rt, &peers);
    let (node, apply) =
        Node::spawn(cfg, p.storage.clone(), transport, DEFAULT_TICK).expect("spawn");
    let node = Arc::new(node);
    p.intake.set_mailbox(Some(node.mailbox()));
    let weak: Weak<Node> = Arc::downgrade(&node);
    let applied: Shared = Arc::new((Mutex::new(Applied::default()), Condvar::new()));
    p.applied = applied.clone();
    p.applier = Some(std::thread::spawn(move || {
        // Drain whatever is ready, apply it under one lock, wake the waiters once.
        while let Ok(first) = apply.recv() {
            let mut batch = vec![first];
            batch.extend(apply.try_iter());
            let (lock, cv) = &*applied;
            let mut snapshot_at = None;
            {
                let mut a = lock.lock().expect("applied lock");
                for m in batch {
                    match m {
                        ApplyMsg::Snapshot { index, data, .. } => {
                            assert!(index > a.last, "snapshot {index} after {}", a.last);
                            let w = |i: usize| {
                                u64::from_le_bytes(data[i..i + 8].try_into().expect("8 bytes"))
                            };
                            a.count = w(0);
                            a.hash = w(8);
                            a.last = index;
                            a.snapshots.push(index);
                        }
                        ApplyMsg::ConfChange { .. } => {
                            panic!("no membership change was proposed")
                        }
                        ApplyMsg::Command { index, data, .. } => {
                            assert!(index > a.last, "index {index} after {}", a.last);
                            a.last = index;
                            a.count += 1;
                            a.hash = fnv(fnv(a.hash, &index.to_le_bytes()), &data);
                            if index % 100 == 0 {
                                let h = a.hash;
                                a.checkpoints.insert(index, h);
                            }
                            if index % SNAPSHOT_EVERY == 0 {
                                let mut snap = a.count.to_le_bytes().to_vec();
                                snap.extend_from_slice(&a.hash.to_le_bytes());
                                snapshot_at = Some((index, snap));
                            }
                        }
                    }
                }
            }
            cv.notify_all();
            // The state machine's state after the batch covers `index` and more; the
            // snapshot must describe exactly `index`, so it was captured above.
            if let Some((index, snap)) = snapshot_at
                && let Some(n) = weak.upgrade()
            {
                let _ = n.snapshot(index, Bytes::from(snap));
            }
        }
    }));
    p.node = Some(node);
}

fn stop_node(p: &mut Peer) {
    p.intake.set_mailbox(None);
    if let Some(n) = p.node.take() {
        // The applier may hold a temporary strong reference while it snapshots.
        let mut n = n;
        loop {
            match Arc::try_unwrap(n) {
                Ok(node) => {
                    node.shutdown();
                    break;
                }
                Err(back) => {
                    n = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    if let Some(t) = p.applier.take() {
        t.join().expect("applier thread");
    }
}

/// How long a wait may take before the test calls it a hang. Real threads on a busy
/// machine can be slow by seconds, so this only catches a cluster that is stuck; speed is
/// measured by the figures the test prints, never asserted.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn leader(peers: &[Peer]) -> Option<usize> {
    peers.iter().position(|p| {
        p.node
            .as_ref()
            .and_then(|n| n.status().ok())
            .is_some_and(|s| s.is_leader())
    })
}

fn wait_leader(peers: &[Peer], within: Duration) -> usize {
    let t0 = Instant::now();
    loop {
        if let Some(l) = leader(peers) {
            return l;
        }
        assert!(t0.elapsed() < within, "no leader within {within:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_applied(shared: &Shared, index: u64, within: Duration) -> bool {
    let (lock, cv) = &**shared;
    let deadline = Instant::now() + within;
    let mut a = lock.lock().expect("applied lock");
    while a.last < index {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        a = cv.wait_timeout(a, deadline - now).expect("applied lock").0;
    }
    true
}

/// `total` commands from `proposers` threads, each waiting for its command to apply on
/// the leader before sending the next. Returns commands/s and the last index.
fn load(peers: &[Peer], proposers: usize, total: usize, tag: u8) -> (f64, u64) {
    let l = wait_leader(peers, HANG_GUARD);
    let node = peers[l].node.clone().expect("leader node");
    let shared = peers[l].applied.clone();
    let per = total / proposers;
    let t0 = Instant::now();
    let last = std::thread::scope(|s| {
        let hs: Vec<_> = (0..proposers)
            .map(|p| {
                let node = node.clone();
                let shared = shared.clone();
                s.spawn(move || {
                    let mut last = 0;
                    for i in 0..per {
                        let data = Bytes::from(format!("{tag}-{p}-{i}").into_bytes());
                        let (index, _) = match node.start(data) {
                            Ok(r) => r,
                            Err(e @ Error::NotLeader { .. }) => panic!("lost leadership: {e}"),
                            Err(e) => panic!("start: {e}"),
                        };
                        assert!(
                            wait_applied(&shared, index, HANG_GUARD),
                            "command {index} not applied in {HANG_GUARD:?}"
                        );
                        last = last.max(index);
                    }
                    last
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("proposer"))
            .max()
            .unwrap_or(0)
    });
    let rate = (per * proposers) as f64 / t0.elapsed().as_secs_f64();
    (rate, last)
}

#[test]
fn three_nodes_over_rpc() {
    let rt = ClientRuntime::new(ClientConfig::default()).expect("client runtime");
    let mut peers: Vec<Peer> = (1..=3)
        .map(|id| {
            let intake = RaftIntake::new();
            let server = ServerBuilder::new()
                .register_inline(intake.service())
                .bind("127.0.0.1:0".parse().expect("addr"))
                .expect("bind");
            Peer {
                id,
                addr: server.local_addr(),
                intake,
                server: Some(server),
                node: None,
                storage: MemStorage::new(),
                applier: None,
                applied: Arc::default(),
            }
        })
        .collect();
    let addrs: BTreeMap<u64, SocketAddr> = peers.iter().map(|p| (p.id, p.addr)).collect();
    let t0 = Instant::now();
    for p in &mut peers {
        start_node(p, &rt, &addrs);
    }
    let l = wait_leader(&peers, HANG_GUARD);
    eprintln!(
        "rpc cluster: n{} elected after {:?} (tick {DEFAULT_TICK:?})",
        l + 1,
        t0.elapsed()
    );

    let (rate1, _) = load(&peers, 1, 2_000, 1);
    eprintln!("rpc cluster: {rate1:.0} commands/s committed with 1 proposer");
    let (rate64, last) = load(&peers, 64, 10_048, 2);
    eprintln!("rpc cluster: {rate64:.0} commands/s committed with 64 proposers");
    for p in &peers {
        assert!(wait_applied(&p.applied, last, HANG_GUARD), "n{} lags", p.id);
    }

    // The leader shuts down (node and server); the other two elect and go on.
    let old = wait_leader(&peers, HANG_GUARD);
    let old_last = peers[old].applied.0.lock().expect("lock").last;
    stop_node(&mut peers[old]);
    peers[old].server.take();
    let t1 = Instant::now();
    let (_, last) = load(&peers, 64, 3_008, 3);
    eprintln!(
        "rpc cluster: n{} shut down; new leader committed 3008 more in {:?}",
        old + 1,
        t1.elapsed()
    );
    let survivor = (old + 1) % 3;
    let first = peers[survivor]
        .node
        .as_ref()
        .and_then(|n| n.status().ok())
        .map(|s| s.first_index);
    assert!(
        first.is_some_and(|f| f > old_last + 1),
        "log not compacted past the old leader (first index {first:?}, old leader at {old_last})"
    );

    // Restart it on the same address from its storage: it catches up by InstallSnapshot.
    let server = ServerBuilder::new()
        .register_inline(peers[old].intake.service())
        .bind(peers[old].addr)
        .expect("rebind the old address");
    peers[old].server = Some(server);
    start_node(&mut peers[old], &rt, &addrs);
    assert!(
        wait_applied(&peers[old].applied, last, HANG_GUARD),
        "restarted node did not catch up"
    );
    let snaps = peers[old].applied.0.lock().expect("lock").snapshots.clone();
    assert!(
        snaps.iter().any(|&s| s > old_last),
        "restarted node caught up without InstallSnapshot: {snaps:?}"
    );
    eprintln!(
        "rpc cluster: restarted n{} caught up via snapshots {snaps:?}",
        old + 1
    );

    // Same state at every checkpoint all nodes passed through.
    let cps: Vec<BTreeMap<u64, u64>> = peers
        .iter()
        .map(|p| p.applied.0.lock().expect("lock").checkpoints.clone())
        .collect();
    let mut compared = 0;
    for (i, h) in &cps[survivor] {
        for cp in &cps {
            if let Some(h2) = cp.get(i) {
                assert_eq!(h, h2, "state differs at {i}");
                compared += 1;
            }
        }
    }
    assert!(compared > 100);

    for p in &mut peers {
        stop_node(p);
        p.server.take();
    }
    drop(rt);
}
