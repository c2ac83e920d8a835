//! The server span of an API request (traces on): started by `observe` from the client's
//! `traceparent`, ended when the response body is dropped, with what the request came to.

use axum::extract::Request;
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};

use super::{Served, protocol_of};
use crate::error::ErrorLabel;

/// The span's name: the method and the route template, never a raw path (an id in it would
/// make every span name unique).
fn name(method: &http::Method, path: &str) -> String {
    let template = match path {
        "/v1/chat/completions"
        | "/v1/messages"
        | "/v1/responses"
        | "/v1/embeddings"
        | "/v1/completions"
        | "/v1/models"
        | "/v1/usage"
        | "/v1/messages/count_tokens"
        | "/v1/responses/input_tokens" => path,
        p if p.starts_with("/v1/responses/") && p.ends_with("/input_items") => {
            "/v1/responses/{id}/input_items"
        }
        p if p.starts_with("/v1/responses/") => "/v1/responses/{id}",
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        _ => return method.to_string(),
    };
    format!("{method} {template}")
}

/// Starts the server span of `request` (`None` while traces are off).
pub(super) fn start_server(request: &Request, path: &str) -> Option<Context> {
    let method = request.method();
    let attributes = || {
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("url.path", path.to_owned()),
        ];
        let operation = match protocol_of(path) {
            "chat" | "responses" | "messages" => Some("chat"),
            "embeddings" => Some("embeddings"),
            "completions" => Some("text_completion"),
            _ => None,
        };
        if let Some(operation) = operation {
            attributes.push(KeyValue::new("gen_ai.operation.name", operation));
        }
        attributes
    };
    crate::traces::server_span(request.headers(), || name(method, path), attributes)
}

/// Sets what the request came to on its server span, and ends it: a 5xx is an error of the
/// server (a 4xx is the client's, and leaves the status unset, as the conventions say).
pub(super) fn end_server(
    context: &Context,
    status: u16,
    served: Option<&Served>,
    error: Option<ErrorLabel>,
) {
    crate::traces::annotate(context, || end_attributes(status, served, error));
    let span = context.span();
    if status >= 500 {
        span.set_status(Status::error(error.map_or("server error", |e| e.0)));
    }
    span.end();
}

/// What the request came to, for its server span.
fn end_attributes(
    status: u16,
    served: Option<&Served>,
    error: Option<ErrorLabel>,
) -> Vec<KeyValue> {
    let mut attributes = vec![KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    )];
    if let Some(served) = served {
        for (key, value) in [
            ("llm_gateway.route", &served.route),
            ("llm_gateway.provider", &served.provider),
        ] {
            if !value.is_empty() {
                attributes.push(KeyValue::new(key, value.to_string()));
            }
        }
        if let Some(caller) = &served.caller {
            attributes.push(KeyValue::new("llm_gateway.key_id", caller.id.clone()));
            attributes.push(KeyValue::new("llm_gateway.owner", caller.owner.clone()));
        }
    }
    if let Some(ErrorLabel(kind)) = error {
        attributes.push(KeyValue::new("error.type", kind));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::name;

    #[test]
    fn span_names_hold_no_ids() {
        let post = http::Method::POST;
        assert_eq!(
            name(&post, "/v1/chat/completions"),
            "POST /v1/chat/completions"
        );
        let get = http::Method::GET;
        assert_eq!(
            name(&get, "/v1/responses/resp_123"),
            "GET /v1/responses/{id}"
        );
        assert_eq!(
            name(&get, "/v1/responses/resp_1/input_items"),
            "GET /v1/responses/{id}/input_items"
        );
        assert_eq!(name(&get, "/v1/nothing/here"), "GET");
    }
}
