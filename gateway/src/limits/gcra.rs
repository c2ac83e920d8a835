//! The generic cell rate algorithm (GCRA) for one bucket, as pure arithmetic on microseconds.
//!
//! A bucket admits `limit` units per `period`, all of them at once when it is full, and refills
//! continuously. It stores one number, the theoretical arrival time (TAT). The Redis script
//! (`admit.lua`) implements the same arithmetic; the unit tests here pin it down.

/// Outcome of asking a bucket for `cost` units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Gcra {
    /// Admitted: the new TAT to store, units left, and microseconds until the bucket is full.
    Admit {
        /// TAT to store.
        tat: f64,
        /// Units that could still be admitted now.
        remaining: u64,
        /// Microseconds until the bucket is full again.
        reset_us: f64,
    },
    /// Refused: microseconds until `cost` units fit (`None`: never, the cost exceeds the limit).
    Refuse {
        /// Microseconds to wait.
        retry_after_us: Option<f64>,
    },
}

/// Slack absorbing floating-point rounding when comparing times (one microsecond).
pub const TOLERANCE_US: f64 = 1.0;

/// Asks a bucket holding `stored_tat` (absent for a new or expired bucket) for `cost` units at
/// time `now` (all microseconds).
pub fn admit(stored_tat: Option<f64>, now: f64, limit: u64, period_us: f64, cost: u64) -> Gcra {
    let interval = period_us / limit as f64;
    if cost > limit {
        return Gcra::Refuse {
            retry_after_us: None,
        };
    }
    let tat = stored_tat.map_or(now, |t| t.max(now));
    let new_tat = tat + cost as f64 * interval;
    let allow_at = new_tat - period_us;
    // Microseconds are doubles here (and in Lua): `(now + period) - period` can land an ulp
    // above `now`, which without this slack would refuse a request into an empty bucket.
    if allow_at - now > TOLERANCE_US {
        return Gcra::Refuse {
            retry_after_us: Some(allow_at - now),
        };
    }
    Gcra::Admit {
        tat: new_tat,
        remaining: remaining(new_tat, now, period_us, interval),
        reset_us: new_tat - now,
    }
}

/// Units admittable now in a bucket at `tat` (with the same slack as admission: `tat - now`
/// may come out an ulp above a whole number of intervals, which would report one unit less
/// than the next request will be admitted for).
pub fn remaining(tat: f64, now: f64, period_us: f64, interval: f64) -> u64 {
    ((period_us - (tat - now).max(0.0) + TOLERANCE_US) / interval)
        .floor()
        .max(0.0) as u64
}

/// The TAT after settling a reservation: `delta` units charged (positive) or refunded
/// (negative). A refund never moves the TAT before `now` (a full bucket stays full).
pub fn settle(stored_tat: Option<f64>, now: f64, limit: u64, period_us: f64, delta: i64) -> f64 {
    let interval = period_us / limit as f64;
    let tat = stored_tat.map_or(now, |t| t.max(now));
    (tat + delta as f64 * interval).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: f64 = 60_000_000.0;

    fn admitted(mut tat: Option<f64>, now: f64, limit: u64, tries: u64) -> (u64, Option<f64>) {
        let mut count = 0;
        for _ in 0..tries {
            if let Gcra::Admit { tat: t, .. } = admit(tat, now, limit, MINUTE, 1) {
                tat = Some(t);
                count += 1;
            }
        }
        (count, tat)
    }

    #[test]
    fn a_full_bucket_admits_exactly_the_limit_at_once() {
        let (count, _) = admitted(None, 1e12, 100, 1000);
        assert_eq!(count, 100);
    }

    #[test]
    fn refills_one_unit_per_interval() {
        let now = 1e12;
        let (_, tat) = admitted(None, now, 100, 100);
        let interval = MINUTE / 100.0;
        assert!(matches!(
            admit(tat, now + interval * 0.99, 100, MINUTE, 1),
            Gcra::Refuse { .. }
        ));
        let (count, _) = admitted(tat, now + interval * 3.0, 100, 10);
        assert_eq!(count, 3);
    }

    #[test]
    fn an_empty_bucket_admits_whatever_the_clock_reads() {
        for now in [1.0, 60_000_000.123_456, 1.7e15 + 0.3, 123_456_789.987] {
            for limit in [1, 3, 7, 60, 1000] {
                assert!(
                    matches!(admit(None, now, limit, MINUTE, limit), Gcra::Admit { .. }),
                    "now {now}, limit {limit}"
                );
            }
        }
    }

    #[test]
    fn refusal_says_when_the_cost_fits() {
        let now = 1e12;
        let (_, tat) = admitted(None, now, 60, 60);
        let Gcra::Refuse {
            retry_after_us: Some(wait),
        } = admit(tat, now, 60, MINUTE, 2)
        else {
            panic!("expected a refusal with a wait");
        };
        assert!((wait - 2_000_000.0).abs() < 1.0, "{wait}");
        assert_eq!(
            admit(None, now, 60, MINUTE, 61),
            Gcra::Refuse {
                retry_after_us: None
            }
        );
    }

    #[test]
    fn remaining_is_exact_whatever_the_clock_reads() {
        // Clocks read fractional microseconds; `now + interval - now` is then not always
        // exactly `interval`.
        for step in 0..10_000 {
            let now = MINUTE + f64::from(step) * 1_234.567_89;
            let Gcra::Admit { remaining, .. } = admit(None, now, 2, MINUTE, 1) else {
                panic!("an empty bucket admits");
            };
            assert_eq!(remaining, 1, "at {now}");
        }
    }

    #[test]
    fn remaining_and_reset_follow_the_tat() {
        let now = 1e12;
        let Gcra::Admit {
            remaining,
            reset_us,
            ..
        } = admit(None, now, 1000, MINUTE, 250)
        else {
            panic!("expected admission");
        };
        assert_eq!(remaining, 750);
        assert!((reset_us - 15_000_000.0).abs() < 1.0);
    }

    #[test]
    fn settling_refunds_and_charges() {
        let now = 1e12;
        let Gcra::Admit { tat, .. } = admit(None, now, 1000, MINUTE, 500) else {
            panic!("expected admission");
        };
        let refunded = settle(Some(tat), now, 1000, MINUTE, -400);
        assert_eq!(remaining(refunded, now, MINUTE, MINUTE / 1000.0), 900);
        let charged = settle(Some(tat), now, 1000, MINUTE, 700);
        assert_eq!(remaining(charged, now, MINUTE, MINUTE / 1000.0), 0);
        assert_eq!(settle(None, now, 1000, MINUTE, -10), now);
    }
}
