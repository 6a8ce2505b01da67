//! `exact` through Permit2 (`assetTransferMethod: "permit2"`) on a real chain with our Permit2,
//! the x402 exact proxy and an 18-decimals Permit2-only token: payments signed by the official
//! client settle and move exactly the amount, the EIP-2612 extension pays without a prior
//! allowance, a settled nonce is refused, and every verify reason of the installed SDK has its
//! case here (docs/schemes.md).

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};

use crate::harness::chain::{EXACT_PROXY, MULTICALL3, PERMIT2, UPTO_PROXY};
use crate::harness::db::both;
use crate::harness::payment::now;
use crate::harness::permit2::Kind;
use crate::harness::{self, Chain, Db, Options, TestApp, sdk, spawn_with};

pub fn permit2_options() -> Options {
    Options::default().env("X402__NETWORKS__LOCAL__SCHEMES", "exact,upto")
}

/// The seller's requirements for `amount` of the Permit2-only token, paid `exact`.
fn requirements(chain: &Chain, pay_to: Address, amount: u64) -> Value {
    json!({
        "scheme": "exact",
        "network": format!("eip155:{}", chain.chain_id),
        "amount": amount.to_string(),
        "asset": chain.permit_token.to_checksum(None),
        "payTo": pay_to.to_checksum(None),
        "maxTimeoutSeconds": 60,
        "extra": { "name": "Mezo USD", "version": "1", "assetTransferMethod": "permit2" },
    })
}

/// A payer holding 1 000 000 of the Permit2-only token, with its allowance to Permit2 when
/// `approve` (else only an EIP-2612 permit can pay).
pub async fn funded_payer(chain: &Chain, approve: bool) -> PrivateKeySigner {
    let payer = PrivateKeySigner::random();
    chain
        .mint(
            chain.permit_token,
            payer.address(),
            U256::from(1_000_000u64),
        )
        .await;
    if approve {
        chain.approve_permit2(&payer, chain.permit_token).await;
    }
    payer
}

/// The Permit2 nonce a signed body spends (`exact` and `upto` alike).
pub fn nonce_of(body: &Value) -> U256 {
    body["paymentPayload"]["payload"]["permit2Authorization"]["nonce"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("a decimal nonce")
}

async fn sdk_payment_settles(db: Db) {
    let chain = Chain::start().await;
    let app = spawn_with(&chain, &db, permit2_options()).await;
    let payer = funded_payer(&chain, true).await;
    let pay_to = PrivateKeySigner::random().address();
    let body = sdk::sign(&payer, requirements(&chain, pay_to, 2500), None, None).await;
    assert!(
        body["paymentPayload"]["payload"]["permit2Authorization"].is_object(),
        "{body}"
    );

    let verdict = app.verify(&body).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    assert_eq!(verdict["payer"], payer.address().to_checksum(None));
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert!(
        settled.get("amount").is_none(),
        "exact names no amount: {settled}"
    );
    let token = chain.permit_token;
    assert_eq!(chain.balance(token, pay_to).await, U256::from(2500u64));
    assert_eq!(
        chain.balance(token, payer.address()).await,
        U256::from(1_000_000u64 - 2500)
    );
    assert!(
        chain
            .permit2_nonce_used(payer.address(), nonce_of(&body))
            .await
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM settlements WHERE state = 'settled' AND scheme = 'exact' \
             AND amount = '2500' AND max_amount IS NULL AND replay_key LIKE '%/permit2/%'"
        )
        .await,
        1
    );

    // The settled nonce is refused, at verify and at settle, and nothing moves again.
    for answer in [app.verify(&body).await, app.settle(&body).await] {
        let reason = answer["invalidReason"]
            .as_str()
            .or(answer["errorReason"].as_str());
        assert_eq!(reason, Some("permit2_invalid_nonce"), "{answer}");
    }
    assert_eq!(chain.balance(token, pay_to).await, U256::from(2500u64));
    app.stop().await;
}

#[tokio::test]
async fn official_sdk_permit2_exact_payment_settles_sqlite() {
    sdk_payment_settles(Db::sqlite()).await;
}

#[tokio::test]
async fn official_sdk_permit2_exact_payment_settles_postgres() {
    sdk_payment_settles(Db::postgres().await).await;
}

