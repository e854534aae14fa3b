//! The replicated state machine: the key-value map, the duplicate table, and their
//! snapshot format. Pure and deterministic: no threads, clock or I/O, so the node's apply
//! loop and the simulator in `testkit` drive the same code.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use proto::Message;
use proto::kv::{Command, CommandOp};
use proto::raft::{ConfChange, ConfChangeType};
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
///
/// # Snapshots without stopping writes
///
/// The map is a **base** skiplist behind an [`Arc`] plus an **overlay** of the writes
/// made while the base is shared (key → new value, or a tombstone for a delete).
/// [`KvState::snapshot_view`] does not copy the map: it shares the base with the view
/// (a reference-count increment) and copies only the overlay and the duplicate table, so
/// its cost is O(overlay + clients), not O(keys). While a view holds the base, writes go
/// to the overlay and reads look in the overlay first, then in the base. Once every view
/// is dropped, [`KvState::fold_overlay`] moves overlay entries into the base a bounded
/// number at a time, and writes go straight to the base again (a write to a key that is
/// still in the overlay removes it there, since the overlay's entry is older). The copy
/// made for a snapshot is thus limited to the keys written while it is encoded.
#[derive(Debug, Default)]
pub struct KvState {
    base: Arc<SkipMap<Bytes, Bytes>>,
    /// Writes newer than `base`: `Some(value)` to set, `None` (tombstone) to delete.
    overlay: BTreeMap<Bytes, Option<Bytes>>,
    /// Keys in base + overlay.
    len: usize,
    /// client id → (last applied seq, its outcome).
    dedup: HashMap<u64, (u64, WriteOutcome)>,
    /// Addresses of the nodes added by membership changes (id → "HOST:PORT", from the
    /// change's context), so that every node, and a node restarted from a snapshot, can
    /// reach them. The bootstrap nodes' addresses come from each node's `--peers`.
    members: BTreeMap<u64, String>,
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

/// First 8 bytes of a kv snapshot (version 2: with the member address book).
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RKVSNAP2";

/// First 8 bytes of a version-1 kv snapshot (no address book); still restored.
pub const SNAPSHOT_MAGIC_V1: [u8; 8] = *b"RKVSNAP1";

/// Longest member address kept from a membership change's context, in bytes.
pub const MAX_ADDR_BYTES: usize = 255;

/// The state at one applied index, taken by [`KvState::snapshot_view`] in
/// O(overlay + clients) time and serialized ([`SnapshotView::encode`]) on another thread
/// while the apply loop goes on. It shares the map's base with the [`KvState`]: while a
/// view is alive the state writes into its overlay, so drop the view as soon as it is
/// encoded, then let the state fold its overlay back ([`KvState::fold_overlay`]).
#[derive(Debug)]
pub struct SnapshotView {
    base: Arc<SkipMap<Bytes, Bytes>>,
    /// The overlay at the snapshot index, in key order (usually empty: the overlay is
    /// folded between snapshots).
    delta: Vec<(Bytes, Option<Bytes>)>,
    /// Unsorted; sorted by `encode`.
    dedup: Vec<(u64, u64, WriteOutcome)>,
    /// Sorted by id.
    members: Vec<(u64, String)>,
    applied_index: u64,
}

impl SnapshotView {
    /// The index the snapshot covers.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The map's entries at the snapshot index, in key order: the base merged with the
    /// overlay (an overlay entry wins; a tombstone hides the key).
    fn entries(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        let mut base = self.base.iter().peekable();
        let mut delta = self.delta.iter().peekable();
        std::iter::from_fn(move || {
            loop {
                let (take_delta, skip_base) = match (base.peek(), delta.peek()) {
                    (None, None) => return None,
                    (Some(_), None) => (false, false),
                    (None, Some(_)) => (true, false),
                    // On equal keys the overlay's entry replaces (or, a tombstone, hides)
                    // the base's.
                    (Some((bk, _)), Some((dk, _))) => (dk <= *bk, dk == *bk),
                };
                if skip_base {
                    base.next();
                }
                if !take_delta {
                    return base.next();
                }
                if let Some((k, Some(v))) = delta.next() {
                    return Some((k, v));
                }
                // A tombstone: the key is gone at the snapshot index.
            }
        })
    }

