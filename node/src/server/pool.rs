//! A server's idle upstream connections (HTTP mode), kept with its live
//! state across reloads, and the request body those connections carry.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Idle upstream connections kept per server and thread: enough for the concurrency
/// of a busy server (fewer made the proxy close and reopen connections at
/// each dip in load).
const POOL_MAX: usize = 1024;

/// An idle upstream connection older than this is closed, not reused (as
/// HAProxy's `pool-purge-delay`): well below common server keep-alive
/// timeouts (Node.js's default is 5 s, Apache's 5 s, nginx's 75 s), so the
/// proxy does not send a request on a connection the server is closing.
pub const POOL_IDLE: Duration = Duration::from_secs(2);

/// How long a connection may stay idle when its server announced
/// `Keep-Alive: timeout=N` (seconds): half of that, at most [`POOL_IDLE`].
pub fn idle_limit(keep_alive: Option<&[u8]>) -> Duration {
    let announced = keep_alive.and_then(|v| {
        v.split(|b| *b == b',')
            .filter_map(|p| {
                let p = std::str::from_utf8(p).ok()?.trim();
                let (k, n) = p.split_once('=')?;
                if !k.trim().eq_ignore_ascii_case("timeout") {
                    return None;
                }
                n.trim().parse::<u64>().ok()
            })
            .next()
    });
    match announced {
        Some(n) => POOL_IDLE.min(Duration::from_millis(n.saturating_mul(500))),
        None => POOL_IDLE,
    }
}

/// A server's idle upstream connections (kept across reloads with its
/// live state), oldest first, each with the instant it may no longer be
/// reused: one list per thread slot (see [`crate::workers`]), so that a
/// worker reuses only the connections it opened, whose I/O its own runtime
/// drives.
pub struct Pool {
    idle: Box<[Mutex<Idle>]>,
}

type Idle = Vec<(Pooled, Instant)>;

/// An idle connection, with the timer its last exchange armed (`timeout
/// server`), if any: the next exchange on it moves that timer instead of
/// registering one of its own (one allocation and a timer-wheel insertion
/// and removal saved per request). A worker's pool holds only what its own
/// runtime drives, timers included.
pub struct Pooled {
    pub conn: SendRequest<ReqBody>,
    pub timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            idle: (0..crate::workers::slots())
                .map(|_| Mutex::default())
                .collect(),
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} idle)", self.idle())
    }
}

impl Pool {
    /// This thread's list.
    fn mine(&self) -> std::sync::MutexGuard<'_, Idle> {
        let slot = &self.idle[crate::workers::slot() % self.idle.len()];
        slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection (the likeliest still open).
    pub fn take(&self) -> Option<Pooled> {
        let now = Instant::now();
        let mut idle = self.mine();
        while let Some((s, until)) = idle.pop() {
            if now < until && !s.conn.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// Keeps `s` for reuse during `limit` at most (see [`idle_limit`]).
    pub fn put(&self, s: Pooled, limit: Duration) {
        if s.conn.is_closed() || limit.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.mine();
        // Oldest first: the expired ones are (nearly always: a server's
        // limit seldom changes) a prefix; `take` skips any other.
        let expired = idle.partition_point(|(_, until)| *until <= now);
        idle.drain(..expired);
        if idle.len() < POOL_MAX {
            idle.push((s, now + limit));
        }
    }

    /// Idle connections now, on every thread.
    pub fn idle(&self) -> usize {
        self.idle
            .iter()
            .map(|m| m.lock().map_or(0, |v| v.len()))
            .sum()
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
    /// None: no body (a request sent again, whose body was empty).
    rest: Option<Incoming>,
    /// When the body last moved, if there is one.
    upload: Option<Arc<Upload>>,
    /// Told if the client's body fails (none: no body).
    watch: Option<Arc<dyn BodyWatch>>,
}

/// When a request body last moved toward its server: `timeout server`
/// runs from then (a long upload that moves is not a silent server).
#[derive(Debug)]
pub struct Upload {
    since: Instant,
    /// ns after `since`.
    last: AtomicU64,
}

impl Upload {
    fn touch(&self) {
        let ns = self.since.elapsed().as_nanos() as u64;
        self.last.store(ns, Ordering::Relaxed);
    }

    /// When the body last moved (when it was made, before that).
    pub fn last(&self) -> Instant {
        self.since + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

impl ReqBody {
    /// The body whose `first` frame was read already; `rest` follows.
    pub fn new(first: Option<Frame<Bytes>>, rest: Incoming, watch: Arc<dyn BodyWatch>) -> ReqBody {
        let upload = (first.is_some() || !rest.is_end_stream()).then(|| {
            Arc::new(Upload {
                since: Instant::now(),
                last: AtomicU64::new(0),
            })
        });
        ReqBody {
            first,
            rest: Some(rest),
            upload,
            watch: Some(watch),
        }
    }

    /// When the body last moved, if there is a body.
    pub fn upload(&self) -> Option<Arc<Upload>> {
        self.upload.clone()
    }

    /// No body at all.
    pub fn empty() -> ReqBody {
        ReqBody {
            first: None,
            rest: None,
            upload: None,
            watch: None,
        }
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
        let r = match (me.first.take(), &mut me.rest) {
            (Some(f), _) => Poll::Ready(Some(Ok(f))),
            (None, Some(rest)) => Pin::new(rest).poll_frame(cx),
            (None, None) => Poll::Ready(None),
        };
        if let (Poll::Ready(_), Some(u)) = (&r, &me.upload) {
            u.touch();
        }
        if let (Poll::Ready(Some(Err(_))), Some(w)) = (&r, &me.watch) {
            w.client_failed();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |r| r.size_hint());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_limit_is_half_the_servers_keep_alive_timeout_at_most_two_seconds() {
        let ms = Duration::from_millis;
        assert_eq!(idle_limit(None), POOL_IDLE);
        assert_eq!(idle_limit(Some(b"timeout=5, max=1000")), POOL_IDLE);
        assert_eq!(idle_limit(Some(b"max=10, Timeout = 1")), ms(500));
        assert_eq!(idle_limit(Some(b"timeout=0")), ms(0));
        assert_eq!(idle_limit(Some(b"timeout=soon")), POOL_IDLE);
        assert_eq!(idle_limit(Some(b"\xff")), POOL_IDLE);
    }
}
