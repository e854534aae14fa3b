//! The Clerk against a fake cluster over the real `rpc` crate: leader hints and memory,
//! retries that keep their client id and sequence number, nodes that are down or never
//! answer, the overall deadline, sharing one Clerk across threads, the non-blocking form.
//! Waits are bounded only by the Clerk's own deadlines; nothing asserts on timing.

mod fake;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use client::{Clerk, Error};
use fake::Fake;

fn clerk(f: &Fake) -> Clerk {
    Clerk::builder(f.endpoints.clone())
        .deadline(Duration::from_secs(20))
        .attempt_timeout(Duration::from_millis(300))
        .backoff_min(Duration::from_millis(5))
        .backoff_max(Duration::from_millis(50))
        .build()
}

#[test]
fn clerk_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Clerk>();
}

#[test]
fn not_found_is_none_and_empty_is_some_empty() {
    let f = Fake::start(3);
    let kv = clerk(&f);
    assert_eq!(kv.get("missing").unwrap(), None);
    kv.put("empty", "").unwrap();
    assert_eq!(kv.get("empty").unwrap().as_deref(), Some(&b""[..]));
    kv.put("k", "a").unwrap();
    kv.append("k", "b").unwrap();
    kv.append("new", "x").unwrap();
    assert_eq!(kv.get_string("k").unwrap().as_deref(), Some("ab"));
    assert_eq!(kv.get_string("new").unwrap().as_deref(), Some("x"));
    assert!(kv.delete("k").unwrap(), "k existed");
    assert!(!kv.delete("k").unwrap(), "k is gone");
    assert_eq!(kv.get("k").unwrap(), None);
}

#[test]
fn follows_the_hint_then_remembers_the_leader() {
    let f = Fake::start(3);
    f.st().leader = 3;
    let kv = clerk(&f);
    kv.put("a", "1").unwrap();
    // node 1 (first try) hinted node 3: node 2 was never asked
    assert_eq!(f.per_node(), [1, 0, 1]);
    assert_eq!(kv.leader().id, 3);
    for _ in 0..5 {
        kv.get("a").unwrap();
    }
    assert_eq!(
        f.per_node(),
        [1, 0, 6],
        "later ops go straight to the leader"
    );
}

#[test]
fn a_dead_node_and_a_hintless_follower_are_skipped() {
    let mut f = Fake::start(3);
    f.kill(1);
    {
        let mut st = f.st();
        st.leader = 3;
        st.hint = Some(0); // followers know no leader
    }
    let kv = clerk(&f);
    kv.put("a", "1").unwrap();
    assert_eq!(f.per_node(), [0, 1, 1], "n1 refused, n2 no hint, n3 leads");
    assert_eq!(kv.get_string("a").unwrap().as_deref(), Some("1"));
}

#[test]
fn a_silent_leader_is_left_after_the_attempt_timeout() {
    let f = Fake::start(3);
    f.st().silent.insert(1); // like SIGSTOP: connection open, no answer
    f.st().leader = 2;
    let kv = clerk(&f);
    kv.append("k", "x").unwrap();
    assert_eq!(kv.get_string("k").unwrap().as_deref(), Some("x"));
    assert_eq!(kv.leader().id, 2);
}

#[test]
fn a_retried_write_keeps_its_client_id_and_seq_and_applies_once() {
    let f = Fake::start(3);
    f.st().lose_replies = 2; // applied, reply lost, twice
    let kv = clerk(&f);
    kv.append("k", "x").unwrap();
    kv.append("k", "y").unwrap();
    assert_eq!(kv.get_string("k").unwrap().as_deref(), Some("xy"));
    let st = f.st();
    let all: Vec<_> = st.seen.iter().filter(|s| s.op == "append").collect();
    let writes: Vec<_> = all.iter().filter(|s| s.node == 1).collect();
    assert_eq!(
        writes.len(),
        4,
        "x reached the leader three times (two replies lost), y once"
    );
    assert!(
        all[..all.len() - 1]
            .iter()
            .all(|w| (w.client_id, w.seq) == (writes[0].client_id, writes[0].seq)),
        "retries reuse the pair: {writes:?}"
    );
    assert_eq!(
        writes[3].client_id, writes[0].client_id,
        "one thread: one id"
    );
    assert_eq!(
        writes[3].seq,
        writes[0].seq + 1,
        "the next write has the next seq"
    );
    assert_ne!(writes[0].client_id, 0);
}

