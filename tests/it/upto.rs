//! EVM `upto` on a real chain with our Permit2 and x402 upto proxy: the official client signs a
//! maximum, we verify it and settle what the seller charges (less, equal, zero, above), from the
//! key the witness names; the ledger and receipts keep both amounts; a Permit2 nonce is spent
//! once across `exact` and `upto`; a network without the proxy does not advertise `upto`.

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::chain::{EXACT_PROXY, UPTO_PROXY};
use crate::harness::db::both;
use crate::harness::payment::now;
use crate::harness::permit2::{Kind, Permit2Payment};
use crate::harness::{self, Chain, Db, sdk, spawn_with};
use crate::permit2_exact::{funded_payer, nonce_of, permit2_options, refused};

/// The seller's `upto` requirements with a maximum of `max`, naming our `facilitator`.
fn requirements(chain: &Chain, pay_to: Address, max: u64, facilitator: Address) -> Value {
    json!({
        "scheme": "upto",
        "network": format!("eip155:{}", chain.chain_id),
        "amount": max.to_string(),
        "asset": chain.permit_token.to_checksum(None),
        "payTo": pay_to.to_checksum(None),
        "maxTimeoutSeconds": 60,
        "extra": { "name": "Mezo USD", "version": "1", "assetTransferMethod": "permit2",
                   "facilitatorAddress": facilitator.to_checksum(None) },
    })
}

/// The `/settle` body the seller's SDK sends after charging `charge`.
fn charging(body: &Value, charge: u64) -> Value {
    let mut body = body.clone();
    body["paymentRequirements"]["amount"] = json!(charge.to_string());
    body
}

/// A funded, approved payer and an SDK-signed `upto` payment of at most 2 500 to a fresh payee.
async fn sdk_payment(chain: &Chain, facilitator: Address) -> (PrivateKeySigner, Address, Value) {
    let payer = funded_payer(chain, true).await;
    let pay_to = PrivateKeySigner::random().address();
    let body = sdk::sign(
        &payer,
        requirements(chain, pay_to, 2500, facilitator),
        None,
        None,
    )
    .await;
    (payer, pay_to, body)
}

async fn settles_what_is_charged(db: Db) {
    let chain = Chain::start().await;
    let app = spawn_with(&chain, &db, permit2_options()).await;
    let facilitator = app.signers[0].address();
    let (_, supported) = app.get("/supported").await;
    let kind = supported["kinds"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["scheme"] == "upto"))
        .cloned()
        .unwrap_or_else(|| panic!("no upto kind: {supported}"));
    assert_eq!(kind["network"], format!("eip155:{}", chain.chain_id));
    assert_eq!(kind["x402Version"], 2);
    assert_eq!(
        kind["extra"]["facilitatorAddress"],
        facilitator.to_checksum(None)
    );
    let token = chain.permit_token;

    // Less than the maximum.
    let (payer, pay_to, body) = sdk_payment(&chain, facilitator).await;
    let verdict = app.verify(&body).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    let settled = app.settle(&charging(&body, 1234)).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["amount"], "1234", "{settled}");
    let tx = settled["transaction"].as_str().expect("tx").to_string();
    assert_eq!(chain.sender_of(&tx).await, facilitator);
    assert_eq!(chain.balance(token, pay_to).await, U256::from(1234u64));
    assert_eq!(
        chain.balance(token, payer.address()).await,
        U256::from(1_000_000u64 - 1234)
    );
    let (status, receipt) = app.get(&format!("/settlements/{tx}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            &receipt["scheme"],
            &receipt["amount"],
            &receipt["maxAmount"]
        ),
        (&json!("upto"), &json!("1234"), &json!("2500")),
        "{receipt}"
    );
    // Another charge for the same authorization is another payment: refused, nothing moves.
    let again = app.settle(&charging(&body, 1000)).await;
    assert_eq!(again["errorReason"], "permit2_invalid_nonce", "{again}");
    assert_eq!(
        app.verify(&body).await["invalidReason"],
        "permit2_invalid_nonce"
    );
    assert_eq!(chain.balance(token, pay_to).await, U256::from(1234u64));

    // Exactly the maximum.
    let (_, pay_to, body) = sdk_payment(&chain, facilitator).await;
    let settled = app.settle(&charging(&body, 2500)).await;
    assert_eq!(
        (&settled["success"], &settled["amount"]),
        (&json!(true), &json!("2500")),
        "{settled}"
    );
    assert_eq!(chain.balance(token, pay_to).await, U256::from(2500u64));

    // Nothing: no transaction, the nonce stays unused on chain, the ledger keeps it spent.
    let (payer, pay_to, body) = sdk_payment(&chain, facilitator).await;
    let zero = app.settle(&charging(&body, 0)).await;
    assert_eq!(
        (&zero["success"], &zero["transaction"], &zero["amount"]),
        (&json!(true), &json!(""), &json!("0")),
        "{zero}"
    );
    assert_eq!(
        app.settle(&charging(&body, 0)).await,
        zero,
        "a retry is answered the same"
    );
    assert!(
        !chain
            .permit2_nonce_used(payer.address(), nonce_of(&body))
            .await
    );
    assert_eq!(chain.transfers_from(token, payer.address()).await, 0);
    let later = app.settle(&charging(&body, 1000)).await;
    assert_eq!(later["errorReason"], "permit2_invalid_nonce", "{later}");
    assert_eq!(chain.balance(token, pay_to).await, U256::ZERO);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM settlements WHERE state = 'settled' AND amount = '0' \
             AND max_amount = '2500' AND tx_id = '' AND finalized_at IS NOT NULL"
        )
        .await,
        1
    );

    // Above the maximum: refused before anything is claimed; a right charge then settles.
    let (_, pay_to, body) = sdk_payment(&chain, facilitator).await;
    let above = app.settle(&charging(&body, 2501)).await;
    assert_eq!(
        above["errorReason"], "invalid_upto_evm_payload_settlement_exceeds_amount",
        "{above}"
    );
    assert_eq!(above["transaction"], "");
    let settled = app.settle(&charging(&body, 2000)).await;
    assert_eq!(settled["amount"], "2000", "{settled}");
    assert_eq!(chain.balance(token, pay_to).await, U256::from(2000u64));
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE scheme = 'upto'")
            .await,
        4
    );
    app.stop().await;
}

