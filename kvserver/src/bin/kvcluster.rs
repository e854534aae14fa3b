//! `kvcluster`: a local raftkv cluster in one command.
//!
//! ```text
//! cargo run --release --bin kvcluster                 # 3 nodes, data under ./data
//! cargo run --release --bin kvcluster -- --nodes 5 --clean
//! ```
//!
//! Starts N child processes named `kvserver` (this same executable, running
//! `kvserver::cli::main`) on loopback ports (7001, 7002, ... when free, else free ports the
//! OS picks), each with its data directory `DATA/nodeN`, prints the endpoints, writes them
//! to `DATA/endpoints` (one line, comma-separated, for `kvcli` and scripts), prints
//! `ready: leader is node X at ADDR` once a leader is elected and a line whenever the
//! leader changes. Ctrl-C or SIGTERM stops every child cleanly (SIGTERM, then SIGKILL
//! after 5 s). The children also die if the launcher is killed (Linux
//! `PR_SET_PDEATHSIG`). If a child exits on its own, the launcher reports its exit code,
//! stops the others and exits 1.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use proto::kv::{KvServiceClient, Role, StatusRequest};

#[derive(Parser, Debug)]
#[command(
    name = "kvcluster",
    about = "Starts a local raftkv cluster of kvserver processes."
)]
struct Cli {
    /// Number of nodes (1 to 9).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Directory for the nodes' data (DATA/node1, ...) and the endpoints file.
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// Delete DATA first and start an empty cluster.
    #[arg(long)]
    clean: bool,
    /// First port to try; nodes get consecutive ports when all are free.
    #[arg(long, default_value_t = 7001)]
    base_port: u16,
    /// Passed to every node (bytes of Raft log before a snapshot).
    #[arg(long)]
    max_raft_state: Option<u64>,
}

/// The children, killed by PID when dropped.
struct Children(Vec<(u64, Child)>);

impl Children {
    fn stop_all(&mut self) {
        for (_, c) in &self.0 {
            // SAFETY: sending a signal to a child PID we own; no memory is involved.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (id, c) in &mut self.0 {
            loop {
                match c.try_wait() {
                    Ok(Some(st)) => {
                        if !st.success() {
                            eprintln!("kvcluster: node {id} exited with {st}");
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        eprintln!("kvcluster: node {id} did not stop in 5 s; killing it");
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        self.0.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pick_ports(base: u16, n: u64) -> Result<Vec<SocketAddr>, String> {
    let consecutive: Option<Vec<SocketAddr>> = (0..n)
        .map(|i| {
            let port = base.checked_add(i as u16)?;
            let a: SocketAddr = ([127, 0, 0, 1], port).into();
            TcpListener::bind(a).ok().map(|_| a)
        })
        .collect();
    if let Some(v) = consecutive {
        return Ok(v);
    }
    eprintln!(
        "kvcluster: ports {base}..{} are not all free; using ports the OS picks",
        u64::from(base) + n - 1
    );
    kvserver::cli::free_loopback_ports(n as usize)
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "--as-kvserver") {
        args.remove(1);
        return kvserver::cli::main(args);
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kvcluster: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    if !(1..=9).contains(&cli.nodes) {
        return Err(format!("--nodes {} is not between 1 and 9", cli.nodes));
    }
    if cli.clean && cli.data.exists() {
        std::fs::remove_dir_all(&cli.data)
            .map_err(|e| format!("--clean: cannot remove {}: {e}", cli.data.display()))?;
    }
    std::fs::create_dir_all(&cli.data)
        .map_err(|e| format!("cannot create {}: {e}", cli.data.display()))?;
    let addrs = pick_ports(cli.base_port, cli.nodes)?;
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let endpoints = addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let launcher = std::process::id() as i32;
    let mut children = Children(Vec::new());
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let mut cmd = Command::new(&exe);
        cmd.arg0("kvserver")
            .arg("--as-kvserver")
            .args(["--id", &id.to_string(), "--peers", &peers])
            .arg("--data-dir")
            .arg(cli.data.join(format!("node{id}")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(m) = cli.max_raft_state {
            cmd.args(["--max-raft-state", &m.to_string()]);
        }
        // SAFETY: the closure runs in the child between fork and exec and only makes
        // async-signal-safe calls (prctl, getppid, _exit).
        unsafe {
            cmd.pre_exec(move || {
                // Die with the launcher, even when it is killed with SIGKILL.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The launcher may have died before prctl: then nobody would signal us.
                if libc::getppid() != launcher {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start node {id} ({}): {e}", exe.display()))?;
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    eprintln!("[node {id}] {line}");
                }
            });
        }
        println!(
            "node {id}: {addr}  (data {})",
            cli.data.join(format!("node{id}")).display()
        );
        children.0.push((id, child));
    }
    let ep_file = cli.data.join("endpoints");
    std::fs::write(&ep_file, format!("{endpoints}\n"))
        .map_err(|e| format!("cannot write {}: {e}", ep_file.display()))?;
    println!("endpoints: {endpoints}  (also in {})", ep_file.display());

    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })
    .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;

    let runtime = rpc::ClientRuntime::global();
    let clients: Vec<KvServiceClient<rpc::Channel>> = addrs
        .iter()
        .map(|a| KvServiceClient::new(runtime.channel(*a)))
        .collect();
    let mut leader: Option<u64> = None;
    let started = Instant::now();
    let mut warned = false;
    loop {
        if stop_rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            println!("stopping {} nodes", children.0.len());
            children.stop_all();
            return Ok(ExitCode::SUCCESS);
        }
        for (id, c) in &mut children.0 {
            if let Ok(Some(st)) = c.try_wait() {
                eprintln!("kvcluster: node {id} exited on its own ({st}); stopping the others");
                children.stop_all();
                return Ok(ExitCode::from(1));
            }
        }
        let now_leader = clients.iter().find_map(|c| {
            c.status(&StatusRequest {}, Duration::from_millis(300))
                .ok()
                .filter(|s| s.role == Role::Leader as i32)
                .map(|s| s.node_id)
        });
        if now_leader.is_some() && now_leader != leader {
            let l = now_leader.unwrap_or(0);
            let addr = addrs
                .get(l as usize - 1)
                .map(ToString::to_string)
                .unwrap_or_default();
            if leader.is_none() {
                println!(
                    "ready: leader is node {l} at {addr} (elected in {:.1} s); Ctrl-C stops the cluster",
                    started.elapsed().as_secs_f64()
                );
            } else {
                println!("leader is now node {l} at {addr}");
            }
            leader = now_leader;
        }
        if leader.is_none() && !warned && started.elapsed() > Duration::from_secs(10) {
            eprintln!("kvcluster: no leader after 10 s; see the nodes' logs above");
            warned = true;
        }
    }
}
