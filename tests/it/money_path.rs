//! The money path under attack and faults (docs/ledger.md, "Guarantees"): a stranger who copies
//! a pending payment's public fields, a payer who signs two authorizations with one nonce, an
//! RPC that lags, refuses or answers slowly, a ledger that fails after the chain has spoken.
//! Each test names the review finding it holds (../shared/docs/reviews/ledger-settle-2026-12.md
//! is where they were found; docs/ledger.md states the guarantee).

use std::time::{Duration, Instant};

use alloy::primitives::Bytes;
use alloy::signers::local::PrivateKeySigner;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::harness::proxy::{Mode, RpcProxy};
use crate::harness::{self, Chain, Db, Options, Payment, TestApp, spawn_with};

/// Polls the ledger until `sql` (a count) reaches `want`, for at most `secs`.
pub async fn eventually(db: &Db, sql: &str, want: i64, secs: u64) {
    let started = Instant::now();
    loop {
        let got = db.count(sql).await;
        if got == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "`{sql}` stayed {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A slow chain: settles answer `settlement_pending` after 1 s, and the background reconciler
/// stays out of the way so that what a request does is what the test sees.
fn slow_chain_options() -> Options {
    Options::default()
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "1000")
        .env("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000")
}

/// What a stranger can build from a pending payment's public fields (`from`, `nonce`, `asset`
/// are in the mempool): the same authorization key, paid to the stranger, with `tamper` applied.
fn stranger_body(p: &Payment, tamper: &dyn Fn(&mut Payment) -> Bytes) -> Value {
    let mut evil = p.clone();
    let thief = PrivateKeySigner::random().address();
    evil.pay_to = thief;
    evil.to = thief;
    let signature = tamper(&mut evil);
    evil.body_with_signature(&signature)
}

/// Starts a settle of `body` (on a chain that does not mine) and returns once its transaction
/// is recorded, so that the test can fault what the settle does next; the handle yields the
/// settle's answer.
async fn settle_until_submitted(
    app: &TestApp,
    db: &Db,
    body: Value,
) -> JoinHandle<(StatusCode, Value)> {
    let url = format!("{}/settle", app.base);
    let in_flight = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("sent");
        (r.status(), r.json::<Value>().await.expect("json"))
    });
    eventually(
        db,
        "SELECT count(*) FROM settlements WHERE state = 'submitted'",
        1,
        10,
    )
    .await;
    in_flight
}

async fn receipt(app: &TestApp, tx: &str) -> (StatusCode, Value) {
    app.get(&format!("/settlements/{tx}")).await
}

/// H1: a body that copies a pending payment's `from`/`nonce`/`asset` never takes its row over,
/// whatever else it says (a garbage signature, `validBefore: 0`, another `to`): the real
/// payment ends `settled`, its receipt is found, and the real client's retry gets the success.
#[tokio::test]
async fn a_stranger_cannot_make_a_pending_payment_look_failed() {
    type Tamper = fn(&mut Payment) -> Bytes;
    let garbage: Tamper = |_| Bytes::from(vec![0x11; 65]);
    let expired: Tamper = |p| {
        p.valid_before = 0;
        Bytes::from(vec![0x11; 65])
    };
    for (tamper, db) in [(garbage, Db::sqlite()), (expired, Db::postgres().await)] {
        let chain = Chain::start().await;
        let app = spawn_with(&chain, &db, slow_chain_options()).await;
        let p = harness::funded_payment(&chain).await;
        let body = p.body();
        chain.set_automine(false).await;
        let first = app.settle(&body).await;
        assert_eq!(first["errorReason"], "settlement_pending", "{first}");
        let tx = first["transaction"].as_str().expect("tx").to_string();

        let attack = stranger_body(&p, &tamper);
        let during = app.settle(&attack).await;
        assert_eq!(during["success"], false, "{during}");
        chain.mine().await;
        let after = app.settle(&attack).await;
        assert_eq!(after["success"], false, "{after}");
        assert_ne!(
            after["errorReason"], "invalid_exact_evm_transfer_event_mismatch",
            "the stranger's body was judged against the real transaction: {after}"
        );

        let retry = app.settle(&body).await;
        assert_eq!(
            retry["success"], true,
            "the paying client is owed its success: {retry}"
        );
        assert_eq!(retry["transaction"], tx.as_str());
        let (status, row) = receipt(&app, &tx).await;
        assert_eq!(status, StatusCode::OK, "{row}");
        assert_eq!(row["state"], "settled", "{row}");
        assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
        app.stop().await;
    }
}