#[tokio::test]
async fn the_eip2612_extension_pays_without_an_allowance() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, permit2_options()).await;
    let (_, supported) = app.get("/supported").await;
    assert!(
        supported["extensions"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("eip2612GasSponsoring"))),
        "{supported}"
    );
    let payer = funded_payer(&chain, false).await;
    let pay_to = PrivateKeySigner::random().address();
    let body = sdk::sign(
        &payer,
        requirements(&chain, pay_to, 2500),
        Some(sdk::eip2612_declared()),
        Some(&chain.url),
    )
    .await;
    let info = &body["paymentPayload"]["extensions"]["eip2612GasSponsoring"]["info"];
    assert_eq!(info["spender"], PERMIT2.to_checksum(None), "{body}");

    let verdict = app.verify(&body).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(
        chain.balance(chain.permit_token, pay_to).await,
        U256::from(2500u64)
    );
    assert_eq!(
        chain
            .permit_nonce(chain.permit_token, payer.address())
            .await,
        U256::from(1u8),
        "the permit was used in the settling transaction"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_allowance_or_extension_the_payer_must_approve_permit2() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, permit2_options()).await;
    let payer = funded_payer(&chain, false).await;
    let pay_to = PrivateKeySigner::random().address();
    let body = sdk::sign(&payer, requirements(&chain, pay_to, 2500), None, None).await;
    let verdict = app.verify(&body).await;
    assert_eq!(
        verdict["invalidReason"], "permit2_allowance_required",
        "{verdict}"
    );
    assert_eq!(verdict["payer"], payer.address().to_checksum(None));
    let settled = app.settle(&body).await;
    assert_eq!(
        settled["errorReason"], "permit2_allowance_required",
        "{settled}"
    );
    assert_eq!(settled["transaction"], "");
    assert_eq!(db.count("SELECT count(*) FROM settlements").await, 0);
    assert!(
        !chain
            .permit2_nonce_used(payer.address(), nonce_of(&body))
            .await
    );
    app.stop().await;
}

/// Verifies `body` and expects `reason` with the payer named (`case` says which check).
pub async fn refused(app: &TestApp, body: &Value, reason: &str, case: &str) {
    let verdict = app.verify(body).await;
    assert_eq!(
        verdict["invalidReason"].as_str(),
        Some(reason),
        "{case}: {verdict}"
    );
    assert_eq!(verdict["isValid"], false, "{case}");
    assert!(
        verdict["payer"].is_string(),
        "{case}: the payer is named: {verdict}"
    );
}

#[tokio::test]
async fn every_permit2_exact_verify_reason() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, permit2_options()).await;
    let base = harness::funded_permit2(&chain, Kind::Exact, Address::ZERO, true).await;
    let valid = app.verify(&base.body()).await;
    assert_eq!(valid["isValid"], true, "{valid}");

    let mut p = base.clone();
    p.accepted_scheme = "upto".into();
    refused(
        &app,
        &p.body(),
        "unsupported_payload_type",
        "accepted.scheme",
    )
    .await;

    let mut body = base.body();
    body["paymentPayload"]["accepted"]["network"] = json!("eip155:1");
    refused(&app, &body, "invalid_exact_evm_network_mismatch", "network").await;

    let mut p = base.clone();
    p.spender = UPTO_PROXY;
    refused(
        &app,
        &p.body(),
        "invalid_permit2_spender",
        "the upto proxy as spender",
    )
    .await;

    let mut p = base.clone();
    p.to = PrivateKeySigner::random().address();
    refused(
        &app,
        &p.body(),
        "invalid_permit2_recipient_mismatch",
        "witness.to",
    )
    .await;

    let mut p = base.clone();
    p.deadline = now() + 3;
    refused(&app, &p.body(), "permit2_deadline_expired", "deadline").await;

    let mut p = base.clone();
    p.valid_after = now() + 3600;
    refused(&app, &p.body(), "permit2_not_yet_valid", "validAfter").await;

    let mut p = base.clone();
    p.permitted = base.amount + U256::from(1u8);
    refused(&app, &p.body(), "permit2_amount_mismatch", "amount").await;

    let mut p = base.clone();
    p.token = chain.token;
    refused(&app, &p.body(), "permit2_token_mismatch", "token").await;

    // No code at the asset outranks a bad signature (the SDK awaits the asset check first).
    let mut p = base.clone();
    p.asset = PrivateKeySigner::random().address();
    p.token = p.asset;
    p.signer_override = Some(PrivateKeySigner::random());
    refused(
        &app,
        &p.body(),
        "asset_not_deployed_contract",
        "asset without code",
    )
    .await;

    let mut p = base.clone();
    p.signer_override = Some(PrivateKeySigner::random());
    refused(
        &app,
        &p.body(),
        "invalid_permit2_signature",
        "another signer",
    )
    .await;
    let mut p = base.clone();
    p.chain_id = 1; // signed for another chain's domain
    let mut body = p.body();
    body["paymentPayload"]["accepted"]["network"] = json!(base.network);
    body["paymentRequirements"]["network"] = json!(base.network);
    refused(
        &app,
        &body,
        "invalid_permit2_signature",
        "another chain's domain",
    )
    .await;
    let mut body = base.body();
    body["paymentPayload"]["payload"]["signature"] = json!(format!("0x{}", "11".repeat(64)));
    refused(
        &app,
        &body,
        "invalid_permit2_signature",
        "a 64-byte signature",
    )
    .await;

    // The simulation and its diagnosis.
    let poor = harness::funded_permit2(&chain, Kind::Exact, Address::ZERO, true).await;
    let mut p = poor.clone();
    p.permitted = U256::from(10_000_000u64);
    p.amount = p.permitted;
    refused(&app, &p.body(), "permit2_insufficient_balance", "balance").await;
    let unapproved = harness::funded_permit2(&chain, Kind::Exact, Address::ZERO, false).await;
    refused(
        &app,
        &unapproved.body(),
        "permit2_allowance_required",
        "allowance",
    )
    .await;
    let mut p = base.clone();
    p.asset = MULTICALL3; // has code, answers no ERC-20 call
    p.token = MULTICALL3;
    refused(
        &app,
        &p.body(),
        "permit2_simulation_failed",
        "an asset that is no token",
    )
    .await;

    // A nonce the payer spent on chain itself: the revert names it.
    let spent = harness::funded_permit2(&chain, Kind::Exact, Address::ZERO, true).await;
    chain
        .invalidate_permit2_nonce(&spent.payer, spent.nonce)
        .await;
    refused(
        &app,
        &spent.body(),
        "permit2_invalid_nonce",
        "a nonce used on chain",
    )
    .await;
    let settled = app.settle(&spent.body()).await;
    assert_eq!(settled["errorReason"], "permit2_invalid_nonce", "{settled}");

    // Numbers may be written in hex, as the SDK's BigInt reads them.
    let mut body = base.body();
    body["paymentPayload"]["payload"]["permit2Authorization"]["nonce"] =
        json!(format!("{:#x}", base.nonce));
    let verdict = app.verify(&body).await;
    assert_eq!(verdict["isValid"], true, "a hex nonce: {verdict}");
    app.stop().await;
}

