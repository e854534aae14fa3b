//! Which server to try next and how long to wait first: the retry policy of one operation,
//! as a pure state machine (no clock, no sockets, no randomness of its own), shared by the
//! blocking and the non-blocking Clerk and tested on its own.
//!
//! Rules, for one operation:
//!
//! 1. The first attempt goes to the node the Clerk last saw answer as leader.
//! 2. After a failed attempt the next target is the leader hint if the server gave one that
//!    names a known node other than the one just tried; otherwise the next node in
//!    endpoint order.
//! 3. Within a *round* every node is tried at most once without waiting. When the next
//!    target was already tried in this round, the round ends: the Clerk sleeps a backoff
//!    and starts a new round. So a dead or leaderless cluster costs one request per node
//!    per backoff, and hints that bounce between two stale nodes cannot spin.
//! 4. Backoff of round `r` (counting from 0): `d = min(backoff_max, backoff_min * 2^r)`,
//!    slept as `d/2 + uniform(0, d/2)` ("equal jitter": never zero, so clients that failed
//!    together spread out without any of them hammering).
//! 5. Every attempt's timeout is `min(attempt_timeout, time left)`; every sleep is cut to
//!    the time left. When no time is left the operation fails with
//!    [`crate::Error::DeadlineExceeded`]: it never spins forever.

use std::time::{Duration, Instant};

use crate::error::NodeOutcome;
use crate::{Endpoint, Error};

/// Timing knobs of the policy (see [`crate::ClerkBuilder`] for defaults and meaning).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub deadline: Duration,
    pub attempt_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// What a failed attempt told us.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The node is not the leader; `hint` is the id it believes leads (0: unknown).
    WrongLeader { hint: u64 },
    /// Anything else worth retrying elsewhere (no connection, no reply in time, the
    /// server's own TIMEOUT, shutting down, ...), in words for the error report.
    Other(String),
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send the next attempt to `target` (an index into the endpoints) after `wait`.
    Retry { target: usize, wait: Duration },
    /// The deadline has passed: fail with [`Attempts::give_up`].
    GiveUp,
}

/// The retry state of one operation.
#[derive(Debug)]
pub(crate) struct Attempts {
    op: &'static str,
    timing: Timing,
    started: Instant,
    deadline: Instant,
    target: usize,
    /// Tried in the current round, by endpoint index.
    tried: Vec<bool>,
    round: u32,
    attempts: u32,
    tries: Vec<u32>,
    last: Vec<Option<String>>,
    /// The latest leader hint that names no endpoint (a node added by a membership change
    /// that the caller's endpoint list lacks).
    unknown_leader: Option<u64>,
}

impl Attempts {
    /// Starts an operation at `now`, first aimed at endpoint index `leader`.
    pub fn new(op: &'static str, n: usize, leader: usize, timing: Timing, now: Instant) -> Self {
        assert!(n > 0, "a Clerk always has at least one endpoint");
        Attempts {
            op,
            timing,
            started: now,
            deadline: now + timing.deadline,
            target: leader % n,
            tried: vec![false; n],
            round: 0,
            attempts: 0,
            tries: vec![0; n],
            last: vec![None; n],
            unknown_leader: None,
        }
    }

    /// The endpoint index the next attempt goes to.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Records that an attempt is sent to [`Attempts::target`] at `now` and returns its
    /// timeout, or `None` if the deadline has already passed (give up instead).
    pub fn begin(&mut self, now: Instant) -> Option<Duration> {
        let left = self.deadline.checked_duration_since(now)?;
        if left.is_zero() {
            return None;
        }
        self.attempts += 1;
        self.tries[self.target] += 1;
        self.tried[self.target] = true;
        Some(left.min(self.timing.attempt_timeout))
    }

