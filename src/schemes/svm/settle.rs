//! Solana `exact` settlement: co-sign as fee payer (the transaction id is then known: our
//! signature, slot 0), let the core record it, send with preflight, and poll the signature status
//! within the bound. A transaction whose blockhash has expired can never land: that is a clear
//! failure (no money moved), never a hang.

use std::time::Instant;

use serde_json::{Value, json};

use super::rpc::RpcFailure;
use super::verify::cosigned;
use super::{SvmExact, SvmPayment, reason};
use crate::scheme::{
    Broadcast, Inclusion, RecordedTx, Rejection, SchemeError, Signed, SignedView, TxStatus,
};

pub(super) fn prepare(h: &SvmExact, p: &SvmPayment) -> Result<Signed<()>, SchemeError> {
    let tx = cosigned(h, p)?;
    let fee_payer = h
        .fee_payers
        .get(p.fee_payer_index)
        .map(|k| k.pubkey().to_string())
        .unwrap_or_default();
    Ok(Signed {
        tx_id: tx.transaction_id(),
        signer: fee_payer,
        // Fee payers have no nonce lane: any replica may co-sign with them at once.
        lease: None,
        raw: tx.serialize(),
        details: (),
    })
}

fn base64_of(raw: &[u8]) -> Result<String, SchemeError> {
    super::wire::VersionedTransaction::decode(raw)
        .map(|tx| tx.to_base64())
        .map_err(|e| SchemeError::Internal(format!("recorded transaction unreadable: {e}")))
}

pub(super) async fn broadcast(
    h: &SvmExact,
    prepared: &SignedView<'_, ()>,
) -> Result<Broadcast, SchemeError> {
    let params = json!([base64_of(prepared.raw)?, {
        "encoding": "base64",
        "skipPreflight": false,
        "preflightCommitment": "confirmed",
        "maxRetries": 0,
    }]);
    match h.rpc.send("sendTransaction", params).await {
        Ok(_) => Ok(Broadcast::Sent),
        Err(RpcFailure::Node {
            code,
            message,
            data,
        }) => {
            let m = message.to_ascii_lowercase();
            if m.contains("already processed") || data.to_string().contains("AlreadyProcessed") {
                return Ok(Broadcast::Sent);
            }
            let rejection = match code {
                -32003 => Rejection::new(reason::SIGNATURE_INVALID),
                -32002
                    if m.contains("blockhash")
                        || data.to_string().contains("BlockhashNotFound") =>
                {
                    Rejection::new(reason::TRANSACTION_FAILED)
                        .with_message("the transaction's blockhash has expired; sign a new payment")
                }
                -32002 => Rejection::new(reason::SIMULATION_FAILED),
                _ => {
                    return Err(SchemeError::Rpc(format!(
                        "node refused the transaction: {message} (code {code})"
                    )));
                }
            };
            let detail = format!("{message} {}", data.get("err").unwrap_or(&Value::Null));
            let rejection = if rejection.message.is_some() {
                rejection
            } else {
                rejection.with_message(detail)
            };
            Ok(Broadcast::Rejected(rejection))
        }
        Err(transport) => Ok(Broadcast::Ambiguous(transport.message())),
    }
}

/// Where a signature stands: `None` while it has not landed, `Some(Pending)` when it landed but is
/// not final yet, `Some(final)` otherwise.
async fn status(h: &SvmExact, tx_id: &str) -> Result<Option<TxStatus>, SchemeError> {
    let result = h
        .rpc
        .read(
            "getSignatureStatuses",
            json!([[tx_id], { "searchTransactionHistory": true }]),
        )
        .await
        .map_err(|e| SchemeError::Rpc(e.message()))?;
    let s = &result["value"][0];
    if s.is_null() {
        return Ok(None);
    }
    if !s["err"].is_null() {
        return Ok(Some(TxStatus::Failed(
            Rejection::new(reason::TRANSACTION_FAILED)
                .with_message(format!("landed and failed: {}", s["err"])),
        )));
    }
    // Seen at `processed` only: it landed but is not final yet. It must never be called expired.
    let level = s["confirmationStatus"].as_str().unwrap_or_default();
    Ok(Some(if level == "confirmed" || level == "finalized" {
        TxStatus::Confirmed(Inclusion {
            tx_id: tx_id.to_string(),
            block: s["slot"].as_u64(),
            block_hash: None,
        })
    } else {
        TxStatus::Pending
    }))
}

