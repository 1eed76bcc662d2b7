//! The handle a node holds: its Raft with the durable store, the service it
//! answers peers with, and the operations the CLI asks for — initialize,
//! write (forwarded to the leader), join, leave, status — each bounded by a
//! timeout with a clear error.

use crate::membership::{leader_of, member_table};
use crate::net::raft::{Contacts, Network};
use crate::net::{Handler, Transport};
use crate::options::{raft_config, Options};
use crate::service::{self, Service};
use crate::store::{self, Applied};
use crate::types::{MemberStatus, PeerNode, Raft, Request, Response, WriteFailure};
use openraft::ServerState;
use raftlb_proto::{Command, NodeId, Outcome};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Why the cluster could not start or be formed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The store under the data directory could not be opened.
    #[error("cannot open the Raft store in {path}: {source}")]
    Store {
        /// The directory.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// openraft refused to start or to initialize.
    #[error("raft: {0}")]
    Raft(String),
    /// A write or membership change failed.
    #[error(transparent)]
    Write(#[from] WriteFailure),
}

/// This node's view of the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// This node's id.
    pub id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: &'static str,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Last log index on this node.
    pub last_log_index: Option<u64>,
    /// Last index applied to this node's state (committed and applied).
    pub applied_index: Option<u64>,
    /// Leader only: milliseconds since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    /// Whether this node holds the leader's lease (may hold the VIP).
    pub lease: bool,
    /// How long the lease holds without another acknowledgement, while
    /// this node holds it.
    pub lease_remaining_ms: Option<u64>,
    /// The members. Matched index, lag and last contact are the leader's
    /// view when this node could ask the leader (`members_from`).
    pub members: Vec<MemberStatus>,
    /// Whose view `members` is: this node's id, or the leader's.
    pub members_from: NodeId,
}

/// The node's handle to the cluster.
pub struct RaftCluster<T: Transport> {
    id: NodeId,
    raft: Raft,
    transport: T,
    service: Arc<Service>,
    applied: watch::Receiver<Applied>,
    contacts: Contacts,
    opts: Options,
    lease: watch::Receiver<bool>,
    lease_until: crate::lease::LeaseUntil,
    campaign_delay: Arc<std::sync::atomic::AtomicU64>,
}

