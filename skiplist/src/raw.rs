//! The unsafe core: an arena of variable-height nodes addressed by `u32` indices, and the
//! skiplist algorithms that walk it. Every `unsafe` block of the crate lives in this file;
//! everything outside it is safe code over the API below.
//!
//! # Layout
//!
//! A node is one block inside an arena chunk:
//!
//! ```text
//!   [pad][link h-1]..[link 1][link 0][height: u32][Entry { key, value }]
//!                                                 ^ the node's index points here
//! ```
//!
//! Links grow *downwards* from the entry, so the key and the lowest links (the ones every
//! search reads) share a cache line whatever the size of the value. A link is the `u32`
//! index of the next node at that level, or [`NIL`]. An index counts `UNIT`-byte units:
//! its high bits pick the chunk, its low `CHUNK_SHIFT` bits the unit inside the chunk.
//!
//! The head is not a node: it is a `[u32; MAX_HEIGHT]` array inside [`RawList`], stored in
//! reverse, so that "the link at level `k` of a predecessor" is always `base.sub(k)` where
//! `base` points at the predecessor's level-0 link, head or node alike.
//!
//! # Invariants (every `// SAFETY:` comment below leans on these)
//!
//! 1. Chunks are allocated once and never move or shrink until the arena is dropped or
//!    reset; a pointer into a chunk stays valid while the list is not dropped or cleared.
//! 2. Every index stored in a link reachable from the head, at any level `k`, names a
//!    *live* node: its block is allocated, its height is `> k`, and its entry is
//!    initialised.
//! 3. Reachable nodes at level 0 are exactly the live nodes; there are `len` of them; a
//!    live node of height `h` is linked at every level `0..h`; no level has a cycle. Each
//!    level is also sorted by key, strictly ascending, but that is a correctness property,
//!    not a safety one: a key type with an inconsistent `Ord` can break it, and no
//!    `// SAFETY:` comment relies on it.
//! 4. Free blocks are reachable only from `Arena::free[h - 1]` (linked through link 0),
//!    keep their height header, and hold no initialised entry.
//! 5. `level` is at least the height of every live node, and at most `MAX_HEIGHT`; head
//!    links at levels `>= level` are `NIL`.

use std::alloc::{self, Layout};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::marker::PhantomData;
use std::mem;
use std::ops::Bound;
use std::ptr::{self, NonNull};

/// Highest tower. With p = 1/2 per extra level, 32 levels keep searches logarithmic up to
/// 2^32 entries, as many as the `u32` index space can hold.
pub(crate) const MAX_HEIGHT: usize = 32;

/// The "no node" link.
const NIL: u32 = u32::MAX;

/// Levels below the current one whose next node a search prefetches (measured: 2 beats 0
/// and 1 at 1M entries; at 100k, where the list fits in cache, prefetch costs ~5%).
const PREFETCH_DEPTH: usize = 2;

/// Largest chunk, in bytes (unless a single node is bigger than this). Each size class
/// wastes at most one chunk's tail, so this stays small next to big maps' footprint.
const MAX_CHUNK_BYTES: usize = 1 << 18;

/// Smallest (first) chunk, in bytes. Chunks double from here up to `MAX_CHUNK_BYTES`, so a
/// small map stays small and a big one wastes at most one chunk's tail.
const FIRST_CHUNK_BYTES: usize = 1 << 12;

#[repr(C)]
struct Entry<K, V> {
    key: K,
    value: V,
}

/// Per-type sizes, computed at compile time.
struct Shape<K, V>(PhantomData<(K, V)>);