/// H1, second way in: the payer signs two valid authorizations with the same nonce, to
/// different payees. The second never takes over the first's row while it is pending, and is
/// refused once the first is settled.
#[tokio::test]
async fn a_second_authorization_with_the_same_nonce_never_takes_the_row_over() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, slow_chain_options()).await;
    let p = harness::funded_payment(&chain).await;
    let mut twin = p.clone();
    let other = PrivateKeySigner::random().address();
    twin.pay_to = other;
    twin.to = other;
    chain.set_automine(false).await;
    let first = app.settle(&p.body()).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    let tx = first["transaction"].as_str().expect("tx").to_string();

    let during = app.settle(&twin.body()).await;
    assert_eq!(during["success"], false, "{during}");
    assert_eq!(
        during["transaction"], "",
        "the twin must not be told about (or handed) the first payment's transaction: {during}"
    );
    chain.mine().await;
    chain.set_automine(true).await;
    let after = app.settle(&twin.body()).await;
    assert_eq!(
        after["errorReason"], "invalid_exact_evm_nonce_already_used",
        "{after}"
    );
    let retry = app.settle(&p.body()).await;
    assert_eq!(retry["success"], true, "{retry}");
    assert_eq!(retry["transaction"], tx.as_str());
    assert_eq!(chain.balance(chain.token, p.pay_to).await, p.amount);
    assert_eq!(
        chain.balance(chain.token, other).await,
        alloy::primitives::U256::ZERO
    );
    app.stop().await;
}

/// H1 repair: a row that says `failed` although its transaction moved the money (an earlier
/// misjudgment, made here by writing the ledger directly: the one way to get such a row on
/// today's code) is re-examined when the payment comes again: it is repaired to `settled` with
/// its transaction, never deleted, and the retry gets the success.
#[tokio::test]
async fn a_failed_row_whose_transaction_moved_the_money_is_repaired_not_deleted() {
    for db in [Db::sqlite(), Db::postgres().await] {
        let chain = Chain::start().await;
        let app = spawn_with(&chain, &db, Options::default()).await;
        let p = harness::funded_payment(&chain).await;
        let settled = app.settle(&p.body()).await;
        assert_eq!(settled["success"], true, "{settled}");
        let tx = settled["transaction"].as_str().expect("tx").to_string();
        db.execute(
            "UPDATE settlements SET state = 'failed', \
             error_reason = 'invalid_exact_evm_transfer_event_mismatch', settled_at = NULL",
        )
        .await;

        let twin_payee = PrivateKeySigner::random().address();
        let mut twin = p.clone();
        twin.pay_to = twin_payee;
        twin.to = twin_payee;
        let stranger = app.settle(&twin.body()).await;
        assert_eq!(
            stranger["errorReason"], "invalid_exact_evm_nonce_already_used",
            "{stranger}"
        );
        let (status, row) = receipt(&app, &tx).await;
        assert_eq!(
            (status, &row["state"]),
            (StatusCode::OK, &json!("settled")),
            "{row}"
        );

        let retry = app.settle(&p.body()).await;
        assert_eq!(retry["success"], true, "{retry}");
        assert_eq!(retry["transaction"], tx.as_str());
        assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
        app.stop().await;
    }
}

/// H3: one deadline per request. Every RPC answer takes 2 s (a struggling provider) and the
/// defaults are in force: the settle answers within its deadline (15 s from arrival, inside the
/// SDK clients' 30 s) in the settle shape — never the HTTP layer's bare 503 at 25 s — and if it
/// sent anything, the client's retry gets the success.
#[tokio::test]
async fn a_slow_rpc_never_outlives_the_settle_deadline() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let proxy = RpcProxy::start(&chain.url).await;
    let options = Options {
        rpc_url: Some(proxy.url.clone()),
        ..Options::default()
    }
    .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "15000")
    .env("X402__SETTLEMENT__LEASE_MARGIN_MS", "10000");
    let app = spawn_with(&chain, &db, options).await;
    let p = harness::funded_payment(&chain).await;
    proxy.set(Mode::Delay(Duration::from_secs(2)));
    let started = Instant::now();
    let (status, answer) = app.post("/settle", &p.body()).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(16_500),
        "answered after {took:?}: {status} {answer}"
    );
    assert!(
        answer["success"].is_boolean() && answer["network"].is_string(),
        "settle-shaped: {answer}"
    );
    proxy.set(Mode::Forward);
    match (status, answer["errorReason"].as_str()) {
        (StatusCode::OK, None) => assert_eq!(answer["success"], true),
        (StatusCode::OK, Some("settlement_pending")) => {
            let tx = answer["transaction"].as_str().expect("tx");
            assert_eq!(tx.len(), 66, "{answer}");
            let retry = app.settle(&p.body()).await;
            assert_eq!(retry["success"], true, "{retry}");
            assert_eq!(retry["transaction"], tx);
        }
        (s, _) if s.is_server_error() => {
            assert_eq!(answer["transaction"], "", "{answer}");
            assert!(answer["errorId"].is_string(), "{answer}");
            let retry = app.settle(&p.body()).await;
            assert_eq!(
                retry["success"], true,
                "nothing was sent, so it settles now: {retry}"
            );
        }
        other => panic!("unexpected answer {other:?}: {answer}"),
    }
    assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
    app.stop().await;
}

