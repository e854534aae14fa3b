//! The node driver over the in-process channel transport: three driver threads elect,
//! replicate, survive the leader's shutdown, and a restarted node catches up by
//! InstallSnapshot; the apply channel delivers each index once, in order.

use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use raft::transport::LocalNetwork;
use raft::{
    ApplyMsg, ConfChange, ConfChangeType, Config, Error, MemStorage, MembershipError, Node,
};

const TICK: Duration = Duration::from_millis(10);
/// How long a wait may take before the test calls it a hang. Real threads on a busy
/// machine can be slow by seconds, so this only catches a cluster that is stuck; speed is
/// measured by the figures the tests print, never asserted.
const HANG_GUARD: Duration = Duration::from_secs(60);

struct Member {
    node: Option<Node>,
    apply: Receiver<ApplyMsg>,
    storage: MemStorage,
    /// What this incarnation's state machine applied: (index, data).
    applied: Vec<(u64, Bytes)>,
    /// Membership changes delivered: (index, change).
    changes: Vec<(u64, ConfChange)>,
    last: u64,
}

fn spawn(
    net: &LocalNetwork,
    id: u64,
    storage: MemStorage,
    pipelined: bool,
) -> (Node, Receiver<ApplyMsg>) {
    let mut cfg = Config::new(id, vec![1, 2, 3]);
    cfg.snapshot_chunk_bytes = 1024;
    cfg.pipelined_persist = pipelined;
    let (node, apply) = Node::spawn(cfg, storage, net.transport(id), TICK).expect("spawn node");
    net.register(id, node.mailbox());
    (node, apply)
}

impl Member {
    /// Drains the apply channel, checking order, and snapshots every 50 indexes.
    fn pump(&mut self) {
        while let Ok(m) = self.apply.try_recv() {
            match m {
                ApplyMsg::Snapshot { index, data, .. } => {
                    assert!(index > self.last, "snapshot {index} after {}", self.last);
                    self.applied = decode(&data);
                    self.last = index;
                }
                ApplyMsg::ConfChange { index, change, .. } => {
                    assert!(index > self.last, "change {index} after {}", self.last);
                    self.last = index;
                    self.changes.push((index, change));
                }
                ApplyMsg::Command { index, data, .. } => {
                    assert!(index > self.last, "index {index} after {}", self.last);
                    self.last = index;
                    self.applied.push((index, data));
                    if index % 50 == 0
                        && let Some(n) = &self.node
                    {
                        n.snapshot(index, encode(&self.applied)).expect("snapshot");
                    }
                }
            }
        }
    }
}

fn encode(a: &[(u64, Bytes)]) -> Bytes {
    let mut v = Vec::new();
    for (i, d) in a {
        v.extend_from_slice(&i.to_le_bytes());
        v.extend_from_slice(&(d.len() as u32).to_le_bytes());
        v.extend_from_slice(d);
    }
    Bytes::from(v)
}

fn decode(b: &Bytes) -> Vec<(u64, Bytes)> {
    let mut out = Vec::new();
    let mut p = 0;
    while p + 12 <= b.len() {
        let i = u64::from_le_bytes(b[p..p + 8].try_into().expect("8 bytes"));
        let l = u32::from_le_bytes(b[p + 8..p + 12].try_into().expect("4 bytes")) as usize;
        out.push((i, b.slice(p + 12..p + 12 + l)));
        p += 12 + l;
    }
    out
}

fn wait_until(ms: &mut [Member], what: &str, mut f: impl FnMut(&mut [Member]) -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < HANG_GUARD {
        for m in ms.iter_mut() {
            m.pump();
        }
        if f(ms) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("timed out waiting for {what}");
}

fn leader(ms: &mut [Member]) -> usize {
    let mut found = None;
    wait_until(ms, "a leader", |ms| {
        found = ms.iter().position(|m| {
            m.node
                .as_ref()
                .and_then(|n| n.status().ok())
                .is_some_and(|s| s.is_leader())
        });
        found.is_some()
    });
    found.unwrap_or_default()
}

fn propose(ms: &mut [Member], data: Bytes) -> u64 {
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < HANG_GUARD, "no leader accepted the command");
        let l = leader(ms);
        match ms[l].node.as_ref().map(|n| n.start(data.clone())) {
            Some(Ok((index, _))) => return index,
            Some(Err(Error::NotLeader { .. })) | None => continue,
            Some(Err(e)) => panic!("start: {e}"),
        }
    }
}

#[test]
fn three_nodes_over_channels() {
    three_nodes(false);
}

/// The same with the leader persisting on its own thread (`Config::pipelined_persist`).
#[test]
fn three_nodes_over_channels_with_pipelined_persist() {
    three_nodes(true);
}

