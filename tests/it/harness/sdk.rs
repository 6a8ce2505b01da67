//! Payments signed by the official `@x402/evm` client (tests/interop/sign-evm.mjs, pinned in its
//! package-lock.json): EIP-3009 or Permit2 `exact`, and `upto`.

use alloy::primitives::hex;
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};

/// Has the SDK sign for `requirements` (v2); returns the `/verify` body. `extensions` are the
/// seller's declared `PaymentRequired.extensions`; `rpc_url` lets the client read the chain
/// (the EIP-2612 extension needs the token's allowance and nonce).
pub async fn sign(
    payer: &PrivateKeySigner,
    requirements: Value,
    extensions: Option<Value>,
    rpc_url: Option<&str>,
) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/sign-evm.mjs");
    let mut job = json!({
        "privateKey": format!("0x{}", hex::encode(payer.to_bytes())),
        "x402Version": 2,
        "requirements": requirements,
        "resource": { "url": "http://127.0.0.1:4021/generate", "description": "metered", "mimeType": "application/json" },
    });
    if let Some(extensions) = extensions {
        job["extensions"] = extensions;
    }
    if let Some(url) = rpc_url {
        job["rpcUrl"] = json!(url);
    }
    super::script::run_json("node", &[script.to_string()], Some(&job)).await
}

/// The seller's declaration of the `eip2612GasSponsoring` extension, as
/// `declareEip2612GasSponsoringExtension()` of `@x402/extensions` builds it.
pub fn eip2612_declared() -> Value {
    json!({ "eip2612GasSponsoring": {
        "info": { "description": "The facilitator accepts EIP-2612 gasless Permit to `Permit2` canonical contract.", "version": "1" },
        "schema": { "type": "object" }
    } })
}
