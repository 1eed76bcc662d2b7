//! What the admin API answers, as JSON: `GET /status` ([`NodeStatus`]),
//! `/cluster` ([`ClusterView`]), `/config` ([`ConfigView`]) and `/tables`
//! ([`TableView`]).

use crate::vip::VipReport;
use raftlb_cluster::ClusterStatus;
use raftlb_proto::state::{HealthView, OperatorView};
use raftlb_proto::{Format, NodeId};
use serde::Serialize;
use std::collections::BTreeMap;

/// What `GET /status` answers.
#[derive(Debug, Serialize)]
pub struct NodeStatus<'a> {
    /// Node name.
    pub node: &'a str,
    /// Node id.
    pub id: NodeId,
    /// Raft role.
    pub role: &'static str,
    /// Committed config version (0: none).
    pub config_version: u64,
    /// Version running in the proxy.
    pub applied_version: u64,
    /// Why the last committed config could not be applied, if it could not.
    pub apply_error: Option<String>,
    /// Frontends and servers.
    #[serde(flatten)]
    pub proxy: crate::runtime::Status,
}

/// What `GET /cluster` answers.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// Raft's view from this node.
    #[serde(flatten)]
    pub raft: ClusterStatus,
    /// Committed config version.
    pub config_version: u64,
    /// Per server (`backend/server`): each node's health view.
    pub health: BTreeMap<String, BTreeMap<NodeId, HealthView>>,
    /// Per server: the operator's settings, where not the defaults.
    pub operator: BTreeMap<String, OperatorView>,
    /// Per node: its standing for holding the VIPs.
    pub nodes: BTreeMap<NodeId, raftlb_proto::NodeView>,
    /// The VIPs as the leader (the only possible holder) reports them, when
    /// a leader is known and answers.
    pub vips_leader: Option<VipReport>,
    /// The VIPs as this node reports them.
    pub vips_here: Option<VipReport>,
}

/// What `GET /config` answers.
#[derive(Debug, Serialize)]
pub struct ConfigView {
    /// Committed version (0: none).
    pub version: u64,
    /// The document's format.
    pub format: Option<Format>,
    /// The document.
    pub doc: String,
}

/// One stick table as `GET /tables` shows it (HAProxy's `show table`): this
/// node's entries.
#[derive(Debug, Serialize)]
pub struct TableView {
    /// The table's name.
    pub name: String,
    /// Its key type: `ip`, `integer`, `string`.
    #[serde(rename = "type")]
    pub key_type: &'static str,
    /// Its most entries.
    pub size: u32,
    /// Entries it holds now (cleared ones included until they expire).
    pub used: usize,
    /// The entries (all, or the one asked for), by key.
    pub entries: Vec<TableEntryView>,
}

/// One entry of a [`TableView`].
#[derive(Debug, Serialize)]
pub struct TableEntryView {
    /// The key, as an operator writes it.
    pub key: String,
    /// The backend that stored the server.
    pub backend: Option<String>,
    /// The server the key sticks to.
    pub server: Option<String>,
    /// Time left before it expires (none: it does not expire).
    pub expire_in_ms: Option<u64>,
    /// The node that wrote it last.
    pub written_by: NodeId,
    /// When (ms since the Unix epoch, on that node's clock).
    pub written_ms: u64,
    /// The stored counters now, by name as `store` writes them
    /// (`conn_rate(10s)`): a rate is per its period; `conn_cur` is this
    /// node's.
    pub counters: std::collections::BTreeMap<String, u64>,
}
