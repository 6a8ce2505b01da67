//! The HTTP surface: router, request ids and per-request spans, body limit, timeout; one file
//! per resource (payments, receipts, discovery).

mod discovery;
pub mod error;
mod extract;
mod payment;
mod receipts;
mod request_id;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::task::TaskTracker;

use crate::facilitator::Facilitator;

pub use request_id::RequestId;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub facilitator: Arc<Facilitator>,
    /// `/supported` never changes while running, so it is serialised once.
    pub supported_json: Bytes,
    /// Settles run as tracked tasks: a client that hangs up does not cut one off half-way, and
    /// shutdown waits for them.
    pub settles: TaskTracker,
    /// When set, receipts require it as a bearer token.
    pub receipts_token: Option<crate::config::Secret>,
    /// The bazaar catalog; `None` when discovery is disabled.
    pub discovery: Option<Arc<crate::discovery::Catalog>>,
}

pub fn router(state: AppState, body_limit: usize, request_timeout: Duration) -> Router {
    Router::new()
        .route("/verify", post(payment::verify))
        .route("/settle", post(payment::settle))
        .route("/supported", get(supported))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/settlements", get(receipts::list))
        .route("/settlements/{transaction}", get(receipts::one))
        .route("/discovery/resources", get(discovery::list))
        .route("/discovery/search", get(discovery::search))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            request_id::middleware(req, next, request_timeout)
        }))
        .with_state(state)
}

async fn supported(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.supported_json.clone(),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.facilitator.metrics.render();
    if let Some(catalog) = &state.discovery {
        text.push_str(&catalog.metrics.render());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn health(State(state): State<AppState>) -> Response {
    match state.facilitator.ledger().ping().await {
        Ok(()) => axum::Json(json!({ "status": "ok", "ledger": "ok" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: ledger unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "degraded", "ledger": "unreachable" })),
            )
                .into_response()
        }
    }
}

async fn not_found() -> error::ApiError {
    error::ApiError::NotFound("no such endpoint; see GET /supported")
}

async fn method_not_allowed() -> error::ApiError {
    error::ApiError::MethodNotAllowed
}
