//! Ten million entries: insert, look up a sample, clear and drop, all without recursion.
//! Meant for `cargo test --release` (a few seconds); in a debug build it takes minutes.

use skiplist::SkipMap;

#[test]
fn ten_million_entries_insert_and_drop() {
    const N: u64 = 10_000_000;
    let mut m: SkipMap<u64, u64> = SkipMap::with_seed(7);
    // Ascending order keeps the test fast (each search follows the list's right edge); the
    // tower heights are random all the same, so the structure is a real 10M-node list.
    m.extend((0..N).map(|k| (k, k ^ 0xABCD)));
    // A multiplicative permutation, for sample lookups spread over the whole key range.
    let key = |i: u64| i.wrapping_mul(6_364_136_223_846_793_005) % N;
    assert_eq!(m.len(), N as usize);
    for i in 0..1000 {
        let k = key(i);
        assert_eq!(m.get(&k), Some(&(k ^ 0xABCD)));
    }
    assert_eq!(m.first_key_value(), Some((&0, &0xABCD)));
    assert_eq!(m.last_key_value(), Some((&(N - 1), &((N - 1) ^ 0xABCD))));
    drop(m);

    // And clear() of a long list of heap-owning entries.
    let mut s: SkipMap<u64, Vec<u8>> = (0..2_000_000).map(|i| (i, vec![1])).collect();
    s.clear();
    assert!(s.is_empty());
}
