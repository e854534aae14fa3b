//! Operator calls on a [`Clerk`]: the membership (list, add a learner, promote it, remove a
//! node) and leadership transfer. Each goes to the leader, following leader hints with the
//! same retry policy as a write ([`crate::retry`]); a refusal comes back as
//! [`Error::Rejected`] with code `REFUSED` and the leader's reason, and changes nothing.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proto::kv::{
    ErrorCode, MemberChangeReply, MemberChangeRequest, MemberListReply, MemberListRequest,
};
use rpc::CallError;

use crate::clerk::{Clerk, describe};
use crate::retry::{Failure, Next};
use crate::{Error, Result};

/// One member of the cluster, as [`Clerk::members`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its node id.
    pub id: u64,
    /// Where it serves peers and clients; empty when the answering node does not know.
    pub addr: String,
    /// A learner (gets the log, does not vote) rather than a voter.
    pub learner: bool,
}

/// The membership as the leader sees it ([`Clerk::members`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// The node that answered (the leader when one is known).
    pub from: u64,
    /// The leader it knows of; 0 when none.
    pub leader: u64,
    /// Voters then learners, each sorted by id.
    pub members: Vec<MemberInfo>,
    /// The voters the cluster was bootstrapped with.
    pub bootstrap_voters: Vec<u64>,
}

impl Members {
    /// The voters' ids.
    pub fn voters(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|m| !m.learner)
            .map(|m| m.id)
            .collect()
    }

    /// The learners' ids.
    pub fn learners(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|m| m.learner)
            .map(|m| m.id)
            .collect()
    }
}

/// How an admin reply reads: (error code, leader hint, text).
trait AdminReply {
    fn parts(&self) -> (i32, u64, &str);
}

impl AdminReply for MemberChangeReply {
    fn parts(&self) -> (i32, u64, &str) {
        (self.err, self.leader_hint, &self.error_text)
    }
}

/// A MemberList answer, and whether its leader is among the Clerk's endpoints.
struct ListReply {
    reply: MemberListReply,
    leader_reachable: bool,
}

impl AdminReply for ListReply {
    fn parts(&self) -> (i32, u64, &str) {
        let r = &self.reply;
        // A follower's view may lag: ask the leader it names, if it names one this Clerk
        // can reach. A leader outside the endpoints (added by a membership change) cannot
        // be asked: the follower's view is the answer then (it names that leader).
        if r.err == ErrorCode::Ok as i32
            && r.leader_id != 0
            && r.leader_id != r.node_id
            && self.leader_reachable
        {
            return (ErrorCode::WrongLeader as i32, r.leader_id, "");
        }
        (r.err, 0, &r.error_text)
    }
}

impl Clerk {
    /// Runs one admin call at the leader: retries elsewhere on WRONG_LEADER, on no answer
    /// or SHUTTING_DOWN; fails at once on anything else.
    fn admin<T: AdminReply>(
        &self,
        op: &'static str,
        call: impl Fn(usize, Duration) -> std::result::Result<T, CallError>,
    ) -> Result<T> {
        let inner = self.inner();
        let mut at = inner.admin_attempts(op);
        let mut asked = Vec::new();
        loop {
            let Some(timeout) = at.begin(Instant::now()) else {
                return Err(at.give_up(&self.endpoints(), Instant::now()));
            };
            let target = at.target();
            let addr = self.endpoints()[target].addr;
            let failure = match call(target, timeout) {
                Err(CallError::Remote {
                    status: rpc::Status::UnknownMethod,
                    message,
                }) => {
                    return Err(Error::Rejected {
                        addr,
                        code: "UNKNOWN_METHOD".into(),
                        message: format!(
                            "{message}; this kvserver is too old for `{op}`: upgrade it"
                        ),
                    });
                }
                Err(e) => Failure::Other(describe(&e, timeout)),
                Ok(r) => {
                    let (err, hint, text) = r.parts();
                    match ErrorCode::try_from(err) {
                        Ok(ErrorCode::Ok) => {
                            inner.leader.store(target, Ordering::Relaxed);
                            return Ok(r);
                        }
                        Ok(ErrorCode::WrongLeader) => Failure::WrongLeader { hint },
                        Ok(ErrorCode::ShuttingDown) => {
                            Failure::Other(format!("shutting down {text}"))
                        }
                        Ok(code) => {
                            return Err(Error::Rejected {
                                addr,
                                code: code.as_str_name().to_string(),
                                message: text.to_string(),
                            });
                        }
                        Err(_) => {
                            return Err(Error::Rejected {
                                addr,
                                code: format!("error code {err}"),
                                message: format!(
                                    "{text} (a code this client does not know; use a newer client)"
                                ),
                            });
                        }
                    }
                }
            };
            // A leader this Clerk does not know: look it up at the node that named it.
            if let Failure::WrongLeader { hint } = failure
                && inner.should_learn(hint, &mut asked)
            {
                inner.learn_from(target, hint, timeout);
            }
            at.grow(self.endpoints().len());
            let now = Instant::now();
            match at.failed(failure, |id| inner.index_of(id), now, rand::random()) {
                Next::Retry { wait, .. } => std::thread::sleep(wait),
                Next::GiveUp => return Err(at.give_up(&self.endpoints(), now)),
            }
        }
    }

