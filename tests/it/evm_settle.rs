//! Settling for real: balances move, the ledger records, replays and concurrent duplicates fail.

use alloy::primitives::U256;
use futures_util::future::join_all;

use crate::harness::{self, Chain, Db, Payment, spawn};

async fn happy_path(db: Db) {
    let chain = Chain::start().await;
    let payment = harness::funded_payment(&chain).await;
    let app = spawn(&chain, &db).await;
    let body = payment.body();

    let verdict = app.verify(&body).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    assert_eq!(verdict["payer"], payment.from.to_checksum(None));

    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["network"], payment.network);
    assert_eq!(settled["payer"], payment.from.to_checksum(None));
    let tx = settled["transaction"].as_str().expect("transaction");
    assert!(tx.starts_with("0x") && tx.len() == 66, "{tx}");

    assert_eq!(
        chain.balance(chain.token, payment.pay_to).await,
        payment.amount
    );
    assert_eq!(
        chain.balance(chain.token, payment.from).await,
        U256::from(1_000_000u64) - payment.amount
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM settlements WHERE state = 'settled' AND tx_id = '{tx}'"
        ))
        .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn valid_payment_verifies_and_settles_sqlite() {
    happy_path(Db::sqlite()).await;
}

#[tokio::test]
async fn valid_payment_verifies_and_settles_postgres() {
    happy_path(Db::postgres().await).await;
}

