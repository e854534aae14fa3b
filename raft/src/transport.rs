//! An in-process [`Transport`]: nodes in one process exchange messages over channels.
//! For tests and examples.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use proto::raft::RaftMessage;

use crate::node::{Mailbox, Transport};

#[derive(Debug, Default)]
struct Inner {
    mailboxes: BTreeMap<u64, Mailbox>,
    /// Nodes cut off from everyone.
    isolated: BTreeSet<u64>,
}

/// A switchboard of in-process nodes. Clone it into each node's [`LocalTransport`].
#[derive(Clone, Debug, Default)]
pub struct LocalNetwork {
    inner: Arc<Mutex<Inner>>,
}

impl LocalNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Routes messages for `id` to `mailbox` (replacing a previous registration).
    pub fn register(&self, id: u64, mailbox: Mailbox) {
        self.lock().mailboxes.insert(id, mailbox);
    }

    /// Forgets `id` (messages to it are dropped).
    pub fn unregister(&self, id: u64) {
        self.lock().mailboxes.remove(&id);
    }

    /// Cuts `id` off from everyone (or reconnects it).
    pub fn set_isolated(&self, id: u64, isolated: bool) {
        let mut g = self.lock();
        if isolated {
            g.isolated.insert(id);
        } else {
            g.isolated.remove(&id);
        }
    }

    /// The transport for node `id`.
    pub fn transport(&self, id: u64) -> LocalTransport {
        LocalTransport {
            id,
            net: self.clone(),
        }
    }
}

/// One node's end of a [`LocalNetwork`].
#[derive(Clone, Debug)]
pub struct LocalTransport {
    id: u64,
    net: LocalNetwork,
}

impl Transport for LocalTransport {
    fn send(&self, msgs: Vec<RaftMessage>) {
        let g = self.net.lock();
        if g.isolated.contains(&self.id) {
            return;
        }
        for m in msgs {
            if g.isolated.contains(&m.to) {
                continue;
            }
            if let Some(mb) = g.mailboxes.get(&m.to) {
                mb.step(m);
            }
        }
    }
}
