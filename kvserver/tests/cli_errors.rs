//! What a new user meets at the `kvserver` command line: each start-up mistake exits 2
//! with one line that says what is wrong, and a data directory given as one relative name
//! (`--data-dir d1`) is created like any other.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use proto::kv::{KvServiceClient, StatusRequest};

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvserver"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .expect("run kvserver")
}

/// Exit code 2 and exactly one line on stderr containing `want`.
fn assert_one_line_error(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("kvserver: error: "), "{err}");
    assert!(err.contains(want), "wanted {want:?} in: {err}");
}

#[test]
fn start_up_mistakes_exit_2_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let peers = format!("1={}", free_port());
    // Heartbeat not below the election timeout: named by the flags' names, before the
    // data directory is touched.
    let out = run(
        d,
        &[
            "--id",
            "1",
            "--peers",
            &peers,
            "--data-dir",
            "hb",
            "--heartbeat-ticks",
            "20",
        ],
    );
    assert_one_line_error(
        &out,
        "--heartbeat-ticks 20 must be above 0 and below --election-ticks 10",
    );
    assert!(
        !d.join("hb").exists(),
        "a refused start created its data directory"
    );
    let out = run(
        d,
        &[
            "--id",
            "1",
            "--peers",
            &peers,
            "--data-dir",
            "e0",
            "--election-ticks",
            "0",
        ],
    );
    assert_one_line_error(&out, "--election-ticks 0");
    // Peers lacking this node's id.
    let out = run(d, &["--id", "3", "--peers", &peers, "--data-dir", "x"]);
    assert_one_line_error(&out, "not this node's id 3");
    // The data directory is a file.
    std::fs::write(d.join("file"), b"x").expect("write");
    let out = run(d, &["--id", "1", "--peers", &peers, "--data-dir", "file"]);
    assert_one_line_error(&out, "data directory file");
    // A damaged IDENTITY file.
    std::fs::create_dir(d.join("bad")).expect("mkdir");
    std::fs::write(d.join("bad/IDENTITY"), b"garbage\n").expect("write");
    let out = run(d, &["--id", "1", "--peers", &peers, "--data-dir", "bad"]);
    assert_one_line_error(&out, "IDENTITY is damaged");
    // The port is in use.
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = format!("1={}", held.local_addr().expect("addr"));
    let out = run(d, &["--id", "1", "--peers", &busy, "--data-dir", "p"]);
    assert_one_line_error(&out, "is in use");
}

#[test]
fn a_one_component_relative_data_dir_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvserver"))
        .args([
            "--id",
            "1",
            "--peers",
            &format!("1={addr}"),
            "--data-dir",
            "d1",
        ])
        .args(["--tick-ms", "20"])
        .current_dir(dir.path())
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kvserver");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(&mut child);
    let client = KvServiceClient::new(rpc::ClientRuntime::global().channel(addr));
    let t0 = Instant::now();
    loop {
        if let Some(st) = guard.0.try_wait().expect("try_wait") {
            let mut err = String::new();
            if let Some(mut e) = guard.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("kvserver --data-dir d1 exited ({st}): {err}");
        }
        if client
            .status(&StatusRequest {}, Duration::from_millis(500))
            .is_ok()
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "kvserver did not answer Status within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20)); // a bounded readiness poll
    }
    assert!(dir.path().join("d1/IDENTITY").is_file());
    // SAFETY: signals a child process we own.
    unsafe {
        libc::kill(guard.0.id() as i32, libc::SIGTERM);
    }
    let st = guard.0.wait().expect("wait");
    assert_eq!(st.code(), Some(0), "SIGTERM: {st}");
}
