//! EVM network options, parsed from a network's `options` table (see `config/default.toml`).

use std::collections::HashSet;
use std::time::Duration;

use alloy::primitives::{Address, address};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::payload::parse_address;
use super::permit2::{EXACT_PROXY, PERMIT2, UPTO_PROXY};
use crate::protocol::NetworkId;

/// Canonical Multicall3, deployed at the same address on nearly every EVM chain.
pub const MULTICALL3: Address = address!("cA11bde05977b3631167028862bE2a173976CA11");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    chain_id: Option<u64>,
    #[serde(default = "default_poll")]
    receipt_poll_ms: u64,
    #[serde(default = "default_gas")]
    max_gas_limit: u64,
    max_fee_per_gas_wei: Option<u64>,
    #[serde(default, deserialize_with = "crate::config::string_list")]
    eip6492_factories: Vec<String>,
    multicall3: Option<String>,
    #[serde(default, deserialize_with = "crate::config::string_list")]
    assets: Vec<String>,
    #[serde(default = "default_rpc_timeout")]
    rpc_timeout_ms: u64,
    #[serde(default = "default_confirmations")]
    confirmations: u64,
    #[serde(default = "default_finality_depth")]
    finality_depth: u64,
    #[serde(default = "default_stuck_after")]
    stuck_after_ms: u64,
    #[serde(default = "default_expiry_margin")]
    expiry_margin_secs: u64,
    permit2: Option<String>,
    exact_permit2_proxy: Option<String>,
    upto_permit2_proxy: Option<String>,
    upto_facilitator: Option<String>,
    #[serde(default = "default_log_lookback")]
    log_lookback_blocks: u64,
}

fn default_poll() -> u64 {
    250
}
fn default_gas() -> u64 {
    1_000_000
}
fn default_rpc_timeout() -> u64 {
    5_000
}
/// Included in a block is enough on L2s, whose sequencer orders transactions once.
fn default_confirmations() -> u64 {
    1
}
/// Settled rows are watched for reorgs until their block is this deep (two Ethereum epochs).
fn default_finality_depth() -> u64 {
    64
}
fn default_stuck_after() -> u64 {
    30_000
}
/// How far past `validBefore` the chain's head must be before "expired, never mined" is a
/// verdict: a few blocks of slack for a head that is about to be replaced.
fn default_expiry_margin() -> u64 {
    30
}
/// How far back the token's `AuthorizationUsed` events are searched for the transaction that
/// executed a payment's authorization when none of ours did (payments live for minutes).
fn default_log_lookback() -> u64 {
    10_000
}

#[derive(Debug, Clone)]
pub struct EvmOptions {
    pub chain_id: u64,
    pub receipt_poll: Duration,
    pub max_gas_limit: u64,
    pub max_fee_per_gas: Option<u128>,
    pub factories: HashSet<Address>,
    pub multicall3: Address,
    /// `None`: any token (EIP-3009, or any ERC-20 through Permit2).
    pub assets: Option<HashSet<Address>>,
    pub rpc_timeout: Duration,
    /// Blocks (the including one counts) before a transfer is an answer.
    pub confirmations: u64,
    /// Depth after which a settled transaction is no longer watched for reorgs.
    pub finality_depth: u64,
    /// A transaction waiting this long is looked at for a fee bump, and a nonce left unused
    /// this long behind later ones is filled.
    pub stuck_after: Duration,
    /// See `default_expiry_margin`.
    pub expiry_margin_secs: u64,
    /// Permit2 on this chain (the EIP-712 `verifyingContract` payers sign for).
    pub permit2: Address,
    /// The x402 `exact` Permit2 proxy (the `spender` `exact` Permit2 payers sign for).
    pub exact_permit2_proxy: Address,
    /// The x402 `upto` Permit2 proxy: its address changed upstream several times and differs
    /// between chains (digest §10.2.1), hence configurable.
    pub upto_permit2_proxy: Address,
    /// The key advertised as `upto`'s `extra.facilitatorAddress`; the first key when unset.
    pub upto_facilitator: Option<Address>,
    /// See `default_log_lookback`.
    pub log_lookback_blocks: u64,
}

impl EvmOptions {
    pub fn parse(options: &Map<String, Value>, network: &NetworkId) -> Result<Self, String> {
        let raw: Raw =
            serde_json::from_value(Value::Object(options.clone())).map_err(|e| e.to_string())?;
        let from_network = network
            .eip155_chain_id()
            .ok_or_else(|| format!("{network} is not an eip155 network"))?;
        let chain_id = raw.chain_id.unwrap_or(from_network);
        if chain_id != from_network {
            return Err(format!("chain_id {chain_id} contradicts network {network}"));
        }
        let addresses = |list: &[String], what: &str| {
            list.iter()
                .map(|s| parse_address(s).ok_or_else(|| format!("{what}: `{s}` is not an address")))
                .collect::<Result<HashSet<_>, _>>()
        };
        if raw.receipt_poll_ms == 0 || raw.rpc_timeout_ms == 0 || raw.stuck_after_ms == 0 {
            return Err(
                "receipt_poll_ms, rpc_timeout_ms and stuck_after_ms must be positive".into(),
            );
        }
        if raw.confirmations == 0 {
            return Err("confirmations must be at least 1 (the including block)".into());
        }
        let one = |value: Option<String>, what: &str, default: Address| match value {
            Some(s) => parse_address(&s).ok_or_else(|| format!("{what}: `{s}` is not an address")),
            None => Ok(default),
        };
        let permit2 = one(raw.permit2, "permit2", PERMIT2)?;
        let exact_permit2_proxy = one(raw.exact_permit2_proxy, "exact_permit2_proxy", EXACT_PROXY)?;
        let upto_permit2_proxy = one(raw.upto_permit2_proxy, "upto_permit2_proxy", UPTO_PROXY)?;
        let upto_facilitator = match raw.upto_facilitator {
            Some(s) => Some(
                parse_address(&s)
                    .ok_or_else(|| format!("upto_facilitator: `{s}` is not an address"))?,
            ),
            None => None,
        };
        Ok(EvmOptions {
            chain_id,
            receipt_poll: Duration::from_millis(raw.receipt_poll_ms),
            max_gas_limit: raw.max_gas_limit,
            max_fee_per_gas: raw.max_fee_per_gas_wei.map(u128::from),
            factories: addresses(&raw.eip6492_factories, "eip6492_factories")?,
            multicall3: match raw.multicall3 {
                Some(s) => parse_address(&s)
                    .ok_or_else(|| format!("multicall3: `{s}` is not an address"))?,
                None => MULTICALL3,
            },
            assets: if raw.assets.is_empty() {
                None
            } else {
                Some(addresses(&raw.assets, "assets")?)
            },
            rpc_timeout: Duration::from_millis(raw.rpc_timeout_ms),
            confirmations: raw.confirmations,
            finality_depth: raw.finality_depth.max(raw.confirmations),
            stuck_after: Duration::from_millis(raw.stuck_after_ms),
            expiry_margin_secs: raw.expiry_margin_secs,
            permit2,
            exact_permit2_proxy,
            upto_permit2_proxy,
            upto_facilitator,
            log_lookback_blocks: raw.log_lookback_blocks,
        })
    }
}