/// H3, the server's own bound: a settle whose ledger write is held up (a lock taken on the
/// settlements table by another session) past `server.request_timeout_ms` is answered from
/// what the chain said (it confirmed: success) instead of a bare timeout, and when the write
/// lands, a replay of the same payload is not answered again.
#[tokio::test]
async fn a_settle_cut_off_by_the_server_timeout_still_answers_from_the_chain() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let options = Options::default()
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "2000")
        .env("X402__SERVER__REQUEST_TIMEOUT_MS", "3000")
        .env("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000");
    let app = spawn_with(&chain, &db, options).await;
    let p = harness::funded_payment(&chain).await;
    chain.set_automine(false).await;
    // Once the transaction is recorded, lock the table, so that recording its outcome waits;
    // then mine it.
    let in_flight = settle_until_submitted(&app, &db, p.body()).await;
    let lock = db
        .hold_lock("LOCK TABLE settlements IN EXCLUSIVE MODE")
        .await;
    chain.mine().await;
    let (status, answer) = in_flight.await.expect("joined");
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["success"], true, "the chain confirmed it: {answer}");
    let tx = answer["transaction"].as_str().expect("tx").to_string();
    drop(lock);
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled' AND pending_reported = 0",
        1,
        15,
    )
    .await;
    chain.set_automine(true).await;
    let replay = app.settle(&p.body()).await;
    assert_eq!(
        replay["errorReason"], "invalid_exact_evm_nonce_already_used",
        "answered twice: {replay}"
    );
    assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
    let _ = tx;
    app.stop().await;
}

/// M1: once the chain has confirmed the transfer, a ledger fault (the database refusing every
/// connection) does not turn the answer into a failure: the client gets the success, and the
/// row is repaired once the database is back.
#[tokio::test]
async fn a_ledger_fault_after_the_chain_confirmed_still_answers_success() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let app = spawn_with(
        &chain,
        &db,
        Options::default().env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "8000"),
    )
    .await;
    let p = harness::funded_payment(&chain).await;
    chain.set_automine(false).await;
    let in_flight = settle_until_submitted(&app, &db, p.body()).await;
    db.refuse_connections(true).await;
    chain.mine().await;
    let (status, answer) = in_flight.await.expect("joined");
    db.refuse_connections(false).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["success"], true, "the chain confirmed it: {answer}");
    chain.set_automine(true).await;
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        1,
        20,
    )
    .await;
    assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
    app.stop().await;
}

/// H2, scenario A: the first RPC URL refuses connections. Sends go on to the next URL (the same
/// bytes: a refused connection never carried them), so every payment settles.
#[tokio::test]
async fn a_refused_primary_rpc_does_not_stop_settling() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let dead = crate::harness::proxy::closed_url().await;
    let options = Options::default().env(
        "X402__NETWORKS__LOCAL__RPC_URLS",
        format!("{dead},{}", chain.url),
    );
    let app = spawn_with(&chain, &db, options).await;
    for _ in 0..3 {
        let p = harness::funded_payment(&chain).await;
        let answer = app.settle(&p.body()).await;
        assert_eq!(answer["success"], true, "{answer}");
    }
    app.stop().await;
}

/// H2: the first RPC URL takes connections but never answers a send. The same bytes go to the
/// next URL, so payments settle instead of waiting for a node that will never answer.
#[tokio::test]
async fn a_primary_rpc_that_swallows_sends_does_not_stop_settling() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let proxy = RpcProxy::start(&chain.url).await;
    proxy.set(Mode::DropSends);
    let options = Options::default()
        .env(
            "X402__NETWORKS__LOCAL__RPC_URLS",
            format!("{},{}", proxy.url, chain.url),
        )
        .env("X402__NETWORKS__LOCAL__RPC_TIMEOUT_MS", "1000");
    let app = spawn_with(&chain, &db, options).await;
    for _ in 0..2 {
        let p = harness::funded_payment(&chain).await;
        let answer = app.settle(&p.body()).await;
        assert_eq!(answer["success"], true, "{answer}");
    }
    app.stop().await;
}

