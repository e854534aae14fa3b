//! The unsafe core: an unrolled skiplist whose nodes each hold up to `CAP` sorted entries,
//! and the algorithms that walk it. Every `unsafe` block of the crate lives in this file;
//! everything outside it is safe code over the API below.
//!
//! # Layout
//!
//! A node is one heap block from the global allocator:
//!
//! ```text
//!   [pad][link h-1]..[link 1][link 0][Header { len, height, prefixed, first }][keys: [K; CAP]][values: [V; CAP]]([prefixes: [u64; CAP]])
//!                                    ^ a node pointer points here
//! ```
//!
//! The prefix array exists in blocks of `K::PREFIXED` key types only (`Header::prefixed`
//! says which layout to free); slots `0..len` of it hold the prefixes of the keys in the
//! same slots, and `Header::first` a copy of slot 0's (invariant 5).
//!
//! Links grow *downwards* from the header, so the header, the lowest links and the first
//! keys (all that a search step reads) share a cache line or two, whatever the size of
//! the values. A link is a pointer to the next node at that level, or null. Keys and
//! values are separate arrays: the search inside a node reads keys only, and a scan reads
//! both arrays front to back. Slots `0..len` of both arrays are initialised, the rest are
//! not.
//!
//! The head is not a node: it is a `[Link; MAX_HEIGHT]` array inside [`RawList`], stored
//! in reverse, so that "the link at level `k` of a predecessor" is always `base.sub(k)`
//! where `base` points at the predecessor's level-0 link, head or node alike.
//!
//! The index (the links) orders nodes by their *first* key: a search moves right while
//! the next node's first key is before the target, then searches inside the node it
//! stopped at (binary search over its keys).
//!
//! # Invariants (every `// SAFETY:` comment below leans on these)
//!
//! 1. Every pointer stored in a link reachable from the head, at any level `k`, names a
//!    *live* node: a block allocated by `alloc_node` and not yet freed, whose height is
//!    `> k`, with `1 <= len <= CAP` and slots `0..len` of its key and value arrays
//!    initialised (and slots `len..CAP` not).
//! 2. Reachable nodes at level 0 are exactly the live nodes; their `len`s sum to
//!    `RawList::len`; a live node of height `h` is linked exactly once at every level
//!    `0..h`; no level has a cycle.
//! 3. `level` is at least the height of every live node, and at most `MAX_HEIGHT`; head
//!    links at levels `>= level` are null.
//! 4. (Correctness only.) Keys are strictly ascending along level 0, inside each node and
//!    across nodes, and each level is sorted by first key. A key type with an inconsistent
//!    `Ord` can break this, so no `// SAFETY:` comment relies on it: positions inside a
//!    node are always clamped to `0..=len`, and nodes are unlinked by identity.
//! 5. (Correctness only.) For `K::PREFIXED`, `prefixes[i] == keys[i].key_prefix()` for
//!    every initialised slot, and `first == prefixes[0]`. A lying `KeyPrefix` can break
//!    the order they give, never memory safety: prefixes steer searches only, exactly
//!    as `Ord` does.

use std::alloc::{self, Layout};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::marker::PhantomData;
use std::mem;
use std::ops::Bound;
use std::ptr;

use crate::KeyPrefix;

/// Highest tower. With p = 1/2 per extra level, 32 levels keep searches logarithmic up to
/// 2^32 nodes (far more entries than any machine can hold in nodes of `CAP` entries).
pub(crate) const MAX_HEIGHT: usize = 32;

/// Levels below the current one whose next node a search prefetches.
const PREFETCH_DEPTH: usize = 2;

/// Target size of a node's key array, in bytes: the node capacity is this divided by the
/// key size, clamped to `MIN_CAP..=MAX_CAP`.
const KEY_ARRAY_BYTES: usize = 2048;
/// Target size of a node's value array, in bytes (a second bound on the capacity, so that
/// nodes of large values stay a few KiB).
const VALUE_ARRAY_BYTES: usize = 4096;
const MIN_CAP: usize = 8;
const MAX_CAP: usize = 256;

/// A forward link: the next node at one level, or null.
type Link = *mut Header;

/// The fixed part of a node; the links are below it, the arrays above it.
#[repr(C)]
struct Header {
    /// Initialised entries, `1..=CAP` for a live node.
    len: u32,
    /// Number of links below the header, `1..=MAX_HEIGHT`.
    height: u16,
    /// Whether the block ends with a prefix array (`K::PREFIXED`). Recorded in the node
    /// because `Drop` and `clear` have no `KeyPrefix` bound and must still free the block
    /// with the layout it was allocated with.
    prefixed: u16,
    /// With prefixed keys, a copy of the first key's prefix (`prefixes[0]`), so that a
    /// search step, which compares the first key of the next node, reads one cache line
    /// (this header, beside the links) rather than two. Kept equal by `sync_first` after
    /// every change to a node's slot 0; unused (0) for other key types.
    first: u64,
}

/// Per-type sizes, computed at compile time.
struct Shape<K, V>(PhantomData<(K, V)>);

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

const fn min(a: usize, b: usize) -> usize {
    if a < b { a } else { b }
}

const fn round_up(x: usize, align: usize) -> usize {
    x.div_ceil(align) * align
}