#[tokio::test]
async fn upto_settles_what_is_charged_sqlite() {
    settles_what_is_charged(Db::sqlite()).await;
}

#[tokio::test]
async fn upto_settles_what_is_charged_postgres() {
    settles_what_is_charged(Db::postgres().await).await;
}

#[tokio::test]
async fn every_upto_verify_reason() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, permit2_options()).await;
    let facilitator = app.signers[0].address();
    let base = harness::funded_permit2(&chain, Kind::Upto, facilitator, true).await;
    let valid = app.verify(&base.body()).await;
    assert_eq!(valid["isValid"], true, "{valid}");

    // Not an upto payload at all (a field that is no string): no payer, as the SDK answers.
    let mut body = base.body();
    body["paymentPayload"]["payload"]["permit2Authorization"]["deadline"] = json!(base.deadline);
    let verdict = app.verify(&body).await;
    assert_eq!(
        verdict["invalidReason"], "unsupported_payload_type",
        "{verdict}"
    );
    assert!(verdict.get("payer").is_none(), "{verdict}");

    let mut p = base.clone();
    p.accepted_scheme = "exact".into();
    refused(
        &app,
        &p.body(),
        "invalid_upto_evm_scheme",
        "accepted.scheme",
    )
    .await;
    let mut body = base.body();
    body["paymentPayload"]["accepted"]["network"] = json!("eip155:1");
    refused(&app, &body, "invalid_upto_evm_network_mismatch", "network").await;
    let mut p = base.clone();
    p.spender = EXACT_PROXY;
    refused(
        &app,
        &p.body(),
        "invalid_permit2_spender",
        "the exact proxy",
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
    p.facilitator = PrivateKeySigner::random().address();
    refused(
        &app,
        &p.body(),
        "upto_facilitator_mismatch",
        "another facilitator",
    )
    .await;
    let mut p = base.clone();
    p.deadline = now() + 2;
    refused(&app, &p.body(), "permit2_deadline_expired", "deadline").await;
    let mut p = base.clone();
    p.valid_after = now() + 600;
    refused(&app, &p.body(), "permit2_not_yet_valid", "validAfter").await;
    // At verify the requirements name the maximum; anything else is a mismatch.
    refused(
        &app,
        &base.settle_body(U256::from(2000u64)),
        "permit2_amount_mismatch",
        "a verify of less than the maximum",
    )
    .await;
    let mut p = base.clone();
    p.token = chain.token;
    refused(&app, &p.body(), "permit2_token_mismatch", "token").await;
    let mut p = base.clone();
    p.asset = PrivateKeySigner::random().address();
    p.token = p.asset;
    refused(
        &app,
        &p.body(),
        "asset_not_deployed_contract",
        "no code at the asset",
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
    let unapproved = harness::funded_permit2(&chain, Kind::Upto, facilitator, false).await;
    refused(
        &app,
        &unapproved.body(),
        "permit2_allowance_required",
        "allowance",
    )
    .await;
    // The verify simulates the whole maximum: a balance below it is refused.
    let mut p = harness::funded_permit2(&chain, Kind::Upto, facilitator, true).await;
    p.permitted = U256::from(5_000_000u64);
    p.amount = p.permitted;
    refused(&app, &p.body(), "permit2_insufficient_balance", "balance").await;

    // With the EIP-2612 extension and no allowance, the payment goes through settleWithPermit.
    let mut sponsored = harness::funded_permit2(&chain, Kind::Upto, facilitator, false).await;
    sponsored.sponsor_with_permit(U256::ZERO, sponsored.permitted);
    let verdict = app.verify(&sponsored.body()).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    let settled = app.settle(&sponsored.settle_body(U256::from(700u64))).await;
    assert_eq!(settled["amount"], "700", "{settled}");
    assert_eq!(
        chain.balance(chain.permit_token, sponsored.pay_to).await,
        U256::from(700u64)
    );
    app.stop().await;
}

#[tokio::test]
async fn upto_is_sent_from_the_key_the_witness_names() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let options = permit2_options();
    let app = spawn_with(
        &chain,
        &db,
        crate::harness::Options {
            signers: 3,
            ..options
        },
    )
    .await;
    let pinned = app.signers[0].address();
    let named = app.signers[2].address();
    let (_, supported) = app.get("/supported").await;
    let advertised: Vec<&Value> = supported["kinds"]
        .as_array()
        .map(|k| k.iter().filter(|k| k["scheme"] == "upto").collect())
        .unwrap_or_default();
    assert_eq!(advertised.len(), 1, "{supported}");
    assert_eq!(
        advertised[0]["extra"]["facilitatorAddress"],
        pinned.to_checksum(None),
        "the first key, every time"
    );
    for _ in 0..3 {
        let p = harness::funded_permit2(&chain, Kind::Upto, named, true).await;
        let settled = app.settle(&p.settle_body(U256::from(10u64))).await;
        assert_eq!(settled["success"], true, "{settled}");
        let tx = settled["transaction"].as_str().expect("tx");
        assert_eq!(chain.sender_of(tx).await, named, "never a turn of the pool");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_permit2_nonce_is_spent_once_across_exact_and_upto() {
    for db in both().await {
        let chain = Chain::start().await;
        let app = spawn_with(&chain, &db, permit2_options()).await;
        let facilitator = app.signers[0].address();
        let token = chain.permit_token;

        // exact first, then an upto payment with the same Permit2 nonce.
        let exact = harness::funded_permit2(&chain, Kind::Exact, facilitator, true).await;
        assert_eq!(app.settle(&exact.body()).await["success"], true);
        let mut upto = Permit2Payment::new(&chain, Kind::Upto, facilitator);
        upto.payer = exact.payer.clone();
        upto.from = exact.from;
        upto.nonce = exact.nonce;
        assert_eq!(
            app.verify(&upto.body()).await["invalidReason"],
            "permit2_invalid_nonce"
        );
        let answer = app.settle(&upto.settle_body(U256::from(100u64))).await;
        assert_eq!(answer["errorReason"], "permit2_invalid_nonce", "{answer}");
        assert_eq!(chain.balance(token, upto.pay_to).await, U256::ZERO);

        // upto settled with nothing leaves the chain's nonce unused, yet the exact payment
        // with that nonce is refused: the ledger holds Permit2's replay domain.
        let upto = harness::funded_permit2(&chain, Kind::Upto, facilitator, true).await;
        let zero = app.settle(&upto.settle_body(U256::ZERO)).await;
        assert_eq!(zero["amount"], "0", "{zero}");
        let mut exact = Permit2Payment::new(&chain, Kind::Exact, facilitator);
        exact.payer = upto.payer.clone();
        exact.from = upto.from;
        exact.nonce = upto.nonce;
        let answer = app.settle(&exact.body()).await;
        assert_eq!(answer["errorReason"], "permit2_invalid_nonce", "{answer}");
        assert_eq!(chain.balance(token, exact.pay_to).await, U256::ZERO);
        app.stop().await;
    }
}

#[tokio::test]
async fn an_upto_retry_after_pending_is_the_same_payment() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let options = permit2_options()
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "1000")
        .env("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000");
    let app = spawn_with(&chain, &db, options).await;
    let facilitator = app.signers[0].address();
    let p = harness::funded_permit2(&chain, Kind::Upto, facilitator, true).await;
    chain.set_automine(false).await;
    let first = app.settle(&p.settle_body(U256::from(1234u64))).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    let tx = first["transaction"].as_str().expect("tx").to_string();
    // Another charge while it is pending is another payment: it never touches the row.
    let other = app.settle(&p.settle_body(U256::from(1500u64))).await;
    assert_eq!(other["errorReason"], "permit2_invalid_nonce", "{other}");
    chain.mine().await;
    chain.set_automine(true).await;
    let second = app.settle(&p.settle_body(U256::from(1234u64))).await;
    assert_eq!(
        (
            &second["success"],
            &second["transaction"],
            &second["amount"]
        ),
        (&json!(true), &json!(tx), &json!("1234")),
        "{second}"
    );
    assert_eq!(chain.transfers_from(chain.permit_token, p.from).await, 1);
    assert_eq!(
        chain.balance(chain.permit_token, p.pay_to).await,
        U256::from(1234u64)
    );
    app.stop().await;
}

