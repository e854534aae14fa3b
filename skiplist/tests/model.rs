//! Model test: random operations applied to a `SkipMap` and to `std::collections::BTreeMap`
//! side by side; every return value, `len`, iteration and range output must agree.

use std::collections::BTreeMap;
use std::ops::Bound;

use skiplist::SkipMap;

mod common;
use common::{Rng, bound, std_panics};

/// What our `range` returns: empty for any inverted or empty-by-construction range.
fn model_range(model: &BTreeMap<u32, u64>, start: Bound<u32>, end: Bound<u32>) -> Vec<(u32, u64)> {
    if std_panics(start, end) {
        return Vec::new();
    }
    model.range((start, end)).map(|(k, v)| (*k, *v)).collect()
}

fn run(seed: u64, ops: usize, key_space: u64) {
    let mut rng = Rng(seed);
    let mut ours: SkipMap<u32, u64> = SkipMap::with_seed(seed ^ 0xABCD);
    let mut model: BTreeMap<u32, u64> = BTreeMap::new();
    for step in 0..ops {
        let key = rng.below(key_space) as u32;
        let ctx = || format!("seed {seed} step {step} key {key}");
        match rng.below(100) {
            0..=34 => {
                let v = rng.next();
                assert_eq!(
                    ours.insert(key, v),
                    model.insert(key, v),
                    "insert: {}",
                    ctx()
                );
            }
            35..=54 => assert_eq!(ours.remove(&key), model.remove(&key), "remove: {}", ctx()),
            55..=69 => assert_eq!(ours.get(&key), model.get(&key), "get: {}", ctx()),
            70..=74 => assert_eq!(
                ours.contains_key(&key),
                model.contains_key(&key),
                "contains: {}",
                ctx()
            ),
            75..=79 => {
                let add = rng.next();
                let a = ours.get_mut(&key).map(|v| {
                    *v = v.wrapping_add(add);
                    *v
                });
                let b = model.get_mut(&key).map(|v| {
                    *v = v.wrapping_add(add);
                    *v
                });
                assert_eq!(a, b, "get_mut: {}", ctx());
            }
            80..=94 => {
                let (s, e) = (bound(&mut rng, key_space), bound(&mut rng, key_space));
                let got: Vec<(u32, u64)> = ours.range((s, e)).map(|(k, v)| (*k, *v)).collect();
                assert_eq!(
                    got,
                    model_range(&model, s, e),
                    "range {s:?}..{e:?}: {}",
                    ctx()
                );
            }
            95..=96 => {
                assert_eq!(
                    ours.first_key_value(),
                    model.first_key_value(),
                    "first: {}",
                    ctx()
                );
                assert_eq!(
                    ours.last_key_value(),
                    model.last_key_value(),
                    "last: {}",
                    ctx()
                );
            }
            97 => {
                assert!(ours.iter().eq(model.iter()), "iter: {}", ctx());
                assert_eq!(ours.iter().len(), model.len());
            }
            98 => {
                // Remove-entry of the smallest key, as a queue would.
                if let Some((&k, _)) = model.first_key_value() {
                    assert_eq!(
                        ours.remove_entry(&k),
                        model.remove_entry(&k),
                        "remove_entry: {}",
                        ctx()
                    );
                }
            }
            _ => {
                if rng.below(200) == 0 {
                    ours.clear();
                    model.clear();
                }
            }
        }
        assert_eq!(ours.len(), model.len(), "len: {}", ctx());
        assert_eq!(ours.is_empty(), model.is_empty(), "is_empty: {}", ctx());
    }
    assert!(ours.iter().eq(model.iter()), "final iter, seed {seed}");
}

#[test]
fn model_small_key_space() {
    for seed in [1, 2, 3] {
        run(seed, 100_000, 64);
    }
}

#[test]
fn model_medium_key_space() {
    for seed in [10, 11, 12, 13] {
        run(seed, 100_000, 5_000);
    }
}

#[test]
fn model_large_key_space() {
    for seed in [20, 21] {
        run(seed, 100_000, 1 << 30);
    }
}

#[test]
fn every_bound_kind_on_a_fixed_map() {
    let ours: SkipMap<u32, u64> = (0..50u32).map(|k| (k * 2, u64::from(k))).collect();
    let model: BTreeMap<u32, u64> = ours.iter().map(|(k, v)| (*k, *v)).collect();
    let bounds = |k: u32| [Bound::Included(k), Bound::Excluded(k), Bound::Unbounded];
    for a in 0..=101 {
        for b in 0..=101 {
            for s in bounds(a) {
                for e in bounds(b) {
                    let got: Vec<(u32, u64)> = ours.range((s, e)).map(|(k, v)| (*k, *v)).collect();
                    assert_eq!(got, model_range(&model, s, e), "{s:?}..{e:?}");
                }
            }
        }
    }
}

#[test]
fn borrowed_lookups_and_ranges() {
    let mut m: SkipMap<String, usize> = SkipMap::new();
    for (i, w) in ["pear", "apple", "fig", "kiwi", "banana"]
        .iter()
        .enumerate()
    {
        m.insert((*w).to_string(), i);
    }
    assert_eq!(m.get("fig"), Some(&2));
    assert!(m.contains_key("kiwi"));
    let mid: Vec<&str> = m
        .range::<str, _>((Bound::Included("b"), Bound::Excluded("l")))
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(mid, ["banana", "fig", "kiwi"]);
    assert_eq!(m.remove("apple"), Some(1));
    assert_eq!(
        format!("{m:?}"),
        r#"{"banana": 4, "fig": 2, "kiwi": 3, "pear": 0}"#
    );
}

#[test]
fn std_traits() {
    let a: SkipMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
    let mut b = SkipMap::default();
    b.extend((0..100).rev().map(|i| (i, i)));
    assert_eq!(a, b);
    let c = a.clone();
    assert_eq!(a, c);
    b.insert(5, 6);
    assert_ne!(a, b);
    let mut n = 0;
    for (k, v) in &a {
        assert_eq!(k, v);
        n += 1;
    }
    assert_eq!(n, 100);
    assert_eq!(a[&7], 7);
}

#[test]
fn same_seed_same_structure_and_answers() {
    // Determinism: the same seed and operations give the same iteration and lookups.
    let build = || -> SkipMap<u64, u64> {
        let mut rng = Rng(99);
        let mut m = SkipMap::with_seed(7);
        for _ in 0..10_000 {
            let k = rng.below(3000);
            if rng.below(3) == 0 {
                m.remove(&k);
            } else {
                m.insert(k, k);
            }
        }
        m
    };
    assert_eq!(build(), build());
}
