//! Really-signed Permit2 payments (`exact` with `assetTransferMethod: "permit2"`, and `upto`),
//! shaped like the official client's (tests/interop/sign-evm.mjs has the SDK sign the same
//! things), with every field open to tampering for the rejection tests, and EIP-2612 permits for
//! the gas-sponsoring extension.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{Eip712Domain, SolStruct};
use serde_json::{Value, json};

use super::chain::{
    Chain, EXACT_PROXY, PERMIT_TOKEN_NAME, PERMIT_TOKEN_VERSION, PERMIT2, UPTO_PROXY,
};
use super::payment::{now, random_b256};

mod exact {
    alloy::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct Witness { address to; uint256 validAfter; }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted; address spender; uint256 nonce; uint256 deadline; Witness witness;
        }
    }
}

mod upto {
    alloy::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct Witness { address to; address facilitator; uint256 validAfter; }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted; address spender; uint256 nonce; uint256 deadline; Witness witness;
        }
    }
}

alloy::sol! {
    struct Permit { address owner; address spender; uint256 value; uint256 nonce; uint256 deadline; }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exact,
    Upto,
}

#[derive(Clone)]
pub struct Permit2Payment {
    pub kind: Kind,
    pub payer: PrivateKeySigner,
    pub from: Address,
    pub network: String,
    pub chain_id: u64,
    /// `requirements.asset`
    pub asset: Address,
    pub pay_to: Address,
    /// `requirements.amount` (for upto at verify: the maximum)
    pub amount: U256,
    /// `permitted.token` / `permitted.amount`
    pub token: Address,
    pub permitted: U256,
    pub spender: Address,
    pub nonce: U256,
    pub deadline: u64,
    /// `witness.to`
    pub to: Address,
    /// `witness.facilitator` (upto)
    pub facilitator: Address,
    pub valid_after: u64,
    /// The EIP-712 `verifyingContract` the payer signs for.
    pub permit2: Address,
    pub scheme: String,
    pub accepted_scheme: String,
    pub extra: Value,
    pub extensions: Option<Value>,
    /// Sign with this key instead of the payer's (a forged signature).
    pub signer_override: Option<PrivateKeySigner>,
}

impl Permit2Payment {
    /// A fresh payer paying 2 500 units of the chain's Permit2-only token to a fresh payee;
    /// `facilitator` is the witness key (upto only).
    pub fn new(chain: &Chain, kind: Kind, facilitator: Address) -> Self {
        let payer = PrivateKeySigner::random();
        let pay_to = PrivateKeySigner::random().address();
        let amount = U256::from(2500u64);
        let scheme = match kind {
            Kind::Exact => "exact",
            Kind::Upto => "upto",
        };
        let mut extra = json!({
            "name": PERMIT_TOKEN_NAME,
            "version": PERMIT_TOKEN_VERSION,
            "assetTransferMethod": "permit2",
        });
        if kind == Kind::Upto {
            extra["facilitatorAddress"] = json!(facilitator.to_checksum(None));
        }
        Permit2Payment {
            kind,
            from: payer.address(),
            payer,
            network: format!("eip155:{}", chain.chain_id),
            chain_id: chain.chain_id,
            asset: chain.permit_token,
            pay_to,
            amount,
            token: chain.permit_token,
            permitted: amount,
            spender: match kind {
                Kind::Exact => EXACT_PROXY,
                Kind::Upto => UPTO_PROXY,
            },
            nonce: U256::from_be_bytes(random_b256().0),
            deadline: now() + 60,
            to: pay_to,
            facilitator,
            valid_after: 0,
            permit2: PERMIT2,
            scheme: scheme.into(),
            accepted_scheme: scheme.into(),
            extra,
            extensions: None,
            signer_override: None,
        }
    }

    pub fn hash(&self) -> B256 {
        let domain = Eip712Domain::new(
            Some("Permit2".into()),
            None,
            Some(U256::from(self.chain_id)),
            Some(self.permit2),
            None,
        );
        match self.kind {
            Kind::Exact => exact::PermitWitnessTransferFrom {
                permitted: exact::TokenPermissions {
                    token: self.token,
                    amount: self.permitted,
                },
                spender: self.spender,
                nonce: self.nonce,
                deadline: U256::from(self.deadline),
                witness: exact::Witness {
                    to: self.to,
                    validAfter: U256::from(self.valid_after),
                },
            }
            .eip712_signing_hash(&domain),
            Kind::Upto => upto::PermitWitnessTransferFrom {
                permitted: upto::TokenPermissions {
                    token: self.token,
                    amount: self.permitted,
                },
                spender: self.spender,
                nonce: self.nonce,
                deadline: U256::from(self.deadline),
                witness: upto::Witness {
                    to: self.to,
                    facilitator: self.facilitator,
                    validAfter: U256::from(self.valid_after),
                },
            }
            .eip712_signing_hash(&domain),
        }
    }

