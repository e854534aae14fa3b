//! Client memory with a peer that accepts and never reads (issue 7, item 4): 400 calls of
//! 1 MiB with a 20 ms deadline; prints how each ended and this process's RSS.
//!
//! `cargo run --release -p rpc --example stuck_peer`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::echo::{EchoRequest, EchoServiceClient};
use rpc::{CallError, ClientConfig, ClientRuntime};

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let rt = ClientRuntime::new(ClientConfig::default())?;
    let c = EchoServiceClient::new(rt.channel(addr));
    let before = rss_mb();
    let payload = EchoRequest {
        payload: Bytes::from(vec![1u8; 1 << 20]),
    };
    let counts = Arc::new([
        AtomicUsize::new(0), // timeout
        AtomicUsize::new(0), // overloaded
        AtomicUsize::new(0), // other
    ]);
    let mut peer = None;
    for i in 0..400 {
        let k = counts.clone();
        c.echo_async(&payload, Duration::from_millis(20), move |r| {
            let slot = match r {
                Err(CallError::Timeout) => 0,
                Err(CallError::Overloaded) => 1,
                other => {
                    eprintln!("other: {other:?}");
                    2
                }
            };
            k[slot].fetch_add(1, Ordering::Relaxed);
        });
        if i == 0 {
            peer = Some(l.accept()?); // accepted, never read
        }
    }
    let t0 = Instant::now();
    while counts
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum::<usize>()
        < 400
        && t0.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let peak_queued = rt.stats().queued_bytes;
    // Calls that ended unsent leave the queue; a retired connection closes once its
    // calls have ended.
    while rt.stats().queued_bytes > 0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    println!(
        "400 x 1 MiB calls, 20 ms deadline, peer never reads: {} Timeout, {} Overloaded, {} other; \
         client queued bytes {peak_queued} when the last call ended, {} after; client RSS \
         {before:.1} MB before, {:.1} MB after",
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        counts[2].load(Ordering::Relaxed),
        rt.stats().queued_bytes,
        rss_mb()
    );
    drop(peer);
    Ok(())
}
