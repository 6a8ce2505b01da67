//! The HTTP contract: malformed bodies get 400 (never 500 or a panic), business outcomes 200,
//! `/supported` tells the truth about what is configured, faults carry an id.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{self, Chain, Db, Options, spawn, spawn_with};

#[tokio::test]
async fn malformed_bodies_are_400_with_a_json_error() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    let valid = harness::funded_payment(&chain).await.body();
    let mut no_requirements = valid.clone();
    no_requirements
        .as_object_mut()
        .map(|o| o.remove("paymentRequirements"));
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"{".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"{}".to_vec(),
        br#"{"paymentPayload": 5, "paymentRequirements": {}}"#.to_vec(),
        serde_json::to_vec(&no_requirements).expect("json"),
        vec![0xff, 0xfe, 0x00],
    ];
    for path in ["/verify", "/settle"] {
        for body in &bodies {
            let (status, text) = app.post_raw(path, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{path} {:?} → {text}",
                String::from_utf8_lossy(body)
            );
            let json: Value = serde_json::from_str(&text).expect("JSON error body");
            assert!(
                json["error"].is_string() && json["errorId"].is_string(),
                "{text}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(200_000));
    let (status, text) = app.post_raw("/verify", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    app.stop().await;
}

#[tokio::test]
async fn readable_but_invalid_payments_are_200_with_a_reason() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    let valid = harness::funded_payment(&chain).await.body();

    let mut bad_version = valid.clone();
    bad_version["paymentPayload"]["x402Version"] = json!(3);
    bad_version["x402Version"] = json!(3);
    let mut mixed_version = valid.clone();
    mixed_version["x402Version"] = json!(1);
    let mut unknown_network = valid.clone();
    unknown_network["paymentRequirements"]["network"] = json!("eip155:999999");
    unknown_network["paymentPayload"]["accepted"]["network"] = json!("eip155:999999");
    let mut unknown_scheme = valid.clone();
    unknown_scheme["paymentRequirements"]["scheme"] = json!("upto");
    unknown_scheme["paymentPayload"]["accepted"]["scheme"] = json!("upto");
    let mut missing_amount = valid.clone();
    missing_amount["paymentRequirements"]
        .as_object_mut()
        .map(|o| o.remove("amount"));
    let mut payload_not_object = valid.clone();
    payload_not_object["paymentPayload"]["payload"] = json!("zzz");

    for (body, reason) in [
        (bad_version, "invalid_x402_version"),
        (mixed_version, "invalid_x402_version"),
        (unknown_network, "invalid_network"),
        (unknown_scheme, "unsupported_scheme"),
        (missing_amount, "invalid_payment_requirements"),
        (payload_not_object, "invalid_payload"),
    ] {
        let verdict = app.verify(&body).await;
        assert_eq!(verdict["isValid"], false);
        assert_eq!(verdict["invalidReason"], reason, "{verdict}");
        let settled = app.settle(&body).await;
        assert_eq!(settled["success"], false);
        assert_eq!(settled["errorReason"], reason, "{settled}");
        assert_eq!(settled["transaction"], "");
        assert!(settled["network"].is_string());
    }
    app.stop().await;
}

#[tokio::test]
async fn supported_lists_v2_and_v1_kinds_and_signers() {
    let chain = Chain::start_with(84532, &[]).await;
    let db = Db::sqlite();
    let app = spawn_with(
        &chain,
        &db,
        Options {
            signers: 2,
            ..Default::default()
        },
    )
    .await;
    let (status, supported) = app.get("/supported").await;
    assert_eq!(status, StatusCode::OK);
    let kinds = supported["kinds"].as_array().expect("kinds");
    assert!(
        kinds.contains(&json!({ "x402Version": 2, "scheme": "exact", "network": "eip155:84532" })),
        "{supported}"
    );
    assert!(
        kinds.contains(&json!({ "x402Version": 1, "scheme": "exact", "network": "base-sepolia" })),
        "{supported}"
    );
    assert_eq!(kinds.len(), 2);
    assert!(supported["extensions"].is_array());
    let signers = supported["signers"]["eip155:*"]
        .as_array()
        .expect("signers");
    let expected: Vec<Value> = app
        .signers
        .iter()
        .map(|s| json!(s.address().to_checksum(None)))
        .collect();
    assert_eq!(signers.len(), 2);
    for s in expected {
        assert!(signers.contains(&s), "{supported}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_network_without_usable_signers_is_not_advertised() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(
        &chain,
        &db,
        Options {
            unfunded: true,
            ..Default::default()
        },
    )
    .await;
    let (_, supported) = app.get("/supported").await;
    assert_eq!(supported["kinds"], json!([]), "{supported}");
    let body = harness::funded_payment(&chain).await.body();
    assert_eq!(app.verify(&body).await["invalidReason"], "invalid_network");
    app.stop().await;
}

#[tokio::test]
async fn health_reports_the_ledger() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let app = spawn(&chain, &db).await;
    let (status, health) = app.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["ledger"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_rpc_is_a_5xx_with_an_error_id_and_nothing_recorded() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    let payment = harness::funded_payment(&chain).await;
    let body = payment.body();
    drop(chain); // kills anvil: the RPC now refuses connections
    let (status, verdict) = app.post("/verify", &body).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{verdict}");
    assert_eq!(verdict["isValid"], false);
    assert_eq!(verdict["invalidReason"], "unexpected_verify_error");
    assert!(verdict["errorId"].as_str().is_some_and(|id| !id.is_empty()));
    let (status, settled) = app.post("/settle", &body).await;
    assert!(status.is_server_error(), "{settled}");
    assert_eq!(settled["success"], false);
    assert_eq!(settled["transaction"], "");
    assert_eq!(settled["network"], payment.network);
    assert_eq!(
        db.count("SELECT count(*) FROM settlements").await,
        0,
        "a failed claim is released"
    );
    app.stop().await;
}

/// Every refusal of ours is JSON with an error id: unknown routes, wrong methods, unreadable path
/// and query parameters — never an empty body or `text/plain`.
#[tokio::test]
async fn every_refusal_is_json_with_an_error_id() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn(&chain, &db).await;
    let cases = [
        ("GET", "/nope", StatusCode::NOT_FOUND),
        ("POST", "/nope", StatusCode::NOT_FOUND),
        ("GET", "/verify", StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/settle", StatusCode::METHOD_NOT_ALLOWED),
        ("POST", "/supported", StatusCode::METHOD_NOT_ALLOWED),
        ("DELETE", "/settlements", StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/settlements/%ff", StatusCode::BAD_REQUEST),
        // A multi-byte character across the `0x` prefix test: a 404, not a panic.
        ("GET", "/settlements/a%C3%A9", StatusCode::NOT_FOUND),
        ("GET", "/settlements?limit=abc", StatusCode::BAD_REQUEST),
        ("GET", "/settlements?unknown=1", StatusCode::BAD_REQUEST),
    ];
    for (method, path, expected) in cases {
        let resp = app
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", app.base),
            )
            .send()
            .await
            .expect("sent");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.expect("body");
        assert_eq!(status, expected, "{method} {path} → {text}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}: {content_type}"
        );
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: {text}"));
        assert!(
            body["error"].is_string() && body["errorId"].is_string(),
            "{method} {path} → {body}"
        );
    }
    app.stop().await;
}

/// L4: settles in flight are bounded. With room for one, a second settle while the first waits
/// for its block is refused at once with 503, `Retry-After` and a settle-shaped body, and moves
/// nothing; the first still settles.
#[tokio::test]
async fn settles_past_the_concurrency_bound_are_shed_with_retry_after() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(
        &chain,
        &db,
        Options::default()
            .env("X402__SERVER__MAX_CONCURRENT_SETTLES", "1")
            .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "3000"),
    )
    .await;
    let first = harness::funded_payment(&chain).await;
    let second = harness::funded_payment(&chain).await;
    chain.set_automine(false).await;
    let url = format!("{}/settle", app.base);
    let body = first.body();
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("sent")
    });
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let resp = app
        .http
        .post(format!("{}/settle", app.base))
        .json(&second.body())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let shed: Value = resp.json().await.expect("json");
    assert_eq!(shed["success"], false, "{shed}");
    assert_eq!(shed["errorReason"], "facilitator_overloaded", "{shed}");
    assert_eq!(shed["transaction"], "", "{shed}");
    assert!(shed["errorId"].is_string(), "{shed}");
    chain.mine().await;
    let done = in_flight.await.expect("joined");
    assert_eq!(done.status(), StatusCode::OK);
    chain.set_automine(true).await;
    assert_eq!(chain.transfers_from(chain.token, second.from).await, 0);
    app.stop().await;
}