impl<K, V> Shape<K, V> {
    /// Entries per node.
    const CAP: usize = {
        let by_key = match mem::size_of::<K>() {
            0 => MAX_CAP,
            s => KEY_ARRAY_BYTES / s,
        };
        let by_value = match mem::size_of::<V>() {
            0 => MAX_CAP,
            s => VALUE_ARRAY_BYTES / s,
        };
        max(MIN_CAP, min(MAX_CAP, min(by_key, by_value)))
    };
    /// Alignment of a whole block (and of the header).
    const ALIGN: usize = max(
        max(
            max(mem::align_of::<Header>(), mem::align_of::<Link>()),
            mem::align_of::<u64>(),
        ),
        max(mem::align_of::<K>(), mem::align_of::<V>()),
    );
    /// Offset of the key array from the header.
    const KEYS_AT: usize = round_up(mem::size_of::<Header>(), mem::align_of::<K>());
    /// Offset of the value array from the header.
    const VALUES_AT: usize = round_up(
        Self::KEYS_AT + Self::CAP * mem::size_of::<K>(),
        mem::align_of::<V>(),
    );
    /// Offset of the key-prefix array (present only in blocks of prefixed keys) from
    /// the header: after the values, so that the key and value offsets, which iteration
    /// and `Drop` use without a `KeyPrefix` bound, are the same with or without it.
    const PREFIXES_AT: usize = round_up(
        Self::VALUES_AT + Self::CAP * mem::size_of::<V>(),
        mem::align_of::<u64>(),
    );

    /// Bytes from the header to the end of the block.
    const fn body(prefixed: bool) -> usize {
        if prefixed {
            Self::PREFIXES_AT + Self::CAP * mem::size_of::<u64>()
        } else {
            Self::VALUES_AT + Self::CAP * mem::size_of::<V>()
        }
    }

    /// Bytes before the header in a block of height `h`.
    const fn prefix(h: usize) -> usize {
        round_up(h * mem::size_of::<Link>(), Self::ALIGN)
    }

    fn layout(h: usize, prefixed: bool) -> Layout {
        Layout::from_size_align(Self::prefix(h) + Self::body(prefixed), Self::ALIGN)
            .expect("node layout: a few KiB, power-of-two alignment")
    }
}

/// Allocates a node of height `h` with `len = 0`, links uninitialised, with a prefix
/// array when `K::PREFIXED`.
fn alloc_node<K: KeyPrefix, V>(h: usize) -> *mut Header {
    debug_assert!((1..=MAX_HEIGHT).contains(&h));
    let layout = Shape::<K, V>::layout(h, K::PREFIXED);
    // SAFETY: the layout is non-zero (it holds at least a header and one link).
    let raw = unsafe { alloc::alloc(layout) };
    if raw.is_null() {
        alloc::handle_alloc_error(layout);
    }
    // SAFETY: the block is `prefix(h) + BODY` bytes, so the header at `prefix(h)` is
    // inside it, aligned since `prefix(h)` is a multiple of `ALIGN`.
    unsafe {
        let n = raw.add(Shape::<K, V>::prefix(h)).cast::<Header>();
        n.write(Header {
            len: 0,
            height: h as u16,
            prefixed: u16::from(K::PREFIXED),
            first: 0,
        });
        n
    }
}

/// Frees a node's block. Its entries must have been moved out or dropped.
///
/// # Safety
/// `n` must come from `alloc_node::<K, V>`, not be freed yet, and be unreachable.
unsafe fn free_node<K, V>(n: *mut Header) {
    // SAFETY: by the contract the block is allocated with the layout of this height and
    // prefix flag (both recorded in the header by `alloc_node`), and the header sits
    // `prefix(h)` bytes into it.
    unsafe {
        let h = (*n).height as usize;
        let prefixed = (*n).prefixed != 0;
        let raw = n.cast::<u8>().sub(Shape::<K, V>::prefix(h));
        alloc::dealloc(raw, Shape::<K, V>::layout(h, prefixed));
    }
}

/// The level-0 link of node `n`; level `k` is `links(n).sub(k)`.
///
/// # Safety
/// `n` must be an allocated node (its links are below its header).
#[inline(always)]
unsafe fn links(n: *mut Header) -> *mut Link {
    // SAFETY: `prefix(h) >= h * size_of::<Link>()` bytes of links sit right below the
    // header, aligned because the header is `ALIGN`-aligned and `ALIGN >= align_of Link`.
    unsafe { n.cast::<Link>().sub(1) }
}

/// # Safety
/// `n` must be an allocated node.
#[inline(always)]
unsafe fn height(n: *mut Header) -> usize {
    // SAFETY: the header of an allocated node is initialised by `alloc_node`.
    unsafe { (*n).height as usize }
}

/// # Safety
/// `n` must be an allocated node.
#[inline(always)]
unsafe fn node_len(n: *mut Header) -> usize {
    // SAFETY: as in `height`.
    unsafe { (*n).len as usize }
}

/// The key array of node `n`.
///
/// # Safety
/// `n` must be an allocated node of a `K, V` list.
#[inline(always)]
unsafe fn keys<K, V>(n: *mut Header) -> *mut K {
    // SAFETY: the key array is `KEYS_AT` bytes above the header, inside the block.
    unsafe { n.cast::<u8>().add(Shape::<K, V>::KEYS_AT).cast() }
}

/// The value array of node `n`.
///
/// # Safety
/// `n` must be an allocated node of a `K, V` list.
#[inline(always)]
unsafe fn values<K, V>(n: *mut Header) -> *mut V {
    // SAFETY: the value array is `VALUES_AT` bytes above the header, inside the block.
    unsafe { n.cast::<u8>().add(Shape::<K, V>::VALUES_AT).cast() }
}

/// The key-prefix array of node `n`.
///
/// # Safety
/// `n` must be an allocated node of a `K, V` list with `K::PREFIXED`.
#[inline(always)]
unsafe fn prefixes<K: KeyPrefix, V>(n: *mut Header) -> *mut u64 {
    debug_assert!(K::PREFIXED);
    // SAFETY: a block of prefixed keys extends `CAP` `u64`s past `PREFIXES_AT`.
    unsafe { n.cast::<u8>().add(Shape::<K, V>::PREFIXES_AT).cast() }
}

