//! The official x402 SDKs, unchanged, against our facilitator on a real chain:
//!
//! - v2: an `@x402/express` seller (its `HTTPFacilitatorClient` pointed at us, the network learned
//!   from our `/supported`) and an `@x402/fetch` + `@x402/evm` buyer (tests/interop/e2e-v2.mjs);
//! - v2 on Solana: the same seller with `@x402/svm`'s server scheme (fee payer learned from our
//!   `/supported`) and the same buyer with `@x402/svm`'s client scheme, on the local Solana chain
//!   (LiteSVM posing as devnet; tests/interop/e2e-svm.mjs), in SPL Token and Token-2022 mints;
//! - v1: the legacy `x402-express` seller and `x402-fetch` buyer (tests/interop/e2e-v1.mjs);
//! - Python: the PyPI `x402` SDK's facilitator client and EVM signer
//!   (tests/interop/python_facilitator.py, run by the venv in `X402_PYTHON`);
//! - our EVM reason strings against those of the installed `@x402/evm`
//!   (tests/interop/reasons.mjs), with the deliberate differences listed.
//!
//! Each script run is bounded (see `harness::script`); the scripts bound themselves too.

use alloy::primitives::{Address, U256, hex};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};
use x402_facilitator::protocol::reason as generic;
use x402_facilitator::schemes::evm::reason;

use solana_pubkey::Pubkey;
use x402_facilitator::schemes::svm::reason as svm_reason;
use x402_facilitator::schemes::svm::wire;

use crate::harness::app::{base_env, spawn_env};
use crate::harness::chain::{TOKEN_NAME, TOKEN_VERSION};
use crate::harness::solana::{self, DEVNET, SolanaChain, TestKey};
use crate::harness::{Chain, Db, TestApp, spawn};

const PRICE: u64 = 2500;
const MINTED: u64 = 1_000_000;

fn interop(file: &str) -> String {
    format!("{}/tests/interop/{file}", env!("CARGO_MANIFEST_DIR"))
}

async fn node(script: &str, job: &Value) -> Value {
    crate::harness::script::run_json("node", &[interop(script)], Some(job)).await
}

async fn python(job: &Value) -> Value {
    let python = std::env::var("X402_PYTHON").expect(
        "X402_PYTHON is not set: run the suite with scripts/test, which provisions the Python SDK",
    );
    crate::harness::script::run_json(&python, &[interop("python_facilitator.py")], Some(job)).await
}

/// A chain, our app on it, and a buyer holding `MINTED` test tokens.
struct World {
    chain: Chain,
    db: Db,
    app: TestApp,
    payer: PrivateKeySigner,
    pay_to: Address,
}

async fn world(chain_id: u64, db: Db) -> World {
    let chain = Chain::start_with(chain_id, &[]).await;
    let app = spawn(&chain, &db).await;
    let payer = PrivateKeySigner::random();
    chain
        .mint(chain.token, payer.address(), U256::from(MINTED))
        .await;
    let pay_to = PrivateKeySigner::random().address();
    World {
        chain,
        db,
        app,
        payer,
        pay_to,
    }
}

impl World {
    fn job(&self) -> Value {
        json!({
            "facilitatorUrl": self.app.base,
            "rpcUrl": self.chain.url,
            "chainId": self.chain.chain_id,
            "token": self.chain.token.to_checksum(None),
            "tokenName": TOKEN_NAME,
            "tokenVersion": TOKEN_VERSION,
            "privateKey": format!("0x{}", hex::encode(self.payer.to_bytes())),
            "payTo": self.pay_to.to_checksum(None),
            "amount": PRICE.to_string(),
        })
    }

    fn payer(&self) -> String {
        self.payer.address().to_checksum(None)
    }

    /// Money moved on chain for `settled` payments, and for nothing else.
    async fn assert_settled_on_chain(&self, settled: u64) {
        let token = self.chain.token;
        assert_eq!(
            self.chain.balance(token, self.pay_to).await,
            U256::from(settled * PRICE),
            "payTo balance"
        );
        assert_eq!(
            self.chain.balance(token, self.payer.address()).await,
            U256::from(MINTED - settled * PRICE),
            "payer balance"
        );
        assert_eq!(
            self.chain.transfers_from(token, self.payer.address()).await,
            settled as usize,
            "Transfer events from the payer"
        );
    }

    /// The ledger holds exactly `settled` rows, all settled.
    async fn assert_ledger(&self, settled: i64) {
        assert_eq!(
            self.db
                .count("SELECT count(*) FROM settlements WHERE state = 'settled'")
                .await,
            settled,
            "settled ledger rows"
        );
        assert_eq!(
            self.db.count("SELECT count(*) FROM settlements").await,
            settled,
            "ledger rows (a rejected payment must leave none)"
        );
    }

    /// The ledger has the settled row for `tx`, for this payment.
    async fn assert_ledger_row(&self, tx: &str, x402_version: u8) {
        let tx = tx.to_ascii_lowercase();
        assert!(
            tx.len() == 66
                && tx.starts_with("0x")
                && tx[2..].chars().all(|c| c.is_ascii_hexdigit()),
            "transaction {tx} is not a 0x tx hash"
        );
        let sql = format!(
            "SELECT count(*) FROM settlements WHERE state = 'settled' AND lower(tx_id) = '{tx}' \
             AND amount = '{PRICE}' AND x402_version = {x402_version}"
        );
        assert_eq!(self.db.count(&sql).await, 1, "ledger row for {tx}");
    }
}

