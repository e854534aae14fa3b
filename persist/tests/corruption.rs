//! Damaged WAL files: every truncation of the last record recovers to the record before,
//! every flipped bit before the last record is refused with its file and offset, a missing
//! middle segment is refused, and a refused directory is left untouched.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use persist::record::{RECORD_HEADER, SEGMENT_HEADER, decode_record};
use persist::{Error, Fs, Loss, SimFs, StdFs, Wal, WalOptions};

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
        .filter(|n| n.ends_with(".wal"))
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
fn a_deleted_newest_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    build(Arc::new(StdFs), &dir, 40);
    let segs = segments(&dir);
    let newest = segs.last().unwrap();
    std::fs::remove_file(newest).unwrap();
    match reopen(Arc::new(StdFs), &dir).unwrap_err() {
        Error::Corrupt { file, what, .. } => {
            assert_eq!(&file, newest);
            assert!(what.contains("missing"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    // HEAD itself damaged: refused, naming it.
    std::fs::write(dir.join(persist::wal::HEAD_FILE), "not hex").unwrap();
    let msg = reopen(Arc::new(StdFs), &dir).unwrap_err().to_string();
    assert!(msg.contains("HEAD"), "{msg}");
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

/// Appends and syncs at random, loses power (sometimes cutting it in the middle of an
/// append, a sync or a segment roll), reopens: every synced record is there, nothing that
/// was never written is, and every batch is whole.
#[test]
fn power_loss_keeps_every_synced_record() {
    let mut cut_rounds = 0;
    for seed in 0..300 {
        let fs = SimFs::new(seed);
        let dir = Path::new("/w");
        let mut synced = 0u64;
        let mut written = 0u64;
        let mut batch_ends = std::collections::BTreeSet::from([0u64]);
        let mut x = seed;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        for _ in 0..4 {
            let (mut wal, _) = Wal::open(Arc::new(fs.clone()), dir, opts(), |r, _| {
                assert_eq!(r.payload[..], r.seq.to_le_bytes()[..], "seed {seed}");
                Ok(())
            })
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let n = wal.next_seq() - 1;
            assert!(
                n >= synced && n <= written,
                "seed {seed}: {n} not in [{synced}, {written}]"
            );
            assert!(
                batch_ends.contains(&n),
                "seed {seed}: reopened inside a batch at {n}"
            );
            written = n;
            batch_ends.retain(|&e| e <= n);
            if next() % 2 == 0 {
                fs.cut_power_after(next() % 60);
                cut_rounds += 1;
            }
            for _ in 0..30 {
                let k = 1 + next() % 5;
                let first = wal.next_seq();
                let p: Vec<[u8; 8]> = (first..first + k).map(|s| s.to_le_bytes()).collect();
                if wal.append(p.iter().map(|b| (1u8, &b[..]))).is_err() {
                    break; // the power went out
                }
                written = first + k - 1;
                batch_ends.insert(written);
                if next() % 3 == 0 {
                    if wal.sync().is_err() {
                        break;
                    }
                    synced = written;
                }
            }
            drop(wal);
            fs.power_loss(true);
        }
    }
    assert!(cut_rounds > 100);
}

/// A device may persist the sectors of an unsynced write in any order: after a power loss
/// the last batch can have holes with intact records after them. When every sync covers
/// one batch (as `raft::DiskStorage` does), recovery must cut exactly that batch and keep
/// every synced one.
#[test]
fn sector_loss_in_the_last_batch_cuts_that_batch_only() {
    let mut outcomes = [0u32; 2]; // [last batch cut, last batch whole]
    for seed in 0..400 {
        let fs = SimFs::new(seed);
        let dir = Path::new("/w");
        let mut synced = 0u64;
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3 {
            let (mut wal, _) = Wal::open(Arc::new(fs.clone()), dir, opts(), |r, _| {
                assert_eq!(r.payload[..8], r.seq.to_le_bytes()[..], "seed {seed}");
                Ok(())
            })
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let n = wal.next_seq() - 1;
            assert!(
                n >= synced,
                "seed {seed}: lost synced records: {n} < {synced}"
            );
            if n > synced {
                outcomes[1] += 1;
            }
            synced = n;
            for i in 0..20 {
                let k = 1 + next() % 12;
                let first = wal.next_seq();
                // 8-byte seq then filler: records of 40-200 bytes, so that a batch spans
                // several sectors.
                let p: Vec<Vec<u8>> = (first..first + k)
                    .map(|s| {
                        let mut v = s.to_le_bytes().to_vec();
                        v.resize(40 + (s as usize * 13) % 160, 0xA5);
                        v
                    })
                    .collect();
                wal.append(p.iter().map(|b| (1u8, b.as_slice()))).unwrap();
                if i < 19 {
                    wal.sync().unwrap();
                    synced = first + k - 1;
                }
            }
            drop(wal);
            fs.power_loss_with(Loss::Sectors);
            outcomes[0] += 1;
        }
    }
    outcomes[0] -= outcomes[1];
    assert!(outcomes[0] > 100 && outcomes[1] > 10, "{outcomes:?}");
}

#[test]
fn a_deleted_head_is_refused_and_the_message_says_how_to_restore_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    build(Arc::new(StdFs), &dir, 40);
    let head = dir.join(persist::wal::HEAD_FILE);
    let newest = std::fs::read_to_string(&head).unwrap();
    std::fs::remove_file(&head).unwrap();
    match reopen(Arc::new(StdFs), &dir).unwrap_err() {
        Error::Corrupt { file, what, .. } => {
            assert_eq!(file, head);
            assert!(what.contains("deleted"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    // Refusing did not recreate it; writing it back as the message says opens the log.
    assert!(!head.exists());
    std::fs::write(&head, newest).unwrap();
    reopen(Arc::new(StdFs), &dir).expect("reopen with HEAD restored");
}

#[test]
fn a_crash_before_the_first_head_is_not_damage() {
    // The one state a crash leaves without HEAD: a first segment with no record yet.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    drop(Wal::open(Arc::new(StdFs), &dir, opts(), |_, _| Ok(())).unwrap());
    std::fs::remove_file(dir.join(persist::wal::HEAD_FILE)).unwrap();
    reopen(Arc::new(StdFs), &dir).expect("an empty log without HEAD opens");
    assert!(
        dir.join(persist::wal::HEAD_FILE).exists(),
        "open rewrites HEAD"
    );
}
