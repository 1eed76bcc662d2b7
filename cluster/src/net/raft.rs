//! openraft's network over any [`Transport`]: each Raft RPC becomes one
//! request/response call with openraft's own timeout; the transport's
//! "unreachable" tells Raft to back off, "network" to retry.

use super::transport::{CallError, Transport};
use crate::types::{PeerNode, Request, Response, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use raftlb_proto::NodeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// When this node last exchanged a message with each peer (either way).
#[derive(Debug, Clone, Default)]
pub struct Contacts(Arc<Mutex<HashMap<NodeId, Instant>>>);

impl Contacts {
    /// Records a message to or from `node` now.
    pub fn touch(&self, node: NodeId) {
        self.0
            .lock()
            .expect("contacts lock")
            .insert(node, Instant::now());
    }

    /// When the last message with `node` was, if any.
    pub fn last(&self, node: NodeId) -> Option<Instant> {
        self.0.lock().expect("contacts lock").get(&node).copied()
    }
}

/// Makes one [`Peer`] per target for openraft.
#[derive(Debug, Clone)]
pub struct Network<T> {
    own_id: NodeId,
    transport: T,
    contacts: Contacts,
}

impl<T: Transport> Network<T> {
    /// A network for node `own_id` over `transport`.
    pub fn new(own_id: NodeId, transport: T, contacts: Contacts) -> Self {
        Network {
            own_id,
            transport,
            contacts,
        }
    }
}

/// The client side of Raft's RPCs to one node.
#[derive(Debug)]
pub struct Peer<T> {
    own_id: NodeId,
    target: NodeId,
    addr: String,
    transport: T,
    contacts: Contacts,
}

impl<T: Transport> RaftNetworkFactory<TypeConfig> for Network<T> {
    type Network = Peer<T>;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> Peer<T> {
        Peer {
            own_id: self.own_id,
            target,
            addr: node.addr.clone(),
            transport: self.transport.clone(),
            contacts: self.contacts.clone(),
        }
    }
}

type RpcResult<R, E = openraft::error::Infallible> =
    Result<R, RPCError<NodeId, PeerNode, RaftError<NodeId, E>>>;

/// An unexpected answer (a peer of a different build would be refused by the
/// handshake, so this is a bug on the other side).
#[derive(Debug, thiserror::Error)]
#[error("unexpected answer from node {0}: {1}")]
struct WrongAnswer(NodeId, String);

impl<T: Transport> Peer<T> {
    async fn call<R, E: std::error::Error>(
        &self,
        req: Request,
        option: &RPCOption,
        action: RPCTypes,
        pick: impl FnOnce(Response) -> Option<Result<R, RaftError<NodeId, E>>>,
    ) -> Result<R, RPCError<NodeId, PeerNode, RaftError<NodeId, E>>> {
        let timeout = option.hard_ttl();
        match self
            .transport
            .call(self.target, &self.addr, req, timeout)
            .await
        {
            Ok(resp) => {
                self.contacts.touch(self.target);
                let kind = resp.kind();
                match pick(resp) {
                    Some(Ok(r)) => Ok(r),
                    Some(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
                    None => Err(RPCError::Network(NetworkError::new(&WrongAnswer(
                        self.target,
                        kind.to_string(),
                    )))),
                }
            }
            Err(e @ (CallError::Unreachable { .. } | CallError::Unsupported { .. })) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e @ CallError::Network { .. }) => Err(RPCError::Network(NetworkError::new(&e))),
            Err(CallError::Timeout { after, .. }) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.own_id,
                target: self.target,
                timeout: after,
            })),
        }
    }
}

impl<T: Transport> RaftNetwork<TypeConfig> for Peer<T> {
    /// After an unreachable peer, try again soon: 25, 50, then every 100 ms
    /// (openraft's 500 ms is longer than an election timeout, so a restarted
    /// peer would campaign, deposing a healthy leader, before it heard it).
    fn backoff(&self) -> openraft::network::Backoff {
        let ms = std::time::Duration::from_millis;
        openraft::network::Backoff::new(
            [ms(25), ms(50)]
                .into_iter()
                .chain(std::iter::repeat(ms(100))),
        )
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(
            Request::Append(rpc),
            &option,
            RPCTypes::AppendEntries,
            |r| match r {
                Response::Append(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call(Request::Vote(rpc), &option, RPCTypes::Vote, |r| match r {
            Response::Vote(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(
            Request::Snapshot(rpc),
            &option,
            RPCTypes::InstallSnapshot,
            |r| match r {
                Response::Snapshot(r) => Some(r),
                _ => None,
            },
        )
        .await
    }
}
