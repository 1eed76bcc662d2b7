//! When a follower campaigns. openraft 0.9 draws each node's election
//! timeout once, at start: two followers that drew close values campaign
//! together after every failure and split the vote again and again (seen
//! here: three split rounds, 0.6 s without a leader). Its own timer also
//! only runs every 1.5 heartbeats. So openraft's timer is off, and this
//! loop decides instead, every few milliseconds, with a fresh random delay
//! for every campaign.
//!
//! A follower campaigns once its leader has been silent for
//! `election_timeout_max` (the time openraft's voters refuse other
//! candidates after hearing their leader) plus a margin plus a random delay,
//! and only after a pre-vote: a quorum says it would vote for it (they do
//! not hear a leader either, and its log is as recent as theirs). openraft
//! 0.9 has no pre-vote of its own; without one, a node that cannot win (it
//! restarted, or was cut off, and its log is behind) would still depose a
//! healthy leader with the higher term of its campaign.
//!
//! A refused pre-vote is asked again soon ([`RETRY`] plus the rank and the
//! random delay), not after another whole lease: it changes nothing, and
//! when the voters' waits end together the best-ranked node must be the
//! first to ask. That happens at every preemption: the preferring node's
//! campaign makes the leader step down (it sees the higher term), and all
//! nodes then wait out the same silence, from instants a heartbeat apart.

use crate::net::raft::Contacts;
use crate::net::Transport;
use crate::store::LastLog;
use crate::types::{PeerNode, Raft, Request, Response};
use openraft::ServerState;
use raftlb_proto::NodeId;
use rand::Rng;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the loop looks.
const CHECK: Duration = Duration::from_millis(5);

/// Added to the voters' lease, for the leader's last message reaching the
/// other voter a little after this one.
const MARGIN: Duration = Duration::from_millis(10);

/// Random delays are drawn from `[0, SPREAD)`, on top of the node's own
/// campaign delay (its rank: see [`crate::RaftCluster::set_campaign_rank`]).
const SPREAD: Duration = Duration::from_millis(20);

/// How soon a node whose pre-vote was refused asks again (plus its rank's
/// delay and a random one): a few round trips, well under a rank step.
const RETRY: Duration = Duration::from_millis(50);

/// How much later than the rank before it a rank campaigns: each node
/// counts the leader's silence from its own last word from it, and those
/// are up to a heartbeat apart (a follower may have had one more), so a
/// rank's head start is a heartbeat, plus the random spread and a round
/// trip.
pub(crate) fn rank_step(heartbeat: Duration) -> Duration {
    heartbeat + Duration::from_millis(25)
}

/// This node's vote and when it last changed, as the election loop saw it.
pub(crate) type VoteClock = std::sync::Arc<std::sync::Mutex<(openraft::Vote<NodeId>, Instant)>>;

/// How long a pre-vote waits for the answers. Generous: a pre-vote changes
/// nothing, and an answer that is merely slow (a loaded machine, a
/// connection being made) must not count as a refusal, or a busy cluster
/// could stay leaderless.
const PRE_VOTE_TIMEOUT: Duration = Duration::from_millis(500);

fn jitter() -> Duration {
    rand::rng().random_range(Duration::ZERO..SPREAD)
}

fn quorum_of(voters: usize) -> usize {
    voters / 2 + 1
}

/// The other voters that would vote for this node.
async fn pre_vote<T: Transport>(
    id: NodeId,
    raft: &Raft,
    transport: &T,
    last_log: &LastLog,
) -> Vec<NodeId> {
    let voters: Vec<(NodeId, String)> = {
        let m = raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter(|v| *v != id)
            .filter_map(|v| Some((v, membership.get_node(&v)?.addr.clone())))
            .collect()
    };
    let mine = last_log.get();
    let mut asks: futures_util::stream::FuturesUnordered<_> = voters
        .iter()
        .map(|(v, addr)| async move {
            let r = transport
                .call(
                    *v,
                    addr,
                    Request::PreVote { last_log: mine },
                    PRE_VOTE_TIMEOUT,
                )
                .await;
            (*v, matches!(r, Ok(Response::PreVote(true))))
        })
        .collect();
    // Done once a quorum said yes: a dead leader's answer (a connect that
    // times out) must not hold up its own replacement.
    let needed = quorum_of(voters.len() + 1) - 1;
    let mut granted = Vec::new();
    while granted.len() < needed {
        match futures_util::StreamExt::next(&mut asks).await {
            Some((v, true)) => granted.push(v),
            Some((_, false)) => {}
            None => break,
        }
    }
    granted
}

