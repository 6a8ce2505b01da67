//! The ledger contract, run against both backends: real Postgres and real SQLite must behave
//! identically for every transition the settle path relies on.

use std::time::Duration;

use futures_util::future::join_all;
use x402_facilitator::ledger::{
    self, Answer, ClaimOutcome, ClaimToken, Collected, Collector, Fence, Included, NewClaim,
    ReceiptQuery, SettlementState, SharedLedger, Submission,
};

use crate::harness::Db;

const LEASE: Duration = Duration::from_secs(30);

async fn open(db: &Db) -> SharedLedger {
    ledger::connect(&db.url(), 8, Duration::from_secs(5))
        .await
        .expect("ledger opens and migrates")
}

pub(crate) fn claim(key: &str) -> NewClaim {
    NewClaim {
        replay_key: key.into(),
        network: "eip155:31337".into(),
        scheme: "exact".into(),
        x402_version: 2,
        payer: "0xpayer".into(),
        pay_to: "0xpayee".into(),
        asset: "0xasset".into(),
        amount: "10000".into(),
        resource_url: Some("http://127.0.0.1/x".into()),
        resource_key: Some("http://127.0.0.1/x".into()),
        payment_id: None,
        payment_scope: None,
        request: "{}".into(),
        fingerprint: format!("fp-{key}"),
        exclusive_key: None,
        max_amount: None,
    }
}

/// Where a test transaction was "included".
fn at(tx: &str) -> Included<'_> {
    Included {
        tx_id: tx,
        block_number: Some(7),
        block_hash: Some("0xblock"),
    }
}

const NETWORKS: &[&str] = &["eip155:31337"];

fn nets() -> Vec<String> {
    NETWORKS.iter().map(|n| n.to_string()).collect()
}

async fn claimed(l: &SharedLedger, key: &str) -> ClaimToken {
    match l.claim(&claim(key), LEASE).await.expect("claim") {
        ClaimOutcome::Claimed(token) => token,
        other => panic!("expected to win the claim: {other:?}"),
    }
}

/// A live signer lease to record transactions under.
async fn lease(l: &SharedLedger) -> Fence {
    let fence = l
        .lease_signer("net/0xsigner", "me", LEASE)
        .await
        .expect("lease")
        .expect("granted");
    Fence {
        signer: "net/0xsigner".into(),
        holder: "me".into(),
        fence,
    }
}

async fn submit(l: &SharedLedger, key: &str, token: &ClaimToken, tx: &str, fence: &Fence) -> bool {
    let s = Submission {
        tx_id: tx,
        raw_tx: "02f8",
        signer: "0xsigner",
        fence: Some(fence),
    };
    l.record_submitted(key, token, &s)
        .await
        .expect("record_submitted")
        .applied()
}

async fn for_both<F, Fut>(f: F)
where
    F: Fn(SharedLedger) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in crate::harness::db::both().await {
        f(open(&db).await).await;
    }
}

#[tokio::test]
async fn claim_is_exclusive_and_reports_the_holder() {
    for_both(|l| async move {
        claimed(&l, "k1").await;
        match l.claim(&claim("k1"), LEASE).await.expect("claim") {
            ClaimOutcome::Existing(row) => {
                assert_eq!(row.state, SettlementState::Claimed);
                assert!(row.lease_active(ledger_now()));
                assert_eq!(row.amount, "10000");
                assert_eq!(row.resource_url.as_deref(), Some("http://127.0.0.1/x"));
            }
            other => panic!("second claim must not win: {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn concurrent_claims_have_one_winner() {
    for_both(|l| async move {
        let results = join_all((0..32).map(|_| {
            let l = l.clone();
            async move { l.claim(&claim("race"), LEASE).await.expect("claim") }
        }))
        .await;
        assert_eq!(
            results
                .iter()
                .filter(|r| matches!(r, ClaimOutcome::Claimed(_)))
                .count(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn a_payment_settled_by_a_transaction_we_did_not_send_adopts_it() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        let token = claimed(&l, "k").await;
        assert!(submit(&l, "k", &token, "0xours", &fence).await);
        // Someone else executed the same authorization first (a front-run): the chain shows
        // the money moved by their transaction, and receipts must find it.
        assert!(
            l.record_settled("k", &token, &at("0xtheirs"), Answer::Owed)
                .await
                .expect("cas")
                .applied()
        );
        let row = l.find("k").await.expect("find").expect("row");
        assert_eq!(row.state, SettlementState::Settled);
        assert_eq!(row.tx_id.as_deref(), Some("0xtheirs"));
        let txs: Vec<String> = l
            .txs("k")
            .await
            .expect("txs")
            .into_iter()
            .map(|t| t.tx_id)
            .collect();
        assert!(txs.contains(&"0xours".to_string()) && txs.contains(&"0xtheirs".to_string()));
        // A stale holder cannot adopt anything.
        let stranger = ClaimToken("not-the-holder".into());
        assert!(
            !l.record_settled("k", &stranger, &at("0xthird"), Answer::Owed)
                .await
                .expect("cas")
                .applied()
        );
        assert!(l.by_transaction("0xthird").await.expect("lookup").is_none());
    })
    .await;
}

#[tokio::test]
async fn transitions_follow_the_state_machine() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        let token = claimed(&l, "k").await;
        assert!(
            !l.record_settled("k", &token, &at("0xabc"), Answer::Owed)
                .await
                .expect("cas")
                .applied(),
            "claimed → settled is not a transition"
        );
        assert!(
            l.txs("k").await.expect("txs").is_empty(),
            "a refused transition leaves no transaction behind"
        );
        assert!(submit(&l, "k", &token, "0xabc", &fence).await);
        assert!(
            !l.release("k", &token).await.expect("cas").applied(),
            "a submitted row is never released"
        );
        assert!(
            l.record_settled("k", &token, &at("0xabc"), Answer::Owed)
                .await
                .expect("cas")
                .applied()
        );
        assert!(
            !l.record_failed("k", &token, "x")
                .await
                .expect("cas")
                .applied(),
            "settled is final"
        );
        let row = l.find("k").await.expect("find").expect("row");
        assert_eq!(row.state, SettlementState::Settled);
        assert_eq!(row.tx_id.as_deref(), Some("0xabc"));
        assert_eq!(row.raw_tx.as_deref(), Some("02f8"));
        assert_eq!(row.signer.as_deref(), Some("0xsigner"));
        assert!(row.settled_at.is_some());
        assert!(!row.lease_active(ledger_now()));
        match l.claim(&claim("k"), LEASE).await.expect("claim") {
            ClaimOutcome::Existing(r) => assert_eq!(r.state, SettlementState::Settled),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            l.by_transaction("0xabc")
                .await
                .expect("by tx")
                .map(|r| r.replay_key),
            Some("k".into())
        );
    })
    .await;
}

#[tokio::test]
async fn only_the_token_holder_can_move_a_row() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        let token = claimed(&l, "h").await;
        let stranger = ClaimToken("not-the-holder".into());
        assert!(!submit(&l, "h", &stranger, "0x1", &fence).await);
        assert!(!l.release("h", &stranger).await.expect("cas").applied());
        assert!(
            !l.record_failed("h", &stranger, "x")
                .await
                .expect("cas")
                .applied()
        );
        // After a take-over the old holder is locked out.
        assert!(
            l.end_lease("h", &token, Duration::ZERO)
                .await
                .expect("end")
                .applied()
        );
        let new = l
            .take_over(&as_state(&l, "h", SettlementState::Claimed).await, LEASE)
            .await
            .expect("cas")
            .expect("taken");
        assert!(
            !submit(&l, "h", &token, "0x1", &fence).await,
            "the old holder can no longer record"
        );
        assert!(submit(&l, "h", &new, "0x1", &fence).await);
    })
    .await;
}

