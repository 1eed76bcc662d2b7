//! Routing: the backend a request goes to (`use_backend` rules over ACLs,
//! else the default backend), and what picks its server there: the
//! persistence cookie, the stick-table key and the `uri`/`hdr` hash key.

use crate::proxy::backend::BackendRt;
use crate::proxy::balance;
use crate::proxy::frontend::FrontendRt;
use crate::server::pool::ReqBody;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::Request;
use raftlb_proto::config::acl::RequestView;
use raftlb_proto::config::StickKey;
use raftlb_proto::stick::TableKey;
use std::net::SocketAddr;
use std::sync::Arc;

/// The backend for `req`: the first `use_backend` rule that applies, else
/// the default backend, else none.
pub(super) fn route(
    fe: &FrontendRt,
    req: &Request<ReqBody>,
    peer: SocketAddr,
) -> Option<Arc<BackendRt>> {
    if !fe.rules.is_empty() {
        let headers = req.headers();
        let lookup = |name: &str, f: &mut dyn FnMut(&[u8]) -> bool| {
            headers.get_all(name).iter().any(|v| f(v.as_bytes()))
        };
        let view = view_of(req, peer, &lookup);
        if let Some((_, be)) = fe.rules.iter().find(|(r, _)| r.applies(&view)) {
            return Some(be.clone());
        }
    }
    fe.backend.clone()
}

/// The `http_request` rules' verdict on `req` (after it was counted in
/// the `track_sc0` table): the status to deny it with, if one applies.
pub(super) fn denied(fe: &FrontendRt, req: &Request<ReqBody>, peer: SocketAddr) -> Option<u16> {
    fe.count_request(peer.ip());
    if fe.cfg.http_request.is_empty() {
        return None;
    }
    let headers = req.headers();
    let lookup = |name: &str, f: &mut dyn FnMut(&[u8]) -> bool| {
        headers.get_all(name).iter().any(|v| f(v.as_bytes()))
    };
    fe.denies(view_of(req, peer, &lookup))
}

/// What ACLs read of `req` (without counters), its headers through
/// `lookup`.
fn view_of<'a>(
    req: &'a Request<ReqBody>,
    peer: SocketAddr,
    lookup: &'a dyn raftlb_proto::config::acl::Headers,
) -> RequestView<'a> {
    RequestView {
        method: req.method().as_str(),
        uri: req.uri().path_and_query().map_or("/", |p| p.as_str()),
        headers: lookup,
        src: peer.ip(),
        counters: None,
    }
}

/// Cookie persistence: the server the client's cookie names, while it is
/// up and not in maintenance (a drained server keeps its clients, as in
/// HAProxy); otherwise none: the balancer picks, and the response sets the
/// cookie anew. With `indirect`, the cookie is taken off the request.
pub(super) fn persisted(be: &BackendRt, req: &mut Request<ReqBody>) -> Option<usize> {
    let sticky = be.cfg.cookie.as_ref().and_then(|c| {
        let value = find_cookie(req.headers(), &c.name)?;
        be.servers
            .iter()
            .position(|s| s.cfg.cookie.as_deref() == Some(value) && s.state.keeps_sticky())
    });
    if let Some(c) = be.cfg.cookie.as_ref().filter(|c| c.indirect) {
        strip_cookie(req.headers_mut(), &c.name);
    }
    sticky
}

/// The request's key in its backend's stick table (`stick_on`): the
/// client's address, or the value of a cookie or header (none when the
/// request carries none).
pub(super) fn stick_key(
    be: &BackendRt,
    req: &Request<ReqBody>,
    peer: SocketAddr,
) -> Option<TableKey> {
    let stick = be.stick.as_ref()?;
    match &stick.key {
        StickKey::Src => Some(TableKey::ip(peer.ip())),
        StickKey::ReqCookie(name) => {
            find_cookie(req.headers(), name).map(|v| stick.table.string_key(v.as_bytes()))
        }
        StickKey::ReqHdr(name) => req
            .headers()
            .get(name.as_str())
            .map(|v| stick.table.string_key(v.as_bytes())),
    }
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
pub(super) fn hash_key(be: &BackendRt, req: &Request<ReqBody>) -> Option<u32> {
    use raftlb_proto::config::HashKey;
    match be.cfg.hash_key.as_ref()? {
        HashKey::Hdr { name } => req
            .headers()
            .get(name.as_str())
            .map(|v| balance::hash_bytes(v.as_bytes())),
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
            Some(balance::hash_bytes(text.as_bytes()))
        }
    }
}
