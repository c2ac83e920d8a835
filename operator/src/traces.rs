//! The operator's OpenTelemetry traces: every reconcile is a span (kube-runtime's
//! `reconciling object`, naming the object and what triggered it) with the operator's own
//! spans and events inside, bridged from `tracing` by `tracing-opentelemetry` and exported
//! over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set. The
//! standard `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER*` and `OTEL_BSP_*` apply. Reconciles
//! are not a hot path, so the SDK's batch processor (its own thread, a bounded queue that
//! drops when full) is enough.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetryLayer;

/// The exporter, kept to flush at exit.
#[derive(Debug)]
pub struct Traces(SdkTracerProvider);

impl Traces {
    /// Exports what is still queued.
    pub fn shutdown(&self) {
        let _ = self.0.shutdown();
    }
}

/// The bridge layer and the exporter behind it.
pub type Bridge<S> = (OpenTelemetryLayer<S, SdkTracer>, Traces);

/// The layer that turns `tracing` spans into exported spans, when the environment names an
/// endpoint; must be called inside the runtime (the gRPC channel is made there).
pub fn layer_from_env<S>() -> Result<Option<Bridge<S>>, String>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let endpoint =
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if endpoint.is_none() || var("OTEL_SDK_DISABLED").is_some_and(|v| v == "true") {
        return Ok(None);
    }
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "grpc".to_owned());
    if protocol != "grpc" {
        return Err(format!(
            "the operator exports traces over OTLP/gRPC only, not {protocol:?}"
        ));
    }
    let exporter = SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| format!("OTLP trace exporter: {e}"))?;
    let mut resource = Resource::builder();
    if var("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("llm-gateway-operator");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("llm-gateway-operator");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok(Some((layer, Traces(provider))))
}
