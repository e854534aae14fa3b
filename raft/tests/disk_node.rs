//! The node driver on `DiskStorage`: a node shut down and restarted from its data
//! directory comes back with its term, vote, log, snapshot and commit index, and its
//! state machine is rebuilt from the snapshot and the log after it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use raft::transport::LocalNetwork;
use raft::{ApplyMsg, Config, DiskOptions, DiskStorage, Node, Storage};

const TICK: Duration = Duration::from_millis(5);

fn config() -> Config {
    let mut cfg = Config::new(1, vec![1]);
    cfg.cluster_id = 9;
    cfg
}

fn spawn(net: &LocalNetwork, dir: &std::path::Path) -> (Node, Receiver<ApplyMsg>) {
    let cfg = config();
    let storage = DiskStorage::open(dir, DiskOptions::from_config(&cfg)).expect("open data dir");
    let (node, apply) = Node::spawn(cfg, storage, net.transport(1), TICK).expect("spawn");
    net.register(1, node.mailbox());
    (node, apply)
}

fn encode(m: &BTreeMap<u64, Bytes>) -> Bytes {
    let mut v = Vec::new();
    for (i, d) in m {
        v.extend_from_slice(&i.to_le_bytes());
        v.extend_from_slice(&(d.len() as u32).to_le_bytes());
        v.extend_from_slice(d);
    }
    Bytes::from(v)
}

fn decode(b: &Bytes) -> BTreeMap<u64, Bytes> {
    let mut out = BTreeMap::new();
    let mut p = 0;
    while p + 12 <= b.len() {
        let i = u64::from_le_bytes(b[p..p + 8].try_into().expect("8 bytes"));
        let l = u32::from_le_bytes(b[p + 8..p + 12].try_into().expect("4 bytes")) as usize;
        out.insert(i, b.slice(p + 12..p + 12 + l));
        p += 12 + l;
    }
    out
}

/// Applies from `apply` until `until` holds, for at most 10 s.
fn apply_until(
    apply: &Receiver<ApplyMsg>,
    sm: &mut BTreeMap<u64, Bytes>,
    mut until: impl FnMut(&BTreeMap<u64, Bytes>) -> bool,
) {
    let t0 = Instant::now();
    while !until(sm) {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out applying");
        match apply.recv_timeout(Duration::from_millis(50)) {
            Ok(ApplyMsg::Snapshot { data, .. }) => *sm = decode(&data),
            Ok(ApplyMsg::Command { index, data, .. }) => {
                sm.insert(index, data);
            }
            Ok(ApplyMsg::ConfChange { .. }) => {} // this test changes no membership
            Err(_) => {}
        }
    }
}

fn propose(node: &Node, cmd: Bytes) -> u64 {
    let t0 = Instant::now();
    loop {
        match node.start(cmd.clone()) {
            Ok((index, _)) => return index,
            Err(raft::Error::NotLeader { .. }) if t0.elapsed() < Duration::from_secs(10) => {
                // Not elected yet: ask again (a round trip through the driver thread).
                let _ = node.status();
                std::thread::yield_now();
            }
            Err(e) => panic!("propose: {e}"),
        }
    }
}

#[test]
fn a_node_restarted_from_its_directory_keeps_term_vote_log_snapshot_and_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n1");
    let net = LocalNetwork::new();
    let (node, apply) = spawn(&net, &dir);
    let mut sm = BTreeMap::new();
    let mut last = 0;
    for i in 0..100u32 {
        last = propose(&node, Bytes::from(format!("cmd-{i}")));
        if i == 59 {
            apply_until(&apply, &mut sm, |m| m.contains_key(&last));
            node.snapshot(last, encode(&sm)).expect("snapshot");
        }
    }
    apply_until(&apply, &mut sm, |m| m.contains_key(&last));
    let before = node.status().unwrap();
    assert_eq!(before.commit, last);
    node.shutdown();
    net.unregister(1);

    // What is on disk, read back directly.
    let cfg = config();
    let st = DiskStorage::open(&dir, DiskOptions::from_config(&cfg))
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(st.hard_state.term, before.term);
    assert_eq!(st.hard_state.vote, 1);
    assert!(st.snapshot.index >= 60 && st.snapshot.index <= last);
    assert_eq!(st.snapshot.index + st.entries.len() as u64, last);
    // The commit index is persisted with the next Ready; at least the snapshot's.
    assert!(st.hard_state.commit >= st.snapshot.index);

    // Restarted: the state machine comes back from the snapshot and the log.
    let (node, apply) = spawn(&net, &dir);
    let mut sm2 = BTreeMap::new();
    apply_until(&apply, &mut sm2, |m| m.contains_key(&last));
    let cmds = |m: &BTreeMap<u64, Bytes>| m.values().cloned().collect::<Vec<_>>();
    assert_eq!(cmds(&sm2), cmds(&sm), "the restarted state machine differs");
    let after = node.status().unwrap();
    assert!(after.term >= before.term && after.commit >= last);
    assert!(after.snapshot_index >= 60);
    node.shutdown();
}
