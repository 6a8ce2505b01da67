//! Identical replicas that all settle (docs/ledger.md, "Replicas"): real processes of the
//! binary, one real Postgres, the same configuration and the same key list, as an operator runs
//! a Deployment. Keys are shared fairly; a replica with no key hands its settles to one with a
//! key; replicas join and die under load and every payment still settles exactly once.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::app::{env_for, signers};
use crate::harness::process::Proc;
use crate::harness::{self, Chain, Db, Payment};

/// The shared configuration: short leases so that shares move within seconds.
fn replica_env(
    chain: &Chain,
    db: &Db,
    keys: &[alloy::signers::local::PrivateKeySigner],
) -> Vec<(String, String)> {
    let mut env = env_for(chain, &chain.url, db, keys);
    env.push((
        "X402__SETTLEMENT__SIGNER_LEASE_TTL_MS".into(),
        "1200".into(),
    ));
    env.push(("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS".into(), "4000".into()));
    env.push(("X402__SETTLEMENT__LEASE_MARGIN_MS".into(), "500".into()));
    env
}

pub(crate) async fn ready(base: &str) -> Option<Value> {
    let r = reqwest::get(format!("{base}/ready")).await.ok()?;
    r.json().await.ok()
}

/// Keys held (not draining) by each replica.
async fn shares(bases: &[&str]) -> Vec<usize> {
    let mut out = Vec::new();
    for base in bases {
        let held = ready(base)
            .await
            .and_then(|r| r["signers"].as_object().cloned())
            .map(|s| s.values().filter(|v| v["draining"] == false).count())
            .unwrap_or(0);
        out.push(held);
    }
    out
}

/// Waits until the replicas hold `total` keys between them, none more than `most`.
pub(crate) async fn balanced(bases: &[&str], total: usize, most: usize) {
    let started = Instant::now();
    loop {
        let s = shares(bases).await;
        if s.iter().sum::<usize>() == total && s.iter().all(|n| *n <= most) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "shares never balanced: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn settle_at(base: &str, body: &Value) -> Result<(StatusCode, Value), reqwest::Error> {
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?
        .post(format!("{base}/settle"))
        .json(body)
        .send()
        .await?;
    let status = r.status();
    Ok((status, r.json().await?))
}

async fn metric(base: &str, line_start: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn payments(chain: &Chain, n: usize) -> Vec<Payment> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(harness::funded_payment(chain).await);
    }
    out
}

/// Three identical replicas, two keys between them: 60 distinct payments spread round-robin at
/// concurrency 16 all succeed, each moves money once, none is answered 503, no nonce conflict.
#[tokio::test]
async fn three_identical_replicas_with_two_keys_all_settle() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let keys = signers(&chain, 2, false).await;
    let env = replica_env(&chain, &db, &keys);
    let procs = join_all((0..3).map(|_| Proc::start(&env))).await;
    let bases: Vec<&str> = procs.iter().map(|p| p.base.as_str()).collect();
    balanced(&bases, 2, 1).await;

    let all = payments(&chain, 60).await;
    let answers: Vec<(StatusCode, Value)> = stream::iter(all.iter().enumerate())
        .map(|(i, p)| {
            let base = bases[i % 3].to_string();
            async move { settle_at(&base, &p.body()).await.expect("answered") }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let unavailable = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(unavailable, 0, "answers of 503: {unavailable}");
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::OK, "{answer}");
        assert_eq!(answer["success"], true, "{answer}");
    }
    for p in &all {
        assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
    }
    let mut conflicts = 0.0;
    let mut handed = 0.0;
    for base in &bases {
        conflicts += metric(base, "x402_nonce_conflicts_total").await;
        handed += metric(base, "x402_handoff_total{outcome=\"out\"}").await;
    }
    assert_eq!(conflicts, 0.0, "nonce conflicts");
    assert!(
        handed > 0.0,
        "the replica without a key handed its settles over"
    );
}

/// Two identical replicas sharing one key: every settle on either replica succeeds.
#[tokio::test]
async fn two_replicas_sharing_one_key_both_settle() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let keys = signers(&chain, 1, false).await;
    let env = replica_env(&chain, &db, &keys);
    let procs = join_all((0..2).map(|_| Proc::start(&env))).await;
    let bases: Vec<&str> = procs.iter().map(|p| p.base.as_str()).collect();
    balanced(&bases, 1, 1).await;
    let all = payments(&chain, 10).await;
    for (i, p) in all.iter().enumerate() {
        let (status, answer) = settle_at(bases[i % 2], &p.body()).await.expect("answered");
        assert_eq!(status, StatusCode::OK, "replica {}: {answer}", i % 2);
        assert_eq!(answer["success"], true, "replica {}: {answer}", i % 2);
    }
    for p in &all {
        assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
    }
}

