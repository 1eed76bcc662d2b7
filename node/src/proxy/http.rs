//! One client connection in HTTP mode (HTTP/1.1, hyper): each request is
//! routed to a backend, takes a server slot (`maxconn` counts concurrent
//! requests, as in HAProxy), and goes over a pooled upstream connection. An
//! upstream connection goes back to its server's pool only once its response
//! was read to the end; one that failed or whose body was left unread is
//! closed.
//!
//! What is here: `use_backend` rules over HAProxy ACLs (first match wins,
//! then the default backend, else 503), cookie persistence and `uri`/`hdr`
//! hashing, keep-alive on both sides, the upstream pool with retries,
//! hop-by-hop headers removed, `forwardfor`, `via`, `Host` kept, upgrades
//! and CONNECT as tunnels, the head timers (`timeout http_request` and
//! `http_keep_alive`, armed lazily), request-smuggling checks with the
//! [`scan`]ner below hyper, 502/503/504, and the httplog line.

pub mod pool;
pub mod scan;

pub use pool::{Pool, ReqBody};

use super::backend::{BackendRt, NoSlot, Slot};
use super::frontend::FrontendRt;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use raftlb_proto::config::acl::RequestView;
use raftlb_proto::config::Observe;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The body of a response to the client: a server's, or one of ours.
pub enum ProxyBody {
    /// Relayed from a server.
    Upstream(Upstream),
    /// Made here (errors).
    Local(Full<Bytes>),
}

