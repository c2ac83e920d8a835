//! Fault rules as kube-rs sees them: status storms with `Retry-After`,
//! delays, a watch refused with HTTP 410 at its start (F12: the watcher must back off, not
//! hot-loop), and rules installed over HTTP for out-of-process tests.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use serde_json::json;
use test_apiserver::TestApiServer;
use test_apiserver::faults::{FaultAction, FaultRule};

async fn maps(server: &TestApiServer) -> Api<ConfigMap> {
    let client = Client::try_from(Config::new(server.url().parse().unwrap())).unwrap();
    Api::namespaced(client, "default")
}

fn rule(verb: &str, action: FaultAction, times: Option<u32>) -> FaultRule {
    serde_json::from_value::<FaultRule>(
        json!({"verb": verb, "resource": "configmaps", "action": {"type": "delay", "millis": 0}}),
    )
    .map(|mut r| {
        r.action = action;
        r.times = times;
        r
    })
    .unwrap()
}

#[tokio::test]
async fn status_storms_and_delays_hit_exactly_the_matching_requests() {
    let server = TestApiServer::start().await.unwrap();
    let api = maps(&server).await;
    let storm = FaultAction::Status {
        code: 429,
        reason: "TooManyRequests".to_owned(),
        retry_after: Some(1),
    };
    server.add_fault(rule("list", storm, Some(2)));
    // kube's client retries 429 itself, honouring Retry-After: the call succeeds after the
    // storm, having waited about a second per refusal.
    let started = Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    let refusals = server.requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(refusals, 2);
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );

    server.add_fault(rule("get", FaultAction::Delay { millis: 300 }, Some(1)));
    let object = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
    let started = Instant::now();
    api.get("c").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    api.get("c").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "the delay fired once"
    );
}

#[tokio::test]
async fn a_watch_refused_with_http_410_is_retried_with_backoff_not_hot_looped() {
    let server = TestApiServer::start().await.unwrap();
    let api = maps(&server).await;
    server.add_fault(rule("watch", FaultAction::Watch410Http, Some(3)));
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let started = Instant::now();
    let create = async {
        // Created once the refused watches are behind us, so only a working watch sees it.
        while server.requests().iter().filter(|r| r.status == 410).count() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let object = serde_json::from_value(json!({"metadata": {"name": "w"}})).unwrap();
        api.create(&PostParams::default(), &object).await.unwrap();
    };
    let watch = async {
        loop {
            if let Some(Ok(object)) = stream.next().await {
                return object;
            }
        }
    };
    let both = async { tokio::join!(watch, create) };
    let (seen, ()) = tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .unwrap();
    assert_eq!(seen.metadata.name.as_deref(), Some("w"));
    let watches = server
        .requests()
        .iter()
        .filter(|r| r.query.contains("watch=true"))
        .count();
    let elapsed = started.elapsed();
    eprintln!("{watches} watch requests in {elapsed:?}");
    assert!(watches >= 4, "three refused, then one that worked");
    let per_second = watches as f64 / elapsed.as_secs_f64().max(1.0);
    assert!(
        per_second <= 4.0,
        "hot loop: {watches} watches in {elapsed:?}"
    );
}

#[tokio::test]
async fn rules_and_watch_faults_can_be_driven_over_http() {
    let server = TestApiServer::start().await.unwrap();
    let http = reqwest::Client::new();
    let rule = json!({"verb": "create", "resource": "configmaps", "times": 1,
        "action": {"type": "status", "code": 409, "reason": "Conflict"}});
    let added = http
        .post(format!("{}/__fixture/faults", server.url()))
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 204);
    let api = maps(&server).await;
    let object: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    let refused = api.create(&PostParams::default(), &object).await;
    assert!(matches!(refused, Err(kube::Error::Api(e)) if e.code == 409));
    api.create(&PostParams::default(), &object).await.unwrap();
    for control in ["drop-watches", "expire-watches"] {
        let answer = http
            .post(format!("{}/__fixture/{control}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 204);
    }
    let log: serde_json::Value = http
        .get(format!("{}/__fixture/requests", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["method"] == "POST" && r["status"] == 409)
    );
}
