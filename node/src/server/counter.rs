//! Rise/fall accounting of health checks and passive error counting, as pure,
//! clock-free types: HAProxy's health counter, state by state.

use raftlb_proto::config::OnError;
use std::sync::atomic::{AtomicU32, Ordering};

/// A change of a server's state caused by one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The server stays as it was.
    None,
    /// The server just went up.
    WentUp,
    /// The server just went down.
    WentDown,
}

/// HAProxy's health counter: `health` runs from 0 (down) to `rise + fall - 1`
/// (fully up); the server is up while `health >= rise`. A success from down
/// climbs one step; reaching `rise` jumps to fully up. A failure from up steps
/// down; reaching `rise` from above drops to 0 (down). Hence `fall`
/// consecutive failures take an up server down and `rise` consecutive
/// successes bring a down server up, and any opposite result resets the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCounter {
    health: u32,
    rise: u32,
    fall: u32,
}

impl HealthCounter {
    /// A server that starts up (HAProxy's default at start-up).
    pub fn new_up(rise: u32, fall: u32) -> Self {
        let (rise, fall) = (rise.max(1), fall.max(1));
        HealthCounter {
            health: rise + fall - 1,
            rise,
            fall,
        }
    }

    /// A server that starts down.
    pub fn new_down(rise: u32, fall: u32) -> Self {
        HealthCounter {
            health: 0,
            ..Self::new_up(rise, fall)
        }
    }

    /// The same state under new `rise`/`fall` settings (after a reload).
    pub fn with_params(self, rise: u32, fall: u32) -> Self {
        if self.is_up() {
            Self::new_up(rise, fall)
        } else {
            Self::new_down(rise, fall)
        }
    }

    /// This state (up or down) under `other`'s `rise`/`fall`.
    pub fn with_params_of(self, other: &HealthCounter) -> Self {
        self.with_params(other.rise, other.fall)
    }

    fn max(&self) -> u32 {
        self.rise + self.fall - 1
    }

    /// Whether the server is up.
    pub fn is_up(&self) -> bool {
        self.health >= self.rise
    }

    /// Between fully up and fully down: checks run at `fastinter`.
    pub fn is_transitioning(&self) -> bool {
        self.health != 0 && self.health != self.max()
    }

    /// Fully down: checks run at `downinter`.
    pub fn is_fully_down(&self) -> bool {
        self.health == 0
    }

    /// A successful check.
    pub fn success(&mut self) -> Transition {
        let was_up = self.is_up();
        if self.health < self.max() {
            self.health += 1;
        }
        if self.health >= self.rise {
            self.health = self.max();
        }
        if !was_up && self.is_up() {
            Transition::WentUp
        } else {
            Transition::None
        }
    }

    /// A failed check.
    pub fn failure(&mut self) -> Transition {
        let was_up = self.is_up();
        if self.health > self.rise {
            self.health -= 1;
        } else {
            self.health = 0;
        }
        if was_up && !self.is_up() {
            Transition::WentDown
        } else {
            Transition::None
        }
    }

    /// `on_error mark-down`: down at once.
    pub fn mark_down(&mut self) -> Transition {
        let was_up = self.is_up();
        self.health = 0;
        if was_up {
            Transition::WentDown
        } else {
            Transition::None
        }
    }

    /// `on_error sudden-death`: a pre-fatal failure, so that one more failed
    /// check takes the server down.
    pub fn sudden_death(&mut self) -> Transition {
        if self.health > self.rise {
            self.health = self.rise + 1;
        }
        self.failure()
    }

    /// Applies the `on_error` action after `error_limit` observed errors.
    /// Returns the transition and whether checks should switch to `fastinter`.
    pub fn on_observed_errors(&mut self, action: OnError) -> Transition {
        match action {
            OnError::FastInter => Transition::None,
            OnError::FailCheck => self.failure(),
            OnError::SuddenDeath => self.sudden_death(),
            OnError::MarkDown => self.mark_down(),
        }
    }
}

/// Consecutive errors seen on real traffic (`observe`), against
/// `error_limit`: shared by every connection to the server, on any thread,
/// without a lock, so that no success is lost (a lost success would leave
/// a run of errors that was broken counting on, and mark a server down
/// wrongly).
#[derive(Debug)]
pub struct ErrorCounter {
    consecutive: AtomicU32,
    limit: AtomicU32,
}

impl ErrorCounter {
    /// A counter that fires after `limit` consecutive errors.
    pub fn new(limit: u32) -> Self {
        ErrorCounter {
            consecutive: AtomicU32::new(0),
            limit: AtomicU32::new(limit.max(1)),
        }
    }

