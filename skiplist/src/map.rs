//! The safe, std-shaped facade over [`crate::raw`].

use std::borrow::Borrow;
use std::fmt;
use std::io::{self, Read, Write};
use std::iter::FusedIterator;
use std::ops::RangeBounds;

use crate::raw::{Appender, Cursor, RawList};
use crate::{Codec, KeyPrefix, LoadError, dump};

/// Seed used by [`SkipMap::new`].
const DEFAULT_SEED: u64 = 0x5EED_0F5C_1A11_0123;

/// An ordered map on a skiplist. See the [crate docs](crate) for the design.
///
/// # Example
/// ```
/// use skiplist::SkipMap;
/// let mut m = SkipMap::new();
/// m.insert("b".to_string(), 2);
/// m.insert("a".to_string(), 1);
/// assert_eq!(m.get("a"), Some(&1));
/// assert_eq!(m.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["a", "b"]);
/// ```
pub struct SkipMap<K, V> {
    pub(crate) raw: RawList<K, V>,
}

impl<K, V> SkipMap<K, V> {
    /// Makes an empty map with the default RNG seed. Allocates nothing until the first
    /// insert.
    ///
    /// # Example
    /// ```
    /// let m: skiplist::SkipMap<u64, u64> = skiplist::SkipMap::new();
    /// assert!(m.is_empty());
    /// ```
    pub const fn new() -> Self {
        Self::with_seed(DEFAULT_SEED)
    }

    /// Makes an empty map whose tower heights come from `seed`: the same seed and the same
    /// operations build the same structure.
    ///
    /// # Example
    /// ```
    /// let mut m = skiplist::SkipMap::with_seed(42);
    /// m.insert(1, "one");
    /// assert_eq!(m.len(), 1);
    /// ```
    pub const fn with_seed(seed: u64) -> Self {
        SkipMap {
            raw: RawList::new(seed),
        }
    }

    /// Number of entries.
    ///
    /// # Example
    /// ```
    /// let m: skiplist::SkipMap<_, _> = [(1, 1), (2, 2), (1, 3)].into_iter().collect();
    /// assert_eq!(m.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the map has no entries.
    ///
    /// # Example
    /// ```
    /// let mut m = skiplist::SkipMap::new();
    /// assert!(m.is_empty());
    /// m.insert(1, 1);
    /// assert!(!m.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.raw.len() == 0
    }

    /// Removes every entry and returns all memory; iterative, whatever the length.
    ///
    /// # Example
    /// ```
    /// let mut m: skiplist::SkipMap<_, _> = (0..100).map(|i| (i, i)).collect();
    /// m.clear();
    /// assert!(m.is_empty());
    /// ```
    pub fn clear(&mut self) {
        self.raw.clear();
    }

    /// Iterates over the entries in ascending key order.
    ///
    /// # Example
    /// ```
    /// let m: skiplist::SkipMap<_, _> = [(3, 'c'), (1, 'a'), (2, 'b')].into_iter().collect();
    /// assert_eq!(m.iter().collect::<Vec<_>>(), [(&1, &'a'), (&2, &'b'), (&3, &'c')]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            cursor: self.raw.cursor(),
            remaining: self.raw.len(),
        }
    }

    /// The entry with the smallest key.
    ///
    /// # Example
    /// ```
    /// let m: skiplist::SkipMap<_, _> = [(3, 'c'), (1, 'a')].into_iter().collect();
    /// assert_eq!(m.first_key_value(), Some((&1, &'a')));
    /// ```
    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.raw.first()
    }

    /// The entry with the largest key (O(log n): a walk down the right edge).
    ///
    /// # Example
    /// ```
    /// let m: skiplist::SkipMap<_, _> = [(3, 'c'), (1, 'a')].into_iter().collect();
    /// assert_eq!(m.last_key_value(), Some((&3, &'c')));
    /// ```
    pub fn last_key_value(&self) -> Option<(&K, &V)> {
        self.raw.last()
    }
}

