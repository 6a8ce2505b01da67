//! Safe to expose (docs/access.md): API keys made with the real CLI, scopes and tenant payees,
//! rate limits, operator policy and cluster-wide budgets, against the real app, a real anvil
//! and both ledgers (Postgres for everything two replicas share).

use std::process::Command;
use std::time::Duration;

use alloy::primitives::U256;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{self, Chain, Db, Options, Payment, TestApp};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_x402-facilitator"))
}

/// `x402-facilitator keys create` on `db`, as an operator runs it; returns the token.
fn create_key(db: &Db, name: &str, scopes: &str, pay_to: Option<&str>) -> String {
    let mut cmd = bin();
    cmd.args(["keys", "create", "--name", name, "--scopes", scopes])
        .env("X402__DATABASE__URL", db.url());
    if let Some(p) = pay_to {
        cmd.args(["--pay-to", p]);
    }
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("x402_") && token.len() > 60, "{token}");
    token
}

fn keys_cli(db: &Db, args: &[&str]) -> String {
    let out = bin()
        .arg("keys")
        .args(args)
        .env("X402__DATABASE__URL", db.url())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn call(
    app: &TestApp,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let url = format!("{}{path}", app.base);
    let mut req = match body {
        Some(b) => app.http.post(url).json(b),
        None => app.http.get(url),
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON {status}: {text}"));
    (status, headers, json)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn funded(chain: &Chain) -> Payment {
    harness::funded_payment(chain).await
}

#[tokio::test]
async fn keys_gate_every_endpoint_by_scope() {
    let chain = Chain::start().await;
    for db in harness::db::both().await {
        // No key yet, auth not required: open (the zero-setup default).
        let app = harness::spawn(&chain, &db).await;
        let p = funded(&chain).await;
        assert_eq!(app.verify(&p.body()).await["isValid"], true);
        let verifier = create_key(&db, "verifier", "verify", None);
        let full = create_key(&db, "seller", "verify,settle,supported,settlements", None);
        tokio::time::sleep(Duration::from_millis(700)).await;
        // Now that a key exists, every endpoint but /health needs one.
        let (status, headers, body) = call(&app, "/verify", Some(&p.body()), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        // Shaped like a verify answer, so the SDK clients raise their typed error.
        assert_eq!(body["isValid"], false, "{body}");
        assert_eq!(body["invalidReason"], "unauthorized", "{body}");
        assert!(body["errorId"].is_string(), "{body}");
        assert_eq!(headers["www-authenticate"], "Bearer");
        let (status, _, _) = call(&app, "/supported", None, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = call(&app, "/health", None, &[]).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, body) = call(
            &app,
            "/verify",
            Some(&p.body()),
            &[("authorization", "Bearer x402_nope")],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        // A verify-only key verifies (either header) but may not settle.
        let auth = bearer(&verifier);
        let (status, _, body) = call(
            &app,
            "/verify",
            Some(&p.body()),
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(
            (status, body["isValid"].clone()),
            (StatusCode::OK, Value::Bool(true))
        );
        let (status, _, body) = call(
            &app,
            "/verify",
            Some(&p.body()),
            &[("x-api-key", &verifier)],
        )
        .await;
        assert_eq!(
            (status, body["isValid"].clone()),
            (StatusCode::OK, Value::Bool(true))
        );
        let (status, _, body) = call(
            &app,
            "/settle",
            Some(&p.body()),
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["errorReason"], "forbidden", "{body}");
        assert!(
            body["errorMessage"]
                .as_str()
                .unwrap_or("")
                .contains("settle"),
            "{body}"
        );
        assert_eq!(chain.balance(chain.token, p.pay_to).await, U256::ZERO);
        let (status, _, _) = call(&app, "/metrics", None, &[("authorization", &auth)]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // The seller's key settles, and reads its receipt.
        let auth = bearer(&full);
        let (status, _, body) = call(
            &app,
            "/settle",
            Some(&p.body()),
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(
            (status, body["success"].clone()),
            (StatusCode::OK, Value::Bool(true)),
            "{body}"
        );
        let tx = body["transaction"].as_str().expect("tx").to_string();
        let (status, _, receipt) = call(
            &app,
            &format!("/settlements/{tx}"),
            None,
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        // The listing shows ids and prefixes, never a token.
        let listed = keys_cli(&db, &["list"]);
        assert!(
            listed.contains("verifier") && listed.contains("seller"),
            "{listed}"
        );
        assert!(
            !listed.contains(&verifier[8..]) && !listed.contains(&full[8..]),
            "{listed}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_revoked_key_stops_working_on_the_other_replica_within_a_second() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let token = create_key(&db, "seller", "verify,supported", None);
    let a = harness::spawn(&chain, &db).await;
    let b = harness::spawn(&chain, &db).await;
    let auth = bearer(&token);
    for app in [&a, &b] {
        let (status, _, _) = call(app, "/supported", None, &[("authorization", &auth)]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let id = keys_cli(&db, &["list"])
        .lines()
        .find(|l| l.contains("seller"))
        .and_then(|l| l.split('\t').next())
        .expect("listed")
        .to_string();
    // Revoked through the CLI, refused by both replicas within auth.cache_ms (500 ms), also as
    // the last key: revoking every key does not open the port again.
    keys_cli(&db, &["revoke", &id]);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for app in [&a, &b] {
        let (status, _, body) = call(app, "/supported", None, &[("authorization", &auth)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    // Rotation: the new token works, the old one is revoked.
    let fresh = create_key(&db, "other", "supported", None);
    let other_id = keys_cli(&db, &["list"])
        .lines()
        .find(|l| l.contains("other"))
        .and_then(|l| l.split('\t').next())
        .expect("listed")
        .to_string();
    let rotated = keys_cli(&db, &["rotate", &other_id]).trim().to_string();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, _, _) = call(
        &b,
        "/supported",
        None,
        &[("authorization", &bearer(&rotated))],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(
        &b,
        "/supported",
        None,
        &[("authorization", &bearer(&fresh))],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_tenant_key_settles_only_to_its_payees() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = harness::spawn(&chain, &db).await;
    let mine = funded(&chain).await;
    let theirs = funded(&chain).await;
    let token = create_key(
        &db,
        "tenant",
        "verify,settle,settlements",
        Some(&mine.pay_to.to_checksum(None).to_lowercase()),
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let auth = bearer(&token);
    let (_, _, body) = call(
        &app,
        "/verify",
        Some(&theirs.body()),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(
        body["invalidReason"], "policy_pay_to_not_allowed_for_key",
        "{body}"
    );
    let (_, _, body) = call(
        &app,
        "/settle",
        Some(&theirs.body()),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(
        body["errorReason"], "policy_pay_to_not_allowed_for_key",
        "{body}"
    );
    assert_eq!(chain.balance(chain.token, theirs.pay_to).await, U256::ZERO);
    let (_, _, body) = call(
        &app,
        "/settle",
        Some(&mine.body()),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(chain.balance(chain.token, mine.pay_to).await, mine.amount);
    // Its receipts: its own payee's, never another seller's.
    let other = funded(&chain).await;
    let open = create_key(&db, "operator", "verify,settle,settlements", None);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (_, _, theirs_settled) = call(
        &app,
        "/settle",
        Some(&other.body()),
        &[("authorization", &bearer(&open))],
    )
    .await;
    let foreign = theirs_settled["transaction"]
        .as_str()
        .expect("tx")
        .to_string();
    let (status, _, _) = call(
        &app,
        &format!("/settlements/{foreign}"),
        None,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, listed) = call(&app, "/settlements", None, &[("authorization", &auth)]).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{listed}");
    let (status, _, _) = call(
        &app,
        &format!("/settlements?payTo={}", other.pay_to.to_checksum(None)),
        None,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn over_the_burst_is_429_with_retry_after() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let options = Options::default()
        .env("X402__RATE_LIMIT__EXEMPT", "")
        .env("X402__RATE_LIMIT__PER_IP__VERIFY", "1")
        .env("X402__RATE_LIMIT__BURST_SECONDS", "2");
    let app = harness::spawn_with(&chain, &db, options).await;
    let p = funded(&chain).await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..4 {
        let (status, headers, body) = call(&app, "/verify", Some(&p.body()), &[]).await;
        statuses.push(status);
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((headers, body));
        }
    }
    assert_eq!(
        &statuses[..2],
        &[StatusCode::OK, StatusCode::OK],
        "{statuses:?}"
    );
    let (headers, body) = limited.expect("limited after the burst");
    let wait: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(body["isValid"], false);
    assert_eq!(body["invalidReason"], "rate_limited", "{body}");
    // Other endpoint classes have their own limit.
    let (status, _, _) = call(&app, "/supported", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    // And the limit recovers.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, _) = call(&app, "/verify", Some(&p.body()), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics.contains("x402_refusals_total{reason=\"rate_limited_ip\"}"),
        "{metrics}"
    );
    app.stop().await;
}

/// A seller's backend sends everything from one address with its key. Its key's cache entry
/// goes stale every `auth.cache_ms`; the request that finds it stale must still be limited as
/// the key, not charged to the address's (much smaller) per-IP budget, or a busy seller would be
/// refused 429 at every expiry. A stranger from the same address without a key is limited by IP.
#[tokio::test]
async fn a_known_key_is_limited_as_the_key_also_when_its_cache_entry_is_stale() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let token = create_key(&db, "seller", "supported", None);
    let options = Options::default()
        .env("X402__RATE_LIMIT__EXEMPT", "")
        .env("X402__RATE_LIMIT__PER_IP__OTHER", "1")
        .env("X402__RATE_LIMIT__BURST_SECONDS", "1")
        .env("X402__AUTH__CACHE_MS", "50");
    let app = harness::spawn_with(&chain, &db, options).await;
    let auth = bearer(&token);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, _, _) = call(&app, "/supported", None, &[("authorization", &auth)]).await;
        statuses.push(status);
        // Past the cache's trust: the next request finds the entry stale.
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    // Without the key, the same address has its one request of the second and is then refused.
    let mut anonymous = Vec::new();
    for _ in 0..3 {
        anonymous.push(call(&app, "/supported", None, &[]).await.0);
    }
    assert!(
        anonymous.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{anonymous:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn self_dealing_dust_and_policy_violations_move_nothing() {
    let chain = Chain::start().await;
    for db in harness::db::both().await {
        let deny = tempfile::NamedTempFile::new().expect("temp file");
        let options = Options::default()
            .env("X402__NETWORKS__LOCAL__POLICY__MIN_AMOUNT", "5000")
            .env("X402__NETWORKS__LOCAL__POLICY__MAX_AMOUNT", "50000")
            .env(
                "X402__NETWORKS__LOCAL__POLICY__MAX_AUTHORIZATION_SECS",
                "120",
            )
            .env(
                "X402__POLICY__DENY_LIST_FILE",
                deny.path().display().to_string(),
            )
            .env("X402__POLICY__DENY_LIST_RELOAD_MS", "100");
        let app = harness::spawn_with(&chain, &db, options).await;
        // A payer paying itself 1 unit: what an attacker sends to make us pay gas.
        let mut own = funded(&chain).await;
        own.pay_to = own.from;
        own.to = own.from;
        own.amount = U256::from(1u64);
        own.value = own.amount;
        let mut dust = funded(&chain).await;
        dust.amount = U256::from(4999u64);
        dust.value = dust.amount;
        let mut big = funded(&chain).await;
        big.amount = U256::from(50001u64);
        big.value = big.amount;
        let mut long = funded(&chain).await;
        long.valid_before = harness::payment::now() + 3600;
        let p = funded(&chain).await;
        let before = chain.raw("eth_blockNumber").await;
        let refused = |v: Value, key: &str| v[key].as_str().unwrap_or("").to_string();
        assert_eq!(
            refused(app.verify(&own.body()).await, "invalidReason"),
            "policy_self_payment"
        );
        assert_eq!(
            refused(app.settle(&own.body()).await, "errorReason"),
            "policy_self_payment"
        );
        assert_eq!(
            refused(app.settle(&dust.body()).await, "errorReason"),
            "policy_amount_below_minimum"
        );
        assert_eq!(
            refused(app.verify(&big.body()).await, "invalidReason"),
            "policy_amount_above_maximum"
        );
        assert_eq!(
            refused(app.settle(&long.body()).await, "errorReason"),
            "policy_authorization_window_too_long"
        );
        // Nothing was sent: no block was mined, no row was written.
        assert_eq!(chain.raw("eth_blockNumber").await, before);
        assert_eq!(db.count("SELECT COUNT(*) FROM settlements").await, 0);
        // The deny list takes effect when its file changes.
        assert_eq!(app.verify(&p.body()).await["isValid"], true);
        std::fs::write(
            deny.path(),
            format!("# screening\n{}\n", p.from.to_checksum(None)),
        )
        .expect("write");
        let mut refused = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if app.verify(&p.body()).await["invalidReason"] == "policy_address_denied" {
                refused = true;
                break;
            }
        }
        assert!(refused, "the deny list was not reloaded");
        assert_eq!(
            app.settle(&p.body()).await["errorReason"],
            "policy_address_denied"
        );
        assert_eq!(chain.balance(chain.token, p.pay_to).await, U256::ZERO);
        let (_, metrics) = app.get_text("/metrics").await;
        assert!(
            metrics.contains("x402_refusals_total{reason=\"policy_self_payment\"} 2"),
            "{metrics}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn the_daily_fee_budget_runs_out_across_two_replicas_at_the_same_total() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let budget = |o: Options| {
        o.env("X402__NETWORKS__LOCAL__BUDGET__FEE_PER_SETTLE", "0.001")
            .env("X402__NETWORKS__LOCAL__BUDGET__DAILY_CAP", "0.003")
    };
    let a = harness::spawn_with(&chain, &db, budget(Options::default())).await;
    let b = harness::spawn_with(&chain, &db, budget(Options::default())).await;
    let mut payments = Vec::new();
    for _ in 0..8 {
        payments.push(funded(&chain).await);
    }
    let answers = join_all(payments.iter().enumerate().map(|(i, p)| {
        let app = if i % 2 == 0 { &a } else { &b };
        async move { app.settle(&p.body()).await }
    }))
    .await;
    let settled = answers.iter().filter(|a| a["success"] == true).count();
    let exhausted = answers
        .iter()
        .filter(|a| a["errorReason"] == "budget_exhausted")
        .count();
    assert_eq!((settled, exhausted), (3, 5), "{answers:?}");
    let mut paid = 0;
    for p in &payments {
        if chain.balance(chain.token, p.pay_to).await == p.amount {
            paid += 1;
        }
    }
    assert_eq!(paid, 3, "money moved for exactly the budgeted settles");
    assert_eq!(
        db.count("SELECT spent FROM budget_counters WHERE kind = 'network'")
            .await,
        3_000_000
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_tenant_key_sees_only_entitlements_to_its_payees() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = harness::spawn_with(
        &chain,
        &db,
        Options::default().env("X402__SESSIONS__ENABLED", "true"),
    )
    .await;
    let p = funded(&chain).await;
    assert_eq!(app.settle(&p.body()).await["success"], true);
    let seller = create_key(&db, "seller", "verify", Some(&p.pay_to.to_checksum(None)));
    let stranger = create_key(
        &db,
        "stranger",
        "verify",
        Some("0x000000000000000000000000000000000000dEaD"),
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let path = format!(
        "/sessions/entitlement?payer={}&resource=http://127.0.0.1/weather&within=3600",
        p.from.to_checksum(None)
    );
    let (status, _, body) = call(&app, &path, None, &[("authorization", &bearer(&seller))]).await;
    assert_eq!(
        (status, body["entitled"].clone()),
        (StatusCode::OK, Value::Bool(true)),
        "{body}"
    );
    let (status, _, body) = call(&app, &path, None, &[("authorization", &bearer(&stranger))]).await;
    assert_eq!(
        (status, body["entitled"].clone()),
        (StatusCode::OK, Value::Bool(false)),
        "{body}"
    );
    let (status, _, _) = call(&app, &path, None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn by_default_a_preset_network_accepts_only_its_known_stablecoins() {
    // Anvil as Base Sepolia: the preset knows its USDC, and the test token is not it.
    let chain = Chain::start_with(84532, &[]).await;
    let db = Db::sqlite();
    let app = harness::spawn_with(
        &chain,
        &db,
        Options::default().env("X402__NETWORKS__LOCAL__POLICY__ASSETS", "known"),
    )
    .await;
    let p = funded(&chain).await;
    assert_eq!(
        app.verify(&p.body()).await["invalidReason"],
        "policy_asset_not_accepted"
    );
    assert_eq!(
        app.settle(&p.body()).await["errorReason"],
        "policy_asset_not_accepted"
    );
    assert_eq!(chain.balance(chain.token, p.pay_to).await, U256::ZERO);
    app.stop().await;
    // `assets = "any"` opens it.
    let app = harness::spawn(&chain, &db).await;
    assert_eq!(app.verify(&p.body()).await["isValid"], true);
    app.stop().await;
}
