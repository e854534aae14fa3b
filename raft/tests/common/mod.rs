//! What the core-level tests share.

#![allow(dead_code)] // each test binary uses its own subset

use raft::{MemStorage, RawNode, Ready, Storage};

/// Runs the driver contract in memory until the node has nothing more to do: persist each
/// Ready, then advance. Returns the Readies so a test can inspect messages and entries.
pub fn drive(n: &mut RawNode, st: &mut MemStorage) -> Vec<Ready> {
    let mut out = Vec::new();
    while n.has_ready() {
        let rd = n.ready();
        st.persist(rd.hard_state.as_ref(), rd.snapshot.as_ref(), &rd.entries)
            .expect("mem storage");
        n.advance(&rd);
        out.push(rd);
    }
    out
}
