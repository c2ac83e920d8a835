//! Failed authentication, throttled per client address.
//!
//! Every refused credential (missing, malformed, unknown, disabled, expired, a token failing
//! verification) counts against the address it came from. Past `AUTH_FAILURES_PER_MINUTE`
//! failures (default 20) every refused credential from that address is answered 429 with
//! `Retry-After` instead of 401, while a valid credential from it is still served: behind a
//! proxy or NAT every client shares one address, and one guesser must not lock the others
//! out (a guesser gains nothing from that: keys carry 190 random bits). Behind a proxy that
//! hides client addresses the limit applies to the proxy's address; raise it there, or set it
//! to 0 to turn throttling off.
//!
//! The 429 is the same whatever credential the throttled request carries, and the 401s before
//! it are the same whatever the reason, so neither tells a caller whether a key exists.
//!
//! The count is GCRA (as in `limits/gcra.rs`): one "theoretical arrival time" per address,
//! moved one interval (a minute divided by the limit) later by each failure; the address is
//! throttled while that time is more than `limit - 1` intervals ahead. So `limit` failures in
//! a burst are answered 401, then one more every interval. Requests with a valid credential
//! never move it. A check and the failure it may lead to are not atomic: failures sent in
//! parallel can pass the limit by the number in flight, which a guesser gains nothing from.
//!
//! Memory is bounded: at most `DEFAULT_MAX_ADDRESSES` addresses (IPv6 by /64, the smallest
//! block a client commonly controls), in shards under their own mutex, held for arithmetic
//! only. Entries whose time has passed are swept at most once a second per shard, when a new
//! address fails; an address failing while its shard is full of live entries is not counted
//! (a flood from that many addresses is beyond what a per-address limit can stop). A gateway
//! that never refused a credential takes no lock at all.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;

use crate::error::ApiError;

/// Default of `AUTH_FAILURES_PER_MINUTE`: a person mistyping a key, or a client with a stale
/// one retrying, stays far below it; a guesser is slowed to one try every three seconds.
pub const DEFAULT_FAILURES_PER_MINUTE: u32 = 20;

/// Most addresses tracked at once (about 6 MB at most).
pub const DEFAULT_MAX_ADDRESSES: usize = 100_000;

/// Independent locks, so concurrent requests from different addresses rarely wait on each
/// other.
const SHARDS: usize = 16;

const NANOS_PER_MINUTE: u64 = 60_000_000_000;

/// Least time between two sweeps of one shard.
const SWEEP_GAP_NANOS: u64 = 1_000_000_000;

/// The client address of a request, as the server loop put it in the request extensions
/// (`ConnectInfo<SocketAddr>`); `None` where there is none (a router driven in-process), and
/// then nothing is throttled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

impl<S> FromRequestParts<S> for ClientAddress {
    type Rejection = Infallible;

    fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> impl Future<Output = Result<Self, Self::Rejection>> + Send {
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        std::future::ready(Ok(Self(address)))
    }
}

/// The 429 of a throttled address: OpenAI's rate-limit shape (`rate_limit_error`,
/// `rate_limit_exceeded`), so SDKs back off and retry after `Retry-After`, with a message that
/// names the cause but nothing about the credential sent.
pub fn refusal(retry_after: Duration) -> ApiError {
    ApiError::RateLimited {
        message: "too many failed authentication attempts from this address; retry after the \
                  Retry-After delay"
            .to_owned(),
        limit: "authentication",
        retry_after,
    }
}

/// Where failures are counted: an IPv4 address, or the /64 of an IPv6 one (IPv4-mapped IPv6
/// addresses count as their IPv4 address, as a dual-stack listener reports them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Bucket {
    V4(u32),
    V6(u64),
}

