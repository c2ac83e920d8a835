//! The limiter: picks the store for each admission (Redis when configured and reachable, else
//! memory or a fast refusal, per `onUnavailable`) and remembers it for the settlement.
//!
//! With Redis, every request's usage ends up in Redis exactly once: a settlement that fails is
//! queued in the [`Journal`] and retried, a request admitted from memory during an outage has
//! its usage written to Redis once it is back, and an admission whose answer timed out is
//! compensated (its lease cancelled) in case Redis runs it late.

use std::sync::Arc;
use std::time::Duration;

use llm_gateway_crds::llm_gateway::OnUnavailable;

use super::demand::Demand;
use super::journal::Journal;
use super::local::LocalStore;
use super::outstanding::{Outstanding, Ticket};
use super::redis_store::{Decided, Finish, RedisStore, Unfinished};
use super::{Outcome, Refused, StoreError, UsageTotals, Verdict};
use crate::metrics::{LimiterLabels, Metrics};

/// How the limiter is set up (from settings; see `args.rs`).
#[derive(Clone, Debug)]
pub struct LimiterSettings {
    /// `redis://…`; `None` keeps every limit in memory, per replica.
    pub redis_url: Option<String>,
    /// What to do while Redis is unreachable.
    pub on_unavailable: OnUnavailable,
    /// Longest wait for one Redis call.
    pub redis_timeout: Duration,
    /// The URL lists seed nodes of a Redis Cluster.
    pub redis_cluster: bool,
    /// Replicas sharing the limits; the in-memory fallback admits `limit / replicas`.
    pub replicas: u64,
}

/// Longest wait of a request refused for a concurrency slot that this replica is releasing
/// (a settlement's round trip, or the journal's cancel of an admission that ran late).
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// Which store admitted a request (its settlement goes to the same one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// Shared Redis.
    Redis,
    /// This replica's memory.
    Local,
}

/// State of the shared store, for health endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisState {
    /// No Redis configured: limits are per replica.
    Disabled,
    /// Reachable.
    Up,
    /// Unreachable; `failOpen` serves from memory, `failClosed` refuses.
    Down,
}

impl RedisState {
    /// Lower-case name for JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// Admission and settlement for every request.
#[derive(Debug)]
pub struct Limiter {
    redis: Option<Arc<RedisStore>>,
    journal: Option<Arc<Journal>>,
    outstanding: Arc<Outstanding>,
    local: LocalStore,
    settings: LimiterSettings,
    metrics: Arc<Metrics>,
}

/// Admission failed before a verdict: Redis is unreachable and the policy is `failClosed`.
#[derive(Debug)]
pub struct Unavailable;

impl Limiter {
    /// A limiter; with a Redis URL it connects lazily. Call inside a Tokio runtime (the
    /// journal's worker is spawned here).
    pub fn new(settings: LimiterSettings, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let redis = settings
            .redis_url
            .as_deref()
            .map(|url| {
                RedisStore::new(url, settings.redis_cluster, settings.redis_timeout).map(Arc::new)
            })
            .transpose()?;
        let journal = redis
            .as_ref()
            .map(|redis| Journal::start(redis.clone(), metrics.clone()));
        if let Some(redis) = redis.as_ref().filter(|r| !r.connection().is_cluster()) {
            tokio::spawn(super::migrate::run(redis.connection().clone()));
        }
        Ok(Self {
            redis,
            journal,
            outstanding: Arc::default(),
            local: LocalStore::default(),
            settings,
            metrics,
        })
    }

    /// The shared store's state.
    pub fn redis_state(&self) -> RedisState {
        match &self.redis {
            None => RedisState::Disabled,
            Some(redis) if redis.is_up() => RedisState::Up,
            Some(_) => RedisState::Down,
        }
    }

    /// Checks Redis now (for health endpoints) and returns its state.
    pub async fn probe(&self) -> RedisState {
        let Some(redis) = &self.redis else {
            return RedisState::Disabled;
        };
        let up = redis.ping().await;
        self.metrics.redis_up.set(i64::from(up));
        if up { RedisState::Up } else { RedisState::Down }
    }

    /// The configured failure mode.
    pub fn on_unavailable(&self) -> OnUnavailable {
        self.settings.on_unavailable
    }

    /// Decides `demand`; the returned store must settle it. On the local fallback the demand's
    /// limits become this replica's share, so settle the demand as left here. A refusal for a
    /// concurrency slot this replica is still releasing waits for the release and asks again
    /// (see [`super::outstanding`]).
    pub async fn admit(&self, demand: &mut Demand) -> Result<(Store, Verdict), Unavailable> {
        // Asked before deciding: a release may land while the store decides.
        let releasing = self.outstanding.releases_any(demand);
        let (mut store, mut label, mut verdict) = self.decide(demand).await?;
        if let Verdict::Refused {
            what: Refused::Slots(index),
            ..
        } = verdict
            && let Some(slot) = demand.slots.get(index)
            && (releasing || self.outstanding.releases(&slot.key))
            && self
                .outstanding
                .wait_released(&slot.key, RELEASE_WAIT)
                .await
        {
            (store, label, verdict) = match store {
                // A refusal in Redis wrote nothing, so the same lease may ask again.
                Store::Redis => self.decide(demand).await?,
                // The demand is already in its local form (a fallback shared it out once).
                Store::Local => (store, label, self.local.admit(demand)),
            };
        }
        if let Some(label) = label {
            self.count_verdict(label, &verdict);
        }
        Ok((store, verdict))
    }