/// L4: a client that opens a connection and sends its headers slowly (slowloris) is cut off
/// after `server.header_read_timeout_ms`, instead of holding the connection for ever.
#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(
        &chain,
        &db,
        Options::default().env("X402__SERVER__HEADER_READ_TIMEOUT_MS", "500"),
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream
        .write_all(b"POST /verify HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the server closed the connection within 5 s");
    assert!(
        matches!(read, Ok(n) if n == 0 || buf[..n].starts_with(b"HTTP/1.1 408")) || read.is_err(),
        "{read:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    app.stop().await;
}

/// L1: a node error that is no verdict (a provider's rate limit, -32005) moves a read on to the
/// next URL instead of becoming the payer's fault; with no other URL it is our fault (502),
/// never `invalid_exact_evm_eip3009_not_supported`.
#[tokio::test]
async fn node_errors_that_are_not_verdicts_fail_over_or_are_our_fault() {
    use crate::harness::proxy::{Mode, RpcProxy};
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let limited = RpcProxy::start(&chain.url).await;
    let app = spawn_with(
        &chain,
        &db,
        Options::default().env(
            "X402__NETWORKS__LOCAL__RPC_URLS",
            format!("{},{}", limited.url, chain.url),
        ),
    )
    .await;
    limited.set(Mode::NodeError);
    let p = harness::funded_payment(&chain).await;
    let answer = app.verify(&p.body()).await;
    assert_eq!(answer["isValid"], true, "{answer}");
    app.stop().await;

    let only = RpcProxy::start(&chain.url).await;
    let app = spawn_with(
        &chain,
        &db,
        Options {
            rpc_url: Some(only.url.clone()),
            ..Options::default()
        },
    )
    .await;
    let mut p = harness::funded_payment(&chain).await;
    p.nonce = crate::harness::payment::random_b256();
    // Warm the code cache while the node answers, then the provider starts refusing.
    let _ = app.verify(&p.body()).await;
    only.set(Mode::NodeError);
    let (status, answer) = app.post("/verify", &p.body()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(
        answer["invalidReason"], "unexpected_verify_error",
        "{answer}"
    );
    app.stop().await;
}
