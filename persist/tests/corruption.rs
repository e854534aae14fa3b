//! Damaged WAL files: every truncation of the last record recovers to the record before,
//! every flipped bit before the last record is refused with its file and offset, a missing
//! middle segment is refused, and a refused directory is left untouched.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use persist::record::{RECORD_HEADER, SEGMENT_HEADER, decode_record};
use persist::{Error, Fs, SimFs, StdFs, Wal, WalOptions};

const SEG: u64 = 1024;

fn opts() -> WalOptions {
    WalOptions {
        segment_bytes: SEG,
        preallocate_bytes: 300, // zeros after the last record of the active segment
    }
}

/// Writes `batches` batches (sizes cycling 1..=3, last batch one record) of varied
/// payloads; returns every record's (seq, payload).
fn build(fs: Arc<dyn Fs>, dir: &Path, batches: u64) -> Vec<(u64, Vec<u8>)> {
    let (mut wal, _) = Wal::open(fs, dir, opts(), |_, _| Ok(())).unwrap();
    let mut all = Vec::new();
    for b in 0..batches {
        let n = if b + 1 == batches { 1 } else { 1 + b % 3 };
        let recs: Vec<(u64, Vec<u8>)> = (0..n)
            .map(|i| {
                let seq = wal.next_seq() + i;
                (seq, (0..(seq * 7 % 90)).map(|j| (seq + j) as u8).collect())
            })
            .collect();
        wal.append(recs.iter().map(|(_, p)| (2u8, p.as_slice())))
            .unwrap();
        wal.sync().unwrap();
        all.extend(recs);
    }
    all
}

fn reopen(fs: Arc<dyn Fs>, dir: &Path) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    let mut got = Vec::new();
    Wal::open(fs, dir, opts(), |r, _| {
        got.push((r.seq, r.payload.to_vec()));
        Ok(())
    })?;
    Ok(got)
}

/// Record start offsets in one segment file.
fn record_offsets(data: &[u8]) -> Vec<usize> {
    let mut pos = SEGMENT_HEADER;
    let mut out = Vec::new();
    while pos < data.len() && data[pos..].iter().any(|&b| b != 0) {
        out.push(pos);
        let h = decode_record(&data[pos..]).unwrap();
        pos += RECORD_HEADER + h.len as usize;
    }
    out
}

/// Offset just after the last record (preallocated zeros may follow).
fn records_end(data: &[u8]) -> usize {
    let last = *record_offsets(data).last().unwrap();
    last + RECORD_HEADER + decode_record(&data[last..]).unwrap().len as usize
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

#[test]
fn truncation_at_every_byte_of_the_last_record_recovers_the_records_before() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let all = build(Arc::new(StdFs), &dir, 40);
    let segs = segments(&dir);
    assert!(segs.len() >= 3, "want several segments, got {}", segs.len());
    let last = segs.last().unwrap().clone();
    let data = std::fs::read(&last).unwrap();
    let start = *record_offsets(&data).last().unwrap();
    let end = records_end(&data);
    assert!(
        data.len() > end,
        "the active segment has preallocated zeros"
    );
    let mut tried = 0;
    for cut in start..end {
        // The file cut short at `cut`, and the same bytes missing inside the
        // preallocated zeros (a torn write into allocated space).
        let mut holed = data.clone();
        holed[cut..end].fill(0);
        for (what, bytes) in [("cut", &data[..cut]), ("zeroed", &holed[..])] {
            std::fs::write(&last, bytes).unwrap();
            let got =
                reopen(Arc::new(StdFs), &dir).unwrap_or_else(|e| panic!("{what} at {cut}: {e}"));
            assert!(
                got == all[..all.len() - 1],
                "{what} at {cut}: {} records",
                got.len()
            );
            // The torn tail is cut durably at the record boundary (a record not begun at
            // all inside the zeros is no damage: the preallocated space stays).
            let want = if what == "zeroed" && cut == start {
                data.len()
            } else {
                start
            };
            assert_eq!(
                std::fs::metadata(&last).unwrap().len(),
                want as u64,
                "{what} at {cut}"
            );
        }
        tried += 1;
    }
    // Intact, with its zeros: every record, nothing cut.
    std::fs::write(&last, &data).unwrap();
    assert!(reopen(Arc::new(StdFs), &dir).unwrap() == all);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), data.len() as u64);
    assert!(tried >= RECORD_HEADER);
    // A zero-filled tail (size extended, data never written) is a torn write too.
    let mut zeros = data[..start].to_vec();
    zeros.resize(data.len() + 100, 0);
    std::fs::write(&last, &zeros).unwrap();
    assert_eq!(reopen(Arc::new(StdFs), &dir).unwrap(), all[..all.len() - 1]);
}

