//! Leader election under clock skew: a standby judges a Lease's expiry by its own clock (how
//! long since it saw the Lease change), never by comparing the holder's renew time with its
//! clock. A holder whose clock is behind keeps its Lease while it renews; once it stops, the
//! standby takes over after the lease duration. Apart from `leader.rs` so its two replicas
//! do not share the machine with this test's.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

mod common;

use common::*;

const LEASE: &str = "llm-gateway-operator";

/// `leaseDurationSeconds` of the skewed holder's Lease.
const LEASE_SECONDS: u64 = 2;

/// The holder's renewals per lease duration: four fit in it, so a renewal delayed by a loaded
/// machine does not let the Lease expire.
const RENEWALS_PER_LEASE: u64 = 4;

const RENEW_EVERY: Duration = Duration::from_millis(LEASE_SECONDS * 1000 / RENEWALS_PER_LEASE);

/// The Lease as a holder whose clock says `renewed` writes it.
fn held(holder: &str, renewed: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(LEASE.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(i32::try_from(LEASE_SECONDS).unwrap()),
            acquire_time: Some(MicroTime(renewed)),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_trusts_its_own_clock_not_the_holder_s_renew_time() {
    let (_server, client, kubeconfig) = cluster().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    // The holder's clock is an hour behind: by its renew times, its Lease expired long ago.
    let behind = Timestamp::now() - SignedDuration::from_hours(1);
    leases
        .create(&PostParams::default(), &held("skewed", behind))
        .await
        .unwrap();
    let admin = free_port();
    let _standby = operator_with(&kubeconfig, admin, &[("POD_NAME", "standby")]);
    eventually("the standby ready", async || {
        let ready = reqwest::get(format!("http://127.0.0.1:{admin}/ready")).await;
        ready.is_ok_and(|r| r.status() == 200).then_some(())
    })
    .await;

    // The holder renews four times a lease duration for two lease durations, its renew times
    // still an hour in the past: the standby sees the Lease change and leaves it alone.
    // (Comparing renew times with its own clock, it would take the Lease at its first try.)
    let mut last_renewal = Instant::now();
    for renewal in 1..=2 * RENEWALS_PER_LEASE {
        tokio::time::sleep(RENEW_EVERY).await;
        let mut lease = leases.get(LEASE).await.unwrap();
        let spec = lease.spec.as_mut().unwrap();
        assert_eq!(
            spec.holder_identity.as_deref(),
            Some("skewed"),
            "a live Lease was taken before renewal {renewal}"
        );
        let renewed =
            behind + SignedDuration::try_from(RENEW_EVERY).unwrap() * renewal.try_into().unwrap();
        spec.renew_time = Some(MicroTime(renewed));
        last_renewal = Instant::now();
        // Conditional on the resourceVersion read: a write by the standby makes this a 409.
        let written = leases.replace(LEASE, &PostParams::default(), &lease).await;
        assert!(written.is_ok(), "renewal {renewal} failed: {written:?}");
    }

    // The holder stops renewing: the standby takes the Lease, but only once a lease duration
    // passed on its own clock since it could first have seen the last renewal.
    eventually("the takeover", async || {
        let holder = leases.get_opt(LEASE).await.ok()??.spec?.holder_identity?;
        (holder == "standby").then_some(())
    })
    .await;
    let waited = last_renewal.elapsed();
    eprintln!("takeover {waited:?} after the last renewal");
    assert!(
        waited >= Duration::from_secs(LEASE_SECONDS),
        "taken {waited:?} after the last renewal, before the lease duration"
    );
}
