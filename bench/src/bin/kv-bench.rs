//! `kv-bench`: the whole cluster under load, through the Clerk.
//!
//! ```text
//! kv-bench --spawn 3 --mode put --clients 64 --ops 40000            # starts its own cluster
//! kv-bench --mode get --clients 16 --ops 40000 --json               # the kvcluster one
//! kv-bench --spawn 3 --mode put --pipeline 256 --secs 10 --plot put.svg
//! kv-bench --endpoints 1=127.0.0.1:7001,2=127.0.0.1:7002 --mode mixed --read-ratio 0.9
//! ```
//!
//! **Cluster.** `--endpoints` names a running cluster (default: `$RAFTKV_ENDPOINTS`, else the
//! `./data/endpoints` file that `kvcluster` writes, else 127.0.0.1:7001-7003, as `kvcli`).
//! `--spawn N` starts N `kvserver` processes itself (this executable re-run as a node) on
//! free loopback ports with their data in a temporary directory, waits for a leader, and
//! stops every child by PID at the end: on success, on error, on panic and on Ctrl-C
//! (SIGTERM, then SIGKILL after 5 s); the children also die if kv-bench is killed
//! (`PR_SET_PDEATHSIG`). With `--spawn` the report adds each node's CPU seconds
//! (`/proc/PID/stat`) during the timed phase.
//!
//! **Load.** Keys are `bench/0000000042` (16 bytes), picked uniformly from `--keys`, values
//! `--value-size` bytes: the same keys, values and generator as the etcd anchor's load
//! generator (`shared/anchors/etcd/loadgen`), so the two run the same rows. `--clients N`
//! runs N threads, each with its own Clerk (its own connections) making blocking calls one
//! after another. `--pipeline D` instead keeps D operations in flight on each of the N
//! Clerks with the non-blocking forms ([`client::Clerk::start`]): every completion starts
//! the next one. Gets are linearizable (the leader serves them after a ReadIndex round).
//! Before a get or mixed run every key is written once, untimed (`--preload`).
//!
//! **Bounds.** `--ops` (total over all clients, errors included) or `--secs`, and always
//! `--max-secs` (default 300). A progress line goes to stderr each second.
//!
//! **Report.** ops/s (successful operations over the wall time of the timed phase),
//! latency p50/p99/p99.9/max from an HdrHistogram (3 significant digits, so ≤ 0.1 %
//! off the exact nearest-rank value), and errors with the first error's text. `--json`
//! prints one object instead with the etcd loadgen's fields (`mode`, `clients`, `pipeline`,
//! `value_size`, `ops`, `secs`, `ops_per_sec`, `p50_ms`, `p99_ms`, `p999_ms`, `max_ms`,
//! `mean_ms`, `errors`, `timed_out`, `conns`, `keys`, `linearizable_get`, `preload`, ...).
//! `--plot OUT.svg` draws the latency by percentile (HdrHistogram's plot: x is
//! 1/(1-q) on a log axis, so 90 %, 99 %, 99.9 % are evenly spaced) above the throughput
//! over time.
//!
//! Exit status: 0 when at least one operation succeeded; 1 when none did (the reason is
//! printed), or the cluster could not be started or reached; 2 for bad arguments;
//! 130 after Ctrl-C (the partial report is printed first).

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use client::{Clerk, ENDPOINTS_ENV, Endpoint, Op, parse_endpoints};
use hdrhistogram::Histogram;
use proto::kv::{KvServiceClient, Role, StatusRequest};
use rpc::{ClientConfig, ClientRuntime};