/// H2, the nonce gap: every send of payment 1 is swallowed until its authorization expires, so
/// its nonce never reaches a mempool. The RPC then recovers; payment 2 (the next nonce) must
/// not wait forever behind the gap: the lane is healed without a restart.
#[tokio::test]
async fn a_nonce_that_never_reached_a_mempool_does_not_stall_the_signer() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let proxy = RpcProxy::start(&chain.url).await;
    let options = Options {
        rpc_url: Some(proxy.url.clone()),
        ..Options::default()
    }
    .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "1500")
    .env("X402__NETWORKS__LOCAL__RPC_TIMEOUT_MS", "500")
    .env("X402__NETWORKS__LOCAL__STUCK_AFTER_MS", "1000")
    .env("X402__NETWORKS__LOCAL__EXPIRY_MARGIN_SECS", "1");
    let app = spawn_with(&chain, &db, options).await;
    let mut p1 = harness::funded_payment(&chain).await;
    p1.valid_before = harness::payment::now() + 8;
    proxy.set(Mode::DropSends);
    let first = app.settle(&p1.body()).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    // Let the authorization expire on chain (blocks carry the time), with sends still lost.
    tokio::time::sleep(Duration::from_secs(10)).await;
    chain.mine().await;
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'failed'",
        1,
        30,
    )
    .await;
    proxy.set(Mode::Forward);
    let p2 = harness::funded_payment(&chain).await;
    // Its answer does not matter (it may wait behind the gap): where the money ends does.
    let _ = app.post("/settle", &p2.body()).await;
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        1,
        30,
    )
    .await;
    assert_eq!(chain.transfers_from(chain.token, p2.from).await, 1);
    assert_eq!(
        chain.transfers_from(chain.token, p1.from).await,
        0,
        "payment 1 expired unpaid"
    );
    app.stop().await;
}

/// H2, scenario B: a fee spike leaves the payment's transaction unminable (its fee cap is below
/// the base fee). It is replaced at the same nonce with a higher fee while the authorization is
/// valid, and the payment is mined by the replacement.
#[tokio::test]
async fn a_transaction_stuck_under_a_fee_spike_is_replaced() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let options = Options::default()
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "1500")
        .env("X402__NETWORKS__LOCAL__STUCK_AFTER_MS", "1000");
    let app = spawn_with(&chain, &db, options).await;
    let p = harness::funded_payment(&chain).await;
    // The transaction reaches the mempool at today's fees; then the base fee jumps 1000-fold
    // for the next block, which leaves it out: it waits there, priced below the chain.
    chain.set_automine(false).await;
    let first = app.settle(&p.body()).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    let stuck = first["transaction"].as_str().expect("tx").to_string();
    let block: Value = chain.rpc("eth_getBlockByNumber", ("latest", false)).await;
    let base = u128::from_str_radix(
        block["baseFeePerGas"]
            .as_str()
            .expect("base fee")
            .trim_start_matches("0x"),
        16,
    )
    .expect("hex");
    chain
        .rpc(
            "anvil_setNextBlockBaseFeePerGas",
            (format!("{:#x}", base * 1000),),
        )
        .await;
    chain.mine().await;
    assert!(
        !chain.has_receipt(&stuck).await,
        "left out of the spiked block"
    );
    chain.set_automine(true).await;
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        1,
        30,
    )
    .await;
    assert!(
        !chain.has_receipt(&stuck).await,
        "the underpriced transaction never mined"
    );
    let retry = app.settle(&p.body()).await;
    assert_eq!(retry["success"], true, "{retry}");
    assert_ne!(
        retry["transaction"],
        stuck.as_str(),
        "mined by the replacement"
    );
    assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
    app.stop().await;
}

/// M2: "failed, no money moved" is never decided by a node that does not have the transaction.
/// The payment is mined on the real node; then that node stops answering and the only node
/// left is another chain with the same id (a stale or forked node) that never saw it. After the
/// authorization's expiry, the payment is not recorded as failed; once the real node answers
/// again, it is settled.
#[tokio::test]
async fn a_node_that_never_saw_the_transaction_cannot_fail_it() {
    let chain = Chain::start().await;
    let other = Chain::start().await;
    let db = Db::sqlite();
    let proxy = RpcProxy::start(&chain.url).await;
    let options = Options::default()
        .env(
            "X402__NETWORKS__LOCAL__RPC_URLS",
            format!("{},{}", proxy.url, other.url),
        )
        .env("X402__NETWORKS__LOCAL__RPC_TIMEOUT_MS", "500")
        .env("X402__NETWORKS__LOCAL__EXPIRY_MARGIN_SECS", "1")
        // Long enough for the verdict to be reached (not cut short by the deadline): then it
        // must come out "no verdict" because one node does not answer.
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "5000")
        // The client's late retry does the reconciling, so that its answer is the verdict.
        .env("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000");
    let app = spawn_with(&chain, &db, options).await;
    let mut p = harness::funded_payment(&chain).await;
    p.valid_before = harness::payment::now() + 7;
    chain.set_automine(false).await;
    let first = app.settle(&p.body()).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    chain.mine().await; // the money moves on the real chain
    proxy.set(Mode::Hang);
    tokio::time::sleep(Duration::from_secs(8)).await;
    other.mine().await; // the other node's head is past the expiry too
    let late = app.settle(&p.body()).await;
    assert_eq!(late["errorReason"], "settlement_pending", "{late}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE state = 'failed'")
            .await,
        0,
        "a node without the transaction recorded a paid payment as failed"
    );
    proxy.set(Mode::Forward);
    let settled = app.settle(&p.body()).await;
    assert_eq!(settled["success"], true, "{settled}");
    app.stop().await;
}

