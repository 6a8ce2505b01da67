//! Solana `exact` verification: the checks of digest §5.2 in the order of the installed
//! `@x402/svm` 2.27, plus the MUSTs that code leaves out (§5.2 "Not checked…", §5.5): the message
//! fee payer is `extra.feePayer`; none of our keys appears in any instruction's accounts or as a
//! program; exactly two signers; no address lookup tables; a compute-unit limit cap; the client's
//! signature verifies. Then the fee payer co-signs and the node simulates with signature checks.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::instructions::{
    Memo, ParseInstruction, SetComputeUnitLimit, SetComputeUnitPrice, TransferChecked, resolve,
};
use super::keys::{LIGHTHOUSE_PROGRAM, MEMO_PROGRAM, Pubkey, associated_token_address};
use super::rpc::RpcFailure;
use super::wire::VersionedTransaction;
use super::{SCHEME, SvmExact, SvmPayment, reason};
use crate::protocol::{PaymentRequest, reason as generic};
use crate::scheme::{Checked, PaymentMeta, Rejection, SchemeError, Stop};

/// Instructions allowed: compute limit, compute price, transfer, then up to four optional
/// Lighthouse or Memo instructions (3–7: Phantom injects Lighthouse guards, §5.5).
const MIN_INSTRUCTIONS: usize = 3;
const MAX_INSTRUCTIONS: usize = 7;

pub(super) fn check(h: &SvmExact, req: &PaymentRequest) -> Result<Checked<SvmPayment>, Stop> {
    Ok(parse(h, req, true)?)
}

/// A stored request back as a payment (no signature re-check needed: it was checked before).
pub(super) fn revive(h: &SvmExact, req: &PaymentRequest) -> Result<Checked<SvmPayment>, Rejection> {
    parse(h, req, false)
}

