//! `POST /verify` and `POST /settle`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use super::error::{ApiError, Endpoint};
use super::request_id::RequestId;
use crate::protocol::{RequestError, SettleResponse, VerifyResponse, parse_request};

pub(super) async fn verify(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            return ApiError::bad_request(&id.0, rejection.status(), rejection.body_text())
                .into_response();
        }
    };
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(RequestError::Malformed(m)) => {
            return ApiError::bad_request(&id.0, axum::http::StatusCode::BAD_REQUEST, m)
                .into_response();
        }
        Err(RequestError::Invalid {
            reason, message, ..
        }) => {
            return Json(VerifyResponse {
                is_valid: false,
                invalid_reason: Some(reason.into()),
                invalid_message: Some(message),
                payer: None,
                extensions: None,
            })
            .into_response();
        }
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
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            return ApiError::bad_request(&id.0, rejection.status(), rejection.body_text())
                .into_response();
        }
    };
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(RequestError::Malformed(m)) => {
            return ApiError::bad_request(&id.0, axum::http::StatusCode::BAD_REQUEST, m)
                .into_response();
        }
        Err(RequestError::Invalid {
            reason,
            message,
            network,
        }) => {
            return Json(SettleResponse {
                success: false,
                error_reason: Some(reason.into()),
                error_message: Some(message),
                payer: None,
                transaction: String::new(),
                network,
                extensions: None,
            })
            .into_response();
        }
    };
    // The settle runs on its own task: if the client hangs up, it still reaches a recorded state.
    let facilitator = state.facilitator.clone();
    let task_id = id.0.clone();
    let work = async move {
        let network = request.payload_network().to_string();
        match facilitator.settle(&request).await {
            Ok(answer) => Json(answer).into_response(),
            Err(e) => ApiError::fault(&task_id, Endpoint::Settle, &network, &e).into_response(),
        }
    };
    match state.settles.spawn(work.in_current_span()).await {
        Ok(response) => response,
        Err(join) => ApiError::internal(&id.0, &format!("settle task ended abnormally: {join}"))
            .into_response(),
    }
}