impl<K: Ord + KeyPrefix, V> SkipMap<K, V> {
    /// Inserts `value` under `key` and returns the value it replaces, if any. When the key
    /// was present its stored key is kept (as in std) and `key` is dropped.
    ///
    /// # Example
    /// ```
    /// let mut m = skiplist::SkipMap::new();
    /// assert_eq!(m.insert(7, "a"), None);
    /// assert_eq!(m.insert(7, "b"), Some("a"));
    /// assert_eq!(m[&7], "b");
    /// ```
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.raw.insert(key, value)
    }

    /// The value under `key`, which may be any borrowed form of the key type.
    ///
    /// # Example
    /// ```
    /// let mut m = skiplist::SkipMap::new();
    /// m.insert(String::from("k"), 1);
    /// assert_eq!(m.get("k"), Some(&1));
    /// assert_eq!(m.get("x"), None);
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
    {
        self.raw.get(key).map(|(_, v)| v)
    }

    /// The stored key and value for `key`.
    ///
    /// # Example
    /// ```
    /// let m: skiplist::SkipMap<_, _> = [(1, 'a')].into_iter().collect();
    /// assert_eq!(m.get_key_value(&1), Some((&1, &'a')));
    /// ```
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
    {
        self.raw.get(key)
    }

    /// A mutable reference to the value under `key`.
    ///
    /// # Example
    /// ```
    /// let mut m = skiplist::SkipMap::new();
    /// m.insert(1, 10);
    /// if let Some(v) = m.get_mut(&1) {
    ///     *v += 1;
    /// }
    /// assert_eq!(m.get(&1), Some(&11));
    /// ```
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
    {
        self.raw.get_mut(key)
    }

    /// Whether `key` is present.
    ///
    /// # Example
    /// ```
    /// let m: skiplist::SkipMap<_, _> = [(1, ())].into_iter().collect();
    /// assert!(m.contains_key(&1));
    /// assert!(!m.contains_key(&2));
    /// ```
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
    {
        self.raw.get(key).is_some()
    }

    /// Removes `key` and returns its value, if it was present.
    ///
    /// # Example
    /// ```
    /// let mut m: skiplist::SkipMap<_, _> = [(1, 'a')].into_iter().collect();
    /// assert_eq!(m.remove(&1), Some('a'));
    /// assert_eq!(m.remove(&1), None);
    /// ```
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
    {
        self.raw.remove(key).map(|(_, v)| v)
    }

    /// Removes `key` and returns the stored key and its value.
    ///
    /// # Example
    /// ```
    /// let mut m: skiplist::SkipMap<_, _> = [(1, 'a')].into_iter().collect();
    /// assert_eq!(m.remove_entry(&1), Some((1, 'a')));
    /// ```
    pub fn remove_entry<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
    {
        self.raw.remove(key)
    }

    /// Iterates in ascending order over the entries whose keys are inside `range`.
    ///
    /// Unlike `BTreeMap::range`, an inverted range (start after end, or start equal to end
    /// with either bound excluded) does not panic: it is empty. A storage engine serving
    /// client requests should not crash on a client's odd bounds.
    ///
    /// # Example
    /// ```
    /// use std::ops::Bound::{Excluded, Included};
    /// let m: skiplist::SkipMap<_, _> = (0..10).map(|i| (i, i * 10)).collect();
    /// assert_eq!(m.range(3..6).map(|(k, _)| *k).collect::<Vec<_>>(), [3, 4, 5]);
    /// assert_eq!(m.range((Excluded(7), Included(9))).count(), 2);
    /// assert_eq!(m.range(8..).count(), 2);
    /// assert_eq!(m.range((Included(6), Included(2))).count(), 0); // inverted: empty
    /// ```
    pub fn range<Q, R>(&self, range: R) -> Range<'_, K, V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Ord + KeyPrefix,
        R: RangeBounds<Q>,
    {
        Range {
            cursor: self
                .raw
                .range_cursor(range.start_bound(), range.end_bound()),
        }
    }
}

