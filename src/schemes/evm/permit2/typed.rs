//! The EIP-712 message a Permit2 payer signs (digest §4.6; docs/schemes.md): a
//! `PermitWitnessTransferFrom` whose spender is the x402 proxy, in the domain
//! `{name: "Permit2", chainId, verifyingContract: Permit2}` (no version). The witness type is
//! the proxy's: `Witness(address to,uint256 validAfter)` for `exact`,
//! `Witness(address to,address facilitator,uint256 validAfter)` for `upto`.

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::{Eip712Domain, SolStruct};

use super::{Authorization, Proxy};

mod exact {
    alloy::sol! {
        struct TokenPermissions {
            address token;
            uint256 amount;
        }
        struct Witness {
            address to;
            uint256 validAfter;
        }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }
    }
}

mod upto {
    alloy::sol! {
        struct TokenPermissions {
            address token;
            uint256 amount;
        }
        struct Witness {
            address to;
            address facilitator;
            uint256 validAfter;
        }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }
    }
}

pub(super) fn domain(chain_id: u64, permit2: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some("Permit2".into()),
        None,
        Some(U256::from(chain_id)),
        Some(permit2),
        None,
    )
}

/// The digest the payer signed, as Permit2 recomputes it (with `msg.sender`, the proxy, as
/// spender: a signature for another spender never verifies on chain).
pub(super) fn signing_hash(
    kind: Proxy,
    a: &Authorization,
    chain_id: u64,
    permit2: Address,
) -> B256 {
    let domain = domain(chain_id, permit2);
    match kind {
        Proxy::Exact => exact::PermitWitnessTransferFrom {
            permitted: exact::TokenPermissions {
                token: a.token,
                amount: a.amount,
            },
            spender: a.spender,
            nonce: a.nonce,
            deadline: a.deadline,
            witness: exact::Witness {
                to: a.to,
                validAfter: a.valid_after,
            },
        }
        .eip712_signing_hash(&domain),
        Proxy::Upto => upto::PermitWitnessTransferFrom {
            permitted: upto::TokenPermissions {
                token: a.token,
                amount: a.amount,
            },
            spender: a.spender,
            nonce: a.nonce,
            deadline: a.deadline,
            witness: upto::Witness {
                to: a.to,
                facilitator: a.facilitator.unwrap_or_default(),
                validAfter: a.valid_after,
            },
        }
        .eip712_signing_hash(&domain),
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{address, b256, keccak256};

    use super::*;

    const PERMIT2: Address = address!("000000000022D473030F116dDEE9F6B43aC78BA3");

    #[test]
    fn types_and_domain_are_permit2s() {
        assert_eq!(
            domain(31337, PERMIT2).separator(),
            b256!("4d553c58ae79a6c4ba64f0e690a5d1cd2deff8c6b91cf38300e0f2b76f9ee346")
        );
        let exact_type = exact::PermitWitnessTransferFrom::eip712_encode_type();
        assert_eq!(
            keccak256(exact_type.as_bytes()),
            b256!("ebc156cd23678a74c94df13d772ef5478420637f0c94bd10d509e1dc98f521c7"),
            "{exact_type}"
        );
        let upto_type = upto::PermitWitnessTransferFrom::eip712_encode_type();
        assert_eq!(
            keccak256(upto_type.as_bytes()),
            b256!("51dff6974ad4388c499e7fcfe838d2bd767162553a144098ce20ea661d70c2ee"),
            "{upto_type}"
        );
        assert_eq!(
            keccak256(exact::Witness::eip712_encode_type().as_bytes()),
            b256!("d97b3239a7f32295517bd14cb074edfdd188dfe5eb42f802bb26d4fd1eb12c37")
        );
        assert_eq!(
            keccak256(upto::Witness::eip712_encode_type().as_bytes()),
            b256!("d4171c445a74218b01d4fd8af34ff1106580ea1e36ff837e64484bfaa2253b75")
        );
    }
}
