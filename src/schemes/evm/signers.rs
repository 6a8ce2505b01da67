//! The facilitator's own EVM keys: a pool used round-robin (or one named key, for `upto`), each
//! key with a locally tracked nonce lane so that concurrent settles pipeline instead of
//! colliding (peers.md §2).
//!
//! Rules learned from other facilitators' incidents, and from our own review (H2):
//! - gas is estimated before a nonce is taken, so a reverting estimate burns nothing;
//! - a nonce whose transaction provably never entered a mempool is handed back: the newest one
//!   simply un-takes, an older one is reused first, and one left unused behind later nonces is a
//!   *hole* the lane keeper fills (`keeper.rs`), so no gap stalls the key;
//! - a nonce whose recorded transaction can never be mined (expired and never seen by any
//!   node) is a hole too;
//! - on "nonce too low" or a replaced transaction the key re-reads its pending count, never
//!   moving below nonces already handed out, and without forgetting handed-back ones.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Instant;

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use tokio::sync::Mutex;

use super::chain::{Chain, RpcFailure};
use crate::config::Secret;
use crate::scheme::Deadline;

pub struct PoolSigner {
    pub key: PrivateKeySigner,
    pub address: Address,
    nonce: Mutex<NonceState>,
    /// The lease fence the nonce view was built under: a new fence means another process may
    /// have used the key meanwhile, so the view is re-read.
    fence: AtomicI64,
}

#[derive(Default)]
struct NonceState {
    /// Next fresh nonce; `None` until read from the chain (and after a resync).
    next: Option<u64>,
    /// Highest nonce handed out so far plus one: a resync never goes below it.
    high_water: u64,
    /// Nonces handed back because their transaction never reached a mempool, with when.
    released: BTreeMap<u64, Instant>,
    /// Nonces whose transaction can never be mined: to be filled when they block the lane,
    /// with when a filler was last sent (kept until the chain has mined past the nonce).
    holes: BTreeMap<u64, Option<Instant>>,
}

pub struct SignerPool {
    signers: Vec<PoolSigner>,
    cursor: AtomicUsize,
}

