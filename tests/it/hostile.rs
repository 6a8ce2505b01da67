//! The attacker's view of what the access gate, sessions, Permit2 and `upto` added
//! (docs/hostile-coverage.md has the table these tests fill in): budgets across a crash and two
//! replicas, the failed-landing budget made to trip for real on chain, sessions and Permit2 /
//! `upto` settles behind a failing RPC, self-dealing Permit2 payments, and clients that give up.
//! Real anvil, real Postgres or SQLite, real processes; the RPC faults come from the loopback
//! proxy (a real peer), the crash from a SIGKILL at a fault-injection pause (the one simulated
//! part: where the process stops).

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::app::{env_for, signers};
use crate::harness::link::StallableLink;
use crate::harness::payment::random_b256;
use crate::harness::permit2::{Kind, Permit2Payment};
use crate::harness::process::{Proc, holds_a_key};
use crate::harness::proxy::{Mode, RpcProxy};
use crate::harness::{self, Chain, Db, Options, Payment, TestApp, spawn_with};

alloy::sol! {
    function transfer(address to, uint256 value) external returns (bool);
}

/// Reservations noted under a payment that has not kept or given them back yet.
const HOLDS: &str = "SELECT count(*) FROM budget_holds";
/// One settle's fee in the tests' budgets, in nano-units (0.001 ETH).
const FEE: i64 = 1_000_000;
const TIP: u128 = 50_000_000_000;

async fn post(base: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .expect("sent");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let json =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}"));
    (status, json)
}

/// Another payment from the same payer (a new nonce, a new payee), its tokens minted.
async fn another_from(chain: &Chain, first: &Payment) -> Payment {
    let mut p = Payment::new(chain);
    p.payer = first.payer.clone();
    p.from = first.from;
    p.nonce = random_b256();
    chain.mint(chain.token, p.from, p.amount).await;
    p
}

/// Waits until anvil's mempool holds a transaction (automine off).
async fn a_transaction_is_pending(chain: &Chain) {
    let started = Instant::now();
    loop {
        let status: Value = chain.raw("txpool_status").await;
        if status["pending"].as_str().is_some_and(|p| p != "0x0")
            || status["pending"].as_u64().is_some_and(|p| p > 0)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no transaction reached the mempool"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A budget reservation across a crash and two replicas (Postgres).
// ---------------------------------------------------------------------------------------------

/// Replica A reserves a payment's fee and is SIGKILLed before it signs (fault point
/// `after_reserve`); replica B, on the same Postgres, settles the client's retry of the same
/// payment. The payer's daily budget holds two settles: the dead attempt's reservation must not
/// be counted a second time by the retry, or the payer's next honest payment would be refused
/// (`budget_exhausted`) after only one payment moved money. The cap still holds: a third
/// payment is refused, with no transaction.
#[tokio::test]
async fn a_budget_reservation_survives_a_crash_before_signing_without_being_counted_twice() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let keys = signers(&chain, 2, false).await;
    let budget = |env: &mut Vec<(String, String)>| {
        for (k, v) in [
            ("X402__NETWORKS__LOCAL__BUDGET__FEE_PER_SETTLE", "0.001"),
            ("X402__NETWORKS__LOCAL__BUDGET__PER_PAYER_DAILY", "0.002"),
            ("X402__SETTLEMENT__LEASE_MARGIN_MS", "300"),
            ("X402__SETTLEMENT__SIGNER_LEASE_TTL_MS", "1000"),
        ] {
            env.push((k.into(), v.into()));
        }
    };
    let mut env_a = env_for(&chain, &chain.url, &db, &keys[..1]);
    budget(&mut env_a);
    env_a.push(("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS".into(), "1000".into()));
    env_a.push(("X402_FAULT_PAUSE_AT".into(), "after_reserve".into()));
    let mut env_b = env_for(&chain, &chain.url, &db, &keys[1..]);
    budget(&mut env_b);

    let mut a = Proc::start(&env_a).await;
    let b = Proc::start(&env_b).await;
    holds_a_key(&b.base, Duration::from_secs(20)).await;

    let first = harness::funded_payment(&chain).await;
    let body = first.body();
    let url = format!("{}/settle", a.base);
    let request = body.clone();
    let mut in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&request)
            .send()
            .await?
            .text()
            .await
    });
    tokio::select! {
        () = a.wait_for_log("paused at after_reserve") => {}
        answer = &mut in_flight => panic!("the settle answered before reserving: {answer:?}"),
    }
    let payer_spent =
        "SELECT COALESCE(SUM(spent), 0)::BIGINT FROM budget_counters WHERE kind = 'payer'";
    assert_eq!(db.count(payer_spent).await, FEE, "A reserved one fee");
    assert_eq!(db.count(HOLDS).await, 1, "noted under the payment");
    a.kill().await;
    assert!(
        in_flight.await.expect("joined").is_err(),
        "the killed replica answered nothing"
    );

    // The client retries on the other replica: the payment settles once.
    let started = Instant::now();
    let retry = loop {
        let (status, answer) = post(&b.base, "/settle", &body).await;
        if answer["success"] == true {
            break answer;
        }
        // A's claim is held until its lease runs out (duplicate_settlement meanwhile).
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the retry never settled: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(chain.balance(chain.token, first.pay_to).await, first.amount);
    assert_eq!(
        db.count(payer_spent).await,
        FEE,
        "one payment sent, one fee counted (the dead attempt's reservation was the retry's): {retry}"
    );

    // The payer's second honest payment fits its budget of two.
    let second = another_from(&chain, &first).await;
    let (_, answer) = post(&b.base, "/settle", &second.body()).await;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(db.count(payer_spent).await, 2 * FEE);
    // A third does not: the cap is still a cap.
    let third = another_from(&chain, &first).await;
    let (_, answer) = post(&b.base, "/settle", &third.body()).await;
    assert_eq!(answer["errorReason"], "budget_exhausted", "{answer}");
    assert_eq!(answer["transaction"], "");
    assert_eq!(chain.balance(chain.token, third.pay_to).await, U256::ZERO);
    assert_eq!(chain.transfers_from(chain.token, first.from).await, 2);
    assert_eq!(db.count(payer_spent).await, 2 * FEE);
    assert_eq!(db.count(HOLDS).await, 0, "every note went with its settle");
    b.kill().await;
}

// ---------------------------------------------------------------------------------------------
// 2. The failed-landing budget, tripped for real.
// ---------------------------------------------------------------------------------------------

/// Settles `p` with automine off; once our transaction waits in the mempool, the payer moves
/// all its tokens away with a higher tip, and one block mines both: our transaction passed
/// simulation and reverts on chain (it cost us gas). The settle sees it fail.
async fn settle_and_drain(chain: &Chain, app: &TestApp, p: &Payment) -> Value {
    // Read before our transaction waits in the pool: anvil answers calls from its pending
    // state, where our transfer already happened.
    let all = chain.balance(chain.token, p.from).await;
    chain.set_automine(false).await;
    let body = p.body();
    let settle = app.settle(&body);
    let drain = async {
        a_transaction_is_pending(chain).await;
        let data = transferCall {
            to: PrivateKeySigner::random().address(),
            value: all,
        }
        .abi_encode();
        chain
            .send_as_with_tip(&p.payer, chain.token, data, TIP)
            .await;
        // The payer's transfer joins the pool, then one block takes both (tip order).
        tokio::time::sleep(Duration::from_millis(300)).await;
        chain.mine().await;
    };
    let (answer, ()) = tokio::join!(settle, drain);
    chain.set_automine(true).await;
    answer
}

