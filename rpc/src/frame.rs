//! The frame codec: plain functions over byte slices, no sockets.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! offset  size  field
//! 0       4     length: bytes after this field (16 + E + body); at least 16
//! 4       2     magic: 0x52 0x4B ("RK")
//! 6       1     version: 1
//! 7       1     kind: 1 = request, 2 = response, 3 = error
//! 8       8     request id, chosen by the client, echoed by the server
//! 16      4     E: envelope length
//! 20      E     envelope: RequestHeader (request), empty (response), ErrorHeader (error)
//! 20+E    ...   body: the request or reply message (empty on error frames)
//! ```

use bytes::BufMut;
use proto::service::{Body, Status};

/// Bytes of the fixed header, length field included.
pub const HEADER_LEN: usize = 20;
/// Bytes of the fixed header that the length field counts.
const COUNTED_HEADER: usize = HEADER_LEN - 4;
/// "RK": raftkv.
pub const MAGIC: [u8; 2] = *b"RK";
/// The only version spoken.
pub const VERSION: u8 = 1;
/// Default limit on a frame's length (header included): 64 MiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Client → server: envelope is a `RequestHeader`, body the request message.
    Request = 1,
    /// Server → client: empty envelope, body the reply message.
    Response = 2,
    /// Server → client: envelope is an `ErrorHeader`, empty body.
    Error = 3,
}

/// Why bytes are not a frame. Every case closes the connection: framing is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix exceeds the configured maximum (checked before any allocation).
    TooLarge {
        /// Frame length the prefix announces, header included.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The length prefix is smaller than the fixed header.
    TooShort(u32),
    /// Bytes 4..6 are not "RK".
    BadMagic([u8; 2]),
    /// Unknown version byte.
    BadVersion(u8),
    /// Unknown kind byte.
    BadKind(u8),
    /// The envelope length runs past the end of the frame.
    BadEnvelope {
        /// Envelope length from the header.
        envelope: u32,
        /// Bytes after the fixed header.
        available: usize,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            FrameError::TooShort(n) => write!(f, "length prefix {n} is shorter than a header"),
            FrameError::BadMagic(m) => write!(f, "bad magic {m:02x?}"),
            FrameError::BadVersion(v) => write!(f, "unsupported version {v}"),
            FrameError::BadKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::BadEnvelope {
                envelope,
                available,
            } => write!(
                f,
                "envelope of {envelope} bytes but only {available} after the header"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// One decoded frame, borrowing from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What it carries.
    pub kind: FrameKind,
    /// The call it belongs to.
    pub request_id: u64,
    /// Protobuf envelope bytes (see [`FrameKind`]).
    pub envelope: &'a [u8],
    /// Message body bytes.
    pub body: &'a [u8],
}

/// Decodes the frame at the start of `buf`.
///
/// `Ok(None)`: more bytes are needed (the header is checked as soon as its 8 first bytes
/// are there, so bad magic or an oversized length fail without waiting).
/// `Ok(Some((frame, n)))`: a frame occupying `buf[..n]`.
pub fn decode(buf: &[u8], max_frame: usize) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    if buf.len() < 8 {
        // Check what we have early: a wrong first byte of magic is already an error.
        if buf.len() > 4 && buf[4] != MAGIC[0] {
            return Err(FrameError::BadMagic([
                buf[4],
                buf.get(5).copied().unwrap_or(0),
            ]));
        }
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let total = len as u64 + 4;
    if total > max_frame as u64 {
        return Err(FrameError::TooLarge {
            len: total,
            max: max_frame,
        });
    }
    if (len as usize) < COUNTED_HEADER {
        return Err(FrameError::TooShort(len));
    }
    if buf[4..6] != MAGIC {
        return Err(FrameError::BadMagic([buf[4], buf[5]]));
    }
    if buf[6] != VERSION {
        return Err(FrameError::BadVersion(buf[6]));
    }
    let kind = match buf[7] {
        1 => FrameKind::Request,
        2 => FrameKind::Response,
        3 => FrameKind::Error,
        k => return Err(FrameError::BadKind(k)),
    };
    let total = total as usize;
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&buf[8..16]);
    let request_id = u64::from_be_bytes(id);
    let envelope = u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]);
    let available = total - HEADER_LEN;
    if envelope as usize > available {
        return Err(FrameError::BadEnvelope {
            envelope,
            available,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let env_end = HEADER_LEN + envelope as usize;
    Ok(Some((
        Frame {
            kind,
            request_id,
            envelope: &buf[HEADER_LEN..env_end],
            body: &buf[env_end..total],
        },
        total,
    )))
}

/// Frame length announced by a buffer's first four bytes, if present (header included).
pub fn announced_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 4 {
        return None;
    }
    // Saturating: on a 32-bit target a prefix of 0xFFFFFFFF (not yet refused by `decode`
    // when fewer than 8 bytes are in) would overflow.
    Some((u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize).saturating_add(4))
}

fn put_header(out: &mut Vec<u8>, kind: FrameKind, id: u64, envelope: usize, body: usize) {
    let counted = COUNTED_HEADER + envelope + body;
    assert!(
        counted <= u32::MAX as usize,
        "frame of {counted} bytes cannot be framed"
    );
    out.put_u32(counted as u32);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.put_u64(id);
    out.put_u32(envelope as u32);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn string_field_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        1 + varint_len(s.len() as u64) + s.len()
    }
}

