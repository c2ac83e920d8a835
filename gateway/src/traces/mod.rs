//! OpenTelemetry traces: one server span per API request (its parent taken from the client's
//! W3C `traceparent`/`tracestate`) and one client span per upstream attempt, whose context
//! goes upstream in the same headers. Exported over OTLP (gRPC, or HTTP/protobuf) by a task
//! on the runtime, off the request path, through a bounded queue ([`export`]): a collector
//! that is down or slow drops spans (counted), never slows a request.
//!
//! Configured only by the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `…_PROTOCOL`, `…_HEADERS`, `OTEL_SERVICE_NAME`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`); off, at the cost of one
//! check per request, when no endpoint is set or `OTEL_SDK_DISABLED=true`. Spans never carry
//! a key or a credential, and carry prompts and completions only where [`content`] capture
//! is turned on.

pub mod content;
mod export;

use std::sync::OnceLock;

use bytes::Bytes;
use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// The process's tracer, once traces are on.
static TRACER: OnceLock<(SdkTracer, SdkTracerProvider)> = OnceLock::new();

/// Turns traces on when the environment names an OTLP endpoint; call once, inside the
/// runtime. Spans finished are counted in `outcomes` (exported, failed, dropped). Returns
/// whether traces are on.
pub fn init_from_env(
    outcomes: prometheus_client::metrics::family::Family<
        crate::metrics::ExportOutcomeLabels,
        prometheus_client::metrics::counter::Counter,
    >,
) -> Result<bool, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let endpoint =
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    if endpoint.is_none() || disabled {
        return Ok(false);
    }
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "grpc".to_owned());
    let collector_ca = collector_ca()?;
    let mut exporter = match protocol.as_str() {
        "grpc"
            if endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("https://")) =>
        {
            SpanExporter::builder()
                .with_tonic()
                .with_tls_config(grpc_tls(collector_ca))
                .build()
        }
        "grpc" => SpanExporter::builder().with_tonic().build(),
        "http/protobuf" => SpanExporter::builder()
            .with_http()
            .with_http_client(Reqwest(http_client(collector_ca)?))
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
        other => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL {other:?} is not grpc or http/protobuf"
            ));
        }
    }
    .map_err(|e| format!("OTLP trace exporter: {e}"))?;
    let mut resource = Resource::builder();
    if var("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("llm-gateway");
    }
    let resource = resource.build();
    opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
    let processor = export::Exporting::start(exporter, export::Batching::from_env(), outcomes);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("llm-gateway");
    let _ = TRACER.set((tracer, provider));
    content::init_from_env();
    Ok(true)
}

/// Exports what is still queued (at shutdown).
pub fn shutdown() {
    if let Some((_, provider)) = TRACER.get() {
        let _ = provider.shutdown();
    }
}

fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get().map(|(tracer, _)| tracer)
}

/// A request's server span, child of the client's `traceparent` when it sent one.
/// Its `attributes` are built only when it is sampled.
pub fn server_span(
    headers: &HeaderMap,
    name: impl FnOnce() -> String,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Option<Context> {
    let tracer = tracer()?;
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let span = tracer
        .span_builder(name())
        .with_kind(SpanKind::Server)
        .start_with_context(tracer, &parent);
    let context = parent.with_span(span);
    annotate(&context, attributes);
    Some(context)
}

/// An upstream attempt's client span, child of the request's server span (the current
/// context), and the headers that carry it upstream.
/// Its `attributes` are built only when it is sampled.
pub fn client_span(
    name: impl FnOnce() -> String,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Option<(Context, HeaderMap)> {
    let tracer = tracer()?;
    let parent = Context::current();
    let span = tracer
        .span_builder(name())
        .with_kind(SpanKind::Client)
        .start_with_context(tracer, &parent);
    let context = parent.with_span(span);
    annotate(&context, attributes);
    let mut headers = HeaderMap::new();
    // `traceparent` names this attempt; the client's `tracestate` goes on unchanged (W3C).
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(&mut headers));
    Some((context, headers))
}

/// Marks the attempt of `span` failed with `kind` (`error.type`, and an error status).
pub fn fail(span: &EndOnDrop, kind: &'static str) {
    if let Some(context) = &span.0 {
        let span = context.span();
        span.set_attribute(KeyValue::new("error.type", kind));
        span.set_status(opentelemetry::trace::Status::error(kind));
    }
}

/// Sets `attributes` on the span of `context`, built only when the span is sampled (an
/// unsampled request pays for no attribute).
pub fn annotate<I: IntoIterator<Item = KeyValue>>(
    context: &Context,
    attributes: impl FnOnce() -> I,
) {
    let span = context.span();
    if span.is_recording() {
        for attribute in attributes() {
            span.set_attribute(attribute);
        }
    }
}

/// Whether the current context's span is sampled (traces on, and this request picked).
pub fn recording() -> bool {
    enabled() && Context::current().span().is_recording()
}

/// Ends the span of a context when dropped (kept with a response body, it ends the span
/// when the body does: the stream's last byte, or the client leaving).
#[derive(Debug)]
pub struct EndOnDrop(pub Option<Context>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let Some(context) = &self.0 {
            context.span().end();
        }
    }
}

/// A client for OTLP/HTTP whose every request ends within the export timeout (the exporter
/// bounds only its retries when given a client of ours), trusting `collector_ca` too.
fn http_client(collector_ca: Option<Vec<u8>>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().timeout(export::Batching::from_env().timeout);
    if let Some(pem) = collector_ca {
        let certificate = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("OTEL_EXPORTER_OTLP_CERTIFICATE: {e}"))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build()
        .map_err(|e| format!("OTLP HTTP client: {e}"))
}

/// TLS to an `https://` gRPC collector: the platform's and Mozilla's roots, plus
/// `collector_ca` when given.
fn grpc_tls(collector_ca: Option<Vec<u8>>) -> ClientTlsConfig {
    let config = ClientTlsConfig::new().with_enabled_roots();
    match collector_ca {
        Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
        None => config,
    }
}

/// The PEM file of `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` or `OTEL_EXPORTER_OTLP_CERTIFICATE`:
/// a certificate authority to trust for the collector (a private one).
fn collector_ca() -> Result<Option<Vec<u8>>, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let Some(path) = var("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
        .or_else(|| var("OTEL_EXPORTER_OTLP_CERTIFICATE"))
    else {
        return Ok(None);
    };
    std::fs::read(&path)
        .map(Some)
        .map_err(|e| format!("OTEL_EXPORTER_OTLP_CERTIFICATE {path}: {e}"))
}

/// The OTLP/HTTP transport on the gateway's own reqwest (the exporter's built-in clients
/// would add a second version of reqwest, or block a thread).
#[derive(Debug)]
struct Reqwest(reqwest::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Reqwest {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        let mut answer = http::Response::builder().status(status).body(body)?;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

/// Whether traces are on (so callers skip building attributes otherwise).
pub fn enabled() -> bool {
    TRACER.get().is_some()
}
