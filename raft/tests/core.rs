//! Tests of the core alone: the Ready contract, single-node clusters, errors, and a
//! no-panic fuzz of peer input. The cluster-level tests live in `testkit`.

use bytes::Bytes;
use proto::raft::raft_message::Body;
use proto::raft::{
    AppendEntriesReply, AppendEntriesRequest, Entry, InstallSnapshotReply, InstallSnapshotRequest,
    RequestVoteReply, RequestVoteRequest,
};
use raft::{Config, Error, InitialState, MemStorage, RaftMessage, RawNode, Role, Storage};

mod common;
use common::drive;

#[test]
fn single_node_elects_itself_and_commits() {
    let mut st = MemStorage::new();
    let mut n = RawNode::new(Config::new(1, vec![1]), InitialState::default()).expect("node");
    for _ in 0..25 {
        n.tick();
    }
    assert_eq!(n.status().role, Role::Leader);
    drive(&mut n, &mut st);
    let (idx, _) = n.propose(Bytes::from_static(b"a")).expect("leader");
    let rds = drive(&mut n, &mut st);
    let applied: Vec<u64> = rds
        .iter()
        .flat_map(|r| r.committed_entries.iter().map(|e| e.index))
        .collect();
    assert!(
        applied.contains(&idx),
        "single node did not commit {idx}: {applied:?}"
    );
    n.read_index(7).expect("leader");
    let rds = drive(&mut n, &mut st);
    assert!(rds.iter().any(|r| r.read_states.iter().any(|s| s.ctx == 7)));

    // Snapshot, then restart from storage: the snapshot comes back to apply first.
    n.snapshot(idx, Bytes::from_static(b"state"))
        .expect("applied");
    drive(&mut n, &mut st);
    let mut n2 = RawNode::new(Config::new(1, vec![1]), st.load().expect("load")).expect("node");
    let rd = n2.ready();
    assert_eq!(rd.apply_snapshot.map(|s| s.index), Some(idx));
}

#[test]
fn votes_wait_for_the_persist() {
    let mut n = RawNode::new(Config::new(1, vec![1, 2, 3]), InitialState::default()).expect("n");
    while !n.has_ready() {
        n.tick();
    }
    let rd = n.ready();
    // PreVote requests first; they promise nothing but still go after the persist.
    assert!(rd.messages.is_empty());
    assert_eq!(rd.persisted_messages.len(), 2);
    n.advance(&rd);
    // Grant the PreVote: a real election starts, with term and vote to persist.
    let grant = RaftMessage {
        cluster_id: 0,
        from: 2,
        to: 1,
        body: Some(Body::RequestVoteReply(RequestVoteReply {
            term: 1,
            vote_granted: true,
            pre_vote: true,
        })),
    };
    n.step(grant);
    let rd = n.ready();
    let hs = rd.hard_state.expect("term and vote changed");
    assert_eq!((hs.term, hs.vote), (1, 1));
    assert!(rd.messages.is_empty());
    assert_eq!(rd.persisted_messages.len(), 2);
}

#[test]
fn errors() {
    assert!(matches!(
        RawNode::new(Config::new(0, vec![0]), InitialState::default()),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        RawNode::new(Config::new(1, vec![]), InitialState::default()),
        Err(Error::InvalidConfig(_))
    ));
    // A node outside the bootstrap voters is a non-member waiting to be added: it starts,
    // but never campaigns.
    let mut joiner = RawNode::new(Config::new(4, vec![1, 2, 3]), InitialState::default())
        .expect("a joining node starts");
    for _ in 0..100 {
        joiner.tick();
    }
    assert!(!joiner.has_ready() && joiner.status().term == 0);
    let mut n = RawNode::new(Config::new(1, vec![1, 2, 3]), InitialState::default()).expect("n");
    assert!(matches!(
        n.propose(Bytes::new()),
        Err(Error::NotLeader { leader_hint: None })
    ));
    assert!(matches!(n.read_index(1), Err(Error::NotLeader { .. })));
    assert!(matches!(
        n.snapshot(5, Bytes::new()),
        Err(Error::SnapshotNotApplied { .. })
    ));
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn val(&mut self, around: u64) -> u64 {
        match self.next() % 8 {
            0 => 0,
            1 => u64::MAX,
            2 => u64::MAX - 1,
            3 => around.saturating_sub(1),
            4 => around,
            5 => around.wrapping_add(1),
            6 => self.next() % 64,
            _ => self.next(),
        }
    }
}

