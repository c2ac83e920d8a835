//! The one-time move of usage counters written before account keys carried a hash tag
//! (`lgw:key:ns/app:usage:2026-11-01` → `lgw:{key:ns/app}:usage:2026-11-01`), so an upgrade
//! keeps the period's spend and budgets instead of starting them over.
//!
//! Only on a single Redis (a cluster was not supported before tags). A background task scans
//! for old names at start and every minute for an hour (a rollout's replicas of the old
//! version may write the old names meanwhile), then until two passes in a row find none; each
//! hash moves atomically (`migrate.lua`).

use std::time::Duration;

use redis::Script;

use super::demand::KEY_PREFIX;
use crate::redis_conn::RedisConnection;

/// Between passes, and the backoff while Redis is unreachable.
const INTERVAL: Duration = Duration::from_secs(60);
/// Keys asked for per `SCAN` step.
const SCAN_COUNT: usize = 1000;
/// Passes made whatever they find (an hour at [`INTERVAL`]).
const ROLLOUT_PASSES: u32 = 60;

/// Runs passes for an hour, then until two in a row find nothing to move.
pub async fn run(connection: RedisConnection) {
    let script = Script::new(include_str!("migrate.lua"));
    let (mut passes, mut idle_passes) = (0, 0);
    while passes < ROLLOUT_PASSES || idle_passes < 2 {
        passes += 1;
        match pass(&connection, &script).await {
            Ok(0) => idle_passes += 1,
            Ok(moved) => {
                tracing::info!(moved, "moved usage counters to their hash-tagged names");
                idle_passes = 0;
            }
            // Redis down is reported elsewhere; a refused SCAN or script (an ACL) is not.
            Err(error) if error.is_io_error() || error.is_timeout() => {
                tracing::debug!(%error, "usage key migration postponed");
            }
            Err(error) => {
                tracing::warn!(%error, "usage counters of the previous version cannot be moved; budgets of this period may start over");
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// One scan; returns how many hashes moved.
async fn pass(connection: &RedisConnection, script: &Script) -> redis::RedisResult<usize> {
    let mut cursor = 0u64;
    let mut moved = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{KEY_PREFIX}:*:usage:*"))
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(&mut connection.clone())
            .await?;
        for old in keys.iter().filter_map(|k| legacy(k)) {
            let (old, new) = old;
            let done: i64 = script
                .key(&old)
                .key(&new)
                .key(format!("{old}:held"))
                .key(format!("{new}:held"))
                .invoke_async(&mut connection.clone())
                .await?;
            moved += usize::try_from(done).unwrap_or(0);
        }
        if next == 0 {
            return Ok(moved);
        }
        cursor = next;
    }
}

/// `(old, new)` names of a usage hash written without a hash tag; `None` for anything else
/// (tagged keys, reservation sets).
fn legacy(key: &str) -> Option<(String, String)> {
    if key.contains('{') || key.ends_with(":held") {
        return None;
    }
    let rest = key.strip_prefix(KEY_PREFIX)?.strip_prefix(':')?;
    let (account, period) = rest.rsplit_once(":usage:")?;
    let new = format!("{KEY_PREFIX}:{{{account}}}:usage:{period}");
    Some((key.to_owned(), new))
}

#[cfg(test)]
mod tests {
    use super::legacy;

    #[test]
    fn only_untagged_usage_hashes_are_moved() {
        assert_eq!(
            legacy("lgw:key:team/app:usage:2026-11-01"),
            Some((
                "lgw:key:team/app:usage:2026-11-01".to_owned(),
                "lgw:{key:team/app}:usage:2026-11-01".to_owned()
            ))
        );
        assert_eq!(legacy("lgw:{key:team/app}:usage:2026-11-01"), None);
        assert_eq!(legacy("lgw:key:team/app:usage:2026-11-01:held"), None);
        assert_eq!(legacy("other:key:usage:2026-11-01"), None);
    }
}
