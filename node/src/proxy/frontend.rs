//! A frontend at run time: its settings in one routing snapshot, the
//! backends it routes to, and its connection limit.

use super::backend::BackendRt;
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
