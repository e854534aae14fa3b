//! The replicated state machine: the key-value map, the duplicate table, and their
//! snapshot format. Pure and deterministic: no threads, clock or I/O, so the node's apply
//! loop and the simulator in `testkit` drive the same code.

use std::collections::HashMap;
use std::io::Write as _;

use bytes::Bytes;
use proto::Message;
use proto::kv::{Command, CommandOp};
use skiplist::SkipMap;

/// The answer to an applied write: what the duplicate table remembers per client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Delete only: the key existed when the delete applied (false for Put/Append).
    pub existed: bool,
}

/// What applying one command gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Applied now.
    Done(WriteOutcome),
    /// `(client_id, seq)` was the client's last applied write: not applied again; this is
    /// the reply it got the first time.
    Duplicate(WriteOutcome),
    /// A sequence number below the client's last applied one: the client has moved on and
    /// this retry's reply is gone. Not applied.
    Stale {
        /// The client's last applied sequence number.
        last_seq: u64,
    },
}

/// A committed log entry that is not a command. The node stops on it (applying anything
/// after it would make this node's state differ from its peers').
#[derive(Debug)]
pub struct BadEntry {
    /// Its log index.
    pub index: u64,
    /// Why it was refused.
    pub reason: String,
}

impl std::fmt::Display for BadEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "committed log entry {} is not a key-value command ({}); the log is corrupt or was \
             written by another program; stopping rather than skipping it",
            self.index, self.reason
        )
    }
}

impl std::error::Error for BadEntry {}

/// Decodes the `data` of a committed normal entry.
pub fn decode_command(index: u64, data: &[u8]) -> Result<Command, BadEntry> {
    let c = Command::decode(data).map_err(|e| BadEntry {
        index,
        reason: format!("protobuf decode: {e}"),
    })?;
    match CommandOp::try_from(c.op) {
        Ok(CommandOp::OpPut | CommandOp::OpAppend | CommandOp::OpDelete) => Ok(c),
        _ => Err(BadEntry {
            index,
            reason: format!("unknown op {}", c.op),
        }),
    }
}

/// The key-value map plus the duplicate table, as of `applied_index`.
///
/// Rules (the lab's and the issue's):
/// - Put replaces, Append concatenates (creating the key when absent), Delete removes;
/// - a write whose `(client_id, seq)` equals the client's last applied one is not applied
///   again and gets the first reply back (exactly-once writes over at-least-once retries;
///   §6.3 of Ongaro's thesis); a lower `seq` is refused as stale;
/// - reads (Get) do not go through the log (ReadIndex), so the table holds writes only.
#[derive(Debug, Default)]
pub struct KvState {
    map: SkipMap<Bytes, Bytes>,
    /// client id → (last applied seq, its outcome).
    dedup: HashMap<u64, (u64, WriteOutcome)>,
    applied_index: u64,
}

/// Snapshot format errors, each with the byte offset where the problem was found.
#[derive(Debug)]
pub enum SnapshotError {
    /// The bytes end early or a field is impossible.
    Corrupt {
        /// Byte offset in the snapshot.
        offset: usize,
        /// What was wrong.
        what: String,
    },
    /// The skiplist dump inside refused to load.
    Map(skiplist::LoadError),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Corrupt { offset, what } => {
                write!(f, "corrupt kv snapshot at byte {offset}: {what}")
            }
            SnapshotError::Map(e) => write!(f, "corrupt kv snapshot map section: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Map(e) => Some(e),
            SnapshotError::Corrupt { .. } => None,
        }
    }
}

/// First 8 bytes of a kv snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RKVSNAP1";

/// A consistent copy of the state, cheap to take (keys and values are reference-counted
/// [`Bytes`]: the copy allocates the map's nodes, never the data) and serialized on another
/// thread, so the apply loop pauses only for the copy.
#[derive(Debug)]
pub struct SnapshotView {
    map: SkipMap<Bytes, Bytes>,
    dedup: Vec<(u64, u64, WriteOutcome)>,
    applied_index: u64,
}

impl SnapshotView {
    /// The index the snapshot covers.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Serializes the snapshot. Format, all integers little-endian:
    ///
    /// ```text
    /// offset  size  field
    /// 0       8     magic "RKVSNAP1"
    /// 8       8     applied_index: u64
    /// 16      8     n: number of duplicate-table rows, u64
    /// 24      17*n  rows sorted by client id: client_id u64, last_seq u64, flags u8
    ///               (bit 0: the outcome's `existed`; other bits 0)
    /// 24+17n  4     CRC-32 (IEEE) of bytes [0, 24+17n)
    /// 28+17n  ...   the key-value map as a skiplist dump (skiplist crate docs: magic,
    ///               version, count, length-prefixed keys and values, its own CRC-32)
    /// ```
    ///
    /// Nothing may follow the dump.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(64 + self.dedup.len() * 17);
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&self.applied_index.to_le_bytes());
        out.extend_from_slice(&(self.dedup.len() as u64).to_le_bytes());
        for (c, s, o) in &self.dedup {
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
            out.push(u8::from(o.existed));
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        // Writing to a Vec cannot fail.
        let _ = self.map.dump(&mut out);
        let _ = out.flush();
        Bytes::from(out)
    }
}

