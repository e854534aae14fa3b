//! `skiplist-bench`: raftkv's `SkipMap` beside std `BTreeMap` and crossbeam-skiplist's
//! `SkipMap`, same workloads, same process, one thread.
//!
//! For each data set (random `u64 → u64` at each N; `bytes16`: 16-byte `Vec<u8>` keys
//! with 100-byte `Vec<u8>` values; and `Bytes16`: the same keys and values as
//! `bytes::Bytes`, what the kvserver state machine stores) and each structure it measures, in this order: insert
//! of N keys in random order, get of every key (hit, another random order), get of N absent
//! keys (miss), full iteration, 100-key range scans, and remove of every key. The three
//! structures take turns op by op (three inserts, then three get-hit runs, ...), so that
//! a ratio compares runs made seconds apart on a machine whose load may change. Memory per
//! entry is the growth of live heap bytes (counted by this binary's global allocator) from
//! before the input is built to after the map holds it, divided by N: keys and values on
//! the heap are included, for every structure alike.
//!
//! Run: `cargo run --release -p bench --bin skiplist-bench [-- --quick | --json | --n N,M | --seed S]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use serde::Serialize;

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only
// adds bookkeeping on a counter, so `System`'s guarantees carry over.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The smallest data set: every operation, range100 included, needs samples.
const MIN_N: usize = 101;

#[derive(Parser, Debug)]
#[command(about = "raftkv SkipMap vs std BTreeMap vs crossbeam-skiplist, single thread")]
struct Args {
    /// Sizes of the u64 data sets, comma-separated, each at least 101 (default
    /// 100000,1000000; the bytes16 data set uses the largest).
    #[arg(long, value_delimiter = ',')]
    n: Vec<usize>,
    /// Seed for keys, orders and the maps' RNG.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Small sizes (10000,100000) for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object per measurement instead of the table.
    #[arg(long)]
    json: bool,
}

/// One measurement, as printed by `--json`.
#[derive(Serialize, Debug)]
struct Row {
    structure: &'static str,
    n: usize,
    key: &'static str,
    op: &'static str,
    ops_per_sec: f64,
    bytes_per_entry: f64,
}

const OPS: [&str; 6] = [
    "insert", "get_hit", "get_miss", "iter", "range100", "remove",
];
const STRUCTURES: [&str; 3] = ["raftkv", "btreemap", "crossbeam"];

/// The operations measured, as each structure spells them.
trait Map<K, V> {
    fn new(seed: u64) -> Self;
    fn insert(&mut self, k: K, v: V);
    fn get(&self, k: &K) -> bool;
    fn remove(&mut self, k: &K) -> bool;
    /// Visits every entry; returns how many.
    fn iter_all(&self) -> usize;
    /// Visits the entries in `[a, b)`; returns how many.
    fn range(&self, a: &K, b: &K) -> usize;
}

impl<K: Ord + skiplist::KeyPrefix, V> Map<K, V> for skiplist::SkipMap<K, V> {
    fn new(seed: u64) -> Self {
        skiplist::SkipMap::with_seed(seed)
    }
    fn insert(&mut self, k: K, v: V) {
        black_box(skiplist::SkipMap::insert(self, k, v));
    }
    fn get(&self, k: &K) -> bool {
        black_box(skiplist::SkipMap::get(self, k)).is_some()
    }
    fn remove(&mut self, k: &K) -> bool {
        black_box(skiplist::SkipMap::remove(self, k)).is_some()
    }
    fn iter_all(&self) -> usize {
        visit(self.iter())
    }
    fn range(&self, a: &K, b: &K) -> usize {
        visit(skiplist::SkipMap::range(self, a..b))
    }
}