/// A server's response body; at its end, the connection goes back to the
/// server's pool and the request's slot is released.
pub struct Upstream {
    body: Incoming,
    /// The connection and the pool it returns to, until the body ends.
    conn: Option<(SendRequest<ReqBody>, Arc<super::server::ServerState>)>,
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
                server.http_pool.put(conn);
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
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Local(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
            ProxyBody::Upstream(u) => {
                let r = Pin::new(&mut u.body).poll_frame(cx);
                match &r {
                    Poll::Ready(Some(Ok(f))) => {
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
                    _ => {}
                }
                r
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

/// One httplog line, filled in as the request goes (HAProxy's `option
/// httplog`): `client [accept date] frontend backend/server TR/Tw/Tc/Tr/Ta
/// status bytes - - state "request line"`; -1 for a phase not reached.
pub struct HttpLog {
    /// Whether the line is written: without it, no clock is read either.
    on: bool,
    peer: SocketAddr,
    fe: Arc<FrontendRt>,
    start: Option<Instant>,
    date: std::time::SystemTime,
    /// The request line (only when the log is on: it costs an allocation).
    request: String,
    tr_head: Option<Duration>,
    /// A CONNECT request (known even when the log is off).
    connect: bool,
    backend: Option<Arc<BackendRt>>,
    /// The server's position in `backend`.
    server: Option<usize>,
    tw: Option<Duration>,
    tc: Option<Duration>,
    tr: Option<Duration>,
    status: u16,
    bytes: u64,
    state: (char, char),
}

impl HttpLog {
    fn new(
        fe: &Arc<FrontendRt>,
        peer: SocketAddr,
        req: &Request<Incoming>,
        head: Option<Duration>,
    ) -> HttpLog {
        let enabled = tracing::enabled!(target: "raftlb::httplog", tracing::Level::INFO);
        HttpLog {
            on: enabled,
            peer,
            fe: fe.clone(),
            start: enabled.then(Instant::now),
            date: if enabled {
                std::time::SystemTime::now()
            } else {
                std::time::UNIX_EPOCH
            },
            request: if enabled {
                format!("{} {} {:?}", req.method(), req.uri(), req.version())
            } else {
                String::new()
            },
            tr_head: head,
            connect: req.method() == hyper::Method::CONNECT,
            backend: None,
            server: None,
            tw: None,
            tc: None,
            tr: None,
            status: 0,
            bytes: 0,
            state: ('-', '-'),
        }
    }

    /// An error page, logged with `state`.
    fn error(&mut self, status: StatusCode, why: &str, state: (char, char)) -> Response<ProxyBody> {
        let r = error(status, why);
        self.status = status.as_u16();
        self.bytes = r.body().size_hint().exact().unwrap_or(0);
        self.state = state;
        self.write();
        r
    }

    /// Now, when the line is written (a phase's start).
    fn clock(&self) -> Option<Instant> {
        self.on.then(Instant::now)
    }

    fn write(&self) {
        if !self.on {
            return;
        }
        let ms = |d: Option<Duration>| d.map_or(-1, |d| d.as_millis() as i64);
        let (st, ph) = self.state;
        tracing::info!(
            target: "raftlb::httplog",
            "{} [{}] {} {}/{} {}/{}/{}/{}/{} {} {} - - {st}{ph}-- \"{}\"",
            self.peer,
            log_date(self.date),
            self.fe.cfg.name,
            self.backend.as_ref().map_or("<NOSRV>", |b| b.cfg.name.as_str()),
            self.backend
                .as_ref()
                .zip(self.server)
                .map_or("<NOSRV>", |(b, i)| b.servers[i].cfg.name.as_str()),
            ms(self.tr_head),
            ms(self.tw),
            ms(self.tc),
            ms(self.tr),
            ms(self.start.map(|t| t.elapsed())),
            self.status,
            self.bytes,
            self.request,
        );
    }
}

/// HAProxy's log date, in UTC: `21/Nov/2026:22:15:01.123`.
fn log_date(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02}.{:03}",
        MONTHS[(month - 1) as usize],
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

/// A short response made here, as HAProxy's error pages.
fn error(status: StatusCode, why: &str) -> Response<ProxyBody> {
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

/// `ConnState::armed` when no timer is armed.
const NOT_ARMED: u64 = u64::MAX;

/// What the client connection's timers need to know of its requests.
struct ConnState {
    /// Requests whose response is not wholly sent yet.
    in_flight: AtomicUsize,
    /// When the last response was wholly sent, in ns after `accepted` (0:
    /// not yet). An atomic: the reader looks at it on every wait.
    idle_since: AtomicU64,
    /// When the connection was accepted.
    accepted: Instant,
    timers: HeadTimers,
    /// The deadline the reader's timer is armed at, in ns after
    /// `accepted` ([`NOT_ARMED`]: none).
    armed: AtomicU64,
    /// The reader, when it waits while a response is on its way: woken
    /// when the connection turns idle and its timer would fire too late.
    reader: AtomicWaker,
}

impl ConnState {
    /// `t` in ns after the accept.
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.accepted).as_nanos() as u64
    }
}

/// Counts a request until its response body is gone (sent, or dropped).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    /// The last response done: the connection is idle from now on, and the
    /// reader must wait no longer than the keep-alive timeout. If its timer
    /// is armed later than that, or not at all, or already fired, the reader
    /// is woken to arm it; otherwise the timer, when it fires, finds the new
    /// deadline.
    fn drop(&mut self) {
        let conn = &self.0;
        if conn.in_flight.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let now = conn.ns(Instant::now()).max(1);
        conn.idle_since.store(now, Ordering::Release);
        if let Some(t) = conn.timers.idle() {
            let armed = conn.armed.load(Ordering::Acquire);
            if armed <= now || armed > now.saturating_add(t.as_nanos() as u64) {
                conn.reader.wake();
            }
        }
    }
}

/// A response body that keeps its request counted until it is done.
pub struct Tracked {
    body: ProxyBody,
    _guard: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// `timeout http_request` and `http_keep_alive`, as HAProxy applies them:
/// the first request's head must arrive within `request` of the accept; a
/// later one may wait `keep_alive` (default `request`) after the last
/// response, then its head must be whole within `request` of its first
/// byte. Expiry closes the connection (silently, between requests).
struct HeadTimers {
    request: Option<Duration>,
    keep_alive: Option<Duration>,
}

impl HeadTimers {
    /// How long an idle connection may wait for its next request.
    fn idle(&self) -> Option<Duration> {
        self.keep_alive.or(self.request)
    }
}

/// The client connection, with the [`scan::Scanner`] looking at what is
/// read, and the head timers.
struct Scanned {
    inner: TcpStream,
    scanner: scan::Scanner,
    conn: Arc<ConnState>,
    /// Armed at `conn.armed`, never later than the deadline.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Scanned {
    /// When waiting for more bytes must end, if it must.
    fn deadline(&self) -> Option<Instant> {
        let started = self.scanner.head_phase()?;
        let (conn, timers) = (&self.conn, &self.conn.timers);
        if let Some(first_byte) = started {
            return timers.request.map(|t| first_byte + t);
        }
        if conn.in_flight.load(Ordering::Acquire) > 0 {
            return None; // a response is on its way
        }
        match conn.idle_since.load(Ordering::Acquire) {
            0 => timers.request.map(|t| conn.accepted + t),
            ns => timers
                .idle()
                .map(|t| conn.accepted + Duration::from_nanos(ns) + t),
        }
    }

    /// Waits for `deadline` on the armed timer: a timeout once it passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let at = tokio::time::Instant::from_std(deadline);
        let sleep = match &mut self.sleep {
            Some(s) => {
                if s.deadline() > at {
                    s.as_mut().reset(at);
                    self.conn
                        .armed
                        .store(self.conn.ns(deadline), Ordering::Release);
                }
                s
            }
            None => {
                self.conn
                    .armed
                    .store(self.conn.ns(deadline), Ordering::Release);
                self.sleep.insert(Box::pin(tokio::time::sleep_until(at)))
            }
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Fired at an earlier deadline: the real one moved on since.
        if tokio::time::Instant::now() < at {
            sleep.as_mut().reset(at);
            self.conn
                .armed
                .store(self.conn.ns(deadline), Ordering::Release);
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        self.sleep = None;
        self.conn.armed.store(NOT_ARMED, Ordering::Release);
        Poll::Ready(())
    }
}

impl tokio::io::AsyncRead for Scanned {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(())) => {
                me.scanner.feed(&buf.filled()[before..]);
                r
            }
            Poll::Ready(Err(_)) => r,
            // The timer is armed lazily, as HAProxy's task timers: it stays
            // at an earlier deadline while the real one moves later (each
            // response moves it), and when it fires, the deadline is looked
            // at again. One timer reset per timeout period, not one per
            // request.
            Poll::Pending => match me.deadline() {
                Some(deadline) => match me.poll_deadline(cx, deadline) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::ErrorKind::TimedOut.into())),
                    Poll::Pending => Poll::Pending,
                },
                None => {
                    // Nothing to time while a response is on its way (or a
                    // body comes); its end wakes us if the timer would be
                    // late. A timer that fired meanwhile is dropped.
                    me.conn.reader.register(cx.waker());
                    if me.sleep.as_ref().is_some_and(|s| s.is_elapsed()) {
                        me.sleep = None;
                        me.conn.armed.store(NOT_ARMED, Ordering::Release);
                    }
                    Poll::Pending
                }
            },
        }
    }
}