async fn replay(db: Db) {
    let chain = Chain::start().await;
    let payment = harness::funded_payment(&chain).await;
    let app = spawn(&chain, &db).await;
    let body = payment.body();
    assert_eq!(app.settle(&body).await["success"], true);

    let verdict = app.verify(&body).await;
    assert_eq!(verdict["isValid"], false);
    assert_eq!(
        verdict["invalidReason"], "invalid_exact_evm_nonce_already_used",
        "{verdict}"
    );

    let again = app.settle(&body).await;
    assert_eq!(again["success"], false);
    assert_eq!(
        again["errorReason"], "invalid_exact_evm_nonce_already_used",
        "{again}"
    );
    assert_eq!(again["transaction"], "");
    assert_eq!(chain.transfers_from(chain.token, payment.from).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn replayed_payment_is_rejected_sqlite() {
    replay(Db::sqlite()).await;
}

#[tokio::test]
async fn replayed_payment_is_rejected_postgres() {
    replay(Db::postgres().await).await;
}

async fn concurrent(db: Db) {
    let chain = Chain::start().await;
    let payment = harness::funded_payment(&chain).await;
    let app = spawn(&chain, &db).await;
    let body = payment.body();
    let answers = join_all((0..20).map(|_| app.settle(&body))).await;
    let wins = answers.iter().filter(|a| a["success"] == true).count();
    assert_eq!(wins, 1, "exactly one settle succeeds: {answers:?}");
    for a in answers.iter().filter(|a| a["success"] != true) {
        let reason = a["errorReason"].as_str().unwrap_or_default();
        assert!(
            reason == "duplicate_settlement" || reason == "invalid_exact_evm_nonce_already_used",
            "unexpected loser answer {a}"
        );
    }
    assert_eq!(chain.transfers_from(chain.token, payment.from).await, 1);
    assert_eq!(
        chain.balance(chain.token, payment.pay_to).await,
        payment.amount
    );
    assert_eq!(db.count("SELECT count(*) FROM settlements").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_settles_move_money_once_sqlite() {
    concurrent(Db::sqlite()).await;
}

#[tokio::test]
async fn twenty_concurrent_settles_move_money_once_postgres() {
    concurrent(Db::postgres().await).await;
}

#[tokio::test]
async fn distinct_payments_settle_concurrently_on_a_signer_pool() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let app = harness::spawn_with(
        &chain,
        &db,
        harness::Options {
            signers: 3,
            ..Default::default()
        },
    )
    .await;
    let mut payments = Vec::new();
    for _ in 0..12 {
        payments.push(harness::funded_payment(&chain).await);
    }
    let bodies: Vec<_> = payments.iter().map(Payment::body).collect();
    let answers = join_all(bodies.iter().map(|b| app.settle(b))).await;
    for (a, p) in answers.iter().zip(&payments) {
        assert_eq!(a["success"], true, "{a}");
        assert_eq!(chain.balance(chain.token, p.pay_to).await, p.amount);
    }
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE state = 'settled'")
            .await,
        12
    );
    assert_eq!(
        db.count("SELECT count(DISTINCT signer) FROM settlements")
            .await,
        3
    );
    app.stop().await;
}

#[tokio::test]
async fn v1_payload_settles() {
    let chain = Chain::start_with(84532, &[]).await;
    let payment = harness::funded_payment(&chain).await.v1();
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    let body = payment.body();
    let verdict = app.verify(&body).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["network"], "base-sepolia");
    assert_eq!(
        chain.balance(chain.token, payment.pay_to).await,
        payment.amount
    );
    app.stop().await;
}

#[tokio::test]
async fn erc1271_smart_wallet_pays() {
    let chain = Chain::start().await;
    let mut payment = Payment::new(&chain);
    // A deployed wallet owned by the payer key; the token asks it through ERC-1271.
    let wallet = chain
        .deploy(
            "SmartWallet",
            alloy::sol_types::SolValue::abi_encode(&payment.payer.address()).into(),
        )
        .await;
    payment.from = wallet;
    chain.mint(chain.token, wallet, U256::from(50_000u64)).await;
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    let body = payment.body();
    let verdict = app.verify(&body).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(
        chain.balance(chain.token, payment.pay_to).await,
        payment.amount
    );
    app.stop().await;
}

#[tokio::test]
async fn erc6492_counterfactual_wallet_is_deployed_and_pays() {
    let chain = Chain::start().await;
    let mut payment = Payment::new(&chain);
    let salt = crate::harness::payment::random_b256();
    let wallet = chain.predict_wallet(payment.payer.address(), salt).await;
    payment.from = wallet;
    payment.counterfactual = Some((chain.factory, salt));
    chain.mint(chain.token, wallet, U256::from(50_000u64)).await;
    assert!(
        chain.code_at(wallet).await.is_empty(),
        "wallet starts undeployed"
    );
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    let body = payment.body();
    let verdict = app.verify(&body).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    let settled = app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert!(
        !chain.code_at(wallet).await.is_empty(),
        "settle deployed the wallet"
    );
    assert_eq!(
        chain.balance(chain.token, payment.pay_to).await,
        payment.amount
    );
    app.stop().await;
}

#[tokio::test]
async fn a_signer_nonce_taken_elsewhere_is_recovered_from() {
    use alloy::network::{EthereumWallet, TransactionBuilder};
    use alloy::providers::{Provider, ProviderBuilder};
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    let first = harness::funded_payment(&chain).await;
    assert_eq!(app.settle(&first.body()).await["success"], true);
    // Another process uses the facilitator's key behind its back: the cached nonce is stale,
    // the node answers "nonce too low", and the settle must re-read the nonce and still succeed.
    let key = app.signers[0].clone();
    let intruder = ProviderBuilder::new()
        .wallet(EthereumWallet::from(key.clone()))
        .connect_http(chain.url.parse().expect("url"));
    let tx = alloy::rpc::types::TransactionRequest::default()
        .with_to(key.address())
        .with_value(U256::from(1));
    intruder
        .send_transaction(tx)
        .await
        .expect("sent")
        .get_receipt()
        .await
        .expect("mined");
    let second = harness::funded_payment(&chain).await;
    let settled = app.settle(&second.body()).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(
        chain.balance(chain.token, second.pay_to).await,
        second.amount
    );
    assert_eq!(
        chain
            .provider
            .get_transaction_count(key.address())
            .await
            .expect("nonce"),
        3
    );
    app.stop().await;
}

/// A settle whose gas estimate is above the network's `max_gas_limit` is refused before a nonce
/// is taken, for every EVM payment kind, with the reason of a failed simulation (it would not
/// run as it stands), not that of a mined, reverted transaction: nothing was sent, the claim is
/// released, nothing moves.
#[tokio::test]
async fn a_gas_estimate_above_the_cap_is_refused_unsent() {
    use crate::harness::permit2::Kind;
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let options = crate::permit2_exact::permit2_options()
        .env("X402__NETWORKS__LOCAL__MAX_GAS_LIMIT", "30000");
    let app = harness::spawn_with(&chain, &db, options).await;
    let facilitator = app.signers[0].address();

    let eip3009 = harness::funded_payment(&chain).await;
    let exact = harness::funded_permit2(&chain, Kind::Exact, facilitator, true).await;
    let upto = harness::funded_permit2(&chain, Kind::Upto, facilitator, true).await;
    let cases = [
        (
            "EIP-3009",
            eip3009.body(),
            "invalid_exact_evm_transaction_simulation_failed",
        ),
        ("Permit2 exact", exact.body(), "permit2_simulation_failed"),
        (
            "upto",
            upto.settle_body(U256::from(1000u64)),
            "permit2_simulation_failed",
        ),
    ];
    for (case, body, reason) in cases {
        let answer = app.settle(&body).await;
        assert_eq!(answer["success"], false, "{case}: {answer}");
        assert_eq!(answer["errorReason"], reason, "{case}: {answer}");
        assert_eq!(answer["transaction"], "", "{case}: {answer}");
        assert!(
            answer["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("exceeds this network's cap of 30000")),
            "{case}: {answer}"
        );
    }
    assert_eq!(chain.balance(chain.token, eip3009.pay_to).await, U256::ZERO);
    for p in [&exact, &upto] {
        assert_eq!(
            chain.balance(chain.permit_token, p.pay_to).await,
            U256::ZERO
        );
    }
    assert_eq!(db.count("SELECT count(*) FROM settlements").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM settlement_txs").await,
        0,
        "no transaction was recorded"
    );
    app.stop().await;
}
