//! ABI of the Permit2 contracts the facilitator calls, and the calldata of a settlement
//! (digest §4.6 "Settle", §10.2.1): `settle` / `settleWithPermit` on the x402 proxies, the reads
//! of the diagnosis, Permit2's nonce bitmap, and the revert selectors the contracts answer with.

use alloy::primitives::{Address, Bytes, U256};
use alloy::rpc::types::{Filter, Log};
use alloy::sol;
use alloy::sol_types::{SolCall, SolEvent};

use super::{Permit2Payment, Proxy};

sol! {
    struct TokenPermissions {
        address token;
        uint256 amount;
    }
    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }
    /// The EIP-2612 permit a gas-sponsored payer signed (field order as the proxies take it).
    struct EIP2612Permit {
        uint256 value;
        uint256 deadline;
        bytes32 r;
        bytes32 s;
        uint8 v;
    }
    struct ExactWitness {
        address to;
        uint256 validAfter;
    }
    struct UptoWitness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    interface IExactProxy {
        function settle(PermitTransferFrom permit, address owner, ExactWitness witness, bytes signature) external;
        function settleWithPermit(EIP2612Permit permit2612, PermitTransferFrom permit, address owner, ExactWitness witness, bytes signature) external;
    }

    interface IUptoProxy {
        function settle(PermitTransferFrom permit, uint256 amount, address owner, UptoWitness witness, bytes signature) external;
        function settleWithPermit(EIP2612Permit permit2612, PermitTransferFrom permit, uint256 amount, address owner, UptoWitness witness, bytes signature) external;
    }

    interface IProxy {
        function PERMIT2() external view returns (address);
        error InvalidAmount();
        error InvalidDestination();
        error InvalidOwner();
        error PaymentTooEarly();
        error Permit2612AmountMismatch();
        error AmountExceedsPermitted();
        error UnauthorizedFacilitator();
    }

    interface IPermit2 {
        function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
        event UnorderedNonceInvalidation(address indexed owner, uint256 word, uint256 mask);
        error SignatureExpired(uint256 signatureDeadline);
        error InvalidAmount(uint256 maxAmount);
        error InvalidNonce();
        error InvalidSignatureLength();
        error InvalidSignature();
        error InvalidSigner();
        error InvalidContractSignature();
    }

    interface IErc20 {
        function balanceOf(address account) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
    }

    interface IErc1271 {
        function isValidSignature(bytes32 hash, bytes signature) external view returns (bytes4);
    }
}

/// The proxy call that performs the payment: `settleWithPermit` when the payer sent an EIP-2612
/// permit (it approves Permit2 in the same transaction), `settle` otherwise. `upto` names the
/// charge; `exact` always moves the signed amount.
pub(super) fn settlement(p: &Permit2Payment) -> (Address, Bytes) {
    let a = &p.authorization;
    let permit = PermitTransferFrom {
        permitted: TokenPermissions {
            token: a.token,
            amount: a.amount,
        },
        nonce: a.nonce,
        deadline: a.deadline,
    };
    let permit2612 = p.permit2612.as_ref().map(|e| EIP2612Permit {
        value: e.value,
        deadline: e.deadline,
        r: e.r,
        s: e.s,
        v: e.v,
    });
    let signature = p.signature.clone();
    let data: Vec<u8> = match p.kind {
        Proxy::Exact => {
            let witness = ExactWitness {
                to: a.to,
                validAfter: a.valid_after,
            };
            match permit2612 {
                None => IExactProxy::settleCall {
                    permit,
                    owner: a.from,
                    witness,
                    signature,
                }
                .abi_encode(),
                Some(permit2612) => IExactProxy::settleWithPermitCall {
                    permit2612,
                    permit,
                    owner: a.from,
                    witness,
                    signature,
                }
                .abi_encode(),
            }
        }
        Proxy::Upto => {
            let witness = UptoWitness {
                to: a.to,
                facilitator: a.facilitator.unwrap_or_default(),
                validAfter: a.valid_after,
            };
            match permit2612 {
                None => IUptoProxy::settleCall {
                    permit,
                    amount: p.charge,
                    owner: a.from,
                    witness,
                    signature,
                }
                .abi_encode(),
                Some(permit2612) => IUptoProxy::settleWithPermitCall {
                    permit2612,
                    permit,
                    amount: p.charge,
                    owner: a.from,
                    witness,
                    signature,
                }
                .abi_encode(),
            }
        }
    };
    (p.contracts.proxy, data.into())
}

