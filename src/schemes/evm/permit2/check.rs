//! The checks of a Permit2 payment, in the order the installed `@x402/evm` 2.27 runs them
//! (`verifyPermit2` for `exact`, `verifyUptoPermit2` for `upto`; digest §4.6, §10.2.1, with the
//! 2.27 corrections in docs/schemes.md), then the simulation.
//!
//! Order: (`upto`: the payload's type guard) → scheme → network → spender is the proxy →
//! `witness.to` is `payTo` → (`upto`: `witness.facilitator` is one of our keys) → `deadline ≥ now
//! + 6 s` → `validAfter ≤ now` → the signed amount equals `requirements.amount` (at an `upto`
//! settle the seller's charge instead, which may not exceed it) → the token is the asset → the
//! asset has code → the signature (strict: an EOA's 65-byte signature must recover to the payer,
//! a payer with code must answer EIP-1271; no ERC-6492 deployment) → the EIP-2612 extension →
//! the proxy has code. Cost for an EOA: cached `eth_getCode`s, then one `eth_call` at verify.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::SolCall;

use super::calls::IErc1271;
use super::payload::{self, ParseError};
use super::{Contracts, EXPIRY_BUFFER_SECS, Permit2Payment, Phase, Proxy, eip2612, typed};
use crate::protocol::{PaymentRequest, reason as generic};
use crate::scheme::{Checked, Deadline, PaymentMeta, Rejection, Stop};
use crate::schemes::evm::chain::RpcFailure;
use crate::schemes::evm::network::EvmNetwork;
use crate::schemes::evm::onchain::OnChain;
use crate::schemes::evm::payload::{Deployment, parse_address, parse_decimal};
use crate::schemes::evm::reason;
use crate::schemes::evm::signature::{ERC1271_MAGIC, recover, with_v_27_28};
use crate::schemes::evm::verify::{rpc, unix_now};

/// What the request says, parsed, with no chain access and no clock.
struct Parsed {
    payment: Permit2Payment,
    /// `requirements.amount`.
    required: U256,
    pay_to: Address,
    asset: Address,
    deployment: Option<Deployment>,
}

impl Parsed {
    fn terms(&self) -> Terms {
        Terms {
            pay_to: self.pay_to,
            asset: self.asset,
            required: self.required,
        }
    }
}

fn parse(
    net: &EvmNetwork,
    contracts: Contracts,
    kind: Proxy,
    req: &PaymentRequest,
) -> Result<Parsed, Rejection> {
    let raw_payer = payload::raw_from(req.scheme_payload());
    let no = |why: &str, message: String| {
        let r = Rejection::new(why).with_message(message);
        Err(match &raw_payer {
            Some(payer) => r.with_payer(payer.clone()),
            None => r,
        })
    };
    let parsed = payload::parse(req.scheme_payload(), kind);
    if kind == Proxy::Upto
        && let Err(ParseError::Unsupported(m)) = &parsed
    {
        // The SDK answers this one with an empty payer.
        return Err(Rejection::new(reason::UNSUPPORTED_PAYLOAD_TYPE).with_message(m.clone()));
    }
    let scheme = kind.scheme();
    if req.payload_scheme() != scheme || req.scheme() != scheme {
        let why = match kind {
            Proxy::Exact => reason::UNSUPPORTED_PAYLOAD_TYPE,
            Proxy::Upto => reason::UPTO_SCHEME,
        };
        return no(why, format!("scheme must be `{scheme}`"));
    }
    if req.x402_version() != 2 {
        return no(
            reason::UNSUPPORTED_PAYLOAD_TYPE,
            "Permit2 payments are x402 v2 only".into(),
        );
    }
    if req.payload_network() != req.network() {
        let why = match kind {
            Proxy::Exact => reason::NETWORK_MISMATCH,
            Proxy::Upto => reason::UPTO_NETWORK_MISMATCH,
        };
        return no(
            why,
            format!(
                "paid on {}, required {}",
                req.payload_network(),
                req.network()
            ),
        );
    }
    let (Some(asset), Some(pay_to), Some(required)) = (
        parse_address(req.asset()),
        parse_address(req.pay_to()),
        parse_decimal(req.amount()),
    ) else {
        return no(
            generic::INVALID_PAYMENT_REQUIREMENTS,
            "asset, payTo or amount is malformed".into(),
        );
    };
    if let Some(allowed) = &net.options.assets
        && !allowed.contains(&asset)
    {
        return no(
            generic::INVALID_PAYMENT_REQUIREMENTS,
            format!("asset {asset} is not accepted here"),
        );
    }
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(ParseError::Unsupported(m)) => return no(reason::UNSUPPORTED_PAYLOAD_TYPE, m),
        Err(ParseError::Malformed(m)) => return no(generic::INVALID_PAYLOAD, m),
    };
    let charge = match kind {
        Proxy::Exact => parsed.authorization.amount,
        Proxy::Upto => required,
    };
    Ok(Parsed {
        payment: Permit2Payment {
            kind,
            authorization: parsed.authorization,
            signature: parsed.signature,
            charge,
            permit2612: None,
            contracts,
        },
        required,
        pay_to,
        asset,
        deployment: parsed.deployment,
    })
}