impl tokio::io::AsyncWrite for Scanned {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop headers, and those the `Connection` header names.
/// Once per message each way: one pass over the names first, and only the
/// headers present are removed (most messages carry at most `Connection`).
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let mut named: Vec<HeaderName> = Vec::new();
    for v in h.get_all(header::CONNECTION) {
        for token in v.to_str().unwrap_or("").split(',') {
            let token = token.trim();
            // The common tokens name no header but a hop-by-hop one.
            if ["close", "keep-alive", "upgrade", ""]
                .iter()
                .any(|t| token.eq_ignore_ascii_case(t))
            {
                continue;
            }
            if let Ok(n) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(n);
            }
        }
    }
    let mut present = 0u8;
    for name in h.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|n| n == name) {
            present |= 1 << i;
        }
    }
    for n in &named {
        h.remove(n);
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            h.remove(n);
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    fe: Arc<FrontendRt>,
    mut log: HttpLog,
) -> Response<ProxyBody> {
    // hyper refuses (400) differing Content-Lengths, a Transfer-Encoding
    // that does not end with chunked, obs-fold and bare CRs, an overlong URI
    // (414) or head (431); the scanner, both lengths at once. The body's
    // first frame before anything else: a malformed chunked body
    // (a bad chunk size) is refused here, before any server sees the head.
    let (parts, mut incoming) = req.into_parts();
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
    let mut req = Request::from_parts(
        parts,
        ReqBody {
            first,
            rest: incoming,
        },
    );
    let Some(be) = route(&fe, &req, peer) else {
        return log.error(
            StatusCode::SERVICE_UNAVAILABLE,
            "No backend serves this request.",
            ('P', 'R'),
        );
    };
    log.backend = Some(be.clone());
    // Cookie persistence: the server the client's cookie names, while it is
    // up and not in maintenance (a drained server keeps its clients, as in
    // HAProxy); otherwise the balancer picks, and the response sets the
    // cookie anew.
    let sticky = be.cfg.cookie.as_ref().and_then(|c| {
        let value = find_cookie(req.headers(), &c.name)?;
        be.servers.iter().position(|s| {
            s.cfg.cookie.as_deref() == Some(value)
                && s.state.is_up()
                && s.state.admin_state() != raftlb_proto::OperatorState::Maint
        })
    });
    if let Some(c) = be.cfg.cookie.as_ref().filter(|c| c.indirect) {
        strip_cookie(req.headers_mut(), &c.name);
    }
    let key = hash_key(&be, &req);
    let queued = log.clock();
    let slot = take_slot(&be, peer, key, sticky).await;
    log.tw = queued.map(|t| t.elapsed());
    let slot = match slot {
        Ok(s) => s,
        Err((why, state)) => return log.error(StatusCode::SERVICE_UNAVAILABLE, why, state),
    };
    log.server = Some(slot.idx);
    // The request as the server gets it: origin-form (a request in
    // absolute-form loses its scheme and authority; Host carries the
    // latter), HTTP/1.1, this hop's headers gone, the client's address
    // appended. WebSocket and other `Upgrade`s, and CONNECT, keep what
    // they need: once the server agrees (101, or 2xx to CONNECT) both
    // connections become one tunnel.
    let upgrade = upgrade_protocol(&req);
    let tunnel = upgrade.is_some() || req.method() == hyper::Method::CONNECT;
    if req.method() != hyper::Method::CONNECT && req.uri().authority().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        *req.uri_mut() = path.parse().unwrap_or_default();
    }
    *req.version_mut() = hyper::Version::HTTP_11;
    let client_upgrade = tunnel.then(|| hyper::upgrade::on(&mut req));
    let h = req.headers_mut();
    strip_hop_by_hop(h);
    if let Some(proto) = upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, proto);
    }
    if let Some(ff) = &fe.cfg.forwardfor {
        let excepted = ff.except.as_ref().is_some_and(|nets| {
            let none = |_: &str, _: &mut dyn FnMut(&[u8]) -> bool| false;
            nets.matches(&RequestView {
                method: "",
                uri: "",
                headers: &none,
                src: peer.ip(),
            })
        });
        if !excepted {
            // A new header line, as HAProxy adds it: servers read the last.
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(ff.header.as_bytes()),
                HeaderValue::from_str(&peer.ip().to_string()),
            ) {
                h.append(n, v);
            }
            h.insert(
                HeaderName::from_static("x-forwarded-proto"),
                HeaderValue::from_static("http"),
            );
        }
    }
    if fe.cfg.via {
        h.append(header::VIA, HeaderValue::from_static("1.1 raftlb"));
    }

    // Connect (or reuse), send, and wait for the response head. A connect
    // that fails is retried `retries` times (nothing was sent: always
    // safe), the last on another server with `redispatch`. A pooled
    // connection that the server closed before taking the request is
    // replaced by a new one at once.
    let mut slot = slot;
    let mut req = req;
    let mut retries_left = be.cfg.retries;
    let connecting = log.clock();
    let (resp, sender, waiting) = loop {
        let srv = &be.servers[slot.idx];
        let mut pooled = None;
        // A tunnel takes its connection for good: a new one.
        while let Some(mut s) = (!tunnel).then(|| srv.state.http_pool.take()).flatten() {
            // Ready once its previous exchange is wholly done; an error
            // means the server closed it meanwhile.
            if s.ready().await.is_ok() {
                pooled = Some(s);
                break;
            }
        }
        let reused = pooled.is_some();
        let mut sender = match pooled {
            Some(s) => s,
            None => match connect(&be, slot.idx).await {
                Ok(s) => {
                    observe(srv, Observe::Layer4, Ok(()));
                    s
                }
                Err(why) => {
                    observe(srv, Observe::Layer4, Err("L4CON"));
                    if retries_left == 0 {
                        log.tc = connecting.map(|t| t.elapsed());
                        return log.error(StatusCode::BAD_GATEWAY, &why, ('S', 'C'));
                    }
                    retries_left -= 1;
                    if retries_left == 0 && be.cfg.redispatch {
                        let others: Vec<usize> = be
                            .order_key(peer.ip(), key)
                            .into_iter()
                            .filter(|&i| i != slot.idx)
                            .collect();
                        if let Some(other) = be.try_take(&others) {
                            slot = other;
                            log.server = Some(slot.idx);
                            continue;
                        }
                    }
                    // HAProxy's turn-around: let a restarting server breathe.
                    let pause = be
                        .cfg
                        .timeout
                        .connect
                        .map_or(Duration::from_secs(1), |c| c.min(Duration::from_secs(1)));
                    tokio::time::sleep(pause).await;
                    continue;
                }
            },
        };
        log.tc = connecting.map(|t| t.elapsed());
        let waiting = log.clock();
        let sent = sender.try_send_request(req);
        let outcome = match be.cfg.timeout.server {
            Some(t) => match tokio::time::timeout(t, sent).await {
                Ok(r) => r,
                Err(_) => {
                    observe(srv, Observe::Layer7, Err("L7TOUT"));
                    return log.error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "The server didn't respond in time.",
                        ('s', 'H'),
                    );
                }
            },
            None => sent.await,
        };
        match outcome {
            Ok(r) => break (r, sender, waiting),
            Err(mut e) => match e.take_message() {
                // Never sent: a pooled connection the server had closed.
                Some(unsent) if reused => {
                    req = unsent;
                    continue;
                }
                _ => {
                    let e = e.into_error();
                    tracing::debug!(server = %srv.state.id, error = %e, "bad response from the server");
                    observe(srv, Observe::Layer7, Err("L7RSP"));
                    return log.error(
                        StatusCode::BAD_GATEWAY,
                        "The server returned an invalid or incomplete response.",
                        ('S', 'H'),
                    );
                }
            },
        }
    };
    let server = be.servers[slot.idx].state.clone();
    log.tr = waiting.map(|t| t.elapsed());
    log.status = resp.status().as_u16();
    observe(
        &be.servers[slot.idx],
        Observe::Layer7,
        if layer7_ok(log.status) {
            Ok(())
        } else {
            Err("L7STS")
        },
    );
    let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS
        || (req_was_connect(&log) && resp.status().is_success());
    if let (true, Some(client_upgrade)) = (tunnel && switched, client_upgrade) {
        let mut resp = resp;
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
        return Response::from_parts(parts, ProxyBody::Local(Full::new(Bytes::new())));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
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
        conn: Some((sender, server)),
        _slot: slot,
        log: Some(Box::new(log)),
    });
    Response::from_parts(parts, body)
}

