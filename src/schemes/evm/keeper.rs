//! The nonce-lane keeper: a background task per EVM network that fills nonce gaps (review H2).
//!
//! A nonce blocks every later transaction of its key until something is mined at it. Ours are
//! normally mined; when one never will be (its transaction was provably never sent and nothing
//! reused the nonce, or it was recorded but expired unseen), the keeper sends a zero-value
//! transfer from the key to itself at that nonce, which moves no money and unblocks the lane.
//! Fillers are not payments, so they need no ledger row; they are only ever sent for nonces of
//! keys this process holds the lease on.

use std::sync::{Arc, Weak};
use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::primitives::{TxKind, U256};
use alloy::providers::Provider;
use alloy::signers::SignerSync;
use tracing::{info, warn};

use super::chain::Sent;
use super::network::EvmNetwork;
use super::settle::fees;
use super::signers::Gap;
use crate::scheme::Deadline;

/// Starts the keeper; it ends when the network is dropped (no handler holds it any more).
pub(super) fn spawn(handler: &Arc<EvmNetwork>) {
    let weak: Weak<EvmNetwork> = Arc::downgrade(handler);
    let every = (handler.options.stuck_after / 2)
        .clamp(Duration::from_millis(200), Duration::from_secs(15));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(h) = weak.upgrade() else { break };
            tend(&h).await;
        }
    });
}

/// One round over the keys this process holds.
async fn tend(h: &EvmNetwork) {
    for index in 0..h.signers.len() {
        let Some(signer) = h.signers.get(index) else {
            continue;
        };
        let address = signer.address;
        if h.gate.fence(&h.lease_key(address)).is_none() || !h.signers.lane_open(index).await {
            continue;
        }
        let deadline = Deadline::after(h.options.rpc_timeout);
        let latest = match h
            .chain
            .read(deadline, |p| async move {
                p.get_transaction_count(address).latest().await
            })
            .await
        {
            Ok(n) => n,
            Err(e) => {
                warn!(network = %h.network, signer = %address, error = %e.message(), "lane keeper cannot read the nonce");
                continue;
            }
        };
        if let Some(gap) = h.signers.gap_at(index, latest, h.options.stuck_after).await {
            fill(h, gap).await;
        }
    }
}

/// Sends a zero-value self-transfer at the gap's nonce.
async fn fill(h: &EvmNetwork, gap: Gap) {
    let Some(signer) = h.signers.get(gap.signer_index) else {
        return;
    };
    let deadline = Deadline::after(h.options.rpc_timeout * 2);
    let fees = match fees(h, deadline).await {
        Ok(f) => f,
        Err(e) => {
            // The hole stays known: it is tried again after `stuck_after`.
            warn!(network = %h.network, error = %e, "lane keeper cannot read fees");
            return;
        }
    };
    let tx = TxEip1559 {
        chain_id: h.chain_id,
        nonce: gap.nonce,
        gas_limit: 21_000,
        // A filler must be mined promptly: twice the estimate, within the operator's cap.
        max_fee_per_gas: h.capped(fees.max_fee_per_gas.saturating_mul(2)),
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        to: TxKind::Call(signer.address),
        value: U256::ZERO,
        access_list: Default::default(),
        input: Default::default(),
    };
    let Ok(signature) = signer.key.sign_hash_sync(&tx.signature_hash()) else {
        return;
    };
    let raw = TxEnvelope::from(tx.into_signed(signature)).encoded_2718();
    match h.chain.send(deadline, &raw).await {
        Sent::Accepted => {
            info!(network = %h.network, signer = %signer.address, nonce = gap.nonce, "filled a nonce gap")
        }
        // Whatever the node said, the hole stays known until the chain mines past it: a
        // refused or evicted filler is sent again after `stuck_after`.
        other => {
            warn!(network = %h.network, signer = %signer.address, nonce = gap.nonce, outcome = ?other, "could not fill a nonce gap yet; will retry");
        }
    }
}
