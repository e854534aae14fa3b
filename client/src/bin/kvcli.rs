//! `kvcli`: talk to a raftkv cluster from the shell.
//!
//! ```text
//! kvcli put greeting hello          # OK
//! kvcli append greeting ", world"   # OK
//! kvcli put photo < photo.jpg       # OK (no VALUE: read from stdin, any bytes, any size)
//! kvcli get greeting                # hello, world
//! kvcli delete greeting             # deleted
//! kvcli status                      # one row per node: role, term, leader, indexes
//! kvcli status -w json
//! kvcli --endpoints 1=10.0.0.1:7001,2=10.0.0.2:7001,3=10.0.0.3:7001 get k
//! kvcli member list                 # voters and learners with their addresses
//! kvcli member add-learner 4 10.0.0.4:7001
//! kvcli member promote 4            # once it caught up (refused while it lags)
//! kvcli member remove 3
//! kvcli transfer-leader 2           # move leadership before maintenance
//! kvcli snapshot save backup.rkv    # the whole key-value state, for kvserver --restore
//! ```
//!
//! Endpoints come from `--endpoints`, else `RAFTKV_ENDPOINTS`, else the file `./data/endpoints`
//! that `kvcluster` writes, else the ports `kvcluster` tries first (127.0.0.1:7001-7003).
//!
//! Exit status: 0 success; 1 the key was not found (`get`, `delete`); 2 any error (bad
//! arguments, no leader reachable before the deadline, a request refused, a node
//! unreachable in `status`). Errors go to stderr in one paragraph that names the nodes
//! tried and what to do.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use client::{Clerk, ENDPOINTS_ENV, Endpoint, Error, parse_endpoints};
use proto::kv::{KvServiceClient, Role, StatusReply, StatusRequest};

/// The endpoints file that `kvcluster` writes (relative to the working directory).
const CLUSTER_FILE: &str = "data/endpoints";
/// Where `kvcluster` puts its nodes when those ports are free.
const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