/// The endpoints file that `kvcluster` writes (relative to the working directory).
const CLUSTER_FILE: &str = "data/endpoints";
/// Where `kvcluster` puts its nodes when those ports are free.
const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";
/// Largest latency the histograms hold (longer ones are clamped to it): 10 minutes.
const HIST_MAX_NS: u64 = 600_000_000_000;
/// Throughput samples per second for the plot.
const SAMPLES_PER_SEC: u32 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "kv-bench",
    about = "Load generator for a raftkv cluster: ops/s and latency percentiles through the Clerk.",
    after_help = "Endpoints: --endpoints, else $RAFTKV_ENDPOINTS, else ./data/endpoints \
                  (written by kvcluster), else 127.0.0.1:7001-7003; or --spawn N.\n\
                  Exit status: 0 ok, 1 no operation succeeded or no cluster, 2 bad arguments, \
                  130 interrupted."
)]
struct Args {
    /// The cluster's nodes: ID=HOST:PORT,... or HOST:PORT,... (ids 1, 2, ... by position).
    #[arg(long, value_name = "LIST", conflicts_with = "spawn")]
    endpoints: Option<String>,
    /// Start N kvserver processes on free loopback ports (data in a temp dir), stop them at the end.
    #[arg(long, value_name = "N")]
    spawn: Option<u64>,
    /// Extra flags for every spawned kvserver, whitespace-separated (e.g. "--tick-ms 20").
    #[arg(
        long,
        value_name = "FLAGS",
        requires = "spawn",
        allow_hyphen_values = true
    )]
    server_args: Option<String>,
    /// put, get (linearizable) or mixed (gets with probability --read-ratio).
    #[arg(long, value_enum, default_value_t = Mode::Put)]
    mode: Mode,
    /// Share of gets in --mode mixed, 0 to 1.
    #[arg(long, default_value_t = 0.5, value_name = "F")]
    read_ratio: f64,
    /// Client threads with blocking calls, each with its own Clerk; with --pipeline, Clerks.
    #[arg(long, default_value_t = 1, value_name = "N")]
    clients: usize,
    /// Operations in flight per Clerk, with non-blocking calls (0: blocking threads).
    #[arg(long, default_value_t = 0, value_name = "D")]
    pipeline: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    value_size: usize,
    /// Number of distinct keys, picked uniformly at random.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    keys: u64,
    /// Operations to run, all clients together (errors included). Default 10000 unless --secs.
    #[arg(long, value_name = "N", conflicts_with = "secs")]
    ops: Option<u64>,
    /// Run for this many seconds instead of a number of operations.
    #[arg(long, value_name = "S")]
    secs: Option<f64>,
    /// Hard limit on the timed phase, in seconds; no operation starts after it.
    #[arg(long, default_value_t = 300.0, value_name = "S")]
    max_secs: f64,
    /// Write every key once, untimed, before the run (default: yes for get and mixed).
    #[arg(long, value_name = "BOOL")]
    preload: Option<bool>,
    /// One Clerk operation may take this long, retries included, before it counts as an error.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    op_timeout: f64,
    /// RPC client I/O threads; Clerks are spread over them round-robin.
    #[arg(long, default_value_t = 2, value_name = "N")]
    io_threads: usize,
    /// How long a blocking caller and the RPC I/O threads poll for a reply before sleeping,
    /// in microseconds (`rpc::ClientConfig::spin`; default 50, the Clerk's default).
    #[arg(long, value_name = "US")]
    client_spin_us: Option<u64>,
    /// Seed of the key choice (client j uses seed + 7919 j, as the etcd loadgen).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object on stdout instead of the text report.
    #[arg(long)]
    json: bool,
    /// Draw latency by percentile and throughput over time to this SVG file.
    #[arg(long, value_name = "OUT.svg")]
    plot: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Puts only.
    Put,
    /// Linearizable gets only.
    Get,
    /// Gets with probability --read-ratio, else puts.
    Mixed,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Put => "put",
            Mode::Get => "get",
            Mode::Mixed => "mixed",
        }
    }
}

/// Why kv-bench stopped before or without a report, with the exit code to use.
#[derive(Debug)]
struct Failure {
    code: u8,
    msg: String,
}

fn fail<T>(code: u8, msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        code,
        msg: msg.into(),
    })
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "--as-kvserver") {
        // A child started by --spawn: be a kvserver node.
        args.remove(1);
        return kvserver::cli::main(args);
    }
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(&args) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("kv-bench: error: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}

// ---------------------------------------------------------------------------------------
// The key generator (the etcd loadgen's, so both pick the same keys for the same seed)

/// xorshift64*: small, deterministic, good enough to pick keys.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n < 2^32).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("bench/{i:010}"))
}

/// What one client does next.
fn next_op(rng: &mut Rng, w: &Workload) -> Op {
    let k = key(rng.below(w.keys));
    let get = match w.mode {
        Mode::Put => false,
        Mode::Get => true,
        Mode::Mixed => rng.unit() < w.read_ratio,
    };
    if get {
        Op::Get(k)
    } else {
        Op::Put(k, w.value.clone())
    }
}

// ---------------------------------------------------------------------------------------
// Shared state of one timed phase

#[derive(Debug)]
struct Workload {
    mode: Mode,
    read_ratio: f64,
    keys: u64,
    value: Bytes,
    /// Total operations to start (`u64::MAX` with --secs).
    ops: u64,
    /// No operation starts after this.
    end: Instant,
    /// `end` is --max-secs (a bound) rather than --secs (the plan).
    end_is_limit: bool,
}

/// Counters every client updates.
#[derive(Debug, Default)]
struct Tally {
    /// Tickets handed out (operations started).
    started: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Set by Ctrl-C: start nothing more.
    stop: AtomicBool,
    /// The --max-secs bound ended the run before --ops were done.
    timed_out: AtomicBool,
}

impl Tally {
    /// May another operation start? Takes a ticket if so.
    fn admit(&self, w: &Workload) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        if Instant::now() >= w.end {
            if w.end_is_limit {
                self.timed_out.store(true, Ordering::Relaxed);
            }
            return false;
        }
        self.started.fetch_add(1, Ordering::Relaxed) < w.ops
    }

    fn error(&self, e: &client::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }
}

fn new_hist() -> Histogram<u64> {
    // 3 significant digits from 1 ns to HIST_MAX_NS: fixed, small memory (~100 KiB).
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_nanos()).unwrap_or(HIST_MAX_NS).max(1));
}

// ---------------------------------------------------------------------------------------
// Blocking clients: one thread each

