//! Kept responses in this replica's memory: a map with expiry and a byte budget, the oldest
//! going first when it is full.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Key;

#[derive(Debug)]
struct Entry {
    value: Arc<Value>,
    bytes: usize,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Key, Entry>,
    /// Insertion order, for expiry and eviction (a key re-inserted appears twice; the stale
    /// occurrence is skipped when its entry's expiry no longer matches).
    order: VecDeque<(Instant, Key)>,
    bytes: usize,
}

/// The in-memory backend.
#[derive(Debug)]
pub(super) struct Memory {
    entries: Mutex<Entries>,
    ttl: Duration,
    max_bytes: usize,
}

impl Memory {
    pub(super) fn new(ttl: Duration, max_bytes: usize) -> Self {
        Self {
            entries: Mutex::default(),
            ttl,
            max_bytes,
        }
    }

    /// The largest record this backend can hold.
    pub(super) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Keeps each `(key, value, its size in bytes)`, then evicts what expired or overflows.
    pub(super) fn put(&self, records: Vec<(Key, Arc<Value>, usize)>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        let expires = now + self.ttl;
        for (key, value, bytes) in records {
            let entry = Entry {
                value,
                bytes,
                expires,
            };
            if let Some(old) = entries.map.insert(key.clone(), entry) {
                entries.bytes -= old.bytes;
            }
            entries.bytes += bytes;
            entries.order.push_back((expires, key));
        }
        self.evict(&mut entries, now);
    }

    /// The value under `key`, unless it expired.
    pub(super) fn get(&self, key: &Key) -> Option<Arc<Value>> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.map.get(key)?;
        (entry.expires > Instant::now()).then(|| entry.value.clone())
    }

    /// The size of the value under `key`, 0 when there is none.
    pub(super) fn bytes(&self, key: &Key) -> usize {
        let Ok(entries) = self.entries.lock() else {
            return 0;
        };
        entries.map.get(key).map_or(0, |entry| entry.bytes)
    }

    /// Forgets `key`; whether it was kept and had not expired.
    pub(super) fn remove(&self, key: &Key) -> bool {
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        let Some(old) = entries.map.remove(key) else {
            return false;
        };
        entries.bytes -= old.bytes;
        old.expires > Instant::now()
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
