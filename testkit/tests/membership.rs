//! Membership changes (single-server, thesis §4.1), learners and leadership transfer
//! (thesis §3.10): deterministic cases, most ported from etcd-io/raft `raft_test.go` and
//! tikv/raft-rs `harness/tests/integration_cases/test_raft.rs` (each names its source),
//! the bad-input refusals of issue 12, and a seeded chaos run that changes the
//! configuration at random under crashes and partitions while the simulator checks the
//! safety properties against the configuration in effect after every event.
//!
//! Ports follow the behaviour, not the code: where raftkv differs by design (a change takes
//! effect when appended, not when applied as in etcd), the comment says so.

use bytes::Bytes;
use proto::raft::raft_message::Body;
use proto::raft::{AppendEntriesReply, AppendEntriesRequest, RequestVoteReply};
use raft::{
    ConfChange, ConfChangeType, ConfState, Config, Entry, EntryType, Error, InitialState,
    MembershipError, RaftMessage, RawNode, Role, Snapshot,
};
use testkit::sim::{
    NetConfig, Sim, conf_of, default_config, rand_cmd, seed_from_env, u64_from_env,
};

// ------------------------------------------------------------------ helpers

fn cc(t: ConfChangeType, id: u64) -> ConfChange {
    ConfChange {
        change_type: t as i32,
        node_id: id,
        context: Default::default(),
    }
}
fn add_learner(id: u64) -> ConfChange {
    cc(ConfChangeType::ConfChangeAddLearner, id)
}
fn promote(id: u64) -> ConfChange {
    cc(ConfChangeType::ConfChangePromoteLearner, id)
}
fn remove(id: u64) -> ConfChange {
    cc(ConfChangeType::ConfChangeRemoveNode, id)
}

/// A RawNode with this configuration, PreVote off (elections in one step).
fn raw(id: u64, voters: &[u64], learners: &[u64]) -> RawNode {
    let mut cfg = Config::new(id, voters.to_vec());
    cfg.pre_vote = false;
    let state = InitialState {
        snapshot: Snapshot {
            conf: ConfState {
                voters: voters.to_vec(),
                learners: learners.to_vec(),
            },
            ..Default::default()
        },
        ..Default::default()
    };
    RawNode::new(cfg, state).expect("valid config")
}

/// Handles every Ready as a driver would (storage is trusted); returns what was sent.
fn drain(n: &mut RawNode) -> Vec<RaftMessage> {
    let mut out = Vec::new();
    while n.has_ready() {
        let rd = n.ready();
        out.extend(rd.messages.iter().cloned());
        out.extend(rd.persisted_messages.iter().cloned());
        n.advance(&rd);
    }
    out
}

fn msg(from: u64, to: u64, body: Body) -> RaftMessage {
    RaftMessage {
        cluster_id: 0,
        from,
        to,
        body: Some(body),
    }
}

/// Ticks `n` until it campaigns; returns the vote requests it sent.
fn campaign(n: &mut RawNode) -> Vec<RaftMessage> {
    for _ in 0..100 {
        n.tick();
        if n.status().role != Role::Follower {
            return drain(n);
        }
    }
    panic!("n{} never campaigned", n.id());
}

fn grant(n: &mut RawNode, from: u64) {
    let term = n.term();
    n.step(msg(
        from,
        n.id(),
        Body::RequestVoteReply(RequestVoteReply {
            term,
            vote_granted: true,
            pre_vote: false,
        }),
    ));
    drain(n);
}

/// Follower `from` acknowledges the leader's log through `index`.
fn ack(n: &mut RawNode, from: u64, index: u64) {
    let term = n.term();
    n.step(msg(
        from,
        n.id(),
        Body::AppendEntriesReply(AppendEntriesReply {
            term,
            success: true,
            match_index: index,
            last_log_index: index,
            ..Default::default()
        }),
    ));
    drain(n);
}

/// Node 1 leading voters `voters` (and learners), its no-op committed.
fn leader(voters: &[u64], learners: &[u64]) -> RawNode {
    let mut n = raw(1, voters, learners);
    campaign(&mut n);
    for &v in voters.iter().filter(|&&v| v != 1) {
        grant(&mut n, v);
    }
    assert!(n.is_leader());
    let last = n.status().last_index;
    for &v in voters.iter().chain(learners).filter(|&&v| v != 1) {
        ack(&mut n, v, last);
    }
    assert_eq!(n.status().commit, last, "no-op committed");
    n
}

