//! A circuit breaker per target: a small state machine fed by call outcomes.
//!
//! 1. **Closed**: calls flow; failures are timestamped, and those older than `window` forgotten.
//!    `failure_threshold` failures within the window open the breaker.
//! 2. **Open**: calls are refused until `open_for` has passed.
//! 3. **Half-open**: up to `half_open_probes` calls are let through at once. A failure reopens
//!    the breaker; `half_open_probes` successes close it.
//!
//! Time is passed in, so the machine is tested without sleeping. Thresholds can change at
//! any moment (a config reload) without resetting the state.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use llm_gateway_crds::policy::CircuitBreaker as Thresholds;

/// Breaker state, as reported in `/health/circuit-breakers` and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Traffic flows.
    Closed,
    /// Traffic is refused.
    Open,
    /// Probes are let through.
    HalfOpen,
}

impl State {
    /// Name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// Value of the state gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

/// One breaker.
#[derive(Debug)]
pub struct Breaker {
    thresholds: Thresholds,
    state: State,
    failures: VecDeque<Instant>,
    open_until: Option<Instant>,
    probes_in_flight: u32,
    probe_successes: u32,
    /// Times the breaker opened since it was created.
    pub opened_total: u64,
}

/// What a state change was, for logs and events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            state: State::Closed,
            failures: VecDeque::new(),
            open_until: None,
            probes_in_flight: 0,
            probe_successes: 0,
            opened_total: 0,
        }
    }

    /// Applies new thresholds; the current state and counts are kept.
    pub fn set_thresholds(&mut self, thresholds: Thresholds) {
        self.thresholds = thresholds;
    }

    /// The state at `now` (an open breaker whose time is up reads as half-open).
    pub fn state(&self, now: Instant) -> State {
        match (self.state, self.open_until) {
            (State::Open, Some(until)) if now >= until => State::HalfOpen,
            (state, _) => state,
        }
    }

    /// Failures currently counted in the window.
    pub fn recent_failures(&self, now: Instant) -> usize {
        let window = self.thresholds.window.get();
        self.failures
            .iter()
            .filter(|t| now.saturating_duration_since(**t) <= window)
            .count()
    }

    /// Time until an open breaker lets probes through.
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        match self.state(now) {
            State::Open => self
                .open_until
                .map(|until| until.saturating_duration_since(now)),
            _ => None,
        }
    }

    /// Asks to send a call at `now`; `true` admits it (and, half-open, reserves a probe).
    pub fn try_acquire(&mut self, now: Instant) -> (bool, Option<Transition>) {
        let transition = self.advance(now);
        let admitted = match self.state {
            State::Closed => true,
            State::Open => false,
            State::HalfOpen if self.probes_in_flight < self.thresholds.half_open_probes => {
                self.probes_in_flight += 1;
                true
            }
            State::HalfOpen => false,
        };
        (admitted, transition)
    }

    /// Records a successful call admitted by [`Self::try_acquire`].
    pub fn on_success(&mut self, now: Instant) -> Option<Transition> {
        self.advance(now);
        if self.state == State::HalfOpen {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
            self.probe_successes += 1;
            if self.probe_successes >= self.thresholds.half_open_probes {
                return Some(self.enter(State::Closed, now));
            }
        }
        None
    }

    /// Records a failed call admitted by [`Self::try_acquire`].
    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        self.advance(now);
        match self.state {
            State::HalfOpen => Some(self.enter(State::Open, now)),
            State::Open => None,
            State::Closed => {
                self.failures.push_back(now);
                self.trim(now);
                (self.failures.len() >= self.thresholds.failure_threshold as usize)
                    .then(|| self.enter(State::Open, now))
            }
        }
    }

    /// Releases a half-open probe whose outcome says nothing about the upstream (client left).
    pub fn on_abandoned(&mut self) {
        if self.state == State::HalfOpen {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    fn advance(&mut self, now: Instant) -> Option<Transition> {
        (self.state == State::Open && self.state(now) == State::HalfOpen)
            .then(|| self.enter(State::HalfOpen, now))
    }

    fn enter(&mut self, to: State, now: Instant) -> Transition {
        let from = self.state;
        self.state = to;
        self.probes_in_flight = 0;
        self.probe_successes = 0;
        match to {
            State::Open => {
                self.opened_total += 1;
                self.open_until = Some(now + self.thresholds.open_for.get());
            }
            State::Closed => {
                self.failures.clear();
                self.open_until = None;
            }
            State::HalfOpen => {}
        }
        Transition { from, to }
    }

    fn trim(&mut self, now: Instant) {
        let window = self.thresholds.window.get();
        while self
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            self.failures.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use llm_gateway_crds::Duration as SpecDuration;

    use super::*;

    fn thresholds(failures: u32, probes: u32) -> Thresholds {
        Thresholds {
            failure_threshold: failures,
            window: SpecDuration::from_secs(10),
            open_for: SpecDuration::from_secs(5),
            half_open_probes: probes,
        }
    }

    #[test]
    fn opens_after_threshold_within_window_and_recovers_through_probes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(thresholds(3, 2));
        for i in 0..2 {
            assert!(b.try_acquire(t0).0);
            assert_eq!(b.on_failure(t0 + Duration::from_secs(i)), None);
        }
        assert!(b.try_acquire(t0).0);
        let opened = b.on_failure(t0 + Duration::from_secs(2)).unwrap();
        assert_eq!((opened.from, opened.to), (State::Closed, State::Open));
        assert!(
            !b.try_acquire(t0 + Duration::from_secs(6)).0,
            "open for 5s from t+2"
        );
        assert_eq!(
            b.retry_in(t0 + Duration::from_secs(6)),
            Some(Duration::from_secs(1))
        );

        let t = t0 + Duration::from_secs(7);
        let (first, transition) = b.try_acquire(t);
        assert!(first && transition.unwrap().to == State::HalfOpen);
        assert!(b.try_acquire(t).0, "second probe");
        assert!(!b.try_acquire(t).0, "only two probes at once");
        assert_eq!(b.on_success(t), None);
        assert_eq!(b.on_success(t).unwrap().to, State::Closed);
        assert!(b.try_acquire(t).0);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(thresholds(2, 1));
        b.on_failure(t0);
        assert_eq!(b.on_failure(t0 + Duration::from_secs(11)), None);
        assert_eq!(b.state(t0 + Duration::from_secs(11)), State::Closed);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(thresholds(1, 1));
        b.on_failure(t0);
        let t = t0 + Duration::from_secs(5);
        assert!(b.try_acquire(t).0);
        assert_eq!(b.on_failure(t).unwrap().to, State::Open);
        assert_eq!(b.opened_total, 2);
        assert!(!b.try_acquire(t + Duration::from_secs(1)).0);
    }

    #[test]
    fn new_thresholds_keep_the_state() {
        let t0 = Instant::now();
        let mut b = Breaker::new(thresholds(1, 1));
        b.on_failure(t0);
        b.set_thresholds(thresholds(10, 3));
        assert_eq!(b.state(t0), State::Open, "still open after a reload");
        let t = t0 + Duration::from_secs(5);
        assert!(b.try_acquire(t).0 && b.try_acquire(t).0 && b.try_acquire(t).0);
        assert!(!b.try_acquire(t).0, "new probe count applies");
    }
}
