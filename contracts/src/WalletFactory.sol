// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SmartWallet} from "./SmartWallet.sol";

/// @title WalletFactory
/// @notice CREATE2 factory of SmartWallets, used as the ERC-6492 factory in tests.
/// A counterfactual wallet's signature is wrapped as
///   abi.encode(address factory, bytes factoryCalldata, bytes innerSignature) ++ 0x6492...6492
/// (32 bytes of 0x6492 repeated), with factoryCalldata = abi.encodeCall(WalletFactory.deploy, (owner, salt)).
/// `deploy` is idempotent, so that calldata can be replayed safely once the wallet exists.
/// Wallet address = CREATE2(this, salt, keccak256(SmartWallet.creationCode ++ abi.encode(owner))).
contract WalletFactory {
    event WalletDeployed(address indexed wallet, address indexed owner, bytes32 indexed salt);

    /// Deploys the wallet of (`owner`, `salt`) unless it already exists; returns its address either way.
    function deploy(address owner, bytes32 salt) external returns (address wallet) {
        wallet = predict(owner, salt);
        if (wallet.code.length == 0) {
            address deployed = address(new SmartWallet{salt: salt}(owner));
            require(deployed == wallet, "WalletFactory: unexpected address");
            emit WalletDeployed(wallet, owner, salt);
        }
    }

    /// Address at which `deploy(owner, salt)` places (or has placed) the wallet.
    function predict(address owner, bytes32 salt) public view returns (address) {
        bytes32 initCodeHash = keccak256(abi.encodePacked(type(SmartWallet).creationCode, abi.encode(owner)));
        return address(uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), address(this), salt, initCodeHash)))));
    }
}
