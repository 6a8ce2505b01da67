//! Solana `exact` verification: the checks of digest §5.2 in the order of the installed
//! `@x402/svm` 2.27, plus the MUSTs that code leaves out (§5.2 "Not checked…", §5.5) and what
//! keeps the fee payer from paying for nothing, even to a buyer who is also the seller
//! (docs/solana.md §1–§5): the message fee payer is `extra.feePayer`; none of our keys
//! appears in any instruction's accounts or as a program; every instruction resolves; exactly
//! two signers; no address lookup tables; compute caps with the priority fee rounded up as the
//! runtime charges it; a positive amount; no payment to oneself; Lighthouse only as account
//! assertions on the transfer's own accounts; no mint extension the network does not allow; the
//! client's signature verifies. Then the node simulates the transaction as the client sent it,
//! without our signature (`sigVerify: false`): the co-signature exists only in `prepare`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use solana_pubkey::Pubkey;
use solana_rpc_client_api::request::RpcRequest;
use solana_rpc_client_api::response::{Response, RpcSimulateTransactionResult};
use solana_signature::Signature;
use solana_transaction::versioned::VersionedTransaction;

use super::instructions::{self, InstructionError, ResolvedInstruction, TransferChecked, resolve};
use super::keys::{self, LIGHTHOUSE_PROGRAM, MEMO_PROGRAM};
use super::mint::{Extension, Facts};
use super::rpc::RpcFailure;
use super::{LighthousePolicy, SCHEME, SvmExact, SvmPayment, reason, wire};
use crate::protocol::{PaymentRequest, reason as generic};
use crate::scheme::{Checked, Deadline, PaymentMeta, Rejection, SchemeError, Stop};

/// Instructions allowed: compute limit, compute price, transfer, then up to four optional
/// Lighthouse or Memo instructions (3–7: Phantom injects Lighthouse guards, §5.5).
const MIN_INSTRUCTIONS: usize = 3;
const MAX_INSTRUCTIONS: usize = 7;
/// Simulation outcomes remembered at most (see [`SimulationCache`]).
const MAX_REMEMBERED: usize = 4096;

pub(super) async fn check(
    h: &SvmExact,
    req: &PaymentRequest,
    deadline: Deadline,
) -> Result<Checked<SvmPayment>, Stop> {
    let checked = parse(h, req, true)?;
    let payer = checked.meta.payer.clone();
    mint_policy(h, &checked.payment.transfer, deadline)
        .await
        .map_err(|s| s.with_payer(&payer))?;
    Ok(checked)
}

/// A stored request back as a payment (no signature or chain re-check: it was checked before).
pub(super) fn revive(h: &SvmExact, req: &PaymentRequest) -> Result<Checked<SvmPayment>, Rejection> {
    parse(h, req, false)
}

fn no<T>(reason: &str, message: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::new(reason).with_message(message))
}

/// The memo the seller asked for, if any; a memo that is not a string is refused, not ignored.
fn seller_memo(extra: Option<&Value>) -> Result<Option<&str>, Rejection> {
    match extra.and_then(|e| e.get("memo")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(memo)) => Ok(Some(memo)),
        Some(_) => no(
            generic::INVALID_PAYMENT_REQUIREMENTS,
            "requirements.extra.memo must be a string",
        ),
    }
}

/// The priority fee the runtime charges for `price` µlamports per CU over `limit` CUs, rounded
/// up as the runtime rounds it.
pub(super) fn priority_fee(price: u64, limit: u32) -> u128 {
    (u128::from(price) * u128::from(limit)).div_ceil(1_000_000)
}