/// Copies `count` entries (keys, values and prefixes) from slot `from` of node `src` to
/// slot `to` of node `dst`; the ranges may overlap (a shift inside one node).
///
/// # Safety
/// Both nodes allocated nodes of this list, both ranges inside `0..CAP`. The caller
/// accounts for ownership (the source slots count as moved out).
#[inline(always)]
unsafe fn move_slots<K: KeyPrefix, V>(
    src: *mut Header,
    from: usize,
    dst: *mut Header,
    to: usize,
    count: usize,
) {
    // SAFETY: by the contract all three arrays have room for both ranges.
    unsafe {
        ptr::copy(
            keys::<K, V>(src).add(from),
            keys::<K, V>(dst).add(to),
            count,
        );
        ptr::copy(
            values::<K, V>(src).add(from),
            values::<K, V>(dst).add(to),
            count,
        );
        if K::PREFIXED {
            ptr::copy(
                prefixes::<K, V>(src).add(from),
                prefixes::<K, V>(dst).add(to),
                count,
            );
        }
    }
}

/// Writes an entry into slot `i` of node `n` (not counted in `len` by this call).
///
/// # Safety
/// `n` an allocated node, `i < CAP`, the slot uninitialised (or moved out of).
#[inline(always)]
unsafe fn write_slot<K: KeyPrefix, V>(n: *mut Header, i: usize, key: K, value: V, prefix: u64) {
    // SAFETY: slot `i` is inside all three arrays by the contract.
    unsafe {
        if K::PREFIXED {
            prefixes::<K, V>(n).add(i).write(prefix);
        }
        keys::<K, V>(n).add(i).write(key);
        values::<K, V>(n).add(i).write(value);
    }
}

/// The prefix to store for `key` (0, unread, when the type stores none).
#[inline(always)]
fn prefix_of<K: KeyPrefix + ?Sized>(key: &K) -> u64 {
    if K::PREFIXED { key.key_prefix() } else { 0 }
}

/// Compares the first key (slot 0) of node `n` with `q`, whose prefix is `qp`: by prefix
/// first when the type stores prefixes (the copy in the header), by `Ord` when the
/// prefixes are equal.
///
/// # Safety
/// `n` a live node (`len >= 1`).
#[inline(always)]
unsafe fn cmp_first<K, V, Q>(n: *mut Header, q: &Q, qp: u64) -> Ordering
where
    K: KeyPrefix + Borrow<Q>,
    Q: ?Sized + Ord,
{
    // SAFETY: slot 0 of a live node is initialised, its header too.
    unsafe {
        if K::PREFIXED {
            let p = (*n).first;
            if p != qp {
                return p.cmp(&qp);
            }
        }
        (*keys::<K, V>(n)).borrow().cmp(q)
    }
}

/// Copies the prefix of slot 0 into the header (see `Header::first`), after a change to
/// node `n`'s slot 0.
///
/// # Safety
/// `n` a live node (`len >= 1`), writable.
#[inline(always)]
unsafe fn sync_first<K: KeyPrefix, V>(n: *mut Header) {
    if K::PREFIXED {
        // SAFETY: slot 0 is initialised (`len >= 1`).
        unsafe {
            debug_assert!(node_len(n) >= 1);
            (*n).first = *prefixes::<K, V>(n);
        }
    }
}

/// The number of keys of node `n` before `q` (`strict`: at or before `q`), and whether
/// the next one equals it. A binary search over the prefixes, then over the keys that
/// share `q`'s prefix (one or none, for random keys), so that a search usually reads
/// no key at all.
///
/// # Safety
/// `n` must be a live node, not mutated during the call.
#[inline(always)]
unsafe fn search_node<K, V, Q>(n: *mut Header, q: &Q, qp: u64, strict: bool) -> (usize, bool)
where
    K: KeyPrefix + Borrow<Q>,
    Q: ?Sized + Ord,
{
    // SAFETY: `n` is live: slots `0..len` of its arrays are initialised.
    unsafe {
        let len = node_len(n);
        let (lo, hi) = if K::PREFIXED {
            let ps = std::slice::from_raw_parts(prefixes::<K, V>(n), len);
            let lo = ps.partition_point(|&p| p < qp);
            (lo, lo + ps[lo..].partition_point(|&p| p == qp))
        } else {
            (0, len)
        };
        let ks = &key_slice::<K, V>(n)[lo..hi];
        if strict {
            (lo + ks.partition_point(|k| k.borrow() <= q), false)
        } else {
            match ks.binary_search_by(|k| k.borrow().cmp(q)) {
                Ok(i) => (lo + i, true),
                Err(i) => (lo + i, false),
            }
        }
    }
}

/// The initialised keys of node `n` as a slice.
///
/// # Safety
/// `n` must be a live node (invariant 1), not mutated while the slice lives.
#[inline(always)]
unsafe fn key_slice<'a, K, V>(n: *mut Header) -> &'a [K] {
    // SAFETY: slots `0..len` are initialised and contiguous (invariant 1).
    unsafe { std::slice::from_raw_parts(keys::<K, V>(n), node_len(n)) }
}

/// Hints the CPU to start loading the cache line at `p`. Never faults, whatever `p` is.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: prefetch is only a hint: it never faults and has no effect on program
        // semantics, even for an invalid or null address; SSE is in the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetches the header of node `n` (may be null) and, unless the keys are prefixed (then
/// the header holds what a search step compares), its first key line.
#[inline(always)]
fn prefetch_node<K: KeyPrefix, V>(n: *mut Header) {
    prefetch(n);
    if !K::PREFIXED {
        prefetch(n.cast::<u8>().wrapping_add(Shape::<K, V>::KEYS_AT + 63));
    }
}

