//! The leader's lease: whether this node may act as the one leader now (hold
//! the VIP). openraft keeps a cut-off leader in `Leader` state indefinitely,
//! so state alone is not enough: the lease holds while this node leads and a
//! quorum acknowledged it within `lease` (shorter than the shortest election
//! timeout, so it lapses before any other node can be elected).
//!
//! A quorum acknowledges a leader in either of two ways:
//! - openraft's own: its AppendEntries answers (`millis_since_quorum_ack`).
//!   Every one of those has openraft's heartbeat interval (25 ms) as its hard
//!   time limit, and a loaded host (a busy disk's writeback, the CPU shared
//!   with other work) misses it now and then: seen here, the lease lapsing
//!   every second or so, each lapse a VIP dropped and taken again.
//! - the lease heartbeats sent here ([`Request::Heartbeat`]), like
//!   keepalived's adverts and etcd's heartbeats: answered from the follower's
//!   clock and vote alone, without Raft's core or its disk, and each allowed
//!   up to the whole lease to arrive. A follower that answers yes promises to
//!   vote for no one else for a while (longer than the lease) from its
//!   answer on (see `Service::refuse_vote`), as openraft's voters do after
//!   AppendEntries.
//!
//! The heartbeats stand for a live Raft core only while openraft itself saw
//! a quorum within [`CORE_TOLERANCE`]: a leader whose core is stuck stops
//! sending them and loses its lease, and the others elect a new one.
//!
//! The lease is computed against this node's own clock from the moment a
//! metrics value was seen (or a heartbeat sent), and a timer ends it when it
//! lapses: stale metrics never extend it.

use crate::net::Transport;
use crate::types::{Raft, Request, Response};
use openraft::ServerState;
use raftlb_proto::NodeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long openraft may go without a quorum's AppendEntries answers before
/// the lease heartbeats stop standing in for them: a stuck Raft core loses
/// its lease (and its VIP) after this.
const CORE_TOLERANCE: Duration = Duration::from_secs(2);

type Metrics = openraft::RaftMetrics<u64, crate::types::PeerNode>;
type Vote = openraft::Vote<NodeId>;

/// Until when (this node's monotonic clock) `m` grants the lease, if at all.
/// `seen` is when `m` was read.
fn lease_until(m: &Metrics, seen: Instant, lease: Duration) -> Option<Instant> {
    if m.state != ServerState::Leader || m.current_leader != Some(m.id) {
        return None;
    }
    let membership = m.membership_config.membership();
    let only_voter = membership.voter_ids().eq(std::iter::once(m.id));
    if only_voter {
        // A cluster of one is its own quorum, always.
        return Some(seen + Duration::from_secs(3600));
    }
    let acked = Duration::from_millis(m.millis_since_quorum_ack?);
    lease.checked_sub(acked).map(|left| seen + left)
}

/// When each voter last acknowledged a lease heartbeat (the time it was
/// sent), for the senders of one generation.
#[derive(Default)]
struct Acks {
    generation: u64,
    sent: HashMap<NodeId, Instant>,
}

impl Acks {
    /// Forgets the acknowledgements of the senders before: a new generation
    /// of senders starts.
    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.sent.clear();
        self.generation
    }
}

/// Until when the lease heartbeats grant the lease: a quorum of the voters
/// (this node, which leads, included) acknowledged one sent at or after
/// `until - lease`.
fn heartbeat_until(
    m: &Metrics,
    acks: &HashMap<NodeId, Instant>,
    lease: Duration,
) -> Option<Instant> {
    let membership = m.membership_config.membership();
    let voters = membership.voter_ids().count();
    let needed = (voters / 2 + 1).checked_sub(1)?;
    let mut sent: Vec<Instant> = membership
        .voter_ids()
        .filter(|v| *v != m.id)
        .filter_map(|v| acks.get(&v).copied())
        .collect();
    if needed == 0 || sent.len() < needed {
        return None;
    }
    sent.sort_unstable_by(|a, b| b.cmp(a));
    Some(sent[needed - 1] + lease)
}

