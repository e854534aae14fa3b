//! The backup file that `kvcli snapshot save` writes and `kvserver --restore` reads: one
//! node's key-value state at one applied log index, checksummed.
//!
//! ```text
//! offset  size  field (integers little-endian)
//! 0       8     magic "RKVBACK1"
//! 8       8     index: the last log index the state covers
//! 16      8     term: the term of the entry at `index`
//! 24      8     n: length of the state in bytes
//! 32      4     CRC-32 (IEEE) of the state
//! 36      4     CRC-32 (IEEE) of bytes [0, 36)
//! 40      n     the state: a kv snapshot as `kvserver::KvState` encodes it
//! ```
//!
//! Nothing may follow the state. [`decode`] refuses a file that is not a backup, that is
//! cut short or longer than it says, or whose bytes do not match their checksums, with the
//! byte offset of the problem.

use bytes::Bytes;

/// First 8 bytes of a backup file.
pub const BACKUP_MAGIC: [u8; 8] = *b"RKVBACK1";
/// Bytes before the state.
pub const HEADER_LEN: usize = 40;

/// A decoded backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    /// The last log index the state covers.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The key-value state (a kv snapshot).
    pub state: Bytes,
}

/// The file's bytes for a backup.
pub fn encode(index: u64, term: u64, state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + state.len());
    out.extend_from_slice(&BACKUP_MAGIC);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(&(state.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(state).to_le_bytes());
    let head = crc32fast::hash(&out);
    out.extend_from_slice(&head.to_le_bytes());
    out.extend_from_slice(state);
    out
}

/// Reads a backup file's bytes; the error names the byte offset and what is wrong.
pub fn decode(file: Bytes) -> Result<Backup, String> {
    if file.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes is too short for a raftkv backup (the header alone is {HEADER_LEN})",
            file.len()
        ));
    }
    if file[..8] != BACKUP_MAGIC {
        return Err("not a raftkv backup (bad magic at byte 0; expected RKVBACK1)".into());
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&file[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let u32_at = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&file[at..at + 4]);
        u32::from_le_bytes(b)
    };
    if crc32fast::hash(&file[..36]) != u32_at(36) {
        return Err("damaged backup: header checksum mismatch at byte 36".into());
    }
    let (index, term, n, crc) = (u64_at(8), u64_at(16), u64_at(24), u32_at(32));
    let have = (file.len() - HEADER_LEN) as u64;
    if have != n {
        return Err(format!(
            "damaged backup: the header says {n} bytes of state at byte {HEADER_LEN}, the file holds {have} (cut short or appended to)"
        ));
    }
    let state = file.slice(HEADER_LEN..);
    if crc32fast::hash(&state) != crc {
        return Err(format!(
            "damaged backup: the state's checksum does not match (bytes {HEADER_LEN}..{})",
            file.len()
        ));
    }
    if index == 0 || term == 0 {
        return Err(format!(
            "damaged backup: index {index} / term {term} at bytes 8-23 (both must be above 0)"
        ));
    }
    Ok(Backup { index, term, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let f = encode(42, 3, b"state bytes");
        let b = decode(Bytes::from(f)).expect("decodes");
        assert_eq!(
            (b.index, b.term, &b.state[..]),
            (42, 3, &b"state bytes"[..])
        );
    }

    #[test]
    fn every_flipped_bit_truncation_and_extension_is_refused() {
        let f = encode(42, 3, b"some state of the store");
        for at in 0..f.len() {
            for bit in 0..8 {
                let mut bad = f.clone();
                bad[at] ^= 1 << bit;
                assert!(
                    decode(Bytes::from(bad)).is_err(),
                    "bit {bit} of byte {at} flipped was accepted"
                );
            }
        }
        for len in 0..f.len() {
            assert!(
                decode(Bytes::copy_from_slice(&f[..len])).is_err(),
                "cut to {len}"
            );
        }
        let mut longer = f.clone();
        longer.push(0);
        assert!(decode(Bytes::from(longer)).is_err());
        let e = decode(Bytes::from_static(
            b"RKVSNAP2 and more bytes than a header....",
        ))
        .unwrap_err();
        assert!(e.contains("not a raftkv backup"), "{e}");
    }
}