fn role(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

impl<T: Transport> RaftCluster<T> {
    /// Opens the store under `data_dir` and starts Raft as node `id`. A node
    /// with state resumes where it was; a new one waits to be initialized or
    /// added by a leader.
    pub async fn open(
        id: NodeId,
        data_dir: &Path,
        transport: T,
        opts: Options,
    ) -> Result<Self, ClusterError> {
        let (log, sm, applied) =
            store::open(data_dir)
                .await
                .map_err(|source| ClusterError::Store {
                    path: data_dir.display().to_string(),
                    source,
                })?;
        let config = raft_config(&opts)
            .validate()
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let contacts = Contacts::default();
        let network = Network::new(id, transport.clone(), contacts.clone());
        let last_log = log.last_log();
        let raft = Raft::new(id, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let incoming = Contacts::default();
        let campaign_delay = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let vote_changed: crate::election::VoteClock = Arc::new(std::sync::Mutex::new((
            raft.metrics().borrow().vote,
            std::time::Instant::now(),
        )));
        tokio::spawn(crate::election::drive(crate::election::Election {
            id,
            raft: raft.clone(),
            incoming: incoming.clone(),
            vote_clock: vote_changed.clone(),
            transport: transport.clone(),
            last_log: last_log.clone(),
            voter_lease: opts.election.1,
            campaign_delay: campaign_delay.clone(),
        }));
        // The lease: a quorum heard within the shortest election timeout.
        let (lease_tx, lease) = watch::channel(false);
        let lease_until = crate::lease::LeaseUntil::default();
        tokio::spawn(crate::lease::track(crate::lease::Tracker {
            raft: raft.clone(),
            transport: transport.clone(),
            lease: opts.election.0,
            every: opts.heartbeat,
            tx: lease_tx,
            until: lease_until.clone(),
        }));
        let service = Arc::new(Service {
            raft: raft.clone(),
            contacts: contacts.clone(),
            incoming,
            write_timeout: opts.write_timeout,
            join_timeout: opts.join_timeout,
            lease: opts.election.0,
            voter_lease: opts.election.1,
            holds_lease: lease.clone(),
            vote_changed,
            last_log,
            reporter: Default::default(),
            stick: Default::default(),
            promise: Default::default(),
        });
        Ok(RaftCluster {
            id,
            raft,
            transport,
            service,
            campaign_delay,
            applied,
            contacts,
            opts,
            lease,
            lease_until,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// What answers this node's peers (give it to the transport's server).
    pub fn handler(&self) -> Arc<dyn Handler> {
        self.service.clone()
    }

    /// The Raft instance, for metrics and tests.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The applied state; changes with every applied entry or snapshot.
    pub fn watch(&self) -> watch::Receiver<Applied> {
        self.applied.clone()
    }

    /// Whether this node leads with a valid lease: it is the leader and a
    /// quorum acknowledged it within the shortest election timeout. The
    /// lease lapses (at once, by a timer) before any other node can be
    /// elected, so at most one node holds it at any moment. This is what may
    /// hold the VIP.
    pub fn lease(&self) -> watch::Receiver<bool> {
        self.lease.clone()
    }

    /// Whether this node has cluster state (initialized, or added by a leader).
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// Makes this node a cluster of one, itself the only voter, and waits
    /// until it leads.
    pub async fn initialize(&self, me: PeerNode) -> Result<(), ClusterError> {
        self.raft
            .initialize(BTreeMap::from([(self.id, me)]))
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        self.raft
            .wait(Some(self.opts.write_timeout))
            .state(ServerState::Leader, "initialize")
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        Ok(())
    }

    /// Commits a command (forwarded to the leader if this node does not
    /// lead) and returns its outcome. Fails with `NoQuorum` if nothing
    /// confirmed it within the write timeout.
    ///
    /// A forward that fails, even after the leader may have received it (it
    /// died mid-call), is sent again, to whoever leads next: every command is
    /// idempotent (`set` semantics; the committed config document applied
    /// again is a no-op that answers its version), so a retry never applies
    /// a change twice.
    pub async fn write(&self, cmd: Command) -> Result<Outcome, WriteFailure> {
        let deadline = Instant::now() + self.opts.write_timeout;
        let mut target: Option<(NodeId, String)> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WriteFailure::NoQuorum(
                    self.opts.write_timeout.as_millis() as u64
                ));
            }
            let result = match &target {
                None => service::local_write(&self.raft, cmd.clone(), left).await,
                Some((leader, addr)) => {
                    match self
                        .transport
                        .call(*leader, addr, Request::Write(cmd.clone()), left)
                        .await
                    {
                        Ok(Response::Write(r)) => r,
                        Ok(other) => Err(WriteFailure::Other(format!(
                            "unexpected answer from node {leader}: {other:?}"
                        ))),
                        Err(e) => {
                            tracing::debug!(error = %e, "forwarding a write failed; retrying");
                            Err(WriteFailure::NotLeader {
                                leader: None,
                                addr: None,
                            })
                        }
                    }
                }
            };
            match result {
                Err(WriteFailure::NotLeader {
                    leader: Some(l),
                    addr: Some(a),
                }) if l != self.id => target = Some((l, a)),
                Err(WriteFailure::NotLeader { .. }) => {
                    // An election is under way, or the leader just changed.
                    target = None;
                    tokio::time::sleep(Duration::from_millis(20).min(left)).await;
                }
                other => return other,
            }
        }
    }

    /// Asks the cluster, through the node at `peer_addr`, to add this node
    /// (as a learner, then a voter once caught up). Follows redirects to the
    /// leader.
    pub async fn join(&self, me: PeerNode, peer_addr: &str) -> Result<(), WriteFailure> {
        let req = || Request::Join {
            id: self.id,
            node: me.clone(),
        };
        self.membership_call(0, peer_addr.to_string(), req, self.opts.join_timeout)
            .await
    }

    /// Removes node `id` from the cluster (through the leader).
    pub async fn leave(&self, id: NodeId) -> Result<(), WriteFailure> {
        let r = service::local_leave(&self.raft, id, self.opts.write_timeout).await;
        match r {
            Err(WriteFailure::NotLeader {
                leader: Some(l),
                addr: Some(a),
            }) if l != self.id => {
                self.membership_call(l, a, || Request::Leave { id }, self.opts.write_timeout)
                    .await
            }
            other => other,
        }
    }

    async fn membership_call(
        &self,
        mut target: NodeId,
        mut addr: String,
        req: impl Fn() -> Request,
        within: Duration,
    ) -> Result<(), WriteFailure> {
        let deadline = Instant::now() + within;
        let mut last_error = String::from("no answer");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WriteFailure::Other(format!(
                    "gave up after {} ms: {last_error}",
                    within.as_millis()
                )));
            }
            match self.transport.call(target, &addr, req(), left).await {
                Ok(Response::Membership(Ok(()))) => return Ok(()),
                Ok(Response::Membership(Err(WriteFailure::NotLeader {
                    leader: Some(l),
                    addr: Some(a),
                }))) => {
                    (target, addr) = (l, a);
                    continue;
                }
                Ok(Response::Membership(Err(e @ WriteFailure::Other(_)))) => return Err(e),
                Ok(Response::Membership(Err(e))) => last_error = e.to_string(),
                Ok(other) => last_error = format!("unexpected answer: {other:?}"),
                Err(e @ crate::net::CallError::Unreachable { .. }) if target == 0 => {
                    // The peer we were given: a wrong secret or address will
                    // not fix itself.
                    return Err(WriteFailure::Other(e.to_string()));
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100).min(left)).await;
        }
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let members = member_table(&m, &self.contacts);
        ClusterStatus {
            id: self.id,
            role: role(m.state),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            lease: *self.lease.borrow(),
            lease_remaining_ms: self.lease_until.lock().expect("lease until").map(|u| {
                u.saturating_duration_since(tokio::time::Instant::now())
                    .as_millis() as u64
            }),
            members,
            members_from: self.id,
        }
    }

    /// Like [`RaftCluster::status`], with the members as the leader sees
    /// them (replication progress and last contact are the leader's to
    /// know), when this node does not lead and the leader answers quickly.
    pub async fn status_with_leader(&self) -> ClusterStatus {
        let mut status = self.status();
        let (Some(leader), (_, Some(addr))) = (status.leader, leader_of(&self.raft)) else {
            return status;
        };
        if leader == self.id {
            return status;
        }
        let asked = self
            .transport
            .call(leader, &addr, Request::Members, Duration::from_millis(300))
            .await;
        if let Ok(Response::Members(Some(members))) = asked {
            status.members = members;
            status.members_from = leader;
        }
        status
    }

    /// This node's rank among the candidates for a silent leader's place
    /// (0: the first to campaign). The node sets it from its priority and
    /// fitness, so that the preferred node is the first to campaign and two
    /// nodes do not split the vote: each rank waits
    /// [`crate::election::rank_step`] longer than the one before.
    pub fn set_campaign_rank(&self, rank: u32) {
        let delay = crate::election::rank_step(self.opts.heartbeat) * rank;
        self.campaign_delay.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Sets what this node answers when a peer asks for its report (once;
    /// later calls change nothing).
    pub fn set_reporter(&self, f: impl Fn() -> Vec<u8> + Send + Sync + 'static) {
        let _ = self.service.reporter.set(Box::new(f));
    }

    /// Sets who takes the stick-table entries peers push and answers their
    /// resyncs (once; later calls change nothing).
    pub fn set_stick_peer(&self, peer: Arc<dyn crate::StickPeer>) {
        let _ = self.service.stick.set(peer);
    }

    /// The other members (voters and learners) and where to reach them.
    pub fn peers(&self) -> Vec<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .nodes()
            .filter(|(id, n)| **id != self.id && !n.addr.is_empty())
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    /// Calls member `target` at `addr` directly (not through Raft).
    pub async fn call(
        &self,
        target: NodeId,
        addr: &str,
        req: Request,
        timeout: Duration,
    ) -> Result<Response, crate::net::CallError> {
        self.transport.call(target, addr, req, timeout).await
    }

    /// The report of the node this one believes leads (its own if it
    /// leads), with that node's id; `None` without a known, reachable leader.
    pub async fn leader_report(&self) -> Option<(NodeId, Vec<u8>)> {
        let (Some(leader), (_, addr)) = (self.status().leader, leader_of(&self.raft)) else {
            return None;
        };
        if leader == self.id {
            return Some((leader, self.service.report()));
        }
        let asked = self
            .transport
            .call(leader, &addr?, Request::Report, Duration::from_millis(300))
            .await;
        match asked {
            Ok(Response::Report(r)) => Some((leader, r)),
            _ => None,
        }
    }

    /// Resolves once this node learns that the cluster removed it: while it
    /// sees no leader (or sees itself outside the voters), it asks the other
    /// members, and a leader that does not list it is the answer.
    pub async fn removed(&self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let m = self.raft.metrics().borrow().clone();
            let membership = m.membership_config.membership();
            let in_voters = membership.voter_ids().any(|v| v == self.id);
            // A removed node hears no leader any more; it does not campaign
            // either (no quorum passes its pre-vote).
            let silent = m.current_leader.filter(|l| *l != self.id).is_some_and(|l| {
                self.service
                    .incoming
                    .last(l)
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
            });
            let leaderless = m.current_leader.is_none()
                || silent
                || m.state == ServerState::Candidate
                || m.current_leader == Some(self.id) && m.state != ServerState::Leader;
            if m.state == ServerState::Leader || (in_voters && !leaderless) {
                continue;
            }
            if membership.nodes().count() == 0 {
                continue; // not initialized yet: waiting to join
            }
            let peers: Vec<(NodeId, String)> = membership
                .nodes()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect();
            for (id, addr) in peers {
                let r = self
                    .transport
                    .call(
                        id,
                        &addr,
                        Request::IsMember { id: self.id },
                        Duration::from_millis(500),
                    )
                    .await;
                if let Ok(Response::IsMember(Some(false))) = r {
                    tracing::warn!(leader = id, "this node was removed from the cluster");
                    return;
                }
            }
        }
    }

    /// How long this node's vote has not changed (it follows, or leads,
    /// the same term since), and openraft's `election_timeout_max`: a
    /// leader refuses a higher term's vote while its own is younger than
    /// that, so a campaign against it before then only makes everyone wait
    /// out the voters' lease.
    pub fn vote_age(&self) -> (Duration, Duration) {
        let at = self.service.vote_changed.lock().expect("vote clock").1;
        (at.elapsed(), self.opts.election.1)
    }

    /// Hands the leadership over, if this node leads: asks `successors`
    /// in order (the node ranks them; non-voters are skipped) to campaign
    /// now, votes for the first that does, and waits for it to lead (up to
    /// the voters' lease, the time its followers would wait anyway). For a
    /// leader that stops: it drops its VIPs first. Returns the new leader,
    /// or `None` (the followers then elect one after its silence).
    pub async fn hand_over(&self, successors: &[NodeId]) -> Option<NodeId> {
        crate::handover::hand_over(
            &self.raft,
            &self.transport,
            &self.service.last_log,
            &self.service.vote_changed,
            successors,
            self.opts.election.1,
        )
        .await
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}
