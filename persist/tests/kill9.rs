//! A real `kill -9`: a child process (`wal-crash-child`) appends and syncs batches of
//! records and prints each synced batch's last seq on a pipe; the parent SIGKILLs it after
//! a random number of reports (so at a random point of an append, a sync or a roll), then
//! reopens the WAL and checks that every reported record is there, byte for byte, and that
//! the log is gap-free. 50 rounds on one directory, so each child also recovers from the
//! previous kill. `SEED=n` picks another schedule.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use persist::{StdFs, Wal, WalOptions};

fn payload(seq: u64) -> Vec<u8> {
    let len = (seq.wrapping_mul(37) % 300) as usize;
    (0..len)
        .map(|i| (seq.wrapping_mul(131).wrapping_add(i as u64)) as u8)
        .collect()
}

/// Kills the child by pid when dropped (a failing assertion must not leave it running).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_reported_record_survives_kill_9() {
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED);
    let mut rng = seed | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut reported_max = 0u64;
    let mut total_reports = 0u64;
    let mut killed_mid_run = 0;
    for round in 0..50 {
        let kill_after = 1 + next() % 40;
        let child = Command::new(env!("CARGO_BIN_EXE_wal-crash-child"))
            .arg(&dir)
            .arg(next().to_string())
            .arg("5000")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wal-crash-child");
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut reports = Vec::new();
        while let Some(Ok(l)) = lines.next() {
            reports.push(l.parse::<u64>().expect("a seq per line"));
            if reports.len() as u64 == kill_after {
                // SIGKILL: no destructor, no flush, no atexit in the child.
                child.0.kill().expect("kill -9 the child");
                killed_mid_run += 1;
                break;
            }
        }
        // Lines already in the pipe were printed after their sync: they count too.
        for l in lines.map_while(Result::ok) {
            reports.push(l.parse::<u64>().expect("a seq per line"));
        }
        let status = child.0.wait().expect("wait for the child");
        assert!(
            !status.success() || reports.len() as u64 >= 5000 / 8,
            "round {round}: child exited early: {status}"
        );
        if let Some(&m) = reports.last() {
            assert!(m > reported_max, "round {round}: reports must grow");
            reported_max = m;
        }
        total_reports += reports.len() as u64;

        // Reopen and check every record, byte for byte.
        let mut expect = 1u64;
        let (wal, _) = Wal::open(Arc::new(StdFs), &dir, WalOptions::default(), |r, loc| {
            if r.seq != expect {
                return Err(format!("seq {} after {}", r.seq, expect - 1));
            }
            if r.kind != 1 || r.payload[..] != payload(r.seq)[..] {
                return Err(format!(
                    "record {} differs at {}:{}",
                    r.seq,
                    loc.file.display(),
                    loc.offset
                ));
            }
            expect += 1;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e} (replay with SEED={seed})"));
        assert!(
            wal.next_seq() > reported_max,
            "round {round}: reported seq {reported_max} synced but the log ends at {} (replay with SEED={seed})",
            wal.next_seq() - 1
        );
    }
    assert_eq!(killed_mid_run, 50);
    eprintln!(
        "kill -9: 50 rounds, {total_reports} synced batches reported, last seq {reported_max}, all found"
    );
}