#[tokio::test]
async fn upto_is_not_advertised_where_its_proxy_has_no_code() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let nowhere = PrivateKeySigner::random().address();
    let options = permit2_options().env(
        "X402__NETWORKS__LOCAL__UPTO_PERMIT2_PROXY",
        format!("{nowhere:#x}"),
    );
    let app = spawn_with(&chain, &db, options).await;
    let (_, supported) = app.get("/supported").await;
    let schemes: Vec<&str> = supported["kinds"]
        .as_array()
        .map(|k| k.iter().filter_map(|k| k["scheme"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        schemes.contains(&"exact") && !schemes.contains(&"upto"),
        "{supported}"
    );
    let p = harness::funded_permit2(&chain, Kind::Upto, app.signers[0].address(), true).await;
    assert_eq!(
        app.verify(&p.body()).await["invalidReason"],
        "unsupported_scheme"
    );
    // The proxy at the SDK's address is ours; pointing the network there serves upto again.
    let options = permit2_options().env(
        "X402__NETWORKS__LOCAL__UPTO_PERMIT2_PROXY",
        format!("{UPTO_PROXY:#x}"),
    );
    let again = spawn_with(&chain, &Db::sqlite(), options).await;
    let (_, supported) = again.get("/supported").await;
    assert!(
        supported["kinds"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k["scheme"] == "upto")),
        "{supported}"
    );
    again.stop().await;
    app.stop().await;
}

