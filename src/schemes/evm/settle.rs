//! EVM settlement, shared by every EVM payment kind (EIP-3009 and Permit2 `exact`, `upto`; each
//! says what it needs through [`OnChain`]): estimate, take a nonce, sign locally (so the hash is
//! known and recorded before anything is sent), send the same bytes to each RPC in turn until
//! one takes them, and judge the receipt, which must succeed and carry the token's
//! `Transfer(from, to, value)` event (digest §4.5 and its newer-upstream checks) with the
//! network's confirmations.
//!
//! What makes "failed, no money moved" a verdict (review M2): no recorded transaction has a
//! receipt, none is known to any node, and every configured node agrees, from its own head, that
//! the chain's time is past the authorization's expiry (`validBefore`, a Permit2 `deadline`; with
//! a margin) and the authorization unused; a node
//! that does not answer means no verdict yet. A transaction stuck below the chain's fees is
//! replaced at its nonce with a higher fee while the authorization can still be paid, and
//! cancelled (a zero-value self-transfer at that nonce) once it cannot (review H2).

use std::str::FromStr;
use std::time::{Duration, Instant};

use alloy::consensus::{SignableTransaction, Transaction, TxEip1559, TxEnvelope};
use alloy::eips::BlockId;
use alloy::eips::eip1559::Eip1559Estimation;
use alloy::eips::eip2718::{Decodable2718, Encodable2718};
use alloy::primitives::{Address, B256, TxKind, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionInput, TransactionReceipt, TransactionRequest};
use alloy::signers::SignerSync;
use alloy::sol_types::SolEvent;
use tracing::warn;

use super::chain::{RpcFailure, Sent};
use super::contracts::IEip3009;
use super::network::EvmNetwork;
use super::onchain::OnChain;
use super::verify::rpc;
use crate::ledger::now_ms;
use crate::scheme::{
    Broadcast, Deadline, Finality, Inclusion, RecordedTx, Rejection, SchemeError, Signed,
    SignedView, SignerLease, Stop, TxStatus,
};

/// Fee estimates are reused this long: one `eth_feeHistory` per block, not per settle.
const FEE_TTL: Duration = Duration::from_secs(2);
/// Gas limit = estimate × 6/5: the estimate is exact for this call, the margin absorbs state drift.
const GAS_MARGIN_NUM: u64 = 6;
const GAS_MARGIN_DEN: u64 = 5;
/// A replacement must outbid the transaction it replaces by at least 1/8 (12.5 %) on both fee
/// fields; nodes refuse smaller bumps ("replacement transaction underpriced").
const BUMP_NUM: u128 = 9;
const BUMP_DEN: u128 = 8;

/// Why `prepare` signed nothing.
pub(super) enum Unprepared {
    Stop(Stop),
    /// The gas estimate reverted: the plugin names the cause (a diagnosis of the payment).
    Reverted(RpcFailure),
}

impl<E: Into<Stop>> From<E> for Unprepared {
    fn from(e: E) -> Self {
        Unprepared::Stop(e.into())
    }
}

/// What `prepare` hands `broadcast`.
pub struct SignedTx {
    signer_index: usize,
    nonce: u64,
    /// A replacement reuses a nonce that is still taken by the transaction it replaces: if it is
    /// never sent, the nonce must not be handed back.
    replacement: bool,
}

