//! An in-process network for tests: nodes register a [`Handler`] under an
//! address; links between two nodes can be cut and healed, and a node can be
//! isolated or taken away (a crash). Every request and answer goes through
//! the wire encoding, as over TCP.

use super::transport::{CallError, Handler, Transport};
use crate::types::{Request, Response};
use raftlb_proto::{wire, NodeId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Inner {
    nodes: HashMap<String, (NodeId, Arc<dyn Handler>)>,
    cut: HashSet<(NodeId, NodeId)>,
    /// How late each node's answers come.
    late: HashMap<NodeId, Duration>,
    /// Requests of these kinds to these nodes are lost.
    lost: HashSet<(NodeId, &'static str)>,
}

impl Inner {
    fn linked(&self, a: NodeId, b: NodeId) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
    }
}

/// The network: a switch whose cables tests can pull.
#[derive(Clone, Default)]
pub struct MemNet {
    inner: Arc<Mutex<Inner>>,
}

impl MemNet {
    /// A network with no nodes.
    pub fn new() -> MemNet {
        MemNet::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("memnet lock")
    }

    /// Plugs node `id` in at `addr`.
    pub fn register(&self, id: NodeId, addr: &str, handler: Arc<dyn Handler>) {
        self.lock().nodes.insert(addr.to_string(), (id, handler));
    }

    /// Unplugs whatever is at `addr` (the node crashed or stopped).
    pub fn unregister(&self, addr: &str) {
        self.lock().nodes.remove(addr);
    }

    /// Cuts the link between `a` and `b` (both ways).
    pub fn cut(&self, a: NodeId, b: NodeId) {
        self.lock().cut.insert((a.min(b), a.max(b)));
    }

    /// Restores the link between `a` and `b`.
    pub fn heal(&self, a: NodeId, b: NodeId) {
        self.lock().cut.remove(&(a.min(b), a.max(b)));
    }

    /// Cuts `id` from every node in `others`.
    pub fn isolate(&self, id: NodeId, others: &[NodeId]) {
        for &o in others {
            self.cut(id, o);
        }
    }

    /// Restores every link.
    pub fn heal_all(&self) {
        self.lock().cut.clear();
    }

    /// Makes every answer from node `id` come `by` late (a loaded host);
    /// `Duration::ZERO` ends it.
    pub fn answer_late(&self, id: NodeId, by: Duration) {
        self.lock().late.insert(id, by);
    }

    /// Loses every request of `kind` ([`Request::kind`]) to node `id`, or
    /// (`lose = false`) no longer.
    pub fn lose(&self, id: NodeId, kind: &'static str, lose: bool) {
        let mut inner = self.lock();
        if lose {
            inner.lost.insert((id, kind));
        } else {
            inner.lost.remove(&(id, kind));
        }
    }

    /// The transport node `from` calls others with.
    pub fn transport(&self, from: NodeId) -> MemTransport {
        MemTransport {
            net: self.clone(),
            from,
        }
    }
}

/// One node's side of a [`MemNet`].
#[derive(Clone)]
pub struct MemTransport {
    net: MemNet,
    from: NodeId,
}

fn through_the_wire<T: serde::Serialize + serde::de::DeserializeOwned>(
    msg: &T,
    node: NodeId,
) -> Result<T, CallError> {
    let network = |e: wire::WireError| CallError::Network {
        node,
        reason: e.to_string(),
    };
    wire::decode(&wire::encode(msg).map_err(network)?).map_err(network)
}

impl Transport for MemTransport {
    async fn call(
        &self,
        target: NodeId,
        addr: &str,
        req: Request,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let unreachable = |reason: &str| CallError::Unreachable {
            node: target,
            reason: reason.to_string(),
        };
        let (id, handler, late) = {
            let inner = self.net.lock();
            let Some((id, handler)) = inner.nodes.get(addr) else {
                return Err(unreachable("nothing at that address"));
            };
            if target != 0 && *id != target {
                return Err(unreachable(&format!("reached node {id}, not {target}")));
            }
            if !inner.linked(self.from, *id) {
                return Err(unreachable("link cut"));
            }
            if inner.lost.contains(&(*id, req.kind())) {
                return Err(unreachable("request lost"));
            }
            let late = inner.late.get(id).copied().unwrap_or_default();
            (*id, handler.clone(), late)
        };
        let req = through_the_wire(&req, target)?;
        let answer = async {
            let resp = handler.handle(self.from, req).await;
            tokio::time::sleep(late).await;
            resp
        };
        let resp = tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| CallError::Timeout {
                node: target,
                after: timeout,
            })?;
        // An answer on a link cut meanwhile is lost.
        let still = {
            let inner = self.net.lock();
            inner.nodes.contains_key(addr) && inner.linked(self.from, id)
        };
        if !still {
            return Err(CallError::Network {
                node: target,
                reason: "link cut during the call".into(),
            });
        }
        through_the_wire(&resp, target)
    }
}