impl<K: Ord, V> Map<K, V> for BTreeMap<K, V> {
    fn new(_seed: u64) -> Self {
        BTreeMap::new()
    }
    fn insert(&mut self, k: K, v: V) {
        black_box(BTreeMap::insert(self, k, v));
    }
    fn get(&self, k: &K) -> bool {
        black_box(BTreeMap::get(self, k)).is_some()
    }
    fn remove(&mut self, k: &K) -> bool {
        black_box(BTreeMap::remove(self, k)).is_some()
    }
    fn iter_all(&self) -> usize {
        visit(self.iter())
    }
    fn range(&self, a: &K, b: &K) -> usize {
        visit(BTreeMap::range(self, a..b))
    }
}

impl<K: Ord + Send + 'static, V: Send + 'static> Map<K, V> for crossbeam_skiplist::SkipMap<K, V> {
    fn new(_seed: u64) -> Self {
        crossbeam_skiplist::SkipMap::new()
    }
    fn insert(&mut self, k: K, v: V) {
        black_box(crossbeam_skiplist::SkipMap::insert(self, k, v));
    }
    fn get(&self, k: &K) -> bool {
        crossbeam_skiplist::SkipMap::get(self, k)
            .map(|e| black_box(e.value()) as *const V)
            .is_some()
    }
    fn remove(&mut self, k: &K) -> bool {
        black_box(crossbeam_skiplist::SkipMap::remove(self, k)).is_some()
    }
    fn iter_all(&self) -> usize {
        visit(
            self.iter()
                .map(|e| (e.key() as *const K, e.value() as *const V)),
        )
    }
    fn range(&self, a: &K, b: &K) -> usize {
        visit(
            crossbeam_skiplist::SkipMap::range(self, a..b)
                .map(|e| (e.key() as *const K, e.value() as *const V)),
        )
    }
}

/// Consumes an iterator, passing each item through `black_box`; returns the count.
fn visit<I: Iterator>(it: I) -> usize {
    let mut n = 0;
    for item in it {
        black_box(item);
        n += 1;
    }
    n
}

