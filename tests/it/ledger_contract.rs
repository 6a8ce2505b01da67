//! The ledger contract, run against both backends: real Postgres and real SQLite must behave
//! identically for every transition the settle path relies on.

use std::time::Duration;

use futures_util::future::join_all;
use x402_facilitator::ledger::{self, ClaimOutcome, NewClaim, SettlementState, SharedLedger};

use crate::harness::Db;

const LEASE: Duration = Duration::from_secs(30);

async fn open(db: &Db) -> SharedLedger {
    ledger::connect(&db.url(), 8, Duration::from_secs(5))
        .await
        .expect("ledger opens and migrates")
}

fn claim(key: &str) -> NewClaim {
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
    }
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
        assert_eq!(
            l.claim(&claim("k1"), LEASE).await.expect("claim"),
            ClaimOutcome::Claimed
        );
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
                .filter(|r| **r == ClaimOutcome::Claimed)
                .count(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn transitions_follow_the_state_machine() {
    for_both(|l| async move {
        l.claim(&claim("k"), LEASE).await.expect("claim");
        assert!(
            !l.record_settled("k", "0xabc").await.expect("cas"),
            "claimed → settled is not a transition"
        );
        assert!(
            l.record_submitted("k", "0xabc", "0xsigner")
                .await
                .expect("cas")
        );
        assert!(
            !l.release("k").await.expect("cas"),
            "a submitted row is never released"
        );
        assert!(
            !l.record_settled("k", "0xother").await.expect("cas"),
            "settled only with the recorded tx"
        );
        assert!(l.record_settled("k", "0xabc").await.expect("cas"));
        assert!(
            !l.record_failed("k", "x").await.expect("cas"),
            "settled is final"
        );
        let row = l.find("k").await.expect("find").expect("row");
        assert_eq!(row.state, SettlementState::Settled);
        assert_eq!(row.tx_id.as_deref(), Some("0xabc"));
        assert_eq!(row.signer.as_deref(), Some("0xsigner"));
        assert!(!row.lease_active(ledger_now()));
        match l.claim(&claim("k"), LEASE).await.expect("claim") {
            ClaimOutcome::Existing(r) => assert_eq!(r.state, SettlementState::Settled),
            other => panic!("{other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn release_and_failed_rows_can_be_claimed_again() {
    for_both(|l| async move {
        l.claim(&claim("r"), LEASE).await.expect("claim");
        assert!(l.release("r").await.expect("release"));
        assert!(l.find("r").await.expect("find").is_none());
        assert_eq!(
            l.claim(&claim("r"), LEASE).await.expect("claim"),
            ClaimOutcome::Claimed
        );
        l.record_submitted("r", "0x1", "0xs")
            .await
            .expect("submitted");
        assert!(
            l.record_failed("r", "invalid_exact_evm_transaction_failed")
                .await
                .expect("failed")
        );
        let failed = l.find("r").await.expect("find").expect("row");
        assert_eq!(
            failed.error_reason.as_deref(),
            Some("invalid_exact_evm_transaction_failed")
        );
        assert_eq!(
            l.claim(&claim("r"), LEASE).await.expect("reclaim"),
            ClaimOutcome::Claimed
        );
        let again = l.find("r").await.expect("find").expect("row");
        assert_eq!(
            (again.state, again.attempts, again.tx_id),
            (SettlementState::Claimed, 2, None)
        );
    })
    .await;
}

#[tokio::test]
async fn take_over_needs_an_expired_lease() {
    for_both(|l| async move {
        l.claim(&claim("t"), LEASE).await.expect("claim");
        l.record_submitted("t", "0x1", "0xs")
            .await
            .expect("submitted");
        assert!(
            !l.take_over("t", SettlementState::Submitted, LEASE)
                .await
                .expect("cas"),
            "lease still held"
        );
        assert!(l.end_lease("t").await.expect("end lease"));
        assert!(
            !l.take_over("t", SettlementState::Claimed, LEASE)
                .await
                .expect("cas"),
            "wrong state"
        );
        assert!(
            l.take_over("t", SettlementState::Submitted, LEASE)
                .await
                .expect("cas")
        );
        assert!(
            !l.take_over("t", SettlementState::Submitted, LEASE)
                .await
                .expect("cas"),
            "only one taker"
        );
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
        assert_eq!(db.count("SELECT count(*) FROM ledger_migrations").await, 1);
    }
}

fn ledger_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
