//! Memory follows the map down: removing most entries merges sparse nodes, so the bytes
//! held per remaining entry stay bounded (nodes hold up to hundreds of entries, and a
//! map that only split and never merged would keep every node of its largest size).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use skiplist::SkipMap;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting the bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^ (z >> 27)
}

#[test]
fn removing_most_entries_gives_memory_back() {
    const N: u64 = 200_000;
    let before = LIVE.load(Ordering::Relaxed);
    let mut m: SkipMap<u64, u64> = SkipMap::with_seed(5);
    for i in 0..N {
        m.insert(mix(i), i);
    }
    let full = LIVE.load(Ordering::Relaxed) - before;
    assert!(
        full / (N as usize) < 40,
        "{} bytes/entry when full",
        full / N as usize
    );
    // Remove 98% of the keys, in an order unrelated to the key order.
    for i in 0..N {
        if i % 50 != 0 {
            assert_eq!(m.remove(&mix(i)), Some(i));
        }
    }
    let left = m.len();
    assert_eq!(left, (N / 50) as usize);
    let held = LIVE.load(Ordering::Relaxed) - before;
    // Nodes other than the last keep at least a quarter of their capacity: at most ~4x
    // the bytes of full nodes, so well under 100 bytes per u64 -> u64 entry.
    assert!(
        held / left < 100,
        "{} bytes/entry after removals",
        held / left
    );
    for i in (0..N).step_by(50) {
        assert_eq!(m.get(&mix(i)), Some(&i));
    }
    let keys: Vec<u64> = m.iter().map(|(k, _)| *k).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    drop(keys);
    drop(m);
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(after, before, "everything freed: {after} != {before}");
}
