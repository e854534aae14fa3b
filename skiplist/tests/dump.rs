//! Dump/load: round trips, the bytes of the format, and clean refusal of every truncation
//! and of corrupted or foreign input.

use proptest::prelude::*;
use skiplist::{Field, LoadError, SkipMap};

fn dump<K: Ord + skiplist::Codec, V: skiplist::Codec>(m: &SkipMap<K, V>) -> Vec<u8> {
    let mut out = Vec::new();
    m.dump(&mut out).expect("writing to a Vec cannot fail");
    out
}

fn sample() -> SkipMap<String, Vec<u8>> {
    (0..40u32)
        .map(|i| {
            (
                format!("key-{:03}", i * 7 % 40),
                vec![i as u8; (i % 5) as usize],
            )
        })
        .collect()
}

#[test]
fn round_trip_keeps_keys_and_values() {
    let m = sample();
    let back: SkipMap<String, Vec<u8>> = SkipMap::load(dump(&m).as_slice()).expect("load");
    assert_eq!(back, m);
    // Values differ per key: a loader that restored keys as values would fail here.
    assert_eq!(back.get("key-001"), Some(&vec![23u8; 3]));

    let ints: SkipMap<u64, i32> = (0..1000u64).map(|i| (i * 31 % 1000, -(i as i32))).collect();
    assert_eq!(
        SkipMap::<u64, i32>::load(dump(&ints).as_slice()).expect("load"),
        ints
    );

    let b: SkipMap<bytes::Bytes, u128> = [
        (bytes::Bytes::from_static(b"x"), u128::MAX),
        (bytes::Bytes::new(), 0),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        SkipMap::<bytes::Bytes, u128>::load(dump(&b).as_slice()).expect("load"),
        b
    );

    let empty: SkipMap<Vec<u8>, Vec<u8>> = SkipMap::new();
    assert_eq!(
        SkipMap::<Vec<u8>, Vec<u8>>::load(dump(&empty).as_slice()).expect("load"),
        empty
    );
}

#[test]
fn loaded_map_is_fully_usable() {
    let m: SkipMap<u32, u32> = (0..5000).map(|i| (i * 2, i)).collect();
    let mut back: SkipMap<u32, u32> = SkipMap::load(dump(&m).as_slice()).expect("load");
    for i in 0..5000 {
        assert_eq!(back.insert(i * 2 + 1, i), None);
        assert_eq!(back.remove(&(i * 2)), Some(i));
    }
    assert_eq!(back.len(), 5000);
    assert!(
        back.iter()
            .map(|(k, _)| *k)
            .eq((0..5000).map(|i| i * 2 + 1))
    );
}

#[test]
fn bytes_are_as_documented() {
    let m: SkipMap<u16, String> = [(0x0102, "hi".to_string())].into_iter().collect();
    let d = dump(&m);
    let mut want = Vec::new();
    want.extend_from_slice(b"RKVSKIPL");
    want.extend_from_slice(&1u32.to_le_bytes());
    want.extend_from_slice(&1u64.to_le_bytes());
    want.extend_from_slice(&2u32.to_le_bytes());
    want.extend_from_slice(&[0x02, 0x01]);
    want.extend_from_slice(&2u32.to_le_bytes());
    want.extend_from_slice(b"hi");
    let crc = crc32fast::hash(&want);
    want.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(d, want);
}

#[test]
fn load_reads_exactly_the_dump() {
    let m: SkipMap<u8, u8> = [(1, 2)].into_iter().collect();
    let mut stream = dump(&m);
    stream.extend_from_slice(b"rest of the stream");
    let mut r = stream.as_slice();
    assert_eq!(SkipMap::<u8, u8>::load(&mut r).expect("load"), m);
    assert_eq!(r, b"rest of the stream");
}

#[test]
fn every_truncation_is_refused_with_its_offset() {
    let d = dump(&sample());
    for len in 0..d.len() {
        match SkipMap::<String, Vec<u8>>::load(&d[..len]) {
            Err(LoadError::Truncated { offset, .. }) => {
                assert_eq!(offset, len as u64, "cut at {len}")
            }
            other => panic!("cut at {len}: expected Truncated, got {other:?}"),
        }
    }
}

