//! Solana `exact` end to end on a real local chain (LiteSVM behind JSON-RPC, real SPL Token and
//! Token-2022 programs): payments by the official `@x402/svm` client settle, every rejection
//! reason is produced for real and sends nothing, and a transaction settles at most once.

use futures_util::future::join_all;
use serde_json::{Value, json};
use solana_signature::Signature;
use x402_facilitator::schemes::svm::keys::{LIGHTHOUSE_PROGRAM, SYSTEM_PROGRAM};

use crate::harness::app::{base_env, spawn_env};
use crate::harness::solana::{
    self, DEVNET, Ix, Pubkey, SolanaChain, TestKey, compute_limit, compute_price, memo, message,
    meta, requirements, signed, signed_base64, to_base64, transfer,
};
use crate::harness::{Db, TestApp};

const AMOUNT: u64 = 1_000;

struct Setup {
    chain: SolanaChain,
    app: TestApp,
    db: Db,
    fee_payer: TestKey,
    payer: TestKey,
    pay_to: Pubkey,
    mint: Pubkey,
    token2022: bool,
}

/// The settings an operator gives to serve the local chain (through `rpc_urls`) on `db`.
pub(crate) fn sol_env(
    db: &Db,
    rpc_urls: &str,
    fee_payer: &TestKey,
    extra_env: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = base_env(db);
    env.extend(solana::network_env(rpc_urls, fee_payer));
    for (k, v) in extra_env {
        env.push((k.to_string(), v.to_string()));
    }
    env
}

async fn setup_with(token2022: bool, extra_env: &[(&str, &str)]) -> Setup {
    let chain = SolanaChain::start().await;
    let url = chain.url.clone();
    setup_on(chain, token2022, Db::sqlite(), |_| url, extra_env).await
}

/// A funded setup on `chain`, served through the RPC URLs `urls` makes of the chain's URL.
async fn setup_on(
    chain: SolanaChain,
    token2022: bool,
    db: Db,
    urls: impl FnOnce(&str) -> String,
    extra_env: &[(&str, &str)],
) -> Setup {
    let fee_payer = TestKey::random();
    let payer = TestKey::random();
    let pay_to = TestKey::random().pubkey();
    chain.airdrop(&fee_payer.pubkey(), 10_000_000_000).await;
    let mint = chain.create_mint(token2022).await;
    chain.mint_to(&mint, &payer.pubkey(), 1_000_000).await;
    chain.create_ata(&mint, &pay_to).await;
    let env = sol_env(&db, &urls(&chain.url), &fee_payer, extra_env);
    let app = spawn_env(env, Vec::new()).await;
    Setup {
        chain,
        app,
        db,
        fee_payer,
        payer,
        pay_to,
        mint,
        token2022,
    }
}

async fn setup() -> Setup {
    setup_with(false, &[]).await
}

impl Setup {
    fn requirements(&self) -> Value {
        requirements(&self.mint, &self.pay_to, AMOUNT, &self.fee_payer.pubkey())
    }

    fn token_program(&self) -> Pubkey {
        if self.token2022 {
            x402_facilitator::schemes::svm::keys::TOKEN_2022_PROGRAM
        } else {
            x402_facilitator::schemes::svm::keys::TOKEN_PROGRAM
        }
    }

    /// The payer's token account (the transfer's source).
    fn source(&self) -> Pubkey {
        x402_facilitator::schemes::svm::keys::associated_token_address(
            &self.payer.pubkey(),
            &self.mint,
            &self.token_program(),
        )
    }

    /// A Lighthouse AssertTokenAccount guard (what wallets inject) on `target`.
    fn guard_on(&self, target: Pubkey) -> Ix {
        let mut data = vec![9, 0, 2];
        data.extend_from_slice(&0u64.to_le_bytes());
        data.push(4); // Amount >= 0
        Ix {
            program: LIGHTHOUSE_PROGRAM,
            accounts: vec![meta(target, false, false)],
            data,
        }
    }

    /// What the chain was shown so far (`litesvm_seen`).
    async fn seen(&self) -> Value {
        self.chain.control("litesvm_seen").await
    }

    /// The instructions the official client sends, for tampering with one at a time.
    fn standard(&self) -> Vec<Ix> {
        vec![
            compute_limit(20_000),
            compute_price(1),
            transfer(
                self.token2022,
                self.mint,
                self.payer.pubkey(),
                self.pay_to,
                AMOUNT,
            ),
            memo("0123456789abcdef0123456789abcdef", &[]),
        ]
    }

    async fn body_of(&self, ixs: &[Ix], signers: &[&TestKey]) -> Value {
        let msg = message(
            self.fee_payer.pubkey(),
            self.chain.blockhash().await,
            ixs,
            None,
        );
        let keys: Vec<_> = signers.iter().map(|k| &k.keypair).collect();
        solana::body(2, &signed_base64(msg, &keys), self.requirements())
    }

    async fn balances(&self) -> (u64, u64, u64) {
        (
            self.chain
                .token_balance(&self.mint, &self.payer.pubkey(), self.token2022)
                .await,
            self.chain
                .token_balance(&self.mint, &self.pay_to, self.token2022)
                .await,
            self.chain.lamports(&self.fee_payer.pubkey()).await,
        )
    }

    /// Verify and settle both reject with `reason`, and nothing was sent: no tokens moved and
    /// the fee payer paid no fee.
    async fn rejected(&self, body: &Value, reason: &str) {
        let before = self.balances().await;
        let verdict = self.app.verify(body).await;
        assert_eq!(verdict["isValid"], false, "{verdict}");
        assert_eq!(verdict["invalidReason"], reason, "verify: {verdict}");
        let settled = self.app.settle(body).await;
        assert_eq!(settled["success"], false, "{settled}");
        assert_eq!(settled["errorReason"], reason, "settle: {settled}");
        assert_eq!(settled["transaction"], "");
        assert_eq!(self.balances().await, before, "nothing was sent");
    }
}

