//! Why a Permit2 payment would not go through, after a simulation (or a gas estimate) reverted
//! (digest §4.6 "Failure diagnosis"; docs/schemes.md).
//!
//! First the SDK's three reads, in its priority: the proxy's `PERMIT2()` (no answer:
//! `permit2_proxy_not_deployed`), the payer's balance (`permit2_insufficient_balance`) and
//! allowance to Permit2 (`permit2_allowance_required`), each against the amount to move. Where
//! the SDK then says only `permit2_simulation_failed`, the revert's own selector is decoded to
//! the reason the SDK's settle mapping gives it (a replayed nonce: `permit2_invalid_nonce`, a
//! wrong facilitator: `upto_unauthorized_facilitator`, …). The three reads run at once; a node
//! that does not answer is a fault of ours, never a reason blamed on the payer (review L1).

use alloy::primitives::{Address, U256};
use alloy::sol_types::{SolCall, SolError, SolValue};

use super::Permit2Payment;
use super::calls::{IErc20, IPermit2, IProxy};
use crate::scheme::{Deadline, Rejection, SchemeError};
use crate::schemes::evm::chain::RpcFailure;
use crate::schemes::evm::network::EvmNetwork;
use crate::schemes::evm::onchain::OnChain;
use crate::schemes::evm::reason;

/// The reason a revert's selector names, when it is one of the proxies' or Permit2's errors
/// (the SDK's `mapSettleError`, by selector instead of by message text).
pub(super) fn revert_reason(failure: &RpcFailure) -> Option<&'static str> {
    let data = failure.revert_data()?;
    let selector: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let known: &[([u8; 4], &str)] = &[
        (
            IProxy::Permit2612AmountMismatch::SELECTOR,
            reason::PERMIT2_2612_AMOUNT_MISMATCH,
        ),
        (
            IProxy::InvalidAmount::SELECTOR,
            reason::PERMIT2_INVALID_AMOUNT,
        ),
        (
            IPermit2::InvalidAmount::SELECTOR,
            reason::PERMIT2_INVALID_AMOUNT,
        ),
        (
            IProxy::InvalidDestination::SELECTOR,
            reason::PERMIT2_INVALID_DESTINATION,
        ),
        (
            IProxy::InvalidOwner::SELECTOR,
            reason::PERMIT2_INVALID_OWNER,
        ),
        (
            IProxy::PaymentTooEarly::SELECTOR,
            reason::PERMIT2_PAYMENT_TOO_EARLY,
        ),
        (
            IPermit2::SignatureExpired::SELECTOR,
            reason::PERMIT2_INVALID_SIGNATURE,
        ),
        (
            IPermit2::InvalidSignature::SELECTOR,
            reason::PERMIT2_INVALID_SIGNATURE,
        ),
        (
            IPermit2::InvalidSigner::SELECTOR,
            reason::PERMIT2_INVALID_SIGNATURE,
        ),
        (
            IPermit2::InvalidSignatureLength::SELECTOR,
            reason::PERMIT2_INVALID_SIGNATURE,
        ),
        (
            IPermit2::InvalidContractSignature::SELECTOR,
            reason::PERMIT2_INVALID_SIGNATURE,
        ),
        (
            IPermit2::InvalidNonce::SELECTOR,
            reason::PERMIT2_INVALID_NONCE,
        ),
        (
            IProxy::AmountExceedsPermitted::SELECTOR,
            reason::UPTO_AMOUNT_EXCEEDS_PERMITTED,
        ),
        (
            IProxy::UnauthorizedFacilitator::SELECTOR,
            reason::UPTO_UNAUTHORIZED_FACILITATOR,
        ),
    ];
    known
        .iter()
        .find(|(s, _)| *s == selector)
        .map(|(_, reason)| *reason)
}

fn message(failure: &RpcFailure) -> String {
    failure.revert_text().unwrap_or_else(|| failure.message())
}

