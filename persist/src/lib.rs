//! Durable bytes on disk for raftkv, knowing nothing of Raft's meaning.
//!
//! - [`Wal`]: a write-ahead log of checksummed records of caller-defined types (1..=255)
//!   in segment files. [`Wal::append`] writes one atomic batch, [`Wal::sync`] makes
//!   everything appended durable with one `fdatasync` (group commit), [`Wal::truncate`]
//!   cuts the end, [`Wal::release_before`] deletes whole segments at the front. Opening
//!   verifies every checksum, cuts a torn tail (logged with file and offset) and refuses
//!   damage anywhere else ([`Error::Corrupt`] with file and offset). Byte layouts:
//!   [`record`]; recovery rules: the [`wal`] module.
//! - [`write_atomic`]: whole-file replace (temp file, `fdatasync`, rename, `fsync` of the
//!   directory) for snapshots and metadata.
//! - [`DirLock`]: an `flock` on `LOCK` holding the owner's pid, so that two processes
//!   never open one directory.
//! - [`Fs`]: every file access goes through this trait; [`StdFs`] is the real file
//!   system and [`SimFs`] a simulated one that loses power (it keeps only what was synced,
//!   plus optionally a prefix of what was written after), for crash tests.
//!
//! The design follows etcd's WAL (one log of typed records shared by entries, hard state
//! and snapshot markers; segments named by their first sequence number; a torn tail cut at
//! open) with two changes: each record header has its own checksum (so a damaged length is
//! told apart from a torn write), and an append batch is atomic (the loader keeps whole
//! batches only), which is what makes one `raft::Storage::persist` call one atomic unit.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use persist::{StdFs, Wal, WalOptions};
//! let dir = tempfile::tempdir()?;
//! let (mut wal, _) = Wal::open(Arc::new(StdFs), dir.path(), WalOptions::default(), |_, _| Ok(()))?;
//! wal.append([(1u8, &b"entry"[..]), (2, &b"hard state"[..])])?; // one atomic batch
//! wal.sync()?; // one fdatasync
//! drop(wal);
//! let mut seen = Vec::new();
//! let (wal, _) = Wal::open(Arc::new(StdFs), dir.path(), WalOptions::default(), |r, _| {
//!     seen.push((r.seq, r.kind, r.payload.clone()));
//!     Ok(())
//! })?;
//! assert_eq!(seen.len(), 2);
//! assert_eq!(wal.next_seq(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod atomic;
mod error;
mod fs;
mod lock;
pub mod record;
mod simfs;
pub mod wal;

pub use crate::atomic::{TMP_SUFFIX, write_atomic};
pub use crate::error::Error;
pub use crate::fs::{Fs, FsFile, StdFs};
pub use crate::lock::{DirLock, LOCK_FILE};
pub use crate::simfs::SimFs;
pub use crate::wal::{Location, Record, Recovery, Wal, WalOptions, segment_name};
