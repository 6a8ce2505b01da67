// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title SmartWallet
/// @notice Minimal EIP-1271 contract wallet controlled by one EOA, for tests of the
/// contract-signer path of EIP-3009 (and, deployed through WalletFactory, of ERC-6492).
/// `isValidSignature(hash, sig)` accepts iff `sig` is a 65-byte r||s||v ECDSA signature
/// of `hash` itself (no extra prefixing or wrapping) by `owner`, with low s and v 27 or 28.
/// `owner` lives in storage slot 0 (not an immutable), so the runtime code can also be
/// placed with anvil_setCode and the owner set with anvil_setStorageAt.
contract SmartWallet {
    bytes4 internal constant MAGIC_VALUE = 0x1626ba7e;
    bytes4 internal constant INVALID_VALUE = 0xffffffff;
    uint256 internal constant MAX_LOW_S = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    address public owner;

    event Executed(address indexed target, uint256 value, bytes data);

    constructor(address owner_) {
        owner = owner_;
    }

    receive() external payable {}

    /// EIP-1271: 0x1626ba7e when `signature` is the owner's signature of `hash`, else 0xffffffff.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != 65) {
            return INVALID_VALUE;
        }
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > MAX_LOW_S || (v != 27 && v != 28)) {
            return INVALID_VALUE;
        }
        address recovered = ecrecover(hash, v, r, s);
        if (recovered == address(0) || recovered != owner) {
            return INVALID_VALUE;
        }
        return MAGIC_VALUE;
    }

    /// Lets the owner make the wallet call anything; the callee's revert data is bubbled up.
    function execute(address target, uint256 value, bytes calldata data)
        external
        payable
        returns (bytes memory result)
    {
        require(msg.sender == owner, "SmartWallet: caller is not the owner");
        bool success;
        (success, result) = target.call{value: value}(data);
        if (!success) {
            assembly {
                revert(add(result, 0x20), mload(result))
            }
        }
        emit Executed(target, value, data);
    }
}