fn parse(
    h: &SvmExact,
    req: &PaymentRequest,
    check_signature: bool,
) -> Result<Checked<SvmPayment>, Rejection> {
    if req.payload_scheme() != SCHEME || req.scheme() != SCHEME {
        return no(
            reason::UNSUPPORTED_SCHEME,
            format!("scheme must be `{SCHEME}`"),
        );
    }
    if req.payload_network() != req.network() {
        return no(
            reason::NETWORK_MISMATCH,
            format!(
                "paid on {}, required {}",
                req.payload_network(),
                req.network()
            ),
        );
    }
    let extra = req.extra();
    let Some(fee_payer) = extra
        .and_then(|e| e.get("feePayer"))
        .and_then(Value::as_str)
    else {
        return no(
            reason::MISSING_FEE_PAYER,
            "requirements.extra.feePayer is required",
        );
    };
    let Ok(fee_payer) = fee_payer.parse::<Pubkey>() else {
        return no(
            reason::MISSING_FEE_PAYER,
            "requirements.extra.feePayer is not a public key",
        );
    };
    let Some(fee_payer_index) = h.fee_payer_keys.iter().position(|k| *k == fee_payer) else {
        return no(
            reason::FEE_PAYER_NOT_MANAGED,
            format!("{fee_payer} is not one of this facilitator's fee payers"),
        );
    };
    let (Ok(mint), Ok(pay_to), Ok(amount)) = (
        req.asset().parse::<Pubkey>(),
        req.pay_to().parse::<Pubkey>(),
        req.amount().parse::<u64>(),
    ) else {
        return no(
            generic::INVALID_PAYMENT_REQUIREMENTS,
            "asset, payTo or amount is malformed",
        );
    };
    if !h.options.assets.is_empty() && !h.options.assets.contains(&mint) {
        return no(
            generic::INVALID_PAYMENT_REQUIREMENTS,
            format!("asset {mint} is not accepted on this network"),
        );
    }
    // A payment of nothing moves no money and still costs the fee payer its fees (docs/solana.md §4.3).
    if amount == 0 {
        return no(
            generic::INVALID_PAYMENT_REQUIREMENTS,
            "the amount must be positive",
        );
    }
    let memo_required = seller_memo(extra)?;
    let Some(Value::String(encoded)) = req.scheme_payload().get("transaction") else {
        return no(
            reason::COULD_NOT_BE_DECODED,
            "payload.transaction is missing",
        );
    };
    let tx = match wire::from_base64(encoded) {
        Ok(tx) => tx,
        Err(e) => return no(reason::COULD_NOT_BE_DECODED, e.to_string()),
    };
    let message = &tx.message;
    if message
        .address_table_lookups()
        .is_some_and(|l| !l.is_empty())
    {
        return no(
            reason::INVALID_TRANSACTION,
            "address lookup tables are not accepted",
        );
    }
    // Sanitizing guarantees a fee payer (a writable signer) at index 0.
    if message.static_account_keys().first() != Some(&fee_payer) {
        return no(
            reason::FEE_PAYER_MISMATCH,
            format!(
                "the message's fee payer is {}",
                message
                    .static_account_keys()
                    .first()
                    .map(Pubkey::to_string)
                    .unwrap_or_default()
            ),
        );
    }
    let count = message.instructions().len();
    if !(MIN_INSTRUCTIONS..=MAX_INSTRUCTIONS).contains(&count) {
        return no(
            reason::INSTRUCTIONS_LENGTH,
            format!("{count} instructions; 3 to 7 allowed"),
        );
    }
    // Every instruction must resolve before any is judged: a check that skipped one it could not
    // read would let a fee payer it names slip through (docs/solana.md §2).
    let resolved: Vec<ResolvedInstruction<'_>> = (0..count)
        .map(|i| resolve(message, i))
        .collect::<Result<_, InstructionError>>()
        .map_err(|e| Rejection::new(reason::INVALID_TRANSACTION).with_message(e.to_string()))?;
    let Ok(units) = instructions::compute_unit_limit(&resolved[0]) else {
        return no(
            reason::COMPUTE_LIMIT,
            "instruction 1 must be SetComputeUnitLimit",
        );
    };
    if units > h.options.max_compute_unit_limit {
        return no(
            reason::COMPUTE_LIMIT_TOO_HIGH,
            format!(
                "{units} compute units; at most {}",
                h.options.max_compute_unit_limit
            ),
        );
    }
    let Ok(price) = instructions::compute_unit_price(&resolved[1]) else {
        return no(
            reason::COMPUTE_PRICE,
            "instruction 2 must be SetComputeUnitPrice",
        );
    };
    if price > h.options.max_compute_unit_price {
        return no(
            reason::COMPUTE_PRICE_TOO_HIGH,
            format!(
                "{price} µlamports per CU; at most {}",
                h.options.max_compute_unit_price
            ),
        );
    }
    let fee = priority_fee(price, units);
    if fee > u128::from(h.options.max_priority_fee) {
        return no(
            reason::COMPUTE_PRICE_TOO_HIGH,
            format!(
                "priority fee {fee} lamports; at most {}",
                h.options.max_priority_fee
            ),
        );
    }
    let Ok(transfer) = instructions::transfer_checked(&resolved[2]) else {
        return no(
            reason::NO_TRANSFER_INSTRUCTION,
            "instruction 3 must be an SPL TransferChecked",
        );
    };
    let payer = transfer.authority.to_string();
    let with_payer = |r: Rejection| Err(r.with_payer(payer.clone()));
    let ours = |k: &Pubkey| h.fee_payer_keys.contains(k);
    if ours(&transfer.authority) {
        return with_payer(
            Rejection::new(reason::FEE_PAYER_TRANSFERRING_FUNDS)
                .with_message("the fee payer cannot be the transfer authority"),
        );
    }
    for (i, ix) in resolved.iter().enumerate() {
        if ours(&ix.program_id) || ix.accounts.iter().any(ours) {
            return with_payer(
                Rejection::new(reason::FEE_PAYER_IN_INSTRUCTION_ACCOUNTS).with_message(format!(
                    "instruction {} references a fee payer of this facilitator",
                    i + 1
                )),
            );
        }
    }
    // Only after the fee-payer isolation checks, so that a fee payer posing as the authority
    // (one signer) is named as such.
    match usize::from(message.header().num_required_signatures) {
        2 => {}
        n if n > 2 => {
            return with_payer(
                Rejection::new(reason::EXCESSIVE_SIGNERS).with_message(format!(
                    "{n} signers; only the payer and the fee payer may sign"
                )),
            );
        }
        _ => {
            return with_payer(
                Rejection::new(reason::INVALID_TRANSACTION)
                    .with_message("the payer's signature is missing"),
            );
        }
    }
    if transfer.mint != mint {
        return with_payer(
            Rejection::new(reason::MINT_MISMATCH)
                .with_message(format!("transfers mint {}", transfer.mint)),
        );
    }
    let expected = keys::associated_token_address(&pay_to, &mint, &transfer.token_program);
    if transfer.destination != expected {
        return with_payer(
            Rejection::new(reason::RECIPIENT_MISMATCH)
                .with_message(format!("destination must be {expected}")),
        );
    }
    // Paying oneself moves nothing and costs the fee payer fees; a delegate of the seller's own
    // account "paying" with the seller's tokens is the same (docs/solana.md §4.3).
    if transfer.source == transfer.destination || transfer.authority == pay_to {
        return with_payer(
            Rejection::new(reason::RECIPIENT_MISMATCH)
                .with_message("the payer cannot pay itself: source and destination are the same"),
        );
    }
    if transfer.amount != amount {
        return with_payer(
            Rejection::new(reason::AMOUNT_MISMATCH)
                .with_message(format!("transfers {} ≠ required {amount}", transfer.amount)),
        );
    }
    let mut memos = Vec::new();
    for (i, ix) in resolved.iter().enumerate().skip(3) {
        let refuse = |message: String| {
            Err(Rejection::new(reason::UNKNOWN_INSTRUCTION[i - 3])
                .with_message(message)
                .with_payer(payer.clone()))
        };
        match ix.program_id {
            LIGHTHOUSE_PROGRAM if h.options.lighthouse == LighthousePolicy::Off => {
                return refuse("Lighthouse instructions are not accepted on this network".into());
            }
            LIGHTHOUSE_PROGRAM => match instructions::lighthouse(ix) {
                Ok(guard) if transfer_account(&transfer, &guard.target) => {}
                Ok(guard) => {
                    return refuse(format!(
                        "a Lighthouse assertion may only target the payer's own accounts, not {}",
                        guard.target
                    ));
                }
                Err(e) => return refuse(e.to_string()),
            },
            MEMO_PROGRAM => match instructions::memo(ix) {
                Ok(text) => memos.push(text),
                Err(e) => {
                    return with_payer(
                        Rejection::new(reason::INVALID_TRANSACTION).with_message(e.to_string()),
                    );
                }
            },
            other => return refuse(format!("program {other} is not allowed after the transfer")),
        }
    }
    let exclusive_key = match memo_required {
        Some(memo) => {
            if memos.len() != 1 {
                return with_payer(Rejection::new(reason::MEMO_COUNT).with_message(format!(
                    "{} memo instructions; exactly one required",
                    memos.len()
                )));
            }
            if memos[0] != memo {
                return with_payer(
                    Rejection::new(reason::MEMO_MISMATCH)
                        .with_message("the memo differs from extra.memo"),
                );
            }
            // A seller's memo names one invoice: paid once per network and payee, whatever
            // transaction carries it (see `PaymentMeta::exclusive_key`).
            let hash = bs58::encode(Sha256::digest(memo.as_bytes())).into_string();
            Some(format!("{}/memo/{pay_to}/{hash}", h.network))
        }
        None => None,
    };
    let message_bytes = wire::message_bytes(&tx);
    if check_signature {
        // Slot 0 is the fee payer's (still empty); slot 1 must be the payer's, and valid.
        let payer_signs = message.static_account_keys().get(1);
        let verified = match (payer_signs, tx.signatures.get(1)) {
            (Some(key), Some(signature)) => keys::verify(key, &message_bytes, signature),
            _ => false,
        };
        if !verified {
            return with_payer(
                Rejection::new(reason::SIGNATURE_INVALID)
                    .with_message("the payer's signature does not verify"),
            );
        }
    }
    let message_hash = bs58::encode(Sha256::digest(&message_bytes)).into_string();
    let replay_key = format!("{}/{message_hash}", h.network);
    // The wire transaction decodes canonically, so the message and the payer's signature are
    // the payment; slot 0 is ours to fill (the client's bytes there are zeroed before anything
    // is sent), so it is not part of it.
    let mut signed = Sha256::new();
    signed.update(&message_bytes);
    for signature in tx.signatures.iter().skip(1) {
        signed.update(signature.as_ref());
    }
    let fingerprint = bs58::encode(signed.finalize()).into_string();
    Ok(Checked {
        meta: PaymentMeta {
            network: h.network.clone(),
            payer,
            replay_key: replay_key.clone(),
            fingerprint,
            replay_reason: crate::protocol::reason::DUPLICATE_SETTLEMENT,
            pay_to: pay_to.to_string(),
            asset: mint.to_string(),
            amount: amount.to_string(),
            exclusive_key,
            max_amount: None,
            sender: None,
        },
        payment: SvmPayment {
            tx,
            fee_payer_index,
            transfer,
            replay_key,
        },
    })
}