pub(super) async fn prepare<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    deadline: Deadline,
) -> Result<Signed<SignedTx>, Unprepared> {
    let (to, data) = p.call(h);
    let fence_of = |a| h.gate.fence(&h.lease_key(a));
    let picked = match p.sender() {
        Some(sender) => h.signers.pick_address(sender, fence_of).await,
        None => h.signers.pick(fence_of).await,
    };
    let Some((signer_index, fence)) = picked else {
        let which = match p.sender() {
            Some(sender) => format!("the key {sender} this payment must be sent from"),
            None => "any signer".into(),
        };
        return Err(SchemeError::Signer(format!(
            "this process holds no signer lease on {which} on {}; another replica settles for now",
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
        .read(deadline, |pr| {
            let r = request.clone();
            async move { pr.estimate_gas(r).await }
        })
        .await
    {
        Ok(gas) => gas,
        Err(failure @ RpcFailure::Node(_)) => return Err(Unprepared::Reverted(failure)),
        Err(transport) => return Err(rpc(transport).into()),
    };
    if gas > h.options.max_gas_limit {
        return Err(Rejection::new(p.reasons().unrunnable)
            .with_message(format!(
                "gas estimate {gas} exceeds this network's cap of {}",
                h.options.max_gas_limit
            ))
            .into());
    }
    let gas_limit = (gas * GAS_MARGIN_NUM / GAS_MARGIN_DEN).min(h.options.max_gas_limit);
    let fees = fees(h, deadline).await?;
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
        .take_nonce(signer_index, &h.chain, deadline)
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
    match sign(h, signer_index, fence, tx, false) {
        Ok(signed) => Ok(signed),
        Err(e) => {
            h.signers.release_nonce(signer_index, nonce).await;
            Err(e.into())
        }
    }
}

fn sign(
    h: &EvmNetwork,
    signer_index: usize,
    fence: i64,
    tx: TxEip1559,
    replacement: bool,
) -> Result<Signed<SignedTx>, SchemeError> {
    let signer = h
        .signers
        .get(signer_index)
        .ok_or_else(|| SchemeError::Internal("signer index out of range".into()))?;
    let nonce = tx.nonce;
    let signature = signer
        .key
        .sign_hash_sync(&tx.signature_hash())
        .map_err(|e| SchemeError::Signer(format!("signing failed: {e}")))?;
    let envelope = TxEnvelope::from(tx.into_signed(signature));
    Ok(Signed {
        tx_id: format!("{:#x}", envelope.tx_hash()),
        signer: signer.address.to_checksum(None),
        lease: Some(SignerLease {
            signer: h.lease_key(signer.address),
            fence,
        }),
        raw: envelope.encoded_2718(),
        details: SignedTx {
            signer_index,
            nonce,
            replacement,
        },
    })
}

pub(super) async fn fees(
    h: &EvmNetwork,
    deadline: Deadline,
) -> Result<Eip1559Estimation, SchemeError> {
    let mut cached = h.fees.lock().await;
    if let Some((at, fees)) = cached.as_ref()
        && at.elapsed() < FEE_TTL
    {
        return Ok(*fees);
    }
    let fees = h
        .chain
        .read(deadline, |p| async move { p.estimate_eip1559_fees().await })
        .await
        .map_err(rpc)?;
    *cached = Some((Instant::now(), fees));
    Ok(fees)
}

/// Hands back the nonce of a transaction that will never be sent.
pub(super) async fn discard(h: &EvmNetwork, prepared: &SignedView<'_, SignedTx>) {
    let signed = prepared.details;
    if !signed.replacement {
        h.signers
            .release_nonce(signed.signer_index, signed.nonce)
            .await;
    }
}

pub(super) async fn broadcast<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    prepared: &SignedView<'_, SignedTx>,
    deadline: Deadline,
) -> Result<Broadcast, SchemeError> {
    let signed = prepared.details;
    let payload = match h.chain.send(deadline, prepared.raw).await {
        Sent::Accepted => return Ok(Broadcast::Sent),
        Sent::Ambiguous(why) => return Ok(Broadcast::Ambiguous(why)),
        Sent::Unreachable(why) => {
            // Every URL refused the connection: the bytes never left, the nonce is free.
            discard(h, prepared).await;
            return Ok(Broadcast::Unreachable(why));
        }
        Sent::Refused(RpcFailure::Node(payload)) => payload,
        Sent::Refused(other) => return Ok(Broadcast::Ambiguous(other.message())),
    };
    let failure = RpcFailure::Node(payload.clone());
    let message = payload.message.to_ascii_lowercase();
    let has = |s: &str| message.contains(s);
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
    discard(h, prepared).await;
    if has("insufficient funds") {
        return Err(SchemeError::Signer(format!(
            "signer {} cannot pay for gas",
            prepared.signer
        )));
    }
    if failure.revert_text().is_some() {
        return Ok(Broadcast::Rejected(p.refused(&failure)));
    }
    *h.fees.lock().await = None;
    Ok(Broadcast::Retry(payload.message.to_string()))
}

/// Who signed a recorded transaction (ours are all EIP-1559), by the same libsecp256k1
/// recovery that checks payers' signatures.
fn signer_of(env: &TxEnvelope) -> Option<Address> {
    let signed = env.as_eip1559()?;
    let bytes = signed.signature().as_bytes();
    super::verify::recover(signed.signature_hash(), &bytes)
}

/// A recorded transaction, decoded.
struct Known<'a> {
    recorded: &'a RecordedTx,
    hash: B256,
    envelope: Option<TxEnvelope>,
}

impl Known<'_> {
    /// A zero-value transfer from the signer to itself: a cancellation, never a payment.
    fn is_cancel(&self) -> bool {
        self.envelope.as_ref().is_some_and(|e| {
            e.input().is_empty()
                && e.value().is_zero()
                && signer_of(e).is_some_and(|from| e.to() == Some(from))
        })
    }
}

fn decode(txs: &[RecordedTx]) -> Result<Vec<Known<'_>>, SchemeError> {
    if txs.is_empty() {
        return Err(SchemeError::Internal(
            "no recorded transaction to follow".into(),
        ));
    }
    txs.iter()
        .map(|t| {
            let hash = B256::from_str(&t.tx_id)
                .map_err(|_| SchemeError::Internal(format!("bad transaction id {}", t.tx_id)))?;
            let envelope = t
                .raw
                .as_deref()
                .and_then(|raw| TxEnvelope::decode_2718_exact(raw).ok());
            Ok(Known {
                recorded: t,
                hash,
                envelope,
            })
        })
        .collect()
}

