//! EVM `exact` settlement: estimate, take a nonce, sign locally (so the hash is known and recorded
//! before anything is sent), send to one RPC, and judge the receipt, which must succeed and carry
//! the token's `Transfer(from, to, value)` event (digest §4.5 and its newer-upstream checks).

use std::str::FromStr;
use std::time::{Duration, Instant};

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip1559::Eip1559Estimation;
use alloy::eips::eip2718::Encodable2718;
use alloy::primitives::{B256, TxKind, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionInput, TransactionReceipt, TransactionRequest};
use alloy::signers::SignerSync;
use alloy::sol_types::{SolCall, SolEvent, SolValue};
use tracing::warn;

use super::chain::RpcFailure;
use super::contracts::IEip3009;
use super::verify::{diagnose, rpc, settlement_call};
use super::{EvmExact, EvmPayment, reason};
use crate::scheme::{
    Broadcast, Deadline, Inclusion, RecordedTx, Rejection, SchemeError, Signed, SignedView,
    SignerLease, Stop, TxStatus,
};

/// Fee estimates are reused this long: one `eth_feeHistory` per block, not per settle.
const FEE_TTL: Duration = Duration::from_secs(2);
/// Gas limit = estimate × 6/5: the estimate is exact for this call, the margin absorbs state drift.
const GAS_MARGIN_NUM: u64 = 6;
const GAS_MARGIN_DEN: u64 = 5;

/// What `prepare` hands `broadcast`.
pub struct SignedTx {
    signer_index: usize,
    nonce: u64,
}

pub(super) async fn prepare(h: &EvmExact, p: &EvmPayment) -> Result<Signed<SignedTx>, Stop> {
    let (to, data) = settlement_call(h, p);
    let Some((signer_index, fence)) = h.signers.pick(|a| h.gate.fence(&h.lease_key(a))).await
    else {
        return Err(SchemeError::Signer(format!(
            "this process holds no signer lease on {}; another replica settles for now",
            h.network
        ))
        .into());
    };
    let signer = h
        .signers
        .get(signer_index)
        .ok_or_else(|| SchemeError::Internal("signer index out of range".into()))?;
    let request = TransactionRequest::default()
        .from(signer.address)
        .to(to)
        .input(TransactionInput::new(data.clone()));
    // Estimate before a nonce is taken: a reverting estimate must not burn one.
    let gas = match h
        .chain
        .read(|pr| {
            let r = request.clone();
            async move { pr.estimate_gas(r).await }
        })
        .await
    {
        Ok(gas) => gas,
        Err(failure @ RpcFailure::Node(_)) => {
            let text = failure.revert_text().unwrap_or_else(|| failure.message());
            return Err(diagnose(h, p, &text).await?.into());
        }
        Err(transport) => return Err(rpc(transport).into()),
    };
    if gas > h.options.max_gas_limit {
        return Err(Rejection::new(reason::SIMULATION_FAILED)
            .with_message(format!(
                "gas estimate {gas} exceeds this network's cap of {}",
                h.options.max_gas_limit
            ))
            .into());
    }
    let gas_limit = (gas * GAS_MARGIN_NUM / GAS_MARGIN_DEN).min(h.options.max_gas_limit);
    let fees = fees(h).await?;
    if let Some(cap) = h.options.max_fee_per_gas
        && fees.max_fee_per_gas > cap
    {
        return Err(SchemeError::Unavailable(format!(
            "network fee {} wei/gas is above the configured cap {cap}",
            fees.max_fee_per_gas
        ))
        .into());
    }
    let nonce = h
        .signers
        .take_nonce(signer_index, &h.chain)
        .await
        .map_err(rpc)?;
    let tx = TxEip1559 {
        chain_id: h.chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        to: TxKind::Call(to),
        value: U256::ZERO,
        access_list: Default::default(),
        input: data,
    };
    let signature = match signer.key.sign_hash_sync(&tx.signature_hash()) {
        Ok(s) => s,
        Err(e) => {
            h.signers.release_nonce(signer_index, nonce).await;
            return Err(SchemeError::Signer(format!("signing failed: {e}")).into());
        }
    };
    let envelope = TxEnvelope::from(tx.into_signed(signature));
    let tx_id = format!("{:#x}", envelope.tx_hash());
    Ok(Signed {
        tx_id,
        signer: signer.address.to_checksum(None),
        lease: Some(SignerLease {
            signer: h.lease_key(signer.address),
            fence,
        }),
        raw: envelope.encoded_2718(),
        details: SignedTx {
            signer_index,
            nonce,
        },
    })
}

