//! The admin API's client side, as the CLI uses it: one HTTP/1.0 request
//! (a write with the node's admin token and the writes' Content-Type), the
//! status and the body back.

use super::guard::WRITE_CONTENT_TYPE;
use super::token::AdminToken;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    /// The node answered with an error.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The node's explanation.
        message: String,
    },
}

/// Sends one request (a write, any method but GET, with `token` and
/// [`WRITE_CONTENT_TYPE`]); returns the body if the status is 200, the
/// node's message as [`ClientError::Refused`] otherwise. Waits up to
/// `wait`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&AdminToken>,
    wait: Duration,
) -> Result<String, ClientError> {
    let io = |source| ClientError::Connect { addr, source };
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
        .map_err(io)?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if method != "GET" {
        head += &format!("Content-Type: {WRITE_CONTENT_TYPE}\r\n");
    }
    if let Some(t) = token {
        head += &format!("Authorization: Bearer {}\r\n", t.as_str());
    }
    let req = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.map_err(io)?;
    let mut resp = Vec::new();
    tokio::time::timeout(wait, s.read_to_end(&mut resp))
        .await
        .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
        .map_err(io)?;
    if resp.is_empty() && method == "POST" {
        return Err(ClientError::Protocol {
            addr,
            message: format!(
                "{path}: the node closed the connection before answering; the change may or may not have been committed (see `raftlb config show` / `raftlb cluster status`)"
            ),
        });
    }
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::Protocol {
            addr,
            message: "malformed response".into(),
        })?;
    match crate::health::parse_status_line(head.as_bytes()) {
        Some(200) => Ok(body.to_string()),
        Some(status) => Err(ClientError::Refused {
            status,
            message: body.trim_end().to_string(),
        }),
        None => Err(ClientError::Protocol {
            addr,
            message: format!("{path}: {}", head.lines().next().unwrap_or("")),
        }),
    }
}

/// `GET path`; the body if the status is 200.
pub async fn get(addr: SocketAddr, path: &str) -> Result<String, ClientError> {
    request(addr, "GET", path, "", None, Duration::from_secs(10)).await
}