/// A payer whose payments pass simulation and then fail on chain (it empties its balance in
/// the block our transaction lands in) makes us pay gas for nothing. After
/// `failed_landings_per_payer` (2 here) such failures, its next settle is refused with
/// `budget_payer_failed_landings` before anything is signed — no transaction, no row, no
/// block — while `/verify` still says valid (the budget is judged at `/settle` only, by design:
/// `/verify` reads nothing from the ledger), and another payer still settles. The count is
/// the cluster's: one failure on each of two replicas sharing a Postgres trips it on both.
#[tokio::test]
async fn a_payer_whose_payments_keep_failing_on_chain_is_refused_at_settle() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let replica = || {
        Options::default()
            .env(
                "X402__NETWORKS__LOCAL__BUDGET__FAILED_LANDINGS_PER_PAYER",
                "2",
            )
            .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "10000")
            .env("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000")
    };
    let app = spawn_with(&chain, &db, replica()).await;
    let other = spawn_with(&chain, &db, replica()).await;
    let first = harness::funded_payment(&chain).await;
    for i in 0..2 {
        let (p, at) = if i == 0 {
            (first.clone(), &app)
        } else {
            (another_from(&chain, &first).await, &other)
        };
        assert_eq!(at.verify(&p.body()).await["isValid"], true);
        let answer = settle_and_drain(&chain, at, &p).await;
        assert_eq!(answer["success"], false, "landing {i}: {answer}");
        let tx = answer["transaction"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(tx.len(), 66, "the failure names our transaction: {answer}");
        let receipt = chain.rpc("eth_getTransactionReceipt", (tx.clone(),)).await;
        assert_eq!(receipt["status"], "0x0", "it reverted on chain: {receipt}");
    }
    assert_eq!(
        db.count("SELECT spent FROM budget_counters WHERE kind = 'failed_landing'")
            .await,
        2
    );
    assert_eq!(
        chain.transfers_from(chain.token, first.from).await,
        2,
        "the two drains only"
    );

    let third = another_from(&chain, &first).await;
    let verdict = app.verify(&third.body()).await;
    assert_eq!(
        verdict["isValid"], true,
        "/verify does not judge budgets: {verdict}"
    );
    let block = chain.raw("eth_blockNumber").await;
    let rows = db.count("SELECT count(*) FROM settlements").await;
    let refused = app.settle(&third.body()).await;
    assert_eq!(refused["success"], false, "{refused}");
    assert_eq!(
        refused["errorReason"], "budget_payer_failed_landings",
        "{refused}"
    );
    assert_eq!(refused["transaction"], "");
    assert_eq!(
        refused["payer"].as_str().map(str::to_ascii_lowercase),
        Some(format!("{:#x}", first.from))
    );
    assert_eq!(
        chain.raw("eth_blockNumber").await,
        block,
        "nothing was sent"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM settlements").await,
        rows,
        "no row"
    );
    assert_eq!(chain.balance(chain.token, third.from).await, third.amount);
    let elsewhere = other.settle(&third.body()).await;
    assert_eq!(
        elsewhere["errorReason"], "budget_payer_failed_landings",
        "the other replica refuses it too: {elsewhere}"
    );
    assert_eq!(
        chain.raw("eth_blockNumber").await,
        block,
        "nothing was sent"
    );

    // Someone else is not punished for it.
    let honest = harness::funded_payment(&chain).await;
    let ok = app.settle(&honest.body()).await;
    assert_eq!(ok["success"], true, "{ok}");
    assert_eq!(
        chain.balance(chain.token, honest.pay_to).await,
        honest.amount
    );
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics.contains("x402_refusals_total{reason=\"budget_payer_failed_landings\"} 1"),
        "{metrics}"
    );
    app.stop().await;
    other.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3 and 6. Sessions behind a failing RPC, and a client that gives up.
// ---------------------------------------------------------------------------------------------

const SELLER: &str = "http://127.0.0.1:4021";
const DOMAIN: &str = "127.0.0.1:4021";

fn key_hex(k: &PrivateKeySigner) -> String {
    format!("0x{}", alloy::primitives::hex::encode(k.to_bytes()))
}

