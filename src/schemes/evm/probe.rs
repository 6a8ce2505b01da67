//! The EVM plugin's live probe for operators: `eth_blockNumber` on every RPC URL (timed), and per
//! signer the native balance and the transactions it has in the mempool (pending minus mined
//! nonce). Reads only; every call bounded by the caller's deadline.

use std::time::Instant;

use alloy::primitives::Address;
use alloy::providers::Provider;
use futures_util::future::join_all;

use super::network::EvmNetwork;
use crate::scheme::{Deadline, NetworkProbe, RpcProbe, SignerProbe, redact_urls};

pub(super) async fn probe(handler: &EvmNetwork, deadline: Deadline) -> NetworkProbe {
    let rpc = join_all(
        handler
            .chain
            .redacted_urls()
            .iter()
            .enumerate()
            .map(|(i, url)| probe_url(handler, i, url.clone(), deadline)),
    );
    let signers = join_all(
        handler
            .signers
            .addresses()
            .map(|a| probe_signer(handler, a, deadline)),
    );
    let (rpc, signers) = futures_util::future::join(rpc, signers).await;
    NetworkProbe { rpc, signers }
}

async fn probe_url(handler: &EvmNetwork, i: usize, url: String, deadline: Deadline) -> RpcProbe {
    let started = Instant::now();
    let head = handler
        .chain
        .on(i, deadline, |p| async move { p.get_block_number().await })
        .await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match head {
        Ok(head) => RpcProbe {
            url_redacted: url,
            ok: true,
            latency_ms,
            head: Some(head),
            error: None,
        },
        Err(e) => RpcProbe {
            url_redacted: url,
            ok: false,
            latency_ms,
            head: None,
            error: Some(redact_urls(&e.message())),
        },
    }
}

async fn probe_signer(handler: &EvmNetwork, address: Address, deadline: Deadline) -> SignerProbe {
    let chain = &handler.chain;
    let balance = chain.read(deadline, |p| async move { p.get_balance(address).await });
    let mined = chain.read(deadline, |p| async move {
        p.get_transaction_count(address).latest().await
    });
    let pending = chain.read(deadline, |p| async move {
        p.get_transaction_count(address).pending().await
    });
    let (balance, mined, pending) = tokio::join!(balance, mined, pending);
    let in_flight = match (mined, pending) {
        (Ok(m), Ok(p)) => Some(p.saturating_sub(m)),
        _ => None,
    };
    let (balance, error) = match balance {
        Ok(b) => (Some(b.to_string()), None),
        Err(e) => (None, Some(redact_urls(&e.message()))),
    };
    SignerProbe {
        address: address.to_checksum(None),
        balance,
        unit: "wei",
        decimals: 18,
        in_flight,
        error,
    }
}
