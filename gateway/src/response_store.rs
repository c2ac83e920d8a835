//! Responses the gateway translated, kept so a Responses client can continue them: a later
//! request may name one with `previous_response_id`, or refer to one of its output items with
//! an `item_reference` (the Vercel AI SDK's default on a tool call's second step). Upstreams
//! that speak the Responses API keep their own and are not involved.
//!
//! Kept in this replica's memory, per caller (one key never reads another's responses), for
//! `RESPONSE_STORE_TTL`, within `RESPONSE_STORE_MAX_BYTES` (the oldest go first). A response
//! larger than [`MAX_RESPONSE_BYTES`] is not kept. Clients that must continue a conversation
//! on another replica send it whole (or `store: false`), as they would to any stateless API.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Largest response (its input and output items, as JSON) kept.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// What a key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A response: `{"input": [...], "response": {the response object}}`, its output at
    /// `response.output`.
    Response,
    /// One output item.
    Item,
}

#[derive(Debug)]
struct Entry {
    value: Arc<Value>,
    bytes: usize,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<(String, Kind, String), Entry>,
    /// Insertion order, for expiry and eviction (a key re-inserted appears twice; the stale
    /// occurrence is skipped when its entry's expiry no longer matches).
    order: VecDeque<(Instant, (String, Kind, String))>,
    bytes: usize,
}

/// The store; one per process, shared by every request.
#[derive(Debug)]
pub struct ResponseStore {
    entries: Mutex<Entries>,
    ttl: Duration,
    max_bytes: usize,
}

impl ResponseStore {
    /// A store keeping responses for `ttl`, in at most `max_bytes` of JSON.
    pub fn new(ttl: Duration, max_bytes: usize) -> Self {
        Self {
            entries: Mutex::default(),
            ttl,
            max_bytes,
        }
    }

    /// Keeps `response` (a response object) of caller `scope` with its resolved `input` items,
    /// under its id, and each of its output items under theirs.
    pub fn put(&self, scope: &str, input: Vec<Value>, response: &Value) {
        let Some(id) = response["id"].as_str() else {
            return;
        };
        let output = response["output"].as_array().map_or(&[][..], Vec::as_slice);
        let response = json!({"input": input, "response": response});
        let bytes = response.to_string().len();
        if bytes > MAX_RESPONSE_BYTES || bytes > self.max_bytes {
            tracing::debug!(bytes, "response too large to keep");
            return;
        }
        // Sized before the lock: serialising a large response must not hold up other requests.
        let items: Vec<(&str, Value, usize)> = output
            .iter()
            .filter_map(|item| Some((item["id"].as_str()?, item.clone(), item.to_string().len())))
            .collect();
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        for (item_id, item, size) in items {
            self.insert(&mut entries, (scope, Kind::Item, item_id), item, size, now);
        }
        self.insert(
            &mut entries,
            (scope, Kind::Response, id),
            response,
            bytes,
            now,
        );
        self.evict(&mut entries, now);
    }

    /// Forgets response `id` of caller `scope` (its items stay until they expire, as other
    /// responses may have referred to them); whether it was kept.
    pub fn remove(&self, scope: &str, id: &str) -> bool {
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        let key = (scope.to_owned(), Kind::Response, id.to_owned());
        match entries.map.remove(&key) {
            Some(old) if old.expires > Instant::now() => {
                entries.bytes -= old.bytes;
                true
            }
            Some(old) => {
                entries.bytes -= old.bytes;
                false
            }
            None => false,
        }
    }

