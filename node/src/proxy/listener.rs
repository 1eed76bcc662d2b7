//! Listening sockets and their accept loops. A listener is keyed by its
//! address and survives reloads; each accept reads the frontend it currently
//! belongs to. Accept errors (EMFILE included) are logged and retried with a
//! backoff, never fatal.

use super::frontend::FrontendRt;
use super::limit::Limiter;
use arc_swap::ArcSwap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

/// Process-wide: the global `maxconn` and the count of live connections.
#[derive(Debug)]
pub struct ProcessLimits {
    /// Global `maxconn` (a reload resizes it in place).
    pub maxconn: Limiter,
    /// Client connections being served now.
    pub active: AtomicUsize,
}

/// A bound address and its accept loop.
#[derive(Debug)]
pub struct Listener {
    /// The configured address (port 0 stays 0 here).
    pub configured: SocketAddr,
    /// The address actually bound.
    pub local: SocketAddr,
    /// The frontend this listener serves; swapped on reload.
    pub frontend: Arc<ArcSwap<FrontendRt>>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Ends the accept loop, which closes the socket; established
        // connections are separate tasks and go on.
        self.task.abort();
    }
}

/// Binds `addr` with a listen backlog of `backlog`.
pub fn bind(addr: SocketAddr, backlog: u32, reuseport: bool) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    sock.set_reuseaddr(true)?;
    // Several processes (nodes sharing a host) on the same address: the
    // kernel spreads connections. Only when the node file asks.
    if reuseport {
        sock.set_reuseport(true)?;
    }
    if addr.is_ipv6() {
        socket2::SockRef::from(&sock).set_only_v6(true)?;
    }
    sock.bind(addr)?;
    sock.listen(backlog)
}

impl Listener {
    /// Starts accepting on `listener` for `frontend`, within the process-wide
    /// `global` connection limit.
    pub fn start(
        configured: SocketAddr,
        listener: TcpListener,
        frontend: Arc<FrontendRt>,
        global: Arc<ProcessLimits>,
    ) -> io::Result<Listener> {
        let local = listener.local_addr()?;
        let frontend = Arc::new(ArcSwap::from(frontend));
        let task = tokio::spawn(accept_loop(listener, frontend.clone(), global));
        Ok(Listener {
            configured,
            local,
            frontend,
            task,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    frontend: Arc<ArcSwap<FrontendRt>>,
    global: Arc<ProcessLimits>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        // Hold a slot of both limits before accepting: at the limit, new
        // clients wait in the kernel's listen queue, as with HAProxy.
        let Some(global_permit) = global.maxconn.acquire().await else {
            return;
        };
        let fe_limit = frontend.load().maxconn.clone();
        let Some(fe_permit) = fe_limit.acquire().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let fe = frontend.load_full();
                let limits = global.clone();
                limits.active.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    // `track_sc0` first, then the connection rules.
                    let mut tracking = fe.track(peer.ip());
                    if fe.accepts(peer.ip()) {
                        let bytes_in = match fe.cfg.mode {
                            raftlb_proto::config::Mode::Tcp => {
                                super::session::serve(stream, peer, fe).await
                            }
                            raftlb_proto::config::Mode::Http => {
                                super::http::serve(stream, peer, fe).await
                            }
                        };
                        if let Some(t) = tracking.as_mut() {
                            t.bytes_in = bytes_in;
                        }
                    } else {
                        // `reject`: closed at once, without a byte.
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                        drop(stream);
                    }
                    drop(tracking);
                    drop(fe_permit);
                    drop(global_permit);
                    limits.active.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(e) => {
                if is_transient(&e) {
                    continue;
                }
                tracing::warn!(
                    listener = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                    error = %e,
                    "accept failed; retrying in {backoff:?}"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Errors about one connection that is already gone.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED) | Some(libc::ECONNRESET) | Some(libc::EPROTO) | Some(libc::EINTR)
    )
}
