//! EVM schemes on `eip155:` networks: `exact` (EIP-3009 `transferWithAuthorization`, digest §4;
//! and Permit2 for tokens without EIP-3009, §4.6) and `upto` (Permit2, the seller settles what
//! was used up to the signed maximum, §4.7, §10.2.1; `upto.rs`). Each configured network is
//! opened once and shared by its schemes (`network.rs`: one nonce lane per key); the settle
//! machinery (`settle.rs`) serves every payment kind through [`onchain::OnChain`].
//!
//! `exact` answers v2 under the CAIP-2 id and v1 under the legacy name; it tells its two
//! payload kinds apart the way the SDK does, by the `permit2Authorization` key.

mod chain;
mod contracts;
mod keeper;
mod network;
mod onchain;
mod options;
pub mod payload;
pub mod permit2;
mod probe;
pub mod reason;
mod settle;
pub mod signature;
mod signers;
mod upto;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolValue;
use async_trait::async_trait;
use tracing::{info, warn};

use self::chain::RpcFailure;
pub use self::network::Networks;
use self::network::{EvmNetwork, Opened};
use self::onchain::{OnChain, Reasons, Transfer};
use self::permit2::{Contracts, Permit2Payment, Phase, Proxy};
use self::settle::Unprepared;
pub use self::upto::EvmUptoFactory;
use crate::config::NetworkSettings;
use crate::protocol::network::caip2_to_v1;
use crate::protocol::{PaymentRequest, SupportedKind};
use crate::scheme::{
    Broadcast, Built, Checked, Deadline, Description, Erased, Finality, Inclusion, NetworkProbe,
    RecordedTx, Rejection, Scheme, SchemeError, SchemeFactory, Signed, SignedView, SignerGate,
    Stop, TxStatus,
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

/// A checked EIP-3009 payment.
#[derive(Debug, Clone)]
pub struct Eip3009Payment {
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

/// A checked EVM payment of any kind: `exact` by EIP-3009 or by Permit2, or `upto` (a
/// [`Permit2Payment`] through the upto proxy). Every EVM handler of a network takes this one
/// type and can revive any EVM request, because ledger rows cross schemes: `exact` via Permit2
/// and `upto` share Permit2's replay domain, so a row one recorded may be met (and must be
/// judged) by a request of the other.
#[derive(Debug, Clone)]
pub enum EvmPayment {
    Eip3009(Eip3009Payment),
    Permit2(Permit2Payment),
}

impl OnChain for EvmPayment {
    fn call(&self, net: &EvmNetwork) -> (Address, Bytes) {
        match self {
            EvmPayment::Eip3009(p) => p.call(net),
            EvmPayment::Permit2(p) => p.call(net),
        }
    }
    fn sender(&self) -> Option<Address> {
        match self {
            EvmPayment::Eip3009(p) => p.sender(),
            EvmPayment::Permit2(p) => p.sender(),
        }
    }
    fn transfer(&self) -> Transfer {
        match self {
            EvmPayment::Eip3009(p) => p.transfer(),
            EvmPayment::Permit2(p) => p.transfer(),
        }
    }
    fn expires_at(&self) -> U256 {
        match self {
            EvmPayment::Eip3009(p) => p.expires_at(),
            EvmPayment::Permit2(p) => p.expires_at(),
        }
    }
    fn spent_query(&self, net: &EvmNetwork) -> (Address, Bytes) {
        match self {
            EvmPayment::Eip3009(p) => p.spent_query(net),
            EvmPayment::Permit2(p) => p.spent_query(net),
        }
    }
    fn is_spent(&self, answer: &[u8]) -> Option<bool> {
        match self {
            EvmPayment::Eip3009(p) => p.is_spent(answer),
            EvmPayment::Permit2(p) => p.is_spent(answer),
        }
    }
    fn executions(&self, net: &EvmNetwork) -> Filter {
        match self {
            EvmPayment::Eip3009(p) => p.executions(net),
            EvmPayment::Permit2(p) => p.executions(net),
        }
    }
    fn may_execute(&self, log: &Log) -> bool {
        match self {
            EvmPayment::Eip3009(p) => p.may_execute(log),
            EvmPayment::Permit2(p) => p.may_execute(log),
        }
    }
    fn needs_calldata(&self) -> bool {
        match self {
            EvmPayment::Eip3009(p) => p.needs_calldata(),
            EvmPayment::Permit2(p) => p.needs_calldata(),
        }
    }
    fn executed_in(&self, input: &[u8]) -> bool {
        match self {
            EvmPayment::Eip3009(p) => p.executed_in(input),
            EvmPayment::Permit2(p) => p.executed_in(input),
        }
    }
    fn cancellations(&self, net: &EvmNetwork) -> Filter {
        match self {
            EvmPayment::Eip3009(p) => p.cancellations(net),
            EvmPayment::Permit2(p) => p.cancellations(net),
        }
    }
    fn cancels(&self, log: &Log) -> bool {
        match self {
            EvmPayment::Eip3009(p) => p.cancels(log),
            EvmPayment::Permit2(p) => p.cancels(log),
        }
    }
    fn reasons(&self) -> &'static Reasons {
        match self {
            EvmPayment::Eip3009(p) => p.reasons(),
            EvmPayment::Permit2(p) => p.reasons(),
        }
    }
    fn refused(&self, failure: &RpcFailure) -> Rejection {
        match self {
            EvmPayment::Eip3009(p) => p.refused(failure),
            EvmPayment::Permit2(p) => p.refused(failure),
        }
    }
}

fn map_checked<P, Q>(c: Checked<P>, f: impl FnOnce(P) -> Q) -> Checked<Q> {
    Checked {
        meta: c.meta,
        payment: f(c.payment),
    }
}

/// The payload kind, as the SDK tells it (`isPermit2Payload`): the key alone decides. Permit2
/// is v2 only; a v1 request with it is refused by the EIP-3009 parser.
fn is_permit2(request: &PaymentRequest) -> bool {
    request.x402_version() == 2
        && request
            .scheme_payload()
            .contains_key("permit2Authorization")
}

/// Permit2 and the proxy of `kind` on a network.
fn contracts(net: &EvmNetwork, kind: Proxy) -> Contracts {
    Contracts {
        permit2: net.options.permit2,
        proxy: match kind {
            Proxy::Exact => net.options.exact_permit2_proxy,
            Proxy::Upto => net.options.upto_permit2_proxy,
        },
    }
}

/// What a handler serves on its network.
enum Role {
    Exact {
        v1_name: Option<&'static str>,
        /// Whether Permit2 and the exact proxy had code at start-up (then
        /// `eip2612GasSponsoring` is advertised; the proxy is checked per payment anyway).
        permit2_ready: bool,
    },
    Upto {
        /// The key advertised as `extra.facilitatorAddress`.
        facilitator: Address,
    },
}

/// One EVM scheme on one network: `exact` or `upto` (`upto.rs`), over the network's shared
/// connection and keys.
pub struct EvmHandler {
    net: Arc<EvmNetwork>,
    role: Role,
}

impl EvmHandler {
    async fn checked(
        &self,
        request: &PaymentRequest,
        phase: Phase,
        deadline: Deadline,
    ) -> Result<Checked<EvmPayment>, Stop> {
        let net = &self.net;
        let checked = match self.role {
            Role::Upto { .. } => {
                let c = contracts(net, Proxy::Upto);
                permit2::check(net, c, Proxy::Upto, request, phase, deadline).await?
            }
            Role::Exact { .. } if is_permit2(request) => {
                let c = contracts(net, Proxy::Exact);
                permit2::check(net, c, Proxy::Exact, request, phase, deadline).await?
            }
            Role::Exact { .. } => {
                let checked = verify::check(net, request, deadline).await?;
                return Ok(map_checked(checked, EvmPayment::Eip3009));
            }
        };
        Ok(map_checked(checked, EvmPayment::Permit2))
    }
}

#[async_trait]
impl Scheme for EvmHandler {
    type Payment = EvmPayment;
    type Signed = settle::SignedTx;

    fn describe(&self) -> Description {
        let network = &self.net.network;
        let (kinds, extensions) = match &self.role {
            Role::Exact {
                v1_name,
                permit2_ready,
            } => {
                let mut kinds = vec![SupportedKind {
                    x402_version: 2,
                    scheme: SCHEME.into(),
                    network: network.to_string(),
                    extra: None,
                }];
                if let Some(name) = v1_name {
                    kinds.push(SupportedKind {
                        x402_version: 1,
                        scheme: SCHEME.into(),
                        network: (*name).into(),
                        extra: None,
                    });
                }
                let extensions = if *permit2_ready {
                    vec![permit2::eip2612::EXTENSION.to_string()]
                } else {
                    Vec::new()
                };
                (kinds, extensions)
            }
            Role::Upto { facilitator } => (
                vec![upto::kind(network, *facilitator)],
                vec![permit2::eip2612::EXTENSION.to_string()],
            ),
        };
        Description {
            kinds,
            signers: self.net.signer_entries(),
            lease_keys: self.net.lease_keys(),
            extensions,
        }
    }

    async fn check(
        &self,
        request: &PaymentRequest,
        deadline: Deadline,
    ) -> Result<Checked<EvmPayment>, Stop> {
        self.checked(request, Phase::Verify, deadline).await
    }

    async fn check_settle(
        &self,
        request: &PaymentRequest,
        deadline: Deadline,
    ) -> Result<Checked<EvmPayment>, Stop> {
        self.checked(request, Phase::Settle, deadline).await
    }

    /// Any EVM request of this network, whichever scheme recorded it (see [`EvmPayment`]).
    fn revive(&self, request: &PaymentRequest) -> Result<Checked<EvmPayment>, Rejection> {
        let net = &self.net;
        let kind = if request.scheme() == upto::SCHEME {
            Proxy::Upto
        } else if is_permit2(request) {
            Proxy::Exact
        } else {
            return Ok(map_checked(
                verify::revive(net, request)?,
                EvmPayment::Eip3009,
            ));
        };
        let checked = permit2::revive(net, contracts(net, kind), kind, request)?;
        Ok(map_checked(checked, EvmPayment::Permit2))
    }

    async fn simulate(&self, payment: &EvmPayment, deadline: Deadline) -> Result<(), Stop> {
        match payment {
            EvmPayment::Eip3009(p) => verify::simulate(&self.net, p, deadline).await,
            EvmPayment::Permit2(p) => permit2::simulate(&self.net, p, deadline).await,
        }
    }

    async fn prepare(
        &self,
        payment: &EvmPayment,
        deadline: Deadline,
    ) -> Result<Signed<settle::SignedTx>, Stop> {
        match settle::prepare(&self.net, payment, deadline).await {
            Ok(signed) => Ok(signed),
            Err(Unprepared::Stop(stop)) => Err(stop),
            Err(Unprepared::Reverted(failure)) => {
                let rejection = match payment {
                    EvmPayment::Eip3009(p) => {
                        let text = failure.revert_text().unwrap_or_else(|| failure.message());
                        verify::diagnose(&self.net, p, &text, deadline).await?
                    }
                    EvmPayment::Permit2(p) => {
                        permit2::diagnose(&self.net, p, &failure, deadline).await?
                    }
                };
                Err(rejection.into())
            }
        }
    }

    async fn broadcast(
        &self,
        payment: &EvmPayment,
        signed: &SignedView<'_, settle::SignedTx>,
        deadline: Deadline,
    ) -> Result<Broadcast, SchemeError> {
        settle::broadcast(&self.net, payment, signed, deadline).await
    }

    async fn await_outcome(
        &self,
        payment: &EvmPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<TxStatus, SchemeError> {
        settle::await_outcome(&self.net, payment, txs, deadline).await
    }

    async fn reconcile(
        &self,
        payment: &EvmPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<TxStatus, SchemeError> {
        settle::reconcile(&self.net, payment, txs, deadline).await
    }

    async fn examine(
        &self,
        payment: &EvmPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<Option<TxStatus>, SchemeError> {
        settle::examine(&self.net, payment, txs, deadline).await
    }

    async fn replace(
        &self,
        payment: &EvmPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<Option<Signed<settle::SignedTx>>, SchemeError> {
        settle::replace(&self.net, payment, txs, deadline).await
    }

    async fn finality(
        &self,
        inclusion: &Inclusion,
        deadline: Deadline,
    ) -> Result<Finality, SchemeError> {
        settle::finality(&self.net, inclusion, deadline).await
    }

    async fn discard(&self, signed: &SignedView<'_, settle::SignedTx>) {
        settle::discard(&self.net, signed).await;
    }

    async fn signed_hash(
        &self,
        signer: &str,
        hash: [u8; 32],
        signature: &[u8],
        deadline: Deadline,
    ) -> Result<Option<bool>, SchemeError> {
        let Some(signer) = payload::parse_address(signer) else {
            return Ok(None);
        };
        signature::signed_by(
            &self.net.chain,
            self.net.options.multicall3,
            signer,
            hash.into(),
            signature,
            deadline,
        )
        .await
        .map(Some)
    }

    /// Any key of the network will do here; a payment that must be sent from one key names
    /// its lease in `PaymentMeta::sender`, which the core checks itself.
    fn can_sign(&self) -> bool {
        let net = &self.net;
        net.signers
            .addresses()
            .any(|a| net.gate.fence(&net.lease_key(a)).is_some())
    }

    /// (valid after, valid before) in unix seconds: EIP-3009's `validAfter`/`validBefore`,
    /// Permit2's `witness.validAfter`/`deadline`.
    fn authorization_window(&self, payment: &EvmPayment) -> Option<(u64, u64)> {
        let (after, before) = match payment {
            EvmPayment::Eip3009(p) => (p.authorization.valid_after, p.authorization.valid_before),
            EvmPayment::Permit2(p) => (p.authorization.valid_after, p.authorization.deadline),
        };
        Some((after.saturating_to(), before.saturating_to()))
    }

    async fn probe(&self, deadline: Deadline) -> NetworkProbe {
        probe::probe(&self.net, deadline).await
    }
}

/// Offline validation shared by the EVM factories.
fn validate_network(slug: &str, settings: &NetworkSettings) -> Result<(), String> {
    let (_, options, pool) = network::configured(slug, settings)?;
    if let Some(chosen) = options.upto_facilitator
        && pool.index_of(chosen).is_none()
    {
        return Err(format!(
            "networks.{slug}.upto_facilitator {chosen} is not one of the network's signer keys"
        ));
    }
    Ok(())
}

/// Whether Permit2 and a proxy are in place at start-up: `Ok(())`, or why not (for the log).
/// Both need code, and the proxy must name the configured Permit2 (its `PERMIT2()`), or no
/// payment signed for this network's addresses could ever settle. An RPC that does not answer
/// only warns: the addresses are checked on every payment too.
async fn contracts_ready(net: &EvmNetwork, c: Contracts, what: &str) -> Result<(), String> {
    let deadline = Deadline::after(Duration::from_secs(5));
    let code = |address: Address| net.chain.has_code(deadline, address);
    let (permit2, proxy) = tokio::join!(code(c.permit2), code(c.proxy));
    let (permit2, proxy) = match (permit2, proxy) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            warn!(network = %net.network, error = %e.message(), "cannot check the Permit2 contracts at start-up");
            return Ok(());
        }
    };
    if !permit2 {
        return Err(format!("no contract at the Permit2 address {}", c.permit2));
    }
    if !proxy {
        return Err(format!(
            "no contract at the {what} proxy address {}",
            c.proxy
        ));
    }
    let named = net
        .chain
        .eth_call(deadline, c.proxy, permit2::proxy_permit2_call())
        .await;
    match named.map(|out| Address::abi_decode(&out)) {
        Ok(Ok(named)) if named == c.permit2 => Ok(()),
        Ok(Ok(named)) => Err(format!(
            "the {what} proxy {} uses Permit2 {named}, not the configured {}",
            c.proxy, c.permit2
        )),
        Ok(Err(_)) | Err(RpcFailure::Node(_)) => Err(format!(
            "the contract at {} does not answer PERMIT2(): not an x402 {what} proxy",
            c.proxy
        )),
        Err(e) => {
            warn!(network = %net.network, error = %e.message(), "cannot check the Permit2 proxy at start-up");
            Ok(())
        }
    }
}

/// Builds the `exact` [`EvmHandler`]s of `eip155:` networks.
pub struct EvmExactFactory {
    networks: Networks,
}

impl EvmExactFactory {
    pub fn new(networks: Networks) -> Self {
        EvmExactFactory { networks }
    }
}

#[async_trait]
impl SchemeFactory for EvmExactFactory {
    fn namespace(&self) -> &'static str {
        "eip155"
    }

    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn validate(&self, slug: &str, settings: &NetworkSettings) -> Result<(), String> {
        validate_network(slug, settings)
    }

    async fn build(
        &self,
        slug: &str,
        settings: &NetworkSettings,
        gate: Arc<dyn SignerGate>,
    ) -> Result<Built, String> {
        let net = match self.networks.open(slug, settings, gate).await? {
            Opened::Ready(net) => net,
            Opened::NotServed(why) => return Ok(Built::NotServed(why)),
        };
        let permit2_ready = match contracts_ready(&net, contracts(&net, Proxy::Exact), "exact")
            .await
        {
            Ok(()) => true,
            Err(why) => {
                warn!(network = %net.network, "exact via Permit2 unavailable (EIP-3009 still served): {why}");
                false
            }
        };
        info!(network = %net.network, permit2 = permit2_ready, "EVM exact ready");
        let v1_name = if settings.v1 {
            caip2_to_v1(&net.network)
        } else {
            None
        };
        let handler = EvmHandler {
            net,
            role: Role::Exact {
                v1_name,
                permit2_ready,
            },
        };
        Ok(Built::Serving(Arc::new(Erased(handler))))
    }
}
