//! This node's standing (priority, preempt, fitness) in the replicated
//! state, its rank among the candidates when the leader falls silent, and
//! preemption: campaigning when this node should lead instead.

use super::fitness::Fitness;
use crate::handle::Cluster;
use raftlb_proto::config::Vip;
use raftlb_proto::{Command, NodeId, NodeView};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The voters other than the leader, best first: fit first, then by
/// priority (high first), then by id; each with whether it is fit. `mine`
/// is this node's own standing (the replicated one may be older).
fn ranked(
    me: NodeId,
    mine: Option<&NodeView>,
    state: &raftlb_proto::ReplicatedState,
    s: &raftlb_cluster::ClusterStatus,
) -> Vec<(NodeId, bool)> {
    let key = |id: NodeId| {
        let v = if id == me {
            mine.or_else(|| state.nodes.get(&id))
        } else {
            state.nodes.get(&id)
        };
        let fit = v.is_none_or(|v| v.unfit.is_none());
        let priority = v.map_or(100, |v| v.priority);
        (!fit, std::cmp::Reverse(priority), id)
    };
    let mut ranked: Vec<(NodeId, bool)> = s
        .members
        .iter()
        .filter(|m| m.role == "voter" && Some(m.id) != s.leader)
        .map(|m| (m.id, !key(m.id).0))
        .collect();
    ranked.sort_by_key(|(id, _)| key(*id));
    ranked
}

/// This node's rank among the candidates when the leader falls silent (0
/// campaigns first; each rank a step later: see
/// `RaftCluster::set_campaign_rank`): its place in [`ranked`]. So the
/// preferred node takes over directly (no election, then a preemption), and
/// two nodes never campaign together, even at equal priorities.
fn campaign_rank(
    me: NodeId,
    mine: &NodeView,
    state: &raftlb_proto::ReplicatedState,
    s: &raftlb_cluster::ClusterStatus,
) -> u32 {
    let ranked = ranked(me, Some(mine), state, s);
    let rank = ranked
        .iter()
        .position(|(id, _)| *id == me)
        .unwrap_or(ranked.len());
    u32::try_from(rank).unwrap_or(u32::MAX)
}

/// Whom this node, leading and about to stop, hands the leadership over
/// to, best first: the fit voters in [`ranked`] order (a witness, or a
/// node that cannot serve its VIPs, is no successor: the followers elect
/// one after the silence if no fit node can).
pub fn successors(cluster: &Cluster) -> Vec<NodeId> {
    let state = cluster.watch().borrow().state.clone();
    let s = cluster.status();
    ranked(cluster.id(), None, &state, &s)
        .into_iter()
        .filter(|(id, fit)| *fit && *id != cluster.id())
        .map(|(id, _)| id)
        .collect()
}

/// How long a fit, caught-up node of higher priority waits, following a
/// leader it would replace, before it campaigns (plus a little per
/// priority step, so that the highest-priority node goes first).
const PREEMPT_DELAY: Duration = Duration::from_secs(1);

/// Whether this node, better than its leader since `since`, campaigns now:
/// after [`PREEMPT_DELAY`] and a little per priority step, and not before
/// the leader's term is older than the voters' lease (a younger leader
/// refuses its vote, and the VIP would be on no node until the voters'
/// lease ran out: seen on the VMs, 4.2 s).
fn preempt_due(cluster: &Cluster, since: Instant, priority: u8) -> bool {
    let wait = PREEMPT_DELAY + Duration::from_millis(4 * u64::from(255 - priority));
    let (age, voter_lease) = cluster.vote_age();
    since.elapsed() >= wait && age > voter_lease + Duration::from_millis(50)
}

/// Keeps this node's standing (priority, preempt, fitness) in the
/// replicated state, and campaigns when this node should lead instead of
/// the current leader: it is fit and the leader is not, or it may preempt
/// and its priority is higher than the leader's.
pub(super) async fn standing(cluster: Arc<Cluster>, fitness: Arc<Fitness>) {
    let me = cluster.id();
    let settings = fitness.settings.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut better_since: Option<(NodeId, Instant)> = None;
    let mut last_report = Instant::now() - Duration::from_secs(3600);
    // The configured VIPs, parsed once per config version.
    let mut cache: (u64, Vec<Vip>) = (0, Vec::new());
    loop {
        tick.tick().await;
        let state = cluster.watch().borrow().state.clone();
        if state.config_version() != cache.0 {
            let parsed = state.parsed_config().map(|c| c.vips).unwrap_or_default();
            cache = (state.config_version(), parsed);
        }
        let vips = &cache.1;
        let view = NodeView {
            priority: settings.priority,
            preempt: settings.preempt,
            unfit: fitness.unfit(vips),
        };
        let known = state.nodes.get(&me);
        if known != Some(&view) && last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let cmd = Command::ReportNode {
                node: me,
                view: view.clone(),
            };
            if let Err(e) = cluster.write(cmd).await {
                tracing::debug!(error = %e, "standing not committed; will retry");
            }
        }
        let s = cluster.status();
        cluster.set_campaign_rank(campaign_rank(me, &view, &state, &s));
        // Preemption: only with VIPs to hold, from a follower that hears
        // its leader and has applied all it has.
        let leader = match s.leader {
            Some(l) if l != me && s.role == "follower" && !vips.is_empty() => l,
            _ => {
                better_since = None;
                continue;
            }
        };
        let caught_up = s.last_log_index.is_some() && s.last_log_index == s.applied_index;
        let theirs = state.nodes.get(&leader);
        let reason = match theirs {
            _ if view.unfit.is_some() || !caught_up => None,
            Some(t) if t.unfit.is_some() => Some(format!(
                "leader {leader} cannot serve ({})",
                t.unfit.as_deref().unwrap_or("")
            )),
            Some(t) if view.preempt && view.priority > t.priority => Some(format!(
                "leader {leader} has priority {} < {} (preempt)",
                t.priority, view.priority
            )),
            _ => None,
        };
        let Some(reason) = reason else {
            better_since = None;
            continue;
        };
        let since = match better_since {
            Some((l, t)) if l == leader => t,
            _ => {
                better_since = Some((leader, Instant::now()));
                continue;
            }
        };
        if preempt_due(&cluster, since, view.priority) {
            tracing::info!(reason = %reason, "campaigning for leadership");
            if let Err(e) = cluster.raft().trigger().elect().await {
                tracing::warn!(error = %e, "cannot campaign");
            }
            better_since = None;
        }
    }
}
