//! The reconciler: finishes ledger rows that a crash, a restart or a slow chain left unfinished,
//! from chain state alone, and watches settled rows until their transaction is past the reorg
//! depth. It runs once before the service accepts requests (bounded in time) and then in the
//! background. Several replicas may run it at once: a row is worked on only by whoever wins the
//! `take_over` compare-and-set on its expired lease, and only rows of networks this process
//! serves are looked at.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::settle::{Settle, current, hex_encode, plugin_deadline};
use super::{Facilitator, SettleWatch};
use crate::ledger::{
    ClaimToken, Included, SettlementRecord, SettlementState, Submission, Transition,
};
use crate::protocol::PaymentRequest;
use crate::scheme::{
    Broadcast, CheckedPayment, Deadline, Finality, Inclusion, RecordedTx, SchemeHandler, TxStatus,
};

/// Rows looked at per pass.
const BATCH: i64 = 100;
/// Longest wait between two reconcile attempts on one row.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Exponential backoff per row: the first retries come within seconds, a row the chain keeps
/// having no answer for (an RPC down for hours) is retried every 10 minutes, not every pass.
fn backoff(reconciles: i64) -> Duration {
    let doubling = u32::try_from(reconciles.clamp(0, 10)).unwrap_or(10);
    (Duration::from_secs(1) * 2u32.pow(doubling)).min(MAX_BACKOFF)
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One pass over the expired unfinished rows and the settled rows not yet final; returns how
/// many rows it finished.
pub async fn pass(fac: &Facilitator) -> usize {
    let networks = fac.served_networks();
    if networks.is_empty() {
        return 0;
    }
    let rows = match fac.ledger.stale(&networks, BATCH).await {
        Ok(rows) => rows,
        Err(e) => {
            warn!(error = %e, "reconciler cannot read the ledger");
            return 0;
        }
    };
    let mut finished = 0;
    for row in rows {
        match reconcile_row(fac, &row).await {
            Ok(true) => finished += 1,
            Ok(false) => {}
            Err(e) => {
                inc(&fac.metrics.reconcile_errors);
                warn!(replay_key = %row.replay_key, error = %e, "reconcile failed; will retry");
            }
        }
    }
    // Reservation notes of earlier days are never adopted again: their fee stays on its day.
    if let Err(e) = fac
        .ledger
        .prune_holds(crate::ledger::utc_day(crate::ledger::now_ms()))
        .await
    {
        warn!(error = %e, "cannot prune old budget reservation notes");
    }
    match fac.ledger.unfinal(&networks, BATCH).await {
        Ok(rows) => {
            for row in rows {
                if let Err(e) = watch_row(fac, &row).await {
                    warn!(replay_key = %row.replay_key, error = %e, "reorg watch failed; will retry");
                    let _ = fac
                        .ledger
                        .watch_later(&row.replay_key, backoff(row.reconciles + 3))
                        .await;
                }
            }
        }
        Err(e) => warn!(error = %e, "reconciler cannot read the ledger"),
    }
    match fac.ledger.failed_to_recheck(&networks, FAILED_BATCH).await {
        Ok(rows) => {
            for row in rows {
                match recheck_row(fac, &row).await {
                    Ok(true) => finished += 1,
                    Ok(false) => {}
                    Err(e) => {
                        warn!(replay_key = %row.replay_key, error = %e, "failed-row recheck failed; will retry")
                    }
                }
            }
        }
        Err(e) => warn!(error = %e, "reconciler cannot read the ledger"),
    }
    finished
}

/// Failed rows looked at per pass.
const FAILED_BATCH: i64 = 20;

/// A failed row with recorded transactions, looked at again (backing off): repaired to
/// `settled` if the chain shows it paid after all.
async fn recheck_row(fac: &Facilitator, row: &SettlementRecord) -> Result<bool, String> {
    let timing = fac.timing();
    let lease = timing.deadline + timing.lease_margin;
    let Some(token) = fac
        .ledger
        .take_over(row, lease)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(false);
    };
    let Revived {
        handler, request, ..
    } = match payment_of(fac, row) {
        Ok(found) => found,
        Err(why) => {
            let _ = fac.ledger.defer(&row.replay_key, &token, MAX_BACKOFF).await;
            return Err(why);
        }
    };
    let watch = SettleWatch::unwatched();
    let job = Settle {
        fac,
        handler: handler.as_ref(),
        request: &request,
        network: request.payload_network().to_string(),
        fingerprint: row.fingerprint.clone().unwrap_or_default(),
        payment_id: row.payment_id.clone(),
        deadline: plugin_deadline(Deadline::after(timing.deadline)),
        watch: &watch,
        handed_off: false,
        caller: &crate::access::Caller::anonymous(),
        sent: std::sync::atomic::AtomicBool::new(false),
    };
    let repaired = job
        .recheck_failed(row, &token, backoff(row.reconciles + 1))
        .await
        .map_err(|e| e.to_string())?;
    if repaired {
        inc(&fac.metrics.reconcile_settled);
        info!(replay_key = %row.replay_key, "a failed payment was repaired: the chain shows it paid");
    }
    Ok(repaired)
}