    /// The cluster's members (voters and learners with their addresses) as the leader sees
    /// them (a follower's answer is used only while no leader is known, or when the leader
    /// it names is not among this Clerk's endpoints).
    ///
    /// # Errors
    /// [`Error::DeadlineExceeded`] when no node answered in time.
    pub fn members(&self) -> Result<Members> {
        let r = self
            .admin("member list", |t, timeout| {
                let reply = self
                    .inner()
                    .node(t)
                    .member_list(&MemberListRequest {}, timeout)?;
                let leader_reachable = self.inner().index_of(reply.leader_id).is_some();
                Ok(ListReply {
                    reply,
                    leader_reachable,
                })
            })?
            .reply;
        Ok(Members {
            from: r.node_id,
            leader: r.leader_id,
            members: r
                .members
                .into_iter()
                .map(|m| MemberInfo {
                    id: m.id,
                    addr: m.addr,
                    learner: m.learner,
                })
                .collect(),
            bootstrap_voters: r.bootstrap_voters,
        })
    }

    fn change(
        &self,
        op: &'static str,
        id: u64,
        addr: &str,
        call: impl Fn(
            &proto::kv::KvServiceClient<rpc::Channel>,
            &MemberChangeRequest,
            Duration,
        ) -> std::result::Result<MemberChangeReply, CallError>,
    ) -> Result<u64> {
        if id == 0 {
            return Err(Error::InvalidArgument(
                "node id 0 is reserved; use an id above 0".into(),
            ));
        }
        let req = MemberChangeRequest {
            node_id: id,
            addr: addr.to_string(),
        };
        let r = self.admin(op, |t, timeout| call(&self.inner().node(t), &req, timeout))?;
        Ok(r.index)
    }

    /// Adds node `id`, serving at `addr` ("HOST:PORT"), as a learner (thesis §4.2.1): it
    /// gets the log but neither votes nor counts toward commit. Returns the change's log
    /// index once the leader applied it. Start the node with `kvserver --join` to let it
    /// catch up, then [`Clerk::promote`] it.
    ///
    /// # Errors
    /// [`Error::Rejected`] with code `REFUSED` (already a member, another change pending,
    /// a new leader that has not committed its first entry yet: retry) or
    /// `INVALID_ARGUMENT` (an address that is not IP:PORT); [`Error::DeadlineExceeded`].
    pub fn add_learner(&self, id: u64, addr: &str) -> Result<u64> {
        self.change("member add-learner", id, addr, |n, r, t| {
            n.add_learner(r, t)
        })
    }

    /// Makes learner `id` a voter. Refused (`REFUSED`) while it has not acknowledged the
    /// log or lags the leader by more than the leader's limit: retry once it caught up.
    ///
    /// # Errors
    /// As [`Clerk::add_learner`].
    pub fn promote(&self, id: u64) -> Result<u64> {
        self.change("member promote", id, "", |n, r, t| n.promote_learner(r, t))
    }

    /// Removes voter or learner `id`. Refused for the last voter or a non-member. A removed
    /// leader steps down once the change commits.
    ///
    /// # Errors
    /// As [`Clerk::add_learner`].
    pub fn remove_member(&self, id: u64) -> Result<u64> {
        self.change("member remove", id, "", |n, r, t| n.remove_member(r, t))
    }

    /// Starts moving leadership to voter `id` (thesis §3.10): the leader stops taking
    /// writes, brings `id` up to date and tells it to campaign at once. Returns when the
    /// transfer started; [`Clerk::members`] shows the new leader within an election
    /// timeout (or the old one again if the transfer was abandoned).
    ///
    /// # Errors
    /// [`Error::Rejected`] with `REFUSED` for a learner or a non-member.
    pub fn transfer_leader(&self, id: u64) -> Result<()> {
        self.change("transfer-leader", id, "", |n, r, t| n.transfer_leader(r, t))
            .map(|_| ())
    }
}
