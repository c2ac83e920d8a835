//! Kubernetes Events for notices: a breaker transition on the LlmProvider, a rejected
//! configuration on the object that caused it. Rate-limited so a flapping upstream or a
//! crash-looping config cannot flood the API server: at most one Event per object and reason
//! every [`PER_OBJECT`], and [`PER_MINUTE`] in all; repeats within kube's recorder cache
//! become one Event series.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::notices::Notice;

/// Shortest gap between two Events about one object for one reason.
pub const PER_OBJECT: Duration = Duration::from_secs(10);
/// Most Events published per minute.
pub const PER_MINUTE: usize = 30;

/// Publishes notices as Events until the sink is dropped.
pub fn spawn(client: Client, mut notices: mpsc::Receiver<Notice>) {
    let reporter = Reporter {
        controller: "llm-gateway".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client, reporter);
    tokio::spawn(async move {
        let mut last: HashMap<(String, String), Instant> = HashMap::new();
        let mut window: Vec<Instant> = Vec::new();
        while let Some(notice) = notices.recv().await {
            let (reference, event) = render(&notice);
            let now = Instant::now();
            let key = (
                reference.name.clone().unwrap_or_default(),
                event.reason.clone(),
            );
            if last.get(&key).is_some_and(|at| now - *at < PER_OBJECT) {
                continue;
            }
            window.retain(|at| now - *at < Duration::from_secs(60));
            if window.len() >= PER_MINUTE {
                continue;
            }
            last.insert(key, now);
            window.push(now);
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(%error, reason = %event.reason, "could not publish a Kubernetes Event");
            }
        }
    });
}

fn render(notice: &Notice) -> (ObjectReference, Event) {
    match notice {
        Notice::Breaker {
            provider,
            model,
            to,
        } => {
            let (type_, reason) = match *to {
                "open" => (EventType::Warning, "CircuitBreakerOpened"),
                "half_open" => (EventType::Normal, "CircuitBreakerHalfOpen"),
                _ => (EventType::Normal, "CircuitBreakerClosed"),
            };
            let event = Event {
                type_,
                reason: reason.to_owned(),
                note: Some(format!("circuit breaker for model {model} is now {to}")),
                action: "Route".to_owned(),
                secondary: None,
            };
            (reference("LlmProvider", provider), event)
        }
        Notice::Rejected {
            kind,
            object,
            message,
        } => {
            let mut note =
                format!("configuration rejected; the previous one keeps serving: {message}");
            note.truncate(1000);
            let event = Event {
                type_: EventType::Warning,
                reason: "ConfigRejected".to_owned(),
                note: Some(note),
                action: "Reload".to_owned(),
                secondary: None,
            };
            (reference(kind, object), event)
        }
    }
}

fn reference(kind: &str, object: &str) -> ObjectReference {
    let (namespace, name) = object.split_once('/').unwrap_or(("default", object));
    let api_version = if kind == "Secret" {
        "v1"
    } else {
        "llmgateway.io/v1alpha1"
    };
    ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        ..ObjectReference::default()
    }
}
