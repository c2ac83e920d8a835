//! Lists (with selectors and pagination) and watches (resume by resourceVersion, bookmarks,
//! timeouts, and the in-stream 410 of an expired resourceVersion).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::path::Target;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Event, EventType, State};
use crate::{Shared, WatchControl};

/// Query parameters of a list or watch.
#[derive(Debug, Default)]
pub struct Query {
    labels: LabelSelector,
    fields: FieldSelector,
    limit: Option<usize>,
    continue_token: Option<String>,
    resource_version: Option<String>,
    bookmarks: bool,
    timeout: Option<Duration>,
    send_initial_events: bool,
}

impl Query {
    /// Parses the query parameters that lists and watches share.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, ApiError> {
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        Ok(Self {
            labels: LabelSelector::parse(get("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(get("fieldSelector").unwrap_or(""))?,
            limit: get("limit").and_then(|l| l.parse().ok()).filter(|l| *l > 0),
            continue_token: get("continue").map(str::to_owned),
            resource_version: get("resourceVersion").map(str::to_owned),
            bookmarks: get("allowWatchBookmarks") == Some("true"),
            timeout: get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .map(Duration::from_secs),
            send_initial_events: get("sendInitialEvents") == Some("true"),
        })
    }

    fn matches(&self, target: &Target, namespace: &str, object: &Value) -> bool {
        target.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.labels.matches(
                object
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object),
            )
            && self.fields.matches(object)
    }
}

/// A list of the collection, one page at a time when `limit` is set.
pub fn list(shared: &Shared, target: &Target, query: &Query) -> Result<Value, ApiError> {
    let state = shared.store.lock();
    let type_id = target.rtype.id();
    let after = match &query.continue_token {
        None => None,
        Some(token) => Some(decode_continue(token, &state)?),
    };
    let mut items = Vec::new();
    let mut next = None;
    let range = state
        .objects
        .range((type_id.clone(), String::new(), String::new())..);
    for ((id, ns, name), object) in range {
        if *id != type_id {
            break;
        }
        if after
            .as_ref()
            .is_some_and(|(a_ns, a_name)| (ns, name) <= (a_ns, a_name))
        {
            continue;
        }
        if !query.matches(target, ns, object) {
            continue;
        }
        if query.limit.is_some_and(|l| items.len() == l) {
            next = items.last().map(|o: &Value| encode_continue(state.rv, o));
            break;
        }
        items.push(object.clone());
    }
    let mut metadata = json!({"resourceVersion": state.rv.to_string()});
    if let Some(token) = next {
        metadata["continue"] = json!(token);
    }
    Ok(json!({
        "apiVersion": target.rtype.api_version(),
        "kind": format!("{}List", target.rtype.kind),
        "metadata": metadata,
        "items": items,
    }))
}

fn encode_continue(rv: u64, last: &Value) -> String {
    let ns = last
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = last
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{rv}\n{ns}\n{name}"))
}

fn decode_continue(token: &str, state: &State) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request("invalid continue token");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '\n');
    let rv: u64 = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
    if rv < state.floor {
        return Err(ApiError::expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        ));
    }
    Ok((
        parts.next().ok_or_else(bad)?.to_owned(),
        parts.next().ok_or_else(bad)?.to_owned(),
    ))
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn expired_line(rv: u64) -> Bytes {
    let status = ApiError::expired(format!("too old resource version: {rv}")).body();
    line("ERROR", &status)
}

/// A watch stream of newline-delimited events after the requested resourceVersion.
pub fn watch(
    shared: Arc<Shared>,
    target: Target,
    query: Query,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut live = shared.store.subscribe();
    let mut control = shared.watch_control.subscribe();
    let (backlog, mut last_rv, expired) = start(&shared, &target, &query);
    let bookmark_every = shared.bookmark_interval();
    let type_id = target.rtype.id();
    tokio::spawn(async move {
        for chunk in backlog {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        if expired {
            return;
        }
        let deadline = query.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut bookmarks = tokio::time::interval(bookmark_every);
        bookmarks.tick().await;
        loop {
            let out = tokio::select! {
                event = live.recv() => match event {
                    Ok(event) if event.rv <= last_rv => continue,
                    Ok(event) => {
                        last_rv = event.rv;
                        match render(&event, &type_id, &target, &query) {
                            Some(chunk) => chunk,
                            None => continue,
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                signal = control.recv() => match signal {
                    Ok(WatchControl::Drop) | Err(_) => return,
                    Ok(WatchControl::Expire) => {
                        let _ = tx.send(expired_line(last_rv)).await;
                        return;
                    }
                },
                _ = bookmarks.tick(), if query.bookmarks => {
                    let rv = shared.store.lock().rv.max(last_rv);
                    line("BOOKMARK", &bookmark(&target, rv))
                }
                () = sleep_until(deadline) => return,
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok(chunk), rx))
    })
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The events to send before live ones, the resourceVersion they reach, and whether the
/// watch ended with 410 Expired.
fn start(shared: &Shared, target: &Target, query: &Query) -> (Vec<Bytes>, u64, bool) {
    let state = shared.store.lock();
    let type_id = target.rtype.id();
    let from = query
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse::<u64>().ok())
        .filter(|rv| *rv > 0);
    let mut backlog = Vec::new();
    match from {
        Some(rv) if rv < state.floor => return (vec![expired_line(rv)], rv, true),
        Some(rv) => {
            for event in state.history.iter().filter(|e| e.rv > rv) {
                if let Some(chunk) = render(event, &type_id, target, query) {
                    backlog.push(chunk);
                }
            }
        }
        None => {
            for ((id, ns, _), object) in &state.objects {
                if *id == type_id && query.matches(target, ns, object) {
                    backlog.push(line("ADDED", object));
                }
            }
            if query.send_initial_events && query.bookmarks {
                let mut mark = bookmark(target, state.rv);
                mark["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                backlog.push(line("BOOKMARK", &mark));
            }
        }
    }
    (backlog, state.rv, false)
}

/// The event as this watch sees it: a modification that makes an object start matching the
/// selector is ADDED, one that makes it stop matching is DELETED, as on a real server.
fn render(event: &Event, type_id: &str, target: &Target, query: &Query) -> Option<Bytes> {
    if event.type_id != type_id {
        return None;
    }
    let now = query.matches(target, &event.namespace, &event.object);
    let before = event
        .previous
        .as_ref()
        .map(|p| query.matches(target, &event.namespace, p));
    let kind = match (event.kind, before, now) {
        (EventType::Modified, Some(false), true) => EventType::Added,
        (EventType::Modified, Some(true), false) => EventType::Deleted,
        (_, _, true) => event.kind,
        _ => return None,
    };
    Some(line(kind.as_str(), &event.object))
}

fn bookmark(target: &Target, rv: u64) -> Value {
    json!({
        "apiVersion": target.rtype.api_version(),
        "kind": target.rtype.kind,
        "metadata": {"resourceVersion": rv.to_string()},
    })
}