/// A settle response the SDK seller handed to its buyer: a success on `network` by our payer.
fn assert_paid(case: &Value, payer: &str, network: &str) -> String {
    assert_eq!(case["status"], 200, "{case:#}");
    assert_eq!(case["body"]["weather"], "sunny", "{case:#}");
    let settled = &case["paymentResponse"];
    assert_eq!(settled["success"], true, "{case:#}");
    assert_eq!(settled["network"], network, "{case:#}");
    assert_eq!(settled["payer"], payer, "{case:#}");
    settled["transaction"]
        .as_str()
        .unwrap_or_else(|| panic!("no transaction: {case:#}"))
        .to_string()
}

/// Nothing moved during the case, and the resource handler never ran.
fn assert_nothing_settled(case: &Value) {
    assert_eq!(
        case["payToBalanceBefore"], case["payToBalanceAfter"],
        "money moved: {case:#}"
    );
    assert_eq!(case["handlerRuns"], 0, "the handler ran: {case:#}");
}

/// The one of two concurrent identical payments that lost: refused with our reason, either at
/// verify (`refusal_at_verify`) or at settle (a failed settle response carried back, naming no
/// transaction or the winner's, `won_tx`, when that one was already recorded).
fn assert_concurrent_loser(loser: &Value, refusal_at_verify: &Value, network: &str, won_tx: &str) {
    assert_eq!(loser["status"], 402, "{loser:#}");
    let ours = [generic::DUPLICATE_SETTLEMENT, reason::NONCE_ALREADY_USED];
    let settle = &loser["paymentResponse"];
    if settle.is_object() {
        assert_eq!(settle["success"], false, "{loser:#}");
        assert!(
            ours.iter().any(|r| settle["errorReason"] == *r),
            "{loser:#}"
        );
        assert!(
            settle["transaction"] == "" || settle["transaction"] == won_tx,
            "{loser:#}"
        );
        assert_eq!(settle["network"], network, "{loser:#}");
    } else {
        assert!(ours.iter().any(|r| *refusal_at_verify == *r), "{loser:#}");
    }
}

#[tokio::test]
async fn sdk_v2_express_seller_and_fetch_buyer_pay_through_us() {
    let w = world(31337, Db::postgres().await).await;
    let network = "eip155:31337";
    let out = node("e2e-v2.mjs", &w.job()).await;
    let payer = w.payer();

    // The seller learned our network from /supported and priced the route in the test token.
    assert_eq!(
        out["sellerSupportedKind"],
        json!({"x402Version": 2, "scheme": "exact", "network": network}),
        "{out:#}"
    );
    let unpaid = &out["unpaid"];
    assert_eq!(unpaid["status"], 402, "{unpaid:#}");
    let offered = &unpaid["paymentRequired"]["accepts"][0];
    assert_eq!(offered["network"], network, "{unpaid:#}");
    assert_eq!(offered["amount"], PRICE.to_string(), "{unpaid:#}");
    assert_eq!(
        offered["extra"],
        json!({"name": TOKEN_NAME, "version": TOKEN_VERSION}),
        "{unpaid:#}"
    );

    // Paid: the resource arrives with PAYMENT-RESPONSE = our settle response, verbatim.
    let paid = &out["paid"];
    let tx = assert_paid(paid, &payer, network);
    let ours = paid["facilitatorCalls"]
        .as_array()
        .and_then(|calls| calls.iter().find(|c| c["op"] == "settle"))
        .map(|c| c["answer"].clone())
        .unwrap_or_else(|| panic!("the seller never settled: {paid:#}"));
    assert_eq!(
        paid["paymentResponse"], ours,
        "PAYMENT-RESPONSE is not our settle response"
    );
    assert_eq!(
        ours,
        json!({"success": true, "payer": payer, "transaction": tx, "network": network})
    );
    assert_eq!(paid["payToBalanceAfter"], PRICE.to_string(), "{paid:#}");
    w.assert_ledger_row(&tx, 2).await;

    // Rejections reach the buyer as our reason in PAYMENT-REQUIRED, and settle nothing.
    for (case, expected) in [
        ("underpaid", reason::VALUE_MISMATCH),
        ("expired", reason::VALID_BEFORE),
    ] {
        let c = &out[case];
        assert_eq!(c["status"], 402, "{case}: {c:#}");
        assert_eq!(c["paymentRequired"]["error"], expected, "{case}: {c:#}");
        assert!(c["paymentResponse"].is_null(), "{case}: {c:#}");
        assert_nothing_settled(c);
    }

    let replay = &out["replay"];
    let first_tx = assert_paid(&replay["first"], &payer, network);
    w.assert_ledger_row(&first_tx, 2).await;
    assert_eq!(replay["second"]["status"], 402, "{replay:#}");
    assert_eq!(
        replay["second"]["paymentRequired"]["error"],
        reason::NONCE_ALREADY_USED,
        "{replay:#}"
    );
    assert_eq!(replay["handlerRuns"], 1, "{replay:#}");

    let answers = out["concurrent"]["answers"]
        .as_array()
        .expect("two answers");
    let (winners, losers): (Vec<&Value>, Vec<&Value>) =
        answers.iter().partition(|a| a["status"] == 200);
    assert_eq!((winners.len(), losers.len()), (1, 1), "{answers:#?}");
    let won_tx = assert_paid(winners[0], &payer, network);
    w.assert_ledger_row(&won_tx, 2).await;
    assert_concurrent_loser(
        losers[0],
        &losers[0]["paymentRequired"]["error"],
        network,
        &won_tx,
    );

    // paid + replay's first + the concurrent winner; nothing else.
    w.assert_settled_on_chain(3).await;
    w.assert_ledger(3).await;
    w.app.stop().await;
}

