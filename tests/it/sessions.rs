//! Sessions (#18): Sign-In-With-X proofs signed by the official `@x402/extensions` client
//! (tests/interop/sign-siwx.mjs) checked by `POST /sessions/verify` — EOA, ERC-1271, ERC-6492,
//! Solana; every refusal with its reason; nonces single-use across replicas — and entitlements
//! answered from a really settled payment on both ledgers.

use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};

use crate::harness::{Chain, Db, Options, Payment, TestApp, funded_payment, spawn_with};

const SELLER: &str = "http://127.0.0.1:4021";
const DOMAIN: &str = "127.0.0.1:4021";
const SOLANA: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
const SOLANA_SEED: &str = "0707070707070707070707070707070707070707070707070707070707070707";

fn key_hex(k: &PrivateKeySigner) -> String {
    format!("0x{}", alloy::primitives::hex::encode(k.to_bytes()))
}

fn evm(chain: &Chain) -> String {
    format!("eip155:{}", chain.chain_id)
}

async fn on(chain: &Chain, db: &Db) -> TestApp {
    spawn_with(
        chain,
        db,
        Options::default().env("X402__SESSIONS__ENABLED", "true"),
    )
    .await
}

/// A fresh challenge like the official seller's (`enrichSIWxPaymentRequiredResponse`).
fn challenge() -> Value {
    let uri = format!("{SELLER}/weather");
    json!({
        "domain": DOMAIN,
        "uri": uri,
        "version": "1",
        "nonce": uuid::Uuid::new_v4().simple().to_string(),
        "statement": "Sign in to use your pass",
        "resources": [uri],
    })
}

/// The official client's payload for `info` on `chain_id`, `issuedAt` now + `offsets`.
async fn sign(signer: Value, chain_id: &str, info: Value, offsets: Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/sign-siwx.mjs");
    let mut offsets = offsets;
    if offsets.get("issuedAt").is_none() {
        offsets["issuedAt"] = json!(0);
    }
    let job = json!({ "info": info, "chainId": chain_id, "signer": signer, "offsetsMs": offsets });
    crate::harness::script::run_json("node", &[script.to_string()], Some(&job)).await
}

fn check(proof: &Value, chains: &[&str]) -> Value {
    json!({ "payload": proof["payload"], "domain": DOMAIN, "uri": format!("{SELLER}/weather"), "chains": chains })
}

