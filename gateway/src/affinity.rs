//! Prompt-cache affinity: a conversation kept on one target of a weighted route, so the
//! provider's prompt cache (kept per deployment, per key, per region) is hit. A request that
//! names a cache key (`prompt_cache_key`) hashes it; with `cacheAffinity: conversation` one
//! that does not hashes its caller and the start of its conversation (the system prompt and
//! first message, which stay the same while the conversation grows). The hash picks a point on
//! the route's weight line, so across conversations the weights still hold.
//!
//! The view keeps where those bytes are in the body; they are hashed (xxh3, stable across
//! builds and replicas) only for a weighted route that uses them.

use llm_gateway_crds::policy::CacheAffinity;
use serde_json::value::RawValue;

/// How much of the conversation's start is hashed.
const OPENING_BYTES: usize = 1024;

/// Where a request's affinity comes from, as offsets into its body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Affinity {
    /// The cache key's JSON value.
    key: Option<(usize, usize)>,
    /// Where the conversation starts (system prompt or first message).
    opening: Option<usize>,
}

impl Affinity {
    /// The affinity of `body`, from its cache key and the first value of its conversation.
    pub fn of(body: &[u8], key: Option<&RawValue>, opening: Option<&RawValue>) -> Self {
        let start = |raw: &RawValue| raw.get().as_ptr() as usize - body.as_ptr() as usize;
        Self {
            key: key
                .filter(|raw| raw.get() != "null")
                .map(|raw| (start(raw), start(raw) + raw.get().len())),
            opening: opening.map(start),
        }
    }

    /// The point this request hashes to under `mode`, if any.
    pub fn hash(&self, body: &[u8], caller: &str, mode: CacheAffinity) -> Option<u64> {
        match (mode, self.key, self.opening) {
            (CacheAffinity::Off, ..) => None,
            (_, Some((start, end)), _) => Some(xxhash_rust::xxh3::xxh3_64(body.get(start..end)?)),
            (CacheAffinity::Conversation, None, Some(start)) => {
                let opening = body.get(start..body.len().min(start + OPENING_BYTES))?;
                let seed = xxhash_rust::xxh3::xxh3_64(caller.as_bytes());
                Some(xxhash_rust::xxh3::xxh3_64_with_seed(opening, seed))
            }
            (CacheAffinity::Key | CacheAffinity::Conversation, None, _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affinity(body: &str) -> Affinity {
        #[derive(serde::Deserialize)]
        struct View<'a> {
            #[serde(borrow, default)]
            prompt_cache_key: Option<&'a RawValue>,
            #[serde(borrow)]
            input: &'a RawValue,
        }
        let view: View<'_> = serde_json::from_str(body).unwrap();
        Affinity::of(body.as_bytes(), view.prompt_cache_key, Some(view.input))
    }

    #[test]
    fn a_key_or_a_conversation_start_picks_the_same_point_every_time() {
        let keyed = r#"{"prompt_cache_key":"conv-1","input":"a"}"#;
        let same_key = r#"{"input":"b","prompt_cache_key":"conv-1"}"#;
        let point = |body: &str, mode| affinity(body).hash(body.as_bytes(), "alice", mode);
        assert_eq!(
            point(keyed, CacheAffinity::Key),
            point(same_key, CacheAffinity::Key)
        );
        assert!(point(keyed, CacheAffinity::Off).is_none());

        let unkeyed = r#"{"input":"the same opening"}"#;
        assert!(
            point(unkeyed, CacheAffinity::Key).is_none(),
            "off by default"
        );
        let conversation = point(unkeyed, CacheAffinity::Conversation).unwrap();
        let body = unkeyed.as_bytes();
        let bob = affinity(unkeyed).hash(body, "bob", CacheAffinity::Conversation);
        assert_ne!(Some(conversation), bob, "another caller's conversation");
    }
}
