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
use alloy::rpc::types::{Filter, Log, TransactionInput, TransactionReceipt, TransactionRequest};
use alloy::signers::SignerSync;
use alloy::sol_types::SolEvent;
use tracing::warn;

use super::chain::{RpcFailure, Sent};
use super::contracts::IEip3009;
use super::network::EvmNetwork;
use super::onchain::{OnChain, Transfer};
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
    if has("nonce too high") {
        // A gap before it (a nonce of ours not yet seen by this node): it becomes valid once the
        // gap closes. Keep the nonce and the bytes; the outcome is read by id, and the bytes are
        // sent again until then.
        return Ok(Broadcast::Ambiguous(payload.message.to_string()));
    }
    if has("nonce too low") || has("replacement") || has("nonce has already been used") {
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
    super::signature::recover(signed.signature_hash(), &bytes)
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

/// What the chain says of a payment's recorded transactions, all of them at once: one of
/// them paid (or someone else's transaction executed the same authorization and paid), all of
/// them are final without paying, or not yet.
enum Seen {
    Paid(Inclusion),
    /// Mined and paid, but without the network's confirmations yet.
    Confirming,
    AllFailed(Rejection),
    NotYetFinal,
}

async fn receipt_of(
    h: &EvmNetwork,
    hash: B256,
    deadline: Deadline,
) -> Result<Option<TransactionReceipt>, SchemeError> {
    h.chain
        .read(deadline, |pr| async move {
            pr.get_transaction_receipt(hash).await
        })
        .await
        .map_err(rpc)
}

/// Judges every recorded transaction. A paying one wins over failed ones (a fee bump, a
/// re-signed transaction and the original may all be mined, at most one paying); a failed
/// receipt is final only once every other transaction is final too (mined, or its nonce used
/// by something else) and nobody else paid with the same authorization.
async fn seen<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    known: &[Known<'_>],
    deadline: Deadline,
) -> Result<Seen, SchemeError> {
    let mut failed: Option<Rejection> = None;
    let mut unmined = Vec::new();
    for k in known.iter().rev() {
        match receipt_of(h, k.hash, deadline).await? {
            Some(receipt) => match judge(p, k, &receipt) {
                TxStatus::Confirmed(inclusion) => {
                    return Ok(if confirmed(h, &receipt, deadline).await? {
                        Seen::Paid(inclusion)
                    } else {
                        Seen::Confirming
                    });
                }
                TxStatus::Failed(r) => {
                    failed.get_or_insert(r);
                }
                TxStatus::Pending => unmined.push(k),
            },
            None => unmined.push(k),
        }
    }
    if failed.is_none() && unmined.len() == known.len() {
        // Nothing mined at all: only time (see `unminable`) or a receipt can tell.
        return Ok(Seen::NotYetFinal);
    }
    for k in unmined {
        if !nonce_used(h, k, deadline).await? {
            return Ok(Seen::NotYetFinal);
        }
    }
    match fate(h, p, deadline).await? {
        Fate::PaidBy(inclusion) => return Ok(Seen::Paid(inclusion)),
        Fate::Cancelled => {
            return Ok(Seen::AllFailed(
                Rejection::new(p.reasons().spent)
                    .with_message("the payer cancelled the authorization; no money moved"),
            ));
        }
        Fate::UsedUnseen => return Ok(Seen::NotYetFinal),
        Fate::Unused => {}
    }
    // About to say "no money moved": every node must agree (a lagging or forked node's "no
    // receipt" is no verdict; review M2/M3).
    if let Some(other) = disagreement(h, p, known, deadline).await? {
        return Ok(other);
    }
    Ok(match failed {
        Some(r) => Seen::AllFailed(r),
        None => Seen::AllFailed(Rejection::new(p.reasons().reverted).with_message(
            "every recorded transaction was dropped (its nonce went to another transaction); \
             no money moved",
        )),
    })
}

/// Before a "failed, no money moved" verdict: asks every node for the receipts of every
/// recorded transaction and for the authorization's state. A node that has a paying receipt
/// turns the verdict around; one that does not answer, or says the authorization is used,
/// postpones it.
async fn disagreement<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    known: &[Known<'_>],
    deadline: Deadline,
) -> Result<Option<Seen>, SchemeError> {
    for k in known {
        let hash = k.hash;
        let receipts = h
            .chain
            .each(deadline, |pr| async move {
                pr.get_transaction_receipt(hash).await
            })
            .await;
        for receipt in receipts {
            match receipt {
                Ok(Some(r)) => {
                    if let TxStatus::Confirmed(inclusion) = judge(p, k, &r) {
                        return Ok(Some(Seen::Paid(inclusion)));
                    }
                }
                Ok(None) => {}
                Err(_) => return Ok(Some(Seen::NotYetFinal)),
            }
        }
    }
    let (to, data) = p.spent_query(h);
    let call = TransactionRequest::default()
        .to(to)
        .input(TransactionInput::new(data));
    let states = h
        .chain
        .each(deadline, |pr| {
            let c = call.clone();
            async move { pr.call(c).await }
        })
        .await;
    for state in states {
        match state.ok().and_then(|out| p.is_spent(&out)) {
            Some(false) => {}
            // Used somewhere but by nothing found: not a verdict this node-set agrees on yet.
            Some(true) | None => return Ok(Some(Seen::NotYetFinal)),
        }
    }
    Ok(None)
}

/// Whether the receipt has the network's confirmations.
async fn confirmed(
    h: &EvmNetwork,
    receipt: &TransactionReceipt,
    deadline: Deadline,
) -> Result<bool, SchemeError> {
    if h.options.confirmations <= 1 {
        return Ok(true);
    }
    let included = receipt.block_number.unwrap_or_default();
    let head = h
        .chain
        .head(deadline, h.options.receipt_poll)
        .await
        .map_err(rpc)?;
    Ok(head.saturating_sub(included) + 1 >= h.options.confirmations)
}

/// Whether a transaction's nonce was used by a mined transaction (so it can never be mined).
async fn nonce_used(
    h: &EvmNetwork,
    k: &Known<'_>,
    deadline: Deadline,
) -> Result<bool, SchemeError> {
    let Some(env) = &k.envelope else {
        return Ok(false);
    };
    let Some(from) = signer_of(env) else {
        return Ok(false);
    };
    let mined = h
        .chain
        .read(deadline, |pr| async move {
            pr.get_transaction_count(from).latest().await
        })
        .await
        .map_err(rpc)?;
    Ok(mined > env.nonce())
}

/// What became of the payment's authorization, whoever submitted it.
enum Fate {
    Unused,
    /// Executed by this transaction, which carries the payment's `Transfer`: a copy of our
    /// calldata front-run with a higher tip, or another facilitator settling the same payment.
    /// The money moved; the row says so.
    PaidBy(Inclusion),
    /// The payer cancelled it (EIP-3009 `cancelAuthorization`, Permit2
    /// `invalidateUnorderedNonces`): it can never pay.
    Cancelled,
    /// Spent, but neither an execution nor a cancellation was found in the blocks searched: no
    /// verdict.
    UsedUnseen,
}

async fn fate<P: OnChain>(h: &EvmNetwork, p: &P, deadline: Deadline) -> Result<Fate, SchemeError> {
    if !authorization_used(h, p, deadline).await? {
        return Ok(Fate::Unused);
    }
    if let Some(inclusion) = paid_elsewhere(h, p, deadline).await? {
        return Ok(Fate::PaidBy(inclusion));
    }
    let cancelled = recent_logs(h, p.cancellations(h), deadline).await?;
    Ok(if cancelled.iter().any(|log| p.cancels(log)) {
        Fate::Cancelled
    } else {
        Fate::UsedUnseen
    })
}

/// The logs `filter` matches in the last `log_lookback_blocks` blocks.
async fn recent_logs(
    h: &EvmNetwork,
    filter: Filter,
    deadline: Deadline,
) -> Result<Vec<Log>, SchemeError> {
    let head = h
        .chain
        .head(deadline, h.options.receipt_poll)
        .await
        .map_err(rpc)?;
    let filter = filter
        .from_block(head.saturating_sub(h.options.log_lookback_blocks))
        .to_block(head);
    h.chain
        .read(deadline, |pr| {
            let f = filter.clone();
            async move { pr.get_logs(&f).await }
        })
        .await
        .map_err(rpc)
}

/// The transaction that executed this payment's authorization (see `Fate::PaidBy`), found by
/// the logs the payment kind names ([`OnChain::executions`]): it succeeded, carries the
/// payment's `Transfer`, and (where no event names the authorization) its calldata does.
async fn paid_elsewhere<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    deadline: Deadline,
) -> Result<Option<Inclusion>, SchemeError> {
    let logs = recent_logs(h, p.executions(h), deadline).await?;
    for log in logs.iter().filter(|log| p.may_execute(log)) {
        let Some(hash) = log.transaction_hash else {
            continue;
        };
        let Some(receipt) = receipt_of(h, hash, deadline).await? else {
            continue;
        };
        if !receipt.status() || !carries(&receipt, p.transfer()) {
            continue;
        }
        if p.needs_calldata() {
            let tx = h
                .chain
                .read(deadline, |pr| async move {
                    pr.get_transaction_by_hash(hash).await
                })
                .await
                .map_err(rpc)?;
            if !tx.is_some_and(|tx| p.executed_in(tx.input())) {
                continue;
            }
        }
        return Ok(Some(Inclusion {
            tx_id: format!("{hash:#x}"),
            block: receipt.block_number,
            block_hash: receipt.block_hash.map(|b| format!("{b:#x}")),
        }));
    }
    Ok(None)
}

