//! Loading the config directory, through the running binary: errors never echo what the
//! files hold and clear once fixed; oversized files, symlinks out of the directory and files
//! still being written are never applied, and the previous configuration keeps serving.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use common::scenario::Scenario;
use common::{Gateway, manifests, metric, new_key};
use serde_json::{Value, json};

/// No upstream is called: every request here goes to the fake provider.
const UPSTREAM: &str = "http://127.0.0.1:9/v1";

/// The harness manifests with a key allowed every model.
fn base(key: &str) -> String {
    Scenario::parse(&manifests(UPSTREAM, key))
        .replace(
            "ApiKey",
            "caller",
            "spec.models",
            ["alias", "same-name", "*"],
        )
        .render()
}

fn request(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn route(policy: &str, model: &str) -> String {
    format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: {policy}}}\nspec:\n  routes:\n  - model: {model}\n    targets: [{{provider: fake}}]\n"
    )
}

/// Polls `/health/detailed` (10 s at most) until `done` holds; returns that answer.
async fn wait_for(gateway: &Gateway, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health = gateway.detailed().await;
        if done(&health) {
            return health;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {health}\n--- log ---\n{}",
            gateway.log_text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn errors(health: &Value) -> String {
    health["config"]["last_reload"]["errors"].to_string()
}

fn generation(health: &Value) -> u64 {
    health["config"]["generation"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn secrets_in_rejected_files_reach_neither_log_nor_health_and_reverting_clears_the_error() {
    let key = new_key();
    let gateway = Gateway::start(&base(&key), key, &[]).await;
    gateway.write_config(
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: leaked}\nstringData: \"sk-live-SECRET123\"\n",
    );
    gateway.write_config(
        "provider.yaml",
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: leaky}\nspec:\n  type: openai\n  credentials: sk-live-SECRET456\n",
    );
    let health = wait_for(&gateway, "both files rejected", |h| {
        let errors = errors(h);
        errors.contains("Secret leaked") && errors.contains("LlmProvider leaky")
    })
    .await;
    let reported = errors(&health);
    assert!(
        reported.contains("secret.yaml: document 1: Secret leaked: field stringData: expected a map, found a string"),
        "{reported}"
    );
    assert!(
        reported.contains("field spec.credentials: expected struct Credentials, found a string"),
        "{reported}"
    );
    assert_eq!(generation(&health), 1);
    assert_eq!(gateway.chat(request("fake-model")).await.status(), 200);
    let (log, health_text) = (gateway.log_text(), health.to_string());
    for secret in ["SECRET123", "SECRET456"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        assert!(
            !health_text.contains(secret),
            "{secret} in /health/detailed"
        );
    }

    // Reverting the edit brings back exactly what is served: the errors are stale.
    std::fs::remove_file(gateway.dir.path().join("secret.yaml")).unwrap();
    std::fs::remove_file(gateway.dir.path().join("provider.yaml")).unwrap();
    let health = wait_for(&gateway, "errors cleared after the revert", |h| {
        h["config"]["last_reload"]["errors"]
            .as_array()
            .is_some_and(Vec::is_empty)
    })
    .await;
    assert_eq!(health["config"]["last_reload"]["result"], "success");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(generation(&health), 1);
}

#[tokio::test]
async fn yaml_errors_inside_a_secret_give_line_and_column_not_the_line() {
    let key = new_key();
    let gateway = Gateway::start(&base(&key), key, &[]).await;
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData:\n";
    gateway.write_config(
        "tagged.yaml",
        &format!("{secret}  apiKey: !!int sk-live-SECRET789\n"),
    );
    gateway.write_config(
        "syntax.yaml",
        &format!("{secret}  apiKey: \"sk-live-SECRET790\" trailing\n"),
    );
    let health = wait_for(&gateway, "both files rejected", |h| {
        let errors = errors(h);
        errors.contains("tagged.yaml") && errors.contains("syntax.yaml")
    })
    .await;
    let reported = errors(&health);
    assert!(
        reported.contains("tagged.yaml: document 1: invalid YAML at line 5 column"),
        "{reported}"
    );
    assert!(
        reported.contains("syntax.yaml: document 1: invalid YAML at line 5 column"),
        "{reported}"
    );
    let log = gateway.log_text();
    for leaked in ["SECRET789", "SECRET790", "trailing"] {
        assert!(!reported.contains(leaked), "{leaked} in {reported}");
        assert!(!log.contains(leaked), "{leaked} in the log:\n{log}");
    }
}

#[tokio::test]
async fn a_file_over_the_size_cap_is_refused_while_the_previous_configuration_serves() {
    let key = new_key();
    let gateway = Gateway::start(&base(&key), key, &[]).await;
    let value = "A".repeat(50 * 1024 * 1024);
    gateway.write_config(
        "big.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: big}}\nstringData: {{apiKey: {value}}}\n"
        ),
    );
    let health = wait_for(&gateway, "the big file refused", |h| {
        errors(h).contains("big.yaml")
    })
    .await;
    let reported = errors(&health);
    assert!(reported.contains("MAX_CONFIG_FILE_BYTES"), "{reported}");
    assert!(!reported.contains("AAAAAAAA"), "{reported}");
    assert_eq!(generation(&health), 1);
    assert_eq!(gateway.chat(request("fake-model")).await.status(), 200);
    assert!(!gateway.log_text().contains("AAAAAAAA"));
}

#[tokio::test]
async fn a_symlink_out_of_the_directory_is_refused() {
    let key = new_key();
    let gateway = Gateway::start(&base(&key), key, &[]).await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("routes.yaml"),
        route("outside", "outside-model"),
    )
    .unwrap();
    symlink(
        outside.path().join("routes.yaml"),
        gateway.dir.path().join("outside.yaml"),
    )
    .unwrap();
    let health = wait_for(&gateway, "the symlink refused", |h| {
        errors(h).contains("outside.yaml")
    })
    .await;
    assert!(
        errors(&health).contains("outside the config directory"),
        "{health}"
    );
    assert_eq!(generation(&health), 1);
    assert_eq!(gateway.chat(request("outside-model")).await.status(), 404);
}

