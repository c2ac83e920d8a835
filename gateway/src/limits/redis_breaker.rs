//! The breaker in front of Redis: after a few consecutive failures, calls are refused at once
//! (never sent) until one probe succeeds, so an unreachable Redis costs at most one timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Consecutive failures that open the breaker.
const BREAKER_FAILURES: u32 = 3;
/// How long the open breaker skips Redis before one probe is let through.
const BREAKER_OPEN_FOR: Duration = Duration::from_millis(200);

/// Closed → open after [`BREAKER_FAILURES`] consecutive failures → one probe after
/// [`BREAKER_OPEN_FOR`] → closed on the probe's success, open again on its failure.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Breaker {
    /// Whether a call may go to Redis now.
    pub fn allow(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        match state.open_until {
            None => true,
            Some(until) if Instant::now() >= until && !state.probing => {
                state.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    /// Records a call's result.
    pub fn record(&self, ok: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.probing = false;
        if ok {
            state.failures = 0;
            state.open_until = None;
        } else {
            state.failures += 1;
            if state.failures >= BREAKER_FAILURES || state.open_until.is_some() {
                state.open_until = Some(Instant::now() + BREAKER_OPEN_FOR);
            }
        }
    }

    /// Whether the last calls succeeded.
    pub fn is_closed(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.open_until.is_none())
            .unwrap_or(false)
    }
}