#[tokio::test]
async fn recording_needs_a_live_signer_lease() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        let token = claimed(&l, "f").await;
        let stale = Fence {
            fence: fence.fence - 1,
            ..fence.clone()
        };
        assert!(
            !submit(&l, "f", &token, "0x1", &stale).await,
            "an old fence cannot record"
        );
        let other = Fence {
            holder: "someone-else".into(),
            ..fence.clone()
        };
        assert!(
            !submit(&l, "f", &token, "0x1", &other).await,
            "a non-holder cannot record"
        );
        assert!(submit(&l, "f", &token, "0x1", &fence).await);
    })
    .await;
}

#[tokio::test]
async fn unleased_signers_record_without_a_fence() {
    for_both(|l| async move {
        let token = claimed(&l, "u").await;
        let s = Submission {
            tx_id: "sig",
            raw_tx: "01",
            signer: "feepayer",
            fence: None,
        };
        assert!(
            l.record_submitted("u", &token, &s)
                .await
                .expect("record")
                .applied()
        );
        let stranger = ClaimToken("x".into());
        assert!(
            !l.record_submitted("u", &stranger, &s)
                .await
                .expect("record")
                .applied(),
            "the claim token still holds"
        );
    })
    .await;
}

#[tokio::test]
async fn signer_leases_are_exclusive_and_fenced() {
    for_both(|l| async move {
        let short = Duration::from_millis(300);
        let a = l
            .lease_signer("s", "a", short)
            .await
            .expect("lease")
            .expect("a gets it");
        assert_eq!(
            l.lease_signer("s", "b", short).await.expect("lease"),
            None,
            "b must wait"
        );
        assert_eq!(
            l.lease_signer("s", "a", short).await.expect("renew"),
            Some(a),
            "renewal keeps the fence"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let b = l
            .lease_signer("s", "b", short)
            .await
            .expect("lease")
            .expect("expired lease passes to b");
        assert!(b > a, "the fence grows with a new holder");
        l.release_signer("s", "b").await.expect("release");
        assert!(
            l.lease_signer("s", "a", short)
                .await
                .expect("lease")
                .is_some(),
            "released lease is free"
        );
    })
    .await;
}

#[tokio::test]
async fn release_and_failed_rows_can_be_claimed_again() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        let token = claimed(&l, "r").await;
        assert!(l.release("r", &token).await.expect("release").applied());
        assert!(l.find("r").await.expect("find").is_none());
        let token = claimed(&l, "r").await;
        assert!(submit(&l, "r", &token, "0x1", &fence).await);
        assert!(
            l.record_failed("r", &token, "invalid_exact_evm_transaction_failed")
                .await
                .expect("failed")
                .applied()
        );
        let failed = l.find("r").await.expect("find").expect("row");
        assert_eq!(
            failed.error_reason.as_deref(),
            Some("invalid_exact_evm_transaction_failed")
        );
        // A failed row is not claimed behind the core's back: the claim shows it, and the
        // core claims it again only after taking it over (and looking at its transactions).
        let ClaimOutcome::Existing(seen) = l.claim(&claim("r"), LEASE).await.expect("claim") else {
            panic!("a failed row is shown, not re-claimed")
        };
        assert_eq!(seen.state, SettlementState::Failed);
        let taker = l
            .take_over(&seen, LEASE)
            .await
            .expect("cas")
            .expect("taken");
        assert!(
            matches!(
                l.reclaim(&claim("r"), &ClaimToken("stranger".into()), LEASE)
                    .await
                    .expect("reclaim"),
                ClaimOutcome::Existing(_)
            ),
            "only the holder of the failed row claims it again"
        );
        let ClaimOutcome::Claimed(_) = l
            .reclaim(&claim("r"), &taker, LEASE)
            .await
            .expect("reclaim")
        else {
            panic!("the taker claims it again")
        };
        let again = l.find("r").await.expect("find").expect("row");
        assert_eq!(
            (again.state, again.attempts, again.tx_id),
            (SettlementState::Claimed, 2, None)
        );
        assert_eq!(
            l.txs("r").await.expect("txs").len(),
            1,
            "the first attempt's transaction is kept"
        );
    })
    .await;
}

#[tokio::test]
async fn take_over_needs_an_expired_lease() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        let token = claimed(&l, "t").await;
        assert!(submit(&l, "t", &token, "0x1", &fence).await);
        assert!(
            l.take_over(&as_state(&l, "t", SettlementState::Submitted).await, LEASE)
                .await
                .expect("cas")
                .is_none(),
            "lease still held"
        );
        assert!(l.stale(&nets(), 10).await.expect("stale").is_empty());
        assert!(
            l.end_lease("t", &token, Duration::ZERO)
                .await
                .expect("end lease")
                .applied()
        );
        assert_eq!(
            l.stale(&nets(), 10).await.expect("stale").len(),
            1,
            "an expired unfinished row is stale"
        );
        assert!(
            l.take_over(&as_state(&l, "t", SettlementState::Claimed).await, LEASE)
                .await
                .expect("cas")
                .is_none(),
            "wrong state"
        );
        assert!(
            l.take_over(&as_state(&l, "t", SettlementState::Submitted).await, LEASE)
                .await
                .expect("cas")
                .is_some()
        );
        assert!(
            l.take_over(&as_state(&l, "t", SettlementState::Submitted).await, LEASE)
                .await
                .expect("cas")
                .is_none(),
            "only one taker"
        );
    })
    .await;
}