fn refused(r: raft::Result<(u64, u64)>) -> MembershipError {
    match r {
        Err(Error::Membership(e)) => e,
        other => panic!("expected a membership refusal, got {other:?}"),
    }
}

/// A simulated cluster of `n` node slots whose bootstrap voters are `voters`; the others
/// start as non-members waiting to be added.
fn sim(n: usize, voters: &'static [u64], seed: u64) -> Sim {
    Sim::with_config(n, seed, move |id, _| default_config(id, voters.to_vec()))
}

fn leader_of(s: &mut Sim) -> u64 {
    s.check_one_leader()
}

/// Runs until node `id`'s commit index reaches `index` (at most `ms`).
fn run_until_committed(s: &mut Sim, id: u64, index: u64, ms: u64) {
    let t0 = s.now;
    while s.raw(id).is_none_or(|r| r.status().commit < index) {
        if s.now - t0 > ms {
            s.fail(&format!("n{id} did not commit {index} within {ms} ms"));
        }
        s.run_for(20);
    }
}

/// Proposes `c` on the current leader, retrying while it is refused for a transient
/// reason (no-op or previous change not yet committed), and waits for it to commit.
fn change(s: &mut Sim, c: ConfChange) -> u64 {
    let t0 = s.now;
    loop {
        let l = leader_of(s);
        match s.propose_conf_change(l, c.clone()) {
            Some(Ok((index, _))) => {
                run_until_committed(s, l, index, 5_000);
                return index;
            }
            Some(Err(Error::Membership(
                MembershipError::TermNotCommitted { .. } | MembershipError::ChangePending { .. },
            ))) => s.run_for(50),
            other => s.fail(&format!("{c:?} on n{l}: {other:?}")),
        }
        if s.now - t0 > 10_000 {
            s.fail(&format!("{c:?} not accepted within 10 s"));
        }
    }
}

// ------------------------------------------------------------------ bad input

/// Issue 12's bad input: adding an existing id, removing the last voter, promoting a
/// non-member (and a voter), two changes at once, a transfer to a non-voter or an unknown
/// id. Each is refused with a typed error and changes nothing.
#[test]
fn bad_membership_input_is_refused_and_changes_nothing() {
    let mut n = leader(&[1, 2, 3], &[4]);
    let before = (n.conf_state().clone(), n.status().last_index);
    let unchanged = |n: &RawNode| {
        assert_eq!(
            (n.conf_state().clone(), n.status().last_index),
            before,
            "a refusal changed something"
        );
    };
    assert_eq!(
        refused(n.propose_conf_change(add_learner(2))),
        MembershipError::AlreadyMember { id: 2 }
    );
    assert_eq!(
        refused(n.propose_conf_change(add_learner(4))),
        MembershipError::AlreadyMember { id: 4 }
    );
    assert_eq!(
        refused(n.propose_conf_change(promote(9))),
        MembershipError::NotMember { id: 9 }
    );
    assert_eq!(
        refused(n.propose_conf_change(promote(3))),
        MembershipError::NotLearner { id: 3 }
    );
    assert_eq!(
        refused(n.propose_conf_change(remove(9))),
        MembershipError::NotMember { id: 9 }
    );
    assert_eq!(
        refused(n.propose_conf_change(add_learner(0))),
        MembershipError::ReservedId
    );
    for (target, want) in [
        (4, MembershipError::NotVoter { id: 4 }),
        (9, MembershipError::NotMember { id: 9 }),
    ] {
        match n.transfer_leader(target) {
            Err(Error::Membership(e)) => assert_eq!(e, want),
            other => panic!("transfer to {target}: {other:?}"),
        }
        assert_eq!(n.transfer_target(), None);
    }
    unchanged(&n);
    // The messages say what to do.
    let text = Error::Membership(MembershipError::LastVoter { id: 1 }).to_string();
    assert!(
        text.contains("last voter") && text.contains("add"),
        "{text}"
    );

    // Two changes at once (etcd TestStepIgnoreConfig, raft-rs test_step_ignore_config):
    // the second is refused while the first is uncommitted, accepted once it commits.
    let (i, _) = n.propose_conf_change(add_learner(5)).expect("first change");
    drain(&mut n);
    assert!(n.conf_state().is_learner(5), "in effect once appended");
    let second = n.status().last_index;
    assert_eq!(
        refused(n.propose_conf_change(add_learner(6))),
        MembershipError::ChangePending { index: i }
    );
    assert_eq!(n.status().last_index, second, "nothing appended");
    ack(&mut n, 2, i);
    assert_eq!(n.status().commit, i);
    n.propose_conf_change(add_learner(6))
        .expect("accepted once the first committed");

    // Removing the last voter.
    let mut solo = leader(&[1], &[]);
    assert_eq!(
        refused(solo.propose_conf_change(remove(1))),
        MembershipError::LastVoter { id: 1 }
    );
    assert_eq!(solo.conf_state().voters, vec![1]);
}

