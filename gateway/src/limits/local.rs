//! The in-memory store: the same arithmetic as the Redis script, for one replica.
//!
//! One mutex over the maps; it is held only for arithmetic (never across an await), which keeps
//! admission atomic across all of a request's buckets exactly as the Lua script does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

// tokio's clock (std's outside a runtime, and without tokio's test-util the same call): windows
// then refill on a paused clock in tests instead of in wall-clock seconds.
use tokio::time::Instant;

use super::demand::{Demand, UsageAccount};
use super::gcra::{self, Gcra};
use super::{MINUTE_US, Outcome, RateKind, RateStatus, Refused, UsageTotals, Verdict};

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 4096;

#[derive(Debug, Default)]
struct Cells {
    /// Rate buckets' theoretical arrival times (µs on this store's clock).
    tats: HashMap<String, f64>,
    /// Concurrency slots held.
    slots: HashMap<String, u64>,
    /// Callers' usage per period, and when to forget it.
    usage: HashMap<String, (UsageTotals, Instant)>,
}

impl Cells {
    fn sweep(&mut self, now: f64) {
        if self.tats.len() + self.usage.len() <= SWEEP_AT {
            return;
        }
        let instant = Instant::now();
        self.tats.retain(|_, tat| *tat > now);
        self.slots.retain(|_, held| *held > 0);
        self.usage.retain(|_, (_, until)| *until > instant);
    }

    fn usage_of(&mut self, account: &UsageAccount) -> &mut UsageTotals {
        let forget_at = Instant::now() + account.ttl;
        &mut self
            .usage
            .entry(account.key.clone())
            .or_insert((UsageTotals::default(), forget_at))
            .0
    }
}

/// Limits kept in this process.
#[derive(Debug)]
pub struct LocalStore {
    cells: Mutex<Cells>,
    epoch: Instant,
}

impl Default for LocalStore {
    fn default() -> Self {
        Self {
            cells: Mutex::default(),
            epoch: Instant::now(),
        }
    }
}

impl LocalStore {
    fn now_us(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1e6 + MINUTE_US
    }

    /// Admits `demand` entirely or not at all.
    pub fn admit(&self, demand: &Demand) -> Verdict {
        let now = self.now_us();
        let Ok(mut cells) = self.cells.lock() else {
            // A poisoned lock: refused as unavailable (no such account).
            return Verdict::Refused {
                what: Refused::Budget(usize::MAX),
                retry_after: None,
            };
        };
        cells.sweep(now);
        let mut new_tats = Vec::with_capacity(demand.rates.len());
        let mut statuses = Vec::with_capacity(demand.rates.len());
        for (index, rate) in demand.rates.iter().enumerate() {
            let stored = cells.tats.get(&rate.key).copied();
            match gcra::admit(stored, now, rate.limit, MINUTE_US, rate.cost) {
                Gcra::Admit {
                    tat,
                    remaining,
                    reset_us,
                } => {
                    new_tats.push(tat);
                    statuses.push(RateStatus {
                        remaining,
                        reset: Duration::from_secs_f64(reset_us / 1e6),
                    });
                }
                Gcra::Refuse { retry_after_us } => {
                    return Verdict::Refused {
                        what: Refused::Rate(index),
                        retry_after: retry_after_us.map(|us| Duration::from_secs_f64(us / 1e6)),
                    };
                }
            }
        }
        for (index, slot) in demand.slots.iter().enumerate() {
            if cells
                .slots
                .get(&slot.key)
                .is_some_and(|held| *held >= slot.limit)
            {
                return Verdict::Refused {
                    what: Refused::Slots(index),
                    retry_after: Some(Duration::from_secs(1)),
                };
            }
        }
        for (index, account) in demand.accounts.iter().enumerate() {
            if let Some(budget) = &account.budget
                && let Some((totals, _)) = cells.usage.get(&account.usage.key)
                && totals.spend_nanos + totals.reserved_nanos + budget.estimate_nanos
                    > budget.limit_nanos
            {
                let period = &account.usage.period;
                return Verdict::Refused {
                    what: Refused::Budget(index),
                    retry_after: Some(period.remaining(jiff::Timestamp::now())),
                };
            }
        }
        for (rate, tat) in demand.rates.iter().zip(new_tats) {
            cells.tats.insert(rate.key.clone(), tat);
        }
        for slot in &demand.slots {
            *cells.slots.entry(slot.key.clone()).or_default() += 1;
        }
        for account in &demand.accounts {
            if let Some(budget) = &account.budget {
                cells.usage_of(&account.usage).reserved_nanos += budget.estimate_nanos;
            }
        }
        Verdict::Admitted(statuses)
    }

