//! The operator console in a real headless browser (Debian's chromium, driven over the DevTools
//! protocol by tests/console/browser.mjs): every page loads without console errors and shows what
//! this test settled on a real anvil chain; the volume chart has one bar per day with the right
//! total; filters change the rows; without the admin credential the console answers 401 (JSON).
//! Screenshots of every page go to target/console-screenshots/.

use std::path::PathBuf;

use alloy::primitives::U256;
use serde_json::{Value, json};

use crate::harness::payment::random_b256;
use crate::harness::{self, Chain, Db, Options, spawn_with};

const TOKEN: &str = "console-test-secret";

fn screenshots() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("console-screenshots")
}

async fn browse(base: &str, steps: Value) -> Vec<Value> {
    let script = format!("{}/tests/console/browser.mjs", env!("CARGO_MANIFEST_DIR"));
    let job = json!({
        "chromium": std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into()),
        "base": base,
        "headers": { "Authorization": format!("Bearer {TOKEN}") },
        "screenshots": screenshots(),
        "steps": steps,
    });
    let out = crate::harness::script::run_json(
        "node",
        &[
            "--experimental-websocket".into(),
            "--no-warnings".into(),
            script,
        ],
        Some(&job),
    )
    .await;
    let steps = out["steps"].as_array().expect("steps").clone();
    for step in &steps {
        assert_eq!(step["status"], 200, "{} did not load: {step}", step["name"]);
        assert_eq!(step["errors"], json!([]), "{} logged errors", step["name"]);
    }
    steps
}

const ROWS: &str = "[...document.querySelectorAll('#settlements tbody tr')].map(r => ({ state: r.dataset.state, \
    payer: r.dataset.payer, amount: r.dataset.amount, tx: r.querySelector('a.tx')?.textContent ?? null }))";

