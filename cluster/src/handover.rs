//! A stopping leader's hand-over. A leader that stops (an upgrade, a
//! `systemctl stop`) would otherwise keep leading while it drains its
//! connections, and then leave its followers to wait out its silence (the
//! voters' lease) before one of them campaigns: its VIP, dropped at the
//! start of the drain, would have no holder for all that time. Instead it
//! asks its successor to campaign at once ([`Request::TakeOver`]) and votes
//! for it: openraft's leader grants a higher term's vote once its own term
//! is older than the voters' lease, so the successor has a quorum (itself
//! and the old leader) in one round trip, while the other voters, which
//! still hear the old leader, need not agree.
//!
//! The successor must be caught up (the old leader waits a little for
//! that), or the old leader refuses its vote. If no successor takes over,
//! nothing is lost: the followers elect one after the silence, as when a
//! leader dies.

use crate::election::VoteClock;
use crate::net::Transport;
use crate::store::LastLog;
use crate::types::{Raft, Request, Response};
use openraft::ServerState;
use raftlb_proto::NodeId;
use std::time::Duration;

/// How long the leader waits for a successor to catch up before it asks
/// the next one.
const CATCH_UP: Duration = Duration::from_millis(500);

/// How long a successor's answer may take.
const ASK: Duration = Duration::from_millis(500);

/// Added to the voters' lease when waiting for this leader's own vote to
/// be older than it.
const MARGIN: Duration = Duration::from_millis(10);

/// Whether voter `to` has every entry of this leader's log, per its metrics.
fn caught_up(m: &openraft::RaftMetrics<NodeId, crate::types::PeerNode>, to: NodeId) -> bool {
    let matched = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&to).copied().flatten());
    matched.map(|l| l.index) >= m.last_log_index
}

/// Asks `successors` in order (voters only; others are skipped) to take
/// over, if this node leads, and waits up to `within` (the voters' lease)
/// for it to follow the one that accepted. Returns the new leader, or
/// `None` if no one took over (this node does not lead, no successor is a
/// caught-up voter, or none won in time).
pub(crate) async fn hand_over<T: Transport>(
    raft: &Raft,
    transport: &T,
    last_log: &LastLog,
    vote_clock: &VoteClock,
    successors: &[NodeId],
    within: Duration,
) -> Option<NodeId> {
    let m = raft.metrics().borrow().clone();
    if m.state != ServerState::Leader || successors.iter().all(|s| *s == m.id) {
        return None;
    }
    // openraft's leader grants a higher term's vote only once its own vote
    // is older than the voters' lease (`within`): a leader elected just now
    // waits for that first.
    let since = vote_clock.lock().expect("vote clock").1;
    tokio::time::sleep_until((since + within + MARGIN).into()).await;
    let membership = m.membership_config.membership().clone();
    for &to in successors {
        if to == m.id || !membership.voter_ids().any(|v| v == to) {
            continue;
        }
        let Some(addr) = membership.get_node(&to).map(|n| n.addr.clone()) else {
            continue;
        };
        let ready = raft
            .wait(Some(CATCH_UP))
            .metrics(|m| caught_up(m, to), "successor caught up")
            .await;
        if ready.is_err() {
            tracing::info!(to, "successor is not caught up; not handing over to it");
            continue;
        }
        let asked = Request::TakeOver {
            last_log: last_log.get(),
        };
        match transport.call(to, &addr, asked, ASK).await {
            Ok(Response::TakeOver(true)) => {}
            Ok(other) => {
                tracing::info!(to, answer = other.kind(), "successor declined to take over");
                continue;
            }
            Err(e) => {
                tracing::info!(to, error = %e, "successor did not answer the hand-over");
                continue;
            }
        }
        let led = raft
            .wait(Some(within))
            .metrics(
                |m| m.state != ServerState::Leader && m.current_leader == Some(to),
                "successor leads",
            )
            .await;
        return match led {
            Ok(_) => {
                tracing::info!(to, "handed the leadership over");
                Some(to)
            }
            Err(_) => {
                tracing::warn!(to, "the successor campaigned but does not lead yet");
                None
            }
        };
    }
    None
}