async fn official_client_payment_settles(token2022: bool, x402_version: u8) {
    let s = setup_with(token2022, &[]).await;
    let body = solana::sdk_sign(&s.chain, &s.payer, x402_version, s.requirements()).await;
    let verdict = s.app.verify(&body).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    assert_eq!(
        verdict["payer"],
        s.payer.pubkey().to_string(),
        "payer is the token authority"
    );
    let (_, _, fee_payer_before) = s.balances().await;
    let settled = s.app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    let network = if x402_version == 1 {
        "solana-devnet"
    } else {
        DEVNET
    };
    assert_eq!(settled["network"], network);
    let signature = settled["transaction"]
        .as_str()
        .expect("signature")
        .to_string();
    assert!(
        bs58::decode(&signature)
            .into_vec()
            .is_ok_and(|b| b.len() == 64),
        "{settled}"
    );
    let (payer, pay_to, fee_payer_after) = s.balances().await;
    assert_eq!((payer, pay_to), (1_000_000 - AMOUNT, AMOUNT));
    assert!(
        fee_payer_after < fee_payer_before,
        "the facilitator paid the fee"
    );
    assert_eq!(
        s.db.count(&format!(
            "SELECT count(*) FROM settlements WHERE state = 'settled' AND tx_id = '{signature}'"
        ))
        .await,
        1
    );
    let again = s.app.settle(&body).await;
    assert_eq!(again["errorReason"], "duplicate_settlement", "{again}");
    assert_eq!(
        s.app.verify(&body).await["invalidReason"],
        "duplicate_settlement"
    );
    assert_eq!(
        s.chain.token_balance(&s.mint, &s.pay_to, token2022).await,
        AMOUNT,
        "paid once"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn official_client_spl_token_payment_verifies_and_settles() {
    official_client_payment_settles(false, 2).await;
}

#[tokio::test]
async fn official_client_token_2022_payment_verifies_and_settles() {
    official_client_payment_settles(true, 2).await;
}

#[tokio::test]
async fn official_client_v1_payment_settles() {
    official_client_payment_settles(false, 1).await;
}

#[tokio::test]
async fn supported_advertises_the_fee_payer() {
    let s = setup().await;
    let (_, supported) = s.app.get("/supported").await;
    let fee_payer = s.fee_payer.pubkey().to_string();
    let kinds = supported["kinds"].as_array().expect("kinds");
    assert!(kinds.contains(&json!({ "x402Version": 2, "scheme": "exact", "network": DEVNET, "extra": { "feePayer": fee_payer } })), "{supported}");
    assert!(kinds.contains(&json!({ "x402Version": 1, "scheme": "exact", "network": "solana-devnet", "extra": { "feePayer": fee_payer } })), "{supported}");
    assert_eq!(supported["signers"]["solana:*"], json!([fee_payer]));
    s.app.stop().await;
}

#[tokio::test]
async fn a_rust_built_standard_payment_settles() {
    let s = setup().await;
    let body = s.body_of(&s.standard(), &[&s.payer]).await;
    assert_eq!(s.app.settle(&body).await["success"], true);
    assert_eq!(s.balances().await.1, AMOUNT);
    s.app.stop().await;
}

#[tokio::test]
async fn fee_payer_as_transfer_authority() {
    let s = setup().await;
    s.chain
        .mint_to(&s.mint, &s.fee_payer.pubkey(), 10_000)
        .await;
    let ixs = vec![
        compute_limit(20_000),
        compute_price(1),
        transfer(false, s.mint, s.fee_payer.pubkey(), s.pay_to, AMOUNT),
    ];
    let msg = message(s.fee_payer.pubkey(), s.chain.blockhash().await, &ixs, None);
    let body = solana::body(2, &signed_base64(msg, &[]), s.requirements());
    s.rejected(
        &body,
        "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds",
    )
    .await;
}

#[tokio::test]
async fn fee_payer_in_an_instruction_account_list() {
    let s = setup().await;
    let mut ixs = s.standard();
    ixs[3] = Ix {
        program: ixs[3].program,
        accounts: vec![meta(s.fee_payer.pubkey(), false, true)],
        data: b"x".to_vec(),
    };
    let body = s.body_of(&ixs, &[&s.payer]).await;
    s.rejected(
        &body,
        "invalid_exact_svm_payload_transaction_fee_payer_included_in_instruction_accounts",
    )
    .await;
}

#[tokio::test]
async fn an_extra_signer() {
    let s = setup().await;
    let stranger = TestKey::random();
    let mut ixs = s.standard();
    ixs[3] = memo("hello", &[stranger.pubkey()]);
    let body = s.body_of(&ixs, &[&s.payer, &stranger]).await;
    s.rejected(&body, "invalid_exact_svm_payload_excessive_signers")
        .await;
}

#[tokio::test]
async fn a_message_using_a_lookup_table() {
    let s = setup().await;
    let msg = message(
        s.fee_payer.pubkey(),
        s.chain.blockhash().await,
        &s.standard(),
        Some(TestKey::random().pubkey()),
    );
    let body = solana::body(
        2,
        &signed_base64(msg, &[&s.payer.keypair]),
        s.requirements(),
    );
    let verdict = s.app.verify(&body).await;
    assert_eq!(
        verdict["invalidReason"], "invalid_exact_svm_payload_transaction",
        "{verdict}"
    );
    assert!(
        verdict["invalidMessage"]
            .as_str()
            .unwrap_or("")
            .contains("lookup"),
        "{verdict}"
    );
    s.rejected(&body, "invalid_exact_svm_payload_transaction")
        .await;
}

#[tokio::test]
async fn compute_price_too_high() {
    let s = setup().await;
    let mut ixs = s.standard();
    ixs[1] = compute_price(5_000_001);
    let body = s.body_of(&ixs, &[&s.payer]).await;
    s.rejected(
        &body,
        "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high",
    )
    .await;
}

#[tokio::test]
async fn compute_limit_too_high() {
    let s = setup().await;
    let mut ixs = s.standard();
    ixs[0] = compute_limit(1_400_000);
    let body = s.body_of(&ixs, &[&s.payer]).await;
    s.rejected(
        &body,
        "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction_too_high",
    )
    .await;
}

#[tokio::test]
async fn missing_compute_instructions_or_transfer() {
    let s = setup().await;
    let mut ixs = s.standard();
    ixs.swap(0, 1);
    s.rejected(
        &s.body_of(&ixs, &[&s.payer]).await,
        "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction",
    )
    .await;
    let mut ixs = s.standard();
    ixs[1] = compute_limit(20_000);
    s.rejected(
        &s.body_of(&ixs, &[&s.payer]).await,
        "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction",
    )
    .await;
    let mut ixs = s.standard();
    ixs[2] = memo("no transfer", &[s.payer.pubkey()]);
    s.rejected(
        &s.body_of(&ixs, &[&s.payer]).await,
        "invalid_exact_svm_payload_no_transfer_instruction",
    )
    .await;
    let two = &s.standard()[..2];
    s.rejected(
        &s.body_of(two, &[]).await,
        "invalid_exact_svm_payload_transaction_instructions_length",
    )
    .await;
}

#[tokio::test]
async fn wrong_mint() {
    let s = setup().await;
    let other = s.chain.create_mint(false).await;
    s.chain.mint_to(&other, &s.payer.pubkey(), 1_000_000).await;
    s.chain.create_ata(&other, &s.pay_to).await;
    let mut ixs = s.standard();
    ixs[2] = transfer(false, other, s.payer.pubkey(), s.pay_to, AMOUNT);
    s.rejected(
        &s.body_of(&ixs, &[&s.payer]).await,
        "invalid_exact_svm_payload_mint_mismatch",
    )
    .await;
}

#[tokio::test]
async fn wrong_destination_ata() {
    let s = setup().await;
    let elsewhere = TestKey::random().pubkey();
    s.chain.create_ata(&s.mint, &elsewhere).await;
    let mut ixs = s.standard();
    ixs[2] = transfer(false, s.mint, s.payer.pubkey(), elsewhere, AMOUNT);
    s.rejected(
        &s.body_of(&ixs, &[&s.payer]).await,
        "invalid_exact_svm_payload_recipient_mismatch",
    )
    .await;
}

#[tokio::test]
async fn overpayment_and_underpayment() {
    let s = setup().await;
    for amount in [AMOUNT + 1, AMOUNT - 1] {
        let mut ixs = s.standard();
        ixs[2] = transfer(false, s.mint, s.payer.pubkey(), s.pay_to, amount);
        s.rejected(
            &s.body_of(&ixs, &[&s.payer]).await,
            "invalid_exact_svm_payload_amount_mismatch",
        )
        .await;
    }
}

#[tokio::test]
async fn unknown_extra_instruction() {
    let s = setup().await;
    let mut ixs = s.standard();
    ixs[3] = Ix {
        program: SYSTEM_PROGRAM,
        accounts: vec![meta(s.payer.pubkey(), true, true)],
        data: vec![2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
    };
    s.rejected(
        &s.body_of(&ixs, &[&s.payer]).await,
        "invalid_exact_svm_payload_unknown_fourth_instruction",
    )
    .await;
    // Creating the payee's token account (upstream's optional step) is refused too, even funded
    // by the payer: a rent the fee payer must never be made to fund (review M3, docs/solana.md §2).
    let mut ixs = s.standard();
    ixs[3] = Ix {
        program: x402_facilitator::schemes::svm::keys::ASSOCIATED_TOKEN_PROGRAM,
        accounts: vec![
            meta(s.payer.pubkey(), true, true),
            meta(
                solana::ata(&s.pay_to, &s.mint, &s.token_program()),
                false,
                true,
            ),
            meta(s.pay_to, false, false),
            meta(s.mint, false, false),
            meta(SYSTEM_PROGRAM, false, false),
            meta(s.token_program(), false, false),
        ],
        data: vec![1],
    };
    s.rejected(
        &s.body_of(&ixs, &[&s.payer]).await,
        "invalid_exact_svm_payload_unknown_fourth_instruction",
    )
    .await;
    let mut ixs = s.standard();
    ixs.push(s.guard_on(s.source()));
    ixs.push(Ix {
        program: SYSTEM_PROGRAM,
        accounts: vec![],
        data: vec![],
    });
    s.rejected(
        &s.body_of(&ixs, &[&s.payer]).await,
        "invalid_exact_svm_payload_unknown_sixth_instruction",
    )
    .await;
}

#[tokio::test]
async fn tampered_client_signature() {
    let s = setup().await;
    let msg = message(
        s.fee_payer.pubkey(),
        s.chain.blockhash().await,
        &s.standard(),
        None,
    );
    let mut tx = signed(msg, &[&s.payer.keypair]);
    let mut sig: [u8; 64] = tx.signatures[1].into();
    sig[10] ^= 0xff;
    tx.signatures[1] = Signature::from(sig);
    let body = solana::body(2, &to_base64(&tx), s.requirements());
    s.rejected(&body, "invalid_exact_svm_payload_signature_invalid")
        .await;
}

#[tokio::test]
async fn fee_payer_rules_in_requirements_and_message() {
    let s = setup().await;
    let body = s.body_of(&s.standard(), &[&s.payer]).await;
    let mut missing = body.clone();
    missing["paymentRequirements"]["extra"] = json!({});
    missing["paymentPayload"]["accepted"]["extra"] = json!({});
    s.rejected(&missing, "invalid_exact_svm_payload_missing_fee_payer")
        .await;
    let mut foreign = body.clone();
    let stranger = json!({ "feePayer": TestKey::random().pubkey().to_string() });
    foreign["paymentRequirements"]["extra"] = stranger.clone();
    foreign["paymentPayload"]["accepted"]["extra"] = stranger;
    s.rejected(
        &foreign,
        "invalid_exact_svm_fee_payer_not_managed_by_facilitator",
    )
    .await;
    // A message paid by someone else than extra.feePayer.
    let other_payer = TestKey::random();
    let msg = message(
        other_payer.pubkey(),
        s.chain.blockhash().await,
        &s.standard(),
        None,
    );
    let body = solana::body(
        2,
        &signed_base64(msg, &[&s.payer.keypair]),
        s.requirements(),
    );
    s.rejected(&body, "invalid_exact_svm_fee_payer_mismatch")
        .await;
    let mut garbage = s.body_of(&s.standard(), &[&s.payer]).await;
    garbage["paymentPayload"]["payload"]["transaction"] = json!("AAAA!!");
    s.rejected(
        &garbage,
        "invalid_exact_svm_payload_transaction_could_not_be_decoded",
    )
    .await;
}

#[tokio::test]
async fn memo_rules_when_the_seller_sets_one() {
    let s = setup().await;
    let with_memo = |mut r: Value, m: &str| {
        r["extra"]["memo"] = json!(m);
        r
    };
    let msg = message(
        s.fee_payer.pubkey(),
        s.chain.blockhash().await,
        &s.standard(),
        None,
    );
    let tx = signed_base64(msg, &[&s.payer.keypair]);
    s.rejected(
        &solana::body(2, &tx, with_memo(s.requirements(), "order-42")),
        "invalid_exact_svm_payload_memo_mismatch",
    )
    .await;
    let no_memo = &s.standard()[..3];
    let msg = message(
        s.fee_payer.pubkey(),
        s.chain.blockhash().await,
        no_memo,
        None,
    );
    let tx = signed_base64(msg, &[&s.payer.keypair]);
    s.rejected(
        &solana::body(2, &tx, with_memo(s.requirements(), "order-42")),
        "invalid_exact_svm_payload_memo_count",
    )
    .await;
    let mut ixs = s.standard();
    ixs[3] = memo("order-42", &[]);
    let msg = message(s.fee_payer.pubkey(), s.chain.blockhash().await, &ixs, None);
    let tx = signed_base64(msg, &[&s.payer.keypair]);
    let ok = s
        .app
        .verify(&solana::body(
            2,
            &tx,
            with_memo(s.requirements(), "order-42"),
        ))
        .await;
    assert_eq!(ok["isValid"], true, "{ok}");
    s.app.stop().await;
}

#[tokio::test]
async fn scheme_network_and_simulation_failures() {
    let s = setup().await;
    let body = s.body_of(&s.standard(), &[&s.payer]).await;
    let mut scheme = body.clone();
    scheme["paymentPayload"]["accepted"]["scheme"] = json!("upto");
    s.rejected(&scheme, "invalid_exact_svm_unsupported_scheme")
        .await;
    let mut network = body.clone();
    network["paymentPayload"]["accepted"]["network"] =
        json!("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp");
    s.rejected(&network, "invalid_exact_svm_network_mismatch")
        .await;
    // The payer has no tokens of a fresh mint: only the simulation can tell.
    let poor = TestKey::random();
    s.chain.create_ata(&s.mint, &poor.pubkey()).await;
    let mut ixs = s.standard();
    ixs[2] = transfer(false, s.mint, poor.pubkey(), s.pay_to, AMOUNT);
    let body = s.body_of(&ixs, &[&poor]).await;
    s.rejected(&body, "invalid_exact_svm_transaction_simulation_failed")
        .await;
}

#[tokio::test]
async fn the_same_transaction_settled_concurrently_moves_money_once() {
    let s = setup().await;
    let body = solana::sdk_sign(&s.chain, &s.payer, 2, s.requirements()).await;
    let answers = join_all((0..10).map(|_| s.app.settle(&body))).await;
    let wins = answers.iter().filter(|a| a["success"] == true).count();
    assert_eq!(wins, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| a["success"] == true || a["errorReason"] == "duplicate_settlement"),
        "{answers:?}"
    );
    assert_eq!(s.balances().await.1, AMOUNT);
    assert_eq!(s.db.count("SELECT count(*) FROM settlements").await, 1);
    s.app.stop().await;
}

#[tokio::test]
async fn an_expired_blockhash_is_a_clear_failure_not_a_hang() {
    let s = setup().await;
    let body = s.body_of(&s.standard(), &[&s.payer]).await;
    s.chain.control("litesvm_expireBlockhash").await;
    let settled = s.app.settle(&body).await;
    assert_eq!(settled["success"], false, "{settled}");
    assert_eq!(
        settled["errorReason"], "invalid_exact_svm_transaction_failed",
        "{settled}"
    );
    assert!(
        settled["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("blockhash"),
        "{settled}"
    );
    assert_eq!(s.balances().await.1, 0);
    s.app.stop().await;
}

#[tokio::test]
async fn a_dropped_transaction_fails_once_its_blockhash_expires() {
    let s = setup_with(false, &[("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "4000")]).await;
    let body = s.body_of(&s.standard(), &[&s.payer]).await;
    s.chain.control("litesvm_pause").await;
    let settle = s.app.settle(&body);
    let drop_it = async {
        // Once the chain holds it (not after a fixed time: a loaded machine may take longer).
        for _ in 0..200 {
            let status = s.chain.control("litesvm_status").await;
            if status["pending"].as_array().is_some_and(|p| !p.is_empty()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        s.chain.control("litesvm_dropPending").await;
        s.chain.control("litesvm_expireBlockhash").await;
    };
    let (settled, ()) = tokio::join!(settle, drop_it);
    s.chain.control("litesvm_resume").await;
    assert_eq!(
        settled["errorReason"], "invalid_exact_svm_transaction_failed",
        "{settled}"
    );
    assert!(
        settled["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("expired"),
        "{settled}"
    );
    assert!(
        settled["transaction"].as_str().map(str::len).unwrap_or(0) > 80,
        "names the signature: {settled}"
    );
    assert_eq!(s.balances().await.1, 0);
    s.app.stop().await;
}

#[tokio::test]
async fn a_slow_cluster_answers_settlement_pending_then_the_retry_confirms() {
    let s = setup_with(
        false,
        &[
            ("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "2000"),
            ("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000"),
        ],
    )
    .await;
    let body = solana::sdk_sign(&s.chain, &s.payer, 2, s.requirements()).await;
    s.chain.control("litesvm_pause").await;
    let first = s.app.settle(&body).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    let signature = first["transaction"]
        .as_str()
        .expect("signature")
        .to_string();
    s.chain.control("litesvm_resume").await;
    let second = s.app.settle(&body).await;
    assert_eq!(second["success"], true, "{second}");
    assert_eq!(
        second["transaction"],
        signature.as_str(),
        "the recorded transaction, not a new one"
    );
    assert_eq!(s.balances().await.1, AMOUNT);
    s.app.stop().await;
}

#[tokio::test]
async fn priority_fee_budget_bounds_price_times_limit() {
    let s = setup().await;
    // 5 lamports/CU is allowed per unit, but at 100 000 CU it would cost the fee payer 0.0005 SOL.
    let mut ixs = s.standard();
    ixs[0] = compute_limit(100_000);
    ixs[1] = compute_price(5_000_000);
    s.rejected(
        &s.body_of(&ixs, &[&s.payer]).await,
        "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high",
    )
    .await;
}

// --- fee griefing closed (issue #13, review H1, M1, L1–L3) ---

/// Whether `signature` (base58) was ever simulated or sent to the chain.
fn shown(seen: &Value, signature: &str) -> bool {
    ["simulations", "sends"].iter().any(|list| {
        seen[*list].as_array().into_iter().flatten().any(|e| {
            e["signatures"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s == signature)
        })
    })
}

#[tokio::test]
async fn a_lighthouse_clock_assertion_is_refused_before_the_chain_sees_it() {
    let s = setup().await;
    // AssertSysvarClock { Slot < now + 2 }: no account, passes simulation at `confirmed`, fails
    // a slot or two later when it lands, and the fee payer pays for a transfer that never
    // happened (review H1). It must not even be simulated.
    let slot = s
        .chain
        .rpc("getSlot", json!([]))
        .await
        .as_u64()
        .expect("slot");
    let mut data = vec![15, 0, 0];
    data.extend_from_slice(&(slot + 2).to_le_bytes());
    data.push(3);
    let mut ixs = s.standard();
    ixs.push(Ix {
        program: LIGHTHOUSE_PROGRAM,
        accounts: vec![],
        data,
    });
    let body = s.body_of(&ixs, &[&s.payer]).await;
    let verdict = s.app.verify(&body).await;
    assert_eq!(
        verdict["invalidReason"], "invalid_exact_svm_payload_unknown_fifth_instruction",
        "{verdict}"
    );
    assert!(
        verdict["invalidMessage"]
            .as_str()
            .unwrap_or("")
            .contains("AssertSysvarClock"),
        "{verdict}"
    );
    s.rejected(&body, "invalid_exact_svm_payload_unknown_fifth_instruction")
        .await;
    let client = solana::wire_signature(&body, 1);
    assert!(
        !shown(&s.seen().await, &client),
        "never simulated, never sent"
    );

    // The Clock as the target of an account assertion is the same attack; so is any account
    // third parties change (the seller's destination, the mint) or outside the transfer, and
    // our fee payer stays in no instruction at all.
    let clock: Pubkey = "SysvarC1ock11111111111111111111111111111111"
        .parse()
        .expect("clock");
    for (target, reason) in [
        (clock, "invalid_exact_svm_payload_unknown_fifth_instruction"),
        (
            TestKey::random().pubkey(),
            "invalid_exact_svm_payload_unknown_fifth_instruction",
        ),
        (
            solana::ata(&s.pay_to, &s.mint, &s.token_program()),
            "invalid_exact_svm_payload_unknown_fifth_instruction",
        ),
        (
            s.mint,
            "invalid_exact_svm_payload_unknown_fifth_instruction",
        ),
        (
            s.fee_payer.pubkey(),
            "invalid_exact_svm_payload_transaction_fee_payer_included_in_instruction_accounts",
        ),
    ] {
        let mut ixs = s.standard();
        ixs.push(s.guard_on(target));
        s.rejected(&s.body_of(&ixs, &[&s.payer]).await, reason)
            .await;
    }
    // A guard on the transfer's own account is what wallets send: it passes our checks and goes
    // on to the simulation (which fails here: LiteSVM has no Lighthouse program).
    let mut ixs = s.standard();
    ixs.push(s.guard_on(s.source()));
    let verdict = s.app.verify(&s.body_of(&ixs, &[&s.payer]).await).await;
    assert_eq!(
        verdict["invalidReason"], "invalid_exact_svm_transaction_simulation_failed",
        "{verdict}"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn lighthouse_can_be_switched_off() {
    let s = setup_with(false, &[("X402__NETWORKS__SOL__LIGHTHOUSE", "off")]).await;
    let mut ixs = s.standard();
    ixs.push(s.guard_on(s.source()));
    s.rejected(
        &s.body_of(&ixs, &[&s.payer]).await,
        "invalid_exact_svm_payload_unknown_fifth_instruction",
    )
    .await;
}

/// A payment of `s`'s shape in `mint` (Token-2022), its payer funded and the payee's account
/// made.
async fn body_in(s: &Setup, mint: Pubkey) -> Value {
    s.chain.mint_to(&mint, &s.payer.pubkey(), 1_000_000).await;
    s.chain.create_ata(&mint, &s.pay_to).await;
    let mut ixs = s.standard();
    ixs[2] = transfer(true, mint, s.payer.pubkey(), s.pay_to, AMOUNT);
    let msg = message(s.fee_payer.pubkey(), s.chain.blockhash().await, &ixs, None);
    let mut reqs = s.requirements();
    reqs["asset"] = json!(mint.to_string());
    solana::body(2, &signed_base64(msg, &[&s.payer.keypair]), reqs)
}

#[tokio::test]
async fn token_2022_mints_with_hooks_fees_or_no_transfers_are_refused() {
    use solana::ExtensionInit::*;
    let s = setup_with(true, &[]).await;
    let hook_program = TestKey::random().pubkey();
    for (extension, says) in [
        (
            TransferHook {
                program: Some(hook_program),
                updatable: false,
            },
            "transfer hook",
        ),
        (
            TransferHook {
                program: None,
                updatable: true,
            },
            "can set a transfer hook",
        ),
        (TransferFee { basis_points: 100 }, "transfer fee"),
        (NonTransferable, "non-transferable"),
        (Pausable, "pausable"),
    ] {
        let mint = s.chain.create_token_2022_mint(&[extension]).await;
        let body = body_in(&s, mint).await;
        let before = s.seen().await;
        let verdict = s.app.verify(&body).await;
        assert_eq!(
            verdict["invalidReason"], "invalid_exact_svm_payload_mint_extension_not_allowed",
            "{verdict}"
        );
        assert!(
            verdict["invalidMessage"]
                .as_str()
                .unwrap_or("")
                .contains(says),
            "{says}: {verdict}"
        );
        let settled = s.app.settle(&body).await;
        assert_eq!(
            settled["errorReason"], "invalid_exact_svm_payload_mint_extension_not_allowed",
            "{settled}"
        );
        assert_eq!(settled["transaction"], "");
        let after = s.seen().await;
        assert_eq!(before["simulations"], after["simulations"], "not simulated");
        assert_eq!(before["sends"], after["sends"], "not sent");
    }
    // A zero transfer fee (as PYUSD carries) changes nothing: that mint goes on to the
    // simulation. (A hook extension always names a program or an authority that can set one.)
    for extension in [TransferFee { basis_points: 0 }] {
        let mint = s.chain.create_token_2022_mint(&[extension]).await;
        let verdict = s.app.verify(&body_in(&s, mint).await).await;
        assert_ne!(
            verdict["invalidReason"], "invalid_exact_svm_payload_mint_extension_not_allowed",
            "{verdict}"
        );
    }
    s.app.stop().await;
}

#[tokio::test]
async fn an_allowed_extension_is_sponsored() {
    let s = setup_with(
        true,
        &[("X402__NETWORKS__SOL__ALLOW_MINT_EXTENSIONS", "transfer_fee")],
    )
    .await;
    let mint = s
        .chain
        .create_token_2022_mint(&[solana::ExtensionInit::TransferFee { basis_points: 100 }])
        .await;
    let verdict = s.app.verify(&body_in(&s, mint).await).await;
    assert_ne!(
        verdict["invalidReason"], "invalid_exact_svm_payload_mint_extension_not_allowed",
        "{verdict}"
    );
    s.app.stop().await;
}

/// A mint named before it exists is refused, and accepted once it does: "no such account" is
/// not what the mint cache keeps for a TTL (only what an account says is).
#[tokio::test]
async fn a_mint_named_before_it_exists_is_accepted_once_it_does() {
    let s = setup_with(true, &[]).await;
    let key = TestKey::random();
    let mint = key.pubkey();
    let mut ixs = s.standard();
    ixs[2] = transfer(true, mint, s.payer.pubkey(), s.pay_to, AMOUNT);
    let msg = message(s.fee_payer.pubkey(), s.chain.blockhash().await, &ixs, None);
    let mut reqs = s.requirements();
    reqs["asset"] = json!(mint.to_string());
    let body = solana::body(2, &signed_base64(msg, &[&s.payer.keypair]), reqs);
    let verdict = s.app.verify(&body).await;
    assert_eq!(
        verdict["invalidReason"], "invalid_exact_svm_payload_mint_mismatch",
        "{verdict}"
    );
    assert!(
        verdict["invalidMessage"]
            .as_str()
            .unwrap_or("")
            .contains("does not exist"),
        "{verdict}"
    );
    s.chain.create_token_2022_mint_at(&key, &[]).await;
    s.chain.mint_to(&mint, &s.payer.pubkey(), 1_000_000).await;
    s.chain.create_ata(&mint, &s.pay_to).await;
    let verdict = s.app.verify(&body).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    s.app.stop().await;
}

#[tokio::test]
async fn a_zero_amount_and_paying_oneself_are_refused() {
    let s = setup().await;
    // The attacker is seller and buyer: 0 units to themselves, fees on us (review M1).
    let mut ixs = s.standard();
    ixs[2] = transfer(false, s.mint, s.payer.pubkey(), s.pay_to, 0);
    let msg = message(s.fee_payer.pubkey(), s.chain.blockhash().await, &ixs, None);
    let mut reqs = s.requirements();
    reqs["amount"] = json!("0");
    let body = solana::body(2, &signed_base64(msg, &[&s.payer.keypair]), reqs);
    s.rejected(&body, "invalid_payment_requirements").await;

    // payTo is the payer: source and destination are the same account (review L3).
    let mut ixs = s.standard();
    ixs[2] = transfer(false, s.mint, s.payer.pubkey(), s.payer.pubkey(), AMOUNT);
    let msg = message(s.fee_payer.pubkey(), s.chain.blockhash().await, &ixs, None);
    let reqs = requirements(&s.mint, &s.payer.pubkey(), AMOUNT, &s.fee_payer.pubkey());
    let body = solana::body(2, &signed_base64(msg, &[&s.payer.keypair]), reqs);
    let verdict = s.app.verify(&body).await;
    assert!(
        verdict["invalidMessage"]
            .as_str()
            .unwrap_or("")
            .contains("cannot pay itself"),
        "{verdict}"
    );
    s.rejected(&body, "invalid_exact_svm_payload_recipient_mismatch")
        .await;
}

#[tokio::test]
async fn verify_never_shows_the_chain_our_signature() {
    let s = setup().await;
    let body = s.body_of(&s.standard(), &[&s.payer]).await;
    let verdict = s.app.verify(&body).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");
    // What our co-signature would be (Ed25519 is deterministic): the chain never saw it.
    let ours = solana::cosignature(&body, &s.fee_payer);
    let seen = s.seen().await;
    assert!(!shown(&seen, &ours), "{seen}");
    let simulations = seen["simulations"].as_array().expect("simulations");
    let last = simulations.last().expect("one simulation");
    assert_eq!(last["sigVerify"], false);
    assert_eq!(last["signatures"][0], "1".repeat(64), "slot 0 zeroed");
    assert!(seen["sends"].as_array().is_some_and(Vec::is_empty));
    let status = s
        .chain
        .rpc(
            "getSignatureStatuses",
            json!([[ours], { "searchTransactionHistory": true }]),
        )
        .await;
    assert!(status["value"][0].is_null(), "{status}");
    // The same /verify again at once is answered without a second simulation (review L2).
    for _ in 0..5 {
        assert_eq!(s.app.verify(&body).await["isValid"], true);
    }
    assert_eq!(
        s.seen().await["simulations"].as_array().map(Vec::len),
        Some(simulations.len())
    );
    // settle signs, sends once, and the signature is ours.
    let settled = s.app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["transaction"], ours.as_str());
    let sends = s.seen().await["sends"].clone();
    assert!(
        sends
            .as_array()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|e| e["skipPreflight"] == false)),
        "every send with preflight: {sends}"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_simulation_answer_without_err_is_a_fault_not_a_pass() {
    use crate::harness::proxy::{Mode, RpcProxy};
    let chain = SolanaChain::start().await;
    let proxy = RpcProxy::start(&chain.url).await;
    let url = proxy.url.clone();
    let s = setup_on(chain, false, Db::sqlite(), |_| url, &[]).await;
    let body = s.body_of(&s.standard(), &[&s.payer]).await;
    proxy.set(Mode::EmptyResult("simulateTransaction"));
    let (status, answer) = s.app.post("/verify", &body).await;
    assert!(status.is_server_error(), "{status} {answer}");
    assert_ne!(answer["isValid"], true, "{answer}");
    // An answer past the 1 MiB cap is no answer either (review L3), even one that says "ok".
    proxy.set(Mode::HugeAnswer("simulateTransaction"));
    let (status, answer) = s.app.post("/verify", &body).await;
    assert!(status.is_server_error(), "{status} {answer}");
    proxy.set(Mode::Forward);
    assert_eq!(s.app.verify(&body).await["isValid"], true);
    s.app.stop().await;
}

// --- "failed, no money moved" from final state only (#10 M2, M3, L4) ---

#[tokio::test]
async fn an_unknown_error_after_the_send_is_ambiguous_and_the_payment_settles() {
    use crate::harness::proxy::{Mode, RpcProxy};
    let chain = SolanaChain::start().await;
    let proxy = RpcProxy::start(&chain.url).await;
    let url = proxy.url.clone();
    let s = setup_on(chain, false, Db::sqlite(), |_| url, &[]).await;
    let body = s.body_of(&s.standard(), &[&s.payer]).await;
    // The node forwards the transaction, then answers -32603 (#10 M3): not a verdict.
    proxy.set(Mode::ErrorAfterSend);
    let settled = s.app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(s.balances().await.1, AMOUNT);
    assert_eq!(
        s.db.count("SELECT count(*) FROM settlements WHERE state = 'settled'")
            .await,
        1
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_lagging_node_never_calls_a_landing_transaction_expired() {
    use crate::harness::proxy::{Mode, RpcProxy};
    let chain = SolanaChain::start().await;
    // The first node (where the transaction is sent) forwards it, but answers every
    // status "unknown" and the blockhash "not valid", as a node behind the cluster or on
    // another fork does; the second node is the chain itself.
    let behind = RpcProxy::start(&chain.url).await;
    let urls = format!("{},{}", behind.url, chain.url);
    let s = setup_on(
        chain,
        false,
        Db::sqlite(),
        |_| urls,
        &[
            ("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "1500"),
            ("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000"),
        ],
    )
    .await;
    let body = s.body_of(&s.standard(), &[&s.payer]).await;
    behind.set(Mode::SolanaBehind);
    s.chain.control("litesvm_pause").await;
    let first = s.app.settle(&body).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    // While it waited, the same bytes went out again (review L4), each with preflight.
    let ours = first["transaction"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let sends = s.seen().await["sends"].clone();
    let again = sends
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["signatures"][0] == ours.as_str() && e["skipPreflight"] == false)
        .count();
    assert!(again >= 2, "sent, then sent again: {sends}");
    // It lands once the cluster resumes: the row was never called failed.
    s.chain.control("litesvm_resume").await;
    let second = s.app.settle(&body).await;
    assert_eq!(second["success"], true, "{second}");
    assert_eq!(second["transaction"], first["transaction"]);
    assert_eq!(s.balances().await.1, AMOUNT);
    s.app.stop().await;
}

#[tokio::test]
async fn a_settled_payment_is_watched_until_finalized() {
    let s = setup().await;
    let body = s.body_of(&s.standard(), &[&s.payer]).await;
    let settled = s.app.settle(&body).await;
    assert_eq!(settled["success"], true, "{settled}");
    let unfinal =
        "SELECT count(*) FROM settlements WHERE state = 'settled' AND finalized_at IS NULL";
    // `confirmed` is the answer; `finalized` (32 slots later here) ends the reorg watch.
    assert_eq!(s.db.count(unfinal).await, 1, "watched while only confirmed");
    s.chain
        .rpc("litesvm_advanceSlots", json!({ "slots": 40 }))
        .await;
    let mut left = 1;
    for _ in 0..50 {
        left = s.db.count(unfinal).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "final once the chain says finalized");
    s.app.stop().await;
}

// --- a seller memo pays once (issue #13) ---

#[tokio::test]
async fn a_seller_memo_pays_once_across_replicas() {
    use crate::harness::process::Proc;
    let chain = SolanaChain::start().await;
    let fee_payer = TestKey::random();
    let payer = TestKey::random();
    let pay_to = TestKey::random().pubkey();
    chain.airdrop(&fee_payer.pubkey(), 10_000_000_000).await;
    let mint = chain.create_mint(false).await;
    chain.mint_to(&mint, &payer.pubkey(), 1_000_000).await;
    chain.create_ata(&mint, &pay_to).await;
    let db = Db::postgres().await;
    let env = sol_env(&db, &chain.url, &fee_payer, &[]);
    let a = Proc::start(&env).await;
    let b = Proc::start(&env).await;
    let mut reqs = requirements(&mint, &pay_to, AMOUNT, &fee_payer.pubkey());
    reqs["extra"]["memo"] = json!("invoice-7");
    // Two different transactions (a buyer's retry signed anew) carrying the seller's memo.
    let blockhash = chain.blockhash().await;
    let body = |price: u64| {
        let ixs = vec![
            compute_limit(20_000),
            compute_price(price),
            transfer(false, mint, payer.pubkey(), pay_to, AMOUNT),
            memo("invoice-7", &[]),
        ];
        let msg = message(fee_payer.pubkey(), blockhash, &ixs, None);
        solana::body(2, &signed_base64(msg, &[&payer.keypair]), reqs.clone())
    };
    let (first, second) = (body(1), body(2));
    let http = reqwest::Client::new();
    let post = |base: String, path: &'static str, body: Value| {
        let http = http.clone();
        async move {
            http.post(format!("{base}{path}"))
                .json(&body)
                .send()
                .await
                .expect("answers")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    assert_eq!(
        post(a.base.clone(), "/verify", second.clone()).await["isValid"],
        true
    );
    let settled = post(a.base.clone(), "/settle", first.clone()).await;
    assert_eq!(settled["success"], true, "{settled}");
    let refused = post(b.base.clone(), "/settle", second.clone()).await;
    assert_eq!(refused["success"], false, "{refused}");
    assert_eq!(refused["errorReason"], "duplicate_settlement", "{refused}");
    assert_eq!(refused["transaction"], "");
    let verdict = post(b.base.clone(), "/verify", second.clone()).await;
    assert_eq!(
        verdict["invalidReason"], "duplicate_settlement",
        "{verdict}"
    );
    // Both at once on both replicas: still one payment.
    let (x, y) = tokio::join!(
        post(a.base.clone(), "/settle", second.clone()),
        post(b.base.clone(), "/settle", second.clone())
    );
    assert!(x["success"] != true && y["success"] != true, "{x} {y}");
    let paid = chain.token_balance(&mint, &pay_to, false).await;
    assert_eq!(paid, AMOUNT, "the invoice was paid once");
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE state <> 'failed'")
            .await,
        1
    );
    a.kill().await;
    b.kill().await;
}

#[tokio::test]
async fn only_allowed_assets_are_accepted() {
    let other = TestKey::random().pubkey();
    let allowed = other.to_string();
    let s = setup_with(false, &[("X402__NETWORKS__SOL__ASSETS", allowed.as_str())]).await;
    let body = s.body_of(&s.standard(), &[&s.payer]).await;
    s.rejected(&body, "invalid_payment_requirements").await;
}
