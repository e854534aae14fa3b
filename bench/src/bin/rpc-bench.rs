//! `rpc-bench`: the RPC layer alone, on loopback.
//!
//! An echo server (in-process by default, registered inline since echo never blocks) is
//! driven by C connections with D calls in flight on each: every completion records its
//! latency and sends the next call (non-blocking calls; completions run on the client's
//! I/O thread). One row per `payload x connections x in-flight`, measured for `--secs`
//! after a short warm-up. `--idle N` then measures the memory of a server process holding
//! N idle connections.
//!
//! ```text
//! cargo run --release -p bench --bin rpc-bench                  # default rows, ~45 s
//! cargo run --release -p bench --bin rpc-bench -- --json --rows 16x1x1 --secs 2
//! cargo run --release -p bench --bin rpc-bench -- --server-only 127.0.0.1:7000
//! cargo run --release -p bench --bin rpc-bench -- --connect 127.0.0.1:7000
//! ```

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use proto::echo::{EchoReply, EchoRequest, EchoService, EchoServiceClient, EchoServiceServer};
use proto::service::Reply;
use rpc::{Channel, ClientConfig, ClientRuntime, Server, ServerBuilder};

#[derive(Parser, Debug)]
#[command(about = "Benchmark of raftkv's RPC layer: echo calls on loopback")]
struct Args {
    /// Rows as payload x connections x in-flight, comma-separated.
    #[arg(long, default_value = "16x1x1,16x1x64,16x16x64,1024x16x1,65536x4x4")]
    rows: String,
    /// Measuring time per row, in seconds (after a warm-up of a quarter of it, at most 1 s).
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// One JSON object per row instead of the table.
    #[arg(long)]
    json: bool,
    /// Only run an echo server on ADDR (port 0 picks one) and print its address.
    #[arg(long, value_name = "ADDR")]
    server_only: Option<SocketAddr>,
    /// Drive an echo server already running at ADDR instead of an in-process one.
    #[arg(long, value_name = "ADDR")]
    connect: Option<SocketAddr>,
    /// Drive each in-flight slot from its own thread with blocking calls (connections x
    /// in-flight threads) instead of non-blocking calls chained from completions.
    #[arg(long)]
    blocking: bool,
    /// After the rows, hold this many idle connections to a separate server process and
    /// report its memory (0 skips).
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Instead of the rows: one connection floods the in-process server with pipelined
    /// 64 KiB echoes for `--secs`, `noread` (never reads a reply) or `read` (reads them
    /// as fast as it can), while a well-behaved client makes blocking 16-byte calls; prints
    /// that client's calls/s, p50, p99 and max, and this process's peak RSS.
    #[arg(long, value_name = "MODE")]
    flood: Option<String>,
}