/// The accounts a Lighthouse guard may assert on: the buyer's own, the transfer's source and
/// authority, which only the buyer's own transactions change (a race that costs the buyer a
/// fee, docs/solana.md §4.1, §4.4). Never a sysvar, our fee payer, or an account third parties move between
/// simulation and landing at no cost to the buyer: the seller's destination (every other
/// payment to the seller changes its balance), the mint (its supply moves with mints and burns).
fn transfer_account(t: &TransferChecked, target: &Pubkey) -> bool {
    [t.source, t.authority].contains(target)
}

/// The mint's (and for Token-2022 the destination's) extensions against the network's
/// `allow_mint_extensions`, from the cache or one read each.
async fn mint_policy(h: &SvmExact, t: &TransferChecked, deadline: Deadline) -> Result<(), Stop> {
    // Extensions exist only under Token-2022; a Token mint is what the Token program checks
    // in simulation (and then costs no read at all).
    if t.token_program != keys::TOKEN_2022_PROGRAM {
        return Ok(());
    }
    let read = |e: RpcFailure| SchemeError::Rpc(format!("cannot read the mint: {}", e.message()));
    let mint = h
        .accounts
        .get(&h.rpc, &t.mint, true, deadline)
        .await
        .map_err(read)?;
    let refuse = |message: String| {
        Err(Stop::Reject(
            Rejection::new(reason::MINT_EXTENSION_NOT_ALLOWED).with_message(message),
        ))
    };
    let refusable = match mint.facts {
        Facts::Missing => {
            return Err(Rejection::new(reason::MINT_MISMATCH)
                .with_message(format!("mint {} does not exist", t.mint))
                .into());
        }
        Facts::NotToken(owner) | Facts::Token { owner, .. } if owner != t.token_program => {
            return Err(Rejection::new(reason::MINT_MISMATCH)
                .with_message(format!(
                    "mint {} belongs to {owner}, not the transfer's program",
                    t.mint
                ))
                .into());
        }
        Facts::Unreadable(why) => {
            return Err(Rejection::new(reason::MINT_MISMATCH)
                .with_message(why)
                .into());
        }
        Facts::NotToken(_) => return refuse("the mint is not a token mint".into()),
        Facts::Token { refusable, .. } => refusable,
    };
    for (extension, why) in refusable {
        if !h.options.allowed_extensions.contains(&extension) {
            return refuse(format!(
                "{why} (allow it with allow_mint_extensions = [\"{}\"])",
                extension.name()
            ));
        }
    }
    if mint.paused {
        return refuse("the mint is paused".into());
    }
    if !h
        .options
        .allowed_extensions
        .contains(&Extension::MemoTransfer)
    {
        let destination = h
            .accounts
            .get(&h.rpc, &t.destination, false, deadline)
            .await
            .map_err(read)?;
        if let Facts::Token { refusable, .. } = destination.facts
            && let Some((_, why)) = refusable.first()
        {
            return refuse(format!(
                "{why} (allow it with allow_mint_extensions = [\"memo_transfer\"])"
            ));
        }
    }
    Ok(())
}

