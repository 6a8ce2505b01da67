//! `POST /sessions/verify` and `GET /sessions/entitlement` (README "Sessions"): the seller's
//! request read into a session check, and the verdict in the protocol's style — 200 for every
//! outcome with a reason string, errors only for requests we cannot read (400) or our faults.
//!
//! Scoping: the caller's API key (set by `http::access`) passes its payTo list to
//! `Sessions::verify`/`entitlement`, which hand it to `sessions::entitlement::scope`, the one
//! place it is applied: a seller's key only sees payments to its own payees.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};

use crate::access::Caller;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::Query;
use super::receipts::rfc3339;
use crate::ledger::EntitledPayment;
use crate::sessions::entitlement::Question;
use crate::sessions::{ProofCheck, SessionError, Sessions, proof};

/// Longest proof header we decode: a generous bound for a CAIP-122 payload with resources.
const MAX_HEADER_LEN: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerifyBody {
    /// The decoded `SIGN-IN-WITH-X` payload…
    payload: Option<Value>,
    /// …or the header value as received.
    header: Option<String>,
    domain: String,
    uri: String,
    chains: Vec<String>,
    max_age_seconds: Option<u64>,
    resource: Option<String>,
    within: Option<u64>,
    pay_to: Option<String>,
    network: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EntitlementParams {
    payer: String,
    resource: String,
    within: u64,
    pay_to: Option<String>,
    network: Option<String>,
}

fn sessions(state: &AppState) -> Result<&Sessions, ApiError> {
    state.sessions.as_deref().ok_or(ApiError::NotFound(
        "sessions are not enabled on this facilitator",
    ))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::Unreadable(StatusCode::BAD_REQUEST, message.into())
}

fn fault(e: SessionError) -> ApiError {
    match e {
        SessionError::Input(m) => bad(m),
        SessionError::Ledger(e) => ApiError::Internal(e.to_string()),
    }
}

fn question(
    resource: String,
    within: Option<u64>,
    pay_to: Option<String>,
    network: Option<String>,
) -> Result<Question, ApiError> {
    let within = within.ok_or_else(|| bad("`within` (seconds) is required with `resource`"))?;
    if within == 0 || within > crate::sessions::entitlement::MAX_WITHIN_SECS {
        return Err(bad(format!(
            "`within` must be between 1 and {} seconds",
            crate::sessions::entitlement::MAX_WITHIN_SECS
        )));
    }
    Ok(Question {
        payer: String::new(),
        resource,
        within_secs: within,
        pay_to,
        network,
    })
}

pub(super) async fn verify(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let sessions = sessions(&state)?;
    let body: VerifyBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("not a session check: {e}")))?;
    // The proof is the buyer's: a bad one is an outcome, not a bad request.
    let proof = match (body.payload, body.header) {
        (Some(value), None) => proof::from_value(value),
        (None, Some(header)) if header.len() <= MAX_HEADER_LEN => proof::from_header(&header),
        (None, Some(_)) => Err(proof::refuse(
            crate::sessions::reason::PAYLOAD,
            "Invalid SIWX header: too long",
        )),
        _ => return Err(bad("exactly one of `payload` and `header` is required")),
    };
    let entitlement = match body.resource {
        Some(resource) => Some(question(resource, body.within, body.pay_to, body.network)?),
        None => None,
    };
    let check = ProofCheck {
        proof,
        domain: body.domain,
        uri: body.uri,
        chains: body.chains,
        max_age_secs: body.max_age_seconds,
        entitlement,
    };
    let verdict = sessions
        .verify(check, allowed(&caller))
        .await
        .map_err(fault)?;
    let mut answer = json!({
        "valid": verdict.refusal.is_none(),
        "address": verdict.address,
        "chainId": verdict.chain_id,
    });
    if let Some(r) = &verdict.refusal {
        answer["reason"] = json!(r.reason);
        answer["message"] = json!(r.message);
    }
    if let Some(found) = &verdict.entitlement {
        answer["entitled"] = json!(found.is_some());
        answer["payment"] = payment(found.as_ref());
    }
    Ok(Json(answer))
}

pub(super) async fn entitlement(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Query(params): Query<EntitlementParams>,
) -> Result<Json<Value>, ApiError> {
    let sessions = sessions(&state)?;
    let mut q = question(
        params.resource,
        Some(params.within),
        params.pay_to,
        params.network,
    )?;
    q.payer = params.payer;
    let found = sessions
        .entitlement(&q, allowed(&caller))
        .await
        .map_err(fault)?;
    Ok(Json(json!({
        "entitled": found.is_some(),
        "payer": q.payer,
        "resource": q.resource,
        "payment": payment(found.as_ref()),
    })))
}

fn payment(p: Option<&EntitledPayment>) -> Value {
    p.map_or(Value::Null, |p| {
        json!({
            "transaction": p.tx_id,
            "network": p.network,
            "payTo": p.pay_to,
            "asset": p.asset,
            "amount": p.amount,
            "settledAt": rfc3339(p.settled_at),
        })
    })
}

/// The payees the caller's key is limited to (`None`: any, including when auth is off).
fn allowed(caller: &Option<Extension<Caller>>) -> Option<&[String]> {
    caller.as_ref().and_then(|c| c.0.pay_to.as_deref())
}
