//! Discovery over real HTTP: categories, short and singular names from the CRD, the aggregated
//! form for clients that ask for it, and the OpenAPI v3 documents.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;
use test_apiserver::TestApiServer;

async fn server() -> TestApiServer {
    let server = TestApiServer::start().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/yaml");
    server.create_crds_from(&dir).unwrap();
    server
}

async fn get(server: &TestApiServer, path: &str, accept: &str) -> (u16, String, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.url()))
        .header(ACCEPT, accept)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        content_type,
        response.json().await.unwrap_or_default(),
    )
}

fn find<'a>(list: &'a Value, key: &str, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[tokio::test]
async fn resource_lists_carry_categories_short_and_singular_names() {
    let server = server().await;
    let (status, _, list) = get(&server, "/apis/llmgateway.io/v1alpha1", "application/json").await;
    assert_eq!(status, 200);
    let gateways = find(&list["resources"], "name", "llmgateways");
    assert_eq!(gateways["categories"], serde_json::json!(["llm"]));
    assert_eq!(gateways["singularName"], "llmgateway");
    assert_eq!(gateways["shortNames"], serde_json::json!(["llmgw"]));
    let (_, _, apps) = get(&server, "/apis/apps/v1", "application/json").await;
    let deployments = find(&apps["resources"], "name", "deployments");
    assert_eq!(deployments["categories"], serde_json::json!(["all"]));
    let (_, _, networking) = get(&server, "/apis/networking.k8s.io/v1", "application/json").await;
    find(&networking["resources"], "name", "ingresses");
}

#[tokio::test]
async fn aggregated_discovery_is_served_to_clients_that_ask_for_it() {
    let server = server().await;
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                  application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json;q=0.9";
    let (status, content_type, list) = get(&server, "/apis", accept).await;
    assert_eq!(status, 200);
    assert_eq!(
        content_type,
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    assert_eq!(list["apiVersion"], "apidiscovery.k8s.io/v2");
    let group = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "llmgateway.io")
        .unwrap();
    let version = &group["versions"][0];
    assert_eq!(version["version"], "v1alpha1");
    let providers = find(&version["resources"], "resource", "llmproviders");
    assert_eq!(providers["categories"], serde_json::json!(["llm"]));
    assert_eq!(providers["scope"], "Namespaced");
    assert_eq!(providers["subresources"][0]["subresource"], "status");

    let (_, content_type, core) = get(&server, "/api", accept).await;
    assert!(content_type.contains("as=APIGroupDiscoveryList"));
    find(
        &core["items"][0]["versions"][0]["resources"],
        "resource",
        "configmaps",
    );
    let (_, _, plain) = get(&server, "/apis", "application/json").await;
    assert_eq!(plain["kind"], "APIGroupList", "the plain form otherwise");
}

#[tokio::test]
async fn openapi_v3_lists_group_versions_with_schemas_and_field_validation() {
    let server = server().await;
    let (status, _, root) = get(&server, "/openapi/v3", "application/json").await;
    assert_eq!(status, 200);
    let url = root["paths"]["apis/llmgateway.io/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with("/openapi/v3/apis/llmgateway.io/v1alpha1?hash="),
        "{url}"
    );
    assert!(root["paths"]["api/v1"].is_object() && root["paths"]["apis/apps/v1"].is_object());

    let (status, _, document) = get(&server, &url, "application/json").await;
    assert_eq!(status, 200);
    let schema = &document["components"]["schemas"]["io.llmgateway.v1alpha1.LlmProvider"];
    assert_eq!(
        schema["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "llmgateway.io", "version": "v1alpha1", "kind": "LlmProvider"}])
    );
    assert!(schema["properties"]["spec"]["properties"]["type"].is_object());
    let path = "/apis/llmgateway.io/v1alpha1/namespaces/{namespace}/llmproviders/{name}";
    let patch = &document["paths"][path]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "LlmProvider"
    );
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
        "kubectl 1.27+ leaves validation to the server when PATCH takes fieldValidation"
    );
    let (status, _, v2) = get(&server, "/openapi/v2", "application/json").await;
    assert_eq!(status, 200);
    assert_eq!(
        v2["swagger"], "2.0",
        "an empty v2 document: clients find no schema to check"
    );
}