    /// Settles an admitted demand with what the request used.
    pub fn settle(&self, demand: &Demand, outcome: Outcome) {
        let now = self.now_us();
        let Ok(mut cells) = self.cells.lock() else {
            return;
        };
        let used = outcome.input_tokens + outcome.output_tokens;
        for rate in demand.rates.iter().filter(|r| r.kind == RateKind::Tokens) {
            let stored = cells.tats.get(&rate.key).copied();
            let delta = used as i64 - rate.cost as i64;
            let tat = gcra::settle(stored, now, rate.limit, MINUTE_US, delta);
            cells.tats.insert(rate.key.clone(), tat);
        }
        for slot in &demand.slots {
            if let Some(held) = cells.slots.get_mut(&slot.key) {
                *held = held.saturating_sub(1);
            }
        }
        for account in &demand.accounts {
            let totals = cells.usage_of(&account.usage);
            totals.count(&outcome, 1);
            if let Some(budget) = &account.budget {
                totals.reserved_nanos -= budget.estimate_nanos;
            }
        }
    }

    /// A caller's usage in a period (zero when nothing was counted).
    pub fn usage(&self, key: &str) -> UsageTotals {
        self.cells
            .lock()
            .ok()
            .and_then(|cells| cells.usage.get(key).map(|(totals, _)| *totals))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Scope;
    use crate::limits::demand::{RateDemand, SlotDemand};

    fn demand(rates: Vec<RateDemand>, slots: Vec<SlotDemand>) -> Demand {
        Demand {
            rates,
            slots,
            accounts: Vec::new(),
            lease: String::new(),
            lease_ttl: Duration::from_secs(60),
            reserved_tokens: 0,
            prompt_estimate: 0,
        }
    }

    fn rate(key: &str, limit: u64) -> RateDemand {
        RateDemand {
            key: key.to_owned(),
            kind: RateKind::Requests,
            scope: Scope::Caller,
            limit,
            cost: 1,
        }
    }

    #[test]
    fn a_refused_request_consumes_nothing() {
        let store = LocalStore::default();
        let both = demand(vec![rate("a", 10), rate("b", 1)], vec![]);
        assert!(matches!(store.admit(&both), Verdict::Admitted(_)));
        assert!(matches!(
            store.admit(&both),
            Verdict::Refused {
                what: Refused::Rate(1),
                ..
            }
        ));
        match store.admit(&demand(vec![rate("a", 10)], vec![])) {
            Verdict::Admitted(statuses) => assert_eq!(statuses[0].remaining, 8),
            other => panic!("expected admission, got {other:?}"),
        }
    }

    #[test]
    fn settling_releases_concurrency_slots() {
        let store = LocalStore::default();
        let slot = SlotDemand {
            key: "s".to_owned(),
            scope: Scope::Route,
            limit: 1,
        };
        let one = demand(vec![], vec![slot]);
        assert!(matches!(store.admit(&one), Verdict::Admitted(_)));
        assert!(matches!(store.admit(&one), Verdict::Refused { .. }));
        store.settle(&one, Outcome::default());
        assert!(matches!(store.admit(&one), Verdict::Admitted(_)));
    }
}