/// A nonce the lane keeper should fill: it blocks later transactions and nothing of ours will
/// ever use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub signer_index: usize,
    pub nonce: u64,
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
                fence: AtomicI64::new(0),
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

    pub fn len(&self) -> usize {
        self.signers.len()
    }

    pub fn addresses(&self) -> impl Iterator<Item = Address> + '_ {
        self.signers.iter().map(|s| s.address)
    }

    pub fn index_of(&self, address: Address) -> Option<usize> {
        self.signers.iter().position(|s| s.address == address)
    }

    /// The next signer in turn whose lease `fence_of` grants, with that fence.
    pub async fn pick(&self, fence_of: impl Fn(Address) -> Option<i64>) -> Option<(usize, i64)> {
        let n = self.signers.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let index = (start + i) % n;
            let signer = &self.signers[index];
            if let Some(fence) = fence_of(signer.address) {
                self.enter(index, fence).await;
                return Some((index, fence));
            }
        }
        None
    }

    /// Signer `address` itself when `fence_of` grants its lease, with that fence: for payments
    /// that only one of our keys may send (`upto` names its facilitator in the signed witness).
    /// It is never a turn of the round robin, and uses that key's one nonce lane.
    pub async fn pick_address(
        &self,
        address: Address,
        fence_of: impl Fn(Address) -> Option<i64>,
    ) -> Option<(usize, i64)> {
        let index = self.index_of(address)?;
        let fence = fence_of(address)?;
        self.enter(index, fence).await;
        Some((index, fence))
    }

    /// Notes the lease fence signer `index` is used under: a new fence means another process
    /// may have used the key meanwhile, so its nonce view is forgotten and re-read.
    async fn enter(&self, index: usize, fence: i64) {
        let signer = self.signer(index);
        if signer.fence.swap(fence, Ordering::AcqRel) != fence {
            // Another process may have used the key meanwhile: what we handed back or meant
            // to fill may be its now.
            let mut state = signer.nonce.lock().await;
            state.next = None;
            state.released.clear();
            state.holes.clear();
        }
    }

    pub fn get(&self, index: usize) -> Option<&PoolSigner> {
        self.signers.get(index)
    }

    fn signer(&self, index: usize) -> &PoolSigner {
        &self.signers[index % self.signers.len()]
    }

    /// A nonce for signer `index`: a handed-back one first, else the next fresh one.
    pub async fn take_nonce(
        &self,
        index: usize,
        chain: &Chain,
        deadline: Deadline,
    ) -> Result<u64, RpcFailure> {
        let signer = self.signer(index);
        let mut state = signer.nonce.lock().await;
        if let Some((n, _)) = state.released.pop_first() {
            return Ok(n);
        }
        let next = match state.next {
            Some(n) => n,
            None => {
                let address = signer.address;
                let pending = chain
                    .read(deadline, |p| async move {
                        p.get_transaction_count(address).pending().await
                    })
                    .await?;
                // Handed-back nonces the chain has since seen used are gone.
                state.released.retain(|n, _| *n >= pending);
                state.holes.retain(|n, _| *n >= pending);
                pending.max(state.high_water)
            }
        };
        state.next = Some(next + 1);
        state.high_water = state.high_water.max(next + 1);
        Ok(next)
    }

    /// Hands back a nonce whose transaction provably never reached a mempool.
    pub async fn release_nonce(&self, index: usize, nonce: u64) {
        let signer = self.signer(index);
        let mut state = signer.nonce.lock().await;
        if state.next == Some(nonce + 1) && state.high_water == nonce + 1 {
            // The newest nonce: nothing was handed out after it, so it simply un-takes.
            state.next = Some(nonce);
            state.high_water = nonce;
        } else {
            state.released.insert(nonce, Instant::now());
        }
    }

    /// A nonce whose recorded transaction can never be mined: fill it if it blocks the lane.
    pub async fn mark_hole(&self, index: usize, nonce: u64) {
        self.signer(index)
            .nonce
            .lock()
            .await
            .holes
            .entry(nonce)
            .or_insert(None);
    }

    /// Forgets the local view after the node said our nonce is stale; the next `take_nonce`
    /// re-reads the pending count (bounded below by what we already handed out). Handed-back
    /// nonces are kept: forgetting them would leave a gap.
    pub async fn resync(&self, index: usize) {
        self.signer(index).nonce.lock().await.next = None;
    }

    /// Whether the lane of signer `index` has anything the keeper must watch: nonces handed
    /// out beyond what the chain has mined, or holes.
    pub async fn lane_open(&self, index: usize) -> bool {
        let state = self.signer(index).nonce.lock().await;
        !state.holes.is_empty() || !state.released.is_empty() || state.high_water > 0
    }

    /// Given the signer's mined count `latest` (the next nonce the chain will execute), the
    /// nonce to fill now: a hole not filled yet (or whose filler has not been mined within
    /// `wait`), or a handed-back nonce unused for `wait`. A hole stays known until the chain
    /// mines past it, so a filler that was refused or evicted is sent again.
    pub async fn gap_at(
        &self,
        index: usize,
        latest: u64,
        wait: std::time::Duration,
    ) -> Option<Gap> {
        let mut state = self.signer(index).nonce.lock().await;
        state.holes.retain(|n, _| *n >= latest);
        state.released.retain(|n, _| *n >= latest);
        if state.high_water <= latest && !state.holes.contains_key(&latest) {
            return None; // nothing of ours waits behind `latest`
        }
        let hole_due = state
            .holes
            .get(&latest)
            .is_some_and(|tried| tried.is_none_or(|at| at.elapsed() >= wait));
        let released_due = state
            .released
            .get(&latest)
            .is_some_and(|at| at.elapsed() >= wait);
        if hole_due || released_due {
            state.released.remove(&latest);
            state.holes.insert(latest, Some(Instant::now()));
            return Some(Gap {
                signer_index: index,
                nonce: latest,
            });
        }
        None
    }
}
