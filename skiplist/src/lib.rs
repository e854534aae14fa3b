//! A std-shaped ordered map on a skiplist, with a checksummed dump format. It is the
//! storage engine inside every raftkv node: the state machine that committed commands are
//! applied to, and whose dump is the snapshot.
//!
//! # Design
//!
//! [`SkipMap`] is a classic single-writer skiplist (Pugh, 1990): a sorted linked list at
//! level 0, and above it sparser "express" lists, each node present at levels
//! `0..height`. Heights are drawn from a seeded splitmix64 generator with p = 1/2 per extra
//! level (measured a little faster than p = 1/4 here, for 3 more bytes per entry); the same
//! seed and the same operations build the same list, which makes tests and benchmarks
//! repeatable. There is no fixed size limit: towers go up to 32 levels, enough for
//! logarithmic searches up to the 2^32 nodes that the `u32` index space allows.
//!
//! The API follows `std::collections::BTreeMap`: `insert` returns the old value (and, like
//! std, keeps the old key), lookups accept any borrowed form of the key (`&str` for a
//! `String` key), and `range` accepts any `RangeBounds`. Iteration is ascending only: a
//! backward link would cost every node 4 more bytes.
//!
//! # Memory layout
//!
//! Nodes do not come one by one from the global allocator. They live in an arena of chunks
//! (4 KiB at first, doubling up to 256 KiB) and point at each other with `u32` indices, not
//! pointers. One node is one block:
//!
//! ```text
//!   [link h-1] .. [link 1] [link 0] [height: u32] [key] [value]
//! ```
//!
//! The links grow downwards from the key, so the key and the low links that every search
//! touches share a cache line whatever the size of the value, and a node is exactly as big
//! as its height needs: for `u64 → u64` a height-1 node is 24 bytes, height 2 or 3 is 32,
//! with no per-allocation header (about 30 bytes per entry in all, against about 27 for
//! `BTreeMap` and 40 for crossbeam-skiplist). Towers of height 1, 2, 3 and 4+ are carved from
//! separate chunks: a search visits tall nodes far more often than short ones, so keeping
//! them together makes the hot part of the list dense in the cache and the TLB instead of
//! sharing each cache line with cold height-1 neighbours. Removed nodes go to a free list
//! per height and are reused by the next node of that height; chunks are returned only by
//! [`SkipMap::clear`] and drop.
//!
//! Searches compare each node once, even when it is the next node at several levels in a
//! row; while comparing the node to the right they prefetch the nodes they would descend to
//! on the next two levels, so those misses overlap; and they stop at the first level where
//! the key is found. A range finds its start with one search from the head and its end
//! with a finger search forward from the start (O(log d) for d entries in the range).
//! Iteration sends a scout ahead along level 1 (two nodes per hop) to prefetch the nodes
//! the walk will need, so a scan is not one serial cache miss per entry (about 1.4× faster
//! scans at 1M entries than a plain walk). `Drop` and `clear` walk level 0 in a loop: no recursion,
//! whatever the length.
//!
//! All `unsafe` code is in one private module (`raw`), whose invariants are listed at its
//! top and cited by the `// SAFETY:` comment of every block. As with std's maps, a key type
//! whose `Ord` is not a total order (or changes while the key is in the map) gets
//! unspecified answers, never memory unsafety: removal unlinks a node by identity, not by
//! trusting comparisons, and a test with a lying `Ord` checks that every entry is still
//! dropped exactly once. A panicking `Ord` leaves the map unchanged; a panicking `Drop`
//! during `clear` leaks the entries not yet dropped, never drops one twice.
//!
//! # Dump format
//!
//! [`SkipMap::dump`] writes, and [`SkipMap::load`] reads, this sequence (all integers
//! little-endian):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic, the ASCII bytes `RKVSKIPL` ([`MAGIC`]) |
//! | 8 | 4 | format version, `u32`, currently 1 ([`FORMAT_VERSION`]) |
//! | 12 | 8 | entry count `n`, `u64` |
//! | 20 | … | `n` entries in strictly ascending key order, each: key length `u32`, key bytes, value length `u32`, value bytes |
//! | end − 4 | 4 | CRC32 (IEEE, as computed by `crc32fast`) of every byte before it, `u32` |
//!
//! Keys and values become bytes through the [`Codec`] trait (implemented for `Vec<u8>`,
//! `String`, `bytes::Bytes` and the integers). The dump is self-delimiting: `load` reads
//! exactly its bytes and nothing after them, so a dump can be followed by other data in
//! the same stream (give `load` a buffered reader: it reads in small pieces). `load`
//! rebuilds the list in one pass, appending in key order (O(n), no searches), and fails with
//! a [`LoadError`] that names the problem and its byte offset on a truncated input, a bad
//! magic, an unknown version, a key or value its codec rejects, keys out of order, or a
//! checksum mismatch. The partly built map is dropped: a refused input never yields a map.
//!
//! # Concurrency
//!
//! The map is single-writer by design: every mutation takes `&mut self`, every read takes
//! `&self`, and nothing inside uses interior mutability (the height RNG advances only on
//! insert). So the borrow rules are the whole synchronisation story, and the map is `Send`
//! when `K` and `V` are (it owns its arena and entries outright) and `Sync` when `K` and `V`
//! are (through `&SkipMap` a thread can only read `&K` and `&V`). These are the same bounds
//! as `BTreeMap`'s. In raftkv the owner (the kvserver apply loop) keeps the map in an
//! `RwLock`: the apply thread takes the write lock per command, readers take the read lock
//! and may run in parallel with each other. A lock-free concurrent design (what
//! crossbeam-skiplist does) pays for atomics, epochs and reference counts on every access;
//! with a single writer by construction (Raft applies commands in order on one thread) that
//! price buys nothing.
//!
//! # When not to use it
//!
//! A search visits about 2·log₂ n nodes (one step right and one comparison that sends it
//! down, per level), each in its own cache line; a B-tree visits log₁₁ n nodes and reads a
//! dozen sorted keys from each. Only the top levels stay cached, so on a large map a lookup
//! costs about three times as many cache misses as in `std::collections::BTreeMap`, and a
//! scan costs one miss per entry (random insertion order scatters neighbours), where a
//! B-tree reads contiguous leaves. Measured by `skiplist-bench` (bench crate) on 1M random
//! `u64` keys on a 2-core VM: lookups and inserts at about 0.3× `BTreeMap`'s rate, 100-key
//! scans at about 0.2×, while it beats crossbeam-skiplist at most operations and uses about
//! 10 % more memory than `BTreeMap`. With heap-allocated keys and values (16-byte keys,
//! 100-byte values) comparisons and allocation weigh more and the gap narrows (about
//! 0.6–0.9× `BTreeMap` for inserts, lookups and removes). So choose `BTreeMap` for raw speed; choose this
//! map for what it adds: a documented, checksummed dump format, O(n) loading in key order,
//! deterministic structure from a seed, and code small enough to audit. For many
//! concurrent writers, use crossbeam-skiplist.