/// The first receipt found among `txs`, newest first.
async fn any_receipt<'a>(
    h: &EvmNetwork,
    txs: &'a [Known<'a>],
    deadline: Deadline,
) -> Result<Option<(&'a Known<'a>, TransactionReceipt)>, SchemeError> {
    for known in txs.iter().rev() {
        let hash = known.hash;
        if let Some(receipt) = h
            .chain
            .read(deadline, |pr| async move {
                pr.get_transaction_receipt(hash).await
            })
            .await
            .map_err(rpc)?
        {
            return Ok(Some((known, receipt)));
        }
    }
    Ok(None)
}

/// What a mined transaction did, once it has the network's confirmations (`None` before).
async fn judged<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    known: &Known<'_>,
    receipt: &TransactionReceipt,
    deadline: Deadline,
) -> Result<Option<TxStatus>, SchemeError> {
    if h.options.confirmations > 1 {
        let included = receipt.block_number.unwrap_or_default();
        let head = h
            .chain
            .head(deadline, h.options.receipt_poll)
            .await
            .map_err(rpc)?;
        if head.saturating_sub(included) + 1 < h.options.confirmations {
            return Ok(None);
        }
    }
    Ok(Some(judge(p, known, receipt)))
}

pub(super) async fn await_outcome<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    txs: &[RecordedTx],
    deadline: Deadline,
) -> Result<TxStatus, SchemeError> {
    let known = decode(txs)?;
    let poll = h.options.receipt_poll;
    let mut last_error = None;
    let mut answered = false;
    loop {
        // The receipt is read at once (an automining chain already has it), then once per new
        // block: waiting settles share one `eth_blockNumber` per poll interval.
        let head = h.chain.head(deadline, poll).await.ok();
        match any_receipt(h, &known, deadline).await {
            Ok(Some((tx, receipt))) => {
                answered = true;
                if let Some(status) = judged(h, p, tx, &receipt, deadline).await? {
                    return Ok(status);
                }
            }
            Ok(None) => answered = true,
            Err(e) => {
                warn!(tx = %known.last().map(|k| k.recorded.tx_id.as_str()).unwrap_or(""), error = %e, "receipt poll failed");
                last_error = Some(e);
            }
        }
        loop {
            if deadline.passed() {
                return match last_error {
                    Some(e) if !answered => Err(e),
                    _ => Ok(TxStatus::Pending),
                };
            }
            tokio::time::sleep(poll.min(deadline.remaining())).await;
            match (head, h.chain.head(deadline, poll).await) {
                (Some(before), Ok(now)) if now <= before => continue,
                _ => break,
            }
        }
    }
}

/// Which of the recorded transactions the chain mined, from receipts alone.
pub(super) async fn examine<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    txs: &[RecordedTx],
    deadline: Deadline,
) -> Result<Option<TxStatus>, SchemeError> {
    let known = decode(txs)?;
    match any_receipt(h, &known, deadline).await? {
        Some((tx, receipt)) => Ok(Some(judge(p, tx, &receipt))),
        None => Ok(None),
    }
}

