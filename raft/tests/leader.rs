//! A leader's handling of AppendEntries replies, checked at the core level where the test
//! chooses every reply: replies from other terms, and the next probe after each kind of
//! rejection (fast backtracking, §5.3 and the optimization at its end). The simulator
//! reaches these cases only by luck, so a broken rule here could hide behind thousands of
//! green chaos seeds.

use bytes::Bytes;
use proto::raft::raft_message::Body;
use proto::raft::{AppendEntriesReply, AppendEntriesRequest, Entry, HardState, RequestVoteReply};
use raft::{Config, InitialState, MemStorage, RaftMessage, RawNode, Ready, Role};

mod common;
use common::drive;

const LEADER: u64 = 1;
/// The term the leader is elected in by [`leader`].
const TERM: u64 = 5;

fn log(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &t)| Entry {
            term: t,
            index: i as u64 + 1,
            entry_type: 0,
            data: Bytes::from(format!("cmd{}", i + 1)),
        })
        .collect()
}

/// A node restarting in term 4 with a log whose entry `i + 1` has term `terms[i]`.
fn node(id: u64, terms: &[u64]) -> (RawNode, MemStorage) {
    let state = InitialState {
        hard_state: HardState {
            term: TERM - 1,
            vote: 0,
            commit: 0,
        },
        snapshot: Default::default(),
        entries: log(terms),
    };
    let mut st = MemStorage::new();
    use raft::Storage;
    st.persist(Some(&state.hard_state), None, &state.entries)
        .expect("mem storage");
    let n = RawNode::new(Config::new(id, vec![1, 2, 3]), state).expect("node");
    (n, st)
}

fn msg(from: u64, to: u64, body: Body) -> RaftMessage {
    RaftMessage {
        cluster_id: 0,
        from,
        to,
        body: Some(body),
    }
}

/// Node 1 elected leader of term [`TERM`] with the log `terms` (plus its no-op), by a
/// PreVote and a vote from node 2. Returns it with the Readies of its first round (the
/// probes to 2 and 3).
fn leader(terms: &[u64]) -> (RawNode, MemStorage, Vec<Ready>) {
    let (mut n, mut st) = node(LEADER, terms);
    while !n.has_ready() {
        n.tick();
    }
    drive(&mut n, &mut st);
    let grant = |pre_vote| {
        msg(
            2,
            LEADER,
            Body::RequestVoteReply(RequestVoteReply {
                term: TERM,
                vote_granted: true,
                pre_vote,
            }),
        )
    };
    n.step(grant(true));
    drive(&mut n, &mut st);
    n.step(grant(false));
    let rds = drive(&mut n, &mut st);
    assert_eq!((n.status().role, n.term()), (Role::Leader, TERM), "setup");
    (n, st, rds)
}

/// The log-carrying AppendEntries (not heartbeats) to `to` in `rds`.
fn appends_to(rds: &[Ready], to: u64) -> Vec<AppendEntriesRequest> {
    rds.iter()
        .flat_map(|r| r.messages.iter().chain(&r.persisted_messages))
        .filter(|m| m.to == to)
        .filter_map(|m| match &m.body {
            Some(Body::AppendEntries(a)) if !a.heartbeat => Some(a.clone()),
            _ => None,
        })
        .collect()
}

