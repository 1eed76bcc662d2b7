//! The admin API's server: hyper's HTTP/1 on the admin listener, one
//! request per connection, each phase with its limit and its timer (the
//! head: 16 KiB, 431; the body: 8 MiB, 413); who may ask decided from the
//! head (see `guard`); a request read whole into a [`Req`] for the routes.

use super::guard::{admit, Keys};
use super::http::{error, parse_query, Answer, Req};
use super::routes::route;
use super::state::AdminState;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The largest request head (request line and headers).
const MAX_HEAD: usize = 16 << 10;
/// The largest request body (a config document).
const MAX_BODY: usize = 8 << 20;
/// How long a client has to send the head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send the body, once the head is in.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one connection may last, the answer included (a write waits
/// for the cluster to commit it).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How many connections are served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;

/// Serves the admin API on `listener` forever.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin API: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection(stream, peer, state)).await;
        });
    }
}

/// One connection: one request, then hyper closes it (as HTTP/1.0 did).
async fn connection(stream: TcpStream, peer: SocketAddr, state: Arc<AdminState>) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(false)
        .max_header_size(MAX_HEAD)
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(respond(answer(req, peer, &state).await)) }
    });
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "admin API connection ended");
    }
}

/// The routes' answer to `req` from `peer`, or why it was refused before
/// them. A refused token and every write are logged, with who and what.
async fn answer(req: Request<Incoming>, peer: SocketAddr, state: &AdminState) -> Answer {
    let keys = Keys {
        node: &state.token,
        users: state.users.as_ref(),
    };
    let target = req.uri().to_string();
    let method = req.method().clone();
    let caller = match admit(&method, req.uri().path(), req.headers(), keys) {
        Ok(c) => c,
        Err(refused) => {
            if refused.0 == 401 || refused.0 == 403 {
                tracing::warn!(
                    target: "raftlb::admin",
                    client = %peer, method = %method, target, status = refused.0,
                    "admin API: refused {method} {target} from {peer}: {}", refused.1.trim()
                );
            }
            return refused;
        }
    };
    let answer = match read(req).await {
        Ok(req) => route(req, state).await,
        Err(refused) => refused,
    };
    if method != Method::GET && method != Method::HEAD {
        let who = caller.name();
        tracing::info!(
            target: "raftlb::admin",
            client = %peer, who, method = %method, target, status = answer.0,
            "admin API: {who} from {peer}: {method} {target} -> {}", answer.0
        );
    }
    answer
}

/// Reads `req` whole: its query decoded, its body within [`MAX_BODY`] and
/// [`BODY_TIMEOUT`].
async fn read(req: Request<Incoming>) -> Result<Req, Answer> {
    let (parts, body) = req.into_parts();
    let query = parse_query(parts.uri.query().unwrap_or("")).map_err(|e| error(400, e))?;
    let too_large = || error(413, format!("body over the {MAX_BODY}-byte limit"));
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(too_large());
    }
    let body =
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
            Err(_) => return Err(error(408, "the body did not arrive in time")),
            Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large()),
            Ok(Err(e)) => return Err(error(400, format!("body: {e}"))),
            Ok(Ok(b)) => b.to_bytes(),
        };
    let body = String::from_utf8(body.to_vec()).map_err(|_| error(400, "body is not UTF-8"))?;
    Ok(Req {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query,
        body,
    })
}

/// `answer` as an HTTP response: JSON or text, as the body is.
fn respond((code, body): Answer) -> Response<Full<Bytes>> {
    let ctype = if body.starts_with('{') {
        "application/json"
    } else if body.starts_with("<!doctype html>") {
        "text/html; charset=utf-8"
    } else if body.starts_with("# HELP ") {
        // Prometheus' text exposition format.
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain"
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}
