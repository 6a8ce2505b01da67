//! The EVM demo: anvil with the test token deployed (`harness/chain.rs`), the facilitator on it,
//! and the interop suite's `@x402/evm` seller and buyer (`tests/interop/e2e-v2.mjs`); its transfer
//! section is the receipt's `Transfer` logs.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};

use crate::{
    FUNDS, Figures, PRICE, Run, all_checks, app, chain, db, fail, one, pay, receipt, section, text,
};

pub async fn run(once: bool) -> Run {
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
        .mint(chain.token, buyer.address(), U256::from(FUNDS))
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
    let (paid, settle, tx) = pay("e2e-v2.mjs", &job).await;
    let transfer = transfer(&chain, &tx).await;
    section(
        "on-chain transfer (from the transaction's receipt)",
        &transfer,
    );
    let receipt = receipt(&facilitator, &tx).await;

    let checks = if once {
        let figures = Figures {
            tx: tx.clone(),
            payer: buyer.address().to_checksum(None),
            pay_to: pay_to.to_checksum(None),
            asset: format!("{:#x}", chain.token),
            amount: PRICE.to_string(),
            same: |a, b| a.eq_ignore_ascii_case(b),
        };
        let on_chain = checks(&chain, &figures, &transfer, pay_to).await;
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

/// The printed transfer compared with the chain now.
async fn checks(
    chain: &chain::Chain,
    f: &Figures,
    transfer: &Value,
    pay_to: Address,
) -> Vec<Value> {
    let balance = chain.balance(chain.token, pay_to).await;
    let on_chain = transfer["transfers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let same = f.same;
    vec![
        one(
            "transaction mined and succeeded",
            transfer["status"] == "success",
            text(&transfer["status"]),
        ),
        one(
            "exactly one Transfer payer → payTo of the price",
            on_chain.len() == 1
                && same(&text(&on_chain[0]["from"]), &f.payer)
                && same(&text(&on_chain[0]["to"]), &f.pay_to)
                && text(&on_chain[0]["value"]) == f.amount,
            format!("{on_chain:?}"),
        ),
        one(
            "payTo's token balance is the price",
            balance.to_string() == f.amount,
            balance.to_string(),
        ),
    ]
}
