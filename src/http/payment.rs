//! `POST /verify` and `POST /settle`.

use axum::Json;
use axum::extract::State;
use tracing::Instrument;

use super::AppState;
use super::error::{ApiError, Endpoint};
use super::extract::PaymentBody;
use crate::facilitator::settle_failure;
use crate::protocol::{SettleResponse, VerifyResponse};

pub(super) async fn verify(
    State(state): State<AppState>,
    PaymentBody(body): PaymentBody,
) -> Result<Json<VerifyResponse>, ApiError> {
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
        .verify(&request)
        .await
        .map(Json)
        .map_err(|e| ApiError::fault(Endpoint::Verify, request.payload_network(), e))
}

pub(super) async fn settle(
    State(state): State<AppState>,
    PaymentBody(body): PaymentBody,
) -> Result<Json<SettleResponse>, ApiError> {
    let request = match body {
        Ok(request) => request,
        Err((rejection, network)) => return Ok(Json(settle_failure(rejection, "", &network))),
    };
    // The settle runs on its own task: if the client hangs up, it still reaches a recorded state.
    let facilitator = state.facilitator.clone();
    let work = async move {
        let network = request.payload_network().to_string();
        facilitator
            .settle(&request)
            .await
            .map(Json)
            .map_err(|e| ApiError::fault(Endpoint::Settle, network, e))
    };
    match state.settles.spawn(work.in_current_span()).await {
        Ok(answer) => answer,
        Err(join) => Err(ApiError::Internal(format!(
            "settle task ended abnormally: {join}"
        ))),
    }
}
