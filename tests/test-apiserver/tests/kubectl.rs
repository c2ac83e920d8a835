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
        assert_eq!(applied.matches(" created").count(), 5, "{applied}");
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

/// Writes `text` to a YAML file in `dir` and returns its path.
fn manifest(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn crd(plural: &str, kind: &str, categories: &str) -> String {
    let singular = kind.to_lowercase();
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
         metadata: {{name: {plural}.example.com}}\n\
         spec:\n  group: example.com\n  scope: Namespaced\n\
         \x20 names: {{kind: {kind}, plural: {plural}, singular: {singular}, categories: {categories}}}\n\
         \x20 versions:\n  - name: v1\n    served: true\n    storage: true\n\
         \x20   schema: {{openAPIV3Schema: {{type: object}}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_by_category_and_a_category_shadows_a_singular_name() {
    let server = TestApiServer::start().await.unwrap();
    let kubectl = Kubectl::new(&server);
    let crds = repo("crds/yaml");
    let examples = repo("deployments/standalone");
    let dir = tempfile::tempdir().unwrap();
    tokio::task::spawn_blocking(move || {
        kubectl.ok(&["apply", "--validate=false", "-f", &crds]);
        kubectl.ok(&["apply", "--validate=false", "-f", &examples]);
        let gateway = "apiVersion: llmgateway.io/v1alpha1\nkind: LlmGateway\nmetadata: {name: gw}\nspec: {}\n";
        kubectl.ok(&["apply", "--validate=false", "-f", &manifest(&dir, "gw.yaml", gateway)]);
        let listed = kubectl.ok(&["get", "llm", "-o", "name"]);
        for name in ["llmprovider.llmgateway.io/fake", "routepolicy.llmgateway.io/default", "llmgateway.llmgateway.io/gw"] {
            assert!(listed.contains(name), "kubectl get llm lists {name}:\n{listed}");
        }
        let one = kubectl.ok(&["get", "llmgateway", "gw", "-o", "name"]);
        assert_eq!(one.trim(), "llmgateway.llmgateway.io/gw", "category llm shadows no singular name");

        // A category equal to another resource's singular name: kubectl expands categories
        // before it resolves resource names, so `get widget` means the category.
        let widgets = manifest(&dir, "widgets.yaml", &crd("widgets", "Widget", "[]"));
        let gadgets = manifest(&dir, "gadgets.yaml", &crd("gadgets", "Gadget", "[widget]"));
        kubectl.ok(&["apply", "--validate=false", "-f", &widgets, "-f", &gadgets]);
        let objects = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\n---\n\
                       apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1}\n";
        kubectl.ok(&["apply", "--validate=false", "-f", &manifest(&dir, "objects.yaml", objects)]);
        let (found, text) = kubectl.run(&["get", "widget", "w1", "-o", "name"]);
        println!("kubectl get widget w1 -> success={found}\n{text}");
        assert!(!found, "the category wins over the singular name:\n{text}");
        assert!(text.contains(r#"gadgets "w1" not found"#), "{text}");
        let listed = kubectl.ok(&["get", "widget", "-o", "name"]);
        assert_eq!(listed.trim(), "gadget.example.com/g1", "the category's members only");
        for unambiguous in ["widgets", "widget.example.com"] {
            let args = ["get", unambiguous, "w1", "-o", "name"];
            assert_eq!(kubectl.ok(&args).trim(), "widget.example.com/w1", "{unambiguous:?}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_20_applies_with_default_validation_and_the_server_refuses_unknown_fields() {
    let server = TestApiServer::start().await.unwrap();
    let kubectl = Kubectl::new(&server);
    let crds = repo("crds/yaml");
    let dir = tempfile::tempdir().unwrap();
    tokio::task::spawn_blocking(move || {
        let created = kubectl.ok(&["apply", "-f", &crds]);
        assert_eq!(created.matches(" created").count(), 5, "{created}");
        let typo = "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: typo}\n\
                    spec: {type: fake, maxConcurency: 3}\n";
        let (applied, text) = kubectl.run(&["apply", "-f", &manifest(&dir, "typo.yaml", typo)]);
        assert!(!applied, "{text}");
        assert!(
            text.contains(r#"strict decoding error: unknown field "spec.maxConcurency""#),
            "the server's Strict default catches what kubectl 1.20 cannot:\n{text}"
        );
    })
    .await
    .unwrap();
}