    /// Records the failure of the attempt at [`Attempts::target`] and decides what comes
    /// next. `hint_index` maps a leader hint (a node id) to an endpoint index; `jitter`
    /// is a uniform sample in `[0, 1)`.
    pub fn failed(
        &mut self,
        failure: Failure,
        hint_index: impl Fn(u64) -> Option<usize>,
        now: Instant,
        jitter: f64,
    ) -> Next {
        let n = self.tried.len();
        let from = self.target;
        if let Failure::WrongLeader { hint } = &failure
            && *hint != 0
            && hint_index(*hint).is_none()
        {
            self.unknown_leader = Some(*hint);
        }
        let hinted = match &failure {
            // A hint to a node already tried this round is not followed: endpoints given
            // without ids get ids by position, which need not be the nodes' real ids (after
            // a membership change, say); following such a hint blindly could bounce between
            // two nodes and never try the one that leads.
            Failure::WrongLeader { hint } => {
                // (An index past this operation's endpoints: another operation learned that
                // node since; this one goes on with the nodes it started with.)
                hint_index(*hint).filter(|&i| i < n && i != from && !self.tried[i])
            }
            Failure::Other(_) => None,
        };
        self.last[from] = Some(match failure {
            Failure::WrongLeader { hint: 0 } => "not the leader (no leader known)".to_string(),
            Failure::WrongLeader { hint } => format!("not the leader (hint n{hint})"),
            Failure::Other(s) => s,
        });
        // Else the next node not tried this round; if every node was, the round is over.
        let next = hinted
            .or_else(|| (1..n).map(|k| (from + k) % n).find(|&i| !self.tried[i]))
            .unwrap_or((from + 1) % n);
        let Some(left) = self
            .deadline
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
        else {
            return Next::GiveUp;
        };
        self.target = next;
        let wait = if self.tried[next] {
            // Round over: everyone reachable this round was tried.
            let d = self.backoff(self.round);
            self.round = self.round.saturating_add(1);
            self.tried.iter_mut().for_each(|t| *t = false);
            (d / 2 + d.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)).min(left)
        } else {
            Duration::ZERO
        };
        Next::Retry { target: next, wait }
    }

    fn backoff(&self, round: u32) -> Duration {
        let factor = 1u32.checked_shl(round.min(31)).unwrap_or(u32::MAX);
        self.timing
            .backoff_min
            .saturating_mul(factor)
            .min(self.timing.backoff_max)
    }

    /// The endpoints grew to `n` (nodes learned from the cluster): the new ones are
    /// untried in this round.
    pub fn grow(&mut self, n: usize) {
        if n > self.tried.len() {
            self.tried.resize(n, false);
            self.tries.resize(n, 0);
            self.last.resize(n, None);
        }
    }

    /// The error to return once [`Next::GiveUp`] was decided (or `begin` returned `None`).
    pub fn give_up(&self, endpoints: &[Endpoint], now: Instant) -> Error {
        Error::DeadlineExceeded {
            op: self.op,
            elapsed: now.saturating_duration_since(self.started),
            attempts: self.attempts,
            nodes: endpoints
                .iter()
                .take(self.tries.len())
                .enumerate()
                .map(|(i, e)| NodeOutcome {
                    id: e.id,
                    addr: e.addr,
                    tries: self.tries[i],
                    last: self.last[i].clone(),
                })
                .collect(),
            unknown_leader: self.unknown_leader,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        deadline: Duration::from_secs(10),
        attempt_timeout: Duration::from_secs(1),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(80),
    };

    fn ids(id: u64) -> Option<usize> {
        // nodes 1..=3 at indexes 0..=2
        (1..=3).contains(&id).then(|| id as usize - 1)
    }

    fn other() -> Failure {
        Failure::Other("connection refused".into())
    }

    #[test]
    fn follows_a_hint_at_once_and_rotates_otherwise() {
        let t0 = Instant::now();
        let mut a = Attempts::new("put", 3, 0, T, t0);
        assert_eq!(a.begin(t0), Some(T.attempt_timeout));
        // n1 says n3 leads: go straight to index 2, no wait.
        let n = a.failed(Failure::WrongLeader { hint: 3 }, ids, t0, 0.5);
        assert_eq!(
            n,
            Next::Retry {
                target: 2,
                wait: Duration::ZERO
            }
        );
        a.begin(t0);
        // index 2 fails without a hint: on to index 1, the one not tried this round.
        let n = a.failed(other(), ids, t0, 0.0);
        assert_eq!(
            n,
            Next::Retry {
                target: 1,
                wait: Duration::ZERO
            }
        );
        a.begin(t0);
        // every node tried: the round ends with a backoff.
        let n = a.failed(other(), ids, t0, 0.0);
        assert_eq!(
            n,
            Next::Retry {
                target: 2,
                wait: Duration::from_millis(5)
            }
        );
    }

    #[test]
    fn hints_naming_the_wrong_endpoint_cannot_hide_the_leader() {
        // Bare endpoints got ids 1, 2, 3 by position, but the nodes are really 1, 3, 4
        // (after a membership change): the leader (real id 3) is at index 1, and the
        // followers' hint "3" maps to index 2. Index 1 must still be tried in the first
        // round, whatever the start.
        let t0 = Instant::now();
        for start in 0..3 {
            let mut a = Attempts::new("put", 3, start, T, t0);
            let mut reached = false;
            for _ in 0..3 {
                a.begin(t0).unwrap();
                if a.target() == 1 {
                    reached = true;
                    break;
                }
                match a.failed(Failure::WrongLeader { hint: 3 }, ids, t0, 0.0) {
                    Next::Retry { .. } => {}
                    Next::GiveUp => unreachable!(),
                }
            }
            assert!(
                reached,
                "start {start}: the leader's endpoint was never tried"
            );
        }
    }

    #[test]
    fn a_dead_cluster_costs_one_attempt_per_node_per_backoff_and_backoff_is_capped() {
        let t0 = Instant::now();
        let mut a = Attempts::new("get", 3, 1, T, t0);
        let mut waits = vec![];
        for _ in 0..15 {
            a.begin(t0).unwrap();
            match a.failed(other(), ids, t0, 1.0) {
                Next::Retry { wait, .. } => waits.push(wait.as_millis()),
                Next::GiveUp => unreachable!(),
            }
        }
        // two free moves, then a full-jitter-max backoff doubling to the 80 ms cap
        assert_eq!(
            waits,
            [0, 0, 10, 0, 0, 20, 0, 0, 40, 0, 0, 80, 0, 0, 80],
            "rounds of three with doubling, capped backoff"
        );
    }

    #[test]
    fn stale_hints_that_bounce_cannot_spin() {
        let t0 = Instant::now();
        let mut a = Attempts::new("put", 3, 0, T, t0);
        let mut zero_waits_in_a_row = 0;
        for i in 0..50 {
            a.begin(t0).unwrap();
            // n1 says n2, n2 says n1, forever
            let hint = if a.target() == 0 { 2 } else { 1 };
            match a.failed(Failure::WrongLeader { hint }, ids, t0, 0.0) {
                Next::Retry { wait, .. } if wait.is_zero() => zero_waits_in_a_row += 1,
                Next::Retry { .. } => zero_waits_in_a_row = 0,
                Next::GiveUp => unreachable!(),
            }
            assert!(
                zero_waits_in_a_row < 3,
                "attempt {i}: retried without backoff"
            );
        }
    }

    #[test]
    fn the_deadline_bounds_waits_and_ends_the_operation() {
        let t0 = Instant::now();
        let timing = Timing {
            deadline: Duration::from_millis(30),
            ..T
        };
        let mut a = Attempts::new("append", 1, 0, timing, t0);
        let t1 = t0 + Duration::from_millis(25);
        assert_eq!(
            a.begin(t1),
            Some(Duration::from_millis(5)),
            "timeout cut to time left"
        );
        let n = a.failed(other(), ids, t1, 1.0);
        assert_eq!(
            n,
            Next::Retry {
                target: 0,
                wait: Duration::from_millis(5)
            }
        );
        let t2 = t0 + Duration::from_millis(30);
        assert_eq!(a.failed(other(), ids, t2, 1.0), Next::GiveUp);
        assert_eq!(a.begin(t2), None);
        let e = a.give_up(
            &[Endpoint {
                id: 7,
                addr: "127.0.0.1:9".parse().unwrap(),
            }],
            t2,
        );
        let text = e.to_string();
        assert!(
            text.contains("append did not complete")
                && text.contains("n7 127.0.0.1:9 tried 1x, last: connection refused")
                && text.contains("may or may not have been applied"),
            "{text}"
        );
    }

    #[test]
    fn unknown_or_self_hints_rotate() {
        let t0 = Instant::now();
        let mut a = Attempts::new("get", 3, 0, T, t0);
        a.begin(t0);
        let n = a.failed(Failure::WrongLeader { hint: 9 }, ids, t0, 0.0);
        assert_eq!(
            n,
            Next::Retry {
                target: 1,
                wait: Duration::ZERO
            }
        );
        a.begin(t0);
        let n = a.failed(Failure::WrongLeader { hint: 2 }, ids, t0, 0.0);
        assert_eq!(
            n,
            Next::Retry {
                target: 2,
                wait: Duration::ZERO
            }
        );
    }
}
