//! One request's phases, once intake has its head and the first frame of its
//! body: route, take a server slot, the request as the server gets it,
//! connect (or reuse) and send with retries, then the response relayed or
//! the tunnel opened. Each phase is a function of the module that owns it;
//! this one only runs them in order.

use super::headers::for_server;
use super::log::HttpLog;
use super::observe::{layer7_ok, observe};
use super::response::{relay, ProxyBody};
use super::routing::{denied, hash_key, persisted, route, stick_key};
use super::tunnel::req_was_connect;
use super::upstream::{exchange, take_slot, Exchange};
use crate::proxy::backend::ServerRt;
use crate::proxy::frontend::FrontendRt;
use crate::server::pool::ReqBody;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use raftlb_proto::config::Observe;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Handles one request to its response (a server's, or an error page).
pub(super) async fn handle(
    mut req: Request<ReqBody>,
    peer: SocketAddr,
    fe: Arc<FrontendRt>,
    mut log: HttpLog,
) -> Response<ProxyBody> {
    // The `http_request` rules, on the counters with this request in them.
    if let Some(status) = denied(&fe, &req, peer) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        let mut r = log.error(status, "Request denied.", ('P', 'R'));
        r.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        return r;
    }
    // Route: the backend, then what picks its server there.
    let Some(be) = route(&fe, &req, peer) else {
        return log.error(
            StatusCode::SERVICE_UNAVAILABLE,
            "No backend serves this request.",
            ('P', 'R'),
        );
    };
    log.backend = Some(be.clone());
    // Persistence: the cookie's server, else the stick table's.
    let stick = stick_key(&be, &req, peer);
    let sticky = persisted(&be, &mut req);
    let (stuck, fresh) = match &stick {
        Some(k) if sticky.is_none() => be.stuck_fresh(k),
        _ => (None, false),
    };
    let pinned = sticky.or(stuck);
    let key = hash_key(&be, &req);
    // Take a slot: at once, or after a wait in the backend's queue.
    let queued = log.clock();
    let slot = take_slot(&be, peer, key, pinned).await;
    log.tw = queued.map(|t| t.elapsed());
    let slot = match slot {
        Ok(s) => s,
        Err((why, state)) => return log.error(StatusCode::SERVICE_UNAVAILABLE, why, state),
    };
    log.server = Some(slot.idx);
    let (tunnel, client_upgrade) = for_server(&mut req, &fe, peer);
    // Connect (or reuse) and send, retrying; the response head.
    let mut x = Exchange {
        be: &be,
        peer,
        key,
        slot,
        tunnel,
    };
    let (resp, sender, waiting, stall) = match exchange(&mut x, req, &mut log).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    // The entry, unless it already names this server and is fresh.
    if let Some(stick) = stick.filter(|_| !(fresh && stuck == Some(x.slot.idx))) {
        be.stick_to(stick, x.slot.idx);
    }
    let server = be.servers[x.slot.idx].state.clone();
    let switched = head_arrived(&be.servers[x.slot.idx], &resp, waiting, &mut log);
    // Upgrade, or the response relayed.
    if let (true, Some(client_upgrade)) = (tunnel && switched, client_upgrade) {
        return super::tunnel::open(&fe, &be, x.slot, client_upgrade, resp, &log);
    }
    relay(&fe, &be, x.slot, sticky, resp, (sender, server, stall), log)
}

/// The response head from `srv` arrived: the wait for it (`Tr`), its status
/// logged and observed (`observe layer7`). Returns whether the server
/// agreed to a tunnel (101, or 2xx to CONNECT).
fn head_arrived(
    srv: &ServerRt,
    resp: &Response<Incoming>,
    waiting: Option<Instant>,
    log: &mut HttpLog,
) -> bool {
    log.tr = waiting.map(|t| t.elapsed());
    log.status = resp.status().as_u16();
    observe(
        srv,
        Observe::Layer7,
        if layer7_ok(log.status) {
            Ok(())
        } else {
            Err("L7STS")
        },
    );
    resp.status() == StatusCode::SWITCHING_PROTOCOLS
        || (req_was_connect(log) && resp.status().is_success())
}
