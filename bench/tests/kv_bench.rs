//! `kv-bench` as a user runs it: real kvserver processes (`--spawn`), a bounded number of
//! operations, and what it leaves behind. Nothing here asserts a speed.

use std::path::Path;
use std::process::{Command, Output};

fn kv_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kv-bench"))
        .args(args)
        .output()
        .expect("run kv-bench")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{out}\nstderr:\n{}",
            stderr(o)
        )
    })
}

/// The "pids n1=123 n2=124" and "data in DIR" parts of the spawn line.
fn spawned(err: &str) -> (Vec<u32>, String) {
    let line = err
        .lines()
        .find(|l| l.contains("spawned"))
        .unwrap_or_else(|| panic!("no spawn line in:\n{err}"));
    let pids = line
        .split_whitespace()
        .filter_map(|w| w.split_once('=').map(|(_, p)| p.trim_end_matches(';')))
        .filter_map(|p| p.parse().ok())
        .collect();
    let dir = line
        .split("data in ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_default()
        .to_string();
    (pids, dir)
}

#[test]
fn spawned_cluster_runs_the_ops_and_is_gone_afterwards() {
    let o = kv_bench(&[
        "--spawn",
        "3",
        "--mode",
        "put",
        "--clients",
        "4",
        "--ops",
        "300",
        "--json",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "kv-bench failed: {err}");
    let j = json(&o);
    for f in [
        "mode",
        "clients",
        "pipeline",
        "value_size",
        "ops",
        "secs",
        "ops_per_sec",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "errors",
    ] {
        assert!(j.get(f).is_some(), "JSON lacks {f}: {j}");
    }
    assert_eq!(j["mode"], "put");
    assert_eq!(j["clients"], 4);
    assert_eq!(j["pipeline"], 0);
    assert_eq!(j["value_size"], 100);
    let (ops, errors) = (j["ops"].as_u64().unwrap(), j["errors"].as_u64().unwrap());
    assert_eq!(
        ops + errors,
        300,
        "--ops counts every operation started: {j}"
    );
    assert!(ops > 0, "{j}");
    let (p50, p99, max) = (
        j["p50_ms"].as_f64().unwrap(),
        j["p99_ms"].as_f64().unwrap(),
        j["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{j}");
    assert_eq!(
        j["server_cpu_s"].as_object().map(|m| m.len()),
        Some(3),
        "{j}"
    );

    // Every child was stopped and reaped before kv-bench exited, and its data removed.
    let (pids, dir) = spawned(&err);
    assert_eq!(pids.len(), 3, "{err}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "spawned kvserver {pid} outlived kv-bench"
        );
    }
    assert!(
        !dir.is_empty() && !Path::new(&dir).exists(),
        "{dir} left behind"
    );
}

#[test]
fn pipelined_mixed_run_draws_the_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("out.svg");
    let o = kv_bench(&[
        "--spawn",
        "3",
        "--mode",
        "mixed",
        "--read-ratio",
        "0.5",
        "--keys",
        "50",
        "--pipeline",
        "8",
        "--ops",
        "400",
        "--json",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "kv-bench failed: {}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["mode"], "mixed");
    assert_eq!(j["pipeline"], 8);
    assert_eq!(
        j["preload"], true,
        "get and mixed runs write every key first"
    );
    assert_eq!(
        j["ops"].as_u64().unwrap() + j["errors"].as_u64().unwrap(),
        400
    );
    let text = std::fs::read_to_string(&svg).expect("the plot file");
    assert!(text.starts_with("<svg"), "not an SVG");
    assert!(text.contains("latency by percentile") && text.contains("throughput over time"));
    assert!(text.contains("99%"), "the percentile axis is labelled");
}

#[test]
fn no_successful_operation_is_an_error_with_the_reason() {
    // Every put is larger than the servers accept: each one is rejected, none succeeds.
    let o = kv_bench(&[
        "--spawn",
        "3",
        "--server-args",
        "--max-value-bytes 10",
        "--value-size",
        "100",
        "--ops",
        "20",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("no successful operation"), "{err}");
    assert!(err.contains("all 20 operations failed"), "{err}");
    assert!(
        err.contains("--max-value-bytes"),
        "the server's reason is shown: {err}"
    );
}

#[test]
fn an_unreachable_cluster_fails_fast_with_a_message() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = format!("127.0.0.1:{port}");
    let o = kv_bench(&["--endpoints", &ep, "--op-timeout", "0.5", "--ops", "5"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("did not answer") && err.contains(&ep), "{err}");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["--clients", "0"][..],
        &["--read-ratio", "1.5"],
        &["--ops", "0"],
        &["--plot", "out.png"],
        &["--ops", "5", "--secs", "1"],
    ] {
        let o = kv_bench(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}
