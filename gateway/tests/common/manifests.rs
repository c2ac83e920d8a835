//! Small builders of standalone manifests, so each test states only what it is about.

/// Joins documents into one multi-document YAML text.
pub fn join(documents: &[String]) -> String {
    documents.join("---\n")
}

/// The fake provider `name`.
pub fn fake_provider(name: &str) -> String {
    format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: {name}}}\nspec: {{type: fake}}\n"
    )
}

/// An OpenAI-compatible provider `name` at `base_url` sending `credential`, with `extra`
/// spec lines (indented two spaces) appended.
pub fn upstream_provider(name: &str, base_url: &str, credential: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: {name}}}
spec:
  type: openaiCompatible
  baseUrl: {base_url}
  allowLocalAddresses: true
  credentials: {{secretRef: {{name: {name}-credential, key: apiKey}}}}
{extra}
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}-credential}}
stringData: {{apiKey: {credential}}}
"#
    )
}

/// One RoutePolicy with a route per `(model, provider, upstream model)`.
pub fn routes(routes: &[(&str, &str, &str)]) -> String {
    let mut text = String::from(
        "apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: routes}\nspec:\n  routes:\n",
    );
    for (model, provider, upstream) in routes {
        text.push_str(&format!(
            "  - model: {model}\n    targets: [{{provider: {provider}, model: {upstream}}}]\n"
        ));
    }
    text
}

/// The ApiKey `caller` (owner `team-a`, `spec` fields appended inside the flow mapping, e.g.
/// `", limits: {requestsPerMinute: 10}"`) and its Secret holding `key`.
pub fn caller_key(key: &str, spec: &str) -> String {
    format!(
        r#"apiVersion: llmgateway.io/v1alpha1
kind: ApiKey
metadata: {{name: caller}}
spec: {{secretName: caller-key, owner: team-a{spec}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: caller-key}}
stringData: {{apiKey: {key}}}
"#
    )
}

/// A priced upstream route `up` ($1 per million prompt tokens, $2 per million completion) in
/// front of `upstream`, and the key `caller` with `key_spec`.
pub fn priced_route_and_key(upstream: &str, key: &str, key_spec: &str) -> String {
    let priced =
        "  models: [{name: upstream-model, inputPerMillionUsd: 1.0, outputPerMillionUsd: 2.0}]";
    join(&[
        upstream_provider("upstream", upstream, "sk-upstream-secret", priced),
        routes(&[("up", "upstream", "upstream-model")]),
        caller_key(key, key_spec),
    ])
}

/// The Redis hash of the `caller` key's usage this month.
pub fn monthly_usage_key() -> String {
    let month = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .first_of_month();
    format!("lgw:{{key:default/caller}}:usage:{month}")
}
