//! Request intake: the client connection's loop (hyper's server over the
//! scanned, timed reader) and each request's smuggling checks before it is
//! handled.

use super::conn::{ConnState, HeadTimers, InFlight, Scanned, Tracked, NOT_ARMED};
use super::handle::handle;
use super::log::HttpLog;
use super::response::ProxyBody;
use super::scan;
use crate::proxy::frontend::FrontendRt;
use futures_util::task::AtomicWaker;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;

/// Serves one accepted client connection in HTTP mode until the client
/// closes it (keep-alive) or a timeout ends it.
pub async fn serve(client: TcpStream, peer: SocketAddr, fe: Arc<FrontendRt>) {
    let _ = client.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    // No timer for hyper: the head timers are ours (`Scanned`), and hyper's
    // own 30 s header timeout would arm one more timer per request.
    // One write per response, not `writev`: the head and a short body are
    // copied into one buffer and go out by `send`, which costs the kernel
    // less than a vectored write (the same call HAProxy makes).
    builder
        .keep_alive(true)
        .header_read_timeout(None)
        .writev(false);
    let (scanner, verdicts) = scan::Scanner::new();
    let conn = Arc::new(ConnState {
        in_flight: AtomicUsize::new(0),
        idle_since: AtomicU64::new(0),
        accepted: Instant::now(),
        timers: HeadTimers {
            request: fe.cfg.timeout_http_request.or(fe.cfg.timeout_client),
            keep_alive: fe.cfg.timeout_http_keep_alive,
        },
        armed: AtomicU64::new(NOT_ARMED),
        reader: AtomicWaker::new(),
    });
    let tracked = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let fe = fe.clone();
        let seen = verdicts.next();
        let conn = tracked.clone();
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(conn);
        async move {
            let resp = serve_one(req, peer, fe, seen).await;
            Ok::<_, std::convert::Infallible>(resp.map(|body| Tracked {
                body,
                _guard: guard,
            }))
        }
    });
    let client = Scanned {
        inner: client,
        scanner,
        conn,
        sleep: None,
    };
    if let Err(e) = builder
        .serve_connection(TokioIo::new(client), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(client = %peer, error = %e, "HTTP connection ended");
    }
}

/// One request: refused at once if the scanner saw both lengths, else
/// handled.
async fn serve_one(
    req: Request<Incoming>,
    peer: SocketAddr,
    fe: Arc<FrontendRt>,
    seen: Option<scan::Seen>,
) -> Response<ProxyBody> {
    let mut log = HttpLog::new(&fe, peer, &req, seen.map(|s| s.receive));
    if seen.map(|s| s.verdict) == Some(scan::Verdict::BothLengths) {
        let mut r = log.error(
            StatusCode::BAD_REQUEST,
            "Both Content-Length and Transfer-Encoding.",
            ('P', 'R'),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    handle(req, peer, fe, log).await
}