impl<K: Ord + Codec, V: Codec> SkipMap<K, V> {
    /// Writes the map in the dump format described in the [crate docs](crate#dump-format).
    /// Fails only if the writer fails, or if a key or value encodes to more than 4 GiB.
    ///
    /// # Example
    /// ```
    /// use skiplist::SkipMap;
    /// let m: SkipMap<String, u64> = [("a".to_string(), 1)].into_iter().collect();
    /// let mut bytes = Vec::new();
    /// m.dump(&mut bytes)?;
    /// let back: SkipMap<String, u64> = SkipMap::load(bytes.as_slice())?;
    /// assert_eq!(back, m);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dump(&self, w: impl Write) -> io::Result<()> {
        dump::dump(self, w)
    }
}

impl<K: Ord + KeyPrefix + Codec, V: Codec> SkipMap<K, V> {
    /// Reads a map written by [`dump`](Self::dump), exactly the dump's bytes and nothing
    /// after them. A truncated, corrupted or foreign input gives a [`LoadError`] naming the
    /// problem and its byte offset, never a partial map.
    ///
    /// # Example
    /// ```
    /// use skiplist::{LoadError, SkipMap};
    /// let m: SkipMap<u64, u64> = (0..3).map(|i| (i, i)).collect();
    /// let mut bytes = Vec::new();
    /// m.dump(&mut bytes)?;
    /// assert_eq!(SkipMap::<u64, u64>::load(bytes.as_slice())?, m);
    /// let err = SkipMap::<u64, u64>::load(&bytes[..30]).unwrap_err();
    /// assert!(matches!(err, LoadError::Truncated { offset: 30, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(r: impl Read) -> Result<Self, LoadError> {
        dump::load(r, DEFAULT_SEED)
    }
}

impl<K, V> Default for SkipMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SkipMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for SkipMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Eq, V: Eq> Eq for SkipMap<K, V> {}

impl<K: Ord + KeyPrefix + Clone, V: Clone> Clone for SkipMap<K, V> {
    fn clone(&self) -> Self {
        let mut out = SkipMap::with_seed(DEFAULT_SEED);
        let mut app = Appender::new(&mut out.raw);
        for (k, v) in self {
            // Keys come in strictly ascending order, so `push` accepts each one.
            let pushed = app.push(k.clone(), v.clone());
            debug_assert!(
                pushed.is_ok(),
                "a SkipMap iterates in strictly ascending order"
            );
        }
        out
    }
}

impl<K: Ord + KeyPrefix, V> FromIterator<(K, V)> for SkipMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = SkipMap::new();
        m.extend(iter);
        m
    }
}

impl<K: Ord + KeyPrefix, V> Extend<(K, V)> for SkipMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<'a, K: Ord + KeyPrefix + Copy, V: Copy> Extend<(&'a K, &'a V)> for SkipMap<K, V> {
    fn extend<I: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, iter: I) {
        self.extend(iter.into_iter().map(|(k, v)| (*k, *v)));
    }
}

impl<K: Ord + KeyPrefix, V, Q> std::ops::Index<&Q> for SkipMap<K, V>
where
    K: Borrow<Q>,
    Q: ?Sized + Ord + KeyPrefix,
{
    type Output = V;

    /// # Panics
    /// If `key` is not in the map.
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("SkipMap: no entry for the key")
    }
}

impl<'a, K, V> IntoIterator for &'a SkipMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

/// Ascending iterator over a [`SkipMap`], from [`SkipMap::iter`].
pub struct Iter<'a, K, V> {
    cursor: Cursor<'a, K, V>,
    remaining: usize,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.cursor.next()?;
        self.remaining -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}
impl<K, V> FusedIterator for Iter<'_, K, V> {}

impl<K, V> Clone for Iter<'_, K, V> {
    fn clone(&self) -> Self {
        Iter {
            cursor: self.cursor.clone(),
            remaining: self.remaining,
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// Ascending iterator over a key range of a [`SkipMap`], from [`SkipMap::range`].
pub struct Range<'a, K, V> {
    cursor: Cursor<'a, K, V>,
}

impl<'a, K, V> Iterator for Range<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.cursor.next()
    }
}

impl<K, V> FusedIterator for Range<'_, K, V> {}

impl<K, V> Clone for Range<'_, K, V> {
    fn clone(&self) -> Self {
        Range {
            cursor: self.cursor.clone(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Range<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}
