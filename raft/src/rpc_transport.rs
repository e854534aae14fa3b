//! The network transport: Raft messages over the `rpc` crate's `RaftService.Step`.
//!
//! Outgoing: [`RpcTransport`] groups each Ready's messages by destination and sends one
//! `RaftBatch` per peer with a non-blocking call; the reply (an empty ack) is ignored and
//! a failed call is only counted, because Raft retransmits what matters. Incoming:
//! [`RaftIntake`] is the `RaftService` implementation; register it inline on the node's
//! `rpc::Server` (it only queues messages for the driver) and point it at the node's
//! [`Mailbox`] once the node is running.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::raft::{
    RaftBatch, RaftMessage, RaftService, RaftServiceClient, RaftServiceServer, StepAck,
};
use rpc::{Channel, ClientRuntime, Reply, Status};

use crate::node::{Mailbox, Transport};

/// How long a Step call may wait for its ack before the runtime gives up on it.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends Raft messages to peers over `rpc` channels.
#[derive(Debug)]
pub struct RpcTransport {
    peers: BTreeMap<u64, RaftServiceClient<Channel>>,
    failed: Arc<AtomicU64>,
}

impl RpcTransport {
    /// A transport to `peers` (id → address), with connections on `runtime`.
    pub fn new(runtime: &ClientRuntime, peers: &BTreeMap<u64, SocketAddr>) -> Self {
        RpcTransport {
            peers: peers
                .iter()
                .map(|(&id, &addr)| (id, RaftServiceClient::new(runtime.channel(addr))))
                .collect(),
            failed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Calls that failed (peer down, timeout, overload); their messages were lost.
    pub fn failed_calls(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

impl Transport for RpcTransport {
    fn send(&self, msgs: Vec<RaftMessage>) {
        let mut by_peer: BTreeMap<u64, Vec<RaftMessage>> = BTreeMap::new();
        for m in msgs {
            by_peer.entry(m.to).or_default().push(m);
        }
        for (to, messages) in by_peer {
            let Some(client) = self.peers.get(&to) else {
                log::warn!("raft: no address for node {to}; message dropped");
                continue;
            };
            let failed = self.failed.clone();
            client.step_async(&RaftBatch { messages }, STEP_TIMEOUT, move |r| {
                if r.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
}

/// The receiving side: the `RaftService` a node's server registers.
#[derive(Clone, Debug, Default)]
pub struct RaftIntake {
    mailbox: Arc<Mutex<Option<Mailbox>>>,
}

impl RaftIntake {
    /// An intake with no node yet (calls are answered `UNAVAILABLE` until one is set).
    pub fn new() -> Self {
        Self::default()
    }

    /// Delivers from now on to `mailbox` (`None`: the node is down).
    pub fn set_mailbox(&self, mailbox: Option<Mailbox>) {
        *self.mailbox.lock().unwrap_or_else(|p| p.into_inner()) = mailbox;
    }

    /// The service to register on an `rpc::ServerBuilder` (inline: it never blocks).
    pub fn service(&self) -> RaftServiceServer<RaftIntake> {
        RaftServiceServer::new(self.clone())
    }
}

impl RaftService for RaftIntake {
    fn step(&self, request: RaftBatch, reply: Reply<StepAck>) {
        let mb = self
            .mailbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match mb {
            Some(mb) => {
                for m in request.messages {
                    mb.step(m);
                }
                reply.send(StepAck {});
            }
            None => reply.fail(Status::Unavailable, "raft node not running"),
        }
    }
}
