//! What a node answers to its peers: Raft's RPCs go to the local Raft;
//! forwarded writes, joins and leaves are carried out here if this node
//! leads, and answered with "not the leader" (and who is) otherwise.

use crate::membership::{is_member, leader_of, member_table};
use crate::net::raft::Contacts;
use crate::net::{BoxFuture, Handler};
use crate::types::{PeerNode, Raft, Request, Response, WriteFailure};
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::{ChangeMembers, ServerState};
use raftlb_proto::{Command, NodeId, Outcome};
use std::collections::BTreeSet;
use std::time::Duration;

/// The local node's answers to its peers.
pub struct Service {
    pub(crate) raft: Raft,
    pub(crate) contacts: Contacts,
    /// When each peer last sent this node what only a leader sends (an
    /// append, a snapshot, a lease heartbeat): "this node hears its
    /// leader". A peer's pre-votes, votes and stick-table pushes do not
    /// count, or a deposed leader that asks for pre-votes would still be
    /// heard as leading, and keep its voters from granting anyone else's.
    pub(crate) incoming: Contacts,
    pub(crate) write_timeout: Duration,
    pub(crate) join_timeout: Duration,
    /// A leader answers "is X a member?" only if a quorum acknowledged it
    /// within this (the shortest election timeout): a deposed leader cut
    /// off from the majority must not tell a new member it is not one.
    pub(crate) lease: Duration,
    /// openraft's `election_timeout_max`: voters refuse candidates this long
    /// after hearing their leader.
    pub(crate) voter_lease: Duration,
    /// Whether this node holds the leader's lease.
    pub(crate) holds_lease: tokio::sync::watch::Receiver<bool>,
    /// When this node's vote last changed (kept by the election loop).
    pub(crate) vote_changed: crate::election::VoteClock,
    /// This node's last log id.
    pub(crate) last_log: crate::store::LastLog,
    /// Fills the answer to [`Request::Report`].
    pub(crate) reporter: std::sync::OnceLock<Reporter>,
    /// Takes stick-table pushes and answers resyncs.
    pub(crate) stick: std::sync::OnceLock<std::sync::Arc<dyn crate::StickPeer>>,
    /// The leader's vote this node last confirmed to a lease heartbeat, and
    /// when: for a while after that it votes for no one else.
    pub(crate) promise: std::sync::Mutex<Option<(openraft::Vote<NodeId>, std::time::Instant)>>,
}

/// What a node says about itself when a peer asks ([`Request::Report`]).
pub type Reporter = Box<dyn Fn() -> Vec<u8> + Send + Sync>;

impl Service {
    /// Whether this node would vote for a candidate whose log ends at
    /// `last_log`: it leads no quorum, has neither heard a leader nor voted
    /// (for itself or another) within the voters' lease, and the candidate's log is at least as recent as its own.
    pub(crate) fn pre_vote(&self, last_log: Option<openraft::LogId<NodeId>>) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let recent =
            |t: Option<std::time::Instant>| t.is_some_and(|t| t.elapsed() <= self.voter_lease);
        // A leader that holds its lease. (A restarted node that believes
        // it leads an old term holds none, and says yes. A candidate's own
        // campaign counts as a recent vote, below.)
        let busy = *self.holds_lease.borrow();
        let hears_leader = recent(
            m.current_leader
                .filter(|l| *l != m.id)
                .and_then(|l| self.incoming.last(l)),
        );
        // A vote the election loop has not seen yet is the most recent.
        let voted = {
            let (vote, at) = *self.vote_changed.lock().expect("vote clock");
            vote != m.vote || recent(Some(at))
        };
        let grant = !busy && !hears_leader && !voted && last_log >= self.last_log.get();
        if grant {
            let silent_ms = m
                .current_leader
                .filter(|l| *l != m.id)
                .and_then(|l| self.incoming.last(l))
                .map(|t| t.elapsed().as_millis() as u64);
            tracing::info!(
                leader = ?m.current_leader,
                silent_ms,
                "would vote for a candidate: no word from a leader"
            );
        }
        grant
    }
    /// Answers the lease heartbeat of `from`, which leads with `vote`: yes
    /// if this node follows exactly that vote, and then it promises not to
    /// vote for anyone else for a while ([`Self::promise_for`]).
    fn heartbeat(&self, from: NodeId, vote: openraft::Vote<NodeId>) -> bool {
        let follows = {
            let m = self.raft.metrics();
            let m = m.borrow();
            m.id != from
                && vote.is_committed()
                && vote.leader_id().voted_for() == Some(from)
                && m.vote == vote
        };
        if follows {
            *self.promise.lock().expect("lease promise") = Some((vote, std::time::Instant::now()));
        }
        follows
    }

    /// How long a confirmed lease heartbeat binds this node: longer than
    /// the leader's lease counts from the heartbeat's sending (safety), and
    /// shorter than a candidate waits after its own last word from the
    /// leader (so that a dead leader's last heartbeat, which may reach this
    /// node a little after the candidate's, does not refuse its successor).
    fn promise_for(&self) -> Duration {
        (self.lease + self.voter_lease) / 2
    }

    /// A refusal for a candidate this node promised, by answering a lease
    /// heartbeat, not to vote for: openraft's own voters refuse likewise
    /// after an AppendEntries, but do not see the heartbeats.
    fn refuse_vote(&self, req: &VoteRequest<NodeId>) -> Option<VoteResponse<NodeId>> {
        let (promised, at) = (*self.promise.lock().expect("lease promise"))?;
        if at.elapsed() > self.promise_for() || req.vote.leader_id() == promised.leader_id() {
            return None;
        }
        tracing::info!(
            candidate = ?req.vote.leader_id().voted_for(),
            leader = ?promised.leader_id().voted_for(),
            "refused a vote: the leader's lease heartbeat came {} ms ago",
            at.elapsed().as_millis()
        );
        let vote = self.raft.metrics().borrow().vote;
        Some(VoteResponse::new(vote, self.last_log.get(), false))
    }

    /// Campaigns now if `from`, which this node follows, asks it to take
    /// over (it is stopping: see handover.rs), this node votes, and its
    /// log is as recent as the leader's `last_log`.
    async fn take_over(&self, from: NodeId, last_log: Option<openraft::LogId<NodeId>>) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == m.id);
        let mine = self.last_log.get();
        if from == m.id || m.current_leader != Some(from) || !voter || mine < last_log {
            tracing::info!(
                from,
                leader = ?m.current_leader,
                voter,
                "not taking over: not asked by this node's leader, not a voter, or behind"
            );
            return false;
        }
        // Its own campaign is a recent vote for its pre-vote answers.
        self.vote_changed.lock().expect("vote clock").1 = std::time::Instant::now();
        tracing::warn!(
            leader = from,
            "the leader is stopping and hands over: campaigning"
        );
        self.raft.trigger().elect().await.is_ok()
    }

    /// This node's report (empty without a reporter).
    pub(crate) fn report(&self) -> Vec<u8> {
        self.reporter.get().map(|f| f()).unwrap_or_default()
    }
}

