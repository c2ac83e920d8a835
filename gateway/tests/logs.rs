//! What the running binary logs: the access line of every request (JSON, in tracing's shape,
//! and off on its own with `access=off`), and never a key, a credential or a prompt.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use common::{Gateway, manifests, new_key};
use llm_gateway_mock_upstream::MockUpstream;
use serde_json::{Value, json};

/// The access lines of `log`, parsed (each must be one JSON object).
fn access_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|line| line.contains(r#""target":"access""#))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[tokio::test]
async fn json_access_lines_name_the_request_and_turn_off_on_their_own() {
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let body = json!({"model": "alias", "messages": [{"role": "user", "content": "hi"}]});
    let env = [("LOG_LEVEL", "info"), ("LOG_FORMAT", "json")];
    let gateway = Gateway::start(&manifests(&upstream.base_url, &key), key.clone(), &env).await;
    assert_eq!(gateway.chat(body.clone()).await.status(), 200);
    let chat = |line: &Value| line["path"] == "/v1/chat/completions";
    let log = gateway
        .log_when(|log| access_lines(log).iter().any(chat))
        .await;
    let line = &access_lines(&log).into_iter().find(chat).unwrap();
    for (field, expected) in [
        ("level", json!("INFO")),
        ("message", json!("request finished")),
        ("method", json!("POST")),
        ("status", json!(200)),
        ("route", json!("alias")),
    ] {
        assert_eq!(line[field], expected, "{field} in {line}");
    }
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0, "{line}");
    assert!(
        line["key_id"].as_str().unwrap().starts_with("lgw_"),
        "{line}"
    );
    assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
    assert_eq!(line["error"], "", "{line}");

    let env = [("LOG_LEVEL", "info,access=off"), ("LOG_FORMAT", "json")];
    let quiet = Gateway::start(&manifests(&upstream.base_url, &key), key, &env).await;
    assert_eq!(quiet.chat(body).await.status(), 200);
    assert_eq!(quiet.post("/v1/nope", json!({})).await.status(), 404);
    // A reload logged after both answers: lines for them would come before its line.
    quiet.write_config("touched.yaml", "# a change the watcher applies\n");
    let log = quiet
        .log_when(|log| log.matches("configuration applied").count() == 2)
        .await;
    assert!(access_lines(&log).is_empty(), "{log}");
}

#[tokio::test]
async fn logs_at_trace_level_never_contain_keys_credentials_or_prompts() {
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let env = [("LOG_LEVEL", "trace"), ("LOG_FORMAT", "json")];
    let gateway = Gateway::start(&manifests(&upstream.base_url, &key), key, &env).await;
    let prompt =
        json!({"model": "alias", "messages": [{"role": "user", "content": "PROMPT-MARKER-42"}]});
    assert_eq!(gateway.chat(prompt.clone()).await.status(), 200);
    let mut streamed = prompt;
    streamed["stream"] = json!(true);
    assert_eq!(
        gateway.chat(streamed).await.bytes().await.unwrap().len(),
        MockUpstream::SSE_EVENTS.concat().len()
    );
    let log = gateway
        .log_when(|log| {
            let lines = access_lines(log);
            lines
                .iter()
                .filter(|l| l["path"] == "/v1/chat/completions")
                .count()
                == 2
        })
        .await;
    assert!(
        log.contains("\"level\":\"TRACE\""),
        "trace level was not on"
    );
    for secret in [
        gateway.key.as_str(),
        "sk-upstream-secret",
        "PROMPT-MARKER-42",
    ] {
        assert!(!log.contains(secret), "log contains {secret}");
    }
}