    /// A new limit (a reload); the run starts over.
    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit.max(1), Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
    }

    /// A success resets the run (a read, and no write when there is no
    /// run: the common case costs no shared write).
    pub fn success(&self) {
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// An error; true when the limit is reached (the run then starts over).
    /// Of errors that reach it together, one gets true.
    pub fn error(&self) -> bool {
        let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        n >= self.limit.load(Ordering::Relaxed)
            && self
                .consecutive
                .compare_exchange(n, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Errors in the current run.
    pub fn consecutive(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: up goes down after `fall` consecutive failures, down
    /// goes up after `rise` consecutive successes.
    fn reference(start_up: bool, rise: u32, fall: u32, seq: &[bool]) -> Vec<bool> {
        let (mut up, mut run) = (start_up, 0);
        seq.iter()
            .map(|&ok| {
                if ok == up {
                    run = 0;
                } else {
                    run += 1;
                    if run >= if up { fall } else { rise } {
                        up = !up;
                        run = 0;
                    }
                }
                up
            })
            .collect()
    }

    #[test]
    fn every_sequence_up_to_ten_checks_matches_the_reference() {
        for rise in 1..=4 {
            for fall in 1..=4 {
                for start_up in [true, false] {
                    for bits in 0u32..(1 << 10) {
                        let seq: Vec<bool> = (0..10).map(|i| bits & (1 << i) != 0).collect();
                        let mut c = if start_up {
                            HealthCounter::new_up(rise, fall)
                        } else {
                            HealthCounter::new_down(rise, fall)
                        };
                        let mut was = c.is_up();
                        let got: Vec<bool> = seq
                            .iter()
                            .map(|&ok| {
                                let t = if ok { c.success() } else { c.failure() };
                                let now = c.is_up();
                                let expected_t = match (was, now) {
                                    (false, true) => Transition::WentUp,
                                    (true, false) => Transition::WentDown,
                                    _ => Transition::None,
                                };
                                assert_eq!(t, expected_t);
                                was = now;
                                now
                            })
                            .collect();
                        assert_eq!(
                            got,
                            reference(start_up, rise, fall, &seq),
                            "rise {rise} fall {fall} start_up {start_up} seq {seq:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn defaults_take_three_failures_and_two_successes() {
        let mut c = HealthCounter::new_up(2, 3);
        assert!(!c.is_transitioning());
        assert_eq!(c.failure(), Transition::None);
        assert!(c.is_transitioning());
        assert_eq!(c.failure(), Transition::None);
        assert_eq!(c.failure(), Transition::WentDown);
        assert!(c.is_fully_down());
        assert_eq!(c.success(), Transition::None);
        assert!(c.is_transitioning());
        assert_eq!(c.success(), Transition::WentUp);
        assert!(!c.is_transitioning());
    }

    #[test]
    fn mark_down_is_immediate() {
        let mut c = HealthCounter::new_up(2, 3);
        assert_eq!(
            c.on_observed_errors(OnError::MarkDown),
            Transition::WentDown
        );
        assert_eq!(c.mark_down(), Transition::None);
        assert!(c.is_fully_down());
    }

    #[test]
    fn sudden_death_leaves_one_failure_to_go() {
        for fall in 1..=5 {
            let mut c = HealthCounter::new_up(2, fall);
            let t = c.on_observed_errors(OnError::SuddenDeath);
            if fall <= 2 {
                // rise+1 >= max: the simulated failure itself is fatal only for fall 1.
                assert_eq!(t == Transition::WentDown, fall == 1, "fall {fall}");
                if fall == 1 {
                    continue;
                }
            } else {
                assert_eq!(t, Transition::None);
            }
            assert!(c.is_up());
            assert_eq!(c.failure(), Transition::WentDown, "fall {fall}");
        }
    }

    #[test]
    fn fail_check_counts_as_one_failure_and_fastinter_changes_nothing() {
        let mut c = HealthCounter::new_up(2, 3);
        let before = c;
        assert_eq!(c.on_observed_errors(OnError::FastInter), Transition::None);
        assert_eq!(c, before);
        assert_eq!(c.on_observed_errors(OnError::FailCheck), Transition::None);
        let mut d = before;
        d.failure();
        assert_eq!(c, d);
    }

    #[test]
    fn new_params_keep_the_state() {
        let c = HealthCounter::new_down(2, 3).with_params(5, 5);
        assert!(!c.is_up());
        let c = HealthCounter::new_up(2, 3).with_params(1, 1);
        assert!(c.is_up());
    }

    #[test]
    fn error_counter_fires_at_the_limit_and_resets() {
        let e = ErrorCounter::new(3);
        assert!(!e.error());
        assert!(!e.error());
        e.success();
        assert!(!e.error());
        assert!(!e.error());
        assert!(e.error());
        assert_eq!(e.consecutive(), 0);
        let one = ErrorCounter::new(0);
        assert!(one.error());
    }
}
