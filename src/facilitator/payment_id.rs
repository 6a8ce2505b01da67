//! The `payment-identifier` extension (digest §6.2): the same id with the same payment returns the
//! stored settle answer; the same id with a different payment is a conflict (HTTP 409).
//!
//! Only successful settles are stored: a failure moved no money, so a retry is evaluated afresh.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::settle::hex_encode;
use super::{Facilitator, FacilitatorError};
use crate::ledger::PaymentIdOutcome;
use crate::protocol::{PaymentRequest, SettleResponse, reason};
use crate::scheme::Rejection;

pub const EXTENSION: &str = "payment-identifier";

pub enum Seen {
    /// Not answered before (with the id, when the request carries one).
    Fresh(Option<String>),
    /// This id and payment were settled before: the answer given then.
    Answered(Box<SettleResponse>),
}

/// The id the client put in `extensions["payment-identifier"].info.id`, validated.
fn extract(request: &PaymentRequest) -> Result<Option<String>, Rejection> {
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

pub(super) async fn check(
    fac: &Facilitator,
    request: &PaymentRequest,
) -> Result<Result<Seen, Rejection>, FacilitatorError> {
    let id = match extract(request) {
        Ok(Some(id)) => id,
        Ok(None) => return Ok(Ok(Seen::Fresh(None))),
        Err(rejection) => return Ok(Err(rejection)),
    };
    let hash = hex_encode(&Sha256::digest(request.to_json().as_bytes()));
    match fac.ledger.remember_payment_id(&id, &hash).await? {
        PaymentIdOutcome::New => Ok(Ok(Seen::Fresh(Some(id)))),
        PaymentIdOutcome::Existing { request_hash, .. } if request_hash != hash => {
            Err(FacilitatorError::Conflict(format!(
                "payment-identifier {id} was already used for a different payment"
            )))
        }
        PaymentIdOutcome::Existing {
            response: Some(stored),
            ..
        } => match serde_json::from_str(&stored) {
            Ok(answer) => Ok(Ok(Seen::Answered(Box::new(answer)))),
            Err(_) => Ok(Ok(Seen::Fresh(Some(id)))),
        },
        PaymentIdOutcome::Existing { response: None, .. } => Ok(Ok(Seen::Fresh(Some(id)))),
    }
}

pub(super) async fn store(
    fac: &Facilitator,
    id: &str,
    answer: &SettleResponse,
) -> Result<(), FacilitatorError> {
    if let Ok(json) = serde_json::to_string(answer) {
        fac.ledger.store_payment_response(id, &json).await?;
    }
    Ok(())
}