fn blocking_client(clerk: Clerk, mut rng: Rng, w: Arc<Workload>, t: Arc<Tally>) -> Histogram<u64> {
    let mut h = new_hist();
    while t.admit(&w) {
        let op = next_op(&mut rng, &w);
        let t0 = Instant::now();
        let r = match op {
            Op::Get(k) => clerk.get(k).map(drop),
            Op::Put(k, v) => clerk.put(k, v),
            Op::Append(k, v) => clerk.append(k, v),
            Op::Delete(k) => clerk.delete(k).map(drop),
        };
        match r {
            Ok(()) => {
                record(&mut h, t0.elapsed());
                t.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => t.error(&e),
        }
    }
    h
}

// ---------------------------------------------------------------------------------------
// Pipelined clients: D operations in flight per Clerk, each completion starts the next

struct Pipe {
    clerk: Clerk,
    rng: Mutex<Rng>,
    hist: Mutex<Histogram<u64>>,
    in_flight: AtomicUsize,
    w: Arc<Workload>,
    t: Arc<Tally>,
    /// Told once when the last operation of this Clerk has completed.
    idle: crossbeam_channel::Sender<()>,
}

impl Pipe {
    /// Starts one more operation if the run allows; else notes one fewer in flight.
    fn launch(self: &Arc<Pipe>) {
        if !self.t.admit(&self.w) {
            if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
                let _ = self.idle.send(());
            }
            return;
        }
        let op = next_op(
            &mut self.rng.lock().unwrap_or_else(PoisonError::into_inner),
            &self.w,
        );
        let me = Arc::clone(self);
        let t0 = Instant::now();
        // The callback runs on the RPC I/O thread (or the Clerk's retry thread); it only
        // records and starts the next operation, which queues it without blocking.
        self.clerk.start(op, move |r| {
            match r {
                Ok(_) => {
                    record(
                        &mut me.hist.lock().unwrap_or_else(PoisonError::into_inner),
                        t0.elapsed(),
                    );
                    me.t.ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => me.t.error(&e),
            }
            me.launch();
        });
    }
}

// ---------------------------------------------------------------------------------------
// Spawned cluster

/// The kvserver children of --spawn, stopped by PID when dropped (SIGTERM, then SIGKILL).
struct Children {
    procs: Vec<(u64, Child)>,
    /// Holds the nodes' data and logs; removed after the children are gone.
    dir: Option<tempfile::TempDir>,
}

impl Children {
    fn stop_all(&mut self) {
        for (_, c) in &self.procs {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: sends a signal to a child we started and have not reaped, so the
                // PID still names it; no memory is involved.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (id, c) in &mut self.procs {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => {
                        eprintln!(
                            "kv-bench: node {id} did not stop in 5 s after SIGTERM; killing it"
                        );
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        self.procs.clear();
    }

    fn log_path(&self, id: u64) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.path().join(format!("node{id}.log")))
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop_all();
        if let Some(d) = self.dir.take()
            && let Err(e) = d.close()
        {
            eprintln!("kv-bench: could not remove the spawned cluster's data: {e}");
        }
    }
}

