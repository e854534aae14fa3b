//! A fake raftkv cluster for client tests: real `rpc` servers on loopback, one per fake
//! node, sharing one in-memory state, with faults a test switches on: which node leads,
//! what hint followers give, nodes that never answer (like a SIGSTOPped process), nodes
//! that are down (connection refused), writes applied whose reply is lost. It
//! deduplicates by client id and sequence number as a kvserver does, and records every
//! request so a test can check what the Clerk sent.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use client::Endpoint;
use proto::kv::{
    DeleteRequest, ErrorCode, GetReply, GetRequest, KvService, KvServiceServer, Member,
    MemberListReply, MemberListRequest, PutAppendRequest, Role, StatusReply, StatusRequest,
    WriteReply,
};
use rpc::{Reply, Server, ServerBuilder};

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub node: u64,
    pub op: &'static str,
    pub client_id: u64,
    pub seq: u64,
}

#[derive(Default)]
pub struct St {
    /// The node that serves; others answer WRONG_LEADER. 0: nobody leads.
    pub leader: u64,
    /// What followers give as hint; `None`: the real leader.
    pub hint: Option<u64>,
    pub data: BTreeMap<Bytes, Bytes>,
    /// client id → (last seq applied, its reply)
    pub dedup: HashMap<u64, (u64, WriteReply)>,
    /// Client ids with a write being handled right now.
    pub in_flight: HashSet<u64>,
    /// Writes that arrived while another write of the same client id was in flight.
    pub overlaps: u32,
    /// Writes that arrived with a seq below the client's last: would be lost by a kvserver.
    pub stale: u32,
    pub seen: Vec<Seen>,
    /// The next this-many writes are applied but their reply handle is dropped (the
    /// Clerk sees the call fail, as when a connection breaks after the commit).
    pub lose_replies: u32,
    /// Nodes that never answer: the reply handle is kept until the fake is dropped.
    pub silent: HashSet<u64>,
    pub held_gets: Vec<Reply<GetReply>>,
    pub held_writes: Vec<Reply<WriteReply>>,
    /// How long a write handler holds its client id in flight (to make overlaps visible).
    pub hold: Duration,
    pub max_value: usize,
    /// What MemberList lists: every fake node with its address (filled by `start`).
    pub members: BTreeMap<u64, SocketAddr>,
}

pub struct Shared(Mutex<St>);

impl Shared {
    pub fn st(&self) -> MutexGuard<'_, St> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct Node {
    id: u64,
    shared: Arc<Shared>,
}

enum W {
    Put,
    Append,
    Delete,
}

impl Node {
    fn write(
        &self,
        w: W,
        key: Bytes,
        value: Bytes,
        client_id: u64,
        seq: u64,
        reply: Reply<WriteReply>,
    ) {
        let hold = {
            let mut st = self.shared.st();
            let op = match w {
                W::Put => "put",
                W::Append => "append",
                W::Delete => "delete",
            };
            st.seen.push(Seen {
                node: self.id,
                op,
                client_id,
                seq,
            });
            if st.silent.contains(&self.id) {
                st.held_writes.push(reply);
                return;
            }
            if st.leader != self.id {
                let hint = st.hint.unwrap_or(st.leader);
                drop(st);
                return reply.send(WriteReply {
                    err: ErrorCode::WrongLeader as i32,
                    leader_hint: hint,
                    ..Default::default()
                });
            }
            if key.is_empty() || value.len() > st.max_value {
                drop(st);
                return reply.send(WriteReply {
                    err: ErrorCode::InvalidArgument as i32,
                    error_text: "value over the fake's maximum".into(),
                    ..Default::default()
                });
            }
            if !st.in_flight.insert(client_id) {
                st.overlaps += 1;
            }
            st.hold
        };
        if !hold.is_zero() {
            std::thread::sleep(hold); // widens the window in which overlaps show
        }
        let mut st = self.shared.st();
        st.in_flight.remove(&client_id);
        let r = match st.dedup.get(&client_id) {
            Some((last, r)) if *last == seq => r.clone(),
            Some((last, _)) if *last > seq => {
                st.stale += 1;
                WriteReply {
                    err: ErrorCode::StaleRequest as i32,
                    ..Default::default()
                }
            }
            _ => {
                let existed = st.data.contains_key(&key);
                match w {
                    W::Put => {
                        st.data.insert(key, value);
                    }
                    W::Append => {
                        let mut v = st.data.get(&key).map(|v| v.to_vec()).unwrap_or_default();
                        v.extend_from_slice(&value);
                        st.data.insert(key, v.into());
                    }
                    W::Delete => {
                        st.data.remove(&key);
                    }
                }
                let r = WriteReply {
                    existed: matches!(w, W::Delete) && existed,
                    ..Default::default()
                };
                st.dedup.insert(client_id, (seq, r.clone()));
                r
            }
        };
        if st.lose_replies > 0 {
            st.lose_replies -= 1;
            drop(st);
            drop(reply); // the caller sees "reply handle dropped"
            return;
        }
        drop(st);
        reply.send(r);
    }
}

