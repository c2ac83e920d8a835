//! Fault injection: rules matched against each request by verb, resource,
//! namespace and name, firing after `skip` matches for `times` matches (or forever) with an
//! optional probability from a seeded generator, so runs repeat exactly.

use std::sync::Mutex;

use serde::Deserialize;

use crate::path::Target;

/// What a firing rule does.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum FaultAction {
    /// Answer with this status as a Kubernetes `Status` (e.g. 429 or 503 with `Retry-After`,
    /// or 409 for simulated concurrent writers).
    Status {
        /// HTTP status.
        code: u16,
        /// `reason`, e.g. `TooManyRequests`.
        reason: String,
        /// `Retry-After` seconds.
        #[serde(default)]
        retry_after: Option<u32>,
    },
    /// Wait this many milliseconds before handling the request.
    Delay {
        /// Milliseconds.
        millis: u64,
    },
    /// Reset the connection without an answer.
    DropConnection,
    /// Answer a watch with HTTP 410 at its start (the non-standard shape; the standard one is
    /// the in-stream `ERROR` event of an expired resourceVersion).
    Watch410Http,
}

/// When a rule applies, and what it does.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// `get`, `list`, `watch`, `create`, `update`, `patch` or `delete`; any when absent.
    #[serde(default)]
    pub verb: Option<String>,
    /// Resource plural, e.g. `configmaps`; any when absent.
    #[serde(default)]
    pub resource: Option<String>,
    /// Namespace; any when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Object name; any when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Matches to let through before firing.
    #[serde(default)]
    pub skip: u32,
    /// Firings before the rule retires; forever when absent.
    #[serde(default)]
    pub times: Option<u32>,
    /// Chance of firing on a match (1 when absent), from a generator seeded with `seed`.
    #[serde(default)]
    pub probability: Option<f64>,
    /// Seed of the generator.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// What to do.
    pub action: FaultAction,
}

fn default_seed() -> u64 {
    0x9E37_79B9_7F4A_7C15
}

#[derive(Debug)]
struct Armed {
    rule: FaultRule,
    matched: u32,
    fired: u32,
    rng: u64,
}

/// The installed rules.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Armed>>,
}

impl Faults {
    /// Adds a rule.
    pub fn add(&self, rule: FaultRule) {
        if let Ok(mut rules) = self.rules.lock() {
            let rng = rule.seed.max(1);
            rules.push(Armed {
                rule,
                matched: 0,
                fired: 0,
                rng,
            });
        }
    }

    /// Removes every rule.
    pub fn clear(&self) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.clear();
        }
    }

    /// The action of the first rule that fires for this request, if any.
    pub fn check(&self, verb: &str, target: &Target) -> Option<FaultAction> {
        let mut rules = self.rules.lock().ok()?;
        for armed in rules.iter_mut() {
            let rule = &armed.rule;
            let matches = rule.verb.as_deref().is_none_or(|v| v == verb)
                && rule
                    .resource
                    .as_deref()
                    .is_none_or(|r| r == target.rtype.plural)
                && rule
                    .namespace
                    .as_deref()
                    .is_none_or(|n| Some(n) == target.namespace.as_deref())
                && rule
                    .name
                    .as_deref()
                    .is_none_or(|n| Some(n) == target.name.as_deref());
            if !matches || rule.times.is_some_and(|t| armed.fired >= t) {
                continue;
            }
            armed.matched += 1;
            if armed.matched <= rule.skip {
                continue;
            }
            if let Some(p) = rule.probability {
                armed.rng ^= armed.rng << 13;
                armed.rng ^= armed.rng >> 7;
                armed.rng ^= armed.rng << 17;
                if (armed.rng >> 11) as f64 / (1u64 << 53) as f64 >= p {
                    continue;
                }
            }
            armed.fired += 1;
            return Some(rule.action.clone());
        }
        None
    }
}

/// The verb of a request, as RBAC names it.
pub fn verb(method: &http::Method, target: &Target, watch: bool) -> &'static str {
    match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => "other",
    }
}
