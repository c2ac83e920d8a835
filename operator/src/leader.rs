//! Leader election through a `coordination.k8s.io/v1` Lease, so only one replica writes.
//!
//! Hand-written (a couple of hundred lines) because kube-rs ships no lease helper and the
//! community crates pin other kube versions. The rules are client-go's: a standby takes the
//! Lease when it has no holder, or when its record (holder, renew time, resourceVersion) has
//! not changed for `leaseDurationSeconds` *as measured by the standby's own monotonic clock*
//! since the standby first saw that record. The renew time the holder writes is never compared
//! with the local clock: with clock skew between nodes, a holder whose clock is behind would
//! look expired while alive (and one ahead would never look expired), so two replicas could
//! lead at once. Every write is conditional on the resourceVersion read, so two candidates can
//! never both win; the leader renews every `renew` period; a leader that cannot renew before
//! its lease would expire exits, so it never writes as a stale leader (its controllers stop
//! with the process and the pod restarts). On shutdown the leader releases the Lease once its
//! writers stopped (client-go's `ReleaseOnCancel`), so a standby takes over within a `retry`
//! instead of a lease duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::Error;
use crate::shutdown::Shutdown;

/// Who competes for which Lease.
#[derive(Clone, Debug)]
pub struct Election {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
    /// How often the leader renews.
    pub renew: Duration,
    /// How often a standby tries to take the Lease: short, so a Lease released on shutdown is
    /// taken over within about this long (it costs one GET of one small object per try).
    pub retry: Duration,
}

/// Longest the release of the Lease at shutdown may take: past it the Lease simply expires.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);

/// This replica's leadership: renewed in the background until it is lost or released.
#[derive(Debug)]
pub struct Leader {
    leases: Api<Lease>,
    election: Election,
    stop: oneshot::Sender<()>,
    renewal: tokio::task::JoinHandle<()>,
}

/// Waits until this replica leads (`None` if `shutdown` comes first: a standby has nothing to
/// hand over), then keeps renewing in the background.
pub async fn lead(client: kube::Client, election: Election, shutdown: &Shutdown) -> Option<Leader> {
    let leases: Api<Lease> = Api::namespaced(client, &election.namespace);
    let mut observer = Observer::default();
    loop {
        if shutdown.is_requested() {
            return None;
        }
        match try_lead(&leases, &election, &mut observer).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "leader election failed; retrying"),
        }
        // Only the wait is cancelled: an attempt in flight completes, so a Lease this
        // replica just took is released below rather than left to expire.
        tokio::select! {
            () = tokio::time::sleep(election.retry) => {}
            () = shutdown.wait() => {}
        }
    }
    tracing::info!(identity = %election.identity, lease = %election.name, "became the leader");
    let (stop, stopped) = oneshot::channel();
    let renewal = tokio::spawn(renew(leases.clone(), election.clone(), stopped));
    Some(Leader {
        leases,
        election,
        stop,
        renewal,
    })
}

impl Leader {
    /// Resolves if leadership is lost (another replica took the Lease, or it could not be
    /// renewed in time): the caller must stop writing at once, i.e. exit.
    pub async fn lost(&mut self) {
        drop((&mut self.renewal).await);
    }

    /// Stops renewing and hands the Lease back (holder and renew time cleared, conditional on
    /// the resourceVersion, only if this replica still holds it), so a standby takes over at
    /// its next try instead of after the Lease expires. Call it only once this replica's
    /// writers have stopped, or the new leader could overlap with them.
    pub async fn release(self) {
        // A renewal that already ended (lost) has dropped the receiver: nothing to stop.
        let _ = self.stop.send(());
        // The renewal finishes an attempt in flight first, so it cannot overwrite the release.
        drop(self.renewal.await);
        match tokio::time::timeout(RELEASE_TIMEOUT, give_up(&self.leases, &self.election)).await {
            Ok(Ok(true)) => tracing::info!(lease = %self.election.name, "released the lease"),
            Ok(Ok(false)) => tracing::info!("the lease was no longer ours; nothing to release"),
            Ok(Err(error)) => tracing::warn!(%error, "could not release the lease; it will expire"),
            Err(_) => tracing::warn!("releasing the lease timed out; it will expire"),
        }
    }
}

/// Renews every `renew` period until told to stop (or its [`Leader`] is dropped); returns on
/// its own when leadership is lost.
async fn renew(leases: Api<Lease>, election: Election, mut stopped: oneshot::Receiver<()>) {
    let mut last_renewal = Instant::now();
    // A leader renews its own Lease whatever it observed. Should another replica hold it,
    // its record is new to this observer, so it is live: this replica stops, not retakes it.
    let mut observer = Observer::default();
    loop {
        tokio::select! {
            () = tokio::time::sleep(election.renew) => {}
            _ = &mut stopped => return,
        }
        match try_lead(&leases, &election, &mut observer).await {
            Ok(true) => last_renewal = Instant::now(),
            Ok(false) => {
                tracing::error!("another replica took the lease; stopping");
                return;
            }
            Err(error) => tracing::warn!(%error, "could not renew the lease"),
        }
        if last_renewal.elapsed() + election.renew >= election.duration {
            tracing::error!("the lease could not be renewed in time; stopping");
            return;
        }
    }
}

