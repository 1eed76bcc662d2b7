//! A server's idle upstream connections (HTTP mode), kept with its live
//! state across reloads, and the request body those connections carry.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Idle upstream connections kept per server: enough for the concurrency
/// of a busy server (fewer made the proxy close and reopen connections at
/// each dip in load).
const POOL_MAX: usize = 1024;

/// An idle upstream connection older than this is closed, not reused (as
/// HAProxy's `pool-purge-delay`; below common server keep-alive timeouts).
const POOL_IDLE: Duration = Duration::from_secs(5);

/// A server's idle upstream connections (kept across reloads with its
/// live state), oldest first.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<(SendRequest<ReqBody>, Instant)>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.idle.lock().map_or(0, |v| v.len());
        write!(f, "Pool({n} idle)")
    }
}

impl Pool {
    /// The most recently used idle connection (the likeliest still open).
    pub fn take(&self) -> Option<SendRequest<ReqBody>> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((s, since)) = idle.pop() {
            if now.duration_since(since) < POOL_IDLE && !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    pub fn put(&self, s: SendRequest<ReqBody>) {
        if s.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Oldest first: the expired ones are a prefix.
        let expired = idle.partition_point(|(_, since)| now.duration_since(*since) >= POOL_IDLE);
        idle.drain(..expired);
        if idle.len() < POOL_MAX {
            idle.push((s, now));
        }
    }

    /// Idle connections now.
    pub fn idle(&self) -> usize {
        self.idle.lock().map_or(0, |v| v.len())
    }
}

/// Told when a client's request body fails on its way (hyper refused its
/// framing): whoever ends the exchange then knows the client is to blame.
pub trait BodyWatch: Send + Sync {
    /// The client's body failed.
    fn client_failed(&self);
}

/// A request body on its way to a server: its first frame (read before a
/// server was chosen, to refuse a malformed body before anything reaches
/// one), then the rest as it comes; a failure of the rest is told to
/// `watch`.
pub struct ReqBody {
    first: Option<Frame<Bytes>>,
    rest: Incoming,
    watch: Arc<dyn BodyWatch>,
}

impl ReqBody {
    /// The body whose `first` frame was read already; `rest` follows.
    pub fn new(first: Option<Frame<Bytes>>, rest: Incoming, watch: Arc<dyn BodyWatch>) -> ReqBody {
        ReqBody { first, rest, watch }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let me = self.get_mut();
        if let Some(f) = me.first.take() {
            return Poll::Ready(Some(Ok(f)));
        }
        let r = Pin::new(&mut me.rest).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &r {
            me.watch.client_failed();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let n = self
            .first
            .as_ref()
            .and_then(|f| f.data_ref())
            .map_or(0, |d| d.len() as u64);
        // The upper bound first: `set_lower` asserts lower <= upper.
        let mut h = SizeHint::new();
        if let Some(u) = rest.upper() {
            h.set_upper(u + n);
        }
        h.set_lower(rest.lower() + n);
        h
    }
}