fn checked(net: &EvmNetwork, p: Permit2Payment, parsed: &Terms) -> Checked<Permit2Payment> {
    let a = &p.authorization;
    Checked {
        meta: PaymentMeta {
            network: net.network.clone(),
            payer: a.from.to_checksum(None),
            // Permit2's own replay domain: one (owner, nonce) per chain, whatever the spender.
            replay_key: format!("{}/permit2/{:#x}/{}", net.network, a.from, a.nonce),
            replay_reason: reason::PERMIT2_INVALID_NONCE,
            pay_to: parsed.pay_to.to_checksum(None),
            asset: a.token.to_checksum(None),
            amount: p.charge.to_string(),
            fingerprint: fingerprint(net.chain_id, &p, parsed),
            exclusive_key: None,
            max_amount: (p.kind == Proxy::Upto).then(|| a.amount.to_string()),
            // The upto proxy takes the transaction only from the facilitator the witness names.
            sender: p.sender().map(|address| net.lease_key(address)),
        },
        payment: p,
    }
}

/// The seller's terms a payment is checked against (`requirements`), parsed.
struct Terms {
    pay_to: Address,
    asset: Address,
    /// `requirements.amount`: the price (`exact`), the maximum at verify and the charge at
    /// settle (`upto`).
    required: U256,
}

/// What makes two requests the same payment (`PaymentMeta::fingerprint`), from parsed values so
/// that encodings do not matter (decimal or hex numbers, address and hex case, `v` as 0/1 or
/// 27/28): the chain, the scheme, the seller's terms (for `upto` the charge, so another charge
/// for the same authorization is another payment), the signed authorization, its signature and
/// any EIP-2612 permit sent with it (which changes the transaction).
fn fingerprint(chain_id: u64, p: &Permit2Payment, terms: &Terms) -> String {
    use sha2::{Digest, Sha256};
    let a = &p.authorization;
    let signature = with_v_27_28(&p.signature);
    let permit = p
        .permit2612
        .as_ref()
        .map(|e| format!("{}:{}:{:#x}:{:#x}:{}", e.value, e.deadline, e.r, e.s, e.v))
        .unwrap_or_default();
    let facilitator = a.facilitator.map(|f| format!("{f:#x}")).unwrap_or_default();
    let line = format!(
        "evm-permit2-{}|{chain_id}|{:#x}|{:#x}|{}|{:#x}|{:#x}|{}|{:#x}|{}|{}|{:#x}|{facilitator}|{}|{}|{permit}",
        p.kind.scheme(),
        terms.asset,
        terms.pay_to,
        terms.required,
        a.from,
        a.token,
        a.amount,
        a.spender,
        a.nonce,
        a.deadline,
        a.to,
        a.valid_after,
        alloy::primitives::hex::encode(&signature),
    );
    alloy::primitives::hex::encode(Sha256::digest(line.as_bytes()))
}

/// A stored request as a payment, for reconciling its recorded transaction.
pub fn revive(
    net: &EvmNetwork,
    contracts: Contracts,
    kind: Proxy,
    req: &PaymentRequest,
) -> Result<Checked<Permit2Payment>, Rejection> {
    let parsed = parse(net, contracts, kind, req)?;
    let terms = parsed.terms();
    let mut payment = parsed.payment;
    // The permit the payment was settled with (its time checks are not repeated).
    let a = &payment.authorization;
    payment.permit2612 = eip2612::extract(req, a.from, a.token, contracts.permit2, 0)?;
    Ok(checked(net, payment, &terms))
}

/// Every check but the simulation, in the SDK's order (module docs).
pub async fn check(
    net: &EvmNetwork,
    contracts: Contracts,
    kind: Proxy,
    req: &PaymentRequest,
    phase: Phase,
    deadline: Deadline,
) -> Result<Checked<Permit2Payment>, Stop> {
    let mut parsed = parse(net, contracts, kind, req)?;
    let payer = parsed.payment.authorization.from.to_checksum(None);
    check_parsed(net, &mut parsed, req, phase, deadline)
        .await
        .map_err(|stop| stop.with_payer(&payer))?;
    let terms = parsed.terms();
    Ok(checked(net, parsed.payment, &terms))
}

fn refuse(why: &str, message: impl Into<String>) -> Result<(), Stop> {
    Err(Rejection::new(why).with_message(message).into())
}