#[tokio::test]
async fn deferred_rows_wait_for_the_reconciler_but_not_for_a_settle() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        let token = claimed(&l, "d").await;
        assert!(submit(&l, "d", &token, "0x1", &fence).await);
        assert!(
            l.defer("d", &token, Duration::from_millis(300))
                .await
                .expect("defer")
                .applied()
        );
        assert!(
            l.stale(&nets(), 10).await.expect("stale").is_empty(),
            "the reconciler waits"
        );
        let row = l.find("d").await.expect("find").expect("row");
        assert!(
            !row.lease_active(ledger_now()),
            "a client's settle may take it over at once"
        );
        assert_eq!(row.reconciles, 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            l.stale(&nets(), 10).await.expect("stale").len(),
            1,
            "then the reconciler's turn comes"
        );
    })
    .await;
}

#[tokio::test]
async fn take_over_refuses_an_outdated_copy() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        let token = claimed(&l, "o").await;
        assert!(submit(&l, "o", &token, "0x1", &fence).await);
        assert!(
            l.end_lease("o", &token, Duration::ZERO)
                .await
                .expect("end")
                .applied()
        );
        let old = l.find("o").await.expect("find").expect("row");
        // The row moves on after it was read: its holder records another transaction.
        assert!(submit(&l, "o", &token, "0x2", &fence).await);
        assert!(
            l.take_over(&old, LEASE).await.expect("cas").is_none(),
            "the copy names 0x1"
        );
        let fresh = l.find("o").await.expect("find").expect("row");
        assert!(l.take_over(&fresh, LEASE).await.expect("cas").is_some());
    })
    .await;
}

#[tokio::test]
async fn a_pending_report_is_owed_once_and_only_when_settled() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        let token = claimed(&l, "p").await;
        assert!(submit(&l, "p", &token, "0x1", &fence).await);
        assert!(
            l.end_lease("p", &token, Duration::ZERO)
                .await
                .expect("end")
                .applied()
        );
        assert!(
            l.take_owed_answer("p", None, Collector::Retry)
                .await
                .expect("cas")
                == Collected::NotOwed,
            "not settled yet"
        );
        let row = l.find("p").await.expect("find").expect("row");
        let taker = l.take_over(&row, LEASE).await.expect("cas").expect("taken");
        assert!(
            l.record_settled("p", &taker, &at("0x1"), Answer::Owed)
                .await
                .expect("settled")
                .applied()
        );
        assert!(
            l.take_owed_answer("p", None, Collector::Retry)
                .await
                .expect("cas")
                == Collected::Taken
        );
        assert!(
            l.take_owed_answer("p", None, Collector::Retry)
                .await
                .expect("cas")
                == Collected::NotOwed,
            "owed once"
        );
    })
    .await;
}

/// The sender whose client waits is answered with the record: the same statement stops the
/// success being owed, so a copy of the payload arriving before the answer finds nothing to
/// collect (before, the record left it owed until a second statement, and a copy in between
/// was given a second success for one transfer). A client that then hangs up is owed it again.
#[tokio::test]
async fn a_success_given_with_its_record_leaves_nothing_for_a_copy_to_collect() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        let token = claimed(&l, "g").await;
        assert!(submit(&l, "g", &token, "0x1", &fence).await);
        assert!(
            l.record_settled("g", &token, &at("0x1"), Answer::GivenNow)
                .await
                .expect("settled")
                .applied()
        );
        assert_eq!(
            l.take_owed_answer("g", None, Collector::Retry)
                .await
                .expect("take"),
            Collected::NotOwed,
            "a copy arriving between the record and the answer collects nothing"
        );
        assert!(l.owe_again("g").await.expect("owe").applied());
        assert_eq!(
            l.take_owed_answer("g", None, Collector::Retry)
                .await
                .expect("take"),
            Collected::Taken,
            "the client that left is owed it again"
        );
    })
    .await;
}

/// A reorg re-opens a settled payment and its transaction is sent again (a replacement
/// recorded under a new holder): a payment whose success was given is not owed it a second
/// time (before, every recorded transaction set the row owed again, and a replay collected a
/// second success); one whose success was never given stays owed.
#[tokio::test]
async fn a_transaction_sent_again_after_a_reorg_owes_only_what_was_not_given() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        for (key, answer, after) in [
            ("answered", Answer::GivenNow, Collected::NotOwed),
            ("unanswered", Answer::Owed, Collected::Taken),
        ] {
            let token = claimed(&l, key).await;
            assert!(submit(&l, key, &token, &format!("0x{key}1"), &fence).await);
            assert!(
                l.record_settled(key, &token, &at(&format!("0x{key}1")), answer)
                    .await
                    .expect("settled")
                    .applied()
            );
            let row = l.find(key).await.expect("find").expect("row");
            assert!(l.unsettle(&row).await.expect("unsettle").applied(), "{key}");
            let row = l.find(key).await.expect("find").expect("row");
            let taker = l
                .take_over(&row, LEASE)
                .await
                .expect("cas")
                .expect("taken over");
            assert!(submit(&l, key, &taker, &format!("0x{key}2"), &fence).await);
            assert!(
                l.record_settled(key, &taker, &at(&format!("0x{key}2")), Answer::Owed)
                    .await
                    .expect("settled again")
                    .applied()
            );
            assert_eq!(
                l.take_owed_answer(key, None, Collector::Retry)
                    .await
                    .expect("take"),
                after,
                "{key}"
            );
        }
    })
    .await;
}

