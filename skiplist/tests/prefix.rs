//! Byte-string keys, compared by their stored 8-byte prefixes first (`KeyPrefix`): the map
//! must still follow lexicographic order exactly. Keys here are built to stress the
//! prefix: empty keys, keys shorter than 8 bytes that end in zero bytes (equal prefixes,
//! different keys), keys that are prefixes of others, and keys that share their first 8
//! (or more) bytes and differ only after them.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use proptest::prelude::*;
use skiplist::{KeyPrefix, SkipMap, byte_prefix};

/// Stems the generated keys start with, chosen so that keys collide on their prefix.
const STEMS: [&[u8]; 7] = [
    b"",
    b"\0",
    b"ab",
    b"abcdefgh",
    b"abcdefgh\0\0",
    b"abcdefghijklmnop",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
];

/// A key: a stem and a suffix of up to 4 bytes from {0, 1, 'c', 0xff}.
fn key() -> impl Strategy<Value = Vec<u8>> {
    (
        0..STEMS.len(),
        prop::collection::vec(prop::sample::select(vec![0u8, 1, b'c', 0xff]), 0..=4),
    )
        .prop_map(|(s, suffix)| [STEMS[s], &suffix].concat())
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<u8>, u64),
    Remove(Vec<u8>),
    Get(Vec<u8>),
    Range(Vec<u8>, Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => key().prop_map(Op::Remove),
        2 => key().prop_map(Op::Get),
        1 => (key(), key()).prop_map(|(a, b)| Op::Range(a, b)),
    ]
}

/// Runs `ops` on a `SkipMap<K, u64>` (keys made by `mk`, looked up by `&[u8]`, the
/// borrowed form kvserver uses) and on a `BTreeMap<Vec<u8>, u64>`; every answer agrees.
fn check<K>(ops: &[Op], mk: impl Fn(&[u8]) -> K) -> Result<(), TestCaseError>
where
    K: Ord + KeyPrefix + std::borrow::Borrow<[u8]> + std::fmt::Debug,
{
    let mut ours: SkipMap<K, u64> = SkipMap::with_seed(3);
    let mut model: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Insert(k, v) => {
                prop_assert_eq!(
                    ours.insert(mk(k), *v),
                    model.insert(k.clone(), *v),
                    "{:?}",
                    op
                )
            }
            Op::Remove(k) => prop_assert_eq!(ours.remove(&k[..]), model.remove(k), "{:?}", op),
            Op::Get(k) => prop_assert_eq!(ours.get(&k[..]), model.get(k), "{:?}", op),
            Op::Range(a, b) if a <= b => {
                let got: Vec<(&[u8], u64)> = ours
                    .range::<[u8], _>((Bound::Included(&a[..]), Bound::Excluded(&b[..])))
                    .map(|(k, v)| (k.borrow(), *v))
                    .collect();
                let want: Vec<(&[u8], u64)> = model
                    .range::<[u8], _>((Bound::Included(&a[..]), Bound::Excluded(&b[..])))
                    .map(|(k, v)| (&k[..], *v))
                    .collect();
                prop_assert_eq!(got, want, "{:?}", op);
            }
            Op::Range(..) => {}
        }
    }
    prop_assert_eq!(ours.len(), model.len());
    let got: Vec<(&[u8], u64)> = ours.iter().map(|(k, v)| (k.borrow(), *v)).collect();
    let want: Vec<(&[u8], u64)> = model.iter().map(|(k, v)| (&k[..], *v)).collect();
    prop_assert_eq!(got, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Up to 1500 operations over ~2,000 possible keys: enough entries for several nodes
    /// (85 entries each for 24-byte keys), so keys sharing a prefix straddle nodes.
    #[test]
    fn vec_keys_match_btreemap(ops in prop::collection::vec(op(), 1..1500)) {
        check(&ops, |k| k.to_vec())?;
    }

    #[test]
    fn bytes_keys_match_btreemap(ops in prop::collection::vec(op(), 1..1500)) {
        check(&ops, Bytes::copy_from_slice)?;
    }

    /// The law of `KeyPrefix`: a smaller key never has a larger prefix.
    #[test]
    fn byte_prefix_is_monotone(mut keys in prop::collection::vec(key(), 2..64)) {
        keys.sort();
        for w in keys.windows(2) {
            prop_assert!(byte_prefix(&w[0]) <= byte_prefix(&w[1]), "{:?}", w);
        }
    }
}

/// Whether `f` obeys the `KeyPrefix` law on `keys` (given sorted).
fn monotone(keys: &[&[u8]], f: impl Fn(&[u8]) -> u64) -> bool {
    keys.windows(2).all(|w| f(w[0]) <= f(w[1]))
}