/// Prefetches every cache line of the initialised keys of node `n` (their prefixes, for
/// prefixed keys), so that the binary search that follows finds them in flight together
/// rather than missing one by one.
///
/// # Safety
/// `n` must be a live node.
#[inline(always)]
unsafe fn prefetch_keys<K: KeyPrefix, V>(n: *mut Header) {
    let (at, size) = if K::PREFIXED {
        (Shape::<K, V>::PREFIXES_AT, mem::size_of::<u64>())
    } else {
        (Shape::<K, V>::KEYS_AT, mem::size_of::<K>())
    };
    // SAFETY: `n` is live by the contract, so its header is readable.
    let bytes = unsafe { node_len(n) } * size;
    let k = n.cast::<u8>().wrapping_add(at);
    let mut off = 0;
    while off < bytes {
        prefetch(k.wrapping_add(off));
        off += 64;
    }
}

/// Unlinks the live node `n` at every level of its tower. At level `k` its predecessor is
/// expected at the slot `hint(k)`; where that slot does not name `n` (an inconsistent
/// `Ord` misplaced something), the predecessor is found by identity, walking the level
/// from the head.
///
/// # Safety
/// `hb` must be the list's head base (writable), `n` a live node of that list, and
/// `hint(k)` null or a link slot of the head or of a live node at level `k`.
unsafe fn unlink(hb: *mut Link, n: *mut Header, hint: impl Fn(usize) -> *mut Link) {
    // SAFETY: `n` is live, so it is linked exactly once at each level below its height
    // (invariant 2): the walk by identity ends on its predecessor before the end of the
    // level, following only live nodes' links at level `k`. Rewriting that one slot
    // removes `n` from the level and keeps the rest of the chain as it was.
    unsafe {
        let nl = links(n);
        for k in 0..height(n) {
            let mut p = hint(k);
            if p.is_null() || *p != n {
                p = hb.sub(k);
                while *p != n {
                    debug_assert!(!(*p).is_null(), "a live node is linked at all levels");
                    p = links(*p).sub(k);
                }
            }
            *p = *nl.sub(k);
        }
    }
}

/// splitmix64 step, then a tower height of 1 + (trailing zero bits), so that each extra
/// level has probability 1/2.
#[inline]
fn random_height(rng: &mut u64) -> usize {
    *rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *rng;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z.trailing_zeros() as usize + 1).min(MAX_HEIGHT)
}

/// Where a lookup landed: a node and a position in it.
type Pos = (*mut Header, usize);

/// The ordered core behind [`crate::SkipMap`].
pub(crate) struct RawList<K, V> {
    /// Head links, reversed: the head's link at level `k` is `head[MAX_HEIGHT - 1 - k]`.
    head: [Link; MAX_HEIGHT],
    /// Levels in use (invariant 3).
    level: usize,
    len: usize,
    /// splitmix64 state for tower heights.
    rng: u64,
    /// The list owns `K`s and `V`s (for drop check and auto traits).
    _owns: PhantomData<(K, V)>,
}

// SAFETY: the list exclusively owns its nodes (no other list or thread holds their
// pointers) and the keys and values in them, so sending it sends owned `K`s and `V`s.
unsafe impl<K: Send, V: Send> Send for RawList<K, V> {}
// SAFETY: nothing in the list mutates through `&self` (no interior mutability: the RNG
// and every link or node change take `&mut self`), so sharing `&RawList` (or a `Cursor`)
// lets other threads read `&K` and `&V` only.
unsafe impl<K: Sync, V: Sync> Sync for RawList<K, V> {}

