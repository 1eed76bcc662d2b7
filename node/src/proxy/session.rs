//! One client connection in TCP mode: pick a server (queueing when all are
//! full), connect with retries and redispatch, relay, and log one tcplog line.

use super::backend::{BackendRt, NoSlot, Slot};
use super::frontend::FrontendRt;
use super::relay::{self, End, Side};
use super::stats::Traffic;
use crate::server::AfterFailure;
use raftlb_proto::config::Observe;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// HAProxy's two-letter termination state: who ended the session, and in
/// which phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Termination(char, char);

impl std::fmt::Display for Termination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.0, self.1)
    }
}

/// Most time between two connect attempts to the same server.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Serves one accepted client connection to the end; returns how many
/// bytes it moved each way.
pub async fn serve(client: TcpStream, peer: SocketAddr, fe: Arc<FrontendRt>) -> Traffic {
    let start = Instant::now();
    // A TCP frontend always has its default backend (the config says so).
    let Some(be) = fe.backend.clone() else {
        return Traffic::default();
    };
    let _ = client.set_nodelay(true);

    // `stick_on src`: the server this client sticks to comes first.
    let sticky = be.src_key(peer.ip());
    let (stuck, fresh) = sticky.as_ref().map_or((None, false), |k| be.stuck_fresh(k));
    let (slot, tw) = match take_slot(&be, peer, stuck).await {
        Ok(slot) => (slot, start.elapsed()),
        Err(state) => {
            log(
                &fe,
                &be,
                peer,
                None,
                start,
                Some(start.elapsed()),
                None,
                0,
                state,
            );
            return Traffic::default();
        }
    };
    let connect_start = Instant::now();
    let (slot, server) = match connect(&be, peer, slot).await {
        Ok(x) => x,
        Err((slot, state)) => {
            log(
                &fe,
                &be,
                peer,
                slot.as_ref(),
                start,
                Some(tw),
                None,
                0,
                state,
            );
            return Traffic::default();
        }
    };
    let tc = connect_start.elapsed();
    // The entry, unless it already names this server and is fresh.
    if let Some(key) = sticky.filter(|_| !(fresh && stuck == Some(slot.idx))) {
        be.stick_to(key, slot.idx);
    }
    let tunnel = be.cfg.timeout.tunnel;
    let timeouts = relay::Timeouts {
        client: tunnel.or(fe.cfg.timeout_client),
        server: tunnel.or(be.cfg.timeout.server),
    };
    let out = relay::relay(&client, &server, timeouts).await;
    let state = termination(out.end);
    if matches!(out.end, End::Timeout(_) | End::Error(_)) {
        // Abort both sides at once, as HAProxy does on a timeout or an error.
        for s in [&client, &server] {
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
    }
    log(
        &fe,
        &be,
        peer,
        Some(&slot),
        start,
        Some(tw),
        Some(tc),
        out.bytes_down,
        state,
    );
    Traffic {
        bytes_in: out.bytes_up,
        bytes_out: out.bytes_down,
    }
}

/// How a relay that ended so is logged (HAProxy's termination state).
fn termination(end: End) -> Termination {
    match end {
        End::Closed => Termination('-', '-'),
        End::Timeout(Side::Client) => Termination('c', 'D'),
        End::Timeout(Side::Server) => Termination('s', 'D'),
        End::Error(Side::Client) => Termination('C', 'D'),
        End::Error(Side::Server) => Termination('S', 'D'),
    }
}

/// Waits for a server slot (on the server `stuck`, the one the client
/// sticks to, while it may take the client, else as the balancer orders
/// them); the termination state when none comes.
async fn take_slot(
    be: &BackendRt,
    peer: SocketAddr,
    stuck: Option<usize>,
) -> Result<Slot, Termination> {
    let keeps = |be: &BackendRt, idx: usize| be.servers[idx].state.keeps_sticky();
    be.take_slot(|be| match stuck.filter(|idx| keeps(be, *idx)) {
        Some(idx) => vec![idx],
        None => be.order(peer.ip()),
    })
    .await
    .map_err(|why| match why {
        // No server is up: close at once.
        NoSlot::NoServer => Termination('S', 'C'),
        NoSlot::NoServerQueued => Termination('S', 'Q'),
        NoSlot::QueueTimeout => Termination('s', 'Q'),
    })
}

/// Connects to the slot's server; on failure retries `retries` times, the
/// last on another server when `redispatch` is set.
async fn connect(
    be: &BackendRt,
    peer: SocketAddr,
    mut slot: Slot,
) -> Result<(Slot, TcpStream), (Option<Slot>, Termination)> {
    let mut attempts_left = be.cfg.retries;
    loop {
        let srv = &be.servers[slot.idx];
        let attempt = TcpStream::connect(srv.cfg.address);
        let res = match be.cfg.timeout.connect {
            Some(limit) => tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
            None => attempt.await,
        };
        let observing = srv.cfg.observe == Some(Observe::Layer4) && srv.cfg.check.is_some();
        match res {
            Ok(stream) => {
                if observing {
                    slot.server.observed_ok();
                }
                let _ = stream.set_nodelay(true);
                return Ok((slot, stream));
            }
            Err(e) => {
                let timed_out = e.kind() == std::io::ErrorKind::TimedOut;
                if observing {
                    let reason = if timed_out { "L4TOUT" } else { "L4CON" };
                    let t =
                        slot.server
                            .observed_error(srv.cfg.on_error, srv.cfg.error_limit, reason);
                    crate::server::log_transition(&slot.server, t, reason, "observed traffic");
                }
                if attempts_left == 0 {
                    slot.server.failures.connect_failed(AfterFailure::GiveUp);
                    let who = if timed_out { 's' } else { 'S' };
                    return Err((Some(slot), Termination(who, 'C')));
                }
                attempts_left -= 1;
                if attempts_left == 0 && be.cfg.redispatch {
                    let order: Vec<usize> = be
                        .order(peer.ip())
                        .into_iter()
                        .filter(|&i| i != slot.idx)
                        .collect();
                    if let Some(other) = be.try_take(&order) {
                        slot.server
                            .failures
                            .connect_failed(AfterFailure::Redispatch);
                        slot = other;
                        continue;
                    }
                }
                slot.server.failures.connect_failed(AfterFailure::Retry);
                if !timed_out {
                    // HAProxy's turn-around timer: do not hammer a server that
                    // refuses (it may be restarting) before retrying it.
                    let pause = be
                        .cfg
                        .timeout
                        .connect
                        .map_or(RETRY_PAUSE, |c| c.min(RETRY_PAUSE));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn log(
    fe: &FrontendRt,
    be: &BackendRt,
    peer: SocketAddr,
    slot: Option<&Slot>,
    start: Instant,
    tw: Option<Duration>,
    tc: Option<Duration>,
    bytes: u64,
    state: Termination,
) {
    if !tracing::enabled!(target: "raftlb::tcplog", tracing::Level::INFO) {
        return;
    }
    let ms = |d: Option<Duration>| d.map_or(-1, |d| d.as_millis() as i64);
    let server = slot.map_or("<NOSRV>", |s| be.servers[s.idx].cfg.name.as_str());
    tracing::info!(
        target: "raftlb::tcplog",
        client = %peer,
        frontend = %fe.cfg.name,
        backend = %be.cfg.name,
        server,
        tw = ms(tw),
        tc = ms(tc),
        tt = start.elapsed().as_millis() as u64,
        bytes,
        termination = %state,
        "{peer} {} {}/{server} {}/{}/{} {bytes} {state}",
        fe.cfg.name,
        be.cfg.name,
        ms(tw),
        ms(tc),
        start.elapsed().as_millis(),
    );
}
