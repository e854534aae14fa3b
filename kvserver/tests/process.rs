//! The real `kvserver` binary, three processes on loopback: writes, reads, NO_KEY versus
//! an empty value, bad input refused before any proposal, a follower's WRONG_LEADER with
//! the leader's id, Status, start-up errors with exit code 2, SIGTERM → exit 0, and a
//! restart from the data directories that still holds every write.
//! (The Clerk's fault tests with kill -9 live in the `client` crate.)

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::kv::{
    DeleteRequest, ErrorCode, GetRequest, KvServiceClient, PutAppendRequest, Role, StatusRequest,
};

const T: Duration = Duration::from_secs(5);

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_ports(n: usize) -> Vec<SocketAddr> {
    kvserver::cli::free_loopback_ports(n).expect("free loopback ports")
}

fn spawn(id: usize, peers: &str, dir: &std::path::Path, extra: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_kvserver"))
            .args(["--id", &id.to_string(), "--peers", peers, "--tick-ms", "20"])
            .arg("--data-dir")
            .arg(dir.join(format!("n{id}")))
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn kvserver"),
    )
}

fn put(c: &KvServiceClient<rpc::Channel>, k: &[u8], v: &[u8], seq: u64) -> proto::kv::WriteReply {
    c.put(
        &PutAppendRequest {
            key: Bytes::copy_from_slice(k),
            value: Bytes::copy_from_slice(v),
            client_id: 77,
            seq,
        },
        T,
    )
    .expect("put call")
}

fn get(c: &KvServiceClient<rpc::Channel>, k: &[u8]) -> proto::kv::GetReply {
    c.get(
        &GetRequest {
            key: Bytes::copy_from_slice(k),
            ..Default::default()
        },
        T,
    )
    .expect("get call")
}

