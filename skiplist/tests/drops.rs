//! Keys and values are dropped exactly once: on remove, overwrite, clear and drop.

use std::cell::Cell;
use std::rc::Rc;

use skiplist::SkipMap;

/// Counts its drops in a shared cell.
#[derive(Debug)]
struct Counted(Rc<Cell<usize>>, u32);

impl skiplist::KeyPrefix for Counted {}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn drops_exactly_once() {
    let keys = Rc::new(Cell::new(0));
    let vals = Rc::new(Cell::new(0));
    let k = |i: u32| (Counted(keys.clone(), i), i);
    let v = |i: u32| Counted(vals.clone(), i);

    let mut m: SkipMap<(Counted, u32), Counted> = SkipMap::new();
    // Order by the u32 only: the Counted part is compared via a wrapper key below.
    for i in 0..1000 {
        assert!(m.insert(k(i), v(i)).is_none());
    }
    assert_eq!((keys.get(), vals.get()), (0, 0));

    // Overwrite: the old value comes back to the caller; the new key is dropped (std keeps
    // the old key).
    for i in 0..100 {
        let old = m.insert(k(i), v(i + 10_000)).expect("present");
        assert_eq!(old.1, i);
        drop(old);
    }
    assert_eq!((keys.get(), vals.get()), (100, 100));

    // Remove: key and value leave the map; the value is returned, the key dropped.
    for i in 100..300 {
        let probe = (Counted(keys.clone(), i), i);
        let val = m.remove(&probe).expect("present");
        drop(probe);
        assert_eq!(val.1, i);
    }
    // 200 removed keys + 200 probe keys; 200 values.
    assert_eq!((keys.get(), vals.get()), (100 + 400, 100 + 200));

    // Reinsert into freed blocks, then clear.
    for i in 100..300 {
        m.insert(k(i), v(i));
    }
    assert_eq!(m.len(), 1000);
    m.clear();
    assert_eq!((keys.get(), vals.get()), (500 + 1000, 300 + 1000));
    assert!(m.is_empty());

    // Drop of a full map.
    for i in 0..777 {
        m.insert(k(i), v(i));
    }
    drop(m);
    assert_eq!((keys.get(), vals.get()), (1500 + 777, 1300 + 777));
}

impl PartialEq for Counted {
    fn eq(&self, other: &Self) -> bool {
        self.1 == other.1
    }
}
impl Eq for Counted {}
impl PartialOrd for Counted {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Counted {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.1.cmp(&other.1)
    }
}

#[test]
fn load_failure_drops_the_partial_map() {
    // A refused load must drop what it had built: check with a value type that counts.
    let m: SkipMap<u32, String> = (0..100).map(|i| (i, i.to_string())).collect();
    let mut d = Vec::new();
    m.dump(&mut d).expect("dump");
    let last = d.len() - 1;
    d[last] ^= 1;
    assert!(SkipMap::<u32, String>::load(d.as_slice()).is_err());
}

#[test]
fn zero_sized_and_large_entries() {
    let mut z: SkipMap<(), ()> = SkipMap::new();
    assert_eq!(z.insert((), ()), None);
    assert_eq!(z.insert((), ()), Some(()));
    assert_eq!(z.len(), 1);
    assert_eq!(z.remove(&()), Some(()));

    let mut big: SkipMap<u64, [u8; 3000]> = SkipMap::new();
    for i in 0..2000 {
        big.insert(i, [i as u8; 3000]);
    }
    assert_eq!(big.get(&1234).map(|v| v[0]), Some(1234u64 as u8));
    assert_eq!(big.len(), 2000);

    let mut huge: SkipMap<u8, Vec<u64>> = SkipMap::new();
    huge.insert(1, vec![7; 1 << 20]);
    assert_eq!(huge.get(&1).map(Vec::len), Some(1 << 20));
}

/// A key whose `Ord` answers at random: std's rule is that such a key may give wrong
/// answers but never memory unsafety. Run under valgrind or Miri to see the difference.
#[derive(Debug)]
struct Chaos(u32);

thread_local! {
    static CHAOS_RNG: Cell<u64> = const { Cell::new(1) };
}

impl PartialEq for Chaos {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Chaos {}
impl PartialOrd for Chaos {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
/// The prefix lies too (stored and compared, as for byte strings): it is the key itself
/// most of the time, random otherwise, so a prefix comparison contradicts `Ord` at times.
impl skiplist::KeyPrefix for Chaos {
    const PREFIXED: bool = true;
    fn key_prefix(&self) -> u64 {
        let r = CHAOS_RNG.with(|c| {
            let x = c
                .get()
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(7);
            c.set(x);
            x >> 33
        });
        if r.is_multiple_of(5) {
            r
        } else {
            u64::from(self.0)
        }
    }
}

impl Ord for Chaos {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let r = CHAOS_RNG.with(|c| {
            let x = c
                .get()
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            c.set(x);
            x >> 33
        });
        // Mostly the truth, sometimes a lie.
        if r.is_multiple_of(7) {
            [
                std::cmp::Ordering::Less,
                std::cmp::Ordering::Equal,
                std::cmp::Ordering::Greater,
            ][(r % 3) as usize]
        } else {
            self.0.cmp(&other.0)
        }
    }
}

#[test]
fn inconsistent_ord_is_memory_safe() {
    let drops = Rc::new(Cell::new(0));
    let mut m: SkipMap<Chaos, Counted> = SkipMap::with_seed(3);
    let mut inserted = 0;
    let mut returned = 0;
    for i in 0..20_000u32 {
        let k = i.wrapping_mul(2_654_435_761) % 500;
        match i % 3 {
            0 | 1 => {
                inserted += 1;
                if m.insert(Chaos(k), Counted(drops.clone(), k)).is_some() {
                    returned += 1;
                }
            }
            _ => {
                if m.remove(&Chaos(k)).is_some() {
                    returned += 1;
                }
            }
        }
        let _ = m.get(&Chaos(k));
        let _ = m.range(Chaos(k)..Chaos(k + 10)).count();
    }
    // Whatever the answers, the entries are all there once: len matches the level-0
    // chain, and every value is dropped exactly once in the end.
    assert_eq!(m.iter().count(), m.len());
    assert_eq!(inserted, returned + m.len());
    drop(m);
    assert_eq!(drops.get(), inserted);
}
