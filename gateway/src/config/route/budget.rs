//! The route's retry budget: retries may be at most a fifth of the route's recent requests,
//! plus a reserve of 10, where "recent" is a sliding window of 10 seconds.
//!
//! Why not tower's `retry::budget::TpsBudget` (same idea, same defaults): it rotates its slots
//! only when called and advances one slot too many whenever the time since the last rotation
//! is not an exact multiple of a slot, so under ordinary traffic a deposit made with a 10 s
//! `ttl` stops counting after about 6 s (between 6 and 11 s depending on how requests are
//! spaced), and its reserve then allows nearly twice the minimum rate it was given. Its
//! withdrawal also checks and spends in two steps, so concurrent retries can overdraw it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Length of one slot of the window.
const SLOT: Duration = Duration::from_secs(1);
/// Slots in the window: the current second and the nine before it.
const SLOTS: usize = 10;
/// What a request deposits, in fifths of a retry.
const DEPOSIT: i32 = 1;
/// What a retry withdraws: five requests' worth, so retries stay within 20% of requests.
const RETRY_COST: i32 = 5;
/// Retries the window allows with no traffic at all (so at least one a second on average).
const RESERVE: i64 = 10 * RETRY_COST as i64;

/// A retry budget over a sliding window: each request deposits a fifth of a retry, each
/// retry withdraws one, and the balance is a reserve of 10 retries plus what was deposited minus
/// what was withdrawn during the window, so a failing upstream never multiplies load.
///
/// The window is the current second and the nine before it, seconds counted from when the
/// route was loaded (a reload starts a new budget): a deposit or withdrawal counts until 9 to
/// 10 s after it was made, then no longer. Withdrawals age out like deposits, so the reserve
/// allows 10 retries in every such window even on a route without traffic, and deposits that
/// paid for retries leave the window before those retries do.
///
/// Each slot is one atomic word holding its second and its net balance, so a deposit (every
/// request) is one compare-and-swap with no lock and no allocation. A withdrawal (every retry)
/// sums the ten slots and records itself under a short lock taken only by withdrawals, so two
/// concurrent retries cannot both spend the last one.
pub struct RetryBudget {
    /// When the window's seconds are counted from.
    origin: Instant,
    /// Slot `s % SLOTS` holds second `s` in the high 32 bits and its net balance (deposits
    /// minus withdrawals, in fifths of a retry) in the low 32 bits.
    slots: [AtomicU64; SLOTS],
    /// Serializes withdrawals (deposits never take it).
    withdrawing: Mutex<()>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            slots: Default::default(),
            withdrawing: Mutex::new(()),
        }
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let second = self.second(Instant::now());
        f.debug_struct("RetryBudget")
            .field(
                "retries_left",
                &(self.balance(second) / i64::from(RETRY_COST)),
            )
            .finish()
    }
}

impl RetryBudget {
    /// Credits one request (its first attempt).
    pub fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    /// Takes one retry if the budget allows it.
    pub fn withdraw(&self) -> bool {
        self.withdraw_at(Instant::now())
    }

    fn deposit_at(&self, now: Instant) {
        self.add(self.second(now), DEPOSIT);
    }

    fn withdraw_at(&self, now: Instant) -> bool {
        let second = self.second(now);
        let _serial = self
            .withdrawing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.balance(second) < i64::from(RETRY_COST) {
            return false;
        }
        self.add(second, -RETRY_COST);
        true
    }

    /// The whole seconds from `origin` to `now`.
    fn second(&self, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.origin);
        u32::try_from(elapsed.as_secs() / SLOT.as_secs()).unwrap_or(u32::MAX)
    }

    /// Adds `units` to `second`'s slot, first clearing what the slot held for an older second.
    fn add(&self, second: u32, units: i32) {
        let slot = &self.slots[second as usize % SLOTS];
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |packed| {
            let (held, value) = unpack(packed);
            // A newer second than ours means this thread was preempted between reading the
            // clock and getting here; counting the units in that second is close enough.
            Some(if held < second {
                pack(second, units)
            } else {
                pack(held, value.saturating_add(units))
            })
        });
    }

    /// The reserve plus the net balance of the window ending with `second`.
    fn balance(&self, second: u32) -> i64 {
        let window = self
            .slots
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Relaxed)))
            // A slot ahead of `second` was written by a thread that read the clock later.
            .filter(|&(held, _)| i64::from(second) - i64::from(held) < SLOTS as i64)
            .map(|(_, value)| i64::from(value))
            .sum::<i64>();
        RESERVE + window
    }
}

