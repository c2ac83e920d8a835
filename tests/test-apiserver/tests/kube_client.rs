//! The test API server against kube-rs over real HTTP: CRUD, conflicts, pagination, the
//! status subresource, finalizers, CRD registration and the watcher across drops and 410s.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config, ResourceExt};
use llm_gateway_crds::llm_provider::LlmProvider;
use serde_json::json;
use test_apiserver::TestApiServer;

async fn client(server: &TestApiServer) -> Client {
    let config = Config::new(server.url().parse().unwrap());
    Client::try_from(config).unwrap()
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "gw"}},
        "data": {"k": value},
    }))
    .unwrap()
}

#[tokio::test]
async fn crud_conflicts_and_pagination() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let created = api
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    let again = api
        .create(&PostParams::default(), &config_map("a", "1"))
        .await;
    assert!(
        matches!(again, Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists")
    );

    let mut stale = created.clone();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    stale.data = Some([("k".to_owned(), "3".to_owned())].into());
    let conflict = api.replace("a", &PostParams::default(), &stale).await;
    assert!(
        matches!(conflict, Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "Conflict")
    );
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["k"], "2");

    for i in 0..5 {
        api.create(&PostParams::default(), &config_map(&format!("p{i}"), "x"))
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(2).labels("app=gw");
    loop {
        let page = api.list(&params).await.unwrap();
        assert!(page.items.len() <= 2);
        names.extend(page.items.iter().map(ResourceExt::name_any));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(names, ["a", "p0", "p1", "p2", "p3", "p4"]);

    let missing = api.get("nope").await;
    assert!(matches!(missing, Err(kube::Error::Api(e)) if e.code == 404 && e.reason == "NotFound"));
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());

    let elsewhere: Api<ConfigMap> = Api::namespaced(client(&server).await, "missing");
    let refused = elsewhere
        .create(&PostParams::default(), &config_map("b", "1"))
        .await;
    assert!(matches!(refused, Err(kube::Error::Api(e)) if e.code == 404));
}

#[tokio::test]
async fn secrets_fold_string_data_and_finalizers_hold_deletion() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<Secret> = Api::namespaced(client(&server).await, "default");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "s", "finalizers": ["test/hold"]},
        "stringData": {"apiKey": "hello"},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &secret).await.unwrap();
    assert!(created.string_data.is_none());
    assert_eq!(created.data.unwrap()["apiKey"].0, b"hello");

    api.delete("s", &DeleteParams::default()).await.unwrap();
    let held = api.get("s").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "finalizer holds it"
    );
    let failed_test = Patch::<()>::Json(
        serde_json::from_value(
            json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "other"}]),
        )
        .unwrap(),
    );
    let refused = api.patch("s", &PatchParams::default(), &failed_test).await;
    assert!(matches!(refused, Err(kube::Error::Api(e)) if e.code == 422));
    let remove = Patch::<()>::Json(
        serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "test/hold"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]))
        .unwrap(),
    );
    api.patch("s", &PatchParams::default(), &remove)
        .await
        .unwrap();
    assert!(
        api.get_opt("s").await.unwrap().is_none(),
        "gone once released"
    );
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/yaml");
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap();
        let created = crds.create(&PostParams::default(), &crd).await.unwrap();
        let established = created
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established);
    }
}