    /// Serializes the snapshot. Format, all integers little-endian:
    ///
    /// ```text
    /// offset  size  field
    /// 0       8     magic "RKVSNAP2"
    /// 8       8     applied_index: u64
    /// 16      8     n: number of duplicate-table rows, u64
    /// 24      17*n  rows sorted by client id: client_id u64, last_seq u64, flags u8
    ///               (bit 0: the outcome's `existed`; other bits 0)
    /// h       8     m: number of member addresses, u64      (h = 24+17n)
    /// h+8     ...   m rows sorted by id: id u64, len u8, len bytes of UTF-8 "HOST:PORT"
    /// e       4     CRC-32 (IEEE) of bytes [0, e)
    /// e+4     ...   the key-value map as a skiplist dump (skiplist crate docs: magic,
    ///               version, count, length-prefixed keys and values, its own CRC-32)
    /// ```
    ///
    /// Version 1 ("RKVSNAP1", before membership changes) has no member section: its CRC
    /// follows the duplicate table. [`KvState::restore`] reads both.
    ///
    /// Nothing may follow the dump. Time O(keys + clients · log clients): call it off the
    /// apply thread.
    pub fn encode(&self) -> Bytes {
        let mut dedup = self.dedup.clone();
        dedup.sort_unstable_by_key(|r| r.0);
        let mut out = Vec::with_capacity(64 + dedup.len() * 17);
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&self.applied_index.to_le_bytes());
        out.extend_from_slice(&(dedup.len() as u64).to_le_bytes());
        for (c, s, o) in &dedup {
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
            out.push(u8::from(o.existed));
        }
        out.extend_from_slice(&(self.members.len() as u64).to_le_bytes());
        for (id, addr) in &self.members {
            out.extend_from_slice(&id.to_le_bytes());
            // `apply_member` keeps addresses to MAX_ADDR_BYTES (< 256).
            out.push(addr.len() as u8);
            out.extend_from_slice(addr.as_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        // The entry count from the base's and the overlay's: O(overlay · log keys).
        let mut count = self.base.len();
        for (k, v) in &self.delta {
            match (self.base.contains_key(&k[..]), v.is_some()) {
                (false, true) => count += 1,
                (true, false) => count -= 1,
                _ => {}
            }
        }
        // Writing to a Vec fails only when `entries` breaks its contract (a wrong count or
        // key order): a bug in this file, and a snapshot written anyway would be corrupt.
        if let Err(e) = skiplist::dump_entries(count as u64, self.entries(), &mut out) {
            panic!("kv snapshot at index {}: {e}", self.applied_index);
        }
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
        self.len
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of `key`, `None` when absent (distinct from an empty value).
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        match self.overlay.get(key) {
            Some(v) => v.as_ref(),
            None => self.base.get(key),
        }
    }

    /// Writes made while a [`SnapshotView`] shared the map and not yet folded back.
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// Moves up to `max` overlay entries into the base once no [`SnapshotView`] shares it
    /// (until then does nothing); returns the entries left. Each costs one skiplist insert
    /// or remove (O(log keys)): call it between apply batches with a bounded `max` so that
    /// no write waits long. Reads and writes are correct at any point of the fold.
    pub fn fold_overlay(&mut self, max: usize) -> usize {
        if self.overlay.is_empty() {
            return 0;
        }
        let Some(base) = Arc::get_mut(&mut self.base) else {
            return self.overlay.len();
        };
        for _ in 0..max {
            match self.overlay.pop_first() {
                Some((k, Some(v))) => {
                    base.insert(k, v);
                }
                Some((k, None)) => {
                    base.remove(&k[..]);
                }
                None => break,
            }
        }
        self.overlay.len()
    }

    /// Sets `key` to `value`; returns whether the key existed.
    fn set(&mut self, key: Bytes, value: Bytes) -> bool {
        let existed = match Arc::get_mut(&mut self.base) {
            Some(base) => {
                // The overlay's entry for the key, if any, is older than this write.
                let in_overlay = self.overlay.remove(&key[..]);
                let in_base = base.insert(key, value).is_some();
                match in_overlay {
                    Some(v) => v.is_some(),
                    None => in_base,
                }
            }
            None => match self.overlay.insert(key.clone(), Some(value)) {
                Some(v) => v.is_some(),
                None => self.base.contains_key(&key[..]),
            },
        };
        if !existed {
            self.len += 1;
        }
        existed
    }

    /// Deletes `key`; returns whether it existed.
    fn delete(&mut self, key: &Bytes) -> bool {
        let existed = match Arc::get_mut(&mut self.base) {
            Some(base) => {
                let in_overlay = self.overlay.remove(&key[..]);
                let in_base = base.remove(&key[..]).is_some();
                match in_overlay {
                    Some(v) => v.is_some(),
                    None => in_base,
                }
            }
            None => {
                let existed = self.get(key).is_some();
                if self.base.contains_key(&key[..]) {
                    self.overlay.insert(key.clone(), None);
                } else {
                    // Not in the shared base: no tombstone is needed to hide it.
                    self.overlay.remove(&key[..]);
                }
                existed
            }
        };
        if existed {
            self.len -= 1;
        }
        existed
    }

    /// The client's last applied sequence number (0 when none).
    pub fn last_seq(&self, client_id: u64) -> u64 {
        self.dedup.get(&client_id).map_or(0, |(s, _)| *s)
    }

    /// Forgets the member addresses (a state restored into a new cluster, whose members
    /// are its own `--peers`).
    pub fn clear_members(&mut self) {
        self.members.clear();
    }

    /// Addresses of the nodes added by membership changes (id → "HOST:PORT").
    pub fn members(&self) -> &BTreeMap<u64, String> {
        &self.members
    }

    /// Applies the membership change committed at `index`: an added learner's address
    /// (the change's context) goes into the address book, a removed node leaves it; a
    /// promotion changes no address. Raft itself already acts on the change; this is the
    /// service's record of where the members are. Indexes must increase, as for
    /// [`KvState::apply`]. A context that is not a short UTF-8 address is kept out of the
    /// book (logged by the caller): the change itself still stands.
    pub fn apply_member(&mut self, index: u64, cc: &ConfChange) -> bool {
        assert!(
            index > self.applied_index,
            "membership change at {index} after {}: the apply channel must deliver each index once, in order",
            self.applied_index
        );
        self.applied_index = index;
        match ConfChangeType::try_from(cc.change_type) {
            Ok(ConfChangeType::ConfChangeAddLearner) => match std::str::from_utf8(&cc.context) {
                Ok(a) if !a.is_empty() && a.len() <= MAX_ADDR_BYTES => {
                    self.members.insert(cc.node_id, a.to_string());
                    true
                }
                _ => false,
            },
            Ok(ConfChangeType::ConfChangeRemoveNode) => {
                self.members.remove(&cc.node_id);
                true
            }
            _ => true,
        }
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
                self.set(cmd.key.clone(), cmd.value.clone());
                false
            }
            Ok(CommandOp::OpAppend) => {
                let joined = match self.get(&cmd.key) {
                    Some(v) => {
                        let mut joined = Vec::with_capacity(v.len() + cmd.value.len());
                        joined.extend_from_slice(v);
                        joined.extend_from_slice(&cmd.value);
                        Bytes::from(joined)
                    }
                    None => cmd.value.clone(),
                };
                self.set(cmd.key.clone(), joined);
                false
            }
            Ok(CommandOp::OpDelete) => self.delete(&cmd.key),
            // `decode_command` refuses these before they get here.
            _ => false,
        };
        let outcome = WriteOutcome { existed };
        self.dedup.insert(cmd.client_id, (cmd.seq, outcome));
        Applied::Done(outcome)
    }

