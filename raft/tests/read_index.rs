//! ReadIndex at the core level: which heartbeat replies confirm which read.

use proto::raft::raft_message::Body;
use proto::raft::{AppendEntriesReply, RequestVoteReply};
use raft::{Config, InitialState, MemStorage, RaftMessage, RawNode, Ready};

mod common;
use common::drive;

fn msg(from: u64, body: Body) -> RaftMessage {
    RaftMessage {
        cluster_id: 0,
        from,
        to: 1,
        body: Some(body),
    }
}

/// Node 1 of {1, 2, 3} as leader of term 1 with its no-op committed.
fn leader() -> (RawNode, MemStorage) {
    let mut st = MemStorage::new();
    let mut n = RawNode::new(Config::new(1, vec![1, 2, 3]), InitialState::default()).expect("n");
    while !n.has_ready() {
        n.tick();
    }
    drive(&mut n, &mut st);
    for pre_vote in [true, false] {
        n.step(msg(
            2,
            Body::RequestVoteReply(RequestVoteReply {
                term: 1,
                vote_granted: true,
                pre_vote,
            }),
        ));
        drive(&mut n, &mut st);
    }
    assert!(n.is_leader());
    n.step(msg(
        2,
        Body::AppendEntriesReply(AppendEntriesReply {
            term: 1,
            success: true,
            match_index: 1,
            ..Default::default()
        }),
    ));
    drive(&mut n, &mut st);
    assert_eq!(n.status().commit, 1);
    (n, st)
}

fn heartbeat_reply(from: u64, read_ctx: u64) -> RaftMessage {
    msg(
        from,
        Body::AppendEntriesReply(AppendEntriesReply {
            term: 1,
            success: true,
            heartbeat: true,
            read_ctx,
            ..Default::default()
        }),
    )
}

fn read_ctxs_sent(rds: &[Ready]) -> Vec<u64> {
    rds.iter()
        .flat_map(|r| r.messages.iter())
        .filter_map(|m| match &m.body {
            Some(Body::AppendEntries(a)) if a.heartbeat => Some(a.read_ctx),
            _ => None,
        })
        .collect()
}

/// A read is confirmed only by replies to heartbeats sent after it was asked: a reply to
/// the round of an earlier read proves leadership at an earlier time, when a newer leader
/// may already have committed writes this read must see.
#[test]
fn read_is_confirmed_only_by_heartbeats_sent_after_it() {
    let (mut n, mut st) = leader();
    n.read_index(1).expect("leader");
    let first = read_ctxs_sent(&drive(&mut n, &mut st));
    n.read_index(2).expect("leader");
    let second = read_ctxs_sent(&drive(&mut n, &mut st));
    assert!(
        !first.is_empty() && !second.is_empty(),
        "no heartbeat round"
    );
    assert!(first.iter().all(|c| second.iter().all(|d| c < d)));

    // Node 2 answers the first round only.
    n.step(heartbeat_reply(2, first[0]));
    let rds = drive(&mut n, &mut st);
    let answered: Vec<u64> = rds
        .iter()
        .flat_map(|r| r.read_states.iter().map(|s| s.ctx))
        .collect();
    assert_eq!(
        answered,
        vec![1],
        "the second read was confirmed by an older round"
    );

    // Its own round confirms the second read.
    n.step(heartbeat_reply(3, second[0]));
    let rds = drive(&mut n, &mut st);
    let answered: Vec<u64> = rds
        .iter()
        .flat_map(|r| r.read_states.iter().map(|s| s.ctx))
        .collect();
    assert_eq!(answered, vec![2]);
}
