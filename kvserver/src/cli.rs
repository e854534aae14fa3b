//! The `kvserver` command line: one raftkv node. The `kvserver` binary is this module's
//! [`main`]; `kvcluster` runs it too, in child processes named `kvserver`.
//!
//! ```text
//! kvserver --id 1 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data-dir data/1
//! kvserver --config node1.toml
//! kvserver --id 4 --listen 127.0.0.1:7004 --data-dir data/4 --join 127.0.0.1:7001,127.0.0.1:7002
//! ```
//!
//! `--join` starts a node that is not in the cluster's bootstrap `--peers`: after an
//! operator ran `kvcli member add-learner ID ADDR`, the new node asks the given members for
//! the membership (MemberList), records the cluster's bootstrap voters and the members'
//! addresses in `DATA_DIR/JOINED`, and starts as a learner that the leader brings up to
//! date; later starts read `JOINED` and need no `--join`.
//!
//! One port serves both the Raft peers (`raftkv.raft.RaftService`) and the clients
//! (`raftkv.kv.KvService`); by default it is this node's own address in `--peers`.
//! Logs go to stderr through env_logger (`RUST_LOG=info` by default). SIGTERM and Ctrl-C
//! stop the node cleanly (exit 0). Exit codes: 0 clean stop, 1 the node stopped on an
//! error at run time (a corrupt committed entry or snapshot, storage failure), 2 a
//! configuration or start-up error (bad flag or config file, port in use, unusable or
//! locked data directory, peers lacking this node's id).
//!
//! The config file takes the flags' names with underscores:
//!
//! ```toml
//! id = 1
//! peers = "1=10.0.0.1:7001,2=10.0.0.2:7001,3=10.0.0.3:7001"   # or a [peers] table
//! data_dir = "/var/lib/raftkv"
//! max_raft_state = 8388608
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use proto::kv::KvServiceServer;
use proto::kv::{KvServiceClient, MemberListRequest};
use raft::rpc_transport::{PeerBook, RaftIntake, RpcTransport};
use raft::{Config, DiskOptions, DiskStorage, Node, Storage};
use serde::Deserialize;

use crate::{KvConfig, KvNode};

/// Command-line flags; each overrides the same key of `--config`.
#[derive(Parser, Debug)]
#[command(name = "kvserver", version, about = "One node of a raftkv cluster.")]
struct Cli {
    /// TOML file with any of the keys below (underscores: `data_dir`, `max_raft_state`, ...).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's id (non-zero, one of the ids in --peers).
    #[arg(long)]
    id: Option<u64>,
    /// Every node of the cluster, this one included: `1=127.0.0.1:7001,2=127.0.0.1:7002,...`.
    /// These are the cluster's bootstrap voters; nodes added later join with --join.
    #[arg(long, value_name = "ID=ADDR,...")]
    peers: Option<String>,
    /// Start a NEW node (empty --data-dir) that joins a running cluster: the addresses of one
    /// or more members, e.g. `127.0.0.1:7001,127.0.0.1:7002`. First add it with
    /// `kvcli member add-learner ID ADDR` (ADDR = this node's --listen); it then gets the log
    /// as a learner, and `kvcli member promote ID` makes it a voter. Needs --listen.
    #[arg(long, value_name = "ADDR,...")]
    join: Option<String>,
    /// How long --join waits for the cluster to list this node as a learner (default 60).
    #[arg(long, value_name = "SECS")]
    join_timeout_secs: Option<u64>,
    /// Start this node from a backup made by `kvcli snapshot save FILE`, into a new, EMPTY
    /// --data-dir. Start every node of the new cluster with the same FILE and the same
    /// --peers: the new cluster's voters are its --peers (the old cluster's membership is
    /// not restored). Only for the first start; later starts run without it.
    #[arg(long, value_name = "FILE")]
    restore: Option<PathBuf>,
    /// Where this node keeps its Raft log and snapshots.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to serve peers and clients on (default: this node's address in --peers).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Snapshot when the Raft log passes this many bytes; 0 disables snapshots (default 8 MiB).
    #[arg(long, value_name = "BYTES")]
    max_raft_state: Option<u64>,
    /// Largest value a Put/Append may carry, in bytes (default 16 MiB, at most 32 MiB).
    #[arg(long, value_name = "BYTES")]
    max_value_bytes: Option<usize>,
    /// Real time of one Raft tick, in milliseconds (default 50).
    #[arg(long, value_name = "MS")]
    tick_ms: Option<u64>,
    /// Minimum election timeout in ticks (default 10; each timeout is drawn from [n, 2n)).
    #[arg(long, value_name = "TICKS")]
    election_ticks: Option<u32>,
    /// Heartbeat interval in ticks (default 3).
    #[arg(long, value_name = "TICKS")]
    heartbeat_ticks: Option<u32>,
    /// A request not applied within this many milliseconds gets TIMEOUT (default 3000).
    #[arg(long, value_name = "MS")]
    request_timeout_ms: Option<u64>,
    /// Cluster id: messages from another cluster are dropped (default 1).
    #[arg(long)]
    cluster_id: Option<u64>,
    /// While leading, write the Raft log on a separate thread and keep replicating
    /// meanwhile (raft `Config::pipelined_persist`; off by default, see the README).
    #[arg(long)]
    pipelined_persist: bool,
}

