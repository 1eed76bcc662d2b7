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

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1),
/// in the order of [`hop_by_hop`]'s bits (the order [`HopByHop`] relies on).
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

/// Which of [`HOP_BY_HOP`] `name` is, as its bit. One string match per
/// header: a standard name's text is a table lookup, and the match looks at
/// the length first, so a name that is none costs a compare or two.
fn hop_by_hop(name: &HeaderName) -> u8 {
    match name.as_str() {
        "connection" => 1,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "proxy-authenticate" => 1 << 3,
        "te" => 1 << 4,
        "trailer" => 1 << 5,
        "transfer-encoding" => 1 << 6,
        "upgrade" => 1 << 7,
        _ => 0,
    }
}

/// Which hop-by-hop headers a message carries: one pass over its names.
#[derive(Clone, Copy)]
pub(super) struct HopByHop(u8);

impl HopByHop {
    pub(super) fn of(h: &HeaderMap) -> HopByHop {
        HopByHop(h.keys().fold(0u8, |bits, name| bits | hop_by_hop(name)))
    }

    /// Whether it has a `Connection` header.
    fn connection(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether it has a `Keep-Alive` header (a server's says how long it
    /// keeps an idle connection): without one, no lookup.
    pub(super) fn keep_alive(self) -> bool {
        self.0 & (1 << 1) != 0
    }

    /// Removes them from `h` (the map they were found in), and the headers
    /// `Connection` names; only those present are looked up and removed.
    pub(super) fn strip(self, h: &mut HeaderMap) {
        let present = self.0;
        if present == 0 {
            return;
        }
        if self.connection() {
            for n in connection_named(h) {
                h.remove(n);
            }
        }
        for (i, n) in HOP_BY_HOP.iter().enumerate() {
            if present & (1 << i) != 0 {
                h.remove(n);
            }
        }
    }
}

/// The headers the `Connection` header names, besides its common tokens.
fn connection_named(h: &HeaderMap) -> Vec<HeaderName> {
    let mut named = Vec::new();
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
    named
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
    let hop = HopByHop::of(req.headers());
    // `Connection: upgrade` is needed to ask for one.
    let upgrade = hop.connection().then(|| upgrade_protocol(req)).flatten();
    let tunnel = upgrade.is_some() || req.method() == hyper::Method::CONNECT;
    *req.version_mut() = hyper::Version::HTTP_11;
    let client_upgrade = tunnel.then(|| hyper::upgrade::on(&mut *req));
    let h = req.headers_mut();
    hop.strip(h);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hop_by_hop_name_has_its_own_bit_and_others_none() {
        for (i, n) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop(n), 1 << i, "{n}");
        }
        for n in [
            "host",
            "content-length",
            "x-connection",
            "tee",
            "upgrade-insecure-requests",
        ] {
            assert_eq!(hop_by_hop(&HeaderName::from_static(n)), 0, "{n}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go_the_rest_stays() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("host", "a"),
            ("connection", "keep-alive, X-Private"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("x-tag", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("x-tag", "2"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let hop = HopByHop::of(&h);
        assert!(hop.keep_alive());
        hop.strip(&mut h);
        let left: Vec<_> = h
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        assert_eq!(left, ["host: a", "x-tag: 1", "x-tag: 2"]);
        let mut plain = HeaderMap::new();
        plain.insert(header::HOST, HeaderValue::from_static("a"));
        let hop = HopByHop::of(&plain);
        assert!(!hop.keep_alive());
        hop.strip(&mut plain);
        assert_eq!(plain.len(), 1);
    }
}
