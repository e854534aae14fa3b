//! `raft-viz`: runs a simulated Raft cluster and writes one self-contained HTML page that
//! shows the run (see `testkit::viz` for what the page shows and how to drive it).
//!
//! ```text
//! cargo run --release -p testkit --bin raft-viz -- --scenario figure8 --out figure8.html
//! cargo run --release -p testkit --bin raft-viz -- --seed 215673 --out chaos.html
//! cargo run --release -p testkit --bin raft-viz -- --seed 7 --faults crash,partition --out c.html
//! cargo run --release -p testkit --bin raft-viz -- --list
//! ```
//!
//! `--scenario NAME` runs a test of `tests/lab3.rs` or `tests/scenarios.rs` by its name
//! (`--seed` then replays that scenario with another seed, like `SEED=`); `--seed N` alone
//! runs chaos seed N exactly as the `chaos` test does (`--faults` narrows the kinds of
//! fault, which makes it a different run). A run that fails a check is drawn up to the
//! failure, the failure is shown at the top, and the exit status is 1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use testkit::chaos::{self, Faults};
use testkit::record::{self, Recording};
use testkit::viz::{self, Caption};

#[path = "../../tests/lab3.rs"]
mod lab3;
#[path = "../../tests/scenarios.rs"]
mod scenarios;

/// A scenario: name, what to look for, the function.
type Scenario = (&'static str, &'static str, fn());

