//! Solana `exact` settlement: co-sign as fee payer (the transaction id is then known: our
//! signature, slot 0), let the core record it, send it with preflight to each node in turn
//! until one takes it, and poll its signature status within the request's deadline, sending
//! the same bytes again every other poll until it lands or expires (docs/solana.md §6).
//!
//! What the chain says is read per node (house style §6, docs/ledger.md):
//! - a send refused at preflight was not forwarded; any answer we cannot classify may have
//!   been forwarded, so it is ambiguous and confirmed by signature (#10 M3);
//! - "expired, no money moved" needs every configured node to say, each for itself: no status
//!   for the signature, and its blockhash invalid both at `processed` (its working fork) and
//!   at `finalized` (#10 M2). A blockhash no longer valid in the finalized bank can land on no
//!   descendant; one the finalized bank has not seen yet is still valid at `processed` on a
//!   healthy node. A lagging node, a node on another fork, or an answer from another node than
//!   the one asked never make the verdict alone.

use solana_commitment_config::{CommitmentConfig, CommitmentLevel};
use solana_rpc_client_api::client_error::TransactionError;
use solana_rpc_client_api::config::RpcSendTransactionConfig;
use solana_rpc_client_api::custom_error::{
    JSON_RPC_SERVER_ERROR_NODE_UNHEALTHY, JSON_RPC_SERVER_ERROR_SEND_TRANSACTION_PREFLIGHT_FAILURE,
    JSON_RPC_SERVER_ERROR_TRANSACTION_SIGNATURE_VERIFICATION_FAILURE,
};
use solana_rpc_client_api::request::RpcResponseErrorData;
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction_status_client_types::{TransactionConfirmationStatus, TransactionStatus};
use tracing::warn;

use super::rpc::{Node, RpcFailure};
use super::{SvmExact, SvmPayment, reason, wire};
use crate::scheme::{
    Broadcast, Deadline, Finality, Inclusion, RecordedTx, Rejection, SchemeError, Signed,
    SignedView, TxStatus,
};

/// Polls between two sends of the same bytes while a transaction has not landed.
const RESEND_EVERY: u32 = 2;
/// Invalid JSON-RPC params: the node could not read the transaction, so it forwarded nothing.
const INVALID_PARAMS: i64 = -32602;

pub(super) fn prepare(h: &SvmExact, p: &SvmPayment) -> Result<Signed<()>, SchemeError> {
    let key = h
        .fee_payers
        .get(p.fee_payer_index)
        .ok_or_else(|| SchemeError::Internal("fee payer index out of range".into()))?;
    let mut tx = p.tx.clone();
    let signature = key.sign_message(&wire::message_bytes(&tx));
    let slot = tx
        .signatures
        .first_mut()
        .ok_or_else(|| SchemeError::Internal("a checked transaction has no signatures".into()))?;
    *slot = signature;
    let raw = wire::encode(&tx)
        .ok_or_else(|| SchemeError::Internal("a signed transaction does not encode".into()))?;
    Ok(Signed {
        tx_id: signature.to_string(),
        signer: key.pubkey().to_string(),
        // Fee payers have no nonce lane: any replica may co-sign with them at once.
        lease: None,
        raw,
        details: (),
    })
}

fn recorded_tx(raw: &[u8]) -> Result<VersionedTransaction, SchemeError> {
    wire::decode(raw)
        .map_err(|e| SchemeError::Internal(format!("recorded transaction unreadable: {e}")))
}

/// What one node said to a send.
enum SendAnswer {
    /// Taken (or already known): it is on its way.
    Taken,
    /// Refused before forwarding, for a reason that holds on every node.
    Refused(Rejection),
    /// Refused before forwarding, for a reason of this node's (lag, unhealthy, cannot decode):
    /// another node may take it.
    NotHere(Rejection),
    /// Never reached the node.
    Unreached(String),
    /// May have been forwarded.
    Unknown(String),
}

