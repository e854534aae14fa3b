//! What the model tests share: a seeded RNG and random range bounds.

#![allow(dead_code)] // each test binary uses its own subset

use std::ops::Bound;

/// splitmix64, so the tests need no RNG crate and replay from their seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random bound of any kind over `0..key_space + 2` (so some fall outside every key).
pub fn bound(rng: &mut Rng, key_space: u64) -> Bound<u32> {
    let k = rng.below(key_space + 2) as u32;
    match rng.below(3) {
        0 => Bound::Included(k),
        1 => Bound::Excluded(k),
        _ => Bound::Unbounded,
    }
}

/// Whether std's `range` would panic on these bounds (start > end, or start == end with
/// both excluded). Our `range` treats every such inverted range as empty.
pub fn std_panics(start: Bound<u32>, end: Bound<u32>) -> bool {
    match (start, end) {
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            a > b || (a == b && matches!((start, end), (Bound::Excluded(_), Bound::Excluded(_))))
        }
        _ => false,
    }
}