/// A proof of a deployed ERC-1271 wallet, signed by the official client: checking it needs an
/// `isValidSignature` call through the RPC.
async fn smart_wallet_proof(chain: &Chain) -> Value {
    let owner = PrivateKeySigner::random();
    let wallet = chain
        .deploy(
            "SmartWallet",
            alloy::sol_types::SolValue::abi_encode(&owner.address()).into(),
        )
        .await;
    let uri = format!("{SELLER}/weather");
    let info = json!({
        "domain": DOMAIN, "uri": uri, "version": "1",
        "nonce": uuid::Uuid::new_v4().simple().to_string(),
        "statement": "Sign in to use your pass", "resources": [uri],
    });
    let signer = json!({
        "kind": "smart", "ownerKey": key_hex(&owner), "wallet": wallet.to_checksum(None),
        "factory": format!("{:#x}", chain.factory), "salt": random_b256().to_string(), "deployed": true,
    });
    let job = json!({
        "info": info, "chainId": format!("eip155:{}", chain.chain_id), "signer": signer,
        "offsetsMs": { "issuedAt": 0 },
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/sign-siwx.mjs");
    let proof = crate::harness::script::run_json("node", &[script.to_string()], Some(&job)).await;
    json!({
        "payload": proof["payload"], "domain": DOMAIN, "uri": uri,
        "chains": [format!("eip155:{}", chain.chain_id)],
    })
}

async fn sessions_behind(chain: &Chain, db: &Db, proxy: &RpcProxy) -> TestApp {
    let options = Options {
        rpc_url: Some(proxy.url.clone()),
        ..Default::default()
    }
    .env("X402__SESSIONS__ENABLED", "true")
    .env("X402__NETWORKS__LOCAL__RPC_TIMEOUT_MS", "1000");
    spawn_with(chain, db, options).await
}

const NONCES: &str = "SELECT count(*) FROM session_nonces";

/// An ERC-1271 proof checked while the RPC refuses connections, hangs or answers with a node
/// error: each is a well-formed `invalid_siwx_verifier_error` outcome (200), well before the
/// client's 30 s, and none burns the proof's nonce — once the RPC is back the same proof is
/// valid, once, and then refused as a replay.
#[tokio::test]
async fn a_failing_rpc_during_a_smart_wallet_sign_in_never_burns_the_nonce() {
    let chain = Chain::start().await;
    let proxy = RpcProxy::start(&chain.url).await;
    let db = Db::postgres().await;
    let app = sessions_behind(&chain, &db, &proxy).await;
    let check = smart_wallet_proof(&chain).await;
    for mode in [Mode::Refuse, Mode::Hang, Mode::NodeError] {
        proxy.set(mode);
        let started = Instant::now();
        let (status, answer) = app.post("/sessions/verify", &check).await;
        let took = started.elapsed();
        assert_eq!(status, StatusCode::OK, "{mode:?}: {answer}");
        assert_eq!(answer["valid"], false, "{mode:?}: {answer}");
        assert_eq!(
            answer["reason"], "invalid_siwx_verifier_error",
            "{mode:?}: {answer}"
        );
        assert!(answer["address"].is_string(), "{mode:?}: {answer}");
        assert!(
            took < Duration::from_secs(20),
            "{mode:?}: answered after {took:?}"
        );
        assert_eq!(
            db.count(NONCES).await,
            0,
            "{mode:?}: the nonce is not spent"
        );
    }
    proxy.set(Mode::Forward);
    let answer = app.post("/sessions/verify", &check).await.1;
    assert_eq!(answer["valid"], true, "{answer}");
    let replay = app.post("/sessions/verify", &check).await.1;
    assert_eq!(replay["reason"], "invalid_siwx_nonce", "{replay}");
    assert_eq!(db.count(NONCES).await, 1);
    app.stop().await;
}

/// A client that gives up on `/sessions/verify` while the RPC hangs (here at 1 s; the SDKs at
/// 30 s) leaves nothing half-done: no nonce is claimed for a proof nobody was told about, and
/// the client's retry of the same proof passes once the RPC answers.
#[tokio::test]
async fn a_client_that_gives_up_on_a_sign_in_can_retry_the_same_proof() {
    let chain = Chain::start().await;
    let proxy = RpcProxy::start(&chain.url).await;
    let db = Db::sqlite();
    let app = sessions_behind(&chain, &db, &proxy).await;
    let check = smart_wallet_proof(&chain).await;
    proxy.set(Mode::Hang);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let gave_up = impatient
        .post(format!("{}/sessions/verify", app.base))
        .json(&check)
        .send()
        .await;
    assert!(
        gave_up.as_ref().is_err_and(reqwest::Error::is_timeout),
        "the client gave up: {gave_up:?}"
    );
    // Whatever the server still does for the abandoned request ends within its check bound.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        db.count(NONCES).await,
        0,
        "no nonce taken for an answer nobody got"
    );
    proxy.set(Mode::Forward);
    let answer = app.post("/sessions/verify", &check).await.1;
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(db.count(NONCES).await, 1);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Permit2 `exact` and `upto` settles behind a failing RPC.
// ---------------------------------------------------------------------------------------------

/// The body a Permit2 case settles, and what must move.
fn permit2_settle(p: &Permit2Payment) -> (Value, U256) {
    match p.kind {
        Kind::Exact => (p.body(), p.amount),
        Kind::Upto => (p.settle_body(U256::from(1500u64)), U256::from(1500u64)),
    }
}

/// An answer is well formed: a JSON settle response, a business answer (200) or our fault
/// said as one (502/503), never a hang or a bare error.
fn well_formed(status: StatusCode, answer: &Value, what: &str) {
    assert!(
        [
            StatusCode::OK,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE
        ]
        .contains(&status),
        "{what}: {status} {answer}"
    );
    assert!(answer["success"].is_boolean(), "{what}: {answer}");
    assert!(answer["transaction"].is_string(), "{what}: {answer}");
    if status != StatusCode::OK {
        assert_eq!(answer["success"], false, "{what}: {answer}");
    }
}

/// Retries `body` until it settles (the RPC is back), for at most 20 s; returns the answer.
async fn settles_eventually(app: &TestApp, body: &Value, what: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, answer) = app.post("/settle", body).await;
        if answer["success"] == true {
            return answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: never settled: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Permit2 `exact` and `upto` settles while the RPC refuses, answers with node errors, lags
/// (every call slower, so the settle runs out of its deadline part-way) or takes the send and
/// never answers: every answer is well formed within the deadline, and retrying the same
/// payload once the RPC is back settles it with exactly one transfer of what was charged; the
/// same payload after that is a replay.
#[tokio::test]
async fn permit2_settles_behind_a_failing_rpc_move_money_once() {
    let chain = Chain::start().await;
    let proxy = RpcProxy::start(&chain.url).await;
    let db = Db::postgres().await;
    let options = Options {
        rpc_url: Some(proxy.url.clone()),
        ..crate::permit2_exact::permit2_options()
    }
    .env("X402__NETWORKS__LOCAL__RPC_TIMEOUT_MS", "1500")
    .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "3000");
    let app = spawn_with(&chain, &db, options).await;
    let facilitator = app.signers[0].address();
    let modes = [
        Mode::Refuse,
        Mode::NodeError,
        Mode::Delay(Duration::from_millis(700)),
        Mode::SendThenHang,
    ];
    for kind in [Kind::Exact, Kind::Upto] {
        for mode in modes {
            let what = format!("{kind:?} under {mode:?}");
            let p = harness::funded_permit2(&chain, kind, facilitator, true).await;
            let (body, moves) = permit2_settle(&p);
            proxy.set(mode);
            let (status, verdict) = app.post("/verify", &p.body()).await;
            assert!(
                [
                    StatusCode::OK,
                    StatusCode::BAD_GATEWAY,
                    StatusCode::SERVICE_UNAVAILABLE
                ]
                .contains(&status)
                    && verdict["isValid"].is_boolean(),
                "{what}: verify {status} {verdict}"
            );
            if matches!(mode, Mode::Refuse | Mode::NodeError) {
                assert_ne!(verdict["isValid"], true, "{what}: valid without the chain");
            }
            let started = Instant::now();
            let (status, answer) = app.post("/settle", &body).await;
            let took = started.elapsed();
            well_formed(status, &answer, &what);
            assert!(took < Duration::from_secs(15), "{what}: took {took:?}");
            if answer["success"] != true {
                // What a failure says: nothing moved, or it is pending with its transaction.
                let pending = answer["errorReason"] == "settlement_pending";
                let tx = answer["transaction"].as_str().unwrap_or_default();
                assert!(
                    pending || tx.is_empty(),
                    "{what}: a failure names no transaction unless pending: {answer}"
                );
                if mode == Mode::SendThenHang {
                    assert!(pending && tx.len() == 66, "{what}: {answer}");
                }
            }
            if mode == Mode::SendThenHang {
                // The node took the transaction: whatever the answer, it names it.
                assert_eq!(
                    answer["transaction"].as_str().map(str::len),
                    Some(66),
                    "{what}: {answer}"
                );
            }
            proxy.set(Mode::Forward);
            let settled = if answer["success"] == true {
                answer.clone()
            } else {
                settles_eventually(&app, &body, &what).await
            };
            let tx = settled["transaction"].as_str().expect("tx").to_string();
            if answer["errorReason"] == "settlement_pending" {
                assert_eq!(
                    answer["transaction"],
                    tx.as_str(),
                    "{what}: the retry is answered with the pending transaction"
                );
            }
            assert_eq!(
                chain.transfers_from(chain.permit_token, p.from).await,
                1,
                "{what}: one transfer"
            );
            assert_eq!(
                chain.balance(chain.permit_token, p.pay_to).await,
                moves,
                "{what}"
            );
            let (_, replay) = app.post("/settle", &body).await;
            assert_eq!(
                replay["errorReason"], "permit2_invalid_nonce",
                "{what}: {replay}"
            );
            assert_eq!(
                chain.transfers_from(chain.permit_token, p.from).await,
                1,
                "{what}: still one transfer"
            );
        }
    }
    app.stop().await;
}

/// An `upto` client that gives up at 1 s while the RPC lags: the settle goes on without it, and
/// the client's retry of the same payload is answered from that settle (the success it was
/// owed, or pending then success), with one transfer.
#[tokio::test]
async fn an_upto_client_that_gives_up_is_owed_the_outcome_once() {
    let chain = Chain::start().await;
    let proxy = RpcProxy::start(&chain.url).await;
    let db = Db::sqlite();
    let options = Options {
        rpc_url: Some(proxy.url.clone()),
        ..crate::permit2_exact::permit2_options()
    }
    .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "8000");
    let app = spawn_with(&chain, &db, options).await;
    let p = harness::funded_permit2(&chain, Kind::Upto, app.signers[0].address(), true).await;
    let (body, moves) = permit2_settle(&p);
    proxy.set(Mode::Delay(Duration::from_millis(400)));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let gave_up = impatient
        .post(format!("{}/settle", app.base))
        .json(&body)
        .send()
        .await;
    assert!(gave_up.is_err(), "the client gave up: {gave_up:?}");
    proxy.set(Mode::Forward);
    let settled = settles_eventually(&app, &body, "upto after a give-up").await;
    assert_eq!(chain.transfers_from(chain.permit_token, p.from).await, 1);
    assert_eq!(chain.balance(chain.permit_token, p.pay_to).await, moves);
    let tx = settled["transaction"].as_str().expect("tx");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM settlements WHERE state = 'settled' AND tx_id = '{tx}'"
        ))
        .await,
        1
    );
    let (_, replay) = app.post("/settle", &body).await;
    assert_eq!(replay["errorReason"], "permit2_invalid_nonce", "{replay}");
    app.stop().await;
}

/// Review F4: an `upto` client that gives up on replica A while A waits for replica B, the one
/// holding the key the payment names (two identical replicas, both keys, one held by each; a
/// hand-off; B's RPC lags behind its loopback proxy). A learns B's outcome after its client has
/// gone: it must leave the success owed (it cleared it, and the retry was told
/// `permit2_invalid_nonce`, a replay, for a payment that moved money). The retry gets the
/// success with B's transaction, once; one transfer, from the key named.
#[tokio::test]
async fn an_upto_client_that_gives_up_during_a_hand_off_is_owed_the_outcome_once() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let keys = signers(&chain, 2, false).await;
    let proxies = [
        RpcProxy::start(&chain.url).await,
        RpcProxy::start(&chain.url).await,
    ];
    let mut procs = Vec::new();
    for proxy in &proxies {
        let mut env = env_for(&chain, &proxy.url, &db, &keys);
        for (k, v) in [
            ("X402__NETWORKS__LOCAL__SCHEMES", "exact,upto"),
            ("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "10000"),
            ("X402__SETTLEMENT__SIGNER_LEASE_TTL_MS", "1200"),
        ] {
            env.push((k.into(), v.into()));
        }
        procs.push(Proc::start(&env).await);
    }
    let bases: Vec<&str> = procs.iter().map(|p| p.base.as_str()).collect();
    crate::replicas::balanced(&bases, 2, 1).await;
    let named = keys[1].address();
    let lease = format!("eip155:{}/{named:#x}", chain.chain_id);
    let mut holder = None;
    for (i, base) in bases.iter().enumerate() {
        let ready = crate::replicas::ready(base).await.expect("ready");
        if ready["signers"]
            .as_object()
            .is_some_and(|s| s.contains_key(&lease))
        {
            holder = Some(i);
        }
    }
    let holder = holder.expect("a replica holds the key named");
    let a = bases[1 - holder];
    proxies[holder].set(Mode::Delay(Duration::from_millis(300)));
    let p = harness::funded_permit2(&chain, Kind::Upto, named, true).await;
    let body = p.settle_body(U256::from(1200u64));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let gave_up = impatient
        .post(format!("{a}/settle"))
        .json(&body)
        .send()
        .await;
    assert!(gave_up.is_err(), "the client gave up: {gave_up:?}");
    // B settles; A's requester reads the row (it polls every 100 ms, or B notifies it).
    crate::money_path::eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        1,
        20,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxies[holder].set(Mode::Forward);
    let tx = db
        .text("SELECT tx_id FROM settlements WHERE state = 'settled'")
        .await;
    assert_eq!(
        chain.sender_of(&tx).await,
        named,
        "B sent it, from the key named"
    );
    let (status, retry) = post(a, "/settle", &body).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(
        retry["success"], true,
        "the retry is owed the outcome: {retry}"
    );
    assert_eq!(retry["transaction"], tx.as_str(), "{retry}");
    assert_eq!(retry["amount"], "1200", "{retry}");
    assert_eq!(chain.transfers_from(chain.permit_token, p.from).await, 1);
    assert_eq!(
        chain.balance(chain.permit_token, p.pay_to).await,
        U256::from(1200u64)
    );
    let (_, replay) = post(a, "/settle", &body).await;
    assert_eq!(replay["errorReason"], "permit2_invalid_nonce", "{replay}");
    assert_eq!(chain.transfers_from(chain.permit_token, p.from).await, 1);
}