#[test]
fn two_clerks_have_different_client_ids() {
    let f = Fake::start(1);
    clerk(&f).put("a", "1").unwrap();
    clerk(&f).put("a", "2").unwrap();
    let st = f.st();
    assert_ne!(st.seen[0].client_id, st.seen[1].client_id);
    assert_eq!(st.data.get(&b"a"[..]).map(|v| &v[..]), Some(&b"2"[..]));
}

#[test]
fn no_leader_ends_in_deadline_exceeded_naming_every_node() {
    let mut f = Fake::start(3);
    f.kill(2);
    f.st().leader = 0; // n1 and n3 answer WRONG_LEADER without a hint
    let kv = Clerk::builder(f.endpoints.clone())
        .deadline(Duration::from_millis(400))
        .attempt_timeout(Duration::from_millis(100))
        .build();
    let t0 = Instant::now();
    let e = kv.append("k", "v").unwrap_err();
    let elapsed = t0.elapsed();
    let Error::DeadlineExceeded {
        op,
        attempts,
        ref nodes,
        ..
    } = e
    else {
        panic!("expected DeadlineExceeded, got {e}");
    };
    assert_eq!(op, "append");
    assert!(attempts >= 3, "every node tried at least once: {e}");
    assert!(nodes.iter().all(|n| n.tries >= 1), "{e}");
    let text = e.to_string();
    assert!(text.contains("not the leader (no leader known)"), "{text}");
    assert!(text.contains(&f.addr(2).to_string()), "{text}");
    assert!(text.contains("may or may not have been applied"), "{text}");
    // Liveness only, with a wide margin: it gave up rather than retrying forever.
    assert!(
        elapsed < Duration::from_secs(30),
        "gave up after {elapsed:?}"
    );
    // It backed off between rounds instead of spinning: far fewer than one attempt per
    // millisecond (a spinning Clerk makes thousands in 400 ms).
    assert!(
        attempts < 200,
        "{attempts} attempts in {elapsed:?}: not backing off"
    );
}

#[test]
fn bad_input_is_refused_without_retry() {
    let f = Fake::start(3);
    let kv = clerk(&f);
    assert!(matches!(kv.put("", "v"), Err(Error::InvalidArgument(_))));
    let long = vec![b'k'; client::MAX_KEY_LEN + 1];
    assert!(matches!(kv.get(&long), Err(Error::InvalidArgument(_))));
    assert!(f.st().seen.is_empty(), "nothing sent for a bad key");
    f.st().max_value = 10;
    let e = kv.put("k", [0u8; 11]).unwrap_err();
    match &e {
        Error::Rejected { code, message, .. } => {
            assert_eq!(code, "INVALID_ARGUMENT");
            assert!(message.contains("value over"), "{e}");
        }
        other => panic!("expected Rejected, got {other}"),
    }
    assert_eq!(f.st().seen.len(), 1, "a refused write is not retried");
}

#[test]
fn threads_sharing_a_clerk_never_overlap_writes_of_one_client_id() {
    let f = Fake::start(3);
    f.st().hold = Duration::from_millis(1);
    let kv = clerk(&f);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let kv = kv.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    kv.append("shared", format!("<{t}.{i}>")).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = f.st();
    assert_eq!(
        st.overlaps, 0,
        "two writes of one client id were in flight at once"
    );
    assert_eq!(
        st.stale, 0,
        "a write arrived behind a later one of its client id"
    );
    let v = String::from_utf8(st.data[&b"shared"[..]].to_vec()).unwrap();
    for t in 0..8 {
        for i in 0..40 {
            assert_eq!(v.matches(&format!("<{t}.{i}>")).count(), 1, "{t}.{i}");
        }
    }
    let ids: std::collections::HashSet<u64> = st.seen.iter().map(|s| s.client_id).collect();
    assert!(ids.len() <= 8, "sessions are reused: {} ids", ids.len());
}