/// The raft-dev 2015 fix (etcd TestNewLeaderPendingConfig is the related etcd rule): a
/// new leader starts no change before an entry of its own term (its no-op) commits, or
/// changes of two leaders could be decided by disjoint majorities.
#[test]
fn a_new_leader_changes_nothing_before_its_noop_commits() {
    let mut n = raw(1, &[1, 2, 3], &[]);
    campaign(&mut n);
    grant(&mut n, 2);
    assert!(n.is_leader());
    let term = n.term();
    assert_eq!(
        refused(n.propose_conf_change(add_learner(4))),
        MembershipError::TermNotCommitted { term }
    );
    assert!(!n.conf_state().contains(4));
    let noop = n.status().last_index;
    ack(&mut n, 2, noop);
    n.propose_conf_change(add_learner(4))
        .expect("accepted after the no-op commits");
}

// ------------------------------------------------------------------ learners

/// etcd TestLearnerCampaign / TestLearnerElectionTimeout, raft-rs
/// test_learner_election_timeout: a learner never campaigns, and ignores TimeoutNow.
#[test]
fn a_learner_never_campaigns() {
    let mut n = raw(2, &[1], &[2]);
    for _ in 0..200 {
        n.tick();
    }
    assert_eq!((n.status().role, n.term()), (Role::Follower, 0));
    assert!(drain(&mut n).is_empty(), "no vote requests");
    // Hear from the leader, then get a TimeoutNow: still no campaign.
    n.step(msg(
        1,
        2,
        Body::AppendEntries(AppendEntriesRequest {
            term: 1,
            leader_id: 1,
            heartbeat: true,
            ..Default::default()
        }),
    ));
    n.step(msg(
        1,
        2,
        Body::TimeoutNow(proto::raft::TimeoutNow { term: 1 }),
    ));
    assert_eq!(n.status().role, Role::Follower);
    assert_eq!(n.term(), 1);
}

/// A learner's granted vote does not count (thesis §4.2.1; etcd counts votes only from
/// voters too — TestLearnerCanVote is about the learner answering, which ours does).
#[test]
fn a_learners_vote_does_not_count() {
    let mut n = raw(1, &[1, 2, 3], &[4, 5]);
    let asked: Vec<u64> = campaign(&mut n).iter().map(|m| m.to).collect();
    assert_eq!(asked, vec![2, 3], "only voters are asked");
    grant(&mut n, 4);
    grant(&mut n, 5);
    assert_eq!(
        n.status().role,
        Role::Candidate,
        "two learner votes elect nobody"
    );
    grant(&mut n, 2);
    assert!(n.is_leader());
}

/// etcd TestLearnerLogReplication, raft-rs test_learner_log_replication: a learner gets
/// the log but does not count toward commit.
#[test]
fn a_learner_gets_the_log_but_does_not_count_toward_commit() {
    let mut n = leader(&[1, 2, 3], &[4]);
    let (i, _) = n.propose(Bytes::from_static(b"x")).expect("propose");
    let sent = drain(&mut n);
    assert!(
        sent.iter()
            .any(|m| m.to == 4 && matches!(m.body, Some(Body::AppendEntries(_)))),
        "the learner is replicated to"
    );
    ack(&mut n, 4, i);
    assert!(n.status().commit < i, "a learner's ack committed {i}");
    ack(&mut n, 2, i);
    assert_eq!(n.status().commit, i);
}

