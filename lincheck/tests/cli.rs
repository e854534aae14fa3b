//! The `lincheck` command line as a person uses it: verdicts, exit codes, errors with line
//! numbers, format detection, `--html`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lincheck::format::write_raftkv;
use lincheck::generate::{KvGen, linearizable_kv, stale_read};

fn sample(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus-sample")
        .join(p)
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lincheck-cli");
    std::fs::create_dir_all(&d).expect("create the test folder");
    d.join(name)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_lincheck"))
        .args(args)
        .output()
        .expect("run lincheck");
    (
        status.code().expect("lincheck exits, not killed"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn verdicts_and_exit_codes() {
    let (code, out, _) = run(&[s(&sample("register/etcd_002.log"))]);
    assert_eq!((code, out.as_str()), (0, "linearizable\n"));
    let (code, out, _) = run(&[
        s(&sample("register/etcd_000.log")),
        "--format",
        "jepsen-register",
    ]);
    assert_eq!((code, out.as_str()), (1, "not linearizable\n"));
    let (code, out, _) = run(&[s(&sample("kv/c01-bad.txt"))]);
    assert_eq!((code, out.as_str()), (1, "not linearizable\n"));
    let (code, out, err) = run(&[s(&sample("kv/c01-ok.txt")), "--stats"]);
    assert_eq!((code, out.as_str()), (0, "linearizable\n"));
    assert!(
        err.contains("format jepsen-kv") && err.contains("operations"),
        "{err}"
    );
}

#[test]
fn raftkv_files_round_trip_through_the_cli() {
    let g = KvGen {
        clients: 6,
        ops: 200,
        keys: 3,
        ..KvGen::default()
    };
    let h = linearizable_kv(11, &g);
    let ok = tmp("ok.jsonl");
    let mut buf = Vec::new();
    write_raftkv(&mut buf, &h).expect("write to memory");
    std::fs::write(&ok, buf).expect("write the history");
    assert_eq!(run(&[s(&ok)]).0, 0);
    let bad = tmp("stale.jsonl");
    let mut buf = Vec::new();
    write_raftkv(
        &mut buf,
        &stale_read(&h, 1).expect("puts to make a stale read from"),
    )
    .expect("write");
    std::fs::write(&bad, buf).expect("write the history");
    let html = tmp("stale.html");
    let (code, out, _) = run(&[s(&bad), "--format", "raftkv", "--html", s(&html)]);
    assert_eq!((code, out.as_str()), (1, "not linearizable\n"));
    let page = std::fs::read_to_string(&html).expect("the HTML was written");
    assert!(
        page.contains("Why: after the longest linearizable prefix"),
        "no explanation in the page"
    );
    // Self-contained: no external scripts, styles, images or fonts.
    for needle in [
        "<script src",
        "<link",
        "<img",
        "@import",
        "url(http",
        "https://",
    ] {
        assert!(!page.contains(needle), "the page references {needle}");
    }
}

#[test]
fn out_of_time_is_unknown_with_exit_2() {
    let g = KvGen {
        clients: 50,
        ops: 3000,
        keys: 1,
        ..KvGen::default()
    };
    let f = tmp("big.jsonl");
    let mut buf = Vec::new();
    write_raftkv(&mut buf, &linearizable_kv(3, &g)).expect("write");
    std::fs::write(&f, buf).expect("write the history");
    let (code, out, _) = run(&[s(&f), "--timeout", "0.000000001"]);
    assert_eq!((code, out.as_str()), (2, "unknown\n"));
}

#[test]
fn unreadable_or_malformed_files_exit_3_with_line_and_reason() {
    let (code, out, err) = run(&["/nonexistent/history.jsonl"]);
    assert_eq!((code, out.as_str()), (3, ""));
    assert!(err.contains("cannot read"), "{err}");

    let f = tmp("broken.jsonl");
    std::fs::write(
        &f,
        "{\"lincheck\":\"raftkv-history\",\"version\":1}\n\
         {\"client\":0,\"f\":\"put\",\"key\":\"a\",\"value\":\"1\",\"call\":1,\"return\":2,\"outcome\":\"ok\"}\n\
         {\"client\":0,\"f\":\"get\",\"key\":\"a\",\"call\":3,\"return\":4,\"outcome\":\"ok\"}\n",
    )
    .expect("write");
    let (code, _, err) = run(&[s(&f)]);
    assert_eq!(code, 3);
    assert!(err.contains("line 3") && err.contains("output"), "{err}");

    let f = tmp("truncated.log");
    std::fs::write(
        &f,
        "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\tone\n",
    )
    .expect("write");
    let (code, _, err) = run(&[s(&f)]);
    assert_eq!(code, 3);
    assert!(err.contains("line 2"), "{err}");

    let f = tmp("prose.txt");
    std::fs::write(&f, "hello\nworld\n").expect("write");
    let (code, _, err) = run(&[s(&f)]);
    assert_eq!(code, 3);
    assert!(err.contains("--format"), "{err}");
}
