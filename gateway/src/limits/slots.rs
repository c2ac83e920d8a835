//! How one demand is laid out for the Lua scripts: as one part on a single Redis, or one part
//! per hash slot in a Redis Cluster, where a script may only touch keys of one slot.
//!
//! Every key of an account (a caller, an LlmQuota, a route) carries the account as its hash
//! tag (`lgw:{key:team/app}:rpm`), so a part is one account's buckets, slots and usage, plus a
//! lease record of its own in the same slot. Each part is admitted and settled by the same
//! idempotent scripts as a whole demand; `redis_store` makes the parts all-or-nothing.

use smallvec::SmallVec;

use super::demand::Demand;
use super::redis_store::Finish;
use super::script_call::ScriptCall;
use super::{Outcome, RateKind};

/// Indices into one of a demand's lists; a demand rarely has more than a few of each.
pub type Indices = SmallVec<[usize; 4]>;

/// The parts of one demand: one on a single Redis, one per account in a cluster.
pub type Parts<'d> = SmallVec<[Part<'d>; 2]>;

/// The keys of one script call, as indices into the demand.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Part<'d> {
    /// The hash tag the part's keys share, braces included (`{key:team/app}`).
    pub tag: &'d str,
    /// Indices into [`Demand::rates`].
    pub rates: Indices,
    /// Indices into [`Demand::slots`].
    pub slots: Indices,
    /// Indices into [`Demand::accounts`].
    pub accounts: Indices,
}

impl Part<'_> {
    /// The Redis key of this part's lease record.
    #[cfg(test)]
    pub fn record_key(&self, lease: &str) -> String {
        self.record_key_fmt(lease).to_string()
    }

    /// The same key, written where it goes (into a script call's buffer).
    fn record_key_fmt<'a>(&'a self, lease: &'a str) -> impl std::fmt::Display + 'a {
        RecordKey(self.tag, lease)
    }
}

/// A part's lease record key, `<prefix>:<tag>:lease:<lease>`, written where it goes.
struct RecordKey<'a>(&'a str, &'a str);

impl std::fmt::Display for RecordKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:lease:{}",
            super::demand::KEY_PREFIX,
            self.0,
            self.1
        )
    }
}

/// The hash tag of a store key (`{…}`, braces included), or the whole key without one.
fn tag_of(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            let close = open + key[open..].find('}')?;
            Some(&key[open..=close])
        })
        .unwrap_or(key)
}

/// The parts of `demand`: everything in one (`split` false: a single Redis), or one per hash
/// tag, in the order the tags first appear (the caller's first). Allocates nothing for the
/// usual demand (two parts of up to four of each kind).
pub fn parts(demand: &Demand, split: bool) -> Parts<'_> {
    let mut parts = Parts::new();
    for (index, rate) in demand.rates.iter().enumerate() {
        part_of(&mut parts, &rate.key, split).rates.push(index);
    }
    for (index, slot) in demand.slots.iter().enumerate() {
        part_of(&mut parts, &slot.key, split).slots.push(index);
    }
    for (index, account) in demand.accounts.iter().enumerate() {
        part_of(&mut parts, &account.usage.key, split)
            .accounts
            .push(index);
    }
    parts
}

/// The part `key` belongs to, added if it is the first of its tag (or the first of all when
/// not `split`).
fn part_of<'p, 'd>(parts: &'p mut Parts<'d>, key: &'d str, split: bool) -> &'p mut Part<'d> {
    let tag = tag_of(key);
    let found = match split {
        true => parts.iter().position(|p| p.tag == tag),
        false => (!parts.is_empty()).then_some(0),
    };
    let index = found.unwrap_or_else(|| {
        parts.push(Part {
            tag,
            ..Part::default()
        });
        parts.len() - 1
    });
    &mut parts[index]
}

/// `demand` narrowed to the keys of `parts` (same lease): what is left of a finish that
/// landed in the other parts.
pub fn only(demand: &Demand, parts: &[&Part]) -> Demand {
    fn picked<T: Clone>(
        all: &[T],
        parts: &[&Part],
        pick: for<'p> fn(&'p Part<'_>) -> &'p [usize],
    ) -> Vec<T> {
        let mut indices: Vec<usize> = parts.iter().flat_map(|p| pick(p).iter().copied()).collect();
        indices.sort_unstable();
        indices.into_iter().map(|i| all[i].clone()).collect()
    }
    Demand {
        rates: picked(&demand.rates, parts, |p| &p.rates),
        slots: picked(&demand.slots, parts, |p| &p.slots),
        accounts: picked(&demand.accounts, parts, |p| &p.accounts),
        ..demand.clone()
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The keys both scripts take, in their order: the rate buckets `rates`, the part's
/// concurrency sets, its lease record, then each account's usage hash and reservations.
fn with_keys<'a>(
    script: &'a redis::Script,
    demand: &Demand,
    part: &Part,
    rates: &[usize],
) -> ScriptCall<'a> {
    let count = rates.len() + part.slots.len() + 1 + 2 * part.accounts.len();
    let mut call = ScriptCall::new(script, count);
    for &i in rates {
        call.key(&demand.rates[i].key);
    }
    for &i in &part.slots {
        call.key(&demand.slots[i].key);
    }
    call.key_fmt(format_args!("{}", part.record_key_fmt(&demand.lease)));
    for &i in &part.accounts {
        let key = &demand.accounts[i].usage.key;
        call.key(key).key_fmt(format_args!("{key}:held"));
    }
    call
}