fn classify(failure: RpcFailure) -> SendAnswer {
    let (code, message, data) = match failure {
        RpcFailure::Transport {
            reached: false,
            message,
        } => return SendAnswer::Unreached(message),
        RpcFailure::Transport { message, .. } => return SendAnswer::Unknown(message),
        RpcFailure::Node {
            code,
            message,
            data,
        } => (code, message, data),
    };
    let tx_error: Option<TransactionError> = match &*data {
        RpcResponseErrorData::SendTransactionPreflightFailure(result) => {
            result.err.clone().map(Into::into)
        }
        _ => None,
    };
    let text = message.to_ascii_lowercase();
    if tx_error == Some(TransactionError::AlreadyProcessed) || text.contains("already processed") {
        return SendAnswer::Taken;
    }
    match code {
        JSON_RPC_SERVER_ERROR_SEND_TRANSACTION_PREFLIGHT_FAILURE => match tx_error {
            Some(TransactionError::BlockhashNotFound) => SendAnswer::NotHere(
                Rejection::new(reason::TRANSACTION_FAILED)
                    .with_message("the transaction's blockhash has expired; sign a new payment"),
            ),
            Some(err) => SendAnswer::Refused(
                Rejection::new(reason::SIMULATION_FAILED).with_message(format!("{message}: {err}")),
            ),
            // A preflight failure whose result we cannot read: refused, but not known why.
            None if text.contains("blockhash not found") => SendAnswer::NotHere(
                Rejection::new(reason::TRANSACTION_FAILED)
                    .with_message("the transaction's blockhash has expired; sign a new payment"),
            ),
            None => {
                SendAnswer::Refused(Rejection::new(reason::SIMULATION_FAILED).with_message(message))
            }
        },
        JSON_RPC_SERVER_ERROR_TRANSACTION_SIGNATURE_VERIFICATION_FAILURE => {
            SendAnswer::Refused(Rejection::new(reason::SIGNATURE_INVALID).with_message(message))
        }
        // Unhealthy nodes refuse before preflight; undecodable params are never forwarded.
        JSON_RPC_SERVER_ERROR_NODE_UNHEALTHY | INVALID_PARAMS => {
            SendAnswer::NotHere(Rejection::new(reason::TRANSACTION_FAILED).with_message(message))
        }
        // A load balancer's upstream timeout, an internal error: the node may have forwarded
        // the transaction first (#10 M3). Confirm by signature, never call it failed.
        _ => SendAnswer::Unknown(format!("{message} (code {code})")),
    }
}

async fn send_to(
    h: &SvmExact,
    node: &Node,
    tx: &VersionedTransaction,
    deadline: Deadline,
) -> SendAnswer {
    let config = RpcSendTransactionConfig {
        skip_preflight: false,
        preflight_commitment: Some(CommitmentLevel::Confirmed),
        encoding: Some(solana_transaction_status_client_types::UiTransactionEncoding::Base64),
        // The node's own rebroadcast queue helps; ours resends the same bytes too.
        max_retries: None,
        min_context_slot: None,
    };
    match h
        .rpc
        .on(
            deadline,
            node.client.send_transaction_with_config(tx, config),
        )
        .await
    {
        Ok(_) => SendAnswer::Taken,
        Err(e) => classify(e),
    }
}

/// The same bytes to each node in turn until one takes them (house style §6: resending the
/// recorded bytes is safe, they can land once). A refusal that holds everywhere stops; one of
/// a single node's moves on.
pub(super) async fn send(
    h: &SvmExact,
    raw: &[u8],
    deadline: Deadline,
) -> Result<Broadcast, SchemeError> {
    let tx = recorded_tx(raw)?;
    let mut unknown: Option<String> = None;
    let mut refused: Option<Rejection> = None;
    let mut unreached = Vec::new();
    for node in h.rpc.nodes() {
        if deadline.passed() {
            unknown.get_or_insert_with(|| "the deadline passed before every node was asked".into());
            break;
        }
        match send_to(h, node, &tx, deadline).await {
            SendAnswer::Taken => return Ok(Broadcast::Sent),
            SendAnswer::Refused(r) => {
                refused = Some(r);
                break;
            }
            SendAnswer::NotHere(r) => refused = Some(r),
            SendAnswer::Unreached(why) => unreached.push(why),
            SendAnswer::Unknown(why) => unknown = Some(why),
        }
    }
    Ok(match (unknown, refused) {
        // A node that may have forwarded it outweighs any refusal elsewhere.
        (Some(why), _) => Broadcast::Ambiguous(why),
        (None, Some(rejection)) => Broadcast::Rejected(rejection),
        (None, None) => Broadcast::Unreachable(unreached.join("; ")),
    })
}

pub(super) async fn broadcast(
    h: &SvmExact,
    prepared: &SignedView<'_, ()>,
    deadline: Deadline,
) -> Result<Broadcast, SchemeError> {
    send(h, prepared.raw, deadline).await
}

fn signature_of(tx_id: &str) -> Result<Signature, SchemeError> {
    tx_id.parse().map_err(|_| {
        SchemeError::Internal(format!(
            "recorded transaction id {tx_id} is not a signature"
        ))
    })
}

