//! The search: Wing & Gong's algorithm with Lowe's memoization, as Porcupine does it.
//!
//! # How it works
//!
//! Each operation of a partition becomes two entries, its call and its return, sorted by
//! time (a call sorts before a return at the same time, so touching intervals count as
//! concurrent) and threaded into a doubly linked list. The search walks the list from the
//! front:
//!
//! - at a **call** entry it tries to linearize that operation next: if the model accepts
//!   its output from the current state, the operation is *lifted* (its call and return
//!   entries are unlinked in O(1)), pushed on a stack with the state before it, and the
//!   walk restarts at the front;
//! - at a **return** entry, the operation it belongs to should already have been
//!   linearized (everything linearized so far precedes it): the search backtracks, popping
//!   the last linearized operation, restoring its state, *unlifting* it (relinking its two
//!   entries) and trying the next call after it.
//!
//! The list empties iff every operation was linearized: the history is linearizable and the
//! stack is a witness order. The stack empties at a return entry iff no order exists.
//!
//! Wing & Gong's search alone is exponential on histories with many concurrent
//! operations. Lowe ("Testing for linearizability", 2017) observed that two search nodes
//! with the same *set* of linearized operations and the same model state have the same
//! future, so each such pair needs exploring once. The set is a bitset over the partition's
//! operations; the memo cache is keyed by a Zobrist hash of the bitset (updated in O(1) per
//! lift/unlift) mixed with the state's hash, and on a hash hit compares bitset and state
//! for equality, so a hash collision can cost time but never a wrong verdict. Backtracking
//! restores the state saved on the stack (an undo, not a clone of the search).
//!
//! **Reads go first.** If an operation the model declares read-only
//! ([`Model::is_read_only`]) is a candidate (its call is before the earliest pending
//! return) and fits the current state, it is linearized at once, as the only child of the
//! search node: any completion that places it later can place it here instead (it changes
//! no state, fits here, and every operation that must precede it in real time returned
//! before its call, so is already linearized). On histories with many concurrent readers
//! this removes most of the branching.
//!
//! **Dominated nodes skipped.** An operation whose outcome is
//! unknown never returns, so it stays a candidate to the end, and each one pending doubles
//! the nodes. The memo key leaves the operations of unknown outcome out of the set's hash, and a node
//! counts as explored if a failed node had the same state, the same known operations and a
//! *subset* of its unknown ones: any completion of the larger node, followed by the missing
//! unknown operations (which may always go last: nothing must follow them in real time, and
//! [`Model::step`] accepts any outcome for them), completes the smaller one, so the larger
//! fails too. An unknown write that was overwritten then costs one branch, not a doubling.
//! Accordingly the search succeeds as soon as every operation of known outcome is placed;
//! the operations of unknown outcome it did not place go last in the witness order.
//!
//! A history is split by [`Model::partition_key`] and each partition is checked alone
//! (Herlihy & Wing's locality: a history is linearizable iff each object's sub-history is);
//! partitions run on all available cores. The time budget makes the answer
//! [`Verdict::Unknown`] instead of a guess; a partition found not linearizable before the
//! budget ran out still makes the whole history not linearizable, which is exact.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::history::Operation;
use crate::model::Model;

/// The answer of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// No linearization exists.
    NotLinearizable,
    /// The time budget ran out before an answer (never a guess).
    Unknown,
}

impl Verdict {
    /// The word the command line prints: `linearizable`, `not linearizable` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "not linearizable",
            Verdict::Unknown => "unknown",
        }
    }
}

/// Options of a check.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// The time budget for the whole check; `None` searches until an answer.
    pub timeout: Option<Duration>,
    /// Check every partition even after one is found not linearizable (slower; by default
    /// the other partitions are abandoned, as Porcupine does, and reported as
    /// [`Verdict::Unknown`] with [`PartitionResult::abandoned`] set).
    pub all_partitions: bool,
}

impl CheckOptions {
    /// A check that gives up with [`Verdict::Unknown`] after `timeout`.
    pub fn with_timeout(timeout: Duration) -> CheckOptions {
        CheckOptions {
            timeout: Some(timeout),
            all_partitions: false,
        }
    }
}

