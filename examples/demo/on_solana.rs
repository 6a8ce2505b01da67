//! The Solana demo: the local chain (LiteSVM behind JSON-RPC, `tests/solana-chain`,
//! `harness/solana.rs`) with a test SPL mint and a funded buyer, the facilitator as the
//! transaction's fee payer, and the interop suite's `@x402/svm` seller and buyer
//! (`tests/interop/e2e-svm.mjs`); its transfer section is the transaction as the chain ran it and
//! the owners' balances read from the chain before and after.

use serde_json::{Value, json};

use crate::solana::{self, SolanaChain, TestKey};
use crate::{FUNDS, Figures, PRICE, Run, all_checks, app, db, one, pay, receipt, section, text};

pub async fn run(once: bool) -> Run {
    println!("demo: starting the local Solana chain (LiteSVM, posing as devnet) and a test mint");
    let chain = SolanaChain::start().await;
    let fee_payer = TestKey::random();
    let buyer = TestKey::random();
    let pay_to = TestKey::random().pubkey();
    chain.airdrop(&fee_payer.pubkey(), 10_000_000_000).await;
    let mint = chain.create_mint(false).await;
    chain.mint_to(&mint, &buyer.pubkey(), FUNDS).await;
    chain.create_ata(&mint, &pay_to).await;
    let ledger = db::Db::sqlite();
    let mut env = app::base_env(&ledger);
    env.extend(solana::network_env(&chain.url, &fee_payer));
    env.push(("X402__CONSOLE__ENABLED".into(), "true".into()));
    let facilitator = app::spawn_env(env, Vec::new()).await;
    println!(
        "demo: facilitator on {} (ledger {}), fee payer {}",
        facilitator.base,
        ledger.url(),
        fee_payer.pubkey()
    );

    let before = [
        chain.token_balance(&mint, &buyer.pubkey(), false).await,
        chain.token_balance(&mint, &pay_to, false).await,
    ];
    println!(
        "demo: an @x402/express seller, and an @x402/fetch buyer ({}) paying it {PRICE} units of {mint}",
        buyer.pubkey()
    );
    let job = json!({
        "facilitatorUrl": facilitator.base,
        "rpcUrl": chain.url,
        "network": solana::DEVNET,
        "mint": mint.to_string(),
        "payTo": pay_to.to_string(),
        "amount": PRICE.to_string(),
        "secretKey": buyer.seed.to_vec(),
        "cases": ["paid"],
    });
    let (paid, settle, tx) = pay("e2e-svm.mjs", &job).await;
    let after = [
        chain.token_balance(&mint, &buyer.pubkey(), false).await,
        chain.token_balance(&mint, &pay_to, false).await,
    ];
    let landed = chain
        .rpc(
            "getTransaction",
            json!([tx, { "encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0 }]),
        )
        .await;
    let transfer = transfer(
        &tx,
        &landed,
        &mint.to_string(),
        &buyer,
        &pay_to,
        before,
        after,
    );
    section(
        "on-chain transfer (the transaction as the chain ran it; balances read from the chain before and after)",
        &transfer,
    );
    let receipt = receipt(&facilitator, &tx).await;

    let checks = if once {
        let figures = Figures {
            tx: tx.clone(),
            payer: buyer.pubkey().to_string(),
            pay_to: pay_to.to_string(),
            asset: mint.to_string(),
            amount: PRICE.to_string(),
            same: |a, b| a == b,
        };
        let now = [
            chain.token_balance(&mint, &buyer.pubkey(), false).await,
            chain.token_balance(&mint, &pay_to, false).await,
        ];
        let on_chain = checks(&figures, &settle, &transfer, &fee_payer.pubkey(), now);
        Some(all_checks(&figures, &paid, &settle, &receipt, on_chain))
    } else {
        None
    };
    Run {
        facilitator,
        chain: Box::new(chain),
        ledger,
        tx,
        checks,
    }
}

/// The transaction `landed` (`getTransaction`) as printed: its outcome, who paid its fee, the
/// mint's token balances it changed (from its own metadata), and the owners' balances read from
/// the chain before and after the payment.
fn transfer(
    tx: &str,
    landed: &Value,
    mint: &str,
    buyer: &solana::TestKey,
    pay_to: &solana::Pubkey,
    before: [u64; 2],
    after: [u64; 2],
) -> Value {
    let meta = &landed["meta"];
    let amount_of = |list: &Value, owner: &str| {
        list.as_array()
            .into_iter()
            .flatten()
            .find(|b| b["owner"] == owner && b["mint"] == mint)
            .and_then(|b| b["uiTokenAmount"]["amount"].as_str())
            .and_then(|a| a.parse::<u64>().ok())
    };
    let owner = |name: &str, who: String, i: usize| {
        json!({
            "who": name,
            "owner": who,
            "inTransaction": {
                "before": amount_of(&meta["preTokenBalances"], &who),
                "after": amount_of(&meta["postTokenBalances"], &who),
            },
            "readFromChain": { "before": before[i], "after": after[i] },
        })
    };
    let status = if landed.is_null() {
        "not found".to_string()
    } else if meta["err"].is_null() {
        "success".to_string()
    } else {
        format!("failed: {}", meta["err"])
    };
    json!({
        "transaction": tx,
        "status": status,
        "slot": landed["slot"],
        "feePayer": landed["transaction"]["message"]["accountKeys"][0],
        "feeLamports": meta["fee"],
        "mint": mint,
        "balances": [
            owner("payer", buyer.pubkey().to_string(), 0),
            owner("payTo", pay_to.to_string(), 1),
        ],
    })
}

/// The printed transfer compared with the chain: what the transaction did by its own metadata,
/// the balances read before and after it against the transaction's own record of them, and the
/// balances read again now.
fn checks(
    f: &Figures,
    settle: &Value,
    transfer: &Value,
    fee_payer: &solana::Pubkey,
    now: [u64; 2],
) -> Vec<Value> {
    let price: u64 = f.amount.parse().unwrap_or(0);
    let balances = &transfer["balances"];
    let figure = |i: usize, source: &str, when: &str| balances[i][source][when].as_u64();
    let moved = |i: usize, sign: i128| match (
        figure(i, "inTransaction", "before"),
        figure(i, "inTransaction", "after"),
    ) {
        (Some(x), Some(y)) => i128::from(y) - i128::from(x) == sign * i128::from(price),
        _ => false,
    };
    let agree = |i: usize| {
        ["before", "after"].iter().all(|when| {
            figure(i, "readFromChain", when).is_some()
                && figure(i, "readFromChain", when) == figure(i, "inTransaction", when)
        })
    };
    let read_before = |i: usize| figure(i, "readFromChain", "before");
    vec![
        one(
            "settle answer is on devnet (the local chain)",
            settle["network"] == solana::DEVNET,
            text(&settle["network"]),
        ),
        one(
            "transaction landed without error",
            transfer["status"] == "success",
            text(&transfer["status"]),
        ),
        one(
            "its fee was paid by the facilitator's fee payer",
            transfer["feePayer"] == fee_payer.to_string(),
            text(&transfer["feePayer"]),
        ),
        one(
            "it moved the price from payer to payTo (its own token balances)",
            moved(0, -1) && moved(1, 1),
            balances.to_string(),
        ),
        one(
            "the balances read before and after are the transaction's own",
            agree(0) && agree(1),
            balances.to_string(),
        ),
        one(
            "the balances now are the printed ones: payer down, payTo up by the price",
            figure(0, "readFromChain", "after") == Some(now[0])
                && figure(1, "readFromChain", "after") == Some(now[1])
                && read_before(0).and_then(|b| b.checked_sub(now[0])) == Some(price)
                && read_before(1).map(|b| now[1].checked_sub(b)) == Some(Some(price)),
            format!("payer now {}, payTo now {}", now[0], now[1]),
        ),
    ]
}