fn read_u64(b: &[u8], at: usize, what: &str) -> Result<u64, SnapshotError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| SnapshotError::Corrupt {
            offset: at,
            what: format!("truncated in {what}"),
        })
}

impl KvState {
    /// An empty state (nothing applied).
    pub fn new() -> Self {
        Self::default()
    }

    /// The last index applied (or restored from a snapshot).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The value of `key`, `None` when absent (distinct from an empty value).
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.map.get(key)
    }

    /// The client's last applied sequence number (0 when none).
    pub fn last_seq(&self, client_id: u64) -> u64 {
        self.dedup.get(&client_id).map_or(0, |(s, _)| *s)
    }

    /// Notes that `index` (a no-op entry, skipped by the driver) was passed.
    pub fn skip_to(&mut self, index: u64) {
        self.applied_index = self.applied_index.max(index);
    }

    /// Applies the command committed at `index`. Indexes must increase (a repeat or a step
    /// back is a driver bug and panics with both indexes).
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Applied {
        assert!(
            index > self.applied_index,
            "apply of index {index} after {}: the apply channel must deliver each index once, in order",
            self.applied_index
        );
        self.applied_index = index;
        if let Some(&(last, outcome)) = self.dedup.get(&cmd.client_id) {
            if cmd.seq == last {
                return Applied::Duplicate(outcome);
            }
            if cmd.seq < last {
                return Applied::Stale { last_seq: last };
            }
        }
        let existed = match CommandOp::try_from(cmd.op) {
            Ok(CommandOp::OpPut) => {
                self.map.insert(cmd.key.clone(), cmd.value.clone());
                false
            }
            Ok(CommandOp::OpAppend) => {
                match self.map.get_mut(&cmd.key[..]) {
                    Some(v) => {
                        let mut joined = Vec::with_capacity(v.len() + cmd.value.len());
                        joined.extend_from_slice(v);
                        joined.extend_from_slice(&cmd.value);
                        *v = Bytes::from(joined);
                    }
                    None => {
                        self.map.insert(cmd.key.clone(), cmd.value.clone());
                    }
                }
                false
            }
            Ok(CommandOp::OpDelete) => self.map.remove(&cmd.key[..]).is_some(),
            // `decode_command` refuses these before they get here.
            _ => false,
        };
        let outcome = WriteOutcome { existed };
        self.dedup.insert(cmd.client_id, (cmd.seq, outcome));
        Applied::Done(outcome)
    }

    /// A consistent copy to serialize elsewhere (see [`SnapshotView::encode`]).
    pub fn snapshot_view(&self) -> SnapshotView {
        let mut dedup: Vec<_> = self.dedup.iter().map(|(c, (s, o))| (*c, *s, *o)).collect();
        dedup.sort_unstable_by_key(|r| r.0);
        SnapshotView {
            map: self.map.clone(),
            dedup,
            applied_index: self.applied_index,
        }
    }

    /// The snapshot bytes of the current state (copy + encode on this thread).
    pub fn snapshot(&self) -> Bytes {
        self.snapshot_view().encode()
    }

    /// Replaces the state with a snapshot made by [`SnapshotView::encode`]. On error the
    /// state is unchanged.
    pub fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        if data.get(..8) != Some(&SNAPSHOT_MAGIC[..]) {
            return Err(SnapshotError::Corrupt {
                offset: 0,
                what: "not a kv snapshot (bad magic)".into(),
            });
        }
        let applied_index = read_u64(data, 8, "applied index")?;
        let n = read_u64(data, 16, "duplicate table size")?;
        let rows_end = (n as usize)
            .checked_mul(17)
            .and_then(|l| l.checked_add(24))
            .filter(|&e| e.saturating_add(4) <= data.len())
            .ok_or_else(|| SnapshotError::Corrupt {
                offset: 16,
                what: format!(
                    "duplicate table of {n} rows does not fit in {} bytes",
                    data.len()
                ),
            })?;
        let want = u32::from_le_bytes([
            data[rows_end],
            data[rows_end + 1],
            data[rows_end + 2],
            data[rows_end + 3],
        ]);
        let got = crc32fast::hash(&data[..rows_end]);
        if want != got {
            return Err(SnapshotError::Corrupt {
                offset: rows_end,
                what: format!("header checksum {got:#010x} != stored {want:#010x}"),
            });
        }
        let mut dedup = HashMap::with_capacity(n as usize);
        for r in 0..n as usize {
            let at = 24 + r * 17;
            let c = read_u64(data, at, "client id")?;
            let s = read_u64(data, at + 8, "sequence number")?;
            let flags = data[at + 16];
            if flags > 1 {
                return Err(SnapshotError::Corrupt {
                    offset: at + 16,
                    what: format!("unknown flags {flags:#04x}"),
                });
            }
            dedup.insert(
                c,
                (
                    s,
                    WriteOutcome {
                        existed: flags == 1,
                    },
                ),
            );
        }
        let mut rest = &data[rows_end + 4..];
        let map: SkipMap<Bytes, Bytes> = SkipMap::load(&mut rest).map_err(SnapshotError::Map)?;
        if !rest.is_empty() {
            return Err(SnapshotError::Corrupt {
                offset: data.len() - rest.len(),
                what: format!("{} bytes after the map", rest.len()),
            });
        }
        self.map = map;
        self.dedup = dedup;
        self.applied_index = applied_index;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(op: CommandOp, k: &str, v: &str, client: u64, seq: u64) -> Command {
        Command {
            op: op as i32,
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
            client_id: client,
            seq,
        }
    }

    #[test]
    fn put_append_delete_and_no_key_vs_empty() {
        let mut s = KvState::new();
        assert_eq!(s.get(b"k"), None);
        s.apply(1, &cmd(CommandOp::OpPut, "k", "", 1, 1));
        assert_eq!(s.get(b"k").map(|v| &v[..]), Some(&b""[..]));
        s.apply(2, &cmd(CommandOp::OpAppend, "k", "ab", 1, 2));
        s.apply(3, &cmd(CommandOp::OpAppend, "k", "cd", 1, 3));
        assert_eq!(s.get(b"k").map(|v| &v[..]), Some(&b"abcd"[..]));
        s.apply(4, &cmd(CommandOp::OpAppend, "new", "x", 1, 4));
        assert_eq!(s.get(b"new").map(|v| &v[..]), Some(&b"x"[..]));
        assert_eq!(
            s.apply(5, &cmd(CommandOp::OpDelete, "k", "", 1, 5)),
            Applied::Done(WriteOutcome { existed: true })
        );
        assert_eq!(s.get(b"k"), None);
        assert_eq!(
            s.apply(6, &cmd(CommandOp::OpDelete, "k", "", 1, 6)),
            Applied::Done(WriteOutcome { existed: false })
        );
    }

    #[test]
    fn duplicates_apply_once_and_stale_is_refused() {
        let mut s = KvState::new();
        s.apply(1, &cmd(CommandOp::OpAppend, "k", "a", 7, 1));
        assert_eq!(
            s.apply(2, &cmd(CommandOp::OpAppend, "k", "a", 7, 1)),
            Applied::Duplicate(WriteOutcome { existed: false })
        );
        // Another client with the same seq is not a duplicate.
        s.apply(3, &cmd(CommandOp::OpAppend, "k", "b", 8, 1));
        s.apply(4, &cmd(CommandOp::OpAppend, "k", "c", 7, 2));
        assert_eq!(
            s.apply(5, &cmd(CommandOp::OpAppend, "k", "a", 7, 1)),
            Applied::Stale { last_seq: 2 }
        );
        assert_eq!(s.get(b"k").map(|v| &v[..]), Some(&b"abc"[..]));
        assert_eq!(s.applied_index(), 5);
    }

    #[test]
    fn snapshot_round_trip_keeps_map_and_dedup() {
        let mut s = KvState::new();
        for i in 1..=100u64 {
            s.apply(
                i,
                &cmd(
                    CommandOp::OpPut,
                    &format!("k{i}"),
                    &"v".repeat(i as usize),
                    i % 7 + 1,
                    i,
                ),
            );
        }
        s.apply(101, &cmd(CommandOp::OpDelete, "k5", "", 3, 1000));
        let snap = s.snapshot();
        let mut r = KvState::new();
        r.restore(&snap).expect("restore");
        assert_eq!(r.applied_index(), 101);
        assert_eq!(r.len(), 99);
        assert_eq!(r.get(b"k5"), None);
        assert_eq!(r.get(b"k9").map(|v| v.len()), Some(9));
        // The restored duplicate table still refuses a retry.
        assert_eq!(
            r.apply(102, &cmd(CommandOp::OpDelete, "k5", "", 3, 1000)),
            Applied::Duplicate(WriteOutcome { existed: true })
        );
        assert_eq!(r.snapshot().len(), snap.len());
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let mut s = KvState::new();
        for i in 1..=5u64 {
            s.apply(i, &cmd(CommandOp::OpPut, &format!("k{i}"), "val", i, 1));
        }
        let snap = s.snapshot().to_vec();
        for at in 0..snap.len() {
            let mut bad = snap.clone();
            bad[at] ^= 0x40;
            let mut r = KvState::new();
            assert!(r.restore(&bad).is_err(), "flipped byte {at} accepted");
            assert_eq!(r.applied_index(), 0, "a refused snapshot changed the state");
        }
        for len in 0..snap.len() {
            assert!(
                KvState::new().restore(&snap[..len]).is_err(),
                "truncation to {len} accepted"
            );
        }
        let mut longer = snap.clone();
        longer.push(0);
        assert!(KvState::new().restore(&longer).is_err());
    }

    #[test]
    fn undecodable_entries_are_reported_with_their_index() {
        let e = decode_command(42, b"\xff\xff\xff").unwrap_err();
        assert_eq!(e.index, 42);
        assert!(e.to_string().contains("42"));
        let unknown = Command {
            op: 99,
            ..Default::default()
        };
        assert_eq!(
            decode_command(7, &unknown.encode_to_vec())
                .unwrap_err()
                .index,
            7
        );
    }
}
