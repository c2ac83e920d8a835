//! Leader election through a `coordination.k8s.io/v1` Lease, so only one replica writes.
//!
//! Hand-written (about a hundred lines) because kube-rs ships no lease helper and the
//! community crates pin other kube versions. The rules follow client-go's: take the Lease
//! when it is free or its holder has not renewed within `leaseDurationSeconds`; every write is
//! conditional on the resourceVersion read, so two candidates can never both win; renew every
//! `renew` period; a leader that cannot renew before its lease would expire exits, so it never
//! writes as a stale leader (its controllers stop with the process and the pod restarts).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

use crate::Error;

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
}

/// Waits until this replica leads, then keeps renewing in the background; the returned task
/// ends (and the caller should exit) if leadership is lost.
pub async fn lead(client: kube::Client, election: Election) -> tokio::task::JoinHandle<()> {
    let leases: Api<Lease> = Api::namespaced(client, &election.namespace);
    loop {
        match try_lead(&leases, &election).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "leader election failed; retrying"),
        }
        tokio::time::sleep(election.renew).await;
    }
    tracing::info!(identity = %election.identity, lease = %election.name, "became the leader");
    tokio::spawn(async move {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(election.renew).await;
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
    })
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
    let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
        let lasts =
            SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(seconds)));
        renewed.0 + lasts < now
    });
    if !mine && !expired {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(election.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(seconds);
    // Conditional on the resourceVersion read above: a concurrent winner makes this a 409.
    match leases
        .replace(&election.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
