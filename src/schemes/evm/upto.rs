//! EVM `upto` (digest §4.7, §10.2.1; docs/schemes.md): the payer signs a Permit2 authorization
//! for a maximum, naming one facilitator key in the witness; the seller settles what was used.
//!
//! `/verify` requires `requirements.amount` to equal the signed maximum and simulates moving all
//! of it; `/settle` carries the seller's actual charge in `requirements.amount`: at most the
//! maximum (`invalid_upto_evm_payload_settlement_exceeds_amount` otherwise), `0` settles with no
//! transaction (the core records it; see `PaymentMeta::moves_nothing`), anything else is sent
//! through the upto proxy, which only accepts it from the key named in `witness.facilitator`.
//! So settles of a payment are sent from that key, never from a turn of the pool, on its one
//! nonce lane and under its lease. `/supported` advertises one key per network
//! (`extra.facilitatorAddress`): `upto_facilitator`, or the network's first key. Payments naming
//! another of our keys are accepted too and sent from that key.

use std::sync::Arc;

use alloy::primitives::Address;
use async_trait::async_trait;
use serde_json::json;
use tracing::info;

use super::network::{Networks, Opened};
use super::permit2::Proxy;
use super::{EvmHandler, Role, contracts, contracts_ready, validate_network};
use crate::config::NetworkSettings;
use crate::protocol::{NetworkId, SupportedKind};
use crate::scheme::{Built, Erased, SchemeFactory, SignerGate};

pub const SCHEME: &str = "upto";

/// The `/supported` kind: v2 only, with the advertised key (the seller's SDK copies it into
/// `extra.facilitatorAddress`, and the buyer's signs it into the witness).
pub(super) fn kind(network: &NetworkId, facilitator: Address) -> SupportedKind {
    SupportedKind {
        x402_version: 2,
        scheme: SCHEME.into(),
        network: network.to_string(),
        extra: Some(json!({ "facilitatorAddress": facilitator.to_checksum(None) })),
    }
}

/// Builds the `upto` [`EvmHandler`]s of `eip155:` networks whose Permit2 and upto proxy are
/// deployed.
pub struct EvmUptoFactory {
    networks: Networks,
}

impl EvmUptoFactory {
    pub fn new(networks: Networks) -> Self {
        EvmUptoFactory { networks }
    }
}

#[async_trait]
impl SchemeFactory for EvmUptoFactory {
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
        let upto = contracts(&net, Proxy::Upto);
        if let Err(why) = contracts_ready(&net, upto, "upto").await {
            return Ok(Built::NotServed(format!(
                "{why} (set networks.{slug}.upto_permit2_proxy to where it is deployed)"
            )));
        }
        let Some(facilitator) = net
            .options
            .upto_facilitator
            .or_else(|| net.signers.addresses().next())
        else {
            return Ok(Built::NotServed("no signer key".into()));
        };
        if net.signers.index_of(facilitator).is_none() {
            return Err(format!(
                "networks.{slug}.upto_facilitator {facilitator} is not one of its signer keys"
            ));
        }
        info!(network = %net.network, %facilitator, proxy = %upto.proxy, "EVM upto ready");
        Ok(Built::Serving(Arc::new(Erased(EvmHandler {
            net,
            role: Role::Upto { facilitator },
        }))))
    }
}
