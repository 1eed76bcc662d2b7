//! The admin API's endpoints: the accept loop, and one handler per route.
//! Reads answer from this node's state; writes are committed through the
//! cluster.

use super::http::{error, json, read_request, respond, Answer, Req};
use super::state::AdminState;
use super::views::{ClusterView, ConfigView, NodeStatus, TableEntryView, TableView};
use crate::handle::{apply_config, NodeError};
use crate::stick::{now_ms, StickTable};
use raftlb_cluster::WriteFailure;
use raftlb_proto::config::StickType;
use raftlb_proto::stick::TableKey;
use raftlb_proto::{Command, Format, NodeId, OperatorState, Outcome, ServerKey};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Serves the admin API on `listener` forever.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(60), handle(stream, &state)).await;
        });
    }
}

async fn handle(mut s: TcpStream, state: &AdminState) -> std::io::Result<()> {
    let req = match read_request(&mut s).await? {
        None => return Ok(()),
        Some(Err(why)) => return respond(&mut s, error(400, why)).await,
        Some(Ok(r)) => r,
    };
    let answer = route(req, state).await;
    respond(&mut s, answer).await
}

fn node_error(e: NodeError) -> Answer {
    let code = match &e {
        NodeError::Invalid(_) => 400,
        NodeError::State(_) => 409,
        NodeError::Write(WriteFailure::NoQuorum(_) | WriteFailure::NotLeader { .. }) => 503,
        _ => 500,
    };
    error(code, e)
}

async fn route(req: Req, state: &AdminState) -> Answer {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/health") => {
            if state.ready.load(std::sync::atomic::Ordering::Acquire) {
                (200, "ok\n".into())
            } else {
                error(503, "starting")
            }
        }
        ("GET", "/status") => status(state),
        ("GET", "/cluster") => cluster(state).await,
        ("GET", "/config") => config(state),
        ("GET", "/tables") => tables(req, state),
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

/// `GET /tables?name=&key=`: this node's stick tables (one with `name`),
/// their entries (one with `key`).
fn tables(req: Req, state: &AdminState) -> Answer {
    let all = state.runtime.stick_tables();
    let name = req.query.get("name");
    let chosen: Vec<&StickTable> = all
        .iter()
        .map(|t| &**t)
        .filter(|t| name.is_none_or(|n| t.name() == n))
        .collect();
    if let (Some(n), true) = (name, chosen.is_empty()) {
        let known: Vec<&str> = all.iter().map(|t| t.name()).collect();
        return error(
            404,
            format!("no stick table {n:?} (tables: {})", known.join(", ")),
        );
    }
    let key = match (req.query.get("key"), chosen.as_slice()) {
        (None, _) => None,
        (Some(k), [t]) => match TableKey::parse(t.key_type(), k) {
            Ok(k) => Some(k),
            Err(why) => return error(400, format!("key: {why}")),
        },
        (Some(_), _) => return error(400, "key: name one table (name=) to look a key up in"),
    };
    let now = now_ms();
    json(
        &chosen
            .iter()
            .map(|t| table_view(t, key.as_ref(), now))
            .collect::<Vec<_>>(),
    )
}

fn table_view(t: &StickTable, key: Option<&TableKey>, now: u64) -> TableView {
    let mut found = t.entries(now);
    found.retain(|(k, _)| key.is_none_or(|want| want == k));
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let entries = found
        .into_iter()
        .map(|(k, e)| TableEntryView {
            key: k.to_string(),
            backend: e.server.as_ref().map(|s| s.backend.to_string()),
            server: e.server.as_ref().map(|s| s.server.to_string()),
            expire_in_ms: e.expire_at_ms.map(|at| at.saturating_sub(now)),
            written_by: e.written.node,
            written_ms: e.written.at_ms,
        })
        .collect();
    TableView {
        name: t.name().to_string(),
        key_type: match t.key_type() {
            StickType::Ip => "ip",
            StickType::Integer => "integer",
            StickType::String { .. } => "string",
        },
        size: t.size(),
        used: t.len(),
        entries,
    }
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
        return error(400, format!("format: {name:?} is not toml, yaml or json"));
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
