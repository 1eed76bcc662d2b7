//! The replicated state and the commands that change it. Raft commits
//! [`Command`]s; every node applies them in the same order with
//! [`ReplicatedState::apply`], which is deterministic and idempotent, so all
//! nodes hold the same state.

use crate::config::{ClusterConfig, Format};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[cfg(test)]
mod tests;

/// A node's id, unique in the cluster.
pub type NodeId = u64;

/// A server, named the way every part of raftlb names it: backend + server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServerKey {
    /// The backend's name.
    pub backend: String,
    /// The server's name inside the backend.
    pub server: String,
}

impl ServerKey {
    /// A key from its two names.
    pub fn new(backend: impl Into<String>, server: impl Into<String>) -> ServerKey {
        ServerKey {
            backend: backend.into(),
            server: server.into(),
        }
    }

    /// Parses `BACKEND/SERVER`.
    pub fn parse(s: &str) -> Option<ServerKey> {
        let (b, srv) = s.split_once('/')?;
        (!b.is_empty() && !srv.is_empty() && !srv.contains('/')).then(|| ServerKey::new(b, srv))
    }
}

impl std::fmt::Display for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.backend, self.server)
    }
}

/// The operator's state of a server, HAProxy's `set server … state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OperatorState {
    /// In service (the default).
    #[default]
    Ready,
    /// No new connections, except those a stick table sends; established
    /// connections continue.
    Drain,
    /// Out of service: no new connections, health checks stopped.
    Maint,
}

impl OperatorState {
    /// The state's name as the CLI writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorState::Ready => "ready",
            OperatorState::Drain => "drain",
            OperatorState::Maint => "maint",
        }
    }
}

/// The config committed now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionedConfig {
    /// 1 for the first config, then one more per committed change.
    pub version: u64,
    /// The document as the operator wrote it.
    pub doc: String,
    /// The document's format.
    pub format: Format,
}

/// One node's view of one server, as it last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    /// Whether the server is up from where that node stands.
    pub up: bool,
    /// Why (the check's last result).
    pub reason: String,
}

/// The operator's settings for one server; absent means ready, config weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OperatorView {
    /// Ready, drain or maint.
    pub state: OperatorState,
    /// A weight that overrides the config's, if set.
    pub weight: Option<u32>,
}

/// A change to the replicated state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Replace the cluster config. With `expected_version`, only if that
    /// version is the one committed (0: none yet). The document committed
    /// now, applied again, changes nothing and answers with its version
    /// (also when `expected_version` is the one before: a retry).
    ApplyConfig {
        /// The new document.
        doc: String,
        /// Its format.
        format: Format,
        /// The version the writer based its change on.
        expected_version: Option<u64>,
    },
    /// A node's health view of a server changed.
    ReportHealth {
        /// The reporting node.
        node: NodeId,
        /// The server.
        server: ServerKey,
        /// Up or down.
        up: bool,
        /// Why.
        reason: String,
    },
    /// Set a server's operator state.
    SetServerState {
        /// The server.
        server: ServerKey,
        /// The new state.
        state: OperatorState,
    },
    /// Override a server's weight (HAProxy's `set weight`).
    SetWeight {
        /// The server.
        server: ServerKey,
        /// The new weight, 0–256 like HAProxy's.
        weight: u32,
    },
    /// A node's standing for holding the VIP changed (its `[vip]` settings,
    /// or whether its proxy can serve).
    ReportNode {
        /// The reporting node.
        node: NodeId,
        /// What it reports.
        view: NodeView,
    },
}

/// A node's standing for holding the VIP, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// `[vip] priority`, 1–255: the highest fit node is the preferred holder.
    pub priority: u8,
    /// `[vip] preempt`: whether it takes leadership from a fit leader of
    /// lower priority.
    pub preempt: bool,
    /// Why its proxy cannot serve (a listener failed to bind, the VIP
    /// interface is down), or `None` when it can.
    pub unfit: Option<String>,
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The config was committed with this version.
    ConfigCommitted {
        /// Its version.
        version: u64,
    },
    /// The state changed (or already was as asked).
    Done,
    /// Refused: the config committed now is not the one the writer expected.
    Stale {
        /// The version the writer expected.
        expected: u64,
        /// The version committed now.
        current: u64,
    },
    /// Refused, with the reason (unknown server, invalid document, …).
    Refused(String),
}

/// The most weight a server can have (HAProxy's limit).
pub const MAX_WEIGHT: u32 = 256;

/// Everything Raft replicates.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReplicatedState {
    /// The cluster config, once one is committed.
    pub config: Option<VersionedConfig>,
    /// Per server, each node's view.
    pub health: BTreeMap<ServerKey, BTreeMap<NodeId, HealthView>>,
    /// Per server, the operator's settings (absent: ready, config weight).
    pub operator: BTreeMap<ServerKey, OperatorView>,
    /// Per node, its standing for holding the VIP.
    pub nodes: BTreeMap<NodeId, NodeView>,
}