fn pack(second: u32, value: i32) -> u64 {
    (u64::from(second) << 32) | u64::from(value as u32)
}

fn unpack(packed: u64) -> (u32, i32) {
    ((packed >> 32) as u32, packed as u32 as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(budget: &RetryBudget, millis: u64) -> Instant {
        budget.origin + Duration::from_millis(millis)
    }

    /// Retries granted when asking `times` times at `now`.
    fn retries(budget: &RetryBudget, now: Instant, times: usize) -> usize {
        (0..times).filter(|_| budget.withdraw_at(now)).count()
    }

    #[test]
    fn budget_allows_a_fifth_of_traffic_after_the_reserve() {
        let budget = RetryBudget::default();
        let mut granted = 0;
        for _ in 0..1000 {
            budget.deposit();
            if budget.withdraw() {
                granted += 1;
            }
        }
        assert_eq!(granted, 10 + 200, "reserve plus 20% of 1000 requests");
    }

    #[test]
    fn within_the_window_the_ratio_holds_across_seconds() {
        let budget = RetryBudget::default();
        let mut granted = 0;
        // 100 requests every 100 ms for 9.9 s, each failing and asking for a retry.
        for tick in 0..99 {
            let now = at(&budget, tick * 100);
            for _ in 0..100 {
                budget.deposit_at(now);
                granted += usize::from(budget.withdraw_at(now));
            }
        }
        assert_eq!(granted, 10 + 9900 / 5, "reserve plus 20% of 9900 requests");
        assert_eq!(retries(&budget, at(&budget, 9_999), 5), 0, "spent");
    }

    #[test]
    fn deposits_older_than_the_window_no_longer_pay_for_retries() {
        // 1000 requests at 0.5 s.
        let funded = || {
            let budget = RetryBudget::default();
            for _ in 0..1000 {
                budget.deposit_at(at(&budget, 500));
            }
            budget
        };
        // Until the end of second 9 they pay for 200 retries on top of the reserve...
        let budget = funded();
        assert_eq!(retries(&budget, at(&budget, 9_999), 1000), 10 + 200);
        // ...from second 10 on they no longer count: only the reserve is left.
        let budget = funded();
        let second_10 = budget.second(at(&budget, 10_000));
        assert_eq!(budget.balance(second_10), RESERVE);
        assert_eq!(retries(&budget, at(&budget, 10_000), 1000), 10);
        // New requests pay again, at the same ratio.
        for _ in 0..100 {
            budget.deposit_at(at(&budget, 10_500));
        }
        assert_eq!(retries(&budget, at(&budget, 10_500), 1000), 20);
    }

    #[test]
    fn spent_retries_outlive_the_deposits_that_paid_for_them() {
        let budget = RetryBudget::default();
        for _ in 0..1000 {
            budget.deposit_at(at(&budget, 0));
        }
        assert_eq!(retries(&budget, at(&budget, 5_000), 1000), 10 + 200);
        // At 10 s the deposits have left the window but the retries of second 5 have not: the
        // window holds 210 retries and no requests, more than its share, so nothing is granted.
        assert_eq!(retries(&budget, at(&budget, 10_000), 10), 0);
        assert_eq!(retries(&budget, at(&budget, 14_999), 10), 0);
        // Once they leave too, the reserve is back.
        assert_eq!(retries(&budget, at(&budget, 15_000), 100), 10);
    }

    #[test]
    fn the_reserve_allows_ten_retries_per_window_without_traffic() {
        let budget = RetryBudget::default();
        assert_eq!(retries(&budget, at(&budget, 0), 100), 10);
        assert_eq!(retries(&budget, at(&budget, 9_999), 100), 0);
        assert_eq!(retries(&budget, at(&budget, 10_000), 100), 10);
        // An hour idle changes nothing: old slots are recognised by their second, not cleared.
        assert_eq!(retries(&budget, at(&budget, 3_600_000), 100), 10);
    }

    #[test]
    fn concurrent_retries_never_overdraw() {
        let budget = RetryBudget::default();
        let now = at(&budget, 0);
        let granted: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        (0..1000)
                            .filter(|_| {
                                budget.deposit_at(now);
                                budget.withdraw_at(now)
                            })
                            .count()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        let drained = retries(&budget, now, 1000);
        assert_eq!(
            granted + drained,
            10 + 4000 / 5,
            "every deposit counted, none overspent"
        );
    }

    #[test]
    fn packing_round_trips_negative_balances() {
        for (second, value) in [(0, 0), (7, -5), (u32::MAX, i32::MIN), (42, i32::MAX)] {
            assert_eq!(unpack(pack(second, value)), (second, value));
        }
    }
}
