//! `scripts/demo`: one real x402 payment on a local chain, end to end, in under a minute.
//!
//! Starts what the integration tests start — a local chain with a test token and a funded buyer,
//! a fresh SQLite ledger, the real facilitator on a loopback port with the console on
//! (`tests/it/harness/app.rs`) — then runs the interop suite's official-SDK script (an
//! `@x402/express` seller and an `@x402/fetch` buyer) for one paid request, and prints the paid
//! response, the settle answer, the on-chain transfer, the receipt from `GET /settlements/{tx}`
//! and the console URL. Then it waits for Ctrl-C and stops exactly what it started (the app in
//! this process, the chain as its child, the temporary ledger).
//!
//! - EVM (the default, `on_evm.rs`): anvil with the test token deployed (`harness/chain.rs`), the
//!   seller's `@x402/evm` scheme and the buyer's (`tests/interop/e2e-v2.mjs`).
//! - `--solana` (`on_solana.rs`): the local Solana chain (LiteSVM behind JSON-RPC,
//!   `tests/solana-chain`, `harness/solana.rs`) with a test SPL mint, the facilitator as fee
//!   payer, the seller's `@x402/svm` scheme and the buyer's (`tests/interop/e2e-svm.mjs`).
//!
//! This file holds what both share (the run, the printed sections, the checks of the seller's
//! and facilitator's answers); each chain's module starts it and reads its transfer back.
//!
//! `--once`: no waiting; every printed figure is read again from the chain and compared, the
//! last line is `demo-check: {json}`, and the exit code is 0 only when all of them agree.

// The integration tests' chains, database, app and script runner, shared rather than copied.
#[path = "../../tests/it/harness/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "../../tests/it/harness/chain.rs"]
#[allow(dead_code)]
mod chain;
#[path = "../../tests/it/harness/db.rs"]
#[allow(dead_code)]
mod db;
#[path = "../../tests/it/harness/payment.rs"]
#[allow(dead_code)]
mod payment;
#[path = "../../tests/it/harness/script.rs"]
#[allow(dead_code)]
mod script;
#[path = "../../tests/it/harness/solana.rs"]
#[allow(dead_code)]
mod solana;

mod on_evm;
mod on_solana;

use std::any::Any;

use serde_json::{Value, json};

/// The price of the demo's resource, in the test token's atomic units (0.01 of a 6-decimal coin).
const PRICE: u64 = 10_000;
/// What the buyer holds before it pays.
const FUNDS: u64 = PRICE * 100;
const USAGE: &str = "usage: scripts/demo [--solana] [--once]";

/// What one demo started and what it found. `main` keeps all of it alive until the end.
struct Run {
    facilitator: app::TestApp,
    /// anvil or the local Solana chain: a `kill_on_drop` child, stopped when dropped.
    chain: Box<dyn Any>,
    /// The temporary SQLite ledger, removed when dropped.
    ledger: db::Db,
    tx: String,
    /// With `--once`: every printed figure compared with the chain.
    checks: Option<Vec<Value>>,
}

fn section(title: &str, body: &Value) {
    println!("\n== {title}");
    println!(
        "{}",
        serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string())
    );
}

/// Gives up. A panic rather than `exit`: unwinding drops what `main` started, so the chain (a
/// `kill_on_drop` child) stops and the temporary ledger is removed.
fn fail(why: String) -> ! {
    panic!("demo: {why}");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    let on_solana = args.iter().any(|a| a == "--solana");
    if let Some(other) = args.iter().find(|a| *a != "--once" && *a != "--solana") {
        fail(format!("unknown argument {other} ({USAGE})"));
    }

    let run = if on_solana {
        on_solana::run(once).await
    } else {
        on_evm::run(once).await
    };
    println!("\n== console\n{}/console/settlements", run.facilitator.base);

    let Run {
        facilitator,
        chain,
        ledger,
        tx,
        checks,
    } = run;
    if let Some(checks) = checks {
        let failed = checks.iter().filter(|c| c["ok"] != true).count();
        println!(
            "demo-check: {}",
            json!({ "transaction": tx, "ok": failed == 0, "checks": checks })
        );
        facilitator.stop().await;
        // `exit` runs no destructors: stop the chain and remove the ledger first.
        drop(chain);
        drop(ledger);
        reap().await;
        std::process::exit(if failed == 0 { 0 } else { 1 });
    }
    println!("\ndemo: running; Ctrl-C stops the facilitator, the chain and the temporary ledger");
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("demo: cannot wait for Ctrl-C ({e}); stopping");
    }
    facilitator.stop().await;
    drop(chain); // kills the chain's process (kill_on_drop)
    drop(ledger); // removes the temporary ledger
    reap().await;
    println!("demo: stopped");
}

