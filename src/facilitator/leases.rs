//! Signer leases and fair shares: a process signs with a key only while it holds that key's
//! lease in the ledger, so two replicas (or the old and new process of a rolling deploy) never
//! race one nonce lane; and identical replicas split each network's keys fairly.
//!
//! Every third of the lease's time to live, the keeper says this process is alive (a heartbeat
//! row), counts the live replicas N, and for each network with K keys holds at most ⌈K/N⌉ of
//! them: it renews what it holds, acquires free keys (expired leases) up to its share, and gives
//! up the excess when a replica joins. A key given up is first *drained*: no new settle picks it,
//! and its lease is kept for the longest a settle can take (the deadline plus the lease margin)
//! so that a settle in flight still records and sends under it; only then is it released. The
//! fence grows on every change of holder and is checked in the same statement that records a
//! transaction before broadcast, so a process that lost its lease can no longer record, and
//! therefore never broadcasts. A dead replica's keys are free once its leases expire (the TTL).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ledger::{Fence, SharedLedger};
use crate::scheme::{SignerGate, SignerLease};

/// What this process holds of one key.
#[derive(Debug, Clone, Copy)]
struct Held {
    fence: i64,
    /// Set while the key is being given up: no new settle picks it; released at that instant.
    draining_until: Option<Instant>,
}

pub struct SignerLeases {
    ledger: SharedLedger,
    holder: String,
    ttl: Duration,
    /// How long a settle that picked a key may still need its lease (deadline + margin).
    drain: Duration,
    keys: RwLock<Vec<String>>,
    held: RwLock<HashMap<String, Held>>,
    replicas: AtomicI64,
}

/// The network part of a lease key (`eip155:8453/0xabc…` → `eip155:8453`).
fn network_of(key: &str) -> &str {
    key.rsplit_once('/').map(|(n, _)| n).unwrap_or(key)
}

