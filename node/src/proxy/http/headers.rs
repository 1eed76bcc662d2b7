//! The headers each hop rewrites: hop-by-hop headers removed both ways,
//! and the `Upgrade` a request asks for.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::Request;

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
pub(super) fn upgrade_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
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
