//! Health-aware `/supported` and `/ready` (README "GET /ready"): a network whose RPC stops
//! answering, or whose signers are under the gas threshold, leaves `/supported` and turns
//! `/ready` 503, and comes back when it recovers; a ledger that goes away turns `/ready` 503.
//! The faults are real: a proxy that refuses connections, a Postgres that refuses them.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::proxy::{Mode, RpcProxy};
use crate::harness::{self, Chain, Db, Options, TestApp};

async fn kinds(app: &TestApp) -> usize {
    let (status, body) = app.get("/supported").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["kinds"].as_array().map(Vec::len).unwrap_or(0)
}

/// Polls until `check` holds (the probe runs every 200 ms here), failing after 10 s.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready(app: &TestApp) -> (StatusCode, Value) {
    app.get("/ready").await
}

#[tokio::test]
async fn a_network_whose_rpc_fails_leaves_supported_and_comes_back() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let proxy = RpcProxy::start(&chain.url).await;
    let options = Options {
        rpc_url: Some(proxy.url.clone()),
        ..Options::default()
    }
    .env("X402__HEALTH__INTERVAL_MS", "200")
    .env("X402__NETWORKS__LOCAL__RPC_TIMEOUT_MS", "500");
    let app = harness::spawn_with(&chain, &db, options).await;
    let served = kinds(&app).await;
    assert!(served > 0);
    until("the first probe", || async {
        ready(&app).await.1["checks"]["networks"]
            .as_object()
            .is_some_and(|n| !n.is_empty())
    })
    .await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    proxy.set(Mode::Refuse);
    until("the network leaves /supported", || async {
        kinds(&app).await == 0
    })
    .await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let network = format!("eip155:{}", chain.chain_id);
    assert_eq!(
        body["checks"]["networks"][&network]["rpc"], "failing",
        "{body}"
    );
    assert_eq!(body["checks"]["ledger"], "ok");
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics.contains(&format!("x402_network_serving{{network=\"{network}\"}} 0")),
        "{metrics}"
    );
    proxy.set(Mode::Forward);
    until("the network comes back", || async {
        kinds(&app).await == served
    })
    .await;
    until("ready again", || async {
        ready(&app).await.0 == StatusCode::OK
    })
    .await;
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(metrics.contains("x402_rpc_up{"), "{metrics}");
    assert!(metrics.contains("x402_signer_balance{"), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn signers_under_the_gas_threshold_are_flagged_and_the_network_is_left_out() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    // Test signers hold 100 ETH; the threshold asks for a million.
    let options = Options::default()
        .env("X402__HEALTH__INTERVAL_MS", "200")
        .env("X402__NETWORKS__LOCAL__MIN_SIGNER_BALANCE", "1000000");
    let app = harness::spawn_with(&chain, &db, options).await;
    until("the network leaves /supported", || async {
        kinds(&app).await == 0
    })
    .await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let network = format!("eip155:{}", chain.chain_id);
    assert_eq!(
        body["checks"]["networks"][&network]["gas"], "failing",
        "{body}"
    );
    let low = body["checks"]["networks"][&network]["lowBalance"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert_eq!(low, 1, "{body}");
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(metrics.contains("x402_signer_low_balance{"), "{metrics}");
    assert!(metrics.contains("} 1\n"), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn ready_turns_503_while_postgres_refuses_and_back() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let app = harness::spawn_with(
        &chain,
        &db,
        Options::default().env("X402__HEALTH__INTERVAL_MS", "200"),
    )
    .await;
    let p = harness::funded_payment(&chain).await;
    assert_eq!(app.settle(&p.body()).await["success"], true);
    until("ready", || async { ready(&app).await.0 == StatusCode::OK }).await;
    until("the settled row counted", || async {
        app.get_text("/metrics")
            .await
            .1
            .contains("x402_ledger_rows{state=\"settled\"} 1")
    })
    .await;
    db.refuse_connections(true).await;
    // Past the access gate's cache of "were keys ever created" (auth.cache_ms, 500 ms): the
    // gate must not turn the ledger's absence into a 500 before /ready can say 503.
    tokio::time::sleep(Duration::from_millis(700)).await;
    until("503 without the ledger", || async {
        ready(&app).await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // With no key ever created, the gate cannot tell whether another replica made one
    // meanwhile: it fails closed, with a 503 that names the ledger and an id for the logs.
    let (_, body) = ready(&app).await;
    assert_eq!(body["reason"], "ledger_unavailable", "{body}");
    assert!(body["errorId"].is_string(), "{body}");
    db.refuse_connections(false).await;
    until("ready again", || async {
        ready(&app).await.0 == StatusCode::OK
    })
    .await;
    app.stop().await;
}

/// The same with API keys on, asked by the operator's admin key: while the ledger is away the
/// gate fails closed with a 503 (never a stale key, never a 500), and the keyless are refused.
#[tokio::test]
async fn ready_with_an_admin_key_turns_503_while_postgres_refuses_and_back() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_x402-facilitator"))
        .args(["keys", "create", "--name", "ops", "--scopes", "admin"])
        .env("X402__DATABASE__URL", db.url())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let app = harness::spawn_with(
        &chain,
        &db,
        Options::default().env("X402__HEALTH__INTERVAL_MS", "200"),
    )
    .await;
    let admin_ready = || async {
        let r = app
            .http
            .get(format!("{}/ready", app.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("sent");
        let status = r.status();
        let body: Value = r.json().await.expect("JSON");
        (status, body)
    };
    assert_eq!(app.get("/ready").await.0, StatusCode::UNAUTHORIZED);
    until("ready", || async {
        admin_ready().await.0 == StatusCode::OK
    })
    .await;
    db.refuse_connections(true).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The key cannot be re-checked (it may have been revoked on another replica): 503, not
    // the stale answer and not a 500.
    let (status, body) = admin_ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["reason"], "ledger_unavailable", "{body}");
    // No key at all is still refused: "keys exist" never goes back, so it stays trusted.
    assert_eq!(app.get("/ready").await.0, StatusCode::UNAUTHORIZED);
    db.refuse_connections(false).await;
    until("ready again", || async {
        admin_ready().await.0 == StatusCode::OK
    })
    .await;
    app.stop().await;
}