/// Two replicas on one Postgres, each through its own stallable ledger link: B (started first)
/// holds the lease of the one key both know, so A holds none and hands `upto` payments naming
/// that key to B. Returns `[A, B]` and their links.
async fn a_requester_and_a_key_holder(
    chain: &Chain,
    db: &Db,
    settings: &[(&str, &str)],
) -> ([Proc; 2], [StallableLink; 2], Address) {
    let keys = signers(chain, 2, false).await;
    let links = [
        StallableLink::to_postgres(&db.url()).await,
        StallableLink::to_postgres(&db.url()).await,
    ];
    let key = &keys[1..];
    let start = async |link: &StallableLink| {
        let mut env = env_for(chain, &chain.url, db, key);
        env.retain(|(k, _)| k != "X402__DATABASE__URL");
        for (k, v) in [
            ("X402__DATABASE__URL", link.url.as_str()),
            ("X402__NETWORKS__LOCAL__SCHEMES", "exact,upto"),
            ("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000"),
        ]
        .iter()
        .chain(settings)
        {
            env.push((k.to_string(), v.to_string()));
        }
        Proc::start(&env).await
    };
    let named = keys[1].address();
    let lease = format!("eip155:{}/{named:#x}", chain.chain_id);
    let b = start(&links[1]).await;
    let ready = crate::replicas::ready(&b.base).await.expect("ready");
    assert!(
        ready["signers"]
            .as_object()
            .is_some_and(|s| s.contains_key(&lease)),
        "B holds the key: {ready}"
    );
    let a = start(&links[0]).await;
    ([a, b], links, named)
}

/// `/settle` of `body` at `base` in the background; its answer.
fn settle_answer(base: &str, body: &Value) -> tokio::task::JoinHandle<Value> {
    let url = format!("{base}/settle");
    let body = body.clone();
    tokio::spawn(async move {
        let answer = reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("answered");
        answer.json::<Value>().await.expect("JSON")
    })
}

/// A's `/settle` of `body` (in the background: its answer), handed to B, which sends it; A's
/// ledger link then stalls, and B mines and records the confirmation, owed to A's client. A's
/// link stays stalled.
async fn settled_by_b_while_a_stalls(
    chain: &Chain,
    db: &Db,
    a: &str,
    a_link: &StallableLink,
    body: &Value,
) -> tokio::task::JoinHandle<Value> {
    chain.set_automine(false).await;
    let first = settle_answer(a, body);
    crate::money_path::eventually(
        db,
        "SELECT count(*) FROM settlements WHERE state = 'submitted' AND handoff_at IS NOT NULL",
        1,
        20,
    )
    .await;
    a_link.stall();
    chain.mine().await;
    crate::money_path::eventually(
        db,
        "SELECT count(*) FROM settlements WHERE state = 'settled' AND pending_reported = 1",
        1,
        20,
    )
    .await;
    chain.set_automine(true).await;
    first
}

/// The two-successes race of a hand-off, made to happen every time: replica A holds no key the
/// `upto` payment may be sent from, so it hands the payment to B and waits for B's outcome.
/// A's link to the ledger stalls (held for real, a lagging network) after B sent the
/// transaction; B records the confirmation, owed to A's client; a copy of the payload arrives at
/// B. Before, the copy collected the success and A, its link back, gave its client a second one
/// for one transfer. The success is kept for A until A's deadline: the copy is told
/// `settlement_pending`, A's client gets the success, a later replay is refused.
#[tokio::test]
async fn a_copy_arriving_while_a_hand_offs_requester_waits_is_not_given_its_success() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let (procs, links, named) = a_requester_and_a_key_holder(
        &chain,
        &db,
        &[("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "15000")],
    )
    .await;
    let (a, b) = (procs[0].base.as_str(), procs[1].base.as_str());
    let p = harness::funded_permit2(&chain, Kind::Upto, named, true).await;
    let body = p.settle_body(U256::from(1200u64));
    let first = settled_by_b_while_a_stalls(&chain, &db, a, &links[0], &body).await;
    let (status, copy) = post(b, "/settle", &body).await;
    assert_eq!(status, StatusCode::OK, "{copy}");
    assert_eq!(
        copy["errorReason"], "settlement_pending",
        "the success is kept for the request that waits for it: {copy}"
    );
    links[0].resume();
    let answer = first.await.expect("the first request ran");
    let tx = db
        .text("SELECT tx_id FROM settlements WHERE state = 'settled'")
        .await;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["transaction"], tx.as_str(), "{answer}");
    for base in [a, b] {
        let (_, replay) = post(base, "/settle", &body).await;
        assert_eq!(replay["errorReason"], "permit2_invalid_nonce", "{replay}");
    }
    assert_eq!(chain.transfers_from(chain.permit_token, p.from).await, 1);
    for proc in procs {
        proc.kill().await;
    }
}

/// Review of the above (found by the adversarial review): A's ledger link lags for longer than
/// its deadline and the grace after it, so the reservation runs out and a copy at B collects the
/// success, as it may (A's client was told nothing yet). When A's link comes back it finds the
/// row settled but nothing owed: its client is refused as a replay. Before, A answered the
/// success it had not taken: two successes for one transfer.
#[tokio::test]
async fn a_requester_whose_ledger_lags_past_its_reservation_gives_no_second_success() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let (procs, links, named) = a_requester_and_a_key_holder(
        &chain,
        &db,
        &[("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "4000")],
    )
    .await;
    let (a, b) = (procs[0].base.as_str(), procs[1].base.as_str());
    let p = harness::funded_permit2(&chain, Kind::Upto, named, true).await;
    let body = p.settle_body(U256::from(1200u64));
    let first = settled_by_b_while_a_stalls(&chain, &db, a, &links[0], &body).await;
    let grace =
        i64::try_from(x402_facilitator::ledger::HANDOFF_ANSWER_GRACE.as_millis()).expect("fits");
    let deadline = db.count("SELECT handoff_deadline FROM settlements").await;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits");
    let wait = u64::try_from(deadline + grace + 300 - now).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let (status, copy) = post(b, "/settle", &body).await;
    assert_eq!(status, StatusCode::OK, "{copy}");
    assert_eq!(copy["success"], true, "the reservation ran out: {copy}");
    links[0].resume();
    let answer = first.await.expect("the first request ran");
    assert_ne!(
        answer["success"], true,
        "two successes for one transfer: copy {copy}, first {answer}"
    );
    assert_eq!(chain.transfers_from(chain.permit_token, p.from).await, 1);
    for proc in procs {
        proc.kill().await;
    }
}

/// Found by review: a requester whose ledger link stalls right after it handed the payment off
/// is cut off by the HTTP layer's bound before it read anything back. The cut-off answered 503
/// "nothing was sent" (the requester's watch held no transaction) while the taker may send one,
/// and a buyer told that may pay again. It now answers `settlement_pending`; once the link is
/// back and the payment settled, the client's retry gets the success, once.
#[tokio::test]
async fn a_requester_cut_off_after_handing_off_never_says_nothing_was_sent() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let (procs, links, named) = a_requester_and_a_key_holder(
        &chain,
        &db,
        &[
            ("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "3000"),
            ("X402__SERVER__REQUEST_TIMEOUT_MS", "4000"),
        ],
    )
    .await;
    let (a, b) = (procs[0].base.as_str(), procs[1].base.as_str());
    let p = harness::funded_permit2(&chain, Kind::Upto, named, true).await;
    let body = p.settle_body(U256::from(1200u64));
    chain.set_automine(false).await;
    let first = {
        let url = format!("{a}/settle");
        let body = body.clone();
        tokio::spawn(async move {
            let answer = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("answered");
            (answer.status(), answer.text().await.expect("a body"))
        })
    };
    crate::money_path::eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE handoff_at IS NOT NULL",
        1,
        20,
    )
    .await;
    links[0].stall();
    let (status, text) = first.await.expect("the first request ran");
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(answer["errorReason"], "settlement_pending", "{answer}");
    links[0].resume();
    chain.set_automine(true).await;
    chain.mine().await;
    let done = settles_eventually_at(a, &body).await;
    let tx = db
        .text("SELECT tx_id FROM settlements WHERE state = 'settled'")
        .await;
    assert_eq!(done["transaction"], tx.as_str(), "{done}");
    let (_, replay) = post(b, "/settle", &body).await;
    assert_eq!(replay["errorReason"], "permit2_invalid_nonce", "{replay}");
    assert_eq!(chain.transfers_from(chain.permit_token, p.from).await, 1);
    for proc in procs {
        proc.kill().await;
    }
}

