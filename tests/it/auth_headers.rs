//! The official TS SDK as a seller behind a keyed facilitator (#12): `@x402/core`'s
//! `HTTPFacilitatorClient` with `createAuthHeaders` (tests/interop/auth-headers.mjs) settles a
//! payment signed by the official client, with a key made by the real CLI; without the headers
//! every call is refused 401, and a `verify`-only key verifies but is refused 403 on settle.

use std::time::Duration;

use alloy::primitives::{U256, hex};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};

use crate::harness::chain::{TOKEN_NAME, TOKEN_VERSION};
use crate::harness::{Chain, Db, TestApp, spawn};

const PRICE: u64 = 2500;

/// `x402-facilitator keys create` on `db`, as an operator runs it; returns the token.
fn create_key(db: &Db, name: &str, scopes: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_x402-facilitator"))
        .args(["keys", "create", "--name", name, "--scopes", scopes])
        .env("X402__DATABASE__URL", db.url())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One run of the script: the official client's supported/verify/settle steps.
async fn run(
    app: &TestApp,
    payer: &PrivateKeySigner,
    requirements: &Value,
    key: Option<&str>,
) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/auth-headers.mjs"
    );
    let job = json!({
        "facilitatorUrl": app.base,
        "privateKey": format!("0x{}", hex::encode(payer.to_bytes())),
        "requirements": requirements,
        "resource": { "url": "http://127.0.0.1:4021/weather" },
        "apiKey": key,
    });
    crate::harness::script::run_json("node", &[script.to_string()], Some(&job)).await
}

fn refused_with(step: &Value, status: u16) {
    assert_eq!(step["ok"], false, "{step}");
    assert_eq!(step["status"], status, "{step}");
}

#[tokio::test]
async fn the_official_client_settles_through_create_auth_headers_with_a_key() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    let payer = PrivateKeySigner::random();
    chain
        .mint(chain.token, payer.address(), U256::from(1_000_000u64))
        .await;
    let pay_to = PrivateKeySigner::random().address();
    let requirements = json!({
        "scheme": "exact",
        "network": format!("eip155:{}", chain.chain_id),
        "amount": PRICE.to_string(),
        "asset": chain.token.to_checksum(None),
        "payTo": pay_to.to_checksum(None),
        "maxTimeoutSeconds": 60,
        "extra": { "name": TOKEN_NAME, "version": TOKEN_VERSION },
    });
    let seller = create_key(&db, "seller", "verify,settle,supported");
    let verifier = create_key(&db, "verifier", "verify");
    // Whether any key exists is cached briefly by each replica.
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Without createAuthHeaders: every call is refused, nothing moves.
    let bare = run(&app, &payer, &requirements, None).await;
    for step in ["supported", "verify", "settle"] {
        refused_with(&bare[step], 401);
    }
    // A verify-only key: verifies, but may neither settle nor read /supported.
    let narrow = run(&app, &payer, &requirements, Some(&verifier)).await;
    assert_eq!(narrow["verify"]["answer"]["isValid"], true, "{narrow}");
    refused_with(&narrow["supported"], 403);
    refused_with(&narrow["settle"], 403);
    assert_eq!(chain.balance(chain.token, pay_to).await, U256::ZERO);

    // With the seller's key, the official client goes all the way.
    let keyed = run(&app, &payer, &requirements, Some(&seller)).await;
    let kinds = keyed["supported"]["answer"]["kinds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        kinds
            .iter()
            .any(|k| k["network"] == requirements["network"]),
        "{keyed}"
    );
    assert_eq!(keyed["verify"]["answer"]["isValid"], true, "{keyed}");
    assert_eq!(keyed["settle"]["answer"]["success"], true, "{keyed}");
    assert_eq!(chain.balance(chain.token, pay_to).await, U256::from(PRICE));
    assert!(
        !keyed.to_string().contains(&seller),
        "the script printed the key"
    );
    app.stop().await;
}