/// The backend for `req`: the first `use_backend` rule that applies, else
/// the default backend, else none.
fn route(fe: &FrontendRt, req: &Request<ReqBody>, peer: SocketAddr) -> Option<Arc<BackendRt>> {
    if !fe.rules.is_empty() {
        let headers = req.headers();
        let lookup = |name: &str, f: &mut dyn FnMut(&[u8]) -> bool| {
            headers.get_all(name).iter().any(|v| f(v.as_bytes()))
        };
        let view = RequestView {
            method: req.method().as_str(),
            uri: req.uri().path_and_query().map_or("/", |p| p.as_str()),
            headers: &lookup,
            src: peer.ip(),
        };
        if let Some((_, be)) = fe.rules.iter().find(|(r, _)| r.applies(&view)) {
            return Some(be.clone());
        }
    }
    fe.backend.clone()
}

/// The `Upgrade` protocol a request asks for (with `Connection: upgrade`).
fn upgrade_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
    let asks = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten()
}

fn req_was_connect(log: &HttpLog) -> bool {
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

/// Passive health (`observe`): what real traffic says of a server, counted
/// as HAProxy counts it. `layer` is what this outcome is about.
fn observe(
    srv: &super::backend::ServerRt,
    layer: raftlb_proto::config::Observe,
    outcome: Result<(), &str>,
) {
    if srv.cfg.check.is_none() || srv.cfg.observe != Some(layer) {
        return;
    }
    match outcome {
        Ok(()) => srv.state.observed_ok(),
        Err(reason) => {
            let t = srv
                .state
                .observed_error(srv.cfg.on_error, srv.cfg.error_limit, reason);
            super::server::log_transition(&srv.state, t, reason, "observed traffic");
        }
    }
}

/// Whether HAProxy's `observe layer7` counts a status as valid: 100–499,
/// 501 and 505.
fn layer7_ok(status: u16) -> bool {
    (100..500).contains(&status) || status == 501 || status == 505
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn find_cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name).then_some(v.trim())
        })
}

