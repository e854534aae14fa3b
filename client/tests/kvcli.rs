//! `kvcli` as a process against a fake cluster: outputs, exit codes (0 ok, 1 not found,
//! 2 error), where the endpoints come from, and messages that name the nodes tried.

mod fake;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use fake::Fake;

fn kvcli(dir: &Path, endpoints: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kvcli"));
    c.current_dir(dir).env_remove("RAFTKV_ENDPOINTS");
    if let Some(e) = endpoints {
        c.args(["--endpoints", e]);
    }
    c.args(args).output().expect("run kvcli")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn expect(o: &Output, code: i32, stdout: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout), stdout, "stderr: {}", text(&o.stderr));
}

#[test]
fn get_put_append_delete_with_exit_codes() {
    let f = Fake::start(3);
    f.st().leader = 2;
    let dir = tempfile::tempdir().unwrap();
    let eps = f.endpoint_list();
    let e = Some(eps.as_str());
    let o = kvcli(dir.path(), e, &["get", "k"]);
    expect(&o, 1, "");
    assert!(
        text(&o.stderr).contains("key \"k\" not found"),
        "{}",
        text(&o.stderr)
    );
    expect(&kvcli(dir.path(), e, &["put", "k", "hello"]), 0, "OK\n");
    expect(
        &kvcli(dir.path(), e, &["append", "k", ", world"]),
        0,
        "OK\n",
    );
    expect(&kvcli(dir.path(), e, &["get", "k"]), 0, "hello, world\n");
    expect(
        &kvcli(dir.path(), e, &["get", "k", "-w", "json"]),
        0,
        "{\"found\":true,\"key\":\"k\",\"value\":\"hello, world\"}\n",
    );
    expect(&kvcli(dir.path(), e, &["put", "empty", ""]), 0, "OK\n");
    expect(&kvcli(dir.path(), e, &["get", "empty"]), 0, "\n");
    expect(&kvcli(dir.path(), e, &["delete", "k"]), 0, "deleted\n");
    let o = kvcli(dir.path(), e, &["del", "k"]);
    expect(&o, 1, "");
    assert!(text(&o.stderr).contains("nothing deleted"));
    expect(&kvcli(dir.path(), e, &["get", "k"]), 1, "");
}

#[test]
fn endpoints_from_env_then_kvcluster_file() {
    let f = Fake::start(1);
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kvcli"))
        .current_dir(dir.path())
        .env("RAFTKV_ENDPOINTS", f.addr(1).to_string())
        .args(["put", "from", "env"])
        .output()
        .unwrap();
    expect(&o, 0, "OK\n");
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/endpoints"),
        format!("{}\n", f.addr(1)),
    )
    .unwrap();
    expect(&kvcli(dir.path(), None, &["get", "from"]), 0, "env\n");
}

