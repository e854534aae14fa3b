//! Golden traces: small scenarios whose every event (one line each) is compared with
//! `testdata/<name>.txt`. They document how the protocol plays out and catch any change
//! in behaviour. After an intended change, regenerate with `UPDATE_GOLDEN=1` and review
//! the diff.

use std::path::PathBuf;

use bytes::Bytes;
use testkit::sim::Sim;

fn golden(name: &str, lines: &[String]) {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "testdata",
        &format!("{name}.txt"),
    ]
    .iter()
    .collect();
    let got = lines.join("\n") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if want != got {
        let first = want
            .lines()
            .zip(got.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(got.lines().count()));
        panic!(
            "trace {name} differs from {} at line {}:\n  want: {:?}\n  got:  {:?}\n\
             (UPDATE_GOLDEN=1 regenerates it)\n--- full trace ---\n{got}",
            path.display(),
            first + 1,
            want.lines().nth(first),
            got.lines().nth(first)
        );
    }
}

fn leader(s: &Sim) -> Option<u64> {
    (1..=s.n() as u64).find(|&i| s.raw(i).is_some_and(|r| r.is_leader()))
}

fn run_until_leader(s: &mut Sim) -> u64 {
    for _ in 0..500 {
        if let Some(l) = leader(s) {
            return l;
        }
        s.run_for(10);
    }
    s.fail("no leader");
}

/// PreVote round, election, the leader's no-op, one command committed and its commit
/// index reaching the followers.
#[test]
fn election_and_first_command() {
    let mut s = Sim::new(3, 1);
    s.trace_log = Some(Vec::new());
    let l = run_until_leader(&mut s);
    s.run_for(20);
    s.start(l, Bytes::from_static(b"x"));
    s.run_for(100);
    golden(
        "election_and_first_command",
        s.trace_log.as_deref().unwrap_or(&[]),
    );
}

/// An old leader returns with uncommitted entries of its term; the new leader's append
/// is rejected with a conflict hint, the leader jumps back a whole term, and the old
/// leader truncates its suffix.
#[test]
fn rejoin_truncates_conflicting_suffix() {
    let mut s = Sim::new(3, 2);
    let l1 = run_until_leader(&mut s);
    s.run_for(100);
    s.disconnect(l1);
    for x in [b"a", b"b", b"c"] {
        s.start(l1, Bytes::from_static(x));
    }
    let l2 = run_until_leader_except(&mut s, l1);
    for x in [b"d", b"e"] {
        s.start(l2, Bytes::from_static(x));
    }
    s.run_for(100);
    s.trace_log = Some(Vec::new());
    s.connect(l1);
    s.run_for(200);
    golden(
        "rejoin_truncates_conflicting_suffix",
        s.trace_log.as_deref().unwrap_or(&[]),
    );
}

fn run_until_leader_except(s: &mut Sim, not: u64) -> u64 {
    for _ in 0..500 {
        if let Some(l) =
            (1..=s.n() as u64).find(|&i| i != not && s.raw(i).is_some_and(|r| r.is_leader()))
        {
            return l;
        }
        s.run_for(10);
    }
    s.fail("no new leader");
}

/// A follower that missed entries meets a new leader: the leader's first probe (at its
/// own last index) is rejected with the follower's log length as the hint, and the next
/// append carries everything missing in one message.
#[test]
fn lagging_follower_fast_backtrack() {
    let mut s = Sim::new(3, 3);
    let l1 = run_until_leader(&mut s);
    let others: Vec<u64> = (1..=3).filter(|&i| i != l1).collect();
    let (f, m) = (others[0], others[1]);
    s.run_for(100);
    s.disconnect(f);
    for x in [b"a", b"b", b"c"] {
        s.start(l1, Bytes::from_static(x));
    }
    s.run_for(100);
    s.disconnect(l1);
    s.trace_log = Some(Vec::new());
    s.connect(f);
    let l2 = run_until_leader_except(&mut s, l1);
    assert_eq!(l2, m, "only the up-to-date node can win");
    s.run_for(50);
    golden(
        "lagging_follower_fast_backtrack",
        s.trace_log.as_deref().unwrap_or(&[]),
    );
}
