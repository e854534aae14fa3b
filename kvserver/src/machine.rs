//! The apply loop's logic without its thread: the state machine plus the requests waiting
//! on it. Pure and deterministic (no clock, no I/O), generic over the reply handles, so the
//! node's apply thread ([`crate::KvNode`]) and the simulator in `testkit` run the same code.
//!
//! A write is proposed, then registered here under the (index, term) Raft gave it. When
//! the entry at that index is applied:
//! - if it is our command (same term, same client id and sequence number), the waiting
//!   handle gets the outcome;
//! - otherwise another leader's entry took the index (ours was truncated): the handle gets
//!   WRONG_LEADER at once, and the Clerk retries elsewhere with the same sequence number.
//!
//! A read waits here with its ReadIndex point and is answered once the state machine has
//! applied through it. Registered requests that can no longer be answered (leadership
//! lost, node stopping, deadline) are taken out with [`Machine::drain_writes`] and
//! [`Machine::drain_reads`].

use std::collections::BTreeMap;

use bytes::Bytes;
use proto::kv::{Command, ErrorCode};
use proto::raft::ConfChange;

use crate::state::{Applied, BadEntry, KvState, SnapshotError, decode_command};

/// The outcome a waiting write gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteResult {
    /// OK, WRONG_LEADER (the index went to another command) or STALE_REQUEST.
    pub err: ErrorCode,
    /// Delete only: the key existed.
    pub existed: bool,
}

#[derive(Debug)]
struct PendingWrite<W> {
    term: u64,
    client_id: u64,
    seq: u64,
    handle: W,
}

/// The state machine and the requests waiting on it.
#[derive(Debug)]
pub struct Machine<W, R> {
    state: KvState,
    writes: BTreeMap<u64, PendingWrite<W>>,
    reads: BTreeMap<u64, Vec<(Bytes, R)>>,
}

impl<W, R> Default for Machine<W, R> {
    fn default() -> Self {
        Machine {
            state: KvState::new(),
            writes: BTreeMap::new(),
            reads: BTreeMap::new(),
        }
    }
}

impl<W, R> Machine<W, R> {
    /// An empty machine.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state machine.
    pub fn state(&self) -> &KvState {
        &self.state
    }

    /// Folds up to `max` entries of the state's overlay back into its map once no
    /// snapshot view holds the map; returns the entries left (see
    /// [`KvState::fold_overlay`]).
    pub fn fold_overlay(&mut self, max: usize) -> usize {
        self.state.fold_overlay(max)
    }

    /// Index applied so far.
    pub fn applied_index(&self) -> u64 {
        self.state.applied_index()
    }

    /// Writes and reads waiting.
    pub fn waiting(&self) -> (usize, usize) {
        (self.writes.len(), self.reads.values().map(Vec::len).sum())
    }

    /// Registers a proposed write that Raft placed at (index, term). If the index is
    /// already applied (only possible when the caller registers late), the handle comes
    /// back at once with WRONG_LEADER so it is never lost.
    pub fn register_write(
        &mut self,
        index: u64,
        term: u64,
        client_id: u64,
        seq: u64,
        handle: W,
    ) -> Option<(W, WriteResult)> {
        if index <= self.state.applied_index() {
            return Some((handle, wrong_leader()));
        }
        let old = self.writes.insert(
            index,
            PendingWrite {
                term,
                client_id,
                seq,
                handle,
            },
        );
        // A second registration at one index means the first one's entry was overwritten
        // by a newer leader of ours; it can no longer be ours.
        old.map(|p| (p.handle, wrong_leader()))
    }

    /// Registers a read of `key` that may be served once `index` is applied; served at
    /// once (returned) when it already is.
    pub fn register_read(
        &mut self,
        index: u64,
        key: Bytes,
        handle: R,
    ) -> Option<(R, Option<Bytes>)> {
        if index <= self.state.applied_index() {
            let v = self.state.get(&key).cloned();
            return Some((handle, v));
        }
        self.reads.entry(index).or_default().push((key, handle));
        None
    }

