//! One server's live state, shared by the sessions that use it and its health
//! checker: connection count, health (active and passive), slow start. It
//! outlives reloads that keep the server's address.

use crate::health::counter::{ErrorCounter, HealthCounter, Transition};
use raftlb_proto::config::{OnError, Server};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Live state of one server.
#[derive(Debug)]
pub struct ServerState {
    /// `backend/server`, for logs.
    pub id: String,
    up: AtomicBool,
    cur: AtomicU32,
    total: AtomicU64,
    health: Mutex<Health>,
    /// Wakes the health checker early (a passive error asked for `fastinter`).
    pub recheck: Notify,
    /// Wakes connections waiting in the backend's queue when this server
    /// frees a slot or comes up.
    pub(crate) slot_freed: std::sync::Arc<Notify>,
}

#[derive(Debug)]
struct Health {
    counter: HealthCounter,
    errors: ErrorCounter,
    /// When the server last came up after being down (slow start runs from here).
    up_since: Option<Instant>,
    /// A passive error asked for checks at `fastinter`.
    fast: bool,
    /// Why the state last changed.
    reason: String,
}

/// A snapshot of a server's state for status output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerStatus {
    /// Whether the server takes new connections.
    pub up: bool,
    /// Connections now.
    pub cur_conns: u32,
    /// Connections ever.
    pub total_conns: u64,
    /// Why the state last changed.
    pub last_change: String,
}

impl ServerState {
    /// New state for `cfg`, up (as HAProxy starts servers).
    pub fn new(backend: &str, cfg: &Server, slot_freed: std::sync::Arc<Notify>) -> Self {
        let (rise, fall) = cfg.check.as_ref().map_or((2, 3), |c| (c.rise, c.fall));
        ServerState {
            id: format!("{backend}/{}", cfg.name),
            up: AtomicBool::new(true),
            cur: AtomicU32::new(0),
            total: AtomicU64::new(0),
            health: Mutex::new(Health {
                counter: HealthCounter::new_up(rise, fall),
                errors: ErrorCounter::new(cfg.error_limit),
                up_since: None,
                fast: false,
                reason: "start".to_string(),
            }),
            recheck: Notify::new(),
            slot_freed,
        }
    }

    /// Applies new settings after a reload, keeping the up/down state.
    pub fn reconfigure(&self, cfg: &Server) {
        let (rise, fall) = cfg.check.as_ref().map_or((2, 3), |c| (c.rise, c.fall));
        let mut h = self.health.lock().expect("health lock");
        h.counter = h.counter.with_params(rise, fall);
        h.errors = ErrorCounter::new(cfg.error_limit);
    }

    /// Whether the server takes new connections.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Connections now.
    pub fn cur_conns(&self) -> u32 {
        self.cur.load(Ordering::Relaxed)
    }

    /// Takes a connection slot if fewer than `maxconn` are in use (0: no limit).
    pub fn try_acquire(&self, maxconn: u32) -> bool {
        let ok = if maxconn == 0 {
            self.cur.fetch_add(1, Ordering::AcqRel);
            true
        } else {
            self.cur
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                    (c < maxconn).then_some(c + 1)
                })
                .is_ok()
        };
        if ok {
            self.total.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Gives a slot back and wakes one queued connection.
    pub fn release(&self) {
        self.cur.fetch_sub(1, Ordering::AcqRel);
        self.slot_freed.notify_one();
    }

    /// The weight to balance with now: the configured one, ramped up during
    /// slow start.
    pub fn effective_weight(&self, cfg: &Server, now: Instant) -> u32 {
        if cfg.weight == 0 {
            return 0;
        }
        let Some(slowstart) = cfg.slowstart else {
            return cfg.weight;
        };
        let since = self.health.lock().expect("health lock").up_since;
        ramp(
            cfg.weight,
            since.map(|t| now.saturating_duration_since(t)),
            slowstart,
        )
    }

    /// The result of an active check. Returns the transition, for the log.
    pub fn check_result(&self, ok: bool, reason: &str) -> Transition {
        let mut h = self.health.lock().expect("health lock");
        let t = if ok {
            h.fast = false;
            h.counter.success()
        } else {
            h.counter.failure()
        };
        self.settle(&mut h, t, reason);
        t
    }

    /// A connection to this server succeeded (`observe layer4`).
    pub fn observed_ok(&self) {
        if let Ok(mut h) = self.health.try_lock() {
            h.errors.success();
        }
    }

    /// A connection to this server failed (`observe layer4`). Returns the
    /// transition the `on_error` action caused, if the limit was reached.
    pub fn observed_error(&self, action: OnError, limit: u32, reason: &str) -> Transition {
        let mut h = self.health.lock().expect("health lock");
        if !h.errors.error() {
            return Transition::None;
        }
        h.fast = true;
        let t = h.counter.on_observed_errors(action);
        let why = format!("{limit} consecutive errors observed ({reason}), on_error {action:?}");
        self.settle(&mut h, t, &why);
        drop(h);
        self.recheck.notify_one();
        t
    }

    fn settle(&self, h: &mut Health, t: Transition, reason: &str) {
        match t {
            Transition::WentUp => {
                h.up_since = Some(Instant::now());
                h.reason = reason.to_string();
                self.up.store(true, Ordering::Relaxed);
                self.slot_freed.notify_waiters();
            }
            Transition::WentDown => {
                h.reason = reason.to_string();
                self.up.store(false, Ordering::Relaxed);
                self.slot_freed.notify_waiters();
            }
            Transition::None => {}
        }
    }

    /// How long until the next check, from the current state.
    pub fn next_check_in(
        &self,
        inter: Duration,
        fastinter: Duration,
        downinter: Duration,
    ) -> Duration {
        let h = self.health.lock().expect("health lock");
        if h.fast || h.counter.is_transitioning() {
            fastinter
        } else if h.counter.is_fully_down() {
            downinter
        } else {
            inter
        }
    }

    /// Status for the admin API.
    pub fn status(&self) -> ServerStatus {
        let h = self.health.lock().expect("health lock");
        ServerStatus {
            up: self.is_up(),
            cur_conns: self.cur_conns(),
            total_conns: self.total.load(Ordering::Relaxed),
            last_change: h.reason.clone(),
        }
    }
}

/// Slow start: the weight grows linearly from 1 to `weight` over `slowstart`
/// after the server came up (never at process start: `since` is `None`).
pub fn ramp(weight: u32, since: Option<Duration>, slowstart: Duration) -> u32 {
    match since {
        Some(elapsed) if elapsed < slowstart => {
            let w = (weight as u128 * elapsed.as_millis()).div_ceil(slowstart.as_millis().max(1));
            (w as u32).clamp(1, weight)
        }
        _ => weight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowstart_ramps_linearly() {
        let ss = Duration::from_secs(10);
        assert_eq!(ramp(100, None, ss), 100);
        assert_eq!(ramp(100, Some(Duration::ZERO), ss), 1);
        assert_eq!(ramp(100, Some(Duration::from_secs(5)), ss), 50);
        assert_eq!(ramp(100, Some(Duration::from_secs(10)), ss), 100);
        assert_eq!(ramp(3, Some(Duration::from_millis(1)), ss), 1);
    }
}