/// Dropping a `kill_on_drop` child sends SIGKILL without waiting; tokio reaps it in the
/// background while the runtime lives. Give it that moment, so no zombie outlives the demo.
async fn reap() {
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}

/// Runs the official-SDK `script` (in tests/interop) for one paid request and prints the paid
/// response and the settle answer the seller's SDK got. Returns the script's paid case, that
/// answer and its transaction.
async fn pay(script: &str, job: &Value) -> (Value, Value, String) {
    let script = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = script::run_json("node", &[script], Some(job)).await;
    let paid = out["paid"].clone();
    section(
        &format!(
            "paid response from the seller ({})",
            out["sellerUrl"].as_str().unwrap_or("")
        ),
        &json!({ "status": paid["status"], "body": paid["body"] }),
    );
    let settle = paid["facilitatorCalls"]
        .as_array()
        .and_then(|calls| calls.iter().find(|c| c["op"] == "settle"))
        .map(|c| c["answer"].clone())
        .unwrap_or(Value::Null);
    section(
        "settle answer (POST /settle, as the seller's SDK got it)",
        &settle,
    );
    let tx = settle["transaction"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if tx.is_empty() || paid["status"] != 200 {
        fail(format!("the payment did not settle: {paid}"));
    }
    (paid, settle, tx)
}

/// Prints the facilitator's receipt of `tx` and returns it.
async fn receipt(facilitator: &app::TestApp, tx: &str) -> Value {
    let (status, receipt) = facilitator.get(&format!("/settlements/{tx}")).await;
    section(
        &format!("receipt (GET /settlements/{tx}, HTTP {status})"),
        &receipt,
    );
    receipt
}

fn one(name: &str, ok: bool, detail: String) -> Value {
    json!({ "check": name, "ok": ok, "detail": detail })
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// What both chains' checks compare: the payment as the chain knows it, and how its addresses
/// compare (EVM hex without regard to case, Solana base58 exactly).
struct Figures {
    tx: String,
    payer: String,
    pay_to: String,
    asset: String,
    amount: String,
    same: fn(&str, &str) -> bool,
}

/// The checks of the seller's and facilitator's answers: `chain`'s are put between them.
fn all_checks(
    f: &Figures,
    paid: &Value,
    settle: &Value,
    receipt: &Value,
    chain: Vec<Value>,
) -> Vec<Value> {
    let same = f.same;
    let mut checks = vec![
        one(
            "paid response is 200",
            paid["status"] == 200,
            paid["status"].to_string(),
        ),
        one(
            "settle answer succeeded",
            settle["success"] == true,
            settle["success"].to_string(),
        ),
        one(
            "settle answer names the payer",
            same(&text(&settle["payer"]), &f.payer),
            text(&settle["payer"]),
        ),
    ];
    checks.extend(chain);
    checks.extend([
        one(
            "receipt names the transaction",
            same(&text(&receipt["transaction"]), &f.tx),
            text(&receipt["transaction"]),
        ),
        one(
            "receipt is settled",
            receipt["state"] == "settled",
            text(&receipt["state"]),
        ),
        one(
            "receipt's payer, payTo, amount, asset match the chain",
            same(&text(&receipt["payer"]), &f.payer)
                && same(&text(&receipt["payTo"]), &f.pay_to)
                && text(&receipt["amount"]) == f.amount
                && same(&text(&receipt["asset"]), &f.asset),
            receipt.to_string(),
        ),
    ]);
    checks
}
