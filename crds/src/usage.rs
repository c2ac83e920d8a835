//! Budget periods (calendar days, ISO weeks and months in UTC) and where a caller's usage is
//! counted in Redis: shared by the gateways that count it and the operator that copies it into
//! `ApiKey` status, so both always name the same keys.
//!
//! Period boundaries come from the clock of whoever asks (NTP-synchronised pods agree to well
//! under a second); the rate limits, which need exact agreement, use Redis's clock instead.

use std::time::Duration;

use crate::policy::BudgetPeriod;
use jiff::civil::Date;
use jiff::{Timestamp, ToSpan, tz::TimeZone};

/// How long usage of a finished period stays readable (for the operator's status sync).
const RETENTION: Duration = Duration::from_secs(35 * 24 * 3600);

/// One budget period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    /// Which calendar unit.
    pub kind: BudgetPeriod,
    /// First instant of the period.
    pub start: Timestamp,
    /// First instant of the next period.
    pub end: Timestamp,
}

impl Period {
    /// The period of `kind` containing `now`.
    pub fn containing(kind: BudgetPeriod, now: Timestamp) -> Self {
        let today = now.to_zoned(TimeZone::UTC).date();
        let (first, next) = match kind {
            BudgetPeriod::Daily => (today, today.tomorrow().unwrap_or(today)),
            BudgetPeriod::Weekly => {
                let monday = week_start(today);
                (monday, monday.checked_add(7.days()).unwrap_or(monday))
            }
            BudgetPeriod::Monthly => {
                let first = today.first_of_month();
                (first, first.checked_add(1.month()).unwrap_or(first))
            }
        };
        Self {
            kind,
            start: midnight(first),
            end: midnight(next),
        }
    }

    /// The period usage is counted in under `budget`: its period, or the calendar month
    /// without one.
    pub fn of_budget(budget: Option<&crate::policy::Budget>, now: Timestamp) -> Self {
        Self::containing(budget.map_or(BudgetPeriod::Monthly, |b| b.period), now)
    }

    /// Suffix of the usage key: the period's first day, e.g. `2026-11-01`.
    pub fn key_suffix(&self) -> String {
        self.start.to_zoned(TimeZone::UTC).date().to_string()
    }

    /// How long the usage counters of this period must live.
    pub fn ttl(&self, now: Timestamp) -> Duration {
        let left = self.end.duration_since(now).unsigned_abs();
        left + RETENTION
    }

    /// Time until the next period starts.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        self.end.duration_since(now).unsigned_abs()
    }
}

/// Prefix of every Redis key the gateway writes.
pub const KEY_PREFIX: &str = "lgw";

/// Fields of a usage hash.
pub const USAGE_FIELDS: [&str; 9] = [
    "requests",
    "input_tokens",
    "output_tokens",
    "spend_nanos",
    "reserved_nanos",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    // Unix seconds (Redis time) of the last settled request.
    "last_used",
];

/// The account an ApiKey's limits and usage are kept under: the resource, not the key, so a
/// rotation keeps its counters.
pub fn api_key_account(namespace: &str, name: &str) -> String {
    format!("key:{namespace}/{name}")
}

/// The prefix of every Redis key of one account (a caller, a quota or a route): the account
/// is a hash tag, so a Redis Cluster keeps all of them in one slot, where one script can
/// admit or settle them together.
pub fn account_prefix(account: &str) -> String {
    format!("{KEY_PREFIX}:{{{account}}}")
}

/// Store key of an account's usage counters in `period`.
pub fn usage_key(account: &str, period: &Period) -> String {
    format!("{}:usage:{}", account_prefix(account), period.key_suffix())
}

fn week_start(day: Date) -> Date {
    let back = i64::from(day.weekday().to_monday_zero_offset());
    day.checked_sub(back.days()).unwrap_or(day)
}

fn midnight(day: Date) -> Timestamp {
    day.to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn periods_are_utc_calendar_units() {
        let now = at("2026-11-27T18:45:00Z");
        let day = Period::containing(BudgetPeriod::Daily, now);
        assert_eq!(
            (day.start, day.end),
            (at("2026-11-27T00:00:00Z"), at("2026-11-28T00:00:00Z"))
        );
        let week = Period::containing(BudgetPeriod::Weekly, now);
        assert_eq!(
            (week.start, week.end),
            (at("2026-11-23T00:00:00Z"), at("2026-11-30T00:00:00Z"))
        );
        let month = Period::containing(BudgetPeriod::Monthly, now);
        assert_eq!(
            (month.start, month.end),
            (at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z"))
        );
        assert_eq!(month.key_suffix(), "2026-11-01");
        let december = Period::containing(BudgetPeriod::Monthly, at("2026-12-31T23:59:59Z"));
        assert_eq!(december.end, at("2027-01-01T00:00:00Z"));
    }
}
