//! The child of persist's `kill -9` test (`tests/kill9.rs`): opens the WAL in the given
//! directory (recovering whatever the last kill left), then appends and syncs batches of
//! records forever, printing the seq of each batch's last record on stdout after its sync
//! returned. The parent kills it with SIGKILL at random moments and checks that every
//! printed record is there, byte for byte. It stops by itself after `max` records so that
//! it can never outlive a broken parent for long.
//!
//! Usage: `wal-crash-child DIR SEED MAX_RECORDS`

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use persist::{StdFs, Wal, WalOptions};

/// The payload of record `seq`: 0-299 bytes derived from the seq (the parent recomputes it).
pub fn payload(seq: u64) -> Vec<u8> {
    let len = (seq.wrapping_mul(37) % 300) as usize;
    (0..len)
        .map(|i| (seq.wrapping_mul(131).wrapping_add(i as u64)) as u8)
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: wal-crash-child DIR SEED MAX_RECORDS");
        std::process::exit(2);
    }
    let dir = Path::new(&args[1]);
    let mut rng: u64 = args[2].parse().unwrap_or(1);
    let max: u64 = args[3].parse().unwrap_or(10_000);
    let opts = WalOptions {
        segment_bytes: 16 << 10, // small: rolls happen often under the kills
        preallocate_bytes: 4 << 10,
    };
    let (mut wal, _) = match Wal::open(Arc::new(StdFs), dir, opts, |_, _| Ok(())) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("wal-crash-child: open: {e}");
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout().lock();
    let start = wal.next_seq();
    while wal.next_seq() < start + max {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let n = 1 + rng % 8;
        let first = wal.next_seq();
        let payloads: Vec<Vec<u8>> = (first..first + n).map(payload).collect();
        let r = wal
            .append(payloads.iter().map(|p| (1u8, p.as_slice())))
            .and_then(|_| wal.sync());
        if let Err(e) = r {
            eprintln!("wal-crash-child: {e}");
            std::process::exit(1);
        }
        if writeln!(out, "{}", first + n - 1)
            .and_then(|_| out.flush())
            .is_err()
        {
            return; // the parent went away
        }
    }
}