/// A learner that never acknowledged an append (not started, or unreachable) is not
/// promoted, even while the leader's log is shorter than `max_learner_lag`: it would be a
/// voter that cannot vote. Once it acknowledges, the same promotion is taken.
#[test]
fn a_learner_that_never_answered_is_not_promoted() {
    let mut n = raw(1, &[1, 2, 3], &[4]);
    campaign(&mut n);
    grant(&mut n, 2);
    assert!(n.is_leader());
    let last = n.status().last_index;
    ack(&mut n, 2, last);
    ack(&mut n, 3, last);
    assert!(last < 1000, "well within the default lag limit");
    match refused(n.propose_conf_change(promote(4))) {
        MembershipError::LearnerLagging {
            id: 4, matched: 0, ..
        } => {}
        other => panic!("promoting a silent learner: {other}"),
    }
    assert!(n.conf_state().is_learner(4), "nothing changed");
    ack(&mut n, 4, last);
    n.propose_conf_change(promote(4))
        .expect("promoted once it acknowledged the log");
    assert!(n.conf_state().is_voter(4));
}

/// etcd TestLearnerPromotion, raft-rs test_learner_promotion: add a learner, let it catch
/// up, promote it; it then votes, counts, and can lead. Promotion is refused while it lags
/// by more than `max_learner_lag` entries (issue 12).
#[test]
fn a_learner_catches_up_is_promoted_and_can_lead() {
    let seed = seed_from_env(12);
    let mut s = Sim::with_config(4, seed, |id, _| {
        let mut c = default_config(id, vec![1, 2, 3]);
        c.max_learner_lag = 5;
        c
    });
    leader_of(&mut s);
    s.disconnect(4);
    change(&mut s, add_learner(4));
    for _ in 0..10 {
        let c = rand_cmd(&mut s);
        s.one(c, 3, true);
    }
    let l = leader_of(&mut s);
    match s.propose_conf_change(l, promote(4)) {
        Some(Err(Error::Membership(MembershipError::LearnerLagging {
            id: 4, max_lag: 5, ..
        }))) => {}
        other => s.fail(&format!("promoting a lagging learner: {other:?}")),
    }
    assert!(
        conf_of(s.raw(l).expect("up")).1.contains(&4),
        "still a learner"
    );
    s.connect(4);
    s.run_for(2_000);
    let applied = s.last_applied(4).unwrap_or(0);
    assert!(applied >= 12, "the learner caught up (applied {applied})");
    assert_eq!(s.raw(4).map(|r| r.term()), s.raw(l).map(|r| r.term()));
    change(&mut s, promote(4));
    // Now a voter: with two of the old voters gone, 4 is needed for a majority.
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&x| x != l).collect();
    s.disconnect(others[0]);
    let c = rand_cmd(&mut s);
    s.one(c, 3, true);
    // It can lead: hand leadership over.
    let l = leader_of(&mut s);
    assert_eq!(s.transfer_leader(l, 4).map(|r| r.is_ok()), Some(true));
    s.run_for(2_000);
    assert_eq!(leader_of(&mut s), 4, "the promoted learner leads");
}

/// etcd TestLearnerReceiveSnapshot (and issue 12): a learner added after compaction gets
/// the snapshot, with the configuration in it; a restarted node restores the
/// configuration from its snapshot.
#[test]
fn the_configuration_travels_in_snapshots_and_survives_restarts() {
    let seed = seed_from_env(7);
    let mut s = sim(4, &[1, 2, 3], seed);
    s.snapshot_every = Some(5);
    leader_of(&mut s);
    change(&mut s, add_learner(4));
    s.crash(4);
    for _ in 0..20 {
        let c = rand_cmd(&mut s);
        s.one(c, 3, true);
    }
    let l = leader_of(&mut s);
    let snap_conf = s.storage(l).state().snapshot.conf;
    assert_eq!(
        (snap_conf.voters.clone(), snap_conf.learners.clone()),
        (vec![1, 2, 3], vec![4]),
        "the leader's snapshot records the configuration"
    );
    // 4 restarts with an empty log and its bootstrap list without itself, and gets the
    // configuration from the snapshot the leader sends.
    s.restart_with_empty_disk(4);
    s.run_for(3_000);
    let r4 = s.raw(4).expect("up");
    assert!(r4.status().snapshot_index > 0, "4 got a snapshot");
    assert_eq!(r4.snapshot_conf_state(), &snap_conf);
    assert!(r4.conf_state().is_learner(4));
    // A voter restarts: its configuration comes back from its own storage.
    let f = [1, 2, 3].into_iter().find(|&x| x != l).expect("a follower");
    s.crash(f);
    s.restart(f);
    assert!(s.raw(f).expect("up").conf_state().is_learner(4));
}

