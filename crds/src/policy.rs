//! Policy shapes shared by kinds: timeouts, circuit breakers, retries, rate limits and budgets.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// How long the gateway waits on an upstream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Time to establish the TCP and TLS connection.
    #[serde(default = "Timeouts::default_connect")]
    pub connect: Duration,
    /// Time from sending the request until response headers arrive.
    #[serde(default = "Timeouts::default_first_byte")]
    pub first_byte: Duration,
    /// Upper bound on a whole request, including a streamed body.
    #[serde(default = "Timeouts::default_total")]
    pub total: Duration,
    /// Longest silence between two events of a streamed response; a stalled stream is ended
    /// with an error event.
    #[serde(default = "Timeouts::default_stream_idle")]
    pub stream_idle: Duration,
}

impl Timeouts {
    fn default_connect() -> Duration {
        Duration::from_secs(2)
    }
    fn default_first_byte() -> Duration {
        Duration::from_secs(30)
    }
    fn default_total() -> Duration {
        Duration::from_secs(300)
    }
    fn default_stream_idle() -> Duration {
        Duration::from_secs(60)
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Self::default_connect(),
            first_byte: Self::default_first_byte(),
            total: Self::default_total(),
            stream_idle: Self::default_stream_idle(),
        }
    }
}

/// When to stop sending traffic to a failing target, and when to try it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Failures within `window` that open the breaker.
    #[serde(default = "CircuitBreaker::default_failure_threshold")]
    #[schemars(range(min = 1, max = 10000))]
    pub failure_threshold: u32,
    /// Sliding window in which failures are counted.
    #[serde(default = "CircuitBreaker::default_window")]
    pub window: Duration,
    /// How long an open breaker rejects traffic before letting probes through.
    #[serde(default = "CircuitBreaker::default_open_for")]
    pub open_for: Duration,
    /// Requests let through while half-open; all must succeed to close the breaker.
    #[serde(default = "CircuitBreaker::default_half_open_probes")]
    #[schemars(range(min = 1, max = 100))]
    pub half_open_probes: u32,
}

impl CircuitBreaker {
    fn default_failure_threshold() -> u32 {
        5
    }
    fn default_window() -> Duration {
        Duration::from_secs(30)
    }
    fn default_open_for() -> Duration {
        Duration::from_secs(30)
    }
    fn default_half_open_probes() -> u32 {
        1
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            failure_threshold: Self::default_failure_threshold(),
            window: Self::default_window(),
            open_for: Self::default_open_for(),
            half_open_probes: Self::default_half_open_probes(),
        }
    }
}

/// An upstream outcome that may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RetryOn {
    /// HTTP 429 Too Many Requests.
    #[serde(rename = "429")]
    TooManyRequests,
    /// Any HTTP 5xx status.
    #[serde(rename = "5xx")]
    ServerError,
    /// The upstream did not answer within its timeout.
    #[serde(rename = "timeout")]
    Timeout,
    /// The connection could not be established or was reset before any response.
    #[serde(rename = "connect")]
    Connect,
}

/// Exponential backoff between attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.base) <= duration(self.max)").message("backoff.base must not exceed backoff.max"))]
pub struct Backoff {
    /// Delay before the first retry; doubles each attempt, with jitter.
    #[serde(default = "Backoff::default_base")]
    pub base: Duration,
    /// Largest delay between two attempts.
    #[serde(default = "Backoff::default_max")]
    pub max: Duration,
}

impl Backoff {
    fn default_base() -> Duration {
        Duration::from_millis(100)
    }
    fn default_max() -> Duration {
        Duration::from_secs(2)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Self::default_base(),
            max: Self::default_max(),
        }
    }
}

/// How failed upstream attempts are retried before anything reaches the client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Extra attempts after the first one (0 disables retries).
    #[serde(default = "Retry::default_attempts")]
    #[schemars(range(min = 0, max = 10))]
    pub attempts: u32,
    /// Delay between attempts.
    #[serde(default)]
    pub backoff: Backoff,
    /// Outcomes that are retried.
    #[serde(default = "Retry::default_on")]
    pub on: Vec<RetryOn>,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: Self::default_attempts(),
            backoff: Backoff::default(),
            on: Self::default_on(),
        }
    }
}

impl Retry {
    fn default_attempts() -> u32 {
        2
    }
    fn default_on() -> Vec<RetryOn> {
        vec![
            RetryOn::TooManyRequests,
            RetryOn::ServerError,
            RetryOn::Timeout,
            RetryOn::Connect,
        ]
    }
}

/// Request and token rates, shared by every caller the limit applies to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    /// Requests admitted per minute.
    #[schemars(range(min = 1))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Prompt plus completion tokens admitted per minute (reserved at admission, settled after).
    #[schemars(range(min = 1))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Requests in flight at once.
    #[schemars(range(min = 1))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
}

/// How often a budget starts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BudgetPeriod {
    /// Every calendar day (UTC).
    Daily,
    /// Every ISO week (UTC, starting Monday).
    Weekly,
    /// Every calendar month (UTC).
    Monthly,
}

impl BudgetPeriod {
    /// The name the API spells it with (`daily`, `weekly`, `monthly`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }
}

/// A spend cap in US dollars, computed from the providers' model prices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Dollars that may be spent per period.
    #[schemars(range(min = 0.0))]
    pub usd: f64,
    /// When the spend counter starts over.
    pub period: BudgetPeriod,
}

/// What keeps a conversation on one target of a weighted route, so the provider's prompt cache
/// is hit (each target caches on its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CacheAffinity {
    /// Requests that name a cache key (`prompt_cache_key`) go to the target it hashes to.
    #[default]
    Key,
    /// So do requests without one, keyed by the caller and the start of the conversation.
    Conversation,
    /// Every request goes by the weights alone.
    Off,
}
