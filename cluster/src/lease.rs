//! The leader's lease: whether this node may act as the one leader now (hold
//! the VIP). openraft keeps a cut-off leader in `Leader` state indefinitely,
//! so state alone is not enough: the lease holds while this node leads and a
//! quorum acknowledged it within `lease` (shorter than the shortest election
//! timeout, so it lapses before any other node can be elected).
//!
//! The lease is computed against this node's own clock from the moment a
//! metrics value was seen, and a timer ends it when it lapses: stale metrics
//! never extend it.

use crate::types::Raft;
use openraft::ServerState;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Until when (this node's monotonic clock) `m` grants the lease, if at all.
/// `seen` is when `m` was read.
fn lease_until(
    m: &openraft::RaftMetrics<u64, crate::types::PeerNode>,
    seen: Instant,
    lease: Duration,
) -> Option<Instant> {
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

/// Publishes, as it changes, whether this node holds the lease. Runs until
/// Raft shuts down.
pub(crate) async fn track(raft: Raft, lease: Duration, tx: watch::Sender<bool>) {
    let mut metrics = raft.metrics();
    loop {
        let seen = Instant::now();
        let until = lease_until(&metrics.borrow_and_update(), seen, lease);
        loop {
            let held = until.is_some_and(|u| Instant::now() < u);
            tx.send_if_modified(|cur| std::mem::replace(cur, held) != held);
            let lapse = async {
                match until {
                    Some(u) if held => tokio::time::sleep_until(u).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = metrics.changed() => {
                    if changed.is_err() {
                        tx.send_if_modified(|cur| std::mem::replace(cur, false));
                        return;
                    }
                    break;
                }
                _ = lapse => {}
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