#[tokio::test]
async fn sdk_v1_legacy_express_seller_and_fetch_buyer_pay_through_us() {
    // The v1 packages only know legacy names, so the local chain poses as base-sepolia.
    let w = world(84532, Db::sqlite()).await;
    let network = "base-sepolia";
    let out = node("e2e-v1.mjs", &w.job()).await;
    let payer = w.payer();

    assert_eq!(
        out["network"], network,
        "the seller's network from /supported: {out:#}"
    );
    assert_eq!(out["unpaid"]["status"], 402, "{out:#}");
    assert_eq!(
        out["unpaid"]["body"]["accepts"][0]["network"], network,
        "{out:#}"
    );

    let paid = &out["paid"];
    let tx = assert_paid(paid, &payer, network);
    assert_eq!(
        paid["paymentResponse"],
        json!({"success": true, "payer": payer, "transaction": tx, "network": network}),
        "X-PAYMENT-RESPONSE is not our settle response"
    );
    w.assert_ledger_row(&tx, 1).await;

    // v1 sellers put the reason in the 402 body's `error`.
    for (case, expected) in [
        ("underpaid", reason::VALUE_MISMATCH_V1),
        ("expired", reason::VALID_BEFORE),
    ] {
        let c = &out[case];
        assert_eq!(c["status"], 402, "{case}: {c:#}");
        assert_eq!(c["body"]["error"], expected, "{case}: {c:#}");
        assert_eq!(c["body"]["payer"], payer.as_str(), "{case}: {c:#}");
        assert!(c["paymentResponse"].is_null(), "{case}: {c:#}");
        assert_nothing_settled(c);
    }

    let replay = &out["replay"];
    let first_tx = assert_paid(&replay["first"], &payer, network);
    w.assert_ledger_row(&first_tx, 1).await;
    assert_eq!(replay["second"]["status"], 402, "{replay:#}");
    assert_eq!(
        replay["second"]["body"]["error"],
        reason::NONCE_ALREADY_USED,
        "{replay:#}"
    );

    let answers = out["concurrent"]["answers"]
        .as_array()
        .expect("two answers");
    let (winners, losers): (Vec<&Value>, Vec<&Value>) =
        answers.iter().partition(|a| a["status"] == 200);
    assert_eq!((winners.len(), losers.len()), (1, 1), "{answers:#?}");
    let won_tx = assert_paid(winners[0], &payer, network);
    w.assert_ledger_row(&won_tx, 1).await;
    // A v1 seller reports both verify and settle refusals as the body's `error`.
    assert_concurrent_loser(losers[0], &losers[0]["body"]["error"], network, &won_tx);

    w.assert_settled_on_chain(3).await;
    w.assert_ledger(3).await;
    w.app.stop().await;
}

async fn python_sdk_through_us(chain_id: u64, x402_version: u8, db: Db) {
    let w = world(chain_id, db).await;
    let mut job = w.job();
    job["x402Version"] = json!(x402_version);
    let out = python(&job).await;
    let payer = w.payer();
    let (network, value_mismatch) = if x402_version == 2 {
        (format!("eip155:{chain_id}"), reason::VALUE_MISMATCH)
    } else {
        ("base-sepolia".to_string(), reason::VALUE_MISMATCH_V1)
    };

    assert_eq!(
        out["kind"],
        json!({"x402Version": x402_version, "scheme": "exact", "network": network}),
        "{out:#}"
    );
    assert_eq!(
        out["verify"]["answer"],
        json!({"isValid": true, "payer": payer}),
        "{out:#}"
    );
    let settled = &out["settle"]["answer"];
    assert_eq!(settled["success"], true, "{out:#}");
    assert_eq!(settled["network"], network.as_str(), "{out:#}");
    assert_eq!(settled["payer"], payer.as_str(), "{out:#}");
    let tx = settled["transaction"].as_str().expect("transaction");
    w.assert_ledger_row(tx, x402_version).await;

    for (step, expected) in [
        ("replayVerify", reason::NONCE_ALREADY_USED),
        ("underpaidVerify", value_mismatch),
    ] {
        let a = &out[step]["answer"];
        assert_eq!(a["isValid"], false, "{step}: {out:#}");
        assert_eq!(a["invalidReason"], expected, "{step}: {out:#}");
    }
    for (step, expected) in [
        ("replaySettle", reason::NONCE_ALREADY_USED),
        ("underpaidSettle", value_mismatch),
    ] {
        let a = &out[step]["answer"];
        assert_eq!(a["success"], false, "{step}: {out:#}");
        assert_eq!(a["errorReason"], expected, "{step}: {out:#}");
        assert_eq!(a["transaction"], "", "{step}: {out:#}");
        assert_eq!(a["network"], network.as_str(), "{step}: {out:#}");
    }

    w.assert_settled_on_chain(1).await;
    w.assert_ledger(1).await;
    w.app.stop().await;
}

