//! Three Raft nodes in one process, talking over the in-process transport
//! (`raft::transport::LocalNetwork`): watch them elect a leader, replicate three commands,
//! then kill the leader and watch the other two elect a new one and carry on.
//!
//! ```text
//! cargo run -p raft --example three_nodes
//! ```
//!
//! It ends by itself within a few seconds (exit 0), or exits 1 and says what did not
//! happen in time. Each node here is a real driver thread (`raft::Node`) with in-memory
//! storage; `kvserver` runs the same `Node` over TCP and a data directory. The tour
//! (`docs/tour.md`) follows one command through this code.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::transport::LocalNetwork;
use raft::{ApplyMsg, Config, MemStorage, Node, Role};

/// A short tick so the example runs fast: elections take 10-20 ticks = 100-200 ms.
const TICK: Duration = Duration::from_millis(10);
/// How long any step may take before the example gives up.
const STEP_LIMIT: Duration = Duration::from_secs(5);

struct Cluster {
    net: LocalNetwork,
    nodes: BTreeMap<u64, Node>,
    applied: BTreeMap<u64, crossbeam_channel::Receiver<ApplyMsg>>,
    /// Last role and term printed per node.
    seen: BTreeMap<u64, (Role, u64)>,
    t0: Instant,
}

impl Cluster {
    fn start(ids: &[u64]) -> Result<Cluster, String> {
        let net = LocalNetwork::new();
        let mut c = Cluster {
            net,
            nodes: BTreeMap::new(),
            applied: BTreeMap::new(),
            seen: BTreeMap::new(),
            t0: Instant::now(),
        };
        for &id in ids {
            let cfg = Config::new(id, ids.to_vec());
            let (node, apply) = Node::spawn(cfg, MemStorage::new(), c.net.transport(id), TICK)
                .map_err(|e| format!("cannot start node {id}: {e}"))?;
            c.net.register(id, node.mailbox());
            c.nodes.insert(id, node);
            c.applied.insert(id, apply);
        }
        Ok(c)
    }

    fn say(&self, what: &str) {
        println!("{:>6} ms  {what}", self.t0.elapsed().as_millis());
    }

    /// Prints role and term changes; returns the leader of the highest term, if any.
    fn look(&mut self) -> Option<u64> {
        let mut leader = None;
        let mut lines = Vec::new();
        for (&id, node) in &self.nodes {
            let Ok(st) = node.status() else { continue };
            if self.seen.get(&id) != Some(&(st.role, st.term)) {
                self.seen.insert(id, (st.role, st.term));
                lines.push(format!("n{id} is {:?} in term {}", st.role, st.term));
            }
            if st.role == Role::Leader {
                leader = Some((st.term, id)).max(leader);
            }
        }
        for l in lines {
            self.say(&l);
        }
        leader.map(|(_, id)| id)
    }

    /// Waits for a leader, printing what happens.
    fn wait_for_leader(&mut self) -> Result<u64, String> {
        let deadline = Instant::now() + STEP_LIMIT;
        while Instant::now() < deadline {
            if let Some(l) = self.look() {
                return Ok(l);
            }
            std::thread::sleep(TICK);
        }
        Err(format!("no leader within {STEP_LIMIT:?}"))
    }

    /// Proposes `cmd` on `leader` and waits until every live node applied it.
    fn replicate(&mut self, leader: u64, cmd: &str) -> Result<(), String> {
        let (index, term) = self.nodes[&leader]
            .start(Bytes::copy_from_slice(cmd.as_bytes()))
            .map_err(|e| format!("n{leader} refused {cmd:?}: {e}"))?;
        self.say(&format!(
            "proposed {cmd:?} on n{leader}: index {index}, term {term}"
        ));
        for (&id, rx) in &self.applied {
            let deadline = Instant::now() + STEP_LIMIT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(ApplyMsg::Command { index: i, data, .. }) if i == index => {
                        if data != cmd.as_bytes() {
                            return Err(format!("n{id} applied another command at {index}"));
                        }
                        break;
                    }
                    Ok(_) => {} // an earlier entry
                    Err(_) => return Err(format!("n{id} did not apply index {index} in time")),
                }
            }
        }
        self.say(&format!(
            "{cmd:?} applied on all {} live nodes",
            self.applied.len()
        ));
        Ok(())
    }

    /// Stops `id` as a crash would: its thread ends, the others stop hearing from it.
    fn kill(&mut self, id: u64) {
        self.net.unregister(id);
        self.net.set_isolated(id, true);
        if let Some(n) = self.nodes.remove(&id) {
            n.shutdown();
        }
        self.applied.remove(&id);
        self.seen.remove(&id);
        self.say(&format!("killed n{id}"));
    }
}

fn run() -> Result<(), String> {
    let mut c = Cluster::start(&[1, 2, 3])?;
    c.say("started n1, n2, n3 (followers in term 0)");
    let leader = c.wait_for_leader()?;
    c.say(&format!(
        "n{leader} leads; its first entry (index 1) is a no-op of its term (paper §8)"
    ));
    for cmd in ["x=1", "y=2", "x=3"] {
        c.replicate(leader, cmd)?;
    }
    c.kill(leader);
    let new_leader = c.wait_for_leader()?;
    if new_leader == leader {
        return Err("the killed node still leads".into());
    }
    // The new leader holds every committed entry (Leader Completeness, paper §5.4) and
    // carries on with the two nodes left, a majority of three.
    c.replicate(new_leader, "y=4")?;
    c.say("done: a new leader was elected and the cluster kept going");
    for (_, n) in std::mem::take(&mut c.nodes) {
        n.shutdown();
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("three_nodes: {e}");
            ExitCode::FAILURE
        }
    }
}
