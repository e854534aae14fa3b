//! How much a snapshot of a large state holds up writes, before and after the overlay.
//!
//! One thread plays the apply loop: writes (Puts of 100-byte values to random existing
//! keys) arrive on an open-loop schedule at a fixed rate, and the loop applies whatever
//! has arrived in batches of up to 1024, like `KvNode`'s apply thread. After a warm-up it
//! takes a snapshot the way each design does, hands it to an encoder thread, and goes on
//! applying; a write's latency is the time from its scheduled arrival to the end of the
//! batch that applied it, so a write that arrives while the loop is stuck waits for it.
//!
//! - `copy` (before): the old `KvState`: the apply thread clones the whole skiplist (and
//!   sorts the duplicate table), and the clone is encoded off the thread;
//! - `overlay` (now): `KvState::snapshot_view` shares the map, writes go to the overlay
//!   while the view is encoded, then the loop folds the overlay back 1024 entries per
//!   step between batches (`KvState::fold_overlay`).
//!
//! For each mode it prints the apply-thread hold to start the snapshot, the encoding
//! time, the fold (total, steps, longest step), and the write latency (p50, p99, max)
//! over the window from the snapshot's start to the end of the fold, next to the same
//! figures for the writes before it (the noise floor of a shared machine). The modes take
//! turns (copy, overlay, copy, ...) in one process on the same keys, so that a change in
//! the machine's load hits both; the load average is printed before and after.
//!
//! `cargo run --release -p kvserver --example snapshot_stall -- [KEYS] [WRITES_PER_SEC]
//! [ROUNDS]` (defaults 1,000,000 keys, 20,000 writes/s, 2 rounds of both modes). Exits 1
//! when a window holds no write or a snapshot does not finish within a minute.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvserver::KvState;
use proto::kv::{Command, CommandOp};
use skiplist::SkipMap;

const VALUE_BYTES: usize = 100;
/// Entries applied per batch, as in `KvNode`'s apply loop.
const APPLY_BATCH: usize = 1024;
/// Overlay entries folded per step, as in `KvNode`'s apply loop.
const FOLD_CHUNK: usize = 256;
/// Writes before the snapshot starts (the "before" sample), in seconds of schedule.
const WARM_UP: f64 = 0.5;
/// Schedule kept after the fold ends, in seconds.
const TAIL: f64 = 0.2;
/// A mode that has not finished by then is reported as such.
const MODE_LIMIT: Duration = Duration::from_secs(60);

/// The state under test, one per design.
enum Design {
    /// The old KvState: a skiplist and a duplicate table, copied for a snapshot.
    Copy {
        map: Box<SkipMap<Bytes, Bytes>>,
        dedup: HashMap<u64, u64>,
        applied: u64,
    },
    Overlay(KvState),
}

/// What the encoder thread gets.
type Job = Box<dyn FnOnce() -> usize + Send>;

impl Design {
    fn name(&self) -> &'static str {
        match self {
            Design::Copy { .. } => "copy",
            Design::Overlay(_) => "overlay",
        }
    }

    /// The last index applied.
    fn applied_index(&self) -> u64 {
        match self {
            Design::Copy { applied, .. } => *applied,
            Design::Overlay(st) => st.applied_index(),
        }
    }

    fn apply(&mut self, index: u64, cmd: &Command) {
        match self {
            Design::Copy {
                map,
                dedup,
                applied,
            } => {
                *applied = index;
                map.insert(cmd.key.clone(), cmd.value.clone());
                dedup.insert(cmd.client_id, cmd.seq);
            }
            Design::Overlay(st) => {
                st.apply(index, cmd);
            }
        }
    }

    /// What the apply thread does to start a snapshot; the returned job encodes it and
    /// returns its size in bytes.
    fn begin(&mut self) -> Job {
        match self {
            Design::Copy { map, dedup, .. } => {
                let copy = map.clone();
                let mut rows: Vec<(u64, u64)> = dedup.iter().map(|(c, s)| (*c, *s)).collect();
                rows.sort_unstable();
                Box::new(move || {
                    let mut out = Vec::with_capacity(rows.len() * 17);
                    for (c, s) in &rows {
                        out.extend_from_slice(&c.to_le_bytes());
                        out.extend_from_slice(&s.to_le_bytes());
                        out.push(0);
                    }
                    if let Err(e) = copy.dump(&mut out) {
                        eprintln!("snapshot_stall: dump failed: {e}");
                        std::process::exit(2);
                    }
                    out.len()
                })
            }
            Design::Overlay(st) => {
                let view = st.snapshot_view();
                Box::new(move || view.encode().len())
            }
        }
    }

    /// One fold step once the encoder is done; returns the entries left.
    fn fold_step(&mut self) -> usize {
        match self {
            Design::Copy { .. } => 0,
            Design::Overlay(st) => st.fold_overlay(FOLD_CHUNK),
        }
    }
}

