//! `persist-bench`: the WAL's group commit and recovery on this machine's disk.
//!
//! - **raw**: the device's own rate, a loop of one 100-byte append + `fdatasync` on a plain
//!   file;
//! - **batch B**: `Wal::append` of B records of 100 bytes then one `Wal::sync`, for
//!   B = 1, 8, 64, 512: records/s, fsyncs/s, MB/s of payload. Raw and batch 1 are measured
//!   in alternating slices (so a change in the machine's load hits both alike) and their
//!   ratio printed;
//! - **reopen**: time to `Wal::open` a log of `--reopen-mib` MiB (default 1 GiB) of
//!   100-byte records, every checksum verified and every record handed to a callback. The
//!   files were just written, so they are read from the page cache (a cold read is bounded
//!   by the device instead).
//!
//! Everything runs in a temporary directory under `--dir` (default: the system temp dir,
//! which must be on the disk you mean to measure), deleted at the end.
//!
//! ```text
//! cargo run --release -p bench --bin persist-bench
//! cargo run --release -p bench --bin persist-bench -- --json --secs 1 --reopen-mib 256
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use persist::{StdFs, Wal, WalOptions};

#[derive(Parser, Debug)]
#[command(about = "Benchmark of raftkv's WAL: group commit over fdatasync, and recovery")]
struct Args {
    /// Batch sizes (records per fdatasync), comma-separated.
    #[arg(long, default_value = "1,8,64,512")]
    batches: String,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// Measuring time per row, in seconds (raw and batch 1 get this much each).
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Size of the log to reopen, in MiB (0 skips; at most 16384).
    #[arg(long, default_value_t = 1024)]
    reopen_mib: u64,
    /// Parent of the temporary data directory (must be on the disk to measure).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// One JSON object per row instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Default, Clone, Copy)]
struct Count {
    records: u64,
    fsyncs: u64,
    secs: f64,
}

impl Count {
    fn add(&mut self, o: Count) {
        self.records += o.records;
        self.fsyncs += o.fsyncs;
        self.secs += o.secs;
    }
    fn per_sec(&self, x: u64) -> f64 {
        if self.secs > 0.0 {
            x as f64 / self.secs
        } else {
            0.0
        }
    }
}

fn raw_slice(path: &Path, record: &[u8], secs: f64) -> Result<Count, String> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let t0 = Instant::now();
    let until = Duration::from_secs_f64(secs);
    let mut n = 0;
    while t0.elapsed() < until {
        f.write_all(record).map_err(|e| format!("write: {e}"))?;
        f.sync_data().map_err(|e| format!("fdatasync: {e}"))?;
        n += 1;
    }
    Ok(Count {
        records: n,
        fsyncs: n,
        secs: t0.elapsed().as_secs_f64(),
    })
}

fn wal_slice(wal: &mut Wal, batch: usize, record: &[u8], secs: f64) -> Result<Count, String> {
    let recs: Vec<(u8, &[u8])> = (0..batch).map(|_| (1u8, record)).collect();
    let t0 = Instant::now();
    let until = Duration::from_secs_f64(secs);
    let mut c = Count::default();
    while t0.elapsed() < until {
        wal.append(recs.iter().copied())
            .map_err(|e| e.to_string())?;
        wal.sync().map_err(|e| e.to_string())?;
        c.records += batch as u64;
        c.fsyncs += 1;
    }
    c.secs = t0.elapsed().as_secs_f64();
    Ok(c)
}

fn open_wal(dir: &Path) -> Result<Wal, String> {
    Wal::open(Arc::new(StdFs), dir, WalOptions::default(), |_, _| Ok(()))
        .map(|(w, _)| w)
        .map_err(|e| e.to_string())
}