/// Under load, a third replica joins (the keys rebalance) and then a replica holding keys is
/// SIGKILLed (its keys move within the lease TTL, its in-flight rows are finished by the
/// others): every payment ends settled exactly once, none failed, none paid twice. A client
/// whose replica died retries on another, as a load balancer would.
#[tokio::test]
async fn replicas_join_and_die_under_load_and_every_payment_settles_once() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let keys = signers(&chain, 2, false).await;
    let env = replica_env(&chain, &db, &keys);
    let mut procs = vec![Proc::start(&env).await, Proc::start(&env).await];
    {
        let bases: Vec<&str> = procs.iter().map(|p| p.base.as_str()).collect();
        balanced(&bases, 2, 1).await;
    }
    let all = payments(&chain, 40).await;
    let send = |bases: Vec<String>, batch: Vec<Value>| async move {
        stream::iter(batch.into_iter().enumerate())
            .map(|(i, body)| {
                let bases = bases.clone();
                async move {
                    // A dead replica's client retries on the next one, like a load balancer.
                    for attempt in 0..bases.len() {
                        let base = &bases[(i + attempt) % bases.len()];
                        if settle_at(base, &body).await.is_ok() {
                            return;
                        }
                    }
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await
    };
    let bodies: Vec<Value> = all.iter().map(Payment::body).collect();
    let urls = |procs: &[Proc]| procs.iter().map(|p| p.base.clone()).collect::<Vec<_>>();

    send(urls(&procs), bodies[..10].to_vec()).await;
    procs.push(Proc::start(&env).await); // a replica joins while payments flow
    let load = tokio::spawn(send(urls(&procs), bodies[10..25].to_vec()));
    {
        let bases: Vec<&str> = procs.iter().map(|p| p.base.as_str()).collect();
        balanced(&bases, 2, 1).await;
    }
    load.await.expect("load");
    // Kill a replica that holds a key, in the middle of a batch.
    let holder = {
        let bases: Vec<&str> = procs.iter().map(|p| p.base.as_str()).collect();
        let s = shares(&bases).await;
        s.iter().position(|n| *n > 0).expect("someone holds a key")
    };
    let victim = procs.remove(holder);
    let load = tokio::spawn(send(urls(&procs), bodies[25..].to_vec()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    victim.kill().await;
    load.await.expect("load");
    {
        let bases: Vec<&str> = procs.iter().map(|p| p.base.as_str()).collect();
        balanced(&bases, 2, 1).await; // the dead replica's key moved
    }
    // Payments whose client gave up with the dead replica: settled by the survivors' reconciler
    // or on a retry.
    for body in &bodies {
        let started = Instant::now();
        loop {
            if let Ok((_, answer)) = settle_at(&procs[0].base, body).await
                && (answer["success"] == true
                    || answer["errorReason"] == "invalid_exact_evm_nonce_already_used")
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "a payment never settled"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE state = 'settled'")
            .await,
        40
    );
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE state = 'failed'")
            .await,
        0
    );
    for p in &all {
        assert_eq!(chain.transfers_from(chain.token, p.from).await, 1);
    }
}

/// Solana fee payers are not leased (a transaction carries its own recent blockhash instead of a
/// nonce lane): two identical replicas with the same fee payer on one Postgres both settle every
/// payment they are given, each exactly once.
#[tokio::test]
async fn two_solana_replicas_with_the_same_fee_payer_both_settle() {
    use crate::harness::app::{base_env, spawn_env};
    use crate::harness::solana::{
        self, SolanaChain, TestKey, compute_limit, compute_price, memo, message, requirements,
        signed_base64, transfer,
    };
    const AMOUNT: u64 = 1_000;
    let chain = SolanaChain::start().await;
    let db = Db::postgres().await;
    let fee_payer = TestKey::random();
    let payer = TestKey::random();
    let pay_to = TestKey::random().pubkey();
    chain.airdrop(&fee_payer.pubkey(), 10_000_000_000).await;
    let mint = chain.create_mint(false).await;
    chain.mint_to(&mint, &payer.pubkey(), 1_000_000).await;
    chain.create_ata(&mint, &pay_to).await;
    let mut env = base_env(&db);
    env.extend(solana::network_env(&chain.url, &fee_payer));
    let a = spawn_env(env.clone(), Vec::new()).await;
    let b = spawn_env(env, Vec::new()).await;
    let reqs = requirements(&mint, &pay_to, AMOUNT, &fee_payer.pubkey());
    let mut bodies = Vec::new();
    for i in 0..10 {
        let ixs = [
            compute_limit(20_000),
            compute_price(1),
            transfer(false, mint, payer.pubkey(), pay_to, AMOUNT),
            memo(&format!("{i:032}"), &[]),
        ];
        let msg = message(fee_payer.pubkey(), chain.blockhash().await, &ixs, None);
        bodies.push(solana::body(
            2,
            &signed_base64(msg, &[&payer.keypair]),
            reqs.clone(),
        ));
    }
    let answers = join_all(bodies.iter().enumerate().map(|(i, body)| {
        let app = if i % 2 == 0 { &a } else { &b };
        async move { app.post("/settle", body).await }
    }))
    .await;
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::OK, "{answer}");
        assert_eq!(answer["success"], true, "{answer}");
    }
    assert_eq!(
        chain.token_balance(&mint, &pay_to, false).await,
        10 * AMOUNT,
        "every payment paid once"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE state = 'settled'")
            .await,
        10
    );
    a.stop().await;
    b.stop().await;
}

/// `upto` can only be sent from the key its witness names (the proxy checks `msg.sender`): two
/// identical replicas, two keys, one each. A payment naming either key, sent to the replica that
/// does not hold that key, is handed to the one that does and sent from that key; a charge of 0
/// sends nothing and needs no hand-off.
#[tokio::test]
async fn an_upto_payment_reaches_the_replica_holding_the_key_it_names() {
    use alloy::primitives::U256;

    use crate::harness::permit2::Kind;
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let keys = signers(&chain, 2, false).await;
    let mut env = replica_env(&chain, &db, &keys);
    env.push(("X402__NETWORKS__LOCAL__SCHEMES".into(), "exact,upto".into()));
    let procs = join_all((0..2).map(|_| Proc::start(&env))).await;
    let bases: Vec<&str> = procs.iter().map(|p| p.base.as_str()).collect();
    balanced(&bases, 2, 1).await;

    // Every replica advertises the same facilitator address (the seller SDK caches one).
    let mut advertised = Vec::new();
    for base in &bases {
        let supported: Value = reqwest::get(format!("{base}/supported"))
            .await
            .expect("supported")
            .json()
            .await
            .expect("json");
        let kind = supported["kinds"]
            .as_array()
            .and_then(|k| k.iter().find(|k| k["scheme"] == "upto"))
            .cloned()
            .unwrap_or_else(|| panic!("no upto kind: {supported}"));
        advertised.push(kind["extra"]["facilitatorAddress"].clone());
    }
    assert_eq!(advertised[0], advertised[1]);

    let holds = |r: &Value, key: alloy::primitives::Address| {
        r["signers"]
            .as_object()
            .is_some_and(|s| s.contains_key(&format!("eip155:{}/{key:#x}", chain.chain_id)))
    };
    for key in &keys {
        let named = key.address();
        let mut holder = None;
        for (i, base) in bases.iter().enumerate() {
            if holds(&ready(base).await.expect("ready"), named) {
                holder = Some(i);
            }
        }
        let holder = holder.expect("someone holds the key");
        let other = bases[1 - holder];
        let handed_before = metric(other, "x402_handoff_total{outcome=\"out\"}").await;

        let p = harness::funded_permit2(&chain, Kind::Upto, named, true).await;
        let (status, answer) = settle_at(other, &p.settle_body(U256::from(1200u64)))
            .await
            .expect("answered");
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["success"], true, "{answer}");
        assert_eq!(answer["amount"], "1200", "{answer}");
        let tx = answer["transaction"].as_str().expect("tx");
        assert_eq!(chain.sender_of(tx).await, named, "sent from the key named");
        assert_eq!(
            chain.balance(chain.permit_token, p.pay_to).await,
            U256::from(1200u64)
        );
        assert_eq!(
            metric(other, "x402_handoff_total{outcome=\"out\"}").await,
            handed_before + 1.0,
            "handed to the holder"
        );

        // Nothing to send: settled where it arrived.
        let zero = harness::funded_permit2(&chain, Kind::Upto, named, true).await;
        let (_, answer) = settle_at(other, &zero.settle_body(U256::ZERO))
            .await
            .expect("answered");
        assert_eq!(
            (&answer["success"], &answer["amount"]),
            (&Value::Bool(true), &Value::from("0")),
            "{answer}"
        );
        assert_eq!(
            metric(other, "x402_handoff_total{outcome=\"out\"}").await,
            handed_before + 1.0
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE state = 'settled' AND scheme = 'upto'")
            .await,
        4
    );
}
