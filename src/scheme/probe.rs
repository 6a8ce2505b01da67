//! A live look at one served network, for operators: how each RPC URL answers right now and what
//! each signer holds. Plugins fill it in ([`super::Scheme::probe`]); the console, and later
//! `/ready`, `/metrics` and a health-aware `/supported`, read it. Nothing here is cached: a probe
//! is a handful of cheap reads bounded by the caller's deadline.

use serde::Serialize;

/// What a probe of one network found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProbe {
    /// One entry per configured RPC URL, in configuration order.
    pub rpc: Vec<RpcProbe>,
    /// One entry per signer key (EVM) or fee payer (Solana).
    pub signers: Vec<SignerProbe>,
}

/// One RPC URL's answer to a cheap read (the chain head).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcProbe {
    /// Scheme and host only (`config::redact_url`): providers put API keys in the path.
    pub url_redacted: String,
    pub ok: bool,
    pub latency_ms: u64,
    /// The head the URL reported (EVM block number, Solana slot).
    pub head: Option<u64>,
    /// Why it failed, with any URL inside replaced (`scheme::redact_urls`).
    pub error: Option<String>,
}

/// One signer's native balance (what pays gas or fees) and, where the chain has nonces, how
/// many of its transactions are in the mempool.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignerProbe {
    pub address: String,
    /// In the chain's smallest unit (wei, lamports), as a decimal string; `None` when unread.
    pub balance: Option<String>,
    /// The smallest unit's name, e.g. `wei`.
    pub unit: &'static str,
    /// Decimals from the smallest unit to the native coin (18 for ETH, 9 for SOL).
    pub decimals: u8,
    /// Pending minus mined transaction count (EVM); `None` where there is no nonce lane.
    pub in_flight: Option<u64>,
    pub error: Option<String>,
}

impl NetworkProbe {
    /// Whether at least one RPC URL answered.
    pub fn reachable(&self) -> bool {
        self.rpc.iter().any(|r| r.ok)
    }
}