fn run(args: &Args) -> Result<bool, String> {
    let batches: Vec<usize> = args
        .batches
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .map_err(|e| format!("--batches {s:?}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    if batches.contains(&0) || args.secs <= 0.0 || args.reopen_mib > 16384 {
        return Err("batches must be positive, --secs > 0, --reopen-mib <= 16384".into());
    }
    let tmp = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .map_err(|e| format!("temp dir: {e}"))?;
    let record: Vec<u8> = (0..args.record_bytes).map(|i| i as u8).collect();
    let mb = |c: &Count| c.per_sec(c.records) * args.record_bytes as f64 / 1e6;

    if !args.json {
        println!(
            "persist-bench: {} B records, {} s per row, data in {}",
            args.record_bytes,
            args.secs,
            tmp.path().display()
        );
    }
    // Raw fdatasync and WAL batch 1, in alternating slices.
    let raw_path = tmp.path().join("raw.dat");
    let mut raw = Count::default();
    let mut one = Count::default();
    let slices = 4;
    let mut rows: Vec<(usize, Count)> = Vec::new();
    {
        let dir = tmp.path().join("wal-1");
        let mut wal = open_wal(&dir)?;
        for _ in 0..slices {
            raw.add(raw_slice(&raw_path, &record, args.secs / slices as f64)?);
            one.add(wal_slice(&mut wal, 1, &record, args.secs / slices as f64)?);
        }
    }
    for &b in &batches {
        if b == 1 {
            rows.push((1, one));
            continue;
        }
        let dir = tmp.path().join(format!("wal-{b}"));
        let mut wal = open_wal(&dir)?;
        rows.push((b, wal_slice(&mut wal, b, &record, args.secs)?));
        drop(wal);
        std::fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    }
    if raw.records == 0 || rows.iter().any(|(_, c)| c.records == 0) {
        return Err("zero samples: a row completed no fdatasync in its time".into());
    }
    let raw_rate = raw.per_sec(raw.fsyncs);
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "raw_fdatasync_per_sec": raw_rate })
        );
        for (b, c) in &rows {
            println!(
                "{}",
                serde_json::json!({
                    "batch": b,
                    "records_per_sec": c.per_sec(c.records),
                    "fsyncs_per_sec": c.per_sec(c.fsyncs),
                    "mb_per_sec": mb(c),
                })
            );
        }
    } else {
        println!(
            "raw fdatasync (1 x {} B append + fdatasync): {raw_rate:.0} /s",
            args.record_bytes
        );
        println!(
            "{:>6} {:>14} {:>12} {:>10} {:>10}",
            "batch", "records/s", "fsyncs/s", "MB/s", "/raw"
        );
        for (b, c) in &rows {
            println!(
                "{b:>6} {:>14.0} {:>12.0} {:>10.2} {:>9.2}x",
                c.per_sec(c.records),
                c.per_sec(c.fsyncs),
                mb(c),
                c.per_sec(c.fsyncs) / raw_rate
            );
        }
    }

    // Reopen a large log.
    let mut reopen = None;
    if args.reopen_mib > 0 {
        let dir = tmp.path().join("wal-reopen");
        let target = args.reopen_mib << 20;
        let mut wal = open_wal(&dir)?;
        let recs: Vec<(u8, &[u8])> = (0..512).map(|_| (1u8, &record[..])).collect();
        let per_batch = 512 * (persist::record::RECORD_HEADER + record.len()) as u64;
        let mut written = 0u64;
        while written < target {
            wal.append(recs.iter().copied())
                .map_err(|e| e.to_string())?;
            written += per_batch;
        }
        wal.sync().map_err(|e| e.to_string())?;
        drop(wal);
        let mut records = 0u64;
        let mut payload = 0u64;
        let t0 = Instant::now();
        let (_, rec) = Wal::open(Arc::new(StdFs), &dir, WalOptions::default(), |r, _| {
            records += 1;
            payload += r.payload.len() as u64;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        let secs = t0.elapsed().as_secs_f64();
        if records == 0 || secs <= 0.0 {
            return Err("zero samples: the reopened log had no records".into());
        }
        let rate = rec.bytes as f64 / secs / 1e6;
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "reopen_bytes": rec.bytes,
                    "reopen_records": records,
                    "reopen_secs": secs,
                    "reopen_mb_per_sec": rate,
                })
            );
        } else {
            println!(
                "reopen: {:.0} MiB, {records} records ({:.0} MiB payload) verified in {secs:.3} s = {rate:.0} MB/s ({:.0} records/s)",
                rec.bytes as f64 / (1 << 20) as f64,
                payload as f64 / (1 << 20) as f64,
                records as f64 / secs
            );
        }
        reopen = Some(rate);
    }

    // Targets (issue 8), ratios from this run.
    let batch1 = rows
        .iter()
        .find(|(b, _)| *b == 1)
        .map(|(_, c)| c.per_sec(c.fsyncs) / raw_rate);
    let batch512 = rows
        .iter()
        .find(|(b, _)| *b == 512)
        .map(|(_, c)| c.per_sec(c.records));
    let mut all = true;
    if !args.json {
        println!("targets:");
    }
    let mut target = |name: &str, v: Option<f64>, want: f64, unit: &str| {
        if let Some(v) = v {
            let met = v >= want;
            all &= met;
            if !args.json {
                println!(
                    "  {name:<40} {v:>12.2} (target >= {want}{unit}) {}",
                    if met { "met" } else { "NOT MET" }
                );
            }
        }
    };
    target("batch 1 fsyncs/s / raw fdatasync/s", batch1, 0.9, "");
    target("batch 512 records/s", batch512, 300_000.0, "");
    target("reopen MB/s", reopen, 500.0, "");
    Ok(all)
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(_) => {}
        Err(e) => {
            eprintln!("persist-bench: {e}");
            std::process::exit(1);
        }
    }
}