    /// The state at [`applied_index`](Self::applied_index), to serialize elsewhere (see
    /// [`SnapshotView::encode`]). O(overlay + clients): the map's base is shared, not
    /// copied; until the view is dropped, writes go to the overlay.
    pub fn snapshot_view(&self) -> SnapshotView {
        SnapshotView {
            base: Arc::clone(&self.base),
            delta: self
                .overlay
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            dedup: self.dedup.iter().map(|(c, (s, o))| (*c, *s, *o)).collect(),
            members: self.members.iter().map(|(i, a)| (*i, a.clone())).collect(),
            applied_index: self.applied_index,
        }
    }

    /// The snapshot bytes of the current state (view + encode on this thread).
    pub fn snapshot(&self) -> Bytes {
        self.snapshot_view().encode()
    }

    /// Replaces the state with a snapshot made by [`SnapshotView::encode`]. On error the
    /// state is unchanged.
    pub fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        let v2 = match data.get(..8) {
            Some(m) if m == SNAPSHOT_MAGIC => true,
            Some(m) if m == SNAPSHOT_MAGIC_V1 => false,
            _ => {
                return Err(SnapshotError::Corrupt {
                    offset: 0,
                    what: "not a kv snapshot (bad magic)".into(),
                });
            }
        };
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
        // Version 2: the member rows, walked before the checksum is known to be good, so
        // every read is bounds-checked; their bytes are trusted only after the CRC.
        let mut member_rows = Vec::new();
        let mut header_end = rows_end;
        if v2 {
            let m = read_u64(data, rows_end, "member count")?;
            let mut at = rows_end + 8;
            for _ in 0..m {
                let id = read_u64(data, at, "member id")?;
                let len = *data.get(at + 8).ok_or_else(|| SnapshotError::Corrupt {
                    offset: at + 8,
                    what: "truncated in a member address length".into(),
                })? as usize;
                let addr =
                    data.get(at + 9..at + 9 + len)
                        .ok_or_else(|| SnapshotError::Corrupt {
                            offset: at + 9,
                            what: format!("member {id}'s {len}-byte address runs past the end"),
                        })?;
                member_rows.push((at, id, addr));
                at += 9 + len;
            }
            header_end = at;
        }
        let crc_bytes =
            data.get(header_end..header_end + 4)
                .ok_or_else(|| SnapshotError::Corrupt {
                    offset: header_end,
                    what: "truncated before the header checksum".into(),
                })?;
        let want = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        let got = crc32fast::hash(&data[..header_end]);
        if want != got {
            return Err(SnapshotError::Corrupt {
                offset: header_end,
                what: format!("header checksum {got:#010x} != stored {want:#010x}"),
            });
        }
        let mut members = BTreeMap::new();
        for (at, id, addr) in member_rows {
            let addr = std::str::from_utf8(addr).map_err(|_| SnapshotError::Corrupt {
                offset: at + 9,
                what: format!("member {id}'s address is not UTF-8"),
            })?;
            members.insert(id, addr.to_string());
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
        let mut rest = &data[header_end + 4..];
        let map: SkipMap<Bytes, Bytes> = SkipMap::load(&mut rest).map_err(SnapshotError::Map)?;
        if !rest.is_empty() {
            return Err(SnapshotError::Corrupt {
                offset: data.len() - rest.len(),
                what: format!("{} bytes after the map", rest.len()),
            });
        }
        self.len = map.len();
        self.base = Arc::new(map);
        self.overlay.clear();
        self.dedup = dedup;
        self.members = members;
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

    fn member(kind: ConfChangeType, id: u64, addr: &str) -> ConfChange {
        ConfChange {
            change_type: kind as i32,
            node_id: id,
            context: Bytes::copy_from_slice(addr.as_bytes()),
        }
    }

    #[test]
    fn member_addresses_are_applied_and_survive_a_snapshot() {
        let mut s = KvState::new();
        s.apply(1, &cmd(CommandOp::OpPut, "k", "v", 1, 1));
        assert!(s.apply_member(
            2,
            &member(ConfChangeType::ConfChangeAddLearner, 4, "127.0.0.1:7004")
        ));
        assert!(s.apply_member(
            3,
            &member(ConfChangeType::ConfChangeAddLearner, 5, "10.0.0.5:7001")
        ));
        assert!(s.apply_member(4, &member(ConfChangeType::ConfChangePromoteLearner, 4, "")));
        assert!(s.apply_member(5, &member(ConfChangeType::ConfChangeRemoveNode, 5, "")));
        // A context that is no address is kept out of the book; the index still counts.
        assert!(!s.apply_member(6, &member(ConfChangeType::ConfChangeAddLearner, 6, "")));
        assert_eq!(s.applied_index(), 6);
        let want: BTreeMap<u64, String> = [(4, "127.0.0.1:7004".to_string())].into();
        assert_eq!(s.members(), &want);
        let mut r = KvState::new();
        r.restore(&s.snapshot()).expect("restore");
        assert_eq!(r.members(), &want);
        assert_eq!(r.applied_index(), 6);
        assert_eq!(r.get(b"k").map(|v| &v[..]), Some(&b"v"[..]));
    }

    /// A version-1 snapshot (before membership changes: no member section) still restores.
    #[test]
    fn a_version_1_snapshot_still_restores() {
        let mut s = KvState::new();
        for i in 1..=3u64 {
            s.apply(i, &cmd(CommandOp::OpPut, &format!("k{i}"), "val", i, 1));
        }
        let v2 = s.snapshot().to_vec();
        // Rebuild it in the old layout: old magic, no member count, CRC over the rest.
        let rows_end = 24 + 17 * 3;
        let mut v1 = SNAPSHOT_MAGIC_V1.to_vec();
        v1.extend_from_slice(&v2[8..rows_end]);
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        v1.extend_from_slice(&v2[rows_end + 8 + 4..]);
        let mut r = KvState::new();
        r.restore(&v1).expect("a version-1 snapshot restores");
        assert_eq!((r.applied_index(), r.len()), (3, 3));
        assert!(r.members().is_empty());
        // The member section is not optional in version 2.
        let mut bad = v1.clone();
        bad[..8].copy_from_slice(&SNAPSHOT_MAGIC);
        assert!(KvState::new().restore(&bad).is_err());
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let mut s = KvState::new();
        for i in 1..=5u64 {
            s.apply(i, &cmd(CommandOp::OpPut, &format!("k{i}"), "val", i, 1));
        }
        s.apply_member(
            6,
            &member(ConfChangeType::ConfChangeAddLearner, 4, "127.0.0.1:7004"),
        );
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

/// Model-based tests of the overlay: random writes interleaved with snapshot views taken,
/// encoded, dropped, folded back and restored at random points, against a `BTreeMap`.
#[cfg(test)]
mod overlay_model {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;

    use bytes::Bytes;
    use proptest::prelude::*;
    use proto::kv::{Command, CommandOp};

    use super::{Applied, KvState, SnapshotView, WriteOutcome};

    const KEYS: u8 = 6;
    const CLIENTS: u64 = 3;

    #[derive(Clone, Debug)]
    enum Op {
        /// `seq_step` is added to the client's last seq (0: a retry, below 0: stale).
        Write {
            op: CommandOp,
            key: u8,
            value: u8,
            client: u64,
            seq_step: i8,
        },
        /// Take a view, like the apply thread at a snapshot point.
        Begin,
        /// Encode one live view (the snapshot thread) and drop it.
        Finish(usize),
        /// Drop one live view unencoded.
        Abandon(usize),
        /// Fold up to this many overlay entries.
        Fold(usize),
        /// Restore one of the images encoded so far (Raft installs a snapshot).
        Restore(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let write = (0..3u8, 0..KEYS, any::<u8>(), 1..=CLIENTS, -1i8..=2).prop_map(
            |(op, key, value, client, seq_step)| Op::Write {
                op: [CommandOp::OpPut, CommandOp::OpAppend, CommandOp::OpDelete][op as usize],
                key,
                value,
                client,
                seq_step,
            },
        );
        prop_oneof![
            12 => write,
            2 => Just(Op::Begin),
            2 => any::<usize>().prop_map(Op::Finish),
            1 => any::<usize>().prop_map(Op::Abandon),
            2 => (0..4usize).prop_map(Op::Fold),
            1 => any::<usize>().prop_map(Op::Restore),
        ]
    }

    /// The reference: what the state must equal, written plainly.
    #[derive(Clone, Debug, Default, PartialEq)]
    struct Model {
        map: BTreeMap<Bytes, Bytes>,
        dedup: HashMap<u64, (u64, WriteOutcome)>,
        applied: u64,
    }

    impl Model {
        fn apply(&mut self, cmd: &Command) -> Applied {
            self.applied += 1;
            if let Some(&(last, o)) = self.dedup.get(&cmd.client_id) {
                if cmd.seq == last {
                    return Applied::Duplicate(o);
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
                    let mut v = self
                        .map
                        .get(&cmd.key)
                        .map(|v| v.to_vec())
                        .unwrap_or_default();
                    v.extend_from_slice(&cmd.value);
                    self.map.insert(cmd.key.clone(), Bytes::from(v));
                    false
                }
                _ => self.map.remove(&cmd.key).is_some(),
            };
            let o = WriteOutcome { existed };
            self.dedup.insert(cmd.client_id, (cmd.seq, o));
            Applied::Done(o)
        }
    }

    fn key(k: u8) -> Bytes {
        Bytes::from(format!("key{k}"))
    }

    /// Everything a reader of `st` can see equals the model.
    fn check_reads(st: &KvState, m: &Model) -> Result<(), TestCaseError> {
        for k in 0..KEYS {
            prop_assert_eq!(st.get(&key(k)), m.map.get(&key(k)), "get of key{}", k);
        }
        prop_assert_eq!(st.len(), m.map.len());
        prop_assert_eq!(st.applied_index(), m.applied);
        for c in 1..=CLIENTS {
            prop_assert_eq!(st.last_seq(c), m.dedup.get(&c).map_or(0, |r| r.0));
        }
        Ok(())
    }

    /// The image decodes to exactly the model: every entry, the table, the index.
    fn check_image(image: &[u8], m: &Model) -> Result<(), TestCaseError> {
        let mut r = KvState::new();
        r.restore(image)
            .map_err(|e| TestCaseError::fail(format!("image does not restore: {e}")))?;
        prop_assert_eq!(r.overlay_len(), 0);
        let got: Vec<_> = r.base.iter().collect();
        let want: Vec<_> = m.map.iter().collect();
        prop_assert_eq!(got, want, "map of the image at index {}", m.applied);
        prop_assert_eq!(&r.dedup, &m.dedup);
        prop_assert_eq!(r.applied_index(), m.applied);
        check_reads(&r, m)
    }

    fn run(ops: &[Op]) -> Result<(), TestCaseError> {
        let mut st = KvState::new();
        let mut model = Model::default();
        // Live views with the model at their index and the restores before them: a view
        // taken before the last restore holds a map the state no longer uses.
        let mut views: Vec<(SnapshotView, Model, usize)> = Vec::new();
        let mut restores = 0;
        let mut images: Vec<(Bytes, Model)> = Vec::new();
        for op in ops {
            match op {
                Op::Write {
                    op,
                    key: k,
                    value,
                    client,
                    seq_step,
                } => {
                    let last = model.dedup.get(client).map_or(0, |r| r.0);
                    let cmd = Command {
                        op: *op as i32,
                        key: key(*k),
                        value: Bytes::from(vec![*value; usize::from(*value % 3)]),
                        client_id: *client,
                        seq: last.saturating_add_signed(i64::from(*seq_step)).max(1),
                    };
                    let want = model.apply(&cmd);
                    let got = st.apply(model.applied, &cmd);
                    prop_assert_eq!(got, want, "outcome of {:?}", cmd);
                }
                Op::Begin => views.push((st.snapshot_view(), model.clone(), restores)),
                Op::Finish(i) if !views.is_empty() => {
                    let (v, m, _) = views.remove(i % views.len());
                    prop_assert_eq!(v.applied_index(), m.applied);
                    let image = v.encode();
                    drop(v);
                    check_image(&image, &m)?;
                    images.push((image, m));
                }
                Op::Abandon(i) if !views.is_empty() => {
                    views.remove(i % views.len());
                }
                Op::Fold(n) => {
                    let before = st.overlay_len();
                    let left = st.fold_overlay(*n);
                    if views.iter().all(|v| v.2 != restores) {
                        prop_assert_eq!(left, before.saturating_sub(*n));
                    } else {
                        prop_assert_eq!(left, before, "folded while a view shares the map");
                    }
                }
                Op::Restore(i) if !images.is_empty() => {
                    let (image, m) = &images[i % images.len()];
                    st.restore(image)
                        .map_err(|e| TestCaseError::fail(format!("restore: {e}")))?;
                    model = m.clone();
                    restores += 1;
                }
                Op::Finish(_) | Op::Abandon(_) | Op::Restore(_) => {}
            }
            check_reads(&st, &model)?;
        }
        // The whole state, encoded at the end, is the model too.
        check_image(&st.snapshot(), &model)?;
        for (v, m, _) in views {
            check_image(&v.encode(), &m)?;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn state_with_snapshots_at_random_points_equals_the_model(
            ops in proptest::collection::vec(op(), 1..160)
        ) {
            run(&ops)?;
        }
    }

    /// The cases the random search must not miss, spelled out.
    #[test]
    fn writes_while_a_view_is_alive_go_to_the_overlay_and_fold_back() {
        let put = |k: u8, v: u8| Op::Write {
            op: CommandOp::OpPut,
            key: k,
            value: v,
            client: 1,
            seq_step: 1,
        };
        let del = |k: u8| Op::Write {
            op: CommandOp::OpDelete,
            key: k,
            value: 0,
            client: 2,
            seq_step: 1,
        };
        run(&[
            put(0, 1),
            put(1, 1),
            Op::Begin,
            del(0),
            put(2, 2),
            put(1, 2),
            Op::Begin,
            del(1),
            Op::Finish(0),
            put(1, 4),
            Op::Fold(1),
            Op::Finish(0),
            put(0, 5),
            Op::Fold(8),
            Op::Begin,
            Op::Finish(0),
        ])
        .expect("scripted case");
    }

    #[test]
    fn a_view_shares_the_map_instead_of_copying_it() {
        let mut st = KvState::new();
        for i in 1..=1000u64 {
            st.apply(
                i,
                &Command {
                    op: CommandOp::OpPut as i32,
                    key: Bytes::from(format!("k{i}")),
                    value: Bytes::from_static(b"v"),
                    client_id: 1,
                    seq: i,
                },
            );
        }
        let view = st.snapshot_view();
        assert!(Arc::ptr_eq(&view.base, &st.base), "the view copied the map");
        assert!(view.delta.is_empty());
        st.apply(
            1001,
            &Command {
                op: CommandOp::OpDelete as i32,
                key: Bytes::from_static(b"k1"),
                value: Bytes::new(),
                client_id: 1,
                seq: 1001,
            },
        );
        assert_eq!(st.overlay_len(), 1, "a delete under a view is a tombstone");
        assert_eq!(
            st.fold_overlay(100),
            1,
            "folded while the view holds the map"
        );
        drop(view);
        assert_eq!(st.fold_overlay(100), 0);
        assert_eq!(st.get(b"k1"), None);
        assert_eq!(st.len(), 999);
    }
}