/// The `--config` file: the same keys as the flags.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<u64>,
    /// Either "1=addr,2=addr" or a table `[peers]` with `1 = "addr"`.
    peers: Option<PeersField>,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    max_raft_state: Option<u64>,
    max_value_bytes: Option<usize>,
    tick_ms: Option<u64>,
    election_ticks: Option<u32>,
    heartbeat_ticks: Option<u32>,
    request_timeout_ms: Option<u64>,
    cluster_id: Option<u64>,
    pipelined_persist: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum PeersField {
    List(String),
    Table(BTreeMap<String, String>),
}

#[derive(Debug)]
struct Settings {
    id: u64,
    /// `--restore FILE`.
    restore: Option<PathBuf>,
    /// `--peers` (empty with --join or a JOINED file and no --peers).
    peers: BTreeMap<u64, SocketAddr>,
    /// `--join`: members to ask.
    join: Vec<SocketAddr>,
    join_timeout: Duration,
    data_dir: PathBuf,
    listen: SocketAddr,
    kv: KvConfig,
    tick: Duration,
    election_ticks: u32,
    heartbeat_ticks: u32,
    cluster_id: u64,
    pipelined_persist: bool,
}

/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, SocketAddr>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| {
            format!("--peers entry {part:?} is not ID=HOST:PORT (e.g. 1=127.0.0.1:7001)")
        })?;
        let id: u64 =
            id.trim().parse().ok().filter(|&i| i != 0).ok_or_else(|| {
                format!("--peers entry {part:?}: the id must be a number above 0")
            })?;
        let addr: SocketAddr = addr.trim().parse().map_err(|e| {
            format!("--peers entry {part:?}: {addr:?} is not an IP:PORT address ({e})")
        })?;
        if let Some((other, _)) = out.iter().find(|(_, a)| **a == addr) {
            return Err(format!(
                "--peers gives nodes {other} and {id} the same address {addr}; each node needs its own HOST:PORT"
            ));
        }
        if out.insert(id, addr).is_some() {
            return Err(format!("--peers names node {id} twice"));
        }
    }
    if out.is_empty() {
        return Err("--peers is empty; list every node as ID=HOST:PORT,...".into());
    }
    Ok(out)
}

