//! Panics from user code: a panicking `Ord` leaves the map as it was; a panicking `Drop`
//! during `clear` leaks what it must but never drops anything twice.

use std::cell::Cell;
use std::cmp::Ordering;
use std::panic::{AssertUnwindSafe, catch_unwind};

use skiplist::SkipMap;

thread_local! {
    static PANIC_ON: Cell<Option<u32>> = const { Cell::new(None) };
    static DROPS: Cell<usize> = const { Cell::new(0) };
}

/// A key whose comparison panics when either side is the armed value.
#[derive(Debug)]
struct Touchy(u32);

impl skiplist::KeyPrefix for Touchy {}

impl Ord for Touchy {
    fn cmp(&self, other: &Self) -> Ordering {
        let armed = PANIC_ON.with(Cell::get);
        if armed == Some(self.0) || armed == Some(other.0) {
            panic!("comparison with {}", self.0);
        }
        self.0.cmp(&other.0)
    }
}
impl PartialOrd for Touchy {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Touchy {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Touchy {}

#[test]
fn panicking_ord_leaves_the_map_unchanged() {
    let mut m: SkipMap<Touchy, u32> = SkipMap::with_seed(1);
    for i in 0..3000 {
        m.insert(Touchy(i * 2), i);
    }
    let before: Vec<(u32, u32)> = m.iter().map(|(k, v)| (k.0, *v)).collect();
    for probe in [0u32, 1, 777, 2000, 2001, 5998, 5999, 7000] {
        PANIC_ON.with(|c| c.set(Some(probe)));
        let r = catch_unwind(AssertUnwindSafe(|| m.insert(Touchy(probe), 0)));
        assert!(r.is_err(), "insert of {probe} compares it");
        let r = catch_unwind(AssertUnwindSafe(|| m.remove(&Touchy(probe))));
        assert!(r.is_err(), "remove of {probe} compares it");
        PANIC_ON.with(|c| c.set(None));
        let now: Vec<(u32, u32)> = m.iter().map(|(k, v)| (k.0, *v)).collect();
        assert_eq!(now, before, "after panics on {probe}");
        assert_eq!(m.len(), before.len());
    }
    // Still fully usable.
    assert_eq!(m.insert(Touchy(1), 1), None);
    assert_eq!(m.remove(&Touchy(2)), Some(1));
}

/// A value that panics in its drop when its number is the armed one.
struct Bomb(u32);

impl Drop for Bomb {
    fn drop(&mut self) {
        DROPS.with(|c| c.set(c.get() + 1));
        if PANIC_ON.with(Cell::get) == Some(self.0) {
            panic!("drop of {}", self.0);
        }
    }
}

#[test]
fn panicking_drop_in_clear_never_drops_twice() {
    let mut m: SkipMap<u32, Bomb> = SkipMap::with_seed(2);
    for i in 0..5000u32 {
        m.insert((i * 7919) % 5000, Bomb(i));
    }
    let n = m.len();
    PANIC_ON.with(|c| c.set(Some(1234)));
    DROPS.with(|c| c.set(0));
    assert!(catch_unwind(AssertUnwindSafe(|| m.clear())).is_err());
    PANIC_ON.with(|c| c.set(None));
    let dropped = DROPS.with(Cell::get);
    assert!(
        dropped >= 1 && dropped <= n,
        "{dropped} drops of {n} values"
    );
    // The map is empty and usable; its old entries are dropped at most once (the rest leak).
    assert!(m.is_empty());
    assert_eq!(m.iter().count(), 0);
    m.insert(1, Bomb(1));
    DROPS.with(|c| c.set(0));
    drop(m);
    assert_eq!(DROPS.with(Cell::get), 1);
}