impl<K, V> Shape<K, V> {
    /// Allocation unit: the entry's alignment, at least 4 so that links are aligned.
    const UNIT: usize = if mem::align_of::<Entry<K, V>>() > 4 {
        mem::align_of::<Entry<K, V>>()
    } else {
        4
    };
    /// Units taken by the entry; at least one, so that an entry index never points one
    /// past the end of its chunk (which would decode as the next chunk).
    const ENTRY_UNITS: usize = {
        let u = mem::size_of::<Entry<K, V>>().div_ceil(Self::UNIT);
        if u == 0 { 1 } else { u }
    };
    const MAX_BLOCK_BYTES: usize =
        (Self::prefix_units(MAX_HEIGHT) + Self::ENTRY_UNITS) * Self::UNIT;
    const CHUNK_BYTES_CAP: usize = if Self::MAX_BLOCK_BYTES > MAX_CHUNK_BYTES {
        Self::MAX_BLOCK_BYTES.next_power_of_two()
    } else {
        MAX_CHUNK_BYTES
    };
    /// log2 of the units in the largest chunk: the split point of an index.
    const CHUNK_SHIFT: u32 = (Self::CHUNK_BYTES_CAP / Self::UNIT).trailing_zeros();
    const OFFSET_MASK: u32 = (1u32 << Self::CHUNK_SHIFT) - 1;
    /// Chunks addressable without any index reaching `NIL`.
    const MAX_CHUNKS: usize = (1usize << (32 - Self::CHUNK_SHIFT)) - 1;

    /// Units before the entry in a block of height `h`: `h` links and the height word.
    const fn prefix_units(h: usize) -> usize {
        (4 * (h + 1)).div_ceil(Self::UNIT)
    }
}

struct Chunk {
    ptr: NonNull<u8>,
    bytes: usize,
}

/// Size classes: towers of height 1, 2, 3, and 4 or more bump-allocate from separate
/// chunks. A search touches the tall nodes far more often than the short ones, so packing
/// them together keeps the hot part of the list dense in the cache and the TLB (for 1M
/// `u64` entries: ~125k nodes of height >= 4 in ~5 MB, next to ~500k of height 1 in
/// ~12 MB), instead of sharing every cache line with cold height-1 neighbours.
const CLASSES: usize = 4;

/// The bump region of one size class.
#[derive(Clone, Copy)]
struct Bump {
    /// Index in `chunks` of the chunk being filled (meaningless while `cap == 0`).
    chunk: usize,
    /// Units used in that chunk.
    used: usize,
    /// Units in that chunk.
    cap: usize,
    /// Bytes of the next chunk to allocate for this class.
    next_chunk_bytes: usize,
}

const EMPTY_BUMP: Bump = Bump {
    chunk: 0,
    used: 0,
    cap: 0,
    next_chunk_bytes: FIRST_CHUNK_BYTES,
};

/// A bump allocator of node blocks in chunks that never move, with one free list per height.
struct Arena<K, V> {
    chunks: Vec<Chunk>,
    /// Where each size class allocates next.
    bump: [Bump; CLASSES],
    /// `free[h - 1]`: a freed block of height `h`, linked through link 0, or `NIL`.
    free: [u32; MAX_HEIGHT],
    _marker: PhantomData<(K, V)>,
}

// SAFETY: the arena exclusively owns its chunks (no other arena or thread holds their
// pointers) and the keys and values in them, so sending it sends owned `K`s and `V`s.
unsafe impl<K: Send, V: Send> Send for Arena<K, V> {}
// SAFETY: nothing in the arena or the list above it mutates through `&self` (no interior
// mutability: allocation, the RNG and every link change take `&mut self`), so sharing
// `&Arena` (or a `&RawList`, or a `Cursor`) lets other threads read `&K` and `&V` only.
unsafe impl<K: Sync, V: Sync> Sync for Arena<K, V> {}

impl<K, V> Arena<K, V> {
    const fn new() -> Self {
        Arena {
            chunks: Vec::new(),
            bump: [EMPTY_BUMP; CLASSES],
            free: [NIL; MAX_HEIGHT],
            _marker: PhantomData,
        }
    }

    /// Pointer to the entry of node `idx`.
    ///
    /// # Safety
    /// `idx` must be an index returned by `alloc` on this arena since its last reset.
    #[inline(always)]
    unsafe fn entry(&self, idx: u32) -> *mut Entry<K, V> {
        let c = (idx >> Shape::<K, V>::CHUNK_SHIFT) as usize;
        let off = (idx & Shape::<K, V>::OFFSET_MASK) as usize * Shape::<K, V>::UNIT;
        // SAFETY: by the contract, `idx` came from `alloc`, which only hands out indices
        // whose chunk number is `< chunks.len()` and whose block lies inside that chunk.
        unsafe { self.chunks.get_unchecked(c).ptr.as_ptr().add(off).cast() }
    }