/// A status as the plugin reports it: `Pending` while it landed but is not confirmed; never
/// "expired" for a transaction seen at any level.
fn judged(tx_id: &str, status: TransactionStatus) -> TxStatus {
    if let Some(err) = status.err {
        return TxStatus::Failed(
            Rejection::new(reason::TRANSACTION_FAILED)
                .with_message(format!("landed and failed: {err}")),
        );
    }
    match status.confirmation_status {
        Some(
            TransactionConfirmationStatus::Confirmed | TransactionConfirmationStatus::Finalized,
        ) => TxStatus::Confirmed(Inclusion {
            tx_id: tx_id.to_string(),
            block: Some(status.slot),
            block_hash: None,
        }),
        _ => TxStatus::Pending,
    }
}

/// One node's word on a signature (with history).
async fn status_on(
    h: &SvmExact,
    node: &Node,
    signature: &Signature,
    deadline: Deadline,
) -> Result<Option<TransactionStatus>, RpcFailure> {
    let call = node
        .client
        .get_signature_statuses_with_history(std::slice::from_ref(signature));
    let answer = h.rpc.on(deadline, call).await?;
    Ok(answer.value.into_iter().next().flatten())
}

/// Where a signature stands, from the first node that answers: `None` while none saw it land.
async fn status(
    h: &SvmExact,
    tx_id: &str,
    deadline: Deadline,
) -> Result<Option<TxStatus>, SchemeError> {
    let signature = signature_of(tx_id)?;
    let mut unseen = false;
    let mut failure = None;
    for node in h.rpc.nodes() {
        match status_on(h, node, &signature, deadline).await {
            Ok(Some(status)) => return Ok(Some(judged(tx_id, status))),
            // Not seen by this node; another (the one it was sent to) may have it.
            Ok(None) => unseen = true,
            Err(e) => failure = Some(e),
        }
    }
    match failure {
        Some(e) if !unseen => Err(SchemeError::Rpc(e.message())),
        _ => Ok(None),
    }
}

/// Whether one node says the transaction can no longer land: unseen, its blockhash invalid at
/// its working fork and in its finalized bank, and still unseen after (a transaction that
/// landed just before expiry is seen).
async fn expired_on(
    h: &SvmExact,
    node: &Node,
    p: &SvmPayment,
    signature: &Signature,
    deadline: Deadline,
) -> Result<bool, RpcFailure> {
    let blockhash = *p.tx.message.recent_blockhash();
    if status_on(h, node, signature, deadline).await?.is_some() {
        return Ok(false);
    }
    for commitment in [CommitmentConfig::processed(), CommitmentConfig::finalized()] {
        let call = node.client.is_blockhash_valid(&blockhash, commitment);
        if h.rpc.on(deadline, call).await? {
            return Ok(false);
        }
    }
    Ok(status_on(h, node, signature, deadline).await?.is_none())
}

