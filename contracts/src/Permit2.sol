// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

interface IERC1271 {
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4);
}

/// @title Permit2 (test re-implementation of the SignatureTransfer half)
/// @notice Our own implementation of the part of Uniswap's canonical Permit2 that x402 uses:
/// `permitWitnessTransferFrom` (and `permitTransferFrom`), unordered nonces
/// (`nonceBitmap`, `invalidateUnorderedNonces`) and `DOMAIN_SEPARATOR()`. Same ABI (function
/// selectors, custom errors and their selectors, event), same check order and the same
/// EIP-712 hashing as the canonical contract, so that payloads signed by the official SDK for
/// `0x000000000022D473030F116dDEE9F6B43aC78BA3` verify here and fail here for the same reasons:
///   1. `block.timestamp > deadline` → `SignatureExpired(deadline)` (equal is still valid);
///   2. `requestedAmount > permitted.amount` → `InvalidAmount(permitted.amount)`;
///   3. the nonce's bit is flipped in `nonceBitmap[owner][nonce >> 8]`; already set → `InvalidNonce()`
///      (one use per (owner, nonce), whatever the spender);
///   4. the signature over `keccak256(0x1901 ‖ DOMAIN_SEPARATOR() ‖ structHash)`, where the struct
///      hash names `msg.sender` as spender: an owner without code must give a 65-byte r‖s‖v or a
///      64-byte EIP-2098 signature (`InvalidSignatureLength()`), recovering to non-zero
///      (`InvalidSignature()`) and to the owner (`InvalidSigner()`), with no low-s rule; an owner
///      with code must answer EIP-1271 `0x1626ba7e` (`InvalidContractSignature()`);
///   5. `token.transferFrom(owner, to, requestedAmount)`, accepted when it succeeds and returns
///      nothing or `true` (solmate's SafeTransferLib), else `"TRANSFER_FROM_FAILED"`.
/// Only what the facilitator never touches is left out (the AllowanceTransfer half, batch
/// transfers). There are no immutables and the domain separator is computed on every call from
/// `block.chainid` and `address(this)`: the tests put the runtime code at the canonical address
/// with `anvil_setCode`, where no constructor runs.
contract Permit2 {
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

    error SignatureExpired(uint256 signatureDeadline);
    error InvalidAmount(uint256 maxAmount);
    error InvalidNonce();
    error InvalidSignatureLength();
    error InvalidSignature();
    error InvalidSigner();
    error InvalidContractSignature();

    event UnorderedNonceInvalidation(address indexed owner, uint256 word, uint256 mask);

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("Permit2");
    /// 0x618358ac3db8dc274f0cd8829da7e234bd48cd73c4a740aede1adec9846d06a1
    bytes32 private constant TOKEN_PERMISSIONS_TYPEHASH = keccak256("TokenPermissions(address token,uint256 amount)");
    bytes32 private constant PERMIT_TRANSFER_FROM_TYPEHASH = keccak256(
        "PermitTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline)TokenPermissions(address token,uint256 amount)"
    );
    /// The witness variant's type is this prefix followed by the caller's witness type string.
    string private constant WITNESS_TYPE_PREFIX =
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,";

    /// owner => word position (nonce >> 8) => bitmap of used nonces
    mapping(address => mapping(uint256 => uint256)) public nonceBitmap;

    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, block.chainid, address(this)));
    }

    function permitTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(PERMIT_TRANSFER_FROM_TYPEHASH, _tokenPermissionsHash(permit), msg.sender, permit.nonce, permit.deadline)
        );
        _transferSigned(permit, transferDetails, owner, structHash, signature);
    }

    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external {
        bytes32 typeHash = keccak256(abi.encodePacked(WITNESS_TYPE_PREFIX, witnessTypeString));
        bytes32 structHash = keccak256(
            abi.encode(typeHash, _tokenPermissionsHash(permit), msg.sender, permit.nonce, permit.deadline, witness)
        );
        _transferSigned(permit, transferDetails, owner, structHash, signature);
    }

    /// Marks the nonces in `mask` of word `wordPos` of the caller as used.
    function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external {
        nonceBitmap[msg.sender][wordPos] |= mask;
        emit UnorderedNonceInvalidation(msg.sender, wordPos, mask);
    }

    function _tokenPermissionsHash(PermitTransferFrom calldata permit) private pure returns (bytes32) {
        return keccak256(abi.encode(TOKEN_PERMISSIONS_TYPEHASH, permit.permitted.token, permit.permitted.amount));
    }

    function _transferSigned(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 structHash,
        bytes calldata signature
    ) private {
        if (block.timestamp > permit.deadline) revert SignatureExpired(permit.deadline);
        if (transferDetails.requestedAmount > permit.permitted.amount) revert InvalidAmount(permit.permitted.amount);
        _useUnorderedNonce(owner, permit.nonce);
        bytes32 digest = keccak256(abi.encodePacked(hex"1901", DOMAIN_SEPARATOR(), structHash));
        _checkSignature(signature, digest, owner);
        _safeTransferFrom(permit.permitted.token, owner, transferDetails.to, transferDetails.requestedAmount);
    }

    function _useUnorderedNonce(address owner, uint256 nonce) private {
        uint256 bit = 1 << (nonce & 0xff);
        uint256 flipped = nonceBitmap[owner][nonce >> 8] ^= bit;
        if (flipped & bit == 0) revert InvalidNonce();
    }

    function _checkSignature(bytes calldata signature, bytes32 digest, address claimedSigner) private view {
        if (claimedSigner.code.length > 0) {
            bytes4 answer = IERC1271(claimedSigner).isValidSignature(digest, signature);
            if (answer != IERC1271.isValidSignature.selector) revert InvalidContractSignature();
            return;
        }
        bytes32 r;
        bytes32 s;
        uint8 v;
        if (signature.length == 65) {
            r = bytes32(signature[0:32]);
            s = bytes32(signature[32:64]);
            v = uint8(signature[64]);
        } else if (signature.length == 64) {
            // EIP-2098: the top bit of the second word is the recovery parity.
            r = bytes32(signature[0:32]);
            bytes32 vs = bytes32(signature[32:64]);
            s = vs & bytes32(type(uint256).max >> 1);
            v = uint8(uint256(vs >> 255)) + 27;
        } else {
            revert InvalidSignatureLength();
        }
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert InvalidSignature();
        if (signer != claimedSigner) revert InvalidSigner();
    }

    function _safeTransferFrom(address token, address from, address to, uint256 amount) private {
        (bool ok, bytes memory data) = token.call(abi.encodeWithSignature("transferFrom(address,address,uint256)", from, to, amount));
        require(ok && (data.length == 0 || abi.decode(data, (bool))), "TRANSFER_FROM_FAILED");
    }
}
