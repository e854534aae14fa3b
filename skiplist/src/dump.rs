//! The dump format (documented byte by byte in the crate docs) and its reader and writer.

use std::fmt;
use std::io::{self, Read, Write};

use crate::raw::Appender;
use crate::{Codec, DecodeError, SkipMap};

/// First 8 bytes of every dump.
pub const MAGIC: [u8; 8] = *b"RKVSKIPL";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes buffered by `dump` before each write to the writer.
const WRITE_CHUNK: usize = 64 * 1024;

/// Which part of a dump a [`LoadError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The 8-byte magic.
    Magic,
    /// The `u32` format version.
    Version,
    /// The `u64` entry count.
    Count,
    /// The `u32` length before entry `n`'s key.
    KeyLen(u64),
    /// Entry `n`'s key bytes.
    Key(u64),
    /// The `u32` length before entry `n`'s value.
    ValueLen(u64),
    /// Entry `n`'s value bytes.
    Value(u64),
    /// The CRC32 trailer.
    Checksum,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Magic => f.write_str("magic"),
            Field::Version => f.write_str("format version"),
            Field::Count => f.write_str("entry count"),
            Field::KeyLen(n) => write!(f, "key length of entry {n}"),
            Field::Key(n) => write!(f, "key of entry {n}"),
            Field::ValueLen(n) => write!(f, "value length of entry {n}"),
            Field::Value(n) => write!(f, "value of entry {n}"),
            Field::Checksum => f.write_str("CRC32 trailer"),
        }
    }
}

/// Why [`SkipMap::load`] refused its input. Every variant names the byte offset (from the
/// start of the dump) where the problem was found; nothing of a refused input is kept.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// The reader failed (other than by ending).
    Io {
        /// Bytes read successfully before the failure.
        offset: u64,
        /// What was being read.
        field: Field,
        /// The reader's error.
        source: io::Error,
    },
    /// The input ended inside `field`.
    Truncated {
        /// Where the input ended.
        offset: u64,
        /// The field that was cut short.
        field: Field,
    },
    /// The input does not start with [`MAGIC`]: it is not a skiplist dump.
    BadMagic {
        /// The bytes found instead (as many as there were, up to 8).
        found: Vec<u8>,
    },
    /// A dump of a format version this crate does not know.
    UnsupportedVersion {
        /// Offset of the version field (8).
        offset: u64,
        /// The version found.
        version: u32,
    },
    /// A key or value whose bytes its [`Codec`] rejects.
    Decode {
        /// Offset of the first byte of the key or value.
        offset: u64,
        /// `Field::Key(n)` or `Field::Value(n)`.
        field: Field,
        /// The codec's reason.
        source: DecodeError,
    },
    /// Entry `entry`'s key is not greater than the previous one (a dump is sorted and
    /// has no duplicates).
    OutOfOrder {
        /// Offset of the key length of the offending entry.
        offset: u64,
        /// Index of the offending entry.
        entry: u64,
    },
    /// The CRC32 trailer does not match the bytes before it.
    ChecksumMismatch {
        /// Offset of the trailer.
        offset: u64,
        /// The trailer's value.
        stored: u32,
        /// CRC32 of the bytes before it.
        computed: u32,
    },
}

