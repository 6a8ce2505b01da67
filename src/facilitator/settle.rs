//! The settle sequence around the ledger: claim → prepare → record → broadcast → confirm → record.
//!
//! Each branch leaves the ledger row in a state that tells the truth about the chain (docs/ledger.md):
//! - a row is only ever judged against the payment it recorded, revived from the ledger, never
//!   from the incoming body; a request that is not that payment (another fingerprint) never
//!   takes the row over;
//! - `claimed` rows are deleted only when nothing was ever recorded under them; `submitted`
//!   rows keep every transaction (id and bytes) that may be on chain;
//! - a `failed` row is re-examined (receipts of every transaction it ever recorded) before it is
//!   claimed again, and repaired to `settled` if the chain shows one of them paid;
//! - once the chain has spoken, the answer comes from the chain: a ledger fault after that is
//!   logged and the row is finished by the reconciler;
//! - everything runs within the request's one deadline; a settle that cannot see the outcome in
//!   time answers `settlement_pending` with its transaction and owes its client the final answer.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{info, warn};

use super::{Facilitator, FacilitatorError, SettleWatch, payment_id, settle_failure};
use crate::ledger::{
    Answer, ClaimOutcome, ClaimToken, Collected, Collector, Included, NewClaim, SettlementRecord,
    SettlementState, Submission, Transition, TxRecord, now_ms,
};
use crate::protocol::{PaymentRequest, SettleResponse, parse_request, reason};
use crate::scheme::{
    Broadcast, CheckedPayment, Deadline, Preparation, Prepared, RecordedTx, Rejection, SchemeError,
    SchemeHandler, SignerGate, TxStatus,
};

/// Re-signing rounds when a nonce turns out to be taken.
const MAX_PREPARE_ROUNDS: usize = 3;
/// Kept back from the request's deadline for the ledger writes that follow the last RPC call.
const LEDGER_RESERVE: Duration = Duration::from_millis(400);

/// One settle request: what it asks for and by when it must be answered.
pub(super) struct Settle<'a> {
    pub fac: &'a Facilitator,
    pub handler: &'a dyn SchemeHandler,
    pub request: &'a PaymentRequest,
    /// The network to echo (digest §2.2).
    pub network: String,
    pub fingerprint: String,
    pub payment_id: Option<String>,
    /// The request's deadline, less what the ledger needs after the chain has answered.
    pub deadline: Deadline,
    pub watch: &'a SettleWatch,
    /// This settle works for another replica (it took a hand-off): it never hands off again,
    /// and it records every end in the row, which is how its requester learns it.
    pub handed_off: bool,
    /// Who asked (budgets per API key); anonymous for a hand-off.
    pub caller: &'a crate::access::Caller,
    /// A transaction was recorded (or the payment handed to a replica that will send one):
    /// a budget reservation is spent, not given back.
    pub sent: std::sync::atomic::AtomicBool,
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

pub(super) fn plugin_deadline(request_deadline: Deadline) -> Deadline {
    Deadline::at(
        request_deadline
            .instant()
            .checked_sub(LEDGER_RESERVE)
            .unwrap_or_else(|| request_deadline.instant()),
    )
}

pub(super) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

pub(super) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A ledger transaction record as the plugin reads it.
pub(super) fn recorded(tx: &TxRecord) -> RecordedTx {
    RecordedTx {
        tx_id: tx.tx_id.clone(),
        raw: tx.raw_tx.as_deref().and_then(hex_decode),
        recorded_at_ms: tx.recorded_at,
    }
}

/// The transactions of the row's current attempt (all performing its recorded request).
pub(super) fn current(row: &SettlementRecord, txs: &[TxRecord]) -> Vec<RecordedTx> {
    txs.iter()
        .filter(|t| t.attempt == row.attempts)
        .map(recorded)
        .collect()
}

/// The claim a payment makes, from its request and what the plugin checked.
pub(super) fn new_claim(
    payment: &CheckedPayment,
    request: &PaymentRequest,
    fingerprint: String,
    payment_id: Option<String>,
) -> NewClaim {
    let m = &payment.meta;
    NewClaim {
        replay_key: m.replay_key.clone(),
        network: m.network.to_string(),
        scheme: request.scheme().to_string(),
        x402_version: request.x402_version(),
        payer: m.payer.clone(),
        pay_to: m.pay_to.clone(),
        asset: m.asset.clone(),
        amount: m.amount.clone(),
        max_amount: m.max_amount.clone(),
        resource_url: request.resource_url().map(str::to_string),
        resource_key: request
            .resource_url()
            .and_then(crate::discovery::resource::entitlement_key),
        payment_scope: payment_id.as_ref().map(|_| payment_id::scope(m)),
        payment_id,
        request: request.to_json(),
        fingerprint,
        exclusive_key: m.exclusive_key.clone(),
    }
}

/// Another live payment holds this one's exclusive key (a seller's invoice memo, paid once:
/// docs/solana.md §7).
fn memo_taken() -> Rejection {
    Rejection::new(reason::DUPLICATE_SETTLEMENT)
        .with_message("another payment already settles this (same seller memo)")
}

/// A stored request back as the payment it records (no clock, no chain).
pub(super) fn revive_stored(
    handler: &dyn SchemeHandler,
    request_json: &str,
) -> Result<(PaymentRequest, CheckedPayment), SchemeError> {
    let request = parse_request(request_json.as_bytes())
        .map_err(|e| SchemeError::Internal(format!("a stored request is unreadable: {e:?}")))?;
    let payment = handler.revive(&request).map_err(|r| {
        SchemeError::Internal(format!("a stored request no longer parses: {}", r.reason))
    })?;
    Ok((request, payment))
}

