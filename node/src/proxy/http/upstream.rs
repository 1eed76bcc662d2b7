//! The upstream exchange: a slot on a server (queued as HAProxy queues), a
//! connection to it (an idle pooled one, else a new one), connect retries
//! and redispatch, and the request sent with `timeout server` on its
//! response head.

use super::idle::Idle;
use super::log::HttpLog;
use super::observe::observe;
use super::response::ProxyBody;
use crate::proxy::backend::{BackendRt, NoSlot, ServerRt, Slot};
use crate::server::pool::{ReqBody, Upload};
use crate::server::AfterFailure;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use raftlb_proto::config::Observe;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// A request on its way to a server: what its connect, retry and send
/// phases share.
pub(super) struct Exchange<'a> {
    /// The backend it was routed to.
    pub(super) be: &'a BackendRt,
    /// The client.
    pub(super) peer: SocketAddr,
    /// Its `uri`/`hdr` hash key, for a redispatch's order.
    pub(super) key: Option<u32>,
    /// Its server slot; a redispatch moves it to another server.
    pub(super) slot: Slot,
    /// An upgrade or CONNECT: it takes a new connection for good.
    pub(super) tunnel: bool,
}

/// The server's response head, the connection it came on, when the wait
/// for it began (for `Tr`), and `timeout server` for its body (the timer
/// that watched for the head, so that a request arms one timer).
type Answered = (
    Response<Incoming>,
    SendRequest<ReqBody>,
    Option<Instant>,
    Option<Idle>,
);

/// Connect (or reuse), send, and wait for the response head. A connect
/// that fails is retried `retries` times (nothing was sent: always
/// safe), the last on another server with `redispatch`. A pooled
/// connection that the server closed before taking the request is
/// replaced by a new one at once; one it closed after taking it, with no
/// answer (its keep-alive timeout fired as the request came), gets the
/// request again on a new connection if the request is idempotent and has
/// no body (HAProxy's `retry-on conn-failure empty-response`). On failure,
/// the error page (logged).
pub(super) async fn exchange(
    x: &mut Exchange<'_>,
    mut req: Request<ReqBody>,
    log: &mut HttpLog,
) -> Result<Answered, Response<ProxyBody>> {
    let mut retries_left = x.be.cfg.retries;
    let connecting = log.clock();
    // Once a request was sent again, only new connections.
    let mut pooled = !x.tunnel;
    loop {
        let (mut sender, timer, reused) =
            connection(x, pooled, &mut retries_left, connecting, log).await?;
        log.tc = connecting.map(|t| t.elapsed());
        let waiting = log.clock();
        let srv = &x.be.servers[x.slot.idx];
        let timeout = x.be.cfg.timeout.server.map(|t| (t, timer));
        match send(srv, &mut sender, req, reused, timeout, log).await? {
            Sent::Answered(r, stall) => return Ok((r, sender, waiting, stall)),
            Sent::Unsent(unsent) => req = unsent,
            Sent::Again(copy) => {
                req = copy;
                pooled = false;
            }
        }
    }
}