#[tokio::test]
async fn every_eip2612_extension_reason() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, permit2_options()).await;
    let mut base = harness::funded_permit2(&chain, Kind::Exact, Address::ZERO, false).await;
    base.sponsor_with_permit(U256::ZERO, base.permitted);
    let valid = app.verify(&base.body()).await;
    assert_eq!(valid["isValid"], true, "{valid}");

    let tamper = |field: &str, value: Value| {
        let mut body = base.body();
        body["paymentPayload"]["extensions"]["eip2612GasSponsoring"]["info"][field] = value;
        body
    };
    let other = PrivateKeySigner::random().address().to_checksum(None);
    for (field, value, reason) in [
        (
            "signature",
            json!("0xzz"),
            "invalid_eip2612_extension_format",
        ),
        ("amount", json!("-1"), "invalid_eip2612_extension_format"),
        ("version", json!("v1"), "invalid_eip2612_extension_format"),
        (
            "signature",
            json!("0x1234"),
            "invalid_eip2612_extension_format",
        ),
        ("from", json!(other), "eip2612_from_mismatch"),
        ("asset", json!(other), "eip2612_asset_mismatch"),
        (
            "spender",
            json!(EXACT_PROXY.to_checksum(None)),
            "eip2612_spender_not_permit2",
        ),
        (
            "deadline",
            json!((now() + 2).to_string()),
            "eip2612_deadline_expired",
        ),
    ] {
        refused(&app, &tamper(field, value), reason, field).await;
    }
    // An incomplete extension is no extension: the payment needs an allowance then.
    refused(
        &app,
        &tamper("nonce", json!("")),
        "permit2_allowance_required",
        "an incomplete extension",
    )
    .await;

    // The permit must be for exactly the permitted amount; the proxy says so on chain.
    let mut approved = harness::funded_permit2(&chain, Kind::Exact, Address::ZERO, true).await;
    approved.sponsor_with_permit(U256::ZERO, approved.permitted + U256::from(1u8));
    refused(
        &app,
        &approved.body(),
        "permit2_2612_amount_mismatch",
        "a permit for another amount",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_proxy_without_code_is_named() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let nowhere = PrivateKeySigner::random().address();
    let options = permit2_options().env(
        "X402__NETWORKS__LOCAL__EXACT_PERMIT2_PROXY",
        format!("{nowhere:#x}"),
    );
    let app = spawn_with(&chain, &db, options).await;
    let (_, supported) = app.get("/supported").await;
    assert!(
        supported["kinds"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k["scheme"] == "exact")),
        "EIP-3009 exact is still served: {supported}"
    );
    let mut p = harness::funded_permit2(&chain, Kind::Exact, Address::ZERO, true).await;
    p.spender = nowhere;
    refused(
        &app,
        &p.body(),
        "permit2_proxy_not_deployed",
        "no code at the proxy",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn rust_signed_permit2_exact_settles_on_both_ledgers() {
    for db in both().await {
        let chain = Chain::start().await;
        let app = spawn_with(&chain, &db, permit2_options()).await;
        let p = harness::funded_permit2(&chain, Kind::Exact, Address::ZERO, true).await;
        let settled = app.settle(&p.body()).await;
        assert_eq!(settled["success"], true, "{settled}");
        assert_eq!(chain.balance(chain.permit_token, p.pay_to).await, p.amount);
        assert_eq!(chain.transfers_from(chain.permit_token, p.from).await, 1);
        app.stop().await;
    }
}