/// A handed-off payment's success is recorded by the taker for nobody: it is kept for the
/// requester (on another replica) until a little after the requester's deadline. A copy of the
/// payload meanwhile is told it is reserved, not given it; the requester takes it; once the
/// requester gives up early (`end_reservation`) or its deadline and the grace have passed, a
/// retry collects what is still owed.
#[tokio::test]
async fn a_hand_offs_success_is_kept_for_its_requester_until_its_deadline() {
    let db = Db::postgres().await;
    let l = open(&db).await;
    let fence = lease(&l).await;
    let settled_by_a_taker = async |key: &str| {
        let requester = claimed(&l, key).await;
        assert!(
            l.hand_off(key, &requester, ledger_now() + 60_000, None)
                .await
                .expect("hand off")
                .applied()
        );
        let (_, taker) = l
            .take_handoffs(&nets(), &[], LEASE, 1)
            .await
            .expect("take")
            .pop()
            .expect("taken");
        assert!(submit(&l, key, &taker, &format!("0x{key}"), &fence).await);
        assert!(
            l.record_settled(key, &taker, &at(&format!("0x{key}")), Answer::Owed)
                .await
                .expect("settled")
                .applied()
        );
    };
    let take =
        async |key: &str, by: Collector| l.take_owed_answer(key, None, by).await.expect("take");

    settled_by_a_taker("waits").await;
    assert_eq!(take("waits", Collector::Retry).await, Collected::Reserved);
    assert_eq!(take("waits", Collector::Claimer).await, Collected::Taken);
    assert_eq!(take("waits", Collector::Retry).await, Collected::NotOwed);

    settled_by_a_taker("left").await;
    assert_eq!(take("left", Collector::Retry).await, Collected::Reserved);
    assert!(l.end_reservation("left").await.expect("end").applied());
    assert_eq!(take("left", Collector::Retry).await, Collected::Taken);

    settled_by_a_taker("late").await;
    let grace = i64::try_from(ledger::HANDOFF_ANSWER_GRACE.as_millis()).expect("fits");
    // The requester's deadline has just passed, the grace has not: still kept for it.
    db.execute(&format!(
        "UPDATE settlements SET handoff_deadline = {} WHERE replay_key = 'late'",
        ledger_now() - grace / 2
    ))
    .await;
    assert_eq!(take("late", Collector::Retry).await, Collected::Reserved);

    settled_by_a_taker("gone").await;
    // The requester's deadline and the grace after it have passed (it crashed, say).
    db.execute(&format!(
        "UPDATE settlements SET handoff_deadline = {} WHERE replay_key = 'gone'",
        ledger_now() - grace - 1
    ))
    .await;
    assert_eq!(take("gone", Collector::Retry).await, Collected::Taken);
}

/// Sign-in nonces claimed in one statement: each first use wins once, a key repeated in the
/// batch and a key claimed before are replays, and an expired nonce may be claimed anew; two
/// ledgers (replicas) claiming overlapping batches at once give each key to one of them.
#[tokio::test]
async fn session_nonces_claimed_together_are_each_first_used_once() {
    for_both(|l| async move {
        let now = ledger_now();
        let (live, gone) = (now + 60_000, now - 1);
        assert_eq!(
            l.claim_session_nonces(&[("old", gone), ("kept", live)])
                .await
                .expect("claim"),
            vec![ledger::Transition::Applied; 2]
        );
        let batch = [("new", live), ("kept", live), ("new", live), ("old", live)];
        use ledger::Transition::{Applied, Lost};
        assert_eq!(
            l.claim_session_nonces(&batch).await.expect("claim"),
            vec![Applied, Lost, Lost, Applied],
            "first use wins, a copy in the batch and a used nonce are replays, an expired one is free"
        );
        assert!(l.claim_session_nonces(&[]).await.expect("claim").is_empty());
    })
    .await;
    let db = Db::postgres().await;
    let (x, y) = (open(&db).await, open(&db).await);
    let names: Vec<String> = (0..200).map(|i| format!("n{i}")).collect();
    let keys: Vec<(&str, i64)> = names
        .iter()
        .map(|n| (n.as_str(), ledger_now() + 60_000))
        .collect();
    let mut reversed = keys.clone();
    reversed.reverse();
    let (a, b) = tokio::join!(
        x.claim_session_nonces(&keys),
        y.claim_session_nonces(&reversed)
    );
    let (a, mut b) = (a.expect("claim"), b.expect("claim"));
    b.reverse();
    for (i, (p, q)) in a.iter().zip(&b).enumerate() {
        assert!(p.applied() != q.applied(), "n{i}: {p:?} {q:?}");
    }
}

/// A claimed row queued for a hand-off gave its lease up for the taker: until the requester's
/// deadline nobody else takes it over (found by review: a copy of the payload took it over,
/// sent it and was given the success, and the requester then gave a second one). After the
/// deadline (the requester gone), it is anyone's again, as an abandoned claim is.
#[tokio::test]
async fn a_queued_hand_off_is_not_taken_over_before_its_deadline() {
    for_both(|l| async move {
        let requester = claimed(&l, "queued").await;
        assert!(
            l.hand_off("queued", &requester, ledger_now() + 60_000, None)
                .await
                .expect("hand off")
                .applied()
        );
        let row = l.find("queued").await.expect("find").expect("row");
        assert!(row.handoff_live(ledger_now()));
        assert!(
            l.take_over(&row, LEASE).await.expect("cas").is_none(),
            "a copy cannot take a queued hand-off over"
        );
        let past = claimed(&l, "past").await;
        assert!(
            l.hand_off("past", &past, ledger_now() - 1, None)
                .await
                .expect("hand off")
                .applied()
        );
        let row = l.find("past").await.expect("find").expect("row");
        assert!(l.take_over(&row, LEASE).await.expect("cas").is_some());
    })
    .await;
}

/// A payment-identifier belongs to one live payment per scope, and is free again once that
/// payment failed.
#[tokio::test]
async fn a_payment_identifier_is_held_by_one_live_payment_per_scope() {
    for_both(|l| async move {
        let with_id = |key: &str, scope: &str| {
            let mut c = claim(key);
            c.payment_id = Some("pay_0123456789abcdef".into());
            c.payment_scope = Some(scope.into());
            c
        };
        let ClaimOutcome::Claimed(first) =
            l.claim(&with_id("i1", "a|b"), LEASE).await.expect("claim")
        else {
            panic!("the first payment claims the id")
        };
        assert_eq!(
            l.claim(&with_id("i2", "a|b"), LEASE).await.expect("claim"),
            ClaimOutcome::PaymentIdTaken,
            "another payment, same id and scope"
        );
        assert!(
            matches!(
                l.claim(&with_id("i3", "c|b"), LEASE).await.expect("claim"),
                ClaimOutcome::Claimed(_)
            ),
            "another scope is another id"
        );
        let row = l
            .by_payment_id("a|b", "pay_0123456789abcdef")
            .await
            .expect("lookup")
            .expect("found");
        assert_eq!(row.replay_key, "i1");
        assert!(
            l.record_failed("i1", &first, "x")
                .await
                .expect("cas")
                .applied()
        );
        assert!(
            l.by_payment_id("a|b", "pay_0123456789abcdef")
                .await
                .expect("lookup")
                .is_none(),
            "a failed payment holds no id"
        );
        assert!(matches!(
            l.claim(&with_id("i2", "a|b"), LEASE).await.expect("claim"),
            ClaimOutcome::Claimed(_)
        ));
    })
    .await;
}

/// L2: releasing a signer lease keeps its row, so the fence only ever grows: a process that
/// held fence 1, lost the lease and gets it back never sees fence 1 again (it would think
/// nobody used the key meanwhile).
#[tokio::test]
async fn signer_fences_only_grow_across_releases() {
    for_both(|l| async move {
        let a1 = l
            .lease_signer("k", "a", LEASE)
            .await
            .expect("lease")
            .expect("granted");
        l.release_signer("k", "a").await.expect("release");
        let b = l
            .lease_signer("k", "b", LEASE)
            .await
            .expect("lease")
            .expect("granted");
        l.release_signer("k", "b").await.expect("release");
        let a2 = l
            .lease_signer("k", "a", LEASE)
            .await
            .expect("lease")
            .expect("granted");
        assert!(a1 < b && b < a2, "fences {a1}, {b}, {a2}");
    })
    .await;
}

