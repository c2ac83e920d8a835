//! The journal: Redis writes that must land, retried in the background until they do.
//!
//! Two kinds of call cannot simply be dropped when Redis fails to answer in time. A timed-out
//! admission may still run once Redis wakes up (the script was already on the socket), leaving a
//! concurrency lease and a budget reservation nobody releases: it is compensated by a `cancel`
//! of its lease. A failed settlement would make the usage in Redis diverge from what was
//! served: it is retried. Both scripts are idempotent by lease id (`settle.lua`), so a retry of
//! a call that did run is harmless, as long as it comes while the lease's record still exists:
//! retries of a call that may have run stop [`SAFETY`] before [`RECORD_MARGIN`] closes; calls
//! that certainly never reached Redis (breaker open, connection refused) are retried for as long
//! as what they would write can still matter.
//!
//! One background task works the queue in order, one call at a time, backing off while Redis
//! stays unreachable. The queue is bounded; what is dropped (queue full, or given up) stays
//! counted in this replica's memory and in `llm_limiter_journal_total{outcome="dropped"}`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::demand::Demand;
use super::outstanding::Ticket;
use super::redis_store::{Finish, RECORD_MARGIN, RedisStore, Unfinished};
use super::{Outcome, UsageTotals};
use crate::metrics::{JournalLabels, Metrics};

/// Jobs held at most; beyond it a job is dropped (and counted) rather than grow without bound.
pub const JOURNAL_CAPACITY: usize = 100_000;
/// Margin kept before a record's expiry when retrying a call that may have run.
const SAFETY: Duration = Duration::from_secs(30);
/// Jobs the worker takes out of the channel at once (the rest wait there, where the capacity
/// applies).
const IN_HAND: usize = 1024;
/// First and longest wait between attempts while Redis fails.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(25), Duration::from_millis(500));

/// A call to make again.
#[derive(Debug)]
struct Job {
    how: Finish,
    demand: Demand,
    outcome: Outcome,
    enqueued: Instant,
    /// When an attempt failed in a way that may have left it running in Redis.
    maybe_ran_at: Option<Instant>,
    _ticket: Ticket,
}

impl Job {
    /// Whether retrying can no longer help or could double-apply.
    fn expired(&self, now: Instant) -> bool {
        let lease_over = self.enqueued + self.demand.lease_ttl + RECORD_MARGIN;
        match self.how {
            // Everything a cancel undoes (slots, reservation, bucket debt) lapses on its own.
            Finish::Cancel => now >= lease_over,
            Finish::Settle => self
                .maybe_ran_at
                .is_some_and(|at| now >= at + RECORD_MARGIN - SAFETY),
        }
    }

    fn operation(&self) -> &'static str {
        match self.how {
            Finish::Settle => "settle",
            Finish::Cancel => "cancel",
        }
    }
}

/// The retry queue and the usage it still owes Redis.
#[derive(Debug)]
pub struct Journal {
    sender: mpsc::Sender<Job>,
    /// Usage of queued settlements, by usage key of every account (reported until it lands).
    pending: Mutex<HashMap<String, UsageTotals>>,
    /// Usage that will never reach Redis from this replica (dropped), by usage key.
    lost: Mutex<HashMap<String, UsageTotals>>,
    metrics: Arc<Metrics>,
}

impl Journal {
    /// A journal whose worker retries against `redis`.
    pub fn start(redis: Arc<RedisStore>, metrics: Arc<Metrics>) -> Arc<Self> {
        let (sender, receiver) = mpsc::channel(JOURNAL_CAPACITY);
        let journal = Arc::new(Self {
            sender,
            pending: Mutex::default(),
            lost: Mutex::default(),
            metrics,
        });
        tokio::spawn(work(Arc::downgrade(&journal), redis, receiver));
        journal
    }