/// M5: the payment-identifier is idempotent where it matters: a retry of a settled payment with
/// its id gets the stored success even after the authorization expired, and even if the seller
/// changed the envelope (the resource description) in between.
#[tokio::test]
async fn a_payment_identifier_retry_gets_the_stored_success_after_expiry() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, Options::default()).await;
    let mut p = harness::funded_payment(&chain).await;
    p.valid_before = harness::payment::now() + 7;
    p.extensions =
        Some(json!({ "payment-identifier": { "info": { "id": "pay_0123456789abcdef0123" } } }));
    let first = app.settle(&p.body()).await;
    assert_eq!(first["success"], true, "{first}");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut again = p.body();
    again["paymentPayload"]["resource"]["description"] = json!("weather, now with wind");
    let retry = app.settle(&again).await;
    assert_eq!(retry["success"], true, "{retry}");
    assert_eq!(retry["transaction"], first["transaction"]);
    app.stop().await;
}

/// M5: `/verify` writes nothing for a payment-identifier, so nobody can reserve ids (or grow the
/// ledger) without settling; and ids are scoped to the payer and payee, so one payer's id never
/// blocks another's payment.
#[tokio::test]
async fn payment_identifiers_are_claimed_by_settles_and_scoped() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let app = spawn_with(&chain, &db, Options::default()).await;
    let id = json!({ "payment-identifier": { "info": { "id": "pay_shared_id_0000000001" } } });
    let mut squatter = harness::funded_payment(&chain).await;
    squatter.extensions = Some(id.clone());
    assert_eq!(app.verify(&squatter.body()).await["isValid"], true);

    let mut a = harness::funded_payment(&chain).await;
    a.extensions = Some(id.clone());
    a.pay_to = squatter.pay_to;
    a.to = squatter.pay_to;
    let first = app.settle(&a.body()).await;
    assert_eq!(first["success"], true, "a verify reserved nothing: {first}");
    let mut b = harness::funded_payment(&chain).await;
    b.extensions = Some(id.clone());
    b.pay_to = squatter.pay_to;
    b.to = squatter.pay_to;
    let second = app.settle(&b.body()).await;
    assert_eq!(
        second["success"], true,
        "another payer's id is another id: {second}"
    );

    let mut reuse = harness::funded_payment(&chain).await;
    reuse.payer = a.payer.clone();
    reuse.from = a.from;
    chain
        .mint(
            chain.token,
            a.from,
            alloy::primitives::U256::from(1_000_000u64),
        )
        .await;
    reuse.extensions = Some(id);
    reuse.pay_to = a.pay_to;
    reuse.to = a.pay_to;
    let (status, conflict) = app.post("/settle", &reuse.body()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["errorReason"], "payment_identifier_conflict");
    app.stop().await;
}

/// Confirmations: with `confirmations = 2`, a transfer in the newest block is not yet an
/// answer; one more block makes it one.
#[tokio::test]
async fn a_settle_waits_for_the_configured_confirmations() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let options = Options::default()
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "2000")
        .env("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000")
        .env("X402__NETWORKS__LOCAL__CONFIRMATIONS", "2");
    let app = spawn_with(&chain, &db, options).await;
    let p = harness::funded_payment(&chain).await;
    let first = app.settle(&p.body()).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    chain.mine().await;
    let retry = app.settle(&p.body()).await;
    assert_eq!(retry["success"], true, "{retry}");
    app.stop().await;
}

/// A reorg: the block that carried a settled payment vanishes (the chain is reverted to before
/// it). The settled row is re-examined instead of staying `settled` with no transaction on
/// chain: the recorded bytes are sent again and mined, and the payee is paid exactly once.
#[tokio::test]
async fn a_settled_payment_whose_block_vanished_is_re_examined() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let options = Options::default().env("X402__NETWORKS__LOCAL__FINALITY_DEPTH", "100");
    let app = spawn_with(&chain, &db, options).await;
    let p = harness::funded_payment(&chain).await;
    let snapshot: Value = chain.rpc("evm_snapshot", ()).await;
    let settled = app.settle(&p.body()).await;
    assert_eq!(settled["success"], true, "{settled}");
    let tx = settled["transaction"].as_str().expect("tx").to_string();
    let _: Value = chain.rpc("evm_revert", (snapshot,)).await;
    chain.mine().await;
    assert!(
        !chain.has_receipt(&tx).await,
        "the reorg removed the transaction"
    );
    let started = Instant::now();
    while !chain.has_receipt(&tx).await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the settled row was never re-examined"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        1,
        10,
    )
    .await;
    assert_eq!(chain.balance(chain.token, p.pay_to).await, p.amount);
    app.stop().await;
}