/// What the lease tracker needs.
pub(crate) struct Tracker<T> {
    pub(crate) raft: Raft,
    pub(crate) transport: T,
    /// How long an acknowledgement holds the lease.
    pub(crate) lease: Duration,
    /// How often lease heartbeats go out.
    pub(crate) every: Duration,
    pub(crate) tx: watch::Sender<bool>,
    /// Until when the lease is held, while it is (for the metrics: the
    /// decision is `tx`'s).
    pub(crate) until: LeaseUntil,
}

/// Until when this node holds the lease, if it does.
pub(crate) type LeaseUntil = Arc<Mutex<Option<Instant>>>;

/// The vote and the voters (with their addresses) that heartbeats go out
/// to while this node leads.
type SendersKey = (Vote, Vec<(NodeId, String)>);

/// The heartbeat senders for one term of leadership: the vote and the
/// voters they were started for.
struct Senders {
    key: SendersKey,
    _tasks: JoinSet<()>,
}

/// The heartbeats a leader sends: its vote, to the other voters.
fn senders_key(m: &Metrics) -> SendersKey {
    let membership = m.membership_config.membership();
    let peers: Vec<(NodeId, String)> = membership
        .voter_ids()
        .filter(|v| *v != m.id)
        .filter_map(|v| Some((v, membership.get_node(&v)?.addr.clone())))
        .collect();
    (m.vote, peers)
}

impl Senders {
    /// Starts one heartbeat sender per voter in `key`, for `generation`.
    fn start<T: Transport>(
        key: SendersKey,
        generation: u64,
        t: &Tracker<T>,
        acks: &Arc<Mutex<Acks>>,
        acked: &Arc<Notify>,
    ) -> Senders {
        let mut tasks = JoinSet::new();
        for (to, addr) in &key.1 {
            tasks.spawn(beat(Beat {
                transport: t.transport.clone(),
                to: *to,
                addr: addr.clone(),
                vote: key.0,
                every: t.every,
                wait: t.lease,
                generation,
                acks: acks.clone(),
                acked: acked.clone(),
            }));
        }
        Senders { key, _tasks: tasks }
    }
}

/// Until when this node holds the lease: by Raft's acknowledgements or by
/// the heartbeats', and never past the core's tolerance (`core_until`).
fn held_until(
    m: &Metrics,
    seen: Instant,
    lease: Duration,
    core_until: Option<Instant>,
    acks: &Mutex<Acks>,
) -> Option<Instant> {
    let by_raft = lease_until(m, seen, lease);
    let by_beats = heartbeat_until(m, &acks.lock().expect("lease acks").sent, lease);
    core_until.and_then(|core| by_raft.max(by_beats).map(|u| u.min(core)))
}

/// Publishes whether this node holds the lease, and warns when a leader
/// lost it.
fn publish(tx: &watch::Sender<bool>, held: bool, m: &Metrics, seen: Instant, heartbeats: bool) {
    let changed = tx.send_if_modified(|cur| std::mem::replace(cur, held) != held);
    if changed && !held && m.state == ServerState::Leader {
        tracing::warn!(
            since_quorum_ack_ms = ?m.millis_since_quorum_ack.map(|a| a + seen.elapsed().as_millis() as u64),
            heartbeats,
            "lost the leader's lease: no quorum acknowledged this node in time"
        );
    }
}

