//! Leader election around rollouts and shutdown, with two operator replicas against one API
//! server: both answer `/ready` (or a Deployment of two is never Available and a rollout of
//! one deadlocks), one holds the Lease, and a leader sent SIGTERM exits within 5 s and hands
//! the Lease over at once instead of letting it expire. (Clock skew: `leader_skew.rs`.)

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use llm_gateway_crds::api_key::ApiKey;

mod common;

use common::*;

const LEASE: &str = "llm-gateway-operator";

/// Long enough that a takeover within a few seconds of SIGTERM can only come from a release
/// (the Lease of a leader that just renewed expires 10 s later).
const LEASE_DURATION: &str = "10s";

fn replica(kubeconfig: &tempfile::NamedTempFile, identity: &str, admin: u16) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_llm-gateway-operator"))
        .env("KUBECONFIG", kubeconfig.path())
        .env("API_KEY_PEPPER", PEPPER)
        .env("ADMIN_ADDRESS", format!("127.0.0.1:{admin}"))
        .env("LEASE_DURATION", LEASE_DURATION)
        .env("POD_NAME", identity)
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Process(child)
}

async fn is_ready(admin: u16) -> bool {
    reqwest::get(format!("http://127.0.0.1:{admin}/ready"))
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// `check` until it answers, failing after `limit`.
async fn within<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGTERM (the shell's builtin `kill`: no dependency on procps).
fn terminate(process: &Process) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", process.0.id())])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The exit status, failing if the process is still running after `limit`.
async fn exits_within(process: &mut Process, limit: Duration) -> ExitStatus {
    within("the exit after SIGTERM", limit, async || {
        process.0.try_wait().unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_is_ready_and_a_terminated_leader_hands_over_the_lease() {
    let (_server, client, kubeconfig) = cluster().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let holder =
        async || -> Option<String> { leases.get_opt(LEASE).await.ok()??.spec?.holder_identity };
    let names = ["first", "second"];
    let admins = [free_port(), free_port()];
    let mut replicas = [
        replica(&kubeconfig, names[0], admins[0]),
        replica(&kubeconfig, names[1], admins[1]),
    ];

    within("both replicas ready", Duration::from_secs(15), async || {
        (is_ready(admins[0]).await && is_ready(admins[1]).await).then_some(())
    })
    .await;
    let leader = within("a leader", Duration::from_secs(10), async || {
        let name = holder().await?;
        names.iter().position(|n| *n == name)
    })
    .await;
    let standby = 1 - leader;
    assert!(
        is_ready(admins[standby]).await,
        "the standby stays ready while the other leads"
    );

    let terminated = Instant::now();
    terminate(&replicas[leader]);
    let status = exits_within(&mut replicas[leader], Duration::from_secs(5)).await;
    assert!(status.success(), "a clean shutdown exits 0, got {status}");
    within("the takeover", Duration::from_secs(3), async || {
        (holder().await? == names[standby]).then_some(())
    })
    .await;
    let took = terminated.elapsed();
    eprintln!("takeover {took:?} after SIGTERM");
    assert!(
        took < Duration::from_secs(6),
        "takeover took {took:?}: the Lease expired instead of being released"
    );

    // The new leader writes: its controllers run.
    let keys: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    keys.create(&PostParams::default(), &api_key("after"))
        .await
        .unwrap();
    eventually("a reconcile by the new leader", async || {
        ready(&keys.get("after").await.ok()?.status?.conditions).filter(|(s, _)| s == "True")
    })
    .await;

    // With no standby left, the last leader's shutdown leaves the Lease free.
    terminate(&replicas[standby]);
    let status = exits_within(&mut replicas[standby], Duration::from_secs(5)).await;
    assert!(status.success(), "a clean shutdown exits 0, got {status}");
    assert_eq!(
        holder().await,
        None,
        "the Lease is released before the exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_stops_at_once_on_sigterm() {
    let (_server, _client, kubeconfig) = cluster().await;
    let admins = [free_port(), free_port()];
    let _first = replica(&kubeconfig, "first", admins[0]);
    within(
        "the first replica ready",
        Duration::from_secs(15),
        async || is_ready(admins[0]).await.then_some(()),
    )
    .await;
    let mut second = replica(&kubeconfig, "second", admins[1]);
    within("the standby ready", Duration::from_secs(15), async || {
        is_ready(admins[1]).await.then_some(())
    })
    .await;
    terminate(&second);
    let status = exits_within(&mut second, Duration::from_secs(5)).await;
    assert!(status.success(), "a clean shutdown exits 0, got {status}");
}
