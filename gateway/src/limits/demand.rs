//! What one request asks of the limiter: the rate buckets, concurrency slots and budget that
//! apply to it, with the tokens and spend to reserve.

use std::time::Duration;

use jiff::Timestamp;
use llm_gateway_crds::compiled::CompiledQuota;
use llm_gateway_crds::policy::{Budget, RateLimits};

use super::meter::Price;
use super::period::Period;
use super::{RateKind, Scope};
use crate::request::ClientRequest;

/// Completion tokens reserved when the request sets no `max_tokens` and no target's catalogue
/// entry names the model's output maximum.
pub const DEFAULT_COMPLETION_RESERVE: u64 = 1024;

/// The tokens a request may use, reserved at admission and settled against the real usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenReserve {
    /// Prompt tokens estimated from every input field (about four bytes a token).
    pub prompt: u64,
    /// Completion tokens the request may produce: the cap per choice times `n`.
    pub completion: u64,
    /// Whether the client set the cap; a request without one reserves at most a whole token
    /// bucket rather than being refused outright for what it might produce.
    pub asked: bool,
}

impl TokenReserve {
    /// The reserve of `request` on a route whose targets produce at most `output_cap` tokens
    /// (the largest catalogue `maxOutputTokens` among them, when known): the client's
    /// `max_tokens` capped at that, or the cap itself when the client sets none.
    pub fn of(request: &ClientRequest, output_cap: Option<u32>) -> Self {
        let bytes = request.prompt_bytes + request.other_prompt_bytes;
        let per_choice = match (request.max_tokens, output_cap) {
            (Some(asked), Some(cap)) => asked.min(cap).into(),
            (Some(asked), None) => asked.into(),
            (None, Some(cap)) => cap.into(),
            (None, None) => DEFAULT_COMPLETION_RESERVE,
        };
        Self {
            prompt: (bytes as u64).div_ceil(4).max(1),
            completion: per_choice * u64::from(request.choices.max(1)),
            asked: request.max_tokens.is_some(),
        }
    }
}

pub use llm_gateway_crds::usage::{KEY_PREFIX, account_prefix, usage_key};

/// One rate bucket a request draws from.
#[derive(Clone, Debug, PartialEq)]
pub struct RateDemand {
    /// Store key.
    pub key: String,
    /// Requests or tokens.
    pub kind: RateKind,
    /// Caller or route.
    pub scope: Scope,
    /// Units per minute.
    pub limit: u64,
    /// Units this request takes (tokens: the reservation).
    pub cost: u64,
}

/// One concurrency limit a request holds a slot of.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotDemand {
    /// Store key.
    pub key: String,
    /// Caller or route.
    pub scope: Scope,
    /// Requests in flight at once.
    pub limit: u64,
}

/// A spend cap for the current period (a caller's or a quota's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetDemand {
    /// Cap in billionths of a dollar.
    pub limit_nanos: i64,
    /// Spend reserved for this request (estimated tokens at the route's highest price).
    pub estimate_nanos: i64,
}

/// Where a caller's (or a quota's) usage is counted.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageAccount {
    /// Store key of the period's counters.
    pub key: String,
    /// The period counted.
    pub period: Period,
    /// How long the counters live.
    pub ttl: Duration,
}

/// An account a request's usage is counted in, and the budget it must fit in.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    /// `namespace/name` of the LlmQuota, or `None` for the caller's own account.
    pub quota: Option<String>,
    /// Where usage is counted.
    pub usage: UsageAccount,
    /// Spend cap of the account.
    pub budget: Option<BudgetDemand>,
}

/// Everything one request asks of the limiter.
#[derive(Clone, Debug, PartialEq)]
pub struct Demand {
    /// Rate buckets, callers' first.
    pub rates: Vec<RateDemand>,
    /// Concurrency slots.
    pub slots: Vec<SlotDemand>,
    /// Usage accounts, the caller's first, then its quotas' (none for anonymous callers).
    pub accounts: Vec<Account>,
    /// Identifies this request's admission, slots, reservation and settlement in the store,
    /// so each is applied once however often a call is retried (empty when nothing is kept).
    pub lease: String,
    /// Longest a slot may be held (the request's deadline), so a crashed replica's slots free
    /// themselves.
    pub lease_ttl: Duration,
    /// Tokens reserved: prompt estimate plus the completion cap.
    pub reserved_tokens: u64,
    /// Prompt tokens estimated from the body (about four bytes a token).
    pub prompt_estimate: u64,
}

/// The authenticated caller as the limiter sees it.
#[derive(Clone, Copy, Debug)]
pub struct CallerAccount<'a> {
    /// Stable account id: `key:<namespace>/<name>` (survives key rotation) or `jwt:<sub>`.
    pub account: &'a str,
    /// Per-caller limits.
    pub limits: Option<&'a RateLimits>,
    /// Per-caller spend cap.
    pub budget: Option<&'a Budget>,
    /// LlmQuotas the caller shares.
    pub quotas: &'a [std::sync::Arc<CompiledQuota>],
}