/// "Expired, no money moved": only when every configured node says so for itself.
async fn expired_everywhere(
    h: &SvmExact,
    p: &SvmPayment,
    tx_id: &str,
    deadline: Deadline,
) -> Result<bool, SchemeError> {
    let signature = signature_of(tx_id)?;
    for node in h.rpc.nodes() {
        match expired_on(h, node, p, &signature, deadline).await {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            // A node we cannot hear from gives no verdict: wait.
            Err(_) => return Ok(false),
        }
    }
    Ok(true)
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

/// Sends the recorded bytes again; what the nodes answer changes nothing here (the status and
/// the expiry verdict decide), so it is only logged.
async fn resend(h: &SvmExact, newest: &RecordedTx, deadline: Deadline) {
    let Some(raw) = newest.raw.as_deref() else {
        return;
    };
    match send(h, raw, deadline).await {
        Ok(Broadcast::Sent) => {}
        Ok(Broadcast::Rejected(r)) => {
            warn!(tx = %newest.tx_id, reason = %r.reason, "a resend was refused at preflight")
        }
        Ok(_) => warn!(tx = %newest.tx_id, "a resend reached no node for sure"),
        Err(e) => warn!(tx = %newest.tx_id, error = %e, "cannot resend"),
    }
}

pub(super) async fn await_outcome(
    h: &SvmExact,
    p: &SvmPayment,
    txs: &[RecordedTx],
    deadline: Deadline,
) -> Result<TxStatus, SchemeError> {
    let newest = newest(txs)?;
    let tx_id = newest.tx_id.as_str();
    let mut polls = 0u32;
    loop {
        match status(h, tx_id, deadline).await? {
            Some(TxStatus::Pending) => {} // landed, not final yet: keep waiting
            Some(done) => return Ok(done),
            None if expired_everywhere(h, p, tx_id, deadline).await? => return Ok(expired(tx_id)),
            None if polls % RESEND_EVERY == RESEND_EVERY - 1 => resend(h, newest, deadline).await,
            None => {}
        }
        if deadline.passed() {
            return Ok(TxStatus::Pending);
        }
        tokio::time::sleep(deadline.cap(h.options.confirm_poll)).await;
        polls += 1;
    }
}

pub(super) async fn reconcile(
    h: &SvmExact,
    p: &SvmPayment,
    txs: &[RecordedTx],
    deadline: Deadline,
) -> Result<TxStatus, SchemeError> {
    let newest = newest(txs)?;
    let tx_id = newest.tx_id.as_str();
    if let Some(known) = status(h, tx_id, deadline).await? {
        return Ok(known);
    }
    if expired_everywhere(h, p, tx_id, deadline).await? {
        return Ok(expired(tx_id));
    }
    // Never seen but still landable (a crash between record and send, or a dropped packet):
    // the recorded bytes again, with preflight, so a transaction that would now fail costs no
    // fee (docs/solana.md §6); the same signature can only land once.
    if let Some(raw) = newest.raw.as_deref()
        && let Broadcast::Unreachable(why) = send(h, raw, deadline).await?
    {
        return Err(SchemeError::Rpc(why));
    }
    Ok(TxStatus::Pending)
}

/// Whether the recorded transaction landed, from its signature status alone.
pub(super) async fn examine(
    h: &SvmExact,
    txs: &[RecordedTx],
    deadline: Deadline,
) -> Result<Option<TxStatus>, SchemeError> {
    let tx_id = newest(txs)?.tx_id.as_str();
    Ok(match status(h, tx_id, deadline).await? {
        Some(TxStatus::Pending) | None => None,
        Some(done) => Some(done),
    })
}

/// The reorg watch: `Final` once any node reports the signature finalized; `Vanished` only when
/// every node answers and none knows it any more; `Holding` otherwise.
pub(super) async fn finality(
    h: &SvmExact,
    inclusion: &Inclusion,
    deadline: Deadline,
) -> Result<Finality, SchemeError> {
    let signature = signature_of(&inclusion.tx_id)?;
    let mut gone = 0;
    for node in h.rpc.nodes() {
        match status_on(h, node, &signature, deadline).await {
            Ok(Some(s))
                if s.confirmation_status == Some(TransactionConfirmationStatus::Finalized) =>
            {
                return Ok(Finality::Final);
            }
            Ok(Some(_)) => {}
            Ok(None) => gone += 1,
            Err(_) => {}
        }
    }
    Ok(if gone == h.rpc.nodes().len() {
        Finality::Vanished
    } else {
        Finality::Holding
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use solana_rpc_client_api::response::RpcSimulateTransactionResult;

    fn node(code: i64, message: &str, data: RpcResponseErrorData) -> RpcFailure {
        RpcFailure::Node {
            code,
            message: message.into(),
            data: Box::new(data),
        }
    }

    fn preflight(err: TransactionError) -> RpcResponseErrorData {
        let result: RpcSimulateTransactionResult = serde_json::from_value(serde_json::json!({
            "err": serde_json::to_value(&err).expect("serializes"),
        }))
        .expect("a simulation result");
        RpcResponseErrorData::SendTransactionPreflightFailure(result)
    }

    #[test]
    fn send_answers_are_classified() {
        assert!(matches!(
            classify(node(
                -32002,
                "x",
                preflight(TransactionError::AlreadyProcessed)
            )),
            SendAnswer::Taken
        ));
        assert!(matches!(
            classify(node(
                -32002,
                "x",
                preflight(TransactionError::BlockhashNotFound)
            )),
            SendAnswer::NotHere(_)
        ));
        assert!(matches!(
            classify(node(
                -32002,
                "x",
                preflight(TransactionError::InsufficientFundsForFee)
            )),
            SendAnswer::Refused(_)
        ));
        assert!(matches!(
            classify(node(-32003, "sig", RpcResponseErrorData::Empty)),
            SendAnswer::Refused(_)
        ));
        assert!(matches!(
            classify(node(-32005, "behind", RpcResponseErrorData::Empty)),
            SendAnswer::NotHere(_)
        ));
        // Unknown codes may have been forwarded (#10 M3).
        for code in [-32603, -32000, -32016, 500] {
            assert!(
                matches!(
                    classify(node(code, "?", RpcResponseErrorData::Empty)),
                    SendAnswer::Unknown(_)
                ),
                "{code}"
            );
        }
        assert!(matches!(
            classify(RpcFailure::Transport {
                reached: false,
                message: "refused".into()
            }),
            SendAnswer::Unreached(_)
        ));
        assert!(matches!(
            classify(RpcFailure::Transport {
                reached: true,
                message: "cut".into()
            }),
            SendAnswer::Unknown(_)
        ));
    }
}
