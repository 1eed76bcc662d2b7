//! The response on its way to the client: a server's, its headers rewritten
//! and its body relayed until its end returns the connection to the pool;
//! or one made here, the error pages.

use super::headers::HopByHop;
use super::idle::Idle;
use super::log::HttpLog;
use crate::proxy::backend::{BackendRt, Slot};
use crate::proxy::frontend::FrontendRt;
use crate::server::pool::{idle_limit, Pooled, ReqBody};
use crate::server::ServerState;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A server's `Keep-Alive: timeout=N`: how long it keeps an idle connection.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// The body of a response to the client: a server's, or one of ours.
pub enum ProxyBody {
    /// Relayed from a server.
    Upstream(Upstream),
    /// Made here (errors).
    Local(Full<Bytes>),
}

/// Why a response body ended before its end.
#[derive(Debug)]
pub enum BodyError {
    /// The server's connection failed, or its body was malformed.
    Server(hyper::Error),
    /// The server sent nothing for `timeout server` in the middle of it.
    Timeout,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Server(e) => write!(f, "{e}"),
            BodyError::Timeout => f.write_str("the server sent nothing for timeout server"),
        }
    }
}

impl std::error::Error for BodyError {}

/// A server's response body; at its end, the connection goes back to the
/// server's pool and the request's slot is released.
pub struct Upstream {
    body: Incoming,
    /// `timeout server` while the body is on its way.
    stall: Option<Idle>,
    /// The connection and the pool it returns to, until the body ends.
    conn: Option<(SendRequest<ReqBody>, Arc<ServerState>)>,
    /// How long it may wait in the pool (the server's `Keep-Alive`).
    idle: Duration,
    /// The request's server slot, held until the response is done.
    _slot: Slot,
    /// Written when the response is done (or abandoned).
    log: Option<Box<HttpLog>>,
}

impl Drop for Upstream {
    /// The connection goes back to the pool only if the response was read
    /// to its end (hyper stops reading once the announced length arrived,
    /// so the end is what the body says, not a last poll).
    fn drop(&mut self) {
        let done = self.body.is_end_stream();
        if let Some((conn, server)) = self.conn.take() {
            if done {
                let timer = self.stall.take().and_then(Idle::into_timer);
                server.http_pool.put(Pooled { conn, timer }, self.idle);
            }
        }
        if let Some(mut log) = self.log.take() {
            if !done && log.state == ('-', '-') {
                // The client left before the whole response was sent.
                log.state = ('C', 'D');
            }
            log.write();
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Local(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
            ProxyBody::Upstream(u) => {
                let r = Pin::new(&mut u.body).poll_frame(cx);
                match &r {
                    Poll::Ready(Some(Ok(f))) => {
                        if let Some(s) = u.stall.as_mut() {
                            s.progress();
                        }
                        if let (Some(d), Some(log)) = (f.data_ref(), u.log.as_mut()) {
                            log.bytes += d.len() as u64;
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        // Never reused after an error.
                        u.conn.take();
                        if let Some(log) = u.log.as_mut() {
                            log.state = ('S', 'D');
                        }
                    }
                    Poll::Pending => {
                        if u.stall
                            .as_mut()
                            .is_some_and(|s| s.poll_expired(cx).is_ready())
                        {
                            u.conn.take();
                            if let Some(log) = u.log.as_mut() {
                                log.state = ('s', 'D');
                            }
                            return Poll::Ready(Some(Err(BodyError::Timeout)));
                        }
                    }
                    Poll::Ready(None) => {}
                }
                r.map_err(BodyError::Server)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local(b) => b.is_end_stream(),
            ProxyBody::Upstream(u) => u.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local(b) => b.size_hint(),
            ProxyBody::Upstream(u) => u.body.size_hint(),
        }
    }
}

impl ProxyBody {
    /// The response broke off for the client's fault (its request body
    /// failed), not the server's: logged `CD`.
    pub(super) fn blame_client(&mut self) {
        if let ProxyBody::Upstream(Upstream { log: Some(log), .. }) = self {
            log.state = ('C', 'D');
        }
    }
}

impl HttpLog {
    /// An error page, logged with `state`.
    pub(super) fn error(
        &mut self,
        status: StatusCode,
        why: &str,
        state: (char, char),
    ) -> Response<ProxyBody> {
        let r = error(status, why);
        self.status = status.as_u16();
        self.bytes = r.body().size_hint().exact().unwrap_or(0);
        self.state = state;
        self.write();
        r
    }
}

/// A short response made here, as HAProxy's error pages.
pub(super) fn error(status: StatusCode, why: &str) -> Response<ProxyBody> {
    let body = format!(
        "<html><body><h1>{} {}</h1>\n{why}\n</body></html>\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut r = Response::new(ProxyBody::Local(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The server's response on its way to the client: this hop's headers
/// gone, `via`, the persistence cookie set unless the request's own cookie
/// (`sticky`) chose the server; its body relayed, holding the connection
/// (`conn`, with the server whose pool it returns to), the slot and the log
/// line until it ends.
pub(super) fn relay(
    fe: &FrontendRt,
    be: &BackendRt,
    slot: Slot,
    sticky: Option<usize>,
    resp: Response<Incoming>,
    conn: (SendRequest<ReqBody>, Arc<ServerState>, Option<Idle>),
    log: HttpLog,
) -> Response<ProxyBody> {
    let (sender, server, stall) = conn;
    let (mut parts, body) = resp.into_parts();
    let hop = HopByHop::of(&parts.headers);
    let keep_alive = hop
        .keep_alive()
        .then(|| parts.headers.get(KEEP_ALIVE))
        .flatten();
    let idle = idle_limit(keep_alive.map(HeaderValue::as_bytes));
    hop.strip(&mut parts.headers);
    if fe.cfg.via {
        parts
            .headers
            .append(header::VIA, HeaderValue::from_static("1.1 raftlb"));
    }
    if let (Some(c), Some(value)) = (&be.cfg.cookie, &be.servers[slot.idx].cfg.cookie) {
        if sticky != Some(slot.idx) {
            if let Ok(v) = HeaderValue::from_str(&format!("{}={value}; path=/", c.name)) {
                parts.headers.append(header::SET_COOKIE, v);
            }
            if c.nocache {
                parts
                    .headers
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
            }
        }
    }
    let body = ProxyBody::Upstream(Upstream {
        body,
        stall,
        conn: Some((sender, server)),
        idle,
        _slot: slot,
        log: Some(Box::new(log)),
    });
    Response::from_parts(parts, body)
}