impl Bucket {
    fn of(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => Self::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    /// Theoretical arrival time per address, in nanoseconds since the throttle was made.
    tat: HashMap<Bucket, u64>,
    /// When this shard may be swept next.
    next_sweep: u64,
}

/// Per-address failure counts (see the module documentation).
#[derive(Debug)]
pub struct AuthThrottle {
    /// Nanoseconds one failure adds; 0 when throttling is off.
    interval: u64,
    /// How far ahead an address's time may be before it is throttled.
    tolerance: u64,
    /// Most addresses per shard.
    per_shard: usize,
    origin: Instant,
    /// Addresses tracked over all shards: while 0, checks take no lock.
    tracked: AtomicUsize,
    /// Picks shards with a per-process key, so no one can aim every address at one shard.
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self::new(DEFAULT_FAILURES_PER_MINUTE)
    }
}

impl AuthThrottle {
    /// Throttles an address after `failures_per_minute` failures (0: never).
    pub fn new(failures_per_minute: u32) -> Self {
        Self::with_capacity(failures_per_minute, DEFAULT_MAX_ADDRESSES)
    }

    /// As [`Self::new`], tracking at most about `max_addresses` addresses.
    pub fn with_capacity(failures_per_minute: u32, max_addresses: usize) -> Self {
        let limit = u64::from(failures_per_minute);
        let interval = NANOS_PER_MINUTE.checked_div(limit).unwrap_or(0);
        Self {
            interval,
            tolerance: interval.saturating_mul(limit.saturating_sub(1)),
            per_shard: max_addresses.div_ceil(SHARDS).max(1),
            origin: Instant::now(),
            tracked: AtomicUsize::new(0),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// How long `client` must wait when it is throttled; `None` lets its credential be
    /// checked. Call before looking at the credential.
    pub fn check(&self, client: ClientAddress) -> Option<Duration> {
        let address = client.0?;
        if self.interval == 0 || self.tracked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.check_at(address, self.now())
    }

    /// Counts a refused credential from `client`.
    pub fn record_failure(&self, client: ClientAddress) {
        if let Some(address) = client.0
            && self.interval != 0
        {
            self.record_failure_at(address, self.now());
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn shard(&self, bucket: Bucket) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(bucket) as usize) % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn check_at(&self, address: IpAddr, now: u64) -> Option<Duration> {
        let bucket = Bucket::of(address);
        let mut shard = self.shard(bucket);
        let tat = *shard.tat.get(&bucket)?;
        if tat <= now {
            // Fully recovered: forgetting it is the same as keeping it, and frees the entry.
            shard.tat.remove(&bucket);
            self.tracked.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let ahead = tat - now;
        (ahead > self.tolerance).then(|| Duration::from_nanos(ahead - self.tolerance))
    }

    fn record_failure_at(&self, address: IpAddr, now: u64) {
        let bucket = Bucket::of(address);
        let mut shard = self.shard(bucket);
        if let Some(tat) = shard.tat.get_mut(&bucket) {
            *tat = (*tat).max(now).saturating_add(self.interval);
            return;
        }
        if now >= shard.next_sweep {
            let before = shard.tat.len();
            shard.tat.retain(|_, tat| *tat > now);
            self.tracked
                .fetch_sub(before - shard.tat.len(), Ordering::Relaxed);
            shard.next_sweep = now.saturating_add(SWEEP_GAP_NANOS);
        }
        if shard.tat.len() >= self.per_shard {
            return;
        }
        shard.tat.insert(bucket, now.saturating_add(self.interval));
        self.tracked.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    /// Fails `times` times at `now`, then says whether the address is throttled.
    fn fail(throttle: &AuthThrottle, address: IpAddr, times: u32, now: u64) -> Option<Duration> {
        for _ in 0..times {
            throttle.record_failure_at(address, now);
        }
        throttle.check_at(address, now)
    }

    #[test]
    fn the_limit_is_reached_after_exactly_limit_failures() {
        let throttle = AuthThrottle::new(20);
        let client = ip("192.0.2.1");
        assert_eq!(fail(&throttle, client, 19, 0), None);
        // The 20th failure is still answered (401); the 21st request is refused unchecked.
        assert_eq!(fail(&throttle, client, 1, 0), Some(Duration::from_secs(3)));
    }

    #[test]
    fn one_more_failure_is_allowed_each_interval() {
        let throttle = AuthThrottle::new(20);
        let client = ip("192.0.2.1");
        fail(&throttle, client, 20, 0);
        assert_eq!(
            throttle.check_at(client, 2 * SECOND),
            Some(Duration::from_secs(1))
        );
        assert_eq!(throttle.check_at(client, 3 * SECOND), None);
        assert!(fail(&throttle, client, 1, 3 * SECOND).is_some());
        // A minute of quiet forgets the address entirely.
        assert_eq!(throttle.check_at(client, 70 * SECOND), None);
        assert_eq!(fail(&throttle, client, 19, 70 * SECOND), None);
    }

    #[test]
    fn addresses_are_counted_apart_and_ipv6_by_its_64() {
        let throttle = AuthThrottle::new(2);
        fail(&throttle, ip("192.0.2.1"), 2, 0);
        assert!(throttle.check_at(ip("192.0.2.1"), 0).is_some());
        assert!(throttle.check_at(ip("::ffff:192.0.2.1"), 0).is_some());
        assert_eq!(throttle.check_at(ip("192.0.2.2"), 0), None);
        fail(&throttle, ip("2001:db8:1:2::1"), 2, 0);
        assert!(throttle.check_at(ip("2001:db8:1:2:ffff::9"), 0).is_some());
        assert_eq!(throttle.check_at(ip("2001:db8:1:3::1"), 0), None);
    }

    #[test]
    fn zero_turns_throttling_off_and_no_address_is_never_throttled() {
        let off = AuthThrottle::new(0);
        let client = ClientAddress(Some(ip("192.0.2.1")));
        for _ in 0..1_000 {
            off.record_failure(client);
        }
        assert_eq!(off.check(client), None);
        let on = AuthThrottle::new(1);
        for _ in 0..10 {
            on.record_failure(ClientAddress(None));
        }
        assert_eq!(on.check(ClientAddress(None)), None);
        assert_eq!(on.tracked.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_table_is_bounded_and_swept() {
        let throttle = AuthThrottle::with_capacity(5, SHARDS);
        for i in 0..1_000u32 {
            throttle.record_failure_at(IpAddr::from(i.to_be_bytes()), 0);
        }
        // One address per shard at most; the rest went uncounted.
        assert!(throttle.tracked.load(Ordering::Relaxed) <= SHARDS);
        let total: usize = throttle
            .shards
            .iter()
            .map(|s| s.lock().map(|s| s.tat.len()).unwrap_or(0))
            .sum();
        assert_eq!(total, throttle.tracked.load(Ordering::Relaxed));
        // Once their times have passed, new addresses take their places.
        for i in 1_000..2_000u32 {
            throttle.record_failure_at(IpAddr::from(i.to_be_bytes()), 20 * SECOND);
        }
        let replaced = (1_000..2_000u32)
            .filter(|i| {
                let bucket = Bucket::of(IpAddr::from(i.to_be_bytes()));
                throttle.shard(bucket).tat.contains_key(&bucket)
            })
            .count();
        assert!(replaced > 0);
        assert!(throttle.tracked.load(Ordering::Relaxed) <= SHARDS);
    }

    #[test]
    fn checks_of_a_recovered_address_free_its_entry() {
        let throttle = AuthThrottle::new(20);
        let client = ip("192.0.2.7");
        fail(&throttle, client, 1, 0);
        assert_eq!(throttle.tracked.load(Ordering::Relaxed), 1);
        assert_eq!(throttle.check_at(client, 10 * SECOND), None);
        assert_eq!(throttle.tracked.load(Ordering::Relaxed), 0);
    }
}
