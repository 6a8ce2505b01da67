//! Hand-offs between identical replicas (Postgres): a replica that holds no key for a network
//! (or not the one key a payment must be sent from, `PaymentMeta::sender`) queues the claimed
//! payment (see `Settle::hand_off`); a replica that holds one (that one) takes it with
//! `FOR UPDATE SKIP LOCKED` and settles it as the holder of the row, bounded by the requester's
//! deadline, recording every end in the row, which the requester reads.
//!
//! One listener connection per process hears `LISTEN` announcements of queued hand-offs (to wake
//! the taker) and of recorded outcomes (to wake waiting requesters); both sides also poll, so a
//! missed notification only costs a fraction of a second.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::reconcile::{Revived, payment_of};
use super::settle::{Settle, plugin_deadline};
use super::{Facilitator, SettleWatch};
use crate::ledger::{ClaimToken, HANDOFF_CHANNEL, OUTCOME_CHANNEL, SettlementRecord, now_ms};
use crate::scheme::Deadline;

/// How often the taker looks for queued hand-offs without being told.
const POLL: Duration = Duration::from_millis(250);
/// Hand-offs settled at once by one replica.
const IN_FLIGHT: usize = 64;

pub(super) fn spawn(
    fac: Arc<Facilitator>,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    if !fac.handoffs.enabled {
        return Vec::new();
    }
    vec![
        tokio::spawn(listen(fac.clone(), stop.clone())),
        tokio::spawn(take(fac, stop)),
    ]
}

/// Turns Postgres notifications into wake-ups; reconnects after a lost connection.
async fn listen(fac: Arc<Facilitator>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let mut listener = match fac.ledger.listen().await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "cannot listen for hand-offs; polling meanwhile");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                received = listener.recv() => match received {
                    Ok(n) if n.channel() == HANDOFF_CHANNEL => fac.handoffs.work.notify_one(),
                    Ok(n) if n.channel() == OUTCOME_CHANNEL => fac.handoffs.outcome.notify_waiters(),
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, "hand-off listener lost its connection; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

/// Takes queued hand-offs of the networks this process can sign for (of those pinned to one
/// key, only the ones whose key it holds), and settles them.
async fn take(fac: Arc<Facilitator>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let timing = fac.timing();
    let lease = timing.deadline + timing.lease_margin;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = fac.handoffs.work.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
        let networks = fac.signing_networks();
        let free = slots.available_permits();
        if networks.is_empty() || free == 0 {
            continue;
        }
        let signers = fac.leases.usable();
        let rows = match fac
            .ledger
            .take_handoffs(&networks, &signers, lease, i64::try_from(free).unwrap_or(1))
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %e, "cannot take hand-offs");
                continue;
            }
        };
        for (row, token) in rows {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                break;
            };
            let fac = fac.clone();
            tokio::spawn(async move {
                let _slot = slot;
                settle_for_another(&fac, row, token).await;
            });
        }
    }
}

/// Settles a payment another replica claimed, as the holder of its row.
async fn settle_for_another(fac: &Facilitator, row: SettlementRecord, token: ClaimToken) {
    let key = row.replay_key.clone();
    let Revived {
        handler,
        request,
        payment,
    } = match payment_of(fac, &row) {
        Ok(revived) => revived,
        Err(why) => {
            warn!(replay_key = %key, %why, "a handed-off payment cannot be revived; it is left to the reconciler");
            return;
        }
    };
    let left = row
        .handoff_deadline
        .unwrap_or_default()
        .saturating_sub(now_ms());
    let deadline =
        Deadline::at(Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(0)));
    let watch = SettleWatch::unwatched();
    let job = Settle {
        fac,
        handler: handler.as_ref(),
        request: &request,
        network: request.payload_network().to_string(),
        fingerprint: row
            .fingerprint
            .clone()
            .unwrap_or_else(|| request.fingerprint()),
        payment_id: row.payment_id.clone(),
        deadline: plugin_deadline(deadline),
        watch: &watch,
        handed_off: true,
        caller: &crate::access::Caller::anonymous(),
        sent: std::sync::atomic::AtomicBool::new(false),
    };
    fac.metrics.taken_over.fetch_add(1, Ordering::Relaxed);
    match job.submit_claimed(&payment, &token).await {
        Ok(answer) => {
            info!(replay_key = %key, success = answer.success, reason = answer.error_reason.as_deref().unwrap_or(""), "settled a handed-off payment")
        }
        Err(e) => warn!(replay_key = %key, error = %e, "a handed-off payment could not be settled"),
    }
    if let Err(e) = fac.ledger.notify(OUTCOME_CHANNEL, &key).await {
        warn!(error = %e, "cannot announce a hand-off's outcome; its requester polls");
    }
}