/// Recording keeps every transaction of a payment: a replacement joins the first, a row with
/// transactions is never deleted, and settling names any of them.
#[tokio::test]
async fn every_recorded_transaction_is_kept_and_a_row_with_history_is_never_deleted() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        let token = claimed(&l, "h").await;
        assert!(submit(&l, "h", &token, "0xfirst", &fence).await);
        assert!(submit(&l, "h", &token, "0xbump", &fence).await);
        let txs = l.txs("h").await.expect("txs");
        assert_eq!(
            txs.iter().map(|t| t.tx_id.as_str()).collect::<Vec<_>>(),
            ["0xfirst", "0xbump"]
        );
        assert!(txs.iter().all(|t| t.fingerprint.as_deref() == Some("fp-h")));
        assert!(
            l.record_settled("h", &token, &at("0xfirst"), Answer::Owed)
                .await
                .expect("cas")
                .applied(),
            "the chain mined the one that was replaced"
        );
        let row = l.find("h").await.expect("find").expect("row");
        assert_eq!(row.tx_id.as_deref(), Some("0xfirst"));
        assert_eq!(row.block_number, Some(7));
        assert_eq!(
            l.by_transaction("0xbump")
                .await
                .expect("lookup")
                .map(|r| r.replay_key),
            Some("h".into()),
            "a replaced transaction still finds its payment"
        );
        // A row that recorded anything is never deleted, whatever its state.
        let mut c = claim("h2");
        c.fingerprint = "fp-h2".into();
        let ClaimOutcome::Claimed(t2) = l.claim(&c, LEASE).await.expect("claim") else {
            panic!()
        };
        assert!(submit(&l, "h2", &t2, "0xh2", &fence).await);
        assert!(
            l.record_failed("h2", &t2, "x")
                .await
                .expect("cas")
                .applied()
        );
        let failed = l.find("h2").await.expect("find").expect("row");
        let taker = l
            .take_over(&failed, LEASE)
            .await
            .expect("cas")
            .expect("taken");
        let ClaimOutcome::Claimed(again) = l.reclaim(&c, &taker, LEASE).await.expect("reclaim")
        else {
            panic!("reclaimed")
        };
        assert!(!l.release("h2", &again).await.expect("cas").applied());
        assert!(l.find("h2").await.expect("find").is_some());
    })
    .await;
}

