//! Really-signed EIP-3009 payments, built the way the official client builds them, with every
//! field open to tampering for the rejection tests.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolCall, SolStruct, SolValue};
use serde_json::{Value, json};

use super::chain::{Chain, TOKEN_NAME, TOKEN_VERSION};

sol! {
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
    function deploy(address owner, bytes32 salt) external returns (address);
}

/// 32 random bytes (EIP-3009 nonces, wallet salts).
pub fn random_b256() -> B256 {
    alloy::primitives::keccak256(uuid::Uuid::new_v4().as_bytes())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[derive(Clone)]
pub struct Payment {
    pub payer: PrivateKeySigner,
    /// `authorization.from`: the payer's address, or its smart wallet's.
    pub from: Address,
    pub x402_version: u8,
    pub network: String,
    pub chain_id: u64,
    pub asset: Address,
    pub pay_to: Address,
    pub amount: U256,
    pub value: U256,
    pub to: Address,
    pub valid_after: u64,
    pub valid_before: u64,
    pub nonce: B256,
    /// Domain the payer signs with, and what `extra` says (the same unless a test splits them).
    pub sign_name: String,
    pub sign_version: String,
    pub extra: Value,
    /// Set for ERC-6492 payments: the factory and the wallet's salt.
    pub counterfactual: Option<(Address, B256)>,
    /// `paymentPayload.extensions` (v2).
    pub extensions: Option<Value>,
}

impl Payment {
    /// A fresh payer paying 10 000 atomic units (0.01 USDC) to a fresh payee.
    pub fn new(chain: &Chain) -> Self {
        let payer = PrivateKeySigner::random();
        let amount = U256::from(10_000u64);
        let pay_to = PrivateKeySigner::random().address();
        Payment {
            from: payer.address(),
            payer,
            x402_version: 2,
            network: format!("eip155:{}", chain.chain_id),
            chain_id: chain.chain_id,
            asset: chain.token,
            pay_to,
            amount,
            value: amount,
            to: pay_to,
            valid_after: 0,
            valid_before: now() + 60,
            nonce: random_b256(),
            sign_name: TOKEN_NAME.into(),
            sign_version: TOKEN_VERSION.into(),
            extra: json!({ "name": TOKEN_NAME, "version": TOKEN_VERSION }),
            counterfactual: None,
            extensions: None,
        }
    }

    /// The same payment as a v1 request on `base-sepolia` (the chain must run with id 84532).
    pub fn v1(mut self) -> Self {
        assert_eq!(self.chain_id, 84532, "v1 tests run anvil as base-sepolia");
        self.x402_version = 1;
        self.network = "base-sepolia".into();
        self
    }

    pub fn hash(&self) -> B256 {
        let domain = Eip712Domain::new(
            Some(self.sign_name.clone().into()),
            Some(self.sign_version.clone().into()),
            Some(U256::from(self.chain_id)),
            Some(self.asset),
            None,
        );
        TransferWithAuthorization {
            from: self.from,
            to: self.to,
            value: self.value,
            validAfter: U256::from(self.valid_after),
            validBefore: U256::from(self.valid_before),
            nonce: self.nonce,
        }
        .eip712_signing_hash(&domain)
    }

    /// `r‖s‖v` by the payer key (for a smart wallet, its owner).
    pub fn signature(&self) -> Bytes {
        let sig = self.payer.sign_hash_sync(&self.hash()).expect("sign");
        let inner = Bytes::from(sig.as_bytes().to_vec());
        match self.counterfactual {
            None => inner,
            Some((factory, salt)) => {
                let calldata = deployCall {
                    owner: self.payer.address(),
                    salt,
                }
                .abi_encode();
                let mut wrapped = (factory, Bytes::from(calldata), inner).abi_encode_params();
                wrapped.extend_from_slice(&[0x64, 0x92].repeat(16));
                wrapped.into()
            }
        }
    }

    pub fn requirements(&self) -> Value {
        let mut r = json!({
            "scheme": "exact",
            "network": self.network,
            "asset": self.asset.to_checksum(None),
            "payTo": self.pay_to.to_checksum(None),
            "maxTimeoutSeconds": 60,
            "extra": self.extra,
        });
        if self.x402_version == 1 {
            r["maxAmountRequired"] = json!(self.amount.to_string());
            r["resource"] = json!("http://127.0.0.1/weather");
            r["description"] = json!("weather");
            r["mimeType"] = json!("application/json");
        } else {
            r["amount"] = json!(self.amount.to_string());
        }
        r
    }

    pub fn body_with_signature(&self, signature: &Bytes) -> Value {
        let payload = json!({
            "signature": signature.to_string(),
            "authorization": {
                "from": self.from.to_checksum(None),
                "to": self.to.to_checksum(None),
                "value": self.value.to_string(),
                "validAfter": self.valid_after.to_string(),
                "validBefore": self.valid_before.to_string(),
                "nonce": self.nonce.to_string(),
            }
        });
        let requirements = self.requirements();
        let payment_payload = if self.x402_version == 1 {
            json!({ "x402Version": 1, "scheme": "exact", "network": self.network, "payload": payload })
        } else {
            json!({
                "x402Version": 2,
                "resource": { "url": "http://127.0.0.1/weather", "description": "weather", "mimeType": "application/json" },
                "accepted": requirements,
                "payload": payload,
            })
        };
        let mut payment_payload = payment_payload;
        if let Some(ext) = &self.extensions {
            payment_payload["extensions"] = ext.clone();
        }
        json!({ "x402Version": self.x402_version, "paymentPayload": payment_payload, "paymentRequirements": requirements })
    }

    pub fn body(&self) -> Value {
        self.body_with_signature(&self.signature())
    }
}
