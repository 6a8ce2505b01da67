//! The one place that turns errors into HTTP statuses and bodies.
//!
//! Business outcomes never come here: they are 200 answers. What comes here is a request we
//! refuse to read (400, 401, 404, 405, 413) or a fault of ours (5xx). Fault bodies keep the shape
//! the SDK clients parse (`isValid`/`invalidReason` or `success`/`errorReason`/`transaction`/
//! `network`), so a client surfaces a typed error.
//!
//! Every error body carries `errorId`, the request id the logs show. A handler does not know
//! that id, so [`ApiError`]'s response parks the body in the response's extensions and the
//! request-id middleware ([`super::request_id`]) stamps the id, logs the fault once, and writes
//! the JSON.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::facilitator::FacilitatorError;
use crate::protocol::reason;
use crate::scheme::SchemeError;

/// Reason sent with HTTP 409 when a payment-identifier is reused for another payment.
pub const PAYMENT_ID_CONFLICT: &str = "payment_identifier_conflict";

/// Reason sent with HTTP 429.
pub const RATE_LIMITED: &str = "rate_limited";
/// Reasons sent with HTTP 401 (no or unknown API key) and 403 (a key without the scope).
pub const UNAUTHORIZED: &str = "unauthorized";
pub const FORBIDDEN: &str = "forbidden";
/// Reason sent with HTTP 503 outside `/verify` and `/settle` when the ledger does not answer.
pub const LEDGER_UNAVAILABLE: &str = "ledger_unavailable";

/// Which endpoint failed, so that the fault body has that endpoint's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Verify,
    Settle,
}

