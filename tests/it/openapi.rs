//! `GET /openapi.json` against what the real app answers: every endpoint is called (a real
//! verify and settle on anvil, receipts, discovery, sessions, operations, and the error answers
//! 400/401/403/404/405), and each body is validated against the schema the document gives for
//! that path, method and status, with the document's own components resolving the `$ref`s.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Chain, Db, Options, TestApp, funded_payment, spawn_with};

/// The response schema for (`method`, `path`, `status`) as a standalone JSON Schema: the
/// operation's schema with the document's `components` beside it, so that
/// `#/components/schemas/…` resolves inside it and nothing is fetched.
fn schema_for(doc: &Value, method: &str, path: &str, status: StatusCode) -> Value {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    let answer = &operation["responses"][status.as_str()];
    assert!(
        answer.is_object(),
        "{method} {path} documents no {status} answer"
    );
    let mut schema = answer["content"]["application/json"]["schema"].clone();
    assert!(
        schema.is_object(),
        "{method} {path} {status}: no JSON schema"
    );
    schema["components"] = doc["components"].clone();
    schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    schema
}

/// Why `body` does not fit the documented schema, if it does not.
fn misfit(
    doc: &Value,
    method: &str,
    path: &str,
    status: StatusCode,
    body: &Value,
) -> Option<String> {
    let schema = schema_for(doc, method, path, status);
    let validator = jsonschema::validator_for(&schema).expect("the document's schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

fn conforms(doc: &Value, method: &str, path: &str, status: StatusCode, body: &Value) {
    if let Some(why) = misfit(doc, method, path, status, body) {
        panic!("{method} {path} {status} does not match the document: {why}\nbody: {body}");
    }
}

/// One call: the status and the JSON body.
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", app.base);
    let mut req = match method {
        "get" => app.http.get(url),
        "post" => app.http.post(url),
        other => app
            .http
            .request(other.to_uppercase().parse().expect("method"), url),
    };
    if let Some(b) = body {
        req = req.json(b);
    }
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON {status}: {text}"));
    (status, json)
}

/// Calls `method path` and checks its answer has `expected` status and the documented shape
/// (documented under `documented`, the operation the answer belongs to).
async fn expect(
    app: &TestApp,
    doc: &Value,
    (method, path, documented): (&str, &str, &str),
    body: Option<&Value>,
    key: Option<&str>,
    expected: StatusCode,
) -> Value {
    let (status, answer) = call(app, method, path, body, key).await;
    assert_eq!(status, expected, "{method} {path}: {answer}");
    let documented_method = if method == "put" { "get" } else { method };
    conforms(doc, documented_method, documented, status, &answer);
    answer
}

fn create_key(db: &Db, scopes: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_x402-facilitator"))
        .args(["keys", "create", "--name", "openapi", "--scopes", scopes])
        .env("X402__DATABASE__URL", db.url())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn every_endpoint_answers_what_the_openapi_document_says() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(
        &chain,
        &db,
        Options::default()
            .env("X402__SESSIONS__ENABLED", "true")
            .env("X402__NETWORKS__LOCAL__SCHEMES", "exact,upto"),
    )
    .await;
    let (status, doc) = call(&app, "get", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let ok = StatusCode::OK;

    // The money path, for real.
    let p = funded_payment(&chain).await;
    let verdict = expect(
        &app,
        &doc,
        ("post", "/verify", "/verify"),
        Some(&p.body()),
        None,
        ok,
    )
    .await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    let settled = expect(
        &app,
        &doc,
        ("post", "/settle", "/settle"),
        Some(&p.body()),
        None,
        ok,
    )
    .await;
    assert_eq!(settled["success"], true, "{settled}");
    let tx = settled["transaction"].as_str().expect("tx").to_string();
    // An invalid payment is an answer too: a wrong signature.
    let forged = p.body_with_signature(&vec![7u8; 65].into());
    let refused = expect(
        &app,
        &doc,
        ("post", "/verify", "/verify"),
        Some(&forged),
        None,
        ok,
    )
    .await;
    assert_eq!(refused["isValid"], false, "{refused}");
    let failed = expect(
        &app,
        &doc,
        ("post", "/settle", "/settle"),
        Some(&forged),
        None,
        ok,
    )
    .await;
    assert_eq!(failed["success"], false, "{failed}");
    // `upto`: the answer names the charge, the receipt the signed maximum beside it.
    let upto = crate::harness::funded_permit2(
        &chain,
        crate::harness::permit2::Kind::Upto,
        app.signers[0].address(),
        true,
    )
    .await;
    let charged = expect(
        &app,
        &doc,
        ("post", "/settle", "/settle"),
        Some(&upto.settle_body(alloy::primitives::U256::from(1200u64))),
        None,
        ok,
    )
    .await;
    assert_eq!(charged["amount"], "1200", "{charged}");
    let upto_receipt = format!(
        "/settlements/{}",
        charged["transaction"].as_str().expect("tx")
    );
    let receipt = expect(
        &app,
        &doc,
        ("get", &upto_receipt, "/settlements/{transaction}"),
        None,
        None,
        ok,
    )
    .await;
    assert_eq!(receipt["maxAmount"], "2500", "{receipt}");

    // Everything else that answers 200.
    for (method, path, documented) in [
        ("get", "/supported", "/supported"),
        ("get", "/settlements", "/settlements"),
        ("get", "/settlements?limit=1", "/settlements"),
        ("get", "/discovery/resources", "/discovery/resources"),
        (
            "get",
            "/discovery/search?query=weather",
            "/discovery/search",
        ),
        ("get", "/health", "/health"),
        ("get", "/ready", "/ready"),
    ] {
        expect(&app, &doc, (method, path, documented), None, None, ok).await;
    }
    let receipt_path = format!("/settlements/{tx}");
    let receipt = expect(
        &app,
        &doc,
        ("get", &receipt_path, "/settlements/{transaction}"),
        None,
        None,
        ok,
    )
    .await;
    assert_eq!(receipt["state"], "settled", "{receipt}");
    let payer = p.from.to_checksum(None);
    let entitlement = format!(
        "/sessions/entitlement?payer={payer}&resource=http://127.0.0.1/weather&within=3600"
    );
    let answer = expect(
        &app,
        &doc,
        ("get", &entitlement, "/sessions/entitlement"),
        None,
        None,
        ok,
    )
    .await;
    assert!(answer["entitled"].is_boolean(), "{answer}");
    let proof = json!({
        "header": "bm90IGEgcHJvb2Y", "domain": "127.0.0.1:4021",
        "uri": "http://127.0.0.1:4021/weather", "chains": ["eip155:31337"],
        "resource": "http://127.0.0.1/weather", "within": 60,
    });
    let answer = expect(
        &app,
        &doc,
        ("post", "/sessions/verify", "/sessions/verify"),
        Some(&proof),
        None,
        ok,
    )
    .await;
    assert_eq!(answer["valid"], false, "{answer}");
    let resp = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), ok);
    let metrics_doc = &doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"];
    assert!(metrics_doc["text/plain"].is_object(), "{metrics_doc}");

    // Error answers.
    let not_json = json!("not a facilitator request");
    expect(
        &app,
        &doc,
        ("post", "/verify", "/verify"),
        Some(&not_json),
        None,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect(
        &app,
        &doc,
        ("post", "/settle", "/settle"),
        Some(&not_json),
        None,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect(
        &app,
        &doc,
        ("get", "/settlements?limit=0", "/settlements"),
        None,
        None,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect(
        &app,
        &doc,
        ("get", "/settlements/0xdead", "/settlements/{transaction}"),
        None,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    // Paths and methods the router does not know answer the documented error body.
    expect(
        &app,
        &doc,
        ("get", "/no-such-endpoint", "/supported"),
        None,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect(
        &app,
        &doc,
        ("post", "/supported", "/verify"),
        Some(&json!({})),
        None,
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    expect(
        &app,
        &doc,
        ("put", "/settlements", "/settlements"),
        None,
        None,
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;

    // Once a key exists, a request without one is refused; one without the scope is forbidden.
    let verifier = create_key(&db, "verify");
    tokio::time::sleep(Duration::from_millis(700)).await;
    for (method, path) in [
        ("post", "/verify"),
        ("post", "/settle"),
        ("get", "/supported"),
        ("get", "/ready"),
    ] {
        let body = (method == "post").then(|| p.body());
        expect(
            &app,
            &doc,
            (method, path, path),
            body.as_ref(),
            None,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    expect(
        &app,
        &doc,
        ("post", "/settle", "/settle"),
        Some(&p.body()),
        Some(&verifier),
        StatusCode::FORBIDDEN,
    )
    .await;
    expect(
        &app,
        &doc,
        ("get", "/metrics", "/metrics"),
        None,
        Some(&verifier),
        StatusCode::FORBIDDEN,
    )
    .await;
    // The document stays open.
    let (status, again) = call(&app, "get", "/openapi.json", None, None).await;
    assert_eq!((status, &again), (ok, &doc));

    // The check can fail: wrong bodies are told apart from right ones.
    // (A plain error body is not a verify answer; the gate's 401 on /verify is verify-shaped on
    // purpose, so the SDK clients raise their typed error.)
    let (_, unauthorized) = call(&app, "get", "/supported", None, None).await;
    assert!(
        misfit(&doc, "post", "/verify", ok, &unauthorized).is_some(),
        "{unauthorized}"
    );
    let mut bent = verdict.clone();
    bent["isValid"] = json!("yes");
    assert!(misfit(&doc, "post", "/verify", ok, &bent).is_some());
    let mut bent = settled.clone();
    bent.as_object_mut().expect("object").remove("transaction");
    assert!(misfit(&doc, "post", "/settle", ok, &bent).is_some());
    let mut bent = receipt.clone();
    bent["createdAt"] = json!(17);
    assert!(misfit(&doc, "get", "/settlements/{transaction}", ok, &bent).is_some());
    app.stop().await;
}
