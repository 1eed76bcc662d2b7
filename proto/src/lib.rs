//! raftlb's data: the cluster configuration model (frontends, backends, servers,
//! timeouts, health checks) with its validation; the replicated state and its
//! commands; the node-to-node wire envelope. Plain types and pure functions:
//! no I/O, no async runtime.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod state;
pub mod stick;
pub mod wire;

pub use config::{ClusterConfig, ConfigError, ConfigErrors, Format};
pub use state::{Command, NodeId, NodeView, OperatorState, Outcome, ReplicatedState, ServerKey};
