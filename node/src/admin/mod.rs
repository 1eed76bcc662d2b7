//! The admin API: a small HTTP/1.0 server on `[admin] listen` (loopback by
//! default) that the CLI and scripts use. Reads: `GET /health` (200 once
//! the node has started), `/status`
//! (this node's proxy), `/cluster` (members, roles, every node's view of
//! every server), `/config`. Writes, committed through the cluster:
//! `POST /config`, `/leave`, `/server`.

pub mod client;

pub use client::{get, request, ClientError};

use crate::handle::{Cluster, NodeError};
use crate::runtime::Runtime;
use raftlb_cluster::{ClusterStatus, WriteFailure};
use raftlb_proto::state::{HealthView, OperatorView};
use raftlb_proto::{Command, Format, NodeId, OperatorState, Outcome, ServerKey};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What `GET /status` answers.
#[derive(Debug, Serialize)]
pub struct NodeStatus<'a> {
    /// Node name.
    pub node: &'a str,
    /// Node id.
    pub id: NodeId,
    /// Raft role.
    pub role: &'static str,
    /// Committed config version (0: none).
    pub config_version: u64,
    /// Version running in the proxy.
    pub applied_version: u64,
    /// Why the last committed config could not be applied, if it could not.
    pub apply_error: Option<String>,
    /// Frontends and servers.
    #[serde(flatten)]
    pub proxy: crate::runtime::Status,
}

/// What `GET /cluster` answers.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// Raft's view from this node.
    #[serde(flatten)]
    pub raft: ClusterStatus,
    /// Committed config version.
    pub config_version: u64,
    /// Per server (`backend/server`): each node's health view.
    pub health: BTreeMap<String, BTreeMap<NodeId, HealthView>>,
    /// Per server: the operator's settings, where not the defaults.
    pub operator: BTreeMap<String, OperatorView>,
    /// Per node: its standing for holding the VIPs.
    pub nodes: BTreeMap<NodeId, raftlb_proto::NodeView>,
    /// The VIPs as the leader (the only possible holder) reports them, when
    /// a leader is known and answers.
    pub vips_leader: Option<crate::vip::VipReport>,
    /// The VIPs as this node reports them.
    pub vips_here: Option<crate::vip::VipReport>,
}

/// What `GET /config` answers.
#[derive(Debug, Serialize)]
pub struct ConfigView {
    /// Committed version (0: none).
    pub version: u64,
    /// The document's format.
    pub format: Option<Format>,
    /// The document.
    pub doc: String,
}

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
    /// The VIP controller, once started.
    pub vip: std::sync::OnceLock<Arc<crate::vip::VipControl>>,
}

/// The largest request body (a config document).
const MAX_BODY: usize = 4 << 20;

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

struct Req {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    body: String,
}

async fn read_request(s: &mut TcpStream) -> std::io::Result<Option<Result<Req, &'static str>>> {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    let head_end = loop {
        if let Some(i) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if n == buf.len() {
            return Ok(Some(Err("request head too large")));
        }
        let m = s.read(&mut buf[n..]).await?;
        if m == 0 {
            return Ok(None);
        }
        n += m;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split_ascii_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut len = 0usize;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                let Ok(l) = v.trim().parse::<usize>() else {
                    return Ok(Some(Err("bad Content-Length")));
                };
                len = l;
            }
        }
    }
    if len > MAX_BODY {
        return Ok(Some(Err("body too large")));
    }
    let mut body = buf[head_end..n].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; (len - body.len()).min(65536)];
        let m = s.read(&mut chunk).await?;
        if m == 0 {
            return Ok(Some(Err("body shorter than Content-Length")));
        }
        body.extend_from_slice(&chunk[..m]);
    }
    body.truncate(len);
    let Ok(body) = String::from_utf8(body) else {
        return Ok(Some(Err("body is not UTF-8")));
    };
    let (path, qs) = target.split_once('?').unwrap_or((target, ""));
    let query = qs
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), unescape(v))
        })
        .collect();
    Ok(Some(Ok(Req {
        method: method.to_string(),
        path: path.to_string(),
        query,
        body,
    })))
}

/// Undoes percent-encoding (`%2F`) and `+`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query value.
pub fn escape(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (c as char).to_string()
            }
            c => format!("%{c:02X}"),
        })
        .collect()
}

type Answer = (u16, String);

fn json<T: Serialize>(v: &T) -> Answer {
    (
        200,
        serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
    )
}

fn error(code: u16, msg: impl std::fmt::Display) -> Answer {
    (code, format!("{msg}\n"))
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

async fn handle(mut s: TcpStream, state: &AdminState) -> std::io::Result<()> {
    let req = match read_request(&mut s).await? {
        None => return Ok(()),
        Some(Err(why)) => return respond(&mut s, error(400, why)).await,
        Some(Ok(r)) => r,
    };
    let answer = route(req, state).await;
    respond(&mut s, answer).await
}

async fn route(req: Req, state: &AdminState) -> Answer {
    let cluster = &state.cluster;
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/health") => {
            if state.ready.load(std::sync::atomic::Ordering::Acquire) {
                (200, "ok\n".into())
            } else {
                error(503, "starting")
            }
        }
        ("GET", "/status") => {
            let (applied_version, apply_error) =
                state.applied.lock().expect("applied lock").clone();
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
        ("GET", "/cluster") => {
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
        ("GET", "/config") => {
            let applied = cluster.watch().borrow().clone();
            let c = applied.state.config.as_ref();
            json(&ConfigView {
                version: c.map_or(0, |c| c.version),
                format: c.map(|c| c.format),
                doc: c.map(|c| c.doc.clone()).unwrap_or_default(),
            })
        }
        ("POST", "/config") => {
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
            match crate::handle::apply_config(cluster, req.body, format, &source, expected).await {
                Ok(version) => json(&serde_json::json!({ "version": version })),
                Err(e) => node_error(e),
            }
        }
        ("POST", "/leave") => {
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
        ("POST", "/server") => {
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
            match cluster.write(cmd).await {
                Ok(Outcome::Done) => json(&serde_json::json!({ "ok": true })),
                Ok(Outcome::Refused(why)) => error(400, why),
                Ok(other) => error(500, format!("unexpected outcome {other:?}")),
                Err(e) => node_error(NodeError::Write(e)),
            }
        }
        ("GET", _) | ("POST", _) => error(404, "not found"),
        _ => error(405, "method not allowed"),
    }
}

async fn respond(s: &mut TcpStream, (code, body): Answer) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let ctype = if body.starts_with('{') {
        "application/json"
    } else {
        "text/plain"
    };
    let msg = format!(
        "HTTP/1.0 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(msg.as_bytes()).await?;
    s.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_round_trip() {
        for v in ["web/s1", "a b&c=d", "é%", ""] {
            assert_eq!(unescape(&escape(v)), v);
        }
        assert_eq!(unescape("%zz"), "%zz");
        assert_eq!(unescape("%4"), "%4");
    }
}
