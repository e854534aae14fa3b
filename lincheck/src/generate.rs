//! Generated histories with known verdicts, for tests and benchmarks.
//!
//! [`linearizable_kv`] simulates a linearizable store: every operation gets a call time,
//! a linearization point strictly inside its interval and a return time; applying the
//! operations to [`KvModel`] in order of their linearization points gives the outputs.
//! The result is linearizable by construction (that order is a witness).
//!
//! The corruptions make a history non-linearizable *for certain*, not merely suspicious.
//! They rely on the generator's values: a put writes `P<n>;` and an append appends `A<n>;`
//! with `n` unique per operation, so a key's value equals exactly `P<n>;` only between put
//! `n` and the next put, append or delete of that key.
//! - [`read_never_written`]: a get returns a value no operation can produce;
//! - [`write_after_its_read`]: a put is moved after (in real time) a get that returned its
//!   value, so the get saw a write that had not been called yet;
//! - [`stale_read`]: a get, called after put `w2` returned, reads the value of put `w1`
//!   that returned before `w2` was called; `w1 < w2 < get` in every linearization, so
//!   the get cannot see `w1`'s value.

use crate::history::{History, Operation};
use crate::model::{KvInput, KvModel, KvOutput, Model};

/// How to generate a history.
#[derive(Clone, Debug)]
pub struct KvGen {
    /// Concurrent clients (each has one operation in flight at a time).
    pub clients: usize,
    /// Operations in total.
    pub ops: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Largest pause of a client between two operations (time units).
    pub max_think: u64,
    /// Largest delay from call to linearization point, and from there to return.
    pub max_latency: u64,
    /// Per mille of operations whose outcome is unknown (half of them take effect).
    pub unknown_per_mille: u32,
}

impl Default for KvGen {
    fn default() -> Self {
        KvGen {
            clients: 5,
            ops: 40,
            keys: 2,
            max_think: 20,
            max_latency: 30,
            unknown_per_mille: 50,
        }
    }
}

/// A linearizable KV history (keys start absent), reproducible from `seed`.
pub fn linearizable_kv(seed: u64, g: &KvGen) -> History<KvInput, KvOutput> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let clients = g.clients.max(1);
    let mut free_at = vec![0u64; clients];
    // (linearization point or None if it never took effect, op)
    let mut ops: Vec<(Option<u64>, Operation<KvInput, KvOutput>)> = Vec::with_capacity(g.ops);
    for n in 0..g.ops {
        let c = rng.usize(..clients);
        let key = format!("k{}", rng.usize(..g.keys.max(1)));
        let input = match rng.u32(..100) {
            0..45 => KvInput::Get { key },
            45..70 => KvInput::Put {
                key,
                value: format!("P{n};"),
            },
            70..90 => KvInput::Append {
                key,
                value: format!("A{n};"),
            },
            _ => KvInput::Delete { key },
        };
        let call = free_at[c] + rng.u64(0..=g.max_think);
        let lin = call + 1 + rng.u64(0..=g.max_latency);
        let ret = lin + 1 + rng.u64(0..=g.max_latency);
        free_at[c] = ret;
        let unknown = rng.u32(..1000) < g.unknown_per_mille;
        let takes_effect = !unknown || rng.bool();
        ops.push((
            takes_effect.then_some(lin),
            Operation {
                client: c as u64,
                input,
                // Known outputs are filled in below; unknown ones stay None.
                output: if unknown { None } else { Some(KvOutput::Done) },
                call,
                ret: Some(ret),
            },
        ));
    }
    let mut order: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].0.is_some()).collect();
    order.sort_by_key(|&i| (ops[i].0, i));
    let model = KvModel::default();
    let mut state: std::collections::HashMap<String, Option<String>> = Default::default();
    for i in order {
        let op = &mut ops[i].1;
        let s = state
            .entry(op.input.key().to_string())
            .or_insert_with(|| model.init());
        if op.output.is_some() && matches!(op.input, KvInput::Get { .. }) {
            op.output = Some(KvOutput::Value(s.clone()));
        }
        *s = model
            .step(s, &op.input, op.output.as_ref())
            .expect("the simulated store's own output is legal");
    }
    ops.into_iter().map(|(_, op)| op).collect()
}

fn fresh_client(h: &[Operation<KvInput, KvOutput>]) -> u64 {
    h.iter().map(|o| o.client + 1).max().unwrap_or(0)
}

/// Makes one get with a known output return a value no operation writes. `None` if the
/// history has no such get.
pub fn read_never_written(
    h: &[Operation<KvInput, KvOutput>],
    seed: u64,
) -> Option<History<KvInput, KvOutput>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let gets: Vec<usize> = (0..h.len())
        .filter(|&i| matches!(h[i].input, KvInput::Get { .. }) && h[i].output.is_some())
        .collect();
    let &i = gets.get(rng.usize(..gets.len().max(1)))?;
    let mut out = h.to_vec();
    out[i].output = Some(KvOutput::Value(Some(format!("X{seed};never-written"))));
    Some(out)
}

/// Moves a put after a get that returned exactly its value (the put now starts after the
/// get returned, on a fresh client). `None` if no get returned a put's value.
pub fn write_after_its_read(
    h: &[Operation<KvInput, KvOutput>],
    seed: u64,
) -> Option<History<KvInput, KvOutput>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut pairs = Vec::new();
    for (g, op) in h.iter().enumerate() {
        if let (KvInput::Get { .. }, Some(KvOutput::Value(Some(v))), Some(_)) =
            (&op.input, &op.output, op.ret)
            && let Some(w) = h
                .iter()
                .position(|o| matches!(&o.input, KvInput::Put { value, .. } if value == v))
        {
            pairs.push((g, w));
        }
    }
    let &(g, w) = pairs.get(rng.usize(..pairs.len().max(1)))?;
    let mut out = h.to_vec();
    let after = h[g].ret.expect("checked above") + 1 + rng.u64(0..5);
    let len = out[w]
        .ret
        .map_or(1, |r| r.saturating_sub(out[w].call).max(1));
    out[w].client = fresh_client(h);
    out[w].call = after;
    out[w].ret = Some(after + len);
    Some(out)
}

/// Adds a get, on a fresh client, called after put `w2` returned, that reads the value of
/// put `w1` on the same key, where `w1` returned before `w2` was called (both with known
/// outcomes). `None` if there are no such puts.
pub fn stale_read(
    h: &[Operation<KvInput, KvOutput>],
    seed: u64,
) -> Option<History<KvInput, KvOutput>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let puts: Vec<usize> = (0..h.len())
        .filter(|&i| matches!(h[i].input, KvInput::Put { .. }) && h[i].output.is_some())
        .collect();
    let mut pairs = Vec::new();
    for &a in &puts {
        for &b in &puts {
            if h[a].input.key() == h[b].input.key() && h[a].ret.is_some_and(|r| r < h[b].call) {
                pairs.push((a, b));
            }
        }
    }
    let &(w1, w2) = pairs.get(rng.usize(..pairs.len().max(1)))?;
    let KvInput::Put { key, value } = &h[w1].input else {
        return None;
    };
    let call = h[w2].ret.expect("known outcome") + 1 + rng.u64(0..5);
    let mut out = h.to_vec();
    out.push(Operation {
        client: fresh_client(h),
        input: KvInput::Get { key: key.clone() },
        output: Some(KvOutput::Value(Some(value.clone()))),
        call,
        ret: Some(call + 1 + rng.u64(0..5)),
    });
    Some(out)
}
