//! A follower's log under reordered leader messages, checked at the core level where the
//! exact message sequence is under the test's control (the simulator reaches these
//! orderings only by luck).

use bytes::Bytes;
use proto::raft::raft_message::Body;
use proto::raft::{
    AppendEntriesReply, AppendEntriesRequest, Entry, InstallSnapshotReply, InstallSnapshotRequest,
};
use raft::{Config, InitialState, MemStorage, RaftMessage, RawNode, Ready};

const LEADER: u64 = 1;
const ME: u64 = 2;
const TERM: u64 = 1;

fn follower() -> (RawNode, MemStorage) {
    let n = RawNode::new(Config::new(ME, vec![1, 2, 3]), InitialState::default()).expect("node");
    (n, MemStorage::new())
}

mod common;
use common::drive;

fn entries(lo: u64, hi: u64) -> Vec<Entry> {
    (lo..=hi)
        .map(|i| Entry {
            term: TERM,
            index: i,
            entry_type: 0,
            data: Bytes::from(format!("cmd{i}")),
        })
        .collect()
}

fn from_leader(body: Body) -> RaftMessage {
    RaftMessage {
        cluster_id: 0,
        from: LEADER,
        to: ME,
        body: Some(body),
    }
}

fn append(prev: u64, es: Vec<Entry>, commit: u64) -> RaftMessage {
    from_leader(Body::AppendEntries(AppendEntriesRequest {
        term: TERM,
        leader_id: LEADER,
        prev_log_index: prev,
        prev_log_term: if prev == 0 { 0 } else { TERM },
        entries: es,
        leader_commit: commit,
        ..Default::default()
    }))
}

fn append_replies(rds: &[Ready]) -> Vec<AppendEntriesReply> {
    rds.iter()
        .flat_map(|r| r.persisted_messages.iter().chain(&r.messages))
        .filter_map(|m| match &m.body {
            Some(Body::AppendEntriesReply(r)) => Some(*r),
            _ => None,
        })
        .collect()
}

fn snapshot_replies(rds: &[Ready]) -> Vec<InstallSnapshotReply> {
    rds.iter()
        .flat_map(|r| r.persisted_messages.iter().chain(&r.messages))
        .filter_map(|m| match &m.body {
            Some(Body::InstallSnapshotReply(r)) => Some(*r),
            _ => None,
        })
        .collect()
}

/// A delayed, shorter AppendEntries of the current leader arrives after a longer one: the
/// entries it carries all match, so nothing is truncated (§5.3: truncate only on a real
/// conflict), and the reply acknowledges only what this message checked — claiming the
/// whole log would let the leader count entries it never verified.
#[test]
fn delayed_shorter_append_truncates_nothing_and_acks_what_it_checked() {
    let (mut n, mut st) = follower();
    n.step(append(0, entries(1, 10), 0));
    let rds = drive(&mut n, &mut st);
    assert_eq!(append_replies(&rds)[0].match_index, 10);

    n.step(append(2, entries(3, 3), 0));
    let rds = drive(&mut n, &mut st);
    assert_eq!(n.status().last_index, 10, "a matching suffix was truncated");
    assert_eq!(st.state().entries.len(), 10, "storage lost the suffix");
    let r = &append_replies(&rds)[0];
    assert!(r.success);
    assert_eq!(
        r.match_index, 3,
        "the reply claims entries the message did not check"
    );
}