    /// Bytes of kept history a Responses `body` refers to (its `previous_response_id` and
    /// `item_reference`s), for admission to count as input.
    pub fn referred_bytes(&self, scope: &str, body: &[u8]) -> usize {
        #[derive(serde::Deserialize)]
        struct Refers<'a> {
            #[serde(borrow, default)]
            previous_response_id: Option<&'a str>,
        }
        // Most requests continue nothing: two substring searches spare them a parse.
        let has = |needle: &[u8]| memchr::memmem::find(body, needle).is_some();
        if !has(b"previous_response_id") && !has(b"item_reference") {
            return 0;
        }
        let Ok(refers) = serde_json::from_slice::<Refers<'_>>(body) else {
            return 0;
        };
        let mut named: Vec<(Kind, String)> = Vec::new();
        if let Some(id) = refers.previous_response_id {
            named.push((Kind::Response, id.to_owned()));
        }
        if has(b"item_reference")
            && let Ok(value) = serde_json::from_slice::<Value>(body)
        {
            let items = value["input"].as_array().into_iter().flatten();
            named.extend(
                items
                    .filter(|i| i["type"] == "item_reference")
                    .map(|i| (Kind::Item, i["id"].as_str().unwrap_or_default().to_owned())),
            );
        }
        let Ok(entries) = self.entries.lock() else {
            return 0;
        };
        named
            .into_iter()
            .filter_map(|(kind, id)| entries.map.get(&(scope.to_owned(), kind, id)))
            .map(|entry| entry.bytes)
            .sum()
    }

    /// The kept `kind` named `id` of caller `scope`, unless it expired.
    pub fn get(&self, scope: &str, kind: Kind, id: &str) -> Option<Arc<Value>> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.map.get(&(scope.to_owned(), kind, id.to_owned()))?;
        (entry.expires > Instant::now()).then(|| entry.value.clone())
    }

    fn insert(
        &self,
        entries: &mut Entries,
        (scope, kind, id): (&str, Kind, &str),
        value: Value,
        bytes: usize,
        now: Instant,
    ) {
        let key = (scope.to_owned(), kind, id.to_owned());
        let expires = now + self.ttl;
        let entry = Entry {
            value: Arc::new(value),
            bytes,
            expires,
        };
        if let Some(old) = entries.map.insert(key.clone(), entry) {
            entries.bytes -= old.bytes;
        }
        entries.bytes += bytes;
        entries.order.push_back((expires, key));
    }

    /// Drops what expired, then the oldest while over the byte budget.
    fn evict(&self, entries: &mut Entries, now: Instant) {
        while let Some((expires, key)) = entries.order.front().cloned() {
            let over = entries.bytes > self.max_bytes;
            if expires > now && !over {
                break;
            }
            entries.order.pop_front();
            let current = entries.map.get(&key).is_some_and(|e| e.expires == expires);
            if current && let Some(old) = entries.map.remove(&key) {
                entries.bytes -= old.bytes;
            }
        }
    }
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

    #[test]
    fn keeps_responses_and_items_per_caller() {
        let store = ResponseStore::new(Duration::from_secs(60), 1 << 20);
        let input = vec![json!({"role": "user", "content": "hi"})];
        store.put("alice", input, &response("resp_1", "fc_1"));
        assert!(store.get("alice", Kind::Response, "resp_1").is_some());
        assert_eq!(
            store.get("alice", Kind::Item, "fc_1").unwrap()["id"],
            "fc_1"
        );
        assert!(
            store.get("bob", Kind::Response, "resp_1").is_none(),
            "another caller's"
        );
        assert!(store.get("bob", Kind::Item, "fc_1").is_none());
        assert!(!store.remove("bob", "resp_1"));
        assert!(store.remove("alice", "resp_1"));
        assert!(store.get("alice", Kind::Response, "resp_1").is_none());
    }

    #[test]
    fn a_continuation_counts_the_kept_history_it_refers_to() {
        let store = ResponseStore::new(Duration::from_secs(60), 1 << 20);
        store.put(
            "alice",
            vec![json!({"role": "user", "content": "x".repeat(1000)})],
            &response("resp_1", "fc_1"),
        );
        let continues = br#"{"model":"m","previous_response_id":"resp_1","input":[{"type":"item_reference","id":"fc_1"}]}"#;
        assert!(store.referred_bytes("alice", continues) > 1000);
        assert_eq!(store.referred_bytes("bob", continues), 0);
        assert_eq!(
            store.referred_bytes("alice", br#"{"model":"m","input":"hi"}"#),
            0
        );
    }

    #[test]
    fn the_oldest_go_when_over_budget_and_everything_expires() {
        // A response and its one item, as the store counts them.
        let one = json!({"input": [], "response": response("resp_a", "fc_a")})
            .to_string()
            .len()
            + item("fc_a").to_string().len();
        let store = ResponseStore::new(Duration::from_secs(60), 3 * one);
        for n in 0..5 {
            let kept = response(&format!("resp_{n}"), &format!("fc_{n}"));
            store.put("alice", Vec::new(), &kept);
        }
        assert!(store.get("alice", Kind::Response, "resp_0").is_none());
        assert!(store.get("alice", Kind::Response, "resp_4").is_some());
        let expiring = ResponseStore::new(Duration::ZERO, 1 << 20);
        expiring.put("alice", Vec::new(), &response("resp_1", "fc_1"));
        assert!(expiring.get("alice", Kind::Response, "resp_1").is_none());
    }
}