#[tokio::test]
async fn receipts_filter_and_paginate() {
    for_both(|l| async move {
        let fence = lease(&l).await;
        for i in 0..5 {
            let key = format!("p{i}");
            let mut c = claim(&key);
            c.payer = if i % 2 == 0 {
                "0xAbC".into()
            } else {
                "0xdef".into()
            };
            let ClaimOutcome::Claimed(token) = l.claim(&c, LEASE).await.expect("claim") else {
                panic!("claim")
            };
            assert!(submit(&l, &key, &token, &format!("0xt{i}"), &fence).await);
            assert!(
                l.record_settled(&key, &token, &at(&format!("0xt{i}")), Answer::Owed)
                    .await
                    .expect("settled")
                    .applied()
            );
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let q = ReceiptQuery {
            payer: Some("0xabc".into()),
            limit: 2,
            ..Default::default()
        };
        let first = l.list(&q).await.expect("list");
        assert_eq!(
            first
                .iter()
                .map(|r| r.replay_key.as_str())
                .collect::<Vec<_>>(),
            ["p4", "p2"],
            "newest first, case-insensitive"
        );
        let last = first.last().expect("row");
        let next = ReceiptQuery {
            before: Some((last.created_at, last.replay_key.clone())),
            ..q.clone()
        };
        let second = l.list(&next).await.expect("list");
        assert_eq!(
            second
                .iter()
                .map(|r| r.replay_key.as_str())
                .collect::<Vec<_>>(),
            ["p0"]
        );
        let settled = ReceiptQuery {
            state: Some(SettlementState::Settled),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(l.list(&settled).await.expect("list").len(), 5);
        let none = ReceiptQuery {
            network: Some("eip155:1".into()),
            limit: 10,
            ..Default::default()
        };
        assert!(l.list(&none).await.expect("list").is_empty());
    })
    .await;
}

#[tokio::test]
async fn migrations_are_idempotent() {
    for db in crate::harness::db::both().await {
        let first = open(&db).await;
        first.claim(&claim("m"), LEASE).await.expect("claim");
        let second = open(&db).await;
        assert!(
            second.find("m").await.expect("find").is_some(),
            "reopening keeps the data"
        );
        assert_eq!(
            db.count("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .await,
            crate::harness::db::migration_files(),
            "every migration file is applied once"
        );
    }
}

/// The row as read, with its state overridden (to try a take-over that expects another state).
async fn as_state(
    l: &SharedLedger,
    key: &str,
    state: SettlementState,
) -> x402_facilitator::ledger::SettlementRecord {
    let mut row = l.find(key).await.expect("find").expect("row");
    row.state = state;
    row
}

fn ledger_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A ledger created by the first release (its own `ledger_migrations` table, schema 1 applied)
/// opens with sqlx's migrator and keeps its rows.
#[tokio::test]
async fn a_ledger_of_the_first_release_is_upgraded_in_place() {
    for db in crate::harness::db::both().await {
        let backend = if db.url().starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        };
        let schema = std::fs::read_to_string(format!(
            "{}/migrations/{backend}/0001_settlements.sql",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("schema 1");
        db.execute(&format!(
            "{schema}; CREATE TABLE ledger_migrations (version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, applied_at BIGINT NOT NULL); \
             INSERT INTO ledger_migrations VALUES (1, '0001_settlements', 0); \
             INSERT INTO settlements (replay_key, network, scheme, x402_version, payer, pay_to, \
             asset, amount, request, state, claim_token, tx_id, lease_until, created_at, \
             updated_at) VALUES ('old', 'eip155:1', 'exact', 2, '0xp', '0xq', '0xa', '1', '{{}}', \
             'settled', 't', '0xtx', 0, 1, 1)"
        ))
        .await;
        let l = open(&db).await;
        let old = l
            .find("old")
            .await
            .expect("find")
            .expect("the old row is kept");
        assert_eq!(old.state, SettlementState::Settled);
        assert_eq!(
            db.count("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .await,
            crate::harness::db::migration_files()
        );
    }
}

/// An exclusive key (a seller's invoice memo) is held by one live row whatever its replay key;
/// a failed row gives it up, and a re-claim cannot take it from a live one.
#[tokio::test]
async fn an_exclusive_key_is_held_by_one_live_row() {
    for db in crate::harness::db::both().await {
        let l = open(&db).await;
        let with_key = |key: &str| {
            let mut c = claim(key);
            c.exclusive_key = Some("solana:x/memo/payee/h".into());
            c
        };
        let ClaimOutcome::Claimed(first) = l.claim(&with_key("a"), LEASE).await.expect("claim")
        else {
            panic!("the first claim wins");
        };
        let sent = Submission {
            tx_id: "tx-a",
            raw_tx: "00",
            signer: "fee-payer",
            fence: None,
        };
        assert!(
            l.record_submitted("a", &first, &sent)
                .await
                .expect("record")
                .applied()
        );
        assert_eq!(
            l.claim(&with_key("b"), LEASE).await.expect("claim"),
            ClaimOutcome::ExclusiveTaken
        );
        // The same payment again meets its own row, not the key it holds.
        assert!(matches!(
            l.claim(&with_key("a"), LEASE).await.expect("claim"),
            ClaimOutcome::Existing(row) if row.replay_key == "a"
        ));
        let holder = l
            .by_exclusive_key("solana:x/memo/payee/h")
            .await
            .expect("read")
            .expect("held");
        assert_eq!(holder.replay_key, "a");
        // Rows without a key never collide.
        assert!(matches!(
            l.claim(&claim("c"), LEASE).await.expect("claim"),
            ClaimOutcome::Claimed(_)
        ));
        assert!(matches!(
            l.claim(&claim("d"), LEASE).await.expect("claim"),
            ClaimOutcome::Claimed(_)
        ));
        assert!(
            l.record_failed("a", &first, "x")
                .await
                .expect("fail")
                .applied()
        );
        assert!(
            l.by_exclusive_key("solana:x/memo/payee/h")
                .await
                .expect("read")
                .is_none()
        );
        assert!(matches!(
            l.claim(&with_key("b"), LEASE).await.expect("claim"),
            ClaimOutcome::Claimed(_)
        ));
        // "a" failed; claimed again it meets the live "b": no second holder.
        let ClaimOutcome::Existing(failed) = l.claim(&with_key("a"), LEASE).await.expect("claim")
        else {
            panic!("the failed row is returned");
        };
        let token = l
            .take_over(&failed, LEASE)
            .await
            .expect("take over")
            .expect("expired lease");
        assert_eq!(
            l.reclaim(&with_key("a"), &token, LEASE)
                .await
                .expect("reclaim"),
            ClaimOutcome::ExclusiveTaken
        );
        // "a"'s transaction turns out to have paid: the chain paid both, the repair stands and
        // "a" gives the key up to "b", which holds it.
        assert!(
            l.repair_settled(&with_key("a"), &token, &at("tx-a"))
                .await
                .expect("repair")
                .applied()
        );
        assert_eq!(
            db.count(
                "SELECT count(*) FROM settlements WHERE replay_key = 'a' AND state = 'settled' \
                 AND exclusive_key IS NULL"
            )
            .await,
            1
        );
        assert_eq!(
            l.by_exclusive_key("solana:x/memo/payee/h")
                .await
                .expect("read")
                .map(|r| r.replay_key),
            Some("b".to_string())
        );
        // A repair whose key nobody else holds takes it back: the invoice is paid.
        let mut other = claim("e");
        other.exclusive_key = Some("solana:x/memo/payee/other".into());
        let ClaimOutcome::Claimed(e) = l.claim(&other, LEASE).await.expect("claim") else {
            panic!("a free key is claimed");
        };
        let sent = Submission {
            tx_id: "tx-e",
            ..sent
        };
        assert!(
            l.record_submitted("e", &e, &sent)
                .await
                .expect("record")
                .applied()
        );
        assert!(l.record_failed("e", &e, "x").await.expect("fail").applied());
        assert!(
            l.repair_settled(&other, &e, &at("tx-e"))
                .await
                .expect("repair")
                .applied()
        );
        assert_eq!(
            l.by_exclusive_key("solana:x/memo/payee/other")
                .await
                .expect("read")
                .map(|r| r.replay_key),
            Some("e".to_string())
        );
    }
}

/// `upto`: the signed maximum is kept beside the charge, and a charge of nothing is settled with
/// no transaction, by a statement that refuses any other payment.
#[tokio::test]
async fn upto_rows_keep_their_maximum_and_a_charge_of_nothing_settles_without_a_transaction() {
    for_both(|l| async move {
        let claim_as = |key: &str, amount: &str, max: Option<&str>| {
            let mut c = claim(key);
            c.scheme = "upto".into();
            c.amount = amount.into();
            c.max_amount = max.map(str::to_string);
            c
        };
        let win = |c: NewClaim| {
            let l = l.clone();
            async move {
                match l.claim(&c, LEASE).await.expect("claim") {
                    ClaimOutcome::Claimed(token) => token,
                    other => panic!("expected to win the claim: {other:?}"),
                }
            }
        };
        let zero = win(claim_as("zero", "0", Some("2500"))).await;
        assert!(
            l.record_settled_empty("zero", &zero)
                .await
                .expect("record")
                .applied()
        );
        let row = l.find("zero").await.expect("find").expect("row");
        assert_eq!(row.state, SettlementState::Settled);
        assert_eq!(
            (
                row.tx_id.as_deref(),
                row.amount.as_str(),
                row.max_amount.as_deref()
            ),
            (Some(""), "0", Some("2500"))
        );
        assert!(row.finalized_at.is_some(), "nothing to watch for reorgs");
        assert!(l.unfinal(&nets(), 10).await.expect("unfinal").is_empty());
        assert!(
            !l.record_settled_empty("zero", &zero)
                .await
                .expect("again")
                .applied(),
            "only a claimed row"
        );

        // A positive charge, or a payment without a maximum, is never settled without a
        // transaction.
        let paid = win(claim_as("paid", "1500", Some("2500"))).await;
        assert!(
            !l.record_settled_empty("paid", &paid)
                .await
                .expect("record")
                .applied()
        );
        let plain = win(claim_as("plain", "0", None)).await;
        assert!(
            !l.record_settled_empty("plain", &plain)
                .await
                .expect("record")
                .applied()
        );
        let row = l.find("paid").await.expect("find").expect("row");
        assert_eq!(
            (row.state, row.max_amount.as_deref()),
            (SettlementState::Claimed, Some("2500"))
        );
        assert_eq!(
            l.find("plain")
                .await
                .expect("find")
                .expect("row")
                .max_amount,
            None
        );
    })
    .await;
}

/// Hand-offs pinned to one key (`upto`): only a taker holding that signer lease gets them;
/// unpinned ones go to any taker of the network. SQLite (one process) has no queue.
#[tokio::test]
async fn a_hand_off_pinned_to_a_key_is_taken_only_by_its_holder() {
    let db = Db::postgres().await;
    let l = open(&db).await;
    let far = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
        + 60_000;
    let pinned = claimed(&l, "pinned").await;
    let any = claimed(&l, "any").await;
    assert!(
        l.hand_off("pinned", &pinned, far, Some("eip155:31337/0xaaaa"))
            .await
            .expect("hand off")
            .applied()
    );
    assert!(
        l.hand_off("any", &any, far, None)
            .await
            .expect("hand off")
            .applied()
    );
    let keys = |taken: Vec<(ledger::SettlementRecord, ClaimToken)>| {
        let mut k: Vec<String> = taken.into_iter().map(|(r, _)| r.replay_key).collect();
        k.sort();
        k
    };
    // A taker holding another key gets only the unpinned one.
    let other = vec!["eip155:31337/0xbbbb".to_string()];
    let taken = l
        .take_handoffs(&nets(), &other, LEASE, 10)
        .await
        .expect("take");
    assert_eq!(keys(taken), vec!["any".to_string()]);
    // The pinned one stays queued, for its holder.
    let holder = vec!["eip155:31337/0xaaaa".to_string()];
    assert!(
        l.take_handoffs(&nets(), &other, LEASE, 10)
            .await
            .expect("take")
            .is_empty()
    );
    let taken = l
        .take_handoffs(&nets(), &holder, LEASE, 10)
        .await
        .expect("take");
    assert_eq!(keys(taken), vec!["pinned".to_string()]);
    // On SQLite nothing is ever queued for another process.
    let lite = open(&Db::sqlite()).await;
    assert!(
        lite.take_handoffs(&nets(), &holder, LEASE, 10)
            .await
            .expect("take")
            .is_empty()
    );
}

/// `find` answers "no row" on SQLite from a read connection of the calling thread, not the
/// pool (src/ledger/presence.rs). That answer must never be stale: a claim committed by this
/// ledger's pool or by another process's connection to the same file (a second `connect`, as
/// the CLI or a restarted replica would open), alone or inside a transaction (a claim with a
/// signed maximum), and across a checkpoint that empties the WAL, is seen by the very next
/// lookup on every runtime thread, and a released claim is gone from the next one. A reader
/// that kept its snapshot open between lookups fails this on the second round; the counter
/// proves the fast path answered at all, so the test cannot pass with it switched off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_right_after_a_commit_sees_it_on_every_thread() {
    for db in crate::harness::db::both().await {
        let l = open(&db).await;
        let other = open(&db).await;
        let sqlite = matches!(db, Db::Sqlite(_));
        let mut threads = std::collections::HashSet::new();
        for round in 0..100 {
            let key = format!("fresh-{round}");
            let lookups = || {
                join_all((0..4).map(|_| {
                    let l = l.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        let found = l.find(&key).await.expect("find");
                        (std::thread::current().id(), found)
                    })
                }))
            };
            let absent_before = l.absent_answers_beside_the_pool();
            for done in lookups().await {
                let (thread, found) = done.expect("task");
                threads.insert(thread);
                assert!(found.is_none(), "round {round}: unclaimed");
            }
            if sqlite {
                assert_eq!(
                    l.absent_answers_beside_the_pool() - absent_before,
                    4,
                    "round {round}: every 'absent' came from the calling thread"
                );
            }
            let writer = if round % 2 == 0 { &l } else { &other };
            let mut new = claim(&key);
            if round % 3 == 0 {
                new.max_amount = Some("20000".into());
            }
            let token = match writer.claim(&new, LEASE).await.expect("claim") {
                ClaimOutcome::Claimed(token) => token,
                other => panic!("round {round}: {other:?}"),
            };
            for done in lookups().await {
                let (thread, found) = done.expect("task");
                threads.insert(thread);
                let row = found.expect("a committed claim is seen at once");
                assert_eq!(row.state, SettlementState::Claimed, "round {round}");
            }
            if round % 10 == 0 {
                writer
                    .release(&key, &token)
                    .await
                    .expect("release")
                    .applied()
                    .then_some(())
                    .expect("released");
                for done in lookups().await {
                    let (thread, found) = done.expect("task");
                    threads.insert(thread);
                    assert!(found.is_none(), "round {round}: released");
                }
            }
            if sqlite && round % 25 == 24 {
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").await;
            }
        }
        assert!(threads.len() >= 2, "lookups ran on both runtime threads");
        if !sqlite {
            assert_eq!(
                l.absent_answers_beside_the_pool(),
                0,
                "Postgres has no such path"
            );
        }
    }
}

/// One thread keeps a bounded set of read connections (src/ledger/presence.rs): with more
/// SQLite ledgers than it keeps, connections are closed and reopened in turn, and each ledger
/// still answers from its own file, both "absent" and what it holds.
#[tokio::test(flavor = "current_thread")]
async fn many_sqlite_ledgers_on_one_thread_each_answer_from_their_own_file() {
    let dbs: Vec<Db> = (0..7).map(|_| Db::sqlite()).collect();
    let mut ledgers = Vec::new();
    for db in &dbs {
        ledgers.push(open(db).await);
    }
    for round in 0..5 {
        for (i, l) in ledgers.iter().enumerate() {
            let key = format!("l{i}-r{round}");
            claimed(l, &key).await;
        }
        for (i, l) in ledgers.iter().enumerate() {
            for (j, _) in ledgers.iter().enumerate() {
                let key = format!("l{j}-r{round}");
                let found = l.find(&key).await.expect("find");
                assert_eq!(found.is_some(), i == j, "ledger {i}, key of ledger {j}");
            }
        }
    }
    for (i, l) in ledgers.iter().enumerate() {
        assert!(
            l.absent_answers_beside_the_pool() >= 5 * 6,
            "ledger {i}: its 'absent' answers came from the calling thread"
        );
    }
}

/// The fast path must read the file the pool writes. A URL whose `..` follows a symlink names
/// one file for sqlx (which normalises the URL's path first) and another for the kernel; a
/// reader that opened the URL's path itself would read a decoy and call a claimed payment
/// unknown. The reader takes the path SQLite reports for the pool's own connection instead.
#[tokio::test]
async fn a_ledger_url_through_a_symlink_is_read_from_the_file_the_pool_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().join("real");
    std::fs::create_dir_all(real.join("sub")).expect("mkdir");
    std::os::unix::fs::symlink(real.join("sub"), dir.path().join("link")).expect("symlink");
    // The decoy: a migrated, empty ledger where the kernel would resolve `link/..`.
    let decoy = format!("sqlite://{}", real.join("ledger.db").display());
    drop(
        ledger::connect(&decoy, 1, Duration::from_secs(5))
            .await
            .expect("decoy"),
    );
    let url = format!("sqlite://{}/link/../ledger.db", dir.path().display());
    let l = ledger::connect(&url, 2, Duration::from_secs(5))
        .await
        .expect("ledger through the symlink");
    claimed(&l, "through-the-link").await;
    let row = l
        .find("through-the-link")
        .await
        .expect("find")
        .expect("the claim the pool just wrote is found");
    assert_eq!(row.state, SettlementState::Claimed);
    assert!(l.find("never-claimed").await.expect("find").is_none());
    assert!(l.absent_answers_beside_the_pool() > 0, "the fast path ran");
}

/// When the reader beside the pool cannot open the file (here it was unlinked under a running
/// ledger, whose one pooled connection keeps its open descriptors; a second one would create a
/// new empty file), every lookup is answered by the pool, as before the fast path existed:
/// nothing is called absent that the pool holds.
#[tokio::test(flavor = "current_thread")]
async fn a_ledger_file_the_reader_cannot_open_is_answered_by_the_pool() {
    let db = Db::sqlite();
    let l = ledger::connect(&db.url(), 1, Duration::from_secs(5))
        .await
        .expect("ledger");
    let Db::Sqlite(dir) = &db else { unreachable!() };
    for name in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(name));
    }
    claimed(&l, "held").await;
    for _ in 0..100 {
        assert!(l.find("held").await.expect("find").is_some());
        assert!(l.find("unknown").await.expect("find").is_none());
    }
    assert_eq!(
        l.absent_answers_beside_the_pool(),
        0,
        "nothing answered beside the pool"
    );
}