/// `--flood MODE`: see [`Args::flood`]. Exits non-zero when the good client got no samples.
fn flood_test(mode: &str, secs: f64) -> Result<(), String> {
    let read_replies = match mode {
        "noread" => false,
        "read" => true,
        _ => return Err(format!("--flood takes noread or read, not {mode:?}")),
    };
    let server = echo_server("127.0.0.1:0".parse().expect("literal address"))
        .map_err(|e| format!("cannot start the echo server: {e}"))?;
    let addr = server.local_addr();
    let rt = ClientRuntime::new(ClientConfig::default())
        .map_err(|e| format!("cannot start the client runtime: {e}"))?;
    let good = EchoServiceClient::new(rt.channel(addr));
    let small = EchoRequest {
        payload: Bytes::from_static(b"0123456789abcdef"),
    };
    good.echo(&small, Duration::from_secs(5))
        .map_err(|e| format!("warm-up call: {e}"))?;
    let rss0 = rss_kib(std::process::id()).unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let sock = std::net::TcpStream::connect(addr).map_err(|e| format!("flooder connect: {e}"))?;
    let mut frame = Vec::new();
    let big = EchoRequest {
        payload: Bytes::from(vec![0x5Au8; 64 * 1024]),
    };
    rpc::frame::encode_request(&mut frame, 1, "raftkv.echo.EchoService", "Echo", &big);
    let mut w = sock.try_clone().map_err(|e| e.to_string())?;
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            // Bounded: stops at the end of the run, or when the server stops reading it
            // and the socket is shut down below.
            while !stop.load(Ordering::Relaxed) {
                if std::io::Write::write_all(&mut w, &frame).is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let reader = read_replies.then(|| {
        let mut r = sock.try_clone().expect("clone of a connected socket");
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            while matches!(std::io::Read::read(&mut r, &mut buf), Ok(n) if n > 0) {}
        })
    });
    let hist = Histogram::new();
    let (mut ok, mut errors, mut first_error, mut max_ns) = (0u64, 0u64, None, 0u64);
    let mut peak_rss = rss0;
    let t0 = Instant::now();
    let mut next_rss = t0;
    while t0.elapsed().as_secs_f64() < secs {
        let c0 = Instant::now();
        match good.echo(&small, Duration::from_secs(5)) {
            Ok(_) => {
                let ns = c0.elapsed().as_nanos() as u64;
                hist.record(ns);
                max_ns = max_ns.max(ns);
                ok += 1;
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
        if Instant::now() >= next_rss {
            peak_rss = peak_rss.max(rss_kib(std::process::id()).unwrap_or(0));
            next_rss += Duration::from_millis(100);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    peak_rss = peak_rss.max(rss_kib(std::process::id()).unwrap_or(0));
    stop.store(true, Ordering::Relaxed);
    let _ = sock.shutdown(std::net::Shutdown::Both);
    let _ = flooder.join();
    if let Some(r) = reader {
        let _ = r.join();
    }
    println!(
        "flood {mode}: {secs} s, flooder sent {} x 64 KiB; good client {:.0} calls/s, p50 {:.1} us, \
         p99 {:.1} us, max {:.1} us, {errors} errors; process RSS {:.1} MB before, peak {:.1} MB",
        sent.load(Ordering::Relaxed),
        ok as f64 / elapsed,
        hist.quantile_us(0.5),
        hist.quantile_us(0.99),
        max_ns as f64 / 1e3,
        rss0 as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    if ok == 0 {
        return Err(format!(
            "the good client completed no call ({errors} errors; first: {})",
            first_error.as_deref().unwrap_or("none")
        ));
    }
    Ok(())
}

struct Echo;

impl EchoService for Echo {
    fn echo(&self, req: EchoRequest, reply: Reply<EchoReply>) {
        reply.send(EchoReply {
            payload: req.payload,
        });
    }
}

fn echo_server(addr: SocketAddr) -> std::io::Result<Server> {
    ServerBuilder::new()
        .config(rpc::ServerConfig {
            max_connections: 20_000,
            ..Default::default()
        })
        .register_inline(EchoServiceServer::new(Echo))
        .bind(addr)
}

/// A log-linear latency histogram in nanoseconds: 32 buckets per power of two (about 3 %
/// resolution), lock-free so completions only pay an atomic add.
struct Histogram {
    buckets: Vec<AtomicU64>,
}

const SUB: u32 = 5; // 2^5 sub-buckets

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: (0..64 << SUB).map(|_| AtomicU64::new(0)).collect(),
        }
    }
    fn index(v: u64) -> usize {
        if v < (1 << SUB) {
            return v as usize;
        }
        let e = 63 - v.leading_zeros();
        let sub = (v >> (e - SUB)) & ((1 << SUB) - 1);
        (((e - SUB + 1) << SUB) as u64 + sub) as usize
    }
    fn lower(i: usize) -> u64 {
        if i < (1 << SUB) {
            return i as u64;
        }
        let e = (i >> SUB) as u32 + SUB - 1;
        let sub = (i & ((1 << SUB) - 1)) as u64;
        (1u64 << e) | (sub << (e - SUB))
    }
    fn record(&self, ns: u64) {
        self.buckets[Self::index(ns)].fetch_add(1, Ordering::Relaxed);
    }
    fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
    }
    /// Value at quantile `q`, in microseconds (bucket midpoint).
    fn quantile_us(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let lo = Self::lower(i) as f64;
                let hi = Self::lower(i + 1) as f64;
                return (lo + hi) / 2.0 / 1000.0;
            }
        }
        0.0
    }
}

#[derive(Clone, Copy, Debug)]
struct Row {
    payload: usize,
    connections: usize,
    in_flight: usize,
}