#[tokio::test]
async fn custom_resources_once_their_crd_exists_with_a_status_subresource() {
    let server = TestApiServer::start().await.unwrap();
    let client = client(&server).await;
    install_crds(&client).await;
    let api: Api<LlmProvider> = Api::namespaced(client, "default");
    let provider: LlmProvider = serde_json::from_value(json!({
        "apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
        "metadata": {"name": "fake"}, "spec": {"type": "fake"},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &provider).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let status = Patch::Merge(json!({"status": {"observedGeneration": 1}}));
    let after = api
        .patch_status("fake", &PatchParams::default(), &status)
        .await
        .unwrap();
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "status writes keep the generation"
    );
    assert!(after.status.is_some());
    let spec = Patch::Merge(json!({"spec": {"maxConcurrency": 5}, "status": null}));
    let after = api
        .patch("fake", &PatchParams::default(), &spec)
        .await
        .unwrap();
    assert_eq!(after.metadata.generation, Some(2));
    assert!(
        after.status.is_some(),
        "the main resource cannot change status"
    );
    let apply = Patch::Apply(json!({
        "apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
        "metadata": {"name": "applied"}, "spec": {"type": "fake"},
    }));
    api.patch("applied", &PatchParams::apply("test"), &apply)
        .await
        .unwrap();
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
}

#[tokio::test]
async fn the_watcher_resumes_after_a_drop_and_relists_after_a_410() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    api.create(&PostParams::default(), &config_map("w0", "0"))
        .await
        .unwrap();
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    // The watcher reports a 410 as one error item, then relists on the next poll.
    let mut next = async || -> String {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await {
                Ok(Ok(Some(Event::Apply(o) | Event::InitApply(o)))) => {
                    return format!("apply {}", o.name_any());
                }
                Ok(Ok(Some(Event::Delete(o)))) => return format!("delete {}", o.name_any()),
                Ok(Ok(Some(Event::Init))) => return "init".to_owned(),
                Ok(Ok(Some(Event::InitDone))) => return "init done".to_owned(),
                Ok(Err(watcher::Error::WatchError(e))) if e.code == 410 => continue,
                other => panic!("watch failed: {other:?}"),
            }
        }
    };
    for _ in 0..3 {
        seen.push(next().await);
    }
    assert_eq!(seen, ["init", "apply w0", "init done"]);

    api.create(&PostParams::default(), &config_map("w1", "1"))
        .await
        .unwrap();
    assert_eq!(next().await, "apply w1");
    let lists_before = count(&server, |r| !r.query.contains("watch=true"));
    server.drop_watches();
    api.create(&PostParams::default(), &config_map("w2", "2"))
        .await
        .unwrap();
    assert_eq!(next().await, "apply w2", "resumed after the drop");
    assert_eq!(
        count(&server, |r| !r.query.contains("watch=true")),
        lists_before,
        "no relist after a drop"
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.query.contains("watch=true") && r.query.contains("resourceVersion="))
    );

    server.expire_watches();
    api.delete("w0", &DeleteParams::default()).await.unwrap();
    let mut after = Vec::new();
    for _ in 0..4 {
        after.push(next().await);
    }
    assert_eq!(
        after,
        ["init", "apply w1", "apply w2", "init done"],
        "relisted after the 410"
    );
}

fn count(
    server: &TestApiServer,
    predicate: impl Fn(&test_apiserver::RequestRecord) -> bool,
) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/configmaps"))
        .filter(|r| predicate(r))
        .count()
}

#[tokio::test]
async fn server_side_apply_owns_fields_conflicts_and_is_idempotent() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let applied = |value: &str| {
        Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ssa"}, "data": {"k": value}}))
    };
    let first = api
        .patch("ssa", &PatchParams::apply("operator"), &applied("1"))
        .await
        .unwrap();
    let again = api
        .patch("ssa", &PatchParams::apply("operator"), &applied("1"))
        .await
        .unwrap();
    assert_eq!(
        first.metadata.resource_version, again.metadata.resource_version,
        "an unchanged apply writes nothing"
    );
    let managers: Vec<_> = again
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| m.manager.unwrap())
        .collect();
    assert_eq!(managers, ["operator"]);
    let conflict = api
        .patch("ssa", &PatchParams::apply("someone-else"), &applied("2"))
        .await;
    assert!(
        matches!(conflict, Err(kube::Error::Api(ref e)) if e.code == 409),
        "{conflict:?}"
    );
    let forced = api
        .patch(
            "ssa",
            &PatchParams::apply("someone-else").force(),
            &applied("2"),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["k"], "2");
}

#[tokio::test]
async fn custom_resources_are_defaulted_pruned_and_validated_with_cel() {
    let server = TestApiServer::start().await.unwrap();
    let client = client(&server).await;
    install_crds(&client).await;
    let gvk = kube::api::GroupVersionKind::gvk("llmgateway.io", "v1alpha1", "LlmProvider");
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, "llmproviders");
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client, "default", &resource);
    let create = async |spec: serde_json::Value| {
        let object = serde_json::from_value(json!({
            "apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
            "metadata": {"name": "p"}, "spec": spec,
        }))
        .unwrap();
        api.create(&PostParams::default(), &object).await
    };
    let invalid = |result: Result<kube::api::DynamicObject, kube::Error>| match result {
        Err(kube::Error::Api(e)) if e.code == 422 && e.reason == "Invalid" => e.message,
        other => panic!("expected 422 Invalid, got {other:?}"),
    };
    let message = invalid(create(json!({"type": "bogus"})).await);
    assert!(
        message.contains("spec.type") && message.contains("Unsupported value"),
        "{message}"
    );
    let message =
        invalid(create(json!({"type": "openaiCompatible", "credentials": {"env": "X"}})).await);
    assert!(
        message.contains("spec.baseUrl is required"),
        "CEL: {message}"
    );
    let message = invalid(create(json!({"type": "fake", "maxConcurrency": "many"})).await);
    assert!(message.contains("spec.maxConcurrency"), "{message}");

    let refused = create(json!({"type": "fake", "unknownField": 1})).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 400
            && e.message.contains(r#"strict decoding error: unknown field "spec.unknownField""#)),
        "Strict by default: {refused:?}"
    );
    let created = create(json!({"type": "fake"})).await.unwrap();
    assert_eq!(
        created.data["spec"]["timeouts"]["connect"], "2s",
        "defaulted"
    );
}