impl Settle<'_> {
    fn lease(&self) -> Duration {
        self.fac.timing.deadline + self.fac.timing.lease_margin
    }

    fn fail(&self, payment: &CheckedPayment, rejection: Rejection, tx: &str) -> SettleResponse {
        settle_failure(
            rejection.with_payer(payment.meta.payer.clone()),
            tx,
            &self.network,
        )
    }

    fn success(&self, payment: &CheckedPayment, tx: &str) -> SettleResponse {
        SettleResponse {
            success: true,
            error_reason: None,
            error_message: None,
            payer: Some(payment.meta.payer.clone()),
            transaction: tx.to_string(),
            network: self.network.clone(),
            amount: payment.meta.charged(),
            extensions: None,
        }
    }

    fn duplicate(&self, payment: &CheckedPayment, tx: &str) -> SettleResponse {
        self.fail(
            payment,
            Rejection::new(reason::DUPLICATE_SETTLEMENT)
                .with_message("this payment is being settled by another request"),
            tx,
        )
    }

    /// A settled payment presented again by anyone not owed its outcome.
    fn replayed(&self, payment: &CheckedPayment, tx: &str) -> SettleResponse {
        self.fail(
            payment,
            Rejection::new(payment.meta.replay_reason)
                .with_message(format!("payment already settled in transaction {tx}")),
            "",
        )
    }

    /// The answer of a settle whose client stopped waiting (hung up, or answered by the HTTP
    /// layer's cut-off): nobody reads it, and what the client is owed stays in the ledger.
    fn unheard(&self, payment: &CheckedPayment, tx: &str) -> SettleResponse {
        self.fail(payment, Rejection::new(reason::SETTLEMENT_PENDING), tx)
    }

    /// The same payment, settled in `tx`, presented again (docs/ledger.md, "Owed answers"): the
    /// client that was not given the outcome (told `settlement_pending`, cut off, hung up, or
    /// gone with a crash) is owed it once; any other replay is refused. With a
    /// payment-identifier, only a request carrying it collects. Collecting takes a ledger
    /// write, during which this client may hang up too (seconds on a slow ledger): then the
    /// answer is owed again, for its next retry.
    async fn settled_again(
        &self,
        payment: &CheckedPayment,
        key: &str,
        tx: &str,
    ) -> Result<SettleResponse, FacilitatorError> {
        let ledger = &self.fac.ledger;
        match ledger
            .take_owed_answer(key, self.payment_id.as_deref(), Collector::Retry)
            .await?
        {
            Collected::Taken => {}
            Collected::Reserved => return Ok(self.reserved(payment, tx)),
            Collected::NotOwed => return Ok(self.replayed(payment, tx)),
        }
        if self.watch.deliver(tx) {
            return Ok(self.success(payment, tx));
        }
        self.owe_again(key).await;
        Ok(self.unheard(payment, tx))
    }

    /// The answer is owed again: the client this request took it for stopped waiting.
    async fn owe_again(&self, key: &str) {
        if let Err(e) = self.fac.ledger.owe_again(key).await {
            warn!(replay_key = %key, error = %e, "cannot owe an answer again to a client that left");
        }
    }

    /// This request handed the payment off and stops waiting without giving the success: the
    /// client's retry may collect it at once rather than after the reservation runs out.
    async fn end_reservation(&self, key: &str) {
        if let Err(e) = self.fac.ledger.end_reservation(key).await {
            warn!(replay_key = %key, error = %e, "cannot end a hand-off's reservation; it ends with its deadline");
        }
    }

    /// The payment's success is kept for the request that handed it to another replica and
    /// still waits for it (`Collected::Reserved`): this one is told to ask again, not refused.
    fn reserved(&self, payment: &CheckedPayment, tx: &str) -> SettleResponse {
        self.fail(
            payment,
            Rejection::new(reason::SETTLEMENT_PENDING).with_message(
                "the payment's first request is being answered; settle again with the same payload",
            ),
            tx,
        )
    }

    /// Clears the answer owed to this request's client, which this request is about to give
    /// the success (`SettleWatch::deliver` said it still waits): `false` when the client hung
    /// up meanwhile, or when the answer was not owed and `if_not_owed` is false. `deliver` is
    /// asked at the chain's confirmation, so that a cut-off can answer the chain's word while
    /// the ledger writes that follow are slow; a hang-up during those writes told the client
    /// nothing, so the answer stays owed to its retry (looked at before and after clearing it).
    /// A ledger fault is logged: the success is still the chain's.
    async fn clear_owed(&self, key: &str, if_not_owed: bool) -> bool {
        if self.watch.hung_up() {
            return false;
        }
        match self
            .fac
            .ledger
            .take_owed_answer(key, self.payment_id.as_deref(), Collector::Claimer)
            .await
        {
            Ok(Collected::Taken) => self.still_heard(key).await,
            Ok(_) => if_not_owed,
            Err(e) => {
                warn!(replay_key = %key, error = %e, "cannot clear an owed answer");
                true
            }
        }
    }

    /// After this request stopped the answer being owed (to give it): `false`, owed again,
    /// when the client hung up meanwhile, which told it nothing.
    async fn still_heard(&self, key: &str) -> bool {
        if self.watch.hung_up() {
            self.owe_again(key).await;
            return false;
        }
        true
    }

    /// A transition lost here means another holder took the row over while this settle ran
    /// (its lease ran out): the answer still says what this settle saw, and the new holder
    /// records the outcome from the chain.
    fn note(&self, key: &str, done: Transition, what: &str) {
        if done == Transition::Lost {
            warn!(replay_key = %key, "{what}: the row was taken over by another holder");
        }
    }

    /// A checked payment: claim it, or meet the row that already holds it.
    pub async fn run(&self, payment: CheckedPayment) -> Result<SettleResponse, FacilitatorError> {
        let claim = new_claim(
            &payment,
            self.request,
            self.fingerprint.clone(),
            self.payment_id.clone(),
        );
        match self.fac.ledger.claim(&claim, self.lease()).await? {
            ClaimOutcome::Claimed(token) => {
                fault_point("after_claim");
                self.submit(&payment, &token, Vec::new()).await
            }
            ClaimOutcome::Existing(row) => self.existing(*row, Some(&payment)).await,
            ClaimOutcome::PaymentIdTaken => Err(payment_id::conflict(self.payment_id.as_deref())),
            // Another transaction already pays what this one would (a seller's invoice memo).
            ClaimOutcome::ExclusiveTaken => Ok(self.fail(&payment, memo_taken(), "")),
        }
    }

    /// A payment that no longer passes the checks (e.g. its authorization expired) is only
    /// here to learn the outcome of an earlier settle of the same payment.
    pub async fn late(&self, rejection: Rejection) -> Result<SettleResponse, FacilitatorError> {
        let failure = || settle_failure(rejection.clone(), "", &self.network);
        let Ok(revived) = self.handler.revive(self.request) else {
            return Ok(failure());
        };
        let Some(row) = self.fac.ledger.find(&revived.meta.replay_key).await? else {
            return Ok(failure());
        };
        let (_, stored) = revive_stored(self.handler, &row.request)?;
        if stored.meta.fingerprint != self.fingerprint {
            return Ok(failure());
        }
        match row.state {
            SettlementState::Submitted | SettlementState::Settled => self.existing(row, None).await,
            // The same payment, recorded failed: look at the chain once more before repeating
            // the refusal (a misjudged row must not stay failed once the window closed).
            SettlementState::Failed => match self.fac.ledger.take_over(&row, self.lease()).await? {
                Some(token) => {
                    let history = self.fac.ledger.txs(&row.replay_key).await?;
                    let repaired = self.reexamine(&history, &token).await;
                    let done = self
                        .fac
                        .ledger
                        .defer(&row.replay_key, &token, Duration::ZERO)
                        .await?;
                    self.note(&row.replay_key, done, "defer");
                    Ok(repaired?.unwrap_or_else(failure))
                }
                None => Ok(failure()),
            },
            SettlementState::Claimed => Ok(failure()),
        }
    }

    /// Someone claimed this payment's replay key before us: judge the row by what it recorded.
    async fn existing(
        &self,
        row: SettlementRecord,
        incoming: Option<&CheckedPayment>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let ledger = &self.fac.ledger;
        let (_, stored) = revive_stored(self.handler, &row.request)?;
        let tx = row.tx_id.clone().unwrap_or_default();
        let same = stored.meta.fingerprint == self.fingerprint;
        let key = row.replay_key.clone();
        match row.state {
            // A charge of 0 moved nothing, so repeating its success is harmless.
            SettlementState::Settled if same && stored.meta.moves_nothing() => {
                Ok(self.success(&stored, &tx))
            }
            SettlementState::Settled if same => self.settled_again(&stored, &key, &tx).await,
            SettlementState::Settled => Ok(self.replayed(&stored, &tx)),
            SettlementState::Failed => match incoming {
                Some(payment) => self.revisit_failed(row, payment).await,
                None => Ok(self.fail(&stored, Rejection::new(stored.meta.replay_reason), "")),
            },
            // Another payment with this replay key (another authorization with the same nonce,
            // or a stranger's copy of its public fields): it never touches this row.
            _ if !same => Ok(self.fail(
                incoming.unwrap_or(&stored),
                Rejection::new(stored.meta.replay_reason)
                    .with_message("another payment with this authorization is being settled"),
                "",
            )),
            _ if row.lease_active(now_ms()) => Ok(self.duplicate(&stored, &tx)),
            // Queued for a replica holding a key (lease given up for the taker): its requester
            // waits for it, and a copy must not take it over.
            SettlementState::Claimed if row.handoff_live(now_ms()) => {
                Ok(self.duplicate(&stored, &tx))
            }
            // The holder stopped before recording anything (crash or lost connection).
            SettlementState::Claimed => match ledger.take_over(&row, self.lease()).await? {
                Some(token) => self.submit(&stored, &token, Vec::new()).await,
                None => Ok(self.duplicate(&stored, &tx)),
            },
            // A transaction is recorded: find out what became of it, never broadcast anew.
            SettlementState::Submitted => match ledger.take_over(&row, self.lease()).await? {
                Some(token) => {
                    info!(tx = %tx, "reconciling a previously submitted settlement");
                    self.watch.recorded(&key, &tx, stored.meta.charged());
                    let txs = current(&row, &ledger.txs(&key).await?);
                    self.follow(&stored, &token, txs).await
                }
                None => Ok(self.duplicate(&stored, &tx)),
            },
        }
    }

    /// What became of recorded transactions; a stuck one is replaced, then awaited.
    async fn follow(
        &self,
        payment: &CheckedPayment,
        token: &ClaimToken,
        mut txs: Vec<RecordedTx>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let status = self.handler.reconcile(payment, &txs, self.deadline).await;
        match status {
            Ok(TxStatus::Pending) => {
                if let Err(e) = self.bump(payment, token, &mut txs).await {
                    warn!(replay_key = %payment.meta.replay_key, error = %e, "cannot replace a stuck transaction");
                }
                self.follow_confirm(payment, token, &txs).await
            }
            other => self.finish(payment, token, &txs, other, false).await,
        }
    }

    /// Replaces the newest of `txs` when the plugin says it is stuck (see `Scheme::replace`):
    /// the replacement is recorded before it is broadcast, like any transaction.
    async fn bump(
        &self,
        payment: &CheckedPayment,
        token: &ClaimToken,
        txs: &mut Vec<RecordedTx>,
    ) -> Result<(), FacilitatorError> {
        let Some(replacement) = self.handler.replace(payment, txs, self.deadline).await? else {
            return Ok(());
        };
        let key = &payment.meta.replay_key;
        if self.record(key, token, &replacement).await? == Transition::Lost {
            self.handler.discard(&replacement).await;
            return Ok(());
        }
        info!(replay_key = %key, tx = %replacement.tx_id, "replacing a stuck transaction");
        txs.push(RecordedTx {
            tx_id: replacement.tx_id.clone(),
            raw: Some(replacement.raw.clone()),
            recorded_at_ms: now_ms(),
        });
        match self
            .handler
            .broadcast(payment, &replacement, self.deadline)
            .await?
        {
            Broadcast::Sent | Broadcast::Ambiguous(_) | Broadcast::Retry(_) => Ok(()),
            Broadcast::Rejected(r) => {
                warn!(replay_key = %key, reason = %r.reason, "the replacement was refused");
                Ok(())
            }
            Broadcast::Unreachable(why) => Err(SchemeError::Rpc(why).into()),
        }
    }

    async fn record(
        &self,
        key: &str,
        token: &ClaimToken,
        prepared: &Prepared,
    ) -> Result<Transition, FacilitatorError> {
        let fence = prepared.lease.as_ref().map(|l| self.fac.leases.fence_of(l));
        let raw = hex_encode(&prepared.raw);
        let submission = Submission {
            tx_id: &prepared.tx_id,
            raw_tx: &raw,
            signer: &prepared.signer,
            fence: fence.as_ref(),
        };
        match self
            .fac
            .ledger
            .record_submitted(key, token, &submission)
            .await
        {
            Ok(done) => Ok(done),
            Err(e) => {
                // Not recorded (as far as we can tell), so never sent: give the nonce back.
                self.handler.discard(prepared).await;
                Err(e.into())
            }
        }
    }

    /// Settles a payment whose row this settle holds (`token`) and under which nothing is
    /// recorded yet: a hand-off taken for another replica.
    pub async fn submit_claimed(
        &self,
        payment: &CheckedPayment,
        token: &ClaimToken,
    ) -> Result<SettleResponse, FacilitatorError> {
        self.submit(payment, token, Vec::new()).await
    }

    /// Every path that may sign comes here (a new claim, a take-over, a failed row claimed
    /// again): the fee is reserved on every budget first, and given back if this attempt
    /// recorded no transaction. A hand-off taker does not reserve: its requester did; nor does
    /// a charge of 0, which sends nothing.
    async fn submit(
        &self,
        payment: &CheckedPayment,
        token: &ClaimToken,
        txs: Vec<RecordedTx>,
    ) -> Result<SettleResponse, FacilitatorError> {
        // A charge of 0 (`upto`) sends nothing, so it spends no fee.
        let guard = match self.fac.guard() {
            Some(guard) if !self.handed_off && !payment.meta.moves_nothing() => guard,
            _ => return self.submit_budgeted(payment, token, txs).await,
        };
        let held = match guard
            .budgets
            .reserve(&payment.meta, self.caller, token)
            .await
        {
            Ok(held) => held,
            Err(refused) => {
                self.give_up(payment, token).await?;
                return match refused {
                    crate::access::Refused::Reject(r) => {
                        self.fac.metrics.count_refusal(&r.reason);
                        Ok(self.fail(payment, r, ""))
                    }
                    crate::access::Refused::Fault(e) => Err(e.into()),
                };
            }
        };
        fault_point("after_reserve");
        self.sent.store(false, std::sync::atomic::Ordering::Relaxed);
        let answer = self.submit_budgeted(payment, token, txs).await;
        if self.sent.load(std::sync::atomic::Ordering::Relaxed) {
            guard.budgets.keep(held).await;
        } else {
            guard.budgets.refund(held).await;
        }
        answer
    }

    async fn submit_budgeted(
        &self,
        payment: &CheckedPayment,
        token: &ClaimToken,
        mut txs: Vec<RecordedTx>,
    ) -> Result<SettleResponse, FacilitatorError> {
        let ledger = &self.fac.ledger;
        let key = payment.meta.replay_key.as_str();
        if payment.meta.moves_nothing() {
            return self.settle_nothing(payment, token).await;
        }
        if !self.handed_off && !self.can_send(payment) && self.fac.handoffs.enabled {
            return self.hand_off(payment, token).await;
        }
        for _ in 0..MAX_PREPARE_ROUNDS {
            let prepared = match self.handler.prepare(payment, self.deadline).await {
                Ok(Preparation::Ready(prepared)) => prepared,
                Ok(Preparation::Rejected(rejection)) => {
                    return self.abandon(payment, token, rejection).await;
                }
                Err(e) => {
                    self.give_up(payment, token).await?;
                    return Err(e.into());
                }
            };
            if self.record(key, token, &prepared).await? == Transition::Lost {
                // Our claim or our signer lease is gone: nothing was sent, and nothing will be.
                self.handler.discard(&prepared).await;
                self.give_up(payment, token).await?;
                return Err(SchemeError::Signer(format!(
                    "the lease on {} or the claim on this payment was lost before broadcast",
                    prepared.signer
                ))
                .into());
            }
            self.watch
                .recorded(key, &prepared.tx_id, payment.meta.charged());
            self.sent.store(true, std::sync::atomic::Ordering::Relaxed);
            txs.push(RecordedTx {
                tx_id: prepared.tx_id.clone(),
                raw: Some(prepared.raw.clone()),
                recorded_at_ms: now_ms(),
            });
            fault_point("after_record");
            match self
                .handler
                .broadcast(payment, &prepared, self.deadline)
                .await
            {
                Ok(Broadcast::Sent) => {
                    fault_point("after_broadcast");
                    return self.confirm(payment, token, &txs).await;
                }
                Ok(Broadcast::Ambiguous(why)) => {
                    warn!(tx = %prepared.tx_id, %why, "broadcast outcome unknown; confirming by id");
                    return self.confirm(payment, token, &txs).await;
                }
                Ok(Broadcast::Retry(why)) => {
                    self.fac
                        .metrics
                        .nonce_conflicts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    warn!(tx = %prepared.tx_id, %why, "transaction cannot be mined as signed; signing again");
                }
                Ok(Broadcast::Rejected(rejection)) => {
                    let done = ledger.record_failed(key, token, &rejection.reason).await?;
                    self.note(key, done, "record_failed");
                    return Ok(self.fail(payment, rejection, ""));
                }
                Ok(Broadcast::Unreachable(why)) => {
                    // Provably never sent: the payment did not happen and may be tried again.
                    let done = ledger
                        .record_failed(key, token, reason::UNEXPECTED_SETTLE_ERROR)
                        .await?;
                    self.note(key, done, "record_failed");
                    return Err(
                        SchemeError::Rpc(format!("no RPC URL could be reached: {why}")).into(),
                    );
                }
                Err(e) => {
                    let done = ledger
                        .record_failed(key, token, reason::UNEXPECTED_SETTLE_ERROR)
                        .await?;
                    self.note(key, done, "record_failed");
                    return Err(e.into());
                }
            }
        }
        let done = ledger
            .record_failed(key, token, reason::UNEXPECTED_SETTLE_ERROR)
            .await?;
        self.note(key, done, "record_failed");
        Err(SchemeError::Signer(format!("nonce conflicts in {MAX_PREPARE_ROUNDS} rounds")).into())
    }

    /// A charge of 0 (`upto`): nothing is signed or sent, and the claimed row is recorded
    /// settled with no transaction, so the payment's replay key stays spent.
    async fn settle_nothing(
        &self,
        payment: &CheckedPayment,
        token: &ClaimToken,
    ) -> Result<SettleResponse, FacilitatorError> {
        let key = payment.meta.replay_key.as_str();
        if !self
            .fac
            .ledger
            .record_settled_empty(key, token)
            .await?
            .applied()
        {
            // The claim was taken over meanwhile: its new holder answers the payment.
            return Ok(self.duplicate(payment, ""));
        }
        Ok(self.success(payment, ""))
    }

    /// Ends a claim under which nothing was sent by this attempt, after a fault.
    async fn give_up(
        &self,
        payment: &CheckedPayment,
        token: &ClaimToken,
    ) -> Result<(), FacilitatorError> {
        let key = &payment.meta.replay_key;
        if self.handed_off {
            // The requester reads the outcome from the row: a fault of ours, said as such.
            let done = self
                .fac
                .ledger
                .record_failed(key, token, reason::UNEXPECTED_SETTLE_ERROR)
                .await?;
            self.note(key, done, "record_failed");
            return Ok(());
        }
        if self.fac.ledger.release(key, token).await? == Transition::Lost {
            // Transactions were recorded under this row before (an earlier attempt, or a
            // superseded signature): it is never deleted. Hand it back to be looked at again.
            let done = self.fac.ledger.defer(key, token, Duration::ZERO).await?;
            self.note(key, done, "defer");
        }
        Ok(())
    }

    /// The plugin refused before signing (e.g. the estimate says the authorization is spent).
    /// A row that never recorded a transaction is released; one that did is never deleted:
    /// its transactions are examined first (one of them may be why the authorization is
    /// spent), and the refusal is recorded.
    async fn abandon(
        &self,
        payment: &CheckedPayment,
        token: &ClaimToken,
        rejection: Rejection,
    ) -> Result<SettleResponse, FacilitatorError> {
        let ledger = &self.fac.ledger;
        let key = payment.meta.replay_key.as_str();
        if !self.handed_off && ledger.release(key, token).await? == Transition::Applied {
            return Ok(self.fail(payment, rejection, ""));
        }
        let history = ledger.txs(key).await?;
        if let Some(answer) = self.reexamine(&history, token).await? {
            return Ok(answer);
        }
        let done = ledger.record_failed(key, token, &rejection.reason).await?;
        self.note(key, done, "record_failed");
        Ok(self.fail(payment, rejection, ""))
    }

    /// A failed row met by a checked payment: re-examine every transaction it ever recorded
    /// (each against the payment it performed), repair it to `settled` if one moved the
    /// money, and otherwise claim it again for this payment.
    async fn revisit_failed(
        &self,
        row: SettlementRecord,
        payment: &CheckedPayment,
    ) -> Result<SettleResponse, FacilitatorError> {
        let ledger = &self.fac.ledger;
        let tx = row.tx_id.clone().unwrap_or_default();
        let Some(token) = ledger.take_over(&row, self.lease()).await? else {
            return Ok(self.duplicate(payment, &tx));
        };
        let history = ledger.txs(&row.replay_key).await?;
        match self.reexamine(&history, &token).await {
            Ok(Some(answer)) => {
                if answer.error_reason.as_deref() == Some(reason::SETTLEMENT_PENDING) {
                    let done = ledger
                        .defer(&row.replay_key, &token, Duration::ZERO)
                        .await?;
                    self.note(&row.replay_key, done, "defer");
                }
                return Ok(answer);
            }
            Ok(None) => {}
            Err(e) => {
                let done = ledger
                    .defer(&row.replay_key, &token, Duration::ZERO)
                    .await?;
                self.note(&row.replay_key, done, "defer");
                return Err(e);
            }
        }
        let claim = new_claim(
            payment,
            self.request,
            self.fingerprint.clone(),
            self.payment_id.clone(),
        );
        match ledger.reclaim(&claim, &token, self.lease()).await? {
            ClaimOutcome::Claimed(fresh) => self.submit(payment, &fresh, Vec::new()).await,
            ClaimOutcome::Existing(_) => Ok(self.duplicate(payment, &tx)),
            ClaimOutcome::PaymentIdTaken => {
                let done = ledger
                    .defer(&row.replay_key, &token, Duration::ZERO)
                    .await?;
                self.note(&row.replay_key, done, "defer");
                Err(payment_id::conflict(self.payment_id.as_deref()))
            }
            // While this payment was failed, another took its seller memo: it stays failed.
            ClaimOutcome::ExclusiveTaken => {
                let done = ledger
                    .defer(&row.replay_key, &token, Duration::ZERO)
                    .await?;
                self.note(&row.replay_key, done, "defer");
                Ok(self.fail(payment, memo_taken(), ""))
            }
        }
    }

    /// The reconciler's look at a failed row that recorded transactions (review M-1: no
    /// misjudgment may stay for ever): `true` when it was repaired. Held with `token`; given
    /// back with `backoff` otherwise.
    pub async fn recheck_failed(
        &self,
        row: &SettlementRecord,
        token: &ClaimToken,
        backoff: Duration,
    ) -> Result<bool, FacilitatorError> {
        let history = self.fac.ledger.txs(&row.replay_key).await?;
        let repaired = match self.reexamine(&history, token).await {
            Ok(Some(answer)) => answer.error_reason.as_deref() != Some(reason::SETTLEMENT_PENDING),
            Ok(None) => false,
            Err(e) => {
                let _ = self.fac.ledger.defer(&row.replay_key, token, backoff).await;
                return Err(e);
            }
        };
        if !repaired {
            let done = self
                .fac
                .ledger
                .defer(&row.replay_key, token, backoff)
                .await?;
            self.note(&row.replay_key, done, "defer");
        }
        Ok(repaired)
    }

    /// Looks at every recorded transaction of a payment, newest attempt first, each against the
    /// request it performed. If the chain shows one paid, the row (held with `token`) is
    /// repaired to `settled` and the answer is given; `None` when none of them moved money.
    async fn reexamine(
        &self,
        history: &[TxRecord],
        token: &ClaimToken,
    ) -> Result<Option<SettleResponse>, FacilitatorError> {
        let mut attempts: BTreeMap<i64, Vec<&TxRecord>> = BTreeMap::new();
        for tx in history {
            attempts.entry(tx.attempt).or_default().push(tx);
        }
        for txs in attempts.values().rev() {
            let Some(first) = txs.first() else { continue };
            let (request, paid) = revive_stored(self.handler, &first.request)?;
            let recorded: Vec<RecordedTx> = txs.iter().map(|t| recorded(t)).collect();
            let inclusion = match self
                .handler
                .examine(&paid, &recorded, self.deadline)
                .await?
            {
                Some(TxStatus::Confirmed(inclusion)) => inclusion,
                // One of them may still be mined: claiming the payment again now would race a
                // second transaction against it. Not yet.
                Some(TxStatus::Pending) => {
                    let tx = recorded.last().map(|t| t.tx_id.clone()).unwrap_or_default();
                    return Ok(Some(self.fail(
                        &paid,
                        Rejection::new(reason::SETTLEMENT_PENDING).with_message(
                            "an earlier transaction of this payment may still be mined; settle again later",
                        ),
                        &tx,
                    )));
                }
                Some(TxStatus::Failed(_)) | None => continue,
            };
            let claim = new_claim(
                &paid,
                &request,
                paid.meta.fingerprint.clone(),
                payment_id::extract(&request).ok().flatten(),
            );
            let block = inclusion.block.and_then(|b| i64::try_from(b).ok());
            let included = Included {
                tx_id: &inclusion.tx_id,
                block_number: block,
                block_hash: inclusion.block_hash.as_deref(),
            };
            let done = self
                .fac
                .ledger
                .repair_settled(&claim, token, &included)
                .await?;
            self.note(&claim.replay_key, done, "repair_settled");
            warn!(
                replay_key = %claim.replay_key,
                tx = %inclusion.tx_id,
                "repaired a payment recorded as failed: the chain shows its transaction paid"
            );
            // Only a settle whose client still waits for this payment collects what is owed:
            // the reconciler's (unwatched) look leaves the success owed to the client's retry
            // (before, its repair cleared it for nobody, and the buyer who had paid was told
            // its payment was a replay). Collected as a retry collects (`settled_again`): the
            // owed answer is taken first (a fault is the caller's to handle, the row stays
            // owed), then the watch asked, and owed again if the client left meanwhile.
            if paid.meta.fingerprint == self.fingerprint && self.watch.waits() {
                match self
                    .fac
                    .ledger
                    .take_owed_answer(
                        &claim.replay_key,
                        self.payment_id.as_deref(),
                        Collector::Retry,
                    )
                    .await?
                {
                    Collected::Taken if self.watch.deliver(&inclusion.tx_id) => {
                        return Ok(Some(self.success(&paid, &inclusion.tx_id)));
                    }
                    Collected::Taken => self.owe_again(&claim.replay_key).await,
                    Collected::Reserved => {
                        return Ok(Some(self.reserved(&paid, &inclusion.tx_id)));
                    }
                    Collected::NotOwed => {}
                }
            }
            return Ok(Some(self.replayed(&paid, &inclusion.tx_id)));
        }
        Ok(None)
    }

    /// Whether this replica can send the payment's transaction now: it holds the one key the
    /// payment must be sent from, or any key of its network when it names none.
    fn can_send(&self, payment: &CheckedPayment) -> bool {
        match &payment.meta.sender {
            Some(lease) => self.fac.leases.fence(lease).is_some(),
            None => self.handler.can_sign(),
        }
    }

    /// This replica holds no key for the network (or not the one key the payment must be sent
    /// from, `PaymentMeta::sender`): queue the claim for one that does, and wait
    /// for its outcome until the request's deadline (then `settlement_pending`, owed, when
    /// something was sent; 503 when nobody could take it).
    async fn hand_off(
        &self,
        payment: &CheckedPayment,
        token: &ClaimToken,
    ) -> Result<SettleResponse, FacilitatorError> {
        let ledger = &self.fac.ledger;
        let key = payment.meta.replay_key.as_str();
        let deadline_ms =
            now_ms() + i64::try_from(self.deadline.remaining().as_millis()).unwrap_or(i64::MAX);
        let sender = payment.meta.sender.as_deref();
        if ledger.hand_off(key, token, deadline_ms, sender).await? == Transition::Lost {
            return Ok(self.duplicate(payment, ""));
        }
        // The taker spends the fee; the reservation stays.
        self.sent.store(true, std::sync::atomic::Ordering::Relaxed);
        // From here the taker may send a transaction this replica has not seen yet: an HTTP
        // cut-off (this replica's ledger lagging, say) answers `settlement_pending`, never
        // "nothing was sent", which could lead the buyer to pay again.
        self.watch.recorded(key, "", payment.meta.charged());
        self.fac
            .metrics
            .handed_off
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = ledger
            .notify(
                crate::ledger::HANDOFF_CHANNEL,
                &payment.meta.network.to_string(),
            )
            .await
        {
            warn!(error = %e, "cannot announce a hand-off; replicas poll for it");
        }
        info!(replay_key = %key, "no signer lease here: handed the payment to a replica that holds one");
        // The requester's own deadline is a little later than the taker's (the ledger reserve).
        let until = self.deadline.instant() + LEDGER_RESERVE;
        loop {
            let row = ledger.find(key).await?;
            match row {
                Some(r) if r.handoff_waiting(token) => {
                    if std::time::Instant::now() >= until
                        && ledger.withdraw_handoff(key, token).await?.applied()
                    {
                        let which = match sender {
                            Some(lease) => format!("the key {lease} it must be sent from"),
                            None => format!("a key for {}", payment.meta.network),
                        };
                        return Err(SchemeError::Signer(format!(
                            "no replica holding {which} took the payment in time"
                        ))
                        .into());
                    }
                }
                Some(r) if r.fingerprint.as_deref() == Some(self.fingerprint.as_str()) => {
                    if let Some(answer) = self.handed_outcome(payment, &r, until).await? {
                        return Ok(answer);
                    }
                }
                // Taken back, or another payment's row now: nothing of ours is pending.
                _ => {
                    return Err(SchemeError::Signer(
                        "the hand-off ended without an outcome".into(),
                    )
                    .into());
                }
            }
            let wait = until
                .saturating_duration_since(std::time::Instant::now())
                .min(Duration::from_millis(100));
            tokio::select! {
                _ = self.fac.handoffs.outcome.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// What a handed-off payment's row says to its requester, if it says anything yet.
    async fn handed_outcome(
        &self,
        payment: &CheckedPayment,
        row: &SettlementRecord,
        until: std::time::Instant,
    ) -> Result<Option<SettleResponse>, FacilitatorError> {
        let tx = row.tx_id.clone().unwrap_or_default();
        let pending = || {
            self.fail(
                payment,
                Rejection::new(reason::SETTLEMENT_PENDING).with_message(
                    "not confirmed within the settle bound; settle again with the same payload to reconcile",
                ),
                &tx,
            )
        };
        Ok(match row.state {
            SettlementState::Settled => {
                // The taker delivers to nobody: this request does, and clears what is owed, if
                // its client still waits (review F4); otherwise the answer stays owed to the
                // client's retry.
                // The success is given only once taken (as a retry collects it): if another
                // request took it (a copy, after the reservation ran out while this replica's
                // ledger lagged), this one is a replay, not a second success.
                self.watch
                    .recorded(&row.replay_key, &tx, payment.meta.charged());
                let key = row.replay_key.as_str();
                if !self.watch.waits() {
                    self.end_reservation(key).await;
                    return Ok(Some(self.unheard(payment, &tx)));
                }
                match self
                    .fac
                    .ledger
                    .take_owed_answer(key, self.payment_id.as_deref(), Collector::Claimer)
                    .await?
                {
                    Collected::Taken if self.watch.deliver(&tx) => Some(self.success(payment, &tx)),
                    Collected::Taken => {
                        self.owe_again(key).await;
                        self.end_reservation(key).await;
                        Some(self.unheard(payment, &tx))
                    }
                    Collected::Reserved | Collected::NotOwed => Some(self.replayed(payment, &tx)),
                }
            }
            SettlementState::Failed => {
                let reason = row
                    .error_reason
                    .clone()
                    .unwrap_or_else(|| reason::UNEXPECTED_SETTLE_ERROR.into());
                if reason == reason::UNEXPECTED_SETTLE_ERROR {
                    return Err(SchemeError::Unavailable(
                        "the replica that took the payment could not settle it; nothing moved"
                            .into(),
                    )
                    .into());
                }
                Some(self.fail(payment, Rejection::new(reason), &tx))
            }
            // The taker answered `settlement_pending` (it gave its lease up): so do we.
            SettlementState::Submitted if !row.lease_active(now_ms()) => Some(pending()),
            _ if std::time::Instant::now() >= until => {
                // Still being worked on at our deadline: what the taker recorded is owed to the
                // client already (owed from the moment a transaction is recorded).
                if tx.is_empty() {
                    return Err(SchemeError::Unavailable(
                        "the replica that took the payment has not sent it yet".into(),
                    )
                    .into());
                }
                Some(pending())
            }
            _ => None,
        })
    }

    async fn confirm(
        &self,
        payment: &CheckedPayment,
        token: &ClaimToken,
        txs: &[RecordedTx],
    ) -> Result<SettleResponse, FacilitatorError> {
        let status = self
            .handler
            .await_outcome(payment, txs, self.deadline)
            .await;
        if matches!(status, Ok(TxStatus::Confirmed(_))) {
            fault_point("after_confirm");
        }
        self.finish(payment, token, txs, status, true).await
    }

    /// Waits for the outcome of transactions an earlier request recorded.
    async fn follow_confirm(
        &self,
        payment: &CheckedPayment,
        token: &ClaimToken,
        txs: &[RecordedTx],
    ) -> Result<SettleResponse, FacilitatorError> {
        let status = self
            .handler
            .await_outcome(payment, txs, self.deadline)
            .await;
        self.finish(payment, token, txs, status, false).await
    }

    /// Records what the chain said and answers with it. The chain's word is the answer: a
    /// ledger fault while recording it is logged and left to the reconciler (the row keeps its
    /// transactions and its lease runs out).
    /// `own`: this request sent the transactions (a success is its own to deliver); otherwise it
    /// follows an earlier request's, and a success is delivered only if an answer is owed
    /// (after a reorg, a replay of a payment already answered must not be served again).
    async fn finish(
        &self,
        payment: &CheckedPayment,
        token: &ClaimToken,
        txs: &[RecordedTx],
        status: Result<TxStatus, SchemeError>,
        own: bool,
    ) -> Result<SettleResponse, FacilitatorError> {
        let ledger = &self.fac.ledger;
        let key = payment.meta.replay_key.as_str();
        let newest = txs.last().map(|t| t.tx_id.as_str()).unwrap_or_default();
        let recorded =
            |what: &str, result: Result<Transition, crate::ledger::LedgerError>| match result {
                Ok(done) => self.note(key, done, what),
                Err(e) => warn!(
                    replay_key = %key,
                    error = %e,
                    "{what} failed after the chain answered; the reconciler will record it"
                ),
            };
        let pending = |message: String| {
            self.fail(
                payment,
                Rejection::new(reason::SETTLEMENT_PENDING).with_message(message),
                newest,
            )
        };
        match status {
            Ok(TxStatus::Confirmed(inclusion)) => {
                // Our own transaction: from here the chain's word is the answer, also when the
                // ledger write below is slow (the HTTP cut-off then answers the success).
                let waiting = !own || self.watch.deliver(&inclusion.tx_id);
                let block = inclusion.block.and_then(|b| i64::try_from(b).ok());
                let included = Included {
                    tx_id: &inclusion.tx_id,
                    block_number: block,
                    block_hash: inclusion.block_hash.as_deref(),
                };
                // A waiting client of the sender is answered now: the record itself stops the
                // success being owed, so no copy of the payload can collect it in between.
                let answer = if own && waiting {
                    Answer::GivenNow
                } else {
                    Answer::Owed
                };
                let written = ledger.record_settled(key, token, &included, answer).await;
                let written_as = match &written {
                    Ok(done) => Some(*done),
                    Err(_) => None,
                };
                recorded("record_settled", written);
                // Whoever delivers the outcome clears what is owed: this request, if its
                // client still waits; otherwise the answer stays owed to the client's retry.
                let cut_off = || {
                    self.fail(
                        payment,
                        Rejection::new(reason::SETTLEMENT_PENDING),
                        &inclusion.tx_id,
                    )
                };
                if !waiting {
                    return Ok(cut_off());
                }
                if own {
                    // The client may have hung up during the write above (review F5). A record
                    // lost to another holder (this settle's lease ran out during a slow write)
                    // left what is owed to that holder's record: this request gives the success
                    // only if it takes it, since the other holder may be a copy of the payload
                    // that collects it. A record that failed (a ledger fault) leaves the chain's
                    // word as the answer.
                    let heard = match written_as {
                        Some(Transition::Applied) if answer == Answer::GivenNow => {
                            self.still_heard(key).await
                        }
                        Some(_) => self.clear_owed(key, false).await,
                        None => {
                            // The row may still say `submitted`, owed: the success given here
                            // is cleared in the background once whoever finishes the row has
                            // recorded it, so that no copy collects it afterwards (review).
                            let heard = self.clear_owed(key, true).await;
                            if heard {
                                self.fac.delivered(key.to_string(), self.payment_id.clone());
                            }
                            heard
                        }
                    };
                    if !heard {
                        return Ok(cut_off());
                    }
                    return Ok(self.success(payment, &inclusion.tx_id));
                }
                let owed = ledger
                    .take_owed_answer(key, self.payment_id.as_deref(), Collector::Retry)
                    .await?;
                match owed {
                    // Following an earlier request's transaction: the success is this client's
                    // only if the answer was owed, and only if it still waits for it.
                    Collected::Taken if self.watch.deliver(&inclusion.tx_id) => {
                        Ok(self.success(payment, &inclusion.tx_id))
                    }
                    Collected::Taken => {
                        recorded("owe_again", ledger.owe_again(key).await);
                        Ok(cut_off())
                    }
                    Collected::Reserved => Ok(self.reserved(payment, &inclusion.tx_id)),
                    Collected::NotOwed => Ok(self.replayed(payment, &inclusion.tx_id)),
                }
            }
            Ok(TxStatus::Failed(rejection)) => {
                recorded(
                    "record_failed",
                    ledger.record_failed(key, token, &rejection.reason).await,
                );
                // Our transaction passed simulation and failed on chain: the payer's record.
                if own && let Some(guard) = self.fac.guard() {
                    guard.budgets.landed_failed(&payment.meta).await;
                }
                Ok(self.fail(payment, rejection, newest))
            }
            Ok(TxStatus::Pending) => {
                recorded(
                    "end_lease",
                    ledger.end_lease(key, token, self.lease()).await,
                );
                Ok(pending(
                    "not confirmed within the settle bound; settle again with the same payload to reconcile".into(),
                ))
            }
            Err(e) => {
                // It may be on chain: the row keeps the transaction and the next settle (or the
                // reconciler) finds out.
                warn!(tx = newest, error = %e, "cannot read the outcome of a broadcast transaction");
                recorded(
                    "end_lease",
                    ledger.end_lease(key, token, self.lease()).await,
                );
                Ok(pending(format!(
                    "outcome unknown ({e}); settle again with the same payload to reconcile"
                )))
            }
        }
    }
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
