//! The write-ahead log: checksummed records of caller-defined types in segment files.
//!
//! # Files
//!
//! The WAL owns one directory. Each segment is a file named after the sequence number of
//! its first record, 16 hex digits: `0000000000000001.wal`, `00000000000a3f00.wal`, ...
//! A segment is a 32-byte header then records back to back (layouts in [`crate::record`]).
//! `HEAD` holds the first seq of the newest segment (16 hex digits), rewritten atomically
//! after each segment is created: a log whose newest segment is older than `HEAD` says lost
//! its newest segment file and is refused. (`HEAD` may lag behind after a crash; open
//! brings it up to date.) `*.wal.tmp` and `HEAD.tmp` files are being created; open
//! removes them.
//!
//! # Writing
//!
//! - [`Wal::append`] writes a batch of records with one `write`; the batch is **atomic**
//!   with respect to crashes: recovery keeps whole batches only (the last record of a
//!   batch carries a flag). A batch never spans two segments.
//! - [`Wal::sync`] makes everything appended so far durable with one `fdatasync` (group
//!   commit: the caller decides how many batches share it).
//! - The active segment is **preallocated**: zeros are written
//!   [`WalOptions::preallocate_bytes`] ahead of the records, so that a sync flushes data
//!   only, not a new file size (etcd does the same).
//! - When the active segment has reached [`WalOptions::segment_bytes`], the next append
//!   first syncs it, cuts its preallocated zeros (durably), and starts a new segment
//!   (header written to a temp file, `fsync`, rename, `fsync` of the directory). Every
//!   segment but the last is therefore complete, durable, and free of zeros at its end.
//! - [`Wal::release_before`] deletes whole segments at the front (after a snapshot);
//!   [`Wal::truncate`] cuts records off the end.
//!
//! After an I/O error on a write or sync the WAL refuses all further calls: after a failed
//! `fdatasync` Linux may drop the dirty pages and report success to the next one, so
//! nothing written since the last good sync can be trusted (the "fsyncgate" lesson).
//!
//! # Recovery at open
//!
//! Every segment is read and every record's two checksums verified, in order:
//!
//! - **End of the log:** in the last segment, zeros from a record boundary to the end of
//!   the file (preallocated space; a record header is never all zeros, type 0 being
//!   reserved).
//! - **Torn tail, cut and logged (warn, file and offset):** in the *last* segment only,
//!   damage (a record that runs past the end of the file, a bad header or payload
//!   checksum, an impossible length) after which no intact record of a *later* batch
//!   follows: the last batch written did not reach the disk whole. It is cut from its
//!   first record on, as is a last batch whose final record is missing. A record's
//!   `index` in its batch tells which batch an intact record after the damage belongs to,
//!   so holes left by a device that persisted the batch's sectors out of order are
//!   recognised too.
//! - **Refused ([`Error::Corrupt`], file and byte offset):** damage followed by an intact
//!   record of a later batch (the damaged data had been followed by more writes, so it is
//!   not simply the last write torn); any damage, zeros included, in a segment that is not
//!   the last; a sequence number out of order; a segment whose first sequence number does
//!   not continue the one before (a missing segment); a segment header that does not
//!   match its file name.
//!
//! So damage to synced data is refused everywhere except inside the very last batch,
//! which cannot be told from a torn write and is cut (logged). This is exact when every
//! sync covers one batch, as in `raft::DiskStorage`; with several unsynced batches
//! between syncs, a torn write that leaves holes in all but the last of them is refused
//! rather than guessed at. `SimFs` simulates power loss keeping a prefix of the unsynced
//! writes, or a random subset of their sectors.
//!
//! A missing newest segment is caught by `HEAD` (below). Never delete files here by hand.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::atomic::{TMP_SUFFIX, write_atomic};
use crate::error::{Error, io_err};
use crate::fs::{Fs, FsFile};
use crate::record::{
    self, Damage, MAX_PAYLOAD, RECORD_HEADER, SEGMENT_HEADER, decode_record, encode_record,
};

/// The file naming the newest segment (its first seq, 16 hex digits), rewritten
/// atomically each time a segment is created.
pub const HEAD_FILE: &str = "HEAD";

