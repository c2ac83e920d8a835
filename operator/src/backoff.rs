//! Per-object exponential backoff for failed reconciles: an object the API server keeps
//! rejecting (a child it refuses as invalid) is retried ever less often, up to minutes apart,
//! while a transient failure (a conflict, an API server restarting) is retried within a second
//! or two; one object's failures never slow down another's. A success forgets the object.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::Error;

/// First retry and cap for failures that may clear on their own.
const TRANSIENT: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// First retry and cap for failures only an edit can clear (a rejected child, an invalid
/// spec): retrying them hot only fills the API server's log.
const PERMANENT: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(300));

/// At most this many failing objects are remembered; beyond it the table starts over (the
/// worst outcome is a few retries sooner than planned).
const MAX_TRACKED: usize = 10_000;

/// Consecutive failures per object.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `object` and returns how long to wait before its next reconcile
    /// (doubling per consecutive failure, with up to 25 % jitter so a herd spreads out).
    pub fn failed(&self, object: &str, error: &Error) -> Duration {
        let count = {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if failures.len() >= MAX_TRACKED && !failures.contains_key(object) {
                failures.clear();
            }
            let count = failures.entry(object.to_owned()).or_insert(0);
            *count = count.saturating_add(1);
            *count
        };
        let (first, cap) = if error.is_permanent() {
            PERMANENT
        } else {
            TRANSIENT
        };
        let delay = first.saturating_mul(1 << (count - 1).min(16)).min(cap);
        delay + delay.mul_f64(jitter() * 0.25)
    }

    /// Forgets the failures of `object` after a successful reconcile.
    pub fn succeeded(&self, object: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(object);
    }
}

/// A number in [0, 1).
fn jitter() -> f64 {
    f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 256.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected() -> Error {
        Error::ChildRejected(crate::error::Rejection {
            kind: "Deployment".to_owned(),
            name: "main-gateway".to_owned(),
            code: 422,
            message: "invalid".to_owned(),
        })
    }

    #[test]
    fn failures_double_per_object_up_to_the_cap_and_a_success_resets() {
        let backoff = Backoff::default();
        let error = rejected();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.failed("a", &error)).collect();
        assert!(delays[0] >= Duration::from_secs(2) && delays[0] <= Duration::from_millis(2500));
        assert!(delays[1] >= Duration::from_secs(4) && delays[1] <= Duration::from_secs(5));
        assert!(delays[9] >= Duration::from_secs(300) && delays[9] <= Duration::from_secs(375));
        let other = backoff.failed("b", &error);
        assert!(
            other <= delays[0].max(Duration::from_millis(2500)),
            "another object starts afresh"
        );
        backoff.succeeded("a");
        assert!(backoff.failed("a", &error) <= Duration::from_millis(2500));
    }

    #[test]
    fn transient_failures_retry_within_a_second() {
        let backoff = Backoff::default();
        assert!(Error::InvalidSpec(String::new()).is_permanent());
        let transient = Error::Redis("down".to_owned());
        assert!(backoff.failed("a", &transient) < Duration::from_millis(650));
    }
}
