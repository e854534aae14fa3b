//! The network transport: Raft messages over the `rpc` crate's `RaftService.Step`.
//!
//! Outgoing: [`RpcTransport`] groups each Ready's messages by destination and sends one
//! `RaftBatch` per peer with a non-blocking call, to the address the [`PeerBook`] has for
//! it (membership changes add and remove addresses while the node runs); the reply (an empty ack) is ignored and
//! a failed call is only counted, because Raft retransmits what matters. Incoming:
//! [`RaftIntake`] is the `RaftService` implementation; register it inline on the node's
//! `rpc::Server` (it only queues messages for the driver) and point it at the node's
//! [`Mailbox`] once the node is running.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use proto::raft::{
    RaftBatch, RaftMessage, RaftService, RaftServiceClient, RaftServiceServer, StepAck,
};
use rpc::{Channel, ClientRuntime, Reply, Status};

use crate::node::{Mailbox, Transport};

/// How long a Step call may wait for its ack before the runtime gives up on it.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// The peers' addresses, shared between the transport and whoever learns of membership
/// changes (kvserver's apply loop): a node added at run time becomes reachable once its
/// address is set here, a removed one is forgotten. Cheap to clone (one shared map).
#[derive(Clone, Debug, Default)]
pub struct PeerBook {
    inner: Arc<RwLock<BTreeMap<u64, SocketAddr>>>,
}

impl PeerBook {
    /// A book holding `peers` (id → address).
    pub fn new(peers: &BTreeMap<u64, SocketAddr>) -> Self {
        PeerBook {
            inner: Arc::new(RwLock::new(peers.clone())),
        }
    }

    /// Sets (or changes) the address of node `id`.
    pub fn set(&self, id: u64, addr: SocketAddr) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, addr);
    }

    /// Forgets node `id`.
    pub fn remove(&self, id: u64) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// The address of node `id`, if known.
    pub fn get(&self, id: u64) -> Option<SocketAddr> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
    }

    /// Every known address.
    pub fn all(&self) -> BTreeMap<u64, SocketAddr> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Sends Raft messages to peers over `rpc` channels, to the addresses in a [`PeerBook`].
#[derive(Debug)]
pub struct RpcTransport {
    runtime: ClientRuntime,
    book: PeerBook,
    /// A stub per peer, with the address it was made for (remade if the address changes).
    clients: Mutex<BTreeMap<u64, (SocketAddr, RaftServiceClient<Channel>)>>,
    failed: Arc<AtomicU64>,
}

impl RpcTransport {
    /// A transport to `peers` (id → address), with connections on `runtime`.
    pub fn new(runtime: &ClientRuntime, peers: &BTreeMap<u64, SocketAddr>) -> Self {
        Self::with_book(runtime, PeerBook::new(peers))
    }

    /// A transport to the peers of `book`, which may change while it runs.
    pub fn with_book(runtime: &ClientRuntime, book: PeerBook) -> Self {
        RpcTransport {
            runtime: runtime.clone(),
            book,
            clients: Mutex::new(BTreeMap::new()),
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
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        for (to, messages) in by_peer {
            let Some(addr) = self.book.get(to) else {
                clients.remove(&to);
                log::warn!("raft: no address for node {to}; message dropped");
                continue;
            };
            if clients.get(&to).is_none_or(|(a, _)| *a != addr) {
                let c = RaftServiceClient::new(self.runtime.channel(addr));
                clients.insert(to, (addr, c));
            }
            let Some((_, client)) = clients.get(&to) else {
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
