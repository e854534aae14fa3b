//! The byte layout of a WAL record and of a segment header: pure functions, no files.
//!
//! # Record (24-byte header, then the payload; integers little-endian)
//!
//! | offset | size | field | meaning |
//! | ---: | ---: | --- | --- |
//! | 0 | 4 | `len` | payload length in bytes, `<=` [`MAX_PAYLOAD`] |
//! | 4 | 1 | `kind` | the caller's record type, 1..=255 (0 is reserved) |
//! | 5 | 1 | `flags` | bit 0: last record of its [`append`](crate::Wal::append) batch; bits 1-7 zero |
//! | 6 | 2 | reserved | zero |
//! | 8 | 8 | `seq` | the record's sequence number: the previous record's + 1 |
//! | 16 | 4 | `payload_crc` | CRC32C (Castagnoli) of the payload |
//! | 20 | 4 | `header_crc` | CRC32C of bytes 0..20 of this header |
//! | 24 | `len` | payload | the caller's bytes |
//!
//! The header has its own checksum so that a flipped bit in `len` is seen as damage, not
//! mistaken for a record that runs past the end of the file (a torn write). Example, a
//! record of kind 7, seq 1, payload `"hi"`, the last of its batch:
//!
//! ```text
//! 02 00 00 00  07  01  00 00  01 00 00 00 00 00 00 00  <crc("hi")>  <crc(bytes 0..20)>  68 69
//! ```
//!
//! # Segment header (32 bytes, at offset 0 of every segment file)
//!
//! | offset | size | field | meaning |
//! | ---: | ---: | --- | --- |
//! | 0 | 8 | magic | `RAFTKVWL` |
//! | 8 | 4 | version | 1 |
//! | 12 | 4 | reserved | zero |
//! | 16 | 8 | `first_seq` | seq of the segment's first record; also the file name, in hex |
//! | 24 | 4 | `crc` | CRC32C of bytes 0..24 |
//! | 28 | 4 | reserved | zero |

/// Bytes of a record header.
pub const RECORD_HEADER: usize = 24;
/// Bytes of a segment header.
pub const SEGMENT_HEADER: usize = 32;
/// Largest payload of one record: 128 MiB. A longer length field is damage.
pub const MAX_PAYLOAD: usize = 128 << 20;
/// The segment file magic.
pub const SEGMENT_MAGIC: &[u8; 8] = b"RAFTKVWL";
/// The segment format version.
pub const SEGMENT_VERSION: u32 = 1;

/// Flag bit: the record ends its append batch.
pub const FLAG_BATCH_END: u8 = 1;

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload length.
    pub len: u32,
    /// The caller's record type.
    pub kind: u8,
    /// True on the last record of an append batch.
    pub batch_end: bool,
    /// Sequence number.
    pub seq: u64,
    /// CRC32C of the payload.
    pub payload_crc: u32,
}

/// What is wrong with the bytes at a record position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Fewer bytes than a header, or than the header says the payload has: a truncation.
    Short,
    /// The header fails its checksum or holds impossible values.
    BadHeader(String),
    /// The payload fails its checksum.
    BadPayload,
}