impl Handler for Service {
    fn handle(&self, from: NodeId, req: Request) -> BoxFuture<'_, Response> {
        Box::pin(async move {
            self.contacts.touch(from);
            if matches!(
                req,
                Request::Append(_) | Request::Snapshot(_) | Request::Heartbeat { .. }
            ) {
                self.incoming.touch(from);
            }
            match req {
                Request::Append(r) => Response::Append(self.raft.append_entries(r).await),
                Request::Vote(r) => {
                    // Someone campaigns: this node neither campaigns nor
                    // grants pre-votes for a while (see election.rs).
                    self.vote_changed.lock().expect("vote clock").1 = std::time::Instant::now();
                    match self.refuse_vote(&r) {
                        Some(no) => Response::Vote(Ok(no)),
                        None => Response::Vote(self.raft.vote(r).await),
                    }
                }
                Request::Snapshot(r) => Response::Snapshot(self.raft.install_snapshot(r).await),
                Request::Write(cmd) => {
                    Response::Write(local_write(&self.raft, cmd, self.write_timeout).await)
                }
                Request::Join { id, node } => {
                    let r = if id != from {
                        Err(WriteFailure::Other(format!(
                            "node {from} cannot ask to add node {id}: a node joins as itself"
                        )))
                    } else {
                        local_join(&self.raft, id, node, self.join_timeout).await
                    };
                    Response::Membership(r)
                }
                Request::Leave { id } => {
                    Response::Membership(local_leave(&self.raft, id, self.write_timeout).await)
                }
                Request::IsMember { id } => {
                    Response::IsMember(is_member(&self.raft, id, self.lease))
                }
                Request::Members => {
                    let m = self.raft.metrics().borrow().clone();
                    let leads = m.state == ServerState::Leader;
                    Response::Members(leads.then(|| member_table(&m, &self.contacts)))
                }
                Request::Report => Response::Report(self.report()),
                Request::PreVote { last_log } => Response::PreVote(self.pre_vote(last_log)),
                Request::Heartbeat { vote } => Response::Heartbeat(self.heartbeat(from, vote)),
                Request::StickPush(tables) => {
                    Response::StickTaken(self.stick.get().map_or(0, |s| s.take(from, tables)))
                }
                Request::StickPull(after) => {
                    Response::StickPage(self.stick.get().map(|s| s.page(after)).unwrap_or_default())
                }
                Request::StickClear { table, key } => Response::StickCleared(
                    self.stick.get().and_then(|s| s.clear(&table, key.as_ref())),
                ),
                Request::TakeOver { last_log } => {
                    Response::TakeOver(self.take_over(from, last_log).await)
                }
            }
        })
    }
}

