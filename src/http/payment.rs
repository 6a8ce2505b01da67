//! `POST /verify` and `POST /settle`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use super::error::{ApiError, Endpoint};
use super::request_id::RequestId;
use crate::protocol::{
    PaymentRequest, RequestError, SettleResponse, VerifyResponse, parse_request,
};
use crate::scheme::Rejection;

/// The body as a payment request, or the answer to give instead: 400/413 for a body that is not
/// a facilitator request, 200 with a reason for a readable but invalid payment (built by
/// `invalid`, which receives the rejection and the network the body named).
fn read(
    id: &RequestId,
    body: Result<Bytes, BytesRejection>,
    invalid: impl FnOnce(Rejection, String) -> Response,
) -> Result<PaymentRequest, Box<Response>> {
    let body = match body {
        Ok(body) => body,
        Err(r) => {
            return Err(Box::new(
                ApiError::bad_request(&id.0, r.status(), r.body_text()).into_response(),
            ));
        }
    };
    match parse_request(&body) {
        Ok(request) => Ok(request),
        Err(RequestError::Malformed(m)) => Err(Box::new(
            ApiError::bad_request(&id.0, StatusCode::BAD_REQUEST, m).into_response(),
        )),
        Err(RequestError::Invalid {
            reason,
            message,
            network,
        }) => Err(Box::new(invalid(
            Rejection::new(reason).with_message(message),
            network,
        ))),
    }
}

pub(super) async fn verify(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let invalid = |r: Rejection, _network: String| {
        Json(VerifyResponse {
            is_valid: false,
            invalid_reason: Some(r.reason),
            invalid_message: r.message,
            payer: None,
            extensions: None,
        })
        .into_response()
    };
    let request = match read(&id, body, invalid) {
        Ok(request) => request,
        Err(answer) => return *answer,
    };
    match state.facilitator.verify(&request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => {
            ApiError::fault(&id.0, Endpoint::Verify, request.payload_network(), &e).into_response()
        }
    }
}

pub(super) async fn settle(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let invalid = |r: Rejection, network: String| {
        Json(crate::facilitator::settle_failure(r, "", &network)).into_response()
    };
    let request = match read(&id, body, invalid) {
        Ok(request) => request,
        Err(answer) => return *answer,
    };
    // The settle runs on its own task: if the client hangs up, it still reaches a recorded state.
    let facilitator = state.facilitator.clone();
    let task_id = id.0.clone();
    let work = async move {
        let network = request.payload_network().to_string();
        match facilitator.settle(&request).await {
            Ok(answer) => Json::<SettleResponse>(answer).into_response(),
            Err(e) => ApiError::fault(&task_id, Endpoint::Settle, &network, &e).into_response(),
        }
    };
    match state.settles.spawn(work.in_current_span()).await {
        Ok(response) => response,
        Err(join) => ApiError::internal(&id.0, &format!("settle task ended abnormally: {join}"))
            .into_response(),
    }
}
