//! `scripts/demo`: one real x402 payment on a local chain, end to end, in under a minute.
//!
//! Starts what the integration tests start — anvil with the test token deployed
//! (`tests/it/harness/chain.rs`), a fresh SQLite ledger, the real facilitator on a loopback port
//! with the console on (`harness/app.rs`) — then runs the interop suite's official-SDK script
//! (`tests/interop/e2e-v2.mjs`: an `@x402/express` seller and an `@x402/fetch` buyer) for one paid
//! request, and prints the paid response, the settle answer, the on-chain transfer, the receipt
//! from `GET /settlements/{tx}` and the console URL. Then it waits for Ctrl-C and stops exactly
//! what it started (the app in this process, anvil as its child, the temporary ledger).
//!
//! `--once`: no waiting; every printed figure is read again from the chain and compared (receipt
//! status, the `Transfer` log's from/to/value, the payee's balance, the ledger's receipt), the
//! last line is `demo-check: {json}`, and the exit code is 0 only when all of them agree.

// The integration tests' chain, database, app and script runner, shared rather than copied.
#[path = "../tests/it/harness/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "../tests/it/harness/chain.rs"]
#[allow(dead_code)]
mod chain;
#[path = "../tests/it/harness/db.rs"]
#[allow(dead_code)]
mod db;
#[path = "../tests/it/harness/script.rs"]
#[allow(dead_code)]
mod script;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};

/// The price of the demo's resource, in the test token's atomic units (0.01 of a 6-decimal coin).
const PRICE: u64 = 10_000;

struct Figures {
    tx: String,
    payer: Address,
    pay_to: Address,
    amount: U256,
}

fn section(title: &str, body: &Value) {
    println!("\n== {title}");
    println!(
        "{}",
        serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string())
    );
}

/// Gives up. A panic rather than `exit`: unwinding drops what `main` started, so anvil (a
/// `kill_on_drop` child) stops and the temporary ledger is removed.
fn fail(why: String) -> ! {
    panic!("demo: {why}");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    if let Some(other) = args.iter().find(|a| *a != "--once") {
        fail(format!(
            "unknown argument {other} (usage: scripts/demo [--once])"
        ));
    }

    println!("demo: starting anvil and deploying the test token");
    let chain = chain::Chain::start().await;
    let ledger = db::Db::sqlite();
    let facilitator = app::spawn_with(
        &chain,
        &ledger,
        app::Options::default().env("X402__CONSOLE__ENABLED", "true"),
    )
    .await;
    println!(
        "demo: facilitator on {} (ledger {})",
        facilitator.base,
        ledger.url()
    );

    let buyer = PrivateKeySigner::random();
    let pay_to = PrivateKeySigner::random().address();
    chain
        .mint(chain.token, buyer.address(), U256::from(PRICE * 100))
        .await;
    println!("demo: an @x402/express seller, and an @x402/fetch buyer paying it {PRICE} units");
    let job = json!({
        "facilitatorUrl": facilitator.base,
        "rpcUrl": chain.url,
        "chainId": chain.chain_id,
        "token": format!("{:#x}", chain.token),
        "tokenName": chain::TOKEN_NAME,
        "tokenVersion": chain::TOKEN_VERSION,
        "privateKey": format!("0x{}", alloy::primitives::hex::encode(buyer.to_bytes())),
        "payTo": format!("{pay_to:#x}"),
        "amount": PRICE.to_string(),
        "cases": ["paid"],
    });
    let script = format!("{}/tests/interop/e2e-v2.mjs", env!("CARGO_MANIFEST_DIR"));
    let out = script::run_json("node", &[script], Some(&job)).await;
    let paid = &out["paid"];

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
    let figures = Figures {
        tx: tx.clone(),
        payer: buyer.address(),
        pay_to,
        amount: U256::from(PRICE),
    };
    let transfer = transfer(&chain, &tx).await;
    section(
        "on-chain transfer (from the transaction's receipt)",
        &transfer,
    );
    let (status, receipt) = facilitator.get(&format!("/settlements/{tx}")).await;
    section(
        &format!("receipt (GET /settlements/{tx}, HTTP {status})"),
        &receipt,
    );
    println!("\n== console\n{}/console/settlements", facilitator.base);

    if once {
        let checks = check(&chain, &figures, &settle, &transfer, &receipt, paid).await;
        let failed: Vec<&Value> = checks.iter().filter(|c| c["ok"] != true).collect();
        println!(
            "demo-check: {}",
            json!({ "transaction": tx, "ok": failed.is_empty(), "checks": checks })
        );
        let code = if failed.is_empty() { 0 } else { 1 };
        facilitator.stop().await;
        // `exit` runs no destructors: stop anvil and remove the ledger first.
        drop(chain);
        drop(ledger);
        reap().await;
        std::process::exit(code);
    }
    println!("\ndemo: running; Ctrl-C stops the facilitator, anvil and the temporary ledger");
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("demo: cannot wait for Ctrl-C ({e}); stopping");
    }
    facilitator.stop().await;
    drop(chain); // kills anvil (kill_on_drop)
    drop(ledger); // removes the temporary ledger
    reap().await;
    println!("demo: stopped");
}