// ------------------------------------------------------------------ removal

/// etcd TestCommitAfterRemoveNode, raft-rs test_commit_after_remove_node: removing a
/// voter shrinks the quorum. In raftkv the new configuration counts as soon as the leader
/// appends the change (thesis §4.1), so with voters {1, 2} the removal of 2 and a
/// command after it commit on the leader alone; etcd waits until the change is applied.
#[test]
fn removing_a_voter_shrinks_the_quorum_at_once() {
    let mut n = leader(&[1, 2], &[]);
    let (ri, _) = n.propose_conf_change(remove(2)).expect("remove 2");
    let (ci, _) = n.propose(Bytes::from_static(b"hello")).expect("propose");
    drain(&mut n);
    assert_eq!(n.conf_state().voters, vec![1]);
    assert!(
        n.status().commit >= ci && ci > ri,
        "committed by the leader alone"
    );
}

/// etcd TestRemoveNode / raft-rs test_remove_node, for the leader itself (thesis
/// §4.2.2): a leader removing itself does not count its own copy, so with voters {2, 3}
/// left the removal commits only once both hold it; then it steps down and never
/// campaigns again.
#[test]
fn a_leader_removing_itself_does_not_count_itself() {
    let mut n = leader(&[1, 2, 3], &[]);
    let (i, _) = n.propose_conf_change(remove(1)).expect("remove the leader");
    drain(&mut n);
    assert_eq!(n.conf_state().voters, vec![2, 3]);
    ack(&mut n, 2, i);
    assert!(n.status().commit < i, "committed counting its own copy");
    assert!(n.is_leader(), "leads until the removal commits");
    ack(&mut n, 3, i);
    assert_eq!(n.status().commit, i);
    assert!(!n.is_leader(), "stepped down once the removal committed");
    for _ in 0..100 {
        n.tick();
    }
    assert_eq!(n.status().role, Role::Follower, "a removed node campaigned");
    assert!(drain(&mut n).is_empty());
}

/// A change takes effect when appended and is rolled back if that entry is truncated
/// (thesis §4.1: "a log entry for a configuration change can be removed ... a server must
/// be prepared to fall back to the previous configuration").
#[test]
fn a_truncated_change_is_rolled_back() {
    let mut n = raw(2, &[1, 2, 3], &[]);
    let e = |index, term, t: EntryType, data: Bytes| Entry {
        term,
        index,
        entry_type: t as i32,
        data,
    };
    let c = |x: ConfChange| Bytes::from(proto::Message::encode_to_vec(&x));
    let append = |term, leader, prev, prev_term, entries| {
        msg(
            leader,
            2,
            Body::AppendEntries(AppendEntriesRequest {
                term,
                leader_id: leader,
                prev_log_index: prev,
                prev_log_term: prev_term,
                entries,
                ..Default::default()
            }),
        )
    };
    // Leader 1 of term 1: no-op, then "add learner 7" and "remove 3" (uncommitted).
    n.step(append(
        1,
        1,
        0,
        0,
        vec![
            e(1, 1, EntryType::EntryNoop, Bytes::new()),
            e(2, 1, EntryType::EntryConfChange, c(add_learner(7))),
        ],
    ));
    drain(&mut n);
    assert!(n.conf_state().is_learner(7), "in effect once appended");
    assert_eq!(n.pending_conf_index(), 2);
    // Leader 3 of term 2 never had index 2: its entry replaces it.
    n.step(append(
        2,
        3,
        1,
        1,
        vec![e(2, 2, EntryType::EntryNoop, Bytes::new())],
    ));
    drain(&mut n);
    assert!(!n.conf_state().contains(7), "rolled back with its entry");
    assert_eq!(n.conf_state().voters, vec![1, 2, 3]);
    assert_eq!(n.pending_conf_index(), 0);
}

