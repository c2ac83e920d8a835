//! The export of finished spans: a bounded queue and one task that sends them in batches, so
//! ending a span never waits and a collector that is down or slow only drops spans, each one
//! counted (`llm_trace_spans_total{outcome="dropped"}`).
//!
//! Written here rather than taken from the SDK's batch processor, which counts what it drops
//! only for a log line at shutdown; the queue, batch size and delay still follow the
//! standard `OTEL_BSP_*` variables.

use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::mpsc;

use crate::metrics::ExportOutcomeLabels;

/// `OTEL_BSP_*` settings, with the specification's defaults.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Spans queued at most (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048).
    pub queue: usize,
    /// Spans per export at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512).
    pub batch: usize,
    /// Longest wait to fill a batch (`OTEL_BSP_SCHEDULE_DELAY`, 5000 ms).
    pub delay: Duration,
    /// Longest one export may take (`OTEL_BSP_EXPORT_TIMEOUT`, 30000 ms).
    pub timeout: Duration,
}

impl Batching {
    /// The settings from the environment.
    pub fn from_env() -> Self {
        let number = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        let queue = number("OTEL_BSP_MAX_QUEUE_SIZE", 2048);
        Self {
            queue,
            batch: number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512).min(queue),
            delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5000) as u64),
            timeout: Duration::from_millis(number("OTEL_BSP_EXPORT_TIMEOUT", 30000) as u64),
        }
    }
}

/// Hands finished, sampled spans to the export task.
#[derive(Debug)]
pub struct Exporting {
    /// Taken at shutdown: the task exports what is queued, then stops.
    queue: Mutex<Option<mpsc::Sender<SpanData>>>,
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    outcomes: Family<ExportOutcomeLabels, Counter>,
}

impl Exporting {
    /// Starts the export task (call inside the runtime) sending through `exporter`.
    pub fn start<E: SpanExporter + 'static>(
        exporter: E,
        batching: Batching,
        outcomes: Family<ExportOutcomeLabels, Counter>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(batching.queue);
        let (finished, done) = std::sync::mpsc::channel();
        let counts = outcomes.clone();
        tokio::spawn(async move {
            export_loop(exporter, receiver, batching, &counts).await;
            let _ = finished.send(());
        });
        Self {
            queue: Mutex::new(Some(sender)),
            done: Mutex::new(Some(done)),
            outcomes,
        }
    }

    fn count(&self, outcome: &'static str, spans: u64) {
        self.outcomes
            .get_or_create(&ExportOutcomeLabels { outcome })
            .inc_by(spans);
    }
}

impl SpanProcessor for Exporting {
    fn on_start(&self, _span: &mut Span, _context: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let queued = self
            .queue
            .lock()
            .ok()
            .and_then(|queue| queue.as_ref().map(|q| q.try_send(span).is_ok()));
        if queued != Some(true) {
            self.count("dropped", 1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    /// Closes the queue and waits (at most `timeout`) until what it held was exported.
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        drop(self.queue.lock().ok().and_then(|mut q| q.take()));
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        match done.map(|d| d.recv_timeout(timeout)) {
            Some(Ok(())) | None => Ok(()),
            Some(Err(_)) => Err(OTelSdkError::Timeout(timeout)),
        }
    }
}

/// Sends queued spans in batches of at most `batch`, waiting at most `delay` to fill one,
/// until the queue is closed and empty.
async fn export_loop<E: SpanExporter>(
    exporter: E,
    mut queue: mpsc::Receiver<SpanData>,
    batching: Batching,
    outcomes: &Family<ExportOutcomeLabels, Counter>,
) {
    let mut batch = Vec::with_capacity(batching.batch);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + batching.delay;
        while batch.len() < batching.batch {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let spans = batch.len() as u64;
        let export = exporter.export(std::mem::take(&mut batch));
        let outcome = match tokio::time::timeout(batching.timeout, export).await {
            Ok(Ok(())) => "exported",
            Ok(Err(_)) | Err(_) => "failed",
        };
        outcomes
            .get_or_create(&ExportOutcomeLabels { outcome })
            .inc_by(spans);
    }
    let _ = exporter.shutdown();
}