/// A connection to the slot's server, the timer its last exchange left
/// (a pooled one's), and whether it came from the pool: the most recently
/// used idle one still open (if `pooled`), else a new one. A connect
/// that fails counts against `retries_left`: retried after a pause, the
/// last one on another server with `redispatch`; none left, a 502.
async fn connection(
    x: &mut Exchange<'_>,
    pooled: bool,
    retries_left: &mut u32,
    connecting: Option<Instant>,
    log: &mut HttpLog,
) -> Result<(SendRequest<ReqBody>, Option<Pin<Box<Sleep>>>, bool), Response<ProxyBody>> {
    let be = x.be;
    loop {
        let srv = &be.servers[x.slot.idx];
        // A tunnel takes its connection for good: a new one.
        while let Some(mut s) = pooled.then(|| srv.state.http_pool.take()).flatten() {
            if ready(&mut s.conn).await {
                return Ok((s.conn, s.timer, true));
            }
        }
        match connect(be, x.slot.idx).await {
            Ok(s) => {
                observe(srv, Observe::Layer4, Ok(()));
                return Ok((s, None, false));
            }
            Err(why) => {
                observe(srv, Observe::Layer4, Err("L4CON"));
                let failures = &srv.state.failures;
                if *retries_left == 0 {
                    failures.connect_failed(AfterFailure::GiveUp);
                    log.tc = connecting.map(|t| t.elapsed());
                    return Err(log.error(StatusCode::BAD_GATEWAY, &why, ('S', 'C')));
                }
                *retries_left -= 1;
                if *retries_left == 0 && be.cfg.redispatch {
                    let others: Vec<usize> = be
                        .order_key(x.peer.ip(), x.key)
                        .into_iter()
                        .filter(|&i| i != x.slot.idx)
                        .collect();
                    if let Some(other) = be.try_take(&others) {
                        failures.connect_failed(AfterFailure::Redispatch);
                        x.slot = other;
                        log.server = Some(x.slot.idx);
                        continue;
                    }
                }
                failures.connect_failed(AfterFailure::Retry);
                // HAProxy's turn-around: let a restarting server breathe.
                let pause = be
                    .cfg
                    .timeout
                    .connect
                    .map_or(Duration::from_secs(1), |c| c.min(Duration::from_secs(1)));
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// What sending a request came to, short of an error page.
// Unboxed: it is moved once, and a box would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Sent {
    /// The server's response head, and `timeout server` for its body.
    Answered(Response<Incoming>, Option<Idle>),
    /// Never sent: a pooled connection the server had closed. The request
    /// comes back, to go on another connection.
    Unsent(Request<ReqBody>),
    /// Sent on a pooled connection that the server closed without an
    /// answer: a copy of the request (idempotent, no body), to send again
    /// on a new connection.
    Again(Request<ReqBody>),
}

/// What it takes to send a request again if a reused connection loses it:
/// only an idempotent request (RFC 9110 §9.2.2) with no body, whose copy is
/// its head alone. Its headers are kept as a flat list (one allocation, each
/// value shared with the request's), not a second `HeaderMap`: nearly every
/// copy is dropped unused, and a map costs two allocations and its hashing.
struct Replay {
    method: hyper::Method,
    uri: hyper::Uri,
    version: hyper::Version,
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

impl Replay {
    fn of(req: &Request<ReqBody>, reused: bool) -> Option<Replay> {
        use hyper::Method;
        let idempotent = matches!(
            *req.method(),
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        if !reused || !idempotent || !hyper::body::Body::is_end_stream(req.body()) {
            return None;
        }
        Some(Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
        })
    }

    /// The request again, with its headers in their order.
    fn request(self) -> Request<ReqBody> {
        let mut copy = Request::new(ReqBody::empty());
        *copy.method_mut() = self.method;
        *copy.uri_mut() = self.uri;
        *copy.version_mut() = self.version;
        let headers = copy.headers_mut();
        headers.reserve(self.headers.len());
        for (n, v) in self.headers {
            headers.append(n, v);
        }
        copy
    }
}

/// Sends `req` on `sender` and waits for the response head, `timeout` at
/// most (`timeout server`, on the connection's timer if it has one): a 504
/// after it, a 502 for a bad response, a
/// 400 when the client's body failed on its way (logged `CH`, the
/// server's passive health untouched).
async fn send(
    srv: &ServerRt,
    sender: &mut SendRequest<ReqBody>,
    req: Request<ReqBody>,
    reused: bool,
    timeout: Option<(Duration, Option<Pin<Box<Sleep>>>)>,
    log: &mut HttpLog,
) -> Result<Sent, Response<ProxyBody>> {
    let again = Replay::of(&req, reused);
    let upload = req.body().upload();
    let sent = sender.try_send_request(req);
    let mut stall = None;
    let outcome = match timeout {
        Some((t, timer)) => match silent_for(t, upload.as_deref(), sent, timer).await {
            (Some(r), sleep) => {
                stall = Some(Idle::reusing(t, sleep));
                r
            }
            (None, _) => {
                observe(srv, Observe::Layer7, Err("L7TOUT"));
                return Err(log.error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "The server didn't respond in time.",
                    ('s', 'H'),
                ));
            }
        },
        None => sent.await,
    };
    match outcome {
        Ok(r) => Ok(Sent::Answered(r, stall)),
        Err(mut e) => {
            let unsent = e.take_message();
            let e = e.into_error();
            match (unsent, again) {
                // Never sent: a pooled connection the server had closed.
                (Some(unsent), _) if reused => Ok(Sent::Unsent(unsent)),
                _ if client_body_failed(&e) => {
                    // The client's fault, not the server's: nothing is
                    // counted against it, and no response had started.
                    tracing::debug!(server = %srv.state.id, error = %e, "the client's request body failed");
                    let mut r = log.error(
                        StatusCode::BAD_REQUEST,
                        "The request body is malformed.",
                        ('C', 'H'),
                    );
                    r.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                    Err(r)
                }
                // Sent, and the connection closed with no answer: the race
                // of a server's keep-alive timeout, not the server's fault.
                (None, Some(copy)) if e.is_incomplete_message() || e.is_canceled() => {
                    tracing::debug!(server = %srv.state.id, error = %e, "a reused connection closed unanswered: sent again");
                    Ok(Sent::Again(copy.request()))
                }
                _ => {
                    tracing::debug!(server = %srv.state.id, error = %e, "bad response from the server");
                    observe(srv, Observe::Layer7, Err("L7RSP"));
                    Err(log.error(
                        StatusCode::BAD_GATEWAY,
                        "The server returned an invalid or incomplete response.",
                        ('S', 'H'),
                    ))
                }
            }
        }
    }
}

/// Whether a pooled connection takes a request: at once as a rule (its
/// previous exchange is wholly done); an error means the server closed it
/// meanwhile. One not ready within a second is not used.
async fn ready(s: &mut SendRequest<ReqBody>) -> bool {
    use futures_util::FutureExt;
    if let Some(r) = s.ready().now_or_never() {
        return r.is_ok();
    }
    matches!(
        tokio::time::timeout(Duration::from_secs(1), s.ready()).await,
        Ok(Ok(()))
    )
}

/// `sent`, unless the server stays silent for `limit` after the request
/// was sent (`timeout server`): from the last move of its body if it has
/// one, else from now. On `timer` if given (moving a registered timer
/// later costs an atomic store), else a new one; with the timer it used,
/// for the response body.
async fn silent_for<F: std::future::Future>(
    limit: Duration,
    upload: Option<&Upload>,
    sent: F,
    timer: Option<Pin<Box<Sleep>>>,
) -> (Option<F::Output>, Pin<Box<Sleep>>) {
    let since = || upload.map_or_else(Instant::now, Upload::last);
    let at = tokio::time::Instant::from_std(since() + limit);
    let mut sleep = match timer {
        Some(mut s) => {
            s.as_mut().reset(at);
            s
        }
        None => Box::pin(tokio::time::sleep_until(at)),
    };
    tokio::pin!(sent);
    loop {
        tokio::select! {
            biased;
            r = &mut sent => return (Some(r), sleep),
            _ = sleep.as_mut() => {
                let at = since() + limit;
                if upload.is_none() || Instant::now() >= at {
                    return (None, sleep);
                }
                sleep.as_mut().reset(at.into());
            }
        }
    }
}

/// Whether an exchange failed because the request body did: hyper's
/// client says so with a user body error, whose cause is the error the
/// client's body ([`ReqBody`], over hyper's server) gave.
fn client_body_failed(e: &hyper::Error) -> bool {
    e.is_user()
        && std::error::Error::source(e).is_some_and(|c| c.downcast_ref::<hyper::Error>().is_some())
}

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