    /// Allocates a block for a node of height `h` (1..=MAX_HEIGHT), writes its height
    /// header, and returns the index of its (uninitialised) entry.
    fn alloc(&mut self, h: usize) -> u32 {
        debug_assert!((1..=MAX_HEIGHT).contains(&h));
        let f = self.free[h - 1];
        if f != NIL {
            // SAFETY: `f` is a free block of height `h` (invariant 4); its link 0 holds
            // the next free block of that height and its height header is still `h`.
            unsafe {
                self.free[h - 1] = *links(self.entry(f));
            }
            return f;
        }
        let prefix = Shape::<K, V>::prefix_units(h);
        let need = prefix + Shape::<K, V>::ENTRY_UNITS;
        let class = h.min(CLASSES) - 1;
        if self.bump[class].used + need > self.bump[class].cap {
            self.grow(class, need);
        }
        let b = &mut self.bump[class];
        let at = b.used + prefix;
        b.used += need;
        let idx = ((b.chunk << Shape::<K, V>::CHUNK_SHIFT) | at) as u32;
        // SAFETY: the block `[used - need, used)` lies inside chunk `b.chunk` (checked
        // above), so `idx` is a valid index and the height word just before the entry is
        // inside the block, 4-aligned because the entry is `UNIT`-aligned.
        unsafe {
            *(self.entry(idx) as *mut u32).sub(1) = h as u32;
        }
        idx
    }

    #[cold]
    fn grow(&mut self, class: usize, need: usize) {
        assert!(
            self.chunks.len() < Shape::<K, V>::MAX_CHUNKS,
            "SkipMap: node index space exhausted (2^32 allocation units)"
        );
        let b = &mut self.bump[class];
        let bytes = b
            .next_chunk_bytes
            .max(need * Shape::<K, V>::UNIT)
            .min(Shape::<K, V>::CHUNK_BYTES_CAP);
        let layout = Layout::from_size_align(bytes, Shape::<K, V>::UNIT)
            .expect("chunk layout: size is at most 2^32 units and the unit a power of two");
        // SAFETY: `bytes` is non-zero (at least one block of at least two units).
        let raw = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout);
        };
        *b = Bump {
            chunk: self.chunks.len(),
            used: 0,
            cap: bytes / Shape::<K, V>::UNIT,
            next_chunk_bytes: (bytes * 2).min(Shape::<K, V>::CHUNK_BYTES_CAP),
        };
        self.chunks.push(Chunk { ptr, bytes });
    }

    /// Returns block `idx` to the free list of its height.
    ///
    /// # Safety
    /// `idx` must be an allocated block whose entry has been moved out or dropped, and
    /// which no link reachable from the head names any more.
    unsafe fn free(&mut self, idx: u32) {
        // SAFETY: by the contract the block is allocated, so its height header and link 0
        // are inside it.
        unsafe {
            let e = self.entry(idx);
            let h = height(e);
            *links(e) = self.free[h - 1];
            self.free[h - 1] = idx;
        }
    }

    /// Frees every chunk. Any entries still initialised are leaked, not dropped.
    fn reset(&mut self) {
        for c in self.chunks.drain(..) {
            let layout = Layout::from_size_align(c.bytes, Shape::<K, V>::UNIT)
                .expect("same layout as when allocated");
            // SAFETY: `c.ptr` was allocated in `grow` with exactly this layout and is
            // freed once, here, as `drain` removes it from the list.
            unsafe { alloc::dealloc(c.ptr.as_ptr(), layout) };
        }
        // Field by field: assigning a whole new `Arena` would drop this one (recursing).
        self.bump = [EMPTY_BUMP; CLASSES];
        self.free = [NIL; MAX_HEIGHT];
    }
}

impl<K, V> Drop for Arena<K, V> {
    fn drop(&mut self) {
        self.reset();
    }
}

/// The level-0 link of the node whose entry is at `e`; level `k` is `links(e).sub(k)`.
///
/// # Safety
/// `e` must point at the entry of an allocated block.
#[inline(always)]
unsafe fn links<K, V>(e: *mut Entry<K, V>) -> *mut u32 {
    // SAFETY: the block holds the height word and at least one link right before the
    // entry (`prefix_units(h) >= 4 * (h + 1)` bytes), all 4-aligned.
    unsafe { (e as *mut u32).sub(2) }
}

