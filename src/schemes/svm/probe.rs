//! The Solana plugin's live probe for operators: `getSlot` on every RPC URL (timed) and every fee
//! payer's lamports. Fee payers have no nonce lane, so nothing is "in flight" per key. Reads
//! only, each bounded by the caller's deadline (on top of the client's own timeout).

use std::time::Instant;

use futures_util::future::join_all;
use solana_commitment_config::CommitmentConfig;
use solana_pubkey::Pubkey;
use solana_signer::Signer;

use super::SvmExact;
use super::rpc::Node;
use crate::scheme::{Deadline, NetworkProbe, RpcProbe, SignerProbe, redact_urls};

pub(super) async fn probe(handler: &SvmExact, deadline: Deadline) -> NetworkProbe {
    let rpc = join_all(
        handler
            .rpc
            .nodes()
            .iter()
            .map(|node| probe_node(handler, node, deadline)),
    );
    let signers = join_all(
        handler
            .fee_payers
            .iter()
            .map(|k| probe_fee_payer(handler, k.pubkey(), deadline)),
    );
    let (rpc, signers) = futures_util::future::join(rpc, signers).await;
    NetworkProbe { rpc, signers }
}

async fn probe_node(handler: &SvmExact, node: &Node, deadline: Deadline) -> RpcProbe {
    let started = Instant::now();
    let slot = handler
        .rpc
        .on(
            deadline,
            node.client
                .get_slot_with_commitment(CommitmentConfig::confirmed()),
        )
        .await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match slot {
        Ok(slot) => RpcProbe {
            url_redacted: node.shown.clone(),
            ok: true,
            latency_ms,
            head: Some(slot),
            error: None,
        },
        Err(e) => RpcProbe {
            url_redacted: node.shown.clone(),
            ok: false,
            latency_ms,
            head: None,
            error: Some(redact_urls(&e.message())),
        },
    }
}

async fn probe_fee_payer(handler: &SvmExact, address: Pubkey, deadline: Deadline) -> SignerProbe {
    let mut error = None;
    let mut balance = None;
    for node in handler.rpc.nodes() {
        match handler
            .rpc
            .on(deadline, node.client.get_balance(&address))
            .await
        {
            Ok(lamports) => {
                balance = Some(lamports.to_string());
                error = None;
                break;
            }
            Err(e) => error = Some(redact_urls(&e.message())),
        }
    }
    SignerProbe {
        address: address.to_string(),
        balance,
        unit: "lamports",
        decimals: 9,
        in_flight: None,
        error,
    }
}