fn settings(cli: Cli) -> Result<Settings, String> {
    let file: FileConfig = match &cli.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read config file {}: {e}", p.display()))?;
            toml::from_str(&text).map_err(|e| {
                format!(
                    "config file {}: {}",
                    p.display(),
                    e.to_string().replace('\n', " ").trim()
                )
            })?
        }
        None => FileConfig::default(),
    };
    let id = cli
        .id
        .or(file.id)
        .ok_or("missing --id (this node's id, e.g. --id 1)")?;
    if id == 0 {
        return Err("--id must be above 0".into());
    }
    let join = match &cli.join {
        Some(j) => parse_endpoints(j)?,
        None => Vec::new(),
    };
    let data_dir = cli
        .data_dir
        .or(file.data_dir)
        .ok_or("missing --data-dir (where this node keeps its log, e.g. --data-dir data/1)")?;
    // A node that joined once starts from its JOINED file; --peers is optional then.
    let joined = !join.is_empty() || data_dir.join(JOINED_FILE).exists();
    let peers = match (cli.peers, file.peers) {
        (Some(s), _) | (None, Some(PeersField::List(s))) => parse_peers(&s)?,
        (None, Some(PeersField::Table(t))) => parse_peers(
            &t.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        )?,
        (None, None) if joined => BTreeMap::new(),
        (None, None) => {
            return Err(
                "missing --peers (e.g. --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003), or --join to add a node to a running cluster"
                    .into(),
            );
        }
    };
    let listen = cli.listen.or(file.listen);
    let own = match (peers.get(&id), listen) {
        (Some(a), _) => *a,
        (None, Some(l)) if joined => l,
        (None, None) if joined => {
            return Err(format!(
                "--join needs --listen: the address node {id} serves on, as given to `kvcli member add-learner {id} ADDR`"
            ));
        }
        _ => {
            return Err(format!(
                "--peers lists nodes {:?} but not this node's id {id}; add {id}=HOST:PORT or fix --id (a node added to a running cluster starts with --join)",
                peers.keys().collect::<Vec<_>>()
            ));
        }
    };
    let mut kv = KvConfig::default();
    if let Some(m) = cli.max_raft_state.or(file.max_raft_state) {
        kv.max_raft_state = m;
    }
    if let Some(m) = cli.max_value_bytes.or(file.max_value_bytes) {
        if m > 32 * 1024 * 1024 {
            return Err(format!(
                "--max-value-bytes {m} is over 32 MiB; a request must fit in one 64 MiB rpc frame"
            ));
        }
        kv.max_value_bytes = m;
    }
    if let Some(ms) = cli.request_timeout_ms.or(file.request_timeout_ms) {
        kv.request_timeout = Duration::from_millis(ms.max(1));
    }
    let tick_ms = cli.tick_ms.or(file.tick_ms).unwrap_or(50);
    if tick_ms == 0 {
        return Err("--tick-ms must be above 0".into());
    }
    kv.leader_check = Duration::from_millis(tick_ms);
    let election_ticks = cli.election_ticks.or(file.election_ticks).unwrap_or(10);
    let heartbeat_ticks = cli.heartbeat_ticks.or(file.heartbeat_ticks).unwrap_or(3);
    if heartbeat_ticks == 0 || heartbeat_ticks >= election_ticks {
        return Err(format!(
            "--heartbeat-ticks {heartbeat_ticks} must be above 0 and below --election-ticks \
             {election_ticks} (defaults 3 and 10)"
        ));
    }
    if cli.restore.is_some() && !join.is_empty() {
        return Err("--restore and --join do not go together: a restored node starts a new cluster from --peers; a joining node gets its state from the cluster".into());
    }
    Ok(Settings {
        id,
        restore: cli.restore,
        peers,
        join,
        join_timeout: Duration::from_secs(cli.join_timeout_secs.unwrap_or(60).max(1)),
        data_dir,
        listen: listen.unwrap_or(own),
        kv,
        tick: Duration::from_millis(tick_ms),
        election_ticks,
        heartbeat_ticks,
        cluster_id: cli.cluster_id.or(file.cluster_id).unwrap_or(1),
        pipelined_persist: cli.pipelined_persist || file.pipelined_persist.unwrap_or(false),
    })
}

/// Reads and checks a `kvcli snapshot save` file: its checksums, and that its state
/// decodes as a kv snapshot. The member addresses of the old cluster are dropped (the new
/// cluster's members are its --peers).
fn read_backup(f: &std::path::Path) -> Result<proto::backup::Backup, String> {
    let bytes =
        std::fs::read(f).map_err(|e| format!("--restore {}: cannot read it: {e}", f.display()))?;
    let mut b = proto::backup::decode(bytes.into()).map_err(|e| {
        format!(
            "--restore {}: {e}; make a new backup with `kvcli snapshot save`",
            f.display()
        )
    })?;
    let mut state = crate::KvState::new();
    state.restore(&b.state).map_err(|e| {
        format!(
            "--restore {}: the backup's state does not load: {e}",
            f.display()
        )
    })?;
    if state.applied_index() != b.index {
        return Err(format!(
            "--restore {}: the header says index {} but the state is at {}; the file is not from kvcli",
            f.display(),
            b.index,
            state.applied_index()
        ));
    }
    state.clear_members();
    b.state = state.snapshot();
    Ok(b)
}