    pub fn signature(&self) -> Bytes {
        let key = self.signer_override.as_ref().unwrap_or(&self.payer);
        let sig = key.sign_hash_sync(&self.hash()).expect("sign");
        Bytes::from(sig.as_bytes().to_vec())
    }

    pub fn requirements(&self, amount: U256) -> Value {
        json!({
            "scheme": self.scheme,
            "network": self.network,
            "amount": amount.to_string(),
            "asset": self.asset.to_checksum(None),
            "payTo": self.pay_to.to_checksum(None),
            "maxTimeoutSeconds": 60,
            "extra": self.extra,
        })
    }

    pub fn payload_with_signature(&self, signature: &Bytes) -> Value {
        let mut witness = json!({
            "to": self.to.to_checksum(None),
            "validAfter": self.valid_after.to_string(),
        });
        if self.kind == Kind::Upto {
            witness["facilitator"] = json!(self.facilitator.to_checksum(None));
        }
        json!({
            "signature": signature.to_string(),
            "permit2Authorization": {
                "from": self.from.to_checksum(None),
                "permitted": { "token": self.token.to_checksum(None), "amount": self.permitted.to_string() },
                "spender": self.spender.to_checksum(None),
                "nonce": self.nonce.to_string(),
                "deadline": self.deadline.to_string(),
                "witness": witness,
            }
        })
    }

    /// The `/verify` body (and `/settle` for `exact`).
    pub fn body(&self) -> Value {
        self.body_for(self.amount)
    }

    /// The `/settle` body of an `upto` payment charging `charge`: the same payload, `accepted`
    /// still the seller's original requirements, `paymentRequirements.amount` the charge.
    pub fn settle_body(&self, charge: U256) -> Value {
        self.body_for(charge)
    }

    fn body_for(&self, amount: U256) -> Value {
        let mut accepted = self.requirements(self.amount);
        accepted["scheme"] = json!(self.accepted_scheme);
        let mut payment_payload = json!({
            "x402Version": 2,
            "resource": { "url": "http://127.0.0.1/generate", "description": "metered", "mimeType": "application/json" },
            "accepted": accepted,
            "payload": self.payload_with_signature(&self.signature()),
        });
        if let Some(ext) = &self.extensions {
            payment_payload["extensions"] = ext.clone();
        }
        json!({ "x402Version": 2, "paymentPayload": payment_payload, "paymentRequirements": self.requirements(amount) })
    }

    /// Adds an `eip2612GasSponsoring` extension: the payer's EIP-2612 permit of `value` to
    /// Permit2 on the token (signed as the SDK client does, with the token's current nonce).
    pub fn sponsor_with_permit(&mut self, token_nonce: U256, value: U256) {
        let domain = Eip712Domain::new(
            Some(PERMIT_TOKEN_NAME.into()),
            Some(PERMIT_TOKEN_VERSION.into()),
            Some(U256::from(self.chain_id)),
            Some(self.token),
            None,
        );
        let permit = Permit {
            owner: self.from,
            spender: PERMIT2,
            value,
            nonce: token_nonce,
            deadline: U256::from(self.deadline),
        };
        let sig = self
            .payer
            .sign_hash_sync(&permit.eip712_signing_hash(&domain))
            .expect("sign");
        self.extensions = Some(json!({
            "eip2612GasSponsoring": {
                "info": {
                    "description": "The facilitator accepts EIP-2612 gasless Permit to `Permit2` canonical contract.",
                    "version": "1",
                    "from": self.from.to_checksum(None),
                    "asset": self.token.to_checksum(None),
                    "spender": PERMIT2.to_checksum(None),
                    "amount": value.to_string(),
                    "nonce": token_nonce.to_string(),
                    "deadline": self.deadline.to_string(),
                    "signature": Bytes::from(sig.as_bytes().to_vec()).to_string(),
                },
                "schema": { "type": "object" }
            }
        }));
    }
}