#[test]
fn many_non_blocking_ops_in_flight_from_one_thread() {
    let f = Fake::start(3);
    f.st().leader = 2;
    f.st().lose_replies = 5;
    let kv = clerk(&f);
    let (tx, rx) = mpsc::channel();
    let n = 300;
    for i in 0..n {
        let tx = tx.clone();
        kv.append_async("log", format!("<{i}>"), move |r| {
            let _ = tx.send(r.map(|()| i));
        });
    }
    let mut done = vec![false; n];
    for _ in 0..n {
        let i = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("every callback runs (bounded by the 20 s deadline)")
            .expect("append succeeds");
        assert!(!done[i], "callback {i} ran twice");
        done[i] = true;
    }
    let v = kv.get_string("log").unwrap().unwrap();
    for i in 0..n {
        assert_eq!(
            v.matches(&format!("<{i}>")).count(),
            1,
            "append {i} applied once"
        );
    }
    let st = f.st();
    assert_eq!(st.overlaps, 0);
    assert_eq!(st.stale, 0);
    drop(st);
    // A get in flight and a callback with an error.
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    kv.get_async("nothing", move |r| tx2.send(format!("{r:?}")).unwrap());
    kv.put_async("", "v", move |r| tx.send(format!("{r:?}")).unwrap());
    let mut got = [rx.recv().unwrap(), rx.recv().unwrap()];
    got.sort();
    assert_eq!(got[0], "Err(InvalidArgument(\"the key is empty\"))");
    assert_eq!(got[1], "Ok(None)");
}

#[test]
fn non_blocking_ops_back_off_and_give_up_at_the_deadline() {
    let mut f = Fake::start(2);
    f.kill(1);
    f.kill(2);
    let kv = Clerk::builder(f.endpoints.clone())
        .deadline(Duration::from_millis(300))
        .build();
    let (tx, rx) = mpsc::channel();
    for _ in 0..10 {
        let tx = tx.clone();
        kv.put_async("k", "v", move |r| tx.send(r).unwrap());
    }
    for _ in 0..10 {
        let r = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("callback runs");
        assert!(matches!(r, Err(Error::DeadlineExceeded { .. })), "{r:?}");
    }
}

/// After a membership change the leader may be a node the Clerk was never given: a
/// follower's hint names it, the Clerk asks that follower's member list where it is, and
/// goes there (blocking and non-blocking forms). A hint naming a node no member list
/// knows ends in `DeadlineExceeded` that names it and says to add it.
#[test]
fn a_leader_missing_from_the_endpoints_is_learned_from_the_member_list() {
    let f = Fake::start(3);
    f.st().leader = 3;
    let only_two: Vec<_> = f.endpoints[..2].to_vec();
    let kv = Clerk::builder(only_two.clone())
        .deadline(Duration::from_secs(20))
        .attempt_timeout(Duration::from_millis(300))
        .build();
    kv.put("k", "v").expect("put through the learned leader");
    assert_eq!(kv.get_string("k").unwrap().as_deref(), Some("v"));
    assert_eq!(kv.endpoints().len(), 3, "{:?}", kv.endpoints());
    assert_eq!(kv.endpoints()[2], f.endpoints[2]);
    assert_eq!(kv.leader(), f.endpoints[2]);
    let before = f.per_node()[2];
    assert!(before >= 2, "node 3 served the put and the get");

    // The non-blocking form learns too (a fresh Clerk).
    let kv2 = Clerk::builder(only_two.clone())
        .deadline(Duration::from_secs(20))
        .attempt_timeout(Duration::from_millis(300))
        .build();
    let (tx, rx) = mpsc::channel();
    kv2.put_async("k2", "v2", move |r| {
        let _ = tx.send(r);
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("a callback")
        .expect("async put through the learned leader");
    assert_eq!(kv2.endpoints().len(), 3);

    // A leader no member list knows: a clear error, not a hang.
    f.st().leader = 9;
    let kv3 = Clerk::builder(only_two)
        .deadline(Duration::from_secs(3))
        .attempt_timeout(Duration::from_millis(200))
        .build();
    let e = kv3.put("k", "w").expect_err("no node 9 anywhere");
    assert!(
        matches!(
            e,
            Error::DeadlineExceeded {
                unknown_leader: Some(9),
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("Node 9, which the nodes name as the leader, is not among the endpoints"),
        "{text}"
    );
}
