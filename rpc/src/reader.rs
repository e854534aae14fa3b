//! Frame reassembly for one connection's incoming bytes, shared by the server and the
//! client I/O thread.
//!
//! Small frames are read many per `read` call into a shared scratch buffer and parsed
//! there; the bytes of an incomplete one are kept for the next read. A large frame is
//! read in place into a buffer of its own size (from [`crate::pool`]), whose body is then
//! handed on as `Bytes` without a copy.

use bytes::Bytes;

use crate::frame;

/// An emptied buffer larger than this is freed, so idle connections stay small.
pub(crate) const KEEP_BUF: usize = 1024 * 1024;
/// A frame at least this long that is still incomplete after a read gets a buffer of its
/// own size and is read in place.
pub(crate) const LARGE: usize = 16 * 1024;

/// A connection's bytes of an incomplete frame.
#[derive(Default)]
pub(crate) struct FrameReader {
    /// Bytes of a frame not yet complete.
    buf: Vec<u8>,
    /// `Some(valid bytes)` while a large frame is read straight into `buf`, which grows
    /// (doubling, up to `large_total`) as its bytes arrive: a header announcing 64 MiB
    /// costs what was sent, not 64 MiB.
    large_fill: Option<usize>,
    /// The full length of the large frame in progress.
    large_total: usize,
    /// The last frame was large: read the next header alone, so that the frame after it
    /// is read in place too instead of through the shared buffer and a copy.
    large_mode: bool,
}

impl FrameReader {
    /// Where the next `read` goes, and how many bytes it asks for (fewer read means the
    /// socket is drained). A large frame in progress is read straight into its own
    /// buffer; right after a large frame only the next header is read; otherwise the
    /// shared `scratch`.
    pub(crate) fn read_buf<'a>(&'a mut self, scratch: &'a mut [u8]) -> (&'a mut [u8], usize) {
        match self.large_fill {
            Some(filled) => {
                if filled == self.buf.len() {
                    let grown = (self.buf.len() * 2).max(LARGE).min(self.large_total);
                    self.buf.resize(grown, 0);
                }
                let w = self.buf.len() - filled;
                (&mut self.buf[filled..], w)
            }
            None if self.large_mode && self.buf.is_empty() => {
                (&mut scratch[..frame::HEADER_LEN], frame::HEADER_LEN)
            }
            None => {
                let w = scratch.len();
                (scratch, w)
            }
        }
    }

    /// Takes the `n` bytes just read into the buffer [`read_buf`](Self::read_buf) gave
    /// (`scratch` is the same shared buffer passed there). Every complete frame is handed
    /// to `parse` as the bytes starting at a frame boundary, with the `Bytes` that own
    /// them when they are a whole large frame read in place (`None` when they are
    /// borrowed). `parse` returns the bytes it consumed and must stop only at an
    /// incomplete frame, having run `frame::decode` over it: that check of the header is
    /// what allows a buffer of the announced size (see `keep_tail`). The rest is kept for
    /// the next read.
    ///
    /// Returns `Ok(true)` when a large frame is still incomplete and `parse` was not
    /// called; `parse`'s error as is (the connection must close; what is kept is then
    /// unspecified).
    pub(crate) fn feed<E>(
        &mut self,
        scratch: &[u8],
        n: usize,
        max_frame: usize,
        mut parse: impl FnMut(&[u8], Option<&Bytes>) -> Result<usize, E>,
    ) -> Result<bool, E> {
        if let Some(filled) = self.large_fill {
            let filled = filled + n;
            if filled < self.large_total {
                self.large_fill = Some(filled);
                return Ok(true);
            }
            self.large_fill = None;
            self.large_mode = true;
            let whole = crate::pool::freeze(std::mem::take(&mut self.buf));
            parse(&whole, Some(&whole))?;
        } else if self.buf.is_empty() {
            let used = parse(&scratch[..n], None)?;
            self.keep_tail(&scratch[used..n], max_frame);
        } else {
            let mut buf = std::mem::take(&mut self.buf);
            buf.extend_from_slice(&scratch[..n]);
            let used = parse(&buf, None)?;
            if used == 0 && frame::announced_len(&buf).is_none_or(|t| t < LARGE) {
                self.buf = buf;
            } else {
                self.keep_tail(&buf[used..], max_frame);
            }
        }
        Ok(false)
    }

    /// Keeps the bytes of an incomplete frame for the next read. A large frame (its
    /// header already announced a valid length) gets a buffer of its full size, so the
    /// rest is read in place and its body handed on without another copy.
    fn keep_tail(&mut self, tail: &[u8], max_frame: usize) {
        self.large_fill = None;
        self.large_mode = false;
        match frame::announced_len(tail) {
            // Only once the whole fixed header is here: `parse`'s `decode` of `tail` then
            // checked magic, version, kind and envelope length, so no buffer of a
            // peer-chosen size is made for bytes that are not a frame.
            Some(total)
                if tail.len() >= frame::HEADER_LEN
                    && total >= LARGE
                    && total <= max_frame
                    && total > tail.len() =>
            {
                let mut buf = crate::pool::take((tail.len() * 2).max(LARGE).min(total));
                buf[..tail.len()].copy_from_slice(tail);
                self.buf = buf;
                self.large_fill = Some(tail.len());
                self.large_total = total;
                self.large_mode = true;
            }
            _ => {
                self.buf.clear();
                if self.buf.capacity() > KEEP_BUF {
                    self.buf = Vec::new();
                }
                self.buf.extend_from_slice(tail);
            }
        }
    }

    /// Bytes the next [`read_buf`](Self::read_buf) will add to the buffer (a large frame
    /// whose buffer is full grows, doubling up to its announced length); 0 if none.
    pub(crate) fn growth(&self) -> usize {
        match self.large_fill {
            Some(filled) if filled == self.buf.len() => {
                (self.buf.len() * 2).max(LARGE).min(self.large_total) - self.buf.len()
            }
            _ => 0,
        }
    }

    /// Bytes held for the incomplete frame (the buffer's length).
    pub(crate) fn held(&self) -> usize {
        self.buf.len()
    }

    /// No bytes are kept.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.large_fill.is_none()
    }
}
