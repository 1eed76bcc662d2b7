//! An inactivity timer armed lazily, for the bodies and writes that move
//! while a request is in flight: progress costs nothing (no clock, no
//! timer); only a side that waits reads the clock once and arms the timer,
//! and the timer is reset only when a new wait begins.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// Ends a wait that lasts `limit` (`timeout client` or `server`).
pub(super) struct Idle {
    limit: Duration,
    /// When the current wait began (none: it is moving).
    waiting: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Idle {
    pub(super) fn new(limit: Duration) -> Idle {
        Idle {
            limit,
            waiting: None,
            sleep: None,
        }
    }

    /// With a timer that served before (the wait for a response head):
    /// moving a registered timer later costs no new registration.
    pub(super) fn reusing(limit: Duration, sleep: Pin<Box<Sleep>>) -> Idle {
        Idle {
            limit,
            waiting: None,
            sleep: Some(sleep),
        }
    }

    /// Its timer, for the next exchange on the same connection.
    pub(super) fn into_timer(self) -> Option<Pin<Box<Sleep>>> {
        self.sleep
    }

    /// Bytes moved: the wait, if any, is over.
    pub(super) fn progress(&mut self) {
        self.waiting = None;
    }

    /// The owner waits (its I/O is pending): ready once the wait has lasted
    /// `limit` with no progress.
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let since = *self.waiting.get_or_insert_with(Instant::now);
        let at = tokio::time::Instant::from_std(since + self.limit);
        let sleep = match &mut self.sleep {
            Some(s) => {
                if s.deadline() != at {
                    s.as_mut().reset(at);
                }
                s
            }
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        sleep.as_mut().poll(cx)
    }
}
