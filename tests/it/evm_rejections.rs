//! One test per EVM `exact` rejection reason: each is produced for real (a real signature, a real
//! chain state), answered HTTP 200 with the reason, and settles nothing.

use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolCall;
use serde_json::{Value, json};

use crate::harness::payment::{now, random_b256};
use crate::harness::{self, Chain, Db, Payment, TestApp, spawn};

sol! {
    function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, bytes signature) external;
}

struct Case {
    chain: Chain,
    app: TestApp,
    _db: Db,
}

async fn case() -> Case {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    Case {
        chain,
        app,
        _db: db,
    }
}

/// Verify and settle both reject `body` with `reason`, and no money moves.
async fn rejected(c: &Case, body: &Value, reason: &str) {
    let verdict = c.app.verify(body).await;
    assert_eq!(verdict["isValid"], false, "{verdict}");
    assert_eq!(verdict["invalidReason"], reason, "verify: {verdict}");
    let settled = c.app.settle(body).await;
    assert_eq!(settled["success"], false, "{settled}");
    assert_eq!(settled["errorReason"], reason, "settle: {settled}");
    assert_eq!(settled["transaction"], "", "{settled}");
    assert!(settled["network"].is_string(), "{settled}");
}

/// Sets a field in both `accepted` and `paymentRequirements`.
fn set_requirement(body: &mut Value, key: &str, value: Value) {
    body["paymentRequirements"][key] = value.clone();
    body["paymentPayload"]["accepted"][key] = value;
}

#[tokio::test]
async fn scheme_mismatch() {
    let c = case().await;
    let mut body = harness::funded_payment(&c.chain).await.body();
    body["paymentPayload"]["accepted"]["scheme"] = json!("upto");
    rejected(&c, &body, "invalid_exact_evm_scheme").await;
}

#[tokio::test]
async fn missing_eip712_domain() {
    let c = case().await;
    let mut body = harness::funded_payment(&c.chain).await.body();
    set_requirement(&mut body, "extra", json!({ "name": "USD Coin" }));
    rejected(&c, &body, "invalid_exact_evm_missing_eip712_domain").await;
}

#[tokio::test]
async fn network_mismatch() {
    let c = case().await;
    let mut body = harness::funded_payment(&c.chain).await.body();
    body["paymentPayload"]["accepted"]["network"] = json!("eip155:8453");
    rejected(&c, &body, "invalid_exact_evm_network_mismatch").await;
}

#[tokio::test]
async fn signature_by_another_key() {
    let c = case().await;
    let mut payment = harness::funded_payment(&c.chain).await;
    let from = payment.from;
    payment.payer = PrivateKeySigner::random();
    payment.from = from;
    rejected(&c, &payment.body(), "invalid_exact_evm_signature").await;
}

#[tokio::test]
async fn smart_wallet_signature_from_an_undeployed_address() {
    let c = case().await;
    let payment = harness::funded_payment(&c.chain).await;
    let mut long = payment.signature().to_vec();
    long.extend_from_slice(&[0u8; 32]);
    rejected(
        &c,
        &payment.body_with_signature(&Bytes::from(long)),
        "invalid_exact_evm_payload_undeployed_smart_wallet",
    )
    .await;
}

#[tokio::test]
async fn erc6492_factory_not_allow_listed() {
    let c = case().await;
    let other_factory = c.chain.deploy("WalletFactory", Bytes::new()).await;
    let mut payment = Payment::new(&c.chain);
    let salt = random_b256();
    payment.from = c.chain.predict_wallet(payment.payer.address(), salt).await;
    payment.counterfactual = Some((other_factory, salt));
    rejected(&c, &payment.body(), "eip6492_factory_not_allowed").await;
}

#[tokio::test]
async fn recipient_mismatch() {
    let c = case().await;
    let mut payment = harness::funded_payment(&c.chain).await;
    payment.to = Address::repeat_byte(0x11);
    rejected(&c, &payment.body(), "invalid_exact_evm_recipient_mismatch").await;
}

#[tokio::test]
async fn authorization_expired() {
    let c = case().await;
    let mut payment = harness::funded_payment(&c.chain).await;
    payment.valid_before = now() + 3;
    rejected(
        &c,
        &payment.body(),
        "invalid_exact_evm_payload_authorization_valid_before",
    )
    .await;
}

#[tokio::test]
async fn authorization_not_yet_valid() {
    let c = case().await;
    let mut payment = harness::funded_payment(&c.chain).await;
    payment.valid_after = now() + 3600;
    rejected(
        &c,
        &payment.body(),
        "invalid_exact_evm_payload_authorization_valid_after",
    )
    .await;
}

