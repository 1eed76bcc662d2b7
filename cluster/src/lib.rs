//! raftlb's replicated state: openraft with a durable store under the node's
//! data directory, an authenticated TCP transport, and one handle the node
//! uses to write commands, watch the state and change membership.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod election;
mod handover;
mod lease;
mod membership;
pub mod net;
mod options;
mod replica;
mod service;
pub mod store;
mod sync;
pub mod types;

pub use options::Options;
pub use replica::{ClusterError, ClusterStatus, RaftCluster};
pub use store::Applied;
pub use sync::StickPeer;
pub use types::{MemberStatus, PeerNode, TypeConfig, WriteFailure};