/// InstallSnapshot whose last entry the follower already holds with the same term: the
/// follower keeps the log after it (the paper's Figure 13, step 6), because it may have
/// acknowledged those entries and the leader may have counted them towards a commit.
/// A snapshot at or below the commit index is ignored.
#[test]
fn snapshot_covering_matching_entries_keeps_the_suffix() {
    let (mut n, mut st) = follower();
    n.step(append(0, entries(1, 30), 15));
    drive(&mut n, &mut st);
    assert_eq!(n.status().commit, 15);

    let snap = |index: u64| {
        from_leader(Body::InstallSnapshot(InstallSnapshotRequest {
            term: TERM,
            leader_id: LEADER,
            last_included_index: index,
            last_included_term: TERM,
            offset: 0,
            data: Bytes::from_static(b"image"),
            done: true,
            ..Default::default()
        }))
    };
    n.step(snap(20));
    let rds = drive(&mut n, &mut st);
    let s = n.status();
    assert_eq!(
        s.last_index, 30,
        "the entries after the snapshot were dropped"
    );
    assert_eq!(st.state().entries.len(), 30, "storage dropped the suffix");
    assert!(s.commit >= 20);
    assert!(
        rds.iter().all(|r| r.apply_snapshot.is_none()),
        "the state machine was reset although the log has every entry"
    );
    assert!(snapshot_replies(&rds).iter().any(|r| r.done));

    // An older snapshot (below the commit index) changes nothing.
    n.step(snap(10));
    let rds = drive(&mut n, &mut st);
    assert_eq!(n.status().snapshot_index, 0);
    assert_eq!(n.status().last_index, 30);
    assert!(rds.iter().all(|r| r.apply_snapshot.is_none()));
    assert!(snapshot_replies(&rds).iter().all(|r| r.done));
}

/// The commit index a follower learns is capped by the last entry the message verified
/// (Figure 2: `min(leaderCommit, index of last new entry)`): entries after it may be a
/// stale suffix from an older term that the leader has not overwritten yet.
#[test]
fn commit_is_capped_by_what_the_append_verified() {
    let (mut n, mut st) = follower();
    // Term 1: entries 1..10, of which only 1..3 are committed.
    n.step(append(0, entries(1, 10), 3));
    drive(&mut n, &mut st);
    // A new leader in term 2 whose log agrees only through 4 probes at prev 3 with one
    // entry and a commit index of 8 (entries 5..8 of its own term, on a majority).
    n.step(from_leader(Body::AppendEntries(AppendEntriesRequest {
        term: 2,
        leader_id: LEADER,
        prev_log_index: 3,
        prev_log_term: TERM,
        entries: entries(4, 4),
        leader_commit: 8,
        ..Default::default()
    })));
    let rds = drive(&mut n, &mut st);
    assert_eq!(
        n.status().commit,
        4,
        "committed entries of the stale suffix"
    );
    let applied: Vec<u64> = rds
        .iter()
        .flat_map(|r| r.committed_entries.iter().map(|e| e.index))
        .collect();
    assert!(applied.iter().all(|&i| i <= 4), "applied {applied:?}");
}

/// Messages from an older term are not acted on, but a stale leader or candidate is told
/// the newer term (§5.1), so it steps down without waiting for CheckQuorum.
#[test]
fn stale_term_requests_get_the_newer_term_back() {
    let (mut n, mut st) = follower();
    // Term 3 from the current leader.
    n.step(from_leader(Body::AppendEntries(AppendEntriesRequest {
        term: 3,
        leader_id: LEADER,
        ..Default::default()
    })));
    drive(&mut n, &mut st);
    assert_eq!(n.term(), 3);
    let stale = |body: Body| RaftMessage {
        cluster_id: 0,
        from: 3,
        to: ME,
        body: Some(body),
    };
    n.step(stale(Body::AppendEntries(AppendEntriesRequest {
        term: 2,
        leader_id: 3,
        prev_log_index: 0,
        entries: entries(1, 1),
        leader_commit: 1,
        ..Default::default()
    })));
    n.step(stale(Body::InstallSnapshot(InstallSnapshotRequest {
        term: 2,
        leader_id: 3,
        last_included_index: 5,
        last_included_term: 2,
        offset: 0,
        data: Bytes::from_static(b"old"),
        done: true,
        ..Default::default()
    })));
    n.step(stale(Body::RequestVote(proto::raft::RequestVoteRequest {
        term: 2,
        candidate_id: 3,
        last_log_index: 100,
        last_log_term: 2,
        pre_vote: false,
        ..Default::default()
    })));
    let rds = drive(&mut n, &mut st);
    assert_eq!(
        n.status().last_index,
        0,
        "a stale leader's entries were taken"
    );
    assert_eq!(n.status().snapshot_index, 0);
    let replies: Vec<(u64, Option<u64>)> = rds
        .iter()
        .flat_map(|r| r.persisted_messages.iter().chain(&r.messages))
        .filter(|m| m.to == 3)
        .map(|m| match &m.body {
            Some(Body::AppendEntriesReply(r)) => {
                assert!(!r.success);
                (r.term, Some(1))
            }
            Some(Body::InstallSnapshotReply(r)) => (r.term, Some(2)),
            Some(Body::RequestVoteReply(r)) => {
                assert!(!r.vote_granted, "voted for a stale candidate");
                (r.term, Some(3))
            }
            _ => (0, None),
        })
        .collect();
    assert_eq!(
        replies,
        vec![(3, Some(1)), (3, Some(2)), (3, Some(3))],
        "each stale request gets one reply carrying the newer term"
    );
}

