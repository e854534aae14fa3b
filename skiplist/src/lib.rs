//! A std-shaped ordered map on a skiplist, with a checksummed dump format. It is the
//! storage engine inside every raftkv node: the state machine that committed commands are
//! applied to, and whose dump is the snapshot.
//!
//! # Design
//!
//! [`SkipMap`] is an *unrolled* single-writer skiplist (a "B-skiplist"): a skiplist
//! (Pugh, 1990) whose nodes each hold up to `CAP` entries in sorted arrays, instead of
//! one entry each. The bottom level links every node in key order; above it, sparser
//! "express" levels link the taller nodes, each node present at levels `0..height`.
//! The express levels index nodes by their **first key**: a search moves right while the
//! next node's first key is not past the target, drops a level when it is, and at the
//! bottom binary-searches the keys of the one node it stopped at. Heights are drawn from
//! a seeded splitmix64 generator with p = 1/2 per extra level (p = 1/4 measured no faster);
//! the same seed and the same operations build the same structure, which makes tests and
//! benchmarks repeatable. Towers go up to 32 levels: searches stay logarithmic up to
//! 2^32 nodes, more than memory can hold. There is no other size limit.
//!
//! Why unrolled: a one-entry-per-node skiplist visits about 2·log₂ n nodes per lookup,
//! each a likely cache miss on a large map, and a scan takes a miss per entry. With
//! hundreds of entries per node, the index covers n / ~180 nodes instead of n (about
//! 5,600 nodes for a million `u64` entries, small enough to stay mostly in cache), a
//! lookup ends in one binary search over one node's contiguous keys, and a scan reads
//! arrays front to back. This is the B-tree's trick, kept inside a skiplist's simpler
//! structure: no rebalancing beyond a node's neighbour, and a bulk load that just
//! appends.
//!
//! - **Insert** finds the node, binary-searches it, and shifts the tail of its arrays up
//!   by one. A full node splits: the upper half moves to a new node of random height,
//!   linked right after it. An insert at the very end of a full node instead starts a
//!   new node with that entry alone, so ascending inserts fill every node completely.
//!   Like std, `insert` on a present key replaces the value and keeps the old key.
//! - **Remove** shifts the tail down. A node left empty is unlinked and freed; a node
//!   left under a quarter full takes entries from its successor (all of them, freeing
//!   the successor, when they fit in three quarters of a node; otherwise enough to even
//!   the two out). So removals never leave a run of sparse nodes behind (only the last
//!   node can stay under a quarter full), and memory follows the map down when it
//!   shrinks. (A node started by an insert at the end of a full node begins with one
//!   entry and fills from there.)
//! - **Byte-string keys** (`Vec<u8>`, `bytes::Bytes`, `String`, …) live on the heap, so
//!   comparing one is a pointer chase, usually a cache miss. For them each node also keeps
//!   every key's first 8 bytes as a big-endian `u64` (zero-padded on the right, which
//!   keeps lexicographic order: see [`KeyPrefix`]) in an array beside the keys, and a copy
//!   of its first key's prefix in its header. Searches compare these integers and read a
//!   key only when its prefix equals the target's: for random keys, once per successful
//!   lookup and never for a miss. Keys that share their first 8 bytes (`"user:000…"`)
//!   gain nothing from it and pay the extra integer compare. Which types store a prefix
//!   is the [`KeyPrefix`] trait's `PREFIXED` constant; integers don't (they compare
//!   inline), and a key type of your own opts out with `impl KeyPrefix for MyKey {}`.
//! - **Iteration and ranges** walk the node arrays contiguously, prefetching the next
//!   node on entering one. A range finds its start with one search from the head and its
//!   end with a finger search forward from the start (O(log d) nodes for d entries).
//!
//! The API follows `std::collections::BTreeMap`: `insert` returns the old value, lookups
//! accept any borrowed form of the key (`&str` for a `String` key), and `range` accepts
//! any `RangeBounds`. Iteration is ascending only: a backward link would cost every node
//! 8 more bytes and every split and merge more work.
//!
//! # Memory layout
//!
//! A node is one block from the global allocator, sized for its tower:
//!
//! ```text
//!   [link h-1] .. [link 0] [len: u32, height: u16, prefixed: u16, first: u64] [keys: K × CAP] [values: V × CAP] ([prefixes: u64 × CAP])
//! ```
//!
//! The prefix array is there only for [`KeyPrefix::PREFIXED`] key types. It comes last so
//! that the key and value offsets are the same either way: iteration and `Drop`, which
//! have no `KeyPrefix` bound, never need to know; the header records whether the block
//! has it, so that it is freed with the layout it was allocated with, and `first` (a copy
//! of `prefixes[0]`) keeps a search step on the header's cache line. Links are pointers
//! to the next node at each level. They grow downwards from the
//! header, so the header, the low links and the first key (everything one search step
//! reads) share a cache line. Keys and values are separate arrays: the binary search
//! inside a node touches keys only (and prefetches all of a node's key lines at once, so
//! their misses overlap), and a scan streams both. `CAP` is computed per type from
//! `size_of::<K>()` and `size_of::<V>()`: the key array is about 2 KiB and the value
//! array at most 4 KiB (unless `CAP` is at its floor), with `CAP` between 8 and 256 (256 for `u64 → u64`, 85 for
//! `Vec<u8> → Vec<u8>`, 8 for values of 512 bytes or more). 256 was measured against
//! 32, 64, 128 and 512 on 1M random `u64` keys: lookups got faster up to 512 (a smaller
//! index), inserts slower past 256 (longer shifts).
//!
//! Nodes split in half, so under random inserts they are on average about 70 % full:
//! about 24 bytes per `u64 → u64` entry, against about 27 for `BTreeMap` and 40 for
//! crossbeam-skiplist. The cost of large nodes shows on *small* maps: a map with one
//! entry already holds a whole node (about 4 KiB for `u64 → u64`), where a `BTreeMap`
//! leaf is a few hundred bytes. Many tiny maps are `BTreeMap`'s ground.
//!
//! # Safety
//!
//! All `unsafe` code is in one private module (`raw`), whose invariants are listed at its
//! top and cited by the `// SAFETY:` comment of every block. As with std's maps, a key type
//! whose `Ord` is not a total order (or changes while the key is in the map) gets
//! unspecified answers, never memory unsafety: positions inside a node come from searches
//! over its initialised slots (so they are always in bounds), entries move between nodes
//! by position, and an emptied node is unlinked by identity, not by trusting comparisons.
//! A test with a lying `Ord` checks that every entry is still dropped exactly once. A
//! panicking `Ord` leaves the map unchanged (every comparison happens before the first
//! write); a panicking `Drop` during `clear` leaks the entries not yet dropped, never drops
//! one twice. `Drop` and `clear` walk the bottom level in a loop: no recursion, whatever
//! the length.
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
//! rebuilds the list in one pass, appending in key order into nodes filled to 7/8 of
//! their capacity (O(n), no searches, and room for a few inserts before a node splits),
//! and fails with a [`LoadError`] that names the problem and its byte offset on a truncated input, a bad
//! magic, an unknown version, a key or value its codec rejects, keys out of order, or a
//! checksum mismatch. The partly built map is dropped: a refused input never yields a map.
//! [`dump_entries`] writes the same format from any sorted sequence of entries (a merge of
//! a frozen map and later changes, in kvserver's snapshots) without building the map.
//!
//! # Concurrency
//!
//! The map is single-writer by design: every mutation takes `&mut self`, every read takes
//! `&self`, and nothing inside uses interior mutability (the height RNG advances only on
//! insert). So the borrow rules are the whole synchronisation story, and the map is `Send`
//! when `K` and `V` are (it owns its nodes and entries outright) and `Sync` when `K` and `V`
//! are (through `&SkipMap` a thread can only read `&K` and `&V`). The nodes are reached
//! through raw pointers, so these bounds are stated by two `unsafe impl`s in `raw` (with
//! that reasoning), not derived; they are the same bounds as `BTreeMap`'s, and
//! `compile_fail` doctests check that a non-`Send` or non-`Sync` key or value removes
//! them. In raftkv the owner (the kvserver apply loop) keeps the map in an
//! `RwLock`: the apply thread takes the write lock per command, readers take the read lock
//! and may run in parallel with each other. A lock-free concurrent design (what
//! crossbeam-skiplist does) pays for atomics, epochs and reference counts on every access;
//! with a single writer by construction (Raft applies commands in order on one thread) that
//! price buys nothing.
//!
//! # Performance, and when not to use it
//!
//! Measured by `skiplist-bench` (bench crate, `cargo run --release -p bench --bin
//! skiplist-bench`) on a shared 2-core VM; ratios come from one run, where the three
//! structures take turns op by op, and ranges below span three runs. On 1M random
//! `u64 → u64` keys: inserts at 0.7–0.9× `std::collections::BTreeMap`'s rate, lookups
//! (hit or miss) 1.0–1.4×, removes 0.9–1.25×, 100-key range scans 4.5–5×, full iteration
//! far faster (arrays read front to back, where a B-tree climbs between leaves), at 0.87×
//! `BTreeMap`'s bytes per entry (23.5 against 27.1); against crossbeam-skiplist, 3–4× for
//! inserts and 5.5–6.5× for lookups. (The one-entry-per-node skiplist this replaced ran
//! at 0.3× `BTreeMap` for inserts and lookups and 0.2× for scans.)
//!
//! Inserts are the weak spot: each shifts half a node (about 2 KiB of keys and values),
//! and a search still visits about 2·log₂ of the number of nodes, each node on its own
//! page. With heap-allocated keys and values (16-byte keys, 100-byte values) each
//! comparison of keys chases a pointer: before the stored prefixes the map ran at
//! 0.4–0.7× `BTreeMap` for inserts, lookups and removes. With them (three runs on a busy
//! 2-core VM, load 9–19, so ±20 %): on `Vec<u8>` keys inserts at 1.65–2.35×, lookup hits
//! 1.07–1.3×, misses 1.7–2.2×, removes 1.17–1.32×; on `bytes::Bytes` keys inserts at
//! 1.38–1.58×, misses 1.7–2.6×, removes 1.17–1.62×, but lookup hits at only 0.79–0.95×
//! (not understood yet: the one row under 1); at 1.04× (`Vec<u8>`) and 1.08× (`Bytes`)
//! `BTreeMap`'s bytes per entry. Keys sharing their first 8 bytes lose the gain. So:
//! for many tiny maps (each holds at least one whole node), choose
//! `BTreeMap`; choose this map for fast scans and for what it adds: a documented,
//! checksummed dump format, O(n) loading in key order, deterministic structure from a
//! seed, and code small enough to audit. For many concurrent writers, use
//! crossbeam-skiplist.

mod codec;
mod dump;
mod map;
mod prefix;
mod raw;

pub use codec::{Codec, DecodeError};
pub use dump::{FORMAT_VERSION, Field, LoadError, MAGIC, dump_entries};
pub use map::{Iter, Range, SkipMap};
pub use prefix::{KeyPrefix, byte_prefix};

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