impl Demand {
    /// The demand of a request reserving `reserve` by `caller` on the route `model` with
    /// `route_limits`.
    pub fn build(
        caller: Option<CallerAccount<'_>>,
        model: &str,
        route_limits: Option<&RateLimits>,
        reserve: TokenReserve,
        max_price: Price,
        lease_ttl: Duration,
    ) -> Self {
        let (prompt_estimate, completion) = (reserve.prompt, reserve.completion);
        let reserved_tokens = prompt_estimate + completion;
        let cap_at_limit = !reserve.asked;
        let mut demand = Self {
            rates: Vec::new(),
            slots: Vec::new(),
            accounts: Vec::new(),
            lease: String::new(),
            lease_ttl,
            reserved_tokens,
            prompt_estimate,
        };
        if let Some(caller) = caller {
            let base = account_prefix(caller.account);
            demand.add_limits(&base, Scope::Caller, caller.limits, cap_at_limit);
            let estimate_nanos = max_price.nanos(prompt_estimate, completion);
            let now = Timestamp::now();
            demand.add_account(None, caller.account, caller.budget, estimate_nanos, now);
            for (i, quota) in caller.quotas.iter().enumerate() {
                // Each quota once, however the configuration came to list it twice: its
                // buckets and budget would otherwise be charged twice per request.
                if caller.quotas[..i]
                    .iter()
                    .any(|q| q.account == quota.account)
                {
                    continue;
                }
                let base = account_prefix(&quota.account);
                demand.add_limits(&base, Scope::Quota, quota.limits.as_ref(), cap_at_limit);
                let id = Some(quota.id.clone());
                let budget = quota.budget.as_ref();
                demand.add_account(id, &quota.account, budget, estimate_nanos, now);
            }
        }
        if route_limits.is_some() {
            let base = account_prefix(&format!("route:{model}"));
            demand.add_limits(&base, Scope::Route, route_limits, cap_at_limit);
        }
        if !demand.is_empty() {
            demand.lease = new_lease();
        }
        demand
    }

    fn add_account(
        &mut self,
        quota: Option<String>,
        account: &str,
        budget: Option<&Budget>,
        estimate_nanos: i64,
        now: Timestamp,
    ) {
        let period = Period::of_budget(budget, now);
        self.accounts.push(Account {
            quota,
            usage: UsageAccount {
                key: usage_key(account, &period),
                ttl: period.ttl(now),
                period,
            },
            budget: budget.map(|b| BudgetDemand {
                limit_nanos: (b.usd * 1e9).round() as i64,
                estimate_nanos,
            }),
        });
    }

    /// The caller's own account.
    pub fn caller_account(&self) -> Option<&Account> {
        self.accounts.first().filter(|a| a.quota.is_none())
    }

    /// Whether any account has a budget.
    pub fn has_budget(&self) -> bool {
        self.accounts.iter().any(|a| a.budget.is_some())
    }

    /// The demand of a request that generates nothing (a token count): its request rates and
    /// concurrency slots only; no tokens, spend or usage.
    pub fn requests_only(mut self) -> Self {
        self.rates.retain(|rate| rate.kind == RateKind::Requests);
        self.accounts.clear();
        self.reserved_tokens = 0;
        self.prompt_estimate = 0;
        if self.is_empty() {
            self.lease.clear();
        }
        self
    }

    /// A copy that only counts usage (limits dropped): what a request admitted by another
    /// store still owes the shared usage counters.
    pub fn usage_only(&self) -> Self {
        let mut copy = Self {
            rates: Vec::new(),
            slots: Vec::new(),
            ..self.clone()
        };
        for account in &mut copy.accounts {
            account.budget = None;
        }
        copy
    }

    fn add_limits(
        &mut self,
        base: &str,
        scope: Scope,
        limits: Option<&RateLimits>,
        cap_at_limit: bool,
    ) {
        let Some(limits) = limits else { return };
        if let Some(limit) = limits.requests_per_minute {
            self.rates.push(RateDemand {
                key: format!("{base}:rpm"),
                kind: RateKind::Requests,
                scope,
                limit,
                cost: 1,
            });
        }
        if let Some(limit) = limits.tokens_per_minute {
            self.rates.push(RateDemand {
                key: format!("{base}:tpm"),
                kind: RateKind::Tokens,
                scope,
                limit,
                cost: if cap_at_limit {
                    self.reserved_tokens.min(limit)
                } else {
                    self.reserved_tokens
                },
            });
        }
        if let Some(limit) = limits.max_concurrent {
            self.slots.push(SlotDemand {
                key: format!("{base}:concurrent"),
                scope,
                limit: u64::from(limit),
            });
        }
    }

    /// Whether admission needs a store round trip (anything besides counting usage).
    pub fn limits_anything(&self) -> bool {
        !self.rates.is_empty() || !self.slots.is_empty() || self.has_budget()
    }

    /// Whether the request neither is limited nor has usage to count (an anonymous caller on
    /// a route without limits): no store is involved at all.
    pub fn is_empty(&self) -> bool {
        !self.limits_anything() && self.accounts.is_empty()
    }

    /// The same demand with every limit cut to a per-replica share (at least 1), for the local
    /// fallback while Redis is unreachable.
    pub fn shared_by(&self, replicas: u64) -> Self {
        let share = |limit: u64| limit.div_ceil(replicas.max(1)).max(1);
        let mut local = self.clone();
        // A lease of its own: the shared one may be cancelled in Redis by now, and this
        // request's usage still has to reach Redis under a lease nobody else finishes.
        local.lease = new_lease();
        for rate in &mut local.rates {
            rate.limit = share(rate.limit);
        }
        for slot in &mut local.slots {
            slot.limit = share(slot.limit);
        }
        for budget in local.accounts.iter_mut().filter_map(|a| a.budget.as_mut()) {
            budget.limit_nanos /= replicas.max(1) as i64;
        }
        local
    }
}

/// A fresh lease id (random, no syscall).
fn new_lease() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