#[tokio::test]
async fn value_differs_from_amount() {
    let c = case().await;
    let mut payment = harness::funded_payment(&c.chain).await;
    payment.value = payment.amount + U256::from(1);
    rejected(
        &c,
        &payment.body(),
        "invalid_exact_evm_payload_authorization_value_mismatch",
    )
    .await;
    payment.value = payment.amount - U256::from(1);
    rejected(
        &c,
        &payment.body(),
        "invalid_exact_evm_payload_authorization_value_mismatch",
    )
    .await;
}

#[tokio::test]
async fn v1_value_mismatch_uses_the_v1_string() {
    let chain = Chain::start_with(84532, &[]).await;
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    let c = Case {
        chain,
        app,
        _db: db,
    };
    let mut payment = harness::funded_payment(&c.chain).await.v1();
    payment.value = payment.amount + U256::from(1);
    rejected(&c, &payment.body(), "invalid_exact_evm_authorization_value").await;
}

#[tokio::test]
async fn asset_without_code() {
    let c = case().await;
    let mut payment = harness::funded_payment(&c.chain).await;
    payment.asset = Address::repeat_byte(0x22);
    rejected(&c, &payment.body(), "asset_not_deployed_contract").await;
}

#[tokio::test]
async fn nonce_used_on_chain_outside_this_facilitator() {
    let c = case().await;
    let payment = harness::funded_payment(&c.chain).await;
    // Someone else submits the authorization directly to the token first.
    let call = transferWithAuthorizationCall {
        from: payment.from,
        to: payment.to,
        value: payment.value,
        validAfter: U256::from(payment.valid_after),
        validBefore: U256::from(payment.valid_before),
        nonce: payment.nonce,
        signature: payment.signature(),
    };
    c.chain.send(c.chain.token, call.abi_encode()).await;
    rejected(&c, &payment.body(), "invalid_exact_evm_nonce_already_used").await;
}

#[tokio::test]
async fn token_name_differs_from_extra() {
    let c = case().await;
    let mut payment = harness::funded_payment(&c.chain).await;
    payment.sign_name = "Not USD Coin".into();
    payment.extra = json!({ "name": "Not USD Coin", "version": "2" });
    rejected(&c, &payment.body(), "invalid_exact_evm_token_name_mismatch").await;
}

#[tokio::test]
async fn token_version_differs_from_extra() {
    let c = case().await;
    let mut payment = harness::funded_payment(&c.chain).await;
    payment.sign_version = "9".into();
    payment.extra = json!({ "name": "USD Coin", "version": "9" });
    rejected(
        &c,
        &payment.body(),
        "invalid_exact_evm_token_version_mismatch",
    )
    .await;
}

#[tokio::test]
async fn payer_balance_too_low() {
    let c = case().await;
    let payment = Payment::new(&c.chain);
    rejected(
        &c,
        &payment.body(),
        "invalid_exact_evm_insufficient_balance",
    )
    .await;
}

#[tokio::test]
async fn asset_without_eip3009() {
    let c = case().await;
    let mut payment = harness::funded_payment(&c.chain).await;
    payment.asset = c.chain.factory;
    rejected(
        &c,
        &payment.body(),
        "invalid_exact_evm_eip3009_not_supported",
    )
    .await;
}