#[test]
fn an_incomplete_batch_at_the_tail_is_cut_whole() {
    let fs = SimFs::new(1);
    let dir = Path::new("/w");
    let (mut wal, _) = Wal::open(Arc::new(fs.clone()), dir, opts(), |_, _| Ok(())).unwrap();
    wal.append([(1u8, &b"one"[..])]).unwrap();
    wal.append([(1u8, &b"two-a"[..]), (1, b"two-b"), (1, b"two-c")])
        .unwrap();
    wal.sync().unwrap();
    drop(wal);
    let seg = dir.join(persist::segment_name(1));
    let data = fs.read(&seg).unwrap();
    let offs = record_offsets(&data);
    // Cut anywhere inside the 3-record batch: only "one" survives.
    for cut in offs[1]..records_end(&data) {
        fs.overwrite(&seg, data[..cut].to_vec()).unwrap();
        let got = reopen(Arc::new(fs.clone()), dir).unwrap();
        assert!(
            got == vec![(1, b"one".to_vec())],
            "cut at {cut}: {} records",
            got.len()
        );
    }
}

#[test]
fn a_flipped_bit_before_the_last_record_is_refused_with_file_and_offset() {
    let fs = SimFs::new(2);
    let dir = Path::new("/w");
    build(Arc::new(fs.clone()), dir, 24);
    let mut segs: Vec<PathBuf> = fs
        .list(dir)
        .unwrap()
        .into_iter()
        .map(|n| dir.join(n))
        .collect();
    segs.sort();
    assert!(segs.len() >= 2);
    let mut refused = 0;
    for (si, seg) in segs.iter().enumerate() {
        let data = fs.read(seg).unwrap();
        let offs = record_offsets(&data);
        let is_last = si + 1 == segs.len();
        // Every byte before the last record of the log (segment headers included).
        let end = if is_last {
            *offs.last().unwrap()
        } else {
            data.len()
        };
        for byte in 0..end {
            let mut bad = data.clone();
            bad[byte] ^= 1 << (byte % 8);
            fs.overwrite(seg, bad).unwrap();
            let want_off = if byte < SEGMENT_HEADER {
                None // header damage: reported at offset 0 or 16
            } else {
                offs.iter().rev().find(|&&o| o <= byte).map(|&o| o as u64)
            };
            match reopen(Arc::new(fs.clone()), dir) {
                Err(Error::Corrupt { file, offset, what }) => {
                    assert_eq!(&file, seg, "byte {byte}: {what}");
                    match want_off {
                        Some(o) => {
                            assert_eq!(offset, o, "byte {byte} of {}: {what}", seg.display())
                        }
                        None => assert!(offset < SEGMENT_HEADER as u64, "byte {byte}: {what}"),
                    }
                    refused += 1;
                }
                other => panic!(
                    "{} byte {byte} flipped: {:?} (records)",
                    seg.display(),
                    other.map(|v| v.len())
                ),
            }
            fs.overwrite(seg, data.clone()).unwrap();
        }
    }
    assert!(refused > 500, "{refused}");
    // The message says where and what to do.
    let data = fs.read(&segs[0]).unwrap();
    let mut bad = data.clone();
    bad[SEGMENT_HEADER + 30] ^= 4;
    fs.overwrite(&segs[0], bad).unwrap();
    let msg = reopen(Arc::new(fs.clone()), dir).unwrap_err().to_string();
    assert!(
        msg.contains("0000000000000001.wal") && msg.contains("byte offset 32"),
        "{msg}"
    );
    assert!(msg.contains("membership change"), "{msg}");
}

