//! raftlb's replicated state: openraft with a durable store under the node's
//! data directory, an authenticated TCP transport, and one handle the node
//! uses to write commands, watch the state and change membership.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod net;
mod single;
pub mod store;
pub mod types;

pub use single::{Cluster, Committed, WriteError};
pub use types::{PeerNode, TypeConfig, WriteFailure};
