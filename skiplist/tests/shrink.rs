//! Memory follows the map down: removing most entries merges sparse nodes, so the bytes
//! held per remaining entry stay bounded (nodes hold up to hundreds of entries, and a
//! map that only split and never merged would keep every node of its largest size).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use skiplist::SkipMap;

/// Counts the bytes allocated minus the bytes freed **by the calling thread**, so the
/// test measures only its own work: the test harness and other tests run threads in the
/// same process, and a process-wide counter made this test fail about 1 run in 6 on a
/// busy machine. (Memory freed by another thread than the one that allocated it would
/// skew the count; the map is built and dropped on the test's thread.)
struct Counting;

thread_local! {
    // `const` and no destructor: reading it never allocates, so the allocator may use it.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with` fails only while the thread is being torn down; nothing is measured then.
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

/// Bytes this thread holds (allocated minus freed) since it started.
fn live() -> isize {
    LIVE.with(|l| l.get())
}

// SAFETY: forwards to the system allocator, only counting the bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
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
    // Another thread holds 8 MiB for the whole measurement (as the harness's own threads
    // may): a process-wide counter would see 40 more bytes per entry and a leak of 8 MiB.
    let step = std::sync::Arc::new(std::sync::Barrier::new(2));
    let noise = {
        let step = step.clone();
        std::thread::spawn(move || {
            step.wait();
            let held = vec![1u8; 8 << 20];
            step.wait();
            step.wait();
            drop(held);
        })
    };
    let before = live();
    step.wait();
    step.wait();
    let mut m: SkipMap<u64, u64> = SkipMap::with_seed(5);
    for i in 0..N {
        m.insert(mix(i), i);
    }
    let full = live() - before;
    assert!(
        full / (N as isize) < 40,
        "{} bytes/entry when full",
        full / N as isize
    );
    // Remove 98% of the keys, in an order unrelated to the key order.
    for i in 0..N {
        if i % 50 != 0 {
            assert_eq!(m.remove(&mix(i)), Some(i));
        }
    }
    let left = m.len();
    assert_eq!(left, (N / 50) as usize);
    let held = live() - before;
    // Nodes other than the last keep at least a quarter of their capacity: at most ~4x
    // the bytes of full nodes, so well under 100 bytes per u64 -> u64 entry.
    assert!(
        held / (left as isize) < 100,
        "{} bytes/entry after removals",
        held / left as isize
    );
    for i in (0..N).step_by(50) {
        assert_eq!(m.get(&mix(i)), Some(&i));
    }
    let keys: Vec<u64> = m.iter().map(|(k, _)| *k).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    drop(keys);
    drop(m);
    let after = live();
    assert_eq!(after, before, "everything freed: {after} != {before}");
    step.wait();
    noise.join().expect("noise thread");
}