/// Finds what became of recorded transactions; resends the newest if no node has it.
pub(super) async fn reconcile<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    txs: &[RecordedTx],
    deadline: Deadline,
) -> Result<TxStatus, SchemeError> {
    let known = decode(txs)?;
    if let Some((tx, receipt)) = any_receipt(h, &known, deadline).await? {
        return Ok(judged(h, p, tx, &receipt, deadline)
            .await?
            .unwrap_or(TxStatus::Pending));
    }
    for k in known.iter().rev() {
        let hash = k.hash;
        let seen = h
            .chain
            .read(deadline, |pr| async move {
                pr.get_transaction_by_hash(hash).await
            })
            .await
            .map_err(rpc)?;
        if seen.is_some() {
            return Ok(TxStatus::Pending);
        }
    }
    // No node it was asked has any trace of it: never sent (a crash between record and
    // broadcast), or dropped. If it can never be mined, say so; otherwise send it again.
    if let Some(verdict) = unminable(h, p, &known, deadline).await? {
        return Ok(verdict);
    }
    let newest = known.last().map(|k| k.recorded);
    let Some(raw) = newest.and_then(|r| r.raw.as_deref()) else {
        return Ok(TxStatus::Pending);
    };
    match h.chain.send(deadline, raw).await {
        Sent::Accepted | Sent::Ambiguous(_) | Sent::Unreachable(_) => Ok(TxStatus::Pending),
        Sent::Refused(RpcFailure::Node(e)) => {
            let m = e.message.to_ascii_lowercase();
            if m.contains("nonce too low") || m.contains("nonce has already been used") {
                // Its nonce is spent: by another transaction (this one can then never be
                // mined), or by this very one, mined meanwhile. Look again before judging.
                if any_receipt(h, &known, deadline).await?.is_some()
                    || authorization_used(h, p, deadline).await?
                {
                    return Ok(TxStatus::Pending);
                }
                return Ok(TxStatus::Failed(
                    Rejection::new(p.reasons().reverted).with_message(format!(
                        "transaction {} was dropped (its nonce was reused); no money moved",
                        known
                            .last()
                            .map(|k| k.recorded.tx_id.as_str())
                            .unwrap_or("")
                    )),
                ));
            }
            if ["base fee", "fee cap", "underpriced", "max fee"]
                .iter()
                .any(|t| m.contains(t))
            {
                // Priced below the chain now (a fee spike evicted it): it waits for a bump
                // (see `replace`), which the caller asks for on `Pending`.
                return Ok(TxStatus::Pending);
            }
            Err(SchemeError::Rpc(format!("resending failed: {}", e.message)))
        }
        Sent::Refused(other) => Err(rpc(other)),
    }
}

/// `Some(Failed)` when no recorded transaction can ever be mined and the payment did not
/// happen, as every configured node agrees from its own head; `None` when that is not (yet)
/// certain. The expired transactions' nonces become holes for the lane keeper to fill.
async fn unminable<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    known: &[Known<'_>],
    deadline: Deadline,
) -> Result<Option<TxStatus>, SchemeError> {
    let heads = h
        .chain
        .each(deadline, |pr| async move {
            pr.get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
                .await
        })
        .await;
    let mut verdicts = Vec::new();
    for (url, head) in heads.into_iter().enumerate() {
        let Ok(Some(block)) = head else {
            return Ok(None); // a node that does not answer gives no verdict
        };
        let Some(used) = authorization_used_at(h, p, url, block.header.number, deadline).await?
        else {
            return Ok(None);
        };
        let margin = U256::from(h.options.expiry_margin_secs);
        verdicts.push((
            used,
            U256::from(block.header.timestamp) > p.expires_at().saturating_add(margin),
        ));
    }
    if verdicts.iter().all(|(used, _)| *used) {
        return Ok(Some(TxStatus::Failed(
            Rejection::new(p.reasons().spent).with_message(
                "no recorded transaction executed; the authorization was used by another transaction",
            ),
        )));
    }
    if !verdicts.iter().all(|(used, expired)| !used && *expired) {
        return Ok(None);
    }
    for k in known {
        if let Some(env) = &k.envelope
            && let Some(from) = signer_of(env)
            && let Some(index) = h.signers.index_of(from)
        {
            h.signers.mark_hole(index, env.nonce()).await;
        }
    }
    Ok(Some(TxStatus::Failed(
        Rejection::new(p.reasons().expired).with_message(
            "no recorded transaction was ever mined and the authorization has expired on chain; \
             no money moved",
        ),
    )))
}