/// The `admit.lua` call for `part` of `demand`.
pub fn admit_call<'a>(
    script: &'a redis::Script,
    demand: &Demand,
    part: &Part,
    record_ttl: std::time::Duration,
) -> ScriptCall<'a> {
    let mut call = with_keys(script, demand, part, &part.rates);
    call.arg(part.rates.len())
        .arg(part.slots.len())
        .arg(part.accounts.len())
        .arg(&demand.lease)
        .arg(demand.lease_ttl.as_micros() as u64)
        .arg(millis(demand.lease_ttl + record_ttl));
    for &i in &part.rates {
        call.arg(demand.rates[i].limit).arg(demand.rates[i].cost);
    }
    for &i in &part.slots {
        call.arg(demand.slots[i].limit);
    }
    for &i in &part.accounts {
        let account = &demand.accounts[i];
        let (limit, estimate) = account
            .budget
            .map_or((-1, 0), |b| (b.limit_nanos, b.estimate_nanos));
        call.arg(millis(account.usage.ttl)).arg(limit).arg(estimate);
    }
    call
}

/// The `settle.lua` call finishing `part` of `demand` with `outcome`.
pub fn finish_call<'a>(
    script: &'a redis::Script,
    how: Finish,
    demand: &Demand,
    part: &Part,
    outcome: &Outcome,
    record_ttl: std::time::Duration,
) -> ScriptCall<'a> {
    // A settlement corrects token buckets by the real usage; a cancel refunds every bucket.
    let buckets: Indices = part
        .rates
        .iter()
        .copied()
        .filter(|&i| how == Finish::Cancel || demand.rates[i].kind == RateKind::Tokens)
        .collect();
    let mut call = with_keys(script, demand, part, &buckets);
    call.arg(how.as_arg())
        .arg(buckets.len())
        .arg(part.slots.len())
        .arg(part.accounts.len())
        .arg(&demand.lease)
        .arg(millis(record_ttl));
    let used = match how {
        Finish::Settle => (outcome.input_tokens + outcome.output_tokens) as i64,
        Finish::Cancel => 0,
    };
    for &i in &buckets {
        let rate = &demand.rates[i];
        call.arg(rate.limit).arg(used - rate.cost as i64);
    }
    call.arg(outcome.input_tokens)
        .arg(outcome.output_tokens)
        .arg(outcome.spend_nanos)
        .arg(outcome.cache_read_tokens)
        .arg(outcome.cache_write_tokens)
        .arg(outcome.reasoning_tokens);
    for &i in &part.accounts {
        let account = &demand.accounts[i];
        let estimate = account.budget.map_or(0, |b| b.estimate_nanos);
        call.arg(millis(account.usage.ttl)).arg(estimate);
    }
    call
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::demand::{CallerAccount, TokenReserve};
    use llm_gateway_crds::policy::RateLimits;
    use std::time::Duration;

    fn demand() -> Demand {
        let limits = RateLimits {
            requests_per_minute: Some(10),
            tokens_per_minute: None,
            max_concurrent: Some(2),
        };
        let caller = CallerAccount {
            account: "key:team/app",
            limits: Some(&limits),
            budget: None,
            quotas: &[],
        };
        let reserve = TokenReserve {
            prompt: 1,
            completion: 1,
            asked: true,
        };
        Demand::build(
            Some(caller),
            "gpt-4o",
            Some(&limits),
            reserve,
            Default::default(),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn a_cluster_gets_one_part_per_account_and_a_single_redis_one() {
        let demand = demand();
        let split = parts(&demand, true);
        let tags: Vec<&str> = split.iter().map(|p| p.tag).collect();
        assert_eq!(tags, ["{key:team/app}", "{route:gpt-4o}"]);
        assert_eq!(
            (split[0].rates.to_vec(), split[0].slots.to_vec()),
            (vec![0], vec![0])
        );
        assert_eq!(split[0].accounts.as_slice(), [0]);
        assert_eq!(
            (split[1].rates.to_vec(), split[1].slots.to_vec()),
            (vec![1], vec![1])
        );
        let whole = parts(&demand, false);
        assert_eq!(whole.len(), 1);
        assert_eq!((whole[0].rates.len(), whole[0].slots.len()), (2, 2));
        assert!(
            whole[0]
                .record_key("l")
                .starts_with("lgw:{key:team/app}:lease:")
        );
    }

    #[test]
    fn what_is_left_of_a_finish_is_the_failed_parts_only() {
        let demand = demand();
        let split = parts(&demand, true);
        let left = only(&demand, &[&split[1]]);
        let keys: Vec<&str> = left.rates.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["lgw:{route:gpt-4o}:rpm"]);
        assert_eq!(left.slots.len(), 1);
        assert!(
            left.accounts.is_empty(),
            "the caller's usage landed already"
        );
        assert_eq!(
            left.lease, demand.lease,
            "the same lease, so the same records"
        );
    }

    #[test]
    fn tags_are_what_redis_hashes() {
        assert_eq!(tag_of("lgw:{key:a/b}:rpm"), "{key:a/b}");
        assert_eq!(tag_of("lgw:{jwt:x}y}:rpm"), "{jwt:x}");
        assert_eq!(tag_of("plain"), "plain");
    }
}
