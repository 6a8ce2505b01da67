//! The reconciler: finishes ledger rows that a crash, a restart or a slow chain left unfinished,
//! from chain state alone. It runs once before the service accepts requests and then in the
//! background. Several replicas may run it at once: a row is worked on only by whoever wins the
//! `take_over` compare-and-set on its expired lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Facilitator;
use super::settle::hex_decode;
use crate::ledger::{SettlementRecord, SettlementState};
use crate::protocol::parse_request;
use crate::scheme::{Deadline, RecordedTx, TxStatus};

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

/// One pass over the expired unfinished rows; returns how many it finished.
pub async fn pass(fac: &Facilitator) -> usize {
    let rows = match fac.ledger.stale(BATCH).await {
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
                fac.metrics.reconcile_errors.fetch_add(1, Ordering::Relaxed);
                warn!(replay_key = %row.replay_key, error = %e, "reconcile failed; will retry");
            }
        }
    }
    finished
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// `Ok(true)` when the row reached a final state (or was released).
async fn reconcile_row(fac: &Facilitator, row: &SettlementRecord) -> Result<bool, String> {
    let lease = fac.timing.confirm_timeout + fac.timing.lease_margin;
    let ledger = &fac.ledger;
    let Some(token) = ledger
        .take_over(row, lease)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(false); // another replica took it, or its holder came back
    };
    if row.state == SettlementState::Claimed {
        // Claimed but never recorded a transaction: nothing can have been broadcast.
        // Lost: the holder came back meanwhile; either way the row is no longer ours to count.
        let _ = ledger
            .release(&row.replay_key, &token)
            .await
            .map_err(|e| e.to_string())?;
        inc(&fac.metrics.reconcile_released);
        info!(replay_key = %row.replay_key, "released a claim its holder abandoned before broadcasting");
        return Ok(true);
    }
    let give_back = async |why: String| {
        let _ = ledger
            .defer(&row.replay_key, &token, backoff(row.reconciles))
            .await;
        Err::<bool, String>(why)
    };
    let tx = row.tx_id.clone().unwrap_or_default();
    let request = match parse_request(row.request.as_bytes()) {
        Ok(request) => request,
        Err(e) => return give_back(format!("stored request unreadable: {e:?}")).await,
    };
    let handler = match fac.handler(&request) {
        Ok(handler) => handler,
        Err(r) => {
            return give_back(format!("no handler for the stored request: {}", r.reason)).await;
        }
    };
    let payment = match handler.revive(&request) {
        Ok(payment) => payment,
        Err(r) => return give_back(format!("stored request no longer parses: {}", r.reason)).await,
    };
    let txs = [RecordedTx {
        tx_id: tx.clone(),
        raw: row.raw_tx.as_deref().and_then(hex_decode),
    }];
    let deadline = Deadline::after(fac.timing.confirm_timeout);
    match handler.reconcile(&payment, &txs, deadline).await {
        Ok(TxStatus::Confirmed(_)) => {
            if !ledger
                .record_settled(&row.replay_key, &token, &tx)
                .await
                .map_err(|e| e.to_string())?
                .applied()
            {
                return Ok(false); // taken over meanwhile; its new holder records it
            }
            inc(&fac.metrics.reconcile_settled);
            info!(replay_key = %row.replay_key, %tx, "reconciled: settled");
            Ok(true)
        }
        Ok(TxStatus::Failed(rejection)) => {
            if !ledger
                .record_failed(&row.replay_key, &token, &rejection.reason)
                .await
                .map_err(|e| e.to_string())?
                .applied()
            {
                return Ok(false);
            }
            inc(&fac.metrics.reconcile_failed);
            info!(replay_key = %row.replay_key, %tx, reason = %rejection.reason, "reconciled: failed");
            Ok(true)
        }
        Ok(TxStatus::Pending) => {
            inc(&fac.metrics.reconcile_pending);
            let _ = ledger
                .defer(&row.replay_key, &token, backoff(row.reconciles))
                .await;
            Ok(false)
        }
        Err(e) => give_back(e.to_string()).await,
    }
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
