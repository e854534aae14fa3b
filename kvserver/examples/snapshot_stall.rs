//! How long a snapshot holds up the apply thread: the apply thread only takes a
//! [`KvState::snapshot_view`] (a copy of the skiplist whose keys and values are
//! reference-counted `Bytes`, plus the sorted duplicate table); the snapshot thread encodes
//! that copy while writes go on. This prints both times for N keys (default 1,000,000,
//! 16-byte keys, 100-byte values), so the stall a write can see is the first figure.
//!
//! `cargo run --release -p kvserver --example snapshot_stall -- [N]`

use std::time::Instant;

use bytes::Bytes;
use kvserver::KvState;
use proto::kv::{Command, CommandOp};

fn main() {
    let n: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 1_000_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("snapshot_stall: N must be a positive whole number of keys");
            std::process::exit(2);
        }
    };
    let mut st = KvState::new();
    let value = Bytes::from(vec![b'v'; 100]);
    for i in 0..n {
        let cmd = Command {
            op: CommandOp::OpPut as i32,
            key: Bytes::from(format!("key-{i:012}")),
            value: value.clone(),
            client_id: i % 1000 + 1,
            seq: i / 1000 + 1,
        };
        st.apply(i + 1, &cmd);
    }
    let t0 = Instant::now();
    let view = st.snapshot_view();
    let copy = t0.elapsed();
    let t1 = Instant::now();
    let bytes = view.encode();
    let encode = t1.elapsed();
    drop(view);
    println!(
        "snapshot of {n} keys: apply thread held for {:.1} ms (the copy); encoded off it in {:.1} ms ({} MiB)",
        copy.as_secs_f64() * 1e3,
        encode.as_secs_f64() * 1e3,
        bytes.len() >> 20
    );
}
