//! EVM `exact` via EIP-3009 `transferWithAuthorization` (digest §4): one handler per configured
//! `eip155:` network, answering v2 under the CAIP-2 id and v1 under the legacy name.

mod chain;
mod contracts;
mod keeper;
mod options;
pub mod payload;
pub mod reason;
mod settle;
mod signers;
mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use async_trait::async_trait;
use tracing::{info, warn};

use self::chain::Chain;
use self::options::EvmOptions;
use self::signers::SignerPool;
use crate::config::NetworkSettings;
use crate::protocol::network::caip2_to_v1;
use crate::protocol::{NetworkId, PaymentRequest, SupportedKind};
use crate::scheme::{
    Broadcast, Built, Checked, Deadline, Description, Erased, Finality, Inclusion, RecordedTx,
    Rejection, Scheme, SchemeError, SchemeFactory, Signed, SignedView, SignerGate, Stop, TxStatus,
};

pub const SCHEME: &str = "exact";

/// How the payer's signature reaches the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureRoute {
    /// 65-byte ECDSA signature that recovers to `from`.
    Eoa,
    /// `from` has code: the token asks it through ERC-1271.
    ContractWallet,
    /// `from` has no code yet: deploy it through an allow-listed ERC-6492 factory in the same
    /// transaction (Multicall3), then transfer.
    Counterfactual(payload::Deployment),
}

/// A checked EIP-3009 payment: the plugin's `CheckedPayment::details`.
#[derive(Debug, Clone)]
pub struct EvmPayment {
    pub x402_version: u8,
    pub asset: Address,
    pub pay_to: Address,
    pub amount: U256,
    pub authorization: payload::Authorization,
    pub signature: Bytes,
    pub route: SignatureRoute,
    pub domain_name: String,
    pub domain_version: String,
    /// See `verify::fingerprint`.
    pub fingerprint: String,
}

pub struct EvmExact {
    network: NetworkId,
    chain_id: u64,
    v1_name: Option<&'static str>,
    chain: Chain,
    signers: SignerPool,
    gate: Arc<dyn SignerGate>,
    options: EvmOptions,
    fees: tokio::sync::Mutex<Option<(Instant, alloy::eips::eip1559::Eip1559Estimation)>>,
    /// Reorg verdicts per (block number, block hash), shared by the payments of one block.
    block_verdicts: std::sync::Mutex<std::collections::HashMap<(u64, String), (Finality, Instant)>>,
}

/// The handler is shared with its lane keeper (`keeper.rs`), which ends when it is dropped.
#[async_trait]
impl Scheme for Arc<EvmExact> {
    type Payment = EvmPayment;
    type Signed = settle::SignedTx;

    fn describe(&self) -> Description {
        let mut kinds = vec![SupportedKind {
            x402_version: 2,
            scheme: SCHEME.into(),
            network: self.network.to_string(),
            extra: None,
        }];
        if let Some(name) = self.v1_name {
            kinds.push(SupportedKind {
                x402_version: 1,
                scheme: SCHEME.into(),
                network: name.into(),
                extra: None,
            });
        }
        Description {
            kinds,
            signers: self
                .signers
                .addresses()
                .map(|a| (self.network.family_pattern(), a.to_checksum(None)))
                .collect(),
            lease_keys: self
                .signers
                .addresses()
                .map(|a| self.lease_key(a))
                .collect(),
        }
    }

    async fn check(
        &self,
        request: &PaymentRequest,
        deadline: Deadline,
    ) -> Result<Checked<EvmPayment>, Stop> {
        verify::check(self, request, deadline).await
    }

    fn revive(&self, request: &PaymentRequest) -> Result<Checked<EvmPayment>, Rejection> {
        verify::revive(self, request)
    }

    async fn simulate(&self, payment: &EvmPayment, deadline: Deadline) -> Result<(), Stop> {
        verify::simulate(self, payment, deadline).await
    }

    async fn prepare(
        &self,
        payment: &EvmPayment,
        deadline: Deadline,
    ) -> Result<Signed<settle::SignedTx>, Stop> {
        settle::prepare(self, payment, deadline).await
    }

