//! The upstream exchange: a slot on a server (queued as HAProxy queues) and
//! a new connection to it.

use super::pool::ReqBody;
use crate::proxy::backend::{BackendRt, NoSlot, Slot};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// A slot on a server for this request (`pinned` by its cookie, else as
/// the balancer orders them); the reason and state when none comes.
pub(super) async fn take_slot(
    be: &BackendRt,
    peer: SocketAddr,
    key: Option<u32>,
    pinned: Option<usize>,
) -> Result<Slot, (&'static str, (char, char))> {
    const NO_SERVER: &str = "No server is available to handle this request.";
    be.take_slot(|be| match pinned {
        Some(idx) => vec![idx],
        None => be.order_key(peer.ip(), key),
    })
    .await
    .map_err(|why| match why {
        NoSlot::NoServer => (NO_SERVER, ('S', 'C')),
        NoSlot::NoServerQueued => (NO_SERVER, ('S', 'Q')),
        NoSlot::QueueTimeout => ("The request waited too long for a free server.", ('s', 'Q')),
    })
}

/// A new upstream connection to the slot's server.
pub(super) async fn connect(be: &BackendRt, idx: usize) -> Result<SendRequest<ReqBody>, String> {
    let srv = &be.servers[idx];
    let attempt = TcpStream::connect(srv.cfg.address);
    let stream = match be.cfg.timeout.connect {
        Some(limit) => tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
        None => attempt.await,
    }
    .map_err(|e| format!("cannot connect to the server: {e}"))?;
    let _ = stream.set_nodelay(true);
    // One `send` per request, as on the client side.
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot talk to the server: {e}"))?;
    let id = srv.state.id.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(server = %id, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}
