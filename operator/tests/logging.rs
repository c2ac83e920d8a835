//! Log lines as a collector stores them: no terminal colour codes when stderr is not a
//! terminal, and one JSON object per line with `LOG_FORMAT=json`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::process::Command;

mod common;

/// The operator's stderr when no API server answers (it logs its settings, then gives up).
fn stderr_without_a_cluster(format: &str) -> String {
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    let port = common::free_port();
    std::fs::write(
        kubeconfig.path(),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: x\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\ncontexts:\n- name: x\n  context: {{cluster: x, user: x}}\ncurrent-context: x\nusers:\n- name: x\n  user: {{token: x}}\n"
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_llm-gateway-operator"))
        .env("KUBECONFIG", kubeconfig.path())
        .env("CONNECT_TIMEOUT_SECONDS", "1")
        .env("LOG_LEVEL", "info")
        .env("LOG_FORMAT", format)
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn text_logs_carry_no_colour_codes_off_a_terminal() {
    let stderr = stderr_without_a_cluster("text");
    assert!(stderr.contains("image repositories"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let stderr = stderr_without_a_cluster("json");
    let first = stderr.lines().next().unwrap();
    let line: serde_json::Value = serde_json::from_str(first).unwrap();
    assert_eq!(line["level"], "INFO");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("image repositories")
    );
}
