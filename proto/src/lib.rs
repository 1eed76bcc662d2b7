//! raftlb's data: the cluster configuration model (frontends, backends, servers,
//! timeouts, health checks) with its validation. Plain types and pure functions:
//! no I/O, no async runtime. Everything here can travel through Raft later.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;

pub use config::{ClusterConfig, ConfigError, ConfigErrors, Format};