impl ReplicatedState {
    /// The committed config's version (0: none yet).
    pub fn config_version(&self) -> u64 {
        self.config.as_ref().map_or(0, |c| c.version)
    }

    /// The committed config, parsed. `None` before the first config.
    pub fn parsed_config(&self) -> Option<ClusterConfig> {
        let c = self.config.as_ref()?;
        ClusterConfig::parse(&c.doc, c.format).ok()
    }

    /// The operator's settings for a server (defaults if none).
    pub fn operator_view(&self, server: &ServerKey) -> OperatorView {
        self.operator.get(server).copied().unwrap_or_default()
    }

    /// Applies one committed command. The result depends only on the state
    /// and the command, so every node computes the same; applying the same
    /// "set" twice leaves the state as once.
    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        match cmd {
            Command::ApplyConfig {
                doc,
                format,
                expected_version,
            } => self.apply_config(doc, *format, *expected_version),
            Command::ReportHealth {
                node,
                server,
                up,
                reason,
            } => {
                if let Err(e) = self.known(server) {
                    return e;
                }
                self.health.entry(server.clone()).or_default().insert(
                    *node,
                    HealthView {
                        up: *up,
                        reason: reason.clone(),
                    },
                );
                Outcome::Done
            }
            Command::SetServerState { server, state } => {
                if let Err(e) = self.known(server) {
                    return e;
                }
                self.operator.entry(server.clone()).or_default().state = *state;
                self.prune_operator(server);
                Outcome::Done
            }
            Command::SetWeight { server, weight } => {
                if let Err(e) = self.known(server) {
                    return e;
                }
                if *weight > MAX_WEIGHT {
                    return Outcome::Refused(format!(
                        "weight {weight} for {server} is over the maximum {MAX_WEIGHT}"
                    ));
                }
                self.operator.entry(server.clone()).or_default().weight = Some(*weight);
                Outcome::Done
            }
            Command::ReportNode { node, view } => {
                self.nodes.insert(*node, view.clone());
                Outcome::Done
            }
        }
    }

    /// [`Command::ApplyConfig`]: commits `doc` as the next version, unless
    /// it is stale or invalid; the views of servers it drops are forgotten.
    fn apply_config(
        &mut self,
        doc: &str,
        format: Format,
        expected_version: Option<u64>,
    ) -> Outcome {
        let current = self.config_version();
        // The document committed now, again: a no-op that answers
        // with the current version. That makes a retried write safe
        // (a leader may die after committing, before answering), and
        // its expected version may then be the one before.
        let same = self
            .config
            .as_ref()
            .is_some_and(|c| c.doc == doc && c.format == format);
        if same && expected_version.is_none_or(|e| e == current || e + 1 == current) {
            return Outcome::ConfigCommitted { version: current };
        }
        if let Some(expected) = expected_version {
            if expected != current {
                return Outcome::Stale { expected, current };
            }
        }
        let config = match ClusterConfig::parse(doc, format) {
            Ok(c) => c,
            Err(e) => return Outcome::Refused(format!("invalid config:\n{}", e.render(""))),
        };
        let servers = server_keys(&config);
        self.health.retain(|k, _| servers.contains(k));
        self.operator.retain(|k, _| servers.contains(k));
        let version = current + 1;
        self.config = Some(VersionedConfig {
            version,
            doc: doc.to_string(),
            format,
        });
        Outcome::ConfigCommitted { version }
    }

    /// Forgets the health views and standing of a node that left the cluster.
    pub fn forget_node(&mut self, node: NodeId) {
        self.nodes.remove(&node);
        for views in self.health.values_mut() {
            views.remove(&node);
        }
        self.health.retain(|_, v| !v.is_empty());
    }

    fn known(&self, server: &ServerKey) -> Result<(), Outcome> {
        let found = self
            .parsed_config()
            .map(|c| server_keys(&c).contains(server))
            .unwrap_or(false);
        if found {
            Ok(())
        } else {
            Err(Outcome::Refused(format!(
                "no server {server} in the committed config"
            )))
        }
    }

    fn prune_operator(&mut self, server: &ServerKey) {
        if self.operator.get(server) == Some(&OperatorView::default()) {
            self.operator.remove(server);
        }
    }
}

/// Every server a config names.
pub fn server_keys(config: &ClusterConfig) -> BTreeSet<ServerKey> {
    config
        .backends
        .values()
        .flat_map(|b| b.servers.iter().map(|s| ServerKey::new(&b.name, &s.name)))
        .collect()
}