/// Clears the holder of the Lease if it is this replica; whether it did.
async fn give_up(leases: &Api<Lease>, election: &Election) -> Result<bool, Error> {
    let Some(mut lease) = leases.get_opt(&election.name).await? else {
        return Ok(false);
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(false);
    };
    if spec.holder_identity.as_deref() != Some(election.identity.as_str()) {
        return Ok(false);
    }
    // No holder and no renew time: free for `try_lead` (and for client-go's rules, which
    // take a Lease without a holder at once).
    spec.holder_identity = None;
    spec.renew_time = None;
    replace_unchanged(leases, &election.name, &lease).await
}

/// One attempt to take or renew the Lease; whether this replica holds it afterwards.
async fn try_lead(
    leases: &Api<Lease>,
    election: &Election,
    observer: &mut Observer,
) -> Result<bool, Error> {
    let Some(mut lease) = leases.get_opt(&election.name).await? else {
        return create(leases, election).await;
    };
    let changed = observer.observe(&lease, Instant::now());
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let mine = spec.holder_identity.as_deref() == Some(election.identity.as_str());
    if !mine && !may_take(spec, changed, Instant::now(), election.duration) {
        return Ok(false);
    }
    let now = MicroTime(Timestamp::now());
    if !mine {
        spec.holder_identity = Some(election.identity.clone());
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(duration_seconds(election));
    replace_unchanged(leases, &election.name, &lease).await
}

/// Creates the Lease held by this replica; whether it did (409: another replica was first).
async fn create(leases: &Api<Lease>, election: &Election) -> Result<bool, Error> {
    let now = MicroTime(Timestamp::now());
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(election.name.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(election.identity.clone()),
            lease_duration_seconds: Some(duration_seconds(election)),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    };
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn duration_seconds(election: &Election) -> i32 {
    i32::try_from(election.duration.as_secs()).unwrap_or(i32::MAX)
}

/// Whether a replica may take a Lease held by another, whose record last changed at
/// `changed` (this replica's clock): at once when it has no holder (released at shutdown),
/// else once the Lease's `leaseDurationSeconds` (`default` without one) passed since then.
fn may_take(spec: &LeaseSpec, changed: Instant, now: Instant, default: Duration) -> bool {
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return true;
    }
    let lasts = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default, Duration::from_secs);
    now.saturating_duration_since(changed) >= lasts
}

/// The parts of a Lease whose change shows its holder alive: any write changes the
/// resourceVersion, and a renewal the renew time (whatever the holder's clock says).
#[derive(Debug, PartialEq)]
struct Record {
    version: Option<String>,
    holder: Option<String>,
    renewed: Option<MicroTime>,
}

/// The Lease's record as this replica last saw it, and when it first saw that record.
#[derive(Debug, Default)]
struct Observer {
    seen: Option<(Record, Instant)>,
}

impl Observer {
    /// Notes `lease` as read at `now`; returns when its current record was first seen.
    fn observe(&mut self, lease: &Lease, now: Instant) -> Instant {
        let spec = lease.spec.as_ref();
        let record = Record {
            version: lease.metadata.resource_version.clone(),
            holder: spec.and_then(|s| s.holder_identity.clone()),
            renewed: spec.and_then(|s| s.renew_time.clone()),
        };
        match &self.seen {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                self.seen = Some((record, now));
                now
            }
        }
    }
}

/// Writes `lease` if nobody changed it since it was read (its resourceVersion makes the write
/// conditional: a concurrent writer makes this a 409); whether the write happened.
async fn replace_unchanged(leases: &Api<Lease>, name: &str, lease: &Lease) -> Result<bool, Error> {
    match leases.replace(name, &PostParams::default(), lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::SignedDuration;

    use super::*;

    const LASTS: Duration = Duration::from_secs(4);

    /// A Lease held by `holder` at `version`, renewed at `renewed` by the holder's clock.
    fn lease(holder: Option<&str>, version: &str, renewed: Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta {
                resource_version: Some(version.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(4),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Whether a replica that observed `lease` at `seen` may take it at `now`.
    fn takes(observer: &mut Observer, lease: &Lease, seen: Instant, now: Instant) -> bool {
        let changed = observer.observe(lease, seen);
        may_take(lease.spec.as_ref().expect("spec"), changed, now, LASTS)
    }

    #[test]
    fn a_renewed_lease_is_live_whatever_the_holder_s_clock_says() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let hour_ago = Timestamp::now() - SignedDuration::from_hours(1);
        let mut observer = Observer::default();
        // Written by a holder whose clock is an hour behind: seen now, so not expired.
        let first = lease(Some("other"), "1", hour_ago);
        assert!(!takes(&mut observer, &first, at(0), at(0)));
        assert!(!takes(&mut observer, &first, at(3), at(3)));
        // Renewed (still an hour "ago"): the lease duration counts from this observation.
        let renewed = lease(Some("other"), "2", hour_ago + SignedDuration::from_secs(1));
        assert!(!takes(&mut observer, &renewed, at(3), at(6)));
        // No change since `at(3)`: expired once the duration passed on the local clock.
        assert!(takes(&mut observer, &renewed, at(7), at(7)));
    }

    #[test]
    fn a_holder_clock_ahead_does_not_keep_a_dead_lease_and_a_released_one_is_free() {
        let start = Instant::now();
        let tomorrow = Timestamp::now() + SignedDuration::from_hours(24);
        let mut observer = Observer::default();
        let ahead = lease(Some("other"), "1", tomorrow);
        assert!(!takes(&mut observer, &ahead, start, start));
        let later = start + LASTS;
        assert!(takes(&mut observer, &ahead, later, later));
        let released = lease(None, "2", tomorrow);
        assert!(takes(&mut Observer::default(), &released, start, start));
    }
}