/// An operation that could have been linearized next at the point where the search got
/// furthest, and was not part of any full linearization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Index into the history.
    pub op: usize,
    /// Whether the model accepts this operation's output from the state after the prefix.
    /// `false`: it cannot be placed there at all (e.g. a read of a value the state does not
    /// hold). `true`: it can, but every continuation after it failed later.
    pub step_ok: bool,
}

/// Why a partition is not linearizable: the deepest point the search reached.
#[derive(Clone, Debug)]
pub struct Failure<S> {
    /// The longest linearizable prefix found: history indices in linearization order.
    pub prefix: Vec<usize>,
    /// The model state after `prefix`.
    pub state: S,
    /// The operations that could go next after `prefix` (called before the earliest return
    /// of a pending operation); none of them extends the prefix to a full linearization.
    pub candidates: Vec<Candidate>,
    /// The pending operation with the earliest return: it must be linearized before that
    /// return, and it and everything concurrent with it could not be.
    pub blocking: usize,
}

/// The result for one partition (one key).
#[derive(Clone, Debug)]
pub struct PartitionResult<S> {
    /// The partition key ([`Model::partition_key`]); `""` for a single-object model.
    pub key: String,
    /// The operations of this partition: history indices in call order.
    pub ops: Vec<usize>,
    /// This partition's verdict.
    pub verdict: Verdict,
    /// For a linearizable partition: a witness order (history indices).
    pub linearization: Vec<usize>,
    /// For a non-linearizable partition: where the search got furthest.
    pub failure: Option<Failure<S>>,
    /// Search steps (entries visited).
    pub steps: u64,
    /// Entries in the memo cache at the end.
    pub cache_entries: usize,
    /// Candidate orders dropped early in an append-only partition (see
    /// [`crate::Model::is_monotone`]).
    pub pruned: u64,
    /// Wall time spent on this partition.
    pub elapsed: Duration,
    /// The search stopped (verdict `Unknown`) because another partition was already found
    /// not linearizable, not because the time budget ran out.
    pub abandoned: bool,
}

/// The result of a check.
#[derive(Clone, Debug)]
pub struct CheckReport<S> {
    /// `NotLinearizable` if any partition is; otherwise `Unknown` if any partition ran out
    /// of time; otherwise `Linearizable`.
    pub verdict: Verdict,
    /// One result per partition, in key order.
    pub partitions: Vec<PartitionResult<S>>,
    /// Wall time of the whole check.
    pub elapsed: Duration,
}

/// Checks `history` against `model`.
///
/// # Example
/// ```
/// use lincheck::{check, CheckOptions, KvInput, KvModel, KvOutput, Operation, Verdict};
/// let history = vec![
///     Operation { client: 0, input: KvInput::Put { key: "k".into(), value: "v".into() },
///                 output: Some(KvOutput::Done), call: 0, ret: Some(10) },
///     // A get that started after the put returned cannot miss it.
///     Operation { client: 1, input: KvInput::Get { key: "k".into() },
///                 output: Some(KvOutput::Value(None)), call: 20, ret: Some(30) },
/// ];
/// let report = check(&KvModel::default(), &history, &CheckOptions::default());
/// assert_eq!(report.verdict, Verdict::NotLinearizable);
/// ```
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    options: &CheckOptions,
) -> CheckReport<M::State> {
    let start = Instant::now();
    let deadline = options.timeout.map(|t| start + t);

    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        by_key
            .entry(model.partition_key(&op.input))
            .or_default()
            .push(i);
    }
    let parts: Vec<(String, Vec<usize>)> = by_key
        .into_iter()
        .map(|(k, mut ops)| {
            ops.sort_by_key(|&i| (history[i].call, i));
            (k, ops)
        })
        .collect();

    let cancel = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<PartitionResult<M::State>>>> =
        Mutex::new((0..parts.len()).map(|_| None).collect());
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(parts.len())
        .max(1);
    // Small partitions first: they finish fast, and one violation settles the verdict.
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| parts[i].1.len());
    let work = || {
        while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
            let (key, ops) = &parts[i];
            let r = check_partition(model, history, key, ops, deadline, &cancel);
            if r.verdict == Verdict::NotLinearizable
                || (r.verdict == Verdict::Unknown && !r.abandoned)
            {
                // One violation settles the verdict (unless every key is wanted); out of time
                // here means out of time everywhere.
                if r.verdict == Verdict::Unknown || !options.all_partitions {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
            results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
        }
    };
    if workers == 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(work);
            }
        });
    }
    let partitions: Vec<PartitionResult<M::State>> = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every partition was checked"))
        .collect();
    let verdict = if partitions
        .iter()
        .any(|p| p.verdict == Verdict::NotLinearizable)
    {
        Verdict::NotLinearizable
    } else if partitions.iter().any(|p| p.verdict == Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Linearizable
    };
    CheckReport {
        verdict,
        partitions,
        elapsed: start.elapsed(),
    }
}

