//! Permit2 payments (`exact` and `upto`) under the money path's hostile cases, the twins of
//! `money_path`'s EIP-3009 ones (docs/schemes.md, "Exactly once"): a stranger who front-runs our
//! transaction with a copy of its calldata paid the seller, so the row is settled with the
//! stranger's transaction; a payer who spends its own Permit2 nonce while ours is pending
//! (`invalidateUnorderedNonces`) cancelled the payment, so it fails with no money moved; an
//! `upto` transaction that reverts (the payer revoked its allowance first) is reported with its
//! hash and moves nothing.

use alloy::primitives::U256;
use alloy::sol_types::SolCall;
use serde_json::Value;

use crate::harness::chain::PERMIT2;
use crate::harness::permit2::{Kind, Permit2Payment};
use crate::harness::{self, Chain, Db, Options, spawn_with};

alloy::sol! {
    function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external;
    function approve(address spender, uint256 value) external returns (bool);
}

/// A slow chain (settles answer `settlement_pending` after 1 s), both schemes, and the
/// background reconciler out of the way so that what a request does is what the test sees.
fn options() -> Options {
    crate::permit2_exact::permit2_options()
        .env("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "1000")
        .env("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "600000")
}

/// Settles `body` with automine off: our transaction waits in the mempool, `race` (given our
/// transaction's hash) sends its own with a higher tip, and one block mines both.
async fn raced(
    chain: &Chain,
    app: &harness::TestApp,
    body: &Value,
    race: impl AsyncFnOnce(String) -> String,
) -> (String, String) {
    chain.set_automine(false).await;
    let first = app.settle(body).await;
    assert_eq!(first["errorReason"], "settlement_pending", "{first}");
    let ours = first["transaction"].as_str().expect("tx").to_string();
    let theirs = race(ours.clone()).await;
    chain.mine().await;
    chain.set_automine(true).await;
    assert!(chain.has_receipt(&theirs).await && chain.has_receipt(&ours).await);
    (ours, theirs)
}

const TIP: u128 = 50_000_000_000;

/// The exact proxy's `settle` may be called by anyone: a copy of our calldata sent first pays
/// the seller (the witness binds the payee). The retry is answered with the transaction that
/// paid, and the row says so.
#[tokio::test]
async fn a_front_run_permit2_payment_is_settled_not_failed() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, options()).await;
    let p = harness::funded_permit2(&chain, Kind::Exact, app.signers[0].address(), true).await;
    let body = p.body();
    let (ours, theirs) = raced(&chain, &app, &body, async |ours| {
        let calldata = chain.input_of(&ours).await;
        chain.send_with_tip(p.spender, calldata, TIP).await
    })
    .await;
    assert_ne!(ours, theirs);
    let retry = app.settle(&body).await;
    assert_eq!(retry["success"], true, "{retry}");
    assert_eq!(
        retry["transaction"],
        theirs.as_str(),
        "the transaction that paid"
    );
    assert_eq!(chain.transfers_from(chain.permit_token, p.from).await, 1);
    assert_eq!(chain.balance(chain.permit_token, p.pay_to).await, p.amount);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM settlements WHERE state = 'settled' AND tx_id = '{theirs}'"
        ))
        .await,
        1
    );
    let replay = app.settle(&body).await;
    assert_eq!(replay["errorReason"], "permit2_invalid_nonce", "{replay}");
    app.stop().await;
}

/// The payer spends the pending payment's nonce itself (`invalidateUnorderedNonces`): the
/// payment can never pay, so it fails (`permit2_invalid_nonce`) with no money moved, for
/// `exact` and for `upto`; a Transfer between the same two parties of another payment does
/// not make it look paid.
#[tokio::test]
async fn a_permit2_nonce_the_payer_invalidates_fails_the_payment_with_no_money_moved() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, options()).await;
    let facilitator = app.signers[0].address();
    for kind in [Kind::Exact, Kind::Upto] {
        let p = harness::funded_permit2(&chain, kind, facilitator, true).await;
        // An earlier payment of the same amount between the same two parties: its Transfer
        // is no proof that this one was paid.
        let mut earlier = Permit2Payment::new(&chain, kind, facilitator);
        earlier.payer = p.payer.clone();
        earlier.from = p.from;
        earlier.pay_to = p.pay_to;
        earlier.to = p.to;
        earlier.extra = p.extra.clone();
        let done = app.settle(&earlier.settle_body(p.amount)).await;
        assert_eq!(done["success"], true, "{done}");

        let body = p.settle_body(p.amount);
        let (ours, cancel) = raced(&chain, &app, &body, async |_| {
            let nonce = p.nonce;
            let bit = U256::from(1u8) << (nonce & U256::from(0xffu8)).to::<usize>();
            let data = invalidateUnorderedNoncesCall {
                wordPos: nonce >> 8,
                mask: bit,
            }
            .abi_encode();
            chain.send_as_with_tip(&p.payer, PERMIT2, data, TIP).await
        })
        .await;
        assert!(chain.permit2_nonce_used(p.from, p.nonce).await);
        let retry = app.settle(&body).await;
        assert_eq!(retry["success"], false, "{kind:?}: {retry}");
        assert_eq!(
            retry["errorReason"], "permit2_invalid_nonce",
            "{kind:?}: {retry}"
        );
        assert_ne!(retry["transaction"], cancel.as_str());
        assert_eq!(
            chain.transfers_from(chain.permit_token, p.from).await,
            1,
            "{kind:?}: only the earlier payment moved money"
        );
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM settlements WHERE state = 'failed' \
                 AND error_reason = 'permit2_invalid_nonce' AND tx_id = '{ours}'"
            ))
            .await,
            1,
            "{kind:?}"
        );
    }
    app.stop().await;
}

/// An `upto` transaction that reverts on chain — the payer revoked its Permit2 allowance with a
/// higher tip — moves nothing, leaves the nonce unused, and is reported with its hash and
/// `upto`'s own reason (`invalid_upto_evm_transaction_failed`, as 2.27 has it).
#[tokio::test]
async fn an_upto_transaction_that_reverts_is_reported_with_its_hash() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = spawn_with(&chain, &db, options()).await;
    let p = harness::funded_permit2(&chain, Kind::Upto, app.signers[0].address(), true).await;
    let body = p.settle_body(U256::from(1500u64));
    let (ours, _) = raced(&chain, &app, &body, async |_| {
        let data = approveCall {
            spender: PERMIT2,
            value: U256::ZERO,
        }
        .abi_encode();
        chain
            .send_as_with_tip(&p.payer, chain.permit_token, data, TIP)
            .await
    })
    .await;
    let receipt = chain
        .rpc("eth_getTransactionReceipt", (ours.clone(),))
        .await;
    assert_eq!(receipt["status"], "0x0", "ours reverted: {receipt}");
    let retry = app.settle(&body).await;
    assert_eq!(retry["success"], false, "{retry}");
    assert_eq!(
        retry["errorReason"], "invalid_upto_evm_transaction_failed",
        "{retry}"
    );
    assert_eq!(retry["transaction"], ours.as_str(), "{retry}");
    assert!(!chain.permit2_nonce_used(p.from, p.nonce).await);
    assert_eq!(
        chain.balance(chain.permit_token, p.pay_to).await,
        U256::ZERO
    );
    app.stop().await;
}
