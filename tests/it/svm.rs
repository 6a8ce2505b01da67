//! Solana `exact` end to end on a real local chain (LiteSVM behind JSON-RPC, real SPL Token and
//! Token-2022 programs): payments by the official `@x402/svm` client settle, every rejection
//! reason is produced for real and sends nothing, and a transaction settles at most once.

use futures_util::future::join_all;
use serde_json::{Value, json};
use x402_facilitator::schemes::svm::keys::{LIGHTHOUSE_PROGRAM, Pubkey, SYSTEM_PROGRAM};

use crate::harness::app::{base_env, spawn_env};
use crate::harness::solana::{
    self, DEVNET, Ix, SolanaChain, TestKey, compute_limit, compute_price, memo, message, meta,
    requirements, signed_base64, transfer,
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

async fn setup_with(token2022: bool, extra_env: &[(&str, &str)]) -> Setup {
    let chain = SolanaChain::start().await;
    let fee_payer = TestKey::random();
    let payer = TestKey::random();
    let pay_to = TestKey::random().pubkey();
    chain.airdrop(&fee_payer.pubkey(), 10_000_000_000).await;
    let mint = chain.create_mint(token2022).await;
    chain.mint_to(&mint, &payer.pubkey(), 1_000_000).await;
    chain.create_ata(&mint, &pay_to).await;
    let db = Db::sqlite();
    let mut env = base_env(&db);
    env.push(("X402__NETWORKS__SOL__NETWORK".into(), DEVNET.into()));
    env.push(("X402__NETWORKS__SOL__RPC_URLS".into(), chain.url.clone()));
    env.push((
        "X402__NETWORKS__SOL__SIGNER_KEYS".into(),
        fee_payer.secret_base58(),
    ));
    env.push(("X402__NETWORKS__SOL__CONFIRM_POLL_MS".into(), "50".into()));
    for (k, v) in extra_env {
        env.push((k.to_string(), v.to_string()));
    }
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
    let mut ixs = s.standard();
    ixs.push(Ix {
        program: LIGHTHOUSE_PROGRAM,
        accounts: vec![],
        data: vec![],
    });
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
    let mut tx = x402_facilitator::schemes::svm::wire::VersionedTransaction::unsigned(msg);
    tx.sign(&s.payer.keypair).expect("signer");
    let mut sig = tx.signatures()[1];
    sig[10] ^= 0xff;
    tx.set_signature(1, sig).expect("slot");
    let body = solana::body(2, &tx.to_base64(), s.requirements());
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
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
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
            ("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "800"),
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