/// The height of the node whose entry is at `e`.
///
/// # Safety
/// `e` must point at the entry of an allocated block.
#[inline(always)]
unsafe fn height<K, V>(e: *mut Entry<K, V>) -> usize {
    // SAFETY: the height word sits right before the entry, inside the block.
    unsafe { *(e as *const u32).sub(1) as usize }
}

/// Hints the CPU to start loading the cache line at `p`. Never faults, whatever `p` is.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: prefetch is only a hint: it never faults and has no effect on program
        // semantics, even for an invalid address; SSE is part of the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The ordered core behind [`crate::SkipMap`].
pub(crate) struct RawList<K, V> {
    /// Head links, reversed: the head's link at level `k` is `head[MAX_HEIGHT - 1 - k]`.
    head: [u32; MAX_HEIGHT],
    /// Levels in use (invariant 5).
    level: usize,
    len: usize,
    /// splitmix64 state for tower heights.
    rng: u64,
    arena: Arena<K, V>,
    /// The list owns `K`s and `V`s (for drop check).
    _owns: PhantomData<(K, V)>,
}

impl<K, V> RawList<K, V> {
    pub(crate) const fn new(seed: u64) -> Self {
        RawList {
            head: [NIL; MAX_HEIGHT],
            level: 1,
            len: 0,
            rng: seed,
            arena: Arena::new(),
            _owns: PhantomData,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Random tower height: 1 + (number of trailing zero bits), so that each extra level
    /// has probability 1/2.
    #[inline]
    fn random_height(&mut self) -> usize {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z.trailing_zeros() as usize + 1).min(MAX_HEIGHT)
    }

    #[inline(always)]
    fn head_base(&self) -> *const u32 {
        // SAFETY: `MAX_HEIGHT - 1` is the last element of `head`.
        unsafe { self.head.as_ptr().add(MAX_HEIGHT - 1) }
    }

    #[inline(always)]
    fn head_base_mut(&mut self) -> *mut u32 {
        // SAFETY: `MAX_HEIGHT - 1` is the last element of `head`.
        unsafe { self.head.as_mut_ptr().add(MAX_HEIGHT - 1) }
    }

    /// Finds the live node whose key equals `q`.
    #[inline]
    fn find<Q>(&self, q: &Q) -> Option<*mut Entry<K, V>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord,
    {
        let mut base = self.head_base();
        // Last node compared and found greater than `q`: when the next link at a lower
        // level names it again, it is not compared again.
        let mut known_greater = NIL;
        let mut k = self.level;
        // SAFETY: `base` is always the head base or the level-0 link of a live node
        // reached at level `>= k`, so `base.sub(k)` is one of its links (invariant 2);
        // every index read from a link names a live node with an initialised entry.
        unsafe {
            while k > 0 {
                k -= 1;
                let mut next = *base.sub(k);
                while next != NIL && next != known_greater {
                    let e = self.arena.entry(next);
                    let nb = links(e);
                    self.arena.prefetch_below(base, k);
                    match (*e).key.borrow().cmp(q) {
                        Ordering::Less => {
                            base = nb;
                            next = *base.sub(k);
                        }
                        Ordering::Equal => return Some(e),
                        Ordering::Greater => {
                            known_greater = next;
                            break;
                        }
                    }
                }
            }
        }
        None
    }

    /// The first node at or after the bound (`Included`: key >= q, `Excluded`: key > q),
    /// as an index, or `NIL`.
    fn seek<Q>(&self, bound: Bound<&Q>) -> u32
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord,
    {
        let (q, strict) = match bound {
            Bound::Unbounded => return self.head[MAX_HEIGHT - 1],
            Bound::Included(q) => (q, false),
            Bound::Excluded(q) => (q, true),
        };
        let mut base = self.head_base();
        let mut known_after = NIL;
        let mut k = self.level;
        // SAFETY: as in `find`: `base` is the head base or the links of a live node of
        // height `> k`, and linked indices name live nodes (invariant 2).
        unsafe {
            while k > 0 {
                k -= 1;
                let mut next = *base.sub(k);
                while next != NIL && next != known_after {
                    let e = self.arena.entry(next);
                    self.arena.prefetch_below(base, k);
                    let before = match (*e).key.borrow().cmp(q) {
                        Ordering::Less => true,
                        Ordering::Equal => strict,
                        Ordering::Greater => false,
                    };
                    if before {
                        base = links(e);
                        next = *base.sub(k);
                    } else {
                        known_after = next;
                        break;
                    }
                }
            }
            *base
        }
    }

    /// Like `seek`, but a finger search forward from the live node `from`: climbs along
    /// top links while they stay before the bound, then descends. Costs O(log d) for a
    /// target d nodes ahead, and touches only nodes that a scan from `from` will visit
    /// anyway, where a search from the head would cost O(log n) cold nodes.
    fn seek_from<Q>(&self, from: u32, bound: Bound<&Q>) -> u32
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord,
    {
        let (q, strict) = match bound {
            Bound::Unbounded => return NIL,
            Bound::Included(q) => (q, false),
            Bound::Excluded(q) => (q, true),
        };
        let before = |e: *mut Entry<K, V>| {
            // SAFETY: only called on entries of live nodes (below).
            match unsafe { (*e).key.borrow() }.cmp(q) {
                Ordering::Less => true,
                Ordering::Equal => strict,
                Ordering::Greater => false,
            }
        };
        // SAFETY: `from` is live (the caller got it from a link), and from there we only
        // follow links of live nodes at levels below their heights (invariant 2).
        unsafe {
            let mut x = self.arena.entry(from);
            if !before(x) {
                return from;
            }
            // Climb: each top link leads to a node at least as tall.
            loop {
                let next = *links(x).sub(height(x) - 1);
                if next == NIL {
                    break;
                }
                let n = self.arena.entry(next);
                if !before(n) {
                    break;
                }
                x = n;
            }
            // Descend, as in `seek`; at x's top level the next node is past the bound.
            let mut base = links(x);
            let mut k = height(x);
            let mut known_after = NIL;
            while k > 0 {
                k -= 1;
                let mut next = *base.sub(k);
                while next != NIL && next != known_after {
                    let e = self.arena.entry(next);
                    if before(e) {
                        base = links(e);
                        next = *base.sub(k);
                    } else {
                        known_after = next;
                        break;
                    }
                }
            }
            *base
        }
    }

    pub(crate) fn get<Q>(&self, q: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord,
    {
        // SAFETY: `find` returns the entry of a live node, initialised and owned by
        // `self`; the references live as long as `&self`, during which nothing mutates.
        self.find(q).map(|e| unsafe { (&(*e).key, &(*e).value) })
    }

    pub(crate) fn get_mut<Q>(&mut self, q: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord,
    {
        // SAFETY: a live, initialised entry; `&mut self` makes the borrow exclusive, and
        // only the value is exposed mutably, so the key order cannot be broken.
        self.find(q).map(|e| unsafe { &mut (*e).value })
    }

    /// Inserts, or replaces the value of an equal key (keeping the old key, like std).
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V>
    where
        K: Ord,
    {
        // Drawn first, so that no `&mut self` is taken while the raw pointers below (some
        // into `self.head`) are alive. A replaced key wastes one draw; runs stay repeatable.
        let h = self.random_height();
        let mut preds: [*mut u32; MAX_HEIGHT] = [ptr::null_mut(); MAX_HEIGHT];
        let hb = self.head_base_mut();
        let mut base = hb;
        let mut known_greater = NIL;
        let mut k = self.level;
        // SAFETY: the walk is the one of `find` (invariant 2); `base` is derived from
        // `&mut self.head` or from chunk pointers, so writing through it is allowed. The
        // entry found equal is live and initialised, so replacing its value is sound.
        unsafe {
            while k > 0 {
                k -= 1;
                let mut next = *base.sub(k);
                while next != NIL && next != known_greater {
                    let e = self.arena.entry(next);
                    self.arena.prefetch_below(base, k);
                    match (*e).key.cmp(&key) {
                        Ordering::Less => {
                            base = links(e);
                            next = *base.sub(k);
                        }
                        Ordering::Equal => return Some(mem::replace(&mut (*e).value, value)),
                        Ordering::Greater => {
                            known_greater = next;
                            break;
                        }
                    }
                }
                preds[k] = base.sub(k);
            }
        }
        if h > self.level {
            for (k, p) in preds.iter_mut().enumerate().take(h).skip(self.level) {
                // SAFETY: `k < MAX_HEIGHT`, so this is an element of `head`.
                *p = unsafe { hb.sub(k) };
            }
        }
        let idx = self.arena.alloc(h);
        // SAFETY: `alloc` returned a fresh block of height `h` (chunks never move, so the
        // `preds` pointers into chunks and into `head` stay valid, invariant 1). Each
        // `preds[k]` for `k < h` is the level-`k` link of the last node before `key`, so
        // splicing keeps every level sorted (invariant 3), and the entry is written before
        // the node becomes reachable (invariant 2).
        unsafe {
            let e = self.arena.entry(idx);
            ptr::write(e, Entry { key, value });
            let nb = links(e);
            for (k, &p) in preds.iter().enumerate().take(h) {
                *nb.sub(k) = *p;
                *p = idx;
            }
        }
        self.level = self.level.max(h);
        self.len += 1;
        None
    }

    pub(crate) fn remove<Q>(&mut self, q: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord,
    {
        let mut preds: [*mut u32; MAX_HEIGHT] = [ptr::null_mut(); MAX_HEIGHT];
        let hb = self.head_base_mut();
        let mut base = hb;
        let mut known = NIL;
        let mut found = false;
        let mut k = self.level;
        // SAFETY: the walk of `insert`; `preds[k]` is the level-`k` link of the last node
        // whose key is `< q`.
        unsafe {
            while k > 0 {
                k -= 1;
                let mut next = *base.sub(k);
                while next != NIL && next != known {
                    let e = self.arena.entry(next);
                    self.arena.prefetch_below(base, k);
                    match (*e).key.borrow().cmp(q) {
                        Ordering::Less => {
                            base = links(e);
                            next = *base.sub(k);
                        }
                        ord => {
                            found = ord == Ordering::Equal;
                            known = next;
                            break;
                        }
                    }
                }
                preds[k] = base.sub(k);
            }
        }
        if !found {
            return None;
        }
        let idx = known;
        // SAFETY: `idx` is live (it was read from a link, invariant 2) and, by invariant 2,
        // linked at every level below its height h. With a lawful `Ord`, `preds[k]` names
        // it at each of those levels. With an inconsistent `Ord` it may not: then its real
        // predecessor at that level is found by identity, walking the level from the head
        // (it is there, so the walk ends on it before `NIL`). Either way the node ends up
        // unreachable at every level before its entry is moved out, exactly once, and its
        // block goes to the free list (invariant 4). A bad `Ord` can misplace keys, never
        // leave a freed block reachable.
        let entry = unsafe {
            let e = self.arena.entry(idx);
            let nb = links(e);
            let h = height(e);
            for (k, &p) in preds.iter().enumerate().take(h) {
                let mut p = p;
                if *p != idx {
                    p = hb.sub(k);
                    while *p != idx {
                        debug_assert_ne!(*p, NIL, "a live node is linked at all its levels");
                        p = links(self.arena.entry(*p)).sub(k);
                    }
                }
                *p = *nb.sub(k);
            }
            let entry = ptr::read(e);
            self.arena.free(idx);
            entry
        };
        self.len -= 1;
        while self.level > 1 && self.head[MAX_HEIGHT - self.level] == NIL {
            self.level -= 1;
        }
        Some((entry.key, entry.value))
    }

    pub(crate) fn first(&self) -> Option<(&K, &V)> {
        let first = self.head[MAX_HEIGHT - 1];
        // SAFETY: a non-NIL head link names a live node (invariant 2).
        (first != NIL).then(|| unsafe { self.entry_ref(first) })
    }

    pub(crate) fn last(&self) -> Option<(&K, &V)> {
        let mut base = self.head_base();
        let mut last = NIL;
        // SAFETY: we only follow links (invariant 2), from the top level down.
        unsafe {
            for k in (0..self.level).rev() {
                loop {
                    let next = *base.sub(k);
                    if next == NIL {
                        break;
                    }
                    last = next;
                    base = links(self.arena.entry(next));
                }
            }
            (last != NIL).then(|| self.entry_ref(last))
        }
    }

    /// # Safety
    /// `idx` must name a live node.
    #[inline(always)]
    unsafe fn entry_ref(&self, idx: u32) -> (&K, &V) {
        // SAFETY: a live node's entry is initialised and lives as long as `&self`.
        unsafe {
            let e = self.arena.entry(idx);
            (&(*e).key, &(*e).value)
        }
    }

    /// Drops every entry and frees every chunk, iteratively (no recursion).
    pub(crate) fn clear(&mut self) {
        let mut next = self.head[MAX_HEIGHT - 1];
        // Make the list empty first: if a key or value panics in its drop, the rest are
        // leaked, never dropped twice nor reachable.
        self.head = [NIL; MAX_HEIGHT];
        self.level = 1;
        self.len = 0;
        if mem::needs_drop::<Entry<K, V>>() {
            while next != NIL {
                // SAFETY: `next` was reachable at level 0 before the head was reset, so it
                // is live (invariant 3); we read its successor before dropping the entry,
                // and drop each entry once since level 0 visits each node once.
                unsafe {
                    let e = self.arena.entry(next);
                    next = *links(e);
                    ptr::drop_in_place(e);
                }
            }
        }
        self.arena.reset();
    }

    pub(crate) fn cursor(&self) -> Cursor<'_, K, V> {
        Cursor::new(&self.arena, self.head[MAX_HEIGHT - 1], NIL)
    }

    /// A cursor over the keys inside the bounds. An empty or inverted range (start after
    /// end, or equal with either side excluded) gives an empty cursor.
    pub(crate) fn range_cursor<Q>(&self, start: Bound<&Q>, end: Bound<&Q>) -> Cursor<'_, K, V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord,
    {
        let empty = Cursor::new(&self.arena, NIL, NIL);
        let inverted = match (start, end) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                a >= b
            }
            _ => false,
        };
        if inverted {
            return empty;
        }
        let first = self.seek(start);
        if first == NIL {
            return empty;
        }
        let stop = match end {
            Bound::Unbounded => NIL,
            Bound::Included(b) => self.seek_from(first, Bound::Excluded(b)),
            Bound::Excluded(b) => self.seek_from(first, Bound::Included(b)),
        };
        Cursor::new(&self.arena, first, stop)
    }
}

impl<K, V> Arena<K, V> {
    /// While the node right of `base` at level `k` is being compared, starts loading the
    /// nodes right of `base` at the next `PREFETCH_DEPTH` levels down: if the comparison
    /// says "descend", they are the next to compare, and their misses overlap.
    #[inline(always)]
    /// (A method of the arena, not the list, so that callers holding raw pointers into
    /// the list's head borrow only the arena.)
    fn prefetch_below(&self, base: *const u32, k: usize) {
        for j in k.saturating_sub(PREFETCH_DEPTH)..k {
            // SAFETY: `base` is the head base or the links of a live node of height `> k`
            // (the callers' walk invariant), so its links at `j < k` exist and hold `NIL`
            // or a live index (invariant 2).
            unsafe { prefetch(self.entry_or_null(*base.sub(j))) };
        }
    }