/// Retries `body` at `base` until it is answered the success (pending or duplicate meanwhile).
async fn settles_eventually_at(base: &str, body: &Value) -> Value {
    let started = Instant::now();
    loop {
        let (_, answer) = post(base, "/settle", body).await;
        if answer["success"] == true {
            return answer;
        }
        let reason = answer["errorReason"].as_str().unwrap_or("");
        assert!(
            reason == "settlement_pending" || reason == "duplicate_settlement",
            "{answer}"
        );
        assert!(started.elapsed() < Duration::from_secs(30), "{answer}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A `/settle` of `body` in flight; aborting the handle hangs up (the connection closes with
/// the request unanswered).
fn settle_in_flight(base: &str, body: &Value) -> tokio::task::JoinHandle<()> {
    let url = format!("{base}/settle");
    let body = body.clone();
    tokio::spawn(async move {
        let answer = reqwest::Client::new().post(url).json(&body).send().await;
        panic!("the test hangs up before the answer: {answer:?}");
    })
}

/// Waits until the app's ledger statement starting with `statement` waits for the lock a test
/// session holds.
async fn a_ledger_write_waits_for_the_lock(db: &Db, statement: &str) {
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND query LIKE '{}%'",
        statement.replace('\'', "''")
    );
    crate::money_path::eventually(db, &waiting, 1, 20).await;
}

/// Hangs up on `in_flight` and gives the server a moment to see the connection close.
async fn hang_up(in_flight: tokio::task::JoinHandle<()>) {
    in_flight.abort();
    assert!(in_flight.await.is_err_and(|e| e.is_cancelled()), "hung up");
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Review F5: the client hangs up after the chain confirmed its transaction, while the settle
/// records that (the settlements table locked by another session: a slow ledger, for real; the
/// hang-up is a real closed connection). The settle had counted the success as delivered at the
/// confirmation and cleared the owed answer after the write; it looks again before clearing it:
/// the retry gets the success, once.
#[tokio::test]
async fn a_client_that_hangs_up_while_the_confirmation_is_recorded_is_owed_the_outcome() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let options = Options::default()
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "8000")
        .env("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000");
    let app = spawn_with(&chain, &db, options).await;
    let p = harness::funded_payment(&chain).await;
    chain.set_automine(false).await;
    let in_flight = settle_in_flight(&app.base, &p.body());
    crate::money_path::eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'submitted'",
        1,
        10,
    )
    .await;
    let lock = db
        .hold_lock("LOCK TABLE settlements IN EXCLUSIVE MODE")
        .await;
    chain.mine().await;
    a_ledger_write_waits_for_the_lock(&db, "UPDATE settlements SET state = 'settled'").await;
    hang_up(in_flight).await;
    drop(lock);
    crate::money_path::eventually(
        &db,
        "SELECT count(*) FROM settlements WHERE state = 'settled'",
        1,
        15,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    chain.set_automine(true).await;
    let tx = db
        .text("SELECT tx_id FROM settlements WHERE state = 'settled'")
        .await;
    let retry = app.settle(&p.body()).await;
    assert_eq!(
        retry["success"], true,
        "the retry is owed the outcome: {retry}"
    );
    assert_eq!(retry["transaction"], tx.as_str(), "{retry}");
    let replay = app.settle(&p.body()).await;
    assert_eq!(
        replay["errorReason"], "invalid_exact_evm_nonce_already_used",
        "{replay}"
    );
    assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
    app.stop().await;
}

/// Review F5, the retry's side: a client owed its success (told `settlement_pending`; the
/// reconciler then recorded the confirmation) retries, and hangs up while the retry's ledger
/// writes wait (the settlements table locked, for real). The retry collected the owed answer
/// for a closed connection; now it owes it again: the next retry gets the success, once.
#[tokio::test]
async fn a_retry_that_hangs_up_while_collecting_its_owed_answer_leaves_it_owed() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let options = Options::default().env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "1000");
    let app = spawn_with(&chain, &db, options).await;
    let p = harness::funded_payment(&chain).await;
    chain.set_automine(false).await;
    let pending = app.settle(&p.body()).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    chain.mine().await;
    let owed = "SELECT count(*) FROM settlements WHERE state = 'settled' AND pending_reported = 1";
    crate::money_path::eventually(&db, owed, 1, 15).await;
    chain.set_automine(true).await;
    let lock = db
        .hold_lock("LOCK TABLE settlements IN EXCLUSIVE MODE")
        .await;
    let in_flight = settle_in_flight(&app.base, &p.body());
    a_ledger_write_waits_for_the_lock(&db, "INSERT INTO settlements").await;
    hang_up(in_flight).await;
    drop(lock);
    tokio::time::sleep(Duration::from_millis(800)).await;
    crate::money_path::eventually(&db, owed, 1, 5).await;
    let retry = app.settle(&p.body()).await;
    assert_eq!(
        retry["success"], true,
        "the retry is owed the outcome: {retry}"
    );
    assert_eq!(retry["transaction"], pending["transaction"], "{retry}");
    let replay = app.settle(&p.body()).await;
    assert_eq!(
        replay["errorReason"], "invalid_exact_evm_nonce_already_used",
        "{replay}"
    );
    assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
    app.stop().await;
}

/// The same Permit2 `exact` payload sent 30 times at once, half to each of two replicas (each
/// with its own key) on one Postgres, with fee budgets on: one transfer, one row, every other
/// answer `duplicate_settlement` or the replay reason, and exactly one fee counted — the losers
/// reserved nothing, or gave it back — with no reservation note left behind.
#[tokio::test]
async fn one_permit2_payment_sent_to_two_replicas_at_once_moves_money_and_budget_once() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let replica = async |keys: &[PrivateKeySigner]| {
        let mut env = env_for(&chain, &chain.url, &db, keys);
        for (k, v) in [
            ("X402__NETWORKS__LOCAL__SCHEMES", "exact,upto"),
            ("X402__NETWORKS__LOCAL__BUDGET__FEE_PER_SETTLE", "0.001"),
            ("X402__NETWORKS__LOCAL__BUDGET__DAILY_CAP", "1"),
            ("X402__NETWORKS__LOCAL__BUDGET__PER_PAYER_DAILY", "0.5"),
        ] {
            env.push((k.into(), v.into()));
        }
        Proc::start(&env).await
    };
    let a = replica(&signers(&chain, 1, false).await).await;
    let b = replica(&signers(&chain, 1, false).await).await;
    let p = harness::funded_permit2(&chain, Kind::Exact, Address::ZERO, true).await;
    let body = p.body();
    let answers = futures_util::future::join_all((0..30).map(|i| {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let body = body.clone();
        async move { post(base, "/settle", &body).await }
    }))
    .await;
    let wins = answers.iter().filter(|(_, a)| a["success"] == true).count();
    assert_eq!(wins, 1, "{answers:?}");
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::OK, "{answer}");
        let reason = answer["errorReason"].as_str().unwrap_or("");
        assert!(
            answer["success"] == true
                || reason == "duplicate_settlement"
                || reason == "permit2_invalid_nonce",
            "{answer}"
        );
    }
    assert_eq!(chain.transfers_from(chain.permit_token, p.from).await, 1);
    assert_eq!(chain.balance(chain.permit_token, p.pay_to).await, p.amount);
    assert_eq!(db.count("SELECT count(*) FROM settlements").await, 1);
    for kind in ["network", "payer"] {
        assert_eq!(
            db.count(&format!(
                "SELECT spent FROM budget_counters WHERE kind = '{kind}'"
            ))
            .await,
            FEE,
            "{kind}: one settle sent, one fee counted"
        );
    }
    assert_eq!(
        db.count(HOLDS).await,
        0,
        "no reservation note outlives its settle"
    );
    a.kill().await;
    b.kill().await;
}