/// L3: the reconciler works only on rows of networks this process serves: a row another
/// deployment left for a network not configured here is not taken over, released or deferred.
#[tokio::test]
async fn the_reconciler_leaves_rows_of_networks_it_does_not_serve_alone() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, Options::default()).await;
    db.execute(
        "INSERT INTO settlements (replay_key, network, scheme, x402_version, payer, pay_to, \
         asset, amount, request, state, claim_token, lease_until, created_at, updated_at, \
         fingerprint) VALUES ('elsewhere', 'eip155:999999', 'exact', 2, '0xp', '0xq', '0xa', '1', \
         '{}', 'claimed', 'theirs', 0, 1, 1, 'fp')",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM settlements WHERE replay_key = 'elsewhere' \
             AND claim_token = 'theirs' AND reconciles = 0"
        )
        .await,
        1,
        "the row was touched by a reconciler that cannot finish it"
    );
    app.stop().await;
}

/// L3: the start-up reconcile pass is bounded in time: with the RPC hanging and unfinished rows
/// waiting, the service still starts within seconds (the background reconciler carries on).
#[tokio::test]
async fn a_hanging_rpc_does_not_hold_start_up() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let proxy = RpcProxy::start(&chain.url).await;
    let options = || {
        Options {
            rpc_url: Some(proxy.url.clone()),
            ..Options::default()
        }
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "1000")
        .env("X402__NETWORKS__LOCAL__RPC_TIMEOUT_MS", "3000")
    };
    // The restarted process gets long deadlines, so that each row's reconcile can run long
    // against the hanging RPC and the pass would outlast the start-up bound.
    let restarted = || {
        Options {
            rpc_url: Some(proxy.url.clone()),
            ..Options::default()
        }
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "15000")
        .env("X402__NETWORKS__LOCAL__RPC_TIMEOUT_MS", "3000")
    };
    let app = spawn_with(&chain, &db, options()).await;
    let mut payments = Vec::new();
    for _ in 0..10 {
        payments.push(harness::funded_payment(&chain).await);
    }
    chain.set_automine(false).await;
    for p in &payments {
        let pending = app.settle(&p.body()).await;
        assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    }
    app.stop().await;
    db.execute("UPDATE settlements SET retry_at = 0, lease_until = 0")
        .await;
    proxy.set(Mode::Hang);
    let started = Instant::now();
    let again = spawn_with(&chain, &db, restarted()).await;
    let took = started.elapsed();
    // 5 s of start-up probe against the hanging RPC, then at most 10 s of reconcile pass.
    assert!(took < Duration::from_secs(18), "start-up took {took:?}");
    let (status, _) = again.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    again.stop().await;
}

/// Review of #10, H-A: the first URL takes the payment's transaction but never answers; the
/// second refuses the same bytes ("underpriced"). A refusal after an ambiguous send is no
/// verdict: no second transaction is signed for the authorization, and the payment settles.
#[tokio::test]
async fn an_ambiguous_send_then_a_refusal_never_signs_twice() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let taking = RpcProxy::start(&chain.url).await;
    let refusing = RpcProxy::start(&chain.url).await;
    let options = Options::default()
        .env(
            "X402__NETWORKS__LOCAL__RPC_URLS",
            format!("{},{}", taking.url, refusing.url),
        )
        .env("X402__NETWORKS__LOCAL__RPC_TIMEOUT_MS", "700");
    let app = spawn_with(&chain, &db, options).await;
    let p = harness::funded_payment(&chain).await;
    taking.set(Mode::SendThenHang);
    refusing.set(Mode::RefuseSends("transaction underpriced"));
    let (_, answer) = app.post("/settle", &p.body()).await;
    assert_ne!(
        answer["errorReason"], "invalid_exact_evm_transaction_failed",
        "{answer}"
    );
    taking.set(Mode::Forward);
    refusing.set(Mode::Forward);
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        1,
        20,
    )
    .await;
    assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
    let signer = app.signers[0].address();
    let sent: Value = chain
        .rpc(
            "eth_getTransactionCount",
            (format!("{signer:#x}"), "latest"),
        )
        .await;
    assert_eq!(sent, json!("0x1"), "one transaction signed, none reverted");
    assert_eq!(
        db.count("SELECT count(*) FROM settlement_txs").await,
        1,
        "no second transaction was recorded for the authorization"
    );
    app.stop().await;
}

