//! The client connection below hyper: the reader that feeds the
//! [`scan`](super::scan)ner and runs the head timers (`timeout http_request`
//! and `http_keep_alive`, armed lazily), and the count of requests in flight
//! those timers look at.

use super::idle::Idle;
use super::response::{BodyError, ProxyBody};
use super::scan;
use crate::proxy::FrontendRt;
use crate::server::pool::BodyWatch;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// `ConnState::armed` when no timer is armed.
pub(super) const NOT_ARMED: u64 = u64::MAX;

/// What the client connection's timers need to know of its requests.
pub(super) struct ConnState {
    /// Requests whose response is not wholly sent yet.
    pub(super) in_flight: AtomicUsize,
    /// When the last response was wholly sent, in ns after `accepted` (0:
    /// not yet). An atomic: the reader looks at it on every wait.
    pub(super) idle_since: AtomicU64,
    /// When the connection was accepted.
    pub(super) accepted: Instant,
    pub(super) timers: HeadTimers,
    /// The deadline the reader's timer is armed at, in ns after
    /// `accepted` ([`NOT_ARMED`]: none).
    pub(super) armed: AtomicU64,
    /// The reader, when it waits while a response is on its way: woken
    /// when the connection turns idle and its timer would fire too late.
    pub(super) reader: AtomicWaker,
    /// Bytes read from the client so far.
    pub(super) bytes_in: AtomicU64,
    /// Bytes written to the client so far.
    pub(super) bytes_out: AtomicU64,
    /// The connection became a tunnel (an upgrade, a CONNECT): no more
    /// requests, no head timers; the splice's own `timeout tunnel` rules.
    pub(super) tunnel: AtomicBool,
    /// A request body of this client failed (hyper refused its framing);
    /// the connection ends with that request.
    pub(super) body_failed: AtomicBool,
    /// The [`scan::Scanner`] lost track of the framing: the requests after
    /// the current one go unchecked, so the connection ends with it.
    pub(super) framing_lost: AtomicBool,
}

impl BodyWatch for ConnState {
    fn client_failed(&self) {
        self.body_failed.store(true, Ordering::Release);
    }
}

impl ConnState {
    /// A connection of `fe` accepted now: no request yet.
    pub(super) fn new(fe: &FrontendRt) -> ConnState {
        ConnState {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            accepted: Instant::now(),
            timers: HeadTimers {
                request: fe.cfg.timeout_http_request.or(fe.cfg.timeout_client),
                keep_alive: fe.cfg.timeout_http_keep_alive,
            },
            armed: AtomicU64::new(NOT_ARMED),
            reader: AtomicWaker::new(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            tunnel: AtomicBool::new(false),
            body_failed: AtomicBool::new(false),
            framing_lost: AtomicBool::new(false),
        }
    }

    /// `t` in ns after the accept.
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.accepted).as_nanos() as u64
    }
}

/// Counts a request until its response body is gone (sent, or dropped).
pub(super) struct InFlight(pub(super) Arc<ConnState>);

impl Drop for InFlight {
    /// The last response done: the connection is idle from now on, and the
    /// reader must wait no longer than the keep-alive timeout. If its timer
    /// is armed later than that, or not at all, or already fired, the reader
    /// is woken to arm it; otherwise the timer, when it fires, finds the new
    /// deadline.
    fn drop(&mut self) {
        let conn = &self.0;
        if conn.in_flight.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let now = conn.ns(Instant::now()).max(1);
        conn.idle_since.store(now, Ordering::Release);
        if let Some(t) = conn.timers.idle() {
            let armed = conn.armed.load(Ordering::Acquire);
            if armed <= now || armed > now.saturating_add(t.as_nanos() as u64) {
                conn.reader.wake();
            }
        }
    }
}

