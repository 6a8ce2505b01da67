//! The settle sequence around the ledger: claim → prepare → record → broadcast → confirm → record.
//!
//! Each branch leaves the ledger row in a state that tells the truth about the chain: `claimed`
//! rows are deleted when nothing was broadcast, `submitted` rows keep the transaction (id and
//! bytes) whenever it may be on chain, and a settle that cannot see the outcome in time gives up
//! its lease and answers `settlement_pending`, so the next identical settle reconciles instead of
//! broadcasting.

use std::time::Duration;

use tracing::{info, warn};

use super::{Facilitator, FacilitatorError, settle_failure};
use crate::ledger::{
    ClaimOutcome, ClaimToken, NewClaim, SettlementRecord, SettlementState, Submission, Transition,
    now_ms,
};
use crate::protocol::{PaymentRequest, SettleResponse, reason};
use crate::scheme::{
    Broadcast, CheckedPayment, Deadline, Preparation, RecordedTx, Rejection, SchemeError,
    SchemeHandler, TxStatus,
};

/// Re-signing rounds when a nonce turns out to be taken.
const MAX_PREPARE_ROUNDS: usize = 3;

pub(super) async fn run(
    fac: &Facilitator,
    handler: &dyn SchemeHandler,
    payment: &CheckedPayment,
    request: &PaymentRequest,
    network: String,
    payment_id: Option<String>,
    reconcile_only: Option<Rejection>,
) -> Result<SettleResponse, FacilitatorError> {
    let request_json = request.to_json();
    let run = Run {
        fac,
        handler,
        payment,
        network,
        deadline: Deadline::after(fac.timing.confirm_timeout),
        request_json: request_json.clone(),
    };
    let claim = NewClaim {
        replay_key: payment.meta.replay_key.clone(),
        network: payment.meta.network.to_string(),
        scheme: request.scheme().to_string(),
        x402_version: request.x402_version(),
        payer: payment.meta.payer.clone(),
        pay_to: payment.meta.pay_to.clone(),
        asset: payment.meta.asset.clone(),
        amount: payment.meta.amount.clone(),
        resource_url: request.resource_url().map(str::to_string),
        payment_id,
        request: request_json,
    };
    match fac.ledger.claim(&claim, run.lease()).await? {
        // A payment that no longer passes the checks is only here to learn the outcome of an
        // earlier settle; with nothing recorded there is nothing to learn, and nothing is sent.
        ClaimOutcome::Claimed(token) if reconcile_only.is_some() => {
            // Nothing was done under this claim; if it was lost meanwhile, there is nothing to undo.
            let _ = fac.ledger.release(&claim.replay_key, &token).await?;
            Ok(run.fail(
                reconcile_only.unwrap_or_else(|| Rejection::new(reason::UNEXPECTED_SETTLE_ERROR)),
                "",
            ))
        }
        ClaimOutcome::Claimed(token) => {
            fault_point("after_claim");
            run.submit(&token).await
        }
        ClaimOutcome::Existing(row) => run.existing(*row).await,
    }
}

/// Test builds (`--features fault-injection`) can stop dead here so that a test can SIGKILL the
/// process between two settle steps: `X402_FAULT_PAUSE_AT=<point>` freezes the settle at that
/// point and says so on stderr. A kill cannot be aimed at an exact instruction otherwise, so this
/// is the one simulated part of the crash tests; the kill and the restart are real.
fn fault_point(point: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("X402_FAULT_PAUSE_AT").is_ok_and(|p| p == point) {
        eprintln!("fault injection: paused at {point}");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let _ = point;
}

struct Run<'a> {
    fac: &'a Facilitator,
    handler: &'a dyn SchemeHandler,
    payment: &'a CheckedPayment,
    network: String,
    deadline: Deadline,
    /// The request as stored, to recognise the retry owed a final answer.
    request_json: String,
}

