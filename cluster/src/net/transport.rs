//! The two sides of a call between nodes: [`Transport`] calls, [`Handler`]
//! answers, and [`CallError`] says how a call failed.

use crate::types::{Request, Response};
use raftlb_proto::NodeId;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Why a call to another node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The request was certainly not delivered: the node could not be
    /// reached (refused, no route), or it is not the node we meant, or it
    /// failed authentication. Raft backs off before trying again.
    #[error("node {node} unreachable: {reason}")]
    Unreachable {
        /// The node called.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The call failed after the request may have been sent.
    #[error("call to node {node} failed: {reason}")]
    Network {
        /// The node called.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The peer speaks an older protocol version than the request needs
    /// (a node of an older release, mid-upgrade): nothing was sent.
    #[error("node {node} speaks protocol version {speaks}; this request needs {needs}")]
    Unsupported {
        /// The node called.
        node: NodeId,
        /// The version its connection speaks.
        speaks: u16,
        /// The version the request needs.
        needs: u16,
    },
    /// No answer within the call's timeout.
    #[error("node {node} did not answer within {} ms", .after.as_millis())]
    Timeout {
        /// The node called.
        node: NodeId,
        /// The timeout.
        after: Duration,
    },
}

/// Calls other nodes.
pub trait Transport: Clone + Send + Sync + 'static {
    /// Sends `req` to node `target` at `addr` and waits up to `timeout` for
    /// its answer.
    fn call(
        &self,
        target: NodeId,
        addr: &str,
        req: Request,
        timeout: Duration,
    ) -> impl Future<Output = Result<Response, CallError>> + Send;
}

/// A boxed future, as [`Handler`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Answers requests from other nodes (the node's Raft and its membership
/// service).
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from authenticated node `from`.
    fn handle(&self, from: NodeId, req: Request) -> BoxFuture<'_, Response>;
}
