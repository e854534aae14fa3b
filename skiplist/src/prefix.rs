//! [`KeyPrefix`]: an order-preserving 64-bit summary of a key, which lets the map compare
//! byte-string keys without following their heap pointers.

/// An order-preserving 64-bit prefix of a key.
///
/// For key types whose [`PREFIXED`](KeyPrefix::PREFIXED) is `true` (byte strings:
/// `Vec<u8>`, `[u8]`, `bytes::Bytes`, `String`, `str`, boxed forms), every node of the map
/// keeps each key's prefix in an array of `u64` beside its keys. A search compares these
/// integers first and reads a key itself (a pointer chase to the heap, usually a cache
/// miss) only when the prefixes are equal. For other types the prefix is never stored nor
/// read: integers compare inline anyway, and a type that does not override the defaults
/// (`impl KeyPrefix for MyKey {}`) works exactly as a plain `Ord` key.
///
/// # The law
///
/// For all keys `a`, `b` of the type: `a < b` implies `a.key_prefix() <= b.key_prefix()`.
/// Equivalently, a smaller prefix means a smaller key, and equal prefixes say nothing
/// (the keys are then compared with `Ord`). And for a key type `K` that borrows as `Q`
/// (as `Vec<u8>` borrows as `[u8]`), `k.key_prefix() == k.borrow().key_prefix()`, the
/// same rule `Borrow` already sets for `Ord`. A type that breaks the law gets wrong
/// answers from the map (as with a lying `Ord`), never memory unsafety.
///
/// # Byte strings
///
/// The prefix of a byte string is its first 8 bytes read as a big-endian `u64`, a string
/// shorter than 8 bytes padded with zero bytes *on the right* ([`byte_prefix`]). Zero is
/// the smallest byte, so the padding keeps lexicographic order: `"ab"` and `"ab\0"` both
/// map to `0x6162_0000_0000_0000` (equal prefixes, decided by `Ord`: `"ab" < "ab\0"`), and
/// `"abc"` maps to `0x6162_6300_0000_0000`, above both. Padding with any other byte, or
/// reading a short key as a number (right-aligned), breaks the law: the tests in
/// `tests/prefix.rs` show both failing.
///
/// # Example
/// ```
/// use skiplist::{KeyPrefix, SkipMap};
///
/// // A key type of your own: the defaults make it a plain `Ord` key.
/// #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
/// struct Version(u32, u32);
/// impl KeyPrefix for Version {}
///
/// let mut m = SkipMap::new();
/// m.insert(Version(1, 2), "b");
/// m.insert(Version(1, 0), "a");
/// assert_eq!(m.first_key_value(), Some((&Version(1, 0), &"a")));
///
/// assert_eq!(b"ab"[..].key_prefix(), 0x6162_0000_0000_0000);
/// ```
pub trait KeyPrefix {
    /// Whether the map stores and compares the prefixes of this type's keys. `false` by
    /// default; `true` for byte strings, where a comparison of the keys themselves reads
    /// the heap.
    const PREFIXED: bool = false;

    /// The prefix (see the law in the trait docs). The default, 0 for every key, obeys
    /// the law trivially.
    #[inline]
    fn key_prefix(&self) -> u64 {
        0
    }
}