async fn blockhash_valid(h: &SvmExact, p: &SvmPayment) -> Result<bool, SchemeError> {
    let hash = bs58::encode(p.tx.message().recent_blockhash()).into_string();
    let result = h
        .rpc
        .read(
            "isBlockhashValid",
            json!([hash, { "commitment": "processed" }]),
        )
        .await
        .map_err(|e| SchemeError::Rpc(e.message()))?;
    Ok(result["value"].as_bool().unwrap_or(false))
}

fn expired(tx_id: &str) -> TxStatus {
    TxStatus::Failed(
        Rejection::new(reason::TRANSACTION_FAILED).with_message(format!(
            "transaction {tx_id} never landed and its blockhash has expired; no money moved"
        )),
    )
}

/// The transaction the core recorded last.
fn newest(txs: &[RecordedTx]) -> Result<&RecordedTx, SchemeError> {
    txs.last()
        .ok_or_else(|| SchemeError::Internal("no recorded transaction to follow".into()))
}

pub(super) async fn await_outcome(
    h: &SvmExact,
    p: &SvmPayment,
    txs: &[RecordedTx],
    deadline: Instant,
) -> Result<TxStatus, SchemeError> {
    let tx_id = newest(txs)?.tx_id.as_str();
    loop {
        match status(h, tx_id).await? {
            Some(TxStatus::Pending) => {} // landed, not final yet: keep waiting
            Some(done) => return Ok(done),
            // Not landed: once the blockhash is no longer valid it never will. (The status is
            // read again after, so a transaction that landed just before expiry is still seen.)
            None if !blockhash_valid(h, p).await? => match status(h, tx_id).await? {
                Some(TxStatus::Pending) => {}
                Some(done) => return Ok(done),
                None => return Ok(expired(tx_id)),
            },
            None => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(TxStatus::Pending);
        }
        tokio::time::sleep(h.options.confirm_poll.min(deadline - now)).await;
    }
}

pub(super) async fn reconcile(
    h: &SvmExact,
    p: &SvmPayment,
    txs: &[RecordedTx],
) -> Result<TxStatus, SchemeError> {
    let newest = newest(txs)?;
    let (tx_id, raw) = (newest.tx_id.as_str(), newest.raw.as_deref());
    if let Some(known) = status(h, tx_id).await? {
        return Ok(known);
    }
    if !blockhash_valid(h, p).await? {
        return Ok(match status(h, tx_id).await? {
            Some(done) => done,
            None => expired(tx_id),
        });
    }
    // Never seen but still landable (a crash between record and send, or a dropped packet):
    // send the recorded bytes again; the same signature can only land once.
    if let Some(raw) = raw {
        let params = json!([base64_of(raw)?, { "encoding": "base64", "skipPreflight": true, "maxRetries": 0 }]);
        if let Err(RpcFailure::Transport(m)) = h.rpc.send("sendTransaction", params).await {
            return Err(SchemeError::Rpc(m));
        }
    }
    Ok(TxStatus::Pending)
}

/// Whether the recorded transaction landed, from its signature status alone.
pub(super) async fn examine(
    h: &SvmExact,
    txs: &[RecordedTx],
) -> Result<Option<TxStatus>, SchemeError> {
    let tx_id = newest(txs)?.tx_id.as_str();
    Ok(match status(h, tx_id).await? {
        Some(TxStatus::Pending) | None => None,
        Some(done) => Some(done),
    })
}