/// What the election loop needs.
pub(crate) struct Election<T> {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    /// When each peer last sent this node a leader's message.
    pub(crate) incoming: Contacts,
    pub(crate) vote_clock: VoteClock,
    pub(crate) transport: T,
    pub(crate) last_log: LastLog,
    /// openraft's `election_timeout_max`.
    pub(crate) voter_lease: Duration,
    /// This node's rank delay, in ms (set by the node).
    pub(crate) campaign_delay: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// What the election loop carries from one tick to the next.
struct Loop {
    metrics: watch::Receiver<openraft::RaftMetrics<NodeId, PeerNode>>,
    /// When the loop started: the wait's start until anything restarts it.
    start: Instant,
    /// When this node last campaigned, if it does not lead since.
    last_campaign: Option<Instant>,
    /// When its last pre-vote was refused, if it did not campaign since.
    refused: Option<Instant>,
    /// This node's vote and when it last changed (it voted, or learned of a
    /// newer term or leader): like openraft's own timer, that restarts the
    /// wait.
    vote: openraft::Vote<NodeId>,
    vote_changed: Instant,
    /// The random part of the next campaign's delay.
    delay: Duration,
    /// The longest this loop was recently held up past its tick (this
    /// node's runtime, or the whole process, did not run).
    stalled: Duration,
}

/// What one tick read from Raft's metrics.
struct Seen {
    state: ServerState,
    leader: Option<NodeId>,
    is_voter: bool,
    voters: usize,
}

/// How long the leader has been silent, at a tick that found a campaign due.
struct Silence {
    now: Instant,
    /// Since when nothing restarted the wait.
    since: Instant,
    /// When this node last heard its leader.
    heard: Option<Instant>,
}

impl Loop {
    /// Notes that the tick came `late`, and warns when that means this node
    /// was held up.
    fn note_late(&mut self, late: Duration, voter_lease: Duration) {
        if late > voter_lease / 2 {
            tracing::warn!(
                late_ms = late.as_millis() as u64,
                "the election loop ran late: this node was held up"
            );
        }
        self.stalled = if late > self.stalled {
            late
        } else {
            self.stalled.saturating_sub(CHECK)
        };
    }

    /// Reads Raft's metrics, restarting the wait if this node's vote changed.
    fn look(&mut self, id: NodeId, vote_clock: &VoteClock) -> Seen {
        let m = self.metrics.borrow();
        if m.vote != self.vote {
            self.vote = m.vote;
            self.vote_changed = Instant::now();
            *vote_clock.lock().expect("vote clock") = (self.vote, self.vote_changed);
        }
        let membership = m.membership_config.membership();
        Seen {
            state: m.state,
            leader: m.current_leader,
            is_voter: membership.voter_ids().any(|v| v == id),
            voters: membership.voter_ids().count(),
        }
    }

    /// The leader's silence, if it lasted long enough for this node to
    /// campaign: the voters' lease, the margin, its rank and its random
    /// delay; after a refused pre-vote, also [`RETRY`] since, its rank and
    /// its random delay.
    fn silent_long_enough<T>(&self, e: &Election<T>, seen: &Seen, now: Instant) -> Option<Silence> {
        let heard = seen
            .leader
            .filter(|l| *l != e.id)
            .and_then(|l| e.incoming.last(l));
        let since = [heard, self.last_campaign, Some(self.vote_changed)]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(self.start);
        let rank =
            Duration::from_millis(e.campaign_delay.load(std::sync::atomic::Ordering::Relaxed));
        let silent = since + e.voter_lease + MARGIN;
        let due = self.refused.map_or(silent, |r| silent.max(r + RETRY)) + rank + self.delay;
        if now < due {
            return None;
        }
        Some(Silence { now, since, heard })
    }