/// Installs a backup as the first Raft snapshot of an empty data directory: every node of
/// the new cluster does the same with the same file, so their logs start alike at the
/// backup's index and term, with `bootstrap` as the voters.
fn install_backup(
    storage: &mut DiskStorage,
    dir: &std::path::Path,
    f: &std::path::Path,
    b: proto::backup::Backup,
    bootstrap: &[u64],
) -> Result<(), String> {
    let st = storage
        .load()
        .map_err(|e| format!("cannot load data directory {}: {e}", dir.display()))?;
    if st.hard_state.term > 0 || st.snapshot.index > 0 || !st.entries.is_empty() {
        return Err(format!(
            "--restore needs a new, empty data directory, but {} already holds a node's data (term {}, log through {}); restart this node without --restore, or give an empty --data-dir",
            dir.display(),
            st.hard_state.term,
            st.entries.last().map_or(st.snapshot.index, |e| e.index)
        ));
    }
    let hs = raft::HardState {
        term: b.term,
        vote: 0,
        commit: b.index,
    };
    let snap = raft::Snapshot {
        index: b.index,
        term: b.term,
        data: b.state,
        conf: raft::ConfState::from_voters(bootstrap),
    };
    storage.persist(Some(&hs), Some(&snap), &[]).map_err(|e| {
        format!(
            "--restore {}: cannot write it into {}: {e}",
            f.display(),
            dir.display()
        )
    })?;
    log::info!(
        "restored {} (index {}, term {}) into {}",
        f.display(),
        b.index,
        b.term,
        dir.display()
    );
    Ok(())
}

/// Parses `127.0.0.1:7001,127.0.0.1:7002` (for `--join`).
fn parse_endpoints(s: &str) -> Result<Vec<SocketAddr>, String> {
    let out: Vec<SocketAddr> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|e| format!("--join entry {p:?} is not an IP:PORT address ({e})"))
        })
        .collect::<Result<_, _>>()?;
    if out.is_empty() {
        return Err(
            "--join is empty; give the address of at least one member, e.g. --join 127.0.0.1:7001"
                .into(),
        );
    }
    Ok(out)
}

/// The file a joined node keeps in its data directory (see the module docs).
pub const JOINED_FILE: &str = "JOINED";

/// What `JOINED` records: the cluster's bootstrap voters and the members' addresses when
/// this node joined.
#[derive(Debug, PartialEq, Eq)]
struct Joined {
    bootstrap: Vec<u64>,
    peers: BTreeMap<u64, SocketAddr>,
}

fn read_joined(path: &std::path::Path) -> Result<Joined, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let damaged = |what: &str| {
        format!(
            "{} is damaged ({what}); it should hold `bootstrap = 1,2,3` and `peers = 1=HOST:PORT,...` as written by --join",
            path.display()
        )
    };
    let (mut bootstrap, mut peers) = (None, None);
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("bootstrap", v)) => {
                bootstrap = Some(
                    v.split(',')
                        .map(|x| x.trim().parse::<u64>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| damaged("bootstrap is not a list of ids"))?,
                )
            }
            Some(("peers", v)) => peers = Some(parse_peers(v).map_err(|e| damaged(&e))?),
            _ => return Err(damaged(&format!("unknown line {line:?}"))),
        }
    }
    match (bootstrap, peers) {
        (Some(b), Some(p)) if !b.is_empty() => Ok(Joined {
            bootstrap: b,
            peers: p,
        }),
        _ => Err(damaged("a line is missing")),
    }
}