/// Twenty settles of one `upto` authorization at once, half charging 1 000 and half 2 000: one
/// of them moves money, once; every other is told so.
async fn concurrent_charges(db: Db) {
    let chain = Chain::start().await;
    let app = spawn_with(&chain, &db, permit2_options()).await;
    let p = harness::funded_permit2(&chain, Kind::Upto, app.signers[0].address(), true).await;
    let bodies: Vec<Value> = (0..20)
        .map(|i| p.settle_body(U256::from(if i % 2 == 0 { 1000u64 } else { 2000 })))
        .collect();
    let answers = futures_util::future::join_all(bodies.iter().map(|b| app.settle(b))).await;
    let wins: Vec<&Value> = answers.iter().filter(|a| a["success"] == true).collect();
    assert_eq!(wins.len(), 1, "{answers:?}");
    for a in &answers {
        let reason = a["errorReason"].as_str().unwrap_or("");
        assert!(
            a["success"] == true
                || reason == "duplicate_settlement"
                || reason == "permit2_invalid_nonce",
            "{a}"
        );
    }
    let charged: u64 = wins[0]["amount"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("amount");
    assert_eq!(chain.transfers_from(chain.permit_token, p.from).await, 1);
    assert_eq!(
        chain.balance(chain.permit_token, p.pay_to).await,
        U256::from(charged)
    );
    assert_eq!(db.count("SELECT count(*) FROM settlements").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_charges_of_one_authorization_move_money_once_sqlite() {
    concurrent_charges(Db::sqlite()).await;
}

#[tokio::test]
async fn concurrent_charges_of_one_authorization_move_money_once_postgres() {
    concurrent_charges(Db::postgres().await).await;
}

/// An SDK-shaped `upto` settle of `charge` for `url`, declaring bazaar discovery.
async fn listed_body(chain: &Chain, facilitator: Address, url: &str, charge: u64) -> Value {
    let mut p = harness::funded_permit2(chain, Kind::Upto, facilitator, true).await;
    p.extensions = Some(json!({ "bazaar": crate::discovery::poisoning::weather_extension(None) }));
    let mut body = p.settle_body(U256::from(charge));
    body["paymentPayload"]["resource"] =
        json!({ "url": url, "description": "metered", "mimeType": "application/json" });
    body
}

/// Bazaar discovery lists an `upto` route at what the seller offered — the signed maximum,
/// which `/verify` held equal to the offer — not at the charge one buyer happened to pay: the
/// settle's `requirements.amount` is that charge. A charge of 0 paid nothing and lists nothing.
#[tokio::test]
async fn discovery_lists_an_upto_route_at_its_maximum_not_a_buyers_charge() {
    use crate::discovery::poisoning::listing_once;
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, permit2_options()).await;
    let facilitator = app.signers[0].address();
    // A charge of nothing is no payment: its resource is not listed (as a verify's is not).
    let free = app
        .settle(&listed_body(&chain, facilitator, "https://free.example/generate", 0).await)
        .await;
    assert_eq!(free["amount"], "0", "{free}");
    let settled = app
        .settle(
            &listed_body(
                &chain,
                facilitator,
                "https://api.acme.example/generate",
                1234,
            )
            .await,
        )
        .await;
    assert_eq!(settled["amount"], "1234", "{settled}");
    let page = listing_once(&app, "/discovery/resources", |page| {
        page["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    let item = &page["items"][0];
    assert_eq!(
        item["resource"], "https://api.acme.example/generate",
        "{item}"
    );
    assert_eq!(item["accepts"][0]["scheme"], "upto", "{item}");
    assert_eq!(item["accepts"][0]["amount"], "2500", "{item}");
    assert_eq!(item["observed"]["priceRange"][0]["max"], "2500", "{item}");
    app.stop().await;
}

/// A charge of 0 sends nothing, so the operator's fee budget does not stand in its way (it is
/// settled even when the day's budget is spent), and it is no payment: it entitles nobody to
/// the resource (sessions), while a real charge does.
#[tokio::test]
async fn a_charge_of_nothing_spends_no_budget_and_entitles_nobody() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let options = permit2_options()
        .env("X402__SESSIONS__ENABLED", "true")
        .env("X402__NETWORKS__LOCAL__BUDGET__FEE_PER_SETTLE", "0.001")
        .env("X402__NETWORKS__LOCAL__BUDGET__DAILY_CAP", "0.001");
    let app = spawn_with(&chain, &db, options).await;
    let facilitator = app.signers[0].address();
    let entitled = async |p: &Permit2Payment| {
        let (status, body) = app
            .get(&format!(
                "/sessions/entitlement?payer={:#x}&resource=http%3A%2F%2F127.0.0.1%2Fgenerate&within=3600",
                p.from
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["entitled"].clone()
    };

    // A charge of nothing: settled, free, and no entitlement.
    let zero = harness::funded_permit2(&chain, Kind::Upto, facilitator, true).await;
    let answer = app.settle(&zero.settle_body(U256::ZERO)).await;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(entitled(&zero).await, json!(false));

    // A real charge spends the day's whole budget and entitles its payer.
    let paid = harness::funded_permit2(&chain, Kind::Upto, facilitator, true).await;
    let answer = app.settle(&paid.settle_body(U256::from(1000u64))).await;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(entitled(&paid).await, json!(true));

    // With the budget spent, another real charge is refused, a charge of nothing still settles.
    let refused = harness::funded_permit2(&chain, Kind::Upto, facilitator, true).await;
    let answer = app.settle(&refused.settle_body(U256::from(1000u64))).await;
    assert_eq!(answer["errorReason"], "budget_exhausted", "{answer}");
    let free = harness::funded_permit2(&chain, Kind::Upto, facilitator, true).await;
    let answer = app.settle(&free.settle_body(U256::ZERO)).await;
    assert_eq!(answer["success"], true, "{answer}");
    app.stop().await;
}