async fn fees(h: &EvmExact) -> Result<Eip1559Estimation, SchemeError> {
    let mut cached = h.fees.lock().await;
    if let Some((at, fees)) = cached.as_ref()
        && at.elapsed() < FEE_TTL
    {
        return Ok(*fees);
    }
    let fees = h
        .chain
        .read(|p| async move { p.estimate_eip1559_fees().await })
        .await
        .map_err(rpc)?;
    *cached = Some((Instant::now(), fees));
    Ok(fees)
}

/// Hands back the nonce of a transaction that will never be sent.
pub(super) async fn discard(h: &EvmExact, prepared: &SignedView<'_, SignedTx>) {
    let signed = prepared.details;
    h.signers
        .release_nonce(signed.signer_index, signed.nonce)
        .await;
}

pub(super) async fn broadcast(
    h: &EvmExact,
    prepared: &SignedView<'_, SignedTx>,
) -> Result<Broadcast, SchemeError> {
    let signed = prepared.details;
    let failure = match h.chain.sender().send_raw_transaction(prepared.raw).await {
        Ok(_) => return Ok(Broadcast::Sent),
        Err(e) => RpcFailure::from(e),
    };
    let RpcFailure::Node(payload) = &failure else {
        return Ok(Broadcast::Ambiguous(failure.message()));
    };
    let message = payload.message.to_ascii_lowercase();
    let has = |s: &str| message.contains(s);
    if has("already known") || has("known transaction") || has("already imported") {
        return Ok(Broadcast::Sent);
    }
    if has("nonce too low")
        || has("nonce too high")
        || has("replacement")
        || has("nonce has already been used")
    {
        // Another transaction holds this nonce (another process, or our view was stale):
        // this one can never be mined. Re-read the nonce and sign again.
        h.signers.resync(signed.signer_index).await;
        return Ok(Broadcast::Retry(payload.message.to_string()));
    }
    // Refusals known to happen before a mempool: the nonce goes back. Anything else the node
    // says may have come after the transaction was passed on (a hosted RPC's "upstream
    // timeout"), so it is ambiguous: the nonce stays taken and the outcome is read by id.
    let refused = has("insufficient funds")
        || has("fee cap")
        || has("base fee")
        || has("underpriced")
        || has("intrinsic gas")
        || failure.revert_text().is_some();
    if !refused {
        return Ok(Broadcast::Ambiguous(format!(
            "node answered: {}",
            payload.message
        )));
    }
    h.signers
        .release_nonce(signed.signer_index, signed.nonce)
        .await;
    if has("insufficient funds") {
        return Err(SchemeError::Signer(format!(
            "signer {} cannot pay for gas",
            prepared.signer
        )));
    }
    if let Some(text) = failure.revert_text() {
        return Ok(Broadcast::Rejected(
            Rejection::new(reason::from_revert(&text)).with_message(text),
        ));
    }
    *h.fees.lock().await = None;
    Ok(Broadcast::Retry(payload.message.to_string()))
}

pub(super) async fn await_outcome(
    h: &EvmExact,
    p: &EvmPayment,
    txs: &[RecordedTx],
    deadline: Deadline,
) -> Result<TxStatus, SchemeError> {
    let deadline = deadline.instant();
    let tx_id = newest(txs)?.tx_id.as_str();
    let hash = B256::from_str(tx_id)
        .map_err(|_| SchemeError::Internal(format!("bad transaction id {tx_id}")))?;
    let poll = h.options.receipt_poll;
    let mut last_error = None;
    let mut answered = false;
    loop {
        // The receipt is read at once (an automining chain already has it), then once per new
        // block: waiting settles share one `eth_blockNumber` per poll interval.
        let head = h.chain.head(poll).await.ok();
        match h
            .chain
            .read(|pr| async move { pr.get_transaction_receipt(hash).await })
            .await
        {
            Ok(Some(receipt)) => return Ok(judge(p, tx_id, &receipt)),
            Ok(None) => answered = true,
            Err(e) => {
                warn!(tx = tx_id, error = %e.message(), "receipt poll failed");
                last_error = Some(e);
            }
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                return match last_error {
                    Some(e) if !answered => Err(rpc(e)),
                    _ => Ok(TxStatus::Pending),
                };
            }
            tokio::time::sleep(poll.min(deadline - now)).await;
            match (head, h.chain.head(poll).await) {
                (Some(before), Ok(now)) if now <= before => continue,
                _ => break,
            }
        }
    }
}

