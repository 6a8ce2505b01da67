//! The signature kinds an EVM signer can produce, told apart the same way for payments and for
//! signed messages (sessions): an EOA's 65-byte ECDSA signature, a deployed contract wallet's
//! ERC-1271 signature, and an ERC-6492-wrapped signature of a wallet not deployed yet. Policy
//! (which factories, whether a high `s` is acceptable) stays with each caller.

use alloy::primitives::{Address, B256, Bytes, U256, uint};
use alloy::sol_types::SolCall;

use super::chain::{Chain, RpcFailure};
use super::contracts::{IErc1271, IMulticall3};
use super::payload::{self, Deployment};
use crate::scheme::{Deadline, SchemeError};

/// What `isValidSignature` returns for an accepted signature (ERC-1271).
pub(super) const ERC1271_MAGIC: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];

/// secp256k1 n / 2: tokens reject signatures with a larger `s` (EIP-2).
const SECP256K1N_HALF: U256 =
    uint!(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0_U256);

/// How `signer`'s signature over a hash can be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureKind {
    /// The signer has no code and an ERC-6492 wrapper says how to deploy it.
    Counterfactual(Deployment),
    /// 65 bytes that recover to the signer; `high_s` when `s` is in the upper half (EIP-2).
    Eoa { high_s: bool },
    /// The signer has code: only its ERC-1271 `isValidSignature` can say.
    ContractWallet,
    /// None of the above: an EOA signature by someone else, or a smart-wallet signature of an
    /// address with no code and no deployment data (`long`: more than 65 bytes).
    Unrecognised { long: bool },
}

/// Classifies `sig` (the ERC-6492 wrapper already removed, its deployment in `deployment`),
/// asking the chain for code only when the signature alone cannot decide.
pub async fn classify(
    chain: &Chain,
    signer: Address,
    hash: B256,
    sig: &[u8],
    deployment: Option<&Deployment>,
    deadline: Deadline,
) -> Result<SignatureKind, RpcFailure> {
    if let Some(deployment) = deployment
        && !chain.has_code(deadline, signer).await?
    {
        return Ok(SignatureKind::Counterfactual(deployment.clone()));
    }
    // A deployed wallet's ERC-6492 signature is checked as its inner signature (ERC-6492).
    if sig.len() == 65 && recover(hash, sig) == Some(signer) {
        let high_s = U256::from_be_slice(&sig[32..64]) > SECP256K1N_HALF;
        return Ok(SignatureKind::Eoa { high_s });
    }
    if chain.has_code(deadline, signer).await? {
        return Ok(SignatureKind::ContractWallet);
    }
    Ok(SignatureKind::Unrecognised {
        long: sig.len() > 65,
    })
}

/// `sig` as fingerprints see it: a 65-byte signature's `v` spelled 27/28, since 0/1 is the
/// same signature and must not make another payment of it.
pub(super) fn with_v_27_28(sig: &[u8]) -> Vec<u8> {
    let mut sig = sig.to_vec();
    if sig.len() == 65 && sig[64] < 27 {
        sig[64] += 27;
    }
    sig
}

/// The address that signed `hash` with the 65-byte `r‖s‖v` signature, by libsecp256k1.
pub fn recover(hash: B256, sig: &[u8]) -> Option<Address> {
    use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
    let v = sig.get(64).copied()?;
    let id = RecoveryId::try_from(i32::from(if v >= 27 { v - 27 } else { v })).ok()?;
    let rs: [u8; 64] = sig.get(..64)?.try_into().ok()?;
    let signature = RecoverableSignature::from_compact(&rs, id).ok()?;
    let message = secp256k1::Message::from_digest(hash.0);
    let key = signature.recover_ecdsa(message).ok()?;
    let uncompressed = key.serialize_uncompressed();
    Some(Address::from_slice(
        &alloy::primitives::keccak256(&uncompressed[1..])[12..],
    ))
}

/// Whether `signer` signed `hash` with `raw` (possibly ERC-6492 wrapped), whatever kind of
/// signer it is, with no factory allow-list: nothing is sent, so a counterfactual wallet is
/// deployed only inside an `eth_call` (as ERC-6492's reference validator and viem do), through
/// Multicall3 at `multicall3`. A revert or a non-magic answer is "not signed"; an RPC that gives
/// no verdict is a fault.
pub async fn signed_by(
    chain: &Chain,
    multicall3: Address,
    signer: Address,
    hash: B256,
    raw: &[u8],
    deadline: Deadline,
) -> Result<bool, SchemeError> {
    let Ok((sig, deployment)) = payload::unwrap_6492(Bytes::copy_from_slice(raw)) else {
        return Ok(false);
    };
    let rpc = |f: RpcFailure| SchemeError::Rpc(f.message());
    let kind = classify(chain, signer, hash, &sig, deployment.as_ref(), deadline)
        .await
        .map_err(rpc)?;
    let is_valid = IErc1271::isValidSignatureCall {
        hash,
        signature: sig.clone(),
    }
    .abi_encode();
    let answer = match kind {
        SignatureKind::Eoa { .. } => return Ok(true),
        SignatureKind::Unrecognised { .. } => return Ok(false),
        SignatureKind::ContractWallet => chain.eth_call(deadline, signer, is_valid.into()).await,
        SignatureKind::Counterfactual(d) => {
            let calls = vec![
                IMulticall3::Call3 {
                    target: d.factory,
                    allowFailure: true,
                    callData: d.calldata,
                },
                IMulticall3::Call3 {
                    target: signer,
                    allowFailure: true,
                    callData: is_valid.into(),
                },
            ];
            let data = IMulticall3::aggregate3Call { calls }.abi_encode();
            match chain.eth_call(deadline, multicall3, data.into()).await {
                Ok(out) => {
                    let results = IMulticall3::aggregate3Call::abi_decode_returns(&out)
                        .map_err(|e| SchemeError::Internal(format!("Multicall3 answer: {e}")))?;
                    match results.get(1) {
                        Some(r) if r.success => Ok(r.returnData.clone()),
                        _ => return Ok(false),
                    }
                }
                Err(e) => Err(e),
            }
        }
    };
    match answer {
        // A `bytes4` comes back left-aligned in a 32-byte word.
        Ok(out) => Ok(out.get(..4) == Some(&ERC1271_MAGIC[..])),
        Err(RpcFailure::Node(_)) => Ok(false),
        Err(transport) => Err(rpc(transport)),
    }
}

#[cfg(test)]
mod tests {
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;

    use super::*;

    #[test]
    fn recover_matches_alloy_and_rejects_garbage() {
        let key = PrivateKeySigner::from_bytes(&B256::repeat_byte(7)).expect("key");
        let hash = alloy::primitives::keccak256(b"x402");
        let sig = key.sign_hash_sync(&hash).expect("sign").as_bytes();
        assert_eq!(recover(hash, &sig), Some(key.address()));
        let mut parity = sig;
        parity[64] -= 27; // 0/1 form
        assert_eq!(recover(hash, &parity), Some(key.address()));
        let mut bad_v = sig;
        bad_v[64] = 29;
        assert_eq!(recover(hash, &bad_v), None);
        assert_ne!(
            recover(alloy::primitives::keccak256(b"other"), &sig),
            Some(key.address())
        );
        assert_eq!(recover(hash, &[0u8; 65]), None);
        assert_eq!(recover(hash, &sig[..64]), None);
    }
}
