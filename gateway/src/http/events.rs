//! Hands a finished model request to the usage-event sink: what the HTTP layer saw now, the
//! usage when the request's meter is done (after its settlement).

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use super::{Finish, Served, protocol_of};
use crate::usage_events::{Draft, Sink, trace_id_of};

/// The trace id a request's event carries: its server span's, else the client's `traceparent`.
pub(super) fn trace_id(
    server_span: Option<&opentelemetry::Context>,
    headers: &HeaderMap,
) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    if let Some(context) = server_span {
        return Some(context.span().span_context().trace_id().to_string());
    }
    trace_id_of(headers.get("traceparent")?.to_str().ok()?)
}

/// Sends the event of `finish` (a model API request) once its usage is final.
pub(super) fn emit(sink: &Arc<Sink>, finish: &mut Finish, served: &Served, elapsed: Duration) {
    let protocol = protocol_of(&finish.path);
    if protocol == "other" {
        return;
    }
    let end = jiff::Timestamp::now();
    let start = jiff::SignedDuration::try_from(elapsed)
        .ok()
        .and_then(|d| end.checked_sub(d).ok());
    let caller = served.caller.as_deref();
    let named = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let draft = Draft {
        start,
        end: Some(end),
        request_id: finish.request_id.clone(),
        trace_id: finish.trace_id.take(),
        key_id: caller.map(|c| c.id.to_string()),
        owner: caller.and_then(|c| named(&c.owner)),
        namespace: caller.and_then(|c| named(&c.namespace)),
        protocol,
        route: named(&served.route),
        provider: named(&served.provider),
        status: finish.status,
        error: finish.error.map(|e| e.0),
        duration_ms: elapsed.as_secs_f64() * 1000.0,
    };
    match &served.meter {
        Some(meter) => {
            let sink = sink.clone();
            meter.when_done(Box::new(move |summary| sink.send(draft.complete(summary))));
        }
        None => sink.send(draft.complete(Default::default())),
    }
}
