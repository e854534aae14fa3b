//! Profiling harness: N random `u64` inserts, then N gets, on `SkipMap` (and then on
//! `BTreeMap` unless the second argument is `ours`), printing ns per operation. Small
//! enough to run under `valgrind --tool=cachegrind --cache-sim=yes` or callgrind:
//!
//! ```text
//! cargo build --release -p skiplist --example probe
//! valgrind --tool=cachegrind --cache-sim=yes target/release/examples/probe 1000000 ours
//! ```
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut x = 42u64;
    let mut next = || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let keys: Vec<u64> = (0..n).map(|_| next()).collect();
    let mut m = skiplist::SkipMap::new();
    let t = Instant::now();
    for &k in &keys {
        m.insert(k, k);
    }
    let ins = t.elapsed();
    let t = Instant::now();
    let mut hit = 0;
    for &k in keys.iter().rev() {
        hit += usize::from(black_box(m.get(&k)).is_some());
    }
    let get = t.elapsed();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    let t = Instant::now();
    let mut seen = 0;
    for _ in 0..3 {
        for e in m.iter() {
            black_box(e);
            seen += 1;
        }
    }
    let iter = t.elapsed().as_nanos() as f64 / seen as f64;
    let scans = if n > 100 { n / 100 } else { 0 };
    let t = Instant::now();
    for i in 0..scans {
        let a = sorted[(i * 7919) % (n - 100)];
        let b = sorted[(i * 7919) % (n - 100) + 100];
        for e in m.range(a..b) {
            black_box(e);
        }
    }
    let range = t.elapsed().as_nanos() as f64 / scans.max(1) as f64;
    println!("iter {iter:.1} ns/entry, range100 {range:.0} ns/scan");
    if std::env::args().nth(2).as_deref() == Some("ours") {
        println!("n {n}: insert {:?}, get {:?} ({hit})", ins, get);
        return;
    }
    let mut b = std::collections::BTreeMap::new();
    let t = Instant::now();
    for &k in &keys {
        b.insert(k, k);
    }
    let bins = t.elapsed();
    let t = Instant::now();
    for &k in keys.iter().rev() {
        hit += usize::from(black_box(b.get(&k)).is_some());
    }
    let bget = t.elapsed();
    let ns = |d: std::time::Duration| d.as_nanos() as f64 / n as f64;
    println!(
        "n {n}: insert {:.0} ns, get {:.0} ns | btree insert {:.0} ns, get {:.0} ns ({hit})",
        ns(ins),
        ns(get),
        ns(bins),
        ns(bget)
    );
}