/// Every scenario `--scenario` accepts.
const SCENARIOS: &[Scenario] = &[
    (
        "figure8",
        "The paper's Figure 8 (§5.4.2), staged: an entry of an old term copied to a majority \
         is not committed by counting replicas; a node holding a newer-term entry at that index \
         is elected and overwrites it. Press \"next election\" to walk through (a)-(e).",
        scenarios::figure8_staged_old_term_entry_not_committed_by_counting,
    ),
    (
        "initial_election_3a",
        "Lab 3A: one leader elected, terms agree, nothing changes without failures.",
        lab3::initial_election_3a,
    ),
    (
        "re_election_3a",
        "Lab 3A: the leader is disconnected, a new one is elected; no leader without a majority.",
        lab3::re_election_3a,
    ),
    (
        "many_elections_3a",
        "Lab 3A: seven nodes, three random ones disconnected ten times.",
        lab3::many_elections_3a,
    ),
    (
        "basic_agree_3b",
        "Lab 3B: three commands commit at consecutive indexes.",
        lab3::basic_agree_3b,
    ),
    (
        "rpc_bytes_3b",
        "Lab 3B: each 5000-byte command is sent to each follower once.",
        lab3::rpc_bytes_3b,
    ),
    (
        "follower_failure_3b",
        "Lab 3B: progress with one follower gone; none with both gone.",
        lab3::follower_failure_3b,
    ),
    (
        "leader_failure_3b",
        "Lab 3B: the leader is disconnected mid-stream; a new leader carries on.",
        lab3::leader_failure_3b,
    ),
    (
        "fail_agree_3b",
        "Lab 3B: a disconnected follower catches up after it returns.",
        lab3::fail_agree_3b,
    ),
    (
        "fail_no_agree_3b",
        "Lab 3B: three of five disconnected: proposals are accepted but never commit.",
        lab3::fail_no_agree_3b,
    ),
    (
        "concurrent_starts_3b",
        "Lab 3B: five proposals at once in one term.",
        lab3::concurrent_starts_3b,
    ),
    (
        "rejoin_3b",
        "Lab 3B: a partitioned old leader with uncommitted entries rejoins and is overwritten.",
        lab3::rejoin_3b,
    ),
    (
        "backup_3b",
        "Lab 3B: fast backtracking over long divergent logs.",
        lab3::backup_3b,
    ),
    (
        "count_3b",
        "Lab 3B: how many RPCs an election and ten commands take.",
        lab3::count_3b,
    ),
    (
        "persist1_3c",
        "Lab 3C: state survives crashes of all nodes, of the leader, of a follower.",
        lab3::persist1_3c,
    ),
    (
        "persist2_3c",
        "Lab 3C: rounds of partitions, crashes and restarts.",
        lab3::persist2_3c,
    ),
    (
        "persist3_3c",
        "Lab 3C: a partitioned leader and a follower crash; the leader restarts.",
        lab3::persist3_3c,
    ),
    (
        "figure8_3c",
        "Lab 3C Figure 8: the leader is crashed again and again; nothing committed is lost (long).",
        lab3::figure8_3c,
    ),
    (
        "unreliable_agree_3c",
        "Lab 3C: agreement over a network that loses 10% of messages.",
        lab3::unreliable_agree_3c,
    ),
    (
        "figure8_unreliable_3c",
        "Lab 3C Figure 8 over an unreliable, reordering network (long).",
        lab3::figure8_unreliable_3c,
    ),
    (
        "reliable_churn_3c",
        "Lab 3C: clients while nodes are disconnected, crashed and restarted (long).",
        lab3::reliable_churn_3c,
    ),
    (
        "unreliable_churn_3c",
        "Lab 3C: the same churn over an unreliable network (long).",
        lab3::unreliable_churn_3c,
    ),
    (
        "snapshot_basic_3d",
        "Lab 3D: the service snapshots every 10 commands; the log is trimmed.",
        lab3::snapshot_basic_3d,
    ),
    (
        "snapshot_install_3d",
        "Lab 3D: a disconnected follower catches up through InstallSnapshot.",
        lab3::snapshot_install_3d,
    ),
    (
        "snapshot_install_unreliable_3d",
        "Lab 3D: InstallSnapshot over an unreliable network.",
        lab3::snapshot_install_unreliable_3d,
    ),
    (
        "snapshot_install_crash_3d",
        "Lab 3D: a crashed follower restarts from its snapshot and log.",
        lab3::snapshot_install_crash_3d,
    ),
    (
        "snapshot_install_uncrash_3d",
        "Lab 3D: crashes over an unreliable network.",
        lab3::snapshot_install_uncrash_3d,
    ),
    (
        "snapshot_all_crash_3d",
        "Lab 3D: all nodes crash and restart; no index goes backwards.",
        lab3::snapshot_all_crash_3d,
    ),
    (
        "snapshot_init_3d",
        "Lab 3D: the snapshot survives a restart followed by more persists.",
        lab3::snapshot_init_3d,
    ),
    (
        "prevote",
        "PreVote: a node cut off for a long time does not disrupt the leader when it returns.",
        scenarios::prevote_rejoining_node_does_not_disrupt,
    ),
    (
        "check_quorum_lease",
        "CheckQuorum lease: a half-connected node campaigns; the others refuse to vote.",
        scenarios::check_quorum_lease_protects_leader_from_half_connected_node,
    ),
    (
        "check_quorum_step_down",
        "CheckQuorum: an isolated leader steps down; the majority elects another.",
        scenarios::check_quorum_isolated_leader_steps_down,
    ),
    (
        "one_way_deaf_leader",
        "A leader that can send but not hear steps down and is replaced.",
        scenarios::one_way_deaf_leader_is_replaced,
    ),
    (
        "read_index",
        "ReadIndex: a heartbeat round confirms leadership; no log write.",
        scenarios::read_index,
    ),
    (
        "read_index_new_leader",
        "ReadIndex on a new leader waits for its no-op to commit (thesis §6.4).",
        scenarios::read_index_on_new_leader_waits_for_its_first_commit,
    ),
    (
        "vote_durable",
        "A vote is persisted before it is sent, across a crash.",
        scenarios::vote_is_durable_before_it_is_sent,
    ),
    (
        "leader_own_copy",
        "A slow leader disk: its own copy counts only once persisted.",
        scenarios::leader_counts_own_entries_only_once_persisted,
    ),
    (
        "fast_backtracking",
        "Fast backtracking: a lagging follower and a divergent old leader catch up in few round trips.",
        scenarios::fast_backtracking_needs_few_round_trips,
    ),
    (
        "log_went_backwards",
        "A follower restarts with an empty disk; the leader notices and catches it up.",
        scenarios::follower_whose_log_went_backwards_catches_up_without_a_storm,
    ),
    (
        "bad_input",
        "Injected malformed messages are dropped and counted.",
        scenarios::bad_input_is_dropped_and_counted,
    ),
];

