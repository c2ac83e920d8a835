//! `fieldValidation` over real HTTP for custom resources: Strict (this server's default)
//! refuses unknown and duplicate fields with the API server's wording, Warn drops them with a
//! `Warning` header each, Ignore drops them silently; server-side apply refuses unknown fields
//! whatever the directive, as the real typed patch conversion does.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use reqwest::header::{CONTENT_TYPE, WARNING};
use serde_json::{Value, json};
use test_apiserver::TestApiServer;

const PROVIDERS: &str = "/apis/llmgateway.io/v1alpha1/namespaces/default/llmproviders";

/// The server with our CRDs and a raw HTTP client.
async fn setup() -> (TestApiServer, Http) {
    let server = TestApiServer::start().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/yaml");
    server.create_crds_from(&dir).unwrap();
    let http = Http(server.url(), reqwest::Client::new());
    (server, http)
}

struct Http(String, reqwest::Client);

/// Status, `Warning` headers and body of one request.
struct Answer {
    status: u16,
    warnings: Vec<String>,
    body: Value,
}

impl Answer {
    fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

impl Http {
    async fn send(&self, method: &str, path: &str, content_type: &str, body: String) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = self
            .1
            .request(method, format!("{}{path}", self.0))
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let warnings = response
            .headers()
            .get_all(WARNING)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        Answer {
            status: response.status().as_u16(),
            warnings,
            body: response.json().await.unwrap(),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send("POST", path, "application/json", body.to_string())
            .await
    }
}

fn provider(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
           "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn strict_is_the_default_and_names_every_unknown_field() {
    let (_server, http) = setup().await;
    let body = provider("p", json!({"type": "fake", "foo": 1, "bar": {"x": 1}}));
    for query in ["", "?fieldValidation=Strict"] {
        let answer = http.post(&format!("{PROVIDERS}{query}"), &body).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert_eq!(answer.body["reason"], "BadRequest");
        let message = answer.message();
        assert!(
            message.starts_with(
                "LlmProvider in version \"v1alpha1\" cannot be handled as a LlmProvider: strict decoding error: "
            ),
            "{message}"
        );
        assert!(message.contains(r#"unknown field "spec.foo""#), "{message}");
        assert!(message.contains(r#"unknown field "spec.bar""#), "{message}");
    }
    let meta = json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
        "metadata": {"name": "m", "labels": {"a": "b"}, "finalizers": ["x/y"], "labelz": {}},
        "spec": {"type": "fake"}, "extra": true});
    let answer = http.post(PROVIDERS, &meta).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer
            .message()
            .contains(r#"unknown field "metadata.labelz""#)
            && answer.message().contains(r#"unknown field "extra""#),
        "known metadata passes, unknown metadata and root fields do not: {}",
        answer.message()
    );
    let answer = http
        .post(&format!("{PROVIDERS}?fieldValidation=Bogus"), &body)
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
}

#[tokio::test]
async fn warn_drops_with_one_warning_each_and_ignore_drops_silently() {
    let (_server, http) = setup().await;
    let body = provider("w", json!({"type": "fake", "foo": 1, "bar": 2}));
    let answer = http
        .post(&format!("{PROVIDERS}?fieldValidation=Warn"), &body)
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let mut warnings = answer.warnings.clone();
    warnings.sort();
    assert_eq!(
        warnings,
        [
            r#"299 - "unknown field \"spec.bar\"""#,
            r#"299 - "unknown field \"spec.foo\"""#
        ]
    );
    assert_eq!(answer.body["spec"].get("foo"), None, "dropped");

    let answer = http
        .post(
            &format!("{PROVIDERS}?fieldValidation=Ignore"),
            &provider("i", json!({"type": "fake", "foo": 1})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert!(answer.warnings.is_empty(), "{:?}", answer.warnings);
    assert_eq!(answer.body["spec"].get("foo"), None, "dropped");
}

#[tokio::test]
async fn duplicate_fields_are_refused_or_warned_about() {
    let (_server, http) = setup().await;
    let raw = r#"{"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
        "metadata": {"name": "d"}, "spec": {"type": "fake", "maxConcurrency": 1, "maxConcurrency": 2}}"#;
    let answer = http
        .send("POST", PROVIDERS, "application/json", raw.to_owned())
        .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer
            .message()
            .contains(r#"strict decoding error: duplicate field "spec.maxConcurrency""#),
        "{}",
        answer.message()
    );
    let answer = http
        .send(
            "POST",
            &format!("{PROVIDERS}?fieldValidation=Warn"),
            "application/json",
            raw.to_owned(),
        )
        .await;
    assert_eq!(answer.status, 201);
    assert_eq!(
        answer.warnings,
        [r#"299 - "duplicate field \"spec.maxConcurrency\"""#]
    );
    assert_eq!(
        answer.body["spec"]["maxConcurrency"], 2,
        "the last one wins"
    );
}

#[tokio::test]
async fn updates_and_patches_are_checked_too() {
    let (_server, http) = setup().await;
    let created = http
        .post(PROVIDERS, &provider("u", json!({"type": "fake"})))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let one = format!("{PROVIDERS}/u");

    let mut replaced = created.body.clone();
    replaced["spec"]["foo"] = json!(1);
    let answer = http
        .send("PUT", &one, "application/json", replaced.to_string())
        .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.message().ends_with(
            r#"cannot be handled as a LlmProvider: strict decoding error: unknown field "spec.foo""#
        ),
        "{}",
        answer.message()
    );

    let merge = json!({"spec": {"foo": 1}}).to_string();
    let answer = http
        .send("PATCH", &one, "application/merge-patch+json", merge.clone())
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.message(),
        r#"strict decoding error: unknown field "spec.foo""#
    );
    let answer = http
        .send(
            "PATCH",
            &format!("{one}?fieldValidation=Warn"),
            "application/merge-patch+json",
            merge,
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.warnings, [r#"299 - "unknown field \"spec.foo\"""#]);

    let json_patch = json!([{"op": "add", "path": "/spec/foo", "value": 1}]).to_string();
    let answer = http
        .send("PATCH", &one, "application/json-patch+json", json_patch)
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
}

#[tokio::test]
async fn server_side_apply_refuses_unknown_fields_whatever_the_directive() {
    let (_server, http) = setup().await;
    let applied = provider("a", json!({"type": "fake", "foo": 1})).to_string();
    for validation in ["Strict", "Warn", "Ignore"] {
        let answer = http
            .send(
                "PATCH",
                &format!("{PROVIDERS}/a?fieldManager=t&fieldValidation={validation}"),
                "application/apply-patch+yaml",
                applied.clone(),
            )
            .await;
        assert_eq!(answer.status, 500, "{validation}: {}", answer.body);
        assert_eq!(
            answer.message(),
            "failed to create typed patch object (/a; llmgateway.io/v1alpha1, Kind=LlmProvider): \
             .spec.foo: field not declared in schema"
        );
    }
    let duplicated = "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: a}\n\
                      spec:\n  type: fake\n  maxConcurrency: 1\n  maxConcurrency: 2\n";
    let answer = http
        .send(
            "PATCH",
            &format!("{PROVIDERS}/a?fieldManager=t"),
            "application/apply-patch+yaml",
            duplicated.to_owned(),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer.message().starts_with("error strict decoding YAML:")
            && answer.message().contains("spec.maxConcurrency"),
        "{}",
        answer.message()
    );
}

#[tokio::test]
async fn preserved_subtrees_keep_unknown_fields_under_strict() {
    let server = TestApiServer::start().await.unwrap();
    let http = Http(server.url(), reqwest::Client::new());
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "known": {"type": "string"}}}}}}}]}});
    let answer = http
        .post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &crd,
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"known": "k", "free": {"anything": {"goes": [1, 2]}}}});
    let answer = http
        .post("/apis/example.com/v1/namespaces/default/widgets", &widget)
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(
        answer.body["spec"]["free"]["anything"]["goes"],
        json!([1, 2])
    );
}