impl KvService for Node {
    fn get(&self, request: GetRequest, reply: Reply<GetReply>) {
        let mut st = self.shared.st();
        st.seen.push(Seen {
            node: self.id,
            op: "get",
            client_id: request.client_id,
            seq: request.seq,
        });
        if st.silent.contains(&self.id) {
            st.held_gets.push(reply);
            return;
        }
        let r = if st.leader != self.id {
            GetReply {
                err: ErrorCode::WrongLeader as i32,
                leader_hint: st.hint.unwrap_or(st.leader),
                ..Default::default()
            }
        } else {
            match st.data.get(&request.key) {
                Some(v) => GetReply {
                    value: v.clone(),
                    ..Default::default()
                },
                None => GetReply {
                    err: ErrorCode::NoKey as i32,
                    ..Default::default()
                },
            }
        };
        drop(st);
        reply.send(r);
    }
    fn put(&self, r: PutAppendRequest, reply: Reply<WriteReply>) {
        self.write(W::Put, r.key, r.value, r.client_id, r.seq, reply);
    }
    fn append(&self, r: PutAppendRequest, reply: Reply<WriteReply>) {
        self.write(W::Append, r.key, r.value, r.client_id, r.seq, reply);
    }
    fn delete(&self, r: DeleteRequest, reply: Reply<WriteReply>) {
        self.write(W::Delete, r.key, Bytes::new(), r.client_id, r.seq, reply);
    }
    fn member_list(&self, _: MemberListRequest, reply: Reply<MemberListReply>) {
        let st = self.shared.st();
        let r = MemberListReply {
            err: ErrorCode::Ok as i32,
            error_text: String::new(),
            members: st
                .members
                .iter()
                .map(|(&id, a)| Member {
                    id,
                    addr: a.to_string(),
                    learner: false,
                })
                .collect(),
            leader_id: st.leader,
            bootstrap_voters: st.members.keys().copied().collect(),
            node_id: self.id,
        };
        drop(st);
        reply.send(r);
    }

    fn status(&self, _: StatusRequest, reply: Reply<StatusReply>) {
        let st = self.shared.st();
        let leader = st.leader;
        let keys = st.data.len() as u64;
        drop(st);
        reply.send(StatusReply {
            node_id: self.id,
            role: if leader == self.id {
                Role::Leader as i32
            } else {
                Role::Follower as i32
            },
            term: 7,
            leader_id: leader,
            commit_index: 42,
            applied_index: 41,
            log_bytes: 1234,
            snapshot_index: 30,
            snapshot_bytes: 99,
            uptime_ms: 5000,
            key_count: keys,
            last_log_index: 43,
            max_raft_state: 1 << 20,
            listen_addr: String::new(),
            voters: vec![1, 2, 3],
            learners: Vec::new(),
        });
    }
}

pub struct Fake {
    pub shared: Arc<Shared>,
    servers: Vec<Option<Server>>,
    pub endpoints: Vec<Endpoint>,
}

impl Fake {
    /// `n` nodes with ids 1..=n; node 1 leads.
    pub fn start(n: u64) -> Fake {
        let shared = Arc::new(Shared(Mutex::new(St {
            leader: 1,
            max_value: 1 << 20,
            ..Default::default()
        })));
        let mut servers = vec![];
        let mut endpoints = vec![];
        for id in 1..=n {
            let s = ServerBuilder::new()
                .register(KvServiceServer::new(Node {
                    id,
                    shared: Arc::clone(&shared),
                }))
                .bind("127.0.0.1:0".parse().expect("addr"))
                .expect("bind a fake node");
            endpoints.push(Endpoint {
                id,
                addr: s.local_addr(),
            });
            servers.push(Some(s));
        }
        shared.st().members = endpoints.iter().map(|e| (e.id, e.addr)).collect();
        Fake {
            shared,
            servers,
            endpoints,
        }
    }

    pub fn st(&self) -> MutexGuard<'_, St> {
        self.shared.st()
    }

    /// Stops node `id`: its port refuses connections from now on.
    pub fn kill(&mut self, id: u64) {
        self.servers[id as usize - 1] = None;
    }

    pub fn addr(&self, id: u64) -> SocketAddr {
        self.endpoints[id as usize - 1].addr
    }

    /// Requests seen per node (index 0 = node 1).
    pub fn per_node(&self) -> Vec<usize> {
        let st = self.st();
        (1..=self.endpoints.len() as u64)
            .map(|id| st.seen.iter().filter(|s| s.node == id).count())
            .collect()
    }

    pub fn endpoint_list(&self) -> String {
        client::format_endpoints(&self.endpoints)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let mut st = self.st();
        st.held_gets.clear();
        st.held_writes.clear();
    }
}