/// InstallSnapshot whose last entry conflicts with the follower's entry at that index
/// (another term): the follower's log after it came from a deposed leader and may differ
/// from the committed history, so the whole log is replaced by the snapshot (Figure 13,
/// step 7: "discard the entire log"), in memory and in storage.
#[test]
fn snapshot_with_a_conflicting_last_entry_discards_the_whole_log() {
    let (mut n, mut st) = follower();
    // Term 1: entries 1..10, of which 1..3 are committed.
    n.step(append(0, entries(1, 10), 3));
    drive(&mut n, &mut st);
    // The leader of term 2 sends a snapshot through 6, whose last entry has term 2.
    n.step(from_leader(Body::InstallSnapshot(InstallSnapshotRequest {
        term: 2,
        leader_id: LEADER,
        last_included_index: 6,
        last_included_term: 2,
        offset: 0,
        data: Bytes::from_static(b"image"),
        done: true,
        ..Default::default()
    })));
    let rds = drive(&mut n, &mut st);
    let s = n.status();
    assert_eq!(
        (s.snapshot_index, s.last_index, s.commit),
        (6, 6, 6),
        "entries 7..10 of term 1 survived a snapshot that conflicts at 6"
    );
    assert_eq!(n.log_term(6), Some(2));
    assert_eq!(n.log_term(7), None);
    assert!(rds.iter().any(|r| r.apply_snapshot.is_some()));
    let stored = st.state();
    assert_eq!(stored.snapshot.index, 6);
    assert!(
        stored.entries.is_empty(),
        "storage kept {:?}",
        stored.entries
    );
    assert!(snapshot_replies(&rds).iter().any(|r| r.done));
}

/// A delayed InstallSnapshot older than what the follower already has (a retransmission
/// of an earlier chunk, or the same leader's earlier snapshot overtaken by a newer one)
/// must change nothing: restoring it would move the follower's snapshot, log and commit
/// index backwards, and the state machine with them (Figure 13: "If existing log entry
/// has same index and term as snapshot's last included entry, retain log entries
/// following it"; a snapshot at or below the commit index carries nothing new).
#[test]
fn older_snapshot_after_a_newer_one_changes_nothing() {
    let (mut n, mut st) = follower();
    let snap = |index: u64, data: &'static [u8]| {
        from_leader(Body::InstallSnapshot(InstallSnapshotRequest {
            term: TERM,
            leader_id: LEADER,
            last_included_index: index,
            last_included_term: TERM,
            offset: 0,
            data: Bytes::from_static(data),
            done: true,
            ..Default::default()
        }))
    };
    n.step(snap(8, b"image through 8"));
    let rds = drive(&mut n, &mut st);
    assert!(rds.iter().any(|r| r.apply_snapshot.is_some()));
    assert_eq!(n.status().snapshot_index, 8);

    // The older one arrives late.
    n.step(snap(5, b"image through 5"));
    let rds = drive(&mut n, &mut st);
    let s = n.status();
    assert_eq!(
        (s.snapshot_index, s.commit, s.last_index),
        (8, 8, 8),
        "an older snapshot moved the follower backwards"
    );
    assert!(
        rds.iter()
            .all(|r| r.apply_snapshot.is_none() && r.snapshot.is_none()),
        "an older snapshot was handed to the state machine or to storage"
    );
    assert_eq!(st.state().snapshot.index, 8);
    assert_eq!(n.snapshot_data().as_ref(), b"image through 8");
    // It is still acknowledged as done, so the leader stops resending it.
    assert!(snapshot_replies(&rds).iter().any(|r| r.done));
}