/// A ledger file replaced while the ledger runs (unlinked, and a fresh migrated ledger made at
/// the same path, as a restore by `mv` or another instance would). The reader beside the pool
/// must never answer from the wrong file: not a reader opened after the replacement (the pool's
/// connection still has the old file), and not one this thread opened before it either (sqlx
/// recycles pool connections, which then open the new file: here a second ledger on the path
/// stands for such a recycled connection and claims a payment there).
#[tokio::test(flavor = "current_thread")]
async fn a_ledger_file_replaced_while_running_is_not_read_beside_the_pool() {
    for warm in [false, true] {
        let db = Db::sqlite();
        let l = ledger::connect(&db.url(), 1, Duration::from_secs(5))
            .await
            .expect("ledger");
        if warm {
            // This thread's reader is open before the replacement.
            assert!(l.find("warm").await.expect("find").is_none());
            assert_eq!(l.absent_answers_beside_the_pool(), 1, "the fast path is on");
        }
        let before = l.absent_answers_beside_the_pool();
        let Db::Sqlite(dir) = &db else { unreachable!() };
        for name in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(name));
        }
        let recycled = ledger::connect(&db.url(), 1, Duration::from_secs(5))
            .await
            .expect("the replacement");
        claimed(&recycled, "held-in-the-new-file").await;
        claimed(&l, "held").await;
        for _ in 0..100 {
            assert!(
                l.find("held").await.expect("find").is_some(),
                "warm {warm}: a claimed payment read as unknown"
            );
            assert!(l.find("unknown").await.expect("find").is_none());
            let _ = l.find("held-in-the-new-file").await.expect("find");
        }
        assert_eq!(
            l.absent_answers_beside_the_pool(),
            before,
            "warm {warm}: an 'absent' was answered from a file the path no longer names"
        );
    }
}

