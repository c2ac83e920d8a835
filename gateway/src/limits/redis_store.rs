//! The Redis store: one Lua script per admission and one per settlement, each a single round
//! trip, behind a short timeout and a breaker so an unreachable or stalled Redis costs at most
//! one timeout before requests take the fallback path.
//!
//! A call that times out may still run once Redis wakes up, so both scripts are idempotent by
//! lease id: each lease has a record in Redis (admitted, settled or cancelled) that a retried
//! settlement or a compensating cancel consults (see `admit.lua`, `settle.lua` and
//! [`super::journal`]).

use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::demand::{Demand, KEY_PREFIX};
use super::redis_breaker::Breaker;
use super::{Outcome, RateKind, RateStatus, Refused, StoreError, UsageTotals, Verdict};

/// How long a lease record outlives its lease (admitted) or its settlement (settled,
/// cancelled): the window in which a retried call is recognised as a duplicate. Retries of a
/// call that may have run stop before it closes (see [`super::journal`]).
pub const RECORD_MARGIN: Duration = Duration::from_secs(300);

/// How a finished lease is closed in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The request ran: count its usage and release what it held.
    Settle,
    /// The admission's answer never arrived: undo it (or forbid it, if it has not run yet).
    Cancel,
}

impl Finish {
    fn as_arg(self) -> &'static str {
        match self {
            Self::Settle => "settle",
            Self::Cancel => "cancel",
        }
    }
}

/// The Redis key of a lease's record.
fn record_key(lease: &str) -> String {
    format!("{KEY_PREFIX}:lease:{lease}")
}

