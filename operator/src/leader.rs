//! Leader election through a `coordination.k8s.io/v1` Lease, so only one replica writes.
//!
//! Hand-written (about a hundred lines) because kube-rs ships no lease helper and the
//! community crates pin other kube versions. The rules follow client-go's: take the Lease
//! when it is free or its holder has not renewed within `leaseDurationSeconds`; every write is
//! conditional on the resourceVersion read, so two candidates can never both win; renew every
//! `renew` period; a leader that cannot renew before its lease would expire exits, so it never
//! writes as a stale leader (its controllers stop with the process and the pod restarts).
//! On shutdown the leader releases the Lease once its writers stopped (client-go's
//! `ReleaseOnCancel`), so a standby takes over within a `retry` instead of a lease duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::oneshot;

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
    loop {
        if shutdown.is_requested() {
            return None;
        }
        match try_lead(&leases, &election).await {
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
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(election.renew) => {}
            _ = &mut stopped => return,
        }
        match try_lead(&leases, &election).await {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
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
async fn try_lead(leases: &Api<Lease>, election: &Election) -> Result<bool, Error> {
    let now = Timestamp::now();
    let seconds = i32::try_from(election.duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = leases.get_opt(&election.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(election.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(election.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let mine = spec.holder_identity.as_deref() == Some(election.identity.as_str());
    // Released at shutdown (no holder): free now, without waiting for it to expire.
    let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
    let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
        let lasts =
            SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(seconds)));
        renewed.0 + lasts < now
    });
    if !mine && !free && !expired {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(election.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(seconds);
    replace_unchanged(leases, &election.name, &lease).await
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
