//! One configured EVM network as every EVM scheme on it shares it: the chain connection, the
//! signer pool with its nonce lanes, the fee cache and the lane keeper.
//!
//! A key has exactly one nonce lane per process, whichever scheme signs with it (`exact` and
//! `upto` both send from the network's keys): two local views of one lane would hand out the
//! same nonce twice. So the EVM factories of one application open each network once, through
//! [`Networks`], and their handlers hold the same [`EvmNetwork`].

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use alloy::eips::eip1559::Eip1559Estimation;
use alloy::primitives::Address;
use alloy::providers::Provider;
use tracing::{info, warn};

use super::chain::Chain;
use super::keeper;
use super::options::EvmOptions;
use super::signers::SignerPool;
use crate::config::NetworkSettings;
use crate::protocol::NetworkId;
use crate::scheme::{Deadline, Finality, SignerGate};

pub struct EvmNetwork {
    pub network: NetworkId,
    pub chain_id: u64,
    pub chain: Chain,
    pub signers: SignerPool,
    pub gate: Arc<dyn SignerGate>,
    pub options: EvmOptions,
    pub(super) fees: tokio::sync::Mutex<Option<(Instant, Eip1559Estimation)>>,
    /// Reorg verdicts per (block number, block hash), shared by the payments of one block.
    pub(super) block_verdicts: std::sync::Mutex<HashMap<(u64, String), (Finality, Instant)>>,
}

impl EvmNetwork {
    /// The signer-lease key of one of our addresses on this network.
    pub fn lease_key(&self, address: Address) -> String {
        format!("{}/{address:#x}", self.network)
    }

    /// A fee per gas, held to the operator's `max_fee_per_gas_wei`.
    pub fn capped(&self, fee: u128) -> u128 {
        self.options.max_fee_per_gas.map_or(fee, |cap| fee.min(cap))
    }

    /// `(family pattern, address)` of every key, for `/supported.signers`.
    pub fn signer_entries(&self) -> Vec<(String, String)> {
        self.signers
            .addresses()
            .map(|a| (self.network.family_pattern(), a.to_checksum(None)))
            .collect()
    }

    pub fn lease_keys(&self) -> Vec<String> {
        self.signers
            .addresses()
            .map(|a| self.lease_key(a))
            .collect()
    }
}

/// What opening a network gave.
pub enum Opened {
    Ready(Arc<EvmNetwork>),
    /// Configured, but nothing can be served on it now; the text says why, for the log.
    NotServed(String),
}

/// The EVM networks the factories of one application opened, by slug, so that every scheme
/// of a network shares one [`EvmNetwork`] (module docs). Each application build has its own:
/// there is no process-wide state, and a network lives as long as a handler holds it.
#[derive(Clone, Default)]
pub struct Networks(Arc<tokio::sync::Mutex<HashMap<String, Weak<EvmNetwork>>>>);

impl Networks {
    /// The network of `slug`, opened (and probed) on first use. `Err` stops start-up.
    pub async fn open(
        &self,
        slug: &str,
        settings: &NetworkSettings,
        gate: Arc<dyn SignerGate>,
    ) -> Result<Opened, String> {
        let mut opened = self.0.lock().await;
        if let Some(net) = opened.get(slug).and_then(Weak::upgrade) {
            return Ok(Opened::Ready(net));
        }
        let (network, options, signers) = configured(slug, settings)?;
        if signers.is_empty() {
            return Ok(Opened::NotServed(format!(
                "no signer key: set X402__NETWORKS__{}__SIGNER_KEYS or networks.{slug}.signer_key_file",
                slug.to_ascii_uppercase()
            )));
        }
        let chain = Chain::connect(&settings.rpc_urls, options.rpc_timeout)
            .map_err(|e| format!("networks.{slug}: {e}"))?;
        let net = EvmNetwork {
            chain_id: options.chain_id,
            network,
            chain,
            signers,
            gate,
            options,
            fees: tokio::sync::Mutex::new(None),
            block_verdicts: std::sync::Mutex::default(),
        };
        if let Err(why) = net.probe(slug).await? {
            return Ok(Opened::NotServed(why));
        }
        let net = Arc::new(net);
        keeper::spawn(&net);
        opened.insert(slug.to_string(), Arc::downgrade(&net));
        Ok(Opened::Ready(net))
    }
}

/// A network's settings parsed offline: its id, its options and its signer keys. Start-up
/// ([`Networks::open`]) and `check-config` (the factories' `validate`) both read them here, so
/// the two cannot disagree about what is valid.
pub(super) fn configured(
    slug: &str,
    settings: &NetworkSettings,
) -> Result<(NetworkId, EvmOptions, SignerPool), String> {
    let network = settings.network_id().map_err(|e| e.to_string())?;
    let options = EvmOptions::parse(&settings.options, &network)
        .map_err(|e| format!("networks.{slug}: {e}"))?;
    let keys = settings.load_signer_keys().map_err(|e| e.to_string())?;
    let signers = SignerPool::from_keys(&keys).map_err(|e| format!("networks.{slug}: {e}"))?;
    Ok((network, options, signers))
}

impl EvmNetwork {
    /// Start-up checks against the chain. A wrong chain id stops start-up; an unreachable RPC
    /// only warns (it may come back); signers with no gas money are not advertised.
    async fn probe(&self, slug: &str) -> Result<Result<(), String>, String> {
        let probe = Deadline::after(Duration::from_secs(5));
        let chain_id = tokio::time::timeout(
            probe.remaining(),
            self.chain
                .read(probe, |p| async move { p.get_chain_id().await }),
        )
        .await;
        match chain_id {
            Ok(Ok(id)) if id != self.chain_id => {
                return Err(format!(
                    "networks.{slug}: the RPC serves chain {id}, not {}",
                    self.chain_id
                ));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(network = %self.network, error = %e.message(), "RPC unreachable at start-up; serving anyway");
                return Ok(Ok(()));
            }
            Err(_) => {
                warn!(network = %self.network, "RPC did not answer within 5 s at start-up; serving anyway");
                return Ok(Ok(()));
            }
        }
        let mut funded = 0;
        for address in self.signers.addresses() {
            match self
                .chain
                .read(probe, |p| async move { p.get_balance(address).await })
                .await
            {
                Ok(b) if b.is_zero() => {
                    warn!(network = %self.network, signer = %address, "signer has no native balance for gas")
                }
                Ok(_) => funded += 1,
                Err(e) => {
                    warn!(network = %self.network, error = %e.message(), "cannot read signer balances");
                    return Ok(Ok(()));
                }
            }
        }
        if funded == 0 {
            return Ok(Err("no signer has a native balance to pay gas".into()));
        }
        info!(network = %self.network, signers = funded, "EVM network ready");
        Ok(Ok(()))
    }
}
