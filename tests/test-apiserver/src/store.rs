//! Objects, the resourceVersion counter, the event history and the watch fan-out.
//!
//! One global write counter is the resourceVersion (as etcd's revision is). Every write
//! appends one event to a bounded history (for watches that resume from a resourceVersion)
//! and broadcasts it to live watches. Reads and writes hold one mutex briefly; nothing awaits
//! under it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

/// Events kept for watches resuming from an older resourceVersion.
pub const HISTORY: usize = 1000;

/// Identifies an object: type id, namespace (empty when cluster-scoped), name.
pub type ObjectKey = (String, String, String);

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The watch event `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One write, as watches see it.
#[derive(Debug)]
pub struct Event {
    /// resourceVersion of the write.
    pub rv: u64,
    /// Type id of the object.
    pub type_id: String,
    /// Namespace of the object.
    pub namespace: String,
    /// What happened.
    pub kind: EventType,
    /// The object after the write (before it, for a deletion).
    pub object: Value,
    /// The object before a modification (for watches whose selector it stopped or started
    /// matching).
    pub previous: Option<Value>,
}

/// The objects and their history.
#[derive(Debug)]
pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Event>>,
}

/// The state behind the lock.
#[derive(Debug, Default)]
pub struct State {
    /// Last resourceVersion handed out.
    pub rv: u64,
    /// Objects by key.
    pub objects: BTreeMap<ObjectKey, Value>,
    /// Recent events, oldest first.
    pub history: VecDeque<Arc<Event>>,
    /// Watches from below this resourceVersion get 410 Expired.
    pub floor: u64,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            events: broadcast::channel(4096).0,
        }
    }
}

impl Store {
    /// Locks the state (poisoning is ignored: every write leaves the state consistent).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver of every later event.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Records a write made under `state`: stamps the object's resourceVersion, stores or
    /// removes it, appends the event and broadcasts it.
    pub fn commit(
        &self,
        state: &mut State,
        key: ObjectKey,
        kind: EventType,
        mut object: Value,
    ) -> Value {
        state.rv += 1;
        let rv = state.rv;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".to_owned(), Value::String(rv.to_string()));
        }
        let previous = match kind {
            EventType::Deleted => state.objects.remove(&key),
            _ => state.objects.insert(key.clone(), object.clone()),
        };
        let event = Arc::new(Event {
            rv,
            type_id: key.0,
            namespace: key.1,
            kind,
            object: object.clone(),
            previous: previous.filter(|_| kind == EventType::Modified),
        });
        state.history.push_back(event.clone());
        while state.history.len() > HISTORY {
            if let Some(old) = state.history.pop_front() {
                state.floor = state.floor.max(old.rv);
            }
        }
        let _ = self.events.send(event);
        object
    }

    /// Forgets history up to now: watches resuming from an older resourceVersion get 410.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.floor = state.rv;
        state.history.clear();
    }
}