#[tokio::test]
async fn owners_collect_their_dependents_by_policy_and_namespaces_empty_themselves() {
    use k8s_openapi::api::core::v1::Namespace;
    let server = TestApiServer::start().await.unwrap();
    server.set_gc_delay(Duration::from_millis(200));
    let client = client(&server).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owned = async |owner: &ConfigMap, name: &str| {
        let mut dependent = config_map(name, "d");
        dependent.metadata.owner_references = Some(vec![
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "ConfigMap", "name": owner.name_any(),
                "uid": owner.metadata.uid.clone().unwrap(), "blockOwnerDeletion": true,
            }))
            .unwrap(),
        ]);
        maps.create(&PostParams::default(), &dependent)
            .await
            .unwrap()
    };
    let gone = async |name: &str| {
        for _ in 0..100 {
            if maps.get_opt(name).await.unwrap().is_none() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };

    let owner = maps
        .create(&PostParams::default(), &config_map("owner", "o"))
        .await
        .unwrap();
    owned(&owner, "background").await;
    maps.delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        maps.get_opt("background").await.unwrap().is_some(),
        "collected after the delay"
    );
    assert!(gone("background").await, "background propagation");

    let owner = maps
        .create(&PostParams::default(), &config_map("owner2", "o"))
        .await
        .unwrap();
    owned(&owner, "orphan").await;
    maps.delete("owner2", &DeleteParams::orphan())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let orphan = maps.get("orphan").await.unwrap();
    assert!(
        orphan
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );

    let owner = maps
        .create(&PostParams::default(), &config_map("owner3", "o"))
        .await
        .unwrap();
    owned(&owner, "foreground").await;
    maps.delete("owner3", &DeleteParams::foreground())
        .await
        .unwrap();
    let waiting = maps.get("owner3").await.unwrap();
    assert!(
        waiting
            .finalizers()
            .iter()
            .any(|f| f == "foregroundDeletion")
    );
    assert!(
        gone("foreground").await && gone("owner3").await,
        "foreground propagation"
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
        )
        .await
        .unwrap();
    let team: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    team.create(&PostParams::default(), &config_map("inside", "x"))
        .await
        .unwrap();
    namespaces
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    let refused = team
        .create(&PostParams::default(), &config_map("late", "x"))
        .await;
    assert!(
        matches!(refused, Err(kube::Error::Api(e)) if e.code == 403),
        "terminating namespace"
    );
    for _ in 0..100 {
        if namespaces.get_opt("team").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        namespaces.get_opt("team").await.unwrap().is_none(),
        "namespace emptied and gone"
    );
    assert!(team.get_opt("inside").await.unwrap().is_none());
}

#[tokio::test]
async fn a_selector_watch_sees_objects_enter_and_leave_the_selection() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let config = watcher::Config::default().labels("tier=web");
    let mut events = watcher::watcher(api.clone(), config).boxed();
    let mut next = async || loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await {
            Ok(Ok(Some(Event::Apply(o)))) => return format!("apply {}", o.name_any()),
            Ok(Ok(Some(Event::Delete(o)))) => return format!("delete {}", o.name_any()),
            Ok(Ok(Some(Event::InitDone))) => return "init done".to_owned(),
            Ok(Ok(Some(_))) => continue,
            other => panic!("watch failed: {other:?}"),
        }
    };
    let created = api
        .create(&PostParams::default(), &config_map("m", "1"))
        .await
        .unwrap();
    assert_eq!(created.labels()["app"], "gw");
    assert_eq!(next().await, "init done", "nothing matches yet");
    let label = |tier: &str| Patch::Merge(json!({"metadata": {"labels": {"tier": tier}}}));
    api.patch("m", &PatchParams::default(), &label("web"))
        .await
        .unwrap();
    assert_eq!(next().await, "apply m", "started matching: ADDED");
    api.patch("m", &PatchParams::default(), &label("db"))
        .await
        .unwrap();
    assert_eq!(next().await, "delete m", "stopped matching: DELETED");
}

#[tokio::test]
async fn watches_send_bookmarks_and_end_at_their_timeout() {
    use kube::api::{WatchEvent, WatchParams};
    let server = TestApiServer::start().await.unwrap();
    server.set_bookmark_interval(Duration::from_millis(100));
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    let version = list.metadata.resource_version.unwrap();
    let started = std::time::Instant::now();
    let params = WatchParams::default().timeout(1);
    let mut stream = api.watch(&params, &version).await.unwrap().boxed();
    let mut bookmarks = 0;
    while let Some(event) = stream.try_next().await.unwrap() {
        if let WatchEvent::Bookmark(mark) = event {
            assert!(!mark.metadata.resource_version.is_empty());
            bookmarks += 1;
        }
    }
    let elapsed = started.elapsed();
    assert!(bookmarks >= 5, "{bookmarks} bookmarks");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&elapsed),
        "ended after {elapsed:?}"
    );
}