#[tokio::test]
async fn python_sdk_v2_verifies_and_settles_through_us() {
    python_sdk_through_us(31337, 2, Db::postgres().await).await;
}

#[tokio::test]
async fn python_sdk_v1_verifies_and_settles_through_us() {
    python_sdk_through_us(84532, 1, Db::sqlite()).await;
}

// ---- reason strings --------------------------------------------------------------------------

/// Each of our EVM reasons and the `@x402/evm` exact-facilitator constant it must equal.
const SAME_AS_SDK: &[(&str, &str, &str)] = &[
    ("SCHEME", reason::SCHEME, "ErrInvalidScheme"),
    (
        "NETWORK_MISMATCH",
        reason::NETWORK_MISMATCH,
        "ErrNetworkMismatch",
    ),
    (
        "MISSING_EIP712_DOMAIN",
        reason::MISSING_EIP712_DOMAIN,
        "ErrMissingEip712Domain",
    ),
    (
        "RECIPIENT_MISMATCH",
        reason::RECIPIENT_MISMATCH,
        "ErrRecipientMismatch",
    ),
    ("SIGNATURE", reason::SIGNATURE, "ErrInvalidSignature"),
    (
        "VALID_BEFORE",
        reason::VALID_BEFORE,
        "ErrValidBeforeExpired",
    ),
    ("VALID_AFTER", reason::VALID_AFTER, "ErrValidAfterInFuture"),
    (
        "VALUE_MISMATCH",
        reason::VALUE_MISMATCH,
        "ErrAuthorizationValueMismatch",
    ),
    (
        "VALUE_MISMATCH_V1",
        reason::VALUE_MISMATCH_V1,
        "ErrInvalidAuthorizationValue",
    ),
    (
        "FACTORY_NOT_ALLOWED",
        reason::FACTORY_NOT_ALLOWED,
        "ErrFactoryNotAllowed",
    ),
    (
        "ASSET_NOT_DEPLOYED",
        reason::ASSET_NOT_DEPLOYED,
        "ErrAssetNotDeployedContract",
    ),
    (
        "TRANSACTION_FAILED",
        reason::TRANSACTION_FAILED,
        "ErrTransactionFailed",
    ),
    (
        "TOKEN_NAME_MISMATCH",
        reason::TOKEN_NAME_MISMATCH,
        "ErrEip3009TokenNameMismatch",
    ),
    (
        "TOKEN_VERSION_MISMATCH",
        reason::TOKEN_VERSION_MISMATCH,
        "ErrEip3009TokenVersionMismatch",
    ),
    (
        "EIP3009_NOT_SUPPORTED",
        reason::EIP3009_NOT_SUPPORTED,
        "ErrEip3009NotSupported",
    ),
    (
        "NONCE_ALREADY_USED",
        reason::NONCE_ALREADY_USED,
        "ErrEip3009NonceAlreadyUsed",
    ),
    (
        "INSUFFICIENT_BALANCE",
        reason::INSUFFICIENT_BALANCE,
        "ErrEip3009InsufficientBalance",
    ),
    (
        "SIMULATION_FAILED",
        reason::SIMULATION_FAILED,
        "ErrEip3009SimulationFailed",
    ),
    (
        "UNSUPPORTED_PAYLOAD_TYPE",
        reason::UNSUPPORTED_PAYLOAD_TYPE,
        "ErrUnsupportedPayloadType",
    ),
    (
        "TRANSFER_EVENT_MISMATCH",
        reason::TRANSFER_EVENT_MISMATCH,
        "ErrTransferEventMismatch",
    ),
    (
        "protocol SETTLEMENT_PENDING",
        generic::SETTLEMENT_PENDING,
        "ErrSettlementPending",
    ),
    (
        "PERMIT2_INVALID_SPENDER",
        reason::PERMIT2_INVALID_SPENDER,
        "ErrPermit2InvalidSpender",
    ),
    (
        "PERMIT2_RECIPIENT_MISMATCH",
        reason::PERMIT2_RECIPIENT_MISMATCH,
        "ErrPermit2RecipientMismatch",
    ),
    (
        "PERMIT2_DEADLINE_EXPIRED",
        reason::PERMIT2_DEADLINE_EXPIRED,
        "ErrPermit2DeadlineExpired",
    ),
    (
        "PERMIT2_NOT_YET_VALID",
        reason::PERMIT2_NOT_YET_VALID,
        "ErrPermit2NotYetValid",
    ),
    (
        "PERMIT2_AMOUNT_MISMATCH",
        reason::PERMIT2_AMOUNT_MISMATCH,
        "ErrPermit2AmountMismatch",
    ),
    (
        "PERMIT2_TOKEN_MISMATCH",
        reason::PERMIT2_TOKEN_MISMATCH,
        "ErrPermit2TokenMismatch",
    ),
    (
        "PERMIT2_INVALID_SIGNATURE",
        reason::PERMIT2_INVALID_SIGNATURE,
        "ErrPermit2InvalidSignature",
    ),
    (
        "PERMIT2_ALLOWANCE_REQUIRED",
        reason::PERMIT2_ALLOWANCE_REQUIRED,
        "ErrPermit2AllowanceRequired",
    ),
    (
        "PERMIT2_SIMULATION_FAILED",
        reason::PERMIT2_SIMULATION_FAILED,
        "ErrPermit2SimulationFailed",
    ),
    (
        "PERMIT2_INSUFFICIENT_BALANCE",
        reason::PERMIT2_INSUFFICIENT_BALANCE,
        "ErrPermit2InsufficientBalance",
    ),
    (
        "PERMIT2_PROXY_NOT_DEPLOYED",
        reason::PERMIT2_PROXY_NOT_DEPLOYED,
        "ErrPermit2ProxyNotDeployed",
    ),
    (
        "PERMIT2_INVALID_AMOUNT",
        reason::PERMIT2_INVALID_AMOUNT,
        "ErrPermit2InvalidAmount",
    ),
    (
        "PERMIT2_INVALID_DESTINATION",
        reason::PERMIT2_INVALID_DESTINATION,
        "ErrPermit2InvalidDestination",
    ),
    (
        "PERMIT2_INVALID_OWNER",
        reason::PERMIT2_INVALID_OWNER,
        "ErrPermit2InvalidOwner",
    ),
    (
        "PERMIT2_PAYMENT_TOO_EARLY",
        reason::PERMIT2_PAYMENT_TOO_EARLY,
        "ErrPermit2PaymentTooEarly",
    ),
    (
        "PERMIT2_INVALID_NONCE",
        reason::PERMIT2_INVALID_NONCE,
        "ErrPermit2InvalidNonce",
    ),
    (
        "PERMIT2_2612_AMOUNT_MISMATCH",
        reason::PERMIT2_2612_AMOUNT_MISMATCH,
        "ErrPermit2612AmountMismatch",
    ),
    (
        "EIP2612_INVALID_FORMAT",
        reason::EIP2612_INVALID_FORMAT,
        "ErrInvalidEip2612ExtensionFormat",
    ),
    (
        "EIP2612_FROM_MISMATCH",
        reason::EIP2612_FROM_MISMATCH,
        "ErrEip2612FromMismatch",
    ),
    (
        "EIP2612_ASSET_MISMATCH",
        reason::EIP2612_ASSET_MISMATCH,
        "ErrEip2612AssetMismatch",
    ),
    (
        "EIP2612_SPENDER_NOT_PERMIT2",
        reason::EIP2612_SPENDER_NOT_PERMIT2,
        "ErrEip2612SpenderNotPermit2",
    ),
    (
        "EIP2612_DEADLINE_EXPIRED",
        reason::EIP2612_DEADLINE_EXPIRED,
        "ErrEip2612DeadlineExpired",
    ),
];