fn spawn_cluster(n: u64, server_args: &[String]) -> Result<(Children, Vec<Endpoint>), Failure> {
    if !(1..=9).contains(&n) {
        return fail(2, format!("--spawn {n}: give 1 to 9 nodes"));
    }
    let dir = tempfile::Builder::new()
        .prefix("kv-bench-")
        .tempdir()
        .or_else(|e| fail(1, format!("cannot create a temporary directory: {e}")))?;
    let addrs = kvserver::cli::free_loopback_ports(n as usize)
        .or_else(|e| fail(1, format!("cannot find a free loopback port: {e}")))?;
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let exe = std::env::current_exe()
        .or_else(|e| fail(1, format!("cannot find my own executable: {e}")))?;
    let me = std::process::id();
    let mut children = Children {
        procs: Vec::new(),
        dir: Some(dir),
    };
    let mut eps = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let data = children
            .dir
            .as_ref()
            .map(|d| d.path().join(format!("node{id}")))
            .unwrap_or_default();
        let log_path = children.log_path(id).unwrap_or_default();
        let log = File::create(&log_path)
            .or_else(|e| fail(1, format!("cannot create {}: {e}", log_path.display())))?;
        let mut cmd = Command::new(&exe);
        cmd.arg0("kvserver")
            .arg("--as-kvserver")
            .args(["--id", &id.to_string(), "--peers", &peers])
            .arg("--data-dir")
            .arg(&data)
            .args(server_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        // SAFETY: the closure runs in the child between fork and exec and makes only
        // async-signal-safe calls (prctl, getppid, _exit).
        unsafe {
            cmd.pre_exec(move || {
                // Die with kv-bench, even when it is killed with SIGKILL.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // kv-bench may have died before prctl: then nobody would signal us.
                if libc::getppid() as u32 != me {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().or_else(|e| {
            fail(
                1,
                format!("cannot start node {id} ({}): {e}", exe.display()),
            )
        })?;
        children.procs.push((id, child));
        eps.push(Endpoint { id, addr: *addr });
    }
    Ok((children, eps))
}

/// The last lines of a spawned node's log, for an error message.
fn log_tail(path: &Path) -> String {
    let lines: Vec<String> = File::open(path)
        .map(|f| BufReader::new(f).lines().map_while(Result::ok).collect())
        .unwrap_or_default();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// Waits until one node says it is the leader; fails if a child exits or 20 s pass.
fn wait_for_leader(
    eps: &[Endpoint],
    children: &mut Children,
    stop: &AtomicBool,
) -> Result<u64, Failure> {
    let rt = ClientRuntime::global();
    let nodes: Vec<_> = eps
        .iter()
        .map(|e| (e.id, KvServiceClient::new(rt.channel(e.addr))))
        .collect();
    let started = Instant::now();
    loop {
        for (id, c) in &mut children.procs {
            if let Ok(Some(st)) = c.try_wait() {
                let tail = children
                    .dir
                    .as_ref()
                    .map(|d| log_tail(&d.path().join(format!("node{id}.log"))))
                    .unwrap_or_default();
                return fail(
                    1,
                    format!("spawned node {id} exited at start ({st}); its log ends:\n{tail}"),
                );
            }
        }
        for (id, c) in &nodes {
            if let Ok(s) = c.status(&StatusRequest {}, Duration::from_millis(300))
                && s.role == Role::Leader as i32
            {
                return Ok(*id);
            }
        }
        if stop.load(Ordering::Relaxed) {
            return fail(130, "interrupted while waiting for a leader");
        }
        if started.elapsed() > Duration::from_secs(20) {
            return fail(1, "the spawned cluster elected no leader within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The node that says it leads now, if any answers.
fn current_leader(eps: &[Endpoint]) -> Option<u64> {
    let rt = ClientRuntime::global();
    eps.iter().find_map(|e| {
        KvServiceClient::new(rt.channel(e.addr))
            .status(&StatusRequest {}, Duration::from_millis(500))
            .ok()
            .filter(|s| s.role == Role::Leader as i32)
            .map(|s| s.node_id)
    })
}

// ---------------------------------------------------------------------------------------
// CPU accounting from /proc

fn clk_tck() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// user + system CPU seconds of a process so far (`/proc/PID/stat` fields 14 and 15).
fn proc_cpu_secs(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it start past ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = f.get(11)?.parse().ok()?;
    let sys: f64 = f.get(12)?.parse().ok()?;
    Some((user + sys) / clk_tck())
}

/// The "cpu" line of /proc/stat: (busy, total) ticks, busy = user+nice+system+irq+softirq.
fn host_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?;
    Some((busy, v.iter().take(8).sum()))
}

#[derive(Debug)]
struct CpuMark {
    nodes: Vec<(u64, Option<f64>)>,
    me: Option<f64>,
    host: Option<(u64, u64)>,
}

fn cpu_mark(children: Option<&Children>) -> CpuMark {
    CpuMark {
        nodes: children
            .map(|c| {
                c.procs
                    .iter()
                    .map(|(id, p)| (*id, proc_cpu_secs(&p.id().to_string())))
                    .collect()
            })
            .unwrap_or_default(),
        me: proc_cpu_secs("self"),
        host: host_ticks(),
    }
}

// ---------------------------------------------------------------------------------------
// The run

fn endpoints(args: &Args) -> Result<(Vec<Endpoint>, String), Failure> {
    let (text, source) = if let Some(e) = &args.endpoints {
        (e.clone(), "--endpoints".to_string())
    } else if let Ok(e) = std::env::var(ENDPOINTS_ENV) {
        (e, format!("${ENDPOINTS_ENV}"))
    } else if let Ok(e) = std::fs::read_to_string(CLUSTER_FILE) {
        (e, format!("{CLUSTER_FILE} (written by kvcluster)"))
    } else {
        (DEFAULT_ENDPOINTS.to_string(), "the default".to_string())
    };
    let eps = parse_endpoints(&text).or_else(|e| fail(2, format!("{e} (from {source})")))?;
    Ok((eps, source))
}

fn check_args(a: &Args) -> Result<(), Failure> {
    let secs_ok = |s: f64| s.is_finite() && s > 0.0 && s <= 86_400.0;
    if a.clients == 0 || a.clients > 10_000 {
        return fail(2, format!("--clients {}: give 1 to 10000", a.clients));
    }
    if a.pipeline > 100_000 {
        return fail(2, format!("--pipeline {}: give at most 100000", a.pipeline));
    }
    if a.keys == 0 || a.keys >= 1 << 32 {
        return fail(2, format!("--keys {}: give 1 to 2^32-1", a.keys));
    }
    if a.ops == Some(0) {
        return fail(2, "--ops 0: give at least 1 operation");
    }
    if !(0.0..=1.0).contains(&a.read_ratio) {
        return fail(
            2,
            format!("--read-ratio {}: give a share from 0 to 1", a.read_ratio),
        );
    }
    if a.value_size > 16 << 20 {
        return fail(
            2,
            format!(
                "--value-size {}: the servers take at most 16 MiB by default",
                a.value_size
            ),
        );
    }
    for (name, v) in [
        ("--max-secs", Some(a.max_secs)),
        ("--secs", a.secs),
        ("--op-timeout", Some(a.op_timeout)),
    ] {
        if let Some(v) = v
            && !secs_ok(v)
        {
            return fail(
                2,
                format!("{name} {v}: give a positive number of seconds, at most a day"),
            );
        }
    }
    if a.io_threads == 0 || a.io_threads > 64 {
        return fail(2, format!("--io-threads {}: give 1 to 64", a.io_threads));
    }
    if let Some(p) = &a.plot
        && p.extension().and_then(|e| e.to_str()) != Some("svg")
    {
        return fail(
            2,
            format!(
                "--plot {}: only SVG is drawn; name the file OUT.svg",
                p.display()
            ),
        );
    }
    Ok(())
}

/// Everything the report needs.
#[derive(Debug)]
struct Outcome {
    hist: Histogram<u64>,
    secs: f64,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    timed_out: bool,
    interrupted: bool,
    /// (seconds since start, ops/s over the sample before it).
    timeline: Vec<(f64, f64)>,
}

fn run(args: &Args) -> Result<ExitCode, Failure> {
    check_args(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .or_else(|e| fail(1, format!("cannot install the Ctrl-C handler: {e}")))?;
    }
    let server_args: Vec<String> = args
        .server_args
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect();
    let (children, eps, source) = match args.spawn {
        Some(n) => {
            let (mut c, eps) = spawn_cluster(n, &server_args)?;
            let leader = wait_for_leader(&eps, &mut c, &stop)?;
            if !args.quiet {
                let pids: Vec<String> = c
                    .procs
                    .iter()
                    .map(|(id, p)| format!("n{id}={}", p.id()))
                    .collect();
                eprintln!(
                    "kv-bench: spawned {n} kvserver processes (pids {}; data in {}); leader n{leader}",
                    pids.join(" "),
                    c.dir
                        .as_ref()
                        .map(|d| d.path().display().to_string())
                        .unwrap_or_default()
                );
            }
            (Some(c), eps, format!("--spawn {n}"))
        }
        None => {
            let (eps, source) = endpoints(args)?;
            (None, eps, source)
        }
    };

    let spin_us = args.client_spin_us.unwrap_or(50);
    let runtimes: Vec<ClientRuntime> = (0..args.io_threads)
        .map(|_| {
            ClientRuntime::new(ClientConfig {
                spin: Duration::from_micros(spin_us),
                ..ClientConfig::default()
            })
        })
        .collect::<Result<_, _>>()
        .or_else(|e| fail(1, format!("cannot start an RPC client thread: {e}")))?;
    let op_timeout = Duration::from_secs_f64(args.op_timeout);
    let clerks: Vec<Clerk> = (0..args.clients)
        .map(|j| {
            Clerk::builder(eps.clone())
                .deadline(op_timeout)
                .runtime(runtimes[j % runtimes.len()].clone())
                .build()
        })
        .collect();
    // Warm every Clerk (connect, find the leader) before timing; a dead cluster fails here.
    for c in &clerks {
        if let Err(e) = c.get("kv-bench/warmup") {
            let mut msg = format!("the cluster ({source}) did not answer: {e}");
            if let (Some(ch), Some(l)) = (children.as_ref(), eps.first())
                && let Some(p) = ch.log_path(l.id)
            {
                msg.push_str(&format!("\nnode {}'s log ends:\n{}", l.id, log_tail(&p)));
            }
            return fail(1, msg);
        }
        if stop.load(Ordering::Relaxed) {
            return fail(130, "interrupted");
        }
    }
    let value = Bytes::from(vec![b'x'; args.value_size]);
    let preload = args.preload.unwrap_or(args.mode != Mode::Put);
    if preload {
        preload_keys(&clerks, args.keys, &value, &stop, args.quiet)?;
    }

    let before = cpu_mark(children.as_ref());
    let out = timed_phase(args, &clerks, value, &stop);
    let after = cpu_mark(children.as_ref());
    let leader = current_leader(&eps);

    let report = Report {
        args,
        out: &out,
        before: &before,
        after: &after,
        leader,
        preload,
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text(&source));
    }
    if let Some(p) = &args.plot {
        plot::draw(p, &out.hist, &out.timeline, &report.title())
            .or_else(|e| fail(1, format!("--plot {}: {e}", p.display())))?;
        if !args.quiet {
            eprintln!("kv-bench: plot written to {}", p.display());
        }
    }
    let _ = std::io::stdout().flush();
    // The children are stopped by `Children`'s Drop when `run` returns, on every path.
    drop(children);
    if out.interrupted {
        return Ok(ExitCode::from(130));
    }
    if out.ok == 0 {
        let why = match (&out.first_error, out.errors) {
            (Some(e), n) => format!("all {n} operations failed; the first: {e}"),
            (None, _) => format!(
                "no operation completed in {:.1} s (--secs/--max-secs too short?)",
                out.secs
            ),
        };
        return fail(1, format!("no successful operation: {why}"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes every key once, untimed, with 64 puts in flight per Clerk.
fn preload_keys(
    clerks: &[Clerk],
    keys: u64,
    value: &Bytes,
    stop: &AtomicBool,
    quiet: bool,
) -> Result<(), Failure> {
    let t0 = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let failed: Arc<Mutex<Option<String>>> = Arc::default();
    let (tx, rx) = crossbeam_channel::unbounded::<()>();
    fn go(
        clerk: Clerk,
        next: Arc<AtomicU64>,
        keys: u64,
        value: Bytes,
        failed: Arc<Mutex<Option<String>>>,
        tx: crossbeam_channel::Sender<()>,
    ) {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= keys
            || failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some()
        {
            let _ = tx.send(());
            return;
        }
        let c2 = clerk.clone();
        clerk.start(Op::Put(key(i), value.clone()), move |r| {
            if let Err(e) = r {
                failed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(e.to_string());
            }
            go(c2, next, keys, value, failed, tx);
        });
    }
    let lanes = clerks.len().min(4) * 64;
    for l in 0..lanes {
        let c = clerks[l % clerks.len()].clone();
        go(
            c,
            next.clone(),
            keys,
            value.clone(),
            failed.clone(),
            tx.clone(),
        );
    }
    drop(tx);
    for _ in 0..lanes {
        if rx.recv().is_err() {
            break;
        }
    }
    if let Some(e) = failed.lock().unwrap_or_else(PoisonError::into_inner).take() {
        return fail(1, format!("preload (writing every key once) failed: {e}"));
    }
    if stop.load(Ordering::Relaxed) {
        return fail(130, "interrupted during the preload");
    }
    if !quiet {
        eprintln!(
            "kv-bench: preloaded {keys} keys in {:.1} s (untimed)",
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn timed_phase(args: &Args, clerks: &[Clerk], value: Bytes, stop: &Arc<AtomicBool>) -> Outcome {
    let start = Instant::now();
    let limit = Duration::from_secs_f64(args.max_secs);
    let (plan, end_is_limit) = match args.secs {
        Some(s) if Duration::from_secs_f64(s) < limit => (Duration::from_secs_f64(s), false),
        _ => (limit, true),
    };
    let w = Arc::new(Workload {
        mode: args.mode,
        read_ratio: args.read_ratio,
        keys: args.keys,
        value,
        ops: if args.secs.is_some() {
            u64::MAX
        } else {
            args.ops.unwrap_or(10_000)
        },
        end: start + plan,
        end_is_limit,
    });
    let t = Arc::new(Tally::default());

    // The sampler: throughput over time for the plot, a progress line each second, and
    // Ctrl-C forwarded to the clients.
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let sampler = {
        let (t, stop, quiet) = (Arc::clone(&t), Arc::clone(stop), args.quiet);
        std::thread::spawn(move || {
            let step = Duration::from_secs(1) / SAMPLES_PER_SEC;
            let mut timeline = Vec::new();
            let (mut last_ok, mut last_at) = (0u64, start);
            let (mut sec_ok, mut n) = (0u64, 0u32);
            loop {
                let finished = done_rx.recv_timeout(step).is_ok();
                if stop.load(Ordering::Relaxed) {
                    t.stop.store(true, Ordering::Relaxed);
                }
                let now = Instant::now();
                let ok = t.ok.load(Ordering::Relaxed);
                let dt = now.duration_since(last_at).as_secs_f64();
                // The last sample may cover a sliver of time with few completions: skip it.
                if dt > 0.0 && !(finished && dt < step.as_secs_f64() / 2.0) {
                    timeline.push((
                        now.duration_since(start).as_secs_f64(),
                        (ok - last_ok) as f64 / dt,
                    ));
                }
                (last_ok, last_at) = (ok, now);
                n += 1;
                if n == SAMPLES_PER_SEC && !finished && !quiet {
                    eprintln!(
                        "kv-bench: {:>5.1} s  {:>9} ops  {:>8.0} ops/s (last 1 s)  {} errors",
                        now.duration_since(start).as_secs_f64(),
                        ok,
                        (ok - sec_ok) as f64,
                        t.errors.load(Ordering::Relaxed)
                    );
                    (sec_ok, n) = (ok, 0);
                }
                if finished {
                    return timeline;
                }
            }
        })
    };

    let mut hist = new_hist();
    if args.pipeline == 0 {
        let workers: Vec<_> = clerks
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let (c, w, t) = (c.clone(), Arc::clone(&w), Arc::clone(&t));
                let rng = Rng::new(args.seed.wrapping_add(j as u64 * 7919));
                std::thread::spawn(move || blocking_client(c, rng, w, t))
            })
            .collect();
        for h in workers {
            match h.join() {
                Ok(h) => {
                    let _ = hist.add(&h);
                }
                Err(_) => t.error(&client::Error::InvalidArgument(
                    "a client thread panicked".into(),
                )),
            }
        }
    } else {
        let (idle_tx, idle_rx) = crossbeam_channel::unbounded();
        let pipes: Vec<Arc<Pipe>> = clerks
            .iter()
            .enumerate()
            .map(|(j, c)| {
                Arc::new(Pipe {
                    clerk: c.clone(),
                    rng: Mutex::new(Rng::new(args.seed.wrapping_add(j as u64 * 7919))),
                    hist: Mutex::new(new_hist()),
                    in_flight: AtomicUsize::new(args.pipeline),
                    w: Arc::clone(&w),
                    t: Arc::clone(&t),
                    idle: idle_tx.clone(),
                })
            })
            .collect();
        for p in &pipes {
            for _ in 0..args.pipeline {
                p.launch();
            }
        }
        for _ in &pipes {
            // Every Clerk reports once; each operation ends within --op-timeout.
            let _ = idle_rx.recv();
        }
        for p in &pipes {
            let _ = hist.add(&*p.hist.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = done_tx.send(());
    let timeline = sampler.join().unwrap_or_default();
    let first_error = t
        .first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    Outcome {
        ok: t.ok.load(Ordering::Relaxed),
        errors: t.errors.load(Ordering::Relaxed),
        first_error,
        timed_out: t.timed_out.load(Ordering::Relaxed),
        interrupted: t.stop.load(Ordering::Relaxed),
        hist,
        secs,
        timeline,
    }
}

// ---------------------------------------------------------------------------------------
// Report

struct Report<'a> {
    args: &'a Args,
    out: &'a Outcome,
    before: &'a CpuMark,
    after: &'a CpuMark,
    leader: Option<u64>,
    preload: bool,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl Report<'_> {
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.out.hist.is_empty() {
            0.0
        } else {
            ms(self.out.hist.value_at_quantile(q))
        }
    }

    fn ops_per_sec(&self) -> f64 {
        if self.out.secs > 0.0 {
            self.out.ok as f64 / self.out.secs
        } else {
            0.0
        }
    }

    fn node_cpu(&self) -> Vec<(u64, f64)> {
        self.before
            .nodes
            .iter()
            .zip(&self.after.nodes)
            .filter_map(|((id, a), (_, b))| Some((*id, (*b)? - (*a)?)))
            .collect()
    }

    fn host_busy_pct(&self) -> Option<f64> {
        let ((b0, t0), (b1, t1)) = (self.before.host?, self.after.host?);
        (t1 > t0).then(|| 100.0 * (b1 - b0) as f64 / (t1 - t0) as f64)
    }

    /// CPU seconds the rest of the machine used during the run: the host's busy time minus
    /// this process's and its spawned nodes'. Other work on the machine skews the figures;
    /// this says by how much.
    fn other_cpu_secs(&self) -> Option<f64> {
        let ((b0, _), (b1, _)) = (self.before.host?, self.after.host?);
        let ours: f64 = self.node_cpu().iter().map(|(_, c)| c).sum::<f64>()
            + (self.after.me? - self.before.me?);
        Some(((b1 - b0) as f64 / clk_tck() - ours).max(0.0))
    }

    fn title(&self) -> String {
        let a = self.args;
        let conc = if a.pipeline == 0 {
            format!("{} clients", a.clients)
        } else {
            format!("{} Clerks x {} in flight", a.clients, a.pipeline)
        };
        format!(
            "kv-bench {}, {conc}, {} B values: {:.0} ops/s",
            a.mode.name(),
            a.value_size,
            self.ops_per_sec()
        )
    }

    fn json(&self) -> String {
        let a = self.args;
        let mut o = serde_json::json!({
            "mode": a.mode.name(),
            "clients": a.clients,
            "pipeline": a.pipeline,
            "ops": self.out.ok,
            "value_size": a.value_size,
            "secs": round3(self.out.secs),
            "ops_per_sec": (self.ops_per_sec() * 10.0).round() / 10.0,
            "p50_ms": round3(self.quantile_ms(0.5)),
            "p99_ms": round3(self.quantile_ms(0.99)),
            "p999_ms": round3(self.quantile_ms(0.999)),
            "max_ms": round3(if self.out.hist.is_empty() { 0.0 } else { ms(self.out.hist.max()) }),
            "mean_ms": round3(if self.out.hist.is_empty() { 0.0 } else { self.out.hist.mean() / 1e6 }),
            "errors": self.out.errors,
            "timed_out": self.out.timed_out,
            "conns": a.clients,
            "keys": a.keys,
            "linearizable_get": true,
            "leader_only": true,
            "preload": self.preload,
            "read_ratio": match a.mode { Mode::Put => 0.0, Mode::Get => 1.0, Mode::Mixed => a.read_ratio },
            "interrupted": self.out.interrupted,
            "spawned": a.spawn.unwrap_or(0),
            "leader": self.leader.map(|l| format!("n{l}")),
            "first_error": self.out.first_error,
        });
        let cpu: serde_json::Map<String, serde_json::Value> = self
            .node_cpu()
            .into_iter()
            .map(|(id, s)| (format!("n{id}"), round2(s).into()))
            .collect();
        if !cpu.is_empty() {
            o["server_cpu_s"] = cpu.into();
        }
        if let (Some(a), Some(b)) = (self.before.me, self.after.me) {
            o["bench_cpu_s"] = round2(b - a).into();
        }
        if let Some(h) = self.host_busy_pct() {
            o["host_busy_pct"] = ((h * 10.0).round() / 10.0).into();
        }
        if a.spawn.is_some()
            && let Some(c) = self.other_cpu_secs()
        {
            o["other_cpu_s"] = round2(c).into();
        }
        o.to_string()
    }

    fn text(&self, source: &str) -> String {
        let a = self.args;
        let mut s = String::new();
        let how = if a.pipeline == 0 {
            format!("{} client threads, blocking calls", a.clients)
        } else {
            format!("{} Clerks x {} operations in flight", a.clients, a.pipeline)
        };
        let mode = match a.mode {
            Mode::Mixed => format!("mixed ({:.0} % gets)", a.read_ratio * 100.0),
            m => m.name().to_string(),
        };
        s += &format!(
            "kv-bench: {mode}, {how}, {} B values, {} keys; cluster {source}\n",
            a.value_size, a.keys
        );
        s += &format!(
            "  {} ops in {:.2} s = {:.0} ops/s; errors {}{}{}\n",
            self.out.ok,
            self.out.secs,
            self.ops_per_sec(),
            self.out.errors,
            if self.out.timed_out {
                " (stopped by --max-secs)"
            } else {
                ""
            },
            if self.out.interrupted {
                " (interrupted)"
            } else {
                ""
            },
        );
        if !self.out.hist.is_empty() {
            s += &format!(
                "  latency ms: p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (mean {:.3})\n",
                self.quantile_ms(0.5),
                self.quantile_ms(0.99),
                self.quantile_ms(0.999),
                ms(self.out.hist.max()),
                self.out.hist.mean() / 1e6
            );
        }
        if let Some(e) = &self.out.first_error {
            s += &format!("  first error: {e}\n");
        }
        let cpu = self.node_cpu();
        if !cpu.is_empty() {
            let parts: Vec<String> = cpu
                .iter()
                .map(|(id, c)| {
                    let l = if Some(*id) == self.leader { "(L)" } else { "" };
                    format!("n{id}{l} {c:.2}")
                })
                .collect();
            s += &format!("  CPU s: {}", parts.join(" / "));
            if let (Some(b), Some(e)) = (self.before.me, self.after.me) {
                s += &format!("; kv-bench {:.2}", e - b);
            }
            if let Some(h) = self.host_busy_pct() {
                s += &format!("; host {h:.0} % busy");
            }
            if let Some(c) = self.other_cpu_secs() {
                s += &format!(" (other processes {c:.2} CPU s)");
            }
            s += "\n";
        }
        s
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

// ---------------------------------------------------------------------------------------
// The plot

mod plot {
    use std::path::Path;

    use hdrhistogram::Histogram;
    use plotters::prelude::*;

    /// x of quantile `q` on the percentile axis: 1/(1-q), capped at `x_max`.
    pub(super) fn percentile_x(q: f64, x_max: f64) -> f64 {
        if q >= 1.0 {
            x_max
        } else {
            (1.0 / (1.0 - q)).min(x_max)
        }
    }

    /// The axis label of x = 1/(1-q): the percentile, "99.9%".
    pub(super) fn percentile_label(x: f64) -> String {
        let p = 100.0 * (1.0 - 1.0 / x.max(1.0));
        let s = format!("{p:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s}%")
    }

    /// Draws the latency by percentile (top) and the throughput over time (bottom).
    pub(super) fn draw(
        path: &Path,
        hist: &Histogram<u64>,
        timeline: &[(f64, f64)],
        title: &str,
    ) -> Result<(), String> {
        if hist.is_empty() {
            return Err("no successful operation to plot".into());
        }
        let err = |e: DrawingAreaErrorKind<_>| e.to_string();
        let root = SVGBackend::new(path, (900, 760)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
        let (top, bottom) = root.split_vertically(440);

        // x up to the decade past the sample count: the last percentile the data can show.
        let decades = (hist.len().max(10) as f64).log10().ceil();
        let x_max = 10f64.powf(decades.min(7.0));
        let pts: Vec<(f64, f64)> = hist
            .iter_quantiles(8)
            .map(|v| {
                (
                    percentile_x(v.quantile_iterated_to(), x_max),
                    v.value_iterated_to() as f64 / 1e6,
                )
            })
            .collect();
        let y_max = hist.max() as f64 / 1e6 * 1.05;
        let mut c = ChartBuilder::on(&top)
            .caption("latency by percentile", ("sans-serif", 16))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d((1f64..x_max).log_scale(), 0f64..y_max)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .draw()
            .map_err(err)?;
        c.draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))
            .map_err(err)?;

        let t_max = timeline.last().map_or(1.0, |p| p.0).max(0.001);
        let r_max = timeline.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
        let mut c = ChartBuilder::on(&bottom)
            .caption("throughput over time", ("sans-serif", 16))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..t_max, 0f64..r_max)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("seconds since start")
            .y_desc("ops/s")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(err)?;
        c.draw_series(LineSeries::new(
            timeline.iter().copied(),
            RED.stroke_width(2),
        ))
        .map_err(err)?;
        root.present().map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_etcd_loadgen() {
        assert_eq!(&key(42)[..], b"bench/0000000042");
        // The loadgen's xorshift64* with its seeding: same sequence for the same seed.
        let mut r = Rng::new(1);
        let first: Vec<u64> = (0..3).map(|_| r.below(10_000)).collect();
        let mut r2 = Rng::new(1);
        assert_eq!(first, (0..3).map(|_| r2.below(10_000)).collect::<Vec<_>>());
        let mut r = Rng::new(7);
        assert!((0..10_000).all(|_| r.below(3) < 3));
        assert!((0..10_000).all(|_| (0.0..1.0).contains(&r.unit())));
    }

    #[test]
    fn mixed_mode_follows_the_read_ratio() {
        let w = Workload {
            mode: Mode::Mixed,
            read_ratio: 0.9,
            keys: 100,
            value: Bytes::from_static(b"v"),
            ops: 1,
            end: Instant::now(),
            end_is_limit: false,
        };
        let mut r = Rng::new(3);
        let gets = (0..10_000)
            .filter(|_| matches!(next_op(&mut r, &w), Op::Get(_)))
            .count();
        assert!(
            (8_700..9_300).contains(&gets),
            "{gets} gets of 10000 at ratio 0.9"
        );
    }

    #[test]
    fn percentile_axis() {
        assert_eq!(plot::percentile_x(0.5, 1e4), 2.0);
        assert_eq!(plot::percentile_x(1.0, 1e4), 1e4);
        assert_eq!(plot::percentile_x(0.99999, 1e4), 1e4);
        assert_eq!(plot::percentile_label(1.0), "0%");
        assert_eq!(plot::percentile_label(10.0), "90%");
        assert_eq!(plot::percentile_label(1000.0), "99.9%");
    }

    #[test]
    fn admit_stops_at_the_op_count_and_the_time_limit() {
        let now = Instant::now();
        let mut w = Workload {
            mode: Mode::Put,
            read_ratio: 0.0,
            keys: 1,
            value: Bytes::new(),
            ops: 3,
            end: now + Duration::from_secs(3600),
            end_is_limit: true,
        };
        let t = Tally::default();
        assert_eq!((0..5).filter(|_| t.admit(&w)).count(), 3);
        assert!(!t.timed_out.load(Ordering::Relaxed));
        w.end = now;
        let t = Tally::default();
        assert!(!t.admit(&w));
        assert!(t.timed_out.load(Ordering::Relaxed), "--max-secs ended it");
        let t = Tally::default();
        w.end = now + Duration::from_secs(3600);
        t.stop.store(true, Ordering::Relaxed);
        assert!(!t.admit(&w), "Ctrl-C stops new operations");
    }
}