const NIL: usize = usize::MAX;

/// Lowe's memo: (hash of linearized set and state id) → the (set, state id) pairs seen.
/// States are interned (one copy of each distinct state, compared by id), so an entry costs
/// the bitset and one word however large the state is.
type Memo = HashMap<u64, Vec<(Box<[u64]>, usize)>>;

/// The deepest point of a failed search, in local operation indices.
struct Deepest<S> {
    prefix: Vec<usize>,
    state: S,
    candidates: Vec<usize>,
    blocking: usize,
}

/// A Zobrist key per operation: the hash of a set is the XOR of its members' keys.
fn zobrist(i: usize) -> u64 {
    // splitmix64 finalizer
    let mut z = (i as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The entry list: node `k < 2n` is the k-th event in time order, node `2n` is the head.
struct EntryList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Local operation index of each node.
    op: Vec<usize>,
    /// For a call node, its return node; `NIL` for a return node.
    matching: Vec<usize>,
    head: usize,
}

impl EntryList {
    fn new(calls: &[u64], returns: &[u64]) -> EntryList {
        let n = calls.len();
        // (time, is_return, op): calls sort before returns at equal times.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for i in 0..n {
            events.push((calls[i], false, i));
            events.push((returns[i], true, i));
        }
        events.sort();
        let head = 2 * n;
        let mut list = EntryList {
            next: vec![NIL; 2 * n + 1],
            prev: vec![NIL; 2 * n + 1],
            op: vec![0; 2 * n],
            matching: vec![NIL; 2 * n],
            head,
        };
        let mut call_node = vec![NIL; n];
        for (k, &(_, is_return, i)) in events.iter().enumerate() {
            list.op[k] = i;
            if is_return {
                list.matching[call_node[i]] = k;
            } else {
                call_node[i] = k;
            }
        }
        let mut last = head;
        for k in 0..2 * n {
            list.next[last] = k;
            list.prev[k] = last;
            last = k;
        }
        list
    }

    fn is_call(&self, node: usize) -> bool {
        self.matching[node] != NIL
    }

    /// Unlinks a call node and its return node.
    fn lift(&mut self, call: usize) {
        let (p, n) = (self.prev[call], self.next[call]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
        let ret = self.matching[call];
        let (p, n) = (self.prev[ret], self.next[ret]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    /// Relinks what `lift(call)` unlinked (in reverse order, so the neighbours are right).
    fn unlift(&mut self, call: usize) {
        let ret = self.matching[call];
        let (p, n) = (self.prev[ret], self.next[ret]);
        self.next[p] = ret;
        if n != NIL {
            self.prev[n] = ret;
        }
        let (p, n) = (self.prev[call], self.next[call]);
        self.next[p] = call;
        if n != NIL {
            self.prev[n] = call;
        }
    }
}

struct Bitset(Vec<u64>);

impl Bitset {
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

fn check_partition<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    key: &str,
    ops: &[usize],
    deadline: Option<Instant>,
    cancel: &AtomicBool,
) -> PartitionResult<M::State> {
    let start = Instant::now();
    let n = ops.len();
    let calls: Vec<u64> = ops.iter().map(|&i| history[i].call).collect();
    let returns: Vec<u64> = ops.iter().map(|&i| history[i].effective_return()).collect();
    let mut list = EntryList::new(&calls, &returns);
    let mut linearized = Bitset(vec![0; n.div_ceil(64)]);
    let mut set_hash = 0u64;
    let mut state = model.init();
    // (call node, state before it, forced: a read linearized as its node's only child)
    let mut stack: Vec<(usize, M::State, bool)> = Vec::new();
    let mut cache: Memo = HashMap::new();
    let mut interned: HashMap<M::State, usize> = HashMap::new();
    let mut cache_entries = 0usize;
    let mut steps = 0u64;
    let mut best: Option<Deepest<M::State>> = None;

    let mut abandoned = false;
    let read_only: Vec<bool> = ops
        .iter()
        .map(|&i| model.is_read_only(&history[i].input))
        .collect();
    // An append-only partition: a candidate whose state no longer leads to what some
    // unplaced read returned is dropped at once (Model::is_monotone).
    let inputs: Vec<&M::Input> = ops.iter().map(|&i| &history[i].input).collect();
    let monotone = model.is_monotone(&inputs);
    let mut pruned = 0u64;
    // Operations with unknown outcome, as a bitmask over local indices.
    let unknown: Vec<bool> = ops.iter().map(|&i| history[i].output.is_none()).collect();
    let mut unknown_mask = vec![0u64; n.div_ceil(64)];
    for (i, &u) in unknown.iter().enumerate() {
        if u {
            unknown_mask[i / 64] |= 1 << (i % 64);
        }
    }
    let mut entry = list.next[list.head];
    // A node is fresh when the search just arrived at it (not when it came back to it).
    let mut fresh = true;
    let known_total = unknown.iter().filter(|&&u| !u).count();
    let mut known_placed = 0usize;
    let verdict = 'search: loop {
        // Success once every operation of known outcome is placed: those of unknown outcome
        // still pending may all go last.
        if known_placed == known_total {
            break Verdict::Linearizable;
        }
        steps += 1;
        if steps.is_multiple_of(1024) {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Verdict::Unknown;
            }
            if cancel.load(Ordering::Relaxed) {
                abandoned = true;
                break Verdict::Unknown;
            }
        }
        // What to linearize next: (call node, state after it, forced).
        let mut attempt = None;
        if fresh {
            // A read-only candidate that fits here is linearized here, as the only child
            // of this node (see "Reads go first" in the module docs).
            fresh = false;
            let mut k = list.next[list.head];
            while list.is_call(k) {
                let local = list.op[k];
                if read_only[local] && !unknown[local] {
                    let op = &history[ops[local]];
                    if let Some(next) = model.step(&state, &op.input, op.output.as_ref()) {
                        debug_assert!(next == state, "a read-only operation changed the state");
                        attempt = Some((k, next, true));
                        break;
                    }
                }
                k = list.next[k];
            }
        }
        let mut node_fails = false;
        if attempt.is_none() {
            if list.is_call(entry) {
                let op = &history[ops[list.op[entry]]];
                let next = model.step(&state, &op.input, op.output.as_ref());
                let next = match next {
                    Some(next) if monotone && !read_only[list.op[entry]] => {
                        // Can every unplaced read of known outcome still be placed?
                        let mut k = list.next[list.head];
                        let mut viable = true;
                        while viable && k != NIL {
                            if k != entry && list.is_call(k) {
                                let other = &history[ops[list.op[k]]];
                                if let Some(out) = &other.output {
                                    viable = model.can_still_reach(&next, &other.input, out);
                                }
                            }
                            k = list.next[k];
                        }
                        pruned += u64::from(!viable);
                        viable.then_some(next)
                    }
                    other => other,
                };
                match next {
                    Some(next) => attempt = Some((entry, next, false)),
                    None => {
                        entry = list.next[entry];
                        continue;
                    }
                }
            } else {
                // A return entry: its operation should have been linearized already.
                if best.as_ref().is_none_or(|b| stack.len() > b.prefix.len()) {
                    let prefix = stack.iter().map(|(node, ..)| list.op[*node]).collect();
                    let mut candidates = Vec::new();
                    let mut k = list.next[list.head];
                    while k != entry {
                        candidates.push(list.op[k]);
                        k = list.next[k];
                    }
                    best = Some(Deepest {
                        prefix,
                        state: state.clone(),
                        candidates,
                        blocking: list.op[entry],
                    });
                }
                node_fails = true;
            }
        }
        if let Some((node, new_state, forced)) = attempt {
            let local = list.op[node];
            linearized.set(local);
            if !unknown[local] {
                set_hash ^= zobrist(local);
            }
            let id = match interned.get(&new_state) {
                Some(&id) => id,
                None => {
                    let id = interned.len();
                    interned.insert(new_state.clone(), id);
                    id
                }
            };
            let cache_key = set_hash ^ zobrist(id).rotate_left(17);
            let bucket = cache.entry(cache_key).or_default();
            // Seen, or dominated: a failed node with the same state, the same operations
            // of known outcome and a subset of these of unknown outcome (see the module
            // docs).
            let seen = bucket.iter().any(|(bits, s)| {
                *s == id
                    && bits
                        .iter()
                        .zip(&linearized.0)
                        .zip(&unknown_mask)
                        .all(|((&e, &l), &u)| e & !l == 0 && (e ^ l) & !u == 0)
            });
            if !seen {
                bucket.push((linearized.0.clone().into_boxed_slice(), id));
                cache_entries += 1;
                known_placed += usize::from(!unknown[local]);
                stack.push((node, std::mem::replace(&mut state, new_state), forced));
                list.lift(node);
                entry = list.next[list.head];
                fresh = true;
                continue;
            }
            // Explored before, without success.
            linearized.clear(local);
            if !unknown[local] {
                set_hash ^= zobrist(local);
            }
            if forced {
                node_fails = true;
            } else {
                entry = list.next[node];
            }
        }
        if node_fails {
            // Backtrack: undo the last linearized operation and try the next candidate
            // after it; a node whose only child (a forced read) failed fails too.
            loop {
                let Some((node, old_state, forced)) = stack.pop() else {
                    break 'search Verdict::NotLinearizable;
                };
                state = old_state;
                let local = list.op[node];
                known_placed -= usize::from(!unknown[local]);
                linearized.clear(local);
                if !unknown[local] {
                    set_hash ^= zobrist(local);
                }
                list.unlift(node);
                if !forced {
                    entry = list.next[node];
                    break;
                }
            }
        }
    };

    let mut linearization = Vec::new();
    let mut failure = None;
    match verdict {
        Verdict::Linearizable => {
            // The operations of unknown outcome not placed go last.
            let mut placed = vec![false; n];
            for (node, ..) in &stack {
                placed[list.op[*node]] = true;
            }
            linearization = stack.iter().map(|(node, ..)| ops[list.op[*node]]).collect();
            linearization.extend((0..n).filter(|&l| !placed[l]).map(|l| ops[l]));
        }
        Verdict::NotLinearizable => {
            let Deepest {
                prefix,
                state,
                candidates,
                blocking,
            } = best.expect("a failed search always records its deepest point");
            let candidates = candidates
                .into_iter()
                .map(|local| {
                    let op = &history[ops[local]];
                    Candidate {
                        op: ops[local],
                        step_ok: model.step(&state, &op.input, op.output.as_ref()).is_some(),
                    }
                })
                .collect();
            failure = Some(Failure {
                prefix: prefix.into_iter().map(|l| ops[l]).collect(),
                state,
                candidates,
                blocking: ops[blocking],
            });
        }
        Verdict::Unknown => {}
    }
    PartitionResult {
        key: key.to_string(),
        ops: ops.to_vec(),
        verdict,
        linearization,
        failure,
        steps,
        cache_entries,
        pruned,
        elapsed: start.elapsed(),
        abandoned,
    }
}
