//! Responses the gateway served, kept so a Responses client can continue one on any provider:
//! a later request may name one with `previous_response_id`, or refer to one of its output
//! items with an `item_reference` (the Vercel AI SDK's default on a tool call's second step).
//!
//! Translated responses are kept under ids the gateway mints. Responses an upstream answered
//! in the Responses API itself are kept too, marked with that provider: a continuation sent
//! to the same provider passes through (the upstream has them), one that falls back to
//! another provider is spelt out from here.
//!
//! Kept per caller (one key never reads another's responses), for `RESPONSE_STORE_TTL`: in
//! Redis when `REDIS_URL` is set, shared by every replica, else in this replica's memory
//! within `RESPONSE_STORE_MAX_BYTES` (the oldest go first). A response larger than
//! [`MAX_RESPONSE_BYTES`] is not kept.

mod memory;
mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// Largest response (its input and output items, as JSON) kept.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// What a key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A response: `{"input": [...], "response": {the response object}, "upstream": …}`.
    Response,
    /// One output item: `{"item": {...}, "upstream": …}`.
    Item,
}

/// A write still landing in Redis; done when it has (or failed).
pub type Written = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// A kept record's address: caller, kind, id.
type Key = (String, Kind, String);

/// The store could not be reached (Redis down or too slow).
#[derive(Debug, thiserror::Error)]
#[error("the response store is unavailable: {0}")]
pub struct Unavailable(String);

impl From<Unavailable> for crate::error::ApiError {
    fn from(error: Unavailable) -> Self {
        // The cause goes to the log only: it may name the Redis host.
        tracing::warn!(%error, "kept responses could not be read");
        Self::ServiceUnavailable {
            message: "the gateway's response store is unavailable, so kept responses cannot be read; retry, or send the whole conversation in 'input'".to_owned(),
            retry_after: Some(Duration::from_secs(1)),
        }
    }
}

/// Where the store keeps things and for how long.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// `RESPONSE_STORE_TTL`.
    pub ttl: Duration,
    /// `RESPONSE_STORE_MAX_BYTES`, for the in-memory store.
    pub max_bytes: usize,
    /// `REDIS_URL`: keep in Redis instead.
    pub redis_url: Option<String>,
    /// `REDIS_CLUSTER`: the URL lists seed nodes of a Redis Cluster.
    pub redis_cluster: bool,
    /// `REDIS_TIMEOUT`: longest one Redis call may take.
    pub redis_timeout: Duration,
}

#[derive(Debug)]
enum Backend {
    Memory(memory::Memory),
    Redis(Arc<Shared>),
}

/// The Redis backend and the records still being written to it: a client continuing at once
/// on this replica must find its response before the write lands.
#[derive(Debug)]
struct Shared {
    redis: redis::Redis,
    pending: Mutex<HashMap<Key, Arc<Value>>>,
}

/// The store; one per process, shared by every request.
#[derive(Debug)]
pub struct ResponseStore {
    backend: Backend,
}

impl ResponseStore {
    /// A store with `settings`; fails only on a malformed Redis URL.
    pub fn new(settings: &StoreSettings) -> Result<Self, String> {
        let backend = match &settings.redis_url {
            Some(url) => Backend::Redis(Arc::new(Shared {
                redis: redis::Redis::new(url, settings)?,
                pending: Mutex::default(),
            })),
            None => Backend::Memory(memory::Memory::new(settings.ttl, settings.max_bytes)),
        };
        Ok(Self { backend })
    }

    /// An in-memory store (tests).
    #[cfg(test)]
    pub fn in_memory(ttl: Duration, max_bytes: usize) -> Self {
        Self {
            backend: Backend::Memory(memory::Memory::new(ttl, max_bytes)),
        }
    }

