//! The Solana plugin's live probe for operators: `getSlot` on every RPC URL (timed) and every fee
//! payer's lamports. Fee payers have no nonce lane, so nothing is "in flight" per key. Reads
//! only, each bounded by the caller's deadline (on top of the client's own timeout).

use std::time::Instant;

use futures_util::future::join_all;
use serde_json::{Value, json};

use super::SvmExact;
use crate::scheme::{Deadline, NetworkProbe, RpcProbe, SignerProbe, redact_urls};

pub(super) async fn probe(handler: &SvmExact, deadline: Deadline) -> NetworkProbe {
    let rpc = join_all(
        handler
            .rpc
            .urls()
            .iter()
            .map(|url| probe_url(handler, url, deadline)),
    );
    let signers = join_all(
        handler
            .fee_payers
            .iter()
            .map(|k| probe_fee_payer(handler, k.pubkey().to_string(), deadline)),
    );
    let (rpc, signers) = futures_util::future::join(rpc, signers).await;
    NetworkProbe { rpc, signers }
}

async fn bounded(
    deadline: Deadline,
    call: impl Future<Output = Result<Value, super::rpc::RpcFailure>>,
) -> Result<Value, String> {
    match tokio::time::timeout(deadline.remaining(), call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(redact_urls(&e.message())),
        Err(_) => Err("no answer before the probe's deadline".into()),
    }
}

async fn probe_url(handler: &SvmExact, url: &str, deadline: Deadline) -> RpcProbe {
    let started = Instant::now();
    let slot = bounded(
        deadline,
        handler
            .rpc
            .call_at(url, "getSlot", &json!([{"commitment": "confirmed"}])),
    )
    .await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let url_redacted = crate::config::redact_url(url);
    match slot.and_then(|v| {
        v.as_u64()
            .ok_or_else(|| "getSlot: not a number".to_string())
    }) {
        Ok(slot) => RpcProbe {
            url_redacted,
            ok: true,
            latency_ms,
            head: Some(slot),
            error: None,
        },
        Err(error) => RpcProbe {
            url_redacted,
            ok: false,
            latency_ms,
            head: None,
            error: Some(error),
        },
    }
}

async fn probe_fee_payer(handler: &SvmExact, address: String, deadline: Deadline) -> SignerProbe {
    let balance = bounded(deadline, handler.rpc.read("getBalance", json!([address])))
        .await
        .and_then(|v| {
            v["value"]
                .as_u64()
                .ok_or_else(|| "getBalance: no value".to_string())
        });
    let (balance, error) = match balance {
        Ok(b) => (Some(b.to_string()), None),
        Err(e) => (None, Some(e)),
    };
    SignerProbe {
        address,
        balance,
        unit: "lamports",
        decimals: 9,
        in_flight: None,
        error,
    }
}