/// `nonceBitmap(owner, nonce >> 8)` on Permit2, and the bit of the nonce in its answer.
pub(super) fn nonce_word(p: &Permit2Payment) -> (Address, Bytes) {
    let a = &p.authorization;
    let data = IPermit2::nonceBitmapCall {
        owner: a.from,
        wordPos: a.nonce >> 8,
    }
    .abi_encode();
    (p.contracts.permit2, data.into())
}

pub(super) fn nonce_bit(nonce: U256) -> U256 {
    U256::from(1u8) << (nonce & U256::from(0xffu8)).to::<usize>()
}

/// Permit2's `UnorderedNonceInvalidation(owner, …)` logs: how a payer cancels unused nonces.
pub(super) fn invalidations(p: &Permit2Payment) -> Filter {
    Filter::new()
        .address(p.contracts.permit2)
        .event_signature(IPermit2::UnorderedNonceInvalidation::SIGNATURE_HASH)
        .topic1(p.authorization.from.into_word())
}

/// Whether an `UnorderedNonceInvalidation` log spends this payment's nonce.
pub(super) fn invalidates(p: &Permit2Payment, log: &Log) -> bool {
    let nonce = p.authorization.nonce;
    IPermit2::UnorderedNonceInvalidation::decode_log(&log.inner).is_ok_and(|e| {
        e.owner == p.authorization.from
            && e.word == nonce >> 8
            && e.mask & nonce_bit(nonce) != U256::ZERO
    })
}

/// Whether calldata carries this payment's Permit2 nonce as an ABI word: Permit2 logs nothing
/// of the nonce a transfer uses, so a transaction found by its `Transfer` must also carry the
/// random 256-bit nonce to be this payment (through a proxy or any contract calling one).
pub(super) fn carries_nonce(p: &Permit2Payment, input: &[u8]) -> bool {
    let word = p.authorization.nonce.to_be_bytes::<32>();
    input.windows(32).any(|w| w == word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_the_sdks() {
        assert_eq!(IExactProxy::settleCall::SELECTOR, [0x13, 0xcd, 0x3b, 0x53]);
        assert_eq!(
            IExactProxy::settleWithPermitCall::SELECTOR,
            [0xfa, 0x34, 0x03, 0x78]
        );
        assert_eq!(IUptoProxy::settleCall::SELECTOR, [0xff, 0x11, 0xe7, 0xb4]);
        assert_eq!(
            IUptoProxy::settleWithPermitCall::SELECTOR,
            [0x01, 0x6c, 0x17, 0x48]
        );
        assert_eq!(IProxy::PERMIT2Call::SELECTOR, [0x6a, 0xfd, 0xd8, 0x50]);
        assert_eq!(
            IPermit2::nonceBitmapCall::SELECTOR,
            [0x4f, 0xe0, 0x2b, 0x44]
        );
    }

    #[test]
    fn nonce_bits_are_the_low_byte() {
        assert_eq!(nonce_bit(U256::from(0)), U256::from(1));
        assert_eq!(nonce_bit(U256::from(7)), U256::from(128));
        assert_eq!(nonce_bit(U256::from(256 + 3)), U256::from(8));
        assert_eq!(nonce_bit(U256::MAX), U256::from(1u8) << 255);
    }
}