/// Tuning of a [`Wal`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A new segment starts once the active one holds this many bytes (default 64 MiB).
    pub segment_bytes: u64,
    /// The active segment is extended with zeros this many bytes ahead of the data
    /// (default 8 MiB; 0: never). Overwriting allocated, written blocks lets `fdatasync`
    /// flush the data alone, where an append must also commit the new file size (ext4
    /// then writes its journal too): fewer device flushes per sync.
    pub preallocate_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            preallocate_bytes: 8 << 20,
        }
    }
}

/// One record as recovery hands it to the caller.
#[derive(Clone, Debug)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// The caller's record type (1..=255).
    pub kind: u8,
    /// The payload (shares the segment's buffer; no copy).
    pub payload: Bytes,
}

/// Where a recovered record lies, for error messages.
#[derive(Clone, Debug)]
pub struct Location {
    /// The segment file.
    pub file: PathBuf,
    /// Byte offset of the record header in it.
    pub offset: u64,
}

/// What [`Wal::open`] found.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// Records replayed.
    pub records: u64,
    /// Bytes of segment files read (and verified).
    pub bytes: u64,
    /// Bytes cut off the tail (a torn write or an incomplete batch), and where.
    pub cut: Option<(PathBuf, u64, u64)>,
}

#[derive(Debug, Clone)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
}

/// A write-ahead log in one directory. See the module docs.
#[derive(Debug)]
pub struct Wal {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    opts: WalOptions,
    segments: Vec<Segment>,
    active: Box<dyn FsFile>,
    /// End of the records in the active segment.
    active_len: u64,
    /// Length of the active segment file (records, then preallocated zeros).
    alloc_len: u64,
    next_seq: u64,
    dirty: bool,
    failed: bool,
    buf: Vec<u8>,
}

/// The file name of the segment whose first record is `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:016x}.wal")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn corrupt(file: &Path, offset: u64, what: impl Into<String>) -> Error {
    Error::Corrupt {
        file: file.to_path_buf(),
        offset,
        what: what.into(),
    }
}

