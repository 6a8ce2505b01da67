//! The settle sequence around the ledger: claim → prepare → record → broadcast → confirm → record.
//!
//! Each branch leaves the ledger row in a state that tells the truth about the chain: `claimed`
//! rows are deleted when nothing was broadcast, `submitted` rows keep the transaction id whenever
//! it may be on chain, and a settle that cannot see the outcome in time gives up its lease and
//! answers `settlement_pending`, so the next identical settle reconciles instead of broadcasting.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Facilitator, FacilitatorError, settle_failure};
use crate::ledger::{ClaimOutcome, NewClaim, SettlementRecord, SettlementState, now_ms};
use crate::protocol::{PaymentRequest, SettleResponse, reason};
use crate::scheme::{
    Broadcast, CheckedPayment, Preparation, Rejection, SchemeError, SchemeHandler, TxStatus,
};

/// Extra lease time beyond the confirmation bound, so that a live settle is never taken over.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// Re-signing rounds when a nonce turns out to be taken.
const MAX_PREPARE_ROUNDS: usize = 3;

pub(super) async fn run(
    fac: &Facilitator,
    handler: &dyn SchemeHandler,
    payment: &CheckedPayment,
    request: &PaymentRequest,
    network: String,
) -> Result<SettleResponse, FacilitatorError> {
    let run = Run {
        fac,
        handler,
        payment,
        network,
        deadline: Instant::now() + fac.confirm_timeout,
    };
    let claim = NewClaim {
        replay_key: payment.replay_key.clone(),
        network: payment.network.to_string(),
        scheme: request.scheme().to_string(),
        x402_version: request.x402_version(),
        payer: payment.payer.clone(),
        pay_to: payment.pay_to.clone(),
        asset: payment.asset.clone(),
        amount: payment.amount.clone(),
        resource_url: request.resource_url().map(str::to_string),
    };
    match fac.ledger.claim(&claim, run.lease()).await? {
        ClaimOutcome::Claimed => run.submit().await,
        ClaimOutcome::Existing(row) => run.existing(*row).await,
    }
}

struct Run<'a> {
    fac: &'a Facilitator,
    handler: &'a dyn SchemeHandler,
    payment: &'a CheckedPayment,
    network: String,
    deadline: Instant,
}

