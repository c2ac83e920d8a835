//! Debian's kubectl 1.20 as an outside client: apply our CRDs, wait for
//! Established, apply the example resources, get, server-side apply with a conflict, delete.
//! `KUBECTL` names the binary (tests/run-all.sh extracts Debian's `kubernetes-client`).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::process::Command;

use test_apiserver::TestApiServer;

struct Kubectl {
    binary: String,
    kubeconfig: tempfile::NamedTempFile,
    cache: tempfile::TempDir,
}

impl Kubectl {
    fn new(server: &TestApiServer) -> Self {
        let binary = std::env::var("KUBECTL").expect(
            "set KUBECTL to a kubectl 1.20 binary (tests/run-all.sh extracts Debian's kubernetes-client)",
        );
        let kubeconfig = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(kubeconfig.path(), server.kubeconfig()).unwrap();
        Self {
            binary,
            kubeconfig,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs kubectl; returns (success, stdout + stderr).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(self.kubeconfig.path())
            .arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--request-timeout=20s")
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (success, text) = self.run(args);
        assert!(success, "kubectl {args:?} failed:\n{text}");
        text
    }
}

fn repo(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_waits_gets_conflicts_and_deletes() {
    let server = TestApiServer::start().await.unwrap();
    let kubectl = Kubectl::new(&server);
    let version = kubectl.ok(&["version", "--client", "--short"]);
    assert!(
        version.contains("v1.20"),
        "expected kubectl 1.20: {version}"
    );
    let crds = repo("crds/yaml");
    let examples = repo("deployments/standalone");
    tokio::task::spawn_blocking(move || {
        let applied = kubectl.ok(&["apply", "--validate=false", "-f", &crds]);
        assert_eq!(applied.matches(" created").count(), 4, "{applied}");
        kubectl.ok(&[
            "wait",
            "--for=condition=Established",
            "crd/llmproviders.llmgateway.io",
            "--timeout=10s",
        ]);
        kubectl.ok(&["apply", "--validate=false", "-f", &examples]);
        let names = kubectl.ok(&["get", "llmproviders", "-o", "name"]);
        assert!(names.contains("llmprovider.llmgateway.io/fake"), "{names}");
        let table = kubectl.ok(&["get", "routepolicies"]);
        assert!(
            table.contains("MODELS") && table.contains("fake-gpt,"),
            "printer columns: {table}"
        );
        let yaml = kubectl.ok(&["get", "routepolicy", "default", "-o", "yaml"]);
        assert!(
            yaml.contains("fake-gpt") && yaml.contains("resourceVersion"),
            "{yaml}"
        );

        let ssa = tempfile::NamedTempFile::new().unwrap();
        let manifest = r#"{"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
            "metadata": {"name": "ssa"}, "spec": {"type": "fake", "maxConcurrency": 5}}"#;
        std::fs::write(ssa.path(), manifest).unwrap();
        let path = ssa.path().to_str().unwrap();
        kubectl.ok(&["apply", "--server-side", "--validate=false", "-f", path]);
        std::fs::write(
            ssa.path(),
            manifest.replace("\"maxConcurrency\": 5", "\"maxConcurrency\": 7"),
        )
        .unwrap();
        let (success, text) = kubectl.run(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--validate=false",
            "-f",
            path,
        ]);
        assert!(!success && text.contains("conflict"), "{text}");
        kubectl.ok(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "--validate=false",
            "-f",
            path,
        ]);
        let spec = kubectl.ok(&[
            "get",
            "llmprovider",
            "ssa",
            "-o",
            "jsonpath={.spec.maxConcurrency}",
        ]);
        assert_eq!(spec.trim(), "7");

        kubectl.ok(&["delete", "llmprovider", "flaky", "--timeout=10s"]);
        let (found, _) = kubectl.run(&["get", "llmprovider", "flaky"]);
        assert!(!found, "deleted");
    })
    .await
    .unwrap();
}
