//! The Redis store: one Lua script per admission and one per settlement, each a single round
//! trip, behind a short timeout and a breaker so an unreachable or stalled Redis costs at most
//! one timeout before requests take the fallback path.
//!
//! A call that times out may still run once Redis wakes up, so both scripts are idempotent by
//! lease id: each lease has a record in Redis (admitted, settled or cancelled) that a retried
//! settlement or a compensating cancel consults (see `admit.lua`, `settle.lua` and
//! [`super::journal`]).
//!
//! On a Redis Cluster a demand is split by hash slot ([`super::slots`]): one script call per
//! account, each with its own lease record, all sent at once. A refusal by any part cancels
//! the parts that admitted before it is returned, so a refused request keeps nothing; in the
//! moment between, a concurrent request may see the cancelled reservation and be refused too
//! (never admitted beyond a limit).

use std::time::Duration;

use futures_util::future::join_all;
use redis::Script;

use super::demand::Demand;
use super::redis_breaker::Breaker;
use super::slots::{self, Part};
use super::{Outcome, RateStatus, Refused, StoreError, UsageTotals, Verdict};
use crate::redis_conn::RedisConnection;

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
    /// The script's `mode` argument.
    pub(super) fn as_arg(self) -> &'static str {
        match self {
            Self::Settle => "settle",
            Self::Cancel => "cancel",
        }
    }
}

/// A store's answer to an admission.
#[derive(Debug)]
pub struct Decided {
    /// Admitted or refused.
    pub verdict: Verdict,
    /// A refusal whose other parts (in a cluster) were admitted and could not be undone yet:
    /// the caller must queue a cancel.
    pub undo_owed: bool,
}

/// A settlement or cancel that did not land in every part.
#[derive(Debug)]
pub struct Unfinished {
    /// The first failure (`maybe_executed` if any failed part may have run).
    pub error: StoreError,
    /// The demand narrowed to the parts that failed: what a retry must still do.
    pub remaining: Demand,
}

/// Limits shared by every replica through one Redis or one Redis Cluster.
pub struct RedisStore {
    connection: RedisConnection,
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
    /// call, connecting included. With `cluster`, `url` lists seed nodes of a Redis Cluster.
    pub fn new(url: &str, cluster: bool, timeout: Duration) -> Result<Self, StoreError> {
        let connection =
            RedisConnection::open(url, cluster, timeout).map_err(StoreError::not_sent)?;
        Ok(Self {
            connection,
            admit: Script::new(include_str!("admit.lua")),
            settle: Script::new(include_str!("settle.lua")),
            timeout,
            breaker: Breaker::default(),
        })
    }

    /// The connection (for the background key migration).
    pub fn connection(&self) -> &RedisConnection {
        &self.connection
    }

    /// Whether the last calls succeeded (the breaker is closed).
    pub fn is_up(&self) -> bool {
        self.breaker.is_closed()
    }

