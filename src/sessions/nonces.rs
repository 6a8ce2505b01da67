//! Single-use nonce claims, batched: proofs checked at the same time share one ledger statement
//! and one commit (`Ledger::claim_session_nonces`) instead of one each. A commit per proof was
//! most of `/sessions/verify`'s cost (docs/benchmarks.md, "Sessions"). Nothing waits to fill a
//! batch: the claimer takes whatever queued while the previous statement ran, so a lone proof
//! costs one statement as before, and a burst costs one per burst.

use tokio::sync::{mpsc, oneshot};

use crate::ledger::{SharedLedger, Transition};

/// The most nonces one statement claims (two arguments each: well under SQLite's limit).
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Transition, String>>;

/// The handle requests claim through; the claimer task ends when the last handle is dropped.
#[derive(Clone)]
pub struct NonceClaims {
    queue: mpsc::UnboundedSender<(String, i64, Reply)>,
}

/// Why a claim has no answer: the ledger refused the statement, or the claimer is gone.
#[derive(Debug, thiserror::Error)]
#[error("claiming a sign-in nonce failed: {0}")]
pub struct ClaimFailed(String);

impl NonceClaims {
    /// Starts the claimer task on the current runtime.
    pub fn start(ledger: SharedLedger) -> Self {
        let (queue, inbox) = mpsc::unbounded_channel();
        tokio::spawn(claimer(ledger, inbox));
        NonceClaims { queue }
    }

    /// Claims `key` until `expires_at` (unix ms): `Applied` for its first use, `Lost` for a
    /// replay. An error claimed nothing (the batch's one statement failed as a whole).
    pub async fn claim(&self, key: String, expires_at: i64) -> Result<Transition, ClaimFailed> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((key, expires_at, reply))
            .map_err(|_| ClaimFailed("the nonce claimer stopped".into()))?;
        answer
            .await
            .map_err(|_| ClaimFailed("the nonce claimer dropped the claim".into()))?
            .map_err(ClaimFailed)
    }
}

async fn claimer(ledger: SharedLedger, mut inbox: mpsc::UnboundedReceiver<(String, i64, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while inbox.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let claims: Vec<(&str, i64)> = batch.iter().map(|(k, e, _)| (k.as_str(), *e)).collect();
        match ledger.claim_session_nonces(&claims).await {
            Ok(outcomes) => {
                for ((_, _, reply), outcome) in batch.drain(..).zip(outcomes) {
                    // A requester that stopped waiting (its client left) drops its receiver:
                    // its nonce is spent, as it would have been without the batch.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let why = e.to_string();
                tracing::warn!(error = %why, claims = batch.len(), "claiming sign-in nonces failed");
                for (_, _, reply) in batch.drain(..) {
                    let _ = reply.send(Err(why.clone()));
                }
            }
        }
    }
}