/// The Redis key of the sorted set holding a usage account's budget reservations.
fn held_key(usage_key: &str) -> String {
    format!("{usage_key}:held")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Limits shared by every replica through one Redis.
pub struct RedisStore {
    connection: ConnectionManager,
    admit: Script,
    settle: Script,
    timeout: Duration,
    breaker: Breaker,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects lazily (a gateway starts even while Redis is down); `timeout` bounds every
    /// call, connecting included.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::not_sent(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(100))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::not_sent(e.to_string()))?;
        Ok(Self {
            connection,
            admit: Script::new(include_str!("admit.lua")),
            settle: Script::new(include_str!("settle.lua")),
            timeout,
            breaker: Breaker::default(),
        })
    }

    /// Whether the last calls succeeded (the breaker is closed).
    pub fn is_up(&self) -> bool {
        self.breaker.is_closed()
    }

    /// Admits `demand` entirely or not at all.
    pub async fn admit(&self, demand: &Demand) -> Result<Verdict, StoreError> {
        let mut invocation = self.admit.prepare_invoke();
        for rate in &demand.rates {
            invocation.key(&rate.key);
        }
        for slot in &demand.slots {
            invocation.key(&slot.key);
        }
        invocation.key(record_key(&demand.lease));
        if let Some(usage) = &demand.usage {
            invocation.key(&usage.key).key(held_key(&usage.key));
        }
        invocation
            .arg(demand.rates.len())
            .arg(demand.slots.len())
            .arg(u8::from(demand.usage.is_some()))
            .arg(u8::from(demand.budget.is_some() && demand.usage.is_some()))
            .arg(&demand.lease)
            .arg(demand.lease_ttl.as_micros() as u64)
            .arg(millis(demand.lease_ttl + RECORD_MARGIN));
        for rate in &demand.rates {
            invocation.arg(rate.limit).arg(rate.cost);
        }
        for slot in &demand.slots {
            invocation.arg(slot.limit);
        }
        if let Some(usage) = &demand.usage {
            invocation.arg(usage.ttl.as_millis() as u64);
        }
        if let Some(budget) = &demand.budget {
            invocation
                .arg(budget.limit_nanos)
                .arg(budget.estimate_nanos);
        }
        let reply: Vec<i64> = self
            .call(async {
                let mut connection = self.connection.clone();
                invocation.invoke_async(&mut connection).await
            })
            .await?;
        decode_verdict(&reply, demand)
    }

    /// Settles (or cancels) a lease with what the request used; a lease already finished is
    /// left alone, so this is safe to retry.
    pub async fn finish(
        &self,
        how: Finish,
        demand: &Demand,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        // A settlement corrects token buckets by the real usage; a cancel refunds every bucket.
        let tokens: Vec<_> = demand
            .rates
            .iter()
            .filter(|r| how == Finish::Cancel || r.kind == RateKind::Tokens)
            .collect();
        let mut invocation = self.settle.prepare_invoke();
        for rate in &tokens {
            invocation.key(&rate.key);
        }
        for slot in &demand.slots {
            invocation.key(&slot.key);
        }
        invocation.key(record_key(&demand.lease));
        if let Some(usage) = &demand.usage {
            invocation.key(&usage.key).key(held_key(&usage.key));
        }
        invocation
            .arg(how.as_arg())
            .arg(tokens.len())
            .arg(demand.slots.len())
            .arg(u8::from(demand.usage.is_some()))
            .arg(&demand.lease)
            .arg(millis(RECORD_MARGIN));
        let used = match how {
            Finish::Settle => (outcome.input_tokens + outcome.output_tokens) as i64,
            Finish::Cancel => 0,
        };
        for rate in &tokens {
            invocation.arg(rate.limit).arg(used - rate.cost as i64);
        }
        if let Some(usage) = &demand.usage {
            let estimate = demand.budget.map_or(0, |b| b.estimate_nanos);
            invocation
                .arg(millis(usage.ttl))
                .arg(outcome.input_tokens)
                .arg(outcome.output_tokens)
                .arg(outcome.spend_nanos)
                .arg(estimate)
                .arg(outcome.cache_read_tokens)
                .arg(outcome.cache_write_tokens)
                .arg(outcome.reasoning_tokens);
        }
        self.call(async {
            let mut connection = self.connection.clone();
            invocation.invoke_async::<i64>(&mut connection).await
        })
        .await
        .map(drop)
    }

    /// A caller's usage in one period.
    pub async fn usage(&self, key: &str) -> Result<UsageTotals, StoreError> {
        let fields: Vec<Option<i64>> = self
            .call(async {
                let mut connection = self.connection.clone();
                redis::cmd("HMGET")
                    .arg(key)
                    .arg(&llm_gateway_crds::usage::USAGE_FIELDS)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let get = |i: usize| fields.get(i).copied().flatten().unwrap_or(0);
        Ok(UsageTotals {
            requests: get(0).max(0) as u64,
            input_tokens: get(1).max(0) as u64,
            output_tokens: get(2).max(0) as u64,
            spend_nanos: get(3),
            reserved_nanos: get(4),
            cache_read_tokens: get(5).max(0) as u64,
            cache_write_tokens: get(6).max(0) as u64,
            reasoning_tokens: get(7).max(0) as u64,
        })
    }

    /// Pings Redis even while the breaker is open (health probes), feeding the breaker.
    pub async fn ping(&self) -> bool {
        let mut connection = self.connection.clone();
        let reply = tokio::time::timeout(
            self.timeout.max(Duration::from_millis(100)),
            redis::cmd("PING").query_async::<String>(&mut connection),
        )
        .await;
        let ok = matches!(reply, Ok(Ok(_)));
        self.breaker.record(ok);
        ok
    }

    /// Runs one Redis call under the timeout and the breaker.
    async fn call<T>(
        &self,
        future: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        if !self.breaker.allow() {
            return Err(StoreError::not_sent("circuit breaker open"));
        }
        let result = match tokio::time::timeout(self.timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if never_ran(&e) => Err(StoreError::not_sent(e.to_string())),
            Ok(Err(e)) => Err(StoreError::unknown(e.to_string())),
            Err(_) => Err(StoreError::unknown(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        };
        self.breaker.record(result.is_ok());
        result
    }
}

/// Whether Redis certainly did not run the call: it was never connected, or it refused the
/// command before running it (loading, read-only replica, script not loaded, failover).
fn never_ran(error: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::NoScript
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
            )
        )
}

fn decode_verdict(reply: &[i64], demand: &Demand) -> Result<Verdict, StoreError> {
    let malformed = || StoreError::unknown(format!("unexpected script reply {reply:?}"));
    match reply {
        [1, statuses @ ..] if statuses.len() == demand.rates.len() * 2 => Ok(Verdict::Admitted(
            statuses
                .chunks_exact(2)
                .map(|pair| RateStatus {
                    remaining: pair[0].max(0) as u64,
                    reset: Duration::from_micros(pair[1].max(0) as u64),
                })
                .collect(),
        )),
        [0, what, index, retry_after_us] => {
            let index = usize::try_from(*index - 1).map_err(|_| malformed())?;
            let what = match what {
                1 => Refused::Rate(index),
                2 => Refused::Slots(index),
                3 => Refused::Budget,
                // Only a lease this gateway already gave up on; nobody awaits the answer.
                4 => return Err(StoreError::not_sent("the lease was cancelled")),
                _ => return Err(malformed()),
            };
            let retry_after = u64::try_from(*retry_after_us)
                .ok()
                .map(Duration::from_micros);
            Ok(Verdict::Refused { what, retry_after })
        }
        _ => Err(malformed()),
    }
}