/// Writes `JOINED` atomically: a temporary file, fsync, rename, fsync of the directory.
fn write_joined(dir: &std::path::Path, j: &Joined) -> Result<(), String> {
    use std::io::Write;
    let err = |what: &str, e: std::io::Error| format!("cannot {what} in {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| err("create the directory", e))?;
    let text = format!(
        "# Written by `kvserver --join`: the cluster's bootstrap voters and the members' addresses\n\
         # when this node joined. Later starts read it (no --join needed).\n\
         bootstrap = {}\npeers = {}\n",
        j.bootstrap
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
        j.peers
            .iter()
            .map(|(i, a)| format!("{i}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let tmp = dir.join(format!("{JOINED_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| err("create JOINED.tmp", e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| err("write JOINED.tmp", e))?;
    std::fs::rename(&tmp, dir.join(JOINED_FILE)).map_err(|e| err("rename JOINED.tmp", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err("sync the directory", e))
}

/// Asks the members at `endpoints` for the membership until one lists node `id` (at
/// `listen`) as a learner, or `timeout` passes.
fn join_cluster(
    endpoints: &[SocketAddr],
    id: u64,
    listen: SocketAddr,
    timeout: Duration,
) -> Result<Joined, String> {
    let runtime = rpc::ClientRuntime::global();
    let deadline = std::time::Instant::now() + timeout;
    let mut said_waiting = false;
    let mut last = String::from("no member answered");
    loop {
        for &ep in endpoints {
            let stub = KvServiceClient::new(runtime.channel(ep));
            let r = match stub.member_list(&MemberListRequest {}, Duration::from_secs(2)) {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{ep} did not answer MemberList ({e})");
                    continue;
                }
            };
            let Some(me) = r.members.iter().find(|m| m.id == id) else {
                last = format!(
                    "node {} at {ep} does not list node {id} as a member; run `kvcli member add-learner {id} {listen}` first",
                    r.node_id
                );
                if !said_waiting {
                    eprintln!(
                        "kvserver: waiting up to {} s for the cluster to add node {id} (run `kvcli member add-learner {id} {listen}`)",
                        timeout.as_secs()
                    );
                    said_waiting = true;
                }
                continue;
            };
            if !me.learner {
                return Err(format!(
                    "node {id} is already a voter of the cluster at {ep}; a voter's data directory is never replaced: restart it with its own data directory (without --join), or remove it with `kvcli member remove {id}` and add a new node with a new id"
                ));
            }
            if me.addr.is_empty() {
                // This member has appended the change (the configuration takes effect when
                // appended, thesis §4.1) but not yet applied it (the address comes with the
                // applied entry): ask again.
                last = format!(
                    "node {} at {ep} lists node {id} but has not applied its address yet",
                    r.node_id
                );
                continue;
            }
            if me.addr != listen.to_string() {
                return Err(format!(
                    "the cluster has node {id} at {} but this node listens on {listen}; start it with --listen {} (or remove node {id} and add it again with the right address)",
                    me.addr, me.addr
                ));
            }
            let mut peers = BTreeMap::new();
            for m in &r.members {
                if m.id != id
                    && let Ok(a) = m.addr.parse()
                {
                    peers.insert(m.id, a);
                }
            }
            if r.bootstrap_voters.is_empty() {
                return Err(format!(
                    "node {} at {ep} did not say the cluster's bootstrap voters (an older kvserver?)",
                    r.node_id
                ));
            }
            return Ok(Joined {
                bootstrap: r.bootstrap_voters,
                peers,
            });
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "could not join within {} s: {last} (--join-timeout-secs sets the wait)",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The bootstrap voters and the peer addresses this node starts with: from --peers for a
/// bootstrap node; from `JOINED` for a node that joined before; from the cluster (and then
/// written to `JOINED`) for a node starting with --join.
fn membership(s: &Settings) -> Result<(Vec<u64>, BTreeMap<u64, SocketAddr>), String> {
    let path = s.data_dir.join(JOINED_FILE);
    if path.exists() {
        let j = read_joined(&path)?;
        if !s.join.is_empty() {
            log::info!(
                "node {}: joined before ({}); --join is not needed any more",
                s.id,
                path.display()
            );
        }
        let mut peers = j.peers;
        peers.extend(s.peers.iter().map(|(i, a)| (*i, *a)));
        return Ok((j.bootstrap, peers));
    }
    if s.join.is_empty() {
        return Ok((s.peers.keys().copied().collect(), s.peers.clone()));
    }
    if let Ok(mut entries) = std::fs::read_dir(&s.data_dir)
        && entries.next().is_some()
    {
        return Err(format!(
            "--join starts a new node, but data directory {} is not empty; give a new, empty directory (a node that already has data restarts without --join)",
            s.data_dir.display()
        ));
    }
    let j = join_cluster(&s.join, s.id, s.listen, s.join_timeout)?;
    write_joined(&s.data_dir, &j)?;
    let mut peers = j.peers;
    peers.extend(s.peers.iter().map(|(i, a)| (*i, *a)));
    log::info!(
        "node {}: joining the cluster (bootstrap voters {:?}, members {:?})",
        s.id,
        j.bootstrap,
        peers
    );
    Ok((j.bootstrap, peers))
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("kvserver: error: {msg}");
    ExitCode::from(2)
}

/// `n` distinct free loopback addresses for local nodes (kvcluster, kv-bench `--spawn`,
/// tests): all `n` are bound at once, so none is handed out twice, then released for the
/// nodes to bind. Another process may still take one in between; the node then fails with
/// "address in use" and says so.
pub fn free_loopback_ports(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    ls.iter().map(|l| l.local_addr()).collect()
}

/// Runs one node with these command-line arguments (the first is the program name) until
/// SIGTERM or Ctrl-C; returns the exit code described in the module docs.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .try_init();
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let s = match settings(cli) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // Fail on a busy port before touching the data directory.
    if let Err(e) = std::net::TcpListener::bind(s.listen) {
        return fail(if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "port {} is in use (another kvserver?); stop that process or pick another address with --listen/--peers",
                s.listen
            )
        } else {
            format!("cannot listen on {}: {e}", s.listen)
        });
    }
    let (bootstrap, book) = match membership(&s) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let mut cfg = Config::new(s.id, bootstrap.clone());
    cfg.cluster_id = s.cluster_id;
    // Creates the directory if missing; refuses one of another cluster or node, one that
    // another process holds (naming its pid), and damaged files (naming file and offset).
    // Read and check a backup before the data directory is created.
    let backup = match &s.restore {
        Some(f) => match read_backup(f) {
            Ok(b) => Some(b),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let mut storage = match DiskStorage::open(&s.data_dir, DiskOptions::from_config(&cfg)) {
        Ok(st) => st,
        Err(e) => {
            let text = e.to_string();
            let hint = if text.contains("Permission denied") || text.contains("not permitted") {
                "; run kvserver as a user that may read and write this directory, or choose another with --data-dir"
            } else {
                ""
            };
            return fail(format!(
                "data directory {}: {text}{hint}",
                s.data_dir.display()
            ));
        }
    };
    if let Some((f, b)) = s.restore.as_ref().zip(backup)
        && let Err(e) = install_backup(&mut storage, &s.data_dir, f, b, &bootstrap)
    {
        return fail(e);
    }
    let snapshot = match storage.load() {
        Ok(st) => Some(st.snapshot),
        Err(e) => {
            return fail(format!(
                "cannot load data directory {}: {e}",
                s.data_dir.display()
            ));
        }
    };
    cfg.election_tick = s.election_ticks;
    cfg.heartbeat_tick = s.heartbeat_ticks;
    cfg.pipelined_persist = s.pipelined_persist;
    cfg.seed = u64::from(std::process::id()) ^ s.id.rotate_left(32);
    let others: BTreeMap<u64, SocketAddr> = book
        .iter()
        .filter(|(i, _)| **i != s.id)
        .map(|(i, a)| (*i, *a))
        .collect();
    let runtime = rpc::ClientRuntime::global();
    let peer_book = PeerBook::new(&others);
    let transport = RpcTransport::with_book(&runtime, peer_book.clone());
    let (node, apply) = match Node::spawn(cfg, storage, transport, s.tick) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let intake = RaftIntake::new();
    intake.set_mailbox(Some(node.mailbox()));
    let kv = match KvNode::start(
        s.id,
        s.kv.clone(),
        node,
        apply,
        snapshot,
        peer_book,
        bootstrap,
    ) {
        Ok(kv) => kv,
        Err(e) => return fail(e),
    };
    let server = match rpc::ServerBuilder::new()
        .register_inline(intake.service())
        .register_inline(KvServiceServer::new(kv.handlers()))
        .bind(s.listen)
    {
        Ok(srv) => srv,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return fail(format!(
                "port {} is in use (another kvserver?); stop that process or pick another address with --listen/--peers",
                s.listen
            ));
        }
        Err(e) => return fail(format!("cannot listen on {}: {e}", s.listen)),
    };
    kv.set_listen_addr(server.local_addr().to_string());
    log::info!(
        "node {} serving peers and clients on {} (cluster {}, peers {:?}, data {}, max_raft_state {} bytes)",
        s.id,
        server.local_addr(),
        s.cluster_id,
        book,
        s.data_dir.display(),
        s.kv.max_raft_state
    );
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    }) {
        return fail(format!("cannot install the SIGTERM/Ctrl-C handler: {e}"));
    }
    let fatal = kv.fatal_signal().clone();
    crossbeam_channel::select! {
        recv(stop_rx) -> _ => log::info!("node {}: stopping (signal)", s.id),
        recv(fatal) -> _ => {}
    }
    intake.set_mailbox(None);
    drop(server); // releases the port
    let result = kv.shutdown();
    match result {
        None => {
            log::info!("node {}: stopped", s.id);
            ExitCode::SUCCESS
        }
        Some(f) => {
            eprintln!("kvserver: node {} stopped: {f}", s.id);
            ExitCode::from(1)
        }
    }
}
