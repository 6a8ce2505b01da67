//! Signer leases: a process signs with a key only while it holds that key's lease in the ledger,
//! so two replicas (or the old and new process of a rolling deploy) never race one nonce lane.
//!
//! Leases are renewed every third of their time to live. The fence grows on every change of
//! holder and is checked in the same statement that records a transaction before broadcast, so a
//! process that lost its lease can no longer record, and therefore never broadcasts.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ledger::{Fence, SharedLedger};
use crate::scheme::{SignerGate, SignerLease};

pub struct SignerLeases {
    ledger: SharedLedger,
    holder: String,
    ttl: Duration,
    keys: RwLock<Vec<String>>,
    held: RwLock<HashMap<String, i64>>,
}

impl SignerLeases {
    pub fn new(ledger: SharedLedger, ttl: Duration) -> Arc<Self> {
        Arc::new(SignerLeases {
            ledger,
            holder: uuid::Uuid::new_v4().simple().to_string(),
            ttl,
            keys: RwLock::default(),
            held: RwLock::default(),
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

    /// Acquires or renews every registered lease once.
    pub async fn renew(&self) {
        let keys = self.keys.read().map(|k| k.clone()).unwrap_or_default();
        for key in keys {
            let fence = match self.ledger.lease_signer(&key, &self.holder, self.ttl).await {
                Ok(fence) => fence,
                Err(e) => {
                    // Cannot renew: stop using the key before the lease may have expired.
                    warn!(signer = %key, error = %e, "signer lease renewal failed");
                    None
                }
            };
            let Ok(mut held) = self.held.write() else {
                continue;
            };
            let before = held.get(&key).copied();
            match fence {
                Some(f) => {
                    held.insert(key.clone(), f);
                    if before != Some(f) {
                        info!(signer = %key, fence = f, "signer lease acquired");
                    }
                }
                None => {
                    if held.remove(&key).is_some() {
                        warn!(signer = %key, "signer lease lost");
                    }
                }
            }
        }
    }

    /// Renews leases until `stop`, then releases them so a successor need not wait.
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
    }
}

impl SignerGate for SignerLeases {
    fn fence(&self, signer: &str) -> Option<i64> {
        self.held.read().ok()?.get(signer).copied()
    }
}
