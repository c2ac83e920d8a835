//! The in-memory store: the same arithmetic as the Redis script, for one replica.
//!
//! One mutex over a map; it is held only for arithmetic (never across an await), which keeps
//! admission atomic across all of a request's buckets exactly as the Lua script does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::demand::Demand;
use super::gcra::{self, Gcra};
use super::{MINUTE_US, Outcome, RateStatus, Refused, UsageTotals, Verdict};

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 4096;

#[derive(Debug)]
enum Cell {
    /// A rate bucket's theoretical arrival time (µs on this store's clock).
    Tat(f64),
    /// Concurrency slots held.
    Slots(u64),
    /// A caller's usage in one period, and when to forget it.
    Usage(UsageTotals, Instant),
}

/// Limits kept in this process.
#[derive(Debug)]
pub struct LocalStore {
    cells: Mutex<HashMap<String, Cell>>,
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
            return refused_forever(Refused::Budget);
        };
        if cells.len() > SWEEP_AT {
            sweep(&mut cells, now);
        }
        let mut new_tats = Vec::with_capacity(demand.rates.len());
        let mut statuses = Vec::with_capacity(demand.rates.len());
        for (index, rate) in demand.rates.iter().enumerate() {
            let stored = match cells.get(&rate.key) {
                Some(Cell::Tat(tat)) => Some(*tat),
                _ => None,
            };
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
            if matches!(cells.get(&slot.key), Some(Cell::Slots(held)) if *held >= slot.limit) {
                return Verdict::Refused {
                    what: Refused::Slots(index),
                    retry_after: Some(Duration::from_secs(1)),
                };
            }
        }
        if let (Some(budget), Some(account)) = (&demand.budget, &demand.usage)
            && let Some(Cell::Usage(totals, _)) = cells.get(&account.key)
            && totals.spend_nanos + totals.reserved_nanos + budget.estimate_nanos
                > budget.limit_nanos
        {
            return Verdict::Refused {
                what: Refused::Budget,
                retry_after: Some(account.period.remaining(jiff::Timestamp::now())),
            };
        }
        for (rate, tat) in demand.rates.iter().zip(new_tats) {
            cells.insert(rate.key.clone(), Cell::Tat(tat));
        }
        for slot in &demand.slots {
            let entry = cells.entry(slot.key.clone()).or_insert(Cell::Slots(0));
            if let Cell::Slots(held) = entry {
                *held += 1;
            }
        }
        if let (Some(budget), Some(account)) = (&demand.budget, &demand.usage) {
            usage_cell(&mut cells, account).reserved_nanos += budget.estimate_nanos;
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
        for rate in demand
            .rates
            .iter()
            .filter(|r| r.kind == super::RateKind::Tokens)
        {
            let stored = match cells.get(&rate.key) {
                Some(Cell::Tat(tat)) => Some(*tat),
                _ => None,
            };
            let delta = used as i64 - rate.cost as i64;
            let tat = gcra::settle(stored, now, rate.limit, MINUTE_US, delta);
            cells.insert(rate.key.clone(), Cell::Tat(tat));
        }
        for slot in &demand.slots {
            if let Some(Cell::Slots(held)) = cells.get_mut(&slot.key) {
                *held = held.saturating_sub(1);
            }
        }
        if let Some(account) = &demand.usage {
            let totals = usage_cell(&mut cells, account);
            totals.requests += 1;
            totals.input_tokens += outcome.input_tokens;
            totals.output_tokens += outcome.output_tokens;
            totals.spend_nanos += outcome.spend_nanos;
            if let Some(budget) = &demand.budget {
                totals.reserved_nanos -= budget.estimate_nanos;
            }
        }
    }

    /// A caller's usage in a period (zero when nothing was counted).
    pub fn usage(&self, key: &str) -> UsageTotals {
        match self.cells.lock().ok().as_deref().and_then(|c| c.get(key)) {
            Some(Cell::Usage(totals, _)) => *totals,
            _ => UsageTotals::default(),
        }
    }
}

fn usage_cell<'c>(
    cells: &'c mut HashMap<String, Cell>,
    account: &super::demand::UsageAccount,
) -> &'c mut UsageTotals {
    let entry = cells
        .entry(account.key.clone())
        .or_insert_with(|| Cell::Usage(UsageTotals::default(), Instant::now() + account.ttl));
    if !matches!(entry, Cell::Usage(..)) {
        *entry = Cell::Usage(UsageTotals::default(), Instant::now() + account.ttl);
    }
    match entry {
        Cell::Usage(totals, _) => totals,
        // Replaced just above.
        _ => unreachable!("usage cell"),
    }
}

fn sweep(cells: &mut HashMap<String, Cell>, now: f64) {
    let instant = Instant::now();
    cells.retain(|_, cell| match cell {
        Cell::Tat(tat) => *tat > now,
        Cell::Slots(held) => *held > 0,
        Cell::Usage(_, until) => *until > instant,
    });
}

fn refused_forever(what: Refused) -> Verdict {
    Verdict::Refused {
        what,
        retry_after: None,
    }
}