    async fn broadcast(
        &self,
        _payment: &EvmPayment,
        signed: &SignedView<'_, settle::SignedTx>,
        deadline: Deadline,
    ) -> Result<Broadcast, SchemeError> {
        settle::broadcast(self, signed, deadline).await
    }

    async fn await_outcome(
        &self,
        payment: &EvmPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<TxStatus, SchemeError> {
        settle::await_outcome(self, payment, txs, deadline).await
    }

    async fn reconcile(
        &self,
        payment: &EvmPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<TxStatus, SchemeError> {
        settle::reconcile(self, payment, txs, deadline).await
    }

    async fn examine(
        &self,
        payment: &EvmPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<Option<TxStatus>, SchemeError> {
        settle::examine(self, payment, txs, deadline).await
    }

    async fn replace(
        &self,
        payment: &EvmPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<Option<Signed<settle::SignedTx>>, SchemeError> {
        settle::replace(self, payment, txs, deadline).await
    }

    async fn finality(
        &self,
        inclusion: &Inclusion,
        deadline: Deadline,
    ) -> Result<Finality, SchemeError> {
        settle::finality(self, inclusion, deadline).await
    }

    async fn discard(&self, signed: &SignedView<'_, settle::SignedTx>) {
        settle::discard(self, signed).await;
    }

    fn can_sign(&self) -> bool {
        self.signers
            .addresses()
            .any(|a| self.gate.fence(&self.lease_key(a)).is_some())
    }
}

impl EvmExact {
    /// The signer-lease key of one of our addresses on this network.
    fn lease_key(&self, address: Address) -> String {
        format!("{}/{address:#x}", self.network)
    }

    /// A fee per gas, held to the operator's `max_fee_per_gas_wei`.
    fn capped(&self, fee: u128) -> u128 {
        self.options.max_fee_per_gas.map_or(fee, |cap| fee.min(cap))
    }
}

/// Builds [`EvmExact`] handlers for `eip155:` networks.
pub struct EvmExactFactory;

#[async_trait]
impl SchemeFactory for EvmExactFactory {
    fn namespace(&self) -> &'static str {
        "eip155"
    }

    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn validate(&self, slug: &str, settings: &NetworkSettings) -> Result<(), String> {
        let network = settings.network_id().map_err(|e| e.to_string())?;
        EvmOptions::parse(&settings.options, &network)
            .map_err(|e| format!("networks.{slug}: {e}"))?;
        let keys = settings.load_signer_keys().map_err(|e| e.to_string())?;
        SignerPool::from_keys(&keys).map_err(|e| format!("networks.{slug}: {e}"))?;
        Ok(())
    }

    async fn build(
        &self,
        slug: &str,
        settings: &NetworkSettings,
        gate: Arc<dyn SignerGate>,
    ) -> Result<Built, String> {
        let network = settings.network_id().map_err(|e| e.to_string())?;
        let options = EvmOptions::parse(&settings.options, &network)
            .map_err(|e| format!("networks.{slug}: {e}"))?;
        let keys = settings.load_signer_keys().map_err(|e| e.to_string())?;
        let signers = SignerPool::from_keys(&keys).map_err(|e| format!("networks.{slug}: {e}"))?;
        if signers.is_empty() {
            return Ok(Built::NotServed(format!(
                "no signer key: set X402__NETWORKS__{}__SIGNER_KEYS or networks.{slug}.signer_key_file",
                slug.to_ascii_uppercase()
            )));
        }
        let chain = Chain::connect(&settings.rpc_urls, options.rpc_timeout)
            .map_err(|e| format!("networks.{slug}: {e}"))?;
        let handler = EvmExact {
            v1_name: if settings.v1 {
                caip2_to_v1(&network)
            } else {
                None
            },
            chain_id: options.chain_id,
            network,
            chain,
            signers,
            gate,
            options,
            fees: tokio::sync::Mutex::new(None),
            block_verdicts: std::sync::Mutex::default(),
        };
        match handler.probe(slug).await? {
            Ok(()) => {
                let handler = Arc::new(handler);
                keeper::spawn(&handler);
                Ok(Built::Serving(Arc::new(Erased(handler))))
            }
            Err(why) => Ok(Built::NotServed(why)),
        }
    }
}

impl EvmExact {
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
        info!(network = %self.network, signers = funded, "EVM exact ready");
        Ok(Ok(()))
    }
}
