//! The recorder behind `raft-viz` watches without touching: a recorded run is the same run
//! as an unrecorded one, and what it recorded agrees with the nodes' real state.

use std::collections::BTreeMap;

use raft::Role;
use testkit::chaos::{Faults, run_seed};
use testkit::record::{self, Fate, Recording, What};
use testkit::sim::{NetConfig, Sim, rand_cmd};

/// A short run with every kind of fault the simulator has, returning its trace lines and
/// counters; `check` sees the cluster at the end.
fn workload(seed: u64, check: impl FnOnce(&Sim)) -> (Vec<String>, [u64; 4]) {
    let mut s = Sim::new(5, seed);
    s.trace_log = Some(Vec::new());
    s.net = NetConfig {
        duplicate: 0.05,
        ..NetConfig::unreliable()
    };
    s.snapshot_every = Some(7);
    for round in 0..40u64 {
        let ms = s.rng.range(20, 300);
        s.run_for(ms);
        let leader = (1..=5).find(|&i| s.raw(i).is_some_and(|r| r.is_leader()));
        if let Some(l) = leader {
            let c = rand_cmd(&mut s);
            s.start(l, c);
            s.read_index(l, round);
        }
        match round % 10 {
            2 => s.crash(1 + round % 5),
            4 => s.partition(&[&[1, 2], &[3, 4, 5]]),
            6 => s.unblock_all(),
            7 => s.disconnect(2),
            8 => s.connect(2),
            9 => {
                for i in 1..=5 {
                    if !s.is_up(i) {
                        s.restart(i);
                    }
                }
            }
            _ => {}
        }
    }
    s.net = NetConfig::reliable();
    s.unblock_all();
    for i in 1..=5 {
        s.connect(i);
        if !s.is_up(i) {
            s.restart(i);
        }
    }
    let c = rand_cmd(&mut s);
    s.one(c, 5, true);
    check(&s);
    let trace = s.trace_log.take().unwrap_or_default();
    (trace, [s.now, s.steps, s.msgs, s.bytes])
}

#[test]
fn a_recorded_run_is_the_same_run() {
    for seed in [1, 2, 3] {
        let plain = workload(seed, |_| {});
        let (out, recs) = record::record(|| workload(seed, |_| {}));
        let recorded = out.expect("the recorded run passes like the plain one");
        assert_eq!(recs.len(), 1, "one Sim, one recording");
        assert_eq!(
            plain.1, recorded.1,
            "seed {seed}: time, steps, messages, bytes"
        );
        assert_eq!(plain.0, recorded.0, "seed {seed}: the event trace");
        assert!(!recs[0].events.is_empty());
    }
    // The chaos test's own runs too (simulated time is the one figure they return).
    for seed in [5, 6] {
        let plain = run_seed(seed, &Faults::all());
        let (out, recs) = record::record(|| run_seed(seed, &Faults::all()));
        assert_eq!(out.expect("chaos seed passes"), plain, "chaos seed {seed}");
        assert_eq!(recs.len(), 1);
    }
}

/// Replays the recorded Append / Snapshot events of one node into (snapshot index, log).
fn replay_log(rec: &Recording, id: u64) -> (u64, BTreeMap<u64, u64>) {
    let mut snap = 0;
    let mut log = BTreeMap::new();
    for e in &rec.events {
        match &e.what {
            What::Append { id: n, entries } if *n == id => {
                let from = entries[0].index;
                log.retain(|&i, _| i < from);
                for en in entries {
                    log.insert(en.index, en.term);
                }
            }
            What::Snapshot { id: n, index, term } if *n == id => {
                if log.get(index) != Some(term) {
                    log.clear();
                } else {
                    log.retain(|&i, _| i > *index);
                }
                snap = *index;
            }
            What::Wipe { id: n } if *n == id => {
                log.clear();
                snap = 0;
            }
            _ => {}
        }
    }
    (snap, log)
}

#[test]
fn the_recording_agrees_with_the_nodes() {
    let mut finals = Vec::new();
    let (out, recs) = record::record(|| {
        workload(11, |s| {
            for id in 1..=5u64 {
                let r = s.raw(id).expect("all up at the end");
                let st = r.status();
                let log: BTreeMap<u64, u64> = (st.snapshot_index + 1..=st.last_index)
                    .map(|i| (i, r.log_term(i).expect("entry in the log")))
                    .collect();
                finals.push((id, st.role, st.term, st.snapshot_index, log, st.commit));
            }
        })
    });
    out.expect("run passes");
    let rec = &recs[0];
    assert_eq!(rec.nodes, 5);
    // Times never go backwards.
    assert!(rec.events.windows(2).all(|w| w[0].t <= w[1].t));
    // Every message sent is delivered, lost, or still in flight; each has one Send event
    // and at most one Deliver or Lose event.
    let mut sends = vec![0u32; rec.messages.len()];
    let mut ends = vec![0u32; rec.messages.len()];
    for e in &rec.events {
        match e.what {
            What::Send { msg } => sends[msg] += 1,
            What::Deliver { msg } => {
                ends[msg] += 1;
                assert_eq!(rec.messages[msg].fate, Fate::Delivered(e.t));
            }
            What::Lose { msg } => {
                ends[msg] += 1;
                assert!(matches!(rec.messages[msg].fate, Fate::Lost(t, _) if t == e.t));
            }
            _ => {}
        }
    }
    assert!(sends.iter().all(|&c| c == 1), "one Send event per message");
    for (m, &c) in rec.messages.iter().zip(&ends) {
        assert_eq!(c, u32::from(m.fate != Fate::InFlight), "{m:?}");
    }
    assert!(
        rec.messages
            .iter()
            .any(|m| matches!(m.fate, Fate::Lost(_, "random loss")))
    );
    assert!(
        rec.messages
            .iter()
            .any(|m| matches!(m.fate, Fate::Lost(_, "link cut")))
    );
    // Each node's final role, term, log and commit index, rebuilt from the events.
    for (id, role, term, snap_index, log, commit) in finals {
        let mut last_role = (Role::Follower, 0);
        let mut last_marks = None;
        for e in &rec.events {
            match &e.what {
                What::Role { id: n, role, term } if *n == id => last_role = (*role, *term),
                What::Start { id: n } if *n == id => last_role = (Role::Follower, 0),
                What::Marks { id: n, marks } if *n == id => last_marks = Some(*marks),
                _ => {}
            }
        }
        if term > 0 {
            assert_eq!(last_role, (role, term), "n{id} role and term");
        }
        assert_eq!(last_marks.map(|m| m.commit), Some(commit), "n{id} commit");
        let (snap, replayed) = replay_log(rec, id);
        assert_eq!(snap, snap_index, "n{id} snapshot index");
        assert_eq!(replayed, log, "n{id} log (index -> term)");
    }
}