/// Whether a receipt carries the asset's `Transfer(from, to, value)`.
fn carries(receipt: &TransactionReceipt, want: Transfer) -> bool {
    receipt.inner.logs().iter().any(|log| {
        log.address() == want.asset
            && IEip3009::Transfer::decode_log(&log.inner)
                .is_ok_and(|t| t.from == want.from && t.to == want.to && t.value == want.value)
    })
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
        // The receipts are read at once (an automining chain already has them), then once per
        // new block: waiting settles share one `eth_blockNumber` per poll interval.
        let head = h.chain.head(deadline, poll).await.ok();
        match seen(h, p, &known, deadline).await {
            Ok(Seen::Paid(inclusion)) => return Ok(TxStatus::Confirmed(inclusion)),
            Ok(Seen::AllFailed(r)) => return Ok(TxStatus::Failed(r)),
            Ok(Seen::Confirming | Seen::NotYetFinal) => answered = true,
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

/// Which of the recorded transactions the chain mined, and what it did (no resend, no clock):
/// `Some(Pending)` when one of them is still known to a node (it may yet be mined), `None`
/// when none is mined or known.
pub(super) async fn examine<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    txs: &[RecordedTx],
    deadline: Deadline,
) -> Result<Option<TxStatus>, SchemeError> {
    let known = decode(txs)?;
    match seen(h, p, &known, deadline).await? {
        Seen::Paid(inclusion) => Ok(Some(TxStatus::Confirmed(inclusion))),
        Seen::AllFailed(r) => Ok(Some(TxStatus::Failed(r))),
        Seen::Confirming => Ok(Some(TxStatus::Pending)),
        Seen::NotYetFinal => {
            if known_anywhere(h, &known, deadline).await? {
                Ok(Some(TxStatus::Pending))
            } else if let Fate::PaidBy(inclusion) = fate(h, p, deadline).await? {
                Ok(Some(TxStatus::Confirmed(inclusion)))
            } else {
                Ok(None)
            }
        }
    }
}

/// Whether any node still has one of the transactions (in its mempool).
async fn known_anywhere(
    h: &EvmNetwork,
    known: &[Known<'_>],
    deadline: Deadline,
) -> Result<bool, SchemeError> {
    for k in known.iter().rev() {
        let hash = k.hash;
        let seen = h
            .chain
            .each(deadline, |pr| async move {
                pr.get_transaction_by_hash(hash).await
            })
            .await;
        if seen.iter().any(|r| matches!(r, Ok(Some(_)))) {
            return Ok(true);
        }
        if seen.iter().all(|r| r.is_err()) {
            return Err(SchemeError::Rpc("no RPC URL answered".into()));
        }
    }
    Ok(false)
}

/// Finds what became of recorded transactions; sends the newest again if no node has it and it
/// can still pay.
pub(super) async fn reconcile<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    txs: &[RecordedTx],
    deadline: Deadline,
) -> Result<TxStatus, SchemeError> {
    let known = decode(txs)?;
    match seen(h, p, &known, deadline).await? {
        Seen::Paid(inclusion) => return Ok(TxStatus::Confirmed(inclusion)),
        Seen::AllFailed(r) => return Ok(TxStatus::Failed(r)),
        Seen::Confirming => return Ok(TxStatus::Pending),
        Seen::NotYetFinal => {}
    }
    if known_anywhere(h, &known, deadline).await? {
        return Ok(TxStatus::Pending);
    }
    // No node has any trace of them: never sent (a crash between record and broadcast), or
    // dropped. If none can ever be mined, say so; otherwise send the newest again.
    match unminable(h, p, &known, deadline).await? {
        Expiry::Final(status) => return Ok(status),
        // It can no longer pay: sending it again would only burn gas on a revert. A stuck
        // nonce is cancelled by `replace` instead.
        Expiry::PastOnSomeNode => return Ok(TxStatus::Pending),
        Expiry::Open => {}
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
                // Its nonce is spent: by another transaction, or by one of these, mined
                // meanwhile. The next look (receipts and nonces, via `seen`) tells which.
                return Ok(TxStatus::Pending);
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

/// What the chain's clock says of a payment whose transactions no node has.
enum Expiry {
    /// A verdict every node agrees on.
    Final(TxStatus),
    /// Some node's head is past `validBefore`: it can no longer pay, but not every node agrees
    /// yet (or one did not answer).
    PastOnSomeNode,
    Open,
}

/// `Final(Failed)` when no recorded transaction can ever be mined and the payment did not
/// happen, as every configured node agrees from its own head (review M2: never one node's
/// word); the expired transactions' nonces then become holes for the lane keeper to fill.
async fn unminable<P: OnChain>(
    h: &EvmNetwork,
    p: &P,
    known: &[Known<'_>],
    deadline: Deadline,
) -> Result<Expiry, SchemeError> {
    let expires_at = p.expires_at();
    let heads = h
        .chain
        .each(deadline, |pr| async move {
            pr.get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
                .await
        })
        .await;
    let mut verdicts = Vec::new();
    let mut past_somewhere = false;
    let mut silent = false;
    for (url, head) in heads.into_iter().enumerate() {
        let Ok(Some(block)) = head else {
            silent = true; // a node that does not answer gives no verdict
            continue;
        };
        past_somewhere |= U256::from(block.header.timestamp) >= expires_at;
        let Some(used) = authorization_used_at(h, p, url, block.header.number, deadline).await?
        else {
            silent = true;
            continue;
        };
        let margin = U256::from(h.options.expiry_margin_secs);
        verdicts.push((
            used,
            U256::from(block.header.timestamp) > expires_at.saturating_add(margin),
        ));
    }
    let open = if past_somewhere {
        Expiry::PastOnSomeNode
    } else {
        Expiry::Open
    };
    if silent || verdicts.is_empty() {
        return Ok(open);
    }
    if verdicts.iter().all(|(used, _)| *used) {
        return Ok(match fate(h, p, deadline).await? {
            Fate::PaidBy(inclusion) => Expiry::Final(TxStatus::Confirmed(inclusion)),
            Fate::Cancelled => Expiry::Final(TxStatus::Failed(
                Rejection::new(p.reasons().spent)
                    .with_message("the payer cancelled the authorization; no money moved"),
            )),
            // Spent by something not found: resending would only revert.
            Fate::UsedUnseen | Fate::Unused => Expiry::PastOnSomeNode,
        });
    }
    if !verdicts.iter().all(|(used, expired)| !used && *expired) {
        return Ok(open);
    }
    for k in known {
        if let Some(env) = &k.envelope
            && let Some(from) = signer_of(env)
            && let Some(index) = h.signers.index_of(from)
        {
            h.signers.mark_hole(index, env.nonce()).await;
        }
    }
    Ok(Expiry::Final(TxStatus::Failed(
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
    if carries(receipt, want) {
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
    if newest.is_cancel() || !matches!(seen(h, p, &known, deadline).await?, Seen::NotYetFinal) {
        return Ok(None); // mined (or final) meanwhile: nothing to replace
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
    let cache_key = (number, recorded.to_ascii_lowercase());
    if let Ok(cache) = h.block_verdicts.lock()
        && let Some((verdict, at)) = cache.get(&cache_key)
        && at.elapsed() < BLOCK_VERDICT_TTL
    {
        return Ok(*verdict); // one look per block per pass, however many payments it carries
    }
    let head = h
        .chain
        .head(deadline, h.options.receipt_poll)
        .await
        .map_err(rpc)?;
    if head < number {
        return Ok(Finality::Holding); // a node behind the block: no verdict from it
    }
    // Every node is asked: "vanished" only when each one that answers has another block at that
    // height (a single lagging or forked node must not unsettle a payment), "holding" as soon
    // as one still has ours, or when one does not answer.
    let blocks = h
        .chain
        .each(deadline, |pr| async move {
            pr.get_block_by_number(alloy::eips::BlockNumberOrTag::Number(number))
                .await
        })
        .await;
    let mut ours = false;
    let mut others = 0;
    for block in &blocks {
        match block {
            Ok(Some(b)) if format!("{:#x}", b.header.hash).eq_ignore_ascii_case(recorded) => {
                ours = true
            }
            Ok(Some(_)) => others += 1,
            Ok(None) | Err(_) => {}
        }
    }
    let verdict = if ours {
        if head - number >= h.options.finality_depth {
            Finality::Final
        } else {
            Finality::Holding
        }
    } else if others == blocks.len() {
        Finality::Vanished
    } else {
        Finality::Holding
    };
    if let Ok(mut cache) = h.block_verdicts.lock() {
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(cache_key, (verdict, Instant::now()));
    }
    Ok(verdict)
}

/// How long one block's reorg verdict serves every payment it carries.
const BLOCK_VERDICT_TTL: Duration = Duration::from_secs(2);

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
