//! Payments signed by the official `@x402/evm` client (tests/interop/sign-evm.mjs, pinned in its
//! package-lock.json) verify and settle through our HTTP API against the real chain.

use std::process::Stdio;

use alloy::primitives::{U256, hex};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

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
    let mut child = Command::new("node")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (scripts/test installs the SDK)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(job.to_string().as_bytes())
        .await
        .expect("job written");
    drop(stdin);
    let out = child.wait_with_output().await.expect("node finished");
    assert!(
        out.status.success(),
        "SDK signer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("SDK printed JSON")
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