#[derive(Parser, Debug)]
#[command(
    name = "kvcli",
    version,
    about = "Reads and writes a raftkv cluster; shows its nodes' status.",
    after_help = "Endpoints: --endpoints, else $RAFTKV_ENDPOINTS, else ./data/endpoints \
                  (written by kvcluster), else 127.0.0.1:7001-7003.\n\
                  Exit status: 0 ok, 1 key not found, 2 error."
)]
struct Cli {
    /// The cluster's nodes: ID=HOST:PORT,... or HOST:PORT,... (ids 1, 2, ... by position).
    #[arg(long, global = true, value_name = "LIST")]
    endpoints: Option<String>,
    /// Give up after this many seconds (retries across nodes included).
    #[arg(long, global = true, default_value_t = 5.0, value_name = "SECS")]
    timeout: f64,
    /// Output format.
    #[arg(short = 'w', long = "write-out", global = true, value_enum, default_value_t = Out::Table)]
    write_out: Out,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Out {
    /// Text for people.
    Table,
    /// One JSON document on stdout.
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print the value of KEY (exit 1 if it does not exist).
    Get { key: String },
    /// Set KEY to VALUE (without VALUE: the bytes on stdin, e.g. `kvcli put k < file`).
    Put { key: String, value: Option<String> },
    /// Append VALUE to KEY's value (a missing key counts as empty; without VALUE: stdin).
    Append { key: String, value: Option<String> },
    /// Remove KEY (exit 1 if it did not exist).
    #[command(alias = "del")]
    Delete { key: String },
    /// Show every node's role, term, leader, commit and applied index, log and snapshot.
    Status,
    /// List or change the cluster's members (single-server changes, one at a time).
    #[command(subcommand)]
    Member(MemberCmd),
    /// Move leadership to voter ID (Raft thesis 3.10) and wait until it leads.
    TransferLeader {
        /// The voter to lead.
        id: u64,
    },
    /// Back up the key-value state (`snapshot save FILE`).
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
}

#[derive(Subcommand, Debug)]
enum SnapshotCmd {
    /// Write a consistent image of the whole key-value state, taken by the leader (or,
    /// with --endpoints naming one node, by that node) at its applied log index, to FILE
    /// (written atomically, checksummed). Restore with `kvserver --restore FILE` into new,
    /// empty data directories.
    Save {
        /// The backup file to write.
        file: std::path::PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum MemberCmd {
    /// The voters and learners with their addresses, as the leader sees them.
    List,
    /// Add node ID serving at ADDR (HOST:PORT) as a learner: it gets the log but does not
    /// vote. Then start it with `kvserver --id ID --listen ADDR --data-dir DIR --join ...`.
    AddLearner {
        /// The new node's id (not used by any member).
        id: u64,
        /// The address the new node will listen on (its --listen).
        addr: String,
    },
    /// Make learner ID a voter (refused while it has not caught up: retry).
    Promote {
        /// The learner.
        id: u64,
    },
    /// Remove voter or learner ID (refused for the last voter).
    Remove {
        /// The node to remove.
        id: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("kvcli: {msg}");
            ExitCode::from(2)
        }
    }
}

/// The endpoint list and, for messages, where it came from.
fn endpoints(cli: &Cli) -> Result<(Vec<Endpoint>, String), String> {
    let (text, source) = if let Some(e) = &cli.endpoints {
        (e.clone(), "--endpoints".to_string())
    } else if let Ok(e) = std::env::var(ENDPOINTS_ENV) {
        (e, format!("${ENDPOINTS_ENV}"))
    } else if let Ok(e) = std::fs::read_to_string(CLUSTER_FILE) {
        let p = Path::new(CLUSTER_FILE);
        let shown = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        (e, format!("{} (written by kvcluster)", shown.display()))
    } else {
        (
            DEFAULT_ENDPOINTS.to_string(),
            "the default (no --endpoints, no $RAFTKV_ENDPOINTS, no ./data/endpoints)".into(),
        )
    };
    let eps = parse_endpoints(&text).map_err(|e| format!("{e} (from {source})"))?;
    Ok((eps, source))
}

fn run(cli: &Cli) -> Result<ExitCode, String> {
    if !(cli.timeout.is_finite() && cli.timeout > 0.0 && cli.timeout < 1e9) {
        return Err(format!(
            "--timeout {}: give a positive number of seconds",
            cli.timeout
        ));
    }
    let timeout = Duration::from_secs_f64(cli.timeout);
    let (eps, source) = endpoints(cli)?;
    if let Cmd::Status = cli.command {
        return status(&eps, &source, timeout, cli.write_out);
    }
    let kv = Clerk::builder(eps.clone())
        .deadline(timeout)
        .attempt_timeout(timeout.min(Duration::from_secs(1)))
        .build();
    let explain = |e: Error| -> String {
        match e {
            Error::DeadlineExceeded {
                unknown_leader: Some(_),
                ..
            } => format!("{e}. Endpoints from {source}."),
            Error::DeadlineExceeded { .. } => format!(
                "{e}. Endpoints from {source}. Is the cluster running? \
                 `cargo run --release --bin kvcluster` starts a local one; \
                 `kvcli status` shows what each node sees."
            ),
            other => other.to_string(),
        }
    };
    let json = cli.write_out == Out::Json;
    let mut out = std::io::stdout().lock();
    let print = |out: &mut std::io::StdoutLock<'_>, text: String| {
        // A closed pipe (`kvcli get k | head -c0`) is not an error of ours.
        let _ = writeln!(out, "{text}");
    };
    match &cli.command {
        Cmd::Get { key } => match kv.get(key).map_err(explain)? {
            Some(v) => {
                if json {
                    let v = String::from_utf8_lossy(&v);
                    print(
                        &mut out,
                        serde_json::json!({"key": key, "found": true, "value": v}).to_string(),
                    );
                } else {
                    let _ = out.write_all(&v);
                    let _ = out.write_all(b"\n");
                }
                Ok(ExitCode::SUCCESS)
            }
            None => {
                if json {
                    print(
                        &mut out,
                        serde_json::json!({"key": key, "found": false, "value": null}).to_string(),
                    );
                }
                eprintln!("kvcli: key {key:?} not found");
                Ok(ExitCode::from(1))
            }
        },
        Cmd::Put { key, value } | Cmd::Append { key, value } => {
            let value = value_or_stdin(value.as_deref())?;
            if matches!(cli.command, Cmd::Put { .. }) {
                kv.put(key, value).map_err(explain)?;
            } else {
                kv.append(key, value).map_err(explain)?;
            }
            if json {
                print(
                    &mut out,
                    serde_json::json!({"key": key, "ok": true}).to_string(),
                );
            } else {
                print(&mut out, "OK".into());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Delete { key } => {
            let existed = kv.delete(key).map_err(explain)?;
            if json {
                print(
                    &mut out,
                    serde_json::json!({"key": key, "deleted": existed}).to_string(),
                );
            } else if existed {
                print(&mut out, "deleted".into());
            }
            if existed {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("kvcli: key {key:?} not found; nothing deleted");
                Ok(ExitCode::from(1))
            }
        }
        Cmd::Status => unreachable!("handled above"),
        Cmd::Member(MemberCmd::List) => {
            let m = kv.members().map_err(explain)?;
            if json {
                let list: Vec<_> = m
                    .members
                    .iter()
                    .map(|x| {
                        serde_json::json!({"id": x.id, "address": x.addr, "learner": x.learner,
                                           "leader": x.id == m.leader})
                    })
                    .collect();
                print(&mut out, serde_json::Value::Array(list).to_string());
            } else {
                let mut table = vec![vec!["ID".to_string(), "ADDRESS".into(), "ROLE".into()]];
                for x in &m.members {
                    let role = match (x.learner, x.id == m.leader) {
                        (true, _) => "learner",
                        (false, true) => "voter (leader)",
                        (false, false) => "voter",
                    };
                    let addr = if x.addr.is_empty() {
                        "?".to_string()
                    } else {
                        x.addr.clone()
                    };
                    table.push(vec![x.id.to_string(), addr, role.into()]);
                }
                print_table(&table);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Member(MemberCmd::AddLearner { id, addr }) => {
            let index = kv.add_learner(*id, addr).map_err(explain)?;
            done(
                &mut out,
                json,
                *id,
                index,
                &format!(
                    "node {id} added as a learner at {addr} (log index {index}); now start it: \
                 kvserver --id {id} --listen {addr} --data-dir DIR --join {}",
                    kv.endpoints()
                        .iter()
                        .map(|e| e.addr.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Member(MemberCmd::Promote { id }) => {
            let index = kv.promote(*id).map_err(explain)?;
            done(
                &mut out,
                json,
                *id,
                index,
                &format!("node {id} is a voter (log index {index})"),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Member(MemberCmd::Remove { id }) => {
            let index = kv.remove_member(*id).map_err(explain)?;
            done(
                &mut out,
                json,
                *id,
                index,
                &format!(
                    "node {id} removed (log index {index}); stop its process, and never restart it with its old data directory"
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Snapshot(SnapshotCmd::Save { file, force }) => {
            if file.is_dir() {
                return Err(format!("{} is a directory; name a file", file.display()));
            }
            if file.exists() && !force {
                return Err(format!(
                    "{} exists; give another name, or --force to replace it",
                    file.display()
                ));
            }
            let dir = backup_dir(file);
            if !dir.is_dir() {
                return Err(format!(
                    "cannot write {}: the directory {} does not exist",
                    file.display(),
                    dir.display()
                ));
            }
            // The leader's image is the freshest; any node's is consistent.
            let first = kv
                .members()
                .ok()
                .and_then(|m| eps.iter().position(|e| e.id == m.leader))
                .unwrap_or(0);
            let order: Vec<usize> = (0..eps.len()).map(|i| (first + i) % eps.len()).collect();
            let mut last = String::new();
            for i in order {
                match fetch_image(&eps[i], timeout) {
                    Ok((index, term, state)) => {
                        let bytes = state.len();
                        write_backup(file, &proto::backup::encode(index, term, &state))?;
                        if json {
                            print(
                                &mut out,
                                serde_json::json!({"file": file.display().to_string(), "address": eps[i].addr.to_string(),
                                                   "index": index, "term": term, "bytes": bytes})
                                .to_string(),
                            );
                        } else {
                            print(
                                &mut out,
                                format!(
                                    "saved the state of the node at {} at log index {index} (term {term}), {bytes} bytes, to {}",
                                    eps[i].addr,
                                    file.display()
                                ),
                            );
                        }
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(e) => {
                        eprintln!("kvcli: {}: {e}", eps[i].addr);
                        last = e;
                    }
                }
            }
            Err(format!(
                "no node gave a snapshot ({last}); endpoints from {source}"
            ))
        }
        Cmd::TransferLeader { id } => {
            let t0 = std::time::Instant::now();
            kv.transfer_leader(*id).map_err(explain)?;
            // The transfer started; it ends within an election timeout. Watch for it.
            loop {
                match kv.members() {
                    Ok(m) if m.leader == *id => {
                        done(
                            &mut out,
                            json,
                            *id,
                            0,
                            &format!("node {id} leads (after {:.0?})", t0.elapsed()),
                        );
                        return Ok(ExitCode::SUCCESS);
                    }
                    _ if t0.elapsed() >= timeout => {
                        return Err(format!(
                            "the transfer to node {id} started but node {id} did not become leader within {timeout:.1?} \
                             (it was abandoned, or is still under way); `kvcli member list` shows the leader"
                        ));
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

/// The directory a backup file goes into.
fn backup_dir(file: &std::path::Path) -> std::path::PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}

/// Reads node `ep`'s key-value image chunk by chunk and checks its size and CRC.
/// Returns (index, term, state).
fn fetch_image(ep: &Endpoint, timeout: Duration) -> Result<(u64, u64, Vec<u8>), String> {
    use proto::kv::{ErrorCode, SnapshotChunkRequest};
    let stub = KvServiceClient::new(rpc::Channel::new(ep.addr));
    let call = |offset: u64, index: u64| {
        let r = stub
            .snapshot_chunk(&SnapshotChunkRequest { offset, index }, timeout)
            .map_err(|e| format!("SnapshotChunk failed: {e}"))?;
        if r.err != ErrorCode::Ok as i32 {
            return Err(format!("refused: {}", r.error_text));
        }
        Ok(r)
    };
    let first = call(0, 0)?;
    let (index, term, total, crc) = (first.index, first.term, first.total, first.crc);
    // `total` is the server's word: reserve at most 64 MiB up front, grow past it as bytes come.
    let mut state = Vec::with_capacity(total.min(64 << 20) as usize);
    state.extend_from_slice(&first.chunk);
    let loud = total > 8 << 20 && std::io::stderr().is_terminal();
    let mut shown = std::time::Instant::now();
    while (state.len() as u64) < total {
        let r = call(state.len() as u64, index)?;
        if r.chunk.is_empty() || r.index != index {
            return Err(format!(
                "the image changed or ended early at byte {} of {total}; try again",
                state.len()
            ));
        }
        state.extend_from_slice(&r.chunk);
        if loud && shown.elapsed() >= Duration::from_secs(1) {
            eprint!(
                "\rkvcli: snapshot: {} / {} MiB",
                state.len() >> 20,
                total >> 20
            );
            shown = std::time::Instant::now();
        }
    }
    if loud {
        eprintln!();
    }
    if state.len() as u64 != total || crc32fast::hash(&state) != crc {
        return Err(format!(
            "the image read ({} bytes) does not match its size ({total}) or checksum; try again",
            state.len()
        ));
    }
    Ok((index, term, state))
}

/// Writes `bytes` to `file` atomically: a temporary file beside it, fsync, rename, fsync
/// of the directory.
fn write_backup(file: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let dir = backup_dir(file);
    let name = file
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", file.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", file.display()));
    }
    Ok(())
}

/// Prints the outcome of a membership command.
fn done(out: &mut std::io::StdoutLock<'_>, json: bool, id: u64, index: u64, text: &str) {
    let line = if json {
        serde_json::json!({"node": id, "ok": true, "index": index}).to_string()
    } else {
        text.to_string()
    };
    let _ = writeln!(out, "{line}");
}

/// VALUE from the command line, else all of stdin (for values too large for an argument,
/// or binary ones). A terminal on stdin is refused rather than waited on.
fn value_or_stdin(value: Option<&str>) -> Result<Vec<u8>, String> {
    if let Some(v) = value {
        return Ok(v.as_bytes().to_vec());
    }
    let mut stdin = std::io::stdin().lock();
    if stdin.is_terminal() {
        return Err(
            "missing VALUE: give it after KEY, or pipe it in (`kvcli put KEY < FILE`)".into(),
        );
    }
    let mut buf = Vec::new();
    stdin
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read VALUE from stdin: {e}"))?;
    Ok(buf)
}

fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Leader) => "leader",
        Ok(Role::Follower) => "follower",
        Ok(Role::Candidate) => "candidate",
        Ok(Role::PreCandidate) => "pre-candidate",
        Ok(Role::Unknown) | Err(_) => "unknown",
    }
}

/// Asks every node at once; prints a table (or JSON) of those that answered and one line
/// per node that did not. Exit 2 if any node did not answer.
fn status(eps: &[Endpoint], source: &str, timeout: Duration, w: Out) -> Result<ExitCode, String> {
    let (tx, rx) = mpsc::channel();
    let stubs: Vec<_> = eps
        .iter()
        .map(|e| KvServiceClient::new(rpc::Channel::new(e.addr)))
        .collect();
    for (i, stub) in stubs.iter().enumerate() {
        let tx = tx.clone();
        stub.status_async(&StatusRequest {}, timeout, move |r| {
            let _ = tx.send((i, r));
        });
    }
    drop(tx);
    let mut results: Vec<Option<Result<StatusReply, String>>> = vec![None; eps.len()];
    // Every call ends (reply, error or its timeout), so this loop ends.
    while let Ok((i, r)) = rx.recv() {
        results[i] = Some(r.map_err(|e| match e {
            rpc::CallError::Timeout => format!("no answer within {timeout:.1?}"),
            rpc::CallError::Unavailable {
                reason,
                source: Some(s),
            } => format!("{reason}: {s}"),
            other => other.to_string(),
        }));
    }
    let mut failed = vec![];
    let mut rows = vec![];
    for (e, r) in eps.iter().zip(results) {
        match r {
            Some(Ok(s)) => rows.push((e, s)),
            Some(Err(msg)) => failed.push((e, msg)),
            None => failed.push((e, "no answer".into())),
        }
    }
    if w == Out::Json {
        let mut list = vec![];
        for (e, s) in &rows {
            list.push(serde_json::json!({
                "node": e.id,
                "address": e.addr.to_string(),
                "reachable": true,
                "node_id": s.node_id,
                "role": role_name(s.role),
                "term": s.term,
                "leader": s.leader_id,
                "commit_index": s.commit_index,
                "applied_index": s.applied_index,
                "last_log_index": s.last_log_index,
                "log_bytes": s.log_bytes,
                "snapshot_index": s.snapshot_index,
                "snapshot_bytes": s.snapshot_bytes,
                "max_raft_state": s.max_raft_state,
                "key_count": s.key_count,
                "uptime_ms": s.uptime_ms,
                "voters": s.voters,
                "learners": s.learners,
            }));
        }
        for (e, msg) in &failed {
            list.push(serde_json::json!({
                "node": e.id, "address": e.addr.to_string(), "reachable": false, "error": msg,
            }));
        }
        println!("{}", serde_json::Value::Array(list));
    } else {
        let header = [
            "NODE",
            "ADDRESS",
            "ROLE",
            "TERM",
            "LEADER",
            "COMMIT",
            "APPLIED",
            "LOG BYTES",
            "SNAPSHOT INDEX",
        ];
        let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
        for (e, s) in &rows {
            table.push(vec![
                // The node's own id (bare endpoints get ids by position, which need not be
                // the real ones after a membership change).
                if s.node_id != 0 { s.node_id } else { e.id }.to_string(),
                e.addr.to_string(),
                if s.learners.contains(&s.node_id) {
                    "learner".into()
                } else {
                    role_name(s.role).into()
                },
                s.term.to_string(),
                if s.leader_id == 0 {
                    "-".into()
                } else {
                    s.leader_id.to_string()
                },
                s.commit_index.to_string(),
                s.applied_index.to_string(),
                s.log_bytes.to_string(),
                s.snapshot_index.to_string(),
            ]);
        }
        for (e, msg) in &failed {
            let mut row = vec![e.id.to_string(), e.addr.to_string(), "unreachable".into()];
            row.extend(std::iter::repeat_n("-".to_string(), header.len() - 3));
            let _ = msg;
            table.push(row);
        }
        print_table(&table);
    }
    for (e, msg) in &failed {
        eprintln!("kvcli: node {} at {} did not answer: {msg}", e.id, e.addr);
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let hint = if rows.is_empty() {
        format!(
            "no node answered (endpoints from {source}). Is the cluster running? \
             `cargo run --release --bin kvcluster` starts a local one."
        )
    } else {
        "check that the missing nodes are running and reachable; the cluster serves while a \
         majority is up."
            .to_string()
    };
    eprintln!("kvcli: {hint}");
    Ok(ExitCode::from(2))
}

fn print_table(rows: &[Vec<String>]) {
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<w$}", w = widths[c]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
}
