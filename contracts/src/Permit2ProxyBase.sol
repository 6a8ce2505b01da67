// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// The part of Permit2's ABI the proxies call (see Permit2.sol).
interface ISignatureTransfer {
    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }

    struct SignatureTransferDetails {
        address to;
        uint256 requestedAmount;
    }

    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external;
}

interface IERC20Permit {
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external;
}

/// @title Permit2ProxyBase
/// @notice What the two x402 Permit2 proxies (X402ExactPermit2Proxy, X402UptoPermit2Proxy) share,
/// re-implemented for tests from the behaviour the x402 facilitators rely on:
/// - `PERMIT2()` names the canonical Permit2; it is a constant, not an immutable, because the
///   tests place the runtime code at the SDK's proxy addresses with `anvil_setCode`, where no
///   constructor runs (the production contracts set it in their constructor);
/// - `_settle` checks, in this order: amount ≠ 0 (`InvalidAmount()`), owner ≠ 0
///   (`InvalidOwner()`), destination ≠ 0 (`InvalidDestination()`), `block.timestamp ≥ validAfter`
///   (`PaymentTooEarly()`), then calls `permitWitnessTransferFrom` with the witness hash: the
///   payee is bound by the payer's signature over the witness, so nobody can redirect the funds;
///   the deadline is Permit2's to check;
/// - `_executePermit` (the EIP-2612 gas-sponsoring path) requires the 2612 value to equal the
///   permitted amount (`Permit2612AmountMismatch()`), then tries the token's `permit` to Permit2
///   and, if that fails, emits one of the `EIP2612PermitFailedWith…` events and carries on (an
///   existing allowance may still cover the transfer);
/// - a reentrancy guard on the entry points that reads an untouched slot (zero) as "not entered".
/// There is no owner, no admin and no upgrade path.
abstract contract Permit2ProxyBase {
    address public constant PERMIT2 = 0x000000000022D473030F116dDEE9F6B43aC78BA3;

    struct EIP2612Permit {
        uint256 value;
        uint256 deadline;
        bytes32 r;
        bytes32 s;
        uint8 v;
    }

    error InvalidAmount();
    error InvalidDestination();
    error InvalidOwner();
    error PaymentTooEarly();
    error Permit2612AmountMismatch();
    error ReentrancyGuardReentrantCall();
    /// Declared for ABI parity: the production constructor rejects a zero Permit2 with it; here
    /// `PERMIT2` is a constant, so it is never raised.
    error InvalidPermit2Address();

    event Settled();
    event SettledWithPermit();
    event EIP2612PermitFailedWithReason(address indexed token, address indexed owner, string reason);
    event EIP2612PermitFailedWithPanic(address indexed token, address indexed owner, uint256 errorCode);
    event EIP2612PermitFailedWithData(address indexed token, address indexed owner, bytes data);

    /// 0: not entered (the state of fresh storage), 1: inside an entry point.
    uint256 private _entered;

    modifier nonReentrant() {
        if (_entered == 1) revert ReentrancyGuardReentrantCall();
        _entered = 1;
        _;
        _entered = 0;
    }

    function _settle(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        address to,
        uint256 validAfter,
        bytes32 witnessHash,
        string memory witnessTypeString,
        bytes calldata signature
    ) internal {
        if (amount == 0) revert InvalidAmount();
        if (owner == address(0)) revert InvalidOwner();
        if (to == address(0)) revert InvalidDestination();
        if (block.timestamp < validAfter) revert PaymentTooEarly();
        ISignatureTransfer(PERMIT2).permitWitnessTransferFrom(
            permit,
            ISignatureTransfer.SignatureTransferDetails({to: to, requestedAmount: amount}),
            owner,
            witnessHash,
            witnessTypeString,
            signature
        );
    }

    function _executePermit(address token, address owner, EIP2612Permit calldata p, uint256 permittedAmount)
        internal
    {
        if (p.value != permittedAmount) revert Permit2612AmountMismatch();
        try IERC20Permit(token).permit(owner, PERMIT2, p.value, p.deadline, p.v, p.r, p.s) {}
        catch Error(string memory reason) {
            emit EIP2612PermitFailedWithReason(token, owner, reason);
        } catch Panic(uint256 errorCode) {
            emit EIP2612PermitFailedWithPanic(token, owner, errorCode);
        } catch (bytes memory data) {
            emit EIP2612PermitFailedWithData(token, owner, data);
        }
    }
}