impl Wal {
    /// Opens (or creates) the WAL in `dir`, verifies every record and hands each whole
    /// batch's records, in order, to `replay`. An error from `replay` stops the open and
    /// comes back as [`Error::Invalid`] with the record's location.
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        opts: WalOptions,
        mut replay: impl FnMut(&Record, &Location) -> Result<(), String>,
    ) -> Result<(Wal, Recovery), Error> {
        fs.create_dir_all(dir)
            .map_err(|e| io_err("create directory", dir, e))?;
        let names = fs.list(dir).map_err(|e| io_err("list", dir, e))?;
        let mut segments = Vec::new();
        let mut removed_tmp = false;
        let mut head = None;
        for name in names {
            let path = dir.join(&name);
            if let Some(first_seq) = parse_segment_name(&name) {
                segments.push(Segment { first_seq, path });
            } else if name == HEAD_FILE {
                let text = fs.read(&path).map_err(|e| io_err("read", &path, e))?;
                let h = std::str::from_utf8(&text)
                    .ok()
                    .and_then(|t| u64::from_str_radix(t.trim(), 16).ok())
                    .ok_or_else(|| corrupt(&path, 0, "not a segment number (16 hex digits)"))?;
                head = Some(h);
            } else if name.ends_with(".wal.tmp") || name == format!("{HEAD_FILE}{TMP_SUFFIX}") {
                log::warn!("{}: removing a segment left half-created", path.display());
                fs.remove(&path).map_err(|e| io_err("remove", &path, e))?;
                removed_tmp = true;
            } else {
                log::warn!("{}: not a WAL segment; ignored", path.display());
            }
        }
        if removed_tmp {
            fs.sync_dir(dir)
                .map_err(|e| io_err("sync directory", dir, e))?;
        }
        segments.sort_by_key(|s| s.first_seq);
        let newest = segments.last().map(|s| s.first_seq);
        if let Some(h) = head
            && newest.is_none_or(|n| n < h)
        {
            return Err(corrupt(
                &dir.join(segment_name(h)),
                0,
                format!(
                    "this segment is missing: {HEAD_FILE} says the newest segment starts at seq \
                     {h}, but the newest present is {}; a segment file was deleted",
                    newest.map_or("none".to_string(), segment_name)
                ),
            ));
        }

        let mut rec = Recovery::default();
        let mut next_seq = segments.first().map_or(1, |s| s.first_seq);
        let mut cut: Option<(u64, String)> = None; // (offset, why) in the last segment
        let mut last_len = 0u64;
        let mut last_end = 0u64;
        let n = segments.len();
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == n;
            let data = Bytes::from(
                fs.read(&seg.path)
                    .map_err(|e| io_err("read", &seg.path, e))?,
            );
            rec.bytes += data.len() as u64;
            let first =
                record::decode_segment_header(&data).map_err(|w| corrupt(&seg.path, 0, w))?;
            if first != seg.first_seq {
                return Err(corrupt(
                    &seg.path,
                    16,
                    format!(
                        "header says first seq {first}, file name says {}",
                        seg.first_seq
                    ),
                ));
            }
            if first != next_seq {
                return Err(corrupt(
                    &seg.path,
                    0,
                    format!(
                        "sequence gap: this segment starts at seq {first} but the one before \
                         ends at seq {}; a segment file is missing",
                        next_seq - 1
                    ),
                ));
            }
            let mut pos = SEGMENT_HEADER;
            let mut batch: Vec<(Record, u64)> = Vec::new();
            // One location per segment; its offset is set per record handed out.
            let mut loc = Location {
                file: seg.path.clone(),
                offset: 0,
            };
            let mut batch_start = pos;
            while pos < data.len() {
                let at = pos as u64;
                let rest = &data[pos..];
                let h = match decode_record(rest) {
                    Ok(h) => h,
                    Err(d) => {
                        let zeros = |from: usize| rest.get(from..).is_none_or(all_zero);
                        if last && zeros(0) {
                            break; // the preallocated end of the active segment
                        }
                        // A torn write: the damage lies in the last batch, i.e. no intact
                        // record of a later batch follows it (see the module docs).
                        let torn = last
                            && (matches!(d, Damage::Short) || !later_batch_follows(rest, next_seq));
                        if torn {
                            cut = Some((at, format!("{d:?}")));
                            break;
                        }
                        let what = match d {
                            Damage::Short if !last => {
                                "record runs past the end of a segment that is not the last"
                                    .to_string()
                            }
                            Damage::Short => "record runs past the end of the file".to_string(),
                            Damage::BadHeader(w) => format!("bad record header: {w}"),
                            Damage::BadPayload => "record payload checksum mismatch".to_string(),
                        };
                        return Err(corrupt(&seg.path, at, what));
                    }
                };
                let expect = next_seq + batch.len() as u64;
                if h.seq != expect {
                    return Err(corrupt(
                        &seg.path,
                        at,
                        format!("record has seq {} where {expect} was expected", h.seq),
                    ));
                }
                let end = pos + RECORD_HEADER + h.len as usize;
                batch.push((
                    Record {
                        seq: h.seq,
                        kind: h.kind,
                        payload: data.slice(pos + RECORD_HEADER..end),
                    },
                    at,
                ));
                pos = end;
                if h.batch_end {
                    for (r, at) in batch.drain(..) {
                        loc.offset = at;
                        replay(&r, &loc).map_err(|what| Error::Invalid {
                            file: loc.file.clone(),
                            offset: loc.offset,
                            seq: r.seq,
                            what,
                        })?;
                        rec.records += 1;
                        next_seq = r.seq + 1;
                    }
                    batch_start = pos;
                }
            }
            if !batch.is_empty() {
                if !last {
                    return Err(corrupt(
                        &seg.path,
                        batch_start as u64,
                        "a batch without its last record in a segment that is not the last",
                    ));
                }
                let why = cut.take().map_or(String::new(), |(at, d)| {
                    format!(" (torn record at {at}: {d})")
                });
                cut = Some((
                    batch_start as u64,
                    format!("incomplete batch of {} records{why}", batch.len()),
                ));
            }
            if last {
                last_len = data.len() as u64;
                last_end = pos as u64;
            }
        }

        // HEAD is written right after a segment is created and before any record goes into
        // it, so only a crash in between leaves segments without HEAD: then the log is one
        // empty first segment. A missing HEAD beside records was deleted by hand, and
        // without it a deleted newest segment would go unnoticed.
        if head.is_none() && (segments.len() > 1 || next_seq > 1) {
            return Err(corrupt(
                &dir.join(HEAD_FILE),
                0,
                format!(
                    "missing beside {} segment(s) holding records up to seq {}: it was deleted \
                     (a crash cannot do this), so a deleted newest segment cannot be ruled \
                     out; if no segment was deleted, write the newest segment's name without \
                     `.wal` into {HEAD_FILE}",
                    segments.len(),
                    next_seq.saturating_sub(1)
                ),
            ));
        }
        let mut wal = match segments.last() {
            None => {
                let mut w = Wal {
                    fs: fs.clone(),
                    dir: dir.to_path_buf(),
                    opts,
                    segments: Vec::new(),
                    active: Box::new(NoFile),
                    active_len: 0,
                    alloc_len: 0,
                    next_seq: 1,
                    dirty: false,
                    failed: false,
                    buf: Vec::new(),
                };
                w.new_segment()?;
                w
            }
            Some(seg) => {
                let mut active = fs
                    .open_write(&seg.path)
                    .map_err(|e| io_err("open", &seg.path, e))?;
                let mut active_len = last_end;
                let mut alloc_len = last_len;
                if let Some((at, why)) = cut {
                    log::warn!(
                        "{}: cutting {} bytes at offset {at} left by a crash: {why}",
                        seg.path.display(),
                        last_len - at
                    );
                    active
                        .set_len(at)
                        .and_then(|_| active.sync_data())
                        .map_err(|e| io_err("truncate", &seg.path, e))?;
                    rec.cut = Some((seg.path.clone(), at, last_len - at));
                    active_len = at;
                    alloc_len = at;
                }
                Wal {
                    fs,
                    dir: dir.to_path_buf(),
                    opts,
                    segments,
                    active,
                    active_len,
                    alloc_len,
                    next_seq,
                    dirty: false,
                    failed: false,
                    buf: Vec::new(),
                }
            }
        };
        if head != wal.segments.last().map(|s| s.first_seq) {
            // A crash between creating a segment and recording it (or a truncation that
            // did not finish): record the newest.
            wal.write_head()?;
        }
        wal.buf.reserve(64 << 10);
        Ok((wal, rec))
    }

    /// The sequence number the next appended record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The sequence number of the first record kept (after releases).
    pub fn first_seq(&self) -> u64 {
        self.segments.first().map_or(self.next_seq, |s| s.first_seq)
    }

    /// The segment files, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check(&self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Appends `records` (kind 1..=255, payload up to [`MAX_PAYLOAD`]) as one atomic
    /// batch; returns the seq of the first. Not durable until [`Wal::sync`].
    pub fn append<'a>(
        &mut self,
        records: impl IntoIterator<Item = (u8, &'a [u8])>,
    ) -> Result<u64, Error> {
        self.check()?;
        self.buf.clear();
        let first = self.next_seq;
        let mut seq = first;
        let mut last_start = None;
        for (kind, payload) in records {
            if kind == 0 || payload.len() > MAX_PAYLOAD {
                return Err(Error::BadRecord(format!(
                    "record type {kind} with {} bytes (type must be 1..=255, payload <= {MAX_PAYLOAD})",
                    payload.len()
                )));
            }
            last_start = Some(self.buf.len());
            let index = u32::try_from(seq - first).map_err(|_| {
                Error::BadRecord("more than 2^32 records in one append".to_string())
            })?;
            encode_record(&mut self.buf, kind, seq, index, false, payload);
            seq += 1;
        }
        let Some(last_start) = last_start else {
            return Ok(first);
        };
        // Set the batch-end flag on the last record and re-seal its header checksum.
        record::set_batch_end(&mut self.buf[last_start..last_start + RECORD_HEADER]);

        if self.active_len >= self.opts.segment_bytes
            && self.next_seq > self.segments.last().map_or(0, |s| s.first_seq)
        {
            self.roll()?;
        }
        let end = self.active_len + self.buf.len() as u64;
        let mut r = Ok(());
        if end > self.alloc_len && self.opts.preallocate_bytes > 0 {
            // Zeros ahead of the data, written (not just allocated) so that later
            // overwrites change no metadata.
            let from = self.alloc_len.max(end);
            let to = end + self.opts.preallocate_bytes;
            r = write_zeros(&mut *self.active, from, to);
            self.alloc_len = to;
        }
        let r = r.and_then(|_| self.active.write_at(self.active_len, &self.buf));
        if let Err(e) = r {
            self.failed = true;
            return Err(io_err("write to", self.active_path(), e));
        }
        self.active_len = end;
        self.alloc_len = self.alloc_len.max(end);
        self.next_seq = seq;
        self.dirty = true;
        Ok(first)
    }

    /// Makes every appended record durable: one `fdatasync` (none if nothing is new).
    pub fn sync(&mut self) -> Result<(), Error> {
        self.check()?;
        if !self.dirty {
            return Ok(());
        }
        if let Err(e) = self.active.sync_data() {
            self.failed = true;
            return Err(io_err("fdatasync", self.active_path(), e));
        }
        self.dirty = false;
        Ok(())
    }

    fn active_path(&self) -> &Path {
        self.segments
            .last()
            .map_or(self.dir.as_path(), |s| s.path.as_path())
    }

    /// Syncs the active segment and starts a new one for the next append, so that
    /// everything before can later be released whole.
    pub fn roll(&mut self) -> Result<(), Error> {
        self.check()?;
        self.sync()?;
        if self
            .segments
            .last()
            .is_some_and(|s| s.first_seq == self.next_seq)
        {
            return Ok(()); // the active segment is still empty
        }
        // A finished segment ends at its last record: cut the preallocated zeros, durably,
        // before the next segment exists (recovery allows zeros in the last one only).
        if self.alloc_len > self.active_len {
            let r = self
                .active
                .set_len(self.active_len)
                .and_then(|_| self.active.sync_data());
            if let Err(e) = r {
                self.failed = true;
                return Err(io_err("truncate", self.active_path(), e));
            }
            self.alloc_len = self.active_len;
        }
        self.new_segment()
    }

    fn new_segment(&mut self) -> Result<(), Error> {
        let name = segment_name(self.next_seq);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let header = record::encode_segment_header(self.next_seq);
        let r = (|| {
            let mut f = self
                .fs
                .create(&tmp)
                .map_err(|e| io_err("create", &tmp, e))?;
            f.append(&header)
                .and_then(|_| f.sync_data())
                .map_err(|e| io_err("write", &tmp, e))?;
            self.fs
                .rename(&tmp, &path)
                .map_err(|e| io_err("rename", &tmp, e))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| io_err("sync directory", &self.dir, e))?;
            self.fs
                .open_write(&path)
                .map_err(|e| io_err("open", &path, e))
        })();
        match r {
            Ok(f) => {
                self.active = f;
                self.active_len = SEGMENT_HEADER as u64;
                self.alloc_len = SEGMENT_HEADER as u64;
                self.segments.push(Segment {
                    first_seq: self.next_seq,
                    path,
                });
                self.write_head()
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Records the newest segment in `HEAD` (atomically), so that open can tell if it goes
    /// missing.
    fn write_head(&mut self) -> Result<(), Error> {
        let Some(newest) = self.segments.last() else {
            return Ok(());
        };
        let text = format!("{:016x}\n", newest.first_seq);
        let r = write_atomic(&*self.fs, &self.dir, HEAD_FILE, text.as_bytes());
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// Deletes every whole segment whose records all have seq `< seq` (never the active
    /// one), oldest first, then syncs the directory. Returns how many were deleted. A crash
    /// midway leaves the newer ones, which is a valid (longer) log.
    pub fn release_before(&mut self, seq: u64) -> Result<usize, Error> {
        self.check()?;
        let mut n = 0;
        while self.segments.len() > 1 && self.segments[1].first_seq <= seq {
            let s = self.segments.remove(0);
            self.fs
                .remove(&s.path)
                .map_err(|e| io_err("remove", &s.path, e))?;
            n += 1;
        }
        if n > 0 {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| io_err("sync directory", &self.dir, e))?;
        }
        Ok(n)
    }

    /// Removes every record with seq `>= from_seq`, durably (a Raft log conflict handled
    /// physically). `from_seq` must start a batch (the record before it ended one). Newer
    /// segments are deleted newest first, then the segment holding `from_seq` is cut and
    /// synced: a crash midway leaves a prefix of the old log that is at least as long.
    pub fn truncate(&mut self, from_seq: u64) -> Result<(), Error> {
        self.check()?;
        if from_seq >= self.next_seq {
            return Ok(());
        }
        if from_seq < self.first_seq() {
            return Err(Error::BadRecord(format!(
                "truncate at seq {from_seq} but the log starts at {}",
                self.first_seq()
            )));
        }
        self.sync()?;
        let k = self
            .segments
            .iter()
            .rposition(|s| s.first_seq <= from_seq)
            .unwrap_or(0);
        // Find the byte offset of `from_seq` in segment k, and check the batch boundary.
        let path = self.segments[k].path.clone();
        let data = self.fs.read(&path).map_err(|e| io_err("read", &path, e))?;
        let mut pos = SEGMENT_HEADER;
        let mut prev_end = true;
        loop {
            let h = decode_record(&data[pos..])
                .map_err(|d| corrupt(&path, pos as u64, format!("{d:?} while truncating")))?;
            if h.seq == from_seq {
                break;
            }
            prev_end = h.batch_end;
            pos += RECORD_HEADER + h.len as usize;
        }
        if !prev_end {
            return Err(Error::BadRecord(format!(
                "truncate at seq {from_seq}: that record does not start an append batch"
            )));
        }
        if self.segments.len() > k + 1 {
            // HEAD first: a crash while deleting leaves newer segments than HEAD says,
            // which open accepts (the truncation did not happen), never fewer.
            let newer = self.segments.split_off(k + 1);
            self.write_head()?;
            self.segments.extend(newer);
        }
        while self.segments.len() > k + 1 {
            let s = self.segments.pop().expect("len > k + 1");
            self.fs
                .remove(&s.path)
                .map_err(|e| io_err("remove", &s.path, e))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| io_err("sync directory", &self.dir, e))?;
        }
        let r = self.fs.open_write(&path).and_then(|mut f| {
            f.set_len(pos as u64)?;
            f.sync_data()?;
            Ok(f)
        });
        match r {
            Ok(f) => {
                self.active = f;
                self.active_len = pos as u64;
                self.alloc_len = pos as u64;
                self.next_seq = from_seq;
                self.dirty = false;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(io_err("truncate", &path, e))
            }
        }
    }
}