    /// After the pre-vote: whether this node campaigns now. It does if a
    /// quorum would vote for it and nothing changed meanwhile; it then
    /// marks its vote as changed, for its own pre-vote answers.
    fn may_campaign<T>(
        &self,
        e: &Election<T>,
        seen: &Seen,
        quiet: &Silence,
        granted: &[NodeId],
    ) -> bool {
        let silent_ms = (quiet.now - quiet.since).as_millis() as u64;
        if granted.len() + 1 < quorum_of(seen.voters) {
            tracing::debug!(
                silent_ms,
                stalled_ms = self.stalled.as_millis() as u64,
                ?granted,
                "no word from a leader, but no quorum would vote for this node"
            );
            return false;
        }
        // Meanwhile another node may have asked for votes (recorded as the
        // request arrives, before Raft's metrics show any vote), or a
        // leader may have spoken.
        let now_vote = self.metrics.borrow().vote;
        let heard_now = self
            .metrics
            .borrow()
            .current_leader
            .filter(|l| *l != e.id)
            .and_then(|l| e.incoming.last(l));
        let asked = e.vote_clock.lock().expect("vote clock").1;
        if now_vote != self.vote || heard_now > quiet.heard || asked > quiet.now {
            return false;
        }
        // Seen by this node's own pre-vote answers from now on.
        *e.vote_clock.lock().expect("vote clock") = (self.vote, Instant::now());
        tracing::warn!(
            silent_ms,
            stalled_ms = self.stalled.as_millis() as u64,
            ?granted,
            leader = ?seen.leader,
            "no word from a leader: campaigning"
        );
        true
    }
}

/// Runs until Raft shuts down.
pub(crate) async fn drive<T: Transport>(e: Election<T>) {
    e.raft.runtime_config().elect(false);
    let start = Instant::now();
    let metrics = e.raft.metrics();
    // The vote the voters' side ([`crate::service::Service::pre_vote`])
    // compares with: the one this loop starts from, or the first look
    // would not see a change and a vote read before Raft loaded its state
    // would make this node refuse every pre-vote until its vote changes
    // (seen on slow VMs: after its followers restarted, a dead leader was
    // never replaced).
    let vote = metrics.borrow().vote;
    *e.vote_clock.lock().expect("vote clock") = (vote, start);
    let mut w = Loop {
        metrics,
        start,
        last_campaign: None,
        refused: None,
        vote,
        vote_changed: start,
        delay: jitter(),
        stalled: Duration::ZERO,
    };
    let mut tick = tokio::time::interval(CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // How late the tick came, not counting this loop's own waits (a
        // tick missed while it waited for a pre-vote comes at once).
        let waited_from = tokio::time::Instant::now();
        let due = tick.tick().await.max(waited_from);
        w.note_late(due.elapsed(), e.voter_lease);
        let seen = w.look(e.id, &e.vote_clock);
        match seen.state {
            ServerState::Shutdown => return,
            ServerState::Leader => {
                w.last_campaign = None;
                w.refused = None;
                continue;
            }
            _ if !seen.is_voter => continue,
            _ => {}
        }
        let now = Instant::now();
        if seen.voters == 1 {
            // The only voter: it is its own quorum.
            if seen.state != ServerState::Candidate
                && w.last_campaign.is_none_or(|t| now - t >= e.voter_lease)
            {
                w.last_campaign = Some(now);
                let _ = e.raft.trigger().elect().await;
            }
            continue;
        }
        let Some(quiet) = w.silent_long_enough(&e, &seen, now) else {
            continue;
        };
        w.delay = jitter();
        let granted = pre_vote(e.id, &e.raft, &e.transport, &e.last_log).await;
        if !w.may_campaign(&e, &seen, &quiet, &granted) {
            w.refused = Some(Instant::now());
            continue;
        }
        w.last_campaign = Some(Instant::now());
        w.refused = None;
        if e.raft.trigger().elect().await.is_err() {
            return;
        }
    }
}
