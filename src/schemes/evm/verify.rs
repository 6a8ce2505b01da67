//! EVM `exact` verification: the checks of digest §4.4 in the order the installed `@x402/evm`
//! 2.27 runs them, then one `eth_call` simulation, and on its failure a diagnosis that names the
//! specific cause.
//!
//! Cost: a valid EOA payment needs exactly one RPC round trip (the simulation); an EOA signature
//! that does not recover is rejected without an `eth_call` (one cached `eth_getCode` tells it
//! from a contract wallet).

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolCall, SolEvent, SolValue};
use serde_json::Value;

use super::chain::RpcFailure;
use super::contracts::{IEip3009, IMulticall3};
use super::network::EvmNetwork;
use super::onchain::{OnChain, Reasons, Transfer};
use super::payload::{self, PayloadError, parse_address, parse_decimal};
use super::signature::{self, SignatureKind};
use super::{Eip3009Payment, SCHEME, SignatureRoute, reason};
use crate::protocol::{PaymentRequest, reason as generic};
use crate::scheme::{Checked, Deadline, PaymentMeta, Rejection, SchemeError, Stop};

/// `validBefore` must leave this many seconds for the transaction to land (digest §4.4 step 6).
const EXPIRY_BUFFER_SECS: u64 = 6;

/// What the request says, parsed and statically checked (digest §4.4 steps 1–3), with no chain
/// access and no clock: shared by `check` and by `revive`.
struct Parsed {
    payment: Eip3009Payment,
    deployment: Option<payload::Deployment>,
}