/// Zero padding is the only padding that keeps `"ab" < "ab\0" < "abc"`: the naive ones
/// (padding with 0xff, or reading a short key as a right-aligned number) break the law
/// on these very keys. (Mutating `byte_prefix` into either makes the model tests above,
/// and the map order checked below, fail.)
#[test]
fn short_keys_pad_with_zero_bytes() {
    let keys: [&[u8]; 6] = [b"", b"\0", b"ab", b"ab\0", b"abc", b"b"];
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    assert!(monotone(&keys, byte_prefix));
    assert_eq!(byte_prefix(b"ab"), byte_prefix(b"ab\0"));
    assert!(byte_prefix(b"ab\0") < byte_prefix(b"abc"));

    let pad_ff = |b: &[u8]| {
        let mut buf = [0xffu8; 8];
        let n = b.len().min(8);
        buf[..n].copy_from_slice(&b[..n]);
        u64::from_be_bytes(buf)
    };
    let right_aligned = |b: &[u8]| {
        b.iter()
            .take(8)
            .fold(0u64, |acc, &x| acc << 8 | u64::from(x))
    };
    assert!(
        !monotone(&keys, pad_ff),
        "0xff padding puts \"ab\" after \"ab\\0\""
    );
    assert!(
        !monotone(&keys, right_aligned),
        "numbers put \"b\" before \"ab\""
    );

    // And the map keeps them in lexicographic order, whatever the insertion order.
    let mut m = SkipMap::new();
    for k in keys.iter().rev() {
        m.insert(k.to_vec(), ());
    }
    let got: Vec<&[u8]> = m.iter().map(|(k, _)| &k[..]).collect();
    assert_eq!(got, keys);
    for k in keys {
        assert!(m.contains_key(k), "{k:?}");
    }
}

/// Keys that share their first 8 bytes (equal prefixes everywhere) across many nodes:
/// every comparison falls through to `Ord`. Inserted in a scrambled order, then removed.
#[test]
fn keys_equal_in_their_first_8_bytes() {
    let key = |i: u32| [&b"samepref"[..], &i.to_be_bytes()].concat();
    let n = 5000u32;
    let mut m: SkipMap<Vec<u8>, u32> = SkipMap::with_seed(11);
    for i in 0..n {
        let j = (u64::from(i) * 7919 % u64::from(n)) as u32; // 7919 is prime: a permutation
        assert_eq!(m.insert(key(j), j), None);
    }
    assert!(m.iter().map(|(_, v)| *v).eq(0..n));
    let (a, b) = (key(100), key(200));
    assert_eq!(
        m.range::<[u8], _>((Bound::Included(&a[..]), Bound::Excluded(&b[..])))
            .count(),
        100
    );
    assert_eq!(m.get(&b"samepref"[..]), None);
    assert_eq!(m.get(&b"samepre"[..]), None);
    for i in (0..n).step_by(2) {
        assert_eq!(m.remove(&key(i)[..]), Some(i));
    }
    assert!(m.iter().map(|(_, v)| *v).eq((1..n).step_by(2)));
}

/// A `String`-keyed map looked up by `&str`, and an integer tuple key: the trait's other
/// implementations.
#[test]
fn other_key_types() {
    let mut s: SkipMap<String, u32> = SkipMap::new();
    for w in ["b", "", "a\0", "a", "abcdefghZ", "abcdefghA"] {
        s.insert(w.to_string(), w.len() as u32);
    }
    let got: Vec<&str> = s.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(got, ["", "a", "a\0", "abcdefghA", "abcdefghZ", "b"]);
    assert_eq!(s.get("a\0"), Some(&2));
    let t: SkipMap<(i64, u8), ()> = [((-1, 0), ()), ((1, 0), ()), ((-5, 9), ())]
        .into_iter()
        .collect();
    assert_eq!(t.first_key_value(), Some((&(-5, 9), &())));
}

/// Removals that leave a node under a quarter full make it take entries from its
/// successor, which changes the successor's first key (whose prefix the node header
/// caches for searches). Every remaining key must still be found, after each step.
#[test]
fn removals_that_rebalance_nodes_keep_keys_findable() {
    let key = |i: u32| [&i.to_be_bytes()[..], b"tail"].concat();
    let n = 3000u32;
    // Ascending inserts fill nodes completely.
    let mut m: SkipMap<Vec<u8>, u32> = (0..n).map(|i| (key(i), i)).collect();
    let mut model: BTreeMap<Vec<u8>, u32> = (0..n).map(|i| (key(i), i)).collect();
    for (step, i) in (0..n).filter(|i| i % 100 < 70).enumerate() {
        assert_eq!(m.remove(&key(i)[..]), model.remove(&key(i)), "remove {i}");
        if step % 25 == 0 {
            for (k, v) in &model {
                assert_eq!(m.get(&k[..]), Some(v), "after removing {i}: {k:?}");
            }
        }
    }
    assert!(m.iter().map(|(k, v)| (k.clone(), *v)).eq(model.into_iter()));
}
