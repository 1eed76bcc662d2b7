//! One server's live state, shared by the sessions that use it and its health
//! checker: connection count, health (active and passive, through the
//! rise/fall [`counter`]), operator state, slow start, its idle upstream
//! HTTP connections ([`pool`]), and the log of its state changes. It
//! outlives reloads that keep the server's address. It sits below both the
//! proxy and the health checkers, which import it; it imports nothing else
//! of the crate.

pub mod counter;
pub mod pool;

use counter::{ErrorCounter, HealthCounter, Transition};
use raftlb_proto::config::{OnError, Server};
use raftlb_proto::state::{OperatorState, OperatorView};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Live state of one server.
#[derive(Debug)]
pub struct ServerState {
    /// `backend/server`, for logs.
    pub id: String,
    up: AtomicBool,
    /// The operator's state (ready, drain, maint), replicated.
    admin: AtomicU8,
    /// The operator's weight; `NO_OVERRIDE` when the config's applies.
    weight_override: AtomicU32,
    cur: AtomicU32,
    total: AtomicU64,
    health: Mutex<Health>,
    /// Consecutive errors on real traffic (`observe`).
    errors: ErrorCounter,
    /// Wakes the health checker early (a passive error asked for `fastinter`).
    pub recheck: Notify,
    /// Wakes connections waiting in the backend's queue when this server
    /// frees a slot or comes up.
    pub(crate) slot_freed: std::sync::Arc<Notify>,
    /// Idle upstream connections (HTTP mode).
    pub http_pool: pool::Pool,
    /// Connects that failed, retries and redispatches (counted only when
    /// they happen: nothing on a connection that goes well).
    pub failures: Failures,
}

/// A server's failed connects, as HAProxy's stats count them (`econ`,
/// `wretr`, `wredis`).
#[derive(Debug, Default)]
pub struct Failures {
    /// Connects to it that failed or timed out.
    pub connect_errors: AtomicU64,
    /// Connects tried again after one to it failed.
    pub retries: AtomicU64,
    /// Times a connection that failed on it went on to another server.
    pub redispatches: AtomicU64,
}

impl Failures {
    /// A connect failed; `then` is what comes of it.
    pub fn connect_failed(&self, then: AfterFailure) {
        self.connect_errors.fetch_add(1, Ordering::Relaxed);
        match then {
            AfterFailure::Retry => self.retries.fetch_add(1, Ordering::Relaxed),
            AfterFailure::Redispatch => self.redispatches.fetch_add(1, Ordering::Relaxed),
            AfterFailure::GiveUp => 0,
        };
    }
}

/// What follows a failed connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Another try on the same server.
    Retry,
    /// The next try on another server.
    Redispatch,
    /// No more tries.
    GiveUp,
}

#[derive(Debug)]
struct Health {
    counter: HealthCounter,
    /// When the server last came up after being down (slow start runs from here).
    up_since: Option<Instant>,
    /// A passive error asked for checks at `fastinter`.
    fast: bool,
    /// Why the state last changed.
    reason: String,
    /// Active checks that failed (HAProxy's `chkfail`).
    check_failures: u64,
    /// Times the server went from UP to DOWN (HAProxy's `chkdown`).
    up_down: u64,
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
    /// The operator's state: `ready`, `drain` or `maint`.
    pub admin: &'static str,
    /// The operator's weight, when it overrides the config's.
    pub weight_override: Option<u32>,
    /// Active checks that failed.
    pub check_failures: u64,
    /// Times it went from UP to DOWN.
    pub check_up_down: u64,
    /// Connects that failed.
    pub connect_errors: u64,
    /// Retries after a failed connect.
    pub retries: u64,
    /// Redispatches after a failed connect.
    pub redispatches: u64,
}

const NO_OVERRIDE: u32 = u32::MAX;

impl ServerState {
    /// New state for `cfg`, up (as HAProxy starts servers).
    pub fn new(backend: &str, cfg: &Server, slot_freed: std::sync::Arc<Notify>) -> Self {
        let (rise, fall) = cfg.check.as_ref().map_or((2, 3), |c| (c.rise, c.fall));
        ServerState {
            id: format!("{backend}/{}", cfg.name),
            up: AtomicBool::new(true),
            admin: AtomicU8::new(0),
            weight_override: AtomicU32::new(NO_OVERRIDE),
            cur: AtomicU32::new(0),
            total: AtomicU64::new(0),
            health: Mutex::new(Health {
                counter: HealthCounter::new_up(rise, fall),
                up_since: None,
                fast: false,
                reason: "start".to_string(),
                check_failures: 0,
                up_down: 0,
            }),
            errors: ErrorCounter::new(cfg.error_limit),
            recheck: Notify::new(),
            slot_freed,
            http_pool: Default::default(),
            failures: Failures::default(),
        }
    }

    /// Starts down instead of up: the cluster remembers that this node saw
    /// the server down (HAProxy's server-state file, replicated). `rise`
    /// good checks bring it up.
    pub fn start_down(&self, reason: &str) {
        let mut h = self.health.lock().expect("health lock");
        h.counter = HealthCounter::new_down(1, 1).with_params_of(&h.counter);
        h.reason = format!("{reason} (remembered by the cluster)");
        self.up.store(false, Ordering::Relaxed);
    }