    /// Applies the committed command at `index` (of `term`): answers the write waiting at
    /// that index, if any, into `writes`, and the reads that became servable into `reads`.
    /// A committed entry that is not a command is an error naming the index; the caller
    /// must stop (never skip it).
    pub fn apply_command(
        &mut self,
        index: u64,
        term: u64,
        data: &[u8],
        writes: &mut Vec<(W, WriteResult)>,
        reads: &mut Vec<(R, Option<Bytes>)>,
    ) -> Result<(), BadEntry> {
        let cmd: Command = decode_command(index, data)?;
        // Entries the driver skipped (no-ops) leave gaps: writes registered there are not
        // ours any more.
        while let Some(e) = self.writes.first_entry() {
            if *e.key() >= index {
                break;
            }
            writes.push((e.remove().handle, wrong_leader()));
        }
        let applied = self.state.apply(index, &cmd);
        if let Some(p) = self.writes.remove(&index) {
            let ours = p.term == term && p.client_id == cmd.client_id && p.seq == cmd.seq;
            let result = match (ours, applied) {
                (false, _) => wrong_leader(),
                (true, Applied::Done(o) | Applied::Duplicate(o)) => WriteResult {
                    err: ErrorCode::Ok,
                    existed: o.existed,
                },
                (true, Applied::Stale { .. }) => WriteResult {
                    err: ErrorCode::StaleRequest,
                    existed: false,
                },
            };
            writes.push((p.handle, result));
        }
        self.serve_reads(reads);
        Ok(())
    }

    /// Applies the membership change committed at `index` ([`KvState::apply_member`]);
    /// a write waiting at this index or below lost it to another entry and gets
    /// WRONG_LEADER; reads that became servable go into `reads`. Returns false when the
    /// change's context was not an address (the change stands; nothing to record).
    pub fn apply_conf_change(
        &mut self,
        index: u64,
        cc: &ConfChange,
        writes: &mut Vec<(W, WriteResult)>,
        reads: &mut Vec<(R, Option<Bytes>)>,
    ) -> bool {
        while let Some(e) = self.writes.first_entry() {
            if *e.key() > index {
                break;
            }
            writes.push((e.remove().handle, wrong_leader()));
        }
        let ok = self.state.apply_member(index, cc);
        self.serve_reads(reads);
        ok
    }

    /// Notes a no-op entry the driver skipped (keeps read points reachable).
    pub fn skip_to(&mut self, index: u64, reads: &mut Vec<(R, Option<Bytes>)>) {
        self.state.skip_to(index);
        self.serve_reads(reads);
    }

    /// Replaces the state with a snapshot (Raft installed one, or the node restarts from
    /// one). Writes waiting at indexes the snapshot covers get WRONG_LEADER (their outcome
    /// is in the duplicate table; the Clerk's retry gets it).
    pub fn restore(
        &mut self,
        data: &[u8],
        writes: &mut Vec<(W, WriteResult)>,
        reads: &mut Vec<(R, Option<Bytes>)>,
    ) -> Result<(), SnapshotError> {
        self.state.restore(data)?;
        let applied = self.state.applied_index();
        while let Some(e) = self.writes.first_entry() {
            if *e.key() > applied {
                break;
            }
            writes.push((e.remove().handle, wrong_leader()));
        }
        self.serve_reads(reads);
        Ok(())
    }

    fn serve_reads(&mut self, out: &mut Vec<(R, Option<Bytes>)>) {
        let applied = self.state.applied_index();
        while let Some(e) = self.reads.first_entry() {
            if *e.key() > applied {
                break;
            }
            for (key, h) in e.remove() {
                out.push((h, self.state.get(&key).cloned()));
            }
        }
    }

    /// Takes out every waiting write (leadership lost, node stopping).
    pub fn drain_writes(&mut self) -> Vec<W> {
        std::mem::take(&mut self.writes)
            .into_values()
            .map(|p| p.handle)
            .collect()
    }

    /// Takes out every waiting read.
    pub fn drain_reads(&mut self) -> Vec<R> {
        std::mem::take(&mut self.reads)
            .into_values()
            .flatten()
            .map(|(_, h)| h)
            .collect()
    }