/// Review of #10, H-B: a stranger copies the pending payment's calldata and front-runs it with a
/// higher tip. The money moved (by the stranger's transaction), ours reverted: the row is
/// settled with the transaction that paid, and the client's retry gets the success.
#[tokio::test]
async fn a_front_run_payment_is_settled_not_failed() {
    use alloy::sol_types::SolCall;
    alloy::sol! {
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external;
    }
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, slow_chain_options()).await;
    let p = harness::funded_payment(&chain).await;
    chain.set_automine(false).await;
    let first = app.settle(&p.body()).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    let ours = first["transaction"].as_str().expect("tx").to_string();
    let sig = p.signature();
    let call = transferWithAuthorizationCall {
        from: p.from,
        to: p.to,
        value: p.value,
        validAfter: alloy::primitives::U256::from(p.valid_after),
        validBefore: alloy::primitives::U256::from(p.valid_before),
        nonce: p.nonce,
        v: sig[64],
        r: alloy::primitives::B256::from_slice(&sig[..32]),
        s: alloy::primitives::B256::from_slice(&sig[32..64]),
    }
    .abi_encode();
    let theirs = chain.send_with_tip(chain.token, call, 50_000_000_000).await;
    chain.mine().await;
    chain.set_automine(true).await;
    assert!(chain.has_receipt(&theirs).await && chain.has_receipt(&ours).await);
    let retry = app.settle(&p.body()).await;
    assert_eq!(retry["success"], true, "{retry}");
    assert_eq!(
        retry["transaction"],
        theirs.as_str(),
        "the transaction that paid"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE state = 'settled'")
            .await,
        1
    );
    assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
    app.stop().await;
}

/// Writes the misjudgment today's code never makes: every row recorded failed although its
/// transaction paid, due for the reconciler's look now; `told` = its client was given that
/// failure (nothing owed).
async fn misjudge_as_failed(db: &Db, told: bool) {
    let owed = if told { ", pending_reported = 0" } else { "" };
    db.execute(&format!(
        "UPDATE settlements SET state = 'failed', error_reason = 'invalid_exact_evm_transaction_failed', \
         settled_at = NULL, retry_at = 0{owed}"
    ))
    .await;
}

/// Review of #10, M-1: a row recorded failed although its transaction paid, and no request
/// ever comes again: the reconciler's look at recent failed rows repairs it.
#[tokio::test]
async fn a_misjudged_failed_row_is_repaired_without_any_retry() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let app = spawn_with(&chain, &db, Options::default()).await;
    let p = harness::funded_payment(&chain).await;
    let settled = app.settle(&p.body()).await;
    assert_eq!(settled["success"], true, "{settled}");
    // An earlier misjudgment, written directly (the only way to get one on today's code).
    misjudge_as_failed(&db, false).await;
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        1,
        20,
    )
    .await;
    app.stop().await;
}

/// The reconciler's repair of a misjudged failed row leaves the success owed to the payer's
/// retry: the buyer was told "failed" although the money moved, and when it settles again it
/// must hear success with that transaction, not "already settled" (a replay refusal would
/// make the seller refuse a buyer who paid). Found in review: the reconciler's look cleared
/// the owed answer for nobody.
#[tokio::test]
async fn a_repair_by_the_reconciler_leaves_the_success_owed_to_the_payers_retry() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let app = spawn_with(&chain, &db, Options::default()).await;
    let p = harness::funded_payment(&chain).await;
    let settled = app.settle(&p.body()).await;
    assert_eq!(settled["success"], true, "{settled}");
    let tx = settled["transaction"]
        .as_str()
        .expect("a transaction")
        .to_string();
    // The misjudgment the buyer was told (written directly: today's code does not make one).
    misjudge_as_failed(&db, true).await;
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        1,
        20,
    )
    .await;
    let again = app.settle(&p.body()).await;
    assert_eq!(again["success"], true, "{again}");
    assert_eq!(again["transaction"], tx.as_str(), "{again}");
    // Collected once: a further replay is refused, and the money moved once.
    let replay = app.settle(&p.body()).await;
    assert_eq!(replay["success"], false, "{replay}");
    assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
    app.stop().await;
}

/// Review of #10, M-2: a settle whose ledger write is held up past the server's bound before
/// it recorded anything is answered "nothing was sent" (503) — and then nothing is ever sent:
/// the late record finds its deadline gone and the transaction never leaves the process.
#[tokio::test]
async fn a_cut_off_that_said_nothing_was_sent_never_sends() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let options = Options::default()
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "2000")
        .env("X402__SERVER__REQUEST_TIMEOUT_MS", "3000");
    let app = spawn_with(&chain, &db, options).await;
    let p = harness::funded_payment(&chain).await;
    let lock = db
        .hold_lock("LOCK TABLE settlement_txs IN ACCESS EXCLUSIVE MODE")
        .await;
    let (status, answer) = app.post("/settle", &p.body()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["transaction"], "", "{answer}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(lock);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        chain.transfers_from(chain.token, p.from).await,
        0,
        "a payment the client was told was not sent was sent"
    );
    app.stop().await;
}