fn parse_rows(s: &str) -> Result<Vec<Row>, String> {
    s.split(',')
        .map(|r| {
            let p: Vec<&str> = r.trim().split('x').collect();
            let n = |x: &str| {
                x.parse::<usize>()
                    .map_err(|e| format!("bad row {r:?}: {e}"))
            };
            match p[..] {
                [a, b, c] => Ok(Row {
                    payload: n(a)?,
                    connections: n(b)?.max(1),
                    in_flight: n(c)?.max(1),
                }),
                _ => Err(format!("row {r:?} is not PAYLOADxCONNECTIONSxINFLIGHT")),
            }
        })
        .collect()
}

struct Result_ {
    row: Row,
    calls_per_sec: f64,
    mb_per_sec: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
    /// The first failure's text, to say why a row got no samples.
    first_error: Option<String>,
}

/// State shared by every call loop of one row.
struct Driver {
    measuring: AtomicBool,
    stop: AtomicBool,
    done: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
    outstanding: AtomicUsize,
    hist: Histogram,
    request: EchoRequest,
}

impl Driver {
    fn fail(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(what);
    }
}

fn describe<T>(r: &Result<T, rpc::CallError>) -> String {
    match r {
        Ok(_) => "reply of the wrong length".to_string(),
        Err(e) => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

fn issue(d: Arc<Driver>, client: Arc<EchoServiceClient<Channel>>) {
    if d.stop.load(Ordering::Relaxed) {
        d.outstanding.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let t0 = Instant::now();
    let (d2, c2) = (d.clone(), client.clone());
    client.echo_async(&d.request, Duration::from_secs(10), move |r| {
        let ns = t0.elapsed().as_nanos() as u64;
        match r {
            Ok(rep) if rep.payload.len() == d2.request.payload.len() => {
                if d2.measuring.load(Ordering::Relaxed) {
                    d2.hist.record(ns);
                    d2.done.fetch_add(1, Ordering::Relaxed);
                }
            }
            other => {
                // Counted and reported; this slot stops. Re-issuing at once would recurse
                // without end when calls fail synchronously (server down, backing off),
                // overflowing the stack of the I/O thread or of this one.
                d2.fail(describe(&other));
                d2.outstanding.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        }
        issue(d2, c2);
    });
}

/// One thread making blocking calls back to back (`--blocking`).
fn blocking_loop(d: &Driver, client: &EchoServiceClient<Channel>) {
    while !d.stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        match client.echo(&d.request, Duration::from_secs(10)) {
            Ok(rep) if rep.payload.len() == d.request.payload.len() => {
                if d.measuring.load(Ordering::Relaxed) {
                    d.hist.record(t0.elapsed().as_nanos() as u64);
                    d.done.fetch_add(1, Ordering::Relaxed);
                }
            }
            other => d.fail(describe(&other)),
        }
    }
    d.outstanding.fetch_sub(1, Ordering::AcqRel);
}

fn run_row(rt: &ClientRuntime, addr: SocketAddr, row: Row, secs: f64, blocking: bool) -> Result_ {
    let d = Arc::new(Driver {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
        outstanding: AtomicUsize::new(0),
        hist: Histogram::new(),
        request: EchoRequest {
            payload: Bytes::from(vec![0xA5u8; row.payload]),
        },
    });
    let clients: Vec<Arc<EchoServiceClient<Channel>>> = (0..row.connections)
        .map(|_| Arc::new(EchoServiceClient::new(rt.channel(addr))))
        .collect();
    // Connect first, so that the warm-up is not spent in handshakes.
    for c in &clients {
        let r = c.echo(&d.request, Duration::from_secs(5));
        if r.is_err() {
            d.fail(describe(&r));
        }
    }
    let mut threads = Vec::new();
    for c in &clients {
        for _ in 0..row.in_flight {
            d.outstanding.fetch_add(1, Ordering::AcqRel);
            if blocking {
                let (d, c) = (d.clone(), c.clone());
                threads.push(std::thread::spawn(move || blocking_loop(&d, &c)));
            } else {
                issue(d.clone(), c.clone());
            }
        }
    }
    std::thread::sleep(Duration::from_secs_f64((secs / 4.0).min(1.0)));
    d.hist.reset();
    d.measuring.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    d.measuring.store(false, Ordering::SeqCst);
    let elapsed = t0.elapsed().as_secs_f64();
    d.stop.store(true, Ordering::SeqCst);
    let wait = Instant::now();
    while d.outstanding.load(Ordering::Acquire) > 0 && wait.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(5));
    }
    for t in threads {
        let _ = t.join();
    }
    let calls = d.done.load(Ordering::Relaxed) as f64;
    Result_ {
        row,
        calls_per_sec: calls / elapsed,
        mb_per_sec: calls * row.payload as f64 / elapsed / 1e6,
        p50: d.hist.quantile_us(0.5),
        p99: d.hist.quantile_us(0.99),
        p999: d.hist.quantile_us(0.999),
        errors: d.errors.load(Ordering::Relaxed),
        first_error: d
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(),
    }
}

/// The soft limit on open files of this process (`ulimit -n`), from /proc (Linux).
fn open_files_limit() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// The issue's targets, for the rows they name.
fn target(r: &Result_) -> Option<(&'static str, bool)> {
    let Row {
        payload: p,
        connections: c,
        in_flight: f,
    } = r.row;
    if r.calls_per_sec == 0.0 {
        return Some(("no samples", false));
    }
    match (p, c, f) {
        (16, 1, 1) => Some(("p50 <= 30 us", r.p50 <= 30.0)),
        (16, 1, 64) => Some(("calls/s >= 450k", r.calls_per_sec >= 450_000.0)),
        (16, 16, 64) => Some(("calls/s >= 800k", r.calls_per_sec >= 800_000.0)),
        (1024, 16, 1) => Some(("calls/s >= 110k", r.calls_per_sec >= 110_000.0)),
        (65536, 4, 4) => Some(("MB/s >= 2000", r.mb_per_sec >= 2000.0)),
        _ => None,
    }
}

/// Resident memory of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts `rpc-bench --server-only 127.0.0.1:0` as a child, opens `n` connections to it,
/// makes one call on each, and reports the child's memory before and after.
fn idle_test(n: usize, json: bool) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .args(["--server-only", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn server: {e}"))?;
    let result = (|| {
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("read server address: {e}"))?;
        let addr: SocketAddr = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or("")
            .parse()
            .map_err(|e| format!("server printed {line:?}: {e}"))?;
        std::thread::sleep(Duration::from_millis(100));
        let before = rss_kib(child.id()).ok_or("no /proc status")?;
        let t0 = Instant::now();
        let mut socks = Vec::with_capacity(n);
        for i in 0..n {
            let s = TcpStream::connect(addr).map_err(|e| format!("connection {i}: {e}"))?;
            socks.push(s);
            if i % 100 == 99 {
                // The listen backlog is 128 (mio's, like std's): let the server accept,
                // or dropped SYNs cost a 1 s retransmit each.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        // One call on a fresh channel proves the server still answers with all of them open.
        let rt = ClientRuntime::new(ClientConfig::default()).map_err(|e| e.to_string())?;
        let c = EchoServiceClient::new(rt.channel(addr));
        let req = EchoRequest {
            payload: Bytes::from_static(b"still there"),
        };
        c.echo(&req, Duration::from_secs(10))
            .map_err(|e| format!("call with {n} idle connections open: {e}"))?;
        std::thread::sleep(Duration::from_millis(300));
        let after = rss_kib(child.id()).ok_or("no /proc status")?;
        let took = t0.elapsed();
        let mb = after as f64 / 1024.0;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "idle_connections": n,
                    "server_rss_mb": mb,
                    "server_rss_before_mb": before as f64 / 1024.0,
                })
            );
        } else {
            println!(
                "\nidle: {n} connections held open; server RSS {:.1} MB (before {:.1} MB), \
                 {:.2} KiB per connection; opened in {:.2} s   target < 100 MB: {}",
                mb,
                before as f64 / 1024.0,
                (after.saturating_sub(before)) as f64 / n.max(1) as f64,
                took.as_secs_f64(),
                if mb < 100.0 { "MET" } else { "MISSED" }
            );
        }
        drop(socks);
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn main() {
    let args = Args::parse();
    if let Some(addr) = args.server_only {
        let server = match echo_server(addr) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("rpc-bench: cannot bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        println!("echo server listening on {}", server.local_addr());
        loop {
            std::thread::park();
        }
    }
    if let Some(mode) = &args.flood {
        if let Err(e) = flood_test(mode, args.secs) {
            eprintln!("rpc-bench: flood: {e}");
            std::process::exit(1);
        }
        return;
    }
    let rows = match parse_rows(&args.rows) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rpc-bench: {e}");
            std::process::exit(2);
        }
    };
    let local = match args.connect {
        Some(_) => None,
        None => match echo_server("127.0.0.1:0".parse().expect("literal address")) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("rpc-bench: cannot start the echo server: {e}");
                std::process::exit(1);
            }
        },
    };
    let addr = args
        .connect
        .or(local.as_ref().map(Server::local_addr))
        .expect("either --connect or a local server");
    let rt = match ClientRuntime::new(ClientConfig::default()) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rpc-bench: cannot start the client runtime: {e}");
            std::process::exit(1);
        }
    };
    if !args.json {
        println!(
            "rpc-bench: echo, server {} at {addr}, {} s per row, {} calls",
            if local.is_some() {
                "in-process (inline handler)"
            } else {
                "external"
            },
            args.secs,
            if args.blocking {
                "blocking (a thread per call in flight)"
            } else {
                "non-blocking (next call sent from the completion)"
            }
        );
        println!(
            "{:>8} {:>5} {:>9} {:>12} {:>9} {:>9} {:>9} {:>9}  target",
            "payload", "conns", "in_flight", "calls/s", "MB/s", "p50_us", "p99_us", "p999_us"
        );
    }
    let mut empty_rows = 0;
    for row in rows {
        let r = run_row(&rt, addr, row, args.secs, args.blocking);
        if r.calls_per_sec == 0.0 {
            empty_rows += 1;
            eprintln!(
                "rpc-bench: row payload={} conns={} in_flight={}: no call succeeded \
                 ({} errors; first: {}); is a server listening at {addr}?",
                row.payload,
                row.connections,
                row.in_flight,
                r.errors,
                r.first_error.as_deref().unwrap_or("none recorded")
            );
        }
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "payload_bytes": row.payload,
                    "connections": row.connections,
                    "in_flight": row.in_flight,
                    "calls_per_sec": r.calls_per_sec.round(),
                    "mb_per_sec": (r.mb_per_sec * 10.0).round() / 10.0,
                    "p50_us": (r.p50 * 10.0).round() / 10.0,
                    "p99_us": (r.p99 * 10.0).round() / 10.0,
                    "p999_us": (r.p999 * 10.0).round() / 10.0,
                    "errors": r.errors,
                })
            );
        } else {
            let t = target(&r)
                .map(|(what, met)| format!("{what}: {}", if met { "MET" } else { "MISSED" }))
                .unwrap_or_default();
            let errs = if r.errors > 0 {
                format!("  ({} errors)", r.errors)
            } else {
                String::new()
            };
            println!(
                "{:>8} {:>5} {:>9} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {t}{errs}",
                row.payload,
                row.connections,
                row.in_flight,
                r.calls_per_sec,
                r.mb_per_sec,
                r.p50,
                r.p99,
                r.p999
            );
        }
    }
    drop(rt);
    drop(local);
    if empty_rows > 0 {
        eprintln!(
            "rpc-bench: {empty_rows} row(s) got zero samples; the figures above are not measurements"
        );
        std::process::exit(1);
    }
    if args.idle > 0 {
        // The client side of the idle test holds `idle` sockets in this process, and the
        // server child as many: both need that many descriptors and some to spare.
        let need = args.idle as u64 + 64;
        match open_files_limit() {
            Some(limit) if limit < need => {
                eprintln!(
                    "rpc-bench: --idle {} needs at least {need} open files per process, but \
                     the limit (ulimit -n) is {limit}; raise it (e.g. `ulimit -n {}`) or lower --idle",
                    args.idle,
                    need.max(65_536)
                );
                std::process::exit(1);
            }
            _ => {}
        }
        if let Err(e) = idle_test(args.idle, args.json) {
            eprintln!("rpc-bench: idle-connection test failed: {e}");
            std::process::exit(1);
        }
    }
}