    /// Queues `how` for `demand` after a first attempt failed with `maybe_ran`.
    pub fn push(
        &self,
        how: Finish,
        demand: Demand,
        outcome: Outcome,
        maybe_ran: bool,
        ticket: Ticket,
    ) {
        let now = Instant::now();
        let job = Job {
            how,
            demand,
            outcome,
            enqueued: now,
            maybe_ran_at: maybe_ran.then_some(now),
            _ticket: ticket,
        };
        if how == Finish::Settle {
            self.add(&self.pending, &job, 1);
        }
        match self.sender.try_send(job) {
            Ok(()) => {
                self.metrics.journal_pending.inc();
            }
            Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) => {
                self.give_up(&job, "dropped");
            }
        }
    }

    /// Usage this replica served that Redis does not show yet (queued) or never will (dropped).
    pub fn unlanded(&self, key: &str) -> UsageTotals {
        let read = |map: &Mutex<HashMap<String, UsageTotals>>| {
            map.lock()
                .ok()
                .and_then(|m| m.get(key).copied())
                .unwrap_or_default()
        };
        let (pending, lost) = (read(&self.pending), read(&self.lost));
        UsageTotals {
            reserved_nanos: 0,
            ..pending.plus(lost)
        }
    }

    /// Keeps only what is left of `job` after the other parts of a cluster landed, and stops
    /// reporting the usage of the accounts that landed as pending.
    fn narrow(&self, job: &mut Job, remaining: Demand) {
        if remaining.accounts.len() < job.demand.accounts.len() && job.how == Finish::Settle {
            let landed = Demand {
                accounts: job
                    .demand
                    .accounts
                    .iter()
                    .filter(|a| !remaining.accounts.contains(a))
                    .cloned()
                    .collect(),
                ..remaining.clone()
            };
            self.add_usage(&self.pending, &landed, &job.outcome, -1);
        }
        job.demand = remaining;
    }

    fn landed(&self, job: &Job) {
        if job.how == Finish::Settle {
            self.add(&self.pending, job, -1);
        }
        self.count(job, "replayed");
    }

    fn give_up(&self, job: &Job, outcome: &'static str) {
        if job.how == Finish::Settle {
            self.add(&self.pending, job, -1);
            self.add(&self.lost, job, 1);
            tracing::error!(
                lease = %job.demand.lease,
                "usage could not be written to Redis and was dropped; counted in this replica's memory only"
            );
        }
        self.count(job, outcome);
    }

    fn count(&self, job: &Job, outcome: &'static str) {
        self.metrics
            .journal
            .get_or_create(&JournalLabels {
                operation: job.operation(),
                outcome,
            })
            .inc();
    }

    /// Adds (`sign` 1) or removes (-1) a job's usage in `map`.
    fn add(&self, map: &Mutex<HashMap<String, UsageTotals>>, job: &Job, sign: i64) {
        self.add_usage(map, &job.demand, &job.outcome, sign);
    }

    /// Adds (`sign` 1) or removes (-1) `outcome` in `map`, for every account of `demand`.
    fn add_usage(
        &self,
        map: &Mutex<HashMap<String, UsageTotals>>,
        demand: &Demand,
        outcome: &Outcome,
        sign: i64,
    ) {
        let Ok(mut map) = map.lock() else {
            return;
        };
        for account in &demand.accounts {
            let key = &account.usage.key;
            let totals = map.entry(key.clone()).or_default();
            totals.count(outcome, sign);
            if *totals == UsageTotals::default() {
                map.remove(key);
            }
        }
    }
}

/// The worker: takes jobs in order and retries the oldest until it lands or expires.
async fn work(
    journal: std::sync::Weak<Journal>,
    redis: Arc<RedisStore>,
    mut receiver: mpsc::Receiver<Job>,
) {
    let mut queue = VecDeque::new();
    let mut backoff = BACKOFF.0;
    loop {
        if queue.is_empty() {
            match receiver.recv().await {
                Some(job) => queue.push_back(job),
                None => return,
            }
        }
        while queue.len() < IN_HAND
            && let Ok(job) = receiver.try_recv()
        {
            queue.push_back(job);
        }
        let Some(journal) = journal.upgrade() else {
            return;
        };
        let Some(job) = queue.front_mut() else {
            continue;
        };
        let now = Instant::now();
        let result = if job.expired(now) {
            None
        } else {
            Some(redis.finish(job.how, &job.demand, job.outcome).await)
        };
        match result {
            Some(Err(Unfinished { error, remaining })) => {
                if error.maybe_executed {
                    job.maybe_ran_at.get_or_insert(now);
                }
                journal.narrow(job, remaining);
                drop(journal);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
            Some(Ok(())) => {
                backoff = BACKOFF.0;
                if let Some(job) = queue.pop_front() {
                    journal.landed(&job);
                }
            }
            None => {
                if let Some(job) = queue.pop_front() {
                    journal.give_up(&job, "expired");
                }
            }
        }
        journal.metrics.journal_pending.dec();
    }
}