/// etcd TestRemoveNode / raft-rs test_remove_node with the leader itself removed
/// (thesis §4.2.2): it keeps leading, without counting itself, until the change commits,
/// then steps down; it never campaigns again; the rest elect a leader.
#[test]
fn a_removed_leader_steps_down_once_the_change_commits_and_stays_quiet() {
    let seed = seed_from_env(3);
    let mut s = sim(3, &[1, 2, 3], seed);
    let l = leader_of(&mut s);
    let term = s.raw(l).expect("up").term();
    let index = change(&mut s, remove(l));
    assert!(!s.raw(l).expect("up").is_leader(), "stepped down at commit");
    assert!(s.raw(l).expect("up").status().commit >= index);
    let elections = s.raw(l).expect("up").stats().elections;
    s.run_for(5_000);
    let l2 = leader_of(&mut s);
    assert_ne!(l2, l);
    assert!(s.raw(l2).expect("up").term() > term);
    let c = rand_cmd(&mut s);
    s.one(c, 2, true);
    assert_eq!(
        s.raw(l).expect("up").stats().elections,
        elections,
        "the removed node campaigned"
    );
}

/// A voter removed while cut off never learns it was removed and keeps trying to
/// campaign: PreVote and the lease keep it from disrupting the cluster (issue 12).
#[test]
fn a_removed_node_that_missed_its_removal_does_not_disrupt() {
    let seed = seed_from_env(5);
    let mut s = sim(3, &[1, 2, 3], seed);
    let l = leader_of(&mut s);
    let gone = [1, 2, 3].into_iter().find(|&x| x != l).expect("follower");
    s.disconnect(gone);
    change(&mut s, remove(gone));
    s.connect(gone);
    let term = s.raw(l).expect("up").term();
    s.run_for(10_000);
    assert_eq!(leader_of(&mut s), l, "the leader kept its place");
    assert_eq!(s.raw(l).expect("up").term(), term, "no term bump");
    assert!(
        s.raw(gone).expect("up").status().role != Role::Leader,
        "the removed node took over"
    );
}

// ------------------------------------------------------------------ leadership transfer

/// etcd TestLeaderTransferToUpToDateNode / TestLeaderTransferWithCheckQuorum, raft-rs
/// test_leader_transfer_to_up_to_date_node: the target takes over at once even though
/// every voter is in its leader lease (CheckQuorum on) and PreVote is on.
#[test]
fn transfer_to_an_up_to_date_voter() {
    let seed = seed_from_env(21);
    let mut s = Sim::new(3, seed);
    let l = leader_of(&mut s);
    let c = rand_cmd(&mut s);
    s.one(c, 3, true);
    let term = s.raw(l).expect("up").term();
    let target = [1, 2, 3].into_iter().find(|&x| x != l).expect("follower");
    assert_eq!(s.transfer_leader(l, target).map(|r| r.is_ok()), Some(true));
    // Well within one election timeout (10 ticks of 50 ms).
    s.run_for(300);
    let t = s.raw(target).expect("up");
    assert!(t.is_leader(), "n{target} did not take over");
    assert_eq!(t.term(), term + 1, "one election, no PreVote round lost");
    let c = rand_cmd(&mut s);
    s.one(c, 3, true);
}

/// etcd TestLeaderTransferToSlowFollower, raft-rs test_leader_transfer_to_slow_follower:
/// the leader first brings the target's log up to date, then hands over.
#[test]
fn transfer_to_a_lagging_voter_catches_it_up_first() {
    let seed = seed_from_env(22);
    let mut s = Sim::new(3, seed);
    let l = leader_of(&mut s);
    let target = [1, 2, 3].into_iter().find(|&x| x != l).expect("follower");
    s.disconnect(target);
    for _ in 0..5 {
        let c = rand_cmd(&mut s);
        s.one(c, 2, true);
    }
    let last = s.raw(l).expect("up").status().last_index;
    s.connect(target);
    s.transfer_leader(l, target);
    s.run_for(1_000);
    let t = s.raw(target).expect("up");
    assert!(t.is_leader(), "n{target} did not take over");
    assert!(t.status().commit > last);
}