async fn console_in_a_browser(db: Db) {
    let chain = Chain::start().await;
    let app = spawn_with(
        &chain,
        &db,
        Options::default()
            .env("X402__CONSOLE__ENABLED", "true")
            .env("X402__CONSOLE__TOKEN", TOKEN),
    )
    .await;

    // Payer A pays twice, payer B once: three settled rows, two payers.
    let a = harness::funded_payment(&chain).await;
    let mut a2 = a.clone();
    a2.nonce = random_b256();
    let b = harness::funded_payment(&chain).await;
    let mut txs = Vec::new();
    for p in [&a, &a2, &b] {
        let settled = app.settle(&p.body()).await;
        assert_eq!(settled["success"], true, "{settled}");
        txs.push(settled["transaction"].as_str().expect("tx").to_string());
    }
    let total = a.amount + a2.amount + b.amount;

    // Without the credential, or with a wrong one: 401 with a JSON body.
    for auth in [None, Some("Bearer wrong")] {
        let mut req = app.http.get(format!("{}/console/settlements", app.base));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.expect("sent");
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.expect("a JSON 401");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("admin")),
            "{body}"
        );
    }

    let payer_b = b.from.to_checksum(None);
    let steps = browse(
        &app.base,
        json!([
            { "name": "settlements", "path": "/console/settlements", "extract": ROWS },
            { "name": "settlements-failed-filter", "extract": ROWS,
              "run": "(() => { const s = document.querySelector('select[name=state]'); s.value = 'failed'; \
                      s.dispatchEvent(new Event('change')); })()" },
            { "name": "settlements-payer-filter", "extract": ROWS,
              "run": format!("(() => {{ document.querySelector('select[name=state]').value = ''; \
                      document.querySelector('input[name=payer]').value = '{payer_b}'; \
                      document.getElementById('filters').submit(); }})()") },
            { "name": "networks", "path": "/console/networks", "extract":
              "[...document.querySelectorAll('section.network')].map(s => ({ network: s.dataset.network, \
               rpc: [...s.querySelectorAll('table.rpc tbody tr')].map(r => ({ ok: r.dataset.ok, text: r.textContent })), \
               signers: [...s.querySelectorAll('td.signer')].map(td => td.textContent), \
               balances: [...s.querySelectorAll('td.balance')].map(td => td.textContent), \
               settled: s.querySelector('.settled').textContent, pending: s.querySelector('.pending').textContent, \
               failed: s.querySelector('.failed').textContent }))" },
            { "name": "volume", "path": "/console/volume", "extract":
              "[...document.querySelectorAll('section.series')].map(s => ({ network: s.dataset.network, \
               asset: s.dataset.asset, totalAmount: s.dataset.totalAmount, totalCount: s.dataset.totalCount, \
               bars: [...s.querySelectorAll('rect.bar')].map(b => ({ day: b.dataset.day, amount: b.dataset.amount, \
               count: b.dataset.count, height: Number(b.getAttribute('height')) })) }))" },
            { "name": "discovery", "path": "/console/discovery",
              "extract": "document.querySelectorAll('#resources tbody tr').length" },
        ]),
    )
    .await;

    // Settlements: the three, newest first, each linking its transaction.
    let rows = steps[0]["data"].as_array().expect("rows");
    let mut shown: Vec<String> = rows
        .iter()
        .map(|r| r["tx"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        shown,
        txs.iter().rev().cloned().collect::<Vec<_>>(),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .all(|r| r["state"] == "settled" && r["amount"] == "10000")
    );
    // The state select submits itself (the script) and the page shows no failed rows.
    assert!(
        steps[1]["url"]
            .as_str()
            .is_some_and(|u| u.contains("state=failed")),
        "{}",
        steps[1]
    );
    assert_eq!(steps[1]["data"], json!([]));
    // The payer filter keeps B's one payment.
    let rows = steps[2]["data"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0]["payer"].as_str().map(str::to_lowercase),
        Some(payer_b.to_lowercase())
    );
    shown = vec![rows[0]["tx"].as_str().unwrap_or("").to_string()];
    assert_eq!(shown, vec![txs[2].clone()]);

    // Networks: the anvil network, its RPC answering, our signer with its live gas balance.
    let networks = steps[3]["data"].as_array().expect("networks");
    assert_eq!(networks.len(), 1, "{networks:?}");
    let n = &networks[0];
    assert_eq!(n["network"], format!("eip155:{}", chain.chain_id));
    assert_eq!(n["rpc"][0]["ok"], "true", "{n}");
    assert!(
        n["rpc"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("http://127.0.0.1") && t.contains(" ms"))
    );
    assert_eq!(
        n["signers"],
        json!([app.signers[0].address().to_checksum(None)])
    );
    let wei = chain.provider_balance(app.signers[0].address()).await;
    assert!(
        n["balances"][0]
            .as_str()
            .is_some_and(|b| b.contains(&format!("({wei} wei)"))),
        "{n} vs {wei}"
    );
    assert_eq!(
        (
            n["settled"].as_str(),
            n["pending"].as_str(),
            n["failed"].as_str()
        ),
        (Some("3"), Some("0"), Some("0"))
    );

    // Volume: one series, one bar (everything settled today) carrying the exact total.
    let series = steps[4]["data"].as_array().expect("series");
    assert_eq!(series.len(), 1, "{series:?}");
    let s = &series[0];
    assert_eq!(s["totalAmount"], total.to_string());
    assert_eq!(s["totalCount"], "3");
    let bars = s["bars"].as_array().expect("bars");
    assert_eq!(bars.len(), 1, "one bar per day: {bars:?}");
    assert_eq!(bars[0]["amount"], total.to_string());
    assert_eq!(bars[0]["count"], "3");
    assert!(bars[0]["height"].as_i64().is_some_and(|h| h > 0));
    assert_eq!(total, U256::from(30_000u64));

    // Discovery: the page loads; these payments carried no bazaar extension.
    assert_eq!(steps[5]["data"], 0);
    app.stop().await;
}

#[tokio::test]
async fn console_pages_in_a_headless_browser_sqlite() {
    console_in_a_browser(Db::sqlite()).await;
}

#[tokio::test]
async fn console_pages_in_a_headless_browser_postgres() {
    console_in_a_browser(Db::postgres().await).await;
}

#[tokio::test]
async fn console_is_off_unless_enabled() {
    let chain = Chain::start().await;
    let app = harness::spawn(&chain, &Db::sqlite()).await;
    let (status, body) = app.get("/console/settlements").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());
    app.stop().await;
}