impl<K, V> RawList<K, V> {
    pub(crate) const fn new(seed: u64) -> Self {
        RawList {
            head: [ptr::null_mut(); MAX_HEIGHT],
            level: 1,
            len: 0,
            rng: seed,
            _owns: PhantomData,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn head_base(&self) -> *const Link {
        // SAFETY: `MAX_HEIGHT - 1` is the last element of `head`.
        unsafe { self.head.as_ptr().add(MAX_HEIGHT - 1) }
    }

    #[inline(always)]
    fn head_base_mut(&mut self) -> *mut Link {
        // SAFETY: `MAX_HEIGHT - 1` is the last element of `head`.
        unsafe { self.head.as_mut_ptr().add(MAX_HEIGHT - 1) }
    }

    #[inline(always)]
    fn first_node(&self) -> *mut Header {
        self.head[MAX_HEIGHT - 1]
    }

    /// Walks down from `base` (the head base, or the links of a live node of height
    /// `>= k`) starting at level `k`, moving right while `right(next node)` (which
    /// compares that node's first key, slot 0).
    /// Returns the level-0 link base of the last node it moved to (or `base` itself).
    /// With `preds`, records at each level the link slot of that level's last node.
    ///
    /// # Safety
    /// `base` must be as described; `preds`, when given, receives pointers into the head
    /// or into live nodes, valid until the list is next changed.
    #[inline(always)]
    unsafe fn descend(
        &self,
        mut base: *mut Link,
        mut k: usize,
        mut right: impl FnMut(*mut Header) -> bool,
        mut preds: Option<&mut [*mut Link; MAX_HEIGHT]>,
    ) -> *mut Link
    where
        K: KeyPrefix,
    {
        // Last node compared and found not to move right: when the next link at a lower
        // level names it again, it is not compared again.
        let mut known_stop: Link = ptr::null_mut();
        // SAFETY: `base` is always the head base or the level-0 link of a live node
        // reached at level `>= k`, so `base.sub(k)` is one of its links (invariant 1);
        // every pointer read from a link names a live node, whose first key is
        // initialised (`len >= 1`).
        unsafe {
            while k > 0 {
                k -= 1;
                let mut next = *base.sub(k);
                while !next.is_null() && next != known_stop {
                    for j in k.saturating_sub(PREFETCH_DEPTH)..k {
                        prefetch_node::<K, V>(*base.sub(j));
                    }
                    if right(next) {
                        base = links(next);
                        next = *base.sub(k);
                    } else {
                        known_stop = next;
                        break;
                    }
                }
                if let Some(p) = preds.as_deref_mut() {
                    p[k] = base.sub(k);
                }
            }
        }
        base
    }

    /// The node owning the level-0 link base `base`, or null for the head.
    #[inline(always)]
    fn owner(&self, base: *const Link) -> *mut Header {
        if base == self.head_base() {
            ptr::null_mut()
        } else {
            // A node's level-0 link sits right below its header.
            base.wrapping_add(1).cast_mut().cast()
        }
    }

    /// Finds the node and position holding a key equal to `q`.
    #[inline]
    fn find<Q>(&self, q: &Q) -> Option<Pos>
    where
        K: KeyPrefix + Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
    {
        let qp = prefix_of(q);
        // SAFETY: the head base at the current level (invariant 3); `descend` hands the
        // closure live nodes only, whose slot 0 is initialised.
        let base = unsafe {
            self.descend(
                self.head_base().cast_mut(),
                self.level,
                |n| cmp_first::<K, V, Q>(n, q, qp) != Ordering::Greater,
                None,
            )
        };
        let n = self.owner(base);
        if n.is_null() {
            return None;
        }
        // SAFETY: `n` was reached through links, so it is live (invariant 1).
        let (i, eq) = unsafe {
            prefetch_keys::<K, V>(n);
            search_node::<K, V, Q>(n, q, qp, false)
        };
        eq.then_some((n, i))
    }

    pub(crate) fn get<Q>(&self, q: &Q) -> Option<(&K, &V)>
    where
        K: KeyPrefix + Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
    {
        // SAFETY: `find` returns a live node and a position `< len` (from a slice of its
        // initialised keys); the references live as long as `&self`, during which nothing
        // mutates.
        self.find(q).map(|(n, i)| unsafe { self.entry_ref(n, i) })
    }

    pub(crate) fn get_mut<Q>(&mut self, q: &Q) -> Option<&mut V>
    where
        K: KeyPrefix + Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
    {
        // SAFETY: a live node and an initialised slot, as in `get`; `&mut self` makes the
        // borrow exclusive, and only the value is exposed mutably, so the key order cannot
        // be broken.
        self.find(q)
            .map(|(n, i)| unsafe { &mut *values::<K, V>(n).add(i) })
    }

    /// # Safety
    /// `n` must be a live node and `i < len(n)`.
    #[inline(always)]
    unsafe fn entry_ref(&self, n: *mut Header, i: usize) -> (&K, &V) {
        // SAFETY: `n` is live by the contract, so its header is readable.
        debug_assert!(i < unsafe { node_len(n) });
        // SAFETY: by the contract slot `i` is initialised; it lives as long as `&self`.
        unsafe { (&*keys::<K, V>(n).add(i), &*values::<K, V>(n).add(i)) }
    }

    /// Inserts, or replaces the value of an equal key (keeping the old key, like std).
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V>
    where
        K: Ord + KeyPrefix,
    {
        let cap = Shape::<K, V>::CAP;
        let kp = prefix_of(&key);
        let mut preds: [*mut Link; MAX_HEIGHT] = [ptr::null_mut(); MAX_HEIGHT];
        let hb = self.head_base_mut();
        // SAFETY: the head base at the current level (invariant 3). `hb` is derived from
        // `&mut self.head`, so the `preds` slots into the head may be written through.
        // `descend` hands the closure live nodes, whose slot 0 is initialised.
        let base = unsafe {
            self.descend(
                hb,
                self.level,
                |n| cmp_first::<K, V, K>(n, &key, kp) != Ordering::Greater,
                Some(&mut preds),
            )
        };
        let found = self.owner(base);
        // The node to insert into, and where.
        let (target, pos) = if found.is_null() {
            let first = self.first_node();
            if first.is_null() {
                // Empty list: a first node of random height, linked at all its levels.
                let h = random_height(&mut self.rng);
                let n = alloc_node::<K, V>(h);
                // SAFETY: a fresh node, its slot 0 written and `len` set before it is
                // linked; head slots `0..h` exist (`h <= MAX_HEIGHT`), and all are null
                // in an empty list (invariant 2).
                unsafe {
                    write_slot::<K, V>(n, 0, key, value, kp);
                    (*n).len = 1;
                    sync_first::<K, V>(n);
                    for k in 0..h {
                        *links(n).sub(k) = ptr::null_mut();
                        *hb.sub(k) = n;
                    }
                }
                self.level = self.level.max(h);
                self.len = 1;
                return None;
            }
            // Smaller than every key: it goes to the front of the first node.
            (first, 0)
        } else {
            // SAFETY: `found` was reached through links: it is live (invariant 1).
            let (i, eq) = unsafe {
                prefetch_keys::<K, V>(found);
                search_node::<K, V, K>(found, &key, kp, false)
            };
            if eq {
                // SAFETY: slot `i < len` is initialised (`eq` says a key is there);
                // `&mut self` is exclusive.
                let slot = unsafe { &mut *values::<K, V>(found).add(i) };
                return Some(mem::replace(slot, value));
            }
            (found, i)
        };
        // The value slots from `pos` up are about to move: start loading them now, so
        // that their misses overlap the shift of the keys.
        let vbase = target
            .cast::<u8>()
            .wrapping_add(Shape::<K, V>::VALUES_AT + pos * mem::size_of::<V>());
        // SAFETY: `target` is live (from a link), so its header is readable.
        let vbytes = unsafe { node_len(target) }.saturating_sub(pos) * mem::size_of::<V>();
        let mut off = 0;
        while off < vbytes + 64 {
            prefetch(vbase.wrapping_add(off));
            off += 64;
        }
        // SAFETY: `target` is live and `pos <= len(target)` (from a binary search over its
        // keys, or 0). When the node is full it is split first: the new node `s` gets
        // the upper entries (moved bit for bit, so each is still owned once), is linked
        // right after `target` at each of its levels, and the insert goes to whichever
        // half `pos` falls in, at a position clamped to that half's `0..=len`.
        unsafe {
            let mut t = target;
            let mut at = pos;
            let len = node_len(t);
            if len == cap {
                let h = random_height(&mut self.rng);
                let s = alloc_node::<K, V>(h);
                // Appending at the end of a full node (ascending inserts) starts an
                // empty node instead of halving: sequential loads fill nodes completely.
                let keep = if pos == len { len } else { len / 2 };
                let moved = len - keep;
                move_slots::<K, V>(t, keep, s, 0, moved);
                (*t).len = keep as u32;
                (*s).len = moved as u32;
                if moved > 0 {
                    sync_first::<K, V>(s);
                }
                // Link `s` after `t`: at levels where `t` stands, `t` is the predecessor;
                // above, the last node of that level at or before `t` (`preds`; the head
                // at levels above `self.level`).
                let th = height(t);
                let sl = links(s);
                for (k, &pk) in preds.iter().enumerate().take(h) {
                    let p = if k < th {
                        links(t).sub(k)
                    } else if k < self.level {
                        pk
                    } else {
                        hb.sub(k)
                    };
                    *sl.sub(k) = *p;
                    *p = s;
                }
                self.level = self.level.max(h);
                if at > keep || keep == len {
                    t = s;
                    at -= keep;
                }
            }
            let len = node_len(t);
            debug_assert!(at <= len && len < cap);
            let at = at.min(len);
            move_slots::<K, V>(t, at, t, at + 1, len - at);
            write_slot::<K, V>(t, at, key, value, kp);
            (*t).len = (len + 1) as u32;
            sync_first::<K, V>(t);
        }
        self.len += 1;
        None
    }

    pub(crate) fn remove<Q>(&mut self, q: &Q) -> Option<(K, V)>
    where
        K: KeyPrefix + Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
    {
        let qp = prefix_of(q);
        let mut preds: [*mut Link; MAX_HEIGHT] = [ptr::null_mut(); MAX_HEIGHT];
        let hb = self.head_base_mut();
        // SAFETY: the head base at the current level (invariant 3); strict: the walk
        // stops before a node whose first key equals `q`. `descend` hands the closure
        // live nodes, whose slot 0 is initialised.
        let base = unsafe {
            self.descend(
                hb,
                self.level,
                |n| cmp_first::<K, V, Q>(n, q, qp) == Ordering::Less,
                Some(&mut preds),
            )
        };
        let before = self.owner(base);
        // SAFETY: `base` is the head's or a live node's level-0 link; the nodes read are
        // live (invariant 1) and positions come from searches over initialised keys.
        let (n, i) = unsafe {
            let next = *base;
            if !next.is_null() && cmp_first::<K, V, Q>(next, q, qp) == Ordering::Equal {
                (next, 0)
            } else if before.is_null() {
                return None;
            } else {
                prefetch_keys::<K, V>(before);
                match search_node::<K, V, Q>(before, q, qp, false) {
                    (i, true) => (before, i),
                    (_, false) => return None,
                }
            }
        };
        // SAFETY: `n` is live and `i < len(n)`. The entry is moved out and the slots above
        // shifted down, so slots `0..len-1` stay initialised, each entry owned once. A node
        // left empty is unlinked (see `unlink`) and freed. A node left under the low-water
        // mark takes entries from its level-0 successor `m`: all of them (then `m`, empty,
        // is unlinked and freed) or enough to even the two out; entries move bit for bit
        // from `m`'s front to `n`'s end (so each stays owned once, and both arrays stay
        // initialised exactly on `0..len`), and both stay within `CAP`: `n` had fewer
        // than `CAP / 4` and takes at most `CAP / 2`. `m`'s predecessor at level `k` is
        // `n` where `n` stands, else `preds[k]` (the last node of that level before `n`).
        let entry = unsafe {
            let cap = Shape::<K, V>::CAP;
            let len = node_len(n);
            debug_assert!(i < len);
            let entry = (
                keys::<K, V>(n).add(i).read(),
                values::<K, V>(n).add(i).read(),
            );
            move_slots::<K, V>(n, i + 1, n, i, len - 1 - i);
            let nl = len - 1;
            (*n).len = nl as u32;
            if nl > 0 {
                sync_first::<K, V>(n);
            }
            if nl == 0 {
                unlink(hb, n, |k| preds[k]);
                free_node::<K, V>(n);
            } else if nl < cap / 4 && !(*links(n)).is_null() {
                let m = *links(n);
                let ml = node_len(m);
                let take = if nl + ml <= cap - cap / 4 {
                    ml
                } else {
                    (ml - nl.min(ml)) / 2
                };
                move_slots::<K, V>(m, 0, n, nl, take);
                move_slots::<K, V>(m, take, m, 0, ml - take);
                (*n).len = (nl + take) as u32;
                (*m).len = (ml - take) as u32;
                if take == ml {
                    let nh = height(n);
                    unlink(hb, m, |k| if k < nh { links(n).sub(k) } else { preds[k] });
                    free_node::<K, V>(m);
                } else {
                    sync_first::<K, V>(m);
                }
            }
            entry
        };
        self.len -= 1;
        while self.level > 1 && self.head[MAX_HEIGHT - self.level].is_null() {
            self.level -= 1;
        }
        Some(entry)
    }

    pub(crate) fn first(&self) -> Option<(&K, &V)> {
        let first = self.first_node();
        // SAFETY: a non-null head link names a live node, whose slot 0 is initialised.
        (!first.is_null()).then(|| unsafe { self.entry_ref(first, 0) })
    }

    pub(crate) fn last(&self) -> Option<(&K, &V)> {
        let mut base = self.head_base();
        let mut last: Link = ptr::null_mut();
        // SAFETY: we only follow links (invariant 1), from the top level down; the last
        // node is live and its slot `len - 1` initialised (`len >= 1`).
        unsafe {
            for k in (0..self.level).rev() {
                loop {
                    let next = *base.sub(k);
                    if next.is_null() {
                        break;
                    }
                    last = next;
                    base = links(next);
                }
            }
            (!last.is_null()).then(|| self.entry_ref(last, node_len(last) - 1))
        }
    }

    /// Drops every entry and frees every node, iteratively (no recursion).
    pub(crate) fn clear(&mut self) {
        let mut next = self.first_node();
        // Make the list empty first: if a key or value panics in its drop, the rest are
        // leaked, never dropped twice nor reachable.
        self.head = [ptr::null_mut(); MAX_HEIGHT];
        self.level = 1;
        self.len = 0;
        while !next.is_null() {
            // SAFETY: `next` was reachable at level 0 before the head was reset, so it is
            // live (invariant 2); its successor is read before it is freed, its `len` is
            // zeroed before its entries are dropped (a panicking drop then leaks the rest
            // of the node rather than dropping anything twice), and level 0 visits each
            // node once.
            unsafe {
                let n = next;
                next = *links(n);
                let len = node_len(n);
                (*n).len = 0;
                if mem::needs_drop::<K>() || mem::needs_drop::<V>() {
                    ptr::drop_in_place(ptr::slice_from_raw_parts_mut(keys::<K, V>(n), len));
                    ptr::drop_in_place(ptr::slice_from_raw_parts_mut(values::<K, V>(n), len));
                }
                free_node::<K, V>(n);
            }
        }
    }

    pub(crate) fn cursor(&self) -> Cursor<'_, K, V> {
        Cursor::new((self.first_node(), 0), (ptr::null_mut(), 0))
    }

    /// The first position at or after the bound (`Included`: key >= q, `Excluded`:
    /// key > q), searching from the head, or from the live node `from` (a finger search:
    /// climbs along top links while they stay before the bound, then descends, so it
    /// costs O(log d) for a target d nodes ahead). The position may be one past the end
    /// of a node (or `(null, 0)`, the end of the list).
    fn seek<Q>(&self, from: *mut Header, bound: Bound<&Q>) -> Pos
    where
        K: KeyPrefix + Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
    {
        let (q, strict) = match bound {
            Bound::Unbounded if from.is_null() => return (self.first_node(), 0),
            Bound::Unbounded => return (ptr::null_mut(), 0),
            Bound::Included(q) => (q, false),
            Bound::Excluded(q) => (q, true),
        };
        let qp = prefix_of(q);
        let before = |n: *mut Header| {
            // SAFETY: `before` is only given live nodes (from links or `from`), whose
            // slot 0 is initialised.
            match unsafe { cmp_first::<K, V, Q>(n, q, qp) } {
                Ordering::Less => true,
                Ordering::Equal => strict,
                Ordering::Greater => false,
            }
        };
        // SAFETY: `from` is null or live (the caller got it from a link); we follow links
        // of live nodes at levels below their heights only (invariant 1).
        unsafe {
            let base = if from.is_null() {
                self.descend(self.head_base().cast_mut(), self.level, before, None)
            } else {
                let mut x = from;
                if !before(x) {
                    return (x, 0);
                }
                // Climb: each top link leads to a node at least as tall.
                loop {
                    let next = *links(x).sub(height(x) - 1);
                    if next.is_null() || !before(next) {
                        break;
                    }
                    x = next;
                }
                self.descend(links(x), height(x), before, None)
            };
            let n = self.owner(base);
            if n.is_null() {
                return (self.first_node(), 0);
            }
            prefetch_keys::<K, V>(n);
            (n, search_node::<K, V, Q>(n, q, qp, strict).0)
        }
    }

    /// A cursor over the keys inside the bounds. An empty or inverted range (start after
    /// end, or equal with either side excluded) gives an empty cursor.
    pub(crate) fn range_cursor<Q>(&self, start: Bound<&Q>, end: Bound<&Q>) -> Cursor<'_, K, V>
    where
        K: KeyPrefix + Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
    {
        let empty = Cursor::new((ptr::null_mut(), 0), (ptr::null_mut(), 0));
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
        let first = self.seek(ptr::null_mut(), start);
        if first.0.is_null() {
            return empty;
        }
        let stop = match end {
            Bound::Unbounded => (ptr::null_mut(), 0),
            Bound::Included(b) => self.seek(first.0, Bound::Excluded(b)),
            Bound::Excluded(b) => self.seek(first.0, Bound::Included(b)),
        };
        Cursor::new(first, stop)
    }
}

impl<K, V> Drop for RawList<K, V> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Walks level 0 from a position up to (not including) an end position, reading each
/// node's arrays front to back. On entering a node it prefetches the next one, so a scan
/// overlaps the next node's miss with the current node's entries.
pub(crate) struct Cursor<'a, K, V> {
    /// Current node, or null when done.
    node: *mut Header,
    /// Next slot to yield in `node`.
    idx: usize,
    /// Slot of `node` at which to stop: its `len`, or `end_idx` in the end node.
    stop: usize,
    /// The end position: node (null for the end of the list) and slot.
    end: *mut Header,
    end_idx: usize,
    _list: PhantomData<&'a RawList<K, V>>,
}

