//! The ledger's promise, proven against real parts: a payment is settled at most once, every
//! broadcast is accounted for, and a crash, a slow chain, a misbehaving RPC or a second replica
//! loses nothing. See docs/ledger.md for the guarantees these tests hold.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::app::{env_for, signers};
use crate::harness::permit2::Kind;
use crate::harness::process::{Proc, holds_a_key};
use crate::harness::proxy::{Mode, RpcProxy};
use crate::harness::{self, Chain, Db, Options, spawn, spawn_with};

/// Polls `sql` (a count) until it reaches `want`, for at most 20 s.
async fn eventually(db: &Db, sql: &str, want: i64) {
    let started = Instant::now();
    loop {
        let got = db.count(sql).await;
        if got == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "`{sql}` stayed {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(base: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .expect("sent");
    let status = resp.status();
    (status, resp.json().await.expect("JSON"))
}

fn short_timing(env: &mut Vec<(String, String)>) {
    env.push(("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS".into(), "1000".into()));
    env.push(("X402__SETTLEMENT__LEASE_MARGIN_MS".into(), "300".into()));
    env.push((
        "X402__SETTLEMENT__SIGNER_LEASE_TTL_MS".into(),
        "1000".into(),
    ));
}

#[tokio::test]
async fn a_slow_chain_answers_settlement_pending_and_the_retry_reconciles() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let options = Options::default()
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "1000")
        // Keep the background reconciler out of the way: the retry must do the reconciling.
        .env("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000");
    let app = spawn_with(&chain, &db, options).await;
    let payment = harness::funded_payment(&chain).await;
    let body = payment.body();
    chain.set_automine(false).await;

    let first = app.settle(&body).await;
    assert_eq!(first["success"], false, "{first}");
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    let tx = first["transaction"].as_str().expect("tx").to_string();
    assert_eq!(tx.len(), 66, "{first}");
    assert_eq!(
        app.verify(&body).await["invalidReason"],
        "invalid_exact_evm_nonce_already_used"
    );

    chain.mine().await;
    let second = app.settle(&body).await;
    assert_eq!(second["success"], true, "{second}");
    assert_eq!(
        second["transaction"],
        tx.as_str(),
        "the recorded transaction, not a new one"
    );
    chain.set_automine(true).await;
    assert_eq!(chain.transfers_from(chain.token, payment.from).await, 1);
    assert_eq!(
        app.settle(&body).await["errorReason"],
        "invalid_exact_evm_nonce_already_used"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_reconciler_finishes_a_pending_settlement_without_a_retry() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(
        &chain,
        &db,
        Options::default().env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "800"),
    )
    .await;
    let payment = harness::funded_payment(&chain).await;
    chain.set_automine(false).await;
    let first = app.settle(&payment.body()).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    chain.mine().await;
    chain.set_automine(true).await;
    eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        1,
    )
    .await;
    let tx = first["transaction"].as_str().expect("tx");
    let (status, receipt) = app.get(&format!("/settlements/{tx}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(receipt["state"], "settled", "{receipt}");
    let (_, metrics) = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .map(|r| ((), r))
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(
        text.contains("x402_settle_total{outcome=\"pending\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("x402_reconcile_total{outcome=\"settled\"} 1"),
        "{text}"
    );
    // The client that was told `settlement_pending` retries late: it is owed the final answer,
    // once; the same payload after that is a replay.
    let body = payment.body();
    let owed = app.settle(&body).await;
    assert_eq!(owed["success"], true, "{owed}");
    assert_eq!(owed["transaction"], tx);
    let replay = app.settle(&body).await;
    assert_eq!(
        replay["errorReason"], "invalid_exact_evm_nonce_already_used",
        "{replay}"
    );
    assert_eq!(chain.transfers_from(chain.token, payment.from).await, 1);
    app.stop().await;
}

/// The payment kinds the exactly-once guarantees are proven for: `exact` by EIP-3009 and by
/// Permit2, and `upto` (charging part of its maximum, or nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paid {
    Eip3009,
    Permit2Exact,
    Upto,
    UptoNothing,
}

/// What a crash test settles and where the money must end up.
struct Case {
    body: Value,
    token: Address,
    from: Address,
    pay_to: Address,
    /// What must move, once.
    amount: U256,
    /// The answer to settling it again once it settled.
    replay_reason: &'static str,
}

async fn case(chain: &Chain, kind: Paid, facilitator: Address) -> Case {
    let permit2 =
        |kind| async move { harness::funded_permit2(chain, kind, facilitator, true).await };
    match kind {
        Paid::Eip3009 => {
            let p = harness::funded_payment(chain).await;
            Case {
                body: p.body(),
                token: chain.token,
                from: p.from,
                pay_to: p.pay_to,
                amount: p.amount,
                replay_reason: "invalid_exact_evm_nonce_already_used",
            }
        }
        Paid::Permit2Exact => {
            let p = permit2(Kind::Exact).await;
            Case {
                body: p.body(),
                token: chain.permit_token,
                from: p.from,
                pay_to: p.pay_to,
                amount: p.amount,
                replay_reason: "permit2_invalid_nonce",
            }
        }
        Paid::Upto | Paid::UptoNothing => {
            let p = permit2(Kind::Upto).await;
            let charge = if kind == Paid::Upto {
                U256::from(1500u64)
            } else {
                U256::ZERO
            };
            Case {
                body: p.settle_body(charge),
                token: chain.permit_token,
                from: p.from,
                pay_to: p.pay_to,
                amount: charge,
                replay_reason: "permit2_invalid_nonce",
            }
        }
    }
}

/// Freezes a settle at `point` in one process, SIGKILLs it, starts a fresh process on the same
/// ledger, and checks that the payment ends settled exactly once.
async fn crash_at(point: &str, kind: Paid) {
    crash_on(Db::postgres().await, point, kind).await;
}

/// [`crash_at`] on a given ledger: SQLite is one process at a time, which is what a crash and
/// a restart are.
async fn crash_on(db: Db, point: &str, kind: Paid) {
    let chain = Chain::start().await;
    let keys = signers(&chain, 1, false).await;
    let mut env = env_for(&chain, &chain.url, &db, &keys);
    env.push(("X402__NETWORKS__LOCAL__SCHEMES".into(), "exact,upto".into()));
    short_timing(&mut env);
    if matches!(db, Db::Sqlite(_)) {
        // SQLite commits wait for the disk: on a loaded machine a settle can outlast the 1 s
        // bound before reaching the step the test stops it at.
        env.push(("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS".into(), "3000".into()));
    }
    let payment = case(&chain, kind, keys[0].address()).await;
    let body = payment.body.clone();

    let mut crashing = env.clone();
    crashing.push(("X402_FAULT_PAUSE_AT".into(), point.into()));
    let mut first = Proc::start(&crashing).await;
    let url = format!("{}/settle", first.base);
    let request = body.clone();
    let mut in_flight = tokio::spawn(async move {
        let answer = reqwest::Client::new()
            .post(url)
            .json(&request)
            .send()
            .await?;
        answer.text().await
    });
    let paused = format!("paused at {point}");
    tokio::select! {
        () = first.wait_for_log(&paused) => {}
        answer = &mut in_flight => panic!("the settle answered before {point}: {answer:?}"),
    }
    first.kill().await;
    assert!(
        in_flight.await.expect("joined").is_err(),
        "the killed process answered nothing"
    );

    let second = Proc::start(&env).await;
    if point == "after_claim" {
        // Nothing was broadcast: the reconciler releases the claim, and the retry settles
        // once the new process holds the key (the dead one's lease runs out first; SQLite has
        // no hand-off to wait in).
        eventually(&db, "SELECT count(*) FROM settlements", 0).await;
        holds_a_key(&second.base, Duration::from_secs(15)).await;
        let (status, retry) = post(&second.base, "/settle", &body).await;
        assert_eq!(status, StatusCode::OK, "{retry}");
        assert_eq!(retry["success"], true, "{retry}");
    } else {
        // A transaction was recorded: the reconciler finishes it from chain state alone
        // (resending the recorded bytes if the crash came before the broadcast).
        eventually(
            &db,
            "SELECT count(*) FROM settlements WHERE state = 'settled'",
            1,
        )
        .await;
        // The client lost its answer with the crash: its retry is owed the success, once,
        // with the transaction that paid; the same payload after that is a replay.
        let (_, retry) = post(&second.base, "/settle", &body).await;
        assert_eq!(retry["success"], true, "{retry}");
        let row_tx = db
            .text("SELECT tx_id FROM settlements WHERE state = 'settled'")
            .await;
        assert_eq!(retry["transaction"], row_tx.as_str());
        let (_, replay) = post(&second.base, "/settle", &body).await;
        assert_eq!(replay["errorReason"], payment.replay_reason, "{replay}");
    }
    let transfers = if payment.amount.is_zero() { 0 } else { 1 };
    assert_eq!(
        chain.transfers_from(payment.token, payment.from).await,
        transfers,
        "exactly one transfer (none for a charge of nothing)"
    );
    assert_eq!(
        chain.balance(payment.token, payment.pay_to).await,
        payment.amount
    );
    assert_eq!(db.count("SELECT count(*) FROM settlements").await, 1);
    second.kill().await;
}

#[tokio::test]
async fn crash_after_the_claim() {
    crash_at("after_claim", Paid::Eip3009).await;
}

#[tokio::test]
async fn crash_after_recording_before_the_broadcast() {
    crash_at("after_record", Paid::Eip3009).await;
}

#[tokio::test]
async fn crash_after_the_broadcast_before_the_receipt() {
    crash_at("after_broadcast", Paid::Eip3009).await;
}

#[tokio::test]
async fn crash_after_confirmation_before_the_final_record() {
    crash_at("after_confirm", Paid::Eip3009).await;
}

#[tokio::test]
async fn permit2_exact_crash_after_the_claim() {
    crash_at("after_claim", Paid::Permit2Exact).await;
}

#[tokio::test]
async fn permit2_exact_crash_after_recording_before_the_broadcast() {
    crash_at("after_record", Paid::Permit2Exact).await;
}

#[tokio::test]
async fn permit2_exact_crash_after_the_broadcast_before_the_receipt() {
    crash_at("after_broadcast", Paid::Permit2Exact).await;
}

#[tokio::test]
async fn permit2_exact_crash_after_confirmation_before_the_final_record() {
    crash_at("after_confirm", Paid::Permit2Exact).await;
}

#[tokio::test]
async fn upto_crash_after_the_claim() {
    crash_at("after_claim", Paid::Upto).await;
}

#[tokio::test]
async fn upto_crash_after_recording_before_the_broadcast() {
    crash_at("after_record", Paid::Upto).await;
}

#[tokio::test]
async fn upto_crash_after_the_broadcast_before_the_receipt() {
    crash_at("after_broadcast", Paid::Upto).await;
}

#[tokio::test]
async fn upto_crash_after_confirmation_before_the_final_record() {
    crash_at("after_confirm", Paid::Upto).await;
}

#[tokio::test]
async fn upto_charging_nothing_crash_after_the_claim() {
    crash_at("after_claim", Paid::UptoNothing).await;
}

const CRASH_POINTS: [&str; 4] = [
    "after_claim",
    "after_record",
    "after_broadcast",
    "after_confirm",
];

/// The crash tests of Permit2 `exact` on SQLite too (the EIP-3009 ones run the same machinery
/// and are proven on Postgres above).
#[tokio::test]
async fn permit2_exact_crashes_on_sqlite() {
    for point in CRASH_POINTS {
        crash_on(Db::sqlite(), point, Paid::Permit2Exact).await;
    }
}

/// The crash tests of `upto` (and `upto` charging nothing) on SQLite too.
#[tokio::test]
async fn upto_crashes_on_sqlite() {
    for point in CRASH_POINTS {
        crash_on(Db::sqlite(), point, Paid::Upto).await;
    }
    crash_on(Db::sqlite(), "after_claim", Paid::UptoNothing).await;
}

#[tokio::test]
async fn two_replicas_on_one_postgres_settle_a_payment_once() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let (ka, kb) = (
        signers(&chain, 1, false).await,
        signers(&chain, 1, false).await,
    );
    let a = Proc::start(&env_for(&chain, &chain.url, &db, &ka)).await;
    let b = Proc::start(&env_for(&chain, &chain.url, &db, &kb)).await;
    let payment = harness::funded_payment(&chain).await;
    let body = payment.body();
    let answers = join_all((0..50).map(|i| {
        let base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let body = body.clone();
        async move { post(&base, "/settle", &body).await }
    }))
    .await;
    let wins = answers.iter().filter(|(_, a)| a["success"] == true).count();
    assert_eq!(wins, 1, "{answers:?}");
    for (status, a) in &answers {
        assert_eq!(*status, StatusCode::OK, "{a}");
        let reason = a["errorReason"].as_str().unwrap_or("");
        assert!(
            a["success"] == true
                || reason == "duplicate_settlement"
                || reason == "invalid_exact_evm_nonce_already_used",
            "{a}"
        );
    }
    assert_eq!(chain.transfers_from(chain.token, payment.from).await, 1);
    assert_eq!(db.count("SELECT count(*) FROM settlements").await, 1);
    a.kill().await;
    b.kill().await;
}

