//! [`AdminState`]: what the admin API reads from the running node.

use super::token::AdminToken;
use super::users::Users;
use crate::handle::Cluster;
use crate::runtime::Runtime;
use crate::vip::VipControl;
use std::sync::Arc;

/// What the admin server reads from the node.
pub struct AdminState {
    /// Node name.
    pub node: String,
    /// The proxy.
    pub runtime: Arc<Runtime>,
    /// The replicated state.
    pub cluster: Arc<Cluster>,
    /// Version applied and the last apply error.
    pub applied: std::sync::Mutex<(u64, Option<String>)>,
    /// Set once the node has started (joined, first config applied):
    /// `/health` answers 503 until then.
    pub ready: std::sync::atomic::AtomicBool,
    /// What every write must carry.
    pub token: AdminToken,
    /// `[admin] token_file`'s tokens, if it has one (then reads need a
    /// token too).
    pub users: Option<Users>,
    /// How far behind each peer's copy of this node's stick-table writes is.
    pub stick_lag: Arc<crate::stick::sync::SyncLag>,
    /// The VIP controller, once started.
    pub vip: std::sync::OnceLock<Arc<VipControl>>,
}