/// Draws a simulated Raft run as one self-contained HTML page.
#[derive(Parser, Debug)]
#[command(name = "raft-viz")]
struct Args {
    /// A scenario by name (see --list): a lab 3 test, a scenario test, or "figure8".
    #[arg(long, value_name = "NAME")]
    scenario: Option<String>,
    /// Alone: the chaos seed to run. With --scenario: the seed for that scenario.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Kinds of fault for a chaos seed: all (the chaos test), none, or a comma-separated
    /// list of crash, crash-in-ready, partition, one-way, disconnect, loss, duplicate,
    /// long-delay, slow-disk.
    #[arg(long, value_name = "LIST", default_value = "all")]
    faults: String,
    /// Where to write the page.
    #[arg(long, value_name = "FILE.html", default_value = "run.html")]
    out: PathBuf,
    /// Which simulated cluster to draw when a scenario creates several (0 = the first).
    #[arg(long, value_name = "K", default_value_t = 0)]
    run: usize,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "a check failed (no message)".to_owned()
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for (name, about, _) in SCENARIOS {
            println!("{name:32} {about}");
        }
        return ExitCode::SUCCESS;
    }
    let faults = match Faults::parse(&args.faults) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("raft-viz: --faults: {e}");
            return ExitCode::from(2);
        }
    };
    let (result, recs, mut caption) = match (&args.scenario, args.seed) {
        (Some(name), seed) => {
            let Some(&(name, about, run)) = SCENARIOS.iter().find(|s| s.0 == name) else {
                eprintln!(
                    "raft-viz: no scenario {name:?}; `raft-viz --list` shows the {} there are \
                     (e.g. figure8, re_election_3a)",
                    SCENARIOS.len()
                );
                return ExitCode::from(2);
            };
            if let Some(seed) = seed {
                // SAFETY: no other thread exists yet: the scenario, which reads SEED
                // through `seed_from_env`, has not started.
                unsafe { std::env::set_var("SEED", seed.to_string()) };
            }
            let (result, recs) = record::record(run);
            let seed_arg = seed.map(|s| format!(" --seed {s}")).unwrap_or_default();
            let caption = Caption {
                title: name.to_owned(),
                about: about.to_owned(),
                command: format!(
                    "cargo run --release -p testkit --bin raft-viz -- --scenario {name}{seed_arg} --out {}",
                    args.out.display()
                ),
                failure: None,
            };
            (result, recs, caption)
        }
        (None, Some(seed)) => {
            let (result, recs) = record::record(|| {
                chaos::run_seed(seed, &faults);
            });
            let caption = Caption {
                title: format!("chaos seed {seed}"),
                about: format!(
                    "A random cluster, network and stream of faults ({}), then healing: the \
                     cluster must commit again. Safety is checked after every event.",
                    faults.to_arg()
                ),
                command: chaos::viz_command(seed, &faults),
                failure: None,
            };
            (result, recs, caption)
        }
        (None, None) => {
            eprintln!(
                "raft-viz: say what to draw: --scenario NAME (see --list) or --seed N (a chaos \
                 seed), e.g. raft-viz --scenario figure8 --out figure8.html"
            );
            return ExitCode::from(2);
        }
    };
    let failed = match &result {
        Ok(()) => None,
        Err(p) => Some(panic_text(p.as_ref())),
    };
    caption.failure = failed.clone();
    if recs.is_empty() {
        eprintln!("raft-viz: the run created no simulated cluster; nothing to draw");
        return ExitCode::from(2);
    }
    let Some(rec): Option<&Recording> = recs.get(args.run) else {
        eprintln!(
            "raft-viz: --run {} but the scenario created only {} cluster(s) (0..{})",
            args.run,
            recs.len(),
            recs.len() - 1
        );
        return ExitCode::from(2);
    };
    if recs.len() > 1 {
        caption.title = format!(
            "{} (cluster {} of {})",
            caption.title,
            args.run + 1,
            recs.len()
        );
    }
    let html = viz::render(rec, &caption);
    if let Err(e) = std::fs::write(&args.out, html) {
        eprintln!(
            "raft-viz: cannot write {}: {e} (pick a writable path with --out)",
            args.out.display()
        );
        return ExitCode::from(2);
    }
    println!(
        "wrote {} ({} nodes, {} ms simulated, {} events, {} messages){}",
        args.out.display(),
        rec.nodes,
        rec.end,
        rec.events.len(),
        rec.messages.len(),
        if failed.is_some() {
            "; the run FAILED a check (shown at the top of the page)"
        } else {
            ""
        }
    );
    if failed.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