    /// Keeps `response` (a response object) of caller `scope` with its resolved `input` items,
    /// under its id, and each of its output items under theirs. `upstream` names the provider
    /// that answered in the Responses API itself and keeps it too (`None`: translated here).
    /// Never waits: a Redis write runs in the background (to its end even if the caller goes)
    /// and is returned, for a caller that must not answer before it lands.
    pub fn put(
        &self,
        scope: &str,
        input: Vec<Value>,
        response: &Value,
        upstream: Option<&str>,
    ) -> Option<Written> {
        let id = response["id"].as_str()?;
        let record = json!({"input": input, "response": response, "upstream": upstream});
        let json = record.to_string();
        let cap = match &self.backend {
            Backend::Memory(memory) => memory.max_bytes().min(MAX_RESPONSE_BYTES),
            Backend::Redis(..) => MAX_RESPONSE_BYTES,
        };
        if json.len() > cap {
            tracing::debug!(bytes = json.len(), "response too large to keep");
            return None;
        }
        let key = |kind, id: &str| (scope.to_owned(), kind, id.to_owned());
        let output = response["output"].as_array().map_or(&[][..], Vec::as_slice);
        let mut records: Vec<(Key, Arc<Value>, String)> = output
            .iter()
            .filter_map(|item| {
                let kept = json!({"item": item, "upstream": upstream});
                let json = kept.to_string();
                Some((key(Kind::Item, item["id"].as_str()?), Arc::new(kept), json))
            })
            .collect();
        records.push((key(Kind::Response, id), Arc::new(record), json));
        match &self.backend {
            Backend::Memory(memory) => {
                let sized = records.into_iter().map(|(k, v, json)| (k, v, json.len()));
                memory.put(sized.collect());
                None
            }
            Backend::Redis(shared) => write_behind(shared, records),
        }
    }

    /// The kept `kind` named `id` of caller `scope`, unless it expired.
    pub async fn get(
        &self,
        scope: &str,
        kind: Kind,
        id: &str,
    ) -> Result<Option<Arc<Value>>, Unavailable> {
        let key = (scope.to_owned(), kind, id.to_owned());
        match &self.backend {
            Backend::Memory(memory) => Ok(memory.get(&key)),
            Backend::Redis(shared) => {
                let pending = shared.pending.lock().ok();
                if let Some(value) = pending.and_then(|p| p.get(&key).cloned()) {
                    return Ok(Some(value));
                }
                let Some(json) = shared.redis.get(&key).await? else {
                    return Ok(None);
                };
                Ok(serde_json::from_str(&json).ok().map(Arc::new))
            }
        }
    }

    /// Forgets response `id` of caller `scope` (its items stay until they expire, as other
    /// responses may have referred to them); whether it was kept.
    pub async fn remove(&self, scope: &str, id: &str) -> Result<bool, Unavailable> {
        let key = (scope.to_owned(), Kind::Response, id.to_owned());
        match &self.backend {
            Backend::Memory(memory) => Ok(memory.remove(&key)),
            Backend::Redis(shared) => {
                let pending = shared.pending.lock();
                let was_pending = pending.is_ok_and(|mut p| p.remove(&key).is_some());
                Ok(shared.redis.delete(&key).await? || was_pending)
            }
        }
    }

    /// Bytes of kept history a Responses `body` refers to (its `previous_response_id` and
    /// `item_reference`s), for admission to count as input; 0 when the store cannot say.
    pub async fn referred_bytes(&self, scope: &str, body: &[u8]) -> usize {
        let keys: Vec<Key> = referred(body)
            .into_iter()
            .map(|(kind, id)| (scope.to_owned(), kind, id))
            .collect();
        if keys.is_empty() {
            return 0;
        }
        match &self.backend {
            Backend::Memory(memory) => keys.iter().map(|key| memory.bytes(key)).sum(),
            Backend::Redis(shared) => shared
                .redis
                .lengths(&keys)
                .await
                .map_or(0, |sizes| sizes.into_iter().sum()),
        }
    }
}

/// Marks `records` pending and writes them to Redis in the background; a failed write is
/// logged (the conversation can still be sent whole) and never fails the response.
fn write_behind(shared: &Arc<Shared>, records: Vec<(Key, Arc<Value>, String)>) -> Option<Written> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let mut written = Vec::with_capacity(records.len());
    let mut held = Vec::with_capacity(records.len());
    for (key, value, json) in records {
        held.push((key.clone(), value));
        written.push((key, json));
    }
    if let Ok(mut pending) = shared.pending.lock() {
        for (key, value) in &held {
            pending.insert(key.clone(), value.clone());
        }
    }
    let shared = shared.clone();
    let task = runtime.spawn(async move {
        if let Err(error) = shared.redis.set(&written).await {
            tracing::warn!(%error, "a Responses response was not kept");
        }
        if let Ok(mut pending) = shared.pending.lock() {
            for (key, value) in &held {
                if pending.get(key).is_some_and(|now| Arc::ptr_eq(now, value)) {
                    pending.remove(key);
                }
            }
        }
    });
    Some(Box::pin(async move {
        let _ = task.await;
    }))
}

