//! Solana (SVM) `exact`: SPL Token and Token-2022 `TransferChecked` payments that the facilitator
//! co-signs as fee payer (digest §5). One handler per configured `solana:` network, answering v2
//! under the CAIP-2 id and v1 under the legacy name.
//!
//! The building blocks are the official Anza crates (README "Solana crates"): addresses, keys,
//! signatures, messages and transactions, the ComputeBudget, Token, Token-2022, ATA and Memo
//! interfaces, and the RPC client with its request and response types. Ours is only what they
//! leave lenient or do not cover: [`wire`] (the strict decoding layer), [`instructions`] (exact
//! layouts, Lighthouse), [`mint`] (which extensions the fee payer sponsors), [`rpc`] (the
//! transport under the official client).

pub mod instructions;
pub mod keys;
mod mint;
mod probe;
pub mod reason;
mod rpc;
mod settle;
mod verify;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use solana_commitment_config::CommitmentConfig;
use tracing::{info, warn};

use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;

use self::instructions::TransferChecked;
use self::mint::{AccountCache, Extension};
use self::rpc::SolanaRpc;
use self::verify::SimulationCache;
use crate::config::NetworkSettings;
use crate::protocol::network::caip2_to_v1;
use crate::protocol::{NetworkId, PaymentRequest, SupportedKind};
use crate::scheme::{
    Broadcast, Built, Checked, Deadline, Description, Erased, Finality, Inclusion, NetworkProbe,
    RecordedTx, Rejection, Scheme, SchemeError, SchemeFactory, Signed, SignedView, SignerGate,
    Stop, TxStatus,
};

pub const SCHEME: &str = "exact";

/// A checked Solana payment: the plugin's `CheckedPayment::details`.
pub struct SvmPayment {
    pub tx: VersionedTransaction,
    /// Which of our fee payers the message names.
    pub fee_payer_index: usize,
    pub transfer: TransferChecked,
    /// The payment's replay key (the message hash), naming its simulation in the cache.
    pub replay_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    #[serde(default = "default_cu_limit")]
    max_compute_unit_limit: u32,
    #[serde(default = "default_cu_price")]
    max_compute_unit_price_microlamports: u64,
    #[serde(default = "default_priority_budget")]
    max_priority_fee_lamports: u64,
    #[serde(default = "default_poll")]
    confirm_poll_ms: u64,
    #[serde(default = "default_rpc_timeout")]
    rpc_timeout_ms: u64,
    #[serde(default)]
    lighthouse: LighthousePolicy,
    #[serde(default, deserialize_with = "names")]
    allow_mint_extensions: Vec<String>,
    #[serde(default, deserialize_with = "names")]
    assets: Vec<String>,
    #[serde(default = "default_mint_cache")]
    mint_cache_ttl_ms: u64,
    #[serde(default = "default_verify_cache")]
    verify_cache_ms: u64,
}

/// A list of names, or one comma-separated string (as an environment variable gives it).
fn names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Names::deserialize(d)? {
        Names::List(list) => list,
        Names::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// What Lighthouse instructions (wallet guards, digest §5.5) a payment may carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LighthousePolicy {
    /// Account assertions on the transfer's own accounts only (see `instructions::lighthouse`).
    #[default]
    Guards,
    /// None at all.
    Off,
}

fn default_cu_limit() -> u32 {
    200_000
}
/// 5 lamports per compute unit (digest §5.2 step 8).
fn default_cu_price() -> u64 {
    5_000_000
}
/// 5 lamports/CU at the SDK's 20 000 CU: anything a real client sends, and no more, so that
/// nobody can make the fee payer spend 0.001 SOL of priority fees on a 1-unit payment.
fn default_priority_budget() -> u64 {
    100_000
}
fn default_poll() -> u64 {
    400
}
fn default_rpc_timeout() -> u64 {
    5_000
}
/// Mint extensions change rarely (an authority's transaction); five minutes bounds both the
/// reads and how long a change goes unnoticed (simulation still sees the current state).
fn default_mint_cache() -> u64 {
    300_000
}
/// Long enough to absorb a client's `/verify` loop, short enough that a payment whose balance
/// changed is simulated again within seconds.
fn default_verify_cache() -> u64 {
    2_000
}

#[derive(Debug, Clone)]
pub struct SvmOptions {
    pub max_compute_unit_limit: u32,
    pub max_compute_unit_price: u64,
    /// Cap on price × limit, in lamports: the priority fee the fee payer may be made to pay.
    pub max_priority_fee: u64,
    pub confirm_poll: Duration,
    pub rpc_timeout: Duration,
    pub lighthouse: LighthousePolicy,
    /// Mint (and destination) extensions the fee payer sponsors anyway.
    pub allowed_extensions: Vec<Extension>,
    pub mint_cache_ttl: Duration,
    pub verify_cache: Duration,
    /// Mints accepted; empty: any (docs/solana.md §4.3: the allow-list is what stops self-dealing on a
    /// token of the attacker's making).
    pub assets: Vec<Pubkey>,
}