#[test]
fn status_table_and_json() {
    let mut f = Fake::start(3);
    let dir = tempfile::tempdir().unwrap();
    let eps = f.endpoint_list();
    let o = kvcli(dir.path(), Some(&eps), &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for col in [
        "NODE",
        "ADDRESS",
        "ROLE",
        "TERM",
        "LEADER",
        "COMMIT",
        "APPLIED",
        "LOG BYTES",
        "SNAPSHOT INDEX",
    ] {
        assert!(lines[0].contains(col), "{out}");
    }
    let row1: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row1,
        [
            "1",
            &f.addr(1).to_string(),
            "leader",
            "7",
            "1",
            "42",
            "41",
            "1234",
            "30"
        ],
        "{out}"
    );
    assert!(lines[2].contains("follower"), "{out}");

    let o = kvcli(dir.path(), Some(&eps), &["status", "-w", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let nodes = v.as_array().expect("an array");
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[0]["role"], "leader");
    assert_eq!(nodes[1]["leader"], 1);
    assert_eq!(nodes[2]["commit_index"], 42);
    assert_eq!(nodes[2]["snapshot_index"], 30);

    // A node down: its row says so, stderr says which and what to do, exit 2.
    f.kill(3);
    let o = kvcli(dir.path(), Some(&eps), &["status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stdout).contains("unreachable"));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("node 3 at {} did not answer", f.addr(3)))
            && err.contains("majority"),
        "{err}"
    );
}

#[test]
fn no_cluster_is_an_error_that_names_the_nodes_and_the_fix() {
    let f = Fake::start(2);
    let eps = f.endpoint_list();
    drop(f); // both ports now refuse connections
    let dir = tempfile::tempdir().unwrap();
    let o = kvcli(
        dir.path(),
        Some(&eps),
        &["--timeout", "0.5", "put", "k", "v"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for needle in [
        "put did not complete",
        "n1 127.0.0.1:",
        "n2 127.0.0.1:",
        "kvcluster",
        "--endpoints",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    let o = kvcli(dir.path(), Some(&eps), &["status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("no node answered"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn bad_arguments_exit_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let o = kvcli(dir.path(), Some("1=nowhere"), &["get", "k"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("invalid endpoints"),
        "{}",
        text(&o.stderr)
    );
    let o = kvcli(dir.path(), Some("127.0.0.1:1"), &["frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
    let o = kvcli(dir.path(), Some("127.0.0.1:1"), &["get", ""]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("the key is empty"),
        "{}",
        text(&o.stderr)
    );
}

fn kvcli_stdin(dir: &Path, endpoints: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvcli"))
        .current_dir(dir)
        .env_remove("RAFTKV_ENDPOINTS")
        .args(["--endpoints", endpoints])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kvcli");
    // kvcli may refuse before reading it all: a broken pipe is then expected.
    let _ = child.stdin.take().expect("stdin").write_all(input);
    child.wait_with_output().expect("kvcli output")
}

#[test]
fn a_value_from_stdin_and_one_too_large_for_any_server() {
    let f = Fake::start(1);
    f.st().leader = 1;
    let dir = tempfile::tempdir().unwrap();
    let eps = f.endpoint_list();
    // Any bytes, of a size no command-line argument can carry (128 KiB per argument).
    let value: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    expect(
        &kvcli_stdin(dir.path(), &eps, &["put", "k"], &value),
        0,
        "OK\n",
    );
    let o = kvcli(dir.path(), Some(&eps), &["get", "k"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(&o.stdout[..o.stdout.len() - 1], &value[..]);
    // Over the largest value any kvserver accepts: refused before sending, exit 2, and the
    // message says so instead of "may or may not have been applied" after the deadline.
    let seen = f.st().seen.len();
    let big = vec![b'v'; client::MAX_VALUE_LEN + 1];
    let o = kvcli_stdin(dir.path(), &eps, &["append", "k"], &big);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("no server accepts more than"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(f.st().seen.len(), seen, "nothing was sent");
}

#[test]
fn snapshot_save_refuses_bad_destinations_and_writes_nothing_on_failure() {
    let f = Fake::start(3);
    f.st().leader = 1;
    let dir = tempfile::tempdir().unwrap();
    let eps = f.endpoint_list();
    let e = Some(eps.as_str());
    std::fs::create_dir(dir.path().join("adir")).unwrap();
    std::fs::write(dir.path().join("old.rkv"), b"keep me").unwrap();
    for (args, says) in [
        (
            &["snapshot", "save", "adir", "--force"][..],
            "is a directory",
        ),
        (
            &["snapshot", "save", "nodir/x.rkv"][..],
            "the directory nodir does not exist",
        ),
        (&["snapshot", "save", "old.rkv"][..], "exists"),
        // The fake servers do not serve SnapshotChunk: every node is tried and named.
        (
            &["snapshot", "save", "new.rkv"][..],
            "no node gave a snapshot",
        ),
        (
            &["snapshot", "save", "old.rkv", "--force"][..],
            "no node gave a snapshot",
        ),
    ] {
        let o = kvcli(dir.path(), e, args);
        expect(&o, 2, "");
        assert!(
            text(&o.stderr).contains(says),
            "{args:?}: {}",
            text(&o.stderr)
        );
    }
    // Nothing written, nothing replaced, no temporary file left.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["adir", "old.rkv"]);
    assert_eq!(
        std::fs::read(dir.path().join("old.rkv")).unwrap(),
        b"keep me"
    );
}
