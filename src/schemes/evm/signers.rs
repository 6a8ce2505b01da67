//! The facilitator's own EVM keys: a pool used round-robin, each key with a locally tracked
//! nonce so that concurrent settles pipeline instead of colliding (peers.md §2).
//!
//! Rules learned from other facilitators' incidents: gas is estimated before a nonce is taken, so
//! a reverting estimate burns nothing; a nonce whose transaction provably never entered a mempool
//! is handed back and reused first, so no gap stalls the key; on "nonce too low" or a replaced
//! transaction the key re-reads its pending count, never moving below nonces already handed out.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use tokio::sync::Mutex;

use super::chain::{Chain, RpcFailure};
use crate::config::Secret;

pub struct PoolSigner {
    pub key: PrivateKeySigner,
    pub address: Address,
    nonce: Mutex<NonceState>,
    /// The lease fence the nonce view was built under: a new fence means another process may
    /// have used the key meanwhile, so the view is re-read.
    fence: std::sync::atomic::AtomicI64,
}

#[derive(Default)]
struct NonceState {
    /// Next fresh nonce; `None` until read from the chain (and after a resync).
    next: Option<u64>,
    /// Highest nonce handed out so far plus one: a resync never goes below it.
    high_water: u64,
    /// Nonces handed back because their transaction never reached a mempool.
    released: BTreeSet<u64>,
}

pub struct SignerPool {
    signers: Vec<PoolSigner>,
    cursor: AtomicUsize,
}

impl SignerPool {
    /// Parses every key; a key that does not parse is a configuration error (never printed).
    pub fn from_keys(keys: &[Secret]) -> Result<Self, String> {
        let mut signers = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let key = PrivateKeySigner::from_str(key.expose())
                .map_err(|_| format!("signer key #{} is not a 32-byte hex private key", i + 1))?;
            let address = key.address();
            if signers.iter().any(|s: &PoolSigner| s.address == address) {
                return Err(format!("signer {address} is configured twice"));
            }
            signers.push(PoolSigner {
                key,
                address,
                nonce: Mutex::default(),
                fence: std::sync::atomic::AtomicI64::new(0),
            });
        }
        Ok(SignerPool {
            signers,
            cursor: AtomicUsize::new(0),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    pub fn addresses(&self) -> impl Iterator<Item = Address> + '_ {
        self.signers.iter().map(|s| s.address)
    }

    /// The next signer in turn whose lease `fence_of` grants, with that fence.
    pub async fn pick(&self, fence_of: impl Fn(Address) -> Option<i64>) -> Option<(usize, i64)> {
        let n = self.signers.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let index = (start + i) % n;
            let signer = &self.signers[index];
            if let Some(fence) = fence_of(signer.address) {
                if signer.fence.swap(fence, Ordering::AcqRel) != fence {
                    self.resync(index).await;
                }
                return Some((index, fence));
            }
        }
        None
    }

    pub fn get(&self, index: usize) -> Option<&PoolSigner> {
        self.signers.get(index)
    }

    /// A nonce for signer `index`: a released one first, else the next fresh one.
    pub async fn take_nonce(&self, index: usize, chain: &Chain) -> Result<u64, RpcFailure> {
        let signer = &self.signers[index % self.signers.len()];
        let mut state = signer.nonce.lock().await;
        if let Some(n) = state.released.pop_first() {
            return Ok(n);
        }
        let next = match state.next {
            Some(n) => n,
            None => {
                let address = signer.address;
                let pending = chain
                    .read(|p| async move { p.get_transaction_count(address).pending().await })
                    .await?;
                pending.max(state.high_water)
            }
        };
        state.next = Some(next + 1);
        state.high_water = state.high_water.max(next + 1);
        Ok(next)
    }

    /// Hands back a nonce whose transaction provably never reached a mempool.
    pub async fn release_nonce(&self, index: usize, nonce: u64) {
        let signer = &self.signers[index % self.signers.len()];
        signer.nonce.lock().await.released.insert(nonce);
    }

    /// Forgets the local view after the node said our nonce is stale; the next `take_nonce`
    /// re-reads the pending count (bounded below by what we already handed out).
    pub async fn resync(&self, index: usize) {
        let signer = &self.signers[index % self.signers.len()];
        let mut state = signer.nonce.lock().await;
        state.next = None;
        state.released.clear();
    }
}