    /// Admits `demand` entirely or not at all. In a cluster every slot's part is admitted at
    /// once; when one refuses, the others are cancelled before the refusal is returned, and
    /// when one fails, the error says the call may have run, so the limiter cancels them all.
    pub async fn admit(&self, demand: &Demand) -> Result<Decided, StoreError> {
        let parts = slots::parts(demand, self.connection.is_cluster());
        let replies = join_all(parts.iter().map(|part| async move {
            let call = slots::admit_call(&self.admit, demand, part, RECORD_MARGIN);
            let reply: Vec<i64> = self
                .call(async {
                    let mut connection = self.connection.clone();
                    call.invoke(&mut connection).await
                })
                .await?;
            decode_verdict(&reply, part)
        }))
        .await;
        let mut statuses = vec![RateStatus::default(); demand.rates.len()];
        let (mut refusal, mut failure) = (None, None);
        for (part, reply) in parts.iter().zip(replies) {
            match reply {
                Ok(Verdict::Admitted(part_statuses)) => {
                    for (&index, status) in part.rates.iter().zip(part_statuses) {
                        statuses[index] = status;
                    }
                }
                Ok(refused) => {
                    refusal.get_or_insert(refused);
                }
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        // A refusal stands whatever else happened: the other parts are undone, now or (when
        // that fails) by the journal, and the request is refused, never served elsewhere.
        if let Some(verdict) = refusal {
            let cancelled = parts.len() == 1
                || self
                    .finish(Finish::Cancel, demand, Outcome::default())
                    .await
                    .is_ok();
            return Ok(Decided {
                verdict,
                undo_owed: !cancelled,
            });
        }
        if let Some(mut error) = failure {
            // Another part may have been admitted: it must be undone too.
            error.maybe_executed |= parts.len() > 1;
            return Err(error);
        }
        Ok(Decided {
            verdict: Verdict::Admitted(statuses),
            undo_owed: false,
        })
    }

    /// Settles (or cancels) a lease with what the request used; a lease already finished is
    /// left alone, so this is safe to retry (each slot's part keeps its own record).
    /// A part that fails leaves the others done: what is left to retry is only the failed
    /// parts ([`Unfinished::remaining`]), since a done part must not be redone once its record
    /// has expired.
    pub async fn finish(
        &self,
        how: Finish,
        demand: &Demand,
        outcome: Outcome,
    ) -> Result<(), Unfinished> {
        let parts = slots::parts(demand, self.connection.is_cluster());
        let results = join_all(parts.iter().map(|part| {
            let call = slots::finish_call(&self.settle, how, demand, part, &outcome, RECORD_MARGIN);
            self.call(async move {
                let mut connection = self.connection.clone();
                call.invoke::<i64>(&mut connection).await
            })
        }))
        .await;
        let mut failed = Vec::new();
        let mut error: Option<StoreError> = None;
        for (part, result) in parts.iter().zip(results) {
            if let Err(e) = result {
                failed.push(part);
                match &mut error {
                    Some(first) => first.maybe_executed |= e.maybe_executed,
                    None => error = Some(e),
                }
            }
        }
        let Some(error) = error else { return Ok(()) };
        let remaining = if failed.len() == parts.len() {
            demand.clone()
        } else {
            slots::only(demand, &failed)
        };
        Err(Unfinished { error, remaining })
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
            // A cluster client resends on its own after a dropped connection, so its last
            // error says nothing about whether an earlier attempt ran.
            Ok(Err(e)) if never_ran(&e) && !self.connection.is_cluster() => {
                Err(StoreError::not_sent(e.to_string()))
            }
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
                    | ServerErrorKind::CrossSlot
            )
        )
}

/// The verdict of one part's `admit.lua` reply, indices mapped back into the demand.
fn decode_verdict(reply: &[i64], part: &Part) -> Result<Verdict, StoreError> {
    let malformed = || StoreError::unknown(format!("unexpected script reply {reply:?}"));
    match reply {
        [1, statuses @ ..] if statuses.len() == part.rates.len() * 2 => Ok(Verdict::Admitted(
            statuses
                .chunks_exact(2)
                .map(|pair| RateStatus {
                    remaining: pair[0].max(0) as u64,
                    reset: Duration::from_micros(pair[1].max(0) as u64),
                })
                .collect(),
        )),
        [0, what, index, retry_after_us] => {
            let local = usize::try_from(*index - 1).map_err(|_| malformed())?;
            let global = |indices: &[usize]| indices.get(local).copied().ok_or_else(malformed);
            let what = match what {
                1 => Refused::Rate(global(&part.rates)?),
                2 => Refused::Slots(global(&part.slots)?),
                3 => Refused::Budget(global(&part.accounts)?),
                // The lease is on record already: cancelled by this gateway, or admitted by a
                // resend of this very call. Either way a cancel is owed, and harmless.
                4 => return Err(StoreError::unknown("the lease is already on record")),
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