// SAFETY: a cursor is a shared borrow of the list (it reads `&K` and `&V` only), so it
// may cross threads exactly when `&RawList` may: `K: Sync, V: Sync`.
unsafe impl<K: Sync, V: Sync> Send for Cursor<'_, K, V> {}
// SAFETY: as above; `&Cursor` allows nothing that `&RawList` does not.
unsafe impl<K: Sync, V: Sync> Sync for Cursor<'_, K, V> {}

impl<K, V> Cursor<'_, K, V> {
    /// A cursor from `start` to `end`; `start.0` must be null or a live node of the
    /// borrowed list, and `end.0` null or a live node.
    fn new(start: Pos, end: Pos) -> Self {
        let mut c = Cursor {
            node: start.0,
            idx: start.1,
            stop: 0,
            end: end.0,
            end_idx: end.1,
            _list: PhantomData,
        };
        c.enter();
        c
    }

    /// Sets `stop` for the current node, and prefetches the next one.
    #[inline(always)]
    fn enter(&mut self) {
        if self.node.is_null() {
            return;
        }
        // SAFETY: `node` is live (from a link or the caller, invariant 1), and the list
        // is borrowed shared for the cursor's lifetime, so it stays live.
        unsafe {
            self.stop = if self.node == self.end {
                self.end_idx
            } else {
                node_len(self.node)
            };
            let next = *links(self.node);
            prefetch(next);
            prefetch(next.cast::<u8>().wrapping_add(Shape::<K, V>::KEYS_AT));
            prefetch(next.cast::<u8>().wrapping_add(Shape::<K, V>::VALUES_AT));
        }
    }
}