    /// Like `entry`, but maps `NIL` to a null pointer; for prefetch hints only.
    ///
    /// # Safety
    /// `idx` must be `NIL` or an index returned by `alloc` since the last reset.
    #[inline(always)]
    unsafe fn entry_or_null(&self, idx: u32) -> *const Entry<K, V> {
        if idx == NIL {
            ptr::null()
        } else {
            // SAFETY: by the contract, a non-NIL `idx` is an allocated index.
            unsafe { self.entry(idx) }
        }
    }
}

impl<K, V> Drop for RawList<K, V> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// How far (in level-0 nodes, estimated) a cursor's scout may run ahead.
const SCOUT_LEAD: i32 = 24;

/// Walks level 0 from `next` up to (not including) `end`.
///
/// Walking level 0 alone is one cache miss after another: each node's address is in the
/// node before. So a *scout* runs ahead along level 1 (about two level-0 nodes per hop),
/// prefetching each node it lands on and that node's level-0 successor; the cursor then
/// mostly finds its nodes in cache, and the scout's misses overlap the cursor's work. The
/// scout pauses when it is about `SCOUT_LEAD` nodes ahead (hops count as 2, an estimate
/// that is reset whenever the cursor lands on the scout's node).
pub(crate) struct Cursor<'a, K, V> {
    arena: &'a Arena<K, V>,
    next: u32,
    end: u32,
    /// A node at or ahead of `next`, or `NIL`.
    scout: u32,
    /// Estimated distance from `next` to `scout`, in level-0 nodes.
    lead: i32,
}