/// What a Responses `body` names from the store: its `previous_response_id` and each
/// `item_reference` in its input.
pub fn referred(body: &[u8]) -> Vec<(Kind, String)> {
    // Most requests continue nothing: two substring searches spare them a parse.
    let has = |needle: &[u8]| memchr::memmem::find(body, needle).is_some();
    if !has(b"previous_response_id") && !has(b"item_reference") {
        return Vec::new();
    }
    serde_json::from_slice::<Value>(body).map_or_else(|_| Vec::new(), |v| names_in(&v))
}

/// [`referred`], of a body already parsed.
pub fn names_in(request: &Value) -> Vec<(Kind, String)> {
    let previous = request["previous_response_id"].as_str();
    let references = request["input"].as_array().into_iter().flatten();
    previous
        .map(|id| (Kind::Response, id.to_owned()))
        .into_iter()
        .chain(
            references
                .filter(|item| item["type"] == "item_reference")
                .map(|item| {
                    (
                        Kind::Item,
                        item["id"].as_str().unwrap_or_default().to_owned(),
                    )
                }),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> Value {
        json!({"type": "function_call", "id": id, "call_id": "c", "name": "f", "arguments": "{}"})
    }

    fn response(id: &str, item_id: &str) -> Value {
        json!({"id": id, "object": "response", "output": [item(item_id)]})
    }

    #[tokio::test]
    async fn keeps_responses_and_items_per_caller() {
        let store = ResponseStore::in_memory(Duration::from_secs(60), 1 << 20);
        let input = vec![json!({"role": "user", "content": "hi"})];
        store.put("alice", input, &response("resp_1", "fc_1"), Some("openai"));
        let kept = store.get("alice", Kind::Response, "resp_1").await.unwrap();
        assert_eq!(kept.unwrap()["upstream"], "openai");
        let kept = store.get("alice", Kind::Item, "fc_1").await.unwrap();
        assert_eq!(kept.unwrap()["item"]["id"], "fc_1");
        let stranger = store.get("bob", Kind::Response, "resp_1").await.unwrap();
        assert!(stranger.is_none(), "another caller's");
        assert!(
            store
                .get("bob", Kind::Item, "fc_1")
                .await
                .unwrap()
                .is_none()
        );
        assert!(!store.remove("bob", "resp_1").await.unwrap());
        assert!(store.remove("alice", "resp_1").await.unwrap());
        assert!(
            store
                .get("alice", Kind::Response, "resp_1")
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_continuation_counts_the_kept_history_it_refers_to() {
        let store = ResponseStore::in_memory(Duration::from_secs(60), 1 << 20);
        let input = vec![json!({"role": "user", "content": "x".repeat(1000)})];
        store.put("alice", input, &response("resp_1", "fc_1"), None);
        let continues = br#"{"model":"m","previous_response_id":"resp_1","input":[{"type":"item_reference","id":"fc_1"}]}"#;
        assert!(store.referred_bytes("alice", continues).await > 1000);
        assert_eq!(store.referred_bytes("bob", continues).await, 0);
        let fresh = br#"{"model":"m","input":"hi"}"#;
        assert_eq!(store.referred_bytes("alice", fresh).await, 0);
    }

    #[tokio::test]
    async fn the_oldest_go_when_over_budget_and_everything_expires() {
        // A response and its one item, as the store counts them.
        let record = json!({"input": [], "response": response("resp_a", "fc_a"), "upstream": null});
        let one = record.to_string().len()
            + json!({"item": item("fc_a"), "upstream": null})
                .to_string()
                .len();
        let store = ResponseStore::in_memory(Duration::from_secs(60), 3 * one);
        for n in 0..5 {
            let kept = response(&format!("resp_{n}"), &format!("fc_{n}"));
            store.put("alice", Vec::new(), &kept, None);
        }
        let oldest = store.get("alice", Kind::Response, "resp_0").await.unwrap();
        assert!(oldest.is_none());
        let newest = store.get("alice", Kind::Response, "resp_4").await.unwrap();
        assert!(newest.is_some());
        let expiring = ResponseStore::in_memory(Duration::ZERO, 1 << 20);
        expiring.put("alice", Vec::new(), &response("resp_1", "fc_1"), None);
        let expired = expiring
            .get("alice", Kind::Response, "resp_1")
            .await
            .unwrap();
        assert!(expired.is_none());
    }
}