/// A response body that keeps its request counted until it is done.
pub struct Tracked {
    pub(super) body: ProxyBody,
    pub(super) _guard: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.body).poll_frame(cx);
        // The server's response broke off because the client's body did.
        if matches!(r, Poll::Ready(Some(Err(_)))) && me._guard.0.body_failed.load(Ordering::Acquire)
        {
            me.body.blame_client();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// `timeout http_request` and `http_keep_alive`, as HAProxy applies them:
/// the first request's head must arrive within `request` of the accept; a
/// later one may wait `keep_alive` (default `request`) after the last
/// response, then its head must be whole within `request` of its first
/// byte. Expiry closes the connection (silently, between requests).
pub(super) struct HeadTimers {
    pub(super) request: Option<Duration>,
    pub(super) keep_alive: Option<Duration>,
}

impl HeadTimers {
    /// How long an idle connection may wait for its next request.
    fn idle(&self) -> Option<Duration> {
        self.keep_alive.or(self.request)
    }
}

/// The client connection, with the [`scan::Scanner`] looking at what is
/// read, and the head timers.
pub(super) struct Scanned {
    pub(super) inner: TcpStream,
    pub(super) scanner: scan::Scanner,
    pub(super) conn: Arc<ConnState>,
    /// Armed at `conn.armed`, never later than the deadline.
    pub(super) sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// `timeout client` while a response waits for the client to take it.
    pub(super) write_stall: Option<Idle>,
}

impl Scanned {
    /// When waiting for more bytes must end, if it must.
    fn deadline(&self) -> Option<Instant> {
        let started = self.scanner.head_phase()?;
        let (conn, timers) = (&self.conn, &self.conn.timers);
        if let Some(first_byte) = started {
            return timers.request.map(|t| first_byte + t);
        }
        if conn.in_flight.load(Ordering::Acquire) > 0 {
            return None; // a response is on its way
        }
        match conn.idle_since.load(Ordering::Acquire) {
            0 => timers.request.map(|t| conn.accepted + t),
            ns => timers
                .idle()
                .map(|t| conn.accepted + Duration::from_nanos(ns) + t),
        }
    }

    /// Waits for `deadline` on the armed timer: a timeout once it passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let at = tokio::time::Instant::from_std(deadline);
        let sleep = match &mut self.sleep {
            Some(s) => {
                if s.deadline() > at {
                    s.as_mut().reset(at);
                    self.conn
                        .armed
                        .store(self.conn.ns(deadline), Ordering::Release);
                }
                s
            }
            None => {
                self.conn
                    .armed
                    .store(self.conn.ns(deadline), Ordering::Release);
                self.sleep.insert(Box::pin(tokio::time::sleep_until(at)))
            }
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Fired at an earlier deadline: the real one moved on since.
        if tokio::time::Instant::now() < at {
            sleep.as_mut().reset(at);
            self.conn
                .armed
                .store(self.conn.ns(deadline), Ordering::Release);
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        self.sleep = None;
        self.conn.armed.store(NOT_ARMED, Ordering::Release);
        Poll::Ready(())
    }
}

impl Scanned {
    /// A write that waits for a client that does not read: an error once
    /// it has waited `timeout client` (a tunnel has its own timer).
    fn timed_write(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = &r {
            self.conn.bytes_out.fetch_add(*n as u64, Ordering::Relaxed);
        }
        let Some(w) = self.write_stall.as_mut() else {
            return r;
        };
        if r.is_ready() {
            w.progress();
            return r;
        }
        if !self.conn.tunnel.load(Ordering::Relaxed) && w.poll_expired(cx).is_ready() {
            return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
        r
    }
}

impl tokio::io::AsyncRead for Scanned {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if me.conn.tunnel.load(Ordering::Relaxed) {
            if let Poll::Ready(Ok(())) = &r {
                let n = buf.filled().len() - before;
                me.conn.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            }
            return r;
        }
        match &r {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                me.conn
                    .bytes_in
                    .fetch_add(read.len() as u64, Ordering::Relaxed);
                me.scanner.feed(read);
                if me.scanner.lost() {
                    me.conn.framing_lost.store(true, Ordering::Release);
                }
                r
            }
            Poll::Ready(Err(_)) => r,
            // The timer is armed lazily, as HAProxy's task timers: it stays
            // at an earlier deadline while the real one moves later (each
            // response moves it), and when it fires, the deadline is looked
            // at again. One timer reset per timeout period, not one per
            // request.
            Poll::Pending => match me.deadline() {
                Some(deadline) => match me.poll_deadline(cx, deadline) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::ErrorKind::TimedOut.into())),
                    Poll::Pending => Poll::Pending,
                },
                None => {
                    // Nothing to time while a response is on its way (or a
                    // body comes); its end wakes us if the timer would be
                    // late. A timer that fired meanwhile is dropped.
                    me.conn.reader.register(cx.waker());
                    if me.sleep.as_ref().is_some_and(|s| s.is_elapsed()) {
                        me.sleep = None;
                        me.conn.armed.store(NOT_ARMED, Ordering::Release);
                    }
                    Poll::Pending
                }
            },
        }
    }
}

impl tokio::io::AsyncWrite for Scanned {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write(cx, data);
        me.timed_write(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
        me.timed_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