/// Whether the payer's authorization is spent (EIP-3009 `authorizationState`, the Permit2 nonce
/// bit), at the head.
async fn authorization_used<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    deadline: Deadline,
) -> Result<bool, SchemeError> {
    let (to, data) = p.spent_query(h);
    let out = h.chain.eth_call(deadline, to, data).await.map_err(rpc)?;
    p.is_spent(&out)
        .ok_or_else(|| SchemeError::Rpc("the authorization's state is unreadable".into()))
}

/// [`authorization_used`] on node `url` at block `number`; `None` when that node does not answer.
async fn authorization_used_at<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    url: usize,
    number: u64,
    deadline: Deadline,
) -> Result<Option<bool>, SchemeError> {
    let (to, data) = p.spent_query(h);
    let tx = TransactionRequest::default()
        .to(to)
        .input(TransactionInput::new(data));
    let answer = h
        .chain
        .on(url, deadline, |pr| async move {
            pr.call(tx).block(BlockId::number(number)).await
        })
        .await;
    Ok(answer.ok().and_then(|out| p.is_spent(&out)))
}

/// A mined transaction is a payment only if it succeeded and the asset emitted the transfer.
fn judge<P: OnChain>(p: &P, known: &Known<'_>, receipt: &TransactionReceipt) -> TxStatus {
    let tx_id = known.recorded.tx_id.as_str();
    let block = receipt.block_number.unwrap_or_default();
    let reasons = p.reasons();
    if known.is_cancel() {
        return TxStatus::Failed(Rejection::new(reasons.expired).with_message(format!(
            "the payment's transaction was cancelled at its nonce (block {block}) after the \
             authorization expired; no money moved"
        )));
    }
    if !receipt.status() {
        return TxStatus::Failed(
            Rejection::new(reasons.reverted)
                .with_message(format!("{tx_id} reverted in block {block}")),
        );
    }
    let want = p.transfer();
    let paid = receipt.inner.logs().iter().any(|log| {
        log.address() == want.asset
            && IEip3009::Transfer::decode_log(&log.inner)
                .is_ok_and(|t| t.from == want.from && t.to == want.to && t.value == want.value)
    });
    if paid {
        TxStatus::Confirmed(Inclusion {
            tx_id: tx_id.to_string(),
            block: receipt.block_number,
            block_hash: receipt.block_hash.map(|b| format!("{b:#x}")),
        })
    } else {
        TxStatus::Failed(Rejection::new(reasons.no_transfer).with_message(format!(
            "{tx_id} mined in block {block} without Transfer({}, {}, {}) from the asset",
            want.from, want.to, want.value
        )))
    }
}

/// A replacement for the newest recorded transaction when it has waited `stuck_after` and
/// the chain's fees have outgrown it: the same call at a higher fee while the authorization can
/// still be paid, a cancellation once it cannot. `None` when it is not stuck, when the bump
/// would pass `max_fee_per_gas_wei`, or when this process does not hold the signer's lease.
pub(super) async fn replace<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    txs: &[RecordedTx],
    deadline: Deadline,
) -> Result<Option<Signed<SignedTx>>, SchemeError> {
    let known = decode(txs)?;
    let Some(newest) = known.last() else {
        return Ok(None);
    };
    let waited = now_ms().saturating_sub(newest.recorded.recorded_at_ms);
    if u128::try_from(waited).unwrap_or(0) < h.options.stuck_after.as_millis() {
        return Ok(None);
    }
    let Some(env) = newest.envelope.as_ref() else {
        return Ok(None);
    };
    let Some(from) = signer_of(env) else {
        return Ok(None);
    };
    let (Some(index), Some(fence)) = (h.signers.index_of(from), h.gate.fence(&h.lease_key(from)))
    else {
        return Ok(None);
    };
    if newest.is_cancel() || any_receipt(h, &known, deadline).await?.is_some() {
        return Ok(None);
    }
    *h.fees.lock().await = None;
    let market = fees(h, deadline).await?;
    let old_max = env.max_fee_per_gas();
    let old_tip = env.max_priority_fee_per_gas().unwrap_or(old_max);
    if market.max_fee_per_gas <= old_max && market.max_priority_fee_per_gas <= old_tip {
        return Ok(None); // priced right: it is only waiting (a dropped one is resent instead)
    }
    let bump = |old: u128| (old * BUMP_NUM).div_ceil(BUMP_DEN);
    let max_fee = bump(old_max).max(market.max_fee_per_gas);
    let tip = bump(old_tip)
        .max(market.max_priority_fee_per_gas)
        .min(max_fee);
    if h.options.max_fee_per_gas.is_some_and(|cap| max_fee > cap) {
        warn!(network = %h.network, tx = %newest.recorded.tx_id, "a stuck transaction cannot be bumped within max_fee_per_gas_wei");
        return Ok(None);
    }
    let head_time = h
        .chain
        .read(deadline, |pr| async move {
            pr.get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
                .await
        })
        .await
        .map_err(rpc)?
        .map(|b| b.header.timestamp)
        .unwrap_or_default();
    let payable = U256::from(head_time + h.options.expiry_margin_secs) < p.expires_at();
    let tx = if payable {
        let (to, data) = p.call(h);
        TxEip1559 {
            chain_id: h.chain_id,
            nonce: env.nonce(),
            gas_limit: env.gas_limit(),
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            to: TxKind::Call(to),
            value: U256::ZERO,
            access_list: Default::default(),
            input: data,
        }
    } else {
        cancellation(h.chain_id, env.nonce(), from, max_fee, tip)
    };
    sign(h, index, fence, tx, true).map(Some)
}