/// What a simulation said about one message, remembered for a few seconds so that a `/verify`
/// repeated in a loop costs one simulation, not one per request (docs/solana.md §5).
pub struct SimulationCache {
    ttl: Duration,
    outcomes: Mutex<HashMap<String, (Instant, Option<Rejection>)>>,
}

impl SimulationCache {
    pub fn new(ttl: Duration) -> Self {
        SimulationCache {
            ttl,
            outcomes: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &str) -> Option<Option<Rejection>> {
        let outcomes = self.outcomes.lock().ok()?;
        let (at, outcome) = outcomes.get(key)?;
        (at.elapsed() < self.ttl).then(|| outcome.clone())
    }

    fn put(&self, key: &str, outcome: Option<Rejection>) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut outcomes) = self.outcomes.lock() else {
            return;
        };
        if outcomes.len() >= MAX_REMEMBERED {
            let ttl = self.ttl;
            outcomes.retain(|_, (at, _)| at.elapsed() < ttl);
            if outcomes.len() >= MAX_REMEMBERED {
                outcomes.clear();
            }
        }
        outcomes.insert(key.to_string(), (Instant::now(), outcome));
    }
}

/// The transaction as the client sent it, with the fee payer's slot zeroed whatever it held:
/// nothing we sign leaves this process before `prepare`, so no RPC operator can land a payment
/// that skipped `/settle` (docs/solana.md §5).
fn unsigned(p: &SvmPayment) -> VersionedTransaction {
    let mut tx = p.tx.clone();
    if let Some(slot) = tx.signatures.first_mut() {
        *slot = Signature::default();
    }
    tx
}