impl Run<'_> {
    fn lease(&self) -> Duration {
        self.fac.confirm_timeout + LEASE_MARGIN
    }

    fn key(&self) -> &str {
        &self.payment.replay_key
    }

    fn fail(&self, rejection: Rejection, transaction: &str) -> SettleResponse {
        settle_failure(
            rejection.with_payer(self.payment.payer.clone()),
            transaction,
            &self.network,
        )
    }

    /// Someone claimed this payment before us.
    async fn existing(&self, row: SettlementRecord) -> Result<SettleResponse, FacilitatorError> {
        let tx = row.tx_id.clone().unwrap_or_default();
        let duplicate = || {
            self.fail(
                Rejection::new(reason::DUPLICATE_SETTLEMENT)
                    .with_message("this payment is being settled by another request"),
                &tx,
            )
        };
        match row.state {
            SettlementState::Settled => Ok(self.fail(
                Rejection::new(self.payment.replay_reason)
                    .with_message(format!("payment already settled in transaction {tx}")),
                "",
            )),
            _ if row.lease_active(now_ms()) => Ok(duplicate()),
            // The holder stopped before broadcasting anything (crash or lost connection).
            SettlementState::Claimed => {
                if self
                    .fac
                    .ledger
                    .take_over(self.key(), SettlementState::Claimed, self.lease())
                    .await?
                {
                    self.submit().await
                } else {
                    Ok(duplicate())
                }
            }
            // A transaction is recorded: find out what became of it, never broadcast again.
            SettlementState::Submitted => {
                if self
                    .fac
                    .ledger
                    .take_over(self.key(), SettlementState::Submitted, self.lease())
                    .await?
                {
                    info!(tx = %tx, "reconciling a previously submitted settlement");
                    self.confirm(&tx).await
                } else {
                    Ok(duplicate())
                }
            }
            // `claim` re-claims failed rows itself; seeing one here means we lost that race.
            SettlementState::Failed => Ok(duplicate()),
        }
    }

    async fn submit(&self) -> Result<SettleResponse, FacilitatorError> {
        for _ in 0..MAX_PREPARE_ROUNDS {
            let prepared = match self.handler.prepare(self.payment).await {
                Ok(Preparation::Ready(prepared)) => prepared,
                Ok(Preparation::Rejected(rejection)) => {
                    self.fac.ledger.release(self.key()).await?;
                    return Ok(self.fail(rejection, ""));
                }
                Err(e) => {
                    self.fac.ledger.release(self.key()).await?;
                    return Err(e.into());
                }
            };
            if !self
                .fac
                .ledger
                .record_submitted(self.key(), &prepared.tx_id, &prepared.signer)
                .await?
            {
                // Our claim is gone: nothing was sent, and someone else owns the payment now.
                return Err(
                    SchemeError::Internal(format!("lost the claim on {}", self.key())).into(),
                );
            }
            match self.handler.broadcast(self.payment, &prepared).await {
                Ok(Broadcast::Sent) => return self.confirm(&prepared.tx_id).await,
                Ok(Broadcast::Ambiguous(why)) => {
                    warn!(tx = %prepared.tx_id, %why, "broadcast outcome unknown; confirming by id");
                    return self.confirm(&prepared.tx_id).await;
                }
                Ok(Broadcast::Retry(why)) => {
                    warn!(tx = %prepared.tx_id, %why, "transaction cannot be mined as signed; signing again");
                }
                Ok(Broadcast::Rejected(rejection)) => {
                    self.fac
                        .ledger
                        .record_failed(self.key(), &rejection.reason)
                        .await?;
                    return Ok(self.fail(rejection, ""));
                }
                Err(e) => {
                    self.fac
                        .ledger
                        .record_failed(self.key(), reason::UNEXPECTED_SETTLE_ERROR)
                        .await?;
                    return Err(e.into());
                }
            }
        }
        self.fac
            .ledger
            .record_failed(self.key(), reason::UNEXPECTED_SETTLE_ERROR)
            .await?;
        Err(SchemeError::Signer(format!("nonce conflicts in {MAX_PREPARE_ROUNDS} rounds")).into())
    }

    async fn confirm(&self, tx: &str) -> Result<SettleResponse, FacilitatorError> {
        let pending = |message: String| {
            self.fail(
                Rejection::new(reason::SETTLEMENT_PENDING).with_message(message),
                tx,
            )
        };
        match self
            .handler
            .await_outcome(self.payment, tx, self.deadline)
            .await
        {
            Ok(TxStatus::Confirmed) => {
                self.fac.ledger.record_settled(self.key(), tx).await?;
                Ok(SettleResponse {
                    success: true,
                    error_reason: None,
                    error_message: None,
                    payer: Some(self.payment.payer.clone()),
                    transaction: tx.to_string(),
                    network: self.network.clone(),
                    extensions: None,
                })
            }
            Ok(TxStatus::Failed(rejection)) => {
                self.fac
                    .ledger
                    .record_failed(self.key(), &rejection.reason)
                    .await?;
                Ok(self.fail(rejection, tx))
            }
            Ok(TxStatus::Pending) => {
                self.fac.ledger.end_lease(self.key()).await?;
                Ok(pending("not confirmed within the settle bound; settle again with the same payload to reconcile".into()))
            }
            Err(e) => {
                // It may be on chain: the row keeps the id and the next settle reconciles it.
                warn!(tx, error = %e, "cannot read the outcome of a broadcast transaction");
                self.fac.ledger.end_lease(self.key()).await?;
                Ok(pending(format!(
                    "outcome unknown ({e}); settle again with the same payload to reconcile"
                )))
            }
        }
    }
}
