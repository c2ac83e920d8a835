//! Admission control: rate limits (requests and tokens per minute), concurrency, budgets, and
//! usage accounting, per caller and per route.
//!
//! One [`Limiter`] with two stores: Redis (one atomic Lua script per admission, shared by every
//! replica) and in memory (the embedded default without Redis, and the fallback while Redis is
//! unreachable with `failOpen`, at a per-replica share of each limit). A request's [`Demand`]
//! reserves its estimated tokens and spend at admission; the [`Reservation`] settles them
//! against the real usage when the response or stream ends, or the client goes away.

pub mod demand;
pub mod gcra;
pub mod headers;
pub mod journal;
pub mod limiter;
pub mod local;
pub mod meter;
pub mod migrate;
pub mod outstanding;
pub mod period;
pub mod redis_breaker;
pub mod redis_store;
pub mod reservation;
pub mod script_call;
pub mod slots;

use std::time::Duration;

pub use demand::Demand;
pub use limiter::{Limiter, LimiterSettings};
pub use meter::Meter;
pub use reservation::Reservation;

/// Window of the per-minute limits.
pub const MINUTE_US: f64 = 60_000_000.0;

/// What a rate bucket counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateKind {
    /// Requests per minute.
    Requests,
    /// Prompt plus completion tokens per minute.
    Tokens,
}

impl RateKind {
    /// Suffix of OpenAI's `x-ratelimit-*-{requests,tokens}` headers.
    pub fn header_suffix(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
        }
    }
}

/// Whom a limit is shared by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One caller (an ApiKey or a token subject).
    Caller,
    /// Every caller of a route.
    Route,
    /// Every caller an LlmQuota selects.
    Quota,
}

impl Scope {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Caller => "caller",
            Self::Route => "route",
            Self::Quota => "quota",
        }
    }
}

/// The state of one rate bucket after an admission, for the response headers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RateStatus {
    /// Units still admittable now.
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The rate bucket at this index of [`Demand::rates`] is empty.
    Rate(usize),
    /// The concurrency limit at this index of [`Demand::slots`] is reached.
    Slots(usize),
    /// The budget of the account at this index of [`Demand::accounts`] is spent.
    Budget(usize),
}

/// A store's answer to a demand.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Admitted; one status per rate bucket, in demand order.
    Admitted(Vec<RateStatus>),
    /// Refused; `retry_after` is `None` when waiting cannot help (the cost exceeds the limit).
    Refused {
        /// The limit that refused.
        what: Refused,
        /// When the request could fit.
        retry_after: Option<Duration>,
    },
}

/// What a finished request used, to settle its reservation (defined with the metrics that
/// count it, which must not import the limiter).
pub use crate::chargeback::Billed as Outcome;

/// Usage counted for one caller in one period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageTotals {
    /// Requests finished.
    pub requests: u64,
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Completion tokens, reasoning included.
    pub output_tokens: u64,
    /// Spend in billionths of a US dollar.
    pub spend_nanos: i64,
    /// Spend reserved by requests in flight.
    pub reserved_nanos: i64,
    /// Of the prompt tokens, those read from a provider's cache.
    pub cache_read_tokens: u64,
    /// Of the prompt tokens, those written to a provider's cache.
    pub cache_write_tokens: u64,
    /// Of the completion tokens, reasoning.
    pub reasoning_tokens: u64,
}

impl UsageTotals {
    /// Both totals added up.
    pub fn plus(self, other: Self) -> Self {
        Self {
            requests: self.requests + other.requests,
            input_tokens: self.input_tokens + other.input_tokens,
            output_tokens: self.output_tokens + other.output_tokens,
            spend_nanos: self.spend_nanos + other.spend_nanos,
            reserved_nanos: self.reserved_nanos + other.reserved_nanos,
            cache_read_tokens: self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens: self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens: self.reasoning_tokens + other.reasoning_tokens,
        }
    }

    /// Counts one finished request's `outcome` in (`sign` 1) or out (-1).
    pub fn count(&mut self, outcome: &Outcome, sign: i64) {
        let apply =
            |value: &mut u64, by: u64| *value = value.saturating_add_signed(sign * by as i64);
        apply(&mut self.requests, 1);
        apply(&mut self.input_tokens, outcome.input_tokens);
        apply(&mut self.output_tokens, outcome.output_tokens);
        apply(&mut self.cache_read_tokens, outcome.cache_read_tokens);
        apply(&mut self.cache_write_tokens, outcome.cache_write_tokens);
        apply(&mut self.reasoning_tokens, outcome.reasoning_tokens);
        self.spend_nanos += sign * outcome.spend_nanos;
    }
}

/// A Redis failure (unreachable, timed out, or refused by the breaker).
#[derive(Debug, thiserror::Error)]
#[error("redis: {message}")]
pub struct StoreError {
    /// What went wrong (never holds a key or a prompt).
    pub message: String,
    /// Whether Redis may still run the call (it was sent and its answer did not come back in
    /// time); only such failures need a compensation or an idempotent retry.
    pub maybe_executed: bool,
}

impl StoreError {
    /// A call that never reached Redis (breaker open, connection refused, bad URL).
    pub fn not_sent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            maybe_executed: false,
        }
    }

    /// A call whose fate is unknown (timed out or cut after it was written to the socket).
    pub fn unknown(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            maybe_executed: true,
        }
    }
}
