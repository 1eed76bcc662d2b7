//! Listening sockets and their accept loops. A listener is keyed by its
//! address and survives reloads; each accept reads the frontend it currently
//! belongs to. With worker threads (see [`crate::workers`]) an address has
//! one socket per worker, in one `SO_REUSEPORT` group, each accepted on its
//! worker. Accept errors (EMFILE included) are logged and retried with a
//! backoff, never fatal.

use super::frontend::FrontendRt;
use super::limit::Limiter;
use super::stats::Traffic;
use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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
    /// One accept loop per socket.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Ends the accept loops, which close the sockets; established
        // connections are separate tasks and go on.
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The sockets bound for one address: one per worker (else one), not yet
/// registered with any runtime (each is, on the worker that accepts on it).
#[derive(Debug)]
pub struct Bound(Vec<std::net::TcpListener>);

impl Bound {
    /// The address each socket is bound to.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.0.iter().map(|s| s.local_addr()).collect()
    }
}

/// Binds `addr` with a listen backlog of `backlog`: one socket per worker
/// (see [`crate::workers::sockets`]). Several sockets share the address in
/// an `SO_REUSEPORT` group; unless `reuseport` (processes sharing it on
/// purpose), the address is first bound alone, so that one another process
/// holds is refused as it is with a single socket, and a port 0 is chosen
/// once for them all.
pub fn bind(addr: SocketAddr, backlog: u32, reuseport: bool) -> io::Result<Bound> {
    let n = crate::workers::sockets();
    let mut addr = addr;
    if n > 1 && !reuseport {
        let probe = socket(addr, false)?;
        probe.bind(&addr.into())?;
        if addr.port() == 0 {
            addr = probe.local_addr()?.as_socket().unwrap_or(addr);
        }
    }
    let shared = reuseport || n > 1;
    (0..n)
        .map(|_| {
            let s = socket(addr, shared)?;
            s.bind(&addr.into())?;
            s.listen(backlog.min(i32::MAX as u32) as i32)?;
            s.set_nonblocking(true)?;
            Ok(s.into())
        })
        .collect::<io::Result<_>>()
        .map(Bound)
}

/// A TCP socket for `addr`, with `SO_REUSEADDR` (and `SO_REUSEPORT` when
/// `shared`); an IPv6 one takes IPv6 only.
fn socket(addr: SocketAddr, shared: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if shared {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    Ok(s)
}

impl Listener {
    /// Starts accepting on `bound` for `frontend`, within the process-wide
    /// `global` connection limit: each socket on its worker.
    pub fn start(
        configured: SocketAddr,
        bound: Bound,
        frontend: Arc<FrontendRt>,
        global: Arc<ProcessLimits>,
    ) -> io::Result<Listener> {
        let local = bound
            .0
            .first()
            .ok_or(io::ErrorKind::InvalidInput)?
            .local_addr()?;
        let frontend = Arc::new(ArcSwap::from(frontend));
        let mut sockets = bound.0.into_iter();
        let tasks = crate::workers::spawn_each(|_| {
            let sock = sockets.next();
            let (frontend, global) = (frontend.clone(), global.clone());
            async move {
                // Registered with the runtime of the thread that accepts.
                match sock.map(TcpListener::from_std) {
                    Some(Ok(l)) => accept_loop(l, frontend, global).await,
                    Some(Err(e)) => {
                        tracing::error!(listener = %local, error = %e, "cannot register a listening socket")
                    }
                    None => {}
                }
            }
        });
        Ok(Listener {
            configured,
            local,
            frontend,
            tasks,
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
                    let stats = fe.stats.clone();
                    stats.session_started();
                    // `track_sc0` first, then the connection rules.
                    let mut tracking = fe.track(peer.ip());
                    let traffic = if fe.accepts(peer.ip()) {
                        let traffic = match fe.cfg.mode {
                            raftlb_proto::config::Mode::Tcp => {
                                super::session::serve(stream, peer, fe).await
                            }
                            raftlb_proto::config::Mode::Http => {
                                super::http::serve(stream, peer, fe).await
                            }
                        };
                        if let Some(t) = tracking.as_mut() {
                            t.bytes_in = traffic.bytes_in;
                        }
                        traffic
                    } else {
                        // `reject`: closed at once, without a byte.
                        stats.denied();
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                        drop(stream);
                        Traffic::default()
                    };
                    stats.session_ended(traffic);
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
