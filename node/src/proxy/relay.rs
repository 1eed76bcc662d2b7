//! The L4 relay: moves bytes both ways between client and server with
//! half-close and inactivity timeouts. Buffers are allocated only while data
//! is in flight: bytes are read into a per-thread scratch buffer and written
//! straight on; only what the peer cannot take at once is kept, in a buffer
//! freed as soon as it drains. An idle connection costs no buffer at all.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::io::Read;
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

const SCRATCH: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// Which side of the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client.
    Client,
    /// The server.
    Server,
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both directions finished with a FIN.
    Closed,
    /// A side was inactive for its timeout.
    Timeout(Side),
    /// A side failed (reset, broken pipe).
    Error(Side),
}

/// Totals of one relay.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// How it ended.
    pub end: End,
    /// Bytes from the client to the server.
    pub bytes_up: u64,
    /// Bytes from the server to the client.
    pub bytes_down: u64,
}

/// Inactivity limits for each side (`None`: no limit).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// No byte read from or written to the client for this long ends the relay.
    pub client: Option<Duration>,
    /// The same for the server.
    pub server: Option<Duration>,
}

struct Pending {
    data: Box<[u8]>,
    pos: usize,
}

#[derive(Default)]
struct Dir {
    pending: Option<Pending>,
    eof: bool,
    done: bool,
    bytes: u64,
}

enum Step {
    Done,
    Failed(Side),
}

/// Copies one direction as far as it can go now. `Ready` when the direction
/// is finished (the source's FIN passed on) or failed.
fn poll_dir(
    cx: &mut Context<'_>,
    src: &TcpStream,
    dst: &TcpStream,
    d: &mut Dir,
    src_side: Side,
    active: &mut [bool; 2],
) -> Poll<Step> {
    let dst_side = match src_side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    };
    loop {
        if let Some(p) = &mut d.pending {
            if let Err(_e) = ready!(dst.poll_write_ready(cx)) {
                return Poll::Ready(Step::Failed(dst_side));
            }
            match dst.try_write(&p.data[p.pos..]) {
                Ok(n) => {
                    active[dst_side as usize] = true;
                    p.pos += n;
                    if p.pos == p.data.len() {
                        d.pending = None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(Step::Failed(dst_side)),
            }
            continue;
        }
        if d.eof {
            if !d.done {
                d.done = true;
                // Pass the FIN on; the other direction keeps flowing.
                let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
            }
            return Poll::Ready(Step::Done);
        }
        if let Err(_e) = ready!(src.poll_read_ready(cx)) {
            return Poll::Ready(Step::Failed(src_side));
        }
        let step = SCRATCH_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            match read_drained(src, &mut buf) {
                Ok(0) => {
                    d.eof = true;
                    None
                }
                Ok(n) => {
                    active[src_side as usize] = true;
                    d.bytes += n as u64;
                    let sent = match dst.try_write(&buf[..n]) {
                        Ok(m) => {
                            active[dst_side as usize] = true;
                            m
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                        Err(_) => return Some(Step::Failed(dst_side)),
                    };
                    if sent < n {
                        d.pending = Some(Pending {
                            data: buf[sent..n].into(),
                            pos: 0,
                        });
                    }
                    None
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(_) => Some(Step::Failed(src_side)),
            }
        });
        if let Some(step) = step {
            return Poll::Ready(step);
        }
    }
}

/// Reads what `src` has. A read shorter than the buffer means the socket is
/// drained (HAProxy relies on the same), so readiness is cleared at once
/// instead of spending one more `recv` just to hear `EAGAIN`. The readiness
/// that is cleared is the one observed before the read, so an event that
/// arrives meanwhile is not lost.
fn read_drained(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = None;
    let res = src.try_io(Interest::READABLE, || {
        let n = (&*socket2::SockRef::from(src)).read(buf)?;
        got = Some(n);
        if n > 0 && n < buf.len() {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match (res, got) {
        (Ok(n), _) => Ok(n),
        (Err(e), Some(n)) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
        (Err(e), _) => Err(e),
    }
}

/// Which sides the relay waits on: to read from one (until its FIN) or to
/// write to it (bytes it has not taken). A side's timer runs only then: a
/// client that half-closed and waits for a slow server is not idle.
fn waits(up: &Dir, down: &Dir) -> [bool; 2] {
    [
        !up.eof || down.pending.is_some(),
        !down.eof || up.pending.is_some(),
    ]
}

/// Each side's inactivity timer, on one sleep re-armed only when it fires.
struct Timers {
    limits: [Option<Duration>; 2],
    last: [Instant; 2],
    waited: [bool; 2],
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Timers {
    fn new(timeouts: Timeouts) -> Timers {
        let now = Instant::now();
        let mut t = Timers {
            limits: [timeouts.client, timeouts.server],
            last: [now, now],
            waited: [true, true],
            sleep: None,
        };
        t.sleep = t
            .deadline([true, true])
            .map(|d| Box::pin(tokio::time::sleep_until(d)));
        t
    }

    fn deadline(&self, waits: [bool; 2]) -> Option<Instant> {
        (0..2)
            .filter(|i| waits[*i])
            .filter_map(|i| self.limits[i].map(|d| self.last[i] + d))
            .min()
    }

    /// Bytes moved on the `active` sides; a side the relay starts waiting
    /// on again (bytes for a client that had half-closed) gets its whole
    /// timeout from now.
    fn note(&mut self, active: [bool; 2], waits: [bool; 2]) {
        if active[0] || active[1] || waits != self.waited {
            let now = Instant::now();
            for i in 0..2 {
                if active[i] || (waits[i] && !self.waited[i]) {
                    self.last[i] = now;
                }
            }
            self.waited = waits;
        }
    }

    /// The side idle past its timeout, if any. Activity only moved the
    /// deadline: the timer finds it when it fires.
    fn poll_expired(&mut self, cx: &mut Context<'_>, waits: [bool; 2]) -> Option<Side> {
        while self.sleep.as_mut()?.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            for (i, side) in [Side::Client, Side::Server].into_iter().enumerate() {
                if waits[i] && self.limits[i].is_some_and(|d| now >= self.last[i] + d) {
                    return Some(side);
                }
            }
            let next = self.deadline(waits)?;
            self.sleep.as_mut()?.as_mut().reset(next);
        }
        None
    }
}

/// Relays until both directions are closed, a side fails, or a side is idle
/// past its timeout.
pub async fn relay(client: &TcpStream, server: &TcpStream, timeouts: Timeouts) -> Outcome {
    let mut up = Dir::default();
    let mut down = Dir::default();
    let mut timers = Timers::new(timeouts);
    let end = poll_fn(|cx| {
        let mut active = [false; 2];
        let mut failed = None;
        if !up.done {
            if let Poll::Ready(Step::Failed(s)) =
                poll_dir(cx, client, server, &mut up, Side::Client, &mut active)
            {
                failed = Some(s);
            }
        }
        if failed.is_none() && !down.done {
            if let Poll::Ready(Step::Failed(s)) =
                poll_dir(cx, server, client, &mut down, Side::Server, &mut active)
            {
                failed = Some(s);
            }
        }
        if let Some(side) = failed {
            return Poll::Ready(End::Error(side));
        }
        if up.done && down.done {
            return Poll::Ready(End::Closed);
        }
        let waits = waits(&up, &down);
        timers.note(active, waits);
        match timers.poll_expired(cx, waits) {
            Some(side) => Poll::Ready(End::Timeout(side)),
            None => Poll::Pending,
        }
    })
    .await;

    Outcome {
        end,
        bytes_up: up.bytes,
        bytes_down: down.bytes,
    }
}