#[tokio::test]
async fn a_signer_is_used_by_one_process_at_a_time() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let shared = signers(&chain, 1, false).await;
    let mut env = env_for(&chain, &chain.url, &db, &shared);
    short_timing(&mut env);
    let holder = Proc::start(&env).await;
    let standby = Proc::start(&env).await;

    let payment = harness::funded_payment(&chain).await;
    let body = payment.body();
    let (status, verdict) = post(&standby.base, "/verify", &body).await;
    assert_eq!(
        (status, verdict["isValid"].clone()),
        (StatusCode::OK, json!(true)),
        "the standby still verifies"
    );
    // The standby holds no lease: it hands the settle to the holder, which signs it.
    let (status, handed) = post(&standby.base, "/settle", &body).await;
    assert_eq!(status, StatusCode::OK, "{handed}");
    assert_eq!(handed["success"], true, "{handed}");
    let held = |base: String| async move {
        let r: Value = reqwest::get(format!("{base}/ready"))
            .await
            .expect("ready")
            .json()
            .await
            .expect("json");
        r["signers"].as_object().map(|s| s.len()).unwrap_or(0)
    };
    assert_eq!(
        held(standby.base.clone()).await,
        0,
        "the standby signs nothing"
    );
    assert_eq!(held(holder.base.clone()).await, 1);

    holder.kill().await; // its lease now runs out instead of being released
    let second = harness::funded_payment(&chain).await;
    let body = second.body();
    let started = Instant::now();
    let settled = loop {
        if held(standby.base.clone()).await == 1 {
            let (_, answer) = post(&standby.base, "/settle", &body).await;
            if answer["success"] == true {
                break answer;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the standby never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let payment = second;
    assert_eq!(settled["payer"], payment.from.to_checksum(None));
    assert_eq!(chain.transfers_from(chain.token, payment.from).await, 1);
    standby.kill().await;
}

#[tokio::test]
async fn a_hanging_rpc_gives_a_clean_fault_and_records_nothing() {
    let chain = Chain::start().await;
    let proxy = RpcProxy::start(&chain.url).await;
    let db = Db::sqlite();
    let options = Options {
        rpc_url: Some(proxy.url.clone()),
        ..Default::default()
    }
    .env("X402__NETWORKS__LOCAL__RPC_TIMEOUT_MS", "800");
    let app = spawn_with(&chain, &db, options).await;
    let payment = harness::funded_payment(&chain).await;
    proxy.set(Mode::Hang);
    let (status, verdict) = app.post("/verify", &payment.body()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{verdict}");
    assert!(verdict["errorId"].is_string());
    let (status, settled) = app.post("/settle", &payment.body()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{settled}");
    assert_eq!(settled["transaction"], "");
    assert_eq!(db.count("SELECT count(*) FROM settlements").await, 0);
    proxy.set(Mode::Refuse);
    let (status, _) = app.post("/verify", &payment.body()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    proxy.set(Mode::Forward);
    assert_eq!(
        app.settle(&payment.body()).await["success"],
        true,
        "works again once the RPC is back"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_rpc_that_hangs_after_the_broadcast_loses_nothing() {
    let chain = Chain::start().await;
    let proxy = RpcProxy::start(&chain.url).await;
    let db = Db::postgres().await;
    let options = Options {
        rpc_url: Some(proxy.url.clone()),
        ..Default::default()
    }
    .env("X402__NETWORKS__LOCAL__RPC_TIMEOUT_MS", "500")
    .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "2000")
    .env("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000");
    let app = spawn_with(&chain, &db, options).await;
    let payment = harness::funded_payment(&chain).await;
    let body = payment.body();
    chain.set_automine(false).await;
    let settle = app.settle(&body);
    let break_rpc = async {
        // Once the transaction sits in anvil's mempool, the RPC stops answering.
        let started = Instant::now();
        loop {
            let status: Value = chain.raw("txpool_status").await;
            if status["pending"].as_str().is_some_and(|p| p != "0x0")
                || status["pending"].as_u64().is_some_and(|p| p > 0)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no transaction reached the mempool"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proxy.set(Mode::Hang);
    };
    let (first, ()) = tokio::join!(settle, break_rpc);
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    let tx = first["transaction"].as_str().expect("tx").to_string();
    assert_eq!(
        tx.len(),
        66,
        "the pending answer names the broadcast transaction: {first}"
    );

    proxy.set(Mode::Forward);
    chain.mine().await;
    chain.set_automine(true).await;
    let second = app.settle(&body).await;
    assert_eq!(second["success"], true, "{second}");
    assert_eq!(second["transaction"], tx.as_str());
    assert_eq!(chain.transfers_from(chain.token, payment.from).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn payment_identifier_returns_the_stored_answer_and_refuses_reuse() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    let (_, supported) = app.get("/supported").await;
    assert!(
        supported["extensions"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("payment-identifier"))),
        "{supported}"
    );

    let id = json!({ "payment-identifier": { "info": { "required": false, "id": "pay_0123456789abcdef0123456789abcdef" } } });
    let mut payment = harness::funded_payment(&chain).await;
    payment.extensions = Some(id.clone());
    let body = payment.body();
    let first = app.settle(&body).await;
    assert_eq!(first["success"], true, "{first}");
    let again = app.settle(&body).await;
    assert_eq!(again, first, "same id + same payment → the stored answer");

    // The same payer and payee with another payment under the same id: a conflict. (Ids are
    // scoped to payer and payee: another payer's id is another id.)
    let mut other = payment.clone();
    other.nonce = crate::harness::payment::random_b256();
    other.extensions = Some(id);
    let (status, conflict) = app.post("/settle", &other.body()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["errorReason"], "payment_identifier_conflict");
    let (status, conflict) = app.post("/verify", &other.body()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["invalidReason"], "payment_identifier_conflict");
    assert_eq!(
        chain.transfers_from(chain.token, other.from).await,
        1,
        "only the first paid"
    );

    other.extensions = Some(json!({ "payment-identifier": { "info": { "id": "short" } } }));
    assert_eq!(
        app.verify(&other.body()).await["invalidReason"],
        "invalid_payload"
    );
    other.extensions = Some(json!({ "payment-identifier": { "info": { "required": true } } }));
    assert_eq!(
        app.verify(&other.body()).await["invalidReason"],
        "invalid_payload"
    );
    app.stop().await;
}

#[tokio::test]
async fn receipts_are_served_filtered_and_paginated() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let app = spawn_with(
        &chain,
        &db,
        Options::default().env("X402__SERVER__RECEIPTS_TOKEN", "s3cret-token"),
    )
    .await;
    let mut txs = Vec::new();
    let pay_to = harness::funded_payment(&chain).await.pay_to;
    for _ in 0..3 {
        let mut p = harness::funded_payment(&chain).await;
        p.pay_to = pay_to;
        p.to = pay_to;
        let answer = app.settle(&p.body()).await;
        txs.push((answer["transaction"].as_str().expect("tx").to_string(), p));
    }
    let (status, _) = app.get(&format!("/settlements/{}", txs[0].0)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let get = |path: String| {
        let req = app
            .http
            .get(format!("{}{path}", app.base))
            .bearer_auth("s3cret-token");
        async move {
            let r = req.send().await.expect("sent");
            (r.status(), r.json::<Value>().await.expect("json"))
        }
    };
    let (status, one) = get(format!("/settlements/{}", txs[0].0)).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    // A hash pasted from an explorer in upper case finds the same receipt.
    let upper = format!("0x{}", txs[0].0[2..].to_ascii_uppercase());
    let (status, same) = get(format!("/settlements/{upper}")).await;
    assert_eq!(
        (status, &same["transaction"]),
        (StatusCode::OK, &one["transaction"])
    );
    assert_eq!(one["state"], "settled");
    assert_eq!(one["payer"], txs[0].1.from.to_checksum(None));
    assert_eq!(one["amount"], "10000");
    assert_eq!(one["resource"], "http://127.0.0.1/weather");
    assert!(
        one["settledAt"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{one}"
    );

    let pay_to_lower = format!("{pay_to:#x}");
    let (_, page1) = get(format!("/settlements?payTo={pay_to_lower}&limit=2")).await;
    assert_eq!(page1["items"].as_array().map(Vec::len), Some(2), "{page1}");
    let cursor = page1["nextCursor"].as_str().expect("more pages");
    let (_, page2) = get(format!(
        "/settlements?payTo={pay_to_lower}&limit=2&cursor={cursor}"
    ))
    .await;
    assert_eq!(page2["items"].as_array().map(Vec::len), Some(1), "{page2}");
    assert_eq!(
        page2["items"][0]["transaction"],
        txs[0].0.as_str(),
        "oldest last"
    );
    let (status, _) = get("/settlements?limit=1000".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get("/settlements/0xnothing".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}
