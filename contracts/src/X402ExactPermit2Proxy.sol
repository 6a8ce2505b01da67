// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ISignatureTransfer, Permit2ProxyBase} from "./Permit2ProxyBase.sol";

/// @title X402ExactPermit2Proxy (test re-implementation)
/// @notice The x402 `exact` Permit2 proxy as the `@x402/evm` 2.27 facilitator calls it at
/// `0x402085c248EeA27D92E8b30b2C58ed07f9E20001`: same ABI (`settle` 0x13cd3b53,
/// `settleWithPermit` 0xfa340378, `PERMIT2()`, `WITNESS_TYPEHASH()`, `WITNESS_TYPE_STRING()`,
/// errors and events) and the same semantics: the witness is `Witness(address to,uint256
/// validAfter)`, the **full** permitted amount is always transferred, and anyone may submit
/// (there is no `msg.sender` check). See Permit2ProxyBase for the shared checks.
contract X402ExactPermit2Proxy is Permit2ProxyBase {
    struct Witness {
        address to;
        uint256 validAfter;
    }

    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)";
    /// 0xd97b3239a7f32295517bd14cb074edfdd188dfe5eb42f802bb26d4fd1eb12c37
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,uint256 validAfter)");

    function settle(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _settleExact(permit, owner, witness, signature);
        emit Settled();
    }

    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        ISignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _executePermit(permit.permitted.token, owner, permit2612, permit.permitted.amount);
        _settleExact(permit, owner, witness, signature);
        emit SettledWithPermit();
    }

    function _settleExact(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) private {
        bytes32 witnessHash = keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.validAfter));
        _settle(
            permit,
            permit.permitted.amount,
            owner,
            witness.to,
            witness.validAfter,
            witnessHash,
            WITNESS_TYPE_STRING,
            signature
        );
    }
}
