//! The admin API's endpoints: one handler per route. Reads answer from this
//! node's state; writes are committed through the cluster.

use super::http::{error, json, Answer, Req};
use super::state::AdminState;
use super::tables;
use super::views::{ClusterView, ConfigView, NodeStatus};
use crate::handle::{apply_config, NodeError};
use raftlb_cluster::WriteFailure;
use raftlb_proto::{Command, Format, NodeId, OperatorState, Outcome, ServerKey};

/// The stats page: one self-contained HTML page that reads `/status` and
/// `/cluster` from its own node every two seconds.
const STATS_PAGE: &str = include_str!("stats.html");

fn node_error(e: NodeError) -> Answer {
    let code = match &e {
        NodeError::Invalid(_) => 400,
        NodeError::State(_) => 409,
        NodeError::Write(WriteFailure::NoQuorum(_) | WriteFailure::NotLeader { .. }) => 503,
        _ => 500,
    };
    error(code, e)
}

/// The answer of the route `req` names.
pub(super) async fn route(req: Req, state: &AdminState) -> Answer {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/health") => {
            if state.ready.load(std::sync::atomic::Ordering::Acquire) {
                (200, "ok\n".into())
            } else {
                error(503, "starting")
            }
        }
        ("GET", "/" | "/stats") => (200, STATS_PAGE.to_string()),
        ("GET", "/status") => status(state),
        ("GET", "/metrics") => super::metrics::metrics(state),
        ("GET", "/cluster") => cluster(state).await,
        ("GET", "/config") => config(state),
        ("GET", "/tables") => tables::show(req, state),
        ("POST", "/tables/clear") => tables::clear(req, state).await,
        ("POST", "/config") => apply(req, state).await,
        ("POST", "/leave") => leave(req, state).await,
        ("POST", "/server") => server(req, state).await,
        ("GET", _) | ("POST", _) => error(404, "not found"),
        _ => error(405, "method not allowed"),
    }
}

/// `GET /status`: this node's proxy.
fn status(state: &AdminState) -> Answer {
    let cluster = &state.cluster;
    let (applied_version, apply_error) = state.applied.lock().expect("applied lock").clone();
    let raft = cluster.status();
    json(&NodeStatus {
        node: &state.node,
        id: raft.id,
        role: raft.role,
        config_version: cluster.watch().borrow().state.config_version(),
        applied_version,
        apply_error,
        proxy: state.runtime.status(),
    })
}

/// `GET /cluster`: members, roles, every node's view of every server, the
/// VIPs.
async fn cluster(state: &AdminState) -> Answer {
    let cluster = &state.cluster;
    let applied = cluster.watch().borrow().clone();
    let st = &applied.state;
    let vips_leader = cluster
        .leader_report()
        .await
        .and_then(|(_, r)| serde_json::from_slice(&r).ok());
    json(&ClusterView {
        nodes: st.nodes.clone(),
        vips_leader,
        vips_here: state.vip.get().map(|v| v.report()),
        raft: cluster.status_with_leader().await,
        config_version: st.config_version(),
        health: st
            .health
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        operator: st
            .operator
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    })
}

/// `GET /config`: the committed cluster config.
fn config(state: &AdminState) -> Answer {
    let applied = state.cluster.watch().borrow().clone();
    let c = applied.state.config.as_ref();
    json(&ConfigView {
        version: c.map_or(0, |c| c.version),
        format: c.map(|c| c.format),
        doc: c.map(|c| c.doc.clone()).unwrap_or_default(),
    })
}

/// `POST /config?source=&format=&expected=`: validates and commits a
/// cluster config.
async fn apply(req: Req, state: &AdminState) -> Answer {
    let source = req
        .query
        .get("source")
        .cloned()
        .unwrap_or_else(|| "config".into());
    let name = req.query.get("format").map_or("toml", |f| f.as_str());
    let Some(format) = Format::from_name(name) else {
        return error(
            400,
            format!("format: {name:?} is not toml, yaml, json or haproxy"),
        );
    };
    let expected = match req.query.get("expected").map(|e| e.parse::<u64>()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return error(400, "expected: not a version number"),
    };
    match apply_config(&state.cluster, req.body, format, &source, expected).await {
        Ok(version) => json(&serde_json::json!({ "version": version })),
        Err(e) => node_error(e),
    }
}

/// `POST /leave?id=`: removes a node (this one by default).
async fn leave(req: Req, state: &AdminState) -> Answer {
    let cluster = &state.cluster;
    let id = match req.query.get("id").map(|v| v.parse::<NodeId>()) {
        None => cluster.id(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return error(400, "id: not a node id"),
    };
    match cluster.leave(id).await {
        Ok(()) => json(&serde_json::json!({ "removed": id })),
        Err(e) => node_error(NodeError::Write(e)),
    }
}

/// `POST /server?name=BACKEND/SERVER&state=|weight=`: an operator state or
/// weight, on every node.
async fn server(req: Req, state: &AdminState) -> Answer {
    let Some(server) = req.query.get("name").and_then(|n| ServerKey::parse(n)) else {
        return error(400, "name: expected BACKEND/SERVER");
    };
    let cmd = match (req.query.get("state"), req.query.get("weight")) {
        (Some(s), None) => {
            let state = match s.as_str() {
                "ready" => OperatorState::Ready,
                "drain" => OperatorState::Drain,
                "maint" => OperatorState::Maint,
                other => {
                    return error(
                        400,
                        format!("state: {other:?} is not ready, drain or maint"),
                    )
                }
            };
            Command::SetServerState { server, state }
        }
        (None, Some(w)) => match w.parse::<u32>() {
            Ok(weight) => Command::SetWeight { server, weight },
            Err(_) => return error(400, format!("weight: {w:?} is not a number")),
        },
        _ => return error(400, "give one of state= or weight="),
    };
    match state.cluster.write(cmd).await {
        Ok(Outcome::Done) => json(&serde_json::json!({ "ok": true })),
        Ok(Outcome::Refused(why)) => error(400, why),
        Ok(other) => error(500, format!("unexpected outcome {other:?}")),
        Err(e) => node_error(NodeError::Write(e)),
    }
}