/// Nodes 1..=n on `net`, each over its own `MemStorage`.
fn members(net: &LocalNetwork, n: u64, pipelined: bool) -> Vec<Member> {
    (1..=n)
        .map(|id| {
            let storage = MemStorage::new();
            let (node, apply) = spawn(net, id, storage.clone(), pipelined);
            Member {
                node: Some(node),
                apply,
                storage,
                applied: Vec::new(),
                changes: Vec::new(),
                last: 0,
            }
        })
        .collect()
}

fn three_nodes(pipelined: bool) {
    let net = LocalNetwork::new();
    let mut ms = members(&net, 3, pipelined);
    let t0 = Instant::now();
    let l = leader(&mut ms);
    eprintln!("elected n{} in {:?}", l + 1, t0.elapsed());

    // A follower refuses commands and names the leader.
    let f = (l + 1) % 3;
    wait_until(&mut ms, "follower knows the leader", |ms| {
        ms[f]
            .node
            .as_ref()
            .and_then(|n| n.status().ok())
            .and_then(|s| s.leader)
            == Some(l as u64 + 1)
    });
    match ms[f]
        .node
        .as_ref()
        .map(|n| n.start(Bytes::from_static(b"x")))
    {
        Some(Err(Error::NotLeader { leader_hint })) => assert_eq!(leader_hint, Some(l as u64 + 1)),
        other => panic!("follower accepted a command: {other:?}"),
    }

    let mut last = 0;
    for i in 0..200u32 {
        last = propose(&mut ms, Bytes::copy_from_slice(&i.to_le_bytes()));
    }
    wait_until(&mut ms, "all apply 200 commands", |ms| {
        ms.iter().all(|m| m.last >= last)
    });
    let read = ms[l].node.as_ref().map(|n| n.read_index());
    assert!(
        matches!(read, Some(Ok(i)) if i >= last),
        "read_index: {read:?}"
    );

    // The non-blocking forms: 100 proposals and 100 reads issued from this thread without
    // waiting, each answered exactly once through its callback.
    let (tx, rx) = crossbeam_channel::unbounded();
    if let Some(n) = ms[l].node.as_ref() {
        for i in 0..100u32 {
            let t = tx.clone();
            n.start_with(
                Bytes::copy_from_slice(&(1000 + i).to_le_bytes()),
                Box::new(move |r| {
                    let _ = t.send(("start", r.map(|(i, _)| i)));
                }),
            );
            let tx = tx.clone();
            n.read_index_with(Box::new(move |r| {
                let _ = tx.send(("read", r));
            }));
        }
    }
    drop(tx);
    let (mut starts, mut reads) = (Vec::new(), Vec::new());
    for (what, r) in rx.iter() {
        let i = r.unwrap_or_else(|e| panic!("{what}: {e}"));
        if what == "start" {
            starts.push(i);
        } else {
            reads.push(i);
        }
    }
    assert_eq!((starts.len(), reads.len()), (100, 100));
    assert!(
        starts.windows(2).all(|w| w[1] == w[0] + 1),
        "proposals got consecutive indexes in order: {starts:?}"
    );
    assert!(
        reads.iter().all(|&r| r >= last),
        "a read point below {last}"
    );
    last = *starts.last().unwrap_or(&last);
    wait_until(&mut ms, "all apply the pipelined commands", |ms| {
        ms.iter().all(|m| m.last >= last)
    });

    // The leader shuts down; the others elect a new one and go on.
    if let Some(n) = ms[l].node.take() {
        n.shutdown();
    }
    net.unregister(l as u64 + 1);
    for i in 200..400u32 {
        last = propose(&mut ms, Bytes::copy_from_slice(&i.to_le_bytes()));
    }
    wait_until(&mut ms, "survivors apply", |ms| {
        ms.iter()
            .filter(|m| m.node.is_some())
            .all(|m| m.last >= last)
    });

    // The old leader restarts from its storage; the log was compacted meanwhile, so it
    // catches up by InstallSnapshot.
    let st = ms[l].storage.clone();
    let (node, apply) = spawn(&net, l as u64 + 1, st, pipelined);
    ms[l].node = Some(node);
    ms[l].apply = apply;
    ms[l].applied.clear();
    ms[l].last = 0;
    wait_until(&mut ms, "restarted node catches up", |ms| {
        ms[l].last >= last
    });
    let first = ms[(l + 1) % 3]
        .node
        .as_ref()
        .and_then(|n| n.status().ok())
        .map(|s| s.first_index);
    assert!(
        first.is_some_and(|f| f > 200),
        "log was not compacted: first index {first:?}"
    );

    // Every node's state machine holds the same commands at the same indexes.
    let reference = ms[(l + 1) % 3].applied.clone();
    for m in &ms {
        let upto: Vec<_> = m
            .applied
            .iter()
            .filter(|(i, _)| *i <= last)
            .cloned()
            .collect();
        let want: Vec<_> = reference
            .iter()
            .filter(|(i, _)| *i <= last)
            .cloned()
            .collect();
        assert_eq!(upto, want);
    }
    assert_eq!(reference.iter().filter(|(i, _)| *i <= last).count(), 500);

    for m in &mut ms {
        if let Some(n) = m.node.take() {
            n.shutdown();
        }
    }
}