impl LoadError {
    /// Byte offset in the input where the problem was found.
    pub fn offset(&self) -> u64 {
        match self {
            LoadError::Io { offset, .. }
            | LoadError::Truncated { offset, .. }
            | LoadError::UnsupportedVersion { offset, .. }
            | LoadError::Decode { offset, .. }
            | LoadError::OutOfOrder { offset, .. }
            | LoadError::ChecksumMismatch { offset, .. } => *offset,
            LoadError::BadMagic { .. } => 0,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io {
                offset,
                field,
                source,
            } => {
                write!(
                    f,
                    "skiplist dump: read error at byte {offset} in the {field}: {source}"
                )
            }
            LoadError::Truncated { offset, field } => {
                write!(
                    f,
                    "skiplist dump: truncated: input ends at byte {offset}, inside the {field}"
                )
            }
            LoadError::BadMagic { found } => {
                write!(
                    f,
                    "skiplist dump: not a skiplist dump: bytes 0.. are {found:02x?}, expected {MAGIC:02x?}"
                )
            }
            LoadError::UnsupportedVersion { offset, version } => write!(
                f,
                "skiplist dump: unsupported format version {version} at byte {offset} (this build reads {FORMAT_VERSION})"
            ),
            LoadError::Decode {
                offset,
                field,
                source,
            } => {
                write!(
                    f,
                    "skiplist dump: corrupt {field} at byte {offset}: {source}"
                )
            }
            LoadError::OutOfOrder { offset, entry } => write!(
                f,
                "skiplist dump: corrupt: entry {entry} at byte {offset} is not after the previous key"
            ),
            LoadError::ChecksumMismatch {
                offset,
                stored,
                computed,
            } => write!(
                f,
                "skiplist dump: checksum mismatch at byte {offset}: stored {stored:#010x}, computed {computed:#010x}"
            ),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { source, .. } => Some(source),
            LoadError::Decode { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Writes `map` in the dump format.
pub(crate) fn dump<K: Ord + Codec, V: Codec>(map: &SkipMap<K, V>, w: impl Write) -> io::Result<()> {
    write_entries(map.len() as u64, map.iter(), w, false)
}

/// Writes `count` entries from `entries` in the dump format of [`SkipMap::dump`], so that
/// [`SkipMap::load`] reads them back as a map: for a map that exists only as a merge of
/// sources (a frozen map plus the changes made since, say) and is never built in memory.
///
/// `entries` must yield exactly `count` entries in strictly ascending key order. The
/// writer checks both as it goes and fails with [`io::ErrorKind::InvalidInput`] (naming
/// the entry) on the first violation; the bytes already written are then not a valid dump
/// (its count or order is wrong and its checksum is missing), so discard them. O(count)
/// time, one comparison per entry; buffers 64 KiB at a time.
///
/// # Example
/// ```
/// use skiplist::{SkipMap, dump_entries};
/// let keys = [1u64, 3, 5];
/// let mut bytes = Vec::new();
/// dump_entries(3, keys.iter().map(|k| (k, k)), &mut bytes)?;
/// let back: SkipMap<u64, u64> = SkipMap::load(bytes.as_slice())?;
/// assert_eq!(back.iter().map(|(k, _)| *k).collect::<Vec<_>>(), keys);
/// // Out of order, or a wrong count, is refused.
/// assert!(dump_entries(2, [(&2u64, &0u64), (&1, &0)].into_iter(), Vec::new()).is_err());
/// assert!(dump_entries(4, keys.iter().map(|k| (k, k)), Vec::new()).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn dump_entries<'a, K, V>(
    count: u64,
    entries: impl Iterator<Item = (&'a K, &'a V)>,
    w: impl Write,
) -> io::Result<()>
where
    K: Ord + Codec + 'a,
    V: Codec + 'a,
{
    write_entries(count, entries, w, true)
}

fn write_entries<'a, K, V>(
    count: u64,
    entries: impl Iterator<Item = (&'a K, &'a V)>,
    mut w: impl Write,
    check_order: bool,
) -> io::Result<()>
where
    K: Ord + Codec + 'a,
    V: Codec + 'a,
{
    let mut crc = crc32fast::Hasher::new();
    let mut buf = Vec::with_capacity(WRITE_CHUNK + 256);
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf.extend_from_slice(&count.to_le_bytes());
    let mut written = 0u64;
    let mut prev: Option<&K> = None;
    for (k, v) in entries {
        if written == count {
            return Err(invalid(format!(
                "skiplist dump: more than the {count} entries announced"
            )));
        }
        if check_order {
            if prev.is_some_and(|p| p >= k) {
                return Err(invalid(format!(
                    "skiplist dump: entry {written} is not after the previous key"
                )));
            }
            prev = Some(k);
        }
        put_prefixed(&mut buf, |out| k.encode(out), "key")?;
        put_prefixed(&mut buf, |out| v.encode(out), "value")?;
        written += 1;
        if buf.len() >= WRITE_CHUNK {
            crc.update(&buf);
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    if written != count {
        return Err(invalid(format!(
            "skiplist dump: {written} entries where {count} were announced"
        )));
    }
    crc.update(&buf);
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    w.write_all(&buf)?;
    w.flush()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Appends a `u32` length and the bytes that `encode` writes.
fn put_prefixed(
    buf: &mut Vec<u8>,
    encode: impl FnOnce(&mut Vec<u8>),
    what: &str,
) -> io::Result<()> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    encode(buf);
    let len = buf.len() - at - 4;
    let len = u32::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "skiplist dump: a {what} encodes to {len} bytes, more than the format's 4 GiB limit"
            ),
        )
    })?;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// A reader that counts bytes and checksums them.
struct Input<R> {
    r: R,
    offset: u64,
    crc: crc32fast::Hasher,
}

impl<R: Read> Input<R> {
    /// Reads as much of `buf` as the input has; returns the count (short only at the end).
    fn fill(&mut self, buf: &mut [u8], field: Field) -> Result<usize, LoadError> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(LoadError::Io {
                        offset: self.offset + got as u64,
                        field,
                        source,
                    });
                }
            }
        }
        Ok(got)
    }

    fn exact<const N: usize>(&mut self, field: Field) -> Result<[u8; N], LoadError> {
        let mut buf = [0; N];
        let got = self.fill(&mut buf, field)?;
        if got < N {
            return Err(LoadError::Truncated {
                offset: self.offset + got as u64,
                field,
            });
        }
        self.crc.update(&buf);
        self.offset += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, field: Field) -> Result<u32, LoadError> {
        self.exact(field).map(u32::from_le_bytes)
    }

    /// Reads `len` bytes without trusting `len` for the allocation: the buffer grows only
    /// as bytes actually arrive.
    fn bytes(&mut self, len: u32, field: Field) -> Result<Vec<u8>, LoadError> {
        let len = len as usize;
        let mut out = Vec::with_capacity(len.min(64 * 1024));
        let mut chunk = [0u8; 8192];
        while out.len() < len {
            let want = (len - out.len()).min(chunk.len());
            let got = self.fill(&mut chunk[..want], field)?;
            out.extend_from_slice(&chunk[..got]);
            if got < want {
                return Err(LoadError::Truncated {
                    offset: self.offset + out.len() as u64,
                    field,
                });
            }
        }
        self.crc.update(&out);
        self.offset += len as u64;
        Ok(out)
    }
}