impl Run<'_> {
    fn lease(&self) -> Duration {
        self.fac.timing.confirm_timeout + self.fac.timing.lease_margin
    }

    fn key(&self) -> &str {
        &self.payment.meta.replay_key
    }

    /// A transition lost here means another holder took the row over while this settle ran
    /// (its lease ran out): the answer still says what this settle saw, and the new holder
    /// records the outcome from the chain.
    fn note(&self, done: Transition, what: &str) {
        if done == Transition::Lost {
            warn!(replay_key = %self.key(), "{what}: the row was taken over by another holder");
        }
    }

    fn fail(&self, rejection: Rejection, transaction: &str) -> SettleResponse {
        settle_failure(
            rejection.with_payer(self.payment.meta.payer.clone()),
            transaction,
            &self.network,
        )
    }

    fn success(&self, tx: &str) -> SettleResponse {
        SettleResponse {
            success: true,
            error_reason: None,
            error_message: None,
            payer: Some(self.payment.meta.payer.clone()),
            transaction: tx.to_string(),
            network: self.network.clone(),
            extensions: None,
        }
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
        let ledger = &self.fac.ledger;
        match row.state {
            // The client was told `settlement_pending` and the reconciler finished the payment
            // before its retry came: that retry (the identical request, once) gets the success.
            SettlementState::Settled
                if row.request == self.request_json
                    && ledger.take_pending_report(self.key()).await?.applied() =>
            {
                Ok(self.success(&tx))
            }
            SettlementState::Settled => Ok(self.fail(
                Rejection::new(self.payment.meta.replay_reason)
                    .with_message(format!("payment already settled in transaction {tx}")),
                "",
            )),
            _ if row.lease_active(now_ms()) => Ok(duplicate()),
            // The holder stopped before broadcasting anything (crash or lost connection).
            SettlementState::Claimed => match ledger.take_over(&row, self.lease()).await? {
                Some(token) => self.submit(&token).await,
                None => Ok(duplicate()),
            },
            // A transaction is recorded: find out what became of it, never broadcast anew.
            SettlementState::Submitted => match ledger.take_over(&row, self.lease()).await? {
                Some(token) => {
                    info!(tx = %tx, "reconciling a previously submitted settlement");
                    let txs = [RecordedTx {
                        tx_id: tx.clone(),
                        raw: row.raw_tx.as_deref().and_then(hex_decode),
                    }];
                    let status = self
                        .handler
                        .reconcile(self.payment, &txs, self.deadline)
                        .await;
                    match status {
                        Ok(TxStatus::Pending) => self.confirm(&token, &tx).await,
                        other => self.finish(&token, &tx, other).await,
                    }
                }
                None => Ok(duplicate()),
            },
            // `claim` re-claims failed rows itself; seeing one here means we lost that race.
            SettlementState::Failed => Ok(duplicate()),
        }
    }

    async fn submit(&self, token: &ClaimToken) -> Result<SettleResponse, FacilitatorError> {
        let ledger = &self.fac.ledger;
        for _ in 0..MAX_PREPARE_ROUNDS {
            let prepared = match self.handler.prepare(self.payment, self.deadline).await {
                Ok(Preparation::Ready(prepared)) => prepared,
                Ok(Preparation::Rejected(rejection)) => {
                    self.abandon(token).await?;
                    return Ok(self.fail(rejection, ""));
                }
                Err(e) => {
                    self.abandon(token).await?;
                    return Err(e.into());
                }
            };
            let fence = prepared.lease.as_ref().map(|l| self.fac.leases.fence_of(l));
            let raw = hex_encode(&prepared.raw);
            let submission = Submission {
                tx_id: &prepared.tx_id,
                raw_tx: &raw,
                signer: &prepared.signer,
                fence: fence.as_ref(),
            };
            let recorded = match ledger
                .record_submitted(self.key(), token, &submission)
                .await
            {
                Ok(recorded) => recorded,
                Err(e) => {
                    // Not recorded (as far as we can tell), so never sent: give the nonce back.
                    self.handler.discard(&prepared).await;
                    return Err(e.into());
                }
            };
            if recorded == Transition::Lost {
                // Our claim or our signer lease is gone: nothing was sent, and nothing will be.
                self.handler.discard(&prepared).await;
                self.abandon(token).await?;
                return Err(SchemeError::Signer(format!(
                    "the lease on {} or the claim on this payment was lost before broadcast",
                    prepared.signer
                ))
                .into());
            }
            fault_point("after_record");
            match self
                .handler
                .broadcast(self.payment, &prepared, self.deadline)
                .await
            {
                Ok(Broadcast::Sent) => {
                    fault_point("after_broadcast");
                    return self.confirm(token, &prepared.tx_id).await;
                }
                Ok(Broadcast::Ambiguous(why)) => {
                    warn!(tx = %prepared.tx_id, %why, "broadcast outcome unknown; confirming by id");
                    return self.confirm(token, &prepared.tx_id).await;
                }
                Ok(Broadcast::Retry(why)) => {
                    warn!(tx = %prepared.tx_id, %why, "transaction cannot be mined as signed; signing again");
                }
                Ok(Broadcast::Rejected(rejection)) => {
                    let done = ledger
                        .record_failed(self.key(), token, &rejection.reason)
                        .await?;
                    self.note(done, "record_failed");
                    return Ok(self.fail(rejection, ""));
                }
                Err(e) => {
                    let done = ledger
                        .record_failed(self.key(), token, reason::UNEXPECTED_SETTLE_ERROR)
                        .await?;
                    self.note(done, "record_failed");
                    return Err(e.into());
                }
            }
        }
        let done = ledger
            .record_failed(self.key(), token, reason::UNEXPECTED_SETTLE_ERROR)
            .await?;
        self.note(done, "record_failed");
        Err(SchemeError::Signer(format!("nonce conflicts in {MAX_PREPARE_ROUNDS} rounds")).into())
    }

    /// Ends a claim under which nothing can have been broadcast.
    async fn abandon(&self, token: &ClaimToken) -> Result<(), FacilitatorError> {
        let ledger = &self.fac.ledger;
        // A first round deletes the row; a later round (after a Retry) has a superseded
        // transaction recorded that can never be mined, so the row is marked failed instead.
        if ledger.release(self.key(), token).await? == Transition::Lost {
            let done = ledger
                .record_failed(self.key(), token, reason::UNEXPECTED_SETTLE_ERROR)
                .await?;
            self.note(done, "record_failed");
        }
        Ok(())
    }

    async fn confirm(
        &self,
        token: &ClaimToken,
        tx: &str,
    ) -> Result<SettleResponse, FacilitatorError> {
        let txs = [RecordedTx {
            tx_id: tx.to_string(),
            raw: None,
        }];
        let status = self
            .handler
            .await_outcome(self.payment, &txs, self.deadline)
            .await;
        if matches!(status, Ok(TxStatus::Confirmed(_))) {
            fault_point("after_confirm");
        }
        self.finish(token, tx, status).await
    }

    /// Records what the chain said and answers.
    async fn finish(
        &self,
        token: &ClaimToken,
        tx: &str,
        status: Result<TxStatus, SchemeError>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let ledger = &self.fac.ledger;
        let pending = |message: String| {
            self.fail(
                Rejection::new(reason::SETTLEMENT_PENDING).with_message(message),
                tx,
            )
        };
        match status {
            Ok(TxStatus::Confirmed(_)) => {
                let done = ledger.record_settled(self.key(), token, tx).await?;
                self.note(done, "record_settled");
                // This answer is the final one; nothing more is owed to an earlier pending, and
                // if nothing was owed there is nothing to take.
                let _ = ledger.take_pending_report(self.key()).await?;
                Ok(self.success(tx))
            }
            Ok(TxStatus::Failed(rejection)) => {
                let done = ledger
                    .record_failed(self.key(), token, &rejection.reason)
                    .await?;
                self.note(done, "record_failed");
                Ok(self.fail(rejection, tx))
            }
            Ok(TxStatus::Pending) => {
                let done = ledger.end_lease(self.key(), token, self.lease()).await?;
                self.note(done, "end_lease");
                Ok(pending(
                    "not confirmed within the settle bound; settle again with the same payload to reconcile".into(),
                ))
            }
            Err(e) => {
                // It may be on chain: the row keeps the transaction and the next settle (or the
                // reconciler) finds out.
                warn!(tx, error = %e, "cannot read the outcome of a broadcast transaction");
                let done = ledger.end_lease(self.key(), token, self.lease()).await?;
                self.note(done, "end_lease");
                Ok(pending(format!(
                    "outcome unknown ({e}); settle again with the same payload to reconcile"
                )))
            }
        }
    }
}

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex_encode(&bytes), "0001abff");
        assert_eq!(hex_decode("0001abff").as_deref(), Some(&bytes[..]));
        assert!(hex_decode("abc").is_none() && hex_decode("zz").is_none());
    }
}