async fn verdict(app: &TestApp, body: &Value) -> Value {
    let (status, answer) = app.post("/sessions/verify", body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The reason a verdict refuses with (`valid` must be false).
async fn refused(app: &TestApp, body: &Value) -> String {
    let answer = verdict(app, body).await;
    assert_eq!(answer["valid"], false, "{answer}");
    answer["reason"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn eoa_and_solana_proofs_from_the_official_client_pass_once_and_every_tamper_is_refused() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = on(&chain, &db).await;
    let net = evm(&chain);
    let chains = [net.as_str(), SOLANA];
    let (_, supported) = app.get("/supported").await;
    assert!(
        supported["extensions"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("sign-in-with-x"))),
        "{supported}"
    );
    let key = PrivateKeySigner::random();
    let eoa = json!({ "kind": "eoa", "privateKey": key_hex(&key) });
    let proof = sign(eoa.clone(), &net, challenge(), json!({})).await;

    // Valid once, then the nonce is spent (the header form of the same proof included).
    let answer = verdict(&app, &check(&proof, &chains)).await;
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(answer["address"], json!(key.address().to_checksum(None)));
    assert_eq!(answer["chainId"], json!(net));
    let header = json!({ "header": proof["header"], "domain": DOMAIN, "uri": format!("{SELLER}/weather"), "chains": chains });
    assert_eq!(refused(&app, &header).await, "invalid_siwx_nonce");

    // Each signed field changed after signing: the rebuilt text no longer matches.
    let fresh = sign(eoa.clone(), &net, challenge(), json!({})).await;
    for (field, value) in [
        ("nonce", json!("ffffffffffffffffffffffffffffffff")),
        ("statement", json!("Sign in to take everything")),
        ("uri", json!(format!("{SELLER}/admin"))),
        ("resources", json!([format!("{SELLER}/admin")])),
        ("expirationTime", json!("2099-01-01T00:00:00.000Z")),
        ("requestId", json!("r1")),
        ("issuedAt", json!("2020-01-01T00:00:00.000Z")),
        (
            "address",
            json!(PrivateKeySigner::random().address().to_checksum(None)),
        ),
    ] {
        let mut tampered = fresh.clone();
        tampered["payload"][field] = value;
        let reason = refused(&app, &check(&tampered, &chains)).await;
        let expected = match field {
            "issuedAt" => "invalid_siwx_issued_at_too_old",
            _ => "invalid_siwx_signature",
        };
        assert_eq!(reason, expected, "tampered {field}");
    }
    let mut other_chain = fresh.clone();
    other_chain["payload"]["chainId"] = json!("eip155:8453");
    let both = [net.as_str(), "eip155:8453"];
    assert_eq!(
        refused(&app, &check(&other_chain, &both)).await,
        "invalid_siwx_signature"
    );
    // The untampered proof still passes: refusals do not burn its nonce.
    assert_eq!(verdict(&app, &check(&fresh, &chains)).await["valid"], true);

    // The seller's expectations.
    let p = sign(eoa.clone(), &net, challenge(), json!({})).await;
    let mut wrong_domain = check(&p, &chains);
    wrong_domain["domain"] = json!("shop.example.com");
    assert_eq!(
        refused(&app, &wrong_domain).await,
        "invalid_siwx_domain_mismatch"
    );
    let mut wrong_origin = check(&p, &chains);
    wrong_origin["uri"] = json!("https://127.0.0.1:4021/weather");
    assert_eq!(
        refused(&app, &wrong_origin).await,
        "invalid_siwx_uri_mismatch"
    );
    assert_eq!(
        refused(&app, &check(&p, &[SOLANA])).await,
        "invalid_siwx_chain_not_accepted"
    );
    let mut not_evm = p.clone();
    not_evm["payload"]["chainId"] = json!("eip155:abc");
    assert_eq!(
        refused(&app, &check(&not_evm, &chains)).await,
        "invalid_siwx_chain_id"
    );
    not_evm["payload"]["chainId"] = json!("cosmos:hub");
    assert_eq!(
        refused(&app, &check(&not_evm, &chains)).await,
        "invalid_siwx_unsupported_chain"
    );

    // The clock.
    let future = sign(
        eoa.clone(),
        &net,
        challenge(),
        json!({ "issuedAt": 60_000 }),
    )
    .await;
    assert_eq!(
        refused(&app, &check(&future, &chains)).await,
        "invalid_siwx_issued_at_in_future"
    );
    let old = sign(
        eoa.clone(),
        &net,
        challenge(),
        json!({ "issuedAt": -301_000 }),
    )
    .await;
    assert_eq!(
        refused(&app, &check(&old, &chains)).await,
        "invalid_siwx_issued_at_too_old"
    );
    let expired = sign(
        eoa.clone(),
        &net,
        challenge(),
        json!({ "expirationTime": -1000 }),
    )
    .await;
    assert_eq!(
        refused(&app, &check(&expired, &chains)).await,
        "invalid_siwx_expired"
    );
    let early = sign(
        eoa.clone(),
        &net,
        challenge(),
        json!({ "notBefore": 60_000 }),
    )
    .await;
    assert_eq!(
        refused(&app, &check(&early, &chains)).await,
        "invalid_siwx_not_yet_valid"
    );

    // Solana: valid once, tampered refused.
    let sol = json!({ "kind": "solana", "seedHex": SOLANA_SEED });
    let proof = sign(sol.clone(), SOLANA, challenge(), json!({})).await;
    let mut tampered = proof.clone();
    tampered["payload"]["statement"] = json!("Sign in to take everything");
    assert_eq!(
        refused(&app, &check(&tampered, &chains)).await,
        "invalid_siwx_signature"
    );
    let mut short = proof.clone();
    short["payload"]["signature"] = json!("3yZe7d");
    assert_eq!(
        refused(&app, &check(&short, &chains)).await,
        "invalid_siwx_malformed_signature"
    );
    let answer = verdict(&app, &check(&proof, &chains)).await;
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(
        answer["address"],
        json!("GmaDrppBC7P5ARKV8g3djiwP89vz1jLK23V2GBjuAEGB")
    );
    assert_eq!(
        refused(&app, &check(&proof, &chains)).await,
        "invalid_siwx_nonce"
    );

    // Unreadable requests are JSON errors, not panics; a bad proof is an outcome.
    let (status, body) = app
        .post("/sessions/verify", &json!({ "domain": DOMAIN }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errorId"].is_string(), "{body}");
    let (status, _) = app
        .post(
            "/sessions/verify",
            &json!({ "payload": {}, "domain": DOMAIN, "uri": "not a url", "chains": chains }),
        )
        .await;
    assert_eq!(status, 400);
    let garbage = json!({ "header": "!!!", "domain": DOMAIN, "uri": format!("{SELLER}/weather"), "chains": chains });
    assert_eq!(refused(&app, &garbage).await, "invalid_siwx_payload");
    let not_a_proof = json!({ "payload": [1, 2], "domain": DOMAIN, "uri": format!("{SELLER}/weather"), "chains": chains });
    assert_eq!(refused(&app, &not_a_proof).await, "invalid_siwx_payload");
    app.stop().await;
}

#[tokio::test]
async fn smart_wallet_proofs_erc1271_deployed_and_erc6492_undeployed() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = on(&chain, &db).await;
    let net = evm(&chain);
    let owner = PrivateKeySigner::random();
    // ERC-6492: a wallet the factory would deploy, not deployed.
    let salt = crate::harness::payment::random_b256();
    let predicted = chain.predict_wallet(owner.address(), salt).await;
    let undeployed = json!({
        "kind": "smart", "ownerKey": key_hex(&owner), "wallet": predicted.to_checksum(None),
        "factory": format!("{:#x}", chain.factory), "salt": salt.to_string(), "deployed": false,
    });
    let proof = sign(undeployed.clone(), &net, challenge(), json!({})).await;
    let mut tampered = proof.clone();
    tampered["payload"]["nonce"] = json!("ffffffffffffffffffffffffffffffff");
    assert_eq!(
        refused(&app, &check(&tampered, &[&net])).await,
        "invalid_siwx_signature"
    );
    let answer = verdict(&app, &check(&proof, &[&net])).await;
    assert_eq!(answer["valid"], true, "{answer}");
    assert!(
        chain.code_at(predicted).await.is_empty(),
        "a check deploys nothing"
    );
    // ERC-1271: a deployed wallet of the same owner.
    let wallet = chain
        .deploy(
            "SmartWallet",
            alloy::sol_types::SolValue::abi_encode(&owner.address()).into(),
        )
        .await;
    let deployed = json!({
        "kind": "smart", "ownerKey": key_hex(&owner), "wallet": wallet.to_checksum(None),
        "factory": format!("{:#x}", chain.factory), "salt": salt.to_string(), "deployed": true,
    });
    let proof = sign(deployed, &net, challenge(), json!({})).await;
    let answer = verdict(&app, &check(&proof, &[&net])).await;
    assert_eq!(answer["valid"], true, "{answer}");
    let mut tampered = proof.clone();
    tampered["payload"]["nonce"] = json!("ffffffffffffffffffffffffffffffff");
    assert_eq!(
        refused(&app, &check(&tampered, &[&net])).await,
        "invalid_siwx_signature"
    );
    // Someone else's signature for the wallet.
    let stranger = json!({
        "kind": "smart", "ownerKey": key_hex(&PrivateKeySigner::random()), "wallet": wallet.to_checksum(None),
        "factory": format!("{:#x}", chain.factory), "salt": salt.to_string(), "deployed": true,
    });
    let proof = sign(stranger, &net, challenge(), json!({})).await;
    assert_eq!(
        refused(&app, &check(&proof, &[&net])).await,
        "invalid_siwx_signature"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_nonce_is_accepted_by_one_replica_only() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let (a, b) = (on(&chain, &db).await, on(&chain, &db).await);
    let net = evm(&chain);
    let eoa = json!({ "kind": "eoa", "privateKey": key_hex(&PrivateKeySigner::random()) });
    for _ in 0..5 {
        let proof = sign(eoa.clone(), &net, challenge(), json!({})).await;
        let body = check(&proof, &[&net]);
        let (x, y) = tokio::join!(verdict(&a, &body), verdict(&b, &body));
        let valid = [&x, &y].iter().filter(|v| v["valid"] == true).count();
        assert_eq!(valid, 1, "{x} {y}");
        let refused = if x["valid"] == true { &y } else { &x };
        assert_eq!(refused["reason"], "invalid_siwx_nonce");
    }
    a.stop().await;
    b.stop().await;
}

/// Nonce claims are batched (proofs checked together share one statement): a burst of five
/// distinct proofs, each sent three times, spread over two replicas at once, so that copies of
/// one proof meet inside one batch and across two replicas' batches. Every proof is valid
/// exactly once, and every other copy is refused as a replay.
#[tokio::test]
async fn a_burst_of_proofs_and_their_copies_is_accepted_once_per_nonce() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let (a, b) = (on(&chain, &db).await, on(&chain, &db).await);
    let net = evm(&chain);
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let eoa = json!({ "kind": "eoa", "privateKey": key_hex(&PrivateKeySigner::random()) });
        let proof = sign(eoa, &net, challenge(), json!({})).await;
        bodies.push(check(&proof, &[&net]));
    }
    let sends = (0..15).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let (proof, body) = (i % 5, bodies[i % 5].clone());
        async move { (proof, verdict(app, &body).await) }
    });
    let answers = futures_util::future::join_all(sends).await;
    for proof in 0..5 {
        let mine: Vec<&Value> = answers
            .iter()
            .filter(|(p, _)| *p == proof)
            .map(|(_, v)| v)
            .collect();
        let valid = mine.iter().filter(|v| v["valid"] == true).count();
        assert_eq!(valid, 1, "proof {proof}: {mine:?}");
        for v in mine.iter().filter(|v| v["valid"] != true) {
            assert_eq!(v["reason"], "invalid_siwx_nonce", "{v}");
        }
    }
    a.stop().await;
    b.stop().await;
}

