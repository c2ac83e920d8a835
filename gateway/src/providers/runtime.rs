//! A provider as the request path uses it: its compiled settings and the handles built once
//! per configuration (the upstream transport, the bulkhead, OpenAI-format URLs). The
//! configuration builds it; the adapters own its shape.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use llm_gateway_crds::compiled::CompiledProvider;

use crate::targets::ProviderState;
use crate::upstream_http::Transport;

/// A provider and the HTTP client that reaches it.
#[derive(Debug)]
pub struct ProviderRuntime {
    /// Compiled settings.
    pub compiled: CompiledProvider,
    /// Its name, shared by the labels and records of every request it serves.
    pub name: Arc<str>,
    /// Builds this provider's requests (the transport's client).
    pub client: reqwest::Client,
    /// Sends them: the in-task connection pool for this provider's connect timeout and
    /// address policy (shared across reloads).
    pub transport: Transport,
    /// Requests served by the fake provider, to spread its failures deterministically.
    pub fake_sequence: AtomicU64,
    /// In-flight count for the `maxConcurrency` bulkhead (shared across reloads).
    pub bulkhead: Arc<ProviderState>,
    /// URLs and credential header of OpenAI-format requests, built once.
    pub openai: super::openai::Prepared,
}

impl ProviderRuntime {
    /// The runtime of `compiled`, reached through `transport`, limited by `bulkhead`.
    pub fn new(
        compiled: CompiledProvider,
        transport: Transport,
        bulkhead: Arc<ProviderState>,
    ) -> Self {
        Self {
            openai: super::openai::Prepared::new(&compiled),
            name: Arc::from(compiled.name.as_str()),
            compiled,
            client: transport.client().clone(),
            transport,
            fake_sequence: AtomicU64::new(0),
            bulkhead,
        }
    }
}
