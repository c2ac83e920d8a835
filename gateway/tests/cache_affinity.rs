//! Prompt-cache affinity on a weighted route: a conversation stays on one target (so the
//! provider's cache is hit) while the weights still spread conversations.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::collections::HashMap;

use common::manifests::{caller_key, fake_provider, join};
use common::{Gateway, new_key};
use serde_json::{Value, json};

fn config(key: &str) -> String {
    let route = |model: &str, affinity: &str| {
        format!(
            "  - {{model: {model}, cacheAffinity: {affinity}, targets: [{{provider: a, model: m, weight: 50}}, {{provider: b, model: m, weight: 50}}]}}\n"
        )
    };
    let mut routes = String::from(
        "apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: routes}\nspec:\n  routes:\n",
    );
    for (model, affinity) in [
        ("keyed", "key"),
        ("conversations", "conversation"),
        ("spread", "off"),
    ] {
        routes.push_str(&route(model, affinity));
    }
    join(&[
        fake_provider("a"),
        fake_provider("b"),
        routes,
        caller_key(key, ""),
    ])
}

/// Which provider served each of `count` requests built by `body(n)`.
async fn served(
    gateway: &Gateway,
    count: usize,
    body: impl Fn(usize) -> Value,
) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for n in 0..count {
        let response = gateway.chat(body(n)).await;
        assert_eq!(response.status(), 200);
        let provider = response.headers()["x-llm-gateway-provider"]
            .to_str()
            .unwrap()
            .to_owned();
        *seen.entry(provider).or_default() += 1;
    }
    seen
}

fn ask(model: &str, key: Option<String>, opening: &str) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "system", "content": opening}, {"role": "user", "content": "go"}]});
    if let Some(key) = key {
        body["prompt_cache_key"] = json!(key);
    }
    body
}

#[tokio::test]
async fn one_conversation_stays_on_one_target_of_a_weighted_route() {
    let key = new_key();
    let gateway = Gateway::start(&config(&key), key, &[]).await;

    let same_key = served(&gateway, 100, |_| ask("keyed", Some("conv-7".into()), "x")).await;
    assert_eq!(same_key.len(), 1, "100 of 100 on one target: {same_key:?}");
    let many_keys = served(&gateway, 40, |n| {
        ask("keyed", Some(format!("conv-{n}")), "x")
    })
    .await;
    assert_eq!(
        many_keys.len(),
        2,
        "conversations still spread: {many_keys:?}"
    );
    let unkeyed = served(&gateway, 10, |_| ask("keyed", None, "x")).await;
    assert_eq!(
        unkeyed.values().copied().collect::<Vec<_>>(),
        [5, 5],
        "by weight: {unkeyed:?}"
    );

    let opening = served(&gateway, 20, |_| ask("conversations", None, "same opening")).await;
    assert_eq!(opening.len(), 1, "{opening:?}");
    let openings = served(&gateway, 40, |n| {
        ask("conversations", None, &format!("opening {n}"))
    })
    .await;
    assert_eq!(openings.len(), 2, "{openings:?}");
    let off = served(&gateway, 10, |_| ask("spread", Some("conv-7".into()), "x")).await;
    assert_eq!(off.values().copied().collect::<Vec<_>>(), [5, 5], "{off:?}");
}