impl SvmOptions {
    fn parse(options: &Map<String, Value>) -> Result<Self, String> {
        let raw: RawOptions =
            serde_json::from_value(Value::Object(options.clone())).map_err(|e| e.to_string())?;
        if raw.confirm_poll_ms == 0 || raw.rpc_timeout_ms == 0 {
            return Err("confirm_poll_ms and rpc_timeout_ms must be positive".into());
        }
        let allowed_extensions = raw
            .allow_mint_extensions
            .iter()
            .map(|name| {
                Extension::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = Extension::ALL.iter().map(|e| e.name()).collect();
                    format!(
                        "allow_mint_extensions: unknown `{name}` (known: {})",
                        known.join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let assets = raw
            .assets
            .iter()
            .map(|a| {
                a.parse::<Pubkey>()
                    .map_err(|_| format!("assets: `{a}` is not a mint address"))
            })
            .collect::<Result<_, _>>()?;
        Ok(SvmOptions {
            assets,
            lighthouse: raw.lighthouse,
            allowed_extensions,
            mint_cache_ttl: Duration::from_millis(raw.mint_cache_ttl_ms),
            verify_cache: Duration::from_millis(raw.verify_cache_ms),
            max_compute_unit_limit: raw.max_compute_unit_limit,
            max_compute_unit_price: raw.max_compute_unit_price_microlamports,
            max_priority_fee: raw.max_priority_fee_lamports,
            confirm_poll: Duration::from_millis(raw.confirm_poll_ms),
            rpc_timeout: Duration::from_millis(raw.rpc_timeout_ms),
        })
    }
}

pub struct SvmExact {
    network: NetworkId,
    v1_name: Option<&'static str>,
    rpc: SolanaRpc,
    fee_payers: Vec<Keypair>,
    /// Their public keys, in the same order (checked against every instruction).
    fee_payer_keys: Vec<Pubkey>,
    options: SvmOptions,
    accounts: AccountCache,
    simulations: SimulationCache,
}

#[async_trait]
impl Scheme for SvmExact {
    type Payment = SvmPayment;
    type Signed = ();

    fn describe(&self) -> Description {
        let extra = self
            .fee_payers
            .first()
            .map(|k| json!({ "feePayer": k.pubkey().to_string() }));
        let mut kinds = vec![SupportedKind {
            x402_version: 2,
            scheme: SCHEME.into(),
            network: self.network.to_string(),
            extra: extra.clone(),
        }];
        if let Some(name) = self.v1_name {
            kinds.push(SupportedKind {
                x402_version: 1,
                scheme: SCHEME.into(),
                network: name.into(),
                extra,
            });
        }
        Description {
            kinds,
            signers: self
                .fee_payers
                .iter()
                .map(|k| (self.network.family_pattern(), k.pubkey().to_string()))
                .collect(),
            // Fee payers have no nonce lane, so they are not leased (see `Signed::lease`).
            lease_keys: Vec::new(),
            extensions: Vec::new(),
        }
    }

    async fn check(
        &self,
        request: &PaymentRequest,
        deadline: Deadline,
    ) -> Result<Checked<SvmPayment>, Stop> {
        verify::check(self, request, deadline).await
    }

    fn revive(&self, request: &PaymentRequest) -> Result<Checked<SvmPayment>, Rejection> {
        verify::revive(self, request)
    }

    async fn simulate(&self, payment: &SvmPayment, deadline: Deadline) -> Result<(), Stop> {
        verify::simulate(self, payment, deadline).await
    }

    async fn prepare(&self, payment: &SvmPayment, _deadline: Deadline) -> Result<Signed<()>, Stop> {
        Ok(settle::prepare(self, payment)?)
    }

    async fn broadcast(
        &self,
        _payment: &SvmPayment,
        signed: &SignedView<'_, ()>,
        deadline: Deadline,
    ) -> Result<Broadcast, SchemeError> {
        settle::broadcast(self, signed, deadline).await
    }

    async fn await_outcome(
        &self,
        payment: &SvmPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<TxStatus, SchemeError> {
        settle::await_outcome(self, payment, txs, deadline).await
    }

    async fn reconcile(
        &self,
        payment: &SvmPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<TxStatus, SchemeError> {
        settle::reconcile(self, payment, txs, deadline).await
    }

    async fn examine(
        &self,
        _payment: &SvmPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<Option<TxStatus>, SchemeError> {
        settle::examine(self, txs, deadline).await
    }

    async fn finality(
        &self,
        inclusion: &Inclusion,
        deadline: Deadline,
    ) -> Result<Finality, SchemeError> {
        settle::finality(self, inclusion, deadline).await
    }

    async fn probe(&self, deadline: Deadline) -> NetworkProbe {
        probe::probe(self, deadline).await
    }
}

/// Builds [`SvmExact`] handlers for `solana:` networks.
pub struct SvmExactFactory;

fn load_fee_payers(slug: &str, settings: &NetworkSettings) -> Result<Vec<Keypair>, String> {
    let keys = settings.load_signer_keys().map_err(|e| e.to_string())?;
    let mut out: Vec<Keypair> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let kp = keys::parse_keypair(key.expose()).map_err(|_| {
            format!(
                "networks.{slug}: fee payer key #{} is not a base58 or JSON-array keypair",
                i + 1
            )
        })?;
        if out.iter().any(|k| k.pubkey() == kp.pubkey()) {
            return Err(format!(
                "networks.{slug}: fee payer {} is configured twice",
                kp.pubkey()
            ));
        }
        out.push(kp);
    }
    Ok(out)
}

#[async_trait]
impl SchemeFactory for SvmExactFactory {
    fn namespace(&self) -> &'static str {
        "solana"
    }

    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn validate(&self, slug: &str, settings: &NetworkSettings) -> Result<(), String> {
        SvmOptions::parse(&settings.options).map_err(|e| format!("networks.{slug}: {e}"))?;
        load_fee_payers(slug, settings).map(|_| ())
    }

    async fn build(
        &self,
        slug: &str,
        settings: &NetworkSettings,
        _gate: Arc<dyn SignerGate>,
    ) -> Result<Built, String> {
        let network = settings.network_id().map_err(|e| e.to_string())?;
        let options =
            SvmOptions::parse(&settings.options).map_err(|e| format!("networks.{slug}: {e}"))?;
        let fee_payers = load_fee_payers(slug, settings)?;
        if fee_payers.is_empty() {
            return Ok(Built::NotServed(format!(
                "no fee payer key: set X402__NETWORKS__{}__SIGNER_KEYS or networks.{slug}.signer_key_file",
                slug.to_ascii_uppercase()
            )));
        }
        let rpc = SolanaRpc::new(&settings.rpc_urls, options.rpc_timeout)
            .map_err(|e| format!("networks.{slug}: {e}"))?;
        let handler = SvmExact {
            v1_name: if settings.v1 {
                caip2_to_v1(&network)
            } else {
                None
            },
            network,
            rpc,
            fee_payer_keys: fee_payers.iter().map(Signer::pubkey).collect(),
            fee_payers,
            accounts: AccountCache::new(options.mint_cache_ttl),
            simulations: SimulationCache::new(options.verify_cache),
            options,
        };
        match handler.probe(slug).await? {
            Ok(()) => Ok(Built::Serving(Arc::new(Erased(handler)))),
            Err(why) => Ok(Built::NotServed(why)),
        }
    }
}

impl SvmExact {
    /// The RPC must serve the configured cluster (its genesis hash is the CAIP-2 reference);
    /// fee payers with no lamports are not advertised. An unreachable RPC only warns.
    async fn probe(&self, slug: &str) -> Result<Result<(), String>, String> {
        let deadline = Deadline::after(Duration::from_secs(5));
        let genesis = self
            .rpc
            .read(deadline, |c| Box::pin(c.get_genesis_hash()))
            .await;
        let genesis = match genesis {
            Ok(hash) => hash.to_string(),
            Err(e) => {
                warn!(network = %self.network, error = %e.message(), "RPC unreachable at start-up; serving anyway");
                return Ok(Ok(()));
            }
        };
        let reference = self
            .network
            .as_str()
            .split_once(':')
            .map(|(_, r)| r)
            .unwrap_or_default();
        if !genesis.starts_with(reference) {
            return Err(format!(
                "networks.{slug}: the RPC serves genesis {genesis}, not {}",
                self.network
            ));
        }
        let mut funded = 0;
        for &key in &self.fee_payer_keys {
            let balance = self
                .rpc
                .read(deadline, |c| {
                    Box::pin(async move {
                        c.get_balance_with_commitment(&key, CommitmentConfig::confirmed())
                            .await
                            .map(|r| r.value)
                    })
                })
                .await;
            match balance {
                Ok(0) => {
                    warn!(network = %self.network, fee_payer = %key, "fee payer has no lamports")
                }
                Ok(_) => funded += 1,
                Err(e) => {
                    warn!(network = %self.network, error = %e.message(), "cannot read fee payer balances");
                    return Ok(Ok(()));
                }
            }
        }
        if funded == 0 {
            return Ok(Err("no fee payer has lamports to pay fees".into()));
        }
        info!(network = %self.network, fee_payers = funded, "Solana exact ready");
        Ok(Ok(()))
    }
}