#[test]
fn every_single_bit_flip_is_refused() {
    let d = dump(&sample());
    for byte in 0..d.len() {
        for bit in 0..8 {
            let mut bad = d.clone();
            bad[byte] ^= 1 << bit;
            let r = SkipMap::<String, Vec<u8>>::load(bad.as_slice());
            assert!(r.is_err(), "flip of bit {bit} of byte {byte} was accepted");
        }
    }
}

#[test]
fn errors_name_the_problem_and_offset() {
    let m: SkipMap<u32, u32> = (0..3).map(|i| (i, i)).collect();
    let d = dump(&m);

    let foreign = b"GIF89a....................".to_vec();
    let e = SkipMap::<u32, u32>::load(foreign.as_slice()).unwrap_err();
    assert!(matches!(e, LoadError::BadMagic { .. }), "{e}");
    assert!(e.to_string().contains("not a skiplist dump"), "{e}");

    let mut v = d.clone();
    v[8] = 9;
    let e = SkipMap::<u32, u32>::load(v.as_slice()).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::UnsupportedVersion {
                offset: 8,
                version: 9
            }
        ),
        "{e}"
    );

    let mut v = d.clone();
    let last = v.len() - 1;
    v[last] ^= 0xff;
    let e = SkipMap::<u32, u32>::load(v.as_slice()).unwrap_err();
    assert!(matches!(e, LoadError::ChecksumMismatch { .. }), "{e}");
    assert_eq!(e.offset(), (d.len() - 4) as u64);

    // A u32 key decoded from 8 bytes: entry 0's key starts at 24.
    let wide: SkipMap<u64, u32> = [(1, 1)].into_iter().collect();
    let e = SkipMap::<u32, u32>::load(dump(&wide).as_slice()).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::Decode {
                offset: 24,
                field: Field::Key(0),
                ..
            }
        ),
        "{e}"
    );
    assert!(std::error::Error::source(&e).is_some());

    // Keys out of order (hand-built, with a valid checksum).
    let mut v = Vec::new();
    v.extend_from_slice(b"RKVSKIPL");
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&2u64.to_le_bytes());
    for k in [5u8, 5] {
        v.extend_from_slice(&1u32.to_le_bytes());
        v.push(k);
        v.extend_from_slice(&1u32.to_le_bytes());
        v.push(0);
    }
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    let e = SkipMap::<u8, u8>::load(v.as_slice()).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::OutOfOrder {
                offset: 30,
                entry: 1
            }
        ),
        "{e}"
    );

    // Invalid UTF-8 in a String value.
    let raw: SkipMap<u8, Vec<u8>> = [(1, vec![0xff, 0xfe])].into_iter().collect();
    let e = SkipMap::<u8, String>::load(dump(&raw).as_slice()).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::Decode {
                field: Field::Value(0),
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn io_errors_keep_their_source() {
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(b'R');
            self.0 -= n;
            Ok(n)
        }
    }
    let e = SkipMap::<u8, u8>::load(Failing(1)).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::Io {
                offset: 1,
                field: Field::Magic,
                ..
            }
        ),
        "{e}"
    );
    let src = std::error::Error::source(&e).expect("source kept");
    assert_eq!(src.to_string(), "disk on fire");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_round_trip(entries in proptest::collection::vec((any::<Vec<u8>>(), any::<u64>()), 0..200)) {
        let m: SkipMap<Vec<u8>, u64> = entries.into_iter().collect();
        let back = SkipMap::<Vec<u8>, u64>::load(dump(&m).as_slice());
        prop_assert!(back.is_ok());
        prop_assert_eq!(back.unwrap(), m);
    }

    #[test]
    fn prop_corruption_is_refused(
        entries in proptest::collection::vec((any::<u32>(), any::<String>()), 1..50),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let m: SkipMap<u32, String> = entries.into_iter().collect();
        let d = dump(&m);
        let mut bad = d.clone();
        for (at, bit) in &flips {
            let i = at.index(bad.len());
            bad[i] ^= 1 << bit;
        }
        if bad != d {
            prop_assert!(SkipMap::<u32, String>::load(bad.as_slice()).is_err());
        }
        let len = cut.index(d.len());
        let truncated = SkipMap::<u32, String>::load(&d[..len]);
        prop_assert!(
            matches!(truncated, Err(LoadError::Truncated { offset, .. }) if offset == len as u64),
            "truncated at {}: {:?}", len, truncated
        );
    }
}