/// True if `rest` (which starts with a damaged record) holds, after its first byte, an
/// intact record of a batch that starts after seq `batch_first` (the damaged record's
/// batch): proof that the damage is not confined to the last batch written. Scans every
/// byte offset, so it costs time only when there is damage.
fn later_batch_follows(rest: &[u8], batch_first: u64) -> bool {
    let mut p = 1;
    while p + RECORD_HEADER <= rest.len() {
        let b = &rest[p..];
        // Cheap filters before the checksums: a known type, valid flags, zero reserved.
        if b[4] != 0
            && b[5] <= record::FLAG_BATCH_END
            && b[6] == 0
            && b[7] == 0
            && let Ok(h) = decode_record(b)
            && h.seq.saturating_sub(h.index as u64) > batch_first
        {
            return true;
        }
        p += 1;
    }
    false
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

fn write_zeros(f: &mut dyn FsFile, from: u64, to: u64) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK.min((to - from) as usize)];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(CHUNK);
        f.write_at(at, &zeros[..n])?;
        at += n as u64;
    }
    Ok(())
}

/// The active file of a WAL before its first segment exists.
#[derive(Debug)]
struct NoFile;

impl FsFile for NoFile {
    fn append(&mut self, _: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("no active segment"))
    }
    fn write_at(&mut self, _: u64, _: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("no active segment"))
    }
    fn sync_data(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn set_len(&mut self, _: u64) -> std::io::Result<()> {
        Err(std::io::Error::other("no active segment"))
    }
}