    /// Applies new settings after a reload, keeping the up/down state.
    pub fn reconfigure(&self, cfg: &Server) {
        let (rise, fall) = cfg.check.as_ref().map_or((2, 3), |c| (c.rise, c.fall));
        let mut h = self.health.lock().expect("health lock");
        h.counter = h.counter.with_params(rise, fall);
        self.errors.set_limit(cfg.error_limit);
    }

    /// Whether the server's health is up (the operator's state aside).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether the balancer may give it new connections: healthy and ready.
    pub fn takes_new(&self) -> bool {
        self.is_up() && self.admin_state() == OperatorState::Ready
    }

    /// Whether a client that sticks to it (by a cookie, by a stick table)
    /// may still go to it: healthy and not in maintenance; a drained server
    /// keeps its sticky clients, as in HAProxy.
    pub fn keeps_sticky(&self) -> bool {
        self.is_up() && self.admin_state() != OperatorState::Maint
    }

    /// The operator's state.
    pub fn admin_state(&self) -> OperatorState {
        match self.admin.load(Ordering::Relaxed) {
            0 => OperatorState::Ready,
            1 => OperatorState::Drain,
            _ => OperatorState::Maint,
        }
    }

    /// Sets the operator's state and weight (from the replicated state).
    /// Returns whether anything changed.
    pub fn set_operator(&self, view: OperatorView) -> bool {
        let code = match view.state {
            OperatorState::Ready => 0,
            OperatorState::Drain => 1,
            OperatorState::Maint => 2,
        };
        let w = view.weight.unwrap_or(NO_OVERRIDE);
        let a = self.admin.swap(code, Ordering::Relaxed);
        let b = self.weight_override.swap(w, Ordering::Relaxed);
        let changed = a != code || b != w;
        if changed {
            tracing::warn!(
                target: "raftlb::health",
                server = %self.id, admin = view.state.as_str(), weight = ?view.weight,
                "Server {} is now {} (weight {})", self.id, view.state.as_str(),
                view.weight.map_or("from config".to_string(), |w| w.to_string())
            );
            // A server back in service may take queued connections.
            self.slot_freed.notify_waiters();
        }
        changed
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
        let weight = match self.weight_override.load(Ordering::Relaxed) {
            NO_OVERRIDE => cfg.weight,
            w => w,
        };
        if weight == 0 {
            return 0;
        }
        let Some(slowstart) = cfg.slowstart else {
            return weight;
        };
        let since = self.health.lock().expect("health lock").up_since;
        ramp(
            weight,
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
            h.check_failures += 1;
            h.counter.failure()
        };
        self.settle(&mut h, t, reason);
        t
    }

    /// A connection to this server succeeded (`observe layer4`).
    pub fn observed_ok(&self) {
        self.errors.success();
    }

    /// A connection to this server failed (`observe layer4`). Returns the
    /// transition the `on_error` action caused, if the limit was reached.
    pub fn observed_error(&self, action: OnError, limit: u32, reason: &str) -> Transition {
        if !self.errors.error() {
            return Transition::None;
        }
        let mut h = self.health.lock().expect("health lock");
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
                h.up_down += 1;
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
            admin: self.admin_state().as_str(),
            weight_override: match self.weight_override.load(Ordering::Relaxed) {
                NO_OVERRIDE => None,
                w => Some(w),
            },
            check_failures: h.check_failures,
            check_up_down: h.up_down,
            connect_errors: self.failures.connect_errors.load(Ordering::Relaxed),
            retries: self.failures.retries.load(Ordering::Relaxed),
            redispatches: self.failures.redispatches.load(Ordering::Relaxed),
        }
    }
}

/// Logs a state change with its reason, as HAProxy's "Server ... is DOWN" lines.
pub fn log_transition(server: &ServerState, t: Transition, reason: &str, source: &str) {
    match t {
        Transition::WentUp => tracing::warn!(
            target: "raftlb::health",
            server = %server.id, state = "UP", reason, source,
            "Server {} is UP, reason: {reason} ({source})", server.id
        ),
        Transition::WentDown => tracing::warn!(
            target: "raftlb::health",
            server = %server.id, state = "DOWN", reason, source,
            "Server {} is DOWN, reason: {reason} ({source})", server.id
        ),
        Transition::None => {}
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
    fn a_success_while_the_health_lock_is_held_still_breaks_a_run_of_errors() {
        // error_limit 2: an error, a success, an error is no run of two,
        // even when the success lands while another thread (a checker, the
        // status API, a balancer under slowstart) holds the health lock.
        let doc = r#"
[frontends.fe]
bind = ["127.0.0.1:1"]
default_backend = "be"
[backends.be]
servers = [ { name = "s1", address = "127.0.0.1:2", check = true, observe = "layer4", error_limit = 2 } ]
"#;
        let c = raftlb_proto::config::ClusterConfig::parse(doc, raftlb_proto::Format::Toml)
            .expect("a config");
        let cfg = c.backends["be"].servers[0].clone();
        let s = ServerState::new("be", &cfg, Default::default());
        assert_eq!(
            s.observed_error(OnError::MarkDown, 2, "L4CON"),
            Transition::None
        );
        {
            let _busy = s.health.lock().unwrap();
            s.observed_ok();
        }
        assert_eq!(
            s.observed_error(OnError::MarkDown, 2, "L4CON"),
            Transition::None
        );
        assert!(s.is_up());
        // Two in a row do mark it down.
        assert_eq!(
            s.observed_error(OnError::MarkDown, 2, "L4CON"),
            Transition::WentDown
        );
    }

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
