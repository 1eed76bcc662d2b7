//! What a node reports of its VIPs ([`VipReport`]): what it holds, since
//! when and why, and its last announcements; `cluster status` shows it.

use raftlb_proto::NodeId;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// One VIP as the node reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VipState {
    /// `address/prefix`.
    pub address: String,
    /// Whether this node holds it now.
    pub held: bool,
    /// Since when it holds or released it (ms since the Unix epoch).
    pub since_ms: u64,
    /// Why it was last taken or released.
    pub reason: String,
    /// The last announcement sent (ms since the Unix epoch).
    pub last_announce_ms: Option<u64>,
    /// Announcements sent since it was taken.
    pub announcements: u64,
}

/// A node's VIP report (what `cluster status` shows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VipReport {
    /// The node.
    pub node: NodeId,
    /// Its interface for VIPs.
    pub interface: Option<String>,
    /// Why it may not hold the VIPs now, if so.
    pub unfit: Option<String>,
    /// The configured VIPs and this node's hold on them.
    pub vips: Vec<VipState>,
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