/// Dropping a `kill_on_drop` child sends SIGKILL without waiting; tokio reaps it in the
/// background while the runtime lives. Give it that moment, so no zombie outlives the demo.
async fn reap() {
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}

/// The receipt's `Transfer` logs of the token, decoded.
async fn transfer(chain: &chain::Chain, tx: &str) -> Value {
    let hash: B256 = tx
        .parse()
        .unwrap_or_else(|_| fail(format!("not a hash: {tx}")));
    let receipt = chain
        .provider
        .get_transaction_receipt(hash)
        .await
        .unwrap_or_else(|e| fail(format!("eth_getTransactionReceipt: {e}")))
        .unwrap_or_else(|| fail(format!("no receipt for {tx}")));
    let topic = alloy::primitives::keccak256("Transfer(address,address,uint256)");
    let transfers: Vec<Value> = receipt
        .inner
        .logs()
        .iter()
        .filter(|l| l.address() == chain.token && l.topics().first() == Some(&topic))
        .filter_map(|l| {
            let t = l.topics();
            let word = |i: usize| t.get(i).map(|w| Address::from_word(*w));
            Some(json!({
                "from": word(1)?.to_checksum(None),
                "to": word(2)?.to_checksum(None),
                "value": U256::from_be_slice(l.data().data.as_ref()).to_string(),
            }))
        })
        .collect();
    json!({
        "transaction": tx,
        "status": if receipt.status() { "success" } else { "reverted" },
        "block": receipt.block_number,
        "token": chain.token.to_checksum(None),
        "transfers": transfers,
    })
}

/// Every printed figure, compared with what the chain (and the ledger) say now.
async fn check(
    chain: &chain::Chain,
    f: &Figures,
    settle: &Value,
    transfer: &Value,
    receipt: &Value,
    paid: &Value,
) -> Vec<Value> {
    let balance = chain.balance(chain.token, f.pay_to).await;
    let on_chain = transfer["transfers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let payer = f.payer.to_checksum(None);
    let pay_to = f.pay_to.to_checksum(None);
    let amount = f.amount.to_string();
    let one =
        |name: &str, ok: bool, detail: String| json!({ "check": name, "ok": ok, "detail": detail });
    vec![
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
            eq(&s(&settle["payer"]), &payer),
            s(&settle["payer"]),
        ),
        one(
            "transaction mined and succeeded",
            transfer["status"] == "success",
            s(&transfer["status"]),
        ),
        one(
            "exactly one Transfer payer → payTo of the price",
            on_chain.len() == 1
                && eq(&s(&on_chain[0]["from"]), &payer)
                && eq(&s(&on_chain[0]["to"]), &pay_to)
                && s(&on_chain[0]["value"]) == amount,
            format!("{on_chain:?}"),
        ),
        one(
            "payTo's token balance is the price",
            balance == f.amount,
            balance.to_string(),
        ),
        one(
            "receipt names the transaction",
            eq(&s(&receipt["transaction"]), &f.tx),
            s(&receipt["transaction"]),
        ),
        one(
            "receipt is settled",
            receipt["state"] == "settled",
            s(&receipt["state"]),
        ),
        one(
            "receipt's payer, payTo, amount, asset match the chain",
            eq(&s(&receipt["payer"]), &payer)
                && eq(&s(&receipt["payTo"]), &pay_to)
                && s(&receipt["amount"]) == amount
                && eq(&s(&receipt["asset"]), &format!("{:#x}", chain.token)),
            receipt.to_string(),
        ),
    ]
}
