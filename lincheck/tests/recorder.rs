//! The library API a KV test uses: a Recorder handed to client threads, then
//! `assert_kv_linearizable` / `check_kv_history`, which keep the evidence on failure.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lincheck::format::parse_raftkv;
use lincheck::{KvInput, KvOutput, Recorder, Verdict, assert_kv_linearizable, check_kv_history};

/// A store that applies each operation under one lock: linearizable by construction, with
/// real thread interleavings (the recorder's call and return times are taken outside the lock).
fn apply(store: &Mutex<HashMap<String, String>>, input: &KvInput) -> KvOutput {
    let mut m = store.lock().expect("no panics while holding the lock");
    match input {
        KvInput::Get { key } => KvOutput::Value(m.get(key).cloned()),
        KvInput::Put { key, value } => {
            m.insert(key.clone(), value.clone());
            KvOutput::Done
        }
        KvInput::Append { key, value } => {
            m.entry(key.clone()).or_default().push_str(value);
            KvOutput::Done
        }
        KvInput::Delete { key } => {
            m.remove(key);
            KvOutput::Done
        }
    }
}

#[test]
fn threads_recording_a_locked_store_are_linearizable() {
    let rec = Recorder::new();
    let store = Arc::new(Mutex::new(HashMap::new()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = rec.client();
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                for n in 0..150 {
                    let key = format!("k{}", rng.u32(0..3));
                    let input = match rng.u32(0..4) {
                        0 => KvInput::Get { key },
                        1 => KvInput::Put {
                            key,
                            value: format!("{t}.{n};"),
                        },
                        2 => KvInput::Append {
                            key,
                            value: format!("{t}.{n};"),
                        },
                        _ => KvInput::Delete { key },
                    };
                    let pending = c.call(input.clone());
                    let out = apply(&store, &input);
                    if n % 50 == 49 {
                        pending.unknown(); // as if the answer was lost
                    } else {
                        pending.ok(out);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let h = rec.history();
    assert_eq!(h.len(), 8 * 150);
    assert_eq!(h.iter().filter(|o| o.output.is_none()).count(), 8 * 3);
    assert_kv_linearizable("locked-store", &h, Duration::from_secs(120));
}

#[test]
fn a_stale_read_is_caught_and_the_evidence_kept() {
    let rec = Recorder::new();
    let a = rec.client();
    let b = rec.client();
    a.call(KvInput::Put {
        key: "x".into(),
        value: "1".into(),
    })
    .ok(KvOutput::Done);
    // b's get starts after a's put returned, yet answers from an old copy: NoKey.
    b.call(KvInput::Get { key: "x".into() })
        .ok(KvOutput::Value(None));
    // A call dropped without an answer is recorded as unknown.
    drop(a.call(KvInput::Append {
        key: "x".into(),
        value: "2".into(),
    }));
    let h = rec.history();
    assert_eq!(h.len(), 3);
    assert!(h[2].output.is_none());

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lincheck-recorder");
    let r = check_kv_history("stale read", &h, Duration::from_secs(60), Some(&dir));
    assert_eq!(r.report.verdict, Verdict::NotLinearizable);
    let a = r.artifacts.expect("evidence written");
    assert!(a.history.starts_with(&dir) && a.html.starts_with(&dir));
    let text = std::fs::read_to_string(&a.history).expect("history file");
    assert_eq!(parse_raftkv(&text).expect("it parses back"), h);
    let page = std::fs::read_to_string(&a.html).expect("html file");
    assert!(
        page.contains("not linearizable") && page.contains("get(&quot;x&quot;) → NoKey"),
        "the page names the bad read"
    );

    let caught = std::panic::catch_unwind(|| {
        assert_kv_linearizable("stale read", &h, Duration::from_secs(60))
    });
    let msg = caught.expect_err("assert_kv_linearizable panics on a violation");
    let msg = msg.downcast_ref::<String>().expect("a formatted message");
    assert!(
        msg.contains("not linearizable") && msg.contains(".html"),
        "{msg}"
    );
}
