//! The headers each hop rewrites: hop-by-hop headers removed both ways, and
//! the request as the server gets it (the `Upgrade` it asks for,
//! `forwardfor`, `via`).

use crate::proxy::frontend::FrontendRt;
use crate::server::pool::ReqBody;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::Request;
use raftlb_proto::config::acl::RequestView;
use raftlb_proto::config::ForwardFor;
use std::net::SocketAddr;

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
pub(super) fn strip_hop_by_hop(h: &mut HeaderMap) {
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

/// The request as the server gets it (already in origin-form: intake made
/// an absolute-form target's authority its `Host`): HTTP/1.1, this hop's
/// headers gone, the client's address appended. WebSocket and other `Upgrade`s, and CONNECT, keep what
/// they need: once the server agrees (101, or 2xx to CONNECT) both
/// connections become one tunnel. Returns whether the request may become
/// one, and the client side of its upgrade.
pub(super) fn for_server(
    req: &mut Request<ReqBody>,
    fe: &FrontendRt,
    peer: SocketAddr,
) -> (bool, Option<OnUpgrade>) {
    let upgrade = upgrade_protocol(req);
    let tunnel = upgrade.is_some() || req.method() == hyper::Method::CONNECT;
    *req.version_mut() = hyper::Version::HTTP_11;
    let client_upgrade = tunnel.then(|| hyper::upgrade::on(&mut *req));
    let h = req.headers_mut();
    strip_hop_by_hop(h);
    if let Some(proto) = upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, proto);
    }
    if let Some(ff) = &fe.cfg.forwardfor {
        forwarded_for(h, ff, peer);
    }
    if fe.cfg.via {
        h.append(header::VIA, HeaderValue::from_static("1.1 raftlb"));
    }
    (tunnel, client_upgrade)
}

/// `option forwardfor`: the client's address in a header of its own, and
/// `X-Forwarded-Proto`, unless the client is of the `except` networks.
fn forwarded_for(h: &mut HeaderMap, ff: &ForwardFor, peer: SocketAddr) {
    let excepted = ff
        .except
        .as_ref()
        .is_some_and(|nets| nets.matches(&RequestView::connection(peer.ip(), None)));
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