    /// One admission attempt: the store that decided, its metric label (none when nothing was
    /// limited, so nothing was decided), and its verdict.
    async fn decide(
        &self,
        demand: &mut Demand,
    ) -> Result<(Store, Option<&'static str>, Verdict), Unavailable> {
        let Some(redis) = &self.redis else {
            return Ok((Store::Local, Some("memory"), self.local.admit(demand)));
        };
        if !demand.limits_anything() {
            return Ok((Store::Redis, None, Verdict::Admitted(Vec::new())));
        }
        let answer = {
            let in_flight = CancelIfAbandoned::new(self, demand);
            let answer = redis.admit(in_flight.demand).await;
            in_flight.answered();
            answer
        };
        match answer {
            Ok(Decided { verdict, undo_owed }) => {
                if undo_owed {
                    self.compensate(demand.clone());
                }
                self.metrics.redis_up.set(1);
                Ok((Store::Redis, Some("redis"), verdict))
            }
            Err(error) => {
                self.redis_error("admit", &error);
                if error.maybe_executed {
                    self.compensate(demand.clone());
                }
                match self.settings.on_unavailable {
                    OnUnavailable::FailClosed => {
                        self.count("redis", "unavailable");
                        Err(Unavailable)
                    }
                    OnUnavailable::FailOpen => {
                        *demand = demand.shared_by(self.settings.replicas);
                        let verdict = self.local.admit(demand);
                        Ok((Store::Local, Some("local_fallback"), verdict))
                    }
                }
            }
        }
    }

    /// Counts the settlement of `demand` as outstanding until the ticket is dropped (shutdown
    /// waits for outstanding settlements, see [`Limiter::flush`]; refused admissions for the
    /// slots it releases wait too).
    pub fn ticket(&self, demand: &Demand) -> Ticket {
        self.outstanding.ticket(demand)
    }

    /// Settles an admitted demand in the store that admitted it. With Redis, usage always
    /// goes to Redis (a request admitted from memory during an outage too), retried by the
    /// journal until it lands.
    pub async fn settle(&self, store: Store, demand: Demand, outcome: Outcome, ticket: Ticket) {
        let (Some(redis), Some(journal)) = (&self.redis, &self.journal) else {
            self.local.settle(&demand, outcome);
            return;
        };
        let demand = match store {
            Store::Redis => demand,
            Store::Local => {
                self.local.settle(&demand, outcome);
                demand.usage_only()
            }
        };
        if demand.accounts.is_empty() && demand.slots.is_empty() && demand.rates.is_empty() {
            return;
        }
        if let Err(Unfinished { error, remaining }) =
            redis.finish(Finish::Settle, &demand, outcome).await
        {
            self.redis_error("settle", &error);
            tracing::warn!(%error, "usage could not be written to Redis yet; retrying in the background");
            journal.push(
                Finish::Settle,
                remaining,
                outcome,
                error.maybe_executed,
                ticket,
            );
        }
    }

    /// Waits (at most `limit`) for outstanding settlements to land; returns how many did not.
    pub async fn flush(&self, limit: std::time::Duration) -> usize {
        self.outstanding.wait_idle(limit).await
    }

    /// Undoes an admission that may run in Redis after its caller stopped waiting.
    fn compensate(&self, demand: Demand) {
        if let Some(journal) = &self.journal {
            let ticket = self.ticket(&demand);
            journal.push(Finish::Cancel, demand, Outcome::default(), true, ticket);
        }
    }

    /// A caller's usage in the period of `key`: from Redis when configured (plus what this
    /// replica served that has not reached Redis yet), else from memory.
    pub async fn usage(&self, key: &str) -> Result<UsageTotals, StoreError> {
        let (Some(redis), Some(journal)) = (&self.redis, &self.journal) else {
            return Ok(self.local.usage(key));
        };
        let local = journal.unlanded(key);
        let shared = redis.usage(key).await.inspect_err(|e| {
            self.redis_error("usage", e);
        })?;
        Ok(shared.plus(local))
    }

    fn count_verdict(&self, store: &'static str, verdict: &Verdict) {
        let decision = match verdict {
            Verdict::Admitted(_) => "admitted",
            Verdict::Refused { .. } => "refused",
        };
        self.count(store, decision);
    }

    fn count(&self, store: &'static str, decision: &'static str) {
        self.metrics
            .limiter_decisions
            .get_or_create(&LimiterLabels { store, decision })
            .inc();
    }

    fn redis_error(&self, operation: &'static str, error: &StoreError) {
        tracing::debug!(%error, operation, "redis call failed");
        self.metrics.redis_up.set(0);
        self.metrics
            .redis_errors
            .get_or_create(&crate::metrics::RedisErrorLabels { operation })
            .inc();
    }
}

/// Cancels an admission whose caller stopped waiting while the script was on its way to
/// Redis (the client left mid-admission): the script may still run and take a lease.
struct CancelIfAbandoned<'a> {
    limiter: &'a Limiter,
    demand: &'a Demand,
    waiting: bool,
}

impl<'a> CancelIfAbandoned<'a> {
    fn new(limiter: &'a Limiter, demand: &'a Demand) -> Self {
        Self {
            limiter,
            demand,
            waiting: true,
        }
    }

    /// The answer arrived (an error is compensated by the caller if it needs to be).
    fn answered(mut self) {
        self.waiting = false;
    }
}

impl Drop for CancelIfAbandoned<'_> {
    fn drop(&mut self) {
        if self.waiting {
            self.limiter.compensate(self.demand.clone());
        }
    }
}