/// The first 8 bytes of `b` as a big-endian `u64`, zero-padded on the right when `b` is
/// shorter: the prefix of every byte-string key type.
///
/// # Example
/// ```
/// use skiplist::byte_prefix;
/// assert_eq!(byte_prefix(b""), 0);
/// assert_eq!(byte_prefix(b"ab"), byte_prefix(b"ab\0"));
/// assert!(byte_prefix(b"ab\0") < byte_prefix(b"abc"));
/// assert_eq!(byte_prefix(b"0123456789"), u64::from_be_bytes(*b"01234567"));
/// ```
#[inline]
pub fn byte_prefix(b: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = b.len().min(8);
    buf[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(buf)
}

macro_rules! bytes_like {
    ($($t:ty => $s:ident $as_bytes:expr),*) => {$(
        impl KeyPrefix for $t {
            const PREFIXED: bool = true;
            #[inline]
            fn key_prefix(&self) -> u64 {
                let $s = self;
                byte_prefix($as_bytes)
            }
        }
    )*};
}

bytes_like!(
    [u8] => s s,
    Vec<u8> => s s,
    Box<[u8]> => s s,
    bytes::Bytes => s s,
    str => s s.as_bytes(),
    String => s s.as_bytes(),
    Box<str> => s s.as_bytes()
);

impl<const N: usize> KeyPrefix for [u8; N] {
    // Arrays sit inline in the node: comparing them reads no heap, so the prefix array
    // would cost 8 bytes per entry for little.
    #[inline]
    fn key_prefix(&self) -> u64 {
        byte_prefix(self)
    }
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl KeyPrefix for $t {
            #[inline]
            fn key_prefix(&self) -> u64 {
                *self as u64
            }
        }
    )*};
}

unsigned!(u8, u16, u32, u64, usize, bool, char);

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        impl KeyPrefix for $t {
            /// The two's complement with its sign bit flipped orders like the number.
            #[inline]
            fn key_prefix(&self) -> u64 {
                ((*self as $u) ^ (1 << (<$u>::BITS - 1))) as u64
            }
        }
    )*};
}

signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, isize => usize);

impl KeyPrefix for u128 {
    #[inline]
    fn key_prefix(&self) -> u64 {
        (*self >> 64) as u64
    }
}

impl KeyPrefix for i128 {
    #[inline]
    fn key_prefix(&self) -> u64 {
        ((*self as u128 ^ (1 << 127)) >> 64) as u64
    }
}

impl KeyPrefix for () {}

/// A reference has its referent's prefix (and order).
impl<T: ?Sized + KeyPrefix> KeyPrefix for &T {
    const PREFIXED: bool = T::PREFIXED;
    #[inline]
    fn key_prefix(&self) -> u64 {
        (**self).key_prefix()
    }
}

/// Tuples order by their first field first, so its prefix is a prefix of the tuple.
macro_rules! tuple {
    ($($rest:ident),*) => {
        impl<A: KeyPrefix, $($rest),*> KeyPrefix for (A, $($rest),*) {
            const PREFIXED: bool = A::PREFIXED;
            #[inline]
            fn key_prefix(&self) -> u64 {
                self.0.key_prefix()
            }
        }
    };
}

tuple!();
tuple!(B);
tuple!(B, C);
tuple!(B, C, D);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_prefixes_keep_order() {
        let s = [i64::MIN, -2, -1, 0, 1, i64::MAX];
        assert!(s.windows(2).all(|w| w[0].key_prefix() < w[1].key_prefix()));
        let s = [i8::MIN, -1, 0, i8::MAX];
        assert!(s.windows(2).all(|w| w[0].key_prefix() < w[1].key_prefix()));
        let s = [i128::MIN, -1, 0, 1 << 64, i128::MAX];
        assert!(s.windows(2).all(|w| w[0].key_prefix() <= w[1].key_prefix()));
        assert!(i128::MIN.key_prefix() < (-1i128).key_prefix());
        assert!(0u128.key_prefix() < (1u128 << 64).key_prefix());
    }

    #[test]
    fn borrowed_forms_agree() {
        let v = b"hello, world".to_vec();
        let b = bytes::Bytes::from(v.clone());
        let s = String::from("hello, world");
        let p = v[..].key_prefix();
        assert_eq!(p, u64::from_be_bytes(*b"hello, w"));
        assert_eq!(v.key_prefix(), p);
        assert_eq!(b.key_prefix(), p);
        assert_eq!(s.key_prefix(), p);
        assert_eq!(s.as_str().key_prefix(), p);
        assert_eq!(KeyPrefix::key_prefix(&&v[..]), p);
        assert_eq!((v.clone(), 1u8).key_prefix(), p);
        const { assert!(<Vec<u8>>::PREFIXED && !u64::PREFIXED && !<[u8; 4]>::PREFIXED) };
    }
}