fn parse(
    h: &SvmExact,
    req: &PaymentRequest,
    check_signature: bool,
) -> Result<Checked<SvmPayment>, Rejection> {
    let no = |reason: &str, message: String| Err(Rejection::new(reason).with_message(message));
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
            "requirements.extra.feePayer is required".into(),
        );
    };
    let Ok(fee_payer) = fee_payer.parse::<Pubkey>() else {
        return no(
            reason::MISSING_FEE_PAYER,
            "requirements.extra.feePayer is not a public key".into(),
        );
    };
    let Some(fee_payer_index) = h.fee_payers.iter().position(|k| k.pubkey() == fee_payer) else {
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
            "asset, payTo or amount is malformed".into(),
        );
    };
    let Some(Value::String(encoded)) = req.scheme_payload().get("transaction") else {
        return no(
            reason::COULD_NOT_BE_DECODED,
            "payload.transaction is missing".into(),
        );
    };
    let tx = match VersionedTransaction::from_base64(encoded) {
        Ok(tx) => tx,
        Err(e) => return no(reason::COULD_NOT_BE_DECODED, e.to_string()),
    };
    let message = tx.message();
    if message.uses_lookup_tables() {
        return no(
            reason::INVALID_TRANSACTION,
            "address lookup tables are not accepted".into(),
        );
    }
    if *message.fee_payer() != fee_payer {
        return no(
            reason::FEE_PAYER_MISMATCH,
            format!("the message's fee payer is {}", message.fee_payer()),
        );
    }
    let count = message.instructions().len();
    if !(MIN_INSTRUCTIONS..=MAX_INSTRUCTIONS).contains(&count) {
        return no(
            reason::INSTRUCTIONS_LENGTH,
            format!("{count} instructions; 3 to 7 allowed"),
        );
    }
    let ix = |i: usize| resolve(message, i);
    let limit = ix(0).and_then(|i| i.parse::<SetComputeUnitLimit>());
    let Ok(limit) = limit else {
        return no(
            reason::COMPUTE_LIMIT,
            "instruction 1 must be SetComputeUnitLimit".into(),
        );
    };
    if limit.units > h.options.max_compute_unit_limit {
        return no(
            reason::COMPUTE_LIMIT_TOO_HIGH,
            format!(
                "{} compute units; at most {}",
                limit.units, h.options.max_compute_unit_limit
            ),
        );
    }
    let Ok(price) = ix(1).and_then(|i| i.parse::<SetComputeUnitPrice>()) else {
        return no(
            reason::COMPUTE_PRICE,
            "instruction 2 must be SetComputeUnitPrice".into(),
        );
    };
    if price.micro_lamports > h.options.max_compute_unit_price {
        return no(
            reason::COMPUTE_PRICE_TOO_HIGH,
            format!(
                "{} µlamports per CU; at most {}",
                price.micro_lamports, h.options.max_compute_unit_price
            ),
        );
    }
    let priority_fee = u128::from(price.micro_lamports) * u128::from(limit.units) / 1_000_000;
    if priority_fee > u128::from(h.options.max_priority_fee) {
        return no(
            reason::COMPUTE_PRICE_TOO_HIGH,
            format!(
                "priority fee {priority_fee} lamports; at most {}",
                h.options.max_priority_fee
            ),
        );
    }
    let Ok(transfer) = ix(2).and_then(|i| i.parse::<TransferChecked>()) else {
        return no(
            reason::NO_TRANSFER_INSTRUCTION,
            "instruction 3 must be an SPL TransferChecked".into(),
        );
    };
    let payer = transfer.authority.to_string();
    let with_payer = |r: Rejection| Err(r.with_payer(payer.clone()));
    let ours = |k: &Pubkey| h.fee_payers.iter().any(|f| f.pubkey() == *k);
    if ours(&transfer.authority) {
        return with_payer(
            Rejection::new(reason::FEE_PAYER_TRANSFERRING_FUNDS)
                .with_message("the fee payer cannot be the transfer authority"),
        );
    }
    for i in 0..count {
        let Ok(resolved) = ix(i) else { continue };
        if ours(&resolved.program_id) || resolved.accounts.iter().any(ours) {
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
    match message.num_signers() {
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
    let expected = associated_token_address(&pay_to, &mint, &transfer.token_program.id());
    if transfer.destination != expected {
        return with_payer(
            Rejection::new(reason::RECIPIENT_MISMATCH)
                .with_message(format!("destination must be {expected}")),
        );
    }
    if transfer.amount != amount {
        return with_payer(
            Rejection::new(reason::AMOUNT_MISMATCH)
                .with_message(format!("transfers {} ≠ required {amount}", transfer.amount)),
        );
    }
    let mut memos = Vec::new();
    for i in 3..count {
        let resolved = ix(i)
            .map_err(|e| Rejection::new(reason::INVALID_TRANSACTION).with_message(e.to_string()))?;
        match resolved.program_id {
            LIGHTHOUSE_PROGRAM => {}
            MEMO_PROGRAM => {
                match Memo::parse(&resolved.program_id, &resolved.accounts, resolved.data) {
                    Ok(m) => memos.push(m.text),
                    Err(e) => {
                        return with_payer(
                            Rejection::new(reason::INVALID_TRANSACTION).with_message(e.to_string()),
                        );
                    }
                }
            }
            other => {
                let r = reason::UNKNOWN_INSTRUCTION[i - 3];
                return with_payer(
                    Rejection::new(r)
                        .with_message(format!("program {other} is not allowed after the transfer")),
                );
            }
        }
    }
    if let Some(memo) = extra.and_then(|e| e.get("memo")).and_then(Value::as_str) {
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
    }
    if check_signature {
        // Slot 0 is the fee payer's (still empty); slot 1 must be the payer's, and valid.
        if !tx.signature_verifies(1) {
            return with_payer(
                Rejection::new(reason::SIGNATURE_INVALID)
                    .with_message("the payer's signature does not verify"),
            );
        }
    }
    let message_hash = bs58::encode(Sha256::digest(tx.message_bytes())).into_string();
    Ok(Checked {
        meta: PaymentMeta {
            network: h.network.clone(),
            payer,
            replay_key: format!("{}/{message_hash}", h.network),
            // The wire transaction decodes canonically, so its bytes are the payment.
            fingerprint: bs58::encode(Sha256::digest(tx.serialize())).into_string(),
            replay_reason: crate::protocol::reason::DUPLICATE_SETTLEMENT,
            pay_to: pay_to.to_string(),
            asset: mint.to_string(),
            amount: amount.to_string(),
            max_amount: None,
            sender: None,
        },
        payment: SvmPayment {
            tx,
            fee_payer_index,
            authority: transfer.authority,
        },
    })
}

/// The transaction co-signed by our fee payer.
pub(super) fn cosigned(h: &SvmExact, p: &SvmPayment) -> Result<VersionedTransaction, SchemeError> {
    let mut tx = p.tx.clone();
    let key = h
        .fee_payers
        .get(p.fee_payer_index)
        .ok_or_else(|| SchemeError::Internal("fee payer index out of range".into()))?;
    tx.sign(key)
        .map_err(|e| SchemeError::Internal(format!("co-signing failed: {e}")))?;
    Ok(tx)
}

pub(super) async fn simulate(h: &SvmExact, p: &SvmPayment) -> Result<(), Stop> {
    let tx = cosigned(h, p)?;
    let params = json!([tx.to_base64(), {
        "encoding": "base64",
        "sigVerify": true,
        "replaceRecentBlockhash": false,
        "commitment": "confirmed",
    }]);
    let payer = p.authority.to_string();
    match h.rpc.read("simulateTransaction", params).await {
        Ok(result) => {
            let value = &result["value"];
            if value["err"].is_null() {
                return Ok(());
            }
            let logs: Vec<&str> = value["logs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let tail = logs
                .iter()
                .rev()
                .take(3)
                .rev()
                .copied()
                .collect::<Vec<_>>()
                .join(" | ");
            Err(Rejection::new(reason::SIMULATION_FAILED)
                .with_message(format!("{} {tail}", value["err"]))
                .with_payer(payer)
                .into())
        }
        Err(RpcFailure::Node { message, .. }) => Err(Rejection::new(reason::SIMULATION_FAILED)
            .with_message(message)
            .with_payer(payer)
            .into()),
        Err(transport) => Err(SchemeError::Rpc(transport.message()).into()),
    }
}