/// Names the cause of a reverted simulation or estimate of `p` (module docs).
pub async fn diagnose(
    net: &EvmNetwork,
    p: &Permit2Payment,
    failure: &RpcFailure,
    deadline: Deadline,
) -> Result<Rejection, SchemeError> {
    let a = &p.authorization;
    let read = |to: Address, data: Vec<u8>| net.chain.eth_call(deadline, to, data.into());
    let (proxy, balance, allowance) = tokio::join!(
        read(p.contracts.proxy, IProxy::PERMIT2Call {}.abi_encode()),
        read(
            a.token,
            IErc20::balanceOfCall { account: a.from }.abi_encode()
        ),
        read(
            a.token,
            IErc20::allowanceCall {
                owner: a.from,
                spender: p.contracts.permit2,
            }
            .abi_encode()
        ),
    );
    for r in [&proxy, &balance, &allowance] {
        if let Err(RpcFailure::Transport(m) | RpcFailure::Unreachable(m)) = r {
            return Err(SchemeError::Rpc(m.clone()));
        }
    }
    let text = message(failure);
    let rejection = |why: &str| Rejection::new(why).with_message(text.clone());
    let proxy_answers = proxy
        .as_ref()
        .ok()
        .and_then(|b| Address::abi_decode(b).ok())
        .is_some();
    if !proxy_answers {
        return Ok(rejection(reason::PERMIT2_PROXY_NOT_DEPLOYED));
    }
    let below = |r: &Result<alloy::primitives::Bytes, RpcFailure>| {
        r.as_ref()
            .ok()
            .and_then(|b| U256::abi_decode(b).ok())
            .is_some_and(|v| v < p.charge)
    };
    if below(&balance) {
        return Ok(rejection(reason::PERMIT2_INSUFFICIENT_BALANCE));
    }
    if below(&allowance) {
        return Ok(rejection(reason::PERMIT2_ALLOWANCE_REQUIRED));
    }
    Ok(rejection(
        revert_reason(failure).unwrap_or(reason::PERMIT2_SIMULATION_FAILED),
    ))
}

/// A node refused the signed transaction with a revert (the estimate passed just before).
pub(super) fn refused(p: &Permit2Payment, failure: &RpcFailure) -> Rejection {
    let why = revert_reason(failure).unwrap_or(p.reasons().reverted);
    Rejection::new(why).with_message(message(failure))
}

#[cfg(test)]
mod tests {
    use alloy::rpc::json_rpc::ErrorPayload;
    use serde_json::value::RawValue;

    use super::*;

    fn reverted(selector: [u8; 4], args: &str) -> RpcFailure {
        let data = format!("\"0x{}{args}\"", alloy::primitives::hex::encode(selector));
        RpcFailure::Node(ErrorPayload {
            code: 3,
            message: "execution reverted".into(),
            data: RawValue::from_string(data).ok(),
        })
    }

    /// The revert of each contract error names the reason the SDK's settle mapping gives it,
    /// including those our checks stop before the chain (they stay right if a check is missed).
    #[test]
    fn every_contract_error_has_its_reason() {
        let word = "00".repeat(32);
        for (selector, args, reason) in [
            (
                IProxy::InvalidAmount::SELECTOR,
                "",
                reason::PERMIT2_INVALID_AMOUNT,
            ),
            (
                IPermit2::InvalidAmount::SELECTOR,
                word.as_str(),
                reason::PERMIT2_INVALID_AMOUNT,
            ),
            (
                IProxy::InvalidDestination::SELECTOR,
                "",
                reason::PERMIT2_INVALID_DESTINATION,
            ),
            (
                IProxy::InvalidOwner::SELECTOR,
                "",
                reason::PERMIT2_INVALID_OWNER,
            ),
            (
                IProxy::PaymentTooEarly::SELECTOR,
                "",
                reason::PERMIT2_PAYMENT_TOO_EARLY,
            ),
            (
                IProxy::Permit2612AmountMismatch::SELECTOR,
                "",
                reason::PERMIT2_2612_AMOUNT_MISMATCH,
            ),
            (
                IProxy::AmountExceedsPermitted::SELECTOR,
                "",
                reason::UPTO_AMOUNT_EXCEEDS_PERMITTED,
            ),
            (
                IProxy::UnauthorizedFacilitator::SELECTOR,
                "",
                reason::UPTO_UNAUTHORIZED_FACILITATOR,
            ),
            (
                IPermit2::InvalidNonce::SELECTOR,
                "",
                reason::PERMIT2_INVALID_NONCE,
            ),
            (
                IPermit2::SignatureExpired::SELECTOR,
                word.as_str(),
                reason::PERMIT2_INVALID_SIGNATURE,
            ),
            (
                IPermit2::InvalidSigner::SELECTOR,
                "",
                reason::PERMIT2_INVALID_SIGNATURE,
            ),
            (
                IPermit2::InvalidSignature::SELECTOR,
                "",
                reason::PERMIT2_INVALID_SIGNATURE,
            ),
            (
                IPermit2::InvalidSignatureLength::SELECTOR,
                "",
                reason::PERMIT2_INVALID_SIGNATURE,
            ),
            (
                IPermit2::InvalidContractSignature::SELECTOR,
                "",
                reason::PERMIT2_INVALID_SIGNATURE,
            ),
        ] {
            assert_eq!(
                revert_reason(&reverted(selector, args)),
                Some(reason),
                "{reason}"
            );
        }
        // An Error(string) revert ("TRANSFER_FROM_FAILED") is no contract error of ours.
        assert_eq!(
            revert_reason(&reverted([0x08, 0xc3, 0x79, 0xa0], &word)),
            None
        );
        assert_eq!(
            revert_reason(&RpcFailure::Transport("timed out".into())),
            None
        );
    }
}
