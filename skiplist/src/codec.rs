//! How keys and values become bytes in a dump, and back.

use std::fmt;

/// Turns a key or value into bytes for [`SkipMap::dump`](crate::SkipMap::dump) and back for
/// [`SkipMap::load`](crate::SkipMap::load).
///
/// The dump stores each encoding behind its own length prefix, so an encoding need not be
/// self-delimiting. Implemented for `Vec<u8>`, `String`, `bytes::Bytes` (as their bytes)
/// and for every integer type (fixed-width little-endian; `usize`/`isize` as 8 bytes).
///
/// # Example
/// ```
/// use skiplist::Codec;
/// let mut out = Vec::new();
/// 258u16.encode(&mut out);
/// assert_eq!(out, [2, 1]);
/// assert_eq!(u16::decode(out).unwrap(), 258);
/// assert!(u16::decode(vec![1, 2, 3]).is_err());
/// ```
pub trait Codec: Sized {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Rebuilds a value from exactly the bytes that `encode` appended.
    fn decode(bytes: Vec<u8>) -> Result<Self, DecodeError>;
}

/// Bytes that are not the encoding of any value of the type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A fixed-width type got the wrong number of bytes.
    WrongLength {
        /// Bytes the type takes.
        expected: usize,
        /// Bytes found.
        found: usize,
    },
    /// A `String` got bytes that are not UTF-8; `valid_up_to` bytes were.
    InvalidUtf8 {
        /// Length of the longest valid UTF-8 prefix.
        valid_up_to: usize,
    },
    /// Any other reason, for `Codec` implementations outside this crate.
    Other(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::WrongLength { expected, found } => {
                write!(f, "expected {expected} bytes, found {found}")
            }
            DecodeError::InvalidUtf8 { valid_up_to } => {
                write!(f, "invalid UTF-8 after {valid_up_to} bytes")
            }
            DecodeError::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Codec for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        Ok(bytes)
    }
}

impl Codec for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        String::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 {
            valid_up_to: e.utf8_error().valid_up_to(),
        })
    }
}

impl Codec for bytes::Bytes {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        Ok(bytes::Bytes::from(bytes))
    }
}

macro_rules! int_codec {
    ($($t:ty),*) => {$(
        impl Codec for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn decode(bytes: Vec<u8>) -> Result<Self, DecodeError> {
                let arr = <[u8; size_of::<$t>()]>::try_from(bytes.as_slice()).map_err(|_| {
                    DecodeError::WrongLength { expected: size_of::<$t>(), found: bytes.len() }
                })?;
                Ok(<$t>::from_le_bytes(arr))
            }
        }
    )*};
}

int_codec!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

macro_rules! size_codec {
    ($($t:ty => $wide:ty),*) => {$(
        /// Encoded as 8 bytes whatever the platform; decoding a value that does not fit
        /// the platform's width is an error.
        impl Codec for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                (*self as $wide).encode(out);
            }
            fn decode(bytes: Vec<u8>) -> Result<Self, DecodeError> {
                let wide = <$wide>::decode(bytes)?;
                <$t>::try_from(wide).map_err(|_| {
                    DecodeError::Other(format!("{wide} does not fit in {}", stringify!($t)))
                })
            }
        }
    )*};
}

size_codec!(usize => u64, isize => i64);