#[test]
fn a_deleted_middle_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    build(Arc::new(StdFs), &dir, 40);
    let segs = segments(&dir);
    assert!(segs.len() >= 3);
    let victim = &segs[segs.len() / 2];
    std::fs::remove_file(victim).unwrap();
    let e = reopen(Arc::new(StdFs), &dir).unwrap_err();
    match &e {
        Error::Corrupt {
            file,
            offset: 0,
            what,
        } => {
            assert_eq!(file, &segs[segs.len() / 2 + 1]);
            assert!(what.contains("missing"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    // Refusing did not touch the files.
    assert_eq!(segments(&dir).len(), segs.len() - 1);
}

#[test]
fn truncate_and_release() {
    let fs = SimFs::new(3);
    let dir = Path::new("/w");
    let all = build(Arc::new(fs.clone()), dir, 40);
    let (mut wal, _) = Wal::open(Arc::new(fs.clone()), dir, opts(), |_, _| Ok(())).unwrap();
    let n0 = wal.segment_paths().len();
    // Truncate back into an earlier segment, at a batch boundary (batch sizes 1,2,3,...).
    let cut = 1 + 1 + 2 + 3 + 1 + 2 + 3 + 1; // seq starting batch 8
    wal.truncate(cut).unwrap();
    assert_eq!(wal.next_seq(), cut);
    assert!(wal.segment_paths().len() < n0);
    assert!(wal.truncate(cut - 2).is_err(), "inside a batch");
    wal.append([(5u8, &b"after"[..])]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    fs.power_loss(true);
    let got = reopen(Arc::new(fs.clone()), dir).unwrap();
    assert_eq!(got[..got.len() - 1], all[..cut as usize - 1]);
    assert_eq!(got.last().unwrap(), &(cut, b"after".to_vec()));
    // Release: whole segments before a seq go; the records after stay.
    let (mut wal, _) = Wal::open(Arc::new(fs.clone()), dir, opts(), |_, _| Ok(())).unwrap();
    for _ in 0..40 {
        wal.append([(1u8, &[9u8; 60][..])]).unwrap();
    }
    wal.sync().unwrap();
    let segs = wal.segment_paths();
    let released = wal.release_before(wal.next_seq() - 5).unwrap();
    assert!(released > 0 && released < segs.len());
    let first = wal.first_seq();
    drop(wal);
    fs.power_loss(true);
    let mut seen = Vec::new();
    let (wal, _) = Wal::open(Arc::new(fs.clone()), dir, opts(), |r, _| {
        seen.push(r.seq);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen.first(), Some(&first));
    assert_eq!(wal.next_seq(), *seen.last().unwrap() + 1);
}

#[test]
fn power_loss_keeps_every_synced_record() {
    for seed in 0..200 {
        let fs = SimFs::new(seed);
        let dir = Path::new("/w");
        let mut synced = 0u64;
        let mut written = 0u64;
        let mut x = seed;
        for _ in 0..3 {
            let (mut wal, _) = Wal::open(Arc::new(fs.clone()), dir, opts(), |r, _| {
                assert_eq!(r.payload[..], r.seq.to_le_bytes()[..], "seed {seed}");
                Ok(())
            })
            .unwrap();
            let n = wal.next_seq() - 1;
            assert!(
                n >= synced && n <= written,
                "seed {seed}: {n} not in [{synced}, {written}]"
            );
            written = n;
            for _ in 0..30 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = 1 + (x >> 60);
                let first = wal.next_seq();
                let p: Vec<[u8; 8]> = (first..first + k).map(|s| s.to_le_bytes()).collect();
                wal.append(p.iter().map(|b| (1u8, &b[..]))).unwrap();
                written = first + k - 1;
                if (x >> 33) % 3 == 0 {
                    wal.sync().unwrap();
                    synced = written;
                }
            }
            drop(wal);
            fs.power_loss(true);
        }
    }
}