impl<'a, K, V> Cursor<'a, K, V> {
    fn new(arena: &'a Arena<K, V>, next: u32, end: u32) -> Self {
        Cursor {
            arena,
            next,
            end,
            scout: next,
            lead: 0,
        }
    }
}

impl<K, V> Clone for Cursor<'_, K, V> {
    fn clone(&self) -> Self {
        Cursor {
            arena: self.arena,
            next: self.next,
            end: self.end,
            scout: self.scout,
            lead: self.lead,
        }
    }
}

impl<'a, K, V> Iterator for Cursor<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.next == NIL || self.next == self.end {
            return None;
        }
        // SAFETY: the cursor borrows the list shared for `'a`, so the list cannot change;
        // `next` and `scout` were read from links (or are the first node of the walk), so
        // they name live nodes (invariant 2), and the scout follows level 1 only from a
        // node of height >= 2.
        unsafe {
            if self.next == self.scout {
                self.lead = 0;
            }
            if self.scout != NIL && self.lead < SCOUT_LEAD {
                let s = self.arena.entry(self.scout);
                let sl = links(s);
                prefetch(self.arena.entry_or_null(*sl));
                if height(s) >= 2 {
                    self.scout = *sl.sub(1);
                    self.lead += 2;
                } else {
                    self.scout = *sl;
                    self.lead += 1;
                }
                prefetch(self.arena.entry_or_null(self.scout));
            }
            let e = self.arena.entry(self.next);
            self.next = *links(e);
            self.lead -= 1;
            Some((&(*e).key, &(*e).value))
        }
    }
}