/// Each of our `upto` reasons and the `@x402/evm` upto-facilitator constant it must equal.
const UPTO_SAME_AS_SDK: &[(&str, &str, &str)] = &[
    ("UPTO_SCHEME", reason::UPTO_SCHEME, "ErrUptoInvalidScheme"),
    (
        "UPTO_NETWORK_MISMATCH",
        reason::UPTO_NETWORK_MISMATCH,
        "ErrUptoNetworkMismatch",
    ),
    (
        "UPTO_FACILITATOR_MISMATCH",
        reason::UPTO_FACILITATOR_MISMATCH,
        "ErrUptoFacilitatorMismatch",
    ),
    (
        "UPTO_EXCEEDS_AMOUNT",
        reason::UPTO_EXCEEDS_AMOUNT,
        "ErrUptoSettlementExceedsAmount",
    ),
    (
        "UPTO_TRANSACTION_FAILED",
        reason::UPTO_TRANSACTION_FAILED,
        "ErrUptoTransactionFailed",
    ),
    (
        "UPTO_AMOUNT_EXCEEDS_PERMITTED",
        reason::UPTO_AMOUNT_EXCEEDS_PERMITTED,
        "ErrUptoAmountExceedsPermitted",
    ),
    (
        "UPTO_UNAUTHORIZED_FACILITATOR",
        reason::UPTO_UNAUTHORIZED_FACILITATOR,
        "ErrUptoUnauthorizedFacilitator",
    ),
];

/// Allow-list: our EVM reasons whose use deliberately differs from the installed SDK (README
/// "Reason strings"). Each names the SDK constant and what must hold for the entry to stay true.
const DELIBERATE: &[(&str, &str, &str)] = &[(
    "UNDEPLOYED_SMART_WALLET",
    "ErrUndeployedSmartWallet",
    "the SDK still defines it but no longer sends it (it sends the vaguer \
     invalid_exact_evm_signature); we keep the specific string",
)];

/// Allow-list: `@x402/evm` exact constants (outside the ERC-20 approval family, an extension we
/// do not implement) that we never send, and why.
const SDK_ONLY: &[(&str, &str)] = &[
    (
        "ErrFailedToParseSignature",
        "an unparsable payload or signature is invalid_payload / invalid_exact_evm_signature here",
    ),
    (
        "ErrSmartWalletDeploymentFailed",
        "we deploy an ERC-6492 wallet and pay in one Multicall3 transaction, so a failed \
         deployment is invalid_exact_evm_transaction_failed",
    ),
    (
        "ErrInvalidTransactionState",
        "the default of the SDK's shared receipt helper (Permit2); its EIP-3009 path sends \
         invalid_exact_evm_transaction_failed, as we do",
    ),
];

fn not_implemented_family(name: &str) -> bool {
    name.starts_with("ErrErc20Approval")
}