/// A stored row's payment as the settle machinery needs it: its request (parsed once), the
/// handler that serves it, and the payment revived from it (no clock, no chain).
pub(super) struct Revived {
    pub handler: Arc<dyn SchemeHandler>,
    pub request: PaymentRequest,
    pub payment: CheckedPayment,
}

/// Revives a stored row (reconciler, failed-row recheck, reorg watch, hand-offs).
pub(super) fn payment_of(fac: &Facilitator, row: &SettlementRecord) -> Result<Revived, String> {
    let request = crate::protocol::parse_request(row.request.as_bytes())
        .map_err(|e| format!("stored request unreadable: {e:?}"))?;
    let handler = fac
        .handler(&request)
        .map_err(|r| format!("no handler for the stored request: {}", r.reason))?;
    let payment = handler
        .revive(&request)
        .map_err(|r| format!("the stored request no longer parses: {}", r.reason))?;
    Ok(Revived {
        handler,
        request,
        payment,
    })
}

/// `Ok(true)` when the row reached a final state (or was released).
async fn reconcile_row(fac: &Facilitator, row: &SettlementRecord) -> Result<bool, String> {
    let timing = fac.timing();
    let lease = timing.deadline + timing.lease_margin;
    let ledger = &fac.ledger;
    let Some(token) = ledger
        .take_over(row, lease)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(false); // another replica took it, or its holder came back
    };
    let key = row.replay_key.as_str();
    let give_back = async |why: String| {
        // Lost: someone else holds the row now, and will decide.
        let _ = ledger.defer(key, &token, backoff(row.reconciles)).await;
        Err::<bool, String>(why)
    };
    if row.state == SettlementState::Claimed {
        // Claimed and nothing recorded since: this attempt broadcast nothing.
        match ledger.release(key, &token).await {
            Ok(Transition::Applied) => {
                inc(&fac.metrics.reconcile_released);
                info!(replay_key = %key, "released a claim its holder abandoned before broadcasting");
                return Ok(true);
            }
            // Transactions of earlier attempts are recorded: the row is never deleted; the
            // next settle of the payment re-examines them.
            Ok(Transition::Lost) => {
                let _ = ledger
                    .record_failed(
                        key,
                        &token,
                        crate::protocol::reason::UNEXPECTED_SETTLE_ERROR,
                    )
                    .await;
                return Ok(true);
            }
            Err(e) => return give_back(e.to_string()).await,
        }
    }
    let Revived {
        handler, payment, ..
    } = match payment_of(fac, row) {
        Ok(found) => found,
        Err(why) => return give_back(why).await,
    };
    let deadline = plugin_deadline(Deadline::after(timing.deadline));
    let txs = match ledger.txs(key).await {
        Ok(all) => current(row, &all),
        Err(e) => return give_back(e.to_string()).await,
    };
    match handler.reconcile(&payment, &txs, deadline).await {
        Ok(TxStatus::Confirmed(inclusion)) => {
            let block = inclusion.block.and_then(|b| i64::try_from(b).ok());
            let included = Included {
                tx_id: &inclusion.tx_id,
                block_number: block,
                block_hash: inclusion.block_hash.as_deref(),
            };
            if !ledger
                .record_settled(key, &token, &included, crate::ledger::Answer::Owed)
                .await
                .map_err(|e| e.to_string())?
                .applied()
            {
                return Ok(false); // taken over meanwhile; its new holder records it
            }
            inc(&fac.metrics.reconcile_settled);
            info!(replay_key = %key, tx = %inclusion.tx_id, "reconciled: settled");
            Ok(true)
        }
        Ok(TxStatus::Failed(rejection)) => {
            if !ledger
                .record_failed(key, &token, &rejection.reason)
                .await
                .map_err(|e| e.to_string())?
                .applied()
            {
                return Ok(false);
            }
            inc(&fac.metrics.reconcile_failed);
            info!(replay_key = %key, reason = %rejection.reason, "reconciled: failed");
            Ok(true)
        }
        Ok(TxStatus::Pending) => {
            inc(&fac.metrics.reconcile_pending);
            if let Err(why) =
                replace_stuck(fac, handler.as_ref(), &payment, &token, &txs, deadline).await
            {
                warn!(replay_key = %key, %why, "cannot replace a stuck transaction");
            }
            let _ = ledger.defer(key, &token, backoff(row.reconciles)).await;
            Ok(false)
        }
        Err(e) => give_back(e.to_string()).await,
    }
}