/// Maps a failed Raft write to what the writer is told.
fn failure(e: RaftError<NodeId, ClientWriteError<NodeId, PeerNode>>) -> WriteFailure {
    if let Some(f) = e.forward_to_leader::<PeerNode>() {
        return WriteFailure::NotLeader {
            leader: f.leader_id,
            addr: f.leader_node.as_ref().map(|n| n.addr.clone()),
        };
    }
    WriteFailure::Other(e.to_string())
}

fn no_quorum(t: Duration) -> WriteFailure {
    WriteFailure::NoQuorum(t.as_millis() as u64)
}

/// Writes a command through the local Raft if it leads.
pub(crate) async fn local_write(
    raft: &Raft,
    cmd: Command,
    within: Duration,
) -> Result<Outcome, WriteFailure> {
    match tokio::time::timeout(within, raft.client_write(cmd)).await {
        Err(_) => Err(no_quorum(within)),
        Ok(Ok(resp)) => Ok(resp.data),
        Ok(Err(e)) => Err(failure(e)),
    }
}

/// Adds `id` as a learner, waits for it to catch up, then makes it a voter.
/// Asking again for a node that is already a voter succeeds at once.
pub(crate) async fn local_join(
    raft: &Raft,
    id: NodeId,
    node: PeerNode,
    within: Duration,
) -> Result<(), WriteFailure> {
    let membership = raft.metrics().borrow().membership_config.clone();
    let m = membership.membership();
    if m.voter_ids().any(|v| v == id) {
        return if m.get_node(&id) == Some(&node) {
            Ok(())
        } else {
            Err(WriteFailure::Other(format!(
                "node id {id} is already a member at another address ({}); pick another id or `cluster leave --node-id {id}` first",
                m.get_node(&id).map_or("?".into(), |n| n.to_string())
            )))
        };
    }
    let deadline = tokio::time::Instant::now() + within;
    tracing::info!(id, %node, "adding node as a learner");
    membership_change(deadline, within, || {
        raft.add_learner(id, node.clone(), true)
    })
    .await?;
    tracing::info!(id, "learner caught up; making it a voter");
    membership_change(deadline, within, || {
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
    })
    .await?;
    tracing::info!(id, "node joined as a voter");
    Ok(())
}

/// How long a membership change waits before trying again, while another
/// one (a join that is finishing) is still being committed.
const CHANGE_IN_PROGRESS_RETRY: Duration = Duration::from_millis(50);

/// Runs a membership change until `deadline`, trying again while another
/// change is in progress: two nodes joining one after the other must not
/// fail the second because the first one's change is not committed yet.
async fn membership_change<F, Fut, R>(
    deadline: tokio::time::Instant,
    within: Duration,
    mut change: F,
) -> Result<(), WriteFailure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<
        Output = Result<R, RaftError<NodeId, ClientWriteError<NodeId, PeerNode>>>,
    >,
{
    loop {
        match tokio::time::timeout_at(deadline, change()).await {
            Err(_) => return Err(no_quorum(within)),
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => {
                let busy = matches!(
                    e.api_error(),
                    Some(ClientWriteError::ChangeMembershipError(
                        openraft::error::ChangeMembershipError::InProgress(_)
                    ))
                );
                if !busy || tokio::time::Instant::now() + CHANGE_IN_PROGRESS_RETRY >= deadline {
                    return Err(failure(e));
                }
                tracing::debug!(error = %e, "another membership change is being committed; trying again");
                tokio::time::sleep(CHANGE_IN_PROGRESS_RETRY).await;
            }
        }
    }
}

/// Removes `id` from the voters and the learners.
pub(crate) async fn local_leave(
    raft: &Raft,
    id: NodeId,
    within: Duration,
) -> Result<(), WriteFailure> {
    let membership = raft.metrics().borrow().membership_config.clone();
    let m = membership.membership();
    let voters: BTreeSet<NodeId> = m.voter_ids().collect();
    if voters.contains(&id) {
        if voters.len() == 1 {
            return Err(WriteFailure::Other(format!(
                "node {id} is the last voter: a cluster cannot remove its last member"
            )));
        }
        let deadline = tokio::time::Instant::now() + within;
        membership_change(deadline, within, || {
            raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
        })
        .await?;
    } else if m.get_node(&id).is_some() {
        let deadline = tokio::time::Instant::now() + within;
        membership_change(deadline, within, || {
            raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
        })
        .await?;
    } else if raft.metrics().borrow().state != ServerState::Leader {
        // Only the leader's answer counts.
        let (leader, addr) = leader_of(raft);
        return Err(WriteFailure::NotLeader { leader, addr });
    } else {
        return Err(WriteFailure::Other(format!("node {id} is not a member")));
    }
    tracing::info!(id, "node removed from the cluster");
    Ok(())
}
