//! The proxy: listeners, frontends and backends at run time, and the L4 path
//! from an accepted connection to a server.

pub mod backend;
pub mod balance;
pub mod http;
pub mod listener;
pub mod relay;
pub mod server;
pub mod session;

use backend::BackendRt;
use raftlb_proto::config::Frontend;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A frontend in one routing snapshot: its settings, the backend it serves,
/// and its connection limit.
#[derive(Debug)]
pub struct FrontendRt {
    /// Settings.
    pub cfg: Frontend,
    /// The default backend (always there in TCP mode).
    pub backend: Option<Arc<BackendRt>>,
    /// HTTP mode: the `use_backend` rules with their backends, in order.
    pub rules: Vec<(raftlb_proto::config::UseBackend, Arc<BackendRt>)>,
    /// Frontend `maxconn`, shared with the snapshots that keep the same limit.
    pub maxconn: Arc<Semaphore>,
}