/// Finds what became of a recorded transaction; resends its bytes if the chain lost them.
pub(super) async fn reconcile(
    h: &EvmExact,
    p: &EvmPayment,
    txs: &[RecordedTx],
) -> Result<TxStatus, SchemeError> {
    let newest = newest(txs)?;
    let (tx_id, raw) = (newest.tx_id.as_str(), newest.raw.as_deref());
    let hash = B256::from_str(tx_id)
        .map_err(|_| SchemeError::Internal(format!("bad transaction id {tx_id}")))?;
    if let Some(receipt) = h
        .chain
        .read(|pr| async move { pr.get_transaction_receipt(hash).await })
        .await
        .map_err(rpc)?
    {
        return Ok(judge(p, tx_id, &receipt));
    }
    let known = h
        .chain
        .read(|pr| async move { pr.get_transaction_by_hash(hash).await })
        .await
        .map_err(rpc)?;
    if known.is_some() {
        return Ok(TxStatus::Pending);
    }
    // The chain has no trace of it: it was never sent (a crash between record and broadcast)
    // or a node dropped it. Unless the authorization is spent or expired, send the same bytes.
    let a = &p.authorization;
    let used = authorization_used(h, p).await?;
    if used {
        return Ok(TxStatus::Failed(Rejection::new(reason::NONCE_ALREADY_USED).with_message(format!(
            "transaction {tx_id} never executed; the authorization was used by another transaction"
        ))));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if a.valid_before <= U256::from(now) {
        return Ok(TxStatus::Failed(Rejection::new(reason::VALID_BEFORE).with_message(format!(
            "transaction {tx_id} never executed and the authorization has expired; no money moved"
        ))));
    }
    let Some(raw) = raw else {
        return Ok(TxStatus::Pending);
    };
    match h
        .chain
        .sender()
        .send_raw_transaction(raw)
        .await
        .map_err(RpcFailure::from)
    {
        Ok(_) => Ok(TxStatus::Pending),
        Err(RpcFailure::Node(e)) => {
            let m = e.message.to_ascii_lowercase();
            if m.contains("already known") || m.contains("known transaction") {
                Ok(TxStatus::Pending)
            } else if m.contains("nonce too low") || m.contains("nonce has already been used") {
                // Its nonce is spent: by another transaction (this one can then never be mined),
                // or by this very one, mined meanwhile. Look again before calling it dropped.
                if h.chain
                    .read(|pr| async move { pr.get_transaction_receipt(hash).await })
                    .await
                    .map_err(rpc)?
                    .is_some()
                    || authorization_used(h, p).await?
                {
                    return Ok(TxStatus::Pending);
                }
                Ok(TxStatus::Failed(
                    Rejection::new(reason::TRANSACTION_FAILED).with_message(format!(
                        "transaction {tx_id} was dropped (its nonce was reused); no money moved"
                    )),
                ))
            } else {
                Err(SchemeError::Rpc(format!(
                    "resending {tx_id} failed: {}",
                    e.message
                )))
            }
        }
        Err(transport) => Err(rpc(transport)),
    }
}

async fn authorization_used(h: &EvmExact, p: &EvmPayment) -> Result<bool, SchemeError> {
    let a = &p.authorization;
    let call = IEip3009::authorizationStateCall {
        authorizer: a.from,
        nonce: a.nonce,
    }
    .abi_encode();
    let out = h.chain.eth_call(p.asset, call.into()).await.map_err(rpc)?;
    bool::abi_decode(&out)
        .map_err(|e| SchemeError::Rpc(format!("authorizationState unreadable: {e}")))
}

/// The transaction the core recorded last.
fn newest(txs: &[RecordedTx]) -> Result<&RecordedTx, SchemeError> {
    txs.last()
        .ok_or_else(|| SchemeError::Internal("no recorded transaction to follow".into()))
}

/// A mined transaction is a payment only if it succeeded and the asset emitted the transfer.
fn judge(p: &EvmPayment, tx_id: &str, receipt: &TransactionReceipt) -> TxStatus {
    let block = receipt.block_number.unwrap_or_default();
    if !receipt.status() {
        return TxStatus::Failed(
            Rejection::new(reason::TRANSACTION_FAILED)
                .with_message(format!("reverted in block {block}")),
        );
    }
    let a = &p.authorization;
    let paid = receipt.inner.logs().iter().any(|log| {
        log.address() == p.asset
            && IEip3009::Transfer::decode_log(&log.inner)
                .is_ok_and(|t| t.from == a.from && t.to == a.to && t.value == a.value)
    });
    if paid {
        TxStatus::Confirmed(Inclusion {
            tx_id: tx_id.to_string(),
            block: receipt.block_number,
        })
    } else {
        TxStatus::Failed(
            Rejection::new(reason::TRANSFER_EVENT_MISMATCH).with_message(format!(
                "mined in block {block} without Transfer({}, {}, {}) from the asset",
                a.from, a.to, a.value
            )),
        )
    }
}