/// etcd TestLeaderTransferTimeout and TestLeaderTransferIgnoreProposal, raft-rs
/// test_leader_transfer_timeout / test_leader_transfer_ignore_proposal: proposals are
/// refused while a transfer is under way; a target that cannot take over makes the
/// leader abandon the transfer after an election timeout and lead on.
#[test]
fn an_unreachable_target_makes_the_transfer_time_out() {
    let seed = seed_from_env(23);
    let mut s = Sim::new(3, seed);
    let l = leader_of(&mut s);
    let target = [1, 2, 3].into_iter().find(|&x| x != l).expect("follower");
    s.disconnect(target);
    assert_eq!(s.transfer_leader(l, target).map(|r| r.is_ok()), Some(true));
    assert_eq!(s.raw(l).expect("up").transfer_target(), Some(target));
    let before = s.raw(l).expect("up").status().last_index;
    assert!(
        s.start(l, Bytes::from_static(b"x")).is_none(),
        "a proposal went in"
    );
    assert_eq!(s.raw(l).expect("up").status().last_index, before);
    // The refusal is typed and names the target.
    s.run_for(1_100); // > election_tick ticks of 50 ms
    let r = s.raw(l).expect("up");
    assert!(r.is_leader(), "the leader gave up leading");
    assert_eq!(r.transfer_target(), None, "the transfer was not abandoned");
    assert_eq!(r.stats().transfers_abandoned, 1);
    assert!(
        s.start(l, Bytes::from_static(b"y")).is_some(),
        "proposals resume"
    );
}

/// etcd TestLeaderTransferRemoveNode: removing the transfer's target cancels it.
#[test]
fn removing_the_transfer_target_cancels_the_transfer() {
    let mut n = leader(&[1, 2, 3], &[]);
    n.transfer_leader(3).expect("transfer");
    assert_eq!(n.transfer_target(), Some(3));
    // (A change is refused during the transfer, like any proposal.)
    assert!(matches!(
        n.propose_conf_change(remove(3)),
        Err(Error::TransferInProgress { target: 3 })
    ));
    for _ in 0..10 {
        n.tick();
    }
    drain(&mut n);
    assert_eq!(
        n.transfer_target(),
        None,
        "abandoned after an election timeout"
    );
    n.propose_conf_change(remove(3)).expect("remove");
    n.transfer_leader(2).expect("transfer to 2");
    n.tick();
    assert_eq!(n.transfer_target(), Some(2));
}

/// etcd TestTransferNonMember: a TimeoutNow sent to a node that is not a voter does
/// nothing (see also `a_learner_never_campaigns`).
#[test]
fn timeout_now_to_a_non_member_is_ignored() {
    let mut n = raw(4, &[1, 2, 3], &[]);
    n.step(msg(
        2,
        4,
        Body::AppendEntries(AppendEntriesRequest {
            term: 1,
            leader_id: 2,
            heartbeat: true,
            ..Default::default()
        }),
    ));
    n.step(msg(
        2,
        4,
        Body::TimeoutNow(proto::raft::TimeoutNow { term: 1 }),
    ));
    assert_eq!((n.status().role, n.term()), (Role::Follower, 1));
}

// ------------------------------------------------------------------ chaos