/// The batched nonce claim meets a ledger that has gone away (Postgres refusing connections and
/// cutting the open ones, for real): the proof is answered 500 with an error id to search the
/// logs for, not a verdict, and nothing was claimed: once the ledger is back the same proof
/// passes, once. (The access gate's "no keys exist" is cached for the test's length and read
/// once before, so that the request reaches the claim instead of the gate's own 503.)
#[tokio::test]
async fn a_sign_in_while_the_ledger_is_down_is_a_5xx_and_burns_no_nonce() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let app = spawn_with(
        &chain,
        &db,
        Options::default()
            .env("X402__SESSIONS__ENABLED", "true")
            .env("X402__DATABASE__ACQUIRE_TIMEOUT_MS", "1000")
            .env("X402__AUTH__CACHE_MS", "600000"),
    )
    .await;
    let net = evm(&chain);
    let eoa = json!({ "kind": "eoa", "privateKey": key_hex(&PrivateKeySigner::random()) });
    let proof = sign(eoa, &net, challenge(), json!({})).await;
    let body = check(&proof, &[&net]);
    let mut elsewhere = body.clone();
    elsewhere["domain"] = json!("elsewhere.example");
    assert_eq!(
        refused(&app, &elsewhere).await,
        "invalid_siwx_domain_mismatch"
    );
    db.refuse_connections(true).await;
    let (status, answer) = app.post("/sessions/verify", &body).await;
    assert_eq!(status, 500, "the claim's own fault: {answer}");
    assert!(answer["errorId"].is_string(), "{answer}");
    db.refuse_connections(false).await;
    let passed = verdict(&app, &body).await;
    assert_eq!(passed["valid"], true, "the nonce was not burnt: {passed}");
    assert_eq!(refused(&app, &body).await, "invalid_siwx_nonce");
    app.stop().await;
}

