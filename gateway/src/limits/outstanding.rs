//! Settlements this replica still owes a store, and the concurrency slots they will release.
//!
//! A request's slot is released by its settlement, which runs after the response's last byte
//! has reached the client (a destructor cannot await a Redis round trip). A client that sends
//! its next request as soon as the previous answer arrived can therefore find its own slot
//! still held, and so can a request that arrives while the journal is cancelling an admission
//! that ran late. Admission asks [`Outstanding::wait_released`] before refusing for a slot this
//! replica is about to release, so a sequential caller is never refused for its own previous
//! request.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smallvec::SmallVec;
use tokio::sync::{Notify, watch};

use super::demand::Demand;

/// Settlements not finished yet (settling now or queued in the journal); shutdown waits for
/// the count to reach 0, and refused admissions wait for the slots they would release.
#[derive(Debug)]
pub struct Outstanding {
    count: watch::Sender<usize>,
    /// Releases on their way, by hash of the slot's store key (a hash, so a ticket needs no
    /// copy of the key).
    releasing: Mutex<HashMap<u64, u32>>,
    released: Notify,
}

impl Default for Outstanding {
    fn default() -> Self {
        Self {
            count: watch::Sender::new(0),
            releasing: Mutex::default(),
            released: Notify::new(),
        }
    }
}

/// Fixed keys: the hash only has to agree within this process.
fn slot_hash(key: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
}

impl Outstanding {
    /// Counts one settlement of `demand` (and the slots it will release) until the returned
    /// ticket is dropped.
    pub fn ticket(self: &Arc<Self>, demand: &Demand) -> Ticket {
        self.count.send_modify(|n| *n += 1);
        let slots: SmallVec<[u64; 2]> = demand.slots.iter().map(|s| slot_hash(&s.key)).collect();
        if !slots.is_empty()
            && let Ok(mut releasing) = self.releasing.lock()
        {
            for slot in &slots {
                *releasing.entry(*slot).or_default() += 1;
            }
        }
        Ticket {
            outstanding: self.clone(),
            slots,
        }
    }

    /// Waits until nothing is outstanding or `limit` passed; returns what is left.
    pub async fn wait_idle(&self, limit: Duration) -> usize {
        let mut receiver = self.count.subscribe();
        let _ = tokio::time::timeout(limit, receiver.wait_for(|n| *n == 0)).await;
        *self.count.borrow()
    }

    /// Whether a release of any of `demand`'s slots is on its way (no lock without slots).
    pub fn releases_any(&self, demand: &Demand) -> bool {
        !demand.slots.is_empty()
            && self.releasing.lock().is_ok_and(|releasing| {
                demand
                    .slots
                    .iter()
                    .any(|s| releasing.contains_key(&slot_hash(&s.key)))
            })
    }

    /// Whether a release of the slot `key` is on its way.
    pub fn releases(&self, key: &str) -> bool {
        let slot = slot_hash(key);
        self.releasing
            .lock()
            .is_ok_and(|releasing| releasing.contains_key(&slot))
    }

    /// Waits until no release of the slot `key` is on its way; `false` if one still is after
    /// `limit`.
    pub async fn wait_released(&self, key: &str, limit: Duration) -> bool {
        let wait = async {
            loop {
                let released = self.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if !self.releases(key) {
                    return true;
                }
                released.await;
            }
        };
        tokio::time::timeout(limit, wait).await.unwrap_or(false)
    }
}

/// One outstanding settlement.
#[derive(Debug)]
pub struct Ticket {
    outstanding: Arc<Outstanding>,
    slots: SmallVec<[u64; 2]>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let outstanding = &self.outstanding;
        if !self.slots.is_empty() {
            if let Ok(mut releasing) = outstanding.releasing.lock() {
                for slot in &self.slots {
                    if let Some(held) = releasing.get_mut(slot) {
                        *held -= 1;
                        if *held == 0 {
                            releasing.remove(slot);
                        }
                    }
                }
            }
            outstanding.released.notify_waiters();
        }
        outstanding.count.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Scope;
    use crate::limits::demand::SlotDemand;

    fn demand_with_slot(key: &str) -> Demand {
        Demand {
            rates: Vec::new(),
            slots: vec![SlotDemand {
                key: key.to_owned(),
                scope: Scope::Caller,
                limit: 1,
            }],
            accounts: Vec::new(),
            lease: String::new(),
            lease_ttl: Duration::from_secs(60),
            reserved_tokens: 0,
            prompt_estimate: 0,
        }
    }

    #[tokio::test]
    async fn a_refusal_waits_only_for_a_release_of_its_own_slot() {
        let outstanding = Arc::new(Outstanding::default());
        assert!(outstanding.wait_released("a", Duration::ZERO).await);
        let ticket = outstanding.ticket(&demand_with_slot("a"));
        let other = outstanding.ticket(&demand_with_slot("b"));
        assert!(outstanding.releases_any(&demand_with_slot("a")));
        let waiter = {
            let outstanding = outstanding.clone();
            tokio::spawn(async move {
                outstanding
                    .wait_released("a", Duration::from_secs(60))
                    .await
            })
        };
        drop(other);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "released by another slot's ticket");
        assert!(outstanding.releases("a") && !outstanding.releases("b"));
        drop(ticket);
        assert!(waiter.await.unwrap());
        assert!(!outstanding.releases_any(&demand_with_slot("a")));
        assert_eq!(outstanding.wait_idle(Duration::ZERO).await, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_that_does_not_come_in_time_leaves_the_refusal_standing() {
        let outstanding = Arc::new(Outstanding::default());
        let _held = outstanding.ticket(&demand_with_slot("a"));
        assert!(!outstanding.wait_released("a", Duration::from_secs(1)).await);
        assert_eq!(outstanding.wait_idle(Duration::ZERO).await, 1);
    }
}