#[tokio::test]
async fn simulation_fails_for_another_cause() {
    let c = case().await;
    let mut payment = harness::funded_payment(&c.chain).await;
    payment.pay_to = Address::ZERO;
    payment.to = Address::ZERO;
    let body = payment.body();
    let verdict = c.app.verify(&body).await;
    assert_eq!(
        verdict["invalidReason"], "invalid_exact_evm_transaction_simulation_failed",
        "{verdict}"
    );
    assert!(
        verdict["invalidMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("zero address"),
        "{verdict}"
    );
}

#[tokio::test]
async fn a_malformed_permit2_payload_is_invalid() {
    // `permit2Authorization` picks the Permit2 path, as in the SDK (tests/it/permit2_exact.rs).
    let c = case().await;
    let mut body = harness::funded_payment(&c.chain).await.body();
    body["paymentPayload"]["payload"] = json!({ "signature": "0x00", "permit2Authorization": {} });
    rejected(&c, &body, "invalid_payload").await;
}

#[tokio::test]
async fn malformed_authorization_fields() {
    let c = case().await;
    let body = harness::funded_payment(&c.chain).await.body();
    for (field, value) in [
        ("nonce", json!("0x1234")),
        ("value", json!("1abc")),
        ("from", json!("0xnope")),
        ("validBefore", json!(-5)),
    ] {
        let mut bad = body.clone();
        bad["paymentPayload"]["payload"]["authorization"][field] = value;
        rejected(&c, &bad, "invalid_payload").await;
    }
}

#[tokio::test]
async fn malformed_requirements() {
    let c = case().await;
    let mut body = harness::funded_payment(&c.chain).await.body();
    set_requirement(&mut body, "payTo", json!("not-an-address"));
    rejected(&c, &body, "invalid_payment_requirements").await;
}

#[tokio::test]
async fn a_failed_settle_releases_the_claim_and_burns_no_nonce() {
    let c = case().await;
    let payment = Payment::new(&c.chain);
    let body = payment.body();
    // The payer has no tokens yet: the estimate reverts before any nonce is taken.
    let first = c.app.settle(&body).await;
    assert_eq!(
        first["errorReason"], "invalid_exact_evm_insufficient_balance",
        "{first}"
    );
    c.chain
        .mint(c.chain.token, payment.from, U256::from(1_000_000u64))
        .await;
    let second = c.app.settle(&body).await;
    assert_eq!(
        second["success"], true,
        "the same authorization settles once funded: {second}"
    );
    let signer = c.app.signers[0].address();
    use alloy::providers::Provider;
    let nonce = c
        .chain
        .provider
        .get_transaction_count(signer)
        .await
        .expect("nonce");
    assert_eq!(nonce, 1, "one transaction sent, no nonce burnt");
}

#[tokio::test]
async fn a_transaction_that_reverts_on_chain_is_reported_with_its_hash() {
    sol! {
        function transfer(address to, uint256 amount) external returns (bool);
    }
    let c = case().await;
    let payment = harness::funded_payment(&c.chain).await;
    let body = payment.body();
    // Read before our transaction is pending (anvil answers calls from the pending block).
    let balance = c.chain.balance(c.chain.token, payment.from).await;
    c.chain.set_automine(false).await;
    let app = &c.app;
    let settle = async { app.settle(&body).await };
    let drain = async {
        // Once the facilitator's transaction is in the mempool, the payer moves its whole
        // balance away with a higher tip, mined in the same block: ours reverts, the
        // authorization stays unused and no money reaches the seller. (A front-run that uses
        // the same authorization is a payment, see money_path::a_front_run_payment_is_settled_not_failed.)
        while c.chain.raw("txpool_status").await["pending"] == "0x0" {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let payer = format!("{:#x}", payment.from);
        c.chain
            .rpc("anvil_impersonateAccount", (payer.clone(),))
            .await;
        c.chain.fund(payment.from, U256::from(10u128.pow(18))).await;
        let data = transferCall {
            to: Address::repeat_byte(0x77),
            amount: balance,
        }
        .abi_encode();
        let drained = c
            .chain
            .rpc(
                "eth_sendTransaction",
                (json!({
                    "from": payer,
                    "to": format!("{:#x}", c.chain.token),
                    "data": format!("0x{}", alloy::hex::encode(data)),
                    "gas": "0x30d40",
                    "maxFeePerGas": "0xe8d4a51000",
                    "maxPriorityFeePerGas": "0x746a528800",
                }),),
            )
            .await;
        c.chain.mine().await;
        drained.as_str().expect("drain tx hash").to_string()
    };
    let (settled, drained) = tokio::join!(settle, drain);
    let receipt = c
        .chain
        .rpc("eth_getTransactionReceipt", (drained.clone(),))
        .await;
    assert_eq!(
        receipt["status"], "0x1",
        "the payer's own transfer went first: {receipt}"
    );
    c.chain.set_automine(true).await;
    assert_eq!(settled["success"], false, "{settled}");
    assert_eq!(
        settled["errorReason"], "invalid_exact_evm_transaction_failed",
        "{settled}"
    );
    let tx = settled["transaction"].as_str().unwrap_or_default();
    assert_eq!(tx.len(), 66, "the reverted transaction is named: {settled}");
    assert!(c.chain.has_receipt(tx).await, "it was mined (and reverted)");
    assert_eq!(
        c.chain.balance(c.chain.token, payment.pay_to).await,
        U256::ZERO,
        "no money reached the seller"
    );
}

#[tokio::test]
async fn asset_outside_the_operator_allow_list() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let options = harness::Options::default().env(
        "X402__NETWORKS__LOCAL__ASSETS",
        format!("{:#x}", Address::repeat_byte(0x33)),
    );
    let app = harness::spawn_with(&chain, &db, options).await;
    let c = Case {
        chain,
        app,
        _db: db,
    };
    let body = harness::funded_payment(&c.chain).await.body();
    rejected(&c, &body, "invalid_payment_requirements").await;
}