fn parse(h: &EvmNetwork, req: &PaymentRequest) -> Result<Parsed, Rejection> {
    let no = |reason: &str, message: String| Err(Rejection::new(reason).with_message(message));
    if req.payload_scheme() != SCHEME || req.scheme() != SCHEME {
        return no(reason::SCHEME, format!("scheme must be `{SCHEME}`"));
    }
    let extra = req.extra();
    let text = |key: &str| {
        extra
            .and_then(|e| e.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (Some(domain_name), Some(domain_version)) = (text("name"), text("version")) else {
        return no(
            reason::MISSING_EIP712_DOMAIN,
            "requirements.extra.name and extra.version are required".into(),
        );
    };
    if req.payload_network() != req.network() {
        return no(
            reason::NETWORK_MISMATCH,
            format!(
                "paid on {}, required {}",
                req.payload_network(),
                req.network()
            ),
        );
    }
    let (Some(asset), Some(pay_to), Some(amount)) = (
        parse_address(req.asset()),
        parse_address(req.pay_to()),
        parse_decimal(req.amount()),
    ) else {
        return no(
            generic::INVALID_PAYMENT_REQUIREMENTS,
            "asset, payTo or amount is malformed".into(),
        );
    };
    let parsed = match payload::parse(req.scheme_payload()) {
        Ok(p) => p,
        Err(PayloadError::UnsupportedType(m)) => return no(reason::UNSUPPORTED_PAYLOAD_TYPE, m),
        Err(PayloadError::Malformed(m)) => return no(generic::INVALID_PAYLOAD, m),
    };
    // Until the signature is classified, assume what its shape suggests.
    let route = match &parsed.deployment {
        Some(d) => SignatureRoute::Counterfactual(d.clone()),
        None if parsed.signature.len() == 65 => SignatureRoute::Eoa,
        None => SignatureRoute::ContractWallet,
    };
    let fingerprint = fingerprint(h.chain_id, asset, pay_to, amount, &parsed);
    Ok(Parsed {
        deployment: parsed.deployment,
        payment: Eip3009Payment {
            x402_version: req.x402_version(),
            asset,
            pay_to,
            amount,
            authorization: parsed.authorization,
            signature: parsed.signature,
            route,
            domain_name,
            domain_version,
            fingerprint,
        },
    })
}

/// What makes two requests the same payment, from parsed values, so that encodings do not
/// matter (a value as a number or a string, leading zeros, address or hex case, `v` as 0/1 or
/// 27/28): the chain, the asset, the payee and amount, the authorization, the signature and
/// any ERC-6492 deployment.
fn fingerprint(
    chain_id: u64,
    asset: Address,
    pay_to: Address,
    amount: U256,
    parsed: &payload::ParsedPayload,
) -> String {
    use sha2::{Digest, Sha256};
    let a = &parsed.authorization;
    let signature = signature::with_v_27_28(&parsed.signature);
    let deployment = parsed
        .deployment
        .as_ref()
        .map(|d| {
            format!(
                "{:#x}:{}",
                d.factory,
                alloy::primitives::hex::encode(&d.calldata)
            )
        })
        .unwrap_or_default();
    let terms = format!(
        "evm-exact|{chain_id}|{asset:#x}|{pay_to:#x}|{amount}|{:#x}|{:#x}|{}|{}|{}|{:#x}|{}|{deployment}",
        a.from,
        a.to,
        a.value,
        a.valid_after,
        a.valid_before,
        a.nonce,
        alloy::primitives::hex::encode(&signature),
    );
    alloy::primitives::hex::encode(Sha256::digest(terms.as_bytes()))
}

fn checked(h: &EvmNetwork, p: Eip3009Payment) -> Checked<Eip3009Payment> {
    let a = &p.authorization;
    Checked {
        meta: PaymentMeta {
            network: h.network.clone(),
            payer: a.from.to_checksum(None),
            replay_key: format!("{}/{:#x}/{:#x}/{}", h.network, p.asset, a.from, a.nonce)
                .to_ascii_lowercase(),
            replay_reason: reason::NONCE_ALREADY_USED,
            pay_to: p.pay_to.to_checksum(None),
            asset: p.asset.to_checksum(None),
            amount: p.amount.to_string(),
            fingerprint: p.fingerprint.clone(),
            exclusive_key: None,
            max_amount: None,
            sender: None,
        },
        payment: p,
    }
}

/// A stored request as a payment, for reconciling its recorded transaction.
pub(super) fn revive(
    h: &EvmNetwork,
    req: &PaymentRequest,
) -> Result<Checked<Eip3009Payment>, Rejection> {
    parse(h, req).map(|parsed| checked(h, parsed.payment))
}

/// Every check of digest §4.4 but the simulation, in the SDK's order.
pub(super) async fn check(
    h: &EvmNetwork,
    req: &PaymentRequest,
    deadline: Deadline,
) -> Result<Checked<Eip3009Payment>, Stop> {
    let Parsed {
        mut payment,
        deployment,
    } = parse(h, req)?;
    let payer = payment.authorization.from.to_checksum(None);
    // Operator policy belongs to the check, not to parsing: a stored payment is reconciled
    // even if the allow-list changed since.
    if let Some(allowed) = &h.options.assets
        && !allowed.contains(&payment.asset)
    {
        return Err(Rejection::new(generic::INVALID_PAYMENT_REQUIREMENTS)
            .with_message(format!("asset {} is not accepted here", payment.asset))
            .with_payer(payer)
            .into());
    }
    check_parsed(h, &mut payment, deployment.as_ref(), deadline)
        .await
        .map_err(|stop| stop.with_payer(&payer))?;
    Ok(checked(h, payment))
}

async fn check_parsed(
    h: &EvmNetwork,
    payment: &mut Eip3009Payment,
    deployment: Option<&payload::Deployment>,
    deadline: Deadline,
) -> Result<(), Stop> {
    let auth = payment.authorization.clone();
    let hash = payload::signing_hash(
        &auth,
        &payment.domain_name,
        &payment.domain_version,
        h.chain_id,
        payment.asset,
    );
    payment.route =
        classify_signature(h, &auth, &payment.signature, deployment, hash, deadline).await?;
    if auth.to != payment.pay_to {
        return Err(Rejection::new(reason::RECIPIENT_MISMATCH)
            .with_message(format!("authorization pays {}", auth.to))
            .into());
    }
    let now = U256::from(unix_now());
    if auth.valid_before < now + U256::from(EXPIRY_BUFFER_SECS) {
        return Err(Rejection::new(reason::VALID_BEFORE)
            .with_message("authorization expired or expires within 6 s")
            .into());
    }
    if auth.valid_after > now {
        return Err(Rejection::new(reason::VALID_AFTER)
            .with_message("authorization is not valid yet")
            .into());
    }
    if auth.value != payment.amount {
        let reason = if payment.x402_version == 1 {
            reason::VALUE_MISMATCH_V1
        } else {
            reason::VALUE_MISMATCH
        };
        return Err(Rejection::new(reason)
            .with_message(format!(
                "authorization value {} ≠ required {}",
                auth.value, payment.amount
            ))
            .into());
    }
    if !h
        .chain
        .has_code(deadline, payment.asset)
        .await
        .map_err(rpc)?
    {
        return Err(Rejection::new(reason::ASSET_NOT_DEPLOYED)
            .with_message(format!("no contract at {}", payment.asset))
            .into());
    }
    Ok(())
}

/// Decides how the token will check the signature, rejecting what cannot pass (digest §4.4
/// step 4 and its newer-upstream strict form). The kinds are told apart by
/// [`signature::classify`], shared with sessions; the policy here is the payment's.
async fn classify_signature(
    h: &EvmNetwork,
    auth: &payload::Authorization,
    sig: &Bytes,
    deployment: Option<&payload::Deployment>,
    hash: B256,
    deadline: Deadline,
) -> Result<SignatureRoute, Stop> {
    let kind = signature::classify(&h.chain, auth.from, hash, sig, deployment, deadline)
        .await
        .map_err(rpc)?;
    match kind {
        SignatureKind::Counterfactual(deployment) => {
            if !h.options.factories.contains(&deployment.factory) {
                return Err(Rejection::new(reason::FACTORY_NOT_ALLOWED)
                    .with_message(format!(
                        "ERC-6492 factory {} is not allow-listed",
                        deployment.factory
                    ))
                    .into());
            }
            Ok(SignatureRoute::Counterfactual(deployment))
        }
        SignatureKind::Eoa { high_s: true } => Err(Rejection::new(reason::SIGNATURE)
            .with_message("signature s is in the upper half")
            .into()),
        SignatureKind::Eoa { high_s: false } => Ok(SignatureRoute::Eoa),
        SignatureKind::ContractWallet => Ok(SignatureRoute::ContractWallet),
        SignatureKind::Unrecognised { long: false } => Err(Rejection::new(reason::SIGNATURE)
            .with_message("signature does not recover to authorization.from")
            .into()),
        SignatureKind::Unrecognised { long: true } => Err(Rejection::new(
            reason::UNDEPLOYED_SMART_WALLET,
        )
        .with_message(
            "smart-wallet signature, but the payer has no code and no ERC-6492 deployment data",
        )
        .into()),
    }
}

/// The call that performs the payment: the token directly, or Multicall3 deploying the payer's
/// wallet first (atomic, so a failed transfer leaves nothing half done).
pub(super) fn settlement_call(h: &EvmNetwork, p: &Eip3009Payment) -> (Address, Bytes) {
    let a = &p.authorization;
    // 65-byte signatures use the (v,r,s) overload every EIP-3009 token has; others need the
    // bytes overload (FiatToken ≥ 2.2), as does the inner signature of a wallet being deployed.
    let vrs = p.signature.len() == 65 && !matches!(p.route, SignatureRoute::Counterfactual(_));
    let transfer: Bytes = if vrs {
        let (r, s, v) = split_vrs(&p.signature);
        IEip3009::transferWithAuthorization_0Call {
            from: a.from,
            to: a.to,
            value: a.value,
            validAfter: a.valid_after,
            validBefore: a.valid_before,
            nonce: a.nonce,
            v,
            r,
            s,
        }
        .abi_encode()
        .into()
    } else {
        IEip3009::transferWithAuthorization_1Call {
            from: a.from,
            to: a.to,
            value: a.value,
            validAfter: a.valid_after,
            validBefore: a.valid_before,
            nonce: a.nonce,
            signature: p.signature.clone(),
        }
        .abi_encode()
        .into()
    };
    match &p.route {
        SignatureRoute::Counterfactual(d) => {
            let calls = vec![
                IMulticall3::Call3 {
                    target: d.factory,
                    allowFailure: true,
                    callData: d.calldata.clone(),
                },
                IMulticall3::Call3 {
                    target: p.asset,
                    allowFailure: false,
                    callData: transfer,
                },
            ];
            (
                h.options.multicall3,
                IMulticall3::aggregate3Call { calls }.abi_encode().into(),
            )
        }
        _ => (p.asset, transfer),
    }
}

/// `r`, `s` and `v` (27/28) of a 65-byte `r‖s‖v` signature.
fn split_vrs(sig: &Bytes) -> (B256, B256, u8) {
    let r = B256::from_slice(&sig[0..32]);
    let s = B256::from_slice(&sig[32..64]);
    let v = sig[64];
    (r, s, if v < 27 { v + 27 } else { v })
}

/// Runs the payment with `eth_call`; a rejection says why it would fail.
pub(super) async fn simulate(
    h: &EvmNetwork,
    p: &Eip3009Payment,
    deadline: Deadline,
) -> Result<(), Stop> {
    let (to, data) = settlement_call(h, p);
    let payer = p.authorization.from.to_checksum(None);
    match h.chain.eth_call(deadline, to, data).await {
        Ok(out) => {
            if let SignatureRoute::Counterfactual(_) = p.route {
                let results =
                    IMulticall3::aggregate3Call::abi_decode_returns(&out).map_err(|e| {
                        SchemeError::Internal(format!(
                            "Multicall3 at {} answered unreadably: {e}",
                            h.options.multicall3
                        ))
                    })?;
                if results.get(1).map(|r| r.success) != Some(true) {
                    let text = results
                        .get(1)
                        .and_then(|r| alloy::sol_types::decode_revert_reason(&r.returnData))
                        .unwrap_or_else(|| "transfer reverted".into());
                    return Err(diagnose(h, p, &text, deadline)
                        .await?
                        .with_payer(payer)
                        .into());
                }
            }
            Ok(())
        }
        Err(failure @ RpcFailure::Node(_)) => {
            let text = failure.revert_text().unwrap_or_else(|| failure.message());
            Err(diagnose(h, p, &text, deadline)
                .await?
                .with_payer(payer)
                .into())
        }
        Err(transport) => Err(rpc(transport).into()),
    }
}

/// Names the cause of a failed simulation: one round of reads, mapped in the priority of
/// digest §4.4 step 10, with the raw revert text as the message.
pub(super) async fn diagnose(
    h: &EvmNetwork,
    p: &Eip3009Payment,
    revert: &str,
    deadline: Deadline,
) -> Result<Rejection, SchemeError> {
    let a = &p.authorization;
    let read = |data: Vec<u8>| h.chain.eth_call(deadline, p.asset, data.into());
    let (state, name, version, balance) = tokio::join!(
        read(
            IEip3009::authorizationStateCall {
                authorizer: a.from,
                nonce: a.nonce
            }
            .abi_encode()
        ),
        read(IEip3009::nameCall {}.abi_encode()),
        read(IEip3009::versionCall {}.abi_encode()),
        read(IEip3009::balanceOfCall { account: a.from }.abi_encode()),
    );
    let transport = [&state, &name, &version, &balance]
        .into_iter()
        .find_map(|r| match r {
            // No verdict from the node (no answer, or trouble of its own): a fault of ours,
            // never a reason blamed on the payer (review L1).
            Err(RpcFailure::Transport(m) | RpcFailure::Unreachable(m)) => Some(m.clone()),
            _ => None,
        });
    if let Some(m) = transport {
        return Err(SchemeError::Rpc(m));
    }
    let decode_string =
        |r: &Result<Bytes, RpcFailure>| r.as_ref().ok().and_then(|b| String::abi_decode(b).ok());
    let rejection = |reason: &str| Rejection::new(reason).with_message(revert.to_string());
    match state.as_ref().ok().and_then(|b| bool::abi_decode(b).ok()) {
        None => return Ok(rejection(reason::EIP3009_NOT_SUPPORTED)),
        Some(true) => return Ok(rejection(reason::NONCE_ALREADY_USED)),
        Some(false) => {}
    }
    if decode_string(&name).is_some_and(|n| n != p.domain_name) {
        return Ok(rejection(reason::TOKEN_NAME_MISMATCH));
    }
    if decode_string(&version).is_some_and(|v| v != p.domain_version) {
        return Ok(rejection(reason::TOKEN_VERSION_MISMATCH));
    }
    if balance
        .as_ref()
        .ok()
        .and_then(|b| U256::abi_decode(b).ok())
        .is_some_and(|b| b < p.amount)
    {
        return Ok(rejection(reason::INSUFFICIENT_BALANCE));
    }
    let mapped = reason::from_revert(revert);
    Ok(rejection(if mapped == reason::TRANSACTION_FAILED {
        reason::SIMULATION_FAILED
    } else {
        mapped
    }))
}

/// The EIP-3009 reasons of the settle machinery (digest §4.5).
static EIP3009_REASONS: Reasons = Reasons {
    reverted: reason::TRANSACTION_FAILED,
    spent: reason::NONCE_ALREADY_USED,
    expired: reason::VALID_BEFORE,
    no_transfer: reason::TRANSFER_EVENT_MISMATCH,
    unrunnable: reason::SIMULATION_FAILED,
};

impl OnChain for Eip3009Payment {
    fn call(&self, net: &EvmNetwork) -> (Address, Bytes) {
        settlement_call(net, self)
    }

    fn transfer(&self) -> Transfer {
        let a = &self.authorization;
        Transfer {
            asset: self.asset,
            from: a.from,
            to: a.to,
            value: a.value,
        }
    }

    fn expires_at(&self) -> U256 {
        self.authorization.valid_before
    }

    fn spent_query(&self, _net: &EvmNetwork) -> (Address, Bytes) {
        let a = &self.authorization;
        let data = IEip3009::authorizationStateCall {
            authorizer: a.from,
            nonce: a.nonce,
        }
        .abi_encode();
        (self.asset, data.into())
    }

    fn is_spent(&self, answer: &[u8]) -> Option<bool> {
        bool::abi_decode(answer).ok()
    }

    /// The token's `AuthorizationUsed(from, nonce)` names the transaction that used it.
    fn executions(&self, _net: &EvmNetwork) -> Filter {
        let a = &self.authorization;
        Filter::new()
            .address(self.asset)
            .event_signature(IEip3009::AuthorizationUsed::SIGNATURE_HASH)
            .topic1(a.from.into_word())
            .topic2(a.nonce)
    }

    /// `AuthorizationCanceled(from, nonce)`: the payer's `cancelAuthorization`.
    fn cancellations(&self, _net: &EvmNetwork) -> Filter {
        let a = &self.authorization;
        Filter::new()
            .address(self.asset)
            .event_signature(IEip3009::AuthorizationCanceled::SIGNATURE_HASH)
            .topic1(a.from.into_word())
            .topic2(a.nonce)
    }

    fn reasons(&self) -> &'static Reasons {
        &EIP3009_REASONS
    }

    fn refused(&self, failure: &RpcFailure) -> Rejection {
        let text = failure.revert_text().unwrap_or_else(|| failure.message());
        Rejection::new(reason::from_revert(&text)).with_message(text)
    }
}

pub(super) fn rpc(failure: RpcFailure) -> SchemeError {
    SchemeError::Rpc(failure.message())
}

/// Seconds since the unix epoch, as authorizations count time (0 for a clock before 1970).
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