async fn entitlement(app: &TestApp, payer: &str, resource: &str, within: u64) -> Value {
    let resource: String = url::form_urlencoded::byte_serialize(resource.as_bytes()).collect();
    let (status, body) = app
        .get(&format!(
            "/sessions/entitlement?payer={payer}&resource={resource}&within={within}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn entitlement_after_a_real_settle_on_both_ledgers() {
    let chain = Chain::start().await;
    for db in crate::harness::db::both().await {
        let app = on(&chain, &db).await;
        let payment: Payment = funded_payment(&chain).await;
        let settled = app.settle(&payment.body()).await;
        assert_eq!(settled["success"], true, "{settled}");
        let payer = payment.from.to_checksum(None);
        let paid = "http://127.0.0.1/weather";
        // Matched on origin + path: the query and a default port do not matter, the case of
        // the address neither.
        let yes = entitlement(
            &app,
            &payer.to_lowercase(),
            "http://127.0.0.1:80/weather?city=x",
            3600,
        )
        .await;
        assert_eq!(yes["entitled"], true, "{yes}");
        assert_eq!(yes["payment"]["transaction"], settled["transaction"]);
        assert_eq!(yes["payment"]["amount"], json!(payment.amount.to_string()));
        assert!(yes["payment"]["settledAt"].is_string());
        for (who, what) in [
            (PrivateKeySigner::random().address().to_checksum(None), paid),
            (payer.clone(), "http://127.0.0.1/other"),
            (payer.clone(), "http://localhost/weather"),
        ] {
            let no = entitlement(&app, &who, what, 3600).await;
            assert_eq!(no["entitled"], false, "{who} {what}: {no}");
            assert_eq!(no["payment"], Value::Null);
        }
        // Another payee's payments do not count when the seller names its own.
        let (_, scoped) = app
            .get(&format!("/sessions/entitlement?payer={payer}&resource={paid}&within=3600&payTo=0x000000000000000000000000000000000000dEaD"))
            .await;
        assert_eq!(scoped["entitled"], false, "{scoped}");
        // Outside the window.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let late = entitlement(&app, &payer, paid, 1).await;
        assert_eq!(late["entitled"], false, "{late}");
        // The combined form: the payer's own proof and its entitlement in one call.
        let eoa = json!({ "kind": "eoa", "privateKey": key_hex(&payment.payer) });
        let net = evm(&chain);
        // The payer of `Payment` signs for its own address (an EOA).
        let proof = sign(eoa, &net, challenge(), json!({})).await;
        let mut body = check(&proof, &[&net]);
        body["resource"] = json!(paid);
        body["within"] = json!(3600);
        let answer = verdict(&app, &body).await;
        assert_eq!(answer["valid"], true, "{answer}");
        assert_eq!(answer["entitled"], true, "{answer}");
        assert_eq!(answer["payment"]["transaction"], settled["transaction"]);
        let (status, _) = app
            .get("/sessions/entitlement?payer=x&resource=ftp://x/y&within=5")
            .await;
        assert_eq!(status, 400);
        app.stop().await;
    }
}

#[tokio::test]
async fn sessions_are_off_by_default() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, Options::default()).await;
    let (_, supported) = app.get("/supported").await;
    assert!(
        !supported["extensions"]
            .to_string()
            .contains("sign-in-with-x")
    );
    let (status, body) = app.post("/sessions/verify", &json!({})).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = app
        .get("/sessions/entitlement?payer=x&resource=http://a/b&within=5")
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

/// The README's seller-side block (between `README "Sessions", the seller's side {` and `// }`
/// in tests/interop/e2e-siwx.mjs), as the e2e test runs it.
fn seller_side_block() -> String {
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/e2e-siwx.mjs"
    ))
    .expect("e2e-siwx.mjs");
    let lines: Vec<&str> = script.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "// README \"Sessions\", the seller's side {")
        .expect("the block's opening marker");
    let len = lines[start..]
        .iter()
        .position(|l| l.trim() == "// }")
        .expect("the block's closing marker");
    // The block's lines, their common indentation removed.
    let block = &lines[start + 1..start + len];
    let indent = block
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    block
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_shows_the_seller_side_the_e2e_test_runs() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let block = seller_side_block();
    assert!(block.contains("/sessions/verify"), "{block}");
    assert!(
        readme.contains(&format!("```js\n{block}\n```")),
        "README.md's seller-side snippet differs from tests/interop/e2e-siwx.mjs; it should be:\n{block}"
    );
}

