//! End to end with the official SDKs (tests/interop/e2e-upto.mjs): an `@x402/express` seller
//! whose `upto` route sets the actual charge after answering (`setSettlementOverrides`), and an
//! `exact` route paid through Permit2, bought by `@x402/fetch` clients, settled by us on anvil,
//! on both ledgers.

use alloy::primitives::{U256, hex};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};

use crate::harness::chain::{PERMIT_TOKEN_NAME, PERMIT_TOKEN_VERSION};
use crate::harness::db::both;
use crate::harness::{Chain, Db, spawn_with};
use crate::permit2_exact::permit2_options;

fn key(k: &PrivateKeySigner) -> String {
    format!("0x{}", hex::encode(k.to_bytes()))
}

fn paid<'a>(case: &'a Value, name: &str) -> &'a Value {
    assert_eq!(case["status"], 200, "{name}: {case:#}");
    let response = &case["paymentResponse"];
    assert_eq!(response["success"], true, "{name}: {case:#}");
    assert!(
        case["settlementOverridesLeaked"].is_null(),
        "{name}: the seller strips its override header"
    );
    response
}

fn moved(case: &Value) -> u64 {
    let n = |k: &str| case[k].as_str().and_then(|v| v.parse::<u64>().ok());
    n("payToAfter").unwrap_or_default() - n("payToBefore").unwrap_or_default()
}

async fn express_seller_charges_what_was_used(db: Db) {
    let chain = Chain::start().await;
    let app = spawn_with(&chain, &db, permit2_options()).await;
    let (approving, sponsored) = (PrivateKeySigner::random(), PrivateKeySigner::random());
    for buyer in [&approving, &sponsored] {
        chain
            .mint(
                chain.permit_token,
                buyer.address(),
                U256::from(1_000_000u64),
            )
            .await;
    }
    chain
        .fund(approving.address(), U256::from(10u128.pow(19)))
        .await;
    let pay_to = PrivateKeySigner::random().address();
    let job = json!({
        "facilitatorUrl": app.base,
        "rpcUrl": chain.url,
        "chainId": chain.chain_id,
        "token": chain.permit_token.to_checksum(None),
        "tokenName": PERMIT_TOKEN_NAME,
        "tokenVersion": PERMIT_TOKEN_VERSION,
        "privateKey": key(&approving),
        "sponsoredKey": key(&sponsored),
        "payTo": pay_to.to_checksum(None),
        "charge": "1234",
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/e2e-upto.mjs");
    let out = crate::harness::script::run_json("node", &[script.to_string()], Some(&job)).await;

    let offer = &out["unpaid"]["paymentRequired"]["accepts"][0];
    assert_eq!(out["unpaid"]["status"], 402, "{out:#}");
    assert_eq!(offer["scheme"], "upto", "{out:#}");
    assert_eq!(
        offer["extra"]["facilitatorAddress"],
        app.signers[0].address().to_checksum(None),
        "the seller's SDK took the address from our /supported"
    );

    let upto = &out["upto"];
    let response = paid(upto, "upto");
    assert_eq!(response["amount"], "1234", "{upto:#}");
    assert_eq!(response["transaction"].as_str().map(str::len), Some(66));
    assert_eq!(moved(upto), 1234);
    let calls = upto["facilitatorCalls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let amounts: Vec<(&str, &str)> = calls
        .iter()
        .filter_map(|c| Some((c["op"].as_str()?, c["amount"].as_str()?)))
        .collect();
    assert_eq!(
        amounts,
        vec![("verify", "2000"), ("settle", "1234")],
        "verified with the maximum, settled with the charge"
    );

    let zero = &out["upto-zero"];
    let response = paid(zero, "upto-zero");
    assert_eq!(
        (&response["transaction"], &response["amount"]),
        (&json!(""), &json!("0")),
        "{zero:#}"
    );
    assert_eq!(moved(zero), 0);

    let sponsored_case = &out["sponsored"];
    let response = paid(sponsored_case, "sponsored");
    assert_eq!(response["amount"], "1234", "{sponsored_case:#}");
    assert_eq!(moved(sponsored_case), 1234);

    let exact = &out["exact"];
    let response = paid(exact, "exact");
    assert!(response.get("amount").is_none(), "{exact:#}");
    assert_eq!(moved(exact), 2500);

    assert_eq!(
        chain.balance(chain.permit_token, pay_to).await,
        U256::from(1234u64 + 1234 + 2500)
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM settlements WHERE scheme = 'upto' AND state = 'settled' \
             AND max_amount = '2000' AND amount IN ('1234', '0')"
        )
        .await,
        3
    );
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE scheme = 'exact' AND state = 'settled'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn sdk_express_seller_charges_upto_through_us_on_both_ledgers() {
    for db in both().await {
        express_seller_charges_what_was_used(db).await;
    }
}