/// One data set: what is inserted, looked up, missed and scanned.
struct Data<K, V> {
    name: &'static str,
    /// Entries in insertion order (random).
    entries: Vec<(K, V)>,
    /// Every key, in another random order (gets and removes).
    hits: Vec<K>,
    /// Absent keys.
    misses: Vec<K>,
    /// `[a, b)` bounds holding exactly 100 keys each.
    ranges: Vec<(K, K)>,
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Builds a data set from a key maker: `key(rng, hit)` gives a key with its low bit clear
/// for hits and set for misses, so the two sets never meet.
fn make_data<K: Ord + Clone, V>(
    name: &'static str,
    n: usize,
    seed: u64,
    key: impl Fn(&mut Rng, bool) -> K,
    value: impl Fn(&mut Rng) -> V,
) -> Data<K, V> {
    let mut rng = Rng(seed);
    let mut keys: Vec<K> = (0..n).map(|_| key(&mut rng, true)).collect();
    keys.sort();
    keys.dedup();
    while keys.len() < n {
        // Astronomically rare for random 64-bit or 128-bit keys; keep N exact anyway.
        keys.push(key(&mut rng, true));
        keys.sort();
        keys.dedup();
    }
    let scans = (n / 10).clamp(1, 100_000);
    let ranges = if n > 100 {
        (0..scans)
            .map(|_| {
                let i = rng.below(n - 100);
                (keys[i].clone(), keys[i + 100].clone())
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut entries: Vec<(K, V)> = keys.iter().map(|k| (k.clone(), value(&mut rng))).collect();
    rng.shuffle(&mut entries);
    let mut hits = keys;
    rng.shuffle(&mut hits);
    let misses = (0..n).map(|_| key(&mut rng, false)).collect();
    Data {
        name,
        entries,
        hits,
        misses,
        ranges,
    }
}

fn per_sec(ops: usize, d: Duration) -> f64 {
    ops as f64 / d.as_secs_f64().max(1e-9)
}

/// Builds a map from the data set's entries in their (random) order; returns the map,
/// inserts per second, and live heap bytes per entry (input copy included in "before", so
/// what remains is the map with the keys and values it owns).
fn build<K: Clone, V: Clone, M: Map<K, V>>(data: &Data<K, V>, seed: u64) -> (M, f64, f64) {
    let n = data.entries.len();
    let before = live_bytes();
    let input = data.entries.clone();
    let mut map = M::new(seed);
    let t = Instant::now();
    for (k, v) in input {
        map.insert(k, v);
    }
    let rate = per_sec(n, t.elapsed());
    let bytes = live_bytes().saturating_sub(before) as f64 / n as f64;
    (map, rate, bytes)
}

fn get_all<K, V, M: Map<K, V>>(map: &M, keys: &[K], expect_found: bool) -> f64 {
    let t = Instant::now();
    let mut found = 0;
    for k in keys {
        found += usize::from(map.get(k));
    }
    let rate = per_sec(keys.len(), t.elapsed());
    assert_eq!(
        found,
        if expect_found { keys.len() } else { 0 },
        "lookups agree with the data set"
    );
    rate
}

/// Full iterations, repeated to at least 200 ms so small maps are measured too.
fn iter_all<K, V, M: Map<K, V>>(map: &M) -> f64 {
    let t = Instant::now();
    let mut visited = 0;
    loop {
        visited += map.iter_all();
        if t.elapsed() >= Duration::from_millis(200) {
            break;
        }
    }
    per_sec(visited, t.elapsed())
}

fn scan_all<K, V, M: Map<K, V>>(map: &M, ranges: &[(K, K)]) -> f64 {
    let t = Instant::now();
    let mut visited = 0;
    for (a, b) in ranges {
        visited += map.range(a, b);
    }
    let rate = per_sec(ranges.len(), t.elapsed());
    assert_eq!(visited, ranges.len() * 100, "every scan sees 100 keys");
    rate
}

fn remove_all<K, V, M: Map<K, V>>(mut map: M, keys: &[K]) -> f64 {
    let t = Instant::now();
    let mut removed = 0;
    for k in keys {
        removed += usize::from(map.remove(k));
    }
    let rate = per_sec(keys.len(), t.elapsed());
    assert_eq!(removed, keys.len(), "every key is removed once");
    rate
}

struct Results {
    key: &'static str,
    n: usize,
    /// `[structure][op]` ops/s, and bytes per entry per structure.
    ops: [[f64; 6]; 3],
    bytes: [f64; 3],
}

/// Measures the three structures op by op (all three inserts, then all three get-hit
/// runs, and so on), so that each ratio compares runs made seconds apart, not a minute
/// apart on a machine whose load changes.
fn bench_set<K: Ord + skiplist::KeyPrefix + Clone + Send + 'static, V: Clone + Send + 'static>(
    data: &Data<K, V>,
    seed: u64,
) -> Results {
    let mut ops = [[0.0; 6]; 3];
    let mut bytes = [0.0; 3];
    let (a, rate, b0) = build::<K, V, skiplist::SkipMap<K, V>>(data, seed);
    (ops[0][0], bytes[0]) = (rate, b0);
    let (b, rate, b1) = build::<K, V, BTreeMap<K, V>>(data, seed);
    (ops[1][0], bytes[1]) = (rate, b1);
    let (c, rate, b2) = build::<K, V, crossbeam_skiplist::SkipMap<K, V>>(data, seed);
    (ops[2][0], bytes[2]) = (rate, b2);
    ops[0][1] = get_all(&a, &data.hits, true);
    ops[1][1] = get_all(&b, &data.hits, true);
    ops[2][1] = get_all(&c, &data.hits, true);
    ops[0][2] = get_all(&a, &data.misses, false);
    ops[1][2] = get_all(&b, &data.misses, false);
    ops[2][2] = get_all(&c, &data.misses, false);
    ops[0][3] = iter_all(&a);
    ops[1][3] = iter_all(&b);
    ops[2][3] = iter_all(&c);
    ops[0][4] = scan_all(&a, &data.ranges);
    ops[1][4] = scan_all(&b, &data.ranges);
    ops[2][4] = scan_all(&c, &data.ranges);
    ops[0][5] = remove_all(a, &data.hits);
    ops[1][5] = remove_all(b, &data.hits);
    ops[2][5] = remove_all(c, &data.hits);
    Results {
        key: data.name,
        n: data.entries.len(),
        ops,
        bytes,
    }
}

fn print_table(r: &Results) {
    let kind = match r.key {
        "u64" => "u64 -> u64",
        "Bytes16" => "16-byte bytes::Bytes keys -> 100-byte bytes::Bytes values",
        _ => "16-byte Vec<u8> keys -> 100-byte Vec<u8> values",
    };
    println!("\n{} entries, {kind}", r.n);
    println!(
        "{:<10} {:>14} {:>14} {:>14} {:>11} {:>11}",
        "op", "raftkv ops/s", "btreemap ops/s", "crossbeam ops/s", "/btreemap", "/crossbeam"
    );
    for (i, op) in OPS.iter().enumerate() {
        let [a, b, c] = [r.ops[0][i], r.ops[1][i], r.ops[2][i]];
        println!(
            "{op:<10} {a:>14.0} {b:>14.0} {c:>15.0} {:>10.2}x {:>10.2}x",
            a / b,
            a / c
        );
    }
    let [a, b, c] = r.bytes;
    println!(
        "{:<10} {a:>14.1} {b:>14.1} {c:>15.1} {:>10.2}x {:>10.2}x",
        "bytes/ent",
        a / b,
        a / c
    );
}

fn verdict(name: &str, value: f64, target: f64, higher_is_better: bool) {
    let met = if higher_is_better {
        value >= target
    } else {
        value <= target
    };
    let cmp = if higher_is_better { ">=" } else { "<=" };
    println!(
        "  {name:<44} {value:>7.2}  (target {cmp} {target}) {}",
        if met { "met" } else { "MISSED" }
    );
}

fn main() {
    let args = Args::parse();
    let mut sizes = if !args.n.is_empty() {
        args.n.clone()
    } else if args.quick {
        vec![10_000, 100_000]
    } else {
        vec![100_000, 1_000_000]
    };
    sizes.sort_unstable();
    sizes.dedup();
    if let Some(&bad) = sizes.iter().find(|&&n| n < MIN_N) {
        eprintln!(
            "skiplist-bench: --n {bad} is too small: each size needs at least {MIN_N} entries \
             (range100 scans 100 keys at a time; with fewer, some operations get zero samples \
             and there is nothing to report). Try --n 10000 or --quick."
        );
        std::process::exit(2);
    }
    let Some(&largest) = sizes.last() else {
        eprintln!("skiplist-bench: no data set size given; try --n 100000");
        std::process::exit(2);
    };

    if !args.json {
        println!(
            "skiplist-bench: seed {}, single thread; ops/s, higher is better (iter: entries/s, range100: scans/s)",
            args.seed
        );
    }
    let mut all = Vec::new();
    for &n in &sizes {
        let data = make_data(
            "u64",
            n,
            args.seed ^ n as u64,
            |r, hit| (r.next() & !1) | u64::from(!hit),
            |r| r.next(),
        );
        let res = bench_set(&data, args.seed);
        drop(data);
        if !args.json {
            print_table(&res);
        }
        all.push(res);
    }
    let data = make_data(
        "bytes16",
        largest,
        args.seed ^ 0xB16,
        |r, hit| {
            let mut k = [r.next().to_be_bytes(), r.next().to_be_bytes()].concat();
            k[15] = (k[15] & !1) | u8::from(!hit);
            k
        },
        |r| {
            let mut v = vec![0u8; 100];
            v[..8].copy_from_slice(&r.next().to_le_bytes());
            v
        },
    );
    let res = bench_set(&data, args.seed);
    if !args.json {
        print_table(&res);
    }
    all.push(res);
    // The same keys and values as `bytes::Bytes` (each its own allocation, as when the
    // state machine copies a command's key and value out of a message).
    let data = Data {
        name: "Bytes16",
        entries: data
            .entries
            .iter()
            .map(|(k, v)| (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)))
            .collect(),
        hits: data
            .hits
            .iter()
            .map(|k| Bytes::copy_from_slice(k))
            .collect(),
        misses: data
            .misses
            .iter()
            .map(|k| Bytes::copy_from_slice(k))
            .collect(),
        ranges: data
            .ranges
            .iter()
            .map(|(a, b)| (Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)))
            .collect(),
    };
    // The first clone of a `Bytes` made from a `Vec` allocates a shared header for it
    // (it "promotes" it); later clones only count references. Clone once now, so that
    // the map measured first is not charged for it in its bytes per entry.
    drop(data.entries.clone());
    let res = bench_set(&data, args.seed);
    drop(data);
    if !args.json {
        print_table(&res);
    }
    all.push(res);

    // A measurement without samples is an error, never a row of NaN or zeros.
    for r in &all {
        for (s, structure) in STRUCTURES.iter().enumerate() {
            for (i, op) in OPS.iter().enumerate() {
                let v = r.ops[s][i];
                if !v.is_finite() || v <= 0.0 {
                    eprintln!(
                        "skiplist-bench: {structure} {op} on {} {} entries got no samples \
                         ({v} ops/s); nothing is reported",
                        r.n, r.key
                    );
                    std::process::exit(1);
                }
            }
        }
    }

    if args.json {
        for r in &all {
            for (s, structure) in STRUCTURES.iter().enumerate() {
                for (i, op) in OPS.iter().enumerate() {
                    let row = Row {
                        structure,
                        n: r.n,
                        key: r.key,
                        op,
                        ops_per_sec: r.ops[s][i],
                        bytes_per_entry: r.bytes[s],
                    };
                    match serde_json::to_string(&row) {
                        Ok(line) => println!("{line}"),
                        Err(e) => eprintln!("skiplist-bench: cannot encode a row: {e}"),
                    }
                }
            }
        }
        return;
    }

    // Targets from issue 11 (item 3): point operations on byte keys at least as fast as
    // BTreeMap's.
    for r in all.iter().filter(|r| r.key != "u64") {
        println!("\ntargets ({} keys, {} entries):", r.key, r.n);
        for (i, op) in [
            (0, "insert"),
            (1, "get hit"),
            (2, "get miss"),
            (5, "remove"),
        ] {
            verdict(
                &format!("{op}, raftkv / btreemap"),
                r.ops[0][i] / r.ops[1][i],
                1.0,
                true,
            );
        }
    }

    // Targets from issue 2, on the largest u64 set.
    let Some(r) = all.iter().find(|r| r.key == "u64" && r.n == largest) else {
        return;
    };
    println!("\ntargets (u64 -> u64, {} entries):", r.n);
    let (ins, get, range) = (0, 1, 4);
    verdict(
        "insert, raftkv / crossbeam",
        r.ops[0][ins] / r.ops[2][ins],
        2.5,
        true,
    );
    verdict(
        "insert, raftkv / btreemap",
        r.ops[0][ins] / r.ops[1][ins],
        0.5,
        true,
    );
    verdict(
        "get hit, raftkv / crossbeam",
        r.ops[0][get] / r.ops[2][get],
        2.5,
        true,
    );
    verdict(
        "get hit, raftkv / btreemap",
        r.ops[0][get] / r.ops[1][get],
        0.5,
        true,
    );
    verdict(
        "bytes/entry, raftkv / btreemap",
        r.bytes[0] / r.bytes[1],
        1.5,
        false,
    );
    verdict(
        "range100, raftkv / btreemap",
        r.ops[0][range] / r.ops[1][range],
        0.8,
        true,
    );
    verdict(
        "insert / C++ original's 243,900/s",
        r.ops[0][ins] / 243_900.0,
        10.0,
        true,
    );
    verdict(
        "get / C++ original's 184,100/s",
        r.ops[0][get] / 184_100.0,
        10.0,
        true,
    );
}
