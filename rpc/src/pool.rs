//! A process-wide pool of large read buffers.
//!
//! A large frame (at least 16 KiB) is read in place into a buffer of its own size, whose
//! body is then handed to the handler or caller as `Bytes` without a copy. Allocating and
//! freeing such buffers per frame makes the allocator hand memory back to the kernel and
//! fault it in again (a fifth of the CPU time of 64 KiB echo calls); recycling them here
//! avoids that, and a recycled buffer needs no zeroing.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

/// Buffers larger than this are not kept.
const MAX_POOLED: usize = 1 << 20;
/// Bytes the pool may hold while idle.
const MAX_TOTAL: usize = 8 << 20;

struct Pool {
    free: Vec<Vec<u8>>,
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: Vec::new(),
    bytes: 0,
});

/// A buffer of exactly `len` initialized bytes, recycled when possible.
pub(crate) fn take(len: usize) -> Vec<u8> {
    if len <= MAX_POOLED {
        let mut p = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = p.free.iter().position(|b| b.capacity() >= len) {
            let mut b = p.free.swap_remove(i);
            p.bytes -= b.capacity();
            drop(p);
            if b.len() >= len {
                b.truncate(len);
            } else {
                b.resize(len, 0);
            }
            return b;
        }
    }
    vec![0; len]
}

/// Turns a filled buffer into `Bytes` that return it to the pool when the last clone drops.
pub(crate) fn freeze(buf: Vec<u8>) -> Bytes {
    if buf.capacity() > MAX_POOLED {
        return Bytes::from(buf);
    }
    Bytes::from_owner(Pooled(buf))
}

struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        let mut p = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if p.bytes + buf.capacity() <= MAX_TOTAL {
            p.bytes += buf.capacity();
            p.free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_with_the_requested_length() {
        let mut b = take(40_000);
        assert_eq!(b.len(), 40_000);
        b[0] = 7;
        let bytes = freeze(b);
        assert_eq!(bytes.len(), 40_000);
        drop(bytes);
        let c = take(30_000);
        assert_eq!(c.len(), 30_000);
        let d = take(50_000);
        assert_eq!(d.len(), 50_000);
    }
}