fn node(ms: &[Member], i: usize) -> &Node {
    ms[i].node.as_ref().expect("running")
}

/// Waits for `f`'s answer from a callback of the driver (a hang guard only).
fn answer<T: Send + 'static>(f: impl FnOnce(raft::Callback<T>)) -> Result<T, Error> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    f(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv_timeout(HANG_GUARD).expect("the driver answered")
}

fn change(kind: ConfChangeType, id: u64, context: &str) -> ConfChange {
    ConfChange {
        change_type: kind as i32,
        node_id: id,
        context: Bytes::copy_from_slice(context.as_bytes()),
    }
}

/// The driver's membership forms: a fourth node (not in the bootstrap voters, so it
/// waits) is added as a learner, every node sees the change with its context on the apply
/// channel, the learner gets the log, is promoted once it has acknowledged entries, and
/// leadership is moved to it with TimeoutNow; a promotion of a non-member is refused with
/// the typed reason and nothing changes.
#[test]
fn membership_changes_and_leadership_transfer_through_the_driver() {
    let net = LocalNetwork::new();
    let mut ms = members(&net, 4, false);
    // Node 4 is no voter (bootstrap voters 1-3), so it never leads here.
    let mut last = 0;
    for i in 0..20u32 {
        last = propose(&mut ms[..3], Bytes::copy_from_slice(&i.to_le_bytes()));
    }
    let l = leader(&mut ms[..3]);
    let refused = answer(|d| {
        node(&ms, l)
            .propose_conf_change_with(change(ConfChangeType::ConfChangePromoteLearner, 9, ""), d)
    });
    assert!(
        matches!(
            refused,
            Err(Error::Membership(MembershipError::NotMember { id: 9 }))
        ),
        "promoting a non-member: {refused:?}"
    );
    // A change proposed while the leader's first entry of its term is still uncommitted
    // is refused with TermNotCommitted: retry until it is taken.
    let add = loop {
        let l = leader(&mut ms[..3]);
        match answer(|d| {
            node(&ms, l).propose_conf_change_with(
                change(ConfChangeType::ConfChangeAddLearner, 4, "127.0.0.1:7004"),
                d,
            )
        }) {
            Ok((index, _)) => break index,
            Err(Error::Membership(MembershipError::TermNotCommitted { .. }))
            | Err(Error::NotLeader { .. }) => {}
            Err(e) => panic!("add learner 4: {e}"),
        }
    };
    wait_until(
        &mut ms,
        "every node applies the change and the learner the log",
        |ms| ms.iter().all(|m| m.last >= add.max(last)),
    );
    for m in &ms {
        let (i, c) = m.changes.first().expect("the change was delivered");
        assert_eq!(*i, add);
        assert_eq!(c.node_id, 4);
        assert_eq!(
            &c.context[..],
            b"127.0.0.1:7004",
            "the context travels with the entry"
        );
    }
    let st = node(&ms, 3).status().expect("status");
    assert_eq!(
        (st.voters.clone(), st.learners.clone()),
        (vec![1, 2, 3], vec![4])
    );
    // Promote (the learner has acknowledged entries by now), then move leadership to it.
    let promote = loop {
        let l = leader(&mut ms[..3]);
        match answer(|d| {
            node(&ms, l).propose_conf_change_with(
                change(ConfChangeType::ConfChangePromoteLearner, 4, ""),
                d,
            )
        }) {
            Ok((index, _)) => break index,
            Err(Error::NotLeader { .. })
            | Err(Error::Membership(MembershipError::LearnerLagging { .. })) => {}
            Err(e) => panic!("promote 4: {e}"),
        }
    };
    wait_until(&mut ms, "every node applies the promotion", |ms| {
        ms.iter().all(|m| m.last >= promote)
    });
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < HANG_GUARD,
            "leadership never moved to node 4"
        );
        let l = leader(&mut ms);
        if l == 3 {
            break;
        }
        match answer(|d| node(&ms, l).transfer_leader_with(4, d)) {
            Ok(()) | Err(Error::NotLeader { .. }) | Err(Error::TransferInProgress { .. }) => {}
            Err(e) => panic!("transfer to 4: {e}"),
        }
        wait_until(&mut ms, "a moment", |_| true);
    }
    let st = node(&ms, 3).status().expect("status");
    assert!(st.is_leader() && st.voters == vec![1, 2, 3, 4], "{st:?}");
    // The new leader commits a write that the old voters apply.
    let w = propose(&mut ms, Bytes::from_static(b"after"));
    wait_until(&mut ms, "all apply the write under the new leader", |ms| {
        ms.iter().all(|m| m.last >= w)
    });
}