/// Appends one encoded record to `out`.
pub fn encode_record(out: &mut Vec<u8>, kind: u8, seq: u64, batch_end: bool, payload: &[u8]) {
    debug_assert!(kind != 0 && payload.len() <= MAX_PAYLOAD);
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(kind);
    out.push(if batch_end { FLAG_BATCH_END } else { 0 });
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let hcrc = crc32c::crc32c(&out[start..start + 20]);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(payload);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes the header at the start of `buf` (which may run past the record).
pub fn decode_header(buf: &[u8]) -> Result<Header, Damage> {
    if buf.len() < RECORD_HEADER {
        return Err(Damage::Short);
    }
    let hcrc = u32_at(buf, 20);
    if crc32c::crc32c(&buf[..20]) != hcrc {
        return Err(Damage::BadHeader("header checksum mismatch".into()));
    }
    let len = u32_at(buf, 0);
    let kind = buf[4];
    let flags = buf[5];
    if kind == 0 {
        return Err(Damage::BadHeader("record type 0".into()));
    }
    if flags & !FLAG_BATCH_END != 0 || buf[6] != 0 || buf[7] != 0 {
        return Err(Damage::BadHeader(format!("unknown flags {flags:#04x}")));
    }
    if len as usize > MAX_PAYLOAD {
        return Err(Damage::BadHeader(format!(
            "payload length {len} over the limit {MAX_PAYLOAD}"
        )));
    }
    Ok(Header {
        len,
        kind,
        batch_end: flags & FLAG_BATCH_END != 0,
        seq: u64_at(buf, 8),
        payload_crc: u32_at(buf, 16),
    })
}

/// Decodes the record at the start of `buf`: its header and payload range `24..24+len`.
pub fn decode_record(buf: &[u8]) -> Result<Header, Damage> {
    let h = decode_header(buf)?;
    let end = RECORD_HEADER + h.len as usize;
    if buf.len() < end {
        return Err(Damage::Short);
    }
    if crc32c::crc32c(&buf[RECORD_HEADER..end]) != h.payload_crc {
        return Err(Damage::BadPayload);
    }
    Ok(h)
}

/// The 32-byte segment header for a segment starting at `first_seq`.
pub fn encode_segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header; returns its `first_seq`.
pub fn decode_segment_header(buf: &[u8]) -> Result<u64, String> {
    if buf.len() < SEGMENT_HEADER {
        return Err(format!(
            "segment header is {} bytes, want {SEGMENT_HEADER}",
            buf.len()
        ));
    }
    if &buf[..8] != SEGMENT_MAGIC {
        return Err("not a raftkv WAL segment (bad magic)".into());
    }
    if crc32c::crc32c(&buf[..24]) != u32_at(buf, 24) {
        return Err("segment header checksum mismatch".into());
    }
    if buf[28..32] != [0; 4] {
        return Err("segment header reserved bytes are not zero".into());
    }
    let version = u32_at(buf, 8);
    if version != SEGMENT_VERSION {
        return Err(format!(
            "segment format version {version}; this build reads {SEGMENT_VERSION}"
        ));
    }
    Ok(u64_at(buf, 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_record_bytes() {
        let mut b = Vec::new();
        encode_record(&mut b, 7, 1, true, b"hi");
        assert_eq!(b.len(), 26);
        assert_eq!(&b[..16], &[2, 0, 0, 0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[16..20], &crc32c::crc32c(b"hi").to_le_bytes());
        assert_eq!(&b[20..24], &crc32c::crc32c(&b[..20]).to_le_bytes());
        assert_eq!(&b[24..], b"hi");
        let h = decode_record(&b).unwrap();
        assert_eq!((h.len, h.kind, h.batch_end, h.seq), (2, 7, true, 1));
    }

    #[test]
    fn every_prefix_is_short_and_every_bit_flip_is_caught() {
        let mut b = Vec::new();
        encode_record(&mut b, 3, 99, false, b"payload bytes");
        for cut in 0..b.len() {
            assert_eq!(decode_record(&b[..cut]), Err(Damage::Short), "cut {cut}");
        }
        for bit in 0..b.len() * 8 {
            let mut c = b.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&c).is_err(), "bit {bit} flipped went unseen");
        }
    }

    #[test]
    fn golden_segment_header() {
        let h = encode_segment_header(0x10);
        assert_eq!(&h[..8], b"RAFTKVWL");
        assert_eq!(
            &h[8..24],
            &[1, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(decode_segment_header(&h), Ok(0x10));
        let mut bad = h;
        bad[17] ^= 1;
        assert!(decode_segment_header(&bad).is_err());
    }
}
