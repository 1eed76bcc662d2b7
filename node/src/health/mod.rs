//! Server health: active checkers (TCP connect, HTTP status) on each server's
//! own schedule. Each result goes into the server's live state
//! ([`crate::server`], with HAProxy's rise/fall counter), which also writes
//! the state-change log; the proxy never imports this module.

use crate::server::{log_transition, ServerState};
use raftlb_proto::config::{CheckParams, HealthCheck};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything one checker needs; a checker is restarted when this changes.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    /// Where to connect.
    pub address: SocketAddr,
    /// Intervals, rise and fall.
    pub params: CheckParams,
    /// The probe.
    pub kind: HealthCheck,
    /// Connect timeout (`timeout connect`, at most `inter`).
    pub connect_timeout: Duration,
    /// Whole-check timeout (`timeout check` after connecting, or `inter`).
    pub check_timeout: Duration,
}

impl CheckSpec {
    /// HAProxy's rule: without `timeout check`, `inter` bounds the whole
    /// check; with it, the connect is bounded by min(inter, timeout connect)
    /// and the response by `timeout check`.
    pub fn new(
        address: SocketAddr,
        params: CheckParams,
        kind: HealthCheck,
        timeout_connect: Option<Duration>,
        timeout_check: Option<Duration>,
    ) -> CheckSpec {
        let (connect_timeout, check_timeout) = match timeout_check {
            Some(check) => (
                timeout_connect.map_or(params.inter, |c| c.min(params.inter)),
                check,
            ),
            None => (params.inter, params.inter),
        };
        CheckSpec {
            address,
            params,
            kind,
            connect_timeout,
            check_timeout,
        }
    }
}

/// Runs checks on `server` until the task is aborted.
pub async fn run_checker(server: Arc<ServerState>, spec: CheckSpec) {
    // Spread the first checks over one interval, as HAProxy does.
    let first = spec.params.inter.mul_f64(rand::random::<f64>());
    tokio::time::sleep(first).await;
    loop {
        let (ok, reason) = check_once(&spec).await;
        let t = server.check_result(ok, &reason);
        log_transition(&server, t, &reason, "health check");
        let p = &spec.params;
        let wait = server.next_check_in(p.inter, p.fastinter, p.downinter);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // Passive errors ask for a check at fastinter right away.
            _ = server.recheck.notified() => {
                tokio::time::sleep(p.fastinter.min(wait)).await;
            }
        }
    }
}

/// One probe: (success, HAProxy-style status such as `L4OK`, `L4CON`, `L7STS 503`).
pub async fn check_once(spec: &CheckSpec) -> (bool, String) {
    let stream =
        match tokio::time::timeout(spec.connect_timeout, TcpStream::connect(spec.address)).await {
            Err(_) => return (false, "L4TOUT".into()),
            Ok(Err(e)) => return (false, format!("L4CON ({e})")),
            Ok(Ok(s)) => s,
        };
    match &spec.kind {
        HealthCheck::Tcp => (true, "L4OK".into()),
        HealthCheck::Http {
            method,
            path,
            host,
            expect_status,
        } => match tokio::time::timeout(
            spec.check_timeout,
            http_probe(stream, method, path, host.as_deref()),
        )
        .await
        {
            Err(_) => (false, "L7TOUT".into()),
            Ok(Err(e)) => (false, format!("L7RSP ({e})")),
            Ok(Ok(status)) => {
                let good = if expect_status.is_empty() {
                    (200..400).contains(&status)
                } else {
                    expect_status.contains(&status)
                };
                if good {
                    (true, format!("L7OK {status}"))
                } else {
                    (false, format!("L7STS {status}"))
                }
            }
        },
    }
}

async fn http_probe(
    mut s: TcpStream,
    method: &str,
    path: &str,
    host: Option<&str>,
) -> std::io::Result<u16> {
    let mut req = format!("{method} {path} HTTP/1.0\r\n");
    if let Some(h) = host {
        req.push_str(&format!("Host: {h}\r\n"));
    }
    req.push_str("User-Agent: raftlb-check\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = [0u8; 512];
    let mut n = 0;
    while n < buf.len() {
        let m = s.read(&mut buf[n..]).await?;
        if m == 0 {
            break;
        }
        n += m;
        if buf[..n].contains(&b'\n') {
            break;
        }
    }
    parse_status_line(&buf[..n]).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP status line")
    })
}

/// The status of an `HTTP/1.x NNN ...` line.
pub fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    (100..=599).contains(&code).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\nx"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 99 x\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn check_timeouts_follow_haproxy() {
        let p = CheckParams {
            inter: Duration::from_secs(2),
            fastinter: Duration::from_secs(1),
            downinter: Duration::from_secs(5),
            rise: 2,
            fall: 3,
        };
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let s = CheckSpec::new(
            a,
            p.clone(),
            HealthCheck::Tcp,
            Some(Duration::from_secs(5)),
            None,
        );
        assert_eq!((s.connect_timeout, s.check_timeout), (p.inter, p.inter));
        let s = CheckSpec::new(
            a,
            p.clone(),
            HealthCheck::Tcp,
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(3)),
        );
        assert_eq!(
            (s.connect_timeout, s.check_timeout),
            (Duration::from_secs(1), Duration::from_secs(3))
        );
    }
}