impl<K, V> Clone for Cursor<'_, K, V> {
    fn clone(&self) -> Self {
        Cursor {
            node: self.node,
            idx: self.idx,
            stop: self.stop,
            end: self.end,
            end_idx: self.end_idx,
            _list: PhantomData,
        }
    }
}

impl<'a, K, V> Iterator for Cursor<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.node.is_null() {
                return None;
            }
            // SAFETY: the cursor borrows the list shared for `'a`, so the list cannot
            // change; `node` is live (invariant 1), `stop <= len` is checked below, so
            // slot `idx < stop` is initialised.
            unsafe {
                let len = node_len(self.node);
                if self.idx < self.stop.min(len) {
                    let i = self.idx;
                    self.idx += 1;
                    return Some((
                        &*keys::<K, V>(self.node).add(i),
                        &*values::<K, V>(self.node).add(i),
                    ));
                }
                if self.node == self.end {
                    self.node = ptr::null_mut();
                    return None;
                }
                self.node = *links(self.node);
                self.idx = 0;
            }
            self.enter();
        }
    }
}

/// Appends entries in strictly ascending key order in O(1) each, for bulk loads: it fills
/// each node to `LOAD_FILL` entries before starting the next.
pub(crate) struct Appender<'a, K, V> {
    list: &'a mut RawList<K, V>,
    /// Per level, the last node of that level, or null while the level is empty (then the
    /// head is the predecessor).
    tails: [Link; MAX_HEIGHT],
}

