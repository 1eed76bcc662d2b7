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

use crate::net::raft::Contacts;
use crate::net::Transport;
use crate::store::LastLog;
use crate::types::{Raft, Request, Response};
use openraft::ServerState;
use raftlb_proto::NodeId;
use rand::Rng;
use std::time::{Duration, Instant};

/// How often the loop looks.
const CHECK: Duration = Duration::from_millis(5);

/// Added to the voters' lease, for the leader's last message reaching the
/// other voter a little after this one.
const MARGIN: Duration = Duration::from_millis(10);

/// Random delays are drawn from `[0, SPREAD)`, on top of the node's own
/// campaign delay (its rank: see [`crate::RaftCluster::set_campaign_delay`]).
const SPREAD: Duration = Duration::from_millis(20);

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
    /// When each peer last sent this node a request.
    pub(crate) incoming: Contacts,
    pub(crate) vote_clock: VoteClock,
    pub(crate) transport: T,
    pub(crate) last_log: LastLog,
    /// openraft's `election_timeout_max`.
    pub(crate) voter_lease: Duration,
    /// This node's rank delay, in ms (set by the node).
    pub(crate) campaign_delay: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Runs until Raft shuts down.
pub(crate) async fn drive<T: Transport>(e: Election<T>) {
    let Election {
        id,
        raft,
        incoming,
        vote_clock,
        transport,
        last_log,
        voter_lease,
        campaign_delay,
    } = e;
    raft.runtime_config().elect(false);
    let start = Instant::now();
    let metrics = raft.metrics();
    let mut last_campaign: Option<Instant> = None;
    // When this node's vote last changed (it voted, or learned of a newer
    // term or leader): like openraft's own timer, that restarts the wait.
    let mut vote = metrics.borrow().vote;
    let mut vote_changed = start;
    let mut delay = jitter();
    let mut tick = tokio::time::interval(CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The longest this loop was recently held up past its tick (this
    // node's runtime, or the whole process, did not run).
    let mut stalled = Duration::ZERO;
    loop {
        // How late the tick came, not counting this loop's own waits (a
        // tick missed while it waited for a pre-vote comes at once).
        let waited_from = tokio::time::Instant::now();
        let due = tick.tick().await.max(waited_from);
        let late = due.elapsed();
        if late > voter_lease / 2 {
            tracing::warn!(
                late_ms = late.as_millis() as u64,
                "the election loop ran late: this node was held up"
            );
        }
        stalled = if late > stalled {
            late
        } else {
            stalled.saturating_sub(CHECK)
        };
        let (state, leader, is_voter, voters) = {
            let m = metrics.borrow();
            if m.vote != vote {
                vote = m.vote;
                vote_changed = Instant::now();
                *vote_clock.lock().expect("vote clock") = (vote, vote_changed);
            }
            let membership = m.membership_config.membership();
            (
                m.state,
                m.current_leader,
                membership.voter_ids().any(|v| v == id),
                membership.voter_ids().count(),
            )
        };
        match state {
            ServerState::Shutdown => return,
            ServerState::Leader => {
                last_campaign = None;
                continue;
            }
            _ if !is_voter => continue,
            _ => {}
        }
        let now = Instant::now();
        if voters == 1 {
            // The only voter: it is its own quorum.
            if state != ServerState::Candidate
                && last_campaign.is_none_or(|t| now - t >= voter_lease)
            {
                last_campaign = Some(now);
                let _ = raft.trigger().elect().await;
            }
            continue;
        }
        let heard = leader.filter(|l| *l != id).and_then(|l| incoming.last(l));
        let quiet_since = [heard, last_campaign, Some(vote_changed)]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(start);
        let rank = Duration::from_millis(campaign_delay.load(std::sync::atomic::Ordering::Relaxed));
        let due = quiet_since + voter_lease + MARGIN + rank + delay;
        if now < due {
            continue;
        }
        last_campaign = Some(now);
        delay = jitter();
        let silent_ms = (now - quiet_since).as_millis() as u64;
        let granted = pre_vote(id, &raft, &transport, &last_log).await;
        if granted.len() + 1 < quorum_of(voters) {
            tracing::debug!(
                silent_ms,
                stalled_ms = stalled.as_millis() as u64,
                ?granted,
                "no word from a leader, but no quorum would vote for this node"
            );
            continue;
        }
        // Meanwhile another node may have asked for votes (recorded as the
        // request arrives, before Raft's metrics show any vote), or a
        // leader may have spoken.
        let now_vote = metrics.borrow().vote;
        let heard_now = metrics
            .borrow()
            .current_leader
            .filter(|l| *l != id)
            .and_then(|l| incoming.last(l));
        let asked = vote_clock.lock().expect("vote clock").1;
        if now_vote != vote || heard_now > heard || asked > now {
            continue;
        }
        // Seen by this node's own pre-vote answers from now on.
        *vote_clock.lock().expect("vote clock") = (vote, Instant::now());
        tracing::warn!(
            silent_ms,
            stalled_ms = stalled.as_millis() as u64,
            ?granted,
            leader = ?leader,
            "no word from a leader: campaigning"
        );
        if raft.trigger().elect().await.is_err() {
            return;
        }
    }
}
