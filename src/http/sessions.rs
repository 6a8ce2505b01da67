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
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::extract::Query;
use super::receipts::rfc3339;
use crate::ledger::EntitledPayment;
use crate::sessions::entitlement::Question;
use crate::sessions::{ProofCheck, SessionError, Sessions, proof};

/// Longest proof header we decode: a generous bound for a CAIP-122 payload with resources.
const MAX_HEADER_LEN: usize = 16 * 1024;

/// Body of `POST /sessions/verify`: the buyer's sign-in proof and what the seller asks of it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct VerifyBody {
    /// The decoded `SIGN-IN-WITH-X` payload… (kept raw: read once, straight into the proof)
    #[schema(value_type = Option<Object>)]
    payload: Option<Box<serde_json::value::RawValue>>,
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(super) struct EntitlementParams {
    payer: String,
    resource: String,
    within: u64,
    pay_to: Option<String>,
    network: Option<String>,
}

/// `POST /sessions/verify` answer: always 200; `valid:false` carries the refusal's reason.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionVerdict {
    valid: bool,
    /// The proof's address and CAIP-2 chain, when the proof decoded.
    address: Option<String>,
    chain_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// Present when a `resource` was asked about and the proof is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    entitled: Option<bool>,
    /// Present with `entitled`: the payment that entitles, `null` when none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<EntitlingPayment>)]
    payment: Option<Option<EntitlingPayment>>,
}

/// `GET /sessions/entitlement` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct EntitlementAnswer {
    entitled: bool,
    payer: String,
    resource: String,
    /// The payment that entitles, `null` when none does.
    payment: Option<EntitlingPayment>,
}

/// The settled payment an entitlement rests on.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct EntitlingPayment {
    transaction: String,
    network: String,
    pay_to: String,
    asset: String,
    amount: String,
    /// RFC 3339 UTC.
    settled_at: String,
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
        SessionError::Nonce(e) => ApiError::Internal(e.to_string()),
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

/// Checks a `SIGN-IN-WITH-X` proof, and optionally whether its address paid for a resource.
#[utoipa::path(post, path = "/sessions/verify", tag = "sessions",
    request_body = VerifyBody,
    responses(
        (status = 200, description = "The verdict, for every outcome", body = SessionVerdict),
        super::openapi::Refusals,
    ),
    security(("bearer" = ["verify"]), ("apiKey" = ["verify"]), ())
)]
pub(super) async fn verify(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Result<Json<SessionVerdict>, ApiError> {
    let sessions = sessions(&state)?;
    let body: VerifyBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("not a session check: {e}")))?;
    // The proof is the buyer's: a bad one is an outcome, not a bad request.
    let proof = match (body.payload, body.header) {
        (Some(raw), None) => proof::from_json(raw.get()),
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
        .verify(check, caller.as_deref().and_then(Caller::payees))
        .await
        .map_err(fault)?;
    Ok(Json(SessionVerdict {
        valid: verdict.refusal.is_none(),
        address: verdict.address,
        chain_id: verdict.chain_id,
        reason: verdict.refusal.as_ref().map(|r| r.reason.to_string()),
        message: verdict.refusal.map(|r| r.message),
        entitled: verdict.entitlement.as_ref().map(Option::is_some),
        payment: verdict.entitlement.map(|found| payment(found.as_ref())),
    }))
}

/// Whether a payer paid for a resource within a time window.
#[utoipa::path(get, path = "/sessions/entitlement", tag = "sessions",
    params(EntitlementParams),
    responses(
        (status = 200, description = "The answer", body = EntitlementAnswer),
        super::openapi::Refusals,
    ),
    security(("bearer" = ["verify"]), ("apiKey" = ["verify"]), ())
)]
pub(super) async fn entitlement(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Query(params): Query<EntitlementParams>,
) -> Result<Json<EntitlementAnswer>, ApiError> {
    let sessions = sessions(&state)?;
    let mut q = question(
        params.resource,
        Some(params.within),
        params.pay_to,
        params.network,
    )?;
    q.payer = params.payer;
    let found = sessions
        .entitlement(&q, caller.as_deref().and_then(Caller::payees))
        .await
        .map_err(fault)?;
    Ok(Json(EntitlementAnswer {
        entitled: found.is_some(),
        payment: payment(found.as_ref()),
        payer: q.payer,
        resource: q.resource,
    }))
}

fn payment(p: Option<&EntitledPayment>) -> Option<EntitlingPayment> {
    p.map(|p| EntitlingPayment {
        transaction: p.tx_id.clone(),
        network: p.network.clone(),
        pay_to: p.pay_to.clone(),
        asset: p.asset.clone(),
        amount: p.amount.clone(),
        settled_at: rfc3339(p.settled_at),
    })
}