impl<'a, K: Ord + KeyPrefix, V> Appender<'a, K, V> {
    /// Entries per node in a bulk load: nearly full (dense and fast to scan), with room
    /// for a few later inserts before a node splits.
    const LOAD_FILL: usize = {
        let c = Shape::<K, V>::CAP;
        c - c / 8
    };

    /// Starts appending to `list`, which is cleared first.
    pub(crate) fn new(list: &'a mut RawList<K, V>) -> Self {
        list.clear();
        Appender {
            list,
            tails: [ptr::null_mut(); MAX_HEIGHT],
        }
    }

    /// The key of the last appended entry.
    pub(crate) fn last_key(&self) -> Option<&K> {
        let last = self.tails[0];
        // SAFETY: a non-null tail is a live node of this list (linked by `push`), with
        // `len >= 1`.
        (!last.is_null()).then(|| unsafe { self.list.entry_ref(last, node_len(last) - 1).0 })
    }

    /// Appends an entry whose key must be greater than every key in the list; on a key
    /// that is not, gives the entry back unchanged.
    pub(crate) fn push(&mut self, key: K, value: V) -> Result<(), (K, V)> {
        if self.last_key().is_some_and(|last| *last >= key) {
            return Err((key, value));
        }
        let tail = self.tails[0];
        // SAFETY: a non-null tail is live (invariant 1); there is room in it.
        if !tail.is_null() && unsafe { node_len(tail) } < Self::LOAD_FILL {
            // SAFETY: slot `len < CAP` of a live node is uninitialised; it is written,
            // then counted.
            unsafe {
                let len = node_len(tail);
                let kp = prefix_of(&key);
                write_slot::<K, V>(tail, len, key, value, kp);
                (*tail).len = (len + 1) as u32;
            }
            self.list.len += 1;
            return Ok(());
        }
        let h = random_height(&mut self.list.rng);
        let n = alloc_node::<K, V>(h);
        let hb = self.list.head_base_mut();
        // SAFETY: a fresh node of height `h`, filled before it is linked; for each level
        // below `h`, the slot written is the last link of that level (the head's, or the
        // tail node's, whose height is `> k` since it was linked at level `k`), so the
        // node joins the end of each level once.
        unsafe {
            let kp = prefix_of(&key);
            write_slot::<K, V>(n, 0, key, value, kp);
            (*n).len = 1;
            sync_first::<K, V>(n);
            let nl = links(n);
            for (k, tail) in self.tails.iter_mut().enumerate().take(h) {
                *nl.sub(k) = ptr::null_mut();
                let slot = if tail.is_null() {
                    hb.sub(k)
                } else {
                    links(*tail).sub(k)
                };
                *slot = n;
                *tail = n;
            }
        }
        self.list.level = self.list.level.max(h);
        self.list.len += 1;
        Ok(())
    }
}