#[derive(Debug)]
pub enum ApiError {
    /// A body or query that is not a request of this endpoint (400, 413, 415…).
    Unreadable(StatusCode, String),
    /// No credentials, or not the right ones.
    Unauthorized(&'static str),
    /// The gate's refusal (`http::access`): no or unknown key (401), or a key without the
    /// endpoint's scope (403). Shaped like the endpoint's answers, so that the SDK clients
    /// raise their typed errors.
    Denied {
        forbidden: bool,
        endpoint: Option<Endpoint>,
        message: String,
    },
    /// Over a rate limit: try again after the given time (429 with `Retry-After`).
    RateLimited {
        endpoint: Option<Endpoint>,
        retry_after: Duration,
    },
    NotFound(&'static str),
    MethodNotAllowed,
    /// A fault of ours while answering `/verify` or `/settle`.
    Fault {
        endpoint: Endpoint,
        network: String,
        error: FacilitatorError,
    },
    /// Too much work in flight: try again after the given time (503 with `Retry-After`).
    Overloaded {
        endpoint: Option<Endpoint>,
        network: String,
        retry_after: Duration,
    },
    /// The request ran past the server's own bound (503); the endpoint shapes the body.
    TimedOut(Option<Endpoint>),
    /// The ledger does not answer where the request needs it before any handler runs (the
    /// access gate's key lookups): 503 with `Retry-After`, logged with its id, so that a
    /// prober reads "not ready" rather than a 500.
    LedgerUnavailable {
        endpoint: Option<Endpoint>,
        detail: String,
    },
    /// A fault of ours anywhere else; the text is logged, never sent.
    Internal(String),
}

/// An error body waiting for its request id; see the module docs.
#[derive(Debug, Clone)]
pub(super) struct ParkedError {
    pub body: Value,
    /// What to log (at error level) with the id; `None` for a client's mistake.
    pub log: Option<String>,
}

impl ApiError {
    pub fn fault(endpoint: Endpoint, network: impl Into<String>, error: FacilitatorError) -> Self {
        ApiError::Fault {
            endpoint,
            network: network.into(),
            error,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unreadable(status, _) => *status,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Denied {
                forbidden: true, ..
            } => StatusCode::FORBIDDEN,
            ApiError::Denied { .. } => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Fault { error, .. } => match error {
                FacilitatorError::Conflict(_) => StatusCode::CONFLICT,
                FacilitatorError::Scheme(SchemeError::Internal(_)) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                FacilitatorError::Scheme(SchemeError::Rpc(_)) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::Overloaded { .. }
            | ApiError::TimedOut(_)
            | ApiError::LedgerUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn park(self) -> (ParkedError, Option<Duration>) {
        let plain = |message: String| json!({ "error": message });
        match self {
            ApiError::Unreadable(_, message) => (
                ParkedError {
                    body: plain(message),
                    log: None,
                },
                None,
            ),
            ApiError::Unauthorized(message) | ApiError::NotFound(message) => (
                ParkedError {
                    body: plain(message.into()),
                    log: None,
                },
                None,
            ),
            ApiError::Denied {
                forbidden,
                endpoint,
                message,
            } => {
                let reason = if forbidden { FORBIDDEN } else { UNAUTHORIZED };
                let body = shaped(endpoint, reason, &message, "");
                (ParkedError { body, log: None }, None)
            }
            ApiError::RateLimited {
                endpoint,
                retry_after,
            } => {
                let message = "rate limit reached; retry after the Retry-After delay";
                let body = shaped(endpoint, RATE_LIMITED, message, "");
                (ParkedError { body, log: None }, Some(retry_after))
            }
            ApiError::MethodNotAllowed => (
                ParkedError {
                    body: plain("method not allowed on this endpoint; see GET /supported".into()),
                    log: None,
                },
                None,
            ),
            ApiError::Fault {
                endpoint,
                network,
                error,
            } => {
                let conflict = matches!(error, FacilitatorError::Conflict(_));
                // The detail (node and database texts) goes to the log with the error id; the
                // client gets what kind of fault it was.
                let detail = error.to_string();
                let message = match &error {
                    FacilitatorError::Conflict(m) => m.clone(),
                    FacilitatorError::Ledger(_) => "the ledger is unavailable".to_string(),
                    FacilitatorError::Scheme(SchemeError::Rpc(_)) => {
                        "the chain RPC is unavailable".to_string()
                    }
                    FacilitatorError::Scheme(SchemeError::Signer(_)) => {
                        "no usable signer right now".to_string()
                    }
                    FacilitatorError::Scheme(SchemeError::Unavailable(_)) => {
                        "temporarily unable to settle".to_string()
                    }
                    FacilitatorError::Scheme(SchemeError::Internal(_)) => {
                        "internal error".to_string()
                    }
                };
                let reason = match (conflict, endpoint) {
                    (true, _) => PAYMENT_ID_CONFLICT,
                    (false, Endpoint::Verify) => reason::UNEXPECTED_VERIFY_ERROR,
                    (false, Endpoint::Settle) => reason::UNEXPECTED_SETTLE_ERROR,
                };
                let body = shaped(Some(endpoint), reason, &message, &network);
                // A conflict is the client's doing: answered, not logged as our fault.
                let log = (!conflict).then_some(detail);
                (ParkedError { body, log }, None)
            }
            ApiError::Overloaded {
                endpoint,
                network,
                retry_after,
            } => {
                let message = "too many requests in flight; retry after the Retry-After delay";
                let body = shaped(endpoint, reason::OVERLOADED, message, &network);
                (ParkedError { body, log: None }, Some(retry_after))
            }
            ApiError::TimedOut(endpoint) => {
                let reason = match endpoint {
                    Some(Endpoint::Settle) => reason::UNEXPECTED_SETTLE_ERROR,
                    _ => reason::UNEXPECTED_VERIFY_ERROR,
                };
                let message = "the request ran past the server's time bound";
                let body = shaped(endpoint, reason, message, "");
                (
                    ParkedError {
                        body,
                        log: Some(message.into()),
                    },
                    None,
                )
            }
            ApiError::LedgerUnavailable { endpoint, detail } => {
                let reason = match endpoint {
                    Some(Endpoint::Verify) => reason::UNEXPECTED_VERIFY_ERROR,
                    Some(Endpoint::Settle) => reason::UNEXPECTED_SETTLE_ERROR,
                    None => LEDGER_UNAVAILABLE,
                };
                let body = shaped(endpoint, reason, "the ledger is unavailable", "");
                (
                    ParkedError {
                        body,
                        log: Some(detail),
                    },
                    Some(Duration::from_secs(1)),
                )
            }
            ApiError::Internal(message) => (
                ParkedError {
                    body: plain("internal error".into()),
                    log: Some(message),
                },
                None,
            ),
        }
    }
}

/// A failure body in the shape of `endpoint`'s answers, or `{error}` for other endpoints.
fn shaped(endpoint: Option<Endpoint>, reason: &str, message: &str, network: &str) -> Value {
    match endpoint {
        Some(Endpoint::Verify) => json!({
            "isValid": false,
            "invalidReason": reason,
            "invalidMessage": message,
        }),
        Some(Endpoint::Settle) => json!({
            "success": false,
            "errorReason": reason,
            "errorMessage": message,
            "transaction": "",
            "network": network,
        }),
        None => json!({ "error": message, "reason": reason }),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (parked, retry_after) = self.park();
        let mut response = (status, [(header::CONTENT_TYPE, "application/json")]).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = retry_after
            && let Ok(value) = HeaderValue::from_str(
                &after
                    .as_secs()
                    .saturating_add(u64::from(after.subsec_nanos() > 0))
                    .max(1)
                    .to_string(),
            )
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response.extensions_mut().insert(parked);
        response
    }
}

/// Writes a parked error's body with its request id, logging it once when it is a fault.
pub(super) fn render(response: &mut Response, parked: ParkedError, request_id: &str) {
    let ParkedError { mut body, log } = parked;
    if let Some(message) = log {
        tracing::error!(
            error_id = request_id,
            error = %message,
            status = response.status().as_u16(),
            "request failed"
        );
        // Faults name the id in their message too, so a user pasting the message brings it.
        for key in ["invalidMessage", "errorMessage"] {
            if let Some(Value::String(m)) = body.get_mut(key) {
                m.push_str(&format!(" (error id {request_id})"));
            }
        }
    }
    if let Value::Object(map) = &mut body {
        map.insert("errorId".into(), Value::String(request_id.into()));
    }
    *response.body_mut() = axum::body::Body::from(body.to_string());
}