fn put_string_field(out: &mut Vec<u8>, tag: u8, s: &str) {
    if !s.is_empty() {
        out.push(tag);
        put_varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
}

/// Appends a request frame. The envelope is the protobuf encoding of
/// `RequestHeader { service, method }`, written by hand (same bytes as prost) so that no
/// message is built per call.
pub fn encode_request(out: &mut Vec<u8>, id: u64, service: &str, method: &str, body: &dyn Body) {
    let env = string_field_len(service) + string_field_len(method);
    let blen = body.body_len();
    out.reserve(HEADER_LEN + env + blen);
    put_header(out, FrameKind::Request, id, env, blen);
    put_string_field(out, 0x0A, service);
    put_string_field(out, 0x12, method);
    let before = out.len();
    body.encode_into(out);
    debug_assert_eq!(out.len() - before, blen);
}

/// Appends a response frame carrying `body`.
pub fn encode_response(out: &mut Vec<u8>, id: u64, body: &dyn Body) {
    let blen = body.body_len();
    out.reserve(HEADER_LEN + blen);
    put_header(out, FrameKind::Response, id, 0, blen);
    body.encode_into(out);
}

/// Appends an error frame: envelope `ErrorHeader { status, message }`, empty body.
pub fn encode_error(out: &mut Vec<u8>, id: u64, status: Status, message: &str) {
    let st = status as i32 as u64;
    let status_len = if st == 0 { 0 } else { 1 + varint_len(st) };
    let env = status_len + string_field_len(message);
    put_header(out, FrameKind::Error, id, env, 0);
    if st != 0 {
        out.push(0x08);
        put_varint(out, st);
    }
    put_string_field(out, 0x12, message);
}

/// Reads a varint from `buf` at `*pos`.
fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7F) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Parses a `RequestHeader` envelope without allocating: `(service, method)` borrowed from
/// `env`. Unknown fields are skipped, as protobuf requires. `None` if malformed.
pub fn parse_request_header(env: &[u8]) -> Option<(&str, &str)> {
    let mut service = "";
    let mut method = "";
    let mut pos = 0;
    while pos < env.len() {
        let key = get_varint(env, &mut pos)?;
        match key & 7 {
            0 => {
                get_varint(env, &mut pos)?;
            }
            1 => pos = pos.checked_add(8)?,
            5 => pos = pos.checked_add(4)?,
            2 => {
                let len = usize::try_from(get_varint(env, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                let bytes = env.get(pos..end)?;
                match key >> 3 {
                    1 => service = std::str::from_utf8(bytes).ok()?,
                    2 => method = std::str::from_utf8(bytes).ok()?,
                    _ => {}
                }
                pos = end;
            }
            _ => return None,
        }
        if pos > env.len() {
            return None;
        }
    }
    Some((service, method))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use proto::echo::EchoRequest;
    use proto::rpc::{ErrorHeader, RequestHeader};

    fn echo(p: &[u8]) -> EchoRequest {
        EchoRequest {
            payload: bytes::Bytes::copy_from_slice(p),
        }
    }

    #[test]
    fn golden_request_bytes() {
        let mut out = Vec::new();
        encode_request(&mut out, 0x0102030405060708, "S", "M", &echo(b"hi"));
        #[rustfmt::skip]
        let want: &[u8] = &[
            0, 0, 0, 26,             // length: 16 + 6 + 4
            b'R', b'K', 1, 1,        // magic, version, kind = request
            1, 2, 3, 4, 5, 6, 7, 8,  // request id
            0, 0, 0, 6,              // envelope length
            0x0A, 1, b'S', 0x12, 1, b'M', // RequestHeader { service: "S", method: "M" }
            0x0A, 2, b'h', b'i',     // EchoRequest { payload: "hi" }
        ];
        assert_eq!(out, want);
        // The hand-written envelope is exactly what prost writes.
        let env = RequestHeader {
            service: "S".into(),
            method: "M".into(),
        }
        .encode_to_vec();
        assert_eq!(&out[20..26], &env[..]);
    }

    #[test]
    fn golden_response_bytes() {
        let mut out = Vec::new();
        encode_response(&mut out, 7, &echo(b"ok"));
        #[rustfmt::skip]
        let want: &[u8] = &[
            0, 0, 0, 20, b'R', b'K', 1, 2,
            0, 0, 0, 0, 0, 0, 0, 7,
            0, 0, 0, 0,
            0x0A, 2, b'o', b'k',
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn golden_error_bytes() {
        let mut out = Vec::new();
        encode_error(&mut out, 9, Status::UnknownMethod, "no");
        #[rustfmt::skip]
        let want: &[u8] = &[
            0, 0, 0, 22, b'R', b'K', 1, 3,
            0, 0, 0, 0, 0, 0, 0, 9,
            0, 0, 0, 6,
            0x08, 2, 0x12, 2, b'n', b'o',
        ];
        assert_eq!(out, want);
        let env = ErrorHeader {
            status: Status::UnknownMethod as i32,
            message: "no".into(),
        }
        .encode_to_vec();
        assert_eq!(&out[20..], &env[..]);
    }

    #[test]
    fn decode_reports_partial_and_complete() {
        let mut out = Vec::new();
        encode_request(&mut out, 42, "svc", "m", &echo(b"payload"));
        for cut in 0..out.len() {
            assert_eq!(
                decode(&out[..cut], DEFAULT_MAX_FRAME),
                Ok(None),
                "cut {cut}"
            );
        }
        let (f, n) = decode(&out, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(n, out.len());
        assert_eq!(f.kind, FrameKind::Request);
        assert_eq!(f.request_id, 42);
        assert_eq!(parse_request_header(f.envelope), Some(("svc", "m")));
        assert_eq!(EchoRequest::decode(f.body).unwrap(), echo(b"payload"));
    }

    #[test]
    fn oversized_and_malformed_headers_fail_early() {
        let big = [0xFF, 0xFF, 0xFF, 0xFF, b'R', b'K', 1, 1];
        assert!(matches!(
            decode(&big, DEFAULT_MAX_FRAME),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(
            decode(&[0, 0, 0, 20, b'X', b'K', 1, 1], DEFAULT_MAX_FRAME),
            Err(FrameError::BadMagic([b'X', b'K']))
        );
        assert_eq!(
            decode(&[0, 0, 0, 20, b'R', b'K', 9, 1], DEFAULT_MAX_FRAME),
            Err(FrameError::BadVersion(9))
        );
        assert_eq!(
            decode(&[0, 0, 0, 20, b'R', b'K', 1, 7], DEFAULT_MAX_FRAME),
            Err(FrameError::BadKind(7))
        );
        assert_eq!(
            decode(&[0, 0, 0, 3, b'R', b'K', 1, 1], DEFAULT_MAX_FRAME),
            Err(FrameError::TooShort(3))
        );
        let mut bad_env = vec![0, 0, 0, 16, b'R', b'K', 1, 1];
        bad_env.extend_from_slice(&[0; 8]);
        bad_env.extend_from_slice(&[0, 0, 0, 1]);
        assert!(matches!(
            decode(&bad_env, DEFAULT_MAX_FRAME),
            Err(FrameError::BadEnvelope { .. })
        ));
    }

    #[test]
    fn request_header_parser_matches_prost() {
        let h = RequestHeader {
            service: "raftkv.kv.KvService".into(),
            method: "Get".into(),
        };
        let b = h.encode_to_vec();
        assert_eq!(
            parse_request_header(&b),
            Some(("raftkv.kv.KvService", "Get"))
        );
        // Unknown fields are skipped.
        let mut with_extra = vec![0x18, 0x05, 0x22, 0x01, 0x00];
        with_extra.extend_from_slice(&b);
        assert_eq!(
            parse_request_header(&with_extra),
            Some(("raftkv.kv.KvService", "Get"))
        );
        assert_eq!(parse_request_header(&[0x0A, 0x05, b'a']), None);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let mut rest = &bytes[..];
                while let Ok(Some((f, n))) = decode(rest, 1 << 16) {
                    let _ = parse_request_header(f.envelope);
                    rest = &rest[n..];
                }
                let _ = parse_request_header(&bytes);
            }

            /// Valid frames with a few bytes overwritten (random bytes rarely get past
            /// the magic): decoding never panics, never reads past its input, and a
            /// frame it returns spans exactly its announced length.
            #[test]
            fn mutated_frames_never_panic(
                payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..6),
                edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
                max in prop_oneof![Just(DEFAULT_MAX_FRAME), 16usize..120],
            ) {
                let mut out = Vec::new();
                for (i, p) in payloads.iter().enumerate() {
                    encode_request(&mut out, i as u64, "svc", "m", &echo(p));
                }
                for (at, byte) in &edits {
                    let i = at.index(out.len());
                    out[i] = *byte;
                }
                let mut rest = &out[..];
                while let Ok(Some((f, n))) = decode(rest, max) {
                    prop_assert!(n >= HEADER_LEN && n <= rest.len() && n <= max);
                    prop_assert_eq!(Some(n), announced_len(rest));
                    prop_assert_eq!(HEADER_LEN + f.envelope.len() + f.body.len(), n);
                    let _ = parse_request_header(f.envelope);
                    rest = &rest[n..];
                }
            }

            #[test]
            fn encode_decode_identity(
                id in any::<u64>(),
                service in "[a-zA-Z.]{0,40}",
                method in "[a-zA-Z]{0,20}",
                payload in proptest::collection::vec(any::<u8>(), 0..2048),
                status in 0i32..8,
                message in ".{0,40}",
            ) {
                let mut out = Vec::new();
                encode_request(&mut out, id, &service, &method, &echo(&payload));
                encode_response(&mut out, id ^ 1, &echo(&payload));
                let st = Status::try_from(status).unwrap();
                encode_error(&mut out, id ^ 2, st, &message);
                let (f, n) = decode(&out, DEFAULT_MAX_FRAME).unwrap().unwrap();
                prop_assert_eq!(f.kind, FrameKind::Request);
                prop_assert_eq!(f.request_id, id);
                prop_assert_eq!(parse_request_header(f.envelope), Some((&service[..], &method[..])));
                prop_assert_eq!(EchoRequest::decode(f.body).unwrap(), echo(&payload));
                let (g, m) = decode(&out[n..], DEFAULT_MAX_FRAME).unwrap().unwrap();
                prop_assert_eq!(g.kind, FrameKind::Response);
                prop_assert_eq!(g.request_id, id ^ 1);
                prop_assert_eq!(EchoRequest::decode(g.body).unwrap(), echo(&payload));
                let (h, k) = decode(&out[n + m..], DEFAULT_MAX_FRAME).unwrap().unwrap();
                prop_assert_eq!(h.kind, FrameKind::Error);
                prop_assert_eq!(h.request_id, id ^ 2);
                let eh = ErrorHeader::decode(h.envelope).unwrap();
                prop_assert_eq!(eh.status, status);
                prop_assert_eq!(eh.message, message);
                prop_assert_eq!(n + m + k, out.len());
            }
        }
    }
}