#[test]
fn three_processes_serve_the_kv_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addrs = free_ports(3);
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs: Vec<Proc> = (1..=3)
        .map(|id| spawn(id, &peers, dir.path(), &["--max-value-bytes", "1000"]))
        .collect();
    let rt = rpc::ClientRuntime::global();
    let clients: Vec<_> = addrs
        .iter()
        .map(|a| KvServiceClient::new(rt.channel(*a)))
        .collect();

    // A leader within 10 s (generous for a busy machine; the lab allows 5 s).
    let t0 = Instant::now();
    let leader = loop {
        assert!(t0.elapsed() < Duration::from_secs(20), "no leader elected");
        let l = clients.iter().position(|c| {
            c.status(&StatusRequest {}, Duration::from_millis(500))
                .is_ok_and(|s| s.role == Role::Leader as i32)
        });
        if let Some(l) = l {
            break l;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lc = &clients[leader];

    // Writes and reads; a new leader may need its no-op committed first: retry briefly.
    let t0 = Instant::now();
    loop {
        let r = put(lc, b"k", b"v1", 1);
        if r.err == ErrorCode::Ok as i32 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "first put: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        lc.append(
            &PutAppendRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"+v2"),
                client_id: 77,
                seq: 2,
            },
            T
        )
        .expect("append")
        .err,
        ErrorCode::Ok as i32
    );
    // A retry of seq 2 is a duplicate: it does not append again.
    let dup = lc
        .append(
            &PutAppendRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"+v2"),
                client_id: 77,
                seq: 2,
            },
            T,
        )
        .expect("append retry");
    assert_eq!(dup.err, ErrorCode::Ok as i32);
    let g = get(lc, b"k");
    assert_eq!((g.err, &g.value[..]), (ErrorCode::Ok as i32, &b"v1+v2"[..]));
    // NO_KEY is not an empty value.
    assert_eq!(put(lc, b"empty", b"", 3).err, ErrorCode::Ok as i32);
    let e = get(lc, b"empty");
    assert_eq!((e.err, e.value.len()), (ErrorCode::Ok as i32, 0));
    assert_eq!(get(lc, b"missing").err, ErrorCode::NoKey as i32);
    let d = lc
        .delete(
            &DeleteRequest {
                key: Bytes::from_static(b"k"),
                client_id: 77,
                seq: 4,
            },
            T,
        )
        .expect("delete");
    assert_eq!((d.err, d.existed), (ErrorCode::Ok as i32, true));
    assert_eq!(get(lc, b"k").err, ErrorCode::NoKey as i32);

    // Bad input: refused with a reason, nothing proposed (the applied index stays).
    let before = lc.status(&StatusRequest {}, T).expect("status");
    let bad = [
        put(lc, b"", b"x", 5),
        put(lc, &vec![b'k'; 64 * 1024 + 1], b"x", 5),
        put(lc, b"big", &[0; 1001], 5),
    ];
    for r in &bad {
        assert_eq!(r.err, ErrorCode::InvalidArgument as i32, "{r:?}");
        assert!(!r.error_text.is_empty());
    }
    assert!(bad[2].error_text.contains("1001"), "{}", bad[2].error_text);
    assert_eq!(get(lc, b"").err, ErrorCode::InvalidArgument as i32);
    let after = lc.status(&StatusRequest {}, T).expect("status");
    assert_eq!(
        before.last_log_index, after.last_log_index,
        "bad input was proposed"
    );

    // A follower refuses and names the leader.
    let f = (leader + 1) % 3;
    let t0 = Instant::now();
    loop {
        let r = put(&clients[f], b"x", b"y", 6);
        assert_eq!(r.err, ErrorCode::WrongLeader as i32, "{r:?}");
        if r.leader_hint == leader as u64 + 1 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "hint never named the leader"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        get(&clients[f], b"empty").err,
        ErrorCode::WrongLeader as i32
    );
    // The follower applies the writes when the leader's next message tells it the commit
    // index: it may lag on a busy machine, so wait for it (bounded) instead of asserting
    // at once.
    let t0 = Instant::now();
    let st = loop {
        let st = clients[f].status(&StatusRequest {}, T).expect("status");
        if st.applied_index >= 4 && st.key_count == 1 {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "follower never applied the writes: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.node_id, f as u64 + 1);
    assert_eq!(st.leader_id, leader as u64 + 1);
    assert!(st.uptime_ms > 0, "{st:?}");

    // A second process on the same data directory is refused, naming the holder.
    let dup = Command::new(env!("CARGO_BIN_EXE_kvserver"))
        .args(["--id", "1", "--peers", &format!("1={}", free_ports(1)[0])])
        .arg("--data-dir")
        .arg(dir.path().join("n1"))
        .output()
        .expect("run");
    let msg = String::from_utf8_lossy(&dup.stderr);
    assert_eq!(dup.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains(&format!("locked by process {}", procs[0].0.id())),
        "{msg}"
    );
    // The data directory of node 2 is refused for node 1.
    let other = Command::new(env!("CARGO_BIN_EXE_kvserver"))
        .args(["--id", "1", "--peers", &format!("1={}", free_ports(1)[0])])
        .arg("--data-dir")
        .arg(dir.path().join("n2"))
        .output()
        .expect("run");
    let msg = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains("locked") || msg.contains("another node"),
        "{msg}"
    );

    // SIGTERM: exit 0 and the port is free again.
    for p in &mut procs {
        // SAFETY: signals a child process we own.
        unsafe {
            libc::kill(p.0.id() as i32, libc::SIGTERM);
        }
    }
    for p in &mut procs {
        let st = p.0.wait().expect("wait");
        assert_eq!(st.code(), Some(0), "kvserver did not stop cleanly: {st}");
    }
    for a in &addrs {
        TcpListener::bind(a).unwrap_or_else(|e| panic!("port {a} not released: {e}"));
    }

    // Restarted from their data directories, the nodes still hold every write.
    procs.clear();
    let _procs: Vec<Proc> = (1..=3)
        .map(|id| spawn(id, &peers, dir.path(), &[]))
        .collect();
    let t0 = Instant::now();
    let (e, k) = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no answer after restart"
        );
        let found = clients.iter().find_map(|c| {
            let e = c
                .get(
                    &GetRequest {
                        key: Bytes::from_static(b"empty"),
                        ..Default::default()
                    },
                    Duration::from_millis(500),
                )
                .ok()
                .filter(|r| r.err == ErrorCode::Ok as i32)?;
            Some((e, get(c, b"k")))
        });
        if let Some(f) = found {
            break f;
        }
        if std::env::var_os("TEST_LOG").is_some() {
            for c in &clients {
                eprintln!(
                    "{:?} {:?}",
                    c.status(&StatusRequest {}, T),
                    c.get(
                        &GetRequest {
                            key: Bytes::from_static(b"empty"),
                            ..Default::default()
                        },
                        T
                    )
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(e.value.len(), 0);
    assert_eq!(k.err, ErrorCode::NoKey as i32, "the delete was lost: {k:?}");
}

/// Runs `kvserver` to its exit with RUST_LOG unset (what a user sees) and returns
/// (exit code, stderr).
fn run_to_exit(cwd: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let mut p = Proc(
        Command::new(env!("CARGO_BIN_EXE_kvserver"))
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kvserver"),
    );
    // A start that should have been refused serves instead: end it (the Drop guard kills
    // it) rather than wait forever, and report what it printed.
    let t0 = Instant::now();
    let code = loop {
        if let Some(st) = p.0.try_wait().expect("try_wait") {
            break st.code();
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = p.0.kill();
            let _ = p.0.wait();
            break Some(-1);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut p.0.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    (code, err)
}

/// Copies a data directory (files, and the files of its subdirectories).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn start_up_errors_are_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cwd = tmp.path();
    let addr = free_ports(1)[0];
    let own = format!("1={addr}");
    // A relative data directory whose parent does not exist yet is created (it used to
    // fail with "create directory: No such file or directory"); the node serves, and
    // SIGTERM stops it with exit 0.
    let mut node = Proc(
        Command::new(env!("CARGO_BIN_EXE_kvserver"))
            .current_dir(cwd)
            .args(["--id", "1", "--peers", &own, "--tick-ms", "20"])
            .args(["--data-dir", "fresh/n1"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn kvserver"),
    );
    let c = KvServiceClient::new(rpc::ClientRuntime::global().channel(addr));
    let t0 = Instant::now();
    let mut seq = 1;
    let req = |seq| PutAppendRequest {
        key: Bytes::from_static(b"k"),
        value: Bytes::from_static(b"v"),
        client_id: 78,
        seq,
    };
    // Not listening yet, no leader yet: both end within the deadline.
    while !c
        .put(&req(seq), Duration::from_millis(500))
        .is_ok_and(|r| r.err == ErrorCode::Ok as i32)
    {
        assert!(
            node.0.try_wait().expect("try_wait").is_none(),
            "kvserver with a relative --data-dir exited"
        );
        assert!(t0.elapsed() < Duration::from_secs(20), "no leader");
        seq += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signals a child process we own.
    unsafe {
        libc::kill(node.0.id() as i32, libc::SIGTERM);
    }
    assert_eq!(node.0.wait().expect("wait").code(), Some(0));
    let data = cwd.join("fresh/n1");

    std::fs::write(cwd.join("typo.toml"), "id = 1\ndata_dirr = \"d\"\n").expect("write");
    std::fs::write(cwd.join("a-file"), "not a directory").expect("write");
    let no_head = cwd.join("no-head");
    copy_dir(&data, &no_head);
    std::fs::remove_file(no_head.join("wal/HEAD")).expect("rm HEAD");
    let flipped = cwd.join("flipped");
    copy_dir(&data, &flipped);
    let seg = std::fs::read_dir(flipped.join("wal"))
        .expect("read wal")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "wal"))
        .expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read segment");
    bytes[40] ^= 0xff; // inside the first record's header
    std::fs::write(&seg, bytes).expect("write segment");
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_peers = format!("1={}", busy.local_addr().expect("addr"));
    let other = free_ports(1)[0];
    let dup_addr = format!("1={addr},2={addr}");
    let dup_id = format!("1={addr},1={other}");
    let lacks = format!("2={other}");

    let cases: [(&[&str], &str); 9] = [
        (
            &["--id", "1", "--peers", &lacks, "--data-dir", "x"],
            "not this node's id 1",
        ),
        (
            &["--id", "1", "--peers", &dup_id, "--data-dir", "x"],
            "names node 1 twice",
        ),
        (
            &["--id", "1", "--peers", &dup_addr, "--data-dir", "x"],
            "the same address",
        ),
        (&["--config", "typo.toml"], "unknown field `data_dirr`"),
        (
            &["--id", "1", "--peers", &busy_peers, "--data-dir", "x"],
            "is in use",
        ),
        (
            &["--id", "1", "--peers", &own, "--data-dir", "a-file"],
            "is not a directory",
        ),
        (
            &["--id", "1", "--peers", &own, "--data-dir", "no-head"],
            "HEAD",
        ),
        (
            &["--id", "1", "--peers", &own, "--data-dir", "flipped"],
            "is damaged at byte offset",
        ),
        (&["--id", "1", "--peers", &own], "missing --data-dir"),
    ];
    for (args, needle) in cases {
        let (code, err) = run_to_exit(cwd, args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("kvserver: error: ") && err.trim_end().lines().count() == 1,
            "{args:?}: not one error line: {err}"
        );
        assert!(err.contains(needle), "{args:?}: no {needle:?} in: {err}");
    }
    assert!(
        !cwd.join("x").exists(),
        "a refused start created its data directory"
    );
    // The damaged copies were refused, not repaired; the original still opens.
    assert!(!no_head.join("wal/HEAD").exists());
    drop(busy);
}