/// Reads one dump from `r` (exactly its bytes, nothing after).
pub(crate) fn load<K: Ord + crate::KeyPrefix + Codec, V: Codec>(
    r: impl Read,
    seed: u64,
) -> Result<SkipMap<K, V>, LoadError> {
    let mut input = Input {
        r,
        offset: 0,
        crc: crc32fast::Hasher::new(),
    };
    let mut magic = [0u8; 8];
    let got = input.fill(&mut magic, Field::Magic)?;
    if magic[..got] != MAGIC[..got] {
        return Err(LoadError::BadMagic {
            found: magic[..got].to_vec(),
        });
    }
    if got < magic.len() {
        return Err(LoadError::Truncated {
            offset: got as u64,
            field: Field::Magic,
        });
    }
    input.crc.update(&magic);
    input.offset = 8;
    let version = input.u32(Field::Version)?;
    if version != FORMAT_VERSION {
        return Err(LoadError::UnsupportedVersion { offset: 8, version });
    }
    let count = u64::from_le_bytes(input.exact(Field::Count)?);

    let mut map = SkipMap::with_seed(seed);
    let mut app = Appender::new(&mut map.raw);
    for n in 0..count {
        let entry_at = input.offset;
        let key_len = input.u32(Field::KeyLen(n))?;
        let key_at = input.offset;
        let key = input.bytes(key_len, Field::Key(n))?;
        let key = K::decode(key).map_err(|source| LoadError::Decode {
            offset: key_at,
            field: Field::Key(n),
            source,
        })?;
        let value_len = input.u32(Field::ValueLen(n))?;
        let value_at = input.offset;
        let value = input.bytes(value_len, Field::Value(n))?;
        let value = V::decode(value).map_err(|source| LoadError::Decode {
            offset: value_at,
            field: Field::Value(n),
            source,
        })?;
        if app.push(key, value).is_err() {
            return Err(LoadError::OutOfOrder {
                offset: entry_at,
                entry: n,
            });
        }
    }
    let computed = input.crc.clone().finalize();
    let trailer_at = input.offset;
    let stored = u32::from_le_bytes(input.exact(Field::Checksum)?);
    if stored != computed {
        return Err(LoadError::ChecksumMismatch {
            offset: trailer_at,
            stored,
            computed,
        });
    }
    Ok(map)
}