/// The WAL gate (and behind it the URL check, whose cases are the unit test in
/// src/ledger/presence.rs): a pool another connection cannot share, under another VFS spelled
/// with a percent-encoded key or a memory database in a `file:` URI over a real ledger file,
/// leaves the reader beside the pool off, and every answer is the pool's.
#[tokio::test(flavor = "current_thread")]
async fn ledger_urls_a_second_connection_cannot_share_are_answered_by_the_pool_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.db");
    // A real ledger on disk where the memory database's URI points.
    drop(
        ledger::connect(
            &format!("sqlite://{}", path.display()),
            1,
            Duration::from_secs(5),
        )
        .await
        .expect("ledger on disk"),
    );
    let other = dir.path().join("other.db");
    for url in [
        format!("sqlite://{}?v%66s=unix-dotfile", other.display()),
        format!("sqlite:file:{}%3Fvfs%3Dmemdb", path.display()),
    ] {
        let l = ledger::connect(&url, 2, Duration::from_secs(5))
            .await
            .expect("ledger");
        claimed(&l, "held").await;
        assert!(l.find("held").await.expect("find").is_some(), "{url}");
        assert!(l.find("unknown").await.expect("find").is_none(), "{url}");
        assert_eq!(l.absent_answers_beside_the_pool(), 0, "{url}");
    }
}

/// Another process writing the same SQLite file (here CPython's own sqlite3, a different build
/// of SQLite in a different process: what an operator's script or a second instance would be):
/// a payment it records is seen by the next lookup even though this thread's reader beside the
/// pool answered "absent" for it a moment before (src/ledger/presence.rs).
#[tokio::test(flavor = "current_thread")]
async fn a_row_written_by_another_process_is_seen_by_the_next_lookup() {
    let db = Db::sqlite();
    let l = open(&db).await;
    claimed(&l, "template").await;
    let Db::Sqlite(dir) = &db else { unreachable!() };
    let file = dir.path().join("ledger.db");
    for round in 0..10 {
        let key = format!("from-another-process-{round}");
        let before = l.absent_answers_beside_the_pool();
        assert!(l.find(&key).await.expect("find").is_none(), "round {round}");
        assert_eq!(
            l.absent_answers_beside_the_pool(),
            before + 1,
            "the fast path answered"
        );
        let script = format!(
            "import sqlite3\n\
             c = sqlite3.connect({file:?}, timeout=10)\n\
             c.execute('CREATE TEMP TABLE t AS SELECT * FROM settlements WHERE replay_key = ?', ('template',))\n\
             c.execute('UPDATE t SET replay_key = ?, fingerprint = ?', ({key:?}, {key:?}))\n\
             c.execute('INSERT INTO settlements SELECT * FROM t')\n\
             c.commit()\n",
            file = file.display().to_string(),
        );
        let out = std::process::Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let row = l
            .find(&key)
            .await
            .expect("find")
            .expect("the other process's row is seen at once");
        assert_eq!(row.state, SettlementState::Claimed, "round {round}");
    }
}
