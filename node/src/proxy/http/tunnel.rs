//! Tunnels: once a server agrees to an upgrade (101) or a CONNECT (2xx),
//! both connections become one, spliced until both sides are done or
//! `timeout tunnel` passes idle.

use super::log::HttpLog;
use super::response::ProxyBody;
use crate::proxy::backend::{BackendRt, Slot};
use crate::proxy::frontend::FrontendRt;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper::Response;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// Opens the tunnel the server agreed to: both sides' upgrades, then the
/// splice, in a task of its own that holds the slot until it closes. The
/// client gets the server's head, with an empty body; the log line is
/// written now.
pub(super) fn open(
    fe: &FrontendRt,
    be: &BackendRt,
    slot: Slot,
    client_upgrade: OnUpgrade,
    mut resp: Response<Incoming>,
    log: &HttpLog,
) -> Response<ProxyBody> {
    let server_upgrade = hyper::upgrade::on(&mut resp);
    let idle = be
        .cfg
        .timeout
        .tunnel
        .or(be.cfg.timeout.server)
        .or(fe.cfg.timeout_client);
    let id = be.servers[slot.idx].state.id.clone();
    tokio::spawn(async move {
        match tokio::try_join!(client_upgrade, server_upgrade) {
            Ok((c, s)) => {
                let (up, down) = splice(TokioIo::new(c), TokioIo::new(s), idle).await;
                tracing::debug!(server = %id, up, down, "tunnel closed");
            }
            Err(e) => tracing::debug!(server = %id, error = %e, "upgrade failed"),
        }
        drop(slot);
    });
    let (parts, _) = resp.into_parts();
    log.write();
    Response::from_parts(parts, ProxyBody::Local(Full::new(Bytes::new())))
}

pub(super) fn req_was_connect(log: &HttpLog) -> bool {
    log.connect
}

/// Copies both ways until both sides are done, or nothing moved for `idle`
/// (`timeout tunnel`); bytes up and down.
async fn splice<A, B>(a: A, b: B, idle: Option<Duration>) -> (u64, u64)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let (mut up, mut down) = (0u64, 0u64);
    let (mut a_open, mut b_open) = (true, true);
    let mut abuf = vec![0u8; 16 * 1024];
    let mut bbuf = vec![0u8; 16 * 1024];
    while a_open || b_open {
        let wait = async {
            match idle {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = ar.read(&mut abuf), if a_open => match r {
                Ok(0) | Err(_) => { a_open = false; let _ = bw.shutdown().await; }
                Ok(n) => {
                    if bw.write_all(&abuf[..n]).await.is_err() { break; }
                    up += n as u64;
                }
            },
            r = br.read(&mut bbuf), if b_open => match r {
                Ok(0) | Err(_) => { b_open = false; let _ = aw.shutdown().await; }
                Ok(n) => {
                    if aw.write_all(&bbuf[..n]).await.is_err() { break; }
                    down += n as u64;
                }
            },
            _ = wait => break,
        }
    }
    (up, down)
}
