//! Payments signed by the official `@x402/evm` client (tests/interop/sign-evm.mjs, pinned in its
//! package-lock.json) verify and settle through our HTTP API against the real chain.

use alloy::primitives::{U256, hex};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};

use crate::harness::chain::{TOKEN_NAME, TOKEN_VERSION};
use crate::harness::{Chain, Db, spawn};

/// Asks the official SDK to sign a payment for `requirements`; returns the /verify body.
async fn sdk_sign(
    payer: &PrivateKeySigner,
    x402_version: u8,
    chain_id: u64,
    requirements: Value,
) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/sign-evm.mjs");
    let job = json!({
        "privateKey": format!("0x{}", hex::encode(payer.to_bytes())),
        "chainId": chain_id,
        "x402Version": x402_version,
        "requirements": requirements,
        "resource": { "url": "http://127.0.0.1:4021/weather", "description": "weather", "mimeType": "application/json" },
    });
    crate::harness::script::run_json("node", &[script.to_string()], Some(&job)).await
}

async fn sdk_payment_settles(chain_id: u64, x402_version: u8) {
    let chain = Chain::start_with(chain_id, &[]).await;
    let db = Db::postgres().await;
    let app = spawn(&chain, &db).await;
    let payer = PrivateKeySigner::random();
    chain
        .mint(chain.token, payer.address(), U256::from(1_000_000u64))
        .await;
    let pay_to = PrivateKeySigner::random().address();
    let requirements = json!({
        "scheme": "exact",
        "network": format!("eip155:{chain_id}"),
        "amount": "2500",
        "asset": chain.token.to_checksum(None),
        "payTo": pay_to.to_checksum(None),
        "maxTimeoutSeconds": 60,
        "extra": { "name": TOKEN_NAME, "version": TOKEN_VERSION },
    });
    let body = sdk_sign(&payer, x402_version, chain_id, requirements).await;
    assert_eq!(body["paymentPayload"]["x402Version"], x402_version);

    let verdict = app.verify(&body).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    assert_eq!(verdict["payer"], payer.address().to_checksum(None));
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(
        chain.balance(chain.token, pay_to).await,
        U256::from(2500u64)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE state = 'settled'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn official_sdk_v2_payment_verifies_and_settles() {
    sdk_payment_settles(31337, 2).await;
}

#[tokio::test]
async fn official_sdk_v1_payment_verifies_and_settles() {
    // The v1 client only knows legacy names, so the local chain poses as base-sepolia.
    sdk_payment_settles(84532, 1).await;
}