    /// Takes out the waiting writes and reads that `expired` says are past their deadline.
    pub fn drain_expired(
        &mut self,
        mut expired: impl FnMut(&W) -> bool,
        mut expired_read: impl FnMut(&R) -> bool,
    ) -> (Vec<W>, Vec<R>) {
        let mut ws = Vec::new();
        let keys: Vec<u64> = self
            .writes
            .iter()
            .filter(|(_, p)| expired(&p.handle))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(p) = self.writes.remove(&k) {
                ws.push(p.handle);
            }
        }
        let mut rs = Vec::new();
        for v in self.reads.values_mut() {
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(v)
                .into_iter()
                .partition(|(_, h)| expired_read(h));
            *v = keep;
            rs.extend(gone.into_iter().map(|(_, h)| h));
        }
        self.reads.retain(|_, v| !v.is_empty());
        (ws, rs)
    }
}

fn wrong_leader() -> WriteResult {
    WriteResult {
        err: ErrorCode::WrongLeader,
        existed: false,
    }
}

/// Largest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

/// Default largest value accepted, in bytes (16 MiB, under the rpc frame cap of 64 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Checks a request before anything is proposed; the error text is what the client sees
/// with INVALID_ARGUMENT.
pub fn validate(
    key: &[u8],
    value: Option<&[u8]>,
    client_id: Option<(u64, u64)>,
    max_value: usize,
) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty; keys must be 1 to 65536 bytes".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "the key is {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    if let Some(v) = value
        && v.len() > max_value
    {
        return Err(format!(
            "the value is {} bytes; this server's limit is {max_value} (kvserver --max-value-bytes)",
            v.len()
        ));
    }
    if let Some((c, s)) = client_id {
        if c == 0 {
            return Err("client_id is 0; a Clerk must pick a random non-zero id".into());
        }
        if s == 0 {
            return Err("seq is 0; a Clerk numbers its writes from 1".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::Message;
    use proto::kv::CommandOp;

    fn put(k: &str, v: &str, c: u64, s: u64) -> Vec<u8> {
        Command {
            op: CommandOp::OpPut as i32,
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
            client_id: c,
            seq: s,
        }
        .encode_to_vec()
    }

    #[test]
    fn a_write_whose_index_went_to_another_command_fails_at_once() {
        let mut m: Machine<&str, &str> = Machine::new();
        assert!(m.register_write(1, 1, 5, 1, "ours").is_none());
        assert!(m.register_write(2, 1, 5, 2, "ours2").is_none());
        let (mut w, mut r) = (Vec::new(), Vec::new());
        // Index 1 was overwritten by another leader's entry (term 2, another client).
        m.apply_command(1, 2, &put("k", "x", 9, 1), &mut w, &mut r)
            .unwrap();
        assert_eq!(w, vec![("ours", wrong_leader())]);
        w.clear();
        m.apply_command(2, 1, &put("k", "y", 5, 2), &mut w, &mut r)
            .unwrap();
        assert_eq!(w[0].1.err, ErrorCode::Ok);
    }

    #[test]
    fn reads_wait_for_their_index() {
        let mut m: Machine<&str, &str> = Machine::new();
        let (mut w, mut r) = (Vec::new(), Vec::new());
        assert!(m.register_read(2, Bytes::from_static(b"k"), "r").is_none());
        m.apply_command(1, 1, &put("k", "a", 5, 1), &mut w, &mut r)
            .unwrap();
        assert!(r.is_empty(), "served before its read index was applied");
        m.apply_command(2, 1, &put("k", "b", 5, 2), &mut w, &mut r)
            .unwrap();
        assert_eq!(r, vec![("r", Some(Bytes::from_static(b"b")))]);
        let missing = m.register_read(2, Bytes::from_static(b"nope"), "r2");
        assert_eq!(missing, Some(("r2", None)));
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let max = DEFAULT_MAX_VALUE_BYTES;
        assert!(
            validate(b"", None, None, max)
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            validate(&vec![b'k'; MAX_KEY_BYTES + 1], None, None, max)
                .unwrap_err()
                .contains("65537")
        );
        assert!(validate(&vec![b'k'; MAX_KEY_BYTES], None, None, max).is_ok());
        assert!(
            validate(b"k", Some(&[0; 11]), None, 10)
                .unwrap_err()
                .contains("11 bytes")
        );
        assert!(
            validate(b"k", Some(b""), Some((0, 1)), max)
                .unwrap_err()
                .contains("client_id")
        );
        assert!(
            validate(b"k", Some(b""), Some((1, 0)), max)
                .unwrap_err()
                .contains("seq")
        );
    }
}