mod codec;
mod dump;
mod map;
mod raw;

pub use codec::{Codec, DecodeError};
pub use dump::{FORMAT_VERSION, Field, LoadError, MAGIC};
pub use map::{Iter, Range, SkipMap};

/// `SkipMap` and its iterators are `Send` and `Sync` exactly when std's `BTreeMap` is.
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<skiplist::SkipMap<std::rc::Rc<u8>, u8>>();
/// ```
///
/// ```compile_fail
/// fn assert_sync<T: Sync>() {}
/// assert_sync::<skiplist::SkipMap<u8, std::cell::Cell<u8>>>();
/// ```
#[cfg(doctest)]
struct AutoTraitsDoctests;

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn map_and_iterators_are_send_and_sync() {
        assert_send_sync::<crate::SkipMap<u64, Vec<u8>>>();
        assert_send_sync::<crate::Iter<'static, u64, Vec<u8>>>();
        assert_send_sync::<crate::Range<'static, String, u64>>();
    }

    #[test]
    fn shared_between_threads_under_a_rwlock() {
        use std::sync::{Arc, RwLock};
        let map = Arc::new(RwLock::new(crate::SkipMap::new()));
        let writer = {
            let map = Arc::clone(&map);
            std::thread::spawn(move || {
                for i in 0..1000u64 {
                    map.write().expect("not poisoned").insert(i, i);
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let map = Arc::clone(&map);
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        let m = map.read().expect("not poisoned");
                        // A reader sees a prefix of the writer's inserts, in order.
                        let n = m.len() as u64;
                        assert!(m.iter().map(|(k, _)| *k).eq(0..n));
                        if let Some(v) = m.get(&i) {
                            assert_eq!(*v, i);
                        }
                    }
                })
            })
            .collect();
        writer.join().expect("writer");
        for r in readers {
            r.join().expect("reader");
        }
        assert_eq!(map.read().expect("not poisoned").len(), 1000);
    }
}