/// Removes cookie `name` from the request (`indirect`); a `Cookie` header
/// left empty goes.
fn strip_cookie(h: &mut HeaderMap, name: &str) {
    if find_cookie(h, name).is_none() {
        return;
    }
    let kept: Vec<String> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .map(str::trim)
                .filter(|p| p.split_once('=').is_none_or(|(n, _)| n != name))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|v| !v.is_empty())
        .collect();
    h.remove(header::COOKIE);
    for v in kept {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.append(header::COOKIE, v);
        }
    }
}

/// The request's hash for `balance uri` / `hdr(name)`; `None` for other
/// algorithms, or without the header.
fn hash_key(be: &BackendRt, req: &Request<ReqBody>) -> Option<u32> {
    use raftlb_proto::config::HashKey;
    match be.cfg.hash_key.as_ref()? {
        HashKey::Hdr { name } => req
            .headers()
            .get(name.as_str())
            .map(|v| super::balance::hash_bytes(v.as_bytes())),
        HashKey::Uri { whole, len, depth } => {
            let pq = req.uri().path_and_query()?;
            let mut text = if *whole { pq.as_str() } else { pq.path() };
            if *depth > 0 {
                // Up to the `depth`th slash after the first.
                if let Some((i, _)) = text.match_indices('/').nth(*depth as usize) {
                    text = &text[..i];
                }
            }
            if *len > 0 {
                if let Some((i, _)) = text.char_indices().nth(*len as usize) {
                    text = &text[..i];
                }
            }
            Some(super::balance::hash_bytes(text.as_bytes()))
        }
    }
}

/// A slot on a server for this request (`pinned` by its cookie, else as
/// the balancer orders them); the reason and state when none comes.
async fn take_slot(
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
async fn connect(be: &BackendRt, idx: usize) -> Result<SendRequest<ReqBody>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer7_counts_statuses_as_haproxy() {
        for ok in [100, 200, 302, 404, 499, 501, 505] {
            assert!(layer7_ok(ok), "{ok}");
        }
        for bad in [500, 502, 503, 504, 506, 599] {
            assert!(!layer7_ok(bad), "{bad}");
        }
    }

    #[test]
    fn log_dates_are_haproxys() {
        let at = |ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(log_date(at(0)), "01/Jan/1970:00:00:00.000");
        // 2026-11-21T22:15:01.123Z
        assert_eq!(log_date(at(1_795_299_301_123)), "21/Nov/2026:22:15:01.123");
        // 2024-02-29T23:59:59.999Z, a leap day.
        assert_eq!(log_date(at(1_709_251_199_999)), "29/Feb/2024:23:59:59.999");
    }
}