/// Appends entries in strictly ascending key order in O(1) each, for bulk loads.
pub(crate) struct Appender<'a, K, V> {
    list: &'a mut RawList<K, V>,
    /// Per level, the last node of that level, or `NIL` while the level is empty (then the
    /// head is the predecessor). Indices rather than pointers, so that no raw pointer into
    /// `list.head` outlives a `&mut` use of the list.
    tails: [u32; MAX_HEIGHT],
}

impl<'a, K: Ord, V> Appender<'a, K, V> {
    /// Starts appending to `list`, which is cleared first.
    pub(crate) fn new(list: &'a mut RawList<K, V>) -> Self {
        list.clear();
        Appender {
            list,
            tails: [NIL; MAX_HEIGHT],
        }
    }

    /// The key of the last appended entry.
    pub(crate) fn last_key(&self) -> Option<&K> {
        let last = self.tails[0];
        // SAFETY: a non-NIL tail is a live node of this list (it was linked by `push`).
        (last != NIL).then(|| unsafe { self.list.entry_ref(last).0 })
    }

    /// Appends an entry whose key must be greater than every key in the list; on a key
    /// that is not, gives the entry back unchanged.
    pub(crate) fn push(&mut self, key: K, value: V) -> Result<(), (K, V)> {
        if self.last_key().is_some_and(|last| *last >= key) {
            return Err((key, value));
        }
        let h = self.list.random_height();
        let idx = self.list.arena.alloc(h);
        let hb = self.list.head_base_mut();
        // SAFETY: fresh block of height `h`, written before it is linked; for each level
        // below `h`, the slot written is the last link of that level (the head's, or the
        // tail node's, whose height is `> k` since it was linked at level `k`), and the
        // new key is greater than every key, so each level stays sorted (invariant 3).
        unsafe {
            let e = self.list.arena.entry(idx);
            ptr::write(e, Entry { key, value });
            let nb = links(e);
            for (k, tail) in self.tails.iter_mut().enumerate().take(h) {
                *nb.sub(k) = NIL;
                let slot = if *tail == NIL {
                    hb.sub(k)
                } else {
                    links(self.list.arena.entry(*tail)).sub(k)
                };
                *slot = idx;
                *tail = idx;
            }
        }
        self.list.level = self.list.level.max(h);
        self.list.len += 1;
        Ok(())
    }
}