/// Random membership changes and transfers under crashes, partitions and an unreliable
/// network, on 5 node slots that start as voters {1, 2, 3}; the simulator checks the
/// safety properties against the configuration in effect after every event. At the end
/// the network heals and every node restarts: the cluster must elect a leader and commit.
/// `SEED=…` replays one seed; `SEEDS=n` sets how many (default 200: about 20 simulated
/// seconds each, well under a second of CPU in all).
#[test]
fn chaos_with_membership_changes() {
    let one = u64_from_env("SEED");
    let seeds: Vec<u64> = match one {
        Some(s) => vec![s],
        None => (0..u64_from_env("SEEDS").unwrap_or(200))
            .map(|i| 9_000 + i)
            .collect(),
    };
    // accepted: changes, transfers; refused: changes, transfers; crashes; partitions;
    // the final commit index summed over seeds; simulated events
    let mut totals = [0u64; 8];
    for seed in seeds {
        let t = chaos_run(seed);
        for (a, b) in totals.iter_mut().zip(t) {
            *a += b;
        }
    }
    eprintln!(
        "membership chaos: {} changes and {} transfers accepted, {} changes and {} transfers \
         refused, {} crashes, {} partitions; {} entries committed in all; {} events",
        totals[0], totals[1], totals[2], totals[3], totals[4], totals[5], totals[6], totals[7]
    );
    assert!(totals[0] > 0 && totals[1] > 0, "the chaos changed nothing");
}

fn chaos_run(seed: u64) -> [u64; 8] {
    const N: u64 = 5;
    let mut s = sim(N as usize, &[1, 2, 3], seed);
    s.net = NetConfig::unreliable();
    s.snapshot_every = Some(20);
    let mut t = [0u64; 8];
    for _step in 0..120 {
        let ms = s.rng.range(50, 250);
        s.run_for(ms);
        let leader = (1..=N).find(|&i| s.raw(i).is_some_and(|r| r.is_leader()));
        let roll = s.rng.range(0, 100);
        let pick = s.rng.range(1, N + 1);
        match (roll, leader) {
            (0..=29, Some(l)) => {
                let c = rand_cmd(&mut s);
                s.start(l, c);
            }
            (30..=54, Some(l)) => {
                let (voters, learners) = conf_of(s.raw(l).expect("leader is up"));
                let c = if learners.contains(&pick) && s.rng.chance(0.6) {
                    promote(pick)
                } else if voters.contains(&pick) || learners.contains(&pick) {
                    remove(pick)
                } else {
                    add_learner(pick)
                };
                match s.propose_conf_change(l, c.clone()) {
                    Some(Ok(_)) => t[0] += 1,
                    Some(Err(_)) => t[2] += 1,
                    None => {}
                }
            }
            (55..=64, Some(l)) => match s.transfer_leader(l, pick) {
                Some(Ok(())) => t[1] += 1,
                Some(Err(_)) => t[3] += 1,
                None => {}
            },
            (65..=76, _) => {
                if s.is_up(pick) {
                    s.crash(pick);
                    t[4] += 1;
                } else {
                    s.restart(pick);
                }
            }
            (77..=86, _) => {
                let cut: Vec<u64> = (1..=N).filter(|_| s.rng.chance(0.4)).collect();
                let rest: Vec<u64> = (1..=N).filter(|i| !cut.contains(i)).collect();
                s.partition(&[&cut, &rest]);
                t[5] += 1;
            }
            (87..=94, _) => s.unblock_all(),
            _ => {
                for i in 1..=N {
                    if !s.is_up(i) {
                        s.restart(i);
                    }
                }
            }
        }
    }
    // Heal: everything up, connected and reliable; the cluster must make progress.
    s.unblock_all();
    s.net = NetConfig::reliable();
    for i in 1..=N {
        s.connect(i);
        if !s.is_up(i) {
            s.restart(i);
        }
    }
    let t0 = s.now;
    loop {
        s.run_for(100);
        if let Some(l) = (1..=N).find(|&i| s.raw(i).is_some_and(|r| r.is_leader()))
            && let Some((index, _)) = s.start(l, Bytes::from_static(b"end"))
        {
            let t1 = s.now;
            while s
                .raw(l)
                .is_some_and(|r| r.is_leader() && r.status().commit < index)
                && s.now - t1 < 3_000
            {
                s.run_for(20);
            }
            if s.raw(l).is_some_and(|r| r.status().commit >= index) {
                t[6] = index;
                t[7] = s.steps;
                break;
            }
        }
        if s.now - t0 > 20_000 {
            for i in 1..=N {
                if let Some(r) = s.raw(i) {
                    eprintln!("  n{i} configuration (voters, learners): {:?}", conf_of(r));
                }
            }
            s.fail("no progress within 20 s after healing");
        }
    }
    t
}