pub(super) async fn simulate(h: &SvmExact, p: &SvmPayment, deadline: Deadline) -> Result<(), Stop> {
    let replay_key = p.replay_key.as_str();
    let payer = p.transfer.authority.to_string();
    if let Some(outcome) = h.simulations.get(replay_key) {
        return match outcome {
            None => Ok(()),
            Some(rejection) => Err(rejection.into()),
        };
    }
    let tx = unsigned(p);
    let raw = wire::encode(&tx)
        .ok_or_else(|| SchemeError::Internal("a checked transaction does not encode".into()))?;
    let params = json!([wire::to_base64(&raw), {
        "encoding": "base64",
        // Our signature is absent; the payer's was verified locally (verify_strict).
        "sigVerify": false,
        "replaceRecentBlockhash": false,
        "commitment": "confirmed",
    }]);
    let mut last = None;
    for node in h.rpc.nodes() {
        let call = node
            .client
            .send::<Value>(RpcRequest::SimulateTransaction, params.clone());
        match h.rpc.on(deadline, call).await {
            Ok(answer) => {
                let outcome = judge_simulation(answer)?.map(|r| r.with_payer(payer.clone()));
                h.simulations.put(replay_key, outcome.clone());
                return match outcome {
                    None => Ok(()),
                    Some(rejection) => Err(rejection.into()),
                };
            }
            // The node cannot read the transaction at all: a verdict on the payment.
            Err(RpcFailure::Node {
                code: -32602,
                message,
                ..
            }) => {
                let rejection = Rejection::new(reason::SIMULATION_FAILED)
                    .with_message(message)
                    .with_payer(payer.clone());
                h.simulations.put(replay_key, Some(rejection.clone()));
                return Err(rejection.into());
            }
            // Anything else is the node's trouble (lag, rate limit): the next one may answer.
            Err(e) => last = Some(e),
        }
        if deadline.passed() {
            break;
        }
    }
    let why = last
        .map(|e| e.message())
        .unwrap_or_else(|| "no RPC URL".into());
    Err(SchemeError::Rpc(format!("simulateTransaction: {why}")).into())
}