async fn check_parsed(
    net: &EvmNetwork,
    parsed: &mut Parsed,
    req: &PaymentRequest,
    phase: Phase,
    deadline: Deadline,
) -> Result<(), Stop> {
    let p = &parsed.payment;
    let a = p.authorization.clone();
    if a.spender != p.contracts.proxy {
        return refuse(
            reason::PERMIT2_INVALID_SPENDER,
            format!(
                "the spender must be the x402 {} proxy {}, not {}",
                p.kind.scheme(),
                p.contracts.proxy,
                a.spender
            ),
        );
    }
    if a.to != parsed.pay_to {
        return refuse(
            reason::PERMIT2_RECIPIENT_MISMATCH,
            format!("the witness pays {}", a.to),
        );
    }
    if p.kind == Proxy::Upto
        && let Some(facilitator) = a.facilitator
        && net.signers.index_of(facilitator).is_none()
    {
        return refuse(
            reason::UPTO_FACILITATOR_MISMATCH,
            format!("witness.facilitator {facilitator} is not a key of this facilitator"),
        );
    }
    let now = unix_now();
    if a.deadline < U256::from(now + EXPIRY_BUFFER_SECS) {
        return refuse(
            reason::PERMIT2_DEADLINE_EXPIRED,
            "the permit expired or expires within 6 s",
        );
    }
    if a.valid_after > U256::from(now) {
        return refuse(
            reason::PERMIT2_NOT_YET_VALID,
            "witness.validAfter is in the future",
        );
    }
    // At an `upto` settle `requirements.amount` is the seller's charge, checked below.
    let signed_is_required = p.kind == Proxy::Exact || phase == Phase::Verify;
    if signed_is_required && a.amount != parsed.required {
        return refuse(
            reason::PERMIT2_AMOUNT_MISMATCH,
            format!(
                "permitted.amount {} ≠ required {}",
                a.amount, parsed.required
            ),
        );
    }
    if a.token != parsed.asset {
        return refuse(
            reason::PERMIT2_TOKEN_MISMATCH,
            format!(
                "permitted.token {} is not the asset {}",
                a.token, parsed.asset
            ),
        );
    }
    let digest = typed::signing_hash(p.kind, &a, net.chain_id, p.contracts.permit2);
    let (signature, asset_code) = tokio::join!(
        signature_ok(
            net,
            a.from,
            digest,
            &p.signature,
            parsed.deployment.is_some(),
            deadline
        ),
        net.chain.has_code(deadline, parsed.asset),
    );
    if !asset_code.map_err(rpc)? {
        return refuse(
            reason::ASSET_NOT_DEPLOYED,
            format!("no contract at {}", parsed.asset),
        );
    }
    if !signature? {
        return refuse(
            reason::PERMIT2_INVALID_SIGNATURE,
            "the signature is not the payer's over this Permit2 message",
        );
    }
    if p.kind == Proxy::Upto && p.charge > a.amount {
        return refuse(
            reason::UPTO_EXCEEDS_AMOUNT,
            format!(
                "the charge {} exceeds the signed maximum {}",
                p.charge, a.amount
            ),
        );
    }
    let permit2 = p.contracts.permit2;
    let proxy = p.contracts.proxy;
    parsed.payment.permit2612 = eip2612::extract(req, a.from, parsed.asset, permit2, now)?;
    if !net.chain.has_code(deadline, proxy).await.map_err(rpc)? {
        return refuse(
            reason::PERMIT2_PROXY_NOT_DEPLOYED,
            format!("no contract at the proxy address {proxy}"),
        );
    }
    Ok(())
}

/// The SDK's strict signature check (digest §0 of docs/schemes.md): a payer without code must
/// give exactly 65 bytes `r‖s‖v` (v 27/28, which is all Permit2's `ecrecover` takes) recovering
/// to it; a payer with code must answer EIP-1271's magic value. An ERC-6492 wrapped signature of
/// an undeployed wallet cannot be used: the Permit2 path does not deploy wallets.
async fn signature_ok(
    net: &EvmNetwork,
    from: Address,
    digest: B256,
    signature: &Bytes,
    counterfactual: bool,
    deadline: Deadline,
) -> Result<bool, Stop> {
    if !net.chain.has_code(deadline, from).await.map_err(rpc)? {
        if counterfactual {
            return Ok(false);
        }
        let eoa = signature.len() == 65
            && matches!(signature[64], 27 | 28)
            && recover(digest, signature) == Some(from);
        return Ok(eoa);
    }
    let data = IErc1271::isValidSignatureCall {
        hash: digest,
        signature: signature.clone(),
    }
    .abi_encode();
    match net.chain.eth_call(deadline, from, data.into()).await {
        Ok(answer) => Ok(answer.get(..4) == Some(&ERC1271_MAGIC[..])),
        Err(RpcFailure::Node(_)) => Ok(false),
        Err(transport) => Err(rpc(transport).into()),
    }
}

/// Runs the proxy call with `eth_call` from the key that would send it; a rejection says why
/// it would fail.
pub async fn simulate(
    net: &EvmNetwork,
    p: &Permit2Payment,
    deadline: Deadline,
) -> Result<(), Stop> {
    let (to, data) = p.call(net);
    let from = p.sender().or_else(|| net.signers.addresses().next());
    let payer = p.authorization.from.to_checksum(None);
    match net.chain.eth_call_from(deadline, from, to, data).await {
        Ok(_) => Ok(()),
        Err(failure @ RpcFailure::Node(_)) => Err(super::diagnose(net, p, &failure, deadline)
            .await?
            .with_payer(payer)
            .into()),
        Err(transport) => Err(rpc(transport).into()),
    }
}