/// Review of #10, M-4: a reorg removes the block of a payment whose client is still owed its
/// answer: the answer stays owed through the re-examination. And a payment already answered
/// is not answered again by a replay during its re-examination.
#[tokio::test]
async fn a_reorg_keeps_owed_answers_and_never_answers_twice() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let options = Options::default()
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "1000")
        .env("X402__NETWORKS__LOCAL__FINALITY_DEPTH", "100");
    let app = spawn_with(&chain, &db, options).await;
    let owed = harness::funded_payment(&chain).await;
    let answered = harness::funded_payment(&chain).await;
    let snapshot: Value = chain.rpc("evm_snapshot", ()).await;
    let served = app.settle(&answered.body()).await;
    assert_eq!(served["success"], true, "{served}");
    chain.set_automine(false).await;
    let pending = app.settle(&owed.body()).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    chain.mine().await;
    chain.set_automine(true).await;
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        2,
        20,
    )
    .await;
    let _: Value = chain.rpc("evm_revert", (snapshot,)).await;
    chain.mine().await;
    // A replay of the answered payment while it is re-examined: never a second success.
    let replay = app.settle(&answered.body()).await;
    assert_ne!(replay["success"], true, "answered twice: {replay}");
    // The reorg watch notices the blocks are gone and the payments are put back on chain (the
    // recorded bytes, resent).
    let restored = async {
        while chain.balance(chain.token, owed.pay_to).await != owed.amount
            || chain.balance(chain.token, answered.pay_to).await != answered.amount
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), restored)
        .await
        .expect("both payments back on chain");
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        2,
        30,
    )
    .await;
    let replay = app.settle(&answered.body()).await;
    assert_ne!(replay["success"], true, "answered twice: {replay}");
    let retry = app.settle(&owed.body()).await;
    assert_eq!(
        retry["success"], true,
        "the owed answer survived the reorg: {retry}"
    );
    assert_eq!(chain.balance(chain.token, owed.pay_to).await, owed.amount);
    assert_eq!(
        chain.balance(chain.token, answered.pay_to).await,
        answered.amount
    );
    app.stop().await;
}

/// Review of #10, M-5: with a payment-identifier, the answer owed after `settlement_pending` is
/// collected only by a request carrying the id (it is not on chain, unlike the rest of the
/// payment, which anyone can rebuild from the mempool and the seller's public 402).
#[tokio::test]
async fn an_owed_answer_with_a_payment_identifier_needs_the_id() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, slow_chain_options()).await;
    let mut p = harness::funded_payment(&chain).await;
    p.extensions =
        Some(json!({ "payment-identifier": { "info": { "id": "pay_owed_to_the_holder_01" } } }));
    chain.set_automine(false).await;
    let first = app.settle(&p.body()).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    chain.mine().await;
    chain.set_automine(true).await;
    let mut rebuilt = p.clone();
    rebuilt.extensions = None;
    let stranger = app.settle(&rebuilt.body()).await;
    assert_ne!(stranger["success"], true, "{stranger}");
    let holder = app.settle(&p.body()).await;
    assert_eq!(holder["success"], true, "{holder}");
    app.stop().await;
}

/// Review of #10, M-6: the same payment re-encoded on the way (the value as a number, the payee
/// lower-cased, `v` as 0/1) is still the same payment: the client's retry gets its owed answer.
#[tokio::test]
async fn a_re_encoded_retry_is_the_same_payment() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, slow_chain_options()).await;
    let p = harness::funded_payment(&chain).await;
    chain.set_automine(false).await;
    let first = app.settle(&p.body()).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    chain.mine().await;
    chain.set_automine(true).await;
    let mut sig = p.signature().to_vec();
    sig[64] -= 27;
    let mut again = p.body_with_signature(&alloy::primitives::Bytes::from(sig));
    let auth = &mut again["paymentPayload"]["payload"]["authorization"];
    auth["value"] = json!(p.value.to::<u64>());
    auth["to"] = json!(format!("{:#x}", p.to));
    again["paymentRequirements"]["payTo"] = json!(format!("{:#x}", p.pay_to));
    let retry = app.settle(&again).await;
    assert_eq!(retry["success"], true, "{retry}");
    assert_eq!(retry["transaction"], first["transaction"]);
    app.stop().await;
}

/// Review of #10, M-8: a node that answers "nonce too high" (it has not seen an earlier nonce of
/// ours yet) has not refused the transaction for good: the nonce and the bytes are kept, the
/// payment settles once the node takes them, and no nonce is burnt.
#[tokio::test]
async fn nonce_too_high_keeps_the_transaction_and_burns_no_nonce() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let proxy = RpcProxy::start(&chain.url).await;
    let options = Options {
        rpc_url: Some(proxy.url.clone()),
        ..Options::default()
    }
    .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "1000");
    let app = spawn_with(&chain, &db, options).await;
    let p = harness::funded_payment(&chain).await;
    proxy.set(Mode::RefuseSends("nonce too high"));
    let first = app.settle(&p.body()).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    proxy.set(Mode::Forward);
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        1,
        20,
    )
    .await;
    let signer = app.signers[0].address();
    let sent: Value = chain
        .rpc(
            "eth_getTransactionCount",
            (format!("{signer:#x}"), "latest"),
        )
        .await;
    assert_eq!(sent, json!("0x1"), "no nonce burnt");
    app.stop().await;
}