#[derive(Default)]
struct Report {
    hold: Duration,
    encode: Duration,
    bytes: usize,
    fold: Duration,
    fold_steps: u32,
    fold_max: Duration,
    overlay_peak: usize,
    before: Vec<Duration>,
    window: Vec<Duration>,
    finished: bool,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    ms(sorted[i])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run(design: &mut Design, keys: &[Bytes], rate: f64) -> Report {
    let value = Bytes::from(vec![b'w'; VALUE_BYTES]);
    // Seeded: the same keys are written in every mode.
    let mut rng = fastrand::Rng::with_seed(0x5EED);
    let mut r = Report::default();
    let start = Instant::now();
    let arrival = |j: u64| start + Duration::from_secs_f64(j as f64 / rate);
    let warm_up = (WARM_UP * rate) as u64;
    let mut next = 0u64; // next write to apply
    let mut index = design.applied_index();
    let mut snapshot_at: Option<u64> = None; // first write of the window
    let mut window_end: Option<u64> = None; // first write after the fold
    let (done_tx, done_rx) = mpsc::channel::<(Duration, usize)>();
    let mut encoder = None;
    let mut encoded = false;
    let mut batch = Vec::with_capacity(APPLY_BATCH);
    loop {
        let now = Instant::now();
        if now.duration_since(start) > MODE_LIMIT {
            break;
        }
        if let Some(end) = window_end
            && next >= end + (TAIL * rate) as u64
        {
            r.finished = true;
            break;
        }
        // The writes that have arrived, one batch at most.
        batch.clear();
        while batch.len() < APPLY_BATCH && arrival(next + batch.len() as u64) <= now {
            batch.push(next + batch.len() as u64);
        }
        if batch.is_empty() {
            let wait = arrival(next).saturating_duration_since(now);
            std::thread::sleep(wait.min(Duration::from_micros(500)));
        }
        for &j in &batch {
            index += 1;
            let cmd = Command {
                op: CommandOp::OpPut as i32,
                key: keys[rng.usize(..keys.len())].clone(),
                value: value.clone(),
                client_id: j % 1000 + 1,
                // Above every earlier seq of this client: each write applies.
                seq: index,
            };
            design.apply(index, &cmd);
        }
        let applied = Instant::now();
        for &j in &batch {
            let lat = applied.saturating_duration_since(arrival(j));
            match snapshot_at {
                Some(s) if j >= s && window_end.is_none_or(|e| j < e) => r.window.push(lat),
                None => r.before.push(lat),
                _ => {}
            }
        }
        next += batch.len() as u64;
        // Between batches: start the snapshot, or fold once the encoder is done.
        if snapshot_at.is_none() && next >= warm_up {
            snapshot_at = Some(next);
            let t0 = Instant::now();
            let job = design.begin();
            r.hold = t0.elapsed();
            let tx = done_tx.clone();
            encoder = Some(std::thread::spawn(move || {
                let t0 = Instant::now();
                let bytes = job(); // the view or copy is dropped here
                let _ = tx.send((t0.elapsed(), bytes));
            }));
        } else if snapshot_at.is_some() && !encoded {
            if let Ok((took, bytes)) = done_rx.try_recv() {
                (r.encode, r.bytes) = (took, bytes);
                encoded = true;
            }
            if let Design::Overlay(st) = design {
                r.overlay_peak = r.overlay_peak.max(st.overlay_len());
            }
        } else if encoded && window_end.is_none() {
            let t0 = Instant::now();
            let left = design.fold_step();
            let step = t0.elapsed();
            if !matches!(design, Design::Copy { .. }) {
                r.fold += step;
                r.fold_steps += 1;
                r.fold_max = r.fold_max.max(step);
            }
            if left == 0 {
                window_end = Some(next);
            }
        }
    }
    if let Some(t) = encoder {
        let _ = t.join();
    }
    r.before.sort_unstable();
    r.window.sort_unstable();
    r
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let f: Vec<&str> = s.split_whitespace().take(3).collect();
            (f.len() == 3).then(|| f.join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn arg<T: std::str::FromStr + PartialOrd + Default>(i: usize, default: T, what: &str) -> T {
    match std::env::args().nth(i).map(|a| a.parse::<T>()) {
        None => default,
        Some(Ok(v)) if v > T::default() => v,
        Some(_) => {
            eprintln!("snapshot_stall: {what} must be a positive number");
            eprintln!("usage: snapshot_stall [KEYS] [WRITES_PER_SEC] [ROUNDS]");
            std::process::exit(2);
        }
    }
}

fn main() {
    let n: u64 = arg(1, 1_000_000, "KEYS");
    let rate: f64 = arg(2, 20_000.0, "WRITES_PER_SEC");
    let rounds: u32 = arg(3, 2, "ROUNDS");
    let keys: Vec<Bytes> = (0..n)
        .map(|i| Bytes::from(format!("key-{i:012}")))
        .collect();
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let mut copy = Design::Copy {
        map: Box::default(),
        dedup: HashMap::new(),
        applied: 0,
    };
    let mut overlay = Design::Overlay(KvState::new());
    for (i, k) in keys.iter().enumerate() {
        let cmd = Command {
            op: CommandOp::OpPut as i32,
            key: k.clone(),
            value: value.clone(),
            client_id: i as u64 % 1000 + 1,
            seq: i as u64 / 1000 + 1,
        };
        copy.apply(i as u64 + 1, &cmd);
        overlay.apply(i as u64 + 1, &cmd);
    }
    println!(
        "snapshot_stall: {n} keys, {VALUE_BYTES}-byte values, {rate} writes/s offered, batches \
         of {APPLY_BATCH}, fold steps of {FOLD_CHUNK}; load average before: {}",
        load_average()
    );
    println!(
        "mode     hold_ms  encode_ms  MiB  fold_ms steps max_step_ms  overlay  \
         | window: writes  p50_ms  p99_ms  max_ms | before: p99_ms  max_ms"
    );
    let mut failed = false;
    for round in 0..2 * rounds {
        let design = if round % 2 == 0 {
            &mut copy
        } else {
            &mut overlay
        };
        let r = run(design, &keys, rate);
        println!(
            "{:<8} {:>7.2}  {:>9.1}  {:>3}  {:>7.2} {:>5} {:>11.2}  {:>7}  | {:>14}  {:>6.2}  {:>6.2}  {:>6.2} | {:>14.2}  {:>6.2}",
            design.name(),
            ms(r.hold),
            ms(r.encode),
            r.bytes >> 20,
            ms(r.fold),
            r.fold_steps,
            ms(r.fold_max),
            r.overlay_peak,
            r.window.len(),
            pct(&r.window, 0.50),
            pct(&r.window, 0.99),
            r.window.last().map_or(f64::NAN, |d| ms(*d)),
            pct(&r.before, 0.99),
            r.before.last().map_or(f64::NAN, |d| ms(*d)),
        );
        if !r.finished {
            eprintln!(
                "snapshot_stall: {} did not finish its snapshot and fold within {MODE_LIMIT:?}",
                design.name()
            );
            failed = true;
        }
        if r.window.is_empty() || r.before.is_empty() {
            eprintln!(
                "snapshot_stall: {}: no write samples in a window; nothing to report",
                design.name()
            );
            failed = true;
        }
    }
    println!("load average after: {}", load_average());
    if failed {
        std::process::exit(1);
    }
}