/// A simulation answer: `None` when it passed. An answer without `value.err` is no answer (a
/// proxy's `{}` must not pass every payment, docs/solana.md §6): a fault, never a pass.
fn judge_simulation(answer: Value) -> Result<Option<Rejection>, SchemeError> {
    let has_err = answer
        .get("value")
        .and_then(Value::as_object)
        .is_some_and(|v| v.contains_key("err"));
    if !has_err {
        return Err(SchemeError::Rpc(
            "simulateTransaction answered without value.err".into(),
        ));
    }
    let result: Response<RpcSimulateTransactionResult> = serde_json::from_value(answer)
        .map_err(|e| SchemeError::Rpc(format!("unreadable simulation: {e}")))?;
    let Some(err) = result.value.err else {
        return Ok(None);
    };
    let logs = result.value.logs.unwrap_or_default();
    let tail = logs
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" | ");
    Ok(Some(
        Rejection::new(reason::SIMULATION_FAILED).with_message(format!("{err} {tail}")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_priority_fee_rounds_up_like_the_runtime() {
        assert_eq!(priority_fee(1, 20_000), 1);
        assert_eq!(priority_fee(5_000_000, 20_000), 100_000);
        assert_eq!(priority_fee(5_000_001, 20_000), 100_001);
        assert_eq!(priority_fee(0, 200_000), 0);
        assert_eq!(
            priority_fee(u64::MAX, u32::MAX),
            (u128::from(u64::MAX) * u128::from(u32::MAX)).div_ceil(1_000_000)
        );
    }

    #[test]
    fn a_simulation_answer_without_err_is_a_fault() {
        for answer in [
            json!({}),
            json!({"value": {}}),
            json!({"value": null}),
            json!({"context": {"slot": 1}, "value": {"logs": []}}),
        ] {
            assert!(judge_simulation(answer).is_err());
        }
        let ok = json!({"context": {"slot": 1}, "value": {"err": null, "logs": []}});
        assert!(matches!(judge_simulation(ok), Ok(None)));
        let failed = json!({"context": {"slot": 1}, "value": {"err": "BlockhashNotFound", "logs": ["a", "b"]}});
        assert!(
            matches!(judge_simulation(failed), Ok(Some(r)) if r.reason == reason::SIMULATION_FAILED)
        );
    }

    #[test]
    fn the_simulation_cache_forgets() {
        let cache = SimulationCache::new(Duration::from_millis(50));
        cache.put("k", None);
        assert_eq!(cache.get("k"), Some(None));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("k"), None);
        let off = SimulationCache::new(Duration::ZERO);
        off.put("k", None);
        assert_eq!(off.get("k"), None);
    }

    #[test]
    fn non_string_memos_are_refused() {
        assert!(seller_memo(Some(&json!({"memo": 42}))).is_err());
        assert_eq!(seller_memo(Some(&json!({"memo": "a"}))), Ok(Some("a")));
        assert_eq!(seller_memo(Some(&json!({}))), Ok(None));
        assert_eq!(seller_memo(None), Ok(None));
    }
}
