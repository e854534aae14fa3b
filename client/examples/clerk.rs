//! The Clerk against a running cluster: put, append, get, delete, and where the leader is.
//!
//! ```text
//! cargo run --release --bin kvcluster          # terminal 1: a local three-node cluster
//! cargo run -p client --example clerk          # terminal 2
//! ```
//!
//! Endpoints come from `$RAFTKV_ENDPOINTS`, else `./data/endpoints` (written by
//! `kvcluster`), else `127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003`. With no cluster
//! running it says so and how to start one, after a 3 s deadline, and exits 1.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use client::{Clerk, ENDPOINTS_ENV, Error, parse_endpoints};

const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

/// The endpoint list and where it came from.
fn endpoints() -> (String, String) {
    if let Ok(e) = std::env::var(ENDPOINTS_ENV) {
        return (e, format!("${ENDPOINTS_ENV}"));
    }
    match std::fs::read_to_string("data/endpoints") {
        Ok(e) => (e.trim().to_owned(), "./data/endpoints".into()),
        Err(_) => (DEFAULT_ENDPOINTS.into(), "the default".into()),
    }
}

fn run() -> Result<(), Error> {
    let (text, source) = endpoints();
    println!("endpoints ({source}): {text}");
    // A short deadline: an example should not wait 10 s (the default) to say that
    // nothing is running.
    let kv = Clerk::builder(parse_endpoints(&text)?)
        .deadline(Duration::from_secs(3))
        .build();
    let t = Instant::now();
    kv.put("tour", "one Put")?;
    println!(
        "put tour = \"one Put\"            {:?} (leader: {})",
        t.elapsed(),
        kv.leader()
    );
    let t = Instant::now();
    kv.append("tour", ", then an Append")?;
    println!("append tour += \", then an Append\"  {:?}", t.elapsed());
    let t = Instant::now();
    let v = kv.get_string("tour")?;
    println!(
        "get tour -> {v:?}  {:?} (a ReadIndex round, no log write)",
        t.elapsed()
    );
    let t = Instant::now();
    let existed = kv.delete("tour")?;
    println!("delete tour -> existed: {existed}  {:?}", t.elapsed());
    let v = kv.get("tour")?;
    println!("get tour -> {v:?} (None: no such key)");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ Error::DeadlineExceeded { .. }) => {
            eprintln!("clerk: {e}");
            eprintln!(
                "clerk: no cluster answered. Start one in another terminal with\n  \
                 cargo run --release --bin kvcluster\nor point ${ENDPOINTS_ENV} at your nodes \
                 (e.g. {ENDPOINTS_ENV}=10.0.0.1:7001,10.0.0.2:7001,10.0.0.3:7001)."
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("clerk: {e}");
            ExitCode::FAILURE
        }
    }
}
