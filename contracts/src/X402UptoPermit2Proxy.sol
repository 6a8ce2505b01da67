// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ISignatureTransfer, Permit2ProxyBase} from "./Permit2ProxyBase.sol";

/// @title X402UptoPermit2Proxy (test re-implementation)
/// @notice The x402 `upto` Permit2 proxy as the `@x402/evm` 2.27 facilitator calls it at
/// `0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002`: same ABI (`settle` 0xff11e7b4,
/// `settleWithPermit` 0x016c1748, `PERMIT2()`, `WITNESS_TYPEHASH()`, `WITNESS_TYPE_STRING()`,
/// errors and events) and the same semantics. The payer signs a maximum
/// (`permit.permitted.amount`) and names the one facilitator allowed to settle it in the witness
/// `Witness(address to,address facilitator,uint256 validAfter)`; the facilitator chooses the
/// amount actually moved. Checks before the shared ones of Permit2ProxyBase, in this order:
/// `amount > permitted.amount` → `AmountExceedsPermitted()`, `msg.sender ≠ witness.facilitator`
/// → `UnauthorizedFacilitator()`; an amount of 0 then fails the base's `InvalidAmount()`. With the
/// EIP-2612 permit, its value must equal the permitted maximum, not the amount moved.
contract X402UptoPermit2Proxy is Permit2ProxyBase {
    struct Witness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    error AmountExceedsPermitted();
    error UnauthorizedFacilitator();

    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)";
    /// 0xd4171c445a74218b01d4fd8af34ff1106580ea1e36ff837e64484bfaa2253b75
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,address facilitator,uint256 validAfter)");

    function settle(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _authorize(permit, amount, witness);
        _settleUpto(permit, amount, owner, witness, signature);
        emit Settled();
    }

    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _authorize(permit, amount, witness);
        _executePermit(permit.permitted.token, owner, permit2612, permit.permitted.amount);
        _settleUpto(permit, amount, owner, witness, signature);
        emit SettledWithPermit();
    }

    function _authorize(ISignatureTransfer.PermitTransferFrom calldata permit, uint256 amount, Witness calldata witness)
        private
        view
    {
        if (amount > permit.permitted.amount) revert AmountExceedsPermitted();
        if (msg.sender != witness.facilitator) revert UnauthorizedFacilitator();
    }

    function _settleUpto(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) private {
        bytes32 witnessHash =
            keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.facilitator, witness.validAfter));
        _settle(permit, amount, owner, witness.to, witness.validAfter, witnessHash, WITNESS_TYPE_STRING, signature);
    }
}