/// An `upto` payment names the key it must be sent from; replica R does not hold that key, so
/// it hands the payment to replica H, which does. H records the transaction and is SIGKILLed
/// before broadcasting it (fault point `after_record`). R's client is answered well formed at
/// R's deadline (`settlement_pending` naming the recorded transaction, since something may be
/// sent); once H's leases run out the recorded bytes are sent (by whoever takes the key and the
/// row), and the client's retry at R gets the success it is owed, with that transaction: one
/// transfer of the charge, one fee counted, no reservation note left.
#[tokio::test]
async fn a_hand_off_taker_killed_before_broadcasting_loses_nothing_and_sends_once() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let keys = signers(&chain, 2, false).await;
    let env = |keys: &[PrivateKeySigner]| {
        let mut env = env_for(&chain, &chain.url, &db, keys);
        for (k, v) in [
            ("X402__NETWORKS__LOCAL__SCHEMES", "exact,upto"),
            ("X402__NETWORKS__LOCAL__BUDGET__FEE_PER_SETTLE", "0.001"),
            ("X402__NETWORKS__LOCAL__BUDGET__DAILY_CAP", "1"),
            ("X402__SETTLEMENT__SIGNER_LEASE_TTL_MS", "1200"),
            ("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "4000"),
        ] {
            env.push((k.into(), v.into()));
        }
        env
    };
    let named = keys[0].address();
    let mut taker_env = env(&keys[..1]);
    taker_env.push(("X402_FAULT_PAUSE_AT".into(), "after_record".into()));
    let mut taker = Proc::start(&taker_env).await;
    holds_a_key(&taker.base, Duration::from_secs(20)).await;
    // R knows both keys but can only take the one H does not hold.
    let requester = Proc::start(&env(&keys)).await;
    holds_a_key(&requester.base, Duration::from_secs(20)).await;

    let p = harness::funded_permit2(&chain, Kind::Upto, named, true).await;
    let (body, moves) = permit2_settle(&p);
    let url = format!("{}/settle", requester.base);
    let request = body.clone();
    let first = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(url)
            .json(&request)
            .send()
            .await?;
        let status = resp.status();
        Ok::<_, reqwest::Error>((status, resp.json::<Value>().await?))
    });
    taker.wait_for_log("paused at after_record").await;
    taker.kill().await;
    let (status, answer) = first.await.expect("joined").expect("R answered");
    well_formed(status, &answer, "the requester at its deadline");
    assert_eq!(answer["errorReason"], "settlement_pending", "{answer}");
    let recorded = answer["transaction"].as_str().expect("tx").to_string();
    assert_eq!(recorded.len(), 66, "{answer}");
    assert!(
        !chain.has_receipt(&recorded).await,
        "the taker died before broadcasting"
    );

    let started = Instant::now();
    let owed = loop {
        let (status, retry) = post(&requester.base, "/settle", &body).await;
        if retry["success"] == true {
            break retry;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "never settled: {status} {retry}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(owed["transaction"], recorded.as_str(), "{owed}");
    assert_eq!(
        chain.sender_of(&recorded).await,
        named,
        "sent from the key named"
    );
    assert_eq!(chain.transfers_from(chain.permit_token, p.from).await, 1);
    assert_eq!(chain.balance(chain.permit_token, p.pay_to).await, moves);
    let (_, replay) = post(&requester.base, "/settle", &body).await;
    assert_eq!(replay["errorReason"], "permit2_invalid_nonce", "{replay}");
    assert_eq!(
        db.count("SELECT spent FROM budget_counters WHERE kind = 'network'")
            .await,
        FEE
    );
    assert_eq!(db.count(HOLDS).await, 0);
    requester.kill().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Self-dealing Permit2 and upto.
// ---------------------------------------------------------------------------------------------

/// A payer paying itself through Permit2 (`exact`, and `upto` at verify and at settle) is
/// refused with `policy_self_payment` before any RPC call: the RPC refuses every connection
/// meanwhile, and the answer is still that business refusal (any chain call would have been a
/// 502). Nothing is mined, no row is written, the payer keeps its tokens.
#[tokio::test]
async fn self_dealing_permit2_and_upto_are_refused_before_any_rpc_call() {
    let chain = Chain::start().await;
    let proxy = RpcProxy::start(&chain.url).await;
    for db in harness::db::both().await {
        let options = Options {
            rpc_url: Some(proxy.url.clone()),
            ..crate::permit2_exact::permit2_options()
        };
        proxy.set(Mode::Forward);
        let app = spawn_with(&chain, &db, options).await;
        let facilitator = app.signers[0].address();
        let mut cases = Vec::new();
        for kind in [Kind::Exact, Kind::Upto] {
            let mut p = harness::funded_permit2(&chain, kind, facilitator, true).await;
            p.pay_to = p.from;
            p.to = p.from;
            cases.push(p);
        }
        let block = chain.raw("eth_blockNumber").await;
        proxy.set(Mode::Refuse);
        for p in &cases {
            let (settle_body, _) = permit2_settle(p);
            let (status, verdict) = app.post("/verify", &p.body()).await;
            assert_eq!(status, StatusCode::OK, "{:?}: {verdict}", p.kind);
            assert_eq!(verdict["isValid"], false, "{:?}: {verdict}", p.kind);
            assert_eq!(
                verdict["invalidReason"], "policy_self_payment",
                "{:?}",
                p.kind
            );
            let (status, answer) = app.post("/settle", &settle_body).await;
            assert_eq!(status, StatusCode::OK, "{:?}: {answer}", p.kind);
            assert_eq!(
                answer["errorReason"], "policy_self_payment",
                "{:?}: {answer}",
                p.kind
            );
            assert_eq!(answer["transaction"], "");
        }
        proxy.set(Mode::Forward);
        assert_eq!(
            chain.raw("eth_blockNumber").await,
            block,
            "nothing was sent"
        );
        assert_eq!(db.count("SELECT count(*) FROM settlements").await, 0);
        for p in &cases {
            assert_eq!(
                chain.balance(chain.permit_token, p.from).await,
                U256::from(1_000_000u64)
            );
        }
        app.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Solana: a crash between two settle steps.
// ---------------------------------------------------------------------------------------------

/// A Solana payment whose settle is SIGKILLed at `point` (after recording the co-signed
/// transaction, or after sending it): a fresh process on the same Postgres finishes it (the
/// recorded bytes are sent again while their blockhash lives; sending the same signed bytes
/// twice cannot pay twice), the client's retry is owed the success with the recorded signature,
/// and the seller is paid once.
async fn solana_crash_at(point: &str) {
    use crate::harness::solana::{
        self, SolanaChain, TestKey, compute_limit, compute_price, message, requirements,
        signed_base64, transfer,
    };
    const PAID: u64 = 1_000;
    let chain = SolanaChain::start().await;
    let db = Db::postgres().await;
    let (fee_payer, payer) = (TestKey::random(), TestKey::random());
    let pay_to = TestKey::random().pubkey();
    chain.airdrop(&fee_payer.pubkey(), 10_000_000_000).await;
    let mint = chain.create_mint(false).await;
    chain.mint_to(&mint, &payer.pubkey(), 1_000_000).await;
    chain.create_ata(&mint, &pay_to).await;
    let env = crate::svm::sol_env(
        &db,
        &chain.url,
        &fee_payer,
        &[
            ("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "2000"),
            ("X402__SETTLEMENT__LEASE_MARGIN_MS", "300"),
        ],
    );
    let ixs = vec![
        compute_limit(20_000),
        compute_price(1),
        transfer(false, mint, payer.pubkey(), pay_to, PAID),
    ];
    let msg = message(fee_payer.pubkey(), chain.blockhash().await, &ixs, None);
    let reqs = requirements(&mint, &pay_to, PAID, &fee_payer.pubkey());
    let body = solana::body(2, &signed_base64(msg, &[&payer.keypair]), reqs);

    let mut crashing = env.clone();
    crashing.push(("X402_FAULT_PAUSE_AT".into(), point.into()));
    let mut first = Proc::start(&crashing).await;
    let url = format!("{}/settle", first.base);
    let request = body.clone();
    let mut in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&request)
            .send()
            .await?
            .text()
            .await
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
    let started = Instant::now();
    let owed = loop {
        let (status, retry) = post(&second.base, "/settle", &body).await;
        if retry["success"] == true {
            break retry;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{point}: never settled: {status} {retry}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let row_tx = db
        .text("SELECT tx_id FROM settlements WHERE state = 'settled'")
        .await;
    assert_eq!(owed["transaction"], row_tx.as_str(), "{point}: {owed}");
    assert_eq!(
        chain.token_balance(&mint, &pay_to, false).await,
        PAID,
        "{point}"
    );
    assert_eq!(
        chain.token_balance(&mint, &payer.pubkey(), false).await,
        1_000_000 - PAID,
        "{point}: paid once"
    );
    let (_, replay) = post(&second.base, "/settle", &body).await;
    assert_eq!(replay["success"], false, "{point}: {replay}");
    assert_eq!(chain.token_balance(&mint, &pay_to, false).await, PAID);
    assert_eq!(db.count("SELECT count(*) FROM settlements").await, 1);
    second.kill().await;
}

#[tokio::test]
async fn solana_crash_after_recording_before_sending() {
    solana_crash_at("after_record").await;
}

#[tokio::test]
async fn solana_crash_after_sending_before_the_confirmation() {
    solana_crash_at("after_broadcast").await;
}

// ---------------------------------------------------------------------------------------------
// The reservation note, on both ledgers.
// ---------------------------------------------------------------------------------------------

/// The ledger's side of the crash fix, on Postgres and SQLite: a reservation is counted once
/// per payment however many attempts reserve it (the attempt that takes a stopped one over
/// adopts its reservation), only its owner gives it back, once however many times it asks, a
/// kept one stays counted, and a full cap still refuses without leaving a note.
#[tokio::test]
async fn a_reservation_is_counted_once_per_payment_on_both_ledgers() {
    use x402_facilitator::ledger::{self, BudgetLine, ClaimOutcome, ClaimToken, Hold, Reservation};
    const DAY: i64 = 20_000;
    let line = |kind: &'static str, subject: &str, cap: i64| BudgetLine {
        network: "eip155:31337".into(),
        kind,
        subject: subject.into(),
        period: DAY,
        cap,
    };
    let hold = |key: &str, owner: &ClaimToken| Hold {
        replay_key: key.into(),
        network: "eip155:31337".into(),
        owner: owner.clone(),
        period: DAY,
    };
    for db in harness::db::both().await {
        let l = ledger::connect(&db.url(), 4, Duration::from_secs(5))
            .await
            .expect("ledger opens");
        let claimed = async |key: &str, lease: Duration| match l
            .claim(&crate::ledger_contract::claim(key), lease)
            .await
            .expect("claim")
        {
            ClaimOutcome::Claimed(token) => token,
            other => panic!("expected to win the claim: {other:?}"),
        };
        let lines = [line("payer", "0xp", 2 * FEE)];
        let spent = || db.count("SELECT spent FROM budget_counters WHERE kind = 'payer'");
        let first = claimed("a", Duration::ZERO).await;
        assert_eq!(
            l.reserve(&lines, FEE, &hold("a", &first))
                .await
                .expect("reserve"),
            Reservation::Reserved
        );
        // The attempt after a crash takes the payment over and finds the note: adopted, not
        // counted again; the stopped attempt has nothing left to give back.
        let seen = l.find("a").await.expect("find").expect("row");
        let next = l
            .take_over(&seen, Duration::from_secs(30))
            .await
            .expect("take over")
            .expect("taken");
        assert_eq!(
            l.reserve(&lines, FEE, &hold("a", &next))
                .await
                .expect("reserve"),
            Reservation::Adopted
        );
        assert_eq!(spent().await, FEE);
        l.refund(&hold("a", &first)).await.expect("refund");
        assert_eq!(spent().await, FEE, "not the stopped attempt's any more");
        l.refund(&hold("a", &next)).await.expect("refund");
        l.refund(&hold("a", &next)).await.expect("refund again");
        assert_eq!(spent().await, 0, "given back once");
        let b = claimed("b", Duration::from_secs(30)).await;
        assert_eq!(
            l.reserve(&lines, FEE, &hold("b", &b))
                .await
                .expect("reserve"),
            Reservation::Reserved
        );
        l.keep(&hold("b", &b)).await.expect("keep");
        l.refund(&hold("b", &b)).await.expect("a refund after keep");
        assert_eq!(spent().await, FEE, "a kept reservation stays counted");
        assert_eq!(
            l.reserve(&lines, FEE, &hold("a", &next))
                .await
                .expect("reserve"),
            Reservation::Reserved
        );
        let c = claimed("c", Duration::from_secs(30)).await;
        assert!(matches!(
            l.reserve(&lines, FEE, &hold("c", &c))
                .await
                .expect("reserve"),
            Reservation::Exhausted { kind: "payer", .. }
        ));
        assert_eq!(spent().await, 2 * FEE);
        assert_eq!(
            db.count("SELECT count(*) FROM budget_holds WHERE replay_key = 'c'")
                .await,
            0,
            "a refused reservation leaves no note"
        );
        // Notes of earlier days are pruned; their fee stays on its day.
        assert_eq!(l.prune_holds(DAY + 1).await.expect("prune"), 1);
        assert_eq!(db.count(HOLDS).await, 0);
        assert_eq!(spent().await, 2 * FEE);
    }
}

// ---------------------------------------------------------------------------------------------
// Whose reservation it is, on both ledgers: the attempts of one payment that overlap (a claim
// released or taken over while its attempt still runs) and a crash between two of its steps.
// ---------------------------------------------------------------------------------------------

mod holds {
    use std::time::Duration;

    use x402_facilitator::ledger::{
        self, BudgetLine, ClaimOutcome, ClaimToken, Hold, Reservation, SharedLedger, Submission,
    };

    use super::FEE;
    use crate::harness::{self, Db};
    use crate::ledger_contract::claim;

    const NET: &str = "eip155:31337";
    const LEASE: Duration = Duration::from_secs(30);

    fn today() -> i64 {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        i64::try_from(ms / 86_400_000).expect("a day number")
    }

    fn line(kind: &'static str, subject: &str, cap: i64) -> BudgetLine {
        BudgetLine {
            network: NET.into(),
            kind,
            subject: subject.into(),
            period: today(),
            cap,
        }
    }

    fn hold(key: &str, owner: &ClaimToken) -> Hold {
        Hold {
            replay_key: key.into(),
            network: NET.into(),
            owner: owner.clone(),
            period: today(),
        }
    }

    async fn reserve(
        l: &SharedLedger,
        lines: &[BudgetLine],
        amount: i64,
        key: &str,
        owner: &ClaimToken,
    ) -> Reservation {
        l.reserve(lines, amount, &hold(key, owner))
            .await
            .expect("reserve")
    }

    /// What an attempt gives back when it sent nothing (the note says how much, and where).
    async fn refund(
        l: &SharedLedger,
        _lines: &[BudgetLine],
        _amount: i64,
        key: &str,
        owner: &ClaimToken,
    ) {
        l.refund(&hold(key, owner)).await.expect("refund");
    }

    async fn keep(l: &SharedLedger, key: &str, owner: &ClaimToken) {
        l.keep(&hold(key, owner)).await.expect("keep");
    }

    async fn holds(db: &Db) -> i64 {
        db.count(super::HOLDS).await
    }

    async fn open(db: &Db) -> SharedLedger {
        ledger::connect(&db.url(), 4, Duration::from_secs(5))
            .await
            .expect("ledger opens")
    }

    async fn claimed(l: &SharedLedger, key: &str, lease: Duration) -> ClaimToken {
        match l.claim(&claim(key), lease).await.expect("claim") {
            ClaimOutcome::Claimed(token) => token,
            other => panic!("expected to win the claim: {other:?}"),
        }
    }

    /// The claim taken over by a new attempt (its holder's lease ran out).
    async fn taken_over(l: &SharedLedger, key: &str) -> ClaimToken {
        let seen = l.find(key).await.expect("find").expect("row");
        l.take_over(&seen, LEASE)
            .await
            .expect("take over")
            .expect("the lease ran out")
    }

    async fn record(l: &SharedLedger, key: &str, token: &ClaimToken, tx: &str) -> bool {
        let s = Submission {
            tx_id: tx,
            raw_tx: "02f8",
            signer: "0xsigner",
            fence: None,
        };
        l.record_submitted(key, token, &s)
            .await
            .expect("record_submitted")
            .applied()
    }

    /// What a counter holds now.
    async fn counted(db: &Db, kind: &str, subject: &str) -> i64 {
        db.count(&format!(
            "SELECT COALESCE(MAX(spent), 0) FROM budget_counters \
             WHERE kind = '{kind}' AND subject = '{subject}'"
        ))
        .await
    }

    /// Attempt A reserves and its prepare fails (an estimate that reverts, an RPC error): its
    /// claim is released, and before A gives its reservation back the client's retry B claims
    /// the payment anew and reserves. A's late refund must not take B's fee off the counters:
    /// B sends a transaction, so one fee is counted.
    #[tokio::test]
    async fn a_late_refund_after_the_claim_was_released_leaves_the_next_attempts_fee_counted() {
        for db in harness::db::both().await {
            let l = open(&db).await;
            let lines = [line("payer", "0xp", 10 * FEE)];
            let a = claimed(&l, "p", LEASE).await;
            assert_eq!(
                reserve(&l, &lines, FEE, "p", &a).await,
                Reservation::Reserved
            );
            assert!(l.release("p", &a).await.expect("release").applied());
            let b = claimed(&l, "p", LEASE).await;
            let _ = reserve(&l, &lines, FEE, "p", &b).await;
            refund(&l, &lines, FEE, "p", &a).await;
            assert!(
                record(&l, "p", &b, "0xb").await,
                "B records its transaction"
            );
            keep(&l, "p", &b).await;
            assert_eq!(
                counted(&db, "payer", "0xp").await,
                FEE,
                "B sent a transaction: its fee is counted"
            );
            assert_eq!(holds(&db).await, 0);
        }
    }

    /// A's lease runs out while A is alive; B takes the payment over and adopts A's reservation.
    /// A's record comes back lost and A gives back what it reserved: B's fee must stay counted.
    /// And an attempt that reserves only after it lost its claim cannot make the reservation
    /// its own (it would then give back the fee of the attempt that sends).
    #[tokio::test]
    async fn an_attempt_that_lost_its_claim_cannot_give_back_the_new_holders_fee() {
        for db in harness::db::both().await {
            let l = open(&db).await;
            // Reserved, then taken over.
            let lines = [line("payer", "0xq", 10 * FEE)];
            let a = claimed(&l, "q", Duration::ZERO).await;
            assert_eq!(
                reserve(&l, &lines, FEE, "q", &a).await,
                Reservation::Reserved
            );
            let b = taken_over(&l, "q").await;
            assert_eq!(
                reserve(&l, &lines, FEE, "q", &b).await,
                Reservation::Adopted
            );
            assert!(!record(&l, "q", &a, "0xa").await, "A lost the claim");
            refund(&l, &lines, FEE, "q", &a).await;
            assert!(record(&l, "q", &b, "0xb").await);
            keep(&l, "q", &b).await;
            assert_eq!(counted(&db, "payer", "0xq").await, FEE, "taken over");

            // Taken over, then reserved late by the attempt that lost it.
            let lines = [line("payer", "0xs", 10 * FEE)];
            let a = claimed(&l, "s", Duration::ZERO).await;
            let b = taken_over(&l, "s").await;
            assert_eq!(
                reserve(&l, &lines, FEE, "s", &b).await,
                Reservation::Reserved
            );
            assert_eq!(
                reserve(&l, &lines, FEE, "s", &a).await,
                Reservation::Superseded
            );
            refund(&l, &lines, FEE, "s", &a).await;
            assert!(record(&l, "s", &b, "0xb2").await);
            keep(&l, "s", &b).await;
            assert_eq!(
                counted(&db, "payer", "0xs").await,
                FEE,
                "reserved late by the loser"
            );
            assert_eq!(holds(&db).await, 0);
        }
    }

    /// A crash between recording a transaction and keeping the reservation: the transaction
    /// reverts, and the payer's next attempt (the failed row claimed again) sends another one,
    /// so two fees are counted. Recording spends the reservation in its own transaction.
    #[tokio::test]
    async fn a_crash_between_recording_and_keeping_leaves_no_reservation_to_adopt() {
        for db in harness::db::both().await {
            let l = open(&db).await;
            let lines = [line("payer", "0xf", 10 * FEE)];
            let a = claimed(&l, "f", LEASE).await;
            assert_eq!(
                reserve(&l, &lines, FEE, "f", &a).await,
                Reservation::Reserved
            );
            assert!(record(&l, "f", &a, "0xf1").await);
            // Killed here, before keep.
            assert_eq!(holds(&db).await, 0, "recorded: the reservation is spent");
            assert!(
                l.record_failed("f", &a, "invalid_exact_evm_transaction_failed")
                    .await
                    .expect("failed")
                    .applied()
            );
            let t = taken_over(&l, "f").await;
            let ClaimOutcome::Claimed(c) =
                l.reclaim(&claim("f"), &t, LEASE).await.expect("reclaim")
            else {
                panic!("the failed row is claimed again")
            };
            assert_eq!(
                reserve(&l, &lines, FEE, "f", &c).await,
                Reservation::Reserved,
                "a new transaction, a new fee"
            );
            assert!(record(&l, "f", &c, "0xf2").await);
            assert_eq!(counted(&db, "payer", "0xf").await, 2 * FEE);
        }
    }

    /// A settle killed between reserving and signing, and the reconciler releases its claim
    /// (the payment is never retried): nothing was sent, so the fee is given back, and no note
    /// stays behind.
    #[tokio::test]
    async fn the_reconciler_releasing_an_abandoned_claim_gives_its_reservation_back() {
        for db in harness::db::both().await {
            let l = open(&db).await;
            let lines = [line("payer", "0xr", 10 * FEE)];
            let a = claimed(&l, "r", Duration::ZERO).await;
            assert_eq!(
                reserve(&l, &lines, FEE, "r", &a).await,
                Reservation::Reserved
            );
            let t = taken_over(&l, "r").await;
            assert!(l.release("r", &t).await.expect("release").applied());
            assert_eq!(counted(&db, "payer", "0xr").await, 0);
            assert_eq!(holds(&db).await, 0);
        }
    }

    /// The crashed attempt reserved on its own counters (its API key, the fee then configured);
    /// the payment's next attempt comes through another key after the operator raised the fee.
    /// The new attempt is counted on its own counters at its own fee, and giving it back leaves
    /// every counter at nothing: the earlier attempt's key is not charged for ever, and no
    /// counter loses what it never took.
    #[tokio::test]
    async fn an_adopted_reservation_is_counted_and_given_back_on_the_lines_it_charged() {
        for db in harness::db::both().await {
            let l = open(&db).await;
            let a = claimed(&l, "m", Duration::ZERO).await;
            let first = [line("payer", "0xm", 10 * FEE), line("key", "k1", 10 * FEE)];
            assert_eq!(
                reserve(&l, &first, FEE, "m", &a).await,
                Reservation::Reserved
            );
            let b = taken_over(&l, "m").await;
            let second = [line("payer", "0xm", 10 * FEE), line("key", "k2", 10 * FEE)];
            let _ = reserve(&l, &second, 2 * FEE, "m", &b).await;
            assert_eq!(
                (
                    counted(&db, "payer", "0xm").await,
                    counted(&db, "key", "k1").await,
                    counted(&db, "key", "k2").await
                ),
                (2 * FEE, 0, 2 * FEE),
                "the attempt that may send is counted, on its own counters"
            );
            refund(&l, &second, 2 * FEE, "m", &b).await;
            assert_eq!(
                (
                    counted(&db, "payer", "0xm").await,
                    counted(&db, "key", "k1").await,
                    counted(&db, "key", "k2").await
                ),
                (0, 0, 0),
                "given back exactly"
            );
            assert_eq!(holds(&db).await, 0);
        }
    }
}