/// #18 end to end with the official SDKs (tests/interop/e2e-siwx.mjs): an `@x402/express` seller
/// is paid once by the `@x402/fetch` buyer through us; then the buyer signs in with the official
/// `@x402/extensions` client and the seller, asking our `POST /sessions/verify` (proof and
/// entitlement in one call), lets it in with no second payment; the spent proof, and a stranger's
/// valid proof, are refused. On chain: one transfer; in the ledger: one settled row.
#[tokio::test]
async fn an_sdk_seller_paid_once_lets_the_payer_sign_in_through_us_and_no_one_else() {
    const PRICE: u64 = 2500;
    const FUNDS: u64 = 1_000_000;
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = on(&chain, &db).await;
    let buyer = PrivateKeySigner::random();
    let stranger = PrivateKeySigner::random();
    let pay_to = PrivateKeySigner::random().address();
    chain
        .mint(
            chain.token,
            buyer.address(),
            alloy::primitives::U256::from(FUNDS),
        )
        .await;
    let job = json!({
        "facilitatorUrl": app.base,
        "chainId": chain.chain_id,
        "token": format!("{:#x}", chain.token),
        "tokenName": crate::harness::chain::TOKEN_NAME,
        "tokenVersion": crate::harness::chain::TOKEN_VERSION,
        "privateKey": key_hex(&buyer),
        "strangerKey": key_hex(&stranger),
        "payTo": format!("{pay_to:#x}"),
        "amount": PRICE.to_string(),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/e2e-siwx.mjs");
    let out = crate::harness::script::run_json("node", &[script.to_string()], Some(&job)).await;
    let net = evm(&chain);
    let payer = buyer.address().to_checksum(None);
    let calls = |case: &Value, op: &str| {
        case["facilitatorCalls"]
            .as_array()
            .map_or(0, |c| c.iter().filter(|c| c["op"] == op).count())
    };
    // One verdict of ours per case that sent a proof; what the seller asked and what we said.
    let only_verdict = |name: &str| -> Value {
        let case = &out[name];
        let verdicts = case["verdicts"].as_array().cloned().unwrap_or_default();
        assert_eq!(verdicts.len(), 1, "{name}: {case:#}");
        let v = &verdicts[0];
        assert_eq!(v["status"], 200, "{name}: {v}");
        assert_eq!(v["asked"]["resource"], out["sellerUrl"], "{name}: {v}");
        assert_eq!(v["asked"]["within"], 86400, "{name}: {v}");
        assert_eq!(v["asked"]["chains"], json!([net]), "{name}: {v}");
        v["verdict"].clone()
    };
    // A case the seller refused: 402, its handler never ran, nothing verified or settled.
    let refused_402 = |name: &str| {
        let case = &out[name];
        assert_eq!(case["status"], 402, "{name}: {case:#}");
        assert_eq!(case["handlerRuns"], 0, "{name}: {case:#}");
        assert_eq!(
            calls(case, "verify") + calls(case, "settle"),
            0,
            "{name}: {case:#}"
        );
    };
    // A case the seller let in on a proof: 200, the resource, no payment asked or made.
    let signed_in = |name: &str| {
        let case = &out[name];
        assert_eq!(case["status"], 200, "{name}: {case:#}");
        assert_eq!(case["body"]["weather"], "sunny", "{name}: {case:#}");
        assert_eq!(case["handlerRuns"], 1, "{name}: {case:#}");
        assert!(case["paymentResponse"].is_null(), "{name}: {case:#}");
        assert_eq!(
            calls(case, "verify") + calls(case, "settle"),
            0,
            "{name}: {case:#}"
        );
        assert!(case["sentProof"].is_string(), "{name}: {case:#}");
    };

    // The 402 carries the price and the official SIWX challenge for this chain.
    let unpaid = &out["unpaid"];
    assert_eq!(unpaid["status"], 402, "{unpaid:#}");
    let challenge = &unpaid["paymentRequired"]["extensions"]["sign-in-with-x"];
    assert_eq!(
        challenge["supportedChains"][0]["chainId"],
        json!(net),
        "{unpaid:#}"
    );
    assert!(challenge["info"]["nonce"].is_string(), "{unpaid:#}");
    assert!(unpaid["verdicts"].as_array().is_some_and(Vec::is_empty));

    // Before paying, the buyer's valid proof entitles it to nothing.
    refused_402("earlySignIn");
    let early = only_verdict("earlySignIn");
    assert_eq!(early["valid"], true, "{early}");
    assert_eq!(early["address"], json!(payer), "{early}");
    assert_eq!(early["entitled"], false, "{early}");
    assert_eq!(early["payment"], Value::Null, "{early}");

    // The one payment: verified and settled through us.
    let paid = &out["paid"];
    assert_eq!(paid["status"], 200, "{paid:#}");
    assert_eq!(paid["handlerRuns"], 1, "{paid:#}");
    assert_eq!(calls(paid, "settle"), 1, "{paid:#}");
    assert_eq!(paid["paymentResponse"]["success"], true, "{paid:#}");
    let tx = paid["paymentResponse"]["transaction"]
        .as_str()
        .expect("a transaction")
        .to_string();

    // Signed in on that payment, twice with fresh proofs.
    for name in ["signIn", "again"] {
        signed_in(name);
        let v = only_verdict(name);
        assert_eq!(v["valid"], true, "{name}: {v}");
        assert_eq!(v["address"], json!(payer), "{name}: {v}");
        assert_eq!(v["entitled"], true, "{name}: {v}");
        assert_eq!(v["payment"]["transaction"], json!(tx), "{name}: {v}");
        assert_eq!(
            v["payment"]["amount"],
            json!(PRICE.to_string()),
            "{name}: {v}"
        );
    }
    assert_ne!(out["signIn"]["sentProof"], out["again"]["sentProof"]);

    // The spent proof again: refused by its nonce.
    refused_402("replay");
    let replay = only_verdict("replay");
    assert_eq!(replay["valid"], false, "{replay}");
    assert_eq!(replay["reason"], "invalid_siwx_nonce", "{replay}");

    // Another wallet's valid proof: not entitled.
    refused_402("stranger");
    let other = only_verdict("stranger");
    assert_eq!(other["valid"], true, "{other}");
    assert_eq!(
        other["address"],
        json!(stranger.address().to_checksum(None)),
        "{other}"
    );
    assert_eq!(other["entitled"], false, "{other}");
    assert_eq!(other["payment"], Value::Null, "{other}");

    // Money moved once: one transfer from the buyer, the price at the payee; one ledger row.
    assert_eq!(chain.transfers_from(chain.token, buyer.address()).await, 1);
    assert_eq!(
        chain.balance(chain.token, pay_to).await,
        alloy::primitives::U256::from(PRICE)
    );
    assert_eq!(
        chain.balance(chain.token, buyer.address()).await,
        alloy::primitives::U256::from(FUNDS - PRICE)
    );
    assert_eq!(
        chain.transfers_from(chain.token, stranger.address()).await,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM settlements").await, 1);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM settlements WHERE state = 'settled' AND tx_id = '{tx}'"
        ))
        .await,
        1
    );
    app.stop().await;
}
