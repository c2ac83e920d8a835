//! Micro-benchmarks of the per-request work before the upstream call: parsing and validating
//! the body, authenticating a key among 10,000, finding the route among 1,000 and picking its
//! targets' order; plus compiling that whole configuration (what a reload costs).
//!
//! Run: `cargo bench -p llm-gateway --bench hot_path`.

#![allow(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use llm_gateway::config::Snapshot;
use llm_gateway::config::source_dir;
use llm_gateway::metrics::Metrics;
use llm_gateway::request::ClientRequest;
use llm_gateway::targets::TargetRegistry;
use llm_gateway::upstream_http::{Transport, TransportSettings};
use llm_gateway_crds::compile::{CompileInputs, compile};
use llm_gateway_crds::compiled::CompiledConfig;

const KEYS: usize = 10_000;
const ROUTES: usize = 1_000;
const PEPPER: &[u8] = b"bench";

fn small_body() -> Bytes {
    Bytes::from_static(
        br#"{"model":"model-500","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64,"temperature":0.2,"stream":true,"stream_options":{"include_usage":true}}"#,
    )
}

fn large_body() -> Bytes {
    let turns: Vec<_> = (0..40)
        .map(|i| serde_json::json!({"role": if i % 2 == 0 {"user"} else {"assistant"}, "content": "lorem ipsum dolor sit amet ".repeat(16)}))
        .collect();
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({"model": "model-500", "messages": turns})).unwrap(),
    )
}

/// A configuration directory with 10,000 keys and 1,000 weighted routes over 3 providers.
fn config_dir(keys: &[String]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut providers = String::new();
    for p in 0..3 {
        providers.push_str(&format!("---\napiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: p{p}}}\nspec: {{type: openaiCompatible, baseUrl: \"http://127.0.0.1:9/v1\", allowLocalAddresses: true}}\n"));
    }
    providers.push_str("---\napiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: bench}\nspec:\n  routes:\n");
    for r in 0..ROUTES {
        providers.push_str(&format!("  - {{model: model-{r}, strategy: weighted, targets: [{{provider: p0, weight: 5}}, {{provider: p1, weight: 3}}, {{provider: p2, weight: 2}}]}}\n"));
    }
    std::fs::write(dir.path().join("providers.yaml"), providers).unwrap();
    let mut text = String::new();
    for (i, key) in keys.iter().enumerate() {
        text.push_str(&format!("---\napiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: k{i}}}\nspec: {{secretName: k{i}, owner: team}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: k{i}}}\nstringData: {{apiKey: {key}}}\n"));
    }
    std::fs::write(dir.path().join("keys.yaml"), text).unwrap();
    dir
}

fn compiled(dir: &std::path::Path) -> CompiledConfig {
    let contents = source_dir::read(dir).unwrap();
    let env = |_: &str| None;
    compile(
        &contents.manifests,
        &CompileInputs {
            env: &env,
            key_pepper: PEPPER,
            admitted: false,
        },
    )
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let keys: Vec<String> = (0..KEYS)
        .map(|_| llm_gateway_crds::keys::generate().unwrap())
        .collect();
    let dir = config_dir(&keys);
    let registry = TargetRegistry::new(Arc::new(Metrics::new()));
    // The loader reuses each provider's transport across reloads; so does this.
    let transport = Transport::new(Duration::from_secs(1), true, TransportSettings::default());
    let snapshot = Snapshot::new(compiled(dir.path()), 1, &registry, &mut |_| {
        transport.clone()
    });

    let mut group = c.benchmark_group("parse");
    for (name, body) in [("small", small_body()), ("16KiB", large_body())] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| ClientRequest::parse(black_box(body.clone())).unwrap())
        });
    }
    group.finish();

    c.bench_function("authenticate (1 of 10,000 keys)", |b| {
        let key = &keys[KEYS / 2];
        b.iter(|| {
            snapshot
                .authenticate(black_box(key), PEPPER)
                .unwrap()
                .owner
                .len()
        })
    });
    c.bench_function("route lookup + weighted pick (1 of 1,000 routes)", |b| {
        b.iter(|| {
            snapshot
                .routes
                .get(black_box("model-500"))
                .unwrap()
                .pick_order(None)
        })
    });

    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    group.bench_function("read + compile 10,000 keys and 1,000 routes", |b| {
        b.iter(|| compiled(dir.path()).routes.len())
    });
    group.bench_function("read (parse only)", |b| {
        b.iter(|| source_dir::read(dir.path()).unwrap().manifests.len())
    });
    group.bench_function(
        "one key edited: read, compile, snapshot (documents reused)",
        |b| {
            let edited = config_dir(&keys);
            let text = std::fs::read_to_string(edited.path().join("keys.yaml")).unwrap();
            let text = text.replacen("owner: team}", "owner: other}", 1);
            std::fs::write(edited.path().join("keys.yaml"), text).unwrap();
            let mut cache = llm_gateway_crds::manifest::DocumentCache::default();
            let limits = source_dir::DirLimits::default();
            let mut flip = false;
            b.iter(|| {
                flip = !flip;
                let dir = if flip { dir.path() } else { edited.path() };
                let contents = source_dir::read_settled(dir, &limits, &mut cache).unwrap();
                assert!(cache.take_rule_errors().is_empty());
                let env = |_: &str| None;
                let inputs = CompileInputs {
                    env: &env,
                    key_pepper: PEPPER,
                    admitted: true,
                };
                let config = compile(&contents.manifests, &inputs).unwrap();
                Snapshot::new(config, 3, &registry, &mut |_| transport.clone())
            })
        },
    );
    let parsed = source_dir::read(dir.path()).unwrap().manifests;
    for admitted in [false, true] {
        let name = if admitted {
            "compile (rules skipped)"
        } else {
            "compile"
        };
        group.bench_function(name, |b| {
            let env = |_: &str| None;
            let inputs = CompileInputs {
                env: &env,
                key_pepper: PEPPER,
                admitted,
            };
            b.iter(|| compile(&parsed, &inputs).unwrap().routes.len())
        });
    }
    group.bench_function("snapshot from compiled", |b| {
        b.iter_batched(
            || compiled(dir.path()),
            |config| Snapshot::new(config, 2, &registry, &mut |_| transport.clone()),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