/// Kubelet's ConfigMap volume: files in a hidden timestamped directory, `..data` pointing at
/// it, every visible name a link through `..data`; an update swaps `..data` atomically.
#[tokio::test]
async fn a_configmap_mount_loads_and_follows_its_atomic_swap() {
    let key = new_key();
    let dir = tempfile::tempdir().unwrap();
    let write_version = |version: &str, text: &str| {
        let path = dir.path().join(version);
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("gateway.yaml"), text).unwrap();
    };
    write_version("..2025_01_01_00_00_00.000000001", &base(&key));
    symlink("..2025_01_01_00_00_00.000000001", dir.path().join("..data")).unwrap();
    symlink("..data/gateway.yaml", dir.path().join("gateway.yaml")).unwrap();
    let config_dir = common::path_str(dir.path()).to_owned();
    let gateway = Gateway::spawn(dir, &["--config", &config_dir], key.clone(), &[]);
    gateway.wait_ready().await;
    assert_eq!(gateway.chat(request("fake-model")).await.status(), 200);

    let root = Path::new(&config_dir);
    let updated = format!("{}---\n{}", base(&key), route("added", "cm-model"));
    let version = root.join("..2025_01_01_00_01_00.000000002");
    std::fs::create_dir(&version).unwrap();
    std::fs::write(version.join("gateway.yaml"), updated).unwrap();
    symlink("..2025_01_01_00_01_00.000000002", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    let health = wait_for(&gateway, "the swapped ConfigMap applied", |h| {
        generation(h) == 2
    })
    .await;
    assert_eq!(health["config"]["last_reload"]["result"], "success");
    assert_eq!(gateway.chat(request("cm-model")).await.status(), 200);
}

/// A file written in place in several steps: a prefix that is itself valid (one complete
/// RoutePolicy), then the rest in small pieces. Only the complete file may be applied, once,
/// with no rejection in between.
#[tokio::test]
#[allow(
    clippy::disallowed_methods,
    reason = "the writer runs on a blocking thread"
)]
async fn a_file_written_in_pieces_is_applied_once_complete() {
    let key = new_key();
    let gateway = Gateway::start(&base(&key), key, &[]).await;
    let routes_before = gateway.detailed().await["config"]["routes"].clone();
    let first = format!("{}---\n", route("first", "piece-a"));
    let rest = route("second", "piece-b");
    let path = gateway.dir.path().join("pieces.yaml");
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(first.as_bytes()).unwrap();
        // Pauses well inside the 100 ms quiet window (a writer pausing longer than that is
        // indistinguishable from one that finished).
        std::thread::sleep(Duration::from_millis(30));
        for piece in rest.as_bytes().chunks(rest.len() / 8 + 1) {
            file.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    wait_for(&gateway, "the complete file applied", |h| {
        generation(h) >= 2
    })
    .await;
    // Room for a late second reload, which a torn first one would have needed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let health = gateway.detailed().await;
    assert_eq!(generation(&health), 2, "applied more than once: {health}");
    assert_eq!(
        health["config"]["routes"].as_u64(),
        routes_before.as_u64().map(|n| n + 2),
        "{health}"
    );
    assert_eq!(health["config"]["last_reload"]["failures"], 0, "{health}");
    let errors = metric(
        &gateway.admin_url,
        r#"llm_config_reloads_total{result="error"}"#,
    )
    .await;
    assert_eq!(errors, None, "a rejection while the file was written");
    assert!(!gateway.log_text().contains("configuration rejected"));
    for model in ["piece-a", "piece-b"] {
        assert_eq!(gateway.chat(request(model)).await.status(), 200, "{model}");
    }
}