fn append_reply(rds: &[Ready]) -> AppendEntriesReply {
    let replies: Vec<AppendEntriesReply> = rds
        .iter()
        .flat_map(|r| r.persisted_messages.iter().chain(&r.messages))
        .filter_map(|m| match &m.body {
            Some(Body::AppendEntriesReply(r)) => Some(*r),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 1, "expected one reply: {replies:?}");
    replies[0]
}

/// A reply from an earlier term says nothing about this term's log (§5.1: a node ignores
/// messages from older terms): a follower's match reported while an older leader led may
/// hold entries this leader does not have at those indexes. Counting it toward the commit
/// index would let a leader of term 5 commit entry 4 on a single copy.
#[test]
fn reply_from_an_earlier_term_is_not_counted_toward_commit() {
    let (mut n, mut st, _) = leader(&[1, 1, 1]);
    let noop = n.status().last_index;
    assert_eq!(noop, 4);
    let reply = |term| {
        msg(
            2,
            LEADER,
            Body::AppendEntriesReply(AppendEntriesReply {
                term,
                success: true,
                match_index: noop,
                last_log_index: noop,
                ..Default::default()
            }),
        )
    };
    n.step(reply(3));
    drive(&mut n, &mut st);
    assert_eq!(
        n.status().commit,
        0,
        "a term-3 acknowledgement advanced the term-5 leader's commit"
    );
    assert_eq!(n.stats().stale_term, 1);
    // The same acknowledgement in the leader's own term does commit (the test can fail).
    n.step(reply(TERM));
    drive(&mut n, &mut st);
    assert_eq!(n.status().commit, noop);
}

/// Any reply carrying a newer term makes the leader a follower of that term at once
/// (§5.1), whatever the reply says: success, rejection or heartbeat answer.
#[test]
fn reply_with_a_newer_term_makes_the_leader_step_down() {
    let variants = [
        AppendEntriesReply {
            term: TERM + 2,
            success: false,
            reject_index: 3,
            conflict_index: 1,
            ..Default::default()
        },
        AppendEntriesReply {
            term: TERM + 2,
            success: true,
            match_index: 1,
            last_log_index: 1,
            ..Default::default()
        },
        AppendEntriesReply {
            term: TERM + 2,
            success: true,
            heartbeat: true,
            ..Default::default()
        },
    ];
    for r in variants {
        let (mut n, mut st, _) = leader(&[1, 1, 1]);
        n.step(msg(3, LEADER, Body::AppendEntriesReply(r)));
        let rds = drive(&mut n, &mut st);
        assert_eq!(
            (n.status().role, n.term()),
            (Role::Follower, TERM + 2),
            "after {r:?}"
        );
        let hs = rds.iter().filter_map(|r| r.hard_state).next_back();
        assert_eq!(hs.map(|h| h.term), Some(TERM + 2), "new term not persisted");
        assert!(n.propose(Bytes::from_static(b"x")).is_err());
    }
}

/// Fast backtracking, one rejection of each kind. The leader's log is
/// `1 1 1 2 2 2 4 4 4 4` plus its no-op at 11 (term 5); its first probe to node 2 is
/// `prev = 10@4`. After the follower's rejection the next probe must start exactly where
/// the logs can match:
/// - the follower's log is too short (last index 3): `prev = 3`;
/// - the follower has term 2 at 10, which the leader has (its last term-2 entry is 6):
///   `prev = 6`;
/// - the follower has term 3 at 10 (from index 4), which the leader lacks: `prev = 3`,
///   just before the follower's first term-3 entry.
///
/// Each probe is then accepted, and the follower ends with the leader's log.
#[test]
fn next_probe_after_each_kind_of_rejection() {
    let leader_log = [1, 1, 1, 2, 2, 2, 4, 4, 4, 4];
    let cases: [(&str, &[u64], u64); 3] = [
        ("log too short", &[1, 1, 1], 3),
        (
            "conflict term the leader has",
            &[1, 1, 1, 2, 2, 2, 2, 2, 2, 2],
            6,
        ),
        (
            "conflict term the leader lacks",
            &[1, 1, 1, 3, 3, 3, 3, 3, 3, 3],
            3,
        ),
    ];
    for (what, follower_log, want_prev) in cases {
        let (mut l, mut lst, rds) = leader(&leader_log);
        let (mut f, mut fst) = node(2, follower_log);
        let probe = appends_to(&rds, 2);
        assert_eq!(probe.len(), 1, "{what}: first probe {probe:?}");
        assert_eq!(
            (probe[0].prev_log_index, probe[0].prev_log_term),
            (10, 4),
            "{what}: first probe"
        );
        f.step(msg(LEADER, 2, Body::AppendEntries(probe[0].clone())));
        let reject = append_reply(&drive(&mut f, &mut fst));
        assert!(!reject.success, "{what}: {reject:?}");
        l.step(msg(2, LEADER, Body::AppendEntriesReply(reject)));
        let next = appends_to(&drive(&mut l, &mut lst), 2);
        assert_eq!(next.len(), 1, "{what}: {next:?}");
        assert_eq!(
            next[0].prev_log_index, want_prev,
            "{what}: next probe after {reject:?}"
        );
        f.step(msg(LEADER, 2, Body::AppendEntries(next[0].clone())));
        let ok = append_reply(&drive(&mut f, &mut fst));
        assert!(ok.success, "{what}: the second probe was rejected: {ok:?}");
        assert_eq!(ok.match_index, 11, "{what}");
        let terms: Vec<Option<u64>> = (1..=11).map(|i| f.log_term(i)).collect();
        let want: Vec<Option<u64>> = (1..=11).map(|i| l.log_term(i)).collect();
        assert_eq!(terms, want, "{what}: logs differ after catching up");
    }
}

/// Node 1 leading with follower 2 in replicate mode (it acknowledged the no-op).
fn leader_replicating_to_2() -> (RawNode, MemStorage) {
    let (mut n, mut st, _) = leader(&[1, 1, 1]);
    let noop = n.status().last_index;
    n.step(msg(
        2,
        LEADER,
        Body::AppendEntriesReply(AppendEntriesReply {
            term: TERM,
            success: true,
            match_index: noop,
            last_log_index: noop,
            ..Default::default()
        }),
    ));
    drive(&mut n, &mut st);
    (n, st)
}

/// Proposals made between two Readies reach a follower in ONE AppendEntries carrying all
/// of them (one message, one acknowledgment, one follower fsync for the batch), not one
/// message per proposal.
#[test]
fn proposals_between_readies_go_out_in_one_append_entries() {
    let (mut n, mut st) = leader_replicating_to_2();
    let first = n.status().last_index + 1;
    for i in 0..3 {
        n.propose(Bytes::from(format!("batch{i}"))).expect("leader");
    }
    let rds = drive(&mut n, &mut st);
    let appends = appends_to(&rds, 2);
    assert_eq!(
        appends.len(),
        1,
        "one AppendEntries for the batch: {appends:?}"
    );
    let idx: Vec<u64> = appends[0].entries.iter().map(|e| e.index).collect();
    assert_eq!(idx, [first, first + 1, first + 2]);
}

/// While a Ready is being persisted, `take_early_messages` sends the proposals made since
/// (a pipelined driver replicates them during the leader's own fsync); the leader's copy
/// counts towards a commit only once a later Ready with those entries is advanced.
#[test]
fn early_messages_replicate_during_the_persist_without_counting_the_leaders_copy() {
    let (mut n, mut st) = leader_replicating_to_2();
    let a = n.propose(Bytes::from_static(b"a")).expect("leader").0;
    let rd = n.ready(); // being persisted ...
    assert_eq!(appends_to(std::slice::from_ref(&rd), 2).len(), 1);
    let b = n.propose(Bytes::from_static(b"b")).expect("leader").0;
    let early = n.take_early_messages();
    let to2: Vec<&RaftMessage> = early.iter().filter(|m| m.to == 2).collect();
    assert_eq!(to2.len(), 1, "the new proposal goes out at once: {early:?}");
    match &to2[0].body {
        Some(Body::AppendEntries(ae)) => {
            assert_eq!(ae.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [b]);
        }
        other => panic!("expected AppendEntries, got {other:?}"),
    }
    // Follower 2 acknowledges both before the leader's disk write of `a` is done: with
    // the leader's copy not yet durable, 1 of 3 copies is no majority.
    n.step(msg(
        2,
        LEADER,
        Body::AppendEntriesReply(AppendEntriesReply {
            term: TERM,
            success: true,
            match_index: b,
            last_log_index: b,
            ..Default::default()
        }),
    ));
    assert!(n.status().commit < a, "committed on one disk");
    use raft::Storage;
    st.persist(rd.hard_state.as_ref(), rd.snapshot.as_ref(), &rd.entries)
        .expect("mem storage");
    n.advance(&rd);
    assert_eq!(n.status().commit, a, "leader's copy of `a` now counts");
    let rds = drive(&mut n, &mut st);
    assert!(
        rds.iter().any(|r| r.entries.iter().any(|e| e.index == b)),
        "`b` is still handed out for persisting"
    );
    assert_eq!(n.status().commit, b);
}