/// A stuck transaction (priced below the chain, or past its authorization) gets its
/// replacement, recorded before it is broadcast like any transaction.
async fn replace_stuck(
    fac: &Facilitator,
    handler: &dyn SchemeHandler,
    payment: &CheckedPayment,
    token: &ClaimToken,
    txs: &[RecordedTx],
    deadline: Deadline,
) -> Result<(), String> {
    let Some(replacement) = handler
        .replace(payment, txs, deadline)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let key = payment.meta.replay_key.as_str();
    let fence = replacement.lease.as_ref().map(|l| fac.leases.fence_of(l));
    let raw = hex_encode(&replacement.raw);
    let submission = Submission {
        tx_id: &replacement.tx_id,
        raw_tx: &raw,
        signer: &replacement.signer,
        fence: fence.as_ref(),
    };
    match fac.ledger.record_submitted(key, token, &submission).await {
        Ok(Transition::Applied) => {}
        Ok(Transition::Lost) => {
            handler.discard(&replacement).await;
            return Ok(());
        }
        Err(e) => {
            handler.discard(&replacement).await;
            return Err(e.to_string());
        }
    }
    info!(replay_key = %key, tx = %replacement.tx_id, "replacing a stuck transaction");
    match handler.broadcast(payment, &replacement, deadline).await {
        Ok(Broadcast::Rejected(r)) => Err(format!("the replacement was refused: {}", r.reason)),
        Ok(Broadcast::Unreachable(why)) => Err(why),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// A settled row whose transaction is not yet final: final → stop watching; gone in a reorg →
/// back to `submitted`, to be reconciled from the chain again.
async fn watch_row(fac: &Facilitator, row: &SettlementRecord) -> Result<(), String> {
    let handler = payment_of(fac, row)?.handler;
    let Some(tx) = row.tx_id.clone() else {
        return Ok(());
    };
    let inclusion = Inclusion {
        tx_id: tx.clone(),
        block: row.block_number.and_then(|b| u64::try_from(b).ok()),
        block_hash: row.block_hash.clone(),
    };
    let deadline = Deadline::after(fac.timing().deadline);
    match handler
        .finality(&inclusion, deadline)
        .await
        .map_err(|e| e.to_string())?
    {
        Finality::Final => {
            let _ = fac
                .ledger
                .finalize(&row.replay_key, &tx)
                .await
                .map_err(|e| e.to_string())?;
        }
        Finality::Holding => {}
        Finality::Vanished => {
            if fac
                .ledger
                .unsettle(row)
                .await
                .map_err(|e| e.to_string())?
                .applied()
            {
                inc(&fac.metrics.reorged);
                warn!(replay_key = %row.replay_key, %tx, "the block of a settled payment left the chain; reconciling it again");
            }
        }
    }
    Ok(())
}

/// Runs a pass every `interval` until `stop`.
pub fn spawn(
    fac: Arc<Facilitator>,
    interval: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(interval) => { pass(&fac).await; }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(9), MAX_BACKOFF.min(Duration::from_secs(512)));
        assert_eq!(backoff(50), MAX_BACKOFF);
        assert_eq!(backoff(-1), Duration::from_secs(1));
    }
}
