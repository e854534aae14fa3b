use lincheck::generate::{KvGen, linearizable_kv, stale_read};
use lincheck::{CheckOptions, KvModel, check};
use std::time::{Duration, Instant};
fn main() {
    let a: Vec<u64> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let g = KvGen {
        clients: a[0] as usize,
        ops: 1000,
        keys: 1,
        max_think: a[1],
        max_latency: a[2],
        unknown_per_mille: a[3] as u32,
    };
    let h = linearizable_kv(1, &g);
    for (n, hh) in [("ok", h.clone()), ("stale", stale_read(&h, 1).unwrap())] {
        let t = Instant::now();
        let r = check(
            &KvModel::default(),
            &hh,
            &CheckOptions::with_timeout(Duration::from_secs(10)),
        );
        println!(
            "{n}: {:?} {:?} steps {} cache {}",
            r.verdict,
            t.elapsed(),
            r.partitions[0].steps,
            r.partitions[0].cache_entries
        );
    }
}
