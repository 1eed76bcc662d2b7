//! One request, from its head to its response: routed, given a server
//! slot, sent over a pooled or new upstream connection (with retries), and
//! answered, or turned into a tunnel.

use super::headers::{strip_hop_by_hop, upgrade_protocol};
use super::log::HttpLog;
use super::observe::{layer7_ok, observe};
use super::pool::ReqBody;
use super::response::{ProxyBody, Upstream};
use super::routing::{find_cookie, hash_key, route, strip_cookie};
use super::tunnel::{req_was_connect, splice};
use super::upstream::{connect, take_slot};
use crate::proxy::frontend::FrontendRt;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use raftlb_proto::config::acl::RequestView;
use raftlb_proto::config::Observe;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn handle(
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