fn cancellation(chain_id: u64, nonce: u64, signer: Address, max_fee: u128, tip: u128) -> TxEip1559 {
    TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(signer),
        value: U256::ZERO,
        access_list: Default::default(),
        input: Default::default(),
    }
}

/// Whether an included transaction is final, holding, or gone: its block's hash at its height
/// is compared with the one recorded, and the depth with `finality_depth`.
pub(super) async fn finality(
    h: &EvmNetwork,
    inclusion: &Inclusion,
    deadline: Deadline,
) -> Result<Finality, SchemeError> {
    let (Some(number), Some(recorded)) = (inclusion.block, inclusion.block_hash.as_deref()) else {
        return Ok(Finality::Final); // rows from before blocks were recorded are not watched
    };
    let head = h
        .chain
        .head(deadline, h.options.receipt_poll)
        .await
        .map_err(rpc)?;
    if head < number {
        return Ok(Finality::Holding); // a node behind the block: no verdict from it
    }
    let block = h
        .chain
        .read(deadline, |pr| async move {
            pr.get_block_by_number(alloy::eips::BlockNumberOrTag::Number(number))
                .await
        })
        .await
        .map_err(rpc)?;
    let Some(block) = block else {
        return Ok(Finality::Holding);
    };
    if !format!("{:#x}", block.header.hash).eq_ignore_ascii_case(recorded) {
        return Ok(Finality::Vanished);
    }
    Ok(if head - number >= h.options.finality_depth {
        Finality::Final
    } else {
        Finality::Holding
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancellation_is_recognised_and_a_payment_is_not() {
        let key = alloy::signers::local::PrivateKeySigner::random();
        let cancel = cancellation(1, 7, key.address(), 10, 1);
        let signature = key.sign_hash_sync(&cancel.signature_hash()).expect("sign");
        let env = TxEnvelope::from(cancel.into_signed(signature));
        let recorded = RecordedTx {
            tx_id: format!("{:#x}", env.tx_hash()),
            raw: Some(env.encoded_2718()),
            recorded_at_ms: 0,
        };
        let known = decode(std::slice::from_ref(&recorded)).expect("decodes");
        assert!(known[0].is_cancel());

        let mut pay = cancellation(1, 7, Address::repeat_byte(1), 10, 1);
        pay.input = alloy::primitives::Bytes::from(vec![1, 2, 3]);
        let signature = key.sign_hash_sync(&pay.signature_hash()).expect("sign");
        let env = TxEnvelope::from(pay.into_signed(signature));
        let recorded = RecordedTx {
            tx_id: format!("{:#x}", env.tx_hash()),
            raw: Some(env.encoded_2718()),
            recorded_at_ms: 0,
        };
        let known = decode(std::slice::from_ref(&recorded)).expect("decodes");
        assert!(!known[0].is_cancel());
    }

    #[test]
    fn bumps_clear_the_one_eighth_floor() {
        let bump = |old: u128| (old * BUMP_NUM).div_ceil(BUMP_DEN);
        assert_eq!(bump(8), 9);
        assert_eq!(bump(100), 113); // 112.5 rounded up
        assert!(bump(1) * 8 >= 9);
    }
}
