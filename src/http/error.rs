//! The one place that turns errors into HTTP statuses and bodies.
//!
//! Business outcomes never come here: they are 200 answers. What comes here is a body we cannot
//! read (400, 413) or a fault of ours (5xx). Fault bodies keep the shape the SDK clients parse
//! (`isValid`/`invalidReason` or `success`/`errorReason`/`transaction`/`network`), so a client
//! surfaces a typed error, and carry `errorId`, the request id that the logs show.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::error;

use crate::facilitator::FacilitatorError;
use crate::protocol::reason;
use crate::scheme::SchemeError;

/// Reason sent with HTTP 409 when a payment-identifier is reused for another payment.
pub const PAYMENT_ID_CONFLICT: &str = "payment_identifier_conflict";

/// Which endpoint failed, so that the fault body has that endpoint's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Verify,
    Settle,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    /// A body that is not a facilitator request at all.
    pub fn bad_request(request_id: &str, status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({ "error": message.into(), "errorId": request_id }),
        }
    }

    /// A fault of ours. The error is logged here, with the id the client receives.
    pub fn fault(
        request_id: &str,
        endpoint: Endpoint,
        network: &str,
        err: &FacilitatorError,
    ) -> Self {
        let status = match err {
            FacilitatorError::Conflict(_) => StatusCode::CONFLICT,
            FacilitatorError::Scheme(SchemeError::Internal(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            FacilitatorError::Scheme(SchemeError::Rpc(_)) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        error!(error_id = request_id, error = %err, status = status.as_u16(), "request failed");
        let message = format!("{err} (error id {request_id})");
        let (verify_reason, settle_reason) = match err {
            FacilitatorError::Conflict(_) => (PAYMENT_ID_CONFLICT, PAYMENT_ID_CONFLICT),
            _ => (
                reason::UNEXPECTED_VERIFY_ERROR,
                reason::UNEXPECTED_SETTLE_ERROR,
            ),
        };
        let body = match endpoint {
            Endpoint::Verify => json!({
                "isValid": false,
                "invalidReason": verify_reason,
                "invalidMessage": message,
                "errorId": request_id,
            }),
            Endpoint::Settle => json!({
                "success": false,
                "errorReason": settle_reason,
                "errorMessage": message,
                "transaction": "",
                "network": network,
                "errorId": request_id,
            }),
        };
        ApiError { status, body }
    }

    pub fn internal(request_id: &str, message: &str) -> Self {
        error!(error_id = request_id, error = message, "internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: json!({ "error": "internal error", "errorId": request_id }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
