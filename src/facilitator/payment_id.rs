//! The `payment-identifier` extension (digest §6.2): a settled payment presented again with its
//! id gets its success again; the same id with a different payment is a conflict (HTTP 409).
//!
//! The id lives in the payment's own ledger row, written by the claim (so a `/verify` reserves
//! nothing and an unanswered id ends with its row), unique per scope: the payer and the payee,
//! so one buyer's id never blocks another's payment. "The same payment" is the request's
//! fingerprint (payload and core requirements), so a seller that re-describes the resource
//! between verify and settle still gets its stored answer. Failed payments hold no id: a retry
//! is evaluated afresh.

use serde_json::Value;

use super::{Facilitator, FacilitatorError};
use crate::ledger::SettlementState;
use crate::protocol::{PaymentRequest, SettleResponse, reason};
use crate::scheme::{PaymentMeta, Rejection, SchemeHandler};

pub const EXTENSION: &str = "payment-identifier";

/// The id the client put in `extensions["payment-identifier"].info.id`, validated.
pub(super) fn extract(request: &PaymentRequest) -> Result<Option<String>, Rejection> {
    let Some(ext) = request.extensions().and_then(|e| e.get(EXTENSION)) else {
        return Ok(None);
    };
    let info = ext.get("info");
    match info.and_then(|i| i.get("id")) {
        Some(Value::String(id)) => {
            let ok = (16..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if ok {
                Ok(Some(id.clone()))
            } else {
                Err(Rejection::new(reason::INVALID_PAYLOAD).with_message(
                    "payment-identifier id must be 16–128 characters of [A-Za-z0-9_-]",
                ))
            }
        }
        Some(_) => Err(Rejection::new(reason::INVALID_PAYLOAD)
            .with_message("payment-identifier id must be a string")),
        None if info.and_then(|i| i.get("required")) == Some(&Value::Bool(true)) => {
            Err(Rejection::new(reason::INVALID_PAYLOAD)
                .with_message("payment-identifier is required but has no id"))
        }
        None => Ok(None),
    }
}

/// The scope an id is unique in.
pub(super) fn scope(meta: &PaymentMeta) -> String {
    format!(
        "{}|{}",
        meta.payer.to_ascii_lowercase(),
        meta.pay_to.to_ascii_lowercase()
    )
}

pub(super) fn conflict(id: Option<&str>) -> FacilitatorError {
    FacilitatorError::Conflict(format!(
        "payment-identifier {} was already used for a different payment",
        id.unwrap_or("")
    ))
}

/// The stored success when this id and this payment settled before; a conflict when the id
/// belongs to another live payment of the same payer and payee. It clears nothing (the id is
/// answered every time), so a client that hangs up here loses nothing and needs no
/// `SettleWatch`: its retry with the id is answered the same.
pub(super) async fn answered(
    fac: &Facilitator,
    handler: &dyn SchemeHandler,
    request: &PaymentRequest,
    id: &str,
    fingerprint: &str,
    network: &str,
) -> Result<Option<SettleResponse>, FacilitatorError> {
    // The payer and payee come from the payment as written (no clock, no chain): a forged
    // payer only finds rows of a payment it copied whole.
    let Ok(payment) = handler.revive(request) else {
        return Ok(None);
    };
    let Some(row) = fac.ledger.by_payment_id(&scope(&payment.meta), id).await? else {
        return Ok(None);
    };
    if !row.is_payment(fingerprint) {
        return Err(conflict(Some(id)));
    }
    if row.state != SettlementState::Settled {
        return Ok(None);
    }
    Ok(Some(SettleResponse {
        success: true,
        error_reason: None,
        error_message: None,
        payer: Some(row.payer.clone()),
        transaction: row.tx_id.clone().unwrap_or_default(),
        network: network.to_string(),
        amount: row.max_amount.as_ref().map(|_| row.amount.clone()),
        extensions: None,
    }))
}

/// For `/verify`: a conflict when the id is held by another live payment in its scope.
pub(super) async fn refuse_conflict(
    fac: &Facilitator,
    handler: &dyn SchemeHandler,
    request: &PaymentRequest,
    id: &str,
) -> Result<(), FacilitatorError> {
    let Ok(payment) = handler.revive(request) else {
        return Ok(());
    };
    match fac.ledger.by_payment_id(&scope(&payment.meta), id).await? {
        Some(row) if !row.is_payment(&request.fingerprint()) => Err(conflict(Some(id))),
        _ => Ok(()),
    }
}
