//! `POST /verify` and `POST /settle`.
//!
//! A settle runs on its own task: if the client hangs up, it still reaches a recorded state.
//! Its answer is awaited until just before the server's own time bound; a settle still running
//! then is answered `settlement_pending` with its transaction (or, if nothing was sent yet, a
//! settle-shaped 503), and its client is owed the final answer (see `SettleWatch`). Settles in
//! flight are bounded: past the bound, a settle is refused at once with 503 and `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Extension, State};
use tracing::Instrument;

use super::AppState;
use super::error::{ApiError, Endpoint};
use super::extract::PaymentBody;
use super::request_id::Arrived;
use crate::access::Caller;
use crate::facilitator::{CutOff, FacilitatorError, SettleWatch, settle_failure};
use crate::protocol::{SettleResponse, VerifyResponse, reason};
use crate::scheme::{Rejection, SchemeError};

/// Taken from the server's own bound for writing the answer before it is cut.
const ANSWER_RESERVE: Duration = Duration::from_millis(250);

/// Checks a payment without moving money.
#[utoipa::path(post, path = "/verify", tag = "payments",
    request_body = super::openapi::PaymentRequestBody,
    responses(
        (status = 200, description = "The verdict: `isValid`, its reason and the payer when known",
            body = VerifyResponse),
        super::openapi::VerifyRefusals,
    ),
    security(("bearer" = ["verify"]), ("apiKey" = ["verify"]), ())
)]
pub(super) async fn verify(
    State(state): State<AppState>,
    Extension(Arrived(arrived)): Extension<Arrived>,
    caller: Option<Extension<Caller>>,
    PaymentBody(body): PaymentBody,
) -> Result<Json<VerifyResponse>, ApiError> {
    let Ok(_slot) = state.verify_slots.clone().try_acquire_owned() else {
        return Err(ApiError::Overloaded {
            endpoint: Some(Endpoint::Verify),
            network: String::new(),
            retry_after: Duration::from_secs(1),
        });
    };
    let request = match body {
        Ok(request) => request,
        Err((rejection, _network)) => {
            return Ok(Json(VerifyResponse {
                is_valid: false,
                invalid_reason: Some(rejection.reason),
                invalid_message: rejection.message,
                payer: None,
                extensions: None,
            }));
        }
    };
    state
        .facilitator
        .verify(&request, arrived, &caller.map(|c| c.0).unwrap_or_default())
        .await
        .map(Json)
        .map_err(|e| ApiError::fault(Endpoint::Verify, request.payload_network(), e))
}

/// Settles a payment on chain, exactly once per payment.
#[utoipa::path(post, path = "/settle", tag = "payments",
    request_body = super::openapi::PaymentRequestBody,
    responses(
        (status = 200, description = "The outcome: `success`, the transaction, or the reason",
            body = SettleResponse),
        super::openapi::SettleRefusals,
    ),
    security(("bearer" = ["settle"]), ("apiKey" = ["settle"]), ())
)]
pub(super) async fn settle(
    State(state): State<AppState>,
    Extension(Arrived(arrived)): Extension<Arrived>,
    caller: Option<Extension<Caller>>,
    PaymentBody(body): PaymentBody,
) -> Result<Json<SettleResponse>, ApiError> {
    let request = match body {
        Ok(request) => request,
        Err((rejection, network)) => return Ok(Json(settle_failure(rejection, "", &network))),
    };
    let network = request.payload_network().to_string();
    let payment_id = request
        .extensions()
        .and_then(|e| e.get("payment-identifier"))
        .and_then(|e| e.get("info"))
        .and_then(|i| i.get("id"))
        .and_then(|id| id.as_str())
        .map(str::to_string);
    let Ok(slot) = state.settle_slots.clone().try_acquire_owned() else {
        state
            .facilitator
            .metrics
            .settle_shed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(ApiError::Overloaded {
            endpoint: Some(Endpoint::Settle),
            network,
            retry_after: Duration::from_secs(1),
        });
    };
    let facilitator = state.facilitator.clone();
    let watch = Arc::new(SettleWatch::default());
    let task_watch = watch.clone();
    let task_network = network.clone();
    let caller = caller.map(|c| c.0).unwrap_or_default();
    let work = async move {
        let _slot = slot;
        facilitator
            .settle(&request, arrived, &task_watch, &caller)
            .await
            .map(Json)
            .map_err(|e| ApiError::fault(Endpoint::Settle, task_network, e))
    };
    let mut task = state.settles.spawn(work.in_current_span());
    let hung_up = HangUp(Some(watch.clone()));
    let cutoff = arrived + state.request_timeout.saturating_sub(ANSWER_RESERVE);
    let waited = tokio::time::timeout_at(cutoff.into(), &mut task).await;
    hung_up.answered();
    match waited {
        Ok(Ok(answer)) => answer,
        Ok(Err(join)) => Err(ApiError::fault(
            Endpoint::Settle,
            network,
            FacilitatorError::Scheme(SchemeError::Internal(format!(
                "settle task ended abnormally: {join}"
            ))),
        )),
        Err(_) => Ok(cut_off(&state, &watch, &network, payment_id, arrived).await?),
    }
}

/// Dropped with the handler when the client hangs up before its settle answered (axum drops a
/// handler whose connection closed): the settle task goes on, and must then know that nobody
/// waits for its answer, or it would hand its success to a closed connection and clear the
/// answer the client's retry is owed (the retry would be refused as a replay of a payment it
/// paid). The same as the server's cut-off, minus the answer: the outcome stays owed, also
/// when the settle had already been told to deliver it (`SettleWatch::hang_up`).
struct HangUp(Option<Arc<SettleWatch>>);

impl HangUp {
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        if let Some(watch) = self.0.take() {
            watch.hang_up();
        }
    }
}

/// The answer for a settle still running at the server's bound; the task goes on and records
/// its outcome, which its client is then owed.
async fn cut_off(
    state: &AppState,
    watch: &SettleWatch,
    network: &str,
    payment_id: Option<String>,
    arrived: Instant,
) -> Result<Json<SettleResponse>, ApiError> {
    tracing::warn!(
        ms = arrived.elapsed().as_millis() as u64,
        "settle still running at the server's time bound; answering what it knows"
    );
    match watch.abandon() {
        // The chain has spoken (only the ledger write is late): the answer is the chain's.
        CutOff::Confirmed {
            replay_key,
            tx,
            amount,
        } => {
            state.facilitator.delivered(replay_key, payment_id);
            Ok(Json(SettleResponse {
                success: true,
                error_reason: None,
                error_message: None,
                payer: None,
                transaction: tx,
                network: network.to_string(),
                amount,
                extensions: None,
            }))
        }
        CutOff::Recorded(tx) => Ok(Json(settle_failure(
            Rejection::new(reason::SETTLEMENT_PENDING).with_message(
                "not finished within the server's time bound; settle again with the same payload to learn the outcome",
            ),
            &tx,
            network,
        ))),
        CutOff::Nothing => Err(ApiError::fault(
            Endpoint::Settle,
            network,
            FacilitatorError::Scheme(SchemeError::Unavailable(
                "nothing was sent within the server's time bound".into(),
            )),
        )),
    }
}
