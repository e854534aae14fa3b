//! Model test with large values, so that nodes hold the minimum of 8 entries: splits,
//! emptied nodes being unlinked, and ranges across many node boundaries happen at every
//! few operations instead of every few dozen.

use std::collections::BTreeMap;

use skiplist::SkipMap;

mod common;
use common::{Rng, bound, std_panics};

/// A 512-byte value: nodes of this value type hold the minimum capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Big([u64; 64]);

impl Big {
    fn new(x: u64) -> Self {
        let mut a = [0; 64];
        a[0] = x;
        a[63] = !x;
        Big(a)
    }
}

fn run(seed: u64, ops: usize, key_space: u64) {
    let mut rng = Rng(seed);
    let mut ours: SkipMap<u32, Big> = SkipMap::with_seed(seed);
    let mut model: BTreeMap<u32, Big> = BTreeMap::new();
    for step in 0..ops {
        let key = rng.below(key_space) as u32;
        let ctx = format!("seed {seed} step {step} key {key}");
        match rng.below(10) {
            0..=3 => {
                let v = Big::new(rng.next());
                assert_eq!(ours.insert(key, v), model.insert(key, v), "insert {ctx}");
            }
            4..=6 => assert_eq!(ours.remove(&key), model.remove(&key), "remove {ctx}"),
            7 => assert_eq!(ours.get(&key), model.get(&key), "get {ctx}"),
            8 => {
                let (s, e) = (bound(&mut rng, key_space), bound(&mut rng, key_space));
                let got: Vec<u32> = ours.range((s, e)).map(|(k, _)| *k).collect();
                let want: Vec<u32> = if std_panics(s, e) {
                    Vec::new()
                } else {
                    model.range((s, e)).map(|(k, _)| *k).collect()
                };
                assert_eq!(got, want, "range {s:?}..{e:?} {ctx}");
            }
            _ => {
                assert_eq!(ours.first_key_value(), model.first_key_value(), "{ctx}");
                assert_eq!(ours.last_key_value(), model.last_key_value(), "{ctx}");
                if rng.below(50) == 0 {
                    assert!(ours.iter().eq(model.iter()), "iter {ctx}");
                }
            }
        }
        assert_eq!(ours.len(), model.len(), "len {ctx}");
    }
    assert!(ours.iter().eq(model.iter()), "final iter, seed {seed}");
    // Drain in ascending, then random order, down to empty: every node gets unlinked.
    let keys: Vec<u32> = model.keys().copied().collect();
    for (i, k) in keys.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(ours.remove(k), model.remove(k));
        }
    }
    assert!(ours.iter().eq(model.iter()));
    for k in keys.iter().rev() {
        assert_eq!(ours.remove(k), model.remove(k));
    }
    assert!(ours.is_empty());
    assert_eq!(ours.iter().next(), None);
    assert_eq!(ours.first_key_value(), None);
    assert_eq!(ours.last_key_value(), None);
    ours.insert(5, Big::new(5));
    assert_eq!(ours.get(&5), Some(&Big::new(5)));
}

#[test]
fn small_nodes_model() {
    for (seed, space) in [(1, 16), (2, 64), (3, 500), (4, 5_000), (5, 1 << 30)] {
        run(seed, 30_000, space);
    }
}

#[test]
fn ascending_descending_and_bulk_loaded() {
    // Ascending inserts fill nodes; descending ones split at the front; a clone is
    // bulk-built; all must agree and stay ordered through later inserts and removes.
    let up: SkipMap<u32, Big> = (0..3000).map(|i| (i, Big::new(u64::from(i)))).collect();
    let down: SkipMap<u32, Big> = (0..3000)
        .rev()
        .map(|i| (i, Big::new(u64::from(i))))
        .collect();
    assert_eq!(up, down);
    let mut c = up.clone();
    assert_eq!(c, up);
    for i in (0..3000).step_by(7) {
        c.insert(i * 2 + 1_000_000, Big::new(0));
        c.insert(i, Big::new(1));
        assert_eq!(
            c.remove(&(i + 3)),
            (i + 3 < 3000).then(|| Big::new(u64::from(i + 3)))
        );
    }
    let keys: Vec<u32> = c.iter().map(|(k, _)| *k).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(keys.len(), c.len());
    assert_eq!(
        c.range(10..20).count(),
        (10..20).filter(|k| keys.contains(k)).count()
    );
}

#[test]
fn over_aligned_keys_and_values() {
    #[repr(align(64))]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct A(u128);
    impl skiplist::KeyPrefix for A {}
    let mut m: SkipMap<A, A> = SkipMap::with_seed(9);
    for i in 0..5000u128 {
        let k = (i * 7919) % 5000;
        m.insert(A(k), A(k * 3));
    }
    for (k, v) in &m {
        assert_eq!((k as *const A as usize) % 64, 0);
        assert_eq!((v as *const A as usize) % 64, 0);
        assert_eq!(v.0, k.0 * 3);
    }
    assert!(m.iter().map(|(k, _)| k.0).eq(0..5000));
    for i in (0..5000u128).step_by(3) {
        assert_eq!(m.remove(&A(i)), Some(A(i * 3)));
    }
    assert_eq!(m.len(), 5000 - 1667);
    let mut u: SkipMap<u128, u8> = (0..1000u128).map(|i| (i << 64, i as u8)).collect();
    assert_eq!(u.remove(&(7u128 << 64)), Some(7));
    assert_eq!(u.range((5u128 << 64)..(9u128 << 64)).count(), 3);
}
