//! This node's view of the membership: the member table `cluster status`
//! shows, the leader it knows of, and a leader's answer to "is X a member?".
//! Shared by the handle (replica.rs) and the peers' service (service.rs).

use crate::net::raft::Contacts;
use crate::types::{MemberStatus, PeerNode, Raft};
use openraft::ServerState;
use raftlb_proto::NodeId;
use std::time::Duration;

/// The members as this node sees them: replication progress (if it leads)
/// and when it last heard from each.
pub(crate) fn member_table(
    m: &openraft::RaftMetrics<NodeId, PeerNode>,
    contacts: &Contacts,
) -> Vec<MemberStatus> {
    let membership = m.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let last = m.last_log_index.unwrap_or(0);
    membership
        .nodes()
        .map(|(id, node)| {
            let matched = if *id == m.id && m.state == ServerState::Leader {
                Some(last)
            } else {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned())
                    .map(|l| l.map_or(0, |l| l.index))
            };
            MemberStatus {
                id: *id,
                name: node.name.clone(),
                addr: node.addr.clone(),
                role: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                }
                .to_string(),
                matched,
                lag: matched.map(|x| last.saturating_sub(x)),
                last_contact_ms: if *id == m.id {
                    Some(0)
                } else {
                    contacts.last(*id).map(|t| t.elapsed().as_millis() as u64)
                },
            }
        })
        .collect()
}

/// The leader this node knows of and its address.
pub(crate) fn leader_of(raft: &Raft) -> (Option<NodeId>, Option<String>) {
    let m = raft.metrics().borrow().clone();
    let addr = m.current_leader.and_then(|l| {
        m.membership_config
            .membership()
            .get_node(&l)
            .map(|n| n.addr.clone())
    });
    (m.current_leader, addr)
}

/// A leader's answer to "is `id` a member?"; `None` from a non-leader or a
/// leader whose quorum has not acknowledged it within `lease`.
pub(crate) fn is_member(raft: &Raft, id: NodeId, lease: Duration) -> Option<bool> {
    let m = raft.metrics().borrow().clone();
    let fresh = m
        .millis_since_quorum_ack
        .is_some_and(|ms| u128::from(ms) < lease.as_millis());
    if m.state != ServerState::Leader || !fresh {
        return None;
    }
    Some(m.membership_config.membership().get_node(&id).is_some())
}