/// `pub const NAME: &str = "…";` lines of our reason module, so a new constant must be classified.
fn our_evm_constants() -> Vec<(String, String)> {
    include_str!("../../src/schemes/evm/reason.rs")
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("pub const ")?;
            let (name, rest) = rest.split_once(": &str = \"")?;
            let value = rest.strip_suffix("\";")?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn our_evm_reason_strings_match_the_installed_sdk() {
    let out = crate::harness::script::run_json("node", &[interop("reasons.mjs")], None).await;
    let sdk = out["constants"]["exact"]
        .as_object()
        .unwrap_or_else(|| panic!("reasons.mjs listed no exact constants: {out:#}"));
    let used_in = |name: &str| -> Vec<String> {
        out["usedIn"]["exact"][name]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let sdk_version = &out["versions"]["@x402/evm"];
    let mut differences: Vec<String> = Vec::new();

    let sdk_upto = out["constants"]["upto"]
        .as_object()
        .unwrap_or_else(|| panic!("reasons.mjs listed no upto constants: {out:#}"));
    for (table, module) in [(SAME_AS_SDK, sdk), (UPTO_SAME_AS_SDK, sdk_upto)] {
        for (ours, value, constant) in table {
            match module.get(*constant).and_then(Value::as_str) {
                None => differences.push(format!("{ours}: SDK constant {constant} is gone")),
                Some(v) if v != *value => {
                    differences.push(format!("{ours} = {value:?} but SDK {constant} = {v:?}"))
                }
                Some(_) => {}
            }
        }
    }
    // Every SDK upto constant is one of ours.
    for (constant, value) in sdk_upto {
        if !UPTO_SAME_AS_SDK.iter().any(|(_, _, c)| c == constant) {
            differences.push(format!("SDK upto {constant} = {value} is not one of ours"));
        }
    }
    for (ours, constant, why) in DELIBERATE {
        let value = our_evm_constants()
            .into_iter()
            .find(|(n, _)| n == ours)
            .map(|(_, v)| v);
        if sdk.get(*constant).and_then(Value::as_str) != value.as_deref() {
            differences.push(format!("allow-listed {ours}: SDK {constant} changed value"));
        }
        if !used_in(constant).is_empty() {
            differences.push(format!(
                "allow-listed {ours} ({why}): the SDK sends {constant} again ({:?}); \
                 drop the allow-list entry",
                used_in(constant)
            ));
        }
    }

    // Every constant in our reason module is classified.
    for (name, value) in our_evm_constants() {
        let paired = SAME_AS_SDK
            .iter()
            .chain(UPTO_SAME_AS_SDK)
            .any(|(n, _, _)| *n == name);
        let allowed = DELIBERATE.iter().any(|(n, _, _)| *n == name);
        if !paired && !allowed {
            differences.push(format!(
                "our {name} = {value:?} is neither paired with an SDK constant nor allow-listed"
            ));
        }
    }
    // Every SDK exact constant we could send is ours or allow-listed.
    for (constant, value) in sdk {
        let covered = SAME_AS_SDK.iter().any(|(_, _, c)| c == constant)
            || DELIBERATE.iter().any(|(_, c, _)| c == constant)
            || SDK_ONLY.iter().any(|(c, _)| c == constant)
            || not_implemented_family(constant);
        if !covered {
            differences.push(format!(
                "SDK {constant} = {value} (used in {:?}) is not one of ours nor allow-listed",
                used_in(constant)
            ));
        }
    }
    for (constant, _) in SDK_ONLY {
        if !sdk.contains_key(*constant) {
            differences.push(format!("allow-listed SDK {constant} no longer exists"));
        }
    }

    // README: v2 amount mismatch is the new string, v1 the old one, as the SDK's facilitators do.
    let v2_facilitator = "evm/src/exact/facilitator/eip3009.ts";
    let v1_facilitator = "evm/src/exact/v1/facilitator/scheme.ts";
    if !used_in("ErrAuthorizationValueMismatch")
        .iter()
        .any(|p| p == v2_facilitator)
    {
        differences.push(format!(
            "VALUE_MISMATCH: the SDK's v2 facilitator ({v2_facilitator}) no longer sends it"
        ));
    }
    if !used_in("ErrInvalidAuthorizationValue")
        .iter()
        .any(|p| p == v1_facilitator)
    {
        differences.push(format!(
            "VALUE_MISMATCH_V1: the SDK's v1 facilitator ({v1_facilitator}) no longer sends it"
        ));
    }

    assert!(
        differences.is_empty(),
        "our EVM reason strings differ from @x402/evm {sdk_version}:\n  {}",
        differences.join("\n  ")
    );
}

// ---- Solana ----------------------------------------------------------------------------------

/// The local Solana chain (posing as devnet), our app on it with one fee payer, a mint, a buyer
/// holding `MINTED`, a poor buyer holding less than `PRICE`, and the seller's token account.
struct SolanaWorld {
    chain: SolanaChain,
    db: Db,
    app: TestApp,
    fee_payer: TestKey,
    payer: TestKey,
    poor: TestKey,
    pay_to: Pubkey,
    mint: Pubkey,
    token2022: bool,
}

async fn solana_world(token2022: bool, db: Db) -> SolanaWorld {
    let chain = SolanaChain::start().await;
    let fee_payer = TestKey::random();
    let payer = TestKey::random();
    let poor = TestKey::random();
    let pay_to = TestKey::random().pubkey();
    chain.airdrop(&fee_payer.pubkey(), 10_000_000_000).await;
    let mint = chain.create_mint(token2022).await;
    chain.mint_to(&mint, &payer.pubkey(), MINTED).await;
    chain.mint_to(&mint, &poor.pubkey(), PRICE - 1).await;
    chain.create_ata(&mint, &pay_to).await;
    let mut env = base_env(&db);
    env.extend(solana::network_env(&chain.url, &fee_payer));
    let app = spawn_env(env, Vec::new()).await;
    SolanaWorld {
        chain,
        db,
        app,
        fee_payer,
        payer,
        poor,
        pay_to,
        mint,
        token2022,
    }
}

impl SolanaWorld {
    fn job(&self, cases: &[&str]) -> Value {
        json!({
            "facilitatorUrl": self.app.base,
            "rpcUrl": self.chain.url,
            "network": DEVNET,
            "mint": self.mint.to_string(),
            "payTo": self.pay_to.to_string(),
            "amount": PRICE.to_string(),
            "secretKey": self.payer.seed.to_vec(),
            "poorSecretKey": self.poor.seed.to_vec(),
            "cases": cases,
        })
    }

    async fn balance(&self, owner: &Pubkey) -> u64 {
        self.chain
            .token_balance(&self.mint, owner, self.token2022)
            .await
    }

    /// A paid case: the resource arrived, PAYMENT-RESPONSE is our settle answer verbatim, the
    /// buyer's SDK built the transaction for our fee payer, and the ledger settled exactly it.
    /// `calls` are the seller's facilitator calls during the case, the first settle being this
    /// payment's. Returns the transaction signature.
    async fn assert_paid(&self, case: &Value, calls: &Value) -> String {
        let payer = self.payer.pubkey().to_string();
        let signature = assert_paid(case, &payer, DEVNET);
        assert!(
            bs58::decode(&signature)
                .into_vec()
                .is_ok_and(|b| b.len() == 64),
            "transaction {signature} is not a base58 signature: {case:#}"
        );
        let ours = calls
            .as_array()
            .and_then(|calls| calls.iter().find(|c| c["op"] == "settle"))
            .map(|c| c["answer"].clone())
            .unwrap_or_else(|| panic!("the seller never settled: {case:#}"));
        assert_eq!(
            case["paymentResponse"], ours,
            "PAYMENT-RESPONSE is not our settle response"
        );
        assert_eq!(
            ours,
            json!({"success": true, "payer": payer, "transaction": signature, "network": DEVNET})
        );
        let paid = &case["sentPayment"];
        assert_eq!(paid["x402Version"], 2, "{case:#}");
        assert_eq!(
            paid["accepted"]["extra"]["feePayer"],
            self.fee_payer.pubkey().to_string(),
            "{case:#}"
        );
        let tx = wire::from_base64(
            paid["payload"]["transaction"]
                .as_str()
                .unwrap_or_else(|| panic!("no transaction in the payment: {case:#}")),
        )
        .expect("the SDK's transaction decodes");
        let keys = tx.message.static_account_keys();
        assert_eq!(keys[0], self.fee_payer.pubkey());
        let signers = usize::from(tx.message.header().num_required_signatures);
        assert!(
            keys[..signers].contains(&self.payer.pubkey()),
            "the buyer signs its transfer"
        );
        let sql = format!(
            "SELECT count(*) FROM settlements WHERE state = 'settled' AND tx_id = '{signature}' \
             AND network = '{DEVNET}' AND x402_version = 2 AND payer = '{payer}' \
             AND pay_to = '{}' AND asset = '{}' AND amount = '{PRICE}'",
            self.pay_to, self.mint
        );
        assert_eq!(self.db.count(&sql).await, 1, "ledger row for {signature}");
        signature
    }

    /// Money moved on chain for `settled` payments, and for nothing else; the ledger holds
    /// exactly `settled` rows, all settled.
    async fn assert_settled(&self, settled: u64) {
        assert_eq!(
            self.balance(&self.pay_to).await,
            settled * PRICE,
            "payTo balance"
        );
        assert_eq!(
            self.balance(&self.payer.pubkey()).await,
            MINTED - settled * PRICE,
            "payer balance"
        );
        assert_eq!(
            self.balance(&self.poor.pubkey()).await,
            PRICE - 1,
            "poor payer balance"
        );
        let settled = settled as i64;
        assert_eq!(
            self.db
                .count("SELECT count(*) FROM settlements WHERE state = 'settled'")
                .await,
            settled,
            "settled ledger rows"
        );
        assert_eq!(
            self.db.count("SELECT count(*) FROM settlements").await,
            settled,
            "ledger rows (a rejected payment must leave none)"
        );
    }
}

/// A refusal the SDK seller handed to its buyer: 402 with our `reason`, nothing settled.
fn assert_refused(case: &Value, reason: &str) {
    assert_eq!(case["status"], 402, "{case:#}");
    assert_eq!(case["paymentRequired"]["error"], reason, "{case:#}");
    assert!(case["paymentResponse"].is_null(), "{case:#}");
    assert_nothing_settled(case);
}

/// The official v2 SDKs on Solana: the `@x402/express` seller with `@x402/svm`'s server scheme
/// (fee payer learned from our `/supported`), the `@x402/fetch` buyer with `@x402/svm`'s client
/// scheme on the local chain (tests/interop/e2e-svm.mjs).
async fn svm_sdk_v2_through_us(token2022: bool, db: Db, cases: &[&str]) {
    let w = solana_world(token2022, db).await;
    let out = node("e2e-svm.mjs", &w.job(cases)).await;
    let fee_payer = w.fee_payer.pubkey().to_string();
    let mut settled = 0;

    // The seller learned our network and fee payer from /supported.
    assert_eq!(
        out["sellerSupportedKind"],
        json!({"x402Version": 2, "scheme": "exact", "network": DEVNET, "extra": {"feePayer": fee_payer}}),
        "{out:#}"
    );
    let unpaid = &out["unpaid"];
    assert_eq!(unpaid["status"], 402, "{unpaid:#}");
    assert_eq!(
        unpaid["paymentRequired"]["accepts"],
        json!([{
            "scheme": "exact",
            "network": DEVNET,
            "amount": PRICE.to_string(),
            "asset": w.mint.to_string(),
            "payTo": w.pay_to.to_string(),
            "maxTimeoutSeconds": 60,
            "extra": {"feePayer": fee_payer},
        }]),
        "{unpaid:#}"
    );

    if cases.contains(&"paid") {
        w.assert_paid(&out["paid"], &out["paid"]["facilitatorCalls"])
            .await;
        settled += 1;
        assert_eq!(
            out["paid"]["payToBalanceAfter"],
            PRICE.to_string(),
            "{out:#}"
        );
    }

    if cases.contains(&"sellerBlockhash") {
        // The seller's server scheme with an rpcUrl embeds a recent blockhash; the buyer's SDK
        // signs with it, and we settle it like any other.
        let offered = &out["unpaidFresh"]["paymentRequired"]["accepts"][0]["extra"];
        assert_eq!(offered["feePayer"], fee_payer.as_str(), "{out:#}");
        assert!(offered["recentBlockhash"].is_string(), "{out:#}");
        assert!(offered["lastValidBlockHeight"].is_string(), "{out:#}");
        let case = &out["sellerBlockhash"];
        w.assert_paid(case, &case["facilitatorCalls"]).await;
        settled += 1;
        let accepted = &case["sentPayment"]["accepted"]["extra"];
        let tx = wire::from_base64(
            case["sentPayment"]["payload"]["transaction"]
                .as_str()
                .expect("transaction"),
        )
        .expect("decodes");
        assert_eq!(
            accepted["recentBlockhash"],
            tx.message.recent_blockhash().to_string(),
            "the buyer used the seller's blockhash: {case:#}"
        );
    }

    if cases.contains(&"underpaid") {
        assert_refused(&out["underpaid"], svm_reason::AMOUNT_MISMATCH);
    }
    if cases.contains(&"insufficient") {
        let case = &out["insufficient"];
        assert_refused(case, svm_reason::SIMULATION_FAILED);
        assert_eq!(
            case["facilitatorCalls"][0]["answer"]["payer"],
            w.poor.pubkey().to_string(),
            "{case:#}"
        );
    }

    if cases.contains(&"replay") {
        let replay = &out["replay"];
        w.assert_paid(&replay["first"], &replay["facilitatorCalls"])
            .await;
        settled += 1;
        assert_eq!(replay["second"]["status"], 402, "{replay:#}");
        assert_eq!(
            replay["second"]["paymentRequired"]["error"],
            generic::DUPLICATE_SETTLEMENT,
            "{replay:#}"
        );
        assert!(replay["second"]["paymentResponse"].is_null(), "{replay:#}");
        assert_eq!(replay["handlerRuns"], 1, "{replay:#}");
        assert_eq!(replay["payToBalanceAfter"], (settled * PRICE).to_string());
    }

    if cases.contains(&"concurrent") {
        let answers = out["concurrent"]["answers"]
            .as_array()
            .expect("two answers");
        let (winners, losers): (Vec<&Value>, Vec<&Value>) =
            answers.iter().partition(|a| a["status"] == 200);
        assert_eq!((winners.len(), losers.len()), (1, 1), "{answers:#?}");
        let won_tx = assert_paid(winners[0], &w.payer.pubkey().to_string(), DEVNET);
        settled += 1;
        let loser = losers[0];
        assert_eq!(loser["status"], 402, "{loser:#}");
        let settle = &loser["paymentResponse"];
        if settle.is_object() {
            assert_eq!(settle["success"], false, "{loser:#}");
            assert_eq!(
                settle["errorReason"],
                generic::DUPLICATE_SETTLEMENT,
                "{loser:#}"
            );
            assert!(
                settle["transaction"] == "" || settle["transaction"] == won_tx,
                "{loser:#}"
            );
            assert_eq!(settle["network"], DEVNET, "{loser:#}");
        } else {
            assert_eq!(
                loser["paymentRequired"]["error"],
                generic::DUPLICATE_SETTLEMENT,
                "{loser:#}"
            );
        }
    }

    w.assert_settled(settled).await;
    w.app.stop().await;
}

#[tokio::test]
async fn sdk_v2_express_seller_and_fetch_buyer_pay_through_us_on_solana() {
    svm_sdk_v2_through_us(
        false,
        Db::postgres().await,
        &[
            "paid",
            "sellerBlockhash",
            "underpaid",
            "insufficient",
            "replay",
            "concurrent",
        ],
    )
    .await;
}

#[tokio::test]
async fn sdk_v2_express_seller_and_fetch_buyer_pay_through_us_on_solana_token_2022() {
    svm_sdk_v2_through_us(true, Db::sqlite(), &["paid", "underpaid", "replay"]).await;
}