/// Publishes, as it changes, whether this node holds the lease, and sends
/// the lease heartbeats while it leads. Runs until Raft shuts down.
pub(crate) async fn track<T: Transport>(t: Tracker<T>) {
    let acks = Arc::new(Mutex::new(Acks::default()));
    let acked = Arc::new(Notify::new());
    let mut senders: Option<Senders> = None;
    let mut metrics = t.raft.metrics();
    let mut m = metrics.borrow_and_update().clone();
    let mut seen = Instant::now();
    loop {
        let now = Instant::now();
        let core_until = lease_until(&m, seen, CORE_TOLERANCE);
        let core_alive = core_until.is_some_and(|u| now < u);
        // Heartbeats go out while this node leads with a live core.
        let want = core_alive.then(|| senders_key(&m));
        if senders.as_ref().map(|s| &s.key) != want.as_ref() {
            let generation = acks.lock().expect("lease acks").next_generation();
            senders = want.map(|key| Senders::start(key, generation, &t, &acks, &acked));
        }
        let until = held_until(&m, seen, t.lease, core_until, &acks);
        let held = until.is_some_and(|u| now < u);
        publish(&t.tx, held, &m, seen, senders.is_some());
        *t.until.lock().expect("lease until") = until.filter(|_| held);
        // Look again when the lease would lapse, or the core's tolerance.
        let wake = [until.filter(|_| held), core_until.filter(|_| core_alive)]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    t.tx.send_if_modified(|cur| std::mem::replace(cur, false));
                    return;
                }
                m = metrics.borrow_and_update().clone();
                seen = Instant::now();
            }
            _ = acked.notified() => {}
            _ = async {
                match wake {
                    Some(w) => tokio::time::sleep_until(w).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// One voter's heartbeat sender.
struct Beat<T> {
    transport: T,
    to: NodeId,
    addr: String,
    vote: Vote,
    every: Duration,
    /// How long an answer may take (after that it holds no lease anyway).
    wait: Duration,
    generation: u64,
    acks: Arc<Mutex<Acks>>,
    acked: Arc<Notify>,
}

async fn beat<T: Transport>(b: Beat<T>) {
    let mut tick = tokio::time::interval(b.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sent = Instant::now();
        let req = Request::Heartbeat { vote: b.vote };
        if let Ok(Response::Heartbeat(true)) = b.transport.call(b.to, &b.addr, req, b.wait).await {
            let mut a = b.acks.lock().expect("lease acks");
            if a.generation == b.generation {
                a.sent.insert(b.to, sent);
                drop(a);
                b.acked.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{Membership, RaftMetrics, StoredMembership};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    fn metrics(
        state: ServerState,
        voters: &[u64],
        acked: Option<u64>,
    ) -> RaftMetrics<u64, crate::types::PeerNode> {
        let mut m = RaftMetrics::new_initial(1);
        m.state = state;
        m.current_leader = Some(1);
        let nodes: BTreeMap<u64, crate::types::PeerNode> =
            voters.iter().map(|v| (*v, Default::default())).collect();
        let set: BTreeSet<u64> = voters.iter().copied().collect();
        m.membership_config = Arc::new(StoredMembership::new(
            None,
            Membership::new(vec![set], nodes),
        ));
        m.millis_since_quorum_ack = acked;
        m
    }

    #[test]
    fn only_a_leader_acknowledged_within_the_lease_holds_it() {
        let now = Instant::now();
        let lease = Duration::from_millis(300);
        let lead =
            |acked| lease_until(&metrics(ServerState::Leader, &[1, 2, 3], acked), now, lease);
        assert_eq!(lead(Some(100)), Some(now + Duration::from_millis(200)));
        assert_eq!(lead(Some(300)), Some(now));
        assert_eq!(lead(Some(301)), None);
        assert_eq!(lead(None), None);
        let follower = metrics(ServerState::Follower, &[1, 2, 3], Some(0));
        assert_eq!(lease_until(&follower, now, lease), None);
        let mut other = metrics(ServerState::Leader, &[1, 2, 3], Some(0));
        other.current_leader = Some(2);
        assert_eq!(lease_until(&other, now, lease), None);
    }

    #[test]
    fn a_cluster_of_one_always_has_its_quorum() {
        let now = Instant::now();
        let m = metrics(ServerState::Leader, &[1], None);
        assert!(lease_until(&m, now, Duration::from_millis(300)).is_some());
    }
}
