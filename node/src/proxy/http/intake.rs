//! Request intake: the client connection's loop (hyper's server over the
//! scanned, timed reader) and each request's checks before it is handled:
//! smuggling (both lengths, no verdict once the scanner lost track, a
//! malformed first body frame), `Host` (RFC 9112 §3.2), and an
//! absolute-form target made origin-form.

use super::conn::{ConnState, InFlight, Scanned, Tracked};
use super::handle::handle;
use super::idle::Idle;
use super::log::HttpLog;
use super::response::ProxyBody;
use super::scan;
use crate::proxy::frontend::FrontendRt;
use crate::proxy::stats::Traffic;
use crate::server::pool::{BodyWatch, ReqBody};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Serves one accepted client connection in HTTP mode until the client
/// closes it (keep-alive) or a timeout ends it; returns how many bytes it
/// moved each way.
pub async fn serve(client: TcpStream, peer: SocketAddr, fe: Arc<FrontendRt>) -> Traffic {
    let _ = client.set_nodelay(true);
    let stats = fe.stats.clone();
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
    let conn = Arc::new(ConnState::new(&fe));
    let counted = conn.clone();
    let tracked = conn.clone();
    let client_timeout = fe.cfg.timeout_client;
    let service = hyper::service::service_fn(move |req| {
        let fe = fe.clone();
        let seen = verdicts.next();
        let conn = tracked.clone();
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        let watch: Arc<dyn BodyWatch> = conn.clone();
        let guard = InFlight(conn);
        let asks_tunnel =
            req.method() == hyper::Method::CONNECT || req.headers().contains_key(header::UPGRADE);
        let connect = req.method() == hyper::Method::CONNECT;
        async move {
            let mut resp = serve_one(req, peer, fe, seen, watch).await;
            // The server agreed to a tunnel (see `tunnel::open`): the head
            // timers stop before hyper hands the connection over.
            if asks_tunnel
                && (resp.status() == StatusCode::SWITCHING_PROTOCOLS
                    || (connect && resp.status().is_success()))
            {
                guard.0.tunnel.store(true, Ordering::Relaxed);
            }
            // The scanner lost track while this request came: what follows
            // would go unchecked, so the connection ends here.
            if guard.0.framing_lost.load(Ordering::Acquire) {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
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
        write_stall: client_timeout.map(Idle::new),
    };
    if let Err(e) = builder
        .serve_connection(TokioIo::new(client), service)
        .with_upgrades()
        .await
    {
        if e.is_parse() {
            // A head hyper could not read: answered 400 by hyper itself.
            stats.request_error();
        }
        tracing::debug!(client = %peer, error = %e, "HTTP connection ended");
    }
    Traffic {
        bytes_in: counted.bytes_in.load(Ordering::Relaxed),
        bytes_out: counted.bytes_out.load(Ordering::Relaxed),
    }
}

/// One request: refused at once if the scanner saw both lengths (or could
/// not follow the framing up to it), if its `Host` is missing (HTTP/1.1)
/// or repeated, or if the first frame of its body is malformed; else
/// handled, in origin-form with the authority of an absolute-form target
/// as its `Host`.
async fn serve_one(
    req: Request<Incoming>,
    peer: SocketAddr,
    fe: Arc<FrontendRt>,
    seen: Option<scan::Seen>,
    watch: Arc<dyn BodyWatch>,
) -> Response<ProxyBody> {
    let mut log = HttpLog::new(&fe, peer, &req, seen.map(|s| s.receive));
    match seen.map(|s| s.verdict) {
        Some(scan::Verdict::Clean) => {}
        Some(scan::Verdict::BothLengths) => {
            return refused(&mut log, "Both Content-Length and Transfer-Encoding.")
        }
        // The scanner lost track before this head: unchecked, so refused.
        None => return refused(&mut log, "The request's framing could not be followed."),
    }
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1 (HTTP/1.0 may go
    // without), never more than one.
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && req.version() == Version::HTTP_11) {
        return refused(&mut log, "A request needs exactly one Host header.");
    }
    // hyper refuses (400) differing Content-Lengths, a Transfer-Encoding
    // that does not end with chunked, obs-fold and bare CRs, an overlong URI
    // (414) or head (431); the scanner, both lengths at once. The body's
    // first frame before anything else: a malformed chunked body
    // (a bad chunk size) is refused here, before any server sees the head.
    let (mut parts, mut incoming) = req.into_parts();
    if !origin_form(&mut parts) {
        return refused(&mut log, "The request target's authority is no valid Host.");
    }
    let first = if incoming.is_end_stream() {
        None
    } else {
        match incoming.frame().await {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(_)) => {
                return log.error(
                    StatusCode::BAD_REQUEST,
                    "The request body is malformed.",
                    ('P', 'R'),
                )
            }
        }
    };
    let req = Request::from_parts(parts, ReqBody::new(first, incoming, watch));
    handle(req, peer, fe, log).await
}

/// A request refused before any server saw it: 400, logged `PR`, and the
/// connection closed after it.
fn refused(log: &mut HttpLog, why: &str) -> Response<ProxyBody> {
    log.malformed();
    let mut r = log.error(StatusCode::BAD_REQUEST, why, ('P', 'R'));
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// RFC 9112 §3.2.2: the authority of an absolute-form target (its userinfo
/// dropped) replaces `Host`, and the target becomes origin-form, before the
/// rules look at the request: they and the server see one host. CONNECT's
/// authority-form stays. `false` for an authority that is no valid `Host`
/// value. (Only an absolute-form request costs an allocation here.)
fn origin_form(parts: &mut Parts) -> bool {
    if parts.method == Method::CONNECT {
        return true;
    }
    let Some(authority) = parts.uri.authority() else {
        return true;
    };
    let host = authority.as_str().rsplit('@').next().unwrap_or("");
    let Ok(host) = HeaderValue::from_str(host) else {
        return false;
    };
    parts.headers.insert(header::HOST, host);
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = None;
    uri.authority = None;
    uri.path_and_query = match uri.path_and_query.take() {
        Some(pq) if pq.as_str().starts_with('/') => Some(pq),
        // `http://host` or `http://host?q`: the path is `/`.
        Some(pq) => format!("/{}", pq.as_str()).parse().ok(),
        None => None,
    };
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    match Uri::from_parts(uri) {
        Ok(u) => {
            parts.uri = u;
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, target: &str, host: Option<&str>) -> Parts {
        let mut b = Request::builder().method(method).uri(target);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn an_absolute_form_target_gives_its_authority_to_host() {
        for (target, path, host) in [
            ("http://other.example/p?q=1", "/p?q=1", "other.example"),
            ("http://u:pw@other.example:8080/", "/", "other.example:8080"),
            ("http://other.example", "/", "other.example"),
            ("http://other.example?q", "/?q", "other.example"),
        ] {
            let mut p = parts("GET", target, Some("x"));
            assert!(origin_form(&mut p), "{target}");
            assert_eq!(p.uri.to_string(), path, "{target}");
            assert_eq!(p.uri.authority(), None, "{target}");
            let hosts: Vec<_> = p.headers.get_all(header::HOST).iter().collect();
            assert_eq!(hosts, [host], "{target}");
        }
    }

    #[test]
    fn origin_and_authority_form_stay_as_they_are() {
        let mut p = parts("GET", "/p", Some("x"));
        assert!(origin_form(&mut p));
        assert_eq!(p.uri.to_string(), "/p");
        assert_eq!(&p.headers[header::HOST], "x");
        let mut p = parts("CONNECT", "other.example:443", Some("x"));
        assert!(origin_form(&mut p));
        assert_eq!(p.uri.to_string(), "other.example:443");
        assert_eq!(&p.headers[header::HOST], "x");
    }
}
