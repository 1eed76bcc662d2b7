//! The admin API: a small HTTP/1.0 server on `[admin] listen` (loopback by
//! default) that the CLI and scripts read. `GET /status` (JSON), `GET /health`.
//! Also the client side the CLI uses.

use crate::runtime::Runtime;
use raftlb_cluster::Cluster;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What `GET /status` answers.
#[derive(Debug, Serialize)]
pub struct NodeStatus<'a> {
    /// Node name.
    pub node: &'a str,
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

/// What the admin server reads from the node.
pub struct AdminState {
    /// Node name.
    pub node: String,
    /// The proxy.
    pub runtime: Arc<Runtime>,
    /// The replicated state.
    pub cluster: Cluster,
    /// Version applied and the last apply error.
    pub applied: std::sync::Mutex<(u64, Option<String>)>,
}

/// Serves the admin API on `listener` forever.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle(stream, &state)).await;
        });
    }
}

async fn handle(mut s: TcpStream, state: &AdminState) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        if n == buf.len() {
            return respond(&mut s, 431, "text/plain", "request head too large\n").await;
        }
        let m = s.read(&mut buf[n..]).await?;
        if m == 0 {
            return Ok(());
        }
        n += m;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.split_ascii_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path) {
        ("GET", "/health") => respond(&mut s, 200, "text/plain", "ok\n").await,
        ("GET", "/status") => {
            let (applied_version, apply_error) =
                state.applied.lock().expect("applied lock").clone();
            let status = NodeStatus {
                node: &state.node,
                config_version: state.cluster.committed().map_or(0, |c| c.version),
                applied_version,
                apply_error,
                proxy: state.runtime.status(),
            };
            let body = serde_json::to_string_pretty(&status).unwrap_or_default() + "\n";
            respond(&mut s, 200, "application/json", &body).await
        }
        ("GET", _) => respond(&mut s, 404, "text/plain", "not found\n").await,
        _ => respond(&mut s, 405, "text/plain", "method not allowed\n").await,
    }
}

async fn respond(s: &mut TcpStream, code: u16, ctype: &str, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let msg = format!(
        "HTTP/1.0 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(msg.as_bytes()).await?;
    s.shutdown().await
}

/// Why the CLI could not get an answer from a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered.
    #[error("cannot reach the admin API at {addr}: {source} (is `raftlb run` running there? set --admin or RAFTLB_ADMIN)")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// Something answered, but not as expected.
    #[error("admin API at {addr}: {message}")]
    Protocol {
        /// The address.
        addr: SocketAddr,
        /// What was wrong.
        message: String,
    },
}

/// `GET path` on the admin API; the body if the status is 200.
pub async fn get(addr: SocketAddr, path: &str) -> Result<String, ClientError> {
    let io = |source| ClientError::Connect { addr, source };
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
        .map_err(io)?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(io)?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp))
        .await
        .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
        .map_err(io)?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::Protocol {
            addr,
            message: "malformed response".into(),
        })?;
    let status = crate::health::parse_status_line(head.as_bytes());
    if status != Some(200) {
        return Err(ClientError::Protocol {
            addr,
            message: format!("{path}: {}", head.lines().next().unwrap_or("")),
        });
    }
    Ok(body.to_string())
}