impl SignerLeases {
    pub fn new(ledger: SharedLedger, ttl: Duration, drain: Duration) -> Arc<Self> {
        Arc::new(SignerLeases {
            ledger,
            holder: uuid::Uuid::new_v4().simple().to_string(),
            ttl,
            drain,
            keys: RwLock::default(),
            held: RwLock::default(),
            replicas: AtomicI64::new(1),
        })
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn register(&self, keys: impl IntoIterator<Item = String>) {
        if let Ok(mut k) = self.keys.write() {
            k.extend(keys);
            k.sort();
            k.dedup();
        }
    }

    /// The ledger form of a lease a plugin signed under.
    pub fn fence_of(&self, lease: &SignerLease) -> Fence {
        Fence {
            signer: lease.signer.clone(),
            holder: self.holder.clone(),
            fence: lease.fence,
        }
    }

    /// Live replicas at the last heartbeat.
    pub fn replicas(&self) -> i64 {
        self.replicas.load(Ordering::Relaxed)
    }

    /// The keys this process holds and hands to new settles (not draining).
    pub fn usable(&self) -> Vec<String> {
        self.held
            .read()
            .map(|h| {
                h.iter()
                    .filter(|(_, v)| v.draining_until.is_none())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The keys this process holds (draining ones included), with their fences.
    pub fn held(&self) -> BTreeMap<String, (i64, bool)> {
        self.held
            .read()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), (v.fence, v.draining_until.is_some())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One round: heartbeat, count replicas, then hold a fair share of every network's keys.
    pub async fn renew(&self) {
        if let Err(e) = self.ledger.heartbeat(&self.holder, self.ttl).await {
            warn!(error = %e, "replica heartbeat failed");
        }
        let replicas = match self.ledger.live_replicas().await {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "cannot count replicas; keeping the current share");
                self.replicas.load(Ordering::Relaxed)
            }
        };
        self.replicas.store(replicas, Ordering::Relaxed);
        let keys = self.keys.read().map(|k| k.clone()).unwrap_or_default();
        let mut networks: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        for key in &keys {
            networks.entry(network_of(key)).or_default().push(key);
        }
        for (_, mut keys) in networks {
            let share = keys
                .len()
                .div_ceil(usize::try_from(replicas).unwrap_or(1).max(1));
            // Each replica tries free keys in its own order, so that several starting at once
            // spread over the keys instead of all racing for the first.
            keys.sort_by_key(|k| {
                let mut h = DefaultHasher::new();
                (self.holder.as_str(), k.as_str()).hash(&mut h);
                h.finish()
            });
            self.tend(&keys, share).await;
        }
    }

    async fn tend(&self, keys: &[&String], share: usize) {
        let now = Instant::now();
        let (mut active, draining): (Vec<String>, Vec<String>) = {
            let held = self.held.read().map(|h| h.clone()).unwrap_or_default();
            let mine = keys
                .iter()
                .filter_map(|k| held.get(*k).map(|h| ((*k).clone(), *h)));
            let (d, a): (Vec<_>, Vec<_>) = mine.partition(|(_, h)| h.draining_until.is_some());
            (
                a.into_iter().map(|(k, _)| k).collect(),
                d.into_iter().map(|(k, _)| k).collect(),
            )
        };
        // Give up the excess: drain first, release once no settle can still need the lease.
        while active.len() > share {
            if let Some(key) = active.pop() {
                self.set_draining(&key, Some(now + self.drain));
                info!(signer = %key, "draining a signer lease: another replica takes its share");
            }
        }
        for key in &draining {
            let due = self
                .held
                .read()
                .ok()
                .and_then(|h| h.get(key).and_then(|k| k.draining_until));
            if due.is_some_and(|d| d <= now) {
                if let Err(e) = self.ledger.release_signer(key, &self.holder).await {
                    warn!(signer = %key, error = %e, "cannot release a drained lease; it will expire");
                }
                if let Ok(mut held) = self.held.write() {
                    held.remove(key);
                }
                info!(signer = %key, "signer lease handed over");
            } else {
                self.lease(key).await; // still in use: keep it alive until released
            }
        }
        // Renew what stays, then take free keys up to the share.
        for key in &active {
            self.lease(key).await;
        }
        let mut count = active
            .iter()
            .filter(|k| self.held.read().is_ok_and(|h| h.contains_key(*k)))
            .count();
        for key in keys {
            if count >= share {
                break;
            }
            let known = self.held.read().is_ok_and(|h| h.contains_key(*key));
            if !known && self.lease(key).await {
                count += 1;
            }
        }
    }

    fn set_draining(&self, key: &str, until: Option<Instant>) {
        if let Ok(mut held) = self.held.write()
            && let Some(h) = held.get_mut(key)
        {
            h.draining_until = until;
        }
    }

    /// Acquires or renews one lease; `true` when held after.
    async fn lease(&self, key: &str) -> bool {
        let fence = match self.ledger.lease_signer(key, &self.holder, self.ttl).await {
            Ok(fence) => fence,
            Err(e) => {
                // Cannot renew: stop using the key before the lease may have expired.
                warn!(signer = %key, error = %e, "signer lease renewal failed");
                None
            }
        };
        let Ok(mut held) = self.held.write() else {
            return false;
        };
        match fence {
            Some(f) => {
                let before = held.get(key).copied();
                if before.map(|h| h.fence) != Some(f) {
                    info!(signer = %key, fence = f, "signer lease acquired");
                }
                held.insert(
                    key.to_string(),
                    Held {
                        fence: f,
                        draining_until: before.and_then(|h| h.draining_until),
                    },
                );
                true
            }
            None => {
                if held.remove(key).is_some() {
                    warn!(signer = %key, "signer lease lost");
                }
                false
            }
        }
    }

    /// Renews leases until `stop`, then releases them (and leaves) so a successor need not wait.
    pub fn spawn_keeper(self: Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let every = self.ttl / 3;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => self.renew().await,
                }
            }
            self.release_all().await;
        })
    }

    pub async fn release_all(&self) {
        let keys: Vec<String> = self
            .held
            .write()
            .map(|mut h| h.drain().map(|(k, _)| k).collect())
            .unwrap_or_default();
        for key in keys {
            if let Err(e) = self.ledger.release_signer(&key, &self.holder).await {
                warn!(signer = %key, error = %e, "cannot release signer lease; it will expire");
            }
        }
        if let Err(e) = self.ledger.leave(&self.holder).await {
            warn!(error = %e, "cannot leave the replica set; the heartbeat will expire");
        }
    }
}

impl SignerGate for SignerLeases {
    /// Only keys held and not draining are handed to new settles.
    fn fence(&self, signer: &str) -> Option<i64> {
        let held = self.held.read().ok()?;
        let h = held.get(signer)?;
        h.draining_until.is_none().then_some(h.fence)
    }
}

#[cfg(test)]
mod tests {
    use super::network_of;

    #[test]
    fn lease_keys_group_by_network() {
        assert_eq!(network_of("eip155:8453/0xabc"), "eip155:8453");
        assert_eq!(network_of("plain"), "plain");
    }
}