/// Random peer input, including absurd numbers, never panics the core (run it in debug
/// builds too: overflow checks are on there).
#[test]
fn fuzz_peer_input_never_panics() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..2000 {
        let mut st = MemStorage::new();
        let mut n =
            RawNode::new(Config::new(1, vec![1, 2, 3]), InitialState::default()).expect("n");
        for step in 0..300 {
            if rng.next().is_multiple_of(4) {
                n.tick();
            }
            if rng.next().is_multiple_of(16) {
                let _ = n.propose(Bytes::from_static(b"p"));
            }
            let term = n.term();
            let last = n.status().last_index;
            let body = match rng.next() % 6 {
                0 => Body::RequestVote(RequestVoteRequest {
                    term: rng.val(term),
                    candidate_id: rng.val(2),
                    last_log_index: rng.val(last),
                    last_log_term: rng.val(term),
                    pre_vote: rng.next().is_multiple_of(2),
                    leadership_transfer: rng.next().is_multiple_of(2),
                }),
                1 => Body::RequestVoteReply(RequestVoteReply {
                    term: rng.val(term),
                    vote_granted: rng.next().is_multiple_of(2),
                    pre_vote: rng.next().is_multiple_of(2),
                }),
                2 => {
                    let prev = rng.val(last);
                    let k = rng.next() % 4;
                    let entries = (0..k)
                        .map(|i| Entry {
                            term: rng.val(term),
                            index: if rng.next().is_multiple_of(4) {
                                rng.val(last)
                            } else {
                                prev.wrapping_add(1 + i)
                            },
                            entry_type: (rng.next() % 3) as i32,
                            data: Bytes::from_static(b"e"),
                        })
                        .collect();
                    Body::AppendEntries(AppendEntriesRequest {
                        term: rng.val(term),
                        leader_id: 2,
                        prev_log_index: prev,
                        prev_log_term: rng.val(term),
                        entries,
                        leader_commit: rng.val(last),
                        read_ctx: rng.val(1),
                        heartbeat: rng.next().is_multiple_of(3),
                    })
                }
                3 => Body::AppendEntriesReply(AppendEntriesReply {
                    term: rng.val(term),
                    success: rng.next().is_multiple_of(2),
                    match_index: rng.val(last),
                    conflict_term: rng.val(term),
                    conflict_index: rng.val(last),
                    last_log_index: rng.val(last),
                    read_ctx: rng.val(1),
                    heartbeat: rng.next().is_multiple_of(3),
                    reject_index: rng.val(last),
                }),
                4 => Body::InstallSnapshot(InstallSnapshotRequest {
                    term: rng.val(term),
                    leader_id: 2,
                    last_included_index: rng.val(last.wrapping_add(3)),
                    last_included_term: rng.val(term),
                    offset: rng.val(0),
                    data: Bytes::from_static(b"snap"),
                    voters: vec![rng.val(3), rng.val(u64::MAX)],
                    learners: vec![rng.val(4)],
                    done: rng.next().is_multiple_of(2),
                }),
                _ => Body::InstallSnapshotReply(InstallSnapshotReply {
                    term: rng.val(term),
                    last_included_index: rng.val(last),
                    next_offset: rng.val(0),
                    done: rng.next().is_multiple_of(2),
                }),
            };
            let from = [2, 3, 2, 3, 1, 9][(rng.next() % 6) as usize];
            n.step(RaftMessage {
                cluster_id: if rng.next().is_multiple_of(20) { 5 } else { 0 },
                from,
                to: 1,
                body: Some(body),
            });
            let _ = (round, step);
            while n.has_ready() {
                let rd = n.ready();
                st.persist(rd.hard_state.as_ref(), rd.snapshot.as_ref(), &rd.entries)
                    .expect("mem storage");
                if let Some(e) = rd.committed_entries.last() {
                    let idx = e.index;
                    if rng.next().is_multiple_of(3) {
                        let _ = n.snapshot(idx, Bytes::from_static(b"s"));
                    }
                }
                n.advance(&rd);
            }
        }
    }
}

/// Nodes with default configs (or one shared seed) draw different election timeouts;
/// identical ones would split every vote.
#[test]
fn default_configs_draw_different_timeouts() {
    for shared_seed in [None, Some(42)] {
        let ticks: Vec<u32> = (1..=3)
            .map(|id| {
                let mut cfg = Config::new(id, vec![1, 2, 3]);
                if let Some(s) = shared_seed {
                    cfg.seed = s;
                }
                let mut n = RawNode::new(cfg, InitialState::default()).expect("node");
                let mut t = 0;
                while !n.has_ready() {
                    n.tick();
                    t += 1;
                }
                t
            })
            .collect();
        assert!(
            ticks.iter().any(|&t| t != ticks[0]),
            "all nodes time out together: {ticks:?}"
        );
    }
}
